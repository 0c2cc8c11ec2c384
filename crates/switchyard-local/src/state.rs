//! The state file: the engine's record and the runtime's own view of the
//! cluster (which instance is primary, which revision each runs, the
//! revision history), kept as JSON next to the cluster's data.
//!
//! Every change takes an exclusive `flock` on a lock file beside it, reads
//! the file, changes it, writes a temporary file, syncs it and renames it
//! over the old one, so a reader sees either the old or the new document and
//! never a torn one, and a killed process leaves a whole file behind. The
//! engine's record is stored with compare-and-swap on [`Record::seq`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use switchyard_plan::Record;
use switchyard_plan::history::History;
use switchyard_plan::topology::Revision;
use switchyard_plan::versions::Flavor;

use crate::error::{Error, Result};

/// The state file's name inside the cluster's folder.
pub const STATE_FILE: &str = "switchyard-state.json";
const LOCK_FILE: &str = "switchyard-state.lock";

/// Everything the state file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDoc {
    /// The engine's record.
    pub record: Record,
    /// The runtime's view of the cluster.
    pub cluster: ClusterState,
}

/// The runtime's own view of the cluster: what it started and which
/// instance it made primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The server flavor.
    pub flavor: Flavor,
    /// The instance the runtime made primary (the router's primary endpoint
    /// follows it).
    pub primary: u32,
    /// Per instance, by ordinal.
    pub instances: BTreeMap<u32, InstanceState>,
    /// Every revision the cluster has had, numbered.
    pub history: History,
    /// The schema changes prepared for the cluster and which instance has which.
    #[serde(default)]
    pub schema: SchemaState,
    /// With semi-synchronous replication: how many replicas the primary waits for (see
    /// [`crate::ClusterSpec::with_semi_sync`]); the runtime turns the source side on for the
    /// instance it makes primary, off for the others. `None`: asynchronous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<u32>,
    /// What a fleet asked this cluster to roll and what the cluster's runtime last published
    /// for the fleet to judge (see [`crate::fleet`]).
    #[serde(default)]
    pub fleet: crate::fleet::MemberSlot,
}

/// The runtime's record of schema changes (see [`crate::schema`]).
///
/// An instance's schema id is written here only after its table was seen
/// with the new definition, and a change is re-run idempotently (a table
/// that already has the new definition is not altered again), so a killed
/// engine or runtime leaves nothing that a new one would get wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaState {
    /// The id of the last schema change each instance has, by ordinal.
    #[serde(default)]
    pub applied: BTreeMap<u32, String>,
    /// The changes prepared by the pre-flight, by id.
    #[serde(default)]
    pub changes: BTreeMap<String, SchemaChangeState>,
}

/// One prepared schema change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChangeState {
    /// The `ALTER TABLE` statement.
    pub statement: String,
    /// The table's database.
    pub database: String,
    /// The table's name.
    pub table: String,
    /// The table's definition before the change, as the primary printed it.
    pub before: String,
    /// The previous values of the replica settings the executor changed, per
    /// instance, restored once every instance has the change.
    #[serde(default)]
    pub saved_settings: BTreeMap<u32, Vec<(String, String)>>,
}

/// The runtime's view of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// The revision it was started with (or brought to online).
    pub revision: Revision,
    /// Whether the runtime fenced it (a switchover in progress).
    #[serde(default)]
    pub fenced: bool,
}

