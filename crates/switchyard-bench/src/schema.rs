//! The schema-change benchmark: one `ALTER TABLE` on a table of a million rows under a steady
//! write load, three ways in the same run, on one MariaDB 10.11 cluster (a primary and two GTID
//! replicas behind the testbed's router), then switchyard's rolling change again on a MariaDB
//! 11.8 cluster of the same shape (11.2+ copies a table with concurrent writes, so the
//! analyzer, judging by the server version, alters its primary in place where 10.11's goes
//! behind a switchover):
//!
//! 1. **plain ALTER**: the statement on the primary, replicated as usual; each replica's
//!    applier runs it after the primary has.
//! 2. **pt-online-schema-change** from Debian's `percona-toolkit` (fetched by
//!    [`switchyard_testbed::tools`], run on the suite's own perl): a shadow table, triggers,
//!    chunked copy, atomic rename. It finds the replicas from a DSN table and throttles on their
//!    lag (`--max-lag 1`, its default), so it is configured to keep serving replicas under 1 s.
//! 3. **switchyard rolling**: [`LocalCluster::schema_target`] (the analyzer's pre-flight) and
//!    the engine over [`LocalRuntime`]: replicas drained from the read pool and altered one at
//!    a time with the binary log off, then the primary in place when the change is
//!    online-capable, otherwise behind a switchover, the old primary altered last.
//!
//! Before each method the table is made again (dropped, created, loaded with a multi-row
//! `INSERT ... SELECT` from the Sequence engine's `seq_1_to_N`, and every replica caught up),
//! then the testbed's load (4 writers at 200 writes/s in total through the router's primary
//! endpoint, one reader on the read endpoint, the application account) writes into it. A
//! method's **total time** runs from its start until every instance has the new table and every
//! replica has applied everything the primary wrote.
//!
//! While a method runs, a sampler with its own connections reads every 100 ms the primary's
//! `gtid_current_pos` and, on every replica that serves reads (in the router's read pool: not
//! drained, not the primary), `gtid_current_pos` and `Seconds_Behind_Master`. A replica's
//! **lag** in a sample is how long ago the primary first had a transaction the replica has not
//! (from the primary's sampled positions, so within one sampling period), its **GTID distance**
//! how many transactions it is behind. The largest of either measure is reported. A replica
//! that switchyard drained is not serving: its lag (the same GTID measure) is reported apart,
//! and the lag target does not apply to it.
//!
//! Writes: **latency** of the acknowledged writes sent while the method ran (p50, p99), the
//! longest gap between acknowledged writes in that window, **failed writes** over the whole
//! load (every write that did not get an OK: refused, failed to connect, or broken or timed
//! out after it was sent, whose outcome is unknown), and **lost** writes (acknowledged, then
//! missing on some instance in the ledger check).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{Connection, Row as _};
use switchyard_local::timeline::Event;
use switchyard_local::{ClusterSpec, LocalCluster, LocalRuntime, Op, SchemaRequest};
use switchyard_plan::{Engine, Finished, Policy};
use switchyard_testbed::ledger::{CheckConfig, LedgerSnapshot, check};
use switchyard_testbed::load::{Load, LoadConfig, LoadHandle};
use switchyard_testbed::tools::{Tool, ToolKind};
use switchyard_testbed::{ServerKind, wait_for};
use tokio::sync::watch;

use crate::report::table;
use crate::stats::{Summary, ms};
use crate::switchover::SectionContext;

/// The database of the benchmark's table.
pub const DATABASE: &str = "app";
/// The benchmark's table (in [`DATABASE`]).
pub const TABLE: &str = "bench_orders";
/// The change measured by default: a secondary index over a million rows is built in place on
/// MariaDB 10.11 (not instant: every row is read and sorted), online on the primary, and safe
/// on replicas (row images do not change), so switchyard alters the primary in place. (Widening
/// the latin1 `VARCHAR(64)` to `VARCHAR(300)` looks like a table copy but 10.11 does it
/// instantly; give it with `--change` to see the switchover path.)
pub const DEFAULT_CHANGE: &str = "ADD INDEX at_us (at_us)";

/// Instances in the cluster.
const INSTANCES: usize = 3;
/// Rows per `INSERT ... SELECT` when loading the table.
const LOAD_CHUNK: u64 = 100_000;
/// How often the sampler reads the replicas.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The lag target for serving replicas.
pub const MAX_LAG: Duration = Duration::from_secs(1);
/// Acknowledged writes before a method starts (2 s of the load).
const WARM_UP: Duration = Duration::from_secs(2);
/// How long the load keeps writing after a method ends.
const COOL_DOWN: Duration = Duration::from_secs(1);
/// The longest a method may take.
const METHOD_DEADLINE: Duration = Duration::from_secs(600);

/// How a schema change is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `ALTER TABLE` on the primary, replicated as a statement.
    PlainAlter,
    /// Percona Toolkit's `pt-online-schema-change`.
    PtOsc,
    /// switchyard's rolling change through the engine and the local runtime.
    Rolling,
}

