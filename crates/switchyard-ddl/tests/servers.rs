//! The analyzer's verdicts against what real MariaDB and MySQL replication pairs do.
//!
//! Every reference case ([`switchyard_ddl::reference::CASES`], one fixture table per type
//! family) and a held-back set of other ALTER statements are replayed on one primary/replica
//! pair per server, as a rolling change runs them: the ALTER on the replica with the binary
//! log off (through switchyard-mysql's `run_local_ddl`), a replica type-conversion setting,
//! then the fixture's old-shape writes on the source with edge values. The replica then either
//! stops, or applies the writes and its table is compared with the source's table altered the
//! same way (`pair`).
//!
//! Each case runs with what the analyzer asks for first, then with less or more, until it is
//! known what the servers need for it: nothing (`safe`), `ALL_NON_LOSSY` (on MySQL also with
//! `ALL_UNSIGNED`) to apply and match (`safe-with-conversion`), or nothing works (`unsafe`).
//! Asserted for every case:
//!
//! - never more permissive: `safe` applies and matches with no setting, and
//!   `safe-with-conversion` with the setting the analyzer gives;
//! - reasons that match: an `unsafe` verdict the servers bear out names a rule whose
//!   [`Claim`] is what they did with `ALL_NON_LOSSY` (stops, or corrupts), and an `unsafe`
//!   verdict stricter than the servers names a precaution, not a failure;
//! - reference cases get their expected verdict and rule.
//!
//! MariaDB 10.11 and MySQL 9.7 run every case; MariaDB 11.8 runs the families where its
//! replication differs or may (temporal, generated and JSON columns) unless
//! `SWITCHYARD_DDL_ALL_ON_11_8=1` asks for all of them. The report (one section per server,
//! with the share of exact verdicts) is printed, written to `target/ddl-verification.md` (and
//! the servers' answers to `target/ddl-verification.json`), and compared with the committed
//! `docs/ddl-verification.md` (not 11.8's whole set, which the committed report does not hold).

mod pair;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use pair::{Behaviour, Pair, Trial};
use switchyard_ddl::reference::{CASES, Family, Fixture};
use switchyard_ddl::{
    Analysis, AnalyzeOptions, Claim, Rule, Verdict, analyze_with, conversion_variable,
};
use switchyard_mysql::TypeConversions;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_testbed::ServerKind;

/// The held-back table: other types and edge values than the reference tables'.
const HELD: Fixture = Fixture {
    name: "held",
    table: "CREATE TABLE `t` (
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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    // Minimum and maximum values, NULLs, a ten-character string of 17 bytes, a
    // hundred-character string of 300 bytes, trailing spaces, a 40 000-byte TEXT, an inexact
    // FLOAT, a duplicate in `w`.
    writes: &[
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
    ],
};

/// ALTER statements that are not reference cases, on [`HELD`]: the analyzer was not tuned on
/// them.
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

/// One server to verify against.
#[derive(Clone, Copy)]
struct Server {
    kind: ServerKind,
    flavor: Flavor,
    /// The report section's key and title.
    key: &'static str,
    title: &'static str,
    /// Runs only the reference cases where this server may differ from the flavor's first.
    subset: bool,
}

const MARIADB_10_11: Server = Server {
    kind: ServerKind::Mariadb1011,
    flavor: Flavor::Mariadb,
    key: "mariadb",
    title: "MariaDB 10.11",
    subset: false,
};
const MARIADB_11_8: Server = Server {
    kind: ServerKind::Mariadb118,
    flavor: Flavor::Mariadb,
    key: "mariadb-11.8",
    title: "MariaDB 11.8",
    subset: true,
};
const MYSQL_9_7: Server = Server {
    kind: ServerKind::Mysql97,
    flavor: Flavor::Mysql,
    key: "mysql",
    title: "MySQL 9.7",
    subset: false,
};

/// Which list a case comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    Reference,
    HeldBack,
}

struct Case {
    set: Set,
    name: &'static str,
    family: Option<Family>,
    fixture: &'static Fixture,
    alter: &'static str,
    /// The verdict and rule the reference list expects on this server.
    expected: Option<(Verdict, Rule)>,
}

