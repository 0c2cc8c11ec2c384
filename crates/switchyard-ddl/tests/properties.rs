//! Property tests: the analyzer never panics on any text, its overall answer is the worst of
//! its clauses, index clauses never change a column change's verdict, the both-directions
//! check is never more permissive, and widening is judged by the order of sizes.
//!
//! CI fixes the seed with `PROPTEST_RNG_SEED`; failures are saved next to this file under
//! `proptest-regressions/` and replayed first.

use proptest::prelude::*;
use proptest::test_runner::Config;
use switchyard_ddl::{AnalyzeOptions, PrimaryMode, Verdict, analyze, analyze_with};
use switchyard_plan::versions::Flavor;

/// The orders table as each server prints it.
fn orders(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => include_str!("fixtures/mysql_orders.sql"),
        Flavor::Mariadb => include_str!("fixtures/mariadb_orders.sql"),
    }
}

/// A child table with foreign keys as each server prints it.
fn items(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => include_str!("fixtures/mysql_items.sql"),
        Flavor::Mariadb => include_str!("fixtures/mariadb_items.sql"),
    }
}

/// Clauses for the orders table, valid and invalid, of every kind.
const CLAUSES: &[&str] = &[
    "ADD COLUMN extra INT DEFAULT NULL",
    "ADD COLUMN extra2 INT NOT NULL",
    "ADD COLUMN mid INT AFTER qty",
    "ADD COLUMN first_col INT FIRST",
    "ADD COLUMN seen DATETIME DEFAULT CURRENT_TIMESTAMP",
    "DROP COLUMN ratio",
    "DROP COLUMN total",
    "DROP COLUMN nope",
    "MODIFY qty BIGINT",
    "MODIFY qty INT UNSIGNED",
    "MODIFY qty INT NOT NULL",
    "MODIFY qty VARCHAR(30)",
    "MODIFY small INT UNSIGNED NOT NULL DEFAULT 0",
    "MODIFY code VARCHAR(20) NOT NULL",
    "MODIFY code VARCHAR(5) NOT NULL",
    "MODIFY price DECIMAL(12,4) NOT NULL DEFAULT 0",
    "MODIFY price DECIMAL(10,4) NOT NULL DEFAULT 0",
    "MODIFY ratio DOUBLE",
    "MODIFY ratio FLOAT DEFAULT NULL AFTER id",
    "MODIFY status ENUM('new','paid','shipped','refunded') NOT NULL DEFAULT 'new'",
    "MODIFY status ENUM('new','x','paid','shipped') NOT NULL DEFAULT 'new'",
    "MODIFY updated DATETIME(6)",
    "MODIFY day DATETIME",
    "MODIFY note VARCHAR(255)",
    "MODIFY email VARCHAR(100) COLLATE utf8mb4_unicode_ci",
    "CHANGE code order_code VARCHAR(10) NOT NULL",
    "RENAME COLUMN qty TO quantity",
    "ALTER COLUMN qty SET DEFAULT 3",
    "ADD INDEX i_qty (qty)",
    "ADD UNIQUE KEY u_customer (customer_id)",
    "DROP INDEX idx_customer",
    "DROP INDEX uk_code",
    "RENAME INDEX idx_created TO idx_created2",
    "DROP PRIMARY KEY",
    "ADD CONSTRAINT positive CHECK (price > 0)",
    "ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
    "COMMENT = 'x'",
    "ENGINE = InnoDB",
    "ENGINE = MyISAM",
    "ROW_FORMAT = DYNAMIC",
    "DEFAULT CHARSET = latin1",
    "CONVERT TO CHARACTER SET latin1",
    "ALGORITHM = INPLACE",
    "LOCK = SHARED",
    "FORCE",
    "RENAME TO orders2",
    "PARTITION BY HASH (id) PARTITIONS 2",
    "DROP PARTITION p0",
];

