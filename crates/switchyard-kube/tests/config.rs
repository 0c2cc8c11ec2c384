//! Configuration changes and the upgrade pre-flight on Kubernetes, against the fake API server
//! with the instance-operations test double: a dynamic-only change is set online (replicas
//! first, the primary last) and restarts no pod; a static one restarts pods in the engine's
//! order; a refused value changes nothing; a change an instance refuses at apply time is
//! undone by a new revision; an upgrade whose configuration names a removed option is blocked
//! before any pod restarts; a canary bake holds the rollout after the first replica, then it
//! goes on.

#[expect(dead_code, reason = "shared test support; this file uses part of it")]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{NS, World, cluster, condition, spec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use switchyard_config::Account;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_kube::names::ANNOTATION_REVISION_HASH;

const TICK: Duration = Duration::from_secs(5);

async fn ready_world(spec: MySQLClusterSpec) -> World {
    let w = World::new(cluster(spec)).await;
    w.run_until("Ready", 20, TICK).await;
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
    }
    w.ops.calls.lock().unwrap().clear();
    w
}

fn with_config(mut s: MySQLClusterSpec, pairs: &[(&str, &str)]) -> MySQLClusterSpec {
    s.config = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    s
}

/// Pod name -> uid.
async fn pod_uids(w: &World) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in w.pod_names().await {
        let uid = w.pods().get(&name).await.unwrap().uid().unwrap();
        out.insert(name, uid);
    }
    out
}

/// Every pod's spec (what a restart would change), by pod name.
async fn template_hash(w: &World) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in w.pod_names().await {
        let pod = w.pods().get(&name).await.unwrap();
        out.insert(name, serde_json::to_string(&pod.spec).unwrap());
    }
    out
}

/// The revision hash each pod says it runs.
async fn pod_revisions(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for name in w.pod_names().await {
        let pod = w.pods().get(&name).await.unwrap();
        out.push(pod.annotations()[ANNOTATION_REVISION_HASH].clone());
    }
    out
}

async fn my_cnf(w: &World) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), NS);
    let mut all = String::new();
    for o in 0..3 {
        let cm = cms.get(&format!("shop-{o}-config")).await.unwrap();
        let cnf = cm.data.unwrap()["my.cnf"].clone();
        if o == 0 {
            all = cnf;
        } else {
            assert_eq!(
                cnf, all,
                "every instance on the same revision has the same my.cnf"
            );
        }
    }
    all
}

/// The ordinals of the calls starting with `prefix`, in order.
fn ordinals(calls: &[String], prefix: &str) -> Vec<u32> {
    calls
        .iter()
        .filter_map(|c| c.strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// Reconciles (with the test kubelet) until the rollout is over: phase Ready and the
/// engine done (a few more rounds to let it record that).
async fn settle(w: &World) {
    w.run_until("Ready", 60, TICK).await;
    for _ in 0..3 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
    }
}

#[tokio::test]
async fn a_dynamic_change_is_set_online_replicas_first_and_restarts_no_pod() {
    let w = ready_world(with_config(
        spec("mariadb", "10.11.14", 3),
        &[("max_connections", "200")],
    ))
    .await;
    let uids = pod_uids(&w).await;
    let template = template_hash(&w).await;

    w.edit(|s| {
        s.config.insert("max_connections".into(), "500".into());
        s.config.insert("long-query-time".into(), "2".into());
    })
    .await;
    settle(&w).await;

    let calls = w.ops.calls();
    assert_eq!(
        ordinals(&calls, "set-variables "),
        vec![2, 1, 0],
        "replicas first, the primary last: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "set-variables 0 long_query_time=2,max_connections=500"),
        "{calls:?}"
    );
    assert!(
        ordinals(&calls, "prepare-shutdown ").is_empty(),
        "{calls:?}"
    );
    assert_eq!(pod_uids(&w).await, uids, "no pod was deleted");
    assert_eq!(
        template_hash(&w).await,
        template,
        "the pod template is unchanged"
    );
    let cnf = my_cnf(&w).await;
    assert!(cnf.contains("max_connections = 500\n"), "{cnf}");
    assert!(cnf.contains("long_query_time = 2\n"), "{cnf}");
    for o in 0..3 {
        assert_eq!(w.ops.global(o, "max_connections").as_deref(), Some("500"));
    }
    let status = w.cluster().await.status.unwrap();
    let revisions = status.revisions.unwrap();
    assert_eq!(
        revisions
            .history
            .iter()
            .map(|e| e.number)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(revisions.history[1].online.is_some());
    assert_eq!((revisions.current, revisions.update), (Some(2), Some(2)));
    assert!(status.instances.iter().all(|i| i.revision == Some(2)));
    assert_eq!(status.current_primary, Some(0), "no switchover");

    // A pod deleted outside the engine comes back on the revision assigned to it, the online
    // one, with that revision's my.cnf: the change survives, nothing is set again.
    let online_hash = revisions.history[1].hash.clone();
    w.ops.calls.lock().unwrap().clear();
    w.pods()
        .delete("shop-2", &Default::default())
        .await
        .unwrap();
    settle(&w).await;
    let calls = w.ops.calls();
    assert!(ordinals(&calls, "set-variables ").is_empty(), "{calls:?}");
    assert!(
        ordinals(&calls, "prepare-shutdown ").is_empty(),
        "{calls:?}"
    );
    assert_eq!(pod_revisions(&w).await, vec![online_hash.clone(); 3]);
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), NS);
    let two = cms.get("shop-2-config").await.unwrap().data.unwrap();
    assert!(two["my.cnf"].contains("max_connections = 500\n"));
    assert!(two["instance.json"].contains(&online_hash));
}

