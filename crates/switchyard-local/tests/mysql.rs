//! The local runtime on MySQL 9.7: a static configuration change rolled by
//! restarts, the primary last behind a switchover (super_read_only fence,
//! `CHANGE REPLICATION SOURCE`), under load.

mod common;

use std::time::Duration;

use switchyard_local::{Apply, ClusterSpec, LocalCluster, LocalRuntime, Monitor};
use switchyard_plan::{Engine, Finished};
use switchyard_testbed::ServerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_change_on_mysql_restarts_each_instance_once_with_one_switchover() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mysql97, 3))
        .await
        .expect("start the cluster");
    cluster
        .timeline()
        .observe_with(switchyard_local::Progress::plain());
    // MySQL replicas apply slower here than MariaDB's: a lighter load keeps
    // the catch-up after each restart short.
    let load = common::start_load(&cluster, common::RATE / 2).await;
    let monitor = Monitor::start(&cluster, Duration::from_millis(50));
    let target = cluster
        .config_target(&[("innodb_read_io_threads", "8")], Apply::Restart)
        .expect("a target");
    assert!(target.online.is_none());
    cluster
        .timeline()
        .phase("innodb_read_io_threads=8 by rolling restart");
    let engine = Engine::new(
        LocalRuntime::new(&cluster),
        target.clone(),
        common::policy(),
    );
    let finished = tokio::time::timeout(Duration::from_secs(180), engine.run(5_000))
        .await
        .expect("the rollout finishes in time")
        .expect("the engine runs");
    assert_eq!(finished, Finished::Done);

    let report = load.stop().await;
    let writers = monitor.stop().await;
    let check = common::check_writes(&cluster, &report.ledger).await;
    assert!(
        check.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        check.missing
    );
    assert!(report.acknowledged() > 100);
    assert!(
        writers.violations.is_empty(),
        "invariants broken: {:?}",
        writers.violations
    );
    assert_eq!(writers.max_writable, 1);

    let starts = cluster.timeline().starts();
    assert_eq!(
        starts.values().copied().collect::<Vec<_>>(),
        [1, 1, 1],
        "{starts:?}"
    );
    let observed = common::observe_settled(&cluster).await;
    common::assert_healthy(&observed);
    assert!(observed.instances.iter().all(|i| i.runs(&target.revision)));
    assert_eq!(observed.primary().map(|p| p.ordinal), Some(1));
    for o in 0..3 {
        let v = cluster
            .handle(o)
            .expect("handle")
            .global_values(&["innodb_read_io_threads"])
            .await
            .expect("read the variable");
        assert_eq!(
            v["innodb_read_io_threads"].as_deref(),
            Some("8"),
            "instance {o}"
        );
    }
}
