//! End to end on Kubernetes, simulated: automatic failover of a MariaDB 10.11 cluster whose
//! primary's node is lost, under load.
//!
//! 1. A `MySQLCluster` of 3 instances with the defaults: lossless semi-synchronous
//!    replication (`AFTER_SYNC`, never falling back), a 4 s replica network timeout, automatic
//!    failover after 3 s. The primary waits for acknowledgements, the replicas acknowledge.
//! 2. Two writers go through the primary Service (a router following the pod labelled
//!    primary), a monitor polls `@@read_only` on every pod.
//! 3. The primary's node is lost: its processes are killed at once and its pod deleted
//!    without a grace period; the node stays lost (its pod, recreated by the operator, stays
//!    pending) until the test brings it back.
//! 4. The operator fails over to a replica, lossless, and moves the primary label (the old
//!    pod's first): writes resume on the new primary through the primary Service.
//! 5. The node comes back: the old primary's pod starts read-only and is either rejoined as a
//!    replica of the new primary or quarantined with the `Quarantined` condition (it may hold
//!    commits no replica acknowledged); it is never labelled primary nor writable.
//! 6. No acknowledged write is lost (every one on every instance but a quarantined one, all on
//!    the new primary), no two servers acknowledged writes at once, the monitor never saw two
//!    writable instances; every pod stops cleanly.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_failover -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::time::{Duration, Instant};

use common::{AppLoad, Log, World, assert_nothing_lost_on, scalar, start_app_load, until};
use kube::ResourceExt as _;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_testbed::{Flavor, ServerKind};

