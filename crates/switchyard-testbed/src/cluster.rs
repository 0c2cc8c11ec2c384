//! Clusters of real servers on loopback: GTID replication (one primary,
//! read-only replicas) and Galera.
//!
//! A cluster owns a temporary folder with one sub-folder per instance, the
//! ports of its instances and its slots under the server cap
//! ([`crate::slots`]). Dropping it kills every process it started and
//! removes the folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{APP_DATABASE, Credentials};
use crate::error::{Error, Result};
use crate::fetch::{self, Binaries, Flavor, ServerKind};
use crate::instance::{GaleraNode, Instance, RunAs, START_TIMEOUT, Setup};
use crate::ports::allocate_port;
use crate::slots::{self, SlotLease};
use crate::template::template;
use crate::wait::wait_for;

/// How long replicas may take to catch up with the primary during setup.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How a cluster's instances replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Asynchronous GTID replication from one primary.
    Replication,
    /// Galera (wsrep) synchronous replication.
    Galera,
}

/// Options for building a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Lines added to every instance's `[mysqld]` section, after the
    /// testbed's own (a later line wins).
    pub extra_cnf: Vec<String>,
}

/// Servers started together, with their accounts. Dropping it stops every
/// process it started.
#[derive(Debug)]
pub struct Cluster {
    topology: Topology,
    credentials: Credentials,
    // Declared before `dir` so that processes die before their folder goes.
    instances: Vec<Instance>,
    _slots: SlotLease,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Replication or Galera.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The cluster's accounts.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Every instance; the first is the one set up as primary (replication)
    /// or that bootstrapped the cluster (Galera).
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// The instance at `index`.
    ///
    /// # Panics
    /// When `index` is out of range.
    pub fn instance(&self, index: usize) -> &Instance {
        &self.instances[index]
    }

    /// The instance set up as primary. Roles the caller changes later
    /// (switchovers) are not tracked here.
    pub fn primary(&self) -> &Instance {
        &self.instances[0]
    }

    /// The instances set up as replicas.
    pub fn replicas(&self) -> &[Instance] {
        &self.instances[1..]
    }

    /// The cluster's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Shares the cluster between tasks.
    pub fn into_shared(self) -> Arc<Cluster> {
        Arc::new(self)
    }
}

/// Starts `n` instances of `kind` with GTID replication: instance 0 is the
/// writable primary, the others replicate from it and are read-only.
///
/// Every instance's my.cnf has binary logging (ROW, `sync_binlog=1`,
/// `innodb_flush_log_at_trx_commit=1`), `relay_log_recovery`, replica
/// updates logged, `read_only` (MySQL also `super_read_only`) and
/// skip-replica-start; MariaDB `gtid_strict_mode`, MySQL `gtid_mode=ON` and
/// `enforce_gtid_consistency`. The primary is made writable at run time, so
/// **any instance restarted later comes back read-only** until someone makes
/// it writable ([`Instance::set_read_only`]). The accounts of
/// [`Credentials`] and the database `app` are created on the primary and
/// replicated.
pub async fn replication(kind: ServerKind, n: usize) -> Result<Cluster> {
    replication_with(&vec![kind; n], &Options::default()).await
}

/// Like [`replication`] with one kind per instance (`kinds[0]` is the
/// primary; a replica should not run an older version than its source) and
/// extra options.
pub async fn replication_with(kinds: &[ServerKind], options: &Options) -> Result<Cluster> {
    replication_run_as(kinds, options, None, None).await
}

/// Like [`replication_with`], with the servers running as the system user `user`
/// (created with `useradd --system` if absent, as [`galera`]'s are) when the testbed runs
/// as root; as the caller otherwise. The servers' own connections (replication) are then
/// owned by another user than the test's clients, so that a network cut can tell them
/// apart ([`crate::netcut::CutSpec::from_owner`]).
pub async fn replication_as(
    kinds: &[ServerKind],
    options: &Options,
    user: &str,
) -> Result<Cluster> {
    let run_as = system_user(user).await?;
    replication_run_as(kinds, options, run_as, None).await
}

