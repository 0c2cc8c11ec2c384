//! Each check bites: one MariaDB 10.11 cluster of three instances (no engine,
//! no supervisor) is put, one case after another, in a situation the check
//! must report, and the check must report it. The servers are shared by the
//! cases, in an order that needs no repair between them:
//!
//! 1. a healthy cluster: no check reports anything;
//! 2. `monitor`: an instance frozen with SIGSTOP makes a sample slower than
//!    the bound;
//! 3. `no-writer`: the primary keeps `read_only` off but holds the fence's
//!    backup lock (`BACKUP STAGE BLOCK_COMMIT`), so nobody can commit;
//! 4. `out-of-service`: two replicas killed outside any fault;
//! 5. `recovery`: a replica killed by a fault comes back on MariaDB 11.8;
//! 6. `newer-source`: the primary restarted on 11.8 under a 10.11 replica;
//! 7. `one-writer`, `split-brain` and lost writes: a replica detached from
//!    its source keeps `read_only` on (which privileged clients pass) and a
//!    privileged client writes to it and to the primary at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_local::{ClusterSpec, LocalCluster};
use switchyard_sim::fault::FaultPlan;
use switchyard_sim::monitor::{FenceProbe, Monitor, MonitorConfig, MonitorReport};
use switchyard_sim::scenario::Scenario;
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, Ledger, check};
use switchyard_testbed::load::{AccountKind, Endpoints, Load, LoadConfig, prepare};

const WITHIN: Duration = Duration::from_secs(20);

fn monitor(cluster: &LocalCluster, plan: &Arc<FaultPlan>, config: MonitorConfig) -> Monitor {
    let n = u32::try_from(cluster.len()).expect("a few instances");
    let handles = (0..n)
        .map(|o| cluster.handle(o).expect("a handle"))
        .collect();
    let probes = cluster
        .testbed()
        .instances()
        .iter()
        .map(|i| FenceProbe::new(i.connect_options(&cluster.credentials().operator)))
        .collect();
    let ports: Vec<u16> = cluster
        .testbed()
        .instances()
        .iter()
        .map(switchyard_testbed::Instance::port)
        .collect();
    Monitor::start(
        handles,
        probes,
        &ports,
        cluster.state().clone(),
        Arc::clone(cluster.timeline()),
        Arc::clone(plan),
        config,
    )
}

fn no_faults() -> Arc<FaultPlan> {
    FaultPlan::new(Vec::new(), "none".into())
}