impl Method {
    /// Every method, in the order they run.
    pub const ALL: [Method; 3] = [Method::PlainAlter, Method::PtOsc, Method::Rolling];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Method::PlainAlter => "plain ALTER",
            Method::PtOsc => "pt-online-schema-change",
            Method::Rolling => "switchyard rolling",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Rows in the table.
    pub rows: u64,
    /// The changes (what follows `ALTER TABLE app.bench_orders`), each measured with every
    /// method.
    pub changes: Vec<String>,
    /// The methods.
    pub methods: Vec<Method>,
    /// Total writes per second of the load.
    pub rate: u32,
    /// Where pt-online-schema-change's output goes.
    pub log_dir: PathBuf,
}

/// The largest lag seen on serving replicas, and apart on replicas drained from the read pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Lag {
    /// Samples taken.
    pub samples: usize,
    /// Replica readings taken (serving replicas only).
    pub readings: usize,
    /// The largest lag from GTID positions.
    pub max: Duration,
    /// The largest `Seconds_Behind_Master` (`None`: never reported).
    pub max_seconds_behind: Option<u64>,
    /// The largest GTID distance, in transactions.
    pub max_distance: u64,
    /// The replica and the time into the method of the largest lag.
    pub worst: Option<(u32, Duration)>,
    /// Readings of replicas drained from the read pool (not serving; not in the figures
    /// above).
    pub drained_readings: usize,
    /// The largest lag from GTID positions of a drained replica.
    pub drained_max: Duration,
    /// The largest GTID distance of a drained replica, in transactions.
    pub drained_max_distance: u64,
}

impl Lag {
    /// The larger of the GTID lag and `Seconds_Behind_Master`.
    pub fn worst_case(&self) -> Duration {
        self.max
            .max(Duration::from_secs(self.max_seconds_behind.unwrap_or(0)))
    }
}

/// What happened to the load's writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Writes {
    /// Acknowledged writes over the whole load.
    pub acknowledged: usize,
    /// Latency of the writes sent while the method ran.
    pub latency: Summary,
    /// The longest gap between acknowledged writes while the method ran.
    pub longest_gap: Duration,
    /// Writes that got no OK over the whole load (refused, connect failed, unknown outcome).
    pub failed: usize,
    /// Of `failed`, writes whose connection broke or timed out after sending.
    pub unknown: usize,
    /// `failed` by kind (`rejected`, `connect`, ...), largest first.
    pub failed_by_kind: Vec<(String, usize)>,
    /// Acknowledged writes missing on some instance afterwards.
    pub lost: usize,
}

/// One method on one change.
#[derive(Clone, Debug, Serialize)]
pub struct MethodResult {
    /// The change (after `ALTER TABLE app.bench_orders`).
    pub change: String,
    /// The server and its version (`MariaDB 10.11.18`).
    pub server: String,
    /// The method.
    pub method: Method,
    /// From the start until every instance had the new table and every replica had caught up.
    pub total: Duration,
    /// Lag on serving replicas.
    pub lag: Lag,
    /// The load's writes.
    pub writes: Writes,
    /// What the method did, in a line (the rolling change's steps).
    pub detail: String,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The servers and their versions, in the order they ran.
    pub servers: Vec<String>,
    /// Percona Toolkit's Debian version, if it ran.
    pub toolkit: Option<String>,
    /// Rows in the table.
    pub rows: u64,
    /// Total writes per second of the load.
    pub rate: u32,
    /// One per change and method, in the order they ran.
    pub results: Vec<MethodResult>,
}

impl Results {
    /// The pt-online-schema-change result for `change` on `server`, if it ran.
    fn pt_osc(&self, change: &str, server: &str) -> Option<&MethodResult> {
        self.results
            .iter()
            .find(|r| r.method == Method::PtOsc && r.change == change && r.server == server)
    }

    /// Whether `r` meets the targets: serving replicas never more than [`MAX_LAG`] behind, no
    /// failed and no lost write, and (the rolling change only) faster than pt-osc on the same
    /// server. `None` where a target does not apply.
    pub fn verdicts(&self, r: &MethodResult) -> [Option<bool>; 3] {
        let faster = match r.method {
            Method::Rolling => self.pt_osc(&r.change, &r.server).map(|p| r.total < p.total),
            _ => None,
        };
        [
            Some(r.lag.worst_case() <= MAX_LAG),
            Some(r.writes.failed == 0 && r.writes.lost == 0),
            faster,
        ]
    }
}

/// Runs the benchmark, reporting progress through `progress`.
///
/// # Errors
/// A cluster or tool that cannot be had, a method that fails or outlasts its deadline, a load
/// that stops writing, a ledger check that cannot read an instance.
pub async fn run(config: &Config, progress: &dyn Fn(&str)) -> Result<Results> {
    ensure!(config.rows > 0, "--rows must be at least 1");
    ensure!(!config.changes.is_empty(), "give at least one change");
    ensure!(!config.methods.is_empty(), "give at least one method");
    let toolkit = if config.methods.contains(&Method::PtOsc) {
        progress("fetching Percona Toolkit");
        let tool = tokio::task::spawn_blocking(|| {
            switchyard_testbed::tools::tool(ToolKind::PerconaToolkit)
        })
        .await
        .context("the fetch task failed")?
        .context("fetching Percona Toolkit")?;
        Some(tool)
    } else {
        None
    };
    std::fs::create_dir_all(&config.log_dir)
        .with_context(|| format!("could not create {}", config.log_dir.display()))?;
    let mut results = Vec::new();
    let mut servers = Vec::new();
    let mut run = 0u8;
    // Every method on 10.11; the rolling change alone on 11.8, where the primary's online
    // judgement differs.
    let mut rounds = vec![(ServerKind::Mariadb1011, config.methods.clone())];
    if config.methods.contains(&Method::Rolling) {
        rounds.push((ServerKind::Mariadb118, vec![Method::Rolling]));
    }
    for (kind, methods) in rounds {
        let server = on_server(
            config,
            kind,
            &methods,
            toolkit.as_ref(),
            progress,
            &mut run,
            &mut results,
        )
        .await?;
        servers.push(server);
    }
    Ok(Results {
        servers,
        toolkit: toolkit.as_ref().map(|t| t.version().to_owned()),
        rows: config.rows,
        rate: config.rate,
        results,
    })
}

