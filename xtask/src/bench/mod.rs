//! `cargo xtask bench <what>`: benchmarks on real servers, recorded in `docs/benchmarks.md`.
//!
//! Each benchmark is a subcommand of the `switchyard-bench` binary (crate
//! `crates/switchyard-bench`), built and run here in release mode: debug builds of the SQL and
//! TLS client stack connect several times slower, and a benchmark of write unavailability would
//! measure that. The binary prints its section (command, date, machine, load average, tables);
//! this module rewrites that section of `docs/benchmarks.md`, between the markers
//! `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`, leaving everything else in the
//! file (the notes written by hand under each section) as it is.
//!
//! To add a benchmark: a variant of [`BenchKind`], a module here that runs it as a
//! [`BenchRun`], and a subcommand of `switchyard-bench`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::{cargo, project_root};

mod failover;
mod fleet;
mod operator;
mod provision;
mod rollout;
mod schema;
mod switchover;

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchKind {
    /// Write unavailability of switchovers under load (MariaDB 10.11 and MySQL 9.7, 3
    /// instances, 200 writes/s through the router), against restarting the primary in place.
    Switchover(switchover::Args),
    /// A schema change on a million-row MariaDB 10.11 table under load: a plain ALTER,
    /// pt-online-schema-change and switchyard's rolling change (total time, lag on serving
    /// replicas, write latency and failures).
    Schema(schema::Args),
    /// A whole rolling change of a MariaDB cluster (3 and 5 instances) under load by the
    /// engine, against the StatefulSet order: overhead per step and write unavailability.
    Rollout(rollout::Args),
    /// Provisioning a replica of a 1 GB donor by the agent's copy (MySQL clone, MariaDB
    /// mariadb-backup) against replaying the binary log, and the agents' memory.
    Provision(provision::Args),
    /// Automatic failover under load (MariaDB 10.11 and MySQL 9.7, the primary killed,
    /// frozen or cut off the network, 20 trials each): write unavailability p50/p99, lost
    /// writes, and the write latency of semi-synchronous against asynchronous replication.
    Failover(failover::Args),
    /// A fleet rollout under load: a static configuration change rolled by the fleet planner
    /// over 8 MariaDB 10.11 clusters of 3, with 1, 2 and 4 clusters at once (wall time, the
    /// fleet's overhead per cluster, write gaps, lost writes).
    Fleet(fleet::Args),
    /// The operator's memory (VmRSS, VmHWM), idle and during a rolling configuration change:
    /// the release binary against the fake API over HTTP, the simulated kubelet running its
    /// pods on real MariaDB 10.11 servers.
    Operator(operator::Args),
}

/// Runs a benchmark.
pub fn run(what: BenchKind) -> Result<()> {
    match what {
        BenchKind::Switchover(args) => switchover::run(&args),
        BenchKind::Rollout(args) => rollout::run(&args),
        BenchKind::Schema(args) => schema::run(&args),
        BenchKind::Provision(args) => provision::run(&args),
        BenchKind::Failover(args) => failover::run(&args),
        BenchKind::Fleet(args) => fleet::run(&args),
        BenchKind::Operator(args) => operator::run(&args),
    }
}

/// The file the benchmarks are recorded in, relative to the workspace root.
const DOC: &str = "docs/benchmarks.md";

/// The start of `docs/benchmarks.md` when it does not exist yet.
const INTRO: &str = "# Benchmarks

switchyard's performance targets live here, not in the test suite: each benchmark is a
command that runs real servers from Debian's archive on this machine, prints a table, and
rewrites its own section of this file (between the `bench:` markers; the notes after each
section are written by hand). Every section says how to reproduce it, when and on what
machine it was measured, and how busy that machine was: the figures are wall-clock times on
a small shared machine, so compare them with their load average in mind.

The benchmarks are built in release mode by `cargo xtask bench <what>` (the first build takes
a few minutes) and are not part of CI.
";

