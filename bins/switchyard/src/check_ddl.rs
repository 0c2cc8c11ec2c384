//! `switchyard check-ddl`: is an ALTER TABLE safe to roll node by node under row-based
//! replication?
//!
//! Exit 0 when it is safe as is, 3 when it is safe only with the replica type-conversion
//! setting printed, 2 when it is unsafe (the rule and reason are printed), 64 for invalid
//! input (an unreadable table file, an unknown flavor or format, anything but one ALTER TABLE
//! of the defined table), 1 for an internal error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use switchyard_ddl::{Analysis, AnalyzeOptions, ClauseVerdict, PrimaryMode, Verdict, analyze_with};
use switchyard_plan::versions::{Flavor, Version};

use crate::exit::{self, Exit};

/// Arguments of `switchyard check-ddl`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server product: mysql or mariadb.
    #[arg(long, value_name = "mysql|mariadb")]
    pub flavor: String,
    /// A file holding the table's current definition, as SHOW CREATE TABLE prints it.
    #[arg(long, value_name = "FILE.sql")]
    pub table: PathBuf,
    /// Exactly one ALTER TABLE statement for that table.
    #[arg(long, value_name = "ALTER TABLE ...")]
    pub alter: String,
    /// Output format: text or json.
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub format: String,
    /// Require safety in both directions (Galera Rolling Schema Upgrade, where every node may
    /// take writes).
    #[arg(long)]
    pub both_directions: bool,
    /// The servers' version (8.4.3, 10.11.19-MariaDB), to name the algorithm and variable precisely.
    #[arg(long, value_name = "VERSION")]
    pub server_version: Option<String>,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// The JSON answer, one object on one line.
#[derive(Serialize)]
struct Answer<'a> {
    verdict: Verdict,
    reasons: &'a [String],
    settings: &'a BTreeMap<String, String>,
    primary: PrimaryMode,
    clauses: &'a [ClauseVerdict],
}

/// Runs `switchyard check-ddl`.
pub fn run(args: Args) -> Exit {
    let format = match args.format.trim().to_ascii_lowercase().as_str() {
        "text" => Format::Text,
        "json" => Format::Json,
        _ => {
            return exit::invalid(format!(
                "unknown --format '{}': expected text or json",
                args.format
            ));
        }
    };
    let flavor: Flavor = match args.flavor.parse() {
        Ok(flavor) => flavor,
        Err(err) => return exit::invalid(format!("--flavor: {err}")),
    };
    let mut options = if args.both_directions {
        AnalyzeOptions::bidirectional()
    } else {
        AnalyzeOptions::default()
    };
    if let Some(text) = &args.server_version {
        match Version::parse(text) {
            Ok(version) => options = options.with_server_version(version),
            Err(err) => return exit::invalid(format!("--server-version: {err}")),
        }
    }
    let definition = match std::fs::read_to_string(&args.table) {
        Ok(text) => text,
        Err(err) => {
            return exit::invalid(format!(
                "--table: cannot read {}: {err}; give a file holding the output of SHOW CREATE TABLE",
                args.table.display()
            ));
        }
    };
    let analysis = match analyze_with(flavor, &definition, &args.alter, &options) {
        Ok(analysis) => analysis,
        Err(err) => return exit::invalid(err),
    };
    match format {
        Format::Text => print_text(&analysis),
        Format::Json => {
            let answer = Answer {
                verdict: analysis.verdict,
                reasons: &analysis.reasons,
                settings: &analysis.settings,
                primary: analysis.primary,
                clauses: &analysis.clauses,
            };
            match serde_json::to_string(&answer) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("error: cannot write the answer as JSON: {err}");
                    return Exit::Internal;
                }
            }
        }
    }
    match analysis.verdict {
        Verdict::Safe => Exit::Ok,
        Verdict::SafeWithConversion => Exit::Conditional,
        Verdict::Unsafe => Exit::Refused,
    }
}

fn print_text(analysis: &Analysis) {
    println!(
        "{}: rolling the change replica-first is {}",
        analysis.verdict,
        match analysis.verdict {
            Verdict::Safe => "correct as is",
            Verdict::SafeWithConversion => "correct only with the setting below on every replica",
            Verdict::Unsafe => "not correct",
        }
    );
    for (variable, value) in &analysis.settings {
        println!("setting: {variable}='{value}'");
    }
    println!(
        "primary: {}",
        match analysis.primary {
            PrimaryMode::Online => "online (in place, writes continue)",
            PrimaryMode::Switchover => "switchover (switch to an altered replica first)",
        }
    );
    for clause in &analysis.clauses {
        println!(
            "[{}] {}: {} ({}); primary {} ({})",
            clause.verdict,
            clause.clause,
            clause.reason,
            clause.rule,
            clause.primary,
            clause.algorithm
        );
    }
    if analysis.verdict != Verdict::Safe {
        for reason in &analysis.reasons {
            println!("reason: {reason}");
        }
    }
}
