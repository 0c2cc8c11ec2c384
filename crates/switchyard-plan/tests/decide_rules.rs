//! One test per rule of `decide`, on small fixtures.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_plan::decide::{Approval, OnlineChange, SchemaTarget};
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::record::{Failure, Halted, Intent, SwitchoverStep, Waiting};
use switchyard_plan::topology::{GaleraState, TopologyKind, WsrepState};
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{
    Action, HaltReason, Health, Instance, Observed, Policy, Record, Revision, Role, Strategy,
    Target, Timestamp, WaitReason, decide,
};

const NOW: Timestamp = Timestamp(1_000_000);

fn v(s: &str) -> Version {
    Version::parse(s).expect("test version")
}

fn rev(number: u64, version: &str) -> Revision {
    Revision::new(number, Flavor::Mariadb, v(version), &BTreeMap::new())
}

fn target(version: &str) -> Target {
    Target {
        revision: rev(2, version),
        version: v(version),
        online: None,
        schema: None,
    }
}

/// A healthy MariaDB cluster: `versions[i]` is instance i's version.
fn cluster(primary: u32, versions: &[&str]) -> Observed {
    let instances = versions
        .iter()
        .enumerate()
        .map(|(i, ver)| {
            let ordinal = i as u32;
            let is_primary = ordinal == primary;
            Instance {
                ordinal,
                role: if is_primary {
                    Role::Primary
                } else {
                    Role::Replica
                },
                version: v(ver),
                revision: rev(1, ver),
                health: Health::Ready,
                // Every instance holds the same transactions (the runtimes
                // always read an answering server's set).
                gtid: Some(GtidSet::parse(Flavor::Mariadb, "0-1-5").expect("gtid")),
                writable: is_primary,
                fenced: false,
                drained: false,
                source: (!is_primary).then_some(primary),
                schema: None,
                link: None,
                ack_replicas: None,
                galera: None,
            }
        })
        .collect();
    Observed {
        kind: TopologyKind::Async,
        flavor: Flavor::Mariadb,
        instances,
    }
}

fn set(o: &mut Observed, ordinal: u32, f: impl FnOnce(&mut Instance)) {
    f(o.instances
        .iter_mut()
        .find(|i| i.ordinal == ordinal)
        .expect("instance"));
}

fn d(o: &Observed, r: &Record, t: &Target, p: &Policy) -> Action {
    decide(o, r, t, p, NOW)
}

#[test]
fn replicas_go_first_highest_ordinal_first() {
    let o = cluster(0, &["10.5.27", "10.5.27", "10.5.27"]);
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Drain { ordinal: 2 }
    );

    // With the primary at ordinal 1, the replicas are 2 then 0.
    let mut o = cluster(1, &["10.5.27", "10.5.27", "10.5.27"]);
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Drain { ordinal: 2 }
    );
    set(&mut o, 2, |i| {
        (i.version, i.revision) = (v("10.11.14"), rev(2, "10.11.14"))
    });
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Drain { ordinal: 0 }
    );
}

#[test]
fn the_primary_goes_last_to_the_lowest_ordinal_replica() {
    let o = cluster(0, &["10.5.27", "10.11.14", "10.11.14"]);
    let mut o = o;
    for r in [1, 2] {
        set(&mut o, r, |i| i.revision = rev(2, "10.11.14"));
    }
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Switchover { from: 0, to: 1 }
    );
}

#[test]
fn a_quarantined_older_instance_does_not_hold_back_a_newer_candidate() {
    // After a failover in the middle of an upgrade: the primary 1 and the
    // quarantined failed primary 0 run the old version, replica 2 the new one.
    let mut o = cluster(1, &["10.11.14", "10.11.14", "11.8.3"]);
    set(&mut o, 2, |i| i.revision = rev(2, "11.8.3"));
    set(&mut o, 0, |i| {
        i.source = None;
        i.fenced = true;
        i.drained = true;
    });
    let t = target("11.8.3");
    let p = Policy::default();
    // Not quarantined, instance 0 would end up under a newer source.
    assert!(
        !matches!(d(&o, &Record::default(), &t, &p), Action::Switchover { .. }),
        "0 (10.11) must not be left under 2 (11.8)"
    );
    let mut r = Record::default();
    r.quarantined.insert(
        0,
        switchyard_plan::record::Quarantine {
            extra: "0-1-9".into(),
            at: NOW,
        },
    );
    assert_eq!(d(&o, &r, &t, &p), Action::Switchover { from: 1, to: 2 });
}

#[test]
fn a_candidate_with_errant_transactions_is_passed_over() {
    let mut o = cluster(0, &["10.5.27", "10.11.14", "10.11.14"]);
    for r in [1, 2] {
        set(&mut o, r, |i| i.revision = rev(2, "10.11.14"));
    }
    let gtid = |s: &str| Some(GtidSet::parse(Flavor::Mariadb, s).expect("gtid"));
    set(&mut o, 0, |i| i.gtid = gtid("0-1-100"));
    set(&mut o, 1, |i| i.gtid = gtid("0-1-100,1-2-3"));
    set(&mut o, 2, |i| i.gtid = gtid("0-1-100"));
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Switchover { from: 0, to: 2 }
    );
}

#[test]
fn an_instance_ahead_of_the_target_is_a_downgrade_and_halts() {
    // Instance 2 was upgraded by hand to 11.8 while the target is 10.11:
    // bringing it to the target would be a downgrade across major versions.
    let mut o = cluster(0, &["10.5.27", "10.11.14", "11.8.3"]);
    set(&mut o, 1, |i| i.revision = rev(2, "10.11.14"));
    let Action::Halt { reason } = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    ) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "forbidden-transition");
    assert!(reason.to_string().contains("instance 2"), "{reason}");
}

#[test]
fn a_supervised_switchover_waits_for_an_approval_naming_it() {
    let mut o = cluster(0, &["10.5.27", "10.11.14", "10.11.14"]);
    for r in [1, 2] {
        set(&mut o, r, |i| i.revision = rev(2, "10.11.14"));
    }
    let t = target("10.11.14");
    let mut p = Policy {
        strategy: Strategy::Supervised,
        ..Policy::default()
    };
    let waiting = Action::Wait {
        reason: WaitReason::AwaitingApproval {
            revision: 2,
            from: 0,
            to: 1,
        },
    };
    assert_eq!(d(&o, &Record::default(), &t, &p), waiting);
    // A stale approval (an earlier revision) or one for another candidate approves nothing.
    p.approval = Some(Approval {
        revision: 1,
        from: 0,
        to: 1,
    });
    assert_eq!(d(&o, &Record::default(), &t, &p), waiting);
    p.approval = Some(Approval {
        revision: 2,
        from: 0,
        to: 2,
    });
    assert_eq!(d(&o, &Record::default(), &t, &p), waiting);
    p.approval = Some(Approval {
        revision: 2,
        from: 0,
        to: 1,
    });
    assert_eq!(
        d(&o, &Record::default(), &t, &p),
        Action::Switchover { from: 0, to: 1 }
    );
}

