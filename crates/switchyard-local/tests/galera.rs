//! Schema changes on a Galera cluster through the engine, on three real MariaDB 10.11 nodes
//! with Galera 4 behind the testbed router, under load through the router's writer.
//!
//! The pre-flight refuses, before anything runs, a change unsafe in either direction (every
//! node may take writes), seed 003's INT to VARCHAR and a column added in the middle (each
//! with its rule named), and a change that needs a replica conversion; then the engine rolls a
//! safe change node by node as a Rolling Schema Upgrade (each node drained, altered with RSU,
//! returned once Synced; the writer last, its writes moved first): every node stays in the
//! cluster, ends with the new definition and every acknowledged write.

use std::time::Duration;

use switchyard_local::{ClusterSpec, Error, LocalCluster, LocalRuntime, Op, SchemaRequest};
use switchyard_plan::topology::{Observed, TopologyKind, WsrepState};
use switchyard_plan::{ClusterRuntime, Engine, Finished, Policy};
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, check};
use switchyard_testbed::load::LoadConfig;

async fn observe(cluster: &LocalCluster) -> Observed {
    LocalRuntime::new(cluster)
        .observe()
        .await
        .expect("observe the cluster")
}

async fn definitions(cluster: &LocalCluster) -> Vec<String> {
    let mut out = Vec::new();
    for o in 0..3 {
        out.push(
            cluster
                .handle(o)
                .expect("handle")
                .show_create_table("app", "ledger")
                .await
                .expect("SHOW CREATE TABLE"),
        );
    }
    out
}

/// The nodes the engine drained, in order.
fn drained(cluster: &LocalCluster) -> Vec<u32> {
    cluster
        .timeline()
        .events()
        .iter()
        .filter_map(|t| match &t.event {
            switchyard_local::timeline::Event::OpFinished {
                ordinal,
                op: Op::Drain,
                error: None,
                ..
            } => Some(*ordinal),
            _ => None,
        })
        .collect()
}

async fn refusal(cluster: &LocalCluster, request: SchemaRequest) -> String {
    let err = cluster.schema_target(&request).await.expect_err("refused");
    assert!(matches!(err, Error::SchemaRefused { .. }), "{err}");
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsu_rolls_node_by_node_through_the_engine() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Galera, 3))
        .await
        .expect("start the Galera cluster");
    let mut config = LoadConfig::default();
    config.rate_per_sec = 200;
    let load = cluster.start_load(config).await.expect("start the load");
    let before = definitions(&cluster).await;

    // Every node may take writes: a widening is a narrowing the other way.
    let text = refusal(
        &cluster,
        SchemaRequest::new("ALTER TABLE app.ledger MODIFY writer BIGINT"),
    )
    .await;
    assert!(text.contains("both directions"), "{text}");
    // With one writer it needs a conversion, which Galera's applier does not do.
    let text = refusal(
        &cluster,
        SchemaRequest::new("ALTER TABLE app.ledger MODIFY writer BIGINT").one_writer(),
    )
    .await;
    assert!(text.contains("conversion"), "{text}");
    // Seed 003: INT to VARCHAR, and a column added in the middle, each with its rule.
    for (statement, clause, rule) in [
        (
            "ALTER TABLE app.ledger MODIFY writer VARCHAR(10)",
            "MODIFY writer",
            "[type-family-change]",
        ),
        (
            "ALTER TABLE app.ledger ADD COLUMN shifted INT DEFAULT 0 AFTER id",
            "ADD COLUMN shifted",
            "[column-",
        ),
    ] {
        for request in [
            SchemaRequest::new(statement),
            SchemaRequest::new(statement).one_writer(),
        ] {
            let text = refusal(&cluster, request).await;
            assert!(text.contains(clause), "names the clause: {text}");
            assert!(text.contains(rule), "names the rule: {text}");
        }
    }
    assert_eq!(definitions(&cluster).await, before, "a refused change ran");
    assert!(
        cluster
            .state()
            .read()
            .expect("state")
            .cluster
            .schema
            .changes
            .is_empty(),
        "a refused change was recorded"
    );

    // The observation: a Galera topology, every node Synced in a primary component of 3.
    let observed = observe(&cluster).await;
    assert_eq!(observed.kind, TopologyKind::Galera);
    for i in &observed.instances {
        let g = i.galera.as_ref().expect("a Galera node's state");
        assert_eq!(g.state, WsrepState::Synced, "node {}: {g}", i.ordinal);
        assert!(
            g.primary_component && g.cluster_size == 3,
            "node {}: {g}",
            i.ordinal
        );
    }

    let plan = cluster
        .schema_target(&SchemaRequest::new(
            "ALTER TABLE app.ledger ADD COLUMN note VARCHAR(20) DEFAULT NULL",
        ))
        .await
        .expect("a change safe in both directions passes");
    let policy = Policy {
        halt_after: Duration::from_secs(60),
        retry_backoff: Duration::from_secs(1),
        drain: Duration::from_secs(1),
        ..Policy::default()
    };
    let engine = Engine::new(LocalRuntime::new(&cluster), plan.target, policy);
    let finished = engine.run(10_000).await.expect("the engine runs");
    assert_eq!(finished, Finished::Done);
    // The writer (node 0) last; its writes moved to another node first.
    assert_eq!(drained(&cluster), vec![2, 1, 0]);
    assert_ne!(cluster.primary().expect("primary"), 0, "the writes moved");
    for o in 0..3 {
        assert_eq!(
            cluster.router().is_drained(o),
            Some(false),
            "node {o} is out"
        );
    }

    let ledger = load.stop().await.ledger;
    let report = check(&ledger, &cluster.check_targets(), &CheckConfig::default())
        .await
        .expect("check the acknowledged writes");
    assert!(report.acknowledged > 0, "the load wrote");
    assert!(report.no_lost_writes(), "{report:?}");
    let after = definitions(&cluster).await;
    for (o, d) in after.iter().enumerate() {
        assert!(d.contains("`note` varchar(20)"), "node {o}: {d}");
        assert_eq!(d, &after[0], "node {o} differs from node 0");
    }
    let observed = observe(&cluster).await;
    for i in &observed.instances {
        let g = i.galera.as_ref().expect("galera");
        assert!(
            g.is_synced() && g.cluster_size == 3,
            "node {}: {g}",
            i.ordinal
        );
    }
    cluster.stop_supervisor().await;
}
