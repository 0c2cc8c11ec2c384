//! The rollout benchmark: a whole rolling change of a MariaDB cluster under load, by the engine
//! over the local runtime, against the naive StatefulSet order (highest ordinal first, the
//! primary restarted in place with no switchover), side by side in one run.
//!
//! For each cluster size and each method a fresh cluster is started, the testbed load runs
//! through the router (4 writers, 200 writes/s, application account), and the change is rolled
//! out: a static variable (`performance_schema=ON` on 10.11, one restart per instance) or the
//! upgrade 10.5 → 10.11 (slow shutdown, start on 10.11, `mariadb-upgrade`). Measured:
//! - the rollout's wall time and the sum of the instances' own restart times (the runtime's
//!   restart operations: shutdown, start, `mariadb-upgrade`, replication or writes resumed);
//!   the difference per restarted instance is the engine's overhead per step (observing,
//!   deciding, recording, draining, the switchover, waiting for health);
//! - write unavailability: the longest gap between consecutive acknowledged writes that
//!   overlaps the rollout, writes that failed, writes whose outcome is unknown, and
//!   acknowledged writes missing on any instance afterwards (lost).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use switchyard_local::timeline::{Event, Op};
use switchyard_local::{Apply, ClusterSpec, LocalCluster, LocalRuntime};
use switchyard_plan::engine::ClusterRuntime as _;
use switchyard_plan::{Engine, Finished, Policy};
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, check};
use switchyard_testbed::load::{AccountKind, Load, LoadConfig, prepare};

use crate::report::{LoadAverage, Machine, table};
use crate::stats::ms;

/// The target of the engine's overhead per step.
pub const OVERHEAD_TARGET: Duration = Duration::from_millis(500);

/// What is rolled out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// `performance_schema=ON` on MariaDB 10.11: static, one restart per instance.
    Config,
    /// MariaDB 10.5 → 10.11: slow shutdown, start on 10.11, `mariadb-upgrade`.
    Upgrade,
}

impl Change {
    fn server(self) -> ServerKind {
        match self {
            Change::Config => ServerKind::Mariadb1011,
            Change::Upgrade => ServerKind::Mariadb105,
        }
    }

    /// The change in words.
    pub fn describe(self) -> &'static str {
        match self {
            Change::Config => "MariaDB 10.11, performance_schema=ON (static: a rolling restart)",
            Change::Upgrade => "MariaDB 10.5 → 10.11 (slow shutdown, start, mariadb-upgrade)",
        }
    }
}

/// The benchmark's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster sizes.
    pub sizes: Vec<usize>,
    /// What is rolled out.
    pub change: Change,
}

/// How the change was rolled out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The engine: replicas first, each drained and restarted once healthy, the primary last
    /// behind a switchover.
    Switchyard,
    /// The StatefulSet's order: highest ordinal first, the primary (ordinal 0) restarted in
    /// place, no switchover.
    Naive,
}

impl Method {
    fn describe(self) -> &'static str {
        match self {
            Method::Switchyard => "switchyard",
            Method::Naive => "StatefulSet order",
        }
    }
}

/// One rollout's measurements.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// How it was rolled out.
    pub method: Method,
    /// Instances in the cluster.
    pub instances: usize,
    /// The rollout's wall time.
    pub total: Duration,
    /// Each restart operation's own time, in the order they ran.
    pub restarts: Vec<Duration>,
    /// Promotions (switchovers) during the rollout.
    pub switchovers: usize,
    /// The longest gap between acknowledged writes overlapping the rollout.
    pub longest_gap: Duration,
    /// Writes acknowledged during the whole load.
    pub acknowledged: usize,
    /// Writes that failed (refused or the connection was down before sending).
    pub failed: usize,
    /// Writes whose connection broke after sending (never acknowledged, never lost).
    pub unknown: usize,
    /// Acknowledged writes missing on some instance afterwards (summed over instances).
    pub lost: usize,
}

impl Measured {
    /// The sum of the instances' own restart times.
    pub fn restart_sum(&self) -> Duration {
        self.restarts.iter().sum()
    }

    /// The rollout's time beyond the instances' own restarts, per restarted instance.
    pub fn overhead_per_step(&self) -> Duration {
        let n = u32::try_from(self.restarts.len().max(1)).unwrap_or(u32::MAX);
        self.total.saturating_sub(self.restart_sum()) / n
    }
}

