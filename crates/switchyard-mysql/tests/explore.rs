//! Exploration.
mod common;
use std::time::Duration;
use sqlx::Connection;
use switchyard_testbed::{ServerKind, replication};

#[tokio::test]
async fn explore_fence_mariadb() {
    let cluster = replication(ServerKind::Mariadb1011, 2).await.expect("cluster");
    let h = common::handles(&cluster);
    let tb = cluster.primary();
    let mut admin = tb.connect(&cluster.credentials().privileged).await.expect("admin");
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)").execute(&mut admin).await.expect("create");
    sqlx::raw_sql("SET GLOBAL read_only=1").execute(&mut admin).await.expect("ro");
    let r = sqlx::raw_sql("INSERT INTO app.t (v) VALUES (1)").execute(&mut admin).await;
    println!("privileged insert under read_only=1: {r:?}");
    sqlx::raw_sql("SET GLOBAL read_only=0").execute(&mut admin).await.expect("ro");
    let rep = h[0].fence().await;
    println!("fence: {rep:?}");
    let r = tokio::time::timeout(Duration::from_secs(3), sqlx::raw_sql("INSERT INTO app.t (v) VALUES (2)").execute(&mut admin)).await;
    println!("old admin conn insert after fence: {r:?}");
    let mut admin2 = tb.connect(&cluster.credentials().privileged).await.expect("admin2");
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(3), sqlx::raw_sql("INSERT INTO app.t (v) VALUES (3)").execute(&mut admin2)).await;
    println!("new admin conn insert after fence: {r:?} after {:?}", t0.elapsed());
    println!("position: {:?}", h[0].binlog_position().await.map(|g| g.to_string()));
    let mut root = tb.connect_root().await.expect("root");
    let r = tokio::time::timeout(Duration::from_secs(3), sqlx::raw_sql("INSERT INTO app.t (v) VALUES (4)").execute(&mut root)).await;
    println!("root insert after fence: {r:?}");
    println!("kill: {:?}", h[0].kill_client_connections().await);
    println!("unfence: {:?}", h[0].unfence().await);
    let mut admin3 = tb.connect(&cluster.credentials().privileged).await.expect("admin3");
    let r = sqlx::raw_sql("INSERT INTO app.t (v) VALUES (5)").execute(&mut admin3).await;
    println!("insert after unfence: {r:?}");
    println!("position: {:?}", h[0].binlog_position().await.map(|g| g.to_string()));
    let rows: Vec<(i32,)> = sqlx::query_as("SELECT v FROM app.t ORDER BY id").fetch_all(&mut admin3).await.expect("rows");
    println!("rows: {rows:?}");
    let _ = admin3.close().await;
}

#[tokio::test]
async fn explore_118() {
    let cluster = replication(ServerKind::Mariadb118, 1).await.expect("cluster");
    let mut root = cluster.primary().connect_root().await.expect("root");
    let r = sqlx::raw_sql("SET GLOBAL read_only='NO_LOCK_NO_ADMIN'").execute(&mut root).await;
    println!("118 NO_LOCK_NO_ADMIN: {r:?}");
    let h = common::handles(&cluster);
    println!("{:?}", h[0].observe().await.map(|o| (o.version, o.read_only)));
}
