//! The independent monitor: every instance observed every 50 ms from
//! connections of the monitor's own (never the engine's view), and the
//! engine's record read from the state file, checking:
//!
//! - **one-writer**: at most one writable instance (a sample with two is
//!   confirmed by sampling those again at once);
//! - **no-writer**: zero writable instances only while the record shows a
//!   switchover within its deadline (plus [`UNDO_GRACE`] to undo it), or while the primary is down by a
//!   scenario's fault (three samples in a row, so one slow answer is not a
//!   verdict);
//! - **newer-source**: no instance replicates from a source running a newer
//!   version (two samples in a row);
//! - **out-of-service**: the instances down (not by a fault) together with
//!   the one the engine's intent names number at most one (two samples in a row);
//! - **recovery**: an instance a fault killed comes back on the version it ran.
//!
//! Lost writes are checked at the end by the runner, across every instance.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchyard_local::state::StateFile;
use switchyard_local::timeline::{Event, Timeline};
use switchyard_mysql::{Instance, Observation, Timeouts};
use switchyard_plan::record::Intent;
use switchyard_plan::{Record, versions::Version};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::fault::FaultPlan;

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When, ms after the monitor started.
    pub at_ms: u64,
    /// The check: `one-writer`, `no-writer`, `newer-source`,
    /// `out-of-service`, `recovery`, or the runner's `lost-writes`.
    pub check: &'static str,
    /// What was seen.
    pub detail: String,
}

/// What the monitor saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MonitorReport {
    /// Samples taken.
    pub samples: u64,
    /// The broken invariants, in order (a check reports again only after it
    /// held in between).
    pub violations: Vec<Violation>,
    /// Instances killed by a fault that were seen up again, with the version.
    pub recoveries: Vec<(u32, String)>,
}

/// A running monitor.
#[derive(Debug)]
pub struct Monitor {
    stop: watch::Sender<bool>,
    task: JoinHandle<MonitorReport>,
}

impl Monitor {
    /// Starts sampling every `every` the instances behind `handles` (by
    /// ordinal, listening on `ports`), reading the engine's record from
    /// `state`. The handles are the monitor's own (made for it, not shared
    /// with an engine). `timeline` is the cluster's record of process starts,
    /// read only to tell a supervisor's recovery too short for the sampling
    /// to see from an instance started on the wrong version.
    pub fn start(
        handles: Vec<Instance>,
        ports: &[u16],
        state: StateFile,
        timeline: Arc<Timeline>,
        plan: Arc<FaultPlan>,
        every: Duration,
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
        let watch = Watch {
            handles,
            ports: ports.to_vec(),
            state,
            timeline,
            plan,
        };
        let task = tokio::spawn(watch.run(every, rx));
        Monitor { stop, task }
    }

    /// Stops sampling and returns what was seen.
    pub async fn stop(self) -> MonitorReport {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

struct Watch {
    handles: Vec<Instance>,
    ports: Vec<u16>,
    state: StateFile,
    timeline: Arc<Timeline>,
    plan: Arc<FaultPlan>,
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
    matches!(
        record.and_then(|r| r.intent.as_ref()),
        Some(Intent::Switchover { deadline, .. }) if unix_ms() <= deadline.0.saturating_add(grace)
    )
}

impl Watch {
    async fn sample(&self, which: &[u32]) -> Vec<(u32, Option<Observation>)> {
        let mut set = JoinSet::new();
        for o in which {
            let Some(h) = usize::try_from(*o).ok().and_then(|i| self.handles.get(i)) else {
                continue;
            };
            let (o, h) = (*o, h.clone());
            set.spawn(async move { (o, h.observe().await.ok()) });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(seen) = joined {
                out.push(seen);
            }
        }
        out.sort_by_key(|(o, _)| *o);
        out
    }

    async fn run(self, every: Duration, mut stop: watch::Receiver<bool>) -> MonitorReport {
        let started = Instant::now();
        let mut report = MonitorReport::default();
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
                _ = stop.changed() => return report,
            }
            if *stop.borrow() {
                return report;
            }
            // Only an instance already taken down when the sample began can
            // be seen up again by it: a sample under way when a fault fires
            // may still reach the old process.
            let down_before = self.plan.injected();
            let before = self.state.read().ok();
            let seen = self.sample(&all).await;
            let after = self.state.read().ok();
            report.samples += 1;
            let at_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut violate = |check: &'static str, detail: String| {
                report.violations.push(Violation {
                    at_ms,
                    check,
                    detail,
                });
            };
            let injected = self.plan.injected();

            // Instances a fault killed, seen up again.
            for (o, obs) in &seen {
                if let (Some(obs), Some(expected), true) =
                    (obs, injected.get(o), down_before.contains_key(o))
                {
                    let v = obs.version.version;
                    if v != *expected && self.first_start_after_fault(*o) != Some(*expected) {
                        violate(
                            "recovery",
                            format!("instance {o} came back on {v}, not on {expected}"),
                        );
                    }
                    report.recoveries.push((*o, v.to_string()));
                    self.plan.recovered(*o);
                }
            }

            // At most one writable instance, confirmed.
            let mut writable: Vec<u32> = seen
                .iter()
                .filter(|(_, obs)| obs.as_ref().is_some_and(Observation::is_writable))
                .map(|(o, _)| *o)
                .collect();
            if writable.len() > 1 {
                writable = self
                    .sample(&writable)
                    .await
                    .into_iter()
                    .filter(|(_, obs)| obs.as_ref().is_some_and(Observation::is_writable))
                    .map(|(o, _)| o)
                    .collect();
            }
            if one.see(writable.len() > 1, 1) {
                violate("one-writer", format!("instances {writable:?} all writable"));
            }

            // Zero writable only inside a switchover's deadline or while a
            // fault has the primary down.
            let primary = after.as_ref().map(|d| d.cluster.primary);
            let excused = in_switchover(before.as_ref().map(|d| &d.record))
                || in_switchover(after.as_ref().map(|d| &d.record))
                || primary.is_some_and(|p| injected.contains_key(&p));
            if none.see(writable.is_empty() && !excused, 3) {
                violate(
                    "no-writer",
                    format!(
                        "no instance writable outside a switchover (primary: {primary:?}, record intent: {:?})",
                        after.as_ref().and_then(|d| d.record.intent.as_ref())
                    ),
                );
            }

            // No instance replicates from a newer source.
            let version_of = |o: u32| -> Option<Version> {
                seen.iter()
                    .find(|(s, _)| *s == o)
                    .and_then(|(_, obs)| obs.as_ref().map(|x| x.version.version))
            };
            let mut newer_pairs = Vec::new();
            for (o, obs) in &seen {
                let Some(obs) = obs else { continue };
                let Some(r) = obs.replication.as_ref() else {
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

            // At most one instance out of service by the engine.
            let mut down: BTreeSet<u32> = seen
                .iter()
                .filter(|(o, obs)| obs.is_none() && !injected.contains_key(o))
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
        }
    }
}
