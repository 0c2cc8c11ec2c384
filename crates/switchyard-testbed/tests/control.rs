//! Per-instance control on real servers: kill -9 and start again (committed
//! data kept, back read-only for every client, replication resumes), pause and resume, clean
//! shutdown and a restart that leaves replication stopped
//! (skip-replica-start).

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use sqlx::{MySqlConnection, Row as _};
use switchyard_testbed::{Cluster, Flavor, Instance, ServerKind, replication, wait_for};

use common::assert_gone;

async fn count(conn: &mut MySqlConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM app.d")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn wait_count(instance: &Instance, cluster: &Cluster, expected: i64) {
    let mut conn = instance
        .connect(&cluster.credentials().operator)
        .await
        .unwrap();
    wait_for(Duration::from_secs(60), async || {
        (count(&mut conn).await == expected).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{} never had {expected} rows: {e}", instance.name()));
}

fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.trim_start().chars().next().unwrap()
}

async fn replication_running(replica: &Instance) -> (String, String) {
    let mut conn = replica.connect_root().await.unwrap();
    let (sql, io, sql_col) = match replica.kind().flavor() {
        Flavor::Mariadb => ("SHOW SLAVE STATUS", "Slave_IO_Running", "Slave_SQL_Running"),
        Flavor::Mysql => (
            "SHOW REPLICA STATUS",
            "Replica_IO_Running",
            "Replica_SQL_Running",
        ),
    };
    let row = sqlx::raw_sql(sql).fetch_one(&mut conn).await.unwrap();
    let get = |c: &str| {
        row.try_get::<String, _>(c)
            .or_else(|_| {
                row.try_get::<Vec<u8>, _>(c)
                    .map(|b| String::from_utf8(b).unwrap())
            })
            .unwrap()
    };
    (get(io), get(sql_col))
}

async fn exercise(kind: ServerKind) {
    let cluster = replication(kind, 2).await.unwrap();
    let (primary, replica) = (cluster.primary(), &cluster.replicas()[0]);
    let creds = cluster.credentials();
    let mut op = primary.connect(&creds.operator).await.unwrap();
    sqlx::raw_sql("CREATE TABLE app.d (id INT PRIMARY KEY)")
        .execute(&mut op)
        .await
        .unwrap();
    drop(op);
    let mut app = primary.connect(&creds.application).await.unwrap();
    for id in 1..=50 {
        sqlx::query("INSERT INTO app.d VALUES (?)")
            .bind(id)
            .execute(&mut app)
            .await
            .unwrap();
    }
    drop(app);

    // kill -9: the process is gone, committed rows survive crash recovery,
    // the restarted server is read-only, replication resumes by itself.
    let old_pid = primary.pid().unwrap();
    primary.kill9().unwrap();
    assert!(!primary.is_running());
    assert_eq!(primary.last_exit().unwrap().signal(), Some(9));
    assert_gone(old_pid);
    assert!(primary.connect(&creds.operator).await.is_err());
    primary.start().await.unwrap();
    assert_ne!(primary.pid(), Some(old_pid));
    let mut op = primary.connect(&creds.operator).await.unwrap();
    assert_eq!(count(&mut op).await, 50);
    let ro: i64 = sqlx::query_scalar("SELECT @@GLOBAL.read_only")
        .fetch_one(&mut op)
        .await
        .unwrap();
    assert_eq!(ro, 1, "a restarted instance must come back read-only");
    if kind.flavor() == Flavor::Mysql {
        // On MySQL read_only lets CONNECTION_ADMIN holders write: the configuration also
        // starts it with super_read_only, so a privileged client is refused too.
        let mut admin = primary.connect(&creds.privileged).await.unwrap();
        let refused = sqlx::raw_sql("INSERT INTO app.d VALUES (1000)")
            .execute(&mut admin)
            .await
            .expect_err("a privileged write on a restarted instance");
        assert!(refused.to_string().contains("super-read-only"), "{refused}");
        drop(admin);
    }
    primary.set_read_only(false).await.unwrap();
    sqlx::raw_sql("INSERT INTO app.d VALUES (51)")
        .execute(&mut op)
        .await
        .unwrap();
    wait_count(replica, &cluster, 51).await;

    // Pause: the process is stopped and does not answer; resume: it does.
    let pid = replica.pid().unwrap();
    replica.pause().unwrap();
    assert!(replica.is_paused());
    assert_eq!(process_state(pid), 'T');
    let attempt =
        tokio::time::timeout(Duration::from_millis(500), replica.connect(&creds.operator)).await;
    assert!(attempt.is_err(), "a paused server answered");
    replica.resume().unwrap();
    assert!(!replica.is_paused());
    assert_ne!(process_state(pid), 'T');
    wait_count(replica, &cluster, 51).await;

    // Clean shutdown: exit status 0; after a start replication stays
    // stopped (skip-replica-start) until started.
    replica.shutdown_clean().await.unwrap();
    assert!(replica.last_exit().unwrap().success());
    assert_gone(pid);
    sqlx::raw_sql("INSERT INTO app.d VALUES (52)")
        .execute(&mut op)
        .await
        .unwrap();
    replica.start().await.unwrap();
    assert_eq!(
        replication_running(replica).await,
        ("No".to_string(), "No".to_string())
    );
    let start = match kind.flavor() {
        Flavor::Mariadb => "START SLAVE",
        Flavor::Mysql => "START REPLICA",
    };
    let mut root = replica.connect_root().await.unwrap();
    sqlx::raw_sql(start).execute(&mut root).await.unwrap();
    wait_count(replica, &cluster, 52).await;

    let pids: Vec<u32> = cluster
        .instances()
        .iter()
        .filter_map(Instance::pid)
        .collect();
    assert_eq!(pids.len(), 2);
    drop(cluster);
    for pid in pids {
        assert_gone(pid);
    }
}

#[tokio::test]
async fn mariadb_10_11_instance_control() {
    exercise(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_9_7_instance_control() {
    exercise(ServerKind::Mysql97).await;
}
