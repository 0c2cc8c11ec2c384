//! Fault injection: a [`Faulty`] runtime wraps the engine's runtime and
//! fires a scenario's faults just before or just after the engine's first
//! call of a runtime action, or just after it stored a switchover's or a
//! failover's sub-step;
//! [`FaultPlan::before_step`] fires the faults timed by engine step. Each
//! fault fires once.
//!
//! A fault counts as fired only once its effect is confirmed: the process is
//! gone (`kill9`) or stopped (`pause`), every statement ran (`sql`), the
//! engine was dropped (`kill_engine`, confirmed by the runner), the action or
//! the record write took effect before the engine got its error (`fail`,
//! `fail_record`), the direct writer had a write acknowledged
//! (`direct_writer`, confirmed at the end of the run), a TCP connect to each
//! port cut timed out while the instance's unix socket answered, and later
//! connected again once healed (`partition`). [`FaultPlan::unconfirmed`]
//! lists the others; a scenario with any fails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard_local::LocalCluster;
use switchyard_plan::Record;
use switchyard_plan::decide::{SchemaTarget, WaitReason};
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, RuntimeErrorKind, StepOutcome};
use switchyard_plan::record::{FailoverStep, FailoverSummary, Intent, SwitchoverStep};
use switchyard_plan::topology::{Observed, Revision, Timestamp};
use switchyard_plan::versions::Version;
use switchyard_testbed::ledger::Ledger;
use switchyard_testbed::load::{AccountKind, Endpoints, Load, LoadConfig, LoadHandle};
use switchyard_testbed::netcut::{Cut, CutSpec, Nft};
use tokio::sync::Notify;

use crate::scenario::{FailMode, FaultDef, PartitionFault, Pick, SqlFault, Trigger, Until};

/// What the engine's records and waits showed of failovers.
#[derive(Clone, Debug, Default)]
pub struct FailoversSeen {
    /// Each failover recorded as promoted, in order.
    pub promoted: Vec<FailoverSummary>,
    /// Instances the engine recorded as quarantined.
    pub quarantined: Vec<u32>,
    /// Engine waits on a failing primary.
    pub failing_waits: u64,
    /// Those that waited for a proof that nothing acknowledged is lost.
    pub lossless_waits: u64,
    /// Those that waited because replicas still reach the primary.
    pub corroboration_waits: u64,
    /// The last such wait's reason.
    pub last_wait: Option<String>,
}

/// The `run` of the first direct writer's ids (the load's is 0).
pub const DIRECT_RUN: u8 = 1;

/// An instance a pause with `delay_ms` freezes later: the instance, the
/// version it runs, when it is frozen, for how long, and the fault.
type PendingPause = (u32, Version, Instant, Duration, usize);

/// A direct writer while it runs (`None` once stopped).
type Writer = Arc<Mutex<Option<LoadHandle>>>;

/// How long a TCP connect to a port is given to connect again once its cut healed.
const CUT_PROBE: Duration = Duration::from_secs(1);

/// How long a TCP connect to a cut port is given before it counts as cut. A connect on
/// loopback completes (or is refused) within a millisecond even on a loaded machine; the
/// engine waits for this check, which the failover benchmark counts in the write gap.
const CUT_CHECK: Duration = Duration::from_millis(200);

/// A network cut in force, until it heals.
#[derive(Debug)]
struct HeldCut {
    /// Its fault.
    index: usize,
    /// When it heals.
    heal_at: Instant,
    /// The ports it cuts.
    ports: Vec<u16>,
    /// The rules (deleted when dropped).
    cut: Cut,
    /// An operator-only cut: the server ids of the instances cut from the
    /// operator, and when the cut was in force on the ledger's time axis.
    operator: Option<(Vec<u32>, u64)>,
}

/// An instance cut off by a `partition` fault (not an operator-only one):
/// no write sent to it after the cut can be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitioned {
    /// The instance.
    pub ordinal: u32,
    /// Its server id, which the ledger records with each acknowledgement.
    pub server_id: u32,
    /// When the cut was in force, on the ledger's time axis, µs.
    pub cut_us: u64,
}

/// One fault and what became of it.
#[derive(Debug)]
struct Slot {
    def: FaultDef,
    /// Its trigger came.
    triggered: AtomicBool,
    /// Each part's result (`Ok` with what it did, `Err` with why it did not
    /// happen); parts confirmed later (`kill_engine`, `fail_record`,
    /// `direct_writer`) are added when they are.
    parts: Mutex<Vec<Result<String, String>>>,
}

impl Slot {
    fn part(&self, r: Result<String, String>) {
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
    }

