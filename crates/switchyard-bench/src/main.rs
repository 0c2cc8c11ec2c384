//! `switchyard-bench`: runs one of switchyard's benchmarks and prints its table. Run it through
//! `cargo xtask bench <what>`, which builds it in release mode and records the table in
//! `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use switchyard_bench::events::FenceLifted;
use switchyard_bench::failover;
use switchyard_bench::fleet;
use switchyard_bench::operator;
use switchyard_bench::provision;
use switchyard_bench::report::{LoadAverage, Machine, utc_date};
use switchyard_bench::rollout;
use switchyard_bench::schema;
use switchyard_bench::switchover::{self, LoadTls, SectionContext};
use switchyard_testbed::ServerKind;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser)]
#[command(
    name = "switchyard-bench",
    about = "switchyard's benchmarks on real servers"
)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Write unavailability of switchovers under load, against restarting the primary in place.
    Switchover {
        /// Switchovers per flavor.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Restarts in place per flavor (default: as many as --runs).
        #[arg(long)]
        restarts: Option<usize>,
        /// The servers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "mariadb,mysql")]
        flavors: Vec<BenchFlavor>,
        /// Whether the load's writers use TLS ("disabled" is a diagnostic of what the TLS
        /// handshake costs them; it needs --restarts 0).
        #[arg(long, value_enum, default_value_t = LoadTlsArg::Preferred)]
        load_tls: LoadTlsArg,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write every run's measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench switchover")]
        command: String,
    },
    /// A whole rolling change of a MariaDB cluster under load by the engine, against the
    /// StatefulSet order (highest ordinal first, the primary restarted in place).
    Rollout {
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "3,5")]
        sizes: Vec<usize>,
        /// What is rolled out.
        #[arg(long, value_enum, default_value_t = ChangeArg::Config)]
        change: ChangeArg,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write every rollout's measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench rollout")]
        command: String,
    },
    /// Provisioning a replica of a filled donor by the agent's copy (MySQL clone, MariaDB
    /// mariadb-backup), against replaying the donor's binary log; the agents' memory.
    Provision {
        /// Data to put in the donor, in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mb: u64,
        /// The servers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "mariadb,mysql")]
        flavors: Vec<BenchFlavor>,
        /// The `switchyard` binary (release build) whose `agent run` owns each instance.
        #[arg(long)]
        agent: PathBuf,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench provision")]
        command: String,
    },
    /// The operator's memory (VmRSS, VmHWM) against the fake API over HTTP, idle and during a
    /// rolling configuration change, with the simulated kubelet running the pods.
    Operator {
        /// The `switchyard` binary (release build) run as the operator (and the pods' agent).
        #[arg(long)]
        operator: PathBuf,
        /// How long each idle phase lasts, in seconds.
        #[arg(long, default_value_t = 60)]
        idle_seconds: u64,
        /// The cluster's size.
        #[arg(long, default_value_t = 3)]
        instances: u32,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench operator")]
        command: String,
    },
    /// A schema change on a million-row MariaDB 10.11 table under load: a plain ALTER,
    /// pt-online-schema-change and switchyard's rolling change.
    Schema {
        /// Rows in the table.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// A change, as it follows `ALTER TABLE app.bench_orders` (repeat for several).
        #[arg(long = "change", default_value = schema::DEFAULT_CHANGE)]
        changes: Vec<String>,
        /// The methods, comma-separated, run in this order.
        #[arg(long, value_delimiter = ',', default_value = "plain,pt-osc,rolling")]
        methods: Vec<SchemaMethod>,
        /// Total writes per second of the load.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Where pt-online-schema-change's output goes.
        #[arg(long, default_value = "target/bench")]
        log_dir: PathBuf,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench schema")]
        command: String,
    },
    /// Automatic failover under load: the primary of a semi-synchronous cluster killed,
    /// frozen or cut off the network, write unavailability and lost writes; semi-sync against
    /// async write latency.
    Failover {
        /// Trials per fault and flavor.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// The servers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "mariadb,mysql")]
        flavors: Vec<BenchFlavor>,
        /// The faults, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "kill9,freeze,partition")]
        faults: Vec<FaultArg>,
        /// The failover policy's detection window, seconds (default: the policy's).
        #[arg(long)]
        detect_after_s: Option<u64>,
        /// The replicas' network timeout, seconds (default: the local cluster's).
        #[arg(long)]
        net_timeout_s: Option<u32>,
        /// Skip the semi-sync against asynchronous latency comparison.
        #[arg(long)]
        no_latency: bool,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write every trial's measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench failover")]
        command: String,
    },
    /// A fleet rollout under load: a static configuration change rolled by the fleet
    /// planner over several MariaDB clusters, 1, 2 and 4 at once; wall time, the fleet's
    /// overhead, write gaps and lost writes.
    Fleet {
        /// How many clusters.
        #[arg(long, default_value_t = 8)]
        clusters: usize,
        /// Instances per cluster.
        #[arg(long, default_value_t = 3)]
        instances: usize,
        /// One pass per value: how many clusters change at once (1 first: the serial time).
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        at_once: Vec<usize>,
        /// Write the markdown section here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the measurements here, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The command to record as the one that reproduces the measurement.
        #[arg(long, default_value = "cargo xtask bench fleet")]
        command: String,
    },
}

