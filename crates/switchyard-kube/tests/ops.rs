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
    let ops =
        MysqlOps::new(&credentials(&testbed), HandleCache::default()).with_sources_by_address();
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
    let ops =
        MysqlOps::new(&credentials(&testbed), HandleCache::default()).with_sources_by_address();
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

/// A password rotation on real servers: the new passwords are set on the primary with the
/// binary log on, so each replica applies them from it and writes no transaction of its own;
/// the operator then logs in with the new password everywhere (the old one is refused), and
/// each replica replicates again with the new replication password.
async fn rotate(kind: ServerKind) {
    let testbed = replication_with(&[kind, kind], &Options::default())
        .await
        .expect("two servers");
    let old = credentials(&testbed);
    let ops = MysqlOps::new(&old, HandleCache::default()).with_sources_by_address();
    let (primary, replica) = (target(&testbed, 0), target(&testbed, 1));
    let before = ops.observe(&replica, None).await.expect("observe");
    let mut new = old.clone();
    new.operator_password = "NewOperatorPw2".into();
    new.replication_password = "NewReplicationPw3".into();
    ops.set_passwords(
        &primary,
        &[
            (
                new.replication_user.clone(),
                new.replication_password.clone(),
            ),
            (new.operator_user.clone(), new.operator_password.clone()),
        ],
    )
    .await
    .expect("set the passwords");
    let fresh = MysqlOps::new(&new, HandleCache::default()).with_sources_by_address();
    // The replica applied the change once the new password logs in there.
    switchyard_testbed::wait_for(Duration::from_secs(30), async || {
        fresh.observe(&replica, None).await.ok()
    })
    .await
    .expect("the replica applies the change");
    for t in [&primary, &replica] {
        fresh
            .observe(t, None)
            .await
            .unwrap_or_else(|e| panic!("{}: the new password logs in: {e}", t.pod));
        let refused = MysqlOps::new(&old, HandleCache::default())
            .with_sources_by_address()
            .observe(t, None)
            .await
            .expect_err("the old password is refused");
        assert!(!refused.message.contains(&old.operator_password));
    }
    // The replica holds nothing the primary lacks (it wrote no GTID of its own).
    let p = fresh.observe(&primary, None).await.expect("observe");
    let r = fresh.observe(&replica, None).await.expect("observe");
    let errant = switchyard_plan::gtid::errant(r.gtid.as_ref().unwrap(), p.gtid.as_ref().unwrap())
        .expect("comparable");
    assert!(errant.is_empty(), "errant on the replica: {errant}");
    assert_ne!(r.gtid, before.gtid, "the replica applied the change");
    // The replica reconnects with the new replication password.
    fresh
        .replicate_from(&replica, &primary, false)
        .await
        .expect("repoint with the new replication password");
    fresh
        .wait_caught_up(&replica, &primary, by())
        .await
        .expect("replicating again");
    let view = fresh.observe(&replica, None).await.expect("observe");
    let replication = view.replication.expect("replication");
    assert!(
        replication.running && replication.errno == 0,
        "{replication:?}"
    );
}

#[tokio::test]
async fn mariadb_passwords_rotate_through_the_binary_log() {
    rotate(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_passwords_rotate_through_the_binary_log() {
    rotate(ServerKind::Mysql97).await;
}
