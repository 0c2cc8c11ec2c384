//! The DDL lockout: keeps every other client, however privileged, out of a fenced instance while
//! a schema change runs on it.
//!
//! A fence stops every commit ([`Instance::fence`]), and so it stops the operator's own `ALTER`
//! too: MySQL's `super_read_only` refuses DDL from every account, and MariaDB's
//! `BACKUP STAGE BLOCK_COMMIT` makes DDL wait (and its holder gets error 4145, "Can't execute
//! the command as you have a BACKUP STAGE active", for any DDL it runs itself). So the schema
//! change of a rolling change lifts that part of the fence, and something else must keep
//! privileged clients out for the whole statement, which may take an hour: `read_only` alone
//! lets holders of `CONNECTION_ADMIN`/`SUPER` (MySQL) or `READ ONLY ADMIN` (MariaDB; `SUPER`
//! on 10.5) commit.
//!
//! # The mechanism (both flavors)
//! Every account that could connect from another host is locked for the statement
//! (`ALTER USER … ACCOUNT LOCK`): a locked account's login is refused (MySQL error 3118,
//! MariaDB 4151) whatever its privileges, and its connections are killed. The exceptions are the
//! operator's own account, accounts locked already, and accounts that can only log in from the
//! server's own host (`localhost`, `127.0.0.1`, `::1`): on Kubernetes only processes inside the
//! pod reach those, and the testbed and in-pod tools start and recover the server as
//! `root@localhost` (a process on the database host could also edit the data files).
//!
//! The undo is recorded on the server, next to what it undoes, so that it survives a killed
//! engine: each account is first granted the role `switchyard_ddl_lockout` (a role with no
//! privileges; a reserved name) and then locked. Undoing unlocks exactly the accounts that hold
//! the role, revokes it and drops the role, so an account its owner had locked stays locked.
//! [`Instance::release_ddl_lockout`] undoes a lockout a killed engine left; [`Instance::unfence`]
//! and [`Instance::demote_to_replica`] call it first. All of it runs with the binary log off
//! for the session: no GTID, nothing replicated.
//!
//! Locking needs the fence lifted (MySQL refuses `ALTER USER` under `super_read_only`, error
//! 1290; MariaDB's `ALTER USER`, `GRANT` and `CREATE ROLE` wait for `BLOCK_COMMIT`, measured
//! here). In the few milliseconds between lifting the fence and the last lock (and, at the
//! end, between the first unlock and fencing again), a **gate** keeps new sessions from
//! writing: `SET GLOBAL TRANSACTION READ ONLY`, which a new session of any account inherits
//! (MariaDB 10.11 refused a new `ALL PRIVILEGES` session's `INSERT`, `CREATE TABLE` and
//! `CREATE USER` with error 1792), while every existing client connection is killed and
//! waited for. On MariaDB the connections are killed while the fence's backup lock still
//! holds their commits, so none of them commits on the way out. The operator's sessions set
//! their own access mode to read-write.
//!
//! In order, for an instance whose fence must be lifted (MySQL with `super_read_only` on, which
//! every replica has; MariaDB fenced by [`Instance::fence`] or said to be a fenced former
//! primary):
//! 1. gate on; kill client connections and wait until they have ended;
//! 2. lift the fence: `super_read_only = 0` (MySQL; `read_only` stays on), or release the
//!    backup lock (MariaDB; `read_only` stays on);
//! 3. record and lock every account as above; kill client connections again; gate off;
//! 4. the schema change;
//! 5. gate on; kill client connections; unlock the recorded accounts, revoke and drop the role;
//!    fence again as it was: `super_read_only = 1`, or the backup lock if this handle held it
//!    before (a MariaDB former primary that replicates was not holding it, or its applier
//!    would stall); gate off.
//!
//! What is left: a client that logs in during the few milliseconds of steps 1–3 or 5 and
//! *explicitly* sets its session read-write (`SET SESSION TRANSACTION READ WRITE`) before it
//! writes; accounts of the server's own host. If the engine dies during a gate, the global
//! access mode stays read-only (new sessions cannot write until it is set back or the server
//! restarts from its configuration): the safe side.
//!
//! # Rejected
//! - **Keeping the fence:** impossible, as above.
//! - **MySQL `offline_mode`:** it disconnects and refuses only accounts without
//!   `CONNECTION_ADMIN`/`SUPER`, the same ones `read_only` already stops.
//! - **Lowering `max_connections` under the operator's open connections:** on MySQL 9.7 it
//!   refuses even `CONNECTION_ADMIN` (error 1040 once `max_connections + 1` connections are
//!   open, the extra one being reserved for them), but MariaDB's `CONNECTION ADMIN` ignores
//!   `max_connections` (10.11 let an `ALL PRIVILEGES` account in with five connections open
//!   and `max_connections = 1`), and an engine killed while it is lowered leaves a server that
//!   refuses almost everyone, with the value to restore lost. The transaction access mode
//!   gate works the same on both and leaves the server readable.
//! - **`LOCK TABLES` of every table:** it cannot be held together with a backup stage on
//!   MariaDB (each waits for the other, measured on 10.11), it only covers tables that exist
//!   (a privileged client can create a new one and write to it), and holding it for the
//!   statement would block the `ALTER` of another session.
//! - **`FLUSH TABLES WITH READ LOCK`, `BACKUP STAGE BLOCK_DDL`, `LOCK INSTANCE FOR BACKUP`:**
//!   each blocks the `ALTER` (or its holder cannot run DDL) and, except `BLOCK_DDL`, the
//!   account statements too; `BLOCK_DDL` lets commits through.
//! - **MariaDB `proxy_protocol_networks`:** 10.11 still accepted clients without a proxy
//!   header from a listed network.
//! - **Revoking the read-only bypass privilege instead of locking:** it rewrites the users'
//!   grants (on 10.5 `SUPER` carries it, with much else) and roles can carry it back.
//! - **The global access mode alone for the whole statement:** any client may set its own
//!   session read-write; a locked account cannot log in at all.
//! - **Recording the undo in the engine's record or a table:** the record would live apart from
//!   what it undoes (a table on the fenced instance would also diverge from the other
//!   instances); MySQL's `ALTER USER … ATTRIBUTE` would do but MariaDB has no equivalent, and a
//!   role grant is one mechanism for both.

