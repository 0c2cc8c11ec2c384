//! Applying ALTER clauses to a table model, in order, the way the server would, recording
//! for each clause what it touched (for attributing verdicts) and what it changed (for judging
//! whether the primary can take it online).

use switchyard_plan::versions::Flavor;

use crate::alter::{AlterStatement, Op, PartitionOp, Position};
use crate::column::{ColumnSpec, charset_of_collation, normalize_charset, normalize_collation};
use crate::error::DdlError;
use crate::keys::{ForeignKeySpec, IndexSpec, KeySpec, TableOption};
use crate::model::{
    CheckConstraint, Column, ColumnDefault, ForeignKey, Index, IndexKind, Table, TableName,
};

/// Which aspect of a column a clause touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Aspect {
    /// Added or dropped.
    Existence,
    /// Moved with FIRST/AFTER.
    Position,
    /// Type, nullability, default or other attributes.
    Definition,
    /// Renamed.
    Name,
}

/// Something a finding is about, and a clause may have touched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// A column (by identity) and the aspect concerned.
    Column(u32, Aspect),
    /// An index, by lowercase name.
    Index(String),
    /// A foreign key, by lowercase name.
    ForeignKey(String),
    /// A CHECK constraint, by lowercase name.
    Check(String),
    /// The table's options.
    Table,
    /// A clause itself (for findings about the clause's own kind).
    Clause(usize),
}

/// What a clause changed, for the primary's online judgement and for intrinsic findings.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    ColumnAdded {
        column: Column,
        at_end: bool,
    },
    ColumnDropped,
    ColumnModified {
        before: Box<Column>,
        after: Box<Column>,
        moved: bool,
    },
    IndexAdded(Index),
    IndexDropped(Index),
    IndexMetadata,
    ForeignKeyAdded,
    ForeignKeyDropped,
    CheckAdded,
    CheckDropped,
    CheckEnforcement {
        enforced: bool,
    },
    TableOption {
        key: String,
        engine_changed: bool,
    },
    ConvertCharset,
    Algorithm(String),
    Lock(String),
    RenameTable,
    Partition(PartitionOp),
    Rebuild(&'static str),
    NoRowEffect(&'static str),
    Unsupported(String),
    NoOp(String),
}

/// What one clause did.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClauseEffects {
    /// The subjects the clause touched.
    pub touches: Vec<Subject>,
    /// The changes it made.
    pub changes: Vec<Change>,
}