/// One run of a `switchyard-bench` subcommand whose section goes into `docs/benchmarks.md`.
struct BenchRun<'a> {
    /// The subcommand.
    subcommand: &'a str,
    /// Its own arguments (the outputs and the command are added).
    args: Vec<String>,
    /// The command line that reproduces the measurement, as the section shows it.
    command: String,
    /// The outputs' name in `target/bench` (`STEM.md`, `STEM.json`).
    stem: String,
    /// The section to record it as (its marker name and its heading); `None` prints it only.
    section: Option<(&'static str, &'static str)>,
    /// Environment for the benchmark's process.
    env: Vec<(&'static str, String)>,
}

impl BenchRun<'_> {
    /// Builds and runs the benchmark in release mode, writing its markdown section and JSON
    /// measurements into `target/bench`, then records the section. A benchmark that fails
    /// after writing its section (it exits non-zero when writes were lost) is recorded too,
    /// and its failure returned; a section left by an earlier run is never recorded.
    fn run(self) -> Result<()> {
        let dir = out_dir()?;
        let markdown = dir.join(format!("{}.md", self.stem));
        let json = dir.join(format!("{}.json", self.stem));
        let _ = std::fs::remove_file(&markdown);
        let mut args = vec![self.subcommand.to_owned()];
        args.extend(self.args);
        args.extend([
            "--markdown".to_owned(),
            markdown.display().to_string(),
            "--json".to_owned(),
            json.display().to_string(),
            "--command".to_owned(),
            self.command,
        ]);
        let mut cmd = cargo();
        cmd.args(["run", "--release", "-p", "switchyard-bench", "--"])
            .args(&args)
            .envs(self.env);
        let outcome = crate::run(&mut cmd);
        if let Some((name, heading)) = self.section
            && markdown.exists()
        {
            let section = std::fs::read_to_string(&markdown)
                .with_context(|| format!("could not read {}", markdown.display()))?;
            record(name, heading, &section)?;
        }
        eprintln!("the measurements: {}", json.display());
        outcome
    }
}

/// Where the benchmarks write their raw outputs: `target/bench` (created).
fn out_dir() -> Result<PathBuf> {
    let dir = crate::target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}

/// Rewrites section `name` (headed `heading` when it is new) of `docs/benchmarks.md` with
/// `body`.
fn record(name: &str, heading: &str, body: &str) -> Result<()> {
    let path = project_root().join(DOC);
    let doc = match std::fs::read_to_string(&path) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => INTRO.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    std::fs::write(&path, splice(&doc, name, heading, body))
        .with_context(|| format!("could not write {}", path.display()))?;
    eprintln!("recorded in {}", path.display());
    Ok(())
}

/// `doc` with the text between the markers of section `name` replaced by `body`; a section
/// that is not there yet is appended under `## heading`.
fn splice(doc: &str, name: &str, heading: &str, body: &str) -> String {
    let begin = format!("<!-- bench:{name}:begin -->\n");
    let end = format!("<!-- bench:{name}:end -->");
    let body = if body.ends_with('\n') {
        body.to_owned()
    } else {
        format!("{body}\n")
    };
    if let Some(b) = doc.find(&begin)
        && let Some(e) = doc[b..].find(&end).map(|e| b + e)
    {
        return format!("{}{begin}{body}{}", &doc[..b], &doc[e..]);
    }
    let mut out = doc.trim_end().to_owned();
    out.push_str(&format!("\n\n## {heading}\n\n{begin}{body}{end}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_section_is_appended_and_then_replaced_in_place() {
        let doc = splice(INTRO, "switchover", "Switchover", "| table 1 |\n");
        assert!(doc.starts_with("# Benchmarks"));
        assert!(doc.ends_with(
            "## Switchover\n\n<!-- bench:switchover:begin -->\n| table 1 |\n<!-- bench:switchover:end -->\n"
        ));

        // Notes written after the section and other sections survive a rewrite.
        let doc = format!("{doc}\nNotes by hand.\n");
        let doc = splice(&doc, "rollout", "Rollout", "rollout table");
        let doc = splice(&doc, "switchover", "Switchover", "| table 2 |");
        assert!(!doc.contains("table 1"));
        assert!(doc.contains("<!-- bench:switchover:begin -->\n| table 2 |\n<!-- bench:switchover:end -->\n\nNotes by hand."));
        assert!(
            doc.contains("<!-- bench:rollout:begin -->\nrollout table\n<!-- bench:rollout:end -->")
        );
        assert_eq!(doc.matches("## Switchover").count(), 1);
    }
}