/// A fault of the failover benchmark.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum FaultArg {
    /// kill -9 of the primary (the supervisor starts it again).
    Kill9,
    /// SIGSTOP of the primary.
    Freeze,
    /// The primary cut off the network (nftables on loopback).
    Partition,
}

/// What the rollout benchmark rolls out.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ChangeArg {
    /// performance_schema=ON on MariaDB 10.11 (static: one restart per instance).
    Config,
    /// MariaDB 10.5 → 10.11.
    Upgrade,
}

/// A way to make a schema change.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchemaMethod {
    /// ALTER TABLE on the primary, replicated as usual.
    Plain,
    /// Percona Toolkit's pt-online-schema-change.
    PtOsc,
    /// switchyard's rolling change.
    Rolling,
}

impl SchemaMethod {
    fn method(self) -> schema::Method {
        match self {
            SchemaMethod::Plain => schema::Method::PlainAlter,
            SchemaMethod::PtOsc => schema::Method::PtOsc,
            SchemaMethod::Rolling => schema::Method::Rolling,
        }
    }
}

/// Whether the load uses TLS.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LoadTlsArg {
    /// TLS when the server offers it.
    Preferred,
    /// No TLS (after one TLS login per server, which MySQL's caching_sha2_password needs).
    Disabled,
}

/// A server the benchmark runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchFlavor {
    /// MariaDB 10.11.
    Mariadb,
    /// MySQL 9.7.
    Mysql,
}

impl BenchFlavor {
    fn kind(self) -> ServerKind {
        match self {
            BenchFlavor::Mariadb => ServerKind::Mariadb1011,
            BenchFlavor::Mysql => ServerKind::Mysql97,
        }
    }
}

fn main() -> ExitCode {
    let lifted = FenceLifted::default();
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    let record = lifted.clone().with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("switchyard_mysql", tracing::Level::INFO),
    );
    tracing_subscriber::registry().with(log).with(record).init();
    match run(Cli::parse(), &lifted) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a benchmark's section and writes it (and the results as JSON) where asked.
