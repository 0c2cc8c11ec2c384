//! The switchover benchmark: how long writes stop when the primary role moves under load, side
//! by side with restarting the primary in place.
//!
//! For each flavor, one 3-instance cluster (a primary and two GTID replicas) takes the
//! testbed's load through the router: 4 writers at 200 writes/s in total and one reader, with
//! the application account. On that cluster, in this order:
//!
//! 1. **switchover**, `runs` times: [`switchyard_mysql::switchover`] from the current primary
//!    to the next instance (0 → 1 → 2 → 0 ...), repointing the third; the router's primary
//!    endpoint moves (and the old primary's sessions are closed) when the sink records
//!    [`SwitchoverStep::Promoted`], as the operator moves its Service.
//! 2. **restart in place**, `restarts` times, with a fresh load: the primary is stopped
//!    cleanly (SIGTERM, what a pod restart does), started again, made writable (every testbed
//!    instance starts read-only), and the replicas are restarted if their replication
//!    stopped. The router keeps pointing at it.
//!
//! A run's **write unavailability** is the longest gap between consecutive acknowledged
//! writes that overlaps the window from just before the operation starts to
//! [`WINDOW_AFTER`] after it ends (a gap straddling the window's edge counts whole). Before
//! each run the replicas must be replicating and caught up and the load must have written
//! again, so runs do not overlap. After each method the ledger is checked on every instance:
//! an acknowledged write missing anywhere is **lost**; writes whose connection broke after
//! the statement was sent have an **unknown outcome** (they are not acknowledged, so not
//! counted as lost either way).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use switchyard_mysql::{
    Credentials, Instance, InstanceAddr, IoThreadState, ReplicationCredentials, StepSink,
    SwitchoverOutcome, SwitchoverPolicy, SwitchoverStep, switchover,
};
use switchyard_testbed::ledger::{CheckConfig, CheckTarget, ErrorKind, LedgerSnapshot, check};
use switchyard_testbed::load::{Endpoints, Load, LoadConfig, LoadHandle, prepare};
use switchyard_testbed::router::Router;
use switchyard_testbed::{Cluster, Flavor, ServerKind, replication, wait_for};

use crate::events::FenceLifted;
pub use crate::report::SectionContext;
use crate::report::{ResultRow, SWITCHOVER_TARGETS, table};
use crate::stats::{Summary, ms};

/// How far past the end of an operation a run's window reaches.
pub const WINDOW_AFTER: Duration = Duration::from_millis(200);

/// Instances per cluster.
const INSTANCES: usize = 3;

/// Acknowledged writes the load must make before each run (2.5 s at 200 writes/s before the
/// first, 0.5 s between runs).
const WARM_UP_WRITES: usize = 500;
const WRITES_BETWEEN_RUNS: usize = 100;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The servers, one cluster each.
    pub flavors: Vec<ServerKind>,
    /// Switchovers per flavor.
    pub runs: usize,
    /// Restarts in place per flavor.
    pub restarts: usize,
    /// Whether the load's connections use TLS.
    pub load_tls: LoadTls,
}

/// Whether the load's writers use TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadTls {
    /// TLS when the server offers it (MySQL 9.7 does; the testbed's MariaDB does not): the
    /// testbed load's default, and the benchmark's.
    #[default]
    Preferred,
    /// No TLS, a diagnostic: it shows what the clients' TLS handshakes cost. MySQL's
    /// `caching_sha2_password` then needs the login cached by the server, so every
    /// instance gets one TLS login first and restarts in place (which empty the cache) are
    /// refused.
    Disabled,
}

/// How the primary was taken out of service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// [`switchyard_mysql::switchover`] to a replica, the router moved at promotion.
    Switchover,
    /// The primary stopped cleanly, started again and made writable; no switchover.
    RestartInPlace,
}

impl Method {
    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Method::Switchover => "switchover",
            Method::RestartInPlace => "restart in place",
        }
    }

    /// The names of the phases a run of this method reports, in order.
    pub fn phase_names(self) -> &'static [&'static str] {
        match self {
            Method::Switchover => &SWITCHOVER_PHASES,
            Method::RestartInPlace => &RESTART_PHASES,
        }
    }
}

