//! What happened during a rollout, in order and timed: engine steps, runtime
//! operations, crashes and the supervisor's restarts.
//!
//! A [`Timeline`] belongs to a [`crate::LocalCluster`], so it outlives any one
//! engine or runtime (a killed engine's steps stay in it). Observers (the
//! progress display) see every event as it is pushed; summaries and reports
//! read the events afterwards.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use switchyard_plan::engine::StepOutcome;
use switchyard_plan::topology::{Observed, Revision};
use switchyard_plan::versions::Version;

/// A runtime operation on one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Taken out of the read pool.
    Drain,
    /// Returned to the read pool.
    Undrain,
    /// Shut down and started on a revision.
    Restart {
        /// The revision.
        revision: Revision,
        /// Its server version.
        version: Version,
        /// Whether the shutdown was slow.
        slow: bool,
    },
    /// Started again on its current revision after a crash.
    Recover,
    /// Waited until no transaction on the primary about to be fenced had been
    /// open too long.
    LongTransactions,
    /// The replicas of a primary about to be fenced were given a moment to
    /// catch up, so the fenced window is short.
    SettleReplicas,
    /// Fenced (no client commits on it).
    Fence,
    /// Made the writable primary again (fence and read-only lifted, a
    /// demotion's replication forgotten).
    Unfence,
    /// Made a replica of `source` before its promotion, replication not
    /// started, still fenced.
    Demote {
        /// The candidate it will follow.
        source: u32,
    },
    /// Waited until it had executed everything `from` committed.
    CatchUp {
        /// The old primary.
        from: u32,
    },
    /// Made the writable primary.
    Promote,
    /// Made to replicate from `source`.
    Repoint {
        /// The new source.
        source: u32,
    },
    /// Its receiver stopped (the first step of a failover).
    Detach,
    /// Waited until its applier had executed what its receiver received.
    ApplyReceived,
    /// Variables set online.
    ApplyVariables {
        /// The revision it runs afterwards.
        revision: Revision,
    },
    /// A schema change run locally (binary log off for the session).
    RunDdl {
        /// The change's id.
        change: String,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Drain => write!(f, "drain"),
            Op::Undrain => write!(f, "undrain"),
            Op::Restart {
                revision,
                version,
                slow,
            } => write!(
                f,
                "restart on {version} {revision}{}",
                if *slow { " (slow shutdown)" } else { "" }
            ),
            Op::Recover => write!(f, "recover"),
            Op::LongTransactions => write!(f, "wait for long transactions before the fence"),
            Op::SettleReplicas => write!(f, "let its replicas catch up before the fence"),
            Op::Fence => write!(f, "fence"),
            Op::Unfence => write!(f, "make it the writable primary again"),
            Op::Demote { source } => write!(f, "demote under {source} (replication not started)"),
            Op::CatchUp { from } => write!(f, "catch up with {from}"),
            Op::Promote => write!(f, "promote"),
            Op::Repoint { source } => write!(f, "replicate from {source}"),
            Op::Detach => write!(f, "stop its receiver"),
            Op::ApplyReceived => write!(f, "apply what it received"),
            Op::ApplyVariables { revision } => write!(f, "set variables online ({revision})"),
            Op::RunDdl { change } => write!(f, "run schema change {change}"),
        }
    }
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A named phase of a demo or scenario began (an upgrade, a change).
    Phase {
        /// The phase's name.
        name: String,
    },
    /// An operation began.
    OpStarted {
        /// The instance.
        ordinal: u32,
        /// The operation.
        op: Op,
    },
    /// An operation ended.
    OpFinished {
        /// The instance.
        ordinal: u32,
        /// The operation.
        op: Op,
        /// How long it took.
        took: Duration,
        /// The error, if it failed.
        error: Option<String>,
    },
    /// The engine finished a step.
    Step {
        /// What the step did.
        outcome: StepOutcome,
    },
    /// The cluster as the runtime observed it (passed to observers, not kept).
    Observed {
        /// The observation.
        observed: Observed,
    },
    /// `mariadb-upgrade` ran after a MariaDB major upgrade.
    Upgraded {
        /// The instance.
        ordinal: u32,
        /// How long it took.
        took: Duration,
        /// The error, if it failed.
        error: Option<String>,
    },
    /// A server process died without being asked to.
    Crashed {
        /// The instance.
        ordinal: u32,
        /// How the process ended (`signal: 9 (SIGKILL)`, `exit status: 1`),
        /// when it was reaped.
        status: Option<String>,
    },
    /// A server process was started (by a restart, a recovery or the
    /// supervisor).
    Started {
        /// The instance.
        ordinal: u32,
        /// The revision it was started on.
        revision: Revision,
        /// Who started it.
        by: StartedBy,
        /// The error, if it did not come up.
        error: Option<String>,
    },
}

/// Who started a server process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartedBy {
    /// The engine's restart onto a revision.
    Restart,
    /// The engine's recovery of a crashed instance.
    Recover,
    /// The supervisor, after a crash (as a kubelet would).
    Supervisor,
}

impl fmt::Display for StartedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartedBy::Restart => "restart",
            StartedBy::Recover => "recovery",
            StartedBy::Supervisor => "supervisor",
        })
    }
}

/// An event and when it happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed {
    /// When.
    pub at: Instant,
    /// What.
    pub event: Event,
}

/// Sees every event as it happens.
pub trait Observer: Send + Sync {
    /// Called for every event, on the task that caused it; keep it short.
    fn event(&self, at: Instant, event: &Event);
}

/// The ordered record of events of one cluster.
pub struct Timeline {
    start: Instant,
    events: Mutex<Vec<Timed>>,
    observers: Mutex<Vec<Arc<dyn Observer>>>,
}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline")
            .field("events", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// An empty timeline starting now.
    pub fn new() -> Self {
        Timeline {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            observers: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Timed>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the timeline started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Adds an observer that sees every later event.
    pub fn observe_with(&self, observer: Arc<dyn Observer>) {
        self.observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    /// Records `event` now and passes it to the observers. Observations are
    /// passed on but not kept.
    pub fn push(&self, event: Event) {
        let at = Instant::now();
        let observers = self
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for o in &observers {
            o.event(at, &event);
        }
        if !matches!(event, Event::Observed { .. }) {
            self.lock().push(Timed { at, event });
        }
    }

    /// Marks the start of a named phase.
    pub fn phase(&self, name: impl Into<String>) {
        self.push(Event::Phase { name: name.into() });
    }

    /// A copy of every kept event, oldest first.
    pub fn events(&self) -> Vec<Timed> {
        self.lock().clone()
    }

    /// How many times a server process was started successfully so far
    /// (restarts, recoveries and the supervisor's), per instance ordinal.
    pub fn starts(&self) -> std::collections::BTreeMap<u32, u32> {
        let mut out = std::collections::BTreeMap::new();
        for t in self.lock().iter() {
            if let Event::Started {
                ordinal,
                error: None,
                ..
            } = &t.event
            {
                *out.entry(*ordinal).or_insert(0) += 1;
            }
        }
        out
    }
}
