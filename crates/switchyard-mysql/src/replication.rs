//! Replication control: configure a replica with GTID positioning, promote, repoint, demote,
//! start and stop, and wait until a replica has executed a GTID set.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::versions::Flavor;
use tokio::time::Instant;

use crate::error::Error;
use crate::instance::{Instance, InstanceAddr, Param, Secret, Session, Sql};
use crate::observe::{flag, parse_gtid};
use crate::sql::{quote_literal, validate_host, validate_password, validate_user};

/// The address replicas use to reach a source (a host name or IP address and a port). It may
/// differ from the address the operator uses (a Service name, say).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceAddr {
    /// Host name or IP address, as replicas resolve it.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl SourceAddr {
    /// A source address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SourceAddr {
            host: host.into(),
            port,
        }
    }
}

impl From<&InstanceAddr> for SourceAddr {
    fn from(addr: &InstanceAddr) -> Self {
        SourceAddr {
            host: addr.host.clone(),
            port: addr.port,
        }
    }
}

impl fmt::Display for SourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&InstanceAddr::new(self.host.clone(), self.port), f)
    }
}

/// The replication account replicas log in to their source with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationCredentials {
    /// The account name (validated by [`crate::sql::validate_user`]).
    pub user: String,
    /// Its password (validated by [`crate::sql::validate_password`]).
    pub password: Secret,
    /// Whether replicas connect to the source with TLS (`SOURCE_SSL=1` / `MASTER_SSL=1`).
    /// Without TLS a MySQL replica asks the source for its RSA key (`GET_SOURCE_PUBLIC_KEY=1`)
    /// to log in with `caching_sha2_password`.
    pub ssl: bool,
}

impl ReplicationCredentials {
    /// Credentials without TLS.
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        ReplicationCredentials {
            user: user.into(),
            password: password.into(),
            ssl: false,
        }
    }
}

impl Instance {
    /// Makes the instance a read-only replica of `of` with GTID positioning, and starts
    /// replication.
    ///
    /// - MySQL: `STOP REPLICA`, `SET GLOBAL super_read_only = 1`, `CHANGE REPLICATION SOURCE TO
    ///   SOURCE_HOST, SOURCE_PORT, SOURCE_USER, SOURCE_PASSWORD, SOURCE_AUTO_POSITION = 1,
    ///   SOURCE_SSL, GET_SOURCE_PUBLIC_KEY = 1, SOURCE_CONNECT_RETRY = 1`, `START REPLICA`.
    /// - MariaDB: `STOP SLAVE`, `SET GLOBAL read_only = 1`, `CHANGE MASTER TO MASTER_HOST,
    ///   MASTER_PORT, MASTER_USER, MASTER_PASSWORD, MASTER_USE_GTID = slave_pos, MASTER_SSL,
    ///   MASTER_CONNECT_RETRY = 1`, `START SLAVE`.
    ///
    /// For a former primary use [`Instance::demote_to_replica`], which also carries its own
    /// binary log position over on MariaDB.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the host, user or password fails validation (nothing is
    /// sent), connection failures, and [`Error::Statement`] for a refused statement.
    pub async fn configure_replica(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
    ) -> Result<(), Error> {
        self.configure_replica_until(of, credentials, false, None)
            .await
    }

    /// Makes a former primary a read-only replica of `of`, like
    /// [`Instance::configure_replica`]. On MariaDB it first sets `gtid_slave_pos` to
    /// `gtid_current_pos`, so the server asks its new source for what follows its own last
    /// transactions rather than from a stale replica position. It kills the server's client
    /// connections, waits until they have ended, points the server at `of` while a fence's
    /// backup lock held by this handle still holds, and only then releases the lock (the
    /// applier needs it gone; the server stays read-only). So the server is never seen
    /// read-only with neither the lock nor a source, which would look like a primary. Move client
    /// traffic away from the server first: on MariaDB, `read_only` does not stop privileged
    /// clients.
    ///
    /// # Errors
    /// As [`Instance::configure_replica`], and [`Error::FenceBreached`] when a client committed
    /// on the server between the release of the lock and the configuration (it then has
    /// errant transactions and is left read-only, not replicating).
    pub async fn demote_to_replica(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
    ) -> Result<(), Error> {
        self.configure_replica_until(of, credentials, true, None)
            .await
    }

