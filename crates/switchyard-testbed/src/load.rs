//! A writer/reader load through the [router](crate::router) that records
//! every acknowledged write in a [`Ledger`].
//!
//! Writers connect to the router's primary endpoint, one sqlx connection
//! each, and insert into `app.ledger` at a paced total rate:
//!
//! ```sql
//! INSERT INTO `app`.`ledger` (id, writer, at_us, payload) VALUES (?, ?, ?, ?);
//! SELECT @@server_id;
//! COMMIT
//! ```
//!
//! (`autocommit` is off on the writers' connections), so every acknowledged
//! write carries the server that committed it, read in its own transaction:
//! the ledger's split-brain check ([`crate::ledger::LedgerSnapshot::split_brain`])
//! needs it.
//!
//! Every id is used once: `run·2^56 + writer·2^40 + seq`, where `seq` counts
//! each writer's attempts. A write enters the ledger as acknowledged only
//! when its `COMMIT` returned OK. When the server answers with an
//! error, the row was not written; when the connection breaks or the
//! statement times out after it was sent, the outcome is unknown and the id
//! is recorded as such, never as acknowledged and never retried. After any
//! error the writer drops its connection and reconnects with a bounded
//! exponential backoff, so it follows the router to a new primary.
//!
//! Readers connect to the read endpoint and read the rows at and after the
//! latest acknowledged write, recording latency, errors, and whether that
//! write was already visible (replica staleness).
//!
//! [`Load::start_sharing`] starts a load that records into an existing
//! ledger: a client connected directly to one instance (not through the
//! router) whose acknowledged writes count with the main load's.
//!
//! [`LoadHandle::stop`] lets every in-flight statement finish (bounded by
//! the statement timeout) and returns a [`LoadReport`]; dropping the handle
//! aborts the tasks instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::credentials::Credentials;
use crate::ledger::{
    AckedWrite, CheckError, ErrorKind, ErrorRecord, LatencySummary, Ledger, LedgerSnapshot,
    UnknownWrite, quote_table,
};

/// Which account the load connects as (not to be confused with
/// [`crate::Account`], a user name and password).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// The application account: DML rights only. The default.
    #[default]
    Application,
    /// An account with ALL privileges (on MariaDB that includes READ ONLY
    /// ADMIN, which `read_only` does not stop).
    Privileged,
}

/// A user name and password. Its `Debug` output hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl Login {
    /// A login from a user name and password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the load finds the login for an [`AccountKind`]: a cluster's
/// [`Credentials`], or plain [`Logins`].
pub trait Accounts {
    /// The login of `account`.
    fn login(&self, account: AccountKind) -> Login;
}

impl Accounts for Credentials {
    fn login(&self, account: AccountKind) -> Login {
        let account = match account {
            AccountKind::Application => &self.application,
            AccountKind::Privileged => &self.privileged,
        };
        Login::new(account.user(), account.password())
    }
}

/// The two logins of a cluster, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logins {
    /// The application account (DML only).
    pub application: Login,
    /// The privileged account (ALL privileges).
    pub privileged: Login,
}

impl Accounts for Logins {
    fn login(&self, account: AccountKind) -> Login {
        match account {
            AccountKind::Application => self.application.clone(),
            AccountKind::Privileged => self.privileged.clone(),
        }
    }
}

/// The router endpoints the load connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Writers connect here.
    pub primary: SocketAddr,
    /// Readers connect here.
    pub read: SocketAddr,
}

impl From<&crate::router::Router> for Endpoints {
    fn from(router: &crate::router::Router) -> Self {
        Self {
            primary: router.primary_addr(),
            read: router.read_addr(),
        }
    }
}

