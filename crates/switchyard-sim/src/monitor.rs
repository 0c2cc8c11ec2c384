//! The independent monitor: every instance observed every 50 ms from
//! connections of the monitor's own (never the engine's view), and the
//! engine's record read from the state file, checking:
//!
//! - **one-writer**: at most one instance is a writer (a sample with two is
//!   confirmed by sampling those again at once). A writer is an instance
//!   that would accept a privileged client's commit and is not a replica
//!   (has no source configured), or any instance with `read_only` off.
//!   Whether a privileged commit would be accepted is not judged from
//!   `read_only`, which privileged clients pass on MariaDB: on MySQL it is
//!   `super_read_only` off; on MariaDB the monitor's own probe commits (see
//!   [`FenceProbe`]), which the fence's backup lock (`BACKUP STAGE
//!   BLOCK_COMMIT`) refuses at once. Not counted: the instance the engine has
//!   taken out of service for a restart (its intent a drain or a restart, or
//!   a switchover past `Repointed`, whose old primary is restarted and
//!   rejoins as a replica): no traffic reaches it, and on MariaDB nothing but
//!   the engine's own connection could fence a server across its restart;
//! - **no-writer**: zero instances that take an application's writes
//!   (`read_only` off and the probe's commit accepted) only while the record
//!   shows a switchover within its deadline (plus [`UNDO_GRACE`] to undo it)
//!   or a failover not yet promoted, or while the primary is down by a
//!   scenario's fault (three samples in a
//!   row, so one slow answer is not a verdict);
//! - **newer-source**: no instance replicates (either thread running) from a source running a newer
//!   version (two samples in a row);
//! - **out-of-service**: the instances down (not by a fault, and not a failed
//!   primary the engine failed over or an instance it quarantined) together with
//!   the one the engine's intent names number at most one (two samples in a row);
//! - **recovery**: an instance a fault killed comes back on the version it ran;
//! - **monitor**: the monitor itself sampled (it did not panic, and never
//!   went longer than [`MonitorConfig::max_interval`] between two samples).
//!
//! On a Galera cluster every node takes writes and none replicates from
//! another: `one-writer` and `no-writer` are not checked there (nor are the
//! fence probes run), the others are.
//!
//! Lost writes, split brain and the write gap are checked at the end by the
//! runner, from the load's ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use switchyard_local::state::StateFile;
use switchyard_local::timeline::{Event, Timeline};
use switchyard_mysql::{Instance, Observation, Timeouts};
use switchyard_plan::record::{FailoverStep, Intent, SwitchoverStep};
use switchyard_plan::versions::Flavor;
use switchyard_plan::{Record, versions::Version};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::fault::FaultPlan;

/// A semi-synchronous wait at least this long counts as one that never
/// falls back to asynchronous replication (the local cluster sets a day).
const NEVER_FALLS_BACK: Duration = Duration::from_secs(3600);

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When, ms after the monitor started.
    pub at_ms: u64,
    /// The check: `one-writer`, `no-writer`, `newer-source`,
    /// `out-of-service`, `recovery`, `monitor`, or the runner's
    /// `lost-writes`, `split-brain`, `partitioned-acked`, `write-gap`, `converged`, `fault`,
    /// `expected-effect`.
    pub check: &'static str,
    /// What was seen.
    pub detail: String,
}

/// What the monitor saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MonitorReport {
    /// Samples taken.
    pub samples: u64,
    /// The longest time between the starts of two samples, ms.
    pub max_interval_ms: u64,
    /// The broken invariants, in order (a check reports again only after it
    /// held in between).
    pub violations: Vec<Violation>,
    /// Instances killed by a fault that were seen up again, with the version.
    pub recoveries: Vec<(u32, String)>,
    /// The largest replication lag seen on any replica, seconds.
    pub max_lag_s: u64,
    /// Replication errors seen on replicas (`Last_SQL_Errno` or
    /// `Last_IO_Errno`), by error number, with the instance first seen with it.
    pub replication_errors: BTreeMap<u32, u32>,
    /// Instances seen writable whose commits could not be acknowledged
    /// (see [`Seen::commits_block`]), so not counted by `one-writer`.
    pub blocked_writers: BTreeSet<u32>,
}

