//! Applying an ALTER TABLE statement to a table model the way the server does, recording for
//! each clause what it touched (for attributing verdicts) and what it changed (for judging
//! whether the primary can take it online).
//!
//! The server does not run the clauses one after the other. It reads them all, then builds the
//! new table in fixed steps (`mysql_prepare_alter_table` in both servers' sources), which this
//! module follows:
//!
//! 1. the table's new default character set and collation, from every table option and
//!    `CONVERT TO` of the statement, wherever they are written;
//! 2. every existing column in order: dropped, redefined (`CHANGE`, `MODIFY`), renamed, or
//!    given a default or a visibility by the one clause that names it, by its name *before*
//!    the statement; a column named by two clauses is an error (the second finds no such
//!    column, error 1054 or 1091);
//! 3. the added columns and the redefined ones given a position (`FIRST`, `AFTER`), in clause
//!    order, each placed among the columns built so far by their *new* names;
//! 4. the existing indexes, foreign keys and checks less those dropped, renamed (named by
//!    their names before the statement), their key parts following their columns; then the
//!    new ones in clause order, over the new column names;
//! 5. table options, `CONVERT TO`, partitioning and the rest, in clause order.
//!
//! So `RENAME COLUMN a TO b, RENAME COLUMN b TO a` swaps two columns, `DROP COLUMN c, ADD
//! COLUMN c BIGINT` replaces one, `ADD COLUMN x INT AFTER b2, RENAME COLUMN b TO b2` places `x`
//! after the renamed column, and `RENAME INDEX a TO b, RENAME INDEX b TO a` swaps two indexes;
//! `ADD COLUMN x INT AFTER c, DROP COLUMN c` fails (each measured on MariaDB 10.11 and 11.8 and
//! MySQL 9.7; `tests/primary_online.rs` runs these statements on the servers and compares their
//! tables with this model).

use switchyard_plan::versions::Flavor;

use std::collections::{HashMap, HashSet};

use crate::alter::{AlterStatement, Op, PartitionOp, Position};
use crate::column::{ColumnSpec, charset_of_collation, normalize_charset, normalize_collation};
use crate::constraints::{add_key, check_key, find_check, inline_constraints, lower};
use crate::error::DdlError;
use crate::keys::{KeySpec, TableOption};
use crate::model::{Column, ColumnDefault, Index, IndexKind, Table, TableName, TableOptions};

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
    /// `of_new_column`: a column-level CHECK written in an added column's definition.
    CheckAdded {
        of_new_column: bool,
    },
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

/// A failure and the index of the clause it belongs to.
type Failed = (usize, ApplyError);

/// Applies every clause of `statement` to a copy of `table`, as the server does.
pub(crate) fn apply(
    flavor: Flavor,
    table: &Table,
    statement: &AlterStatement,
) -> Result<(Table, Vec<ClauseEffects>), DdlError> {
    let ops: Vec<(usize, &Op)> = statement
        .clauses
        .iter()
        .enumerate()
        .flat_map(|(i, clause)| clause.ops.iter().map(move |op| (i, op)))
        .collect();
    let mut builder = Builder::new(flavor, table, statement.clauses.len());
    builder.run(&ops).map_err(|(clause, e)| {
        let text = statement
            .clauses
            .get(clause)
            .map_or("", |c| c.text.as_str());
        e.into_ddl(text, &table.name)
    })?;
    Ok(builder.finish())
}

