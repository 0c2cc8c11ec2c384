//! `switchyard check-upgrade` run as a process over real upgrade and downgrade paths from the
//! MySQL reference manual and the MariaDB knowledge base, and over malformed input.

use std::process::{Command, Output};

fn check_upgrade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check-upgrade")
        .args(args)
        .output()
        .expect("the switchyard binary runs")
}

fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("switchyard exits with a code, not a signal")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// One row of the path table: flavor, from, to, expected exit code, expected kind, and the source
/// of the expectation.
struct Row {
    flavor: &'static str,
    from: &'static str,
    to: &'static str,
    exit: i32,
    kind: &'static str,
    why: &'static str,
}

const fn row(
    flavor: &'static str,
    from: &'static str,
    to: &'static str,
    exit: i32,
    kind: &'static str,
    why: &'static str,
) -> Row {
    Row {
        flavor,
        from,
        to,
        exit,
        kind,
        why,
    }
}

const SUPPORTED: i32 = 0;
const REFUSED: i32 = 2;

const PATHS: &[Row] = &[
    // MySQL 8.4 manual, 3.2 Upgrade Paths, Table 3.1.
    row(
        "mysql",
        "8.0.37",
        "8.0.41",
        SUPPORTED,
        "upgrade",
        "within the 8.0 bugfix series",
    ),
    row(
        "mysql",
        "8.4.0",
        "8.4.4",
        SUPPORTED,
        "upgrade",
        "within an LTS series",
    ),
    row(
        "mysql",
        "8.0.37",
        "8.4.3",
        SUPPORTED,
        "upgrade",
        "bugfix series to the next LTS",
    ),
    row(
        "mysql",
        "8.4.3",
        "9.7.0",
        SUPPORTED,
        "upgrade",
        "LTS to the next LTS",
    ),
    row(
        "mysql",
        "8.0.34",
        "8.3.0",
        SUPPORTED,
        "upgrade",
        "bugfix to an innovation release before the next LTS",
    ),
    row(
        "mysql",
        "8.4.0",
        "9.0.0",
        SUPPORTED,
        "upgrade",
        "LTS to an innovation release before the next LTS",
    ),
    row(
        "mysql",
        "8.4.0",
        "9.2.0",
        SUPPORTED,
        "upgrade",
        "LTS to an innovation release before the next LTS",
    ),
    row(
        "mysql",
        "8.3.0",
        "8.4.0",
        SUPPORTED,
        "upgrade",
        "innovation to the next LTS",
    ),
    row(
        "mysql",
        "8.1.0",
        "8.3.0",
        SUPPORTED,
        "upgrade",
        "innovation to a later innovation",
    ),
    row(
        "mysql",
        "9.6.0",
        "9.7.1",
        SUPPORTED,
        "upgrade",
        "innovation to the next LTS",
    ),
    row(
        "mysql",
        "8.3.0",
        "9.0.0",
        REFUSED,
        "upgrade",
        "innovation past the next LTS: two steps required",
    ),
    row(
        "mysql",
        "8.2.0",
        "9.1.0",
        REFUSED,
        "upgrade",
        "innovation past the next LTS",
    ),
    row(
        "mysql",
        "8.0.36",
        "9.7.0",
        REFUSED,
        "upgrade",
        "skipping the 8.4 LTS series",
    ),
    row(
        "mysql",
        "8.0.40",
        "9.0.0",
        REFUSED,
        "upgrade",
        "skipping the 8.4 LTS series",
    ),
    row(
        "mysql",
        "5.7.44",
        "8.4.0",
        REFUSED,
        "upgrade",
        "5.7 must go to 8.0 first",
    ),
    row(
        "mysql",
        "5.7.44",
        "8.0.36",
        SUPPORTED,
        "upgrade",
        "8.0 manual: 5.7 to 8.0 is supported",
    ),
    row(
        "mysql",
        "5.6.51",
        "8.0.36",
        REFUSED,
        "upgrade",
        "8.0 manual: skipping 5.7 is not supported",
    ),
    // MySQL 26.x manuals, Calendar-Version Upgrade Validation.
    row(
        "mysql",
        "9.7.4",
        "26.7.0",
        SUPPORTED,
        "upgrade",
        "9.7 LTS enters the first calendar lineage",
    ),
    row(
        "mysql",
        "9.7.5",
        "26.10.0",
        SUPPORTED,
        "upgrade",
        "later release of the first calendar lineage",
    ),
    row(
        "mysql",
        "26.7.0",
        "26.10.0",
        SUPPORTED,
        "upgrade",
        "forward within one lineage",
    ),
    row(
        "mysql",
        "26.7.0",
        "26.7.1",
        SUPPORTED,
        "upgrade",
        "patch within an innovation series",
    ),
    row(
        "mysql",
        "8.4.5",
        "26.7.0",
        REFUSED,
        "upgrade",
        "8.4 cannot skip 9.7",
    ),
    row(
        "mysql",
        "9.6.1",
        "26.7.0",
        REFUSED,
        "upgrade",
        "innovation 9.6 cannot enter the calendar lineage",
    ),
    // MySQL downgrades: 8.4 manual chapter 4, 8.0 manual chapter 4, 26.7 manual 4.1.
    row(
        "mysql",
        "8.4.4",
        "8.4.0",
        SUPPORTED,
        "downgrade",
        "within an LTS series",
    ),
    row(
        "mysql",
        "9.7.3",
        "9.7.0",
        SUPPORTED,
        "downgrade",
        "within an LTS series",
    ),
    row(
        "mysql",
        "8.0.36",
        "8.0.35",
        SUPPORTED,
        "downgrade",
        "8.0, both 8.0.35 or later",
    ),
    row(
        "mysql",
        "8.0.41",
        "8.0.37",
        SUPPORTED,
        "downgrade",
        "8.0, both 8.0.35 or later",
    ),
    row(
        "mysql",
        "8.0.35",
        "8.0.34",
        REFUSED,
        "downgrade",
        "8.0 below 8.0.35",
    ),
    row(
        "mysql",
        "8.4.3",
        "8.0.36",
        REFUSED,
        "downgrade",
        "across series: dump and load or replication only",
    ),
    row(
        "mysql",
        "8.4.0",
        "8.3.0",
        REFUSED,
        "downgrade",
        "LTS to the previous innovation series",
    ),
    row(
        "mysql",
        "9.7.0",
        "8.4.6",
        REFUSED,
        "downgrade",
        "LTS to the previous LTS",
    ),
    row(
        "mysql",
        "9.5.0",
        "9.4.0",
        REFUSED,
        "downgrade",
        "within the innovation track",
    ),
    row(
        "mysql",
        "9.1.2",
        "9.1.0",
        REFUSED,
        "downgrade",
        "innovation releases are never downgraded in place",
    ),
    row(
        "mysql",
        "26.7.1",
        "26.7.0",
        REFUSED,
        "downgrade",
        "innovation patch downgrade",
    ),
    row(
        "mysql",
        "8.0.36",
        "5.7.44",
        REFUSED,
        "downgrade",
        "8.0 to 5.7 is not supported",
    ),
    row("mysql", "8.4.3", "8.4.3", SUPPORTED, "same", "no change"),
    // MariaDB knowledge base: Upgrading Between Major MariaDB Versions / Downgrading.
    row(
        "mariadb",
        "10.3.39",
        "10.11.19",
        SUPPORTED,
        "upgrade",
        "any earlier version to a later one",
    ),
    row(
        "mariadb",
        "10.5.27",
        "10.11.19",
        SUPPORTED,
        "upgrade",
        "any earlier version to a later one",
    ),
    row(
        "mariadb",
        "10.5.27",
        "11.8.6",
        SUPPORTED,
        "upgrade",
        "any earlier version to a later one",
    ),
    row(
        "mariadb",
        "10.11.19",
        "11.4.5",
        SUPPORTED,
        "upgrade",
        "any earlier version to a later one",
    ),
    row(
        "mariadb",
        "11.8.6",
        "12.3.1",
        SUPPORTED,
        "upgrade",
        "any earlier version to a later one",
    ),
    row(
        "mariadb",
        "10.11.6",
        "10.11.19",
        SUPPORTED,
        "upgrade",
        "minor upgrade",
    ),
    row(
        "mariadb",
        "10.11.19",
        "10.11.6",
        SUPPORTED,
        "downgrade",
        "within a series",
    ),
    row(
        "mariadb",
        "11.8.6",
        "10.11.19",
        REFUSED,
        "downgrade",
        "across major versions (change buffer)",
    ),
    row(
        "mariadb",
        "10.11.19",
        "10.6.21",
        REFUSED,
        "downgrade",
        "across major versions",
    ),
    row(
        "mariadb",
        "11.8.6",
        "11.4.5",
        REFUSED,
        "downgrade",
        "across major versions",
    ),
    row(
        "mariadb",
        "11.4.5",
        "11.4.5",
        SUPPORTED,
        "same",
        "no change",
    ),
    // What servers report, as the operator reads it from SELECT VERSION() and the handshake.
    row(
        "mariadb",
        "10.6.21-MariaDB-log",
        "5.5.5-10.11.19-MariaDB",
        SUPPORTED,
        "upgrade",
        "reported forms",
    ),
    row(
        "mariadb",
        "10.11.19-MariaDB-0+deb12u1-log",
        "11.8.6-MariaDB",
        SUPPORTED,
        "upgrade",
        "reported forms",
    ),
    row(
        "mysql",
        "8.4.3-log",
        "9.7.0",
        SUPPORTED,
        "upgrade",
        "reported forms",
    ),
    row(
        "MySQL",
        "8.0.36",
        "8.0.35",
        SUPPORTED,
        "downgrade",
        "flavor in any letter case",
    ),
];

