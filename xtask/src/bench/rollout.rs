//! `cargo xtask bench rollout`: a whole rolling change of a MariaDB cluster under load by the
//! engine, against the StatefulSet order (see `crates/switchyard-bench/src/rollout.rs`).

use anyhow::Result;

use super::BenchRun;

/// Options of `cargo xtask bench rollout`.
#[derive(clap::Args)]
pub struct Args {
    /// Cluster sizes, comma-separated.
    #[arg(long, default_value = "3,5")]
    sizes: String,
    /// What is rolled out: config (performance_schema=ON on 10.11) or upgrade (10.5 → 10.11).
    #[arg(long, default_value = "config")]
    change: String,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Runs the benchmark and records its section.
pub fn run(args: &Args) -> Result<()> {
    // One section per change, so both can be on record.
    let section = if args.change == "upgrade" {
        ("rollout-upgrade", "Rollout: version upgrade")
    } else {
        ("rollout", "Rollout")
    };
    BenchRun {
        subcommand: "rollout",
        args: vec![
            "--sizes".to_owned(),
            args.sizes.clone(),
            "--change".to_owned(),
            args.change.clone(),
        ],
        command: format!(
            "cargo xtask bench rollout --sizes {} --change {}",
            args.sizes, args.change
        ),
        stem: format!("rollout-{}", args.change),
        section: (!args.no_record).then_some(section),
        env: Vec::new(),
    }
    .run()
}
