//! The engine: observe, decide, record the intent, act, record the outcome.
//!
//! The engine is generic over a [`ClusterRuntime`], which Kubernetes, local
//! server processes, tests and embedders implement. It keeps no state of its
//! own between steps: everything it needs to resume lives in the [`Record`],
//! which the runtime stores with compare-and-swap. A new engine over the same
//! runtime continues exactly where an old one was killed.

use std::fmt;

use async_trait::async_trait;

use std::time::Duration;

use crate::decide::{Action, HaltReason, Policy, SchemaTarget, Target, WaitReason, decide_with};
use crate::mutation::Mutation;
use crate::record::{Detection, Halted, Intent, PrimaryPosition, Record};
use crate::topology::{Observed, Revision, Timestamp};
use crate::versions::Version;

mod failover;
mod switchover;

/// Marks a person's failover request refused when the decision will not run
/// it: the primary answers (a failover replaces a primary that fails; a
/// switchover moves one that works), or the decision waits on the failing
/// primary with the request in force (the instance cannot take over, or no
/// proof that no acknowledged write is lost and the loss not accepted).
fn refuse_failover_request(record: &mut Record, action: &Action) {
    let failing_over = matches!(record.intent, Some(Intent::Failover { .. }));
    let primary_failing = record.detection.is_some();
    let Some(request) = record
        .failover_request
        .as_mut()
        .filter(|r| r.refused.is_none())
    else {
        return;
    };
    request.refused = match action {
        _ if failing_over => None,
        Action::Wait {
            reason: WaitReason::PrimaryFailing { detail, .. },
        } => Some(detail.clone()),
        _ if !primary_failing => Some(
            "the primary answers: a failover replaces a primary that fails (ask for a \
             switchover to move a working one)"
                .to_owned(),
        ),
        _ => None,
    };
}

/// What kind of failure a runtime reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeErrorKind {
    /// The record changed since it was loaded: another engine acted.
    Conflict,
    /// A failure that may pass (unreachable, timeout).
    Transient,
    /// The operation failed.
    Failed,
    /// The runtime does not implement the operation.
    Unsupported,
}

