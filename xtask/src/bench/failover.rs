//! `cargo xtask bench failover`: automatic failover under load, the primary killed, frozen or
//! cut off the network, on MariaDB and MySQL, and the write-latency cost of semi-synchronous
//! replication (see `crates/switchyard-bench/src/failover.rs`).

use anyhow::{Context, Result};

use super::{out_dir, record, run_bench};

/// Options of `cargo xtask bench failover`.
#[derive(clap::Args)]
pub struct Args {
    /// Trials per fault and flavor.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// The servers, comma-separated (mariadb, mysql).
    #[arg(long, default_value = "mariadb,mysql")]
    flavors: String,
    /// The faults, comma-separated (kill9, freeze, partition).
    #[arg(long, default_value = "kill9,freeze,partition")]
    faults: String,
    /// The failover policy's detection window, seconds (default: the policy's).
    #[arg(long)]
    detect_after_s: Option<u64>,
    /// The replicas' network timeout, seconds (default: the local cluster's).
    #[arg(long)]
    net_timeout_s: Option<u32>,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Runs the benchmark and records its section.
pub fn run(args: &Args) -> Result<()> {
    let mut command = format!(
        "cargo xtask bench failover --trials {} --flavors {} --faults {}",
        args.trials, args.flavors, args.faults
    );
    let mut extra = Vec::new();
    if let Some(d) = args.detect_after_s {
        command.push_str(&format!(" --detect-after-s {d}"));
        extra.extend(["--detect-after-s".to_owned(), d.to_string()]);
    }
    if let Some(n) = args.net_timeout_s {
        command.push_str(&format!(" --net-timeout-s {n}"));
        extra.extend(["--net-timeout-s".to_owned(), n.to_string()]);
    }
    let dir = out_dir()?;
    let markdown = dir.join("failover.md");
    let json = dir.join("failover.json");
    // A stale section must not be recorded if this run fails before writing its own.
    let _ = std::fs::remove_file(&markdown);
    let mut bench_args = vec![
        "failover".to_owned(),
        "--trials".to_owned(),
        args.trials.to_string(),
        "--flavors".to_owned(),
        args.flavors.clone(),
        "--faults".to_owned(),
        args.faults.clone(),
        "--markdown".to_owned(),
        markdown.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
        "--command".to_owned(),
        command,
    ];
    bench_args.extend(extra);
    // The bench exits non-zero when writes were lost, after writing its section: record
    // that too.
    let outcome = run_bench(&bench_args);
    if !args.no_record && markdown.exists() {
        let section = std::fs::read_to_string(&markdown)
            .with_context(|| format!("could not read {}", markdown.display()))?;
        record("failover", "Failover", &section)?;
    }
    eprintln!("every trial's measurements: {}", json.display());
    outcome
}
