//! Switchover: move the primary role from one instance to a caught-up replica without losing
//! an acknowledged write and without two writable primaries.
//!
//! [`switchover()`] runs these steps, reporting each to a [`StepSink`] as it completes so that
//! a caller can record it durably and, after a crash, resume or undo from the last step:
//!
//! 1. **Pre-flight** (nothing changes): waits, at most [`SwitchoverPolicy::preflight_wait`],
//!    until no transaction on the old primary has been open longer than
//!    [`SwitchoverPolicy::max_transaction_seconds`] and the candidate replicates with both
//!    threads running, lags at most [`SwitchoverPolicy::max_lag_seconds`] and has no errant
//!    transactions; otherwise it refuses with the reason ([`Error::LongTransaction`],
//!    [`Error::CandidateNotReady`]).
//! 2. **Fence** the old primary ([`Instance::fence`], [`SwitchoverStep::Fenced`]) and close its
//!    client connections. The fence must stop *every* client:
//!    - MySQL: `super_read_only = 1` stops every account, `SUPER` included.
//!    - MariaDB: `read_only = 1` does not stop accounts with `READ ONLY ADMIN` (which `ALL
//!      PRIVILEGES` carries); a hand-driven switchover lost 1,039 of 12,266 acknowledged writes
//!      of such an account to it. MariaDB 10.5 to 11.8 have no `super_read_only` (11.8.6
//!      refuses `read_only = NO_LOCK_NO_ADMIN`), so the fence adds the backup lock
//!      `BACKUP STAGE BLOCK_COMMIT`, held on a dedicated connection: a commit from any
//!      account, privileged or not, waits for it (it never fails on its own, so nothing is
//!      acknowledged) until its connection is killed, which the fence does right after taking
//!      the lock. `FLUSH TABLES WITH READ LOCK` holds the same way but first waits for every
//!      open table to close (about 100 ms under the test load, against a few ms for
//!      `BLOCK_COMMIT`, whose earlier stages are taken before the fence). Locking the
//!      accounts was rejected because it changes the users' accounts and must be undone
//!      exactly; `read_only` plus killing connections alone was rejected because a privileged
//!      client that reconnects writes again.
//! 3. **Catch up**: waits until the candidate has executed the old primary's fenced position
//!    ([`Instance::wait_caught_up`]), then checks that the old primary's position has not
//!    moved ([`Error::FenceBreached`] otherwise), [`SwitchoverStep::CaughtUp`].
//! 4. **Promote** the candidate ([`Instance::promote`], [`SwitchoverStep::Promoted`]).
//! 5. **Repoint** the other replicas, and the old primary as a replica of the new one
//!    ([`SwitchoverStep::Repointed`] for each) unless the caller keeps it out
//!    ([`SwitchoverPolicy::repoint_old_primary`]) or it runs an older version than the new
//!    primary: then it stays fenced (on MariaDB as long as the old primary's [`Instance`]
//!    handle lives).
//!
//! **Client traffic** (a Service, a proxy) must move to the new primary when the sink
//! receives [`SwitchoverStep::Promoted`], before `record` returns: the old primary's fence
//! lock is released when it is repointed, and on MariaDB `read_only` alone does not stop a
//! privileged client that still reaches it.
//!
//! If any step before promotion fails, the fence is lifted so that the old primary takes
//! writes again, and [`Error::SwitchoverAbandoned`] says why. The steps before promotion must
//! finish by `deadline - rollback_reserve`, which leaves time to lift the fence: the old
//! primary is never left read-only past the deadline because of a candidate that does not
//! answer or does not catch up.

use std::time::Duration;

use serde::Serialize;
use switchyard_plan::gtid::GtidSet;
use tokio::time::Instant;

use crate::error::Error;
use crate::fence::{FenceMechanism, FenceReport};
use crate::instance::Instance;
use crate::observe::{IoThreadState, Observation, TransactionInfo};
use crate::replication::{PromoteStage, ReplicationCredentials, SourceAddr};

