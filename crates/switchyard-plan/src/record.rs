//! The engine's durable record: what it intends, what it has done, and why it waits.
//!
//! The record is the only state the engine keeps between steps. It is stored
//! by the runtime (a status subresource on Kubernetes, a state file locally)
//! with compare-and-swap on [`Record::seq`], so two engines can never both
//! act on the same decision, and a new engine resumes exactly where the
//! old one stopped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decide::{HaltReason, WaitReason};
use crate::gtid::GtidSet;
use crate::topology::{Revision, Timestamp};
use crate::versions::Version;

/// How many history entries a record keeps.
pub const HISTORY_LIMIT: usize = 64;

/// The sub-steps of a switchover, in order: each names the last one completed.
///
/// `Promoting` is the switchover's commit point. Before it the candidate was
/// never asked to take writes, so undoing means lifting the old primary's
/// fence. From it on the candidate may be writable, so an undo first makes the
/// candidate read-only for every client and checks that it holds nothing the
/// old primary lacks; otherwise the switchover completes forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchoverStep {
    /// The switchover is recorded; nothing is done yet.
    Requested,
    /// The old primary is fenced: no client can commit on it.
    Fenced,
    /// The old primary is configured as a replica of the candidate (its
    /// replication not started) and the candidate has executed everything the
    /// old primary committed, without errant transactions of its own.
    CaughtUp,
    /// The promotion was issued: the candidate may already take writes.
    Promoting,
    /// The candidate is the writable primary.
    Promoted,
    /// The other replicas replicate from the new primary.
    Repointed,
}

/// The sub-steps of a failover, in order: each names the last one completed.
///
/// Like a switchover's, `Promoting` is the commit point; unlike a switchover,
/// a failover is never undone (the old primary failed): it only goes forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverStep {
    /// The primary failed, as the runtime and the replicas see it: recorded.
    Requested,
    /// Every replica that answers stopped receiving from the failed primary
    /// (which may come back), and the failed primary was fenced if it could
    /// be reached.
    Isolated,
    /// The candidate, the replica that received the most, applied everything
    /// it received.
    Applied,
    /// The promotion was issued: the candidate may take writes.
    Promoting,
    /// The candidate is the writable primary and takes the clients' writes.
    Promoted,
    /// Every other replica that answers applied what it received and follows
    /// the new primary, or is quarantined for holding what the new primary
    /// lacks.
    Repointed,
}

/// What the engine is in the middle of. At most one intent exists, which is
/// how "at most one instance out of service by us" holds by construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "kebab-case")]
pub enum Intent {
    /// An instance was taken out of the read pool before a restart.
    Drained {
        /// The instance.
        ordinal: u32,
        /// When it was drained.
        at: Timestamp,
    },
    /// An instance is being restarted on a revision.
    Restarting {
        /// The instance.
        ordinal: u32,
        /// The revision it restarts on.
        revision: Revision,
        /// When the restart began.
        started: Timestamp,
    },
    /// A schema change runs on an instance.
    Altering {
        /// The instance.
        ordinal: u32,
        /// The change's identifier.
        change: String,
        /// When the change began.
        started: Timestamp,
    },
    /// The primary is moving from `from` to `to`.
    Switchover {
        /// The old primary.
        from: u32,
        /// The candidate.
        to: u32,
        /// The last completed sub-step.
        step: SwitchoverStep,
        /// When the switchover began.
        started: Timestamp,
        /// When a switchover not yet promoted must be undone.
        deadline: Timestamp,
    },
    /// The primary `from` failed: `to` replaces it.
    Failover {
        /// The failed primary.
        from: u32,
        /// The candidate (the replica that received the most).
        to: u32,
        /// The last completed sub-step.
        step: FailoverStep,
        /// When the failover began.
        started: Timestamp,
        /// Whether no acknowledged write can be lost: the failed primary
        /// waited for semi-synchronous acknowledgements and enough of the
        /// replicas that could have acknowledged answered.
        lossless: bool,
    },
}

impl Intent {
    /// The instance this intent takes out of service.
    pub fn ordinal(&self) -> u32 {
        match self {
            Intent::Drained { ordinal, .. }
            | Intent::Restarting { ordinal, .. }
            | Intent::Altering { ordinal, .. } => *ordinal,
            Intent::Switchover { from, .. } | Intent::Failover { from, .. } => *from,
        }
    }
}

/// The primary failing every check since `since`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// The primary.
    pub primary: u32,
    /// When the first check it failed began (it answered nothing since).
    pub since: Timestamp,
}

/// The canary of a rollout with a bake ([`crate::Policy::canary_bake`]): the first
/// instance to complete the target, and how long it has served on it healthy (see
/// [`crate::decide::note_canary`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The target it is the canary of ([`crate::Target::key`]).
    pub target: String,
    /// The instance.
    pub ordinal: u32,
    /// Since when it has served on the target, healthy, without a break; `None` while it
    /// does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<Timestamp>,
    /// When its bake passed: the rollout goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<Timestamp>,
}

/// A failover a person asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// The instance to promote.
    pub to: u32,
    /// Whether the person accepts losing acknowledged writes when no proof
    /// that none is lost can be made.
    pub accept_data_loss: bool,
    /// When it was asked for.
    pub at: Timestamp,
    /// Why the engine will not run it, once it decided so (the primary
    /// answers, the instance cannot take over, or no proof that no
    /// acknowledged write is lost); the request then no longer forces anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The last completed failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverSummary {
    /// The failed primary.
    pub from: u32,
    /// The new primary.
    pub to: u32,
    /// When the primary was first seen failing.
    pub failing_since: Timestamp,
    /// When the failover started.
    pub started: Timestamp,
    /// When the candidate was promoted.
    pub promoted: Timestamp,
    /// Whether it was lossless (see [`Intent::Failover`]).
    pub lossless: bool,
}

