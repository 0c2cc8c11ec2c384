//! Property tests: whole rollouts on the model cluster with faults fired at
//! random runtime calls, checking the invariants after every call and tick.
//!
//! Invariants: at most one writable instance, where writable means "takes a
//! privileged client's commit and is not configured as a replica" (zero only
//! inside a switchover until its deadline, while the primary is down by a
//! fault, or for moments while a primary that started read-only waits for the
//! engine); no instance replicates from a newer source; at most one instance
//! out of service by our action; no forbidden transition started; no
//! candidate holding errant transactions promoted; once faults stop, the
//! rollout reaches `Done` (or halts for a reason a fault explains, with a
//! writable primary); no acknowledged write lost.
//!
//! Faults are placed by runtime call, spread over the length of the same
//! rollout run without faults, so that they land during it (the test prints
//! the share that fired before the rollout first reported done). The mutation
//! tests break one rule each and show the same property catches it.

mod model;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use model::{Fault, KillAt, Model, Setup};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use switchyard_plan::engine::{Engine, EngineError, StepOutcome};
use switchyard_plan::mutation::Mutation;
use switchyard_plan::record::{Intent, SwitchoverStep};
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{
    FailoverPolicy, HaltReason, Policy, Revision, SchemaTarget, Target, WaitReason,
};

/// Steps after the last fault within which the rollout must be done.
const SETTLE_STEPS: u32 = 500;
/// Engine steps a run may take in all.
const MAX_STEPS: u32 = 3_000;

#[derive(Clone, Debug)]
struct Scenario {
    flavor: Flavor,
    from: Version,
    to: Version,
    primary: u32,
    upgraded: Vec<bool>,
    /// Faults, each at a share (per mille) of a clean rollout's runtime calls.
    faults: Vec<(u16, Fault)>,
    /// Roll a schema change (whether the primary may take it in place)
    /// instead of a version upgrade.
    schema: Option<bool>,
    /// A downgrade within a series instead of an upgrade.
    downgrade: bool,
    delay_ms: u64,
    privileged_writer: bool,
    /// A `halt_after` shorter than some waits and backoffs.
    short_halt: bool,
    /// Semi-synchronous replication (half the replicas, rounded up).
    semi_sync: bool,
    /// The failover policy accepts losing acknowledged writes.
    accept_data_loss: bool,
}

fn versions(flavor: Flavor, downgrade: bool) -> (Version, Version) {
    match (flavor, downgrade) {
        (Flavor::Mariadb, false) => (Version::new(10, 5, 27), Version::new(10, 11, 14)),
        (Flavor::Mysql, false) => (Version::new(8, 4, 6), Version::new(9, 7, 0)),
        (Flavor::Mariadb, true) => (Version::new(10, 11, 14), Version::new(10, 11, 9)),
        (Flavor::Mysql, true) => (Version::new(8, 4, 6), Version::new(8, 4, 3)),
    }
}

fn kill_at() -> impl Strategy<Value = KillAt> {
    prop_oneof![
        Just(KillAt::Before),
        Just(KillAt::Inside),
        Just(KillAt::After)
    ]
}

