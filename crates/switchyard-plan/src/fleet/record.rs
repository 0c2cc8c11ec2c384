//! The fleet's durable record: its numbered revisions, the waves planned, each cluster's state and a person's command.
//!
//! Stored by the runtime with compare-and-swap on [`FleetRecord::seq`], like
//! the cluster engine's [`crate::record::Record`]: it is all the state a fleet
//! keeps between steps.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::FleetError;
use super::decide::StopReason;
use crate::record::{Entry, HISTORY_LIMIT};
use crate::topology::Timestamp;

/// How many fleet revisions a record keeps.
pub const FLEET_HISTORY_LIMIT: usize = 32;

/// Where one cluster stands in the current fleet revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ClusterState {
    /// Not started on the change.
    Pending,
    /// Started on the change; its own rollout runs.
    Rolling {
        /// When the fleet started it.
        since: Timestamp,
    },
    /// Its rollout finished; it must stay healthy for the bake.
    Baking {
        /// When the bake began (or began again, after a resume).
        since: Timestamp,
    },
    /// Rolled and baked.
    Done {
        /// When its bake ended.
        at: Timestamp,
    },
    /// The fleet stopped on it.
    Stopped {
        /// Why.
        reason: StopReason,
        /// When.
        at: Timestamp,
    },
    /// A person skipped it when resuming: never started again, never waited for.
    Skipped {
        /// When.
        at: Timestamp,
    },
}

impl ClusterState {
    /// Whether the fleet started this cluster on the change.
    pub fn started(&self) -> bool {
        !matches!(self, ClusterState::Pending)
    }
}

/// What the fleet as a whole is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum FleetState {
    /// No change planned yet.
    #[default]
    Idle,
    /// Rolling the current revision.
    Running,
    /// Stopped on a cluster; a person must resume or abort.
    Stopped {
        /// The cluster.
        cluster: String,
        /// Why.
        reason: StopReason,
        /// When.
        at: Timestamp,
    },
    /// Every cluster is done or skipped.
    Done {
        /// When.
        at: Timestamp,
    },
    /// A person aborted it; every cluster was left as it was.
    Aborted {
        /// When.
        at: Timestamp,
    },
}

impl fmt::Display for FleetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetState::Idle => write!(f, "idle"),
            FleetState::Running => write!(f, "running"),
            FleetState::Stopped {
                cluster, reason, ..
            } => {
                write!(f, "stopped on cluster {cluster:?} ({reason})")
            }
            FleetState::Done { .. } => write!(f, "done"),
            FleetState::Aborted { .. } => write!(f, "aborted"),
        }
    }
}

/// One cluster a revision was rolled to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rolled {
    /// The cluster.
    pub cluster: String,
    /// When the fleet started it on the change.
    pub started: Timestamp,
    /// When it was done (rolled and baked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Timestamp>,
}

/// How a fleet revision ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// When.
    pub at: Timestamp,
    /// Whether every cluster was done (or skipped), or a person aborted it.
    pub aborted: bool,
}

/// One fleet revision: a change and where and when it was rolled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRevision {
    /// Its number (1, 2, 3, ...), one past the revision before it.
    pub number: u64,
    /// The change.
    pub change: String,
    /// When it was planned.
    pub created: Timestamp,
    /// The clusters it was started on, in the order they started, each once.
    pub rolled: Vec<Rolled>,
    /// When it ended and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

/// A person's command to the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum FleetCommand {
    /// Continue from where the fleet stopped.
    Resume {
        /// Skip the stopped cluster (never start or wait for it again)
        /// instead of requiring it healthy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skip: Option<String>,
    },
    /// Stop for good, leaving every cluster as it is.
    Abort,
}

impl fmt::Display for FleetCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetCommand::Resume { skip: None } => write!(f, "resume"),
            FleetCommand::Resume { skip: Some(c) } => write!(f, "resume skipping {c:?}"),
            FleetCommand::Abort => write!(f, "abort"),
        }
    }
}

/// A command waiting for the fleet's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The command.
    pub command: FleetCommand,
    /// When it was given.
    pub at: Timestamp,
}

/// The fleet's durable record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRecord {
    /// Compare-and-swap sequence: bumped by every successful store.
    pub seq: u64,
    /// The fleet's revisions, oldest first; the last is the current one.
    #[serde(default)]
    pub revisions: Vec<FleetRevision>,
    /// The current revision's waves, as planned when it was recorded.
    #[serde(default)]
    pub waves: Vec<Vec<String>>,
    /// Each cluster of the current revision.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterState>,
    /// The fleet's state.
    #[serde(default)]
    pub state: FleetState,
    /// A person's command not yet decided on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// The most recent steps and commands, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub log: Vec<Entry>,
}

impl FleetRecord {
    /// The current revision.
    pub fn current(&self) -> Option<&FleetRevision> {
        self.revisions.last()
    }

    /// The clusters of the current revision in wave order.
    pub fn in_order(&self) -> impl Iterator<Item = &str> {
        self.waves.iter().flatten().map(String::as_str)
    }

    /// A cluster's state in the current revision.
    pub fn cluster(&self, name: &str) -> Option<&ClusterState> {
        self.clusters.get(name)
    }

    /// Records a person's command for the fleet to decide on, or refuses it
    /// (nothing recorded) when it cannot apply: another command waits, a
    /// resume of a fleet that is not stopped or skipping another cluster
    /// than the stopped one, an abort of a fleet that is not running or
    /// stopped.
    pub fn request(&mut self, command: FleetCommand, now: Timestamp) -> Result<(), FleetError> {
        if let Some(pending) = &self.command {
            return Err(FleetError::CommandPending {
                pending: pending.command.to_string(),
            });
        }
        match (&command, &self.state) {
            (FleetCommand::Resume { skip }, FleetState::Stopped { cluster, .. }) => {
                if let Some(skip) = skip
                    && skip != cluster
                {
                    return Err(FleetError::SkipNotStopped {
                        cluster: skip.clone(),
                        stopped: cluster.clone(),
                    });
                }
            }
            (FleetCommand::Resume { .. }, state) => {
                return Err(FleetError::NotStopped {
                    state: state.to_string(),
                });
            }
            (FleetCommand::Abort, FleetState::Running | FleetState::Stopped { .. }) => {}
            (FleetCommand::Abort, state) => {
                return Err(FleetError::NothingToAbort {
                    state: state.to_string(),
                });
            }
        }
        self.log(now, format!("{command} requested"), None);
        self.command = Some(Command { command, at: now });
        Ok(())
    }

    /// Appends a log entry, dropping the oldest past [`HISTORY_LIMIT`].
    pub fn log(&mut self, at: Timestamp, action: impl Into<String>, error: Option<String>) {
        self.log.push(Entry {
            at,
            action: action.into(),
            error,
        });
        if self.log.len() > HISTORY_LIMIT {
            let excess = self.log.len() - HISTORY_LIMIT;
            self.log.drain(..excess);
        }
    }
}