#[test]
fn answers_the_manual_path_table() {
    let mut failures = Vec::new();
    for r in PATHS {
        let output = check_upgrade(&["--flavor", r.flavor, "--from", r.from, "--to", r.to]);
        let stdout = text(&output.stdout);
        let verdict = if r.exit == SUPPORTED {
            "supported"
        } else {
            "refused"
        };
        let ok = code(&output) == r.exit
            && stdout.starts_with(&format!("{verdict}: "))
            && stdout
                .lines()
                .next()
                .is_some_and(|line| line.ends_with(&format!("({})", r.kind)))
            && stdout
                .lines()
                .any(|line| line.starts_with("reason: ") && line.len() > "reason: ".len())
            && stdout.lines().any(|line| {
                line.starts_with("manual: ")
                    && (line.contains("Reference Manual") || line.contains("Knowledge Base"))
            })
            && output.stderr.is_empty();
        if !ok {
            failures.push(format!(
                "{} {} -> {} ({}): expected exit {} {}, got {:?}\nstdout: {stdout}stderr: {}",
                r.flavor,
                r.from,
                r.to,
                r.why,
                r.exit,
                r.kind,
                output.status.code(),
                text(&output.stderr)
            ));
        }
    }
    assert!(PATHS.len() >= 30);
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        PATHS.len(),
        failures.join("\n")
    );
}

