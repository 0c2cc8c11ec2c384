//! `cargo xtask bench provision`: provisioning a replica of a filled donor by the agent's
//! copy against replaying the binary log, and the agents' memory (see
//! `crates/switchyard-bench/src/provision.rs`).

use anyhow::Result;

use super::BenchRun;
use crate::{cargo, target_dir};

/// Options of `cargo xtask bench provision`.
#[derive(clap::Args)]
pub struct Args {
    /// Data to put in the donor, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// The servers, comma-separated (mariadb, mysql).
    #[arg(long, default_value = "mariadb,mysql")]
    flavors: String,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Builds the agent (the `switchyard` binary, release), runs the benchmark and records its
/// section.
pub fn run(args: &Args) -> Result<()> {
    crate::run(cargo().args(["build", "--release", "-p", "switchyard"]))?;
    let agent = target_dir().join("release").join("switchyard");
    BenchRun {
        subcommand: "provision",
        args: vec![
            "--size-mb".to_owned(),
            args.size_mb.to_string(),
            "--flavors".to_owned(),
            args.flavors.clone(),
            "--agent".to_owned(),
            agent.display().to_string(),
        ],
        command: format!(
            "cargo xtask bench provision --size-mb {} --flavors {}",
            args.size_mb, args.flavors
        ),
        stem: "provision".to_owned(),
        section: (!args.no_record).then_some(("provision", "Provisioning a replica")),
        env: Vec::new(),
    }
    .run()
}
