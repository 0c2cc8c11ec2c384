//! `cargo xtask`: the project's automation, in the style of matklad's cargo-xtask.
//!
//! Every command here is what a developer or CI types; nothing is hidden in shell
//! scripts. `cargo xtask ci` is the whole test suite, `cargo xtask demo` the main job.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "switchyard project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run everything CI runs: rustfmt --check, clippy -D warnings, all tests.
    Ci,
    /// Run the main job on a local default (see README).
    Demo,
    /// Fetch every test server from Debian's archive and build its template data directory.
    Fetch,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Ci => ci(),
        Cmd::Demo => demo(),
        Cmd::Fetch => fetch(),
    }
}

/// The workspace root, found from this crate's manifest directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A `cargo` command run from the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Times the phases of a long command and prints them as a table at the end.
struct Phases {
    done: Vec<(&'static str, Duration)>,
    started: Instant,
}

impl Phases {
    fn new() -> Self {
        Self {
            done: Vec::new(),
            started: Instant::now(),
        }
    }

    fn run(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("==> {name}");
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        self.done.push((name, took));
        eprintln!(
            "==> {name}: {} in {:.1}s",
            if result.is_ok() { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        if result.is_err() {
            self.print();
        }
        result.with_context(|| format!("phase `{name}` failed"))
    }

    fn print(&self) {
        eprintln!("\nphase timings:");
        for (name, took) in &self.done {
            eprintln!("  {name:<28} {:>8.1}s", took.as_secs_f64());
        }
        eprintln!(
            "  {:<28} {:>8.1}s",
            "total",
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn ci() -> Result<()> {
    let mut phases = Phases::new();
    phases.run("rustfmt --check", || {
        run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    phases.run("clippy -D warnings", || {
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    phases.run("fetch test servers", fetch)?;
    phases.run("build tests", || {
        run(cargo().args(["test", "--workspace", "--locked", "--no-run"]))
    })?;
    phases.run("tests", || {
        run(cargo()
            .args(["test", "--workspace", "--locked"])
            // Property tests use a fixed seed in CI so a failure reproduces.
            .env("PROPTEST_RNG_SEED", "20261122"))
    })?;
    phases.print();
    Ok(())
}

fn demo() -> Result<()> {
    // Until the local runtime lands, the demo shows the planner on a bundled cluster.
    let topology = project_root().join("docs/examples/mariadb-3.yaml");
    run(cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "switchyard",
            "--",
            "plan",
            "--topology",
        ])
        .arg(&topology)
        .args(["--to-version", "10.11.9"]))
}

/// Fetches every server the tests use, so the test phase's timings are the tests'.
fn fetch() -> Result<()> {
    use switchyard_testbed::{ServerKind, binaries, template};
    for kind in ServerKind::ALL {
        let start = Instant::now();
        let bins = binaries(kind).with_context(|| format!("fetching {kind:?}"))?;
        template::template(&bins)
            .with_context(|| format!("initializing a data directory for {kind:?}"))?;
        eprintln!(
            "    {kind:?}: {} ready in {:.1}s",
            bins.full_version(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
