//! A replica's side of a failover: stop its receiver, wait until its applier has executed
//! what the receiver received, and turn a source's semi-synchronous waiting on or off.
//!
//! A failover cannot ask the failed primary for its position, as a switchover does: what a
//! replica has is what its receiver (the replication I/O thread) wrote to its relay log.
//! So the failover first stops every replica's receiver ([`Instance::detach_by`]), which
//! keeps a primary that comes back from sending anything more, then lets the chosen
//! replica's applier (the SQL thread) execute its relay log
//! ([`Instance::wait_received_applied_by`]) before promoting it. With semi-synchronous
//! replication waiting after the sync (`AFTER_SYNC`), a transaction the primary acknowledged
//! is in the relay log of at least one replica, so it survives both steps.
//!
//! Per flavor:
//!
//! | | MySQL 8.0.23+ | MariaDB 10.5+ |
//! | --- | --- | --- |
//! | stop the receiver | `STOP REPLICA IO_THREAD` | `STOP SLAVE IO_THREAD` |
//! | what it received | `Retrieved_Gtid_Set` | `Gtid_IO_Pos` |
//! | what the applier executed | `@@gtid_executed` | `@@gtid_slave_pos` |
//! | the server-side wait | `WAIT_FOR_EXECUTED_GTID_SET(?, ?)` | `MASTER_GTID_WAIT(?, ?)` |
//! | semi-sync source switch | `rpl_semi_sync_source_enabled` (plugin) | `rpl_semi_sync_master_enabled` |
//!
//! The wait is the server's own, bound as parameters, in slices of at most half a second:
//! between two slices the replica's status is read again, so that an applier that stopped
//! (an error, or by hand) fails the wait at once with the server's error
//! ([`Error::ApplierStopped`]) instead of at the deadline. `MASTER_GTID_WAIT` waits for
//! `gtid_slave_pos`, which only the applier moves, and `WAIT_FOR_EXECUTED_GTID_SET` for
//! `gtid_executed`; the client-side check uses the same variables.

use std::time::Duration;

use switchyard_plan::versions::Flavor;
use tokio::time::Instant;

use crate::error::Error;
use crate::instance::{Instance, Session, Sql};
use crate::observe::{ReplicaStatus, read_replica_status};
use crate::replication::{WaitFailure, gtid_variable_on, wait_on};

/// The longest single server-side wait before the applier's state is read again.
const WAIT_SLICE: Duration = Duration::from_millis(500);

/// The time kept before the deadline to read the replica's state after the last slice, and
/// the shortest slice worth waiting.
const RESERVE: Duration = Duration::from_millis(100);

