//! `SchemaChange` resources against the fake API server: the pre-flight (unsafe changes refused
//! naming the analyzer's rule, forced ones run), the hand-over to the cluster's engine, the
//! order (replicas first, then the primary), the per-instance status, and the replica
//! conversion setting saved on the pod before it is set and put back on completion.
//!
//! The instance operations are the Kubernetes-side test double: the table definitions are
//! fixture text; what the ALTER does on a server is proven by switchyard-local's schema tests
//! over real servers (the SQL path, `Instance::run_member_ddl`, is shared).

#[allow(dead_code, reason = "the shared support serves several test files")]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{NS, World, cluster, spec};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use switchyard_kube::crd::{SchemaChange, SchemaChangeSpec, SchemaMethod};
use switchyard_kube::reconcile_schema_change;
use switchyard_kube::schema::{ANNOTATION_CONVERSION_PREVIOUS, SavedSettings};

const TICK: Duration = Duration::from_secs(5);

const BEFORE: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
const SAFE: &str = "ALTER TABLE app.t ADD COLUMN note VARCHAR(20) DEFAULT ''";
const SAFE_AFTER: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  `note` varchar(20) DEFAULT '',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
const UNSAFE: &str = "ALTER TABLE app.t ADD COLUMN c2 INT AFTER id";
const UNSAFE_AFTER: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `c2` int(11) DEFAULT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

async fn ready_world(after: &str) -> World {
    let w = World::new(cluster(spec("mariadb", "10.11.14", 3))).await;
    w.run_until("Ready", 20, TICK).await;
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
    }
    for o in 0..3 {
        w.ops.tables.lock().unwrap().insert(o, BEFORE.to_owned());
    }
    *w.ops.after_ddl.lock().unwrap() = after.to_owned();
    w
}

fn changes(w: &World) -> Api<SchemaChange> {
    Api::namespaced(w.client.clone(), NS)
}

async fn create(w: &World, name: &str, statement: &str, force: bool, risk: Option<&str>) {
    let mut sc = SchemaChange::new(
        name,
        SchemaChangeSpec {
            cluster_ref: common::NAME.into(),
            statement: statement.into(),
            method: SchemaMethod::Auto,
            force,
            accepted_risk: risk.map(str::to_owned),
        },
    );
    sc.metadata.namespace = Some(NS.into());
    changes(w)
        .create(&PostParams::default(), &sc)
        .await
        .expect("create the SchemaChange");
}

/// The condition `type_` of the SchemaChange: (status, reason, message).
async fn condition(w: &World, name: &str, type_: &str) -> Option<(String, String, String)> {
    let sc = changes(w).get(name).await.unwrap();
    sc.status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// One round: reconciles the cluster (which reconciles its SchemaChanges), plays the kubelet
/// and moves the clock on by one tick.
async fn round(w: &World) {
    w.reconcile().await.expect("reconcile");
    w.kubelet().await;
    w.advance(TICK);
}

/// Plays rounds until the SchemaChange reaches `phase`.
async fn run_until_phase(w: &World, name: &str, phase: &str, max: usize) {
    for _ in 0..max {
        round(w).await;
        let sc = changes(w).get(name).await.unwrap();
        if sc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
            return;
        }
    }
    let sc = changes(w).get(name).await.unwrap();
    panic!(
        "phase {phase} not reached in {max} rounds; status: {}",
        serde_json::to_string_pretty(&sc.status).unwrap()
    );
}

fn ddl_calls(w: &World) -> Vec<String> {
    w.ops
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("run_ddl:"))
        .collect()
}