/// An error from a [`ClusterRuntime`] operation.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct RuntimeError {
    /// What kind of failure.
    pub kind: RuntimeErrorKind,
    /// The operation, in words ("restart instance 2").
    pub operation: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RuntimeError {
    /// A new error of `kind`.
    pub fn new(
        kind: RuntimeErrorKind,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        RuntimeError {
            kind,
            operation: operation.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The record was changed by someone else.
    pub fn conflict(operation: impl Into<String>) -> Self {
        RuntimeError::new(
            RuntimeErrorKind::Conflict,
            operation,
            "the record changed since it was loaded",
        )
    }
}

/// What the engine runs on: a cluster it can observe and change, and a
/// place to keep its record.
///
/// Every operation is idempotent: the engine may repeat one after it was
/// killed between doing it and recording that it was done. Operations that
/// take a `deadline` bound every statement they send by it.
#[async_trait]
pub trait ClusterRuntime: Send + Sync {
    /// The runtime's clock.
    fn now(&self) -> Timestamp;

    /// Observes the whole cluster. An instance that cannot be reached is
    /// reported with its health, not as an error.
    async fn observe(&self) -> Result<Observed, RuntimeError>;

    /// Loads the record (a default record when none was stored yet).
    async fn load_record(&self) -> Result<Record, RuntimeError>;

    /// Stores `record` if the stored record's `seq` is still `expected_seq`;
    /// `record.seq` is then `expected_seq + 1`. Otherwise fails with
    /// [`RuntimeErrorKind::Conflict`] and stores nothing.
    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError>;

    /// Confirms that this engine may go on changing the cluster until at
    /// least `until`: where several engines may run (an operator with leader
    /// election), that it still holds the leadership with that much time left.
    /// The engine calls it before every action that changes a server, and
    /// stops ([`EngineError::NotLeader`]) when it fails, so that a deposed
    /// engine never acts after its successor may have (see ARCHITECTURE.md,
    /// the lease rule). The default, for a runtime driven by one engine
    /// only, always confirms.
    async fn confirm_leadership(&self, until: Timestamp) -> Result<(), RuntimeError> {
        let _ = until;
        Ok(())
    }

    /// Takes an instance out of the read pool.
    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError>;

    /// Returns an instance to the read pool.
    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError>;

    /// Shuts an instance down (slowly when `slow_shutdown`), starts it on
    /// `revision` running `version`, and waits until it is ready. A replica
    /// resumes replicating from its configured source. Every instance starts
    /// read-only; only [`ClusterRuntime::unfence`] and
    /// [`ClusterRuntime::promote`] make one writable; an instance the runtime
    /// fenced is fenced again as soon as it starts.
    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError>;

    /// Starts a crashed instance on its current revision and waits until it
    /// has finished crash recovery. It starts read-only, and fenced again if
    /// the runtime had fenced it.
    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError>;

    /// Fences an instance: no client, however privileged, commits on it
    /// afterwards, client connections are closed and client traffic no longer
    /// reaches it. Used on the old primary of a switchover (again whenever a
    /// switchover resumes: a fence that is a lock lives only as long as its
    /// connection), and on a candidate whose promotion is being undone.
    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError>;

    /// Makes `ordinal` the writable primary again: forgets a replication
    /// source it was given by [`ClusterRuntime::demote`], lifts its fence and
    /// read-only mode, and sends client writes to it. The engine calls it only
    /// once no other instance can take writes (the undo of a switchover
    /// fences a candidate that may be writable first).
    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError>;

    /// Makes the fenced old primary `ordinal` a replica of the candidate
    /// `source` before the candidate is promoted, without starting its
    /// replication: from then on a commit that reaches it (a lost fence, a
    /// privileged client) is a transaction of a replica, which the errant
    /// checks see, never a second primary's. It stays fenced.
    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError>;

    /// Waits until `candidate` has executed everything `from` committed (the
    /// position read now, not earlier), failing at `deadline`.
    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError>;

    /// Makes `ordinal` the writable primary (stops its replication) and sends
    /// client writes to it.
    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError>;

    /// Makes `ordinal` replicate from `source` with GTID auto-positioning and
    /// starts its replication; a fence on it is lifted (it stays read-only).
    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError>;

    /// Stops a replica's receiver (its replication I/O thread), so that nothing
    /// more reaches it from a failed primary that may come back; what it
    /// received stays in its relay log for its applier. The first step of a
    /// failover, on every replica that answers.
    async fn detach(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        let _ = deadline;
        Err(RuntimeError::new(
            RuntimeErrorKind::Unsupported,
            format!("stop the receiver of instance {ordinal}"),
            "this runtime cannot fail over",
        ))
    }

    /// Waits until a replica's applier has executed everything its receiver
    /// received, failing at `deadline`.
    async fn wait_received_applied(
        &self,
        ordinal: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        let _ = deadline;
        Err(RuntimeError::new(
            RuntimeErrorKind::Unsupported,
            format!("wait for instance {ordinal} to apply what it received"),
            "this runtime cannot fail over",
        ))
    }

    /// Sets variables online on one instance, which then runs `revision`.
    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        let _ = (revision, variables);
        Err(RuntimeError::new(
            RuntimeErrorKind::Unsupported,
            format!("set variables on instance {ordinal}"),
            "this runtime cannot set variables online",
        ))
    }

    /// Runs a schema change locally on one instance (binary log off for the
    /// session on a replica, RSU on Galera), with the change's replica
    /// settings in place, and waits until the instance has caught up; the
    /// instance then reports the change's id. Must be idempotent: an instance
    /// whose table already has the new definition is not altered again. On a
    /// fenced instance no other client commits while it runs.
    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        let _ = change;
        Err(RuntimeError::new(
            RuntimeErrorKind::Unsupported,
            format!("run DDL on instance {ordinal}"),
            "this runtime cannot run schema changes",
        ))
    }

    /// Lets time pass before the next observation while the engine waits for
    /// `reason` (a real delay, or a model clock's tick).
    async fn pause(&self, reason: &WaitReason);

    /// Called after every step, for progress displays and logs.
    fn on_step(&self, step: &StepOutcome) {
        let _ = step;
    }
}

