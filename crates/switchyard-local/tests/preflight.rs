//! The upgrade pre-flight on real servers: a MariaDB 10.11 cluster whose configuration names
//! `innodb_change_buffering` (removed in 11.0) is refused an upgrade to 11.8, naming the
//! option, before any instance restarts: when the target is made, and again by the runtime
//! when a target made elsewhere asks for a version-changing restart.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_local::timeline::Event;
use switchyard_local::{ClusterSpec, Error, LocalCluster, LocalRuntime, server_version};
use switchyard_plan::decide::Target;
use switchyard_plan::topology::Timestamp;
use switchyard_plan::{Engine, Finished, Policy};
use switchyard_testbed::ServerKind;

/// The server's uptime, which a restart resets.
async fn uptime(cluster: &LocalCluster, ordinal: u32) -> Duration {
    cluster
        .handle(ordinal)
        .expect("a handle")
        .observe()
        .await
        .unwrap_or_else(|e| panic!("observe instance {ordinal}: {e}"))
        .uptime
}

fn starts(cluster: &LocalCluster) -> usize {
    cluster
        .timeline()
        .events()
        .iter()
        .filter(|t| matches!(t.event, Event::Started { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_whose_config_names_a_removed_option_is_refused_before_any_restart() {
    let config = BTreeMap::from([("innodb_change_buffering".to_owned(), "none".to_owned())]);
    let cluster =
        LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb1011, 2).with_config(config))
            .await
            .expect("start the cluster");

    // Refused when the target is made: nothing recorded.
    let err = cluster
        .upgrade_target(ServerKind::Mariadb118)
        .await
        .expect_err("11.8 removed innodb_change_buffering");
    assert!(matches!(err, Error::UpgradeRefused(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("innodb_change_buffering") && text.contains("11.0"),
        "the refusal names the option and the release that removed it: {text}"
    );
    assert_eq!(
        cluster.history().expect("the history").entries.len(),
        1,
        "a refused upgrade records no revision"
    );

    // A target made without the pre-flight (an embedder's, or a resumed record) is refused by
    // the runtime before it stops the first instance: the rollout halts, naming the option.
    let to = server_version(ServerKind::Mariadb118)
        .await
        .expect("the 11.8 version");
    let entry = cluster
        .state()
        .update_cluster(|c| {
            let config = c.history.latest().expect("revision 1").config.clone();
            Ok(c.history
                .ensure(c.flavor, to, &config, Timestamp(0))
                .0
                .clone())
        })
        .expect("record an 11.8 revision by hand");
    let before: Vec<Duration> = vec![uptime(&cluster, 0).await, uptime(&cluster, 1).await];
    let policy = Policy {
        halt_after: Duration::from_secs(3),
        retry_backoff: Duration::from_millis(500),
        ..Policy::default()
    };
    let engine = Engine::new(
        LocalRuntime::new(&cluster),
        Target::new(entry.revision, entry.version),
        policy,
    );
    let finished = tokio::time::timeout(Duration::from_secs(120), engine.run(1_000))
        .await
        .expect("the engine stops in time")
        .expect("the engine runs");
    let Finished::Halted(reason) = finished else {
        panic!("the rollout must halt, not {finished:?}");
    };
    assert!(
        reason.to_string().contains("innodb_change_buffering"),
        "the halt names the option: {reason}"
    );
    assert_eq!(starts(&cluster), 0, "no instance was restarted");
    for (o, before) in (0..2).zip(before) {
        let now = uptime(&cluster, o).await;
        assert!(
            now >= before,
            "instance {o} restarted (uptime {before:?}, then {now:?})"
        );
        let version = cluster
            .handle(o)
            .expect("a handle")
            .observe()
            .await
            .expect("observe")
            .version
            .version;
        assert_eq!((version.major, version.minor), (10, 11), "instance {o}");
    }
}
