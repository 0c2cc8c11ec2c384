//! The agent's life cycle on real servers, one scenario per flavor sharing two instances:
//!
//! 1. a declared bootstrap initializes an empty data directory: the accounts exist, no GTID
//!    was written, the instance is read-only, root is not reachable over TCP, and `/backup`
//!    refuses anyone without the replication account's password (MySQL has no `/backup`);
//! 2. a restart renders the revision the ConfigMap holds now (an online change recorded
//!    there survives it) and comes back read-only;
//! 3. an empty data directory without bootstrap or provisioning stays uninitialized and not
//!    ready (no server, no data directory);
//! 4. the replication password is rotated (on the primary, then in both pods' Secret files,
//!    as the kubelet rewrites a mounted Secret): the running donor's agent checks `/backup`
//!    against the new password, not the one it read at its start; told to provision, the
//!    same agent copies the primary (MySQL 9.7 by `CLONE INSTANCE`, MariaDB 10.11 by
//!    `mariadb-backup` from the primary's agent, whose system-table upgrade record the copy
//!    keeps, so no `mariadb-upgrade` runs) although the primary's first binary logs were
//!    purged, and replicates from the copy's position with the new password: the rows
//!    written before the purge and after it arrive;
//! 5. readiness is false while the replica lags beyond its bound, true once caught up;
//! 6. liveness fails while the replica's server is stopped (SIGSTOP) and comes back;
//! 7. SIGTERM stops both agents cleanly.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use common::{Accounts, Pod, WAIT, binaries, exec, instance, revision_cnf, rows, scalar};
use nix::sys::signal::Signal;
use switchyard_agent::InstanceConfig;
use switchyard_testbed::{Flavor, ServerKind, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_10_11() {
    lifecycle(ServerKind::Mariadb1011).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_9_7() {
    lifecycle(ServerKind::Mysql97).await;
}

async fn lifecycle(kind: ServerKind) {
    let _slots = switchyard_testbed::slots::acquire(2).await.unwrap();
    let flavor = kind.flavor();
    let bins = binaries(kind).await;
    let accounts = Accounts::generate();
    let (op_user, op_pw) = accounts.operator.clone();
    let (repl_user, repl_pw) = accounts.replication.clone();

    // 1. Bootstrap.
    let mut primary = Pod::new("primary", &bins, &accounts);
    let mut primary_instance = instance(1001, "rev-1");
    primary_instance.bootstrap = true;
    primary.write_config(&primary_instance, &revision_cnf(kind, 151));
    primary.start();
    primary.wait_code("/readyz", 200).await;
    let status = primary.status().await.unwrap();
    assert_eq!(status["phase"], "running", "{status:#}");
    assert_eq!(status["data_dir_initialized"], true);
    assert_eq!(status["revision"], "rev-1");
    let mut op = primary
        .connect_as(&op_user, &op_pw)
        .await
        .expect("the operator account exists");
    let repl = primary.connect_as(&repl_user, &repl_pw).await;
    assert!(repl.is_ok(), "the replication account exists: {repl:?}");
    match flavor {
        Flavor::Mariadb => {
            assert_eq!(scalar(&mut op, "SELECT @@gtid_binlog_pos").await, "");
            assert_eq!(scalar(&mut op, "SELECT @@gtid_binlog_state").await, "");
            assert_eq!(scalar(&mut op, "SELECT @@gtid_slave_pos").await, "");
            let info = status["mariadb_upgrade_info"].as_str().unwrap_or_default();
            assert!(info.starts_with("10.11."), "upgrade record {info:?}");
        }
        Flavor::Mysql => {
            assert_eq!(scalar(&mut op, "SELECT @@GLOBAL.gtid_executed").await, "");
            assert_eq!(scalar(&mut op, "SELECT @@super_read_only").await, "1");
        }
    }
    assert_eq!(scalar(&mut op, "SELECT @@read_only").await, "1");
    assert_eq!(scalar(&mut op, "SELECT @@server_id").await, "1001");
    assert!(
        primary.connect_as("root", "").await.is_err(),
        "root must not log in over TCP"
    );
    // `/backup` streams the whole data directory: only for the replication account.
    let port = primary.agent_port();
    let wrong = switchyard_agent::http::basic_auth(&repl_user, "not-the-password");
    let right = switchyard_agent::http::basic_auth(&repl_user, &repl_pw);
    for auth in [None, Some(wrong.as_str())] {
        let (code, body) = common::http_get_as(port, "/backup", auth).await.unwrap();
        let body: String = body.chars().take(200).collect();
        match flavor {
            Flavor::Mariadb => assert_eq!(code, 401, "{auth:?}: {body}"),
            Flavor::Mysql => assert_eq!(code, 404, "{auth:?}: {body}"),
        }
    }
    if flavor == Flavor::Mysql {
        let (code, body) = common::http_get_as(port, "/backup", Some(&right))
            .await
            .unwrap();
        assert_eq!(code, 404, "MySQL provisions by CLONE, not /backup: {body}");
    }
    assert!(
        !primary.options.run_dir.join("backup.log").exists(),
        "no backup ran"
    );

    // 2. An online change recorded in the ConfigMap survives a restart; the restart comes
    //    back read-only even though the operator had made the instance writable.
    exec(&mut op, "SET GLOBAL max_connections = 77").await;
    make_writable(&mut op, flavor).await;
    drop(op);
    primary.write_config(
        &InstanceConfig {
            revision: "rev-2".into(),
            ..primary_instance.clone()
        },
        &revision_cnf(kind, 77),
    );
    let first_pid = primary.status().await.unwrap()["server_pid"]
        .as_u64()
        .unwrap();
    primary.stop().await.expect("a clean stop");
    assert_gone(first_pid);
    primary.start();
    primary.wait_code("/readyz", 200).await;
    let mut op = primary.connect_as(&op_user, &op_pw).await.unwrap();
    assert_eq!(scalar(&mut op, "SELECT @@max_connections").await, "77");
    assert_eq!(scalar(&mut op, "SELECT @@read_only").await, "1");
    assert_eq!(primary.status().await.unwrap()["revision"], "rev-2");

    // Data written before and after the primary's first binary logs are purged.
    make_writable(&mut op, flavor).await;
    exec(&mut op, "CREATE DATABASE app").await;
    exec(
        &mut op,
        "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    exec(
        &mut op,
        "INSERT INTO app.t VALUES (1, 'before purge'), (2, 'before purge')",
    )
    .await;
    let first_log = first_binary_log(&mut op).await;
    exec(&mut op, "FLUSH BINARY LOGS").await;
    exec(&mut op, "INSERT INTO app.t VALUES (3, 'after purge')").await;
    let current = current_binary_log(&mut op, flavor).await;
    exec(&mut op, &format!("PURGE BINARY LOGS TO '{current}'")).await;
    assert_ne!(
        first_binary_log(&mut op).await,
        first_log,
        "the first binary log is purged"
    );

    // 3. An empty volume, neither bootstrap nor provisioning: nothing is initialized.
    let mut replica = Pod::new("replica", &bins, &accounts);
    let mut replica_instance = instance(1002, "rev-2");
    replica_instance.max_lag_seconds = 1;
    replica.write_config(&replica_instance, &revision_cnf(kind, 77));
    replica.start();
    let status = replica
        .wait_status("uninitialized", |s| s["phase"] == "uninitialized")
        .await;
    assert_eq!(status["data_dir_initialized"], false, "{status:#}");
    assert!(status["server_pid"].is_null(), "no server runs: {status:#}");
    let (code, body) = replica.get("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("neither bootstrap nor provision_from"),
        "{body}"
    );
    assert_eq!(replica.get("/livez").await.unwrap().0, 200);
    assert!(!replica.datadir().exists());
    assert_eq!(
        std::fs::read_dir(&replica.options.volume).unwrap().count(),
        0,
        "the volume stays empty"
    );

    // 4. A rotation of the replication password, then provisioned from the primary and
    //    replicating from the copy's position.
    let repl_pw = format!("{repl_pw}-rotated");
    exec(
        &mut op,
        &format!("ALTER USER '{repl_user}'@'%' IDENTIFIED BY '{repl_pw}'"),
    )
    .await;
    for pod in [&primary, &replica] {
        pod.write_secret(
            switchyard_agent::config::keys::REPLICATION_PASSWORD,
            &repl_pw,
        );
    }
    if flavor == Flavor::Mariadb {
        // The donor's agent read the old password at its start: it must not accept it now.
        let (code, body) = common::http_get_as(port, "/backup", Some(&right))
            .await
            .unwrap();
        let body: String = body.chars().take(200).collect();
        assert_eq!(
            code, 401,
            "the rotated-out password still opens /backup: {body}"
        );
    }
    replica_instance.provision_from = Some(primary.as_donor());
    replica_instance.replicate_from = Some(primary.as_source());
    replica.write_instance(&replica_instance);
    let status = replica
        .wait_status("provisioned", |s| {
            s["provisioning"] == "done" && s["phase"] == "running"
        })
        .await;
    assert!(
        status["provisioned_bytes"].as_u64().unwrap_or(0) > 0,
        "{status:#}"
    );
    if flavor == Flavor::Mariadb {
        assert!(
            status["system_table_upgrade"].is_null(),
            "a copy of a donor of the same series needs no mariadb-upgrade: {status:#}"
        );
        let donor_record = primary.status().await.unwrap()["mariadb_upgrade_info"].clone();
        assert!(donor_record.is_string(), "the donor has a record");
        assert_eq!(status["mariadb_upgrade_info"], donor_record, "{status:#}");
    }
    replica.wait_code("/readyz", 200).await;
    exec(&mut op, "INSERT INTO app.t VALUES (4, 'after the copy')").await;
    let mut replica_root = replica.root().await;
    let expected = rows(&mut op).await;
    assert_eq!(expected.len(), 4);
    caught_up(&mut replica_root, &expected).await;
    assert_eq!(scalar(&mut replica_root, "SELECT @@read_only").await, "1");
    assert_eq!(
        scalar(&mut replica_root, "SELECT @@server_id").await,
        "1002"
    );
    match flavor {
        Flavor::Mariadb => {
            let pos = scalar(&mut op, "SELECT @@gtid_binlog_pos").await;
            assert_eq!(
                scalar(&mut replica_root, "SELECT @@gtid_slave_pos").await,
                pos
            );
        }
        Flavor::Mysql => {
            assert_eq!(
                scalar(&mut replica_root, "SELECT @@GLOBAL.gtid_executed").await,
                scalar(&mut op, "SELECT @@GLOBAL.gtid_executed").await
            );
            assert_ne!(
                scalar(&mut replica_root, "SELECT @@server_uuid").await,
                scalar(&mut op, "SELECT @@server_uuid").await,
                "the copy has its own identity"
            );
        }
    }

    // 5. Lagging beyond the bound (its applier held by a global read lock): not ready.
    let mut lock = replica.root().await;
    exec(&mut lock, "FLUSH TABLES WITH READ LOCK").await;
    exec(&mut op, "INSERT INTO app.t VALUES (5, 'while locked')").await;
    let body = replica.wait_code("/readyz", 503).await;
    assert!(body.contains("lagging"), "{body}");
    exec(&mut lock, "UNLOCK TABLES").await;
    replica.wait_code("/readyz", 200).await;
    caught_up(&mut replica_root, &rows(&mut op).await).await;
    drop(lock);
    drop(replica_root);

    // 6. A stopped (hung) server fails liveness.
    let pid = replica.status().await.unwrap()["server_pid"]
        .as_u64()
        .expect("the server's pid") as u32;
    common::signal(pid, Signal::SIGSTOP);
    let body = replica.wait_code("/livez", 503).await;
    assert!(body.contains("does not answer"), "{body}");
    common::signal(pid, Signal::SIGCONT);
    replica.wait_code("/livez", 200).await;

    // 7. SIGTERM: clean stops, the servers gone.
    drop(op);
    replica.stop().await.expect("the replica stops cleanly");
    primary.stop().await.expect("the primary stops cleanly");
    assert_gone(u64::from(pid));
}

fn assert_gone(pid: u64) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    assert_eq!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH),
        "server process {pid} still exists after a clean stop"
    );
}

