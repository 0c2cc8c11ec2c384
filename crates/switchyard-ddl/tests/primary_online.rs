//! The analyzer against one real server at a time: its model of every statement the server
//! takes, and its "the primary can take it online" judgement.
//!
//! **Every statement the server accepts gets a verdict.** Each line of
//! `fixtures/grammar.sql` (every clause form, type alias and column attribute both servers'
//! manuals list, multi-clause statements that rename, move, drop and add in one, executable
//! comments) runs on a fresh copy of [`GRAMMAR_TABLE`]: when the server accepts it, the
//! analyzer must judge it (never "invalid input") and its model of the ALTER must have the
//! shape the server then prints ([`switchyard_ddl::Table::same_shape`]). Statements the
//! server refuses are counted; the analyzer may judge them anyway (a rollout would then stop
//! at the first replica, with nothing changed).
//!
//! **Online means LOCK=NONE is taken.** A rolling change runs [`rollout_statement`] on every
//! instance: for a change the analyzer judges online it carries `LOCK=NONE`, so a server that
//! would block writes refuses it. Every reference case (on an empty copy of its fixture table:
//! whether a server takes a change with LOCK=NONE depends on the definitions, not the rows, and
//! some reference changes fail on the reference rows by design) and a set of VARCHAR extensions
//! around the length-prefix boundaries (on rows) run that statement, judged with the server's
//! version, on MariaDB 10.5, 10.11 and 11.8 and on MySQL 9.7: each change judged online must be
//! accepted (the analyzer is never more permissive than the server), and the boundary cases
//! judged switchover must be refused (the VARCHAR rule is not needlessly strict where it is
//! exact). MariaDB 11.8 copies a table online when asked for LOCK=NONE (MariaDB 11.2's online
//! ALTER), and the analyzer judges it so from the version: there every boundary case is online.
//! A last set ([`ONLINE_CASES`]: type changes, CHECK, FULLTEXT, SPATIAL, foreign keys, engines,
//! NOT NULL beside a STORED generated column, a table with an indexed VIRTUAL column, CHECKs
//! of new columns, AUTO_INCREMENT, partitioning, a cascading table)
//! must be judged online exactly when the server takes it with LOCK=NONE, on every server:
//! what 11.8's online copy takes and what it refuses.

use sqlx::{Executor as _, MySqlConnection};
use switchyard_ddl::reference::CASES;
use switchyard_ddl::{
    AnalyzeOptions, PrimaryMode, analyze_with, apply_alter, parse_table, rollout_statement,
};
use switchyard_plan::versions::{Flavor, Version};
use switchyard_testbed::{ServerKind, replication};

/// The table every grammar statement starts from, with a parent for foreign keys.
const GRAMMAR_TABLE: &str = "CREATE TABLE `t` (
  `id` int NOT NULL,
  `a` int DEFAULT NULL,
  `b` varchar(10) DEFAULT NULL,
  `c` int DEFAULT NULL,
  `g` geometry NOT NULL,
  `k` int DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `ka` (`a`),
  KEY `kb` (`b`),
  CONSTRAINT `ck` CHECK (`k` > -1000)
) DEFAULT CHARSET=utf8mb4";

const GRAMMAR_PARENT: &str = "CREATE TABLE `p` (`id` int NOT NULL, PRIMARY KEY (`id`))";

/// The statements, one per line.
const GRAMMAR: &str = include_str!("fixtures/grammar.sql");

/// VARCHAR extensions of latin1 and utf8mb4 columns around 127 and 255 bytes, on table `v`.
const VARCHAR_TABLE: &str = "CREATE TABLE `v` (
  `id` int NOT NULL,
  `l127` varchar(127) CHARACTER SET latin1 DEFAULT NULL,
  `l128` varchar(128) CHARACTER SET latin1 DEFAULT NULL,
  `l200` varchar(200) CHARACTER SET latin1 DEFAULT NULL,
  `m31` varchar(31) DEFAULT NULL,
  `m32` varchar(32) DEFAULT NULL,
  `m64` varchar(64) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const VARCHAR_WRITES: &[&str] = &[
    "INSERT INTO v VALUES (1, REPEAT('a', 127), REPEAT('b', 128), REPEAT('c', 200), \
     REPEAT('€', 31), REPEAT('€', 32), REPEAT('€', 64))",
    "INSERT INTO v VALUES (2, 'x', 'y', 'z', 'ñ', 'ñ', 'ñ')",
];

