//! The [`Instance`] handle: address, operator credentials, bounded connections and statements.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use switchyard_plan::versions::{Flavor, ServerVersion, Version};
use tokio::time::Instant;

use crate::error::{Error, ServerError};

/// A secret string (a password). `Debug` and `Display` print `***`; only
/// [`Secret::expose`] gives the text, and this crate calls it only to authenticate and to
/// write `CHANGE REPLICATION SOURCE TO`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Secret(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Secret(secret.to_owned())
    }
}

/// An account name and its password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The account's user name.
    pub user: String,
    /// The account's password.
    pub password: Secret,
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// Where a server listens: a host name or IP address and a TCP port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstanceAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl InstanceAddr {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        InstanceAddr {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Whether and how connections use TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// Plain TCP. MySQL's `caching_sha2_password` then needs the password cached on the
    /// server by an earlier TLS login.
    Disabled,
    /// TLS when the server offers it, without verifying its certificate.
    #[default]
    Preferred,
    /// TLS always, without verifying the certificate.
    Required,
    /// TLS, verifying the server certificate against this CA (PEM).
    VerifyCa {
        /// The CA certificate(s), PEM.
        ca_pem: Vec<u8>,
    },
    /// TLS, verifying the certificate against this CA (PEM) and the host name.
    VerifyIdentity {
        /// The CA certificate(s), PEM.
        ca_pem: Vec<u8>,
    },
}

/// How long operations may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting: the TCP connection, TLS and the login. A fifth of it is kept back to tell a
    /// paused server from an unreachable host when the handshake does not finish.
    pub connect: Duration,
    /// One statement, unless the operation takes its own timeout.
    pub statement: Duration,
    /// A schema change run by [`Instance::run_local_ddl`].
    pub ddl: Duration,
}

impl Default for Timeouts {
    /// 2 s to connect, 10 s per statement, 1 hour per schema change.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            statement: Duration::from_secs(10),
            ddl: Duration::from_secs(3600),
        }
    }
}

/// A handle on one MySQL or MariaDB server, used with the operator account.
///
/// Cloning is cheap and clones share state: one cached connection that operations reuse (a
/// connection that failed or timed out is dropped, never reused) and, on MariaDB, the
/// connection that holds the fence ([`Instance::fence`]). Dropping the last clone closes both.
#[derive(Clone)]
pub struct Instance {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) addr: InstanceAddr,
    pub(crate) credentials: Credentials,
    pub(crate) tls: TlsMode,
    pub(crate) timeouts: Timeouts,
    pub(crate) label: Arc<str>,
    cached: Mutex<Option<Session>>,
    pub(crate) fence: tokio::sync::Mutex<Option<Session>>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.inner.name)
            .field("addr", &self.inner.addr)
            .field("user", &self.inner.credentials.user)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.label)
    }
}

impl Instance {
    /// A handle on the server `name` (a pod name or ordinal, used in errors) at `addr`, used with
    /// the operator account `credentials`. Nothing is connected until the first operation.
    pub fn new(name: impl Into<String>, addr: InstanceAddr, credentials: Credentials) -> Self {
        Self::build(
            name.into(),
            addr,
            credentials,
            TlsMode::default(),
            Timeouts::default(),
        )
    }

    /// The same handle with other timeouts (a new handle: state is not shared with `self`).
    pub fn with_timeouts(&self, timeouts: Timeouts) -> Self {
        let i = &self.inner;
        Self::build(
            i.name.clone(),
            i.addr.clone(),
            i.credentials.clone(),
            i.tls.clone(),
            timeouts,
        )
    }

    /// The same handle with another TLS mode (a new handle: state is not shared with `self`).
    pub fn with_tls(&self, tls: TlsMode) -> Self {
        let i = &self.inner;
        Self::build(
            i.name.clone(),
            i.addr.clone(),
            i.credentials.clone(),
            tls,
            i.timeouts,
        )
    }

