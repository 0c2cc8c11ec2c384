//! The record of a fleet step's effect ([`apply`]): what a runtime stores before it acts.

use super::FLEET_HISTORY_LIMIT;
use super::decide::{FleetAction, Resumed};
use super::mutation::FleetMutation;
use super::record::{ClusterState, Ended, FleetRecord, FleetRevision, FleetState, Rolled};
use crate::topology::Timestamp;

/// Records `action`'s effect in `record` (the runtime stores it, with
/// compare-and-swap on [`FleetRecord::seq`], before it acts; the store bumps
/// `seq`, not this). Pure. A wait records nothing; a start of a cluster
/// already started, a resume of a fleet that is not stopped, or a second
/// done or abort records only a log line (or nothing).
pub fn apply(record: &mut FleetRecord, action: &FleetAction, now: Timestamp) {
    apply_mutated(FleetMutation::None, record, action, now);
}

/// [`apply`] with one rule broken on purpose (public only for the crate's
/// tests, with the `mutations` feature; see [`super::mutation`]).
pub fn apply_mutated(
    mutation: FleetMutation,
    record: &mut FleetRecord,
    action: &FleetAction,
    now: Timestamp,
) {
    match action {
        FleetAction::Wait { .. } => return,
        FleetAction::Plan {
            revision,
            change,
            waves,
        } => record_plan(record, *revision, change, waves, now),
        FleetAction::Start { cluster, change } => {
            if record.cluster(cluster) != Some(&ClusterState::Pending) {
                let again = format!("gave cluster {cluster:?} {change} again (started before)");
                record.log(now, again, None);
                return;
            }
            record
                .clusters
                .insert(cluster.clone(), ClusterState::Rolling { since: now });
            if let Some(current) = record.revisions.last_mut() {
                current.rolled.push(Rolled {
                    cluster: cluster.clone(),
                    started: now,
                    done: None,
                });
            }
        }
        FleetAction::Bake { cluster } => {
            if let Some(state @ ClusterState::Rolling { .. }) = record.clusters.get_mut(cluster) {
                *state = ClusterState::Baking { since: now };
            }
        }
        FleetAction::Baked { cluster } => {
            if let Some(state @ ClusterState::Baking { .. }) = record.clusters.get_mut(cluster) {
                *state = ClusterState::Done { at: now };
                if let Some(rolled) = record
                    .revisions
                    .last_mut()
                    .and_then(|r| r.rolled.iter_mut().find(|r| &r.cluster == cluster))
                {
                    rolled.done = Some(now);
                }
            }
        }
        FleetAction::Stop { cluster, reason } => {
            if let Some(state) = record.clusters.get_mut(cluster) {
                *state = ClusterState::Stopped {
                    reason: reason.clone(),
                    at: now,
                };
            }
            record.state = FleetState::Stopped {
                cluster: cluster.clone(),
                reason: reason.clone(),
                at: now,
            };
        }
        FleetAction::Resume { cluster, then } => {
            record.command = None;
            if !matches!(record.state, FleetState::Stopped { .. }) {
                record.log(
                    now,
                    action.to_string(),
                    Some("the fleet is not stopped".into()),
                );
                return;
            }
            record_resume(mutation, record, cluster, *then, now);
        }
        FleetAction::Refuse { .. } => record.command = None,
        FleetAction::Aborted { .. } => {
            record.command = None;
            if matches!(record.state, FleetState::Aborted { .. }) {
                return;
            }
            record.state = FleetState::Aborted { at: now };
            if let Some(current) = record.revisions.last_mut() {
                current.ended = Some(Ended {
                    at: now,
                    aborted: true,
                });
            }
        }
        FleetAction::Done => {
            if record.state != FleetState::Running {
                return;
            }
            record.state = FleetState::Done { at: now };
            if let Some(current) = record.revisions.last_mut() {
                current.ended = Some(Ended {
                    at: now,
                    aborted: false,
                });
            }
        }
    }
    record.log(now, action.to_string(), None);
}

/// A new revision, its waves, every cluster pending, the fleet running.
fn record_plan(
    record: &mut FleetRecord,
    number: u64,
    change: &str,
    waves: &[Vec<String>],
    now: Timestamp,
) {
    record.revisions.push(FleetRevision {
        number,
        change: change.to_string(),
        created: now,
        rolled: Vec::new(),
        ended: None,
    });
    if record.revisions.len() > FLEET_HISTORY_LIMIT {
        let excess = record.revisions.len() - FLEET_HISTORY_LIMIT;
        record.revisions.drain(..excess);
    }
    record.waves = waves.to_vec();
    record.clusters = waves
        .iter()
        .flatten()
        .map(|c| (c.clone(), ClusterState::Pending))
        .collect();
    record.state = FleetState::Running;
}

/// A stopped fleet running again: every bake starts again (nobody watched
/// it while the fleet was stopped), the stopped cluster continues as `then`.
fn record_resume(
    mutation: FleetMutation,
    record: &mut FleetRecord,
    cluster: &str,
    then: Resumed,
    now: Timestamp,
) {
    for state in record.clusters.values_mut() {
        match state {
            ClusterState::Baking { since } => *since = now,
            ClusterState::Done { .. } if mutation == FleetMutation::ReopenDoneOnResume => {
                *state = ClusterState::Baking { since: now };
            }
            _ => {}
        }
    }
    let resumed = match then {
        Resumed::Rolling => ClusterState::Rolling { since: now },
        Resumed::Baking => ClusterState::Baking { since: now },
        Resumed::Skipped => ClusterState::Skipped { at: now },
    };
    record.clusters.insert(cluster.to_string(), resumed);
    record.state = FleetState::Running;
}