/// Phases of a switchover run:
/// - `preflight`: the switchover's checks (writes continue);
/// - `before fence`: from the last acknowledged write to the fence (the gap's start);
/// - `fence`, `catch-up`, `promote`: the switchover's own timings;
/// - `of which reset`: the part of `promote` after the server turned writable (forgetting
///   its source, `RESET REPLICA ALL` / `RESET SLAVE ALL`), from switchyard-mysql's
///   `fence lifted` event ([`FenceLifted`]); the router moves only once it is done;
/// - `no primary`: from the fence's first write-stopping statement to the end of the
///   promotion ([`SwitchoverOutcome::unavailable`]);
/// - `router move`: pointing the router at the new primary and closing the old one's
///   sessions;
/// - `writers back`: from the router move to the first acknowledged write (the load's
///   writers back off, reconnect and write);
/// - `repoint`: repointing the other replica and the old primary (writes continue).
pub const SWITCHOVER_PHASES: [&str; 10] = [
    "preflight",
    "before fence",
    "fence",
    "catch-up",
    "promote",
    "of which reset",
    "no primary",
    "router move",
    "writers back",
    "repoint",
];

/// Phases of a restart in place: `shutdown` (SIGTERM until the process exited), `start`
/// (until it accepts connections), `writable` (`read_only` off), `writers back` (from then to
/// the first acknowledged write).
pub const RESTART_PHASES: [&str; 4] = ["shutdown", "start", "writable", "writers back"];

/// One switchover or restart.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The primary before (instance ordinal).
    pub from: usize,
    /// The primary after.
    pub to: usize,
    /// The write unavailability: the longest gap between acknowledged writes in the window.
    pub gap: Duration,
    /// Where the gap starts, on the load's time axis.
    pub gap_starts_at: Duration,
    /// How long the operation took.
    pub took: Duration,
    /// Phase timings, named by [`Method::phase_names`].
    pub phases: Vec<Duration>,
    /// Unknown-outcome writes in the window.
    pub unknown: usize,
    /// Write errors in the window (connects refused or failed, statements rejected, lost).
    pub errors: usize,
    /// Of `errors`, statements the server rejected (read-only).
    pub rejected: usize,
    /// Of `errors`, failed connects.
    pub connect_errors: usize,
    /// When things happened, on the load's time axis (for a post-mortem of the gap).
    pub events: Vec<(&'static str, Duration)>,
}

/// Every run of one method on one flavor, and the ledger check after them.
#[derive(Clone, Debug, Serialize)]
pub struct MethodResult {
    /// The method.
    pub method: Method,
    /// The runs, in order.
    pub runs: Vec<Run>,
    /// Acknowledged writes over the whole load.
    pub acknowledged: usize,
    /// Acknowledged writes missing on at least one instance.
    pub lost: usize,
    /// Writes with an unknown outcome over the whole load.
    pub unknown_outcome: usize,
    /// Write errors over the whole load.
    pub errors: usize,
    /// Times a replica's replication had stopped and was started again.
    pub replicas_restarted: usize,
}

impl MethodResult {
    /// The write unavailability of the runs.
    pub fn gap(&self) -> Summary {
        Summary::of(&self.runs.iter().map(|r| r.gap).collect::<Vec<_>>())
    }

    /// The median of each phase, in [`Method::phase_names`] order.
    pub fn phase_p50(&self) -> Vec<Duration> {
        (0..self.method.phase_names().len())
            .map(|i| {
                let samples: Vec<Duration> = self
                    .runs
                    .iter()
                    .filter_map(|r| r.phases.get(i).copied())
                    .collect();
                Summary::of(&samples).p50
            })
            .collect()
    }

    /// The results-table row.
    pub fn row(&self, flavor: &str, load_tls: LoadTls) -> ResultRow {
        let method = match load_tls {
            LoadTls::Preferred => self.method.label().to_owned(),
            LoadTls::Disabled => format!("{} (load without TLS)", self.method.label()),
        };
        ResultRow {
            flavor: flavor.to_owned(),
            method,
            gap: self.gap(),
            lost: self.lost,
            unknown: self.unknown_outcome,
        }
    }
}

/// Everything measured on one flavor.
#[derive(Clone, Debug, Serialize)]
pub struct FlavorResult {
    /// The server and its version, for example `MariaDB 10.11.14`.
    pub flavor: String,
    /// Whether the load used TLS.
    pub load_tls: LoadTls,
    /// The switchovers.
    pub switchover: MethodResult,
    /// The restarts in place.
    pub restart: MethodResult,
    /// Time for a new application connection (TCP, TLS when offered, login), as the load's
    /// writers connect.
    pub connect: ConnectTimes,
}

/// How long a new application connection takes, measured after the switchovers.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ConnectTimes {
    /// Through the router's primary endpoint, TLS when offered (as the load connects).
    pub router: Summary,
    /// Straight to the primary, TLS when offered.
    pub direct: Summary,
    /// Straight to the primary without TLS; `None` when the server refused the login.
    pub direct_plain: Option<Summary>,
}

