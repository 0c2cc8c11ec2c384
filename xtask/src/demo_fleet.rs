//! `cargo xtask demo --fleet`: one configuration change rolled over a fleet of three small
//! local clusters in waves, with a canary wave, a bake and a report.
//!
//! Three MariaDB 10.11 clusters of two instances (the testbed's cap of six servers), each
//! under a write load through its router and each run by a `FleetMember` (its engine rolls
//! what the fleet gives it and publishes its health); the fleet's driver, in this process,
//! rolls `performance_schema=ON` by rolling restart in waves `[shard-a] [shard-b, shard-c]`,
//! with a 5 s bake and the application's query as the user check. It ends with a table per
//! cluster (wave, when it started and was done, restarts, writes acknowledged and lost, the
//! longest write gap), the fleet's history, and `target/demo-fleet/summary.json`; it exits
//! non-zero if the fleet did not finish or an acknowledged write was lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use switchyard_local::fleet::{ConfigChange, FleetDoc, FleetDriver, FleetFile, FleetMember};
use switchyard_local::{ClusterSpec, LocalCluster};
use switchyard_plan::Policy;
use switchyard_plan::fleet::{FleetAction, FleetRecord, FleetSpec, FleetWait};
use switchyard_plan::topology::Timestamp;
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, check};
use switchyard_testbed::load::LoadConfig;

use crate::project_root;

const CLUSTERS: [&str; 3] = ["shard-a", "shard-b", "shard-c"];

/// Runs the fleet demo on a fresh tokio runtime.
pub fn run() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(demo())
}

