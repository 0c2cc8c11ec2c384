//! The fence: stop every client, however privileged, from committing on a primary, close their
//! connections, and lift it again.
//!
//! See [`crate::switchover`](mod@crate::switchover) for why each mechanism was chosen.

use std::time::Duration;

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
    /// MariaDB: `SET GLOBAL read_only = 1` (stops clients without `READ ONLY ADMIN`) plus the
    /// backup lock `BACKUP STAGE BLOCK_COMMIT` held on a dedicated connection of the
    /// [`Instance`] handle, which stops every other commit: a client's commit, privileged or
    /// not, waits for the lock (it is never acknowledged) until the fence kills its
    /// connection. The backup lock lasts as long as that connection: if the handle is dropped
    /// or the operator dies, only `read_only` remains, so a caller that resumes a switchover
    /// fences again before relying on it. No `mariadb-backup` can run while it is held (and a
    /// fence fails while one runs).
    ReadOnlyAndBlockCommit,
}

impl FenceMechanism {
    /// The mechanism used for a server version.
    pub fn for_version(version: ServerVersion) -> Self {
        match version.flavor {
            Flavor::Mysql => FenceMechanism::SuperReadOnly,
            Flavor::Mariadb => FenceMechanism::ReadOnlyAndBlockCommit,
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
    /// Time from the first statement that stopped writes to the end of the fence (the
    /// preparation before it, on MariaDB, is not counted).
    pub blocking: Duration,
}

/// How long a commit may wait for a semi-synchronous acknowledgement, with a replica counted
/// as connected, before the fence takes it for one no replica will give.
const STALE_ACK: Duration = Duration::from_secs(2);

/// Whether a `SHOW PROCESSLIST` row is a commit waiting for a semi-synchronous
/// acknowledgement (MariaDB `Waiting for semi-sync ACK from slave`, MySQL `Waiting for
/// semi-sync ACK from replica`).
fn awaits_ack(row: &crate::instance::TextRow) -> bool {
    row.get("State")
        .is_some_and(|s| s.to_ascii_lowercase().contains("semi-sync"))
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
    /// - MariaDB: on a dedicated connection that this handle (and its clones) keeps,
    ///   `BACKUP STAGE START` and `BACKUP STAGE FLUSH` (which block nothing a client does to
    ///   InnoDB tables); then `SET GLOBAL read_only = 1`, kill clients, `BACKUP STAGE
    ///   BLOCK_COMMIT` on the dedicated connection, and kill clients again (a privileged
    ///   client that reconnected now waits for the lock and is killed before it can commit).
    ///
    /// Fencing again is harmless. Lift it with [`Instance::unfence`] (or by
    /// [`Instance::promote`], which ends with it).
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`] when the server does not grant the lock in time
    /// (a long statement holds a table), [`Error::Statement`]. A fence that failed half-way
    /// may have left the server read-only: call [`Instance::unfence`] to undo it.
    pub async fn fence(&self) -> Result<FenceReport, Error> {
        self.fence_until(None).await
    }

    /// [`Instance::fence`] bounded by `deadline`: connecting, every statement and the wait for
    /// the backup lock end by it (each statement also by [`Timeouts::statement`]).
    ///
    /// # Errors
    /// As [`Instance::fence`]; [`Error::Timeout`] when the deadline comes first.
    ///
    /// [`Timeouts::statement`]: crate::Timeouts::statement
    pub async fn fence_by(&self, deadline: std::time::Instant) -> Result<FenceReport, Error> {
        self.fence_until(Some(Instant::from_std(deadline))).await
    }

    pub(crate) async fn fence_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<FenceReport, Error> {
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
        let writes_stopped;
        match mechanism {
            FenceMechanism::SuperReadOnly => {
                writes_stopped = Instant::now();
                killed += self.super_read_only_on(session, deadline, d).await?;
                killed += self.kill_clients_on(session, &[], d).await?;
            }
            FenceMechanism::ReadOnlyAndBlockCommit => {
                let mut held = self.inner.fence.lock().await;
                // A lock whose connection died (killed, the server restarted) holds
                // nothing: a new one is taken.
                if let Some(lock) = held.as_mut()
                    && lock
                        .exec("check that the fence's lock holds", Sql::Static("DO 0"), d)
                        .await
                        .is_err()
                    && let Some(dead) = held.take()
                {
                    dead.close().await;
                }
                // The lock's connection and the backup stages that block no client are
                // prepared before anything changes, so that they do not lengthen the time
                // without a writable primary.
                let mut fresh = None;
                if held.is_none() {
                    let mut lock = self
                        .connect("fence the primary (backup lock)", deadline)
                        .await?;
                    let wait = d.saturating_duration_since(Instant::now()).as_secs().max(1);
                    lock.exec_bound(
                        "bound the fence's lock wait",
                        Sql::Static("SET SESSION lock_wait_timeout = ?"),
                        &[Param::Int(i64::try_from(wait).unwrap_or(i64::MAX))],
                        d,
                    )
                    .await?;
                    for stage in ["BACKUP STAGE START", "BACKUP STAGE FLUSH"] {
                        lock.exec("prepare the fence (backup stages)", Sql::Static(stage), d)
                            .await?;
                    }
                    fresh = Some(lock);
                }
                self.refuse_unacknowledgeable_commits(session, d).await?;
                writes_stopped = Instant::now();
                session
                    .exec(
                        "fence the primary (read_only)",
                        Sql::Static("SET GLOBAL read_only = 1"),
                        d,
                    )
                    .await?;
                let lock_id = fresh
                    .as_ref()
                    .or(held.as_ref())
                    .map_or(0, |s| s.connection_id);
                // Clients without READ ONLY ADMIN are stopped now; closing every client also
                // ends statements that would hold up the lock.
                killed += self.kill_clients_on(session, &[lock_id], d).await?;
                if let Some(mut lock) = fresh {
                    lock.exec(
                        "fence the primary (BACKUP STAGE BLOCK_COMMIT)",
                        Sql::Static("BACKUP STAGE BLOCK_COMMIT"),
                        d,
                    )
                    .await?;
                    *held = Some(lock);
                }
                drop(held);
                // Privileged clients that reconnected meanwhile now wait for the lock: close
                // them too, so that none is left to commit when the lock goes.
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
            blocking: writes_stopped.elapsed(),
        })
    }

    /// Lifts a fence: releases the backup lock this handle holds (MariaDB) and turns
    /// `super_read_only` (MySQL) and `read_only` off, so the server takes writes again.
    ///
    /// Also use it after a restart of the operator: the server-side part of the fence
    /// (`read_only`, `super_read_only`) outlives the process that set it. A DDL lockout that
    /// an engine killed during a schema change left ([`Instance::release_ddl_lockout`]) is
    /// undone first, so the accounts it locked can log in to the writable server.
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`].
    pub async fn unfence(&self) -> Result<(), Error> {
        self.unfence_until(None).await
    }

    /// [`Instance::unfence`] bounded by `deadline`.
    ///
    /// # Errors
    /// As [`Instance::unfence`]; [`Error::Timeout`] when the deadline comes first.
    pub async fn unfence_by(&self, deadline: std::time::Instant) -> Result<(), Error> {
        self.unfence_until(Some(Instant::from_std(deadline))).await
    }

    pub(crate) async fn unfence_until(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.release_fence_lock().await;
        self.release_ddl_lockout_until(deadline).await?;
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

    /// Whether this handle holds a fence's backup lock (MariaDB) that still holds: its
    /// connection answers. A lock whose connection died (killed, or the server restarted) is
    /// forgotten, so that the next fence takes a new one.
    pub async fn holds_fence_lock(&self) -> bool {
        let mut held = self.inner.fence.lock().await;
        let Some(lock) = held.as_mut() else {
            return false;
        };
        let d = Instant::now() + self.inner.timeouts.connect;
        let alive = lock
            .exec("check that the fence's lock holds", Sql::Static("DO 0"), d)
            .await
            .is_ok();
        if !alive && let Some(dead) = held.take() {
            dead.close().await;
        }
        alive
    }

    /// Releases the backup lock of a fence this handle holds (MariaDB), leaving `read_only`
    /// (and so the fence against clients without the read-only admin privilege) as it is:
    /// for DDL on a fenced former primary, which the lock would block. Does nothing when the
    /// handle holds no lock.
    pub async fn release_fence_lock(&self) {
        let lock = self.inner.fence.lock().await.take();
        if let Some(mut lock) = lock {
            let d = Instant::now() + self.inner.timeouts.connect;
            // Closing the connection releases the lock too; ending the stage makes it immediate.
            let _ended = lock
                .exec(
                    "release the fence's lock",
                    Sql::Static("BACKUP STAGE END"),
                    d,
                )
                .await;
            lock.close().await;
        }
    }

    /// Kills every client connection other than this account's, replication's
    /// (`Binlog Dump`), the server's own threads and, on MariaDB, those waiting for a
    /// semi-synchronous acknowledgement, and waits until their threads have ended;
    /// returns how many were killed. A thread killed while it waits for a lock (a fence's)
    /// rolls back only once it wakes: without the wait, a lock released right after this call
    /// could let its write commit. A thread waiting for a semi-synchronous acknowledgement is
    /// past its commit point and is not waited for (on MySQL it never ends).
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`] (a `KILL` of a thread that has already
    /// gone is not an error).
    pub async fn kill_client_connections(&self) -> Result<u32, Error> {
        self.kill_client_connections_until(None).await
    }

    /// [`Instance::kill_client_connections`] bounded by `deadline`.
    ///
    /// # Errors
    /// As [`Instance::kill_client_connections`]; [`Error::Timeout`] when the deadline comes
    /// first.
    pub async fn kill_client_connections_by(
        &self,
        deadline: std::time::Instant,
    ) -> Result<u32, Error> {
        self.kill_client_connections_until(Some(Instant::from_std(deadline)))
            .await
    }

    async fn kill_client_connections_until(&self, deadline: Option<Instant>) -> Result<u32, Error> {
        let mut session = self.session("close client connections", deadline).await?;
        let d = self.statement_deadline(deadline);
        let result = self.kill_clients_and_wait(&mut session, d).await;
        self.release(session);
        result
    }

    pub(crate) async fn kill_clients_on(
        &self,
        session: &mut Session,
        keep: &[u64],
        deadline: Instant,
    ) -> Result<u32, Error> {
        let killed = self.kill_clients_ids(session, keep, deadline).await?;
        Ok(u32::try_from(killed.len()).unwrap_or(u32::MAX))
    }

    /// Kills client connections and waits until their threads have ended (but for those in
    /// the semi-synchronous wait): a thread killed while it waits for the fence's lock rolls
    /// back only once it wakes, and if the lock went first it could commit instead.
    pub(crate) async fn kill_clients_and_wait(
        &self,
        session: &mut Session,
        deadline: Instant,
    ) -> Result<u32, Error> {
        let mut killed = self.kill_clients_ids(session, &[], deadline).await?;
        let count = u32::try_from(killed.len()).unwrap_or(u32::MAX);
        while !killed.is_empty() {
            let rows = session
                .query_text(
                    "wait for killed clients to end",
                    Sql::Static("SHOW PROCESSLIST"),
                    deadline,
                )
                .await?;
            // A thread in the semi-synchronous wait is past its commit point: it cannot
            // commit anything more, and on MySQL a killed one never ends.
            let alive: Vec<u64> = rows
                .iter()
                .filter(|row| !awaits_ack(row))
                .filter_map(|row| row.get("Id").and_then(|v| v.trim().parse().ok()))
                .collect();
            killed.retain(|id| alive.contains(id));
            if killed.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    instance: self.label().to_owned(),
                    purpose: "wait for killed clients to end",
                    waited: self.inner.timeouts.statement,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(count)
    }

    /// `SET GLOBAL super_read_only = 1` on a connection of its own, which also finishes when
    /// commits are stuck in a semi-synchronous wait that will never end (a failed primary that
    /// runs again, its replicas detached). Returns how many client connections it closed.
    ///
    /// The statement first takes the global read lock, then waits for the commit lock, which
    /// a commit holds until its acknowledgement comes. On MySQL 9.7 neither `KILL` of the
    /// waiting session nor its client's disconnection ends that wait (the thread shows
    /// `Killed`, still `Waiting for semi-sync ACK from replica`), so while the statement
    /// waits behind such a commit this:
    /// 1. closes every client connection: a closed connection can never see its commit
    ///    acknowledged, whatever happens to the commit afterwards. No new write can start
    ///    meanwhile: the pending global read lock makes every new write wait (`Waiting for
    ///    global read lock`), and the statement turns `super_read_only` on before it lets
    ///    them go, so they fail;
    /// 2. turns `rpl_semi_sync_source_enabled` off, which releases the waiting commits: they
    ///    commit on this server (they were already in its binary log, so a restart would
    ///    have committed them too), acknowledged to nobody, and the statement gets its
    ///    lock;
    /// 3. once `super_read_only` is on, sets `rpl_semi_sync_source_enabled` back.
    ///
    /// Turning semi-synchronous replication off first instead would acknowledge the waiting
    /// commits to their clients: acknowledged writes on a fenced primary, which no replica
    /// has. Measured on MySQL 9.7 with a commit stuck with no replica: the closed clients got
    /// `Lost connection` (2013), a client that connected after the statement started waited
    /// for the global read lock and was closed too, and the fence finished.
    async fn super_read_only_on(
        &self,
        session: &mut Session,
        deadline: Option<Instant>,
        d: Instant,
    ) -> Result<u32, Error> {
        let purpose = "fence the primary (super_read_only)";
        let mut setter = self.connect(purpose, deadline).await?;
        let setter_id = setter.connection_id;
        let mut killed = 0;
        let mut released = None;
        let outcome = {
            let set = setter.exec(purpose, Sql::Static("SET GLOBAL super_read_only = 1"), d);
            tokio::pin!(set);
            loop {
                tokio::select! {
                    result = &mut set => break result.map(drop),
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                if released.is_some() {
                    continue;
                }
                match self.stuck_behind_semi_sync(session, setter_id, d).await {
                    Ok(false) => {}
                    Ok(true) => match self.release_semi_sync_waiters(session, setter_id, d).await {
                        Ok((closed, was)) => {
                            killed += closed;
                            released = Some(was);
                        }
                        Err(e) => break Err(e),
                    },
                    Err(e) => break Err(e),
                }
            }
        };
        if outcome.is_err() {
            // The statement may still wait on the server: it must not take effect later.
            let _ended = session
                .exec(
                    "end the fence's pending statement",
                    Sql::Built(format!("KILL QUERY {setter_id}")),
                    d,
                )
                .await;
        }
        setter.close().await;
        if let Some(was) = released {
            let restore = if was {
                "SET GLOBAL rpl_semi_sync_source_enabled = ON"
            } else {
                "SET GLOBAL rpl_semi_sync_source_enabled = OFF"
            };
            session
                .exec(
                    "restore semi-synchronous replication after the fence",
                    Sql::Static(restore),
                    d,
                )
                .await?;
        }
        outcome.map(|()| killed)
    }

    /// Whether the fence's statement (connection `setter`) waits for a lock while another
    /// thread waits for a semi-synchronous acknowledgement.
    async fn stuck_behind_semi_sync(
        &self,
        session: &mut Session,
        setter: u64,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let rows = session
            .query_text(
                "list commits waiting for a semi-synchronous acknowledgement",
                Sql::Static("SHOW PROCESSLIST"),
                deadline,
            )
            .await?;
        let state =
            |row: &crate::instance::TextRow| row.get("State").unwrap_or("").to_ascii_lowercase();
        let id = |row: &crate::instance::TextRow| {
            row.get("Id").and_then(|v| v.trim().parse::<u64>().ok())
        };
        let setter_waits = rows.iter().any(|row| {
            id(row) == Some(setter) && {
                let s = state(row);
                s.contains("global read lock") || s.contains("commit lock")
            }
        });
        let commit_waits = rows
            .iter()
            .any(|row| id(row) != Some(setter) && awaits_ack(row));
        Ok(setter_waits && commit_waits)
    }

    /// Closes every client connection, then turns `rpl_semi_sync_source_enabled` off to
    /// release the commits waiting for an acknowledgement (see
    /// [`Instance::super_read_only_on`]). Returns the connections closed and whether semi-sync
    /// was on.
    async fn release_semi_sync_waiters(
        &self,
        session: &mut Session,
        setter: u64,
        deadline: Instant,
    ) -> Result<(u32, bool), Error> {
        let closed = self.kill_clients_ids(session, &[setter], deadline).await?;
        let rows = session
            .query_text(
                "read whether semi-synchronous replication is on",
                Sql::Static("SELECT @@GLOBAL.rpl_semi_sync_source_enabled"),
                deadline,
            )
            .await?;
        let was = rows
            .first()
            .and_then(|row| row.text(0))
            .is_some_and(|v| v.trim() == "1");
        session
            .exec(
                "release commits waiting for a semi-synchronous acknowledgement",
                Sql::Static("SET GLOBAL rpl_semi_sync_source_enabled = OFF"),
                deadline,
            )
            .await?;
        tracing::warn!(
            instance = %self,
            closed = closed.len(),
            "fence: commits stuck in the semi-synchronous wait released after closing every \
             client connection (none of them acknowledged)"
        );
        Ok((u32::try_from(closed.len()).unwrap_or(u32::MAX), was))
    }

    /// Refuses to fence a MariaDB primary whose commits wait for a semi-synchronous
    /// acknowledgement that nothing can give: semi-synchronous replication on and a client
    /// thread in the wait, with no replica connected to acknowledge
    /// (`Rpl_semi_sync_master_clients` 0) or waiting [`STALE_ACK`] or more (a replica still
    /// counted as connected over a connection a network cut killed). Waits that a connected
    /// replica ends are waited for (up to `deadline`). That is a failed primary running again after the failover detached its replicas
    /// (a freeze that ended, a partition that healed), or a candidate whose promotion is
    /// undone. Those commits
    /// were acknowledged to nobody and must stay so: `KILL CONNECTION` on a thread in the wait
    /// sometimes lets MariaDB report its commit done to the client (the simulation's
    /// frozen-primary and partitioned-primary failovers, about one run in four under load:
    /// acknowledged writes no replica had), and the wait holds up `read_only` and the backup
    /// lock, so the fence could not finish without ending them. Only stopping the server at
    /// once ends them safely, which the runtime does on
    /// [`Error::UnacknowledgeableCommits`]. Nothing is changed before it is returned.
    async fn refuse_unacknowledgeable_commits(
        &self,
        session: &mut Session,
        deadline: Instant,
    ) -> Result<(), Error> {
        let mut first_seen: Option<Vec<u64>> = None;
        loop {
            let rows = session
                .query_text(
                    "read whether a replica can acknowledge commits",
                    Sql::Static(
                        "SELECT @@GLOBAL.rpl_semi_sync_master_enabled, VARIABLE_VALUE \
                         FROM information_schema.GLOBAL_STATUS \
                         WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'",
                    ),
                    deadline,
                )
                .await?;
            let Some(row) = rows.first() else {
                return Ok(());
            };
            if row.text(0).is_none_or(|v| v.trim() != "1") {
                return Ok(());
            }
            let clients: u64 = row.text(1).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            let rows = session
                .query_text(
                    "list commits waiting for a semi-synchronous acknowledgement",
                    Sql::Static("SHOW PROCESSLIST"),
                    deadline,
                )
                .await?;
            // (thread id, seconds in the wait) of each commit waiting.
            let waits: Vec<(u64, u64)> = rows
                .iter()
                .filter(|row| self.is_client(session, row, &[]))
                .filter(|row| awaits_ack(row))
                .filter_map(|row| {
                    let id = row.get("Id")?.trim().parse().ok()?;
                    let time = row.get("Time").and_then(|t| t.trim().parse().ok());
                    Some((id, time.unwrap_or(0)))
                })
                .collect();
            // Nobody to acknowledge them, or a replica that still counts as connected but
            // does not acknowledge (its connection died on a network that was cut: the dump
            // thread has not noticed yet).
            if !waits.is_empty()
                && (clients == 0 || waits.iter().any(|(_, t)| *t >= STALE_ACK.as_secs()))
            {
                return Err(Error::UnacknowledgeableCommits {
                    instance: self.label().to_owned(),
                    waiting: u32::try_from(waits.len()).unwrap_or(u32::MAX),
                });
            }
            // A connected replica acknowledges them in a moment (a switchover's fence under
            // load, where new commits keep arriving): the fence goes on once none of those
            // first seen still waits, or fails at its deadline.
            let first = first_seen.get_or_insert_with(|| waits.iter().map(|(id, _)| *id).collect());
            if !waits.iter().any(|(id, _)| first.contains(id)) || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether a `SHOW PROCESSLIST` row is a client connection a fence closes: not this
    /// session, not one in `keep`, not the operator's account, not the server's own threads
    /// and not replication's.
    fn is_client(&self, session: &Session, row: &crate::instance::TextRow, keep: &[u64]) -> bool {
        let Some(id) = row.get("Id").and_then(|v| v.trim().parse::<u64>().ok()) else {
            return false;
        };
        let user = row.get("User").unwrap_or("");
        let command = row.get("Command").unwrap_or("");
        id != session.connection_id
            && !keep.contains(&id)
            && user != self.inner.credentials.user.as_str()
            && !SYSTEM_USERS.contains(&user)
            && !KEPT_COMMANDS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(command))
    }

    /// Kills client connections; returns the ids killed. On MariaDB a thread waiting for a
    /// semi-synchronous acknowledgement is left alone: it is past its commit point, a replica
    /// connected to acknowledge it ends its wait soon, and killing it could report its commit
    /// done before any replica has it (with no replica connected the fence refuses first, see
    /// [`Instance::refuse_unacknowledgeable_commits`]).
    async fn kill_clients_ids(
        &self,
        session: &mut Session,
        keep: &[u64],
        deadline: Instant,
    ) -> Result<Vec<u64>, Error> {
        let purpose = "list client connections";
        let rows = session
            .query_text(purpose, Sql::Static("SHOW PROCESSLIST"), deadline)
            .await?;
        let spare_waiters = session.flavor() == Flavor::Mariadb;
        let mut killed = Vec::new();
        for row in rows {
            if !self.is_client(session, &row, keep) {
                continue;
            }
            let Some(id) = row.get("Id").and_then(|v| v.trim().parse::<u64>().ok()) else {
                continue;
            };
            if spare_waiters && awaits_ack(&row) {
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
                Ok(_) => killed.push(id),
                // 1094: unknown thread id, it ended on its own.
                Err(Error::Statement { server, .. }) if server.code == 1094 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(killed)
    }
}