/// An instance kept out of replication and out of service: it holds
/// transactions the primary lacks (a failed primary's writes that no replica
/// acknowledged, or written on it directly), so it is neither repointed, which
/// would hide or break on them, nor made writable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The transactions it holds that the primary lacks, as GTIDs.
    pub extra: String,
    /// When it was quarantined.
    pub at: Timestamp,
}

/// A condition the engine has been waiting on since `since`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The wait reason's stable key (see [`WaitReason::key`]).
    pub key: String,
    /// When this wait began.
    pub since: Timestamp,
}

/// A step that failed, counted until the same step succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The target (see [`crate::Target::key`]) the step failed under.
    #[serde(default)]
    pub target: String,
    /// The failed action's stable key (see [`crate::Action::key`]).
    pub key: String,
    /// When it first failed.
    pub first: Timestamp,
    /// When it last failed.
    pub last: Timestamp,
    /// How many times it failed.
    pub count: u32,
    /// What the runtime said the last time.
    pub message: String,
}

/// The rollout stopped and needs a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halted {
    /// The key of the target the halt applies to (see
    /// [`crate::Target::key`]): a new target clears it.
    pub revision_hash: String,
    /// Why.
    pub reason: HaltReason,
    /// When.
    pub at: Timestamp,
}

/// The last completed switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverSummary {
    /// The old primary.
    pub from: u32,
    /// The new primary.
    pub to: u32,
    /// When the switchover started (recorded).
    pub started: Timestamp,
    /// When the candidate was promoted.
    pub promoted: Timestamp,
}

/// A primary's executed GTIDs, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryPosition {
    /// The primary.
    pub ordinal: u32,
    /// What it had executed.
    pub gtid: GtidSet,
}

/// One line of the record's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When the action finished.
    pub at: Timestamp,
    /// The action, in words.
    pub action: String,
    /// `None` on success, the error text on failure.
    pub error: Option<String>,
}

/// The engine's durable record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Compare-and-swap sequence: bumped by every successful store.
    pub seq: u64,
    /// What the engine is in the middle of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// The condition the engine is waiting on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The step that keeps failing, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Set when the rollout halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halted>,
    /// The highest server version the cluster has ever run: downgrades are
    /// judged against it, even after a spec edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_version: Option<Version>,
    /// The last completed switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover: Option<SwitchoverSummary>,
    /// The primary failing every check, while a failover is considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// The last completed failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverSummary>,
    /// The canary of the current target, with a canary bake in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Primaries failed over that have not rejoined since: each is fenced
    /// when it answers again and judged (repointed, or quarantined with what
    /// the failover lost), as is a replica that still follows one. A set, not
    /// the last failover's alone: a second failover may come before the
    /// first failed primary is back.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub failed_over: std::collections::BTreeSet<u32>,
    /// How many replicas the primary was last seen waiting for before it
    /// acknowledged a commit (refreshed as `primary_position` is): a failover
    /// is proven lossless only from it. `None`: asynchronous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_ack_replicas: Option<u32>,
    /// Instances kept out of replication and service (see [`Quarantine`]),
    /// by ordinal, until a person re-provisions them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantined: BTreeMap<u32, Quarantine>,
    /// Replicas last seen holding transactions the writable primary lacked,
    /// with those transactions (refreshed as `primary_position` is, from
    /// observations where both answer). A failover, which cannot compare a
    /// replica with a primary that is gone, never promotes one, and does not
    /// count those transactions as acknowledged writes a candidate lacks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errant: BTreeMap<u32, crate::gtid::GtidSet>,
    /// A failover a person asked for (`switchyard failover --to N`), until it
    /// is promoted or refused: the decision takes it as the policy's
    /// `forced_to` (and `accept_data_loss` when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_request: Option<FailoverRequest>,
    /// How many failovers were promoted on this record (the
    /// `failovers_total` metric).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failovers: u64,
    /// The writable primary's executed GTIDs as last recorded (refreshed
    /// whenever the record is stored for another reason): a primary that
    /// comes back without them lost its data, and is never made writable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_position: Option<PrimaryPosition>,
    /// The most recent actions, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub history: Vec<Entry>,
}

impl Record {
    /// Appends a history entry, dropping the oldest past [`HISTORY_LIMIT`].
    pub fn log(&mut self, at: Timestamp, action: impl Into<String>, error: Option<String>) {
        self.history.push(Entry {
            at,
            action: action.into(),
            error,
        });
        if self.history.len() > HISTORY_LIMIT {
            let excess = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..excess);
        }
    }

    /// Notes that the engine waits for `reason`, keeping the start of an
    /// ongoing wait for the same reason.
    pub fn note_wait(&mut self, reason: &WaitReason, now: Timestamp) {
        let key = reason.key();
        if self.waiting.as_ref().is_none_or(|w| w.key != key) {
            self.waiting = Some(Waiting { key, since: now });
        }
    }

    /// Notes that the action with `key` failed with `message` under `target`.
    pub fn note_failure(&mut self, target: String, key: String, message: String, now: Timestamp) {
        match &mut self.failure {
            Some(f) if f.key == key && f.target == target => {
                f.last = now;
                f.count += 1;
                f.message = message;
            }
            _ => {
                self.failure = Some(Failure {
                    target,
                    key,
                    first: now,
                    last: now,
                    count: 1,
                    message,
                })
            }
        }
    }

    /// Forgets a failure of the action with `key` once it succeeded.
    pub fn clear_failure(&mut self, key: &str) {
        if self.failure.as_ref().is_some_and(|f| f.key == key) {
            self.failure = None;
        }
    }
}