/// Like [`replication_with`] (or [`replication_as`] with a `user`) on slots already reserved
/// (`lease` holds one per instance): several clusters started together take all their slots
/// in one [`slots::acquire`] first, so none holds part of what they need while waiting for
/// the rest.
pub async fn replication_leased(
    kinds: &[ServerKind],
    options: &Options,
    user: Option<&str>,
    lease: SlotLease,
) -> Result<Cluster> {
    if lease.len() != kinds.len() {
        return Err(Error::Unsupported {
            detail: format!(
                "a lease of {} slots for a cluster of {} instances",
                lease.len(),
                kinds.len()
            ),
        });
    }
    let run_as = match user {
        Some(user) => system_user(user).await?,
        None => None,
    };
    replication_run_as(kinds, options, run_as, Some(lease)).await
}

/// The system user `user` (created if absent) when the testbed runs as root.
async fn system_user(user: &str) -> Result<Option<RunAs>> {
    if !crate::template::running_as_root() {
        return Ok(None);
    }
    let name = user.to_owned();
    Ok(Some(
        tokio::task::spawn_blocking(move || crate::sysuser::ensure(&name))
            .await
            .map_err(|e| Error::SystemUser {
                user: user.to_owned(),
                detail: format!("panicked: {e}"),
            })??,
    ))
}

async fn replication_run_as(
    kinds: &[ServerKind],
    options: &Options,
    run_as: Option<RunAs>,
    lease: Option<SlotLease>,
) -> Result<Cluster> {
    let Some(&first) = kinds.first() else {
        return Err(Error::Unsupported {
            detail: "a replication cluster needs at least one instance".into(),
        });
    };
    if kinds
        .iter()
        .any(|k| k.flavor() != first.flavor() || *k == ServerKind::Galera)
    {
        return Err(Error::Unsupported {
            detail: format!(
                "a replication cluster takes servers of one flavor and no Galera; asked for {kinds:?}"
            ),
        });
    }
    let mut binaries = Vec::new();
    for kind in dedup(kinds) {
        binaries.push(prepare(kind).await?);
    }
    let lease = match lease {
        Some(lease) => lease,
        None => slots::acquire(kinds.len()).await?,
    };
    let dir = temp_dir()?;
    if let Some(user) = &run_as {
        open_for(dir.path(), user)?;
    }
    let credentials = Credentials::generate();

    let mut instances = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let (bins, tpl) = binaries
            .iter()
            .find(|(b, _)| b.kind() == *kind)
            .cloned()
            .ok_or_else(|| Error::Unsupported {
                detail: format!("{kind} was not prepared"),
            })?;
        let setup = Setup {
            name: format!("{}-n{i}", kind.slug()),
            dir: dir.path().join(format!("n{i}")),
            port: allocate_port()?,
            bins,
            extra: options.extra_cnf.clone(),
            run_as: run_as.clone(),
            galera: None,
        };
        instances.push(create_instance(setup, tpl).await?);
    }
    let cluster = Cluster {
        topology: Topology::Replication,
        credentials,
        instances,
        _slots: lease,
        dir,
    };
    for instance in &cluster.instances {
        instance.spawn(false)?;
    }
    for instance in &cluster.instances {
        instance.wait_ready(START_TIMEOUT).await?;
    }
    set_up_replication(&cluster).await?;
    Ok(cluster)
}

fn dedup(kinds: &[ServerKind]) -> Vec<ServerKind> {
    let mut out: Vec<ServerKind> = Vec::new();
    for k in kinds {
        if !out.contains(k) {
            out.push(*k);
        }
    }
    out
}

/// Fetches the server and its template (blocking work off the runtime).
async fn prepare(kind: ServerKind) -> Result<(Binaries, std::path::PathBuf)> {
    tokio::task::spawn_blocking(move || {
        let bins = fetch::binaries(kind)?;
        let tpl = template(&bins)?;
        Ok((bins, tpl))
    })
    .await
    .map_err(|e| Error::Task {
        what: format!("preparing {kind}"),
        detail: e.to_string(),
    })?
}