    fn build(
        name: String,
        addr: InstanceAddr,
        credentials: Credentials,
        tls: TlsMode,
        timeouts: Timeouts,
    ) -> Self {
        let label: Arc<str> = format!("{name} ({addr})").into();
        Instance {
            inner: Arc::new(Inner {
                name,
                addr,
                credentials,
                tls,
                timeouts,
                label,
                cached: Mutex::new(None),
                fence: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The instance's address.
    pub fn addr(&self) -> &InstanceAddr {
        &self.inner.addr
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// `name (host:port)`, as errors name the instance.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The product and version of the server, read on a connection (a new one if none is
    /// cached, so a restart with another version is seen).
    ///
    /// # Errors
    /// Connection failures ([`Error::Down`], [`Error::NotResponding`], ...).
    pub async fn server_version(&self) -> Result<ServerVersion, Error> {
        let session = self.session("read the server version", None).await?;
        let version = session.version;
        self.release(session);
        Ok(version)
    }

    /// The deadline for one statement: the statement timeout, or sooner when `deadline` is.
    pub(crate) fn statement_deadline(&self, deadline: Option<Instant>) -> Instant {
        let own = Instant::now() + self.inner.timeouts.statement;
        deadline.map_or(own, |d| d.min(own))
    }

    /// Takes the cached connection, or connects. Give it back with [`Instance::release`].
    pub(crate) async fn session(
        &self,
        purpose: &'static str,
        deadline: Option<Instant>,
    ) -> Result<Session, Error> {
        let cached = self
            .inner
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut session) = cached {
            // A cached connection may have died with its server, or the server may be paused:
            // a quick ping decides, and a fresh connection then tells which (down, paused...).
            let ping = (self.inner.timeouts.connect / 4).min(Duration::from_millis(500));
            if let Ok(Ok(())) = tokio::time::timeout(ping, session.conn.ping()).await {
                return Ok(session);
            }
        }
        self.connect(purpose, deadline).await
    }

    /// Returns a connection to the cache unless it broke.
    pub(crate) fn release(&self, session: Session) {
        if !session.broken {
            let mut cached = self
                .inner
                .cached
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if cached.is_none() {
                *cached = Some(session);
            }
        }
    }

    /// Drops the cached connection (after a restart, or to start afresh).
    pub fn forget_connection(&self) {
        self.inner
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn connect_options(&self) -> MySqlConnectOptions {
        let i = &self.inner;
        let mut options = MySqlConnectOptions::new()
            .host(&i.addr.host)
            .port(i.addr.port)
            .username(&i.credentials.user)
            .password(i.credentials.password.expose())
            .charset("utf8mb4")
            .statement_cache_capacity(64)
            .disable_statement_logging();
        options = match &i.tls {
            TlsMode::Disabled => options.ssl_mode(MySqlSslMode::Disabled),
            TlsMode::Preferred => options.ssl_mode(MySqlSslMode::Preferred),
            TlsMode::Required => options.ssl_mode(MySqlSslMode::Required),
            TlsMode::VerifyCa { ca_pem } => options
                .ssl_mode(MySqlSslMode::VerifyCa)
                .ssl_ca_from_pem(ca_pem.clone()),
            TlsMode::VerifyIdentity { ca_pem } => options
                .ssl_mode(MySqlSslMode::VerifyIdentity)
                .ssl_ca_from_pem(ca_pem.clone()),
        };
        options
    }

    /// Opens a new connection and detects the server, bounded by the connect timeout (or the
    /// deadline when sooner).
    pub(crate) async fn connect(
        &self,
        purpose: &'static str,
        deadline: Option<Instant>,
    ) -> Result<Session, Error> {
        let started = Instant::now();
        let mut budget = self.inner.timeouts.connect;
        if let Some(deadline) = deadline {
            budget = budget.min(deadline.saturating_duration_since(started));
        }
        if budget < Duration::from_millis(10) {
            // The caller's deadline has passed: no time to connect, and a silent handshake
            // would wrongly suggest a paused server.
            return Err(Error::Timeout {
                instance: self.label().to_owned(),
                purpose,
                waited: budget,
            });
        }
        let handshake = budget.mul_f64(0.8);
        let options = self.connect_options();
        let conn = match tokio::time::timeout(handshake, options.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.connect_error(purpose, e)),
            Err(_) => {
                let probe = budget
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(50));
                return Err(self.diagnose_silence(purpose, handshake, probe).await);
            }
        };
        let mut session = Session {
            conn,
            version: ServerVersion::new(Flavor::Mysql, Version::new(0, 0, 0)),
            connection_id: 0,
            label: self.inner.label.clone(),
            broken: false,
        };
        let detect_deadline = started + budget.max(Duration::from_millis(200));
        let rows = session
            .query_text(
                "detect the server version",
                Sql::Static("SELECT VERSION(), @@version_comment, CONNECTION_ID()"),
                detect_deadline,
            )
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnexpectedAnswer {
                instance: self.label().to_owned(),
                purpose: "detect the server version",
                detail: "SELECT VERSION() returned no row".to_owned(),
            })?;
        let reported = row.text(0).unwrap_or_default();
        let comment = row.text(1).unwrap_or_default();
        let hint = comment
            .to_ascii_lowercase()
            .contains("mariadb")
            .then_some(Flavor::Mariadb);
        let version = ServerVersion::parse_reported(&reported, hint).map_err(|e| {
            Error::UnexpectedAnswer {
                instance: self.label().to_owned(),
                purpose: "detect the server version",
                detail: format!("VERSION() = {reported:?}: {e}"),
            }
        })?;
        let supported = match version.flavor {
            Flavor::Mysql => version.version >= Version::new(8, 0, 23),
            Flavor::Mariadb => version.version >= Version::new(10, 5, 0),
        };
        if !supported {
            return Err(Error::UnsupportedVersion {
                instance: self.label().to_owned(),
                version,
            });
        }
        session.version = version;
        session.connection_id = row.u64(2).unwrap_or(0);
        Ok(session)
    }

    fn connect_error(&self, purpose: &'static str, e: sqlx::Error) -> Error {
        let instance = self.label().to_owned();
        match e {
            sqlx::Error::Io(io) => io_error(instance, purpose, &io),
            sqlx::Error::Database(db) => {
                let server = server_error(db.as_ref());
                match server.code {
                    1044 | 1045 | 1698 => Error::AccessDenied {
                        instance,
                        purpose,
                        server,
                    },
                    _ => Error::Statement {
                        instance,
                        purpose,
                        server,
                    },
                }
            }
            other => Error::Connection {
                instance,
                purpose,
                detail: other.to_string(),
            },
        }
    }

    /// The handshake did not finish: tell a host that accepts TCP connections but does not
    /// answer (paused, hung) from one that does not accept them at all.
    async fn diagnose_silence(
        &self,
        purpose: &'static str,
        waited: Duration,
        probe: Duration,
    ) -> Error {
        let instance = self.label().to_owned();
        let addr = (self.inner.addr.host.as_str(), self.inner.addr.port);
        match tokio::time::timeout(probe, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => Error::NotResponding {
                instance,
                purpose,
                waited,
            },
            Ok(Err(io)) => io_error(instance, purpose, &io),
            Err(_) => Error::Unreachable {
                instance,
                purpose,
                detail: format!("no TCP connection within {:?}", waited + probe),
            },
        }
    }
}

fn io_error(instance: String, purpose: &'static str, io: &std::io::Error) -> Error {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => Error::Down { instance, purpose },
        ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::AddrNotAvailable
        | ErrorKind::NetworkDown
        | ErrorKind::TimedOut => Error::Unreachable {
            instance,
            purpose,
            detail: io.to_string(),
        },
        // Name resolution failures come back as uncategorised errors from getaddrinfo.
        _ if io.to_string().contains("lookup") || io.to_string().contains("resolve") => {
            Error::Unreachable {
                instance,
                purpose,
                detail: io.to_string(),
            }
        }
        _ => Error::Connection {
            instance,
            purpose,
            detail: io.to_string(),
        },
    }
}

pub(crate) fn server_error(db: &dyn sqlx::error::DatabaseError) -> ServerError {
    match db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        Some(my) => ServerError {
            code: my.number(),
            sqlstate: my.code().map(str::to_owned),
            message: my.message().to_owned(),
        },
        None => ServerError {
            code: 0,
            sqlstate: None,
            message: db.message().to_owned(),
        },
    }
}

