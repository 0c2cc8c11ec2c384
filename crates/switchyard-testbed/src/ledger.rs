//! The ledger of acknowledged writes and the checker that proves none was
//! lost.
//!
//! A [`Ledger`] is filled by the [load](crate::load) while it runs: every
//! write the server acknowledged (with the time it was sent and the time the
//! acknowledgement arrived), every write whose outcome is unknown (the
//! connection broke after the statement was sent), and every error.
//! Times are offsets from the ledger's start ([`Ledger::start`]), in
//! microseconds, so a benchmark can place its own events (a switchover) on
//! the same axis with [`Ledger::offset_of`].
//!
//! A [`LedgerSnapshot`] holds the pure arithmetic: gaps between consecutive
//! acknowledged writes ([`LedgerSnapshot::longest_gap`],
//! [`LedgerSnapshot::gaps_between`], [`LedgerSnapshot::longest_gap_in`]),
//! latency percentiles and a throughput time series.
//!
//! [`check`] reads the table back from every instance once the load has
//! stopped: it waits (bounded) for each instance to converge, then reports
//! every acknowledged id that is missing on any instance.
//!
//! [`LedgerSnapshot::split_brain`] is the client-side check that two servers
//! never took writes at the same time: every acknowledged write carries the
//! `@@server_id` read in its own transaction, and two writes acknowledged by
//! different servers whose intervals (sent to acknowledged) overlap are
//! reported.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Row};

/// A write the server acknowledged: its autocommit `INSERT` returned OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedWrite {
    /// The row's primary key.
    pub id: u64,
    /// Index of the writer that made it.
    pub writer: u32,
    /// When the statement was sent, µs after the ledger's start.
    pub sent_us: u64,
    /// When the acknowledgement arrived, µs after the ledger's start.
    pub ack_us: u64,
    /// The `@@server_id` read in the write's own transaction: the server that
    /// acknowledged it (`None` when the writer did not read it).
    #[serde(default)]
    pub server_id: Option<u32>,
}

impl AckedWrite {
    /// Time from sending the statement to its acknowledgement, in µs.
    pub fn latency_us(&self) -> u64 {
        self.ack_us.saturating_sub(self.sent_us)
    }
}

/// What went wrong with a statement (or with getting a connection for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection could be made; no statement was sent.
    Connect,
    /// The server answered with an error: the row was not written.
    Rejected,
    /// The connection broke after the statement was sent: the outcome is
    /// unknown.
    Lost,
    /// No answer within the statement timeout: the outcome is unknown.
    Timeout,
}

impl ErrorKind {
    /// A bounded label (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Rejected => "rejected",
            Self::Lost => "lost",
            Self::Timeout => "timeout",
        }
    }

    /// Whether a statement had been sent and the commit may or may not have
    /// happened.
    pub fn outcome_unknown(self) -> bool {
        matches!(self, Self::Lost | Self::Timeout)
    }
}

/// One error as the load saw it (a writer's or a reader's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Index of the writer (or reader) that saw it.
    pub worker: u32,
    /// When it happened, µs after the ledger's start.
    pub at_us: u64,
    /// Its class.
    pub kind: ErrorKind,
    /// The server error number, for [`ErrorKind::Rejected`] and for
    /// connects the server refused.
    pub code: Option<u16>,
    /// The error text (never contains credentials: server messages name
    /// the user, not the password).
    pub message: String,
}

/// A write whose statement was sent but whose acknowledgement never came:
/// it may or may not be committed. It is never counted as acknowledged,
/// and its id is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownWrite {
    /// The row's primary key.
    pub id: u64,
    /// Index of the writer.
    pub writer: u32,
    /// When the statement was sent, µs after the ledger's start.
    pub sent_us: u64,
    /// When the failure was seen, µs after the ledger's start.
    pub failed_us: u64,
    /// [`ErrorKind::Lost`] or [`ErrorKind::Timeout`].
    pub kind: ErrorKind,
}

#[derive(Debug, Default)]
struct Inner {
    acked: Vec<AckedWrite>,
    unknown: Vec<UnknownWrite>,
    errors: Vec<ErrorRecord>,
    ended_us: Option<u64>,
}

