//! The fleet rollout's decision and record: unit cases for each rule, and
//! properties over random fleets driven as a runtime would drive them.
//!
//! The properties run `decide_fleet` and `apply` in a loop over a simulated
//! fleet with a simulated clock (one second per wait): clusters whose own
//! rollouts take a few seconds, some of which halt, or turn unhealthy (their
//! replication stops, a replica lags, the user check fails) after their
//! rollout, for a while or until a person fixes them; a person who, once the
//! fleet stops, resumes (after fixing the cluster, or not), resumes skipping
//! the stopped cluster, or aborts, and who may abort a running fleet; and one
//! or two changes rolled one after the other. Checked after every step:
//! never more than the maximum of clusters rolling at once; no cluster of a
//! wave started before every cluster of the earlier waves rolled and stayed
//! healthy for the bake (or was skipped); no start while a started cluster
//! is halted, nor between a stop and a resume; a stop names a cluster that
//! halted or is unhealthy; a done cluster stays done; revisions numbered 1,
//! 2, 3...; an abort names exactly the clusters started; each cluster is in
//! a revision's history at most once, and a fleet that is done has every
//! cluster done (or skipped) and in the history once. The mutation tests
//! break one rule each (`FleetMutation`) and show a property catches it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use switchyard_plan::Timestamp;
use switchyard_plan::fleet::mutation::FleetMutation;
use switchyard_plan::fleet::{
    ClusterObservation, ClusterRollout, ClusterState, FleetAction, FleetCommand, FleetError,
    FleetRecord, FleetSpec, FleetState, FleetWait, Resumed, StopReason, UserCheck, apply,
    apply_mutated, decide_fleet, decide_fleet_mutated,
};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

fn spec(n: usize, canary: usize, max_at_once: usize, bake_s: u64) -> FleetSpec {
    FleetSpec {
        canary,
        max_at_once,
        bake: Duration::from_secs(bake_s),
        ..FleetSpec::new(names(n), "rev-2")
    }
}

fn at(s: u64) -> Timestamp {
    Timestamp(s * 1000)
}

fn rolling(change: &str, t: Timestamp) -> ClusterObservation {
    ClusterObservation {
        rollout: ClusterRollout::Rolling,
        ..ClusterObservation::done(change, t)
    }
}

fn halted(change: &str, t: Timestamp) -> ClusterObservation {
    ClusterObservation {
        rollout: ClusterRollout::Halted {
            reason: "instance 1 did not start".into(),
        },
        ..ClusterObservation::done(change, t)
    }
}

fn untouched(t: Timestamp) -> ClusterObservation {
    ClusterObservation {
        change: None,
        ..ClusterObservation::done("x", t)
    }
}

/// Decides and records one step.
fn step(
    spec: &FleetSpec,
    record: &mut FleetRecord,
    seen: &BTreeMap<String, ClusterObservation>,
    now: Timestamp,
) -> FleetAction {
    let action = decide_fleet(spec, record, seen, now).expect("a valid spec");
    apply(record, &action, now);
    action
}

fn all(
    spec: &FleetSpec,
    f: impl Fn(&str) -> ClusterObservation,
) -> BTreeMap<String, ClusterObservation> {
    spec.clusters.iter().map(|c| (c.clone(), f(c))).collect()
}

fn start(cluster: &str) -> FleetAction {
    FleetAction::Start {
        cluster: cluster.into(),
        change: "rev-2".into(),
    }
}

#[test]
fn bad_specs_are_refused_naming_what_to_do() {
    let cases: Vec<(FleetSpec, &str, &str)> = vec![
        (spec(0, 1, 1, 0), "empty-fleet", "name at least one cluster"),
        (
            FleetSpec {
                clusters: vec!["a".into(), "b".into(), "a".into()],
                ..spec(3, 1, 1, 0)
            },
            "duplicate-cluster",
            "\"a\" is listed twice in the fleet (positions 0 and 2): list each cluster once",
        ),
        (spec(3, 1, 0, 0), "zero-max-at-once", "set it to at least 1"),
        (spec(3, 0, 1, 0), "zero-canary", "set it to at least 1"),
        (
            spec(3, 4, 4, 0),
            "canary-larger-than-fleet",
            "the canary wave holds 4 clusters but the fleet has 3: set the canary to at most 3",
        ),
        (
            spec(3, 2, 1, 0),
            "canary-larger-than-max-at-once",
            "lower the canary or raise the maximum",
        ),
        (
            FleetSpec {
                change: " ".into(),
                ..spec(3, 1, 1, 0)
            },
            "empty-change",
            "give the revision",
        ),
        (
            FleetSpec {
                clusters: vec!["a".into(), String::new()],
                ..spec(2, 1, 1, 0)
            },
            "empty-cluster-name",
            "position 1 is empty",
        ),
    ];
    for (bad, category, message) in cases {
        let record = FleetRecord::default();
        let err = decide_fleet(&bad, &record, &BTreeMap::new(), at(0)).expect_err("refused");
        assert_eq!(err.category(), category, "{err}");
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(bad.waves().expect_err("refused"), err);
    }
}

