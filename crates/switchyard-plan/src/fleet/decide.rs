//! The fleet's decision ([`decide_fleet`]); its rules are listed in [`super`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::mutation::FleetMutation;
use super::record::{ClusterState, FleetCommand, FleetRecord, FleetState};
use super::{ClusterObservation, ClusterRollout, FleetError, FleetSpec, UserCheck, plan_waves};
use crate::topology::Timestamp;

/// Why the fleet stopped on a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stop", rename_all = "kebab-case")]
pub enum StopReason {
    /// The cluster's own rollout halted.
    Halted {
        /// Its halt reason, in words.
        reason: String,
    },
    /// Replication stopped on a baking cluster.
    ReplicationStopped,
    /// A replica of a baking cluster lags beyond the bound.
    Lagging {
        /// The lag, in seconds.
        seconds: u64,
        /// The bound.
        max: u64,
    },
    /// The user check of a baking cluster failed.
    UserCheckFailed {
        /// What failed.
        message: String,
    },
    /// A baking cluster no longer runs the fleet's change, or rolls again.
    ChangedElsewhere {
        /// What it runs or rolls now, in words.
        now: String,
    },
}

impl StopReason {
    /// A bounded key for metrics and event reasons.
    pub fn key(&self) -> &'static str {
        match self {
            StopReason::Halted { .. } => "halted",
            StopReason::ReplicationStopped => "replication-stopped",
            StopReason::Lagging { .. } => "lagging",
            StopReason::UserCheckFailed { .. } => "user-check-failed",
            StopReason::ChangedElsewhere { .. } => "changed-elsewhere",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Halted { reason } => write!(f, "its rollout halted: {reason}"),
            StopReason::ReplicationStopped => write!(f, "replication stopped during the bake"),
            StopReason::Lagging { seconds, max } => {
                write!(
                    f,
                    "a replica lags {seconds}s during the bake (bound {max}s)"
                )
            }
            StopReason::UserCheckFailed { message } => {
                write!(f, "the user check failed during the bake: {message}")
            }
            StopReason::ChangedElsewhere { now } => {
                write!(
                    f,
                    "it no longer runs the fleet's change during the bake: {now}"
                )
            }
        }
    }
}

/// Why the fleet waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "wait", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FleetWait {
    /// Clusters are still rolling.
    Rolling {
        /// Those clusters, in wave order.
        clusters: Vec<String>,
    },
    /// Clusters bake; the first bake ends at `until`.
    Baking {
        /// Those clusters, in wave order.
        clusters: Vec<String>,
        /// When the first of their bakes ends.
        until: Timestamp,
    },
    /// A cluster the fleet watches was not observed (or not since its bake ended).
    Unobserved {
        /// The cluster.
        cluster: String,
    },
    /// The fleet stopped; a person must resume or abort.
    Stopped {
        /// The cluster it stopped on.
        cluster: String,
        /// Why.
        reason: StopReason,
    },
    /// The spec names a new change while the current revision is not done
    /// or aborted: abort it first.
    PreviousUnfinished {
        /// The current revision.
        revision: u64,
        /// Its change.
        change: String,
    },
}

impl fmt::Display for FleetWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetWait::Rolling { clusters } => write!(f, "rolling: {}", clusters.join(", ")),
            FleetWait::Baking { clusters, until } => {
                write!(f, "baking until {until}: {}", clusters.join(", "))
            }
            FleetWait::Unobserved { cluster } => {
                write!(
                    f,
                    "cluster {cluster:?} has not been observed recently enough"
                )
            }
            FleetWait::Stopped { cluster, reason } => write!(
                f,
                "stopped on cluster {cluster:?}: {reason}; resume once it is healthy (or skip \
                 it), or abort"
            ),
            FleetWait::PreviousUnfinished { revision, change } => write!(
                f,
                "fleet revision {revision} ({change}) is not finished: abort it before rolling \
                 another change"
            ),
        }
    }
}

