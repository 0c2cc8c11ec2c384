//! The decision: from what is observed and what was recorded, the next safe step.
//!
//! [`decide`] is a pure function. The rules, in the order they apply:
//!
//! 1. A switchover the record shows unfinished comes first, before any halt:
//!    promoted, its replicas are repointed; not promoted yet, before its
//!    deadline it resumes (the engine fences the
//!    old primary again, waits for the candidate to execute the old primary's
//!    position read afresh and checks it for errant transactions before
//!    promoting); after its deadline it is undone ([`Action::Unfence`]: when
//!    the promotion may have been issued, the engine first makes the candidate
//!    read-only again). A halted
//!    cluster therefore always has a writable primary unless that primary is
//!    down, or the candidate of a promotion may be writable and cannot be
//!    reached (two writable primaries are worse than none).
//!    The old primary of a promoted switchover whose fence no longer holds
//!    (its lock died with the engine that held it) is fenced again next.
//! 2. An inconsistent topology halts (two primaries, duplicate ordinals...),
//!    and so does state that contradicts the record: two writable instances, a
//!    writable instance that is not the recorded primary (a replica promoted by
//!    hand).
//! 3. The primary's service comes back, halted or not: a crashed primary is
//!    recovered on its current version (every replica waits on it); one that
//!    is up but read-only (it restarted, or an undo left it so) is made
//!    writable, unless it lacks transactions the record saw it execute: its
//!    data came back empty or older, and it halts instead.
//! 4. A halted rollout stays halted until its target changes.
//! 5. An intent in the record is finished before anything new starts: a
//!    drained instance is restarted, a restarted one is repointed and returned
//!    to the pool, a promoted switchover repoints the replicas and brings the
//!    old primary back as a replica once it runs the target revision; an
//!    instance that holds transactions the primary lacks halts instead of
//!    being repointed.
//! 6. Nothing starts that the version rules forbid: every instance's in-place
//!    change to the target, and the target against the highest version the
//!    cluster ever ran, are checked against the release catalog first; so is
//!    the order: replicas go first and replicate from the primary until its
//!    switchover, so a target the primary's version may not replicate to (a
//!    downgrade within a series) has no safe order and halts.
//! 7. A replica out of rotation with no intent on it (not replicating from the
//!    primary, or fenced, after a switchover that was undone or while it was
//!    down) is brought back: repointed (if it may replicate from the
//!    primary's version and holds nothing the primary lacks) and returned to
//!    the read pool.
//! 8. A crashed instance is recovered on its current version before anything
//!    else (MariaDB refuses an upgrade after a crash).
//! 9. Nothing starts while any instance is unhealthy or lags beyond the
//!    policy's bound; a wait longer than `halt_after` halts.
//! 10. With a canary bake in the policy, once the first instance completes the
//!     target nothing else changes until it has served on it, healthy, for the
//!     whole bake (see `canary.rs`).
//! 11. Replicas go first, highest ordinal first, one at a time: drain, restart
//!     (slow shutdown when the version changes), return to the pool. When
//!     nothing is left, the rollout is done, unless a replica holds
//!     transactions the primary lacks: that halts, naming them.
//! 12. The primary goes last, through a switchover to a healthy replica whose
//!     version is no newer than any other instance's except the old primary's,
//!     without errant transactions, lowest ordinal first. The switchover
//!     starts only once that candidate lags at most
//!     [`SWITCHOVER_CANDIDATE_MAX_LAG_SECONDS`] (it is waited for, not passed
//!     over): the primary is never fenced while the candidate still has
//!     seconds of writes to apply, which would stall writes as long. In
//!     supervised mode it waits for an approval bound to (revision, from, to).
//!     The old primary stays fenced and out of replication until it runs the
//!     target revision.
//!
//! A Galera cluster follows rules 1, 2 (the topology) and 4, then its own
//! (see `galera.rs`): nothing starts that MariaDB's Galera rolling-upgrade
//! rules forbid; a new revision (restart) or a schema change (Rolling Schema
//! Upgrade) node by node, dynamic variables online, one node out at a time,
//! never while another is a donor, joining or missing, never when the others
//! would lose quorum; a node lost during its ALTER halts the rollout before
//! any other node, one crashed in its restart is started again.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mutation::Mutation;
use crate::record::Record;
use crate::topology::{Observed, Revision, Timestamp};
use crate::versions::Version;