/// The thread-safe record of a load's writes. Cheap to append to (one
/// short mutex hold per write).
#[derive(Debug)]
pub struct Ledger {
    start: Instant,
    start_unix_us: u64,
    inner: Mutex<Inner>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    /// A new, empty ledger whose time axis starts now.
    pub fn new() -> Self {
        let start_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, duration_us);
        Self {
            start: Instant::now(),
            start_unix_us,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instant the ledger's time axis starts at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The wall-clock start, µs since the Unix epoch (for reports).
    pub fn start_unix_us(&self) -> u64 {
        self.start_unix_us
    }

    /// The offset of `t` on the ledger's axis (zero if `t` is earlier).
    pub fn offset_of(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    /// Now, in µs after the ledger's start.
    pub fn now_us(&self) -> u64 {
        duration_us(self.start.elapsed())
    }

    /// Records an acknowledged write.
    pub fn record_ack(&self, write: AckedWrite) {
        self.lock().acked.push(write);
    }

    /// Records a write whose outcome is unknown.
    pub fn record_unknown(&self, write: UnknownWrite) {
        self.lock().unknown.push(write);
    }

    /// Records an error.
    pub fn record_error(&self, error: ErrorRecord) {
        self.lock().errors.push(error);
    }

    /// Marks the end of the load (closes the trailing gap); the first call
    /// wins.
    pub fn mark_end(&self) {
        let now = self.now_us();
        self.lock().ended_us.get_or_insert(now);
    }

    /// The most recently recorded acknowledged write, if any.
    pub fn last_acked(&self) -> Option<AckedWrite> {
        self.lock().acked.last().copied()
    }

    /// How many errors have been recorded so far.
    pub fn error_count(&self) -> usize {
        self.lock().errors.len()
    }

    /// How many writes have been acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.lock().acked.len()
    }

    /// A copy of everything recorded so far, acknowledged writes sorted by
    /// acknowledgement time.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let inner = self.lock();
        let mut snap = LedgerSnapshot {
            start_unix_us: self.start_unix_us,
            ended_us: inner.ended_us,
            acked: inner.acked.clone(),
            unknown: inner.unknown.clone(),
            errors: inner.errors.clone(),
        };
        drop(inner);
        snap.acked.sort_by_key(|w| (w.ack_us, w.id));
        snap.unknown.sort_by_key(|w| (w.failed_us, w.id));
        snap.errors.sort_by_key(|e| e.at_us);
        snap
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A stretch of time with no acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Start of the gap, µs after the ledger's start: the acknowledgement
    /// of `after_id`, or 0 for the gap before the first write.
    pub from_us: u64,
    /// End of the gap: the acknowledgement of `before_id`, or the end of
    /// the load for the trailing gap.
    pub to_us: u64,
    /// The acknowledged write that opens the gap (`None` at the start).
    pub after_id: Option<u64>,
    /// The acknowledged write that closes the gap (`None` at the end).
    pub before_id: Option<u64>,
}

impl Gap {
    /// The gap's length in µs.
    pub fn length_us(&self) -> u64 {
        self.to_us.saturating_sub(self.from_us)
    }

    /// The gap's length.
    pub fn length(&self) -> Duration {
        Duration::from_micros(self.length_us())
    }
}

/// Two writes acknowledged by different servers whose intervals (sent to
/// acknowledged) overlap: both servers took a write over the same stretch of
/// time, so both were writable at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// The write sent first.
    pub first: AckedWrite,
    /// A write sent before `first` was acknowledged, acknowledged by another
    /// server.
    pub second: AckedWrite,
}

/// What [`LedgerSnapshot::split_brain`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrain {
    /// How many writes overlap a write acknowledged by another server.
    pub overlapping: usize,
    /// The first few overlaps, in the order the second writes were sent.
    pub examples: Vec<Overlap>,
    /// Acknowledged writes per server id, in server id order.
    pub per_server: Vec<(u32, usize)>,
}

/// The id bits that hold a load's `run` (see [`crate::load::LoadConfig::run`]).
pub const RUN_SHIFT: u32 = 56;

/// Latency percentiles over a set of acknowledged writes (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many writes the figures cover.
    pub count: usize,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
}

