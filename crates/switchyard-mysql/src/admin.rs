//! Administration: online variables, local DDL, the replica type-conversion variable and clean
//! shutdown.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use switchyard_plan::versions::Flavor;
use tokio::time::Instant;

use crate::error::{Error, ServerError};
use crate::instance::{Instance, Param, Sql};
use crate::sql::{quote_identifier, validate_variable_name};

/// What [`Instance::set_variables`] did, variable by variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SetVariablesReport {
    /// Variables set.
    pub applied: Vec<String>,
    /// Variables the server refused because they cannot change while it runs (error 1238):
    /// they need a restart with a new configuration file.
    pub read_only: Vec<VariableRefusal>,
    /// Variables the server refused for another reason (unknown variable, bad value, ...).
    pub refused: Vec<VariableRefusal>,
}

/// A variable the server refused, with what it said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VariableRefusal {
    /// The variable.
    pub name: String,
    /// What the server said.
    #[serde(serialize_with = "server_error_text")]
    pub server: ServerError,
}

fn server_error_text<S: serde::Serializer>(e: &ServerError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// How the local DDL was kept from the other servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalDdlMethod {
    /// `sql_log_bin = 0` for the session: not written to the binary log, so not replicated.
    BinlogOff,
    /// Galera's rolling schema upgrade (`wsrep_OSU_method = 'RSU'`): the node desyncs, applies
    /// the change alone and rejoins.
    RollingSchemaUpgrade,
}

/// The replica type-conversion modes (`replica_type_conversions` on MySQL,
/// `slave_type_conversions` on MariaDB). All off means column types must match exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct TypeConversions {
    /// `ALL_LOSSY`: conversions that may lose information (never safe for a rolling change).
    pub all_lossy: bool,
    /// `ALL_NON_LOSSY`: widening conversions.
    pub all_non_lossy: bool,
    /// `ALL_SIGNED`: promoted integers are treated as signed.
    pub all_signed: bool,
    /// `ALL_UNSIGNED`: promoted integers are treated as unsigned.
    pub all_unsigned: bool,
}

impl fmt::Display for TypeConversions {
    /// The server's form: `ALL_NON_LOSSY,ALL_UNSIGNED`, or the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.all_lossy, "ALL_LOSSY"),
            (self.all_non_lossy, "ALL_NON_LOSSY"),
            (self.all_signed, "ALL_SIGNED"),
            (self.all_unsigned, "ALL_UNSIGNED"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&set.join(","))
    }
}

impl FromStr for TypeConversions {
    type Err = Error;

    /// Reads a comma-separated list of the four modes, in any letter case; empty is none.
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut c = TypeConversions::default();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.to_ascii_uppercase().as_str() {
                "ALL_LOSSY" => c.all_lossy = true,
                "ALL_NON_LOSSY" => c.all_non_lossy = true,
                "ALL_SIGNED" => c.all_signed = true,
                "ALL_UNSIGNED" => c.all_unsigned = true,
                _ => {
                    return Err(Error::InvalidInput {
                        what: "type conversion mode",
                        reason: format!(
                            "{word:?} is not a mode: use ALL_LOSSY, ALL_NON_LOSSY, ALL_SIGNED or ALL_UNSIGNED"
                        ),
                    });
                }
            }
        }
        Ok(c)
    }
}

/// Chooses how to bind a variable's value: an integer, a decimal number or a string.
fn variable_param(value: &str) -> Param {
    let trimmed = value.trim();
    if let Ok(i) = trimmed.parse::<i64>() {
        Param::Int(i)
    } else if trimmed.contains(['.', 'e', 'E'])
        && let Ok(f) = trimmed.parse::<f64>()
        && f.is_finite()
    {
        Param::Float(f)
    } else {
        Param::Text(value.to_owned())
    }
}

