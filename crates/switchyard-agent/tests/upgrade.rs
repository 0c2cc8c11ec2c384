//! The system-table upgrade by the vendor's major.minor rule, on one MariaDB data directory
//! started by the agent on 10.5, 10.11 and 11.8 in turn: `mariadb-upgrade` runs when the
//! major.minor rises and only then, its record is verified, nothing reaches the binary log,
//! and a start on an older series than the record (a downgrade) is refused before the
//! server starts. (A patch-level change within a series, which the testbed has no two
//! versions of, is the rule's unit test in `src/upgrade.rs`.)

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use common::{Accounts, Pod, binaries, instance, revision_cnf, scalar};
use switchyard_testbed::ServerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_upgrades_on_a_new_series_only_and_refuses_a_downgrade() {
    let _slots = switchyard_testbed::slots::acquire(1).await.unwrap();
    let b105 = binaries(ServerKind::Mariadb105).await;
    let b1011 = binaries(ServerKind::Mariadb1011).await;
    let b118 = binaries(ServerKind::Mariadb118).await;
    let accounts = Accounts::generate();
    let mut pod = Pod::new("upgraded", &b105, &accounts);
    let mut config = instance(1001, "rev-1");
    config.bootstrap = true;
    pod.write_config(&config, &revision_cnf(ServerKind::Mariadb105, 151));

    // Bootstrapped on 10.5: its record is 10.5, no upgrade ran.
    pod.start();
    pod.wait_code("/readyz", 200).await;
    let s = pod.status().await.unwrap();
    assert!(
        s["mariadb_upgrade_info"]
            .as_str()
            .unwrap()
            .starts_with("10.5."),
        "{s:#}"
    );
    assert!(s["system_table_upgrade"].is_null(), "{s:#}");
    pod.stop().await.unwrap();

    // 10.11 on the 10.5 data: mariadb-upgrade, verified.
    let expect_upgrade =
        async |pod: &mut Pod, bins: &switchyard_testbed::Binaries, what: Option<&str>| {
            pod.options.image_root = bins.root().to_path_buf();
            pod.start();
            pod.wait_code("/readyz", 200).await;
            let s = pod.status().await.unwrap();
            let series = bins.kind().series();
            assert!(
                s["mariadb_upgrade_info"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{series}.")),
                "{s:#}"
            );
            assert_eq!(s["system_table_upgrade"].as_str(), what, "{s:#}");
            let mut root = pod.root().await;
            assert!(
                scalar(&mut root, "SELECT VERSION()")
                    .await
                    .starts_with(&format!("{series}.")),
                "the server runs {series}"
            );
            assert_eq!(
                scalar(&mut root, "SELECT @@gtid_binlog_pos").await,
                "",
                "the upgrade wrote nothing to the binary log"
            );
            drop(root);
            pod.stop().await.unwrap();
        };
    expect_upgrade(&mut pod, &b1011, Some("mariadb-upgrade from 10.5 to 10.11")).await;
    // The same series again: nothing to do.
    expect_upgrade(&mut pod, &b1011, None).await;
    expect_upgrade(&mut pod, &b118, Some("mariadb-upgrade from 10.11 to 11.8")).await;

    // Back to 10.11: a downgrade across series, refused before the server starts.
    pod.options.image_root = b1011.root().to_path_buf();
    pod.start();
    let s = pod.wait_status("refused", |s| s["phase"] == "failed").await;
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("downgrade"), "{reason}");
    assert!(s["server_pid"].is_null(), "{s:#}");
    assert!(
        s["mariadb_upgrade_info"]
            .as_str()
            .unwrap()
            .starts_with("11.8."),
        "{s:#}"
    );
    assert_eq!(pod.get("/readyz").await.unwrap().0, 503);
    assert_eq!(pod.get("/livez").await.unwrap().0, 200);
    pod.stop().await.unwrap();
}
