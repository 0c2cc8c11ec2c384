//! The instance-facing operations the Kubernetes runtime needs, behind a small trait.
//!
//! [`InstanceOps`] is the seam between the reconciler and the servers. The production
//! implementation, [`MysqlOps`], talks SQL through `switchyard-mysql` and asks the pod's agent
//! ([`crate::agent`]) what only the pod can tell (the data directory's state, the system
//! tables' upgrade); no command runs inside a pod (no `pods/exec`). The reconcile tests use a
//! Kubernetes-side test double so that they run against a fake API server without database
//! servers; the SQL path is tested against real servers (`tests/ops.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard_config::{Account, ConfigError, ConfigServer, ServerMetadata};
use switchyard_mysql::{
    Credentials, Instance, InstanceAddr, IoThreadState, Observation, ReplicationCredentials,
    SourceAddr, Timeouts,
};
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::versions::{Flavor, Version};

use crate::agent::{AGENT_PORT, AgentStatus};
use crate::credentials::ClusterCredentials;
use crate::names::{MYSQL_PORT, Names};

/// One instance as the operations address it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The namespace.
    pub namespace: String,
    /// The cluster's name.
    pub cluster: String,
    /// The ordinal.
    pub ordinal: u32,
    /// The pod's name.
    pub pod: String,
    /// Where the server listens (stable pod DNS name, or what a resolver gave).
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// Where a replica reaches `source`: the source pod's stable name in the cluster's DNS and the
/// server's port, as every pod resolves it (`/etc/hosts` or the hosts Service), whatever
/// address the operator itself reaches the source by (a resolver may give it another, such as
/// a pod address outside the cluster's DNS). The observation maps that name back to the
/// ordinal (`Names::ordinal_of_host`); an address would map to none, and the engine would
/// repoint the replica again and again.
fn source_addr(source: &Target) -> SourceAddr {
    let names = Names {
        cluster: source.cluster.clone(),
        namespace: source.namespace.clone(),
    };
    SourceAddr::new(names.pod_host(source.ordinal), MYSQL_PORT)
}

/// Replication as an instance reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationView {
    /// The host it replicates from.
    pub source_host: String,
    /// Whether replication runs: the applier runs and the I/O thread runs or is connecting.
    /// Configured but not running (a restart with `skip-replica-start`, a demoted old primary
    /// not started yet) is `false` with no error.
    pub running: bool,
    /// The last I/O or SQL error number (0: none).
    pub errno: u32,
    /// The last error text.
    pub error: String,
    /// Seconds behind the source, when applying.
    pub lag_seconds: Option<u64>,
    /// Whether the receiver (the replication I/O thread) is connected to its source now
    /// (`Yes`), rather than stopped or reconnecting: a replica whose receiver lost the
    /// primary corroborates that the primary failed.
    pub connected: bool,
    /// Everything the replica received: executed plus what waits in its relay log, when the
    /// server reports it (a failover promotes the replica that received the most).
    pub received: Option<GtidSet>,
}

/// What an instance reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    /// The version it runs.
    pub version: Version,
    /// Whether clients may write (`read_only` and `super_read_only` off).
    pub writable: bool,
    /// Whether a fence holds now: no client, however privileged, can commit. MySQL:
    /// `super_read_only` is on; MariaDB: these operations' own connection holds the fence's
    /// backup lock (it dies with that connection and with the server process).
    pub fenced: bool,
    /// Replication, when a source is configured.
    pub replication: Option<ReplicationView>,
    /// Executed GTIDs.
    pub gtid: Option<GtidSet>,
    /// On a source whose semi-synchronous replication is lossless (waits after the sync,
    /// even with no replica connected, with a timeout of at least [`NEVER_FALLS_BACK`]): how
    /// many replicas acknowledge each commit. `None` otherwise (asynchronous, or a source
    /// that may fall back to it on its own).
    pub ack_replicas: Option<u32>,
    /// A Galera node's wsrep state (`wsrep_local_state_comment`, cluster size and status),
    /// when the server has `wsrep_on`.
    pub galera: Option<switchyard_plan::topology::GaleraState>,
}