fn fault(n: u32) -> impl Strategy<Value = Fault> {
    let o = 0..n;
    prop_oneof![
        1 => (o.clone(), 1u64..90).prop_map(|(ordinal, s)| Fault::Crash {
            ordinal,
            down_for: Duration::from_secs(s)
        }),
        1 => o.clone()
            .prop_map(|ordinal| Fault::RestartFails { ordinal }),
        1 => (o.clone(), 1u64..60).prop_map(|(ordinal, s)| Fault::ReplicationError {
            ordinal,
            lasting: Duration::from_secs(s)
        }),
        1 => (o.clone(), 2u64..60, 1u64..60).prop_map(|(ordinal, seconds, s)| Fault::Lag {
            ordinal,
            seconds,
            lasting: Duration::from_secs(s)
        }),
        3 => kill_at().prop_map(|at| Fault::KillEngine { at }),
        1 => o.clone().prop_map(|ordinal| Fault::FenceLost { ordinal }),
        1 => o.clone().prop_map(|ordinal| Fault::ErrantWrite { ordinal }),
        1 => prop_oneof![Just(1u32), 1u32..40].prop_map(|times| Fault::PromoteFailsAfterWritable { times }),
        1 => Just(Fault::RecordWriteFails),
        1 => prop_oneof![
            Just("promote"),
            Just("repoint"),
            Just("fence"),
            Just("demote"),
            Just("unfence"),
            Just("undrain")
        ]
        .prop_map(|call| Fault::FailsAfterEffect { call }),
        1 => (1u32..12).prop_map(|steps| Fault::Depose { steps }),
        1 => (o.clone(), 1u64..30).prop_map(|(ordinal, s)| Fault::Freeze {
            ordinal,
            lasting: Duration::from_secs(s)
        }),
        1 => (o.clone(), 1u64..30).prop_map(|(ordinal, s)| Fault::CutOperator {
            ordinal,
            lasting: Duration::from_secs(s)
        }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    scenario_with(|n| proptest::collection::vec((0u16..1000, fault(n)), 0..8).boxed())
}

/// A schedule of faults: (per mille of a clean rollout, fault).
type Schedule = Vec<(u16, Fault)>;

/// Scenarios whose faults come from `faults(number of instances)`.
fn scenario_with(faults: fn(u32) -> BoxedStrategy<Schedule>) -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(Flavor::Mariadb), Just(Flavor::Mysql)],
        2usize..=5,
        proptest::option::weighted(0.3, any::<bool>()),
        proptest::bool::weighted(0.08),
    )
        .prop_flat_map(move |(flavor, n, schema, downgrade)| {
            let n32 = u32::try_from(n).expect("small");
            (
                Just(flavor),
                Just(schema),
                Just(downgrade && schema.is_none()),
                0..n32,
                proptest::collection::vec(any::<bool>(), n),
                faults(n32),
                0u64..1500,
                any::<bool>(),
                proptest::bool::weighted(0.2),
                any::<bool>(),
                proptest::bool::weighted(0.2),
            )
        })
        .prop_map(
            |(
                flavor,
                schema,
                downgrade,
                primary,
                upgraded,
                faults,
                delay_ms,
                privileged,
                short_halt,
                semi_sync,
                accept_data_loss,
            )| {
                let (from, to) = versions(flavor, downgrade);
                // A replica may already run the target (a rollout resumed); the
                // primary never does: its replicas would replicate from a newer source.
                let upgraded = upgraded
                    .iter()
                    .enumerate()
                    .map(|(i, u)| *u && i as u32 != primary && schema.is_none() && !downgrade)
                    .collect();
                // A schema change keeps the version: the target is the current revision.
                let to = if schema.is_some() { from } else { to };
                Scenario {
                    flavor,
                    from,
                    to,
                    primary,
                    upgraded,
                    faults,
                    schema,
                    downgrade,
                    delay_ms,
                    privileged_writer: privileged,
                    short_halt,
                    semi_sync,
                    accept_data_loss,
                }
            },
        )
}

fn policy_for(scn: &Scenario) -> Policy {
    let base = policy();
    Policy {
        failover: FailoverPolicy {
            accept_data_loss: scn.accept_data_loss,
            ..base.failover
        },
        halt_after: if scn.short_halt {
            Duration::from_secs(6)
        } else {
            Duration::from_secs(1800)
        },
        ..base
    }
}

fn policy() -> Policy {
    Policy {
        halt_after: Duration::from_secs(1800),
        switchover_deadline: Duration::from_secs(10),
        drain: Duration::from_secs(1),
        retry_backoff: Duration::from_secs(2),
        ..Policy::default()
    }
}

fn target(flavor: Flavor, to: Version) -> Target {
    Target::new(Revision::new(2, flavor, to, &Default::default()), to)
}

const CHANGE_ID: &str = "add-column-at-end";

fn scenario_target(scn: &Scenario) -> Target {
    let mut t = target(scn.flavor, scn.to);
    t.schema = scn.schema.map(|primary_online| SchemaTarget {
        id: CHANGE_ID.into(),
        statement: "ALTER TABLE app.t ADD COLUMN c INT NULL".into(),
        replica_settings: vec![],
        primary_online,
    });
    t
}

fn setup(scn: &Scenario) -> Setup {
    Setup {
        flavor: scn.flavor,
        versions: scn
            .upgraded
            .iter()
            .map(|u| if *u { scn.to } else { scn.from })
            .collect(),
        primary: scn.primary,
        schema: scn.schema.map(|online| (CHANGE_ID.to_string(), online)),
        replication_delay: Duration::from_millis(scn.delay_ms),
        privileged_writer: scn.privileged_writer,
        semi_sync: scn.semi_sync,
        accept_data_loss: scn.accept_data_loss,
    }
}

/// What a run did.
struct Run {
    violations: Vec<String>,
    done: bool,
    halted: Option<HaltReason>,
    last: Option<StepOutcome>,
    fired: Vec<Fault>,
    fired_before_done: usize,
    log: Vec<String>,
}