fn ordinal_of(call: &str) -> u32 {
    call.split(':').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_safe_change_rolls_replicas_first_then_the_primary_and_completes() {
    let w = ready_world(SAFE_AFTER).await;
    let primary = w.cluster().await.status.unwrap().current_primary.unwrap();
    create(&w, "add-note", SAFE, false, None).await;
    run_until_phase(&w, "add-note", "Complete", 40).await;

    let calls = ddl_calls(&w);
    assert_eq!(calls.len(), 3, "one ALTER per instance: {calls:?}");
    let order: Vec<u32> = calls.iter().map(|c| ordinal_of(c)).collect();
    assert_eq!(
        order.last(),
        Some(&primary),
        "the primary is altered last: {calls:?}"
    );
    let mut replicas = order[..2].to_vec();
    replicas.sort_unstable();
    let mut expected: Vec<u32> = (0..3).filter(|o| *o != primary).collect();
    expected.sort_unstable();
    assert_eq!(replicas, expected, "both replicas first: {calls:?}");
    // Judged online for the primary: run with LOCK=NONE, so a server that would block
    // writes refuses it at the first replica.
    let enforced = format!("{SAFE}, LOCK=NONE");
    assert!(calls.iter().all(|c| c.ends_with(&enforced)), "{calls:?}");

    let status = changes(&w).get("add-note").await.unwrap().status.unwrap();
    assert_eq!(status.instances.len(), 3);
    assert!(
        status.instances.iter().all(|i| i.state == "altered"),
        "{:?}",
        status.instances
    );
    let (complete, _, _) = condition(&w, "add-note", "Complete").await.unwrap();
    assert_eq!(complete, "True");
    let (accepted, reason, _) = condition(&w, "add-note", "Accepted").await.unwrap();
    assert_eq!((accepted.as_str(), reason.as_str()), ("True", "Safe"));

    // Complete stays complete, and nothing runs again.
    for _ in 0..3 {
        w.reconcile().await.expect("reconcile");
    }
    assert_eq!(ddl_calls(&w).len(), 3);
    // The cluster is back to Ready.
    let c = w.cluster().await;
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Ready"));
}

#[tokio::test]
async fn a_change_judged_online_that_a_server_refuses_with_lock_none_changes_nothing() {
    let w = ready_world(SAFE_AFTER).await;
    *w.ops.refuse_ddl.lock().unwrap() = Some(
        "1846 (0A000): LOCK=NONE is not supported. Reason: Cannot change column type. \
         Try LOCK=SHARED"
            .into(),
    );
    create(&w, "add-note", SAFE, false, None).await;
    let mut seen = String::new();
    for _ in 0..15 {
        round(&w).await;
        let sc = changes(&w).get("add-note").await.unwrap();
        let cluster = w.cluster().await;
        seen = format!(
            "{}\n{}",
            serde_json::to_string(&sc.status).unwrap(),
            serde_json::to_string(&cluster.status).unwrap()
        );
        if seen.contains("without blocking writes") {
            break;
        }
    }
    assert!(seen.contains("without blocking writes"), "{seen}");
    assert!(seen.contains("add LOCK=SHARED"), "what to do: {seen}");
    assert!(ddl_calls(&w).is_empty(), "no ALTER ran");
    for o in 0..3 {
        assert_eq!(
            w.ops.tables.lock().unwrap()[&o],
            BEFORE,
            "instance {o} changed"
        );
    }
}

#[tokio::test]
async fn an_unsafe_change_is_refused_naming_the_rule_and_nothing_runs() {
    let w = ready_world(UNSAFE_AFTER).await;
    create(&w, "add-c2", UNSAFE, false, None).await;
    run_until_phase(&w, "add-c2", "Refused", 5).await;
    let (refused, reason, message) = condition(&w, "add-c2", "Refused").await.unwrap();
    assert_eq!((refused.as_str(), reason.as_str()), ("True", "Unsafe"));
    assert!(
        message.contains("column-added-in-middle"),
        "the message names the rule: {message}"
    );
    assert!(message.contains("AFTER id"), "and the clause: {message}");
    let (accepted, _, _) = condition(&w, "add-c2", "Accepted").await.unwrap();
    assert_eq!(accepted, "False");
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
    }
    assert!(ddl_calls(&w).is_empty(), "{:?}", ddl_calls(&w));

    // The controller's entry point gives the same verdict and waits for a change.
    let sc = changes(&w).get("add-c2").await.unwrap();
    reconcile_schema_change(Arc::new(sc), w.ctx.clone())
        .await
        .expect("reconcile the SchemaChange");
    assert!(ddl_calls(&w).is_empty());
}

#[tokio::test]
async fn force_without_a_risk_is_refused_and_force_with_one_runs() {
    let w = ready_world(UNSAFE_AFTER).await;
    create(&w, "no-risk", UNSAFE, true, Some("  ")).await;
    run_until_phase(&w, "no-risk", "Refused", 5).await;
    let (_, reason, _) = condition(&w, "no-risk", "Refused").await.unwrap();
    assert_eq!(reason, "RiskNotStated");

    create(
        &w,
        "forced",
        UNSAFE,
        true,
        Some("replicas may stop applying until repaired"),
    )
    .await;
    run_until_phase(&w, "forced", "Complete", 40).await;
    let (_, reason, _) = condition(&w, "forced", "Accepted").await.unwrap();
    assert_eq!(reason, "Forced");
    assert_eq!(ddl_calls(&w).len(), 3, "{:?}", ddl_calls(&w));
}

#[tokio::test]
async fn a_second_change_waits_for_the_first() {
    let w = ready_world(SAFE_AFTER).await;
    create(&w, "first", SAFE, false, None).await;
    w.advance(TICK);
    create(&w, "second", SAFE, false, None).await;
    w.reconcile().await.expect("reconcile");
    let (progressing, reason, message) = condition(&w, "second", "Progressing").await.unwrap();
    assert_eq!(
        (progressing.as_str(), reason.as_str()),
        ("False", "WaitingForOtherChange")
    );
    assert!(message.contains("first"), "{message}");
    run_until_phase(&w, "first", "Complete", 40).await;
    // Then the second is judged against what the first left: the column exists already,
    // so the analyzer refuses it and its ALTER never runs.
    run_until_phase(&w, "second", "Refused", 5).await;
    let (_, reason, _) = condition(&w, "second", "Refused").await.unwrap();
    assert_eq!(reason, "InvalidStatement");
    assert_eq!(ddl_calls(&w).len(), 3, "{:?}", ddl_calls(&w));
}