/// Column changes that are valid on their own, for the index-independence property.
const COLUMN_CHANGES: &[&str] = &[
    "ADD COLUMN extra INT DEFAULT NULL",
    "ADD COLUMN mid INT AFTER qty",
    "DROP COLUMN ratio",
    "DROP COLUMN total",
    "MODIFY qty BIGINT",
    "MODIFY qty INT UNSIGNED",
    "MODIFY qty INT NOT NULL",
    "MODIFY small INT UNSIGNED NOT NULL DEFAULT 0",
    "MODIFY code VARCHAR(20) NOT NULL",
    "MODIFY price DECIMAL(10,4) NOT NULL DEFAULT 0",
    "MODIFY status ENUM('new','paid','shipped','refunded') NOT NULL DEFAULT 'new'",
    "MODIFY updated DATETIME(6)",
    "MODIFY day DATETIME",
    "MODIFY note VARCHAR(255)",
    "RENAME COLUMN qty TO quantity",
];

const INDEX_CLAUSES: &[&str] = &[
    "ADD INDEX i_extra (customer_id)",
    "ADD INDEX i_two (created, customer_id)",
    "DROP INDEX idx_created",
];

fn flavor() -> impl Strategy<Value = Flavor> {
    prop_oneof![Just(Flavor::Mysql), Just(Flavor::Mariadb)]
}