/// Runs every size with both methods, each on a fresh cluster.
///
/// # Errors
/// A cluster that does not start, a rollout that does not finish, a failed ledger check.
pub async fn run(config: &Config, progress: &dyn Fn(&str)) -> Result<Vec<Measured>> {
    ensure!(!config.sizes.is_empty(), "--sizes needs at least one size");
    ensure!(
        config.sizes.iter().all(|n| (2..=6).contains(n)),
        "--sizes takes cluster sizes from 2 to 6 (the testbed runs at most 6 servers at once)"
    );
    let mut out = Vec::new();
    for &n in &config.sizes {
        for method in [Method::Switchyard, Method::Naive] {
            progress(&format!(
                "{n} instances, {}: {}",
                method.describe(),
                config.change.describe()
            ));
            let m = one(config.change, n, method)
                .await
                .with_context(|| format!("{n} instances, {}", method.describe()))?;
            progress(&format!(
                "  total {}, restarts {} (sum), overhead {} per step, longest write gap {}, {} failed, {} lost",
                ms(m.total),
                ms(m.restart_sum()),
                ms(m.overhead_per_step()),
                ms(m.longest_gap),
                m.failed,
                m.lost
            ));
            out.push(m);
        }
    }
    Ok(out)
}

/// How long the load runs before and after the rollout.
const SETTLE: Duration = Duration::from_secs(1);

async fn one(change: Change, n: usize, method: Method) -> Result<Measured> {
    let cluster = LocalCluster::start(ClusterSpec::new(change.server(), n))
        .await
        .context("start the cluster")?;
    let result = rollout(&cluster, change, n, method).await;
    cluster.stop_supervisor().await;
    result
}

async fn rollout(
    cluster: &LocalCluster,
    change: Change,
    n: usize,
    method: Method,
) -> Result<Measured> {
    let table = "app.ledger";
    prepare(
        &cluster
            .testbed()
            .primary()
            .connect_options(&cluster.credentials().operator),
        table,
    )
    .await
    .context("create the load's table")?;
    let target = match change {
        Change::Config => cluster.config_target(&[("performance_schema", "ON")], Apply::Restart),
        Change::Upgrade => cluster.upgrade_target(ServerKind::Mariadb1011).await,
    }
    .context("make the target revision")?;
    let mut load_config = LoadConfig::with_account(AccountKind::Application);
    load_config.writers = 4;
    load_config.rate_per_sec = 200;
    load_config.table = table.to_owned();
    let load = Load::start(load_config, cluster.endpoints(), cluster.credentials())
        .context("start the load")?;
    let ledger = std::sync::Arc::clone(load.ledger());
    tokio::time::sleep(SETTLE).await;

    let started = Instant::now();
    match method {
        Method::Switchyard => {
            let policy = Policy {
                retry_backoff: Duration::from_secs(1),
                ..Policy::default()
            };
            let engine = Engine::new(LocalRuntime::new(cluster), target.clone(), policy);
            let finished = tokio::time::timeout(Duration::from_secs(600), engine.run(100_000))
                .await
                .context("the rollout did not finish within 10 minutes")?
                .context("the engine failed")?;
            ensure!(
                finished == Finished::Done,
                "the rollout ended with {finished:?}"
            );
        }
        Method::Naive => {
            let runtime = LocalRuntime::new(cluster);
            let slow = change == Change::Upgrade;
            for o in (0..u32::try_from(n)?).rev() {
                runtime
                    .restart(o, &target.revision, target.version, slow)
                    .await
                    .with_context(|| format!("restart instance {o}"))?;
            }
        }
    }
    let total = started.elapsed();
    let window = ledger.offset_of(started)..ledger.offset_of(Instant::now());
    tokio::time::sleep(SETTLE).await;
    let report = load.stop().await;

    let mut restarts = Vec::new();
    let mut switchovers = 0;
    for t in cluster.timeline().events() {
        match t.event {
            Event::OpFinished {
                op: Op::Restart { .. },
                took,
                error: None,
                ..
            } => restarts.push(took),
            Event::OpFinished {
                op: Op::Promote,
                error: None,
                ..
            } => switchovers += 1,
            _ => {}
        }
    }
    ensure!(
        restarts.len() == n,
        "expected {n} restarts, the timeline has {}",
        restarts.len()
    );
    let checked = check(
        &report.ledger,
        &cluster.check_targets(),
        &CheckConfig::default(),
    )
    .await
    .context("check the acknowledged writes on every instance")?;
    let longest_gap = report
        .ledger
        .longest_gap_in(window)
        .map_or(Duration::ZERO, |g| {
            Duration::from_micros(g.to_us.saturating_sub(g.from_us))
        });
    Ok(Measured {
        method,
        instances: n,
        total,
        restarts,
        switchovers,
        longest_gap,
        acknowledged: report.acknowledged(),
        failed: report.ledger.errors.len(),
        unknown: report.ledger.unknown.len(),
        lost: checked.total_missing(),
    })
}

