//! The agent's errors: one variant per failing operation, each naming what failed and what a
//! person needs to act, with a bounded [`Error::category`] for logs and metrics. No variant
//! carries a password: statements that hold one have their server message withheld.

use std::path::PathBuf;
use std::time::Duration;

/// Something the agent could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory operation failed.
    #[error("could not {what} {path}: {source}")]
    Io {
        /// The operation ("read", "create directory", ...).
        what: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// What the operator gave the agent (the instance ConfigMap, the Secret, a flag) is
    /// unusable. Nothing was changed.
    #[error("invalid {what} ({path}): {reason}")]
    InvalidConfig {
        /// What is invalid ("instance.json", "secret replication-password", ...).
        what: &'static str,
        /// Where it was read from.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The database image lacks something the agent needs at its known path.
    #[error("the database image under {root} has no {what}: looked for {looked_for}")]
    Image {
        /// What is missing.
        what: &'static str,
        /// The image's root.
        root: PathBuf,
        /// The paths tried.
        looked_for: String,
    },
    /// A program could not be started.
    #[error("could not run {program} ({what}): {source}")]
    Spawn {
        /// Why it was run.
        what: &'static str,
        /// The program.
        program: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A program the agent ran failed.
    #[error("{what} failed ({status}): {detail}")]
    Command {
        /// What the program was doing.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// The end of its output, or where its log is.
        detail: String,
    },
    /// The server process did not come up, or ended.
    #[error("the server {what}: {detail}")]
    Server {
        /// What happened ("exited", "did not start").
        what: &'static str,
        /// Details (exit status, last error).
        detail: String,
    },
    /// A statement on the local server failed.
    #[error("could not {purpose} on the local server: {source}")]
    Sql {
        /// What the statement was for.
        purpose: &'static str,
        /// The client's or server's error.
        source: sqlx::Error,
    },
    /// A statement holding a password failed; the server's message is withheld because it
    /// may quote the statement.
    #[error(
        "could not {purpose} on the local server: server error {code} (message withheld: the statement holds a password)"
    )]
    SqlWithheld {
        /// What the statement was for.
        purpose: &'static str,
        /// The server's error code.
        code: String,
    },
    /// Provisioning from a donor failed (the attempt is retried).
    #[error("provisioning from {donor} failed: {detail}")]
    Provision {
        /// The donor (`host:port`).
        donor: String,
        /// What failed.
        detail: String,
    },
    /// The data directory cannot be used by this server.
    #[error("the data directory {path} cannot be used: {reason}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `agent install` could not copy the binary with its loader and libraries.
    #[error("install: {detail}")]
    Install {
        /// What failed.
        detail: String,
    },
    /// The agent's HTTP endpoint could not listen.
    #[error("could not listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("{what} did not happen within {waited:?}: {last}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: Duration,
        /// The last thing seen.
        last: String,
    },
}

impl Error {
    /// A bounded category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::Image { .. } => "image",
            Error::Spawn { .. } => "spawn",
            Error::Command { .. } => "command",
            Error::Server { .. } => "server",
            Error::Sql { .. } | Error::SqlWithheld { .. } => "sql",
            Error::Provision { .. } => "provision",
            Error::DataDir { .. } => "data_dir",
            Error::Install { .. } => "install",
            Error::Listen { .. } => "listen",
            Error::Timeout { .. } => "timeout",
        }
    }

    /// Whether the error is bad input (exit code 64): the configuration the agent was given.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidConfig { .. })
    }

    /// `Error::Io` for `what` on `path`, as a `map_err` argument.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    /// `Error::Sql` or, when the server's message may quote one of `secrets`,
    /// `Error::SqlWithheld`.
    pub(crate) fn sql(purpose: &'static str, source: sqlx::Error, secrets: &[&str]) -> Error {
        let text = source.to_string();
        if secrets.iter().any(|s| !s.is_empty() && text.contains(s)) {
            let code = source
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
                .unwrap_or_else(|| "unknown".to_owned());
            return Error::SqlWithheld { purpose, code };
        }
        Error::Sql { purpose, source }
    }
}

/// The agent's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_message_quoting_a_secret_is_withheld() {
        let e = Error::sql(
            "create the accounts",
            sqlx::Error::Protocol("near 'IDENTIFIED BY s3cret'".into()),
            &["s3cret"],
        );
        let shown = e.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(e.category(), "sql");
        let e = Error::sql("read", sqlx::Error::Protocol("gone".into()), &["s3cret"]);
        assert!(e.to_string().contains("gone"));
    }
}
