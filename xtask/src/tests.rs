//! The test phase of `cargo xtask ci`: every test binary of the workspace, several at once.
//!
//! `cargo test --workspace` runs its test binaries one after another, and most of their
//! time is spent waiting on real servers (starting them, replication, failover windows),
//! not on the CPU. Here cargo builds them once and lists them (`--no-run
//! --message-format=json`), and a small pool runs `jobs` of them at a time, each as cargo
//! would (from its package's directory, with `CARGO_MANIFEST_DIR` set). The end-to-end tests
//! under `e2e/` run one at a time, in a lane of their own: one worker takes them first, the
//! others the rest, so an end-to-end binary never shares the machine with another one,
//! only with one other binary while `jobs` is 2. The testbed's
//! server slots are lock files shared by every process, so the binaries together still
//! start at most `SWITCHYARD_TESTBED_MAX_SERVERS` servers. The doc tests run as one more
//! job. A binary's output is printed in one piece when it ends (a failure's in full, a
//! pass's summary lines), and every binary runs even after one failed, so a red run names
//! every failing binary.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The environment variable that sets how many test binaries run at once.
pub const JOBS_ENV: &str = "SWITCHYARD_TEST_JOBS";

/// Test binaries at once when [`JOBS_ENV`] is unset.
const DEFAULT_JOBS: usize = 2;

/// One thing to run: a test binary, or the doc tests.
struct Job {
    /// What the report calls it (the target's source path, or "doc tests").
    name: String,
    /// The command, ready to spawn.
    command: Command,
}

/// How one job ended.
struct Ran {
    name: String,
    took: Duration,
    output: std::io::Result<Output>,
}

impl Ran {
    fn passed(&self) -> bool {
        self.output.as_ref().is_ok_and(|o| o.status.success())
    }
}

/// Builds every test binary (already built by the phase before: this only lists them),
/// then runs them and the doc tests `jobs` at a time; fails naming every failing one.
/// `envs` are set for every job (the pinned property seed).
pub fn run(cargo: impl Fn() -> Command, envs: &[(&str, &str)]) -> Result<()> {
    let jobs = jobs()?;
    let mut queue = binaries(&cargo)?;
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--locked", "--doc"]);
    queue.push(Job {
        name: "doc tests".into(),
        command: doc,
    });
    for job in &mut queue {
        job.command.envs(envs.iter().copied());
    }
    let total = queue.len();
    // The end-to-end tests under e2e/ (the operator's pods on the simulated kubelet) run one
    // at a time: the first worker takes them before anything else.
    let (lane, mut shared): (Vec<Job>, Vec<Job>) =
        queue.into_iter().partition(|j| j.name.starts_with("e2e/"));
    // The rest, longest first as far as the path tells: integration tests (real servers)
    // before unit tests, the command-line tests under bins/ (whole local clusters) first of
    // all, so that no long binary starts last and runs alone at the end.
    shared.sort_by_key(|j| (!j.name.starts_with("bins/"), !j.name.contains("/tests/")));
    eprintln!(
        "==> {total} test jobs (test binaries and the doc tests), {jobs} at a time \
         ({JOBS_ENV}); the {} end-to-end ones one at a time, first",
        lane.len()
    );
    let finished = Mutex::new(Vec::<Ran>::new());
    run_pool(lane, shared, jobs, total, &finished);
    let finished = finished.into_inner().expect("the finished jobs");
    let failed: Vec<&str> = finished
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .collect();
    let serial: Duration = finished.iter().map(|r| r.took).sum();
    eprintln!(
        "==> test jobs: {} passed, {} failed; {:.1}s of test time",
        total - failed.len(),
        failed.len(),
        serial.as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("failing test jobs: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs the jobs with `workers` threads, reporting each as it ends and adding it to
/// `finished`. The first worker takes the `lane` jobs, one after another, before any
/// `shared` one; the others take only `shared` jobs.
fn run_pool(
    lane: Vec<Job>,
    shared: Vec<Job>,
    workers: usize,
    total: usize,
    finished: &Mutex<Vec<Ran>>,
) {
    let lane = Mutex::new(VecDeque::from(lane));
    let shared = Mutex::new(VecDeque::from(shared));
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (lane, shared) = (&lane, &shared);
            scope.spawn(move || {
                loop {
                    let from_lane = if worker == 0 {
                        lane.lock().expect("the lane's queue").pop_front()
                    } else {
                        None
                    };
                    let next =
                        from_lane.or_else(|| shared.lock().expect("the job queue").pop_front());
                    let Some(mut job) = next else { break };
                    let start = Instant::now();
                    let output = job.command.stdin(Stdio::null()).output();
                    let ran = Ran {
                        name: job.name,
                        took: start.elapsed(),
                        output,
                    };
                    let mut finished = finished.lock().expect("the finished jobs");
                    report(&ran, finished.len() + 1, total);
                    finished.push(ran);
                }
            });
        }
    });
}

/// [`JOBS_ENV`], or [`DEFAULT_JOBS`].
fn jobs() -> Result<usize> {
    match std::env::var(JOBS_ENV) {
        Err(_) => Ok(DEFAULT_JOBS),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!(
                "{JOBS_ENV}={text:?} is not a number of test binaries at once: set it to 1 or more, or unset it"
            ),
        },
    }
}

/// The workspace's test binaries, as cargo lists them after building them.
fn binaries(cargo: &impl Fn() -> Command) -> Result<Vec<Job>> {
    let out = cargo()
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo to list the test binaries")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed with {}", out.status);
    }
    let mut jobs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let manifest = message["manifest_path"]
            .as_str()
            .context("cargo listed a test binary without its manifest path")?;
        let package_dir = Path::new(manifest)
            .parent()
            .context("a manifest path without a directory")?;
        let source = message["target"]["src_path"].as_str().unwrap_or(executable);
        // `bins/switchyard/../../e2e/kube/mysql.rs` reads as `e2e/kube/mysql.rs`.
        let source = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
        let name = source
            .strip_prefix(crate::project_root())
            .map_or_else(|_| source.clone(), Path::to_path_buf)
            .display()
            .to_string();
        let mut command = Command::new(executable);
        command
            .current_dir(package_dir)
            .env("CARGO_MANIFEST_DIR", package_dir);
        jobs.push(Job { name, command });
    }
    if jobs.is_empty() {
        bail!("cargo listed no test binary: nothing would be tested");
    }
    Ok(jobs)
}

/// Prints how a job ended: its result and the harness's summary lines, or everything it
/// wrote when it failed.
fn report(ran: &Ran, done: usize, total: usize) {
    let verdict = if ran.passed() { "ok" } else { "FAILED" };
    eprintln!(
        "==> [{done}/{total}] {}: {verdict} in {:.1}s",
        ran.name,
        ran.took.as_secs_f64()
    );
    match &ran.output {
        Err(e) => eprintln!("    could not run it: {e}"),
        Ok(output) if ran.passed() => {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if line.starts_with("test result:") {
                    eprintln!("    {line}");
                }
            }
        }
        Ok(output) => {
            eprintln!("    {}", output.status);
            eprint!("{}", String::from_utf8_lossy(&output.stdout));
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
        }
    }
}