/// (ALTER on `v`, whether each flavor's server takes it with LOCK=NONE without copying:
/// MariaDB, MySQL).
const VARCHAR_CASES: &[(&str, bool, bool)] = &[
    // 127 bytes to past 255: MariaDB instant (every stored length fits one byte), MySQL copies.
    (
        "ALTER TABLE v MODIFY l127 VARCHAR(300) CHARACTER SET latin1",
        true,
        false,
    ),
    // 128 bytes to past 255: both copy.
    (
        "ALTER TABLE v MODIFY l128 VARCHAR(300) CHARACTER SET latin1",
        false,
        false,
    ),
    (
        "ALTER TABLE v MODIFY l200 VARCHAR(300) CHARACTER SET latin1",
        false,
        false,
    ),
    // Within one length-prefix size: both in place.
    (
        "ALTER TABLE v MODIFY l128 VARCHAR(255) CHARACTER SET latin1",
        true,
        true,
    ),
    // utf8mb4: 31 characters are 124 bytes, 32 are 128.
    ("ALTER TABLE v MODIFY m31 VARCHAR(100)", true, false),
    ("ALTER TABLE v MODIFY m32 VARCHAR(100)", false, false),
    // 256 bytes and more on both sides.
    ("ALTER TABLE v MODIFY m64 VARCHAR(200)", true, true),
];

