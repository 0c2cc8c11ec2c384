//! Adding keys, foreign keys and CHECK constraints to a table model, naming them as the
//! server does when the text does not; shared by the table definition reader and the ALTER
//! model.

use switchyard_plan::versions::Flavor;

use crate::apply::{ApplyError, Aspect, Change, ClauseEffects, Subject};
use crate::column::ColumnSpec;
use crate::keys::{ForeignKeySpec, IndexSpec, KeySpec};
use crate::model::{CheckConstraint, ForeignKey, Index, IndexKind, IndexPart, Table};

pub(crate) fn lower(name: &str) -> String {
    name.to_lowercase()
}

/// The key a CHECK constraint is tracked by: its name, else its column, else its expression.
pub(crate) fn check_key(check: &CheckConstraint) -> String {
    match (&check.name, &check.column) {
        (Some(name), _) => lower(name),
        (None, Some(column)) => format!("column:{}", lower(column)),
        (None, None) => format!(
            "expr:{}",
            crate::column::normalize_expression(&check.expression)
        ),
    }
}

/// The position of the CHECK constraint called `name` (a MariaDB column-level check goes by
/// its column's name).
pub(crate) fn find_check(table: &Table, name: &str) -> Option<usize> {
    table
        .checks
        .iter()
        .position(|c| match (&c.name, &c.column) {
            (Some(n), _) => n.eq_ignore_ascii_case(name),
            (None, Some(column)) => column.eq_ignore_ascii_case(name),
            (None, None) => false,
        })
}

/// The PRIMARY KEY, UNIQUE and CHECK written inside a column definition, as key specs.
pub(crate) fn inline_constraints(flavor: Flavor, spec: &ColumnSpec, name: &str) -> Vec<KeySpec> {
    let part = || IndexPart {
        column: Some(name.to_owned()),
        expression: None,
        prefix: None,
    };
    let mut keys = Vec::new();
    if spec.primary_key {
        keys.push(KeySpec::Index(IndexSpec {
            name: Some("PRIMARY".to_owned()),
            kind: IndexKind::Primary,
            parts: vec![part()],
            if_not_exists: false,
        }));
    }
    if spec.unique {
        keys.push(KeySpec::Index(IndexSpec {
            name: None,
            kind: IndexKind::Unique,
            parts: vec![part()],
            if_not_exists: false,
        }));
    }
    if let Some(fk) = &spec.references {
        let mut key = fk.clone();
        key.columns = vec![name.to_owned()];
        keys.push(KeySpec::ForeignKey(ForeignKeySpec { name: None, key }));
    }
    for expression in &spec.checks {
        keys.push(KeySpec::Check(CheckConstraint {
            name: None,
            expression: expression.clone(),
            enforced: true,
            column: (flavor == Flavor::Mariadb).then(|| name.to_owned()),
        }));
    }
    keys
}

