//! A copy's replication started again after it already replicated (an earlier try whose
//! answer was lost, a container restarted before the copy was marked done): MariaDB's
//! replica position must not be set back to the copy's, which would apply again what the
//! copy applied since (a duplicate key stops replication). On real servers.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;
use switchyard_agent::config::{Account, Source};
use switchyard_agent::replication::start_from_copy;
use switchyard_mysql::Secret;
use switchyard_plan::versions::Flavor;
use switchyard_testbed::cluster::replication;
use switchyard_testbed::{ServerKind, wait_for};

async fn text(conn: &mut MySqlConnection, sql: &'static str) -> String {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_copy_started_again_after_it_replicated_is_not_set_back() {
    let cluster = replication(ServerKind::Mariadb1011, 2)
        .await
        .expect("cluster");
    let creds = cluster.credentials();
    let (primary, replica) = (cluster.primary(), &cluster.replicas()[0]);
    let mut p = primary.connect(&creds.operator).await.expect("primary");
    let mut r = replica.connect(&creds.operator).await.expect("replica");
    sqlx::raw_sql("CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
        .execute(&mut p)
        .await
        .expect("table");
    let op = creds.operator.clone();
    let at_position = async |target: &str| {
        let mut c = replica.connect(&op).await.ok()?;
        let at = text(&mut c, "SELECT @@GLOBAL.gtid_slave_pos").await;
        (at == target).then_some(())
    };
    let first = text(&mut p, "SELECT @@GLOBAL.gtid_binlog_pos").await;
    wait_for(Duration::from_secs(30), async || at_position(&first).await)
        .await
        .expect("the replica at the copy's position");
    // The copy's position is `first`; since, the replica applied one more transaction.
    sqlx::query("INSERT INTO app.t VALUES (2)")
        .execute(&mut p)
        .await
        .expect("insert");
    let second = text(&mut p, "SELECT @@GLOBAL.gtid_binlog_pos").await;
    wait_for(Duration::from_secs(30), async || at_position(&second).await)
        .await
        .expect("the replica past the copy's position");
    let source = Source {
        host: "127.0.0.1".into(),
        port: primary.port(),
    };
    let account = Account {
        user: creds.replication.user().into(),
        password: Secret::new(creds.replication.password()),
    };
    // Started again from the copy, as a retry would.
    start_from_copy(&mut r, Flavor::Mariadb, &source, &account, Some(&first))
        .await
        .expect("start from the copy again");
    let at = text(&mut r, "SELECT @@GLOBAL.gtid_slave_pos").await;
    assert_eq!(at, second, "the replica position was set back");
    // Replication runs on, without applying anything twice.
    sqlx::query("INSERT INTO app.t VALUES (3)")
        .execute(&mut p)
        .await
        .expect("insert");
    let third = text(&mut p, "SELECT @@GLOBAL.gtid_binlog_pos").await;
    wait_for(Duration::from_secs(30), async || at_position(&third).await)
        .await
        .unwrap_or_else(|e| panic!("replication did not go on after the second start: {e:?}"));
    let rows = text(&mut r, "SELECT CAST(COUNT(*) AS CHAR) FROM app.t").await;
    assert_eq!(rows, "3");
}