mod canary;
mod failover;
mod galera;
mod rules;
pub use canary::note_canary;
pub(crate) use failover::answers;
pub use failover::{FailoverChoice, failover_choice, forced_failover};
mod switchover;

/// What the cluster should converge to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The target revision.
    pub revision: Revision,
    /// The server version of the target revision.
    pub version: Version,
    /// Set when instances at an earlier revision reach the target by setting
    /// variables online, without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineChange>,
    /// A schema change every instance must have, rolled node by node once
    /// every instance runs the target revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaTarget>,
}

impl Target {
    /// A target revision with no online change and no schema change.
    pub fn new(revision: Revision, version: Version) -> Self {
        Target {
            revision,
            version,
            online: None,
            schema: None,
        }
    }
    /// Identifies what this target asks for: its revision's hash and its
    /// schema change. Failures and halts recorded under one target do not
    /// carry over to another.
    pub fn key(&self) -> String {
        match &self.schema {
            Some(change) => format!("{}+{}", self.revision.hash, change.id),
            None => self.revision.hash.clone(),
        }
    }
}

/// A schema change rolled node by node (binary log off on replicas, RSU on Galera).
///
/// The change was judged compatible with row-based replication before it
/// became a target; the decision only orders it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaTarget {
    /// A stable identifier of the change; an instance reports the last one it has.
    pub id: String,
    /// The `ALTER TABLE` statement.
    pub statement: String,
    /// Replica type-conversion settings the change needs while replicas run
    /// the new shape and the source the old (variable, value).
    #[serde(default)]
    pub replica_settings: Vec<(String, String)>,
    /// Whether the primary can take the change in place (INSTANT, or INPLACE
    /// with LOCK=NONE); otherwise it moves behind a switchover first.
    pub primary_online: bool,
}

/// A change that brings an instance from one revision to the target online.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineChange {
    /// The hash of the revision this change applies to.
    pub from_hash: String,
    /// The variables to set, in order.
    pub variables: Vec<(String, String)>,
}

/// How the rollout proceeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Strategy {
    /// Every step, including the primary's switchover, runs on its own.
    #[default]
    Automatic,
    /// Replicas roll on their own; the primary's switchover waits for an approval.
    Supervised,
    /// No new step starts (an in-flight switchover still finishes or is undone).
    Paused,
}

/// A person's approval of one primary switchover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The target revision number it approves.
    pub revision: u64,
    /// The primary it approves moving from.
    pub from: u32,
    /// The candidate it approves moving to.
    pub to: u32,
}

/// The largest replication lag, in seconds, a switchover candidate may have
/// when the primary is fenced. Writes stall from the fence until the
/// candidate has applied everything, so a candidate that has just come back
/// from its restart (and lags within [`Policy::max_lag_seconds`]) is waited
/// for until it is this close, rather than fenced behind. The bound applies
/// only to starting a switchover; an instance lagging within the policy's
/// bound is still healthy for everything else.
pub const SWITCHOVER_CANDIDATE_MAX_LAG_SECONDS: u64 = 1;

/// The rollout policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Automatic, supervised or paused.
    pub strategy: Strategy,
    /// A replica lagging more than this is unhealthy.
    pub max_lag_seconds: u64,
    /// A wait or a repeatedly failing step longer than this halts the rollout.
    pub halt_after: Duration,
    /// A switchover not promoted by then is undone.
    pub switchover_deadline: Duration,
    /// How long a drained replica stays out of the read pool before its restart.
    pub drain: Duration,
    /// How long to wait before retrying a failed step.
    pub retry_backoff: Duration,
    /// The approval given for a supervised switchover, if any.
    pub approval: Option<Approval>,
    /// When and how the primary is replaced if it fails.
    pub failover: FailoverPolicy,
    /// The canary within the cluster: after the first instance completes the
    /// target, nothing else changes until it has served on it, healthy, for
    /// this long without a break (see [`note_canary`]). `None`: no canary.
    pub canary_bake: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            strategy: Strategy::Automatic,
            max_lag_seconds: 10,
            halt_after: Duration::from_secs(600),
            switchover_deadline: Duration::from_secs(10),
            drain: Duration::from_secs(0),
            retry_backoff: Duration::from_secs(5),
            approval: None,
            failover: FailoverPolicy::default(),
            canary_bake: None,
        }
    }
}

