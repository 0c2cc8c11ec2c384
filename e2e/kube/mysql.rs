//! End to end on Kubernetes, simulated, on MySQL 9.7: the operator's own pod spec run by the
//! simulated kubelet on real servers, from nothing to a rolling restart under load.
//!
//! 1. A `MySQLCluster` of 3 instances is created in a fake API server. Every pod's `install`
//!    init container copies the agent into the pod; `switchyard agent run` runs in the
//!    database image's root (Debian's MySQL 9.7), initializes instance 0
//!    (`--initialize-insecure`, binary log off: no GTID of its own) and provisions instances
//!    1 and 2 from instance 0 with `CLONE INSTANCE`, then replicates with
//!    `SOURCE_AUTO_POSITION`. The cluster becomes Ready, the replicas replicating, read-only
//!    and `super_read_only`, with no errant transaction.
//! 2. A load writes through a router whose primary endpoint follows the pod labelled primary
//!    (the primary Service), while a monitor polls `@@read_only` on every pod.
//! 3. A static variable is changed in the spec: the operator restarts the replicas first, then
//!    switches the primary over and restarts the old primary last. In the middle of it, while
//!    the engine restarts one replica, the other replica's pod is deleted outside the engine
//!    (`kubectl delete`): it comes back on its own (old) revision, not on the target.
//! 4. Every acknowledged write is on every instance, no two servers acknowledged writes at
//!    once, the monitor never saw two writable instances, every pod runs the target revision.
//! 5. A dynamic variable is changed: the operator sets it online on every instance (no
//!    restart); then a replica's container is killed (SIGKILL): the kubelet restarts it in
//!    the same pod and the server comes back with the changed value (the agent renders my.cnf
//!    from the online revision's ConfigMap at every start).
//! 6. A replica's volume and pod are lost: it comes back cloned from a healthy instance, in
//!    the read Service only once it holds every row, replicating, never writable, with no
//!    GTID of its own.
//! 7. The primary's binary logs are flushed and purged (every transaction so far is in
//!    `gtid_purged`), then scale 3 -> 5: each new instance is cloned from a donor, replicates
//!    from the primary with every row and its next write, and is ready (in the read Service)
//!    only once its clone runs and replicates.
//! 8. The primary's volume and pod are lost: its agent initializes nothing, the cluster halts
//!    with `PrimaryDataLost`, and no instance is writable (no failover, no empty primary).
//! 9. Every pod stops cleanly; nothing of the pod network is left.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_mysql -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{
    AppLoad, Log, World, assert_nothing_lost, hash_of, intent, revision_of, scalar, start_app_load,
    steps, until, within,
};
use kube::ResourceExt as _;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_kube::names::ANNOTATION_REVISION_HASH;
use switchyard_testbed::{Flavor, ServerKind};

