//! Fleets of local clusters: one configuration change rolled over several local clusters in
//! waves, decided by [`switchyard_plan::fleet`] and stored in a fleet file.
//!
//! Three parties, each with its own file or process, as on Kubernetes (a fleet controller,
//! one operator per cluster):
//!
//! - The **fleet file** (`fleet.json` in the fleet's folder, [`FleetFile`]) holds the fleet's
//!   spec, which clusters it rolls (each by its state folder), the change, the optional user
//!   check, and the planner's durable [`FleetRecord`], stored with compare-and-swap on its
//!   `seq` under an exclusive lock, written to a temporary file, synced and renamed, like a
//!   cluster's state file.
//! - The **driver** ([`FleetDriver`]) is the fleet's decision loop: it reads each cluster's
//!   state file, asks [`decide_fleet`] for the next step, records it ([`apply`]) and stores the
//!   record before it acts. Its only act is a start: it writes the change into the cluster's
//!   state file ([`MemberSlot::change`]). A driver killed at any point leaves the record as it
//!   was last stored; a new driver continues from it, and a start recorded but not written is
//!   written again (never a second revision, never a second start in the history).
//! - Each **cluster's runtime** ([`FleetMember`], in the process that runs the cluster) takes
//!   the change from its state file, rolls it with the engine, and publishes what the fleet
//!   judges ([`MemberSlot::status`]): its rollout (rolling, done, halted and why), whether
//!   replication runs on every replica, the largest lag, and the answer of the user check (a
//!   query run through the cluster's primary endpoint as the application account).
//!
//! The driver needs no SQL access and no credentials: it reads what each cluster's runtime
//! publishes, as a fleet controller reads each cluster's status.

mod member;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use switchyard_plan::fleet::{
    ClusterObservation, ClusterRollout, FleetAction, FleetRecord, FleetSpec, apply, decide_fleet,
};
use switchyard_plan::topology::Timestamp;

use crate::error::{Error, Result};
use crate::state::StateFile;

pub use member::{FleetMember, PICKUP, USER_CHECK_TIMEOUT};

/// The fleet file's name inside the fleet's folder.
pub const FLEET_FILE: &str = "fleet.json";
const FLEET_LOCK: &str = "fleet.lock";

/// The change a fleet rolls: server variables set on every instance, online or by rolling
/// restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// The variables and their new values.
    pub set: BTreeMap<String, String>,
    /// Whether the instances are restarted onto the new configuration (a rolling restart,
    /// the primary behind a switchover) rather than set online.
    pub restart: bool,
}

impl ConfigChange {
    /// The change's name in the fleet's record and history: its variables in key order and
    /// how they are applied (`max_connections=300 (online)`).
    pub fn name(&self) -> String {
        let set: Vec<String> = self.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{} ({})",
            set.join(" "),
            if self.restart { "restart" } else { "online" }
        )
    }

    /// Checks the change: at least one variable, each named with letters, digits and
    /// underscores, each value non-empty.
    pub fn validate(&self) -> Result<()> {
        if self.set.is_empty() {
            return Err(Error::Invalid(
                "the change sets no variable: give at least one --set NAME=VALUE".into(),
            ));
        }
        for (name, value) in &self.set {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::Invalid(format!(
                    "{name:?} is not a server variable name: use letters, digits and \
                     underscores (--set innodb_buffer_pool_size=256M)"
                )));
            }
            if value.trim().is_empty() {
                return Err(Error::Invalid(format!(
                    "variable {name} has an empty value: give one (--set {name}=VALUE)"
                )));
            }
        }
        Ok(())
    }
}

/// What a fleet asked one cluster to roll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// The change's name (the fleet revision's change).
    pub change: String,
    /// What it sets, and how.
    pub config: ConfigChange,
    /// The user check the cluster's runtime runs and publishes (a query that must keep
    /// answering), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// When the fleet asked.
    pub at: Timestamp,
}

/// A cluster's part in a fleet, kept in its state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSlot {
    /// The change the fleet gave the cluster (written by the driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<MemberChange>,
    /// What the cluster's runtime last saw (written by [`FleetMember`]); its `change` is the
    /// change whose rollout it describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterObservation>,
}

