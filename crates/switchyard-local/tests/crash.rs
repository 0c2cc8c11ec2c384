//! A MariaDB 10.5 replica whose binary log is ahead of its `gtid_slave_pos` when it crashes
//! (what a `kill -9` between a replicated DDL's binary-log write and its slave-position update
//! leaves behind) comes back through the supervisor replicating, not stopped with error 1950;
//! and a crashed replica is never started on another version.

use std::time::Duration;

use sqlx::{Connection as _, Row as _};
use switchyard_local::{ClusterSpec, LocalCluster, LocalRuntime};
use switchyard_plan::ClusterRuntime as _;
use switchyard_plan::engine::RuntimeErrorKind;
use switchyard_testbed::ServerKind;

/// How long the replica may take to come back and catch up.
const DEADLINE: Duration = Duration::from_secs(60);

async fn root_string(cluster: &LocalCluster, ordinal: usize, sql: &str) -> String {
    let mut conn = cluster.testbed().instances()[ordinal]
        .connect_root()
        .await
        .expect("connect as root");
    let value: String = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql} on instance {ordinal}: {e}"))
        .get(0);
    let _ = conn.close().await;
    value
}

async fn root_exec(cluster: &LocalCluster, ordinal: usize, sql: &str) {
    let mut conn = cluster.testbed().instances()[ordinal]
        .connect_root()
        .await
        .expect("connect as root");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql} on instance {ordinal}: {e}"));
    let _ = conn.close().await;
}

/// Waits until instance 1 has binary-logged everything the primary has, replicating without
/// an error; panics with the replica's last error at the deadline.
async fn wait_caught_up(cluster: &LocalCluster) {
    let target = root_string(cluster, 0, "SELECT @@GLOBAL.gtid_binlog_pos").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last = String::new();
    loop {
        if cluster.testbed().instances()[1].is_running()
            && let Ok(h) = cluster.handle(1)
            && let Ok(o) = h.observe().await
        {
            let caught_up = root_string(cluster, 1, "SELECT @@GLOBAL.gtid_slave_pos").await;
            match &o.replication {
                Some(r) if r.is_running() && caught_up == target => return,
                Some(r) => {
                    last = format!(
                        "slave_pos {caught_up}, target {target}, sql error {} {:?}, io error {}",
                        r.last_sql_errno, r.last_sql_error, r.last_io_errno
                    );
                }
                None => last = "not a replica".into(),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance 1 did not catch up with the primary: {last}; timeline: {:#?}",
            cluster.timeline().events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_binlog_is_ahead_of_its_slave_pos_resumes_after_a_crash() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb105, 2))
        .await
        .expect("start the cluster");
    root_exec(
        &cluster,
        0,
        "CREATE TABLE app.crash (id INT PRIMARY KEY); INSERT INTO app.crash VALUES (1)",
    )
    .await;
    wait_caught_up(&cluster).await;

    // The state a crash between the binary-log write of the last replicated transaction and
    // its gtid_slave_pos update leaves: the binary log holds 0-P-N, gtid_slave_pos says N-1.
    let last = root_string(&cluster, 1, "SELECT @@GLOBAL.gtid_slave_pos").await;
    let (head, seq) = last
        .rsplit_once('-')
        .expect("a single-domain GTID position");
    let seq: u64 = seq.parse().expect("a sequence number");
    let behind = format!("{head}-{}", seq - 1);
    root_exec(
        &cluster,
        1,
        &format!("STOP SLAVE; SET GLOBAL gtid_slave_pos = '{behind}'"),
    )
    .await;
    assert_eq!(
        root_string(&cluster, 1, "SELECT @@GLOBAL.gtid_binlog_pos").await,
        last,
        "the replica's binary log holds the last transaction"
    );
    cluster.testbed().instances()[1]
        .kill9()
        .expect("kill the replica");

    // The supervisor starts it again; it must replicate what the primary writes next.
    root_exec(&cluster, 0, "INSERT INTO app.crash VALUES (2)").await;
    wait_caught_up(&cluster).await;
    assert_eq!(
        root_string(&cluster, 1, "SELECT CAST(COUNT(*) AS CHAR) FROM app.crash").await,
        "2"
    );
}

/// A crashed replica is never started on another version: the upgrade's restart fails,
/// transiently, naming the crash, and leaves the instance down on its own version for the
/// engine to recover first (MariaDB refuses an upgrade of a data directory that was not shut
/// down cleanly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_is_not_restarted_onto_a_new_version() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb105, 2))
        .await
        .expect("start the cluster");
    let target = cluster
        .upgrade_target(ServerKind::Mariadb1011)
        .await
        .expect("the 10.11 target");
    cluster.stop_supervisor().await;
    let replica = &cluster.testbed().instances()[1];
    replica.kill9().expect("kill the replica");
    let runtime = LocalRuntime::new(&cluster);
    let err = runtime
        .restart(1, &target.revision, target.version, true)
        .await
        .expect_err("a crashed instance is not upgraded");
    assert_eq!(err.kind, RuntimeErrorKind::Transient, "{err}");
    assert!(err.message.contains("crashed"), "{err}");
    assert!(!replica.is_running(), "nothing was started");
    assert_eq!(
        replica.kind(),
        ServerKind::Mariadb105,
        "still on its version"
    );
}
