//! Row-image compatibility between two table definitions: can rows written under one
//! (the writer: the source, still on the old shape) be applied to the other (the applier: a
//! replica already altered)? Row images are matched by position; keys, foreign keys and checks
//! are enforced by the applier.
//!
//! Every finding names the subjects it concerns, so that the analysis can attribute it to the
//! clauses that touched them.

use std::collections::HashSet;

use switchyard_plan::versions::{Flavor, Version};

use crate::apply::{Aspect, Subject};
use crate::constraints::check_key;
use crate::model::{Column, ColumnDefault, ForeignKey, Index, Table, TypeFamily, TypeKind};
use crate::rules::Rule;
use crate::types::{Promotion, TypeOutcome, compare_types, is_enum_append};

/// Which way rows flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Old-shape rows applied on the new table (replica-first rollout).
    OldToNew,
    /// New-shape rows applied on the old table (the other half of "both directions").
    NewToOld,
}

/// A finding before attribution.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub rule: Rule,
    pub reason: String,
    pub subjects: Vec<Subject>,
    pub promotion: Option<Promotion>,
}

impl Found {
    fn new(rule: Rule, reason: impl Into<String>, subjects: Vec<Subject>) -> Self {
        Found {
            rule,
            reason: reason.into(),
            subjects,
            promotion: None,
        }
    }
}

fn quote(name: &str) -> String {
    format!("`{name}`")
}

/// The column layout: shared columns must keep their order and come before any column only
/// one side has. Symmetric, so judged once.
pub(crate) fn layout(old: &Table, new: &Table, moved: &HashSet<u32>) -> Vec<Found> {
    let mut found = Vec::new();
    let old_ids: HashSet<u32> = old.columns.iter().map(|c| c.id).collect();
    let new_ids: HashSet<u32> = new.columns.iter().map(|c| c.id).collect();
    let last_kept_in_old = old.columns.iter().rposition(|c| new_ids.contains(&c.id));
    let last_old_in_new = new.columns.iter().rposition(|c| old_ids.contains(&c.id));
    for (i, column) in old.columns.iter().enumerate() {
        if !new_ids.contains(&column.id) && last_kept_in_old.is_some_and(|last| i < last) {
            found.push(Found::new(
                Rule::ColumnDroppedNotLast,
                format!(
                    "dropping {} shifts every later column by one position; row images are matched by \
                     position, so replication stops or writes values into the wrong columns",
                    quote(&column.name)
                ),
                vec![Subject::Column(column.id, Aspect::Existence)],
            ));
        }
    }
    for (i, column) in new.columns.iter().enumerate() {
        if !old_ids.contains(&column.id) && last_old_in_new.is_some_and(|last| i < last) {
            let generated = if column.generated.is_some() {
                "generated "
            } else {
                ""
            };
            found.push(Found::new(
                Rule::ColumnAddedInMiddle,
                format!(
                    "{generated}column {} is added before existing columns, shifting them; row images are \
                     matched by position, so replication stops or writes values into the wrong columns: \
                     add it at the end",
                    quote(&column.name)
                ),
                vec![Subject::Column(column.id, Aspect::Existence)],
            ));
        }
    }
    let kept_old_order: Vec<u32> = old
        .columns
        .iter()
        .map(|c| c.id)
        .filter(|id| new_ids.contains(id))
        .collect();
    let kept_new_order: Vec<u32> = new
        .columns
        .iter()
        .map(|c| c.id)
        .filter(|id| old_ids.contains(id))
        .collect();
    if kept_old_order != kept_new_order {
        for column in new
            .columns
            .iter()
            .filter(|c| moved.contains(&c.id) && old_ids.contains(&c.id))
        {
            found.push(Found::new(
                Rule::ColumnReordered,
                format!(
                    "moving {} changes the order of existing columns; row images are matched by position, \
                     so values land in the wrong columns (silently when the types match)",
                    quote(&column.name)
                ),
                vec![Subject::Column(column.id, Aspect::Position)],
            ));
        }
    }
    // Trailing columns dropped and trailing columns added overlap in position.
    if let (Some(a), Some(b)) = (last_kept_in_old, last_old_in_new)
        && a == b
    {
        for i in (a + 1)..old.columns.len().min(new.columns.len()) {
            let (gone, added) = (&old.columns[i], &new.columns[i]);
            if !new_ids.contains(&gone.id) && !old_ids.contains(&added.id) {
                found.push(Found::new(
                    Rule::ColumnPositionReused,
                    format!(
                        "new column {} takes the position of dropped column {}: the source's values for {} \
                         would be applied to {}; drop and add in separate rollouts",
                        quote(&added.name),
                        quote(&gone.name),
                        quote(&gone.name),
                        quote(&added.name)
                    ),
                    vec![Subject::Column(gone.id, Aspect::Existence), Subject::Column(added.id, Aspect::Existence)],
                ));
            }
        }
    }
    found
}

