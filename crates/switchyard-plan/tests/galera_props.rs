//! Property tests of the Galera decision (a schema change, a configuration
//! or a version rolled node by node).
//!
//! Two properties, each checked with the rules as written and with each rule
//! broken on purpose (the `mutations` feature), which they must catch:
//!
//! - **Every state**: from any observed Galera cluster, target (a schema
//!   change, a configuration, a version) and record (nodes on any of four
//!   versions, crashed, unreachable, donors, joining, out of the primary
//!   component, missing from the membership, drained; an ALTER or a restart
//!   recorded, an ALTER failed), an action that takes a node out
//!   ([`Action::Drain`]), alters it ([`Action::RunDdl`]) or restarts it
//!   ([`Action::Restart`]) takes out one node at a time, never while another
//!   node is not synced (a donor, desynced, joining, missing) or the node
//!   itself is a donor, and never when the others would lose quorum (a
//!   restart of the node already out is not a new node out); a node lost
//!   while its ALTER is recorded halts the rollout; and nothing is drained or
//!   restarted while a node's version change to the target is not a rolling
//!   upgrade MariaDB documents for Galera (the test's own table: within a
//!   series upwards, 10.5 to 10.6, 10.6 to 10.11).
//! - **Whole rollouts**: a model cluster whose nodes turn donor or joining at
//!   random moments, and whose restarts may crash once, is rolled to the end
//!   by the decision (a schema change, a configuration by rolling restart, a
//!   minor upgrade); after every step at most one node is out, no node is
//!   returned before it is synced again, and the rollout ends done with every
//!   node on the target. A forbidden upgrade (10.5 to 10.11) halts before any
//!   node is drained.

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
    Action, GaleraState, HaltReason, Health, Instance, Observed, Policy, Record, Revision, Role,
    Target, Timestamp, WsrepState,
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
    /// The version it runs.
    version: Version,
    /// It runs the target revision (else its version's first revision).
    on_target: bool,
}

/// What the rollout rolls out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// A schema change on 10.11.14.
    Schema,
    /// A static variable changed on 10.11.14 (a rolling restart).
    Config,
    /// A version.
    Upgrade(Version),
}

/// Which intent the record holds.
#[derive(Clone, Copy, Debug)]
enum Recorded {
    Drained,
    Altering,
    Restarting,
}

#[derive(Clone, Debug)]
struct Case {
    nodes: Vec<Node>,
    writer: u32,
    change: Change,
    /// (the intent, the node's index modulo the size).
    intent: Option<(Recorded, u32)>,
    /// The recorded ALTER failed.
    failed: bool,
}

/// The versions the cases run: two series MariaDB documents a Galera rolling
/// upgrade between, one it documents none to (10.5 to 10.11), two releases
/// of one series.
const VERSIONS: [Version; 4] = [
    Version::new(10, 5, 27),
    Version::new(10, 6, 20),
    Version::new(10, 11, 9),
    Version::new(10, 11, 14),
];

fn version() -> Version {
    Version::new(10, 11, 14)
}

/// The first revision of a version (no variables set).
fn first_revision(v: Version) -> Revision {
    Revision::new(1, Flavor::Mariadb, v, &BTreeMap::new())
}

fn target(change: Change) -> Target {
    match change {
        Change::Schema => {
            let mut t = Target::new(first_revision(version()), version());
            t.schema = Some(SchemaTarget {
                id: CHANGE.into(),
                statement: "ALTER TABLE app.t ADD COLUMN note VARCHAR(20) DEFAULT NULL".into(),
                replica_settings: Vec::new(),
                primary_online: true,
            });
            t
        }
        Change::Config => {
            let config = BTreeMap::from([("max_connections".to_owned(), "300".to_owned())]);
            Target::new(
                Revision::new(2, Flavor::Mariadb, version(), &config),
                version(),
            )
        }
        Change::Upgrade(to) => Target::new(first_revision(to), to),
    }
}

