//! An independent monitor of a local cluster's invariants, sampled at a
//! fixed interval from connections of its own:
//!
//! - at most one writable instance (`read_only` off);
//! - no instance replicating from a source newer than itself (the release
//!   catalog's replication rule);
//! - at most one instance out of service by the engine (drained from the
//!   read pool, fenced, or being restarted by the engine).
//!
//! On a Galera cluster every node takes writes and none replicates from
//! another, so only the last invariant is sampled there.
//!
//! The fourth invariant, no acknowledged write lost, is the ledger's check
//! once the load has stopped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_mysql::{IoThreadState, Observation};
use switchyard_plan::versions::catalog;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::cluster::{LocalCluster, Shared, operator_credentials};

/// Which invariant a sample broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// More than one instance accepted writes.
    OneWriter,
    /// An instance replicated from a source newer than itself.
    NoNewerSource,
    /// More than one instance was out of service by the engine.
    OneOutOfService,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When, after the monitor started.
    pub at: Duration,
    /// Which invariant.
    pub invariant: Invariant,
    /// The instances and facts involved.
    pub detail: String,
}

/// What the monitor saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MonitorReport {
    /// How many times the cluster was sampled.
    pub samples: u64,
    /// The most instances writable in one sample.
    pub max_writable: usize,
    /// The most instances out of service by the engine in one sample.
    pub max_out_of_service: usize,
    /// Every broken invariant, in time order.
    pub violations: Vec<Violation>,
    /// The longest stretch in which no instance was writable.
    pub longest_without_writer: Duration,
}

impl MonitorReport {
    /// The violations of one invariant.
    pub fn of(&self, invariant: Invariant) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(move |v| v.invariant == invariant)
    }
}

/// Samples a cluster's invariants every interval until stopped.
#[derive(Debug)]
pub struct Monitor {
    stop: watch::Sender<bool>,
    task: JoinHandle<MonitorReport>,
    live: Arc<Mutex<MonitorReport>>,
}

type Handles = Vec<(u32, switchyard_mysql::Instance)>;

impl Monitor {
    /// Starts sampling `cluster` every `every` (50 ms in the tests). The
    /// monitor does not keep the cluster alive.
    pub fn start(cluster: &LocalCluster, every: Duration) -> Monitor {
        let operator = operator_credentials(cluster.credentials());
        let handles: Handles = cluster
            .testbed()
            .instances()
            .iter()
            .zip(0u32..)
            .map(|(i, o)| {
                let h = switchyard_mysql::Instance::new(
                    format!("instance {o}"),
                    switchyard_mysql::InstanceAddr::new("127.0.0.1", i.port()),
                    operator.clone(),
                )
                .with_timeouts(switchyard_mysql::Timeouts {
                    connect: Duration::from_millis(500),
                    statement: Duration::from_secs(1),
                    ..switchyard_mysql::Timeouts::default()
                });
                (o, h)
            })
            .collect();
        let (stop, rx) = watch::channel(false);
        let shared = Arc::downgrade(cluster.shared());
        let live = Arc::new(Mutex::new(MonitorReport::default()));
        let task = tokio::spawn(run(shared, handles, every, rx, Arc::clone(&live)));
        Monitor { stop, task, live }
    }

    /// What the monitor has seen so far.
    pub fn snapshot(&self) -> MonitorReport {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops sampling and returns what was seen.
    pub async fn stop(self) -> MonitorReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn observe_all(handles: &[(u32, switchyard_mysql::Instance)]) -> Vec<(u32, Observation)> {
    let mut set = JoinSet::new();
    for (o, h) in handles {
        let (o, h) = (*o, h.clone());
        set.spawn(async move { (o, h.observe().await.ok()) });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((o, Some(obs))) = joined {
            out.push((o, obs));
        }
    }
    out.sort_by_key(|(o, _)| *o);
    out
}

fn writable(seen: &[(u32, Observation)]) -> Vec<u32> {
    seen.iter()
        .filter(|(_, obs)| obs.is_writable())
        .map(|(o, _)| *o)
        .collect()
}

/// Replicas whose running replication comes from a newer source.
fn newer_sources(shared: &Shared, seen: &[(u32, Observation)]) -> Vec<String> {
    let mut out = Vec::new();
    for (o, obs) in seen {
        let Some(r) = obs.replication.as_ref() else {
            continue;
        };
        if r.io_thread != IoThreadState::Running && !r.sql_running {
            continue;
        }
        let Some(source) = shared.ordinal_of_port(r.source_port) else {
            continue;
        };
        let Some((_, source_obs)) = seen.iter().find(|(s, _)| *s == source) else {
            continue;
        };
        let (from, to) = (source_obs.version.version, obs.version.version);
        let allowed = catalog()
            .check_replication(shared.flavor, from, to)
            .is_ok_and(|v| v.allowed);
        if !allowed {
            out.push(format!(
                "instance {o} ({to}) replicates from instance {source} ({from})"
            ));
        }
    }
    out
}

async fn run(
    shared: Weak<Shared>,
    handles: Handles,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    live: Arc<Mutex<MonitorReport>>,
) -> MonitorReport {
    let started = Instant::now();
    let mut report = MonitorReport::default();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_writer = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return report,
        }
        if *stop.borrow() {
            return report;
        }
        let Some(shared) = shared.upgrade() else {
            return report;
        };
        let seen = observe_all(&handles).await;
        let at = started.elapsed();
        report.samples += 1;

        // Every Galera node takes writes (one writer is the router's choice), and none
        // replicates from another: those two invariants are about primary-replica clusters.
        let galera = shared.galera;
        let mut writers = if galera { Vec::new() } else { writable(&seen) };
        if writers.len() > 1 {
            // The instances are not read at one instant: a switchover between
            // two reads could look like two writers. Ask the writable ones
            // again, together, before calling it a violation.
            for _ in 0..2 {
                let again: Handles = handles
                    .iter()
                    .filter(|(o, _)| writers.contains(o))
                    .cloned()
                    .collect();
                writers = writable(&observe_all(&again).await);
                if writers.len() < 2 {
                    break;
                }
            }
            if writers.len() > 1 {
                report.violations.push(Violation {
                    at,
                    invariant: Invariant::OneWriter,
                    detail: format!("instances {writers:?} are writable"),
                });
            }
        }
        report.max_writable = report.max_writable.max(writers.len());
        if writers.is_empty() && !galera {
            report.longest_without_writer =
                report.longest_without_writer.max(last_writer.elapsed());
        } else {
            last_writer = Instant::now();
        }

        let newer = if galera {
            Vec::new()
        } else {
            newer_sources(&shared, &seen)
        };
        for detail in newer {
            report.violations.push(Violation {
                at,
                invariant: Invariant::NoNewerSource,
                detail,
            });
        }

        let out: BTreeSet<u32> = shared.out_of_service();
        report.max_out_of_service = report.max_out_of_service.max(out.len());
        if out.len() > 1 {
            report.violations.push(Violation {
                at,
                invariant: Invariant::OneOutOfService,
                detail: format!("instances {out:?} are out of service by the engine"),
            });
        }
        live.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&report);
    }
}
