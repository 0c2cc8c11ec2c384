//! End to end on Kubernetes, simulated: automatic failover under load of a MariaDB 10.11 and a
//! MySQL 9.7 cluster whose primary's node is lost or whose primary's pod is cut off the
//! network, and of a MariaDB one whose primary's server is killed (MySQL's takes over a minute
//! of CI, mostly its set-up: run it with `fails_over(ServerKind::Mysql97, Fault::PodKill)`).
//! One body ([`fails_over`]) for each flavor and fault:
//!
//! 1. A `MySQLCluster` of 3 instances with the defaults: lossless semi-synchronous
//!    replication (`AFTER_SYNC`, never falling back), a 4 s replica network timeout, automatic
//!    failover after 3 s. The primary waits for acknowledgements, the replicas acknowledge.
//! 2. Two writers go through the primary Service (a router following the pod labelled
//!    primary), a monitor polls `@@read_only` on every pod.
//! 3. The fault, held until the test ends it:
//!    - pod killed: the primary's `mysqld` is killed with SIGKILL, as the kernel's OOM killer
//!      kills the largest process of a container over its memory limit: the agent sees its
//!      server gone and exits, the container ends, and the kubelet restarts it in the same pod
//!      (a `kubectl delete pod --force --grace-period=0` is the node-loss case: the pod is
//!      gone at once). The kubelet holds the restart (a long `CrashLoopBackOff`) until the
//!      failover is done, so the old primary comes back after it, not within the detection
//!      window (where it would stay primary, not failed over);
//!    - node loss: the primary's processes are killed at once and its pod deleted without a
//!      grace period; the node stays lost (its pod, recreated by the operator, stays pending);
//!    - partition: the primary's pod is cut off the pod network (the host end of its veth pair
//!      down): the operator, the replicas and the clients lose it, silently, while its server
//!      keeps running, writable, its commits waiting for acknowledgements that cannot come.
//!      The test proves the cut: a TCP connection to the pod's server does not open, right
//!      after the cut and again right before the heal, and its `mysqld` is the same process.
//! 4. The operator fails over to a replica, lossless, and moves the primary label (the old
//!    pod's first): writes resume on the new primary through the primary Service.
//! 5. The fault ends (the container restarts; the node comes back; the partition heals): the
//!    old primary, which starts read-only (pod killed, node loss; MariaDB's also waiting for
//!    semi-synchronous acknowledgements, as the agent starts a primary: its my.cnf says so)
//!    or comes back still writable but unable to acknowledge a
//!    commit (partition), is fenced (read-only) and either rejoined as a replica of the new
//!    primary or quarantined with the `Quarantined` condition (it may hold commits no replica
//!    acknowledged); it is never labelled primary nor able to acknowledge a write again.
//! 6. No acknowledged write is lost (every one on every instance but a quarantined one, all on
//!    the new primary), no two servers acknowledged writes at once, the monitor never saw two
//!    instances that could acknowledge a commit; every pod stops cleanly.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_failover -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{AppLoad, Log, World, assert_nothing_lost_on, scalar, start_app_load, until};
use kube::ResourceExt as _;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnection;
use switchyard_kube::crd::MySQLClusterSpec;
use switchyard_testbed::{Flavor, ServerKind};

