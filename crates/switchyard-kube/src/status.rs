//! Status: conditions per the API conventions, approvals, the annotations that carry a
//! person's requests, and the pure functions that compute a cluster's status from what was
//! observed and what the engine did.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use switchyard_plan::decide::Approval;
use switchyard_plan::engine::StepOutcome;
use switchyard_plan::record::Intent;
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::{Observed, Record, Revision, Role, WaitReason};

use crate::crd::{InstanceStatus, MySQLClusterStatus};
use crate::validate::ValidSpec;

/// The annotation `switchyard approve` sets: `"<revision>:<from>-><to>"`.
pub const ANNOTATION_APPROVE: &str = "switchyard.io/approve-switchover";
/// The annotation `switchyard switchover --to N` sets: `"N"`.
pub const ANNOTATION_SWITCHOVER_TO: &str = "switchyard.io/switchover-to";

/// The condition types a `MySQLCluster` reports.
pub mod types {
    /// The primary takes writes.
    pub const AVAILABLE: &str = "Available";
    /// A rollout (or a requested switchover) is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Some instance is not healthy.
    pub const DEGRADED: &str = "Degraded";
    /// The spec cannot be acted on; nothing was changed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The version rules forbid the requested version; nothing was changed.
    pub const UPGRADE_BLOCKED: &str = "UpgradeBlocked";
    /// The rollout stopped and needs a person.
    pub const HALTED: &str = "Halted";
    /// A supervised switchover waits for `switchyard approve`.
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    /// Part of `spec.storage` could not be applied to the existing data claims (an
    /// immutable field, a shrink, a class that does not allow expansion): the message names
    /// the field and what to do; everything else is reconciled.
    pub const STORAGE_NOT_APPLIED: &str = "StorageNotApplied";
    /// A password rotation is under way or failed.
    pub const ROTATING_CREDENTIALS: &str = "RotatingCredentials";
    /// Instances are kept out of replication and service because they hold transactions
    /// the primary lacks (a failed primary's unacknowledged writes): the message names them
    /// and the transactions; a person re-provisions them.
    pub const QUARANTINED: &str = "Quarantined";
    /// The last failover: from which instance to which, and whether it was lossless.
    pub const FAILED_OVER: &str = "FailedOver";
    /// The semi-synchronous primary has fewer replicas receiving from it than it waits for
    /// before acknowledging a commit: its writes block until enough are back (never a
    /// silent fall-back to asynchronous replication).
    pub const WRITES_AT_RISK: &str = "WritesAtRisk";
}

/// The semi-synchronous primary's wait and how many replicas receive from it, when too
/// few do: (primary, waits for, receiving).
pub fn too_few_receivers(observed: &Observed) -> Option<(u32, u32, u32)> {
    let p = observed.primary()?;
    let k = p.ack_replicas?;
    let receiving = observed
        .instances
        .iter()
        .filter(|i| i.source == Some(p.ordinal) && i.link.as_ref().is_some_and(|l| l.connected))
        .count();
    let receiving = u32::try_from(receiving).unwrap_or(u32::MAX);
    (receiving < k).then_some((p.ordinal, k, receiving))
}

