//! The upgrade pre-flight on real servers: an option the target removed is refused before any
//! restart (and the live target confirms the removal table), and accounts using an
//! authentication plugin the target removed are reported.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use common::{cfg, servers};
use sqlx::Row as _;
use switchyard_config::removed::REMOVED_OPTIONS;
use switchyard_config::{
    ChangeRequest, Classification, UpgradeFinding, classify, plan_change, preflight_upgrade,
};
use switchyard_plan::Timestamp;
use switchyard_plan::history::History;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_testbed::{ServerKind, replication};

/// MariaDB 10.11 with `innodb_defragment` set: the upgrade to 11.8 is refused naming it; after
/// an in-place upgrade the 11.8 server indeed no longer knows it (nor any other MariaDB entry
/// of the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_upgrade_naming_a_removed_option_is_refused() {
    let cluster = replication(ServerKind::Mariadb1011, 1)
        .await
        .expect("server");
    let server = &servers(&cluster)[0];
    let meta = server.metadata(&[]).await.expect("metadata");
    let from = meta.version.version;
    assert_eq!(
        classify(&meta, "innodb_defragment", "ON"),
        Classification::Dynamic,
        "10.11 has it"
    );
    let config = cfg(&[("innodb-defragment", "ON"), ("max_connections", "300")]);
    let to = Version::new(11, 8, 0);

    let refusal = preflight_upgrade(Flavor::Mariadb, from, to, &config, &[])
        .expect_err("11.8 removed innodb_defragment");
    assert!(matches!(
        refusal.findings.as_slice(),
        [UpgradeFinding::RemovedOption { option, .. }] if option == "innodb_defragment"
    ));
    assert!(
        refusal.to_string().contains("innodb_defragment"),
        "{refusal}"
    );

    // The same as a combined version + configuration change: one revision, refused.
    let mut history = History::new(Flavor::Mariadb);
    history.ensure(
        Flavor::Mariadb,
        from,
        &cfg(&[("innodb_defragment", "ON")]),
        Timestamp(1),
    );
    let err = plan_change(
        &mut history,
        &ChangeRequest::new(to, config),
        &[meta],
        Timestamp(2),
    )
    .expect_err("refused");
    assert_eq!(err.category(), "removed-option");
    assert!(err.to_string().contains("innodb_defragment"), "{err}");
    assert_eq!(history.entries.len(), 1);

    // The target version confirms the table.
    let instance = cluster.primary();
    instance.shutdown_clean().await.expect("clean shutdown");
    instance
        .start_with(ServerKind::Mariadb118, &[])
        .await
        .expect("start 11.8");
    let target = server.metadata(&[]).await.expect("11.8 metadata");
    assert_eq!(
        (target.version.version.major, target.version.version.minor),
        (11, 8)
    );
    assert!(matches!(
        classify(&target, "innodb_defragment", "ON"),
        Classification::Invalid { reason } if reason.contains("does not know")
    ));
    for r in REMOVED_OPTIONS
        .iter()
        .filter(|r| r.flavor == Flavor::Mariadb && r.removed_in <= target.version.version)
    {
        assert!(
            target.get(r.name).is_none(),
            "{} is still in {}",
            r.name,
            target.version
        );
    }
}

/// MySQL 9.7: the plugin is gone (creating an account with it fails), so the account an 8.4
/// server would carry over is made the way an in-place upgrade leaves it (the plugin column of
/// `mysql.user`); the pre-flight of 8.4 -> 9.7 reports it, with a removed option, in one
/// refusal. Every MySQL entry of the table is absent from the live 9.7 metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_native_password_accounts_are_reported() {
    let cluster = replication(ServerKind::Mysql97, 1).await.expect("server");
    let server = &servers(&cluster)[0];
    let primary = cluster.primary();
    let mut root = primary.connect_root().await.expect("root");
    let refused = sqlx::query(
        "CREATE USER 'legacy'@'%' IDENTIFIED WITH mysql_native_password BY 'Legacy-pw-1'",
    )
    .execute(&mut root)
    .await
    .expect_err("9.x has no mysql_native_password");
    assert!(
        refused.to_string().contains("mysql_native_password"),
        "{refused}"
    );
    sqlx::query("CREATE USER 'legacy'@'%' IDENTIFIED BY 'Legacy-pw-1'")
        .execute(&mut root)
        .await
        .expect("create");
    sqlx::query("UPDATE mysql.user SET plugin = 'mysql_native_password' WHERE User = 'legacy'")
        .execute(&mut root)
        .await
        .expect("the plugin column as an 8.4 account has it");
    let plugin: String = sqlx::query("SELECT plugin FROM mysql.user WHERE User = 'legacy'")
        .fetch_one(&mut root)
        .await
        .expect("read")
        .try_get(0)
        .expect("text");
    assert_eq!(plugin, "mysql_native_password");

    let accounts = server.accounts().await.expect("accounts");
    assert!(
        accounts
            .iter()
            .any(|a| a.user == "switchyard" && a.plugin == "caching_sha2_password")
    );
    let refusal = preflight_upgrade(
        Flavor::Mysql,
        Version::new(8, 4, 6),
        Version::new(9, 7, 0),
        &cfg(&[("mysql-native-password", "ON"), ("max_connections", "300")]),
        &accounts,
    )
    .expect_err("refused");
    let text = refusal.to_string();
    assert_eq!(refusal.findings.len(), 2, "{text}");
    assert!(
        text.contains("option mysql_native_password was removed in 9.0.0"),
        "{text}"
    );
    assert!(text.contains("'legacy'@'%'"), "{text}");
    assert!(
        !text.contains("'switchyard'@"),
        "only the accounts that use it: {text}"
    );

    let meta = server.metadata(&[]).await.expect("metadata");
    for r in REMOVED_OPTIONS
        .iter()
        .filter(|r| r.flavor == Flavor::Mysql && r.removed_in <= meta.version.version)
    {
        assert!(
            meta.get(r.name).is_none(),
            "{} is still in {}",
            r.name,
            meta.version
        );
    }
}