/// A state file on disk. Cheap to clone; every method reads or writes the
/// file itself, so two handles (two engine processes) see each other's
/// changes.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl StateFile {
    /// The state file in `dir` (which must exist). Nothing is read yet.
    pub fn in_dir(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join(STATE_FILE),
            lock_path: dir.join(LOCK_FILE),
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

    /// Writes `doc` as the file's content, replacing any (under the lock).
    pub fn create(&self, doc: &StateDoc) -> Result<()> {
        let _lock = self.lock()?;
        self.write(doc)
    }

    /// Reads the whole document.
    pub fn read(&self) -> Result<StateDoc> {
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

    /// Changes the document under the lock: reads it, lets `change` edit it
    /// and writes it back if `change` succeeds.
    pub fn update<T>(&self, change: impl FnOnce(&mut StateDoc) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut doc = self.read()?;
        let out = change(&mut doc)?;
        self.write(&doc)?;
        Ok(out)
    }

    /// Changes the cluster part of the document (see [`StateFile::update`]).
    pub fn update_cluster<T>(
        &self,
        change: impl FnOnce(&mut ClusterState) -> Result<T>,
    ) -> Result<T> {
        self.update(|doc| change(&mut doc.cluster))
    }

    /// Stores `record` if the stored record's `seq` is `expected_seq`;
    /// otherwise fails with [`Error::Conflict`] and changes nothing.
    pub fn store_record(&self, expected_seq: u64, record: &Record) -> Result<()> {
        self.update(|doc| {
            if doc.record.seq != expected_seq {
                return Err(Error::Conflict {
                    expected: expected_seq,
                    found: doc.record.seq,
                });
            }
            doc.record = record.clone();
            Ok(())
        })
    }

    fn lock(&self) -> Result<Flock<File>> {
        lock_exclusive(&self.lock_path)
    }

    fn write(&self, doc: &StateDoc) -> Result<()> {
        write_atomically(&self.path, doc)
    }
}

/// Takes the exclusive lock of `lock_path` (created if absent), held until the guard drops.
pub(crate) fn lock_exclusive(lock_path: &Path) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|source| Error::StateIo {
            path: lock_path.to_path_buf(),
            action: "open the lock file",
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::StateIo {
        path: lock_path.to_path_buf(),
        action: "lock",
        source: std::io::Error::from(errno),
    })
}

/// Writes `doc` as JSON to `path` durably: a temporary file synced, renamed over `path`,
/// then the folder synced.
pub(crate) fn write_atomically<T: serde::Serialize>(path: &Path, doc: &T) -> Result<()> {
    let io = |action: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::StateIo {
            path,
            action,
            source,
        }
    };
    let text = serde_json::to_vec_pretty(doc).map_err(|source| Error::StateFormat {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(io("create a temporary file for"))?;
    file.write_all(&text).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("rename over"))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        // The rename is durable once the folder is synced.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_plan::versions::Version;

    fn doc() -> StateDoc {
        let mut history = History::new(Flavor::Mariadb);
        let (entry, _) = history.ensure(
            Flavor::Mariadb,
            Version::new(10, 11, 14),
            &BTreeMap::new(),
            switchyard_plan::Timestamp(1),
        );
        let revision = entry.revision.clone();
        StateDoc {
            record: Record::default(),
            cluster: ClusterState {
                flavor: Flavor::Mariadb,
                primary: 0,
                instances: (0..3)
                    .map(|o| {
                        (
                            o,
                            InstanceState {
                                revision: revision.clone(),
                                fenced: false,
                            },
                        )
                    })
                    .collect(),
                history,
                schema: SchemaState::default(),
                semi_sync: None,
                fleet: crate::fleet::MemberSlot::default(),
            },
        }
    }

    #[test]
    fn records_are_stored_with_compare_and_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        file.create(&doc()).expect("create");
        let mut record = file.read().expect("read").record;
        record.seq = 1;
        file.store_record(0, &record).expect("first store");
        // A second engine that loaded seq 0 loses.
        let err = file.store_record(0, &record).expect_err("stale store");
        assert_eq!(err.category(), "conflict");
        assert_eq!(file.read().expect("read").record.seq, 1);
        // Another handle on the same file sees the change.
        let other = StateFile::in_dir(dir.path());
        record.seq = 2;
        other
            .store_record(1, &record)
            .expect("store from another handle");
        assert_eq!(file.read().expect("read").record.seq, 2);
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        file.create(&doc()).expect("create");
        let before = fs::read(file.path()).expect("read");
        let result: Result<()> = file.update_cluster(|c| {
            c.primary = 2;
            Err(Error::Invalid("refused".into()))
        });
        assert!(result.is_err());
        assert_eq!(fs::read(file.path()).expect("read"), before);
        file.update_cluster(|c| {
            c.primary = 2;
            Ok(())
        })
        .expect("update");
        assert_eq!(file.read().expect("read").cluster.primary, 2);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left behind");
    }

    #[test]
    fn a_garbled_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        fs::write(file.path(), b"{ not json").expect("write");
        let err = file.read().expect_err("garbled");
        assert_eq!(err.category(), "state_format");
        assert!(err.to_string().contains(STATE_FILE), "{err}");
    }
}
