//! Helpers shared by the local runtime's tests on real servers.

use std::time::Duration;

use switchyard_local::{LocalCluster, LocalRuntime};
use switchyard_plan::topology::{Health, Observed, Role};
use switchyard_plan::{ClusterRuntime, Policy};
use switchyard_testbed::ledger::{CheckConfig, CheckReport, LedgerSnapshot, check};
use switchyard_testbed::load::{LoadConfig, LoadHandle};

/// The rollout policy of the tests: short bounds, so a stuck rollout fails
/// the test quickly instead of hanging it.
pub fn policy() -> Policy {
    Policy {
        // A candidate this far behind catches up well within the switchover's deadline.
        max_lag_seconds: 2,
        halt_after: Duration::from_secs(60),
        retry_backoff: Duration::from_secs(1),
        ..Policy::default()
    }
}

/// The load's default rate: 200 writes per second over 4 writers.
pub const RATE: u32 = 200;

/// Creates the ledger table on the primary and starts the default load
/// (4 writers, 1 reader) through the router at `rate` writes per second.
pub async fn start_load(cluster: &LocalCluster, rate: u32) -> LoadHandle {
    let mut config = LoadConfig::default();
    config.rate_per_sec = rate;
    cluster.start_load(config).await.expect("start the load")
}

/// Checks every acknowledged write on every instance.
pub async fn check_writes(cluster: &LocalCluster, ledger: &LedgerSnapshot) -> CheckReport {
    check(ledger, &cluster.check_targets(), &CheckConfig::default())
        .await
        .expect("check the acknowledged writes")
}

/// Observes the cluster through a fresh runtime.
pub async fn observe(cluster: &LocalCluster) -> Observed {
    LocalRuntime::new(cluster)
        .observe()
        .await
        .expect("observe the cluster")
}

/// Observes the cluster once every instance is ready (a replica restarted
/// under load may report lag for a few seconds after the rollout is done),
/// or, after 30 s, as it is — for `assert_healthy` to report.
pub async fn observe_settled(cluster: &LocalCluster) -> Observed {
    let settled = switchyard_testbed::wait_for(Duration::from_secs(30), async || {
        let observed = observe(cluster).await;
        observed
            .instances
            .iter()
            .all(|i| i.health == Health::Ready)
            .then_some(observed)
    })
    .await;
    match settled {
        Ok(observed) => observed,
        Err(_) => observe(cluster).await,
    }
}

/// Asserts the cluster is whole: one writable primary, every other instance
/// a ready read-only replica of it.
pub fn assert_healthy(observed: &Observed) {
    let primary = observed.primary().expect("a primary");
    for i in &observed.instances {
        assert_eq!(
            i.health,
            Health::Ready,
            "instance {} is not ready: {i:?}",
            i.ordinal
        );
        if i.role == Role::Primary {
            assert!(i.writable, "the primary {} is not writable", i.ordinal);
        } else {
            assert!(!i.writable, "replica {} is writable", i.ordinal);
            assert_eq!(
                i.source,
                Some(primary.ordinal),
                "replica {} does not replicate from the primary",
                i.ordinal
            );
        }
    }
}
