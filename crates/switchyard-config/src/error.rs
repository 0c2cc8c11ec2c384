//! The error type of switchyard-config, with a bounded category for metrics and event reasons.

use switchyard_plan::versions::{Flavor, Version};

use crate::preflight::UpgradeRefusal;

/// Why a configuration change was refused or could not be carried out.
///
/// Every variant that concerns a variable names it; those that come from a server name the
/// instance (`name (host:port)`) and what the server said. No variant holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable name that is not a server variable name.
    #[error("{name:?} is not a variable name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is accepted.
        reason: String,
    },
    /// Two spellings of one variable in one configuration.
    #[error("{first:?} and {second:?} both name {name}: keep one")]
    DuplicateName {
        /// The normalised name.
        name: String,
        /// The first spelling.
        first: String,
        /// The second spelling.
        second: String,
    },
    /// The variable is switchyard's own.
    #[error("{variable} cannot be set in the configuration: {reason}")]
    OperatorOwned {
        /// The variable.
        variable: String,
        /// Why switchyard owns it.
        reason: &'static str,
    },
    /// The target version removed the option.
    #[error(
        "{variable} was removed in {flavor} {removed_in} and the target is {target}: remove it \
         from the configuration{replacement} (source: {citation})"
    )]
    RemovedOption {
        /// The option.
        variable: String,
        /// The product.
        flavor: Flavor,
        /// The first version without it.
        removed_in: Version,
        /// The target version.
        target: Version,
        /// `, or use X` when there is a replacement, otherwise empty.
        replacement: String,
        /// The page that states the removal.
        citation: &'static str,
    },
    /// An instance's metadata refuses the variable or its value (unknown, session-only,
    /// computed, wrong type, out of range, not an allowed value).
    #[error("{variable}={value:?} is refused by {instance}: {reason}")]
    Rejected {
        /// The variable.
        variable: String,
        /// The value asked for.
        value: String,
        /// The instance whose metadata refuses it.
        instance: String,
        /// The rule, from the server's metadata.
        reason: String,
    },
    /// A variable the running version does not know, in a change that also changes the version:
    /// it can only be checked once a server of the target version can be read.
    #[error(
        "{variable} is unknown to {running} and no server of the target version {target} was \
         read to check it: add it in a separate change after the upgrade, or give the target \
         version's metadata"
    )]
    NotCheckable {
        /// The variable.
        variable: String,
        /// What the instances run.
        running: String,
        /// The target version.
        target: Version,
    },
    /// There is no current revision to change from.
    #[error("the cluster has no revision yet: record the first one with History::ensure")]
    NoHistory,
    /// No instance's metadata was given.
    #[error("no instance's metadata was read: every instance must be checked before a change")]
    NoMetadata,
    /// An instance runs another flavor or version than the cluster's current revision.
    #[error(
        "{instance} runs {found}, but the cluster's revision is {expected}: wait until the \
         current rollout finishes before changing the configuration"
    )]
    VersionMismatch {
        /// The instance.
        instance: String,
        /// What the revision says.
        expected: String,
        /// What the instance runs.
        found: String,
    },
    /// A connection to an instance failed.
    #[error("{instance}: cannot {purpose}: {detail}")]
    Connect {
        /// The instance.
        instance: String,
        /// What the connection was for.
        purpose: &'static str,
        /// What the client library said (never credentials).
        detail: String,
    },
    /// A statement failed on an instance.
    #[error("{instance}: cannot {purpose}: {server}")]
    Query {
        /// The instance.
        instance: String,
        /// What the statement was for.
        purpose: &'static str,
        /// What the server said.
        server: String,
    },
    /// A statement did not finish in time.
    #[error("{instance}: cannot {purpose}: no answer within {seconds} s")]
    Timeout {
        /// The instance.
        instance: String,
        /// What the statement was for.
        purpose: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The server cannot describe its variables (MySQL before 8.3, `performance_schema` off).
    #[error("{instance}: cannot read variable metadata: {reason}")]
    MetadataUnavailable {
        /// The instance.
        instance: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The read-only probe got an answer that tells nothing.
    #[error("{instance}: cannot tell whether {variable} changes online: {server}")]
    Probe {
        /// The instance.
        instance: String,
        /// The variable.
        variable: String,
        /// What the server said.
        server: String,
    },
    /// The server refused a variable while applying online; the instance's own partial change
    /// was undone.
    #[error(
        "{instance} refused {variable}={value:?}: {server}; undone on this instance: [{undone}]"
    )]
    Refused {
        /// The instance.
        instance: String,
        /// The variable.
        variable: String,
        /// The value asked for.
        value: String,
        /// What the server said.
        server: String,
        /// The variables that had been set on this instance and were set back, comma-separated.
        undone: String,
    },
    /// Undoing a partial online change failed: the instance holds a mix of old and new values.
    #[error(
        "{instance}: could not set {variable} back to {value:?} after a refusal: {server}; \
         the instance needs a restart on its current revision"
    )]
    UndoFailed {
        /// The instance.
        instance: String,
        /// The variable.
        variable: String,
        /// The value it should have gone back to.
        value: String,
        /// What went wrong.
        server: String,
    },
    /// The topology client failed (connection, timeout) while setting variables.
    #[error(transparent)]
    Topology(#[from] switchyard_mysql::Error),
    /// The upgrade pre-flight refused.
    #[error(transparent)]
    UpgradeRefused(#[from] UpgradeRefusal),
}

impl ConfigError {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ConfigError::InvalidName { .. } => "invalid-name",
            ConfigError::DuplicateName { .. } => "duplicate-name",
            ConfigError::OperatorOwned { .. } => "operator-owned",
            ConfigError::RemovedOption { .. } => "removed-option",
            ConfigError::Rejected { .. } => "rejected",
            ConfigError::NotCheckable { .. } => "not-checkable",
            ConfigError::NoHistory => "no-history",
            ConfigError::NoMetadata => "no-metadata",
            ConfigError::VersionMismatch { .. } => "version-mismatch",
            ConfigError::Connect { .. } => "connect",
            ConfigError::Query { .. } => "query",
            ConfigError::Timeout { .. } => "timeout",
            ConfigError::MetadataUnavailable { .. } => "metadata-unavailable",
            ConfigError::Probe { .. } => "probe",
            ConfigError::Refused { .. } => "refused",
            ConfigError::UndoFailed { .. } => "undo-failed",
            ConfigError::Topology(_) => "topology",
            ConfigError::UpgradeRefused(_) => "upgrade-refused",
        }
    }

    /// True when the request itself is wrong (the user must change it); false for failures of
    /// the servers or the network, which may pass.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            ConfigError::InvalidName { .. }
                | ConfigError::DuplicateName { .. }
                | ConfigError::OperatorOwned { .. }
                | ConfigError::RemovedOption { .. }
                | ConfigError::Rejected { .. }
                | ConfigError::NotCheckable { .. }
                | ConfigError::UpgradeRefused(_)
        )
    }
}
