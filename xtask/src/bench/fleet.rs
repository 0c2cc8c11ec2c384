//! `cargo xtask bench fleet`: a fleet rollout over several local MariaDB clusters under load,
//! with 1, 2 and 4 clusters changing at once (see `crates/switchyard-bench/src/fleet.rs`).

use anyhow::{Context, Result};

use super::{bench_command, out_dir, record};

/// Options of `cargo xtask bench fleet`.
#[derive(clap::Args)]
pub struct Args {
    /// How many clusters.
    #[arg(long, default_value_t = 8)]
    clusters: usize,
    /// Instances per cluster.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// How many clusters change at once, one pass per value, comma-separated (1 first).
    #[arg(long, default_value = "1,2,4")]
    at_once: String,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Runs the benchmark and records its section.
pub fn run(args: &Args) -> Result<()> {
    let command = format!(
        "cargo xtask bench fleet --clusters {} --instances {} --at-once {}",
        args.clusters, args.instances, args.at_once
    );
    let dir = out_dir()?;
    let markdown = dir.join("fleet.md");
    let json = dir.join("fleet.json");
    // A stale section must not be recorded if this run fails before writing its own.
    let _ = std::fs::remove_file(&markdown);
    let bench_args = vec![
        "fleet".to_owned(),
        "--clusters".to_owned(),
        args.clusters.to_string(),
        "--instances".to_owned(),
        args.instances.to_string(),
        "--at-once".to_owned(),
        args.at_once.clone(),
        "--markdown".to_owned(),
        markdown.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
        "--command".to_owned(),
        command,
    ];
    // Every cluster runs for the whole benchmark: the testbed's cap on servers running at
    // once is raised to exactly what it needs.
    let servers = args.clusters.saturating_mul(args.instances);
    let outcome = crate::run(
        bench_command(&bench_args).env("SWITCHYARD_TESTBED_MAX_SERVERS", servers.to_string()),
    );
    if !args.no_record && markdown.exists() {
        let section = std::fs::read_to_string(&markdown)
            .with_context(|| format!("could not read {}", markdown.display()))?;
        record("fleet", "Fleet rollout", &section)?;
    }
    eprintln!("the measurements: {}", json.display());
    outcome
}