/// When and how a failed primary is replaced.
///
/// A primary has failed when the runtime has not reached it for
/// `detect_after` and every replica that answers corroborates it (their
/// receivers lost it too): a primary only the operator cannot reach (a split
/// between the operator and the databases) is not failed over, and one that
/// comes back within `detect_after` is not either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverPolicy {
    /// Whether the engine fails over on its own.
    pub automatic: bool,
    /// How long the primary must have failed every check.
    pub detect_after: Duration,
    /// Fail over even when no acknowledged write can be proven kept (an
    /// asynchronous primary, or too few of the replicas that could have
    /// acknowledged answer): the failover then says it is not lossless. For
    /// clusters that chose asynchronous replication, or a person's forced
    /// failover (`--accept-data-loss`).
    pub accept_data_loss: bool,
    /// A failover a person asked for: to this instance, whatever the
    /// detection says, as soon as the primary does not answer.
    pub forced_to: Option<u32>,
}

impl Default for FailoverPolicy {
    /// Automatic, after 3 s (counted from when the first failed check began),
    /// lossless only. `cargo xtask bench failover` (docs/benchmarks.md): a
    /// MySQL primary killed with `kill -9` is back within 2.1 s, so a 3 s
    /// window restarts a crashed primary instead of failing it over, where 2 s
    /// would race the restart.
    fn default() -> Self {
        FailoverPolicy {
            automatic: true,
            detect_after: Duration::from_secs(3),
            accept_data_loss: false,
            forced_to: None,
        }
    }
}

/// The next step. New variants may be added: match with a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Do nothing now; observe again later.
    Wait {
        /// Why.
        reason: WaitReason,
    },
    /// Take an instance out of the read pool.
    Drain {
        /// The instance.
        ordinal: u32,
    },
    /// Return an instance to the read pool; the intent on it is complete.
    Undrain {
        /// The instance.
        ordinal: u32,
    },
    /// Shut an instance down and start it on `revision`.
    Restart {
        /// The instance.
        ordinal: u32,
        /// The revision to start it on.
        revision: Revision,
        /// The server version of that revision.
        version: Version,
        /// Shut down slowly (`innodb_fast_shutdown=0`): required before a version change.
        slow_shutdown: bool,
    },
    /// Start a crashed instance again on its current revision so it finishes crash recovery.
    Recover {
        /// The instance.
        ordinal: u32,
    },
    /// Move the primary role (or resume a recorded switchover).
    Switchover {
        /// The current primary.
        from: u32,
        /// The candidate.
        to: u32,
    },
    /// Fence the old primary of a promoted switchover again: its fence no
    /// longer holds (a lock dies with the connection that held it) while it
    /// waits to rejoin as a replica.
    Fence {
        /// The old primary.
        ordinal: u32,
    },
    /// Make the recorded primary writable again: the undo of a switchover that
    /// did not promote by its deadline (the engine first makes a candidate
    /// whose promotion may have been issued read-only again), or a primary that
    /// started read-only and holds everything its replicas hold.
    Unfence {
        /// The primary, writable afterwards.
        ordinal: u32,
    },
    /// Replace the failed primary (or resume a recorded failover).
    Failover {
        /// The failed primary.
        from: u32,
        /// The candidate: the replica that received the most.
        to: u32,
    },
    /// Stop the receiver of a replica still connected to a primary that was
    /// failed over (it did not answer during the failover): nothing more
    /// reaches it from there, and it acknowledges nothing for it.
    Detach {
        /// The replica.
        ordinal: u32,
        /// The failed primary it follows.
        from: u32,
    },
    /// Keep an instance out of replication and service: it holds transactions
    /// the primary lacks (a failed primary's unacknowledged writes).
    Quarantine {
        /// The instance.
        ordinal: u32,
        /// What it holds that the primary lacks, as GTIDs.
        extra: String,
    },
    /// Make an instance replicate from `source` (GTID auto-position).
    Repoint {
        /// The replica.
        ordinal: u32,
        /// Its new source.
        source: u32,
    },
    /// Set variables online on one instance, bringing it to `revision`.
    ApplyVariables {
        /// The instance.
        ordinal: u32,
        /// The revision the instance runs afterwards.
        revision: Revision,
        /// The variables, in order.
        variables: Vec<(String, String)>,
    },
    /// Run a schema change on one instance, locally (binary log off / RSU).
    RunDdl {
        /// The instance.
        ordinal: u32,
        /// The change.
        change: SchemaTarget,
    },
    /// Every instance runs the target revision.
    Done,
    /// Stop; a person must act.
    Halt {
        /// Why.
        reason: HaltReason,
    },
}

