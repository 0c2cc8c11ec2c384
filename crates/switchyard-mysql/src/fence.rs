//! The fence: stop every client, however privileged, from committing on a primary, close their
//! connections, and lift it again.
//!
//! See [`crate::switchover`](mod@crate::switchover) for why each mechanism was chosen.

use serde::{Deserialize, Serialize};
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::versions::{Flavor, ServerVersion};
use tokio::time::Instant;

use crate::error::Error;
use crate::instance::{Instance, Param, Session, Sql};
use crate::replication::gtid_variable_on;

/// How a fence stops writes on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceMechanism {
    /// MySQL: `SET GLOBAL super_read_only = 1`, which refuses writes and commits from every
    /// client including holders of `SUPER` and `CONNECTION_ADMIN`. It lasts until turned off,
    /// whatever happens to the operator.
    SuperReadOnly,
    /// MariaDB: `SET GLOBAL read_only = 1` (stops clients without `READ ONLY ADMIN`) plus
    /// `FLUSH TABLES WITH READ LOCK` held on a dedicated connection of the [`Instance`] handle
    /// (stops everyone else: a commit waits for the lock and its connection is then killed).
    /// The read lock lasts as long as that connection: if the handle is dropped or the
    /// operator dies, only `read_only` remains, so a caller that resumes a switchover fences
    /// again before relying on it.
    ReadOnlyAndGlobalReadLock,
}

impl FenceMechanism {
    /// The mechanism used for a server version.
    pub fn for_version(version: ServerVersion) -> Self {
        match version.flavor {
            Flavor::Mysql => FenceMechanism::SuperReadOnly,
            Flavor::Mariadb => FenceMechanism::ReadOnlyAndGlobalReadLock,
        }
    }
}

/// What [`Instance::fence`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FenceReport {
    /// How the fence holds.
    pub mechanism: FenceMechanism,
    /// How many client connections were killed.
    pub killed_connections: u32,
    /// The server's binary log GTID position once fenced: nothing commits after it, so a
    /// candidate that has executed it has everything.
    pub position: GtidSet,
}

/// Users whose threads are the server's own.
const SYSTEM_USERS: [&str; 4] = ["system user", "event_scheduler", "DELAYED", "rdsadmin"];

/// Commands of threads that are not clients to close: the source side of replication (the
/// candidate must keep receiving), and the server's own threads.
const KEPT_COMMANDS: [&str; 8] = [
    "Binlog Dump",
    "Binlog Dump GTID",
    "Daemon",
    "Killed",
    "Slave_IO",
    "Slave_SQL",
    "Slave_worker",
    "Register Slave",
];

