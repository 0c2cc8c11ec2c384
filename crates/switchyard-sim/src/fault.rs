//! Fault injection: a [`Faulty`] runtime wraps the engine's runtime and
//! fires a scenario's faults just before or just after the engine's first
//! call of a runtime action; [`FaultPlan::before_step`] fires the faults
//! timed by engine step. Each fault fires once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard_local::LocalCluster;
use switchyard_plan::Record;
use switchyard_plan::decide::{SchemaTarget, WaitReason};
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, StepOutcome};
use switchyard_plan::record::Intent;
use switchyard_plan::topology::{Observed, Revision, Timestamp};
use switchyard_plan::versions::Version;
use tokio::sync::Notify;

use crate::scenario::{FaultDef, Pick, SqlFault, Trigger};

/// A scenario's faults and what they did, shared by every engine of a run
/// and by the monitor.
#[derive(Debug)]
pub struct FaultPlan {
    faults: Vec<(FaultDef, AtomicBool)>,
    target_hash: String,
    /// Instances a fault took down and not seen up again, with the version
    /// each must come back on and when it was taken down.
    injected: Mutex<BTreeMap<u32, (Version, Instant)>>,
    log: Mutex<Vec<String>>,
    engine_killed: Notify,
    /// Paused instances and when they run again.
    paused: Mutex<Vec<(u32, Instant)>>,
}

impl FaultPlan {
    /// The plan for `faults` in a rollout to the revision `target_hash`.
    pub fn new(faults: Vec<FaultDef>, target_hash: String) -> Arc<FaultPlan> {
        Arc::new(FaultPlan {
            faults: faults
                .into_iter()
                .map(|f| (f, AtomicBool::new(false)))
                .collect(),
            target_hash,
            injected: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            engine_killed: Notify::new(),
            paused: Mutex::new(Vec::new()),
        })
    }

    /// What the faults did, in order.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Instances a fault took down that were not seen up again yet, with the
    /// version each must come back on.
    pub fn injected(&self) -> BTreeMap<u32, Version> {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(o, (version, _))| (*o, *version))
            .collect()
    }

    /// When a fault took `ordinal` down (killed or paused it), while it is
    /// not seen up again.
    pub fn taken_down_at(&self, ordinal: u32) -> Option<Instant> {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ordinal)
            .map(|(_, at)| *at)
    }

    /// Records that a fault takes `ordinal` down now, and the version it
    /// must come back on.
    fn take_down(&self, ordinal: u32, version: Version) {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ordinal, (version, Instant::now()));
    }

    /// Notes that `ordinal` was seen up again.
    pub fn recovered(&self, ordinal: u32) {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ordinal);
    }

    /// Whether every fault has fired.
    pub fn all_fired(&self) -> bool {
        self.faults.iter().all(|(_, f)| f.load(Ordering::SeqCst))
    }

    /// Resolves when a fault kills the engine.
    pub async fn engine_killed(&self) {
        self.engine_killed.notified().await;
    }

    fn note(&self, line: String) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    /// Lets paused instances run again: those due, or all with `all`.
    pub fn resume(&self, cluster: &LocalCluster, all: bool) {
        let due: Vec<u32> = {
            let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) =
                paused.drain(..).partition(|(_, at)| all || *at <= now);
            *paused = later;
            due.into_iter().map(|(o, _)| o).collect()
        };
        for o in due {
            let done = usize::try_from(o)
                .ok()
                .and_then(|i| cluster.testbed().instances().get(i))
                .map(switchyard_testbed::Instance::resume);
            self.note(format!("instance {o} resumed (SIGCONT): {done:?}"));
        }
    }

    /// Fires the faults timed before engine step `step`.
    pub async fn before_step(&self, step: u64, cluster: &LocalCluster) {
        self.resume(cluster, false);
        for (f, fired) in &self.faults {
            if f.when == Trigger::BeforeStep(step) && !fired.swap(true, Ordering::SeqCst) {
                self.fire(f, &format!("before step {step}"), cluster).await;
            }
        }
    }

    /// Fires the faults for `action`; true when one killed the engine.
    async fn around(&self, action: &str, after: bool, cluster: &LocalCluster) -> bool {
        let mut kill = false;
        for (f, fired) in &self.faults {
            let hit = match &f.when {
                Trigger::BeforeAction(a) => !after && a == action,
                Trigger::AfterAction(a) => after && a == action,
                Trigger::BeforeStep(_) => false,
            };
            if hit && !fired.swap(true, Ordering::SeqCst) {
                let when = format!("{} {action}", if after { "after" } else { "before" });
                self.fire(f, &when, cluster).await;
                kill |= f.kill_engine;
            }
        }
        kill
    }

    async fn fire(&self, f: &FaultDef, when: &str, cluster: &LocalCluster) {
        if let Some(p) = &f.pause {
            let line = match self.pick(&p.on, cluster) {
                Some((o, version)) => {
                    let done = usize::try_from(o)
                        .ok()
                        .and_then(|i| cluster.testbed().instances().get(i))
                        .map(switchyard_testbed::Instance::pause);
                    if let Some(Ok(())) = done {
                        self.take_down(o, version);
                        self.paused
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((o, Instant::now() + Duration::from_secs(p.resume_after_s)));
                        format!(
                            "{when}: instance {o} paused (SIGSTOP) for {} s",
                            p.resume_after_s
                        )
                    } else {
                        format!("{when}: pausing instance {o} FAILED: {done:?}")
                    }
                }
                None => format!("{when}: no instance matched {:?}", p.on),
            };
            self.note(line);
        }
        if let Some(sql) = &f.sql {
            let line = match self.pick(&sql.on, cluster) {
                Some((o, _)) => match run_sql(cluster, o, sql).await {
                    Ok(()) => format!(
                        "{when}: on instance {o}: {} (session held {} s)",
                        sql.statements.join("; "),
                        sql.hold_s
                    ),
                    Err(e) => format!("{when}: SQL on instance {o} FAILED: {e}"),
                },
                None => format!("{when}: no instance matched {:?}", sql.on),
            };
            self.note(line);
        }
        if let Some(pick) = &f.kill9 {
            match self.pick(pick, cluster) {
                Some((o, version)) => {
                    self.take_down(o, version);
                    let done = usize::try_from(o)
                        .ok()
                        .and_then(|i| cluster.testbed().instances().get(i))
                        .map(switchyard_testbed::Instance::kill9);
                    match done {
                        Some(Ok(())) => {
                            self.note(format!("{when}: kill -9 instance {o} (on {version})"));
                        }
                        other => {
                            self.recovered(o);
                            self.note(format!("{when}: kill -9 instance {o} FAILED: {other:?}"));
                        }
                    }
                }
                None => self.note(format!("{when}: no instance matched {pick:?}")),
            }
        }
        if f.kill_engine {
            self.note(format!("{when}: engine killed"));
        }
    }

    /// The instance `pick` names now, with the version it runs.
    fn pick(&self, pick: &Pick, cluster: &LocalCluster) -> Option<(u32, Version)> {
        let doc = cluster.state().read().ok()?;
        let c = doc.cluster;
        let o = match pick {
            Pick::Primary => Some(c.primary),
            Pick::Candidate => match doc.record.intent {
                Some(Intent::Switchover { to, .. }) => Some(to),
                _ => None,
            },
            Pick::ReplicaNotUpgraded => c
                .instances
                .iter()
                .filter(|(o, st)| **o != c.primary && st.revision.hash != self.target_hash)
                .map(|(o, _)| *o)
                .max(),
        }?;
        let hash = &c.instances.get(&o)?.revision.hash;
        let version = c.history.by_hash(hash)?.version;
        Some((o, version))
    }
}