fn varies(column: &Column) -> Option<String> {
    if let ColumnDefault::Value {
        text,
        deterministic: false,
    } = &column.default
    {
        return Some(format!("DEFAULT {text}"));
    }
    column.on_update.as_ref().map(|u| format!("ON UPDATE {u}"))
}

/// Rows written under `writer` applied on `applier`, by servers of `flavor` at `version`
/// (`None`: not known; only MariaDB's handling of stored generated columns depends on it).
pub(crate) fn compare(
    flavor: Flavor,
    version: Option<Version>,
    writer: &Table,
    applier: &Table,
    direction: Direction,
    bidirectional: bool,
) -> Vec<Found> {
    let mut found = Vec::new();
    extra_columns(flavor, writer, applier, direction, &mut found);

    let forward = direction == Direction::OldToNew;
    let mut promotions = Vec::new();
    for a in &applier.columns {
        let Some(w) = writer.column_by_id(a.id) else {
            continue;
        };
        let context = Shared {
            flavor,
            version,
            applier,
            forward,
        };
        shared_column(&context, w, a, &mut found, &mut promotions);
    }
    if flavor == Flavor::Mysql {
        let signed = promotions
            .iter()
            .any(|(p, _)| *p == Promotion::SignedInteger);
        let unsigned = promotions
            .iter()
            .any(|(p, _)| *p == Promotion::UnsignedInteger);
        if signed && unsigned {
            let subjects = promotions
                .iter()
                .filter(|(p, _)| *p != Promotion::Other)
                .map(|(_, id)| Subject::Column(*id, Aspect::Definition))
                .collect();
            found.push(Found::new(
                Rule::MixedSignednessWidening,
                "MySQL reads every promoted integer as signed, or with ALL_UNSIGNED every one as unsigned, so \
                 one of the two arrives wrong (4294967295 arrives as 0, measured): widen signed and unsigned \
                 integers in separate rollouts",
                subjects,
            ));
        }
    }
    if !promotions.is_empty() && writer.columns.len() != applier.columns.len() {
        let subjects = promotions
            .iter()
            .map(|(_, id)| Subject::Column(*id, Aspect::Definition))
            .collect();
        found.push(Found::new(
            Rule::WideningWithExtraColumns,
            "a converted column and a different number of columns in one change: the manuals require identical \
             types for shared columns when the column counts differ, but a widened column plus an extra \
             trailing column replicated correctly with ALL_NON_LOSSY on MariaDB 10.11 and MySQL 9.7 (measured, \
             facts file); split the change if the servers run other versions",
            subjects,
        ));
    }

    keys(
        flavor,
        writer,
        applier,
        direction,
        bidirectional,
        &mut found,
    );
    found
}

/// Types whose implicit default the servers cannot give every row: none for a spatial type;
/// MySQL's JSON has none its own ALTER accepts for existing rows, and MySQL's strict mode
/// (with `NO_ZERO_DATE`, its default) refuses the zero date a DATE, DATETIME or TIMESTAMP
/// would take (measured: the primary's ALTER fails with error 1292 on its rows).
fn no_implicit_default(flavor: Flavor, column: &Column) -> bool {
    match column.ty.kind {
        TypeKind::Geometry { .. } | TypeKind::Json => true,
        TypeKind::Date | TypeKind::Datetime { .. } | TypeKind::Timestamp { .. } => {
            flavor == Flavor::Mysql
        }
        _ => false,
    }
}

