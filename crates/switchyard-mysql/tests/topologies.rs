//! Topologies beyond one version of asynchronous replication: a MariaDB 10.5 primary with a
//! 10.11 replica (and a switchover to the newer one), Galera's rolling schema upgrade, and the
//! fence and a switchover on MariaDB 11.8.

mod common;

use std::time::{Duration, Instant};

use sqlx::Connection;
use switchyard_mysql::{
    LocalDdlMethod, OldPrimaryRole, SourceAddr, SwitchoverPolicy, SwitchoverStep, switchover,
};
use switchyard_plan::versions::Series;
use switchyard_testbed::{
    Cluster, Options, ServerKind, galera, replication, replication_with, wait_for,
};

use common::handles;

async fn count(cluster: &Cluster, index: usize, sql: &'static str) -> i64 {
    let mut root = cluster.instance(index).connect_root().await.expect("root");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut root)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = root.close().await;
    n
}

#[tokio::test]
async fn mariadb_10_5_primary_with_a_10_11_replica() {
    let cluster = replication_with(
        &[ServerKind::Mariadb105, ServerKind::Mariadb1011],
        &Options::default(),
    )
    .await
    .expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let p = h[0].observe().await.expect("observe the primary");
    let r = h[1].observe().await.expect("observe the replica");
    assert_eq!(p.version.version.series(), Series::new(10, 5));
    assert_eq!(r.version.version.series(), Series::new(10, 11));
    let rs = r.replication.as_ref().expect("replica");
    assert_eq!(rs.source_port, cluster.primary().port());

    // Configured again by this client, the newer replica follows the older primary.
    let source = SourceAddr::new("127.0.0.1", cluster.primary().port());
    h[1].configure_replica(&source, &common::replication(&cluster, false))
        .await
        .expect("configure the 10.11 replica of the 10.5 primary");
    let mut op = cluster
        .primary()
        .connect(&creds.operator)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.xv (id INT PRIMARY KEY); INSERT INTO app.xv VALUES (1), (2)")
        .execute(&mut op)
        .await
        .expect("write on 10.5");
    let target = h[0].binlog_position().await.expect("position");
    h[1].wait_caught_up(&target, Duration::from_secs(20))
        .await
        .expect("10.11 catches up");
    assert_eq!(count(&cluster, 1, "SELECT COUNT(*) FROM app.xv").await, 2);
    let r = h[1].observe().await.expect("observe");
    assert!(r.replication.as_ref().is_some_and(|s| s.is_running()));
    assert!(
        r.errant_against(&h[0].observe().await.expect("observe"))
            .expect("same flavor")
            .is_empty()
    );
    let _ = op.close().await;

    // A switchover to the newer replica leaves the older primary fenced, not replicating
    // from a newer source, even though the caller asked for it to be repointed.
    let policy = SwitchoverPolicy {
        replication: Some(common::replication(&cluster, false)),
        repoint_old_primary: true,
        ..SwitchoverPolicy::default()
    };
    let mut steps: Vec<SwitchoverStep> = Vec::new();
    let outcome = switchover(
        &h[0],
        &h[1],
        &[],
        Instant::now() + Duration::from_secs(20),
        &policy,
        &mut steps,
    )
    .await
    .expect("switchover to 10.11");
    assert_eq!(
        steps.iter().map(SwitchoverStep::name).collect::<Vec<_>>(),
        ["fenced", "caught_up", "promoted"]
    );
    match &outcome.old_primary {
        OldPrimaryRole::Fenced { reason } => assert!(reason.contains("older"), "{reason}"),
        other => panic!("the 10.5 primary was not kept fenced: {other:?}"),
    }
    let old = h[0].observe().await.expect("observe the old primary");
    assert!(old.read_only && old.replication.is_none());
    assert!(h[0].holds_fence_lock().await);
    assert!(h[1].observe().await.expect("observe").is_writable());
    // The fence holds against a privileged client on the old primary.
    let (admin, write) =
        common::try_write(&cluster, &creds.privileged, "INSERT INTO app.xv VALUES (3)").await;
    assert!(
        write.is_err(),
        "a privileged write went through the fence: {write:?}"
    );
    drop(admin);
    assert_eq!(
        h[0].binlog_position().await.expect("position"),
        outcome.fenced_position
    );
    h[0].kill_client_connections()
        .await
        .expect("close the waiting write");
}