/// SQL text: a constant, or a statement this crate built following the rules in
/// [`crate::sql`].
pub(crate) enum Sql {
    Static(&'static str),
    Built(String),
}

impl Sql {
    fn into_raw(self) -> sqlx::RawSql {
        match self {
            Sql::Static(s) => sqlx::raw_sql(s),
            Sql::Built(s) => sqlx::raw_sql(AssertSqlSafe(s)),
        }
    }

    fn into_query(self) -> sqlx::query::Query<'static, sqlx::MySql, MySqlArguments> {
        match self {
            Sql::Static(s) => sqlx::query(s),
            Sql::Built(s) => sqlx::query(AssertSqlSafe(s)),
        }
    }
}

/// A value bound to a `?` parameter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Param {
    Int(i64),
    Float(f64),
    Text(String),
}

/// One connection to a server, with what was detected on it.
pub(crate) struct Session {
    conn: MySqlConnection,
    pub(crate) version: ServerVersion,
    pub(crate) connection_id: u64,
    label: Arc<str>,
    /// Set when the connection failed or timed out: it is then dropped, never reused.
    pub(crate) broken: bool,
}

impl Session {
    pub(crate) fn flavor(&self) -> Flavor {
        self.version.flavor
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn statement_error(&mut self, purpose: &'static str, e: sqlx::Error) -> Error {
        let instance = self.label.to_string();
        match e {
            sqlx::Error::Database(db) => Error::Statement {
                instance,
                purpose,
                server: server_error(db.as_ref()),
            },
            sqlx::Error::Io(io) => {
                self.broken = true;
                io_error(instance, purpose, &io)
            }
            other => {
                self.broken = true;
                Error::Connection {
                    instance,
                    purpose,
                    detail: other.to_string(),
                }
            }
        }
    }

    /// [`Error::Timeout`] without sending anything when `deadline` has passed: a statement is
    /// never sent with no time left to answer (the server would run it all the same).
    fn expired(&self, purpose: &'static str, deadline: Instant) -> Result<(), Error> {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                instance: self.label.to_string(),
                purpose,
                waited: Duration::ZERO,
            });
        }
        Ok(())
    }

    fn timeout_error(&mut self, purpose: &'static str, waited: Duration) -> Error {
        self.broken = true;
        Error::Timeout {
            instance: self.label.to_string(),
            purpose,
            waited,
        }
    }

    /// Runs a statement (text protocol) and returns the rows affected.
    pub(crate) async fn exec(
        &mut self,
        purpose: &'static str,
        sql: Sql,
        deadline: Instant,
    ) -> Result<u64, Error> {
        self.expired(purpose, deadline)?;
        let waited = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, sql.into_raw().execute(&mut self.conn)).await {
            Ok(Ok(done)) => Ok(done.rows_affected()),
            Ok(Err(e)) => Err(self.statement_error(purpose, e)),
            Err(_) => Err(self.timeout_error(purpose, waited)),
        }
    }

    /// Runs a prepared statement with bound parameters and returns the rows affected.
    pub(crate) async fn exec_bound(
        &mut self,
        purpose: &'static str,
        sql: Sql,
        params: &[Param],
        deadline: Instant,
    ) -> Result<u64, Error> {
        // Kept prepared: closing a statement sends a packet the server does not answer, and
        // sqlx does not set TCP_NODELAY, so the next command would wait for the server's
        // delayed ACK (40 ms on Linux).
        let mut query = sql.into_query().persistent(true);
        for param in params {
            query = bind(query, param);
        }
        self.expired(purpose, deadline)?;
        let waited = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, query.execute(&mut self.conn)).await {
            Ok(Ok(done)) => Ok(done.rows_affected()),
            Ok(Err(e)) => Err(self.statement_error(purpose, e)),
            Err(_) => Err(self.timeout_error(purpose, waited)),
        }
    }

    /// Runs a query (text protocol) and returns its rows as text.
    pub(crate) async fn query_text(
        &mut self,
        purpose: &'static str,
        sql: Sql,
        deadline: Instant,
    ) -> Result<Vec<TextRow>, Error> {
        self.expired(purpose, deadline)?;
        let waited = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, sql.into_raw().fetch_all(&mut self.conn)).await {
            Ok(Ok(rows)) => Ok(rows.iter().map(TextRow::from_row).collect()),
            Ok(Err(e)) => Err(self.statement_error(purpose, e)),
            Err(_) => Err(self.timeout_error(purpose, waited)),
        }
    }

    /// Runs a prepared query with bound parameters. Every selected column must be a string
    /// (`CAST(... AS CHAR)`), which reads the same in the binary protocol.
    pub(crate) async fn query_bound(
        &mut self,
        purpose: &'static str,
        sql: Sql,
        params: &[Param],
        deadline: Instant,
    ) -> Result<Vec<TextRow>, Error> {
        // Kept prepared: closing a statement sends a packet the server does not answer, and
        // sqlx does not set TCP_NODELAY, so the next command would wait for the server's
        // delayed ACK (40 ms on Linux).
        let mut query = sql.into_query().persistent(true);
        for param in params {
            query = bind(query, param);
        }
        self.expired(purpose, deadline)?;
        let waited = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, query.fetch_all(&mut self.conn)).await {
            Ok(Ok(rows)) => Ok(rows.iter().map(TextRow::from_row).collect()),
            Ok(Err(e)) => Err(self.statement_error(purpose, e)),
            Err(_) => Err(self.timeout_error(purpose, waited)),
        }
    }

    /// Closes the connection politely (bounded), for connections with session state.
    pub(crate) async fn close(self) {
        let _closed = tokio::time::timeout(Duration::from_millis(500), self.conn.close()).await;
    }
}

fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::MySql, MySqlArguments>,
    param: &Param,
) -> sqlx::query::Query<'q, sqlx::MySql, MySqlArguments> {
    match param {
        Param::Int(v) => query.bind(*v),
        Param::Float(v) => query.bind(*v),
        Param::Text(v) => query.bind(v.clone()),
    }
}

/// A result row read as text, with case-insensitive column lookup.
#[derive(Clone, Debug, Default)]
pub(crate) struct TextRow {
    columns: Vec<String>,
    values: Vec<Option<String>>,
}

impl TextRow {
    fn from_row(row: &MySqlRow) -> Self {
        use sqlx::Column;
        let columns = row
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect::<Vec<_>>();
        let values = (0..columns.len())
            .map(|i| {
                row.try_get_unchecked::<Option<Vec<u8>>, _>(i)
                    .ok()
                    .flatten()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            })
            .collect();
        TextRow { columns, values }
    }

    /// The value at position `i`, `None` for SQL NULL or a missing column.
    pub(crate) fn text(&self, i: usize) -> Option<String> {
        self.values.get(i).cloned().flatten()
    }

    /// The value of the column named `name` (any letter case).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.values.get(i)?.as_deref()
    }

    /// The first of several column names that exists (MySQL and MariaDB name some differently).
    pub(crate) fn get_any(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| self.get(name))
    }

    pub(crate) fn u64(&self, i: usize) -> Option<u64> {
        self.values.get(i)?.as_deref()?.trim().parse().ok()
    }
}
