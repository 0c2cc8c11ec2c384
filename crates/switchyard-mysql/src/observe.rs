//! [`Instance::observe`]: a snapshot of what a server says about itself.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use switchyard_plan::gtid::{GtidSet, MariadbBinlogState, MariadbGtidPos, MysqlGtidSet};
use switchyard_plan::versions::{Flavor, ServerVersion};
use tokio::time::Instant;

use crate::error::Error;
use crate::instance::{Instance, Session, Sql, TextRow};

/// What an instance reported about itself at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Observation {
    /// Product and version, from `SELECT VERSION()` and `@@version_comment`.
    pub version: ServerVersion,
    /// `VERSION()` as the server reported it.
    pub version_text: String,
    /// `@@version_comment`.
    pub version_comment: String,
    /// `@@server_id`.
    pub server_id: u32,
    /// `@@server_uuid` (MySQL; MariaDB has none).
    pub server_uuid: Option<String>,
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@super_read_only` (MySQL; MariaDB has none).
    pub super_read_only: Option<bool>,
    /// `@@log_bin`: whether the server writes a binary log.
    pub log_bin: bool,
    /// `@@log_replica_updates` (MySQL) / `@@log_slave_updates` (MariaDB): whether replicated
    /// transactions go to this server's binary log too, so that its own replicas get them.
    pub log_replica_updates: bool,
    /// The server's GTID state.
    pub gtid: GtidState,
    /// Replication status when a source is configured (`SHOW REPLICA STATUS` /
    /// `SHOW SLAVE STATUS` returned a row), else `None`.
    pub replication: Option<ReplicaStatus>,
    /// Semi-synchronous replication state when the server has its variables (built into
    /// MariaDB; a plugin on MySQL), else `None`.
    pub semi_sync: Option<SemiSyncState>,
    /// Galera state when the server has `wsrep_on` (MariaDB), else `None`.
    pub galera: Option<GaleraState>,
    /// How many threads wait for a table metadata lock.
    pub metadata_lock_waits: u64,
    /// How long the server has been up (status `Uptime`), serialised in seconds.
    #[serde(with = "duration_secs")]
    pub uptime: Duration,
}

impl Observation {
    /// Whether clients without special privileges can write: `read_only` is off.
    pub fn is_writable(&self) -> bool {
        !self.read_only
    }

    /// Everything this replica has received: what it executed ([`GtidState::executed`]) with
    /// what its receiver put in the relay log and the applier may not have executed yet
    /// ([`ReplicaStatus::retrieved`]) added. MySQL: `gtid_executed` ∪ `Retrieved_Gtid_Set`;
    /// MariaDB: the executed binary log state with each GTID of `Gtid_IO_Pos` recorded (a
    /// [`GtidSet::MariadbState`], comparable with other instances' executed states). `None`
    /// when no source is configured or the retrieved set could not be read.
    pub fn received(&self) -> Option<GtidSet> {
        let retrieved = self.replication.as_ref()?.retrieved.as_ref()?;
        match (&self.gtid, retrieved) {
            (GtidState::Mysql { executed, .. }, GtidSet::Mysql(_)) => {
                executed.union(retrieved).ok()
            }
            (
                GtidState::Mariadb {
                    executed_state: GtidSet::MariadbState(state),
                    ..
                },
                GtidSet::Mariadb(io_pos),
            ) => {
                let mut state = state.clone();
                for gtid in io_pos.iter() {
                    state.record(gtid);
                }
                Some(GtidSet::MariadbState(state))
            }
            _ => None,
        }
    }

    /// What this server has executed that `source` has not (errant transactions), from
    /// [`GtidState::executed`] of both; empty when there are none. On MariaDB these are binary
    /// log states, so an errant transaction this server wrote under its own `server_id` is
    /// found even after it replicated past it (its position then equals the source's).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the two observations are of different flavors.
    pub fn errant_against(&self, source: &Observation) -> Result<GtidSet, Error> {
        switchyard_plan::gtid::errant(self.gtid.executed(), source.gtid.executed()).map_err(|e| {
            Error::InvalidInput {
                what: "GTID comparison",
                reason: e.to_string(),
            }
        })
    }
}

/// The GTID state of a server, in its flavor's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "flavor", rename_all = "lowercase")]
pub enum GtidState {
    /// MySQL GTID sets.
    Mysql {
        /// `@@gtid_executed`.
        executed: GtidSet,
        /// `@@gtid_purged`.
        purged: GtidSet,
    },
    /// MariaDB GTID positions and the binary log state.
    Mariadb {
        /// What the server has executed, per domain and `server_id`: `@@gtid_binlog_state`
        /// with the GTIDs of `@@gtid_current_pos` added (a [`GtidSet::MariadbState`]). What
        /// [`GtidState::executed`] returns and errant checks compare.
        executed_state: GtidSet,
        /// `@@gtid_current_pos`.
        current_pos: GtidSet,
        /// `@@gtid_binlog_pos`.
        binlog_pos: GtidSet,
        /// `@@gtid_slave_pos`.
        slave_pos: GtidSet,
    },
}

impl GtidState {
    /// Everything the server has executed: `gtid_executed` (MySQL) or the binary log state
    /// with `gtid_current_pos` added (MariaDB; see `switchyard_plan::gtid` for why a state and
    /// not a position): what the planner's `Instance::gtid` holds.
    pub fn executed(&self) -> &GtidSet {
        match self {
            GtidState::Mysql { executed, .. } => executed,
            GtidState::Mariadb { executed_state, .. } => executed_state,
        }
    }

    /// The position SQL waits for and replicas ask for: `gtid_executed` (MySQL) or
    /// `gtid_current_pos` (MariaDB).
    pub fn position(&self) -> &GtidSet {
        match self {
            GtidState::Mysql { executed, .. } => executed,
            GtidState::Mariadb { current_pos, .. } => current_pos,
        }
    }

    /// What the server has written to its binary log, which is what its replicas can
    /// receive: `gtid_executed` (MySQL) or `gtid_binlog_pos` (MariaDB).
    pub fn binlogged(&self) -> &GtidSet {
        match self {
            GtidState::Mysql { executed, .. } => executed,
            GtidState::Mariadb { binlog_pos, .. } => binlog_pos,
        }
    }
}

/// The state of a replication I/O (receiver) thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoThreadState {
    /// Connected to the source and receiving.
    Running,
    /// Trying to connect to the source.
    Connecting,
    /// Stopped.
    Stopped,
}

/// A replica's view of its replication (`SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// `Source_Host` / `Master_Host`.
    pub source_host: String,
    /// `Source_Port` / `Master_Port`.
    pub source_port: u16,
    /// The I/O (receiver) thread.
    pub io_thread: IoThreadState,
    /// Whether the SQL (applier) thread runs.
    pub sql_running: bool,
    /// `Last_IO_Errno` (0 when none).
    pub last_io_errno: u32,
    /// `Last_IO_Error`.
    pub last_io_error: String,
    /// `Last_SQL_Errno` (0 when none).
    pub last_sql_errno: u32,
    /// `Last_SQL_Error`.
    pub last_sql_error: String,
    /// `Seconds_Behind_Source` / `Seconds_Behind_Master`; `None` when the server reports NULL
    /// (a thread is stopped).
    pub seconds_behind: Option<u64>,
    /// Whether the replica uses GTID positioning (`Auto_Position` 1 on MySQL, `Using_Gtid`
    /// other than `No` on MariaDB).
    pub gtid_positioning: bool,
    /// What the receiver has put in the relay log: `Retrieved_Gtid_Set` (MySQL, a GTID set)
    /// or `Gtid_IO_Pos` (MariaDB, the position of the last transaction received in each
    /// domain); `None` when the server did not report it in a form this client reads.
    pub retrieved: Option<GtidSet>,
}