/// A completed step of a switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SwitchoverStep {
    /// The old primary is fenced: nothing commits on it any more.
    Fenced {
        /// The old primary's name.
        old: String,
        /// How the fence holds.
        mechanism: FenceMechanism,
        /// Client connections killed.
        killed_connections: u32,
        /// The old primary's GTID position once fenced.
        position: GtidSet,
    },
    /// The candidate has executed everything the old primary committed.
    CaughtUp {
        /// The candidate's name.
        new: String,
        /// The position it reached (the old primary's fenced position).
        position: GtidSet,
    },
    /// The candidate is the writable primary.
    Promoted {
        /// The new primary's name.
        new: String,
    },
    /// An instance now replicates from the new primary.
    Repointed {
        /// The repointed instance's name.
        instance: String,
        /// Its new source.
        to: SourceAddr,
    },
}

impl SwitchoverStep {
    /// The step's name: `fenced`, `caught_up`, `promoted` or `repointed`.
    pub fn name(&self) -> &'static str {
        match self {
            SwitchoverStep::Fenced { .. } => "fenced",
            SwitchoverStep::CaughtUp { .. } => "caught_up",
            SwitchoverStep::Promoted { .. } => "promoted",
            SwitchoverStep::Repointed { .. } => "repointed",
        }
    }
}

/// Receives each switchover step as it completes, to record it.
///
/// An error before promotion abandons the switchover (the fence is lifted); after promotion
/// it is reported once the remaining steps have run.
#[async_trait::async_trait]
pub trait StepSink: Send {
    /// Records `step`.
    ///
    /// # Errors
    /// Whatever kept the step from being recorded, as text for [`Error::StepNotRecorded`].
    async fn record(&mut self, step: &SwitchoverStep) -> Result<(), String>;
}

#[async_trait::async_trait]
impl StepSink for Vec<SwitchoverStep> {
    async fn record(&mut self, step: &SwitchoverStep) -> Result<(), String> {
        self.push(step.clone());
        Ok(())
    }
}

#[async_trait::async_trait]
impl<F> StepSink for F
where
    F: FnMut(&SwitchoverStep) + Send,
{
    async fn record(&mut self, step: &SwitchoverStep) -> Result<(), String> {
        self(step);
        Ok(())
    }
}

/// Limits and choices for a switchover.
#[derive(Clone, Debug)]
pub struct SwitchoverPolicy {
    /// Longest a transaction may have been open on the old primary (seconds); the pre-flight
    /// waits for longer ones to end and refuses if they do not.
    pub max_transaction_seconds: u64,
    /// Largest replication lag of the candidate (seconds) the pre-flight accepts.
    pub max_lag_seconds: u64,
    /// How long the pre-flight waits for its conditions before refusing (also bounded by the
    /// deadline).
    pub preflight_wait: Duration,
    /// Time kept back before the deadline to lift the fence if the switchover is abandoned.
    pub rollback_reserve: Duration,
    /// Whether the old primary becomes a replica of the new one. Pass `false` while the old
    /// primary runs an older version than the new one (it then stays fenced); it is also
    /// kept out whenever the observed versions say so.
    pub repoint_old_primary: bool,
    /// The replication account, needed to make the old primary a replica; other replicas keep
    /// the account they have. `None` keeps the old primary fenced and not repointed.
    pub replication: Option<ReplicationCredentials>,
    /// The address replicas use to reach the new primary; `None` uses the candidate's
    /// [`Instance::addr`].
    pub new_primary_source_addr: Option<SourceAddr>,
}

