//! `cargo xtask`: the project's automation, in the style of matklad's cargo-xtask.
//!
//! Every command here is what a developer or CI types; nothing is hidden in shell
//! scripts. `cargo xtask ci` is the whole test suite, `cargo xtask demo` the main job.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod demo_fleet;
mod image;
mod manifests;
mod sim;
mod tests;

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
    /// Only the test phase of `ci`: build every test binary, run them several at a time
    /// (`SWITCHYARD_TEST_JOBS`, default 2; the end-to-end ones one at a time) and the doc tests.
    Test,
    /// The main job on local servers: a 3-instance MariaDB cluster under load, upgraded
    /// 10.5 → 10.11 → 11.8 and reconfigured by the engine; summary and report in target/demo.
    Demo {
        /// Instead: one change rolled over a fleet of 3 small clusters (canary wave, bake,
        /// report in target/demo-fleet).
        #[arg(long)]
        fleet: bool,
    },
    /// Fetch every test server from Debian's archive and build its template data directory.
    Fetch,
    /// Regenerate the committed CRD YAML under crds/ from the Rust types.
    Crds,
    /// Build the operator's container image archive (OCI layout and docker archive in one
    /// tar) and its unpacked root filesystem under target/image, without a container engine.
    Image(image::Args),
    /// Validate deploy/ and crds/ offline against the Kubernetes 1.29 and 1.37 schemas
    /// (kubernetes-validate, installed into target/kubernetes-validate).
    ValidateManifests,
    /// Run a benchmark on real servers (release build) and record it in docs/benchmarks.md.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        what: bench::BenchKind,
    },
    /// Run rollout scenarios with faults and an independent monitor; JSON in target/sim.
    Sim {
        /// A scenario file (repeatable), e.g. e2e/scenarios/primary-kill9-mariadb.yaml.
        #[arg(long)]
        scenario: Vec<PathBuf>,
        /// Run every e2e/scenarios/*.yaml.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Ci => ci(),
        Cmd::Test => tests::run(ci_cargo, &[("PROPTEST_RNG_SEED", PINNED_SEED)]),
        Cmd::Demo { fleet: false } => demo::run(),
        Cmd::Demo { fleet: true } => demo_fleet::run(),
        Cmd::Fetch => fetch(),
        Cmd::Crds => crds(),
        Cmd::Image(args) => image::run_image(args),
        Cmd::ValidateManifests => manifests::run(),
        Cmd::Bench { what } => bench::run(what),
        Cmd::Sim { scenario, all } => sim::run(scenario, all),
    }
}

/// The workspace root, found from this crate's manifest directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, or `target/` in the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// A `cargo` command run from the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    // What `cargo run` set for xtask itself: build scripts that track CARGO_MANIFEST_DIR
    // (ring's) would otherwise rebuild, with everything above them, each time a build
    // alternates between xtask and a shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
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
            print_free_disk();
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

/// A `cargo` command as CI runs it. A from-scratch run builds everything twice (clippy's
/// metadata and the test binaries) beside the test servers; incremental caches would add
/// a third copy of the workspace crates that a one-off run never reuses.
fn ci_cargo() -> Command {
    let mut cmd = cargo();
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    cmd
}

/// The property tests' seed in CI's test phase, so that a failure reproduces.
const PINNED_SEED: &str = "20261122";

fn ci() -> Result<()> {
    let cargo = ci_cargo;
    print_free_disk();
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
    phases.run("validate manifests", manifests::run)?;
    phases.run("fetch test servers", fetch)?;
    phases.run("build tests", || {
        run(cargo().args(["test", "--workspace", "--locked", "--no-run"]))
    })?;
    // Property tests use a fixed seed in CI so a failure reproduces.
    phases.run("tests", || {
        tests::run(cargo, &[("PROPTEST_RNG_SEED", PINNED_SEED)])
    })?;
    show_kube_e2e_log();
    phases.run("property tests, rotating seed", rotating_seed_properties)?;
    phases.run("e2e scenarios", || sim::run(Vec::new(), true))?;
    print_free_disk();
    phases.print();
    Ok(())
}