/// How the one clause that names an existing column changes it.
enum Claim<'a> {
    Drop,
    Change {
        spec: &'a ColumnSpec,
        positioned: bool,
    },
    Rename(&'a str),
    Default(&'a ColumnDefault),
    Visibility(bool),
}

/// The new table under construction.
struct Builder<'a> {
    flavor: Flavor,
    old: &'a Table,
    new: Table,
    fx: Vec<ClauseEffects>,
    /// The new table's default character set and collation, for columns defined without one.
    defaults: (Option<String>, Option<String>),
    /// Existing columns dropped: (clause, identity).
    dropped: Vec<(usize, u32)>,
    /// Existing columns changed in place or moved: (clause, identity).
    modified: Vec<(usize, u32)>,
    /// Existing columns redefined by a CHANGE or MODIFY, with their new definition.
    redefined: HashMap<u32, &'a ColumnSpec>,
    /// Existing columns given a position.
    positioned: HashSet<u32>,
    /// Added columns: (clause, identity, definition).
    added: Vec<(usize, u32, &'a ColumnSpec)>,
}

impl<'a> Builder<'a> {
    fn new(flavor: Flavor, old: &'a Table, clauses: usize) -> Self {
        Builder {
            flavor,
            old,
            new: old.clone(),
            fx: vec![ClauseEffects::default(); clauses],
            defaults: (None, None),
            dropped: Vec::new(),
            modified: Vec::new(),
            redefined: HashMap::new(),
            positioned: HashSet::new(),
            added: Vec::new(),
        }
    }

    fn run(&mut self, ops: &[(usize, &'a Op)]) -> Result<(), Failed> {
        self.defaults = new_defaults(&self.old.options, ops);
        self.existing_columns(ops)?;
        self.placed_columns(ops)?;
        self.existing_constraints(ops)?;
        self.new_constraints(ops)?;
        for &(clause, op) in ops {
            self.table_level(clause, op);
        }
        Ok(())
    }

    /// Step 2: each existing column as the one clause that names it leaves it.
    fn existing_columns(&mut self, ops: &[(usize, &'a Op)]) -> Result<(), Failed> {
        let mut claims: HashMap<u32, (usize, Claim<'a>)> = HashMap::new();
        for &(clause, op) in ops {
            let (name, claim, if_exists) = match op {
                Op::DropColumn { name, if_exists } => (name, Claim::Drop, *if_exists),
                Op::ChangeColumn {
                    old,
                    spec,
                    position,
                    if_exists,
                } => (
                    old,
                    Claim::Change {
                        spec,
                        positioned: position.is_some(),
                    },
                    *if_exists,
                ),
                Op::RenameColumn { old, new } => (old, Claim::Rename(new), false),
                Op::SetDefault { column, default } => (column, Claim::Default(default), false),
                Op::SetColumnVisibility { column, invisible } => {
                    (column, Claim::Visibility(*invisible), false)
                }
                _ => continue,
            };
            let Some(column) = self.old.column(name) else {
                if if_exists {
                    self.fx[clause]
                        .changes
                        .push(Change::NoOp(format!("column `{name}` does not exist")));
                    continue;
                }
                return Err((clause, ApplyError::UnknownColumn(name.clone())));
            };
            if claims.contains_key(&column.id) {
                return Err((
                    clause,
                    ApplyError::Inapplicable(format!(
                        "column `{}` is also named by an earlier clause; the server applies every clause \
                         to the table as it was before the statement, so a second clause finds no such \
                         column (error 1054 or 1091): make the whole change in one clause",
                        column.name
                    )),
                ));
            }
            claims.insert(column.id, (clause, claim));
        }
        let (charset, collation) = self.defaults.clone();
        let mut columns = Vec::with_capacity(self.old.columns.len());
        for old in &self.old.columns {
            let Some((clause, claim)) = claims.remove(&old.id) else {
                columns.push(old.clone());
                continue;
            };
            let mut column = old.clone();
            match claim {
                Claim::Drop => {
                    let fx = &mut self.fx[clause];
                    fx.touches.push(Subject::Column(old.id, Aspect::Existence));
                    fx.changes.push(Change::ColumnDropped);
                    self.dropped.push((clause, old.id));
                    continue;
                }
                Claim::Change { spec, positioned } => {
                    column = spec.resolve(charset.as_deref(), collation.as_deref());
                    column.id = old.id;
                    if let (Some(before), Some(after)) = (&old.generated, &column.generated)
                        && before.stored != after.stored
                    {
                        return Err((
                            clause,
                            ApplyError::Inapplicable(format!(
                                "generated column `{}` cannot change between VIRTUAL and STORED in place \
                                 (MySQL error 3106, MariaDB error 1907): drop it and add it again",
                                old.name
                            )),
                        ));
                    }
                    let in_primary_key = self
                        .old
                        .primary_key()
                        .is_some_and(|pk| pk.columns().any(|c| c.eq_ignore_ascii_case(&old.name)));
                    if in_primary_key {
                        column.nullable = false;
                    }
                    self.redefined.insert(old.id, spec);
                    if positioned {
                        self.positioned.insert(old.id);
                    }
                }
                Claim::Rename(new) => column.name = new.to_owned(),
                Claim::Default(default) => {
                    if old.generated.is_some() && !matches!(default, ColumnDefault::None) {
                        return Err((
                            clause,
                            ApplyError::Inapplicable(format!(
                                "generated column `{}` cannot have a default",
                                old.name
                            )),
                        ));
                    }
                    column.default = default.clone();
                }
                Claim::Visibility(invisible) => column.invisible = invisible,
            }
            self.modified.push((clause, old.id));
            columns.push(column);
        }
        self.new.columns = columns;
        Ok(())
    }

    /// Step 3: added columns and positioned ones, in clause order, by new names.
    fn placed_columns(&mut self, ops: &[(usize, &'a Op)]) -> Result<(), Failed> {
        let (charset, collation) = self.defaults.clone();
        for &(clause, op) in ops {
            match op {
                Op::AddColumn {
                    spec,
                    position,
                    if_not_exists,
                } => {
                    let name = &spec.column.name;
                    // MariaDB looks for the column in the table before the statement and among
                    // the columns added before it.
                    let exists = self.old.column(name).is_some()
                        || self.added.iter().any(|(_, id, _)| {
                            self.new
                                .column_by_id(*id)
                                .is_some_and(|c| c.name.eq_ignore_ascii_case(name))
                        });
                    if *if_not_exists && exists {
                        self.fx[clause]
                            .changes
                            .push(Change::NoOp(format!("column `{name}` already exists")));
                        continue;
                    }
                    let mut column = spec.resolve(charset.as_deref(), collation.as_deref());
                    column.id = self.new.next_id;
                    self.new.next_id += 1;
                    let at = self
                        .place(position.as_ref(), name)
                        .map_err(|e| (clause, e))?;
                    self.fx[clause]
                        .touches
                        .push(Subject::Column(column.id, Aspect::Existence));
                    self.added.push((clause, column.id, spec));
                    self.new.columns.insert(at, column);
                }
                Op::ChangeColumn {
                    old,
                    position: Some(position),
                    ..
                } => {
                    let Some(id) = self.old.column(old).map(|c| c.id) else {
                        continue;
                    };
                    let Some(from) = self.new.columns.iter().position(|c| c.id == id) else {
                        continue;
                    };
                    let column = self.new.columns.remove(from);
                    let at = self
                        .place(Some(position), &column.name)
                        .map_err(|e| (clause, e))?;
                    self.new.columns.insert(at, column);
                }
                _ => {}
            }
        }
        let mut seen: HashMap<String, u32> = HashMap::new();
        for column in &self.new.columns {
            if seen.insert(lower(&column.name), column.id).is_some() {
                let clause = self
                    .added
                    .iter()
                    .map(|(c, id, _)| (*c, *id))
                    .chain(self.modified.iter().copied())
                    .find(|(_, id)| *id == column.id)
                    .map_or(0, |(c, _)| c);
                return Err((
                    clause,
                    ApplyError::AlreadyExists("column", column.name.clone()),
                ));
            }
        }
        Ok(())
    }

    /// Where a column goes among the columns built so far.
    fn place(&self, position: Option<&Position>, own_name: &str) -> Result<usize, ApplyError> {
        match position {
            None => Ok(self.new.columns.len()),
            Some(Position::First) => Ok(0),
            Some(Position::After(anchor)) if anchor.eq_ignore_ascii_case(own_name) => {
                Err(ApplyError::Inapplicable(format!(
                    "column `{anchor}` cannot be placed after itself"
                )))
            }
            Some(Position::After(anchor)) => self
                .new
                .column_position(anchor)
                .map(|at| at + 1)
                .ok_or_else(|| ApplyError::UnknownColumn(anchor.clone())),
        }
    }

    /// Step 4, first half: the table's own indexes, foreign keys and checks, less those
    /// dropped, renamed, following their columns.
    fn existing_constraints(&mut self, ops: &[(usize, &'a Op)]) -> Result<(), Failed> {
        let mut claimed: HashSet<String> = HashSet::new();
        let mut renames: Vec<(usize, String, String)> = Vec::new();
        for &(clause, op) in ops {
            self.drop_or_rename(clause, op, &mut claimed, &mut renames)
                .map_err(|e| (clause, e))?;
        }
        // Renames apply together (RENAME INDEX a TO b, RENAME INDEX b TO a swaps them).
        let targets: Vec<(usize, usize, String)> = renames
            .iter()
            .filter_map(|(clause, old, new)| {
                self.new
                    .indexes
                    .iter()
                    .position(|i| i.name.eq_ignore_ascii_case(old))
                    .map(|at| (*clause, at, new.clone()))
            })
            .collect();
        for (clause, at, new) in targets {
            let old = std::mem::replace(&mut self.new.indexes[at].name, new.clone());
            let fx = &mut self.fx[clause];
            fx.touches.push(Subject::Index(lower(&old)));
            fx.touches.push(Subject::Index(lower(&new)));
            fx.changes.push(Change::IndexMetadata);
        }
        let mut names = HashSet::new();
        for index in &self.new.indexes {
            if !names.insert(lower(&index.name)) {
                let clause = renames
                    .iter()
                    .find(|(_, _, new)| new.eq_ignore_ascii_case(&index.name))
                    .map_or(0, |(c, _, _)| *c);
                return Err((
                    clause,
                    ApplyError::AlreadyExists("index", index.name.clone()),
                ));
            }
        }
        self.follow_columns()
    }

    fn drop_or_rename(
        &mut self,
        clause: usize,
        op: &Op,
        claimed: &mut HashSet<String>,
        renames: &mut Vec<(usize, String, String)>,
    ) -> Result<(), ApplyError> {
        let mut claim = |kind: &'static str, name: &str| {
            if claimed.insert(format!("{kind}:{}", lower(name))) {
                Ok(())
            } else {
                Err(ApplyError::Inapplicable(format!(
                    "{kind} `{name}` is also named by an earlier clause; the server applies every clause \
                     to the table as it was before the statement: make the change in one clause"
                )))
            }
        };
        match op {
            Op::DropIndex { name, if_exists } => match self.old.index(name) {
                Some(index) => {
                    claim("index", name)?;
                    self.new
                        .indexes
                        .retain(|i| !i.name.eq_ignore_ascii_case(name));
                    self.fx[clause]
                        .touches
                        .push(Subject::Index(lower(&index.name)));
                    self.fx[clause]
                        .changes
                        .push(Change::IndexDropped(index.clone()));
                }
                None if *if_exists => self.fx[clause]
                    .changes
                    .push(Change::NoOp(format!("index `{name}` does not exist"))),
                None => return Err(ApplyError::UnknownObject("index", name.clone())),
            },
            Op::DropPrimaryKey => {
                let Some(index) = self.old.primary_key() else {
                    return Err(ApplyError::UnknownObject(
                        "primary key",
                        "PRIMARY".to_owned(),
                    ));
                };
                claim("index", "PRIMARY")?;
                self.new.indexes.retain(|i| i.kind != IndexKind::Primary);
                self.fx[clause]
                    .touches
                    .push(Subject::Index(lower(&index.name)));
                self.fx[clause]
                    .changes
                    .push(Change::IndexDropped(index.clone()));
            }
            Op::RenameIndex { old, new } => {
                let index = self
                    .old
                    .index(old)
                    .ok_or_else(|| ApplyError::UnknownObject("index", old.clone()))?;
                if index.kind == IndexKind::Primary || new.eq_ignore_ascii_case("PRIMARY") {
                    return Err(ApplyError::Inapplicable(
                        "the primary key cannot be renamed".to_owned(),
                    ));
                }
                claim("index", old)?;
                renames.push((clause, old.clone(), new.clone()));
            }
            Op::IndexVisibility { name } => {
                let index = self
                    .old
                    .index(name)
                    .ok_or_else(|| ApplyError::UnknownObject("index", name.clone()))?;
                if index.kind == IndexKind::Primary {
                    return Err(ApplyError::Inapplicable(
                        "the primary key cannot be made invisible".to_owned(),
                    ));
                }
                self.fx[clause].touches.push(Subject::Index(lower(name)));
                self.fx[clause].changes.push(Change::IndexMetadata);
            }
            Op::DropForeignKey { name, if_exists } => {
                if self
                    .old
                    .foreign_keys
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(name))
                {
                    claim("foreign key", name)?;
                    self.drop_foreign_key(clause, name);
                } else if *if_exists {
                    self.fx[clause]
                        .changes
                        .push(Change::NoOp(format!("foreign key `{name}` does not exist")));
                } else {
                    return Err(ApplyError::UnknownObject("foreign key", name.clone()));
                }
            }
            Op::DropCheck { name, if_exists } => {
                if find_check(self.old, name).is_some() {
                    claim("constraint", name)?;
                    self.drop_check(clause, name);
                } else if *if_exists {
                    self.fx[clause].changes.push(Change::NoOp(format!(
                        "check constraint `{name}` does not exist"
                    )));
                } else {
                    return Err(ApplyError::UnknownObject("check constraint", name.clone()));
                }
            }
            Op::DropConstraint { name, if_exists } => {
                if find_check(self.old, name).is_some() {
                    claim("constraint", name)?;
                    self.drop_check(clause, name);
                } else if self
                    .old
                    .foreign_keys
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(name))
                {
                    claim("foreign key", name)?;
                    self.drop_foreign_key(clause, name);
                } else if let Some(index) = self
                    .old
                    .indexes
                    .iter()
                    .find(|i| i.kind.is_unique() && i.name.eq_ignore_ascii_case(name))
                {
                    claim("index", name)?;
                    self.new
                        .indexes
                        .retain(|i| !i.name.eq_ignore_ascii_case(name));
                    self.fx[clause]
                        .touches
                        .push(Subject::Index(lower(&index.name)));
                    self.fx[clause]
                        .changes
                        .push(Change::IndexDropped(index.clone()));
                } else if *if_exists {
                    self.fx[clause]
                        .changes
                        .push(Change::NoOp(format!("constraint `{name}` does not exist")));
                } else {
                    return Err(ApplyError::UnknownObject("constraint", name.clone()));
                }
            }
            Op::CheckEnforcement { name, enforced } => {
                let at = find_check(&self.new, name)
                    .ok_or_else(|| ApplyError::UnknownObject("check constraint", name.clone()))?;
                self.new.checks[at].enforced = *enforced;
                self.fx[clause]
                    .touches
                    .push(Subject::Check(check_key(&self.new.checks[at])));
                self.fx[clause].changes.push(Change::CheckEnforcement {
                    enforced: *enforced,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn drop_foreign_key(&mut self, clause: usize, name: &str) {
        self.new
            .foreign_keys
            .retain(|f| !f.name.eq_ignore_ascii_case(name));
        let fx = &mut self.fx[clause];
        fx.touches.push(Subject::ForeignKey(lower(name)));
        fx.changes.push(Change::ForeignKeyDropped);
    }

    fn drop_check(&mut self, clause: usize, name: &str) {
        if let Some(at) = find_check(&self.new, name) {
            let check = self.new.checks.remove(at);
            let fx = &mut self.fx[clause];
            fx.touches.push(Subject::Check(check_key(&check)));
            fx.changes.push(Change::CheckDropped);
        }
    }

    /// Key parts, foreign keys and MariaDB column checks follow their columns: renamed with
    /// them, gone with them (a foreign key's column cannot go while the key stays).
    fn follow_columns(&mut self) -> Result<(), Failed> {
        // Each existing column's fate by its name before the statement: its new name, or
        // `None` when it was dropped, with the clause that dropped it.
        let mut fates: HashMap<String, Option<String>> = HashMap::new();
        let mut dropped_in: HashMap<String, usize> = HashMap::new();
        for column in &self.old.columns {
            let key = lower(&column.name);
            fates.insert(
                key.clone(),
                self.new.column_by_id(column.id).map(|c| c.name.clone()),
            );
            if let Some((clause, _)) = self.dropped.iter().find(|(_, id)| *id == column.id) {
                dropped_in.insert(key, *clause);
            }
        }
        let fate = |name: &str| fates.get(&lower(name)).cloned();
        let dropped_by = |name: &str| dropped_in.get(&lower(name)).copied().unwrap_or(0);
        let redefined_names: HashSet<String> = self
            .old
            .columns
            .iter()
            .filter(|c| self.redefined.contains_key(&c.id))
            .map(|c| lower(&c.name))
            .collect();
        let mut emptied = Vec::new();
        let mut index_touches = Vec::new();
        let flavor = self.flavor;
        let columns = self.new.columns.clone();
        let column_named = |name: &str| columns.iter().find(|c| c.name.eq_ignore_ascii_case(name));
        for index in &mut self.new.indexes {
            let mut parts = Vec::with_capacity(index.parts.len());
            for mut part in std::mem::take(&mut index.parts) {
                match part.column.as_deref().map(|c| (c.to_owned(), fate(c))) {
                    Some((name, Some(None))) => {
                        index_touches.push((dropped_by(&name), lower(&index.name)));
                    }
                    Some((_, Some(Some(new)))) => {
                        part.column = Some(new);
                        parts.push(part);
                    }
                    _ => parts.push(part),
                }
            }
            // A key part on a column that became TEXT or BLOB needs a prefix: MySQL refuses
            // the statement (error 1170), MariaDB takes the longest prefix a key holds.
            if matches!(
                index.kind,
                IndexKind::Plain | IndexKind::Unique | IndexKind::Primary
            ) {
                for part in &mut parts {
                    let Some(column) = part.column.as_deref().and_then(column_named) else {
                        continue;
                    };
                    let lob = matches!(
                        column.ty.kind,
                        crate::model::TypeKind::Text { .. } | crate::model::TypeKind::Blob { .. }
                    );
                    if !lob || part.prefix.is_some() {
                        continue;
                    }
                    let clause = self
                        .modified
                        .iter()
                        .find(|(_, id)| *id == column.id)
                        .map_or(0, |(c, _)| *c);
                    if flavor == Flavor::Mysql || index.kind != IndexKind::Plain {
                        return Err((
                            clause,
                            ApplyError::Inapplicable(format!(
                                "column `{}` becomes {} but key `{}` has no prefix length for it (MySQL \
                                 error 1170): give the key part a length",
                                column.name, column.ty.kind, index.name
                            )),
                        ));
                    }
                    let bytes = column
                        .ty
                        .charset
                        .as_deref()
                        .map_or(4, crate::model::charset_max_bytes);
                    part.prefix = Some(3072 / bytes);
                }
            }
            index.parts = parts;
            if index.parts.is_empty() {
                emptied.push(index.clone());
            }
        }
        for (clause, name) in index_touches {
            self.fx[clause].touches.push(Subject::Index(name));
        }
        self.new.indexes.retain(|i| !i.parts.is_empty());
        for index in emptied {
            let clause = self
                .fx
                .iter()
                .position(|fx| fx.touches.contains(&Subject::Index(lower(&index.name))))
                .unwrap_or(0);
            self.fx[clause].changes.push(Change::IndexDropped(index));
        }
        for fk in &mut self.new.foreign_keys {
            for column in &mut fk.columns {
                match fate(column) {
                    Some(None) => {
                        return Err((
                            dropped_by(column),
                            ApplyError::Inapplicable(format!(
                                "column `{column}` is used by foreign key `{}`: drop the foreign key in \
                                 the same statement",
                                fk.name
                            )),
                        ));
                    }
                    Some(Some(new)) => *column = new,
                    None => {}
                }
            }
        }
        let mut checks = Vec::with_capacity(self.new.checks.len());
        for mut check in std::mem::take(&mut self.new.checks) {
            let Some(column) = check.column.clone() else {
                checks.push(check);
                continue;
            };
            match fate(&column) {
                // Dropped with its column, or replaced by the checks of the new definition.
                Some(None) => continue,
                Some(Some(_)) if redefined_names.contains(&lower(&column)) => continue,
                Some(Some(new)) => check.column = Some(new),
                None => {}
            }
            checks.push(check);
        }
        self.new.checks = checks;
        Ok(())
    }

    /// Step 4, second half: keys and checks written in the statement, in clause order.
    fn new_constraints(&mut self, ops: &[(usize, &'a Op)]) -> Result<(), Failed> {
        let flavor = self.flavor;
        for &(clause, op) in ops {
            let keys: Vec<KeySpec> = match op {
                Op::AddKey(spec) => vec![spec.clone()],
                Op::AddColumn { spec, .. } => {
                    let Some((_, id, _)) = self
                        .added
                        .iter()
                        .find(|(c, _, s)| *c == clause && std::ptr::eq(*s, spec))
                    else {
                        continue;
                    };
                    let name = self
                        .new
                        .column_by_id(*id)
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    inline_constraints(flavor, spec, &name)
                }
                Op::ChangeColumn { old, spec, .. } => {
                    let Some(column) = self.old.column(old) else {
                        continue;
                    };
                    if !self
                        .redefined
                        .get(&column.id)
                        .is_some_and(|s| std::ptr::eq(*s, spec))
                    {
                        continue;
                    }
                    let name = self
                        .new
                        .column_by_id(column.id)
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    inline_constraints(flavor, spec, &name)
                }
                _ => continue,
            };
            let of_new_column = matches!(op, Op::AddColumn { .. });
            for key in &keys {
                let from = self.fx[clause].changes.len();
                add_key(flavor, &mut self.new, key, &mut self.fx[clause])
                    .map_err(|e| (clause, e))?;
                for change in &mut self.fx[clause].changes[from..] {
                    if let Change::CheckAdded { of_new_column: new } = change {
                        *new = of_new_column;
                    }
                }
            }
        }
        Ok(())
    }

    /// Step 5: everything that is not about columns or constraints, in clause order.
    fn table_level(&mut self, clause: usize, op: &Op) {
        let fx = &mut self.fx[clause];
        match op {
            Op::TableOptions(options) => {
                for option in options {
                    apply_table_option(&mut self.new, option, fx);
                }
            }
            Op::ConvertCharset { charset, collation } => {
                self.new.options.charset = Some(charset.clone());
                self.new.options.collation = collation.clone();
                for column in &mut self.new.columns {
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
                self.new.name = name.clone();
                fx.changes.push(Change::RenameTable);
            }
            Op::Partition(partition) => {
                match partition {
                    PartitionOp::By { .. } => self.new.options.partitioned = true,
                    PartitionOp::Remove => self.new.options.partitioned = false,
                    _ => {}
                }
                fx.changes.push(Change::Partition(partition.clone()));
            }
            Op::Rebuild(what) => fx.changes.push(Change::Rebuild(what)),
            Op::NoRowEffect(what) => fx.changes.push(Change::NoRowEffect(what)),
            Op::Unsupported(what) => fx.changes.push(Change::Unsupported(what.clone())),
            _ => {}
        }
    }

    /// The new table, and for each clause what it touched and changed, column changes judged
    /// on the finished layout (added at the end, moved among the existing columns).
    fn finish(mut self) -> (Table, Vec<ClauseEffects>) {
        let kept: HashSet<u32> = self
            .new
            .columns
            .iter()
            .map(|c| c.id)
            .filter(|id| self.old.column_by_id(*id).is_some())
            .collect();
        let rank = |columns: &[Column], id: u32| {
            columns
                .iter()
                .filter(|c| kept.contains(&c.id))
                .position(|c| c.id == id)
        };
        for &(clause, id) in &self.modified {
            let (Some(before), Some(after)) =
                (self.old.column_by_id(id), self.new.column_by_id(id))
            else {
                continue;
            };
            let moved = self.positioned.contains(&id)
                && rank(&self.old.columns, id) != rank(&self.new.columns, id);
            let mut without_name = after.clone();
            without_name.name = before.name.clone();
            let fx = &mut self.fx[clause];
            if without_name != *before {
                fx.touches.push(Subject::Column(id, Aspect::Definition));
            }
            if before.name != after.name {
                fx.touches.push(Subject::Column(id, Aspect::Name));
            }
            if moved {
                fx.touches.push(Subject::Column(id, Aspect::Position));
            }
            fx.changes.push(Change::ColumnModified {
                before: Box::new(before.clone()),
                after: Box::new(after.clone()),
                moved,
            });
        }
        for &(clause, id, _) in &self.added {
            let Some(at) = self.new.columns.iter().position(|c| c.id == id) else {
                continue;
            };
            let at_end = self.new.columns[at + 1..]
                .iter()
                .all(|c| !kept.contains(&c.id));
            self.fx[clause].changes.push(Change::ColumnAdded {
                column: self.new.columns[at].clone(),
                at_end,
            });
        }
        for (index, fx) in self.fx.iter_mut().enumerate() {
            fx.touches.push(Subject::Clause(index));
        }
        (self.new, self.fx)
    }
}

/// The table's default character set and collation after every table option and `CONVERT TO`
/// of the statement: the server reads them all before it defines a column.
fn new_defaults(options: &TableOptions, ops: &[(usize, &Op)]) -> (Option<String>, Option<String>) {
    let mut options = options.clone();
    for (_, op) in ops {
        match op {
            Op::TableOptions(list) => {
                for option in list {
                    set_charset_option(&mut options, option);
                }
            }
            Op::ConvertCharset { charset, collation } => {
                options.charset = Some(charset.clone());
                options.collation = collation.clone();
            }
            _ => {}
        }
    }
    (options.charset, options.collation)
}

fn set_charset_option(options: &mut TableOptions, option: &TableOption) {
    match option.key.as_str() {
        "CHARSET" => {
            let charset = normalize_charset(&option.value);
            if options.charset.as_deref() != Some(charset.as_str()) {
                options.collation = None;
            }
            options.charset = Some(charset);
        }
        "COLLATE" => {
            let collation = normalize_collation(&option.value);
            options.charset = charset_of_collation(&collation).or(options.charset.take());
            options.collation = Some(collation);
        }
        _ => {}
    }
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
        "CHARSET" | "COLLATE" => set_charset_option(&mut table.options, option),
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
