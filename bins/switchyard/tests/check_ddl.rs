//! `switchyard check-ddl` end to end: exit codes, JSON and text output, invalid inputs.

use std::io::Write;
use std::process::{Command, Output};

const MARIADB_TABLE: &str = "CREATE TABLE `t` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `n` int(11) DEFAULT NULL,
  `name` varchar(20) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

const MYSQL_TABLE: &str = "CREATE TABLE `t` (
  `id` int NOT NULL AUTO_INCREMENT,
  `n` int DEFAULT NULL,
  `name` varchar(20) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci
/*!50100 PARTITION BY HASH (`id`)
PARTITIONS 2 */";

fn table_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write table");
    file
}

fn check_ddl(flavor: &str, table: &std::path::Path, alter: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check-ddl", "--flavor", flavor, "--table"])
        .arg(table)
        .args(["--alter", alter])
        .args(extra)
        .output()
        .expect("run switchyard")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

#[test]
fn safe_exits_0_with_the_json_shape() {
    for (flavor, table) in [("mariadb", MARIADB_TABLE), ("mysql", MYSQL_TABLE)] {
        let file = table_file(table);
        let out = check_ddl(
            flavor,
            file.path(),
            "ALTER TABLE t ADD COLUMN extra INT DEFAULT NULL",
            &["--format", "json"],
        );
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let value = json(&out);
        assert_eq!(value["verdict"], "safe");
        assert_eq!(value["primary"], "online");
        assert_eq!(value["settings"], serde_json::json!({}));
        assert!(value["reasons"].as_array().is_some_and(|r| !r.is_empty()));
        assert_eq!(value["clauses"][0]["rule"], "column-added-at-end");
        assert_eq!(
            value["clauses"][0]["clause"],
            "ADD COLUMN extra INT DEFAULT NULL"
        );
    }
}

#[test]
fn safe_with_conversion_exits_3_and_names_the_setting() {
    let file = table_file(MARIADB_TABLE);
    let out = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t MODIFY n BIGINT",
        &["--format", "json"],
    );
    assert_eq!(code(&out), 3);
    let value = json(&out);
    assert_eq!(value["verdict"], "safe-with-conversion");
    assert_eq!(value["settings"]["slave_type_conversions"], "ALL_NON_LOSSY");
    assert_eq!(value["primary"], "switchover");

    let file = table_file(MYSQL_TABLE);
    let out = check_ddl(
        "mysql",
        file.path(),
        "ALTER TABLE t MODIFY name VARCHAR(40)",
        &[],
    );
    assert_eq!(code(&out), 3);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("setting: replica_type_conversions='ALL_NON_LOSSY'"),
        "{text}"
    );
}

#[test]
fn unsafe_exits_2_with_the_rule() {
    let file = table_file(MARIADB_TABLE);
    let out = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t ADD COLUMN extra INT AFTER id",
        &["--format", "json"],
    );
    assert_eq!(code(&out), 2);
    let value = json(&out);
    assert_eq!(value["verdict"], "unsafe");
    assert!(
        value["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("column-added-in-middle"))
    );

    let out = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t MODIFY n VARCHAR(30)",
        &[],
    );
    assert_eq!(code(&out), 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("unsafe:"), "{text}");
    assert!(
        text.contains("[unsafe] MODIFY n VARCHAR(30)") && text.contains("type-family-change"),
        "{text}"
    );
}

#[test]
fn text_output_has_one_line_per_clause() {
    let file = table_file(MYSQL_TABLE);
    let out = check_ddl(
        "mysql",
        file.path(),
        "ALTER TABLE t ADD INDEX i (n), ADD COLUMN e INT",
        &[],
    );
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let clause_lines: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(clause_lines.len(), 2, "{text}");
    assert!(clause_lines[0].starts_with("[safe] ADD INDEX i (n)"));
    assert!(text.contains("primary: online"));
}

#[test]
fn both_directions_flag_judges_galera_changes() {
    let file = table_file(MARIADB_TABLE);
    let forward = check_ddl("mariadb", file.path(), "ALTER TABLE t MODIFY n BIGINT", &[]);
    assert_eq!(code(&forward), 3);
    let both = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t MODIFY n BIGINT",
        &["--both-directions"],
    );
    assert_eq!(code(&both), 2);
}

