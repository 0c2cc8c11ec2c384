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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    AppLoad, Log, World, WritableMonitor, assert_nothing_lost, exec, hash_of, intent, revision_of,
    rows_on, scalar, start_app_load, until, within,
};
use kube::ResourceExt as _;
use kube::api::DeleteParams;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_kube::names::ANNOTATION_REVISION_HASH;
use switchyard_kubelet::EventKind;
use switchyard_kubelet::rbac::{Rbac, ServiceAccount};
use switchyard_plan::record::Intent;
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
    let bins =
        tokio::task::spawn_blocking(|| switchyard_testbed::binaries(ServerKind::Mariadb1011))
            .await
            .unwrap()
            .expect("MariaDB 10.11 from the testbed");
    assert_eq!(bins.kind().flavor(), Flavor::Mariadb);
    let version = bins.version().to_owned();
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
        let (io, sql, host) = replica_threads(&mut conn).await;
        assert_eq!((io.as_str(), sql.as_str()), ("Yes", "Yes"), "instance {n}");
        assert!(
            host.starts_with(&world.names.pod(0)),
            "instance {n} replicates from {host}"
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
    let (restarting, deleted) = until(ROLLOUT_WITHIN, "the first replica's restart", async || {
        let c = world.cluster().await;
        match intent(&c) {
            Some(Intent::Restarting { ordinal, .. }) if ordinal != 0 => {
                Ok((ordinal, if ordinal == 1 { 2 } else { 1 }))
            }
            other => Err(format!("intent {other:?}")),
        }
    })
    .await;
    let gone = world.pod(deleted).await.expect("the other replica's pod");
    let gone_uid = gone.uid().unwrap_or_default();
    assert_eq!(
        gone.annotations().get(ANNOTATION_REVISION_HASH),
        Some(&hash_of(&before, old_revision)),
        "instance {deleted} still runs the old revision"
    );
    log.say(
        "test",
        format!(
            "the engine restarts instance {restarting}: deleting pod {} by hand",
            gone.name_any()
        ),
    );
    world
        .pods()
        .delete(&gone.name_any(), &DeleteParams::default())
        .await
        .expect("delete the pod");
    let back = until(
        Duration::from_secs(30),
        "the deleted pod recreated",
        async || match world.pod(deleted).await {
            Some(p) if p.uid().unwrap_or_default() != gone_uid => Ok(p),
            _ => Err("not yet".into()),
        },
    )
    .await;
    let at_recreation = world.cluster().await;
    let assigned = revision_of(&at_recreation, deleted);
    let busy = matches!(
        intent(&at_recreation),
        Some(Intent::Restarting { ordinal, .. }) if ordinal == restarting
    );
    assert!(
        busy,
        "inconclusive: the engine finished restarting instance {restarting} before pod {} came back ({:?})",
        back.name_any(),
        intent(&at_recreation)
    );
    // The engine was busy with the other replica: nothing may have moved this one.
    assert_eq!(
        assigned, old_revision,
        "instance {deleted} was assigned another revision outside the engine's restart"
    );
    assert_eq!(
        back.annotations().get(ANNOTATION_REVISION_HASH),
        Some(&hash_of(&at_recreation, old_revision)),
        "a pod deleted outside the engine comes back on its own revision, not the target's"
    );
    log.say(
        "test",
        format!("pod {} is back on revision {old_revision}", back.name_any()),
    );

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
    let at_switch = load.acknowledged();
    until(
        Duration::from_secs(30),
        "writes on the new primary",
        async || {
            let n = load.acknowledged();
            if n >= at_switch + 50 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
    let report = load.stop().await;
    let writers = monitor.stop().await;

    // The order: the replicas restarted before the switchover, the old primary after it.
    // The engine's own record of it, in milliseconds (the status' times are in seconds).
    let recorded = s
        .record
        .as_ref()
        .and_then(|r| r.last_switchover.clone())
        .expect("the record's last switchover");
    assert_eq!((recorded.from, recorded.to), (0, new_primary));
    let fenced_ms = i64::try_from(recorded.started.0).unwrap();
    let promoted_ms = i64::try_from(recorded.promoted.0).unwrap();
    let wall_ms = |at: Instant| {
        let t = clock.1 + at.saturating_duration_since(clock.0);
        i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
    };
    let mut terminated: Vec<(u32, i64)> = Vec::new();
    for e in world.kubelet().events() {
        if let EventKind::Terminating { .. } = e.kind
            && let Some(n) = world
                .names
                .ordinal_of(e.pod.rsplit('/').next().unwrap_or(""))
        {
            terminated.push((n, wall_ms(e.at)));
        }
    }
    log.say("test", format!("pods terminated (ordinal, unix ms): {terminated:?}; fence at {fenced_ms}, promotion at {promoted_ms}"));
    for n in 0..INSTANCES {
        let times: Vec<i64> = terminated
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, t)| *t)
            .collect();
        let expected = if n == deleted { 2 } else { 1 };
        assert_eq!(
            times.len(),
            expected,
            "instance {n}'s pod terminations: {terminated:?}"
        );
        let last = *times.last().unwrap();
        if n == 0 {
            assert!(
                last > promoted_ms,
                "the old primary restarted only after the promotion: {terminated:?}"
            );
        } else {
            assert!(
                last < fenced_ms,
                "replica {n} restarted before the switchover: {terminated:?}"
            );
        }
    }
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
    let online_from = target;
    world
        .edit(|s| {
            s.config.insert(ONLINE_VARIABLE.into(), ONLINE_VALUE.into());
        })
        .await;
    log.say(
        "test",
        format!("{ONLINE_VARIABLE} = {ONLINE_VALUE} (dynamic: set online)"),
    );
    until(
        ROLLOUT_WITHIN,
        "the online change on every instance",
        async || {
            let c = world.cluster().await;
            let s = c.status.clone().unwrap_or_default();
            let target = s.revisions.as_ref().and_then(|r| r.update);
            let online = s
                .revisions
                .as_ref()
                .and_then(|r| r.history.iter().find(|e| Some(e.number) == target))
                .is_some_and(|e| e.online.is_some());
            let all = s.instances.len() == INSTANCES as usize
                && s.instances.iter().all(|i| i.revision == target && i.ready);
            if target != Some(online_from) && online && all && s.phase.as_deref() == Some("Ready") {
                Ok(())
            } else {
                Err(format!(
                    "phase {:?} target {target:?} online {online} instances {:?}",
                    s.phase,
                    s.instances
                        .iter()
                        .map(|i| (i.ordinal, i.revision, i.ready))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    let victim = (0..INSTANCES)
        .find(|n| *n != new_primary)
        .expect("a replica");
    let pod_before = world.pod(victim).await.expect("the replica's pod");
    for n in 0..INSTANCES {
        let mut conn = MySqlConnection::connect_with(&world.options(n, &op_user, &op_pw))
            .await
            .expect("connect");
        assert_eq!(
            scalar(&mut conn, &format!("SELECT @@GLOBAL.{ONLINE_VARIABLE}")).await,
            ONLINE_VALUE,
            "instance {n} set the online change"
        );
        let _ = conn.close().await;
    }
    let restarts_before = container_starts(&world, victim);
    world
        .kubelet()
        .signal_container(
            common::NS,
            &world.names.pod(victim),
            "mysqld",
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the replica's container");
    log.say(
        "test",
        format!("SIGKILL to instance {victim}'s mysqld container"),
    );
    until(
        ROLLOUT_WITHIN,
        "the killed container restarted and serving",
        async || {
            let started = container_starts(&world, victim);
            if started <= restarts_before {
                return Err(format!("{started} starts"));
            }
            let s = world.agent_status(victim).await?;
            if s["phase"] == "running" {
                Ok(())
            } else {
                Err(format!("agent: {s}"))
            }
        },
    )
    .await;
    let pod_after = world.pod(victim).await.expect("the replica's pod");
    assert_eq!(
        pod_after.uid(),
        pod_before.uid(),
        "the same pod, its container restarted (not recreated)"
    );
    let mut conn = MySqlConnection::connect_with(&world.options(victim, &op_user, &op_pw))
        .await
        .expect("connect to the restarted replica");
    let after = scalar(&mut conn, &format!("SELECT @@GLOBAL.{ONLINE_VARIABLE}")).await;
    let _ = conn.close().await;
    assert_eq!(
        after, ONLINE_VALUE,
        "instance {victim}: the online change survived the container's restart"
    );
    log.say(
        "test",
        format!("instance {victim} restarted with {ONLINE_VARIABLE} = {after}"),
    );

    // 6. A replica's volume is lost with its pod (a lost local disk): the operator recreates
    // the pod, its agent finds no data and starts nothing until the operator names a donor,
    // the copy replicates, and it is never writable.
    let lost = victim;
    let rows = {
        let mut conn = MySqlConnection::connect_with(&world.options(new_primary, &op_user, &op_pw))
            .await
            .expect("connect to the primary");
        exec(&mut conn, "INSERT INTO app.ledger (id, writer, at_us, payload) SELECT MAX(id) + 1, 0, 0, 'after the loss' FROM app.ledger").await;
        let n = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
        let _ = conn.close().await;
        n
    };
    let monitor = WritableMonitor::start(&world, INSTANCES, &creds);
    let lost_pod = world.pod(lost).await.expect("the replica's pod");
    world
        .kubelet()
        .volume_loss(common::NS, &world.names.claim(lost))
        .expect("lose the volume");
    world
        .kubelet()
        .node_loss(common::NS, &world.names.pod(lost))
        .await
        .expect("lose the pod");
    log.say("test", format!("instance {lost}'s volume and pod lost"));
    let copied = until(
        ROLLOUT_WITHIN,
        "the lost instance provisioned again",
        async || {
            match world.pod(lost).await {
                Some(p) if p.uid() != lost_pod.uid() => {}
                _ => return Err("no new pod yet".into()),
            }
            let s = world.agent_status(lost).await?;
            let c = world.cluster().await;
            let st = c.status.clone().unwrap_or_default();
            let ready = st.instances.iter().any(|i| i.ordinal == lost && i.ready);
            if s["phase"] == "running" && s["provisioning"] == "done" && ready {
                Ok(s)
            } else {
                Err(format!("agent: {s}; ready {ready}"))
            }
        },
    )
    .await;
    // The donor: in the status, or (when the container restarted after the copy, which a
    // new agent resumes from the copy's marker) in what the agent logged while copying.
    let from = donor_of(&world, lost, &copied);
    assert!(
        (0..INSTANCES)
            .filter(|n| *n != lost)
            .any(|n| from.starts_with(&world.names.pod_host(n))),
        "instance {lost} copied from a healthy instance, not {from:?}: {copied:#}"
    );
    let mut conn = MySqlConnection::connect_with(&world.options(lost, &op_user, &op_pw))
        .await
        .expect("connect to the copy");
    assert_eq!(
        scalar(&mut conn, "SELECT @@read_only").await,
        "1",
        "the copy is read-only"
    );
    replicating(&mut conn, "the copy replicates").await;
    let copy_rows = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
    let _ = conn.close().await;
    assert_eq!(copy_rows, rows, "the copy has every row");
    let c = world.cluster().await;
    assert_eq!(
        c.status.as_ref().and_then(|s| s.current_primary),
        Some(new_primary),
        "the primary did not move"
    );
    let writers = monitor.stop().await;
    assert_eq!(
        writers.writable.get(&lost).copied().unwrap_or(0),
        0,
        "the re-provisioned instance {lost} was never writable: {writers:?}"
    );
    assert!(writers.several.is_empty(), "{writers:?}");
    log.say(
        "test",
        format!("instance {lost} copied from {from}, read-only, replicating, {copy_rows} rows"),
    );

    // 7. The primary's binary logs are purged (a new instance replaying them from the first
    // could not get the rows written before), then scale 3 -> 5: each new instance is copied
    // from a donor, has every row, and counts as ready (joins the read Service) only once its
    // copy runs and replicates.
    let mut rows = purge_binary_logs(&world, new_primary, &op_user, &op_pw).await;
    world
        .edit(|s| s.replicas = i32::try_from(INSTANCES + ADDED).unwrap())
        .await;
    log.say("test", format!("scaling to {}", INSTANCES + ADDED));
    for added in INSTANCES..INSTANCES + ADDED {
        let joined = until(ROLLOUT_WITHIN, "the new instance ready", async || {
            // The pod's Ready condition (from the agent's readiness probe) is what puts it in the
            // read Service's endpoints.
            let ready = world
                .pod(added)
                .await
                .is_some_and(|p| switchyard_kubelet::pod_ready(&p));
            let agent = world.agent_status(added).await;
            if ready {
                // Ready: the agent must already have a running, replicating copy.
                let a = agent.unwrap_or_else(|e| panic!("instance {added} ready, its agent: {e}"));
                assert_eq!(
                    (a["phase"].as_str(), a["provisioning"].as_str()),
                    (Some("running"), Some("done")),
                    "instance {added} ready before its copy ran: {a:#}"
                );
                Ok(a)
            } else {
                Err(format!("not ready; agent {agent:?}"))
            }
        })
        .await;
        let from = donor_of(&world, added, &joined);
        assert!(
            (0..added).any(|n| from.starts_with(&world.names.pod_host(n))),
            "instance {added} copied from an instance of the cluster, not {from:?}"
        );
        let mut conn = MySqlConnection::connect_with(&world.options(added, &op_user, &op_pw))
            .await
            .expect("connect to the new instance");
        let host = replicating(&mut conn, "the new instance replicates").await;
        assert!(
            host.starts_with(&world.names.pod(new_primary)),
            "the new instance replicates from the primary, not {host}"
        );
        assert_eq!(scalar(&mut conn, "SELECT @@read_only").await, "1");
        let added_rows = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
        let _ = conn.close().await;
        assert_eq!(added_rows, rows, "the new instance has every row");
        // And it replicates what the primary writes now.
        let mut conn = MySqlConnection::connect_with(&world.options(new_primary, &op_user, &op_pw))
            .await
            .expect("connect to the primary");
        exec(&mut conn, "INSERT INTO app.ledger (id, writer, at_us, payload) SELECT MAX(id) + 1, 0, 0, 'after the scale-up' FROM app.ledger").await;
        rows = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
        let _ = conn.close().await;
        until(
            Duration::from_secs(30),
            "the new instance replicating the primary's next write",
            async || {
                let mut conn =
                    MySqlConnection::connect_with(&world.options(added, &op_user, &op_pw))
                        .await
                        .map_err(|e| e.to_string())?;
                let n = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
                let _ = conn.close().await;
                if n == rows {
                    Ok(())
                } else {
                    Err(format!("{n} rows of {rows}"))
                }
            },
        )
        .await;
        log.say(
            "test",
            format!("instance {added} copied from {from}, replicating, {rows} rows"),
        );
    }

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

/// Writes a row on `primary`, rotates its binary log and purges every earlier one, and
/// checks that the rows written so far are in no binary log left (the first file is gone and
/// the oldest left starts after a GTID position that is not empty); returns the row count.
async fn purge_binary_logs(world: &World, primary: u32, user: &str, password: &str) -> String {
    let mut conn = MySqlConnection::connect_with(&world.options(primary, user, password))
        .await
        .expect("connect to the primary");
    exec(&mut conn, "INSERT INTO app.ledger (id, writer, at_us, payload) SELECT MAX(id) + 1, 0, 0, 'before the purge' FROM app.ledger").await;
    let first = scalar(&mut conn, "SHOW BINARY LOGS").await;
    exec(&mut conn, "FLUSH BINARY LOGS").await;
    let current = scalar(&mut conn, "SHOW MASTER STATUS").await;
    assert_ne!(first, current, "FLUSH BINARY LOGS rotated the log");
    // The server keeps a file a replica's dump thread still reads (with a warning): the
    // replicas move to the new file once they read the rotation.
    let oldest = until(
        Duration::from_secs(30),
        "every binary log before the current one purged",
        async || {
            exec(&mut conn, &format!("PURGE BINARY LOGS TO '{current}'")).await;
            let oldest = scalar(&mut conn, "SHOW BINARY LOGS").await;
            if oldest == current {
                Ok(oldest)
            } else {
                Err(format!("the oldest binary log is {oldest}, not {current}"))
            }
        },
    )
    .await;
    let gone = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SHOW BINLOG EVENTS IN '{first}'"
    )))
    .fetch_all(&mut conn)
    .await;
    assert!(
        gone.is_err(),
        "the first binary log {first} is gone: {gone:?}"
    );
    let before_oldest = scalar(&mut conn, &format!("SELECT BINLOG_GTID_POS('{oldest}', 4)")).await;
    assert!(
        !before_oldest.is_empty(),
        "the oldest binary log {oldest} starts after transactions it does not hold"
    );
    exec(&mut conn, "INSERT INTO app.ledger (id, writer, at_us, payload) SELECT MAX(id) + 1, 0, 0, 'after the purge' FROM app.ledger").await;
    let rows = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
    let _ = conn.close().await;
    world.log.say(
        "test",
        format!(
            "instance {primary}'s binary logs before {oldest} purged (first was {first}); the \
             transactions up to {before_oldest} are in no binary log; {rows} rows"
        ),
    );
    rows
}

/// A replica's `Slave_IO_Running`, `Slave_SQL_Running` and `Master_Host`.
async fn replica_threads(conn: &mut MySqlConnection) -> (String, String, String) {
    use sqlx::Row as _;
    let row = sqlx::raw_sql("SHOW SLAVE STATUS")
        .fetch_one(conn)
        .await
        .expect("SHOW SLAVE STATUS");
    let text = |col: &str| {
        row.try_get::<String, _>(col)
            .unwrap_or_else(|_| String::from_utf8_lossy(&row.get::<Vec<u8>, _>(col)).into_owned())
    };
    (
        text("Slave_IO_Running"),
        text("Slave_SQL_Running"),
        text("Master_Host"),
    )
}

/// Waits for both replication threads of `conn`'s server to run (a copy's I/O thread may
/// still be `Preparing` its first connection when the instance turns ready); its source.
async fn replicating(conn: &mut MySqlConnection, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (io, sql, host) = replica_threads(conn).await;
        if (io.as_str(), sql.as_str()) == ("Yes", "Yes") {
            return host;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: I/O thread {io}, SQL thread {sql} (source {host}) after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many times instance `n`'s `mysqld` container started, over all its pods.
fn container_starts(world: &World, n: u32) -> usize {
    let pod = format!("{}/{}", common::NS, world.names.pod(n));
    world
        .kubelet()
        .events()
        .iter()
        .filter(|e| {
            e.pod == pod
                && e.container.as_deref() == Some("mysqld")
                && matches!(e.kind, EventKind::ContainerStarted { .. })
        })
        .count()
}

/// The donor instance `n` was copied from: in its agent's status, or (when the container
/// restarted after the copy, which a new agent resumes from the copy's marker, knowing no
/// donor) in what the agent logged while copying (`copying HOST:PORT`).
fn donor_of(world: &World, n: u32, status: &serde_json::Value) -> String {
    match status["provisioning_donor"].as_str() {
        Some(d) if !d.is_empty() => d.to_owned(),
        _ => {
            let logs = world.logs(n, "mysqld");
            logs.split("copying ")
                .nth(1)
                .map(|rest| {
                    rest.split(|c: char| c.is_whitespace() || c == '\u{1b}')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .unwrap_or_default()
        }
    }
}