/// Columns only one side has: the applier fills its own, and ignores the writer's trailing
/// ones.
fn extra_columns(
    flavor: Flavor,
    writer: &Table,
    applier: &Table,
    direction: Direction,
    found: &mut Vec<Found>,
) {
    let writer_ids: HashSet<u32> = writer.columns.iter().map(|c| c.id).collect();
    let applier_ids: HashSet<u32> = applier.columns.iter().map(|c| c.id).collect();
    let forward = direction == Direction::OldToNew;

    // Shared columns end here; only columns after them are "trailing".
    let last_shared_in_applier = applier
        .columns
        .iter()
        .rposition(|c| writer_ids.contains(&c.id));
    let last_shared_in_writer = writer
        .columns
        .iter()
        .rposition(|c| applier_ids.contains(&c.id));
    let trailing = |last: Option<usize>, i: usize| last.is_none_or(|last| i > last);

    // Columns only the applier has: it must fill them itself, the same way on every node.
    for (position, column) in applier
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !writer_ids.contains(&c.id))
    {
        let subject = vec![Subject::Column(column.id, Aspect::Existence)];
        let name = quote(&column.name);
        let side = if forward {
            "the altered replica"
        } else {
            "a node still on the old definition"
        };
        let filled_by_default = column.generated.is_none()
            && !column.nullable
            && matches!(column.default, ColumnDefault::None);
        if column.auto_increment {
            found.push(Found::new(
                Rule::AutoIncrementColumnAdded,
                format!("{side} would number rows in AUTO_INCREMENT column {name} itself, independently of the primary"),
                subject,
            ));
        } else if filled_by_default && (!forward || no_implicit_default(flavor, column)) {
            let rule = if forward {
                Rule::ColumnAddedWithoutDefault
            } else {
                Rule::DroppedColumnWithoutDefault
            };
            found.push(Found::new(
                rule,
                format!(
                    "{side} has column {name} NOT NULL without a DEFAULT, which rows from the other side do \
                     not carry{}: give it a DEFAULT or make it NULL",
                    if forward {
                        " and for which the server has no implicit value its strict mode accepts (the \
                         primary's own ALTER refuses its rows)"
                    } else {
                        ""
                    }
                ),
                subject,
            ));
        } else if let Some(what) = varies(column).filter(|_| column.generated.is_none()) {
            found.push(Found::new(
                Rule::NondeterministicDefault,
                format!(
                    "{side} would fill column {name} with {what} when it applies each row, while the primary \
                     fills existing rows when it runs the ALTER: the values differ between nodes (measured)"
                ),
                subject,
            ));
        } else if forward && trailing(last_shared_in_applier, position) {
            found.push(Found::new(
                Rule::ColumnAddedAtEnd,
                format!(
                    "column {name} is an extra trailing column on the replica, filled with {}; the manuals \
                     allow extra columns after all shared ones",
                    match (&column.generated, &column.default) {
                        (Some(_), _) => "its generated expression".to_owned(),
                        (None, ColumnDefault::Value { text, .. }) => format!("its default {text}"),
                        (None, _) if !column.nullable => format!(
                            "the type's implicit default ({}), as the primary's own ALTER fills its \
                             existing rows (measured on both servers)",
                            implicit_default(column)
                        ),
                        (None, _) => "NULL".to_owned(),
                    }
                ),
                subject,
            ));
        }
    }
    // Columns only the writer has: the applier drops trailing extra columns.
    if forward {
        for (_, column) in
            writer.columns.iter().enumerate().filter(|(i, c)| {
                !applier_ids.contains(&c.id) && trailing(last_shared_in_writer, *i)
            })
        {
            found.push(Found::new(
                Rule::ColumnDroppedAtEnd,
                format!(
                    "the replica ignores the values the source still sends for dropped column {}; extra \
                     trailing columns on the source are allowed",
                    quote(&column.name)
                ),
                vec![Subject::Column(column.id, Aspect::Existence)],
            ));
        }
    }
}