const WIDEN: &str = "ALTER TABLE app.t MODIFY name VARCHAR(40) DEFAULT NULL";
const WIDEN_AFTER: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `name` varchar(40) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
const CONVERSIONS: &str = "slave_type_conversions";

#[tokio::test]
async fn the_conversion_setting_is_saved_on_the_pod_before_it_is_set_and_restored_on_completion() {
    let w = ready_world(WIDEN_AFTER).await;
    // A value the operator did not choose, so that putting it back is visible.
    for o in 0..3 {
        w.ops
            .globals
            .lock()
            .unwrap()
            .entry(o)
            .or_default()
            .insert(CONVERSIONS.into(), "ALL_LOSSY".into());
    }
    create(&w, "widen", WIDEN, false, None).await;
    let mut saved_seen = Vec::new();
    for _ in 0..40 {
        round(&w).await;
        for pod in w.pods().list(&Default::default()).await.unwrap().items {
            if let Some(text) = pod.annotations().get(ANNOTATION_CONVERSION_PREVIOUS) {
                saved_seen.push((pod.name_any(), SavedSettings::parse(text).unwrap()));
            }
        }
        let sc = changes(&w).get("widen").await.unwrap();
        if sc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Complete") {
            break;
        }
    }
    let status = changes(&w).get("widen").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Complete"), "{status:?}");
    assert_eq!(
        status.replica_settings.get(CONVERSIONS).map(String::as_str),
        Some("ALL_NON_LOSSY"),
        "the analyzer needs the conversion for the widening: {status:?}"
    );

    let calls = w.ops.calls();
    let set_at = |o: u32, value: &str| {
        calls
            .iter()
            .position(|c| *c == format!("set-variables {o} {CONVERSIONS}={value}"))
    };
    let last_ddl = calls
        .iter()
        .rposition(|c| c.starts_with("run_ddl:"))
        .unwrap();
    let converted: Vec<u32> = (0..3)
        .filter(|o| set_at(*o, "ALL_NON_LOSSY").is_some())
        .collect();
    assert!(
        converted.len() >= 2,
        "every replica gets the conversion before its ALTER: {calls:#?}"
    );
    for o in &converted {
        // Saved (read) before it was set, on the pod, as the value it replaced.
        let read = calls
            .iter()
            .position(|c| *c == format!("global-values {o} {CONVERSIONS}"))
            .unwrap_or_else(|| panic!("instance {o}: previous value never read: {calls:#?}"));
        assert!(read < set_at(*o, "ALL_NON_LOSSY").unwrap(), "{calls:#?}");
        let pod = format!("{}-{o}", common::NAME);
        assert!(
            saved_seen.iter().any(|(p, s)| *p == pod
                && s.change == status.id.clone().unwrap()
                && s.values.get(CONVERSIONS).map(String::as_str) == Some("ALL_LOSSY")),
            "{pod} never carried the saved value: {saved_seen:?}"
        );
        assert!(
            saved_seen
                .iter()
                .all(|(_, s)| s.values[CONVERSIONS] == "ALL_LOSSY"),
            "a later run kept the first save: {saved_seen:?}"
        );
        // Put back once every instance has the change.
        let restored = calls
            .iter()
            .rposition(|c| *c == format!("set-variables {o} {CONVERSIONS}=ALL_LOSSY"))
            .unwrap_or_else(|| panic!("instance {o}: previous value never restored: {calls:#?}"));
        assert!(
            restored > last_ddl,
            "restored after the last ALTER: {calls:#?}"
        );
        assert_eq!(w.ops.global(*o, CONVERSIONS).as_deref(), Some("ALL_LOSSY"));
    }
    // The record is cleared.
    for pod in w.pods().list(&Default::default()).await.unwrap().items {
        assert!(
            !pod.annotations()
                .contains_key(ANNOTATION_CONVERSION_PREVIOUS),
            "{} still carries the saved values",
            pod.name_any()
        );
    }
    // Completion is stable and nothing is set again.
    let before = w.ops.calls().len();
    for _ in 0..3 {
        w.reconcile().await.expect("reconcile");
    }
    assert!(
        !w.ops.calls()[before..]
            .iter()
            .any(|c| c.contains(CONVERSIONS)),
        "{:?}",
        &w.ops.calls()[before..]
    );
}
