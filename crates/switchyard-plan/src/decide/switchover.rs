//! The switchover's rules: whether an unfinished switchover resumes or is
//! undone, what follows its promotion, and which replica may take over.

use super::rules::Decider;
use super::{Action, SWITCHOVER_CANDIDATE_MAX_LAG_SECONDS, WaitReason};
use crate::mutation::Mutation;
use crate::record::{Intent, SwitchoverStep};
use crate::topology::{Health, Instance, Role, TopologyKind};
use crate::versions::catalog;

impl Decider<'_> {
    /// Rule 1: a switchover the record shows unfinished comes before anything
    /// else, halts included: not promoted yet, it resumes before its deadline
    /// and is undone after it; promoted, its replicas are repointed (after the
    /// backoff when a repoint failed, but never halted on).
    pub(super) fn unfinished_switchover(&self) -> Option<Action> {
        let Some(Intent::Switchover {
            from,
            to,
            step,
            deadline,
            ..
        }) = &self.record.intent
        else {
            return None;
        };
        let (from, to) = (*from, *to);
        let new = self.observed.instance(to);
        if *step >= SwitchoverStep::Repointed {
            return None;
        }
        if *step >= SwitchoverStep::Promoted || new.is_some_and(|n| n.role == Role::Primary) {
            // Promoted, not repointed yet: finished (the replicas repointed)
            // before any halt, after the backoff when a repoint failed.
            if let Some(f) = &self.record.failure
                && f.target == self.target.key()
            {
                let until = f.last.after(self.policy.retry_backoff);
                if self.now < until {
                    return Some(Action::Wait {
                        reason: WaitReason::Backoff {
                            step: f.key.clone(),
                            until,
                        },
                    });
                }
            }
            return Some(Action::Switchover { from, to });
        }
        let Some(old) = self.observed.instance(from) else {
            return Some(self.gone(from));
        };
        // The old primary crashed: it comes back (read-only) before the
        // switchover can go either way; what it acknowledged may exist
        // nowhere else.
        match old.health {
            Health::Crashed => return Some(Action::Recover { ordinal: from }),
            Health::Starting => return Some(self.wait(WaitReason::Starting { ordinal: from })),
            _ => {}
        }
        if new.is_none() {
            // The candidate left the cluster: nothing of it takes writes.
            return Some(Action::Unfence { ordinal: from });
        }
        if self.now < *deadline {
            return Some(Action::Switchover { from, to });
        }
        Some(Action::Unfence { ordinal: from })
    }

    /// The old primary of a promoted switchover waits to rejoin as a replica
    /// (configured, not applying): its fence must hold until then, so one that
    /// no longer holds (a lock died with the engine that held it) is fenced
    /// again before anything else.
    pub(super) fn unfenced_old_primary(&self) -> Option<Action> {
        let Some(Intent::Switchover { from, to, step, .. }) = &self.record.intent else {
            return None;
        };
        let promoted = *step >= SwitchoverStep::Promoted
            || self
                .observed
                .instance(*to)
                .is_some_and(|n| n.role == Role::Primary);
        if !promoted || self.mutation == Mutation::SkipRefenceOnResume {
            return None;
        }
        let old = self.observed.instance(*from)?;
        let answers = old.health.is_up() || old.replication_paused();
        (answers && !old.fenced && !old.writable && !old.replicates_from(*to))
            .then_some(Action::Fence { ordinal: *from })
    }

    /// A promoted switchover: the replicas are repointed, then the old primary
    /// stays out of service until it runs the target revision, has the schema
    /// change, and replicates from the new primary.
    pub(super) fn promoted_switchover(&self, from: u32, to: u32) -> Action {
        let Some(old) = self.observed.instance(from) else {
            return self.gone(from);
        };
        if self.observed.instance(to).is_none() {
            return self.gone(to);
        }
        let repointed = matches!(
            self.record.intent,
            Some(Intent::Switchover { step, .. }) if step >= SwitchoverStep::Repointed
        );
        if !repointed {
            return Action::Switchover { from, to };
        }
        if !old.runs(&self.target.revision) {
            return match old.health {
                Health::Crashed => Action::Recover { ordinal: from },
                Health::Starting => self.wait(WaitReason::Starting { ordinal: from }),
                _ => self.restart(old),
            };
        }
        self.rejoin(old)
    }

    /// The replica that may take over from `primary`: healthy, without errant
    /// transactions, running a version no newer than any other instance's
    /// (the old primary aside), lowest ordinal first.
    pub(super) fn candidate(&self, primary: &Instance) -> Result<&Instance, String> {
        let cat = catalog();
        let mut passed_over = Vec::new();
        let mut replicas: Vec<&Instance> = self
            .observed
            .by_ordinal()
            .into_iter()
            .filter(|i| i.ordinal != primary.ordinal)
            .collect();
        if self.mutation == Mutation::PromoteNewestIgnoringDown {
            replicas.retain(|i| i.health.is_up());
            replicas.sort_by_key(|i| std::cmp::Reverse((i.version, i.ordinal)));
            return replicas
                .first()
                .copied()
                .ok_or_else(|| "no live replica".to_string());
        }
        for r in replicas {
            if self.quarantined(r) {
                passed_over.push(format!("{} is quarantined", r.ordinal));
                continue;
            }
            let lag_ok = r
                .lag_seconds()
                .is_some_and(|lag| lag <= self.policy.max_lag_seconds);
            if !lag_ok {
                passed_over.push(format!("{} is {}", r.ordinal, r.health));
                continue;
            }
            let galera = self.observed.kind == TopologyKind::Galera;
            if !galera && r.source != Some(primary.ordinal) {
                passed_over.push(format!("{} does not replicate from the primary", r.ordinal));
                continue;
            }
            if self.needs_schema(r) {
                passed_over.push(format!("{} does not have the schema change yet", r.ordinal));
                continue;
            }
            if !galera
                && self.mutation != Mutation::PromoteWithoutErrantCheck
                && let Some(errant) = self.errant(r, primary)
            {
                passed_over.push(format!("{} has errant transactions {errant}", r.ordinal));
                continue;
            }
            // Every other instance (down ones included, by their last known
            // version) must be able to replicate from the candidate; a
            // quarantined one replicates from nobody until a person
            // re-provisions it.
            let newer_than: Vec<String> = self
                .observed
                .instances
                .iter()
                .filter(|o| {
                    o.ordinal != r.ordinal && o.ordinal != primary.ordinal && !self.quarantined(o)
                })
                .filter(|o| {
                    !cat.check_replication(self.observed.flavor, r.version, o.version)
                        .is_ok_and(|v| v.allowed)
                })
                .map(|o| format!("{} ({})", o.ordinal, o.version))
                .collect();
            if !newer_than.is_empty() {
                passed_over.push(format!(
                    "{} runs {}, newer than {}",
                    r.ordinal,
                    r.version,
                    newer_than.join(", ")
                ));
                continue;
            }
            // The chosen candidate is waited for, not passed over for
            // another, while it catches up: the choice stays the lowest
            // eligible ordinal whatever the lag of the moment.
            let bound = self
                .policy
                .max_lag_seconds
                .min(SWITCHOVER_CANDIDATE_MAX_LAG_SECONDS);
            if let Some(lag) = r.lag_seconds()
                && lag > bound
            {
                return Err(format!(
                    "candidate {} lags {lag}s; the primary is fenced only once it lags at most \
                     {bound}s",
                    r.ordinal
                ));
            }
            return Ok(r);
        }
        if passed_over.is_empty() {
            passed_over.push("the cluster has no replica".into());
        }
        Err(passed_over.join("; "))
    }
}