#[test]
fn json_output_carries_the_verdict() {
    let output = check_upgrade(&[
        "--flavor", "mysql", "--from", "8.0.36", "--to", "9.7.0", "--format", "json",
    ]);
    assert_eq!(code(&output), REFUSED);
    let stdout = text(&output.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(answer["flavor"], "mysql");
    assert_eq!(answer["from"], "8.0.36");
    assert_eq!(answer["to"], "9.7.0");
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["kind"], "upgrade");
    assert!(
        answer["reason"].as_str().unwrap().contains("8.4"),
        "{answer}"
    );
    assert_eq!(
        answer["manual"],
        "MySQL 8.4 Reference Manual, 3.2 Upgrade Paths"
    );
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "{keys:?}");

    // Reported forms are normalised in the answer.
    let output = check_upgrade(&[
        "--flavor",
        "mariadb",
        "--from",
        "5.5.5-10.11.19-MariaDB",
        "--to",
        "10.11.6",
        "--format",
        "json",
    ]);
    assert_eq!(code(&output), SUPPORTED);
    let answer: serde_json::Value = serde_json::from_str(&text(&output.stdout)).unwrap();
    assert_eq!(answer["from"], "10.11.19");
    assert_eq!(answer["kind"], "downgrade");
    assert_eq!(answer["allowed"], true);
}