/// Runs a SQL fault's statements as root on instance `o`; a task keeps the
/// session open for the fault's `hold_s` (the fault's own duration).
async fn run_sql(cluster: &LocalCluster, o: u32, sql: &SqlFault) -> Result<(), String> {
    let instance = usize::try_from(o)
        .ok()
        .and_then(|i| cluster.testbed().instances().get(i))
        .ok_or_else(|| format!("no instance {o}"))?;
    let mut conn = instance.connect_root().await.map_err(|e| e.to_string())?;
    for statement in &sql.statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    let hold = Duration::from_secs(sql.hold_s);
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        drop(conn);
    });
    Ok(())
}

/// The engine's runtime with the scenario's faults around its actions.
pub struct Faulty<'a, R> {
    inner: R,
    plan: Arc<FaultPlan>,
    cluster: &'a LocalCluster,
}

impl<'a, R: ClusterRuntime> Faulty<'a, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, plan: Arc<FaultPlan>, cluster: &'a LocalCluster) -> Self {
        Faulty {
            inner,
            plan,
            cluster,
        }
    }

    async fn before(&self, action: &str) {
        if self.plan.around(action, false, self.cluster).await {
            self.die().await;
        }
    }

    async fn after(&self, action: &str) {
        if self.plan.around(action, true, self.cluster).await {
            self.die().await;
        }
    }

    /// The engine is dead: tell the runner and never return, so the runner
    /// drops the engine's step where it stands.
    async fn die(&self) {
        self.plan.engine_killed.notify_one();
        std::future::pending::<()>().await;
    }
}

#[async_trait]
impl<R: ClusterRuntime> ClusterRuntime for Faulty<'_, R> {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    async fn observe(&self) -> Result<Observed, RuntimeError> {
        self.inner.observe().await
    }
    async fn load_record(&self) -> Result<Record, RuntimeError> {
        self.inner.load_record().await
    }
    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        self.inner.store_record(expected_seq, record).await
    }
    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.before("drain").await;
        let r = self.inner.drain(ordinal).await;
        self.after("drain").await;
        r
    }
    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.before("undrain").await;
        let r = self.inner.undrain(ordinal).await;
        self.after("undrain").await;
        r
    }
    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        self.before("restart").await;
        let r = self
            .inner
            .restart(ordinal, revision, version, slow_shutdown)
            .await;
        self.after("restart").await;
        r
    }
    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.before("recover").await;
        let r = self.inner.recover(ordinal).await;
        self.after("recover").await;
        r
    }
    async fn fence(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.before("fence").await;
        let r = self.inner.fence(ordinal).await;
        self.after("fence").await;
        r
    }
    async fn unfence(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.before("unfence").await;
        let r = self.inner.unfence(ordinal).await;
        self.after("unfence").await;
        r
    }
    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.before("wait_caught_up").await;
        let r = self.inner.wait_caught_up(candidate, from, deadline).await;
        self.after("wait_caught_up").await;
        r
    }
    async fn promote(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.before("promote").await;
        let r = self.inner.promote(ordinal).await;
        self.after("promote").await;
        r
    }
    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.before("repoint").await;
        let r = self.inner.repoint(ordinal, source).await;
        self.after("repoint").await;
        r
    }
    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        self.inner
            .apply_variables(ordinal, revision, variables)
            .await
    }
    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        self.inner.run_ddl(ordinal, change).await
    }
    async fn pause(&self, reason: &WaitReason) {
        self.inner.pause(reason).await;
    }
    fn on_step(&self, step: &StepOutcome) {
        self.inner.on_step(step);
    }
}
