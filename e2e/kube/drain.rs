//! End to end on Kubernetes, simulated: `kubectl drain` of the primary's node under write load
//! (issue 13). The simulated kubelet stands for three Nodes and places each pod on one (the
//! least loaded), and every request goes through the fake API's front, whose eviction
//! subresource enforces the PodDisruptionBudgets.
//!
//! 1. A `MySQLCluster` of 3 MariaDB 10.11 instances with the defaults (lossless
//!    semi-synchronous replication, automatic failover); each pod on its own Node; the
//!    primary's and the replicas' budgets exist.
//! 2. Two writers go through the primary Service (a router following the pod labelled
//!    primary), a monitor polls `@@read_only` on every pod.
//! 3. Before any cordon, an eviction of the primary's pod is refused (429): its budget keeps
//!    it, and nothing moves the primary.
//! 4. The drain, as `kubectl drain` does it: the primary's Node cordoned
//!    (`spec.unschedulable`), then each of its pods evicted through the Eviction subresource,
//!    retried on 429. The operator sees the cordon and switches over to a replica on another
//!    Node; the primary's eviction is refused until the switchover is promoted (also while
//!    the old primary is fenced, its role label gone), and granted after.
//! 5. The evicted pod stops gracefully (SIGTERM, no SIGKILL), comes back on another Node (the
//!    cordoned one takes no pod) and rejoins as a replica of the new primary.
//! 6. No acknowledged write is lost, no two servers acknowledged writes at once, the monitor
//!    never saw two writable instances; every request of the operator (its reads of Nodes
//!    among them) is allowed by `deploy/rbac.yaml`; every pod stops cleanly.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_drain -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::time::{Duration, Instant};

use common::{AppLoad, Log, Setup, World, assert_nothing_lost, start_app_load, steps, until};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt as _;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_kube::names::LABEL_ROLE;
use switchyard_kubelet::EventKind;
use switchyard_kubelet::rbac::{Rbac, ServiceAccount};
use switchyard_testbed::ServerKind;

const INSTANCES: u32 = 3;
/// The Nodes the kubelet stands for: one per instance.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// From nothing to Ready (three agent installs, a bootstrap, two provisionings).
const READY_WITHIN: Duration = Duration::from_secs(180);
/// From the cordon to the primary's eviction granted (the switchover's steps).
const DRAIN_WITHIN: Duration = Duration::from_secs(60);
/// How long `kubectl drain` waits between evictions refused with 429 (5 s there; shorter
/// here so that the test sees the refusals end soon after the switchover).
const EVICTION_RETRY: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drain_of_the_primarys_node_switches_over_first_without_losing_a_write() {
    drains(ServerKind::Mariadb1011).await;
}

/// The node pod `pod` runs on.
fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// The role label of `pod`.
fn role_of(pod: &Pod) -> Option<String> {
    pod.labels().get(LABEL_ROLE).cloned()
}

/// `kubectl cordon node`.
async fn cordon(world: &World, node: &str) {
    let nodes: Api<Node> = Api::all(world.api.clone());
    let patch = serde_json::json!({ "spec": { "unschedulable": true } });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("cordon the node");
}

/// One eviction as `kubectl drain` asks for it: `Ok` when granted, the HTTP code and message
/// when refused.
async fn evict(world: &World, pod: &str) -> Result<(), (u16, String)> {
    match world.pods().evict(pod, &EvictParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err((s.code, s.message)),
        Err(e) => panic!("evict {pod}: {e}"),
    }
}

