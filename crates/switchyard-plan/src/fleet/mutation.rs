//! Fleet rules broken on purpose, to prove that `tests/fleet.rs`'s properties catch a broken rule.
//!
//! Public only with the crate's `mutations` cargo feature, as
//! [`crate::mutation`] is: without it [`super::decide_fleet`] and
//! [`super::apply`] always run [`FleetMutation::None`].

/// A fleet rule broken on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FleetMutation {
    /// The rules as written.
    #[default]
    None,
    /// Plan waves that keep doubling past the maximum at once.
    IgnoreMaxAtOnce,
    /// Count a wave complete once its clusters' rollouts finished, without
    /// waiting for their bake.
    SkipBake,
    /// Go on starting clusters while the fleet is stopped, as if the
    /// stopped cluster no longer held its wave back.
    StartWhileStopped,
    /// Do not stop the fleet when a rolling cluster halts.
    IgnoreHalts,
    /// Do not stop the fleet when a baking cluster fails a check.
    IgnoreFailedBake,
    /// Say done once the last wave has started, before its clusters finished.
    DoneWhenLastWaveStarted,
    /// Number a new fleet revision like the one before it.
    ReuseRevisionNumber,
    /// On a resume, bake the clusters already done again.
    ReopenDoneOnResume,
}