/// How a resumed cluster continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resumed {
    /// Its own rollout runs again: it is watched as rolling.
    Rolling,
    /// Its rollout is done and it is healthy: its bake starts again.
    Baking,
    /// The person skipped it.
    Skipped,
}

/// The fleet's next step. A runtime records it with [`super::apply()`] before acting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FleetAction {
    /// Record a new fleet revision for the spec's change, with its waves.
    /// Nothing changes on a cluster.
    Plan {
        /// The new revision's number.
        revision: u64,
        /// The change.
        change: String,
        /// The waves, canary first.
        waves: Vec<Vec<String>>,
    },
    /// Give a cluster the change: its own rollout carries it out. Also
    /// given again to a cluster recorded as started whose observation does
    /// not carry the change yet (the runtime stopped between recording and
    /// acting).
    Start {
        /// The cluster.
        cluster: String,
        /// The change.
        change: String,
    },
    /// A cluster's rollout finished: its bake starts now.
    Bake {
        /// The cluster.
        cluster: String,
    },
    /// A cluster stayed healthy for the bake: it is done.
    Baked {
        /// The cluster.
        cluster: String,
    },
    /// Do nothing now; observe again later.
    Wait {
        /// Why.
        reason: FleetWait,
    },
    /// Stop the whole fleet: nothing new starts until a person resumes.
    Stop {
        /// The cluster that failed.
        cluster: String,
        /// Why.
        reason: StopReason,
    },
    /// Take a person's resume: continue from where the fleet stopped.
    Resume {
        /// The cluster the fleet stopped on.
        cluster: String,
        /// How it continues.
        then: Resumed,
    },
    /// Refuse a person's command, with the reason (it is dropped).
    Refuse {
        /// The command, in words.
        command: String,
        /// Why.
        reason: String,
    },
    /// The fleet is aborted (a person's command): every cluster is left as it is.
    Aborted {
        /// The clusters started on the change, in wave order.
        ran: Vec<String>,
        /// The clusters never started.
        untouched: Vec<String>,
    },
    /// Every cluster is done (or skipped).
    Done,
}

impl fmt::Display for FleetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetAction::Plan {
                revision,
                change,
                waves,
            } => {
                let waves: Vec<String> = waves.iter().map(|w| w.join(", ")).collect();
                write!(
                    f,
                    "plan fleet revision {revision} ({change}) in waves [{}]",
                    waves.join("] [")
                )
            }
            FleetAction::Start { cluster, change } => {
                write!(f, "start cluster {cluster:?} on {change}")
            }
            FleetAction::Bake { cluster } => write!(f, "cluster {cluster:?} rolled; baking"),
            FleetAction::Baked { cluster } => write!(f, "cluster {cluster:?} baked: done"),
            FleetAction::Wait { reason } => write!(f, "wait: {reason}"),
            FleetAction::Stop { cluster, reason } => {
                write!(f, "stop the fleet on cluster {cluster:?}: {reason}")
            }
            FleetAction::Resume { cluster, then } => match then {
                Resumed::Skipped => write!(f, "resume, skipping cluster {cluster:?}"),
                Resumed::Rolling => write!(f, "resume; cluster {cluster:?} rolls again"),
                Resumed::Baking => write!(f, "resume; cluster {cluster:?} bakes again"),
            },
            FleetAction::Refuse { command, reason } => write!(f, "refuse {command}: {reason}"),
            FleetAction::Aborted { ran, untouched } => write!(
                f,
                "aborted; the change ran on [{}], untouched: [{}]",
                ran.join(", "),
                untouched.join(", ")
            ),
            FleetAction::Done => write!(f, "done: every cluster rolled and baked"),
        }
    }
}

/// The fleet's next step. Pure: the same inputs give the same action.
///
/// `observations` holds each cluster the runtime could observe, by name.
/// An invalid spec is refused with the error and nothing else is decided.
pub fn decide_fleet(
    spec: &FleetSpec,
    record: &FleetRecord,
    observations: &BTreeMap<String, ClusterObservation>,
    now: Timestamp,
) -> Result<FleetAction, FleetError> {
    decide_fleet_mutated(FleetMutation::None, spec, record, observations, now)
}

