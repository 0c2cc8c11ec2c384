//! The reconciler's errors: one variant per failing operation, each with a bounded category.

use switchyard_plan::engine::EngineError;

/// A reconcile that could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading an object from the API server failed.
    #[error("could not read {what}: {source}")]
    Read {
        /// What was read.
        what: &'static str,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A server-side apply of a managed object failed.
    #[error("could not apply the {kind} {name}: {source}")]
    Apply {
        /// The object's kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Deleting an orphaned object failed.
    #[error("could not delete the orphaned {kind} {name}: {source}")]
    DeleteOrphan {
        /// The object's kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Writing the status failed (other than by a conflict).
    #[error("could not write the status: {0}")]
    WriteStatus(#[source] Box<kube::Error>),
    /// Someone else wrote the object since it was read: this reconcile stepped back.
    #[error("the MySQLCluster changed while it was reconciled; retrying with the new version")]
    Conflict,
    /// The credentials Secret is missing keys or holds values switchyard cannot use.
    #[error("the credentials Secret {secret} is unusable: {reason}")]
    Credentials {
        /// The Secret's name.
        secret: String,
        /// What is wrong (never a password).
        reason: String,
    },
    /// A bootstrap operation on an instance failed.
    #[error("bootstrap of instance {ordinal} failed: {message}")]
    Bootstrap {
        /// The instance.
        ordinal: u32,
        /// What failed.
        message: String,
    },
    /// Checking a configuration change or an upgrade against the servers could not complete
    /// (an instance did not answer): nothing changed, the check is retried.
    #[error("could not check the change against instance {ordinal}: {message}")]
    CheckChange {
        /// The instance.
        ordinal: u32,
        /// What failed.
        message: String,
    },
    /// The engine step failed.
    #[error("the engine step failed: {0}")]
    Engine(#[source] Box<EngineError>),
}

impl Error {
    /// A bounded category for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::DeleteOrphan { .. } => "delete-orphan",
            Error::WriteStatus(_) => "write-status",
            Error::Conflict => "conflict",
            Error::Credentials { .. } => "credentials",
            Error::Bootstrap { .. } => "bootstrap",
            Error::CheckChange { .. } => "check-change",
            Error::Engine(e) => match e.as_ref() {
                EngineError::Conflict => "conflict",
                other => other.category(),
            },
        }
    }

    /// Whether the error clears on a quick retry (a write conflict).
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Conflict => true,
            Error::Engine(e) => matches!(e.as_ref(), EngineError::Conflict),
            _ => false,
        }
    }
}

/// A failed status write as a reconcile error: a conflict steps back, anything else is
/// [`Error::WriteStatus`].
pub fn status_error(e: kube::Error) -> Error {
    if is_conflict(&e) {
        Error::Conflict
    } else {
        Error::WriteStatus(Box::new(e))
    }
}

/// Whether an API error is a 409 conflict.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
