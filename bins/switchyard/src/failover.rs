//! `switchyard failover CLUSTER --to N --state DIR [--accept-data-loss]`: a forced failover of
//! a local cluster's failed primary to instance N.
//!
//! The request goes into the engine's record in the cluster's state file (with its
//! compare-and-swap), and the engine that runs the cluster decides it like any failover
//! (`FailoverPolicy::forced_to`, through `switchyard_plan::decide::forced_failover`): no
//! detection window or corroboration is waited for, but the instance must answer, must not
//! hold transactions the primary lacked, and the failover must be proven lossless unless
//! `--accept-data-loss` is given. This command then waits for the engine's answer: the
//! promotion (exit 0) or the engine's refusal, printed as it gave it (exit 2). What is
//! checked before anything is written: that N is an instance of the cluster, not its primary
//! nor quarantined (exit 64), and that the engine sees the primary failing (a working primary
//! is moved by a switchover; exit 2). Nothing is written on a refusal of those checks.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard_local::state::StateFile;
use switchyard_plan::record::{FailoverRequest, Record};
use switchyard_plan::topology::Timestamp;

use crate::exit::{self, Exit};

/// Arguments of `switchyard failover`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cluster's name (as its operator calls it; shown in messages).
    cluster: String,
    /// The ordinal of the instance to promote.
    #[arg(long)]
    to: u32,
    /// The state directory of the local cluster (it holds switchyard-state.json).
    #[arg(long)]
    state: PathBuf,
    /// Fail over even when no proof can be made that no acknowledged write is lost (an
    /// asynchronous primary, or too few replicas answer).
    #[arg(long)]
    accept_data_loss: bool,
    /// How long to wait for the engine's answer, seconds.
    #[arg(long, default_value_t = 60)]
    wait_s: u64,
}

/// What became of the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The engine promoted the instance.
    Promoted {
        /// The failed primary.
        from: u32,
        /// Whether the engine recorded it lossless.
        lossless: bool,
    },
    /// The request was refused, by this command's checks or by the engine.
    Refused(String),
}

/// Why no request could be made or answered.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// The request names something that does not exist or cannot take over.
    #[error("{0}")]
    Invalid(String),
    /// The state file could not be read or written.
    #[error("{0}")]
    State(String),
    /// The engine gave no answer in time.
    #[error(
        "no answer from the engine within {0:?}: is an engine running the cluster? (the request \
         stays in the record until it is answered)"
    )]
    NoAnswer(Duration),
}

/// Milliseconds since the Unix epoch, as the local runtime's clock counts.
fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// Checks the request against the state file and writes it into the record; returns when
/// it was asked for, or the refusal.
pub fn request(
    state: &StateFile,
    to: u32,
    accept_data_loss: bool,
) -> Result<Result<Timestamp, String>, FailoverError> {
    let io = |e: switchyard_local::Error| FailoverError::State(e.to_string());
    loop {
        let doc = state.read().map_err(io)?;
        let cluster = &doc.cluster;
        if !cluster.instances.contains_key(&to) {
            let known: Vec<String> = cluster.instances.keys().map(u32::to_string).collect();
            return Err(FailoverError::Invalid(format!(
                "there is no instance {to} (the cluster's instances are {}): name one with --to",
                known.join(", ")
            )));
        }
        if cluster.primary == to {
            return Err(FailoverError::Invalid(format!(
                "instance {to} is the primary already: --to names the replica that takes over"
            )));
        }
        if let Some(q) = doc.record.quarantined.get(&to) {
            return Err(FailoverError::Invalid(format!(
                "instance {to} is quarantined (it holds {} that the primary lacked): it never \
                 takes over; name another with --to",
                q.extra
            )));
        }
        if doc
            .record
            .detection
            .as_ref()
            .is_none_or(|d| d.primary != cluster.primary)
        {
            return Ok(Err(format!(
                "the primary, instance {}, answers: a failover replaces a primary that fails \
                 (ask for a switchover to move a working one)",
                cluster.primary
            )));
        }
        let at = now();
        let mut record: Record = doc.record.clone();
        record.seq += 1;
        record.failover_request = Some(FailoverRequest {
            to,
            accept_data_loss,
            at,
            refused: None,
        });
        match state.store_record(doc.record.seq, &record) {
            Ok(()) => return Ok(Ok(at)),
            // The engine stored its record meanwhile: check again on the new one.
            Err(switchyard_local::Error::Conflict { .. }) => continue,
            Err(e) => return Err(io(e)),
        }
    }
}

/// Waits until the engine promoted `to` after `at`, or refused the request.
pub fn wait_answer(
    state: &StateFile,
    to: u32,
    at: Timestamp,
    wait: Duration,
) -> Result<Answer, FailoverError> {
    let deadline = Instant::now() + wait;
    loop {
        let doc = state
            .read()
            .map_err(|e| FailoverError::State(e.to_string()))?;
        if let Some(f) = &doc.record.last_failover
            && f.to == to
            && f.promoted >= at
        {
            return Ok(Answer::Promoted {
                from: f.from,
                lossless: f.lossless,
            });
        }
        if let Some(request) = &doc.record.failover_request
            && request.at == at
            && let Some(why) = &request.refused
        {
            return Ok(Answer::Refused(why.clone()));
        }
        if Instant::now() >= deadline {
            return Err(FailoverError::NoAnswer(wait));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `switchyard failover`.
pub fn run(args: Args) -> Exit {
    let state = StateFile::in_dir(&args.state);
    if !state.exists() {
        return exit::invalid(format!(
            "{} has no state file ({}): --state is the local cluster's state directory",
            args.state.display(),
            state.path().display()
        ));
    }
    let answer = request(&state, args.to, args.accept_data_loss).and_then(|asked| match asked {
        Ok(at) => wait_answer(&state, args.to, at, Duration::from_secs(args.wait_s)),
        Err(why) => Ok(Answer::Refused(why)),
    });
    match answer {
        Ok(Answer::Promoted { from, lossless }) => {
            println!(
                "failed over {}: instance {} replaces instance {from}, {}",
                args.cluster,
                args.to,
                if lossless {
                    "lossless (every acknowledged write was on it)"
                } else {
                    "not proven lossless (data loss was accepted)"
                }
            );
            Exit::Ok
        }
        Ok(Answer::Refused(why)) => {
            eprintln!(
                "refused: no failover of {} to instance {}: {why}",
                args.cluster, args.to
            );
            Exit::Refused
        }
        Err(e @ FailoverError::Invalid(_)) => exit::invalid(e),
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Internal
        }
    }
}