impl LatencySummary {
    /// Percentiles of `latencies_us` (any order); all zero when empty.
    pub fn of(mut latencies_us: Vec<u64>) -> Self {
        latencies_us.sort_unstable();
        Self {
            count: latencies_us.len(),
            p50_us: percentile(&latencies_us, 50.0),
            p99_us: percentile(&latencies_us, 99.0),
            max_us: latencies_us.last().copied().unwrap_or(0),
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    // The rank is clamped to 1..=n, so the cast back is exact.
    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
    sorted[rank - 1]
}

/// One bucket of the throughput time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket start, µs after the ledger's start.
    pub start_us: u64,
    /// Writes acknowledged in the bucket.
    pub acknowledged: usize,
    /// Write errors seen in the bucket.
    pub errors: usize,
    /// 99th percentile latency of the bucket's acknowledged writes, µs (0
    /// when none).
    pub p99_latency_us: u64,
}

/// A frozen copy of a [`Ledger`], with the arithmetic over it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// The ledger's wall-clock start, µs since the Unix epoch.
    pub start_unix_us: u64,
    /// When the load ended, µs after the start, once it has.
    pub ended_us: Option<u64>,
    /// Acknowledged writes, sorted by acknowledgement time.
    pub acked: Vec<AckedWrite>,
    /// Writes with an unknown outcome, sorted by failure time.
    pub unknown: Vec<UnknownWrite>,
    /// Errors, sorted by time.
    pub errors: Vec<ErrorRecord>,
}

impl LedgerSnapshot {
    /// Builds a snapshot from parts (sorting them), for tests and for
    /// reports read back from disk.
    pub fn from_parts(
        mut acked: Vec<AckedWrite>,
        mut unknown: Vec<UnknownWrite>,
        mut errors: Vec<ErrorRecord>,
        ended_us: Option<u64>,
    ) -> Self {
        acked.sort_by_key(|w| (w.ack_us, w.id));
        unknown.sort_by_key(|w| (w.failed_us, w.id));
        errors.sort_by_key(|e| e.at_us);
        Self {
            start_unix_us: 0,
            ended_us,
            acked,
            unknown,
            errors,
        }
    }

    /// The same snapshot with only the writes of load `run` (ids
    /// `run·2^56 + ...`): the gaps of one load when others (direct writers)
    /// share the ledger.
    pub fn of_run(&self, run: u8) -> LedgerSnapshot {
        let ours = |id: u64| id >> RUN_SHIFT == u64::from(run);
        LedgerSnapshot {
            start_unix_us: self.start_unix_us,
            ended_us: self.ended_us,
            acked: self.acked.iter().filter(|w| ours(w.id)).copied().collect(),
            unknown: self
                .unknown
                .iter()
                .filter(|w| ours(w.id))
                .copied()
                .collect(),
            errors: self.errors.clone(),
        }
    }

    /// Writes acknowledged by two different servers in overlapping intervals
    /// (each write's interval runs from sending it to its acknowledgement,
    /// and its commit lies inside): two servers were writable at once. Writes
    /// without a server id are left out. Keeps at most `keep` examples.
    pub fn split_brain(&self, keep: usize) -> SplitBrain {
        let mut writes: Vec<&AckedWrite> = self
            .acked
            .iter()
            .filter(|w| w.server_id.is_some())
            .collect();
        writes.sort_by_key(|w| (w.sent_us, w.ack_us, w.id));
        let mut per_server = std::collections::BTreeMap::<u32, usize>::new();
        // Per server, the write sent so far with the latest acknowledgement.
        let mut latest = std::collections::BTreeMap::<u32, &AckedWrite>::new();
        let mut found = SplitBrain::default();
        for w in writes {
            let Some(server) = w.server_id else { continue };
            *per_server.entry(server).or_default() += 1;
            let other = latest
                .iter()
                .filter(|(s, o)| **s != server && o.ack_us > w.sent_us)
                .map(|(_, o)| *o)
                .next();
            if let Some(o) = other {
                found.overlapping += 1;
                if found.examples.len() < keep {
                    found.examples.push(Overlap {
                        first: *o,
                        second: *w,
                    });
                }
            }
            let slot = latest.entry(server).or_insert(w);
            if w.ack_us > slot.ack_us {
                *slot = w;
            }
        }
        found.per_server = per_server.into_iter().collect();
        found
    }

    /// Every gap between consecutive acknowledged writes, in time order,
    /// including the gap from the start to the first acknowledgement and,
    /// once the load has ended, from the last acknowledgement to the end.
    pub fn gaps(&self) -> Vec<Gap> {
        let mut gaps = Vec::with_capacity(self.acked.len() + 1);
        let mut from_us = 0;
        let mut after_id = None;
        for w in &self.acked {
            gaps.push(Gap {
                from_us,
                to_us: w.ack_us,
                after_id,
                before_id: Some(w.id),
            });
            from_us = w.ack_us;
            after_id = Some(w.id);
        }
        if let Some(end) = self.ended_us {
            gaps.push(Gap {
                from_us,
                to_us: end.max(from_us),
                after_id,
                before_id: None,
            });
        }
        gaps
    }

