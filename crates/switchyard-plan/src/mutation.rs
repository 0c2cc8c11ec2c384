//! Rules broken on purpose, to prove that the property tests catch a broken rule.
//!
//! Public only with the `mutations` cargo feature, which the crate's own tests
//! enable (a dev-dependency on itself) and production builds never do: without
//! it the engine and the decision always run [`Mutation::None`]. Each variant
//! names one rule of [`crate::decide()`] or of the [`crate::engine`]'s
//! switchover that it skips; `tests/properties.rs` shows every one caught.

/// A rule broken on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mutation {
    /// The rules as written.
    #[default]
    None,
    /// Ignore unhealthy instances (MOCO's documented hole): proceed, and
    /// choose a candidate among the live instances only, newest first.
    PromoteNewestIgnoringDown,
    /// Restart the primary in place, without a switchover.
    PrimaryInPlace,
    /// Drain the next replica while another is still out of service.
    TwoAtOnce,
    /// Alter the primary in place even when the change needs a switchover.
    AlterPrimaryInPlace,
    /// Promote the candidate without waiting for it to execute what the old
    /// primary committed.
    SkipCatchUp,
    /// Lift the old primary's fence right after the candidate's promotion.
    UnfenceOldAfterPromote,
    /// Resume a recorded switchover without fencing the old primary again
    /// (a fence that was a lock died with the old engine's connection).
    SkipRefenceOnResume,
    /// Promote a candidate without checking it for errant transactions.
    PromoteWithoutErrantCheck,
    /// Resume a switchover recorded at `CaughtUp` (or later, before the
    /// promotion) straight to the promotion, without catching up again.
    SkipRecatchUpOnResume,
    /// Lift the fence of a former primary before its schema change.
    ReleaseFenceBeforeDdl,
    /// Undo a switchover whose promotion was issued without first making the
    /// candidate read-only again.
    UndoWithoutFencingCandidate,
    /// Change servers without confirming the leadership first.
    SkipLeadershipCheck,
    /// Roll a downgrade even though no order keeps every replica at least as
    /// new as its source.
    DowngradeInAnyOrder,
    /// Fail over to the replica that received the least, still claiming the
    /// failover lossless.
    FailoverLeastReceived,
    /// Promote a failover's candidate without letting it apply what its
    /// relay log holds.
    FailoverWithoutApplyingRelay,
    /// Fail over (and go on failing over) when the failover is not proven
    /// lossless, whatever the policy accepts.
    FailoverWithoutLosslessProof,
    /// Repoint a failed primary that comes back without judging what it
    /// holds that the new primary lacks.
    RejoinFailedPrimaryWithoutCheck,
    /// Leave a replica the failover could not isolate connected to the
    /// failed primary when both answer again.
    KeepFollowersOfFailedPrimary,
    /// Judge a replica that still follows a failed primary on what it
    /// executed only, not on what its relay log holds.
    JudgeFollowersOnExecuted,
    /// On Galera: take the next node out while the record's intent still
    /// holds another out.
    GaleraTwoOut,
    /// On Galera: take a node out even when the others would lose quorum
    /// without it.
    GaleraIgnoreQuorum,
    /// On Galera: take a node out (or alter it) while another node, or the
    /// node itself, is a donor, desynced, joining or missing.
    GaleraIgnoreDonor,
    /// On Galera: go on past a node that left the cluster during its ALTER
    /// (return it to the endpoints as if it had come back).
    GaleraPastLostNode,
    /// Go on past the canary before its bake has passed.
    SkipCanaryBake,
}
