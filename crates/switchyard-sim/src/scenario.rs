//! The scenario model, read from YAML.
//!
//! ```yaml
//! cluster: { server: mariadb-10.5, instances: 3 }
//! load: { account: application, writers: 2, rate: 100 }
//! change: { upgrade: mariadb-10.11 }          # or { config: { k: v }, apply: restart }
//!                                             # or { schema: { alter: "ALTER TABLE app.ledger ..." } }
//! policy: { halt_after_s: 20, switchover_deadline_s: 10 }
//! faults:
//!   - when: { before_step: 3 }
//!     kill9: replica-not-upgraded
//!   - when: { after_action: fence }
//!     kill_engine: true
//! expect: done                                 # or { halt: keeps-failing }, or refused
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use switchyard_plan::Policy;
use switchyard_testbed::ServerKind;
use switchyard_testbed::load::AccountKind;

use crate::{Error, Result};

/// One scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (the file stem when read from a file).
    #[serde(default)]
    pub name: String,
    /// A sentence on what it attacks.
    #[serde(default)]
    pub about: String,
    /// The cluster.
    pub cluster: ClusterDef,
    /// The load.
    #[serde(default)]
    pub load: LoadDef,
    /// The change rolled out.
    pub change: ChangeDef,
    /// The rollout policy.
    #[serde(default)]
    pub policy: PolicyDef,
    /// The faults, each fired once.
    #[serde(default)]
    pub faults: Vec<FaultDef>,
    /// The outcome the rollout must have.
    #[serde(deserialize_with = "expect")]
    pub expect: Expect,
    /// How long the whole rollout may take, seconds.
    #[serde(default = "default_deadline")]
    pub deadline_s: u64,
}

fn default_deadline() -> u64 {
    300
}

/// The cluster a scenario starts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDef {
    /// The server every instance starts on (`mariadb-10.5`, `mariadb-10.11`,
    /// `mariadb-11.8`, `mysql-9.7`).
    pub server: String,
    /// How many instances.
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// First-revision variables.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_instances() -> usize {
    3
}

/// The load run through the router during the rollout.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadDef {
    /// `application` (DML only) or `privileged` (ALL privileges).
    #[serde(default = "default_account")]
    pub account: String,
    /// Concurrent writers.
    #[serde(default = "default_writers")]
    pub writers: usize,
    /// Writes per second over all writers.
    #[serde(default = "default_rate")]
    pub rate: u32,
}

fn default_account() -> String {
    "application".into()
}
fn default_writers() -> usize {
    2
}
fn default_rate() -> u32 {
    100
}

impl Default for LoadDef {
    fn default() -> Self {
        LoadDef {
            account: default_account(),
            writers: default_writers(),
            rate: default_rate(),
        }
    }
}

/// The change: a server upgrade, a configuration change or a schema change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeDef {
    /// A schema change, rolled node by node after the pre-flight.
    #[serde(default)]
    pub schema: Option<SchemaDef>,
    /// The server to upgrade to.
    #[serde(default)]
    pub upgrade: Option<String>,
    /// Variables to set.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// `restart` (rolling restart) or `online` (`SET GLOBAL`).
    #[serde(default = "default_apply")]
    pub apply: String,
}

/// A schema change: one `ALTER TABLE db.table ...`, checked by the pre-flight, which
/// refuses an unsafe one unless `force` names the risk accepted.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    /// The statement.
    pub alter: String,
    /// The risk accepted, in words, to run a change the analyzer judges unsafe.
    #[serde(default)]
    pub force: Option<String>,
}

fn default_apply() -> String {
    "restart".into()
}

/// The policy, with short defaults for simulations.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDef {
    /// A wait or failing step longer than this halts, seconds.
    #[serde(default = "d20")]
    pub halt_after_s: u64,
    /// A switchover not promoted by then is undone, seconds.
    #[serde(default = "d10")]
    pub switchover_deadline_s: u64,
    /// A replica lagging more is unhealthy, seconds.
    #[serde(default = "d2")]
    pub max_lag_s: u64,
    /// Pause before retrying a failed step, seconds.
    #[serde(default = "d1")]
    pub retry_backoff_s: u64,
}

