//! End to end on Kubernetes, simulated: MariaDB 10.5 → 10.11 → 11.8 by editing
//! `spec.version`, the operator's own pod spec run by the simulated kubelet on Debian's
//! servers of each series, under writers.
//!
//! 1. A `MySQLCluster` of 3 MariaDB 10.5 instances is created from nothing (instance 0
//!    bootstrapped by its agent, 1 and 2 copied from it with `mariadb-backup`).
//! 2. A load writes through the primary Service (a router following the pod labelled
//!    primary); a monitor polls `@@read_only` on every pod; a topology monitor polls every
//!    pod's version and replication source.
//! 3. `spec.version` goes to 10.11 (a direct upgrade: MariaDB documents in-place upgrades from
//!    any earlier version), then to 11.8. Each step: the replicas' pods are replaced before
//!    the switchover's fence, the old primary's after the promotion; every agent ran
//!    `mariadb-upgrade` (the image's `/bin/sh`, Debian's dash from the testbed, runs its
//!    client tools), the data directory's upgrade record names the new major.minor, and the
//!    system tables have the new series' shape (10.11: `mysql.column_stats.hist_type` knows
//!    `JSON_HB`; 11.8: `mysql.servers` has `Options`), which they did not have before.
//! 4. No replica ever replicated from a source of a newer version (the replicas are upgraded
//!    first; the old primary, demoted, does not replicate until it runs the new version),
//!    while the monitor did see upgraded replicas under an older primary.
//! 5. Every acknowledged write is on every instance and on the last primary, no two servers
//!    acknowledged writes at once, the monitor never saw two writable instances.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_upgrade -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use common::{
    AppLoad, Log, World, assert_nothing_lost, intent, scalar, start_app_load, steps, until, within,
};
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec};
use switchyard_testbed::{Binaries, ServerKind};

const INSTANCES: u32 = 3;
/// From nothing to Ready (three agent installs, a bootstrap, two provisionings).
const READY_WITHIN: Duration = Duration::from_secs(150);
/// One version step of three instances (slow shutdowns, `mariadb-upgrade`, a switchover).
const STEP_WITHIN: Duration = Duration::from_secs(240);
/// How often the topology monitor looks.
const TOPOLOGY_POLL: Duration = Duration::from_millis(100);

/// A version as numbers (`10.11.14` of `10.11.14-MariaDB-0+deb12u2-log`).
type Numbers = (u32, u32, u32);