/// The plan's view of a Galera node's wsrep status (as the local runtime reports it).
pub fn galera_state(
    g: &switchyard_mysql::GaleraState,
) -> Option<switchyard_plan::topology::GaleraState> {
    use switchyard_plan::topology::{GaleraState, WsrepState};
    g.wsrep_on.then(|| GaleraState {
        state: g
            .local_state_comment
            .as_deref()
            .map_or(WsrepState::Other, WsrepState::from_comment),
        cluster_size: g.cluster_size.unwrap_or(0),
        primary_component: g.in_primary_component(),
    })
}

/// The shortest semi-synchronous timeout the observation reports as never falling back to
/// asynchronous replication ([`InstanceView::ack_replicas`]): an hour, far beyond any
/// detection and failover. The operator configures [`crate::revision::SEMI_SYNC_TIMEOUT`].
pub const NEVER_FALLS_BACK: Duration = Duration::from_secs(3600);

/// A failed instance operation: what it was for, and a bounded category.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OpsError {
    /// A bounded label (`down`, `timeout`, `statement`, ...).
    pub category: &'static str,
    /// Whether it may pass on its own (down, unreachable, timeout).
    pub transient: bool,
    /// What happened, naming the instance (never a password).
    pub message: String,
}

impl OpsError {
    /// An error from the topology client.
    pub fn from_mysql(e: &switchyard_mysql::Error) -> Self {
        let category = e.category();
        OpsError {
            category,
            transient: matches!(
                category,
                "down" | "unreachable" | "not_responding" | "timeout" | "connection" | "lagging"
            ),
            message: e.to_string(),
        }
    }

    /// An error of the operator's own.
    pub fn new(category: &'static str, transient: bool, message: impl Into<String>) -> Self {
        OpsError {
            category,
            transient,
            message: message.into(),
        }
    }
}