/// The load's shape. [`LoadConfig::default`] is the benchmark's: 4 writers
/// at 200 writes/s in total, 1 reader at 50 reads/s, the application
/// account, `app.ledger`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadConfig {
    /// Writer connections.
    pub writers: usize,
    /// Target writes per second over all writers (0: as fast as possible).
    pub rate_per_sec: u32,
    /// Reader connections.
    pub readers: usize,
    /// Target reads per second over all readers (0: as fast as possible).
    pub read_rate_per_sec: u32,
    /// The account to connect as.
    pub account: AccountKind,
    /// The table, `database.table`.
    pub table: String,
    /// Distinguishes loads that write to the same table (ids start at
    /// `run·2^56`); below 128.
    pub run: u8,
    /// TLS use for the load's connections. Default `Preferred` (TLS when
    /// the server offers it, unverified): MySQL's `caching_sha2_password`
    /// needs TLS (or an RSA key exchange, which this build of sqlx lacks)
    /// whenever the server has not cached the account, as after a restart.
    pub ssl_mode: MySqlSslMode,
    /// Bound on connecting (TCP and handshake).
    pub connect_timeout: Duration,
    /// Bound on one statement; past it the outcome is unknown and the
    /// connection is dropped.
    pub statement_timeout: Duration,
    /// First reconnect delay after an error; doubles up to
    /// `backoff_max`, and resets after a success.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Connect over this unix socket instead of the endpoints' TCP addresses
    /// (a client on the server's machine, which a network cut of its TCP
    /// port does not reach).
    pub socket: Option<std::path::PathBuf>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            writers: 4,
            rate_per_sec: 200,
            readers: 1,
            read_rate_per_sec: 50,
            account: AccountKind::Application,
            table: "app.ledger".to_owned(),
            run: 0,
            ssl_mode: MySqlSslMode::Preferred,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
            socket: None,
        }
    }
}

impl LoadConfig {
    /// The defaults with another account.
    pub fn with_account(account: AccountKind) -> Self {
        Self {
            account,
            ..Self::default()
        }
    }
}

/// Errors from [`prepare`] and [`Load::start`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Connecting to the server failed.
    #[error("load: cannot connect to {addr} for {purpose}: {source}")]
    Connect {
        /// The server's address.
        addr: String,
        /// What the connection was for.
        purpose: &'static str,
        /// The driver's error (it carries no password).
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("load: {purpose} failed on {addr}: {source}")]
    Statement {
        /// The server's address.
        addr: String,
        /// What the statement was for.
        purpose: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The configuration is unusable.
    #[error("load: invalid configuration: {0}")]
    Config(String),
}

impl LoadError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "load_connect",
            Self::Statement { .. } => "load_statement",
            Self::Config(..) => "load_config",
        }
    }
}

impl From<CheckError> for LoadError {
    fn from(err: CheckError) -> Self {
        Self::Config(err.to_string())
    }
}

/// Creates the load's database and table (if missing) with `options` (the
/// operator account, on the primary).
pub async fn prepare(options: &MySqlConnectOptions, table: &str) -> Result<(), LoadError> {
    let quoted = quote_table(table)?;
    let db = quoted
        .split_once('.')
        .map(|(db, _)| db.to_owned())
        .unwrap_or_default();
    let addr = format!("{}:{}", options.get_host(), options.get_port());
    let mut conn = MySqlConnection::connect_with(options)
        .await
        .map_err(|source| LoadError::Connect {
            addr: addr.clone(),
            purpose: "creating the load's table",
            source,
        })?;
    let statements = [
        (
            "create the load's database",
            format!("CREATE DATABASE IF NOT EXISTS {db}"),
        ),
        (
            "create the load's table",
            format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (id BIGINT PRIMARY KEY, writer INT, \
                 at_us BIGINT, payload VARCHAR(64))"
            ),
        ),
    ];
    for (purpose, sql) in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(|source| LoadError::Statement {
                addr: addr.clone(),
                purpose,
                source,
            })?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// One read as the load saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadSample {
    /// Index of the reader.
    pub reader: u32,
    /// When the query was sent, µs after the ledger's start.
    pub sent_us: u64,
    /// Time to the complete result, µs.
    pub latency_us: u64,
    /// Rows returned.
    pub rows: u32,
    /// Whether the latest write acknowledged before the query was sent was
    /// visible (false on a lagging replica).
    pub saw_latest: bool,
}

/// What a load did, for checks and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Every write: acknowledged, unknown outcome, errors.
    pub ledger: LedgerSnapshot,
    /// Every successful read.
    pub reads: Vec<ReadSample>,
    /// Every reader error.
    pub read_errors: Vec<ErrorRecord>,
}

impl LoadReport {
    /// Acknowledged writes.
    pub fn acknowledged(&self) -> usize {
        self.ledger.acked.len()
    }

    /// Acknowledged writes per second.
    pub fn write_rate(&self) -> f64 {
        self.ledger.write_rate()
    }

    /// Write latency percentiles.
    pub fn write_latency(&self) -> LatencySummary {
        self.ledger.latency()
    }

    /// Read latency percentiles.
    pub fn read_latency(&self) -> LatencySummary {
        LatencySummary::of(self.reads.iter().map(|r| r.latency_us).collect())
    }
}

/// Starts loads; see [`Load::start`].
#[derive(Debug)]
pub struct Load;