#[test]
fn waves_start_with_the_canary_and_double_up_to_the_maximum() {
    let sizes =
        |s: FleetSpec| -> Vec<usize> { s.waves().expect("valid").iter().map(Vec::len).collect() };
    assert_eq!(sizes(spec(10, 1, 4, 0)), [1, 2, 4, 3]);
    assert_eq!(sizes(spec(10, 2, 3, 0)), [2, 3, 3, 2]);
    assert_eq!(sizes(spec(3, 1, 1, 0)), [1, 1, 1]);
    assert_eq!(sizes(spec(1, 1, 5, 0)), [1]);
    let waves = spec(4, 1, 2, 0).waves().expect("valid");
    assert_eq!(waves, [vec!["c0"], vec!["c1", "c2"], vec!["c3"]]);
}

#[test]
fn a_wave_starts_only_once_the_one_before_rolled_and_baked() {
    let s = spec(3, 1, 2, 60);
    let mut r = FleetRecord::default();
    let none = all(&s, |_| untouched(at(0)));
    let plan = step(&s, &mut r, &none, at(0));
    assert!(
        matches!(plan, FleetAction::Plan { revision: 1, .. }),
        "{plan}"
    );
    assert_eq!(step(&s, &mut r, &none, at(0)), start("c0"));
    // The canary rolls: wave 2 waits.
    let mut seen = none.clone();
    seen.insert("c0".into(), rolling("rev-2", at(1)));
    let wait = step(&s, &mut r, &seen, at(1));
    assert_eq!(
        wait,
        FleetAction::Wait {
            reason: FleetWait::Rolling {
                clusters: vec!["c0".into()]
            }
        }
    );
    // Its rollout is done: it bakes for 60 s, wave 2 still waits.
    seen.insert("c0".into(), ClusterObservation::done("rev-2", at(2)));
    assert_eq!(
        step(&s, &mut r, &seen, at(2)),
        FleetAction::Bake {
            cluster: "c0".into()
        }
    );
    let FleetAction::Wait {
        reason: FleetWait::Baking { until, .. },
    } = step(&s, &mut r, &seen, at(30))
    else {
        panic!("waits for the bake");
    };
    assert_eq!(until, at(62));
    // The bake's end is passed, but no observation covers it yet.
    assert!(matches!(
        step(&s, &mut r, &seen, at(62)),
        FleetAction::Wait {
            reason: FleetWait::Unobserved { .. }
        }
    ));
    seen.insert("c0".into(), ClusterObservation::done("rev-2", at(62)));
    assert_eq!(
        step(&s, &mut r, &seen, at(62)),
        FleetAction::Baked {
            cluster: "c0".into()
        }
    );
    // Wave 2 holds two clusters, started together (max 2).
    assert_eq!(step(&s, &mut r, &seen, at(63)), start("c1"));
    seen.insert("c1".into(), rolling("rev-2", at(63)));
    assert_eq!(step(&s, &mut r, &seen, at(63)), start("c2"));
    seen.insert("c2".into(), rolling("rev-2", at(63)));
    assert!(matches!(
        step(&s, &mut r, &seen, at(63)),
        FleetAction::Wait { .. }
    ));
}

