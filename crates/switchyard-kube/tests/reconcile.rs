//! Reconcile against a fake API server (kube-fake-client), driven in a loop with a test
//! kubelet that runs the operator's pods: bootstrap, a full version rollout, approvals, manual switchovers, bad specs,
//! forbidden transitions, a dead primary, and the record's compare-and-swap.

#[expect(dead_code, reason = "shared test support; this file uses part of it")]
mod common;

use std::time::Duration;

use common::{NAME, NS, World, cluster, condition, spec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use switchyard_kube::build;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_kube::names::{LABEL_ROLE, LABEL_SERVING};
use switchyard_kube::runtime::KubeRuntime;
use switchyard_kube::status::{ANNOTATION_APPROVE, ANNOTATION_SWITCHOVER_TO, pending_approval};
use switchyard_kube::validate::validate;
use switchyard_plan::decide::Approval;
use switchyard_plan::engine::{ClusterRuntime, RuntimeErrorKind};

const TICK: Duration = Duration::from_secs(5);

/// A bootstrapped 3-instance cluster, every instance in service.
async fn ready_world(spec: MySQLClusterSpec) -> World {
    let w = World::new(cluster(spec)).await;
    w.run_until("Ready", 20, TICK).await;
    // Every instance returns to the read pool, one per step, then the engine is done.
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
    }
    w
}

async fn label(w: &World, pod: &str, key: &str) -> Option<String> {
    w.pods().get(pod).await.unwrap().labels().get(key).cloned()
}

