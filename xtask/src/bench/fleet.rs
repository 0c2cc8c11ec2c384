//! `cargo xtask bench fleet`: a fleet rollout over several local MariaDB clusters under load,
//! with 1, 2 and 4 clusters changing at once (see `crates/switchyard-bench/src/fleet.rs`).

use anyhow::Result;

use super::BenchRun;

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
    // Every cluster runs for the whole benchmark: the testbed's cap on servers running at
    // once is raised to exactly what it needs.
    let servers = args.clusters.saturating_mul(args.instances);
    BenchRun {
        subcommand: "fleet",
        args: vec![
            "--clusters".to_owned(),
            args.clusters.to_string(),
            "--instances".to_owned(),
            args.instances.to_string(),
            "--at-once".to_owned(),
            args.at_once.clone(),
        ],
        command: format!(
            "cargo xtask bench fleet --clusters {} --instances {} --at-once {}",
            args.clusters, args.instances, args.at_once
        ),
        stem: "fleet".to_owned(),
        section: (!args.no_record).then_some(("fleet", "Fleet rollout")),
        env: vec![("SWITCHYARD_TESTBED_MAX_SERVERS", servers.to_string())],
    }
    .run()
}
