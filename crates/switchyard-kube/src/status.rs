//! Status helpers: conditions per the API conventions, approvals, and the annotations that
//! carry a person's requests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use switchyard_plan::decide::Approval;

use crate::crd::MySQLClusterStatus;

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

#[cfg(test)]
mod tests {
    use super::*;

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
