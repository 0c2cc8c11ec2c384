//! The events the MariaDB and MySQL runs both put a cluster through, each with its checks:
//! a replica's pod deleted outside the engine in the middle of a rolling restart (and the
//! restart's order), an online change that survives a container restart, a replica whose
//! volume is lost, the primary's binary logs purged and the cluster scaled up. The SQL that
//! differs by flavor (a replica's status, the proof that a purge took the first rows' binary
//! logs) is chosen by the [`Flavor`] given.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams};
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::agent::{INSTANCE_KEY, InstanceConfig};
use switchyard_kube::crd::MySQLCluster;
use switchyard_kube::credentials::ClusterCredentials;
use switchyard_kube::names::ANNOTATION_REVISION_HASH;
use switchyard_kubelet::EventKind;
use switchyard_plan::record::Intent;
use switchyard_testbed::Flavor;

use super::{NS, World, WritableMonitor, exec, hash_of, intent, revision_of, scalar, until};

/// What a replica's status says of its replication.
#[derive(Clone, Debug)]
pub struct ReplicaThreads {
    /// The receiver (I/O) thread: `Yes`, `No`, `Connecting`, `Preparing`.
    pub io: String,
    /// The applier (SQL) thread.
    pub sql: String,
    /// The source's host.
    pub source: String,
    /// How it positions: MySQL `Auto_Position` (`1`), MariaDB `Using_Gtid` (`Slave_Pos`).
    pub gtid: String,
}

/// The replica status of `conn`'s server, read with the flavor's statement and column names.
pub async fn replica_threads(conn: &mut MySqlConnection, flavor: Flavor) -> ReplicaThreads {
    use sqlx::Row as _;
    let (sql, io, applier, source, gtid) = match flavor {
        Flavor::Mysql => (
            "SHOW REPLICA STATUS",
            "Replica_IO_Running",
            "Replica_SQL_Running",
            "Source_Host",
            "Auto_Position",
        ),
        Flavor::Mariadb => (
            "SHOW SLAVE STATUS",
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Master_Host",
            "Using_Gtid",
        ),
    };
    let row = sqlx::raw_sql(sql)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let text = |col: &str| {
        row.try_get::<String, _>(col)
            .or_else(|_| row.try_get::<i64, _>(col).map(|v| v.to_string()))
            .or_else(|_| row.try_get::<u64, _>(col).map(|v| v.to_string()))
            .or_else(|_| row.try_get::<i32, _>(col).map(|v| v.to_string()))
            .unwrap_or_else(|_| String::from_utf8_lossy(&row.get::<Vec<u8>, _>(col)).into_owned())
    };
    ReplicaThreads {
        io: text(io),
        sql: text(applier),
        source: text(source),
        gtid: text(gtid),
    }
}

