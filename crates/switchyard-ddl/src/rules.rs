//! The verdicts and the stable rule identifiers every finding carries.

use std::fmt;

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::Flavor;

/// Whether a change can be rolled replica-first: ALTER on each replica with the binary log off
/// while the source still writes old-shape rows, then on the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Correct as is.
    Safe,
    /// Correct only with the replica type-conversion variable set as
    /// [`crate::Analysis::settings`] says.
    SafeWithConversion,
    /// Breaks replication, or silently writes wrong data, for some row the source may write.
    Unsafe,
}

impl Verdict {
    /// The serialised form (`safe`, `safe-with-conversion`, `unsafe`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::SafeWithConversion => "safe-with-conversion",
            Verdict::Unsafe => "unsafe",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $verdict:ident; )*) => {
        /// A stable rule identifier. The serialised form (the `id`) never changes meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum Rule {
            $( $(#[$doc])* #[serde(rename = $id)] $variant, )*
        }

        impl Rule {
            /// Every rule.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The stable identifier (`column-added-in-middle`).
            pub fn id(self) -> &'static str {
                match self { $(Rule::$variant => $id,)* }
            }

            /// The verdict a finding of this rule gives.
            pub fn verdict(self) -> Verdict {
                match self { $(Rule::$variant => Verdict::$verdict,)* }
            }
        }
    };
}