impl Default for SwitchoverPolicy {
    /// 10 s transactions, 5 s lag, 5 s pre-flight wait, 1 s rollback reserve, repoint the old
    /// primary (when credentials are given).
    fn default() -> Self {
        SwitchoverPolicy {
            max_transaction_seconds: 10,
            max_lag_seconds: 5,
            preflight_wait: Duration::from_secs(5),
            rollback_reserve: Duration::from_secs(1),
            repoint_old_primary: true,
            replication: None,
            new_primary_source_addr: None,
        }
    }
}

/// What became of the old primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OldPrimaryRole {
    /// It replicates from the new primary.
    Replica,
    /// It stays fenced, not replicating, with the reason.
    Fenced {
        /// Why it was not repointed.
        reason: String,
    },
}

/// What a switchover did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SwitchoverOutcome {
    /// The old primary's position at the fence, which the new primary has executed.
    pub fenced_position: GtidSet,
    /// Client connections killed on the old primary.
    pub killed_connections: u32,
    /// Time from the fence's first write-stopping statement to the end of the promotion: how
    /// long no primary took writes.
    pub unavailable: Duration,
    /// Time spent in the pre-flight.
    pub preflight: Duration,
    /// Time writes were stopped while fencing the old primary and closing its clients.
    pub fence: Duration,
    /// Time from the fence until the candidate had caught up (and the fence was checked).
    pub catch_up: Duration,
    /// Time spent promoting the candidate.
    pub promote: Duration,
    /// What became of the old primary.
    pub old_primary: OldPrimaryRole,
    /// The instances repointed to the new primary (the old primary included when repointed).
    pub repointed: Vec<String>,
}