/// A failure of a shared helper, turned into a [`DdlError`] by the caller with its context.
#[derive(Debug)]
pub(crate) enum ApplyError {
    UnknownColumn(String),
    UnknownObject(&'static str, String),
    AlreadyExists(&'static str, String),
    Inapplicable(String),
}

impl ApplyError {
    fn into_ddl(self, clause: &str, table: &TableName) -> DdlError {
        let (clause, table) = (clause.to_owned(), table.to_string());
        match self {
            ApplyError::UnknownColumn(column) => DdlError::UnknownColumn {
                clause,
                column,
                table,
            },
            ApplyError::UnknownObject(kind, name) => DdlError::UnknownObject {
                clause,
                kind,
                name,
                table,
            },
            ApplyError::AlreadyExists(kind, name) => DdlError::AlreadyExists {
                clause,
                kind,
                name,
                table,
            },
            ApplyError::Inapplicable(detail) => DdlError::Inapplicable {
                clause,
                table,
                detail,
            },
        }
    }

    /// The message used when the failure is in the table definition itself.
    pub(crate) fn describe(&self) -> String {
        match self {
            ApplyError::UnknownColumn(column) => {
                format!("a key refers to column `{column}`, which is not defined")
            }
            ApplyError::UnknownObject(kind, name) => format!("{kind} `{name}` is not defined"),
            ApplyError::AlreadyExists(kind, name) => format!("{kind} `{name}` is defined twice"),
            ApplyError::Inapplicable(detail) => detail.clone(),
        }
    }
}

/// Applies every clause of `statement` to a copy of `table`.
pub(crate) fn apply(
    flavor: Flavor,
    table: &Table,
    statement: &AlterStatement,
) -> Result<(Table, Vec<ClauseEffects>), DdlError> {
    let mut working = table.clone();
    let mut all = Vec::with_capacity(statement.clauses.len());
    for (index, clause) in statement.clauses.iter().enumerate() {
        let mut effects = ClauseEffects::default();
        for op in &clause.ops {
            apply_op(flavor, &mut working, op, &mut effects)
                .map_err(|e| e.into_ddl(&clause.text, &table.name))?;
        }
        effects.touches.push(Subject::Clause(index));
        all.push(effects);
    }
    Ok((working, all))
}

fn lower(name: &str) -> String {
    name.to_lowercase()
}

fn apply_op(
    flavor: Flavor,
    table: &mut Table,
    op: &Op,
    fx: &mut ClauseEffects,
) -> Result<(), ApplyError> {
    match op {
        Op::AddColumn {
            spec,
            position,
            if_not_exists,
        } => {
            if table.column(&spec.column.name).is_some() {
                if *if_not_exists {
                    fx.changes.push(Change::NoOp(format!(
                        "column `{}` already exists",
                        spec.column.name
                    )));
                    return Ok(());
                }
                return Err(ApplyError::AlreadyExists(
                    "column",
                    spec.column.name.clone(),
                ));
            }
            let mut column = spec.resolve(
                table.options.charset.as_deref(),
                table.options.collation.as_deref(),
            );
            column.id = table.next_id;
            table.next_id += 1;
            let at = match position {
                None => table.columns.len(),
                Some(Position::First) => 0,
                Some(Position::After(after)) => {
                    table
                        .column_position(after)
                        .ok_or_else(|| ApplyError::UnknownColumn(after.clone()))?
                        + 1
                }
            };
            let at_end = at == table.columns.len();
            let id = column.id;
            table.columns.insert(at, column.clone());
            fx.touches.push(Subject::Column(id, Aspect::Existence));
            add_inline_constraints(flavor, table, spec, id, fx)?;
            let column = table.column_by_id(id).cloned().unwrap_or(column);
            fx.changes.push(Change::ColumnAdded { column, at_end });
        }
        Op::ChangeColumn {
            old,
            spec,
            position,
            if_exists,
        } => {
            let Some(from) = table.column_position(old) else {
                if *if_exists {
                    fx.changes
                        .push(Change::NoOp(format!("column `{old}` does not exist")));
                    return Ok(());
                }
                return Err(ApplyError::UnknownColumn(old.clone()));
            };
            let before = table.columns[from].clone();
            let new_name = spec.column.name.clone();
            if !new_name.eq_ignore_ascii_case(&before.name) && table.column(&new_name).is_some() {
                return Err(ApplyError::AlreadyExists("column", new_name));
            }
            let mut after = spec.resolve(
                table.options.charset.as_deref(),
                table.options.collation.as_deref(),
            );
            after.id = before.id;
            if table
                .primary_key()
                .is_some_and(|pk| pk.columns().any(|c| c.eq_ignore_ascii_case(&before.name)))
            {
                after.nullable = false;
            }
            table.columns.remove(from);
            let to = match position {
                None => from,
                Some(Position::First) => 0,
                Some(Position::After(anchor)) => {
                    if anchor.eq_ignore_ascii_case(&before.name) {
                        return Err(ApplyError::Inapplicable(format!(
                            "column `{anchor}` cannot be placed after itself"
                        )));
                    }
                    table
                        .column_position(anchor)
                        .ok_or_else(|| ApplyError::UnknownColumn(anchor.clone()))?
                        + 1
                }
            };
            table.columns.insert(to, after.clone());
            rename_references(table, &before.name, &after.name);
            if flavor == Flavor::Mariadb {
                table.checks.retain(|c| {
                    !c.column
                        .as_deref()
                        .is_some_and(|col| col.eq_ignore_ascii_case(&after.name))
                });
            }
            add_inline_constraints(flavor, table, spec, after.id, fx)?;
            let after = table.column_by_id(before.id).cloned().unwrap_or(after);
            let moved = to != from;
            let renamed = before.name != after.name;
            let mut without_name = after.clone();
            without_name.name = before.name.clone();
            if without_name != before {
                fx.touches
                    .push(Subject::Column(before.id, Aspect::Definition));
            }
            if renamed {
                fx.touches.push(Subject::Column(before.id, Aspect::Name));
            }
            if moved {
                fx.touches
                    .push(Subject::Column(before.id, Aspect::Position));
            }
            fx.changes.push(Change::ColumnModified {
                before: Box::new(before),
                after: Box::new(after),
                moved,
            });
        }
        Op::DropColumn { name, if_exists } => {
            let Some(at) = table.column_position(name) else {
                if *if_exists {
                    fx.changes
                        .push(Change::NoOp(format!("column `{name}` does not exist")));
                    return Ok(());
                }
                return Err(ApplyError::UnknownColumn(name.clone()));
            };
            if let Some(fk) = table
                .foreign_keys
                .iter()
                .find(|fk| fk.columns.iter().any(|c| c.eq_ignore_ascii_case(name)))
            {
                return Err(ApplyError::Inapplicable(format!(
                    "column `{name}` is used by foreign key `{}`: drop the foreign key in the same statement first",
                    fk.name
                )));
            }
            let column = table.columns.remove(at);
            fx.touches
                .push(Subject::Column(column.id, Aspect::Existence));
            for index in &mut table.indexes {
                let before = index.parts.len();
                index.parts.retain(|p| {
                    !p.column
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(name))
                });
                if index.parts.len() != before {
                    fx.touches.push(Subject::Index(lower(&index.name)));
                }
            }
            let emptied: Vec<Index> = table
                .indexes
                .iter()
                .filter(|i| i.parts.is_empty())
                .cloned()
                .collect();
            table.indexes.retain(|i| !i.parts.is_empty());
            for index in emptied {
                fx.changes.push(Change::IndexDropped(index));
            }
            table.checks.retain(|c| {
                !c.column
                    .as_deref()
                    .is_some_and(|col| col.eq_ignore_ascii_case(name))
            });
            fx.changes.push(Change::ColumnDropped);
        }
        Op::RenameColumn { old, new } => {
            let Some(at) = table.column_position(old) else {
                return Err(ApplyError::UnknownColumn(old.clone()));
            };
            if !new.eq_ignore_ascii_case(old) && table.column(new).is_some() {
                return Err(ApplyError::AlreadyExists("column", new.clone()));
            }
            let before = table.columns[at].clone();
            table.columns[at].name = new.clone();
            rename_references(table, old, new);
            let after = table.columns[at].clone();
            fx.touches.push(Subject::Column(before.id, Aspect::Name));
            fx.changes.push(Change::ColumnModified {
                before: Box::new(before),
                after: Box::new(after),
                moved: false,
            });
        }
        Op::SetDefault { column, default } => {
            let at = table
                .column_position(column)
                .ok_or_else(|| ApplyError::UnknownColumn(column.clone()))?;
            let before = table.columns[at].clone();
            if before.generated.is_some() && !matches!(default, ColumnDefault::None) {
                return Err(ApplyError::Inapplicable(format!(
                    "generated column `{column}` cannot have a default"
                )));
            }
            table.columns[at].default = default.clone();
            let after = table.columns[at].clone();
            fx.touches
                .push(Subject::Column(before.id, Aspect::Definition));
            fx.changes.push(Change::ColumnModified {
                before: Box::new(before),
                after: Box::new(after),
                moved: false,
            });
        }
        Op::SetColumnVisibility { column, invisible } => {
            let at = table
                .column_position(column)
                .ok_or_else(|| ApplyError::UnknownColumn(column.clone()))?;
            let before = table.columns[at].clone();
            table.columns[at].invisible = *invisible;
            let after = table.columns[at].clone();
            fx.touches
                .push(Subject::Column(before.id, Aspect::Definition));
            fx.changes.push(Change::ColumnModified {
                before: Box::new(before),
                after: Box::new(after),
                moved: false,
            });
        }
        Op::AddKey(spec) => add_key(flavor, table, spec, fx)?,
        Op::DropIndex { name, if_exists } => match table
            .indexes
            .iter()
            .position(|i| i.name.eq_ignore_ascii_case(name))
        {
            Some(at) => {
                let index = table.indexes.remove(at);
                fx.touches.push(Subject::Index(lower(&index.name)));
                fx.changes.push(Change::IndexDropped(index));
            }
            None if *if_exists => fx
                .changes
                .push(Change::NoOp(format!("index `{name}` does not exist"))),
            None => return Err(ApplyError::UnknownObject("index", name.clone())),
        },
        Op::DropPrimaryKey => match table
            .indexes
            .iter()
            .position(|i| i.kind == IndexKind::Primary)
        {
            Some(at) => {
                let index = table.indexes.remove(at);
                fx.touches.push(Subject::Index(lower(&index.name)));
                fx.changes.push(Change::IndexDropped(index));
            }
            None => {
                return Err(ApplyError::UnknownObject(
                    "primary key",
                    "PRIMARY".to_owned(),
                ));
            }
        },
        Op::DropForeignKey { name, if_exists } => {
            match table
                .foreign_keys
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
            {
                Some(at) => {
                    let fk = table.foreign_keys.remove(at);
                    fx.touches.push(Subject::ForeignKey(lower(&fk.name)));
                    fx.changes.push(Change::ForeignKeyDropped);
                }
                None if *if_exists => fx
                    .changes
                    .push(Change::NoOp(format!("foreign key `{name}` does not exist"))),
                None => return Err(ApplyError::UnknownObject("foreign key", name.clone())),
            }
        }
        Op::DropCheck { name, if_exists } => match find_check(table, name) {
            Some(at) => drop_check(table, at, fx),
            None if *if_exists => fx.changes.push(Change::NoOp(format!(
                "check constraint `{name}` does not exist"
            ))),
            None => return Err(ApplyError::UnknownObject("check constraint", name.clone())),
        },
        Op::DropConstraint { name, if_exists } => {
            if let Some(at) = find_check(table, name) {
                drop_check(table, at, fx);
            } else if let Some(at) = table
                .foreign_keys
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
            {
                let fk = table.foreign_keys.remove(at);
                fx.touches.push(Subject::ForeignKey(lower(&fk.name)));
                fx.changes.push(Change::ForeignKeyDropped);
            } else if let Some(at) = table
                .indexes
                .iter()
                .position(|i| i.kind.is_unique() && i.name.eq_ignore_ascii_case(name))
            {
                let index = table.indexes.remove(at);
                fx.touches.push(Subject::Index(lower(&index.name)));
                fx.changes.push(Change::IndexDropped(index));
            } else if *if_exists {
                fx.changes
                    .push(Change::NoOp(format!("constraint `{name}` does not exist")));
            } else {
                return Err(ApplyError::UnknownObject("constraint", name.clone()));
            }
        }
        Op::RenameIndex { old, new } => {
            let at = table
                .indexes
                .iter()
                .position(|i| i.name.eq_ignore_ascii_case(old))
                .ok_or_else(|| ApplyError::UnknownObject("index", old.clone()))?;
            if table.indexes[at].kind == IndexKind::Primary || new.eq_ignore_ascii_case("PRIMARY") {
                return Err(ApplyError::Inapplicable(
                    "the primary key cannot be renamed".to_owned(),
                ));
            }
            if !new.eq_ignore_ascii_case(old) && table.index(new).is_some() {
                return Err(ApplyError::AlreadyExists("index", new.clone()));
            }
            table.indexes[at].name = new.clone();
            fx.touches.push(Subject::Index(lower(old)));
            fx.touches.push(Subject::Index(lower(new)));
            fx.changes.push(Change::IndexMetadata);
        }
        Op::IndexVisibility { name } => {
            let index = table
                .index(name)
                .ok_or_else(|| ApplyError::UnknownObject("index", name.clone()))?;
            if index.kind == IndexKind::Primary {
                return Err(ApplyError::Inapplicable(
                    "the primary key cannot be made invisible".to_owned(),
                ));
            }
            fx.touches.push(Subject::Index(lower(name)));
            fx.changes.push(Change::IndexMetadata);
        }
        Op::CheckEnforcement { name, enforced } => {
            let at = find_check(table, name)
                .ok_or_else(|| ApplyError::UnknownObject("check constraint", name.clone()))?;
            table.checks[at].enforced = *enforced;
            fx.touches
                .push(Subject::Check(check_key(&table.checks[at])));
            fx.changes.push(Change::CheckEnforcement {
                enforced: *enforced,
            });
        }
        Op::TableOptions(options) => {
            for option in options {
                apply_table_option(table, option, fx);
            }
        }
        Op::ConvertCharset { charset, collation } => {
            table.options.charset = Some(charset.clone());
            table.options.collation = collation.clone();
            for column in &mut table.columns {
                if column.ty.kind.has_charset() {
                    let before = column.clone();
                    column.ty.charset = Some(charset.clone());
                    column.ty.collation = collation.clone();
                    if *column != before {
                        fx.touches
                            .push(Subject::Column(column.id, Aspect::Definition));
                    }
                }
            }
            fx.touches.push(Subject::Table);
            fx.changes.push(Change::ConvertCharset);
        }
        Op::Algorithm(algorithm) => fx.changes.push(Change::Algorithm(algorithm.clone())),
        Op::Lock(lock) => fx.changes.push(Change::Lock(lock.clone())),
        Op::RenameTable(name) => {
            table.name = name.clone();
            fx.changes.push(Change::RenameTable);
        }
        Op::Partition(partition) => {
            match partition {
                PartitionOp::By { .. } => table.options.partitioned = true,
                PartitionOp::Remove => table.options.partitioned = false,
                _ => {}
            }
            fx.changes.push(Change::Partition(partition.clone()));
        }
        Op::Rebuild(what) => fx.changes.push(Change::Rebuild(what)),
        Op::NoRowEffect(what) => fx.changes.push(Change::NoRowEffect(what)),
        Op::Unsupported(what) => fx.changes.push(Change::Unsupported(what.clone())),
    }
    Ok(())
}

fn apply_table_option(table: &mut Table, option: &TableOption, fx: &mut ClauseEffects) {
    fx.touches.push(Subject::Table);
    let mut engine_changed = false;
    match option.key.as_str() {
        "ENGINE" => {
            engine_changed = table
                .options
                .engine
                .as_deref()
                .is_some_and(|e| !e.eq_ignore_ascii_case(&option.value));
            table.options.engine = Some(option.value.clone());
        }
        "CHARSET" => {
            let charset = normalize_charset(&option.value);
            if table.options.charset.as_deref() != Some(charset.as_str()) {
                table.options.collation = None;
            }
            table.options.charset = Some(charset);
        }
        "COLLATE" => {
            let collation = normalize_collation(&option.value);
            table.options.charset =
                charset_of_collation(&collation).or(table.options.charset.take());
            table.options.collation = Some(collation);
        }
        "WITH SYSTEM VERSIONING" => {
            fx.changes.push(Change::Unsupported(
                "system versioning adds row-start/row-end columns".to_owned(),
            ));
            return;
        }
        _ => {}
    }
    fx.changes.push(Change::TableOption {
        key: option.key.clone(),
        engine_changed,
    });
}

fn find_check(table: &Table, name: &str) -> Option<usize> {
    table
        .checks
        .iter()
        .position(|c| match (&c.name, &c.column) {
            (Some(n), _) => n.eq_ignore_ascii_case(name),
            (None, Some(column)) => column.eq_ignore_ascii_case(name),
            (None, None) => false,
        })
}

fn drop_check(table: &mut Table, at: usize, fx: &mut ClauseEffects) {
    let check = table.checks.remove(at);
    fx.touches.push(Subject::Check(check_key(&check)));
    fx.changes.push(Change::CheckDropped);
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

fn rename_references(table: &mut Table, old: &str, new: &str) {
    for index in &mut table.indexes {
        for part in &mut index.parts {
            if part
                .column
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(old))
            {
                part.column = Some(new.to_owned());
            }
        }
    }
    for fk in &mut table.foreign_keys {
        for column in &mut fk.columns {
            if column.eq_ignore_ascii_case(old) {
                *column = new.to_owned();
            }
        }
    }
    for check in &mut table.checks {
        if check
            .column
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(old))
        {
            check.column = Some(new.to_owned());
        }
    }
}