/// Starts a cluster of `kind`, runs `methods` on every change there, and stops it; returns
/// the server's name and version.
async fn on_server(
    config: &Config,
    kind: ServerKind,
    methods: &[Method],
    toolkit: Option<&Tool>,
    progress: &dyn Fn(&str),
    run: &mut u8,
    results: &mut Vec<MethodResult>,
) -> Result<String> {
    progress(&format!(
        "starting a {INSTANCES}-instance MariaDB {} cluster",
        kind.series()
    ));
    let cluster = LocalCluster::start(ClusterSpec::new(kind, INSTANCES))
        .await
        .with_context(|| format!("starting the MariaDB {} cluster", kind.series()))?;
    let version = cluster.testbed().primary().server_version().await?;
    let server = format!("MariaDB {}", version.split('-').next().unwrap_or(&version));
    let bench = Bench {
        cnf: client_option_file(&cluster)?,
        cluster,
        config,
        toolkit: toolkit.cloned(),
        server: server.clone(),
        progress,
    };
    for change in &config.changes {
        for &method in methods {
            *run += 1;
            let result = bench
                .method(change, method, *run)
                .await
                .with_context(|| format!("{} of `{change}` on {server}", method.label()))?;
            progress(&format!(
                "{server}, {} `{change}`: {} s, max lag {} ms (Seconds_Behind_Master {}), drained replicas {} ms, write p99 {} ms, {} failed, {} lost; {}",
                method.label(),
                secs(result.total),
                ms(result.lag.max),
                result
                    .lag
                    .max_seconds_behind
                    .map_or("-".to_owned(), |s| s.to_string()),
                ms(result.lag.drained_max),
                ms(result.writes.latency.p99),
                result.writes.failed,
                result.writes.lost,
                result.detail,
            ));
            results.push(result);
        }
    }
    Ok(server)
}

/// A `[client]` option file with the operator account, for pt-online-schema-change (so the
/// password is on no command line). Readable by its owner only.
fn client_option_file(cluster: &LocalCluster) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let operator = &cluster.credentials().operator;
    let path = cluster.testbed().dir().join("bench-client.cnf");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    writeln!(
        file,
        "[client]\nuser={}\npassword={}",
        operator.user(),
        operator.password()
    )
    .with_context(|| format!("could not write {}", path.display()))?;
    Ok(path)
}

struct Bench<'a> {
    cluster: LocalCluster,
    config: &'a Config,
    toolkit: Option<Tool>,
    /// The server and its version, for the results.
    server: String,
    cnf: PathBuf,
    progress: &'a dyn Fn(&str),
}

