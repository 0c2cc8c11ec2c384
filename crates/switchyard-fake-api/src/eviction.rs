//! The eviction subresource (`POST .../pods/{name}/eviction`, policy/v1 `Eviction`) with
//! PodDisruptionBudgets enforced, as `kubectl drain` uses it: the pure decision, computed from
//! the pod, the namespace's budgets and pods.
//!
//! As the API server: a pod that is `Pending`, `Succeeded` or `Failed` is deleted without a
//! look at budgets; a pod selected by more than one budget is refused (500, the eviction
//! subresource does not support it); a pod selected by none is deleted; otherwise its budget
//! must allow one more disruption, or the answer is 429 `TooManyRequests`, "Cannot evict pod as
//! it would violate the pod's disruption budget.". A pod that is not Ready itself may go when
//! the budget has its desired healthy pods (the default `IfHealthyBudget` policy).
//!
//! The simplification: the real disruption controller keeps each budget's status
//! (`currentHealthy`, `desiredHealthy`, `disruptionsAllowed`) and takes the expected number of
//! pods from their controller's scale for `maxUnavailable` and percentages (a pod whose
//! controller has no scale subresource makes the budget allow nothing); the eviction then
//! decrements `disruptionsAllowed`. Here the status is computed at each eviction from the pods
//! that exist: expected = the pods the selector matches, healthy = those with the condition
//! `Ready=True`, desired = `minAvailable` (an integer, or a percentage of expected rounded up)
//! or expected less `maxUnavailable` (rounded up likewise); allowed = healthy less desired. An
//! evicted pod is deleted at once (no grace period), so a pod evicted just before counts as
//! gone, not as unhealthy: with `maxUnavailable` a second eviction may pass that the real
//! server, which still expects the first pod, would refuse. With an integer `minAvailable`
//! (what switchyard's budgets use) the two agree.

use serde_json::{Map, Value};

/// What the eviction of one pod comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Delete the pod.
    Evict,
    /// 429: the budget named allows no more disruption (its desired and current healthy
    /// pods).
    Refused {
        /// The budget's name.
        budget: String,
        /// The healthy pods it needs.
        desired: i64,
        /// The healthy pods it has.
        healthy: i64,
    },
    /// 500: more than one budget selects the pod.
    ManyBudgets,
}

/// Whether `selector` (a `LabelSelector`) selects an object labelled `labels`: a missing
/// selector selects nothing, an empty one everything.
pub(crate) fn selects(selector: Option<&Value>, labels: &Map<String, Value>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return false;
    };
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_match = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| {
            m.iter()
                .all(|(k, v)| label(k).is_some_and(|l| Some(l) == v.as_str()))
        });
    let expressions_match = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => label(key).is_some_and(|l| values.contains(&l)),
                    Some("NotIn") => label(key).is_none_or(|l| !values.contains(&l)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        });
    labels_match && expressions_match
}

fn labels_of(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn namespace_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace").and_then(Value::as_str)
}

/// Whether a pod has the condition `Ready=True`.
pub(crate) fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// `value` (an int-or-string: `2` or `"50%"`) of `total`, a percentage rounded up.
fn scaled(value: &Value, total: i64) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(pct)) => (pct * total + 99) / 100,
            _ => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// The healthy pods `budget` desires among `expected` selected pods.
fn desired_healthy(budget: &Value, expected: i64) -> i64 {
    let spec = budget.get("spec");
    if let Some(min) = spec.and_then(|s| s.get("minAvailable")) {
        return scaled(min, expected);
    }
    if let Some(max) = spec.and_then(|s| s.get("maxUnavailable")) {
        return (expected - scaled(max, expected)).max(0);
    }
    // Neither (the API server defaults minAvailable to 1).
    1
}

