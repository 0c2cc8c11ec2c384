//! Fleet rollouts: one change rolled over many clusters in waves, a canary wave first, a bake between waves and a fleet-wide stop.
//!
//! The fleet is the cluster engine's pattern one level up. A caller (a
//! runtime) observes every cluster ([`ClusterObservation`]), asks
//! [`decide_fleet`] for the next step, records it in the durable
//! [`FleetRecord`] with [`apply`] (stored with compare-and-swap on
//! [`FleetRecord::seq`]), and only then acts: a cluster is started on the
//! change only once the record says it was started, so a new process resumes
//! where a killed one stopped. The fleet never interprets the change: it is an
//! opaque identifier (a revision, a configuration, a schema change already
//! judged safe) that each cluster's own rollout carries out.
//!
//! The rules, in the order they apply:
//!
//! 1. A person's command ([`FleetRecord::request`]) comes first: an abort
//!    leaves every cluster as it is and says which ran the change; a resume
//!    continues from where the fleet stopped, once the stopped cluster is
//!    healthy again or the person skips it (otherwise it is refused, with
//!    the reason).
//! 2. A new change is planned (a new numbered fleet revision, its waves fixed
//!    in the record) only when the previous one is done or aborted.
//! 3. A stopped fleet starts nothing until a resume; a done or aborted one
//!    says so.
//! 4. Any halt of a rolling cluster, and any failed bake check of a baking
//!    one (halted, replication stopped, lag beyond the bound, the user check
//!    failing, running another change), stops the whole fleet where it is,
//!    naming the cluster and why. Clusters already done stay done; nothing is
//!    undone.
//! 5. A cluster whose rollout finished bakes for [`FleetSpec::bake`], judged
//!    only on an observation made after the bake's end; then it is done.
//! 6. Waves run in order: canary first, then waves that double, each at most
//!    [`FleetSpec::max_at_once`] clusters. No cluster of a wave starts before
//!    every cluster of the previous waves is done (baked) or skipped.
//!
//! Done clusters are no longer watched: a cluster counts as done once it has
//! baked.

mod apply;
mod decide;
#[cfg(feature = "mutations")]
pub mod mutation;
#[cfg(not(feature = "mutations"))]
mod mutation;
mod record;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topology::Timestamp;

pub use apply::apply;
#[cfg(feature = "mutations")]
pub use apply::apply_mutated;
#[cfg(feature = "mutations")]
pub use decide::decide_fleet_mutated;
pub use decide::{FleetAction, FleetWait, Resumed, StopReason, decide_fleet};
pub use record::{
    ClusterState, Command, Ended, FLEET_HISTORY_LIMIT, FleetCommand, FleetRecord, FleetRevision,
    FleetState, Rolled,
};

/// The bake time of [`FleetSpec::new`].
pub const DEFAULT_BAKE: Duration = Duration::from_secs(300);

/// The lag bound of [`FleetSpec::new`], in seconds (the cluster policy's default).
pub const DEFAULT_MAX_LAG_SECONDS: u64 = 10;

/// What to roll, and over which clusters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSpec {
    /// The clusters, by name, in the order they are rolled.
    pub clusters: Vec<String>,
    /// How many clusters the canary wave holds (at least 1).
    pub canary: usize,
    /// The most clusters changing at once (bounds every wave).
    pub max_at_once: usize,
    /// How long a cluster must stay healthy after its rollout before it counts as done.
    pub bake: Duration,
    /// A replica lagging more than this fails the bake.
    pub max_lag_seconds: u64,
    /// The change, as the caller names it (a revision, a configuration, a
    /// schema change's id): the fleet does not interpret it.
    pub change: String,
}

impl FleetSpec {
    /// A spec with a canary of one cluster, one cluster at a time, a bake of
    /// [`DEFAULT_BAKE`] and a lag bound of [`DEFAULT_MAX_LAG_SECONDS`].
    pub fn new(
        clusters: impl IntoIterator<Item = impl Into<String>>,
        change: impl Into<String>,
    ) -> Self {
        FleetSpec {
            clusters: clusters.into_iter().map(Into::into).collect(),
            canary: 1,
            max_at_once: 1,
            bake: DEFAULT_BAKE,
            max_lag_seconds: DEFAULT_MAX_LAG_SECONDS,
            change: change.into(),
        }
    }