/// The value a NOT NULL column without a DEFAULT takes when a row does not give one.
fn implicit_default(column: &Column) -> &'static str {
    match column.ty.kind.family() {
        TypeFamily::Integer | TypeFamily::Decimal | TypeFamily::Float | TypeFamily::Bit => "0",
        TypeFamily::String | TypeFamily::Binary => "''",
        TypeFamily::Temporal => "the zero date or time",
        TypeFamily::EnumSet if matches!(column.ty.kind, TypeKind::Enum { .. }) => "the first value",
        TypeFamily::EnumSet => "''",
        _ => "the type's zero value",
    }
}

/// What a shared column is judged with.
struct Shared<'a> {
    flavor: Flavor,
    version: Option<Version>,
    applier: &'a Table,
    forward: bool,
}

/// One column both sides have: its type, character set and collation, generation,
/// nullability, and (forward only) the changes that do not matter to row images.
fn shared_column(
    context: &Shared<'_>,
    w: &Column,
    a: &Column,
    found: &mut Vec<Found>,
    promotions: &mut Vec<(Promotion, u32)>,
) {
    let Shared {
        flavor,
        version,
        applier,
        forward,
    } = *context;
    let definition = vec![Subject::Column(a.id, Aspect::Definition)];
    let name = quote(&a.name);
    match compare_types(flavor, &w.ty, &a.ty) {
        TypeOutcome::Same => {
            if is_enum_append(&w.ty.kind, &a.ty.kind) {
                found.push(Found::new(
                    Rule::EnumValueAppended,
                    format!("{name}: values appended at the end keep every stored position"),
                    definition.clone(),
                ));
            }
        }
        TypeOutcome::Convert(promotion, what) => {
            let mut f = Found::new(
                Rule::WideningNeedsConversion,
                format!("{name}: {what}"),
                definition.clone(),
            );
            f.promotion = Some(promotion);
            promotions.push((promotion, a.id));
            found.push(f);
        }
        TypeOutcome::Refuse(rule, why) => found.push(Found::new(
            rule,
            format!("{name}: {why}"),
            definition.clone(),
        )),
    }
    if let Some(f) = collation(w, a, applier, &name, &definition) {
        found.push(f);
    }
    if w.generated != a.generated {
        found.push(generation(flavor, version, w, a, &name, &definition));
    }
    if w.nullable && !a.nullable {
        found.push(Found::new(
            Rule::NullToNotNull,
            format!(
                "{name} becomes NOT NULL{}; a NULL the source writes arrives as 0 or '' (measured), \
                 judged on what the source could write, not on today's data",
                if forward { "" } else { " on the old-shape side" }
            ),
            definition.clone(),
        ));
    } else if forward && !w.nullable && a.nullable {
        found.push(Found::new(
            Rule::NotNullToNull,
            format!("{name} accepts NULL; every value still fits"),
            definition.clone(),
        ));
    }
    if !w.auto_increment && a.auto_increment {
        found.push(Found::new(
            Rule::AutoIncrementAdded,
            format!("{name} becomes AUTO_INCREMENT; a replicated 0 or NULL would be renumbered on the replica"),
            definition.clone(),
        ));
    }
    if !forward {
        return;
    }
    // A nullable column without a DEFAULT clause defaults to NULL.
    let default = |c: &Column| match &c.default {
        ColumnDefault::None if c.nullable => ColumnDefault::Null,
        other => other.clone(),
    };
    if default(w) != default(a) {
        found.push(Found::new(
            Rule::DefaultChange,
            format!(
                "{name}: the default changes; full row images (binlog_row_image=FULL, the default) carry \
                 every value, so the applier never uses it"
            ),
            definition.clone(),
        ));
    }
    if w.comment != a.comment
        || w.invisible != a.invisible
        || w.on_update != a.on_update
        || (w.auto_increment && !a.auto_increment)
    {
        found.push(Found::new(
            Rule::ColumnAttributeChange,
            format!(
                "{name}: comment, visibility, ON UPDATE or AUTO_INCREMENT removal; stored values do not \
                 change (an invisible column is still in every row image)"
            ),
            definition.clone(),
        ));
    }
    if w.name != a.name {
        found.push(Found::new(
            Rule::ColumnRenamed,
            format!(
                "{} is renamed {name} in place; row images are positional, so replication is unaffected, \
                 but queries by the old name fail on altered replicas until every node is altered",
                quote(&w.name)
            ),
            vec![Subject::Column(a.id, Aspect::Name)],
        ));
    }
}