fn policy() -> Policy {
    Policy {
        max_lag_seconds: 2,
        halt_after: Duration::from_secs(120),
        retry_backoff: Duration::from_secs(1),
        switchover_deadline: Duration::from_secs(10),
        ..Policy::default()
    }
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// Seconds from `origin` to `t`.
fn since(origin: Timestamp, t: Timestamp) -> f64 {
    Duration::from_millis(t.0.saturating_sub(origin.0)).as_secs_f64()
}

async fn demo() -> Result<()> {
    let wall = Instant::now();
    let origin = now();
    println!(
        "switchyard fleet demo: 3 clusters of 2 × MariaDB 10.11 under load; performance_schema=ON \
         by rolling restart, canary shard-a, then shard-b and shard-c together, 5 s of bake"
    );
    // Every server slot of the fleet reserved at once, then the clusters started on them.
    let started = Instant::now();
    let specs = CLUSTERS
        .iter()
        .map(|_| ClusterSpec::new(ServerKind::Mariadb1011, 2))
        .collect();
    let clusters: Vec<(&str, Arc<LocalCluster>)> = CLUSTERS
        .into_iter()
        .zip(
            LocalCluster::start_all(specs)
                .await
                .context("starting the clusters")?,
        )
        .map(|(name, c)| (name, Arc::new(c)))
        .collect();
    for (name, cluster) in &clusters {
        println!(
            "cluster {name}: primary endpoint {}",
            cluster.router().primary_addr()
        );
    }
    println!(
        "3 clusters started in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut loads = Vec::new();
    for (name, cluster) in &clusters {
        let mut config = LoadConfig::default();
        config.rate_per_sec = 50;
        loads.push(
            cluster
                .start_load(config)
                .await
                .with_context(|| format!("starting the load on {name}"))?,
        );
    }
    println!("load: 50 writes/s on each cluster through its router, as the application account");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut members = Vec::new();
    for (_, cluster) in &clusters {
        let mut member = FleetMember::new(Arc::clone(cluster), policy());
        let stopped = stopped.clone();
        members.push(tokio::spawn(async move {
            member.run(Duration::from_millis(300), &stopped).await;
        }));
    }

    let dir = project_root().join("target/demo-fleet");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let config = ConfigChange {
        set: BTreeMap::from([("performance_schema".to_string(), "ON".to_string())]),
        restart: true,
    };
    let spec = FleetSpec {
        clusters: CLUSTERS.iter().map(|c| (*c).to_string()).collect(),
        canary: 1,
        max_at_once: 2,
        bake: Duration::from_secs(5),
        max_lag_seconds: 10,
        change: config.name(),
    };
    let doc = FleetDoc {
        spec,
        config,
        check: Some("SELECT COUNT(*) FROM ledger".into()),
        members: clusters
            .iter()
            .map(|(name, c)| {
                let dir = c.state().path().parent().map(std::path::Path::to_path_buf);
                ((*name).to_string(), dir.unwrap_or_default())
            })
            .collect(),
        record: FleetRecord::default(),
    };
    FleetFile::in_dir(&dir)
        .update(|| Some(doc), |_| Ok(()))
        .context("writing the fleet file")?;

    let driven = drive(&dir).await;
    let fleet_wall = wall.elapsed();

    println!("\nload stopped; checking every acknowledged write on every instance");
    let mut rows = Vec::new();
    let mut lost = 0;
    for ((name, cluster), load) in clusters.iter().zip(loads) {
        let report = load.stop().await;
        let checked = check(
            &report.ledger,
            &cluster.check_targets(),
            &CheckConfig::default(),
        )
        .await
        .with_context(|| format!("checking the writes on {name}"))?;
        lost += checked.total_missing();
        let gap = report
            .ledger
            .longest_gap()
            .map_or(0.0, |g| g.length().as_secs_f64() * 1000.0);
        let starts: u32 = cluster.timeline().starts().values().sum();
        rows.push((
            *name,
            starts,
            report.acknowledged(),
            checked.total_missing(),
            gap,
        ));
    }
    stop.send_replace(true);
    for m in members {
        m.await.context("a fleet member's task")?;
    }
    for (_, c) in &clusters {
        c.stop_supervisor().await;
    }

    let record = FleetFile::in_dir(&dir).read()?.record;
    let rolled = record
        .current()
        .map(|r| r.rolled.clone())
        .unwrap_or_default();
    println!(
        "\n{:<9} {:>4} {:>9} {:>8} {:>9} {:>11} {:>6} {:>12}",
        "cluster", "wave", "started", "done", "restarts", "writes ack", "lost", "longest gap"
    );
    let mut summary = Vec::new();
    for (name, starts, acked, missing, gap) in &rows {
        let wave = record
            .waves
            .iter()
            .position(|w| w.iter().any(|c| c == name))
            .map_or(0, |w| w + 1);
        let r = rolled.iter().find(|r| r.cluster == *name);
        let started = r.map(|r| since(origin, r.started));
        let done = r.and_then(|r| r.done).map(|d| since(origin, d));
        let show = |t: Option<f64>| t.map_or_else(|| "-".to_string(), |t| format!("+{t:.1}s"));
        println!(
            "{name:<9} {wave:>4} {:>9} {:>8} {starts:>9} {acked:>11} {missing:>6} {gap:>10.0}ms",
            show(started),
            show(done)
        );
        summary.push(serde_json::json!({
            "cluster": name, "wave": wave, "started_s": started, "done_s": done,
            "restarts": starts, "writes_acknowledged": acked, "writes_lost": missing,
            "longest_write_gap_ms": gap,
        }));
    }
    println!("\nfleet history:");
    for r in &record.revisions {
        let ended = r.ended.map_or_else(
            || format!("not finished ({})", record.state),
            |e| {
                format!(
                    "{} at +{:.1}s",
                    if e.aborted { "aborted" } else { "done" },
                    since(origin, e.at)
                )
            },
        );
        println!("  f{} {}: {ended}", r.number, r.change);
    }
    println!(
        "fleet wall time: {:.1}s (clusters' start included)",
        fleet_wall.as_secs_f64()
    );
    let json = serde_json::json!({
        "state": record.state.to_string(),
        "wall_s": fleet_wall.as_secs_f64(),
        "waves": record.waves,
        "clusters": summary,
        "revisions": record.revisions,
    });
    let file = dir.join("summary.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", file.display()))?;
    println!("summary: {}", file.display());

    driven?;
    if lost > 0 {
        bail!("{lost} acknowledged writes were lost");
    }
    Ok(())
}

/// The fleet's driver, in this process: decides until the fleet is done or stops.
async fn drive(dir: &std::path::Path) -> Result<()> {
    let driver = FleetDriver::new(dir);
    let started = Instant::now();
    let mut last_wait = String::new();
    loop {
        let stepped = match driver.step(now()) {
            Ok(s) => s,
            Err(switchyard_local::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e).context("the fleet's driver"),
        };
        let at = started.elapsed().as_secs_f64();
        match &stepped.action {
            FleetAction::Wait {
                reason: FleetWait::Stopped { cluster, reason },
            } => bail!("the fleet stopped on cluster {cluster:?}: {reason}"),
            FleetAction::Wait { reason } => {
                let line = reason.to_string();
                if line != last_wait {
                    println!("[{at:6.1}s] waiting: {line}");
                    last_wait = line;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            FleetAction::Done => {
                println!("[{at:6.1}s] {}", stepped.action);
                return Ok(());
            }
            action => {
                println!("[{at:6.1}s] {action}");
                last_wait.clear();
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the fleet did not finish within 10 minutes");
        }
    }
}