#[tokio::test]
async fn bootstrap_creates_the_managed_objects_and_forms_the_topology() {
    let w = World::new(cluster(spec("mariadb", "10.5.27", 3))).await;
    w.reconcile().await.expect("first reconcile");

    // Exactly the built objects, applied under the one field manager: instance 0 first, alone,
    // its agent told to initialize it.
    let c = w.cluster().await;
    let valid = validate(NAME, &c.spec).unwrap();
    assert_eq!(w.pod_names().await, ["shop-0"]);
    let entry = c
        .status
        .as_ref()
        .unwrap()
        .revisions
        .as_ref()
        .unwrap()
        .history[0]
        .clone();
    let pod = w.pods().get("shop-0").await.unwrap();
    let built = build::pod(&c, &valid, 0, &entry, None, common::AGENT_IMAGE);
    assert_eq!(pod.spec, built.spec, "the created pod is the built one");
    assert_eq!(pod.owner_references()[0].name, NAME);
    let config = w.instance_config(0).await.unwrap();
    assert!(config.bootstrap && config.provision_from.is_none());
    assert_eq!(config.server_id, 1000);
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), NS);
    assert_eq!(
        cms.get("shop-0-config").await.unwrap().data.unwrap()["my.cnf"],
        switchyard_kube::revision::render_my_cnf(&valid)
    );
    assert!(w.claims().get_opt("data-shop-0").await.unwrap().is_some());
    let svcs: Api<Service> = Api::namespaced(w.client.clone(), NS);
    for built in build::services(&c) {
        assert_eq!(svcs.get(&built.name_any()).await.unwrap().spec, built.spec);
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(w.client.clone(), NS);
    for built in build::pod_disruption_budgets(&c) {
        assert_eq!(pdbs.get(&built.name_any()).await.unwrap().spec, built.spec);
    }
    // The credentials Secret was generated, with 24-character passwords.
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), NS);
    let creds = secrets.get("shop-credentials").await.unwrap();
    let data = creds.data.unwrap();
    assert_eq!(data["operator-user"].0, b"switchyard");
    assert_eq!(data["operator-password"].0.len(), 24);
    assert_eq!(data["replication-password"].0.len(), 24);
    // The status names the revision and says it is bootstrapping.
    let status = c.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Bootstrapping"));
    assert_eq!(status.observed_generation, Some(1));
    assert!(!status.initialized);
    let revisions = status.revisions.unwrap();
    assert_eq!(revisions.update, Some(1));
    assert_eq!(revisions.history.len(), 1);
    assert_eq!(
        revisions.history[0].hash,
        switchyard_kube::revision::revision_hash(&valid, &c)
    );
    assert_eq!(
        condition(&w.cluster().await, "InvalidSpec").unwrap().0,
        "False"
    );

    // Its agent initializes it; the next reconcile records the cluster initialized, takes
    // `bootstrap` away, and only then makes 0 the writable primary.
    assert_eq!(w.kubelet().await, vec![0]);
    w.reconcile().await.expect("bootstrap reconcile");
    assert_eq!(w.ops.calls(), vec!["promote 0"]);
    let c = w.cluster().await;
    assert_eq!(c.status.as_ref().unwrap().current_primary, Some(0));
    assert!(c.status.as_ref().unwrap().initialized);
    assert!(!w.instance_config(0).await.unwrap().bootstrap);
    assert_eq!(
        label(&w, "shop-0", LABEL_ROLE).await.as_deref(),
        Some("primary")
    );
    // The replicas come next, each provisioned from the primary by its agent.
    w.reconcile().await.expect("reconcile");
    assert_eq!(w.pod_names().await, ["shop-0", "shop-1", "shop-2"]);
    for o in [1, 2] {
        let config = w.instance_config(o).await.unwrap();
        assert!(!config.bootstrap);
        assert_eq!(
            config.provision_from.map(|d| d.host),
            Some("shop-0.shop-hosts.db.svc".to_owned())
        );
        assert_eq!(
            config.replicate_from.map(|d| d.host),
            Some("shop-0.shop-hosts.db.svc".to_owned())
        );
    }
    assert_eq!(w.kubelet().await, vec![1, 2]);
    assert_eq!(
        w.agent_log(),
        ["bootstrap 0", "provision 1<-0", "provision 2<-0"]
    );
    w.reconcile().await.expect("reconcile");
    assert_eq!(
        label(&w, "shop-1", LABEL_ROLE).await.as_deref(),
        Some("replica")
    );
    assert_eq!(label(&w, "shop-2", LABEL_SERVING).await, None);

    // The engine returns every instance to the read pool, then reports Ready.
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
    }
    for pod in ["shop-0", "shop-1", "shop-2"] {
        assert_eq!(label(&w, pod, LABEL_SERVING).await.as_deref(), Some("true"));
    }
    let c = w.cluster().await;
    let status = c.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.current_version.as_deref(), Some("10.5.27"));
    assert_eq!(status.revisions.as_ref().unwrap().current, Some(1));
    assert_eq!(condition(&c, "Available").unwrap().0, "True");
    assert_eq!(condition(&c, "Progressing").unwrap().0, "False");
    assert_eq!(condition(&c, "Degraded").unwrap().0, "False");
    let roles: Vec<(u32, String, bool)> = status
        .instances
        .iter()
        .map(|i| (i.ordinal, i.role.clone(), i.ready))
        .collect();
    assert_eq!(
        roles,
        vec![
            (0, "primary".into(), true),
            (1, "replica".into(), true),
            (2, "replica".into(), true)
        ]
    );
}