/// True for a collation that compares strings as if padded with spaces (`a` equals `a `):
/// every collation but MySQL's `_0900_` ones, MariaDB's `_nopad_` ones and `binary`.
fn pads_space(collation: &str) -> bool {
    !collation.contains("_0900_") && !collation.contains("nopad") && collation != "binary"
}

/// A collation or character-set change of a string column: safe for row images, but a
/// column in a unique key may see values the source holds as distinct become equal.
fn collation(
    w: &Column,
    a: &Column,
    applier: &Table,
    name: &str,
    definition: &[Subject],
) -> Option<Found> {
    let (wt, at) = (&w.ty, &a.ty);
    if !at.kind.has_charset() || (wt.charset == at.charset && wt.collation == at.collation) {
        return None;
    }
    let describe = |c: &Option<String>| {
        c.clone()
            .unwrap_or_else(|| "the character set's default".to_owned())
    };
    let change = format!(
        "collation {} to {}",
        describe(&wt.collation),
        describe(&at.collation)
    );
    if crate::types::charset_free(&at.kind) {
        return Some(Found::new(
            Rule::CollationChange,
            format!(
                "{name}: the character set or collation changes, but ENUM and SET store positions, which \
                 do not change (measured)"
            ),
            definition.to_vec(),
        ));
    }
    let in_unique = applier
        .indexes
        .iter()
        .any(|i| i.kind.is_unique() && i.columns().any(|c| c.eq_ignore_ascii_case(&a.name)));
    let charsets = (wt.charset.as_deref(), at.charset.as_deref());
    let compatible_sets = match charsets {
        (Some(from), Some(to)) => from != to && crate::types::same_bytes(from, to),
        _ => false,
    };
    if !in_unique {
        if compatible_sets {
            let (from, to) = (
                charsets.0.unwrap_or_default(),
                charsets.1.unwrap_or_default(),
            );
            return Some(Found::new(
                Rule::CollationChange,
                format!(
                    "{name}: character set {from} to {to}; every value the source can write has the same \
                     bytes in both (measured)"
                ),
                definition.to_vec(),
            ));
        }
        // An incompatible character-set change is judged by the type comparison; only say
        // something when the collation alone changes.
        return (wt.charset == at.charset && (wt.collation.is_some() || at.collation.is_some()))
            .then(|| {
                Found::new(
                    Rule::CollationChange,
                    format!("{name}: {change}; the stored bytes are the same in one character set"),
                    definition.to_vec(),
                )
            });
    }
    // The binary collation of a set tells apart every pair of strings a padding collation of
    // the same bytes tells apart.
    let to_bin = match (&wt.collation, &at.collation, &at.charset) {
        (Some(old), Some(new), Some(charset)) => {
            pads_space(old)
                && *new == format!("{charset}_bin")
                && wt
                    .charset
                    .as_deref()
                    .is_some_and(|c| old.starts_with(&format!("{c}_")))
        }
        _ => false,
    };
    if to_bin && wt.charset == at.charset {
        return Some(Found::new(
            Rule::CollationChange,
            format!(
                "{name}: {change} on a column of a unique key; the binary collation tells apart every pair \
                 of values the old one did, so nothing the source holds as distinct collides"
            ),
            definition.to_vec(),
        ));
    }
    Some(Found::new(
        Rule::CollationChangeInUniqueKey,
        format!(
            "{name}: {change} on a column of a unique key; values the source holds as distinct ('abc' and \
             'ABC' under a binary collation) may be duplicates under the new one and stop replication \
             (measured), or the change is not known: name both collations"
        ),
        definition.to_vec(),
    ))
}