/// Runs the benchmark for every flavor in turn, reporting progress through `progress`.
///
/// # Errors
/// A cluster that does not start, a switchover or restart that fails, a load that stops
/// writing, a ledger check that cannot read an instance.
///
/// `lifted` must be a layer of the tracing subscriber (it splits the promotion).
pub async fn run(
    config: &Config,
    lifted: &FenceLifted,
    progress: &dyn Fn(&str),
) -> Result<Vec<FlavorResult>> {
    ensure!(config.runs > 0, "--runs must be at least 1");
    ensure!(
        config.load_tls == LoadTls::Preferred || config.restarts == 0,
        "a load without TLS needs --restarts 0: a restarted MySQL server has forgotten the cached logins that connections without TLS rely on"
    );
    let mut results = Vec::new();
    for &kind in &config.flavors {
        results.push(
            bench_flavor(kind, config, lifted, progress)
                .await
                .with_context(|| format!("switchover benchmark on {kind}"))?,
        );
    }
    Ok(results)
}

/// The results table, then the phase timings and the connect time, as markdown.
pub fn tables(results: &[FlavorResult]) -> String {
    let rows: Vec<ResultRow> = results
        .iter()
        .flat_map(|r| {
            let mut rows = vec![r.switchover.row(&r.flavor, r.load_tls)];
            if !r.restart.runs.is_empty() {
                rows.push(r.restart.row(&r.flavor, r.load_tls));
            }
            rows
        })
        .collect();
    let mut out = crate::report::results_table(&rows, &SWITCHOVER_TARGETS);
    for method in [Method::Switchover, Method::RestartInPlace] {
        let result = |r: &FlavorResult| match method {
            Method::Switchover => r.switchover.clone(),
            Method::RestartInPlace => r.restart.clone(),
        };
        if results.iter().all(|r| result(r).runs.is_empty()) {
            continue;
        }
        out.push_str(&format!(
            "\n{} phases, p50 (ms; the gap is the write unavailability):\n\n",
            capitalized(method.label())
        ));
        let mut header = vec!["flavor".to_owned()];
        header.extend(method.phase_names().iter().map(|s| (*s).to_owned()));
        header.push("gap".to_owned());
        let body: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                let m = result(r);
                let mut row = vec![r.flavor.clone()];
                row.extend(m.phase_p50().into_iter().map(ms));
                row.push(ms(m.gap().p50));
                row
            })
            .collect();
        out.push_str(&table(&header, 1, &body));
    }
    out.push_str(
        "\nA new application connection (as the load's writers make one after an error), p50 ms:\n\n",
    );
    let header: Vec<String> = ["flavor", "via router, TLS", "direct, TLS", "direct, no TLS"]
        .map(str::to_owned)
        .to_vec();
    let body: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.flavor.clone(),
                ms(r.connect.router.p50),
                ms(r.connect.direct.p50),
                r.connect
                    .direct_plain
                    .map_or("refused".to_owned(), |s| ms(s.p50)),
            ]
        })
        .collect();
    out.push_str(&table(&header, 1, &body));
    out
}

/// The section of `docs/benchmarks.md`: the command, the date, the machine and its load, the
/// tables and a verdict against the targets.
pub fn section(results: &[FlavorResult], ctx: &SectionContext) -> String {
    let mut out = ctx.preamble();
    out.push_str(&tables(results));
    let restarted: Vec<String> = results
        .iter()
        .map(|r| format!("{} {}", r.flavor, r.restart.replicas_restarted))
        .collect();
    out.push_str(&format!(
        "\nReplicas whose replication had stopped after a restart in place and was started again: {}.\n",
        restarted.join(", ")
    ));
    let missed: Vec<String> = results
        .iter()
        .filter(|r| {
            !r.switchover
                .row(&r.flavor, r.load_tls)
                .passes(&SWITCHOVER_TARGETS)
        })
        .map(|r| r.flavor.clone())
        .collect();
    out.push('\n');
    if missed.is_empty() {
        out.push_str("Verdict: the switchover meets every target on every flavor measured.\n");
    } else {
        out.push_str(&format!(
            "Verdict: the switchover misses a target on {}.\n",
            missed.join(" and ")
        ));
    }
    out
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Records the steps' times and moves the router to the new primary when the promotion is
/// recorded, as the operator moves its Service and closes the demoted primary's connections.
struct RouterSink<'a> {
    router: &'a Router,
    old: u32,
    new: u32,
    promoted: Option<Instant>,
    moved: Option<Instant>,
}