impl Action {
    /// A stable key identifying the step (used to count its failures).
    pub fn key(&self) -> String {
        match self {
            Action::Wait { reason } => format!("wait:{}", reason.key()),
            Action::Drain { ordinal } => format!("drain:{ordinal}"),
            Action::Undrain { ordinal } => format!("undrain:{ordinal}"),
            Action::Restart { ordinal, .. } => format!("restart:{ordinal}"),
            Action::Recover { ordinal } => format!("recover:{ordinal}"),
            Action::Switchover { from, to } => format!("switchover:{from}->{to}"),
            Action::Failover { from, to } => format!("failover:{from}->{to}"),
            Action::Detach { ordinal, .. } => format!("detach:{ordinal}"),
            Action::Quarantine { ordinal, .. } => format!("quarantine:{ordinal}"),
            Action::Fence { ordinal } => format!("fence:{ordinal}"),
            Action::Unfence { ordinal } => format!("unfence:{ordinal}"),
            Action::Repoint { ordinal, source } => format!("repoint:{ordinal}->{source}"),
            Action::ApplyVariables { ordinal, .. } => format!("apply-variables:{ordinal}"),
            Action::RunDdl { ordinal, .. } => format!("run-ddl:{ordinal}"),
            Action::Done => "done".into(),
            Action::Halt { .. } => "halt".into(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Wait { reason } => write!(f, "wait: {reason}"),
            Action::Drain { ordinal } => write!(f, "drain instance {ordinal} from the read pool"),
            Action::Undrain { ordinal } => write!(f, "return instance {ordinal} to service"),
            Action::Restart {
                ordinal,
                revision,
                version,
                slow_shutdown,
            } => write!(
                f,
                "restart instance {ordinal} on {version} {revision}{}",
                if *slow_shutdown {
                    " after a slow shutdown"
                } else {
                    ""
                }
            ),
            Action::Recover { ordinal } => {
                write!(
                    f,
                    "recover crashed instance {ordinal} on its current version"
                )
            }
            Action::Switchover { from, to } => write!(f, "switch the primary from {from} to {to}"),
            Action::Failover { from, to } => {
                write!(f, "fail over from the failed primary {from} to {to}")
            }
            Action::Detach { ordinal, from } => write!(
                f,
                "stop instance {ordinal} receiving from {from}, a primary that was failed over"
            ),
            Action::Quarantine { ordinal, extra } => write!(
                f,
                "quarantine instance {ordinal}: it holds transactions the primary lacks ({extra})"
            ),
            Action::Fence { ordinal } => {
                write!(
                    f,
                    "fence the old primary {ordinal} again (its fence no longer held)"
                )
            }
            Action::Unfence { ordinal } => {
                write!(f, "make instance {ordinal} the writable primary again")
            }
            Action::Repoint { ordinal, source } => {
                write!(f, "make instance {ordinal} replicate from {source}")
            }
            Action::ApplyVariables {
                ordinal, variables, ..
            } => {
                let names: Vec<&str> = variables.iter().map(|(k, _)| k.as_str()).collect();
                write!(f, "set {} online on instance {ordinal}", names.join(", "))
            }
            Action::RunDdl { ordinal, change } => {
                write!(f, "run `{}` on instance {ordinal}", change.statement)
            }
            Action::Done => write!(f, "done: every instance runs the target revision"),
            Action::Halt { reason } => write!(f, "halt: {reason}"),
        }
    }
}

/// Why the engine waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "wait", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WaitReason {
    /// The policy says paused.
    Paused,
    /// A supervised switchover needs an approval naming (revision, from, to).
    AwaitingApproval {
        /// The target revision number.
        revision: u64,
        /// The primary.
        from: u32,
        /// The candidate.
        to: u32,
    },
    /// An instance other than the one being changed is not healthy.
    Unhealthy {
        /// The instance.
        ordinal: u32,
        /// Its health, in words.
        health: String,
    },
    /// A replica lags beyond the policy's bound.
    Lagging {
        /// The instance.
        ordinal: u32,
        /// Its lag.
        seconds: u64,
        /// The bound.
        max: u64,
    },
    /// A drained instance waits for clients to leave before its restart.
    DrainGrace {
        /// The instance.
        ordinal: u32,
        /// When the restart may begin.
        until: Timestamp,
    },
    /// The canary serves the target for its bake before anything else changes.
    CanaryBake {
        /// The canary.
        ordinal: u32,
        /// When the bake passes if it stays healthy.
        until: Timestamp,
    },
    /// An instance is starting.
    Starting {
        /// The instance.
        ordinal: u32,
    },
    /// No replica may become primary now.
    NoCandidate {
        /// Why each replica was passed over.
        detail: String,
    },
    /// The primary fails its checks, and no failover starts yet: the window
    /// has not passed, the replicas do not corroborate, or no candidate is
    /// provably lossless.
    PrimaryFailing {
        /// The primary.
        ordinal: u32,
        /// Since when it fails.
        since: Timestamp,
        /// Why no failover starts now.
        detail: String,
    },
    /// The primary waits for more replicas to acknowledge each commit than
    /// follow it (the others are quarantined or gone, after a failover):
    /// its writes block until a person re-provisions one, or lowers the
    /// wait. Reported instead of done, never fallen back from in silence.
    TooFewReplicas {
        /// The primary.
        primary: u32,
        /// How many replicas it waits for.
        waits_for: u32,
        /// How many follow it.
        followers: u32,
    },
    /// A step failed; it is retried after a pause.
    Backoff {
        /// The failed step's key.
        step: String,
        /// When it may be retried.
        until: Timestamp,
    },
}