/// Adds the PRIMARY KEY, UNIQUE and CHECK written inside the definition of column `id`.
pub(crate) fn add_inline_constraints(
    flavor: Flavor,
    table: &mut Table,
    spec: &ColumnSpec,
    id: u32,
    fx: &mut ClauseEffects,
) -> Result<(), ApplyError> {
    let name = table
        .column_by_id(id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    for key in inline_constraints(flavor, spec, &name) {
        add_key(flavor, table, &key, fx)?;
    }
    Ok(())
}

/// Adds an index, foreign key or check to `table`, naming it as the server would when the
/// text does not.
pub(crate) fn add_key(
    flavor: Flavor,
    table: &mut Table,
    spec: &KeySpec,
    fx: &mut ClauseEffects,
) -> Result<(), ApplyError> {
    match spec {
        KeySpec::Index(index) => add_index(table, index, fx),
        KeySpec::ForeignKey(fk) => add_foreign_key(table, fk, fx),
        KeySpec::Check(check) => {
            let mut check = check.clone();
            if check.name.is_none() && check.column.is_none() {
                let taken = |name: &str| {
                    table.checks.iter().any(|c| {
                        c.name
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                };
                check.name = (1..)
                    .map(|n| match flavor {
                        Flavor::Mysql => format!("{}_chk_{n}", table.name.name),
                        Flavor::Mariadb => format!("CONSTRAINT_{n}"),
                    })
                    .find(|name| !taken(name));
            }
            if let Some(name) = &check.name
                && table.checks.iter().any(|c| {
                    c.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
            {
                return Err(ApplyError::AlreadyExists("check constraint", name.clone()));
            }
            fx.touches.push(Subject::Check(check_key(&check)));
            fx.changes.push(Change::CheckAdded {
                of_new_column: false,
            });
            table.checks.push(check);
            Ok(())
        }
        KeySpec::Period => Ok(()),
    }
}

fn add_index(
    table: &mut Table,
    spec: &IndexSpec,
    fx: &mut ClauseEffects,
) -> Result<(), ApplyError> {
    for part in &spec.parts {
        if let Some(column) = &part.column
            && table.column(column).is_none()
        {
            return Err(ApplyError::UnknownColumn(column.clone()));
        }
    }
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => derive_index_name(table, spec),
    };
    if spec.kind == IndexKind::Primary && table.primary_key().is_some() {
        return Err(ApplyError::AlreadyExists(
            "primary key",
            "PRIMARY".to_owned(),
        ));
    }
    if table.index(&name).is_some() {
        if spec.if_not_exists {
            fx.changes
                .push(Change::NoOp(format!("index `{name}` already exists")));
            return Ok(());
        }
        return Err(ApplyError::AlreadyExists("index", name));
    }
    let index = Index {
        name: name.clone(),
        kind: spec.kind,
        parts: spec.parts.clone(),
    };
    if spec.kind == IndexKind::Primary {
        for column_name in index.columns() {
            if let Some(column) = table
                .columns
                .iter_mut()
                .find(|c| c.name.eq_ignore_ascii_case(column_name))
                && column.nullable
            {
                column.nullable = false;
                fx.touches
                    .push(Subject::Column(column.id, Aspect::Definition));
            }
        }
    }
    fx.touches.push(Subject::Index(lower(&name)));
    fx.changes.push(Change::IndexAdded(index.clone()));
    table.indexes.push(index);
    Ok(())
}

fn derive_index_name(table: &Table, spec: &IndexSpec) -> String {
    let base = spec
        .parts
        .first()
        .and_then(|p| p.column.clone())
        .unwrap_or_else(|| "functional_index".to_owned());
    if table.index(&base).is_none() {
        return base;
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|candidate| table.index(candidate).is_none())
        .unwrap_or(base)
}

fn add_foreign_key(
    table: &mut Table,
    spec: &ForeignKeySpec,
    fx: &mut ClauseEffects,
) -> Result<(), ApplyError> {
    for column in &spec.key.columns {
        if table.column(column).is_none() {
            return Err(ApplyError::UnknownColumn(column.clone()));
        }
    }
    let mut fk: ForeignKey = spec.key.clone();
    if spec.name.is_none() {
        let taken = |name: &str| {
            table
                .foreign_keys
                .iter()
                .any(|f| f.name.eq_ignore_ascii_case(name))
        };
        fk.name = (1..)
            .map(|n| format!("{}_ibfk_{n}", table.name.name))
            .find(|name| !taken(name))
            .unwrap_or_default();
    }
    if table
        .foreign_keys
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case(&fk.name))
    {
        return Err(ApplyError::AlreadyExists("foreign key", fk.name));
    }
    // InnoDB needs an index that starts with the key's columns: both servers add one,
    // named after the constraint when it has a name, when none exists.
    let covered = table.indexes.iter().any(|index| {
        index.parts.len() >= fk.columns.len()
            && index.parts.iter().zip(&fk.columns).all(|(part, column)| {
                part.column
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(column))
            })
    });
    if !covered {
        let parts: Vec<IndexPart> = fk
            .columns
            .iter()
            .map(|c| IndexPart {
                column: Some(c.clone()),
                expression: None,
                prefix: None,
            })
            .collect();
        let index = IndexSpec {
            name: spec.name.clone(),
            kind: IndexKind::Plain,
            parts,
            if_not_exists: false,
        };
        add_index(table, &index, fx)?;
    }
    fx.touches.push(Subject::ForeignKey(lower(&fk.name)));
    fx.changes.push(Change::ForeignKeyAdded);
    table.foreign_keys.push(fk);
    Ok(())
}
