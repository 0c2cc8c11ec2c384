//! The analyzer's verdicts against what real MariaDB and MySQL replication pairs do.
//!
//! Every reference case ([`switchyard_ddl::reference::CASES`]) and a held-back set of other
//! ALTER statements are replayed on one primary/replica pair per flavor, as a rolling change
//! runs them: the ALTER on the replica with the binary log off (through switchyard-mysql's
//! `run_local_ddl`), the analyzer's conversion setting on the replica, then old-shape writes on
//! the source with edge values. The replica then either stops, or applies the writes; its table
//! is compared with the source's table altered the same way (or, when the source cannot take the
//! ALTER on its rows, with the source's table on the shared columns, by value).
//!
//! Asserted for every case: `safe` and `safe-with-conversion` mean the replica applied every
//! write and its data matches; a replica that stops or differs means the analyzer said `unsafe`.
//! `unsafe` cases run with `ALL_NON_LOSSY`, the most the analyzer ever asks for, so that the
//! report shows where the analyzer is stricter than the servers. The report (one table per
//! flavor) is printed, written to `target/ddl-verification.md`, and compared with the committed
//! `docs/ddl-verification.md`.

mod pair;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use pair::{Behaviour, Pair, Replay};
use switchyard_ddl::reference::{self, CASES};
use switchyard_ddl::{Analysis, Rule, Verdict, analyze, conversion_variable};
use switchyard_mysql::TypeConversions;
use switchyard_plan::versions::Flavor;
use switchyard_testbed::ServerKind;

/// The held-back table: other types and edge values than the reference table's.
const HELD_TABLE: &str = "CREATE TABLE `t` (
  `id` int NOT NULL,
  `a` smallint DEFAULT NULL,
  `b` tinyint unsigned DEFAULT NULL,
  `v` varchar(10) DEFAULT NULL,
  `vb` varchar(100) DEFAULT NULL,
  `m` decimal(10,2) DEFAULT NULL,
  `f` float DEFAULT NULL,
  `e` enum('x','y') DEFAULT NULL,
  `dt` datetime DEFAULT NULL,
  `tx` text,
  `n` int DEFAULT NULL,
  `w` int DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Old-shape writes on the held-back table: minimum and maximum values, NULLs, a ten-character
/// string of 17 bytes, a hundred-character string of 300 bytes, trailing spaces, a 40 000-byte
/// TEXT, an inexact FLOAT, a duplicate in `w`.
const HELD_WRITES: &[&str] = &[
    "INSERT INTO t VALUES (1, -32768, 255, 'ñandú€😀abc', REPEAT('€', 100), 99999999.99, 3.4e38, \
     'y', '9999-12-31 23:59:59', REPEAT('ab', 20000), -2147483648, 7)",
    "INSERT INTO t VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 7)",
    "INSERT INTO t VALUES (3, 32767, 0, '', 'x', -99999999.99, 0.1, 'x', '1000-01-01 00:00:00', '', \
     2147483647, NULL)",
    "INSERT INTO t VALUES (4, 0, 128, 'x', NULL, 0.01, -1.5, 'y', '2024-02-29 12:00:00', 'short', 0, 8)",
    "UPDATE t SET a = a + 1, v = 'ÿ', e = 'x', n = NULL, tx = REPEAT('z', 300) WHERE id = 1",
    "UPDATE t SET n = -1, w = 9 WHERE id = 2",
    "UPDATE t SET v = 'q  ' WHERE id = 3",
    "DELETE FROM t WHERE id = 4",
];