fn numbers(version: &str) -> Option<Numbers> {
    let mut parts = version
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

fn series((major, minor, _): Numbers) -> String {
    format!("{major}.{minor}")
}

/// A system-table column that `mariadb-upgrade` of a series gives the tables, and that the
/// series before does not have: (series, query, what its answer must contain).
fn system_table_mark(series: &str) -> (&'static str, &'static str) {
    match series {
        // 10.7 added JSON histograms: `hist_type` is an ENUM that gains 'JSON_HB'.
        "10.11" => (
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' \
             AND TABLE_NAME = 'column_stats' AND COLUMN_NAME = 'hist_type'",
            "JSON_HB",
        ),
        // 11.7 added the `Options` column of `mysql.servers` (a JSON document).
        "11.8" => (
            "SELECT COALESCE(GROUP_CONCAT(COLUMN_NAME), '') FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'servers' AND COLUMN_NAME = 'Options'",
            "Options",
        ),
        other => panic!("no system-table mark for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_10_5_to_10_11_to_11_8_under_load() {
    let _slots = switchyard_testbed::slots::acquire(INSTANCES as usize)
        .await
        .expect("server slots");
    let log = Log::new("kube-e2e-upgrade.log");
    let clock = (Instant::now(), SystemTime::now());
    let kinds = [
        ServerKind::Mariadb105,
        ServerKind::Mariadb1011,
        ServerKind::Mariadb118,
    ];
    let bins: Vec<Binaries> = tokio::task::spawn_blocking(move || {
        kinds
            .iter()
            .map(|k| switchyard_testbed::binaries(*k).expect("MariaDB from the testbed"))
            .collect()
    })
    .await
    .unwrap();
    let versions: Vec<String> = bins.iter().map(|b| b.version().to_owned()).collect();
    let mut world = World::start(log.clone()).await;

    // 1. From nothing, on 10.5.
    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": versions[0],
        "replicas": INSTANCES,
        "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "config": {"innodb_buffer_pool_size": "67108864"},
        "update": {"drainSeconds": 1},
    }))
    .expect("a spec");
    log.say(
        "test",
        format!(
            "creating {} (MariaDB {}, {INSTANCES} instances), then {} and {}",
            common::NAME,
            versions[0],
            versions[1],
            versions[2]
        ),
    );
    world.create(spec).await;
    until(READY_WITHIN, "the cluster Ready", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        let want = format!("{INSTANCES}/{INSTANCES}");
        if s.phase.as_deref() == Some("Ready") && s.ready.as_deref() == Some(want.as_str()) {
            Ok(())
        } else {
            Err(format!("phase {:?} ready {:?}", s.phase, s.ready))
        }
    })
    .await;
    log.say("test", "Ready");
    let creds = world.credentials().await;
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());
    for n in 0..INSTANCES {
        let s = world.agent_status(n).await.expect("the agent's status");
        let running = s["server_version"].as_str().and_then(numbers);
        assert_eq!(
            running.map(series).as_deref(),
            Some("10.5"),
            "instance {n}: {s:#}"
        );
    }

    // 2. The application, its load, and the monitors.
    let primary = MySqlConnection::connect_with(&world.options(0, &op_user, &op_pw))
        .await
        .expect("the operator's account on the primary");
    let topology = TopologyMonitor::start(&world, INSTANCES, &op_user, &op_pw);
    let AppLoad {
        service,
        monitor: writable,
        load,
    } = start_app_load(&world, primary, &creds, INSTANCES, (2, 100, 50), &log).await;
    let writes_from = async |from: usize, what: &str| {
        until(Duration::from_secs(30), what, async || {
            let n = load.acknowledged();
            if n >= from + 50 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        })
        .await;
    };

    // 3. The steps.
    let mut primary = 0;
    for step in 1..versions.len() {
        let (from, to) = (&versions[step - 1], &versions[step]);
        let to_series = series(numbers(to).expect("a version"));
        let from_series = series(numbers(from).expect("a version"));
        let (mark_query, mark) = system_table_mark(&to_series);
        for n in 0..INSTANCES {
            let found = query(&world, n, &op_user, &op_pw, mark_query).await;
            assert!(
                !found.contains(mark),
                "inconclusive: instance {n} on {from} already has the {to_series} system-table mark: {found}"
            );
        }
        let started = Instant::now();
        let seen_before = topology.pairs();
        world.edit(|s| s.version = to.clone()).await;
        log.say("test", format!("spec.version {from} -> {to}"));
        let done = match within(STEP_WITHIN, async || rolled_out(&world, to).await).await {
            Ok(done) => done,
            Err(why) => {
                let report = load.stop().await;
                let writers = writable.stop().await;
                let topo = topology.stop().await;
                log.say(
                    "test",
                    format!(
                        "step to {to} stuck; writers {writers:?}; topology {topo:?}; split brain {:?}",
                        report.ledger.split_brain(3)
                    ),
                );
                for n in 0..INSTANCES {
                    log.say(
                        "test",
                        format!("instance {n}: {:?}", world.agent_status(n).await),
                    );
                }
                panic!("the upgrade to {to} did not finish within {STEP_WITHIN:?}: {why}");
            }
        };
        let took = started.elapsed();
        let s = done.status.clone().unwrap();
        let new_primary = s.current_primary.expect("a primary");
        // Never an older replica under a newer source, then the order that ensures it.
        let older = topology.older_under_newer();
        assert!(
            older.is_empty(),
            "a replica replicated from a newer source: {older:?}"
        );
        assert_ne!(
            new_primary, primary,
            "the primary was switched over before its upgrade"
        );
        log.say(
            "test",
            format!(
                "{from} -> {to} done in {:.1} s: primary {primary} -> {new_primary}",
                took.as_secs_f64()
            ),
        );

        // The order: the replicas' pods replaced before the fence, the old primary's after
        // the promotion.
        steps::assert_restart_order(
            &world,
            &done,
            (clock, started),
            INSTANCES,
            (primary, new_primary),
            None,
        );

        // Every instance runs the new version, ran mariadb-upgrade, and its system tables
        // and upgrade record are the new series'.
        for n in 0..INSTANCES {
            let a = world.agent_status(n).await.expect("the agent's status");
            let running = a["server_version"].as_str().and_then(numbers);
            assert_eq!(
                running.map(series).as_deref(),
                Some(to_series.as_str()),
                "instance {n} runs {to_series}: {a:#}"
            );
            let record = a["mariadb_upgrade_info"].as_str().unwrap_or_default();
            assert_eq!(
                numbers(record).map(series).as_deref(),
                Some(to_series.as_str()),
                "instance {n}'s upgrade record in its data directory: {a:#}"
            );
            assert_eq!(
                a["system_table_upgrade"].as_str(),
                Some(format!("mariadb-upgrade from {from_series} to {to_series}").as_str()),
                "instance {n}'s agent ran mariadb-upgrade at this start: {a:#}"
            );
            let found = query(&world, n, &op_user, &op_pw, mark_query).await;
            assert!(
                found.contains(mark),
                "instance {n}'s system tables have the {to_series} shape ({mark}): {found}"
            );
        }
        log.say(
            "test",
            format!(
                "every instance on {to_series}: mariadb-upgrade ran, upgrade record {to_series}, system tables have {mark}"
            ),
        );
        // The monitor saw this step's mixed state: an upgraded replica under the older
        // primary (so it looked while it mattered).
        let pairs = topology.pairs();
        let mixed = (to_series.clone(), from_series.clone());
        assert!(
            pairs.contains(&mixed) && !seen_before.contains(&mixed),
            "the topology monitor saw a {to_series} replica of the {from_series} primary: {pairs:?}"
        );
        let at = load.acknowledged();
        writes_from(at, "writes on the new primary").await;
        primary = new_primary;
    }

    // 4. and 5. The verdicts.
    let report = load.stop().await;
    let writers = writable.stop().await;
    let topo = topology.stop().await;
    log.say(
        "test",
        format!(
            "topology: {} passes, (replica, source) series seen {:?}",
            topo.passes, topo.pairs
        ),
    );
    assert!(
        topo.older_under_newer.is_empty(),
        "a replica replicated from a newer source: {:?}",
        topo.older_under_newer
    );
    assert!(topo.passes > 20, "the topology monitor sampled: {topo:?}");
    assert_nothing_lost(
        &world,
        &log,
        &report,
        &writers,
        INSTANCES,
        primary,
        (&op_user, &op_pw),
    )
    .await;
    drop(service);
    world.shutdown().await;
}