/// The test's own statement of MariaDB's Galera rolling-upgrade guides for
/// these versions: upwards within a series, 10.5 to 10.6, 10.6 to 10.11.
fn rolling_allowed(from: Version, to: Version) -> bool {
    let series = |v: Version| (v.major, v.minor);
    from == to
        || (from < to
            && (series(from) == series(to)
                || matches!(
                    (series(from), series(to)),
                    ((10, 5), (10, 6)) | ((10, 6), (10, 11))
                )))
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
    let version = prop_oneof![
        6 => Just(version()),
        1 => prop::sample::select(VERSIONS.to_vec()),
    ];
    (
        (health, state),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
        any::<bool>(),
        version,
        any::<bool>(),
    )
        .prop_map(
            |((health, state), primary_component, short, drained, altered, version, on_target)| {
                Node {
                    health,
                    state,
                    primary_component,
                    short,
                    drained,
                    altered,
                    version,
                    on_target,
                }
            },
        )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => Just(Change::Schema),
        2 => Just(Change::Config),
        2 => prop::sample::select(VERSIONS.to_vec()).prop_map(Change::Upgrade),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let intent = prop_oneof![
        Just(Recorded::Drained),
        Just(Recorded::Altering),
        Just(Recorded::Restarting)
    ];
    (
        prop::collection::vec(node(), 2..=5),
        0u32..5,
        change(),
        prop_oneof![2 => Just(None), 2 => (intent, 0u32..5).prop_map(Some)],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(nodes, writer, change, intent, failed)| {
            let n = u32::try_from(nodes.len()).expect("small");
            Case {
                writer: writer % n,
                change,
                intent: intent.map(|(a, o)| (a, o % n)),
                nodes,
                failed,
            }
        })
}