/// What the servers need for a case to apply and match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Truth {
    Safe,
    Convert(TypeConversions),
    Unsafe,
}

impl Truth {
    fn verdict(&self) -> Verdict {
        match self {
            Truth::Safe => Verdict::Safe,
            Truth::Convert(_) => Verdict::SafeWithConversion,
            Truth::Unsafe => Verdict::Unsafe,
        }
    }

    fn describe(&self) -> String {
        match self {
            Truth::Safe => "nothing".to_owned(),
            Truth::Convert(c) => c.to_string(),
            Truth::Unsafe => "— (unsafe)".to_owned(),
        }
    }
}

struct Outcome {
    case: Case,
    analysis: Analysis,
    /// The deciding clause's rule and reason.
    rule: Rule,
    reason: String,
    /// The replays: the setting and what the replica did.
    runs: Vec<(TypeConversions, Behaviour)>,
}

impl Outcome {
    fn verdict(&self) -> Verdict {
        self.analysis.verdict
    }

    fn run_with(&self, conversions: TypeConversions) -> Option<&Behaviour> {
        self.runs
            .iter()
            .find(|(c, _)| *c == conversions)
            .map(|(_, b)| b)
    }

    fn truth(&self) -> Truth {
        if self
            .run_with(TypeConversions::default())
            .is_some_and(Behaviour::passes)
        {
            return Truth::Safe;
        }
        match self
            .runs
            .iter()
            .find(|(c, b)| *c != TypeConversions::default() && b.passes())
        {
            Some((c, _)) => Truth::Convert(*c),
            None => Truth::Unsafe,
        }
    }

    /// What the replica did under the most the analyzer ever asks for (`ALL_NON_LOSSY`), or
    /// the first run.
    fn telling_run(&self) -> &Behaviour {
        self.run_with(non_lossy())
            .or(self.runs.first().map(|(_, b)| b))
            .expect("every case ran")
    }
}

fn non_lossy() -> TypeConversions {
    TypeConversions {
        all_non_lossy: true,
        ..TypeConversions::default()
    }
}

/// The settings that may make a case apply and match, in the order they are tried.
fn candidates(flavor: Flavor) -> Vec<TypeConversions> {
    let mut list = vec![non_lossy()];
    if flavor == Flavor::Mysql {
        list.push(TypeConversions {
            all_non_lossy: true,
            all_unsigned: true,
            ..TypeConversions::default()
        });
    }
    list
}

/// The analyzer's replica setting for `analysis`.
fn analyzer_setting(flavor: Flavor, analysis: &Analysis) -> TypeConversions {
    match analysis.verdict {
        Verdict::Safe => TypeConversions::default(),
        Verdict::SafeWithConversion => analysis
            .settings
            .get(conversion_variable(flavor, None))
            .unwrap_or_else(|| panic!("{flavor}: no conversion setting in {:?}", analysis.settings))
            .parse()
            .expect("the analyzer's setting is a list of modes"),
        Verdict::Unsafe => non_lossy(),
    }
}

/// The next setting to run a case with, until its truth is known.
fn next_run(flavor: Flavor, outcome: &Outcome) -> Option<TypeConversions> {
    if outcome.runs.is_empty() {
        return Some(analyzer_setting(flavor, &outcome.analysis));
    }
    let empty = outcome.run_with(TypeConversions::default());
    if empty.is_some_and(Behaviour::passes) {
        return None;
    }
    let converted = outcome
        .runs
        .iter()
        .any(|(c, b)| *c != TypeConversions::default() && b.passes());
    if converted {
        // Did it need the setting at all? (A passing run without it means no.)
        return empty.is_none().then(TypeConversions::default);
    }
    // ALL_UNSIGNED changes how promoted integers are read, so it can help only where
    // ALL_NON_LOSSY applied the rows with other values; a stop is a type check it does not
    // relax.
    let corrupted = outcome
        .run_with(non_lossy())
        .is_none_or(|b| matches!(b, Behaviour::AppliesButDiffers { .. }));
    candidates(flavor)
        .into_iter()
        .filter(|c| *c == non_lossy() || corrupted)
        .find(|c| outcome.run_with(*c).is_none())
}

