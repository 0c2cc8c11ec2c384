//! `cargo xtask bench switchover`: write unavailability of switchovers under load, against
//! restarting the primary in place (see `crates/switchyard-bench/src/switchover.rs`).

use anyhow::Result;

use super::BenchRun;

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
    let mut bench_args = vec![
        "--runs".to_owned(),
        args.runs.to_string(),
        "--flavors".to_owned(),
        args.flavors.clone(),
    ];
    if let Some(restarts) = args.restarts {
        command.push_str(&format!(" --restarts {restarts}"));
        bench_args.extend(["--restarts".to_owned(), restarts.to_string()]);
    }
    command.push_str(&format!(" --flavors {}", args.flavors));
    BenchRun {
        subcommand: "switchover",
        args: bench_args,
        command,
        stem: "switchover".to_owned(),
        section: (!args.no_record).then_some(("switchover", "Switchover")),
        env: Vec::new(),
    }
    .run()
}