impl Instance {
    /// Fences the server so that no client, however privileged, commits after this returns,
    /// then kills every client connection other than the operator account's and replication's.
    ///
    /// - MySQL: `SET GLOBAL super_read_only = 1`.
    /// - MariaDB: `SET GLOBAL read_only = 1`, kill clients, `FLUSH TABLES WITH READ LOCK` on a
    ///   dedicated connection that this handle (and its clones) keeps, kill clients again (a
    ///   privileged writer that reconnected now waits on the lock and is killed).
    ///
    /// Fencing again is harmless. Lift it with [`Instance::unfence`] (or by
    /// [`Instance::promote`], which ends with it).
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`] when the server does not grant the lock in time
    /// (a long statement holds a table), [`Error::Statement`]. A fence that failed half-way
    /// may have left the server read-only: call [`Instance::unfence`] to undo it.
    pub async fn fence(&self) -> Result<FenceReport, Error> {
        self.fence_by(None).await
    }

    pub(crate) async fn fence_by(&self, deadline: Option<Instant>) -> Result<FenceReport, Error> {
        let mut session = self.session("fence the primary", deadline).await?;
        let result = self.fence_on(&mut session, deadline).await;
        self.release(session);
        result
    }

    async fn fence_on(
        &self,
        session: &mut Session,
        deadline: Option<Instant>,
    ) -> Result<FenceReport, Error> {
        let d = self.statement_deadline(deadline);
        let mechanism = FenceMechanism::for_version(session.version);
        let mut killed = 0;
        match mechanism {
            FenceMechanism::SuperReadOnly => {
                session
                    .exec(
                        "fence the primary (super_read_only)",
                        Sql::Static("SET GLOBAL super_read_only = 1"),
                        d,
                    )
                    .await?;
                killed += self.kill_clients_on(session, &[], d).await?;
            }
            FenceMechanism::ReadOnlyAndGlobalReadLock => {
                session
                    .exec(
                        "fence the primary (read_only)",
                        Sql::Static("SET GLOBAL read_only = 1"),
                        d,
                    )
                    .await?;
                killed += self.kill_clients_on(session, &[], d).await?;
                let mut held = self.inner.fence.lock().await;
                if held.is_none() {
                    let mut lock = self
                        .connect("fence the primary (global read lock)", deadline)
                        .await?;
                    let d = self.statement_deadline(deadline);
                    let wait = d.saturating_duration_since(Instant::now()).as_secs().max(1);
                    lock.exec_bound(
                        "bound the fence's lock wait",
                        Sql::Static("SET SESSION lock_wait_timeout = ?"),
                        &[Param::Int(i64::try_from(wait).unwrap_or(i64::MAX))],
                        d,
                    )
                    .await?;
                    lock.exec(
                        "fence the primary (global read lock)",
                        Sql::Static("FLUSH TABLES WITH READ LOCK"),
                        d,
                    )
                    .await?;
                    *held = Some(lock);
                }
                let lock_id = held.as_ref().map(|s| s.connection_id).unwrap_or(0);
                drop(held);
                killed += self.kill_clients_on(session, &[lock_id], d).await?;
            }
        }
        let position = gtid_variable_on(
            session,
            "read the fenced primary's GTID position",
            "SELECT @@GLOBAL.gtid_executed",
            "SELECT @@GLOBAL.gtid_binlog_pos",
            d,
        )
        .await?;
        tracing::info!(instance = %self, ?mechanism, killed, %position, "fenced");
        Ok(FenceReport {
            mechanism,
            killed_connections: killed,
            position,
        })
    }

    /// Lifts a fence: releases the global read lock this handle holds (MariaDB) and turns
    /// `super_read_only` (MySQL) and `read_only` off, so the server takes writes again.
    ///
    /// Also use it after a restart of the operator: the server-side part of the fence
    /// (`read_only`, `super_read_only`) outlives the process that set it.
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`].
    pub async fn unfence(&self) -> Result<(), Error> {
        self.unfence_by(None).await
    }

    pub(crate) async fn unfence_by(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.release_fence_lock().await;
        let mut session = self.session("lift the fence", deadline).await?;
        let d = self.statement_deadline(deadline);
        let result = async {
            if session.flavor() == Flavor::Mysql {
                session
                    .exec(
                        "lift the fence (super_read_only)",
                        Sql::Static("SET GLOBAL super_read_only = 0"),
                        d,
                    )
                    .await?;
            }
            session
                .exec(
                    "lift the fence (read_only)",
                    Sql::Static("SET GLOBAL read_only = 0"),
                    d,
                )
                .await
                .map(drop)
        }
        .await;
        self.release(session);
        if result.is_ok() {
            tracing::info!(instance = %self, "fence lifted");
        }
        result
    }

    /// Whether this handle holds a fence's global read lock (MariaDB).
    pub async fn holds_fence_lock(&self) -> bool {
        self.inner.fence.lock().await.is_some()
    }

    /// Releases the global read lock of a fence, leaving `read_only` as it is.
    pub(crate) async fn release_fence_lock(&self) {
        let lock = self.inner.fence.lock().await.take();
        if let Some(mut lock) = lock {
            let d = Instant::now() + self.inner.timeouts.connect;
            // Closing the connection releases the lock too; UNLOCK first makes it immediate.
            let _unlocked = lock
                .exec("release the fence's lock", Sql::Static("UNLOCK TABLES"), d)
                .await;
            lock.close().await;
        }
    }

    /// Kills every client connection other than this account's, replication's
    /// (`Binlog Dump`) and the server's own threads; returns how many were killed.
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`] (a `KILL` of a thread that has already
    /// gone is not an error).
    pub async fn kill_client_connections(&self) -> Result<u32, Error> {
        let mut session = self.session("close client connections", None).await?;
        let d = self.statement_deadline(None);
        let result = self.kill_clients_on(&mut session, &[], d).await;
        self.release(session);
        result
    }

    pub(crate) async fn kill_clients_on(
        &self,
        session: &mut Session,
        keep: &[u64],
        deadline: Instant,
    ) -> Result<u32, Error> {
        let purpose = "list client connections";
        let rows = session
            .query_text(purpose, Sql::Static("SHOW PROCESSLIST"), deadline)
            .await?;
        let own = session.connection_id;
        let operator = self.inner.credentials.user.as_str();
        let mut killed = 0;
        for row in rows {
            let Some(id) = row.get("Id").and_then(|v| v.trim().parse::<u64>().ok()) else {
                continue;
            };
            let user = row.get("User").unwrap_or("");
            let command = row.get("Command").unwrap_or("");
            if id == own
                || keep.contains(&id)
                || user == operator
                || SYSTEM_USERS.contains(&user)
                || KEPT_COMMANDS
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(command))
            {
                continue;
            }
            match session
                .exec(
                    "close a client connection",
                    Sql::Built(format!("KILL CONNECTION {id}")),
                    deadline,
                )
                .await
            {
                Ok(_) => killed += 1,
                // 1094: unknown thread id, it ended on its own.
                Err(Error::Statement { server, .. }) if server.code == 1094 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(killed)
    }
}