/// A bounded category (`forbidden-transition`) as a condition reason (`ForbiddenTransition`).
pub fn camel(category: &str) -> String {
    category
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Sets a condition: `lastTransitionTime` changes only when the status changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
                c.status = status.to_owned();
            }
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The condition of `type_`, if set.
pub fn condition<'a>(status: &'a MySQLClusterStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(status: &MySQLClusterStatus, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

/// Formats an approval as the annotation value `"<revision>:<from>-><to>"`.
pub fn approval_value(a: &Approval) -> String {
    format!("{}:{}->{}", a.revision, a.from, a.to)
}

/// Parses an approval annotation value; `None` when it is malformed.
pub fn parse_approval(value: &str) -> Option<Approval> {
    let (revision, rest) = value.trim().split_once(':')?;
    let (from, to) = rest.split_once("->")?;
    Some(Approval {
        revision: revision.parse().ok()?,
        from: from.parse().ok()?,
        to: to.parse().ok()?,
    })
}

/// The switchover that waits for an approval, from the engine's record in the status.
pub fn pending_approval(status: &MySQLClusterStatus) -> Option<Approval> {
    let waiting = status.record.as_ref()?.waiting.as_ref()?;
    parse_approval(waiting.key.strip_prefix("approval:")?)
}

/// Fills the status from the observation: each instance's role, version, health and lag
/// (keeping the revision the record assigns to it), readiness, the current revision and
/// version, the highest version.
pub fn fill_status(
    status: &mut MySQLClusterStatus,
    spec: &ValidSpec,
    observed: &Observed,
    revision: &Revision,
    done: bool,
    generation: Option<i64>,
) {
    let numbers: BTreeMap<String, u64> = status
        .revisions
        .as_ref()
        .map(|r| {
            r.history
                .iter()
                .map(|e| (e.hash.clone(), e.number))
                .collect()
        })
        .unwrap_or_default();
    let assigned: BTreeMap<u32, Option<u64>> = status
        .instances
        .iter()
        .map(|i| (i.ordinal, i.revision))
        .collect();
    status.instances = observed
        .by_ordinal()
        .into_iter()
        .map(|i| InstanceStatus {
            ordinal: i.ordinal,
            role: match i.role {
                Role::Primary => "primary".into(),
                Role::Replica => "replica".into(),
            },
            version: Some(i.version.to_string()),
            revision: assigned
                .get(&i.ordinal)
                .copied()
                .flatten()
                .or_else(|| numbers.get(&i.revision.hash).copied()),
            ready: i.health.is_up(),
            lag_seconds: i.lag_seconds().filter(|_| i.role == Role::Replica),
            last_error: (!i.health.is_up()).then(|| i.health.to_string()),
        })
        .collect();
    let ready = status.instances.iter().filter(|i| i.ready).count();
    status.ready = Some(format!("{ready}/{}", spec.replicas));
    if let Some(p) = observed.primary()
        && status.current_primary.is_some()
    {
        status.current_primary = Some(p.ordinal);
    }
    if let Some(revisions) = status.revisions.as_mut() {
        let all_at_target = observed.instances.iter().all(|i| i.runs(revision));
        if done || (all_at_target && revisions.current.is_none()) {
            revisions.current = Some(revision.number);
        }
        let current_version = revisions
            .current
            .and_then(|n| revisions.history.iter().find(|e| e.number == n))
            .map(|e| e.version.clone());
        status.current_version = current_version;
    }
    let highest = status
        .record
        .as_ref()
        .and_then(|r| r.highest_version)
        .into_iter()
        .chain(observed.highest_version())
        .max();
    status.highest_version = highest.map(|v| v.to_string());
    if status.topology.is_none() {
        status.topology = Some(topology_word(spec.topology).to_owned());
    }
    status.observed_generation = generation;
}

/// A topology as `spec.topology` and `status.topology` spell it.
pub fn topology_word(topology: TopologyKind) -> &'static str {
    match topology {
        TopologyKind::Galera => "galera",
        TopologyKind::Async => "primary-replica",
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one place that sets every condition"
)]
/// Sets the conditions from the observation and the engine's last step.
pub fn conditions(
    status: &mut MySQLClusterStatus,
    observed: &Observed,
    record: &Record,
    outcome: &Option<StepOutcome>,
    primary_down: bool,
    primary_data_lost: Option<u32>,
    failover_automatic: bool,
    pending: bool,
    generation: Option<i64>,
    now: &Time,
) {
    let c = &mut status.conditions;
    let primary = observed.primary();
    let available = primary.is_some_and(|p| p.health.is_up() && p.writable);
    set_condition(
        c,
        types::AVAILABLE,
        available,
        if available {
            "PrimaryWritable"
        } else {
            "NoWritablePrimary"
        },
        match primary {
            Some(p) if available => format!("instance {} takes writes", p.ordinal),
            Some(p) => format!("the primary, instance {}, is {}", p.ordinal, p.health),
            None => "no primary yet".into(),
        },
        generation,
        now,
    );
    let unhealthy: Vec<String> = observed
        .by_ordinal()
        .into_iter()
        .filter(|i| !i.health.is_up())
        .map(|i| format!("instance {} is {}", i.ordinal, i.health))
        .collect();
    set_condition(
        c,
        types::DEGRADED,
        primary_down || !unhealthy.is_empty(),
        if primary_down {
            "PrimaryDown"
        } else if unhealthy.is_empty() {
            "AllHealthy"
        } else {
            "InstanceUnhealthy"
        },
        unhealthy.join("; "),
        generation,
        now,
    );
    let halted = match (primary_down, outcome) {
        (true, _) => Some(match primary_data_lost {
            Some(ordinal) => (
                "PrimaryDataLost".to_owned(),
                format!(
                    "the primary, instance {ordinal}, came back with an empty data directory: it is \
                     not initialized again and never made writable; {}",
                    if failover_automatic {
                        "switchyard fails over to a replica once they corroborate and no \
                         acknowledged write can be lost; otherwise restore its data (or its \
                         volume), or recreate the cluster from a backup"
                    } else {
                        "restore its data (or its volume), or recreate the cluster from a \
                         backup; automatic failover is off (spec.failover.automatic)"
                    }
                ),
            ),
            None => (
                "PrimaryDown".to_owned(),
                if failover_automatic {
                    "the primary died outside a switchover: the rollout waits; switchyard fails \
                     over once the primary has failed for spec.failover.detectionSeconds with its \
                     replicas corroborating and no acknowledged write can be lost (or \
                     spec.failover.acceptDataLoss)"
                        .to_owned()
                } else {
                    "the primary died outside a switchover: the rollout waits for it; automatic \
                     failover is off (spec.failover.automatic)"
                        .to_owned()
                },
            ),
        }),
        (false, Some(StepOutcome::Halted(reason))) => {
            Some((camel(reason.category()), reason.to_string()))
        }
        _ => None,
    };
    set_condition(
        c,
        types::HALTED,
        halted.is_some(),
        halted.as_ref().map_or("NotHalted", |h| h.0.as_str()),
        halted.as_ref().map(|h| h.1.clone()).unwrap_or_default(),
        generation,
        now,
    );
    let quarantined: Vec<String> = record
        .quarantined
        .iter()
        .map(|(o, q)| {
            format!(
                "instance {o} holds transactions the primary lacks: {}",
                q.extra
            )
        })
        .collect();
    set_condition(
        c,
        types::QUARANTINED,
        !quarantined.is_empty(),
        if quarantined.is_empty() {
            "NoneQuarantined"
        } else {
            "HoldsExtraTransactions"
        },
        if quarantined.is_empty() {
            String::new()
        } else {
            format!(
                "{}: kept read-only, out of replication and of both Services; compare its \
                 transactions with the primary's, then delete its data claim and pod so it is \
                 copied again from a healthy instance",
                quarantined.join("; ")
            )
        },
        generation,
        now,
    );
    let at_risk = too_few_receivers(observed);
    set_condition(
        c,
        types::WRITES_AT_RISK,
        at_risk.is_some(),
        if at_risk.is_some() {
            "TooFewReplicasReceiving"
        } else {
            "EnoughReplicas"
        },
        at_risk
            .map(|(p, k, n)| {
                format!(
                    "the primary, instance {p}, acknowledges a commit once {k} replicas received \
                     it and {n} receive from it now: writes block until enough are back \
                     (re-provision a quarantined instance, or lower spec.replication.ackReplicas)"
                )
            })
            .unwrap_or_default(),
        generation,
        now,
    );
    if let Some(f) = &record.last_failover {
        set_condition(
            c,
            types::FAILED_OVER,
            true,
            if f.lossless {
                "Lossless"
            } else {
                "DataMayBeLost"
            },
            format!(
                "instance {} failed and instance {} took over, {}",
                f.from,
                f.to,
                if f.lossless {
                    "with every acknowledged write"
                } else {
                    "without a proof that every acknowledged write was kept"
                }
            ),
            generation,
            now,
        );
    }
    let approval = match outcome {
        Some(StepOutcome::Waited(WaitReason::AwaitingApproval { revision, from, to })) => {
            Some((*revision, *from, *to))
        }
        _ => None,
    };
    set_condition(
        c,
        types::AWAITING_APPROVAL,
        approval.is_some(),
        if approval.is_some() { "SwitchoverNeedsApproval" } else { "NoApprovalNeeded" },
        approval
            .map(|(r, f, t)| {
                format!(
                    "the switchover of revision {r} from instance {f} to instance {t} awaits approval: \
                     switchyard approve CLUSTER (annotation switchyard.io/approve-switchover: \"{r}:{f}->{t}\")"
                )
            })
            .unwrap_or_default(),
        generation,
        now,
    );
    let progressing = pending
        && !matches!(
            outcome,
            Some(StepOutcome::Halted(_)) | Some(StepOutcome::Done)
        );
    set_condition(
        c,
        types::PROGRESSING,
        progressing,
        if progressing {
            if matches!(record.intent, Some(Intent::Switchover { .. })) {
                "Switchover"
            } else {
                "RollingOut"
            }
        } else {
            "Complete"
        },
        match (progressing, outcome) {
            (true, Some(o)) => o.to_string(),
            _ => String::new(),
        },
        generation,
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_at_risk_when_fewer_replicas_receive_than_the_primary_waits_for() {
        use switchyard_plan::topology::{Link, TopologyKind};
        use switchyard_plan::versions::{Flavor, Version};
        use switchyard_plan::{Health, Instance};
        let version = Version::parse("10.11.14").expect("version");
        let revision = Revision::new(1, Flavor::Mariadb, version, &Default::default());
        let instance = |ordinal: u32, source: Option<u32>, connected: bool| Instance {
            ordinal,
            role: if source.is_none() {
                Role::Primary
            } else {
                Role::Replica
            },
            version,
            revision: revision.clone(),
            health: Health::Ready,
            gtid: None,
            writable: source.is_none(),
            fenced: false,
            drained: false,
            source,
            schema: None,
            link: source.map(|_| Link {
                connected,
                received: None,
            }),
            ack_replicas: source.is_none().then_some(2),
            galera: None,
        };
        let observed = |connected: [bool; 2]| Observed {
            kind: TopologyKind::Async,
            flavor: Flavor::Mariadb,
            instances: vec![
                instance(0, None, false),
                instance(1, Some(0), connected[0]),
                instance(2, Some(0), connected[1]),
            ],
        };
        assert_eq!(too_few_receivers(&observed([true, true])), None);
        assert_eq!(too_few_receivers(&observed([true, false])), Some((0, 2, 1)));
        assert_eq!(
            too_few_receivers(&observed([false, false])),
            Some((0, 2, 0))
        );
    }

    #[test]
    fn approvals_round_trip_and_reject_garbage() {
        let a = Approval {
            revision: 3,
            from: 0,
            to: 2,
        };
        assert_eq!(approval_value(&a), "3:0->2");
        assert_eq!(parse_approval("3:0->2"), Some(a));
        assert_eq!(parse_approval("3:0-2"), None);
        assert_eq!(parse_approval("x:0->2"), None);
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).expect("time"));
        let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).expect("time"));
        let mut c = Vec::new();
        set_condition(
            &mut c,
            "Available",
            true,
            "PrimaryWritable",
            "a",
            Some(1),
            &t1,
        );
        set_condition(
            &mut c,
            "Available",
            true,
            "PrimaryWritable",
            "b",
            Some(2),
            &t2,
        );
        assert_eq!(c[0].last_transition_time, t1);
        assert_eq!(c[0].message, "b");
        assert_eq!(c[0].observed_generation, Some(2));
        set_condition(&mut c, "Available", false, "PrimaryDown", "c", Some(2), &t2);
        assert_eq!(c[0].last_transition_time, t2);
    }
}