/// [`decide_fleet`] with one rule broken on purpose (public only for the
/// crate's tests, with the `mutations` feature; see [`super::mutation`]).
pub fn decide_fleet_mutated(
    mutation: FleetMutation,
    spec: &FleetSpec,
    record: &FleetRecord,
    observations: &BTreeMap<String, ClusterObservation>,
    now: Timestamp,
) -> Result<FleetAction, FleetError> {
    spec.validate()?;
    if let Some(command) = &record.command {
        return Ok(decide_command(spec, record, &command.command, observations));
    }
    let current = match record.current() {
        Some(current) if current.change == spec.change => current,
        _ => return Ok(plan(mutation, spec, record)),
    };
    let running = Running {
        mutation,
        spec,
        record,
        observations,
        change: &current.change,
        now,
    };
    match &record.state {
        FleetState::Done { .. } => Ok(FleetAction::Done),
        FleetState::Aborted { .. } => Ok(aborted(record)),
        FleetState::Stopped {
            cluster, reason, ..
        } => {
            if mutation == FleetMutation::StartWhileStopped
                && let start @ FleetAction::Start { .. } = running.next_wave()
            {
                return Ok(start);
            }
            Ok(FleetAction::Wait {
                reason: FleetWait::Stopped {
                    cluster: cluster.clone(),
                    reason: reason.clone(),
                },
            })
        }
        FleetState::Idle | FleetState::Running => Ok(running.decide()),
    }
}

/// A new revision for the spec's change, unless the current one is unfinished.
fn plan(mutation: FleetMutation, spec: &FleetSpec, record: &FleetRecord) -> FleetAction {
    if let Some(current) = record.current()
        && matches!(
            record.state,
            FleetState::Running | FleetState::Stopped { .. }
        )
    {
        return FleetAction::Wait {
            reason: FleetWait::PreviousUnfinished {
                revision: current.number,
                change: current.change.clone(),
            },
        };
    }
    let latest = record.current().map_or(0, |c| c.number);
    let cap = (mutation != FleetMutation::IgnoreMaxAtOnce).then_some(spec.max_at_once);
    FleetAction::Plan {
        revision: if mutation == FleetMutation::ReuseRevisionNumber {
            latest.max(1)
        } else {
            latest + 1
        },
        change: spec.change.clone(),
        waves: plan_waves(&spec.clusters, spec.canary, cap),
    }
}

fn aborted(record: &FleetRecord) -> FleetAction {
    let (ran, untouched): (Vec<&str>, Vec<&str>) = record
        .in_order()
        .partition(|c| record.cluster(c).is_some_and(ClusterState::started));
    FleetAction::Aborted {
        ran: ran.into_iter().map(String::from).collect(),
        untouched: untouched.into_iter().map(String::from).collect(),
    }
}

