//! Table definitions as the servers print them, and helpers shared by the integration tests.

use switchyard_ddl::{Analysis, AnalyzeOptions, Rule, Verdict, analyze_with};
use switchyard_plan::versions::Flavor;

/// `SHOW CREATE TABLE orders` on MySQL 8.4/9.x.
pub const MYSQL_ORDERS: &str = include_str!("../fixtures/mysql_orders.sql");

/// `SHOW CREATE TABLE orders` on MariaDB 10.11.
pub const MARIADB_ORDERS: &str = include_str!("../fixtures/mariadb_orders.sql");

/// A child table with foreign keys, MySQL form.
pub const MYSQL_ITEMS: &str = include_str!("../fixtures/mysql_items.sql");

/// The same child table as MariaDB prints it.
pub const MARIADB_ITEMS: &str = include_str!("../fixtures/mariadb_items.sql");

/// A small table without AUTO_INCREMENT and with a nullable unique key, both flavors.
pub const PLAIN: &str = "CREATE TABLE `plain` (
  `a` int NOT NULL,
  `b` int DEFAULT NULL,
  `c` varchar(20) DEFAULT NULL,
  PRIMARY KEY (`a`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// A table without a primary key.
pub const NO_PK: &str = "CREATE TABLE `nopk` (
  `a` int DEFAULT NULL,
  `b` int DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=latin1";

/// The orders definition of a flavor.
pub fn orders(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => MYSQL_ORDERS,
        Flavor::Mariadb => MARIADB_ORDERS,
    }
}

/// The items definition of a flavor.
pub fn items(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => MYSQL_ITEMS,
        Flavor::Mariadb => MARIADB_ITEMS,
    }
}

/// Analyzes replica-first, panicking with the input on refusal.
pub fn run(flavor: Flavor, table: &str, alter: &str) -> Analysis {
    run_with(flavor, table, alter, &AnalyzeOptions::default())
}

/// Analyzes with options, panicking with the input on refusal.
pub fn run_with(flavor: Flavor, table: &str, alter: &str, options: &AnalyzeOptions) -> Analysis {
    analyze_with(flavor, table, alter, options)
        .unwrap_or_else(|e| panic!("{flavor}: `{alter}` was refused: {e}"))
}

/// Every rule found, over all clauses.
pub fn rules(analysis: &Analysis) -> Vec<Rule> {
    analysis
        .clauses
        .iter()
        .flat_map(|c| c.findings.iter().map(|f| f.rule))
        .collect()
}

/// Asserts the overall verdict and that `rule` is among the findings.
pub fn expect(flavor: Flavor, table: &str, alter: &str, verdict: Verdict, rule: Rule) -> Analysis {
    let analysis = run(flavor, table, alter);
    assert_eq!(
        analysis.verdict, verdict,
        "{flavor}: `{alter}`: {:#?}",
        analysis.reasons
    );
    assert!(
        rules(&analysis).contains(&rule),
        "{flavor}: `{alter}`: expected rule {rule}, found {:?}",
        rules(&analysis)
    );
    if verdict != Verdict::Safe {
        assert!(
            analysis
                .clauses
                .iter()
                .any(|c| c.verdict == verdict && c.rule.verdict() == verdict),
            "{flavor}: `{alter}`: no clause carries the verdict"
        );
    }
    analysis
}
