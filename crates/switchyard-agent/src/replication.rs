//! Replication as the agent sees it: the replica's state (for readiness) and the one time
//! the agent starts replication itself, on a copy it just provisioned, from the copy's GTID
//! position.
//!
//! The statements are the ones switchyard-mysql's `configure_replica` uses (GTID
//! positioning, no TLS to the source, MySQL asking for the source's RSA key, a connect retry
//! of one second); literals are validated and quoted, never logged.

use std::time::Duration;

use serde::Serialize;
use sqlx::mysql::MySqlConnection;
use switchyard_mysql::sql::{quote_literal, validate_host, validate_password, validate_user};
use switchyard_plan::versions::Flavor;

use crate::config::{Account, Source};
use crate::error::{Error, Result};
use crate::local::{self, LOCAL_TIMEOUT};

/// A replica's state, from `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaState {
    /// The source it is configured with.
    pub source_host: String,
    /// The source's port.
    pub source_port: u16,
    /// Whether the receiver (I/O) thread runs (`Yes`).
    pub io_running: bool,
    /// Whether the applier (SQL) thread runs.
    pub sql_running: bool,
    /// Seconds behind the source (`None` while a thread is stopped).
    pub lag_seconds: Option<u64>,
    /// The receiver's last error.
    pub last_io_error: String,
    /// The applier's last error.
    pub last_sql_error: String,
}

/// Reads the replica state; `None` when replication is not configured (a primary).
///
/// # Errors
/// [`Error::Sql`], [`Error::Timeout`].
pub async fn replica_state(
    conn: &mut MySqlConnection,
    flavor: Flavor,
    timeout: Duration,
) -> Result<Option<ReplicaState>> {
    let sql = match flavor {
        Flavor::Mysql => "SHOW REPLICA STATUS",
        Flavor::Mariadb => "SHOW SLAVE STATUS",
    };
    let rows = local::rows(conn, "read the replica status", sql, timeout).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let get = |mysql: &str, mariadb: &str| {
        local::text(
            row,
            match flavor {
                Flavor::Mysql => mysql,
                Flavor::Mariadb => mariadb,
            },
        )
        .unwrap_or_default()
    };
    let host = get("Source_Host", "Master_Host");
    if host.is_empty() {
        return Ok(None);
    }
    Ok(Some(ReplicaState {
        source_host: host,
        source_port: get("Source_Port", "Master_Port").parse().unwrap_or(0),
        io_running: get("Replica_IO_Running", "Slave_IO_Running") == "Yes",
        sql_running: get("Replica_SQL_Running", "Slave_SQL_Running") == "Yes",
        lag_seconds: get("Seconds_Behind_Source", "Seconds_Behind_Master")
            .parse()
            .ok(),
        last_io_error: get("Last_IO_Error", "Last_IO_Error"),
        last_sql_error: get("Last_SQL_Error", "Last_SQL_Error"),
    }))
}

/// Readiness of a server that answers: a primary (no replication configured) is ready; a
/// replica only with both threads running and at most `max_lag_seconds` behind. The error
/// says why not.
///
/// # Errors
/// The reason, for `/readyz`'s body.
pub fn judge(state: Option<&ReplicaState>, max_lag_seconds: u64) -> Result<(), String> {
    let Some(s) = state else {
        return Ok(());
    };
    let source = format!("{}:{}", s.source_host, s.source_port);
    if !s.io_running {
        let why = if s.last_io_error.is_empty() {
            String::new()
        } else {
            format!(": {}", s.last_io_error)
        };
        return Err(format!(
            "replica of {source}: receiver thread not running{why}"
        ));
    }
    if !s.sql_running {
        let why = if s.last_sql_error.is_empty() {
            String::new()
        } else {
            format!(": {}", s.last_sql_error)
        };
        return Err(format!(
            "replica of {source}: applier thread not running{why}"
        ));
    }
    match s.lag_seconds {
        Some(lag) if lag <= max_lag_seconds => Ok(()),
        Some(lag) => Err(format!(
            "replica of {source}: lagging {lag} s behind, more than the bound of {max_lag_seconds} s"
        )),
        None => Err(format!("replica of {source}: lag unknown")),
    }
}

