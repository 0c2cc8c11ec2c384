//! The switchover, run or resumed sub-step by sub-step with each recorded, and its undo.
//!
//! Before the promotion every step is bounded by `deadline - reserve`
//! ([`super::undo_reserve`]), and on each entry, first or resumed, the engine:
//!
//! 1. **fences** the old primary (again on a resume: a fence that is a lock,
//!    MariaDB's backup lock, dies with the connection that held it, and a
//!    privileged client may have committed since);
//! 2. **demotes** it (once; the configuration outlives the engine):
//!    configures it as a replica of the candidate without starting its
//!    replication, so that whatever reaches it from now on (a lost fence, a
//!    privileged client) is a replica's transaction, which the errant checks
//!    see, never a second primary's;
//! 3. waits until the candidate has **caught up** with the old primary's
//!    position read now (not the one a dead engine read);
//! 4. checks both on a fresh observation: the candidate up and without
//!    **errant** transactions, the old primary holding nothing the candidate
//!    lacks (a fence that did not hold);
//! 5. records `Promoting` (the commit point) and **promotes** the candidate.
//!
//! A failure of steps 1 to 4 undoes the switchover at once. A failed
//! promotion keeps the intent at `Promoting`: it is retried until the
//! deadline, then undone, and an undo from `Promoting` first makes the
//! candidate read-only again; if the candidate cannot be reached, the old
//! primary stays fenced (two writable primaries are worse than none). A
//! promotion whose traffic moved (the runtime reports the candidate as the
//! primary) counts as done and is never undone. After the promotion (fencing the
//! old primary again first when the switchover resumed) the other replicas are
//! repointed; the old primary follows once its version, revision
//! and schema allow, and never while it holds transactions the new primary
//! lacks.

use super::{
    ClusterRuntime, Engine, EngineError, RuntimeError, RuntimeErrorKind, StepOutcome, undo_reserve,
};
use crate::decide::Action;
use crate::mutation::Mutation;
use crate::record::{Intent, Record, SwitchoverStep, SwitchoverSummary};
use crate::topology::{Health, Observed, Role, Timestamp};
use crate::versions::catalog;

/// How a run towards the promotion ended.
enum Progress {
    /// The candidate is the writable primary (recorded).
    Promoted,
    /// The step ended without a promotion (undone, or failed and recorded).
    Stopped(StepOutcome),
}

/// The recorded switchover being worked on.
#[derive(Clone, Copy)]
struct Run {
    from: u32,
    to: u32,
    started: Timestamp,
    deadline: Timestamp,
}

impl Run {
    fn intent(&self, step: SwitchoverStep) -> Intent {
        Intent::Switchover {
            from: self.from,
            to: self.to,
            step,
            started: self.started,
            deadline: self.deadline,
        }
    }

