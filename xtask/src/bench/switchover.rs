//! `cargo xtask bench switchover`: write unavailability of switchovers under load, against
//! restarting the primary in place (see `crates/switchyard-bench/src/switchover.rs`).

use anyhow::{Context, Result};

use super::{out_dir, record, run_bench};

/// Options of `cargo xtask bench switchover`.
#[derive(clap::Args)]
pub struct Args {
    /// Switchovers per flavor.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Restarts in place per flavor (default: as many as --runs).
    #[arg(long)]
    restarts: Option<usize>,
    /// The servers, comma-separated: mariadb (10.11), mysql (9.7).
    #[arg(long, default_value = "mariadb,mysql")]
    flavors: String,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Runs the benchmark and records its section.
pub fn run(args: &Args) -> Result<()> {
    let mut command = format!("cargo xtask bench switchover --runs {}", args.runs);
    if let Some(restarts) = args.restarts {
        command.push_str(&format!(" --restarts {restarts}"));
    }
    command.push_str(&format!(" --flavors {}", args.flavors));
    let dir = out_dir()?;
    let markdown = dir.join("switchover.md");
    let json = dir.join("switchover.json");
    // A stale section must not be recorded if this run fails before writing its own.
    let _ = std::fs::remove_file(&markdown);
    let mut bench_args = vec![
        "switchover".to_owned(),
        "--runs".to_owned(),
        args.runs.to_string(),
        "--flavors".to_owned(),
        args.flavors.clone(),
        "--markdown".to_owned(),
        markdown.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
        "--command".to_owned(),
        command,
    ];
    if let Some(restarts) = args.restarts {
        bench_args.extend(["--restarts".to_owned(), restarts.to_string()]);
    }
    // The bench exits non-zero when writes were lost, after writing its section: record
    // that too.
    let outcome = run_bench(&bench_args);
    if !args.no_record && markdown.exists() {
        let section = std::fs::read_to_string(&markdown)
            .with_context(|| format!("could not read {}", markdown.display()))?;
        record("switchover", "Switchover", &section)?;
    }
    eprintln!("every run's measurements: {}", json.display());
    outcome
}