rules! {
    /// A column added at the end with a value the replica can fill (NULL, a constant default,
    /// the type's implicit default, or a generated expression): extra trailing columns on the
    /// replica are allowed.
    ColumnAddedAtEnd = "column-added-at-end", Safe;
    /// The last column dropped: the replica ignores extra trailing columns from the source.
    ColumnDroppedAtEnd = "column-dropped-at-end", Safe;
    /// A column renamed in place: row images are matched by position, not by name.
    ColumnRenamed = "column-renamed", Safe;
    /// A column default changed: full row images carry every value.
    DefaultChange = "default-change", Safe;
    /// A comment, visibility, ON UPDATE or AUTO_INCREMENT removal: no change to stored values.
    ColumnAttributeChange = "column-attribute-change", Safe;
    /// NOT NULL to NULL: every value the source writes still fits.
    NotNullToNull = "not-null-to-null", Safe;
    /// A collation change within one character set on a column in no unique key (or to the
    /// set's binary collation from a padding one), or any character-set change of ENUM/SET.
    CollationChange = "collation-change", Safe;
    /// A generated column's expression changed where the replica computes it itself (VIRTUAL
    /// on both flavors; STORED on MySQL and MariaDB 11.8).
    GeneratedExpressionChanged = "generated-expression-changed", Safe;
    /// ENUM/SET values appended at the end without changing the storage size.
    EnumValueAppended = "enum-value-appended", Safe;
    /// An index added, dropped, renamed or hidden that enforces nothing new.
    IndexChange = "index-change", Safe;
    /// A foreign key without cascading actions dropped.
    ForeignKeyDropped = "foreign-key-dropped", Safe;
    /// A CHECK constraint dropped or relaxed.
    CheckConstraintDropped = "check-constraint-dropped", Safe;
    /// A table option that does not change row images.
    TableOptionChange = "table-option-change", Safe;
    /// A rebuild that keeps the definition (FORCE, ORDER BY, ENGINE unchanged).
    TableRebuild = "table-rebuild", Safe;
    /// Partitioning changed so that every row still has a partition.
    PartitioningChange = "partitioning-change", Safe;
    /// ALGORITHM= or LOCK=: only how the server runs the change.
    AlgorithmLock = "algorithm-lock", Safe;
    /// The clause changes nothing (IF EXISTS / IF NOT EXISTS found nothing to do).
    NoOp = "no-op", Safe;
    /// A conversion the servers count as non-lossy and that keeps every value (INT to BIGINT,
    /// VARCHAR to a longer CHAR or TEXT, utf8mb3 to utf8mb4, FLOAT to DOUBLE, DECIMAL keeping
    /// its integer digits, BIT and ENUM/SET storage widening; MariaDB DATE to DATETIME and
    /// fractional seconds p > 0 to q > p): the replica must be allowed non-lossy conversions.
    WideningNeedsConversion = "widening-needs-conversion", SafeWithConversion;
    /// A conversion while the replica also has extra trailing columns: the manuals forbid it,
    /// servers measured here accepted it (see the facts file).
    WideningWithExtraColumns = "widening-with-extra-columns", SafeWithConversion;
    /// A column added before existing columns: every later column shifts.
    ColumnAddedInMiddle = "column-added-in-middle", Unsafe;
    /// A column other than the last dropped: every later column shifts.
    ColumnDroppedNotLast = "column-dropped-not-last", Unsafe;
    /// Columns reordered (FIRST/AFTER).
    ColumnReordered = "column-reordered", Unsafe;
    /// A dropped trailing column replaced by a new one at the same position: the source's
    /// values for the old column land in the new one.
    ColumnPositionReused = "column-position-reused", Unsafe;
    /// An extra column the replica cannot fill: NOT NULL without a default, of a type without
    /// an implicit value (spatial, MySQL JSON).
    ColumnAddedWithoutDefault = "column-added-without-default", Unsafe;
    /// In both directions: a dropped column that the old-shape side cannot fill.
    DroppedColumnWithoutDefault = "dropped-column-without-default", Unsafe;
    /// An extra column whose default depends on when it is evaluated (CURRENT_TIMESTAMP,
    /// UUID(), any function): replicas would store other values than the primary.
    NondeterministicDefault = "nondeterministic-default", Unsafe;
    /// An AUTO_INCREMENT column added: each node numbers rows itself.
    AutoIncrementColumnAdded = "auto-increment-column-added", Unsafe;
    /// AUTO_INCREMENT added to an existing column: a replicated 0 or NULL would be renumbered.
    AutoIncrementAdded = "auto-increment-added", Unsafe;
    /// A change between type families (INT to VARCHAR, ENUM to VARCHAR, JSON to TEXT).
    TypeFamilyChange = "type-family-change", Unsafe;
    /// A text-to-binary change between kinds of string (CHAR to VARBINARY, VARCHAR to BLOB):
    /// not measured, refused.
    StringKindChange = "string-kind-change", Unsafe;
    /// A change between temporal types the servers do not convert.
    TemporalTypeChange = "temporal-type-change", Unsafe;
    /// A narrower type: needs lossy conversion, never safe.
    Narrowing = "narrowing", Unsafe;
    /// DECIMAL losing integer digits or scale.
    DecimalNarrowing = "decimal-narrowing", Unsafe;
    /// FLOAT to a DOUBLE with (M,D): the servers count it as lossy.
    FloatPrecisionChange = "float-precision-change", Unsafe;
    /// SIGNED to UNSIGNED or back: -1 arrives as 4294967295.
    SignednessChange = "signedness-change", Unsafe;
    /// MySQL: signed and unsigned integers promoted in one change; ALL_SIGNED/ALL_UNSIGNED is
    /// one setting for both.
    MixedSignednessWidening = "mixed-signedness-widening", Unsafe;
    /// NULL to NOT NULL: a NULL written by the source arrives as 0 or ''.
    NullToNotNull = "null-to-not-null", Unsafe;
    /// A column character set changed: the bytes are not converted.
    CharsetChange = "charset-change", Unsafe;
    /// A collation change on a column in a unique key: values distinct on the source may be
    /// duplicates on the replica.
    CollationChangeInUniqueKey = "collation-change-in-unique-key", Unsafe;
    /// Fractional-second precision changed: the replica stops with a corrupted-event error.
    FspChange = "fsp-change", Unsafe;
    /// An ENUM/SET value inserted before existing ones: stored positions shift.
    EnumValueInserted = "enum-value-inserted", Unsafe;
    /// An ENUM/SET value removed: later values shift or become ''.
    EnumValueRemoved = "enum-value-removed", Unsafe;
    /// ENUM/SET values reordered or renamed.
    EnumValuesChanged = "enum-values-changed", Unsafe;
    /// Not produced any more: appended ENUM/SET values that widen the storage convert with
    /// `ALL_NON_LOSSY` (measured); the identifier stays reserved.
    EnumStorageChange = "enum-storage-change", Unsafe;
    /// A spatial column's type or SRID changed.
    GeometryChange = "geometry-change", Unsafe;
    /// A column that becomes or stops being generated, or a STORED generated column's
    /// expression on MariaDB before 11.8 (the replica stores the source's value).
    GeneratedColumnChange = "generated-column-change", Unsafe;
    /// A UNIQUE or PRIMARY KEY the source does not enforce: a duplicate written on the source
    /// stops the replica.
    UniqueKeyAdded = "unique-key-added", Unsafe;
    /// The last way to find a row by key removed: the replica scans the table per row event.
    PrimaryKeyDropped = "primary-key-dropped", Unsafe;
    /// A foreign key the source does not enforce.
    ForeignKeyAdded = "foreign-key-added", Unsafe;
    /// A foreign key with cascading actions dropped: the cascaded rows are not in the binary
    /// log, the replica no longer makes them.
    ForeignKeyCascadeDropped = "foreign-key-cascade-dropped", Unsafe;
    /// A CHECK constraint the source does not enforce.
    CheckConstraintAdded = "check-constraint-added", Unsafe;
    /// The table renamed: the source's row events name the old table.
    TableRenamed = "table-renamed", Unsafe;
    /// The storage engine changed.
    EngineChange = "engine-change", Unsafe;
    /// Partition maintenance that removes or replaces rows on one node.
    PartitionDataChange = "partition-data-change", Unsafe;
    /// RANGE/LIST partitioning without a catch-all partition: a row the source writes may
    /// have no partition on the replica.
    PartitioningMayRejectRows = "partitioning-may-reject-rows", Unsafe;
    /// ALTER IGNORE deletes rows on each node independently.
    AlterIgnore = "alter-ignore", Unsafe;
    /// A clause or table feature switchyard does not model.
    Unsupported = "unsupported", Unsafe;
}

