//! An engine killed mid-rollout, between steps and between the sub-steps of
//! a switchover, is replaced by a new engine over a new runtime that reads
//! the state file; the rollout finishes without repeating or skipping a step.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use switchyard_local::timeline::{Event, Op};
use switchyard_local::{ClusterSpec, LocalCluster, LocalRuntime, Monitor, StartedBy};
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, StepOutcome};
use switchyard_plan::topology::{Observed, Revision, Timestamp};
use switchyard_plan::versions::Version;
use switchyard_plan::{Engine, Finished, Record, WaitReason};
use switchyard_testbed::ServerKind;
use tokio::sync::Notify;

/// Where the engine dies: right after its own `nth` call of the runtime
/// method `method` has taken effect, before it could record it.
#[derive(Clone, Copy, Debug)]
struct KillPoint {
    method: &'static str,
    nth: usize,
}

/// Calls counted per method, for one engine.
#[derive(Default)]
struct Calls {
    counts: Mutex<std::collections::BTreeMap<&'static str, usize>>,
}

impl Calls {
    fn count(&self, method: &'static str) -> usize {
        let mut c = self.counts.lock().expect("calls");
        let n = c.entry(method).or_insert(0);
        *n += 1;
        *n
    }
}

/// A runtime that hangs forever after its kill point, so the test can drop
/// the engine's future there.
struct Killable<'a> {
    inner: LocalRuntime,
    calls: Calls,
    kill: Option<KillPoint>,
    killed: &'a Notify,
}

impl Killable<'_> {
    async fn after(&self, method: &'static str) {
        let n = self.calls.count(method);
        if let Some(k) = self.kill
            && k.method == method
            && k.nth == n
        {
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl ClusterRuntime for Killable<'_> {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let r = self.inner.observe().await;
        self.after("observe").await;
        r
    }
    async fn load_record(&self) -> Result<Record, RuntimeError> {
        self.inner.load_record().await
    }
    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        self.inner.store_record(expected_seq, record).await
    }
    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        let r = self.inner.drain(ordinal).await;
        self.after("drain").await;
        r
    }
    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
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
        let r = self
            .inner
            .restart(ordinal, revision, version, slow_shutdown)
            .await;
        self.after("restart").await;
        r
    }
    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.inner.recover(ordinal).await
    }
    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        let r = self.inner.fence(ordinal, deadline).await;
        self.after("fence").await;
        r
    }
    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.inner.unfence(ordinal, deadline).await
    }
    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        let r = self.inner.demote(ordinal, source, deadline).await;
        self.after("demote").await;
        r
    }
    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        let r = self.inner.wait_caught_up(candidate, from, deadline).await;
        self.after("wait_caught_up").await;
        r
    }
    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        let r = self.inner.promote(ordinal, deadline).await;
        self.after("promote").await;
        r
    }
    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        let r = self.inner.repoint(ordinal, source).await;
        self.after("repoint").await;
        r
    }
    async fn pause(&self, reason: &WaitReason) {
        self.inner.pause(reason).await;
    }
    fn on_step(&self, step: &StepOutcome) {
        self.inner.on_step(step);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_is_resumed_by_a_new_one_without_repeating_or_skipping_a_step() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb105, 3))
        .await
        .expect("start the cluster");
    cluster
        .timeline()
        .observe_with(switchyard_local::Progress::plain());
    let load = common::start_load(&cluster, common::RATE).await;
    let monitor = Monitor::start(&cluster, Duration::from_millis(50));
    let target = cluster
        .upgrade_target(ServerKind::Mariadb1011)
        .await
        .expect("a target on 10.11");

    // Between two steps; between a restart and its record; between each
    // sub-step of the switchover and its record.
    let kills = [
        KillPoint {
            method: "observe",
            nth: 2,
        },
        KillPoint {
            method: "restart",
            nth: 1,
        },
        KillPoint {
            method: "fence",
            nth: 1,
        },
        KillPoint {
            method: "wait_caught_up",
            nth: 1,
        },
        KillPoint {
            method: "promote",
            nth: 1,
        },
        KillPoint {
            method: "repoint",
            nth: 1,
        },
    ];
    let killed = Notify::new();
    let engines = AtomicUsize::new(0);
    let mut finished = None;
    for kill in kills.iter().copied().map(Some).chain(std::iter::once(None)) {
        engines.fetch_add(1, Ordering::SeqCst);
        // A new runtime (its own connections and fences) over the same state file.
        let runtime = Killable {
            inner: LocalRuntime::new(&cluster),
            calls: Calls::default(),
            kill,
            killed: &killed,
        };
        let engine = Engine::new(runtime, target.clone(), common::policy());
        tokio::select! {
            result = engine.run(5_000) => {
                finished = Some(result.expect("the engine runs"));
                assert!(kill.is_none(), "the rollout ended before the kill point {kill:?}");
                break;
            }
            () = killed.notified() => {
                cluster.timeline().phase(format!("engine killed after {kill:?}; a new engine resumes"));
            }
        }
        // The engine's future is dropped here, mid-rollout.
    }
    assert_eq!(finished, Some(Finished::Done));
    assert_eq!(engines.load(Ordering::SeqCst), kills.len() + 1);

    let report = load.stop().await;
    let writers = monitor.stop().await;
    let check = common::check_writes(&cluster, &report.ledger).await;
    assert!(
        check.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        check.missing
    );
    assert!(
        writers.violations.is_empty(),
        "two writable instances: {:?}",
        writers.violations
    );

    // Nothing repeated, nothing skipped: each replica drained once, highest
    // ordinal first; each instance restarted once onto the target, the
    // primary last; one promotion.
    let events = cluster.timeline().events();
    let ok_ops = |pick: fn(&Op) -> bool| -> Vec<u32> {
        events
            .iter()
            .filter_map(|t| match &t.event {
                Event::OpFinished {
                    ordinal,
                    op,
                    error: None,
                    ..
                } if pick(op) => Some(*ordinal),
                _ => None,
            })
            .collect()
    };
    assert_eq!(ok_ops(|op| matches!(op, Op::Drain)), [2, 1]);
    assert_eq!(ok_ops(|op| matches!(op, Op::Promote)), [1]);
    let starts: Vec<(u32, StartedBy)> = events
        .iter()
        .filter_map(|t| match &t.event {
            Event::Started {
                ordinal,
                by,
                error: None,
                ..
            } => Some((*ordinal, *by)),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [
            (2, StartedBy::Restart),
            (1, StartedBy::Restart),
            (0, StartedBy::Restart)
        ]
    );
    // The record holds the finished rollout, and no action twice.
    let record = cluster.state().read().expect("read the state file").record;
    assert!(
        record.intent.is_none(),
        "an intent is left: {:?}",
        record.intent
    );
    // The old primary's fence is held by its agent, not by the engine: it
    // outlived every killed engine, so no new engine had to fence it again.
    let refences = record
        .history
        .iter()
        .filter(|e| e.error.is_none() && e.action.starts_with("fence the old primary"))
        .count();
    assert_eq!(refences, 0, "{:#?}", record.history);
    let done: Vec<&str> = record
        .history
        .iter()
        .filter(|e| e.error.is_none() && !e.action.starts_with("fence the old primary"))
        .map(|e| e.action.as_str())
        .collect();
    let mut unique = done.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        done.len(),
        "an action was recorded twice: {done:#?}"
    );
    let observed = common::observe_settled(&cluster).await;
    common::assert_healthy(&observed);
    assert!(observed.instances.iter().all(|i| i.runs(&target.revision)));
    assert_eq!(observed.primary().map(|p| p.ordinal), Some(1));
}