    /// The longest gap overall (see [`gaps`](Self::gaps)).
    pub fn longest_gap(&self) -> Option<Gap> {
        longest(self.gaps().into_iter())
    }

    /// The gaps that overlap the window `[from, to)` (on the ledger's axis),
    /// in time order. A gap that straddles a window edge is returned whole,
    /// so the gap around an event at time `t` is found with any window that
    /// contains `t`.
    pub fn gaps_between(&self, from: Duration, to: Duration) -> Vec<Gap> {
        let (from, to) = (duration_us(from), duration_us(to));
        self.gaps()
            .into_iter()
            .filter(|g| g.from_us < to && g.to_us > from)
            .collect()
    }

    /// The longest gap overlapping `window` (see
    /// [`gaps_between`](Self::gaps_between)).
    pub fn longest_gap_in(&self, window: Range<Duration>) -> Option<Gap> {
        longest(self.gaps_between(window.start, window.end).into_iter())
    }

    /// Latency percentiles over every acknowledged write.
    pub fn latency(&self) -> LatencySummary {
        LatencySummary::of(self.acked.iter().map(AckedWrite::latency_us).collect())
    }

    /// Acknowledged writes per second between the start and the end of the
    /// load (or the last acknowledgement if it has not ended).
    pub fn write_rate(&self) -> f64 {
        let end = self
            .ended_us
            .or_else(|| self.acked.last().map(|w| w.ack_us))
            .unwrap_or(0);
        if end == 0 {
            return 0.0;
        }
        self.acked.len() as f64 / (end as f64 / 1e6)
    }

    /// The throughput time series in buckets of `bucket` (at least 1 µs),
    /// from the start to the end of the load (or the last event).
    pub fn time_series(&self, bucket: Duration) -> Vec<Bucket> {
        let width = duration_us(bucket).max(1);
        let last_event = self
            .acked
            .iter()
            .map(|w| w.ack_us)
            .chain(self.errors.iter().map(|e| e.at_us))
            .max();
        let Some(end) = last_event.max(self.ended_us) else {
            return Vec::new();
        };
        let n = usize::try_from(end / width + 1).unwrap_or(usize::MAX);
        let index = |t: u64| usize::try_from(t / width).unwrap_or(usize::MAX);
        let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut errors = vec![0usize; n];
        for w in &self.acked {
            if let Some(b) = latencies.get_mut(index(w.ack_us)) {
                b.push(w.latency_us());
            }
        }
        for e in &self.errors {
            if let Some(b) = errors.get_mut(index(e.at_us)) {
                *b += 1;
            }
        }
        latencies
            .into_iter()
            .zip(errors)
            .zip(0u64..)
            .map(|((lat, errors), i)| {
                let summary = LatencySummary::of(lat);
                Bucket {
                    start_us: i * width,
                    acknowledged: summary.count,
                    errors,
                    p99_latency_us: summary.p99_us,
                }
            })
            .collect()
    }
}

fn longest(gaps: impl Iterator<Item = Gap>) -> Option<Gap> {
    // The earliest of equally long gaps.
    gaps.fold(None, |best: Option<Gap>, g| match best {
        Some(b) if b.length_us() >= g.length_us() => Some(b),
        _ => Some(g),
    })
}

/// Errors from [`check`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// Connecting to an instance failed.
    #[error("check: cannot connect to instance {instance}: {source}")]
    Connect {
        /// The instance's name.
        instance: String,
        /// The driver's error (it carries no password).
        #[source]
        source: sqlx::Error,
    },
    /// A query on an instance failed.
    #[error("check: {purpose} failed on instance {instance}: {source}")]
    Query {
        /// The instance's name.
        instance: String,
        /// What the query was for.
        purpose: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An instance's connection URL does not parse.
    #[error(
        "check: the connection URL of instance {instance} does not parse (expected mysql://user:password@host:port)"
    )]
    BadUrl {
        /// The instance's name.
        instance: String,
    },
    /// The table name is not `database.table` made of plain identifier
    /// characters.
    #[error("check: table name {0:?} must be `database.table` with letters, digits, `_` or `$`")]
    BadTable(String),
}

impl CheckError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "check_connect",
            Self::Query { .. } => "check_query",
            Self::BadUrl { .. } => "check_bad_url",
            Self::BadTable(..) => "check_bad_table",
        }
    }
}

