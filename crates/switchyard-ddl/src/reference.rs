//! Reference cases: one ALTER per rule on one table, with the verdict expected on each flavor
//! and the source writes that exercise it.
//!
//! The analyzer's own tests check these verdicts. The real-server test (`tests/servers.rs`)
//! replays each case on a MariaDB and a MySQL replication pair: create [`TABLE`] on both, set
//! the case's conversion setting on the replica, run the ALTER on the replica with the binary
//! log off, run [`WRITES`] on the source, then check that the replica keeps applying and that
//! its rows equal the source's table altered the same way. `safe` and `safe-with-conversion`
//! cases must pass that check; a case that fails it (replication stops, data differs, the
//! replica crashes) must be `unsafe`, so the analyzer is never more permissive than the
//! servers. The results are in `docs/ddl-verification.md`.

use crate::rules::{Rule, Verdict};

/// The table every case starts from; valid on MySQL 8.0+ and MariaDB 10.5+.
pub const TABLE: &str = "CREATE TABLE `t` (
  `id` int NOT NULL,
  `n` int DEFAULT NULL,
  `u` int unsigned DEFAULT NULL,
  `s` varchar(10) DEFAULT NULL,
  `d` decimal(10,2) DEFAULT NULL,
  `f` float DEFAULT NULL,
  `e` enum('a','b','c') DEFAULT NULL,
  `dt` datetime DEFAULT NULL,
  `dt3` datetime(3) DEFAULT NULL,
  `dd` date DEFAULT NULL,
  `l` varchar(10) CHARACTER SET latin1 DEFAULT NULL,
  `k` int DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Source writes that touch every column with edge values (negative, NULL, minimum and
/// maximum, every ENUM value, fractional seconds, trailing spaces, an inexact FLOAT), then update
/// and delete; rows with the first, middle and last ENUM values stay, so that a changed meaning
/// shows in the data.
pub const WRITES: &[&str] = &[
    "INSERT INTO t (id, n, u, s, d, f, e, dt, dt3, dd, l, k) VALUES \
     (1, -1, 4294967295, 'abcdefghij', 12345678.91, 1.5, 'a', '2024-01-02 03:04:05', '2024-01-02 03:04:05.678', '2024-01-02', 'caf\u{e9}', 7)",
    "INSERT INTO t (id, n, u, s, d, f, e, dt, dt3, dd, l, k) VALUES \
     (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 7)",
    "INSERT INTO t (id, n, u, s, d, f, e, k) VALUES (3, 2147483647, 0, '', -0.01, -2.25, 'c', 8)",
    "INSERT INTO t (id, n, u, s, d, f, e, dt, dt3, dd, l, k) VALUES \
     (4, -2147483648, 0, 'z  ', -99999999.99, 0.1, 'c', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000', '1000-01-01', '', 10)",
    "UPDATE t SET n = n - 1, e = 'b', k = 9 WHERE id = 1",
    "DELETE FROM t WHERE id = 3",
];

/// One reference case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// A short name for test output.
    pub name: &'static str,
    /// The ALTER statement, on table `t`.
    pub alter: &'static str,
    /// The expected verdict and deciding rule on MySQL.
    pub mysql: (Verdict, Rule),
    /// The expected verdict and deciding rule on MariaDB.
    pub mariadb: (Verdict, Rule),
}

const fn both(name: &'static str, alter: &'static str, verdict: Verdict, rule: Rule) -> Case {
    Case {
        name,
        alter,
        mysql: (verdict, rule),
        mariadb: (verdict, rule),
    }
}

use Verdict::{Safe, SafeWithConversion as Convert, Unsafe};

