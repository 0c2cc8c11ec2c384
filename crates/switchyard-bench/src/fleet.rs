//! A fleet rollout under load: one static configuration change (a rolling restart of every
//! instance, the primary behind a switchover) rolled by the fleet planner over several local
//! clusters, with 1, 2 and 4 clusters changing at once.
//!
//! The clusters (MariaDB 10.11, three instances each, the testbed's 64 MB buffer pools) are
//! started once and keep running for every pass; each runs a write load through its router
//! and is run by a [`FleetMember`] in this process, as the process that runs a cluster would.
//! The fleet is driven in this process by [`FleetDriver`] steps every [`TICK`], as `switchyard
//! fleet apply` does; each pass is a fleet of its own (a fresh fleet folder) rolling a change
//! of its own (`max_connections` to a value no earlier pass used, by restart), with a canary
//! wave and every later wave of `at once` clusters, and no bake (the bake is a policy's
//! wait, not a cost of the fleet). What is measured, per pass:
//!
//! - **wall time**: from the driver's first step to the fleet done;
//! - **rollout sum**: each cluster's own rollout, its engine's work from its first operation
//!   after the fleet gave it the change to the engine step that found the rollout done (from
//!   the cluster's timeline);
//! - **overhead per cluster**: the wall time no cluster's engine was rolling (the wall time
//!   less the union of the clusters' rollout intervals), divided by the clusters: what the
//!   fleet adds beyond the clusters' own rollouts (the member taking the change up, its
//!   status reaching the driver, the driver's ticks and record writes);
//! - the longest write gap in any cluster during the pass, and acknowledged writes lost
//!   (checked on every instance of every cluster at the end).
//!
//! Targets (issue 13): 0 lost; wall time with k at once at most 1.3 × (serial wall time / k);
//! overhead per cluster under 100 ms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use switchyard_local::fleet::{ConfigChange, FleetDoc, FleetDriver, FleetFile, FleetMember};
use switchyard_local::timeline::Event;
use switchyard_local::{ClusterSpec, LocalCluster};
use switchyard_plan::Policy;
use switchyard_plan::engine::StepOutcome;
use switchyard_plan::fleet::{ClusterRollout, FleetAction, FleetRecord, FleetSpec, FleetWait};
use switchyard_plan::topology::Timestamp;
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, Ledger, check};
use switchyard_testbed::load::{LoadConfig, LoadHandle};
use tokio::sync::watch;

pub use crate::report::SectionContext;
use crate::report::table;
use crate::stats::ms;

/// How often the driver steps while it waits (and the measurement looks at the clusters).
pub const TICK: Duration = Duration::from_millis(20);

/// How often each cluster's member publishes its health while it does not roll.
pub const MEMBER_EVERY: Duration = Duration::from_millis(300);

/// Each cluster's write load, writes per second.
pub const RATE: u32 = 50;

/// How long one pass may take.
const PASS_DEADLINE: Duration = Duration::from_secs(1800);

/// The wall-time target: k at once within this factor of the serial time over k.
const SPEEDUP_SLACK: f64 = 1.3;

/// The overhead target per cluster.
const OVERHEAD_TARGET: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many clusters.
    pub clusters: usize,
    /// Instances per cluster.
    pub instances: usize,
    /// One pass per entry: how many clusters change at once (the first should be 1, the
    /// serial time the others are held to).
    pub at_once: Vec<usize>,
}

/// One pass of the fleet.
#[derive(Clone, Debug, Serialize)]
pub struct Pass {
    /// Clusters changing at once.
    pub at_once: usize,
    /// The change rolled.
    pub change: String,
    /// From the first step to done.
    pub wall: Duration,
    /// Each cluster's own rollout, by name.
    pub rollouts: BTreeMap<String, Duration>,
    /// The wall time no cluster was rolling.
    pub idle: Duration,
    /// The longest stretch without an acknowledged write in any cluster, and which.
    pub longest_gap: Duration,
    /// The cluster of the longest gap.
    pub longest_gap_cluster: String,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// Clusters.
    pub clusters: usize,
    /// Instances per cluster.
    pub instances: usize,
    /// Every pass.
    pub passes: Vec<Pass>,
    /// Writes acknowledged over the whole run.
    pub acknowledged: usize,
    /// Acknowledged writes missing on some instance at the end.
    pub lost: usize,
    /// The servers' resident memory while every cluster ran, summed, bytes.
    pub servers_rss: u64,
}