/// The operations on one instance that the Kubernetes runtime performs. Every operation is
/// idempotent; the engine may repeat one. An operation that takes a `deadline` sends no
/// statement once it has passed and ends every statement by it.
#[async_trait]
pub trait InstanceOps: Send + Sync {
    /// What the instance reports (by `deadline`, when one is given).
    async fn observe(
        &self,
        t: &Target,
        deadline: Option<Instant>,
    ) -> Result<InstanceView, OpsError>;
    /// Waits until no transaction on the instance has been open longer than `max_seconds`
    /// (the switchover pre-flight's long-transaction test), failing at `deadline` while one
    /// still is. Changes nothing.
    async fn wait_no_long_transaction(
        &self,
        t: &Target,
        max_seconds: u64,
        deadline: Instant,
    ) -> Result<(), OpsError>;
    /// Fences it: no client, however privileged, commits afterwards (MySQL
    /// `super_read_only`; MariaDB `read_only` and a backup lock held by these operations'
    /// connection), and client connections are closed.
    async fn fence(&self, t: &Target, deadline: Instant) -> Result<(), OpsError>;
    /// Makes the fenced old primary `t` a replica of `source` without starting its
    /// replication, and fences it again.
    async fn demote(&self, t: &Target, source: &Target, deadline: Instant) -> Result<(), OpsError>;
    /// Waits until `candidate` executed everything `from` committed (its position read now),
    /// failing at `deadline`.
    async fn wait_caught_up(
        &self,
        candidate: &Target,
        from: &Target,
        deadline: Instant,
    ) -> Result<(), OpsError>;
    /// Makes it the writable primary: stops its replication, lifts its fence and read-only
    /// mode, then forgets its replication source. A failure names the stage it reached in its
    /// message; from the stage that turns read-only off on, the instance may take writes.
    async fn promote(&self, t: &Target, deadline: Instant) -> Result<(), OpsError>;
    /// Makes it replicate from `source` with GTID positioning and starts replication;
    /// `former_primary` when it was the primary or is fenced: its clients are closed, its own
    /// position carries over (MariaDB `gtid_slave_pos`) and a fence's lock is released.
    async fn replicate_from(
        &self,
        t: &Target,
        source: &Target,
        former_primary: bool,
    ) -> Result<(), OpsError>;
    /// Stops the replica's receiver (its replication I/O thread) by `deadline`, so that
    /// nothing more arrives from a failed primary that may come back; what it received stays
    /// in its relay log for its applier. An instance without a source has nothing to stop.
    async fn detach(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        let _ = deadline;
        Err(unsupported(t, "stop a replica's receiver"))
    }
    /// Waits until the replica's applier executed everything its receiver received, failing
    /// at once when the applier stopped, and at `deadline` while it lags.
    async fn wait_received_applied(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        let _ = deadline;
        Err(unsupported(t, "wait for a replica's relay log"))
    }
    /// Turns the source side of semi-synchronous replication on, waiting for `wait_for`
    /// replicas (the primary, before it takes a write; MariaDB always waits for one), or off
    /// with `None` (any other instance: a replica with it on would hold its applier's commits
    /// waiting for replicas of its own), by `deadline`.
    async fn set_semi_sync_source(
        &self,
        t: &Target,
        wait_for: Option<u32>,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        let _ = (wait_for, deadline);
        Err(unsupported(t, "switch semi-synchronous replication"))
    }
    /// Prepares a shutdown: a slow one (`innodb_fast_shutdown = 0`) when `slow`.
    async fn prepare_shutdown(&self, t: &Target, slow: bool) -> Result<(), OpsError>;
    /// Closes every client connection (after the primary moved away), by `deadline`.
    async fn close_client_connections(&self, t: &Target, deadline: Instant)
    -> Result<(), OpsError>;
    /// Sets the passwords of `accounts` (`(user, password)`, each `'user'@'%'`) on the primary
    /// `t`, written to the binary log so that every replica applies the same change from it
    /// (no replica writes a transaction of its own). Errors never hold a password.
    async fn set_passwords(
        &self,
        t: &Target,
        accounts: &[(String, String)],
    ) -> Result<(), OpsError> {
        let _ = accounts;
        Err(unsupported(t, "set passwords"))
    }
    /// What the instance's agent reports (`GET /status` on its agent port).
    async fn agent_status(&self, t: &Target) -> Result<AgentStatus, OpsError> {
        Err(unsupported(t, "ask the agent"))
    }
    /// What the server says about the variables: scope, whether they change at run time,
    /// type and range, global value. `probe` names the variables of interest (MySQL asks the
    /// server whether each is dynamic with a statement that cannot change anything).
    async fn variable_metadata(
        &self,
        t: &Target,
        probe: &[String],
    ) -> Result<ServerMetadata, OpsError> {
        let _ = probe;
        Err(unsupported(t, "read variable metadata"))
    }
    /// Sets `variables` online (`SET GLOBAL`, values in the server's form, in order). When
    /// the server refuses one, what was already set on this instance is set back and the
    /// error's category is `refused` (permanent). Idempotent.
    async fn set_variables(
        &self,
        t: &Target,
        variables: &[(String, String)],
    ) -> Result<(), OpsError> {
        let _ = variables;
        Err(unsupported(t, "set variables"))
    }
    /// The global values of `names` (`@@GLOBAL`, as text; a NULL value reads as `None`).
    async fn global_values(
        &self,
        t: &Target,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<String>>, OpsError> {
        let _ = names;
        Err(unsupported(t, "read global variables"))
    }
    /// The server's accounts and their authentication plugins (no credentials).
    async fn accounts(&self, t: &Target) -> Result<Vec<Account>, OpsError> {
        Err(unsupported(t, "list the accounts"))
    }
    /// The table's definition as the server prints it (`SHOW CREATE TABLE`).
    async fn show_create_table(
        &self,
        t: &Target,
        database: &str,
        table: &str,
    ) -> Result<String, OpsError> {
        let _ = (database, table);
        Err(unsupported(t, "read a table's definition"))
    }
    /// Runs one schema change on this instance only (binary log off for the session, lock
    /// wait bounded by `lock_wait`); on a fenced former primary (`former_primary`) the
    /// fence's backup lock is released and its applier stopped around the ALTER.
    async fn run_ddl(
        &self,
        t: &Target,
        statement: &str,
        lock_wait: Duration,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        let _ = (statement, lock_wait, former_primary);
        Err(unsupported(t, "run a schema change"))
    }
}

fn unsupported(t: &Target, what: &str) -> OpsError {
    OpsError::new(
        "unsupported",
        false,
        format!("{}: these instance operations cannot {what}", t.pod),
    )
}

/// The production [`InstanceOps`]: SQL through `switchyard-mysql`.
///
/// Handles are cached per instance and kept across reconciles: on MariaDB the fence is a
/// backup lock held by a connection of the handle, which must outlive the step that took it
/// until the promotion, the unfence or the repoint releases it. A server restart (the
/// kubelet restarting the container, a pod recreated) ends that lock while the handle still
/// holds its dead connection, so the cache also keeps when the server the lock was taken on
/// started (a window from its `Uptime`, which counts whole seconds): a server that started
/// outside that window is another process, its lock is reported gone and dropped, and the
/// next fence takes a new one instead of counting on the dead one. (The window only misses
/// a server restarted within a second of its previous start.)
#[derive(Clone)]
pub struct MysqlOps {
    account: (String, String),
    credentials: Credentials,
    replication: ReplicationCredentials,
    handles: HandleCache,
    timeouts: Timeouts,
    /// Replicas reach their source at the address the operator reaches it by, not at its pod
    /// name (see [`MysqlOps::with_sources_by_address`]).
    sources_by_address: bool,
}

/// One cached instance handle, and when the server its MariaDB fence lock was taken on
/// started.
pub struct CachedHandle {
    instance: Instance,
    fenced_server: Option<StartWindow>,
    /// The account the handle connects with (user and password): a handle of another account
    /// (after a password rotation) is replaced.
    account: (String, String),
    /// How many observations in a row could not reach the instance (a hint for the bound of
    /// the next one, never a view of the cluster).
    misses: u32,
}

/// How long one observation of an instance that is failing (its last observation could not
/// reach it) may take: a frozen or cut-off server otherwise costs every observation a whole
/// connect timeout, or a statement timeout on a cached connection, on the failover's
/// critical path. A server that answers logs in and reports within milliseconds; one that is
/// merely slow is seen again by an unbounded observation every [`FULL_LOOK_EVERY`].
pub const FAILING_OBSERVE: Duration = Duration::from_millis(500);

/// Every how many observations of a failing instance one is not bounded by
/// [`FAILING_OBSERVE`], so that a server that came back but answers slowly (a loaded node)
/// is still seen.
pub const FULL_LOOK_EVERY: u32 = 5;

/// When a server process started, as one observation can tell: after `from`, no later than
/// `to` (its `Uptime` counts whole seconds).
#[derive(Clone, Copy, Debug)]
struct StartWindow {
    from: Instant,
    to: Instant,
}

impl StartWindow {
    /// The window of a server that reported `uptime` between `before` and `after`.
    fn of(uptime: Duration, before: Instant, after: Instant) -> StartWindow {
        let sub = |at: Instant, d: Duration| at.checked_sub(d).unwrap_or(at);
        StartWindow {
            from: sub(before, uptime + Duration::from_secs(1)),
            to: sub(after, uptime),
        }
    }

