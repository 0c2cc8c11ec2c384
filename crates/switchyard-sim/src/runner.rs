//! The runner: starts the scenario's cluster and load, drives engines
//! (a new one whenever a fault kills the running one) until the rollout is
//! done or halted, stops the load, checks every acknowledged write on every
//! instance and builds the [`SimReport`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_local::timeline::{Event, Op};
use switchyard_local::{
    Apply, ClusterSpec, LocalCluster, LocalRuntime, RuntimeConfig, SchemaRequest,
};
use switchyard_plan::engine::{ClusterRuntime, StepOutcome};
use switchyard_plan::{Engine, Finished};
use switchyard_testbed::ledger::{CheckConfig, check};
use switchyard_testbed::load::{Load, LoadConfig, prepare};

use crate::fault::{FaultPlan, Faulty};
use crate::monitor::{FenceProbe, Monitor, MonitorConfig, MonitorReport, Violation};
use crate::scenario::{Effects, Outcome, Scenario, SchemaDef};
use crate::{Error, Result};

/// How often the monitor samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// How many overlapping writes of a split brain the report shows.
const SPLIT_BRAIN_EXAMPLES: usize = 3;

/// The system user the servers run as in a scenario that cuts the operator
/// off (the testbed's Galera servers' user).
pub const SERVER_USER: &str = switchyard_testbed::cluster::GALERA_USER;

/// How many times an engine that stopped with an error is replaced.
const ENGINE_RESTARTS: u32 = 5;

/// What a simulation found; written as `target/sim/NAME.json`.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    /// The scenario.
    pub scenario: String,
    /// `done` or `halted`.
    pub outcome: String,
    /// The halt's category and reason, when halted.
    pub halt: Option<(String, String)>,
    /// The expected outcome, in words.
    pub expected: String,
    /// Whether the outcome was the expected one and nothing was violated.
    pub passed: bool,
    /// The rollout's wall time, seconds (cluster start and checks excluded).
    pub rollout_s: f64,
    /// The whole simulation's wall time, seconds.
    pub duration_s: f64,
    /// Every broken invariant.
    pub violations: Vec<Violation>,
    /// Writes acknowledged to the load.
    pub writes_acknowledged: usize,
    /// Acknowledged writes missing on some instance (summed over instances).
    pub writes_lost: usize,
    /// Instances the final check left out: down, their replication
    /// stopped with an error (by a fault) at the end, or quarantined by the
    /// engine after a failover.
    pub unchecked: Vec<String>,
    /// The longest stretch without an acknowledged write of the load (the
    /// router's writers), ms.
    pub max_write_gap_ms: u64,
    /// The scenario's bound on it, ms.
    pub max_write_gap_bound_ms: Option<u64>,
    /// Writes acknowledged to the direct writers (privileged clients
    /// connected to an instance), counted in `writes_acknowledged` too.
    pub direct_writes: usize,
    /// Acknowledged writes that overlap a write acknowledged by another
    /// server (the split-brain check), and the acknowledged writes per
    /// server id.
    pub split_brain: (usize, Vec<(u32, usize)>),
    /// Monitor samples taken.
    pub samples: u64,
    /// The longest time between two monitor samples, ms.
    pub max_sample_interval_ms: u64,
    /// The largest replication lag the monitor saw, seconds.
    pub max_lag_s: u64,
    /// Instances the monitor saw writable whose commits could not be
    /// acknowledged (a semi-synchronous source with too few replicas
    /// connected: a failed primary that ran again before its fence).
    pub blocked_writers: Vec<u32>,
    /// Replication errors the monitor saw (error number, instance).
    pub replication_errors: Vec<(u32, u32)>,
    /// Completed promotions (failovers' included).
    pub switchovers: usize,
    /// Each failover the engine recorded as promoted.
    pub failovers: Vec<FailoverReport>,
    /// The engine's waits on a failing primary: how many, how many for want
    /// of a proof that no acknowledged write is lost, and the last reason.
    pub failover_waits: (u64, u64, Option<String>),
    /// The pre-flight's refusal of a schema change, when it refused one.
    pub refusal: Option<String>,
    /// Engines started (more than one when a fault killed one).
    pub engines: u32,
    /// Engine steps taken over all engines.
    pub steps: u64,
    /// What the faults did.
    pub faults: Vec<String>,
    /// Killed instances seen up again, with their version.
    pub recoveries: Vec<(u32, String)>,
    /// Errors engines stopped with (each replaced by a new engine).
    pub engine_errors: Vec<String>,
    /// The cluster's record of the run (operations, engine steps, process
    /// starts and crashes), one line per event with its time since the
    /// cluster started: what to read when a scenario fails.
    pub timeline: Vec<String>,
}

