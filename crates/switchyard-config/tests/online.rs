//! On real MariaDB 10.11 and MySQL 9.7 clusters of three under a write load: a dynamic change
//! is classified dynamic, rolled out online by the engine (replicas first, the primary last)
//! without any restart or write error, takes effect, and survives a restart with the rendered
//! my.cnf; `performance_schema` is
//! static; bad values and unknown variables are refused with nothing changed; MySQL's
//! read-only probe changes nothing.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{OnlineRuntime, cfg, global, metadata, servers, uptime, wait_global};
use sqlx::Row as _;
use switchyard_config::{
    ChangeRequest, Classification, ConfigError, Mutability, classify, my_cnf_lines, plan_change,
};
use switchyard_plan::history::History;
use switchyard_plan::versions::Flavor;
use switchyard_plan::{Engine, Finished, Policy, Timestamp};
use switchyard_testbed::load::{Endpoints, Load, LoadConfig, prepare};
use switchyard_testbed::router::Router;
use switchyard_testbed::{ServerKind, replication};

const CHANGED: [&str; 2] = ["innodb_buffer_pool_size", "max_connections"];

async fn dynamic_change_online_then_restart(kind: ServerKind) {
    let started = Instant::now();
    let cluster = replication(kind, 3).await.expect("cluster");
    let servers = servers(&cluster);
    let before = metadata(&servers, &[CHANGED[0], CHANGED[1], "performance_schema"]).await;
    let flavor = before[0].version.flavor;
    let version = before[0].version.version;
    assert_eq!(
        flavor,
        if kind == ServerKind::Mysql97 {
            Flavor::Mysql
        } else {
            Flavor::Mariadb
        }
    );

    // Classification from the live servers.
    for meta in &before {
        assert_eq!(
            classify(meta, "innodb_buffer_pool_size", "128M"),
            Classification::Dynamic
        );
        assert_eq!(
            classify(meta, "max_connections", "300"),
            Classification::Dynamic
        );
        assert_eq!(
            classify(meta, "performance_schema", "ON"),
            Classification::Static
        );
        assert_eq!(
            meta.get("performance_schema").map(|v| v.mutability),
            Some(Mutability::Static)
        );
        assert!(matches!(
            classify(meta, "max_connections", "-5"),
            Classification::Invalid { reason } if reason.contains("out of range")
        ));
    }

    let mut history = History::new(flavor);
    history.ensure(flavor, version, &cfg(&[]), Timestamp(1));
    let first = history.latest().expect("r1").revision.clone();

    // A static change plans a rolling restart (and is not applied here).
    let mut scratch = history.clone();
    let restart = plan_change(
        &mut scratch,
        &ChangeRequest::new(version, cfg(&[("performance_schema", "ON")])),
        &before,
        Timestamp(2),
    )
    .expect("valid");
    assert!(!restart.is_online(), "performance_schema needs a restart");

    // The dynamic change, rolled out by the engine.
    let request = ChangeRequest::new(
        version,
        cfg(&[
            ("Innodb-Buffer-Pool-Size", "128M"),
            ("max_connections", "300"),
        ]),
    );
    let plan = plan_change(&mut history, &request, &before, Timestamp(2)).expect("valid");
    let online = plan.target.online.clone().expect("every change is dynamic");
    assert_eq!(online.from_hash, first.hash);
    assert_eq!(
        online.variables,
        vec![
            ("innodb_buffer_pool_size".to_owned(), "134217728".to_owned()),
            ("max_connections".to_owned(), "300".to_owned()),
        ]
    );
    let pids: Vec<Option<u32>> = cluster.instances().iter().map(|i| i.pid()).collect();
    let mut uptimes = Vec::new();
    for i in cluster.instances() {
        uptimes.push(uptime(i).await);
    }

    // A write load through the router to the primary while the change rolls.
    let backends = cluster
        .instances()
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let addr: SocketAddr = ([127, 0, 0, 1], i.port()).into();
            (u32::try_from(n).expect("small"), addr)
        })
        .collect();
    let router = Router::start(backends).await.expect("router");
    router
        .set_primary(Some(0))
        .await
        .expect("route writes to instance 0");
    let op = &cluster.credentials().operator;
    prepare(&cluster.primary().connect_options(op), "app.ledger")
        .await
        .expect("ledger table");
    let load = Load::start(
        LoadConfig::default(),
        Endpoints::from(&router),
        cluster.credentials(),
    )
    .expect("load");
    switchyard_testbed::wait_for(Duration::from_secs(20), async || {
        (load.acknowledged() >= 20).then_some(())
    })
    .await
    .expect("the load writes");

    let runtime = Arc::new(OnlineRuntime::new(flavor, version, servers.clone(), &first));
    let engine = Engine::new(Arc::clone(&runtime), plan.target.clone(), Policy::default());
    assert_eq!(engine.run(20).await.expect("engine"), Finished::Done);
    let report = load.stop().await;
    assert_eq!(
        *runtime.applied.lock().expect("lock"),
        vec![2, 1, 0],
        "replicas first (highest ordinal first), the primary last"
    );
    assert_eq!(runtime.revision_numbers(), vec![2, 2, 2]);
    assert!(report.acknowledged() > 20, "writes went on");
    assert!(
        report.ledger.errors.is_empty() && report.ledger.unknown.is_empty(),
        "no write failed: {:?}",
        report.ledger.errors.first()
    );

    for (n, i) in cluster.instances().iter().enumerate() {
        assert_eq!(i.pid(), pids[n], "{} was not restarted", i.name());
        assert!(
            uptime(i).await >= uptimes[n],
            "{} uptime went back",
            i.name()
        );
        wait_global(i, "max_connections", "300").await;
        wait_global(i, "innodb_buffer_pool_size", "134217728").await;
    }

    // Nothing valid changes nothing: bad values and unknown variables are refused.
    let versions_before = history.entries.len();
    for (name, value, rule) in [
        ("max_connections", "-5", "out of range"),
        ("innodb_buffer_pool_size", "banana", "not an integer"),
        ("no_such_variable_x", "1", "does not know"),
    ] {
        let mut config = plan.to.config.clone();
        config.insert(name.to_owned(), value.to_owned());
        let err = plan_change(
            &mut history,
            &ChangeRequest::new(version, config),
            &metadata(&servers, &[name]).await,
            Timestamp(3),
        )
        .expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Rejected { .. }), "{text}");
        assert!(text.contains(name) && text.contains(rule), "{text}");
        assert!(
            text.contains(servers[0].label()),
            "names the instance: {text}"
        );
    }
    assert_eq!(history.entries.len(), versions_before, "nothing recorded");
    for i in cluster.instances() {
        assert_eq!(global(i, "max_connections").await, "300", "nothing changed");
    }

    // The rendered configuration keeps the online values across a restart.
    let replica = &cluster.replicas()[0];
    let lines = my_cnf_lines(&plan.to.config);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    replica.stop().await.expect("stop");
    replica
        .start_with(kind, &lines)
        .await
        .expect("restart with the revision's my.cnf");
    assert_eq!(global(replica, "max_connections").await, "300");
    assert_eq!(
        global(replica, "innodb_buffer_pool_size").await,
        "134217728"
    );
    assert!(
        !replica.datadir().join("mysqld-auto.cnf").exists(),
        "SET PERSIST is never used"
    );
    eprintln!(
        "{kind:?}: online change and restart in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_1011_dynamic_change_is_online_and_survives_a_restart() {
    dynamic_change_online_then_restart(ServerKind::Mariadb1011).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_97_dynamic_change_is_online_and_survives_a_restart() {
    dynamic_change_online_then_restart(ServerKind::Mysql97).await;
}

/// MySQL's probe for dynamic vs static changes nothing the server records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_97_probe_changes_nothing() {
    let cluster = replication(ServerKind::Mysql97, 1).await.expect("server");
    let server = &servers(&cluster)[0];
    let primary = cluster.primary();
    let names = [
        "max_connections",
        "innodb_buffer_pool_size",
        "performance_schema",
        "event_scheduler",
    ];
    let read_info = async || {
        let mut conn = primary.connect_root().await.expect("root");
        let rows = sqlx::query(
            "SELECT VARIABLE_NAME, CAST(VARIABLE_SOURCE AS CHAR), CAST(SET_TIME AS CHAR) \
             FROM performance_schema.variables_info WHERE VARIABLE_NAME IN \
             ('max_connections', 'innodb_buffer_pool_size', 'performance_schema', 'event_scheduler') \
             ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("variables_info");
        rows.iter()
            .map(|r| {
                (
                    r.try_get::<String, _>(0).expect("name"),
                    r.try_get::<String, _>(1).expect("source"),
                    r.try_get::<Option<String>, _>(2).expect("set time"),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = read_info().await;
    let values: Vec<String> = {
        let mut v = Vec::new();
        for n in names {
            v.push(global(primary, n).await);
        }
        v
    };
    let meta = server.metadata(&names).await.expect("metadata");
    assert_eq!(
        meta.get("max_connections").map(|v| v.mutability),
        Some(Mutability::Dynamic)
    );
    assert_eq!(
        meta.get("innodb_buffer_pool_size").map(|v| v.mutability),
        Some(Mutability::Dynamic)
    );
    assert_eq!(
        meta.get("event_scheduler").map(|v| v.mutability),
        Some(Mutability::Dynamic)
    );
    assert_eq!(
        meta.get("performance_schema").map(|v| v.mutability),
        Some(Mutability::Static)
    );
    assert_eq!(
        meta.get("version").map(|v| v.mutability),
        Some(Mutability::Unknown),
        "not probed"
    );
    assert_eq!(
        read_info().await,
        before,
        "no variable marked as set at run time"
    );
    assert!(before.iter().all(|(_, _, set)| set.is_none()), "{before:?}");
    for (n, name) in names.iter().enumerate() {
        assert_eq!(global(primary, name).await, values[n], "{name} unchanged");
    }
}
