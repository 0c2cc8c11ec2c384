//! `switchyard fleet` on real servers: three local clusters of two instances each (the
//! testbed's cap of six servers), each run by a [`FleetMember`] in this test as the process
//! that runs a cluster would, and the fleet driven by the `switchyard` binary.
//!
//! - A restart that fails in wave 2 (a MariaDB 10.5 cluster among 10.11 ones, given a
//!   variable 10.5 does not know): the fleet stops on it with its halt reason; the canary
//!   cluster stays done (its write ledger intact), the third cluster is never touched.
//! - The driver killed (SIGKILL) while wave 2 rolls: `switchyard fleet resume` continues from
//!   the fleet's record; every cluster is rolled once (each instance started once, each
//!   cluster started once in the history, the canary's start unchanged), none skipped, the
//!   rolled cluster's write ledger intact.
//! - A bake that fails on the user's query (an online `sql_mode` change that breaks the
//!   application's `GROUP BY`): the fleet stops on the canary; the next wave is never touched.
//!
//! The three share the server cap, so they run one at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use switchyard_local::fleet::{FleetFile, FleetMember};
use switchyard_local::{ClusterSpec, LocalCluster};
use switchyard_plan::Policy;
use switchyard_plan::fleet::{ClusterState, FleetState, StopReason};
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, check};
use switchyard_testbed::load::{LoadConfig, LoadHandle};
use tokio::sync::watch;

/// How long any one condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(120);

/// One fleet scenario at a time: three clusters take every server slot.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The clusters' engines: short bounds, so a failing restart halts within seconds.
fn policy() -> Policy {
    Policy {
        max_lag_seconds: 2,
        halt_after: Duration::from_secs(8),
        retry_backoff: Duration::from_secs(1),
        ..Policy::default()
    }
}

