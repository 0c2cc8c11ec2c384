//! An in-memory model cluster implementing `ClusterRuntime`, with fault
//! injection and an invariant checker that runs after every operation.
//!
//! The model is deliberately simple but keeps the properties that matter:
//! writes are acknowledged only by a writable primary, replicas copy what
//! their source has, a fenced instance takes no writes, a restart takes an
//! instance down and brings it back on a new version, and a crashed instance
//! must be recovered before it can change version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, RuntimeErrorKind};
use switchyard_plan::record::{Intent, Record};
use switchyard_plan::topology::{
    Health, Instance, Observed, Revision, Role, Timestamp, TopologyKind,
};
use switchyard_plan::versions::{Flavor, Version, catalog};
use switchyard_plan::{SchemaTarget, WaitReason};

/// A fault the test injects.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The instance crashes; recovery fails until `down_for` has passed.
    Crash { ordinal: u32, down_for: Duration },
    /// The instance's next restart fails to start it.
    RestartFails { ordinal: u32 },
    /// Replication on the instance stops with an error for `lasting`.
    ReplicationError { ordinal: u32, lasting: Duration },
    /// The instance lags by `seconds` for `lasting`.
    Lag {
        ordinal: u32,
        seconds: u64,
        lasting: Duration,
    },
    /// The engine is killed at its `op`-th runtime call from now; with
    /// `after_effect` the call takes effect before the engine dies.
    KillEngine { op: u32, after_effect: bool },
}

#[derive(Clone, Debug)]
struct MInstance {
    ordinal: u32,
    version: Version,
    revision: Revision,
    role: Role,
    up: bool,
    crashed: bool,
    recover_after: u64,
    restart_fails: bool,
    writable: bool,
    fenced: bool,
    drained: bool,
    source: Option<u32>,
    repl_error_until: u64,
    lag_until: u64,
    lag_seconds: u64,
    data: BTreeSet<u64>,
    /// Whether the instance's table has the schema change.
    altered: bool,
}

struct State {
    clock: u64,
    flavor: Flavor,
    instances: Vec<MInstance>,
    record: Record,
    next_write: u64,
    acknowledged: BTreeSet<u64>,
    out_by_us: BTreeSet<u32>,
    kill: Option<(u32, bool)>,
    dead: bool,
    violations: Vec<String>,
    ops: u64,
    switchover_deadline: Duration,
    /// The schema change being rolled, if any: (id, whether the primary may take it in place).
    schema: Option<(String, bool)>,
}

/// The model cluster.
pub struct Model {
    state: Mutex<State>,
}

/// How the model cluster starts.
#[derive(Clone, Debug)]
pub struct Setup {
    pub flavor: Flavor,
    pub versions: Vec<Version>,
    pub primary: u32,
    pub switchover_deadline: Duration,
    /// The schema change being rolled, if any: (id, whether the primary may take it in place).
    pub schema: Option<(String, bool)>,
}

/// The revision an instance on `version` runs before the rollout.
pub fn revision_for(flavor: Flavor, version: Version) -> Revision {
    Revision::new(1, flavor, version, &BTreeMap::new())
}

