//! Property tests of the Galera decision (a schema change rolled node by node).
//!
//! Two properties, each checked with the rules as written and with each rule
//! broken on purpose (the `mutations` feature), which they must catch:
//!
//! - **Every state**: from any observed Galera cluster and record (nodes
//!   crashed, unreachable, donors, joining, out of the primary component,
//!   missing from the membership, drained; an ALTER recorded, failed), an
//!   action that takes a node out ([`Action::Drain`]) or alters it
//!   ([`Action::RunDdl`]) takes out one node at a time, never while another
//!   node is not synced (a donor, desynced, joining, missing) or the node
//!   itself is a donor, and never when the others would lose quorum; a node
//!   lost while its ALTER is recorded halts the rollout.
//! - **Whole rollouts**: a model cluster whose nodes turn donor or joining at
//!   random moments is rolled to the end by the decision; after every step
//!   at most one node is out, and the rollout ends done with every node
//!   altered.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use switchyard_plan::decide::{SchemaTarget, decide_mutated};
use switchyard_plan::mutation::Mutation;
use switchyard_plan::record::{Failure, Intent};
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{
    Action, GaleraState, Health, Instance, Observed, Policy, Record, Revision, Role, Target,
    Timestamp, WsrepState,
};

const CHANGE: &str = "add-note";
const NOW: Timestamp = Timestamp(1_000_000);

#[derive(Clone, Debug)]
struct Node {
    health: Health,
    state: WsrepState,
    primary_component: bool,
    /// Its component lacks one node.
    short: bool,
    drained: bool,
    altered: bool,
}

#[derive(Clone, Debug)]
struct Case {
    nodes: Vec<Node>,
    writer: u32,
    /// (altering rather than drained, the node's index modulo the size).
    intent: Option<(bool, u32)>,
    /// The recorded ALTER failed.
    failed: bool,
}

fn version() -> Version {
    Version::new(10, 11, 14)
}

fn revision() -> Revision {
    Revision::new(1, Flavor::Mariadb, version(), &BTreeMap::new())
}

fn target() -> Target {
    let mut t = Target::new(revision(), version());
    t.schema = Some(SchemaTarget {
        id: CHANGE.into(),
        statement: "ALTER TABLE app.t ADD COLUMN note VARCHAR(20) DEFAULT NULL".into(),
        replica_settings: Vec::new(),
        primary_online: true,
    });
    t
}

