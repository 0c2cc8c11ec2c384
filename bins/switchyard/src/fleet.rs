//! `switchyard fleet apply|resume|abort|status`: one configuration change rolled over several
//! local clusters in waves (canary first, at most N at once, a bake between waves), stopped
//! fleet-wide on a halt or a failed bake.
//!
//! The fleet lives in a folder (`--dir`) that holds its fleet file: the spec, the clusters
//! (each by its state folder), the change and the planner's durable record with the fleet's
//! numbered revisions ([`switchyard_local::fleet`]). These commands are the fleet's driver:
//! they decide with [`switchyard_plan::fleet::decide_fleet`], store each step before acting,
//! and give a cluster the change by writing it into the cluster's state file, where the
//! process that runs the cluster ([`switchyard_local::fleet::FleetMember`]) takes it, rolls it
//! with the engine and publishes the cluster's rollout and health. A driver that is killed is
//! replaced by `switchyard fleet resume` (or the same `apply` again), which continues from the
//! record: nothing is started twice, nothing skipped.
//!
//! Exit codes: 0 the fleet is done (or, for `abort`, aborted); 2 the fleet stopped (the
//! cluster and the reason are printed) or the command was refused; 64 invalid input (nothing
//! written); 1 internal error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard_local::fleet::{ConfigChange, FleetDoc, FleetDriver, FleetFile};
use switchyard_local::state::StateFile;
use switchyard_plan::fleet::{
    ClusterState, FleetAction, FleetCommand, FleetError, FleetRecord, FleetSpec, FleetState,
    FleetWait,
};
use switchyard_plan::topology::Timestamp;

use crate::exit::{self, Exit};

/// Arguments of `switchyard fleet`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Roll a configuration change over the listed clusters in waves, and drive it until it
    /// is done or stops (a rerun with the same arguments continues an unfinished one).
    Apply(ApplyArgs),
    /// Continue a stopped fleet (once the stopped cluster is healthy again, or skipping it),
    /// or a running one whose driver was stopped or killed.
    Resume(ResumeArgs),
    /// Stop the fleet for good, leaving every cluster as it is; prints which clusters ran
    /// the change and which were never touched.
    Abort(DirArgs),
    /// Print the fleet's state: its revision, waves, each cluster's state and health.
    Status(DirArgs),
}

/// The fleet's folder and how often to decide.
#[derive(clap::Args, Debug)]
struct DirArgs {
    /// The fleet's folder (it holds fleet.json; created by `apply`).
    #[arg(long)]
    dir: PathBuf,
    /// How often the driver observes the clusters and decides, milliseconds.
    #[arg(long, default_value_t = 500)]
    tick_ms: u64,
}