#[async_trait::async_trait]
impl StepSink for RouterSink<'_> {
    async fn record(&mut self, step: &SwitchoverStep) -> Result<(), String> {
        if let SwitchoverStep::Promoted { .. } = step {
            self.promoted = Some(Instant::now());
            self.router
                .set_primary(Some(self.new))
                .await
                .map_err(|e| e.to_string())?;
            self.router
                .close_connections_to(self.old)
                .await
                .map_err(|e| e.to_string())?;
            self.moved = Some(Instant::now());
        }
        Ok(())
    }
}

/// The times of one operation, turned into a [`Run`] once the load has written past it.
struct Timed {
    from: usize,
    to: usize,
    start: Instant,
    end: Instant,
    /// When writes could flow again (router moved, or server writable).
    ready: Instant,
    /// When writes were stopped on purpose (the fence), if known.
    stopped: Option<Instant>,
    /// Phases known at once, in order, with `writers back` (and `before fence`) left out.
    phases: Vec<Duration>,
    /// Named instants between `start` and `end`.
    events: Vec<(&'static str, Instant)>,
}

struct Bench<'a> {
    cluster: Arc<Cluster>,
    handles: Vec<Instance>,
    router: Router,
    flavor: String,
    lifted: FenceLifted,
    load_tls: LoadTls,
    progress: &'a dyn Fn(&str),
}

async fn bench_flavor(
    kind: ServerKind,
    config: &Config,
    lifted: &FenceLifted,
    progress: &dyn Fn(&str),
) -> Result<FlavorResult> {
    progress(&format!("{kind}: starting a {INSTANCES}-instance cluster"));
    let cluster = Arc::new(
        replication(kind, INSTANCES)
            .await
            .context("starting the cluster")?,
    );
    let creds = cluster.credentials();
    let handles: Vec<Instance> = cluster
        .instances()
        .iter()
        .map(|tb| {
            Instance::new(
                tb.name(),
                InstanceAddr::new("127.0.0.1", tb.port()),
                Credentials::new(creds.operator.user(), creds.operator.password()),
            )
        })
        .collect();
    let version = cluster.primary().server_version().await?;
    let flavor = format!(
        "{} {}",
        kind.flavor(),
        version.split('-').next().unwrap_or(&version)
    );
    let backends = (0..INSTANCES)
        .map(|i| {
            (
                ordinal(i),
                SocketAddr::from(([127, 0, 0, 1], cluster.instance(i).port())),
            )
        })
        .collect();
    let router = Router::start(backends).await?;
    router.set_primary(Some(0)).await?;
    prepare(
        &cluster.primary().connect_options(&creds.operator),
        "app.ledger",
    )
    .await?;
    let bench = Bench {
        cluster: Arc::clone(&cluster),
        handles,
        router,
        flavor: flavor.clone(),
        lifted: lifted.clone(),
        load_tls: config.load_tls,
        progress,
    };
    let (switchover, primary, connect) = bench.switchovers(kind, config.runs).await?;
    let restart = bench.restarts(primary, config.restarts).await?;
    Ok(FlavorResult {
        flavor,
        load_tls: config.load_tls,
        switchover,
        restart,
        connect,
    })
}

fn ordinal(i: usize) -> u32 {
    u32::try_from(i).expect("a handful of instances")
}