const INSTANCES: u32 = 3;
/// From nothing to Ready (three agent installs, an initialization, two clones).
const READY_WITHIN: Duration = Duration::from_secs(180);
/// The rolling restart of three instances with a switchover.
const ROLLOUT_WITHIN: Duration = Duration::from_secs(180);
/// A static variable (a change needs a restart) and the value the rollout gives it.
const STATIC_VARIABLE: &str = "innodb_sort_buffer_size";
const STATIC_VALUE: &str = "2097152";
/// A dynamic variable (set online, no restart) and the value the change gives it.
const ONLINE_VARIABLE: &str = "max_connections";
const ONLINE_VALUE: &str = "321";
/// The instances the scale-up of step 7 adds.
const ADDED: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_from_nothing_to_a_rolling_restart_under_load() {
    let _slots = switchyard_testbed::slots::acquire((INSTANCES + ADDED) as usize)
        .await
        .expect("server slots");
    let log = Log::new("kube-e2e-mysql.log");
    let clock = (Instant::now(), SystemTime::now());
    let version = common::server_version(ServerKind::Mysql97).await;
    let mut world = World::start(log.clone()).await;

    // 1. From nothing.
    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": "mysql",
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
            "creating {} (MySQL {version}, {INSTANCES} instances)",
            common::NAME
        ),
    );
    world.create(spec).await;
    let ready = until(READY_WITHIN, "the cluster Ready", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let want = format!("{INSTANCES}/{INSTANCES}");
        if s.phase.as_deref() == Some("Ready") && s.ready.as_deref() == Some(want.as_str()) {
            return Ok(c);
        }
        // An agent that gave up will not recover by waiting.
        for n in 0..INSTANCES {
            if let Ok(a) = world.agent_status(n).await {
                assert_ne!(a["phase"], "failed", "instance {n}'s agent: {a:#}");
            }
        }
        Err(format!("phase {:?} ready {:?}", s.phase, s.ready))
    })
    .await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.current_primary, Some(0), "instance 0 is the primary");
    assert!(status.initialized, "the cluster was initialized once");
    log.say("test", "Ready");

    // Each instance's agent did what instance.json said: 0 initialized, 1 and 2 cloned.
    let donor = world.names.pod_host(0);
    for n in 0..INSTANCES {
        let s = world.agent_status(n).await.expect("the agent's status");
        assert_eq!(s["phase"], "running", "instance {n}: {s:#}");
        assert_eq!(s["data_dir_initialized"], true, "instance {n}: {s:#}");
        if n == 0 {
            assert_eq!(
                s["provisioning"], "idle",
                "instance 0 was initialized: {s:#}"
            );
        } else {
            assert_eq!(s["provisioning"], "done", "instance {n} was cloned: {s:#}");
            let from = s["provisioning_donor"].as_str().unwrap_or_default();
            assert!(
                from.starts_with(&donor),
                "instance {n} cloned {from}, not {donor}"
            );
        }
    }

    // Replication runs on both replicas from instance 0's stable name, with the donor's
    // GTIDs only (a server that wrote GTIDs under its own UUID is errant).
    let creds = world.credentials().await;
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());
    let mut primary = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("the operator's account on the primary");
    let primary_uuid = scalar(&mut primary, "SELECT @@server_uuid").await;
    for n in 1..INSTANCES {
        assert_clean_clone(&world, n, 0, (&op_user, &op_pw)).await;
    }
    let executed = scalar(&mut primary, "SELECT @@GLOBAL.gtid_executed").await;
    let foreign: Vec<&str> = executed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with(&primary_uuid))
        .collect();
    assert!(
        foreign.is_empty(),
        "the primary executed GTIDs of other servers: {executed}"
    );

    // 2. The application and its load, through the primary Service.
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
    let old_target = revision_of(&before, 0);
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
        steps::delete_replica_pod_mid_rollout(&world, &before, old_target, ROLLOUT_WITHIN).await;
    let rollout = within(ROLLOUT_WITHIN, async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let target = s.revisions.as_ref().and_then(|r| r.update);
        let current = s.revisions.as_ref().and_then(|r| r.current);
        let all = s.instances.len() == INSTANCES as usize
            && s.instances.iter().all(|i| i.revision == target && i.ready);
        if s.phase.as_deref() == Some("Ready")
            && all
            && current == target
            && target != Some(old_target)
        {
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
            let report = load.stop().await;
            let writers = monitor.stop().await;
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
            panic!("the rollout did not finish within {ROLLOUT_WITHIN:?}; last seen: {why}");
        }
    };
    let s = done.status.clone().unwrap();
    let target = s.revisions.as_ref().and_then(|r| r.update).unwrap();
    let new_primary = s.current_primary.expect("a primary");
    assert_ne!(
        new_primary, 0,
        "the primary was switched over before its restart"
    );
    let recorded = s
        .record
        .as_ref()
        .and_then(|r| r.last_switchover.clone())
        .expect("the record's last switchover");
    assert_eq!((recorded.from, recorded.to), (0, new_primary));
    log.say(
        "test",
        format!(
            "rollout done: primary {new_primary}, switchover in {} ms",
            s.last_switchover
                .as_ref()
                .map(|l| l.duration_millis)
                .unwrap_or_default()
        ),
    );
    common::writes_resume(&load, 50).await;
    let report = load.stop().await;
    let writers = monitor.stop().await;

    // The order: the replicas restarted before the switchover's fence, the old primary after
    // the promotion; each once, the replica deleted by hand twice.
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
        if n != new_primary {
            assert_eq!(
                scalar(&mut conn, "SELECT @@super_read_only").await,
                "1",
                "instance {n}"
            );
        }
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

    // 5. An online change survives a container restart; 6. a replica's volume is lost with
    // its pod: cloned again, in the read Service only with the data, never writable; 7. the
    // primary's binary logs are purged, then scale 3 -> 5: each new instance is cloned. Each
    // clone replicates by auto-position with no GTID of its own.
    let login = (op_user.as_str(), op_pw.as_str());
    steps::after_the_rollout(
        &world,
        &creds,
        (INSTANCES, ADDED, new_primary),
        Flavor::Mysql,
        (ONLINE_VARIABLE, ONLINE_VALUE),
        ROLLOUT_WITHIN,
        async |n| assert_clean_clone(&world, n, new_primary, login).await,
    )
    .await;

    // 8. The primary's volume is lost: it does not come back, writable or empty.
    steps::lose_primary_volume(
        &world,
        &creds,
        (INSTANCES + ADDED, new_primary),
        ROLLOUT_WITHIN,
    )
    .await;

    // 9. A clean stop.
    world.shutdown().await;
}

/// Instance `n` is a clean clone replicating from `primary`: both threads running by GTID
/// auto-position from the primary's stable name, `read_only` and `super_read_only`, a
/// `server_uuid` of its own, and no GTID under it (a server that wrote GTIDs under its own
/// UUID is errant).
async fn assert_clean_clone(world: &World, n: u32, primary: u32, (user, password): (&str, &str)) {
    let uuid_of = async |m: u32| {
        let mut conn = MySqlConnection::connect_with(&world.options(m, user, password))
            .await
            .unwrap_or_else(|e| panic!("the operator's account on instance {m}: {e}"));
        let uuid = scalar(&mut conn, "SELECT @@server_uuid").await;
        (conn, uuid)
    };
    let (conn, primary_uuid) = uuid_of(primary).await;
    let _ = conn.close().await;
    let (mut conn, uuid) = uuid_of(n).await;
    let t = steps::replicating(&mut conn, Flavor::Mysql, &format!("instance {n}")).await;
    assert_eq!(t.gtid, "1", "instance {n} replicates by GTID auto-position");
    assert!(
        t.source.starts_with(&world.names.pod(primary)),
        "instance {n} replicates from {}, not instance {primary}",
        t.source
    );
    assert_eq!(scalar(&mut conn, "SELECT @@read_only").await, "1");
    assert_eq!(scalar(&mut conn, "SELECT @@super_read_only").await, "1");
    assert_ne!(
        uuid, primary_uuid,
        "instance {n}: a clone gets its own UUID"
    );
    let executed = scalar(&mut conn, "SELECT @@GLOBAL.gtid_executed").await;
    assert!(
        !executed.contains(&uuid),
        "instance {n} wrote GTIDs of its own (errant): {executed}"
    );
    let _ = conn.close().await;
}
