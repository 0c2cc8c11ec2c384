//! `cargo xtask demo`: switchyard's main job on this machine, end to end.
//!
//! A 3-instance MariaDB 10.5 cluster from Debian's archive takes a write and
//! read load through the router while the engine, over the local runtime,
//! upgrades it to 10.11 and then to 11.8, sets `innodb_buffer_pool_size`
//! online (dynamic: no restart) and turns `performance_schema` on (static: a
//! rolling restart with a switchover). It ends with a summary table and a
//! report in `target/demo/`, and exits non-zero if a step failed or an
//! acknowledged write was lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use switchyard_local::summary::SummaryInput;
use switchyard_local::{
    Apply, ClusterSpec, LocalCluster, LocalRuntime, Monitor, Progress, Summary, report,
    server_version,
};
use switchyard_plan::decide::Target;
use switchyard_plan::{Engine, Finished, Policy};
use switchyard_testbed::ServerKind;
use switchyard_testbed::ledger::{CheckConfig, check};
use switchyard_testbed::load::LoadConfig;

use crate::project_root;

/// The buffer pool size the dynamic change sets (the testbed starts with 64 MiB).
const BUFFER_POOL: &str = "134217728";

/// What MariaDB 11.8 lets the buffer pool grow to online (it defaults to the
/// size at startup); set with the upgrade, in the same revision.
const BUFFER_POOL_MAX: &str = "268435456";

/// One change the demo rolls out.
enum Change {
    Upgrade(ServerKind, &'static [(&'static str, &'static str)]),
    Config {
        variable: &'static str,
        value: &'static str,
        apply: Apply,
    },
}

/// Runs the demo on a fresh tokio runtime.
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
        // A candidate this far behind catches up well within the deadline.
        max_lag_seconds: 2,
        halt_after: Duration::from_secs(120),
        retry_backoff: Duration::from_secs(1),
        switchover_deadline: Duration::from_secs(10),
        ..Policy::default()
    }
}