/// One instance to check: a name for the report and how to connect.
#[derive(Clone)]
pub struct CheckTarget {
    /// A name for the report (for example the instance's ordinal).
    pub name: String,
    /// How to connect (any account that can read the table).
    pub options: MySqlConnectOptions,
}

impl std::fmt::Debug for CheckTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // MySqlConnectOptions' Debug shows the password: leave it out.
        f.debug_struct("CheckTarget")
            .field("name", &self.name)
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .finish_non_exhaustive()
    }
}

impl CheckTarget {
    /// A target for a testbed instance, read as `account` (its name is the
    /// instance's name).
    pub fn of(instance: &crate::Instance, account: &crate::Account) -> Self {
        Self {
            name: instance.name().to_owned(),
            options: instance.connect_options(account),
        }
    }

    /// A target from a name and a `mysql://user:password@host:port` URL.
    pub fn from_url(name: impl Into<String>, url: &str) -> Result<Self, CheckError> {
        let name = name.into();
        // The parse error may quote the URL, password included: drop it.
        let options = url
            .parse::<MySqlConnectOptions>()
            .map_err(|_| CheckError::BadUrl {
                instance: name.clone(),
            })?;
        Ok(Self { name, options })
    }
}

/// How [`check`] reads the instances.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckConfig {
    /// The table, `database.table`. Default `app.ledger`.
    pub table: String,
    /// Give up waiting for an instance to converge after this long (from
    /// the start of the check). Default 30 s.
    pub convergence_deadline: Duration,
    /// An instance that still misses acknowledged rows is considered
    /// settled when neither its row count nor its missing set has changed
    /// for this long. Default 1 s.
    pub settle: Duration,
    /// Pause between polls. Default 50 ms.
    pub poll_interval: Duration,
    /// Ids per `IN (...)` query. Default 1000.
    pub batch: usize,
    /// Bucket width of the time series. Default 100 ms.
    pub bucket: Duration,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            table: "app.ledger".to_owned(),
            convergence_deadline: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            poll_interval: Duration::from_millis(50),
            batch: 1000,
            bucket: Duration::from_millis(100),
        }
    }
}

/// What [`check`] found on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCheck {
    /// The instance's name.
    pub instance: String,
    /// Whether it had every acknowledged write before the deadline.
    pub converged: bool,
    /// How long the check waited for it, ms.
    pub waited_ms: u64,
    /// Rows in its table at the end.
    pub rows: u64,
    /// Acknowledged ids it lacks, ascending (empty when none).
    pub missing: Vec<u64>,
    /// How many of the unknown-outcome writes it holds (they did commit).
    pub unknown_outcome_present: usize,
}

/// The checker's verdict, serialisable for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Acknowledged writes.
    pub acknowledged: usize,
    /// Writes whose outcome is unknown (not counted as acknowledged).
    pub unknown_outcome: usize,
    /// Write errors of every kind.
    pub errors: usize,
    /// Per instance, the acknowledged ids it lacks (empty when none).
    pub missing: Vec<(String, Vec<u64>)>,
    /// Per instance details.
    pub instances: Vec<InstanceCheck>,
    /// The longest stretch without an acknowledged write.
    pub longest_gap: Option<Gap>,
    /// Write latency over the whole load.
    pub latency: LatencySummary,
    /// Acknowledged writes per second.
    pub write_rate: f64,
    /// Throughput per [`CheckConfig::bucket`].
    pub time_series: Vec<Bucket>,
}

impl CheckReport {
    /// Acknowledged writes missing, summed over instances.
    pub fn total_missing(&self) -> usize {
        self.missing.iter().map(|(_, ids)| ids.len()).sum()
    }

    /// Whether every instance holds every acknowledged write.
    pub fn no_lost_writes(&self) -> bool {
        self.total_missing() == 0
    }
}

