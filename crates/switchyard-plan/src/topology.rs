//! The cluster as observed: instances, their roles, versions, revisions and health.
//!
//! A runtime (Kubernetes, local processes, a test model) fills an [`Observed`]
//! from what it sees; [`crate::decide()`] reads it. Nothing here talks to a server.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gtid::GtidSet;
use crate::versions::{Flavor, Version};

/// How the instances of a cluster replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopologyKind {
    /// One primary and asynchronous GTID replicas.
    Async,
    /// A Galera cluster: every node may take writes; the router picks one writer.
    Galera,
}

/// The role an instance plays in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The writable source of the cluster (the writer node on Galera).
    Primary,
    /// A read-only replica (a non-writer node on Galera).
    Replica,
}

/// Milliseconds since the Unix epoch, as read from the runtime's clock.
///
/// The planner never reads a clock itself: `now` is always an argument.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This timestamp moved forward by `d`.
    pub fn after(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// A revision: the one notion of "what an instance should run" everywhere.
///
/// A revision is a number (monotonic per cluster) plus a content hash of the
/// server version and the rendered configuration. Two instances run the same
/// thing exactly when their hashes are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Revision {
    /// The revision's number in the cluster's history (1, 2, 3, ...).
    pub number: u64,
    /// Hex SHA-256 of the canonical content (flavor, version, configuration).
    pub hash: String,
}

impl Revision {
    /// Computes the content hash of a flavor, version and configuration and
    /// pairs it with `number`.
    ///
    /// The configuration is hashed in key order, so the same settings always
    /// give the same hash.
    pub fn new(
        number: u64,
        flavor: Flavor,
        version: Version,
        config: &BTreeMap<String, String>,
    ) -> Self {
        Revision {
            number,
            hash: content_hash(flavor, version, config),
        }
    }

    /// The first twelve hex digits of the hash, for display.
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{} ({})", self.number, self.short_hash())
    }
}

/// The hex SHA-256 of a version and configuration, as used by [`Revision`].
pub fn content_hash(flavor: Flavor, version: Version, config: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("flavor={flavor}\nversion={version}\n"));
    for (key, value) in config {
        // Length-prefix both sides so no two configurations hash alike by concatenation.
        hasher.update(format!("{}:{key}={}:{value}\n", key.len(), value.len()));
    }
    hex::encode(hasher.finalize())
}

/// The health of one instance as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Health {
    /// Running, reachable and (for a replica) replicating within bounds.
    Ready,
    /// A replica applying but behind its source by `seconds`.
    Lagging {
        /// Seconds behind the source.
        seconds: u64,
    },
    /// A replica whose replication stopped with an error.
    ReplicationStopped {
        /// The server's error number.
        errno: u32,
        /// The server's error text.
        message: String,
    },
    /// The process runs but does not answer (hung, network, credentials).
    Unreachable {
        /// What the runtime saw.
        reason: String,
    },
    /// The process is starting (or restarting at our request).
    Starting,
    /// The process died (not by our action) and must be recovered on its
    /// current version before anything else: MariaDB refuses an upgrade after
    /// a crash, and MySQL must finish crash recovery on the version that wrote
    /// the redo log.
    Crashed,
    /// The process is stopped (cleanly shut down) and not running.
    Stopped,
}

impl Health {
    /// True when the instance is up and usable: ready, or lagging (the lag bound is policy).
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Ready | Health::Lagging { .. })
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Ready => write!(f, "ready"),
            Health::Lagging { seconds } => write!(f, "lagging {seconds}s"),
            Health::ReplicationStopped { errno, message } => {
                write!(f, "replication stopped with error {errno}: {message}")
            }
            Health::Unreachable { reason } => write!(f, "unreachable: {reason}"),
            Health::Starting => write!(f, "starting"),
            Health::Crashed => write!(f, "crashed, needs recovery on its current version"),
            Health::Stopped => write!(f, "stopped"),
        }
    }
}

/// One instance of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance's ordinal (0, 1, 2, ... as in a StatefulSet).
    pub ordinal: u32,
    /// Its role.
    pub role: Role,
    /// The server version it runs (or last ran, if it is down).
    pub version: Version,
    /// The revision it runs (or last ran).
    pub revision: Revision,
    /// Its health.
    pub health: Health,
    /// Executed GTIDs (MySQL `gtid_executed`, MariaDB `gtid_current_pos`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<GtidSet>,
    /// Whether it accepts writes from clients (neither `read_only` nor fenced).
    #[serde(default)]
    pub writable: bool,
    /// Whether a fence switchyard set on it holds now: no client, however
    /// privileged, can commit (MySQL: `super_read_only`; MariaDB: the fence's
    /// lock, which dies with the connection that holds it, is held).
    #[serde(default)]
    pub fenced: bool,
    /// Whether switchyard took it out of the read pool.
    #[serde(default)]
    pub drained: bool,
    /// The ordinal it replicates from, if it replicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<u32>,
    /// The identifier of the last schema change it has (see
    /// [`crate::decide::SchemaTarget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// What its receiver (the replication I/O thread) knows of its source, for a
    /// replica the runtime could read; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// On a primary: how many replicas must acknowledge a commit before the
    /// client's is (semi-synchronous replication waiting after the sync, with
    /// a timeout long enough that it never falls back to asynchronous); `None`
    /// when it does not wait (asynchronous) or this is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_replicas: Option<u32>,
    /// On a node of a Galera cluster that answered: its wsrep status (see
    /// [`GaleraState`]); `None` on an asynchronous cluster, or when the node
    /// could not be read.
    ///
    /// Added in 0.1 after the other fields: a record or observation written
    /// without it reads as `None` (serde default), and one written for an
    /// asynchronous cluster is unchanged (it is skipped when `None`). Code
    /// that builds an `Instance` by hand sets `galera: None` for an
    /// asynchronous cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraState>,
}