async fn demo() -> Result<()> {
    let wall = Instant::now();
    let progress = Progress::new(3);
    progress.line(
        "switchyard demo: 3 MariaDB instances under load, 10.5 → 10.11 → 11.8, \
         then innodb_buffer_pool_size (online) and performance_schema (rolling restart)",
    );

    progress.line("servers: fetched from Debian's archive into target/testbed on the first run");
    let started = Instant::now();
    let mut ready = Vec::new();
    for kind in [
        ServerKind::Mariadb105,
        ServerKind::Mariadb1011,
        ServerKind::Mariadb118,
    ] {
        let version = server_version(kind)
            .await
            .with_context(|| format!("fetching {kind} from Debian's archive"))?;
        ready.push(format!("{kind} ({version})"));
    }
    progress.line(format!(
        "servers ready in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        ready.join(", ")
    ));

    let started = Instant::now();
    // Replicas apply with four threads, so a restarted one catches up fast.
    let config = [("slave_parallel_threads".to_owned(), "4".to_owned())].into();
    let cluster =
        LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb105, 3).with_config(config))
            .await
            .context("starting the MariaDB 10.5 cluster")?;
    cluster.timeline().observe_with(progress.clone());
    progress.line(format!(
        "cluster of 3 × MariaDB 10.5 started in {:.1}s; router: primary {}, reads {}",
        started.elapsed().as_secs_f64(),
        cluster.router().primary_addr(),
        cluster.router().read_addr()
    ));

    let config = LoadConfig::default();
    progress.line(format!(
        "load: {} writers at {} writes/s and {} reader at {} reads/s through the router, as the application account",
        config.writers, config.rate_per_sec, config.readers, config.read_rate_per_sec
    ));
    let load = cluster
        .start_load(config)
        .await
        .context("creating the load's table and starting the load")?;
    let origin = load.ledger().start();
    let monitor = Monitor::start(&cluster, Duration::from_millis(50));
    let status = {
        let ledger = Arc::clone(load.ledger());
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                progress.status(format!(
                    "load: {} writes acknowledged, {} write errors",
                    ledger.acknowledged(),
                    ledger.error_count()
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let changes = [
        Change::Upgrade(ServerKind::Mariadb1011, &[]),
        Change::Upgrade(
            ServerKind::Mariadb118,
            &[("innodb_buffer_pool_size_max", BUFFER_POOL_MAX)],
        ),
        Change::Config {
            variable: "innodb_buffer_pool_size",
            value: BUFFER_POOL,
            apply: Apply::Online,
        },
        Change::Config {
            variable: "performance_schema",
            value: "ON",
            apply: Apply::Restart,
        },
    ];
    let mut failure = None;
    for change in &changes {
        if let Err(e) = roll(&cluster, &progress, change).await {
            failure = Some(e);
            break;
        }
    }

    let report = load.stop().await;
    status.abort();
    let writers = monitor.stop().await;
    progress.line("load stopped; checking every acknowledged write on every instance");
    let checked = check(
        &report.ledger,
        &cluster.check_targets(),
        &CheckConfig::default(),
    )
    .await
    .context("checking the acknowledged writes")?;
    let summary = Summary::build(&SummaryInput {
        events: &cluster.timeline().events(),
        origin,
        ledger: Some(&report.ledger),
        check: Some(&checked),
        read_errors: report.read_errors.len(),
        monitor: Some(&writers),
        history: Some(&cluster.history()?),
        wall: wall.elapsed(),
    });
    let dir = project_root().join("target/demo");
    let files = report::write(
        &dir,
        &summary,
        &report.ledger,
        &cluster.timeline().events(),
        origin,
    )
    .context("writing the report")?;
    progress.finish();
    eprintln!("\n{summary}");
    eprintln!(
        "report: {}\n        {}",
        files.html.display(),
        files.svg.display()
    );
    eprintln!(
        "demo wall time: {:.1}s (target: under 180 s once built)",
        wall.elapsed().as_secs_f64()
    );

    if let Some(e) = failure {
        return Err(e);
    }
    if !checked.no_lost_writes() {
        bail!(
            "{} acknowledged writes were lost: {:?}",
            checked.total_missing(),
            checked.missing
        );
    }
    if !writers.violations.is_empty() {
        bail!(
            "the monitor saw invariants broken: {:?}",
            writers.violations
        );
    }
    if !summary.succeeded() {
        bail!("a phase did not finish: see the summary above");
    }
    Ok(())
}

/// Rolls one change out with a new engine and checks it took effect.
async fn roll(cluster: &LocalCluster, progress: &Arc<Progress>, change: &Change) -> Result<()> {
    let (target, name) = match change {
        Change::Upgrade(kind, set) => {
            let target = cluster.upgrade_target_with(*kind, set).await?;
            let with: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let name = format!(
                "upgrade to {kind} {}{} (r{})",
                target.version,
                if with.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", with.join(", "))
                },
                target.revision.number
            );
            (target, name)
        }
        Change::Config {
            variable,
            value,
            apply,
        } => {
            let before = variable_everywhere(cluster, variable).await?;
            let target = cluster.config_target(&[(variable, value)], *apply)?;
            let how = match apply {
                Apply::Online => "dynamic: set online",
                Apply::Restart => "static: rolling restart",
            };
            let name = format!(
                "{variable} {before} → {value} ({how}, r{})",
                target.revision.number
            );
            (target, name)
        }
    };
    cluster.timeline().phase(&name);
    let finished = run_engine(cluster, &target).await?;
    if finished != Finished::Done {
        bail!("`{name}` did not finish: {finished:?}");
    }
    if let Change::Config {
        variable, value, ..
    } = change
    {
        let now = variable_everywhere(cluster, variable).await?;
        let wanted = normalize(value);
        if now != wanted {
            bail!("after `{name}`, {variable} is {now}, not {wanted}");
        }
        progress.line(format!("  {variable} is {now} on every instance"));
    }
    Ok(())
}

async fn run_engine(cluster: &LocalCluster, target: &Target) -> Result<Finished> {
    let engine = Engine::new(LocalRuntime::new(cluster), target.clone(), policy());
    tokio::time::timeout(Duration::from_secs(600), engine.run(20_000))
        .await
        .context("the rollout did not finish within 10 minutes")?
        .context("the engine stopped")
}

fn normalize(value: &str) -> String {
    match value.to_ascii_uppercase().as_str() {
        "ON" | "1" => "ON".into(),
        "OFF" | "0" => "OFF".into(),
        _ => value.to_owned(),
    }
}

/// The variable's value if every instance agrees (`mixed: ...` otherwise),
/// read on each instance with connections of the demo's own.
async fn variable_everywhere(cluster: &LocalCluster, variable: &str) -> Result<String> {
    let mut values = Vec::new();
    for o in 0..u32::try_from(cluster.len()).unwrap_or(0) {
        let read = cluster.handle(o)?.global_values(&[variable]).await;
        let value = read
            .with_context(|| format!("reading {variable} on instance {o}"))?
            .remove(variable)
            .flatten()
            .unwrap_or_default();
        values.push(normalize(&value));
    }
    values.dedup();
    Ok(match values.as_slice() {
        [one] => one.clone(),
        _ => format!("mixed: {}", values.join(", ")),
    })
}