async fn make_writable(conn: &mut sqlx::mysql::MySqlConnection, flavor: Flavor) {
    match flavor {
        Flavor::Mysql => {
            exec(conn, "SET GLOBAL super_read_only = 0").await;
            exec(conn, "SET GLOBAL read_only = 0").await;
        }
        Flavor::Mariadb => exec(conn, "SET GLOBAL read_only = 0").await,
    }
}

async fn first_binary_log(conn: &mut sqlx::mysql::MySqlConnection) -> String {
    scalar_of_show(conn, "SHOW BINARY LOGS").await
}

async fn current_binary_log(conn: &mut sqlx::mysql::MySqlConnection, flavor: Flavor) -> String {
    match flavor {
        Flavor::Mysql => scalar_of_show(conn, "SHOW BINARY LOG STATUS").await,
        Flavor::Mariadb => scalar_of_show(conn, "SHOW MASTER STATUS").await,
    }
}

async fn scalar_of_show(conn: &mut sqlx::mysql::MySqlConnection, sql: &str) -> String {
    use sqlx::Row as _;
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    row.try_get::<String, _>(0)
        .unwrap_or_else(|_| String::from_utf8_lossy(&row.get::<Vec<u8>, _>(0)).into_owned())
}

async fn caught_up(conn: &mut sqlx::mysql::MySqlConnection, expected: &[String]) {
    let mut last = Vec::new();
    let got = wait_for(WAIT, async || {
        let r = sqlx::raw_sql("SELECT CONCAT(id, ':', v) FROM app.t ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .ok()?;
        use sqlx::Row as _;
        last = r
            .iter()
            .map(|row| {
                row.try_get::<String, _>(0).unwrap_or_else(|_| {
                    String::from_utf8_lossy(&row.get::<Vec<u8>, _>(0)).into_owned()
                })
            })
            .collect();
        (last == expected).then_some(())
    })
    .await;
    assert!(
        got.is_ok(),
        "the replica has {last:?}, the primary {expected:?}"
    );
}
