//! A MariaDB primary of a semi-synchronous revision killed with SIGKILL starts again with the
//! source side of semi-synchronous replication on: a privileged client's commit on it (an
//! account with `READ ONLY ADMIN`, which `read_only` does not stop) waits for a replica's
//! acknowledgement instead of being acknowledged on the returned primary alone. A replica
//! (its data directory names a source) starts with it off, so its applier never waits. On
//! real servers.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use common::{Accounts, Pod, WAIT, binaries, exec, instance, revision_cnf, rows, scalar};
use switchyard_agent::semisync::MASTER_INFO;
use switchyard_testbed::{ServerKind, wait_for};

/// The semi-synchronous settings the operator renders into every revision of a lossless
/// MariaDB cluster (the source side's switch is not among them).
fn semi_sync_cnf() -> String {
    format!(
        "{}rpl_semi_sync_slave_enabled = ON\nrpl_semi_sync_master_wait_point = AFTER_SYNC\n\
         rpl_semi_sync_master_timeout = 86400000\nrpl_semi_sync_master_wait_no_slave = ON\n",
        revision_cnf(ServerKind::Mariadb1011, 151)
    )
}

const SOURCE_ON: &str = "SELECT @@GLOBAL.rpl_semi_sync_master_enabled";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_primary_killed_starts_again_waiting_for_acknowledgements() {
    let _slots = switchyard_testbed::slots::acquire(2).await.unwrap();
    let bins = binaries(ServerKind::Mariadb1011).await;
    let accounts = Accounts::generate();
    let cnf = semi_sync_cnf();

    // A primary (no source in its data directory) starts with the source side on.
    let mut primary = Pod::new("primary", &bins, &accounts);
    let mut primary_instance = instance(1001, "rev-1");
    primary_instance.bootstrap = true;
    primary.write_config(&primary_instance, &cnf);
    primary.start();
    primary.wait_code("/readyz", 200).await;
    let mut root = primary.root().await;
    assert_eq!(scalar(&mut root, "SELECT @@read_only").await, "1");
    assert_eq!(
        scalar(&mut root, SOURCE_ON).await,
        "1",
        "a primary of a semi-synchronous revision starts waiting for acknowledgements"
    );
    // Data to copy, written with the source side off (no replica yet to acknowledge).
    exec(
        &mut root,
        "SET GLOBAL rpl_semi_sync_master_enabled = OFF; CREATE DATABASE app; \
         CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO app.t VALUES (1, 'before the copy')",
    )
    .await;
    exec(&mut root, "SET GLOBAL rpl_semi_sync_master_enabled = ON").await;

    // A replica provisioned from it and replicating: its data directory names the source,
    // and it starts with the source side off.
    let mut replica = Pod::new("replica", &bins, &accounts);
    let mut replica_instance = instance(1002, "rev-1");
    replica_instance.provision_from = Some(primary.as_donor());
    replica_instance.replicate_from = Some(primary.as_source());
    replica.write_config(&replica_instance, &cnf);
    replica.start();
    replica
        .wait_status("provisioned", |s| {
            s["provisioning"] == "done" && s["phase"] == "running"
        })
        .await;
    replica.wait_code("/readyz", 200).await;
    let mut replica_root = replica.root().await;
    assert_eq!(scalar(&mut replica_root, SOURCE_ON).await, "0");
    assert!(replica.datadir().join(MASTER_INFO).exists());
    // Semi-synchronous: a commit on the primary is acknowledged by the replica.
    exec(&mut root, "INSERT INTO app.t VALUES (2, 'acknowledged')").await;
    caught_up(&mut replica_root, &rows(&mut root).await).await;
    drop(root);

    // The replica restarted: still off (its applier must never wait for replicas of its own).
    replica.stop().await.expect("the replica stops cleanly");
    replica.start();
    replica
        .wait_status("running", |s| s["phase"] == "running")
        .await;
    let mut replica_root = replica.root().await;
    assert_eq!(
        scalar(&mut replica_root, SOURCE_ON).await,
        "0",
        "a replica starts with the source side off"
    );

    // The failover's fence of the replica (its receiver stopped), then the primary killed.
    exec(&mut replica_root, "STOP SLAVE").await;
    let pid = primary.status().await.unwrap()["server_pid"]
        .as_u64()
        .expect("the primary's server pid") as u32;
    common::signal(pid, nix::sys::signal::Signal::SIGKILL);
    wait_for(WAIT, async || primary.agent_finished().then_some(()))
        .await
        .expect("the agent ends when its server is killed");
    let ended = primary.stop().await;
    assert!(
        ended.is_err(),
        "the agent ends when its server is killed: {ended:?}"
    );

    // The container restarts: read-only, and waiting for acknowledgements.
    primary.start();
    primary.wait_code("/readyz", 200).await;
    let mut root = primary.root().await;
    assert_eq!(scalar(&mut root, "SELECT @@read_only").await, "1");
    assert_eq!(
        scalar(&mut root, SOURCE_ON).await,
        "1",
        "the killed primary starts again with the source side of semi-sync on"
    );
    // A privileged client (root has READ ONLY ADMIN: read_only lets it write) commits: the
    // commit waits for an acknowledgement.
    let mut writer = primary.root().await;
    let commit = tokio::spawn(async move {
        sqlx::raw_sql("INSERT INTO app.t VALUES (3, 'privileged')")
            .execute(&mut writer)
            .await
            .map(drop)
    });
    let waiting = wait_for(WAIT, async || {
        let waiting = scalar(
            &mut root,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE LIKE '%semi-sync ACK%'",
        )
        .await;
        (waiting == "1" || commit.is_finished()).then_some(waiting)
    })
    .await
    .expect("the privileged commit waits or is done");
    assert!(
        !commit.is_finished(),
        "the privileged commit was acknowledged with no replica connected"
    );
    assert_eq!(
        waiting, "1",
        "the commit waits for a semi-synchronous acknowledgement"
    );
    assert_eq!(
        rows(&mut replica_root).await.len(),
        2,
        "the replica has not received the commit"
    );
    // The replica receives it and acknowledges: only then is the commit acknowledged.
    exec(&mut replica_root, "START SLAVE").await;
    tokio::time::timeout(WAIT, commit)
        .await
        .expect("the commit is acknowledged once the replica has it")
        .expect("the writer's task")
        .expect("the privileged commit");
    caught_up(&mut replica_root, &rows(&mut root).await).await;
    assert_eq!(rows(&mut root).await.len(), 3);

    drop((root, replica_root));
    replica.stop().await.expect("the replica stops cleanly");
    primary.stop().await.expect("the primary stops cleanly");
}

/// Waits until `conn` holds `expected` in `app.t`.
async fn caught_up(conn: &mut sqlx::mysql::MySqlConnection, expected: &[String]) {
    let mut last = Vec::new();
    let got = wait_for(WAIT, async || {
        last = rows(&mut *conn).await;
        (last == expected).then_some(())
    })
    .await;
    assert!(got.is_ok(), "not caught up: {last:?}, want {expected:?}");
}