/// What the section says besides the results.
#[derive(Clone, Debug)]
pub struct SectionContext {
    /// The command that reproduces the measurement.
    pub command: String,
    /// The UTC date.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// The load average when the benchmark started.
    pub load_before: Option<LoadAverage>,
    /// The load average when it ended.
    pub load_after: Option<LoadAverage>,
    /// What was rolled out.
    pub change: Change,
}

/// The section of `docs/benchmarks.md`: the command, the date, the machine and its load, the
/// table and a verdict against the overhead target.
pub fn section(results: &[Measured], ctx: &SectionContext) -> String {
    let load = |l: Option<LoadAverage>| l.map_or("unknown".to_owned(), |l| l.to_string());
    let mut out = format!(
        "Command: `{}`\n\nMeasured {} (UTC) on {}. Load average (1, 5, 15 min): {} at the start, \
         {} at the end. Change: {}.\n\n",
        ctx.command,
        ctx.date,
        ctx.machine.describe(),
        load(ctx.load_before),
        load(ctx.load_after),
        ctx.change.describe(),
    );
    let header: Vec<String> = [
        "instances",
        "method",
        "rollout (ms)",
        "restarts, sum (ms)",
        "overhead per step (ms)",
        "switchovers",
        "longest write gap (ms)",
        "failed writes",
        "unknown outcome",
        "acknowledged",
        "lost",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            vec![
                m.instances.to_string(),
                m.method.describe().to_owned(),
                ms(m.total),
                ms(m.restart_sum()),
                ms(m.overhead_per_step()),
                m.switchovers.to_string(),
                ms(m.longest_gap),
                m.failed.to_string(),
                m.unknown.to_string(),
                m.acknowledged.to_string(),
                m.lost.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&header, 2, &rows));
    let over: Vec<String> = results
        .iter()
        .filter(|m| m.method == Method::Switchyard && m.overhead_per_step() >= OVERHEAD_TARGET)
        .map(|m| {
            format!(
                "{} instances ({} ms)",
                m.instances,
                ms(m.overhead_per_step())
            )
        })
        .collect();
    out.push('\n');
    if over.is_empty() {
        out.push_str(&format!(
            "Verdict: the engine's overhead per step is under the {} ms target at every size.\n",
            ms(OVERHEAD_TARGET)
        ));
    } else {
        out.push_str(&format!(
            "Verdict: the engine's overhead per step misses the {} ms target at {}.\n",
            ms(OVERHEAD_TARGET),
            over.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(method: Method, total_ms: u64, restarts_ms: &[u64]) -> Measured {
        Measured {
            method,
            instances: restarts_ms.len(),
            total: Duration::from_millis(total_ms),
            restarts: restarts_ms
                .iter()
                .map(|r| Duration::from_millis(*r))
                .collect(),
            switchovers: usize::from(method == Method::Switchyard),
            longest_gap: Duration::from_millis(30),
            acknowledged: 100,
            failed: 4,
            unknown: 1,
            lost: 0,
        }
    }

    #[test]
    fn overhead_is_the_time_beyond_the_restarts_per_restart() {
        let m = measured(Method::Switchyard, 3_200, &[500, 700, 800]);
        assert_eq!(m.restart_sum(), Duration::from_millis(2_000));
        assert_eq!(m.overhead_per_step(), Duration::from_millis(400));
        // Clock noise never makes it negative.
        let m = measured(Method::Naive, 1_999, &[1_000, 1_000]);
        assert_eq!(m.overhead_per_step(), Duration::ZERO);
    }

    #[test]
    fn the_verdict_names_the_sizes_over_target() {
        let ctx = SectionContext {
            command: "cargo xtask bench rollout".into(),
            date: "2026-01-01".into(),
            machine: Machine::detect(),
            load_before: None,
            load_after: None,
            change: Change::Config,
        };
        let ok = section(
            &[
                measured(Method::Switchyard, 1_300, &[400, 400, 400]),
                // The naive order is not held to the engine's target.
                measured(Method::Naive, 9_000, &[100, 100, 100]),
            ],
            &ctx,
        );
        assert!(ok.contains("under the 500 ms target"), "{ok}");
        assert!(ok.contains("| StatefulSet order |"), "{ok}");
        let over = section(
            &[measured(
                Method::Switchyard,
                5_000,
                &[400, 400, 400, 400, 400],
            )],
            &ctx,
        );
        assert!(
            over.contains("misses the 500 ms target at 5 instances (600 ms)"),
            "{over}"
        );
    }
}