    /// Checks the spec: at least one cluster, each named once, a non-empty
    /// change, a canary and a maximum of at least one, the canary no larger
    /// than the fleet or the maximum.
    pub fn validate(&self) -> Result<(), FleetError> {
        if self.clusters.is_empty() {
            return Err(FleetError::EmptyFleet);
        }
        let mut seen = BTreeMap::new();
        for (position, name) in self.clusters.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(FleetError::EmptyClusterName { position });
            }
            if let Some(first) = seen.insert(name.as_str(), position) {
                return Err(FleetError::DuplicateCluster {
                    name: name.clone(),
                    first,
                    second: position,
                });
            }
        }
        if self.change.trim().is_empty() {
            return Err(FleetError::EmptyChange);
        }
        if self.max_at_once == 0 {
            return Err(FleetError::ZeroMaxAtOnce);
        }
        if self.canary == 0 {
            return Err(FleetError::ZeroCanary);
        }
        if self.canary > self.clusters.len() {
            return Err(FleetError::CanaryLargerThanFleet {
                canary: self.canary,
                clusters: self.clusters.len(),
            });
        }
        if self.canary > self.max_at_once {
            return Err(FleetError::CanaryLargerThanMaxAtOnce {
                canary: self.canary,
                max_at_once: self.max_at_once,
            });
        }
        Ok(())
    }

    /// The waves, in order: the canary wave, then waves twice the size of
    /// the one before, each at most [`FleetSpec::max_at_once`] clusters,
    /// taking the clusters in their listed order.
    pub fn waves(&self) -> Result<Vec<Vec<String>>, FleetError> {
        self.validate()?;
        Ok(plan_waves(
            &self.clusters,
            self.canary,
            Some(self.max_at_once),
        ))
    }
}

/// Cuts `clusters` into waves starting at `first`, doubling, capped at `cap`.
pub(crate) fn plan_waves(
    clusters: &[String],
    first: usize,
    cap: Option<usize>,
) -> Vec<Vec<String>> {
    let mut waves = Vec::new();
    let mut size = first.max(1);
    let mut rest = clusters;
    while !rest.is_empty() {
        let take = size.min(rest.len());
        waves.push(rest[..take].to_vec());
        rest = &rest[take..];
        size = size.saturating_mul(2);
        if let Some(cap) = cap {
            size = size.min(cap);
        }
    }
    waves
}

/// What a cluster's own rollout says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rollout", rename_all = "kebab-case")]
pub enum ClusterRollout {
    /// It is rolling (or has not begun).
    Rolling,
    /// Every instance runs the change and its verification passed.
    Done,
    /// It halted and needs a person.
    Halted {
        /// The cluster engine's halt reason, in words.
        reason: String,
    },
}

/// The answer of the optional user check (a query that must keep answering).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum UserCheck {
    /// No user check is configured.
    #[default]
    NotConfigured,
    /// It answered as expected.
    Answered,
    /// It failed.
    Failed {
        /// What failed, in words (no secrets).
        message: String,
    },
}

/// One cluster as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterObservation {
    /// The change the cluster's target is (what it runs or rolls), if any.
    pub change: Option<String>,
    /// Its own rollout toward that change.
    pub rollout: ClusterRollout,
    /// Whether every replica's replication runs.
    pub replication_running: bool,
    /// The largest replica lag, in seconds (`None`: unknown or no replica).
    pub lag_seconds: Option<u64>,
    /// The user check's answer.
    pub user_check: UserCheck,
    /// When this observation was made: a bake passes only on an observation
    /// made at or after its end.
    pub observed_at: Timestamp,
}