/// What the servers do with old-shape rows when a rule finds a change unsafe: what its reason
/// claims, checked for every unsafe reference case by the real-server test
/// (`tests/servers.rs`), which runs the case with `ALL_NON_LOSSY` and compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Claim {
    /// The rule judges the change safe or safe with conversion: nothing fails.
    Nothing,
    /// The replica's applier stops (or its server crashes).
    Stops,
    /// The replica applies every row but its table differs from the source's altered the
    /// same way, or the source's own ALTER refuses the rows it wrote: silent corruption.
    Corrupts,
    /// Either, depending on the types and values involved.
    StopsOrCorrupts,
    /// A precaution: the servers may replicate correctly, and the reason says what the risk is
    /// instead (a scan per row, an unmeasured change, rows changed outside replication).
    Precaution,
}

impl Rule {
    /// What the servers of `flavor` do when this rule finds a change unsafe.
    pub fn claim(self, flavor: Flavor) -> Claim {
        use Rule as R;
        if self.verdict() != Verdict::Unsafe {
            return Claim::Nothing;
        }
        match self {
            R::TypeFamilyChange
            | R::TemporalTypeChange
            | R::FspChange
            | R::FloatPrecisionChange
            | R::UniqueKeyAdded
            | R::CollationChangeInUniqueKey
            | R::TableRenamed
            | R::ForeignKeyAdded
            | R::GeometryChange => Claim::Stops,
            R::SignednessChange
            | R::MixedSignednessWidening
            | R::NullToNotNull
            | R::DecimalNarrowing
            | R::EnumValueInserted
            | R::EnumValueRemoved
            | R::EnumValuesChanged
            | R::ColumnPositionReused
            | R::NondeterministicDefault
            | R::GeneratedColumnChange
            | R::AutoIncrementColumnAdded
            | R::AutoIncrementAdded
            | R::ForeignKeyCascadeDropped
            | R::PartitionDataChange => Claim::Corrupts,
            R::CheckConstraintAdded => match flavor {
                Flavor::Mysql => Claim::Stops,
                Flavor::Mariadb => Claim::Corrupts,
            },
            R::ColumnAddedInMiddle
            | R::ColumnDroppedNotLast
            | R::ColumnReordered
            | R::Narrowing
            | R::CharsetChange
            | R::ColumnAddedWithoutDefault
            | R::DroppedColumnWithoutDefault
            | R::PartitioningMayRejectRows => Claim::StopsOrCorrupts,
            _ => Claim::Precaution,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One reason for a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// The verdict it gives.
    pub verdict: Verdict,
    /// A human reason naming the columns or keys concerned.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_serialise_as_themselves() {
        let mut ids: Vec<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
        for rule in Rule::ALL {
            assert!(
                rule.id()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{rule}"
            );
            assert_eq!(
                serde_json::to_string(rule).unwrap(),
                format!("\"{}\"", rule.id())
            );
        }
    }

    #[test]
    fn verdicts_order_from_safe_to_unsafe() {
        assert!(
            Verdict::Safe < Verdict::SafeWithConversion
                && Verdict::SafeWithConversion < Verdict::Unsafe
        );
        assert_eq!(
            serde_json::to_string(&Verdict::SafeWithConversion).unwrap(),
            "\"safe-with-conversion\""
        );
    }
}
