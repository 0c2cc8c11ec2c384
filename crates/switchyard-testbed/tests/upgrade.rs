//! In-place MariaDB major upgrades on one data directory: 10.5 → 10.11 →
//! 11.8, each followed by `mariadb-upgrade`, keeping the data.

mod common;

use sqlx::Row as _;
use switchyard_testbed::{ServerKind, replication};

use common::assert_gone;

#[tokio::test]
async fn mariadb_10_5_to_10_11_to_11_8_in_place() {
    let cluster = replication(ServerKind::Mariadb105, 1).await.unwrap();
    let node = cluster.primary();
    let op = &cluster.credentials().operator;
    assert!(node.server_version().await.unwrap().starts_with("10.5."));
    let mut conn = node.connect(op).await.unwrap();
    sqlx::raw_sql("CREATE TABLE app.kept (id INT PRIMARY KEY, v TEXT); INSERT INTO app.kept VALUES (1, 'from 10.5')")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    for (kind, series) in [
        (ServerKind::Mariadb1011, "10.11."),
        (ServerKind::Mariadb118, "11.8."),
    ] {
        let old_pid = node.pid().unwrap();
        node.shutdown_clean().await.unwrap();
        assert!(!node.is_running());
        assert!(
            node.last_exit().unwrap().success(),
            "{:?}",
            node.last_exit()
        );
        assert_gone(old_pid);

        node.start_with(kind, &[]).await.unwrap();
        assert!(node.server_version().await.unwrap().starts_with(series));
        node.mariadb_upgrade().await.unwrap();
        // 11.x renamed the file mariadb-upgrade leaves behind.
        let info = ["mariadb_upgrade_info", "mysql_upgrade_info"]
            .iter()
            .find_map(|f| std::fs::read_to_string(node.datadir().join(f)).ok())
            .expect("mariadb-upgrade left no upgrade info file");
        assert!(
            info.starts_with(series),
            "mysql_upgrade_info says {info:?} after upgrading to {kind}"
        );

        let mut conn = node.connect(op).await.unwrap();
        let row = sqlx::query("SELECT v FROM app.kept WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>(0), "from 10.5");
        // The application account still works after the system tables changed.
        let app = &cluster.credentials().application;
        let mut app_conn = node.connect(app).await.unwrap();
        node.set_read_only(false).await.unwrap();
        sqlx::query("INSERT INTO app.kept VALUES (?, ?)")
            .bind(series.len() as i32)
            .bind(series)
            .execute(&mut app_conn)
            .await
            .unwrap();
    }
    let pid = node.pid().unwrap();
    drop(cluster);
    assert_gone(pid);
}