    fn action(&self) -> Action {
        Action::Switchover {
            from: self.from,
            to: self.to,
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<R: ClusterRuntime> Engine<R> {
    /// Runs (or resumes) a switchover, recording each sub-step.
    pub(super) async fn switchover(
        &self,
        record: &mut Record,
        observed: &Observed,
        from: u32,
        to: u32,
        now: Timestamp,
    ) -> Result<StepOutcome, EngineError> {
        let recorded = match &record.intent {
            Some(Intent::Switchover {
                from: f,
                to: t,
                step,
                started,
                deadline,
            }) if *f == from && *t == to => Some((*step, *started, *deadline)),
            _ => None,
        };
        let (mut step, run) = match recorded {
            Some((step, started, deadline)) => (
                step,
                Run {
                    from,
                    to,
                    started,
                    deadline,
                },
            ),
            None => {
                let run = Run {
                    from,
                    to,
                    started: now,
                    deadline: now.after(self.policy.switchover_deadline),
                };
                record.intent = Some(run.intent(SwitchoverStep::Requested));
                self.save(record).await?;
                (SwitchoverStep::Requested, run)
            }
        };
        let resumed = recorded.is_some_and(|(s, ..)| s > SwitchoverStep::Requested);
        // The runtime moved the traffic: the promotion completed before the
        // engine could record it.
        if step < SwitchoverStep::Promoted
            && observed
                .instance(to)
                .is_some_and(|i| i.role == Role::Primary)
        {
            step = SwitchoverStep::Promoted;
        }
        if step < SwitchoverStep::Promoted {
            let reserve = millis(undo_reserve(self.policy.switchover_deadline));
            let work = Timestamp(run.deadline.0.saturating_sub(reserve));
            if self.runtime.now() >= work {
                return self.undo_switchover(record, observed, now, None).await;
            }
            let progress = self
                .run_to_promotion(record, observed, run, step, resumed, work)
                .await?;
            match progress {
                Progress::Promoted => step = SwitchoverStep::Promoted,
                Progress::Stopped(outcome) => return Ok(outcome),
            }
        }
        if step < SwitchoverStep::Repointed {
            // Resumed after the promotion: the old primary is fenced again
            // before anything else (its lock died with the old engine).
            let old_answers = observed
                .instance(from)
                .is_some_and(|i| i.health.is_up() || i.replication_paused());
            if resumed && old_answers && self.mutation != Mutation::SkipRefenceOnResume {
                let bound = self.undo_bound(run);
                self.lead(bound).await?;
                if let Err(e) = self.runtime.fence(from, bound).await {
                    return self.finish(record, run.action(), Err(e)).await;
                }
            }
            if let Err(e) = self.repoint_after_switchover(run, record).await? {
                // Promoted: the new primary takes writes; the repoint is retried.
                return self.finish(record, run.action(), Err(e)).await;
            }
            record.intent = Some(run.intent(SwitchoverStep::Repointed));
            self.save(record).await?;
        }
        self.finish(record, run.action(), Ok(())).await
    }

    /// Steps 1 to 5 of the [module](self) documentation, from `step`.
    async fn run_to_promotion(
        &self,
        record: &mut Record,
        observed: &Observed,
        run: Run,
        mut step: SwitchoverStep,
        resumed: bool,
        work: Timestamp,
    ) -> Result<Progress, EngineError> {
        let rt = &self.runtime;
        let Run { from, to, .. } = run;
        let undo = |e: RuntimeError| Some(e);
        // 1. Fence the old primary, again on every entry.
        if step == SwitchoverStep::Requested
            || !(resumed && self.mutation == Mutation::SkipRefenceOnResume)
        {
            self.lead(work).await?;
            if let Err(e) = rt.fence(from, work).await {
                return self.stop_by_undo(record, observed, undo(e)).await;
            }
            if step == SwitchoverStep::Requested {
                step = SwitchoverStep::Fenced;
                record.intent = Some(run.intent(step));
                self.save(record).await?;
            }
        }
        let mut candidate = observed.instance(to);
        // A promotion that took effect (the candidate is writable) before its
        // engine could move the traffic or record it. Only privileged clients
        // connected directly could have written to it, so what it holds beyond
        // the old primary is errant: undone. Otherwise it is completed, unless
        // the old primary committed something since (its lock died with that
        // engine): then the candidate is made read-only again and catches up
        // first.
        if step >= SwitchoverStep::Promoting
            && let (Some(c), Some(o)) = (candidate, observed.instance(from))
            && c.writable
        {
            if self.mutation != Mutation::PromoteWithoutErrantCheck
                && let Some(errant) = c.errant_against(o)
            {
                let err = RuntimeError::new(
                    RuntimeErrorKind::Failed,
                    format!("check candidate {to} before its promotion"),
                    format!(
                        "it took writes the old primary {from} lacks (errant: {errant}) while \
                         its promotion was unfinished; it is not promoted"
                    ),
                );
                return self.stop_by_undo(record, observed, Some(err)).await;
            }
            if o.errant_against(c).is_none() {
                return self.complete_promotion(record, run, work).await;
            }
            self.lead(work).await?;
            if let Err(e) = rt.fence(to, work).await {
                let outcome = self.finish(record, run.action(), Err(e)).await?;
                return Ok(Progress::Stopped(outcome));
            }
            // Its replication was stopped by the promotion: restarted below.
            candidate = None;
        }
        let skip_catch_up = resumed
            && step >= SwitchoverStep::CaughtUp
            && self.mutation == Mutation::SkipRecatchUpOnResume;
        if !skip_catch_up {
            // 2. The old primary becomes a replica of the candidate, not started
            //    (once: the configuration outlives the engine).
            if step < SwitchoverStep::CaughtUp {
                self.lead(work).await?;
                if let Err(e) = rt.demote(from, to, work).await {
                    return self.stop_by_undo(record, observed, undo(e)).await;
                }
            }
            // A candidate whose replication an interrupted promotion stopped.
            if step >= SwitchoverStep::Promoting
                && candidate.is_none_or(|c| !c.replicates_from(from))
            {
                self.lead(work).await?;
                if let Err(e) = rt.repoint(to, from).await {
                    return self.stop_by_undo(record, observed, undo(e)).await;
                }
            }
            // 3. Catch up with the old primary's position as it is now.
            if self.mutation != Mutation::SkipCatchUp {
                self.lead(work).await?;
                if let Err(e) = rt.wait_caught_up(to, from, work).await {
                    return self.stop_by_undo(record, observed, undo(e)).await;
                }
            }
            // 4. The candidate, seen afresh: up and without errant transactions.
            if self.mutation != Mutation::PromoteWithoutErrantCheck
                && let Err(e) = self.check_candidate(run).await
            {
                return self.stop_by_undo(record, observed, undo(e)).await;
            }
            if step < SwitchoverStep::CaughtUp {
                step = SwitchoverStep::CaughtUp;
                record.intent = Some(run.intent(step));
                self.save(record).await?;
            }
        }
        // 5. The commit point, recorded before the promotion is issued.
        if step < SwitchoverStep::Promoting {
            record.intent = Some(run.intent(SwitchoverStep::Promoting));
            self.save(record).await?;
        }
        self.complete_promotion(record, run, work).await
    }

    /// Undoes the switchover and ends the step with the outcome.
    async fn stop_by_undo(
        &self,
        record: &mut Record,
        observed: &Observed,
        cause: Option<RuntimeError>,
    ) -> Result<Progress, EngineError> {
        let now = self.runtime.now();
        self.undo_switchover(record, observed, now, cause)
            .await
            .map(Progress::Stopped)
    }

    /// The candidate as the runtime sees it now: up, and holding nothing the
    /// old primary lacks.
    async fn check_candidate(&self, run: Run) -> Result<(), RuntimeError> {
        let Run { from, to, .. } = run;
        let what = format!("check candidate {to} before its promotion");
        let fresh = self.runtime.observe().await?;
        let (Some(c), Some(o)) = (fresh.instance(to), fresh.instance(from)) else {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                what,
                "the candidate or the old primary is no longer in the cluster",
            ));
        };
        if !c.health.is_up() {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                format!("the candidate is {}", c.health),
            ));
        }
        // Nothing is promoted that could not be compared with the old primary.
        if c.gtid.is_none() || o.gtid.is_none() {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                format!(
                    "the executed transactions of {} are unknown (old primary {}, candidate {}): \
                     nothing can be compared",
                    if o.gtid.is_none() { from } else { to },
                    o.health,
                    c.health
                ),
            ));
        }
        if self.mutation != Mutation::SkipCatchUp
            && let Some(extra) = o.errant_against(c)
        {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                format!(
                    "the old primary {from} committed {extra} after the candidate caught up: \
                     its fence did not hold; the switchover is undone and tried again"
                ),
            ));
        }
        if let Some(errant) = c.errant_against(o) {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                what,
                format!(
                    "it holds transactions the old primary {from} lacks (errant: {errant}); \
                     it is not promoted"
                ),
            ));
        }
        Ok(())
    }

    /// Promotes the candidate and records it; a failure keeps the intent at
    /// `Promoting` (the candidate may be writable).
    async fn complete_promotion(
        &self,
        record: &mut Record,
        run: Run,
        bound: Timestamp,
    ) -> Result<Progress, EngineError> {
        let rt = &self.runtime;
        self.lead(bound).await?;
        if let Err(e) = rt.promote(run.to, bound).await {
            let outcome = self.finish(record, run.action(), Err(e)).await?;
            return Ok(Progress::Stopped(outcome));
        }
        if self.mutation == Mutation::UnfenceOldAfterPromote {
            let _lifted = rt.unfence(run.from, bound).await;
        }
        record.intent = Some(run.intent(SwitchoverStep::Promoted));
        record.last_switchover = Some(SwitchoverSummary {
            from: run.from,
            to: run.to,
            started: run.started,
            promoted: rt.now(),
        });
        self.save(record).await?;
        Ok(Progress::Promoted)
    }

    /// The bound of an undo: the deadline, or a reserve from now when the
    /// deadline has passed already.
    fn undo_bound(&self, run: Run) -> Timestamp {
        let reserve = undo_reserve(self.policy.switchover_deadline);
        run.deadline.max(self.runtime.now().after(reserve))
    }

    /// Undoes the recorded switchover: makes a candidate whose promotion may
    /// have taken effect read-only again first, then makes the old primary the
    /// writable primary again. Client traffic never reached such a candidate
    /// (the runtime moves it last, and a moved primary counts as promoted), so
    /// whatever it holds beyond the old primary came from privileged clients
    /// connected to it directly: it stays there, and the errant checks stop it
    /// from rejoining with them unnoticed. The undone switchover counts as a
    /// failure (`cause`, or the missed deadline); if a step of the undo fails,
    /// the intent stays and the next step tries again.
    pub(super) async fn undo_switchover(
        &self,
        record: &mut Record,
        observed: &Observed,
        now: Timestamp,
        cause: Option<RuntimeError>,
    ) -> Result<StepOutcome, EngineError> {
        let Some(Intent::Switchover {
            from,
            to,
            step,
            started,
            deadline,
        }) = record.intent.clone()
        else {
            return Err(EngineError::Record(RuntimeError::new(
                RuntimeErrorKind::Failed,
                "undo a switchover",
                "the record holds no switchover",
            )));
        };
        let run = Run {
            from,
            to,
            started,
            deadline,
        };
        let rt = &self.runtime;
        let undo_what = format!("undo the switchover from {from} to {to}");
        let cause = cause.unwrap_or_else(|| {
            RuntimeError::new(
                RuntimeErrorKind::Transient,
                format!("switch the primary from {from} to {to}"),
                format!(
                    "the deadline passed at {deadline} before the candidate was promoted (last \
                     step: {step:?}, now {now})"
                ),
            )
        });
        let bound = self.undo_bound(run);
        // A candidate that is down takes no writes, and starts read-only: what
        // it may have acknowledged before it went down stays on it, and the
        // errant checks stop it from rejoining with them unnoticed.
        let candidate = observed.instance(to).filter(|c| {
            !matches!(
                c.health,
                Health::Crashed | Health::Stopped | Health::Starting
            )
        });
        let may_write = step >= SwitchoverStep::Promoting
            || candidate.is_some_and(|c| c.writable || c.role == Role::Primary);
        if may_write
            && candidate.is_some()
            && self.mutation != Mutation::UndoWithoutFencingCandidate
        {
            self.lead(bound).await?;
            if let Err(e) = rt.fence(to, bound).await {
                let err = RuntimeError::new(
                    e.kind,
                    undo_what,
                    format!(
                        "candidate {to}, whose promotion may have taken effect, could not be made \
                         read-only again, so the old primary {from} stays fenced (two writable \
                         primaries are worse than none): {e}; the switchover failed: {cause}"
                    ),
                );
                return self.finish(record, run.action(), Err(err)).await;
            }
        }
        self.lead(bound).await?;
        match rt.unfence(from, bound).await {
            Ok(()) => {
                record.intent = None;
                self.finish(record, run.action(), Err(cause)).await
            }
            Err(e) => {
                let err = RuntimeError::new(
                    e.kind,
                    undo_what,
                    format!(
                        "could not make {from} the writable primary again: {e}; the switchover failed: {cause}"
                    ),
                );
                self.finish(record, run.action(), Err(err)).await
            }
        }
    }

    /// Repoints every live replica to the new primary, on a fresh observation.
    /// The old primary follows only if it may replicate from the new
    /// primary's version, runs the target revision, has the schema change and
    /// holds no transaction the new primary lacks; otherwise it stays fenced
    /// and out of replication, and the decision brings it back (or halts).
    async fn repoint_after_switchover(
        &self,
        run: Run,
        record: &Record,
    ) -> Result<Result<(), RuntimeError>, EngineError> {
        let Run { from, to, .. } = run;
        let fresh = match self.runtime.observe().await {
            Ok(fresh) => fresh,
            Err(e) => return Ok(Err(e)),
        };
        let Some(new) = fresh.instance(to) else {
            return Ok(Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("repoint the replicas to {to}"),
                "the new primary is no longer in the cluster",
            )));
        };
        for i in fresh.by_ordinal() {
            // A replica that is down is repointed by a later decision once it is back.
            let answers = i.health.is_up() || i.replication_paused();
            // A quarantined instance stays out until a person re-provisions it.
            if i.ordinal == to
                || !answers
                || i.replicates_from(to)
                || record.quarantined.contains_key(&i.ordinal)
            {
                continue;
            }
            if i.ordinal == from {
                // The old primary rejoins only once it has the schema change,
                // or new-shape rows would reach an old-shape table.
                let has_schema = self
                    .target
                    .schema
                    .as_ref()
                    .is_none_or(|c| i.schema.as_deref() == Some(c.id.as_str()));
                let compatible = catalog()
                    .check_replication(fresh.flavor, new.version, i.version)
                    .is_ok_and(|v| v.allowed);
                if !has_schema
                    || !compatible
                    || !i.runs(&self.target.revision)
                    || i.errant_against(new).is_some()
                {
                    continue;
                }
            }
            self.lead(self.runtime.now()).await?;
            if let Err(e) = self.runtime.repoint(i.ordinal, to).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}