/// What evicting `pod` comes to, given every budget and every pod (any namespace: only the
/// pod's own counts).
pub(crate) fn decide(pod: &Value, budgets: &[Value], pods: &[Value]) -> Verdict {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Pending" | "Succeeded" | "Failed")) {
        return Verdict::Evict;
    }
    let ns = namespace_of(pod);
    let labels = labels_of(pod);
    let mine: Vec<&Value> = budgets
        .iter()
        .filter(|b| namespace_of(b) == ns)
        .filter(|b| selects(b.pointer("/spec/selector"), &labels))
        .collect();
    let budget = match mine.as_slice() {
        [] => return Verdict::Evict,
        [one] => *one,
        _ => return Verdict::ManyBudgets,
    };
    let selected: Vec<&Value> = pods
        .iter()
        .filter(|p| namespace_of(p) == ns)
        .filter(|p| selects(budget.pointer("/spec/selector"), &labels_of(p)))
        .collect();
    let expected = i64::try_from(selected.len()).unwrap_or(i64::MAX);
    let healthy = i64::try_from(selected.iter().filter(|p| is_ready(p)).count()).unwrap_or(0);
    let desired = desired_healthy(budget, expected);
    let allowed = if is_ready(pod) {
        healthy - desired >= 1
    } else {
        // IfHealthyBudget: an unhealthy pod may go while the budget is whole.
        healthy >= desired
    };
    if allowed {
        Verdict::Evict
    } else {
        Verdict::Refused {
            budget: budget
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            desired,
            healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, role: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "db",
                         "labels": {"app": "shop", "role": role}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        })
    }

    fn budget(name: &str, role: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "shop", "role": role}});
        json!({"metadata": {"name": name, "namespace": "db"}, "spec": spec})
    }

    #[test]
    fn selectors_match_labels_and_expressions_and_a_missing_one_selects_nothing() {
        let labels = labels_of(&pod("a", "replica", true));
        assert!(selects(Some(&json!({})), &labels));
        assert!(!selects(None, &labels));
        assert!(!selects(Some(&Value::Null), &labels));
        assert!(selects(
            Some(&json!({"matchLabels": {"role": "replica"}})),
            &labels
        ));
        assert!(!selects(
            Some(&json!({"matchLabels": {"role": "primary"}})),
            &labels
        ));
        let expr = |op: &str, values: &[&str]| json!({"matchExpressions": [{"key": "role", "operator": op, "values": values}]});
        assert!(selects(Some(&expr("In", &["replica", "x"])), &labels));
        assert!(!selects(Some(&expr("NotIn", &["replica"])), &labels));
        assert!(selects(Some(&expr("Exists", &[])), &labels));
        assert!(!selects(Some(&expr("DoesNotExist", &[])), &labels));
        assert!(!selects(Some(&expr("Gt", &["1"])), &labels));
    }

    #[test]
    fn a_budget_of_min_available_one_keeps_its_only_pod() {
        let primary = pod("shop-0", "primary", true);
        let budgets = [budget(
            "shop-primary",
            "primary",
            json!({"minAvailable": 1}),
        )];
        assert_eq!(
            decide(&primary, &budgets, std::slice::from_ref(&primary)),
            Verdict::Refused {
                budget: "shop-primary".into(),
                desired: 1,
                healthy: 1
            }
        );
        // A pod no budget selects goes.
        let other = pod("shop-1", "replica", true);
        assert_eq!(
            decide(&other, &budgets, &[primary, other.clone()]),
            Verdict::Evict
        );
    }

    #[test]
    fn replicas_go_one_at_a_time_and_none_while_another_is_not_ready() {
        let budgets = [budget(
            "shop-replicas",
            "replica",
            json!({"minAvailable": 1}),
        )];
        let (a, b) = (
            pod("shop-1", "replica", true),
            pod("shop-2", "replica", true),
        );
        assert_eq!(
            decide(&a, &budgets, &[a.clone(), b.clone()]),
            Verdict::Evict
        );
        // shop-1 came back and is not Ready yet: shop-2 must wait.
        let a_starting = pod("shop-1", "replica", false);
        assert_eq!(
            decide(&b, &budgets, &[a_starting.clone(), b.clone()]),
            Verdict::Refused {
                budget: "shop-replicas".into(),
                desired: 1,
                healthy: 1
            }
        );
        // shop-1 itself, not Ready, may go while the budget is whole, not when it is not.
        assert_eq!(
            decide(&a_starting, &budgets, &[a_starting.clone(), b.clone()]),
            Verdict::Evict
        );
        let b_down = pod("shop-2", "replica", false);
        assert!(matches!(
            decide(&a_starting, &budgets, &[a_starting.clone(), b_down]),
            Verdict::Refused { healthy: 0, .. }
        ));
    }

    #[test]
    fn max_unavailable_and_percentages_count_from_the_selected_pods() {
        let pods: Vec<Value> = (0..4)
            .map(|i| pod(&format!("p{i}"), "replica", i != 3))
            .collect();
        // 4 selected, 3 healthy: maxUnavailable 1 wants 3, so a healthy pod may not go.
        let max1 = [budget("b", "replica", json!({"maxUnavailable": 1}))];
        assert!(matches!(
            decide(&pods[0], &max1, &pods),
            Verdict::Refused {
                desired: 3,
                healthy: 3,
                ..
            }
        ));
        // maxUnavailable 50% of 4 is 2: one more may go.
        let half = [budget("b", "replica", json!({"maxUnavailable": "50%"}))];
        assert_eq!(decide(&pods[0], &half, &pods), Verdict::Evict);
        // minAvailable 60% of 4, rounded up, is 3.
        let most = [budget("b", "replica", json!({"minAvailable": "60%"}))];
        assert!(matches!(
            decide(&pods[0], &most, &pods),
            Verdict::Refused { desired: 3, .. }
        ));
    }

    #[test]
    fn two_budgets_refuse_and_finished_or_pending_pods_ignore_budgets() {
        let a = pod("shop-1", "replica", true);
        let budgets = [
            budget("one", "replica", json!({"minAvailable": 0})),
            budget("two", "replica", json!({"minAvailable": 0})),
        ];
        assert_eq!(
            decide(&a, &budgets, std::slice::from_ref(&a)),
            Verdict::ManyBudgets
        );
        let keep = [budget("keep", "replica", json!({"minAvailable": 1}))];
        let mut pending = a.clone();
        pending["status"]["phase"] = json!("Pending");
        assert_eq!(
            decide(&pending, &keep, std::slice::from_ref(&pending)),
            Verdict::Evict
        );
        // A budget in another namespace does not count.
        let mut elsewhere = keep[0].clone();
        elsewhere["metadata"]["namespace"] = json!("other");
        assert_eq!(
            decide(&a, &[elsewhere], std::slice::from_ref(&a)),
            Verdict::Evict
        );
    }
}