fn emit(
    section: &str,
    results: &impl serde::Serialize,
    markdown: Option<PathBuf>,
    json: Option<PathBuf>,
) -> Result<()> {
    println!("\n{section}");
    if let Some(path) = markdown {
        std::fs::write(&path, section)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(results)?;
        std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}

fn run(cli: Cli, lifted: &FenceLifted) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    match cli.what {
        What::Failover {
            trials,
            flavors,
            faults,
            detect_after_s,
            net_timeout_s,
            no_latency,
            markdown,
            json,
            command,
        } => {
            let config = failover::Config {
                flavors: flavors.iter().map(|f| f.kind()).collect(),
                faults: faults
                    .iter()
                    .map(|f| match f {
                        FaultArg::Kill9 => failover::Fault::Kill9,
                        FaultArg::Freeze => failover::Fault::Freeze,
                        FaultArg::Partition => failover::Fault::Partition,
                    })
                    .collect(),
                trials,
                detect_after_s,
                net_timeout_s,
                latency: !no_latency,
                reports: json
                    .as_ref()
                    .and_then(|j| j.parent())
                    .map(|d| d.join("failover-trials")),
            };
            let load_before = LoadAverage::now();
            let progress = |line: &str| eprintln!("    {line}");
            let results = runtime.block_on(failover::run(&config, &progress))?;
            let ctx = failover::SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
            };
            let section = failover::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            let lost: usize = results
                .trials
                .iter()
                .filter(|t| t.old_primary_judged)
                .map(|t| t.lost)
                .sum();
            if lost > 0 {
                eprintln!("error: {lost} acknowledged writes were lost");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Fleet {
            clusters,
            instances,
            at_once,
            markdown,
            json,
            command,
        } => {
            let config = fleet::Config {
                clusters,
                instances,
                at_once,
            };
            let load_before = LoadAverage::now();
            let progress = |line: &str| eprintln!("    {line}");
            let results = runtime.block_on(fleet::run(&config, &progress))?;
            let ctx = fleet::SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
            };
            let section = fleet::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            if results.lost > 0 {
                eprintln!("error: {} acknowledged writes were lost", results.lost);
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Provision {
            size_mb,
            flavors,
            agent,
            markdown,
            json,
            command,
        } => {
            let config = provision::Config {
                flavors: flavors.iter().map(|f| f.kind()).collect(),
                size_mb,
                agent,
            };
            let load_before = LoadAverage::now();
            let progress = |line: &str| eprintln!("    {line}");
            let results = runtime.block_on(provision::run(&config, &progress))?;
            let ctx = provision::SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
            };
            let section = provision::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            Ok(ExitCode::SUCCESS)
        }
        What::Operator {
            operator,
            idle_seconds,
            instances,
            markdown,
            json,
            command,
        } => {
            let config = operator::Config {
                operator,
                idle: std::time::Duration::from_secs(idle_seconds),
                instances,
            };
            let load_before = LoadAverage::now();
            let progress = |line: &str| eprintln!("    {line}");
            let results = runtime.block_on(operator::run(&config, &progress))?;
            let ctx = operator::SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
            };
            let section = operator::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            Ok(ExitCode::SUCCESS)
        }
        What::Rollout {
            sizes,
            change,
            markdown,
            json,
            command,
        } => {
            let change = match change {
                ChangeArg::Config => rollout::Change::Config,
                ChangeArg::Upgrade => rollout::Change::Upgrade,
            };
            let load_before = LoadAverage::now();
            let progress = |line: &str| eprintln!("    {line}");
            let results =
                runtime.block_on(rollout::run(&rollout::Config { sizes, change }, &progress))?;
            let ctx = rollout::SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
                change,
            };
            let section = rollout::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            let lost: usize = results.iter().map(|m| m.lost).sum();
            if lost > 0 {
                eprintln!("error: {lost} acknowledged writes were lost");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Switchover {
            runs,
            restarts,
            flavors,
            load_tls,
            markdown,
            json,
            command,
        } => {
            let config = switchover::Config {
                flavors: flavors.iter().map(|f| f.kind()).collect(),
                runs,
                restarts: restarts.unwrap_or(runs),
                load_tls: match load_tls {
                    LoadTlsArg::Preferred => LoadTls::Preferred,
                    LoadTlsArg::Disabled => LoadTls::Disabled,
                },
            };
            let load_before = LoadAverage::now();
            if let Some(l) = load_before
                && l.0[0] > 3.0
            {
                eprintln!(
                    "warning: the load average is {l}: other work on this machine inflates the figures"
                );
            }
            let progress = |line: &str| eprintln!("    {line}");
            let results = runtime.block_on(switchover::run(&config, lifted, &progress))?;
            let ctx = SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
            };
            let section = switchover::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            let lost: usize = results
                .iter()
                .map(|r| r.switchover.lost + r.restart.lost)
                .sum();
            if lost > 0 {
                eprintln!("error: {lost} acknowledged writes were lost");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Schema {
            rows,
            changes,
            methods,
            rate,
            log_dir,
            markdown,
            json,
            command,
        } => {
            let config = schema::Config {
                rows,
                changes,
                methods: methods.iter().map(|m| m.method()).collect(),
                rate,
                log_dir,
            };
            let load_before = LoadAverage::now();
            let progress = |line: &str| eprintln!("    {line}");
            let results = runtime.block_on(schema::run(&config, &progress))?;
            let ctx = SectionContext {
                command,
                date: utc_date(SystemTime::now()),
                machine: Machine::detect(),
                load_before,
                load_after: LoadAverage::now(),
            };
            let section = schema::section(&results, &ctx);
            emit(&section, &results, markdown, json)?;
            let lost: usize = results.results.iter().map(|r| r.writes.lost).sum();
            if lost > 0 {
                eprintln!("error: {lost} acknowledged writes were lost");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