#[test]
fn a_fleet_without_failures_ends_done_with_each_cluster_once_in_its_revision() {
    let s = spec(5, 1, 2, 0);
    let mut r = FleetRecord::default();
    let mut started = BTreeSet::new();
    for t in 0..100 {
        let seen = all(&s, |c| {
            if started.contains(c) {
                ClusterObservation::done("rev-2", at(t))
            } else {
                untouched(at(t))
            }
        });
        let action = step(&s, &mut r, &seen, at(t));
        if let FleetAction::Start { cluster, .. } = &action {
            started.insert(cluster.clone());
        }
        if action == FleetAction::Done {
            break;
        }
    }
    assert!(matches!(r.state, FleetState::Done { .. }), "{:?}", r.state);
    assert!(
        r.clusters
            .values()
            .all(|c| matches!(c, ClusterState::Done { .. }))
    );
    let revision = r.current().expect("a revision");
    let rolled: Vec<&str> = revision.rolled.iter().map(|r| r.cluster.as_str()).collect();
    assert_eq!(rolled, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(revision.rolled.iter().all(|r| r.done.is_some()));
    assert_eq!(revision.ended.map(|e| e.aborted), Some(false));
}

/// A record with the canary c0 started on rev-2 and the given observation of it.
fn canary_started(s: &FleetSpec) -> FleetRecord {
    let mut r = FleetRecord::default();
    let none = all(s, |_| untouched(at(0)));
    step(s, &mut r, &none, at(0));
    assert_eq!(step(s, &mut r, &none, at(0)), start("c0"));
    r
}

#[test]
fn a_halt_stops_the_whole_fleet_until_a_resume() {
    let s = spec(3, 1, 1, 0);
    let mut r = canary_started(&s);
    let mut seen = all(&s, |_| untouched(at(1)));
    seen.insert("c0".into(), halted("rev-2", at(1)));
    let stop = step(&s, &mut r, &seen, at(1));
    assert_eq!(
        stop,
        FleetAction::Stop {
            cluster: "c0".into(),
            reason: StopReason::Halted {
                reason: "instance 1 did not start".into()
            }
        }
    );
    assert!(stop.to_string().contains("c0"), "{stop}");
    // Stopped: nothing starts, even once the cluster is healthy again.
    seen.insert("c0".into(), ClusterObservation::done("rev-2", at(2)));
    for t in 2..10 {
        let action = step(&s, &mut r, &seen, at(t));
        assert!(
            matches!(
                action,
                FleetAction::Wait {
                    reason: FleetWait::Stopped { .. }
                }
            ),
            "{action}"
        );
    }
    assert_eq!(r.cluster("c1"), Some(&ClusterState::Pending));
}

#[test]
fn a_failed_bake_stops_the_fleet_naming_the_check() {
    type Spoil = fn(&mut ClusterObservation);
    let checks: Vec<(Spoil, StopReason)> = vec![
        (
            |o| o.replication_running = false,
            StopReason::ReplicationStopped,
        ),
        (
            |o| o.lag_seconds = Some(11),
            StopReason::Lagging {
                seconds: 11,
                max: 10,
            },
        ),
        (
            |o| {
                o.user_check = UserCheck::Failed {
                    message: "SELECT 1 FROM app.orders timed out".into(),
                }
            },
            StopReason::UserCheckFailed {
                message: "SELECT 1 FROM app.orders timed out".into(),
            },
        ),
        (
            |o| {
                o.rollout = ClusterRollout::Halted {
                    reason: "lost".into(),
                }
            },
            StopReason::Halted {
                reason: "lost".into(),
            },
        ),
        (
            |o| o.change = Some("rev-1".into()),
            StopReason::ChangedElsewhere {
                now: "change rev-1".into(),
            },
        ),
    ];
    for (spoil, expected) in checks {
        let s = spec(3, 1, 1, 60);
        let mut r = canary_started(&s);
        let mut seen = all(&s, |_| untouched(at(1)));
        seen.insert("c0".into(), ClusterObservation::done("rev-2", at(1)));
        assert!(matches!(
            step(&s, &mut r, &seen, at(1)),
            FleetAction::Bake { .. }
        ));
        let mut bad = ClusterObservation::done("rev-2", at(20));
        spoil(&mut bad);
        seen.insert("c0".into(), bad);
        assert_eq!(
            step(&s, &mut r, &seen, at(20)),
            FleetAction::Stop {
                cluster: "c0".into(),
                reason: expected.clone()
            }
        );
        assert!(
            matches!(&r.state, FleetState::Stopped { cluster, reason, .. } if cluster == "c0" && *reason == expected)
        );
    }
}

#[test]
fn a_resume_needs_the_stopped_cluster_healthy_or_skipped() {
    let s = spec(3, 1, 1, 0);
    let mut r = canary_started(&s);
    let mut seen = all(&s, |_| untouched(at(1)));
    seen.insert("c0".into(), halted("rev-2", at(1)));
    step(&s, &mut r, &seen, at(1));
    // Still halted: the resume is refused with the reason, and dropped.
    r.request(FleetCommand::Resume { skip: None }, at(2))
        .expect("taken");
    let refused = step(&s, &mut r, &seen, at(2));
    assert!(
        matches!(&refused, FleetAction::Refuse { reason, .. } if reason.contains("still halted") && reason.contains("skipping")),
        "{refused}"
    );
    assert!(r.command.is_none());
    assert!(matches!(r.state, FleetState::Stopped { .. }));
    // Healthy again (its own rollout done): it bakes again, then c1 starts.
    seen.insert("c0".into(), ClusterObservation::done("rev-2", at(3)));
    r.request(FleetCommand::Resume { skip: None }, at(3))
        .expect("taken");
    assert_eq!(
        step(&s, &mut r, &seen, at(3)),
        FleetAction::Resume {
            cluster: "c0".into(),
            then: Resumed::Baking
        }
    );
    assert_eq!(
        r.cluster("c0"),
        Some(&ClusterState::Baking { since: at(3) })
    );
    assert!(matches!(
        step(&s, &mut r, &seen, at(3)),
        FleetAction::Baked { .. }
    ));
    assert_eq!(step(&s, &mut r, &seen, at(3)), start("c1"));
    // c1 halts; skipping it continues with c2 and leaves c0 done.
    seen.insert("c1".into(), halted("rev-2", at(4)));
    assert!(matches!(
        step(&s, &mut r, &seen, at(4)),
        FleetAction::Stop { .. }
    ));
    r.request(
        FleetCommand::Resume {
            skip: Some("c1".into()),
        },
        at(5),
    )
    .expect("taken");
    assert_eq!(
        step(&s, &mut r, &seen, at(5)),
        FleetAction::Resume {
            cluster: "c1".into(),
            then: Resumed::Skipped
        }
    );
    assert_eq!(step(&s, &mut r, &seen, at(5)), start("c2"));
    assert!(matches!(r.cluster("c0"), Some(ClusterState::Done { .. })));
    assert!(matches!(
        r.cluster("c1"),
        Some(ClusterState::Skipped { .. })
    ));
}

#[test]
fn an_abort_leaves_every_cluster_as_it_is_and_says_which_ran_the_change() {
    let s = spec(4, 1, 2, 0);
    let mut r = FleetRecord::default();
    let mut seen = all(&s, |_| untouched(at(0)));
    step(&s, &mut r, &seen, at(0));
    step(&s, &mut r, &seen, at(0));
    seen.insert("c0".into(), ClusterObservation::done("rev-2", at(1)));
    step(&s, &mut r, &seen, at(1));
    step(&s, &mut r, &seen, at(1));
    assert_eq!(step(&s, &mut r, &seen, at(1)), start("c1"));
    let before = r.clusters.clone();
    r.request(FleetCommand::Abort, at(2)).expect("taken");
    let aborted = step(&s, &mut r, &seen, at(2));
    let expected = FleetAction::Aborted {
        ran: vec!["c0".into(), "c1".into()],
        untouched: vec!["c2".into(), "c3".into()],
    };
    assert_eq!(aborted, expected);
    assert_eq!(r.clusters, before, "an abort changes no cluster");
    assert!(matches!(r.state, FleetState::Aborted { .. }));
    // It stays aborted, starting nothing.
    assert_eq!(step(&s, &mut r, &seen, at(3)), expected);
    assert_eq!(
        r.current().and_then(|c| c.ended).map(|e| e.aborted),
        Some(true)
    );
}

#[test]
fn commands_that_cannot_apply_are_refused_and_nothing_is_recorded() {
    let s = spec(3, 1, 1, 0);
    let mut r = canary_started(&s);
    let before = r.clone();
    let err = r
        .request(FleetCommand::Resume { skip: None }, at(1))
        .expect_err("running");
    assert_eq!(
        err,
        FleetError::NotStopped {
            state: "running".into()
        }
    );
    assert_eq!(err.category(), "not-stopped");
    assert_eq!(r, before);
    let mut seen = all(&s, |_| untouched(at(1)));
    seen.insert("c0".into(), halted("rev-2", at(1)));
    step(&s, &mut r, &seen, at(1));
    let err = r
        .request(
            FleetCommand::Resume {
                skip: Some("c2".into()),
            },
            at(2),
        )
        .expect_err("not the stopped one");
    assert!(
        err.to_string()
            .contains("only the stopped cluster can be skipped"),
        "{err}"
    );
    r.request(FleetCommand::Abort, at(2)).expect("taken");
    let err = r
        .request(FleetCommand::Resume { skip: None }, at(2))
        .expect_err("pending");
    assert_eq!(err.category(), "command-pending");
    step(&s, &mut r, &seen, at(2));
    let err = r.request(FleetCommand::Abort, at(3)).expect_err("aborted");
    assert_eq!(
        err.to_string(),
        "the fleet is aborted: there is nothing to abort"
    );
}

#[test]
fn a_new_change_waits_for_the_current_revision_then_is_numbered_next() {
    let s = spec(2, 1, 1, 0);
    let mut r = canary_started(&s);
    let next = FleetSpec {
        change: "rev-3".into(),
        ..s.clone()
    };
    let seen = all(&s, |_| untouched(at(1)));
    assert_eq!(
        step(&next, &mut r, &seen, at(1)),
        FleetAction::Wait {
            reason: FleetWait::PreviousUnfinished {
                revision: 1,
                change: "rev-2".into()
            }
        }
    );
    r.request(FleetCommand::Abort, at(2)).expect("taken");
    assert!(matches!(
        step(&next, &mut r, &seen, at(2)),
        FleetAction::Aborted { .. }
    ));
    let plan = step(&next, &mut r, &seen, at(3));
    assert!(
        matches!(&plan, FleetAction::Plan { revision: 2, change, .. } if change == "rev-3"),
        "{plan}"
    );
    let numbers: Vec<u64> = r.revisions.iter().map(|r| r.number).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(
        r.revisions[0].rolled.len(),
        1,
        "revision 1 keeps where it was rolled"
    );
    assert!(r.clusters.values().all(|c| *c == ClusterState::Pending));
}

#[test]
fn a_start_recorded_but_not_carried_out_is_given_again_and_listed_once() {
    let s = spec(2, 1, 1, 0);
    let mut r = canary_started(&s);
    // The runtime died between storing the start and acting on it.
    let seen = all(&s, |_| untouched(at(1)));
    assert_eq!(step(&s, &mut r, &seen, at(1)), start("c0"));
    assert_eq!(
        r.cluster("c0"),
        Some(&ClusterState::Rolling { since: at(0) })
    );
    assert_eq!(r.current().expect("revision").rolled.len(), 1);
}

#[test]
fn an_unobserved_cluster_is_waited_for_not_judged() {
    let s = spec(2, 1, 1, 0);
    let mut r = canary_started(&s);
    let seen = BTreeMap::new();
    assert_eq!(
        step(&s, &mut r, &seen, at(1)),
        FleetAction::Wait {
            reason: FleetWait::Unobserved {
                cluster: "c0".into()
            }
        }
    );
}

#[test]
fn the_record_round_trips_through_json() {
    let s = spec(3, 1, 1, 0);
    let mut r = canary_started(&s);
    let mut seen = all(&s, |_| untouched(at(1)));
    seen.insert("c0".into(), halted("rev-2", at(1)));
    step(&s, &mut r, &seen, at(1));
    r.request(
        FleetCommand::Resume {
            skip: Some("c0".into()),
        },
        at(2),
    )
    .expect("taken");
    let json = serde_json::to_string(&r).expect("serializes");
    let back: FleetRecord = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, r);
    let spec_json = serde_json::to_string(&s).expect("serializes");
    assert_eq!(
        serde_json::from_str::<FleetSpec>(&spec_json).expect("parses"),
        s
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// What goes wrong with one cluster for one change.
#[derive(Clone, Debug)]
enum Fault {
    None,
    /// Its rollout halts after this many seconds of progress.
    Halt(u32),
    /// After its rollout, it turns unhealthy `after` seconds in, for `lasts`
    /// seconds (until a person fixes it when `None`): 0 replication stops,
    /// 1 a replica lags, 2 the user check fails.
    Unhealthy {
        after: u32,
        lasts: Option<u32>,
        how: u8,
    },
}

/// What the person does once the fleet stopped (after `delay` waits).
#[derive(Clone, Debug)]
enum Person {
    Resume,
    FixThenResume,
    ResumeSkipping,
    Abort,
}

#[derive(Clone, Debug)]
struct Case {
    spec: FleetSpec,
    changes: usize,
    /// Seconds each cluster's rollout takes.
    takes: Vec<u32>,
    /// Per change, per cluster.
    faults: Vec<Vec<Fault>>,
    person: Vec<(u32, Person)>,
    /// A step at which the person aborts a running fleet.
    abort_at: Option<u32>,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::None),
        1 => (1u32..5).prop_map(Fault::Halt),
        2 => (0u32..5, prop::option::of(1u32..6), 0u8..3)
            .prop_map(|(after, lasts, how)| Fault::Unhealthy { after, lasts, how }),
    ]
}