/// ALTER statements that are not reference cases, on [`HELD_TABLE`].
const HELD_BACK: &[(&str, &str)] = &[
    (
        "varchar 10 to 255, length bytes 1 to 2",
        "ALTER TABLE t MODIFY v VARCHAR(255)",
    ),
    ("smallint to mediumint", "ALTER TABLE t MODIFY a MEDIUMINT"),
    (
        "add after the first column",
        "ALTER TABLE t ADD COLUMN x INT AFTER id",
    ),
    ("drop a middle column", "ALTER TABLE t DROP COLUMN m"),
    ("enum append", "ALTER TABLE t MODIFY e ENUM('x','y','z')"),
    (
        "decimal 10,2 to 12,2",
        "ALTER TABLE t MODIFY m DECIMAL(12,2)",
    ),
    (
        "decimal 10,2 to 10,4",
        "ALTER TABLE t MODIFY m DECIMAL(10,4)",
    ),
    (
        "decimal 10,2 to 11,3",
        "ALTER TABLE t MODIFY m DECIMAL(11,3)",
    ),
    (
        "tinyint unsigned to smallint unsigned",
        "ALTER TABLE t MODIFY b SMALLINT UNSIGNED",
    ),
    ("float to double", "ALTER TABLE t MODIFY f DOUBLE"),
    ("add unique key", "ALTER TABLE t ADD UNIQUE KEY uw (w)"),
    (
        "rename a middle column",
        "ALTER TABLE t CHANGE v v2 VARCHAR(10) DEFAULT NULL",
    ),
    (
        "datetime to datetime(3)",
        "ALTER TABLE t MODIFY dt DATETIME(3)",
    ),
    ("text to mediumtext", "ALTER TABLE t MODIFY tx MEDIUMTEXT"),
    (
        "int null to not null",
        "ALTER TABLE t MODIFY n INT NOT NULL",
    ),
    (
        "add at the end, not null default 0",
        "ALTER TABLE t ADD COLUMN z INT NOT NULL DEFAULT 0",
    ),
    (
        "smallint to int plus trailing column",
        "ALTER TABLE t MODIFY a INT, ADD COLUMN z INT DEFAULT NULL",
    ),
    ("varchar narrowing", "ALTER TABLE t MODIFY v VARCHAR(5)"),
    ("unsigned to signed", "ALTER TABLE t MODIFY b TINYINT"),
    (
        "varchar to char, trailing spaces",
        "ALTER TABLE t MODIFY v CHAR(10)",
    ),
    ("varchar 10 to tinytext", "ALTER TABLE t MODIFY v TINYTEXT"),
    (
        "varchar 100 (400 bytes) to tinytext",
        "ALTER TABLE t MODIFY vb TINYTEXT",
    ),
    ("varchar 100 to text", "ALTER TABLE t MODIFY vb TEXT"),
    (
        "index plus trailing json",
        "ALTER TABLE t ADD INDEX ia (a), ADD COLUMN j JSON",
    ),
    (
        "collation change",
        "ALTER TABLE t MODIFY v VARCHAR(10) COLLATE utf8mb4_unicode_ci",
    ),
    ("drop the last column", "ALTER TABLE t DROP COLUMN w"),
];

/// Which list a case comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    Reference,
    HeldBack,
}

struct Case {
    set: Set,
    name: &'static str,
    alter: &'static str,
    table: &'static str,
    writes: &'static [&'static str],
    /// The verdict the reference list expects on this flavor.
    expected: Option<Verdict>,
    schema: String,
}

struct Outcome {
    case: Case,
    verdict: Verdict,
    rule: Rule,
    reason: String,
    setting: String,
    behaviour: Behaviour,
}

fn cases(flavor: Flavor) -> Vec<Case> {
    let reference = CASES.iter().map(|c| Case {
        set: Set::Reference,
        name: c.name,
        alter: c.alter,
        table: reference::TABLE,
        writes: reference::WRITES,
        expected: Some(match flavor {
            Flavor::Mysql => c.mysql.0,
            Flavor::Mariadb => c.mariadb.0,
        }),
        schema: schema_name("ref", c.name),
    });
    let held = HELD_BACK.iter().map(|&(name, alter)| Case {
        set: Set::HeldBack,
        name,
        alter,
        table: HELD_TABLE,
        writes: HELD_WRITES,
        expected: None,
        schema: schema_name("held", name),
    });
    let all: Vec<Case> = reference.chain(held).collect();
    for (i, a) in all.iter().enumerate() {
        assert!(
            all[..i].iter().all(|b| b.schema != a.schema),
            "two cases share the schema {}",
            a.schema
        );
    }
    all
}

/// `ref_decimal_10_2_to_12_2`: the set and the case name, as a short identifier.
fn schema_name(set: &str, name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug: String = slug.trim_matches('_').chars().take(48).collect();
    format!("{set}_{slug}")
}