    /// Whether both windows may be the same start (the same server process).
    fn same_start(self, other: StartWindow) -> bool {
        self.from <= other.to && other.from <= self.to
    }
}

/// The shared cache of instance handles (one per operator process).
pub type HandleCache = Arc<Mutex<HashMap<Target, CachedHandle>>>;

impl MysqlOps {
    /// Operations with `creds`, sharing `handles`.
    pub fn new(creds: &ClusterCredentials, handles: HandleCache) -> Self {
        MysqlOps {
            account: (creds.operator_user.clone(), creds.operator_password.clone()),
            credentials: Credentials::new(
                creds.operator_user.clone(),
                creds.operator_password.clone(),
            ),
            replication: ReplicationCredentials::new(
                creds.replication_user.clone(),
                creds.replication_password.clone(),
            ),
            handles,
            timeouts: Timeouts::default(),
            sources_by_address: false,
        }
    }

    /// Points replicas at the address the operator reaches their source by (the
    /// [`Target`]'s host and port) instead of the source pod's name in the cluster's DNS:
    /// for servers outside a cluster's DNS, which cannot resolve pod names (servers run on
    /// one host, reached through a resolver). The engine's observation maps a source back to
    /// an ordinal by pod name, so inside a cluster keep the default.
    #[must_use]
    pub fn with_sources_by_address(mut self) -> Self {
        self.sources_by_address = true;
        self
    }