#[tokio::test]
async fn a_galera_cluster_is_started_by_the_one_node_the_status_names_and_the_others_join() {
    let mut galera = spec("mariadb", "10.11.14", 3);
    galera.topology = switchyard_kube::crd::ClusterTopology::Galera;
    let w = World::new(cluster(galera)).await;
    let new_clusters = |configs: &[Option<switchyard_kube::agent::InstanceConfig>]| {
        configs
            .iter()
            .flatten()
            .filter(|c| c.galera.as_ref().is_some_and(|g| g.new_cluster))
            .count()
    };
    w.reconcile().await.expect("first reconcile");
    // Node 0 is named in the status before anything else, and alone told to start a cluster.
    let status = w.cluster().await.status.unwrap();
    let named = status.galera_bootstrap.expect("a node is named");
    assert_eq!(named.ordinal, 0);
    assert_eq!(w.pod_names().await, ["shop-0"]);
    let config = w.instance_config(0).await.unwrap();
    let member = config.galera.clone().expect("a Galera member");
    assert!(config.bootstrap && member.new_cluster);
    assert!(config.provision_from.is_none() && config.replicate_from.is_none());
    assert_eq!(
        member.peers,
        [
            "shop-0.shop-hosts.db.svc",
            "shop-1.shop-hosts.db.svc",
            "shop-2.shop-hosts.db.svc"
        ]
    );
    assert_eq!(member.sst_method, "mariabackup");

    // Once it answers: initialized, the name cleared, its ConfigMap no longer says
    // new_cluster, and it takes the writes without a promotion (Galera nodes are writable).
    assert_eq!(w.kubelet().await, vec![0]);
    w.reconcile().await.expect("bootstrap reconcile");
    let status = w.cluster().await.status.unwrap();
    assert!(status.initialized);
    assert_eq!(status.galera_bootstrap, None);
    assert_eq!(status.current_primary, Some(0));
    assert!(!w.ops.calls().iter().any(|c| c.starts_with("promote")));
    let config = w.instance_config(0).await.unwrap();
    assert!(!config.bootstrap && !config.galera.unwrap().new_cluster);

    // The others join; at no step is more than one node told to start a cluster, and no
    // node is named again.
    for _ in 0..6 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
        let mut configs = Vec::new();
        for o in 0..3 {
            configs.push(w.instance_config(o).await);
        }
        assert_eq!(new_clusters(&configs), 0, "{configs:?}");
        assert_eq!(w.cluster().await.status.unwrap().galera_bootstrap, None);
    }
    assert_eq!(w.pod_names().await, ["shop-0", "shop-1", "shop-2"]);
    assert_eq!(
        w.agent_log(),
        ["new-cluster 0", "bootstrap 0", "join 1", "join 2"]
    );
    assert_eq!(
        label(&w, "shop-0", LABEL_ROLE).await.as_deref(),
        Some("primary")
    );
}

/// The calls of the rollout 10.5.27 → 10.11.14 of a 3-instance MariaDB cluster.
const ROLLOUT: [&str; 14] = [
    "prepare-shutdown 2 slow=true",
    "replicate 2<-0",
    "prepare-shutdown 1 slow=true",
    "replicate 1<-0",
    // The switchover: the long-transaction pre-check (maxTransactionSeconds, default 30),
    // the fence, the old primary made a replica of the candidate (not started), the
    // catch-up, the promotion.
    "no-long-transaction 0 max=30",
    "fence 0",
    "demote 0->1",
    "wait-caught-up 1<-0",
    "promote 1",
    "close-clients 0",
    "replicate 2<-1",
    "prepare-shutdown 0 slow=true",
    // The restarted old primary came back without its fence (a new pod, a new server): it
    // is fenced again before it replicates.
    "fence 0",
    "replicate 0<-1 (former primary)",
];

#[tokio::test]
async fn an_operator_restarted_at_every_step_repeats_and_skips_nothing() {
    let w = ready_world(spec("mariadb", "10.5.27", 3)).await;
    w.ops.calls.lock().unwrap().clear();
    w.restart_operator_each_round();
    w.edit(|s| s.version = "10.11.14".into()).await;
    w.run_until("Ready", 80, TICK).await;
    w.reconcile().await.expect("reconcile");
    assert_eq!(w.ops.calls(), ROLLOUT);
    let status = w.cluster().await.status.unwrap();
    assert_eq!(status.current_primary, Some(1));
    assert_eq!(status.revisions.unwrap().current, Some(2));
}