#[tokio::test]
async fn galera_rolling_schema_upgrade_on_one_node_of_three() {
    let cluster = galera(3).await.expect("galera cluster");
    let h = handles(&cluster);
    for node in &h {
        let g = node
            .observe()
            .await
            .expect("observe")
            .galera
            .expect("galera state");
        assert!(g.wsrep_on && g.ready && !g.desync, "{node}: {g:?}");
        assert_eq!(g.local_state, Some(4), "{node}: {g:?}");
        assert_eq!(g.local_state_comment.as_deref(), Some("Synced"));
        assert!(g.in_primary_component(), "{node}: {g:?}");
        assert_eq!(g.cluster_size, Some(3));
    }
    let mut op = cluster
        .primary()
        .connect(&cluster.credentials().operator)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE app.g (id INT PRIMARY KEY, v INT); INSERT INTO app.g VALUES (1, 1)",
    )
    .execute(&mut op)
    .await
    .expect("create");
    let columns = "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'g'";
    for i in 0..3 {
        wait_for(Duration::from_secs(20), async || {
            let mut root = cluster.instance(i).connect_root().await.ok()?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app.g")
                .fetch_one(&mut root)
                .await
                .ok()?;
            (n == 1).then_some(())
        })
        .await
        .expect("the table reaches every node");
    }

    let method = h[1]
        .run_local_ddl(
            "ALTER TABLE app.g ADD COLUMN extra INT NULL",
            Duration::from_secs(5),
        )
        .await
        .expect("RSU on node 1");
    assert_eq!(method, LocalDdlMethod::RollingSchemaUpgrade);
    assert_eq!(count(&cluster, 1, columns).await, 3);
    assert_eq!(count(&cluster, 0, columns).await, 2);
    assert_eq!(count(&cluster, 2, columns).await, 2);
    let g = common::poll_slowly(Duration::from_secs(30), async || {
        let g = h[1].observe().await.ok()?.galera?;
        (g.is_synced() && g.cluster_size == Some(3) && !g.desync).then_some(g)
    })
    .await
    .expect("node 1 returns to Synced in a cluster of 3");
    assert_eq!(g.local_state_comment.as_deref(), Some("Synced"));
    // Writes from the other nodes still apply on the altered node (a trailing column).
    sqlx::raw_sql("INSERT INTO app.g VALUES (2, 2)")
        .execute(&mut op)
        .await
        .expect("insert");
    wait_for(Duration::from_secs(20), async || {
        let mut root = cluster.instance(1).connect_root().await.ok()?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app.g")
            .fetch_one(&mut root)
            .await
            .ok()?;
        (n == 2).then_some(())
    })
    .await
    .expect("the altered node applies the new row");
    for node in &h {
        let g = node
            .observe()
            .await
            .expect("observe")
            .galera
            .expect("galera");
        assert!(g.is_synced() && g.cluster_size == Some(3), "{node}: {g:?}");
    }
    let _ = op.close().await;
}

#[tokio::test]
async fn mariadb_11_8_fence_and_switchover() {
    let cluster = replication(ServerKind::Mariadb118, 2)
        .await
        .expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let p = h[0].observe().await.expect("observe");
    assert_eq!(p.version.version.series(), Series::new(11, 8));
    assert!(p.is_writable() && p.super_read_only.is_none());

    let mut admin = cluster
        .primary()
        .connect(&creds.privileged)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.f (id INT PRIMARY KEY)")
        .execute(&mut admin)
        .await
        .expect("create");
    let fenced = h[0].fence().await.expect("fence");
    assert!(fenced.killed_connections >= 1);
    let (admin, write) =
        common::try_write(&cluster, &creds.privileged, "INSERT INTO app.f VALUES (1)").await;
    assert!(
        write.is_err(),
        "a privileged write went through the fence: {write:?}"
    );
    drop(admin);
    assert_eq!(
        h[0].binlog_position().await.expect("position"),
        fenced.position
    );
    h[0].kill_client_connections()
        .await
        .expect("close the waiting write");
    h[0].unfence().await.expect("unfence");
    let mut admin = cluster
        .primary()
        .connect(&creds.privileged)
        .await
        .expect("connect");
    sqlx::raw_sql("INSERT INTO app.f VALUES (2)")
        .execute(&mut admin)
        .await
        .expect("writable again");
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM app.f")
        .fetch_all(&mut admin)
        .await
        .expect("rows");
    assert_eq!(ids, [2], "the write made while fenced never committed");
    let _ = admin.close().await;

    let policy = SwitchoverPolicy {
        replication: Some(common::replication(&cluster, false)),
        ..SwitchoverPolicy::default()
    };
    let mut steps: Vec<SwitchoverStep> = Vec::new();
    let outcome = switchover(
        &h[0],
        &h[1],
        &[],
        Instant::now() + Duration::from_secs(20),
        &policy,
        &mut steps,
    )
    .await
    .expect("switchover on 11.8");
    assert_eq!(outcome.old_primary, OldPrimaryRole::Replica);
    let new_obs = h[1].observe().await.expect("observe");
    assert!(new_obs.is_writable() && new_obs.replication.is_none());
    let old = wait_for(Duration::from_secs(20), async || {
        let o = h[0].observe().await.ok()?;
        (o.replication.as_ref()?.is_running() && o.read_only).then_some(o)
    })
    .await
    .expect("the old primary follows the new one");
    assert_eq!(
        old.replication.map(|r| r.source_port),
        Some(cluster.instance(1).port())
    );
}

