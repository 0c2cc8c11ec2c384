//! The image builder's error type: one variant per failing operation, each naming the
//! file, package set or program involved.

use std::path::PathBuf;

/// Everything that can fail while building, unpacking or checking an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fetching the Debian packages (the base, skopeo) failed.
    #[error("cannot fetch {what} from Debian's archive: {source}")]
    Fetch {
        /// The package set ("the image base", "skopeo").
        what: &'static str,
        /// What the fetch said.
        source: Box<switchyard_testbed::Error>,
    },
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write the layer", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The binary to package is missing or not an x86-64 Linux executable.
    #[error(
        "{path} is not an x86-64 Linux executable ({reason}): build it with `cargo build -p switchyard`"
    )]
    NotAnExecutable {
        /// The binary given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The binary does not run on the base's C library (built against a newer glibc than
    /// the base's Debian suite has, or linked to a library the base lacks).
    #[error(
        "{path} does not run on the image's base (Debian {suite}'s C library): `--version` {status}: {output}; \
         build it on a system whose glibc is not newer than the base's"
    )]
    DoesNotRunOnBase {
        /// The binary.
        path: PathBuf,
        /// The base's Debian suite.
        suite: String,
        /// How it ended.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// The image reference is not usable as a name.
    #[error(
        "{reference:?} is not an image reference: give one such as ghcr.io/owner/switchyard:0.1.0"
    )]
    Reference {
        /// The reference given.
        reference: String,
    },
    /// An archive to unpack is not one this crate writes (no `manifest.json`, a blob whose
    /// digest differs from its name, an entry outside the root).
    #[error("{path} is not a usable image archive: {reason}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// A bounded name for the kind of failure, for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Fetch { .. } => "fetch",
            Error::Io { .. } => "io",
            Error::NotAnExecutable { .. } => "not_an_executable",
            Error::DoesNotRunOnBase { .. } => "does_not_run_on_base",
            Error::Reference { .. } => "reference",
            Error::Archive { .. } => "archive",
            Error::Spawn { .. } => "spawn",
        }
    }

    /// A closure wrapping an I/O error for `map_err`.
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

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