fn node() -> impl Strategy<Value = Node> {
    let health = prop_oneof![
        8 => Just(Health::Ready),
        1 => Just(Health::Crashed),
        1 => Just(Health::Starting),
        1 => Just(Health::Unreachable { reason: "refused".into() }),
    ];
    let state = prop_oneof![
        6 => Just(WsrepState::Synced),
        1 => Just(WsrepState::DonorDesynced),
        1 => Just(WsrepState::Joining),
        1 => Just(WsrepState::Joined),
    ];
    (
        health,
        state,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(
            |(health, state, primary_component, short, drained, altered)| Node {
                health,
                state,
                primary_component,
                short,
                drained,
                altered,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(node(), 2..=5),
        0u32..5,
        prop_oneof![2 => Just(None), 2 => (any::<bool>(), 0u32..5).prop_map(Some)],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(nodes, writer, intent, failed)| {
            let n = u32::try_from(nodes.len()).expect("small");
            Case {
                writer: writer % n,
                intent: intent.map(|(a, o)| (a, o % n)),
                nodes,
                failed,
            }
        })
}

fn observed(nodes: &[Node], writer: u32) -> Observed {
    let n = u32::try_from(nodes.len()).expect("small");
    Observed {
        kind: TopologyKind::Galera,
        flavor: Flavor::Mariadb,
        instances: nodes
            .iter()
            .zip(0u32..)
            .map(|(x, ordinal)| Instance {
                ordinal,
                role: if ordinal == writer {
                    Role::Primary
                } else {
                    Role::Replica
                },
                version: version(),
                revision: revision(),
                health: x.health.clone(),
                gtid: None,
                writable: x.health.is_up(),
                fenced: false,
                drained: x.drained,
                source: None,
                schema: x.altered.then(|| CHANGE.to_owned()),
                link: None,
                ack_replicas: None,
                galera: x.health.is_up().then(|| GaleraState {
                    state: x.state,
                    cluster_size: if x.short { n - 1 } else { n },
                    primary_component: x.primary_component,
                }),
            })
            .collect(),
    }
}

fn record(case: &Case) -> Record {
    let t = target();
    let intent = case.intent.map(|(altering, ordinal)| {
        if altering {
            Intent::Altering {
                ordinal,
                change: CHANGE.into(),
                started: NOW,
            }
        } else {
            Intent::Drained { ordinal, at: NOW }
        }
    });
    let failure = match (case.failed, &intent) {
        (true, Some(Intent::Altering { ordinal, .. })) => Some(Failure {
            target: t.key(),
            key: format!("run-ddl:{ordinal}"),
            first: NOW,
            last: NOW,
            count: 1,
            message: "connection lost".into(),
        }),
        _ => None,
    };
    Record {
        intent,
        failure,
        ..Record::default()
    }
}

/// A full member: answers, Synced in the primary component with every node.
fn synced(i: &Instance, n: u32) -> bool {
    i.health.is_up()
        && i.galera
            .as_ref()
            .is_some_and(|g| g.is_synced() && g.cluster_size >= n)
}

/// The properties of one decision; a failure names the property broken.
fn check(mutation: Mutation, case: &Case) -> Result<(), TestCaseError> {
    let o = observed(&case.nodes, case.writer);
    let r = record(case);
    let n = u32::try_from(o.instances.len()).expect("small");
    let action = decide_mutated(mutation, &o, &r, &target(), &Policy::default(), NOW);
    let lost_in_alter = match &r.intent {
        Some(Intent::Altering { ordinal, .. }) => o.instance(*ordinal).is_some_and(|i| {
            !(i.health.is_up() && i.galera.as_ref().is_some_and(|g| g.primary_component))
        }),
        _ => false,
    };
    if lost_in_alter && !matches!(action, Action::Halt { .. }) {
        return Err(TestCaseError::fail(format!(
            "lost node: the node of the recorded ALTER left the cluster and the decision \
             went on with {action}"
        )));
    }
    let (k, resumed) = match &action {
        Action::Drain { ordinal } => (*ordinal, false),
        Action::RunDdl { ordinal, .. } => {
            (*ordinal, matches!(r.intent, Some(Intent::Altering { .. })))
        }
        _ => return Ok(()),
    };
    if let Some(other) = o
        .instances
        .iter()
        .find(|i| i.ordinal != k && i.drained)
        .map(|i| i.ordinal)
        .or(r.intent.as_ref().map(Intent::ordinal).filter(|o| *o != k))
    {
        return Err(TestCaseError::fail(format!(
            "two out: {action} while node {other} is out"
        )));
    }
    if let Some(other) = o.instances.iter().find(|i| i.ordinal != k && !synced(i, n)) {
        return Err(TestCaseError::fail(format!(
            "donor: {action} while node {} is {:?} {:?}",
            other.ordinal, other.health, other.galera
        )));
    }
    if !resumed
        && let Some(me) = o.instance(k)
        && !synced(me, n)
    {
        return Err(TestCaseError::fail(format!(
            "donor: {action} on a node that is {:?} {:?}",
            me.health, me.galera
        )));
    }
    let staying = o
        .instances
        .iter()
        .filter(|i| i.ordinal != k && synced(i, n))
        .count();
    if staying * 2 <= o.instances.len() {
        return Err(TestCaseError::fail(format!(
            "quorum: {action} leaves {staying} of {n} nodes synced"
        )));
    }
    Ok(())
}

/// A whole rollout on a model cluster of `n` nodes whose nodes turn donor or
/// joining for a few steps at the moments `disturb` lists (step, node,
/// state); checks after every step that at most one node is out, and that
/// the rollout ends done with every node altered.
fn rollout(mutation: Mutation, n: u32, disturb: &[(u32, u32, bool)]) -> Result<(), TestCaseError> {
    let mut nodes: Vec<Node> = (0..n)
        .map(|_| Node {
            health: Health::Ready,
            state: WsrepState::Synced,
            primary_component: true,
            short: false,
            drained: false,
            altered: false,
        })
        .collect();
    // Steps left before a node returns to Synced.
    let mut busy: Vec<u32> = vec![0; nodes.len()];
    let mut r = Record::default();
    let mut now = NOW;
    let policy = Policy::default();
    let t = target();
    for step in 0..400u32 {
        for (at, node, joining) in disturb {
            let i = usize::try_from(*node % n).expect("small");
            if *at == step && busy[i] == 0 {
                nodes[i].state = if *joining {
                    WsrepState::Joining
                } else {
                    WsrepState::DonorDesynced
                };
                busy[i] = 3;
            }
        }
        let o = observed(&nodes, 0);
        let action = decide_mutated(mutation, &o, &r, &t, &policy, now);
        match &action {
            Action::Done => {
                if let Some(i) = nodes.iter().position(|x| !x.altered || x.drained) {
                    return Err(TestCaseError::fail(format!(
                        "done early: node {i} is {:?}",
                        nodes[i]
                    )));
                }
                return Ok(());
            }
            Action::Halt { reason } => {
                return Err(TestCaseError::fail(format!("halted: {reason}")));
            }
            Action::Drain { ordinal } => {
                r.intent = Some(Intent::Drained {
                    ordinal: *ordinal,
                    at: now,
                });
                nodes[*ordinal as usize].drained = true;
            }
            Action::RunDdl { ordinal, .. } => {
                r.intent = Some(Intent::Altering {
                    ordinal: *ordinal,
                    change: CHANGE.into(),
                    started: now,
                });
                let i = *ordinal as usize;
                nodes[i].altered = true;
                // Desynced by its own ALTER, then catching up.
                nodes[i].state = WsrepState::Joined;
                busy[i] = 2;
            }
            Action::Undrain { ordinal } => {
                if r.intent.as_ref().is_some_and(|x| x.ordinal() == *ordinal) {
                    r.intent = None;
                }
                nodes[*ordinal as usize].drained = false;
            }
            Action::Wait { reason } => r.note_wait(reason, now),
            other => {
                return Err(TestCaseError::fail(format!("unexpected action {other}")));
            }
        }
        if !matches!(action, Action::Wait { .. }) {
            r.waiting = None;
        }
        let out: Vec<usize> = (0..nodes.len())
            .filter(|i| nodes[*i].drained || (nodes[*i].altered && busy[*i] > 0))
            .collect();
        let ours: Vec<usize> = out.iter().copied().filter(|i| nodes[*i].drained).collect();
        if ours.len() > 1 {
            return Err(TestCaseError::fail(format!(
                "two out: nodes {ours:?} out after {action}"
            )));
        }
        for (i, b) in busy.iter_mut().enumerate() {
            if *b > 0 {
                *b -= 1;
                if *b == 0 {
                    nodes[i].state = WsrepState::Synced;
                }
            }
        }
        now = now.after(Duration::from_secs(1));
    }
    Err(TestCaseError::fail("not done after 400 steps"))
}

fn disturbances() -> impl Strategy<Value = Vec<(u32, u32, bool)>> {
    prop::collection::vec((0u32..40, 0u32..5, any::<bool>()), 0..8)
}

proptest! {
    #![proptest_config(Config::with_cases(2_000))]

    #[test]
    fn every_galera_decision_keeps_one_out_quorum_and_no_donor(c in case()) {
        check(Mutation::None, &c)?;
    }
}

proptest! {
    #![proptest_config(Config::with_cases(300))]

    #[test]
    fn galera_rollouts_finish_one_node_at_a_time(n in 3u32..=5, d in disturbances()) {
        rollout(Mutation::None, n, &d)?;
    }
}

/// Runs `test` under `mutation` until a case fails; the failure must name
/// one of `expected`.
fn assert_caught<S: Strategy>(
    mutation: Mutation,
    strategy: S,
    expected: &[&str],
    test: impl Fn(&S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases: 5_000,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&strategy, |v| test(&v)) {
        Ok(()) => panic!("{mutation:?} was not caught"),
        Err(TestError::Fail(reason, _)) => {
            let reason = reason.to_string();
            assert!(
                expected.iter().any(|e| reason.contains(e)),
                "{mutation:?} was caught, but not by {expected:?}: {reason}"
            );
            println!("{mutation:?} caught: {reason}");
        }
        Err(e) => panic!("{mutation:?}: {e}"),
    }
}

#[test]
fn taking_a_second_galera_node_out_is_caught() {
    assert_caught(Mutation::GaleraTwoOut, case(), &["two out"], |c| {
        check(Mutation::GaleraTwoOut, c)
    });
    assert_caught(
        Mutation::GaleraTwoOut,
        (3u32..=5, disturbances()),
        &["two out"],
        |(n, d)| rollout(Mutation::GaleraTwoOut, *n, d),
    );
}

#[test]
fn ignoring_galera_quorum_is_caught() {
    assert_caught(Mutation::GaleraIgnoreQuorum, case(), &["quorum"], |c| {
        check(Mutation::GaleraIgnoreQuorum, c)
    });
}

#[test]
fn ignoring_galera_donors_is_caught() {
    assert_caught(Mutation::GaleraIgnoreDonor, case(), &["donor"], |c| {
        check(Mutation::GaleraIgnoreDonor, c)
    });
}

#[test]
fn going_on_past_a_galera_node_lost_in_its_alter_is_caught() {
    assert_caught(Mutation::GaleraPastLostNode, case(), &["lost node"], |c| {
        check(Mutation::GaleraPastLostNode, c)
    });
}
