//! The decision on a Galera cluster: a new revision (a version or a
//! configuration) and a schema change (Rolling Schema Upgrade) rolled node by
//! node, one node out of the cluster's endpoints at a time.
//!
//! Every node holds every row and may take writes; the router (or Service)
//! sends the writes to one of them, the writer ([`Role::Primary`]). Before
//! anything starts, every node's version is checked against the target under
//! MariaDB's Galera rolling-upgrade rules
//! ([`Catalog::check_galera_rolling`](crate::versions::Catalog::check_galera_rolling)):
//! within a series, or between the consecutive series MariaDB documents a
//! rolling upgrade for (10.5 to 10.6, 10.6 to 10.11...). A skip (10.5 to
//! 10.11) or a downgrade halts at once, naming the rule and its guide
//! ([`HaltReason::ForbiddenTransition`], [`HaltReason::BelowHighestVersion`]),
//! with no node touched. Then, for each node in turn, the non-writer nodes
//! first (highest ordinal first) and the writer last:
//!
//! 1. **Online.** A node on the revision the target's online change starts
//!    from, on the target's version, gets its dynamic variables set
//!    ([`Action::ApplyVariables`], as on a primary-replica cluster): it is not
//!    taken out, once every other node is back in the endpoints and synced.
//!    Every other change takes the node out.
//! 2. **Gate.** Every node answers, is `Synced` in the primary component, and
//!    counts every node in its component (`wsrep_cluster_size`): none is a
//!    donor, desynced, joining or catching up, and none is missing. The
//!    cluster must keep quorum without the node: more than half of its nodes
//!    stay synced (a cluster of two never does; that halts).
//! 3. **Drain** ([`Action::Drain`]): out of the read and write endpoints (the
//!    writer's writes move to another node first; the runtime picks a synced
//!    one).
//! 4. **The change**, after the drain's grace and the gate checked again (the
//!    node itself not a donor): a node not on the target revision is
//!    restarted on it ([`Action::Restart`], a slow shutdown when the version
//!    changes, as on a primary-replica cluster; the runtime's start waits
//!    until the node is `Synced`, and a node shut down cleanly rejoins by
//!    IST from the others' write-set cache); a node missing the schema change
//!    gets its ALTER ([`Action::RunDdl`]): the runtime runs it with
//!    `wsrep_OSU_method=RSU` on the ALTER's connection, so the node desyncs,
//!    alters alone, and catches up afterwards. A node needing both is
//!    restarted first, then altered once synced, before it returns.
//! 5. **Return** ([`Action::Undrain`]) once the node is `Synced` again in the
//!    primary component with every node: a node that does not come back is
//!    waited on, and the wait halts after the policy's `halt_after` with the
//!    node's state as the reason. A node that crashed in or after its restart
//!    is started again ([`Action::Recover`], on the revision it was restarted
//!    on when it got that far, else on its old one and restarted afterwards);
//!    a recovery that keeps failing halts after `halt_after` too. A node left
//!    drained with no intent on it (its step given up) is returned the same
//!    way before another goes out.
//!
//! A node that leaves the cluster while its ALTER is recorded (it crashed, was
//! killed, left the primary component, or was voted out because it could not
//! apply the others' rows), and an ALTER that failed, halt the rollout at once
//! ([`HaltReason::GaleraNodeLost`]): no other node is touched. An ALTER is not
//! retried on Galera: what a failed RSU ALTER left on its node is for a person
//! to look at. A restart, unlike an ALTER, leaves nothing half done on the
//! node: a node lost in its restart is started again, not halted on.
//!
//! The schema change itself was judged before it became a target (in both
//! directions where several nodes take writes); the decision only orders it.

use super::rules::Decider;
use super::{Action, HaltReason, Strategy, WaitReason};
use crate::mutation::Mutation;
use crate::record::Intent;
use crate::topology::{Health, Instance, Role};
use crate::versions::catalog;

