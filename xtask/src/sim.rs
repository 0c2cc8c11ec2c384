//! `cargo xtask sim`: runs scenario files (`e2e/scenarios/*.yaml`) with
//! `switchyard-sim`, prints each verdict and wall time, writes
//! `target/sim/NAME.json`, and fails if any scenario did not pass.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use switchyard_sim::runner;
use switchyard_sim::scenario::Scenario;

use crate::project_root;

/// Every scenario file under `e2e/scenarios`, sorted.
pub fn all_scenarios() -> Result<Vec<PathBuf>> {
    let dir = project_root().join("e2e/scenarios");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    Ok(out)
}

/// Runs `scenarios` (or every scenario with `all`) one after another.
pub fn run(scenarios: Vec<PathBuf>, all: bool) -> Result<()> {
    let paths = if all { all_scenarios()? } else { scenarios };
    if paths.is_empty() {
        bail!("no scenario given: pass --scenario e2e/scenarios/NAME.yaml (repeatable) or --all");
    }
    // Read every file first: a typo fails before any server starts.
    let root = project_root();
    let parsed = paths
        .iter()
        .map(|p| {
            let p = if p.is_absolute() {
                p.clone()
            } else {
                root.join(p)
            };
            Scenario::from_file(&p).map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let out = root.join("target/sim");
    let mut failed = Vec::new();
    let mut lines = Vec::new();
    for s in &parsed {
        eprintln!("==> scenario {}: {}", s.name, s.about.trim());
        let started = Instant::now();
        let result = runtime.block_on(runner::run(s));
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(report) => {
                let file = report.write_json(&out)?;
                let verdict = if report.passed { "PASS" } else { "FAIL" };
                eprintln!(
                    "    {verdict} {}: {} (expected {}), {} violations, {} writes acknowledged \
                     ({} by direct writers), {} lost, {} overlapping across servers, \
                     max write gap {} ms (bound {:?}), {} switchovers, {} engines, \
                     {} monitor samples (longest interval {} ms); {took:.1}s; {}",
                    s.name,
                    report.outcome,
                    report.expected,
                    report.violations.len(),
                    report.writes_acknowledged,
                    report.direct_writes,
                    report.writes_lost,
                    report.split_brain.0,
                    report.max_write_gap_ms,
                    report.max_write_gap_bound_ms,
                    report.switchovers,
                    report.engines,
                    report.samples,
                    report.max_sample_interval_ms,
                    display(&file),
                );
                for f in &report.faults {
                    eprintln!("      fault: {f}");
                }
                for f in &report.failovers {
                    eprintln!(
                        "      failover {} -> {}: {} ms from the first failed check to the \
                         promotion ({} ms from the decision), lossless: {}, old primary: {}",
                        f.from,
                        f.to,
                        f.detection_to_promotion_ms,
                        f.decision_to_promotion_ms,
                        f.lossless,
                        f.old_primary
                    );
                }
                for v in &report.violations {
                    eprintln!(
                        "      violation {} at {} ms: {}",
                        v.check, v.at_ms, v.detail
                    );
                }
                if let Some((_, reason)) = &report.halt {
                    eprintln!("      halt: {reason}");
                }
                if !report.passed {
                    // CI keeps only what was printed: the run's record with it.
                    eprintln!("      timeline of the failed run:");
                    for line in &report.timeline {
                        eprintln!("        {line}");
                    }
                    failed.push(s.name.clone());
                }
                lines.push(format!("  {:<40} {verdict} {took:>7.1}s", s.name));
            }
            Err(e) => {
                eprintln!("    FAIL {}: {e:#}; {took:.1}s", s.name);
                failed.push(s.name.clone());
                lines.push(format!("  {:<40} FAIL {took:>7.1}s", s.name));
            }
        }
    }
    eprintln!("\nscenario wall times:\n{}", lines.join("\n"));
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.strip_prefix(project_root())
        .unwrap_or(p)
        .display()
        .to_string()
}