const INSTANCES: u32 = 3;
/// From nothing to Ready (three agent installs, a bootstrap, two provisionings).
const READY_WITHIN: Duration = Duration::from_secs(150);
/// From the node loss to a new primary (detection 3 s, the failover's steps).
const FAILOVER_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_primary_node_lost_fails_over_without_losing_a_write() {
    let _slots = switchyard_testbed::slots::acquire(INSTANCES as usize)
        .await
        .expect("server slots");
    let log = Log::new("kube-e2e-failover.log");
    let bins =
        tokio::task::spawn_blocking(|| switchyard_testbed::binaries(ServerKind::Mariadb1011))
            .await
            .unwrap()
            .expect("MariaDB 10.11 from the testbed");
    assert_eq!(bins.kind().flavor(), Flavor::Mariadb);
    let version = bins.version().to_owned();
    let mut world = World::start(log.clone()).await;

    // 1. A cluster with the defaults.
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
        if s.phase.as_deref() == Some("Ready") && s.ready.as_deref() == Some(want.as_str()) {
            Ok(())
        } else {
            Err(format!("phase {:?} ready {:?}", s.phase, s.ready))
        }
    })
    .await;
    log.say("test", "Ready");
    let creds = world.credentials().await;
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());

    // Lossless semi-synchronous replication: the primary waits (after the sync, even with no
    // replica, never falling back), both replicas acknowledge, and the replicas give a silent
    // source up after 4 s.
    let mut primary = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("the operator's account on the primary");
    for (sql, want) in [
        ("SELECT @@read_only", "0"),
        ("SELECT @@rpl_semi_sync_master_enabled", "1"),
        ("SELECT @@rpl_semi_sync_master_wait_point", "AFTER_SYNC"),
        ("SELECT @@rpl_semi_sync_master_wait_no_slave", "1"),
        ("SELECT @@rpl_semi_sync_master_timeout >= 3600000", "1"),
    ] {
        assert_eq!(scalar(&mut primary, sql).await, want, "primary: {sql}");
    }
    for n in 1..INSTANCES {
        let mut conn = MySqlConnection::connect_with(&world.options(n, &op_user, &op_pw))
            .await
            .expect("the operator's account on a replica");
        for (sql, want) in [
            ("SELECT @@read_only", "1"),
            ("SELECT @@rpl_semi_sync_slave_enabled", "1"),
            ("SELECT @@rpl_semi_sync_master_enabled", "0"),
            ("SELECT @@slave_net_timeout", "4"),
        ] {
            assert_eq!(scalar(&mut conn, sql).await, want, "instance {n}: {sql}");
        }
        let _ = conn.close().await;
    }
    // The replicas register as semi-synchronous; the engine records the wait count.
    until(
        Duration::from_secs(30),
        "both replicas acknowledging, recorded",
        async || {
            let clients = scalar(
                &mut primary,
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'",
            )
            .await;
            let c = world.cluster().await;
            let recorded = c
                .status
                .as_ref()
                .and_then(|s| s.record.as_ref())
                .and_then(|r| r.primary_ack_replicas);
            if clients == "2" && recorded == Some(1) {
                Ok(())
            } else {
                Err(format!(
                    "{clients} semi-sync clients, recorded wait count {recorded:?}"
                ))
            }
        },
    )
    .await;

    // 2. The application and its load, through the primary Service.
    let AppLoad {
        service,
        monitor,
        load,
    } = start_app_load(&world, primary, &creds, INSTANCES, (2, 200, 100), &log).await;

    // 3. The primary's node is lost, and stays lost.
    let old_pod = world.names.pod(0);
    let old_uid = world.pod(0).await.and_then(|p| p.uid());
    world.kubelet().hold(common::NS, &old_pod);
    let lost_at = Instant::now();
    world
        .kubelet()
        .node_loss(common::NS, &old_pod)
        .await
        .expect("lose the primary's node");
    log.say(
        "test",
        format!(
            "the primary's node is lost ({} writes acknowledged)",
            load.acknowledged()
        ),
    );

    // 4. A failover, lossless, to a replica; the primary label moves to it.
    let failed_over = until(FAILOVER_WITHIN, "a new primary", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let last = s.record.as_ref().and_then(|r| r.last_failover.clone());
        let reported = s.conditions.iter().any(|c| c.type_ == "FailedOver");
        match (s.current_primary, last) {
            (Some(p), Some(f)) if p != 0 && f.to == p && reported => Ok(c),
            (p, f) => Err(format!(
                "primary {p:?}, last failover {f:?}, condition {reported}"
            )),
        }
    })
    .await;
    let s = failed_over.status.clone().unwrap();
    let record = s.record.clone().unwrap();
    let last = record.last_failover.clone().unwrap();
    let new_primary = last.to;
    log.say(
        "test",
        format!(
            "failed over 0 -> {new_primary} {:.1} s after the node loss (failing since {} ms, \
             started {} ms, promoted {} ms), lossless {}",
            lost_at.elapsed().as_secs_f64(),
            last.failing_since.0,
            last.started.0,
            last.promoted.0,
            last.lossless
        ),
    );
    assert_eq!(last.from, 0);
    assert!(last.lossless, "the failover was lossless: {last:?}");
    let failed_over_condition = s
        .conditions
        .iter()
        .find(|c| c.type_ == "FailedOver")
        .expect("a FailedOver condition");
    assert_eq!(
        (
            failed_over_condition.status.as_str(),
            failed_over_condition.reason.as_str()
        ),
        ("True", "Lossless")
    );
    // Writes resume on the new primary, through the primary Service.
    let at_failover = load.acknowledged();
    until(
        Duration::from_secs(30),
        "writes on the new primary",
        async || {
            let n = load.acknowledged();
            if n >= at_failover + 100 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
    assert_eq!(
        service.history.lock().unwrap().last().copied(),
        Some(Some(new_primary)),
        "the primary Service points at the new primary"
    );
    log.say(
        "test",
        format!(
            "writes resumed on instance {new_primary}: {} acknowledged",
            load.acknowledged()
        ),
    );

    // 5. The node comes back: the old primary starts read-only, and is rejoined or
    //    quarantined with a condition, never made writable nor labelled primary.
    world.kubelet().release(common::NS, &old_pod);
    log.say("test", "the node is back");
    let fate = until(
        Duration::from_secs(60),
        "the old primary rejoined or quarantined",
        async || {
            let c = world.cluster().await;
            let s = c.status.clone().unwrap_or_default();
            let quarantined = s
                .record
                .as_ref()
                .is_some_and(|r| r.quarantined.contains_key(&0));
            let condition = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Quarantined")
                .map(|c| (c.status.clone(), c.message.clone()));
            if quarantined {
                return match condition {
                    Some((status, message)) if status == "True" => {
                        Ok(format!("quarantined: {message}"))
                    }
                    other => Err(format!("quarantined, condition {other:?}")),
                };
            }
            let pod = world.pod(0).await.ok_or("no pod yet")?;
            if pod.uid() == old_uid {
                return Err("the old pod".into());
            }
            let mut conn = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
                .await
                .map_err(|e| e.to_string())?;
            let threads = replica_threads(&mut conn).await;
            let _ = conn.close().await;
            match threads {
                Some((io, sql, host))
                    if io == "Yes"
                        && sql == "Yes"
                        && host.starts_with(&world.names.pod(new_primary))
                        && pod.labels().get(switchyard_kube::names::LABEL_ROLE)
                            == Some(&"replica".to_owned()) =>
                {
                    Ok(format!("rejoined as a replica of {host}"))
                }
                other => Err(format!("replication {other:?}")),
            }
        },
    )
    .await;
    log.say("test", format!("the old primary: {fate}"));
    let mut conn = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("connect to the old primary");
    assert_eq!(
        scalar(&mut conn, "SELECT @@read_only").await,
        "1",
        "the old primary is read-only"
    );
    let _ = conn.close().await;
    let quarantined = fate.starts_with("quarantined");

    // 6. The verdict.
    let report = load.stop().await;
    let writers = monitor.stop().await;
    let history = service.history.lock().unwrap().clone();
    let moved = history
        .iter()
        .position(|p| *p == Some(new_primary))
        .expect("the primary Service moved");
    assert!(
        history[moved..].iter().all(|p| *p != Some(0)),
        "the old primary was labelled primary again: {history:?}"
    );
    let several = service.several.lock().unwrap().clone();
    assert!(
        several.is_empty(),
        "the primary Service selected several pods: {several:?}"
    );
    let checked: Vec<u32> = (0..INSTANCES)
        .filter(|n| !(quarantined && *n == 0))
        .collect();
    assert_nothing_lost_on(
        &world,
        &log,
        &report,
        &writers,
        &checked,
        new_primary,
        (&op_user, &op_pw),
    )
    .await;
    world.shutdown().await;
}

/// A replica's `Slave_IO_Running`, `Slave_SQL_Running` and `Master_Host`, when a source is
/// configured.
async fn replica_threads(conn: &mut MySqlConnection) -> Option<(String, String, String)> {
    use sqlx::Row as _;
    let row = sqlx::raw_sql("SHOW SLAVE STATUS")
        .fetch_optional(conn)
        .await
        .ok()??;
    let text = |name: &str| {
        row.try_get::<String, _>(name)
            .or_else(|_| {
                row.try_get::<Vec<u8>, _>(name)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .unwrap_or_default()
    };
    Some((
        text("Slave_IO_Running"),
        text("Slave_SQL_Running"),
        text("Master_Host"),
    ))
}
