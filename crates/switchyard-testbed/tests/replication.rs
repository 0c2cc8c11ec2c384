//! Replication clusters of real servers: writes reach replicas, replicas are
//! read-only, the application account has DML rights only, and every
//! process is gone after the cluster drops.

mod common;

use std::time::Duration;

use sqlx::{Connection as _, Row as _};
use switchyard_testbed::{Cluster, ServerKind, replication, wait_for};

use common::assert_gone;

async fn write_then_read_everywhere(cluster: &Cluster) {
    let op = &cluster.credentials().operator;
    let mut primary = cluster.primary().connect(op).await.unwrap();
    sqlx::raw_sql("CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))")
        .execute(&mut primary)
        .await
        .unwrap();
    let app = &cluster.credentials().application;
    let mut app_conn = cluster.primary().connect(app).await.unwrap();
    sqlx::query("INSERT INTO app.t VALUES (?, ?)")
        .bind(1)
        .bind("hello")
        .execute(&mut app_conn)
        .await
        .unwrap();
    for replica in cluster.replicas() {
        let mut conn = replica.connect(op).await.unwrap();
        let seen = wait_for(Duration::from_secs(30), async || {
            sqlx::query("SELECT v FROM app.t WHERE id = 1")
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten()
                .map(|row| row.get::<String, _>(0))
        })
        .await
        .unwrap_or_else(|e| panic!("row not replicated to {}: {e}", replica.name()));
        assert_eq!(seen, "hello");
    }
}

async fn replicas_are_read_only(cluster: &Cluster) {
    let privileged = &cluster.credentials().privileged;
    let app = &cluster.credentials().application;
    for replica in cluster.replicas() {
        let mut conn = replica.connect(app).await.unwrap();
        let err = sqlx::query("INSERT INTO app.t VALUES (2, 'no')")
            .execute(&mut conn)
            .await
            .expect_err("a replica accepted a write from the application account");
        assert!(
            err.to_string().contains("read-only") || err.to_string().contains("read only"),
            "{err}"
        );
        let mut conn = replica.connect(privileged).await.unwrap();
        let ro: i64 = sqlx::query_scalar("SELECT @@GLOBAL.read_only")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(ro, 1, "{} is not read_only", replica.name());
    }
    let mut conn = cluster.primary().connect(app).await.unwrap();
    let ro: i64 = sqlx::query_scalar("SELECT @@GLOBAL.read_only")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(ro, 0, "the primary is read_only");
}

async fn application_cannot_create_tables(cluster: &Cluster) {
    let app = &cluster.credentials().application;
    let mut conn = cluster.primary().connect(app).await.unwrap();
    let err = sqlx::raw_sql("CREATE TABLE app.forbidden (id INT)")
        .execute(&mut conn)
        .await
        .expect_err("the application account created a table");
    assert!(err.to_string().contains("denied"), "{err}");
    conn.close().await.unwrap();
}

async fn exercise(kind: ServerKind) {
    let cluster = replication(kind, 3).await.unwrap();
    let pids: Vec<u32> = cluster
        .instances()
        .iter()
        .map(|i| i.pid().unwrap())
        .collect();
    write_then_read_everywhere(&cluster).await;
    replicas_are_read_only(&cluster).await;
    application_cannot_create_tables(&cluster).await;
    drop(cluster);
    for pid in pids {
        assert_gone(pid);
    }
}

#[tokio::test]
async fn mariadb_10_11_three_node_replication() {
    exercise(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_9_7_three_node_replication() {
    exercise(ServerKind::Mysql97).await;
}