/// Runs the scenario's rollout; faults fire at the runtime calls `schedule`
/// gives (absolute call numbers).
fn rollout(scn: &Scenario, mutation: Mutation, schedule: Vec<(u64, Fault)>) -> (Arc<Model>, Run) {
    let model = Arc::new(Model::new(&setup(scn)));
    model.schedule(schedule);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let target = scenario_target(scn);
    let engine_for = |id: u32| {
        Engine::with_mutation(model.handle(id), target.clone(), policy_for(scn), mutation)
    };
    let mut next_id = 1;
    let mut leader = (0u32, engine_for(0));
    let mut deposed: Option<(u32, Engine<model::Handle>, u32)> = None;
    let mut log = Vec::new();
    let (mut done, mut halted, mut last) = (false, None, None);
    let mut first_done_fired: Option<usize> = None;
    let mut quiet_steps = 0;
    let mut halted_steps = 0;
    for step in 0..MAX_STEPS {
        if let Some(steps) = model.take_depose() {
            let id = next_id;
            next_id += 1;
            model.depose(leader.0, id);
            log.push(format!(
                "step {step}: engine {} deposed, engine {id} leads",
                leader.0
            ));
            let old = std::mem::replace(&mut leader, (id, engine_for(id)));
            deposed = Some((old.0, old.1, steps));
        }
        let fired_before = model.fired().len();
        let outcome = match &deposed {
            Some((did, d, _)) => {
                let (a, b) = rt.block_on(async { tokio::join!(d.step(), leader.1.step()) });
                log.push(format!("step {step}: deposed engine {did}: {a:?}"));
                b
            }
            None => rt.block_on(leader.1.step()),
        };
        log.push(format!("step {step}: engine {}: {outcome:?}", leader.0));
        if let Some((did, _, left)) = &mut deposed {
            *left = left.saturating_sub(1);
            if *left == 0 || model.is_dead(*did) {
                deposed = None;
            }
        }
        if model.is_dead(leader.0) {
            let id = next_id;
            next_id += 1;
            model.replace_leader(id);
            log.push(format!(
                "step {step}: engine {} killed, engine {id} takes over",
                leader.0
            ));
            leader = (id, engine_for(id));
            continue;
        }
        let pending = model.pending_faults();
        match outcome {
            Ok(StepOutcome::Done) => {
                first_done_fired.get_or_insert(fired_before);
                // Done counts once every fault fired before the step began.
                if pending == 0 && model.fired().len() == fired_before {
                    done = true;
                    last = Some(StepOutcome::Done);
                    break;
                }
            }
            // A halted engine is still called (the controller reconciles on):
            // it must keep the primary in service. The halt counts once it
            // held for a while with every fault fired and over (a hung
            // instance that comes back is the engine's to deal with).
            Ok(StepOutcome::Halted(reason)) => {
                if halted.as_ref() != Some(&reason) {
                    log.push(format!("halted: {reason}"));
                    halted_steps = 0;
                }
                halted = Some(reason);
                halted_steps = if model.faults_in_force() {
                    0
                } else {
                    halted_steps + 1
                };
                if pending == 0 && halted_steps >= 20 {
                    break;
                }
            }
            Ok(other) => {
                halted = None;
                last = Some(other);
            }
            Err(EngineError::NotLeader(_) | EngineError::Conflict) => {}
            Err(e) => log.push(format!("step {step}: {e}")),
        }
        if pending == 0 {
            quiet_steps += 1;
            if quiet_steps > SETTLE_STEPS {
                break;
            }
        }
        model.tick(Duration::from_millis(200));
    }
    let fired: Vec<Fault> = model.fired().into_iter().map(|(_, _, f)| f).collect();
    let halted_on: Vec<u32> = match &halted {
        Some(HaltReason::ErrantTransactions { ordinal, also, .. }) => std::iter::once(*ordinal)
            .chain(also.keys().copied())
            .collect(),
        _ => Vec::new(),
    };
    let violations = model.final_check(done, &halted_on);
    log.push(format!(
        "at the end (t={}):\n{}",
        model.clock(),
        model.dump()
    ));
    log.push("runtime calls:".into());
    log.extend(model.oplog());
    let run = Run {
        violations,
        done,
        halted,
        last,
        fired_before_done: first_done_fired.unwrap_or(fired.len()),
        fired,
        log,
    };
    (model, run)
}

/// Runtime calls of the scenario's rollout without faults.
fn clean_length(scn: &Scenario, mutation: Mutation) -> u64 {
    let (model, _) = rollout(scn, mutation, Vec::new());
    model.ops()
}

static FAULTS_FIRED: AtomicU64 = AtomicU64::new(0);
static FAULTS_BEFORE_DONE: AtomicU64 = AtomicU64::new(0);