impl Model {
    pub fn new(setup: &Setup) -> Self {
        let instances = setup
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ordinal = u32::try_from(i).expect("small");
                let primary = ordinal == setup.primary;
                MInstance {
                    ordinal,
                    version: *v,
                    revision: revision_for(setup.flavor, *v),
                    role: if primary {
                        Role::Primary
                    } else {
                        Role::Replica
                    },
                    up: true,
                    crashed: false,
                    recover_after: 0,
                    restart_fails: false,
                    writable: primary,
                    fenced: false,
                    drained: false,
                    source: (!primary).then_some(setup.primary),
                    repl_error_until: 0,
                    lag_until: 0,
                    lag_seconds: 0,
                    data: BTreeSet::new(),
                    altered: false,
                }
            })
            .collect();
        Model {
            state: Mutex::new(State {
                clock: 1_000_000,
                flavor: setup.flavor,
                instances,
                record: Record::default(),
                next_write: 1,
                acknowledged: BTreeSet::new(),
                out_by_us: BTreeSet::new(),
                kill: None,
                dead: false,
                violations: Vec::new(),
                ops: 0,
                switchover_deadline: setup.switchover_deadline,
                schema: setup.schema.clone(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("model lock")
    }

    /// Applies a fault now.
    pub fn inject(&self, fault: &Fault) {
        let mut s = self.lock();
        let now = s.clock;
        match fault {
            Fault::Crash { ordinal, down_for } => {
                if let Some(i) = s.inst_mut(*ordinal)
                    && i.up
                {
                    i.up = false;
                    i.crashed = true;
                    i.writable = false;
                    i.recover_after = now + ms(*down_for);
                }
            }
            Fault::RestartFails { ordinal } => {
                if let Some(i) = s.inst_mut(*ordinal) {
                    i.restart_fails = true;
                }
            }
            Fault::ReplicationError { ordinal, lasting } => {
                if let Some(i) = s.inst_mut(*ordinal) {
                    i.repl_error_until = now + ms(*lasting);
                }
            }
            Fault::Lag {
                ordinal,
                seconds,
                lasting,
            } => {
                if let Some(i) = s.inst_mut(*ordinal) {
                    i.lag_seconds = *seconds;
                    i.lag_until = now + ms(*lasting);
                }
            }
            Fault::KillEngine { op, after_effect } => s.kill = Some((*op, *after_effect)),
        }
        s.check("fault");
    }

    /// Ends every lasting fault: crashed instances may be recovered, restarts
    /// succeed, replication errors and lag clear.
    pub fn heal(&self) {
        let mut s = self.lock();
        let now = s.clock;
        for i in &mut s.instances {
            i.recover_after = i.recover_after.min(now);
            i.restart_fails = false;
            i.repl_error_until = 0;
            i.lag_until = 0;
        }
        s.kill = None;
    }

    /// Whether the engine was killed (the test then starts a new engine).
    pub fn take_dead(&self) -> bool {
        let mut s = self.lock();
        std::mem::replace(&mut s.dead, false)
    }

    /// Lets time pass and replication run (a tick of the world).
    pub fn tick(&self, d: Duration) {
        let mut s = self.lock();
        s.advance(ms(d));
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Checks what can only be checked at the end: no acknowledged write lost
    /// on any instance once replication has converged.
    pub fn final_check(&self) -> Vec<String> {
        self.heal();
        let mut s = self.lock();
        // Let replication converge with the faults over.
        s.advance(10_000);
        // ...and the last writes reach every replica (no new ones meanwhile).
        for _ in 0..s.instances.len() {
            s.replicate();
        }
        let mut out = s.violations.clone();
        let acked = s.acknowledged.clone();
        for i in &s.instances {
            let missing: Vec<u64> = acked.difference(&i.data).copied().collect();
            if !missing.is_empty() {
                out.push(format!(
                    "instance {} is missing {} acknowledged writes (first {:?})",
                    i.ordinal,
                    missing.len(),
                    &missing[..missing.len().min(5)]
                ));
            }
        }
        out
    }

    pub fn versions(&self) -> Vec<Version> {
        self.lock().instances.iter().map(|i| i.version).collect()
    }

    /// Which instances have the schema change, by ordinal.
    pub fn altered(&self) -> Vec<bool> {
        self.lock().instances.iter().map(|i| i.altered).collect()
    }

    pub fn record(&self) -> Record {
        self.lock().record.clone()
    }

    pub fn acknowledged(&self) -> usize {
        self.lock().acknowledged.len()
    }

    /// One runtime call: handles the engine kill, advances the clock, runs
    /// `f`, and checks the invariants.
    fn op<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut State) -> Result<T, String>,
    ) -> Result<T, RuntimeError> {
        let mut s = self.lock();
        if s.dead {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                "the engine is dead",
            ));
        }
        s.ops += 1;
        s.advance(100);
        let mut die_after = false;
        if let Some((left, after_effect)) = s.kill {
            if left == 0 {
                s.kill = None;
                if !after_effect {
                    s.kill_engine();
                    return Err(RuntimeError::new(
                        RuntimeErrorKind::Transient,
                        what,
                        "the engine was killed",
                    ));
                }
                die_after = true;
            } else {
                s.kill = Some((left - 1, after_effect));
            }
        }
        let result = f(&mut s);
        s.advance(100);
        s.check(what);
        if die_after {
            s.kill_engine();
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                "the engine was killed",
            ));
        }
        result.map_err(|m| RuntimeError::new(RuntimeErrorKind::Failed, what, m))
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl State {
    /// The engine dies: so does every connection it held, and with them any
    /// fence that is a lock (MariaDB's backup lock); `read_only` stays.
    fn kill_engine(&mut self) {
        self.dead = true;
        for i in &mut self.instances {
            i.fenced = false;
        }
    }

    fn inst_mut(&mut self, ordinal: u32) -> Option<&mut MInstance> {
        self.instances.iter_mut().find(|i| i.ordinal == ordinal)
    }

    fn inst(&self, ordinal: u32) -> Option<&MInstance> {
        self.instances.iter().find(|i| i.ordinal == ordinal)
    }

    fn advance(&mut self, millis: u64) {
        let steps = (millis / 100).max(1);
        for _ in 0..steps {
            self.clock += millis / steps;
            // Replication trails the primary by a tick: a write acknowledged
            // just now is not yet on any replica.
            self.replicate();
            self.write();
        }
    }

    /// The application writes through the primary endpoint: a write is
    /// acknowledged only by the primary when it is up and writable.
    fn write(&mut self) {
        let id = self.next_write;
        let Some(p) = self.instances.iter_mut().find(|i| i.role == Role::Primary) else {
            return;
        };
        // The writer holds ALL privileges: on MariaDB `read_only` does not stop
        // it; only the fence (a lock held by the engine's connection) does.
        if p.up && !p.fenced {
            p.data.insert(id);
            self.acknowledged.insert(id);
            self.next_write += 1;
        }
    }

    /// Replicas copy what their source has beyond their own latest write
    /// (ids only grow, so this is what GTID auto-positioning fetches).
    fn replicate(&mut self) {
        let now = self.clock;
        for idx in 0..self.instances.len() {
            let i = &self.instances[idx];
            let Some(src) = i.source else { continue };
            if !i.up || i.repl_error_until > now || i.lag_until > now {
                continue;
            }
            let have = i.data.last().copied().unwrap_or(0);
            let Some(s) = self.instances.iter().find(|s| s.ordinal == src && s.up) else {
                continue;
            };
            let new: Vec<u64> = s.data.range(have + 1..).copied().collect();
            self.instances[idx].data.extend(new);
        }
    }

    fn check(&mut self, during: &str) {
        let now = self.clock;
        let writable: Vec<u32> = self
            .instances
            .iter()
            .filter(|i| i.up && i.writable)
            .map(|i| i.ordinal)
            .collect();
        if writable.len() > 1 {
            self.violations
                .push(format!("{during}: instances {writable:?} are all writable"));
        }
        // A primary that crashed (a fault) leaves no writable instance through
        // no action of ours; anything else that does must be a switchover.
        let primary_crashed = self
            .instances
            .iter()
            .any(|i| i.role == Role::Primary && i.crashed);
        if writable.is_empty() && !primary_crashed {
            let grace = ms(self.switchover_deadline) + 3_000;
            let in_switchover = matches!(self.record.intent, Some(Intent::Switchover { started, .. }) if now <= started.0 + grace);
            if !in_switchover {
                self.violations.push(format!(
                    "{during}: no writable instance outside a switchover (t={now})"
                ));
            }
        }
        for i in &self.instances {
            let Some(src) = i.source.and_then(|s| self.inst(s)) else {
                continue;
            };
            if !(i.up && src.up) {
                continue;
            }
            let ok = catalog()
                .check_replication(self.flavor, src.version, i.version)
                .is_ok_and(|v| v.allowed);
            if !ok {
                self.violations.push(format!(
                    "{during}: instance {} ({}) replicates from {} ({}), a newer source",
                    i.ordinal, i.version, src.ordinal, src.version
                ));
            }
        }
        for i in &self.instances {
            let Some(src) = i.source.and_then(|s| self.inst(s)) else {
                continue;
            };
            if i.up && src.up && src.altered && !i.altered {
                self.violations.push(format!(
                    "{during}: instance {} (old table) replicates new-shape rows from {}",
                    i.ordinal, src.ordinal
                ));
            }
        }
        if self.out_by_us.len() > 1 {
            self.violations.push(format!(
                "{during}: instances {:?} are out of service by our action",
                self.out_by_us
            ));
        }
    }

    fn observe(&self) -> Observed {
        let now = self.clock;
        let instances = self
            .instances
            .iter()
            .map(|i| {
                let health = if i.crashed {
                    Health::Crashed
                } else if !i.up {
                    Health::Stopped
                } else if i.source.is_some() && i.repl_error_until > now {
                    Health::ReplicationStopped {
                        errno: 1062,
                        message: "Duplicate entry".into(),
                    }
                } else if i.source.is_some() && i.lag_until > now {
                    Health::Lagging {
                        seconds: i.lag_seconds,
                    }
                } else {
                    Health::Ready
                };
                Instance {
                    ordinal: i.ordinal,
                    role: i.role,
                    version: i.version,
                    revision: i.revision.clone(),
                    health,
                    gtid: None,
                    writable: i.up && i.writable,
                    fenced: i.fenced,
                    drained: i.drained,
                    source: i.source,
                    schema: self
                        .schema
                        .as_ref()
                        .filter(|_| i.altered)
                        .map(|(id, _)| id.clone()),
                }
            })
            .collect();
        Observed {
            kind: TopologyKind::Async,
            flavor: self.flavor,
            instances,
        }
    }
}