#[test]
fn paused_starts_nothing() {
    let o = cluster(0, &["10.5.27", "10.5.27"]);
    let p = Policy {
        strategy: Strategy::Paused,
        ..Policy::default()
    };
    assert_eq!(
        d(&o, &Record::default(), &target("10.11.14"), &p),
        Action::Wait {
            reason: WaitReason::Paused
        }
    );
}

#[test]
fn an_unhealthy_instance_blocks_then_halts_after_halt_after() {
    let mut o = cluster(0, &["10.5.27", "10.5.27", "10.5.27"]);
    set(&mut o, 1, |i| {
        i.health = Health::ReplicationStopped {
            errno: 1062,
            message: "Duplicate entry".into(),
        }
    });
    let t = target("10.11.14");
    let p = Policy {
        halt_after: Duration::from_secs(60),
        ..Policy::default()
    };
    let Action::Wait { reason } = d(&o, &Record::default(), &t, &p) else {
        panic!("expected a wait")
    };
    assert_eq!(reason.key(), "unhealthy:1");
    let record = Record {
        waiting: Some(Waiting {
            key: reason.key(),
            since: Timestamp(NOW.0 - 61_000),
        }),
        ..Record::default()
    };
    let Action::Halt { reason } = d(&o, &record, &t, &p) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "waited-too-long");
}

#[test]
fn the_primary_is_not_fenced_behind_a_candidate_still_catching_up() {
    // Instance 1 is back from its restart and healthy (3 s is within the
    // policy's bound), but fencing the primary now would stall writes while
    // it applies those 3 s: the switchover waits until it is caught up.
    let mut o = cluster(0, &["10.5.27", "10.11.14", "10.11.14"]);
    for r in [1, 2] {
        set(&mut o, r, |i| i.revision = rev(2, "10.11.14"));
    }
    set(&mut o, 1, |i| i.health = Health::Lagging { seconds: 3 });
    // Instance 2 is caught up, but the choice does not move to it: the
    // lowest eligible ordinal is waited for.
    set(&mut o, 2, |i| i.health = Health::Ready);
    let t = target("10.11.14");
    let p = Policy::default();
    match d(&o, &Record::default(), &t, &p) {
        Action::Wait {
            reason: WaitReason::NoCandidate { detail },
        } => assert!(detail.contains("candidate 1 lags 3s"), "{detail}"),
        other => panic!("expected a wait for a caught-up candidate, got {other:?}"),
    }
    set(&mut o, 1, |i| i.health = Health::Lagging { seconds: 1 });
    assert_eq!(
        d(&o, &Record::default(), &t, &p),
        Action::Switchover { from: 0, to: 1 }
    );
}

#[test]
fn a_lagging_replica_beyond_the_bound_blocks() {
    let mut o = cluster(0, &["10.5.27", "10.5.27", "10.5.27"]);
    set(&mut o, 1, |i| i.health = Health::Lagging { seconds: 30 });
    let p = Policy {
        max_lag_seconds: 10,
        ..Policy::default()
    };
    assert_eq!(
        d(&o, &Record::default(), &target("10.11.14"), &p),
        Action::Wait {
            reason: WaitReason::Lagging {
                ordinal: 1,
                seconds: 30,
                max: 10
            }
        }
    );
}

#[test]
fn a_crashed_instance_is_recovered_on_its_version_first() {
    let mut o = cluster(0, &["10.5.27", "10.5.27", "10.5.27"]);
    set(&mut o, 1, |i| i.health = Health::Crashed);
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Recover { ordinal: 1 }
    );
}

#[test]
fn a_forbidden_downgrade_halts_before_touching_anything() {
    let o = cluster(0, &["10.11.14", "10.11.14"]);
    let Action::Halt { reason } = d(
        &o,
        &Record::default(),
        &target("10.5.27"),
        &Policy::default(),
    ) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "forbidden-transition");
    assert!(
        reason.to_string().contains("Knowledge Base"),
        "cites the manual: {reason}"
    );
}

#[test]
fn the_highest_version_ever_run_refuses_a_later_downgrade() {
    // The instances run 10.11 (restored from a backup, say) but the cluster ran 11.8.
    let o = cluster(0, &["10.11.6", "10.11.6"]);
    let record = Record {
        highest_version: Some(v("11.8.3")),
        ..Record::default()
    };
    let Action::Halt { reason } = d(&o, &record, &target("10.11.14"), &Policy::default()) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "below-highest-version");
}

#[test]
fn an_unknown_series_halts() {
    let o = cluster(0, &["10.11.14", "10.11.14"]);
    let Action::Halt { reason } = d(
        &o,
        &Record::default(),
        &target("99.1.0"),
        &Policy::default(),
    ) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "unknown-version");
}

#[test]
fn a_switchover_resumes_before_its_deadline_and_is_undone_after() {
    let o = cluster(0, &["10.5.27", "10.11.14"]);
    let intent = |deadline: u64| Intent::Switchover {
        from: 0,
        to: 1,
        step: SwitchoverStep::Fenced,
        started: Timestamp(NOW.0 - 1000),
        deadline: Timestamp(deadline),
    };
    let t = target("10.11.14");
    let before = Record {
        intent: Some(intent(NOW.0 + 5000)),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &before, &t, &Policy::default()),
        Action::Switchover { from: 0, to: 1 }
    );
    let after = Record {
        intent: Some(intent(NOW.0 - 1)),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &after, &t, &Policy::default()),
        Action::Unfence { ordinal: 0 }
    );
}

#[test]
fn after_promotion_the_old_primary_restarts_then_rejoins() {
    // Promoted and repointed: 1 is primary on 10.11, the old primary 0 on 10.5
    // is out of replication.
    let mut o = cluster(1, &["10.5.27", "10.11.14", "10.11.14"]);
    set(&mut o, 0, |i| (i.source, i.fenced) = (None, true));
    for r in [1, 2] {
        set(&mut o, r, |i| i.revision = rev(2, "10.11.14"));
    }
    let t = target("10.11.14");
    let record = Record {
        intent: Some(Intent::Switchover {
            from: 0,
            to: 1,
            step: SwitchoverStep::Repointed,
            started: NOW,
            deadline: NOW,
        }),
        ..Record::default()
    };
    let Action::Restart {
        ordinal: 0,
        slow_shutdown: true,
        ..
    } = d(&o, &record, &t, &Policy::default())
    else {
        panic!("expected the old primary's restart")
    };
    // Restarted on the target: repointed to the new primary, then back in service.
    set(&mut o, 0, |i| {
        (i.version, i.revision) = (v("10.11.14"), rev(2, "10.11.14"))
    });
    let restarting = Record {
        intent: Some(Intent::Restarting {
            ordinal: 0,
            revision: rev(2, "10.11.14"),
            started: NOW,
        }),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &restarting, &t, &Policy::default()),
        Action::Repoint {
            ordinal: 0,
            source: 1
        }
    );
    // The repoint lifts the fence (it stays read-only).
    set(&mut o, 0, |i| (i.source, i.fenced) = (Some(1), false));
    assert_eq!(
        d(&o, &restarting, &t, &Policy::default()),
        Action::Undrain { ordinal: 0 }
    );
}

