//! End to end on Kubernetes, simulated: the operator's own pod spec run by the simulated
//! kubelet on real MariaDB 10.11 servers, from nothing to a rolling restart under load.
//!
//! 1. A `MySQLCluster` of 3 instances is created in a fake API server. The operator creates
//!    the pods, claims and ConfigMaps; the kubelet runs each pod in its own network namespace:
//!    the `install` init container copies `switchyard` (this build's binary, the operator's
//!    image) with its loader and libraries into the pod, and `switchyard agent run` runs in the
//!    database image's root (Debian's MariaDB 10.11, no shell), bootstraps instance 0, and
//!    provisions instances 1 and 2 from instance 0 with `mariadb-backup` streamed from its
//!    agent. The cluster becomes Ready, the replicas replicating.
//! 2. A load writes through a router whose primary endpoint follows the pod labelled primary
//!    (the primary Service), while a monitor polls `@@read_only` on every pod.
//! 3. A static variable is changed in the spec: the operator restarts the replicas first, then
//!    switches the primary over and restarts the old primary last. In the middle of it, while
//!    the engine restarts one replica, the other replica's pod is deleted outside the engine
//!    (`kubectl delete`): it comes back on its own (old) revision, not on the target.
//! 4. Every acknowledged write is on every instance (counted on the new primary too), no two
//!    servers acknowledged writes at once, the monitor never saw two writable instances.
//! 5. A dynamic variable is changed: the operator sets it online on every instance (no
//!    restart); then a replica's container is killed (SIGKILL): the kubelet restarts it in
//!    the same pod and the server comes back with the changed value (the agent renders my.cnf
//!    from the online revision's ConfigMap at every start).
//! 6. A replica's volume and pod are lost: it comes back provisioned from a healthy
//!    instance, replicating, with every row, and is never writable.
//! 7. The primary's binary logs are flushed and purged (the rows written so far are in no
//!    binary log left), then scale 3 -> 5: each new instance is copied from a donor,
//!    replicates from the primary with every row, and is ready (in the read Service) only
//!    once its copy runs.
//! 8. Every request the operator made is allowed by `deploy/rbac.yaml` (the API server's
//!    rules, checked by switchyard-kubelet's checker).
//! 9. Every pod stops cleanly; nothing of the pod network is left.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_mariadb -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use common::{
    AppLoad, Log, World, assert_nothing_lost, hash_of, intent, revision_of, rows_on, scalar,
    start_app_load, steps, until, within,
};
use kube::ResourceExt as _;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_kube::names::ANNOTATION_REVISION_HASH;
use switchyard_kubelet::EventKind;
use switchyard_kubelet::rbac::{Rbac, ServiceAccount};
use switchyard_testbed::{Flavor, ServerKind};