impl ReplicaStatus {
    /// Both threads run.
    pub fn is_running(&self) -> bool {
        self.io_thread == IoThreadState::Running && self.sql_running
    }

    /// Whether the receiver runs and is connected to its source (`Replica_IO_Running` /
    /// `Slave_IO_Running` reads `Yes`), rather than stopped or (re)connecting.
    pub fn is_connected(&self) -> bool {
        self.io_thread == IoThreadState::Running
    }
}

/// Semi-synchronous replication state. Each field is `None` when the server lacks it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SemiSyncState {
    /// `rpl_semi_sync_source_enabled` / `rpl_semi_sync_master_enabled`.
    pub source_enabled: Option<bool>,
    /// `rpl_semi_sync_replica_enabled` / `rpl_semi_sync_slave_enabled`.
    pub replica_enabled: Option<bool>,
    /// Status `Rpl_semi_sync_source_status` / `Rpl_semi_sync_master_status`: whether the source
    /// currently waits for acknowledgements.
    pub source_active: Option<bool>,
    /// Status `Rpl_semi_sync_replica_status` / `Rpl_semi_sync_slave_status`.
    pub replica_active: Option<bool>,
    /// Status `Rpl_semi_sync_source_clients` / `Rpl_semi_sync_master_clients`.
    pub source_clients: Option<u64>,
    /// `rpl_semi_sync_source_wait_point` / `rpl_semi_sync_master_wait_point` (`AFTER_SYNC`
    /// or `AFTER_COMMIT`).
    pub wait_point: Option<String>,
    /// `rpl_semi_sync_source_wait_for_replica_count` (MySQL; MariaDB always waits for one).
    pub wait_for_replica_count: Option<u32>,
    /// `rpl_semi_sync_source_timeout` / `rpl_semi_sync_master_timeout`: how long a commit
    /// waits for acknowledgements before the source falls back to asynchronous replication.
    #[serde(with = "opt_duration_millis")]
    pub timeout: Option<Duration>,
    /// `rpl_semi_sync_source_wait_no_replica` / `rpl_semi_sync_master_wait_no_slave`: whether
    /// the source keeps waiting when fewer replicas than it waits for are connected (off: it
    /// falls back to asynchronous replication at once).
    pub wait_no_replica: Option<bool>,
}

