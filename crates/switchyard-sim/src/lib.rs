//! Scenario simulations: a whole rollout on local servers under load, with
//! faults injected at chosen moments and an independent monitor of the
//! invariants, ending in a JSON summary.
//!
//! - [`scenario`]: the YAML model (cluster, load, change, policy, faults,
//!   expected outcome).
//! - [`fault`]: the runtime wrapper that fires faults before engine steps
//!   and around the engine's actions (and can kill the engine).
//! - [`monitor`]: the checks made from connections of the monitor's own.
//! - [`runner`]: starts the cluster and the load, drives engines until the
//!   rollout is done or halted, and builds the [`runner::SimReport`].

pub mod fault;
pub mod monitor;
pub mod runner;
pub mod scenario;

/// What can stop a simulation before it has a verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scenario file could not be read.
    #[error("could not read scenario {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The scenario is not valid YAML or not a valid scenario.
    #[error("scenario {name} is invalid: {message}")]
    Invalid {
        /// The scenario's file or name.
        name: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The local cluster failed.
    #[error("the local cluster failed to {what}: {source}")]
    Cluster {
        /// What it was doing.
        what: &'static str,
        /// The local runtime's error.
        #[source]
        source: switchyard_local::Error,
    },
    /// The load failed.
    #[error("the load failed: {0}")]
    Load(#[from] switchyard_testbed::load::LoadError),
    /// The final check of acknowledged writes could not run.
    #[error("the ledger check failed: {0}")]
    Check(#[from] switchyard_testbed::ledger::CheckError),
    /// The engine stopped with an error.
    #[error("the engine stopped: {0}")]
    Engine(#[from] switchyard_plan::engine::EngineError),
    /// The rollout neither finished nor halted in time.
    #[error("the rollout did not finish or halt within {0:?}")]
    Deadline(std::time::Duration),
    /// The summary could not be written.
    #[error("could not write the summary {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A bounded category, for labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Invalid { .. } => "invalid",
            Error::Cluster { .. } => "cluster",
            Error::Load(_) => "load",
            Error::Check(_) => "check",
            Error::Engine(_) => "engine",
            Error::Deadline(_) => "deadline",
            Error::Write { .. } => "write",
        }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
