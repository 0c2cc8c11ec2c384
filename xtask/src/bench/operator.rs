//! `cargo xtask bench operator`: the operator's memory, idle and during a rolling
//! configuration change, the release binary against the fake API over HTTP with the simulated
//! kubelet running its pods on real servers (see `crates/switchyard-bench/src/operator.rs`).

use anyhow::Result;

use super::BenchRun;
use crate::{cargo, target_dir};

/// Options of `cargo xtask bench operator`.
#[derive(clap::Args)]
pub struct Args {
    /// How long each idle phase lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// The cluster's size.
    #[arg(long, default_value_t = 3)]
    instances: u32,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Builds the operator (the `switchyard` binary, release), runs the benchmark and records its
/// section.
pub fn run(args: &Args) -> Result<()> {
    crate::run(cargo().args(["build", "--release", "-p", "switchyard"]))?;
    let operator = target_dir().join("release").join("switchyard");
    BenchRun {
        subcommand: "operator",
        args: vec![
            "--operator".to_owned(),
            operator.display().to_string(),
            "--idle-seconds".to_owned(),
            args.idle_seconds.to_string(),
            "--instances".to_owned(),
            args.instances.to_string(),
        ],
        command: format!(
            "cargo xtask bench operator --idle-seconds {} --instances {}",
            args.idle_seconds, args.instances
        ),
        stem: "operator".to_owned(),
        section: (!args.no_record).then_some(("operator", "Operator memory")),
        env: Vec::new(),
    }
    .run()
}