/// The cluster once every instance runs `version` on the target revision, Ready.
async fn rolled_out(world: &World, version: &str) -> Result<MySQLCluster, String> {
    let c = world.cluster().await;
    let s = c.status.clone().unwrap_or_default();
    let target = s.revisions.as_ref().and_then(|r| r.update);
    let current = s.revisions.as_ref().and_then(|r| r.current);
    let all = s.instances.len() == INSTANCES as usize
        && s.instances.iter().all(|i| i.revision == target && i.ready);
    if s.phase.as_deref() == Some("Ready")
        && all
        && current == target
        && s.current_version.as_deref() == Some(version)
        && intent(&c).is_none()
    {
        Ok(c)
    } else {
        Err(format!(
            "phase {:?} version {:?} target {target:?} current {current:?} instances {:?} intent {:?}",
            s.phase,
            s.current_version,
            s.instances
                .iter()
                .map(|i| (i.ordinal, i.revision, i.ready, i.last_error.clone()))
                .collect::<Vec<_>>(),
            intent(&c)
        ))
    }
}

/// The first column of `sql` on instance `n`.
async fn query(world: &World, n: u32, user: &str, password: &str, sql: &str) -> String {
    let mut conn = MySqlConnection::connect_with(&world.options(n, user, password))
        .await
        .unwrap_or_else(|e| panic!("connect to instance {n}: {e}"));
    let v = scalar(&mut conn, sql).await;
    let _ = conn.close().await;
    v
}

/// What the topology monitor saw.
#[derive(Clone, Debug, Default)]
struct Topology {
    /// Completed passes over every instance.
    passes: usize,
    /// (replica series, source series) of every replica seen replicating.
    pairs: BTreeSet<(String, String)>,
    /// Confirmed sightings of a replica replicating from a newer source: (seconds, replica,
    /// its version, source, its version).
    older_under_newer: Vec<(f64, u32, String, u32, String)>,
}

/// Polls every instance's version and replication source: a replica must never replicate
/// (either thread running) from a source of a newer version. A sighting is confirmed by
/// reading both again at once (a pass is not atomic).
struct TopologyMonitor {
    seen: Arc<Mutex<Topology>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// One instance as the monitor read it: its version and, when either replication thread
/// runs, its source's ordinal.
type Sample = (Numbers, String, Option<u32>);

impl TopologyMonitor {
    fn start(world: &World, instances: u32, user: &str, password: &str) -> TopologyMonitor {
        let options: Vec<(u32, MySqlConnectOptions)> = (0..instances)
            .map(|n| (n, world.options(n, user, password)))
            .collect();
        let pods: Vec<(u32, String)> = (0..instances).map(|n| (n, world.names.pod(n))).collect();
        let seen = Arc::new(Mutex::new(Topology::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(watch_topology(
            options,
            pods,
            seen.clone(),
            stop.clone(),
            world.log.clone(),
        ));
        TopologyMonitor {
            seen,
            stop,
            task: Some(task),
        }
    }

    fn older_under_newer(&self) -> Vec<(f64, u32, String, u32, String)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .older_under_newer
            .clone()
    }

    fn pairs(&self) -> BTreeSet<(String, String)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pairs
            .clone()
    }