impl Load {
    /// Starts `config.writers` writers against `endpoints.primary` and
    /// `config.readers` readers against `endpoints.read`, logged in as
    /// `config.account` from `accounts`. Must be called inside a tokio
    /// runtime. The table must exist ([`prepare`]).
    pub fn start(
        config: LoadConfig,
        endpoints: Endpoints,
        accounts: &impl Accounts,
    ) -> Result<LoadHandle, LoadError> {
        Self::start_on(config, endpoints, accounts, Arc::new(Ledger::new()), true)
    }

    /// Like [`Load::start`], recording into `ledger`, which another load
    /// owns: give this load its own [`LoadConfig::run`] so the ids differ.
    /// Stopping it does not end the ledger's time axis (the owner's
    /// [`LoadHandle::stop`] does).
    pub fn start_sharing(
        config: LoadConfig,
        endpoints: Endpoints,
        accounts: &impl Accounts,
        ledger: Arc<Ledger>,
    ) -> Result<LoadHandle, LoadError> {
        Self::start_on(config, endpoints, accounts, ledger, false)
    }

    fn start_on(
        config: LoadConfig,
        endpoints: Endpoints,
        accounts: &impl Accounts,
        ledger: Arc<Ledger>,
        owns_ledger: bool,
    ) -> Result<LoadHandle, LoadError> {
        let table = quote_table(&config.table)?;
        if config.run >= 128 {
            return Err(LoadError::Config(format!(
                "run must be below 128, got {}",
                config.run
            )));
        }
        if config.writers >= 1 << 16 {
            return Err(LoadError::Config(format!(
                "at most 65535 writers, got {}",
                config.writers
            )));
        }
        let login = accounts.login(config.account);
        let options = |addr: SocketAddr| {
            let at = MySqlConnectOptions::new();
            let at = match &config.socket {
                Some(path) => at.socket(path),
                None => at.host(&addr.ip().to_string()).port(addr.port()),
            };
            at.username(&login.user)
                .password(&login.password)
                .ssl_mode(config.ssl_mode)
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let writer_sql = Arc::<str>::from(format!(
            "INSERT INTO {table} (id, writer, at_us, payload) VALUES (?, ?, ?, ?)"
        ));
        let reader_sql = Arc::<str>::from(format!(
            "SELECT id FROM {table} WHERE id >= ? ORDER BY id LIMIT 10"
        ));
        let mut writers = Vec::with_capacity(config.writers);
        for index in 0..config.writers {
            let worker = Worker {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                count: config.writers,
                rate: config.rate_per_sec,
                options: options(endpoints.primary),
                sql: Arc::clone(&writer_sql),
                ledger: Arc::clone(&ledger),
                stop: stop_rx.clone(),
                config: config.clone(),
            };
            writers.push(tokio::spawn(worker.write_loop()));
        }
        let mut readers = Vec::with_capacity(config.readers);
        for index in 0..config.readers {
            let worker = Worker {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                count: config.readers,
                rate: config.read_rate_per_sec,
                options: options(endpoints.read),
                sql: Arc::clone(&reader_sql),
                ledger: Arc::clone(&ledger),
                stop: stop_rx.clone(),
                config: config.clone(),
            };
            readers.push(tokio::spawn(worker.read_loop()));
        }
        Ok(LoadHandle {
            ledger,
            stop: stop_tx,
            writers,
            readers,
            grace: config.statement_timeout + config.connect_timeout + Duration::from_secs(1),
            owns_ledger,
        })
    }
}

/// A running load. [`stop`](Self::stop) it to get the report; dropping it
/// aborts every task at once.
#[derive(Debug)]
pub struct LoadHandle {
    ledger: Arc<Ledger>,
    stop: watch::Sender<bool>,
    writers: Vec<JoinHandle<()>>,
    readers: Vec<JoinHandle<ReaderLog>>,
    grace: Duration,
    owns_ledger: bool,
}

impl LoadHandle {
    /// The live ledger (to place events on its time axis or to watch
    /// progress).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Acknowledged writes so far.
    pub fn acknowledged(&self) -> usize {
        self.ledger.acknowledged()
    }