const INSTANCES: u32 = 3;
/// From nothing to Ready (three agent installs, a bootstrap, two provisionings).
const READY_WITHIN: Duration = Duration::from_secs(150);
/// The rolling restart of three instances with a switchover.
const ROLLOUT_WITHIN: Duration = Duration::from_secs(150);
/// A static variable (a change needs a restart) and the value the rollout gives it.
const STATIC_VARIABLE: &str = "innodb_sort_buffer_size";
const STATIC_VALUE: &str = "2097152";
/// A dynamic variable (set online, no restart) and the value the change gives it.
/// The instances the scale-up of step 7 adds.
const ADDED: u32 = 2;
const ONLINE_VARIABLE: &str = "max_connections";
const ONLINE_VALUE: &str = "321";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_from_nothing_to_a_rolling_restart_under_load() {
    let _slots = switchyard_testbed::slots::acquire((INSTANCES + ADDED) as usize)
        .await
        .expect("server slots");
    let log = Log::new("kube-e2e-mariadb.log");
    let clock = (Instant::now(), SystemTime::now());
    let version = common::server_version(ServerKind::Mariadb1011).await;
    let mut world = World::start(log.clone()).await;

    // 1. From nothing.
    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": version,
        "replicas": INSTANCES,
        "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "config": {"innodb_buffer_pool_size": "67108864"},
        "update": {"drainSeconds": 1},
    }))
    .expect("a spec");
    log.say(
        "test",
        format!(
            "creating {} (MariaDB {version}, {INSTANCES} instances)",
            common::NAME
        ),
    );
    world.create(spec).await;
    let ready = until(READY_WITHIN, "the cluster Ready", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let want = format!("{INSTANCES}/{INSTANCES}");
        if s.phase.as_deref() == Some("Ready") && s.ready.as_deref() == Some(want.as_str()) {
            Ok(c)
        } else {
            Err(format!("phase {:?} ready {:?}", s.phase, s.ready))
        }
    })
    .await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.current_primary, Some(0), "instance 0 is the primary");
    assert!(status.initialized, "the cluster was initialized once");
    log.say("test", "Ready");

    // Each instance's agent did what instance.json said: 0 bootstrapped, 1 and 2 copied.
    let donor = world.names.pod_host(0);
    for n in 0..INSTANCES {
        // The status counts an instance ready once its server answers; its agent may still
        // be setting up replication on the copy (or retrying a donor that was streaming to
        // the other replica: 409), so wait for it to report running.
        let s = until(
            Duration::from_secs(60),
            "the agent running",
            async || match world.agent_status(n).await {
                Ok(s) if s["phase"] == "running" => Ok(s),
                Ok(s) => Err(format!("instance {n}: {s:#}")),
                Err(e) => Err(format!("instance {n}: {e}")),
            },
        )
        .await;
        assert_eq!(s["data_dir_initialized"], true, "instance {n}: {s:#}");
        if n == 0 {
            assert_eq!(
                s["provisioning"], "idle",
                "instance 0 was bootstrapped: {s:#}"
            );
        } else {
            assert_eq!(
                s["provisioning"], "done",
                "instance {n} was provisioned: {s:#}"
            );
            let from = s["provisioning_donor"].as_str().unwrap_or_default();
            assert!(
                from.starts_with(&donor),
                "instance {n} copied {from}, not {donor}"
            );
            assert!(
                s["provisioned_bytes"].as_u64().unwrap_or(0) > 0,
                "instance {n}: {s:#}"
            );
        }
    }
    // The install init container ran in every pod before its server's container.
    let events = world.kubelet().events();
    for n in 0..INSTANCES {
        let pod = format!("{}/{}", common::NS, world.names.pod(n));
        let order: Vec<(&str, bool)> = events
            .iter()
            .filter(|e| e.pod == pod)
            .filter_map(|e| {
                let c = e.container.as_deref()?;
                match &e.kind {
                    EventKind::ContainerStarted { .. } => Some((c, true)),
                    EventKind::ContainerExited { code: 0, .. } => Some((c, false)),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(
            order.first().copied(),
            Some(("install", true)),
            "{pod}: {order:?}"
        );
        let installed = order.iter().position(|e| *e == ("install", false));
        let server = order.iter().position(|e| *e == ("mysqld", true));
        assert!(
            matches!((installed, server), (Some(i), Some(s)) if i < s),
            "{pod}: the agent runs once installed: {order:?}"
        );
    }

    // Replication runs on both replicas, from instance 0's stable name.
    let creds = world.credentials().await;
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());
    for n in 1..INSTANCES {
        let mut conn = MySqlConnection::connect_with(&world.options(n, &op_user, &op_pw))
            .await
            .expect("the operator's account on a replica");
        let t = steps::replica_threads(&mut conn, Flavor::Mariadb).await;
        assert_eq!(
            (t.io.as_str(), t.sql.as_str()),
            ("Yes", "Yes"),
            "instance {n}"
        );
        assert!(
            t.source.starts_with(&world.names.pod(0)),
            "instance {n} replicates from {}",
            t.source
        );
        assert_eq!(scalar(&mut conn, "SELECT @@read_only").await, "1");
        let _ = conn.close().await;
    }

    // 2. The application and its load, through the primary Service.
    let mut primary = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("the operator's account on the primary");
    assert_eq!(
        scalar(&mut primary, "SELECT @@read_only").await,
        "0",
        "the primary is writable"
    );
    let AppLoad {
        service,
        monitor,
        load,
    } = start_app_load(&world, primary, &creds, INSTANCES, (2, 100, 50), &log).await;

    // 3. A change that needs a restart.
    let before = world.cluster().await;
    let old_revision = revision_of(&before, 0);
    world
        .edit(|s| {
            s.config.insert(STATIC_VARIABLE.into(), STATIC_VALUE.into());
        })
        .await;
    log.say(
        "test",
        format!("{STATIC_VARIABLE} = {STATIC_VALUE} (static: a rolling restart)"),
    );

    // The engine restarts a replica; meanwhile the other replica's pod is deleted by hand.
    let deleted =
        steps::delete_replica_pod_mid_rollout(&world, &before, old_revision, ROLLOUT_WITHIN).await;

    // The rollout finishes: every instance on the target, the primary moved.
    let rollout = within(ROLLOUT_WITHIN, async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let target = s.revisions.as_ref().and_then(|r| r.update);
        let current = s.revisions.as_ref().and_then(|r| r.current);
        let all = s.instances.len() == INSTANCES as usize
            && s.instances.iter().all(|i| i.revision == target && i.ready);
        if s.phase.as_deref() == Some("Ready") && all && current == target {
            Ok(c)
        } else {
            Err(format!(
                "phase {:?} target {target:?} current {current:?} instances {:?} intent {:?}",
                s.phase,
                s.instances
                    .iter()
                    .map(|i| (i.ordinal, i.revision, i.ready, i.last_error.clone()))
                    .collect::<Vec<_>>(),
                intent(&c)
            ))
        }
    })
    .await;
    let done = match rollout {
        Ok(done) => done,
        Err(why) => {
            // What the writes and the writers say comes first: it names the harm.
            let report = load.stop().await;
            let writers = monitor.stop().await;
            let cluster = world.cluster().await;
            let primary = cluster.status.as_ref().and_then(|s| s.current_primary);
            let split = report.ledger.split_brain(3);
            log.say(
                "test",
                format!("rollout stuck; monitor {writers:?}; split brain {split:?}"),
            );
            assert!(
                writers.several.is_empty(),
                "two writable instances at once: {:?}",
                writers.several
            );
            assert_eq!(
                split.overlapping, 0,
                "two servers acknowledged writes at once: {split:?}"
            );
            if let Some(p) = primary {
                let on_primary = rows_on(&world, p, &op_user, &op_pw, &report.ledger.acked).await;
                assert_eq!(
                    on_primary,
                    report.ledger.acked.len(),
                    "acknowledged writes missing on the primary {p}"
                );
            }
            panic!("the rollout did not finish within {ROLLOUT_WITHIN:?}; last seen: {why}");
        }
    };
    let s = done.status.clone().unwrap();
    let target = s.revisions.as_ref().and_then(|r| r.update).unwrap();
    assert_ne!(target, old_revision);
    let new_primary = s.current_primary.expect("a primary");
    assert_ne!(
        new_primary, 0,
        "the primary was switched over before its restart"
    );
    let switchover = s.last_switchover.clone().expect("a switchover");
    assert_eq!((switchover.from, switchover.to), (0, new_primary));
    log.say(
        "test",
        format!(
            "rollout done: primary {new_primary}, switchover in {} ms",
            switchover.duration_millis
        ),
    );
    // Keep writing a little on the new primary, then stop the load.
    common::writes_resume(&load, 50).await;
    let report = load.stop().await;
    let writers = monitor.stop().await;

    // The order: the replicas restarted before the switchover, the old primary after it.
    steps::assert_restart_order(
        &world,
        &done,
        (clock, clock.0),
        INSTANCES,
        (0, new_primary),
        Some(deleted),
    );
    // Every pod runs the target's template, and the change is in every server.
    let target_hash = hash_of(&done, target);
    for n in 0..INSTANCES {
        let pod = world.pod(n).await.expect("a pod");
        assert_eq!(
            pod.annotations().get(ANNOTATION_REVISION_HASH),
            Some(&target_hash),
            "instance {n}"
        );
        let mut conn = MySqlConnection::connect_with(&world.options(n, &op_user, &op_pw))
            .await
            .expect("connect");
        assert_eq!(
            scalar(&mut conn, &format!("SELECT @@{STATIC_VARIABLE}")).await,
            STATIC_VALUE,
            "instance {n}"
        );
        let writable = scalar(&mut conn, "SELECT @@read_only").await == "0";
        assert_eq!(
            writable,
            n == new_primary,
            "instance {n} writable: {writable}"
        );
        let _ = conn.close().await;
    }

    // 4. No acknowledged write lost, never two writers.
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
    drop(service);

    // 5. An online change survives a container restart: the agent renders my.cnf from the
    // ConfigMap at every start, and the ConfigMap holds the online revision's my.cnf.
    // 6. A replica's volume is lost with its pod (a lost local disk): the operator recreates
    // the pod, its agent finds no data and starts nothing until the operator names a donor,
    // the copy replicates, and it is never writable.
    // 7. The primary's binary logs are purged (a new instance replaying them from the first
    // could not get the rows written before), then scale 3 -> 5: each new instance is copied
    // from a donor, has every row, and counts as ready (joins the read Service) only once its
    // copy runs and replicates.
    steps::after_the_rollout(
        &world,
        &creds,
        (INSTANCES, ADDED, new_primary),
        Flavor::Mariadb,
        (ONLINE_VARIABLE, ONLINE_VALUE),
        ROLLOUT_WITHIN,
        async |_| {},
    )
    .await;

    // 8. Every request the operator made is allowed by deploy/rbac.yaml.
    let requests = world.recorder.requests();
    let rbac_file = common::workspace().join("deploy/rbac.yaml");
    let rbac = Rbac::load(&rbac_file).expect("deploy/rbac.yaml");
    let operator = ServiceAccount {
        namespace: "switchyard-system".into(),
        name: "switchyard".into(),
    };
    let denied = rbac.check(&operator, &requests);
    let verbs: BTreeSet<String> = requests
        .iter()
        .flat_map(|r| r.needs.iter().map(ToString::to_string))
        .map(|a| a.split(" named ").next().unwrap_or_default().to_owned())
        .collect();
    log.say(
        "test",
        format!(
            "{} requests by the operator, needing: {verbs:#?}",
            requests.len()
        ),
    );
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
        verbs.iter().any(|v| v.starts_with("create core/pods")),
        "the recorder saw the operator create pods: {verbs:?}"
    );

    // 9. A clean stop.
    world.shutdown().await;
}