/// A table for the changes whose online judgement depends on the server version (what MariaDB
/// 11.2+'s online copy takes, and what it does not) and on the table (MariaDB copies a table
/// with STORED generated columns to make a column NOT NULL).
const ONLINE_TABLE: &str = "CREATE TABLE `o` (
  `id` int NOT NULL,
  `a` int DEFAULT NULL,
  `b` varchar(20) DEFAULT NULL,
  `e` enum('x','y') DEFAULT NULL,
  `g` geometry NOT NULL,
  `gs` int GENERATED ALWAYS AS ((`a` * 2)) STORED,
  PRIMARY KEY (`id`),
  KEY `kb` (`b`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// A table whose foreign key cascades: MariaDB 11.2+ does not copy it online.
const CASCADING_TABLE: &str = "CREATE TABLE `oc` (
  `id` int NOT NULL,
  `a` int DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `fk` (`a`),
  CONSTRAINT `fk` FOREIGN KEY (`a`) REFERENCES `p` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// A table with VIRTUAL columns, one of them indexed: MariaDB before 11.2 rebuilds it only by
/// copying.
const VIRTUAL_TABLE: &str = "CREATE TABLE `ov` (
  `id` int NOT NULL,
  `n` int DEFAULT NULL,
  `u` int DEFAULT NULL,
  `b` varchar(10) DEFAULT NULL,
  `g` int GENERATED ALWAYS AS ((`n` * 2)) VIRTUAL,
  `gi` int GENERATED ALWAYS AS ((`n` * 3)) VIRTUAL,
  PRIMARY KEY (`id`),
  KEY `kgi` (`gi`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const ONLINE_WRITES: &[&str] = &[
    "INSERT INTO p VALUES (1)",
    "INSERT INTO o (id, a, b, e, g) VALUES (1, 1, 'one', 'x', POINT(1, 1)), \
     (2, NULL, 'two', 'y', POINT(2, 2))",
    "INSERT INTO oc VALUES (1, 1)",
    "INSERT INTO ov (id, n, u, b) VALUES (1, 1, 1, 'one'), (2, NULL, 2, NULL)",
];

/// Changes on `o` and `oc` where the analyzer's judgement must be the server's answer to the
/// change with LOCK=NONE, on every server: online exactly when the server takes it.
const ONLINE_CASES: &[(&str, &str)] = &[
    // A copy on MariaDB before 11.2 and on MySQL; 11.2+ copies it online.
    (ONLINE_TABLE, "ALTER TABLE o MODIFY a BIGINT"),
    (
        ONLINE_TABLE,
        "ALTER TABLE o ADD CONSTRAINT c2 CHECK (a > 0)",
    ),
    (ONLINE_TABLE, "ALTER TABLE o ADD FULLTEXT KEY ft (b)"),
    (ONLINE_TABLE, "ALTER TABLE o ADD SPATIAL KEY sp (g)"),
    (ONLINE_TABLE, "ALTER TABLE o ENGINE=MyISAM"),
    (
        ONLINE_TABLE,
        "ALTER TABLE o ADD CONSTRAINT fko FOREIGN KEY (a) REFERENCES p (id)",
    ),
    // NOT NULL on a table with a STORED generated column: MariaDB copies, MySQL in place.
    (ONLINE_TABLE, "ALTER TABLE o MODIFY b VARCHAR(20) NOT NULL"),
    (
        ONLINE_TABLE,
        "ALTER TABLE o DROP PRIMARY KEY, ADD PRIMARY KEY (id, b)",
    ),
    // Not taken online by any of them, 11.8's online copy included.
    (
        ONLINE_TABLE,
        "ALTER TABLE o ADD COLUMN n INT NOT NULL AUTO_INCREMENT, ADD UNIQUE KEY (n)",
    ),
    (
        ONLINE_TABLE,
        "ALTER TABLE o PARTITION BY HASH (id) PARTITIONS 2",
    ),
    (CASCADING_TABLE, "ALTER TABLE oc MODIFY a BIGINT"),
    // A CHECK in a new column's definition (JSON's, on MariaDB): MariaDB takes it with the
    // column, MySQL copies; written as a table constraint MariaDB copies too (before 11.2).
    (ONLINE_TABLE, "ALTER TABLE o ADD COLUMN c INT CHECK (c > 0)"),
    (
        ONLINE_TABLE,
        "ALTER TABLE o ADD COLUMN c INT, ADD CONSTRAINT c9 CHECK (c > 0)",
    ),
    (ONLINE_TABLE, "ALTER TABLE o ADD COLUMN j JSON"),
    // An indexed VIRTUAL column: MariaDB before 11.2 copies for any rebuild, even a column
    // added at the end; an unindexed VIRTUAL expression changes in place on MariaDB only.
    (VIRTUAL_TABLE, "ALTER TABLE ov ADD COLUMN x INT"),
    (VIRTUAL_TABLE, "ALTER TABLE ov DROP COLUMN u"),
    (VIRTUAL_TABLE, "ALTER TABLE ov FORCE"),
    (VIRTUAL_TABLE, "ALTER TABLE ov MODIFY u INT NOT NULL"),
    (VIRTUAL_TABLE, "ALTER TABLE ov ADD KEY kb (b)"),
    (VIRTUAL_TABLE, "ALTER TABLE ov MODIFY b VARCHAR(20)"),
    (VIRTUAL_TABLE, "ALTER TABLE ov RENAME COLUMN u TO u2"),
    (
        VIRTUAL_TABLE,
        "ALTER TABLE ov MODIFY g INT AS (n * 4) VIRTUAL",
    ),
    (
        VIRTUAL_TABLE,
        "ALTER TABLE ov MODIFY gi INT AS (n * 4) VIRTUAL",
    ),
    // Online everywhere.
    (ONLINE_TABLE, "ALTER TABLE o ADD COLUMN z INT"),
    (ONLINE_TABLE, "ALTER TABLE o ADD KEY ka (a)"),
    (ONLINE_TABLE, "ALTER TABLE o MODIFY e ENUM('x','y','z')"),
    (
        ONLINE_TABLE,
        "ALTER TABLE o MODIFY b VARCHAR(20) NULL DEFAULT 'b'",
    ),
    (ONLINE_TABLE, "ALTER TABLE o ENGINE=InnoDB"),
    (CASCADING_TABLE, "ALTER TABLE oc ADD COLUMN z INT AFTER id"),
];

async fn exec(conn: &mut MySqlConnection, sql: &str) -> Result<(), String> {
    conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn show_create(conn: &mut MySqlConnection, schema: &str, table: &str) -> String {
    let row: (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SHOW CREATE TABLE `{schema}`.`{table}`"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("SHOW CREATE TABLE {schema}.{table}: {e}"));
    row.1
}

/// Creates schema `schema` with `tables` and `writes`, runs `statement`, and returns the
/// server's answer.
async fn run_in(
    conn: &mut MySqlConnection,
    schema: &str,
    tables: &[&str],
    writes: &[&str],
    statement: &str,
) -> Result<(), String> {
    exec(conn, &format!("CREATE DATABASE `{schema}`"))
        .await
        .expect("create the schema");
    exec(conn, &format!("USE `{schema}`"))
        .await
        .expect("use it");
    for table in tables {
        exec(conn, table).await.expect("create the table");
    }
    for w in writes {
        exec(conn, w).await.expect("write a row");
    }
    exec(conn, statement).await
}

/// Every grammar statement the server accepts gets a verdict and the shape the server prints.
async fn grammar(conn: &mut MySqlConnection, flavor: Flavor, options: &AnalyzeOptions) {
    let statements: Vec<&str> = GRAMMAR
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    let (mut accepted, mut refused, mut refused_by_both) = (0, 0, 0);
    let mut wrong = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let schema = format!("g{i}");
        let answer = run_in(
            conn,
            &schema,
            &[GRAMMAR_PARENT, GRAMMAR_TABLE],
            &[],
            "SELECT 1",
        )
        .await;
        answer.expect("create the grammar table");
        let before = show_create(conn, &schema, "t").await;
        let analysis = analyze_with(flavor, &before, statement, options);
        match exec(conn, statement).await {
            Ok(()) => {
                accepted += 1;
                if let Err(e) = analysis {
                    wrong.push(format!(
                        "`{statement}`: the server takes it, the analyzer: {e}"
                    ));
                    continue;
                }
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME <> 'p'",
                )
                .bind(&schema)
                .fetch_all(&mut *conn)
                .await
                .expect("list the tables");
                let after = show_create(conn, &schema, &tables[0]).await;
                let model = apply_alter(flavor, &before, statement).expect("analyzed, so modelled");
                let server = parse_table(flavor, &after)
                    .unwrap_or_else(|e| panic!("{flavor}: read `{after}`: {e}"));
                if !model.same_shape(&server) {
                    wrong.push(format!(
                        "`{statement}`: the model's table differs from the server's:\n{}",
                        after.replace('\n', " ")
                    ));
                }
            }
            Err(_) => {
                refused += 1;
                if analysis.is_err() {
                    refused_by_both += 1;
                }
            }
        }
    }
    eprintln!(
        "{flavor}: {} grammar statements: {accepted} taken by the server, each judged and modelled; \
         {refused} refused by it, {refused_by_both} of them by the analyzer too",
        statements.len()
    );
    assert!(
        wrong.is_empty(),
        "{flavor}: statements the server takes that the analyzer does not judge as it does:\n{}",
        wrong.join("\n")
    );
    assert!(accepted > 200, "{flavor}: the grammar set is exercised");
}

/// `grammar_too`: also run the grammar statements.
async fn check(kind: ServerKind, flavor: Flavor, grammar_too: bool) {
    let cluster = replication(kind, 1)
        .await
        .unwrap_or_else(|e| panic!("{flavor}: start a server: {e}"));
    let mut conn = cluster
        .primary()
        .connect_root()
        .await
        .expect("connect as root");
    exec(&mut conn, "SET SESSION sql_log_bin = 0")
        .await
        .expect("binary log off");
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut conn)
        .await
        .expect("read the version");
    let version = Version::parse(&version).expect("a version");
    let options = AnalyzeOptions::default().with_server_version(version);
    let copies_online = flavor == Flavor::Mariadb && version >= Version::new(11, 2, 0);

    if grammar_too {
        grammar(&mut conn, flavor, &options).await;
    }

    let mut online = 0;
    let mut enforced = 0;
    let mut stricter = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let table = case.fixture.table;
        let analysis = analyze_with(flavor, table, case.alter, &options).expect("analyze");
        let statement =
            rollout_statement(flavor, case.alter, analysis.primary).expect("rollout statement");
        let answer = run_in(&mut conn, &format!("r{i}"), &[table], &[], &statement).await;
        match analysis.primary {
            PrimaryMode::Online => {
                online += 1;
                if statement.ends_with(", LOCK=NONE") {
                    enforced += 1;
                }
                if let Err(e) = answer {
                    panic!(
                        "{flavor} {}: judged online, but the server refuses `{statement}`: {e}",
                        case.name
                    );
                }
            }
            PrimaryMode::Switchover => {
                assert!(!statement.ends_with(", LOCK=NONE"), "{statement}");
                // Where the analyzer is stricter than the server: the same change with
                // LOCK=NONE, on another copy. Reported, not asserted (stricter is safe).
                let with_lock = run_in(
                    &mut conn,
                    &format!("s{i}"),
                    &[table],
                    &[],
                    &format!("{}, LOCK=NONE", case.alter),
                )
                .await;
                if answer.is_ok() && with_lock.is_ok() {
                    stricter.push(case.name);
                }
            }
        }
    }
    eprintln!(
        "{flavor} {version}: {} reference cases, {online} judged online and accepted ({enforced} of \
         them with LOCK=NONE added); judged switchover although the server takes them with \
         LOCK=NONE: {stricter:?}",
        CASES.len()
    );
    assert!(enforced > 5, "{flavor}: the reference set has online cases");

    let mut wrong = Vec::new();
    for (i, (table, alter)) in ONLINE_CASES.iter().enumerate() {
        let analysis = analyze_with(flavor, table, alter, &options).expect("analyze");
        let statement = format!("{alter}, LOCK=NONE");
        let answer = run_in(
            &mut conn,
            &format!("o{i}"),
            &[GRAMMAR_PARENT, ONLINE_TABLE, CASCADING_TABLE, VIRTUAL_TABLE],
            ONLINE_WRITES,
            &statement,
        )
        .await;
        if answer.is_ok() != (analysis.primary == PrimaryMode::Online) {
            wrong.push(format!(
                "`{alter}`: judged {} ({}), the server on LOCK=NONE: {answer:?}",
                analysis.primary,
                analysis
                    .clauses
                    .iter()
                    .map(|c| c.primary_reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{flavor} {version}: online judged otherwise than the server answers:\n{}",
        wrong.join("\n")
    );

    for (i, (alter, mariadb, mysql)) in VARCHAR_CASES.iter().enumerate() {
        let takes = if flavor == Flavor::Mariadb {
            *mariadb
        } else {
            *mysql
        };
        let analysis = analyze_with(flavor, VARCHAR_TABLE, alter, &options).expect("analyze");
        let statement = format!("{alter}, LOCK=NONE");
        let answer = run_in(
            &mut conn,
            &format!("v{i}"),
            &[VARCHAR_TABLE],
            VARCHAR_WRITES,
            &statement,
        )
        .await;
        assert_eq!(
            answer.is_ok(),
            takes || copies_online,
            "{flavor}: the server on `{statement}`: {answer:?}"
        );
        assert_eq!(
            analysis.primary == PrimaryMode::Online,
            takes || copies_online,
            "{flavor} {version} `{alter}`: judged {}",
            analysis.primary
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_takes_every_statement_judged_and_every_change_judged_online() {
    check(ServerKind::Mariadb1011, Flavor::Mariadb, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_10_5_takes_every_change_judged_online_without_blocking_writes() {
    check(ServerKind::Mariadb105, Flavor::Mariadb, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_11_8_takes_every_statement_judged_and_every_change_judged_online() {
    check(ServerKind::Mariadb118, Flavor::Mariadb, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_takes_every_statement_judged_and_every_change_judged_online() {
    check(ServerKind::Mysql97, Flavor::Mysql, true).await;
}
