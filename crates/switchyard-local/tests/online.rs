//! A dynamic variable rolled out online: no instance restarts, the value
//! takes effect everywhere, and it survives a later restart because the
//! revision's my.cnf holds it.

mod common;

use std::time::Duration;

use sqlx::Row as _;
use switchyard_local::{Apply, ClusterSpec, LocalCluster, LocalRuntime};
use switchyard_plan::{Engine, Finished};
use switchyard_testbed::ServerKind;

const POOL: &str = "innodb_buffer_pool_size";
const BYTES: u64 = 128 * 1024 * 1024;

async fn pool_size(instance: &switchyard_testbed::Instance) -> u64 {
    let mut conn = instance.connect_root().await.expect("connect as root");
    sqlx::query("SELECT @@GLOBAL.innodb_buffer_pool_size")
        .fetch_one(&mut conn)
        .await
        .expect("read the buffer pool size")
        .get::<u64, _>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_variable_is_applied_online_without_restarting_any_instance() {
    let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb1011, 3))
        .await
        .expect("start the cluster");
    cluster
        .timeline()
        .observe_with(switchyard_local::Progress::plain());
    let load = common::start_load(&cluster, common::RATE).await;
    let tb = cluster.testbed();
    let mut before = Vec::new();
    for (i, o) in tb.instances().iter().zip(0u32..) {
        assert_ne!(pool_size(i).await, BYTES);
        let uptime = cluster
            .handle(o)
            .expect("handle")
            .observe()
            .await
            .expect("observe")
            .uptime;
        before.push((i.pid().expect("running"), uptime));
    }
    let clock = std::time::Instant::now();

    let target = cluster
        .config_target(&[(POOL, &BYTES.to_string())], Apply::Online)
        .expect("a target");
    assert!(target.online.is_some());
    cluster.timeline().phase("innodb_buffer_pool_size online");
    let engine = Engine::new(
        LocalRuntime::new(&cluster),
        target.clone(),
        common::policy(),
    );
    let finished = tokio::time::timeout(Duration::from_secs(60), engine.run(1_000))
        .await
        .expect("the rollout finishes in time")
        .expect("the engine runs");
    assert_eq!(finished, Finished::Done);

    let elapsed = clock.elapsed();
    for ((i, o), (pid, uptime)) in tb.instances().iter().zip(0u32..).zip(&before) {
        assert_eq!(i.pid(), Some(*pid), "instance {o} was restarted");
        let now = cluster
            .handle(o)
            .expect("handle")
            .observe()
            .await
            .expect("observe")
            .uptime;
        // Uptime counts whole seconds: allow one for rounding.
        assert!(
            now + Duration::from_secs(1) >= *uptime + elapsed,
            "instance {o}'s uptime went from {uptime:?} to {now:?} in {elapsed:?}: it restarted"
        );
        assert_eq!(
            pool_size(i).await,
            BYTES,
            "instance {o} does not run the new value"
        );
    }
    assert!(
        cluster.timeline().starts().is_empty(),
        "a server was started"
    );
    let observed = common::observe_settled(&cluster).await;
    common::assert_healthy(&observed);
    assert!(observed.instances.iter().all(|i| i.runs(&target.revision)));
    assert_eq!(
        observed.primary().map(|p| p.ordinal),
        Some(0),
        "no switchover"
    );

    // A later restart keeps the value: the supervisor starts a killed replica
    // on its current revision, whose my.cnf holds it.
    let victim = tb.instance(2);
    let old_pid = victim.pid();
    victim.kill9().expect("kill -9 instance 2");
    let back = switchyard_testbed::wait_for(Duration::from_secs(60), async || {
        let o = common::observe(&cluster).await;
        (victim.pid().is_some() && victim.pid() != old_pid && o.instances[2].health.is_up())
            .then_some(o)
    })
    .await
    .expect("the supervisor brings instance 2 back");
    assert!(back.instances[2].runs(&target.revision));
    assert_eq!(
        pool_size(victim).await,
        BYTES,
        "the restarted instance lost the value"
    );
    assert_eq!(cluster.timeline().starts().get(&2), Some(&1));

    let report = load.stop().await;
    let check = common::check_writes(&cluster, &report.ledger).await;
    assert!(
        check.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        check.missing
    );
    assert!(report.acknowledged() > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_supervisor_the_engine_recovers_a_crashed_instance_on_its_current_revision() {
    let spec = ClusterSpec::new(ServerKind::Mariadb1011, 3).supervised(false);
    let cluster = LocalCluster::start(spec).await.expect("start the cluster");
    cluster
        .timeline()
        .observe_with(switchyard_local::Progress::plain());
    let first = cluster.history().expect("history").entries[0]
        .revision
        .clone();
    cluster
        .testbed()
        .instance(2)
        .kill9()
        .expect("kill -9 instance 2");
    let crashed = switchyard_testbed::wait_for(Duration::from_secs(10), async || {
        let o = common::observe(&cluster).await;
        (o.instances[2].health == switchyard_plan::Health::Crashed).then_some(o)
    })
    .await
    .expect("the runtime reports the crash");
    assert!(crashed.instances[2].runs(&first));

    let target = cluster
        .config_target(&[(POOL, &BYTES.to_string())], Apply::Online)
        .expect("a target");
    let runtime = std::sync::Arc::new(LocalRuntime::new(&cluster));
    let engine = Engine::new(
        std::sync::Arc::clone(&runtime),
        target.clone(),
        common::policy(),
    );
    let finished = tokio::time::timeout(Duration::from_secs(60), engine.run(1_000))
        .await
        .expect("the rollout finishes in time")
        .expect("the engine runs");
    assert_eq!(finished, Finished::Done);

    // Recovered once, by the engine, on the revision it ran (the first),
    // before the change reached it online.
    let starts: Vec<_> = cluster
        .timeline()
        .events()
        .into_iter()
        .filter_map(|t| match t.event {
            switchyard_local::Event::Started {
                ordinal,
                revision,
                by,
                error: None,
            } => Some((ordinal, revision, by)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(2, first, switchyard_local::StartedBy::Recover)]);
    // Recovering a running instance again is harmless and starts nothing.
    switchyard_plan::ClusterRuntime::recover(runtime.as_ref(), 2)
        .await
        .expect("recover is idempotent");
    assert_eq!(cluster.timeline().starts().get(&2), Some(&1));
    let observed = common::observe_settled(&cluster).await;
    common::assert_healthy(&observed);
    assert!(observed.instances.iter().all(|i| i.runs(&target.revision)));
    assert_eq!(pool_size(cluster.testbed().instance(2)).await, BYTES);
}