/// Points the (read-only, not replicating) local server at `source` with `account` and
/// starts replication from the copy's position: on MariaDB `gtid` (the copy's
/// `gtid_binlog_pos`), which becomes both its replica position and the state its own binary
/// log starts from (so replicas may later follow it from there); on MySQL the copy carries
/// its executed set, and auto-positioning asks the source for what follows it.
///
/// # Errors
/// [`Error::InvalidConfig`] for a source or account that fails validation, [`Error::Sql`]
/// / [`Error::SqlWithheld`].
pub async fn start_from_copy(
    conn: &mut MySqlConnection,
    flavor: Flavor,
    source: &Source,
    account: &Account,
    gtid: Option<&str>,
) -> Result<()> {
    let invalid = |e: switchyard_mysql::Error| Error::InvalidConfig {
        what: "replication source",
        path: "instance.json".into(),
        reason: e.to_string(),
    };
    validate_host(&source.host).map_err(invalid)?;
    validate_user(&account.user).map_err(invalid)?;
    validate_password(account.password.expose()).map_err(invalid)?;
    let host = quote_literal(&source.host);
    let user = quote_literal(&account.user);
    let password = quote_literal(account.password.expose());
    let port = source.port;
    let secret = [account.password.expose()];
    match flavor {
        Flavor::Mysql => {
            local::exec(
                conn,
                "stop replication",
                "STOP REPLICA".into(),
                &[],
                LOCAL_TIMEOUT,
            )
            .await?;
            let change = format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {host}, SOURCE_PORT = {port}, \
                 SOURCE_USER = {user}, SOURCE_PASSWORD = {password}, SOURCE_AUTO_POSITION = 1, \
                 SOURCE_SSL = 0, GET_SOURCE_PUBLIC_KEY = 1, SOURCE_CONNECT_RETRY = 1"
            );
            local::exec(
                conn,
                "point the copy at its source",
                change,
                &secret,
                LOCAL_TIMEOUT,
            )
            .await?;
            local::exec(
                conn,
                "start replication",
                "START REPLICA".into(),
                &[],
                LOCAL_TIMEOUT,
            )
            .await
        }
        Flavor::Mariadb => {
            local::exec(
                conn,
                "stop replication",
                "STOP SLAVE".into(),
                &[],
                LOCAL_TIMEOUT,
            )
            .await?;
            // A copy that already replicated past its position (an earlier try whose
            // answer was lost, or a container restarted before the copy was marked done)
            // keeps its replica position: setting it back would apply again what it has.
            let progressed = match gtid.filter(|g| !g.is_empty()) {
                Some(copy) => {
                    let at = local::scalar(
                        conn,
                        "read the copy's replica position",
                        "SELECT @@GLOBAL.gtid_slave_pos",
                        LOCAL_TIMEOUT,
                    )
                    .await?;
                    at.is_some_and(|at| replicated_past(copy, &at))
                }
                None => false,
            };
            if let Some(gtid) = gtid.filter(|g| !g.is_empty() && !progressed) {
                local::exec(
                    conn,
                    "empty the copy's binary log",
                    "RESET MASTER".into(),
                    &[],
                    LOCAL_TIMEOUT,
                )
                .await?;
                local::exec_bound(
                    conn,
                    "start the copy's binary log state at the copy's position",
                    "SET GLOBAL gtid_binlog_state = ?",
                    gtid,
                    LOCAL_TIMEOUT,
                )
                .await?;
                local::exec_bound(
                    conn,
                    "set the copy's replica position",
                    "SET GLOBAL gtid_slave_pos = ?",
                    gtid,
                    LOCAL_TIMEOUT,
                )
                .await?;
            }
            let change = format!(
                "CHANGE MASTER TO MASTER_HOST = {host}, MASTER_PORT = {port}, \
                 MASTER_USER = {user}, MASTER_PASSWORD = {password}, \
                 MASTER_USE_GTID = slave_pos, MASTER_SSL = 0, MASTER_CONNECT_RETRY = 1"
            );
            local::exec(
                conn,
                "point the copy at its source",
                change,
                &secret,
                LOCAL_TIMEOUT,
            )
            .await?;
            local::exec(
                conn,
                "start replication",
                "START SLAVE".into(),
                &[],
                LOCAL_TIMEOUT,
            )
            .await
        }
    }
}

/// Whether a MariaDB replica position `at` is past the copy's position `copy` in one of
/// the copy's replication domains: the copy has applied transactions from its source since.
/// Unparsable text counts as not past (the position is then set from the copy, as before).
fn replicated_past(copy: &str, at: &str) -> bool {
    use switchyard_plan::gtid::MariadbGtidPos;
    let (Ok(copy), Ok(at)) = (MariadbGtidPos::parse(copy), MariadbGtidPos::parse(at)) else {
        return false;
    };
    copy.iter()
        .any(|c| at.get(c.domain).is_some_and(|a| a.seq > c.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_that_replicated_past_its_position_is_not_set_back() {
        assert!(replicated_past("0-1001-1072", "0-1001-1073"));
        assert!(replicated_past("0-1001-1072,1-7-3", "0-1001-1072,1-7-4"));
        // Not past: the same, older, another domain only, or unknown.
        assert!(!replicated_past("0-1001-1072", "0-1001-1072"));
        assert!(!replicated_past("0-1001-1072", "0-1001-900"));
        assert!(!replicated_past("0-1001-1072", "1-5-3000"));
        assert!(!replicated_past("0-1001-1072", ""));
        assert!(!replicated_past("0-1001-1072", "garbage"));
    }

    fn replica(io: bool, sql: bool, lag: Option<u64>) -> ReplicaState {
        ReplicaState {
            source_host: "db-0".into(),
            source_port: 3306,
            io_running: io,
            sql_running: sql,
            lag_seconds: lag,
            last_io_error: if io {
                String::new()
            } else {
                "error connecting".into()
            },
            last_sql_error: String::new(),
        }
    }

    #[test]
    fn a_replica_is_ready_only_running_and_within_the_lag_bound() {
        assert_eq!(judge(None, 0), Ok(()));
        assert_eq!(judge(Some(&replica(true, true, Some(3))), 3), Ok(()));
        let e = judge(Some(&replica(true, true, Some(4))), 3).unwrap_err();
        assert!(
            e.contains("lagging 4 s") && e.contains("bound of 3 s"),
            "{e}"
        );
        let e = judge(Some(&replica(false, true, None)), 3).unwrap_err();
        assert!(
            e.contains("receiver") && e.contains("error connecting"),
            "{e}"
        );
        let e = judge(Some(&replica(true, false, None)), 3).unwrap_err();
        assert!(e.contains("applier"), "{e}");
        let e = judge(Some(&replica(true, true, None)), 3).unwrap_err();
        assert!(e.contains("unknown"), "{e}");
    }
}
