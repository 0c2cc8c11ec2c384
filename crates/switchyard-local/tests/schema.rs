//! Schema changes on the local runtime, on real MariaDB 10.11 servers under load: the
//! pre-flight refuses unsafe and malformed changes without touching anything; a change that
//! needs the replica conversion variable and a switchover rolls to every instance with no
//! acknowledged write lost, and the conversion variable is put back afterwards.

mod common;

use std::time::Duration;

use sqlx::Row as _;
use switchyard_local::{
    ClusterSpec, Error, LocalCluster, LocalRuntime, Op, SchemaRequest, timeline::Event,
};
use switchyard_plan::{ClusterRuntime, Engine, Finished};
use switchyard_testbed::ServerKind;

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

async fn conversions(instance: &switchyard_testbed::Instance) -> String {
    let mut conn = instance.connect_root().await.expect("connect as root");
    sqlx::query("SELECT @@GLOBAL.slave_type_conversions")
        .fetch_one(&mut conn)
        .await
        .expect("read slave_type_conversions")
        .get::<String, _>(0)
}

/// The statements (`Query` events) in every binary log of `instance`.
async fn binlogged_statements(instance: &switchyard_testbed::Instance) -> Vec<String> {
    let mut conn = instance.connect_root().await.expect("connect as root");
    let files: Vec<String> = sqlx::raw_sql("SHOW BINARY LOGS")
        .fetch_all(&mut conn)
        .await
        .expect("SHOW BINARY LOGS")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    assert!(!files.is_empty(), "the binary log is on");
    let mut out = Vec::new();
    for file in files {
        assert!(
            file.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "a binary log name: {file}"
        );
        let sql = format!("SHOW BINLOG EVENTS IN '{file}'");
        for row in sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .expect("SHOW BINLOG EVENTS")
        {
            if row.get::<String, _>("Event_type") == "Query" {
                out.push(row.get::<String, _>("Info"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_is_checked_first_then_rolled_replica_first() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb1011, 3))
        .await
        .expect("start the cluster");
    cluster
        .timeline()
        .observe_with(switchyard_local::Progress::plain());
    let load = common::start_load(&cluster, common::RATE).await;
    let before = definitions(&cluster).await;
    let state_before = cluster.state().read().expect("state").cluster;

    // Unsafe: a column added in the middle shifts every later column.
    let err = cluster
        .schema_target(&SchemaRequest::new(
            "ALTER TABLE app.ledger ADD COLUMN shifted INT DEFAULT 0 AFTER id",
        ))
        .await
        .expect_err("an unsafe change is refused");
    assert!(matches!(err, Error::SchemaRefused { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ADD COLUMN shifted"),
        "names the clause: {text}"
    );
    assert!(text.contains("[column-"), "names the rule: {text}");
    // Malformed: no database, two statements, a second one in an executable comment.
    for bad in [
        "ALTER TABLE ledger ADD COLUMN x INT",
        "ALTER TABLE app.ledger ADD COLUMN x INT; DROP TABLE app.ledger",
        "ALTER TABLE app.ledger ADD COLUMN x INT /*!50000 ; DROP TABLE app.ledger */",
    ] {
        let err = cluster
            .schema_target(&SchemaRequest::new(bad))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::Invalid(_) | Error::SchemaInvalid { .. }),
            "{bad}: {err}"
        );
    }
    // Force without naming a risk is refused too.
    let err = cluster
        .schema_target(
            &SchemaRequest::new("ALTER TABLE app.ledger MODIFY writer VARCHAR(10)").force(" "),
        )
        .await
        .expect_err("an empty risk is refused");
    assert!(err.to_string().contains("risk"), "{err}");
    assert_eq!(definitions(&cluster).await, before, "a refused change ran");
    assert_eq!(
        cluster.state().read().expect("state").cluster,
        state_before,
        "a refused change was recorded"
    );

    // Widening an INT to BIGINT: the replicas need ALL_NON_LOSSY, and the primary copies the
    // table, so it moves behind a switchover.
    let plan = cluster
        .schema_target(&SchemaRequest::new(
            "ALTER TABLE app.ledger MODIFY writer BIGINT",
        ))
        .await
        .expect("a safe-with-conversion change passes");
    let change = plan.target.schema.clone().expect("a schema target");
    assert_eq!(
        change.replica_settings,
        vec![(
            "slave_type_conversions".to_owned(),
            "ALL_NON_LOSSY".to_owned()
        )]
    );
    assert!(!change.primary_online, "{:?}", plan.analysis);

    // Had the analyzer judged it online, the ALTER would carry LOCK=NONE, and the server
    // refuses to copy the table that way: the error says so and nothing changes.
    let mut wrong = change.clone();
    wrong.primary_online = true;
    let err = LocalRuntime::new(&cluster)
        .run_ddl(2, &wrong)
        .await
        .expect_err("a table copy with LOCK=NONE is refused");
    let text = err.to_string();
    assert!(text.contains("without blocking writes"), "{text}");
    assert!(text.contains("1846"), "the server's error: {text}");
    assert!(text.contains("LOCK=SHARED"), "what to do: {text}");
    assert_eq!(definitions(&cluster).await, before, "a refused ALTER ran");

    let engine = Engine::new(
        LocalRuntime::new(&cluster),
        plan.target.clone(),
        common::policy(),
    );
    let finished = tokio::time::timeout(Duration::from_secs(120), engine.run(1_000))
        .await
        .expect("the rollout finishes in time")
        .expect("the engine runs");
    assert_eq!(finished, Finished::Done);

    let after = definitions(&cluster).await;
    for (o, d) in after.iter().enumerate() {
        assert!(
            d.contains("`writer` bigint"),
            "instance {o} was not altered: {d}"
        );
        assert_eq!(d, &after[0], "instance {o} differs from instance 0");
    }
    let observed = common::observe_settled(&cluster).await;
    common::assert_healthy(&observed);
    for i in &observed.instances {
        assert_eq!(i.schema.as_deref(), Some(change.id.as_str()));
    }
    assert_ne!(
        observed.primary().map(|p| p.ordinal),
        Some(0),
        "the primary moved behind a switchover"
    );
    for (i, o) in cluster.testbed().instances().iter().zip(0..) {
        assert_eq!(conversions(i).await, "", "instance {o} kept the conversion");
    }
    // Rolled node by node with the binary log off for the session: no instance logged the
    // ALTER, so no replica applies it twice and no later replica of a replica receives it.
    for (i, o) in cluster.testbed().instances().iter().zip(0..) {
        let statements = binlogged_statements(i).await;
        assert!(
            statements.iter().any(|q| q.contains("CREATE TABLE")),
            "instance {o}: the binary log holds the load's CREATE TABLE: {statements:?}"
        );
        assert!(
            !statements
                .iter()
                .any(|q| q.to_ascii_uppercase().contains("MODIFY WRITER BIGINT")),
            "instance {o} binary-logged the rolling ALTER: {statements:?}"
        );
    }
    let ddl_runs: Vec<u32> = cluster
        .timeline()
        .events()
        .iter()
        .filter_map(|t| match &t.event {
            Event::OpFinished {
                ordinal,
                op: Op::RunDdl { .. },
                error: None,
                ..
            } => Some(*ordinal),
            _ => None,
        })
        .collect();
    assert_eq!(ddl_runs.len(), 3, "one ALTER per instance: {ddl_runs:?}");
    assert_eq!(ddl_runs.last(), Some(&0), "the old primary is altered last");

    // Running it again changes nothing: the table already has the new shape.
    LocalRuntime::new(&cluster)
        .run_ddl(2, &change)
        .await
        .expect("idempotent");
    assert_eq!(definitions(&cluster).await, after);

    let report = load.stop().await;
    let checked = common::check_writes(&cluster, &report.ledger).await;
    assert!(checked.acknowledged > 0);
    assert!(checked.no_lost_writes(), "{checked:?}");

    // Forced past the pre-flight, a change replication cannot apply halts at the first
    // replica with the server's error, and no other instance is touched.
    let forced = cluster
        .schema_target(
            &SchemaRequest::new("ALTER TABLE app.ledger MODIFY writer VARCHAR(10)")
                .force("replicas stop until repaired"),
        )
        .await
        .expect("forced past the pre-flight");
    assert_eq!(
        forced.forced.as_deref(),
        Some("replicas stop until repaired")
    );
    let primary = observed.primary().expect("a primary").ordinal;
    let first = (0..3u32).rev().find(|o| *o != primary).expect("a replica");
    let untouched = definitions(&cluster).await;
    // Rows of the old shape keep coming from the primary.
    let writes = tokio::spawn({
        let options = cluster
            .testbed()
            .instance(primary as usize)
            .connect_options(&cluster.credentials().operator);
        async move {
            let mut conn = sqlx::ConnectOptions::connect(&options)
                .await
                .expect("connect");
            for id in 1..=200i64 {
                sqlx::query(
                    "INSERT INTO app.ledger (id, writer, at_us, payload) VALUES (?, 7, 0, 'x')",
                )
                .bind(-id)
                .execute(&mut conn)
                .await
                .expect("insert on the primary");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut policy = common::policy();
    policy.halt_after = Duration::from_secs(3);
    let engine = Engine::new(LocalRuntime::new(&cluster), forced.target, policy);
    let finished = tokio::time::timeout(Duration::from_secs(60), engine.run(1_000))
        .await
        .expect("the rollout ends in time")
        .expect("the engine runs");
    writes.abort();
    let Finished::Halted(reason) = finished else {
        panic!("a broken replica must halt the change, got {finished:?}");
    };
    let reason = reason.to_string();
    assert!(
        reason.contains("1677"),
        "the server's error number: {reason}"
    );
    assert!(
        reason.contains("cannot be converted from type 'bigint'"),
        "the server's error text: {reason}"
    );
    let now = definitions(&cluster).await;
    for o in 0..3u32 {
        let i = o as usize;
        if o == first {
            assert!(now[i].contains("`writer` varchar(10)"), "{}", now[i]);
        } else {
            assert_eq!(
                now[i], untouched[i],
                "instance {o} was touched after the halt"
            );
        }
    }
}
