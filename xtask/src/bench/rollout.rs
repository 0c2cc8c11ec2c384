//! `cargo xtask bench rollout`: a whole rolling change of a MariaDB cluster under load by the
//! engine, against the StatefulSet order (see `crates/switchyard-bench/src/rollout.rs`).

use anyhow::{Context, Result};

use super::{out_dir, record, run_bench};

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
    let command = format!(
        "cargo xtask bench rollout --sizes {} --change {}",
        args.sizes, args.change
    );
    let dir = out_dir()?;
    let markdown = dir.join(format!("rollout-{}.md", args.change));
    let json = dir.join(format!("rollout-{}.json", args.change));
    // A stale section must not be recorded if this run fails before writing its own.
    let _ = std::fs::remove_file(&markdown);
    let bench_args = vec![
        "rollout".to_owned(),
        "--sizes".to_owned(),
        args.sizes.clone(),
        "--change".to_owned(),
        args.change.clone(),
        "--markdown".to_owned(),
        markdown.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
        "--command".to_owned(),
        command,
    ];
    // The bench exits non-zero when writes were lost, after writing its section: record
    // that too.
    let outcome = run_bench(&bench_args);
    if !args.no_record && markdown.exists() {
        let section = std::fs::read_to_string(&markdown)
            .with_context(|| format!("could not read {}", markdown.display()))?;
        // One section per change, so both can be on record.
        let (name, heading) = if args.change == "upgrade" {
            ("rollout-upgrade", "Rollout: version upgrade")
        } else {
            ("rollout", "Rollout")
        };
        record(name, heading, &section)?;
    }
    eprintln!("every rollout's measurements: {}", json.display());
    outcome
}