#[tokio::test]
async fn a_version_upgrade_rolls_replicas_first_then_switches_the_primary_over() {
    let w = ready_world(spec("mariadb", "10.5.27", 3)).await;
    w.ops.calls.lock().unwrap().clear();
    let uids_before: Vec<String> = {
        let mut v = Vec::new();
        for p in ["shop-0", "shop-1", "shop-2"] {
            v.push(w.pods().get(p).await.unwrap().uid().unwrap());
        }
        v
    };

    w.edit(|s| s.version = "10.11.14".into()).await;
    w.run_until("Ready", 80, TICK).await;
    // One more round so the engine records that it is done.
    w.reconcile().await.expect("reconcile");

    // Replicas first, highest ordinal first, each restarted after a slow shutdown and
    // started replicating again once its system tables are checked; then the switchover
    // 0 → 1, the old primary's clients closed, the last replica repointed to the new
    // primary, and the old primary (kept fenced, out of replication) restarted on the new
    // version, fenced again, and started replicating from 1, its own position carried over.
    assert_eq!(w.ops.calls(), ROLLOUT);
    // Every pod was replaced, at the new template.
    for (i, p) in ["shop-0", "shop-1", "shop-2"].iter().enumerate() {
        let pod = w.pods().get(p).await.unwrap();
        assert_ne!(pod.uid().unwrap(), uids_before[i]);
        assert_eq!(pod.annotations()["switchyard.io/version"], "10.11.14");
    }
    let c = w.cluster().await;
    let status = c.status.clone().unwrap();
    assert_eq!(status.current_primary, Some(1));
    assert_eq!(status.current_version.as_deref(), Some("10.11.14"));
    assert_eq!(status.highest_version.as_deref(), Some("10.11.14"));
    let revisions = status.revisions.clone().unwrap();
    assert_eq!((revisions.current, revisions.update), (Some(2), Some(2)));
    assert_eq!(
        revisions
            .history
            .iter()
            .map(|e| (e.number, e.version.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "10.5.27"), (2, "10.11.14")]
    );
    assert!(
        status
            .instances
            .iter()
            .all(|i| i.revision == Some(2) && i.ready)
    );
    let last = status.last_switchover.clone().unwrap();
    assert_eq!((last.from, last.to), (0, 1));
    assert_eq!(
        label(&w, "shop-1", LABEL_ROLE).await.as_deref(),
        Some("primary")
    );
    assert_eq!(
        label(&w, "shop-0", LABEL_ROLE).await.as_deref(),
        Some("replica")
    );
    assert_eq!(condition(&c, "Progressing").unwrap().0, "False");
    assert_eq!(condition(&c, "Available").unwrap().0, "True");
    let record = status.record.unwrap();
    assert!(record.intent.is_none());
    let reasons = w.event_reasons().await;
    for wanted in [
        "RolloutStarted",
        "InstanceUpdated",
        "SwitchoverDone",
        "RolloutFinished",
    ] {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "{wanted} in {reasons:?}"
        );
    }
    assert_eq!(
        reasons.iter().filter(|r| *r == "InstanceUpdated").count(),
        3,
        "{reasons:?}"
    );
    let metrics = w.ctx.metrics.render();
    assert!(
        metrics.contains("switchyard_switchovers_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_instances_upgraded_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_rollouts_finished_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_specs_end_in_invalid_spec_and_change_nothing() {
    type Edit = Box<dyn Fn(&mut MySQLClusterSpec)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "negative replicas",
            Box::new(|s| s.replicas = -1),
            "spec.replicas is -1",
        ),
        (
            "unknown flavor",
            Box::new(|s| s.flavor = "postgres".into()),
            "spec.flavor 'postgres' is unknown",
        ),
        (
            "unparsable version",
            Box::new(|s| s.version = "ten".into()),
            "spec.version 'ten' is not a version",
        ),
        (
            "operator-owned variable",
            Box::new(|s| {
                s.config.insert("read_only".into(), "OFF".into());
            }),
            "spec.config sets 'read_only', which the operator owns",
        ),
        (
            "operator-owned variable, other spelling",
            Box::new(|s| {
                s.config.insert("GTID-MODE".into(), "OFF".into());
            }),
            "spec.config sets 'GTID-MODE'",
        ),
    ];
    for (what, edit, message) in cases {
        let mut s = spec("mariadb", "10.11.14", 3);
        edit(&mut s);
        let w = World::new(cluster(s)).await;
        let action = w.reconcile().await.expect(what);
        assert_eq!(
            action,
            kube::runtime::controller::Action::await_change(),
            "{what}"
        );
        let c = w.cluster().await;
        let (status, _, msg) = condition(&c, "InvalidSpec").expect(what);
        assert_eq!(status, "True", "{what}");
        assert!(msg.contains(message), "{what}: {msg}");
        assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Invalid"));
        // Nothing else was created.
        assert!(w.pod_names().await.is_empty(), "{what}");
        let secrets: Api<Secret> = Api::namespaced(w.client.clone(), NS);
        assert!(
            secrets.get_opt("shop-credentials").await.unwrap().is_none(),
            "{what}"
        );
        assert!(w.event_reasons().await.contains(&"InvalidSpec".to_owned()));
    }
}