/// A shared runtime is a runtime: an embedder can keep a handle to its
/// runtime while the engine drives it.
#[async_trait]
impl<T: ClusterRuntime + ?Sized> ClusterRuntime for std::sync::Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    async fn observe(&self) -> Result<Observed, RuntimeError> {
        (**self).observe().await
    }
    async fn load_record(&self) -> Result<Record, RuntimeError> {
        (**self).load_record().await
    }
    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        (**self).store_record(expected_seq, record).await
    }
    async fn confirm_leadership(&self, until: Timestamp) -> Result<(), RuntimeError> {
        (**self).confirm_leadership(until).await
    }
    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        (**self).drain(ordinal).await
    }
    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        (**self).undrain(ordinal).await
    }
    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        (**self)
            .restart(ordinal, revision, version, slow_shutdown)
            .await
    }
    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        (**self).recover(ordinal).await
    }
    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        (**self).fence(ordinal, deadline).await
    }
    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        (**self).unfence(ordinal, deadline).await
    }
    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        (**self).demote(ordinal, source, deadline).await
    }
    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        (**self).wait_caught_up(candidate, from, deadline).await
    }
    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        (**self).promote(ordinal, deadline).await
    }
    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        (**self).repoint(ordinal, source).await
    }
    async fn detach(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        (**self).detach(ordinal, deadline).await
    }
    async fn wait_received_applied(
        &self,
        ordinal: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        (**self).wait_received_applied(ordinal, deadline).await
    }
    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        (**self).apply_variables(ordinal, revision, variables).await
    }
    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        (**self).run_ddl(ordinal, change).await
    }
    async fn pause(&self, reason: &WaitReason) {
        (**self).pause(reason).await
    }
    fn on_step(&self, step: &StepOutcome) {
        (**self).on_step(step)
    }
}

/// What one engine step did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepOutcome {
    /// The action was carried out.
    Acted(Action),
    /// The action failed; the record counts the failure.
    Failed {
        /// The action.
        action: Action,
        /// The runtime's error, in words.
        error: String,
    },
    /// The engine waited.
    Waited(WaitReason),
    /// The rollout is complete.
    Done,
    /// The rollout halted.
    Halted(HaltReason),
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepOutcome::Acted(a) => write!(f, "{a}"),
            StepOutcome::Failed { action, error } => write!(f, "FAILED {action}: {error}"),
            StepOutcome::Waited(r) => write!(f, "waiting: {r}"),
            StepOutcome::Done => write!(f, "done"),
            StepOutcome::Halted(r) => write!(f, "HALTED: {r}"),
        }
    }
}

/// How a run of the engine ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Every instance runs the target revision.
    Done,
    /// The rollout halted and needs a person.
    Halted(HaltReason),
}

/// An engine step that could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The cluster could not be observed.
    #[error("could not observe the cluster: {0}")]
    Observe(#[source] RuntimeError),
    /// The record could not be loaded or stored.
    #[error("could not access the engine's record: {0}")]
    Record(#[source] RuntimeError),
    /// Another engine changed the record: this one must stop acting.
    #[error("another engine changed the record; this engine stepped back")]
    Conflict,
    /// The runtime did not confirm this engine's leadership: it stopped
    /// before changing anything.
    #[error("this engine is no longer the leader; it stepped back: {0}")]
    NotLeader(#[source] RuntimeError),
    /// The step budget of [`Engine::run`] ran out.
    #[error("the rollout did not finish within {0} steps")]
    StepBudget(usize),
}

impl EngineError {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Observe(_) => "observe",
            EngineError::Record(_) => "record",
            EngineError::Conflict => "conflict",
            EngineError::NotLeader(_) => "not-leader",
            EngineError::StepBudget(_) => "step-budget",
        }
    }
}