/// The clusters' engines: a failing restart halts within a minute instead of an hour.
fn policy() -> Policy {
    Policy {
        halt_after: Duration::from_secs(60),
        retry_backoff: Duration::from_secs(1),
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

/// The servers' resident memory, summed (`VmRSS` of each server process).
fn servers_rss(clusters: &[(String, Arc<LocalCluster>)]) -> u64 {
    let mut total = 0;
    for (_, c) in clusters {
        for i in c.testbed().instances() {
            let Some(pid) = i.pid() else { continue };
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
            total += kb * 1024;
        }
    }
    total
}

/// The length of the union of `intervals`.
fn union_length(mut intervals: Vec<Range<Instant>>) -> Duration {
    intervals.sort_by_key(|r| r.start);
    let mut total = Duration::ZERO;
    let mut current: Option<Range<Instant>> = None;
    for r in intervals {
        match &mut current {
            Some(c) if r.start <= c.end => c.end = c.end.max(r.end),
            _ => {
                if let Some(c) = current.take() {
                    total += c.end - c.start;
                }
                current = Some(r);
            }
        }
    }
    if let Some(c) = current {
        total += c.end - c.start;
    }
    total
}

/// Runs one pass: a fleet in `dir` rolling `config` over `clusters`, `at_once` at a time.
/// Returns the wall time and each cluster's rollout interval.
async fn pass(
    dir: PathBuf,
    clusters: &[(String, Arc<LocalCluster>)],
    config: ConfigChange,
    at_once: usize,
) -> Result<(Duration, BTreeMap<String, Range<Instant>>)> {
    let names: Vec<String> = clusters.iter().map(|(n, _)| n.clone()).collect();
    let mut spec = FleetSpec::new(names.clone(), config.name());
    spec.canary = at_once;
    spec.max_at_once = at_once;
    spec.bake = Duration::ZERO;
    spec.validate().context("the pass's fleet spec")?;
    let members = clusters
        .iter()
        .map(|(n, c)| {
            let state = c
                .state()
                .path()
                .parent()
                .context("a state file has a folder")?
                .to_owned();
            Ok((n.clone(), state))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let doc = FleetDoc {
        spec,
        config,
        check: None,
        members,
        record: FleetRecord::default(),
    };
    let file = FleetFile::in_dir(&dir);
    file.update(|| Some(doc), |_| Ok(()))
        .context("create the fleet file")?;
    let driver = FleetDriver::new(&dir);
    let started = Instant::now();
    let mut given: BTreeMap<String, Instant> = BTreeMap::new();
    let mut done: BTreeMap<String, Range<Instant>> = BTreeMap::new();
    loop {
        ensure!(
            started.elapsed() < PASS_DEADLINE,
            "the fleet did not finish within {PASS_DEADLINE:?}"
        );
        let stepped = match driver.step(now()) {
            Ok(s) => s,
            Err(switchyard_local::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e).context("a fleet step"),
        };
        // Each cluster's end: the first look that sees its runtime publish it done.
        let seen = FleetDriver::observe(&file.read().context("read the fleet file")?)
            .context("observe the clusters")?;
        for (name, start) in &given {
            if !done.contains_key(name)
                && seen
                    .get(name)
                    .is_some_and(|o| o.rollout == ClusterRollout::Done)
            {
                done.insert(name.clone(), *start..Instant::now());
            }
        }
        match stepped.action {
            FleetAction::Start { cluster, .. } => {
                given.insert(cluster, Instant::now());
            }
            FleetAction::Done => break,
            FleetAction::Wait {
                reason: FleetWait::Stopped { cluster, reason },
            } => bail!("the fleet stopped on cluster {cluster}: {reason}"),
            FleetAction::Wait { .. } => tokio::time::sleep(TICK).await,
            FleetAction::Aborted { .. } | FleetAction::Refuse { .. } => {
                bail!("the fleet ended with {}", stepped.action)
            }
            _ => {}
        }
    }
    let wall = started.elapsed();
    ensure!(
        done.len() == clusters.len(),
        "the fleet was done but only {} of {} clusters were seen done",
        done.len(),
        clusters.len()
    );
    Ok((wall, done))
}

/// Runs the benchmark, calling `progress` with a line per pass.
///
/// # Errors
/// Clusters that do not start, a fleet that stops or does not finish, a load that cannot be
/// checked.
pub async fn run(config: &Config, progress: &(dyn Fn(&str) + Sync)) -> Result<Results> {
    ensure!(config.clusters > 0, "a fleet needs at least one cluster");
    ensure!(
        config
            .at_once
            .iter()
            .all(|k| *k > 0 && *k <= config.clusters),
        "each --at-once must be between 1 and the number of clusters"
    );
    let started = LocalCluster::start_all(
        (0..config.clusters)
            .map(|_| ClusterSpec::new(ServerKind::Mariadb1011, config.instances))
            .collect(),
    )
    .await
    .context("start the clusters (raise SWITCHYARD_TESTBED_MAX_SERVERS to clusters × instances)")?;
    let clusters: Vec<(String, Arc<LocalCluster>)> = started
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("shard-{i}"), Arc::new(c)))
        .collect();
    progress(&format!(
        "{} clusters of {} started",
        clusters.len(),
        config.instances
    ));
    let (stop, stopped) = watch::channel(false);
    let mut members = Vec::new();
    let mut loads: Vec<(String, LoadHandle)> = Vec::new();
    for (name, cluster) in &clusters {
        let mut load_config = LoadConfig::default();
        load_config.writers = 2;
        load_config.rate_per_sec = RATE;
        let load = cluster
            .start_load(load_config)
            .await
            .with_context(|| format!("{name}: start the load"))?;
        loads.push((name.clone(), load));
        let mut member = FleetMember::new(Arc::clone(cluster), policy());
        let stopped = stopped.clone();
        members.push(tokio::spawn(async move {
            member.run(MEMBER_EVERY, &stopped).await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = servers_rss(&clusters);
    let folders = tempfile::tempdir().context("the fleets' folder")?;
    let mut passes: Vec<Pass> = Vec::new();
    let mut windows: Vec<Vec<Range<Duration>>> = Vec::new();
    let mut outcome = Ok(());
    for (i, k) in config.at_once.iter().enumerate() {
        let value = 200 + i;
        let change = ConfigChange {
            set: BTreeMap::from([("max_connections".to_owned(), value.to_string())]),
            restart: true,
        };
        let name = change.name();
        let pass_started = Instant::now();
        let result = pass(
            folders.path().join(format!("pass-{i}")),
            &clusters,
            change,
            *k,
        )
        .await;
        let (wall, intervals) = match result {
            Ok(r) => r,
            Err(e) => {
                outcome = Err(e.context(format!("the pass with {k} at once")));
                break;
            }
        };
        // Each cluster's own rollout: its engine, from its first operation after the fleet
        // gave it the change to its step that found the rollout done.
        let mut own: BTreeMap<String, Range<Instant>> = BTreeMap::new();
        for (cname, cluster) in &clusters {
            let Some(given) = intervals.get(cname).map(|r| r.start) else {
                continue;
            };
            let events = cluster.timeline().events();
            let first = events
                .iter()
                .find(|t| t.at >= given && matches!(t.event, Event::OpStarted { .. }));
            let Some(first) = first.map(|t| t.at) else {
                outcome = Err(anyhow::anyhow!(
                    "{cname}: the engine did nothing in the pass"
                ));
                break;
            };
            let done = events.iter().find(|t| {
                t.at >= first
                    && matches!(
                        t.event,
                        Event::Step {
                            outcome: StepOutcome::Done
                        }
                    )
            });
            let Some(done) = done.map(|t| t.at) else {
                outcome = Err(anyhow::anyhow!(
                    "{cname}: the engine never found its rollout done"
                ));
                break;
            };
            own.insert(cname.clone(), first..done);
        }
        if outcome.is_err() {
            break;
        }
        let idle = wall.saturating_sub(union_length(own.values().cloned().collect()));
        // Each cluster's window of this pass, in its ledger's time: the gaps are read once
        // the loads have stopped.
        let pass_windows: Vec<Range<Duration>> = loads
            .iter()
            .map(|(_, load)| {
                let ledger: &Arc<Ledger> = load.ledger();
                ledger.offset_of(pass_started)..ledger.offset_of(Instant::now())
            })
            .collect();
        windows.push(pass_windows);
        let p = Pass {
            at_once: *k,
            change: name,
            wall,
            rollouts: own
                .iter()
                .map(|(n, r)| (n.clone(), r.end - r.start))
                .collect(),
            idle,
            longest_gap: Duration::ZERO,
            longest_gap_cluster: String::new(),
        };
        progress(&format!(
            "{k} at once: wall {} ms, rollouts {} ms in all, idle {} ms",
            ms(p.wall),
            ms(p.rollouts.values().sum()),
            ms(p.idle),
        ));
        passes.push(p);
    }
    stop.send_replace(true);
    for m in members {
        let _ = m.await;
    }
    let mut acknowledged = 0;
    let mut lost = 0;
    for (c, ((name, load), (_, cluster))) in loads.into_iter().zip(&clusters).enumerate() {
        let report = load.stop().await;
        acknowledged += report.acknowledged();
        for (p, w) in passes.iter_mut().zip(&windows) {
            let Some(g) = w
                .get(c)
                .and_then(|w| report.ledger.longest_gap_in(w.clone()))
            else {
                continue;
            };
            let gap = Duration::from_micros(g.to_us.saturating_sub(g.from_us));
            if gap > p.longest_gap {
                p.longest_gap = gap;
                p.longest_gap_cluster = name.clone();
            }
        }
        let checked = check(
            &report.ledger,
            &cluster.check_targets(),
            &CheckConfig::default(),
        )
        .await
        .with_context(|| format!("{name}: check the acknowledged writes"))?;
        lost += checked.total_missing();
    }
    for (_, c) in &clusters {
        c.stop_supervisor().await;
    }
    outcome?;
    Ok(Results {
        clusters: config.clusters,
        instances: config.instances,
        passes,
        acknowledged,
        lost,
        servers_rss: rss,
    })
}

/// The markdown section: the context, the settings, the table, the targets.
pub fn section(results: &Results, ctx: &SectionContext) -> String {
    let mut out = ctx.preamble();
    let _ = write!(
        out,
        "Settings: {} clusters of {} MariaDB 10.11 instances (64 MB buffer pools; the \
         servers' resident memory with every cluster running: {} MiB in all), each under a \
         write load of {RATE} writes/s through its router; each pass a fleet of its own \
         rolling `max_connections` by restart (every instance restarted, the primary behind \
         a switchover), a canary wave and every later wave of \"at once\" clusters, no bake, \
         the driver stepping every {} ms. Rollouts = the sum of each cluster's own rollout \
         (its engine, from its first operation to its step that found the rollout done); \
         idle = the wall time no cluster's engine was rolling; overhead = idle per cluster. Targets (issue \
         13): wall time at most {SPEEDUP_SLACK} × (serial / k), overhead under {} ms per \
         cluster, 0 lost.\n\n",
        results.clusters,
        results.instances,
        results.servers_rss / (1024 * 1024),
        TICK.as_millis(),
        OVERHEAD_TARGET.as_millis(),
    );
    let serial = results
        .passes
        .iter()
        .find(|p| p.at_once == 1)
        .map(|p| p.wall);
    let header: Vec<String> = [
        "at once",
        "wall ms",
        "target ms",
        "rollouts ms",
        "idle ms",
        "overhead per cluster ms",
        "longest write gap ms",
        "targets",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let clusters = u32::try_from(results.clusters.max(1)).unwrap_or(u32::MAX);
    let rows: Vec<Vec<String>> = results
        .passes
        .iter()
        .map(|p| {
            let k = u32::try_from(p.at_once).unwrap_or(u32::MAX);
            let target = serial.map(|s| (s / k).mul_f64(SPEEDUP_SLACK));
            let overhead = p.idle / clusters;
            let pass = target.is_none_or(|t| p.wall <= t)
                && overhead < OVERHEAD_TARGET
                && results.lost == 0;
            vec![
                p.at_once.to_string(),
                ms(p.wall),
                target.map_or_else(|| "—".to_owned(), ms),
                ms(p.rollouts.values().sum()),
                ms(p.idle),
                ms(overhead),
                format!("{} ({})", ms(p.longest_gap), p.longest_gap_cluster),
                if pass { "pass" } else { "**FAIL**" }.to_owned(),
            ]
        })
        .collect();
    out.push_str(&table(&header, 1, &rows));
    let _ = writeln!(
        out,
        "\nWrites acknowledged over the whole run: {}; lost: {}.",
        results.acknowledged, results.lost
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_union_of_intervals_counts_overlaps_once() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        assert_eq!(
            union_length(vec![at(0)..at(2), at(1)..at(3), at(5)..at(6)]),
            Duration::from_secs(4)
        );
        assert_eq!(union_length(Vec::new()), Duration::ZERO);
        assert_eq!(
            union_length(vec![at(4)..at(5), at(0)..at(10)]),
            Duration::from_secs(10)
        );
    }
}