const INSTANCES: u32 = 3;
/// From nothing to Ready (three agent installs, a bootstrap, two provisionings).
const READY_WITHIN: Duration = Duration::from_secs(180);
/// From the fault to a new primary (detection 3 s, the failover's steps).
const FAILOVER_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_primary_killed_fails_over_and_comes_back_fenced() {
    fails_over(ServerKind::Mariadb1011, Fault::PodKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_primary_node_lost_fails_over_without_losing_a_write() {
    fails_over(ServerKind::Mariadb1011, Fault::NodeLoss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_primary_partitioned_fails_over_and_comes_back_fenced() {
    fails_over(ServerKind::Mariadb1011, Fault::Partition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_primary_node_lost_fails_over_without_losing_a_write() {
    fails_over(ServerKind::Mysql97, Fault::NodeLoss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_primary_partitioned_fails_over_and_comes_back_fenced() {
    fails_over(ServerKind::Mysql97, Fault::Partition).await;
}

/// What happens to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Its server killed with SIGKILL (an OOM kill); the kubelet restarts its container after
    /// the failover.
    PodKill,
    /// Its node is lost (processes killed, pod deleted with no grace), and comes back.
    NodeLoss,
    /// Its pod is cut off the pod network, and the cut heals.
    Partition,
}

/// The words a flavor names the same things with.
struct Names {
    flavor: &'static str,
    /// `master` (MariaDB) or `source` (MySQL), in the semi-sync variables' names.
    source: &'static str,
    /// `slave` or `replica`.
    replica: &'static str,
    /// The table of the server's status variables.
    status: &'static str,
}

impl Names {
    fn of(flavor: Flavor) -> Names {
        let (flavor, source, replica, status) = match flavor {
            Flavor::Mariadb => ("mariadb", "master", "slave", "information_schema"),
            _ => ("mysql", "source", "replica", "performance_schema"),
        };
        Names {
            flavor,
            source,
            replica,
            status,
        }
    }

    /// The query of the primary's count of semi-synchronous replicas.
    fn clients(&self) -> String {
        format!(
            "SELECT VARIABLE_VALUE FROM {}.global_status \
             WHERE VARIABLE_NAME = 'Rpl_semi_sync_{}_clients'",
            self.status, self.source
        )
    }

    /// `SHOW SLAVE STATUS` or `SHOW REPLICA STATUS`, and its receiver, applier and source
    /// host columns.
    fn replica_status(&self) -> [String; 4] {
        let title = |word: &str| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        };
        let (source, replica) = (title(self.source), title(self.replica));
        [
            format!("SHOW {} STATUS", self.replica.to_ascii_uppercase()),
            format!("{replica}_IO_Running"),
            format!("{replica}_SQL_Running"),
            format!("{source}_Host"),
        ]
    }
}

/// The whole run for one server kind and one fault (see the module's doc).
async fn fails_over(kind: ServerKind, fault: Fault) {
    let _slots = switchyard_testbed::slots::acquire(INSTANCES as usize)
        .await
        .expect("server slots");
    let names = Names::of(kind.flavor());
    let log = Log::new(&format!(
        "kube-e2e-failover-{}-{}.log",
        names.flavor,
        match fault {
            Fault::PodKill => "pod-kill",
            Fault::NodeLoss => "node-loss",
            Fault::Partition => "partition",
        }
    ));
    let started = Instant::now();
    let version = common::server_version(kind).await;
    let mut world = World::start(log.clone()).await;

    // 1. A cluster with the defaults.
    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": names.flavor,
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
    log.say("test", format!("Ready ({} {version})", names.flavor));
    let creds = world.credentials().await;
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());

    // Lossless semi-synchronous replication: the primary waits (after the sync, even with no
    // replica, never falling back), both replicas acknowledge, and the replicas give a silent
    // source up after 4 s.
    let mut primary = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("the operator's account on the primary");
    let (src, rep) = (names.source, names.replica);
    for (sql, want) in [
        ("SELECT @@read_only".to_owned(), "0"),
        (format!("SELECT @@rpl_semi_sync_{src}_enabled"), "1"),
        (
            format!("SELECT @@rpl_semi_sync_{src}_wait_point"),
            "AFTER_SYNC",
        ),
        (format!("SELECT @@rpl_semi_sync_{src}_wait_no_{rep}"), "1"),
        (
            format!("SELECT @@rpl_semi_sync_{src}_timeout >= 3600000"),
            "1",
        ),
    ] {
        assert_eq!(scalar(&mut primary, &sql).await, want, "primary: {sql}");
    }
    for n in 1..INSTANCES {
        let mut conn = MySqlConnection::connect_with(&world.options(n, &op_user, &op_pw))
            .await
            .expect("the operator's account on a replica");
        for (sql, want) in [
            ("SELECT @@read_only".to_owned(), "1"),
            (format!("SELECT @@rpl_semi_sync_{rep}_enabled"), "1"),
            (format!("SELECT @@rpl_semi_sync_{src}_enabled"), "0"),
            (format!("SELECT @@{rep}_net_timeout"), "4"),
        ] {
            assert_eq!(scalar(&mut conn, &sql).await, want, "instance {n}: {sql}");
        }
        let _ = conn.close().await;
    }
    // The replicas register as semi-synchronous; the engine records the wait count.
    until(
        Duration::from_secs(30),
        "both replicas acknowledging, recorded",
        async || {
            let clients = scalar(&mut primary, &names.clients()).await;
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

    // 3. The fault, held until step 5.
    let old_pod = world.names.pod(0);
    let old_uid = world.pod(0).await.and_then(|p| p.uid());
    let old_mysqld = world
        .kubelet()
        .container_pid(common::NS, &old_pod, "mysqld")
        .expect("the primary's mysqld runs");
    let fault_at = Instant::now();
    match fault {
        Fault::PodKill => {
            world.kubelet().hold(common::NS, &old_pod);
            let server = server_process(old_mysqld).expect("the primary's server process");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(server).expect("a pid")),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill the primary's server");
        }
        Fault::NodeLoss => {
            world.kubelet().hold(common::NS, &old_pod);
            world
                .kubelet()
                .node_loss(common::NS, &old_pod)
                .await
                .expect("lose the primary's node");
        }
        Fault::Partition => {
            world
                .kubelet()
                .partition(common::NS, &old_pod)
                .await
                .expect("cut the primary's pod off the network");
            assert_cut(world.server(0), "right after the cut").await;
        }
    }
    log.say(
        "test",
        format!(
            "{fault:?} of the primary ({} writes acknowledged)",
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
            "failed over 0 -> {new_primary} {:.1} s after the fault (failing since {} ms, \
             started {} ms, promoted {} ms), lossless {}",
            fault_at.elapsed().as_secs_f64(),
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
    common::writes_resume(&load, 100).await;
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
    // Lossless again: the new primary waits for acknowledgements, and the replica left
    // gives them.
    let mut conn = MySqlConnection::connect_with(&world.options(new_primary, &op_user, &op_pw))
        .await
        .expect("the operator's account on the new primary");
    let enabled = format!("SELECT @@rpl_semi_sync_{src}_enabled");
    until(
        Duration::from_secs(30),
        "the new primary semi-synchronous, with a replica acknowledging",
        async || {
            let on = scalar(&mut conn, &enabled).await;
            let clients = scalar(&mut conn, &names.clients()).await;
            if on == "1" && clients.parse::<u32>().is_ok_and(|c| c >= 1) {
                Ok(())
            } else {
                Err(format!("enabled {on}, {clients} semi-sync clients"))
            }
        },
    )
    .await;
    let _ = conn.close().await;

    // 5. The fault ends: the old primary is fenced, then rejoined or quarantined with a
    //    condition, never made writable nor labelled primary.
    match fault {
        Fault::PodKill | Fault::NodeLoss => world.kubelet().release(common::NS, &old_pod),
        Fault::Partition => {
            assert_cut(world.server(0), "right before the heal").await;
            assert_eq!(
                world
                    .kubelet()
                    .container_pid(common::NS, &old_pod, "mysqld"),
                Some(old_mysqld),
                "the partitioned primary's mysqld ran through the cut, not restarted"
            );
            world
                .kubelet()
                .heal(common::NS, &old_pod)
                .await
                .expect("heal the partition");
        }
    }
    log.say(
        "test",
        format!(
            "the fault ends, {:.1} s after it began",
            fault_at.elapsed().as_secs_f64()
        ),
    );
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
            // A lost node's pod comes back as a new pod; a killed or partitioned one is the
            // same pod.
            if (pod.uid() == old_uid) != (fault != Fault::NodeLoss) {
                return Err(format!("pod uid {:?} (before: {old_uid:?})", pod.uid()));
            }
            let mut conn = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
                .await
                .map_err(|e| e.to_string())?;
            let threads = replica_threads(&mut conn, &names).await;
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
    if fault == Fault::PodKill {
        // Its container was restarted, and its server (a MariaDB one) started waiting for
        // acknowledgements: a privileged client connected to it directly before the fence
        // could not have had a commit acknowledged.
        let restarts = world
            .pod(0)
            .await
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().find(|c| c.name == "mysqld"))
            .map(|c| c.restart_count);
        assert!(
            restarts.is_some_and(|r| r >= 1),
            "the kubelet restarted the killed primary's container: {restarts:?}"
        );
        // The my.cnf its server started with, this time (rendered by the agent at each start).
        let agent = world
            .kubelet()
            .container_pid(common::NS, &old_pod, "mysqld")
            .expect("the old primary's container runs");
        let path = format!(
            "/proc/{agent}/root{}/my.cnf",
            switchyard_kube::agent::RUN_DIR
        );
        let cnf = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let source_on = cnf.lines().any(|l| l.trim() == SOURCE_ON_LINE);
        assert_eq!(
            source_on,
            kind.flavor() == Flavor::Mariadb,
            "the old primary started again with the source side of semi-sync on (MariaDB \
             only): {cnf}"
        );
    }

    // 6. The verdict.
    let report = load.stop().await;
    let writers = monitor.stop().await;
    service.assert_moved(0, new_primary);
    if let (Some(first), Some(last)) = (writers.blocked.first(), writers.blocked.last()) {
        log.say(
            "test",
            format!(
                "read_only off but unable to acknowledge, beside the writer: {} passes, {first:?} to {last:?}",
                writers.blocked.len()
            ),
        );
    }
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
    log.say(
        "test",
        format!(
            "{} {fault:?}: {:.1} s in all",
            names.flavor,
            started.elapsed().as_secs_f64()
        ),
    );
}

/// The line of an agent-rendered my.cnf that starts the server with the source side of
/// semi-sync on (`switchyard_agent::semisync`).
const SOURCE_ON_LINE: &str = "rpl-semi-sync-master-enabled = ON";

/// The host pid of the database server the agent `agent` (a container's PID 1) runs: its
/// child `mysqld` or `mariadbd`.
fn server_process(agent: u32) -> Option<u32> {
    let parent = format!("PPid:\t{agent}\n");
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let name = status
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("Name:"))
                .map(str::trim)
                .unwrap_or_default();
            status.contains(&parent) && matches!(name, "mysqld" | "mariadbd")
        })
}

/// Fails unless a TCP connection to `server` does not open within a second: the cut holds
/// (`when`).
async fn assert_cut(server: SocketAddr, when: &str) {
    let attempt = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(server),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "the partitioned primary's server {server} answered a connection {when}"
    );
}

/// A replica's receiver and applier states and its source's host, when a source is
/// configured.
async fn replica_threads(
    conn: &mut MySqlConnection,
    names: &Names,
) -> Option<(String, String, String)> {
    use sqlx::Row as _;
    let [show, io, sql, host] = names.replica_status();
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(show))
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
    Some((text(&io), text(&sql), text(&host)))
}
