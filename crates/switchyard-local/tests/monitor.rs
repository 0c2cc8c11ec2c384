//! The monitor catches broken invariants: it is not a test that can only pass.

use std::time::Duration;

use switchyard_local::{ClusterSpec, Invariant, LocalCluster, Monitor};
use switchyard_testbed::ServerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_reports_a_second_writer_and_a_second_instance_out_of_service() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb1011, 3))
        .await
        .expect("start the cluster");
    let monitor = Monitor::start(&cluster, Duration::from_millis(50));
    // A replica made writable behind the engine's back, then two replicas
    // drained at once.
    let replica = cluster.handle(2).expect("handle");
    replica.unfence().await.expect("make replica 2 writable");
    let router = cluster.router();
    router.drain(1, Duration::ZERO).await.expect("drain 1");
    router.drain(2, Duration::ZERO).await.expect("drain 2");
    switchyard_testbed::wait_for(Duration::from_secs(10), async || {
        let seen = monitor.snapshot();
        (seen.of(Invariant::OneWriter).next().is_some()
            && seen.of(Invariant::OneOutOfService).next().is_some())
        .then_some(())
    })
    .await
    .expect("the monitor reports both broken invariants");
    let report = monitor.stop().await;
    assert!(report.samples >= 1, "{report:?}");
    let writers: Vec<_> = report.of(Invariant::OneWriter).collect();
    assert!(
        !writers.is_empty(),
        "a second writer went unnoticed: {report:?}"
    );
    assert!(writers[0].detail.contains("[0, 2]"), "{:?}", writers[0]);
    assert!(
        report.of(Invariant::OneOutOfService).next().is_some(),
        "{report:?}"
    );
    assert_eq!(report.max_writable, 2);
    assert_eq!(report.max_out_of_service, 2);
    assert_eq!(report.of(Invariant::NoNewerSource).count(), 0);
}
