//! SQL on the local server: `root@localhost` over the unix socket, which only the server's
//! own container can reach (the account has no password and no network counterpart: the
//! agent drops MariaDB's `root@127.0.0.1`-style accounts at bootstrap). Every connection and
//! statement is bounded; statement logging is off (some statements hold passwords).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use crate::error::{Error, Result};

/// The local server's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    socket: PathBuf,
}

/// How long one local connection or statement may take unless said otherwise.
pub const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Local {
    /// The server listening on `socket`.
    pub fn new(socket: &Path) -> Local {
        Local {
            socket: socket.to_path_buf(),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connects as root within `timeout`.
    ///
    /// # Errors
    /// [`Error::Sql`], or [`Error::Timeout`] when the server does not answer in time (a
    /// hung server accepts the socket connection and never greets).
    pub async fn connect(&self, timeout: Duration) -> Result<MySqlConnection> {
        let options = MySqlConnectOptions::new()
            .socket(&self.socket)
            .username("root")
            .disable_statement_logging();
        match tokio::time::timeout(timeout, MySqlConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Error::Sql {
                purpose: "connect as root over the socket",
                source: e,
            }),
            Err(_) => Err(Error::Timeout {
                what: "a connection to the local server",
                waited: timeout,
                last: format!("no greeting on {}", self.socket.display()),
            }),
        }
    }
}

/// Runs `sql` (text protocol, no parameters) on `conn` within `timeout`. `secrets` are
/// values in it whose server message is withheld.
///
/// # Errors
/// [`Error::Sql`] / [`Error::SqlWithheld`], [`Error::Timeout`].
pub async fn exec(
    conn: &mut MySqlConnection,
    purpose: &'static str,
    sql: String,
    secrets: &[&str],
    timeout: Duration,
) -> Result<()> {
    match tokio::time::timeout(
        timeout,
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::sql(purpose, e, secrets)),
        Err(_) => Err(Error::Timeout {
            what: purpose,
            waited: timeout,
            last: "no answer".into(),
        }),
    }
}

/// Runs a statement with one bound string parameter.
///
/// # Errors
/// As [`exec`].
pub async fn exec_bound(
    conn: &mut MySqlConnection,
    purpose: &'static str,
    sql: &'static str,
    value: &str,
    timeout: Duration,
) -> Result<()> {
    match tokio::time::timeout(timeout, sqlx::query(sql).bind(value).execute(&mut *conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::sql(purpose, e, &[])),
        Err(_) => Err(Error::Timeout {
            what: purpose,
            waited: timeout,
            last: "no answer".into(),
        }),
    }
}

/// Runs a query and returns its rows.
///
/// # Errors
/// As [`exec`].
pub async fn rows(
    conn: &mut MySqlConnection,
    purpose: &'static str,
    sql: &'static str,
    timeout: Duration,
) -> Result<Vec<MySqlRow>> {
    match tokio::time::timeout(timeout, sqlx::raw_sql(sql).fetch_all(&mut *conn)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(Error::sql(purpose, e, &[])),
        Err(_) => Err(Error::Timeout {
            what: purpose,
            waited: timeout,
            last: "no answer".into(),
        }),
    }
}

/// A column of `row` as text, whatever its SQL type (`None` for NULL or no such column).
pub fn text(row: &MySqlRow, column: &str) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(column) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(column) {
        return v.map(|b| String::from_utf8_lossy(&b).into_owned());
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(column) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(column) {
        return v.map(|n| n.to_string());
    }
    None
}

/// The first column of the first row of `sql`, as text.
///
/// # Errors
/// As [`exec`].
pub async fn scalar(
    conn: &mut MySqlConnection,
    purpose: &'static str,
    sql: &'static str,
    timeout: Duration,
) -> Result<Option<String>> {
    let rows = rows(conn, purpose, sql, timeout).await?;
    Ok(rows.first().and_then(|row| {
        use sqlx::Column as _;
        let name = row.columns().first()?.name().to_owned();
        text(row, &name)
    }))
}

/// Closes a connection, ignoring errors (the server may be going away).
pub async fn close(conn: MySqlConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
}