    /// Stops the load: no new statement starts; statements in flight finish
    /// or time out (each worker gets the statement timeout plus the connect
    /// timeout plus 1 s before it is aborted). Returns what the load did.
    pub async fn stop(mut self) -> LoadReport {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        for writer in std::mem::take(&mut self.writers) {
            let abort = writer.abort_handle();
            if tokio::time::timeout_at(deadline, writer).await.is_err() {
                abort.abort();
            }
        }
        let mut reads = Vec::new();
        let mut read_errors = Vec::new();
        for reader in std::mem::take(&mut self.readers) {
            let abort = reader.abort_handle();
            match tokio::time::timeout_at(deadline, reader).await {
                Ok(Ok(log)) => {
                    reads.extend(log.samples);
                    read_errors.extend(log.errors);
                }
                Ok(Err(_)) => {}
                Err(_) => abort.abort(),
            }
        }
        if self.owns_ledger {
            self.ledger.mark_end();
        }
        reads.sort_by_key(|r| r.sent_us);
        read_errors.sort_by_key(|e| e.at_us);
        LoadReport {
            ledger: self.ledger.snapshot(),
            reads,
            read_errors,
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        for task in &self.writers {
            task.abort();
        }
        for task in &self.readers {
            task.abort();
        }
    }
}

#[derive(Debug, Default)]
struct ReaderLog {
    samples: Vec<ReadSample>,
    errors: Vec<ErrorRecord>,
}

struct Worker {
    index: u32,
    count: usize,
    rate: u32,
    options: MySqlConnectOptions,
    sql: Arc<str>,
    ledger: Arc<Ledger>,
    stop: watch::Receiver<bool>,
    config: LoadConfig,
}

/// The result of one statement attempt.
enum Outcome {
    Ok,
    /// The server answered with an error.
    Rejected(sqlx::Error),
    /// The connection broke after sending.
    Lost(sqlx::Error),
    /// No answer in time.
    Timeout,
}

impl Worker {
    /// A ticker for this worker's share of the rate, offset so the workers
    /// take turns.
    fn ticker(&self) -> Option<tokio::time::Interval> {
        if self.rate == 0 {
            return None;
        }
        let count = u32::try_from(self.count.max(1)).unwrap_or(u32::MAX);
        let period = Duration::from_secs(1) * count / self.rate;
        let period = period.max(Duration::from_micros(1));
        let offset = period * self.index / count;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Some(ticker)
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits for the next tick; false once the load is stopping.
    async fn next_tick(&mut self, ticker: &mut Option<tokio::time::Interval>) -> bool {
        if let Some(ticker) = ticker {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.stop.changed() => {}
            }
        }
        !self.stopped()
    }

    /// Sleeps for the backoff (or until stopped) and doubles it.
    async fn back_off(&mut self, backoff: &mut Duration) {
        tokio::select! {
            () = tokio::time::sleep(*backoff) => {}
            _ = self.stop.changed() => {}
        }
        *backoff = (*backoff * 2).min(self.config.backoff_max);
    }

    fn error(&self, kind: ErrorKind, err: Option<&sqlx::Error>) -> ErrorRecord {
        ErrorRecord {
            worker: self.index,
            at_us: self.ledger.now_us(),
            kind,
            code: err.and_then(server_code),
            message: err.map_or_else(
                || "no answer within the statement timeout".to_owned(),
                |e| truncate(e.to_string()),
            ),
        }
    }

    async fn connect(&self) -> Result<MySqlConnection, Option<sqlx::Error>> {
        match tokio::time::timeout(
            self.config.connect_timeout,
            MySqlConnection::connect_with(&self.options),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(Some(err)),
            Err(_) => Err(None),
        }
    }

    /// A writer's connection: `autocommit` off, so that the write and the
    /// read of `@@server_id` share a transaction.
    async fn connect_writer(&self) -> Result<MySqlConnection, Option<sqlx::Error>> {
        let mut conn = self.connect().await?;
        let set = sqlx::raw_sql("SET SESSION autocommit = 0").execute(&mut conn);
        match tokio::time::timeout(self.config.statement_timeout, set).await {
            Ok(Ok(_)) => Ok(conn),
            Ok(Err(err)) => Err(Some(err)),
            Err(_) => Err(None),
        }
    }