fn d20() -> u64 {
    20
}
fn d10() -> u64 {
    10
}
fn d2() -> u64 {
    2
}
fn d1() -> u64 {
    1
}

impl Default for PolicyDef {
    fn default() -> Self {
        PolicyDef {
            halt_after_s: d20(),
            switchover_deadline_s: d10(),
            max_lag_s: d2(),
            retry_backoff_s: d1(),
        }
    }
}

impl PolicyDef {
    /// The engine's policy.
    pub fn policy(&self) -> Policy {
        Policy {
            max_lag_seconds: self.max_lag_s,
            halt_after: Duration::from_secs(self.halt_after_s),
            switchover_deadline: Duration::from_secs(self.switchover_deadline_s),
            retry_backoff: Duration::from_secs(self.retry_backoff_s),
            ..Policy::default()
        }
    }
}

/// One fault: when it fires and what it does.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDef {
    /// When it fires.
    #[serde(deserialize_with = "trigger")]
    pub when: Trigger,
    /// `kill -9` an instance.
    #[serde(default)]
    pub kill9: Option<Pick>,
    /// Kill the engine (its step is dropped mid-flight; a new engine over a
    /// new runtime takes over from the state file).
    #[serde(default)]
    pub kill_engine: bool,
    /// Run statements as root on an instance (a conflicting table that
    /// stops replication, a lock that makes a replica lag, a long
    /// transaction), keeping the session open for `hold_s`.
    #[serde(default)]
    pub sql: Option<SqlFault>,
    /// Freeze an instance with SIGSTOP and let it run again later.
    #[serde(default)]
    pub pause: Option<PauseFault>,
}

/// A server frozen with SIGSTOP for a while.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseFault {
    /// The instance.
    pub on: Pick,
    /// When it runs again (SIGCONT), seconds after the pause; checked
    /// before every engine step, and at the end of the run in any case.
    pub resume_after_s: u64,
}

/// Statements run as root on one instance when a fault fires.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlFault {
    /// The instance.
    pub on: Pick,
    /// The statements, in order, in one session.
    pub statements: Vec<String>,
    /// How long the session stays open afterwards (its locks and open
    /// transaction with it), seconds; 0 closes it at once.
    #[serde(default)]
    pub hold_s: u64,
}

/// When a fault fires, written `{ before_step: N }`, `{ before_action: A }`
/// or `{ after_action: A }`. Action names are the runtime's methods:
/// `drain`, `restart`, `fence`, `wait_caught_up`, `promote`, `repoint`, `unfence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Before the engine's step N (counted from 1 over every engine).
    BeforeStep(u64),
    /// Just before the engine's first call of this runtime action.
    BeforeAction(String),
    /// Just after the engine's first call of this runtime action took effect,
    /// before the engine could record it.
    AfterAction(String),
}

/// Which instance a fault hits, chosen when it fires.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The highest-numbered replica that does not run the target revision yet.
    ReplicaNotUpgraded,
    /// The primary.
    Primary,
    /// The candidate of the switchover the engine's record shows.
    Candidate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDef {
    #[serde(default)]
    before_step: Option<u64>,
    #[serde(default)]
    before_action: Option<String>,
    #[serde(default)]
    after_action: Option<String>,
}