/// Runs one scenario to the end and checks it.
fn run(scn: &Scenario, mutation: Mutation) -> Result<(), TestCaseError> {
    let length = clean_length(scn, mutation).max(1);
    let schedule = scn
        .faults
        .iter()
        .map(|(per_mille, f)| (1 + u64::from(*per_mille) * length / 1000, f.clone()))
        .collect();
    let (model, run) = rollout(scn, mutation, schedule);
    FAULTS_FIRED.fetch_add(run.fired.len() as u64, Ordering::Relaxed);
    FAULTS_BEFORE_DONE.fetch_add(run.fired_before_done as u64, Ordering::Relaxed);
    let trace = || run.log.join("\n");
    prop_assert!(
        run.violations.is_empty(),
        "violations: {:#?}\nfaults fired: {:?}\ntrace:\n{}",
        run.violations,
        run.fired,
        trace()
    );
    let errant_fault = run.fired.iter().any(Fault::may_halt) || model.exposed() > 0;
    if let Some(reason) = &run.halted {
        let explained = match reason {
            HaltReason::NoSafeOrder { .. } => scn.downgrade,
            HaltReason::ErrantTransactions { .. } => errant_fault,
            HaltReason::WaitedTooLong { .. } => errant_fault || scn.short_halt,
            HaltReason::KeepsFailing { .. } => scn.short_halt,
            _ => false,
        };
        // An unfinished switchover is finished or undone before any halt.
        let unfinished = matches!(model.record().intent,
            Some(Intent::Switchover { step, .. }) if step < SwitchoverStep::Repointed);
        prop_assert!(
            !unfinished,
            "halted with an unfinished switchover: {reason}: {:?}\ntrace:\n{}",
            model.record().intent,
            trace()
        );
        prop_assert!(
            explained,
            "halted for a reason no fault explains: {reason}\nfaults fired: {:?}\ntrace:\n{}",
            run.fired,
            trace()
        );
        prop_assert!(
            model.has_writer_or_primary_down(),
            "halted without a writable primary: {reason}\ntrace:\n{}",
            trace()
        );
        if scn.downgrade {
            prop_assert_eq!(
                model.versions(),
                setup(scn).versions,
                "a refused downgrade changed versions"
            );
        }
        return Ok(());
    }
    // A quarantined instance may have been the only candidate left for the
    // primary's switchover: the engine waits for a person to re-provision it.
    let quarantined = model.record().quarantined;
    // Or the only replicas that could acknowledge the new primary's
    // commits: its writes block, which the engine reports.
    if !run.done
        && !quarantined.is_empty()
        && matches!(
            &run.last,
            Some(StepOutcome::Waited(
                WaitReason::NoCandidate { .. } | WaitReason::TooFewReplicas { .. }
            ))
        )
    {
        return Ok(());
    }
    if !run.done && errant_fault {
        // An errant replica may be the only candidate: the engine waits for a person.
        let waits_for_errant =
            matches!(&run.last, Some(StepOutcome::Waited(r)) if r.to_string().contains("errant"));
        prop_assert!(
            waits_for_errant,
            "not done, and not waiting on errant transactions: {:?}\ntrace:\n{}",
            run.last,
            trace()
        );
        return Ok(());
    }
    prop_assert!(
        run.done,
        "the rollout did not finish after the faults stopped\nfaults fired: {:?}\ntrace:\n{}",
        run.fired,
        trace()
    );
    prop_assert!(
        !scn.downgrade,
        "a downgrade with no safe order finished:\n{}",
        trace()
    );
    // A quarantined instance (a failed primary back with writes nobody
    // acknowledged) waits for a person, outside the rollout.
    let in_service = |o: usize| !quarantined.contains_key(&u32::try_from(o).expect("small"));
    prop_assert!(
        model
            .versions()
            .iter()
            .enumerate()
            .all(|(o, v)| *v == scn.to || !in_service(o)),
        "not every instance runs {}: {:?}",
        scn.to,
        model.versions()
    );
    prop_assert!(
        model.acknowledged() > 0,
        "the model took no writes\nfaults fired: {:?}\ntrace:\n{}",
        run.fired,
        trace()
    );
    if scn.schema.is_some() {
        prop_assert!(
            model
                .altered()
                .iter()
                .enumerate()
                .all(|(o, a)| *a || !in_service(o)),
            "not every instance has the schema change"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn rollouts_keep_the_invariants_under_faults(scn in scenario()) {
        run(&scn, Mutation::None)?;
    }
}

/// At least 80% of the faults must fire before the rollout first reported
/// done (faults after the end prove little). Runs its own cases so the share
/// is measured whatever the test order.
#[test]
fn faults_land_during_the_rollout() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    FAULTS_FIRED.store(0, Ordering::Relaxed);
    FAULTS_BEFORE_DONE.store(0, Ordering::Relaxed);
    runner
        .run(&scenario(), |scn| run(&scn, Mutation::None))
        .expect("the property holds");
    let fired = FAULTS_FIRED.load(Ordering::Relaxed);
    let before = FAULTS_BEFORE_DONE.load(Ordering::Relaxed);
    let share = before as f64 / fired.max(1) as f64;
    println!(
        "faults fired: {fired}, before the rollout first reported done: {before} ({:.0}%)",
        share * 100.0
    );
    assert!(fired > 0, "no fault fired");
    assert!(
        share >= 0.8,
        "only {:.0}% of the faults fired before the rollout was done",
        share * 100.0
    );
}

/// Each deliberately broken rule must be caught by the same property.
/// `expected` holds fragments of the failures the broken rule may cause (the
/// checks that catch it); the first failure found must contain one.
fn assert_caught(mutation: Mutation, strategy: impl Strategy<Value = Scenario>, expected: &[&str]) {
    assert_caught_with(
        mutation,
        strategy,
        expected,
        Config::default().max_shrink_iters,
    );
}

/// [`assert_caught`] on the first failure as found, not shrunk (shrinking a
/// failover's long scenarios costs minutes): for strategies narrow enough
/// that any failure found is the expected one.
fn assert_caught_unshrunk(
    mutation: Mutation,
    strategy: impl Strategy<Value = Scenario>,
    expected: &[&str],
) {
    assert_caught_with(mutation, strategy, expected, 0);
}

fn assert_caught_with(
    mutation: Mutation,
    strategy: impl Strategy<Value = Scenario>,
    expected: &[&str],
    max_shrink_iters: u32,
) {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        max_shrink_iters,
        ..Config::default()
    });
    match runner.run(&strategy, |scn| run(&scn, mutation)) {
        Ok(()) => panic!("the property tests did not catch the mutation {mutation:?}"),
        Err(TestError::Fail(reason, _)) => {
            let reason = reason.to_string();
            let first = reason.lines().take(3).collect::<Vec<_>>().join(" | ");
            assert!(
                expected.iter().any(|e| reason.contains(e)),
                "{mutation:?} was caught, but not by {expected:?}: {reason}"
            );
            println!("{mutation:?} caught: {first}");
        }
        Err(other) => panic!("{mutation:?}: {other}"),
    }
}

