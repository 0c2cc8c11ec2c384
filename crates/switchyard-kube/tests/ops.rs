//! The production instance operations (`MysqlOps`) over real servers, for what the
//! Kubernetes runtime reads from them: a fence is reported only while it holds (MariaDB: the
//! operations' own connection holds the backup lock, which a server restart ends; MySQL:
//! `super_read_only`), and an old primary demoted before its successor's promotion reports
//! its replication configured, stopped, without an error, and stays fenced.

use std::time::{Duration, Instant};

use switchyard_kube::credentials::ClusterCredentials;
use switchyard_kube::ops::{HandleCache, InstanceOps, MysqlOps, Target, pod_target};
use switchyard_testbed::{Cluster, Options, ServerKind, replication_with};

fn credentials(testbed: &Cluster) -> ClusterCredentials {
    let c = testbed.credentials();
    ClusterCredentials {
        root_password: "unused-by-the-testbed".into(),
        operator_user: c.operator.user().into(),
        operator_password: c.operator.password().into(),
        replication_user: c.replication.user().into(),
        replication_password: c.replication.password().into(),
    }
}

fn target(testbed: &Cluster, ordinal: u32) -> Target {
    let mut t = pod_target("db", "shop", ordinal, "127.0.0.1".into());
    t.port = testbed.instance(usize::try_from(ordinal).unwrap()).port();
    t
}

fn by() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// Waits until server `index` has been up at least two seconds (its `Uptime` counts whole
/// seconds, so only then can a restart be told from the start before it).
async fn up_two_seconds(testbed: &Cluster, index: usize) {
    let server = testbed.instance(index);
    switchyard_testbed::wait_for(Duration::from_secs(30), async || {
        let mut root = server.connect_root().await.ok()?;
        let (_, uptime): (String, String) = sqlx::query_as("SHOW GLOBAL STATUS LIKE 'Uptime'")
            .fetch_one(&mut root)
            .await
            .ok()?;
        (uptime.parse::<u64>().ok()? >= 2).then_some(())
    })
    .await
    .expect("the server stays up");
}

/// Whether a privileged client (MariaDB's `read_only` does not stop it) can commit on server
/// `index`: a fence's lock holds the commit until its lock wait gives up.
async fn privileged_commit(testbed: &Cluster, index: usize, id: u32) -> Result<(), sqlx::Error> {
    let mut admin = testbed
        .instance(index)
        .connect(&testbed.credentials().privileged)
        .await
        .expect("a privileged client");
    sqlx::query("SET SESSION lock_wait_timeout = 1")
        .execute(&mut admin)
        .await
        .expect("a short lock wait");
    sqlx::query("INSERT INTO app.fence_probe VALUES (?)")
        .bind(id)
        .execute(&mut admin)
        .await
        .map(drop)
}

/// MariaDB 10.11: the fence's lock dies with the server process. A fence after a restart takes
/// a new lock (a privileged client's commit waits for it and gives up) instead of counting on
/// the dead one; the view reports a lock that died as no fence.
#[tokio::test]
async fn mariadb_a_fence_is_reported_only_while_its_lock_holds() {
    let testbed = replication_with(&[ServerKind::Mariadb1011; 2], &Options::default())
        .await
        .expect("two servers");
    let ops = MysqlOps::new(&credentials(&testbed), HandleCache::default());
    let (primary, replica) = (target(&testbed, 0), target(&testbed, 1));
    let server = testbed.instance(0);
    let mut admin = server
        .connect(&testbed.credentials().privileged)
        .await
        .expect("a privileged client");
    sqlx::query("CREATE TABLE app.fence_probe (id INT PRIMARY KEY)")
        .execute(&mut admin)
        .await
        .expect("a table");
    drop(admin);
    privileged_commit(&testbed, 0, 1)
        .await
        .expect("a privileged client commits on the primary");

    let view = ops.observe(&primary, None).await.expect("observe");
    assert!(view.writable && !view.fenced, "{view:?}");
    up_two_seconds(&testbed, 0).await;
    ops.fence(&primary, by()).await.expect("fence");
    let view = ops.observe(&primary, None).await.expect("observe");
    assert!(!view.writable && view.fenced, "{view:?}");
    privileged_commit(&testbed, 0, 2)
        .await
        .expect_err("the fence's lock holds the commit");

    // The server restarts in place (the kubelet restarted its container) and is fenced
    // again at once: a new lock holds commits.
    server.stop().await.expect("stop");
    server.start().await.expect("start");
    ops.fence(&primary, by()).await.expect("fence again");
    let refused = privileged_commit(&testbed, 0, 3)
        .await
        .expect_err("a new lock holds the commit");
    assert!(
        refused.to_string().contains("Lock wait timeout"),
        "{refused}"
    );
    assert!(ops.observe(&primary, None).await.expect("observe").fenced);

    // Restarted again, not fenced since: the lock died, and no fence is reported.
    up_two_seconds(&testbed, 0).await;
    server.stop().await.expect("stop");
    server.start().await.expect("start");
    let view = ops.observe(&primary, None).await.expect("observe");
    assert!(!view.fenced, "a dead lock is not a fence: {view:?}");

    // Demoted before its successor is promoted: configured, not started, no error, fenced.
    ops.demote(&primary, &replica, by()).await.expect("demote");
    let view = ops.observe(&primary, None).await.expect("observe");
    let replication = view.replication.clone().expect("replication configured");
    assert_eq!(
        (replication.running, replication.errno),
        (false, 0),
        "{view:?}"
    );
    assert!(view.fenced && !view.writable, "{view:?}");
    // The candidate, replicating, is neither fenced nor stopped.
    let view = ops.observe(&replica, None).await.expect("observe");
    assert!(
        !view.fenced && view.replication.as_ref().is_some_and(|r| r.running),
        "{view:?}"
    );
    // Its source goes away: its receiver reconnects, which is replication running, not a
    // replica to repoint.
    server.stop().await.expect("stop the source");
    let replica_server = testbed.instance(1);
    switchyard_testbed::wait_for(Duration::from_secs(30), async || {
        let mut root = replica_server.connect_root().await.ok()?;
        let row = sqlx::query("SHOW SLAVE STATUS")
            .fetch_one(&mut root)
            .await
            .ok()?;
        let io: String = sqlx::Row::try_get(&row, "Slave_IO_Running").ok()?;
        (io == "Connecting").then_some(())
    })
    .await
    .expect("the receiver reconnects");
    let view = ops.observe(&replica, None).await.expect("observe");
    assert!(
        view.replication.as_ref().is_some_and(|r| r.running),
        "{view:?}"
    );
}

/// MySQL 9.7: the fence is `super_read_only`, reported while it is on; a promotion lifts it.
#[tokio::test]
async fn mysql_a_fence_is_super_read_only() {
    let testbed = replication_with(&[ServerKind::Mysql97], &Options::default())
        .await
        .expect("a server");
    let ops = MysqlOps::new(&credentials(&testbed), HandleCache::default());
    let primary = target(&testbed, 0);
    let view = ops.observe(&primary, None).await.expect("observe");
    assert!(view.writable && !view.fenced, "{view:?}");
    ops.fence(&primary, by()).await.expect("fence");
    let view = ops.observe(&primary, None).await.expect("observe");
    assert!(!view.writable && view.fenced, "{view:?}");
    ops.promote(&primary, by()).await.expect("promote");
    let view = ops.observe(&primary, None).await.expect("observe");
    assert!(view.writable && !view.fenced, "{view:?}");
}