fn statement(clauses: &[&str]) -> String {
    format!("ALTER TABLE orders {}", clauses.join(", "))
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn arbitrary_text_never_panics(flavor in flavor(), text in ".{0,200}") {
        let _ = analyze(flavor, orders(flavor), &text);
        let _ = analyze(flavor, &text, "ALTER TABLE orders ADD INDEX (qty)");
        let _ = analyze(flavor, orders(flavor), &format!("ALTER TABLE orders {text}"));
    }

    #[test]
    fn sql_like_token_soup_never_panics(
        flavor in flavor(),
        words in prop::collection::vec(
            prop::sample::select(vec![
                "ADD", "DROP", "MODIFY", "CHANGE", "COLUMN", "INDEX", "KEY", "PRIMARY", "UNIQUE", "FIRST",
                "AFTER", "qty", "code", "x", "INT", "VARCHAR", "(", ")", ",", ";", "10", "'a'", "`q`", "/*!",
                "*/", "DEFAULT", "NULL", "NOT", "ENUM", "SET", "CHECK", "CONSTRAINT", "FOREIGN", "REFERENCES",
                "PARTITION", "BY", "RANGE", "CHARSET", "=", "AS", "STORED", "GENERATED", "ALWAYS", "IF", "EXISTS",
            ]),
            0..24,
        ),
    ) {
        let text = format!("ALTER TABLE orders {}", words.join(" "));
        let _ = analyze(flavor, orders(flavor), &text);
        let _ = analyze(flavor, items(flavor), &text.replace("orders", "items"));
    }

    #[test]
    fn the_overall_answer_is_the_worst_clause(
        flavor in flavor(),
        picks in prop::collection::vec(prop::sample::select(CLAUSES.to_vec()), 1..5),
        both_ways in any::<bool>(),
    ) {
        let alter = statement(&picks);
        let options = if both_ways { AnalyzeOptions::bidirectional() } else { AnalyzeOptions::default() };
        let first = analyze_with(flavor, orders(flavor), &alter, &options);
        let second = analyze_with(flavor, orders(flavor), &alter, &options);
        prop_assert_eq!(&first, &second, "deterministic");
        if let Ok(analysis) = first {
            prop_assert_eq!(analysis.clauses.len(), picks.len());
            let worst = analysis.clauses.iter().map(|c| c.verdict).max().unwrap();
            prop_assert_eq!(analysis.verdict, worst);
            let primary = analysis.clauses.iter().map(|c| c.primary).max().unwrap();
            prop_assert_eq!(analysis.primary, primary);
            prop_assert_eq!(analysis.settings.is_empty(), analysis.verdict != Verdict::SafeWithConversion);
            prop_assert!(!analysis.reasons.is_empty());
            for clause in &analysis.clauses {
                prop_assert!(clause.findings.iter().any(|f| f.rule == clause.rule && f.verdict == clause.verdict));
            }
            if !both_ways {
                let both = analyze_with(flavor, orders(flavor), &alter, &AnalyzeOptions::bidirectional()).unwrap();
                prop_assert!(both.verdict >= analysis.verdict, "both directions is never more permissive");
            }
        }
    }

    #[test]
    fn index_clauses_never_change_a_column_change_verdict(
        flavor in flavor(),
        column in prop::sample::select(COLUMN_CHANGES.to_vec()),
        index in prop::sample::select(INDEX_CLAUSES.to_vec()),
        index_first in any::<bool>(),
    ) {
        let alone = analyze(flavor, orders(flavor), &statement(&[column])).unwrap();
        let pair = if index_first { [index, column] } else { [column, index] };
        let together = analyze(flavor, orders(flavor), &statement(&pair)).unwrap();
        prop_assert_eq!(alone.verdict, together.verdict);
        prop_assert_eq!(&alone.settings, &together.settings);
        let column_clause = together.clauses.iter().find(|c| c.clause == column).unwrap();
        prop_assert_eq!(column_clause.verdict, alone.clauses[0].verdict);
    }

    #[test]
    fn integer_widening_follows_the_size_order(
        flavor in flavor(),
        from in 0usize..5,
        to in 0usize..5,
        unsigned in any::<bool>(),
    ) {
        const SIZES: [&str; 5] = ["TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT"];
        let sign = if unsigned { " UNSIGNED" } else { "" };
        let table = format!("CREATE TABLE `w` (`id` int NOT NULL, `v` {}{sign} DEFAULT NULL, PRIMARY KEY (`id`))", SIZES[from]);
        let analysis = analyze(flavor, &table, &format!("ALTER TABLE w MODIFY v {}{sign}", SIZES[to])).unwrap();
        let expected = match to.cmp(&from) {
            std::cmp::Ordering::Equal => Verdict::Safe,
            std::cmp::Ordering::Greater => Verdict::SafeWithConversion,
            std::cmp::Ordering::Less => Verdict::Unsafe,
        };
        prop_assert_eq!(analysis.verdict, expected);
        if expected == Verdict::SafeWithConversion {
            prop_assert_eq!(analysis.primary, PrimaryMode::Switchover);
            let value = analysis.settings.values().next().unwrap();
            prop_assert_eq!(value.contains("ALL_UNSIGNED"), unsigned && flavor == Flavor::Mysql);
        }
    }

    #[test]
    fn decimal_changes_keep_integer_digits(
        flavor in flavor(),
        (p1, s1) in (1u32..40).prop_flat_map(|p| (Just(p), 0..=p.min(30))),
        (p2, s2) in (1u32..40).prop_flat_map(|p| (Just(p), 0..=p.min(30))),
    ) {
        let table = format!("CREATE TABLE `d` (`id` int NOT NULL, `v` decimal({p1},{s1}) DEFAULT NULL, PRIMARY KEY (`id`))");
        let analysis = analyze(flavor, &table, &format!("ALTER TABLE d MODIFY v DECIMAL({p2},{s2})")).unwrap();
        // The servers count more precision (or the same with more scale) as non-lossy; the
        // values are right when no integer digit is lost (a smaller scale rounds as the
        // primary's own ALTER rounds; measured).
        let non_lossy = p2 > p1 || (p2 == p1 && s2 > s1);
        let expected = if (p1, s1) == (p2, s2) {
            Verdict::Safe
        } else if non_lossy && p2 - s2 >= p1 - s1 {
            Verdict::SafeWithConversion
        } else {
            Verdict::Unsafe
        };
        prop_assert_eq!(analysis.verdict, expected);
    }

    #[test]
    fn varchar_length_changes(flavor in flavor(), from in 1u32..400, to in 1u32..400) {
        let table = format!("CREATE TABLE `s` (`id` int NOT NULL, `v` varchar({from}) DEFAULT NULL, PRIMARY KEY (`id`)) DEFAULT CHARSET=latin1");
        let analysis = analyze(flavor, &table, &format!("ALTER TABLE s MODIFY v VARCHAR({to})")).unwrap();
        let expected = match to.cmp(&from) {
            std::cmp::Ordering::Equal => Verdict::Safe,
            std::cmp::Ordering::Greater => Verdict::SafeWithConversion,
            std::cmp::Ordering::Less => Verdict::Unsafe,
        };
        prop_assert_eq!(analysis.verdict, expected);
        // latin1: one byte per character; the length prefix grows past 255, which MariaDB
        // takes instantly when every stored length fits one byte anyway (at most 127).
        if to > from {
            let online = (from <= 255) == (to <= 255) || (flavor == Flavor::Mariadb && from <= 127);
            prop_assert_eq!(analysis.primary == PrimaryMode::Online, online);
        }
    }
}