/// The rule that decided the overall verdict.
fn deciding_rule(analysis: &Analysis) -> Rule {
    analysis
        .clauses
        .iter()
        .find(|c| c.verdict == analysis.verdict)
        .or(analysis.clauses.first())
        .map_or(Rule::Unsupported, |c| c.rule)
}

/// The replica setting a case runs with: none for `safe`, the analyzer's for
/// `safe-with-conversion`, `ALL_NON_LOSSY` for `unsafe` (to show where the analyzer is stricter
/// than the servers even with conversions allowed).
fn conversions(flavor: Flavor, analysis: &Analysis) -> TypeConversions {
    match analysis.verdict {
        Verdict::Safe => TypeConversions::default(),
        Verdict::SafeWithConversion => analysis
            .settings
            .get(conversion_variable(flavor, None))
            .unwrap_or_else(|| panic!("{flavor}: no conversion setting in {:?}", analysis.settings))
            .parse()
            .expect("the analyzer's setting is a list of modes"),
        Verdict::Unsafe => TypeConversions {
            all_non_lossy: true,
            ..TypeConversions::default()
        },
    }
}

async fn verify(flavor: Flavor, kind: ServerKind, title: &str) {
    let started = Instant::now();
    let cases = cases(flavor);
    let mut pair = Pair::start(kind, flavor).await;
    let schemas: Vec<(String, &str)> = cases.iter().map(|c| (c.schema.clone(), c.table)).collect();
    pair.create(&schemas).await;

    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        // The analyzer reads the definition as the server prints it, as the executor does.
        let printed = pair.show_create(&case.schema).await;
        let analysis = analyze(flavor, &printed, case.alter)
            .unwrap_or_else(|e| panic!("{flavor} {}: refused: {e}\n{printed}", case.name));
        let written = analyze(flavor, case.table, case.alter).expect("the written definition");
        assert_eq!(
            analysis.verdict, written.verdict,
            "{flavor} {}: the server's form of the table changes the verdict:\n{printed}",
            case.name
        );
        if let Some(expected) = case.expected {
            assert_eq!(
                analysis.verdict, expected,
                "{flavor} {}: {:?}",
                case.name, analysis.reasons
            );
        }
        let setting = conversions(flavor, &analysis);
        println!(
            "{flavor}: {} ({}, replica setting '{setting}')",
            case.name, analysis.verdict
        );
        let behaviour = pair
            .replay(&Replay {
                schema: &case.schema,
                alter: case.alter,
                writes: case.writes,
                conversions: setting,
            })
            .await;
        outcomes.push(Outcome {
            verdict: analysis.verdict,
            rule: deciding_rule(&analysis),
            reason: analysis.reasons.first().cloned().unwrap_or_default(),
            setting: setting.to_string(),
            behaviour,
            case,
        });
    }
    drop(pair);

    let section = report(flavor, title, &outcomes);
    println!("{section}");
    println!(
        "{flavor}: {} cases in {:.1?}",
        outcomes.len(),
        started.elapsed()
    );
    write_report(flavor, &section);

    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Unsafe && o.behaviour != Behaviour::AppliesAndMatches)
        .map(|o| {
            format!(
                "{}: analyzer {} but the servers: {}",
                o.case.name, o.verdict, o.behaviour
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{flavor}: the analyzer is more permissive than the servers:\n{}",
        wrong.join("\n")
    );
    check_committed(flavor, &section);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_verdicts_are_never_more_permissive_than_the_servers() {
    verify(Flavor::Mariadb, ServerKind::Mariadb1011, "MariaDB 10.11").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_verdicts_are_never_more_permissive_than_the_servers() {
    verify(Flavor::Mysql, ServerKind::Mysql97, "MySQL 9.7").await;
}

fn report(flavor: Flavor, title: &str, outcomes: &[Outcome]) -> String {
    let mut out = format!("## {title}\n");
    for (set, heading) in [
        (
            Set::Reference,
            "Reference cases (`switchyard_ddl::reference::CASES`)",
        ),
        (Set::HeldBack, "Held-back statements"),
    ] {
        out.push_str(&format!(
            "\n### {heading}\n\n| case | ALTER TABLE t … | analyzer | rule | replica setting | servers | server said |\n\
             |---|---|---|---|---|---|---|\n"
        ));
        for o in outcomes.iter().filter(|o| o.case.set == set) {
            let setting = if o.setting.is_empty() {
                "—"
            } else {
                &o.setting
            };
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} | {} |\n",
                o.case.name,
                o.case.alter.trim_start_matches("ALTER TABLE t "),
                o.verdict,
                o.rule,
                setting,
                o.behaviour.class(),
                o.behaviour.detail().replace('|', "/"),
            ));
        }
    }
    let stricter: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Unsafe && o.behaviour == Behaviour::AppliesAndMatches)
        .collect();
    out.push_str(&format!(
        "\n### Stricter than the servers\n\nRefused although the {flavor} pair applied the writes and matched (with `ALL_NON_LOSSY`):\n\n"
    ));
    if stricter.is_empty() {
        out.push_str("none\n");
    }
    for o in stricter {
        out.push_str(&format!("- {} (`{}`): {}\n", o.case.name, o.rule, o.reason));
    }
    out
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const HEADER: &str = "# Schema-change analyzer against real servers

