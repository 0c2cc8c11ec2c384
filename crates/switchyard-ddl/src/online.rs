//! Whether the primary can take a clause online (INSTANT, or INPLACE with concurrent writes,
//! LOCK=NONE) or needs a switchover to an altered replica first.
//!
//! From the MySQL manual's "Online DDL Operations" and the MariaDB knowledge base's "InnoDB
//! Online DDL Operations with ALGORITHM=INSTANT/NOCOPY/INPLACE". Where the manuals leave doubt
//! (FULLTEXT tables, unmodelled options, partition maintenance) the answer is `switchover`,
//! which is always correct, only slower.

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::{Flavor, Version};

use crate::alter::PartitionOp;
use crate::apply::Change;
use crate::model::{IndexKind, Table, TypeKind, charset_max_bytes};
use crate::types::is_enum_append;

/// How the primary can take the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryMode {
    /// In place while it keeps taking writes (INSTANT, or INPLACE with LOCK=NONE).
    Online,
    /// Only after a switchover to an already altered replica: the change blocks writes or copies
    /// the table.
    Switchover,
}

/// The algorithm the server uses for a clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Metadata only.
    Instant,
    /// In place (possibly rebuilding the table).
    Inplace,
    /// A copy of the table.
    Copy,
}

impl PrimaryMode {
    /// `Online` when `online`, else `Switchover` (as a schema target records the judgement).
    pub fn from_online(online: bool) -> Self {
        if online {
            PrimaryMode::Online
        } else {
            PrimaryMode::Switchover
        }
    }

    /// The serialised form (`online`, `switchover`).
    pub fn as_str(self) -> &'static str {
        match self {
            PrimaryMode::Online => "online",
            PrimaryMode::Switchover => "switchover",
        }
    }
}

impl std::fmt::Display for PrimaryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Algorithm {
    /// The serialised form (`instant`, `inplace`, `copy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Instant => "instant",
            Algorithm::Inplace => "inplace",
            Algorithm::Copy => "copy",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The primary's judgement for one clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrimaryJudgement {
    pub algorithm: Algorithm,
    pub blocks_writes: bool,
    pub reason: String,
}

impl PrimaryJudgement {
    pub(crate) fn mode(&self) -> PrimaryMode {
        // A copy blocks writes, except MariaDB 11.2+'s online copy, judged not blocking.
        if self.blocks_writes {
            PrimaryMode::Switchover
        } else {
            PrimaryMode::Online
        }
    }
}

fn j(algorithm: Algorithm, blocks_writes: bool, reason: impl Into<String>) -> PrimaryJudgement {
    PrimaryJudgement {
        algorithm,
        blocks_writes,
        reason: reason.into(),
    }
}

/// What the server can do, by flavor and version. Without a version, current releases are
/// assumed (MySQL 8.0.29 or later, MariaDB 10.4 or later); the online/switchover answer does
/// not depend on it within the releases switchyard supports, only the algorithm named does.
struct Capabilities {
    flavor: Flavor,
    version: Option<Version>,
}

impl Capabilities {
    fn at_least(&self, major: u16, minor: u16, patch: u16) -> bool {
        self.version
            .is_none_or(|v| v >= Version::new(major, minor, patch))
    }

    fn instant_add(&self, at_end: bool) -> bool {
        match self.flavor {
            Flavor::Mysql => self.at_least(8, 0, 29) || (at_end && self.at_least(8, 0, 12)),
            Flavor::Mariadb => self.at_least(10, 4, 0) || (at_end && self.at_least(10, 3, 2)),
        }
    }

    /// MariaDB 11.2 and later copy a table with concurrent writes (MDEV-16329).
    fn copies_online(&self) -> bool {
        self.flavor == Flavor::Mariadb && self.version.is_some_and(|v| v >= Version::new(11, 2, 0))
    }

    fn instant_drop_or_reorder(&self) -> bool {
        match self.flavor {
            Flavor::Mysql => self.at_least(8, 0, 29),
            Flavor::Mariadb => self.at_least(10, 4, 0),
        }
    }
}

/// Measured on MariaDB 10.11 (error 1846 with LOCK=NONE).
const MARIADB_VIRTUAL_REORDER: &str = "MariaDB cannot place a column among the others in place on a \
                                       table with VIRTUAL columns: the table is copied";