async fn create_instance(setup: Setup, template: std::path::PathBuf) -> Result<Instance> {
    let name = setup.name.clone();
    tokio::task::spawn_blocking(move || Instance::create(setup, &template))
        .await
        .map_err(|e| Error::Task {
            what: format!("creating instance {name}"),
            detail: e.to_string(),
        })?
}

/// Environment variable: when set (to anything but `0`), clusters leave
/// their folder (data directories, logs) behind for a post-mortem.
pub const KEEP_ENV: &str = "SWITCHYARD_TESTBED_KEEP";

fn temp_dir() -> Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new()
        .prefix("switchyard-testbed-")
        .tempdir()
        .map_err(Error::io(
            "create temporary directory in",
            std::env::temp_dir(),
        ))?;
    if std::env::var(KEEP_ENV).is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!(
            "switchyard-testbed: {KEEP_ENV} is set: keeping {}",
            dir.path().display()
        );
        dir.disable_cleanup(true);
    }
    Ok(dir)
}

fn passwords(credentials: &Credentials) -> Vec<&str> {
    credentials.all().iter().map(|a| a.password()).collect()
}

fn account_sql(credentials: &Credentials) -> String {
    let c = credentials;
    // Passwords are generated alphanumeric strings: safe inside quotes.
    format!(
        "CREATE DATABASE `{APP_DATABASE}`;
CREATE USER '{op}'@'%' IDENTIFIED BY '{op_pw}';
GRANT ALL PRIVILEGES ON *.* TO '{op}'@'%' WITH GRANT OPTION;
CREATE USER '{repl}'@'%' IDENTIFIED BY '{repl_pw}';
GRANT REPLICATION SLAVE ON *.* TO '{repl}'@'%';
CREATE USER '{app}'@'%' IDENTIFIED BY '{app_pw}';
GRANT SELECT, INSERT, UPDATE, DELETE ON `{APP_DATABASE}`.* TO '{app}'@'%';
CREATE USER '{adm}'@'%' IDENTIFIED BY '{adm_pw}';
GRANT ALL PRIVILEGES ON *.* TO '{adm}'@'%';",
        op = c.operator.user(),
        op_pw = c.operator.password(),
        repl = c.replication.user(),
        repl_pw = c.replication.password(),
        app = c.application.user(),
        app_pw = c.application.password(),
        adm = c.privileged.user(),
        adm_pw = c.privileged.password(),
    )
}

/// The statement pointing a replica at `source` with GTID auto-positioning.
fn change_source_sql(flavor: Flavor, source: &Instance, credentials: &Credentials) -> String {
    let user = credentials.replication.user();
    let password = credentials.replication.password();
    let port = source.port();
    match flavor {
        Flavor::Mariadb => format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER='{user}', \
             MASTER_PASSWORD='{password}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE"
        ),
        Flavor::Mysql => format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={port}, SOURCE_USER='{user}', \
             SOURCE_PASSWORD='{password}', SOURCE_AUTO_POSITION=1, SOURCE_SSL=1, GET_SOURCE_PUBLIC_KEY=1, \
             SOURCE_CONNECT_RETRY=1, SOURCE_RETRY_COUNT=86400; START REPLICA"
        ),
    }
}

async fn set_up_replication(cluster: &Cluster) -> Result<()> {
    let primary = cluster.primary();
    let flavor = primary.kind().flavor();
    primary.set_read_only(false).await?;
    primary
        .root_exec_secret(
            "create the accounts and the app database",
            &account_sql(&cluster.credentials),
            &passwords(&cluster.credentials),
        )
        .await?;
    for replica in cluster.replicas() {
        replica
            .root_exec_secret(
                "point the replica at the primary",
                &change_source_sql(flavor, primary, &cluster.credentials),
                &passwords(&cluster.credentials),
            )
            .await?;
    }
    let position_sql = match flavor {
        Flavor::Mariadb => "SELECT @@GLOBAL.gtid_binlog_pos",
        Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
    };
    let position = primary
        .root_query_string("read the primary's GTID position", position_sql)
        .await?
        .unwrap_or_default();
    for replica in cluster.replicas() {
        wait_caught_up(replica, flavor, &position).await?;
    }
    Ok(())
}