/// A generated column whose expression or storage changes.
fn generation(
    flavor: Flavor,
    version: Option<Version>,
    w: &Column,
    a: &Column,
    name: &str,
    definition: &[Subject],
) -> Found {
    let subjects = definition.to_vec();
    match (&w.generated, &a.generated) {
        (Some(old), Some(new)) if !old.stored && !new.stored => Found::new(
            Rule::GeneratedExpressionChanged,
            format!(
                "{name}: the VIRTUAL column's expression changes; the replica computes it when rows are read \
                 and stores nothing the source sends for it (measured on both flavors)"
            ),
            subjects,
        ),
        (Some(old), Some(new)) if old.stored && new.stored => {
            let computes =
                flavor == Flavor::Mysql || version.is_some_and(|v| v >= Version::new(11, 8, 0));
            if computes {
                Found::new(
                    Rule::GeneratedExpressionChanged,
                    format!(
                        "{name}: the STORED column's expression changes; {} computes it from the row's \
                         other values when it applies a row (measured)",
                        if flavor == Flavor::Mysql {
                            "MySQL"
                        } else {
                            "MariaDB 11.8"
                        }
                    ),
                    subjects,
                )
            } else {
                Found::new(
                    Rule::GeneratedColumnChange,
                    format!(
                        "{name}: the STORED column's expression changes; MariaDB 10.11 stores the value the \
                         source computed with the old expression (measured; 11.8 computes it: give the \
                         server version)"
                    ),
                    subjects,
                )
            }
        }
        _ => Found::new(
            Rule::GeneratedColumnChange,
            format!(
                "{name}: the column becomes or stops being generated; switchyard has not measured how each \
                 server fills it from replicated rows: run it as a normal replicated ALTER"
            ),
            subjects,
        ),
    }
}

/// True when every named column exists only on the applier, which fills it the same way for
/// every replicated row: with NULL (`null_only`), or also with a constant default. A key,
/// foreign key or check on nothing but such columns constrains nothing the other side writes
/// (NULLs never collide in a unique key and are not checked against a parent).
fn only_filled_by_applier<'a>(
    writer: &Table,
    applier: &Table,
    mut columns: impl Iterator<Item = &'a str>,
    null_only: bool,
) -> bool {
    let mut any = false;
    let all = columns.all(|name| {
        any = true;
        applier.column(name).is_some_and(|c| {
            writer.column_by_id(c.id).is_none()
                && c.generated.is_none()
                && !c.auto_increment
                && match &c.default {
                    ColumnDefault::None => c.nullable,
                    ColumnDefault::Null => true,
                    ColumnDefault::Value { deterministic, .. } => !null_only && *deterministic,
                }
        })
    });
    any && all
}

