//! `cargo xtask bench failover`: automatic failover under load, the primary killed, frozen or
//! cut off the network, on MariaDB and MySQL, and the write-latency cost of semi-synchronous
//! replication (see `crates/switchyard-bench/src/failover.rs`).

use anyhow::Result;

use super::BenchRun;

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
    let mut bench_args = vec![
        "--trials".to_owned(),
        args.trials.to_string(),
        "--flavors".to_owned(),
        args.flavors.clone(),
        "--faults".to_owned(),
        args.faults.clone(),
    ];
    if let Some(d) = args.detect_after_s {
        command.push_str(&format!(" --detect-after-s {d}"));
        bench_args.extend(["--detect-after-s".to_owned(), d.to_string()]);
    }
    if let Some(n) = args.net_timeout_s {
        command.push_str(&format!(" --net-timeout-s {n}"));
        bench_args.extend(["--net-timeout-s".to_owned(), n.to_string()]);
    }
    BenchRun {
        subcommand: "failover",
        args: bench_args,
        command,
        stem: "failover".to_owned(),
        section: (!args.no_record).then_some(("failover", "Failover")),
        env: Vec::new(),
    }
    .run()
}
