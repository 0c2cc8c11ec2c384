//! The crate's error type, with a bounded category for metrics and reports.

use std::path::PathBuf;

use switchyard_plan::engine::{RuntimeError, RuntimeErrorKind};

/// What went wrong in the local runtime. Every variant names the instance or
/// file concerned; none carries a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The testbed could not fetch, start, stop or control a server.
    #[error("{what}: {source}")]
    Testbed {
        /// What was being done ("start instance 2 on MariaDB 10.11").
        what: String,
        /// The testbed's error.
        #[source]
        source: Box<switchyard_testbed::Error>,
    },
    /// The router could not be started or changed.
    #[error("{what}: {source}")]
    Router {
        /// What was being done.
        what: String,
        /// The router's error.
        #[source]
        source: Box<switchyard_testbed::router::RouterError>,
    },
    /// A statement on an instance failed (the topology client's error names
    /// the instance, the statement's purpose and what the server said).
    #[error("instance {ordinal}: {source}")]
    Sql {
        /// The instance.
        ordinal: u32,
        /// The topology client's error.
        #[source]
        source: Box<switchyard_mysql::Error>,
    },
    /// The state file could not be read or written.
    #[error("state file {path}: cannot {action}: {source}")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// What was being done ("read", "rename", "lock").
        action: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The state file does not hold what this crate writes.
    #[error("state file {path} is not a switchyard state file: {source}")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored record's sequence number is not the expected one: another
    /// engine stored a record since this one was loaded.
    #[error("the record changed since it was loaded (expected seq {expected}, found {found})")]
    Conflict {
        /// The sequence number the caller expected.
        expected: u64,
        /// The one stored.
        found: u64,
    },
    /// A revision the engine asked for is not in the cluster's history.
    #[error(
        "revision {hash} is not in the cluster's revision history: create it with LocalCluster::upgrade_target or config_target first"
    )]
    UnknownRevision {
        /// The revision's content hash.
        hash: String,
    },
    /// A server version the testbed cannot run.
    #[error("the testbed has no {flavor} {version} server: {detail}")]
    UnsupportedVersion {
        /// The flavor.
        flavor: String,
        /// The version.
        version: String,
        /// What is available.
        detail: String,
    },
    /// No instance with this ordinal.
    #[error("the cluster has no instance {0}")]
    NoSuchInstance(u32),
    /// The server refused to set variables online.
    #[error("instance {ordinal}: the server refused to set {refused} online")]
    VariablesRefused {
        /// The instance.
        ordinal: u32,
        /// The refused variables with what the server said.
        refused: String,
    },
    /// An operation did not finish in time.
    #[error("instance {ordinal}: {what} did not happen within {waited:?}")]
    Timeout {
        /// The instance.
        ordinal: u32,
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: std::time::Duration,
    },
    /// An instance to be restarted onto another server version is not
    /// running: it crashed, and is recovered on its current version (and
    /// then shut down cleanly) before it is upgraded.
    #[error(
        "instance {ordinal} is not running on {running} (it crashed); it is recovered on that \
         version and shut down cleanly before it starts on {target}"
    )]
    CrashedBeforeUpgrade {
        /// The instance.
        ordinal: u32,
        /// The version it last ran.
        running: switchyard_plan::versions::Version,
        /// The version of the restart's revision.
        target: switchyard_plan::versions::Version,
    },
    /// A schema change judged online for the primary, run with `LOCK=NONE`, was refused by
    /// the server: it would block writes. Nothing changed on the instance.
    #[error(
        "instance {ordinal} refuses to run `{statement}` without blocking writes ({server}): {}",
        switchyard_ddl::NOT_ONLINE_ADVICE
    )]
    SchemaNotOnline {
        /// The instance.
        ordinal: u32,
        /// The statement as run (with `LOCK=NONE`).
        statement: String,
        /// The server's error.
        server: String,
    },
    /// A fenced primary's position moved: something committed on it.
    #[error(
        "instance {ordinal}: the fence did not hold: its GTID position moved from {before} to {after}"
    )]
    FenceBreached {
        /// The fenced instance.
        ordinal: u32,
        /// The position read after the fence.
        before: String,
        /// The position read later.
        after: String,
    },
    /// The pre-flight refused a schema change the analyzer judged unsafe; nothing ran.
    #[error(
        "the schema change `{statement}` is not safe to roll node by node, so nothing was run: {}; \
         to run it anyway, ask again with force and the risk you accept (see docs/schema-changes.md)",
        reasons.join("; ")
    )]
    SchemaRefused {
        /// The statement.
        statement: String,
        /// Each unsafe clause with its reason and rule (`` `clause`: reason [rule] ``).
        reasons: Vec<String>,
    },
    /// The upgrade pre-flight refused the target version (an option it removed
    /// in the configuration, accounts on a plugin it removed); no instance
    /// was restarted for it.
    #[error("{0}")]
    UpgradeRefused(Box<switchyard_config::UpgradeRefusal>),
    /// The analyzer cannot judge the statement or the table (not one ALTER TABLE, an
    /// executable comment, another table...); nothing ran.
    #[error("the schema change `{statement}` cannot be checked: {source}")]
    SchemaInvalid {
        /// The statement.
        statement: String,
        /// The analyzer's error.
        #[source]
        source: Box<switchyard_ddl::DdlError>,
    },
    /// A schema change the runtime was asked to run was never prepared by
    /// [`LocalCluster::schema_target`](crate::LocalCluster::schema_target).
    #[error(
        "schema change {id} is not in the state file: prepare it with LocalCluster::schema_target first"
    )]
    UnknownSchemaChange {
        /// The change's id.
        id: String,
    },
    /// An instance's table has neither the definition the change starts from nor the one it
    /// should end with.
    #[error("instance {ordinal}: table {table} {detail}")]
    SchemaMismatch {
        /// The instance.
        ordinal: u32,
        /// The table (`db.table`).
        table: String,
        /// What does not match.
        detail: String,
    },
    /// Replication stopped with an error on an instance during a schema change: the change
    /// halts here and touches no further instance.
    #[error(
        "instance {ordinal}: replication stopped with error {errno} during schema change {change}: \
         {message}; the change goes no further until a person repairs the replica"
    )]
    ReplicationBroken {
        /// The instance.
        ordinal: u32,
        /// The change's id.
        change: String,
        /// The server's error number (0 when the applier stopped without one).
        errno: u32,
        /// The server's error text.
        message: String,
    },
    /// A request the cluster cannot honour.
    #[error("{0}")]
    Invalid(String),
    /// A fleet spec or command the fleet's planner refused (nothing was recorded).
    #[error("{0}")]
    Fleet(#[from] switchyard_plan::fleet::FleetError),
}