impl Bench<'_> {
    fn options(&self, ordinal: u32) -> MySqlConnectOptions {
        self.cluster
            .testbed()
            .instance(ordinal as usize)
            .connect_options(&self.cluster.credentials().operator)
    }

    fn port(&self, ordinal: u32) -> u16 {
        self.cluster.testbed().instance(ordinal as usize).port()
    }

    async fn connect(&self, ordinal: u32) -> Result<MySqlConnection> {
        MySqlConnection::connect_with(&self.options(ordinal))
            .await
            .with_context(|| format!("connecting to instance {ordinal}"))
    }

    async fn method(&self, change: &str, method: Method, run: u8) -> Result<MethodResult> {
        let primary = self.cluster.primary()?;
        (self.progress)(&format!(
            "{}: loading {} rows into {DATABASE}.{TABLE}",
            method.label(),
            self.config.rows
        ));
        let loaded = Instant::now();
        self.prepare_table(primary).await?;
        (self.progress)(&format!(
            "{}: table loaded and replicated in {} s",
            method.label(),
            secs(loaded.elapsed())
        ));
        let mut load_config = LoadConfig::default();
        load_config.table = format!("{DATABASE}.{TABLE}");
        load_config.run = run;
        load_config.rate_per_sec = self.config.rate;
        let load = Load::start(
            load_config,
            self.cluster.endpoints(),
            self.cluster.credentials(),
        )?;
        let warm = usize::try_from(u64::from(self.config.rate) * WARM_UP.as_secs())
            .unwrap_or(usize::MAX)
            .max(1);
        wait_for(Duration::from_secs(30), async || {
            (load.acknowledged() >= warm).then_some(())
        })
        .await
        .context("the load did not start writing within 30 s")?;

        (self.progress)(&format!("{}: `{change}` starts", method.label()));
        let (stop, stopped) = watch::channel(false);
        let start = Instant::now();
        let timeline_from = self.cluster.timeline().events().len();
        let work = async {
            let outcome =
                tokio::time::timeout(METHOD_DEADLINE, self.perform(change, method, primary, run))
                    .await;
            let _ = stop.send(true);
            match outcome {
                Ok(result) => result,
                Err(_) => bail!("did not finish within {} s", METHOD_DEADLINE.as_secs()),
            }
        };
        let (outcome, lag) = tokio::join!(work, sample_lag(self, stopped, start));
        let end = Instant::now();
        let detail = match outcome {
            Ok(detail) => detail,
            Err(e) => {
                load.stop().await;
                return Err(e);
            }
        };
        let mut detail = if method == Method::Rolling {
            format!("{detail}; {}", self.rolling_steps(timeline_from))
        } else {
            detail
        };
        if let Some((o, at)) = lag.worst {
            detail.push_str(&format!("; largest lag on instance {o}, {} s in", secs(at)));
        }
        if lag.drained_readings > 0 {
            detail.push_str(&format!(
                "; drained replicas (out of the read pool) at most {} ms, {} transactions behind",
                ms(lag.drained_max),
                lag.drained_max_distance
            ));
        }
        self.cool_down(&load, end).await?;
        let origin = load.ledger().start();
        let report = load.stop().await;
        let writes = self
            .writes(&report.ledger, origin, start, end)
            .await
            .context("checking the writes")?;
        Ok(MethodResult {
            change: change.to_owned(),
            server: self.server.clone(),
            method,
            total: end - start,
            lag,
            writes,
            detail,
        })
    }

    /// Runs `method`; returns a line on what it did.
    async fn perform(&self, change: &str, method: Method, primary: u32, run: u8) -> Result<String> {
        let statement = format!("ALTER TABLE {DATABASE}.{TABLE} {change}");
        match method {
            Method::PlainAlter => {
                let mut conn = self.connect(primary).await?;
                let started = Instant::now();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("`{statement}` on the primary"))?;
                let on_primary = started.elapsed();
                let _ = conn.close().await;
                self.wait_replicas(primary, Duration::from_secs(600))
                    .await?;
                Ok(format!(
                    "primary {} s, replicas caught up {} s later",
                    secs(on_primary),
                    secs(started.elapsed() - on_primary)
                ))
            }
            Method::PtOsc => {
                let Some(tool) = &self.toolkit else {
                    bail!("Percona Toolkit was not fetched");
                };
                self.write_dsns(primary).await?;
                let log = self.config.log_dir.join(format!("pt-osc-{run}.log"));
                let started = Instant::now();
                self.pt_osc(tool, change, primary, &log).await?;
                let tool_time = started.elapsed();
                self.wait_replicas(primary, Duration::from_secs(120))
                    .await?;
                Ok(format!(
                    "tool {} s, replicas caught up {} s later (log {})",
                    secs(tool_time),
                    secs(started.elapsed() - tool_time),
                    log.file_name().map_or_else(
                        || log.display().to_string(),
                        |n| n.to_string_lossy().into_owned()
                    )
                ))
            }
            Method::Rolling => {
                let request = SchemaRequest::new(statement).with_id(format!("bench-{run}"));
                let plan = self
                    .cluster
                    .schema_target(&request)
                    .await
                    .context("the pre-flight")?;
                let policy = Policy {
                    max_lag_seconds: 1,
                    retry_backoff: Duration::from_secs(1),
                    ..Policy::default()
                };
                let online = plan
                    .target
                    .schema
                    .as_ref()
                    .is_some_and(|s| s.primary_online);
                let engine = Engine::new(LocalRuntime::new(&self.cluster), plan.target, policy);
                let finished = engine.run(1_000).await.context("the engine")?;
                ensure!(finished == Finished::Done, "the rollout ended {finished:?}");
                Ok(format!(
                    "verdict {:?}, primary {}",
                    plan.analysis.verdict,
                    if online {
                        "altered in place (online)"
                    } else {
                        "behind a switchover"
                    }
                ))
            }
        }
    }

    /// The rolling change's steps from the cluster's timeline: each ALTER with its time, and
    /// the promotion.
    fn rolling_steps(&self, from: usize) -> String {
        let steps: Vec<String> = self
            .cluster
            .timeline()
            .events()
            .iter()
            .skip(from)
            .filter_map(|t| match &t.event {
                Event::OpFinished {
                    ordinal,
                    op: Op::RunDdl { .. },
                    took,
                    error: None,
                } => Some(format!("ALTER on {ordinal} {} s", secs(*took))),
                Event::OpFinished {
                    ordinal,
                    op: Op::Promote,
                    error: None,
                    ..
                } => Some(format!("{ordinal} promoted")),
                _ => None,
            })
            .collect();
        steps.join(", ")
    }

    /// Drops and creates the table, loads it, and waits until every replica has it.
    async fn prepare_table(&self, primary: u32) -> Result<()> {
        let mut conn = self.connect(primary).await?;
        let statements = [
            format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"),
            format!(
                "DROP TABLE IF EXISTS {DATABASE}.{TABLE}, {DATABASE}._{TABLE}_new, {DATABASE}._{TABLE}_old"
            ),
            // The load's columns; latin1 so that VARCHAR(64) has a one-byte length prefix.
            format!(
                "CREATE TABLE {DATABASE}.{TABLE} (id BIGINT PRIMARY KEY, writer INT, \
                 at_us BIGINT, payload VARCHAR(64)) ENGINE=InnoDB DEFAULT CHARSET=latin1"
            ),
        ];
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .with_context(|| format!("`{sql}`"))?;
        }
        // Ids 1..=rows; the load's ids start at run·2^56.
        let mut from = 1;
        while from <= self.config.rows {
            let to = (from + LOAD_CHUNK - 1).min(self.config.rows);
            let sql = format!(
                "INSERT INTO {DATABASE}.{TABLE} (id, writer, at_us, payload) \
                 SELECT seq, -1, 0, MD5(seq) FROM {DATABASE}.seq_{from}_to_{to}"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .context("loading the table (the Sequence engine's seq_M_to_N)")?;
            from = to + 1;
        }
        let _ = conn.close().await;
        self.wait_replicas(primary, Duration::from_secs(300)).await
    }

    /// Waits until every replica has executed everything `primary` has now.
    async fn wait_replicas(&self, primary: u32, within: Duration) -> Result<()> {
        let mut conn = self.connect(primary).await?;
        let target = gtid_of(&mut conn).await?;
        let _ = conn.close().await;
        for o in (0..ordinal(INSTANCES)).filter(|o| *o != primary) {
            let mut conn = self.connect(o).await?;
            let caught_up = wait_for(within, async || {
                let have = gtid_of(&mut conn).await.ok()?;
                (distance(&target, &have) == 0).then_some(())
            })
            .await;
            if caught_up.is_err() {
                let have = gtid_of(&mut conn).await.ok();
                bail!(
                    "instance {o} did not catch up with the primary {primary} within {} s \
                     (primary at {target:?}, replica at {have:?})",
                    within.as_secs()
                );
            }
            let _ = conn.close().await;
        }
        Ok(())
    }

    /// Lists the replicas for pt-online-schema-change (`--recursion-method dsn=...`).
    async fn write_dsns(&self, primary: u32) -> Result<()> {
        let mut conn = self.connect(primary).await?;
        for sql in [
            "CREATE DATABASE IF NOT EXISTS percona",
            "CREATE TABLE IF NOT EXISTS percona.dsns (id INT AUTO_INCREMENT PRIMARY KEY, \
             parent_id INT, dsn VARCHAR(255) NOT NULL)",
            "DELETE FROM percona.dsns",
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .with_context(|| format!("`{sql}`"))?;
        }
        for o in (0..ordinal(INSTANCES)).filter(|o| *o != primary) {
            sqlx::query("INSERT INTO percona.dsns (dsn) VALUES (?)")
                .bind(self.dsn(o, ""))
                .execute(&mut conn)
                .await
                .context("listing a replica in percona.dsns")?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// A DSN for Percona Toolkit: loopback, the instance's port, the option file, and `rest`.
    fn dsn(&self, ordinal: u32, rest: &str) -> String {
        format!(
            "h=127.0.0.1,P={},F={}{rest}",
            self.port(ordinal),
            self.cnf.display()
        )
    }

    /// Runs pt-online-schema-change with its output in `log`.
    async fn pt_osc(&self, tool: &Tool, change: &str, primary: u32, log: &Path) -> Result<()> {
        let mut cmd = tool.perl_program("pt-online-schema-change")?;
        cmd.arg("--alter")
            .arg(change)
            .arg("--execute")
            .arg("--no-version-check")
            .arg("--recursion-method")
            .arg(format!("dsn={}", self.dsn(primary, ",D=percona,t=dsns")))
            .arg("--max-lag")
            .arg("1")
            .arg("--check-interval")
            .arg("1")
            .arg("--progress")
            .arg("time,10")
            .arg(self.dsn(primary, &format!(",D={DATABASE},t={TABLE}")));
        let out = std::fs::File::create(log)
            .with_context(|| format!("could not create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdout(out)
            .stderr(err)
            .stdin(std::process::Stdio::null());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let status = cmd
            .status()
            .await
            .context("starting pt-online-schema-change")?;
        if !status.success() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            bail!(
                "pt-online-schema-change exited {status}; the end of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Waits until the load has acknowledged a write [`COOL_DOWN`] after `end`.
    async fn cool_down(&self, load: &LoadHandle, end: Instant) -> Result<()> {
        let ledger = load.ledger();
        let past = u64::try_from(ledger.offset_of(end + COOL_DOWN).as_micros()).unwrap_or(u64::MAX);
        wait_for(Duration::from_secs(30), async || {
            ledger
                .last_acked()
                .is_some_and(|w| w.ack_us > past)
                .then_some(())
        })
        .await
        .context("the load did not write again within 30 s of the end")
    }

    /// The load's writes: latency and gap while the method ran, failures over the whole load,
    /// and the ledger check on every instance.
    async fn writes(
        &self,
        ledger: &LedgerSnapshot,
        origin: Instant,
        start: Instant,
        end: Instant,
    ) -> Result<Writes> {
        let us = |i: Instant| {
            u64::try_from(i.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
        };
        let (lo, hi) = (us(start), us(end));
        let latencies: Vec<Duration> = ledger
            .acked
            .iter()
            .filter(|w| w.sent_us >= lo && w.sent_us < hi)
            .map(|w| Duration::from_micros(w.latency_us()))
            .collect();
        let longest_gap = ledger
            .longest_gap_in(Duration::from_micros(lo)..Duration::from_micros(hi))
            .map_or(Duration::ZERO, |g| g.length());
        let mut config = CheckConfig::default();
        config.table = format!("{DATABASE}.{TABLE}");
        let verdict = check(ledger, &self.cluster.check_targets(), &config).await?;
        let mut lost: Vec<u64> = verdict
            .missing
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        lost.sort_unstable();
        lost.dedup();
        let mut by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
        for e in &ledger.errors {
            *by_kind.entry(e.kind.as_str()).or_default() += 1;
        }
        let mut failed_by_kind: Vec<(String, usize)> = by_kind
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        failed_by_kind.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        Ok(Writes {
            failed_by_kind,
            acknowledged: verdict.acknowledged,
            latency: Summary::of(&latencies),
            longest_gap,
            failed: ledger.errors.len(),
            unknown: ledger.unknown.len(),
            lost: lost.len(),
        })
    }
}

fn ordinal(i: usize) -> u32 {
    u32::try_from(i).expect("a handful of instances")
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// A GTID position: the last sequence number per replication domain.
type Gtid = BTreeMap<u32, u64>;

/// Parses MariaDB's `gtid_current_pos` (`domain-server-seq,...`); the largest sequence number
/// per domain.
pub fn parse_gtid(text: &str) -> Gtid {
    let mut out = Gtid::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut fields = part.split('-');
        let (Some(domain), Some(_server), Some(seq)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if let (Ok(domain), Ok(seq)) = (domain.parse::<u32>(), seq.parse::<u64>()) {
            let e = out.entry(domain).or_insert(0);
            *e = (*e).max(seq);
        }
    }
    out
}

/// Transactions `have` lacks of `target`, over every domain.
pub fn distance(target: &Gtid, have: &Gtid) -> u64 {
    target
        .iter()
        .map(|(d, seq)| seq.saturating_sub(have.get(d).copied().unwrap_or(0)))
        .sum()
}

async fn gtid_of(conn: &mut MySqlConnection) -> Result<Gtid> {
    let text: String = sqlx::query_scalar("SELECT @@GLOBAL.gtid_current_pos")
        .fetch_one(conn)
        .await
        .context("reading gtid_current_pos")?;
    Ok(parse_gtid(&text))
}

/// `Seconds_Behind_Master` of `SHOW SLAVE STATUS` (`None`: not replicating, or NULL).
async fn seconds_behind(conn: &mut MySqlConnection) -> Result<Option<u64>> {
    let row: Option<MySqlRow> = sqlx::query("SHOW SLAVE STATUS")
        .fetch_optional(conn)
        .await
        .context("SHOW SLAVE STATUS")?;
    let Some(row) = row else { return Ok(None) };
    let col = "Seconds_Behind_Master";
    Ok(row
        .try_get::<Option<u64>, _>(col)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<i64>, _>(col)
                .ok()
                .flatten()
                .and_then(|v| u64::try_from(v).ok())
        })
        .or_else(|| {
            row.try_get::<Option<String>, _>(col)
                .ok()
                .flatten()
                .and_then(|v| v.parse().ok())
        }))
}

/// The primary's positions over time, to turn a replica's position into a lag.
#[derive(Default)]
struct History {
    /// (when, the primary's position), in time order.
    points: Vec<(Instant, Gtid)>,
}

impl History {
    /// How long ago the primary first had a transaction `have` lacks (zero when it has all
    /// the primary had at the last sample).
    fn lag(&self, have: &Gtid, now: Instant) -> Duration {
        self.points
            .iter()
            .find(|(_, p)| distance(p, have) > 0)
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
    }
}

/// Samples the replicas every [`SAMPLE_EVERY`] until `stop` says so: serving ones and, apart,
/// drained ones.
async fn sample_lag(bench: &Bench<'_>, mut stop: watch::Receiver<bool>, start: Instant) -> Lag {
    let router = bench.cluster.router();
    let mut conns: Vec<Option<MySqlConnection>> = (0..INSTANCES).map(|_| None).collect();
    let mut history = History::default();
    let mut lag = Lag::default();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        lag.samples += 1;
        let Some(primary) = router.primary() else {
            continue;
        };
        let Some(position) = query(bench, &mut conns, primary, async |c| gtid_of(c).await).await
        else {
            continue;
        };
        history.points.push((Instant::now(), position.clone()));
        for o in (0..ordinal(INSTANCES)).filter(|o| *o != primary) {
            let Some(drained) = router.is_drained(o) else {
                continue;
            };
            let Some((have, behind)) = query(bench, &mut conns, o, async |c| {
                Ok((gtid_of(c).await?, seconds_behind(c).await?))
            })
            .await
            else {
                continue;
            };
            // Still serving (or still drained) when read: a drain may have begun or ended
            // meanwhile.
            if router.is_drained(o) != Some(drained) || router.primary() == Some(o) {
                continue;
            }
            let now = Instant::now();
            let l = history.lag(&have, now);
            let d = distance(&position, &have);
            if drained {
                lag.drained_readings += 1;
                lag.drained_max = lag.drained_max.max(l);
                lag.drained_max_distance = lag.drained_max_distance.max(d);
                continue;
            }
            lag.readings += 1;
            if l > lag.max {
                lag.max = l;
                lag.worst = Some((o, now - start));
            }
            lag.max_distance = lag.max_distance.max(d);
            if let Some(b) = behind {
                lag.max_seconds_behind = Some(lag.max_seconds_behind.unwrap_or(0).max(b));
            }
        }
        // Only the positions a replica may still lack matter: keep the history short.
        if history.points.len() > 20_000 {
            history.points.drain(..10_000);
        }
    }
    lag
}

/// Runs `f` on a cached connection to `ordinal` (made on first use, dropped after an error).
async fn query<T>(
    bench: &Bench<'_>,
    conns: &mut [Option<MySqlConnection>],
    ordinal: u32,
    f: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T>,
) -> Option<T> {
    let slot = conns.get_mut(ordinal as usize)?;
    if slot.is_none() {
        let options = bench.options(ordinal);
        *slot = tokio::time::timeout(SAMPLE_EVERY * 5, MySqlConnection::connect_with(&options))
            .await
            .ok()?
            .ok();
    }
    let conn = slot.as_mut()?;
    match tokio::time::timeout(SAMPLE_EVERY * 5, f(conn)).await {
        Ok(Ok(v)) => Some(v),
        _ => {
            *slot = None;
            None
        }
    }
}

/// The results table: change, server, method, total time, lag (serving replicas, then
/// drained ones), writes, and the verdicts.
pub fn results_table(results: &Results) -> String {
    let header: Vec<String> = [
        "change",
        "server",
        "method",
        "total s",
        "max lag ms (GTID)",
        "max Seconds_Behind_Master",
        "max GTID distance",
        "drained replica max lag ms (GTID)",
        "write p50 ms",
        "write p99 ms",
        "longest write gap ms",
        "acknowledged",
        "failed writes",
        "lost",
        "lag ≤ 1 s",
        "zero failed",
        "faster than pt-osc",
    ]
    .map(str::to_owned)
    .to_vec();
    let verdict = |v: Option<bool>| match v {
        Some(true) => "pass".to_owned(),
        Some(false) => "**FAIL**".to_owned(),
        None => "—".to_owned(),
    };
    let body: Vec<Vec<String>> = results
        .results
        .iter()
        .map(|r| {
            let [lag_ok, failed_ok, faster] = results.verdicts(r);
            vec![
                format!("`{}`", r.change),
                r.server.clone(),
                r.method.label().to_owned(),
                secs(r.total),
                ms(r.lag.max),
                r.lag
                    .max_seconds_behind
                    .map_or("—".to_owned(), |s| s.to_string()),
                r.lag.max_distance.to_string(),
                if r.lag.drained_readings == 0 {
                    "—".to_owned()
                } else {
                    ms(r.lag.drained_max)
                },
                ms(r.writes.latency.p50),
                ms(r.writes.latency.p99),
                ms(r.writes.longest_gap),
                r.writes.acknowledged.to_string(),
                r.writes.failed.to_string(),
                r.writes.lost.to_string(),
                verdict(lag_ok),
                verdict(failed_ok),
                verdict(faster),
            ]
        })
        .collect();
    table(&header, 3, &body)
}

/// The section of `docs/benchmarks.md`.
pub fn section(results: &Results, ctx: &SectionContext) -> String {
    let load =
        |l: Option<crate::report::LoadAverage>| l.map_or("unknown".to_owned(), |l| l.to_string());
    let mut out = format!(
        "Command: `{}`\n\nMeasured {} (UTC) on {}. Load average (1, 5, 15 min): {} at the start, {} at the end.\n\n",
        ctx.command,
        ctx.date,
        ctx.machine.describe(),
        load(ctx.load_before),
        load(ctx.load_after),
    );
    out.push_str(&format!(
        "{}, 3 instances each; table `{DATABASE}.{TABLE}` of {} rows; load {} writes/s through the router; Percona Toolkit {}.\n\n",
        results.servers.join(" and "),
        results.rows,
        results.rate,
        results.toolkit.as_deref().unwrap_or("not run"),
    ));
    out.push_str(&results_table(results));
    out.push_str("\nWhat each method did:\n\n");
    for r in &results.results {
        let kinds: Vec<String> = r
            .writes
            .failed_by_kind
            .iter()
            .map(|(k, n)| {
                let what = match k.as_str() {
                    "connect" => "could not connect",
                    "rejected" => "refused by the server",
                    "lost" => "connection lost after sending (outcome unknown)",
                    "timeout" => "timed out after sending (outcome unknown)",
                    other => other,
                };
                format!("{n} {what}")
            })
            .collect();
        out.push_str(&format!(
            "- `{}`, {}, {}: {}; failed writes {}{}.\n",
            r.change,
            r.server,
            r.method.label(),
            r.detail,
            r.writes.failed,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        ));
    }
    let missed: Vec<String> = results
        .results
        .iter()
        .filter(|r| r.method == Method::Rolling)
        .filter(|r| results.verdicts(r).contains(&Some(false)))
        .map(|r| format!("`{}` on {}", r.change, r.server))
        .collect();
    out.push('\n');
    if results.results.iter().all(|r| r.method != Method::Rolling) {
        out.push_str("Verdict: the rolling change was not run.\n");
    } else if missed.is_empty() {
        out.push_str(
            "Verdict: switchyard's rolling change meets every target on every change measured.\n",
        );
    } else {
        out.push_str(&format!(
            "Verdict: switchyard's rolling change misses a target on {}.\n",
            missed.join(" and ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_and_distances() {
        let p = parse_gtid("0-1-120,1-3-7");
        assert_eq!(p, Gtid::from([(0, 120), (1, 7)]));
        // Several servers in one domain: the largest sequence number counts.
        assert_eq!(parse_gtid("0-1-5,0-2-9"), Gtid::from([(0, 9)]));
        assert_eq!(parse_gtid(""), Gtid::new());
        let have = parse_gtid("0-1-100");
        assert_eq!(distance(&p, &have), 27);
        assert_eq!(distance(&have, &p), 0);
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_transaction_missing() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let history = History {
            points: vec![
                (at(0), parse_gtid("0-1-10")),
                (at(100), parse_gtid("0-1-20")),
                (at(200), parse_gtid("0-1-30")),
            ],
        };
        // Has everything up to 10: first missing since the sample at 100 ms.
        assert_eq!(
            history.lag(&parse_gtid("0-1-10"), at(250)),
            Duration::from_millis(150)
        );
        assert_eq!(history.lag(&parse_gtid("0-1-30"), at(250)), Duration::ZERO);
        assert_eq!(
            history.lag(&parse_gtid("0-1-3"), at(250)),
            Duration::from_millis(250)
        );
    }

    fn result(method: Method, total: u64, lag_ms: u64, failed: usize) -> MethodResult {
        MethodResult {
            change: "MODIFY c INT".to_owned(),
            server: "MariaDB 10.11.14".to_owned(),
            method,
            total: Duration::from_secs(total),
            lag: Lag {
                max: Duration::from_millis(lag_ms),
                ..Lag::default()
            },
            writes: Writes {
                failed,
                ..Writes::default()
            },
            detail: String::new(),
        }
    }

    #[test]
    fn verdicts_compare_with_pt_osc_and_the_targets() {
        let results = Results {
            servers: vec!["MariaDB 10.11.14".to_owned()],
            toolkit: Some("3.2.1-1".to_owned()),
            rows: 1_000_000,
            rate: 200,
            results: vec![
                result(Method::PlainAlter, 20, 15_000, 40),
                result(Method::PtOsc, 90, 900, 0),
                result(Method::Rolling, 60, 100, 0),
            ],
        };
        assert_eq!(
            results.verdicts(&results.results[0]),
            [Some(false), Some(false), None]
        );
        assert_eq!(
            results.verdicts(&results.results[2]),
            [Some(true), Some(true), Some(true)]
        );
        let text = section(
            &results,
            &SectionContext {
                command: "cargo xtask bench schema".to_owned(),
                date: "2026-11-22".to_owned(),
                machine: crate::report::Machine::detect(),
                load_before: None,
                load_after: None,
            },
        );
        let row = text
            .lines()
            .find(|l| l.contains("| switchyard rolling"))
            .expect("a rolling row");
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[cells.len() - 3..], ["pass", "pass", "pass"], "{row}");
        let plain = text
            .lines()
            .find(|l| l.contains("| plain ALTER"))
            .expect("a plain row");
        let cells: Vec<&str> = plain.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(
            cells[cells.len() - 3..],
            ["**FAIL**", "**FAIL**", "—"],
            "{plain}"
        );
        assert!(text.contains("meets every target"), "{text}");

        // A drained replica's lag is reported, and the lag target does not apply to it.
        let mut drained = results.clone();
        drained.results[2].lag.drained_readings = 10;
        drained.results[2].lag.drained_max = Duration::from_millis(4_200);
        assert_eq!(
            drained.verdicts(&drained.results[2]),
            [Some(true), Some(true), Some(true)]
        );
        let table = results_table(&drained);
        let row = table
            .lines()
            .find(|l| l.contains("| switchyard rolling"))
            .expect("a rolling row");
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[7], "4200", "{row}");
        let plain = table
            .lines()
            .find(|l| l.contains("| plain ALTER"))
            .expect("a plain row");
        let cells: Vec<&str> = plain.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[7], "—", "{plain}");

        // The rolling change on another server is compared with no pt-osc of that server's.
        let mut other = results.clone();
        let mut on_11_8 = result(Method::Rolling, 200, 100, 0);
        on_11_8.server = "MariaDB 11.8.3".to_owned();
        other.results.push(on_11_8);
        assert_eq!(
            other.verdicts(&other.results[3]),
            [Some(true), Some(true), None]
        );

        // A seconds-behind reading over a second fails the lag target too.
        let mut slow = results.clone();
        slow.results[2].lag.max_seconds_behind = Some(2);
        slow.results[2].total = Duration::from_secs(100);
        assert_eq!(
            slow.verdicts(&slow.results[2]),
            [Some(false), Some(true), Some(false)]
        );
    }
}