/// The whole run for one server kind (see the module's doc).
async fn drains(kind: ServerKind) {
    let _slots = switchyard_testbed::slots::acquire(INSTANCES as usize)
        .await
        .expect("server slots");
    let flavor = kind.flavor();
    let log = Log::new("kube-e2e-drain-mariadb.log");
    let started = Instant::now();
    let version = common::server_version(kind).await;
    let mut world = World::start_with(
        log.clone(),
        Setup {
            nodes: NODES.iter().map(|n| (*n).to_owned()).collect(),
            front: true,
        },
    )
    .await;

    // 1. A cluster with the defaults, a pod per Node, both budgets.
    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": version,
        "replicas": INSTANCES,
        "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "config": {"innodb_buffer_pool_size": "67108864"},
        "update": {"drainSeconds": 1},
    }))
    .expect("a spec");
    world.create(spec).await;
    until(READY_WITHIN, "the cluster Ready", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let want = format!("{INSTANCES}/{INSTANCES}");
        if s.phase.as_deref() == Some("Ready")
            && s.ready.as_deref() == Some(want.as_str())
            && s.current_primary == Some(0)
        {
            Ok(())
        } else {
            Err(format!(
                "phase {:?} ready {:?} primary {:?}",
                s.phase, s.ready, s.current_primary
            ))
        }
    })
    .await;
    let mut placed = Vec::new();
    for n in 0..INSTANCES {
        let pod = world.pod(n).await.expect("the pod");
        placed.push(node_of(&pod).expect("the kubelet placed the pod on a node"));
    }
    let mut distinct = placed.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), placed.len(), "a pod per node: {placed:?}");
    let primary_node = placed[0].clone();
    log.say(
        "test",
        format!("Ready (mariadb {version}), pods on nodes {placed:?}"),
    );
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(world.api.clone(), common::NS);
    for name in ["shop-primary", "shop-replicas"] {
        assert!(
            budgets
                .get_opt(name)
                .await
                .expect("read a budget")
                .is_some(),
            "the budget {name} exists"
        );
    }
    let creds = world.credentials().await;
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());
    let primary = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("the operator's account on the primary");

    // 2. The application and its load, through the primary Service.
    let AppLoad {
        service,
        monitor,
        load,
    } = start_app_load(&world, primary, &creds, INSTANCES, (2, 200, 100), &log).await;

    // 3. No cordon yet: the primary's budget refuses its eviction, and the primary stays.
    let old_pod = world.names.pod(0);
    let old_uid = world.pod(0).await.and_then(|p| p.uid()).expect("a uid");
    match evict(&world, &old_pod).await {
        Err((429, message)) => {
            log.say("test", format!("eviction before the cordon: 429 {message}"))
        }
        other => panic!(
            "the primary's pod evicted while it is the primary and its node is not cordoned: \
             {other:?} (its PodDisruptionBudget must refuse with 429)"
        ),
    }
    assert_eq!(
        world.cluster().await.status.and_then(|s| s.current_primary),
        Some(0),
        "the primary stays while its node is schedulable"
    );

    // 4. The drain: cordon, then evict every pod of the node, retried on 429.
    let drain_at = Instant::now();
    cordon(&world, &primary_node).await;
    let on_node: Vec<String> = world
        .pods()
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| node_of(p).as_deref() == Some(primary_node.as_str()))
        .map(|p| p.name_any())
        .collect();
    assert_eq!(
        on_node,
        vec![old_pod.clone()],
        "the primary's node holds its pod"
    );
    log.say(
        "test",
        format!(
            "cordoned {primary_node}; evicting {on_node:?} ({} writes acknowledged)",
            load.acknowledged()
        ),
    );
    let mut refused = 0_u32;
    let mut refused_while_primary = 0_u32;
    let deadline = Instant::now() + DRAIN_WITHIN;
    loop {
        // What the pod was just before the attempt: a refusal of a pod labelled primary is
        // the budget doing its work.
        let before = world.pod(0).await.and_then(|p| role_of(&p));
        match evict(&world, &old_pod).await {
            Ok(()) => break,
            Err((429, _)) => {
                refused += 1;
                if before.as_deref() == Some("primary") {
                    refused_while_primary += 1;
                }
            }
            Err(other) => panic!("evict {old_pod}: {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the primary's eviction still refused {DRAIN_WITHIN:?} after the cordon ({refused} \
             refusals): the operator did not move the primary off the cordoned node {primary_node}; \
             cluster status: {:?}",
            world.cluster().await.status
        );
        tokio::time::sleep(EVICTION_RETRY).await;
    }
    let c = world.cluster().await;
    let s = c.status.clone().unwrap_or_default();
    let last = s
        .record
        .as_ref()
        .and_then(|r| r.last_switchover.clone())
        .expect("a switchover recorded before the eviction was granted");
    let new_primary = last.to;
    log.say(
        "test",
        format!(
            "the eviction granted {:.1} s after the cordon, after {refused} refusals \
             ({refused_while_primary} while labelled primary); switched over {} -> {new_primary}",
            drain_at.elapsed().as_secs_f64(),
            last.from
        ),
    );
    assert_eq!(
        last.from, 0,
        "the switchover moved the old primary: {last:?}"
    );
    assert_ne!(
        placed[new_primary as usize], primary_node,
        "the new primary runs on another node"
    );
    assert_ne!(
        s.current_primary,
        Some(0),
        "the status names the new primary"
    );
    // Writes resume on the new primary, through the primary Service.
    common::writes_resume(&load, 100).await;

    // 5. The old pod stopped gracefully, and comes back on another node as a replica.
    until(
        Duration::from_secs(60),
        "the evicted pod stopped",
        async || {
            let events = world.kubelet().events();
            let stopped: Vec<&EventKind> = events
                .iter()
                .filter(|e| e.uid == old_uid && e.container.as_deref() == Some("mysqld"))
                .map(|e| &e.kind)
                .filter(|k| matches!(k, EventKind::Stopped { .. }))
                .collect();
            match stopped.as_slice() {
                [EventKind::Stopped { killed: false, .. }] => Ok(()),
                [other] => {
                    panic!("the evicted primary's mysqld was not stopped gracefully: {other:?}")
                }
                _ => Err("still running".to_owned()),
            }
        },
    )
    .await;
    let back_on = until(
        Duration::from_secs(60),
        "the old primary back as a replica on another node",
        async || {
            let pod = world.pod(0).await.ok_or("no pod yet")?;
            if pod.uid().as_deref() == Some(old_uid.as_str()) {
                return Err("the evicted pod is still there".into());
            }
            let node = node_of(&pod).ok_or("not placed yet")?;
            let ready = switchyard_kubelet::pod_ready(&pod);
            match (role_of(&pod).as_deref(), ready) {
                (Some("replica"), true) => Ok(node),
                (role, ready) => Err(format!("on {node}, role {role:?}, ready {ready}")),
            }
        },
    )
    .await;
    assert_ne!(back_on, primary_node, "the cordoned node took no pod");
    let mut conn = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("connect to the old primary");
    let threads = steps::replicating(&mut conn, flavor, "the old primary").await;
    assert!(
        threads.source.starts_with(&world.names.pod(new_primary)),
        "the old primary replicates from the new one: {threads:?}"
    );
    assert_eq!(
        common::scalar(&mut conn, "SELECT @@read_only").await,
        "1",
        "the old primary is read-only"
    );
    let _ = conn.close().await;
    log.say(
        "test",
        format!("the old primary is back on {back_on}, a replica of instance {new_primary}"),
    );

    // 6. The verdict.
    let report = load.stop().await;
    let writers = monitor.stop().await;
    service.assert_moved(0, new_primary);
    assert_nothing_lost(
        &world,
        &log,
        &report,
        &writers,
        INSTANCES,
        new_primary,
        (&op_user, &op_pw),
    )
    .await;
    // Every request the operator made (the Nodes it read among them) is allowed by
    // deploy/rbac.yaml.
    let requests = world.recorder.requests();
    let rbac_file = common::workspace().join("deploy/rbac.yaml");
    let rbac = Rbac::load(&rbac_file).expect("deploy/rbac.yaml");
    let operator = ServiceAccount {
        namespace: "switchyard-system".into(),
        name: "switchyard".into(),
    };
    let denied = rbac.check(&operator, &requests);
    assert!(
        denied.is_empty(),
        "{} denies what the operator did:\n{}",
        rbac_file.display(),
        denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        requests
            .iter()
            .flat_map(|r| r.needs.iter().map(ToString::to_string))
            .any(|n| n.contains("nodes")),
        "the operator read the Nodes of its pods"
    );
    world.shutdown().await;
    log.say(
        "test",
        format!("drain: {:.1} s in all", started.elapsed().as_secs_f64()),
    );
}