#[async_trait]
impl ClusterRuntime for Model {
    fn now(&self) -> Timestamp {
        Timestamp(self.lock().clock)
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        self.op("observe", |s| Ok(s.observe()))
    }

    async fn load_record(&self) -> Result<Record, RuntimeError> {
        self.op("load record", |s| Ok(s.record.clone()))
    }

    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        if s.dead {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                "store record",
                "the engine is dead",
            ));
        }
        if s.record.seq != expected_seq {
            return Err(RuntimeError::conflict("store record"));
        }
        s.record = record.clone();
        Ok(())
    }

    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(&format!("drain {ordinal}"), |s| {
            s.out_by_us.insert(ordinal);
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.drained = true;
            Ok(())
        })
    }

    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(&format!("undrain {ordinal}"), |s| {
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            if !i.up {
                return Err("instance is down".into());
            }
            i.drained = false;
            i.fenced = false;
            s.out_by_us.remove(&ordinal);
            Ok(())
        })
    }

    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        self.op(&format!("restart {ordinal}"), |s| {
            s.out_by_us.insert(ordinal);
            let flavor = s.flavor;
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            let from = i.version;
            let crashed = i.crashed;
            if from != version {
                if crashed {
                    s.violations.push(format!("restart {ordinal}: version change of a crashed instance (not recovered first)"));
                }
                if !slow_shutdown {
                    s.violations.push(format!("restart {ordinal}: version change without a slow shutdown"));
                }
                let allowed = catalog().check_in_place(flavor, from, version).is_ok_and(|v| v.allowed);
                if !allowed {
                    s.violations.push(format!("restart {ordinal}: forbidden transition {from} -> {version} started"));
                }
            }
            // Down for the restart: check the invariants in the gap.
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.up = false;
            i.writable = false;
            s.check(&format!("restart {ordinal} (down)"));
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.version = version;
            i.revision = revision.clone();
            if i.restart_fails {
                i.restart_fails = false;
                i.crashed = true;
                return Err(format!("instance {ordinal} failed to start on {version}"));
            }
            i.crashed = false;
            i.up = true;
            // Every instance starts read-only; the runtime makes the primary writable.
            i.writable = i.role == Role::Primary && !i.fenced;
            Ok(())
        })
    }

    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(&format!("recover {ordinal}"), |s| {
            let now = s.clock;
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            if !i.crashed {
                return Ok(());
            }
            if now < i.recover_after {
                return Err(format!("instance {ordinal} did not come back"));
            }
            i.crashed = false;
            i.up = true;
            i.writable = i.role == Role::Primary && !i.fenced;
            Ok(())
        })
    }

    async fn fence(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(&format!("fence {ordinal}"), |s| {
            s.out_by_us.insert(ordinal);
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            if !i.up {
                return Err("instance is down".into());
            }
            i.fenced = true;
            i.writable = false;
            Ok(())
        })
    }

    async fn unfence(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(&format!("unfence {ordinal}"), |s| {
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.fenced = false;
            i.writable = i.up && i.role == Role::Primary;
            s.out_by_us.remove(&ordinal);
            Ok(())
        })
    }

    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            &format!("wait for {candidate} to catch up with {from}"),
            |s| {
                loop {
                    let want = s.inst(from).map(|i| i.data.clone()).unwrap_or_default();
                    let have = s
                        .inst(candidate)
                        .map(|i| i.data.clone())
                        .unwrap_or_default();
                    if want.is_subset(&have) {
                        return Ok(());
                    }
                    if s.clock >= deadline.0 {
                        return Err(format!("{candidate} did not catch up by the deadline"));
                    }
                    s.advance(100);
                }
            },
        )
    }

    async fn promote(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(&format!("promote {ordinal}"), |s| {
            if !s.inst(ordinal).is_some_and(|i| i.up) {
                return Err("candidate is down".into());
            }
            for i in &mut s.instances {
                if i.role == Role::Primary && i.ordinal != ordinal {
                    i.role = Role::Replica;
                    i.writable = false;
                    i.source = None;
                }
            }
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.role = Role::Primary;
            i.source = None;
            i.writable = true;
            i.fenced = false;
            Ok(())
        })
    }

    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.op(&format!("repoint {ordinal} to {source}"), |s| {
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            if !i.up {
                return Err("instance is down".into());
            }
            i.source = Some(source);
            Ok(())
        })
    }

    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        self.op(&format!("alter {ordinal}"), |s| {
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            if !i.up {
                return Err("instance is down".into());
            }
            if i.role == Role::Primary && i.writable && !change.primary_online {
                s.violations.push(format!("alter {ordinal}: the primary was altered in place by a change that needs a switchover"));
            }
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.altered = true;
            Ok(())
        })
    }

    async fn pause(&self, _reason: &WaitReason) {
        self.tick(Duration::from_millis(1000));
    }
}