/// Moves the primary role from `old` to `new` and repoints `others`, finishing the steps
/// before promotion by `deadline - policy.rollback_reserve`. See the [module](self) docs.
///
/// # Errors
/// - Pre-flight refusals ([`Error::LongTransaction`], [`Error::CandidateNotReady`], or the
///   connection error that kept it from observing): nothing was changed.
/// - [`Error::SwitchoverAbandoned`]: a step before promotion failed; the fence was lifted
///   unless `fence_lifted` says otherwise.
/// - [`Error::RepointIncomplete`]: the new primary takes writes but some instances could not be
///   repointed (or a step after promotion could not be recorded).
pub async fn switchover(
    old: &Instance,
    new: &Instance,
    others: &[Instance],
    deadline: std::time::Instant,
    policy: &SwitchoverPolicy,
    sink: &mut dyn StepSink,
) -> Result<SwitchoverOutcome, Error> {
    let deadline = Instant::from_std(deadline);
    let work_deadline = deadline
        .checked_sub(policy.rollback_reserve)
        .unwrap_or(deadline);
    let started = Instant::now();
    let preflight_deadline = work_deadline.min(started + policy.preflight_wait);
    let (old_obs, new_obs) = preflight(
        old,
        new,
        !others.is_empty(),
        policy,
        preflight_deadline,
        work_deadline,
    )
    .await?;
    let preflight_time = started.elapsed();

    // 2. Fence.
    let fence_started = Instant::now();
    let fenced: FenceReport = match old.fence_until(Some(work_deadline)).await {
        Ok(report) => report,
        Err(e) => return Err(abandon(old, new, e, deadline).await),
    };
    let fence_time = fenced.blocking;
    let writes_stopped = Instant::now()
        .checked_sub(fenced.blocking)
        .unwrap_or(fence_started);
    let step = SwitchoverStep::Fenced {
        old: old.name().to_owned(),
        mechanism: fenced.mechanism,
        killed_connections: fenced.killed_connections,
        position: fenced.position.clone(),
    };
    if let Err(e) = record(sink, &step).await {
        return Err(abandon(old, new, e, deadline).await);
    }

    // 3. Catch up, then check the fence held.
    let catch_up_started = Instant::now();
    if let Err(e) = new
        .wait_caught_up_until(&fenced.position, work_deadline)
        .await
    {
        return Err(abandon(old, new, e, deadline).await);
    }
    match old.binlog_position_until(Some(work_deadline)).await {
        Ok(now) if now == fenced.position => {}
        Ok(now) => {
            let breach = Error::FenceBreached {
                instance: old.label().to_owned(),
                before: fenced.position.clone(),
                after: now,
            };
            return Err(abandon(old, new, breach, deadline).await);
        }
        Err(e) => return Err(abandon(old, new, e, deadline).await),
    }
    let step = SwitchoverStep::CaughtUp {
        new: new.name().to_owned(),
        position: fenced.position.clone(),
    };
    if let Err(e) = record(sink, &step).await {
        return Err(abandon(old, new, e, deadline).await);
    }

    let catch_up_time = catch_up_started.elapsed();

    // 4. Promote.
    let promote_started = Instant::now();
    let mut late_failures: Vec<(String, Error)> = Vec::new();
    match new.promote_until(Some(work_deadline)).await {
        Ok(()) => {}
        // Writable: the switchover stands; the stale source is reported.
        Err((PromoteStage::Writable, e)) => late_failures.push((new.label().to_owned(), e)),
        Err((stage, e)) => {
            return Err(abandon_promotion(old, new, stage, e, deadline).await);
        }
    }
    let unavailable = writes_stopped.elapsed();
    let promote_time = promote_started.elapsed();
    tracing::info!(old = %old, new = %new, ?unavailable, "promoted");
    let promoted = SwitchoverStep::Promoted {
        new: new.name().to_owned(),
    };
    // The sink moves client traffic when it records the promotion; if it could not, clients
    // may still reach the old primary, which then stays fenced.
    let traffic_moved = match record(sink, &promoted).await {
        Ok(()) => true,
        Err(e) => {
            late_failures.push((new.label().to_owned(), e));
            false
        }
    };

    // 5. Repoint.
    let to = policy
        .new_primary_source_addr
        .clone()
        .unwrap_or_else(|| SourceAddr::from(new.addr()));
    let mut repointed = Vec::new();
    for other in others {
        let result = match other.server_version().await {
            Ok(v) if v.flavor == new_obs.version.flavor && v.version < new_obs.version.version => {
                Err(Error::InvalidInput {
                    what: "replica to repoint",
                    reason: format!(
                        "{} runs {v}, older than the new primary's {}: a replica must not be older than its source; upgrade it first",
                        other.label(),
                        new_obs.version
                    ),
                })
            }
            Ok(_) => other.repoint(&to).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                repointed.push(other.name().to_owned());
                let step = SwitchoverStep::Repointed {
                    instance: other.name().to_owned(),
                    to: to.clone(),
                };
                if let Err(e) = record(sink, &step).await {
                    late_failures.push((other.label().to_owned(), e));
                }
            }
            Err(e) => late_failures.push((other.label().to_owned(), e)),
        }
    }
    let keep_out_reason = if !traffic_moved {
        Some("the promotion could not be recorded, so client traffic may still reach it".to_owned())
    } else if !policy.repoint_old_primary {
        Some("the caller keeps it out (repoint_old_primary = false)".to_owned())
    } else if old_obs.version.version < new_obs.version.version {
        Some(format!(
            "it runs {}, older than the new primary's {}",
            old_obs.version, new_obs.version
        ))
    } else if policy.replication.is_none() {
        Some("no replication credentials were given".to_owned())
    } else {
        None
    };
    let old_primary = match (keep_out_reason, &policy.replication) {
        (None, Some(credentials)) => match old.demote_to_replica(&to, credentials).await {
            Ok(()) => {
                repointed.push(old.name().to_owned());
                let step = SwitchoverStep::Repointed {
                    instance: old.name().to_owned(),
                    to: to.clone(),
                };
                if let Err(e) = record(sink, &step).await {
                    late_failures.push((old.label().to_owned(), e));
                }
                OldPrimaryRole::Replica
            }
            Err(e) => {
                let reason = e.to_string();
                late_failures.push((old.label().to_owned(), e));
                OldPrimaryRole::Fenced { reason }
            }
        },
        (reason, _) => OldPrimaryRole::Fenced {
            reason: reason.unwrap_or_default(),
        },
    };
    if let Some((_, first)) = late_failures.first() {
        let first = first.to_string();
        return Err(Error::RepointIncomplete {
            new: new.label().to_owned(),
            failed: late_failures,
            first,
        });
    }
    Ok(SwitchoverOutcome {
        fenced_position: fenced.position,
        killed_connections: fenced.killed_connections,
        unavailable,
        preflight: preflight_time,
        fence: fence_time,
        catch_up: catch_up_time,
        promote: promote_time,
        old_primary,
        repointed,
    })
}

