//! Reading variable metadata, values and accounts from a live server, and applying an online
//! change to one instance.
//!
//! # How MySQL is asked whether a variable changes online
//! MariaDB publishes a read-only flag (`SYSTEM_VARIABLES.READ_ONLY`); MySQL does not, and
//! neither server has a dry run for `SET GLOBAL`. switchyard asks MySQL with
//!
//! ```sql
//! SET GLOBAL `name` = (1, 2)
//! ```
//!
//! which can never change anything: the server resolves the assignment before it checks or
//! sets any value, and resolving refuses a read-only variable first (error 1238, "is a read
//! only variable": **static**), a session-only one next (1228), and only then looks at the
//! value, a two-column row that no variable takes (1241, "Operand should contain 1 column(s)":
//! **dynamic**). An unknown name gives 1193. None of these reaches the variable's own check or
//! update code, so plugin validation functions with side effects (InnoDB's buffer-pool resize
//! check records the requested size) are never run, and `performance_schema.variables_info`
//! keeps its `VARIABLE_SOURCE` and `SET_TIME` (the tests check both).
//!
//! The obvious alternative, `SET @@GLOBAL.x = @@GLOBAL.x`, is *not* harmless: on a dynamic
//! variable it succeeds, marks the variable as set at run time (`VARIABLE_SOURCE = DYNAMIC`,
//! `SET_TIME`, `SET_USER`), runs the variable's update code (some re-open files or resize
//! buffers even to the same value), and may not round-trip (a value the server shows rounded).
//!
//! # Connections
//! Values, accounts and the `SET GLOBAL`s go through the topology client
//! ([`switchyard_mysql::Instance`]). The metadata tables and the probe use a connection of
//! their own, opened from the same address and credentials; every statement is bounded by a
//! timeout, statement logging is off and no error carries the password.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};
use switchyard_mysql::sql::quote_identifier;
use switchyard_mysql::{Credentials, Instance, InstanceAddr, TlsMode};
use switchyard_plan::versions::{Flavor, ServerVersion};

use crate::error::ConfigError;
use crate::metadata::{MariadbRow, Mutability, MysqlRow, Scope, ServerMetadata, VariableInfo};
use crate::name::normalize_name;
use crate::preflight::Account;

/// How long one connection or statement may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One variable set online, as asked and as the server then reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedValue {
    /// The variable.
    pub name: String,
    /// The value before.
    pub previous: Option<String>,
    /// The value asked for.
    pub requested: String,
    /// The value the server reports afterwards (servers round some values, such as
    /// `innodb_buffer_pool_size` to whole chunks).
    pub effective: Option<String>,
    /// What the server warned while setting it (1292 when it clamped or rounded the value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What [`ConfigServer::apply_online`] did on one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Every variable, in the order set.
    pub values: Vec<AppliedValue>,
}

/// One MySQL or MariaDB server as switchyard-config talks to it.
///
/// `Debug` shows the topology client's handle only: the connect options hold the password.
#[derive(Clone)]
pub struct ConfigServer {
    instance: Instance,
    options: MySqlConnectOptions,
}