fn observed(nodes: &[Node], writer: u32, t: &Target) -> Observed {
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
                version: if x.on_target { t.version } else { x.version },
                revision: if x.on_target {
                    t.revision.clone()
                } else {
                    first_revision(x.version)
                },
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
    let t = target(case.change);
    let intent = case.intent.map(|(recorded, ordinal)| match recorded {
        Recorded::Altering => Intent::Altering {
            ordinal,
            change: CHANGE.into(),
            started: NOW,
        },
        Recorded::Drained => Intent::Drained { ordinal, at: NOW },
        Recorded::Restarting => Intent::Restarting {
            ordinal,
            revision: t.revision.clone(),
            started: NOW,
        },
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
    let t = target(case.change);
    let o = observed(&case.nodes, case.writer, &t);
    let r = record(case);
    let n = u32::try_from(o.instances.len()).expect("small");
    let action = decide_mutated(mutation, &o, &r, &t, &Policy::default(), NOW);
    if matches!(action, Action::Drain { .. } | Action::Restart { .. })
        && let Some(i) = o
            .instances
            .iter()
            .find(|i| !rolling_allowed(i.version, t.version))
    {
        return Err(TestCaseError::fail(format!(
            "forbidden version: {action} while node {} would go from {} to {}",
            i.ordinal, i.version, t.version
        )));
    }
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
        // A node already down (stopped after its restart was cut short) is
        // started again: that takes no node out.
        Action::Restart { ordinal, .. }
            if matches!(r.intent, Some(Intent::Restarting { ordinal: o, .. }) if o == *ordinal)
                && o.instance(*ordinal).is_some_and(|i| !i.health.is_up()) =>
        {
            return Ok(());
        }
        Action::Restart { ordinal, .. } => (*ordinal, false),
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

/// A whole rollout of `change` on a model cluster of `n` nodes running
/// `from`, whose nodes turn donor or joining for a few steps at the moments
/// `disturb` lists (step, node, state), and whose restart crashes once (the
/// node down until recovered) on the nodes `crash` has a bit for; checks
/// after every step that at most one node is out and that no node is
/// returned before it is synced, and that the rollout ends done with every
/// node on the target, or, for a version change the Galera rules forbid,
/// halts before any node is drained.
fn rollout(
    mutation: Mutation,
    n: u32,
    change: Change,
    from: Version,
    disturb: &[(u32, u32, bool)],
    crash: u32,
) -> Result<(), TestCaseError> {
    let t = target(change);
    let mut nodes: Vec<Node> = (0..n)
        .map(|_| Node {
            health: Health::Ready,
            state: WsrepState::Synced,
            primary_component: true,
            short: false,
            drained: false,
            altered: false,
            version: from,
            on_target: false,
        })
        .collect();
    let forbidden = !rolling_allowed(from, t.version);
    let mut crash = crash;
    // Steps left before a node returns to Synced.
    let mut busy: Vec<u32> = vec![0; nodes.len()];
    let mut r = Record::default();
    let mut now = NOW;
    let policy = Policy::default();
    for step in 0..400u32 {
        for (at, node, joining) in disturb {
            let i = usize::try_from(*node % n).expect("small");
            if *at == step && busy[i] == 0 && nodes[i].health.is_up() {
                nodes[i].state = if *joining {
                    WsrepState::Joining
                } else {
                    WsrepState::DonorDesynced
                };
                busy[i] = 3;
            }
        }
        let o = observed(&nodes, 0, &t);
        let action = decide_mutated(mutation, &o, &r, &t, &policy, now);
        if forbidden && matches!(action, Action::Drain { .. } | Action::Restart { .. }) {
            return Err(TestCaseError::fail(format!(
                "forbidden version: {action} on the way from {from} to {}",
                t.version
            )));
        }
        match &action {
            Action::Done => {
                let pending = |x: &Node| match change {
                    Change::Schema => !x.altered,
                    _ => !x.on_target,
                };
                if let Some(i) = nodes.iter().position(|x| pending(x) || x.drained) {
                    return Err(TestCaseError::fail(format!(
                        "done early: node {i} is {:?}",
                        nodes[i]
                    )));
                }
                return Ok(());
            }
            Action::Halt {
                reason: HaltReason::ForbiddenTransition { .. },
            } if forbidden => return Ok(()),
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
            Action::Restart { ordinal, .. } => {
                r.intent = Some(Intent::Restarting {
                    ordinal: *ordinal,
                    revision: t.revision.clone(),
                    started: now,
                });
                let i = *ordinal as usize;
                nodes[i].on_target = true;
                if crash & (1 << i) != 0 {
                    // Killed while it joins: down until started again.
                    crash &= !(1 << i);
                    nodes[i].health = Health::Crashed;
                    busy[i] = 0;
                } else {
                    // Joining by IST, then Synced.
                    nodes[i].state = WsrepState::Joining;
                    busy[i] = 2;
                }
            }
            Action::Recover { ordinal } => {
                let i = *ordinal as usize;
                nodes[i].health = Health::Ready;
                nodes[i].state = WsrepState::Joining;
                busy[i] = 2;
            }
            Action::Undrain { ordinal } => {
                let i = *ordinal as usize;
                if !(nodes[i].health.is_up() && nodes[i].state == WsrepState::Synced) {
                    return Err(TestCaseError::fail(format!(
                        "returned unsynced: node {i} back in the endpoints while {:?} {:?}",
                        nodes[i].health, nodes[i].state
                    )));
                }
                if r.intent.as_ref().is_some_and(|x| x.ordinal() == *ordinal) {
                    r.intent = None;
                }
                nodes[i].drained = false;
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
            .filter(|i| nodes[*i].drained || !nodes[*i].health.is_up())
            .collect();
        if out.len() > 1 {
            return Err(TestCaseError::fail(format!(
                "two out: nodes {out:?} out after {action}"
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

/// A change and the version the cluster starts on: a schema change, a
/// configuration, a minor upgrade, the documented 10.5 to 10.6 and 10.6 to
/// 10.11, and the undocumented 10.5 to 10.11.
fn changes() -> impl Strategy<Value = (Change, Version)> {
    prop_oneof![
        Just((Change::Schema, version())),
        Just((Change::Config, version())),
        Just((Change::Upgrade(version()), VERSIONS[2])),
        Just((Change::Upgrade(VERSIONS[1]), VERSIONS[0])),
        Just((Change::Upgrade(version()), VERSIONS[1])),
        Just((Change::Upgrade(version()), VERSIONS[0])),
    ]
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
    fn galera_rollouts_finish_one_node_at_a_time(
        n in 3u32..=5,
        (change, from) in changes(),
        d in disturbances(),
        crash in 0u32..32,
    ) {
        rollout(Mutation::None, n, change, from, &d, crash)?;
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
        (3u32..=5, changes(), disturbances()),
        &["two out"],
        |(n, (change, from), d)| rollout(Mutation::GaleraTwoOut, *n, *change, *from, d, 0),
    );
}

#[test]
fn rolling_a_version_the_galera_rules_forbid_is_caught() {
    assert_caught(
        Mutation::GaleraIgnoreVersionRules,
        case(),
        &["forbidden version"],
        |c| check(Mutation::GaleraIgnoreVersionRules, c),
    );
    assert_caught(
        Mutation::GaleraIgnoreVersionRules,
        (3u32..=5, changes(), disturbances()),
        &["forbidden version"],
        |(n, (change, from), d)| {
            rollout(Mutation::GaleraIgnoreVersionRules, *n, *change, *from, d, 0)
        },
    );
}

#[test]
fn going_on_past_a_galera_node_killed_in_its_restart_is_caught() {
    assert_caught(
        Mutation::GaleraPastLostNode,
        (3u32..=5, disturbances(), 1u32..32),
        &["returned unsynced"],
        |(n, d, crash)| {
            rollout(
                Mutation::GaleraPastLostNode,
                *n,
                Change::Config,
                version(),
                d,
                *crash,
            )
        },
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