Generated by `cargo test -p switchyard-ddl --test servers -- --nocapture`, which writes
`target/ddl-verification.md`; copy it here when the cases change (the test fails while this
file's tables disagree with the servers' results, the \"server said\" column aside).

Each case runs on a MariaDB 10.11 or MySQL 9.7 primary with one GTID replica: the ALTER on
the replica with the binary log off, the replica setting applied, then old-shape writes on the
source (negatives, NULLs, maximum values, multi-byte and long strings, every ENUM value,
updates and deletes). `applies-and-matches`: the replica applied every write and its table
equals the source's table altered the same way; `applies-but-differs`: silent corruption;
`stops N`: the replica's applier stopped with error N; `crashes`: the replica's server process
died (it is restarted for the next case). `safe` and `safe-with-conversion` must
apply and match; every case the servers stop or corrupt must be `unsafe`. `unsafe` cases run
with `ALL_NON_LOSSY` so that the list of cases the analyzer refuses although the servers cope is
as long as it can be.
";

/// One report file for both flavors: the tests run in parallel in one process.
static REPORT_FILE: Mutex<()> = Mutex::new(());

fn section_markers(flavor: Flavor) -> (String, String) {
    (
        format!("<!-- begin {flavor} -->\n"),
        format!("<!-- end {flavor} -->\n"),
    )
}

fn section_of(text: &str, flavor: Flavor) -> Option<String> {
    let (begin, end) = section_markers(flavor);
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    Some(text[start..stop].to_owned())
}

fn write_report(flavor: Flavor, section: &str) {
    let _guard = REPORT_FILE.lock().unwrap_or_else(|e| e.into_inner());
    let path = workspace_root().join("target/ddl-verification.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let mut text = HEADER.to_owned();
    for f in [Flavor::Mariadb, Flavor::Mysql] {
        let body = if f == flavor {
            Some(section.to_owned())
        } else {
            section_of(&existing, f)
        };
        if let Some(body) = body {
            let (begin, end) = section_markers(f);
            text.push('\n');
            text.push_str(&begin);
            text.push_str(&body);
            text.push_str(&end);
        }
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The section without the servers' behaviour and messages: what the
/// analyzer says is pinned by the committed file; what the servers do is
/// asserted against the verdict every run but not pinned (a crash or the
/// worker that reports an error can vary between runs).
fn comparable(section: &str) -> Vec<String> {
    section
        .lines()
        .map(|line| match line.strip_prefix('|') {
            Some(row) => {
                let cells: Vec<&str> = row.split('|').collect();
                cells[..cells.len().saturating_sub(3)].join("|")
            }
            None => line.to_owned(),
        })
        .collect()
}

fn check_committed(flavor: Flavor, section: &str) {
    let path = workspace_root().join("docs/ddl-verification.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let up_to_date = section_of(&committed, flavor)
        .is_some_and(|c| comparable(&c) == comparable(section))
        && committed.starts_with(HEADER);
    assert!(
        up_to_date,
        "{flavor}: docs/ddl-verification.md is stale: copy target/ddl-verification.md over it \
         after both flavors have run"
    );
}
