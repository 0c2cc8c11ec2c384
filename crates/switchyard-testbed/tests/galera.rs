//! A three-node Galera cluster on loopback: every node Synced in a cluster
//! of three, a write on one node visible on the others, a killed node
//! rejoining, processes gone after the cluster drops.

mod common;

use std::time::Duration;

use sqlx::Row as _;
use switchyard_testbed::{Topology, galera, wait_for};

use common::assert_gone;

async fn status(conn: &mut sqlx::MySqlConnection, name: &str) -> String {
    let row = sqlx::query(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?",
    )
    .bind(name.to_uppercase())
    .fetch_one(conn)
    .await
    .unwrap();
    row.get::<String, _>(0)
}

#[tokio::test]
async fn three_galera_nodes_reach_synced() {
    let cluster = galera(3).await.unwrap();
    assert_eq!(cluster.topology(), Topology::Galera);
    let op = &cluster.credentials().operator;
    for node in cluster.instances() {
        let mut conn = node.connect(op).await.unwrap();
        assert_eq!(
            status(&mut conn, "wsrep_cluster_size").await,
            "3",
            "{}",
            node.name()
        );
        assert_eq!(
            status(&mut conn, "wsrep_local_state_comment").await,
            "Synced",
            "{}",
            node.name()
        );
        assert_eq!(
            status(&mut conn, "wsrep_ready").await,
            "ON",
            "{}",
            node.name()
        );
    }

    let app = &cluster.credentials().application;
    let mut writer = cluster.instance(1).connect(op).await.unwrap();
    sqlx::raw_sql("CREATE TABLE app.g (id INT PRIMARY KEY, v TEXT)")
        .execute(&mut writer)
        .await
        .unwrap();
    let mut app_writer = cluster.instance(1).connect(app).await.unwrap();
    sqlx::query("INSERT INTO app.g VALUES (1, 'synced')")
        .execute(&mut app_writer)
        .await
        .unwrap();
    for node in [cluster.instance(0), cluster.instance(2)] {
        let mut conn = node.connect(app).await.unwrap();
        let v = wait_for(Duration::from_secs(30), async || {
            sqlx::query("SELECT v FROM app.g WHERE id = 1")
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten()
                .map(|r| r.get::<String, _>(0))
        })
        .await
        .unwrap();
        assert_eq!(v, "synced");
    }

    // When the tests run as root, the servers run as the unprivileged
    // Galera user (rsync state transfer needs it).
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name(switchyard_testbed::cluster::GALERA_USER)
            .unwrap()
            .expect("the Galera system user exists");
        for node in cluster.instances() {
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
            let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            assert!(
                uid_line.split_whitespace().nth(1) == Some(&user.uid.to_string()),
                "{} runs as {uid_line}",
                node.name()
            );
        }
    }

    // A node killed with -9 rejoins with a state transfer and sees what was
    // written while it was down.
    let node = cluster.instance(2);
    let killed = node.pid().unwrap();
    node.kill9().unwrap();
    assert_gone(killed);
    let mut conn0 = cluster.instance(0).connect(app).await.unwrap();
    sqlx::query("INSERT INTO app.g VALUES (2, 'while down')")
        .execute(&mut conn0)
        .await
        .unwrap();
    node.start().await.unwrap();
    let mut conn2 = node.connect(op).await.unwrap();
    assert_eq!(
        status(&mut conn2, "wsrep_local_state_comment").await,
        "Synced"
    );
    assert_eq!(status(&mut conn2, "wsrep_cluster_size").await, "3");
    let v: String = sqlx::query_scalar("SELECT v FROM app.g WHERE id = 2")
        .fetch_one(&mut conn2)
        .await
        .unwrap();
    assert_eq!(v, "while down");

    let pids: Vec<u32> = cluster
        .instances()
        .iter()
        .map(|i| i.pid().unwrap())
        .collect();
    drop(cluster);
    for pid in pids {
        assert_gone(pid);
    }
}
