//! `cargo xtask bench schema`: a schema change on a million-row MariaDB 10.11 table under
//! load, made three ways (plain ALTER, pt-online-schema-change, switchyard's rolling change);
//! see `crates/switchyard-bench/src/schema.rs`.

use anyhow::Result;

use super::{BenchRun, out_dir};

/// Options of `cargo xtask bench schema`.
#[derive(clap::Args)]
pub struct Args {
    /// Rows in the table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// A change, as it follows `ALTER TABLE app.bench_orders` (repeat for several; default:
    /// the benchmark's, `ADD INDEX at_us (at_us)`).
    #[arg(long = "change")]
    changes: Vec<String>,
    /// The methods, comma-separated: plain, pt-osc, rolling.
    #[arg(long, default_value = "plain,pt-osc,rolling")]
    methods: String,
    /// Print the table without rewriting docs/benchmarks.md.
    #[arg(long)]
    no_record: bool,
}

/// Runs the benchmark and records its section.
pub fn run(args: &Args) -> Result<()> {
    let mut command = format!("cargo xtask bench schema --rows {}", args.rows);
    for change in &args.changes {
        command.push_str(&format!(" --change '{change}'"));
    }
    command.push_str(&format!(" --methods {}", args.methods));
    let mut bench_args = vec![
        "--rows".to_owned(),
        args.rows.to_string(),
        "--methods".to_owned(),
        args.methods.clone(),
        "--log-dir".to_owned(),
        out_dir()?.display().to_string(),
    ];
    for change in &args.changes {
        bench_args.extend(["--change".to_owned(), change.clone()]);
    }
    BenchRun {
        subcommand: "schema",
        args: bench_args,
        command,
        stem: "schema".to_owned(),
        section: (!args.no_record).then_some(("schema", "Schema changes")),
        env: Vec::new(),
    }
    .run()
}
