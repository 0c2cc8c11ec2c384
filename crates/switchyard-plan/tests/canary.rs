//! The canary within a cluster (`Policy::canary_bake`): after the first instance completes
//! the target, nothing else changes until it has served on it, healthy, for the bake.
//!
//! The rollouts here run the decision in a loop against an ideal cluster (every action
//! takes effect at once; the clock moves one second a step, or to the end of a wait), with
//! the record's canary kept as the engine keeps it (`note_canary` before each decision),
//! and the canary made unhealthy for a while where a test says so. The check is on what
//! the loop did: the time between the canary's return to service and the first change to
//! any other instance.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_plan::decide::{decide_mutated, note_canary};
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::mutation::Mutation;
use switchyard_plan::record::Intent;
use switchyard_plan::simulate::plan;
use switchyard_plan::topology::{GaleraState, TopologyKind};
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{
    Action, Health, Instance, Observed, Policy, Record, Revision, Role, Target, Timestamp,
    WaitReason,
};

const BAKE: Duration = Duration::from_secs(300);

fn v(s: &str) -> Version {
    Version::parse(s).expect("test version")
}

/// Revision 1, and revision 2 with a static variable changed.
fn rev(number: u64) -> Revision {
    let mut config = BTreeMap::new();
    if number > 1 {
        config.insert("performance_schema".to_owned(), "ON".to_owned());
    }
    Revision::new(number, Flavor::Mariadb, v("10.11.6"), &config)
}

/// A configuration change by rolling restart (revision 1 → 2, same version).
fn target() -> Target {
    Target {
        revision: rev(2),
        version: v("10.11.6"),
        online: None,
        schema: None,
    }
}

/// A healthy MariaDB cluster of `n`, instance 0 the primary.
fn cluster(n: u32) -> Observed {
    let instances = (0..n)
        .map(|ordinal| Instance {
            ordinal,
            role: if ordinal == 0 {
                Role::Primary
            } else {
                Role::Replica
            },
            version: v("10.11.6"),
            revision: rev(1),
            health: Health::Ready,
            gtid: Some(GtidSet::parse(Flavor::Mariadb, "0-1-5").expect("gtid")),
            writable: ordinal == 0,
            fenced: false,
            drained: false,
            source: (ordinal != 0).then_some(0),
            schema: None,
            link: None,
            ack_replicas: None,
            galera: None,
        })
        .collect();
    Observed {
        kind: TopologyKind::Async,
        flavor: Flavor::Mariadb,
        instances,
    }
}

/// A healthy Galera cluster of `n` MariaDB nodes, node 0 the writer.
fn galera_cluster(n: u32) -> Observed {
    let mut o = cluster(n);
    o.kind = TopologyKind::Galera;
    for i in &mut o.instances {
        i.source = None;
        i.writable = true;
        i.gtid = None;
        i.galera = Some(GaleraState::synced(n));
    }
    o
}

fn policy(bake: Option<Duration>) -> Policy {
    Policy {
        canary_bake: bake,
        ..Policy::default()
    }
}

fn inst(o: &mut Observed, ordinal: u32) -> &mut Instance {
    o.instances
        .iter_mut()
        .find(|i| i.ordinal == ordinal)
        .expect("instance")
}

/// What a rollout loop saw: when the canary returned to service, when another instance
/// was first changed, and the waits for the bake.
#[derive(Debug, Default)]
struct Trace {
    canary: Option<(u32, Timestamp)>,
    first_other_change: Option<(u32, Timestamp)>,
    bake_waits: usize,
    done: bool,
}

/// A rolling restart of 3 instances by the decision (with `mutation`), ideal effects; the
/// canary lags beyond the bound between `sick` seconds after its return (if given).
fn roll(mutation: Mutation, bake: Option<Duration>, sick: Option<(u64, u64)>) -> Trace {
    roll_over(cluster(3), mutation, bake, sick)
}

/// [`roll`] over `observed`.
fn roll_over(
    mut observed: Observed,
    mutation: Mutation,
    bake: Option<Duration>,
    sick: Option<(u64, u64)>,
) -> Trace {
    let mut record = Record::default();
    let target = target();
    let policy = policy(bake);
    let mut now = Timestamp(1_000_000);
    let mut trace = Trace::default();
    for _ in 0..10_000 {
        if let (Some((ordinal, back)), Some((from, to))) = (trace.canary, sick) {
            let t = now.since(back).as_secs();
            inst(&mut observed, ordinal).health = if (from..to).contains(&t) {
                Health::Lagging { seconds: 3600 }
            } else {
                Health::Ready
            };
        }
        record.canary = note_canary(&observed, &record, &target, &policy, now);
        let action = decide_mutated(mutation, &observed, &record, &target, &policy, now);
        let changed = match &action {
            Action::Drain { ordinal }
            | Action::Restart { ordinal, .. }
            | Action::ApplyVariables { ordinal, .. }
            | Action::RunDdl { ordinal, .. } => Some(*ordinal),
            Action::Switchover { from, .. } => Some(*from),
            _ => None,
        };
        if let (Some(o), Some((canary, _))) = (changed, trace.canary)
            && o != canary
            && trace.first_other_change.is_none()
        {
            trace.first_other_change = Some((o, now));
        }
        match action {
            Action::Done => {
                trace.done = true;
                return trace;
            }
            Action::Halt { reason } => panic!("halted: {reason}"),
            Action::Wait {
                reason: WaitReason::CanaryBake { .. },
            } => trace.bake_waits += 1,
            Action::Wait { .. } => {}
            Action::Drain { ordinal } => {
                record.intent = Some(Intent::Drained { ordinal, at: now });
                inst(&mut observed, ordinal).drained = true;
            }
            Action::Restart { ordinal, .. } => {
                let i = inst(&mut observed, ordinal);
                i.revision = target.revision.clone();
                i.writable = i.galera.is_some() || (i.role == Role::Primary && !i.fenced);
            }
            Action::Undrain { ordinal } => {
                record.intent = None;
                inst(&mut observed, ordinal).drained = false;
                if trace.canary.is_none() {
                    trace.canary = Some((ordinal, now));
                }
            }
            Action::Switchover { from, to } => {
                // The primary goes last: the rollout's end is not what is checked here.
                for i in &mut observed.instances {
                    if i.ordinal == from {
                        i.role = Role::Replica;
                        i.writable = false;
                        i.source = Some(to);
                        i.revision = target.revision.clone();
                    } else if i.ordinal == to {
                        i.role = Role::Primary;
                        i.writable = true;
                        i.source = None;
                    } else {
                        i.source = Some(to);
                    }
                }
            }
            other => panic!("unexpected step in a healthy rolling restart: {other}"),
        }
        now = now.after(Duration::from_secs(1));
    }
    panic!("the rollout did not end: {trace:?}");
}