async fn record(sink: &mut dyn StepSink, step: &SwitchoverStep) -> Result<(), Error> {
    sink.record(step)
        .await
        .map_err(|detail| Error::StepNotRecorded {
            step: step.name(),
            detail,
        })
}

/// Lifts the fence after a failure before promotion; the candidate was not touched.
async fn abandon(old: &Instance, new: &Instance, cause: Error, deadline: Instant) -> Error {
    tracing::warn!(old = %old, new = %new, error = %cause, "switchover abandoned; lifting the fence");
    let unfence = old.unfence_until(Some(deadline)).await;
    Error::SwitchoverAbandoned {
        old: old.label().to_owned(),
        new: new.label().to_owned(),
        fence_lifted: unfence.is_ok(),
        unfence_error: unfence.err().map(Box::new),
        source: Box::new(cause),
    }
}

/// The promotion failed: put the candidate back as a read-only replica as far as it got, and
/// lift the fence unless the candidate may have become writable and cannot be made read-only
/// again (two writable primaries are worse than none).
async fn abandon_promotion(
    old: &Instance,
    new: &Instance,
    stage: PromoteStage,
    cause: Error,
    deadline: Instant,
) -> Error {
    let half = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
    let candidate_safe = match stage {
        PromoteStage::Replicating => true,
        PromoteStage::MakingWritable | PromoteStage::Writable => {
            new.make_read_only_until(Some(half)).await.is_ok()
        }
    };
    if !candidate_safe {
        return Error::SwitchoverAbandoned {
            old: old.label().to_owned(),
            new: new.label().to_owned(),
            fence_lifted: false,
            unfence_error: Some(Box::new(Error::CandidateNotReady {
                instance: new.label().to_owned(),
                reason: "its promotion failed while turning read-only off and it could not be made read-only again, so the old primary stays fenced to avoid two writable primaries".to_owned(),
            })),
            source: Box::new(cause),
        };
    }
    // Best effort: the candidate replicates again from the old primary (its source is still
    // configured: the reset comes last). On MariaDB it was fenced to make it read-only for
    // every client; its applier needs the lock gone (it stays read-only, as replicas are).
    new.release_fence_lock().await;
    let _restarted = new.start_replication().await;
    abandon(old, new, cause, deadline).await
}

/// [`Error::LongTransaction`] when `longest` has been open longer than `limit` seconds: the
/// pre-flight's test of the primary, shared by [`switchover()`] and
/// [`Instance::wait_no_long_transaction_by`].
fn long_transaction(
    primary: &Instance,
    longest: Option<&TransactionInfo>,
    limit: u64,
) -> Option<Error> {
    longest
        .filter(|t| t.seconds > limit)
        .map(|t| Error::LongTransaction {
            instance: primary.label().to_owned(),
            thread_id: t.thread_id,
            seconds: t.seconds,
            limit,
        })
}

/// How often a pre-flight looks again. InnoDB refreshes `information_schema.innodb_trx` only
/// when nobody has read it for 0.1 s.
const PREFLIGHT_POLL: Duration = Duration::from_millis(200);