impl WaitReason {
    /// A stable key: two waits with the same key are the same wait.
    pub fn key(&self) -> String {
        match self {
            WaitReason::Paused => "paused".into(),
            WaitReason::AwaitingApproval { revision, from, to } => {
                format!("approval:{revision}:{from}->{to}")
            }
            WaitReason::Unhealthy { ordinal, .. } => format!("unhealthy:{ordinal}"),
            WaitReason::Lagging { ordinal, .. } => format!("lagging:{ordinal}"),
            WaitReason::DrainGrace { ordinal, .. } => format!("drain-grace:{ordinal}"),
            WaitReason::CanaryBake { ordinal, .. } => format!("canary-bake:{ordinal}"),
            WaitReason::Starting { ordinal } => format!("starting:{ordinal}"),
            WaitReason::NoCandidate { .. } => "no-candidate".into(),
            WaitReason::PrimaryFailing { ordinal, .. } => format!("primary-failing:{ordinal}"),
            WaitReason::TooFewReplicas { primary, .. } => format!("too-few-replicas:{primary}"),
            WaitReason::Backoff { step, .. } => format!("backoff:{step}"),
        }
    }

    /// Whether a long wait for this reason halts the rollout. Waiting for a
    /// person (pause, approval) never does.
    pub fn can_halt(&self) -> bool {
        !matches!(
            self,
            WaitReason::Paused
                | WaitReason::AwaitingApproval { .. }
                | WaitReason::DrainGrace { .. }
                | WaitReason::CanaryBake { .. }
                | WaitReason::Backoff { .. }
                | WaitReason::PrimaryFailing { .. }
                | WaitReason::TooFewReplicas { .. }
        )
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Paused => write!(f, "the rollout is paused"),
            WaitReason::AwaitingApproval { revision, from, to } => write!(
                f,
                "the switchover from {from} to {to} for revision {revision} awaits approval \
                 (switchyard approve CLUSTER)"
            ),
            WaitReason::Unhealthy { ordinal, health } => {
                write!(f, "instance {ordinal} is {health}")
            }
            WaitReason::Lagging {
                ordinal,
                seconds,
                max,
            } => {
                write!(f, "instance {ordinal} lags {seconds}s (bound {max}s)")
            }
            WaitReason::DrainGrace { ordinal, until } => {
                write!(f, "instance {ordinal} drains until {until}")
            }
            WaitReason::CanaryBake { ordinal, until } => write!(
                f,
                "canary instance {ordinal} bakes on the target until {until} (longer if it is \
                 unhealthy meanwhile)"
            ),
            WaitReason::Starting { ordinal } => write!(f, "instance {ordinal} is starting"),
            WaitReason::NoCandidate { detail } => write!(f, "no replica can take over: {detail}"),
            WaitReason::PrimaryFailing {
                ordinal,
                since,
                detail,
            } => write!(
                f,
                "the primary {ordinal} fails its checks since {since}; no failover yet: {detail}"
            ),
            WaitReason::TooFewReplicas {
                primary,
                waits_for,
                followers,
            } => write!(
                f,
                "the primary {primary} waits for {waits_for} replicas to acknowledge each commit \
                 and {followers} follow it: its writes block until a replica is re-provisioned \
                 or the wait is lowered"
            ),
            WaitReason::Backoff { step, until } => write!(f, "{step} failed; retrying at {until}"),
        }
    }
}