/// Measured on MariaDB 10.5 and 10.11 (error 1846 with LOCK=NONE).
const MARIADB_INDEXED_VIRTUAL: &str = "MariaDB rebuilds, adds to or drops from a table with an indexed \
                                       VIRTUAL column only by copying it (\"online rebuild with indexed \
                                       virtual columns\" is not supported)";

/// True when `table` has a VIRTUAL generated column in an index.
fn has_indexed_virtual(table: &Table) -> bool {
    table
        .columns
        .iter()
        .filter(|c| c.generated.as_ref().is_some_and(|g| !g.stored))
        .any(|c| {
            table
                .indexes
                .iter()
                .any(|i| i.columns().any(|n| n.eq_ignore_ascii_case(&c.name)))
        })
}

/// True for the changes MariaDB makes by rebuilding the table (or instantly only on a table
/// without indexed VIRTUAL columns): columns added, dropped, moved or made NOT NULL, the
/// primary key, FORCE and the options that rebuild. Measured on 10.5 and 10.11: a secondary
/// index, a VARCHAR extended in place, a default or a rename are taken with LOCK=NONE there.
fn mariadb_rebuilds(change: &Change) -> bool {
    match change {
        Change::ColumnAdded { .. } | Change::ColumnDropped | Change::ConvertCharset => true,
        Change::ColumnModified {
            before,
            after,
            moved,
        } => *moved || (before.nullable && !after.nullable),
        Change::IndexAdded(index) | Change::IndexDropped(index) => index.kind == IndexKind::Primary,
        Change::Rebuild(_) => true,
        Change::TableOption { key, .. } => matches!(
            key.as_str(),
            "ENGINE"
                | "ROW_FORMAT"
                | "KEY_BLOCK_SIZE"
                | "PAGE_COMPRESSED"
                | "PAGE_COMPRESSION_LEVEL"
        ),
        _ => false,
    }
}

/// Measured on MariaDB 10.5, 10.11 and 11.8 (error 1845 with ALGORITHM=INPLACE).
const MARIADB_NOT_NULL_STORED: &str = "MariaDB makes a column NOT NULL (by MODIFY or by a primary key \
                                       over it) only with a table copy when the table has STORED \
                                       generated columns";

const FULLTEXT_REBUILD: &str = "the table has a FULLTEXT index; rebuilding it in place is not judged safe for \
                                concurrent writes";

/// Judges one clause from what it changed. `before` is the table before the statement;
/// `statement_adds_primary` tells whether another clause of the statement adds a primary key.
pub(crate) fn judge(
    flavor: Flavor,
    version: Option<Version>,
    before: &Table,
    changes: &[Change],
    statement_adds_primary: bool,
) -> PrimaryJudgement {
    let caps = Capabilities { flavor, version };
    let mut worst: Option<PrimaryJudgement> = None;
    for change in changes {
        let mut judgement = judge_change(&caps, before, change, statement_adds_primary);
        if judgement.mode() == PrimaryMode::Switchover
            && caps.copies_online()
            && copies_online(before, change)
        {
            judgement = j(
                Algorithm::Copy,
                false,
                format!(
                    "MariaDB 11.2 and later copy the table with concurrent writes when asked for \
                     LOCK=NONE (the online change buffer; knowledge base, \"Online Schema Change\"), \
                     where earlier releases block writes: {}",
                    judgement.reason
                ),
            );
        }
        worst = Some(match worst {
            None => judgement,
            Some(current) => worst_of(vec![current, judgement]),
        });
    }
    worst.unwrap_or_else(|| j(Algorithm::Instant, false, "nothing to do"))
}

/// True when MariaDB 11.2+ takes `change`'s table copy with LOCK=NONE. Measured on MariaDB
/// 11.8 (`tests/primary_online.rs`): it copies online whatever the copy is for (a type
/// change, a FULLTEXT, SPATIAL or VECTOR index, a foreign key, a storage engine, a table with
/// a FULLTEXT index), except an AUTO_INCREMENT column added (error 1846: its values would
/// depend on the order the rows are copied in), a table whose foreign keys cascade or set
/// NULL (error 1846: the cascaded changes bypass the online change buffer), and partition
/// operations (no LOCK clause). A named ALGORITHM or LOCK is kept as written, and what
/// switchyard does not model stays blocking.
fn copies_online(before: &Table, change: &Change) -> bool {
    if before.foreign_keys.iter().any(|fk| fk.cascades()) {
        return false;
    }
    match change {
        Change::ColumnAdded { column, .. } => !column.auto_increment,
        Change::ColumnModified { .. }
        | Change::ColumnDropped
        | Change::CheckAdded { .. }
        | Change::CheckEnforcement { .. }
        | Change::ConvertCharset
        | Change::IndexAdded(_)
        | Change::IndexDropped(_)
        | Change::ForeignKeyAdded
        | Change::TableOption { .. }
        | Change::Rebuild(_) => true,
        _ => false,
    }
}

