//! A whole version upgrade of a 3-instance MariaDB cluster under load, by
//! the engine over the local runtime.

mod common;

use std::time::Duration;

use switchyard_local::summary::SummaryInput;
use switchyard_local::timeline::Event;
use switchyard_local::{ClusterSpec, LocalCluster, LocalRuntime, Monitor, StartedBy, Summary};
use switchyard_plan::{Engine, Finished};
use switchyard_testbed::ServerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_10_5_to_10_11_under_load_loses_no_write_and_never_has_two_writers() {
    let started = std::time::Instant::now();
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb105, 3))
        .await
        .expect("start the cluster");
    cluster
        .timeline()
        .observe_with(switchyard_local::Progress::plain());
    let load = common::start_load(&cluster, common::RATE).await;
    let monitor = Monitor::start(&cluster, Duration::from_millis(50));
    let target = cluster
        .upgrade_target(ServerKind::Mariadb1011)
        .await
        .expect("a target on 10.11");
    assert_eq!(target.revision.number, 2);
    assert_eq!((target.version.major, target.version.minor), (10, 11));

    cluster.timeline().phase("upgrade to MariaDB 10.11");
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

    let origin = load.ledger().start();
    let report = load.stop().await;
    let writers = monitor.stop().await;
    let check = common::check_writes(&cluster, &report.ledger).await;
    let summary = Summary::build(&SummaryInput {
        events: &cluster.timeline().events(),
        origin,
        ledger: Some(&report.ledger),
        check: Some(&check),
        read_errors: report.read_errors.len(),
        monitor: Some(&writers),
        history: Some(&cluster.history().expect("history")),
        wall: started.elapsed(),
    });
    eprintln!("{summary}");

    assert!(
        report.acknowledged() > 100,
        "the load barely ran: {}",
        report.acknowledged()
    );
    assert!(
        check.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        check.missing
    );
    assert!(
        writers.samples > 20,
        "the monitor barely sampled: {writers:?}"
    );
    assert!(
        writers.violations.is_empty(),
        "two writable instances: {:?}",
        writers.violations
    );
    assert_eq!(writers.max_writable, 1);

    // Every instance runs the target, the primary moved once, and each
    // server was started exactly once (by its restart onto the target).
    let observed = common::observe_settled(&cluster).await;
    common::assert_healthy(&observed);
    for i in &observed.instances {
        assert!(
            i.runs(&target.revision),
            "instance {} is on {}",
            i.ordinal,
            i.revision
        );
        assert_eq!(i.version, target.version);
    }
    assert_eq!(observed.primary().map(|p| p.ordinal), Some(1));
    assert_eq!(summary.switchovers.len(), 1, "{:?}", summary.switchovers);
    let starts: Vec<(u32, StartedBy)> = cluster
        .timeline()
        .events()
        .iter()
        .filter_map(|t| match &t.event {
            Event::Started {
                ordinal,
                by,
                error: None,
                ..
            } => Some((*ordinal, *by)),
            _ => None,
        })
        .collect();
    let mut ordinals: Vec<u32> = starts.iter().map(|(o, _)| *o).collect();
    ordinals.sort_unstable();
    assert_eq!(ordinals, [0, 1, 2], "each instance starts once: {starts:?}");
    assert!(
        starts.iter().all(|(_, by)| *by == StartedBy::Restart),
        "{starts:?}"
    );
    // mariadb-upgrade ran on every instance.
    for instance in cluster.testbed().instances() {
        let info = ["mariadb_upgrade_info", "mysql_upgrade_info"]
            .iter()
            .find_map(|f| std::fs::read_to_string(instance.datadir().join(f)).ok())
            .expect("mariadb-upgrade left its info file");
        assert!(info.starts_with("10.11."), "{}: {info:?}", instance.name());
    }
}