#[test]
fn a_halt_sticks_until_the_target_changes() {
    let o = cluster(0, &["10.5.27", "10.5.27"]);
    let t = target("10.11.14");
    let reason = HaltReason::Unsupported {
        message: "test".into(),
    };
    let record = Record {
        halted: Some(Halted {
            revision_hash: t.revision.hash.clone(),
            reason: reason.clone(),
            at: NOW,
        }),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &record, &t, &Policy::default()),
        Action::Halt { reason }
    );
    assert_eq!(
        d(&o, &record, &target("10.11.13"), &Policy::default()),
        Action::Drain { ordinal: 1 }
    );
}

#[test]
fn an_online_change_sets_variables_replicas_first_without_draining() {
    let mut o = cluster(0, &["10.11.14", "10.11.14", "10.11.14"]);
    let config = BTreeMap::from([(
        "innodb_buffer_pool_size".to_string(),
        "268435456".to_string(),
    )]);
    let t = Target {
        revision: Revision::new(2, Flavor::Mariadb, v("10.11.14"), &config),
        version: v("10.11.14"),
        online: Some(OnlineChange {
            from_hash: rev(1, "10.11.14").hash,
            variables: vec![("innodb_buffer_pool_size".into(), "268435456".into())],
        }),
        schema: None,
    };
    let Action::ApplyVariables { ordinal: 2, .. } =
        d(&o, &Record::default(), &t, &Policy::default())
    else {
        panic!("expected variables on 2 first")
    };
    for r in [1, 2] {
        set(&mut o, r, |i| i.revision = t.revision.clone());
    }
    let Action::ApplyVariables { ordinal: 0, .. } =
        d(&o, &Record::default(), &t, &Policy::default())
    else {
        panic!("expected variables on the primary last, without a switchover")
    };
}

#[test]
fn a_replica_older_than_the_primary_is_held_back_for_its_upgrade_rather_than_replicating() {
    // Left behind by a failover that promoted a newer replica: it is never
    // repointed under the newer primary; the rollout drains and upgrades it.
    let mut o = cluster(1, &["10.5.27", "10.11.14", "10.11.14"]);
    set(&mut o, 0, |i| i.source = Some(2));
    let action = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    );
    assert_eq!(action, Action::Drain { ordinal: 0 }, "{action:?}");
}

#[test]
fn a_failing_step_backs_off_then_halts() {
    let o = cluster(0, &["10.5.27", "10.5.27"]);
    let t = target("10.11.14");
    let p = Policy {
        halt_after: Duration::from_secs(300),
        retry_backoff: Duration::from_secs(5),
        ..Policy::default()
    };
    let failure = |first: u64, last: u64| Failure {
        target: t.key(),
        key: "restart:1".into(),
        first: Timestamp(first),
        last: Timestamp(last),
        count: 3,
        message: "did not start".into(),
    };
    let recent = Record {
        failure: Some(failure(NOW.0 - 10_000, NOW.0 - 1000)),
        ..Record::default()
    };
    let Action::Wait {
        reason: WaitReason::Backoff { .. },
    } = d(&o, &recent, &t, &p)
    else {
        panic!("expected a backoff")
    };
    let old = Record {
        failure: Some(failure(NOW.0 - 301_000, NOW.0 - 1000)),
        ..Record::default()
    };
    let Action::Halt { reason } = d(&o, &old, &t, &p) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "keeps-failing");
    // A new target (a rollback, say) does not inherit the old target's failure.
    let other = target("10.11.13");
    assert_eq!(d(&o, &old, &other, &p), Action::Drain { ordinal: 1 });
}

#[test]
fn a_drained_replica_waits_for_the_drain_grace() {
    let o = cluster(0, &["10.5.27", "10.5.27"]);
    let p = Policy {
        drain: Duration::from_secs(10),
        ..Policy::default()
    };
    let record = Record {
        intent: Some(Intent::Drained {
            ordinal: 1,
            at: Timestamp(NOW.0 - 2000),
        }),
        ..Record::default()
    };
    let Action::Wait {
        reason: WaitReason::DrainGrace { ordinal: 1, .. },
    } = d(&o, &record, &target("10.11.14"), &p)
    else {
        panic!("expected the drain grace")
    };
    let record = Record {
        intent: Some(Intent::Drained {
            ordinal: 1,
            at: Timestamp(NOW.0 - 20_000),
        }),
        ..Record::default()
    };
    let Action::Restart {
        ordinal: 1,
        slow_shutdown: true,
        ..
    } = d(&o, &record, &target("10.11.14"), &p)
    else {
        panic!("expected the restart")
    };
}

#[test]
fn an_inconsistent_topology_halts() {
    let mut o = cluster(0, &["10.5.27", "10.5.27"]);
    set(&mut o, 1, |i| i.role = Role::Primary);
    let Action::Halt { reason } = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    ) else {
        panic!("expected a halt")
    };
    assert_eq!(reason.category(), "invalid-topology");
}

fn schema_target(primary_online: bool) -> Target {
    let mut t = target("10.11.14");
    t.revision = rev(1, "10.11.14");
    t.schema = Some(SchemaTarget {
        id: "add-index-k".into(),
        statement: "ALTER TABLE app.t ADD INDEX k (k)".into(),
        replica_settings: vec![],
        primary_online,
    });
    t
}

#[test]
fn a_schema_change_rolls_replicas_first_with_a_drain() {
    let o = cluster(0, &["10.11.14", "10.11.14", "10.11.14"]);
    let t = schema_target(true);
    assert_eq!(
        d(&o, &Record::default(), &t, &Policy::default()),
        Action::Drain { ordinal: 2 }
    );
    let drained = Record {
        intent: Some(Intent::Drained {
            ordinal: 2,
            at: Timestamp(0),
        }),
        ..Record::default()
    };
    let Action::RunDdl { ordinal: 2, change } = d(&o, &drained, &t, &Policy::default()) else {
        panic!("expected the ALTER on 2")
    };
    assert_eq!(change.id, "add-index-k");
    // Once 2 reports the change, it returns to service.
    let mut o = o;
    set(&mut o, 2, |i| i.schema = Some("add-index-k".into()));
    let altering = Record {
        intent: Some(Intent::Altering {
            ordinal: 2,
            change: "add-index-k".into(),
            started: NOW,
        }),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &altering, &t, &Policy::default()),
        Action::Undrain { ordinal: 2 }
    );
}

