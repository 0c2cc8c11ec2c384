//! The failover's rules: when a failed primary is replaced, by which replica,
//! whether no acknowledged write can be lost, and what becomes of instances
//! that hold transactions the new primary lacks.
//!
//! A primary has failed when it has not answered for the policy's
//! `detect_after` and every replica that answers corroborates it: their
//! receivers lost it too. A primary only the runtime cannot reach (a split
//! between the operator and the databases) is not failed over, nor one that
//! comes back within the window. The candidate is the replica that received
//! the most: with semi-synchronous replication waiting for `k` of `r`
//! replicas, every acknowledged transaction is on at least `k` of them, so as
//! soon as `r - k + 1` answer, one of those holds every acknowledged
//! transaction, and the one that received the most holds all of them. The
//! failover is lossless when that holds; otherwise it waits (a person may
//! accept the loss). Data comes first: the candidate is chosen by what it
//! received even when it runs a newer version than other survivors, which then
//! stay out of replication until they are upgraded.

use super::rules::Decider;
use super::{Action, WaitReason};
use crate::mutation::Mutation;
use crate::record::{Intent, SwitchoverStep};
use crate::topology::{Health, Instance, Role, TopologyKind};

/// Why a failover is, or is not, proven lossless, and which replica takes over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverChoice {
    /// The replica that takes over.
    pub candidate: u32,
    /// Whether no acknowledged write can be lost.
    pub lossless: bool,
    /// Why, in words.
    pub proof: String,
}

/// The forced failover in force and whether data loss is accepted: the
/// policy's, or else a person's request (`switchyard failover --to N`) that
/// the engine has not refused.
pub fn forced_failover(
    policy: &super::FailoverPolicy,
    record: &crate::record::Record,
) -> (Option<u32>, bool) {
    let request = record
        .failover_request
        .as_ref()
        .filter(|r| r.refused.is_none());
    match (policy.forced_to, request) {
        (Some(to), _) => (Some(to), policy.accept_data_loss),
        (None, Some(r)) => (Some(r.to), policy.accept_data_loss || r.accept_data_loss),
        (None, None) => (None, policy.accept_data_loss),
    }
}

/// Whether an instance answers (its server takes queries), whatever its
/// replication does.
pub(crate) fn answers(i: &Instance) -> bool {
    i.health.is_up() || matches!(i.health, Health::ReplicationStopped { .. })
}

/// What a replica received, or executed when its receiver is unknown.
fn received(i: &Instance) -> Option<&crate::gtid::GtidSet> {
    i.link
        .as_ref()
        .and_then(|l| l.received.as_ref())
        .or(i.gtid.as_ref())
}

/// The replica that takes over from the failed primary `failed`, and whether
/// the failover is lossless. Pure: the engine calls it again on a fresh
/// observation once the replicas stopped receiving.
pub fn failover_choice(
    observed: &crate::topology::Observed,
    record: &crate::record::Record,
    forced_to: Option<u32>,
    failed: u32,
) -> Result<FailoverChoice, String> {
    let survivors: Vec<&Instance> = observed
        .by_ordinal()
        .into_iter()
        .filter(|i| i.ordinal != failed && !record.quarantined.contains_key(&i.ordinal))
        .collect();
    let answering: Vec<&Instance> = survivors
        .iter()
        .copied()
        .filter(|i| answers(i) && received(i).is_some())
        .collect();
    if answering.is_empty() {
        return Err("no replica answers".into());
    }
    // The one that received everything any other received (but for what
    // another was seen holding that the primary lacked); when their sets
    // diverge, the one that received the most (the others are quarantined
    // once it is promoted). A replica seen with errant transactions is never
    // the candidate: without the primary nobody can tell them apart.
    let holds_all = |c: &Instance| {
        answering.iter().all(|o| match (received(o), received(c)) {
            (Some(theirs), Some(mine)) => match record.errant.get(&o.ordinal) {
                Some(extra) => mine
                    .union(extra)
                    .and_then(|both| theirs.is_subset(&both))
                    .unwrap_or(false),
                None => theirs.is_subset(mine).unwrap_or(false),
            },
            _ => false,
        })
    };
    let eligible: Vec<&Instance> = answering
        .iter()
        .copied()
        .filter(|i| !record.errant.contains_key(&i.ordinal))
        .collect();
    if eligible.is_empty() {
        return Err(
            "every replica that answers was seen holding transactions the primary lacked".into(),
        );
    }
    let most = eligible
        .iter()
        .copied()
        .find(|c| holds_all(c))
        .or_else(|| {
            eligible
                .iter()
                .copied()
                .max_by_key(|c| received(c).and_then(|g| g.transaction_count()).unwrap_or(0))
        })
        .ok_or("no replica answers")?;
    let candidate = match forced_to {
        Some(to) => *eligible.iter().find(|i| i.ordinal == to).ok_or_else(|| {
            format!(
                "instance {to}, asked for, does not answer or was seen holding transactions \
                     the primary lacked"
            )
        })?,
        None => most,
    };
    // r replicas could have acknowledged; k had to; r - k + 1 answering
    // include one that did, for every acknowledged transaction.
    let r = u32::try_from(survivors.len()).unwrap_or(u32::MAX);
    let a = u32::try_from(answering.len()).unwrap_or(u32::MAX);
    let (lossless, proof) = match record.primary_ack_replicas {
        None => (
            false,
            "the primary acknowledged commits without waiting for a replica (asynchronous)"
                .to_owned(),
        ),
        Some(k) if a + k < r + 1 => (
            false,
            format!(
                "only {a} of the {r} replicas answer, and the primary waited for {k}: a \
                 transaction it acknowledged may be on none of them"
            ),
        ),
        Some(k) => {
            let has_most = holds_all(candidate);
            (
                has_most,
                if has_most {
                    format!(
                        "{a} of the {r} replicas answer and the primary waited for {k}: instance \
                         {} received every acknowledged transaction",
                        candidate.ordinal
                    )
                } else {
                    format!(
                        "instance {} lacks transactions instance {} received",
                        candidate.ordinal, most.ordinal
                    )
                },
            )
        }
    };
    Ok(FailoverChoice {
        candidate: candidate.ordinal,
        lossless,
        proof,
    })
}