impl Instance {
    /// The switchover pre-flight's long-transaction test, for a runtime that fences the primary
    /// itself: waits until no transaction on this server has been open longer than
    /// `max_transaction_seconds`, looking again every 200 ms, and fails when one still is at
    /// `deadline` (or when the next look would end past it). Nothing is changed.
    ///
    /// # Errors
    /// [`Error::LongTransaction`] naming the thread and how long it has been open; connection
    /// failures and [`Error::Timeout`].
    pub async fn wait_no_long_transaction_by(
        &self,
        max_transaction_seconds: u64,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        let deadline = Instant::from_std(deadline);
        loop {
            let observed = self.longest_transaction_until(Some(deadline)).await?;
            match long_transaction(self, observed.as_ref(), max_transaction_seconds) {
                None => return Ok(()),
                Some(e) if Instant::now() + PREFLIGHT_POLL >= deadline => return Err(e),
                Some(e) => {
                    tracing::info!(instance = %self, reason = %e, "waiting for a long transaction");
                    tokio::time::sleep(PREFLIGHT_POLL).await;
                }
            }
        }
    }
}

async fn preflight(
    old: &Instance,
    new: &Instance,
    has_other_replicas: bool,
    policy: &SwitchoverPolicy,
    until: Instant,
    work_deadline: Instant,
) -> Result<(Observation, Observation), Error> {
    // `until` ends the waiting; each observation may take until the work deadline.
    loop {
        // The candidate first: everything it has replicated is then also in the old
        // primary's later observation, so only real errant transactions show.
        let new_obs = new.observe_until(Some(work_deadline)).await?;
        let old_obs = old.observe_until(Some(work_deadline)).await?;
        let not_ready = |reason: String| Error::CandidateNotReady {
            instance: new.label().to_owned(),
            reason,
        };
        if old_obs.version.flavor != new_obs.version.flavor {
            return Err(not_ready(format!(
                "it runs {} and the primary {}",
                new_obs.version, old_obs.version
            )));
        }
        if !new_obs.log_bin {
            return Err(not_ready(
                "its binary log is off, so no replica could follow it".to_owned(),
            ));
        }
        let errant = new_obs.errant_against(&old_obs)?;
        if !errant.is_empty() {
            return Err(not_ready(format!(
                "it has transactions the primary does not have (errant): {errant}"
            )));
        }
        if has_other_replicas && !new_obs.log_replica_updates {
            return Err(not_ready(
                "log_replica_updates (log_slave_updates) is off, so the other replicas could not receive what it applied from the old primary".to_owned(),
            ));
        }
        let waiting = match &new_obs.replication {
            None => return Err(not_ready("it is not a replica".to_owned())),
            Some(r) if !r.sql_running || r.io_thread == IoThreadState::Stopped => {
                Some(not_ready(format!(
                    "replication is stopped (I/O error {}: {}; SQL error {}: {})",
                    r.last_io_errno, r.last_io_error, r.last_sql_errno, r.last_sql_error
                )))
            }
            Some(r) if r.seconds_behind.is_none_or(|s| s > policy.max_lag_seconds) => {
                Some(not_ready(format!(
                    "it lags {} behind, more than the {} s allowed",
                    r.seconds_behind
                        .map_or("an unknown time".to_owned(), |s| format!("{s} s")),
                    policy.max_lag_seconds
                )))
            }
            Some(_) => None,
        };
        let waiting = match waiting {
            Some(w) => Some(w),
            None => {
                let longest = old.longest_transaction_until(Some(work_deadline)).await?;
                long_transaction(old, longest.as_ref(), policy.max_transaction_seconds)
            }
        };
        match waiting {
            None => return Ok((old_obs, new_obs)),
            Some(reason) if Instant::now() + PREFLIGHT_POLL >= until => {
                return Err(reason);
            }
            Some(reason) => {
                tracing::info!(old = %old, new = %new, %reason, "switchover waits");
                tokio::time::sleep(PREFLIGHT_POLL).await;
            }
        }
    }
}
