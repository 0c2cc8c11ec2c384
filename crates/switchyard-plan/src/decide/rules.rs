//! The decision's rules for a primary-replica cluster (Galera's are in
//! [`super::galera`]), in the
//! order the [module documentation](super) lists them; the switchover's own
//! rules are in [`super::switchover`].

use std::collections::BTreeMap;

use super::{Action, Approval, HaltReason, Policy, Strategy, Target, WaitReason};
use crate::mutation::Mutation;
use crate::record::{Intent, Record};
use crate::topology::{Health, Instance, Observed, Role, Timestamp, TopologyKind};
use crate::versions::catalog;

pub(super) struct Decider<'a> {
    pub(super) observed: &'a Observed,
    pub(super) record: &'a Record,
    pub(super) target: &'a Target,
    pub(super) policy: &'a Policy,
    pub(super) now: Timestamp,
    pub(super) mutation: Mutation,
}

impl Decider<'_> {
    pub(super) fn decide(&self) -> Action {
        if let Some(action) = self.failover() {
            return action;
        }
        if let Some(action) = self
            .unfinished_switchover()
            .or_else(|| self.unfenced_old_primary())
        {
            return action;
        }
        if let Err(e) = self.observed.validate() {
            return Action::Halt {
                reason: HaltReason::InvalidTopology {
                    message: e.to_string(),
                },
            };
        }
        let galera = self.observed.kind == TopologyKind::Galera;
        if !galera && let Some(halt) = self.contradiction() {
            return halt;
        }
        // The primary's service comes back first, halted or not: a crashed
        // primary is recovered, one that is up but read-only made writable.
        if !galera && let Some(action) = self.primary_service() {
            return action;
        }
        if let Some(halted) = &self.record.halted
            && halted.revision_hash == self.target.key()
        {
            return Action::Halt {
                reason: halted.reason.clone(),
            };
        }
        if galera {
            return self.galera();
        }
        if let Some(action) = self.repeated_failure() {
            return action;
        }
        if let Some(intent) = &self.record.intent
            && (self.mutation != Mutation::TwoAtOnce || !matches!(intent, Intent::Drained { .. }))
        {
            return self.continue_intent(intent);
        }
        if let Some(halt) = self.forbidden_transition() {
            return halt;
        }
        // An instance left drained by an operation given up (a failover that
        // took over, or was abandoned, while it was being restarted) goes
        // back to the read pool before anything else is taken out.
        if let Some(primary) = self.observed.primary()
            && let Some(drained) = self.observed.by_ordinal().into_iter().find(|i| {
                i.drained
                    && !self.quarantined(i)
                    && self.complete(i)
                    && i.replicates_from(primary.ordinal)
                    && !i.fenced
            })
        {
            return Action::Undrain {
                ordinal: drained.ordinal,
            };
        }
        if let Some(action) = self.stray_replica() {
            return action;
        }
        let mut pending: Vec<&Instance> = self
            .observed
            .by_ordinal()
            .into_iter()
            .filter(|i| !self.complete(i) && !self.quarantined(i))
            .collect();
        let ignore_down = self.mutation == Mutation::PromoteNewestIgnoringDown;
        if ignore_down && pending.iter().any(|i| i.health.is_up()) {
            pending.retain(|i| i.health.is_up());
        } else if let Some(crashed) = self
            .observed
            .by_ordinal()
            .into_iter()
            .find(|i| i.health == Health::Crashed && !self.quarantined(i))
        {
            return Action::Recover {
                ordinal: crashed.ordinal,
            };
        }
        if pending.is_empty() {
            if let Some(drained) = self
                .observed
                .by_ordinal()
                .into_iter()
                .find(|i| i.drained && !self.quarantined(i))
            {
                return Action::Undrain {
                    ordinal: drained.ordinal,
                };
            }
            // Done means every instance was seen: one that does not answer
            // (hung, or cut off from the operator) may still follow a failed
            // primary or hold what it lacks.
            if let Some(silent) = self
                .observed
                .by_ordinal()
                .into_iter()
                .find(|i| !self.quarantined(i) && !super::failover::answers(i))
            {
                return self.wait(WaitReason::Unhealthy {
                    ordinal: silent.ordinal,
                    health: silent.health.to_string(),
                });
            }
            // Done means every instance holds what the primary holds and
            // nothing else: a replica with transactions the primary lacks is
            // reported, not passed over in silence.
            if let Some(halt) = self.errant_replica() {
                return halt;
            }
            // Done means the primary's commits can be acknowledged: with
            // fewer replicas than it waits for, its writes block.
            if let Some(p) = self.observed.primary()
                && let Some(waits_for) = p.ack_replicas
            {
                let followers = self
                    .observed
                    .by_ordinal()
                    .into_iter()
                    .filter(|i| i.source == Some(p.ordinal) && !self.quarantined(i))
                    .count();
                let followers = u32::try_from(followers).unwrap_or(u32::MAX);
                if followers < waits_for {
                    return self.wait(WaitReason::TooFewReplicas {
                        primary: p.ordinal,
                        waits_for,
                        followers,
                    });
                }
            }
            return Action::Done;
        }
        if self.policy.strategy == Strategy::Paused {
            return Action::Wait {
                reason: WaitReason::Paused,
            };
        }
        if !ignore_down && let Some(wait) = self.health_gate() {
            return self.wait(wait);
        }
        if self.mutation != Mutation::SkipCanaryBake
            && let Some(wait) = self.canary_bake()
        {
            return wait;
        }
        // Replicas (non-writer nodes on Galera) first, highest ordinal first.
        // One already drained (its operation given up) goes first.
        let next_replica = pending
            .iter()
            .find(|i| i.role == Role::Replica && i.drained && self.mutation != Mutation::TwoAtOnce)
            .or_else(|| {
                pending.iter().rev().find(|i| {
                    i.role == Role::Replica && (self.mutation != Mutation::TwoAtOnce || !i.drained)
                })
            });
        if let Some(replica) = next_replica {
            if let Some(online) = self.online_change_for(replica) {
                return online;
            }
            return Action::Drain {
                ordinal: replica.ordinal,
            };
        }
        // Only the primary (the writer node) is left.
        let Some(primary) = self.observed.primary() else {
            return Action::Done;
        };
        if let Some(online) = self.online_change_for(primary) {
            return online;
        }
        if self.mutation == Mutation::PrimaryInPlace {
            return self.restart(primary);
        }
        if primary.runs(&self.target.revision)
            && let Some(change) = &self.target.schema
            && (change.primary_online || self.mutation == Mutation::AlterPrimaryInPlace)
        {
            return Action::RunDdl {
                ordinal: primary.ordinal,
                change: change.clone(),
            };
        }
        let candidate = match self.candidate(primary) {
            Ok(c) => c,
            Err(detail) => return self.wait(WaitReason::NoCandidate { detail }),
        };
        if self.policy.strategy == Strategy::Supervised {
            let wanted = Approval {
                revision: self.target.revision.number,
                from: primary.ordinal,
                to: candidate.ordinal,
            };
            if self.policy.approval != Some(wanted) {
                return Action::Wait {
                    reason: WaitReason::AwaitingApproval {
                        revision: wanted.revision,
                        from: wanted.from,
                        to: wanted.to,
                    },
                };
            }
        }
        Action::Switchover {
            from: primary.ordinal,
            to: candidate.ordinal,
        }
    }

    /// State that contradicts the record halts (rule 2): more than one writable
    /// instance, or a writable instance that is not the recorded primary (a
    /// replica promoted by hand). Nothing is "repaired" by guessing which one
    /// holds the writes that matter.
    fn contradiction(&self) -> Option<Action> {
        let writable: Vec<&Instance> = self
            .observed
            .by_ordinal()
            .into_iter()
            .filter(|i| i.writable)
            .collect();
        let message = match writable.as_slice() {
            [] => return None,
            [one] if one.role == Role::Primary => return None,
            [one] => format!(
                "instance {} takes writes but the recorded primary is {} (promoted by hand?)",
                one.ordinal,
                self.observed
                    .primary()
                    .map_or_else(|| "none".to_owned(), |p| p.ordinal.to_string())
            ),
            many => format!(
                "instances {} all take writes",
                many.iter()
                    .map(|i| i.ordinal.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Some(Action::Halt {
            reason: HaltReason::ContradictsRecord { message },
        })
    }

    /// The transactions `replica` has executed that `source` has not, in
    /// words, when both positions are known and differ that way.
    ///
    /// A replica that still follows a failed primary is judged on what it
    /// received as well: its relay log may hold the failed primary's last
    /// commits (in flight, never acknowledged), which it applies before or
    /// after any repoint, so its executed set alone would let it rejoin and
    /// diverge afterwards.
    pub(super) fn errant(&self, replica: &Instance, source: &Instance) -> Option<String> {
        if self.mutation != Mutation::JudgeFollowersOnExecuted
            && replica.source.is_some_and(|s| self.failed_primary(s))
            && let (Some(executed), Some(received), Some(theirs)) = (
                &replica.gtid,
                replica.link.as_ref().and_then(|l| l.received.as_ref()),
                &source.gtid,
            )
            && let Ok(holds) = executed.union(received)
        {
            return crate::gtid::errant(&holds, theirs)
                .ok()
                .filter(|e| !e.is_empty())
                .map(|e| e.to_string());
        }
        replica.errant_against(source).map(|e| e.to_string())
    }

    /// Rule 3: the primary's service comes back before anything else, halted
    /// or not: a crashed primary is recovered (every replica waits on it), and
    /// one that is up but read-only (it restarted, or an undo left it so) is
    /// made writable, unless it lacks transactions the record saw it execute
    /// (its data came back empty or older): making it writable would lose them.
    fn primary_service(&self) -> Option<Action> {
        let primary = self.observed.primary()?;
        if primary.health == Health::Crashed {
            return Some(Action::Recover {
                ordinal: primary.ordinal,
            });
        }
        // A recorded primary that answers with a demotion's replication left stopped on it
        // (a switchover undone while it did not answer) is made writable again too: the
        // unfence forgets that replication. Nothing else would ever bring it back.
        let demoted_left = matches!(primary.health, Health::ReplicationStopped { .. });
        if primary.writable || (!primary.health.is_up() && !demoted_left) {
            return None;
        }
        if let Some(had) = &self.record.primary_position
            && had.ordinal == primary.ordinal
            && let Some(now) = &primary.gtid
            && let Ok(missing) = had.gtid.subtract(now)
            && !missing.is_empty()
        {
            return Some(Action::Halt {
                reason: HaltReason::ContradictsRecord {
                    message: format!(
                        "the primary {} came back without transactions it had executed \
                         ({missing}): its data is empty or older; it stays read-only",
                        primary.ordinal
                    ),
                },
            });
        }
        Some(Action::Unfence {
            ordinal: primary.ordinal,
        })
    }

    /// A replica holding transactions the primary lacks, as a halt.
    fn errant_replica(&self) -> Option<Action> {
        let primary = self.observed.primary()?;
        let mut errant = self.observed.by_ordinal().into_iter().filter_map(|r| {
            let extra = (r.ordinal != primary.ordinal && !self.quarantined(r))
                .then(|| self.errant(r, primary))
                .flatten()?;
            Some((r.ordinal, extra))
        });
        let (ordinal, first) = errant.next()?;
        Some(Action::Halt {
            reason: HaltReason::ErrantTransactions {
                ordinal,
                primary: primary.ordinal,
                errant: first,
                also: errant.collect(),
            },
        })
    }

    /// Rule 7: a live replica out of rotation with no intent on it (not
    /// replicating from the primary, or fenced, or drained) is brought back:
    /// repointed if it may replicate from the primary's version and holds
    /// nothing the primary lacks, then returned to the read pool. A replica
    /// older than the primary, or with errant transactions, halts instead.
    fn stray_replica(&self) -> Option<Action> {
        let primary = self.observed.primary()?;
        let stray = self.observed.by_ordinal().into_iter().find(|r| {
            !self.quarantined(r)
                && r.role == Role::Replica
                && (r.health.is_up() || r.replication_paused() || self.follows_failed(r))
                && (!r.replicates_from(primary.ordinal) || r.fenced)
        })?;
        if self.mutation == Mutation::PromoteNewestIgnoringDown {
            return Some(Action::Repoint {
                ordinal: stray.ordinal,
                source: primary.ordinal,
            });
        }
        // What it holds that the primary lacks is judged first (a halt, or a
        // quarantine for a failed primary back), whatever its version.
        if self.errant(stray, primary).is_some() {
            return Some(self.rejoin(stray));
        }
        let compatible = |version| {
            catalog()
                .check_replication(self.observed.flavor, primary.version, version)
                .is_ok_and(|v| v.allowed)
        };
        if !compatible(stray.version) {
            // Older than a primary a failover chose: held back until the
            // rollout upgrades it, when the target may follow the primary.
            if !stray.runs(&self.target.revision) && compatible(self.target.version) {
                return Some(Action::Drain {
                    ordinal: stray.ordinal,
                });
            }
            return Some(Action::Halt {
                reason: HaltReason::ReplicaOlderThanPrimary {
                    ordinal: stray.ordinal,
                    version: stray.version,
                    primary: primary.ordinal,
                    primary_version: primary.version,
                },
            });
        }
        Some(self.rejoin(stray))
    }

    /// Whether `r` answers and still follows a failed primary it does not
    /// receive from: its replication from there is over, whatever error it
    /// shows, and it is judged (repointed or quarantined).
    fn follows_failed(&self, r: &Instance) -> bool {
        super::failover::answers(r)
            && r.source.is_some_and(|s| self.failed_primary(s))
            && !r.link.as_ref().is_some_and(|l| l.connected)
    }

    /// Whether the target's schema change is still missing on `instance`.
    pub(super) fn needs_schema(&self, instance: &Instance) -> bool {
        self.target
            .schema
            .as_ref()
            .is_some_and(|c| instance.schema.as_deref() != Some(c.id.as_str()))
    }

    /// Whether `instance` runs the target revision and has the target's schema change.
    fn complete(&self, instance: &Instance) -> bool {
        instance.runs(&self.target.revision) && !self.needs_schema(instance)
    }

    /// A step that keeps failing halts after `halt_after`, and is retried
    /// only after the backoff.
    pub(super) fn repeated_failure(&self) -> Option<Action> {
        // A failure under another target (a rollback, a new revision) is history.
        let failure = self
            .record
            .failure
            .as_ref()
            .filter(|f| f.target == self.target.key())?;
        if self.now.since(failure.first) >= self.policy.halt_after {
            return Some(Action::Halt {
                reason: HaltReason::KeepsFailing {
                    step: failure.key.clone(),
                    count: failure.count,
                    message: failure.message.clone(),
                },
            });
        }
        // (An unfinished switchover never waits here: rule 1 comes first.)
        let until = failure.last.after(self.policy.retry_backoff);
        (self.now < until).then(|| Action::Wait {
            reason: WaitReason::Backoff {
                step: failure.key.clone(),
                until,
            },
        })
    }

    /// Wraps a wait, halting once it has lasted longer than `halt_after`.
    pub(super) fn wait(&self, reason: WaitReason) -> Action {
        if reason.can_halt()
            && let Some(w) = &self.record.waiting
            && w.key == reason.key()
            && self.now.since(w.since) >= self.policy.halt_after
        {
            return Action::Halt {
                reason: HaltReason::WaitedTooLong {
                    reason,
                    since: w.since,
                },
            };
        }
        Action::Wait { reason }
    }

    /// Every instance must be up, replicating without error, and within the
    /// lag bound.
    fn health_gate(&self) -> Option<WaitReason> {
        for i in self.observed.by_ordinal() {
            if self.quarantined(i) {
                continue;
            }
            match &i.health {
                Health::Ready => {}
                Health::Lagging { seconds } if *seconds <= self.policy.max_lag_seconds => {}
                Health::Lagging { seconds } => {
                    return Some(WaitReason::Lagging {
                        ordinal: i.ordinal,
                        seconds: *seconds,
                        max: self.policy.max_lag_seconds,
                    });
                }
                Health::Starting => return Some(WaitReason::Starting { ordinal: i.ordinal }),
                other => {
                    return Some(WaitReason::Unhealthy {
                        ordinal: i.ordinal,
                        health: other.to_string(),
                    });
                }
            }
            if self.observed.kind == TopologyKind::Async
                && i.role == Role::Replica
                && i.source.is_none()
            {
                return Some(WaitReason::Unhealthy {
                    ordinal: i.ordinal,
                    health: "a replica that does not replicate".into(),
                });
            }
        }
        None
    }

    /// Halts before touching anything when the version rules forbid the change.
    fn forbidden_transition(&self) -> Option<Action> {
        let flavor = self.observed.flavor;
        let to = self.target.version;
        let cat = catalog();
        for i in self.observed.by_ordinal() {
            if i.version == to {
                continue;
            }
            match cat.check_in_place(flavor, i.version, to) {
                Ok(v) if v.allowed => {}
                Ok(v) => {
                    return Some(Action::Halt {
                        reason: HaltReason::ForbiddenTransition {
                            ordinal: i.ordinal,
                            from: i.version,
                            to,
                            reason: v.reason,
                            manual: v.manual.to_string(),
                        },
                    });
                }
                Err(e) => {
                    return Some(Action::Halt {
                        reason: HaltReason::UnknownVersion {
                            message: e.to_string(),
                        },
                    });
                }
            }
        }
        let highest = self
            .record
            .highest_version
            .into_iter()
            .chain(self.observed.highest_version())
            .max();
        if let Some(highest) = highest
            && highest > to
        {
            match cat.check_in_place(flavor, highest, to) {
                Ok(v) if v.allowed => {}
                Ok(v) => {
                    return Some(Action::Halt {
                        reason: HaltReason::BelowHighestVersion {
                            highest,
                            to,
                            reason: v.reason,
                        },
                    });
                }
                Err(e) => {
                    return Some(Action::Halt {
                        reason: HaltReason::UnknownVersion {
                            message: e.to_string(),
                        },
                    });
                }
            }
        }
        self.no_safe_order()
    }

    /// Replicas go first and replicate from the primary until its switchover,
    /// so a target the primary's version may not replicate to (a downgrade
    /// within a series, which the in-place rules allow) has no safe order.
    fn no_safe_order(&self) -> Option<Action> {
        if self.observed.kind != TopologyKind::Async
            || self.mutation == Mutation::DowngradeInAnyOrder
        {
            return None;
        }
        let to = self.target.version;
        let primary = self.observed.primary()?;
        if primary.version == to {
            return None;
        }
        match catalog().check_replication(self.observed.flavor, primary.version, to) {
            Ok(v) if v.allowed => None,
            Ok(v) => Some(Action::Halt {
                reason: HaltReason::NoSafeOrder {
                    primary: primary.ordinal,
                    primary_version: primary.version,
                    to,
                    reason: v.reason,
                },
            }),
            Err(e) => Some(Action::Halt {
                reason: HaltReason::UnknownVersion {
                    message: e.to_string(),
                },
            }),
        }
    }

    /// The online change for an instance, when the target allows one for its revision.
    fn online_change_for(&self, instance: &Instance) -> Option<Action> {
        let online = self.target.online.as_ref()?;
        (instance.revision.hash == online.from_hash && instance.version == self.target.version)
            .then(|| Action::ApplyVariables {
                ordinal: instance.ordinal,
                revision: self.target.revision.clone(),
                variables: online.variables.clone(),
            })
    }

    pub(super) fn restart(&self, instance: &Instance) -> Action {
        // A failed primary is not made newer while an instance may still
        // receive from it (one that does not answer now, or whose receiver
        // is connected to it): it would replicate from a newer source.
        if instance.version != self.target.version && self.failed_primary(instance.ordinal) {
            let follower = self.observed.by_ordinal().into_iter().find(|i| {
                i.ordinal != instance.ordinal
                    && !self.quarantined(i)
                    && ((i.source == Some(instance.ordinal)
                        && i.link.as_ref().is_some_and(|l| l.connected))
                        // Running but not answering (hung, cut off): a server
                        // that is down starts without replicating.
                        || (!super::failover::answers(i)
                            && !matches!(
                                i.health,
                                Health::Crashed | Health::Stopped | Health::Starting
                            )))
            });
            if let Some(f) = follower {
                return self.wait(WaitReason::Unhealthy {
                    ordinal: f.ordinal,
                    health: format!(
                        "{} (it may still follow instance {}, a failed primary, which must not \
                         run a newer version than it)",
                        f.health, instance.ordinal
                    ),
                });
            }
        }
        Action::Restart {
            ordinal: instance.ordinal,
            revision: self.target.revision.clone(),
            version: self.target.version,
            slow_shutdown: instance.version != self.target.version,
        }
    }

    fn continue_intent(&self, intent: &Intent) -> Action {
        match intent {
            Intent::Drained { ordinal, at } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                let restart = !i.runs(&self.target.revision);
                if restart && i.health == Health::Crashed {
                    return Action::Recover { ordinal: *ordinal };
                }
                let alter = !restart && self.needs_schema(i) && i.health.is_up();
                if !restart && !alter {
                    return self.rejoin(i);
                }
                let until = at.after(self.policy.drain);
                if self.now < until {
                    return Action::Wait {
                        reason: WaitReason::DrainGrace {
                            ordinal: *ordinal,
                            until,
                        },
                    };
                }
                match (&self.target.schema, restart) {
                    (Some(change), false) => Action::RunDdl {
                        ordinal: *ordinal,
                        change: change.clone(),
                    },
                    _ => self.restart(i),
                }
            }
            Intent::Restarting { ordinal, .. } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                if i.runs(&self.target.revision) {
                    return self.rejoin(i);
                }
                match i.health {
                    Health::Starting => self.wait(WaitReason::Starting { ordinal: *ordinal }),
                    // Crashed on its old revision before the restart: recover first.
                    Health::Crashed => Action::Recover { ordinal: *ordinal },
                    _ => self.restart(i),
                }
            }
            Intent::Altering { ordinal, .. } => match self.observed.instance(*ordinal) {
                Some(i) => self.rejoin(i),
                None => self.gone(*ordinal),
            },
            Intent::Switchover { from, to, .. } => self.promoted_switchover(*from, *to),
            Intent::Failover { from, to, .. } => Action::Failover {
                from: *from,
                to: *to,
            },
        }
    }

    /// The instance an intent is on runs the target revision: give it the
    /// schema change, bring it back into replication from the primary, and
    /// return it to service once it has caught up.
    pub(super) fn rejoin(&self, i: &Instance) -> Action {
        let ordinal = i.ordinal;
        match &i.health {
            Health::Starting => return self.wait(WaitReason::Starting { ordinal }),
            Health::Crashed => return Action::Recover { ordinal },
            Health::Stopped => return self.restart(i),
            h if h.is_up() => {}
            // A replica whose replication is stopped without an error (a
            // former primary configured but not started) is repointed below.
            _ if i.replication_paused() => {}
            // A replica that still follows a failed primary it cannot reach:
            // its replication from there is over, whatever error it shows; it
            // is judged (repointed or quarantined) below.
            _ if self.follows_failed(i) => {}
            other => {
                return self.wait(WaitReason::Unhealthy {
                    ordinal,
                    health: other.to_string(),
                });
            }
        }
        let rejoins = self.observed.kind == TopologyKind::Async
            && i.role == Role::Replica
            && self
                .observed
                .primary()
                .is_some_and(|p| !i.replicates_from(p.ordinal) || i.fenced);
        // Repointing an instance that holds transactions the primary lacks
        // would bury them (MySQL) or stop on them (MariaDB): it halts (or is
        // quarantined) before anything else is done to it.
        let unchecked = self.mutation == Mutation::RejoinFailedPrimaryWithoutCheck
            && self
                .record
                .last_failover
                .as_ref()
                .is_some_and(|f| f.from == ordinal);
        // An instance is judged only on both GTID sets: a primary the
        // operator cannot reach now (or an instance whose set is unknown) is
        // waited on, not assumed to hold everything the instance holds (a
        // failed primary's or a fenced old primary's own commits would be
        // buried).
        let after_failover =
            self.failed_primary(ordinal) || i.source.is_some_and(|s| self.failed_primary(s));
        if rejoins
            && !unchecked
            && let Some(primary) = self.observed.primary()
        {
            let unknown = [primary, i].into_iter().find(|x| x.gtid.is_none());
            if let Some(x) = unknown {
                return self.wait(WaitReason::Unhealthy {
                    ordinal: x.ordinal,
                    health: format!("{} (its transactions are not known)", x.health),
                });
            }
        }
        if rejoins
            && !unchecked
            && let Some(primary) = self.observed.primary()
            && let Some(errant) = self.errant(i, primary)
        {
            // A failed primary back with writes no replica acknowledged, or
            // a replica that still follows it (it did not answer during the
            // failover, and holds what the failover lost), is quarantined:
            // the cluster goes on without it until a person re-provisions it.
            if after_failover {
                return Action::Quarantine {
                    ordinal,
                    extra: errant,
                };
            }
            return Action::Halt {
                reason: HaltReason::ErrantTransactions {
                    ordinal,
                    primary: primary.ordinal,
                    errant,
                    also: BTreeMap::new(),
                },
            };
        }
        if let Some(change) = &self.target.schema
            && self.needs_schema(i)
        {
            return Action::RunDdl {
                ordinal,
                change: change.clone(),
            };
        }
        if rejoins && let Some(primary) = self.observed.primary() {
            return Action::Repoint {
                ordinal,
                source: primary.ordinal,
            };
        }
        match &i.health {
            Health::Lagging { seconds } if *seconds > self.policy.max_lag_seconds => {
                self.wait(WaitReason::Lagging {
                    ordinal,
                    seconds: *seconds,
                    max: self.policy.max_lag_seconds,
                })
            }
            _ => Action::Undrain { ordinal },
        }
    }

    pub(super) fn gone(&self, ordinal: u32) -> Action {
        Action::Halt {
            reason: HaltReason::InvalidTopology {
                message: format!(
                    "instance {ordinal}, which the record names, is no longer in the cluster"
                ),
            },
        }
    }
}
