//! `switchyard metrics CLUSTER --state DIR`: a local cluster's failover metrics (failovers,
//! the last one's duration and losslessness, semi-synchronous replication's state) in the
//! Prometheus text format, read from its state file (see `switchyard_local::metrics`).

use std::path::PathBuf;

use switchyard_local::metrics::FailoverMetrics;
use switchyard_local::state::StateFile;

use crate::exit::{self, Exit};

/// Arguments of `switchyard metrics`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cluster's name (shown in messages).
    cluster: String,
    /// The state directory of the local cluster (it holds switchyard-state.json).
    #[arg(long)]
    state: PathBuf,
}

/// Runs `switchyard metrics`.
pub fn run(args: Args) -> Exit {
    let state = StateFile::in_dir(&args.state);
    if !state.exists() {
        return exit::invalid(format!(
            "{} has no state file ({}): --state is cluster {}'s state directory",
            args.state.display(),
            state.path().display(),
            args.cluster
        ));
    }
    match state.read() {
        Ok(doc) => {
            print!("{}", FailoverMetrics::of(&doc).prometheus());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: cannot read cluster {}'s state: {e}", args.cluster);
            Exit::Internal
        }
    }
}