    /// [`Instance::configure_replica`] bounded by `deadline` (connecting and every statement).
    ///
    /// # Errors
    /// As [`Instance::configure_replica`]; [`Error::Timeout`] when the deadline comes first.
    pub async fn configure_replica_by(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        self.configure_replica_until(of, credentials, false, Some(Instant::from_std(deadline)))
            .await
    }

    /// [`Instance::demote_to_replica`] bounded by `deadline` (connecting, every statement and
    /// the wait for killed clients to end).
    ///
    /// # Errors
    /// As [`Instance::demote_to_replica`]; [`Error::Timeout`] when the deadline comes first.
    pub async fn demote_to_replica_by(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        self.configure_replica_until(of, credentials, true, Some(Instant::from_std(deadline)))
            .await
    }

    /// Demotes a fenced primary *before* its successor is promoted: makes it a replica of `of`
    /// as [`Instance::demote_to_replica_by`] does, but does not start replication, and fences
    /// it again (its clients killed, MariaDB's backup lock taken on this handle's connection).
    /// From then on whatever reaches it is a replica's transaction (errant), never a second
    /// primary's; replication starts when it is repointed ([`Instance::repoint_by`]) once the
    /// new primary's version allows.
    ///
    /// # Errors
    /// As [`Instance::demote_to_replica_by`], and those of [`Instance::fence_by`].
    pub async fn demote_unstarted_by(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        let until = Some(Instant::from_std(deadline));
        self.configure_replica_with(of, credentials, true, false, until)
            .await?;
        self.fence_by(deadline).await.map(drop)
    }

    pub(crate) async fn configure_replica_until(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
        former_primary: bool,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        self.configure_replica_with(of, credentials, former_primary, true, deadline)
            .await
    }

