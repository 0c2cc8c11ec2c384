//! The decision: from what is observed and what was recorded, the next safe step.
//!
//! [`decide`] is a pure function. The rules, in the order they apply:
//!
//! 1. A halted rollout stays halted until its target changes.
//! 2. An inconsistent topology halts (two primaries, duplicate ordinals...).
//! 3. An intent in the record is finished or undone before anything new
//!    starts: a drained instance is restarted, a restarted one is repointed
//!    and returned to the pool, a switchover resumes from its recorded
//!    sub-step before its deadline and is undone (fence lifted) after it.
//! 4. Nothing starts that the version rules forbid: every instance's in-place
//!    change to the target, and the target against the highest version the
//!    cluster ever ran, are checked against the release catalog first.
//! 5. A crashed instance is recovered on its current version before anything
//!    else (MariaDB refuses an upgrade after a crash).
//! 6. Nothing starts while any instance is unhealthy or lags beyond the
//!    policy's bound; a wait longer than `halt_after` halts.
//! 7. Replicas go first, highest ordinal first, one at a time: drain, restart
//!    (slow shutdown when the version changes), return to the pool.
//! 8. The primary goes last, through a switchover to a healthy replica whose
//!    version is no newer than any other instance's except the old primary's,
//!    lowest ordinal first. The switchover starts only once that candidate
//!    lags at most [`SWITCHOVER_CANDIDATE_MAX_LAG_SECONDS`] (it is waited
//!    for, not passed over): the primary is never fenced while the candidate
//!    still has seconds of writes to apply, which would stall writes as long. In supervised mode it waits for an approval
//!    bound to (revision, from, to). The old primary stays fenced and out of
//!    replication until it runs the target revision.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::{Intent, Record, SwitchoverStep};
use crate::topology::{Health, Instance, Observed, Revision, Role, Timestamp, TopologyKind};
use crate::versions::{Version, catalog};

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
    /// Lift the fence of a switchover that did not promote by its deadline.
    Unfence {
        /// The old primary, writable again afterwards.
        ordinal: u32,
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
            Action::Unfence { ordinal } => {
                write!(
                    f,
                    "lift the fence on instance {ordinal} (switchover missed its deadline)"
                )
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
            WaitReason::Starting { ordinal } => format!("starting:{ordinal}"),
            WaitReason::NoCandidate { .. } => "no-candidate".into(),
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
                | WaitReason::Backoff { .. }
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
            WaitReason::Starting { ordinal } => write!(f, "instance {ordinal} is starting"),
            WaitReason::NoCandidate { detail } => write!(f, "no replica can take over: {detail}"),
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
    Decider {
        observed,
        record,
        target,
        policy,
        now,
        mutation: Mutation::None,
    }
    .decide()
}

/// Deliberately broken variants of the rules, for tests that prove the
/// property tests catch a broken rule. Not part of the stable API.
#[doc(hidden)]
pub mod mutation {
    use super::*;

    /// A rule broken on purpose.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Mutation {
        /// The rules as written.
        None,
        /// Ignore unhealthy instances (MOCO's documented hole): proceed, and
        /// choose a candidate among the live instances only, newest first.
        PromoteNewestIgnoringDown,
        /// Restart the primary in place, without a switchover.
        PrimaryInPlace,
        /// Drain the next replica while another is still out of service.
        TwoAtOnce,
        /// Alter the primary in place even when the change needs a switchover.
        AlterPrimaryInPlace,
    }

    /// [`decide`] with one rule broken.
    pub fn decide_mutated(
        mutation: Mutation,
        observed: &Observed,
        record: &Record,
        target: &Target,
        policy: &Policy,
        now: Timestamp,
    ) -> Action {
        Decider {
            observed,
            record,
            target,
            policy,
            now,
            mutation,
        }
        .decide()
    }
}

use mutation::Mutation;

struct Decider<'a> {
    observed: &'a Observed,
    record: &'a Record,
    target: &'a Target,
    policy: &'a Policy,
    now: Timestamp,
    mutation: Mutation,
}

