//! Switchover on real servers: under load (application and privileged accounts) with no lost
//! acknowledged write and never two writable instances; a paused candidate; a long
//! transaction; a candidate with errant transactions.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_mysql::{
    Error, OldPrimaryRole, StepSink, SwitchoverPolicy, SwitchoverStep, switchover,
};
use switchyard_testbed::ledger::{CheckConfig, CheckTarget, check};
use switchyard_testbed::load::{AccountKind, Endpoints, Load, LoadConfig, prepare};
use switchyard_testbed::router::Router;
use switchyard_testbed::{Cluster, ServerKind, replication, wait_for};

use common::handles;

/// Records the steps and moves the router's primary endpoint to the new primary when the
/// promotion is recorded, as the operator moves its Service.
struct RouterSink {
    router: Arc<Router>,
    new_primary: u32,
    steps: Vec<SwitchoverStep>,
}

#[async_trait::async_trait]
impl StepSink for RouterSink {
    async fn record(&mut self, step: &SwitchoverStep) -> Result<(), String> {
        self.steps.push(step.clone());
        if let SwitchoverStep::Promoted { .. } = step {
            self.router
                .set_primary(Some(self.new_primary))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn is_mysql(kind: ServerKind) -> bool {
    kind == ServerKind::Mysql97
}

fn policy(cluster: &Cluster, kind: ServerKind) -> SwitchoverPolicy {
    SwitchoverPolicy {
        replication: Some(common::replication(cluster, is_mysql(kind))),
        ..SwitchoverPolicy::default()
    }
}

async fn router_for(cluster: &Cluster) -> Arc<Router> {
    let backends = cluster
        .instances()
        .iter()
        .enumerate()
        .map(|(i, tb)| {
            (
                u32::try_from(i).expect("ordinal"),
                SocketAddr::from(([127, 0, 0, 1], tb.port())),
            )
        })
        .collect();
    let router = Router::start(backends).await.expect("router");
    router
        .set_primary(Some(0))
        .await
        .expect("route to the primary");
    Arc::new(router)
}

async fn switchover_under_load(kind: ServerKind, account: AccountKind) {
    let cluster = Arc::new(replication(kind, 3).await.expect("cluster"));
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let router = router_for(&cluster).await;
    prepare(
        &cluster.primary().connect_options(&creds.operator),
        "app.ledger",
    )
    .await
    .expect("prepare the load's table");
    let load = Load::start(
        LoadConfig::with_account(account),
        Endpoints::from(&*router),
        creds,
    )
    .expect("start the load");
    wait_for(Duration::from_secs(30), async || {
        (load.acknowledged() >= 300).then_some(())
    })
    .await
    .expect("the load writes");

    let sampler = WritableSampler::start(Arc::clone(&cluster));
    let mut sink = RouterSink {
        router: Arc::clone(&router),
        new_primary: 1,
        steps: Vec::new(),
    };
    let started = Instant::now();
    let outcome = switchover(
        &h[0],
        &h[1],
        &h[2..],
        started + Duration::from_secs(20),
        &policy(&cluster, kind),
        &mut sink,
    )
    .await
    .expect("switchover");
    let took = started.elapsed();

    let acked_at_switch = load.acknowledged();
    wait_for(Duration::from_secs(30), async || {
        (load.acknowledged() >= acked_at_switch + 300).then_some(())
    })
    .await
    .expect("the load writes to the new primary");
    let samples = sampler.stop().await;
    let report = load.stop().await;

    let targets: Vec<CheckTarget> = cluster
        .instances()
        .iter()
        .map(|tb| CheckTarget::of(tb, &creds.operator))
        .collect();
    let verdict = check(&report.ledger, &targets, &CheckConfig::default())
        .await
        .expect("check");
    let gap = verdict.longest_gap.as_ref().map(|g| g.length());
    eprintln!(
        "{kind:?} {account:?}: switchover {took:?} (unavailable {:?}: fence {:?}, catch-up {:?}, promote {:?}; killed {}), acknowledged {}, unknown outcome {}, errors {}, missing {}, longest gap {gap:?}, samples {} (none writable {}, unreadable {})",
        outcome.unavailable,
        outcome.fence,
        outcome.catch_up,
        outcome.promote,
        outcome.killed_connections,
        verdict.acknowledged,
        verdict.unknown_outcome,
        verdict.errors,
        verdict.total_missing(),
        samples.samples,
        samples.none_writable,
        samples.unreadable,
    );
    if !verdict.no_lost_writes() {
        for handle in &h {
            eprintln!("{handle}: {:?}", handle.observe().await);
        }
        eprintln!("steps: {:?}", sink.steps);
    }
    assert!(
        verdict.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        verdict.missing
    );
    assert!(
        samples.violations.is_empty(),
        "two writable instances at once: {:?}",
        samples.violations
    );
    assert!(
        samples.samples >= 10,
        "the sampler ran only {} times",
        samples.samples
    );
    assert!(verdict.acknowledged >= 600);

    let names: Vec<&str> = sink.steps.iter().map(SwitchoverStep::name).collect();
    assert_eq!(
        names,
        ["fenced", "caught_up", "promoted", "repointed", "repointed"]
    );
    assert_eq!(outcome.old_primary, OldPrimaryRole::Replica);
    assert_eq!(outcome.repointed, [h[2].name(), h[0].name()]);

    // The new topology: instance 1 writable and no replica; 0 and 2 read-only replicas of it.
    let new_port = cluster.instance(1).port();
    let new_obs = h[1].observe().await.expect("observe the new primary");
    assert!(new_obs.is_writable());
    assert_eq!(new_obs.replication, None);
    for i in [0, 2] {
        let obs = wait_for(Duration::from_secs(20), async || {
            let obs = h[i].observe().await.ok()?;
            obs.gtid
                .executed()
                .is_subset(new_obs.gtid.executed())
                .ok()?;
            let caught_up = new_obs
                .gtid
                .executed()
                .is_subset(obs.gtid.executed())
                .ok()?;
            (caught_up && obs.replication.as_ref()?.is_running()).then_some(obs)
        })
        .await
        .unwrap_or_else(|e| panic!("{} does not follow the new primary: {e}", h[i]));
        assert!(obs.read_only, "{} is writable", h[i]);
        assert_eq!(
            obs.replication.as_ref().map(|r| r.source_port),
            Some(new_port)
        );
        assert!(
            obs.errant_against(&new_obs)
                .expect("same flavor")
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_switchover_under_application_load() {
    switchover_under_load(ServerKind::Mariadb1011, AccountKind::Application).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_switchover_under_privileged_load() {
    switchover_under_load(ServerKind::Mariadb1011, AccountKind::Privileged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_switchover_under_application_load() {
    switchover_under_load(ServerKind::Mysql97, AccountKind::Application).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_switchover_under_privileged_load() {
    switchover_under_load(ServerKind::Mysql97, AccountKind::Privileged).await;
}

/// Pauses the candidate (SIGSTOP) as soon as the old primary is fenced.
struct PauseOnFence<'a> {
    cluster: &'a Cluster,
    candidate: usize,
    steps: Vec<SwitchoverStep>,
}

#[async_trait::async_trait]
impl StepSink for PauseOnFence<'_> {
    async fn record(&mut self, step: &SwitchoverStep) -> Result<(), String> {
        self.steps.push(step.clone());
        if let SwitchoverStep::Fenced { .. } = step {
            self.cluster
                .instance(self.candidate)
                .pause()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

async fn paused_candidate(kind: ServerKind) {
    let cluster = replication(kind, 2).await.expect("cluster");
    let h = handles(&cluster);
    let policy = policy(&cluster, kind);

    // Paused before the switchover: the pre-flight cannot observe it; nothing is fenced.
    cluster.instance(1).pause().expect("pause");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(4);
    let mut steps: Vec<SwitchoverStep> = Vec::new();
    let err = switchover(&h[0], &h[1], &[], deadline, &policy, &mut steps)
        .await
        .expect_err("a paused candidate cannot take over");
    assert!(Instant::now() <= deadline, "took {:?}", started.elapsed());
    assert!(
        matches!(&err, Error::NotResponding { instance, .. } if instance.contains(h[1].name())),
        "{err}"
    );
    assert!(steps.is_empty());
    assert!(h[0].observe().await.expect("observe").is_writable());
    cluster.instance(1).resume().expect("resume");

    // Paused once the old primary is fenced: the catch-up cannot finish; the fence is lifted
    // by the deadline.
    wait_for(Duration::from_secs(10), async || h[1].observe().await.ok())
        .await
        .expect("the candidate answers again");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(4);
    let mut sink = PauseOnFence {
        cluster: &cluster,
        candidate: 1,
        steps: Vec::new(),
    };
    let err = switchover(&h[0], &h[1], &[], deadline, &policy, &mut sink)
        .await
        .expect_err("the candidate was paused");
    let elapsed = started.elapsed();
    assert!(
        Instant::now() <= deadline,
        "returned {elapsed:?} after the start, past the deadline"
    );
    eprintln!("{kind:?}: abandoned after {elapsed:?}: {err}");
    match &err {
        Error::SwitchoverAbandoned {
            fence_lifted: true,
            source,
            ..
        } => {
            // NotResponding when the candidate was paused before the wait's connection check,
            // Timeout when it stopped in the middle of the wait.
            assert!(
                matches!(
                    source.as_ref(),
                    Error::NotResponding { instance, .. } | Error::Timeout { instance, .. }
                        if instance.contains(h[1].name())
                ),
                "{source}"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(
        sink.steps
            .iter()
            .map(SwitchoverStep::name)
            .collect::<Vec<_>>(),
        ["fenced"]
    );
    let obs = h[0].observe().await.expect("observe the old primary");
    assert!(obs.is_writable());
    assert_ne!(obs.super_read_only, Some(true));
    assert!(!h[0].holds_fence_lock().await);
    // A privileged client (not only the application) writes to the old primary again.
    let mut admin = cluster
        .primary()
        .connect(&cluster.credentials().privileged)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.after_abandon (id INT PRIMARY KEY)")
        .execute(&mut admin)
        .await
        .expect("the old primary takes writes again");
    cluster.instance(1).resume().expect("resume");
}

#[tokio::test]
async fn mariadb_paused_candidate_fails_by_the_deadline() {
    paused_candidate(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_paused_candidate_fails_by_the_deadline() {
    paused_candidate(ServerKind::Mysql97).await;
}

async fn long_transaction(kind: ServerKind) {
    use sqlx::Connection;
    let cluster = replication(kind, 2).await.expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let mut app = cluster
        .primary()
        .connect(&creds.operator)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.held (id INT PRIMARY KEY)")
        .execute(&mut app)
        .await
        .expect("create");
    drop(app);
    let (mut holder, holder_id) = common::hold_open_transaction(
        &cluster,
        &creds.application,
        "INSERT INTO app.held VALUES (1)",
    )
    .await;
    common::poll_slowly(Duration::from_secs(10), async || {
        let t = h[0]
            .longest_transaction_by(std::time::Instant::now() + Duration::from_secs(5))
            .await
            .ok()??;
        (t.thread_id == holder_id && t.seconds >= 2).then_some(())
    })
    .await
    .expect("the transaction shows as open for 2 s");

    let policy = SwitchoverPolicy {
        max_transaction_seconds: 1,
        preflight_wait: Duration::from_secs(1),
        ..policy(&cluster, kind)
    };
    let started = Instant::now();
    let mut steps: Vec<SwitchoverStep> = Vec::new();
    let err = switchover(
        &h[0],
        &h[1],
        &[],
        started + Duration::from_secs(10),
        &policy,
        &mut steps,
    )
    .await
    .expect_err("a long transaction refuses the switchover");
    let elapsed = started.elapsed();
    eprintln!("{kind:?}: refused after {elapsed:?}: {err}");
    match &err {
        Error::LongTransaction {
            thread_id,
            seconds,
            limit: 1,
            instance,
        } => {
            assert_eq!(*thread_id, holder_id);
            assert!(*seconds >= 2);
            assert!(instance.contains(h[0].name()));
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(
        elapsed >= Duration::from_millis(800),
        "it did not wait: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "it waited too long: {elapsed:?}"
    );
    assert!(steps.is_empty());
    assert_eq!(err.category(), "long_transaction");
    let obs = h[0].observe().await.expect("observe");
    assert!(obs.is_writable(), "a refused switchover changed nothing");
    // The same test for a runtime that fences by itself.
    let err = h[0]
        .wait_no_long_transaction_by(1, Instant::now() + Duration::from_millis(700))
        .await
        .expect_err("the transaction is still open");
    assert!(
        matches!(&err, Error::LongTransaction { thread_id, limit: 1, .. } if *thread_id == holder_id),
        "{err}"
    );
    // The transaction can still commit: nothing was fenced.
    sqlx::raw_sql("COMMIT")
        .execute(&mut holder)
        .await
        .expect("commit");
    let _ = holder.close().await;
    h[0].wait_no_long_transaction_by(1, Instant::now() + Duration::from_secs(5))
        .await
        .expect("no long transaction once it committed");

    // A transaction that ends while the pre-flight waits delays the switchover: another
    // task commits it once it has been open 3 s.
    let (mut holder, holder_id) = common::hold_open_transaction(
        &cluster,
        &creds.application,
        "INSERT INTO app.held VALUES (2)",
    )
    .await;
    let open_for = async |seconds: u64| {
        common::poll_slowly(Duration::from_secs(20), async || {
            let t = h[0]
                .longest_transaction_by(std::time::Instant::now() + Duration::from_secs(5))
                .await
                .ok()??;
            (t.thread_id == holder_id && t.seconds >= seconds).then_some(())
        })
        .await
    };
    open_for(2)
        .await
        .expect("the transaction shows as open for 2 s");
    let committer = async {
        open_for(3)
            .await
            .expect("the transaction shows as open for 3 s");
        sqlx::raw_sql("COMMIT")
            .execute(&mut holder)
            .await
            .expect("commit");
    };
    let policy = SwitchoverPolicy {
        preflight_wait: Duration::from_secs(10),
        ..policy
    };
    let mut steps: Vec<SwitchoverStep> = Vec::new();
    let (outcome, ()) = tokio::join!(
        switchover(
            &h[0],
            &h[1],
            &[],
            Instant::now() + Duration::from_secs(20),
            &policy,
            &mut steps
        ),
        committer
    );
    let outcome = outcome.expect("switchover once the transaction ended");
    eprintln!(
        "{kind:?}: delayed by the pre-flight for {:?}",
        outcome.preflight
    );
    assert!(
        outcome.preflight >= Duration::from_millis(500),
        "it did not wait: {:?}",
        outcome.preflight
    );
    assert_eq!(outcome.old_primary, OldPrimaryRole::Replica);
    assert_eq!(steps.first().map(SwitchoverStep::name), Some("fenced"));
    // The committed row made it to the new primary.
    let mut check = cluster
        .instance(1)
        .connect(&creds.operator)
        .await
        .expect("connect");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app.held")
        .fetch_one(&mut check)
        .await
        .expect("count");
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn mariadb_long_transaction_refuses_the_switchover() {
    long_transaction(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_long_transaction_refuses_the_switchover() {
    long_transaction(ServerKind::Mysql97).await;
}

/// Samples which instances are writable every ~50 ms from its own connections (the operator
/// account, whose connections a fence does not kill), and records every moment when more than
/// one was.
struct WritableSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<SamplerReport>,
}

/// What a [`WritableSampler`] saw.
#[derive(Debug, Default)]
struct SamplerReport {
    /// Samples taken.
    samples: usize,
    /// Samples where more than one instance was writable, with the writable names.
    violations: Vec<Vec<String>>,
    /// Samples where an instance could not be read.
    unreadable: usize,
    /// Samples where no instance was writable.
    none_writable: usize,
}

impl WritableSampler {
    /// Starts sampling the instances of `cluster` (shared with the test).
    fn start(cluster: Arc<Cluster>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            use sqlx::Connection;
            let mut report = SamplerReport::default();
            let mut conns = Vec::new();
            let operator = &cluster.credentials().operator;
            for tb in cluster.instances() {
                conns.push((tb.name().to_owned(), tb.connect(operator).await.ok()));
            }
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !flag.load(Ordering::SeqCst) {
                tick.tick().await;
                let mut writable = Vec::new();
                for (i, (name, conn)) in conns.iter_mut().enumerate() {
                    if conn.is_none() {
                        *conn = cluster.instance(i).connect(operator).await.ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        report.unreadable += 1;
                        continue;
                    };
                    // read_only covers super_read_only on MySQL (super_read_only implies it).
                    let q =
                        sqlx::query_scalar::<_, i64>("SELECT CAST(@@GLOBAL.read_only AS SIGNED)");
                    match tokio::time::timeout(Duration::from_millis(500), q.fetch_one(&mut *c))
                        .await
                    {
                        Ok(Ok(0)) => writable.push(name.clone()),
                        Ok(Ok(_)) => {}
                        _ => {
                            report.unreadable += 1;
                            if let Some(c) = conn.take() {
                                let _ = c.close().await;
                            }
                        }
                    }
                }
                report.samples += 1;
                if writable.len() > 1 {
                    report.violations.push(writable);
                } else if writable.is_empty() {
                    report.none_writable += 1;
                }
            }
            report
        });
        WritableSampler { stop, task }
    }

    /// Stops sampling and returns what was seen.
    async fn stop(self) -> SamplerReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("sampler task")
    }
}