/// One change's judgement on the flavor and version of `caps`.
fn judge_change(
    caps: &Capabilities,
    before: &Table,
    change: &Change,
    statement_adds_primary: bool,
) -> PrimaryJudgement {
    let flavor = caps.flavor;
    let product = flavor.product_name();
    let fulltext = before.has_fulltext();
    let mariadb_virtual = flavor == Flavor::Mariadb
        && before
            .columns
            .iter()
            .any(|c| c.generated.as_ref().is_some_and(|g| !g.stored));
    // Measured on MariaDB 10.5, 10.11 and 11.8 (error 1845 with ALGORITHM=INPLACE): a column
    // made NOT NULL, by MODIFY or by a primary key over it, copies a table with STORED
    // generated columns.
    let mariadb_stored = flavor == Flavor::Mariadb
        && before
            .columns
            .iter()
            .any(|c| c.generated.as_ref().is_some_and(|g| g.stored));
    if flavor == Flavor::Mariadb && has_indexed_virtual(before) && mariadb_rebuilds(change) {
        return j(Algorithm::Copy, true, MARIADB_INDEXED_VIRTUAL);
    }
    let rebuild = |online_reason: &str| {
        if fulltext {
            j(Algorithm::Inplace, true, FULLTEXT_REBUILD)
        } else {
            j(Algorithm::Inplace, false, online_reason.to_owned())
        }
    };
    match change {
        Change::ColumnAdded { column, at_end } => {
            if column.auto_increment {
                j(
                    Algorithm::Inplace,
                    true,
                    "adding an AUTO_INCREMENT column does not permit concurrent writes",
                )
            } else if column.generated.as_ref().is_some_and(|g| g.stored) {
                j(
                    Algorithm::Copy,
                    true,
                    "adding a STORED generated column copies the table",
                )
            } else if column.generated.is_some() && !*at_end {
                // Measured on MariaDB 10.11 and MySQL 9.7: error 1846 with LOCK=NONE.
                j(
                    Algorithm::Copy,
                    true,
                    "adding a VIRTUAL generated column before other columns cannot run in place with the \
                     reordering it needs: the table is copied",
                )
            } else if column.generated.is_some() {
                j(
                    Algorithm::Instant,
                    false,
                    "adding a VIRTUAL generated column changes only metadata",
                )
            } else if fulltext {
                j(Algorithm::Inplace, true, FULLTEXT_REBUILD)
            } else if !*at_end && mariadb_virtual {
                j(Algorithm::Copy, true, MARIADB_VIRTUAL_REORDER)
            } else if caps.instant_add(*at_end) {
                j(
                    Algorithm::Instant,
                    false,
                    format!("{product} adds the column with ALGORITHM=INSTANT"),
                )
            } else {
                j(
                    Algorithm::Inplace,
                    false,
                    "adding a column rebuilds the table in place with concurrent writes",
                )
            }
        }
        Change::ColumnDropped => {
            if fulltext {
                j(Algorithm::Inplace, true, FULLTEXT_REBUILD)
            } else if caps.instant_drop_or_reorder() {
                j(
                    Algorithm::Instant,
                    false,
                    format!("{product} drops the column with ALGORITHM=INSTANT"),
                )
            } else {
                j(
                    Algorithm::Inplace,
                    false,
                    "dropping a column rebuilds the table in place with concurrent writes",
                )
            }
        }
        Change::ColumnModified {
            before: old,
            after: new,
            moved,
        } => {
            let mut parts = Vec::new();
            if old.ty != new.ty {
                let indexed = before
                    .indexes
                    .iter()
                    .any(|i| i.columns().any(|c| c.eq_ignore_ascii_case(&old.name)));
                let collation_only = old.ty.kind == new.ty.kind
                    && matches!(old.ty.kind, TypeKind::Char { varying: true, .. })
                    && old.ty.charset == new.ty.charset
                    && old.ty.unsigned == new.ty.unsigned
                    && old.ty.compressed == new.ty.compressed;
                if indexed
                    && collation_only
                    && flavor == Flavor::Mariadb
                    && caps.at_least(10, 11, 0)
                {
                    // Measured: LOCK=NONE taken on 10.11 (the indexes are rebuilt in place),
                    // refused on 10.5 and by MySQL 9.7.
                    parts.push(j(
                        Algorithm::Inplace,
                        false,
                        "MariaDB 10.11 changes an indexed VARCHAR's collation in place, \
                         rebuilding its indexes with concurrent writes",
                    ));
                } else {
                    parts.push(type_change(flavor, old, new, indexed));
                }
            }
            let virtual_expression_only = flavor == Flavor::Mariadb
                && old.ty == new.ty
                && old
                    .generated
                    .as_ref()
                    .zip(new.generated.as_ref())
                    .is_some_and(|(o, n)| !o.stored && !n.stored)
                && !before
                    .indexes
                    .iter()
                    .any(|i| i.columns().any(|c| c.eq_ignore_ascii_case(&old.name)));
            if old.generated != new.generated {
                if virtual_expression_only {
                    // Measured on MariaDB 10.5 and 10.11: taken with LOCK=NONE; refused when
                    // the column is indexed, and by MySQL.
                    parts.push(j(
                        Algorithm::Instant,
                        false,
                        "MariaDB changes an unindexed VIRTUAL column's expression without a copy \
                         (nothing is stored)",
                    ));
                } else {
                    parts.push(j(
                        Algorithm::Copy,
                        true,
                        "changing a generated column copies the table",
                    ));
                }
            }
            if old.auto_increment != new.auto_increment {
                parts.push(j(
                    Algorithm::Copy,
                    true,
                    "adding or removing AUTO_INCREMENT copies the table",
                ));
            }
            if old.nullable != new.nullable {
                if flavor == Flavor::Mariadb && new.nullable && caps.at_least(10, 4, 0) {
                    parts.push(j(
                        Algorithm::Instant,
                        false,
                        "MariaDB makes a column NULL instantly",
                    ));
                } else if mariadb_stored && !new.nullable {
                    parts.push(j(Algorithm::Copy, true, MARIADB_NOT_NULL_STORED));
                } else {
                    parts.push(rebuild(
                        "changing NULL/NOT NULL rebuilds the table in place with concurrent writes",
                    ));
                }
            }
            if *moved {
                if fulltext {
                    parts.push(j(Algorithm::Inplace, true, FULLTEXT_REBUILD));
                } else if mariadb_virtual {
                    parts.push(j(Algorithm::Copy, true, MARIADB_VIRTUAL_REORDER));
                } else if caps.instant_drop_or_reorder() {
                    parts.push(j(
                        Algorithm::Instant,
                        false,
                        format!("{product} reorders columns instantly"),
                    ));
                } else {
                    parts.push(j(
                        Algorithm::Inplace,
                        false,
                        "reordering rebuilds the table in place with concurrent writes",
                    ));
                }
            }
            if parts.is_empty() {
                parts.push(j(
                    Algorithm::Instant,
                    false,
                    "a rename, default, comment or visibility change is metadata only",
                ));
            }
            worst_of(parts)
        }
        Change::IndexAdded(index) => match index.kind {
            IndexKind::Primary
                if mariadb_stored
                    && index
                        .columns()
                        .any(|c| before.column(c).is_some_and(|c| c.nullable)) =>
            {
                j(Algorithm::Copy, true, MARIADB_NOT_NULL_STORED)
            }
            IndexKind::Primary => {
                rebuild("adding a primary key rebuilds the table in place with concurrent writes")
            }
            IndexKind::Unique | IndexKind::Plain => j(
                Algorithm::Inplace,
                false,
                "adding a secondary index runs in place with concurrent writes",
            ),
            IndexKind::Fulltext => j(
                Algorithm::Inplace,
                true,
                "adding a FULLTEXT index blocks writes (LOCK=SHARED)",
            ),
            IndexKind::Spatial => j(
                Algorithm::Inplace,
                true,
                "adding a SPATIAL index blocks writes (LOCK=SHARED)",
            ),
            IndexKind::Vector => j(
                Algorithm::Copy,
                true,
                "adding a VECTOR index is not judged online",
            ),
        },
        Change::IndexDropped(index) => {
            if index.kind == IndexKind::Primary && !statement_adds_primary {
                j(
                    Algorithm::Copy,
                    true,
                    "dropping the primary key without adding another copies the table",
                )
            } else if index.kind == IndexKind::Primary {
                rebuild(
                    "replacing the primary key rebuilds the table in place with concurrent writes",
                )
            } else {
                j(
                    Algorithm::Instant,
                    false,
                    "dropping an index is metadata only",
                )
            }
        }
        Change::IndexMetadata => j(
            Algorithm::Instant,
            false,
            "renaming or hiding an index is metadata only",
        ),
        Change::ForeignKeyAdded => j(
            Algorithm::Copy,
            true,
            "adding a foreign key copies the table unless foreign_key_checks=0",
        ),
        Change::ForeignKeyDropped => j(
            Algorithm::Inplace,
            false,
            "dropping a foreign key is metadata only",
        ),
        // Measured on MariaDB 10.5 and 10.11: LOCK=NONE taken for ADD COLUMN ... CHECK and
        // ADD COLUMN ... JSON (a column-level CHECK), refused (error 1845) for a table-level
        // ADD CONSTRAINT ... CHECK, even on the new column; MySQL copies for either.
        Change::CheckAdded {
            of_new_column: true,
        } if flavor == Flavor::Mariadb => j(
            Algorithm::Instant,
            false,
            "MariaDB adds a column's own CHECK with the column, without validating the rows",
        ),
        Change::CheckAdded { .. } | Change::CheckEnforcement { enforced: true } => j(
            Algorithm::Copy,
            true,
            "enforcing a CHECK constraint validates every row with a table copy",
        ),
        Change::CheckDropped | Change::CheckEnforcement { enforced: false } => j(
            Algorithm::Instant,
            false,
            "dropping or relaxing a CHECK constraint is metadata only",
        ),
        Change::TableOption {
            key,
            engine_changed,
        } => table_option(key, *engine_changed, fulltext),
        Change::ConvertCharset => j(
            Algorithm::Copy,
            true,
            "CONVERT TO CHARACTER SET copies the table",
        ),
        Change::Algorithm(algorithm) if algorithm == "COPY" => j(
            Algorithm::Copy,
            true,
            "ALGORITHM=COPY copies the table and blocks writes",
        ),
        Change::Lock(lock) if lock == "SHARED" || lock == "EXCLUSIVE" => j(
            Algorithm::Instant,
            true,
            format!("LOCK={lock} blocks writes for the whole statement"),
        ),
        Change::Algorithm(_) | Change::Lock(_) => {
            j(Algorithm::Instant, false, "no cost of its own")
        }
        Change::RenameTable => j(
            Algorithm::Instant,
            false,
            "renaming a table is metadata only",
        ),
        Change::Partition(PartitionOp::Maintenance(verb)) if verb == "ANALYZE" => {
            j(Algorithm::Instant, false, "ANALYZE PARTITION only reads")
        }
        Change::Partition(_) => j(
            Algorithm::Copy,
            true,
            "partition changes are not judged online; switchyard moves the primary role first",
        ),
        Change::Rebuild(what) if *what == "FORCE" => {
            rebuild("FORCE rebuilds the table in place with concurrent writes")
        }
        Change::Rebuild(what) => j(Algorithm::Copy, true, format!("{what} copies the table")),
        Change::NoRowEffect(what) => j(
            Algorithm::Instant,
            false,
            format!("{what} changes nothing InnoDB stores"),
        ),
        Change::NoOp(_) => j(Algorithm::Instant, false, "nothing to do"),
        Change::Unsupported(_) => j(Algorithm::Copy, true, "not modelled; judged as blocking"),
    }
}