#[tokio::test]
async fn a_static_change_restarts_pods_in_the_engine_order() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    let uids = pod_uids(&w).await;
    let template = template_hash(&w).await;

    w.edit(|s| {
        s.config
            .insert("innodb_log_buffer_size".into(), "32M".into());
        s.config.insert("max_connections".into(), "300".into());
    })
    .await;
    settle(&w).await;

    let calls = w.ops.calls();
    assert!(ordinals(&calls, "set-variables ").is_empty(), "{calls:?}");
    assert_eq!(
        ordinals(&calls, "prepare-shutdown "),
        vec![2, 1, 0],
        "replicas first, then the old primary after the switchover: {calls:?}"
    );
    assert!(calls.iter().any(|c| c == "promote 1"), "{calls:?}");
    let after = pod_uids(&w).await;
    for (name, uid) in &uids {
        assert_ne!(&after[name], uid, "{name} restarted");
    }
    let revisions = w.cluster().await.status.unwrap().revisions.unwrap();
    assert_eq!(
        template_hash(&w).await,
        template,
        "same image and resources"
    );
    assert_eq!(
        pod_revisions(&w).await,
        vec![revisions.history[1].hash.clone(); 3]
    );
    assert!(my_cnf(&w).await.contains("innodb_log_buffer_size = 32M\n"));
    assert_eq!(revisions.current, Some(2));
    assert!(revisions.history[1].online.is_none());
}

/// One round of the operator and the test kubelet, the clock moved a tick.
async fn round(w: &World) {
    w.reconcile().await.expect("reconcile");
    w.kubelet().await;
    w.advance(TICK);
}

#[tokio::test]
async fn a_canary_bake_holds_the_rollout_after_the_first_replica_then_it_goes_on() {
    let mut s = spec("mariadb", "10.11.14", 3);
    s.update.canary_bake = Some("2m".into());
    let w = ready_world(s).await;
    w.edit(|s| {
        s.config
            .insert("innodb_log_buffer_size".into(), "32M".into());
    })
    .await;
    let baking = |c: &switchyard_kube::crd::MySQLCluster| {
        condition(c, "Progressing").is_some_and(|(_, _, m)| m.contains("canary instance 2 bakes"))
    };
    let mut rounds = 0;
    while !baking(&w.cluster().await) {
        rounds += 1;
        assert!(
            rounds < 40,
            "the canary never baked: {:?}",
            condition(&w.cluster().await, "Progressing")
        );
        round(&w).await;
    }
    assert_eq!(ordinals(&w.ops.calls(), "prepare-shutdown "), vec![2]);
    // A minute and a half later the canary still bakes and nothing else has restarted.
    for _ in 0..18 {
        round(&w).await;
    }
    assert!(
        baking(&w.cluster().await),
        "{:?}",
        condition(&w.cluster().await, "Progressing")
    );
    assert_eq!(ordinals(&w.ops.calls(), "prepare-shutdown "), vec![2]);
    settle(&w).await;
    assert_eq!(
        ordinals(&w.ops.calls(), "prepare-shutdown "),
        vec![2, 1, 0],
        "after the bake the rollout goes on in the engine's order"
    );
}

#[tokio::test]
async fn a_bad_value_or_unknown_variable_is_refused_and_nothing_changes() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    let uids = pod_uids(&w).await;
    let template = template_hash(&w).await;
    let cnf = my_cnf(&w).await;

    for (name, value, reason) in [
        ("max_connections", "5", "Rejected"),
        ("no_such_variable", "1", "Rejected"),
    ] {
        w.edit(|s| {
            s.config.clear();
            s.config.insert(name.into(), value.into());
        })
        .await;
        for _ in 0..3 {
            w.reconcile().await.expect("reconcile");
            w.kubelet().await;
        }
        let c = w.cluster().await;
        let (status, got, message) = condition(&c, "InvalidSpec").unwrap();
        assert_eq!(
            (status.as_str(), got.as_str()),
            ("True", reason),
            "{message}"
        );
        assert!(message.contains(name), "{message}");
        assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Invalid"));
        assert_eq!(
            c.status.unwrap().revisions.unwrap().history.len(),
            1,
            "no revision recorded"
        );
        assert!(w.ops.calls().is_empty(), "{:?}", w.ops.calls());
        assert_eq!(pod_uids(&w).await, uids);
        assert_eq!(template_hash(&w).await, template);
        assert_eq!(my_cnf(&w).await, cnf, "the ConfigMap is unchanged");
    }
}

