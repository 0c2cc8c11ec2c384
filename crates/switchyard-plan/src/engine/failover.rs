//! The failover, run or resumed sub-step by sub-step with each recorded.
//!
//! 1. **Isolate** (`Isolated`): every replica that answers stops receiving
//!    (`ClusterRuntime::detach`), so that nothing more reaches it from the
//!    failed primary, which may come back; the failed primary is fenced if it
//!    can be reached at all (it usually cannot).
//! 2. **Choose again and apply** (`Applied`): on a fresh observation the
//!    candidate is the replica that received the most
//!    ([`crate::decide::failover_choice`]), and it applies everything it
//!    received before it is promoted.
//! 3. **Promote** (`Promoting` recorded first, then `Promoted`): the candidate
//!    answers once more that it applied what it received (one that no longer
//!    answers sends the failover back to step 2, `Isolated`, before anything
//!    is promoted), then becomes the writable primary and the runtime moves
//!    the clients' writes to it.
//! 4. **Repoint** (`Repointed`): every other replica that answers applies
//!    what it received, then follows the new primary, unless it holds
//!    transactions the new primary lacks (it is quarantined) or runs an older
//!    version (it stays out until it is upgraded).
//!
//! A failover is resumed, not undone: a step that fails is tried again at the
//! next step of the engine, and a new engine resumes from the recorded
//! sub-step. The one exception comes before anything is promoted: when the
//! fresh choice of step 2 is no longer lossless (a replica that answered the
//! decision stopped answering, or the sets diverged) and the policy does not
//! accept data loss, the failover is abandoned: the replicas follow the
//! failed primary again, the intent is cleared, and the decision waits. Every call is bounded by the policy's switchover deadline and
//! confirmed under the lease until then.

use super::{ClusterRuntime, Engine, EngineError, RuntimeError, RuntimeErrorKind, StepOutcome};
use crate::decide::{Action, answers, failover_choice, forced_failover};
use crate::mutation::Mutation;
use crate::record::{FailoverStep, FailoverSummary, Intent, Quarantine, Record};
use crate::topology::{Observed, Timestamp};
use crate::versions::catalog;

/// The recorded failover being worked on.
#[derive(Clone, Copy)]
struct Run {
    from: u32,
    to: u32,
    started: Timestamp,
    lossless: bool,
}

impl Run {
    fn intent(&self, step: FailoverStep) -> Intent {
        Intent::Failover {
            from: self.from,
            to: self.to,
            step,
            started: self.started,
            lossless: self.lossless,
        }
    }

    fn action(&self) -> Action {
        Action::Failover {
            from: self.from,
            to: self.to,
        }
    }
}

