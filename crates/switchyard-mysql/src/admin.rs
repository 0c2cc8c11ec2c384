//! Administration: online variables, local DDL, the replica type-conversion variable and clean
//! shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use switchyard_plan::versions::Flavor;
use tokio::time::Instant;

use crate::error::{Error, ServerError};
use crate::instance::{Instance, Param, Sql};
use crate::lockout::Lifted;
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
    /// Warnings the server gave while setting applied variables, such as an out-of-range
    /// value clamped to the nearest allowed one (1292).
    pub warnings: Vec<VariableRefusal>,
}

/// An account as `mysql.user` lists it (no password or authentication string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    /// The user name.
    pub user: String,
    /// The host pattern.
    pub host: String,
    /// The authentication plugin (`caching_sha2_password`, `mysql_native_password`, ...).
    pub plugin: String,
}

/// A variable the server refused or warned about, with what it said.
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
            let param = variable_param(value);
            // Statements stay prepared on the connection, and MySQL keeps the parameter type
            // of a statement's first execution (a string bound later where an integer was
            // first would be converted, not refused): one statement text per type.
            let kind = match param {
                Param::Int(_) => "integer",
                Param::Float(_) => "decimal",
                Param::Text(_) => "string",
            };
            let sql = format!("SET GLOBAL {} = ? /* {kind} */", quote_identifier(name));
            let d = self.statement_deadline(None);
            match session
                .exec_bound(purpose, Sql::Built(sql), &[param], d)
                .await
            {
                Ok(_) => {
                    report.applied.push((*name).to_owned());
                    let warnings = session
                        .query_text(
                            "read the warnings of SET GLOBAL",
                            Sql::Static("SHOW WARNINGS"),
                            d,
                        )
                        .await;
                    match warnings {
                        Ok(rows) => {
                            report
                                .warnings
                                .extend(rows.iter().map(|row| {
                                    VariableRefusal {
                                        name: (*name).to_owned(),
                                        server: ServerError {
                                            code: row
                                                .get("Code")
                                                .and_then(|c| c.parse().ok())
                                                .unwrap_or(0),
                                            sqlstate: None,
                                            message: row.get("Message").unwrap_or("").to_owned(),
                                        },
                                    }
                                }))
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
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

    /// Reads global variables: `SELECT CAST(@@GLOBAL.`name` AS CHAR)` for each name, validated
    /// against `^[a-z0-9_]+$` and quoted. A NULL value reads as `None`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name (nothing is read), [`Error::Statement`] for an
    /// unknown variable (1193), connection failures.
    pub async fn global_values(
        &self,
        names: &[&str],
    ) -> Result<BTreeMap<String, Option<String>>, Error> {
        for name in names {
            validate_variable_name(name)?;
        }
        let purpose = "read global variables";
        let mut session = self.session(purpose, None).await?;
        let d = self.statement_deadline(None);
        let mut values = BTreeMap::new();
        let mut result = Ok(());
        for name in names {
            let sql = format!("SELECT CAST(@@GLOBAL.{} AS CHAR)", quote_identifier(name));
            match session.query_text(purpose, Sql::Built(sql), d).await {
                Ok(rows) => {
                    values.insert((*name).to_owned(), rows.first().and_then(|r| r.text(0)));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.release(session);
        result.map(|()| values)
    }

    /// The table's definition as the server prints it (`SHOW CREATE TABLE`, both names
    /// quoted as identifiers), for a schema-change analysis or for checking that a change
    /// took the shape it should.
    ///
    /// # Errors
    /// [`Error::Statement`] when the table does not exist (1146), connection failures.
    pub async fn show_create_table(&self, database: &str, table: &str) -> Result<String, Error> {
        let purpose = "read the table's definition";
        let mut session = self.session(purpose, None).await?;
        let d = self.statement_deadline(None);
        let sql = format!(
            "SHOW CREATE TABLE {}.{}",
            quote_identifier(database),
            quote_identifier(table)
        );
        let rows = session.query_text(purpose, Sql::Built(sql), d).await;
        self.release(session);
        let rows = rows?;
        rows.first()
            .and_then(|r| r.text(1))
            .ok_or_else(|| Error::UnexpectedAnswer {
                instance: self.label().to_owned(),
                purpose,
                detail: format!("SHOW CREATE TABLE printed no definition for {database}.{table}"),
            })
    }

    /// The server's accounts: `SELECT user, host, plugin FROM mysql.user` (on MariaDB a view
    /// over `mysql.global_priv`). Passwords and authentication strings are not read.
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`].
    pub async fn accounts(&self) -> Result<Vec<AccountInfo>, Error> {
        let purpose = "list the accounts";
        let mut session = self.session(purpose, None).await?;
        let d = self.statement_deadline(None);
        let rows = session
            .query_text(
                purpose,
                Sql::Static("SELECT user, host, plugin FROM mysql.user ORDER BY user, host"),
                d,
            )
            .await;
        self.release(session);
        Ok(rows?
            .iter()
            .map(|row| AccountInfo {
                user: row.text(0).unwrap_or_default(),
                host: row.text(1).unwrap_or_default(),
                plugin: row.text(2).unwrap_or_default(),
            })
            .collect())
    }

    /// Runs one DDL statement on this server only: with the binary log off for the session
    /// (`SET SESSION sql_log_bin = 0`) on a replication member, or with Galera's rolling
    /// schema upgrade (`SET SESSION wsrep_OSU_method = 'RSU'`) on a Galera node, and
    /// `SET SESSION lock_wait_timeout = ?` so that a DDL waiting for a metadata lock gives up
    /// (error 1205) instead of stalling every query queued behind it.
    ///
    /// On a MySQL server with `super_read_only` on (a replica, a fenced former primary),
    /// `super_read_only` is lifted for the statement behind a DDL lockout: every other client
    /// is kept out (accounts locked, connections killed) until it is back on, even when the
    /// statement fails. See the [`lockout`](mod@crate::lockout) module. On MariaDB, a fence's
    /// backup lock held by this handle is lifted the same way ([`Instance::run_member_ddl`]).
    ///
    /// The statement runs on a connection of its own as a prepared statement, so the server
    /// accepts exactly one statement. Its SQL is the schema change itself (checked by the
    /// caller's DDL analysis), not a value to bind. The client waits at most
    /// [`Timeouts::ddl`](crate::Timeouts::ddl); past it the statement is killed.
    ///
    /// # Errors
    /// [`Error::Statement`] when the server refuses it (1205 when the lock wait timed out),
    /// [`Error::Timeout`], connection failures; those of the lockout (when it could not be
    /// undone, [`Instance::release_ddl_lockout`] undoes it later).
    pub async fn run_local_ddl(
        &self,
        ddl: &str,
        lock_wait_timeout: Duration,
    ) -> Result<LocalDdlMethod, Error> {
        self.run_ddl_as(ddl, lock_wait_timeout, true, false)
            .await
            .map(|m| m.unwrap_or(LocalDdlMethod::BinlogOff))
    }

    /// Runs one DDL statement the ordinary way, replicated to every member: written to the
    /// binary log, and on a Galera node in total order (`wsrep_OSU_method = 'TOI'` for the
    /// session), which blocks every node's writes to the table, and on a copying change
    /// every node's commits, until all have run it. Only for a change a caller asked to run
    /// in total order; the rest as [`Instance::run_local_ddl`] describes (lock wait bound,
    /// one prepared statement, the DDL lockout where `super_read_only` is on).
    ///
    /// # Errors
    /// As [`Instance::run_local_ddl`].
    pub async fn run_replicated_ddl(
        &self,
        ddl: &str,
        lock_wait_timeout: Duration,
    ) -> Result<(), Error> {
        self.run_ddl_as(ddl, lock_wait_timeout, false, false)
            .await
            .map(drop)
    }

    /// Runs one schema change on this member only, as a rolling schema change does on each
    /// instance: [`Instance::run_local_ddl`] (binary log off or RSU, bounded lock wait).
    ///
    /// On a fenced former primary (`fenced_former_primary`, or on MariaDB whenever this handle
    /// holds a fence's backup lock) the fence, which would block the ALTER, is lifted for the
    /// statement behind the DDL lockout: every other client, however privileged, is kept out
    /// (accounts locked, connections killed) until the fence is back as it was (MySQL
    /// `super_read_only`; on MariaDB `read_only`, and the backup lock if this handle held it).
    /// See the [`lockout`](mod@crate::lockout) module. When it replicates, its applier is
    /// stopped around the ALTER, so that it applies nothing of the new shape before it has
    /// it, and started again even when the ALTER fails.
    ///
    /// Shared by the local and the Kubernetes runtimes; the callers check the table's shape
    /// before and after.
    ///
    /// # Errors
    /// As [`Instance::run_local_ddl`], and those of stopping or starting the applier.
    pub async fn run_member_ddl(
        &self,
        ddl: &str,
        lock_wait_timeout: Duration,
        fenced_former_primary: bool,
    ) -> Result<(), Error> {
        let pause_applier = fenced_former_primary
            && self
                .observe()
                .await?
                .replication
                .is_some_and(|r| r.sql_running);
        if pause_applier {
            self.stop_replication().await?;
        }
        let altered = self
            .run_ddl_as(ddl, lock_wait_timeout, true, fenced_former_primary)
            .await;
        if pause_applier {
            self.start_replication().await?;
        }
        altered.map(drop)
    }

    /// Runs `ddl` locally (returning how) or replicated (returning `None`), behind the DDL
    /// lockout where a fence must be lifted for it.
    async fn run_ddl_as(
        &self,
        ddl: &str,
        lock_wait_timeout: Duration,
        local: bool,
        fenced: bool,
    ) -> Result<Option<LocalDdlMethod>, Error> {
        let purpose = if local {
            "run a schema change locally"
        } else {
            "run a replicated schema change"
        };
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
        let method = if !local {
            if wsrep {
                session
                    .exec(
                        "switch the session to total order isolation",
                        Sql::Static("SET SESSION wsrep_OSU_method = 'TOI'"),
                        d,
                    )
                    .await?;
            }
            None
        } else if wsrep {
            session
                .exec(
                    "switch the session to rolling schema upgrade",
                    Sql::Static("SET SESSION wsrep_OSU_method = 'RSU'"),
                    d,
                )
                .await?;
            Some(LocalDdlMethod::RollingSchemaUpgrade)
        } else {
            session
                .exec(
                    "turn the binary log off for the session",
                    Sql::Static("SET SESSION sql_log_bin = 0"),
                    d,
                )
                .await?;
            Some(LocalDdlMethod::BinlogOff)
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
        // The lockout's gate makes new sessions read-only by default: this one is read-write.
        session
            .exec(
                "make the schema change's session read-write",
                Sql::Static("SET SESSION TRANSACTION READ WRITE"),
                d,
            )
            .await?;
        // What must be lifted for the statement: MySQL's super_read_only refuses DDL from
        // every account, the operator's included; MariaDB's fence lock makes it wait.
        let lifted = match session.flavor() {
            _ if wsrep => None,
            Flavor::Mysql => session
                .query_text(
                    "read super_read_only",
                    Sql::Static("SELECT @@GLOBAL.super_read_only"),
                    d,
                )
                .await?
                .first()
                .and_then(|r| r.text(0))
                .is_some_and(|v| crate::observe::flag(&v))
                .then_some(Lifted::SuperReadOnly),
            Flavor::Mariadb => {
                let held = self.holds_fence_lock().await;
                (fenced || held).then_some(Lifted::FenceLock(held))
            }
        };
        let mut ctrl = None;
        if let Some(lifted) = lifted {
            let mut lockout = self.lockout_session(None).await?;
            self.enter_lockout(&mut lockout, lifted, self.statement_deadline(None))
                .await?;
            ctrl = Some((lockout, lifted));
        }
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
        if let Some((mut lockout, lifted)) = ctrl {
            let left = self
                .leave_lockout(&mut lockout, lifted, self.statement_deadline(None))
                .await;
            lockout.close().await;
            left?;
        }
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
            let attempt = tokio::time::timeout_at(
                deadline.max(Instant::now() + Duration::from_millis(100)),
                tokio::net::TcpStream::connect(addr.clone()),
            )
            .await;
            match attempt {
                Ok(Err(_)) => return Ok(()),
                Err(_) | Ok(Ok(_)) => {
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