#[test]
fn an_online_schema_change_runs_on_the_primary_in_place_last() {
    let mut o = cluster(0, &["10.11.14", "10.11.14", "10.11.14"]);
    for r in [1, 2] {
        set(&mut o, r, |i| i.schema = Some("add-index-k".into()));
    }
    let Action::RunDdl { ordinal: 0, .. } = d(
        &o,
        &Record::default(),
        &schema_target(true),
        &Policy::default(),
    ) else {
        panic!("expected the ALTER on the primary in place")
    };
    // A change the primary cannot take online moves the primary first.
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &schema_target(false),
            &Policy::default()
        ),
        Action::Switchover { from: 0, to: 1 }
    );
}

#[test]
fn the_old_primary_is_altered_before_it_replicates_new_shape_rows() {
    let mut o = cluster(1, &["10.11.14", "10.11.14", "10.11.14"]);
    set(&mut o, 0, |i| (i.source, i.fenced) = (None, true));
    for r in [1, 2] {
        set(&mut o, r, |i| i.schema = Some("add-index-k".into()));
    }
    let record = Record {
        intent: Some(Intent::Switchover {
            from: 0,
            to: 1,
            step: SwitchoverStep::Repointed,
            started: NOW,
            deadline: NOW,
        }),
        ..Record::default()
    };
    let t = schema_target(false);
    let Action::RunDdl { ordinal: 0, .. } = d(&o, &record, &t, &Policy::default()) else {
        panic!("expected the ALTER on the old primary before it rejoins")
    };
    set(&mut o, 0, |i| i.schema = Some("add-index-k".into()));
    assert_eq!(
        d(&o, &record, &t, &Policy::default()),
        Action::Repoint {
            ordinal: 0,
            source: 1
        }
    );
}

/// A synced Galera cluster of `n` MariaDB 10.11 nodes, node 0 the writer.
fn galera_cluster(n: usize) -> Observed {
    let mut o = cluster(0, &vec!["10.11.14"; n]);
    o.kind = TopologyKind::Galera;
    for i in &mut o.instances {
        i.source = None;
        i.writable = true;
        i.galera = Some(GaleraState::synced(n as u32));
    }
    o
}

fn galera_state(o: &mut Observed, ordinal: u32, state: WsrepState) {
    set(o, ordinal, |i| {
        i.galera.as_mut().expect("a Galera node").state = state;
    });
}

#[test]
fn galera_rolls_a_schema_change_node_by_node_with_the_writer_last() {
    let mut o = galera_cluster(3);
    let t = schema_target(false);
    let p = Policy::default();
    assert_eq!(
        d(&o, &Record::default(), &t, &p),
        Action::Drain { ordinal: 2 }
    );
    let drained = Record {
        intent: Some(Intent::Drained {
            ordinal: 2,
            at: NOW,
        }),
        ..Record::default()
    };
    set(&mut o, 2, |i| i.drained = true);
    let Action::RunDdl { ordinal: 2, .. } = d(&o, &drained, &t, &p) else {
        panic!("expected the ALTER on node 2")
    };
    // Desynced for its ALTER, then catching up: waited on, not returned.
    let altering = Record {
        intent: Some(Intent::Altering {
            ordinal: 2,
            change: "add-index-k".into(),
            started: NOW,
        }),
        ..Record::default()
    };
    set(&mut o, 2, |i| i.schema = Some("add-index-k".into()));
    galera_state(&mut o, 2, WsrepState::Joined);
    let Action::Wait {
        reason: WaitReason::Unhealthy { ordinal: 2, .. },
    } = d(&o, &altering, &t, &p)
    else {
        panic!("expected a wait for node 2 to sync")
    };
    galera_state(&mut o, 2, WsrepState::Synced);
    assert_eq!(d(&o, &altering, &t, &p), Action::Undrain { ordinal: 2 });
    set(&mut o, 2, |i| i.drained = false);
    assert_eq!(
        d(&o, &Record::default(), &t, &p),
        Action::Drain { ordinal: 1 }
    );
    // The writer goes last, drained like the others (the runtime moves the writes).
    set(&mut o, 1, |i| i.schema = Some("add-index-k".into()));
    assert_eq!(
        d(&o, &Record::default(), &t, &p),
        Action::Drain { ordinal: 0 }
    );
    set(&mut o, 0, |i| i.schema = Some("add-index-k".into()));
    assert_eq!(d(&o, &Record::default(), &t, &p), Action::Done);
}

#[test]
fn galera_takes_no_node_out_while_another_is_a_donor_joining_or_missing() {
    let t = schema_target(false);
    let p = Policy::default();
    for (node, state) in [
        (0, WsrepState::DonorDesynced),
        (1, WsrepState::Joining),
        (0, WsrepState::Joined),
        // The next node itself serving a state transfer.
        (2, WsrepState::DonorDesynced),
    ] {
        let mut o = galera_cluster(3);
        galera_state(&mut o, node, state);
        let action = d(&o, &Record::default(), &t, &p);
        let Action::Wait {
            reason: WaitReason::Unhealthy { ordinal, .. },
        } = action
        else {
            panic!("node {node} {state}: expected a wait, got {action:?}")
        };
        assert_eq!(ordinal, node);
    }
    // A node missing from the others' component.
    let mut o = galera_cluster(3);
    for i in &mut o.instances {
        i.galera.as_mut().expect("galera").cluster_size = 2;
    }
    assert!(matches!(
        d(&o, &Record::default(), &t, &p),
        Action::Wait { .. }
    ));
    // A drained node becomes a donor before its ALTER: the ALTER waits.
    let mut o = galera_cluster(3);
    set(&mut o, 2, |i| i.drained = true);
    galera_state(&mut o, 2, WsrepState::DonorDesynced);
    let drained = Record {
        intent: Some(Intent::Drained {
            ordinal: 2,
            at: NOW,
        }),
        ..Record::default()
    };
    assert!(matches!(d(&o, &drained, &t, &p), Action::Wait { .. }));
}

#[test]
fn galera_halts_rather_than_lose_quorum() {
    let o = galera_cluster(2);
    let Action::Halt {
        reason: reason @ HaltReason::GaleraNoQuorum { .. },
    } = d(
        &o,
        &Record::default(),
        &schema_target(false),
        &Policy::default(),
    )
    else {
        panic!("expected a quorum halt")
    };
    assert_eq!(reason.category(), "galera-no-quorum");
    assert!(reason.to_string().contains("1 of 2"), "{reason}");
}