/// The engine loop over a runtime.
pub struct Engine<R> {
    runtime: R,
    target: Target,
    policy: Policy,
    mutation: Mutation,
}

impl<R: ClusterRuntime> Engine<R> {
    /// An engine that drives the cluster behind `runtime` to `target`.
    pub fn new(runtime: R, target: Target, policy: Policy) -> Self {
        Engine {
            runtime,
            target,
            policy,
            mutation: Mutation::None,
        }
    }

    /// An engine with one rule broken on purpose (tests only; see
    /// [`crate::mutation`]).
    #[cfg(feature = "mutations")]
    pub fn with_mutation(
        runtime: R,
        target: Target,
        policy: Policy,
        mutation: crate::mutation::Mutation,
    ) -> Self {
        Engine {
            runtime,
            target,
            policy,
            mutation,
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Replaces the policy (for example after an approval or a pause).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Replaces the target (a new revision).
    pub fn set_target(&mut self, target: Target) {
        self.target = target;
    }

    /// Runs steps until the rollout is done or halted, or `max_steps` ran out.
    pub async fn run(&self, max_steps: usize) -> Result<Finished, EngineError> {
        for _ in 0..max_steps {
            match self.step().await? {
                StepOutcome::Done => return Ok(Finished::Done),
                StepOutcome::Halted(reason) => return Ok(Finished::Halted(reason)),
                _ => {}
            }
        }
        Err(EngineError::StepBudget(max_steps))
    }

    /// One step: observe, decide, record the intent, act, record the outcome.
    pub async fn step(&self) -> Result<StepOutcome, EngineError> {
        // When the observation began: a primary that fails it has not answered
        // since then (the check's own bound is part of its failure, not before it).
        let looked = self.runtime.now();
        let observed = self.runtime.observe().await.map_err(EngineError::Observe)?;
        let mut record = self
            .runtime
            .load_record()
            .await
            .map_err(EngineError::Record)?;
        let now = self.runtime.now();
        // Kept current in what is stored, without a store of its own.
        if let Some(p) = observed.primary()
            && p.writable
            && let Some(gtid) = &p.gtid
        {
            record.primary_position = Some(PrimaryPosition {
                ordinal: p.ordinal,
                gtid: gtid.clone(),
            });
        }
        if let Some(p) = observed.primary()
            && p.writable
        {
            record.primary_ack_replicas = p.ack_replicas;
        }
        let before = record.clone();
        // Replicas seen holding what the writable primary lacks are stored
        // at once (a failover cannot see it once the primary is gone).
        if let Some(p) = observed.primary()
            && p.writable
            && p.gtid.is_some()
        {
            for i in observed.by_ordinal() {
                if i.ordinal == p.ordinal || i.gtid.is_none() {
                    continue;
                }
                match i.errant_against(p) {
                    Some(extra) => record.errant.insert(i.ordinal, extra),
                    None => record.errant.remove(&i.ordinal),
                };
            }
            record.errant.remove(&p.ordinal);
        }
        // The primary's failure is timed in the record: a new engine goes on
        // counting from when the old one first saw it. It counts from when the
        // first failed check began: the primary answered nothing since.
        record.detection = match observed.primary() {
            Some(p) if !crate::decide::answers(p) => Some(Detection {
                primary: p.ordinal,
                since: record
                    .detection
                    .as_ref()
                    .filter(|d| d.primary == p.ordinal)
                    .map_or(looked, |d| d.since),
            }),
            _ => None,
        };
        if let Some(v) = observed.highest_version()
            && record.highest_version.is_none_or(|h| v > h)
        {
            record.highest_version = Some(v);
        }
        record.canary =
            crate::decide::note_canary(&observed, &record, &self.target, &self.policy, now);
        let action = decide_with(
            self.mutation,
            &observed,
            &record,
            &self.target,
            &self.policy,
            now,
        );
        refuse_failover_request(&mut record, &action);
        let outcome = match action {
            Action::Wait { reason } => {
                record.note_wait(&reason, now);
                if record != before {
                    self.save(&mut record).await?;
                }
                self.runtime.pause(&reason).await;
                StepOutcome::Waited(reason)
            }
            Action::Done => {
                record.waiting = None;
                record.failure = None;
                if record != before {
                    self.save(&mut record).await?;
                }
                StepOutcome::Done
            }
            Action::Halt { reason } => {
                if record
                    .halted
                    .as_ref()
                    .is_none_or(|h| h.revision_hash != self.target.key())
                {
                    record.log(now, format!("halt: {reason}"), None);
                    record.halted = Some(Halted {
                        revision_hash: self.target.key(),
                        reason: reason.clone(),
                        at: now,
                    });
                }
                if record != before {
                    self.save(&mut record).await?;
                }
                StepOutcome::Halted(reason)
            }
            Action::Switchover { from, to } => {
                record.waiting = None;
                self.switchover(&mut record, &observed, from, to, now)
                    .await?
            }
            Action::Failover { from, to } => {
                record.waiting = None;
                self.failover(&mut record, &observed, from, to, now).await?
            }
            Action::Unfence { ordinal } if is_switchover_from(&record, ordinal) => {
                record.waiting = None;
                self.undo_switchover(&mut record, &observed, now, None)
                    .await?
            }
            action => {
                record.waiting = None;
                self.act(&mut record, action, now).await?
            }
        };
        self.runtime.on_step(&outcome);
        Ok(outcome)
    }

    async fn save(&self, record: &mut Record) -> Result<(), EngineError> {
        let expected = record.seq;
        record.seq += 1;
        match self.runtime.store_record(expected, record).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind == RuntimeErrorKind::Conflict => Err(EngineError::Conflict),
            Err(e) => Err(EngineError::Record(e)),
        }
    }

    /// Confirms the leadership until `until` before an action that changes a
    /// server (see [`ClusterRuntime::confirm_leadership`]).
    async fn lead(&self, until: Timestamp) -> Result<(), EngineError> {
        if self.mutation == Mutation::SkipLeadershipCheck {
            return Ok(());
        }
        self.runtime
            .confirm_leadership(until)
            .await
            .map_err(EngineError::NotLeader)
    }

    /// Records the outcome of an action.
    async fn finish(
        &self,
        record: &mut Record,
        action: Action,
        result: Result<(), RuntimeError>,
    ) -> Result<StepOutcome, EngineError> {
        let now = self.runtime.now();
        let outcome = match result {
            Ok(()) => {
                record.failure = None;
                record.log(now, action.to_string(), None);
                StepOutcome::Acted(action)
            }
            Err(e) => {
                let error = e.to_string();
                record.note_failure(self.target.key(), action.key(), error.clone(), now);
                record.log(now, action.to_string(), Some(error.clone()));
                StepOutcome::Failed { action, error }
            }
        };
        self.save(record).await?;
        Ok(outcome)
    }

    async fn act(
        &self,
        record: &mut Record,
        action: Action,
        now: Timestamp,
    ) -> Result<StepOutcome, EngineError> {
        let rt = &self.runtime;
        self.lead(now).await?;
        let former_primary = is_switchover_from(record, action_ordinal(&action));
        // Write the intent first, so a new engine knows what may be half done.
        match &action {
            Action::Drain { ordinal } => {
                record.intent = Some(Intent::Drained {
                    ordinal: *ordinal,
                    at: now,
                });
                self.save(record).await?;
            }
            // The old primary of a promoted switchover keeps that intent
            // through its restart and schema change: it stays fenced and out
            // of service until it rejoins as a replica.
            Action::RunDdl { .. } | Action::Restart { .. } if former_primary => {}
            Action::RunDdl { ordinal, change } => {
                record.intent = Some(Intent::Altering {
                    ordinal: *ordinal,
                    change: change.id.clone(),
                    started: now,
                });
                self.save(record).await?;
            }
            Action::Restart {
                ordinal, revision, ..
            } => {
                record.intent = Some(Intent::Restarting {
                    ordinal: *ordinal,
                    revision: revision.clone(),
                    started: now,
                });
                self.save(record).await?;
            }
            // Recorded first: the cluster goes on without it from now on,
            // and a rollout's step on it ends here.
            Action::Quarantine { ordinal, extra } => {
                if matches!(
                    &record.intent,
                    Some(
                        Intent::Drained { ordinal: o, .. }
                            | Intent::Restarting { ordinal: o, .. }
                            | Intent::Altering { ordinal: o, .. }
                    ) if o == ordinal
                ) {
                    record.intent = None;
                }
                record.quarantined.insert(
                    *ordinal,
                    crate::record::Quarantine {
                        extra: extra.clone(),
                        at: now,
                    },
                );
                self.save(record).await?;
            }
            _ => {}
        }
        let bound = now.after(self.policy.switchover_deadline);
        let result = match &action {
            Action::Drain { ordinal } => rt.drain(*ordinal).await,
            Action::Undrain { ordinal } => rt.undrain(*ordinal).await,
            Action::Restart {
                ordinal,
                revision,
                version,
                slow_shutdown,
            } => match self.settle_relay(record, *ordinal, bound).await {
                Ok(()) => {
                    rt.restart(*ordinal, revision, *version, *slow_shutdown)
                        .await
                }
                Err(e) => Err(e),
            },
            Action::Recover { ordinal } => rt.recover(*ordinal).await,
            Action::Fence { ordinal } => rt.fence(*ordinal, bound).await,
            Action::Quarantine { ordinal, .. } => {
                // Nothing more is written to it, and no reader sees it.
                match rt.fence(*ordinal, bound).await {
                    Ok(()) => rt.drain(*ordinal).await,
                    Err(e) => Err(e),
                }
            }
            Action::Unfence { ordinal } => rt.unfence(*ordinal, bound).await,
            Action::Detach { ordinal, .. } => rt.detach(*ordinal, bound).await,
            Action::Repoint { ordinal, source } => {
                match self.settle_follower(record, *ordinal, *source, bound).await {
                    Ok(()) => rt.repoint(*ordinal, *source).await,
                    Err(e) => Err(e),
                }
            }
            Action::ApplyVariables {
                ordinal,
                revision,
                variables,
            } => rt.apply_variables(*ordinal, revision, variables).await,
            Action::RunDdl { ordinal, change } => {
                if self.mutation == Mutation::ReleaseFenceBeforeDdl && former_primary {
                    let _lifted = rt.unfence(*ordinal, bound).await;
                }
                rt.run_ddl(*ordinal, change).await
            }
            other => Err(RuntimeError::new(
                RuntimeErrorKind::Unsupported,
                other.to_string(),
                "the engine does not carry out this action",
            )),
        };
        if result.is_ok()
            && let Action::Undrain { ordinal } = &action
            && record
                .intent
                .as_ref()
                .is_some_and(|i| i.ordinal() == *ordinal)
        {
            record.intent = None;
        }
        // A failed primary that now follows the primary has been judged (one
        // quarantined stays failed: what still follows it is judged with it).
        if result.is_ok()
            && let Action::Repoint { ordinal, .. } = &action
        {
            record.failed_over.remove(ordinal);
        }
        self.finish(record, action, result).await
    }
}

/// The instance an action changes (`u32::MAX` for none).
fn action_ordinal(action: &Action) -> u32 {
    match action {
        Action::Drain { ordinal }
        | Action::Undrain { ordinal }
        | Action::Restart { ordinal, .. }
        | Action::Recover { ordinal }
        | Action::Fence { ordinal }
        | Action::Quarantine { ordinal, .. }
        | Action::Detach { ordinal, .. }
        | Action::Unfence { ordinal }
        | Action::Repoint { ordinal, .. }
        | Action::ApplyVariables { ordinal, .. }
        | Action::RunDdl { ordinal, .. } => *ordinal,
        _ => u32::MAX,
    }
}

impl<R: ClusterRuntime> Engine<R> {
    /// Before a replica is stopped: its receiver stops and its applier
    /// executes what it received. A server discards a relay log it had not
    /// applied when it starts again (MariaDB with GTIDs always, MySQL with
    /// `relay_log_recovery`), and with semi-synchronous replication that may
    /// be a transaction it acknowledged, which a failover counts on it to
    /// hold. Nothing to do without semi-synchronous replication or for a
    /// runtime without receivers to stop; an instance that does not answer
    /// is not restarted (the step fails and is tried again).
    async fn settle_relay(
        &self,
        record: &Record,
        ordinal: u32,
        bound: Timestamp,
    ) -> Result<(), RuntimeError> {
        if record.primary_ack_replicas.is_none() {
            return Ok(());
        }
        match self.runtime.detach(ordinal, bound).await {
            Ok(()) => self.runtime.wait_received_applied(ordinal, bound).await,
            Err(e) if e.kind == RuntimeErrorKind::Unsupported => Ok(()),
            Err(e) => {
                // A server stopped cleanly has nothing more to settle. One that runs
                // and did not answer (a hang that may end at any moment) is not
                // restarted now, which would discard what it received, nor one that
                // crashed since the decision (it is recovered first): the step fails
                // and is decided again.
                let down = self.runtime.observe().await.is_ok_and(|o| {
                    o.instance(ordinal)
                        .is_some_and(|i| i.health == crate::topology::Health::Stopped)
                });
                if down { Ok(()) } else { Err(e) }
            }
        }
    }
}

impl<R: ClusterRuntime> Engine<R> {
    /// Before a replica that follows a failed primary is repointed: its
    /// receiver stops (the failed primary may be back and still sending its
    /// last commits, which no client saw acknowledged), then what it holds,
    /// executed or waiting in its relay log, is judged against its new
    /// source as it is now. The decision judged an observation taken before
    /// the stop, which may have missed a commit received since; one that
    /// holds what the new source lacks is not repointed (the step fails, and
    /// the next decision, seeing it, quarantines it).
    async fn settle_follower(
        &self,
        record: &Record,
        ordinal: u32,
        source: u32,
        bound: Timestamp,
    ) -> Result<(), RuntimeError> {
        if self.mutation == Mutation::JudgeFollowersOnExecuted {
            return Ok(());
        }
        let rt = &self.runtime;
        let seen = rt.observe().await?;
        let follows_failed = seen
            .instance(ordinal)
            .and_then(|i| i.source)
            .is_some_and(|s| s != source && record.failed_over.contains(&s));
        if !follows_failed {
            return Ok(());
        }
        rt.detach(ordinal, bound).await?;
        let seen = rt.observe().await?;
        let (Some(i), Some(new)) = (seen.instance(ordinal), seen.instance(source)) else {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("repoint {ordinal} to {source}"),
                "one of them is no longer in the cluster",
            ));
        };
        let (Some(executed), Some(theirs)) = (&i.gtid, &new.gtid) else {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("repoint {ordinal} to {source}"),
                "the transactions of one of them are not known: it is judged first",
            ));
        };
        let received = i.link.as_ref().and_then(|l| l.received.as_ref());
        let holds = match received.map(|r| executed.union(r)) {
            Some(Ok(both)) => both,
            _ => executed.clone(),
        };
        match crate::gtid::errant(&holds, theirs) {
            Ok(extra) if extra.is_empty() => Ok(()),
            Ok(extra) => Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("repoint {ordinal} to {source}"),
                format!(
                    "it received transactions from the failed primary that {source} lacks                      ({extra}): it is judged again, not repointed"
                ),
            )),
            Err(e) => Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("repoint {ordinal} to {source}"),
                format!("its transactions cannot be compared with {source}'s: {e}"),
            )),
        }
    }
}

/// Whether the record's intent is a switchover away from `ordinal`.
fn is_switchover_from(record: &Record, ordinal: u32) -> bool {
    matches!(record.intent, Some(Intent::Switchover { from, .. }) if from == ordinal)
}

/// The time a switchover keeps back before its deadline to undo itself: a
/// fifth of the deadline, between 200 ms and 5 s. Every step before the
/// promotion must finish by `deadline - reserve`; an undo by the deadline.
pub fn undo_reserve(switchover_deadline: Duration) -> Duration {
    (switchover_deadline / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
}