    /// The write, the server's id and the commit, in one transaction; the
    /// server id once committed.
    async fn write_once(
        &self,
        conn: &mut MySqlConnection,
        id: u64,
        at_us: i64,
        payload: String,
    ) -> Result<u32, sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql)))
            .bind(i64::try_from(id).unwrap_or(i64::MAX))
            .bind(i64::from(self.index))
            .bind(at_us)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
        let server: u64 = sqlx::query_scalar("SELECT @@server_id")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
        Ok(u32::try_from(server).unwrap_or(u32::MAX))
    }

    async fn write_loop(mut self) {
        let mut ticker = self.ticker();
        let mut conn: Option<MySqlConnection> = None;
        let mut backoff = self.config.backoff_min;
        let base = (u64::from(self.config.run) << crate::ledger::RUN_SHIFT)
            | (u64::from(self.index) << 40);
        let mut seq: u64 = 0;
        while self.next_tick(&mut ticker).await {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.connect_writer().await {
                    Ok(c) => conn.insert(c),
                    Err(err) => {
                        let record = self.error(ErrorKind::Connect, err.as_ref());
                        self.ledger.record_error(record);
                        self.back_off(&mut backoff).await;
                        continue;
                    }
                },
            };
            seq += 1;
            let id = base | seq;
            let sent_us = self.ledger.now_us();
            let at_us = unix_us();
            let payload = format!("w{}s{}", self.index, seq);
            let write = self.write_once(c, id, at_us, payload);
            let mut server_id = None;
            let outcome = match tokio::time::timeout(self.config.statement_timeout, write).await {
                Ok(Ok(server)) => {
                    server_id = Some(server);
                    Outcome::Ok
                }
                Ok(Err(err @ sqlx::Error::Database(_))) => Outcome::Rejected(err),
                Ok(Err(err)) => Outcome::Lost(err),
                Err(_) => Outcome::Timeout,
            };
            let now_us = self.ledger.now_us();
            let (kind, err) = match outcome {
                Outcome::Ok => {
                    self.ledger.record_ack(AckedWrite {
                        id,
                        writer: self.index,
                        sent_us,
                        ack_us: now_us,
                        server_id,
                    });
                    backoff = self.config.backoff_min;
                    continue;
                }
                Outcome::Rejected(err) => (ErrorKind::Rejected, Some(err)),
                Outcome::Lost(err) => (ErrorKind::Lost, Some(err)),
                Outcome::Timeout => (ErrorKind::Timeout, None),
            };
            if kind.outcome_unknown() {
                self.ledger.record_unknown(UnknownWrite {
                    id,
                    writer: self.index,
                    sent_us,
                    failed_us: now_us,
                    kind,
                });
            }
            let record = self.error(kind, err.as_ref());
            self.ledger.record_error(record);
            // A fresh connection goes wherever the router now points.
            conn = None;
            self.back_off(&mut backoff).await;
        }
        if let Some(c) = conn {
            let _ = tokio::time::timeout(self.config.connect_timeout, c.close()).await;
        }
    }

    async fn read_loop(mut self) -> ReaderLog {
        let mut log = ReaderLog::default();
        let mut ticker = self.ticker();
        let mut conn: Option<MySqlConnection> = None;
        let mut backoff = self.config.backoff_min;
        while self.next_tick(&mut ticker).await {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.connect().await {
                    Ok(c) => conn.insert(c),
                    Err(err) => {
                        log.errors
                            .push(self.error(ErrorKind::Connect, err.as_ref()));
                        self.back_off(&mut backoff).await;
                        continue;
                    }
                },
            };
            let latest = self.ledger.last_acked().map_or(0, |w| w.id);
            let sent = Instant::now();
            let sent_us = self.ledger.now_us();
            let select = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(Arc::clone(&self.sql)))
                .bind(i64::try_from(latest).unwrap_or(i64::MAX))
                .fetch_all(&mut *c);
            let (kind, err) = match tokio::time::timeout(self.config.statement_timeout, select)
                .await
            {
                Ok(Ok(ids)) => {
                    log.samples.push(ReadSample {
                        reader: self.index,
                        sent_us,
                        latency_us: u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
                        rows: u32::try_from(ids.len()).unwrap_or(u32::MAX),
                        saw_latest: latest == 0
                            || ids.first().is_some_and(|&i| u64::try_from(i) == Ok(latest)),
                    });
                    backoff = self.config.backoff_min;
                    continue;
                }
                Ok(Err(err @ sqlx::Error::Database(_))) => (ErrorKind::Rejected, Some(err)),
                Ok(Err(err)) => (ErrorKind::Lost, Some(err)),
                Err(_) => (ErrorKind::Timeout, None),
            };
            log.errors.push(self.error(kind, err.as_ref()));
            conn = None;
            self.back_off(&mut backoff).await;
        }
        if let Some(c) = conn {
            let _ = tokio::time::timeout(self.config.connect_timeout, c.close()).await;
        }
        log
    }
}

fn server_code(err: &sqlx::Error) -> Option<u16> {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(sqlx::mysql::MySqlDatabaseError::number),
        _ => None,
    }
}

fn truncate(mut s: String) -> String {
    const MAX: usize = 300;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