#[test]
fn galera_halts_when_a_node_is_lost_during_its_alter() {
    let t = schema_target(false);
    let p = Policy::default();
    let altering = Record {
        intent: Some(Intent::Altering {
            ordinal: 2,
            change: "add-index-k".into(),
            started: NOW,
        }),
        ..Record::default()
    };
    for lost in [
        Health::Crashed,
        Health::Starting,
        Health::Unreachable {
            reason: "refused".into(),
        },
    ] {
        let mut o = galera_cluster(3);
        set(&mut o, 2, |i| {
            i.drained = true;
            i.health = lost.clone();
        });
        let Action::Halt {
            reason: reason @ HaltReason::GaleraNodeLost { ordinal: 2, .. },
        } = d(&o, &altering, &t, &p)
        else {
            panic!("expected a halt for node 2 {lost}")
        };
        assert_eq!(reason.category(), "galera-node-lost");
    }
    // Out of the primary component (voted out: it could not apply a row).
    let mut o = galera_cluster(3);
    set(&mut o, 2, |i| {
        i.drained = true;
        i.schema = Some("add-index-k".into());
        i.galera.as_mut().expect("galera").primary_component = false;
    });
    assert!(matches!(
        d(&o, &altering, &t, &p),
        Action::Halt {
            reason: HaltReason::GaleraNodeLost { ordinal: 2, .. }
        }
    ));
    // The ALTER failed (its connection died with the node): halted, not retried,
    // even once the node is back.
    let mut o = galera_cluster(3);
    set(&mut o, 2, |i| i.drained = true);
    let failed = Record {
        failure: Some(Failure {
            target: t.key(),
            key: "run-ddl:2".into(),
            first: NOW,
            last: NOW,
            count: 1,
            message: "connection lost".into(),
        }),
        ..altering.clone()
    };
    let Action::Halt { reason } = d(&o, &failed, &t, &p) else {
        panic!("expected a halt")
    };
    assert!(reason.to_string().contains("connection lost"), "{reason}");
}

#[test]
fn galera_halts_when_a_node_does_not_come_back() {
    let mut o = galera_cluster(3);
    set(&mut o, 2, |i| {
        i.drained = true;
        i.schema = Some("add-index-k".into());
    });
    galera_state(&mut o, 2, WsrepState::Joined);
    let p = Policy::default();
    let record = Record {
        intent: Some(Intent::Altering {
            ordinal: 2,
            change: "add-index-k".into(),
            started: NOW,
        }),
        waiting: Some(Waiting {
            key: "unhealthy:2".into(),
            since: Timestamp(NOW.0 - p.halt_after.as_millis() as u64),
        }),
        ..Record::default()
    };
    let Action::Halt {
        reason: reason @ HaltReason::WaitedTooLong { .. },
    } = d(&o, &record, &schema_target(false), &p)
    else {
        panic!("expected a halt")
    };
    assert!(reason.to_string().contains("Joined"), "{reason}");
}

/// A new revision of a Galera cluster on 10.11.14: a static variable changed
/// (a rolling restart).
fn galera_config_target() -> Target {
    let config = BTreeMap::from([("max_connections".to_owned(), "300".to_owned())]);
    Target::new(
        Revision::new(2, Flavor::Mariadb, v("10.11.14"), &config),
        v("10.11.14"),
    )
}

fn restarting(ordinal: u32, t: &Target) -> Record {
    Record {
        intent: Some(Intent::Restarting {
            ordinal,
            revision: t.revision.clone(),
            started: NOW,
        }),
        ..Record::default()
    }
}

#[test]
fn galera_rolls_a_restart_node_by_node_with_the_writer_last() {
    let mut o = galera_cluster(3);
    let t = galera_config_target();
    let p = Policy::default();
    for node in [2, 1, 0] {
        assert_eq!(
            d(&o, &Record::default(), &t, &p),
            Action::Drain { ordinal: node },
            "node {node} next"
        );
        let drained = Record {
            intent: Some(Intent::Drained {
                ordinal: node,
                at: NOW,
            }),
            ..Record::default()
        };
        set(&mut o, node, |i| i.drained = true);
        assert_eq!(
            d(&o, &drained, &t, &p),
            Action::Restart {
                ordinal: node,
                revision: t.revision.clone(),
                version: v("10.11.14"),
                slow_shutdown: false,
            }
        );
        // Restarted, joining by IST: waited on, not returned.
        set(&mut o, node, |i| i.revision = t.revision.clone());
        galera_state(&mut o, node, WsrepState::Joining);
        let Action::Wait {
            reason: WaitReason::Unhealthy { ordinal, health },
        } = d(&o, &restarting(node, &t), &t, &p)
        else {
            panic!("expected a wait for node {node} to sync")
        };
        assert_eq!(ordinal, node);
        assert!(health.contains("Joining"), "{health}");
        // Synced, but the others do not count it yet: still waited on.
        galera_state(&mut o, node, WsrepState::Synced);
        set(&mut o, node, |i| {
            i.galera.as_mut().expect("galera").cluster_size = 2;
        });
        assert!(matches!(
            d(&o, &restarting(node, &t), &t, &p),
            Action::Wait { .. }
        ));
        set(&mut o, node, |i| {
            i.galera.as_mut().expect("galera").cluster_size = 3;
        });
        assert_eq!(
            d(&o, &restarting(node, &t), &t, &p),
            Action::Undrain { ordinal: node }
        );
        set(&mut o, node, |i| i.drained = false);
    }
    assert_eq!(d(&o, &Record::default(), &t, &p), Action::Done);
}

#[test]
fn galera_restarts_no_node_while_another_is_out_a_donor_or_quorum_is_short() {
    let t = galera_config_target();
    let p = Policy::default();
    // Node 1 still restarting (drained, no intent: its step given up).
    let mut o = galera_cluster(3);
    set(&mut o, 1, |i| i.drained = true);
    galera_state(&mut o, 1, WsrepState::Joining);
    assert!(matches!(
        d(&o, &Record::default(), &t, &p),
        Action::Wait {
            reason: WaitReason::Unhealthy { ordinal: 1, .. }
        }
    ));
    // A donor elsewhere.
    let mut o = galera_cluster(3);
    galera_state(&mut o, 0, WsrepState::DonorDesynced);
    assert!(matches!(
        d(&o, &Record::default(), &t, &p),
        Action::Wait {
            reason: WaitReason::Unhealthy { ordinal: 0, .. }
        }
    ));
    // Two nodes: no quorum without either.
    assert!(matches!(
        d(&galera_cluster(2), &Record::default(), &t, &p),
        Action::Halt {
            reason: HaltReason::GaleraNoQuorum { .. }
        }
    ));
}