/// What a Galera node reports of itself and of its cluster: the wsrep status
/// variables the decision reads before it takes a node out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaleraState {
    /// Its local state (`wsrep_local_state_comment`).
    pub state: WsrepState,
    /// How many nodes its component has (`wsrep_cluster_size`).
    pub cluster_size: u32,
    /// Whether its component is the primary one, the one with quorum
    /// (`wsrep_cluster_status = Primary`); a node in a non-primary component
    /// refuses queries.
    pub primary_component: bool,
}

impl GaleraState {
    /// A synced node in the primary component of a cluster of `cluster_size`.
    pub fn synced(cluster_size: u32) -> Self {
        GaleraState {
            state: WsrepState::Synced,
            cluster_size,
            primary_component: true,
        }
    }

    /// Whether it is `Synced` and in the primary component.
    pub fn is_synced(&self) -> bool {
        self.state == WsrepState::Synced && self.primary_component
    }
}

/// A Galera node's local state, as `wsrep_local_state_comment` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WsrepState {
    /// Synced: a full member, applying everything in order.
    Synced,
    /// `Donor/Desynced`: serving a state transfer to a joiner, or desynced on
    /// purpose (an RSU ALTER, `wsrep_desync`); it falls behind the cluster.
    DonorDesynced,
    /// `Joining` (or `Waiting on SST`): receiving a state transfer.
    Joining,
    /// `Joined`: received its state, catching up before it is Synced.
    Joined,
    /// `Initialized` or a state this version does not know: not a member.
    Other,
}

impl WsrepState {
    /// The state for a `wsrep_local_state_comment` value.
    pub fn from_comment(comment: &str) -> Self {
        match comment.trim() {
            "Synced" => WsrepState::Synced,
            "Donor/Desynced" | "Donor" | "Desynced" => WsrepState::DonorDesynced,
            "Joining" | "Waiting on SST" | "Joining: receiving State Transfer" => {
                WsrepState::Joining
            }
            "Joined" => WsrepState::Joined,
            _ => WsrepState::Other,
        }
    }
}

impl fmt::Display for WsrepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WsrepState::Synced => "Synced",
            WsrepState::DonorDesynced => "Donor/Desynced",
            WsrepState::Joining => "Joining",
            WsrepState::Joined => "Joined",
            WsrepState::Other => "not a member",
        })
    }
}

impl fmt::Display for GaleraState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in a {} component of {}",
            self.state,
            if self.primary_component {
                "primary"
            } else {
                "non-primary"
            },
            self.cluster_size
        )
    }
}

/// A replica's receiver: whether it reaches its source, and what it received.
///
/// A failover reads it twice: the replicas whose receivers lost the primary
/// corroborate that the primary failed (a primary only the operator cannot
/// reach is not failed over), and the replica that received the most holds
/// every transaction a semi-synchronous primary acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Whether the receiver is connected to its source now (MySQL
    /// `Replica_IO_Running: Yes`, MariaDB `Slave_IO_Running: Yes`), rather
    /// than reconnecting or stopped.
    pub connected: bool,
    /// Everything it has received: executed, plus what waits in its relay log
    /// (MySQL `gtid_executed` with `Retrieved_Gtid_Set`, MariaDB
    /// `gtid_io_pos` with its executed state), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<GtidSet>,
}

impl Instance {
    /// True when the instance runs `revision`.
    pub fn runs(&self, revision: &Revision) -> bool {
        self.revision.hash == revision.hash
    }

    /// Whether it replicates from `source` with its replication running.
    pub fn replicates_from(&self, source: u32) -> bool {
        self.source == Some(source) && self.health.is_up()
    }

    /// Whether it answers but its replication is stopped without an error:
    /// configured and not started (a former primary demoted before a
    /// promotion), or stopped by hand.
    pub fn replication_paused(&self) -> bool {
        matches!(self.health, Health::ReplicationStopped { errno: 0, .. })
    }