/// The invariant: no other instance changes before the canary has served its bake.
fn check(trace: &Trace, bake: Duration) -> Result<(), String> {
    let (canary, back) = trace.canary.ok_or("no canary returned to service")?;
    let (other, at) = trace
        .first_other_change
        .ok_or("no other instance was changed")?;
    if at.since(back) < bake {
        return Err(format!(
            "instance {other} changed {:?} after canary {canary} returned, before its bake of {bake:?}",
            at.since(back)
        ));
    }
    Ok(())
}

#[test]
fn nothing_else_changes_before_the_canary_has_baked() {
    let trace = roll(Mutation::None, Some(BAKE), None);
    assert!(trace.done, "{trace:?}");
    check(&trace, BAKE).expect("the canary's bake holds");
    assert!(trace.bake_waits > 0, "{trace:?}");
    // The canary is the first replica done: replicas go first, highest ordinal first.
    assert_eq!(trace.canary.map(|c| c.0), Some(2));
}

/// A canary lagging from 100 s to 200 s after its return: the bake is 300 s of unbroken
/// health from 200 s on, so nothing else changes before 500 s.
fn unhealthy_canary_bakes_again(observed: Observed) {
    let trace = roll_over(observed, Mutation::None, Some(BAKE), Some((100, 200)));
    assert!(trace.done, "{trace:?}");
    let (_, back) = trace.canary.expect("canary");
    let (_, at) = trace.first_other_change.expect("other change");
    assert!(
        at.since(back) >= Duration::from_secs(200) + BAKE,
        "went on {:?} after the canary returned",
        at.since(back)
    );
}

#[test]
fn an_unhealthy_canary_starts_its_bake_again() {
    unhealthy_canary_bakes_again(cluster(3));
}

#[test]
fn without_a_bake_the_rollout_does_not_wait() {
    let trace = roll(Mutation::None, None, None);
    assert!(trace.done);
    assert_eq!(trace.bake_waits, 0);
    let (_, back) = trace.canary.expect("canary");
    let (_, at) = trace.first_other_change.expect("other change");
    assert!(at.since(back) < BAKE);
}

#[test]
fn skipping_the_bake_is_caught() {
    let trace = roll(Mutation::SkipCanaryBake, Some(BAKE), None);
    let err = check(&trace, BAKE).expect_err("the check must catch a skipped bake");
    assert!(err.contains("before its bake"), "{err}");
}

#[test]
fn the_plan_shows_the_bake_once_between_the_canary_and_the_next_instance() {
    let steps = plan(&cluster(3), &target(), &policy(Some(BAKE)));
    let keys: Vec<String> = steps.iter().map(|s| s.action.key()).collect();
    let bake = keys
        .iter()
        .position(|k| k == "wait:canary-bake:2")
        .unwrap_or_else(|| panic!("no bake in the plan: {keys:?}"));
    assert_eq!(keys.iter().filter(|k| k.contains("canary-bake")).count(), 1);
    assert_eq!(keys[bake - 1], "undrain:2", "{keys:?}");
    assert_eq!(keys[bake + 1], "drain:1", "{keys:?}");
    assert_eq!(keys.last().map(String::as_str), Some("done"), "{keys:?}");
}

#[test]
fn on_galera_nothing_else_changes_before_the_canary_has_baked() {
    let trace = roll_over(galera_cluster(3), Mutation::None, Some(BAKE), None);
    assert!(trace.done, "{trace:?}");
    check(&trace, BAKE).expect("the canary's bake holds on Galera");
    assert!(trace.bake_waits > 0, "{trace:?}");
    // Non-writers first, highest ordinal first: node 2 is the canary.
    assert_eq!(trace.canary.map(|c| c.0), Some(2));
    let skipped = roll_over(
        galera_cluster(3),
        Mutation::SkipCanaryBake,
        Some(BAKE),
        None,
    );
    let err = check(&skipped, BAKE).expect_err("the check must catch a skipped bake on Galera");
    assert!(err.contains("before its bake"), "{err}");
}

#[test]
fn on_galera_an_unhealthy_canary_starts_its_bake_again() {
    unhealthy_canary_bakes_again(galera_cluster(3));
}