#[test]
fn promoting_the_newest_while_an_instance_is_down_is_caught() {
    // MOCO's documented hole: an old replica down during the upgrade. The
    // general scenarios find it too, but slowly; these crash one instance
    // early for long enough to span the primary's switchover.
    let crash_early = |n: u32| {
        (0..n, 60u64..200)
            .prop_map(|(ordinal, s)| {
                vec![(
                    0,
                    Fault::Crash {
                        ordinal,
                        down_for: Duration::from_secs(s),
                    },
                )]
            })
            .boxed()
    };
    let replica_down = scenario_with(crash_early).prop_filter(
        "an upgrade, a replica crashes, another stays up",
        |s| {
            s.upgraded.len() >= 3
                && !s.downgrade
                && s.schema.is_none()
                && s.faults.iter().all(
                    |(_, f)| !matches!(f, Fault::Crash { ordinal, .. } if *ordinal == s.primary),
                )
        },
    );
    assert_caught(
        Mutation::PromoteNewestIgnoringDown,
        replica_down,
        &["a newer source"],
    );
}

#[test]
fn restarting_the_primary_in_place_is_caught() {
    assert_caught(
        Mutation::PrimaryInPlace,
        scenario(),
        &["no writable instance outside a switchover"],
    );
}

#[test]
fn taking_two_instances_out_at_once_is_caught() {
    // Without failovers (asynchronous, no loss accepted, no hang): a
    // failover's held-back replicas make the mutation loop on a drain
    // before two are out.
    let no_failover = scenario().prop_filter("no failover", |s| {
        !s.semi_sync
            && !s.accept_data_loss
            && s.faults
                .iter()
                .all(|(_, f)| !matches!(f, Fault::Freeze { .. } | Fault::CutOperator { .. }))
    });
    assert_caught(
        Mutation::TwoAtOnce,
        no_failover,
        // Two instances out at once also lets a second switchover start
        // while the first old primary still waits to rejoin.
        &[
            "out of service by our action",
            "its fence was not held",
            "acknowledged writes",
        ],
    );
}

#[test]
fn altering_the_primary_in_place_when_it_needs_a_switchover_is_caught() {
    let needs_switchover = scenario()
        .prop_filter("a schema change the primary cannot take online", |s| {
            s.schema == Some(false)
        });
    assert_caught(
        Mutation::AlterPrimaryInPlace,
        needs_switchover,
        &["altered in place"],
    );
}

#[test]
fn skipping_the_catch_up_is_caught() {
    assert_caught(Mutation::SkipCatchUp, scenario(), &["acknowledged writes"]);
}

#[test]
fn unfencing_the_old_primary_after_the_promotion_is_caught() {
    assert_caught(
        Mutation::UnfenceOldAfterPromote,
        scenario(),
        &["are all writable"],
    );
}

/// Engine kills and lost fences during a switchover on MariaDB with a
/// privileged client writing to the primary.
fn fence_losses() -> impl Strategy<Value = Scenario> {
    let kills = |_n: u32| {
        proptest::collection::vec(
            (
                0u16..1000,
                kill_at().prop_map(|at| Fault::KillEngine { at }),
            ),
            1..4,
        )
        .boxed()
    };
    scenario_with(kills)
        .prop_map(|mut s| {
            s.privileged_writer = true;
            s
        })
        .prop_filter("MariaDB, whose fence dies with the engine", |s| {
            s.flavor == Flavor::Mariadb && !s.downgrade
        })
}

#[test]
fn skipping_the_refence_on_resume_is_caught() {
    assert_caught(
        Mutation::SkipRefenceOnResume,
        fence_losses(),
        &["its fence was not held", "acknowledged writes"],
    );
}