/// The columns of `table` an expression names.
fn referenced_columns(table: &Table, expression: &str) -> Vec<String> {
    let Ok(lexed) = crate::lex::lex(expression, crate::lex::ExecutableComments::Unwrap) else {
        return Vec::new();
    };
    let mut names: Vec<String> = lexed
        .tokens
        .iter()
        .filter(|t| t.is_identifier())
        .filter_map(|t| table.column(&t.value).map(|c| c.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Key parts as column identities, so that renames compare equal.
fn part_ids(table: &Table, index: &Index) -> Vec<(Option<u32>, Option<String>, Option<u32>)> {
    index
        .parts
        .iter()
        .map(|p| {
            let id = p
                .column
                .as_deref()
                .and_then(|c| table.column(c))
                .map(|c| c.id);
            (id, p.expression.clone(), p.prefix)
        })
        .collect()
}

/// True when uniqueness of `key` in `key_table` implies uniqueness of `target` in `target_table`:
/// the key's columns are a subset of the target's, with prefixes at least as long.
fn implies(key_table: &Table, key: &Index, target_table: &Table, target: &Index) -> bool {
    let key_parts = part_ids(key_table, key);
    let target_parts = part_ids(target_table, target);
    key_parts.iter().all(|(id, expression, prefix)| {
        let Some(id) = id else { return false };
        expression.is_none()
            && target_parts.iter().any(|(tid, _, tprefix)| {
                *tid == Some(*id)
                    && match (prefix, tprefix) {
                        (_, None) => true,
                        (Some(p), Some(q)) => q >= p,
                        (None, Some(_)) => false,
                    }
            })
    })
}

fn same_index(a_table: &Table, a: &Index, b_table: &Table, b: &Index) -> bool {
    a.kind == b.kind && part_ids(a_table, a) == part_ids(b_table, b)
}

fn fk_signature(table: &Table, fk: &ForeignKey) -> (Vec<Option<u32>>, String, Vec<String>) {
    (
        fk.columns
            .iter()
            .map(|c| table.column(c).map(|col| col.id))
            .collect(),
        fk.referenced_table.to_lowercase(),
        fk.referenced_columns
            .iter()
            .map(|c| c.to_lowercase())
            .collect(),
    )
}

fn keys(
    flavor: Flavor,
    writer: &Table,
    applier: &Table,
    direction: Direction,
    bidirectional: bool,
    found: &mut Vec<Found>,
) {
    let forward = direction == Direction::OldToNew;
    let side = if forward {
        "the altered replica"
    } else {
        "a node still on the old definition"
    };
    for target in applier.indexes.iter().filter(|i| i.kind.is_unique()) {
        let implied = writer
            .indexes
            .iter()
            .filter(|k| k.kind.is_unique())
            .any(|k| implies(writer, k, applier, target));
        let on_null_filled = target.parts.iter().all(|p| p.column.is_some())
            && only_filled_by_applier(writer, applier, target.columns(), true);
        if !implied && !on_null_filled {
            found.push(Found::new(
                Rule::UniqueKeyAdded,
                format!(
                    "{side} enforces {} key `{}` that the other side does not: a duplicate written there would \
                     stop replication (judged on what could be written, not on today's data)",
                    if target.kind == crate::model::IndexKind::Primary { "PRIMARY" } else { "UNIQUE" },
                    target.name
                ),
                vec![Subject::Index(target.name.to_lowercase())],
            ));
        }
    }
    if writer.primary_key().is_some()
        && applier.primary_key().is_none()
        && (bidirectional || !applier.has_row_identity())
    {
        found.push(Found::new(
            Rule::PrimaryKeyDropped,
            format!(
                "{side} has no primary key{}: it must find each replicated row by scanning the table, which \
                 stalls replication on large tables",
                if bidirectional { " (Galera requires one on every table)" } else { " and no NOT NULL unique key" }
            ),
            vec![Subject::Index("primary".to_owned())],
        ));
    }
    if forward {
        for index in &applier.indexes {
            if writer
                .indexes
                .iter()
                .any(|w| same_index(writer, w, applier, index))
            {
                continue;
            }
            let reason = if !index.kind.is_unique() {
                format!(
                    "index `{}` is added or changed; indexes do not change row images",
                    index.name
                )
            } else if writer
                .indexes
                .iter()
                .filter(|k| k.kind.is_unique())
                .any(|k| implies(writer, k, applier, index))
            {
                format!(
                    "unique key `{}` enforces nothing new: an existing unique key already implies it",
                    index.name
                )
            } else {
                continue;
            };
            found.push(Found::new(
                Rule::IndexChange,
                reason,
                vec![Subject::Index(index.name.to_lowercase())],
            ));
        }
        for index in &writer.indexes {
            if !applier
                .indexes
                .iter()
                .any(|a| same_index(writer, index, applier, a))
            {
                found.push(Found::new(
                    Rule::IndexChange,
                    format!(
                        "index `{}` is dropped or changed; the replica accepts every row the source accepts",
                        index.name
                    ),
                    vec![Subject::Index(index.name.to_lowercase())],
                ));
            }
        }
        // Renamed or hidden indexes that are otherwise identical.
        for index in &applier.indexes {
            if writer
                .indexes
                .iter()
                .any(|w| same_index(writer, w, applier, index) && w.name != index.name)
            {
                found.push(Found::new(
                    Rule::IndexChange,
                    format!(
                        "index `{}` is renamed; indexes do not change row images",
                        index.name
                    ),
                    vec![Subject::Index(index.name.to_lowercase())],
                ));
            }
        }
    }
    for fk in &applier.foreign_keys {
        let matching = writer.foreign_keys.iter().any(|w| {
            fk_signature(writer, w) == fk_signature(applier, fk)
                && w.on_delete == fk.on_delete
                && w.on_update == fk.on_update
        });
        let on_null_filled =
            only_filled_by_applier(writer, applier, fk.columns.iter().map(String::as_str), true);
        if !matching && !on_null_filled {
            found.push(Found::new(
                Rule::ForeignKeyAdded,
                format!(
                    "{side} enforces foreign key `{}` that the other side does not: a row written there without \
                     a parent stops replication, and cascading actions would change rows only on this side",
                    fk.name
                ),
                vec![Subject::ForeignKey(fk.name.to_lowercase())],
            ));
        }
    }
    for fk in &writer.foreign_keys {
        let kept = applier.foreign_keys.iter().any(|a| {
            fk_signature(writer, fk) == fk_signature(applier, a)
                && a.on_delete == fk.on_delete
                && a.on_update == fk.on_update
        });
        if kept {
            continue;
        }
        if fk.cascades() {
            found.push(Found::new(
                Rule::ForeignKeyCascadeDropped,
                format!(
                    "foreign key `{}` has cascading actions; the rows they change are not written to the binary \
                     log, so {side} would no longer make those changes",
                    fk.name
                ),
                vec![Subject::ForeignKey(fk.name.to_lowercase())],
            ));
        } else if forward {
            found.push(Found::new(
                Rule::ForeignKeyDropped,
                format!("foreign key `{}` without cascading actions is dropped; the replica accepts every row", fk.name),
                vec![Subject::ForeignKey(fk.name.to_lowercase())],
            ));
        }
    }
    let expression =
        |c: &crate::model::CheckConstraint| crate::column::normalize_expression(&c.expression);
    for check in applier.checks.iter().filter(|c| c.enforced) {
        let referenced = referenced_columns(applier, &check.expression);
        let on_own_columns = !referenced.is_empty()
            && only_filled_by_applier(
                writer,
                applier,
                referenced.iter().map(String::as_str),
                false,
            );
        if !on_own_columns
            && !writer
                .checks
                .iter()
                .any(|w| w.enforced && expression(w) == expression(check))
        {
            let mut subjects = vec![Subject::Check(check_key(check))];
            if let Some(column) = check.column.as_deref().and_then(|c| applier.column(c)) {
                subjects.push(Subject::Column(column.id, Aspect::Definition));
            }
            let what = match flavor {
                Flavor::Mysql => {
                    "MySQL's applier evaluates it on replicated rows, so a row written there that fails it \
                     stops replication (error 3819, measured)"
                }
                Flavor::Mariadb => {
                    "MariaDB's applier does not evaluate CHECK constraints on replicated rows (measured), so \
                     rows that fail it are stored although the constraint forbids them, and the primary's \
                     own ALTER then refuses its rows that fail it (error 4025): the rollout cannot finish"
                }
            };
            found.push(Found::new(
                Rule::CheckConstraintAdded,
                format!(
                    "{side} enforces CHECK ({}) that the other side does not: {what}",
                    check.expression
                ),
                subjects,
            ));
        }
    }
    if forward {
        for check in writer.checks.iter().filter(|c| c.enforced) {
            if !applier
                .checks
                .iter()
                .any(|a| a.enforced && expression(a) == expression(check))
            {
                let mut subjects = vec![Subject::Check(check_key(check))];
                if let Some(column) = check.column.as_deref().and_then(|c| writer.column(c)) {
                    subjects.push(Subject::Column(column.id, Aspect::Definition));
                }
                found.push(Found::new(
                    Rule::CheckConstraintDropped,
                    format!(
                        "CHECK ({}) is dropped or relaxed; the replica accepts every row",
                        check.expression
                    ),
                    subjects,
                ));
            }
        }
    }
}