impl Decider<'_> {
    /// Rule 0: a recorded failover goes on before anything else (it is never
    /// undone); a primary that failed is replaced once the detection window
    /// passed, the replicas corroborate, and the failover is lossless (or the
    /// loss accepted). Within the window nothing is decided here: the other
    /// rules recover a crashed primary.
    pub(super) fn failover(&self) -> Option<Action> {
        match &self.record.intent {
            Some(Intent::Failover { from, to, .. }) => {
                return Some(Action::Failover {
                    from: *from,
                    to: *to,
                });
            }
            // A switchover past its commit point has a new primary: it is
            // finished first. Before it, a failed old primary is failed over
            // like any other (the switchover could only be undone onto it).
            Some(Intent::Switchover { step, .. }) if *step >= SwitchoverStep::Promoting => {
                return None;
            }
            _ => {}
        }
        if self.observed.kind != TopologyKind::Async {
            return None;
        }
        if let Some(fence) = self.returned_failed_primary() {
            return Some(fence);
        }
        let primary = self.observed.primary()?;
        if answers(primary) {
            return None;
        }
        let policy = &self.policy.failover;
        let (forced, accept_data_loss) = forced_failover(policy, self.record);
        if !policy.automatic && forced.is_none() {
            return None;
        }
        let since = self
            .record
            .detection
            .as_ref()
            .filter(|d| d.primary == primary.ordinal)
            .map_or(self.now, |d| d.since);
        let failing = self.now.since(since);
        if forced.is_none() && failing < policy.detect_after {
            return None;
        }
        // While no failover can go, a primary that crashed is started again
        // (the other rules recover it); one that hangs or cannot be reached
        // is waited on.
        let crashed = primary.health == Health::Crashed;
        let wait = |detail: String| {
            (!crashed).then(|| {
                self.wait(WaitReason::PrimaryFailing {
                    ordinal: primary.ordinal,
                    since,
                    detail,
                })
            })
        };
        if forced.is_none() {
            let followers: Vec<&Instance> = self
                .observed
                .by_ordinal()
                .into_iter()
                // A replica whose replication is stopped cleanly (restarted and not yet
                // repointed, or stopped by us) says nothing about the primary: it is no
                // witness.
                .filter(|i| {
                    i.source == Some(primary.ordinal) && answers(i) && !i.replication_paused()
                })
                .collect();
            if followers.is_empty() {
                return wait("no replica that follows it answers to corroborate".into());
            }
            let still: Vec<String> = followers
                .iter()
                .filter(|i| i.link.as_ref().is_none_or(|l| l.connected))
                .map(|i| i.ordinal.to_string())
                .collect();
            if !still.is_empty() {
                return wait(format!(
                    "replicas {} still reach it: what fails is the way to it, not the primary",
                    still.join(", ")
                ));
            }
        }
        match failover_choice(self.observed, self.record, forced, primary.ordinal) {
            Ok(choice)
                if choice.lossless
                    || accept_data_loss
                    || self.mutation == Mutation::FailoverWithoutLosslessProof =>
            {
                Some(Action::Failover {
                    from: primary.ordinal,
                    to: choice.candidate,
                })
            }
            Ok(choice) => wait(format!(
                "{}; fail over accepting the loss (switchyard failover --accept-data-loss) or \
                 bring the primary back",
                choice.proof
            )),
            Err(detail) => wait(detail),
        }
    }

    /// A primary that was failed over and answers again, still writable (it
    /// could not be fenced while it was unreachable), is fenced before
    /// anything else: its data is then judged like any returning replica's.
    fn returned_failed_primary(&self) -> Option<Action> {
        // Back with no source (a privileged client could take it for a
        // primary: MariaDB's read_only lets READ ONLY ADMIN commit) or
        // writable: fenced before anything else judges it.
        let instances = self.observed.by_ordinal();
        let fence = instances
            .iter()
            .find(|i| {
                self.failed_primary(i.ordinal)
                    && i.role != Role::Primary
                    && !i.fenced
                    && answers(i)
                    && (i.writable || i.source.is_none())
            })
            .map(|i| Action::Fence { ordinal: i.ordinal });
        // A replica the failover could not isolate, whose receiver is
        // connected to a failed primary again: it would acknowledge the
        // commits that primary had in flight, which the new one lacks.
        let detach = || {
            instances.iter().find_map(|i| {
                let from = i.source.filter(|s| self.failed_primary(*s))?;
                (self.mutation != Mutation::KeepFollowersOfFailedPrimary
                    && answers(i)
                    && i.link.as_ref().is_some_and(|l| l.connected))
                .then_some(Action::Detach {
                    ordinal: i.ordinal,
                    from,
                })
            })
        };
        fence.or_else(detach)
    }

    /// Whether `ordinal` is a primary that was failed over and has not
    /// rejoined since (never the primary now).
    pub(super) fn failed_primary(&self, ordinal: u32) -> bool {
        self.record.failed_over.contains(&ordinal)
            && self.observed.primary().is_none_or(|p| p.ordinal != ordinal)
    }

    /// Whether `i` is quarantined.
    pub(super) fn quarantined(&self, i: &Instance) -> bool {
        self.record.quarantined.contains_key(&i.ordinal)
    }
}