    /// How many parts the fault has: each of its effects.
    fn expected_parts(&self) -> usize {
        let d = &self.def;
        [
            d.kill9.is_some(),
            d.kill_engine,
            d.sql.is_some(),
            d.pause.is_some(),
            // A pause is confirmed twice: stopped, then running again.
            d.pause.is_some(),
            d.direct_writer.is_some(),
            d.fail.is_some(),
            d.fail_record,
            d.thaw,
            // A partition is confirmed twice: cut, then healed.
            d.partition.is_some(),
            d.partition.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// What firing faults asks of the engine's runtime.
#[derive(Debug, Default, Clone, Copy)]
struct Asked {
    /// Kill the engine.
    kill: bool,
    /// Return an error for the action that just took effect (fault index).
    fail: Option<usize>,
}

/// A scenario's faults and what they did, shared by every engine of a run
/// and by the monitor.
#[derive(Debug)]
pub struct FaultPlan {
    faults: Vec<Slot>,
    target_hash: String,
    /// Instances a fault took down and not seen up again, with the version
    /// each must come back on and when it was taken down.
    injected: Mutex<BTreeMap<u32, (Version, Instant)>>,
    log: Mutex<Vec<String>>,
    engine_killed: Notify,
    /// Faults whose engine kill waits for the runner to drop the engine.
    killing: Mutex<Vec<usize>>,
    /// The fault whose record failure comes with the next record stored.
    record_failure: Mutex<Option<usize>>,
    /// Paused instances, when they run again, and their fault.
    paused: Mutex<Vec<(u32, Instant, usize)>>,
    /// Instances a pause with `delay_ms` freezes later.
    pending_pauses: Mutex<Vec<PendingPause>>,
    /// Instances a `kill9` with `down_s` or `stays_down` keeps down, and
    /// until when (`None`: the rest of the run): the supervisor is off and
    /// the engine's `recover` of them fails meanwhile.
    held_down: Mutex<BTreeMap<u32, Option<Instant>>>,
    /// What the engine's records showed of failovers.
    failovers: Mutex<FailoversSeen>,
    /// Sessions SQL faults hold, and whether the server closed each early.
    sessions: Mutex<Vec<Arc<AtomicBool>>>,
    /// The load's ledger, which direct writers share.
    ledger: Mutex<Option<Arc<Ledger>>>,
    /// Direct writers, with their fault (`None` once stopped).
    writers: Mutex<Vec<(usize, Writer)>>,
    /// Network cuts in force.
    cuts: Mutex<Vec<HeldCut>>,
    /// Instances a partition cut off, and when.
    partitioned: Mutex<Vec<Partitioned>>,
    /// Writes acknowledged by instances cut from the operator, sent during
    /// the cut.
    acked_while_cut: Mutex<usize>,
}

impl FaultPlan {
    /// The plan for `faults` in a rollout to the revision `target_hash`.
    pub fn new(faults: Vec<FaultDef>, target_hash: String) -> Arc<FaultPlan> {
        Arc::new(FaultPlan {
            faults: faults
                .into_iter()
                .map(|def| Slot {
                    def,
                    triggered: AtomicBool::new(false),
                    parts: Mutex::new(Vec::new()),
                })
                .collect(),
            target_hash,
            injected: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            engine_killed: Notify::new(),
            killing: Mutex::new(Vec::new()),
            record_failure: Mutex::new(None),
            paused: Mutex::new(Vec::new()),
            pending_pauses: Mutex::new(Vec::new()),
            held_down: Mutex::new(BTreeMap::new()),
            failovers: Mutex::new(FailoversSeen::default()),
            sessions: Mutex::new(Vec::new()),
            ledger: Mutex::new(None),
            writers: Mutex::new(Vec::new()),
            cuts: Mutex::new(Vec::new()),
            partitioned: Mutex::new(Vec::new()),
            acked_while_cut: Mutex::new(0),
        })
    }

    /// Gives direct writers the ledger they record into (the load's).
    pub fn share_ledger(&self, ledger: Arc<Ledger>) {
        *self.ledger.lock().unwrap_or_else(PoisonError::into_inner) = Some(ledger);
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

    /// Each fault whose effect was not confirmed, with why (never
    /// triggered, or a part that did not happen). Empty when every fault
    /// did what it says.
    pub fn unconfirmed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, slot) in self.faults.iter().enumerate() {
            let parts = slot.parts.lock().unwrap_or_else(PoisonError::into_inner);
            let failed: Vec<&String> = parts.iter().filter_map(|p| p.as_ref().err()).collect();
            if !slot.triggered.load(Ordering::SeqCst) {
                out.push(format!(
                    "fault {} ({:?}) never triggered",
                    i + 1,
                    slot.def.when
                ));
            } else if !failed.is_empty() {
                out.push(format!("fault {} did not happen: {failed:?}", i + 1));
            } else if parts.len() < slot.expected_parts() {
                out.push(format!(
                    "fault {} ({:?}) triggered but its effect was never confirmed",
                    i + 1,
                    slot.def.when
                ));
            }
        }
        out
    }

    /// Whether every fault fired and its effect was confirmed.
    pub fn all_fired(&self) -> bool {
        self.unconfirmed().is_empty()
    }

    /// Resolves when a fault kills the engine.
    pub async fn engine_killed(&self) {
        self.engine_killed.notified().await;
    }

    /// The runner dropped the killed engine: confirms the kill, and returns
    /// how long the engine stays dead (the longest `engine_down_s` of the
    /// faults that killed it).
    pub fn engine_dropped(&self) -> Duration {
        let killing =
            std::mem::take(&mut *self.killing.lock().unwrap_or_else(PoisonError::into_inner));
        let mut down = Duration::ZERO;
        for i in killing {
            if let Some(slot) = self.faults.get(i) {
                slot.part(Ok("engine dropped".into()));
                down = down.max(Duration::from_secs(slot.def.engine_down_s));
            }
        }
        self.note(format!("engine dropped; a new one starts in {down:?}"));
        down
    }

    /// Whether a session a SQL fault held open was closed by the server
    /// before its hold ended.
    pub fn session_killed(&self) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|k| k.load(Ordering::SeqCst))
    }