/// Checks a stopped load: for each instance, waits until it holds every
/// acknowledged write, or until its table has stopped changing for
/// [`CheckConfig::settle`], or until [`CheckConfig::convergence_deadline`];
/// then reports the acknowledged ids it lacks. Instances are checked one
/// after another, all within the same deadline.
///
/// A row that is found once is not looked for again, so rows deleted while
/// the check runs are not noticed.
pub async fn check(
    ledger: &LedgerSnapshot,
    instances: &[CheckTarget],
    config: &CheckConfig,
) -> Result<CheckReport, CheckError> {
    let table = quote_table(&config.table)?;
    let deadline = Instant::now() + config.convergence_deadline;
    let acked: BTreeSet<u64> = ledger.acked.iter().map(|w| w.id).collect();
    let unknown: BTreeSet<u64> = ledger.unknown.iter().map(|w| w.id).collect();
    let mut checks = Vec::with_capacity(instances.len());
    for target in instances {
        checks.push(check_instance(target, &table, &acked, &unknown, deadline, config).await?);
    }
    Ok(CheckReport {
        acknowledged: ledger.acked.len(),
        unknown_outcome: ledger.unknown.len(),
        errors: ledger.errors.len(),
        missing: checks
            .iter()
            .map(|c| (c.instance.clone(), c.missing.clone()))
            .collect(),
        instances: checks,
        longest_gap: ledger.longest_gap(),
        latency: ledger.latency(),
        write_rate: ledger.write_rate(),
        time_series: ledger.time_series(config.bucket),
    })
}

async fn check_instance(
    target: &CheckTarget,
    table: &str,
    acked: &BTreeSet<u64>,
    unknown: &BTreeSet<u64>,
    deadline: Instant,
    config: &CheckConfig,
) -> Result<InstanceCheck, CheckError> {
    let started = Instant::now();
    let name = &target.name;
    let mut conn = MySqlConnection::connect_with(&target.options)
        .await
        .map_err(|source| CheckError::Connect {
            instance: name.clone(),
            source,
        })?;
    let mut missing = acked.clone();
    let mut last_change = Instant::now();
    let mut last_seen: Option<(u64, usize)> = None;
    let rows = loop {
        let found = present(&mut conn, table, name, &missing, config.batch).await?;
        for id in &found {
            missing.remove(id);
        }
        // Counted after the lookup, so a replica that caught up between the
        // two queries is not reported with fewer rows than it was found to
        // hold.
        let rows = count_rows(&mut conn, table, name).await?;
        let seen = (rows, missing.len());
        if last_seen != Some(seen) {
            last_seen = Some(seen);
            last_change = Instant::now();
        }
        let now = Instant::now();
        if missing.is_empty() || now >= deadline || now.duration_since(last_change) >= config.settle
        {
            break rows;
        }
        tokio::time::sleep(config.poll_interval.min(deadline - now)).await;
    };
    let unknown_outcome_present = present(&mut conn, table, name, unknown, config.batch)
        .await?
        .len();
    let _ = conn.close().await;
    Ok(InstanceCheck {
        instance: name.clone(),
        converged: missing.is_empty(),
        waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        rows,
        missing: missing.into_iter().collect(),
        unknown_outcome_present,
    })
}

async fn count_rows(
    conn: &mut MySqlConnection,
    table: &str,
    instance: &str,
) -> Result<u64, CheckError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut *conn)
        .await
        .map_err(|source| CheckError::Query {
            instance: instance.to_owned(),
            purpose: "count rows",
            source,
        })?;
    let n: i64 = row.try_get(0).map_err(|source| CheckError::Query {
        instance: instance.to_owned(),
        purpose: "count rows",
        source,
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Which of `ids` the table holds, queried in batches.
async fn present(
    conn: &mut MySqlConnection,
    table: &str,
    instance: &str,
    ids: &BTreeSet<u64>,
    batch: usize,
) -> Result<Vec<u64>, CheckError> {
    let ids: Vec<u64> = ids.iter().copied().collect();
    let mut found = Vec::new();
    for chunk in ids.chunks(batch.max(1)) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT id FROM {table} WHERE id IN ({marks})");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(|source| CheckError::Query {
                instance: instance.to_owned(),
                purpose: "look up acknowledged ids",
                source,
            })?;
        for row in rows {
            let id: i64 = row.try_get(0).map_err(|source| CheckError::Query {
                instance: instance.to_owned(),
                purpose: "look up acknowledged ids",
                source,
            })?;
            if let Ok(id) = u64::try_from(id) {
                found.push(id);
            }
        }
    }
    Ok(found)
}