impl SemiSyncState {
    /// How many replicas must acknowledge a commit before the client's is, when this server
    /// is a source that waits losslessly: semi-synchronous replication enabled and active
    /// (not fallen back), waiting after the sync (`AFTER_SYNC`: no other client sees a
    /// transaction before a replica has it), waiting even when too few replicas are
    /// connected, and with a timeout of at least `never_falls_back`, so that a source cut off
    /// from its replicas blocks rather than acknowledge alone. `None` otherwise: the source
    /// is asynchronous, or may become so on its own.
    pub fn ack_replicas(&self, never_falls_back: Duration) -> Option<u32> {
        let lossless = self.source_enabled == Some(true)
            && self.source_active == Some(true)
            && self
                .wait_point
                .as_deref()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("AFTER_SYNC"))
            && self.wait_no_replica == Some(true)
            && self.timeout.is_some_and(|t| t >= never_falls_back);
        // MariaDB has no count: it waits for one replica.
        lossless.then(|| self.wait_for_replica_count.unwrap_or(1))
    }
}

/// Galera (wsrep) state of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GaleraState {
    /// `@@wsrep_on`.
    pub wsrep_on: bool,
    /// Status `wsrep_local_state` (4 = Synced), when reported.
    pub local_state: Option<u32>,
    /// Status `wsrep_local_state_comment` (`Synced`, `Donor/Desynced`, ...), when reported.
    pub local_state_comment: Option<String>,
    /// Status `wsrep_cluster_size`, when reported.
    pub cluster_size: Option<u32>,
    /// `@@wsrep_desync`.
    pub desync: bool,
    /// Status `wsrep_ready`: whether the node accepts queries.
    pub ready: bool,
    /// Status `wsrep_cluster_status` (`Primary`, `non-Primary`, `Disconnected`), when
    /// reported.
    pub cluster_status: Option<String>,
}

impl GaleraState {
    /// The node is in the cluster and synced (`wsrep_local_state` 4).
    pub fn is_synced(&self) -> bool {
        self.wsrep_on && self.local_state == Some(4)
    }