/// How the monitor samples.
#[derive(Clone, Copy, Debug)]
pub struct MonitorConfig {
    /// The time between two samples.
    pub every: Duration,
    /// The longest time allowed between the starts of two samples (a slower
    /// monitor is a `monitor` violation: it could miss what it checks).
    pub max_interval: Duration,
    /// A Galera cluster: every node takes writes and none replicates from
    /// another, so `one-writer` and `no-writer` are not checked (the
    /// router's primary endpoint picks the one writer); the others are.
    pub galera: bool,
}

impl Default for MonitorConfig {
    /// Every 50 ms; at most 3 s between samples (a sample waits at most
    /// 0.5 s to connect and 1 s per statement, and a confirmation samples
    /// again).
    fn default() -> Self {
        MonitorConfig {
            every: Duration::from_millis(50),
            max_interval: Duration::from_secs(3),
            galera: false,
        }
    }
}

/// The monitor's probe of whether an instance takes a privileged client's
/// commit: a connection of the monitor's own (the operator's account, which
/// a fence does not close) commits one row of
/// `switchyard_monitor.fence_probe` with the binary log off (no GTID, nothing
/// replicated) and `lock_wait_timeout = 0`. On MariaDB the fence's
/// `BACKUP STAGE BLOCK_COMMIT` refuses that commit at once (error 1205)
/// while `read_only` does not; measured on MariaDB 10.5, 10.11 and 11.8:
/// the lock's holder shows in the process list only as an idle connection,
/// `performance_schema.metadata_locks` is empty with `performance_schema`
/// off, `information_schema.METADATA_LOCK_INFO` needs a plugin the servers
/// here do not ship, and commits to temporary tables are not blocked. Used
/// on MariaDB only: MySQL's `super_read_only` says it.
#[derive(Debug)]
pub struct FenceProbe {
    options: MySqlConnectOptions,
    conn: tokio::sync::Mutex<Option<MySqlConnection>>,
}

impl FenceProbe {
    /// A probe connecting with `options` (the operator account).
    pub fn new(options: MySqlConnectOptions) -> Self {
        FenceProbe {
            options,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn exec(conn: &mut MySqlConnection, sql: &'static str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sql).execute(&mut *conn).await.map(drop)
    }

    async fn connect(&self) -> Result<MySqlConnection, sqlx::Error> {
        let mut conn = MySqlConnection::connect_with(&self.options).await?;
        Self::exec(&mut conn, "SET SESSION sql_log_bin = 0").await?;
        Self::exec(&mut conn, "SET SESSION lock_wait_timeout = 0").await?;
        Ok(conn)
    }

    /// Makes the probe's table (binary log off: on this instance only).
    async fn create(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
        Self::exec(conn, "CREATE DATABASE IF NOT EXISTS switchyard_monitor").await?;
        Self::exec(
            conn,
            "CREATE TABLE IF NOT EXISTS switchyard_monitor.fence_probe \
             (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB",
        )
        .await?;
        Self::exec(
            conn,
            "INSERT IGNORE INTO switchyard_monitor.fence_probe VALUES (1, 0)",
        )
        .await
    }

    /// Whether a privileged commit is accepted now: `Some(false)` when the
    /// server refuses it (lock wait, read-only), `None` when the probe could
    /// not tell (no connection).
    pub async fn accepts_commit(&self) -> Option<bool> {
        let bound = Duration::from_secs(1);
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = tokio::time::timeout(bound, self.connect()).await.ok()?.ok();
        }
        let conn = slot.as_mut()?;
        let update = "UPDATE switchyard_monitor.fence_probe SET n = n + 1 WHERE id = 1";
        let mut result = tokio::time::timeout(bound, Self::exec(conn, update)).await;
        if let Ok(Err(sqlx::Error::Database(e))) = &result
            && e.code().as_deref() == Some("42S02")
        {
            // No table yet (a first probe): make it, then probe.
            if tokio::time::timeout(bound, Self::create(conn))
                .await
                .is_ok()
            {
                result = tokio::time::timeout(bound, Self::exec(conn, update)).await;
            }
        }
        match result {
            Ok(Ok(())) => Some(true),
            Ok(Err(sqlx::Error::Database(_))) => Some(false),
            _ => {
                *slot = None;
                None
            }
        }
    }
}

/// One instance as a sample saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// What it said about itself (`None`: down or unreachable).
    pub obs: Option<Observation>,
    /// Whether a privileged client's commit would be accepted (MariaDB:
    /// the probe; MySQL: `super_read_only` off); `None` when unknown.
    pub accepts_privileged: Option<bool>,
    /// How many other instances of the same sample had their receiver
    /// connected to this one (`Replica_IO_Running: Yes` with this instance's
    /// port as their source); `None` when the sample did not cover them all.
    pub receivers: Option<u64>,
}