impl<R: ClusterRuntime> Engine<R> {
    /// Runs (or resumes) a failover, recording each sub-step.
    pub(super) async fn failover(
        &self,
        record: &mut Record,
        observed: &Observed,
        from: u32,
        to: u32,
        now: Timestamp,
    ) -> Result<StepOutcome, EngineError> {
        let recorded = match &record.intent {
            Some(Intent::Failover {
                from: f,
                to,
                step,
                started,
                lossless,
            }) if *f == from => Some((
                *step,
                Run {
                    from,
                    to: *to,
                    started: *started,
                    lossless: *lossless,
                },
            )),
            _ => None,
        };
        let (mut step, mut run) = match recorded {
            Some(r) => r,
            None => {
                let (forced, _) = forced_failover(&self.policy.failover, record);
                let choice = failover_choice(observed, record, forced, from).map_err(|e| {
                    EngineError::Record(RuntimeError::new(
                        RuntimeErrorKind::Failed,
                        format!("fail over from {from}"),
                        e,
                    ))
                });
                let lossless = choice.as_ref().is_ok_and(|c| c.lossless);
                let run = Run {
                    from,
                    to,
                    started: now,
                    lossless,
                };
                record.intent = Some(run.intent(FailoverStep::Requested));
                self.save(record).await?;
                (FailoverStep::Requested, run)
            }
        };
        let rt = &self.runtime;
        let bound = now.after(self.policy.switchover_deadline);
        if step == FailoverStep::Requested {
            // Nothing more from the failed primary, which may come back. Every
            // replica at once: a receiver that is reconnecting to a frozen source
            // takes up to its network timeout to stop, and one after the other
            // those waits would add up.
            let replicas: Vec<u32> = observed
                .by_ordinal()
                .into_iter()
                .filter(|i| i.ordinal != from && answers(i))
                .map(|i| i.ordinal)
                .collect();
            self.lead(bound).await?;
            let detached = join_all(replicas.iter().map(|o| rt.detach(*o, bound)).collect()).await;
            if let Some(e) = detached.into_iter().find_map(Result::err) {
                return self.finish(record, run.action(), Err(e)).await;
            }
            if observed.instance(from).is_some_and(answers) {
                self.lead(bound).await?;
                let _fenced = rt.fence(from, bound).await;
            }
            step = FailoverStep::Isolated;
            record.intent = Some(run.intent(step));
            self.save(record).await?;
        }
        if step == FailoverStep::Isolated {
            // The candidate, chosen again now that nothing more arrives.
            let fresh = match rt.observe().await {
                Ok(fresh) => fresh,
                Err(e) => return self.finish(record, run.action(), Err(e)).await,
            };
            // The primary is back (a hang that ended, a path that healed):
            // nothing was promoted, so it simply goes on being the primary.
            if fresh.instance(from).is_some_and(answers) {
                return self
                    .abandon(
                        record,
                        run,
                        &fresh,
                        format!("instance {from} answers again"),
                    )
                    .await;
            }
            let (forced, accept_data_loss) = forced_failover(&self.policy.failover, record);
            match failover_choice(&fresh, record, forced, from) {
                Ok(choice)
                    if (!run.lossless || !choice.lossless)
                        && !accept_data_loss
                        && self.mutation != Mutation::FailoverWithoutLosslessProof =>
                {
                    return self
                        .abandon(
                            record,
                            run,
                            &fresh,
                            format!("no longer provably lossless: {}", choice.proof),
                        )
                        .await;
                }
                Ok(choice) => {
                    run.to = choice.candidate;
                    run.lossless = run.lossless && choice.lossless;
                    if self.mutation == Mutation::FailoverLeastReceived
                        && let Some(least) = fresh
                            .by_ordinal()
                            .into_iter()
                            .filter(|i| i.ordinal != from && answers(i))
                            .min_by_key(|i| {
                                i.gtid
                                    .as_ref()
                                    .and_then(crate::gtid::GtidSet::transaction_count)
                                    .unwrap_or(0)
                            })
                    {
                        run.to = least.ordinal;
                    }
                }
                // Nobody left to take over (the replicas that answered the
                // decision stopped answering): given up like an unproven one.
                Err(e) => return self.abandon(record, run, &fresh, e).await,
            }
            self.lead(bound).await?;
            if self.mutation != Mutation::FailoverWithoutApplyingRelay
                && let Err(e) = rt.wait_received_applied(run.to, bound).await
            {
                return self.finish(record, run.action(), Err(e)).await;
            }
            step = FailoverStep::Applied;
            record.intent = Some(run.intent(step));
            self.save(record).await?;
        }
        if step < FailoverStep::Promoted {
            if step < FailoverStep::Promoting {
                // Right before the commit point, the candidate must still answer,
                // holding what it applied: one that died since (or a recorded
                // `applied` a new engine resumes) is chosen again, by what each
                // holds now, as nothing was promoted yet. Asking it again whether
                // it applied everything it received is that proof (at once when
                // nothing is left to apply).
                self.lead(bound).await?;
                if self.mutation != Mutation::FailoverWithoutApplyingRelay
                    && let Err(e) = rt.wait_received_applied(run.to, bound).await
                {
                    record.intent = Some(run.intent(FailoverStep::Isolated));
                    self.save(record).await?;
                    return self.finish(record, run.action(), Err(e)).await;
                }
                record.intent = Some(run.intent(FailoverStep::Promoting));
                self.save(record).await?;
            }
            self.lead(bound).await?;
            // A candidate that crashed past the commit point is brought back
            // (it starts read-only) and promoted again: never abandoned.
            if observed
                .instance(run.to)
                .is_some_and(|i| i.health == crate::topology::Health::Crashed)
                && let Err(e) = rt.recover(run.to).await
            {
                return self.finish(record, run.action(), Err(e)).await;
            }
            // One more fence of the failed primary, in case it came back
            // since it was last seen (it fails fast when it is still gone).
            // A fence that fails is no reason to promote beside a primary that
            // answers: the step fails and is tried again (past the commit
            // point the failover goes on once the old primary is fenced or
            // gone). One that cannot be told from an answering one counts as
            // answering.
            if let Err(e) = rt.fence(from, bound).await {
                let answering = match rt.observe().await {
                    Ok(fresh) => fresh.instance(from).is_some_and(answers),
                    Err(_) => true,
                };
                if answering {
                    return self.finish(record, run.action(), Err(e)).await;
                }
            }
            if let Err(e) = rt.promote(run.to, bound).await {
                return self.finish(record, run.action(), Err(e)).await;
            }
            step = FailoverStep::Promoted;
            record.intent = Some(run.intent(step));
            record.last_failover = Some(FailoverSummary {
                from,
                to: run.to,
                failing_since: record.detection.as_ref().map_or(run.started, |d| d.since),
                started: run.started,
                promoted: rt.now(),
                lossless: run.lossless,
            });
            record.failovers += 1;
            record.failed_over.insert(from);
            record.failed_over.remove(&run.to);
            record.failover_request = None;
            record.detection = None;
            self.save(record).await?;
        }
        if step < FailoverStep::Repointed {
            if let Err(e) = self.repoint_after_failover(record, run, bound).await? {
                return self.finish(record, run.action(), Err(e)).await;
            }
            record.intent = None;
        }
        self.finish(record, run.action(), Ok(())).await
    }