/// The cases, one or more per rule that a replication pair can show.
pub const CASES: &[Case] = &[
    both(
        "add trailing nullable",
        "ALTER TABLE t ADD COLUMN x INT DEFAULT NULL",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "add trailing with default",
        "ALTER TABLE t ADD COLUMN x INT NOT NULL DEFAULT 5",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "drop last column",
        "ALTER TABLE t DROP COLUMN k",
        Safe,
        Rule::ColumnDroppedAtEnd,
    ),
    both(
        "rename in place",
        "ALTER TABLE t RENAME COLUMN k TO k2",
        Safe,
        Rule::ColumnRenamed,
    ),
    both(
        "add trailing virtual column",
        "ALTER TABLE t ADD COLUMN g INT AS (k + 1) VIRTUAL",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    // MariaDB computes extra PERSISTENT columns on replicas since MDEV-11636 (10.2).
    both(
        "add trailing stored column",
        "ALTER TABLE t ADD COLUMN g INT AS (k + 1) STORED",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "collation change",
        "ALTER TABLE t MODIFY s VARCHAR(10) COLLATE utf8mb4_bin",
        Safe,
        Rule::CollationChange,
    ),
    both(
        "add index",
        "ALTER TABLE t ADD INDEX i_n (n)",
        Safe,
        Rule::IndexChange,
    ),
    both(
        "enum append",
        "ALTER TABLE t MODIFY e ENUM('a','b','c','d')",
        Safe,
        Rule::EnumValueAppended,
    ),
    both(
        "drop primary key",
        "ALTER TABLE t DROP PRIMARY KEY",
        Unsafe,
        Rule::PrimaryKeyDropped,
    ),
    both(
        "default change",
        "ALTER TABLE t ALTER COLUMN n SET DEFAULT 3",
        Safe,
        Rule::DefaultChange,
    ),
    both(
        "int widening",
        "ALTER TABLE t MODIFY n BIGINT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "unsigned widening",
        "ALTER TABLE t MODIFY u BIGINT UNSIGNED",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varchar widening",
        "ALTER TABLE t MODIFY s VARCHAR(20)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "float to double",
        "ALTER TABLE t MODIFY f DOUBLE",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal widening",
        "ALTER TABLE t MODIFY d DECIMAL(12,4)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "widening plus trailing column",
        "ALTER TABLE t MODIFY n BIGINT, ADD COLUMN x INT DEFAULT NULL",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    Case {
        name: "datetime fsp 3 to 6",
        alter: "ALTER TABLE t MODIFY dt3 DATETIME(6)",
        mysql: (Unsafe, Rule::FspChange),
        mariadb: (Convert, Rule::WideningNeedsConversion),
    },
    Case {
        name: "date to datetime",
        alter: "ALTER TABLE t MODIFY dd DATETIME",
        mysql: (Unsafe, Rule::TemporalTypeChange),
        mariadb: (Convert, Rule::WideningNeedsConversion),
    },
    both(
        "datetime fsp 0 to 3",
        "ALTER TABLE t MODIFY dt DATETIME(3)",
        Unsafe,
        Rule::FspChange,
    ),
    both(
        "add in the middle",
        "ALTER TABLE t ADD COLUMN x INT AFTER n",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    ),
    both(
        "add first",
        "ALTER TABLE t ADD COLUMN x INT FIRST",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    ),
    both(
        "drop a middle column",
        "ALTER TABLE t DROP COLUMN n",
        Unsafe,
        Rule::ColumnDroppedNotLast,
    ),
    both(
        "reorder",
        "ALTER TABLE t MODIFY k INT AFTER id",
        Unsafe,
        Rule::ColumnReordered,
    ),
    both(
        "drop last, add one",
        "ALTER TABLE t DROP COLUMN k, ADD COLUMN x INT",
        Unsafe,
        Rule::ColumnPositionReused,
    ),
    both(
        "trailing not null without default",
        "ALTER TABLE t ADD COLUMN x INT NOT NULL",
        Unsafe,
        Rule::ColumnAddedWithoutDefault,
    ),
    both(
        "trailing varying default",
        "ALTER TABLE t ADD COLUMN x DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)",
        Unsafe,
        Rule::NondeterministicDefault,
    ),
    both(
        "int to varchar",
        "ALTER TABLE t MODIFY n VARCHAR(30)",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    both(
        "varchar to text",
        "ALTER TABLE t MODIFY s TEXT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varchar to char",
        "ALTER TABLE t MODIFY s CHAR(10)",
        Unsafe,
        Rule::StringKindChange,
    ),
    both(
        "int narrowing",
        "ALTER TABLE t MODIFY n SMALLINT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "decimal scale up, digits down",
        "ALTER TABLE t MODIFY d DECIMAL(10,4)",
        Unsafe,
        Rule::DecimalNarrowing,
    ),
    both(
        "signedness",
        "ALTER TABLE t MODIFY n INT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    ),
    Case {
        name: "mixed signedness widening",
        alter: "ALTER TABLE t MODIFY n BIGINT, MODIFY u BIGINT UNSIGNED",
        mysql: (Unsafe, Rule::MixedSignednessWidening),
        mariadb: (Convert, Rule::WideningNeedsConversion),
    },
    both(
        "null to not null",
        "ALTER TABLE t MODIFY n INT NOT NULL DEFAULT 0",
        Unsafe,
        Rule::NullToNotNull,
    ),
    both(
        "charset",
        "ALTER TABLE t MODIFY l VARCHAR(10) CHARACTER SET utf8mb4",
        Unsafe,
        Rule::CharsetChange,
    ),
    both(
        "enum insert",
        "ALTER TABLE t MODIFY e ENUM('a','x','b','c')",
        Unsafe,
        Rule::EnumValueInserted,
    ),
    both(
        "enum remove",
        "ALTER TABLE t MODIFY e ENUM('a','c')",
        Unsafe,
        Rule::EnumValueRemoved,
    ),
    both(
        "enum reorder",
        "ALTER TABLE t MODIFY e ENUM('c','b','a')",
        Unsafe,
        Rule::EnumValuesChanged,
    ),
    both(
        "unique key",
        "ALTER TABLE t ADD UNIQUE KEY uk (k)",
        Unsafe,
        Rule::UniqueKeyAdded,
    ),
    both(
        "check constraint",
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (n > 0)",
        Unsafe,
        Rule::CheckConstraintAdded,
    ),
    both(
        "rename table",
        "ALTER TABLE t RENAME TO t2",
        Unsafe,
        Rule::TableRenamed,
    ),
];

#[cfg(test)]
mod tests {
    use switchyard_plan::versions::Flavor;

    use super::*;
    use crate::analyze;

    #[test]
    fn the_analyzer_gives_every_reference_verdict() {
        for case in CASES {
            for (flavor, (verdict, rule)) in
                [(Flavor::Mysql, case.mysql), (Flavor::Mariadb, case.mariadb)]
            {
                let analysis = analyze(flavor, TABLE, case.alter)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(
                    analysis.verdict, verdict,
                    "{flavor} {}: {:?}",
                    case.name, analysis.reasons
                );
                let decided = analysis
                    .clauses
                    .iter()
                    .filter(|c| c.verdict == verdict)
                    .any(|c| c.rule == rule);
                assert!(
                    decided,
                    "{flavor} {}: rule {rule} does not decide: {:?}",
                    case.name, analysis.clauses
                );
            }
        }
    }

    #[test]
    fn every_unsafe_row_image_rule_has_a_reference_case() {
        let covered: Vec<Rule> = CASES
            .iter()
            .flat_map(|c| [c.mysql.1, c.mariadb.1])
            .collect();
        for rule in [
            Rule::ColumnAddedInMiddle,
            Rule::ColumnDroppedNotLast,
            Rule::ColumnReordered,
            Rule::TypeFamilyChange,
            Rule::Narrowing,
            Rule::SignednessChange,
            Rule::NullToNotNull,
            Rule::CharsetChange,
            Rule::FspChange,
            Rule::EnumValueInserted,
            Rule::EnumValueRemoved,
            Rule::UniqueKeyAdded,
            Rule::WideningNeedsConversion,
        ] {
            assert!(covered.contains(&rule), "{rule}");
        }
    }
}