/// Adds the PRIMARY KEY, UNIQUE and CHECK written inside a column definition.
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
    let part = || crate::model::IndexPart {
        column: Some(name.clone()),
        expression: None,
        prefix: None,
    };
    if spec.primary_key {
        let key = IndexSpec {
            name: Some("PRIMARY".to_owned()),
            kind: IndexKind::Primary,
            parts: vec![part()],
            if_not_exists: false,
        };
        add_key(flavor, table, &KeySpec::Index(key), fx)?;
    }
    if spec.unique {
        let key = IndexSpec {
            name: None,
            kind: IndexKind::Unique,
            parts: vec![part()],
            if_not_exists: false,
        };
        add_key(flavor, table, &KeySpec::Index(key), fx)?;
    }
    for expression in &spec.checks {
        let column = (flavor == Flavor::Mariadb).then(|| name.clone());
        let check = CheckConstraint {
            name: None,
            expression: expression.clone(),
            enforced: true,
            column,
        };
        add_key(flavor, table, &KeySpec::Check(check), fx)?;
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
            fx.changes.push(Change::CheckAdded);
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
    fx.touches.push(Subject::ForeignKey(lower(&fk.name)));
    fx.changes.push(Change::ForeignKeyAdded);
    table.foreign_keys.push(fk);
    Ok(())
}
