//! The canary within a cluster: with [`Policy::canary_bake`](super::Policy::canary_bake)
//! set, a rolling change stops after its first instance and goes on only once that
//! instance has served on the target, healthy, for the whole bake.
//!
//! The canary is the first instance to complete the target (its revision and schema
//! change) while others are still pending: a replica, since replicas go first. Its timer
//! lives in the record ([`Canary`]), kept by the engine before each decision with
//! [`note_canary`], so a new engine goes on counting from where the old one was:
//!
//! - the timer runs while the canary is in service (not drained, not fenced, not
//!   quarantined) and healthy (ready, or lagging within the policy's bound); it starts
//!   again from zero whenever the canary is seen otherwise, so the bake is an unbroken
//!   stretch of health;
//! - once the bake has passed, the canary has passed for this target for good: later
//!   trouble on it is the ordinary health gate's (it waits, and halts after `halt_after`);
//! - a new target starts a new canary.
//!
//! The decision ([`Decider::canary_bake`]) waits ([`WaitReason::CanaryBake`]) while the
//! canary has not passed; the wait itself never halts (it ends on its own), but the
//! health gate before it does: a canary that stays unhealthy halts the rollout after
//! `halt_after`, with nothing else changed.
//!
//! On Galera the canary is the first node back on the target, synced (a node that does
//! not take the writes: the writer goes last); while it bakes, a node out of sync is the
//! Galera gate's wait, which halts after `halt_after`.

use super::rules::Decider;
use super::{Action, Policy, Target, WaitReason};
use crate::record::{Canary, Record};
use crate::topology::{Health, Instance, Observed, Timestamp};

/// The record's canary after this observation (see the module documentation): `None`
/// when the policy has no bake, or no instance has completed the target while another is
/// still pending.
pub fn note_canary(
    observed: &Observed,
    record: &Record,
    target: &Target,
    policy: &Policy,
    now: Timestamp,
) -> Option<Canary> {
    Decider {
        observed,
        record,
        target,
        policy,
        now,
        mutation: crate::mutation::Mutation::None,
    }
    .next_canary()
}

impl Decider<'_> {
    /// See [`note_canary`].
    fn next_canary(&self) -> Option<Canary> {
        let bake = self.policy.canary_bake?;
        let key = self.target.key();
        let previous = self
            .record
            .canary
            .as_ref()
            .filter(|c| c.target == key)
            .cloned();
        if let Some(c) = &previous
            && c.passed.is_some()
        {
            return previous;
        }
        let candidate = match &previous {
            Some(c) => self.observed.instance(c.ordinal),
            None => {
                let pending = self
                    .observed
                    .instances
                    .iter()
                    .any(|i| !self.completes(i) && !self.quarantined(i));
                if !pending {
                    return None;
                }
                self.observed
                    .by_ordinal()
                    .into_iter()
                    .find(|i| self.completes(i) && self.serves_healthy(i))
            }
        };
        let Some(canary) = candidate else {
            // The canary is not observed at all: its timer starts again.
            return previous.map(|c| Canary {
                healthy_since: None,
                ..c
            });
        };
        let healthy_since = if self.completes(canary) && self.serves_healthy(canary) {
            Some(
                previous
                    .as_ref()
                    .and_then(|c| c.healthy_since)
                    .unwrap_or(self.now),
            )
        } else {
            None
        };
        let passed = healthy_since.filter(|since| self.now >= since.after(bake));
        Some(Canary {
            target: key,
            ordinal: canary.ordinal,
            healthy_since,
            passed: passed.map(|_| self.now),
        })
    }

    /// Whether `i` runs the target revision with the target's schema change.
    fn completes(&self, i: &Instance) -> bool {
        i.runs(&self.target.revision) && !self.needs_schema(i)
    }

    /// Whether `i` serves (in the pool, unfenced, not quarantined) and is healthy.
    fn serves_healthy(&self, i: &Instance) -> bool {
        let healthy = match i.health {
            Health::Ready => true,
            Health::Lagging { seconds } => seconds <= self.policy.max_lag_seconds,
            _ => false,
        };
        healthy && !i.drained && !i.fenced && !self.quarantined(i)
    }

    /// The wait for the canary's bake, while it has not passed.
    pub(super) fn canary_bake(&self) -> Option<Action> {
        let bake = self.policy.canary_bake?;
        let canary = self
            .record
            .canary
            .as_ref()
            .filter(|c| c.target == self.target.key() && c.passed.is_none())?;
        let until = canary.healthy_since.unwrap_or(self.now).after(bake);
        (self.now < until).then_some(Action::Wait {
            reason: WaitReason::CanaryBake {
                ordinal: canary.ordinal,
                until,
            },
        })
    }
}