impl MemberSlot {
    /// The cluster as the fleet sees it: the change it was given (its target), with the
    /// rollout its runtime published for that change (rolling while the runtime has not yet
    /// published one for it). `None` until the runtime has published anything.
    pub fn observation(&self) -> Option<ClusterObservation> {
        let mut seen = self.status.clone()?;
        let given = self.change.as_ref().map(|c| c.change.clone());
        if given.is_some() && seen.change != given {
            seen.change = given;
            seen.rollout = ClusterRollout::Rolling;
        }
        Some(seen)
    }
}

/// Everything the fleet file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetDoc {
    /// The fleet's spec (its `change` is [`ConfigChange::name`] of `config`).
    pub spec: FleetSpec,
    /// The change.
    pub config: ConfigChange,
    /// The optional user check: a query run as the application account through each changed
    /// cluster's primary endpoint that must keep answering during the bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Each cluster's state folder, by name.
    pub members: BTreeMap<String, PathBuf>,
    /// The planner's durable record.
    pub record: FleetRecord,
}

/// The fleet file on disk. Every method reads or writes the file itself, so two drivers (or
/// a driver and a person's command) see each other's changes.
#[derive(Clone, Debug)]
pub struct FleetFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl FleetFile {
    /// The fleet file in `dir`. Nothing is read yet.
    pub fn in_dir(dir: &Path) -> FleetFile {
        FleetFile {
            path: dir.join(FLEET_FILE),
            lock_path: dir.join(FLEET_LOCK),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Reads the whole document.
    pub fn read(&self) -> Result<FleetDoc> {
        let text = fs::read(&self.path).map_err(|source| Error::StateIo {
            path: self.path.clone(),
            action: "read",
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| Error::StateFormat {
            path: self.path.clone(),
            source,
        })
    }

    /// Changes the document under the lock (creating it from `create` if there is none):
    /// reads it, lets `change` edit it and writes it back if `change` succeeds.
    pub fn update<T>(
        &self,
        create: impl FnOnce() -> Option<FleetDoc>,
        change: impl FnOnce(&mut FleetDoc) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock()?;
        let mut doc = if self.path.exists() {
            self.read()?
        } else {
            create().ok_or_else(|| {
                Error::Invalid(format!(
                    "there is no fleet file {}: start the fleet with `switchyard fleet apply`",
                    self.path.display()
                ))
            })?
        };
        let out = change(&mut doc)?;
        self.write(&doc)?;
        Ok(out)
    }

    /// Stores `record` (its `seq` one past `expected_seq`) if the stored record's `seq` is
    /// `expected_seq`; otherwise fails with [`Error::Conflict`] and changes nothing.
    pub fn store_record(&self, expected_seq: u64, record: &FleetRecord) -> Result<()> {
        self.update(
            || None,
            |doc| {
                if doc.record.seq != expected_seq {
                    return Err(Error::Conflict {
                        expected: expected_seq,
                        found: doc.record.seq,
                    });
                }
                doc.record = record.clone();
                Ok(())
            },
        )
    }

    fn lock(&self) -> Result<Flock<File>> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|source| Error::StateIo {
                path: dir.to_path_buf(),
                action: "create the fleet folder",
                source,
            })?;
        }
        crate::state::lock_exclusive(&self.lock_path)
    }

    fn write(&self, doc: &FleetDoc) -> Result<()> {
        crate::state::write_atomically(&self.path, doc)
    }
}

/// What one step of the driver did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stepped {
    /// The planner's action, recorded (and, for a start, carried out).
    pub action: FleetAction,
    /// The record as stored after it.
    pub record: FleetRecord,
}

/// The fleet's decision loop over a fleet file and its clusters' state files.
#[derive(Clone, Debug)]
pub struct FleetDriver {
    file: FleetFile,
}

impl FleetDriver {
    /// A driver of the fleet in `dir`.
    pub fn new(dir: &Path) -> FleetDriver {
        FleetDriver {
            file: FleetFile::in_dir(dir),
        }
    }

    /// The fleet file.
    pub fn file(&self) -> &FleetFile {
        &self.file
    }

    /// Every member's state as the fleet sees it, by name (members whose runtime has not
    /// published anything yet are left out: the planner waits for them).
    pub fn observe(doc: &FleetDoc) -> Result<BTreeMap<String, ClusterObservation>> {
        let mut seen = BTreeMap::new();
        for (name, dir) in &doc.members {
            let state = StateFile::in_dir(dir).read()?;
            if let Some(o) = state.cluster.fleet.observation() {
                seen.insert(name.clone(), o);
            }
        }
        Ok(seen)
    }