    /// The node is in the primary component, the one with quorum
    /// (`wsrep_cluster_status = Primary`).
    pub fn in_primary_component(&self) -> bool {
        self.wsrep_on && self.cluster_status.as_deref() == Some("Primary")
    }
}

/// An open InnoDB transaction (`information_schema.innodb_trx`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransactionInfo {
    /// The connection (thread) id running it.
    pub thread_id: u64,
    /// How long it has been open, in whole seconds.
    pub seconds: u64,
    /// Rows it has modified so far.
    pub rows_modified: u64,
}

const VARIABLES: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_id', \
    'server_uuid', 'read_only', 'super_read_only', 'log_bin', 'log_replica_updates', \
    'log_slave_updates', 'gtid_executed', 'gtid_purged', 'gtid_binlog_state', \
    'gtid_current_pos', 'gtid_binlog_pos', 'gtid_slave_pos', 'rpl_semi_sync_source_enabled', \
    'rpl_semi_sync_replica_enabled', 'rpl_semi_sync_master_enabled', \
    'rpl_semi_sync_slave_enabled', 'rpl_semi_sync_source_wait_point', \
    'rpl_semi_sync_master_wait_point', 'rpl_semi_sync_source_wait_for_replica_count', \
    'rpl_semi_sync_source_timeout', 'rpl_semi_sync_master_timeout', \
    'rpl_semi_sync_source_wait_no_replica', 'rpl_semi_sync_master_wait_no_slave', 'wsrep_on', \
    'wsrep_desync')";

const STATUS: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime', \
    'Rpl_semi_sync_source_status', 'Rpl_semi_sync_replica_status', \
    'Rpl_semi_sync_master_status', 'Rpl_semi_sync_slave_status', \
    'Rpl_semi_sync_source_clients', 'Rpl_semi_sync_master_clients', 'wsrep_local_state', \
    'wsrep_local_state_comment', 'wsrep_cluster_size', 'wsrep_ready', 'wsrep_cluster_status')";

pub(crate) const LONGEST_TRX: &str = "SELECT trx_mysql_thread_id, \
    GREATEST(TIMESTAMPDIFF(SECOND, trx_started, NOW()), 0), trx_rows_modified \
    FROM information_schema.innodb_trx ORDER BY trx_started ASC LIMIT 1";

const MDL_WAITS: &str = "SELECT COUNT(*) FROM information_schema.processlist \
    WHERE state = 'Waiting for table metadata lock'";

const PURPOSE: &str = "observe the server";

impl Instance {
    /// Reads an [`Observation`] of the server, bounded by the statement timeout.
    ///
    /// # Errors
    /// Connection failures ([`Error::Down`], [`Error::NotResponding`], [`Error::AccessDenied`],
    /// [`Error::Unreachable`]), [`Error::Timeout`] when the server stops answering, and
    /// [`Error::UnexpectedAnswer`] when a value cannot be read.
    pub async fn observe(&self) -> Result<Observation, Error> {
        self.observe_until(None).await
    }

    /// [`Instance::observe`] bounded by `deadline` (connecting and every statement).
    ///
    /// # Errors
    /// As [`Instance::observe`]; [`Error::Timeout`] when the deadline comes first.
    pub async fn observe_by(&self, deadline: std::time::Instant) -> Result<Observation, Error> {
        self.observe_until(Some(Instant::from_std(deadline))).await
    }