/// Three clusters, each run by a fleet member in this process, and the fleet's folder.
struct Fleet {
    clusters: Vec<(String, Arc<LocalCluster>)>,
    stop: watch::Sender<bool>,
    members: Vec<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Fleet {
    async fn start(kinds: &[(&str, ServerKind)]) -> Fleet {
        let (stop, stopped) = watch::channel(false);
        let mut clusters = Vec::new();
        let mut members = Vec::new();
        // Every server slot the fleet needs at once: never part of them while waiting.
        let started =
            LocalCluster::start_all(kinds.iter().map(|(_, k)| ClusterSpec::new(*k, 2)).collect())
                .await
                .expect("start the clusters");
        for ((name, _), cluster) in kinds.iter().zip(started) {
            let cluster = Arc::new(cluster);
            let mut member = FleetMember::new(Arc::clone(&cluster), policy());
            let stopped = stopped.clone();
            members.push(tokio::spawn(async move {
                member.run(Duration::from_millis(300), &stopped).await;
            }));
            clusters.push(((*name).to_string(), cluster));
        }
        Fleet {
            clusters,
            stop,
            members,
            dir: tempfile::tempdir().expect("the fleet's folder"),
        }
    }

    fn cluster(&self, name: &str) -> &LocalCluster {
        &self
            .clusters
            .iter()
            .find(|(n, _)| n == name)
            .expect("a cluster of the fleet")
            .1
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.cluster(name)
            .state()
            .path()
            .parent()
            .expect("the state folder")
            .to_owned()
    }

    /// `--cluster NAME=DIR` for each cluster, in order.
    fn cluster_args(&self) -> Vec<String> {
        self.clusters
            .iter()
            .flat_map(|(name, _)| {
                [
                    "--cluster".to_string(),
                    format!("{name}={}", self.state_dir(name).display()),
                ]
            })
            .collect()
    }

    fn command(&self, args: &[String]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("fleet")
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--tick-ms", "200"]);
        cmd
    }

    /// Runs `switchyard fleet ARGS` to its end, killed (and the test failed) past the deadline.
    async fn run(&self, args: &[String]) -> Output {
        let mut cmd = self.command(args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().expect("run switchyard fleet");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        let waited = tokio::time::timeout(
            DEADLINE,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await;
        match waited {
            Ok(out) => out.expect("join").expect("wait for switchyard fleet"),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                panic!("switchyard fleet {args:?} did not finish within {DEADLINE:?}");
            }
        }
    }

    fn record(&self) -> switchyard_plan::fleet::FleetRecord {
        FleetFile::in_dir(self.dir.path())
            .read()
            .expect("read the fleet file")
            .record
    }

    /// Whether the fleet gave `name` a change.
    fn given(&self, name: &str) -> bool {
        self.cluster(name)
            .state()
            .read()
            .expect("read the state file")
            .cluster
            .fleet
            .change
            .is_some()
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for m in self.members {
            m.await.expect("a fleet member's task");
        }
        for (_, c) in &self.clusters {
            c.stop_supervisor().await;
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// The ledger table and a load of 100 writes per second through the cluster's router.
async fn start_load(cluster: &LocalCluster) -> LoadHandle {
    let mut config = LoadConfig::default();
    config.rate_per_sec = 100;
    cluster.start_load(config).await.expect("start the load")
}

/// Stops the load and checks every acknowledged write on every instance.
async fn check_load(cluster: &LocalCluster, load: LoadHandle) {
    let report = load.stop().await;
    assert!(report.acknowledged() > 0, "the load wrote nothing");
    let checked = check(
        &report.ledger,
        &cluster.check_targets(),
        &CheckConfig::default(),
    )
    .await
    .expect("check the acknowledged writes");
    assert!(
        checked.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        checked.missing
    );
}

/// Every instance of `cluster` runs the latest revision of its history, which sets
/// `variable`.
fn runs_latest_with(cluster: &LocalCluster, variable: &str) {
    let doc = cluster.state().read().expect("read the state file");
    let latest = doc.cluster.history.latest().expect("a revision");
    assert!(
        latest.config.contains_key(variable),
        "the latest revision lacks {variable}: {:?}",
        latest.config
    );
    for (o, i) in &doc.cluster.instances {
        assert_eq!(
            i.revision.hash, latest.revision.hash,
            "instance {o} does not run the latest revision"
        );
    }
}

/// A cluster the fleet never touched: no change given, one revision, no process started
/// again.
fn untouched(fleet: &Fleet, name: &str) {
    assert!(!fleet.given(name), "cluster {name} was given the change");
    let cluster = fleet.cluster(name);
    assert_eq!(
        cluster.history().expect("history").entries.len(),
        1,
        "cluster {name} has a new revision"
    );
    assert!(
        cluster.timeline().starts().is_empty(),
        "cluster {name} was restarted: {:?}",
        cluster.timeline().starts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_failing_in_wave_2_stops_the_fleet_and_leaves_the_next_wave_untouched() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::start(&[
        ("a", ServerKind::Mariadb1011),
        ("b", ServerKind::Mariadb105),
        ("c", ServerKind::Mariadb1011),
    ])
    .await;
    let load = start_load(fleet.cluster("a")).await;

    // Bad input changes nothing: no fleet file is written.
    let mut bad = fleet.cluster_args();
    bad.extend(strings(&[
        "--set",
        "innodb_snapshot_isolation=ON",
        "--canary",
        "0",
    ]));
    let out = fleet.run(&[vec!["apply".into()], bad].concat()).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("canary wave holds 0 clusters"),
        "{}",
        text(&out)
    );
    assert!(!FleetFile::in_dir(fleet.dir.path()).exists());

    // Waves [a] [b] [c]: b runs MariaDB 10.5, which does not know the variable, so its
    // first restarted replica never comes back and its engine halts.
    let mut args = vec!["apply".to_string()];
    args.extend(fleet.cluster_args());
    args.extend(strings(&[
        "--set",
        "innodb_snapshot_isolation=ON",
        "--restart",
        "--bake-s",
        "2",
    ]));
    let out = fleet.run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopped on cluster \"b\"") && stderr.contains("halted"),
        "{}",
        text(&out)
    );

    let record = fleet.record();
    let FleetState::Stopped {
        cluster, reason, ..
    } = &record.state
    else {
        panic!("the fleet is not stopped: {record:#?}");
    };
    assert_eq!(cluster, "b");
    assert!(matches!(reason, StopReason::Halted { .. }), "{reason:?}");
    assert!(matches!(
        record.cluster("a"),
        Some(ClusterState::Done { .. })
    ));
    assert!(matches!(
        record.cluster("b"),
        Some(ClusterState::Stopped { .. })
    ));
    assert_eq!(record.cluster("c"), Some(&ClusterState::Pending));
    // The failing cluster's own engine halted, with its reason.
    let b = fleet.cluster("b").state().read().expect("read b");
    assert!(b.record.halted.is_some(), "{:#?}", b.record);
    // The canary rolled (every instance on the new revision), the last wave is untouched.
    runs_latest_with(fleet.cluster("a"), "innodb_snapshot_isolation");
    untouched(&fleet, "c");
    check_load(fleet.cluster("a"), load).await;

    // A resume while b is still halted is refused; status and history say where it stands.
    let out = fleet.run(&strings(&["resume"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still halted"),
        "{}",
        text(&out)
    );
    let out = fleet.run(&strings(&["status"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("stopped on cluster \"b\""), "{status}");
    untouched(&fleet, "c");

    // An abort leaves every cluster as it is and says which ran the change.
    let out = fleet.run(&strings(&["abort"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ran on [a, b], never touched: [c]"),
        "{}",
        text(&out)
    );
    let history = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["history", "shards", "--fleet"])
        .arg(fleet.dir.path())
        .output()
        .expect("run switchyard history");
    let shown = String::from_utf8_lossy(&history.stdout);
    assert_eq!(history.status.code(), Some(0), "{}", text(&history));
    assert!(shown.contains("fleet shards: 1 revision(s)"), "{shown}");
    assert!(shown.contains("aborted at"), "{shown}");
    untouched(&fleet, "c");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_driver_killed_mid_wave_is_resumed_from_the_record_rolling_each_cluster_once() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::start(&[
        ("a", ServerKind::Mariadb1011),
        ("b", ServerKind::Mariadb1011),
        ("c", ServerKind::Mariadb1011),
    ])
    .await;
    let load = start_load(fleet.cluster("b")).await;
    let mut args = vec!["apply".to_string()];
    args.extend(fleet.cluster_args());
    args.extend(strings(&[
        "--set",
        "max_connections=321",
        "--restart",
        "--bake-s",
        "2",
    ]));
    let mut driver = fleet
        .command(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the driver");

    // Killed while wave 2 (cluster b) rolls.
    let file = FleetFile::in_dir(fleet.dir.path());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let rolling = file.exists()
            && matches!(
                file.read().expect("read").record.cluster("b"),
                Some(ClusterState::Rolling { .. })
            );
        if rolling {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wave 2 never started: {:#?}",
            file.exists().then(|| fleet.record())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver.kill().expect("kill the driver");
    let status = driver.wait().expect("reap the driver");
    assert!(!status.success(), "the driver was not killed: {status}");
    let before = fleet.record();
    let a_started = before.current().expect("a revision").rolled[0].clone();
    assert_eq!(a_started.cluster, "a");
    assert!(a_started.done.is_some(), "{before:#?}");

    let out = fleet.run(&strings(&["resume"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("continuing"),
        "{}",
        text(&out)
    );

    let record = fleet.record();
    assert_eq!(record.revisions.len(), 1, "{record:#?}");
    let rolled = &record.current().expect("a revision").rolled;
    let order: Vec<&str> = rolled.iter().map(|r| r.cluster.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"], "{record:#?}");
    assert_eq!(rolled[0], a_started, "the canary was started again");
    assert!(
        rolled[2].started >= rolled[1].done.expect("b done"),
        "c started before b baked: {record:#?}"
    );
    assert!(matches!(record.state, FleetState::Done { .. }));
    for (name, cluster) in &fleet.clusters {
        runs_latest_with(cluster, "max_connections");
        let starts = cluster.timeline().starts();
        assert_eq!(
            starts,
            BTreeMap::from([(0, 1), (1, 1)]),
            "cluster {name}: each instance restarted once"
        );
    }
    check_load(fleet.cluster("b"), load).await;
    fleet.stop().await;
}

/// The application's table and its query, which `ONLY_FULL_GROUP_BY` refuses.
const CHECK_QUERY: &str = "SELECT customer, amount FROM orders GROUP BY customer";

async fn create_orders(cluster: &LocalCluster) {
    let mut conn = cluster
        .testbed()
        .primary()
        .connect(&cluster.credentials().operator)
        .await
        .expect("connect");
    for sql in [
        "CREATE TABLE app.orders (id INT PRIMARY KEY, customer INT, amount INT)",
        "INSERT INTO app.orders VALUES (1, 1, 10), (2, 1, 20), (3, 2, 5)",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bake_failing_on_the_user_query_stops_the_fleet_on_the_canary() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::start(&[
        ("a", ServerKind::Mariadb1011),
        ("b", ServerKind::Mariadb1011),
        ("c", ServerKind::Mariadb1011),
    ])
    .await;
    for (_, c) in &fleet.clusters {
        create_orders(c).await;
    }
    // The query answers before the change, as the application account.
    {
        let a = fleet.cluster("a");
        let mut conn = a
            .testbed()
            .primary()
            .connect(&a.credentials().application)
            .await
            .expect("connect as the application");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("USE app; {CHECK_QUERY}")))
            .execute(&mut conn)
            .await
            .expect("the query answers before the change");
    }
    let load = start_load(fleet.cluster("a")).await;
    let mut args = vec!["apply".to_string()];
    args.extend(fleet.cluster_args());
    args.extend(strings(&[
        "--set",
        "sql_mode=ONLY_FULL_GROUP_BY",
        "--canary",
        "1",
        "--max-at-once",
        "2",
        "--bake-s",
        "3",
        "--check-query",
        CHECK_QUERY,
    ]));
    let out = fleet.run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopped on cluster \"a\"") && stderr.contains("user check failed"),
        "{}",
        text(&out)
    );
    let record = fleet.record();
    let Some(ClusterState::Stopped {
        reason: StopReason::UserCheckFailed { message },
        ..
    }) = record.cluster("a")
    else {
        panic!("the fleet did not stop on a's user check: {record:#?}");
    };
    assert!(message.contains("GROUP BY"), "{message}");
    assert_eq!(record.waves, [vec!["a"], vec!["b", "c"]]);
    runs_latest_with(fleet.cluster("a"), "sql_mode");
    untouched(&fleet, "b");
    untouched(&fleet, "c");
    check_load(fleet.cluster("a"), load).await;
    fleet.stop().await;
}