impl Decider<'_> {
    fn decide(&self) -> Action {
        if let Some(halted) = &self.record.halted
            && halted.revision_hash == self.target.key()
        {
            return Action::Halt {
                reason: halted.reason.clone(),
            };
        }
        if let Err(e) = self.observed.validate() {
            return Action::Halt {
                reason: HaltReason::InvalidTopology {
                    message: e.to_string(),
                },
            };
        }
        let galera = self.observed.kind == TopologyKind::Galera;
        if galera
            && self
                .observed
                .instances
                .iter()
                .any(|i| !i.runs(&self.target.revision))
        {
            return Action::Halt {
                reason: HaltReason::Unsupported {
                    message: "version and configuration rollouts on Galera are not supported yet; \
                              schema changes are"
                        .into(),
                },
            };
        }
        if let Some(action) = self.repeated_failure() {
            return action;
        }
        if let Some(intent) = &self.record.intent
            && (self.mutation != Mutation::TwoAtOnce || !matches!(intent, Intent::Drained { .. }))
        {
            return self.continue_intent(intent);
        }
        if let Some(halt) = self.forbidden_transition() {
            return halt;
        }
        if !galera && let Some(action) = self.stale_replica() {
            return action;
        }
        let mut pending: Vec<&Instance> = self
            .observed
            .by_ordinal()
            .into_iter()
            .filter(|i| !self.complete(i))
            .collect();
        let ignore_down = self.mutation == Mutation::PromoteNewestIgnoringDown;
        if ignore_down && pending.iter().any(|i| i.health.is_up()) {
            pending.retain(|i| i.health.is_up());
        } else if let Some(crashed) = self
            .observed
            .by_ordinal()
            .into_iter()
            .find(|i| i.health == Health::Crashed)
        {
            return Action::Recover {
                ordinal: crashed.ordinal,
            };
        }
        if pending.is_empty() {
            if let Some(drained) = self.observed.by_ordinal().into_iter().find(|i| i.drained) {
                return Action::Undrain {
                    ordinal: drained.ordinal,
                };
            }
            return Action::Done;
        }
        if self.policy.strategy == Strategy::Paused {
            return Action::Wait {
                reason: WaitReason::Paused,
            };
        }
        if !ignore_down && let Some(wait) = self.health_gate(None) {
            return self.wait(wait);
        }
        // Replicas (non-writer nodes on Galera) first, highest ordinal first.
        let next_replica = pending.iter().rev().find(|i| {
            i.role == Role::Replica && (self.mutation != Mutation::TwoAtOnce || !i.drained)
        });
        if let Some(replica) = next_replica {
            if let Some(online) = self.online_change_for(replica) {
                return online;
            }
            return Action::Drain {
                ordinal: replica.ordinal,
            };
        }
        // Only the primary (the writer node) is left.
        let Some(primary) = self.observed.primary() else {
            return Action::Done;
        };
        if let Some(online) = self.online_change_for(primary) {
            return online;
        }
        if self.mutation == Mutation::PrimaryInPlace {
            return self.restart(primary);
        }
        if primary.runs(&self.target.revision)
            && let Some(change) = &self.target.schema
            && (change.primary_online || self.mutation == Mutation::AlterPrimaryInPlace)
        {
            return Action::RunDdl {
                ordinal: primary.ordinal,
                change: change.clone(),
            };
        }
        let candidate = match self.candidate(primary) {
            Ok(c) => c,
            Err(detail) => return self.wait(WaitReason::NoCandidate { detail }),
        };
        if self.policy.strategy == Strategy::Supervised {
            let wanted = Approval {
                revision: self.target.revision.number,
                from: primary.ordinal,
                to: candidate.ordinal,
            };
            if self.policy.approval != Some(wanted) {
                return Action::Wait {
                    reason: WaitReason::AwaitingApproval {
                        revision: wanted.revision,
                        from: wanted.from,
                        to: wanted.to,
                    },
                };
            }
        }
        Action::Switchover {
            from: primary.ordinal,
            to: candidate.ordinal,
        }
    }

    /// Whether the target's schema change is still missing on `instance`.
    fn needs_schema(&self, instance: &Instance) -> bool {
        self.target
            .schema
            .as_ref()
            .is_some_and(|c| instance.schema.as_deref() != Some(c.id.as_str()))
    }

    /// Whether `instance` runs the target revision and has the target's schema change.
    fn complete(&self, instance: &Instance) -> bool {
        instance.runs(&self.target.revision) && !self.needs_schema(instance)
    }

    /// A live replica that does not replicate from the primary (it was down
    /// during a switchover) is repointed, if it may replicate from the
    /// primary's version; an older one halts the rollout.
    fn stale_replica(&self) -> Option<Action> {
        let primary = self.observed.primary()?;
        let stale = self.observed.by_ordinal().into_iter().find(|r| {
            r.role == Role::Replica
                && r.health.is_up()
                && r.source.is_some_and(|s| s != primary.ordinal)
        })?;
        let compatible = catalog()
            .check_replication(self.observed.flavor, primary.version, stale.version)
            .is_ok_and(|v| v.allowed);
        if compatible || self.mutation == Mutation::PromoteNewestIgnoringDown {
            Some(Action::Repoint {
                ordinal: stale.ordinal,
                source: primary.ordinal,
            })
        } else {
            Some(Action::Halt {
                reason: HaltReason::ReplicaOlderThanPrimary {
                    ordinal: stale.ordinal,
                    version: stale.version,
                    primary: primary.ordinal,
                    primary_version: primary.version,
                },
            })
        }
    }

    /// A step that keeps failing halts after `halt_after`, and is retried
    /// only after the backoff.
    fn repeated_failure(&self) -> Option<Action> {
        // A failure under another target (a rollback, a new revision) is history.
        let failure = self
            .record
            .failure
            .as_ref()
            .filter(|f| f.target == self.target.key())?;
        if self.now.since(failure.first) >= self.policy.halt_after {
            return Some(Action::Halt {
                reason: HaltReason::KeepsFailing {
                    step: failure.key.clone(),
                    count: failure.count,
                    message: failure.message.clone(),
                },
            });
        }
        let until = failure.last.after(self.policy.retry_backoff);
        // Undoing a switchover is never delayed: the cluster needs its writable primary back.
        let undo_pending = matches!(self.record.intent, Some(Intent::Switchover { step, deadline, .. })
            if step < SwitchoverStep::Promoted && self.now >= deadline);
        (self.now < until && !undo_pending).then(|| Action::Wait {
            reason: WaitReason::Backoff {
                step: failure.key.clone(),
                until,
            },
        })
    }

    /// Wraps a wait, halting once it has lasted longer than `halt_after`.
    fn wait(&self, reason: WaitReason) -> Action {
        if reason.can_halt()
            && let Some(w) = &self.record.waiting
            && w.key == reason.key()
            && self.now.since(w.since) >= self.policy.halt_after
        {
            return Action::Halt {
                reason: HaltReason::WaitedTooLong {
                    reason,
                    since: w.since,
                },
            };
        }
        Action::Wait { reason }
    }

    /// Every instance except `except` must be up, replicating without error,
    /// and within the lag bound.
    fn health_gate(&self, except: Option<u32>) -> Option<WaitReason> {
        for i in self.observed.by_ordinal() {
            if Some(i.ordinal) == except {
                continue;
            }
            match &i.health {
                Health::Ready => {}
                Health::Lagging { seconds } if *seconds <= self.policy.max_lag_seconds => {}
                Health::Lagging { seconds } => {
                    return Some(WaitReason::Lagging {
                        ordinal: i.ordinal,
                        seconds: *seconds,
                        max: self.policy.max_lag_seconds,
                    });
                }
                Health::Starting => return Some(WaitReason::Starting { ordinal: i.ordinal }),
                other => {
                    return Some(WaitReason::Unhealthy {
                        ordinal: i.ordinal,
                        health: other.to_string(),
                    });
                }
            }
            if self.observed.kind == TopologyKind::Async
                && i.role == Role::Replica
                && i.source.is_none()
                && i.ordinal != self.fenced_old_primary()
            {
                return Some(WaitReason::Unhealthy {
                    ordinal: i.ordinal,
                    health: "a replica that does not replicate".into(),
                });
            }
        }
        None
    }

    /// The old primary kept out of replication by the current switchover, if any.
    fn fenced_old_primary(&self) -> u32 {
        match &self.record.intent {
            Some(Intent::Switchover { from, .. }) => *from,
            _ => u32::MAX,
        }
    }

    /// Halts before touching anything when the version rules forbid the change.
    fn forbidden_transition(&self) -> Option<Action> {
        let flavor = self.observed.flavor;
        let to = self.target.version;
        let cat = catalog();
        for i in self.observed.by_ordinal() {
            if i.version == to {
                continue;
            }
            match cat.check_in_place(flavor, i.version, to) {
                Ok(v) if v.allowed => {}
                Ok(v) => {
                    return Some(Action::Halt {
                        reason: HaltReason::ForbiddenTransition {
                            ordinal: i.ordinal,
                            from: i.version,
                            to,
                            reason: v.reason,
                            manual: v.manual.to_string(),
                        },
                    });
                }
                Err(e) => {
                    return Some(Action::Halt {
                        reason: HaltReason::UnknownVersion {
                            message: e.to_string(),
                        },
                    });
                }
            }
        }
        let highest = self
            .record
            .highest_version
            .into_iter()
            .chain(self.observed.highest_version())
            .max()?;
        if highest > to {
            match cat.check_in_place(flavor, highest, to) {
                Ok(v) if v.allowed => {}
                Ok(v) => {
                    return Some(Action::Halt {
                        reason: HaltReason::BelowHighestVersion {
                            highest,
                            to,
                            reason: v.reason,
                        },
                    });
                }
                Err(e) => {
                    return Some(Action::Halt {
                        reason: HaltReason::UnknownVersion {
                            message: e.to_string(),
                        },
                    });
                }
            }
        }
        None
    }

    /// The online change for an instance, when the target allows one for its revision.
    fn online_change_for(&self, instance: &Instance) -> Option<Action> {
        let online = self.target.online.as_ref()?;
        (instance.revision.hash == online.from_hash && instance.version == self.target.version)
            .then(|| Action::ApplyVariables {
                ordinal: instance.ordinal,
                revision: self.target.revision.clone(),
                variables: online.variables.clone(),
            })
    }

    fn restart(&self, instance: &Instance) -> Action {
        Action::Restart {
            ordinal: instance.ordinal,
            revision: self.target.revision.clone(),
            version: self.target.version,
            slow_shutdown: instance.version != self.target.version,
        }
    }

    /// The replica that may take over from `primary`: healthy, without errant
    /// transactions, running a version no newer than any other instance's
    /// (the old primary aside), lowest ordinal first.
    fn candidate(&self, primary: &Instance) -> Result<&Instance, String> {
        let cat = catalog();
        let mut passed_over = Vec::new();
        let mut replicas: Vec<&Instance> = self
            .observed
            .by_ordinal()
            .into_iter()
            .filter(|i| i.ordinal != primary.ordinal)
            .collect();
        if self.mutation == Mutation::PromoteNewestIgnoringDown {
            replicas.retain(|i| i.health.is_up());
            replicas.sort_by_key(|i| std::cmp::Reverse((i.version, i.ordinal)));
            return replicas
                .first()
                .copied()
                .ok_or_else(|| "no live replica".to_string());
        }
        for r in replicas {
            let lag_ok = r
                .lag_seconds()
                .is_some_and(|lag| lag <= self.policy.max_lag_seconds);
            if !lag_ok {
                passed_over.push(format!("{} is {}", r.ordinal, r.health));
                continue;
            }
            let galera = self.observed.kind == TopologyKind::Galera;
            if !galera && r.source != Some(primary.ordinal) {
                passed_over.push(format!("{} does not replicate from the primary", r.ordinal));
                continue;
            }
            if self.needs_schema(r) {
                passed_over.push(format!("{} does not have the schema change yet", r.ordinal));
                continue;
            }
            if !galera
                && let (Some(rg), Some(pg)) = (&r.gtid, &primary.gtid)
                && let Ok(errant) = crate::gtid::errant(rg, pg)
                && !errant.is_empty()
            {
                passed_over.push(format!("{} has errant transactions {errant}", r.ordinal));
                continue;
            }
            // Every other instance (down ones included, by their last known
            // version) must be able to replicate from the candidate.
            let newer_than: Vec<String> = self
                .observed
                .instances
                .iter()
                .filter(|o| o.ordinal != r.ordinal && o.ordinal != primary.ordinal)
                .filter(|o| {
                    !cat.check_replication(self.observed.flavor, r.version, o.version)
                        .is_ok_and(|v| v.allowed)
                })
                .map(|o| format!("{} ({})", o.ordinal, o.version))
                .collect();
            if !newer_than.is_empty() {
                passed_over.push(format!(
                    "{} runs {}, newer than {}",
                    r.ordinal,
                    r.version,
                    newer_than.join(", ")
                ));
                continue;
            }
            // The chosen candidate is waited for, not passed over for
            // another, while it catches up: the choice stays the lowest
            // eligible ordinal whatever the lag of the moment.
            let bound = self
                .policy
                .max_lag_seconds
                .min(SWITCHOVER_CANDIDATE_MAX_LAG_SECONDS);
            if let Some(lag) = r.lag_seconds()
                && lag > bound
            {
                return Err(format!(
                    "candidate {} lags {lag}s; the primary is fenced only once it lags at most \
                     {bound}s",
                    r.ordinal
                ));
            }
            return Ok(r);
        }
        if passed_over.is_empty() {
            passed_over.push("the cluster has no replica".into());
        }
        Err(passed_over.join("; "))
    }

    fn continue_intent(&self, intent: &Intent) -> Action {
        match intent {
            Intent::Drained { ordinal, at } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                let restart = !i.runs(&self.target.revision);
                if restart && i.health == Health::Crashed {
                    return Action::Recover { ordinal: *ordinal };
                }
                let alter = !restart && self.needs_schema(i) && i.health.is_up();
                if !restart && !alter {
                    return self.rejoin(i);
                }
                let until = at.after(self.policy.drain);
                if self.now < until {
                    return Action::Wait {
                        reason: WaitReason::DrainGrace {
                            ordinal: *ordinal,
                            until,
                        },
                    };
                }
                match (&self.target.schema, restart) {
                    (Some(change), false) => Action::RunDdl {
                        ordinal: *ordinal,
                        change: change.clone(),
                    },
                    _ => self.restart(i),
                }
            }
            Intent::Restarting { ordinal, .. } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                if i.runs(&self.target.revision) {
                    return self.rejoin(i);
                }
                match i.health {
                    Health::Starting => self.wait(WaitReason::Starting { ordinal: *ordinal }),
                    // Crashed on its old revision before the restart: recover first.
                    Health::Crashed => Action::Recover { ordinal: *ordinal },
                    _ => self.restart(i),
                }
            }
            Intent::Altering { ordinal, .. } => match self.observed.instance(*ordinal) {
                Some(i) => self.rejoin(i),
                None => self.gone(*ordinal),
            },
            Intent::Switchover {
                from,
                to,
                step,
                deadline,
                ..
            } => self.continue_switchover(*from, *to, *step, *deadline),
        }
    }

    /// The instance an intent is on runs the target revision: give it the
    /// schema change, bring it back into replication from the primary, and
    /// return it to service once it has caught up.
    fn rejoin(&self, i: &Instance) -> Action {
        let ordinal = i.ordinal;
        match &i.health {
            Health::Starting => return self.wait(WaitReason::Starting { ordinal }),
            Health::Crashed => return Action::Recover { ordinal },
            Health::Stopped => return self.restart(i),
            h if h.is_up() => {}
            other => {
                return self.wait(WaitReason::Unhealthy {
                    ordinal,
                    health: other.to_string(),
                });
            }
        }
        if let Some(change) = &self.target.schema
            && self.needs_schema(i)
        {
            return Action::RunDdl {
                ordinal,
                change: change.clone(),
            };
        }
        if self.observed.kind == TopologyKind::Async
            && i.role == Role::Replica
            && let Some(primary) = self.observed.primary()
            && i.source != Some(primary.ordinal)
        {
            return Action::Repoint {
                ordinal,
                source: primary.ordinal,
            };
        }
        match &i.health {
            Health::Lagging { seconds } if *seconds > self.policy.max_lag_seconds => {
                self.wait(WaitReason::Lagging {
                    ordinal,
                    seconds: *seconds,
                    max: self.policy.max_lag_seconds,
                })
            }
            _ => Action::Undrain { ordinal },
        }
    }

    fn continue_switchover(
        &self,
        from: u32,
        to: u32,
        step: SwitchoverStep,
        deadline: Timestamp,
    ) -> Action {
        let (Some(old), Some(new)) = (self.observed.instance(from), self.observed.instance(to))
        else {
            return self.gone(if self.observed.instance(from).is_none() {
                from
            } else {
                to
            });
        };
        let promoted = step >= SwitchoverStep::Promoted || new.role == Role::Primary;
        if !promoted {
            return if self.now < deadline {
                Action::Switchover { from, to }
            } else {
                Action::Unfence { ordinal: from }
            };
        }
        if step < SwitchoverStep::Repointed {
            return Action::Switchover { from, to };
        }
        // Promoted and repointed: the old primary is out of service until it
        // runs the target revision, has the schema change, and replicates
        // from the new primary.
        if !old.runs(&self.target.revision) {
            return match old.health {
                Health::Crashed => Action::Recover { ordinal: from },
                Health::Starting => self.wait(WaitReason::Starting { ordinal: from }),
                _ => self.restart(old),
            };
        }
        self.rejoin(old)
    }

    fn gone(&self, ordinal: u32) -> Action {
        Action::Halt {
            reason: HaltReason::InvalidTopology {
                message: format!(
                    "instance {ordinal}, which the record names, is no longer in the cluster"
                ),
            },
        }
    }
}