#[test]
fn galera_starts_a_node_killed_in_its_restart_and_halts_on_one_that_does_not_come_back() {
    let t = galera_config_target();
    let p = Policy::default();
    let mut o = galera_cluster(3);
    set(&mut o, 2, |i| {
        i.drained = true;
        i.revision = t.revision.clone();
        i.health = Health::Crashed;
        i.galera = None;
    });
    assert_eq!(
        d(&o, &restarting(2, &t), &t, &p),
        Action::Recover { ordinal: 2 }
    );
    // Killed before its shutdown finished, on its old revision: recovered on it.
    set(&mut o, 2, |i| i.revision = rev(1, "10.11.14"));
    assert_eq!(
        d(&o, &restarting(2, &t), &t, &p),
        Action::Recover { ordinal: 2 }
    );
    // Shut down, never started (the engine stopped in between): restarted.
    set(&mut o, 2, |i| i.health = Health::Stopped);
    assert!(matches!(
        d(&o, &restarting(2, &t), &t, &p),
        Action::Restart { ordinal: 2, .. }
    ));
    // Up on the target revision, never synced: a wait that halts after
    // halt_after, with the node's state, and no other node taken out.
    set(&mut o, 2, |i| {
        i.health = Health::Ready;
        i.revision = t.revision.clone();
        i.galera = Some(GaleraState::synced(3));
    });
    galera_state(&mut o, 2, WsrepState::Joining);
    let mut record = restarting(2, &t);
    record.waiting = Some(Waiting {
        key: "unhealthy:2".into(),
        since: Timestamp(NOW.0 - p.halt_after.as_millis() as u64),
    });
    let Action::Halt {
        reason: reason @ HaltReason::WaitedTooLong { .. },
    } = d(&o, &record, &t, &p)
    else {
        panic!("expected a halt")
    };
    assert!(reason.to_string().contains("Joining"), "{reason}");
    // A recovery that keeps failing halts too.
    set(&mut o, 2, |i| i.health = Health::Crashed);
    let failing = Record {
        failure: Some(Failure {
            target: t.key(),
            key: "recover:2".into(),
            first: Timestamp(NOW.0 - p.halt_after.as_millis() as u64),
            last: NOW,
            count: 5,
            message: "the server exited".into(),
        }),
        ..restarting(2, &t)
    };
    assert!(matches!(
        d(&o, &failing, &t, &p),
        Action::Halt {
            reason: HaltReason::KeepsFailing { .. }
        }
    ));
}

#[test]
fn galera_sets_dynamic_variables_online_without_a_drain() {
    let mut o = galera_cluster(3);
    let config = BTreeMap::from([("wsrep_slave_threads".to_owned(), "4".to_owned())]);
    let t = Target {
        revision: Revision::new(2, Flavor::Mariadb, v("10.11.14"), &config),
        version: v("10.11.14"),
        online: Some(OnlineChange {
            from_hash: rev(1, "10.11.14").hash,
            variables: vec![("wsrep_slave_threads".into(), "4".into())],
        }),
        schema: None,
    };
    let p = Policy::default();
    for node in [2, 1, 0] {
        let Action::ApplyVariables { ordinal, .. } = d(&o, &Record::default(), &t, &p) else {
            panic!("expected variables on {node}")
        };
        assert_eq!(ordinal, node);
        set(&mut o, node, |i| i.revision = t.revision.clone());
    }
    assert_eq!(d(&o, &Record::default(), &t, &p), Action::Done);
    // Not while another node is a donor.
    let mut o = galera_cluster(3);
    galera_state(&mut o, 0, WsrepState::DonorDesynced);
    assert!(matches!(
        d(&o, &Record::default(), &t, &p),
        Action::Wait { .. }
    ));
}

#[test]
fn galera_upgrades_only_between_consecutive_series_and_never_down() {
    let p = Policy::default();
    let on = |version: &str| {
        let mut o = galera_cluster(3);
        for i in &mut o.instances {
            i.version = v(version);
            i.revision = rev(1, version);
        }
        o
    };
    // 10.5 -> 10.11 skips 10.6: refused before anything starts, the rule and
    // its guide named.
    let Action::Halt {
        reason: reason @ HaltReason::ForbiddenTransition { .. },
    } = d(&on("10.5.27"), &Record::default(), &target("10.11.14"), &p)
    else {
        panic!("expected a refusal")
    };
    assert_eq!(reason.category(), "forbidden-transition");
    let text = reason.to_string();
    assert!(text.contains("skips a series"), "{text}");
    assert!(text.contains("roll to 10.6 first"), "{text}");
    assert!(
        text.contains("MariaDB Knowledge Base, Upgrading Galera Cluster"),
        "{text}"
    );
    // ...also mid-rollout, with a node drained: no restart.
    let mut o = on("10.5.27");
    set(&mut o, 2, |i| i.drained = true);
    let drained = Record {
        intent: Some(Intent::Drained {
            ordinal: 2,
            at: Timestamp(0),
        }),
        ..Record::default()
    };
    assert!(matches!(
        d(&o, &drained, &target("10.11.14"), &p),
        Action::Halt {
            reason: HaltReason::ForbiddenTransition { .. }
        }
    ));
    // The documented steps roll: 10.5 -> 10.6, 10.6 -> 10.11, a minor upgrade.
    for (from, to) in [
        ("10.5.27", "10.6.20"),
        ("10.6.20", "10.11.14"),
        ("10.11.9", "10.11.14"),
    ] {
        assert_eq!(
            d(&on(from), &Record::default(), &target(to), &p),
            Action::Drain { ordinal: 2 },
            "{from} -> {to}"
        );
    }
    // No downgrade, even within a series, nor below a version the cluster ran.
    let Action::Halt { reason } = d(&on("10.11.14"), &Record::default(), &target("10.11.9"), &p)
    else {
        panic!("expected a refusal of the downgrade")
    };
    assert!(reason.to_string().contains("downgrade"), "{reason}");
    let ran = Record {
        highest_version: Some(v("10.11.14")),
        ..Record::default()
    };
    let Action::Halt {
        reason: HaltReason::BelowHighestVersion { .. },
    } = d(&on("10.11.9"), &ran, &target("10.11.9"), &p)
    else {
        panic!("expected a refusal below the highest version")
    };
}

// Issue 10's bugs, each a rule of its own.

#[test]
fn a_downgrade_within_a_series_halts_before_anything_changes() {
    // The catalog allows 10.11.14 -> 10.11.9 in place, but replicas go first
    // and would replicate from a newer 10.11.14 primary: no order is safe.
    let o = cluster(0, &["10.11.14", "10.11.14", "10.11.14"]);
    let action = d(
        &o,
        &Record::default(),
        &target("10.11.9"),
        &Policy::default(),
    );
    let Action::Halt {
        reason: reason @ HaltReason::NoSafeOrder { .. },
    } = action
    else {
        panic!("expected a halt with no safe order, got {action:?}");
    };
    assert_eq!(reason.category(), "no-safe-order");
    assert!(reason.to_string().contains("10.11.9"), "{reason}");
}