#[tokio::test]
async fn a_change_an_instance_refuses_is_undone_online_by_a_new_revision() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    let uids = pod_uids(&w).await;
    w.ops
        .refuse
        .lock()
        .unwrap()
        .insert(1, "event_scheduler".into());

    w.edit(|s| {
        s.config.insert("event_scheduler".into(), "ON".into());
        s.config.insert("max_connections".into(), "300".into());
    })
    .await;
    settle(&w).await;

    let calls = w.ops.calls();
    // Instance 2 took the change, instance 1 refused it; 2 is set back; 0 never changed.
    assert_eq!(
        ordinals(&calls, "set-variables "),
        vec![2, 1, 2],
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("set-variables 2 event_scheduler=OFF,max_connections=151"),
        "{calls:?}"
    );
    for o in 0..3 {
        assert_eq!(w.ops.global(o, "max_connections").as_deref(), Some("151"));
        assert_eq!(w.ops.global(o, "event_scheduler").as_deref(), Some("OFF"));
    }
    assert_eq!(pod_uids(&w).await, uids, "no pod was deleted");
    let c = w.cluster().await;
    let (status, reason, message) = condition(&c, "InvalidSpec").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ConfigRefused")
    );
    assert!(
        message.contains("event_scheduler") && message.contains("revision 3"),
        "{message}"
    );
    let revisions = c.status.unwrap().revisions.unwrap();
    let summary: Vec<(u64, bool, Option<u64>)> = revisions
        .history
        .iter()
        .map(|e| (e.number, e.refused.is_some(), e.rolls_back))
        .collect();
    assert_eq!(
        summary,
        vec![(1, false, None), (2, true, None), (3, false, Some(2))]
    );
    assert_eq!(revisions.history[2].hash, revisions.history[0].hash);
    assert_eq!(revisions.current, Some(3));

    // The refused spec stays undone until it changes; a new spec is a new revision.
    w.edit(|s| {
        s.config.clear();
        s.config.insert("max_connections".into(), "400".into());
    })
    .await;
    settle(&w).await;
    let c = w.cluster().await;
    assert_eq!(condition(&c, "InvalidSpec").unwrap().0, "False");
    assert_eq!(c.status.unwrap().revisions.unwrap().current, Some(4));
    for o in 0..3 {
        assert_eq!(w.ops.global(o, "max_connections").as_deref(), Some("400"));
    }
    assert_eq!(pod_uids(&w).await, uids, "still no pod deleted");
}

#[tokio::test]
async fn an_upgrade_naming_a_removed_option_is_blocked_before_any_pod_restarts() {
    let w = ready_world(with_config(
        spec("mysql", "8.4.6", 3),
        &[("max_connections", "300")],
    ))
    .await;
    let uids = pod_uids(&w).await;
    let template = template_hash(&w).await;
    w.ops.accounts.lock().unwrap().push(Account {
        user: "app".into(),
        host: "%".into(),
        plugin: "mysql_native_password".into(),
    });

    w.edit(|s| s.version = "9.7.0".into()).await;
    for _ in 0..4 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
    }
    let c = w.cluster().await;
    let (status, reason, message) = condition(&c, "UpgradeBlocked").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "UpgradeRefused")
    );
    assert!(
        message.contains("mysql_native_password") && message.contains("'app'@'%'"),
        "{message}"
    );
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Blocked"));
    assert_eq!(c.status.unwrap().revisions.unwrap().history.len(), 1);
    assert!(w.ops.calls().is_empty(), "{:?}", w.ops.calls());
    assert_eq!(pod_uids(&w).await, uids, "no pod was deleted");
    assert_eq!(template_hash(&w).await, template);
    assert!(
        w.event_reasons()
            .await
            .contains(&"UpgradeBlocked".to_owned())
    );

    // A removed option in spec.config is named too.
    w.edit(|s| {
        s.config.insert("mysql_native_password".into(), "ON".into());
    })
    .await;
    w.reconcile().await.expect("reconcile");
    let c = w.cluster().await;
    let (_, _, message) = condition(&c, "UpgradeBlocked").unwrap();
    assert!(
        message.contains("option mysql_native_password"),
        "{message}"
    );

    // Accounts moved and the option removed: the upgrade proceeds.
    w.ops.accounts.lock().unwrap().clear();
    w.edit(|s| {
        s.config.remove("mysql_native_password");
    })
    .await;
    settle(&w).await;
    let c = w.cluster().await;
    assert_eq!(condition(&c, "UpgradeBlocked").unwrap().0, "False");
    assert_eq!(c.status.unwrap().current_version.as_deref(), Some("9.7.0"));
}