impl Bench<'_> {
    async fn start_load(&self, run: u8) -> Result<LoadHandle> {
        let mut config = LoadConfig::default();
        // Each method's load writes its own ids to the same table.
        config.run = run;
        if self.load_tls == LoadTls::Disabled {
            config.ssl_mode = MySqlSslMode::Disabled;
            // One TLS login per server caches the account for logins without TLS.
            let app = &self.cluster.credentials().application;
            for tb in self.cluster.instances() {
                let options = tb.connect_options(app).ssl_mode(MySqlSslMode::Required);
                let conn = MySqlConnection::connect_with(&options)
                    .await
                    .with_context(|| format!("a TLS login to {} to cache it", tb.name()))?;
                let _ = conn.close().await;
            }
        }
        Ok(Load::start(
            config,
            Endpoints::from(&self.router),
            self.cluster.credentials(),
        )?)
    }

    async fn switchovers(
        &self,
        kind: ServerKind,
        runs: usize,
    ) -> Result<(MethodResult, usize, ConnectTimes)> {
        let mut replication = ReplicationCredentials::new(
            self.cluster.credentials().replication.user(),
            self.cluster.credentials().replication.password(),
        );
        // The testbed's MySQL replicas connect with TLS.
        replication.ssl = kind.flavor() == Flavor::Mysql;
        let policy = SwitchoverPolicy {
            replication: Some(replication),
            ..SwitchoverPolicy::default()
        };
        let load = self.start_load(0).await?;
        let mut primary = 0;
        let mut replicas_restarted = self.settle(primary, &load, WARM_UP_WRITES).await?;
        let mut results = Vec::with_capacity(runs);
        for i in 0..runs {
            let new = (primary + 1) % INSTANCES;
            let other = (primary + 2) % INSTANCES;
            let mut sink = RouterSink {
                router: &self.router,
                old: ordinal(primary),
                new: ordinal(new),
                promoted: None,
                moved: None,
            };
            let start = Instant::now();
            let outcome: SwitchoverOutcome = switchover(
                &self.handles[primary],
                &self.handles[new],
                std::slice::from_ref(&self.handles[other]),
                start + Duration::from_secs(30),
                &policy,
                &mut sink,
            )
            .await
            .with_context(|| format!("switchover {} from {primary} to {new}", i + 1))?;
            let end = Instant::now();
            let (Some(promoted), Some(moved)) = (sink.promoted, sink.moved) else {
                bail!("switchover {} never recorded its promotion", i + 1);
            };
            let reset = self
                .lifted
                .last_between(&self.handles[new].to_string(), start, promoted)
                .map_or(Duration::ZERO, |writable| promoted - writable);
            let t = Timed {
                from: primary,
                to: new,
                start,
                end,
                ready: moved,
                stopped: promoted.checked_sub(outcome.unavailable),
                phases: vec![
                    outcome.preflight,
                    outcome.fence,
                    outcome.catch_up,
                    outcome.promote,
                    reset,
                    outcome.unavailable,
                    moved - promoted,
                    end - moved,
                ],
                events: [
                    ("writes stopped", promoted.checked_sub(outcome.unavailable)),
                    ("promoted", Some(promoted)),
                    ("router moved", Some(moved)),
                ]
                .into_iter()
                .filter_map(|(name, at)| Some((name, at?)))
                .collect(),
            };
            primary = new;
            self.wait_past_window(&load, end).await?;
            replicas_restarted += self.settle(primary, &load, WRITES_BETWEEN_RUNS).await?;
            let run = measure(&load.ledger().snapshot(), load.ledger().start(), &t, true)?;
            (self.progress)(&format!(
                "{} switchover {}/{runs} {}→{}: writes stopped {} ms (fence {}, catch-up {}, promote {}, writers back {} ms after the router moved); {} unknown outcome",
                self.flavor,
                i + 1,
                run.from,
                run.to,
                ms(run.gap),
                ms(outcome.fence),
                ms(outcome.catch_up),
                ms(outcome.promote),
                ms(run.phases[8]),
                run.unknown,
            ));
            results.push(run);
        }
        let connect = self.time_connects(primary, 20).await?;
        let report = load.stop().await;
        let mut result = self.check(Method::Switchover, &report.ledger).await?;
        result.runs = results;
        result.replicas_restarted = replicas_restarted;
        Ok((result, primary, connect))
    }

    async fn restarts(&self, primary: usize, restarts: usize) -> Result<MethodResult> {
        let load = self.start_load(1).await?;
        let mut replicas_restarted = self.settle(primary, &load, WARM_UP_WRITES).await?;
        let mut results = Vec::with_capacity(restarts);
        let tb = self.cluster.instance(primary);
        for i in 0..restarts {
            // An idle connection of this benchmark's own (the operator account's, cached by
            // the handle) held MySQL 9.7's shutdown for 10 s ("Forcing close of thread ...
            // user: 'switchyard'"): close it first so the baseline is the server's.
            self.handles[primary].forget_connection();
            let start = Instant::now();
            tb.stop()
                .await
                .with_context(|| format!("restart {}: stopping {}", i + 1, tb.name()))?;
            let stopped = Instant::now();
            tb.start()
                .await
                .with_context(|| format!("restart {}: starting {}", i + 1, tb.name()))?;
            let started = Instant::now();
            tb.set_read_only(false)
                .await
                .with_context(|| format!("restart {}: making {} writable", i + 1, tb.name()))?;
            let end = Instant::now();
            self.handles[primary].forget_connection();
            let t = Timed {
                from: primary,
                to: primary,
                start,
                end,
                ready: end,
                stopped: None,
                phases: vec![stopped - start, started - stopped, end - started],
                events: vec![("stopped", stopped), ("started", started)],
            };
            self.wait_past_window(&load, end).await?;
            replicas_restarted += self.settle(primary, &load, WRITES_BETWEEN_RUNS).await?;
            let run = measure(&load.ledger().snapshot(), load.ledger().start(), &t, false)?;
            (self.progress)(&format!(
                "{} restart in place {}/{restarts}: writes stopped {} ms (shutdown {}, start {}, writers back {} ms after read_only=OFF); {} unknown outcome",
                self.flavor,
                i + 1,
                ms(run.gap),
                ms(t.phases[0]),
                ms(t.phases[1]),
                ms(run.phases[3]),
                run.unknown,
            ));
            results.push(run);
        }
        let report = load.stop().await;
        let mut result = self.check(Method::RestartInPlace, &report.ledger).await?;
        result.runs = results;
        result.replicas_restarted = replicas_restarted;
        Ok(result)
    }

    /// Waits until the load has acknowledged a write after the window of an operation that
    /// ended at `end`, so that nothing the benchmark does between runs falls in the window.
    async fn wait_past_window(&self, load: &LoadHandle, end: Instant) -> Result<()> {
        let ledger = load.ledger();
        let past =
            u64::try_from(ledger.offset_of(end + WINDOW_AFTER).as_micros()).unwrap_or(u64::MAX);
        wait_for(Duration::from_secs(30), async || {
            ledger
                .last_acked()
                .is_some_and(|w| w.ack_us > past)
                .then_some(())
        })
        .await
        .context("the load did not write again within 30 s of the run")
    }

    /// Waits until every replica replicates from `primary` and has executed what the primary
    /// had when this started, then until the load has acknowledged `writes` more writes.
    /// A replica whose replication stopped is started again; returns how many were.
    async fn settle(&self, primary: usize, load: &LoadHandle, writes: usize) -> Result<usize> {
        let acked = load.acknowledged();
        let target = self.handles[primary]
            .observe()
            .await
            .with_context(|| format!("observing the primary {}", self.handles[primary]))?;
        let mut restarted = 0;
        for (i, replica) in self.handles.iter().enumerate() {
            if i == primary {
                continue;
            }
            let mut started_again = false;
            let caught_up = wait_for(Duration::from_secs(60), async || {
                let obs = replica.observe().await.ok()?;
                let status = obs.replication.as_ref()?;
                if status.io_thread == IoThreadState::Stopped || !status.sql_running {
                    if !started_again {
                        started_again = true;
                        restarted += 1;
                        let _ = replica.start_replication().await;
                    }
                    return None;
                }
                let has_all = target.gtid.executed().is_subset(obs.gtid.executed()).ok()?;
                (status.is_running() && has_all).then_some(())
            })
            .await;
            if caught_up.is_err() {
                let obs = replica.observe().await;
                bail!(
                    "{replica} did not catch up with the primary {} within 60 s: {obs:?}",
                    self.handles[primary]
                );
            }
        }
        wait_for(Duration::from_secs(30), async || {
            (load.acknowledged() >= acked + writes).then_some(())
        })
        .await
        .with_context(|| {
            format!(
                "the load stopped writing (errors so far: {:?})",
                load.ledger()
                    .snapshot()
                    .errors
                    .iter()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
            )
        })?;
        Ok(restarted)
    }

    /// Times `n` new application connections as the load's writers make them: through the
    /// router's primary endpoint, straight to the primary, and straight to it without TLS
    /// (`None` when the server refuses that login).
    async fn time_connects(&self, primary: usize, n: usize) -> Result<ConnectTimes> {
        let app = &self.cluster.credentials().application;
        let options = |addr: SocketAddr, ssl| {
            MySqlConnectOptions::new()
                .host(&addr.ip().to_string())
                .port(addr.port())
                .username(app.user())
                .password(app.password())
                .ssl_mode(ssl)
        };
        let direct = SocketAddr::from(([127, 0, 0, 1], self.cluster.instance(primary).port()));
        Ok(ConnectTimes {
            router: time_connects(
                &options(self.router.primary_addr(), MySqlSslMode::Preferred),
                n,
            )
            .await
            .context("connecting through the router")?,
            direct: time_connects(&options(direct, MySqlSslMode::Preferred), n)
                .await
                .context("connecting to the primary")?,
            direct_plain: time_connects(&options(direct, MySqlSslMode::Disabled), n)
                .await
                .ok(),
        })
    }

    /// Checks the ledger on every instance.
    async fn check(&self, method: Method, ledger: &LedgerSnapshot) -> Result<MethodResult> {
        let targets: Vec<CheckTarget> = self
            .cluster
            .instances()
            .iter()
            .map(|tb| CheckTarget::of(tb, &self.cluster.credentials().operator))
            .collect();
        let verdict = check(ledger, &targets, &CheckConfig::default())
            .await
            .context("checking the ledger")?;
        let mut lost: Vec<u64> = verdict
            .missing
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        lost.sort_unstable();
        lost.dedup();
        if !lost.is_empty() {
            (self.progress)(&format!(
                "{} {}: {} acknowledged writes LOST: {:?}",
                self.flavor,
                method.label(),
                lost.len(),
                verdict.missing
            ));
        }
        Ok(MethodResult {
            method,
            runs: Vec::new(),
            acknowledged: verdict.acknowledged,
            lost: lost.len(),
            unknown_outcome: verdict.unknown_outcome,
            errors: verdict.errors,
            replicas_restarted: 0,
        })
    }
}

