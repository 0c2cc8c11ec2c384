//! A Galera node through the agent on a real MariaDB 10.11 with Galera 4: the operator's
//! bootstrap decision, and Galera's own guard against a second one.
//!
//! 1. Told to start a new cluster (`bootstrap` and `galera.new_cluster`), the agent
//!    initializes the data directory and starts the server with `--wsrep-new-cluster`: the
//!    node is ready only once it is `Synced` in a primary component (a cluster of one), it
//!    is writable (Galera nodes take writes; the Service picks one), and the SST account is
//!    set (`wsrep_sst_auth`, shown masked) without the password in any file of the pod.
//! 2. A clean stop leaves `grastate.dat` with the cluster's UUID, its last seqno and
//!    `safe_to_bootstrap: 1` (the last node to leave).
//! 3. A node whose `grastate.dat` says `safe_to_bootstrap: 0` (another node may hold newer
//!    transactions) is refused a new cluster: the agent fails with the reason, no server
//!    starts, and the node is not ready.
//! 4. With the state safe again, the node starts the cluster again with its rows.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use common::{Accounts, Pod, binaries, exec, instance, revision_cnf, scalar};
use switchyard_agent::config::{GaleraMember, GaleraPorts};
use switchyard_agent::galera::GraState;
use switchyard_testbed::{ServerKind, allocate_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_a_new_cluster_only_when_told_and_when_its_state_allows_it() {
    let _slots = switchyard_testbed::slots::acquire(1).await.unwrap();
    let kind = ServerKind::Galera;
    let bins = binaries(kind).await;
    let accounts = Accounts::generate();
    let (op_user, op_pw) = accounts.operator.clone();
    let (repl_user, repl_pw) = accounts.replication.clone();
    // Galera's ports (group communication, IST, SST), held for the test.
    let leases = [
        allocate_port().unwrap(),
        allocate_port().unwrap(),
        allocate_port().unwrap(),
    ];
    let mut node = Pod::new("galera-0", &bins, &accounts);
    node.options.galera_ports = GaleraPorts {
        gcomm: leases[0].port(),
        ist: leases[1].port(),
        sst: leases[2].port(),
    };
    let mut config = instance(1001, "rev-1");
    config.bootstrap = true;
    config.galera = Some(GaleraMember {
        cluster_name: "sy-agent".into(),
        peers: vec![format!("127.0.0.1:{}", leases[0].port())],
        new_cluster: true,
        sst_method: "mariabackup".into(),
    });
    let cnf = revision_cnf(kind, 151);
    node.write_config(&config, &cnf);

    // 1. A new cluster of one.
    node.start();
    node.wait_code("/readyz", 200).await;
    let mut op = node
        .connect_as(&op_user, &op_pw)
        .await
        .expect("the operator account exists");
    assert_eq!(scalar(&mut op, "SELECT @@wsrep_on").await, "1");
    assert_eq!(
        scalar(
            &mut op,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'WSREP_CLUSTER_STATUS'"
        )
        .await,
        "Primary"
    );
    assert_eq!(
        scalar(
            &mut op,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'"
        )
        .await,
        "1"
    );
    assert_eq!(scalar(&mut op, "SELECT @@read_only").await, "0");
    assert_eq!(scalar(&mut op, "SELECT @@binlog_format").await, "ROW");
    assert_eq!(
        scalar(&mut op, "SELECT @@innodb_autoinc_lock_mode").await,
        "2"
    );
    assert_eq!(
        scalar(&mut op, "SELECT @@innodb_flush_log_at_trx_commit").await,
        "1"
    );
    assert_eq!(
        scalar(&mut op, "SELECT @@wsrep_sst_method").await,
        "mariabackup"
    );
    // The SST account is set, and the server shows it masked.
    let auth = scalar(&mut op, "SELECT @@wsrep_sst_auth").await;
    assert!(!auth.is_empty() && !auth.contains(&repl_pw), "{auth}");
    // The replication account may donate a mariadb-backup SST.
    let grants = scalar(
        &mut op,
        &format!("SELECT GROUP_CONCAT(PRIVILEGE_TYPE) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = \"'{repl_user}'@'%'\""),
    )
    .await;
    for privilege in ["RELOAD", "PROCESS", "LOCK TABLES", "BINLOG MONITOR"] {
        assert!(grants.contains(privilege), "{privilege}: {grants}");
    }
    // No file of the pod holds the SST password but the Secret's own.
    for dir in [&node.options.run_dir, &node.options.config_dir] {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                assert!(
                    !text.contains(&repl_pw),
                    "{} holds the password",
                    entry.path().display()
                );
            }
        }
    }
    exec(
        &mut op,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO app.t VALUES (1, 'one'), (2, 'two')",
    )
    .await;
    drop(op);

    // 2. A clean stop: the last node to leave may start the cluster again.
    node.stop().await.expect("a clean stop");
    let state = GraState::read(&node.datadir()).expect("grastate.dat after a clean stop");
    assert!(state.safe_to_bootstrap, "{state:?}");
    assert!(state.seqno >= 1, "{state:?}");

    // 3. Not safe to bootstrap: refused, nothing started. (The operator no longer names this
    //    node with `bootstrap`: the data directory exists.)
    let grastate = node.datadir().join("grastate.dat");
    let text = std::fs::read_to_string(&grastate).unwrap();
    std::fs::write(
        &grastate,
        text.replace("safe_to_bootstrap: 1", "safe_to_bootstrap: 0"),
    )
    .unwrap();
    config.bootstrap = false;
    node.write_config(&config, &cnf);
    node.start();
    let status = node
        .wait_status("the new cluster refused", |s| s["phase"] == "failed")
        .await;
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("safe_to_bootstrap: 0"), "{reason}");
    assert!(status["server_pid"].is_null(), "{status:#}");
    assert_eq!(status["galera_state"]["safe_to_bootstrap"], false);
    node.wait_code("/readyz", 503).await;
    node.stop().await.expect("a clean stop");

    // 4. Safe again: the node starts the cluster again, with its rows.
    std::fs::write(&grastate, text).unwrap();
    node.start();
    node.wait_code("/readyz", 200).await;
    let mut op = node.connect_as(&op_user, &op_pw).await.unwrap();
    assert_eq!(scalar(&mut op, "SELECT COUNT(*) FROM app.t").await, "2");
    drop(op);
    node.stop().await.expect("a clean stop");
}