impl ClusterObservation {
    /// A healthy cluster that runs `change` to the end, observed at `at`.
    pub fn done(change: impl Into<String>, at: Timestamp) -> Self {
        ClusterObservation {
            change: Some(change.into()),
            rollout: ClusterRollout::Done,
            replication_running: true,
            lag_seconds: Some(0),
            user_check: UserCheck::NotConfigured,
            observed_at: at,
        }
    }
}

/// A fleet spec or a person's command that cannot be taken. Nothing is
/// recorded when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The spec lists no cluster.
    #[error("the fleet lists no cluster: name at least one cluster to roll the change to")]
    EmptyFleet,
    /// A cluster name is empty.
    #[error("the cluster name at position {position} is empty: name every cluster of the fleet")]
    EmptyClusterName {
        /// Its position in the list (from 0).
        position: usize,
    },
    /// A cluster is listed twice.
    #[error(
        "cluster {name:?} is listed twice in the fleet (positions {first} and {second}): list \
         each cluster once"
    )]
    DuplicateCluster {
        /// The cluster.
        name: String,
        /// Its first position (from 0).
        first: usize,
        /// Its second position.
        second: usize,
    },
    /// The change is empty.
    #[error(
        "the fleet's change is empty: give the revision, configuration or schema change to roll"
    )]
    EmptyChange,
    /// No cluster may change at once.
    #[error(
        "the maximum number of clusters changing at once is 0, so nothing could roll: set it to \
         at least 1"
    )]
    ZeroMaxAtOnce,
    /// The canary wave is empty.
    #[error("the canary wave holds 0 clusters: set it to at least 1 (the default)")]
    ZeroCanary,
    /// The canary wave is larger than the fleet.
    #[error(
        "the canary wave holds {canary} clusters but the fleet has {clusters}: set the canary to \
         at most {clusters}"
    )]
    CanaryLargerThanFleet {
        /// The canary size.
        canary: usize,
        /// The fleet's size.
        clusters: usize,
    },
    /// The canary wave is larger than the maximum at once.
    #[error(
        "the canary wave holds {canary} clusters but at most {max_at_once} may change at once: \
         lower the canary or raise the maximum"
    )]
    CanaryLargerThanMaxAtOnce {
        /// The canary size.
        canary: usize,
        /// The maximum at once.
        max_at_once: usize,
    },
    /// A command is already waiting for the fleet's decision.
    #[error(
        "a {pending} command is already waiting for the fleet to take it: wait for its outcome, \
         then ask again"
    )]
    CommandPending {
        /// The waiting command, in words.
        pending: String,
    },
    /// A resume of a fleet that is not stopped.
    #[error("the fleet is {state}, not stopped: there is nothing to resume")]
    NotStopped {
        /// The fleet's state, in words.
        state: String,
    },
    /// A resume that skips a cluster other than the stopped one.
    #[error(
        "the fleet stopped on cluster {stopped:?}, not {cluster:?}: only the stopped cluster can \
         be skipped"
    )]
    SkipNotStopped {
        /// The cluster asked to skip.
        cluster: String,
        /// The cluster the fleet stopped on.
        stopped: String,
    },
    /// An abort of a fleet that is not running or stopped.
    #[error("the fleet is {state}: there is nothing to abort")]
    NothingToAbort {
        /// The fleet's state, in words.
        state: String,
    },
}

impl FleetError {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            FleetError::EmptyFleet => "empty-fleet",
            FleetError::EmptyClusterName { .. } => "empty-cluster-name",
            FleetError::DuplicateCluster { .. } => "duplicate-cluster",
            FleetError::EmptyChange => "empty-change",
            FleetError::ZeroMaxAtOnce => "zero-max-at-once",
            FleetError::ZeroCanary => "zero-canary",
            FleetError::CanaryLargerThanFleet { .. } => "canary-larger-than-fleet",
            FleetError::CanaryLargerThanMaxAtOnce { .. } => "canary-larger-than-max-at-once",
            FleetError::CommandPending { .. } => "command-pending",
            FleetError::NotStopped { .. } => "not-stopped",
            FleetError::SkipNotStopped { .. } => "skip-not-stopped",
            FleetError::NothingToAbort { .. } => "nothing-to-abort",
        }
    }
}