fn worst_of(parts: Vec<PrimaryJudgement>) -> PrimaryJudgement {
    parts
        .into_iter()
        .max_by_key(|p| (p.mode(), p.algorithm))
        .unwrap_or_else(|| j(Algorithm::Instant, false, "nothing to do"))
}

/// Type changes the servers were measured to take in place with LOCK=NONE
/// (`tests/primary_online.rs`, on MariaDB 10.5 and 10.11 and MySQL 9.7): a collation change
/// within one character set, FLOAT/DOUBLE digits, utf8mb3 to utf8mb4 within one
/// length-prefix size; on MySQL also text to binary of the same storage and an ENUM/SET
/// character set. Not for a column in an index: a collation change there is refused
/// (MariaDB 10.5, MySQL 9.7).
fn measured_in_place(
    flavor: Flavor,
    old: &crate::model::Column,
    new: &crate::model::Column,
    indexed: bool,
) -> Option<PrimaryJudgement> {
    let (o, n) = (&old.ty, &new.ty);
    if indexed || o.unsigned != n.unsigned || o.compressed != n.compressed {
        return None;
    }
    let in_place = |what: &str| {
        Some(j(
            Algorithm::Inplace,
            false,
            format!("{what} runs in place with concurrent writes (LOCK=NONE measured)"),
        ))
    };
    let lob = |k: &TypeKind| match k {
        TypeKind::Text { size } | TypeKind::Blob { size } => Some(*size),
        _ => None,
    };
    match (&o.kind, &n.kind) {
        (a, b)
            if a == b
                && o.charset == n.charset
                && (matches!(a, TypeKind::Char { .. }) || flavor == Flavor::Mysql) =>
        {
            in_place("a collation change within one character set")
        }
        (TypeKind::Float { double: a, .. }, TypeKind::Float { double: b, .. }) if a == b => {
            in_place("changing a floating-point column's digits")
        }
        (
            TypeKind::Char {
                varying: true,
                length: from,
            },
            TypeKind::Char {
                varying: true,
                length: to,
            },
        ) if o.charset.as_deref() == Some("utf8mb3") && n.charset.as_deref() == Some("utf8mb4") => {
            let prefix = |bytes: u32| if bytes > 255 { 2 } else { 1 };
            (to >= from && prefix(from * 3) == prefix(to * 4))
                .then(|| in_place("utf8mb3 to utf8mb4 within one length-prefix size"))
                .flatten()
        }
        (TypeKind::Enum { .. } | TypeKind::Set { .. }, _)
            if flavor == Flavor::Mysql && o.kind == n.kind =>
        {
            in_place("MySQL changes an ENUM or SET's character set")
        }
        (
            TypeKind::Char {
                varying: true,
                length,
            },
            TypeKind::Binary {
                varying: true,
                length: to,
            },
        ) if flavor == Flavor::Mysql => {
            let bytes = length * charset_max_bytes(o.charset.as_deref().unwrap_or("utf8mb4"));
            let prefix = |bytes: u32| if bytes > 255 { 2 } else { 1 };
            (*to >= bytes && prefix(bytes) == prefix(*to))
                .then(|| in_place("MySQL turns a VARCHAR into a VARBINARY of its storage"))
                .flatten()
        }
        (a @ TypeKind::Text { .. }, b @ TypeKind::Blob { .. })
            if flavor == Flavor::Mysql && lob(a) == lob(b) =>
        {
            in_place("MySQL turns a TEXT into the BLOB of its size")
        }
        _ => None,
    }
}