impl SimReport {
    /// Writes the report as `DIR/NAME.json`.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(format!("{}.json", self.scenario));
        let io = |source| Error::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        std::fs::write(&path, text).map_err(io)?;
        Ok(path)
    }
}

/// Runs `scenario` with the local runtime.
pub async fn run(scenario: &Scenario) -> Result<SimReport> {
    let mut config = RuntimeConfig::default();
    config.max_transaction_seconds = Some(scenario.policy.max_transaction_s);
    run_with(scenario, |c: &LocalCluster| {
        LocalRuntime::with_config(c, config.clone())
    })
    .await
}

/// Runs `scenario` with the runtime `make` builds over the cluster (a new
/// one for every engine), so a test can run a deliberately broken runtime.
pub async fn run_with<R, F>(scenario: &Scenario, make: F) -> Result<SimReport>
where
    R: ClusterRuntime,
    F: Fn(&LocalCluster) -> R,
{
    let wall = Instant::now();
    let invalid = |message: String| Error::Invalid {
        name: scenario.name.clone(),
        message,
    };
    let kind = scenario.server_kind().map_err(invalid)?;
    let account = scenario.account().map_err(invalid)?;
    let mut spec = ClusterSpec::new(kind, scenario.cluster.instances)
        .with_config(scenario.cluster.config.clone());
    if let Some(k) = scenario.cluster.semi_sync {
        spec = spec.with_semi_sync(k);
    }
    if let Some(s) = scenario.cluster.replica_net_timeout_s {
        spec = spec.with_replica_net_timeout(s);
    }
    if scenario.operator_partition() {
        spec = spec.with_server_user(SERVER_USER);
    }
    let cluster = LocalCluster::start(spec)
        .await
        .map_err(|source| Error::Cluster {
            what: "start",
            source,
        })?;
    prepare(
        &cluster
            .testbed()
            .primary()
            .connect_options(&cluster.credentials().operator),
        "app.ledger",
    )
    .await?;
    let set: Vec<(&str, &str)> = scenario
        .change
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let schema = match &scenario.change.schema {
        Some(def) => Some(SchemaCheck::read(&cluster, def).await.map_err(invalid)?),
        None => None,
    };
    let target = match (
        &scenario.change.schema,
        scenario.upgrade_kind().map_err(invalid)?,
    ) {
        (Some(def), _) => {
            let mut request = SchemaRequest::new(def.alter.clone());
            if let Some(risk) = &def.force {
                request = request.force(risk.clone());
            }
            match cluster.schema_target(&request).await {
                Ok(plan) => Ok(plan.target),
                Err(refusal @ switchyard_local::Error::SchemaRefused { .. }) => {
                    let check = schema.as_ref().ok_or_else(|| invalid("no schema".into()))?;
                    return refused(scenario, &cluster, check, &refusal, wall).await;
                }
                Err(e) => Err(e),
            }
        }
        (None, Some(to)) => cluster.upgrade_target_with(to, &set).await,
        (None, None) => {
            let apply = if scenario.change.apply == "online" {
                Apply::Online
            } else {
                Apply::Restart
            };
            cluster.config_target(&set, apply)
        }
    }
    .map_err(|source| Error::Cluster {
        what: "make the target revision",
        source,
    })?;
    let plan = FaultPlan::new(scenario.faults.clone(), target.revision.hash.clone());
    let ports: Vec<u16> = cluster
        .testbed()
        .instances()
        .iter()
        .map(switchyard_testbed::Instance::port)
        .collect();
    let mut handles = Vec::new();
    for o in 0..u32::try_from(cluster.len()).unwrap_or(0) {
        handles.push(cluster.handle(o).map_err(|source| Error::Cluster {
            what: "make the monitor's handles",
            source,
        })?);
    }
    let galera = kind == switchyard_testbed::ServerKind::Galera;
    // No fence on Galera, and a probe's commit would replicate to every node.
    let probes = if galera {
        Vec::new()
    } else {
        cluster
            .testbed()
            .instances()
            .iter()
            .map(|i| FenceProbe::new(i.connect_options(&cluster.credentials().operator)))
            .collect()
    };
    let monitor_config = MonitorConfig {
        every: SAMPLE_EVERY,
        galera,
        ..MonitorConfig::default()
    };
    let monitor = Monitor::start(
        handles,
        probes,
        &ports,
        cluster.state().clone(),
        Arc::clone(cluster.timeline()),
        Arc::clone(&plan),
        monitor_config,
    );
    let load = Load::start(
        {
            let mut c = LoadConfig::with_account(account);
            c.writers = scenario.load.writers;
            c.rate_per_sec = scenario.load.rate;
            c.read_rate_per_sec = 20;
            c
        },
        cluster.endpoints(),
        cluster.credentials(),
    )?;
    plan.share_ledger(Arc::clone(load.ledger()));

    let rollout = Instant::now();
    let limit = Duration::from_secs(scenario.deadline_s);
    let mut drive = Drive::default();
    // Frozen instances thaw on time whatever the engine does (an engine
    // waiting on a frozen primary may take long steps).
    let thaw = async {
        loop {
            plan.resume(&cluster, false);
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    };
    let finished = tokio::time::timeout(limit, async {
        tokio::select! {
            r = drive.engines(&cluster, &plan, &make, scenario, &target) => r,
            () = thaw => Err(Error::Invalid {
                name: scenario.name.clone(),
                message: "the thaw task ended".into(),
            }),
        }
    })
    .await;
    let rollout_s = rollout.elapsed().as_secs_f64();
    // The cluster as the verdict left it, watched a while longer.
    let after = Instant::now() + Duration::from_secs(scenario.after_s);
    while Instant::now() < after {
        plan.resume(&cluster, false);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    // Nothing restarts an instance any more: what is down at the end stays
    // down, and no start is in flight when the cluster (or the async runtime
    // it runs on) is dropped.
    cluster.stop_supervisor().await;
    plan.resume(&cluster, true);
    plan.heal_all();

    let direct_writes = plan.stop_direct_writers().await;
    let loaded = load.stop().await;
    let mut seen = monitor.stop(monitor_config.max_interval).await;
    // Check every instance that answers and replicates without an error;
    // the others (down, or replication broken by a fault) are reported as
    // unchecked, and a rollout that says it is done must leave none.
    let mut targets = Vec::new();
    let mut unchecked = Vec::new();
    // An instance the engine quarantined (a failed primary holding what the
    // new primary lacks) is out of the cluster by design: it lacks every
    // later write. An acknowledged write only it holds is still missing on
    // every other instance, which the check covers.
    let quarantined: Vec<u32> = cluster
        .state()
        .read()
        .map(|d| d.record.quarantined.keys().copied().collect())
        .unwrap_or_default();
    let mut set_aside = Vec::new();
    for (t, o) in cluster.check_targets().into_iter().zip(0u32..) {
        if quarantined.contains(&o) {
            set_aside.push(format!("{}: quarantined by the engine", t.name));
            continue;
        }
        let why = match cluster.handle(o) {
            Ok(h) => match h.observe().await {
                Ok(obs) => obs
                    .replication
                    .as_ref()
                    .and_then(|r| {
                        let errno = if r.last_sql_errno != 0 {
                            r.last_sql_errno
                        } else {
                            r.last_io_errno
                        };
                        (errno != 0).then(|| format!("replication stopped with error {errno}"))
                    })
                    .or_else(|| {
                        // A Galera node out of the primary component refuses queries.
                        // (MariaDB reports wsrep state, off, on every server.)
                        obs.galera
                            .as_ref()
                            .filter(|g| g.wsrep_on && !(g.is_synced() && g.in_primary_component()))
                            .map(|g| {
                                format!(
                                    "a Galera node not synced in the primary component \
                                     ({:?}, {:?})",
                                    g.local_state_comment, g.cluster_status
                                )
                            })
                    }),
                Err(e) => Some(format!("unreachable: {e}")),
            },
            Err(e) => Some(format!("no handle: {e}")),
        };
        match why {
            None => targets.push(t),
            Some(why) => unchecked.push(format!("{}: {why}", t.name)),
        }
    }
    if matches!(finished, Ok(Ok(Finished::Done))) && !unchecked.is_empty() {
        seen.violations.push(Violation {
            at_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
            check: "converged",
            detail: format!("the rollout is done but {unchecked:?}"),
        });
    }
    unchecked.extend(set_aside);
    let checked = check(&loaded.ledger, &targets, &CheckConfig::default()).await?;
    if !checked.no_lost_writes() {
        seen.violations.push(Violation {
            at_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
            check: "lost-writes",
            detail: format!(
                "{} acknowledged writes missing: {:?}",
                checked.total_missing(),
                checked
                    .missing
                    .iter()
                    .map(|(i, ids)| (i, ids.iter().take(5).collect::<Vec<_>>()))
                    .collect::<Vec<_>>()
            ),
        });
    }
    // A finished schema change left every instance with the same, new definition.
    if let (Some(check), Ok(Ok(Finished::Done))) = (&schema, &finished) {
        for detail in check.after_done(&cluster).await {
            seen.violations.push(Violation {
                at_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
                check: "converged",
                detail,
            });
        }
    }
    // A change halted at its first node left the others untouched.
    if let (Some(check), Some(max)) = (&schema, scenario.expect.seen.max_altered) {
        let altered = check.altered(&cluster).await;
        if altered.len() > max {
            seen.violations.push(Violation {
                at_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
                check: "expected-effect",
                detail: format!(
                    "at most {max} instances should have the table changed, and {altered:?} do"
                ),
            });
        }
    }
    // A finished rollout left every instance on the target version, but one
    // the engine quarantined: it is out of the cluster until a person
    // re-provisions it, on the version it failed on.
    if matches!(finished, Ok(Ok(Finished::Done))) {
        for o in 0..u32::try_from(cluster.len()).unwrap_or(0) {
            if quarantined.contains(&o) {
                continue;
            }
            let running = match cluster.handle(o) {
                Ok(h) => h.observe().await.ok().map(|obs| obs.version.version),
                Err(_) => None,
            };
            if running != Some(target.version) {
                seen.violations.push(Violation {
                    at_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
                    check: "converged",
                    detail: format!(
                        "the rollout is done but instance {o} runs {running:?}, not {}",
                        target.version
                    ),
                });
            }
        }
    }
    let switchovers = cluster
        .timeline()
        .events()
        .iter()
        .filter(|t| {
            matches!(
                &t.event,
                Event::OpFinished {
                    op: Op::Promote,
                    error: None,
                    ..
                }
            )
        })
        .count();
    let at_end = u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Two servers acknowledging writes at once. On Galera every node commits
    // the same writes in one order (certification), so two nodes acknowledging
    // at once is how it works, not a split; a lost write is still one.
    let split = loaded.ledger.split_brain(SPLIT_BRAIN_EXAMPLES);
    if split.overlapping > 0 && !galera {
        seen.violations.push(Violation {
            at_ms: at_end,
            check: "split-brain",
            detail: format!(
                "{} acknowledged writes overlap a write acknowledged by another server \
                 (writes per server id: {:?}); first: {}",
                split.overlapping,
                split.per_server,
                split
                    .examples
                    .iter()
                    .map(|o| format!(
                        "server {:?} acknowledged id {} (sent {} µs, acknowledged {} µs) while \
                         server {:?} acknowledged id {} (sent {} µs, acknowledged {} µs)",
                        o.first.server_id,
                        o.first.id,
                        o.first.sent_us,
                        o.first.ack_us,
                        o.second.server_id,
                        o.second.id,
                        o.second.sent_us,
                        o.second.ack_us
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    // An instance a partition cut off acknowledged no write sent after the
    // cut: its replicas could not receive it, and after the heal it is fenced.
    for p in plan.partitioned() {
        let acked: Vec<u64> = loaded
            .ledger
            .acked
            .iter()
            .filter(|a| a.server_id == Some(p.server_id) && a.sent_us > p.cut_us)
            .map(|a| a.id)
            .collect();
        if !acked.is_empty() {
            seen.violations.push(Violation {
                at_ms: at_end,
                check: "partitioned-acked",
                detail: format!(
                    "instance {} (server id {}), cut off at {} µs, acknowledged {} writes sent \
                     after the cut (first ids: {:?})",
                    p.ordinal,
                    p.server_id,
                    p.cut_us,
                    acked.len(),
                    &acked[..acked.len().min(3)]
                ),
            });
        }
    }
    // The load's (the router's writers') longest gap against the bound.
    let gap = loaded.ledger.of_run(0).longest_gap();
    let max_write_gap_ms = gap.map_or(0, |g| g.length_us() / 1000);
    if let Some(bound) = scenario.expect.max_write_gap_ms
        && max_write_gap_ms > bound
    {
        seen.violations.push(Violation {
            at_ms: at_end,
            check: "write-gap",
            detail: format!(
                "the load went {max_write_gap_ms} ms without an acknowledged write \
                 (bound {bound} ms; from {} µs to {} µs on the load's time axis)",
                gap.map_or(0, |g| g.from_us),
                gap.map_or(0, |g| g.to_us)
            ),
        });
    }
    // Every fault happened, and did what the scenario says it does.
    for line in plan.unconfirmed() {
        seen.violations.push(Violation {
            at_ms: at_end,
            check: "fault",
            detail: line,
        });
    }
    let failovers = failover_reports(&plan.failovers(), &cluster.timeline().events());
    let effects = Observed {
        failovers: &failovers,
        seen_failovers: plan.failovers(),
        switchovers,
        engines: drive.engines,
        timeline: &cluster.timeline().events(),
        monitor: &seen,
        unrecovered: plan.injected().into_keys().collect(),
        session_killed: plan.session_killed(),
        direct_writes,
        acked_while_cut: plan.acked_while_cut(),
    };
    for detail in effects.missing(&scenario.expect.seen) {
        seen.violations.push(Violation {
            at_ms: at_end,
            check: "expected-effect",
            detail,
        });
    }
    let (outcome, halt) = match &finished {
        Ok(Ok(Finished::Done)) => ("done".to_owned(), None),
        Ok(Ok(Finished::Halted(r))) => (
            "halted".to_owned(),
            Some((r.category().to_owned(), r.to_string())),
        ),
        Ok(Err(e)) => (format!("error: {e}"), None),
        Err(_) => (format!("no verdict within {limit:?}"), None),
    };
    let expected = expected_words(&scenario.expect.outcome);
    let as_expected = match (&scenario.expect.outcome, &halt) {
        (Outcome::Done, None) => outcome == "done",
        (Outcome::Halt(c), Some((got, _))) => c == got,
        _ => false,
    };
    let faults = plan.log();
    Ok(SimReport {
        scenario: scenario.name.clone(),
        outcome,
        halt,
        expected,
        passed: as_expected && seen.violations.is_empty() && plan.all_fired(),
        rollout_s,
        duration_s: wall.elapsed().as_secs_f64(),
        writes_acknowledged: checked.acknowledged,
        writes_lost: checked.total_missing(),
        unchecked,
        max_write_gap_ms,
        max_write_gap_bound_ms: scenario.expect.max_write_gap_ms,
        direct_writes,
        split_brain: (split.overlapping, split.per_server),
        samples: seen.samples,
        max_sample_interval_ms: seen.max_interval_ms,
        max_lag_s: seen.max_lag_s,
        blocked_writers: seen.blocked_writers.iter().copied().collect(),
        replication_errors: seen
            .replication_errors
            .iter()
            .map(|(e, o)| (*e, *o))
            .collect(),
        switchovers,
        failovers,
        failover_waits: {
            let f = plan.failovers();
            (f.failing_waits, f.lossless_waits, f.last_wait)
        },
        refusal: None,
        engines: drive.engines,
        steps: drive.steps,
        faults,
        recoveries: seen.recoveries,
        violations: seen.violations,
        engine_errors: drive.errors,
        timeline: timeline_lines(cluster.timeline()),
    })
}

/// One failover, from the engine's record and the cluster's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    /// The failed primary.
    pub from: u32,
    /// The new primary.
    pub to: u32,
    /// Whether the engine recorded it as lossless.
    pub lossless: bool,
    /// From the first failed check of the primary to the promotion, ms.
    pub detection_to_promotion_ms: u64,
    /// From the engine's decision to fail over to the promotion, ms.
    pub decision_to_promotion_ms: u64,
    /// After the promotion, the failed primary was fenced once it answered,
    /// then followed the new primary (`rejoined`) or was quarantined;
    /// `not judged` otherwise.
    pub old_primary: String,
}

/// The failovers the records showed, each with what became of its failed
/// primary in the timeline (a fence after the promotion, then a repoint to
/// the new primary, or a quarantine).
fn failover_reports(
    seen: &crate::fault::FailoversSeen,
    timeline: &[switchyard_local::timeline::Timed],
) -> Vec<FailoverReport> {
    seen.promoted
        .iter()
        .map(|f| {
            let ok = |t: &switchyard_local::timeline::Timed, want: &dyn Fn(u32, &Op) -> bool| {
                matches!(&t.event, Event::OpFinished { ordinal, op, error: None, .. } if want(*ordinal, op))
            };
            let promoted = timeline
                .iter()
                .rposition(|t| ok(t, &|o, op| o == f.to && *op == Op::Promote));
            let after = promoted.map_or(&[][..], |p| &timeline[p..]);
            let fenced = after
                .iter()
                .position(|t| ok(t, &|o, op| o == f.from && *op == Op::Fence));
            let old_primary = match fenced {
                None => "not judged (never fenced after the promotion)".to_owned(),
                Some(i) if seen.quarantined.contains(&f.from) => {
                    let _ = i;
                    "fenced, then quarantined".to_owned()
                }
                Some(i) => {
                    let rejoined = after[i..].iter().any(|t| {
                        ok(t, &|o, op| {
                            o == f.from && matches!(op, Op::Repoint { source } if *source == f.to)
                        })
                    });
                    if rejoined {
                        "fenced, then rejoined".to_owned()
                    } else {
                        "fenced, never rejoined nor quarantined".to_owned()
                    }
                }
            };
            FailoverReport {
                from: f.from,
                to: f.to,
                lossless: f.lossless,
                detection_to_promotion_ms: ms(f.promoted.since(f.failing_since)),
                decision_to_promotion_ms: ms(f.promoted.since(f.started)),
                old_primary,
            }
        })
        .collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every kept event of `timeline`, as `+MS ms EVENT` lines.
fn timeline_lines(timeline: &switchyard_local::timeline::Timeline) -> Vec<String> {
    let start = timeline.start();
    timeline
        .events()
        .into_iter()
        .map(|t| {
            let ms = t.at.saturating_duration_since(start).as_millis();
            format!("+{ms} ms {:?}", t.event)
        })
        .collect()
}

/// The runtime's own account of the canary: the first instance returned to the pool (its
/// undrain), then the first drain, restart or schema change of another instance after it,
/// and the time between them; `None` when no such pair happened.
fn canary_bake(timeline: &[switchyard_local::timeline::Timed]) -> Option<(u32, u32, Duration)> {
    let (canary, back) = timeline.iter().find_map(|t| match &t.event {
        Event::OpFinished {
            ordinal,
            op: Op::Undrain,
            error: None,
            ..
        } => Some((*ordinal, t.at)),
        _ => None,
    })?;
    timeline.iter().find_map(|t| match &t.event {
        Event::OpStarted {
            ordinal,
            op: Op::Drain | Op::Restart { .. } | Op::RunDdl { .. },
        } if *ordinal != canary && t.at > back => {
            Some((canary, *ordinal, t.at.duration_since(back)))
        }
        _ => None,
    })
}

fn expected_words(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done => "done".to_owned(),
        Outcome::Refused => "refused".to_owned(),
        Outcome::Halt(c) => format!("halted: {c}"),
    }
}

/// What a run showed of its faults' effects.
struct Observed<'a> {
    failovers: &'a [FailoverReport],
    seen_failovers: crate::fault::FailoversSeen,
    switchovers: usize,
    engines: u32,
    timeline: &'a [switchyard_local::timeline::Timed],
    monitor: &'a MonitorReport,
    unrecovered: Vec<u32>,
    session_killed: bool,
    direct_writes: usize,
    acked_while_cut: usize,
}

impl Observed<'_> {
    /// Each effect `want` names that was not seen, in words.
    fn missing(&self, want: &Effects) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = want.switchovers
            && self.switchovers != n
        {
            out.push(format!(
                "{} switchovers completed, not {n}",
                self.switchovers
            ));
        }
        if let Some(n) = want.engines
            && self.engines < n
        {
            out.push(format!("{} engines ran, not at least {n}", self.engines));
        }
        if want.switchover_undone {
            let undone = self.timeline.iter().any(|t| {
                matches!(
                    &t.event,
                    Event::OpFinished {
                        op: Op::Unfence,
                        error: None,
                        ..
                    }
                )
            });
            if !undone {
                out.push("no switchover was undone (no fence was lifted)".into());
            }
        }
        if want.recovered {
            if self.monitor.recoveries.is_empty() {
                out.push("no instance a fault took down was seen up again".into());
            }
            if !self.unrecovered.is_empty() {
                out.push(format!(
                    "instances {:?} a fault took down were never seen up again",
                    self.unrecovered
                ));
            }
            if self
                .monitor
                .violations
                .iter()
                .any(|v| v.check == "recovery")
            {
                out.push("an instance came back on another version".into());
            }
        }
        if let Some(n) = want.lag_s
            && self.monitor.max_lag_s < n
        {
            out.push(format!(
                "the largest replication lag seen was {} s, not at least {n} s",
                self.monitor.max_lag_s
            ));
        }
        if let Some(errno) = want.replication_error
            && !self.monitor.replication_errors.contains_key(&errno)
        {
            out.push(format!(
                "no replica was seen stopped with error {errno} (seen: {:?})",
                self.monitor.replication_errors
            ));
        }
        if let Some(action) = &want.action_failed {
            let failed = self.timeline.iter().any(|t| match &t.event {
                Event::OpFinished {
                    op, error: Some(_), ..
                } => op_name(op) == action.as_str(),
                _ => false,
            });
            if !failed {
                out.push(format!("no {action} failed"));
            }
        }
        if want.session_killed && !self.session_killed {
            out.push("the server never closed the session a SQL fault held".into());
        }
        if let Some(n) = want.direct_writes
            && self.direct_writes < n
        {
            out.push(format!(
                "the direct writers had {} writes acknowledged, not at least {n}",
                self.direct_writes
            ));
        }
        if let Some(n) = want.failovers
            && self.failovers.len() != n
        {
            out.push(format!(
                "{} failovers were promoted, not {n} (last wait on the failing primary: {:?})",
                self.failovers.len(),
                self.seen_failovers.last_wait
            ));
        }
        if let Some(want) = want.lossless {
            let all = self.failovers.iter().all(|f| f.lossless);
            if self.failovers.is_empty() || all != want {
                out.push(format!(
                    "failovers recorded lossless: {:?}, not {}",
                    self.failovers
                        .iter()
                        .map(|f| f.lossless)
                        .collect::<Vec<_>>(),
                    if want {
                        "all lossless"
                    } else {
                        "one not lossless"
                    }
                ));
            }
        }
        if want.old_primary_judged {
            for f in self.failovers {
                if !f.old_primary.ends_with("rejoined") && !f.old_primary.ends_with("quarantined") {
                    out.push(format!("failed primary {}: {}", f.from, f.old_primary));
                }
            }
            if self.failovers.is_empty() {
                out.push("no failover, so no failed primary was judged".into());
            }
        }
        if want.waited_for_corroboration && self.seen_failovers.corroboration_waits == 0 {
            out.push(format!(
                "the engine never waited on the failing primary because replicas still reach \
                 it ({} waits on it; last: {:?})",
                self.seen_failovers.failing_waits, self.seen_failovers.last_wait
            ));
        }
        if want.acked_while_cut && self.acked_while_cut == 0 {
            out.push(
                "no instance cut from the operator acknowledged a write sent during the cut".into(),
            );
        }
        if let Some(bake) = want.canary_bake_s {
            match canary_bake(self.timeline) {
                None => out.push(
                    "no instance returned to service before another was taken out (no canary)"
                        .into(),
                ),
                Some((canary, other, gap)) if gap < Duration::from_secs(bake) => out.push(format!(
                    "instance {other} was taken out {:.1} s after canary {canary} returned to \
                     service, before a bake of {bake} s",
                    gap.as_secs_f64()
                )),
                Some(_) => {}
            }
        }
        if want.waited_for_lossless_proof && self.seen_failovers.lossless_waits == 0 {
            out.push(format!(
                "the engine never waited on the failing primary for a lossless proof \
                 ({} waits on it; last: {:?})",
                self.seen_failovers.failing_waits, self.seen_failovers.last_wait
            ));
        }
        out
    }
}

/// The runtime method an operation of the timeline is.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Drain => "drain",
        Op::Undrain => "undrain",
        Op::Restart { .. } => "restart",
        Op::Recover => "recover",
        Op::Fence => "fence",
        Op::Unfence => "unfence",
        Op::CatchUp { .. } => "wait_caught_up",
        Op::Promote => "promote",
        Op::Repoint { .. } => "repoint",
        Op::ApplyVariables { .. } => "apply_variables",
        Op::RunDdl { .. } => "run_ddl",
        Op::Detach => "detach",
        Op::ApplyReceived => "wait_received_applied",
        _ => "other",
    }
}

/// The table a schema scenario changes, and its definition on every instance before.
struct SchemaCheck {
    database: String,
    table: String,
    before: Vec<String>,
}

impl SchemaCheck {
    async fn read(cluster: &LocalCluster, def: &SchemaDef) -> Result<SchemaCheck, String> {
        let name = switchyard_ddl::alter_table_name(cluster.flavor(), &def.alter)
            .map_err(|e| format!("change.schema.alter: {e}"))?;
        let database = name
            .schema
            .ok_or("change.schema.alter must name the table's database (db.table)")?;
        let mut check = SchemaCheck {
            database,
            table: name.name,
            before: Vec::new(),
        };
        check.before = check
            .definitions(cluster)
            .await
            .into_iter()
            .map(|d| d.unwrap_or_default())
            .collect();
        Ok(check)
    }

    /// `SHOW CREATE TABLE` on every instance (the error text where it fails).
    async fn definitions(&self, cluster: &LocalCluster) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        for o in 0..u32::try_from(cluster.len()).unwrap_or(0) {
            let text = match cluster.handle(o) {
                Ok(h) => h
                    .show_create_table(&self.database, &self.table)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out.push(text);
        }
        out
    }

    /// What is wrong after a refusal: any instance whose table changed, or a change
    /// recorded in the state file.
    async fn after_refusal(&self, cluster: &LocalCluster) -> Vec<String> {
        let mut wrong = Vec::new();
        match cluster.state().read() {
            Ok(doc) if doc.cluster.schema.changes.is_empty() => {}
            Ok(doc) => wrong.push(format!(
                "the change was refused but the state file records {:?}",
                doc.cluster.schema.changes.keys().collect::<Vec<_>>()
            )),
            Err(e) => wrong.push(format!("the state file cannot be read: {e}")),
        }
        for (o, (now, before)) in self
            .definitions(cluster)
            .await
            .iter()
            .zip(&self.before)
            .enumerate()
        {
            if now.as_ref() != Ok(before) {
                wrong.push(format!(
                    "the change was refused but instance {o}'s {}.{} changed: {now:?}",
                    self.database, self.table
                ));
            }
        }
        wrong
    }

    /// The instances whose table differs from its definition before the change
    /// (or cannot be read).
    async fn altered(&self, cluster: &LocalCluster) -> Vec<u32> {
        self.definitions(cluster)
            .await
            .iter()
            .zip(&self.before)
            .zip(0u32..)
            .filter(|((now, before), _)| now.as_ref() != Ok(*before))
            .map(|(_, o)| o)
            .collect()
    }

    /// What is wrong after a schema change said done: an instance whose table
    /// is unchanged or differs from instance 0's.
    async fn after_done(&self, cluster: &LocalCluster) -> Vec<String> {
        let now = self.definitions(cluster).await;
        let mut wrong = Vec::new();
        for (o, (d, before)) in now.iter().zip(&self.before).enumerate() {
            if d.as_ref() == Ok(before) {
                wrong.push(format!(
                    "the schema change is done but instance {o} was not altered"
                ));
            }
            if d != &now[0] {
                wrong.push(format!(
                    "the schema change is done but instance {o}'s {}.{} differs from instance 0's: {d:?}",
                    self.database, self.table
                ));
            }
        }
        wrong
    }
}

/// The report of a scenario whose schema change the pre-flight refused: it passes when a
/// refusal was expected and no instance's table changed.
async fn refused(
    scenario: &Scenario,
    cluster: &LocalCluster,
    check: &SchemaCheck,
    refusal: &switchyard_local::Error,
    wall: Instant,
) -> Result<SimReport> {
    let violations: Vec<Violation> = check
        .after_refusal(cluster)
        .await
        .into_iter()
        .map(|detail| Violation {
            at_ms: u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX),
            check: "refused-changes-nothing",
            detail,
        })
        .collect();
    Ok(SimReport {
        scenario: scenario.name.clone(),
        outcome: "refused".to_owned(),
        halt: None,
        expected: expected_words(&scenario.expect.outcome),
        passed: scenario.expect.outcome == Outcome::Refused && violations.is_empty(),
        rollout_s: 0.0,
        duration_s: wall.elapsed().as_secs_f64(),
        violations,
        writes_acknowledged: 0,
        writes_lost: 0,
        unchecked: Vec::new(),
        max_write_gap_ms: 0,
        max_write_gap_bound_ms: None,
        direct_writes: 0,
        split_brain: (0, Vec::new()),
        samples: 0,
        max_sample_interval_ms: 0,
        max_lag_s: 0,
        blocked_writers: Vec::new(),
        replication_errors: Vec::new(),
        switchovers: 0,
        failovers: Vec::new(),
        failover_waits: (0, 0, None),
        refusal: Some(refusal.to_string()),
        engines: 0,
        steps: 0,
        faults: Vec::new(),
        recoveries: Vec::new(),
        engine_errors: Vec::new(),
        timeline: timeline_lines(cluster.timeline()),
    })
}

/// The engines of one run.
#[derive(Default)]
struct Drive {
    engines: u32,
    steps: u64,
    errors: Vec<String>,
}

impl Drive {
    async fn engines<R, F>(
        &mut self,
        cluster: &LocalCluster,
        plan: &Arc<FaultPlan>,
        make: &F,
        scenario: &Scenario,
        target: &switchyard_plan::decide::Target,
    ) -> Result<Finished>
    where
        R: ClusterRuntime,
        F: Fn(&LocalCluster) -> R,
    {
        let policy = scenario.policy.policy();
        'engine: loop {
            self.engines += 1;
            let runtime = Faulty::new(make(cluster), Arc::clone(plan), cluster);
            let engine = Engine::new(runtime, target.clone(), policy.clone());
            loop {
                self.steps += 1;
                plan.before_step(self.steps, cluster).await;
                let outcome = tokio::select! {
                    r = engine.step() => Some(r),
                    () = plan.engine_killed() => None,
                };
                match outcome {
                    // Killed: drop this engine mid-step, start a new one
                    // once it has been down as long as the fault says.
                    None => {
                        drop(engine);
                        let down = plan.engine_dropped();
                        let until = Instant::now() + down;
                        while Instant::now() < until {
                            plan.resume(cluster, false);
                            tokio::time::sleep(SAMPLE_EVERY).await;
                        }
                        continue 'engine;
                    }
                    Some(Ok(StepOutcome::Done)) => return Ok(Finished::Done),
                    Some(Ok(StepOutcome::Halted(r))) => return Ok(Finished::Halted(r)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.errors.push(e.to_string());
                        if self.errors.len() > ENGINE_RESTARTS as usize {
                            return Err(e.into());
                        }
                        continue 'engine;
                    }
                }
            }
        }
    }
}