    /// Stops the direct writers, confirms each that had a write
    /// acknowledged, and returns how many writes they had acknowledged.
    pub async fn stop_direct_writers(&self) -> usize {
        let writers =
            std::mem::take(&mut *self.writers.lock().unwrap_or_else(PoisonError::into_inner));
        let Some(ledger) = self
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return 0;
        };
        let mut total = 0;
        for (i, w) in writers {
            let running = w.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(w) = running {
                w.stop().await;
            }
            let Some(slot) = self.faults.get(i) else {
                continue;
            };
            let run = self.run_of(i);
            let acked = ledger
                .snapshot()
                .acked
                .iter()
                .filter(|a| a.id >> switchyard_testbed::ledger::RUN_SHIFT == u64::from(run))
                .count();
            total += acked;
            slot.part(if acked > 0 {
                Ok(format!("direct writer: {acked} writes acknowledged"))
            } else {
                Err("the direct writer had no write acknowledged".into())
            });
        }
        total
    }

    /// The `run` of the ids of the direct writer of fault `index`: one run
    /// per direct writer from [`DIRECT_RUN`] on, so their ids never meet.
    fn run_of(&self, index: usize) -> u8 {
        let before = self
            .faults
            .iter()
            .take(index)
            .filter(|s| s.def.direct_writer.is_some())
            .count();
        DIRECT_RUN.saturating_add(u8::try_from(before).unwrap_or(u8::MAX))
    }

    fn note(&self, line: String) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    /// Lets paused instances run again: those due, or all with `all`, and
    /// heals the network cuts that are due. Each
    /// thaw is confirmed once the kernel reports the process running again.
    /// Returns how many it let run.
    pub fn resume(&self, cluster: &LocalCluster, all: bool) -> usize {
        if !all {
            let mut held = self
                .held_down
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let due: Vec<u32> = held
                .iter()
                .filter(|(_, until)| until.is_some_and(|at| at <= now))
                .map(|(o, _)| *o)
                .collect();
            for o in &due {
                held.remove(o);
            }
            if !due.is_empty() && held.is_empty() {
                cluster.set_supervised(true);
                self.note(format!(
                    "instances {due:?} can start again (supervisor on, recovery allowed)"
                ));
            }
        }
        if !all {
            self.start_pending_pauses(cluster);
        }
        let due: Vec<(u32, usize)> = {
            let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) =
                paused.drain(..).partition(|(_, at, _)| all || *at <= now);
            *paused = later;
            due.into_iter().map(|(o, _, i)| (o, i)).collect()
        };
        self.heal(false);
        let count = due.len();
        for (o, index) in due {
            let done = testbed(cluster, o).map(switchyard_testbed::Instance::resume);
            let line = match done {
                Some(Ok(())) => Ok(format!("instance {o} resumed (SIGCONT), running again")),
                other => Err(format!("instance {o}: resuming FAILED: {other:?}")),
            };
            match self.faults.get(index) {
                Some(slot) => self.outcome(slot, line),
                None => self.note(format!("{line:?}")),
            }
        }
        count
    }

    /// Heals every network cut still in force (the end of a run).
    pub fn heal_all(&self) {
        self.heal(true);
    }

    /// Heals the network cuts that are due, or all with `all`. Each heal is
    /// confirmed once a TCP connect to every port it cut succeeds.
    fn heal(&self, all: bool) {
        let due: Vec<HeldCut> = {
            let mut cuts = self.cuts.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) =
                cuts.drain(..).partition(|c| all || c.heal_at <= now);
            *cuts = later;
            due
        };
        for held in due {
            let table = held.cut.table().to_owned();
            let mut served = String::new();
            if let Some((ids, cut_us)) = &held.operator
                && let Some(ledger) = self
                    .ledger
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
            {
                let now_us = ledger.now_us();
                let n = ledger
                    .snapshot()
                    .acked
                    .iter()
                    .filter(|a| {
                        a.server_id.is_some_and(|id| ids.contains(&id))
                            && a.sent_us > *cut_us
                            && a.ack_us < now_us
                    })
                    .count();
                *self
                    .acked_while_cut
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) += n;
                served =
                    format!(" ({n} writes sent during the cut acknowledged by the cut instances)");
            }
            let line = held
                .cut
                .heal()
                .map_err(|e| format!("healing the network cut {table} FAILED: {e}"))
                .and_then(|()| {
                    for port in &held.ports {
                        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                        std::net::TcpStream::connect_timeout(&addr, CUT_PROBE).map_err(|e| {
                            format!(
                                "the network cut {table} was deleted but port {port} still \
                                 does not connect: {e}"
                            )
                        })?;
                    }
                    Ok(format!(
                        "network cut {table} healed: ports {:?} connect again{served}",
                        held.ports
                    ))
                });
            match self.faults.get(held.index) {
                Some(slot) => self.outcome(slot, line),
                None => self.note(format!("{line:?}")),
            }
        }
    }

    /// Writes acknowledged by instances the operator was cut from, sent
    /// during the cut (counted when each cut heals).
    pub fn acked_while_cut(&self) -> usize {
        *self
            .acked_while_cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Instances a partition cut off (not operator-only cuts), and when.
    pub fn partitioned(&self) -> Vec<Partitioned> {
        self.partitioned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks that `cut` took: a TCP connect to each cut port times out
    /// (neither connects nor is refused), each cut instance's unix socket
    /// answers.
    async fn verify_cut(
        &self,
        cut: &Cut,
        ports: &[u16],
        cut_off: &[(u32, Version)],
        when: &str,
        cluster: &LocalCluster,
    ) -> Result<(), String> {
        for port in ports {
            let connect = tokio::time::timeout(
                CUT_CHECK,
                tokio::net::TcpStream::connect(("127.0.0.1", *port)),
            )
            .await;
            if let Ok(done) = connect {
                return Err(format!(
                    "{when}: the cut {} is in the kernel but a TCP connect to port {port} \
                     did not time out: {:?}",
                    cut.table(),
                    done.map(|_| "connected")
                ));
            }
        }
        for (o, _) in cut_off {
            let instance = testbed(cluster, *o).ok_or_else(|| format!("no instance {o}"))?;
            let answered = async {
                let mut conn = instance.connect_root().await.map_err(|e| e.to_string())?;
                sqlx::query_scalar::<_, i64>("SELECT 1")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(5), answered).await {
                Ok(Ok(_)) => {}
                other => {
                    return Err(format!(
                        "{when}: instance {o} is cut but its unix socket does not answer: \
                         {other:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Makes the cut a `partition` fault names and checks it took: a TCP
    /// connect to each cut port times out while each cut instance's unix
    /// socket answers. The cut instances count as taken down until the
    /// monitor sees them again.
    async fn partition(
        &self,
        index: usize,
        p: &PartitionFault,
        when: &str,
        cluster: &LocalCluster,
    ) -> Result<String, String> {
        let cut_off: Vec<(u32, Version)> = match &p.on {
            Some(pick) => vec![
                self.pick(pick, cluster)
                    .ok_or_else(|| format!("{when}: no instance matched {pick:?}"))?,
            ],
            None => (0..u32::try_from(cluster.len()).unwrap_or(0))
                .filter_map(|o| version_of(cluster, o).map(|v| (o, v)))
                .collect(),
        };
        let mut ports = Vec::new();
        for (o, _) in &cut_off {
            ports.push(
                testbed(cluster, *o)
                    .map(switchyard_testbed::Instance::port)
                    .ok_or_else(|| format!("{when}: no instance {o}"))?,
            );
        }
        let spec = if p.operator {
            let uid = owner_of("/proc/self")?;
            for (o, _) in &cut_off {
                let pid = testbed(cluster, *o)
                    .and_then(switchyard_testbed::Instance::pid)
                    .ok_or_else(|| format!("{when}: instance {o} does not run"))?;
                if owner_of(&format!("/proc/{pid}"))? == uid {
                    return Err(format!(
                        "{when}: instance {o} runs as the test's own user {uid}: an operator \
                         cut would cut the servers' replication too"
                    ));
                }
            }
            CutSpec::from_owner(&ports, uid)
        } else {
            CutSpec::ports(&ports)
        };
        let cut = tokio::task::spawn_blocking(move || {
            let nft = Nft::fetch()?;
            Cut::new(&nft, spec)
        })
        .await
        .map_err(|e| format!("{when}: the cut's task failed: {e}"))?
        .map_err(|e| format!("{when}: the network cut FAILED: {e}"))?;
        let cut_us = self
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| l.now_us());
        // Down from now on for the monitor (whose samples already fail), unless
        // the cut turns out not to hold.
        for (o, version) in &cut_off {
            self.take_down(*o, *version);
        }
        if let Err(e) = self.verify_cut(&cut, &ports, &cut_off, when, cluster).await {
            for (o, _) in &cut_off {
                self.recovered(*o);
            }
            return Err(e);
        }
        let mut server_ids = Vec::new();
        for (o, _) in &cut_off {
            let Some(i) = testbed(cluster, *o) else {
                continue;
            };
            server_ids.push(i.server_id());
            if !p.operator
                && let Some(cut_us) = cut_us
            {
                self.partitioned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Partitioned {
                        ordinal: *o,
                        server_id: i.server_id(),
                        cut_us,
                    });
            }
        }
        let line = format!(
            "{when}: {} instances {:?} (nft table {}, ports {ports:?}) for {} s: TCP connects \
             time out, the unix sockets answer",
            if p.operator {
                "the operator's connections cut from"
            } else {
                "cut off"
            },
            cut_off.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            cut.table(),
            p.for_s
        );
        self.cuts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(HeldCut {
                index,
                heal_at: Instant::now() + Duration::from_secs(p.for_s),
                ports,
                cut,
                operator: p.operator.then(|| (server_ids, cut_us.unwrap_or(0))),
            });
        Ok(line)
    }

    /// Freezes the instances whose delayed pause is due.
    fn start_pending_pauses(&self, cluster: &LocalCluster) {
        let due: Vec<(u32, Version, Duration, usize)> = {
            let mut pending = self
                .pending_pauses
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) =
                pending.drain(..).partition(|(_, _, at, _, _)| *at <= now);
            *pending = later;
            due.into_iter()
                .map(|(o, version, _, hold, i)| (o, version, hold, i))
                .collect()
        };
        for (o, version, hold, index) in due {
            let Some(slot) = self.faults.get(index) else {
                continue;
            };
            let result = self.pause_now(cluster, o, version, hold, index, "delayed");
            self.outcome(slot, result);
        }
    }

    /// Freezes `o` now (SIGSTOP) until `hold` from now, for fault `index`.
    fn pause_now(
        &self,
        cluster: &LocalCluster,
        o: u32,
        version: Version,
        hold: Duration,
        index: usize,
        when: &str,
    ) -> Result<String, String> {
        let done = testbed(cluster, o).map(switchyard_testbed::Instance::pause);
        if let Some(Ok(())) = done {
            self.take_down(o, version);
            self.paused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((o, Instant::now() + hold, index));
            Ok(format!(
                "{when}: instance {o} paused (SIGSTOP) for {} s",
                hold.as_secs()
            ))
        } else {
            Err(format!("{when}: pausing instance {o} FAILED: {done:?}"))
        }
    }

    /// Whether a `kill9` with `down_s` (not yet elapsed) or `stays_down`
    /// keeps `ordinal` down.
    pub fn is_held_down(&self, ordinal: u32) -> bool {
        self.held_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&ordinal)
    }

    /// What the engine's records showed of failovers so far.
    pub fn failovers(&self) -> FailoversSeen {
        self.failovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes a record the engine stored: a failover it shows promoted.
    fn saw_record(&self, record: &Record) {
        let mut seen = self
            .failovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = &record.last_failover
            && !seen.promoted.contains(f)
        {
            self.note(format!(
                "the engine recorded a failover from {} to {} (lossless: {})",
                f.from, f.to, f.lossless
            ));
            seen.promoted.push(f.clone());
        }
        for o in record.quarantined.keys() {
            if !seen.quarantined.contains(o) {
                seen.quarantined.push(*o);
            }
        }
    }

    /// Notes a wait of the engine on a failing primary.
    fn saw_wait(&self, reason: &WaitReason) {
        if let WaitReason::PrimaryFailing { detail, .. } = reason {
            let mut seen = self
                .failovers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            seen.failing_waits += 1;
            if detail.contains("--accept-data-loss") {
                seen.lossless_waits += 1;
            }
            if detail.contains("still reach it") {
                seen.corroboration_waits += 1;
            }
            if seen.last_wait.as_deref() != Some(detail.as_str()) {
                seen.last_wait = Some(detail.clone());
            }
        }
    }

    /// Fires the faults timed before engine step `step`.
    pub async fn before_step(&self, step: u64, cluster: &LocalCluster) {
        self.resume(cluster, false);
        self.fire_due(
            |t| *t == Trigger::BeforeStep(step),
            &format!("before step {step}"),
            true,
            cluster,
        )
        .await;
    }

    /// Fires the faults whose trigger `hit` matches; `took_effect` tells
    /// whether the action they follow succeeded (a `fail` fault waits for
    /// one that did).
    async fn fire_due(
        &self,
        hit: impl Fn(&Trigger) -> bool,
        when: &str,
        took_effect: bool,
        cluster: &LocalCluster,
    ) -> Asked {
        let mut asked = Asked::default();
        for (i, slot) in self.faults.iter().enumerate() {
            if !hit(&slot.def.when)
                || (slot.def.fail.is_some() && !took_effect)
                || slot.def.fail == Some(FailMode::ServerOnly)
            {
                continue;
            }
            if slot.triggered.swap(true, Ordering::SeqCst) {
                continue;
            }
            self.fire(i, slot, when, cluster).await;
            if slot.def.kill_engine {
                asked.kill = true;
                self.killing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(i);
            }
            if slot.def.fail.is_some() {
                asked.fail = Some(i);
                slot.part(Ok(format!("{when}: the action took effect, then failed")));
                self.note(format!(
                    "{when}: the action took effect; the engine gets an error"
                ));
            }
            if slot.def.fail_record {
                *self
                    .record_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(i);
            }
        }
        asked
    }

    async fn fire(&self, index: usize, slot: &Slot, when: &str, cluster: &LocalCluster) {
        let f = &slot.def;
        if let Some(p) = &f.pause {
            let hold = Duration::from_secs(p.resume_after_s);
            match self.pick(&p.on, cluster) {
                // Frozen later by the task that thaws: confirmed then.
                Some((o, version)) if p.delay_ms > 0 => {
                    self.pending_pauses
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((
                            o,
                            version,
                            Instant::now() + Duration::from_millis(p.delay_ms),
                            hold,
                            index,
                        ));
                    self.note(format!(
                        "{when}: instance {o} is paused in {} ms",
                        p.delay_ms
                    ));
                }
                Some((o, version)) => {
                    let result = self.pause_now(cluster, o, version, hold, index, when);
                    self.outcome(slot, result);
                }
                None => self.outcome(slot, Err(format!("{when}: no instance matched {:?}", p.on))),
            }
        }
        if let Some(sql) = &f.sql {
            let result = match self.pick(&sql.on, cluster) {
                Some((o, _)) => match self.run_sql(cluster, o, sql).await {
                    Ok(()) => Ok(format!(
                        "{when}: on instance {o}: {} (session held {} s)",
                        sql.statements.join("; "),
                        sql.hold_s
                    )),
                    Err(e) => Err(format!("{when}: SQL on instance {o} FAILED: {e}")),
                },
                None => Err(format!("{when}: no instance matched {:?}", sql.on)),
            };
            self.outcome(slot, result);
        }
        if let Some(pick) = &f.kill9 {
            let result = match self.pick(pick, cluster) {
                Some((o, version)) => {
                    if f.down_s.is_some() || f.stays_down {
                        cluster.set_supervised(false);
                        self.held_down
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(o, f.down_s.map(|s| Instant::now() + Duration::from_secs(s)));
                    }
                    self.take_down(o, version);
                    // Returns once the process is gone and reaped.
                    match testbed(cluster, o).map(switchyard_testbed::Instance::kill9) {
                        Some(Ok(())) => Ok(format!("{when}: kill -9 instance {o} (on {version})")),
                        other => {
                            self.recovered(o);
                            Err(format!("{when}: kill -9 instance {o} FAILED: {other:?}"))
                        }
                    }
                }
                None => Err(format!("{when}: no instance matched {pick:?}")),
            };
            self.outcome(slot, result);
        }
        if let Some(d) = &f.direct_writer {
            let result = match self.pick(&d.on, cluster) {
                Some((o, _)) => self.start_direct_writer(index, o, d, cluster).map(|()| {
                    format!(
                        "{when}: a privileged client writes to instance {o} directly at {}/s \
                             over {} (until {:?})",
                        d.rate,
                        if d.socket { "its unix socket" } else { "TCP" },
                        d.until
                    )
                }),
                None => Err(format!("{when}: no instance matched {:?}", d.on)),
            };
            // Confirmed once it had a write acknowledged, at the end.
            match result {
                Ok(line) => self.note(line),
                Err(e) => self.outcome(slot, Err(e)),
            }
        }
        if let Some(p) = &f.partition {
            let result = self.partition(index, p, when, cluster).await;
            self.outcome(slot, result);
        }
        if f.thaw {
            let thawed = self.resume(cluster, true);
            let result = if thawed > 0 {
                Ok(format!("{when}: {thawed} frozen instance(s) let run again"))
            } else {
                Err(format!("{when}: no instance was frozen to thaw"))
            };
            self.outcome(slot, result);
        }
        if f.kill_engine {
            self.note(format!("{when}: engine killed"));
        }
    }

    fn outcome(&self, slot: &Slot, result: Result<String, String>) {
        match &result {
            Ok(line) | Err(line) => self.note(line.clone()),
        }
        slot.part(result);
    }

    fn start_direct_writer(
        &self,
        index: usize,
        o: u32,
        def: &crate::scenario::DirectWriterDef,
        cluster: &LocalCluster,
    ) -> Result<(), String> {
        let (rate, until) = (def.rate, def.until);
        let ledger = self
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or("no load runs: a direct writer shares the load's ledger")?;
        let instance = testbed(cluster, o).ok_or_else(|| format!("no instance {o}"))?;
        let port = instance.port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut config = LoadConfig::with_account(AccountKind::Privileged);
        config.writers = 1;
        config.readers = 0;
        config.rate_per_sec = rate;
        config.run = self.run_of(index);
        config.statement_timeout = Duration::from_secs(2);
        if def.socket {
            config.socket = Some(instance.socket_path());
        }
        let handle = Load::start_sharing(
            config,
            Endpoints {
                primary: addr,
                read: addr,
            },
            cluster.credentials(),
            ledger,
        )
        .map_err(|e| e.to_string())?;
        let slot = Arc::new(Mutex::new(Some(handle)));
        self.writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((index, Arc::clone(&slot)));
        if let Some(until) = until {
            let state = cluster.state().clone();
            let handle = cluster.handle(o).map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let done = match until {
                        Until::NotPrimary => state.read().is_ok_and(|d| d.cluster.primary != o),
                        Until::Replica => handle
                            .observe()
                            .await
                            .is_ok_and(|obs| obs.replication.is_some()),
                    };
                    let mut running = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    if running.is_none() {
                        return;
                    }
                    if done {
                        // Dropping the handle aborts the writer at once: a
                        // write in flight is abandoned, never acknowledged.
                        *running = None;
                        return;
                    }
                }
            });
        }
        Ok(())
    }

    /// Takes the `fail: server-only` fault due before `action`, if any.
    fn take_server_only(&self, action: &str) -> Option<usize> {
        self.faults.iter().enumerate().find_map(|(i, slot)| {
            let due = slot.def.fail == Some(FailMode::ServerOnly)
                && matches!(&slot.def.when, Trigger::BeforeAction(a) if a == action)
                && !slot.triggered.swap(true, Ordering::SeqCst);
            due.then_some(i)
        })
    }

    /// Whether the next record stored after a trigger must fail; takes the
    /// armed failure and confirms it.
    fn take_record_failure(&self) -> Option<usize> {
        self.record_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The instance `pick` names now, with the version it runs.
    fn pick(&self, pick: &Pick, cluster: &LocalCluster) -> Option<(u32, Version)> {
        let doc = cluster.state().read().ok()?;
        let c = doc.cluster;
        let o = match pick {
            Pick::Primary => Some(c.primary),
            Pick::Instance(o) => Some(*o),
            Pick::Candidate => match doc.record.intent {
                Some(Intent::Switchover { to, .. } | Intent::Failover { to, .. }) => Some(to),
                _ => None,
            },
            Pick::OutOfService => match doc.record.intent {
                Some(
                    Intent::Drained { ordinal, .. }
                    | Intent::Restarting { ordinal, .. }
                    | Intent::Altering { ordinal, .. },
                ) => Some(ordinal),
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

    /// Runs a SQL fault's statements as root on instance `o`; a task keeps
    /// the session open for the fault's `hold_s` (the fault's own duration)
    /// and notes whether the server closed it before.
    async fn run_sql(&self, cluster: &LocalCluster, o: u32, sql: &SqlFault) -> Result<(), String> {
        let instance = testbed(cluster, o).ok_or_else(|| format!("no instance {o}"))?;
        let mut conn = instance.connect_root().await.map_err(|e| e.to_string())?;
        for statement in &sql.statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut conn)
                .await
                .map_err(|e| format!("{statement}: {e}"))?;
        }
        let killed = Arc::new(AtomicBool::new(false));
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&killed));
        let hold = Duration::from_secs(sql.hold_s);
        tokio::spawn(async move {
            use sqlx::Connection;
            let until = tokio::time::Instant::now() + hold;
            // A ping is no statement: it leaves an open transaction and its
            // locks as they are.
            while tokio::time::Instant::now() < until {
                let ping = tokio::time::timeout(Duration::from_secs(1), conn.ping()).await;
                if matches!(ping, Ok(Err(_))) {
                    killed.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200).min(hold)).await;
            }
            drop(conn);
        });
        Ok(())
    }
}