/// Why the rollout halted. A halted rollout needs a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "halt", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HaltReason {
    /// The version rules forbid changing an instance in place to the target.
    ForbiddenTransition {
        /// The instance.
        ordinal: u32,
        /// Its version.
        from: Version,
        /// The target version.
        to: Version,
        /// The rule's explanation.
        reason: String,
        /// The manual section the rule encodes.
        manual: String,
    },
    /// The target is older than a version the cluster already ran, in a way
    /// the rules forbid.
    BelowHighestVersion {
        /// The highest version ever run.
        highest: Version,
        /// The target version.
        to: Version,
        /// The rule's explanation.
        reason: String,
    },
    /// A version switchyard's release catalog does not know.
    UnknownVersion {
        /// The catalog's message.
        message: String,
    },
    /// The observed topology is inconsistent.
    InvalidTopology {
        /// What is wrong.
        message: String,
    },
    /// A wait lasted longer than the policy's `halt_after`.
    WaitedTooLong {
        /// What the engine waited for.
        reason: WaitReason,
        /// Since when.
        since: Timestamp,
    },
    /// A step kept failing for longer than `halt_after`.
    KeepsFailing {
        /// The step.
        step: String,
        /// How many times it failed.
        count: u32,
        /// The last error.
        message: String,
    },
    /// A replica runs an older version than the primary, so it cannot
    /// replicate from it.
    ReplicaOlderThanPrimary {
        /// The replica.
        ordinal: u32,
        /// Its version.
        version: Version,
        /// The primary.
        primary: u32,
        /// The primary's version.
        primary_version: Version,
    },
    /// No rolling order keeps every replica at least as new as its source:
    /// replicas go first and replicate from the primary, whose version may not
    /// replicate to the target (a downgrade within a series, say).
    NoSafeOrder {
        /// The primary.
        primary: u32,
        /// Its version.
        primary_version: Version,
        /// The target version.
        to: Version,
        /// The replication rule's explanation.
        reason: String,
    },
    /// What the servers report contradicts the record: two writable instances,
    /// a writable instance that is not the recorded primary.
    ContradictsRecord {
        /// What was seen.
        message: String,
    },
    /// An instance holds transactions the primary lacks (written on it
    /// directly, or the primary's data came back empty or older): it is neither
    /// repointed nor made writable, since either would lose or hide them.
    ErrantTransactions {
        /// The instance holding them.
        ordinal: u32,
        /// The primary.
        primary: u32,
        /// The transactions, as GTIDs.
        errant: String,
        /// Other instances that hold transactions the primary lacks, with
        /// those transactions: every one is named, not only the first.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        also: BTreeMap<u32, String>,
    },
    /// A Galera node left the cluster (or its ALTER failed) while its schema
    /// change was recorded: the rollout stops before any other node.
    GaleraNodeLost {
        /// The node.
        ordinal: u32,
        /// What happened, in words.
        detail: String,
    },
    /// Taking a Galera node out would leave the cluster without quorum: no
    /// more than half of its nodes would stay synced.
    GaleraNoQuorum {
        /// The node that would be taken out.
        ordinal: u32,
        /// How many nodes the cluster has.
        nodes: u32,
        /// How many would stay synced without it.
        staying: u32,
    },
    /// The topology kind is not supported by this decision yet.
    Unsupported {
        /// What is not supported.
        message: String,
    },
}

impl HaltReason {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            HaltReason::ForbiddenTransition { .. } => "forbidden-transition",
            HaltReason::BelowHighestVersion { .. } => "below-highest-version",
            HaltReason::UnknownVersion { .. } => "unknown-version",
            HaltReason::InvalidTopology { .. } => "invalid-topology",
            HaltReason::WaitedTooLong { .. } => "waited-too-long",
            HaltReason::KeepsFailing { .. } => "keeps-failing",
            HaltReason::ReplicaOlderThanPrimary { .. } => "replica-older-than-primary",
            HaltReason::NoSafeOrder { .. } => "no-safe-order",
            HaltReason::ContradictsRecord { .. } => "contradicts-record",
            HaltReason::ErrantTransactions { .. } => "errant-transactions",
            HaltReason::GaleraNodeLost { .. } => "galera-node-lost",
            HaltReason::GaleraNoQuorum { .. } => "galera-no-quorum",
            HaltReason::Unsupported { .. } => "unsupported",
        }
    }
}