fn decide_command(
    spec: &FleetSpec,
    record: &FleetRecord,
    command: &FleetCommand,
    observations: &BTreeMap<String, ClusterObservation>,
) -> FleetAction {
    let refuse = |reason: String| FleetAction::Refuse {
        command: command.to_string(),
        reason,
    };
    let (cluster, skip) = match (command, &record.state) {
        (FleetCommand::Abort, FleetState::Running | FleetState::Stopped { .. }) => {
            return aborted(record);
        }
        (FleetCommand::Resume { skip }, FleetState::Stopped { cluster, .. }) => (cluster, skip),
        (_, state) => return refuse(format!("the fleet is {state}")),
    };
    if skip.as_ref() == Some(cluster) {
        return FleetAction::Resume {
            cluster: cluster.clone(),
            then: Resumed::Skipped,
        };
    }
    let Some(current) = record.current() else {
        return refuse("no fleet revision is recorded".into());
    };
    let Some(seen) = observations.get(cluster) else {
        return refuse(format!(
            "cluster {cluster:?} is not observed: resume once it is, or skip it"
        ));
    };
    if seen.change.as_deref() != Some(current.change.as_str()) {
        return refuse(format!(
            "cluster {cluster:?} does not carry the change {} any more: give it back, or skip it",
            current.change
        ));
    }
    match &seen.rollout {
        ClusterRollout::Halted { reason } => refuse(format!(
            "cluster {cluster:?} is still halted ({reason}): fix it, or resume skipping it"
        )),
        ClusterRollout::Rolling => FleetAction::Resume {
            cluster: cluster.clone(),
            then: Resumed::Rolling,
        },
        ClusterRollout::Done => match bake_problem(spec, &current.change, seen) {
            Some(problem) => refuse(format!(
                "cluster {cluster:?} is still unhealthy ({problem}): fix it, or resume skipping it"
            )),
            None => FleetAction::Resume {
                cluster: cluster.clone(),
                then: Resumed::Baking,
            },
        },
    }
}

/// What fails a baking cluster's check, if anything.
fn bake_problem(spec: &FleetSpec, change: &str, seen: &ClusterObservation) -> Option<StopReason> {
    if let ClusterRollout::Halted { reason } = &seen.rollout {
        return Some(StopReason::Halted {
            reason: reason.clone(),
        });
    }
    if seen.change.as_deref() != Some(change) {
        return Some(StopReason::ChangedElsewhere {
            now: seen
                .change
                .as_ref()
                .map_or_else(|| "no change".to_string(), |c| format!("change {c}")),
        });
    }
    if seen.rollout == ClusterRollout::Rolling {
        return Some(StopReason::ChangedElsewhere {
            now: "its rollout runs again".into(),
        });
    }
    if !seen.replication_running {
        return Some(StopReason::ReplicationStopped);
    }
    if let Some(seconds) = seen.lag_seconds
        && seconds > spec.max_lag_seconds
    {
        return Some(StopReason::Lagging {
            seconds,
            max: spec.max_lag_seconds,
        });
    }
    if let UserCheck::Failed { message } = &seen.user_check {
        return Some(StopReason::UserCheckFailed {
            message: message.clone(),
        });
    }
    None
}

/// The decision for a running fleet (rules 4 to 6).
struct Running<'a> {
    mutation: FleetMutation,
    spec: &'a FleetSpec,
    record: &'a FleetRecord,
    observations: &'a BTreeMap<String, ClusterObservation>,
    change: &'a str,
    now: Timestamp,
}