/// Quotes `db.table` as `` `db`.`table` ``, accepting only plain identifier
/// characters.
pub(crate) fn quote_table(name: &str) -> Result<String, CheckError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    match name.split_once('.') {
        Some((db, table)) if ok(db) && ok(table) => Ok(format!("`{db}`.`{table}`")),
        _ => Err(CheckError::BadTable(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: u64, sent_us: u64, ack_us: u64) -> AckedWrite {
        AckedWrite {
            id,
            writer: 0,
            sent_us,
            ack_us,
            server_id: None,
        }
    }

    fn on(server: u32, w: AckedWrite) -> AckedWrite {
        AckedWrite {
            server_id: Some(server),
            ..w
        }
    }

    #[test]
    fn split_brain_reports_overlapping_writes_of_two_servers_only() {
        // Server 1 until 1 ms, server 2 from 2 ms, back to server 1 at 5 ms
        // (a switchover and a switch back): no overlap.
        let clean = LedgerSnapshot::from_parts(
            vec![
                on(1, ack(1, 0, 500)),
                on(1, ack(2, 600, 1_000)),
                on(2, ack(3, 2_000, 2_500)),
                on(2, ack(4, 2_600, 3_000)),
                on(1, ack(5, 5_000, 5_100)),
                ack(6, 0, 9_000),
            ],
            vec![],
            vec![],
            None,
        );
        let seen = clean.split_brain(5);
        assert_eq!(seen.overlapping, 0, "{seen:?}");
        assert_eq!(seen.per_server, vec![(1, 3), (2, 2)]);
        // Server 1 still acknowledges a write sent while server 2 takes them.
        let broken = LedgerSnapshot::from_parts(
            vec![
                on(1, ack(1, 0, 500)),
                on(2, ack(3, 2_000, 2_500)),
                on(1, ack(7, 2_100, 2_200)),
                on(1, ack(8, 2_150, 2_900)),
            ],
            vec![],
            vec![],
            None,
        );
        let seen = broken.split_brain(1);
        assert_eq!(seen.overlapping, 2, "{seen:?}");
        assert_eq!(seen.examples.len(), 1);
        assert_eq!(
            (seen.examples[0].first.id, seen.examples[0].second.id),
            (3, 7)
        );
    }

    #[test]
    fn of_run_keeps_one_loads_writes() {
        let direct = 1u64 << RUN_SHIFT;
        let snap = LedgerSnapshot::from_parts(
            vec![ack(1, 0, 10), ack(direct | 1, 5, 20), ack(2, 30, 40)],
            vec![],
            vec![],
            Some(50),
        );
        let ids: Vec<u64> = snap.of_run(0).acked.iter().map(|w| w.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(snap.of_run(1).acked.len(), 1);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn gaps_cover_start_between_and_end() {
        let snap = LedgerSnapshot::from_parts(
            vec![ack(2, 900, 1_000), ack(1, 0, 500), ack(3, 1_100, 4_000)],
            vec![],
            vec![],
            Some(4_500),
        );
        let gaps = snap.gaps();
        let lens: Vec<u64> = gaps.iter().map(Gap::length_us).collect();
        assert_eq!(lens, vec![500, 500, 3_000, 500]);
        assert_eq!(gaps[0].after_id, None);
        assert_eq!(gaps[0].before_id, Some(1));
        assert_eq!(gaps[3].before_id, None);
        let longest = snap.longest_gap().expect("a gap");
        assert_eq!((longest.after_id, longest.before_id), (Some(2), Some(3)));
        assert_eq!(longest.length(), Duration::from_micros(3_000));
    }

    #[test]
    fn no_trailing_gap_until_the_load_ends() {
        let snap = LedgerSnapshot::from_parts(vec![ack(1, 0, 10)], vec![], vec![], None);
        assert_eq!(snap.gaps().len(), 1);
        assert_eq!(LedgerSnapshot::default().longest_gap(), None);
    }

    #[test]
    fn window_finds_the_gap_around_each_event() {
        // Writes every 10 ms, with an outage 200..450 ms and one 700..760 ms.
        let mut acked = Vec::new();
        let mut t = 0;
        let mut id = 0;
        while t <= 1_000 {
            let in_outage = (200 < t && t < 450) || (700 < t && t < 760);
            if !in_outage {
                acked.push(ack(id, t * 1_000, t * 1_000 + 100));
                id += 1;
            }
            t += 10;
        }
        let snap = LedgerSnapshot::from_parts(acked, vec![], vec![], None);
        let first = snap.longest_gap_in(ms(300)..ms(310)).expect("gap");
        assert_eq!((first.from_us, first.to_us), (200_100, 450_100));
        let second = snap.longest_gap_in(ms(600)..ms(900)).expect("gap");
        assert_eq!(second.length_us(), 60_000);
        assert_eq!(snap.longest_gap().expect("gap"), first);
        // A window that straddles the outage's start still sees it whole.
        let edge = snap.gaps_between(ms(150), ms(250));
        assert_eq!(edge.last().expect("gap").length_us(), 250_000);
        assert!(edge.windows(2).all(|w| w[0].to_us == w[1].from_us));
        // A quiet window only holds the regular 10 ms gaps.
        let quiet = snap.longest_gap_in(ms(500)..ms(600)).expect("gap");
        assert_eq!(quiet.length_us(), 10_000);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        let summary = LatencySummary::of(vec![5, 1, 3, 1_000, 2]);
        assert_eq!(
            summary,
            LatencySummary {
                count: 5,
                p50_us: 3,
                p99_us: 1_000,
                max_us: 1_000
            }
        );
    }

    #[test]
    fn latency_is_ack_minus_sent() {
        let snap = LedgerSnapshot::from_parts(
            vec![ack(1, 100, 350), ack(2, 400, 500), ack(3, 1_000, 1_900)],
            vec![],
            vec![],
            None,
        );
        let l = snap.latency();
        assert_eq!((l.count, l.p50_us, l.max_us), (3, 250, 900));
    }

    #[test]
    fn time_series_buckets_acks_errors_and_p99() {
        let err = |at_us| ErrorRecord {
            worker: 0,
            at_us,
            kind: ErrorKind::Lost,
            code: None,
            message: String::new(),
        };
        let snap = LedgerSnapshot::from_parts(
            vec![
                ack(1, 0, 10_000),
                ack(2, 50_000, 99_999),
                ack(3, 200_000, 210_000),
            ],
            vec![],
            vec![err(150_000), err(160_000)],
            Some(250_000),
        );
        let series = snap.time_series(ms(100));
        assert_eq!(series.len(), 3);
        assert_eq!(
            series[0],
            Bucket {
                start_us: 0,
                acknowledged: 2,
                errors: 0,
                p99_latency_us: 49_999
            }
        );
        assert_eq!((series[1].acknowledged, series[1].errors), (0, 2));
        assert_eq!(series[1].p99_latency_us, 0);
        assert_eq!((series[2].start_us, series[2].acknowledged), (200_000, 1));
        assert!((snap.write_rate() - 12.0).abs() < 1e-9);
    }

    #[test]
    fn ledger_records_from_many_threads_and_sorts_by_ack() {
        let ledger = std::sync::Arc::new(Ledger::new());
        let threads: Vec<_> = (0..4u32)
            .map(|w| {
                let ledger = std::sync::Arc::clone(&ledger);
                std::thread::spawn(move || {
                    for i in 0..250u64 {
                        let id = (u64::from(w) << 40) | i;
                        ledger.record_ack(AckedWrite {
                            id,
                            writer: w,
                            sent_us: i * 10,
                            ack_us: i * 10 + u64::from(w),
                            server_id: None,
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer thread");
        }
        ledger.mark_end();
        let snap = ledger.snapshot();
        assert_eq!(snap.acked.len(), 1_000);
        assert!(snap.acked.windows(2).all(|w| w[0].ack_us <= w[1].ack_us));
        let ids: BTreeSet<u64> = snap.acked.iter().map(|w| w.id).collect();
        assert_eq!(ids.len(), 1_000);
        assert!(snap.ended_us.is_some());
    }

    #[test]
    fn table_names_are_quoted_or_refused() {
        assert_eq!(quote_table("app.ledger").expect("ok"), "`app`.`ledger`");
        for bad in ["ledger", "app.led`ger", "a.b.c", ".x", "app.", "a b.c"] {
            let err = quote_table(bad).expect_err(bad);
            assert_eq!(err.category(), "check_bad_table");
        }
    }

    #[test]
    fn reports_round_trip_through_json() {
        let snap = LedgerSnapshot::from_parts(vec![ack(1, 0, 10)], vec![], vec![], Some(20));
        let report = CheckReport {
            acknowledged: 1,
            unknown_outcome: 0,
            errors: 0,
            missing: vec![("r1".to_owned(), vec![1])],
            instances: vec![],
            longest_gap: snap.longest_gap(),
            latency: snap.latency(),
            write_rate: snap.write_rate(),
            time_series: snap.time_series(ms(100)),
        };
        let json = serde_json::to_string(&report).expect("serialise");
        let back: CheckReport = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, report);
        assert_eq!(back.total_missing(), 1);
        assert!(!back.no_lost_writes());
    }
}