impl Instance {
    /// Sets global variables online: `SET GLOBAL `name` = ?` for each, the name validated
    /// against `^[a-z0-9_]+$` and quoted, the value bound (as an integer when it reads as one,
    /// a decimal number when it reads as one, otherwise a string, so `ON`, `'+00:00'`).
    ///
    /// Every name is validated before anything is sent. Variables the server refuses are
    /// reported, not raised: [`SetVariablesReport::read_only`] for those that need a restart
    /// (error 1238), [`SetVariablesReport::refused`] for the rest.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name (nothing set); connection failures.
    pub async fn set_variables(
        &self,
        variables: &[(&str, &str)],
    ) -> Result<SetVariablesReport, Error> {
        for (name, _) in variables {
            validate_variable_name(name)?;
        }
        let purpose = "set a global variable";
        let mut session = self.session(purpose, None).await?;
        let mut report = SetVariablesReport::default();
        let mut failure = None;
        for (name, value) in variables {
            let sql = format!("SET GLOBAL {} = ?", quote_identifier(name));
            let d = self.statement_deadline(None);
            let param = variable_param(value);
            match session
                .exec_bound(purpose, Sql::Built(sql), &[param], d)
                .await
            {
                Ok(_) => report.applied.push((*name).to_owned()),
                Err(Error::Statement { server, .. }) => {
                    let refusal = VariableRefusal {
                        name: (*name).to_owned(),
                        server,
                    };
                    if refusal.server.code == 1238 {
                        report.read_only.push(refusal);
                    } else {
                        report.refused.push(refusal);
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.release(session);
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Runs one DDL statement on this server only: with the binary log off for the session
    /// (`SET SESSION sql_log_bin = 0`) on a replication member, or with Galera's rolling
    /// schema upgrade (`SET SESSION wsrep_OSU_method = 'RSU'`) on a Galera node, and
    /// `SET SESSION lock_wait_timeout = ?` so that a DDL waiting for a metadata lock gives up
    /// (error 1205) instead of stalling every query queued behind it.
    ///
    /// The statement runs on a connection of its own as a prepared statement, so the server
    /// accepts exactly one statement. Its SQL is the schema change itself (checked by the
    /// caller's DDL analysis), not a value to bind. The client waits at most
    /// [`Timeouts::ddl`](crate::Timeouts::ddl); past it the statement is killed.
    ///
    /// # Errors
    /// [`Error::Statement`] when the server refuses it (1205 when the lock wait timed out),
    /// [`Error::Timeout`], connection failures.
    pub async fn run_local_ddl(
        &self,
        ddl: &str,
        lock_wait_timeout: Duration,
    ) -> Result<LocalDdlMethod, Error> {
        let purpose = "run a schema change locally";
        let mut session = self.connect(purpose, None).await?;
        let d = self.statement_deadline(None);
        let wsrep = session
            .query_text(
                "check for Galera",
                Sql::Static("SHOW SESSION VARIABLES WHERE Variable_name = 'wsrep_on'"),
                d,
            )
            .await?
            .first()
            .and_then(|r| r.text(1))
            .is_some_and(|v| crate::observe::flag(&v));
        let method = if wsrep {
            session
                .exec(
                    "switch the session to rolling schema upgrade",
                    Sql::Static("SET SESSION wsrep_OSU_method = 'RSU'"),
                    d,
                )
                .await?;
            LocalDdlMethod::RollingSchemaUpgrade
        } else {
            session
                .exec(
                    "turn the binary log off for the session",
                    Sql::Static("SET SESSION sql_log_bin = 0"),
                    d,
                )
                .await?;
            LocalDdlMethod::BinlogOff
        };
        let wait = i64::try_from(lock_wait_timeout.as_secs().max(1)).unwrap_or(i64::MAX);
        session
            .exec_bound(
                "bound the schema change's lock wait",
                Sql::Static("SET SESSION lock_wait_timeout = ?"),
                &[Param::Int(wait)],
                d,
            )
            .await?;
        let ddl_deadline = Instant::now() + self.inner.timeouts.ddl;
        let thread = session.connection_id;
        let result = session
            .exec_bound(purpose, Sql::Built(ddl.to_owned()), &[], ddl_deadline)
            .await;
        if let Err(Error::Timeout { .. }) = &result {
            // The server goes on with the statement after the client gives up: stop it.
            let _killed = self.kill_query(thread).await;
        }
        session.close().await;
        result.map(|_| method)
    }

    async fn kill_query(&self, thread: u64) -> Result<(), Error> {
        let mut session = self.connect("stop a timed-out statement", None).await?;
        let d = self.statement_deadline(None);
        let result = session
            .exec(
                "stop a timed-out statement",
                Sql::Built(format!("KILL QUERY {thread}")),
                d,
            )
            .await;
        session.close().await;
        result.map(drop)
    }

    /// Sets the replica type-conversion variable (`replica_type_conversions` on MySQL,
    /// `slave_type_conversions` on MariaDB; the value bound) and returns its previous value, to
    /// restore with a second call.
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`].
    pub async fn set_type_conversions(
        &self,
        conversions: TypeConversions,
    ) -> Result<TypeConversions, Error> {
        let purpose = "set the replica type conversions";
        let mut session = self.session(purpose, None).await?;
        let d = self.statement_deadline(None);
        let result = async {
            let (read, write) = match session.flavor() {
                Flavor::Mysql => (
                    "SELECT @@GLOBAL.replica_type_conversions",
                    "SET GLOBAL replica_type_conversions = ?",
                ),
                Flavor::Mariadb => (
                    "SELECT @@GLOBAL.slave_type_conversions",
                    "SET GLOBAL slave_type_conversions = ?",
                ),
            };
            let rows = session.query_text(purpose, Sql::Static(read), d).await?;
            let previous_text = rows.first().and_then(|r| r.text(0)).unwrap_or_default();
            let previous =
                previous_text
                    .parse::<TypeConversions>()
                    .map_err(|_| Error::UnexpectedAnswer {
                        instance: session.label().to_owned(),
                        purpose,
                        detail: format!("the type conversion variable reads {previous_text:?}"),
                    })?;
            session
                .exec_bound(
                    purpose,
                    Sql::Static(write),
                    &[Param::Text(conversions.to_string())],
                    d,
                )
                .await?;
            Ok(previous)
        }
        .await;
        self.release(session);
        result
    }

    /// Shuts the server down cleanly before a version change: `SET GLOBAL
    /// innodb_fast_shutdown = 0` (a slow shutdown: purge and change-buffer merge complete, as
    /// the vendors ask before an upgrade), then `SHUTDOWN`, then waits at most `timeout` until
    /// the server no longer accepts connections.
    ///
    /// The process may still be flushing when its listener has closed: wait for it to exit
    /// before touching its data directory.
    ///
    /// # Errors
    /// Connection failures, [`Error::Statement`], and [`Error::Timeout`] when the server still
    /// listens after `timeout`.
    pub async fn clean_shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let purpose = "shut the server down cleanly";
        let deadline = Instant::now() + timeout;
        self.release_fence_lock().await;
        self.forget_connection();
        let mut session = self.connect(purpose, Some(deadline)).await?;
        let d = self.statement_deadline(Some(deadline));
        session
            .exec(
                "ask for a slow shutdown",
                Sql::Static("SET GLOBAL innodb_fast_shutdown = 0"),
                d,
            )
            .await?;
        match session.exec(purpose, Sql::Static("SHUTDOWN"), d).await {
            // The server may close the connection before or after answering.
            Ok(_) | Err(Error::Connection { .. } | Error::Down { .. }) => {}
            Err(e) => return Err(e),
        }
        drop(session);
        let addr = (self.inner.addr.host.clone(), self.inner.addr.port);
        loop {
            match tokio::net::TcpStream::connect(addr.clone()).await {
                Err(_) => return Ok(()),
                Ok(_still_listening) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            instance: self.label().to_owned(),
                            purpose: "wait for the server to stop listening after SHUTDOWN",
                            waited: timeout,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_bind_as_numbers_when_they_read_as_numbers() {
        assert_eq!(variable_param("1000"), Param::Int(1000));
        assert_eq!(variable_param("-1"), Param::Int(-1));
        assert_eq!(variable_param("0.5"), Param::Float(0.5));
        assert_eq!(variable_param("ON"), Param::Text("ON".to_owned()));
        assert_eq!(variable_param("+00:00"), Param::Text("+00:00".to_owned()));
        assert_eq!(variable_param("inf"), Param::Text("inf".to_owned()));
    }

    #[test]
    fn type_conversions_round_trip() {
        let c: TypeConversions = "all_non_lossy, ALL_UNSIGNED".parse().expect("parses");
        assert_eq!(c.to_string(), "ALL_NON_LOSSY,ALL_UNSIGNED");
        assert_eq!(
            "".parse::<TypeConversions>().expect("empty"),
            TypeConversions::default()
        );
        assert!("ALL_NONE".parse::<TypeConversions>().is_err());
    }
}