    /// The InnoDB transaction that has been open longest, if any is open
    /// (`information_schema.innodb_trx`).
    ///
    /// InnoDB refreshes that table's cache only when nobody has read it for 0.1 s, so a
    /// reader that polls it faster (several monitors observing at once) would freeze it and
    /// see a long-committed transaction grow old: it is read only here, by the pre-checks
    /// that poll it every 0.2 s, never by [`Instance::observe`].
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`]; [`Error::Timeout`] past `deadline`.
    pub async fn longest_transaction_by(
        &self,
        deadline: std::time::Instant,
    ) -> Result<Option<TransactionInfo>, Error> {
        self.longest_transaction_until(Some(Instant::from_std(deadline)))
            .await
    }

    pub(crate) async fn longest_transaction_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<TransactionInfo>, Error> {
        let mut session = self.session(PURPOSE, deadline).await?;
        let rows = session
            .query_text(
                "read the longest open transaction",
                Sql::Static(LONGEST_TRX),
                self.statement_deadline(deadline),
            )
            .await;
        self.release(session);
        Ok(rows?.first().and_then(read_transaction))
    }

    pub(crate) async fn observe_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Observation, Error> {
        let mut session = self.session(PURPOSE, deadline).await?;
        let result = observe_on(&mut session, self.statement_deadline(deadline)).await;
        self.release(session);
        result
    }
}

pub(crate) async fn observe_on(
    session: &mut Session,
    deadline: Instant,
) -> Result<Observation, Error> {
    let head = session
        .query_text(
            PURPOSE,
            Sql::Static("SELECT VERSION(), @@version_comment"),
            deadline,
        )
        .await?;
    let head = head.into_iter().next().unwrap_or_default();
    let version_text = head.text(0).unwrap_or_default();
    let version_comment = head.text(1).unwrap_or_default();

    let vars = name_values(
        session
            .query_text(PURPOSE, Sql::Static(VARIABLES), deadline)
            .await?,
    );
    let status = name_values(
        session
            .query_text(PURPOSE, Sql::Static(STATUS), deadline)
            .await?,
    );
    let replica_sql = match session.flavor() {
        Flavor::Mysql => "SHOW REPLICA STATUS",
        Flavor::Mariadb => "SHOW SLAVE STATUS",
    };
    let replica = session
        .query_text(PURPOSE, Sql::Static(replica_sql), deadline)
        .await?;
    let mdl = session
        .query_text(PURPOSE, Sql::Static(MDL_WAITS), deadline)
        .await?;

    let label = session.label().to_owned();
    let bad = |detail: String| Error::UnexpectedAnswer {
        instance: label.clone(),
        purpose: PURPOSE,
        detail,
    };
    let flavor = session.flavor();
    let gtid = read_gtid_state(flavor, &vars).map_err(bad)?;
    let server_id = vars
        .get("server_id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("@@server_id is missing or not a number".to_owned()))?;
    let uptime = status
        .get("uptime")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .ok_or_else(|| bad("status Uptime is missing or not a number".to_owned()))?;

    Ok(Observation {
        version: session.version,
        version_text,
        version_comment,
        server_id,
        server_uuid: vars.get("server_uuid").filter(|v| !v.is_empty()).cloned(),
        read_only: vars.get("read_only").is_some_and(|v| flag(v)),
        super_read_only: vars.get("super_read_only").map(|v| flag(v)),
        log_bin: vars.get("log_bin").is_some_and(|v| flag(v)),
        log_replica_updates: ["log_replica_updates", "log_slave_updates"]
            .iter()
            .find_map(|n| vars.get(*n))
            .is_some_and(|v| flag(v)),
        gtid,
        replication: replica.first().map(|row| read_replica_status(row, flavor)),
        semi_sync: read_semi_sync(&vars, &status),
        galera: read_galera(&vars, &status),
        metadata_lock_waits: mdl.first().and_then(|row| row.u64(0)).unwrap_or(0),
        uptime,
    })
}

pub(crate) fn read_transaction(row: &TextRow) -> Option<TransactionInfo> {
    Some(TransactionInfo {
        thread_id: row.u64(0)?,
        seconds: row.u64(1).unwrap_or(0),
        rows_modified: row.u64(2).unwrap_or(0),
    })
}

/// `SHOW ... VARIABLES/STATUS` rows as a map from lowercase name to value.
fn name_values(rows: Vec<TextRow>) -> HashMap<String, String> {
    rows.into_iter()
        .filter_map(|row| {
            Some((
                row.text(0)?.to_ascii_lowercase(),
                row.text(1).unwrap_or_default(),
            ))
        })
        .collect()
}

/// `ON`, `1`, `YES` and `TRUE` are true; MariaDB's lock levels for `read_only` (`NO_LOCK`,
/// `NO_LOCK_NO_ADMIN`, in releases that have them) are on too.
pub(crate) fn flag(value: &str) -> bool {
    let v = value.trim().to_ascii_uppercase();
    matches!(
        v.as_str(),
        "ON" | "1" | "YES" | "TRUE" | "NO_LOCK" | "NO_LOCK_NO_ADMIN"
    )
}

pub(crate) fn parse_gtid(flavor: Flavor, text: &str) -> Result<GtidSet, String> {
    match flavor {
        Flavor::Mysql => MysqlGtidSet::parse(text)
            .map(GtidSet::Mysql)
            .map_err(|e| e.to_string()),
        Flavor::Mariadb => MariadbGtidPos::parse(text)
            .map(GtidSet::Mariadb)
            .map_err(|e| e.to_string()),
    }
}

fn read_gtid_state(flavor: Flavor, vars: &HashMap<String, String>) -> Result<GtidState, String> {
    let get = |name: &str| -> Result<GtidSet, String> {
        let text = vars.get(name).map_or("", String::as_str);
        parse_gtid(flavor, text).map_err(|e| format!("@@{name}: {e}"))
    };
    Ok(match flavor {
        Flavor::Mysql => GtidState::Mysql {
            executed: get("gtid_executed")?,
            purged: get("gtid_purged")?,
        },
        Flavor::Mariadb => {
            let current_pos = get("gtid_current_pos")?;
            let text = vars.get("gtid_binlog_state").map_or("", String::as_str);
            let mut state =
                MariadbBinlogState::parse(text).map_err(|e| format!("@@gtid_binlog_state: {e}"))?;
            if let GtidSet::Mariadb(pos) = &current_pos {
                // A replica with its binary log off has replicated transactions only in
                // gtid_current_pos: each domain's last one is executed too.
                for gtid in pos.iter() {
                    state.record(gtid);
                }
            }
            GtidState::Mariadb {
                executed_state: GtidSet::MariadbState(state),
                current_pos,
                binlog_pos: get("gtid_binlog_pos")?,
                slave_pos: get("gtid_slave_pos")?,
            }
        }
    })
}

pub(crate) fn read_replica_status(row: &TextRow, flavor: Flavor) -> ReplicaStatus {
    let text = |names: &[&str]| row.get_any(names).unwrap_or("").to_owned();
    let num = |names: &[&str]| {
        row.get_any(names)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let io = text(&["Replica_IO_Running", "Slave_IO_Running"]);
    let io_thread = match io.to_ascii_lowercase().as_str() {
        "yes" => IoThreadState::Running,
        "connecting" | "preparing" => IoThreadState::Connecting,
        _ => IoThreadState::Stopped,
    };
    let using_gtid = text(&["Auto_Position", "Using_Gtid"]);
    ReplicaStatus {
        source_host: text(&["Source_Host", "Master_Host"]),
        source_port: num(&["Source_Port", "Master_Port"])
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        io_thread,
        sql_running: text(&["Replica_SQL_Running", "Slave_SQL_Running"])
            .eq_ignore_ascii_case("yes"),
        last_io_errno: num(&["Last_IO_Errno"])
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        last_io_error: text(&["Last_IO_Error"]),
        last_sql_errno: num(&["Last_SQL_Errno"])
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        last_sql_error: text(&["Last_SQL_Error"]),
        seconds_behind: num(&["Seconds_Behind_Source", "Seconds_Behind_Master"]),
        gtid_positioning: !(using_gtid.is_empty()
            || using_gtid == "0"
            || using_gtid.eq_ignore_ascii_case("no")),
        retrieved: row
            .get_any(&["Retrieved_Gtid_Set", "Gtid_IO_Pos"])
            .and_then(|text| parse_gtid(flavor, text).ok()),
    }
}

fn read_semi_sync(
    vars: &HashMap<String, String>,
    status: &HashMap<String, String>,
) -> Option<SemiSyncState> {
    let var = |names: [&str; 2]| names.iter().find_map(|n| vars.get(*n)).map(|v| flag(v));
    let stat = |names: [&str; 2]| names.iter().find_map(|n| status.get(*n)).map(|v| flag(v));
    let state = SemiSyncState {
        source_enabled: var([
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_master_enabled",
        ]),
        replica_enabled: var([
            "rpl_semi_sync_replica_enabled",
            "rpl_semi_sync_slave_enabled",
        ]),
        source_active: stat(["rpl_semi_sync_source_status", "rpl_semi_sync_master_status"]),
        replica_active: stat(["rpl_semi_sync_replica_status", "rpl_semi_sync_slave_status"]),
        source_clients: [
            "rpl_semi_sync_source_clients",
            "rpl_semi_sync_master_clients",
        ]
        .iter()
        .find_map(|n| status.get(*n))
        .and_then(|v| v.parse().ok()),
        wait_point: [
            "rpl_semi_sync_source_wait_point",
            "rpl_semi_sync_master_wait_point",
        ]
        .iter()
        .find_map(|n| vars.get(*n))
        .cloned(),
        wait_for_replica_count: vars
            .get("rpl_semi_sync_source_wait_for_replica_count")
            .and_then(|v| v.trim().parse().ok()),
        timeout: [
            "rpl_semi_sync_source_timeout",
            "rpl_semi_sync_master_timeout",
        ]
        .iter()
        .find_map(|n| vars.get(*n))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_millis),
        wait_no_replica: var([
            "rpl_semi_sync_source_wait_no_replica",
            "rpl_semi_sync_master_wait_no_slave",
        ]),
    };
    (state != SemiSyncState::default()).then_some(state)
}

fn read_galera(
    vars: &HashMap<String, String>,
    status: &HashMap<String, String>,
) -> Option<GaleraState> {
    let wsrep_on = flag(vars.get("wsrep_on")?);
    Some(GaleraState {
        wsrep_on,
        local_state: status.get("wsrep_local_state").and_then(|v| v.parse().ok()),
        local_state_comment: status.get("wsrep_local_state_comment").cloned(),
        cluster_size: status
            .get("wsrep_cluster_size")
            .and_then(|v| v.parse().ok()),
        desync: vars.get("wsrep_desync").is_some_and(|v| flag(v)),
        ready: status.get("wsrep_ready").is_some_and(|v| flag(v)),
        cluster_status: status.get("wsrep_cluster_status").cloned(),
    })
}

mod opt_duration_millis {
    //! Serialises an optional [`Duration`] as whole milliseconds.

    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
}

mod duration_secs {
    //! Serialises a [`Duration`] as whole seconds.

    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossless() -> SemiSyncState {
        SemiSyncState {
            source_enabled: Some(true),
            replica_enabled: Some(true),
            source_active: Some(true),
            replica_active: Some(false),
            source_clients: Some(2),
            wait_point: Some("AFTER_SYNC".into()),
            wait_for_replica_count: Some(2),
            timeout: Some(Duration::from_secs(86_400)),
            wait_no_replica: Some(true),
        }
    }

    #[test]
    fn acknowledgements_count_only_when_the_source_cannot_fall_back() {
        let hour = Duration::from_secs(3600);
        assert_eq!(lossless().ack_replicas(hour), Some(2));
        let mariadb = SemiSyncState {
            wait_for_replica_count: None,
            ..lossless()
        };
        assert_eq!(mariadb.ack_replicas(hour), Some(1), "MariaDB waits for one");
        let not = [
            SemiSyncState {
                source_enabled: Some(false),
                ..lossless()
            },
            SemiSyncState {
                source_active: Some(false),
                ..lossless()
            },
            SemiSyncState {
                wait_point: Some("AFTER_COMMIT".into()),
                ..lossless()
            },
            SemiSyncState {
                timeout: Some(Duration::from_secs(10)),
                ..lossless()
            },
            SemiSyncState {
                wait_no_replica: Some(false),
                ..lossless()
            },
            SemiSyncState::default(),
        ];
        for state in not {
            assert_eq!(state.ack_replicas(hour), None, "{state:?}");
        }
    }

    #[test]
    fn flags_read_as_the_servers_write_them() {
        for on in ["ON", "1", "yes", "NO_LOCK_NO_ADMIN"] {
            assert!(flag(on), "{on}");
        }
        for off in ["OFF", "0", "", "no"] {
            assert!(!flag(off), "{off}");
        }
    }
}
