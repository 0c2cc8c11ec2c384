//! The testbed's error type: one variant per failing operation, each naming
//! the server, port, path or command involved and what went wrong.
//!
//! Passwords never appear here: SQL errors carry the purpose of the statement,
//! not its text.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can fail while fetching, preparing or running servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("create directory", "copy", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Taking a cross-process lock file failed.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A program could not be started at all.
    #[error("cannot run {program} ({what}): {source}")]
    Spawn {
        /// What the program was started for.
        what: String,
        /// The program (or loader) that failed to start.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `apt-get update` in a suite's isolated apt root failed.
    #[error("apt-get update for Debian {suite} failed ({status}); apt said: {output}")]
    AptUpdate {
        /// The Debian suite.
        suite: String,
        /// The exit status.
        status: String,
        /// The end of apt's output.
        output: String,
    },
    /// `apt-get install --download-only` failed (a package name that does not
    /// exist in the suite, a signature that does not verify, no network).
    #[error(
        "apt-get install --download-only {packages} from Debian {suite} failed ({status}); apt said: {output}"
    )]
    AptDownload {
        /// The Debian suite.
        suite: String,
        /// The packages asked for.
        packages: String,
        /// The exit status.
        status: String,
        /// The end of apt's output.
        output: String,
    },
    /// `dpkg -x` of a downloaded package failed.
    #[error("dpkg -x {deb} failed ({status}): {output}")]
    Unpack {
        /// The .deb file.
        deb: PathBuf,
        /// The exit status.
        status: String,
        /// The end of dpkg's output.
        output: String,
    },
    /// A file the testbed needs is missing from an unpacked server root.
    #[error("{what} not found in {root} (looked for {looked_for})")]
    Missing {
        /// What was looked for ("dynamic loader", "server binary", ...).
        what: &'static str,
        /// The unpacked root.
        root: PathBuf,
        /// The candidates that were tried.
        looked_for: String,
    },
    /// The server binary's version could not be read.
    #[error("cannot read the version of {program}: {detail}")]
    Version {
        /// The server binary.
        program: PathBuf,
        /// What it printed or why it failed.
        detail: String,
    },
    /// Initializing a template data directory failed.
    #[error(
        "initializing the {server} template data directory in {datadir} failed ({status}); log: {log}"
    )]
    Bootstrap {
        /// Which server ("MariaDB 10.11.14").
        server: String,
        /// The data directory being initialized.
        datadir: PathBuf,
        /// The exit status.
        status: String,
        /// The log file with the server's output.
        log: PathBuf,
    },
    /// A server process did not become ready (it exited or the deadline passed).
    #[error("instance {instance} (port {port}) did not start: {detail}; log: {log}")]
    Start {
        /// The instance name.
        instance: String,
        /// The instance's port.
        port: u16,
        /// What happened (exit status, last log lines, or the deadline).
        detail: String,
        /// The instance's log file.
        log: PathBuf,
    },
    /// A server process did not stop by its deadline.
    #[error("instance {instance} (port {port}, pid {pid}) did not stop within {waited:?} ({how})")]
    Stop {
        /// The instance name.
        instance: String,
        /// The instance's port.
        port: u16,
        /// The process id.
        pid: u32,
        /// How it was asked to stop.
        how: &'static str,
        /// How long the testbed waited.
        waited: Duration,
    },
    /// An operation needs a running server and the instance is stopped, or
    /// the reverse.
    #[error("instance {instance} (port {port}): {detail}")]
    State {
        /// The instance name.
        instance: String,
        /// The instance's port.
        port: u16,
        /// What state it is in and what was asked.
        detail: String,
    },
    /// Sending a signal to a server process failed.
    #[error("sending {signal} to instance {instance} (pid {pid}) failed: {source}")]
    Signal {
        /// The instance name.
        instance: String,
        /// The process id.
        pid: u32,
        /// The signal name.
        signal: &'static str,
        /// The underlying error.
        source: nix::Error,
    },
    /// A statement run by the testbed failed.
    #[error("instance {instance} (port {port}): {purpose} failed: {source}")]
    Sql {
        /// The instance name.
        instance: String,
        /// The instance's port.
        port: u16,
        /// What the statement was for (never the statement text, which may
        /// hold a password).
        purpose: &'static str,
        /// The driver's error (server error number and message).
        source: sqlx::Error,
    },
    /// Waiting for a condition on a server ran past its deadline.
    #[error("instance {instance} (port {port}): {condition} not reached within {waited:?}: {last}")]
    Timeout {
        /// The instance name.
        instance: String,
        /// The instance's port.
        port: u16,
        /// The condition waited for.
        condition: &'static str,
        /// How long the testbed waited.
        waited: Duration,
        /// The last state observed.
        last: String,
    },
    /// `mariadb-upgrade` failed.
    #[error("mariadb-upgrade on instance {instance} (port {port}) failed ({status}); log: {log}")]
    Upgrade {
        /// The instance name.
        instance: String,
        /// The instance's port.
        port: u16,
        /// The exit status.
        status: String,
        /// The file with its output.
        log: PathBuf,
    },
    /// No free loopback port was found.
    #[error("no free loopback port in {range} after {tried} tries")]
    Ports {
        /// The range searched.
        range: String,
        /// How many ports were tried.
        tried: usize,
    },
    /// More servers were asked for than the testbed allows at once, or no
    /// slot freed up in time.
    #[error(
        "cannot run {wanted} more servers (cap {cap}, SWITCHYARD_TESTBED_MAX_SERVERS): {detail}"
    )]
    ServerCap {
        /// Servers asked for.
        wanted: usize,
        /// The cap.
        cap: usize,
        /// Why it failed.
        detail: String,
    },
    /// Creating or looking up the unprivileged system user that Galera
    /// servers run as failed.
    #[error("system user {user}: {detail}")]
    SystemUser {
        /// The user name.
        user: String,
        /// What failed.
        detail: String,
    },
    /// `nft` failed to set up or remove a network cut ([`crate::netcut`]).
    #[error("network cut: {what} failed: {detail}")]
    Firewall {
        /// The `nft` command.
        what: String,
        /// Its exit status and what it said.
        detail: String,
    },
    /// A blocking step run on a worker thread (fetch, template, copy)
    /// panicked or was cancelled.
    #[error("{what} did not finish: {detail}")]
    Task {
        /// The step.
        what: String,
        /// The panic or cancellation.
        detail: String,
    },
    /// The operation does not apply to this server or cluster.
    #[error("{detail}")]
    Unsupported {
        /// What was asked and why it does not apply.
        detail: String,
    },
}