    /// The transactions it has executed that `source` has not (errant), when
    /// both positions are known and there are any (see [`crate::gtid::errant`]).
    pub fn errant_against(&self, source: &Instance) -> Option<GtidSet> {
        let (Some(mine), Some(theirs)) = (&self.gtid, &source.gtid) else {
            return None;
        };
        crate::gtid::errant(mine, theirs)
            .ok()
            .filter(|e| !e.is_empty())
    }

    /// Replication lag in seconds: 0 when ready, `None` when not applying.
    pub fn lag_seconds(&self) -> Option<u64> {
        match self.health {
            Health::Ready => Some(0),
            Health::Lagging { seconds } => Some(seconds),
            _ => None,
        }
    }
}

/// A whole cluster as observed at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// How the cluster replicates.
    pub kind: TopologyKind,
    /// The server flavor every instance runs.
    pub flavor: Flavor,
    /// The instances, in any order (see [`Observed::validate`]).
    pub instances: Vec<Instance>,
}

/// A topology that cannot be planned on, with what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The topology has no instance at all.
    #[error("the topology has no instances: describe at least one")]
    Empty,
    /// Two instances share an ordinal.
    #[error("ordinal {0} appears more than once: every instance needs its own ordinal")]
    DuplicateOrdinal(u32),
    /// More than one instance claims to be primary.
    #[error("instances {0} and {1} are both primary: an async cluster has exactly one primary")]
    TwoPrimaries(u32, u32),
    /// An async cluster without a primary.
    #[error("no instance is primary: mark exactly one instance `role: primary`")]
    NoPrimary,
    /// A replica names a source that is not an instance of the cluster.
    #[error(
        "instance {ordinal} replicates from {source_ordinal}, which is not an instance of the cluster"
    )]
    UnknownSource {
        /// The replica.
        ordinal: u32,
        /// The ordinal it names as source.
        source_ordinal: u32,
    },
    /// An instance names itself as its source.
    #[error("instance {0} replicates from itself")]
    SelfSource(u32),
    /// GTID positions of different flavors.
    #[error("instance {0} reports a GTID position of the other flavor")]
    GtidFlavor(u32),
}

impl TopologyError {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            TopologyError::Empty => "empty",
            TopologyError::DuplicateOrdinal(_) => "duplicate-ordinal",
            TopologyError::TwoPrimaries(..) => "two-primaries",
            TopologyError::NoPrimary => "no-primary",
            TopologyError::UnknownSource { .. } => "unknown-source",
            TopologyError::SelfSource(_) => "self-source",
            TopologyError::GtidFlavor(_) => "gtid-flavor",
        }
    }
}

impl Observed {
    /// Checks that the topology is consistent: at least one instance, unique
    /// ordinals, exactly one primary (async), sources that exist.
    pub fn validate(&self) -> Result<(), TopologyError> {
        if self.instances.is_empty() {
            return Err(TopologyError::Empty);
        }
        let mut seen = BTreeSet::new();
        for i in &self.instances {
            if !seen.insert(i.ordinal) {
                return Err(TopologyError::DuplicateOrdinal(i.ordinal));
            }
        }
        let primaries: Vec<u32> = self
            .instances
            .iter()
            .filter(|i| i.role == Role::Primary)
            .map(|i| i.ordinal)
            .collect();
        match (self.kind, primaries.as_slice()) {
            (_, [a, b, ..]) => return Err(TopologyError::TwoPrimaries(*a, *b)),
            (TopologyKind::Async, []) => return Err(TopologyError::NoPrimary),
            _ => {}
        }
        for i in &self.instances {
            if let Some(source) = i.source {
                if source == i.ordinal {
                    return Err(TopologyError::SelfSource(i.ordinal));
                }
                if !seen.contains(&source) {
                    return Err(TopologyError::UnknownSource {
                        ordinal: i.ordinal,
                        source_ordinal: source,
                    });
                }
            }
            let gtid_matches = i.gtid.as_ref().is_none_or(|g| g.flavor() == self.flavor);
            if !gtid_matches {
                return Err(TopologyError::GtidFlavor(i.ordinal));
            }
        }
        Ok(())
    }

    /// The instance with `ordinal`.
    pub fn instance(&self, ordinal: u32) -> Option<&Instance> {
        self.instances.iter().find(|i| i.ordinal == ordinal)
    }

    /// The current primary, if there is one.
    pub fn primary(&self) -> Option<&Instance> {
        self.instances.iter().find(|i| i.role == Role::Primary)
    }

    /// Instances ordered by ordinal.
    pub fn by_ordinal(&self) -> Vec<&Instance> {
        let mut v: Vec<&Instance> = self.instances.iter().collect();
        v.sort_by_key(|i| i.ordinal);
        v
    }

    /// The instances that accept writes.
    pub fn writable(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| i.writable)
    }

    /// The highest version any instance runs.
    pub fn highest_version(&self) -> Option<Version> {
        self.instances.iter().map(|i| i.version).max()
    }
}