#[test]
fn skipping_the_catch_up_on_resume_is_caught() {
    assert_caught(
        Mutation::SkipRecatchUpOnResume,
        fence_losses(),
        &[
            "acknowledged writes",
            "writes acknowledged while a fence was lost",
        ],
    );
}

#[test]
fn promoting_without_the_errant_check_is_caught() {
    let errant_replicas = |n: u32| {
        proptest::collection::vec(
            (
                0u16..600,
                (0..n).prop_map(|ordinal| Fault::ErrantWrite { ordinal }),
            ),
            1..4,
        )
        .boxed()
    };
    let strategy = scenario_with(errant_replicas)
        .prop_filter("MariaDB, whose replicas take privileged writes", |s| {
            s.flavor == Flavor::Mariadb && !s.downgrade
        });
    assert_caught(
        Mutation::PromoteWithoutErrantCheck,
        strategy,
        &["holds errant transactions"],
    );
}

#[test]
fn releasing_the_fence_before_the_ddl_is_caught() {
    let needs_switchover = scenario()
        .prop_filter("a schema change the primary cannot take online", |s| {
            s.schema == Some(false)
        });
    assert_caught(
        Mutation::ReleaseFenceBeforeDdl,
        needs_switchover,
        &["are all writable"],
    );
}

#[test]
fn undoing_without_fencing_the_candidate_is_caught() {
    let failing_promotions = |_n: u32| {
        proptest::collection::vec(
            (
                0u16..1000,
                (10u32..40).prop_map(|times| Fault::PromoteFailsAfterWritable { times }),
            ),
            1..3,
        )
        .boxed()
    };
    assert_caught(
        Mutation::UndoWithoutFencingCandidate,
        scenario_with(failing_promotions),
        &["are all writable"],
    );
}

#[test]
fn downgrading_in_any_order_is_caught() {
    let downgrades = scenario().prop_map(|mut s| {
        s.downgrade = true;
        s.schema = None;
        let (from, to) = versions(s.flavor, true);
        s.from = from;
        s.to = to;
        s.upgraded = vec![false; s.upgraded.len()];
        s
    });
    assert_caught(
        Mutation::DowngradeInAnyOrder,
        downgrades,
        &["a newer source"],
    );
}