/// The version instance `o` runs, from the state file.
fn version_of(cluster: &LocalCluster, o: u32) -> Option<Version> {
    let doc = cluster.state().read().ok()?;
    let hash = &doc.cluster.instances.get(&o)?.revision.hash;
    Some(doc.cluster.history.by_hash(hash)?.version)
}

/// The user id owning `path` (a process's `/proc` folder: the process's).
fn owner_of(path: &str) -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .map(|m| m.uid())
        .map_err(|e| format!("cannot read the owner of {path}: {e}"))
}

fn testbed(cluster: &LocalCluster, o: u32) -> Option<&switchyard_testbed::Instance> {
    usize::try_from(o)
        .ok()
        .and_then(|i| cluster.testbed().instances().get(i))
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

    /// Runs one of the runtime's actions with the faults timed around it:
    /// those before it, the action, those after it (a `fail` fault only
    /// once the action took effect). Every action of the runtime goes
    /// through here, so a new one is one line.
    async fn wrap(
        &self,
        action: &str,
        work: impl Future<Output = Result<(), RuntimeError>>,
    ) -> Result<(), RuntimeError> {
        let before = self
            .plan
            .fire_due(
                |t| matches!(t, Trigger::BeforeAction(a) if a == action),
                &format!("before {action}"),
                true,
                self.cluster,
            )
            .await;
        if before.kill {
            self.die().await;
        }
        // Faults timed inside the action fire on their delay while it runs.
        let during = self
            .plan
            .faults
            .iter()
            .find_map(|slot| match &slot.def.when {
                Trigger::DuringAction(a, ms)
                    if a == action && !slot.triggered.load(Ordering::SeqCst) =>
                {
                    Some(*ms)
                }
                _ => None,
            });
        let result = match during {
            None => work.await,
            Some(ms) => {
                let running = AtomicBool::new(true);
                let fire = async {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let still = if running.load(Ordering::SeqCst) {
                        "while it runs"
                    } else {
                        "after it returned"
                    };
                    self.plan
                        .fire_due(
                            |t| matches!(t, Trigger::DuringAction(a, _) if a == action),
                            &format!("{ms} ms into {action}, {still}"),
                            true,
                            self.cluster,
                        )
                        .await
                };
                let work = async {
                    let r = work.await;
                    running.store(false, Ordering::SeqCst);
                    r
                };
                let (r, asked) = tokio::join!(work, fire);
                if asked.kill {
                    self.die().await;
                }
                r
            }
        };
        let after = self
            .plan
            .fire_due(
                |t| matches!(t, Trigger::AfterAction(a) if a == action),
                &format!("after {action}"),
                result.is_ok(),
                self.cluster,
            )
            .await;
        if after.kill {
            self.die().await;
        }
        if let Some(i) = after.fail {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                action.to_owned(),
                format!("fault {}: the action took effect, then failed", i + 1),
            ));
        }
        result
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
        self.inner.store_record(expected_seq, record).await?;
        self.plan.saw_record(record);
        // Stored: the faults timed by what it records, then an armed failure.
        let mut asked = Asked::default();
        match &record.intent {
            Some(Intent::Switchover { step, .. }) => {
                let step: SwitchoverStep = *step;
                asked = self
                    .plan
                    .fire_due(
                        |t| *t == Trigger::Recorded(step),
                        &format!("recorded {step:?}"),
                        true,
                        self.cluster,
                    )
                    .await;
            }
            Some(Intent::Failover { step, .. }) => {
                let step: FailoverStep = *step;
                asked = self
                    .plan
                    .fire_due(
                        |t| *t == Trigger::RecordedFailover(step),
                        &format!("recorded failover {step:?}"),
                        true,
                        self.cluster,
                    )
                    .await;
            }
            _ => {}
        }
        let failing = self.plan.take_record_failure();
        if let Some(i) = failing
            && let Some(slot) = self.plan.faults.get(i)
        {
            slot.part(Ok(format!(
                "record seq {} stored, then the engine got an error",
                record.seq
            )));
            self.plan.note(format!(
                "record seq {} stored; the engine gets an error",
                record.seq
            ));
        }
        if asked.kill {
            self.die().await;
        }
        if let Some(i) = failing {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                "store the record",
                format!(
                    "fault {}: the record was stored, then the write failed",
                    i + 1
                ),
            ));
        }
        Ok(())
    }
    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.wrap("drain", self.inner.drain(ordinal)).await
    }
    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.wrap("undrain", self.inner.undrain(ordinal)).await
    }
    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        self.wrap(
            "restart",
            self.inner
                .restart(ordinal, revision, version, slow_shutdown),
        )
        .await
    }
    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        if self.plan.is_held_down(ordinal) {
            // As a server whose node is lost: nothing can start it.
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                "recover".to_owned(),
                format!("fault: instance {ordinal} is held down and cannot start"),
            ));
        }
        self.wrap("recover", self.inner.recover(ordinal)).await
    }
    async fn confirm_leadership(&self, until: Timestamp) -> Result<(), RuntimeError> {
        self.inner.confirm_leadership(until).await
    }
    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.wrap("fence", self.inner.fence(ordinal, deadline))
            .await
    }
    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.wrap("unfence", self.inner.unfence(ordinal, deadline))
            .await
    }
    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.wrap("demote", self.inner.demote(ordinal, source, deadline))
            .await
    }
    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.wrap(
            "wait_caught_up",
            self.inner.wait_caught_up(candidate, from, deadline),
        )
        .await
    }
    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        if let Some(i) = self.plan.take_server_only("promote") {
            let done = match self.cluster.handle(ordinal) {
                Ok(h) => h.promote().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let line = match &done {
                Ok(()) => Ok(format!(
                    "before promote: instance {ordinal} promoted on the server only (writable, \
                     not the recorded primary); the engine gets an error"
                )),
                Err(e) => Err(format!(
                    "before promote: the server-side promotion FAILED: {e}"
                )),
            };
            if let Some(slot) = self.plan.faults.get(i) {
                self.plan.outcome(slot, line);
            }
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                format!("promote instance {ordinal}"),
                format!("fault {}: promoted on the server, then failed", i + 1),
            ));
        }
        self.wrap("promote", self.inner.promote(ordinal, deadline))
            .await
    }
    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.wrap("repoint", self.inner.repoint(ordinal, source))
            .await
    }
    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        self.wrap(
            "apply_variables",
            self.inner.apply_variables(ordinal, revision, variables),
        )
        .await
    }
    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        self.wrap("run_ddl", self.inner.run_ddl(ordinal, change))
            .await
    }
    async fn detach(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.wrap("detach", self.inner.detach(ordinal, deadline))
            .await
    }
    async fn wait_received_applied(
        &self,
        ordinal: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.wrap(
            "wait_received_applied",
            self.inner.wait_received_applied(ordinal, deadline),
        )
        .await
    }
    async fn pause(&self, reason: &WaitReason) {
        self.plan.saw_wait(reason);
        self.inner.pause(reason).await;
    }
    fn on_step(&self, step: &StepOutcome) {
        self.inner.on_step(step);
    }
}