fn trigger<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Trigger, D::Error> {
    let t = TriggerDef::deserialize(d)?;
    match (t.before_step, t.before_action, t.after_action) {
        (Some(n), None, None) => Ok(Trigger::BeforeStep(n)),
        (None, Some(a), None) => Ok(Trigger::BeforeAction(a)),
        (None, None, Some(a)) => Ok(Trigger::AfterAction(a)),
        _ => Err(serde::de::Error::custom(
            "`when` needs exactly one of before_step, before_action, after_action",
        )),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExpectDef {
    Word(String),
    Halt { halt: String },
}

fn expect<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Expect, D::Error> {
    match ExpectDef::deserialize(d)? {
        ExpectDef::Word(w) if w == "done" => Ok(Expect::Done),
        ExpectDef::Word(w) if w == "refused" => Ok(Expect::Refused),
        ExpectDef::Word(w) => Err(serde::de::Error::custom(format!(
            "expect is `{w}`: use `done`, `refused` or `{{ halt: CATEGORY }}`"
        ))),
        ExpectDef::Halt { halt } => Ok(Expect::Halt(halt)),
    }
}

/// The outcome a scenario must have, written `done`, `refused` or `{ halt: CATEGORY }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Every instance runs the target.
    Done,
    /// The pre-flight refuses the schema change and nothing changes.
    Refused,
    /// The rollout halts with this category (see `HaltReason::category`).
    Halt(String),
}

/// The actions a trigger may name.
pub const ACTIONS: [&str; 8] = [
    "drain",
    "undrain",
    "restart",
    "recover",
    "fence",
    "unfence",
    "wait_caught_up",
    "promote",
];

impl Scenario {
    /// Reads and checks a scenario file; its name is the file stem.
    pub fn from_file(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Scenario::from_yaml(&stem, &text)
    }

    /// Parses and checks a scenario named `name`.
    pub fn from_yaml(name: &str, text: &str) -> Result<Scenario> {
        let invalid = |message: String| Error::Invalid {
            name: name.to_owned(),
            message,
        };
        let mut s: Scenario = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if s.name.is_empty() {
            s.name = name.to_owned();
        }
        s.server_kind().map_err(invalid)?;
        s.account().map_err(invalid)?;
        if s.cluster.instances < 2 {
            return Err(invalid("cluster.instances must be at least 2".into()));
        }
        match (&s.change.upgrade, s.change.config.is_empty()) {
            _ if s.change.schema.is_some() => {
                if s.change.upgrade.is_some() || !s.change.config.is_empty() {
                    return Err(invalid(
                        "change.schema goes alone: roll an upgrade or a configuration change \
                         in a scenario of its own"
                            .into(),
                    ));
                }
            }
            (Some(_), _) => {
                s.upgrade_kind().map_err(invalid)?;
            }
            (None, true) => {
                return Err(invalid(
                    "change needs `upgrade: SERVER`, `config: {variable: value}` or \
                     `schema: { alter: \"ALTER TABLE db.table ...\" }`"
                        .into(),
                ));
            }
            (None, false) => {}
        }
        if !matches!(s.change.apply.as_str(), "restart" | "online") {
            return Err(invalid(format!(
                "change.apply is `{}`: use `restart` or `online`",
                s.change.apply
            )));
        }
        if s.expect == Expect::Refused && s.change.schema.is_none() {
            return Err(invalid(
                "expect: refused is for a schema change the pre-flight refuses".into(),
            ));
        }
        for f in &s.faults {
            if f.kill9.is_none() && !f.kill_engine && f.sql.is_none() && f.pause.is_none() {
                return Err(invalid(
                    "a fault needs `kill9: replica-not-upgraded|primary`, `kill_engine: true` \
                     or `sql: { on: .., statements: [..] }`"
                        .into(),
                ));
            }
            if let Trigger::BeforeAction(a) | Trigger::AfterAction(a) = &f.when
                && !ACTIONS.contains(&a.as_str())
                && a != "repoint"
            {
                return Err(invalid(format!(
                    "unknown action `{a}` in a trigger: use one of {ACTIONS:?} or repoint"
                )));
            }
            if f.kill_engine && matches!(f.when, Trigger::BeforeStep(_)) {
                return Err(invalid(
                    "kill_engine needs `before_action` or `after_action`".into(),
                ));
            }
        }
        Ok(s)
    }

    /// The server the cluster starts on.
    pub fn server_kind(&self) -> Result<ServerKind, String> {
        kind(&self.cluster.server)
    }

    /// The server an upgrade moves to.
    pub fn upgrade_kind(&self) -> Result<Option<ServerKind>, String> {
        self.change.upgrade.as_deref().map(kind).transpose()
    }

    /// The load's account.
    pub fn account(&self) -> Result<AccountKind, String> {
        match self.load.account.as_str() {
            "application" => Ok(AccountKind::Application),
            "privileged" => Ok(AccountKind::Privileged),
            other => Err(format!(
                "load.account is `{other}`: use `application` or `privileged`"
            )),
        }
    }
}

fn kind(name: &str) -> Result<ServerKind, String> {
    match name {
        "mariadb-10.5" => Ok(ServerKind::Mariadb105),
        "mariadb-10.11" => Ok(ServerKind::Mariadb1011),
        "mariadb-11.8" => Ok(ServerKind::Mariadb118),
        "mysql-9.7" => Ok(ServerKind::Mysql97),
        other => Err(format!(
            "unknown server `{other}`: use mariadb-10.5, mariadb-10.11, mariadb-11.8 or mysql-9.7"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_scenario() {
        let s = Scenario::from_yaml(
            "x",
            "cluster: { server: mariadb-10.5 }\n\
             change: { upgrade: mariadb-10.11 }\n\
             faults:\n  - when: { before_step: 3 }\n    kill9: replica-not-upgraded\n\
             \x20 - when: { after_action: fence }\n    kill_engine: true\n\
             expect: { halt: keeps-failing }\n",
        )
        .expect("valid");
        assert_eq!(s.name, "x");
        assert_eq!(s.faults[0].when, Trigger::BeforeStep(3));
        assert_eq!(s.faults[0].kill9, Some(Pick::ReplicaNotUpgraded));
        assert_eq!(s.faults[1].when, Trigger::AfterAction("fence".into()));
        assert_eq!(s.expect, Expect::Halt("keeps-failing".into()));
        assert_eq!(s.cluster.instances, 3);
    }

    #[test]
    fn parses_schema_changes_and_their_expectations() {
        let s = Scenario::from_yaml(
            "x",
            "cluster: { server: mariadb-10.11 }\n\
             change: { schema: { alter: \"ALTER TABLE app.t ADD COLUMN c INT\", force: risk } }\n\
             expect: refused\n",
        )
        .expect("valid");
        let schema = s.change.schema.expect("a schema change");
        assert_eq!(schema.alter, "ALTER TABLE app.t ADD COLUMN c INT");
        assert_eq!(schema.force.as_deref(), Some("risk"));
        assert_eq!(s.expect, Expect::Refused);
        let e = Scenario::from_yaml(
            "x",
            "cluster: { server: mariadb-10.11 }\n\
             change: { upgrade: mariadb-11.8, schema: { alter: \"ALTER TABLE app.t ADD c INT\" } }\n\
             expect: done\n",
        )
        .expect_err("schema goes alone");
        assert!(e.to_string().contains("change.schema goes alone"), "{e}");
        let e = Scenario::from_yaml(
            "x",
            "cluster: { server: mariadb-10.11 }\nchange: { upgrade: mariadb-11.8 }\nexpect: refused\n",
        )
        .expect_err("refused is for schema changes");
        assert!(e.to_string().contains("expect: refused"), "{e}");
    }

    #[test]
    fn every_scenario_file_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("list e2e/scenarios") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "yaml") {
                Scenario::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n > 0, "no scenario in {}", dir.display());
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        let e = Scenario::from_yaml(
            "x",
            "cluster: { server: pg-16 }\nchange: {}\nexpect: done\n",
        )
        .expect_err("invalid");
        assert!(e.to_string().contains("unknown server `pg-16`"), "{e}");
        let e = Scenario::from_yaml(
            "x",
            "cluster: { server: mysql-9.7 }\nchange: {}\nexpect: done\n",
        )
        .expect_err("invalid");
        assert!(e.to_string().contains("change needs"), "{e}");
        let e = Scenario::from_yaml(
            "x",
            "cluster: { server: mysql-9.7 }\nchange: { config: { a: b } }\n\
             faults: [ { when: { after_action: jump }, kill_engine: true } ]\nexpect: done\n",
        )
        .expect_err("invalid");
        assert!(e.to_string().contains("unknown action `jump`"), "{e}");
    }
}
