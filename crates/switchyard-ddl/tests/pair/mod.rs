//! One primary and one GTID replica from the testbed, replaying schema-change cases the way a
//! rolling change runs them: the ALTER on the replica first with the binary log off, then
//! old-shape writes on the source, then a look at what the replica did with them.
//!
//! Cases run in batches, one replica type-conversion setting per batch: every trial's schema
//! (`<name>`, table `t`) is created on the source with the binary log on, every ALTER runs on
//! the replica, then every trial's writes run on the source, each trial's GTID position noted.
//! The replica's applier runs one transaction at a time (MySQL is set to one worker), so when
//! it stops or its server dies, the first trial whose position it has not reached is the one
//! that broke it: that trial is repaired by marking the source's transactions up to its
//! position as applied on the replica (empty transactions on MySQL, `gtid_slave_pos` on
//! MariaDB), and the wait goes on. Nothing after a trial touches its schema, so the servers
//! agree on everything else. Once the replica has applied the whole batch, each trial's table is
//! compared with the source's table altered the same way.

use std::fmt;
use std::time::Duration;

use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, Executor, MySqlConnection, Row};
use switchyard_mysql::sql::quote_identifier;
use switchyard_mysql::{Credentials, Instance, InstanceAddr, Timeouts, TypeConversions};
use switchyard_plan::versions::Flavor;
use switchyard_testbed::{Cluster, ServerKind, replication, wait_for};

/// How long the replica may take to apply a batch's writes or to stop on them. Generous: the
/// test shares two cores with other work; a healthy pair takes milliseconds per trial.
const APPLY_DEADLINE: Duration = Duration::from_secs(120);

/// The name of the case table in every case schema.
const TABLE: &str = "t";

/// What the replica did with the source's old-shape writes after the ALTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// It applied every write, and its table equals the source's table with the ALTER applied.
    AppliesAndMatches,
    /// It applied every write, but some value differs, or the source cannot take the ALTER
    /// on the rows it wrote: silent corruption.
    AppliesButDiffers {
        /// The first difference found.
        detail: String,
    },
    /// Its SQL thread stopped with an error.
    Stops {
        /// The server's error number.
        errno: u32,
        /// The server's message, without positions and transaction ids.
        message: String,
    },
    /// The replica's server process died (it is restarted for the next trial).
    Crashes {
        /// The server's last words in its log.
        message: String,
    },
    /// The replica refused the ALTER itself.
    AlterRefused {
        /// What the server said.
        message: String,
    },
}

impl Behaviour {
    /// The short class name used in the report (`stops 1677`).
    pub fn class(&self) -> String {
        match self {
            Behaviour::AppliesAndMatches => "applies-and-matches".to_owned(),
            Behaviour::AppliesButDiffers { .. } => "applies-but-differs".to_owned(),
            Behaviour::Stops { errno, .. } => format!("stops {errno}"),
            Behaviour::Crashes { .. } => "crashes".to_owned(),
            Behaviour::AlterRefused { .. } => "alter-refused".to_owned(),
        }
    }

    /// What the server said or what differed; empty when it applied and matched.
    pub fn detail(&self) -> &str {
        match self {
            Behaviour::AppliesAndMatches => "",
            Behaviour::AppliesButDiffers { detail } => detail,
            Behaviour::Stops { message, .. }
            | Behaviour::Crashes { message }
            | Behaviour::AlterRefused { message } => message,
        }
    }

    /// True when the replica applied every write and matched.
    pub fn passes(&self) -> bool {
        *self == Behaviour::AppliesAndMatches
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail();
        if detail.is_empty() {
            f.write_str(&self.class())
        } else {
            write!(f, "{}: {detail}", self.class())
        }
    }
}

/// One trial of a batch.
pub struct Trial<'a> {
    /// The trial's schema, created by the batch (unique in the pair's life).
    pub schema: String,
    /// The fixture's CREATE TABLE of `t`.
    pub table: &'a str,
    /// The ALTER statement, on table `t`, unqualified.
    pub alter: &'a str,
    /// The source's writes, on table `t`, unqualified.
    pub writes: &'a [&'a str],
}