fn person() -> impl Strategy<Value = Person> {
    prop_oneof![
        Just(Person::Resume),
        Just(Person::FixThenResume),
        Just(Person::ResumeSkipping),
        Just(Person::Abort),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=8, 1usize..=4, 0u64..=3, 1usize..=2)
        .prop_flat_map(|(n, max, bake, changes)| {
            (
                Just((n, max, bake, changes)),
                1..=n.min(max),
                prop::collection::vec(1u32..=4, n),
                prop::collection::vec(prop::collection::vec(fault(), n), changes),
                prop::collection::vec((0u32..4, person()), 0..5),
                prop::option::weighted(0.15, 0u32..60),
            )
        })
        .prop_map(
            |((n, max, bake, changes), canary, takes, faults, person, abort_at)| Case {
                spec: spec(n, canary, max, bake),
                changes,
                takes,
                faults,
                person,
                abort_at,
            },
        )
}

/// One simulated cluster: what it runs, its rollout's progress, its health.
#[derive(Clone, Debug, Default)]
struct Cluster {
    change: Option<String>,
    progress: u32,
    takes: u32,
    fault: Option<Fault>,
    halted: bool,
    fixed: bool,
    finished: Option<u64>,
    unhealthy: Option<u8>,
    healthy_since: Option<u64>,
    /// When it first stayed healthy for the bake after its rollout.
    baked: Option<u64>,
}