/// `SWITCHYARD_DDL_ALL_ON_11_8=1`: every case on 11.8, not only its subset.
fn all_on_11_8() -> bool {
    std::env::var("SWITCHYARD_DDL_ALL_ON_11_8").is_ok_and(|v| v == "1")
}

fn cases(server: Server, version: Option<Version>) -> Vec<Case> {
    let all = all_on_11_8();
    let differs = |c: &switchyard_ddl::reference::Case| {
        c.mariadb_11_8.is_some()
            || matches!(
                c.family,
                Family::Temporal | Family::Generated | Family::Json
            )
    };
    let reference = CASES
        .iter()
        .filter(|c| !server.subset || all || differs(c))
        .map(|c| Case {
            set: Set::Reference,
            name: c.name,
            family: Some(c.family),
            fixture: c.fixture,
            alter: c.alter,
            expected: Some(c.expected(server.flavor, version)),
        });
    let held = HELD_BACK
        .iter()
        .filter(|_| !server.subset || all)
        .map(|&(name, alter)| Case {
            set: Set::HeldBack,
            name,
            family: None,
            fixture: &HELD,
            alter,
            expected: None,
        });
    reference.chain(held).collect()
}

/// The deciding clause's rule and reason.
fn deciding(analysis: &Analysis) -> (Rule, String) {
    analysis
        .clauses
        .iter()
        .find(|c| c.verdict == analysis.verdict)
        .or(analysis.clauses.first())
        .map_or((Rule::Unsupported, String::new()), |c| {
            (c.rule, c.reason.clone())
        })
}

fn claim_holds(claim: Claim, behaviour: &Behaviour) -> bool {
    let stops = matches!(
        behaviour,
        Behaviour::Stops { .. } | Behaviour::Crashes { .. }
    );
    let corrupts = matches!(behaviour, Behaviour::AppliesButDiffers { .. });
    match claim {
        Claim::Stops => stops,
        Claim::Corrupts => corrupts,
        Claim::StopsOrCorrupts => stops || corrupts,
        Claim::Precaution => true,
        _ => false,
    }
}

