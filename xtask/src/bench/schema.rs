//! `cargo xtask bench schema`: a schema change on a million-row MariaDB 10.11 table under
//! load, made three ways (plain ALTER, pt-online-schema-change, switchyard's rolling change);
//! see `crates/switchyard-bench/src/schema.rs`.

use anyhow::{Context, Result};

use super::{out_dir, record, run_bench};

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
    let dir = out_dir()?;
    let markdown = dir.join("schema.md");
    let json = dir.join("schema.json");
    // A stale section must not be recorded if this run fails before writing its own.
    let _ = std::fs::remove_file(&markdown);
    let mut bench_args = vec![
        "schema".to_owned(),
        "--rows".to_owned(),
        args.rows.to_string(),
        "--methods".to_owned(),
        args.methods.clone(),
        "--log-dir".to_owned(),
        dir.display().to_string(),
        "--markdown".to_owned(),
        markdown.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
        "--command".to_owned(),
        command,
    ];
    for change in &args.changes {
        bench_args.extend(["--change".to_owned(), change.clone()]);
    }
    let outcome = run_bench(&bench_args);
    if !args.no_record && markdown.exists() {
        let section = std::fs::read_to_string(&markdown)
            .with_context(|| format!("could not read {}", markdown.display()))?;
        record("schema", "Schema changes", &section)?;
    }
    eprintln!("the measurements: {}", json.display());
    outcome
}