impl Cluster {
    fn rolling(&self) -> bool {
        self.change.is_some() && !self.halted && self.finished.is_none()
    }

    fn tick(&mut self, now: u64, bake: u64) {
        if self.rolling() {
            self.progress += 1;
            if let Some(Fault::Halt(k)) = self.fault
                && self.progress == k
                && !self.fixed
            {
                self.halted = true;
            } else if self.progress >= self.takes {
                self.finished = Some(now);
                self.healthy_since = Some(now);
            }
        }
        if let (Some(finished), Some(Fault::Unhealthy { after, lasts, how })) =
            (self.finished, &self.fault)
        {
            let from = finished + u64::from(*after);
            let sick =
                !self.fixed && now >= from && lasts.is_none_or(|l| now < from + u64::from(l));
            match (sick, self.unhealthy) {
                (true, None) => {
                    self.unhealthy = Some(*how);
                    self.healthy_since = None;
                }
                (false, Some(_)) => {
                    self.unhealthy = None;
                    self.healthy_since = Some(now);
                }
                _ => {}
            }
        }
        if self.baked.is_none() && self.healthy_since.is_some_and(|s| now >= s + bake) {
            self.baked = Some(now);
        }
    }

    fn observe(&self, now: u64) -> ClusterObservation {
        let mut seen = ClusterObservation::done(self.change.clone().unwrap_or_default(), at(now));
        seen.change.clone_from(&self.change);
        seen.rollout = if self.halted {
            ClusterRollout::Halted {
                reason: "a restart failed".into(),
            }
        } else if self.finished.is_none() {
            ClusterRollout::Rolling
        } else {
            ClusterRollout::Done
        };
        match self.unhealthy {
            Some(0) => seen.replication_running = false,
            Some(1) => seen.lag_seconds = Some(60),
            Some(_) => {
                seen.user_check = UserCheck::Failed {
                    message: "the check query timed out".into(),
                }
            }
            None => {}
        }
        seen
    }
}