/// A testbed replication pair and connections to both servers as the operator account.
pub struct Pair {
    flavor: Flavor,
    /// Writes, reads and GTID positions on the source.
    primary: MySqlConnection,
    /// The expected tables on the source: the binary log is off for this session.
    oracle: MySqlConnection,
    /// Replication state and reads on the replica.
    replica: MySqlConnection,
    /// switchyard's own handle on the replica: runs the ALTER and sets the conversion variable.
    replica_handle: Instance,
    /// The server's version, as it reports it.
    version: String,
    /// The replica's conversion setting for the batch running (set again after a restart).
    conversions: TypeConversions,
    /// Kept last: dropping it stops the servers after the connections above are closed.
    cluster: Cluster,
}

impl Pair {
    /// Starts a primary and one replica of `kind` and connects to both. The replica's applier
    /// runs one transaction at a time, so that a batch's failures are told apart.
    pub async fn start(kind: ServerKind, flavor: Flavor) -> Pair {
        let cluster = replication(kind, 2)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: start a replication pair: {e}"));
        let operator = &cluster.credentials().operator;
        let mut primary = cluster
            .primary()
            .connect(operator)
            .await
            .expect("connect to the primary");
        let mut oracle = cluster
            .primary()
            .connect(operator)
            .await
            .expect("connect to the primary");
        exec(&mut oracle, "SET SESSION sql_log_bin = 0").await;
        let version = text(&fetch_all(&mut primary, "SELECT VERSION()").await[0], 0);
        let mut replica = cluster.replicas()[0]
            .connect(operator)
            .await
            .expect("connect to the replica");
        if flavor == Flavor::Mysql {
            let mut root = cluster.replicas()[0]
                .connect_root()
                .await
                .expect("connect to the replica as root");
            exec(
                &mut root,
                "STOP REPLICA SQL_THREAD; SET GLOBAL replica_parallel_workers = 1; START REPLICA SQL_THREAD",
            )
            .await;
        }
        let running = fetch_all(&mut replica, "SELECT 1").await;
        assert_eq!(running.len(), 1);
        let replica_handle = Instance::new(
            "replica",
            InstanceAddr::new("127.0.0.1", cluster.replicas()[0].port()),
            Credentials::new(operator.user(), operator.password()),
        )
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(10),
            statement: Duration::from_secs(30),
            ddl: Duration::from_secs(120),
        });
        let mut pair = Pair {
            flavor,
            primary,
            oracle,
            replica,
            replica_handle,
            version,
            conversions: TypeConversions::default(),
            cluster,
        };
        let conversions = pair
            .replica_handle
            .set_type_conversions(TypeConversions::default())
            .await;
        assert_eq!(
            conversions.expect("read the replica's conversion variable"),
            TypeConversions::default(),
            "{flavor}: the replica's type-conversion variable should start empty"
        );
        pair.wait_running_and_caught_up().await;
        pair
    }

    /// The server's version string (`10.11.18-MariaDB-…`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Creates each schema with table `t` from its CREATE TABLE on the source, with the binary
    /// log on, and waits until the replica has them too.
    pub async fn create(&mut self, schemas: &[(String, &str)]) {
        for (schema, create_table) in schemas {
            let q = quote_identifier(schema);
            exec(&mut self.primary, &format!("CREATE DATABASE {q}")).await;
            exec(&mut self.primary, &format!("USE {q}")).await;
            exec(&mut self.primary, create_table).await;
        }
        self.wait_running_and_caught_up().await;
    }

    /// `SHOW CREATE TABLE` of the case table on the source, as the analyzer gets it.
    pub async fn show_create(&mut self, schema: &str) -> String {
        let sql = format!(
            "SHOW CREATE TABLE {}.{}",
            quote_identifier(schema),
            quote_identifier(TABLE)
        );
        let found = fetch_all(&mut self.primary, &sql).await;
        text(&found[0], 1)
    }

    /// Runs `trials` with the replica's conversion variable set to `conversions` and says
    /// what the replica did with each. Leaves replication running, caught up, with the
    /// conversion variable as it found it.
    pub async fn run_batch(
        &mut self,
        trials: &[Trial<'_>],
        conversions: TypeConversions,
    ) -> Vec<Behaviour> {
        let flavor = self.flavor;
        let schemas: Vec<(String, &str)> =
            trials.iter().map(|t| (t.schema.clone(), t.table)).collect();
        self.create(&schemas).await;
        let previous = self
            .replica_handle
            .set_type_conversions(conversions)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: set the conversions: {e}"));
        self.conversions = conversions;
        let mut outcomes: Vec<Option<Behaviour>> = vec![None; trials.len()];
        for (trial, outcome) in trials.iter().zip(outcomes.iter_mut()) {
            let alter = retarget(trial.alter, &trial.schema, "");
            if let Err(e) = self
                .replica_handle
                .run_local_ddl(&alter, Duration::from_secs(30))
                .await
            {
                *outcome = Some(Behaviour::AlterRefused {
                    message: e.to_string(),
                });
            }
        }
        let mut targets: Vec<(usize, String)> = Vec::new();
        for (i, trial) in trials.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            exec(
                &mut self.primary,
                &format!("USE {}", quote_identifier(&trial.schema)),
            )
            .await;
            for write in trial.writes {
                exec(&mut self.primary, write).await;
            }
            targets.push((i, self.source_position().await));
        }
        self.apply_all(&targets, &mut outcomes).await;
        for (i, trial) in trials.iter().enumerate() {
            if outcomes[i].is_none() {
                outcomes[i] = Some(self.compare(trial).await);
            }
        }
        self.replica_handle
            .set_type_conversions(previous)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: restore the conversions: {e}"));
        self.conversions = previous;
        outcomes
            .into_iter()
            .map(|o| o.expect("every trial has an outcome"))
            .collect()
    }

    /// Waits until the replica has applied every trial's writes, recording the trials that
    /// stopped its applier or killed its server.
    async fn apply_all(&mut self, targets: &[(usize, String)], outcomes: &mut [Option<Behaviour>]) {
        let Some((_, last)) = targets.last() else {
            return;
        };
        let last = last.clone();
        loop {
            let ended = wait_for(APPLY_DEADLINE, async || match self.applier(&last).await {
                Ok(Applier::Behind) => None,
                Ok(applier) => Some(applier),
                Err(_) if !self.cluster.replicas()[0].is_running() => Some(Applier::Crashed),
                Err(_) => {
                    self.reconnect_replica().await;
                    None
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{}: the replica neither applied nor stopped", self.flavor));
            let crashed = match ended {
                Applier::CaughtUp | Applier::Behind => return,
                Applier::Stopped { errno, message } => Err((errno, message)),
                Applier::Crashed => Ok(self.restart_replica().await),
            };
            // The applier runs one transaction at a time: the first trial it has not
            // reached is the one that stopped it.
            let mut culprit = None;
            for (i, target) in targets {
                if outcomes[*i].is_none() && !self.reached(target).await {
                    culprit = Some((*i, target.clone()));
                    break;
                }
            }
            let Some((i, target)) = culprit else {
                panic!(
                    "{}: the replica stopped after every trial's writes",
                    self.flavor
                );
            };
            outcomes[i] = Some(match crashed {
                Err((errno, message)) => Behaviour::Stops {
                    errno,
                    message: clean_message(&message),
                },
                Ok(message) => Behaviour::Crashes { message },
            });
            self.skip_to(&target).await;
        }
    }

    /// True when the replica has executed the source's position `target`.
    async fn reached(&mut self, target: &str) -> bool {
        let sql = match self.flavor {
            Flavor::Mysql => "SELECT CAST(GTID_SUBSET(?, @@GLOBAL.gtid_executed) AS SIGNED)",
            Flavor::Mariadb => "SELECT CAST(MASTER_GTID_WAIT(?, 0) = 0 AS SIGNED)",
        };
        let reached: i64 = sqlx::query_scalar(sql)
            .bind(target)
            .fetch_one(&mut self.replica)
            .await
            .unwrap_or_else(|e| panic!("{}: read the replica's position: {e}", self.flavor));
        reached == 1
    }

    /// Compares the replica's table with the expected one: the source's table copied and
    /// altered on the source with the binary log off. A source that cannot take the ALTER on
    /// its own rows (a value the new type forbids, a failing check, a duplicate) means the
    /// replica holds rows its definition forbids and the rollout cannot finish: a difference,
    /// with the shared columns compared for the detail.
    async fn compare(&mut self, trial: &Trial<'_>) -> Behaviour {
        let schema = quote_identifier(&trial.schema);
        let expected = format!("{schema}.{}", quote_identifier("t_expected"));
        let actual = format!("{schema}.{}", quote_identifier(TABLE));
        let stored: Vec<String> = columns(&mut self.primary, &trial.schema, TABLE)
            .await
            .into_iter()
            .filter(|c| !c.generated)
            .map(|c| quote_identifier(&c.name))
            .collect();
        let list = stored.join(", ");
        for sql in [
            format!("DROP TABLE IF EXISTS {expected}"),
            format!("CREATE TABLE {expected} LIKE {actual}"),
            format!("INSERT INTO {expected} ({list}) SELECT {list} FROM {actual}"),
        ] {
            exec(&mut self.oracle, &sql).await;
        }
        let oracle_alter = retarget(trial.alter, &trial.schema, "_expected");
        if let Err(e) = try_exec(&mut self.oracle, &oracle_alter).await {
            let note = format!("the source refuses the ALTER on its own rows ({e})");
            return self.compare_shared(trial, &note).await;
        }
        let expected_columns = columns(&mut self.oracle, &trial.schema, "t_expected").await;
        let replica_columns = columns(&mut self.replica, &trial.schema, TABLE).await;
        let names = |cols: &[Column]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(&expected_columns) != names(&replica_columns) {
            return Behaviour::AppliesButDiffers {
                detail: format!(
                    "the replica has columns {:?}, the altered source {:?}",
                    names(&replica_columns),
                    names(&expected_columns)
                ),
            };
        }
        let exprs: Vec<String> = replica_columns.iter().map(value_of).collect();
        let want = rows(&mut self.primary, &expected, &exprs).await;
        let got = rows(&mut self.replica, &actual, &exprs).await;
        let cols = names(&replica_columns);
        match first_difference(&cols, &want, &got, |_, a, b| a == b) {
            Some(detail) => Behaviour::AppliesButDiffers { detail },
            None => Behaviour::AppliesAndMatches,
        }
    }

    async fn compare_shared(&mut self, trial: &Trial<'_>, note: &str) -> Behaviour {
        let source_columns = columns(&mut self.primary, &trial.schema, TABLE).await;
        let replica_columns = columns(&mut self.replica, &trial.schema, TABLE).await;
        let shared: Vec<(Column, Column)> = source_columns
            .iter()
            .filter_map(|s| {
                let r = replica_columns.iter().find(|r| r.name == s.name)?;
                Some((s.clone(), r.clone()))
            })
            .collect();
        let exprs: Vec<String> = shared.iter().map(|(s, _)| as_hex(&s.name)).collect();
        let table = format!(
            "{}.{}",
            quote_identifier(&trial.schema),
            quote_identifier(TABLE)
        );
        let want = rows(&mut self.primary, &table, &exprs).await;
        let got = rows(&mut self.replica, &table, &exprs).await;
        let names: Vec<String> = shared.iter().map(|(s, _)| s.name.clone()).collect();
        let same = |i: usize, a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => same_value(
                &shared[i].0.data_type,
                &shared[i].1.data_type,
                &unhex(a),
                &unhex(b),
            ),
            (a, b) => a == b,
        };
        let detail = match first_difference(&names, &want, &got, same) {
            Some(difference) => format!("{note}; {difference}"),
            None => format!("{note}; the shared columns hold the source's values"),
        };
        Behaviour::AppliesButDiffers { detail }
    }

    async fn source_position(&mut self) -> String {
        let sql = match self.flavor {
            Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
            Flavor::Mariadb => "SELECT @@GLOBAL.gtid_binlog_pos",
        };
        let row = self
            .primary
            .fetch_one(sql)
            .await
            .expect("read the source's GTID position");
        text(&row, 0)
    }

    /// Starts the crashed replica again and returns the signal line of its log.
    async fn restart_replica(&mut self) -> String {
        let replica = &self.cluster.replicas()[0];
        let log = std::fs::read_to_string(replica.log_path()).unwrap_or_default();
        let message = log
            .lines()
            .rev()
            .find(|l| l.contains("got signal") || l.contains("Assertion"))
            .map_or("the server process ended".to_owned(), |l| {
                l.split_once(" - ")
                    .map_or(l, |(_, m)| m)
                    .trim()
                    .trim_end_matches(';')
                    .trim()
                    .to_owned()
            });
        replica
            .start()
            .await
            .unwrap_or_else(|e| panic!("{}: restart the replica: {e}", self.flavor));
        self.replica_handle.forget_connection();
        assert!(
            self.reconnect_replica().await,
            "{}: connect to the restarted replica",
            self.flavor
        );
        // Global settings are not persisted: the batch's conversions again, and on MySQL one
        // worker, before replication resumes.
        self.replica_handle
            .set_type_conversions(self.conversions)
            .await
            .unwrap_or_else(|e| panic!("{}: set the conversions again: {e}", self.flavor));
        if self.flavor == Flavor::Mysql {
            let mut root = self.cluster.replicas()[0]
                .connect_root()
                .await
                .expect("connect to the replica as root");
            exec(
                &mut root,
                "STOP REPLICA SQL_THREAD; SET GLOBAL replica_parallel_workers = 1",
            )
            .await;
        }
        message
    }

    async fn reconnect_replica(&mut self) -> bool {
        let operator = &self.cluster.credentials().operator;
        match self.cluster.replicas()[0].connect(operator).await {
            Ok(conn) => {
                self.replica = conn;
                true
            }
            Err(_) => false,
        }
    }

    /// Where the replica's applier is relative to the source's position `target`.
    async fn applier(&mut self, target: &str) -> Result<Applier, sqlx::Error> {
        let reached_sql = match self.flavor {
            Flavor::Mysql => "SELECT CAST(GTID_SUBSET(?, @@GLOBAL.gtid_executed) AS SIGNED)",
            Flavor::Mariadb => "SELECT CAST(MASTER_GTID_WAIT(?, 0) = 0 AS SIGNED)",
        };
        let reached: i64 = sqlx::query_scalar(reached_sql)
            .bind(target)
            .fetch_one(&mut self.replica)
            .await?;
        if reached == 1 {
            return Ok(Applier::CaughtUp);
        }
        let status = match self.flavor {
            Flavor::Mysql => "SHOW REPLICA STATUS",
            Flavor::Mariadb => "SHOW SLAVE STATUS",
        };
        let row = self.replica.fetch_one(status).await?;
        let running = match self.flavor {
            Flavor::Mysql => text_named(&row, "Replica_SQL_Running"),
            Flavor::Mariadb => text_named(&row, "Slave_SQL_Running"),
        };
        let errno: u32 = text_named(&row, "Last_SQL_Errno").parse().unwrap_or(0);
        if running == "Yes" || errno == 0 {
            return Ok(Applier::Behind);
        }
        let mut message = text_named(&row, "Last_SQL_Error");
        let mut errno = errno;
        if self.flavor == Flavor::Mysql {
            // With parallel workers the coordinator only says a worker failed, and a worker
            // waiting on the failed one for commit order fails with 3030; the latest other
            // worker error is this case's cause (earlier cases' errors are older).
            let worker: Option<(i64, String)> = sqlx::query_as(
                "SELECT CAST(LAST_ERROR_NUMBER AS SIGNED), LAST_ERROR_MESSAGE \
                 FROM performance_schema.replication_applier_status_by_worker \
                 WHERE LAST_ERROR_NUMBER NOT IN (0, 3030) ORDER BY LAST_ERROR_TIMESTAMP DESC LIMIT 1",
            )
            .fetch_optional(&mut self.replica)
            .await?;
            if let Some((worker_errno, worker_message)) = worker {
                errno = u32::try_from(worker_errno).unwrap_or(errno);
                message = worker_message;
            }
        }
        Ok(Applier::Stopped { errno, message })
    }

    /// After a stop: marks every transaction of the source up to `target` as applied on the
    /// replica and restarts its applier (the caller goes on waiting).
    async fn skip_to(&mut self, target: &str) {
        match self.flavor {
            Flavor::Mysql => {
                exec(&mut self.replica, "STOP REPLICA").await;
                let missing: String =
                    sqlx::query_scalar("SELECT GTID_SUBTRACT(?, @@GLOBAL.gtid_executed)")
                        .bind(target)
                        .fetch_one(&mut self.replica)
                        .await
                        .expect("compute the transactions to skip");
                exec(&mut self.replica, "SET GLOBAL super_read_only = OFF").await;
                for gtid in expand_gtid_set(&missing) {
                    exec(
                        &mut self.replica,
                        &format!("SET SESSION gtid_next = '{gtid}'"),
                    )
                    .await;
                    exec(&mut self.replica, "BEGIN").await;
                    exec(&mut self.replica, "COMMIT").await;
                }
                exec(&mut self.replica, "SET SESSION gtid_next = 'AUTOMATIC'").await;
                exec(&mut self.replica, "SET GLOBAL super_read_only = ON").await;
                exec(&mut self.replica, "START REPLICA").await;
            }
            Flavor::Mariadb => {
                assert!(
                    target
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '-' || c == ','),
                    "unexpected GTID position {target:?}"
                );
                exec(&mut self.replica, "STOP SLAVE").await;
                exec(
                    &mut self.replica,
                    &format!("SET GLOBAL gtid_slave_pos = '{target}'"),
                )
                .await;
                exec(&mut self.replica, "START SLAVE").await;
            }
        }
    }

    /// Waits until the replica has applied everything the source wrote, with its applier
    /// running.
    async fn wait_running_and_caught_up(&mut self) {
        let target = self.source_position().await;
        let flavor = self.flavor;
        let result = wait_for(APPLY_DEADLINE, async || match self.applier(&target).await {
            Ok(Applier::CaughtUp) => Some(Ok(())),
            Ok(Applier::Stopped { errno, message }) => Some(Err(format!("{errno}: {message}"))),
            Ok(_) => None,
            Err(e) => Some(Err(e.to_string())),
        })
        .await
        .unwrap_or_else(|_| panic!("{flavor}: the replica did not catch up with {target}"));
        if let Err(e) = result {
            panic!("{flavor}: replication stopped outside a case: {e}");
        }
    }
}