    /// Where a replica reaches `source` (see [`source_addr`]).
    fn source_of(&self, source: &Target) -> SourceAddr {
        if self.sources_by_address {
            SourceAddr::new(source.host.clone(), source.port)
        } else {
            source_addr(source)
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Target, CachedHandle>> {
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, t: &Target) -> Instance {
        let mut handles = self.cache();
        if let Some(h) = handles.get(t)
            && h.instance.addr().host == t.host
            && h.account == self.account
        {
            return h.instance.clone();
        }
        let h = Instance::new(
            t.pod.clone(),
            InstanceAddr::new(t.host.clone(), t.port),
            self.credentials.clone(),
        )
        .with_timeouts(self.timeouts);
        handles.insert(
            t.clone(),
            CachedHandle {
                instance: h.clone(),
                fenced_server: None,
                account: self.account.clone(),
                misses: 0,
            },
        );
        h
    }

    /// How many observations in a row could not reach `t`.
    fn misses(&self, t: &Target) -> u32 {
        self.cache().get(t).map_or(0, |c| c.misses)
    }

    /// Notes whether the last observation of `t` reached it.
    fn note_observed(&self, t: &Target, reached: bool) {
        if let Some(c) = self.cache().get_mut(t) {
            c.misses = if reached {
                0
            } else {
                c.misses.saturating_add(1)
            };
        }
    }

    /// The bound of an observation of `t` asked with `deadline`: [`FAILING_OBSERVE`] from
    /// now while it is failing (but every [`FULL_LOOK_EVERY`]th look).
    fn observe_bound(&self, t: &Target, deadline: Option<Instant>) -> Option<Instant> {
        let misses = self.misses(t);
        if misses == 0 || misses % FULL_LOOK_EVERY == FULL_LOOK_EVERY - 1 {
            return deadline;
        }
        let quick = Instant::now() + FAILING_OBSERVE;
        Some(deadline.map_or(quick, |d| d.min(quick)))
    }

    /// Observes `t`, by `deadline` when one is given, and tells when its server started.
    async fn observe_started(
        &self,
        h: &Instance,
        deadline: Option<Instant>,
    ) -> Result<(Observation, StartWindow), OpsError> {
        let before = Instant::now();
        let o = match deadline {
            Some(d) => ops(h.observe_by(d).await)?,
            None => ops(h.observe().await)?,
        };
        let started = StartWindow::of(o.uptime, before, Instant::now());
        Ok((o, started))
    }

    /// The server `t`'s lock was taken on, when this handle holds one.
    fn fenced_server(&self, t: &Target) -> Option<StartWindow> {
        self.cache().get(t).and_then(|c| c.fenced_server)
    }

    /// Notes that the lock held on `t` (if any) was taken on the server that `started`.
    fn note_fenced(&self, t: &Target, started: StartWindow) {
        if let Some(h) = self.cache().get_mut(t) {
            h.fenced_server = Some(started);
        }
    }

    /// Whether this handle holds a MariaDB fence lock taken on the server running now (which
    /// `started`): one taken on an earlier server process died with it, and is dropped.
    async fn lock_holds(&self, t: &Target, h: &Instance, started: StartWindow) -> bool {
        if !h.holds_fence_lock().await {
            return false;
        }
        if self
            .fenced_server(t)
            .is_some_and(|fenced| !fenced.same_start(started))
        {
            h.release_fence_lock().await;
            return false;
        }
        true
    }

    /// The configuration client of `t`, with the operator account (connects on first use).
    fn config_server(&self, t: &Target) -> ConfigServer {
        ConfigServer::new(
            t.pod.clone(),
            InstanceAddr::new(t.host.clone(), t.port),
            self.credentials.clone(),
        )
    }
}

fn config<T>(r: Result<T, ConfigError>) -> Result<T, OpsError> {
    r.map_err(|e| {
        let category = e.category();
        let transient = matches!(
            category,
            "connect" | "query" | "timeout" | "topology" | "probe"
        );
        OpsError::new(category, transient, e.to_string())
    })
}

fn ops<T>(r: Result<T, switchyard_mysql::Error>) -> Result<T, OpsError> {
    r.map_err(|e| OpsError::from_mysql(&e))
}

#[async_trait]
impl InstanceOps for MysqlOps {
    async fn observe(
        &self,
        t: &Target,
        deadline: Option<Instant>,
    ) -> Result<InstanceView, OpsError> {
        let h = self.handle(t);
        let deadline = self.observe_bound(t, deadline);
        let observed = self.observe_started(&h, deadline).await;
        self.note_observed(t, observed.is_ok());
        let (o, started) = observed?;
        let replication = o.replication.as_ref().map(|r| ReplicationView {
            source_host: r.source_host.clone(),
            running: r.sql_running && r.io_thread != IoThreadState::Stopped,
            errno: if r.last_sql_errno != 0 {
                r.last_sql_errno
            } else {
                r.last_io_errno
            },
            error: if r.last_sql_errno != 0 {
                r.last_sql_error.clone()
            } else {
                r.last_io_error.clone()
            },
            lag_seconds: r.seconds_behind,
            connected: r.is_connected(),
            received: o.received(),
        });
        let fenced = match o.version.flavor {
            Flavor::Mysql => o.super_read_only == Some(true),
            Flavor::Mariadb => self.lock_holds(t, &h, started).await,
        };
        Ok(InstanceView {
            version: o.version.version,
            writable: o.is_writable() && o.super_read_only != Some(true),
            fenced,
            replication,
            gtid: Some(o.gtid.executed().clone()),
            ack_replicas: o
                .semi_sync
                .as_ref()
                .and_then(|s| s.ack_replicas(NEVER_FALLS_BACK)),
            galera: o.galera.as_ref().and_then(galera_state),
        })
    }

    async fn detach(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        ops(self.handle(t).detach_by(deadline).await)
    }

    async fn wait_received_applied(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        ops(self.handle(t).wait_received_applied_by(deadline).await)
    }

    async fn set_semi_sync_source(
        &self,
        t: &Target,
        wait_for: Option<u32>,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        let h = self.handle(t);
        if let Some(k) = wait_for
            && ops(h.server_version().await)?.flavor == Flavor::Mysql
        {
            // The count follows the number of instances: set with the switch, not rendered
            // into the revision.
            let count = k.to_string();
            let report = ops(h
                .set_variables(&[(
                    "rpl_semi_sync_source_wait_for_replica_count",
                    count.as_str(),
                )])
                .await)?;
            if let Some(refusal) = report.refused.first().or(report.read_only.first()) {
                return Err(OpsError::new(
                    "statement",
                    false,
                    format!(
                        "{}: could not set rpl_semi_sync_source_wait_for_replica_count: {}",
                        t.pod, refusal.server
                    ),
                ));
            }
        }
        ops(h
            .set_semi_sync_source_by(wait_for.is_some(), deadline)
            .await)
    }

    async fn wait_no_long_transaction(
        &self,
        t: &Target,
        max_seconds: u64,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        ops(self
            .handle(t)
            .wait_no_long_transaction_by(max_seconds, deadline)
            .await)
    }

    async fn fence(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        let h = self.handle(t);
        // A lock this handle took on an earlier server process is dead: fencing again would
        // keep it instead of taking a new one. An instance that is failing (a frozen or
        // cut-off primary the failover fences once more before its promotion) is given the
        // bound of its observations: one that cannot be reached fails the fence at once;
        // one that answers is fenced within the whole deadline.
        let first = self.observe_bound(t, Some(deadline)).unwrap_or(deadline);
        let observed = self.observe_started(&h, Some(first)).await;
        self.note_observed(t, observed.is_ok());
        let (_, started) = observed?;
        self.lock_holds(t, &h, started).await;
        ops(h.fence_by(deadline).await)?;
        self.note_fenced(t, started);
        Ok(())
    }

    async fn demote(&self, t: &Target, source: &Target, deadline: Instant) -> Result<(), OpsError> {
        let to = self.source_of(source);
        let h = self.handle(t);
        // It releases the lock it held and takes a new one on the server running now.
        let (_, started) = self.observe_started(&h, Some(deadline)).await?;
        ops(h
            .demote_unstarted_by(&to, &self.replication, deadline)
            .await)?;
        self.note_fenced(t, started);
        Ok(())
    }

    async fn wait_caught_up(
        &self,
        candidate: &Target,
        from: &Target,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        let position = ops(self.handle(from).binlog_position_by(deadline).await)?;
        ops(self
            .handle(candidate)
            .wait_caught_up_by(&position, deadline)
            .await)
    }

    async fn promote(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        self.handle(t).promote_by(deadline).await.map_err(|f| {
            let mut e = OpsError::from_mysql(&f.error);
            e.message = format!(
                "{} (the promotion reached stage {:?}{})",
                e.message,
                f.stage,
                if f.stage.may_be_writable() {
                    ": the instance may take writes"
                } else {
                    ": the instance is still read-only"
                }
            );
            e
        })
    }

    async fn replicate_from(
        &self,
        t: &Target,
        source: &Target,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        let h = self.handle(t);
        let to = self.source_of(source);
        if former_primary {
            ops(h.demote_to_replica(&to, &self.replication).await)
        } else {
            ops(h.configure_replica(&to, &self.replication).await)
        }
    }

    async fn prepare_shutdown(&self, t: &Target, slow: bool) -> Result<(), OpsError> {
        let value = if slow { "0" } else { "1" };
        let report = ops(self
            .handle(t)
            .set_variables(&[("innodb_fast_shutdown", value)])
            .await)?;
        match report.refused.first().or(report.read_only.first()) {
            Some(refusal) => Err(OpsError::new(
                "statement",
                false,
                format!(
                    "{}: could not set innodb_fast_shutdown: {}",
                    t.pod, refusal.server
                ),
            )),
            None => Ok(()),
        }
    }

    async fn close_client_connections(
        &self,
        t: &Target,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        ops(self.handle(t).kill_client_connections_by(deadline).await).map(drop)
    }

    async fn variable_metadata(
        &self,
        t: &Target,
        probe: &[String],
    ) -> Result<ServerMetadata, OpsError> {
        let names: Vec<&str> = probe.iter().map(String::as_str).collect();
        config(self.config_server(t).metadata(&names).await)
    }

    async fn set_variables(
        &self,
        t: &Target,
        variables: &[(String, String)],
    ) -> Result<(), OpsError> {
        config(self.config_server(t).apply_online(variables).await).map(drop)
    }

    async fn global_values(
        &self,
        t: &Target,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<String>>, OpsError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        ops(self.handle(t).global_values(&names).await)
    }

    async fn accounts(&self, t: &Target) -> Result<Vec<Account>, OpsError> {
        config(self.config_server(t).accounts().await)
    }

    async fn show_create_table(
        &self,
        t: &Target,
        database: &str,
        table: &str,
    ) -> Result<String, OpsError> {
        ops(self.handle(t).show_create_table(database, table).await)
    }

    async fn run_ddl(
        &self,
        t: &Target,
        statement: &str,
        lock_wait: Duration,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        ops(self
            .handle(t)
            .run_member_ddl(statement, lock_wait, former_primary)
            .await)
    }

    async fn set_passwords(
        &self,
        t: &Target,
        accounts: &[(String, String)],
    ) -> Result<(), OpsError> {
        use switchyard_mysql::sql::{quote_literal, validate_password, validate_user};
        let h = self.handle(t);
        for (user, password) in accounts {
            if validate_user(user).is_err() || validate_password(password).is_err() {
                return Err(OpsError::new(
                    "invalid",
                    false,
                    format!(
                        "{}: the account {user} or its new password is not usable",
                        t.pod
                    ),
                ));
            }
            // Values validated above and quoted: ALTER USER takes no bound password. Written
            // to the binary log (a replicated statement), so the replicas apply it from here.
            let statement = format!(
                "ALTER USER {}@'%' IDENTIFIED BY {}",
                quote_literal(user),
                quote_literal(password)
            );
            let changed = h
                .run_replicated_ddl(&statement, Duration::from_secs(10))
                .await;
            if let Err(e) = changed {
                let mut e = OpsError::from_mysql(&e);
                // A server may echo the statement: never the password.
                e.message = e.message.replace(password.as_str(), "***");
                e.message = format!("{}: set the password of {user}: {}", t.pod, e.message);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn agent_status(&self, t: &Target) -> Result<AgentStatus, OpsError> {
        crate::agent::fetch_status(&t.host, AGENT_PORT)
            .await
            .map_err(|e| OpsError::new("agent", true, format!("{}: {e}", t.pod)))
    }
}

/// The address of an instance: its stable DNS name through the hosts Service.
pub fn pod_target(namespace: &str, cluster: &str, ordinal: u32, host: String) -> Target {
    Target {
        namespace: namespace.to_owned(),
        cluster: cluster.to_owned(),
        ordinal,
        pod: format!("{cluster}-{ordinal}"),
        host,
        port: MYSQL_PORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_reach_their_source_by_its_pod_name_not_the_operators_address() {
        let source = Target {
            namespace: "db".into(),
            cluster: "shop".into(),
            ordinal: 2,
            pod: "shop-2".into(),
            host: "10.213.0.4".into(),
            port: 13306,
        };
        let to = source_addr(&source);
        assert_eq!(to.host, "shop-2.shop-hosts.db.svc");
        assert_eq!(to.port, MYSQL_PORT);
        let names = Names {
            cluster: "shop".into(),
            namespace: "db".into(),
        };
        assert_eq!(names.ordinal_of_host(&to.host), Some(2));
    }
}