/// Times `n` connections made one after another with `options`.
async fn time_connects(options: &MySqlConnectOptions, n: usize) -> Result<Summary, sqlx::Error> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let conn = MySqlConnection::connect_with(options).await?;
        samples.push(start.elapsed());
        let _ = conn.close().await;
    }
    Ok(Summary::of(&samples))
}

/// Turns the times of one operation into a [`Run`], from a ledger snapshot taken once the load
/// has written past the window. `switchover` puts `before fence` in the phases.
fn measure(ledger: &LedgerSnapshot, origin: Instant, t: &Timed, switchover: bool) -> Result<Run> {
    let at = |i: Instant| i.saturating_duration_since(origin);
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let window = at(t.start)..at(t.end) + WINDOW_AFTER;
    let Some(gap) = ledger.longest_gap_in(window.clone()) else {
        bail!("no acknowledged write around the run at {window:?}");
    };
    let first_ack_after = |i: Instant| {
        let from = us(at(i));
        let n = ledger.acked.partition_point(|w| w.ack_us < from);
        ledger
            .acked
            .get(n)
            .map(|w| Duration::from_micros(w.ack_us - from))
    };
    let Some(writers_back) = first_ack_after(t.ready) else {
        bail!("no acknowledged write after the run at {window:?}");
    };
    let (lo, hi) = (us(window.start), us(window.end));
    let in_window = |x: u64| x >= lo && x < hi;
    let errors: Vec<ErrorKind> = ledger
        .errors
        .iter()
        .filter(|e| in_window(e.at_us))
        .map(|e| e.kind)
        .collect();
    let mut phases = t.phases.clone();
    if switchover {
        // [preflight, fence, catch-up, promote, reset, no primary, router move, repoint]
        // becomes SWITCHOVER_PHASES with `before fence` and `writers back` in place.
        let before_fence = t.stopped.map_or(Duration::ZERO, |s| {
            at(s).saturating_sub(Duration::from_micros(gap.from_us))
        });
        phases.insert(1, before_fence);
        phases.insert(8, writers_back);
    } else {
        phases.push(writers_back);
    }
    Ok(Run {
        from: t.from,
        to: t.to,
        gap: gap.length(),
        gap_starts_at: Duration::from_micros(gap.from_us),
        took: t.end - t.start,
        phases,
        unknown: ledger
            .unknown
            .iter()
            .filter(|w| in_window(w.failed_us))
            .count(),
        errors: errors.len(),
        rejected: errors.iter().filter(|k| **k == ErrorKind::Rejected).count(),
        connect_errors: errors.iter().filter(|k| **k == ErrorKind::Connect).count(),
        events: std::iter::once(("start", t.start))
            .chain(t.events.iter().copied())
            .chain([("end", t.end)])
            .map(|(name, i)| (name, at(i)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_testbed::ledger::{AckedWrite, ErrorRecord, UnknownWrite};

    fn acked(ack_ms: &[u64]) -> Vec<AckedWrite> {
        ack_ms
            .iter()
            .zip(1..)
            .map(|(&t, id)| AckedWrite {
                id,
                writer: 0,
                sent_us: (t * 1000).saturating_sub(500),
                ack_us: t * 1000,
                server_id: None,
            })
            .collect()
    }

    #[test]
    fn a_run_measures_the_longest_gap_around_it_and_splits_it() {
        // Writes every 5 ms, then nothing from 1000 ms to 1120 ms (the switchover), then every
        // 5 ms again; a longer gap long after the window does not count.
        let mut times: Vec<u64> = (0..=200).map(|i| i * 5).collect();
        times.extend((0..100).map(|i| 1120 + i * 5));
        times.push(3000);
        let unknown = vec![UnknownWrite {
            id: 9999,
            writer: 1,
            sent_us: 1_001_000,
            failed_us: 1_010_000,
            kind: ErrorKind::Lost,
        }];
        let errors = vec![
            ErrorRecord {
                worker: 1,
                at_us: 1_010_000,
                kind: ErrorKind::Lost,
                code: None,
                message: String::new(),
            },
            ErrorRecord {
                worker: 1,
                at_us: 1_030_000,
                kind: ErrorKind::Rejected,
                code: Some(1290),
                message: String::new(),
            },
        ];
        let ledger = LedgerSnapshot::from_parts(acked(&times), unknown, errors, None);
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let t = Timed {
            from: 0,
            to: 1,
            start: at(900),
            end: at(1200),
            ready: at(1100),
            stopped: Some(at(1004)),
            phases: [50, 3, 2, 40, 30, 90, 1, 60]
                .map(Duration::from_millis)
                .to_vec(),
            events: vec![("promoted", at(1094))],
        };
        let run = measure(&ledger, origin, &t, true).expect("measured");
        assert_eq!(run.gap, Duration::from_millis(120));
        assert_eq!(run.gap_starts_at, Duration::from_millis(1000));
        assert_eq!(run.took, Duration::from_millis(300));
        assert_eq!(run.phases.len(), SWITCHOVER_PHASES.len());
        // before fence: 1000 → 1004 ms; writers back: 1100 → 1120 ms.
        assert_eq!(run.phases[1], Duration::from_millis(4));
        assert_eq!(run.phases[8], Duration::from_millis(20));
        assert_eq!(run.phases[9], Duration::from_millis(60));
        assert_eq!((run.unknown, run.errors, run.rejected), (1, 2, 1));
        assert_eq!(
            run.events,
            [900, 1094, 1200]
                .map(Duration::from_millis)
                .to_vec()
                .into_iter()
                .zip(["start", "promoted", "end"])
                .map(|(d, n)| (n, d))
                .collect::<Vec<_>>()
        );

        // A restart's phases get `writers back` at the end.
        let t = Timed {
            stopped: None,
            phases: [30, 40, 5].map(Duration::from_millis).to_vec(),
            ..t
        };
        let run = measure(&ledger, origin, &t, false).expect("measured");
        assert_eq!(run.phases.len(), RESTART_PHASES.len());
        assert_eq!(run.phases[3], Duration::from_millis(20));
    }

    #[test]
    fn a_run_with_no_write_after_it_is_an_error() {
        let ledger = LedgerSnapshot::from_parts(acked(&[5, 10, 15]), vec![], vec![], None);
        let origin = Instant::now();
        let t = Timed {
            from: 0,
            to: 0,
            start: origin + Duration::from_millis(20),
            end: origin + Duration::from_millis(30),
            ready: origin + Duration::from_millis(30),
            stopped: None,
            phases: vec![Duration::ZERO; 3],
            events: Vec::new(),
        };
        assert!(measure(&ledger, origin, &t, false).is_err());
    }

    #[test]
    fn tables_show_both_methods_per_flavor() {
        let run = |gap: u64, method: Method| Run {
            from: 0,
            to: 1,
            gap: Duration::from_millis(gap),
            gap_starts_at: Duration::ZERO,
            took: Duration::ZERO,
            phases: vec![Duration::from_millis(1); method.phase_names().len()],
            unknown: 0,
            errors: 0,
            rejected: 0,
            connect_errors: 0,
            events: Vec::new(),
        };
        let result = |method: Method, gaps: &[u64]| MethodResult {
            method,
            runs: gaps.iter().map(|g| run(*g, method)).collect(),
            acknowledged: 1000,
            lost: 0,
            unknown_outcome: 4,
            errors: 8,
            replicas_restarted: 0,
        };
        let results = [FlavorResult {
            flavor: "MySQL 9.7.0".to_owned(),
            load_tls: LoadTls::Preferred,
            switchover: result(Method::Switchover, &[80, 100, 90]),
            restart: result(Method::RestartInPlace, &[2000, 3000]),
            connect: ConnectTimes::default(),
        }];
        let text = tables(&results);
        let row = |method: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.contains(&format!("| {method} ")))
                .unwrap_or_else(|| panic!("no {method} row in\n{text}"))
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        };
        // p50 of 80, 100, 90 ms; max 100 ms.
        assert_eq!(row("switchover")[3..6], ["90", "100", "100"], "{text}");
        assert_eq!(row("restart in place")[8], "**FAIL**", "{text}");
        assert!(text.contains("Switchover phases"), "{text}");
        assert!(text.contains("writers back"), "{text}");
    }
}