fn type_change(
    flavor: Flavor,
    old: &crate::model::Column,
    new: &crate::model::Column,
    indexed: bool,
) -> PrimaryJudgement {
    if let Some(judgement) = measured_in_place(flavor, old, new, indexed) {
        return judgement;
    }
    let same_text = old.ty.charset == new.ty.charset
        && old.ty.collation == new.ty.collation
        && old.ty.unsigned == new.ty.unsigned;
    let varying = |kind: &TypeKind| match kind {
        TypeKind::Char {
            varying: true,
            length,
        }
        | TypeKind::Binary {
            varying: true,
            length,
        } => Some(*length),
        _ => None,
    };
    if let (Some(from), Some(to)) = (varying(&old.ty.kind), varying(&new.ty.kind))
        && std::mem::discriminant(&old.ty.kind) == std::mem::discriminant(&new.ty.kind)
        && same_text
        && to >= from
    {
        let (from, to) = (&from, &to);
        let bytes = match old.ty.kind {
            TypeKind::Binary { .. } => 1,
            _ => charset_max_bytes(old.ty.charset.as_deref().unwrap_or("utf8mb4")),
        };
        let prefix = |len: u32| {
            if len.saturating_mul(bytes) > 255 {
                2
            } else {
                1
            }
        };
        if prefix(*from) == prefix(*to) {
            return match flavor {
                Flavor::Mysql => j(
                    Algorithm::Inplace,
                    false,
                    "extending a VARCHAR within the same length-prefix size runs in place with concurrent writes",
                ),
                Flavor::Mariadb => j(
                    Algorithm::Instant,
                    false,
                    "MariaDB extends a VARCHAR within the same length-prefix size instantly",
                ),
            };
        }
        // InnoDB's COMPACT and DYNAMIC formats store a length under 128 bytes in one byte
        // even where the column's maximum needs two, so values of a column of at most 127
        // bytes are already stored as the wider column would store them: MariaDB (10.4.3+)
        // extends it instantly (`ALGORITHM=INSTANT` accepted on 10.11 for latin1 VARCHAR(127)
        // to VARCHAR(300), refused for VARCHAR(128) and VARCHAR(200); MySQL 9.7 refuses both).
        if flavor == Flavor::Mariadb && from.saturating_mul(bytes) <= 127 {
            return j(
                Algorithm::Instant,
                false,
                "MariaDB extends a VARCHAR of at most 127 bytes instantly, even past 255 bytes",
            );
        }
        return j(
            Algorithm::Copy,
            true,
            "the VARCHAR crosses 255 bytes, so its length prefix grows and the table is copied",
        );
    }
    if same_text
        && is_enum_append(&old.ty.kind, &new.ty.kind)
        && !crate::types::enum_storage_grows(&old.ty.kind, &new.ty.kind)
        && old.ty.compressed == new.ty.compressed
    {
        return j(
            Algorithm::Instant,
            false,
            "appending ENUM/SET values without changing storage size is metadata only",
        );
    }
    j(
        Algorithm::Copy,
        true,
        "changing a column's type copies the table and blocks writes",
    )
}