impl Seen {
    /// Whether the instance is a writer for `one-writer`: it takes a
    /// privileged client's commit and is not a replica (no source
    /// configured), or takes anyone's (`read_only` off).
    pub fn is_writer(&self) -> bool {
        let Some(obs) = &self.obs else { return false };
        if self.accepts_privileged == Some(false) || self.commits_block() {
            return false;
        }
        !obs.read_only || obs.replication.is_none()
    }

    /// Whether no commit it writes to its binary log can be acknowledged: a
    /// semi-synchronous source that waits losslessly for `k` replicas (never
    /// falling back, see `SemiSyncState::ack_replicas`) with fewer than `k`
    /// connected. A failed primary that runs again after a failover (its
    /// replicas detached) is one until the engine fences it: every client's
    /// commit blocks there, none is acknowledged (the ledger's split-brain
    /// check is the proof). Only a privileged session with its binary log
    /// off could commit there, and nothing it writes replicates.
    ///
    /// The replicas connected are the fewer of the source's own count and
    /// the receivers the replicas report ([`Seen::receivers`]): a MySQL 9.7
    /// source that runs again after a freeze still counts its detached
    /// replicas' dump threads as semi-synchronous clients until each fails
    /// to send to its closed connection (measured: up to about 2 s after the
    /// thaw), though no replica is there to acknowledge anything.
    pub fn commits_block(&self) -> bool {
        let Some(s) = self.obs.as_ref().and_then(|o| o.semi_sync.as_ref()) else {
            return false;
        };
        let mut connected = s.source_clients.unwrap_or(0);
        if let Some(receivers) = self.receivers {
            connected = connected.min(receivers);
        }
        s.ack_replicas(NEVER_FALLS_BACK)
            .is_some_and(|k| connected < u64::from(k))
    }

    /// Whether an application (no special privilege) can write to it:
    /// `read_only` off and the fence's lock not held.
    pub fn takes_application_writes(&self) -> bool {
        self.obs.as_ref().is_some_and(|o| !o.read_only) && self.accepts_privileged != Some(false)
    }
}

/// A running monitor.
#[derive(Debug)]
pub struct Monitor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    report: Arc<Mutex<MonitorReport>>,
    started: Instant,
}

impl Monitor {
    /// Starts sampling every `every` the instances behind `handles` (by
    /// ordinal, listening on `ports`), reading the engine's record from
    /// `state`. The handles are the monitor's own (made for it, not shared
    /// with an engine). `timeline` is the cluster's record of process starts,
    /// read only to tell a supervisor's recovery too short for the sampling
    /// to see from an instance started on the wrong version.
    ///
    /// `probes` are the monitor's fence probes, one per instance in ordinal
    /// order (see [`FenceProbe`]).
    pub fn start(
        handles: Vec<Instance>,
        probes: Vec<FenceProbe>,
        ports: &[u16],
        state: StateFile,
        timeline: Arc<Timeline>,
        plan: Arc<FaultPlan>,
        config: MonitorConfig,
    ) -> Monitor {
        let handles: Vec<Instance> = handles
            .into_iter()
            .map(|h| {
                h.with_timeouts(Timeouts {
                    connect: Duration::from_millis(500),
                    statement: Duration::from_secs(1),
                    ..Timeouts::default()
                })
            })
            .collect();
        let (stop, rx) = watch::channel(false);
        let report = Arc::new(Mutex::new(MonitorReport::default()));
        let watch = Watch {
            handles,
            probes: probes.into_iter().map(Arc::new).collect(),
            ports: ports.to_vec(),
            state,
            timeline,
            plan,
            report: Arc::clone(&report),
            galera: config.galera,
        };
        let task = tokio::spawn(watch.run(config.every, rx));
        Monitor {
            stop,
            task,
            report,
            started: Instant::now(),
        }
    }