async fn verify(server: Server) {
    let started = Instant::now();
    let flavor = server.flavor;
    let mut pair = Pair::start(server.kind, flavor).await;
    let version = Version::parse(pair.version()).ok();
    let cases = cases(server, version);

    // The analyzer reads each fixture as the server prints it, as the executor does.
    let mut fixtures: Vec<&Fixture> = Vec::new();
    for case in &cases {
        if !fixtures.iter().any(|f| f.name == case.fixture.name) {
            fixtures.push(case.fixture);
        }
    }
    let pristine: Vec<(String, &str)> = fixtures
        .iter()
        .map(|f| (format!("fx_{}", f.name), f.table))
        .collect();
    pair.create(&pristine).await;
    let mut printed = BTreeMap::new();
    for (schema, _) in &pristine {
        printed.insert(schema.clone(), pair.show_create(schema).await);
    }

    let mut options = AnalyzeOptions::default();
    if let Some(version) = version {
        options = options.with_server_version(version);
    }
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(cases.len());
    for case in cases {
        let definition = &printed[&format!("fx_{}", case.fixture.name)];
        let analysis = analyze_with(flavor, definition, case.alter, &options)
            .unwrap_or_else(|e| panic!("{flavor} {}: refused: {e}\n{definition}", case.name));
        let written = analyze_with(flavor, case.fixture.table, case.alter, &options)
            .expect("the written definition");
        assert_eq!(
            analysis.verdict, written.verdict,
            "{flavor} {}: the server's form of the table changes the verdict:\n{definition}",
            case.name
        );
        let (rule, reason) = deciding(&analysis);
        if let Some((verdict, expected_rule)) = case.expected {
            assert_eq!(
                (analysis.verdict, rule),
                (verdict, expected_rule),
                "{} {}: {:?}",
                server.title,
                case.name,
                analysis.reasons
            );
        }
        outcomes.push(Outcome {
            case,
            analysis,
            rule,
            reason,
            runs: Vec::new(),
        });
    }

    // Rounds of batches, one batch per setting, until every case's truth is known.
    for round in 0.. {
        let mut batches: BTreeMap<String, (TypeConversions, Vec<usize>)> = BTreeMap::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            if let Some(setting) = next_run(flavor, outcome) {
                batches
                    .entry(setting.to_string())
                    .or_insert((setting, Vec::new()))
                    .1
                    .push(i);
            }
        }
        if batches.is_empty() {
            break;
        }
        for (setting, members) in batches.into_values() {
            let trials: Vec<Trial<'_>> = members
                .iter()
                .map(|&i| {
                    let case = &outcomes[i].case;
                    Trial {
                        schema: format!("c{i:03}_{round}"),
                        table: case.fixture.table,
                        alter: case.alter,
                        writes: case.fixture.writes,
                    }
                })
                .collect();
            println!(
                "{}: round {round}, {} trials with '{setting}'",
                server.title,
                trials.len()
            );
            let behaviours = pair.run_batch(&trials, setting).await;
            for (&i, behaviour) in members.iter().zip(behaviours) {
                outcomes[i].runs.push((setting, behaviour));
            }
        }
    }
    drop(pair);

    let section = report(server, version, &outcomes);
    println!("{section}");
    println!(
        "{}: {} cases in {:.1?}",
        server.title,
        outcomes.len(),
        started.elapsed()
    );
    write_report(server, &section, &outcomes);

    let mut wrong = Vec::new();
    for o in &outcomes {
        let name = o.case.name;
        let claim = o.rule.claim(flavor);
        match o.verdict() {
            Verdict::Safe | Verdict::SafeWithConversion => {
                let setting = analyzer_setting(flavor, &o.analysis);
                let behaviour = o.run_with(setting).expect("the analyzer's setting ran");
                if !behaviour.passes() {
                    wrong.push(format!(
                        "{name}: {} with '{setting}', but the servers: {behaviour}",
                        o.verdict()
                    ));
                }
            }
            Verdict::Unsafe if o.truth() == Truth::Unsafe => {
                let behaviour = o.telling_run();
                if !claim_holds(claim, behaviour) {
                    wrong.push(format!(
                        "{name}: rule {} claims {claim:?}, but with ALL_NON_LOSSY the servers: {behaviour}",
                        o.rule
                    ));
                }
            }
            Verdict::Unsafe => {
                if claim != Claim::Precaution {
                    wrong.push(format!(
                        "{name}: rule {} claims {claim:?}, but the servers apply and match with '{}'",
                        o.rule,
                        o.truth().describe()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}: the analyzer is more permissive than the servers, or its reason is not what they do:\n{}",
        server.title,
        wrong.join("\n")
    );
    // The committed report holds 11.8's subset; the whole set is compared by hand.
    if !(server.subset && all_on_11_8()) {
        check_committed(server, &section);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_verdicts_are_exact_or_stricter_with_reasons_the_servers_show() {
    verify(MARIADB_10_11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_11_8_verdicts_are_exact_or_stricter_with_reasons_the_servers_show() {
    verify(MARIADB_11_8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_verdicts_are_exact_or_stricter_with_reasons_the_servers_show() {
    verify(MYSQL_9_7).await;
}

fn family_title(family: Option<Family>) -> &'static str {
    match family {
        None => "Held-back statements (not used to tune the analyzer)",
        Some(Family::Layout) => "Columns added, dropped, moved, renamed",
        Some(Family::Integer) => "Integers",
        Some(Family::Decimal) => "DECIMAL",
        Some(Family::Float) => "FLOAT and DOUBLE",
        Some(Family::Bit) => "BIT",
        Some(Family::String) => "CHAR, VARCHAR, TEXT",
        Some(Family::Binary) => "BINARY, VARBINARY, BLOB",
        Some(Family::Charset) => "Character sets and collations",
        Some(Family::EnumSet) => "ENUM and SET",
        Some(Family::Temporal) => "Dates and times",
        Some(Family::Year) => "YEAR",
        Some(Family::Json) => "JSON",
        Some(Family::Generated) => "Generated and invisible columns",
        Some(Family::Keys) => "Keys and constraints",
        Some(Family::Table) => "Defaults, NULL, table",
        Some(_) => "Other",
    }
}

fn agreement(o: &Outcome) -> &'static str {
    match o.verdict().cmp(&o.truth().verdict()) {
        std::cmp::Ordering::Equal => "yes",
        std::cmp::Ordering::Greater => "stricter",
        std::cmp::Ordering::Less => "**more permissive**",
    }
}

/// `exact of total (percent)` over `outcomes`.
fn score(outcomes: &[&Outcome]) -> String {
    let exact = outcomes.iter().filter(|o| agreement(o) == "yes").count();
    let stricter = outcomes
        .iter()
        .filter(|o| agreement(o) == "stricter")
        .count();
    let looser = outcomes.len() - exact - stricter;
    let percent = if outcomes.is_empty() {
        100.0
    } else {
        exact as f64 * 100.0 / outcomes.len() as f64
    };
    format!(
        "**{exact} of {}** verdicts exact ({percent:.1}%), {stricter} stricter, {looser} more permissive",
        outcomes.len()
    )
}

fn report(server: Server, version: Option<Version>, outcomes: &[Outcome]) -> String {
    let _ = version;
    let mut out = format!("## {}\n\n", server.title);
    let reference: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.case.set == Set::Reference)
        .collect();
    let held: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.case.set == Set::HeldBack)
        .collect();
    out.push_str(&format!("Reference cases: {}.\n", score(&reference)));
    if !held.is_empty() {
        out.push_str(&format!("Held-back statements: {}.\n", score(&held)));
    }
    if server.subset {
        out.push_str(
            "\nThe families where this server's replication differs from 10.11's or may (dates and times, \
             generated and JSON columns); every other family measured the same on it with \
             `SWITCHYARD_DDL_ALL_ON_11_8=1`.\n",
        );
    }
    let mut families: Vec<Option<Family>> = Vec::new();
    for o in outcomes {
        if !families.contains(&o.case.family) {
            families.push(o.case.family);
        }
    }
    families.sort_by_key(|f| f.map_or(u8::MAX, |f| f as u8));
    for family in families {
        out.push_str(&format!(
            "\n### {}\n\n| case | ALTER TABLE t … | analyzer | rule | servers need | agrees | what the servers did |\n\
             |---|---|---|---|---|---|---|\n",
            family_title(family)
        ));
        for o in outcomes.iter().filter(|o| o.case.family == family) {
            let did = match o.truth() {
                Truth::Unsafe => o.telling_run().to_string(),
                Truth::Safe => "applies and matches".to_owned(),
                Truth::Convert(c) => format!("applies and matches with {c}, not without"),
            };
            let alter = o.case.alter.trim_start_matches("ALTER TABLE t ");
            let alter = if alter.len() > 90 {
                format!("{}…", alter.chars().take(88).collect::<String>())
            } else {
                alter.to_owned()
            };
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} | {} |\n",
                o.case.name,
                alter,
                o.verdict(),
                o.rule,
                o.truth().describe(),
                agreement(o),
                did.replace('|', "/").replace('\n', " "),
            ));
        }
    }
    let stricter: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| agreement(o) == "stricter")
        .collect();
    out.push_str(&format!(
        "\n### Stricter than the servers\n\nVerdicts more conservative than what the {} pair needs, each with the analyzer's reason:\n\n",
        server.title
    ));
    if stricter.is_empty() {
        out.push_str("none\n");
    }
    for o in stricter {
        out.push_str(&format!(
            "- {} (`{}`, the servers need {}): {}\n",
            o.case.name,
            o.rule,
            o.truth().describe(),
            o.reason
        ));
    }
    out
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const HEADER: &str = "# Schema-change analyzer against real servers

Generated by `cargo test -p switchyard-ddl --test servers -- --nocapture`, which writes
`target/ddl-verification.md`; copy it here when the cases change (the test fails while this
file's tables disagree with the servers' results, the \"what the servers did\" column aside).

Each case runs on a primary with one GTID replica of the server named: the case's fixture table
(one per type family, `switchyard_ddl::reference`), the ALTER on the replica with the binary log
off, a replica type-conversion setting, then old-shape writes on the source (negatives, NULLs,
minimum and maximum values, multi-byte and long strings, every ENUM value, fractional seconds,
updates and deletes), and the replica's table compared with the source's table altered the same
way. A case runs first with what the analyzer asks for, then with less or more, until it is
known what the servers need: *nothing* (safe), a setting (`ALL_NON_LOSSY`, on MySQL also
`ALL_UNSIGNED`: safe with conversion), or *unsafe* (the replica stops, or applies the writes
with different values, or holds rows the source's own ALTER refuses, whatever the setting).
\"agrees\" compares that with the analyzer's verdict: *yes*, *stricter* (listed with the
analyzer's reason under each server), never more permissive (the test fails). For an unsafe
case, \"what the servers did\" is the replica's behaviour with `ALL_NON_LOSSY`, and the test
checks that the deciding rule claims it (stops, or corrupts); a stricter verdict's rule must
be a precaution.
";

/// One report file for every server: the tests run in parallel in one process.
static REPORT_FILE: Mutex<()> = Mutex::new(());

const KEYS: [&str; 3] = ["mariadb", "mysql", "mariadb-11.8"];

fn section_markers(key: &str) -> (String, String) {
    (
        format!("<!-- begin {key} -->\n"),
        format!("<!-- end {key} -->\n"),
    )
}

fn section_of(text: &str, key: &str) -> Option<String> {
    let (begin, end) = section_markers(key);
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    Some(text[start..stop].to_owned())
}

fn write_report(server: Server, section: &str, outcomes: &[Outcome]) {
    let _guard = REPORT_FILE.lock().unwrap_or_else(|e| e.into_inner());
    let path = workspace_root().join("target/ddl-verification.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let mut text = HEADER.to_owned();
    for key in KEYS {
        let body = if key == server.key {
            Some(section.to_owned())
        } else {
            section_of(&existing, key)
        };
        if let Some(body) = body {
            let (begin, end) = section_markers(key);
            text.push('\n');
            text.push_str(&begin);
            text.push_str(&body);
            text.push_str(&end);
        }
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));

    // What the servers needed, per case, for comparing other analyzers with them.
    let json_path = workspace_root().join("target/ddl-verification.json");
    let mut all: serde_json::Map<String, serde_json::Value> = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "set": if o.case.set == Set::Reference { "reference" } else { "held-back" },
                "name": o.case.name,
                "fixture": o.case.fixture.table,
                "alter": o.case.alter,
                "truth": o.truth().verdict(),
                "setting": o.truth().describe(),
                "analyzer": o.verdict(),
                "rule": o.rule,
            })
        })
        .collect();
    all.insert(server.key.to_owned(), serde_json::Value::Array(rows));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&all).expect("serialise"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", json_path.display()));
}

/// The section without the servers' messages: what the analyzer says and what the servers
/// need are pinned by the committed file; the messages (which worker reports an error, a
/// crash's last line) can vary between runs.
fn comparable(section: &str) -> Vec<String> {
    section
        .lines()
        .map(|line| match line.strip_prefix('|') {
            Some(row) => {
                let cells: Vec<&str> = row.split('|').collect();
                cells[..cells.len().saturating_sub(2)].join("|")
            }
            None => line.to_owned(),
        })
        .collect()
}

fn check_committed(server: Server, section: &str) {
    let path = workspace_root().join("docs/ddl-verification.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let up_to_date = section_of(&committed, server.key)
        .is_some_and(|c| comparable(&c) == comparable(section))
        && committed.starts_with(HEADER);
    assert!(
        up_to_date,
        "{}: docs/ddl-verification.md is stale: copy target/ddl-verification.md over it \
         after every server has run",
        server.title
    );
}