/// Waits until `replica` has executed `position`, reporting the replica's
/// replication errors if it does not.
async fn wait_caught_up(replica: &Instance, flavor: Flavor, position: &str) -> Result<()> {
    let mut last = String::new();
    let result = wait_for(CATCH_UP_TIMEOUT, async || {
        match replica_caught_up(replica, flavor, position).await {
            Ok(true) => Some(()),
            Ok(false) => {
                last = replica_errors(replica, flavor).await;
                None
            }
            Err(e) => {
                last = e.to_string();
                None
            }
        }
    })
    .await;
    result.map_err(|e| Error::Timeout {
        instance: replica.name().to_string(),
        port: replica.port(),
        condition: "replica caught up with the primary",
        waited: e.waited,
        last,
    })
}

async fn replica_caught_up(replica: &Instance, flavor: Flavor, position: &str) -> Result<bool> {
    use sqlx::Row as _;
    let mut conn = replica.connect_root().await?;
    let sql = match flavor {
        Flavor::Mariadb => "SELECT CAST(MASTER_GTID_WAIT(?, 0.5) AS SIGNED)",
        Flavor::Mysql => "SELECT CAST(WAIT_FOR_EXECUTED_GTID_SET(?, 1) AS SIGNED)",
    };
    let row = sqlx::query(sql)
        .bind(position)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| replica.sql_error("wait for the primary's GTID position", e))?;
    let code: Option<i64> = row
        .try_get(0)
        .map_err(|e| replica.sql_error("wait for the primary's GTID position", e))?;
    Ok(code == Some(0))
}

async fn replica_errors(replica: &Instance, flavor: Flavor) -> String {
    use sqlx::Row as _;
    let Ok(mut conn) = replica.connect_root().await else {
        return "cannot connect".into();
    };
    let (sql, io_err, sql_err) = match flavor {
        Flavor::Mariadb => ("SHOW SLAVE STATUS", "Last_IO_Error", "Last_SQL_Error"),
        Flavor::Mysql => ("SHOW REPLICA STATUS", "Last_IO_Error", "Last_SQL_Error"),
    };
    match sqlx::raw_sql(sql).fetch_optional(&mut conn).await {
        Ok(Some(row)) => {
            let get = |col: &str| -> String {
                row.try_get::<String, _>(col)
                    .or_else(|_| {
                        row.try_get::<Vec<u8>, _>(col)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    })
                    .unwrap_or_default()
            };
            format!("IO error: {:?}; SQL error: {:?}", get(io_err), get(sql_err))
        }
        Ok(None) => "no replication configured".into(),
        Err(e) => e.to_string(),
    }
}

/// The unprivileged system user Galera servers run as when the testbed runs
/// as root (rsync state transfer fails for servers running as root).
pub const GALERA_USER: &str = "switchyard-db";

/// Starts a Galera cluster of `n` MariaDB 10.11 nodes on loopback.
///
/// Node 0 bootstraps the cluster (`--wsrep-new-cluster`), the others join
/// one at a time with an rsync state transfer, and the call returns when
/// every node is Synced and `wsrep_cluster_size` is `n`. When the testbed
/// runs as root the servers run as the system user [`GALERA_USER`]
/// (created with `useradd --system` if absent). The accounts of
/// [`Credentials`] and the database `app` are created on node 0 and reach
/// the others through Galera. Every node is writable (no `read_only`), has
/// its binary log on with `wsrep_gtid_mode` (domain 1), and uses
/// `wsrep_sst_method=rsync`.
///
/// Why an unprivileged user: the rsync SST script starts an rsync daemon
/// that drops to `nobody` when started by root, and the joiner then cannot
/// write its data directory. (`mariabackup` SST was not tried; its tools
/// are fetched, so `Options::extra_cnf` can select it.)
pub async fn galera(n: usize) -> Result<Cluster> {
    galera_with(n, &Options::default()).await
}

