//! The kubelet's errors: one variant per failing operation, each naming what failed and why.

use std::path::PathBuf;

/// What went wrong in the simulated kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host program the kubelet needs is missing (it installs nothing itself).
    #[error(
        "the simulated kubelet needs `{program}` (Debian package {package}); install it with \
         `apt-get install {package}`"
    )]
    MissingTool {
        /// The program.
        program: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// The kubelet must run as root (network namespaces, mounts, chroot).
    #[error("the simulated kubelet must run as root (it creates network namespaces and mounts)")]
    NotRoot,
    /// A host command failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// A host command could not be started.
    #[error("could not run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error("could not {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Every private subnet the kubelet may use is taken by other kubelets or overlaps an
    /// address of this machine.
    #[error("no free private subnet for the pod network (10.213.0.0/16 is used or taken)")]
    NoSubnet,
    /// Every pod address of the kubelet's subnet is in use.
    #[error("no free pod address left in {subnet}")]
    NoAddress {
        /// The subnet.
        subnet: String,
    },
    /// An image the kubelet cannot map to a root file system.
    #[error("image `{image}`: {reason}")]
    Image {
        /// The image reference.
        image: String,
        /// Why it cannot be run.
        reason: String,
    },
    /// The pod uses something the simulated kubelet does not implement.
    #[error("pod {pod}: {what} is not supported by the simulated kubelet")]
    Unsupported {
        /// The pod (`namespace/name`).
        pod: String,
        /// The feature.
        what: String,
    },
    /// A reference of the pod (ConfigMap, Secret, claim, key) cannot be resolved yet.
    #[error("pod {pod}: {what}")]
    Unresolved {
        /// The pod (`namespace/name`).
        pod: String,
        /// What is missing.
        what: String,
    },
    /// The fake API refused or failed a request.
    #[error("API request ({what}) failed: {source}")]
    Api {
        /// The request.
        what: String,
        /// The client's error.
        source: Box<kube::Error>,
    },
    /// No pod by that name runs here.
    #[error("no pod {pod} runs on the simulated kubelet")]
    NoSuchPod {
        /// The pod (`namespace/name`).
        pod: String,
    },
    /// An RBAC manifest that cannot be read.
    #[error("RBAC manifest {file}: {reason}")]
    Manifest {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// A bounded category for logs and assertions.
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingTool { .. } => "missing_tool",
            Error::NotRoot => "not_root",
            Error::Command { .. } => "command",
            Error::Spawn { .. } => "spawn",
            Error::Io { .. } => "io",
            Error::NoSubnet => "no_subnet",
            Error::NoAddress { .. } => "no_address",
            Error::Image { .. } => "image",
            Error::Unsupported { .. } => "unsupported",
            Error::Unresolved { .. } => "unresolved",
            Error::Api { .. } => "api",
            Error::NoSuchPod { .. } => "no_such_pod",
            Error::Manifest { .. } => "manifest",
        }
    }

    /// A closure turning an I/O error on `path` into an [`Error::Io`].
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    /// A closure turning a client error into an [`Error::Api`].
    pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api {
            what,
            source: Box::new(source),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