/// Waits for both replication threads of `conn`'s server to run (a copy's I/O thread may
/// still be `Preparing` its first connection when the instance turns ready).
pub async fn replicating(conn: &mut MySqlConnection, flavor: Flavor, what: &str) -> ReplicaThreads {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = replica_threads(conn, flavor).await;
        if (t.io.as_str(), t.sql.as_str()) == ("Yes", "Yes") {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: I/O thread {}, SQL thread {} (source {}) after 30 s",
            t.io,
            t.sql,
            t.source
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many times instance `n`'s `mysqld` container started, over all its pods.
pub fn container_starts(world: &World, n: u32) -> usize {
    let pod = format!("{NS}/{}", world.names.pod(n));
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
pub fn donor_of(world: &World, n: u32, status: &serde_json::Value) -> String {
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

/// `SELECT COUNT(*) FROM app.ledger` on instance `n`, or why it could not be read.
pub async fn ledger_rows(
    world: &World,
    n: u32,
    (user, password): (&str, &str),
) -> Result<u64, String> {
    let mut conn = MySqlConnection::connect_with(&world.options(n, user, password))
        .await
        .map_err(|e| format!("connect to instance {n}: {e}"))?;
    let rows = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM app.ledger")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("instance {n}: count the ledger: {e}"));
    let _ = conn.close().await;
    rows.map(|r| u64::try_from(r).unwrap_or(0))
}

/// Writes one more row on `primary` (`payload` says why) and returns the row count there.
pub async fn write_row(world: &World, primary: u32, login: (&str, &str), payload: &str) -> u64 {
    let mut conn = MySqlConnection::connect_with(&world.options(primary, login.0, login.1))
        .await
        .expect("connect to the primary");
    exec(
        &mut conn,
        &format!(
            "INSERT INTO app.ledger (id, writer, at_us, payload) SELECT MAX(id) + 1, 0, 0, '{payload}' FROM app.ledger"
        ),
    )
    .await;
    let rows = scalar(&mut conn, "SELECT COUNT(*) FROM app.ledger").await;
    let _ = conn.close().await;
    rows.parse().expect("a row count")
}

/// In the middle of the rolling restart to the revision after `old_revision` (`before` is
/// the cluster when it was edited, instance 0 the primary): waits for the engine to restart
/// one replica, deletes the other replica's pod by hand (`kubectl delete`), and checks that
/// it is recreated on its own revision, not on the target, while the engine was still busy
/// with the first. Returns the deleted replica's ordinal.
pub async fn delete_replica_pod_mid_rollout(
    world: &World,
    before: &MySQLCluster,
    old_revision: u64,
    limit: Duration,
) -> u32 {
    let (restarting, deleted) = until(limit, "the first replica's restart", async || {
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
        Some(&hash_of(before, old_revision)),
        "instance {deleted} still runs the old revision"
    );
    world.log.say(
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
        revision_of(&at_recreation, deleted),
        old_revision,
        "instance {deleted} was assigned another revision outside the engine's restart"
    );
    assert_eq!(
        back.annotations().get(ANNOTATION_REVISION_HASH),
        Some(&hash_of(&at_recreation, old_revision)),
        "a pod deleted outside the engine comes back on its own revision, not the target's"
    );
    world.log.say(
        "test",
        format!("pod {} is back on revision {old_revision}", back.name_any()),
    );
    deleted
}

/// The order of a rollout that replaced every pod and switched the primary over from
/// `switchover.0` to `switchover.1` (`done` is the cluster once it finished; the clocks are
/// the test's start on both clocks and the rollout's start), from the kubelet's events since
/// the rollout started: every replica's pod ended before the switchover's fence, the old
/// primary's after the promotion; each instance's pod once, `deleted`'s twice (once by hand).
pub fn assert_restart_order(
    world: &World,
    done: &MySQLCluster,
    (clock, since): ((Instant, SystemTime), Instant),
    instances: u32,
    switchover: (u32, u32),
    deleted: Option<u32>,
) {
    // The engine's own record of the switchover, in milliseconds (the status' times are in
    // seconds).
    let recorded = done
        .status
        .as_ref()
        .and_then(|s| s.record.as_ref())
        .and_then(|r| r.last_switchover.clone())
        .expect("the record's last switchover");
    assert_eq!((recorded.from, recorded.to), switchover);
    let fenced_ms = i64::try_from(recorded.started.0).unwrap();
    let promoted_ms = i64::try_from(recorded.promoted.0).unwrap();
    let wall_ms = |at: Instant| {
        let t = clock.1 + at.saturating_duration_since(clock.0);
        i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
    };
    let mut terminated: Vec<(u32, i64)> = Vec::new();
    for e in world.kubelet().events() {
        if let EventKind::Terminating { .. } = e.kind
            && e.at >= since
            && let Some(n) = world
                .names
                .ordinal_of(e.pod.rsplit('/').next().unwrap_or(""))
        {
            terminated.push((n, wall_ms(e.at)));
        }
    }
    world.log.say("test", format!("pods terminated (ordinal, unix ms): {terminated:?}; fence at {fenced_ms}, promotion at {promoted_ms}"));
    for n in 0..instances {
        let times: Vec<i64> = terminated
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, t)| *t)
            .collect();
        let expected = if Some(n) == deleted { 2 } else { 1 };
        assert_eq!(
            times.len(),
            expected,
            "instance {n}'s pod terminations: {terminated:?}"
        );
        let last = *times.last().unwrap();
        if n == switchover.0 {
            assert!(
                last > promoted_ms,
                "the old primary {n} was replaced only after the promotion: {terminated:?}"
            );
        } else {
            assert!(
                last < fenced_ms,
                "replica {n} was replaced before the switchover: {terminated:?}"
            );
        }
    }
}

/// An online change survives a container restart: sets the dynamic `variable` to `value` in
/// the spec, waits for the online revision on every instance (set there, no restart), then
/// kills a replica's server container (SIGKILL) and checks that the kubelet restarted it in
/// the same pod and the server came back with the value (the agent renders my.cnf from the
/// online revision's ConfigMap at every start). Returns the replica.
pub async fn online_change_survives_restart(
    world: &World,
    (user, password): (&str, &str),
    instances: u32,
    primary: u32,
    (variable, value): (&str, &str),
    limit: Duration,
) -> u32 {
    let online_from = world
        .cluster()
        .await
        .status
        .and_then(|s| s.revisions)
        .and_then(|r| r.update)
        .expect("a target revision");
    world
        .edit(|s| {
            s.config.insert(variable.into(), value.into());
        })
        .await;
    world.log.say(
        "test",
        format!("{variable} = {value} (dynamic: set online)"),
    );
    until(limit, "the online change on every instance", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let target = s.revisions.as_ref().and_then(|r| r.update);
        let online = s
            .revisions
            .as_ref()
            .and_then(|r| r.history.iter().find(|e| Some(e.number) == target))
            .is_some_and(|e| e.online.is_some());
        let all = s.instances.len() == instances as usize
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
    })
    .await;
    let read = format!("SELECT @@GLOBAL.{variable}");
    let victim = (0..instances).find(|n| *n != primary).expect("a replica");
    let pod_before = world.pod(victim).await.expect("the replica's pod");
    for n in 0..instances {
        let mut conn = MySqlConnection::connect_with(&world.options(n, user, password))
            .await
            .expect("connect");
        assert_eq!(
            scalar(&mut conn, &read).await,
            value,
            "instance {n} set the online change"
        );
        let _ = conn.close().await;
    }
    let restarts_before = container_starts(world, victim);
    world
        .kubelet()
        .signal_container(
            NS,
            &world.names.pod(victim),
            "mysqld",
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the replica's container");
    world.log.say(
        "test",
        format!("SIGKILL to instance {victim}'s mysqld container"),
    );
    until(
        limit,
        "the killed container restarted and serving",
        async || {
            let started = container_starts(world, victim);
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
    let mut conn = MySqlConnection::connect_with(&world.options(victim, user, password))
        .await
        .expect("connect to the restarted replica");
    let after = scalar(&mut conn, &read).await;
    let _ = conn.close().await;
    assert_eq!(
        after, value,
        "instance {victim}: the online change survived the container's restart"
    );
    world.log.say(
        "test",
        format!("instance {victim} restarted with {variable} = {after}"),
    );
    victim
}

/// Waits for instance `n`'s pod (a new one: not `old_uid`) to be Ready, that is in the read
/// Service's endpoints, and checks the moment it first is: its agent runs a finished copy and
/// its server already holds at least the `rows` rows of the ledger written before (the copy's
/// data, not what replication may bring later). Returns the agent's status.
async fn ready_with_the_data(
    world: &World,
    n: u32,
    old_uid: Option<&str>,
    rows: u64,
    login: (&str, &str),
    limit: Duration,
) -> serde_json::Value {
    let what = format!("instance {n} ready (in the read Service)");
    let status = until(limit, &what, async || {
        let pod = world.pod(n).await.filter(|p| p.uid().as_deref() != old_uid);
        let agent = world.agent_status(n).await;
        if !pod.as_ref().is_some_and(switchyard_kubelet::pod_ready) {
            return Err(format!("not ready; agent {agent:?}"));
        }
        let a = agent.unwrap_or_else(|e| panic!("instance {n} ready, its agent: {e}"));
        assert_eq!(
            (a["phase"].as_str(), a["provisioning"].as_str()),
            (Some("running"), Some("done")),
            "instance {n} ready before its copy ran: {a:#}"
        );
        Ok(a)
    })
    .await;
    let held = ledger_rows(world, n, login).await;
    assert!(
        held.as_ref().is_ok_and(|held| *held >= rows),
        "instance {n} is in the read Service without the data: {held:?} rows of the {rows} written before"
    );
    status
}

/// The primary the cluster's status names now.
async fn current_primary(world: &World) -> Option<u32> {
    world.cluster().await.status.and_then(|s| s.current_primary)
}

/// Instance `n`'s volume is emptied and its pod killed and deleted at once (a lost node with
/// its local disk); returns the lost pod's uid.
async fn lose_volume_and_pod(world: &World, n: u32) -> Option<String> {
    let uid = world.pod(n).await.expect("the instance's pod").uid();
    world
        .kubelet()
        .volume_loss(NS, &world.names.claim(n))
        .expect("lose the volume");
    world
        .kubelet()
        .node_loss(NS, &world.names.pod(n))
        .await
        .expect("lose the pod");
    world
        .log
        .say("test", format!("instance {n}'s volume and pod lost"));
    uid
}

/// A replica's volume is lost with its pod (a lost local disk): the operator recreates the
/// pod, its agent finds no data and starts nothing until the operator names a donor, and the
/// copy is in the read Service only once it has every row, replicates, and is never
/// writable (a monitor polls every instance throughout).
pub async fn lose_replica_volume(
    world: &World,
    creds: &ClusterCredentials,
    (instances, primary, lost): (u32, u32, u32),
    flavor: Flavor,
    limit: Duration,
) {
    assert_ne!(lost, primary, "a replica's volume");
    let login = (
        creds.operator_user.as_str(),
        creds.operator_password.as_str(),
    );
    let rows = write_row(world, primary, login, "before the loss").await;
    let monitor = WritableMonitor::start(world, instances, creds);
    let lost_uid = lose_volume_and_pod(world, lost).await;
    let copied = ready_with_the_data(world, lost, lost_uid.as_deref(), rows, login, limit).await;
    let from = donor_of(world, lost, &copied);
    assert!(
        (0..instances)
            .filter(|n| *n != lost)
            .any(|n| from.starts_with(&world.names.pod_host(n))),
        "instance {lost} copied from a healthy instance, not {from:?}: {copied:#}"
    );
    let mut conn = MySqlConnection::connect_with(&world.options(lost, login.0, login.1))
        .await
        .expect("connect to the copy");
    assert_eq!(
        scalar(&mut conn, "SELECT @@read_only").await,
        "1",
        "the copy is read-only"
    );
    replicating(&mut conn, flavor, "the copy replicates").await;
    let _ = conn.close().await;
    assert_eq!(
        ledger_rows(world, lost, login).await,
        Ok(rows),
        "the copy has every row"
    );
    assert_eq!(
        current_primary(world).await,
        Some(primary),
        "the primary did not move"
    );
    let writers = monitor.stop().await;
    assert_eq!(
        writers.writable.get(&lost).copied().unwrap_or(0),
        0,
        "the re-provisioned instance {lost} was never writable: {writers:?}"
    );
    assert!(writers.several.is_empty(), "{writers:?}");
    world.log.say(
        "test",
        format!("instance {lost} copied from {from}, read-only, replicating, {rows} rows"),
    );
}

/// Writes a row on `primary`, rotates its binary log and purges every earlier one, and
/// checks that the rows written so far are in no binary log left: the first file is gone,
/// and (MariaDB) the oldest file left starts after a GTID position that is not empty, or
/// (MySQL) every transaction executed before the rotation is in `gtid_purged`. Returns the
/// row count.
pub async fn purge_binary_logs(
    world: &World,
    primary: u32,
    login: (&str, &str),
    flavor: Flavor,
) -> u64 {
    write_row(world, primary, login, "before the purge").await;
    let mut conn = MySqlConnection::connect_with(&world.options(primary, login.0, login.1))
        .await
        .expect("connect to the primary");
    let executed = match flavor {
        Flavor::Mysql => Some(scalar(&mut conn, "SELECT @@GLOBAL.gtid_executed").await),
        Flavor::Mariadb => None,
    };
    let first = scalar(&mut conn, "SHOW BINARY LOGS").await;
    exec(&mut conn, "FLUSH BINARY LOGS").await;
    // The newest file is the last one listed (MySQL 9.7 has no SHOW MASTER STATUS).
    let current = {
        use sqlx::Row as _;
        let listed = sqlx::raw_sql("SHOW BINARY LOGS")
            .fetch_all(&mut conn)
            .await
            .expect("SHOW BINARY LOGS");
        let last = listed.last().expect("a binary log");
        last.try_get::<String, _>(0)
            .unwrap_or_else(|_| String::from_utf8_lossy(&last.get::<Vec<u8>, _>(0)).into_owned())
    };
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
    let purged = match executed {
        None => {
            let before_oldest =
                scalar(&mut conn, &format!("SELECT BINLOG_GTID_POS('{oldest}', 4)")).await;
            assert!(
                !before_oldest.is_empty(),
                "the oldest binary log {oldest} starts after transactions it does not hold"
            );
            before_oldest
        }
        Some(executed) => {
            let purged = scalar(&mut conn, "SELECT @@GLOBAL.gtid_purged").await;
            let subset = scalar(
                &mut conn,
                &format!("SELECT GTID_SUBSET('{executed}', @@GLOBAL.gtid_purged)"),
            )
            .await;
            assert_eq!(
                subset, "1",
                "every transaction before the rotation ({executed}) is purged: gtid_purged is {purged}"
            );
            purged
        }
    };
    let _ = conn.close().await;
    let rows = write_row(world, primary, login, "after the purge").await;
    world.log.say(
        "test",
        format!(
            "instance {primary}'s binary logs before {oldest} purged (first was {first}); the \
             transactions {} are in no binary log; {rows} rows",
            purged.replace('\n', " ")
        ),
    );
    rows
}

/// Scales `instances` up by `added` after [`purge_binary_logs`] (which gave `rows`): each
/// new instance is copied from a member of the cluster, is in the read Service only once its
/// copy runs with the rows written before, replicates from `primary`, read-only, and applies
/// the primary's next write; a monitor sees no second writable instance meanwhile.
pub async fn scale_up(
    world: &World,
    creds: &ClusterCredentials,
    (instances, added, primary): (u32, u32, u32),
    rows: u64,
    flavor: Flavor,
    limit: Duration,
) {
    let login = (
        creds.operator_user.as_str(),
        creds.operator_password.as_str(),
    );
    let monitor = WritableMonitor::start(world, instances + added, creds);
    world
        .edit(|s| s.replicas = i32::try_from(instances + added).unwrap())
        .await;
    world
        .log
        .say("test", format!("scaling to {}", instances + added));
    for new in instances..instances + added {
        let joined = ready_with_the_data(world, new, None, rows, login, limit).await;
        let from = donor_of(world, new, &joined);
        assert!(
            (0..new).any(|n| from.starts_with(&world.names.pod_host(n))),
            "instance {new} copied from an instance of the cluster, not {from:?}"
        );
        let mut conn = MySqlConnection::connect_with(&world.options(new, login.0, login.1))
            .await
            .expect("connect to the new instance");
        let t = replicating(&mut conn, flavor, "the new instance replicates").await;
        assert!(
            t.source.starts_with(&world.names.pod(primary)),
            "the new instance replicates from the primary, not {}",
            t.source
        );
        assert_eq!(scalar(&mut conn, "SELECT @@read_only").await, "1");
        let _ = conn.close().await;
        // And it applies what the primary writes now.
        let now = write_row(world, primary, login, "after the scale-up").await;
        until(
            Duration::from_secs(30),
            "the new instance replicating the primary's next write",
            async || match ledger_rows(world, new, login).await? {
                n if n == now => Ok(()),
                n => Err(format!("{n} rows of {now}")),
            },
        )
        .await;
        world.log.say(
            "test",
            format!("instance {new} copied from {from}, replicating, {now} rows"),
        );
    }
    let writers = monitor.stop().await;
    assert!(
        writers.several.is_empty(),
        "two writable instances at once: {writers:?}"
    );
    for new in instances..instances + added {
        assert_eq!(
            writers.writable.get(&new).copied().unwrap_or(0),
            0,
            "the new instance {new} was never writable: {writers:?}"
        );
    }
}

/// The primary's volume is lost with its pod, automatic failover turned off first (with it
/// on, the primary that does not come back is failed over like a lost node): the recreated
/// pod's `instance.json` declares neither bootstrap nor a donor, so its agent initializes
/// nothing and starts no server; the cluster halts naming it (`PrimaryDataLost`), and no
/// instance is writable from the loss on (nothing fails over, and an empty primary is never
/// made writable).
pub async fn lose_primary_volume(
    world: &World,
    creds: &ClusterCredentials,
    (instances, primary): (u32, u32),
    limit: Duration,
) {
    world
        .edit(|s| {
            let mut f = s.failover.clone().unwrap_or_default();
            f.automatic = false;
            s.failover = Some(f);
        })
        .await;
    let lost_uid = lose_volume_and_pod(world, primary).await;
    let monitor = WritableMonitor::start(world, instances, creds);
    let configs: Api<ConfigMap> = Api::namespaced(world.api.clone(), NS);
    let halted = until(limit, "the emptied primary reported, halted", async || {
        match world.pod(primary).await {
            Some(p) if p.uid() != lost_uid => {}
            _ => return Err("no new pod yet".into()),
        }
        let a = world.agent_status(primary).await?;
        assert!(
            a["data_dir_initialized"] != true
                && !["bootstrapping", "starting", "running"]
                    .contains(&a["phase"].as_str().unwrap_or("")),
            "the emptied primary's agent made a data directory or started a server: {a:#}"
        );
        if a["phase"] != "uninitialized" {
            return Err(format!("agent: {a}"));
        }
        let c = world.cluster().await;
        let halted = c.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|x| x.type_ == "Halted" && x.status == "True")
                .map(|x| (x.reason.clone(), x.message.clone()))
        });
        // The halt says PrimaryDown first, until the operator has read the agent's
        // report of an empty data directory (a reconcile later).
        match halted {
            Some(h) if h.0 == "PrimaryDataLost" => Ok((a, h)),
            Some(h) => Err(format!(
                "halted {h:?}, not yet for the lost data; agent {a}"
            )),
            None => Err(format!("not halted; agent {a}")),
        }
    })
    .await;
    let (agent, (reason, message)) = halted;
    assert_eq!(
        (
            agent["data_dir_initialized"].as_bool(),
            agent["server_pid"].as_u64()
        ),
        (Some(false), None),
        "the emptied primary's agent initializes nothing, runs no server: {agent:#}"
    );
    assert_eq!(reason, "PrimaryDataLost", "{message}");
    assert!(
        message.contains(&format!("instance {primary}")),
        "{message}"
    );
    let config = configs
        .get(&world.names.config_map(primary))
        .await
        .expect("the instance's ConfigMap");
    let instance: InstanceConfig = serde_json::from_str(
        config
            .data
            .as_ref()
            .and_then(|d| d.get(INSTANCE_KEY))
            .expect("instance.json"),
    )
    .expect("instance.json");
    assert!(
        !instance.bootstrap && instance.provision_from.is_none(),
        "the emptied primary is told neither to initialize nor to copy: {instance:?}"
    );
    assert_eq!(current_primary(world).await, Some(primary), "no failover");
    let writers = monitor.stop().await;
    assert!(
        writers.passes > 0 && writers.writable.is_empty(),
        "no instance writable after the primary's data was lost: {writers:?}"
    );
    world.log.say(
        "test",
        format!("the emptied primary {primary} initializes nothing; halted: {message}"),
    );
}

/// What both runs do after their rolling restart (the load stopped, `primary` the primary of
/// `instances`): the dynamic change `online` survives a replica's container restart
/// ([`online_change_survives_restart`]), that replica's volume is lost
/// ([`lose_replica_volume`]), then the primary's binary logs are purged
/// ([`purge_binary_logs`]) and the cluster scaled up by `added` ([`scale_up`]). `each_copy`
/// runs the flavor's own checks on every instance copied: the lost one, then the new ones.
pub async fn after_the_rollout(
    world: &World,
    creds: &ClusterCredentials,
    (instances, added, primary): (u32, u32, u32),
    flavor: Flavor,
    online: (&str, &str),
    limit: Duration,
    each_copy: impl AsyncFn(u32),
) {
    let login = (
        creds.operator_user.as_str(),
        creds.operator_password.as_str(),
    );
    let victim =
        online_change_survives_restart(world, login, instances, primary, online, limit).await;
    lose_replica_volume(world, creds, (instances, primary, victim), flavor, limit).await;
    each_copy(victim).await;
    let rows = purge_binary_logs(world, primary, login, flavor).await;
    scale_up(
        world,
        creds,
        (instances, added, primary),
        rows,
        flavor,
        limit,
    )
    .await;
    for n in instances..instances + added {
        each_copy(n).await;
    }
}