fn table_option(key: &str, engine_changed: bool, fulltext: bool) -> PrimaryJudgement {
    if engine_changed {
        return j(
            Algorithm::Copy,
            true,
            "changing the storage engine copies the table",
        );
    }
    match key {
        "ENGINE"
        | "ROW_FORMAT"
        | "KEY_BLOCK_SIZE"
        | "COMPRESSION"
        | "PAGE_COMPRESSED"
        | "PAGE_COMPRESSION_LEVEL" => {
            if fulltext {
                j(Algorithm::Inplace, true, FULLTEXT_REBUILD)
            } else {
                j(
                    Algorithm::Inplace,
                    false,
                    format!("{key}= rebuilds the table in place with concurrent writes"),
                )
            }
        }
        "COMMENT" | "AUTO_INCREMENT" | "STATS_PERSISTENT" | "STATS_AUTO_RECALC"
        | "STATS_SAMPLE_PAGES" => j(
            Algorithm::Inplace,
            false,
            format!("{key}= changes only metadata"),
        ),
        "CHARSET" | "COLLATE" => j(
            Algorithm::Copy,
            true,
            "changing the table's default character set or collation is not judged online",
        ),
        other => j(
            Algorithm::Copy,
            true,
            format!("table option {other} is not judged online"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Column, ColumnDefault, ColumnType, Generated, IntSize, TableName, TableOptions,
    };

    fn column(kind: TypeKind) -> Column {
        Column {
            name: "c".into(),
            ty: ColumnType {
                charset: kind.has_charset().then(|| "utf8mb4".to_owned()),
                kind,
                unsigned: false,
                collation: None,
                compressed: false,
                srid: None,
            },
            nullable: true,
            default: ColumnDefault::None,
            on_update: None,
            auto_increment: false,
            generated: None,
            invisible: false,
            comment: None,
            id: 1,
        }
    }

    fn table() -> Table {
        Table {
            name: TableName {
                schema: None,
                name: "t".into(),
            },
            columns: vec![],
            indexes: vec![],
            foreign_keys: vec![],
            checks: vec![],
            options: TableOptions::default(),
            next_id: 0,
        }
    }

    fn mode(flavor: Flavor, version: Option<Version>, change: Change) -> (PrimaryMode, Algorithm) {
        let judgement = judge(flavor, version, &table(), &[change], false);
        (judgement.mode(), judgement.algorithm)
    }

    #[test]
    fn column_adds_are_online_and_instant_by_version() {
        let add = |at_end| Change::ColumnAdded {
            column: column(TypeKind::Integer { size: IntSize::Int }),
            at_end,
        };
        assert_eq!(
            mode(Flavor::Mysql, None, add(false)),
            (PrimaryMode::Online, Algorithm::Instant)
        );
        assert_eq!(
            mode(Flavor::Mysql, Some(Version::new(8, 0, 20)), add(false)),
            (PrimaryMode::Online, Algorithm::Inplace)
        );
        assert_eq!(
            mode(Flavor::Mysql, Some(Version::new(8, 0, 20)), add(true)),
            (PrimaryMode::Online, Algorithm::Instant)
        );
        assert_eq!(
            mode(Flavor::Mariadb, Some(Version::new(10, 3, 5)), add(false)),
            (PrimaryMode::Online, Algorithm::Inplace)
        );
        let mut auto = column(TypeKind::Integer { size: IntSize::Big });
        auto.auto_increment = true;
        assert_eq!(
            mode(
                Flavor::Mysql,
                None,
                Change::ColumnAdded {
                    column: auto,
                    at_end: true
                }
            )
            .0,
            PrimaryMode::Switchover
        );
        let mut stored = column(TypeKind::Integer { size: IntSize::Int });
        stored.generated = Some(Generated {
            expression: "a+1".into(),
            stored: true,
        });
        assert_eq!(
            mode(
                Flavor::Mariadb,
                None,
                Change::ColumnAdded {
                    column: stored,
                    at_end: true
                }
            ),
            (PrimaryMode::Switchover, Algorithm::Copy)
        );
    }

    #[test]
    fn type_changes_copy_except_varchar_extension_and_enum_append() {
        let int = column(TypeKind::Integer { size: IntSize::Int });
        let big = column(TypeKind::Integer { size: IntSize::Big });
        let modify = |before: Column, after: Column| Change::ColumnModified {
            before: Box::new(before),
            after: Box::new(after),
            moved: false,
        };
        assert_eq!(
            mode(Flavor::Mysql, None, modify(int, big)),
            (PrimaryMode::Switchover, Algorithm::Copy)
        );
        let v = |n| {
            column(TypeKind::Char {
                varying: true,
                length: n,
            })
        };
        assert_eq!(
            mode(Flavor::Mysql, None, modify(v(10), v(20))),
            (PrimaryMode::Online, Algorithm::Inplace)
        );
        assert_eq!(
            mode(Flavor::Mariadb, None, modify(v(10), v(20))),
            (PrimaryMode::Online, Algorithm::Instant)
        );
        // utf8mb4: 63 characters = 252 bytes, 64 characters = 256 bytes.
        assert_eq!(
            mode(Flavor::Mysql, None, modify(v(63), v(64))).0,
            PrimaryMode::Switchover
        );
        let e = |values: &[&str]| {
            column(TypeKind::Enum {
                values: values.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert_eq!(
            mode(Flavor::Mysql, None, modify(e(&["a"]), e(&["a", "b"]))),
            (PrimaryMode::Online, Algorithm::Instant)
        );
    }

    #[test]
    fn indexes_and_table_options() {
        let index = |kind| crate::model::Index {
            name: "i".into(),
            kind,
            parts: vec![],
        };
        assert_eq!(
            mode(
                Flavor::Mysql,
                None,
                Change::IndexAdded(index(IndexKind::Plain))
            )
            .0,
            PrimaryMode::Online
        );
        assert_eq!(
            mode(
                Flavor::Mysql,
                None,
                Change::IndexAdded(index(IndexKind::Fulltext))
            )
            .0,
            PrimaryMode::Switchover
        );
        assert_eq!(
            mode(
                Flavor::Mysql,
                None,
                Change::IndexDropped(index(IndexKind::Primary))
            )
            .0,
            PrimaryMode::Switchover
        );
        let replaced = judge(
            Flavor::Mysql,
            None,
            &table(),
            &[Change::IndexDropped(index(IndexKind::Primary))],
            true,
        );
        assert_eq!(replaced.mode(), PrimaryMode::Online);
        assert_eq!(
            mode(Flavor::Mysql, None, Change::Algorithm("COPY".into())).0,
            PrimaryMode::Switchover
        );
        assert_eq!(
            mode(Flavor::Mysql, None, Change::Lock("SHARED".into())).0,
            PrimaryMode::Switchover
        );
        let option = |key: &str, engine_changed| Change::TableOption {
            key: key.into(),
            engine_changed,
        };
        assert_eq!(
            mode(Flavor::Mysql, None, option("COMMENT", false)).0,
            PrimaryMode::Online
        );
        assert_eq!(
            mode(Flavor::Mysql, None, option("ENGINE", true)).0,
            PrimaryMode::Switchover
        );
    }

    #[test]
    fn fulltext_tables_are_not_rebuilt_online() {
        let mut t = table();
        t.indexes.push(crate::model::Index {
            name: "ft".into(),
            kind: IndexKind::Fulltext,
            parts: vec![],
        });
        let add = Change::ColumnAdded {
            column: column(TypeKind::Integer { size: IntSize::Int }),
            at_end: true,
        };
        assert_eq!(
            judge(Flavor::Mariadb, None, &t, &[add], false).mode(),
            PrimaryMode::Switchover
        );
    }
}