#[tokio::test]
async fn an_invalid_edit_of_a_running_cluster_touches_nothing_and_clears_when_fixed() {
    let w = ready_world(spec("mariadb", "10.5.27", 3)).await;
    let pods_before = w.pods_snapshot().await;
    w.ops.calls.lock().unwrap().clear();
    w.edit(|s| {
        s.config.insert("server_id".into(), "7".into());
    })
    .await;
    w.reconcile().await.unwrap();
    let c = w.cluster().await;
    assert_eq!(condition(&c, "InvalidSpec").unwrap().0, "True");
    assert_eq!(w.pods_snapshot().await, pods_before);
    assert!(w.ops.calls().is_empty());
    w.edit(|s| {
        s.config.remove("server_id");
    })
    .await;
    w.reconcile().await.unwrap();
    let c = w.cluster().await;
    assert_eq!(condition(&c, "InvalidSpec").unwrap().0, "False");
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Ready"));
}

#[tokio::test]
async fn a_running_cluster_keeps_its_topology() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    assert_eq!(
        w.cluster().await.status.unwrap().topology.as_deref(),
        Some("primary-replica")
    );
    let pods_before = w.pods_snapshot().await;
    w.ops.calls.lock().unwrap().clear();
    // Galera nodes start writable: turning running replicas into Galera nodes in place
    // would make three writers.
    w.edit(|s| s.topology = switchyard_kube::crd::ClusterTopology::Galera)
        .await;
    w.reconcile().await.unwrap();
    let c = w.cluster().await;
    let (status, reason, message) = condition(&c, "InvalidSpec").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "TopologyChange")
    );
    assert!(message.contains("primary-replica"), "{message}");
    assert_eq!(w.pods_snapshot().await, pods_before);
    assert!(w.ops.calls().is_empty());
}

async fn assert_blocked(w: &World, reason: &str) {
    let pods_before: Vec<String> = {
        let mut v = Vec::new();
        for p in w.pod_names().await {
            v.push(w.pods().get(&p).await.unwrap().uid().unwrap());
        }
        v
    };
    let snapshot_before = w.pods_snapshot().await;
    w.ops.calls.lock().unwrap().clear();
    for _ in 0..3 {
        w.reconcile().await.unwrap();
        w.kubelet().await;
        w.advance(TICK);
    }
    let c = w.cluster().await;
    let (status, got_reason, msg) = condition(&c, "UpgradeBlocked").unwrap();
    assert_eq!(
        (status.as_str(), got_reason.as_str()),
        ("True", reason),
        "{msg}"
    );
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Blocked"));
    // Nothing touched: no SQL, same pods, same revisions and configurations.
    assert!(w.ops.calls().is_empty(), "{:?}", w.ops.calls());
    let mut uids = Vec::new();
    for p in w.pod_names().await {
        uids.push(w.pods().get(&p).await.unwrap().uid().unwrap());
    }
    assert_eq!(uids, pods_before);
    assert_eq!(w.pods_snapshot().await, snapshot_before);
    let reasons = w.event_reasons().await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "UpgradeBlocked").count(),
        1,
        "one Warning on the transition: {reasons:?}"
    );
}

#[tokio::test]
async fn a_downgrade_is_blocked_and_no_pod_is_deleted() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    w.edit(|s| s.version = "10.5.27".into()).await;
    assert_blocked(&w, "ForbiddenTransition").await;
    let msg = condition(&w.cluster().await, "UpgradeBlocked").unwrap().2;
    assert!(msg.contains("10.11.14") && msg.contains("10.5.27"), "{msg}");
}