impl std::fmt::Debug for ConfigServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigServer")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl ConfigServer {
    /// The server `name` at `addr`, used with the operator account `credentials` (the same the
    /// topology client uses). Nothing connects until the first operation.
    pub fn new(name: impl Into<String>, addr: InstanceAddr, credentials: Credentials) -> Self {
        let options = MySqlConnectOptions::new()
            .host(&addr.host)
            .port(addr.port)
            .username(&credentials.user)
            .password(credentials.password.expose())
            .charset("utf8mb4")
            .ssl_mode(MySqlSslMode::Preferred)
            .disable_statement_logging();
        ConfigServer {
            instance: Instance::new(name, addr, credentials),
            options,
        }
    }

    /// The same server reached with another TLS mode (both for reads and for `SET GLOBAL`).
    pub fn with_tls(mut self, tls: TlsMode) -> Self {
        self.options = match &tls {
            TlsMode::Disabled => self.options.ssl_mode(MySqlSslMode::Disabled),
            TlsMode::Required => self.options.ssl_mode(MySqlSslMode::Required),
            TlsMode::VerifyCa { ca_pem } => self
                .options
                .ssl_mode(MySqlSslMode::VerifyCa)
                .ssl_ca_from_pem(ca_pem.clone()),
            TlsMode::VerifyIdentity { ca_pem } => self
                .options
                .ssl_mode(MySqlSslMode::VerifyIdentity)
                .ssl_ca_from_pem(ca_pem.clone()),
            _ => self.options.ssl_mode(MySqlSslMode::Preferred),
        };
        self.instance = self.instance.with_tls(tls);
        self
    }

    /// The topology client's handle on this server.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// `name (host:port)`, as errors name the server.
    pub fn label(&self) -> &str {
        self.instance.label()
    }

    /// Reads the server's version and the metadata of every variable. On MySQL, whether a
    /// variable changes online is probed (see the [module](self) documentation) for the
    /// variables in `probe` (any spelling; the others stay [`Mutability::Unknown`]); on MariaDB
    /// the server says it for all.
    ///
    /// # Errors
    /// [`ConfigError::Connect`], [`ConfigError::Query`], [`ConfigError::Timeout`];
    /// [`ConfigError::MetadataUnavailable`] on MySQL before 8.3 or with `performance_schema`
    /// off; [`ConfigError::Probe`] when the probe gets an unexpected answer.
    pub async fn metadata(&self, probe: &[&str]) -> Result<ServerMetadata, ConfigError> {
        let mut conn = self.connect("read variable metadata").await?;
        let result = self.read_metadata(&mut conn, probe).await;
        let _ = conn.close().await;
        result
    }

    async fn read_metadata(
        &self,
        conn: &mut MySqlConnection,
        probe: &[&str],
    ) -> Result<ServerMetadata, ConfigError> {
        let version = self.version(conn).await?;
        let mut variables = BTreeMap::new();
        match version.flavor {
            Flavor::Mariadb => {
                let rows = self
                    .rows(
                        conn,
                        "read information_schema.SYSTEM_VARIABLES",
                        "SELECT VARIABLE_NAME, VARIABLE_SCOPE, VARIABLE_TYPE, NUMERIC_MIN_VALUE, \
                         NUMERIC_MAX_VALUE, NUMERIC_BLOCK_SIZE, ENUM_VALUE_LIST, READ_ONLY, \
                         COMMAND_LINE_ARGUMENT, GLOBAL_VALUE FROM information_schema.SYSTEM_VARIABLES"
                            .to_owned(),
                    )
                    .await?;
                for mut r in rows {
                    let mut take = |i: usize| r.get_mut(i).and_then(Option::take);
                    let info = VariableInfo::from_mariadb(MariadbRow {
                        name: take(0).unwrap_or_default(),
                        scope: take(1).unwrap_or_default(),
                        kind: take(2).unwrap_or_default(),
                        min: take(3),
                        max: take(4),
                        block: take(5),
                        enum_values: take(6),
                        read_only: take(7).unwrap_or_default(),
                        command_line: take(8),
                        global_value: take(9),
                    });
                    variables.insert(info.name.clone(), info);
                }
            }
            Flavor::Mysql => {
                if version.version < switchyard_plan::versions::Version::new(8, 3, 0) {
                    return Err(ConfigError::MetadataUnavailable {
                        instance: self.label().to_owned(),
                        reason: format!(
                            "{version} has no performance_schema.variables_metadata (added in \
                             MySQL 8.3.0): upgrade first, or change its configuration by restart"
                        ),
                    });
                }
                let rows = self
                    .rows(
                        conn,
                        "read performance_schema.variables_metadata",
                        "SELECT m.VARIABLE_NAME, CAST(m.VARIABLE_SCOPE AS CHAR), \
                         CAST(m.DATA_TYPE AS CHAR), m.MIN_VALUE, m.MAX_VALUE, g.VARIABLE_VALUE \
                         FROM performance_schema.variables_metadata m LEFT JOIN \
                         performance_schema.global_variables g ON g.VARIABLE_NAME = m.VARIABLE_NAME"
                            .to_owned(),
                    )
                    .await?;
                if rows.is_empty() {
                    return Err(ConfigError::MetadataUnavailable {
                        instance: self.label().to_owned(),
                        reason: "performance_schema.variables_metadata is empty: switchyard \
                                 needs performance_schema=ON on MySQL"
                            .to_owned(),
                    });
                }
                for mut r in rows {
                    let mut take = |i: usize| r.get_mut(i).and_then(Option::take);
                    let info = VariableInfo::from_mysql(MysqlRow {
                        name: take(0).unwrap_or_default(),
                        scope: take(1).unwrap_or_default(),
                        kind: take(2).unwrap_or_default(),
                        min: take(3),
                        max: take(4),
                        global_value: take(5),
                    });
                    variables.insert(info.name.clone(), info);
                }
                for raw in probe {
                    let Ok(name) = normalize_name(raw) else {
                        continue;
                    };
                    let Some(info) = variables.get_mut(&name) else {
                        continue;
                    };
                    if info.scope == Scope::SessionOnly {
                        continue;
                    }
                    info.mutability = self.probe(conn, &name).await?;
                }
            }
        }
        Ok(ServerMetadata {
            instance: self.label().to_owned(),
            version,
            variables,
        })
    }

    /// Whether MySQL can change `name` at run time, asked with a statement that cannot change
    /// anything (see the module documentation).
    async fn probe(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
    ) -> Result<Mutability, ConfigError> {
        let sql = format!("SET GLOBAL {} = (1, 2)", quote_identifier(name));
        let outcome = tokio::time::timeout(
            TIMEOUT,
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn),
        )
        .await
        .map_err(|_| self.timeout("probe whether a variable changes online"))?;
        let probe_error = |server: String| ConfigError::Probe {
            instance: self.label().to_owned(),
            variable: name.to_owned(),
            server,
        };
        match outcome {
            Ok(_) => Err(probe_error(
                "the server accepted a two-column value, which no variable takes".to_owned(),
            )),
            Err(sqlx::Error::Database(db)) => {
                let code = db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .map(sqlx::mysql::MySqlDatabaseError::number);
                match code {
                    Some(1238) => Ok(Mutability::Static),
                    Some(1241) => Ok(Mutability::Dynamic),
                    _ => Err(probe_error(format!(
                        "error {}: {}",
                        code.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                        db.message()
                    ))),
                }
            }
            Err(e) => Err(probe_error(e.to_string())),
        }
    }

    /// The global values of `names` (any spelling; `None` for NULL), read through the topology
    /// client. MariaDB prints booleans as `ON`/`OFF`, MySQL as `1`/`0` in this form.
    ///
    /// # Errors
    /// [`ConfigError::InvalidName`]; [`ConfigError::Topology`] for an unknown variable (1193)
    /// and connection failures.
    pub async fn global_values(
        &self,
        names: &[&str],
    ) -> Result<BTreeMap<String, Option<String>>, ConfigError> {
        let names = names
            .iter()
            .map(|n| normalize_name(n))
            .collect::<Result<Vec<String>, _>>()?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(self.instance.global_values(&names).await?)
    }

    /// The accounts of the server with their authentication plugin (`mysql.user`, read through
    /// the topology client; no credentials are read).
    ///
    /// # Errors
    /// [`ConfigError::Topology`].
    pub async fn accounts(&self) -> Result<Vec<Account>, ConfigError> {
        Ok(self
            .instance
            .accounts()
            .await?
            .into_iter()
            .map(|a| Account {
                user: a.user,
                host: a.host,
                plugin: a.plugin,
            })
            .collect())
    }

    /// Sets `variables` online on this instance (values in `SET GLOBAL` form, as in
    /// [`switchyard_plan::decide::OnlineChange::variables`]), then reads back what took effect.
    ///
    /// The values before are read first. When the server refuses any variable, the ones already
    /// set on this instance are set back to their previous values (in reverse order) and
    /// [`ConfigError::Refused`] names the variable, the instance and what the server said: the
    /// instance is left as it was, so the caller can roll the others back with
    /// [`crate::ChangePlan::rollback`]. Setting a variable to the value it has is harmless, so
    /// a repeated call is idempotent.
    ///
    /// # Errors
    /// [`ConfigError::Refused`], [`ConfigError::UndoFailed`], [`ConfigError::Topology`] and the
    /// read failures.
    pub async fn apply_online(
        &self,
        variables: &[(String, String)],
    ) -> Result<ApplyReport, ConfigError> {
        let names: Vec<&str> = variables.iter().map(|(n, _)| n.as_str()).collect();
        let before = self.global_values(&names).await?;
        let pairs: Vec<(&str, &str)> = variables
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let report = self.instance.set_variables(&pairs).await?;
        let refusal = report.read_only.first().or_else(|| report.refused.first());
        if let Some(refusal) = refusal {
            let mut undone = Vec::new();
            for name in report.applied.iter().rev() {
                let previous = before.get(name).cloned().flatten();
                let Some(previous) = previous else {
                    return Err(ConfigError::UndoFailed {
                        instance: self.label().to_owned(),
                        variable: name.clone(),
                        value: String::new(),
                        server: "its previous value was NULL, which SET GLOBAL cannot restore"
                            .to_owned(),
                    });
                };
                let undo = self
                    .instance
                    .set_variables(&[(name.as_str(), previous.as_str())])
                    .await;
                let failure = match undo {
                    Ok(r) if r.applied.len() == 1 => None,
                    Ok(r) => Some(
                        r.read_only
                            .iter()
                            .chain(&r.refused)
                            .map(|x| x.server.to_string())
                            .next()
                            .unwrap_or_default(),
                    ),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(server) = failure {
                    return Err(ConfigError::UndoFailed {
                        instance: self.label().to_owned(),
                        variable: name.clone(),
                        value: previous,
                        server,
                    });
                }
                undone.push(name.clone());
            }
            let value = variables
                .iter()
                .find(|(n, _)| *n == refusal.name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            return Err(ConfigError::Refused {
                instance: self.label().to_owned(),
                variable: refusal.name.clone(),
                value,
                server: refusal.server.to_string(),
                undone: undone.join(", "),
            });
        }
        let after = self.global_values(&names).await?;
        Ok(ApplyReport {
            values: variables
                .iter()
                .map(|(name, requested)| AppliedValue {
                    name: name.clone(),
                    previous: before.get(name).cloned().flatten(),
                    requested: requested.clone(),
                    effective: after.get(name).cloned().flatten(),
                    warnings: report
                        .warnings
                        .iter()
                        .filter(|w| w.name == *name)
                        .map(|w| w.server.to_string())
                        .collect(),
                })
                .collect(),
        })
    }

    async fn connect(&self, purpose: &'static str) -> Result<MySqlConnection, ConfigError> {
        match tokio::time::timeout(TIMEOUT, MySqlConnection::connect_with(&self.options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ConfigError::Connect {
                instance: self.label().to_owned(),
                purpose,
                detail: e.to_string(),
            }),
            Err(_) => Err(self.timeout(purpose)),
        }
    }

    async fn version(&self, conn: &mut MySqlConnection) -> Result<ServerVersion, ConfigError> {
        let rows = self
            .rows(
                conn,
                "read the server version",
                "SELECT VERSION()".to_owned(),
            )
            .await?;
        let text = rows
            .into_iter()
            .next()
            .and_then(|mut r| r.swap_remove(0))
            .unwrap_or_default();
        ServerVersion::parse_reported(&text, None).map_err(|e| ConfigError::Query {
            instance: self.label().to_owned(),
            purpose: "read the server version",
            server: format!("{text:?} is not a version: {e}"),
        })
    }

    /// Runs `sql` (text protocol) and returns every column of every row as text.
    async fn rows(
        &self,
        conn: &mut MySqlConnection,
        purpose: &'static str,
        sql: String,
    ) -> Result<Vec<Vec<Option<String>>>, ConfigError> {
        let fetched = tokio::time::timeout(
            TIMEOUT,
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn),
        )
        .await
        .map_err(|_| self.timeout(purpose))?
        .map_err(|e| ConfigError::Query {
            instance: self.label().to_owned(),
            purpose,
            server: e.to_string(),
        })?;
        Ok(fetched.iter().map(text_columns).collect())
    }

    fn timeout(&self, purpose: &'static str) -> ConfigError {
        ConfigError::Timeout {
            instance: self.label().to_owned(),
            purpose,
            seconds: TIMEOUT.as_secs(),
        }
    }
}

fn text_columns(row: &MySqlRow) -> Vec<Option<String>> {
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i).unwrap_or_else(|_| {
                row.try_get::<Option<Vec<u8>>, _>(i)
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let server = ConfigServer::new(
            "db-0",
            InstanceAddr::new("127.0.0.1", 3306),
            Credentials::new("switchyard", "s3cret-Pa55"),
        );
        let shown = format!("{server:?}");
        assert!(
            shown.contains("db-0") && !shown.contains("s3cret-Pa55"),
            "{shown}"
        );
    }
}