#[test]
fn an_instance_that_never_comes_back_halts_the_rollout() {
    let (from, to) = versions(Flavor::Mariadb, false);
    let scn = Scenario {
        flavor: Flavor::Mariadb,
        from,
        to,
        primary: 0,
        upgraded: vec![false; 3],
        faults: vec![],
        schema: None,
        downgrade: false,
        delay_ms: 200,
        privileged_writer: false,
        short_halt: false,
        semi_sync: false,
        accept_data_loss: false,
    };
    let model = Arc::new(Model::new(&setup(&scn)));
    let policy = Policy {
        halt_after: Duration::from_secs(120),
        ..policy()
    };
    let engine = Engine::new(model.handle(0), target(Flavor::Mariadb, to), policy);
    model.inject(&Fault::Crash {
        ordinal: 1,
        down_for: Duration::from_secs(1_000_000),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let finished = rt.block_on(engine.run(1000)).expect("the engine runs");
    let switchyard_plan::Finished::Halted(reason) = finished else {
        panic!("expected a halt, got {finished:?}");
    };
    assert_eq!(reason.category(), "keeps-failing", "{reason}");
    assert!(reason.to_string().contains("recover:1"), "{reason}");
    assert!(model.violations().is_empty(), "{:?}", model.violations());
    // Nothing was upgraded while instance 1 was down.
    assert_eq!(model.versions(), vec![from; 3]);
    assert!(model.record().halted.is_some());
}

/// The engine killed at every runtime call of a primary switchover (before,
/// inside or after the call), then replaced by a new engine; on both flavors,
/// with a privileged client writing to the old primary.
#[test]
fn an_engine_killed_at_any_point_of_a_switchover_resumes_safely() {
    for flavor in [Flavor::Mariadb, Flavor::Mysql] {
        let (from, to) = versions(flavor, false);
        let scn = Scenario {
            flavor,
            from,
            to,
            primary: 0,
            // The replicas already run the target: the rollout is the switchover.
            upgraded: vec![false, true, true],
            faults: vec![],
            schema: None,
            downgrade: false,
            delay_ms: 800,
            privileged_writer: true,
            short_halt: false,
            semi_sync: false,
            accept_data_loss: false,
        };
        let length = clean_length(&scn, Mutation::None);
        let mut halts = 0;
        for call in 1..=length.min(40) {
            for at in [KillAt::Before, KillAt::Inside, KillAt::After] {
                let (model, run) =
                    rollout(&scn, Mutation::None, vec![(call, Fault::KillEngine { at })]);
                // On MariaDB the fence is a lock that dies with the engine: a
                // privileged client may commit on the old primary before the
                // next engine fences it again. Once the candidate took writes
                // too, that cannot be merged: the rollout halts naming them.
                let reported = flavor == Flavor::Mariadb
                    && model.exposed() > 0
                    && matches!(
                        run.halted,
                        Some(HaltReason::ErrantTransactions { ordinal: 0, .. })
                    );
                halts += usize::from(reported);
                assert!(
                    run.violations.is_empty() && (run.done || reported),
                    "{flavor:?} killed at call {call} ({at:?}): {:#?}\n{}",
                    run.violations,
                    run.log.join("\n")
                );
            }
        }
        println!(
            "{flavor:?}: {halts} of {} kills left writes to report",
            3 * length.min(40)
        );
        if flavor == Flavor::Mysql {
            assert_eq!(halts, 0, "MySQL's fence does not die with the engine");
        }
    }
}

/// The lease rule: an engine that lost its lease changes no server, however
/// far into a switchover it was. Returns the runtime calls the deposed engine
/// made after its lease ended.
fn calls_of_a_deposed_engine(mutation: Mutation) -> Vec<String> {
    let (from, to) = versions(Flavor::Mariadb, false);
    let scn = Scenario {
        flavor: Flavor::Mariadb,
        from,
        to,
        primary: 0,
        upgraded: vec![false, true, true],
        faults: vec![],
        schema: None,
        downgrade: false,
        delay_ms: 300,
        privileged_writer: false,
        short_halt: false,
        semi_sync: false,
        accept_data_loss: false,
    };
    let model = Arc::new(Model::new(&setup(&scn)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let deposed = Engine::with_mutation(model.handle(0), scenario_target(&scn), policy(), mutation);
    // Deposed before its first step; its successor holds the lease once the
    // old one ended (at once: it confirmed nothing yet).
    model.depose(0, 1);
    let before = model.oplog().len();
    model.tick(Duration::from_millis(200));
    let _outcome = rt.block_on(deposed.step());
    model
        .oplog()
        .into_iter()
        .skip(before)
        .filter(|c| c.contains("engine 0") && !c.contains("observe") && !c.contains("load record"))
        .collect()
}

#[test]
fn a_deposed_engine_changes_no_server() {
    let calls = calls_of_a_deposed_engine(Mutation::None);
    assert!(calls.is_empty(), "the deposed engine acted: {calls:?}");
}

#[test]
fn skipping_the_leadership_check_is_caught() {
    let calls = calls_of_a_deposed_engine(Mutation::SkipLeadershipCheck);
    assert!(
        !calls.is_empty(),
        "without the lease check the deposed engine should have acted"
    );
    println!("SkipLeadershipCheck caught: the deposed engine made {calls:?}");
}

/// The primary fails early (a crash or a hang long enough to be failed over)
/// under semi-synchronous replication, with at least two replicas, and the
/// policy accepts no data loss.
fn primary_failures() -> impl Strategy<Value = Scenario> {
    let fail_early = |n: u32| {
        (0..n, 5u64..40, any::<bool>(), 0u16..300)
            .prop_map(|(ordinal, s, hang, at)| {
                let lasting = Duration::from_secs(s);
                let fault = if hang {
                    Fault::Freeze { ordinal, lasting }
                } else {
                    Fault::Crash {
                        ordinal,
                        down_for: lasting,
                    }
                };
                vec![(at, fault)]
            })
            .boxed()
    };
    scenario_with(fail_early)
        .prop_map(|mut s| {
            s.semi_sync = true;
            s.accept_data_loss = false;
            // The fault hits the primary.
            let primary = s.primary;
            for (_, f) in &mut s.faults {
                match f {
                    Fault::Freeze { ordinal, .. } | Fault::Crash { ordinal, .. } => {
                        *ordinal = primary;
                    }
                    _ => {}
                }
            }
            s
        })
        .prop_filter("three instances or more", |s| s.upgraded.len() >= 3)
}

#[test]
fn failing_over_to_the_replica_that_received_the_least_is_caught() {
    assert_caught_unshrunk(
        Mutation::FailoverLeastReceived,
        primary_failures().prop_filter("no schema change", |s| s.schema.is_none()),
        &["recorded lossless promoted a candidate lacking"],
    );
}

#[test]
fn failing_over_without_applying_the_relay_log_is_caught() {
    assert_caught_unshrunk(
        Mutation::FailoverWithoutApplyingRelay,
        relay_held_at_failure(),
        &["recorded lossless promoted a candidate lacking"],
    );
}

/// Primary failures while every replica applies slowly (8 s behind, for
/// 30 s from just before the failure): their relay logs still hold
/// acknowledged writes once the failure is detected. The slowness passes, so
/// the rollout's last switchover (which waits for a lag of at most 1 s) can
/// finish; a lasting lag of 2 s or more kept it waiting for ever.
fn relay_held_at_failure() -> impl Strategy<Value = Scenario> {
    primary_failures()
        .prop_filter("no schema change", |s| s.schema.is_none())
        .prop_map(|mut s| {
            s.delay_ms = s.delay_ms.min(500);
            let primary = s.primary;
            let replicas: Vec<u32> = (0..s.upgraded.len() as u32)
                .filter(|o| *o != primary)
                .collect();
            let mut slow = Vec::new();
            for (at, _) in &s.faults {
                for ordinal in &replicas {
                    slow.push((
                        at.saturating_sub(1),
                        Fault::Lag {
                            ordinal: *ordinal,
                            seconds: 8,
                            lasting: Duration::from_secs(30),
                        },
                    ));
                }
            }
            s.faults.extend(slow);
            s.faults.sort_by_key(|(at, _)| *at);
            s
        })
}

#[test]
fn slow_replicas_at_a_primary_failure_keep_the_invariants() {
    // The unmutated engine on the mutation test's scenarios: whatever the
    // mutation test finds is the mutation's doing.
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    if let Err(e) = runner.run(&relay_held_at_failure(), |scn| run(&scn, Mutation::None)) {
        panic!("{e}");
    }
}

#[test]
fn failing_over_without_a_lossless_proof_is_caught() {
    // Asynchronous replication: no failover can be proven lossless.
    let asynchronous = primary_failures().prop_map(|mut s| {
        s.semi_sync = false;
        s
    });
    assert_caught_unshrunk(
        Mutation::FailoverWithoutLosslessProof,
        asynchronous,
        &["may lose acknowledged writes ran though the policy does not accept it"],
    );
}

#[test]
fn rejoining_a_failed_primary_without_judging_it_is_caught() {
    // A hang: the failed primary comes back holding commits it took alone.
    let hangs = primary_failures()
        .prop_filter("a hang", |s| {
            s.faults
                .iter()
                .all(|(_, f)| matches!(f, Fault::Freeze { .. }))
        })
        .prop_map(|mut s| {
            s.privileged_writer = true;
            s
        });
    assert_caught_unshrunk(
        Mutation::RejoinFailedPrimaryWithoutCheck,
        hangs,
        &["acknowledged writes", "lost", "errant", "transactions"],
    );
}

/// Failovers that cannot isolate every replica (one hangs too), which the
/// policy accepts.
fn stragglers() -> impl Strategy<Value = Scenario> {
    // The primary hangs; a replica hangs too just before the failover, so
    // the failover (which accepts the loss) cannot isolate it, and it comes
    // back before the failed primary does.
    let straggler = |n: u32| {
        (1..n, 0u16..300, 20u16..120, 15u64..40, 3u64..10)
            .prop_map(move |(offset, at, later, hang, short)| {
                // Ordinals relative to the primary, set below.
                let (primary, replica) = (0, offset);
                vec![
                    (
                        at,
                        Fault::Freeze {
                            ordinal: primary,
                            lasting: Duration::from_secs(hang),
                        },
                    ),
                    (
                        at + later,
                        Fault::Freeze {
                            ordinal: replica,
                            lasting: Duration::from_secs(short),
                        },
                    ),
                ]
            })
            .boxed()
    };
    scenario_with(straggler)
        .prop_filter("three instances or more", |s| s.upgraded.len() >= 3)
        .prop_map(|mut s| {
            s.semi_sync = true;
            s.accept_data_loss = true;
            let n = u32::try_from(s.upgraded.len()).expect("small");
            for (_, f) in &mut s.faults {
                if let Fault::Freeze { ordinal, .. } = f {
                    *ordinal = (*ordinal + s.primary) % n;
                }
            }
            s
        })
}

#[test]
fn leaving_a_replica_connected_to_a_failed_primary_is_caught() {
    assert_caught_unshrunk(
        Mutation::KeepFollowersOfFailedPrimary,
        stragglers(),
        &["still receives from", "acknowledged writes"],
    );
}

#[test]
fn failovers_that_cannot_isolate_every_replica_keep_the_invariants() {
    // The twin of the test above, unmutated: what it catches is the mutation.
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    if let Err(e) = runner.run(&stragglers(), |scn| run(&scn, Mutation::None)) {
        panic!("{e}");
    }
}

#[test]
fn judging_a_follower_of_a_failed_primary_on_what_it_executed_is_caught() {
    // A race the random scenarios reach rarely (the rotating seed 583 found
    // it): a replica the failover could not isolate, lagging, still follows
    // the failed primary when that one runs again; it receives and applies
    // the failed primary's last commit between the decision's observation
    // and its repoint, then holds what the new primary lacks. This runs
    // that seed's cases; a change to the scenario generator may move the
    // race elsewhere, which this test then says.
    let mut runner = TestRunner::new(Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(583),
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    let mutation = Mutation::JudgeFollowersOnExecuted;
    match runner.run(&scenario(), |scn| run(&scn, mutation)) {
        Ok(()) => {
            panic!("the property tests did not catch the mutation {mutation:?} with seed 583")
        }
        Err(TestError::Fail(reason, _)) => {
            let reason = reason.to_string();
            assert!(
                reason.contains("holds transactions the primary"),
                "{mutation:?} was caught, but not by the errant-transactions check: {reason}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}