#[test]
fn an_upgrade_has_a_safe_order() {
    let o = cluster(0, &["10.5.27", "10.5.27"]);
    assert_eq!(
        d(
            &o,
            &Record::default(),
            &target("10.11.14"),
            &Policy::default()
        ),
        Action::Drain { ordinal: 1 }
    );
}

#[test]
fn two_writable_instances_halt_instead_of_being_repaired() {
    let mut o = cluster(0, &["10.5.27", "10.5.27", "10.5.27"]);
    set(&mut o, 2, |i| i.writable = true);
    let action = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    );
    let Action::Halt { reason } = action else {
        panic!("expected a halt, got {action:?}");
    };
    assert_eq!(reason.category(), "contradicts-record", "{reason}");
    assert!(reason.to_string().contains("0, 2"), "{reason}");
}

#[test]
fn a_replica_promoted_by_hand_halts() {
    let mut o = cluster(0, &["10.5.27", "10.5.27"]);
    set(&mut o, 0, |i| i.writable = false);
    set(&mut o, 1, |i| (i.writable, i.source) = (true, None));
    let action = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    );
    let Action::Halt { reason } = action else {
        panic!("expected a halt, got {action:?}");
    };
    assert!(reason.to_string().contains("promoted by hand"), "{reason}");
}

fn mysql_gtid(text: &str) -> GtidSet {
    GtidSet::parse(Flavor::Mysql, text).expect("test GTID set")
}

#[test]
fn a_read_only_primary_is_made_writable_unless_it_lost_what_it_executed() {
    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let mut o = cluster(0, &["10.5.27", "10.5.27"]);
    o.flavor = Flavor::Mysql;
    for i in &mut o.instances {
        i.gtid = Some(mysql_gtid(&format!("{UUID}:1-100")));
    }
    set(&mut o, 0, |i| i.writable = false);
    let t = target("10.5.27");
    let p = Policy::default();
    // Restarted read-only with its data: writable again, even with no rollout pending.
    let seen = Record {
        primary_position: Some(switchyard_plan::record::PrimaryPosition {
            ordinal: 0,
            gtid: mysql_gtid(&format!("{UUID}:1-90")),
        }),
        ..Record::default()
    };
    assert_eq!(d(&o, &seen, &t, &p), Action::Unfence { ordinal: 0 });
    // Came back with an empty data directory: it stays read-only, halted.
    set(&mut o, 0, |i| i.gtid = Some(mysql_gtid("")));
    let action = d(&o, &seen, &t, &p);
    let Action::Halt { reason } = action else {
        panic!("expected a halt, got {action:?}");
    };
    assert!(reason.to_string().contains("came back without"), "{reason}");
    // ...also when the rollout was halted already.
    let halted = Record {
        halted: Some(Halted {
            revision_hash: t.key(),
            reason: HaltReason::Unsupported {
                message: "an earlier halt".into(),
            },
            at: NOW,
        }),
        ..seen
    };
    assert!(matches!(d(&o, &halted, &t, &p), Action::Halt { .. }));
}

#[test]
fn an_unfinished_switchover_is_undone_before_a_halt_is_returned() {
    let mut o = cluster(0, &["10.5.27", "10.5.27"]);
    set(&mut o, 0, |i| (i.writable, i.fenced) = (false, true));
    let t = target("10.11.14");
    let past = Record {
        intent: Some(Intent::Switchover {
            from: 0,
            to: 1,
            step: SwitchoverStep::Fenced,
            started: Timestamp(NOW.0 - 20_000),
            deadline: Timestamp(NOW.0 - 10_000),
        }),
        halted: Some(Halted {
            revision_hash: t.key(),
            reason: HaltReason::Unsupported {
                message: "halted mid-switchover".into(),
            },
            at: NOW,
        }),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &past, &t, &Policy::default()),
        Action::Unfence { ordinal: 0 }
    );
    // Before its deadline it resumes, halt or not.
    let resumable = Record {
        intent: Some(Intent::Switchover {
            from: 0,
            to: 1,
            step: SwitchoverStep::CaughtUp,
            started: NOW,
            deadline: Timestamp(NOW.0 + 10_000),
        }),
        ..past
    };
    assert_eq!(
        d(&o, &resumable, &t, &Policy::default()),
        Action::Switchover { from: 0, to: 1 }
    );
}

#[test]
fn a_promoted_old_primary_whose_fence_died_is_fenced_again() {
    // Promoted and repointed: 1 is the primary; 0 waits for its restart,
    // configured under 1, not applying, and its fence died with an engine.
    let mut o = cluster(1, &["10.5.27", "10.11.14"]);
    set(&mut o, 0, |i| {
        i.health = Health::ReplicationStopped {
            errno: 0,
            message: "replication is stopped".into(),
        };
        (i.writable, i.fenced) = (false, false);
    });
    let switchover = |step| Record {
        intent: Some(Intent::Switchover {
            from: 0,
            to: 1,
            step,
            started: NOW,
            deadline: NOW,
        }),
        ..Record::default()
    };
    let t = target("10.11.14");
    let p = Policy::default();
    // Not repointed yet: the switchover resumes (and fences it first).
    assert_eq!(
        d(&o, &switchover(SwitchoverStep::Promoted), &t, &p),
        Action::Switchover { from: 0, to: 1 }
    );
    let repointed = switchover(SwitchoverStep::Repointed);
    assert_eq!(d(&o, &repointed, &t, &p), Action::Fence { ordinal: 0 });
    // Its fence holds: it restarts on the target next.
    set(&mut o, 0, |i| i.fenced = true);
    assert!(matches!(
        d(&o, &repointed, &t, &p),
        Action::Restart { ordinal: 0, .. }
    ));
}

#[test]
fn an_errant_replica_is_reported_not_passed_over_in_silence() {
    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const OTHER: &str = "4f22ab58-82db-22f2-af44-d91bb0530673";
    let mut o = cluster(0, &["10.11.14", "10.11.14"]);
    o.flavor = Flavor::Mysql;
    set(&mut o, 0, |i| {
        (i.gtid, i.revision) = (
            Some(mysql_gtid(&format!("{UUID}:1-100"))),
            rev(2, "10.11.14"),
        )
    });
    set(&mut o, 1, |i| {
        i.gtid = Some(mysql_gtid(&format!("{UUID}:1-100,{OTHER}:1")));
        i.revision = rev(2, "10.11.14");
    });
    let action = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    );
    let Action::Halt {
        reason: HaltReason::ErrantTransactions { ordinal: 1, .. },
    } = action
    else {
        panic!("expected a halt on instance 1's errant transaction, got {action:?}");
    };
}