    /// Gives up a failover that is no longer lossless before anything was
    /// promoted: the replicas that answer follow the failed primary again
    /// (one that cannot is repointed by the rules once it answers), and the
    /// intent is cleared so the decision judges afresh (a failed primary
    /// fenced while isolating is unfenced by the rules once it answers:
    /// nothing else was made writable).
    async fn abandon(
        &self,
        record: &mut Record,
        run: Run,
        fresh: &Observed,
        proof: String,
    ) -> Result<StepOutcome, EngineError> {
        let rt = &self.runtime;
        for i in fresh.by_ordinal() {
            if i.ordinal == run.from || !answers(i) || record.quarantined.contains_key(&i.ordinal) {
                continue;
            }
            let _attached = rt.repoint(i.ordinal, run.from).await;
        }
        record.intent = None;
        self.save(record).await?;
        let err = RuntimeError::new(
            RuntimeErrorKind::Transient,
            format!("fail over from {}", run.from),
            format!(
                "abandoned before any promotion: {proof} (a failover needs a replica that \
                 answers, and a proof it loses nothing unless the policy accepts data loss)"
            ),
        );
        self.finish(record, run.action(), Err(err)).await
    }

    /// Every other replica that answers applies what it received, then
    /// follows the new primary, or is quarantined when it holds transactions
    /// the new primary lacks; one older than the new primary stays out until
    /// it is upgraded. The failed primary is left for the decision to judge
    /// when it answers again.
    async fn repoint_after_failover(
        &self,
        record: &mut Record,
        run: Run,
        bound: Timestamp,
    ) -> Result<Result<(), RuntimeError>, EngineError> {
        let rt = &self.runtime;
        let fresh = match rt.observe().await {
            Ok(fresh) => fresh,
            Err(e) => return Ok(Err(e)),
        };
        let Some(new) = fresh.instance(run.to).cloned() else {
            return Ok(Err(RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("repoint the replicas to {}", run.to),
                "the new primary is no longer in the cluster",
            )));
        };
        for i in fresh.by_ordinal() {
            if i.ordinal == run.to
                || i.ordinal == run.from
                || !answers(i)
                || i.replicates_from(run.to)
                || record.quarantined.contains_key(&i.ordinal)
            {
                continue;
            }
            self.lead(bound).await?;
            // What it received from the failed primary is applied first: it may
            // be exactly what the new primary lacks.
            let _applied = rt.wait_received_applied(i.ordinal, bound).await;
            let seen = match rt.observe().await {
                Ok(seen) => seen,
                Err(e) => return Ok(Err(e)),
            };
            let Some(now_i) = seen.instance(i.ordinal) else {
                continue;
            };
            if let Some(extra) = now_i.errant_against(&new) {
                record.quarantined.insert(
                    i.ordinal,
                    Quarantine {
                        extra: extra.to_string(),
                        at: rt.now(),
                    },
                );
                self.save(record).await?;
                if let Err(e) = rt.fence(i.ordinal, bound).await {
                    return Ok(Err(e));
                }
                if let Err(e) = rt.drain(i.ordinal).await {
                    return Ok(Err(e));
                }
                continue;
            }
            let compatible = catalog()
                .check_replication(fresh.flavor, new.version, i.version)
                .is_ok_and(|v| v.allowed);
            // A replica without a schema change the new primary has cannot
            // take its rows.
            let lacks_change = self.target.schema.as_ref().is_some_and(|c| {
                new.schema.as_deref() == Some(c.id.as_str())
                    && now_i.schema.as_deref() != Some(c.id.as_str())
            });
            if !compatible || lacks_change {
                // Out of the read pool until the rollout upgrades or alters it.
                if let Err(e) = rt.drain(i.ordinal).await {
                    return Ok(Err(e));
                }
                continue;
            }
            if let Err(e) = rt.repoint(i.ordinal, run.to).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}

/// Runs the futures together and gives their outputs in order (the engine
/// has no executor of its own and depends on no async library but the trait).
async fn join_all<'a, T>(
    futures: Vec<std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>>,
) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