    async fn stop(mut self) -> Topology {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TopologyMonitor {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn sample(
    conns: &mut BTreeMap<u32, MySqlConnection>,
    n: u32,
    options: &MySqlConnectOptions,
    pods: &[(u32, String)],
) -> Option<Sample> {
    use sqlx::Row as _;
    const BOUND: Duration = Duration::from_secs(1);
    let conn = match conns.entry(n) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            let conn = tokio::time::timeout(BOUND, MySqlConnection::connect_with(options))
                .await
                .ok()?
                .ok()?;
            e.insert(conn)
        }
    };
    let read = async {
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&mut *conn)
            .await?;
        let row = sqlx::raw_sql("SHOW SLAVE STATUS")
            .fetch_optional(&mut *conn)
            .await?;
        let source = row.and_then(|row| {
            let text = |col: &str| {
                row.try_get::<String, _>(col).unwrap_or_else(|_| {
                    String::from_utf8_lossy(&row.get::<Vec<u8>, _>(col)).into_owned()
                })
            };
            let running = text("Slave_IO_Running") == "Yes" || text("Slave_SQL_Running") == "Yes";
            let host = text("Master_Host");
            running
                .then(|| {
                    pods.iter()
                        .find(|(_, pod)| host.starts_with(&format!("{pod}.")) || host == *pod)
                        .map(|(m, _)| *m)
                })
                .flatten()
        });
        Ok::<_, sqlx::Error>((version, source))
    };
    match tokio::time::timeout(BOUND, read).await {
        Ok(Ok((version, source))) => Some((numbers(&version)?, version, source)),
        _ => {
            conns.remove(&n);
            None
        }
    }
}

async fn watch_topology(
    options: Vec<(u32, MySqlConnectOptions)>,
    pods: Vec<(u32, String)>,
    seen: Arc<Mutex<Topology>>,
    stop: Arc<AtomicBool>,
    log: Arc<common::Log>,
) {
    let mut conns: BTreeMap<u32, MySqlConnection> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        let mut samples: BTreeMap<u32, Sample> = BTreeMap::new();
        for (n, o) in &options {
            if let Some(s) = sample(&mut conns, *n, o, &pods).await {
                samples.insert(*n, s);
            }
        }
        let mut pairs = Vec::new();
        let mut suspects = Vec::new();
        for (n, (v, _, source)) in &samples {
            let Some(s) = source else { continue };
            let Some((sv, _, _)) = samples.get(s) else {
                continue;
            };
            pairs.push((series(*v), series(*sv)));
            if v < sv {
                suspects.push((*n, *s));
            }
        }
        let mut confirmed = Vec::new();
        for (n, s) in suspects {
            let (Some(o_n), Some(o_s)) = (
                options.iter().find(|(m, _)| *m == n),
                options.iter().find(|(m, _)| *m == s),
            ) else {
                continue;
            };
            let again_n = sample(&mut conns, n, &o_n.1, &pods).await;
            let again_s = sample(&mut conns, s, &o_s.1, &pods).await;
            if let (Some((v, vt, Some(src))), Some((sv, svt, _))) = (again_n, again_s)
                && src == s
                && v < sv
            {
                log.say(
                    "topology",
                    format!(
                        "OLDER REPLICA UNDER A NEWER SOURCE: {n} ({vt}) replicates from {s} ({svt})"
                    ),
                );
                confirmed.push((log.secs(Instant::now()), n, vt, s, svt));
            }
        }
        {
            let mut t = seen.lock().unwrap_or_else(PoisonError::into_inner);
            t.passes += 1;
            for p in pairs {
                if t.pairs.insert(p.clone()) {
                    log.say(
                        "topology",
                        format!("first {} replica of a {} source", p.0, p.1),
                    );
                }
            }
            t.older_under_newer.extend(confirmed);
        }
        tokio::time::sleep(TOPOLOGY_POLL).await;
    }
    for (_, c) in std::mem::take(&mut conns) {
        let _ = c.close().await;
    }
}