use switchyard_plan::versions::Flavor;
use tokio::time::Instant;

use crate::error::Error;
use crate::instance::{Instance, Param, Session, Sql};
use crate::observe::flag;
use crate::sql::quote_identifier;

/// The role whose grants record which accounts a lockout locked. A reserved name.
pub(crate) const LOCKOUT_ROLE: &str = "switchyard_ddl_lockout";

/// Hosts from which only the server's own host can log in: their accounts stay unlocked.
const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What a lockout lifted, to put back when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifted {
    /// MySQL's `super_read_only`.
    SuperReadOnly,
    /// MariaDB's fence lock, when this handle held it (`true`) or not.
    FenceLock(bool),
}

impl Instance {
    /// Undoes a DDL lockout that an engine killed during a schema change left on the server:
    /// unlocks exactly the accounts it locked (those holding the role `switchyard_ddl_lockout`),
    /// drops the role, and on MySQL turns `super_read_only` back on (the lockout had lifted it).
    /// Returns how many accounts were unlocked; does nothing (returns 0) when no lockout is
    /// recorded. See the [`lockout`](mod@crate::lockout) module.
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`] and [`Error::Statement`].
    pub async fn release_ddl_lockout(&self) -> Result<u32, Error> {
        self.release_ddl_lockout_until(None).await
    }

    pub(crate) async fn release_ddl_lockout_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<u32, Error> {
        let d = self.statement_deadline(deadline);
        // One query on the cached connection when there is nothing to undo (every unfence and
        // promotion asks).
        let mut session = self
            .session("look for a recorded DDL lockout", deadline)
            .await?;
        let recorded = lockout_recorded(&mut session, d).await;
        self.release(session);
        if !recorded? {
            return Ok(0);
        }
        let mut ctrl = self.lockout_session(deadline).await?;
        let result = async {
            let lifted = match ctrl.flavor() {
                Flavor::Mysql => Lifted::SuperReadOnly,
                Flavor::Mariadb => Lifted::FenceLock(false),
            };
            tracing::warn!(instance = %self, "undoing a DDL lockout left by an earlier run");
            let unlocked = self.leave_lockout(&mut ctrl, lifted, d).await?;
            // The engine may have died while the gate was on: a recorded lockout means the
            // global access mode was read-write before it (switchyard never sets it otherwise).
            gate_off(&mut ctrl, true, d).await?;
            Ok(unlocked)
        }
        .await;
        ctrl.close().await;
        result
    }

    /// A new connection for the lockout's statements: binary log off, read-write whatever the
    /// global access mode.
    pub(crate) async fn lockout_session(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Session, Error> {
        let mut ctrl = self.connect("lock the accounts out", deadline).await?;
        let d = self.statement_deadline(deadline);
        for (purpose, sql) in [
            (
                "turn the binary log off for the lockout",
                "SET SESSION sql_log_bin = 0",
            ),
            (
                "make the lockout's session read-write",
                "SET SESSION TRANSACTION READ WRITE",
            ),
        ] {
            ctrl.exec(purpose, Sql::Static(sql), d).await?;
        }
        Ok(ctrl)
    }

    /// Steps 1 to 3 of the [module](mod@crate::lockout) documentation: lifts the fence and locks
    /// the accounts out. On failure the accounts locked so far are unlocked and the fence put
    /// back.
    pub(crate) async fn enter_lockout(
        &self,
        ctrl: &mut Session,
        lifted: Lifted,
        deadline: Instant,
    ) -> Result<(), Error> {
        let was_read_write = gate_on(ctrl, deadline).await?;
        let result = async {
            self.kill_clients_and_wait(ctrl, deadline).await?;
            match lifted {
                Lifted::SuperReadOnly => {
                    ctrl.exec(
                        "lift super_read_only for the schema change",
                        Sql::Static("SET GLOBAL super_read_only = 0"),
                        deadline,
                    )
                    .await?;
                }
                Lifted::FenceLock(_) => self.release_fence_lock().await,
            }
            let locked = self.lock_accounts(ctrl, deadline).await?;
            let killed = self.kill_clients_and_wait(ctrl, deadline).await?;
            tracing::info!(instance = %self, locked, killed, "accounts locked out for a schema change");
            Ok(())
        }
        .await;
        let gate = gate_off(ctrl, was_read_write, deadline).await;
        match result {
            Ok(()) => gate,
            Err(e) => {
                if let Err(undo) = self.leave_lockout(ctrl, lifted, deadline).await {
                    tracing::error!(instance = %self, error = %undo, "could not undo a lockout that failed half-way; release_ddl_lockout undoes it");
                }
                Err(e)
            }
        }
    }

    /// Step 5 of the [module](mod@crate::lockout) documentation: unlocks the recorded accounts
    /// and puts the fence back; returns how many accounts were unlocked.
    pub(crate) async fn leave_lockout(
        &self,
        ctrl: &mut Session,
        lifted: Lifted,
        deadline: Instant,
    ) -> Result<u32, Error> {
        let was_read_write = gate_on(ctrl, deadline).await?;
        let result = async {
            self.kill_clients_and_wait(ctrl, deadline).await?;
            let unlocked = unlock_accounts(ctrl, deadline).await?;
            match lifted {
                Lifted::SuperReadOnly => {
                    ctrl.exec(
                        "put super_read_only back after the schema change",
                        Sql::Static("SET GLOBAL super_read_only = 1"),
                        deadline,
                    )
                    .await?;
                }
                Lifted::FenceLock(true) => {
                    self.fence_until(Some(deadline)).await?;
                }
                Lifted::FenceLock(false) => {}
            }
            tracing::info!(instance = %self, unlocked, "accounts unlocked after a schema change");
            Ok(unlocked)
        }
        .await;
        let gate = gate_off(ctrl, was_read_write, deadline).await;
        let unlocked = result?;
        gate.map(|()| unlocked)
    }

    /// Records (role grant) and locks every account the lockout covers; returns how many.
    async fn lock_accounts(&self, ctrl: &mut Session, deadline: Instant) -> Result<u32, Error> {
        let flavor = ctrl.flavor();
        let create = match flavor {
            Flavor::Mysql => format!("CREATE ROLE IF NOT EXISTS {}", role(flavor)),
            Flavor::Mariadb => format!("CREATE ROLE IF NOT EXISTS {}", role(flavor)),
        };
        ctrl.exec(
            "create the role that records the lockout",
            Sql::Built(create),
            deadline,
        )
        .await?;
        let accounts = self.accounts_to_lock(ctrl, deadline).await?;
        let mut locked = 0u32;
        for (user, host) in &accounts {
            let account = account(user, host);
            match ctrl
                .exec(
                    "record an account the lockout locks",
                    Sql::Built(format!("GRANT {} TO {account}", role(flavor))),
                    deadline,
                )
                .await
            {
                Ok(_) => {}
                // 1133: the server did not load the account (a host name under
                // skip_name_resolve, as MariaDB's install leaves `root`@`<hostname>`): it
                // cannot log in, so there is nothing to lock.
                Err(Error::Statement { server, .. }) if server.code == 1133 => continue,
                Err(e) => return Err(e),
            }
            ctrl.exec(
                "lock an account out for the schema change",
                Sql::Built(format!("ALTER USER {account} ACCOUNT LOCK")),
                deadline,
            )
            .await?;
            locked += 1;
        }
        Ok(locked)
    }

    /// Unlocked accounts other than the operator's and those of the server's own host.
    async fn accounts_to_lock(
        &self,
        ctrl: &mut Session,
        deadline: Instant,
    ) -> Result<Vec<(String, String)>, Error> {
        let purpose = "list the accounts to lock out";
        let sql = match ctrl.flavor() {
            Flavor::Mysql => {
                "SELECT CAST(user AS CHAR), CAST(host AS CHAR), CAST(account_locked AS CHAR), \
                 'N' FROM mysql.user WHERE user <> ?"
            }
            Flavor::Mariadb => {
                "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), \
                 CAST(COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false') AS CHAR), \
                 CAST(COALESCE(JSON_VALUE(Priv, '$.is_role'), 'false') AS CHAR) \
                 FROM mysql.global_priv WHERE User <> ?"
            }
        };
        let operator = self.inner.credentials.user.clone();
        let rows = ctrl
            .query_bound(
                purpose,
                Sql::Static(sql),
                &[Param::Text(operator)],
                deadline,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let user = row.text(0)?;
                let host = row.text(1).unwrap_or_default();
                let locked = row.text(2).is_some_and(|v| yes(&v));
                let is_role = row.text(3).is_some_and(|v| yes(&v));
                let local = LOCAL_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(&host));
                (!locked && !is_role && !local && !user.is_empty() && user != LOCKOUT_ROLE)
                    .then_some((user, host))
            })
            .collect())
    }
}

/// `Y`, `1` and `true` (as `mysql.user` and MariaDB's privilege JSON write them) are yes.
fn yes(value: &str) -> bool {
    let v = value.trim();
    v.eq_ignore_ascii_case("y") || v.eq_ignore_ascii_case("true") || v == "1"
}

/// The role as the flavor names it: MySQL roles are accounts (`` `role`@`%` ``).
fn role(flavor: Flavor) -> String {
    match flavor {
        Flavor::Mysql => format!(
            "{}@{}",
            quote_identifier(LOCKOUT_ROLE),
            quote_identifier("%")
        ),
        Flavor::Mariadb => quote_identifier(LOCKOUT_ROLE),
    }
}

/// An account name, both parts quoted as identifiers (whatever they contain).
fn account(user: &str, host: &str) -> String {
    format!("{}@{}", quote_identifier(user), quote_identifier(host))
}

/// Whether a lockout is recorded: the role exists.
async fn lockout_recorded(ctrl: &mut Session, deadline: Instant) -> Result<bool, Error> {
    let sql = match ctrl.flavor() {
        Flavor::Mysql => {
            "SELECT CAST(COUNT(*) AS CHAR) FROM mysql.user WHERE user = 'switchyard_ddl_lockout'"
        }
        Flavor::Mariadb => {
            "SELECT CAST(COUNT(*) AS CHAR) FROM mysql.global_priv \
             WHERE User = 'switchyard_ddl_lockout' AND Host = ''"
        }
    };
    let rows = ctrl
        .query_text("look for a recorded lockout", Sql::Static(sql), deadline)
        .await?;
    Ok(rows.first().and_then(|r| r.u64(0)).unwrap_or(0) > 0)
}

/// Unlocks exactly the accounts that hold the role, revokes it and drops the role.
async fn unlock_accounts(ctrl: &mut Session, deadline: Instant) -> Result<u32, Error> {
    let flavor = ctrl.flavor();
    let sql = match flavor {
        Flavor::Mysql => {
            "SELECT CAST(TO_USER AS CHAR), CAST(TO_HOST AS CHAR) FROM mysql.role_edges \
             WHERE FROM_USER = 'switchyard_ddl_lockout' AND FROM_HOST = '%'"
        }
        Flavor::Mariadb => {
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.roles_mapping \
             WHERE Role = 'switchyard_ddl_lockout' AND Admin_option = 'N'"
        }
    };
    let rows = ctrl
        .query_text(
            "list the accounts the lockout locked",
            Sql::Static(sql),
            deadline,
        )
        .await?;
    let mut unlocked = 0u32;
    for row in rows {
        let (Some(user), Some(host)) = (row.text(0), row.text(1)) else {
            continue;
        };
        let account = account(&user, &host);
        ctrl.exec(
            "unlock an account after the schema change",
            Sql::Built(format!("ALTER USER {account} ACCOUNT UNLOCK")),
            deadline,
        )
        .await?;
        ctrl.exec(
            "remove the lockout's record of an account",
            Sql::Built(format!("REVOKE {} FROM {account}", role(flavor))),
            deadline,
        )
        .await?;
        unlocked += 1;
    }
    ctrl.exec(
        "drop the role that recorded the lockout",
        Sql::Built(format!("DROP ROLE IF EXISTS {}", role(flavor))),
        deadline,
    )
    .await?;
    Ok(unlocked)
}

/// Makes new sessions read-only by default; returns whether they were read-write before.
async fn gate_on(ctrl: &mut Session, deadline: Instant) -> Result<bool, Error> {
    let read = match ctrl.flavor() {
        Flavor::Mysql => "SELECT CAST(@@GLOBAL.transaction_read_only AS CHAR)",
        Flavor::Mariadb => "SELECT CAST(@@GLOBAL.tx_read_only AS CHAR)",
    };
    let rows = ctrl
        .query_text("read the global access mode", Sql::Static(read), deadline)
        .await?;
    let read_only = rows
        .first()
        .and_then(|r| r.text(0))
        .is_some_and(|v| flag(&v));
    ctrl.exec(
        "make new sessions read-only (the lockout's gate)",
        Sql::Static("SET GLOBAL TRANSACTION READ ONLY"),
        deadline,
    )
    .await?;
    Ok(!read_only)
}

/// Puts the global access mode back.
async fn gate_off(
    ctrl: &mut Session,
    was_read_write: bool,
    deadline: Instant,
) -> Result<(), Error> {
    if !was_read_write {
        return Ok(());
    }
    ctrl.exec(
        "make new sessions read-write again (the lockout's gate)",
        Sql::Static("SET GLOBAL TRANSACTION READ WRITE"),
        deadline,
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    //! The gate on real servers: what it relies on cannot be seen through the public API (it
    //! holds for a few milliseconds inside the lockout).

    use switchyard_testbed::{ServerKind, replication};

    use super::*;
    use crate::instance::{Credentials, InstanceAddr};

    async fn gate_keeps_new_privileged_sessions_from_writing(kind: ServerKind) {
        let cluster = replication(kind, 1).await.expect("cluster");
        let op = &cluster.credentials().operator;
        let h = Instance::new(
            "n0",
            InstanceAddr::new("127.0.0.1", cluster.instance(0).port()),
            Credentials::new(op.user(), op.password()),
        );
        let mut ctrl = h.lockout_session(None).await.expect("session");
        let d = h.statement_deadline(None);
        ctrl.exec(
            "create a table",
            Sql::Static("CREATE TABLE app.gated (id INT PRIMARY KEY)"),
            d,
        )
        .await
        .expect("table");
        let was_read_write = gate_on(&mut ctrl, d).await.expect("gate on");
        assert!(was_read_write);
        let privileged = &cluster.credentials().privileged;
        let mut admin = cluster
            .instance(0)
            .connect(privileged)
            .await
            .expect("login");
        let refused = sqlx::query("INSERT INTO app.gated VALUES (1)")
            .execute(&mut admin)
            .await
            .expect_err("a new session of an ALL PRIVILEGES account cannot write");
        let code = refused
            .as_database_error()
            .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
            .map(|e| e.number());
        assert_eq!(code, Some(1792), "{refused}");
        gate_off(&mut ctrl, was_read_write, d)
            .await
            .expect("gate off");
        let mut after = cluster
            .instance(0)
            .connect(privileged)
            .await
            .expect("login");
        sqlx::query("INSERT INTO app.gated VALUES (2)")
            .execute(&mut after)
            .await
            .expect("writes again once the gate is off");
        ctrl.close().await;
    }

    #[tokio::test]
    async fn mariadb_gate_keeps_new_privileged_sessions_from_writing() {
        gate_keeps_new_privileged_sessions_from_writing(ServerKind::Mariadb1011).await;
    }

    #[tokio::test]
    async fn mysql_gate_keeps_new_privileged_sessions_from_writing() {
        gate_keeps_new_privileged_sessions_from_writing(ServerKind::Mysql97).await;
    }
}