    /// One step: observe every cluster, decide, record the step and store the record (with
    /// compare-and-swap: a conflict means another driver or a person's command stored first,
    /// and nothing is done), then act on a start.
    pub fn step(&self, now: Timestamp) -> Result<Stepped> {
        let doc = self.file.read()?;
        let observations = Self::observe(&doc)?;
        let action = decide_fleet(&doc.spec, &doc.record, &observations, now)?;
        let mut record = doc.record.clone();
        if !matches!(action, FleetAction::Wait { .. }) {
            apply(&mut record, &action, now);
            record.seq += 1;
            self.file.store_record(doc.record.seq, &record)?;
        }
        if let FleetAction::Start { cluster, change } = &action {
            self.give(&doc, cluster, change, now)?;
        }
        Ok(Stepped { action, record })
    }

    /// Writes the change into the cluster's state file, unless it carries it already.
    fn give(&self, doc: &FleetDoc, cluster: &str, change: &str, now: Timestamp) -> Result<()> {
        let dir = doc.members.get(cluster).ok_or_else(|| {
            Error::Invalid(format!(
                "the fleet's record names cluster {cluster:?}, which the fleet file does not \
                 list: abort the fleet and apply again"
            ))
        })?;
        let given = MemberChange {
            change: change.to_string(),
            config: doc.config.clone(),
            check: doc.check.clone(),
            at: now,
        };
        StateFile::in_dir(dir).update_cluster(|c| {
            if c.fleet.change.as_ref().map(|g| g.change.as_str()) != Some(change) {
                c.fleet.change = Some(given);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use switchyard_plan::fleet::UserCheck;

    use super::*;

    fn config(set: &[(&str, &str)], restart: bool) -> ConfigChange {
        ConfigChange {
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            restart,
        }
    }

    #[test]
    fn a_change_is_named_by_its_variables_and_checked() {
        let c = config(&[("b", "2"), ("a", "1")], true);
        assert_eq!(c.name(), "a=1 b=2 (restart)");
        assert!(c.validate().is_ok());
        for bad in [
            config(&[], false),
            config(&[("max connections", "1")], false),
            config(&[("x; DROP", "1")], false),
            config(&[("a", " ")], false),
        ] {
            let err = bad.validate().expect_err("refused");
            assert_eq!(err.category(), "invalid", "{err}");
        }
    }

    #[test]
    fn a_cluster_given_a_change_rolls_until_its_runtime_publishes_for_it() {
        let published = |change: Option<&str>, rollout| ClusterObservation {
            change: change.map(String::from),
            rollout,
            replication_running: true,
            lag_seconds: Some(0),
            user_check: UserCheck::Answered,
            observed_at: Timestamp(7),
        };
        let given = MemberChange {
            change: "x".into(),
            config: config(&[("a", "1")], false),
            check: None,
            at: Timestamp(5),
        };
        // Nothing published yet: not observed.
        assert_eq!(MemberSlot::default().observation(), None);
        // Given, but the runtime still publishes its previous state.
        let slot = MemberSlot {
            change: Some(given.clone()),
            status: Some(published(None, ClusterRollout::Done)),
        };
        let seen = slot.observation().expect("observed");
        assert_eq!(seen.change.as_deref(), Some("x"));
        assert_eq!(seen.rollout, ClusterRollout::Rolling);
        // Published for the change: as published.
        let halted = ClusterRollout::Halted {
            reason: "keeps failing".into(),
        };
        let slot = MemberSlot {
            change: Some(given),
            status: Some(published(Some("x"), halted.clone())),
        };
        assert_eq!(slot.observation().expect("observed").rollout, halted);
    }

    #[test]
    fn the_record_is_stored_with_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = FleetFile::in_dir(dir.path());
        assert!(file.store_record(0, &FleetRecord::default()).is_err());
        let doc = FleetDoc {
            spec: FleetSpec::new(["a"], "x"),
            config: config(&[("a", "1")], false),
            check: None,
            members: BTreeMap::new(),
            record: FleetRecord::default(),
        };
        file.update(|| Some(doc), |_| Ok(())).expect("create");
        let mut record = FleetRecord {
            seq: 1,
            ..FleetRecord::default()
        };
        file.store_record(0, &record).expect("first store");
        let err = file.store_record(0, &record).expect_err("a stale store");
        assert_eq!(err.category(), "conflict");
        record.seq = 2;
        FleetFile::in_dir(dir.path())
            .store_record(1, &record)
            .expect("another handle sees the change");
        assert_eq!(file.read().expect("read").record.seq, 2);
    }
}