/// A failed primary that runs again after its replica was detached holds a commit in the
/// semi-synchronous wait that no replica can end. The fence refuses it (ending that commit
/// by SQL could report it done to its client, with no replica having it) and changes nothing:
/// the server stays writable for the runtime to stop, and the commit is still waiting.
#[tokio::test]
async fn mariadb_fence_refuses_a_commit_no_replica_can_acknowledge() {
    fence_refuses_a_waiting_commit(false).await;
}

/// The same with the replica frozen (SIGSTOP) instead of detached: its connection stays open,
/// so the primary still counts it as a semi-synchronous replica (as after a network cut that
/// its dump thread has not noticed), but nothing acknowledges. The fence waits for the
/// acknowledgement a connected replica would give, then refuses.
#[tokio::test]
async fn mariadb_fence_refuses_a_commit_a_frozen_replica_never_acknowledges() {
    fence_refuses_a_waiting_commit(true).await;
}

async fn fence_refuses_a_waiting_commit(freeze_replica: bool) {
    let cluster = replication(ServerKind::Mariadb1011, 2)
        .await
        .expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let mut primary = cluster.instance(0).connect_root().await.expect("root");
    let mut replica = cluster.instance(1).connect_root().await.expect("root");
    sqlx::raw_sql(
        "CREATE TABLE app.u (id INT PRIMARY KEY); \
         SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC; \
         SET GLOBAL rpl_semi_sync_master_timeout = 86400000; \
         SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON; \
         SET GLOBAL rpl_semi_sync_master_enabled = ON",
    )
    .execute(&mut primary)
    .await
    .expect("semi-synchronous source");
    sqlx::raw_sql(
        "SET GLOBAL rpl_semi_sync_slave_enabled = ON; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
    )
    .execute(&mut replica)
    .await
    .expect("semi-synchronous replica");
    // Acknowledged while the replica is connected: the fence's check is not simply "on".
    let clients = wait_for(Duration::from_secs(20), async || {
        let n: String = sqlx::query_scalar(
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'",
        )
        .fetch_one(&mut primary)
        .await
        .ok()?;
        (n == "1").then_some(())
    })
    .await;
    assert!(
        clients.is_ok(),
        "the replica never registered as semi-synchronous"
    );
    let acknowledged = tokio::time::timeout(
        Duration::from_secs(20),
        sqlx::raw_sql("INSERT INTO app.u VALUES (0)").execute(&mut primary),
    )
    .await;
    assert!(
        matches!(acknowledged, Ok(Ok(_))),
        "a write with the replica connected: {acknowledged:?}"
    );
    if freeze_replica {
        cluster.instance(1).pause().expect("freeze the replica");
    } else {
        // The failover's detach: nobody left to acknowledge.
        sqlx::raw_sql("STOP SLAVE IO_THREAD")
            .execute(&mut replica)
            .await
            .expect("detach");
    }
    let mut writer = cluster
        .primary()
        .connect(&creds.privileged)
        .await
        .expect("connect");
    let write = tokio::spawn(async move {
        let r = sqlx::raw_sql("INSERT INTO app.u VALUES (1)")
            .execute(&mut writer)
            .await;
        (writer, r)
    });
    let waiting = wait_for(Duration::from_secs(20), async || {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE '%semi-sync%'",
        )
        .fetch_one(&mut primary)
        .await
        .ok()?;
        (n > 0).then_some(())
    })
    .await;
    assert!(
        waiting.is_ok(),
        "the commit never reached the semi-synchronous wait"
    );

    let refused = h[0].fence().await;
    assert!(
        matches!(
            refused,
            Err(switchyard_mysql::Error::UnacknowledgeableCommits { waiting: 1, .. })
        ),
        "{refused:?}"
    );
    let read_only: i64 = sqlx::query_scalar("SELECT @@GLOBAL.read_only")
        .fetch_one(&mut primary)
        .await
        .expect("read_only");
    assert_eq!(read_only, 0, "a refused fence changes nothing");
    assert!(!write.is_finished(), "the commit left its wait: {write:?}");
    write.abort();
    if freeze_replica {
        cluster.instance(1).resume().expect("thaw the replica");
    }
    let _ = primary.close().await;
    let _ = replica.close().await;
}