/// Waits until the monitor has reported `check`, or `WITHIN` passed; returns
/// what it saw.
async fn until_reported(m: &Monitor, check: &str) -> MonitorReport {
    let deadline = Instant::now() + WITHIN;
    loop {
        let seen = m.snapshot();
        if seen.violations.iter().any(|v| v.check == check) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reported(seen: &MonitorReport, check: &str) -> bool {
    seen.violations.iter().any(|v| v.check == check)
}

async fn root(cluster: &LocalCluster, o: usize, sql: &str) -> sqlx::mysql::MySqlConnection {
    let mut conn = cluster.testbed().instances()[o]
        .connect_root()
        .await
        .expect("root connects");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn
}

async fn restart_on(cluster: &LocalCluster, o: usize, kind: ServerKind) {
    let i = &cluster.testbed().instances()[o];
    if i.is_running() {
        i.stop().await.expect("stops");
    }
    let extra = i.extra_cnf();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    i.start_with(kind, &extra).await.expect("starts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_reports_the_situation_it_forbids() {
    let cluster =
        LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb1011, 3).supervised(false))
            .await
            .expect("the cluster starts");
    let primary = cluster.testbed().instances()[0].connect_options(&cluster.credentials().operator);
    prepare(&primary, "app.ledger")
        .await
        .expect("the load's table");
    let quick = MonitorConfig::default();

    // 1. Healthy: nothing to report (the checks do not cry wolf).
    let plan = no_faults();
    let m = monitor(&cluster, &plan, quick);
    let deadline = Instant::now() + WITHIN;
    while m.snapshot().samples < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = m.stop(quick.max_interval).await;
    assert!(seen.samples >= 20, "{seen:?}");
    assert!(seen.violations.is_empty(), "a healthy cluster: {seen:?}");

    // 2. monitor: a sample slower than the bound.
    let tight = MonitorConfig {
        max_interval: Duration::from_millis(200),
        ..quick
    };
    let m = monitor(&cluster, &plan, tight);
    cluster.testbed().instances()[2].pause().expect("SIGSTOP");
    let deadline = Instant::now() + WITHIN;
    while m.snapshot().max_interval_ms <= 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.testbed().instances()[2].resume().expect("SIGCONT");
    let seen = m.stop(tight.max_interval).await;
    assert!(reported(&seen, "monitor"), "a stalled monitor: {seen:?}");

    // 3. no-writer: read_only is off on the primary, but the fence's backup
    //    lock refuses every commit.
    let m = monitor(&cluster, &plan, quick);
    let lock = root(
        &cluster,
        0,
        "BACKUP STAGE START; BACKUP STAGE FLUSH; BACKUP STAGE BLOCK_COMMIT",
    )
    .await;
    let seen = until_reported(&m, "no-writer").await;
    drop(lock);
    let _ = m.stop(quick.max_interval).await;
    assert!(
        reported(&seen, "no-writer"),
        "a primary under the fence's lock: {seen:?}"
    );

    // 4. out-of-service: two replicas down at once, by no fault.
    let m = monitor(&cluster, &plan, quick);
    for o in [1, 2] {
        cluster.testbed().instances()[o].kill9().expect("kill -9");
    }
    let seen = until_reported(&m, "out-of-service").await;
    let _ = m.stop(quick.max_interval).await;
    assert!(
        reported(&seen, "out-of-service"),
        "two replicas down: {seen:?}"
    );
    for o in [1, 2] {
        restart_on(&cluster, o, ServerKind::Mariadb1011).await;
        drop(root(&cluster, o, "START SLAVE").await);
    }

    // A fault that cannot happen (no switchover, so no candidate) and one
    // never triggered are both reported as not confirmed.
    let impossible = Scenario::from_yaml(
        "bite",
        "cluster: { server: mariadb-10.11 }\nchange: { config: { a: b } }\n\
         faults: [ { when: { before_step: 1 }, kill9: candidate }, \
         { when: { before_step: 9 }, kill9: primary } ]\n\
         expect: { outcome: done, seen: { recovered: true } }\n",
    )
    .expect("a valid scenario")
    .faults;
    let plan = FaultPlan::new(impossible, "none".into());
    plan.before_step(1, &cluster).await;
    let unconfirmed = plan.unconfirmed();
    assert_eq!(unconfirmed.len(), 2, "{unconfirmed:?}");
    assert!(
        unconfirmed[0].contains("no instance matched"),
        "{unconfirmed:?}"
    );
    assert!(
        unconfirmed[1].contains("never triggered"),
        "{unconfirmed:?}"
    );

    // 5. recovery: a replica a fault killed comes back on another version.
    let faults = Scenario::from_yaml(
        "bite",
        "cluster: { server: mariadb-10.11 }\nchange: { config: { a: b } }\n\
         faults: [ { when: { before_step: 1 }, kill9: replica-not-upgraded } ]\n\
         expect: { outcome: done, seen: { recovered: true } }\n",
    )
    .expect("a valid scenario")
    .faults;
    let plan = FaultPlan::new(faults, "none".into());
    let m = monitor(&cluster, &plan, quick);
    plan.before_step(1, &cluster).await;
    assert!(plan.all_fired(), "{:?}", plan.unconfirmed());
    restart_on(&cluster, 2, ServerKind::Mariadb118).await;
    let seen = until_reported(&m, "recovery").await;
    let _ = m.stop(quick.max_interval).await;
    assert!(reported(&seen, "recovery"), "back on 11.8: {seen:?}");

    // 6. newer-source: the primary on 11.8, replica 1 still on 10.11.
    let plan = no_faults();
    let m = monitor(&cluster, &plan, quick);
    restart_on(&cluster, 0, ServerKind::Mariadb118).await;
    let seen = until_reported(&m, "newer-source").await;
    let _ = m.stop(quick.max_interval).await;
    assert!(reported(&seen, "newer-source"), "a newer source: {seen:?}");

    // 7. one-writer: replica 1 leaves replication with read_only on, which a
    //    privileged client passes; split brain and lost writes: such a
    //    client writes to it and to the primary at once.
    let m = monitor(&cluster, &plan, quick);
    drop(root(&cluster, 1, "STOP SLAVE; RESET SLAVE ALL").await);
    let seen = until_reported(&m, "one-writer").await;
    let _ = m.stop(quick.max_interval).await;
    assert!(
        reported(&seen, "one-writer"),
        "a detached read_only replica beside the primary: {seen:?}"
    );
    let ledger = Arc::new(Ledger::new());
    let mut writers = Vec::new();
    for (o, run) in [(0usize, 1u8), (1, 2)] {
        let port = cluster.testbed().instances()[o].port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut config = LoadConfig::with_account(AccountKind::Privileged);
        config.writers = 1;
        config.readers = 0;
        config.rate_per_sec = 200;
        config.run = run;
        writers.push(
            Load::start_sharing(
                config,
                Endpoints {
                    primary: addr,
                    read: addr,
                },
                cluster.credentials(),
                Arc::clone(&ledger),
            )
            .expect("a direct writer"),
        );
    }
    let deadline = Instant::now() + WITHIN;
    let both = |l: &Ledger| {
        let snap = l.snapshot();
        [1u64, 2]
            .iter()
            .all(|run| snap.acked.iter().filter(|w| w.id >> 56 == *run).count() >= 20)
    };
    while !both(&ledger) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in writers {
        w.stop().await;
    }
    ledger.mark_end();
    let snap = ledger.snapshot();
    let split = snap.split_brain(3);
    assert!(
        split.overlapping > 0,
        "two servers took writes at once: {split:?}"
    );
    assert_eq!(split.per_server.len(), 2, "{split:?}");
    let checked = check(&snap, &cluster.check_targets(), &{
        let mut c = CheckConfig::default();
        c.settle = Duration::from_millis(300);
        c
    })
    .await
    .expect("the check runs");
    assert!(
        !checked.no_lost_writes(),
        "writes acknowledged by a detached replica are missing elsewhere: {:?}",
        checked.missing
    );
    cluster.stop_supervisor().await;
}
