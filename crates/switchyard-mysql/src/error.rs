//! The error type of every operation, with a bounded category for metrics.

use std::fmt;
use std::time::Duration;

use switchyard_plan::gtid::GtidSet;
use switchyard_plan::versions::ServerVersion;

/// What a server said when it refused a statement: its error number, SQLSTATE and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    /// The server's error number (`1045`, `1238`, ...).
    pub code: u16,
    /// The SQLSTATE, when the server sent one.
    pub sqlstate: Option<String>,
    /// The server's message.
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlstate {
            Some(state) => write!(f, "error {} ({}): {}", self.code, state, self.message),
            None => write!(f, "error {}: {}", self.code, self.message),
        }
    }
}

/// Why an operation on an instance failed.
///
/// Every variant names the instance (`name (host:port)`) and the purpose of the statement
/// that failed, such as `"fence the old primary"`; variants that come from the server carry its
/// error number and message. No variant ever holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing listens at the instance's address: the TCP connection was refused.
    #[error(
        "{instance}: cannot {purpose}: connection refused, the server is down or not listening"
    )]
    Down {
        /// The instance.
        instance: String,
        /// What the operation was for.
        purpose: &'static str,
    },
    /// The host cannot be reached: no route, a name that does not resolve, or a TCP
    /// connection that was not accepted in time.
    #[error("{instance}: cannot {purpose}: host unreachable: {detail}")]
    Unreachable {
        /// The instance.
        instance: String,
        /// What the operation was for.
        purpose: &'static str,
        /// What the network stack said.
        detail: String,
    },
    /// The TCP connection was accepted but the server did not complete the handshake in time:
    /// it is hung, overloaded or paused (`SIGSTOP`).
    #[error(
        "{instance}: cannot {purpose}: the server accepted the connection but did not answer within {waited:?} (hung or paused)"
    )]
    NotResponding {
        /// The instance.
        instance: String,
        /// What the operation was for.
        purpose: &'static str,
        /// How long the handshake was given.
        waited: Duration,
    },
    /// The server refused the operator account's credentials.
    #[error("{instance}: cannot {purpose}: the server refused the operator account: {server}")]
    AccessDenied {
        /// The instance.
        instance: String,
        /// What the operation was for.
        purpose: &'static str,
        /// What the server said.
        server: ServerError,
    },
    /// A statement did not finish in time on a connected server: the server stopped answering
    /// (paused mid-statement) or the statement waited on a lock.
    #[error(
        "{instance}: {purpose}: no answer within {waited:?} (the server is hung or paused, or the statement waits on a lock)"
    )]
    Timeout {
        /// The instance.
        instance: String,
        /// What the statement was for.
        purpose: &'static str,
        /// How long the statement was given.
        waited: Duration,
    },
    /// The server refused a statement.
    #[error("{instance}: {purpose} failed: {server}")]
    Statement {
        /// The instance.
        instance: String,
        /// What the statement was for.
        purpose: &'static str,
        /// What the server said.
        server: ServerError,
    },
    /// The connection failed other than by refusal, timeout or credentials (TLS, a broken
    /// connection, a protocol error).
    #[error("{instance}: {purpose}: connection failed: {detail}")]
    Connection {
        /// The instance.
        instance: String,
        /// What the operation was for.
        purpose: &'static str,
        /// What failed.
        detail: String,
    },
    /// The server answered something this client cannot interpret.
    #[error("{instance}: {purpose}: unexpected answer from the server: {detail}")]
    UnexpectedAnswer {
        /// The instance.
        instance: String,
        /// What the statement was for.
        purpose: &'static str,
        /// What was unexpected.
        detail: String,
    },
    /// The server runs a product or version this client does not drive.
    #[error(
        "{instance}: {version} is not supported: switchyard drives MySQL 8.0.23 and later and MariaDB 10.5 and later"
    )]
    UnsupportedVersion {
        /// The instance.
        instance: String,
        /// What the server reported.
        version: ServerVersion,
    },
    /// A replica did not execute the wanted transactions before its deadline.
    #[error(
        "{instance}: {purpose}: has not executed {missing} within {waited:?} (it lags or its applier is stopped)"
    )]
    Lagging {
        /// The replica.
        instance: String,
        /// What the wait was for.
        purpose: &'static str,
        /// The transactions it had not executed when last asked (or the whole target).
        missing: GtidSet,
        /// How long it was given.
        waited: Duration,
    },
    /// A replica's applier is stopped (with the server's error, or by hand) while it still
    /// has received transactions to execute: waiting longer would not help.
    #[error(
        "{instance}: {purpose}: the applier is stopped ({}) with {missing} received and not executed; fix the error and start replication, or choose another replica",
        if *errno == 0 { "without an error".to_owned() } else { format!("error {errno}: {message}") }
    )]
    ApplierStopped {
        /// The replica.
        instance: String,
        /// What the wait was for.
        purpose: &'static str,
        /// `Last_SQL_Errno` (0 when it was stopped without an error).
        errno: u32,
        /// `Last_SQL_Error`.
        message: String,
        /// The received transactions it has not executed.
        missing: GtidSet,
    },
    /// A transaction on the primary has been open longer than the policy allows.
    #[error(
        "{instance}: a transaction has been open {seconds} s (thread {thread_id}), longer than the {limit} s allowed for a switchover; commit or end it, or raise the limit"
    )]
    LongTransaction {
        /// The instance.
        instance: String,
        /// The server's thread (connection) id running it.
        thread_id: u64,
        /// How long it has been open.
        seconds: u64,
        /// The policy's limit.
        limit: u64,
    },
    /// The candidate cannot take over: it does not replicate from the old primary, has a
    /// stopped or failing thread, or has transactions the old primary lacks.
    #[error("{instance}: not ready to become the primary: {reason}")]
    CandidateNotReady {
        /// The candidate.
        instance: String,
        /// Why.
        reason: String,
    },
    /// Something committed on a fenced primary: its GTID position moved after the fence.
    #[error(
        "{instance}: the fence did not hold: the GTID position moved from {before} to {after} after the fence"
    )]
    FenceBreached {
        /// The fenced instance.
        instance: String,
        /// The position read right after the fence.
        before: GtidSet,
        /// The position read later.
        after: GtidSet,
    },
    /// A fence found commits of a semi-synchronous primary waiting for an acknowledgement
    /// that no replica is connected to give (a failed primary that runs again after its
    /// replicas were detached). No statement can end those commits without risk: a closed
    /// connection's commit may still be reported committed to its client (MariaDB), and
    /// turning semi-synchronous replication off acknowledges them. The server must be stopped
    /// at once (`SIGKILL`, or its pod deleted without a grace period); it restarts read-only.
    /// Nothing was changed on the server.
    #[error(
        "{instance}: {waiting} commit(s) wait for a semi-synchronous acknowledgement that no replica is connected to give; ending them by SQL could report them committed to their clients: stop the server at once (SIGKILL), it restarts read-only"
    )]
    UnacknowledgeableCommits {
        /// The instance.
        instance: String,
        /// How many client threads were waiting when it was seen.
        waiting: u32,
    },
    /// An argument was refused before anything was sent to a server.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The step sink refused to record a switchover step.
    #[error("could not record the switchover step {step}: {detail}")]
    StepNotRecorded {
        /// The step's name.
        step: &'static str,
        /// What the sink said.
        detail: String,
    },
    /// A switchover stopped before promoting the candidate. When `fence_lifted` is true the
    /// old primary takes writes again.
    #[error(
        "switchover from {old} to {new} abandoned before promotion ({}): {source}",
        if *fence_lifted { "the old primary takes writes again" } else { "the fence could NOT be lifted, the old primary is still read-only" }
    )]
    SwitchoverAbandoned {
        /// The old primary.
        old: String,
        /// The candidate.
        new: String,
        /// Whether the old primary was made writable again.
        fence_lifted: bool,
        /// Why the fence could not be lifted, when it could not.
        unfence_error: Option<Box<Error>>,
        /// Why the switchover stopped.
        #[source]
        source: Box<Error>,
    },
    /// A switchover promoted the candidate but could not repoint every other instance. The new
    /// primary takes writes; the listed instances still need repointing.
    #[error("switchover to {new} done, but {} instance(s) could not be repointed: {first}", failed.len())]
    RepointIncomplete {
        /// The new primary.
        new: String,
        /// The instances that were not repointed, with why.
        failed: Vec<(String, Error)>,
        /// The first failure, for the message.
        first: String,
    },
}