/// A MariaDB primary fenced and then demoted to a replica is, at every moment, either held by
/// the fence's lock or configured with its source: `read_only` alone lets a privileged client
/// commit, and a read-only server with no source looks like a primary to anyone judging who
/// takes writes. A sampler of the operator's account (which the fence does not close) reads
/// the replication configuration and tries a commit with the binary log off and
/// `lock_wait_timeout = 0` (the lock refuses it at once) as fast as it can, across six
/// demotions, the roles swapped each time. With the lock released before the source was set
/// (the order before this test), it caught the server with neither in the first rounds.
#[tokio::test]
async fn mariadb_demoted_primary_always_has_its_fence_or_its_source() {
    let cluster = replication(ServerKind::Mariadb1011, 2)
        .await
        .expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let mut root = cluster.instance(0).connect_root().await.expect("root");
    sqlx::raw_sql(
        "CREATE DATABASE probe; CREATE TABLE probe.t (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .execute(&mut root)
    .await
    .expect("probe table");
    let _ = root.close().await;
    let mut samples = 0u32;
    let mut exposed = Vec::new();
    for round in 0..6usize {
        let (old, new) = (round % 2, (round + 1) % 2);
        wait_for(Duration::from_secs(20), async || {
            let p = h[old].binlog_position().await.ok()?;
            h[new].wait_caught_up(&p, Duration::from_secs(1)).await.ok()
        })
        .await
        .expect("the replica catches up");
        h[old].fence().await.expect("fence the primary");
        h[new].promote().await.expect("promote the replica");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut probe = cluster
            .instance(old)
            .connect(&creds.operator)
            .await
            .expect("sampler connection");
        sqlx::raw_sql("SET SESSION sql_log_bin = 0; SET SESSION lock_wait_timeout = 0")
            .execute(&mut probe)
            .await
            .expect("sampler session");
        let sampler = tokio::spawn({
            let stop = std::sync::Arc::clone(&stop);
            let taken = std::sync::Arc::clone(&taken);
            async move {
                let (mut n, mut bad) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let source = sqlx::raw_sql("SHOW SLAVE STATUS")
                        .fetch_all(&mut probe)
                        .await
                        .map(|rows| !rows.is_empty());
                    let commit = sqlx::raw_sql("INSERT INTO probe.t () VALUES ()")
                        .execute(&mut probe)
                        .await;
                    n += 1;
                    taken.store(n, std::sync::atomic::Ordering::SeqCst);
                    if source.as_ref().is_ok_and(|s| !s) && commit.is_ok() {
                        bad.push(n);
                    }
                }
                (n, bad)
            }
        });
        // Samples before, during and after the demotion.
        let samples_past = async |n: u32| {
            let taken = std::sync::Arc::clone(&taken);
            wait_for(Duration::from_secs(10), async move || {
                (taken.load(std::sync::atomic::Ordering::SeqCst) >= n).then_some(())
            })
            .await
            .expect("the sampler samples");
        };
        samples_past(5).await;
        let to = SourceAddr::new("127.0.0.1", cluster.instance(new).port());
        h[old]
            .demote_to_replica(&to, &common::replication(&cluster, false))
            .await
            .expect("demote the old primary");
        samples_past(taken.load(std::sync::atomic::Ordering::SeqCst) + 5).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (n, bad) = sampler.await.expect("sampler");
        samples += n;
        if !bad.is_empty() {
            exposed.push((round, bad));
        }
    }
    assert!(samples > 60, "the sampler hardly ran: {samples} samples");
    assert!(
        exposed.is_empty(),
        "a demoted primary was read-only with neither its fence lock nor a source, so a \
         privileged commit went through (round, sample numbers): {exposed:?}"
    );
}
