//! `cargo xtask bench provision`: provisioning a replica of a filled donor by the agent's
//! copy against replaying the binary log, and the agents' memory (see
//! `crates/switchyard-bench/src/provision.rs`).

use anyhow::{Context, Result};

use super::{out_dir, record, run_bench};
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
    let command = format!(
        "cargo xtask bench provision --size-mb {} --flavors {}",
        args.size_mb, args.flavors
    );
    let dir = out_dir()?;
    let markdown = dir.join("provision.md");
    let json = dir.join("provision.json");
    // A stale section must not be recorded if this run fails before writing its own.
    let _ = std::fs::remove_file(&markdown);
    run_bench(&[
        "provision".to_owned(),
        "--size-mb".to_owned(),
        args.size_mb.to_string(),
        "--flavors".to_owned(),
        args.flavors.clone(),
        "--agent".to_owned(),
        agent.display().to_string(),
        "--markdown".to_owned(),
        markdown.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
        "--command".to_owned(),
        command,
    ])?;
    if !args.no_record {
        let section = std::fs::read_to_string(&markdown)
            .with_context(|| format!("could not read {}", markdown.display()))?;
        record("provision", "Provisioning a replica", &section)?;
    }
    eprintln!("the measurements: {}", json.display());
    Ok(())
}