impl Decider<'_> {
    /// The next step on a Galera cluster (see the module documentation).
    pub(super) fn galera(&self) -> Action {
        let two_out = self.mutation == Mutation::GaleraTwoOut;
        if let Some(intent) = &self.record.intent
            && !(two_out && matches!(intent, Intent::Drained { .. }))
        {
            return self.galera_intent(intent);
        }
        if let Some(action) = self.repeated_failure() {
            return action;
        }
        if let Some(halt) = self.galera_forbidden() {
            return halt;
        }
        let out = self.record.intent.as_ref().map(Intent::ordinal);
        // A node left drained with no intent on it (its step given up) comes
        // back before another goes out.
        if !two_out
            && let Some(drained) = self.observed.by_ordinal().into_iter().find(|i| i.drained)
        {
            return self.galera_return(drained);
        }
        let pending: Vec<&Instance> = self
            .observed
            .by_ordinal()
            .into_iter()
            .filter(|i| self.galera_pending(i) && Some(i.ordinal) != out)
            .collect();
        if pending.is_empty() {
            return Action::Done;
        }
        if self.policy.strategy == Strategy::Paused {
            return Action::Wait {
                reason: WaitReason::Paused,
            };
        }
        // The writer last; the others highest ordinal first.
        let next = pending
            .iter()
            .rev()
            .find(|i| i.role == Role::Replica)
            .or_else(|| pending.first())
            .copied();
        let Some(next) = next else {
            return Action::Done;
        };
        // The canary (the first node back on the target) serves it for its bake before
        // another node changes. A node out of sync meanwhile is the gate's wait, which
        // halts after `halt_after`; the bake's own wait never does.
        if self.mutation != Mutation::SkipCanaryBake
            && let Some(wait) = self.canary_bake()
        {
            return self.galera_others(next.ordinal).unwrap_or(wait);
        }
        // A dynamic change is set online: the node stays in, once the others
        // are back and synced.
        if let Some(online) = self.online_change_for(next) {
            return self.galera_others(next.ordinal).unwrap_or(online);
        }
        if let Some(blocked) = self.galera_gate(next.ordinal) {
            return blocked;
        }
        Action::Drain {
            ordinal: next.ordinal,
        }
    }

    /// The intent in the record, on Galera: a drained node gets its ALTER, an
    /// altered one returns once synced; one that left halts.
    fn galera_intent(&self, intent: &Intent) -> Action {
        match intent {
            Intent::Drained { ordinal, at } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                let restart = !i.runs(&self.target.revision);
                if !restart && !self.needs_schema(i) {
                    return self.galera_return(i);
                }
                if let Some(action) = self.repeated_failure() {
                    return action;
                }
                // The node and the cluster are judged again before the change:
                // a node that became a donor since its drain waits.
                if let Some(blocked) = self.galera_gate(*ordinal) {
                    return blocked;
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
                if restart {
                    return self.galera_restart(i);
                }
                self.galera_alter(*ordinal)
            }
            Intent::Restarting { ordinal, .. } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                self.galera_restarted(i)
            }
            Intent::Altering { ordinal, .. } => {
                let Some(i) = self.observed.instance(*ordinal) else {
                    return self.gone(*ordinal);
                };
                let key = format!("run-ddl:{ordinal}");
                if let Some(failure) = self
                    .record
                    .failure
                    .as_ref()
                    .filter(|f| f.target == self.target.key() && f.key == key)
                {
                    return Action::Halt {
                        reason: HaltReason::GaleraNodeLost {
                            ordinal: *ordinal,
                            detail: format!("its ALTER failed: {}", failure.message),
                        },
                    };
                }
                if !in_cluster(i) && self.mutation != Mutation::GaleraPastLostNode {
                    return Action::Halt {
                        reason: HaltReason::GaleraNodeLost {
                            ordinal: *ordinal,
                            detail: format!("it left the cluster: {}", node_state(i)),
                        },
                    };
                }
                if self.needs_schema(i) && in_cluster(i) {
                    // The engine stopped before the ALTER's end: the runtime
                    // runs it again, or sees the table already changed.
                    if let Some(action) = self.repeated_failure() {
                        return action;
                    }
                    if let Some(blocked) = self
                        .galera_others(*ordinal)
                        .or_else(|| self.galera_quorum(*ordinal))
                    {
                        return blocked;
                    }
                    return self.galera_alter(*ordinal);
                }
                self.galera_return(i)
            }
            other => Action::Halt {
                reason: HaltReason::Unsupported {
                    message: format!(
                        "the record holds {other:?}, which the Galera decision does not carry out"
                    ),
                },
            },
        }
    }

    /// A node whose restart is recorded: started again if it crashed or
    /// stopped, altered once synced if it still misses the schema change,
    /// returned once synced; until then waited on (a wait that halts).
    fn galera_restarted(&self, i: &Instance) -> Action {
        if let Some(action) = self.repeated_failure() {
            return action;
        }
        let on_target = i.runs(&self.target.revision);
        match i.health {
            // Killed in or after its start (on the target revision), or
            // before its shutdown (on its old one: MariaDB refuses an upgrade
            // after a crash, so it is recovered on its version and restarted
            // cleanly afterwards).
            Health::Crashed if self.mutation != Mutation::GaleraPastLostNode => {
                return Action::Recover { ordinal: i.ordinal };
            }
            // Shut down, not started yet (the engine stopped in between).
            Health::Stopped => return self.galera_restart(i),
            _ => {}
        }
        // Still running its old revision (the engine stopped before the
        // shutdown): taken out again only as a new node would be.
        if !on_target && i.health.is_up() {
            if let Some(blocked) = self.galera_gate(i.ordinal) {
                return blocked;
            }
            return self.galera_restart(i);
        }
        if on_target && self.needs_schema(i) && synced_member(i, self.node_count()) {
            if let Some(blocked) = self.galera_gate(i.ordinal) {
                return blocked;
            }
            return self.galera_alter(i.ordinal);
        }
        self.galera_return(i)
    }

    /// The restart of a drained node on the target revision, unless the
    /// Galera version rules forbid its version change.
    fn galera_restart(&self, i: &Instance) -> Action {
        if let Some(halt) = self.galera_forbidden() {
            return halt;
        }
        self.restart(i)
    }

    /// Whether `i` still needs the target: its revision or its schema change.
    fn galera_pending(&self, i: &Instance) -> bool {
        !i.runs(&self.target.revision) || self.needs_schema(i)
    }

    /// A halt when MariaDB's Galera rolling-upgrade rules forbid a node's
    /// change to the target version (a series skipped, a downgrade), or the
    /// target is below a version the cluster already ran.
    fn galera_forbidden(&self) -> Option<Action> {
        if self.mutation == Mutation::GaleraIgnoreVersionRules {
            return None;
        }
        let flavor = self.observed.flavor;
        let to = self.target.version;
        let cat = catalog();
        let unknown = |e: crate::versions::VersionError| Action::Halt {
            reason: HaltReason::UnknownVersion {
                message: e.to_string(),
            },
        };
        for i in self.observed.by_ordinal() {
            if i.version == to {
                continue;
            }
            match cat.check_galera_rolling(flavor, i.version, to) {
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
                Err(e) => return Some(unknown(e)),
            }
        }
        let highest = self
            .record
            .highest_version
            .into_iter()
            .chain(self.observed.highest_version())
            .max()
            .filter(|h| *h > to)?;
        match cat.check_galera_rolling(flavor, highest, to) {
            Ok(v) if v.allowed => None,
            Ok(v) => Some(Action::Halt {
                reason: HaltReason::BelowHighestVersion {
                    highest,
                    to,
                    reason: format!("{} ({})", v.reason, v.manual),
                },
            }),
            Err(e) => Some(unknown(e)),
        }
    }

    fn galera_alter(&self, ordinal: u32) -> Action {
        match &self.target.schema {
            Some(change) => Action::RunDdl {
                ordinal,
                change: change.clone(),
            },
            None => Action::Done,
        }
    }

    /// A node whose change is done goes back into the endpoints once it is
    /// synced with every node; until then it is waited on (a wait that halts).
    fn galera_return(&self, i: &Instance) -> Action {
        let all = self.node_count();
        let back = i.health.is_up()
            && i.galera
                .as_ref()
                .is_some_and(|g| g.is_synced() && g.cluster_size >= all);
        if back || self.mutation == Mutation::GaleraPastLostNode {
            return Action::Undrain { ordinal: i.ordinal };
        }
        self.wait(WaitReason::Unhealthy {
            ordinal: i.ordinal,
            health: format!(
                "not back in the cluster after its change: {}",
                node_state(i)
            ),
        })
    }

    /// Why `ordinal` may not be taken out (or altered) now, if it may not:
    /// every node must be synced with every other (the node itself not a
    /// donor), and the cluster must keep quorum without it.
    fn galera_gate(&self, ordinal: u32) -> Option<Action> {
        if let Some(blocked) = self.galera_others(ordinal) {
            return Some(blocked);
        }
        if let Some(i) = self.observed.instance(ordinal)
            && !synced_member(i, self.node_count())
            && self.mutation != Mutation::GaleraIgnoreDonor
        {
            return Some(self.wait(WaitReason::Unhealthy {
                ordinal,
                health: node_state(i),
            }));
        }
        self.galera_quorum(ordinal)
    }

    /// A halt when the cluster would not keep quorum without `ordinal`.
    fn galera_quorum(&self, ordinal: u32) -> Option<Action> {
        let all = self.node_count();
        let staying = self
            .observed
            .instances
            .iter()
            .filter(|i| i.ordinal != ordinal && synced_member(i, all))
            .count();
        let staying = u32::try_from(staying).unwrap_or(u32::MAX);
        let quorum = staying.saturating_mul(2) > all;
        if !quorum && self.mutation != Mutation::GaleraIgnoreQuorum {
            return Some(Action::Halt {
                reason: HaltReason::GaleraNoQuorum {
                    ordinal,
                    nodes: all,
                    staying,
                },
            });
        }
        None
    }

    /// Every node but `ordinal` must be back in the endpoints and synced in
    /// the primary component with every node: none drained, a donor,
    /// desynced, joining or missing.
    fn galera_others(&self, ordinal: u32) -> Option<Action> {
        // Another node still out of the endpoints comes back first.
        if self.mutation != Mutation::GaleraTwoOut
            && let Some(other) = self
                .observed
                .by_ordinal()
                .into_iter()
                .find(|i| i.ordinal != ordinal && i.drained)
        {
            return Some(self.galera_return(other));
        }
        if self.mutation == Mutation::GaleraIgnoreDonor {
            return None;
        }
        let all = self.node_count();
        self.observed
            .by_ordinal()
            .into_iter()
            .find(|i| i.ordinal != ordinal && !synced_member(i, all))
            .map(|i| {
                self.wait(WaitReason::Unhealthy {
                    ordinal: i.ordinal,
                    health: node_state(i),
                })
            })
    }

    fn node_count(&self) -> u32 {
        u32::try_from(self.observed.instances.len()).unwrap_or(u32::MAX)
    }
}

/// Whether the node answers and is in the primary component (whatever its
/// local state: a node desynced for its ALTER is still a member).
fn in_cluster(i: &Instance) -> bool {
    i.health.is_up() && i.galera.as_ref().is_some_and(|g| g.primary_component)
}

/// Whether the node answers, is `Synced` in the primary component, and its
/// component has every one of the cluster's `all` nodes.
fn synced_member(i: &Instance, all: u32) -> bool {
    i.health.is_up()
        && i.galera
            .as_ref()
            .is_some_and(|g| g.is_synced() && g.cluster_size >= all)
}

/// A node's state in words, for waits and halts.
fn node_state(i: &Instance) -> String {
    match (&i.galera, i.health.is_up()) {
        (Some(g), true) => format!("a Galera node {g}"),
        (_, false) => format!("{} (Galera)", i.health),
        (None, true) => "a node whose wsrep status is not known".into(),
    }
}