impl Error {
    /// A bounded label for metrics and event reasons (no names, no free text).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Down { .. } => "down",
            Error::Unreachable { .. } => "unreachable",
            Error::NotResponding { .. } => "not_responding",
            Error::AccessDenied { .. } => "access_denied",
            Error::Timeout { .. } => "timeout",
            Error::Statement { server, .. } => match server.code {
                1205 => "lock_wait_timeout",
                1290 | 1836 => "read_only",
                1227 | 1142 | 1044 => "privilege",
                // ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): an ALGORITHM or LOCK the
                // server cannot honour for that change.
                1845 | 1846 => "alter_not_supported",
                _ => "statement",
            },
            Error::Connection { .. } => "connection",
            Error::UnexpectedAnswer { .. } => "unexpected_answer",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::Lagging { .. } => "lagging",
            Error::ApplierStopped { .. } => "applier_stopped",
            Error::LongTransaction { .. } => "long_transaction",
            Error::CandidateNotReady { .. } => "candidate_not_ready",
            Error::FenceBreached { .. } => "fence_breached",
            Error::UnacknowledgeableCommits { .. } => "unacknowledgeable_commits",
            Error::InvalidInput { .. } => "invalid_input",
            Error::StepNotRecorded { .. } => "step_not_recorded",
            Error::SwitchoverAbandoned { .. } => "switchover_abandoned",
            Error::RepointIncomplete { .. } => "repoint_incomplete",
        }
    }

    /// The server's error, when the server refused a statement or the credentials.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Statement { server, .. } | Error::AccessDenied { server, .. } => Some(server),
            _ => None,
        }
    }
}