    /// What the monitor has seen so far.
    pub fn snapshot(&self) -> MonitorReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops sampling and returns what was seen, with a `monitor` violation
    /// when it sampled nothing, went longer than `max_interval` between two
    /// samples, or panicked.
    pub async fn stop(self, max_interval: Duration) -> MonitorReport {
        let _ = self.stop.send(true);
        let joined = self.task.await;
        let mut report = self
            .report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut broken = |detail: String| {
            report.violations.push(Violation {
                at_ms,
                check: "monitor",
                detail,
            });
        };
        if let Err(e) = joined {
            broken(format!("the monitor stopped early: {e}"));
        }
        if report.samples == 0 {
            broken("the monitor took no sample".into());
        }
        let bound = u64::try_from(max_interval.as_millis()).unwrap_or(u64::MAX);
        if report.max_interval_ms > bound {
            broken(format!(
                "the monitor went {} ms between two samples (bound {bound} ms): it could miss what it checks",
                report.max_interval_ms
            ));
        }
        report
    }
}

struct Watch {
    handles: Vec<Instance>,
    probes: Vec<Arc<FenceProbe>>,
    ports: Vec<u16>,
    state: StateFile,
    timeline: Arc<Timeline>,
    plan: Arc<FaultPlan>,
    report: Arc<Mutex<MonitorReport>>,
    galera: bool,
}

impl Watch {
    /// The version of the first process start of `o` after a fault took it
    /// down, from the cluster's record of process starts (by the supervisor,
    /// the engine's recovery or a restart). A recovery can be shorter than a
    /// sample when the engine's restart is next (it shuts the recovered
    /// process down cleanly and starts the next version at once), so the
    /// sampling alone may first see the next version.
    fn first_start_after_fault(&self, o: u32) -> Option<Version> {
        let down = self.plan.taken_down_at(o)?;
        let hash = self
            .timeline
            .events()
            .into_iter()
            .find_map(|t| match t.event {
                Event::Started {
                    ordinal,
                    error: None,
                    revision,
                    ..
                } if ordinal == o && t.at >= down => Some(revision.hash),
                _ => None,
            })?;
        let doc = self.state.read().ok()?;
        doc.cluster.history.by_hash(&hash).map(|e| e.version)
    }
}

/// Consecutive failing samples per check, and whether it was reported.
#[derive(Default)]
struct Streak {
    count: u32,
    reported: bool,
}