#[test]
fn every_errant_replica_is_named_not_only_the_first() {
    // Seed 703: two replicas held transactions the primary lacked (one an
    // errant write, the other writes taken while its fence was lost); the
    // halt named only the first, leaving the second's writes unnamed.
    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const OTHER: &str = "4f22ab58-82db-22f2-af44-d91bb0530673";
    const THIRD: &str = "5a33bc69-93ec-33a3-b055-e02cc1641784";
    let mut o = cluster(0, &["10.11.14", "10.11.14", "10.11.14"]);
    o.flavor = Flavor::Mysql;
    set(&mut o, 0, |i| {
        (i.gtid, i.revision) = (
            Some(mysql_gtid(&format!("{UUID}:1-100"))),
            rev(2, "10.11.14"),
        )
    });
    set(&mut o, 1, |i| {
        i.gtid = Some(mysql_gtid(&format!("{UUID}:1-100,{OTHER}:1")));
        i.revision = rev(2, "10.11.14");
    });
    set(&mut o, 2, |i| {
        i.gtid = Some(mysql_gtid(&format!("{UUID}:1-100,{THIRD}:1-5")));
        i.revision = rev(2, "10.11.14");
    });
    let action = d(
        &o,
        &Record::default(),
        &target("10.11.14"),
        &Policy::default(),
    );
    let Action::Halt {
        reason: reason @ HaltReason::ErrantTransactions { ordinal: 1, .. },
    } = action
    else {
        panic!("expected a halt on the errant transactions, got {action:?}");
    };
    let HaltReason::ErrantTransactions { also, .. } = &reason else {
        unreachable!()
    };
    assert_eq!(
        also.keys().copied().collect::<Vec<_>>(),
        vec![2],
        "{reason}"
    );
    assert!(
        reason.to_string().contains("instance 2 also holds"),
        "{reason}"
    );
}

#[test]
fn a_promoted_switchover_repoints_before_a_halt_is_returned() {
    // The promotion took effect (1 is the primary) but its step failed: the
    // failure is older than halt_after. The replicas are repointed first.
    let mut o = cluster(1, &["10.5.27", "10.11.14", "10.11.14"]);
    set(&mut o, 0, |i| (i.writable, i.fenced) = (false, true));
    set(&mut o, 2, |i| i.source = Some(0));
    let t = target("10.11.14");
    let policy = Policy {
        halt_after: Duration::from_secs(10),
        retry_backoff: Duration::from_secs(15),
        ..Policy::default()
    };
    let record = Record {
        intent: Some(Intent::Switchover {
            from: 0,
            to: 1,
            step: SwitchoverStep::Promoting,
            started: Timestamp(NOW.0 - 20_000),
            deadline: Timestamp(NOW.0 + 10_000),
        }),
        failure: Some(Failure {
            target: t.key(),
            key: "switchover:0->1".into(),
            first: Timestamp(NOW.0 - 16_000),
            last: Timestamp(NOW.0 - 16_000),
            count: 1,
            message: "promote: the call took effect, then failed".into(),
        }),
        ..Record::default()
    };
    assert_eq!(
        d(&o, &record, &t, &policy),
        Action::Switchover { from: 0, to: 1 }
    );
}

/// A target every instance of `cluster(.., versions)` already runs.
fn current(version: &str) -> Target {
    Target {
        revision: rev(1, version),
        ..target(version)
    }
}

#[test]
fn a_primary_with_fewer_followers_than_it_waits_for_is_not_done() {
    let mut o = cluster(0, &["10.11.14", "10.11.14"]);
    set(&mut o, 0, |i| i.ack_replicas = Some(1));
    let t = current("10.11.14");
    let p = Policy::default();
    assert_eq!(d(&o, &Record::default(), &t, &p), Action::Done);
    // The only replica held what the new primary lacked after a failover.
    set(&mut o, 1, |i| {
        i.source = None;
        i.fenced = true;
        i.drained = true;
    });
    let mut r = Record::default();
    r.quarantined.insert(
        1,
        switchyard_plan::record::Quarantine {
            extra: "0-1-9".into(),
            at: NOW,
        },
    );
    match d(&o, &r, &t, &p) {
        Action::Wait {
            reason:
                WaitReason::TooFewReplicas {
                    primary: 0,
                    waits_for: 1,
                    followers: 0,
                },
        } => {}
        other => panic!("expected a wait for too few replicas, got {other}"),
    }
}

#[test]
fn a_replica_still_connected_to_a_failed_primary_is_detached() {
    // Instance 0 failed and 1 took over; 2 did not answer during the
    // failover and still follows 0, which runs again.
    let mut o = cluster(1, &["10.11.14", "10.11.14", "10.11.14"]);
    set(&mut o, 0, |i| {
        i.fenced = true;
        i.source = Some(1);
    });
    let connected = |yes: bool| {
        Some(switchyard_plan::topology::Link {
            connected: yes,
            received: None,
        })
    };
    set(&mut o, 2, |i| {
        i.source = Some(0);
        i.link = connected(true);
    });
    let mut r = Record::default();
    r.failed_over.insert(0);
    let t = current("10.11.14");
    let p = Policy::default();
    assert_eq!(
        d(&o, &r, &t, &p),
        Action::Detach {
            ordinal: 2,
            from: 0
        }
    );
    // Once its receiver is stopped it is judged like any replica.
    set(&mut o, 2, |i| i.link = connected(false));
    assert!(!matches!(d(&o, &r, &t, &p), Action::Detach { .. }));
    // A primary that rejoined since is no longer failed.
    set(&mut o, 2, |i| i.link = connected(true));
    r.failed_over.clear();
    assert!(!matches!(d(&o, &r, &t, &p), Action::Detach { .. }));
}

#[test]
fn a_failed_primary_is_judged_on_both_gtid_sets_before_it_rejoins() {
    // Instance 0 failed and 1 took over; 0 runs again, fenced.
    let mut o = cluster(1, &["10.11.14", "10.11.14", "10.11.14"]);
    let gtid = |t: &str| Some(GtidSet::parse(Flavor::Mariadb, t).expect("gtid"));
    set(&mut o, 0, |i| {
        i.fenced = true;
        i.source = None;
        i.gtid = gtid("0-1-5");
    });
    set(&mut o, 1, |i| i.gtid = None);
    let mut r = Record::default();
    r.failed_over.insert(0);
    let t = current("10.11.14");
    let p = Policy::default();
    // The primary's set is not known (the operator cannot read it now): wait.
    match d(&o, &r, &t, &p) {
        Action::Wait {
            reason: WaitReason::Unhealthy { ordinal: 1, .. },
        } => {}
        other => panic!("expected a wait on the primary's transactions, got {other}"),
    }
    // Known, and holding everything 0 has: 0 follows it.
    set(&mut o, 1, |i| i.gtid = gtid("0-2-9"));
    assert_eq!(
        d(&o, &r, &t, &p),
        Action::Repoint {
            ordinal: 0,
            source: 1
        }
    );
}