    async fn configure_replica_with(
        &self,
        of: &SourceAddr,
        credentials: &ReplicationCredentials,
        former_primary: bool,
        start: bool,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        validate_host(&of.host)?;
        validate_user(&credentials.user)?;
        validate_password(credentials.password.expose())?;
        // A schema change an engine was killed in left accounts locked: a replica serves them.
        self.release_ddl_lockout_until(deadline).await?;
        let purpose = "configure replication";
        let mut session = self.session(purpose, deadline).await?;
        let result = async {
            let d = self.statement_deadline(deadline);
            let flavor = session.flavor();
            make_read_only(&mut session, d).await?;
            // Clients still waiting on a fence's lock would commit the moment it goes: a
            // former primary's are killed and waited for first. Its source is set while the
            // lock still holds, so that it is never seen without both (read-only, which
            // MariaDB's privileged clients pass, and no source, it would look like a primary).
            let before = if former_primary {
                self.kill_clients_and_wait(&mut session, d).await?;
                Some(binlog_position_on(&mut session, d).await?)
            } else {
                None
            };
            stop_replica(&mut session, d).await?;
            let ssl = u8::from(credentials.ssl);
            let host = quote_literal(&of.host);
            let user = quote_literal(&credentials.user);
            let password = quote_literal(credentials.password.expose());
            let port = of.port;
            let change = match flavor {
                Flavor::Mysql => format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {host}, SOURCE_PORT = {port}, \
                     SOURCE_USER = {user}, SOURCE_PASSWORD = {password}, \
                     SOURCE_AUTO_POSITION = 1, SOURCE_SSL = {ssl}, GET_SOURCE_PUBLIC_KEY = 1, \
                     SOURCE_CONNECT_RETRY = 1"
                ),
                Flavor::Mariadb => format!(
                    "CHANGE MASTER TO MASTER_HOST = {host}, MASTER_PORT = {port}, \
                     MASTER_USER = {user}, MASTER_PASSWORD = {password}, \
                     MASTER_USE_GTID = slave_pos, MASTER_SSL = {ssl}, MASTER_CONNECT_RETRY = 1"
                ),
            };
            session
                .exec("point the replica at its source", Sql::Built(change), d)
                .await?;
            if let Some(before) = before {
                // The applier needs the lock gone. `gtid_slave_pos` is written to a table, a
                // commit the lock would hold, so it is carried over once the lock is gone; a
                // client's commit in between is caught by the position check.
                self.release_fence_lock().await;
                if flavor == Flavor::Mariadb {
                    session
                        .exec(
                            "carry the former primary's GTID position over to gtid_slave_pos",
                            Sql::Static("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos"),
                            d,
                        )
                        .await?;
                }
                let after = binlog_position_on(&mut session, d).await?;
                if after != before {
                    return Err(Error::FenceBreached {
                        instance: self.label().to_owned(),
                        before,
                        after,
                    });
                }
            }
            if start {
                start_replica(&mut session, d).await?;
            }
            Ok(())
        }
        .await;
        self.release(session);
        result
    }

    /// Points a replica at another source, keeping its replication account and GTID
    /// positioning: `STOP`, `CHANGE ... SOURCE_HOST/MASTER_HOST, ..._PORT`, `START`.
    ///
    /// The replica must already have been configured with [`Instance::configure_replica`]
    /// (the server keeps the account and password). A replica older than its new source
    /// must not be repointed: the vendors support replication only from older to newer.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad host, connection failures, [`Error::Statement`].
    pub async fn repoint(&self, to: &SourceAddr) -> Result<(), Error> {
        self.repoint_until(to, None).await
    }

    /// [`Instance::repoint`] bounded by `deadline` (connecting and every statement).
    ///
    /// # Errors
    /// As [`Instance::repoint`]; [`Error::Timeout`] when the deadline comes first.
    pub async fn repoint_by(
        &self,
        to: &SourceAddr,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        self.repoint_until(to, Some(Instant::from_std(deadline)))
            .await
    }

    pub(crate) async fn repoint_until(
        &self,
        to: &SourceAddr,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        validate_host(&to.host)?;
        let purpose = "repoint the replica";
        let mut session = self.session(purpose, deadline).await?;
        let result = async {
            let d = self.statement_deadline(deadline);
            stop_replica(&mut session, d).await?;
            let host = quote_literal(&to.host);
            let port = to.port;
            let change = match session.flavor() {
                Flavor::Mysql => format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {host}, SOURCE_PORT = {port}, \
                     SOURCE_AUTO_POSITION = 1"
                ),
                Flavor::Mariadb => format!(
                    "CHANGE MASTER TO MASTER_HOST = {host}, MASTER_PORT = {port}, \
                     MASTER_USE_GTID = slave_pos"
                ),
            };
            session.exec(purpose, Sql::Built(change), d).await?;
            start_replica(&mut session, d).await
        }
        .await;
        self.release(session);
        result
    }

    /// Makes the instance a writable primary: stops replication, releases a fence held by this
    /// handle, turns `super_read_only` (MySQL) and `read_only` off, and then forgets the
    /// source (`RESET REPLICA ALL` / `RESET SLAVE ALL`), which can take tens of milliseconds
    /// and so comes after the server takes writes.
    ///
    /// The caller makes sure the instance has executed what it must first
    /// ([`Instance::wait_caught_up`]); [`crate::switchover()`] does.
    ///
    /// A DDL lockout an engine killed during a schema change left on the instance is undone
    /// before it becomes writable ([`Instance::release_ddl_lockout`]).
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`]. When only the final reset failed, the
    /// server is already writable (with its replication stopped). [`Instance::promote_by`]
    /// also says how far it got.
    pub async fn promote(&self) -> Result<(), Error> {
        self.promote_until(None).await.map_err(|(_, e)| e)
    }

    /// [`Instance::promote`] bounded by `deadline` (connecting and every statement); on
    /// failure it says how far the promotion got ([`PromoteFailure::stage`]), so the caller
    /// can make the instance safe again: at [`PromoteStage::Replicating`] it is untouched
    /// (read-only; replication may have stopped), at [`PromoteStage::MakingWritable`] or
    /// [`PromoteStage::Writable`] it may take writes: [`Instance::make_read_only_by`] makes it
    /// read-only for every client again and checks it.
    ///
    /// # Errors
    /// [`PromoteFailure`]: the stage reached and the error.
    pub async fn promote_by(&self, deadline: std::time::Instant) -> Result<(), PromoteFailure> {
        self.promote_until(Some(Instant::from_std(deadline)))
            .await
            .map_err(|(stage, error)| PromoteFailure { stage, error })
    }

    /// Promotes; on failure also says how far it got.
    pub(crate) async fn promote_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(), (PromoteStage, Error)> {
        let purpose = "promote the replica";
        let mut session = self
            .session(purpose, deadline)
            .await
            .map_err(|e| (PromoteStage::Replicating, e))?;
        let d = self.statement_deadline(deadline);
        let stopped = stop_replica(&mut session, d).await;
        self.release(session);
        stopped.map_err(|e| (PromoteStage::Replicating, e))?;
        self.unfence_until(deadline)
            .await
            .map_err(|e| (PromoteStage::MakingWritable, e))?;
        let mut session = self
            .session(purpose, deadline)
            .await
            .map_err(|e| (PromoteStage::Writable, e))?;
        let reset = match session.flavor() {
            Flavor::Mysql => "RESET REPLICA ALL",
            Flavor::Mariadb => "RESET SLAVE ALL",
        };
        let d = self.statement_deadline(deadline);
        let result = session
            .exec("forget the replication source", Sql::Static(reset), d)
            .await;
        self.release(session);
        result.map(drop).map_err(|e| (PromoteStage::Writable, e))
    }

    /// Makes the server read-only for every client, however privileged, and checks it, by
    /// `deadline`: for an instance whose promotion failed or was interrupted.
    ///
    /// - MySQL: `SET GLOBAL super_read_only = 1`, then reads `@@read_only` and
    ///   `@@super_read_only` back (both must be on).
    /// - MariaDB: the fence ([`Instance::fence_by`]: `read_only`, client connections killed,
    ///   the backup lock held by this handle), then reads `@@read_only` back and checks that
    ///   this handle holds the lock. Release the lock ([`Instance::release_fence_lock`]) before
    ///   the instance replicates again: its applier could not commit under it (it is then
    ///   read-only as every MariaDB replica is, which privileged clients pass).
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`], [`Error::Statement`], and
    /// [`Error::UnexpectedAnswer`] when the server still reads writable afterwards.
    pub async fn make_read_only_by(&self, deadline: std::time::Instant) -> Result<(), Error> {
        self.make_read_only_until(Some(Instant::from_std(deadline)))
            .await
    }

    pub(crate) async fn make_read_only_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let purpose = "make the server read-only for every client";
        let flavor = self.server_version().await?.flavor;
        if flavor == Flavor::Mariadb {
            self.fence_until(deadline).await?;
        }
        let mut session = self.session(purpose, deadline).await?;
        let d = self.statement_deadline(deadline);
        let result = async {
            if session.flavor() == Flavor::Mysql {
                make_read_only(&mut session, d).await?;
            }
            let rows = session
                .query_text(
                    purpose,
                    Sql::Static(match session.flavor() {
                        Flavor::Mysql => {
                            "SELECT CAST(@@GLOBAL.read_only AS CHAR), \
                             CAST(@@GLOBAL.super_read_only AS CHAR)"
                        }
                        Flavor::Mariadb => "SELECT CAST(@@GLOBAL.read_only AS CHAR), '1'",
                    }),
                    d,
                )
                .await?;
            let row = rows.first();
            let on = |i| row.and_then(|r| r.text(i)).is_some_and(|v| flag(&v));
            if on(0) && on(1) {
                Ok(())
            } else {
                Err(Error::UnexpectedAnswer {
                    instance: self.label().to_owned(),
                    purpose,
                    detail: "the server still reads writable after it was made read-only".into(),
                })
            }
        }
        .await;
        self.release(session);
        result?;
        if flavor == Flavor::Mariadb && !self.holds_fence_lock().await {
            return Err(Error::UnexpectedAnswer {
                instance: self.label().to_owned(),
                purpose,
                detail: "the fence's backup lock is not held after fencing".into(),
            });
        }
        Ok(())
    }

    /// Stops both replication threads (`STOP REPLICA` / `STOP SLAVE`).
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`].
    pub async fn stop_replication(&self) -> Result<(), Error> {
        let mut session = self.session("stop replication", None).await?;
        let d = self.statement_deadline(None);
        let result = stop_replica(&mut session, d).await;
        self.release(session);
        result
    }

    /// Starts both replication threads (`START REPLICA` / `START SLAVE`).
    ///
    /// # Errors
    /// Connection failures and [`Error::Statement`].
    pub async fn start_replication(&self) -> Result<(), Error> {
        let mut session = self.session("start replication", None).await?;
        let d = self.statement_deadline(None);
        let result = start_replica(&mut session, d).await;
        self.release(session);
        result
    }

    /// Sets a MariaDB replica's `gtid_slave_pos`, the position it asks its source for next:
    /// `STOP SLAVE`, then `SET GLOBAL gtid_slave_pos = '...'` (start replication afterwards).
    ///
    /// The position is rendered from `pos` (digits, `-` and `,` only) and sent as text:
    /// MariaDB refuses this statement prepared with a bound value (error 1615, "Prepared
    /// statement needs to be re-prepared").
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on MySQL (nothing is sent), connection failures and
    /// [`Error::Statement`].
    pub async fn set_slave_pos(
        &self,
        pos: &switchyard_plan::gtid::MariadbGtidPos,
    ) -> Result<(), Error> {
        let purpose = "set gtid_slave_pos";
        let mut session = self.session(purpose, None).await?;
        let result = async {
            if session.flavor() != Flavor::Mariadb {
                return Err(Error::InvalidInput {
                    what: "gtid_slave_pos",
                    reason: "gtid_slave_pos exists on MariaDB only".into(),
                });
            }
            let d = self.statement_deadline(None);
            stop_replica(&mut session, d).await?;
            let sql = format!(
                "SET GLOBAL gtid_slave_pos = {}",
                quote_literal(&pos.to_string())
            );
            session.exec(purpose, Sql::Built(sql), d).await.map(|_| ())
        }
        .await;
        self.release(session);
        result
    }

    /// Waits until this replica has executed every transaction in `target`, at most `timeout`
    /// (`WAIT_FOR_EXECUTED_GTID_SET(?, ?)` on MySQL, `MASTER_GTID_WAIT(?, ?)` on MariaDB, the set
    /// and the timeout bound as parameters).
    ///
    /// # Errors
    /// [`Error::Lagging`] with what is still missing when the server's wait times out,
    /// [`Error::Timeout`] / [`Error::NotResponding`] when the replica does not answer (a paused
    /// server), [`Error::InvalidInput`] when `target` is of the other flavor.
    pub async fn wait_caught_up(&self, target: &GtidSet, timeout: Duration) -> Result<(), Error> {
        self.wait_caught_up_until(target, Instant::now() + timeout)
            .await
    }

    /// [`Instance::wait_caught_up`] until `deadline` instead of for a timeout.
    ///
    /// # Errors
    /// As [`Instance::wait_caught_up`].
    pub async fn wait_caught_up_by(
        &self,
        target: &GtidSet,
        deadline: std::time::Instant,
    ) -> Result<(), Error> {
        self.wait_caught_up_until(target, Instant::from_std(deadline))
            .await
    }

    pub(crate) async fn wait_caught_up_until(
        &self,
        target: &GtidSet,
        deadline: Instant,
    ) -> Result<(), Error> {
        let purpose = "wait until the candidate has executed the old primary's transactions";
        let started = Instant::now();
        let mut session = self.session(purpose, Some(deadline)).await?;
        let result = wait_on(&mut session, purpose, target, started, deadline).await;
        self.release(session);
        match result {
            Err(WaitFailure::ServerTimedOut) => {
                let missing = self
                    .executed_until(Some(deadline + Duration::from_millis(500)))
                    .await
                    .ok()
                    .and_then(|executed| target.subtract(&executed).ok())
                    .unwrap_or_else(|| target.clone());
                Err(Error::Lagging {
                    instance: self.label().to_owned(),
                    purpose,
                    missing,
                    waited: started.elapsed(),
                })
            }
            Err(WaitFailure::Error(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    /// What the server has executed: `@@GLOBAL.gtid_executed` (MySQL) or
    /// `@@GLOBAL.gtid_current_pos` (MariaDB).
    pub(crate) async fn executed_until(&self, deadline: Option<Instant>) -> Result<GtidSet, Error> {
        self.gtid_variable(
            "read the executed GTID set",
            "SELECT @@GLOBAL.gtid_executed",
            "SELECT @@GLOBAL.gtid_current_pos",
            deadline,
        )
        .await
    }

    /// What the server has written to its binary log: `@@GLOBAL.gtid_executed` (MySQL) or
    /// `@@GLOBAL.gtid_binlog_pos` (MariaDB): the position a fenced primary's replicas must
    /// reach.
    ///
    /// # Errors
    /// Connection failures and [`Error::UnexpectedAnswer`].
    pub async fn binlog_position(&self) -> Result<GtidSet, Error> {
        self.binlog_position_until(None).await
    }

    /// [`Instance::binlog_position`] bounded by `deadline`.
    ///
    /// # Errors
    /// As [`Instance::binlog_position`]; [`Error::Timeout`] when the deadline comes first.
    pub async fn binlog_position_by(&self, deadline: std::time::Instant) -> Result<GtidSet, Error> {
        self.binlog_position_until(Some(Instant::from_std(deadline)))
            .await
    }

    pub(crate) async fn binlog_position_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<GtidSet, Error> {
        self.gtid_variable(
            "read the binary log GTID position",
            "SELECT @@GLOBAL.gtid_executed",
            "SELECT @@GLOBAL.gtid_binlog_pos",
            deadline,
        )
        .await
    }

    async fn gtid_variable(
        &self,
        purpose: &'static str,
        mysql: &'static str,
        mariadb: &'static str,
        deadline: Option<Instant>,
    ) -> Result<GtidSet, Error> {
        let mut session = self.session(purpose, deadline).await?;
        let result = gtid_variable_on(
            &mut session,
            purpose,
            mysql,
            mariadb,
            self.statement_deadline(deadline),
        )
        .await;
        self.release(session);
        result
    }
}

pub(crate) async fn gtid_variable_on(
    session: &mut Session,
    purpose: &'static str,
    mysql: &'static str,
    mariadb: &'static str,
    deadline: Instant,
) -> Result<GtidSet, Error> {
    let flavor = session.flavor();
    let sql = match flavor {
        Flavor::Mysql => mysql,
        Flavor::Mariadb => mariadb,
    };
    let rows = session
        .query_text(purpose, Sql::Static(sql), deadline)
        .await?;
    let text = rows.first().and_then(|r| r.text(0)).unwrap_or_default();
    parse_gtid(flavor, &text).map_err(|detail| Error::UnexpectedAnswer {
        instance: session.label().to_owned(),
        purpose,
        detail,
    })
}

async fn binlog_position_on(session: &mut Session, deadline: Instant) -> Result<GtidSet, Error> {
    gtid_variable_on(
        session,
        "read the former primary's GTID position",
        "SELECT @@GLOBAL.gtid_executed",
        "SELECT @@GLOBAL.gtid_binlog_pos",
        deadline,
    )
    .await
}

/// How far a promotion got before it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteStage {
    /// Nothing was changed that makes it writable: replication may have stopped (or may still
    /// run); the server is read-only.
    Replicating,
    /// Replication is stopped (its source still configured); turning read-only off failed or
    /// was interrupted, so the server may be writable.
    MakingWritable,
    /// The server is writable; only forgetting the old source failed.
    Writable,
}

impl PromoteStage {
    /// Whether the instance may take writes at this stage.
    pub fn may_be_writable(self) -> bool {
        !matches!(self, PromoteStage::Replicating)
    }
}

/// A promotion that failed ([`Instance::promote_by`]): how far it got, and why.
#[derive(Debug, thiserror::Error)]
#[error("promotion failed at stage {stage:?}: {error}")]
pub struct PromoteFailure {
    /// The stage it reached.
    pub stage: PromoteStage,
    /// What failed.
    #[source]
    pub error: Error,
}

impl PromoteFailure {
    /// The error's bounded category ([`Error::category`]).
    pub fn category(&self) -> &'static str {
        self.error.category()
    }
}

pub(crate) enum WaitFailure {
    ServerTimedOut,
    Error(Error),
}

pub(crate) async fn wait_on(
    session: &mut Session,
    purpose: &'static str,
    target: &GtidSet,
    started: Instant,
    deadline: Instant,
) -> Result<(), WaitFailure> {
    let flavor = session.flavor();
    if flavor != target.flavor() {
        return Err(WaitFailure::Error(Error::InvalidInput {
            what: "GTID set to wait for",
            reason: format!(
                "{} is a {} GTID set but {} runs {}",
                target,
                target.flavor_name(),
                session.label(),
                session.version
            ),
        }));
    }
    // The server gives up a little before the deadline so that its answer ("timed out")
    // arrives in time; the client-side deadline catches a server that does not answer at all.
    let total = deadline.saturating_duration_since(started);
    let server_wait = total.saturating_sub(Duration::from_millis(200).min(total / 5));
    let sql = match flavor {
        Flavor::Mysql => "SELECT CAST(WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS CHAR)",
        Flavor::Mariadb => "SELECT CAST(MASTER_GTID_WAIT(?, ?) AS CHAR)",
    };
    // MASTER_GTID_WAIT takes a position (one GTID per domain): a binary log state is waited
    // for at its position.
    let text = target
        .mariadb_position()
        .map_or_else(|| target.to_string(), |pos| pos.to_string());
    let params = [Param::Text(text), Param::Float(server_wait.as_secs_f64())];
    let rows = session
        .query_bound(purpose, Sql::Static(sql), &params, deadline)
        .await
        .map_err(WaitFailure::Error)?;
    let answer = rows.first().and_then(|r| r.text(0)).unwrap_or_default();
    match answer.trim() {
        "0" => Ok(()),
        "1" | "-1" => Err(WaitFailure::ServerTimedOut),
        other => Err(WaitFailure::Error(Error::UnexpectedAnswer {
            instance: session.label().to_owned(),
            purpose,
            detail: format!("the GTID wait returned {other:?}"),
        })),
    }
}

pub(crate) async fn stop_replica(session: &mut Session, deadline: Instant) -> Result<(), Error> {
    let sql = match session.flavor() {
        Flavor::Mysql => "STOP REPLICA",
        Flavor::Mariadb => "STOP SLAVE",
    };
    session
        .exec("stop replication", Sql::Static(sql), deadline)
        .await
        .map(drop)
}

pub(crate) async fn start_replica(session: &mut Session, deadline: Instant) -> Result<(), Error> {
    let sql = match session.flavor() {
        Flavor::Mysql => "START REPLICA",
        Flavor::Mariadb => "START SLAVE",
    };
    session
        .exec("start replication", Sql::Static(sql), deadline)
        .await
        .map(drop)
}

pub(crate) async fn make_read_only(session: &mut Session, deadline: Instant) -> Result<(), Error> {
    let sql = match session.flavor() {
        Flavor::Mysql => "SET GLOBAL super_read_only = 1",
        Flavor::Mariadb => "SET GLOBAL read_only = 1",
    };
    session
        .exec("make the server read-only", Sql::Static(sql), deadline)
        .await
        .map(drop)
}