impl Running<'_> {
    fn decide(&self) -> FleetAction {
        if let Some(stop) = self.stop() {
            return stop;
        }
        if let Some(step) = self.progress() {
            return step;
        }
        self.next_wave()
    }

    fn state(&self, cluster: &str) -> &ClusterState {
        self.record
            .cluster(cluster)
            .unwrap_or(&ClusterState::Pending)
    }

    /// Rule 4: the first cluster, in wave order, that halted or failed its bake.
    fn stop(&self) -> Option<FleetAction> {
        self.record.in_order().find_map(|cluster| {
            let seen = self.observations.get(cluster)?;
            let reason = match (self.state(cluster), &seen.rollout) {
                (ClusterState::Rolling { .. }, ClusterRollout::Halted { reason })
                    if seen.change.as_deref() == Some(self.change)
                        && self.mutation != FleetMutation::IgnoreHalts =>
                {
                    StopReason::Halted {
                        reason: reason.clone(),
                    }
                }
                (ClusterState::Baking { .. }, _)
                    if self.mutation != FleetMutation::IgnoreFailedBake =>
                {
                    bake_problem(self.spec, self.change, seen)?
                }
                _ => return None,
            };
            Some(FleetAction::Stop {
                cluster: cluster.to_string(),
                reason,
            })
        })
    }

    /// Rule 5 (and a start the runtime did not carry out): one cluster's step.
    fn progress(&self) -> Option<FleetAction> {
        self.record.in_order().find_map(|cluster| {
            let seen = self.observations.get(cluster)?;
            let carries = seen.change.as_deref() == Some(self.change);
            match self.state(cluster) {
                ClusterState::Rolling { .. } if !carries => Some(FleetAction::Start {
                    cluster: cluster.to_string(),
                    change: self.change.to_string(),
                }),
                ClusterState::Rolling { .. } if seen.rollout == ClusterRollout::Done => {
                    Some(FleetAction::Bake {
                        cluster: cluster.to_string(),
                    })
                }
                ClusterState::Baking { since } => {
                    let end = since.after(self.spec.bake);
                    (self.now >= end && seen.observed_at >= end).then(|| FleetAction::Baked {
                        cluster: cluster.to_string(),
                    })
                }
                _ => None,
            }
        })
    }

    /// Whether a cluster no longer holds its wave back.
    fn complete(&self, cluster: &str) -> bool {
        match self.state(cluster) {
            ClusterState::Done { .. } | ClusterState::Skipped { .. } => true,
            ClusterState::Stopped { .. } => self.mutation == FleetMutation::StartWhileStopped,
            _ => false,
        }
    }

    /// Rule 6: start the current wave's next cluster, or say what is awaited.
    fn next_wave(&self) -> FleetAction {
        let wave = self
            .record
            .waves
            .iter()
            .find(|wave| wave.iter().any(|c| !self.complete(c)));
        let Some(mut wave) = wave else {
            return FleetAction::Done;
        };
        if self.mutation == FleetMutation::SkipBake {
            // Count a wave whose clusters bake as complete.
            let baking = |c: &String| matches!(self.state(c), ClusterState::Baking { .. });
            if let Some(next) = self
                .record
                .waves
                .iter()
                .find(|w| w.iter().any(|c| !self.complete(c) && !baking(c)))
            {
                wave = next;
            }
        }
        if self.mutation == FleetMutation::DoneWhenLastWaveStarted
            && self.record.waves.last() == Some(wave)
            && wave.iter().all(|c| self.state(c).started())
        {
            return FleetAction::Done;
        }
        let changing = self
            .record
            .clusters
            .values()
            .filter(|s| matches!(s, ClusterState::Rolling { .. }))
            .count();
        let pending = wave
            .iter()
            .find(|c| matches!(self.state(c), ClusterState::Pending));
        if let Some(cluster) = pending
            && (changing < self.spec.max_at_once || self.mutation == FleetMutation::IgnoreMaxAtOnce)
        {
            return FleetAction::Start {
                cluster: cluster.clone(),
                change: self.change.to_string(),
            };
        }
        self.wait()
    }

    fn wait(&self) -> FleetAction {
        let mut rolling = Vec::new();
        let mut baking = Vec::new();
        let mut until: Option<Timestamp> = None;
        for cluster in self.record.in_order() {
            let watched = match self.state(cluster) {
                ClusterState::Rolling { .. } => {
                    rolling.push(cluster.to_string());
                    true
                }
                ClusterState::Baking { since } => {
                    baking.push(cluster.to_string());
                    let end = since.after(self.spec.bake);
                    until = Some(until.map_or(end, |u| u.min(end)));
                    true
                }
                _ => false,
            };
            if watched && !self.observations.contains_key(cluster) {
                return FleetAction::Wait {
                    reason: FleetWait::Unobserved {
                        cluster: cluster.to_string(),
                    },
                };
            }
        }
        let reason = match until {
            Some(until) if rolling.is_empty() => {
                if until <= self.now {
                    // The bake ended but no observation covers its end yet.
                    FleetWait::Unobserved {
                        cluster: baking[0].clone(),
                    }
                } else {
                    FleetWait::Baking {
                        clusters: baking,
                        until,
                    }
                }
            }
            _ => FleetWait::Rolling { clusters: rolling },
        };
        FleetAction::Wait { reason }
    }
}