/// Like [`galera`] with extra options.
pub async fn galera_with(n: usize, options: &Options) -> Result<Cluster> {
    if n == 0 {
        return Err(Error::Unsupported {
            detail: "a Galera cluster needs at least one node".into(),
        });
    }
    let (bins, tpl) = prepare(ServerKind::Galera).await?;
    let run_as = if crate::template::running_as_root() {
        Some(
            tokio::task::spawn_blocking(|| crate::sysuser::ensure(GALERA_USER))
                .await
                .map_err(|e| Error::SystemUser {
                    user: GALERA_USER.into(),
                    detail: format!("panicked: {e}"),
                })??,
        )
    } else {
        None
    };
    let lease = slots::acquire(n).await?;
    let dir = temp_dir()?;
    if let Some(user) = &run_as {
        open_for(dir.path(), user)?;
    }
    let credentials = Credentials::generate();
    let mut gcomm = Vec::new();
    for _ in 0..n {
        gcomm.push(allocate_port()?);
    }
    let address = format!(
        "gcomm://{}",
        gcomm
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port()))
            .collect::<Vec<_>>()
            .join(",")
    );
    // Galera fails the handshake (with an empty message) on long group
    // names: keep it short.
    let cluster_name = format!("sy-{}", short_id());
    let mut instances = Vec::with_capacity(n);
    for (i, gcomm_port) in gcomm.into_iter().enumerate() {
        let setup = Setup {
            name: format!("galera-n{i}"),
            dir: dir.path().join(format!("n{i}")),
            port: allocate_port()?,
            bins: bins.clone(),
            extra: options.extra_cnf.clone(),
            run_as: run_as.clone(),
            galera: Some(GaleraNode {
                cluster_name: cluster_name.clone(),
                cluster_address: address.clone(),
                gcomm: gcomm_port,
                ist: allocate_port()?,
                sst: allocate_port()?,
            }),
        };
        instances.push(create_instance(setup, tpl.clone()).await?);
    }
    let cluster = Cluster {
        topology: Topology::Galera,
        credentials,
        instances,
        _slots: lease,
        dir,
    };
    let first = cluster.primary();
    first.spawn(true)?;
    first.wait_ready(START_TIMEOUT).await?;
    first
        .root_exec_secret(
            "create the accounts and the app database",
            &account_sql(&cluster.credentials),
            &passwords(&cluster.credentials),
        )
        .await?;
    for node in cluster.replicas() {
        node.spawn(false)?;
        node.wait_ready(START_TIMEOUT).await?;
    }
    wait_cluster_size(&cluster, n).await?;
    Ok(cluster)
}

/// Eight random alphanumeric characters.
fn short_id() -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}

/// Lets the Galera user reach the instance folders inside the temporary
/// folder (which `tempfile` creates private to its owner).
fn open_for(dir: &Path, user: &RunAs) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(Error::io("chmod", dir))?;
    let _ = user;
    Ok(())
}

async fn wait_cluster_size(cluster: &Cluster, n: usize) -> Result<()> {
    for node in cluster.instances() {
        let mut last = String::new();
        let result = wait_for(START_TIMEOUT, async || {
                match node
                    .root_query_string(
                        "read wsrep_cluster_size",
                        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'",
                    )
                    .await
                {
                    Ok(Some(size)) if size == n.to_string() => Some(()),
                    Ok(other) => {
                        last = format!("wsrep_cluster_size {other:?}");
                        None
                    }
                    Err(e) => {
                        last = e.to_string();
                        None
                    }
                }
        })
        .await;
        result.map_err(|e| Error::Timeout {
            instance: node.name().to_string(),
            port: node.port(),
            condition: "Galera cluster size reached",
            waited: e.waited,
            last,
        })?;
    }
    Ok(())
}