/// Steps a run may take in all.
const MAX_STEPS: u32 = 5_000;

/// What the runs went through, for `the_properties_reach_every_rule`: stops,
/// resumes (rolling, baking, skipped), refused commands, aborts, fleets done.
static SEEN: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
const KINDS: [&str; 7] = [
    "stop",
    "resume rolling",
    "resume baking",
    "resume skipping",
    "refusal",
    "abort",
    "done",
];

fn count(action: &FleetAction) {
    let kind = match action {
        FleetAction::Stop { .. } => 0,
        FleetAction::Resume { then, .. } => match then {
            Resumed::Rolling => 1,
            Resumed::Baking => 2,
            Resumed::Skipped => 3,
        },
        FleetAction::Refuse { .. } => 4,
        FleetAction::Aborted { .. } => 5,
        FleetAction::Done => 6,
        _ => return,
    };
    SEEN[kind].fetch_add(1, Ordering::Relaxed);
}

fn fail(msg: String) -> Result<(), TestCaseError> {
    Err(TestCaseError::fail(msg))
}

/// Drives the fleet through every change of `case` and checks the properties.
fn run(case: &Case, mutation: FleetMutation) -> Result<(), TestCaseError> {
    let bake = case.spec.bake.as_secs();
    let mut cluster: BTreeMap<String, Cluster> = case
        .spec
        .clusters
        .iter()
        .map(|c| (c.clone(), Cluster::default()))
        .collect();
    let mut record = FleetRecord::default();
    let mut now = 0u64;
    let mut person = case.person.iter();
    let mut person_wait = 0u32;
    let mut steps = 0u32;
    for (n, faults) in case.faults.iter().enumerate().take(case.changes) {
        let spec = FleetSpec {
            change: format!("rev-{}", n + 2),
            ..case.spec.clone()
        };
        let mut started: BTreeSet<String> = BTreeSet::new();
        let mut skipped: BTreeSet<String> = BTreeSet::new();
        let mut stopped = false;
        let mut clean = faults.iter().all(|f| matches!(f, Fault::None)) && case.abort_at.is_none();
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                return fail(format!(
                    "the fleet neither finished nor waited for a person in {MAX_STEPS} steps: {:?}",
                    record.state
                ));
            }
            // The person.
            if record.command.is_none() {
                if case.abort_at == Some(steps) && record.state == FleetState::Running {
                    record
                        .request(FleetCommand::Abort, at(now))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                } else if let FleetState::Stopped { cluster: on, .. } = record.state.clone() {
                    clean = false;
                    if person_wait > 0 {
                        person_wait -= 1;
                    } else {
                        let (delay, what) = person.next().cloned().unwrap_or((0, Person::Abort));
                        person_wait = delay;
                        let command = match what {
                            Person::Resume => FleetCommand::Resume { skip: None },
                            Person::FixThenResume => {
                                let c = cluster.get_mut(&on).expect("known");
                                c.fixed = true;
                                c.halted = false;
                                FleetCommand::Resume { skip: None }
                            }
                            Person::ResumeSkipping => FleetCommand::Resume {
                                skip: Some(on.clone()),
                            },
                            Person::Abort => FleetCommand::Abort,
                        };
                        record
                            .request(command, at(now))
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                } else if record.state == FleetState::Running {
                    // A stray resume is refused, changing nothing.
                    let before = record.clone();
                    if record
                        .request(FleetCommand::Resume { skip: None }, at(now))
                        .is_ok()
                        || record != before
                    {
                        return fail("a resume of a running fleet was taken".into());
                    }
                }
            }
            let seen: BTreeMap<String, ClusterObservation> = cluster
                .iter()
                .map(|(k, c)| (k.clone(), c.observe(now)))
                .collect();
            let action = decide_fleet_mutated(mutation, &spec, &record, &seen, at(now))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // A halt, or a failed check during the bake, stops the fleet at once.
            let failing: Vec<&String> = started
                .iter()
                .filter(|c| !skipped.contains(*c))
                .filter(|c| match record.cluster(c) {
                    Some(ClusterState::Rolling { .. }) => cluster[*c].halted,
                    Some(ClusterState::Baking { .. }) => {
                        cluster[*c].halted || cluster[*c].unhealthy.is_some()
                    }
                    _ => false,
                })
                .collect();
            if record.state == FleetState::Running
                && record.command.is_none()
                && !failing.is_empty()
                && !matches!(&action, FleetAction::Stop { cluster: c, .. } if failing.contains(&c))
            {
                return fail(format!(
                    "{failing:?} halted or failed the bake, and the fleet did not stop: {action}"
                ));
            }
            let before = record.clone();
            apply_mutated(mutation, &mut record, &action, at(now));
            if mutation == FleetMutation::None {
                count(&action);
            }
            check_record(&before, &record, &action, case.spec.max_at_once)?;
            match &action {
                FleetAction::Start { cluster: c, change } => {
                    let sim = cluster.get_mut(c).expect("a fleet cluster");
                    if sim.change.as_ref() == Some(change) {
                        continue;
                    }
                    if stopped {
                        return fail(format!("started {c} while the fleet was stopped"));
                    }
                    if let Some((h, _)) = cluster
                        .iter()
                        .find(|(h, s)| started.contains(*h) && !skipped.contains(*h) && s.halted)
                    {
                        return fail(format!("started {c} while {h}, started before, is halted"));
                    }
                    let wave = record
                        .waves
                        .iter()
                        .position(|w| w.contains(c))
                        .expect("planned");
                    for earlier in record.waves[..wave].iter().flatten() {
                        let e = &cluster[earlier];
                        if !skipped.contains(earlier)
                            && (e.change.as_ref() != Some(change) || e.baked.is_none())
                        {
                            return fail(format!(
                                "started {c} (wave {wave}) before {earlier} of an earlier wave \
                                 rolled and baked ({e:?})"
                            ));
                        }
                    }
                    let sim = cluster.get_mut(c).expect("a fleet cluster");
                    *sim = Cluster {
                        change: Some(change.clone()),
                        takes: case.takes[case
                            .spec
                            .clusters
                            .iter()
                            .position(|x| x == c)
                            .expect("known")],
                        fault: Some(
                            faults[case
                                .spec
                                .clusters
                                .iter()
                                .position(|x| x == c)
                                .expect("known")]
                            .clone(),
                        ),
                        ..Cluster::default()
                    };
                    started.insert(c.clone());
                    let changing = cluster
                        .values()
                        .filter(|s| s.change.as_ref() == Some(change) && s.rolling())
                        .count();
                    if changing > case.spec.max_at_once {
                        return fail(format!(
                            "{changing} clusters rolling at once, the maximum is {}",
                            case.spec.max_at_once
                        ));
                    }
                }
                FleetAction::Stop { cluster: c, .. } => {
                    let s = &cluster[c];
                    if !s.halted && s.unhealthy.is_none() {
                        return fail(format!(
                            "stopped on {c}, which is neither halted nor unhealthy"
                        ));
                    }
                    stopped = true;
                }
                FleetAction::Resume { cluster: c, then } => {
                    stopped = false;
                    if *then == Resumed::Skipped {
                        skipped.insert(c.clone());
                    }
                }
                FleetAction::Aborted { ran, .. } => {
                    let ran: BTreeSet<String> = ran.iter().cloned().collect();
                    if ran != started {
                        return fail(format!(
                            "the abort says {ran:?} ran the change, {started:?} did"
                        ));
                    }
                    break;
                }
                FleetAction::Done => {
                    for c in &case.spec.clusters {
                        let s = &cluster[c];
                        if !skipped.contains(c)
                            && (s.change.as_deref() != Some(&spec.change) || s.finished.is_none())
                        {
                            return fail(format!("done but {c} has not rolled the change: {s:?}"));
                        }
                    }
                    break;
                }
                FleetAction::Wait { .. } | FleetAction::Refuse { .. } => {
                    now += 1;
                    for c in cluster.values_mut() {
                        c.tick(now, bake);
                    }
                }
                _ => {}
            }
        }
        check_end(&record, &spec, &skipped, clean)?;
    }
    Ok(())
}