#[tokio::test]
async fn skipping_an_lts_is_blocked_and_no_pod_is_deleted() {
    let w = ready_world(spec("mysql", "8.0.40", 3)).await;
    w.edit(|s| s.version = "9.7.0".into()).await;
    assert_blocked(&w, "ForbiddenTransition").await;
}

#[tokio::test]
async fn a_supervised_switchover_waits_for_the_exact_approval() {
    let mut s = spec("mariadb", "10.5.27", 3);
    s.update.strategy = switchyard_kube::crd::UpdateStrategy::Supervised;
    let w = ready_world(s).await;
    w.edit(|s| s.version = "10.11.14".into()).await;
    w.run_until("AwaitingApproval", 60, TICK).await;
    let c = w.cluster().await;
    let (status, _, msg) = condition(&c, "AwaitingApproval").unwrap();
    assert_eq!(status, "True");
    assert!(msg.contains("\"2:0->1\""), "{msg}");
    assert_eq!(
        pending_approval(c.status.as_ref().unwrap()),
        Some(Approval {
            revision: 2,
            from: 0,
            to: 1
        })
    );
    // A stale approval (another revision) approves nothing.
    w.annotate(ANNOTATION_APPROVE, "1:0->1").await;
    for _ in 0..3 {
        w.reconcile().await.unwrap();
        w.advance(TICK);
    }
    assert!(!w.ops.calls().iter().any(|c| c.starts_with("fence")));
    assert_eq!(
        w.cluster().await.status.unwrap().phase.as_deref(),
        Some("AwaitingApproval")
    );
    w.annotate(ANNOTATION_APPROVE, "2:0->1").await;
    w.run_until("Ready", 40, TICK).await;
    assert!(w.ops.calls().contains(&"promote 1".to_owned()));
    let c = w.cluster().await;
    assert_eq!(condition(&c, "AwaitingApproval").unwrap().0, "False");
    assert_eq!(c.status.unwrap().current_primary, Some(1));
}

#[tokio::test]
async fn a_manual_switchover_runs_the_engine_steps_after_the_safety_checks() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    w.ops.calls.lock().unwrap().clear();
    w.annotate(ANNOTATION_SWITCHOVER_TO, "7").await;
    w.reconcile().await.unwrap();
    assert!(w.ops.calls().is_empty());
    assert!(
        w.event_reasons()
            .await
            .contains(&"SwitchoverRefused".to_owned())
    );

    // The request is consumed, so it can never move the primary later.
    let annotations = w.cluster().await.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key(ANNOTATION_SWITCHOVER_TO));

    // A candidate that is down is refused.
    w.ops.set_down(2, true);
    w.annotate(ANNOTATION_SWITCHOVER_TO, "2").await;
    w.reconcile().await.unwrap();
    assert!(!w.ops.calls().iter().any(|c| c.starts_with("fence")));
    assert_eq!(
        w.event_reasons()
            .await
            .iter()
            .filter(|r| *r == "SwitchoverRefused")
            .count(),
        2
    );
    w.ops.set_down(2, false);
    w.annotate(ANNOTATION_SWITCHOVER_TO, "2").await;

    for _ in 0..6 {
        w.reconcile().await.unwrap();
        w.advance(TICK);
    }
    let calls = w.ops.calls();
    let fence = calls.iter().position(|c| c == "fence 0").expect("fenced");
    assert_eq!(
        calls[fence - 1..fence + 5],
        [
            "no-long-transaction 0 max=30",
            "fence 0",
            "demote 0->2",
            "wait-caught-up 2<-0",
            "promote 2",
            "close-clients 0"
        ]
    );
    let c = w.cluster().await;
    assert_eq!(c.status.as_ref().unwrap().current_primary, Some(2));
    assert_eq!(
        label(&w, "shop-2", LABEL_ROLE).await.as_deref(),
        Some("primary")
    );
    assert_eq!(
        label(&w, "shop-0", LABEL_ROLE).await.as_deref(),
        Some("replica")
    );
    assert_eq!(
        w.ops.instance(0).source,
        Some(2),
        "the old primary replicates from 2"
    );
    assert_eq!(w.ops.instance(1).source, Some(2));
    assert!(w.ops.instance(2).writable && !w.ops.instance(0).writable);
    assert!(
        w.event_reasons()
            .await
            .contains(&"SwitchoverDone".to_owned())
    );
}