fn assert_invalid(out: &Output, needle: &str) {
    assert_eq!(
        code(out),
        64,
        "stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(out.stdout.is_empty(), "nothing is judged on invalid input");
}

#[test]
fn invalid_inputs_exit_64_with_one_clear_message() {
    let file = table_file(MARIADB_TABLE);
    let path = file.path();
    assert_invalid(
        &check_ddl("mariadb", path, "DROP TABLE t", &[]),
        "is not an ALTER TABLE",
    );
    assert_invalid(
        &check_ddl("mariadb", path, "SELECT 1", &[]),
        "is not an ALTER TABLE",
    );
    assert_invalid(
        &check_ddl(
            "mariadb",
            path,
            "ALTER TABLE t ADD c INT; DROP TABLE t",
            &[],
        ),
        "2 statements",
    );
    assert_invalid(
        &check_ddl(
            "mariadb",
            path,
            "ALTER TABLE t ADD c INT; ALTER TABLE t ADD d INT",
            &[],
        ),
        "2 statements",
    );
    assert_invalid(
        &check_ddl("mariadb", path, "ALTER TABLE u ADD c INT", &[]),
        "changes table `u`",
    );
    // A second statement hidden in an executable comment the server runs.
    assert_invalid(
        &check_ddl(
            "mariadb",
            path,
            "ALTER TABLE t ADD c INT /*!50100 ; DROP TABLE t */",
            &[],
        ),
        "2 statements",
    );
    assert_invalid(
        &check_ddl(
            "mariadb",
            path,
            "ALTER TABLE t ADD c INT /*M!100100 ; DROP TABLE t */",
            &[],
        ),
        "2 statements",
    );
    assert_invalid(
        &check_ddl("mariadb", path, "ALTER TABLE t DROP COLUMN nope", &[]),
        "column `nope`",
    );
    assert_invalid(&check_ddl("mariadb", path, "", &[]), "empty");
    assert_invalid(
        &check_ddl("postgres", path, "ALTER TABLE t ADD c INT", &[]),
        "--flavor",
    );
    assert_invalid(
        &check_ddl(
            "mariadb",
            path,
            "ALTER TABLE t ADD c INT",
            &["--format", "xml"],
        ),
        "--format",
    );
    assert_invalid(
        &check_ddl(
            "mariadb",
            path,
            "ALTER TABLE t ADD c INT",
            &["--server-version", "ten"],
        ),
        "--server-version",
    );
    let missing = std::path::Path::new("/nonexistent/table.sql");
    assert_invalid(
        &check_ddl("mariadb", missing, "ALTER TABLE t ADD c INT", &[]),
        "cannot read",
    );
    let not_a_table = table_file("DROP TABLE t");
    assert_invalid(
        &check_ddl(
            "mariadb",
            not_a_table.path(),
            "ALTER TABLE t ADD c INT",
            &[],
        ),
        "CREATE TABLE",
    );
}

#[test]
fn executable_comments_are_read_as_the_server_reads_them() {
    // The server runs what an executable comment holds: the hidden DROP COLUMN is judged.
    let file = table_file(MARIADB_TABLE);
    let out = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t ADD c INT /*!, DROP COLUMN n */",
        &["--format", "json"],
    );
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    let value = json(&out);
    assert_eq!(value["verdict"], "unsafe");
    assert!(
        value["clauses"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["clause"] == "DROP COLUMN n")),
        "{value}"
    );
    // MySQL skips MariaDB's /*M! comments, and a server skips a comment for a later version
    // than its own.
    let mysql = table_file(MYSQL_TABLE);
    for alter in [
        "ALTER TABLE t ADD c INT /*M!, DROP COLUMN n */",
        "ALTER TABLE t ADD c INT /*!999999 , DROP COLUMN n */",
    ] {
        let out = check_ddl("mysql", mysql.path(), alter, &[]);
        assert_eq!(
            code(&out),
            0,
            "{alter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn renames_in_one_statement_apply_together() {
    // The server reads every name in the statement as it was before: the two columns swap.
    let file = table_file(MARIADB_TABLE);
    let out = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t RENAME COLUMN n TO name, RENAME COLUMN name TO n",
        &["--format", "json"],
    );
    let value = json(&out);
    assert_ne!(code(&out), 64, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        value["clauses"].as_array().map(Vec::len),
        Some(2),
        "{value}"
    );
}

#[test]
fn a_comment_marker_inside_a_string_is_not_a_comment() {
    let file = table_file(MARIADB_TABLE);
    let out = check_ddl(
        "mariadb",
        file.path(),
        "ALTER TABLE t COMMENT = 'not /*! a comment */; really'",
        &[],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn usage_errors_exit_64() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check-ddl", "--flavor", "mysql"])
        .output()
        .expect("run switchyard");
    assert_eq!(code(&out), 64);
}