#[test]
fn refusals_explain_with_the_data_dictionary_version() {
    let output = check_upgrade(&["--flavor", "mysql", "--from", "8.4.3", "--to", "8.0.36"]);
    assert_eq!(code(&output), REFUSED);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("8.4.3 has data dictionary version 80300; 8.0.36 reads 80023"),
        "{stdout}"
    );
    assert!(
        stdout.contains("manual: MySQL 8.4 Reference Manual, 4 Downgrading MySQL"),
        "{stdout}"
    );
}

#[test]
fn mariadb_upgrades_say_to_run_mariadb_upgrade() {
    let output = check_upgrade(&["--flavor", "mariadb", "--from", "10.5.27", "--to", "11.8.6"]);
    assert_eq!(code(&output), SUPPORTED);
    assert!(text(&output.stdout).contains("mariadb-upgrade"));
}

/// Malformed input: exit 64, exactly one line on stderr naming the problem, nothing on stdout.
#[test]
fn malformed_input_gets_one_line_and_exit_64() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--flavor", "postgres", "--from", "8.0.36", "--to", "8.4.3"],
            "expected mysql or mariadb",
        ),
        (
            &["--flavor", "", "--from", "8.0.36", "--to", "8.4.3"],
            "expected mysql or mariadb",
        ),
        (
            &["--flavor", "mysql", "--from", "8.0", "--to", "8.4.3"],
            "--from",
        ),
        (
            &["--flavor", "mysql", "--from", "8", "--to", "8.4.3"],
            "major.minor.patch",
        ),
        (
            &["--flavor", "mysql", "--from", "x.y.z", "--to", "8.4.3"],
            "not a decimal number",
        ),
        (
            &["--flavor", "mysql", "--from", "8.0.36", "--to", "8.0.36.1"],
            "more than three",
        ),
        (
            &["--flavor", "mysql", "--from", "8.0.36", "--to", ""],
            "empty",
        ),
        (
            &["--flavor", "mysql", "--from", "8.0.36", "--to", "   "],
            "empty",
        ),
        (
            &["--flavor", "mysql", "--from", "99999.0.0", "--to", "8.4.3"],
            "too large",
        ),
        (
            &["--flavor", "mysql", "--from", "8.0.36abc", "--to", "8.4.3"],
            "patch",
        ),
        (
            &["--flavor", "mysql", "--from", "9.7.0", "--to", "10.0.0"],
            "not in switchyard's release catalog",
        ),
        (
            &["--flavor", "mysql", "--from", "9.7.0", "--to", "27.1.0"],
            "refuses to guess",
        ),
        (
            &["--flavor", "mysql", "--from", "9.7.0", "--to", "26.13.0"],
            "not in switchyard's release catalog",
        ),
        (
            &["--flavor", "mariadb", "--from", "11.8.6", "--to", "14.0.0"],
            "not in switchyard's release catalog",
        ),
        (
            &["--flavor", "mariadb", "--from", "8.4.3", "--to", "11.8.6"],
            "--from",
        ),
        (
            &[
                "--flavor",
                "mysql",
                "--from",
                "8.0.36",
                "--to",
                "10.11.19-MariaDB",
            ],
            "is a MariaDB version",
        ),
        (
            &["--flavor", "mysql", "--from", "8.0.4", "--to", "8.0.36"],
            "pre-GA",
        ),
        (
            &["--flavor", "mysql", "--from", "5.6.51", "--to", "5.7.44"],
            "older than switchyard's release catalog",
        ),
        (
            &[
                "--flavor", "mysql", "--from", "8.0.36", "--to", "8.4.3", "--format", "xml",
            ],
            "expected text or json",
        ),
    ];
    for (args, needle) in cases {
        let output = check_upgrade(args);
        let stderr = text(&output.stderr);
        assert_eq!(code(&output), 64, "{args:?}: stderr {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: expected one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: nothing on stdout, got {}",
            text(&output.stdout)
        );
    }
}

#[test]
fn usage_errors_exit_64_without_a_panic() {
    for args in [
        &["--flavor", "mysql", "--from", "8.0.36"][..],
        &["--from", "8.0.36", "--to", "8.4.3"][..],
        &[
            "--flavor", "mysql", "--from", "8.0.36", "--to", "8.4.3", "--bogus",
        ][..],
    ] {
        let output = check_upgrade(args);
        let stderr = text(&output.stderr);
        assert_eq!(code(&output), 64, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