enum Applier {
    CaughtUp,
    Behind,
    Stopped { errno: u32, message: String },
    Crashed,
}

#[derive(Clone, Debug)]
struct Column {
    name: String,
    data_type: String,
    generated: bool,
}

/// Runs `sql` as text (not prepared: `SET gtid_next`, `USE` and DDL are not all preparable).
async fn try_exec(conn: &mut MySqlConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .map(drop)
}

async fn exec(conn: &mut MySqlConnection, sql: &str) {
    try_exec(conn, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn fetch_all(conn: &mut MySqlConnection, sql: &str) -> Vec<MySqlRow> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A column read as the hexadecimal of its text in utf8mb4, so that every type decodes as one
/// string and NULL stays NULL.
fn as_hex(column: &str) -> String {
    format!("HEX(CONVERT({} USING utf8mb4))", quote_identifier(column))
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn columns(conn: &mut MySqlConnection, schema: &str, table: &str) -> Vec<Column> {
    let found: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), \
         CAST(COALESCE(GENERATION_EXPRESSION, '') <> '' AS SIGNED) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("columns of {schema}.{table}: {e}"));
    found
        .into_iter()
        .map(|(name, data_type, generated)| Column {
            name,
            data_type: data_type.to_ascii_lowercase(),
            generated: generated == 1,
        })
        .collect()
}

/// A column's value as one comparable string: binary strings and BIT as their bytes,
/// floating-point values with every digit of their stored bits (a FLOAT(7,2) displays two
/// decimals of whatever it holds), anything else as its text in utf8mb4.
fn value_of(column: &Column) -> String {
    let q = quote_identifier(&column.name);
    match column.data_type.as_str() {
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            format!("HEX({q})")
        }
        "float" | "double" => format!("HEX(CONVERT(CAST({q} AS DOUBLE) USING utf8mb4))"),
        _ => as_hex(&column.name),
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// The rows of `table` as `exprs`, ordered by `id` (every case keeps it).
async fn rows(conn: &mut MySqlConnection, table: &str, exprs: &[String]) -> Rows {
    let sql = format!(
        "SELECT {} FROM {table} ORDER BY {}",
        exprs.join(", "),
        quote_identifier("id")
    );
    let found = fetch_all(conn, &sql).await;
    found
        .iter()
        .map(|row| {
            (0..exprs.len())
                .map(|i| row.try_get::<Option<String>, _>(i).expect("a hex string"))
                .collect()
        })
        .collect()
}

fn first_difference(
    names: &[String],
    want: &Rows,
    got: &Rows,
    same: impl Fn(usize, &Option<String>, &Option<String>) -> bool,
) -> Option<String> {
    if want.len() != got.len() {
        return Some(format!(
            "the source has {} rows, the replica {}",
            want.len(),
            got.len()
        ));
    }
    let show = |v: &Option<String>| {
        v.as_deref()
            .map_or("NULL".to_owned(), |h| format!("'{}'", shorten(&unhex(h))))
    };
    for (w, g) in want.iter().zip(got) {
        for (i, name) in names.iter().enumerate() {
            if !same(i, &w[i], &g[i]) {
                let id = show(&w[names.iter().position(|n| n == "id").unwrap_or(0)]);
                return Some(format!(
                    "row id={id}: `{name}` is {} on the replica, {} expected",
                    show(&g[i]),
                    show(&w[i])
                ));
            }
        }
    }
    None
}

/// `s` cut to 24 characters, control characters escaped (`\0`, `\u{1}`) so reports stay text.
fn shorten(s: &str) -> String {
    let escaped: String = s
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    let s = escaped.as_str();
    if s.chars().count() > 24 {
        format!(
            "{}…({} chars)",
            s.chars().take(12).collect::<String>(),
            s.chars().count()
        )
    } else {
        s.to_owned()
    }
}

const NUMERIC: &[&str] = &[
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "bigint",
    "decimal",
    "float",
    "double",
];
const TEMPORAL: &[&str] = &["date", "datetime", "timestamp"];

/// Whether two values read as text are the same value, given the columns' types on each side
/// (`12.50` = `12.5`, `2024-01-02` = `2024-01-02 00:00:00.000`); anything else compares by text.
fn same_value(source_type: &str, replica_type: &str, a: &str, b: &str) -> bool {
    let both = |kinds: &[&str]| kinds.contains(&source_type) && kinds.contains(&replica_type);
    if both(NUMERIC) {
        let float = source_type == "float" || replica_type == "float";
        match (canonical_decimal(a), canonical_decimal(b)) {
            (Some(x), Some(y)) if !float => x == y,
            _ => match (a.parse::<f64>(), b.parse::<f64>()) {
                // A FLOAT prints fewer digits than the DOUBLE it converts to exactly.
                (Ok(x), Ok(y)) if float => x as f32 == y as f32,
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            },
        }
    } else if both(TEMPORAL) {
        canonical_time(a) == canonical_time(b)
    } else {
        a == b
    }
}

/// `-0012.3400` as `-12.34`; None for anything but a plain decimal number.
fn canonical_decimal(s: &str) -> Option<String> {
    let (negative, digits) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let body = match (int.is_empty(), frac.is_empty()) {
        (true, true) => return Some("0".to_owned()),
        (_, true) => int.to_owned(),
        (true, false) => format!("0.{frac}"),
        (false, false) => format!("{int}.{frac}"),
    };
    Some(if negative { format!("-{body}") } else { body })
}

/// `2024-01-02` as `2024-01-02 00:00:00`, without trailing zero fractional seconds.
fn canonical_time(s: &str) -> String {
    let full = if s.len() == 10 {
        format!("{s} 00:00:00")
    } else {
        s.to_owned()
    };
    match full.split_once('.') {
        Some((whole, frac)) if frac.chars().all(|c| c == '0') => whole.to_owned(),
        Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
        None => full,
    }
}

/// The statement on `schema`.`t<suffix>`: the table after `ALTER TABLE` qualified, and so is
/// the new name of a `RENAME TO`.
fn retarget(alter: &str, schema: &str, suffix: &str) -> String {
    let rest = alter
        .strip_prefix("ALTER TABLE t ")
        .unwrap_or_else(|| panic!("cases alter table t: {alter}"));
    let table = |name: &str| {
        format!(
            "{}.{}",
            quote_identifier(schema),
            quote_identifier(&format!("{name}{suffix}"))
        )
    };
    let mut out = format!("ALTER TABLE {} ", table(TABLE));
    match rest.split_once("RENAME TO ") {
        Some((before, after)) => {
            let (name, tail) = after
                .split_once([' ', ','])
                .map_or((after, ""), |(n, _)| (n, &after[n.len()..]));
            out.push_str(before);
            out.push_str("RENAME TO ");
            out.push_str(&table(name));
            out.push_str(tail);
        }
        None => out.push_str(rest),
    }
    out
}

/// `uuid:1-3:7,uuid2:5` as every single GTID (`uuid:1`, `uuid:2`, ...).
fn expand_gtid_set(set: &str) -> Vec<String> {
    let mut out = Vec::new();
    for member in set.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let mut parts = member.split(':');
        let uuid = parts.next().unwrap_or_default();
        assert!(
            uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "unexpected GTID set {set:?}"
        );
        for interval in parts {
            let (first, last) = interval.split_once('-').unwrap_or((interval, interval));
            let (first, last): (u64, u64) = (
                first.parse().unwrap_or_else(|_| panic!("GTID set {set:?}")),
                last.parse().unwrap_or_else(|_| panic!("GTID set {set:?}")),
            );
            out.extend((first..=last).map(|n| format!("{uuid}:{n}")));
        }
    }
    out
}

/// The server's message without what changes from run to run: the worker and transaction
/// that failed and the binary log positions.
fn clean_message(message: &str) -> String {
    let mut m = message.trim();
    if (m.starts_with("Worker ") || m.starts_with("Coordinator "))
        && let Some((_, rest)) = m.split_once("; ")
    {
        m = rest;
    }
    for marker in ["; the event's", ", end_log_pos", " end_log_pos"] {
        if let Some((head, _)) = m.split_once(marker) {
            m = head;
        }
    }
    m.trim_end_matches([';', ' ', ','])
        .replace('|', "/")
        .replace('\n', " ")
}

fn text(row: &MySqlRow, index: usize) -> String {
    row.try_get::<String, _>(index)
        .or_else(|_| {
            row.try_get::<Vec<u8>, _>(index)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_else(|e| panic!("column {index}: {e}"))
}

/// A column of a SHOW statement by name, whatever its type.
fn text_named(row: &MySqlRow, name: &str) -> String {
    if let Ok(s) = row.try_get::<Option<String>, _>(name) {
        return s.unwrap_or_default();
    }
    if let Ok(n) = row.try_get::<Option<i64>, _>(name) {
        return n.map(|n| n.to_string()).unwrap_or_default();
    }
    if let Ok(n) = row.try_get::<Option<u64>, _>(name) {
        return n.map(|n| n.to_string()).unwrap_or_default();
    }
    if let Ok(n) = row.try_get::<Option<u32>, _>(name) {
        return n.map(|n| n.to_string()).unwrap_or_default();
    }
    row.try_get::<Option<Vec<u8>>, _>(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_values_by_type() {
        assert!(same_value("decimal", "decimal", "12.50", "12.5000"));
        assert!(!same_value(
            "decimal",
            "decimal",
            "12345678.91",
            "999999.9999"
        ));
        assert!(same_value("int", "bigint", "-1", "-1"));
        assert!(!same_value("int", "int", "-1", "4294967295"));
        assert!(same_value(
            "date",
            "datetime",
            "2024-01-02",
            "2024-01-02 00:00:00"
        ));
        assert!(same_value(
            "datetime",
            "datetime",
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05.000"
        ));
        assert!(!same_value(
            "datetime",
            "datetime",
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05.678"
        ));
        assert!(!same_value("varchar", "varchar", "12.5", "12.50"));
    }

    #[test]
    fn retargets_the_table_and_a_new_name() {
        assert_eq!(
            retarget("ALTER TABLE t ADD x INT", "s", ""),
            "ALTER TABLE `s`.`t` ADD x INT"
        );
        assert_eq!(
            retarget("ALTER TABLE t RENAME TO t2", "s", "_expected"),
            "ALTER TABLE `s`.`t_expected` RENAME TO `s`.`t2_expected`"
        );
    }

    #[test]
    fn expands_gtid_sets() {
        assert_eq!(
            expand_gtid_set(
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:2-3:7,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1"
            ),
            [
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:2",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:3",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:7",
                "4e11fa47-71ca-11e1-9e33-c80aa9429562:1"
            ]
        );
    }
}