impl fmt::Display for HaltReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltReason::ForbiddenTransition {
                ordinal,
                from,
                to,
                reason,
                manual,
            } => write!(
                f,
                "instance {ordinal} cannot change from {from} to {to} in place: {reason} ({manual})"
            ),
            HaltReason::BelowHighestVersion {
                highest,
                to,
                reason,
            } => write!(
                f,
                "the cluster has run {highest}; {to} would be a forbidden downgrade: {reason}"
            ),
            HaltReason::UnknownVersion { message } => write!(f, "{message}"),
            HaltReason::InvalidTopology { message } => {
                write!(f, "inconsistent topology: {message}")
            }
            HaltReason::WaitedTooLong { reason, since } => {
                write!(f, "waited since {since} for: {reason}")
            }
            HaltReason::KeepsFailing {
                step,
                count,
                message,
            } => {
                write!(f, "{step} failed {count} times; last error: {message}")
            }
            HaltReason::ReplicaOlderThanPrimary {
                ordinal,
                version,
                primary,
                primary_version,
            } => write!(
                f,
                "instance {ordinal} runs {version}, older than the primary {primary} ({primary_version}): \
                 it must not replicate from a newer source; restore it from the primary or upgrade it offline"
            ),
            HaltReason::NoSafeOrder {
                primary,
                primary_version,
                to,
                reason,
            } => write!(
                f,
                "no rolling order reaches {to}: replicas go first and replicate from the primary \
                 {primary} ({primary_version}), but {reason}; change the version offline \
                 (a logical dump and reload) or choose a target the primary may replicate to"
            ),
            HaltReason::ContradictsRecord { message } => {
                write!(f, "the servers contradict the record: {message}")
            }
            HaltReason::ErrantTransactions {
                ordinal,
                primary,
                errant,
                also,
            } => {
                write!(
                    f,
                    "instance {ordinal} holds transactions the primary {primary} lacks \
                     ({errant}): it is not repointed or made writable, which would lose or hide \
                     them; compare the two, keep what must be kept, then re-provision instance \
                     {ordinal}"
                )?;
                for (other, extra) in also {
                    write!(
                        f,
                        "; instance {other} also holds transactions the primary lacks ({extra}): \
                         the same for it"
                    )?;
                }
                Ok(())
            }
            HaltReason::GaleraNodeLost { ordinal, detail } => write!(
                f,
                "Galera node {ordinal} was lost during its schema change ({detail}): the \
                 rollout stops before any other node; look at the node's error log, bring it \
                 back Synced (a state transfer from another node) and compare its table with \
                 the others' before resuming"
            ),
            HaltReason::GaleraNoQuorum {
                ordinal,
                nodes,
                staying,
            } => write!(
                f,
                "taking Galera node {ordinal} out would leave {staying} of {nodes} nodes synced, \
                 no majority: the cluster would lose quorum if anything else failed; add a node \
                 (or an arbitrator) first"
            ),
            HaltReason::Unsupported { message } => write!(f, "{message}"),
        }
    }
}

/// Decides the next safe step. Pure: the same inputs give the same action.
pub fn decide(
    observed: &Observed,
    record: &Record,
    target: &Target,
    policy: &Policy,
    now: Timestamp,
) -> Action {
    decide_with(Mutation::None, observed, record, target, policy, now)
}

/// [`decide`] with one rule broken on purpose (tests only; see [`crate::mutation`]).
#[cfg(feature = "mutations")]
pub fn decide_mutated(
    mutation: Mutation,
    observed: &Observed,
    record: &Record,
    target: &Target,
    policy: &Policy,
    now: Timestamp,
) -> Action {
    decide_with(mutation, observed, record, target, policy, now)
}

pub(crate) fn decide_with(
    mutation: Mutation,
    observed: &Observed,
    record: &Record,
    target: &Target,
    policy: &Policy,
    now: Timestamp,
) -> Action {
    rules::Decider {
        observed,
        record,
        target,
        policy,
        now,
        mutation,
    }
    .decide()
}