#[derive(clap::Args, Debug)]
struct ApplyArgs {
    #[command(flatten)]
    fleet: DirArgs,
    /// A cluster of the fleet as NAME=STATE_DIR (its state folder holds
    /// switchyard-state.json), in the order they are rolled; repeat for each cluster.
    #[arg(long = "cluster", value_name = "NAME=STATE_DIR", required = true)]
    clusters: Vec<String>,
    /// A server variable to set on every instance, as NAME=VALUE; repeat for each variable.
    #[arg(long = "set", value_name = "NAME=VALUE", required = true)]
    set: Vec<String>,
    /// Apply by rolling restart (the primary last, behind a switchover) instead of online.
    #[arg(long)]
    restart: bool,
    /// How many clusters the canary wave holds.
    #[arg(long, default_value_t = 1)]
    canary: usize,
    /// The most clusters changing at once (waves double after the canary up to this).
    #[arg(long, default_value_t = 1)]
    max_at_once: usize,
    /// How long each changed cluster must stay healthy before the next wave, seconds.
    #[arg(long, default_value_t = 300)]
    bake_s: u64,
    /// A replica lagging more than this many seconds fails the bake.
    #[arg(long, default_value_t = switchyard_plan::fleet::DEFAULT_MAX_LAG_SECONDS)]
    max_lag_s: u64,
    /// A query that must keep answering during the bake, run as the application account
    /// through each changed cluster's primary endpoint.
    #[arg(long)]
    check_query: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ResumeArgs {
    #[command(flatten)]
    fleet: DirArgs,
    /// Skip the cluster the fleet stopped on: it is never started or waited for again.
    #[arg(long)]
    skip: Option<String>,
}

/// Milliseconds since the Unix epoch, as the local runtime's clock counts.
fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// Runs `switchyard fleet`.
pub fn run(args: Args) -> Exit {
    match args.command {
        Sub::Apply(a) => apply(a),
        Sub::Resume(a) => resume(a),
        Sub::Abort(a) => abort(a),
        Sub::Status(a) => status(a),
    }
}

/// A fleet command's failure: what to print and the exit code.
enum Failed {
    Invalid(String),
    Refused(String),
    Internal(String),
}

impl Failed {
    fn exit(self) -> Exit {
        match self {
            Failed::Invalid(m) => exit::invalid(m),
            Failed::Refused(m) => {
                eprintln!("refused: {m}");
                Exit::Refused
            }
            Failed::Internal(m) => {
                eprintln!("error: {m}");
                Exit::Internal
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Failed {
    Failed::Internal(e.to_string())
}

/// The spec, change and members `apply` asks for, checked; nothing is written.
fn parse_apply(a: &ApplyArgs) -> Result<FleetDoc, Failed> {
    let mut names = Vec::new();
    let mut members = BTreeMap::new();
    for c in &a.clusters {
        let Some((name, dir)) = c.split_once('=') else {
            return Err(Failed::Invalid(format!(
                "--cluster {c:?} is not NAME=STATE_DIR: give the cluster's name and its state \
                 folder (--cluster shop=/path/to/state)"
            )));
        };
        let dir = PathBuf::from(dir);
        if !name.trim().is_empty() && !StateFile::in_dir(&dir).exists() {
            return Err(Failed::Invalid(format!(
                "cluster {name}: {} holds no switchyard-state.json: give the local cluster's \
                 state folder",
                dir.display()
            )));
        }
        names.push(name.to_string());
        members.insert(name.to_string(), dir);
    }
    let mut set = BTreeMap::new();
    for s in &a.set {
        let Some((name, value)) = s.split_once('=') else {
            return Err(Failed::Invalid(format!(
                "--set {s:?} is not NAME=VALUE: give the variable and its value (--set \
                 max_connections=300)"
            )));
        };
        set.insert(name.trim().to_string(), value.trim().to_string());
    }
    let config = ConfigChange {
        set,
        restart: a.restart,
    };
    config
        .validate()
        .map_err(|e| Failed::Invalid(e.to_string()))?;
    let spec = FleetSpec {
        clusters: names,
        canary: a.canary,
        max_at_once: a.max_at_once,
        bake: Duration::from_secs(a.bake_s),
        max_lag_seconds: a.max_lag_s,
        change: config.name(),
    };
    spec.validate()
        .map_err(|e| Failed::Invalid(e.to_string()))?;
    if let Some(q) = &a.check_query
        && q.trim().is_empty()
    {
        return Err(Failed::Invalid(
            "--check-query is empty: give a query that must keep answering, or leave it out".into(),
        ));
    }
    Ok(FleetDoc {
        spec,
        config,
        check: a.check_query.clone(),
        members,
        record: FleetRecord::default(),
    })
}

fn unfinished(record: &FleetRecord) -> bool {
    matches!(
        record.state,
        FleetState::Running | FleetState::Stopped { .. }
    )
}

/// Runs `switchyard fleet apply`.
fn apply(a: ApplyArgs) -> Exit {
    let wanted = match parse_apply(&a) {
        Ok(doc) => doc,
        Err(f) => return f.exit(),
    };
    let file = FleetFile::in_dir(&a.fleet.dir);
    let written = loop {
        let stored = if file.exists() {
            match file.read() {
                Ok(doc) => Some(doc),
                Err(e) => {
                    return Failed::Invalid(format!(
                        "{e}: --dir is the fleet's folder (or a new one)"
                    ))
                    .exit();
                }
            }
        } else {
            None
        };
        if let Some(stored) = &stored
            && unfinished(&stored.record)
            && let Some(current) = stored.record.current()
        {
            let same = stored.spec == wanted.spec
                && stored.config == wanted.config
                && stored.check == wanted.check
                && stored.members == wanted.members;
            if !same {
                let what = if current.change == wanted.spec.change {
                    "with other settings"
                } else {
                    "another change"
                };
                return Failed::Refused(format!(
                    "fleet revision {} ({}) is {} and rolls {what}: resume it (`switchyard \
                     fleet resume`) or abort it (`switchyard fleet abort`) first",
                    current.number, current.change, stored.record.state
                ))
                .exit();
            }
            println!(
                "fleet revision {} ({}) is {}: continuing it from its record",
                current.number, current.change, stored.record.state
            );
            break Ok(());
        }
        let seq = stored.as_ref().map(|d| d.record.seq);
        let result = file.update(
            || Some(wanted.clone()),
            |doc| {
                if seq.is_some_and(|s| s != doc.record.seq) {
                    return Err(switchyard_local::Error::Conflict {
                        expected: seq.unwrap_or_default(),
                        found: doc.record.seq,
                    });
                }
                let record = std::mem::take(&mut doc.record);
                *doc = FleetDoc {
                    record,
                    ..wanted.clone()
                };
                Ok(())
            },
        );
        match result {
            Err(switchyard_local::Error::Conflict { .. }) => continue,
            other => break other,
        }
    };
    if let Err(e) = written {
        return internal(e).exit();
    }
    drive(&a.fleet)
}

/// Runs `switchyard fleet resume`.
fn resume(a: ResumeArgs) -> Exit {
    let file = FleetFile::in_dir(&a.fleet.dir);
    let requested = request(&file, || FleetCommand::Resume {
        skip: a.skip.clone(),
    });
    match requested {
        Ok(Some(command)) => println!("{command} requested"),
        Ok(None) if a.skip.is_some() => {
            return Failed::Invalid(
                "the fleet is running, not stopped: --skip names the cluster a stopped fleet \
                 stopped on"
                    .into(),
            )
            .exit();
        }
        Ok(None) => println!("the fleet is running (its driver had stopped): continuing it"),
        Err(f) => return f.exit(),
    }
    drive(&a.fleet)
}

/// Records a person's command (with compare-and-swap) unless the fleet runs without one, in
/// which case nothing is recorded (`Ok(None)`): a resume then only continues driving.
fn request(
    file: &FleetFile,
    command: impl Fn() -> FleetCommand,
) -> Result<Option<FleetCommand>, Failed> {
    loop {
        let doc = read(file)?;
        let command = command();
        if matches!(command, FleetCommand::Resume { .. }) && doc.record.state == FleetState::Running
        {
            return Ok(None);
        }
        let mut record = doc.record.clone();
        if let Err(e) = record.request(command.clone(), now()) {
            return Err(match e {
                FleetError::SkipNotStopped { .. } => Failed::Invalid(e.to_string()),
                _ => Failed::Refused(e.to_string()),
            });
        }
        record.seq += 1;
        match file.store_record(doc.record.seq, &record) {
            Ok(()) => return Ok(Some(command)),
            Err(switchyard_local::Error::Conflict { .. }) => continue,
            Err(e) => return Err(internal(e)),
        }
    }
}

fn read(file: &FleetFile) -> Result<FleetDoc, Failed> {
    if !file.exists() {
        return Err(Failed::Invalid(format!(
            "there is no fleet file {}: --dir is the folder `switchyard fleet apply` was given",
            file.path().display()
        )));
    }
    file.read().map_err(|e| Failed::Invalid(e.to_string()))
}

/// Runs `switchyard fleet abort`: records the abort, and lets the planner take it at once.
fn abort(a: DirArgs) -> Exit {
    let file = FleetFile::in_dir(&a.dir);
    if let Err(f) = request(&file, || FleetCommand::Abort) {
        return f.exit();
    }
    drive(&a)
}

/// Drives the fleet until it is done, stopped or aborted, or a command is refused.
fn drive(a: &DirArgs) -> Exit {
    let driver = FleetDriver::new(&a.dir);
    let tick = Duration::from_millis(a.tick_ms.max(10));
    let started = Instant::now();
    let mut last_wait = String::new();
    loop {
        let stepped = match driver.step(now()) {
            Ok(s) => s,
            // Another driver or a person's command stored first: decide again on theirs.
            Err(switchyard_local::Error::Conflict { .. }) => continue,
            Err(e @ switchyard_local::Error::Fleet(_)) => {
                return Failed::Invalid(e.to_string()).exit();
            }
            Err(e) => return internal(e).exit(),
        };
        let at = started.elapsed().as_secs_f64();
        let revision = stepped.record.current().map_or(0, |r| r.number);
        match &stepped.action {
            FleetAction::Wait {
                reason: FleetWait::Stopped { cluster, reason },
            } => {
                eprintln!(
                    "fleet revision {revision} stopped on cluster {cluster:?}: {reason}; clusters \
                     not yet started were left untouched. Fix it and run `switchyard fleet \
                     resume` (or `--skip {cluster}`), or `switchyard fleet abort`"
                );
                return Exit::Refused;
            }
            FleetAction::Wait { reason } => {
                let line = reason.to_string();
                if line != last_wait {
                    println!("[{at:7.1}s] waiting: {line}");
                    last_wait = line;
                }
                std::thread::sleep(tick);
            }
            FleetAction::Done => {
                println!(
                    "[{at:7.1}s] fleet revision {revision}: done, every cluster rolled and baked"
                );
                return Exit::Ok;
            }
            FleetAction::Aborted { ran, untouched } => {
                println!(
                    "[{at:7.1}s] fleet revision {revision}: aborted; the change ran on [{}], \
                     never touched: [{}]",
                    ran.join(", "),
                    untouched.join(", ")
                );
                return Exit::Ok;
            }
            FleetAction::Refuse { command, reason } => {
                eprintln!("refused: {command}: {reason}");
                return Exit::Refused;
            }
            action => {
                println!("[{at:7.1}s] {action}");
                last_wait.clear();
            }
        }
    }
}

/// Runs `switchyard fleet status`.
fn status(a: DirArgs) -> Exit {
    let file = FleetFile::in_dir(&a.dir);
    let doc = match read(&file) {
        Ok(d) => d,
        Err(f) => return f.exit(),
    };
    let seen = match FleetDriver::observe(&doc) {
        Ok(s) => s,
        Err(e) => return internal(e).exit(),
    };
    print!("{}", render_status(&a.dir, &doc, &seen, now()));
    Exit::Ok
}

/// The text of `switchyard fleet status`.
fn render_status(
    dir: &Path,
    doc: &FleetDoc,
    seen: &BTreeMap<String, switchyard_plan::fleet::ClusterObservation>,
    now: Timestamp,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let record = &doc.record;
    match record.current() {
        Some(r) => {
            let _ = writeln!(
                out,
                "fleet {}: revision {} ({}), {}",
                dir.display(),
                r.number,
                r.change,
                record.state
            );
        }
        None => {
            let _ = writeln!(out, "fleet {}: no revision yet", dir.display());
        }
    }
    let waves: Vec<String> = record.waves.iter().map(|w| w.join(", ")).collect();
    let _ = writeln!(out, "waves: [{}]", waves.join("] ["));
    for name in record.in_order() {
        let state = match record.cluster(name) {
            Some(ClusterState::Pending) | None => "pending".to_string(),
            Some(ClusterState::Rolling { .. }) => "rolling".into(),
            Some(ClusterState::Baking { since }) => format!("baking since {since}"),
            Some(ClusterState::Done { at }) => format!("done at {at}"),
            Some(ClusterState::Stopped { reason, .. }) => format!("stopped: {reason}"),
            Some(ClusterState::Skipped { .. }) => "skipped".into(),
        };
        let health = seen.get(name).map_or_else(
            || "not observed".to_string(),
            |o| {
                format!(
                    "rollout {:?}, replication {}, lag {}, user check {:?}, observed {:.1}s ago",
                    o.rollout,
                    if o.replication_running {
                        "running"
                    } else {
                        "NOT running"
                    },
                    o.lag_seconds.map_or("-".into(), |l| format!("{l}s")),
                    o.user_check,
                    Duration::from_millis(now.0.saturating_sub(o.observed_at.0)).as_secs_f64()
                )
            },
        );
        let _ = writeln!(out, "  {name:<12} {state:<28} {health}");
    }
    if let Some(c) = &record.command {
        let _ = writeln!(out, "command waiting: {}", c.command);
    }
    out
}
