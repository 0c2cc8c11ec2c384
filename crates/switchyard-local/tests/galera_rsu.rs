//! The Galera test plan for a rolling schema upgrade, on three real MariaDB 10.11 Galera
//! nodes behind the testbed router: while the change rolls node by node under RSU (each
//! node drained from the router's pool while it alters), writers keep inserting into the
//! altered table and into another table through the router, so on the other nodes; every
//! node stays in the cluster and returns to Synced, ends with the new definition, and holds
//! the same rows as the others, every acknowledged insert included. Unsafe changes are
//! refused before anything runs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_local::{Error, GaleraChange, galera_schema_change};
use switchyard_mysql::{Credentials, Instance, InstanceAddr};
use switchyard_testbed::router::Router;
use switchyard_testbed::{galera, wait_for};

fn handles(cluster: &switchyard_testbed::Cluster) -> Vec<Instance> {
    let op = &cluster.credentials().operator;
    cluster
        .instances()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Instance::new(
                format!("node {i}"),
                InstanceAddr::new("127.0.0.1", n.port()),
                Credentials::new(op.user(), op.password()),
            )
        })
        .collect()
}

/// Inserts into both tables through the router's pool until told to stop; returns the ids
/// acknowledged and how many inserts failed.
async fn writer(
    options: sqlx::mysql::MySqlConnectOptions,
    index: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<i64>, usize) {
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    let mut conn = None;
    let base = i64::try_from(index).expect("small") * 1_000_000_000;
    let mut seq = 0i64;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let id = base + seq;
        if conn.is_none() {
            conn = sqlx::ConnectOptions::connect(&options).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            failed += 1;
            continue;
        };
        let one = sqlx::query("INSERT INTO app.t (id, v) VALUES (?, ?)")
            .bind(id)
            .bind(seq)
            .execute(&mut *c)
            .await;
        let two = sqlx::query("INSERT INTO app.other (id, v) VALUES (?, ?)")
            .bind(id)
            .bind(seq)
            .execute(&mut *c)
            .await;
        if one.is_ok() && two.is_ok() {
            acknowledged.push(id);
        } else {
            // A session the drain closed, or a transaction Galera aborted: not
            // acknowledged, so not checked; reconnect (to a node still in the pool).
            failed += 1;
            conn = None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (acknowledged, failed)
}

async fn ids(cluster: &switchyard_testbed::Cluster, node: usize, table: &str) -> BTreeSet<i64> {
    let mut root = cluster
        .instance(node)
        .connect_root()
        .await
        .expect("connect");
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT id FROM app.{table}")))
        .fetch_all(&mut root)
        .await
        .expect("read ids")
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsu_rolls_node_by_node_while_every_node_writes() {
    let cluster = Arc::new(galera(3).await.expect("galera cluster"));
    let nodes = handles(&cluster);
    let mut root = cluster.instance(0).connect_root().await.expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL); \
         CREATE TABLE app.other (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)",
    )
    .execute(&mut root)
    .await
    .expect("create the tables");
    let before: Vec<String> = {
        let mut out = Vec::new();
        for n in &nodes {
            out.push(n.show_create_table("app", "t").await.expect("definition"));
        }
        out
    };

    // Refused before anything runs: narrowing rows written by altered nodes onto old ones.
    let err = galera_schema_change(
        &nodes,
        None,
        &GaleraChange::new("ALTER TABLE app.t MODIFY v INT NOT NULL"),
    )
    .await
    .expect_err("a change unsafe in one direction is refused");
    assert!(matches!(err, Error::SchemaRefused { .. }), "{err}");
    assert!(err.to_string().contains("both directions"), "{err}");
    for (n, b) in nodes.iter().zip(&before) {
        assert_eq!(&n.show_create_table("app", "t").await.expect("read"), b);
    }

    let router = Router::start(
        cluster
            .instances()
            .iter()
            .zip(0u32..)
            .map(|(n, o)| (o, SocketAddr::from(([127, 0, 0, 1], n.port()))))
            .collect(),
    )
    .await
    .expect("start the router");
    let through_router = cluster
        .instance(0)
        .connect_options(&cluster.credentials().operator)
        .port(router.read_addr().port());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|n| tokio::spawn(writer(through_router.clone(), n, Arc::clone(&stop))))
        .collect();
    // The load is flowing before the change starts.
    wait_for(Duration::from_secs(30), async || {
        let mut c = cluster.instance(0).connect_root().await.ok()?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT id DIV 1000000000) FROM app.t")
            .fetch_one(&mut c)
            .await
            .ok()?;
        (n == 3).then_some(())
    })
    .await
    .expect("every writer writes");

    let report = galera_schema_change(
        &nodes,
        Some(&router),
        &GaleraChange::new("ALTER TABLE app.t ADD COLUMN note VARCHAR(20) DEFAULT NULL"),
    )
    .await
    .expect("RSU of a change safe in both directions");
    assert_eq!(
        report.nodes.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // With one writer, it goes last.
    let indexed = galera_schema_change(
        &nodes,
        Some(&router),
        &GaleraChange::new("ALTER TABLE app.t ADD INDEX by_v (v)").with_writer(0),
    )
    .await
    .expect("RSU with one writer");
    assert_eq!(
        indexed.nodes.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );

    // Total order only when asked: one statement, replicated to every node at once.
    let toi = galera_schema_change(
        &nodes,
        Some(&router),
        &GaleraChange::new("ALTER TABLE app.other ADD INDEX by_v (v)").total_order(),
    )
    .await
    .expect("TOI");
    assert_eq!(toi.nodes.len(), 3);
    for (o, n) in nodes.iter().enumerate() {
        let d = n
            .show_create_table("app", "other")
            .await
            .expect("definition");
        assert!(d.contains("KEY `by_v`"), "node {o}: {d}");
    }
    // Every node is back in the pool.
    for o in 0..3 {
        assert_eq!(
            router.is_drained(o),
            Some(false),
            "node {o} is still drained"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = BTreeSet::new();
    for w in writers {
        let (ids, _failed) = w.await.expect("writer");
        acknowledged.extend(ids);
    }
    assert!(!acknowledged.is_empty());

    for (o, n) in nodes.iter().enumerate() {
        let g = wait_for(Duration::from_secs(30), async || {
            let g = n.observe().await.ok()?.galera?;
            (g.is_synced() && g.cluster_size == Some(3)).then_some(g)
        })
        .await
        .unwrap_or_else(|_| panic!("node {o} is not Synced in a cluster of 3"));
        assert!(!g.desync, "node {o} is still desynced");
        let d = n.show_create_table("app", "t").await.expect("definition");
        assert!(d.contains("`note` varchar(20)"), "node {o}: {d}");
        assert!(d.contains("KEY `by_v`"), "node {o}: {d}");
    }
    for table in ["t", "other"] {
        let first = ids(&cluster, 0, table).await;
        assert!(
            acknowledged.is_subset(&first),
            "node 0 misses acknowledged rows in app.{table}: {:?}",
            acknowledged.difference(&first).take(5).collect::<Vec<_>>()
        );
        for o in 1..3 {
            // Galera commits are synchronous: once Synced, every node has every row.
            let rows = wait_for(Duration::from_secs(30), async || {
                let rows = ids(&cluster, o, table).await;
                (rows == first).then_some(rows)
            })
            .await
            .unwrap_or_else(|_| panic!("node {o}'s app.{table} differs from node 0's"));
            assert_eq!(rows.len(), first.len());
        }
    }
}