/// Checks one step's record change.
fn check_record(
    before: &FleetRecord,
    after: &FleetRecord,
    action: &FleetAction,
    max_at_once: usize,
) -> Result<(), TestCaseError> {
    for (i, r) in after.revisions.iter().enumerate() {
        if i > 0 && r.number != after.revisions[i - 1].number + 1 {
            return fail(format!(
                "revision {} follows revision {}",
                r.number,
                after.revisions[i - 1].number
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(twice) = r.rolled.iter().find(|x| !seen.insert(&x.cluster)) {
            return fail(format!(
                "revision {} lists {} twice",
                r.number, twice.cluster
            ));
        }
    }
    if !matches!(action, FleetAction::Plan { .. }) {
        for (c, state) in &before.clusters {
            if matches!(state, ClusterState::Done { .. }) && after.clusters.get(c) != Some(state) {
                return fail(format!(
                    "the done cluster {c} became {:?} ({action})",
                    after.clusters.get(c)
                ));
            }
        }
    }
    let rolling = after
        .clusters
        .values()
        .filter(|s| matches!(s, ClusterState::Rolling { .. }))
        .count();
    if rolling > max_at_once {
        return fail(format!(
            "{rolling} clusters rolling at once in the record, the maximum is {max_at_once}"
        ));
    }
    Ok(())
}

/// Checks a revision's end.
fn check_end(
    record: &FleetRecord,
    spec: &FleetSpec,
    skipped: &BTreeSet<String>,
    clean: bool,
) -> Result<(), TestCaseError> {
    let revision = record.current().expect("a revision");
    if clean && !matches!(record.state, FleetState::Done { .. }) {
        return fail(format!("a run without failures ended {:?}", record.state));
    }
    if let FleetState::Done { .. } = record.state {
        for c in &spec.clusters {
            let state = record.cluster(c);
            let listed = revision.rolled.iter().filter(|r| &r.cluster == c).count();
            let ok = if skipped.contains(c) {
                matches!(state, Some(ClusterState::Skipped { .. }))
            } else {
                matches!(state, Some(ClusterState::Done { .. })) && listed == 1
            };
            if !ok {
                return fail(format!(
                    "done, but {c} is {state:?} and listed {listed} times in revision {}",
                    revision.number
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn fleets_keep_their_rules_under_failures_and_commands(case in case()) {
        run(&case, FleetMutation::None)?;
    }
}

/// The random runs reach every rule (a property over runs that never stop
/// or resume would prove little). Runs its own cases so the counts do not
/// depend on the test order.
#[test]
fn the_properties_reach_every_rule() {
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| run(&c, FleetMutation::None))
        .expect("the properties hold");
    let counts: Vec<(&str, u64)> = KINDS
        .iter()
        .zip(&SEEN)
        .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
        .collect();
    println!("fleet steps taken: {counts:?}");
    for (kind, n) in counts {
        assert!(n > 0, "no run went through a {kind}");
    }
}

/// A broken rule must be caught by the same property, by one of `expected`.
fn assert_caught(mutation: FleetMutation, expected: &[&str]) {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&case(), |c| run(&c, mutation)) {
        Ok(()) => panic!("the fleet properties did not catch {mutation:?}"),
        Err(TestError::Fail(reason, case)) => {
            let reason = reason.to_string();
            assert!(
                expected.iter().any(|e| reason.contains(e)),
                "{mutation:?} was caught, but not by {expected:?}: {reason}\n{case:?}"
            );
            println!("{mutation:?} caught: {reason}");
        }
        Err(other) => panic!("{mutation:?}: {other}"),
    }
}

#[test]
fn ignoring_the_maximum_at_once_is_caught() {
    assert_caught(FleetMutation::IgnoreMaxAtOnce, &["rolling at once"]);
}

#[test]
fn starting_the_next_wave_without_the_bake_is_caught() {
    assert_caught(FleetMutation::SkipBake, &["rolled and baked"]);
}

#[test]
fn starting_while_stopped_is_caught() {
    assert_caught(
        FleetMutation::StartWhileStopped,
        &["while the fleet was stopped"],
    );
}

#[test]
fn ignoring_a_halt_is_caught() {
    assert_caught(FleetMutation::IgnoreHalts, &["the fleet did not stop"]);
}

#[test]
fn ignoring_a_failed_bake_is_caught() {
    assert_caught(FleetMutation::IgnoreFailedBake, &["the fleet did not stop"]);
}

#[test]
fn saying_done_before_the_last_wave_finished_is_caught() {
    assert_caught(
        FleetMutation::DoneWhenLastWaveStarted,
        &["done but", "done, but"],
    );
}

#[test]
fn reusing_a_revision_number_is_caught() {
    assert_caught(FleetMutation::ReuseRevisionNumber, &["follows revision"]);
}

#[test]
fn reopening_done_clusters_on_resume_is_caught() {
    assert_caught(FleetMutation::ReopenDoneOnResume, &["the done cluster"]);
}