impl Instance {
    /// Stops the replica's receiver (its replication I/O thread) and checks that it is
    /// stopped: afterwards nothing more arrives from the source, and what arrived stays in
    /// the relay log for the applier, which keeps running. `STOP REPLICA IO_THREAD` (MySQL),
    /// `STOP SLAVE IO_THREAD` (MariaDB); both wait until the thread has ended. Idempotent: a
    /// stopped receiver is stopped again (the server only warns), and an instance with no
    /// source configured has nothing to stop.
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`] when `deadline` comes first,
    /// [`Error::Statement`] when the server refuses, and [`Error::UnexpectedAnswer`] when the
    /// receiver still runs afterwards.
    pub async fn detach_by(&self, deadline: std::time::Instant) -> Result<(), Error> {
        let purpose = "stop the replica's receiver";
        let deadline = Some(Instant::from_std(deadline));
        let mut session = self.session(purpose, deadline).await?;
        let result = async {
            let d = self.statement_deadline(deadline);
            if replica_status_on(&mut session, purpose, d).await?.is_none() {
                return Ok(());
            }
            let sql = match session.flavor() {
                Flavor::Mysql => "STOP REPLICA IO_THREAD",
                Flavor::Mariadb => "STOP SLAVE IO_THREAD",
            };
            session.exec(purpose, Sql::Static(sql), d).await?;
            match replica_status_on(&mut session, purpose, d).await? {
                Some(status) if status.io_thread != crate::IoThreadState::Stopped => {
                    Err(Error::UnexpectedAnswer {
                        instance: self.label().to_owned(),
                        purpose,
                        detail: format!(
                            "the receiver reads {:?} after it was stopped",
                            status.io_thread
                        ),
                    })
                }
                _ => Ok(()),
            }
        }
        .await;
        self.release(session);
        result
    }

    /// Waits until the replica's applier has executed every transaction its receiver had put
    /// in the relay log when the wait began (see the [module](self) for the statements of each
    /// flavor). Detach the replica first ([`Instance::detach_by`]) to wait for a set that no
    /// longer grows. Returns at once when there is nothing to wait for, or no source is
    /// configured.
    ///
    /// # Errors
    /// [`Error::ApplierStopped`] (with `Last_SQL_Errno` and `Last_SQL_Error`) as soon as the
    /// applier is seen stopped with received transactions unexecuted; [`Error::Lagging`] with
    /// what is still missing when `deadline` passes; connection failures and
    /// [`Error::Timeout`] when the replica does not answer; [`Error::UnexpectedAnswer`] when
    /// the server does not report what its receiver received.
    pub async fn wait_received_applied_by(
        &self,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        let purpose = "wait until the replica has applied what it received";
        let deadline = Instant::from_std(deadline);
        let started = Instant::now();
        let mut session = self.session(purpose, Some(deadline)).await?;
        let result = self
            .wait_received_applied_on(&mut session, purpose, started, deadline)
            .await;
        self.release(session);
        result
    }

    async fn wait_received_applied_on(
        &self,
        session: &mut Session,
        purpose: &'static str,
        started: Instant,
        deadline: Instant,
    ) -> Result<(), Error> {
        let d = self.statement_deadline(Some(deadline));
        let Some(mut status) = replica_status_on(session, purpose, d).await? else {
            return Ok(());
        };
        let target = status
            .retrieved
            .clone()
            .ok_or_else(|| Error::UnexpectedAnswer {
                instance: self.label().to_owned(),
                purpose,
                detail: "the replica status has no readable Retrieved_Gtid_Set / Gtid_IO_Pos"
                    .into(),
            })?;
        loop {
            let d = self.statement_deadline(Some(deadline));
            let applied = gtid_variable_on(
                session,
                purpose,
                "SELECT @@GLOBAL.gtid_executed",
                "SELECT @@GLOBAL.gtid_slave_pos",
                d,
            )
            .await?;
            let missing = target
                .subtract(&applied)
                .map_err(|e| Error::UnexpectedAnswer {
                    instance: self.label().to_owned(),
                    purpose,
                    detail: e.to_string(),
                })?;
            if missing.is_empty() {
                return Ok(());
            }
            if !status.sql_running {
                return Err(Error::ApplierStopped {
                    instance: self.label().to_owned(),
                    purpose,
                    errno: status.last_sql_errno,
                    message: status.last_sql_error,
                    missing,
                });
            }
            // Each slice ends early enough to read the status once more before the deadline.
            let now = Instant::now();
            let slice = (now + WAIT_SLICE).min(deadline.checked_sub(RESERVE).unwrap_or(now));
            if slice <= now + RESERVE {
                return Err(Error::Lagging {
                    instance: self.label().to_owned(),
                    purpose,
                    missing,
                    waited: started.elapsed(),
                });
            }
            match wait_on(session, purpose, &target, now, slice).await {
                Ok(()) => return Ok(()),
                Err(WaitFailure::ServerTimedOut) => {}
                Err(WaitFailure::Error(e)) => return Err(e),
            }
            let d = self.statement_deadline(Some(deadline));
            status = replica_status_on(session, purpose, d)
                .await?
                .ok_or_else(|| Error::UnexpectedAnswer {
                    instance: self.label().to_owned(),
                    purpose,
                    detail: "its replication was removed while it was waited for".into(),
                })?;
        }
    }

    /// Turns the source side of semi-synchronous replication on or off
    /// (`SET GLOBAL rpl_semi_sync_source_enabled` on MySQL, which needs the
    /// `semisync_source` plugin; `rpl_semi_sync_master_enabled` on MariaDB). Only the primary
    /// waits for acknowledgements: a replica with it on would hold its applier's commits
    /// waiting for replicas of its own.
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`] when `deadline` comes first, and
    /// [`Error::Statement`] (MySQL without the plugin: unknown system variable).
    pub async fn set_semi_sync_source_by(
        &self,
        enabled: bool,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        let purpose = "switch the source's semi-synchronous replication";
        let deadline = Some(Instant::from_std(deadline));
        let mut session = self.session(purpose, deadline).await?;
        let sql = match (session.flavor(), enabled) {
            (Flavor::Mysql, true) => "SET GLOBAL rpl_semi_sync_source_enabled = ON",
            (Flavor::Mysql, false) => "SET GLOBAL rpl_semi_sync_source_enabled = OFF",
            (Flavor::Mariadb, true) => "SET GLOBAL rpl_semi_sync_master_enabled = ON",
            (Flavor::Mariadb, false) => "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
        };
        let result = session
            .exec(purpose, Sql::Static(sql), self.statement_deadline(deadline))
            .await
            .map(drop);
        self.release(session);
        result
    }
}

/// The replica status, or `None` when no source is configured.
async fn replica_status_on(
    session: &mut Session,
    purpose: &'static str,
    deadline: Instant,
) -> Result<Option<ReplicaStatus>, Error> {
    let flavor = session.flavor();
    let sql = match flavor {
        Flavor::Mysql => "SHOW REPLICA STATUS",
        Flavor::Mariadb => "SHOW SLAVE STATUS",
    };
    let rows = session
        .query_text(purpose, Sql::Static(sql), deadline)
        .await?;
    Ok(rows.first().map(|row| read_replica_status(row, flavor)))
}