#[tokio::test]
async fn a_primary_that_dies_outside_a_switchover_degrades_and_halts_the_rollout() {
    let w = ready_world(spec("mariadb", "10.5.27", 3)).await;
    w.ops.set_down(0, true);
    w.ops.calls.lock().unwrap().clear();
    w.edit(|s| s.version = "10.11.14".into()).await;
    for _ in 0..4 {
        w.reconcile().await.unwrap();
        w.kubelet().await;
        w.advance(TICK);
    }
    let c = w.cluster().await;
    assert_eq!(condition(&c, "Degraded").unwrap().1, "PrimaryDown");
    assert_eq!(condition(&c, "Halted").unwrap().1, "PrimaryDown");
    assert_eq!(condition(&c, "Available").unwrap().0, "False");
    assert_eq!(
        c.status.as_ref().unwrap().phase.as_deref(),
        Some("Degraded")
    );
    assert_eq!(
        c.status.as_ref().unwrap().current_primary,
        Some(0),
        "not replaced"
    );
    assert!(
        w.ops.calls().is_empty(),
        "nothing done: {:?}",
        w.ops.calls()
    );
    let reasons = w.event_reasons().await;
    assert_eq!(reasons.iter().filter(|r| *r == "PrimaryDown").count(), 1);
}

#[tokio::test]
async fn the_record_is_stored_with_compare_and_swap_on_the_resource_version() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    let c = w.cluster().await;
    let valid = validate(NAME, &c.spec).unwrap();
    let rt = KubeRuntime::new(
        w.client.clone(),
        c.clone(),
        valid,
        w.ops.clone(),
        w.ctx.resolver.clone(),
        w.ctx.clock.clone(),
    );
    let mut record = rt.load_record().await.unwrap();
    let seq = record.seq;
    // Another writer (a former leader, say) changes the status in between.
    let mut other = w.cluster().await;
    other.status.as_mut().unwrap().phase = Some("Written-by-someone-else".into());
    other.metadata.managed_fields = None;
    w.clusters()
        .replace_status(NAME, &PostParams::default(), &other)
        .await
        .unwrap();
    record.seq += 1;
    let err = rt.store_record(seq, &record).await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::Conflict);
    // A stale expected sequence is a conflict too, and nothing is written.
    let rt = KubeRuntime::new(
        w.client.clone(),
        w.cluster().await,
        validate(NAME, &c.spec).unwrap(),
        w.ops.clone(),
        w.ctx.resolver.clone(),
        w.ctx.clock.clone(),
    );
    let fresh = rt.load_record().await.unwrap();
    let err = rt.store_record(fresh.seq + 5, &fresh).await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::Conflict);
    // With the current sequence and resource version, the store succeeds.
    let mut next = fresh.clone();
    next.seq += 1;
    rt.store_record(fresh.seq, &next).await.unwrap();
    assert_eq!(
        w.cluster().await.status.unwrap().record.unwrap().seq,
        fresh.seq + 1
    );
}

#[tokio::test]
async fn scaling_in_past_the_primary_is_refused() {
    let w = ready_world(spec("mariadb", "10.11.14", 3)).await;
    w.annotate(ANNOTATION_SWITCHOVER_TO, "2").await;
    for _ in 0..6 {
        w.reconcile().await.unwrap();
        w.advance(TICK);
    }
    assert_eq!(w.cluster().await.status.unwrap().current_primary, Some(2));
    let pods_before = w.pods_snapshot().await;
    w.edit(|s| s.replicas = 2).await;
    w.reconcile().await.unwrap();
    let c = w.cluster().await;
    let (status, reason, msg) = condition(&c, "InvalidSpec").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ScaleInRemovesPrimary")
    );
    assert!(msg.contains("switchyard switchover shop --to 0"), "{msg}");
    assert_eq!(w.pods_snapshot().await, pods_before);
}