/// The rollout property test once more with a seed that changes from run to run (the
/// pinned seed above reproduces; this one explores), printing how to replay a failure.
fn rotating_seed_properties() -> Result<()> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let replay = format!(
        "PROPTEST_RNG_SEED={seed} cargo test -p switchyard-plan --test properties -- \
         rollouts_keep_the_invariants_under_faults"
    );
    eprintln!("==> property tests with the rotating seed {seed}; to replay: {replay}");
    let mut cmd = cargo();
    cmd.env("CARGO_INCREMENTAL", "0")
        .env("PROPTEST_RNG_SEED", seed.to_string())
        .args([
            "test",
            "-p",
            "switchyard-plan",
            "--locked",
            "--test",
            "properties",
            "--",
            "rollouts_keep_the_invariants_under_faults",
        ]);
    run(&mut cmd).map_err(|e| anyhow::anyhow!("{e}\nreplay the failure with: {replay}"))
}

/// Prints the space left where the build and the test servers go: a run that
/// fails with "No space left on device" then says how much there was.
fn print_free_disk() {
    let target = target_dir();
    let mut dir = target.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
    let out = Command::new("df").args(["-Pk"]).arg(dir).output();
    let free_kib = out.ok().and_then(|out| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().nth(1)?.to_owned();
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match free_kib {
        Some(kib) => eprintln!(
            "==> disk: {:.1} GiB free on the filesystem of {} (a from-scratch run needs about 6 GiB)",
            kib as f64 / (1024.0 * 1024.0),
            target.display()
        ),
        None => eprintln!(
            "==> disk: could not read the free space of {}",
            dir.display()
        ),
    }
}

/// Prints the logs of the Kubernetes end-to-end tests (`e2e/kube/mariadb.rs`,
/// `e2e/kube/mysql.rs`, `e2e/kube/upgrade.rs`, `e2e/kube/failover.rs`, `e2e/kube/fleet.rs`
/// and `e2e/kube/drain.rs`: the operator's
/// pods run by the simulated kubelet): the order of their
/// steps, their switchovers and their checks. The test harness hides a passing test's output,
/// so the tests also write it to cargo's temporary folder for tests.
fn show_kube_e2e_log() {
    let target = target_dir();
    for name in [
        "kube-e2e-mariadb.log",
        "kube-e2e-mysql.log",
        "kube-e2e-upgrade.log",
        "kube-e2e-failover-mariadb-node-loss.log",
        "kube-e2e-failover-mariadb-partition.log",
        "kube-e2e-failover-mysql-node-loss.log",
        "kube-e2e-fleet.log",
        "kube-e2e-drain-mariadb.log",
    ] {
        let path = target.join("tmp").join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                eprintln!("==> Kubernetes end-to-end test log ({})", path.display());
                eprint!("{text}");
            }
            Err(e) => eprintln!(
                "==> no Kubernetes end-to-end test log at {}: {e}",
                path.display()
            ),
        }
    }
}

/// Fetches every server the tests use, and the operator image's base and skopeo for the
/// image test, so the test phase's timings are the tests'.
fn fetch() -> Result<()> {
    use switchyard_testbed::{ServerKind, binaries, template};
    let start = Instant::now();
    let base = switchyard_image::base::packages().context("fetching the image base")?;
    let skopeo = switchyard_image::skopeo().context("fetching skopeo")?;
    eprintln!(
        "    image base ({} packages) and skopeo {} ready in {:.1}s",
        base.packages().len(),
        skopeo.version(),
        start.elapsed().as_secs_f64()
    );
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

/// Writes `crds/*.yaml` from `switchyard_kube::crd::crd_files()`; the test
/// `crds_are_current` in switchyard-kube fails when the committed files differ.
fn crds() -> Result<()> {
    let dir = project_root().join("crds");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    for (name, yaml) in switchyard_kube::crd::crd_files() {
        let path = dir.join(&name);
        std::fs::write(&path, yaml)
            .with_context(|| format!("could not write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