impl Error {
    /// A bounded, stable label for the kind of failure, fit for metric labels
    /// and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Lock { .. } => "lock",
            Error::Spawn { .. } => "spawn",
            Error::AptUpdate { .. } => "apt_update",
            Error::AptDownload { .. } => "apt_download",
            Error::Unpack { .. } => "unpack",
            Error::Missing { .. } => "missing_file",
            Error::Version { .. } => "version",
            Error::Bootstrap { .. } => "bootstrap",
            Error::Start { .. } => "start",
            Error::Stop { .. } => "stop",
            Error::State { .. } => "state",
            Error::Signal { .. } => "signal",
            Error::Sql { .. } => "sql",
            Error::Timeout { .. } => "timeout",
            Error::Upgrade { .. } => "upgrade",
            Error::Ports { .. } => "ports",
            Error::ServerCap { .. } => "server_cap",
            Error::SystemUser { .. } => "system_user",
            Error::Firewall { .. } => "firewall",
            Error::Task { .. } => "task",
            Error::Unsupported { .. } => "unsupported",
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// The testbed's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The last `lines` lines of `text`, for error messages.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join(" | ")
}

/// The last lines of a log file, or a note saying it could not be read.
pub(crate) fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), lines),
        Err(e) => format!("(log {} unreadable: {e})", path.display()),
    }
}