impl Error {
    /// A bounded label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Testbed { source, .. } => match source.category() {
                "start" => "start",
                "stop" => "stop",
                "upgrade" => "upgrade",
                _ => "testbed",
            },
            Error::Router { .. } => "router",
            Error::Sql { source, .. } => source.category(),
            Error::StateIo { .. } => "state_io",
            Error::StateFormat { .. } => "state_format",
            Error::Conflict { .. } => "conflict",
            Error::UnknownRevision { .. } => "unknown_revision",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::NoSuchInstance(_) => "no_such_instance",
            Error::VariablesRefused { .. } => "variables_refused",
            Error::Timeout { .. } => "timeout",
            Error::CrashedBeforeUpgrade { .. } => "crashed_before_upgrade",
            Error::FenceBreached { .. } => "fence_breached",
            Error::SchemaRefused { .. } => "schema_refused",
            Error::UpgradeRefused(_) => "upgrade_refused",
            Error::SchemaInvalid { .. } => "schema_invalid",
            Error::UnknownSchemaChange { .. } => "unknown_schema_change",
            Error::SchemaMismatch { .. } => "schema_mismatch",
            Error::SchemaNotOnline { .. } => "schema_not_online",
            Error::ReplicationBroken { .. } => "replication_broken",
            Error::Invalid(_) => "invalid",
            Error::Fleet(_) => "fleet",
        }
    }

    /// The engine's kind of failure for this error.
    pub fn runtime_kind(&self) -> RuntimeErrorKind {
        match self {
            Error::Conflict { .. } => RuntimeErrorKind::Conflict,
            Error::Timeout { .. } | Error::CrashedBeforeUpgrade { .. } => {
                RuntimeErrorKind::Transient
            }
            Error::Sql { source, .. } => match source.category() {
                "down" | "unreachable" | "not_responding" | "timeout" | "connection"
                | "lagging" => RuntimeErrorKind::Transient,
                _ => RuntimeErrorKind::Failed,
            },
            _ => RuntimeErrorKind::Failed,
        }
    }

    /// This error as the engine's [`RuntimeError`] for `operation`.
    pub fn into_runtime(self, operation: impl Into<String>) -> RuntimeError {
        let kind = self.runtime_kind();
        RuntimeError::new(kind, operation, self.to_string()).with_source(self)
    }

    pub(crate) fn testbed(
        what: impl Into<String>,
    ) -> impl FnOnce(switchyard_testbed::Error) -> Error {
        let what = what.into();
        move |source| Error::Testbed {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn sql(ordinal: u32) -> impl FnOnce(switchyard_mysql::Error) -> Error {
        move |source| Error::Sql {
            ordinal,
            source: Box::new(source),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