impl Streak {
    /// Counts a sample; true when the check fails for `needed` samples in a
    /// row and was not reported in this stretch.
    fn see(&mut self, failing: bool, needed: u32) -> bool {
        if !failing {
            *self = Streak::default();
            return false;
        }
        self.count += 1;
        if self.count >= needed && !self.reported {
            self.reported = true;
            return true;
        }
        false
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long after a switchover's deadline the engine may take to undo it
/// (notice the deadline passed, then lift the old primary's fence).
pub const UNDO_GRACE: Duration = Duration::from_secs(3);

fn in_switchover(record: Option<&Record>) -> bool {
    let grace = u64::try_from(UNDO_GRACE.as_millis()).unwrap_or(u64::MAX);
    match record.and_then(|r| r.intent.as_ref()) {
        Some(Intent::Switchover { deadline, .. }) => unix_ms() <= deadline.0.saturating_add(grace),
        // A failover before its promotion: the failed primary, fenced if it
        // came back, takes no write until the candidate does (how long that
        // lasts is the scenario's write-gap bound).
        Some(Intent::Failover { step, .. }) => *step < FailoverStep::Promoted,
        _ => false,
    }
}

/// The instance the engine's record takes out of service for a restart:
/// a drained or restarting instance, or the old primary of a switchover past
/// `Repointed`.
fn taken_out(record: &Record) -> Option<u32> {
    match record.intent.as_ref()? {
        Intent::Drained { ordinal, .. } | Intent::Restarting { ordinal, .. } => Some(*ordinal),
        Intent::Switchover {
            from,
            step: SwitchoverStep::Repointed,
            ..
        } => Some(*from),
        _ => None,
    }
}

impl Watch {
    async fn sample(&self, which: &[u32]) -> Vec<(u32, Seen)> {
        let mut set = JoinSet::new();
        for o in which {
            let Some(i) = usize::try_from(*o).ok() else {
                continue;
            };
            let Some(h) = self.handles.get(i) else {
                continue;
            };
            let (o, h, probe) = (*o, h.clone(), self.probes.get(i).cloned());
            set.spawn(async move {
                let obs = h.observe().await.ok();
                let accepts_privileged = match &obs {
                    None => None,
                    Some(x) if x.version.flavor == Flavor::Mysql => {
                        Some(!x.super_read_only.unwrap_or(false))
                    }
                    Some(_) => match probe {
                        Some(p) => p.accepts_commit().await,
                        None => None,
                    },
                };
                (
                    o,
                    Seen {
                        obs,
                        accepts_privileged,
                        receivers: None,
                    },
                )
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(seen) = joined {
                out.push(seen);
            }
        }
        out.sort_by_key(|(o, _)| *o);
        if out.len() == self.handles.len() {
            let receivers: Vec<u64> = out
                .iter()
                .map(|(o, _)| {
                    let port = usize::try_from(*o).ok().and_then(|i| self.ports.get(i));
                    let count = out
                        .iter()
                        .filter(|(other, x)| {
                            other != o
                                && x.obs
                                    .as_ref()
                                    .and_then(|obs| obs.replication.as_ref())
                                    .is_some_and(|r| {
                                        r.is_connected() && Some(&r.source_port) == port
                                    })
                        })
                        .count();
                    u64::try_from(count).unwrap_or(u64::MAX)
                })
                .collect();
            for ((_, seen), n) in out.iter_mut().zip(receivers) {
                seen.receivers = Some(n);
            }
        }
        out
    }

    fn update(&self, change: impl FnOnce(&mut MonitorReport)) {
        change(&mut self.report.lock().unwrap_or_else(PoisonError::into_inner));
    }

    async fn run(self, every: Duration, mut stop: watch::Receiver<bool>) {
        let started = Instant::now();
        let mut last_sample: Option<Instant> = None;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let all: Vec<u32> = (0..u32::try_from(self.handles.len()).unwrap_or(0)).collect();
        let (mut one, mut none, mut newer, mut out) = (
            Streak::default(),
            Streak::default(),
            Streak::default(),
            Streak::default(),
        );
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let now = Instant::now();
            let interval = last_sample.map(|t| now.duration_since(t));
            last_sample = Some(now);
            // Only an instance already taken down when the sample began can
            // be seen up again by it: a sample under way when a fault fires
            // may still reach the old process.
            let down_before = self.plan.injected();
            let before = self.state.read().ok();
            let seen = self.sample(&all).await;
            let after = self.state.read().ok();
            let at_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut found: Vec<Violation> = Vec::new();
            let mut recoveries = Vec::new();
            let mut violate = |check: &'static str, detail: String| {
                found.push(Violation {
                    at_ms,
                    check,
                    detail,
                });
            };
            let injected = self.plan.injected();

            // Instances a fault killed, seen up again.
            for (o, x) in &seen {
                if let (Some(obs), Some(expected), true) =
                    (&x.obs, injected.get(o), down_before.contains_key(o))
                {
                    let v = obs.version.version;
                    if v != *expected && self.first_start_after_fault(*o) != Some(*expected) {
                        violate(
                            "recovery",
                            format!("instance {o} came back on {v}, not on {expected}"),
                        );
                    }
                    recoveries.push((*o, v.to_string()));
                    self.plan.recovered(*o);
                }
            }

            // Replication lag and errors, for the scenarios' effects.
            let mut lag = 0;
            let mut errors = Vec::new();
            for (o, x) in &seen {
                if let Some(r) = x.obs.as_ref().and_then(|obs| obs.replication.as_ref()) {
                    lag = lag.max(r.seconds_behind.unwrap_or(0));
                    for errno in [r.last_sql_errno, r.last_io_errno] {
                        if errno != 0 {
                            errors.push((errno, *o));
                        }
                    }
                }
            }

            // At most one writer, confirmed.
            let resting = [&before, &after]
                .iter()
                .filter_map(|d| d.as_ref().and_then(|d| taken_out(&d.record)))
                .collect::<BTreeSet<u32>>();
            let mut writers: Vec<u32> = seen
                .iter()
                .filter(|(o, x)| x.is_writer() && !resting.contains(o))
                .map(|(o, _)| *o)
                .collect();
            for (o, x) in &seen {
                let open = x.obs.as_ref().is_some_and(|obs| {
                    (!obs.read_only || obs.replication.is_none())
                        && x.accepts_privileged != Some(false)
                });
                if open && x.commits_block() {
                    self.update(|r| {
                        r.blocked_writers.insert(*o);
                    });
                }
            }
            let mut why = String::new();
            if self.galera {
                writers.clear();
            }
            if writers.len() > 1 {
                // Every instance again, so that the replicas' receivers are seen
                // at the same time as the writers (see `Seen::commits_block`).
                let again = self.sample(&all).await;
                writers = again
                    .iter()
                    .filter(|(o, x)| x.is_writer() && !resting.contains(o))
                    .map(|(o, _)| *o)
                    .collect();
                why = again
                    .iter()
                    .filter_map(|(o, x)| {
                        x.obs.as_ref().map(|obs| {
                            format!(
                                "{o}: read_only={} super_read_only={:?} privileged commit accepted={:?} \
                                 commits block={} receivers={:?} source={:?}",
                                obs.read_only,
                                obs.super_read_only,
                                x.accepts_privileged,
                                x.commits_block(),
                                x.receivers,
                                obs.replication.as_ref().map(|r| r.source_port)
                            )
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            if one.see(writers.len() > 1, 1) {
                violate(
                    "one-writer",
                    format!("instances {writers:?} all writable ({why})"),
                );
            }
            let writable: Vec<u32> = seen
                .iter()
                .filter(|(_, x)| x.takes_application_writes())
                .map(|(o, _)| *o)
                .collect();

            // Zero writable only inside a switchover's deadline or while a
            // fault has the primary down.
            let primary = after.as_ref().map(|d| d.cluster.primary);
            let excused = in_switchover(before.as_ref().map(|d| &d.record))
                || in_switchover(after.as_ref().map(|d| &d.record))
                || primary.is_some_and(|p| injected.contains_key(&p));
            if none.see(writable.is_empty() && !excused && !self.galera, 3) {
                violate(
                    "no-writer",
                    format!(
                        "no instance takes writes outside a switchover (primary: {primary:?}, \
                         record intent: {:?}, halted: {:?})",
                        after.as_ref().and_then(|d| d.record.intent.as_ref()),
                        after
                            .as_ref()
                            .and_then(|d| d.record.halted.as_ref())
                            .map(|h| h.reason.category())
                    ),
                );
            }

            // No instance replicates from a newer source.
            let version_of = |o: u32| -> Option<Version> {
                seen.iter()
                    .find(|(s, _)| *s == o)
                    .and_then(|(_, x)| x.obs.as_ref().map(|obs| obs.version.version))
            };
            let mut newer_pairs = Vec::new();
            for (o, x) in &seen {
                let Some(obs) = &x.obs else { continue };
                // Configured but not started (a former primary demoted before its
                // successor's promotion) fetches and applies nothing.
                let Some(r) = obs.replication.as_ref().filter(|r| {
                    r.sql_running || r.io_thread != switchyard_mysql::IoThreadState::Stopped
                }) else {
                    continue;
                };
                let source = self
                    .ports
                    .iter()
                    .position(|p| *p == r.source_port)
                    .and_then(|i| u32::try_from(i).ok());
                if let Some(s) = source
                    && let Some(sv) = version_of(s)
                    && sv > obs.version.version
                {
                    newer_pairs.push(format!(
                        "instance {o} ({}) replicates from instance {s} ({sv})",
                        obs.version.version
                    ));
                }
            }
            if newer.see(!newer_pairs.is_empty(), 2) {
                violate("newer-source", newer_pairs.join("; "));
            }

            // At most one instance out of service by the engine. A failed primary the
            // engine failed over, and a quarantined instance, serve nothing: the runtime
            // may stop one (a returning failed primary whose commits wait for an
            // acknowledgement is killed rather than fenced) without taking service away.
            let failed = |o: &u32| {
                after.as_ref().is_some_and(|d| {
                    d.record.failed_over.contains(o) || d.record.quarantined.contains_key(o)
                })
            };
            let mut down: BTreeSet<u32> = seen
                .iter()
                .filter(|(o, x)| x.obs.is_none() && !injected.contains_key(o) && !failed(o))
                .map(|(o, _)| *o)
                .collect();
            let intent = after.as_ref().and_then(|d| d.record.intent.as_ref());
            if let Some(i) = intent {
                down.insert(i.ordinal());
            }
            if out.see(down.len() > 1, 2) {
                violate(
                    "out-of-service",
                    format!("instances {down:?} out of service at once (intent: {intent:?})"),
                );
            }
            self.update(|r| {
                r.samples += 1;
                if let Some(i) = interval {
                    r.max_interval_ms = r
                        .max_interval_ms
                        .max(u64::try_from(i.as_millis()).unwrap_or(u64::MAX));
                }
                r.violations.extend(found);
                r.recoveries.extend(recoveries);
                r.max_lag_s = r.max_lag_s.max(lag);
                for (errno, o) in errors {
                    r.replication_errors.entry(errno).or_insert(o);
                }
            });
        }
    }
}
