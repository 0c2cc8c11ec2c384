//! A local cluster: testbed server processes behind the testbed router, the
//! state file next to their data, the revision history, and a supervisor
//! that starts a crashed process again on its current revision, as a kubelet
//! would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_mysql::{Credentials as MysqlCredentials, InstanceAddr, ReplicationCredentials};
use switchyard_plan::Record;
use switchyard_plan::decide::{OnlineChange, Target};
use switchyard_plan::history::{History, RevisionEntry};
use switchyard_plan::topology::Timestamp;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_testbed::ledger::CheckTarget;
use switchyard_testbed::load::Endpoints;
use switchyard_testbed::router::Router;
use switchyard_testbed::{Credentials, Options, ServerKind};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::state::{ClusterState, InstanceState, StateDoc, StateFile};
use crate::timeline::{Event, StartedBy, Timeline};

/// How to build a local cluster.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// The server every instance starts on.
    pub kind: ServerKind,
    /// How many instances (instance 0 starts as the primary).
    pub instances: usize,
    /// Server variables of the first revision, rendered into my.cnf.
    pub config: BTreeMap<String, String>,
    /// Whether the supervisor starts crashed processes again.
    pub supervise: bool,
    /// How long a server may take to start (crash recovery included).
    pub startup_timeout: Duration,
    /// How long a clean shutdown may take.
    pub shutdown_timeout: Duration,
    /// Semi-synchronous replication: how many replicas acknowledge each commit before the
    /// client's is (see [`ClusterSpec::with_semi_sync`]); `None` for asynchronous replication.
    pub semi_sync: Option<u32>,
    /// The replicas' network timeout in seconds (`replica_net_timeout` /
    /// `slave_net_timeout`; the heartbeat is half of it): how soon a receiver notices a
    /// source that stopped answering (see [`ClusterSpec::with_replica_net_timeout`]).
    /// `None` keeps the server's default (60 s), or [`crate::DEFAULT_REPLICA_NET_TIMEOUT`]
    /// with semi-synchronous replication.
    pub replica_net_timeout: Option<u32>,
    /// The system user the servers run as when the cluster is started by root (see
    /// [`ClusterSpec::with_server_user`]); `None`: the caller's user.
    pub server_user: Option<String>,
}

impl ClusterSpec {
    /// `instances` servers of `kind`, supervised, with no extra variables,
    /// 60 s to start and 120 s to shut down. With [`ServerKind::Galera`], a
    /// Galera cluster (MariaDB 10.11 with Galera 4): node 0 bootstraps it and
    /// is the writer behind the router's primary endpoint, the others join.
    pub fn new(kind: ServerKind, instances: usize) -> Self {
        ClusterSpec {
            kind,
            instances,
            config: BTreeMap::new(),
            supervise: true,
            startup_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(120),
            semi_sync: None,
            replica_net_timeout: None,
            server_user: None,
        }
    }

    /// The same spec with the servers running as the system user `name` (created if
    /// absent) when the cluster is started by root: their replication connections are
    /// then owned by another user than the engine's and the router's, which an
    /// operator-only network cut of the simulation tells apart.
    pub fn with_server_user(mut self, name: impl Into<String>) -> Self {
        self.server_user = Some(name.into());
        self
    }

    /// The same spec with lossless semi-synchronous replication: the primary acknowledges a
    /// commit only once `ack_replicas` replicas have written it to their relay logs, waiting
    /// after the sync (`AFTER_SYNC`), with a timeout of [`crate::SEMI_SYNC_TIMEOUT`] and waiting even
    /// when too few replicas are connected, so that it never falls back to asynchronous
    /// replication on its own. The first revision's variables get (MySQL) the
    /// `semisync_source` and `semisync_replica` plugins, `rpl_semi_sync_replica_enabled`,
    /// `rpl_semi_sync_source_wait_point`, `_timeout`, `_wait_for_replica_count` and
    /// `_wait_no_replica`; (MariaDB, built in) `rpl_semi_sync_slave_enabled`,
    /// `rpl_semi_sync_master_wait_point`, `_timeout` and `_wait_no_slave`. The source side
    /// (`rpl_semi_sync_source_enabled` / `rpl_semi_sync_master_enabled`) is turned on by the
    /// runtime on the primary only: a replica with it on would hold its applier's commits.
    /// MariaDB always waits for one replica; the cluster needs at least `ack_replicas`
    /// replicas.
    pub fn with_semi_sync(mut self, ack_replicas: u32) -> Self {
        self.semi_sync = Some(ack_replicas);
        self
    }

    /// The same spec with the replicas' network timeout set to `seconds` (at least 1): a
    /// receiver whose source stops answering (frozen, cut off) gives up on the connection
    /// after that long and reconnects every second (`SOURCE_CONNECT_RETRY` /
    /// `MASTER_CONNECT_RETRY` 1); the source's heartbeat, half of it, keeps an idle
    /// connection from timing out. A source that dies (its connections closed) is noticed at
    /// once whatever the setting.
    pub fn with_replica_net_timeout(mut self, seconds: u32) -> Self {
        self.replica_net_timeout = Some(seconds);
        self
    }

    /// The same spec with these first-revision variables.
    pub fn with_config(mut self, config: BTreeMap<String, String>) -> Self {
        self.config = config;
        self
    }

    /// The same spec with the supervisor on or off.
    pub fn supervised(mut self, on: bool) -> Self {
        self.supervise = on;
        self
    }
}

/// How a configuration change reaches the instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Set online on every instance (`SET GLOBAL`), no restart.
    Online,
    /// A rolling restart onto the new my.cnf, the primary behind a switchover.
    Restart,
}

/// What a server process is doing, as the runtime and the supervisor see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Started and not being changed.
    Running,
    /// Being restarted (or recovered) by the engine or the supervisor.
    Changing,
    /// Died without being asked to (or failed to start); the supervisor
    /// tries again at `retry_at`.
    Crashed { retry_at: Instant, failures: u32 },
}

pub(crate) struct Node {
    pub(crate) phase: Mutex<Phase>,
    /// Set while the engine (not the supervisor) stops or starts the process.
    pub(crate) by_engine: std::sync::atomic::AtomicBool,
    /// Held while a process is stopped or started, by the engine or the supervisor.
    pub(crate) lifecycle: Arc<tokio::sync::Mutex<()>>,
    /// The supervisor's own handle (the runtime has its own).
    pub(crate) handle: switchyard_mysql::Instance,
    /// The instance's agent: the handle that holds its fence (MariaDB's backup
    /// lock lives on one of its connections). It belongs to the cluster, as
    /// the in-pod agent belongs to the pod, so a fence outlives the engine that
    /// set it; every engine's runtime fences and unfences through it.
    pub(crate) agent: switchyard_mysql::Instance,
    /// Whether the source side of semi-synchronous replication was last turned on here
    /// (see [`crate::semisync`]): the instance then starts with it on, so a primary that
    /// crashed and starts again acknowledges no commit, privileged or not, before the
    /// engine has judged it.
    pub(crate) semi_sync_source: std::sync::atomic::AtomicBool,
}

impl Node {
    pub(crate) fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }
}

/// What the cluster's handles share: the processes, the router, the state
/// file and the timeline.
pub(crate) struct Shared {
    pub(crate) router: Router,
    /// Whether the cluster is a Galera cluster (every node a full member;
    /// the router's primary endpoint picks the one writer).
    pub(crate) galera: bool,
    pub(crate) state: StateFile,
    pub(crate) flavor: Flavor,
    pub(crate) nodes: Vec<Node>,
    pub(crate) timeline: Arc<Timeline>,
    pub(crate) startup_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    supervise: std::sync::atomic::AtomicBool,
    /// The supervisor's starts in flight (joined by [`LocalCluster::stop_supervisor`]).
    restarts: Mutex<Vec<JoinHandle<()>>>,
    // Last, so the processes are stopped after everything that talks to them.
    pub(crate) testbed: switchyard_testbed::Cluster,
}

/// A running local cluster. Dropping it stops the supervisor, the router and
/// every server process (once the runtimes made from it are gone too). Call
/// [`LocalCluster::stop_supervisor`] before the async runtime it runs on shuts
/// down: a start the supervisor has in flight needs that runtime.
pub struct LocalCluster {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("state", &self.shared.state.path())
            .field("instances", &self.shared.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(s) = self
            .supervisor
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            s.abort();
        }
    }
}

/// The runtime's clock: milliseconds since the Unix epoch.
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The plan's flavor of a testbed server kind.
pub fn flavor_of(kind: ServerKind) -> Flavor {
    match kind.flavor() {
        switchyard_testbed::Flavor::Mysql => Flavor::Mysql,
        _ => Flavor::Mariadb,
    }
}

/// The testbed server that runs `version` of `flavor`.
pub fn kind_for(flavor: Flavor, version: Version) -> Result<ServerKind> {
    let tb = match flavor {
        Flavor::Mysql => switchyard_testbed::Flavor::Mysql,
        Flavor::Mariadb => switchyard_testbed::Flavor::Mariadb,
    };
    ServerKind::from_series(tb, &format!("{}.{}", version.major, version.minor)).ok_or_else(|| {
        Error::UnsupportedVersion {
            flavor: flavor.to_string(),
            version: version.to_string(),
            detail: "the testbed runs MariaDB 10.5, 10.11 and 11.8 and MySQL 9.7".into(),
        }
    })
}

/// Fetches `kind` if needed and returns the server version it runs.
pub async fn server_version(kind: ServerKind) -> Result<Version> {
    let bins = tokio::task::spawn_blocking(move || switchyard_testbed::binaries(kind))
        .await
        .map_err(|e| Error::Invalid(format!("fetching {kind} panicked: {e}")))?
        .map_err(Error::testbed(format!("fetch {kind}")))?;
    Version::parse(bins.version()).map_err(|e| Error::UnsupportedVersion {
        flavor: flavor_of(kind).to_string(),
        version: bins.version().to_owned(),
        detail: e.to_string(),
    })
}

/// The my.cnf lines of a revision's variables, in key order.
pub fn render_config(config: &BTreeMap<String, String>) -> Vec<String> {
    config.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

impl LocalCluster {
    /// Fetches the server if needed, starts the cluster (instance 0 the
    /// writable primary, the others replicating from it) with the spec's
    /// variables as revision 1, starts the router with its primary endpoint
    /// on instance 0, writes the state file and starts the supervisor.
    pub async fn start(spec: ClusterSpec) -> Result<LocalCluster> {
        Self::start_on(spec, None).await
    }

    /// Starts several clusters (a fleet) on the testbed's server slots reserved all at once:
    /// clusters started one by one would each hold their slots while waiting for the next
    /// one's, and two such processes could wait on each other for good.
    pub async fn start_all(specs: Vec<ClusterSpec>) -> Result<Vec<LocalCluster>> {
        let total = specs.iter().map(|s| s.instances).sum();
        let mut lease = switchyard_testbed::slots::acquire(total)
            .await
            .map_err(Error::testbed(format!(
                "reserve {total} server slots for {} clusters",
                specs.len()
            )))?;
        let mut clusters = Vec::with_capacity(specs.len());
        for spec in specs {
            let part = lease
                .split_off(spec.instances)
                .ok_or_else(|| Error::Invalid(format!("the lease of {total} slots ran short")))?;
            clusters.push(Self::start_on(spec, Some(part)).await?);
        }
        Ok(clusters)
    }

    async fn start_on(
        spec: ClusterSpec,
        lease: Option<switchyard_testbed::slots::SlotLease>,
    ) -> Result<LocalCluster> {
        let flavor = flavor_of(spec.kind);
        let config = crate::semisync::first_revision_config(&spec)?;
        let version = server_version(spec.kind).await?;
        let options = Options {
            extra_cnf: render_config(&config),
        };
        let galera = spec.kind == ServerKind::Galera;
        if galera && spec.semi_sync.is_some() {
            return Err(Error::Invalid(
                "a Galera cluster replicates synchronously: leave semi-synchronous \
                 replication out of its spec"
                    .into(),
            ));
        }
        if galera && spec.server_user.is_some() {
            return Err(Error::Invalid(
                "a Galera cluster's servers run as the testbed's own Galera user: leave \
                 with_server_user out of its spec"
                    .into(),
            ));
        }
        let kinds = vec![spec.kind; spec.instances];
        let started = if galera {
            if lease.is_some() {
                return Err(Error::Invalid(
                    "Galera clusters start one at a time, not in a shared lease of server \
                     slots: start it with LocalCluster::start"
                        .into(),
                ));
            }
            switchyard_testbed::galera_with(spec.instances, &options).await
        } else {
            match (lease, &spec.server_user) {
                (Some(lease), user) => {
                    switchyard_testbed::replication_leased(&kinds, &options, user.as_deref(), lease)
                        .await
                }
                (None, Some(user)) => {
                    switchyard_testbed::replication_as(&kinds, &options, user).await
                }
                (None, None) => switchyard_testbed::replication_with(&kinds, &options).await,
            }
        };
        let testbed = started.map_err(Error::testbed(format!(
            "start {} instances of {}",
            spec.instances, spec.kind
        )))?;
        let backends: Vec<(u32, SocketAddr)> = testbed
            .instances()
            .iter()
            .zip(0u32..)
            .map(|(i, o)| (o, SocketAddr::from(([127, 0, 0, 1], i.port()))))
            .collect();
        let router = Router::start(backends)
            .await
            .map_err(|source| Error::Router {
                what: "start the router".into(),
                source: Box::new(source),
            })?;
        router
            .set_primary(Some(0))
            .await
            .map_err(|source| Error::Router {
                what: "point the primary endpoint at instance 0".into(),
                source: Box::new(source),
            })?;
        let mut history = History::new(flavor);
        let revision = history
            .ensure(flavor, version, &config, now())
            .0
            .revision
            .clone();
        let state = StateFile::in_dir(testbed.dir());
        state.create(&StateDoc {
            record: Record::default(),
            cluster: ClusterState {
                flavor,
                primary: 0,
                instances: (0..ordinal(spec.instances))
                    .map(|o| {
                        (
                            o,
                            InstanceState {
                                revision: revision.clone(),
                                fenced: false,
                            },
                        )
                    })
                    .collect(),
                history,
                schema: crate::state::SchemaState::default(),
                semi_sync: spec.semi_sync,
                fleet: crate::fleet::MemberSlot::default(),
            },
        })?;
        let operator = operator_credentials(testbed.credentials());
        let nodes = testbed
            .instances()
            .iter()
            .zip(0u32..)
            .map(|(i, o)| Node {
                phase: Mutex::new(Phase::Running),
                by_engine: std::sync::atomic::AtomicBool::new(false),
                lifecycle: Arc::new(tokio::sync::Mutex::new(())),
                handle: mysql_handle(o, i.port(), &operator, true),
                agent: mysql_handle(o, i.port(), &operator, false),
                semi_sync_source: std::sync::atomic::AtomicBool::new(false),
            })
            .collect();
        let shared = Arc::new(Shared {
            router,
            galera,
            state,
            flavor,
            nodes,
            timeline: Arc::new(Timeline::new()),
            startup_timeout: spec.startup_timeout,
            shutdown_timeout: spec.shutdown_timeout,
            supervise: std::sync::atomic::AtomicBool::new(spec.supervise),
            restarts: Mutex::new(Vec::new()),
            testbed,
        });
        if spec.semi_sync.is_some() {
            shared.start_semi_sync(0).await?;
        }
        let supervisor = tokio::spawn(supervise(Arc::downgrade(&shared)));
        Ok(LocalCluster {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The testbed cluster (server processes, accounts, folders).
    pub fn testbed(&self) -> &switchyard_testbed::Cluster {
        &self.shared.testbed
    }

    /// The router in front of the cluster.
    pub fn router(&self) -> &Router {
        &self.shared.router
    }

    /// The router's endpoints, for a load.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints::from(&self.shared.router)
    }

    /// The cluster's accounts.
    pub fn credentials(&self) -> &Credentials {
        self.shared.testbed.credentials()
    }

    /// The server flavor.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// How many instances.
    pub fn len(&self) -> usize {
        self.shared.nodes.len()
    }

    /// Whether the cluster has no instance (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.shared.nodes.is_empty()
    }

    /// The timeline of everything that happened to the cluster.
    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.shared.timeline
    }

    /// The state file.
    pub fn state(&self) -> &StateFile {
        &self.shared.state
    }

    /// The revision history, oldest first.
    pub fn history(&self) -> Result<History> {
        Ok(self.shared.state.read()?.cluster.history)
    }

    /// A topology-client handle on instance `ordinal` as the operator account.
    pub fn handle(&self, ordinal: u32) -> Result<switchyard_mysql::Instance> {
        let i = self.testbed_instance(ordinal)?;
        Ok(mysql_handle(
            ordinal,
            i.port(),
            &operator_credentials(self.credentials()),
            false,
        ))
    }

    /// The ordinal the runtime made primary.
    pub fn primary(&self) -> Result<u32> {
        Ok(self.shared.state.read()?.cluster.primary)
    }

    /// Every instance as a target of the ledger's check, read as the operator.
    pub fn check_targets(&self) -> Vec<CheckTarget> {
        self.testbed()
            .instances()
            .iter()
            .zip(0u32..)
            .map(|(i, o)| CheckTarget {
                name: format!("instance {o}"),
                options: i.connect_options(&self.credentials().operator),
            })
            .collect()
    }

    /// Stops the supervisor for good and waits for the starts it has in
    /// flight to end (each bounded by the startup timeout), so no start is
    /// left running when the cluster or its async runtime goes away. What is
    /// down stays down afterwards.
    pub async fn stop_supervisor(&self) {
        self.set_supervised(false);
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(s) = supervisor {
            s.abort();
            // Ends at its next await; a start it was spawning is then in the list below.
            let _ = s.await;
        }
        loop {
            let in_flight = std::mem::take(
                &mut *self
                    .shared
                    .restarts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if in_flight.is_empty() {
                return;
            }
            for task in in_flight {
                if let Err(e) = task.await
                    && e.is_panic()
                {
                    tracing::warn!(error = %e, "a start by the supervisor panicked");
                }
            }
        }
    }

    /// Turns the supervisor on or off (a scenario that wants the engine's
    /// own recovery turns it off).
    pub fn set_supervised(&self, on: bool) {
        self.shared
            .supervise
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn testbed_instance(&self, ordinal: u32) -> Result<&switchyard_testbed::Instance> {
        self.shared.instance(ordinal)
    }

    /// A new revision running `kind` with the latest revision's variables,
    /// recorded in the history, and the target to roll it out (a rolling
    /// restart; the version rules are the engine's to check).
    pub async fn upgrade_target(&self, kind: ServerKind) -> Result<Target> {
        self.upgrade_target_with(kind, &[]).await
    }

    /// Like [`LocalCluster::upgrade_target`], with `set` added to the
    /// variables in the same revision (a variable the new version needs,
    /// such as MariaDB 11.8's `innodb_buffer_pool_size_max`).
    ///
    /// # Errors
    /// [`Error::UpgradeRefused`], with nothing recorded, when the revision's
    /// configuration names an option the new version removed or accounts use
    /// an authentication plugin it removed (switchyard-config's upgrade
    /// pre-flight).
    pub async fn upgrade_target_with(
        &self,
        kind: ServerKind,
        set: &[(&str, &str)],
    ) -> Result<Target> {
        if flavor_of(kind) != self.shared.flavor {
            return Err(Error::Invalid(format!(
                "cannot move a {} cluster to {kind}",
                self.shared.flavor
            )));
        }
        let version = server_version(kind).await?;
        let flavor = self.shared.flavor;
        let mut config = latest(&self.history()?)?.config.clone();
        for (k, v) in set {
            config.insert((*k).to_owned(), (*v).to_owned());
        }
        self.shared.preflight_upgrade(version, &config).await?;
        let entry = self.shared.state.update_cluster(|c| {
            let mut config = latest(&c.history)?.config.clone();
            for (k, v) in set {
                config.insert((*k).to_owned(), (*v).to_owned());
            }
            Ok(c.history.ensure(flavor, version, &config, now()).0.clone())
        })?;
        Ok(Target::new(entry.revision, entry.version))
    }

    /// A new revision with `set` added to the latest revision's variables,
    /// recorded in the history, and the target to roll it out: online
    /// (instances on the latest revision set the variables without a
    /// restart) or by rolling restart.
    pub fn config_target(&self, set: &[(&str, &str)], apply: Apply) -> Result<Target> {
        let flavor = self.shared.flavor;
        let (from, entry) = self.shared.state.update_cluster(|c| {
            let from = latest(&c.history)?.clone();
            let mut config = from.config.clone();
            for (k, v) in set {
                config.insert((*k).to_owned(), (*v).to_owned());
            }
            let entry = c
                .history
                .ensure(flavor, from.version, &config, now())
                .0
                .clone();
            Ok((from, entry))
        })?;
        let online =
            (apply == Apply::Online && from.revision.hash != entry.revision.hash).then(|| {
                OnlineChange {
                    from_hash: from.revision.hash.clone(),
                    variables: set
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                }
            });
        let mut target = Target::new(entry.revision, entry.version);
        target.online = online;
        Ok(target)
    }
}

fn latest(history: &History) -> Result<&RevisionEntry> {
    history
        .latest()
        .ok_or_else(|| Error::Invalid("the cluster has no revision yet".into()))
}

pub(crate) fn ordinal(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

pub(crate) fn operator_credentials(c: &Credentials) -> MysqlCredentials {
    MysqlCredentials::new(c.operator.user(), c.operator.password())
}

pub(crate) fn replication_credentials(c: &Credentials, flavor: Flavor) -> ReplicationCredentials {
    ReplicationCredentials {
        // The testbed's MySQL replicas use TLS to their source.
        ssl: flavor == Flavor::Mysql,
        ..ReplicationCredentials::new(c.replication.user(), c.replication.password())
    }
}

/// A topology-client handle; `quick` shortens its timeouts (the supervisor's
/// and the monitor's, which must not hang on a paused server).
pub(crate) fn mysql_handle(
    ordinal: u32,
    port: u16,
    operator: &MysqlCredentials,
    quick: bool,
) -> switchyard_mysql::Instance {
    let h = switchyard_mysql::Instance::new(
        format!("instance {ordinal}"),
        InstanceAddr::new("127.0.0.1", port),
        operator.clone(),
    );
    if quick {
        h.with_timeouts(switchyard_mysql::Timeouts {
            connect: Duration::from_secs(1),
            statement: Duration::from_secs(5),
            ..switchyard_mysql::Timeouts::default()
        })
    } else {
        h
    }
}

/// What [`Shared::fence_or_stop`] did.
#[derive(Debug)]
pub(crate) enum FenceOutcome {
    /// The agent fenced the server.
    Fenced,
    /// The server was stopped with `SIGKILL` instead, for this reason.
    Stopped(Box<switchyard_mysql::Error>),
}

impl Shared {
    pub(crate) fn instance(&self, ordinal: u32) -> Result<&switchyard_testbed::Instance> {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.testbed.instances().get(i))
            .ok_or(Error::NoSuchInstance(ordinal))
    }

    /// Fences `ordinal` through its agent (bounded by `deadline`, when given). A server the
    /// fence finds with commits waiting for a semi-synchronous acknowledgement that no replica
    /// can give ([`switchyard_mysql::Error::UnacknowledgeableCommits`]: a failed primary
    /// running again after the failover detached its replicas) is stopped at once with
    /// `SIGKILL` instead: a dead server reports nothing to a client, while ending those
    /// commits by SQL could report them done. It starts again read-only and fenced (its
    /// state says fenced), and crash recovery keeps what was in its binary log: transactions
    /// the failover's judgement of the old primary finds and quarantines it for. Returns
    /// whether it was stopped.
    pub(crate) async fn fence_or_stop(
        &self,
        ordinal: u32,
        deadline: Option<Instant>,
    ) -> Result<FenceOutcome> {
        let agent = &self.node(ordinal)?.agent;
        let fenced = match deadline {
            Some(d) => agent.fence_by(d).await,
            None => agent.fence().await,
        };
        match fenced {
            Ok(_) => Ok(FenceOutcome::Fenced),
            Err(e @ switchyard_mysql::Error::UnacknowledgeableCommits { .. }) => {
                let instance = self.instance(ordinal)?;
                if instance.is_running() {
                    instance.kill9().map_err(|source| Error::Testbed {
                        what: format!("stop instance {ordinal} at once"),
                        source: Box::new(source),
                    })?;
                }
                agent.forget_connection();
                agent.release_fence_lock().await;
                tracing::warn!(
                    instance = ordinal,
                    reason = %e,
                    "stopped with SIGKILL instead of fenced: its commits waiting for an \
                     acknowledgement are reported to no client"
                );
                Ok(FenceOutcome::Stopped(Box::new(e)))
            }
            Err(e) => Err(Error::sql(ordinal)(e)),
        }
    }

    pub(crate) fn node(&self, ordinal: u32) -> Result<&Node> {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.nodes.get(i))
            .ok_or(Error::NoSuchInstance(ordinal))
    }

    /// The ordinal of the instance listening on `port`.
    pub(crate) fn ordinal_of_port(&self, port: u16) -> Option<u32> {
        self.testbed
            .instances()
            .iter()
            .zip(0u32..)
            .find(|(i, _)| i.port() == port)
            .map(|(_, o)| o)
    }

    /// The history entry of the revision instance `ordinal` runs.
    pub(crate) fn current_entry(&self, ordinal: u32) -> Result<RevisionEntry> {
        let cluster = self.state.read()?.cluster;
        let revision = cluster
            .instances
            .get(&ordinal)
            .ok_or(Error::NoSuchInstance(ordinal))?
            .revision
            .clone();
        cluster
            .history
            .by_hash(&revision.hash)
            .cloned()
            .ok_or(Error::UnknownRevision {
                hash: revision.hash,
            })
    }

    /// The upgrade pre-flight of a move to `to` with `config`, from the oldest
    /// version an instance runs: options the target removed named in
    /// `config`, and accounts (read on the primary) on an authentication
    /// plugin it removed. Nothing to check when no instance runs an older
    /// version.
    pub(crate) async fn preflight_upgrade(
        &self,
        to: Version,
        config: &BTreeMap<String, String>,
    ) -> Result<()> {
        let cluster = self.state.read()?.cluster;
        let from = cluster
            .instances
            .values()
            .filter_map(|i| cluster.history.by_hash(&i.revision.hash))
            .map(|e| e.version)
            .min();
        let Some(from) = from.filter(|from| *from < to) else {
            return Ok(());
        };
        let primary = cluster.primary;
        let accounts = self
            .node(primary)?
            .handle
            .accounts()
            .await
            .map_err(Error::sql(primary))?
            .into_iter()
            .map(|a| switchyard_config::Account {
                user: a.user,
                host: a.host,
                plugin: a.plugin,
            })
            .collect::<Vec<_>>();
        switchyard_config::preflight_upgrade(self.flavor, from, to, config, &accounts)
            .map_err(|refusal| Error::UpgradeRefused(Box::new(refusal)))
    }

    /// Starts the stopped process of `ordinal` on `entry` and waits (bounded
    /// by the startup timeout) until it accepts connections.
    pub(crate) async fn start_on(
        self: &Arc<Self>,
        ordinal: u32,
        entry: &RevisionEntry,
        by: StartedBy,
    ) -> Result<()> {
        // A Galera node starts again as a Galera node and joins the others.
        let kind = if self.galera {
            ServerKind::Galera
        } else {
            kind_for(self.flavor, entry.version)?
        };
        let mut lines = render_config(&entry.config);
        if let Some(line) = crate::semisync::source_line(self, ordinal)? {
            lines.push(line);
        }
        if let Some(line) = self.galera_donor_line(ordinal)? {
            lines.push(line);
        }
        let timeout = self.startup_timeout;
        let result = self
            .control(ordinal, move |instance| {
                Box::pin(async move {
                    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                    tokio::time::timeout(timeout, instance.start_with(kind, &refs)).await
                })
            })
            .await?;
        let result = match result {
            Ok(r) => r.map_err(Error::testbed(format!(
                "start instance {ordinal} on {kind} ({})",
                entry.revision
            ))),
            Err(_) => Err(Error::Timeout {
                ordinal,
                what: "the server accepting connections after its start",
                waited: timeout,
            }),
        };
        self.timeline.push(Event::Started {
            ordinal,
            revision: entry.revision.clone(),
            by,
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }

    /// On Galera, the `wsrep_sst_donor` line of a node that starts: the
    /// lowest-numbered node that is neither the node itself nor the writer,
    /// with a trailing comma so that Galera falls back to any other node when
    /// that one cannot serve. The testbed's rsync SST blocks its donor's
    /// commits for the copy, and a transfer cut short by the joiner's crash
    /// holds its donor until the transfer fails (measured: the writes
    /// stalled 16 s when the writer was the donor of a node killed in its
    /// join); on a non-writer donor the writes go on. None off Galera, or
    /// when no such node exists.
    fn galera_donor_line(&self, ordinal: u32) -> Result<Option<String>> {
        if !self.galera {
            return Ok(None);
        }
        let writer = self.state.read()?.cluster.primary;
        (0..self::ordinal(self.nodes.len()))
            .find(|o| *o != ordinal && *o != writer)
            .map(|o| Ok(format!("wsrep-sst-donor={},", self.instance(o)?.name())))
            .transpose()
    }

    /// Shuts `ordinal` down with SIGTERM (a normal, fast shutdown) and waits
    /// until the process exits.
    pub(crate) async fn stop_process(self: &Arc<Self>, ordinal: u32) -> Result<()> {
        self.control(ordinal, |instance| Box::pin(instance.stop()))
            .await?
            .map_err(Error::testbed(format!("shut instance {ordinal} down")))
    }

    /// Runs a testbed process control on a blocking thread: the testbed's
    /// start and stop futures wait with async closures, which the compiler
    /// cannot prove `Send`, so they cannot run on a spawned task or in the
    /// engine's runtime calls directly.
    async fn control<T, F>(self: &Arc<Self>, ordinal: u32, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a switchyard_testbed::Instance,
            )
                -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>
            + Send
            + 'static,
    {
        self.instance(ordinal)?;
        let shared = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let instance = shared.instance(ordinal)?;
            Ok(runtime.block_on(f(instance)))
        })
        .await
        .map_err(|e| Error::Invalid(format!("controlling instance {ordinal} panicked: {e}")))?
    }

    /// What follows every start: `mariadb-upgrade` after a MariaDB major
    /// upgrade from `upgraded_from`, then, once the operator account can
    /// observe the server, replication resumed on a replica, or writes
    /// allowed again on a primary that is not fenced.
    pub(crate) async fn after_start(
        &self,
        ordinal: u32,
        handle: &switchyard_mysql::Instance,
        upgraded_from: Option<Version>,
        running: Version,
    ) -> Result<()> {
        handle.forget_connection();
        if self.flavor == Flavor::Mariadb
            && upgraded_from.is_some_and(|from| from.series() != running.series())
        {
            let started = Instant::now();
            let result = self
                .instance(ordinal)?
                .mariadb_upgrade()
                .await
                .map_err(Error::testbed(format!(
                    "run mariadb-upgrade on instance {ordinal}"
                )));
            self.timeline.push(Event::Upgraded {
                ordinal,
                took: started.elapsed(),
                error: result.as_ref().err().map(ToString::to_string),
            });
            result?;
        }
        let deadline = tokio::time::Instant::now() + self.startup_timeout;
        let observation = loop {
            match handle.observe().await {
                Ok(o) => break o,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::sql(ordinal)(e));
                }
                Err(_) => tokio::time::sleep(crate::runtime::POLL).await,
            }
        };
        // A Galera node joins the cluster on its own (the start waits until it is Synced):
        // no replication to resume, no fence, every node writable.
        if self.galera {
            return Ok(());
        }
        let state = self.state.read()?;
        let cluster = state.cluster;
        let fenced = cluster.instances.get(&ordinal).is_some_and(|i| i.fenced);
        // A lock the agent held on the process before this start is gone.
        let agent = &self.node(ordinal)?.agent;
        agent.forget_connection();
        agent.release_fence_lock().await;
        if fenced {
            // An instance the engine fenced comes back fenced (by its agent,
            // whoever started it) and out of replication: the engine repoints
            // it once it has checked what it holds.
            // Stopped again (a privileged client's commit reached the semi-synchronous
            // wait before the fence): the start failed, the engine recovers it again.
            if let FenceOutcome::Stopped(e) = self.fence_or_stop(ordinal, None).await? {
                return Err(Error::Sql { ordinal, source: e });
            }
            return Ok(());
        }
        if cluster.primary == ordinal {
            // A primary of a semi-synchronous cluster waits for acknowledgements before it
            // takes a write (its my.cnf, as every instance's, leaves the source side off).
            self.set_semi_sync_source(
                ordinal,
                true,
                std::time::Instant::now() + Duration::from_secs(10),
            )
            .await?;
            if !observation.is_writable() {
                // A primary that came back without what the engine saw it execute lost
                // data: it stays read-only, and the engine halts on it.
                let lost = state.record.primary_position.as_ref().and_then(|p| {
                    (p.ordinal == ordinal)
                        .then(|| p.gtid.subtract(observation.gtid.executed()).ok())
                        .flatten()
                        .filter(|missing| !missing.is_empty())
                });
                match lost {
                    Some(missing) => tracing::warn!(
                        instance = ordinal,
                        %missing,
                        "the primary came back without transactions it had executed; it stays read-only"
                    ),
                    None => handle.unfence().await.map_err(Error::sql(ordinal))?,
                }
            }
        } else if let Some(r) = observation.replication.as_ref().filter(|r| !r.is_running()) {
            // A replica still configured to follow a primary that was failed over (held
            // out by the failover for its older version, then restarted for its upgrade)
            // stays out of replication: started, it would receive what that primary
            // wrote after the failover's isolation, which the new one lacks. The engine
            // repoints it once it has judged what it holds.
            if self
                .ordinal_of_port(r.source_port)
                .is_some_and(|s| state.record.failed_over.contains(&s))
            {
                return Ok(());
            }
            if let Some(pos) = slave_pos_after_crash(&observation) {
                // See `slave_pos_after_crash`: without this the replica asks its source
                // again for a transaction its binary log already holds, and gtid_strict_mode
                // stops it with error 1950.
                tracing::warn!(
                    instance = ordinal,
                    gtid_slave_pos = %pos.0,
                    repaired = %pos.1,
                    "the replica's binary log holds replicated transactions its gtid_slave_pos \
                     lacks (a crash between the two); carrying them over before replication starts"
                );
                handle
                    .set_slave_pos(&pos.1)
                    .await
                    .map_err(Error::sql(ordinal))?;
            }
            handle
                .start_replication()
                .await
                .map_err(Error::sql(ordinal))?;
        }
        Ok(())
    }

    /// Starts a crashed (or stopped) process again on its current revision;
    /// when it runs already, only the steps after a start are done.
    pub(crate) async fn recover_process(
        self: &Arc<Self>,
        ordinal: u32,
        handle: &switchyard_mysql::Instance,
        by: StartedBy,
    ) -> Result<()> {
        let entry = self.current_entry(ordinal)?;
        if !self.instance(ordinal)?.is_running() {
            self.start_on(ordinal, &entry, by).await?;
        }
        self.after_start(ordinal, handle, None, entry.version).await
    }

    /// The instances out of service by the engine's doing: drained from the
    /// read pool, fenced, or being restarted by the engine.
    pub(crate) fn out_of_service(&self) -> std::collections::BTreeSet<u32> {
        let fenced: Vec<u32> = self
            .state
            .read()
            .map(|d| {
                d.cluster
                    .instances
                    .iter()
                    .filter(|(_, i)| i.fenced)
                    .map(|(o, _)| *o)
                    .collect()
            })
            .unwrap_or_default();
        self.nodes
            .iter()
            .zip(0u32..)
            .filter(|(node, o)| {
                self.router.is_drained(*o).unwrap_or(false)
                    || fenced.contains(o)
                    || node.by_engine.load(std::sync::atomic::Ordering::SeqCst)
            })
            .map(|(_, o)| o)
            .collect()
    }

    /// Sets the phase from whether the process runs (after a change).
    pub(crate) fn settle_phase(&self, ordinal: u32, failures: u32) {
        let Ok(node) = self.node(ordinal) else { return };
        let running = self.instance(ordinal).is_ok_and(|i| i.is_running());
        node.set_phase(if running {
            Phase::Running
        } else {
            Phase::Crashed {
                retry_at: Instant::now() + backoff(failures),
                failures,
            }
        });
    }
}

/// The `gtid_slave_pos` a MariaDB replica must resume from after a crash, when it is not the
/// one the server loaded: `(loaded, repaired)`, or `None` when nothing needs repairing.
///
/// A replica writes each replicated transaction to its binary log (`log_slave_updates`) and
/// records its GTID in `mysql.gtid_slave_pos`. For transactional row changes both happen in
/// one transaction, made consistent by crash recovery. For DDL on MariaDB before 10.6 (no
/// atomic DDL) the statement is executed and binary-logged first and its GTID recorded in
/// `mysql.gtid_slave_pos` afterwards, in a transaction of its own: a `kill -9` in between
/// leaves the binary log one transaction ahead of `gtid_slave_pos` (seen here on 10.5 with the
/// load's `CREATE TABLE`: the restarted replica asked for `0-S-11` again, and
/// `gtid_strict_mode` stopped it with error 1950, "out-of-order sequence number"). The binary
/// log is what crash recovery trusts, so a domain whose last binary-logged GTID is newer than
/// `gtid_slave_pos` and came from another server (never this replica's own, which would be an
/// errant write and must stay visible) is carried over.
fn slave_pos_after_crash(
    observation: &switchyard_mysql::Observation,
) -> Option<(
    switchyard_plan::gtid::MariadbGtidPos,
    switchyard_plan::gtid::MariadbGtidPos,
)> {
    use switchyard_plan::gtid::GtidSet;
    let switchyard_mysql::GtidState::Mariadb {
        binlog_pos: GtidSet::Mariadb(binlog),
        slave_pos: GtidSet::Mariadb(slave),
        ..
    } = &observation.gtid
    else {
        return None;
    };
    let mut repaired = slave.clone();
    for g in binlog.iter() {
        let behind = slave.get(g.domain).is_none_or(|s| s.seq < g.seq);
        if behind && g.server_id != observation.server_id {
            repaired.insert(g);
        }
    }
    (&repaired != slave).then(|| (slave.clone(), repaired))
}

/// The supervisor's delay before its next start attempt after `failures` failed ones.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(10))
}

/// The interval between the supervisor's looks at the processes.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);

async fn supervise(weak: Weak<Shared>) {
    let mut ticker = tokio::time::interval(SUPERVISE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = weak.upgrade() else { return };
        for (node, o) in shared.nodes.iter().zip(0u32..) {
            let running = shared.instance(o).is_ok_and(|i| i.is_running());
            let phase = node.phase();
            match phase {
                Phase::Running if !running => {
                    node.set_phase(Phase::Crashed {
                        retry_at: Instant::now(),
                        failures: 0,
                    });
                    let status = shared
                        .instance(o)
                        .ok()
                        .and_then(|i| i.last_exit())
                        .map(|s| s.to_string());
                    shared.timeline.push(Event::Crashed { ordinal: o, status });
                }
                Phase::Crashed { retry_at, failures }
                    if Instant::now() >= retry_at
                        && shared.supervise.load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    let Ok(guard) = node.lifecycle.clone().try_lock_owned() else {
                        continue;
                    };
                    node.set_phase(Phase::Changing);
                    let shared2 = Arc::clone(&shared);
                    let task = tokio::spawn(async move {
                        let shared = shared2;
                        let _guard = guard;
                        let Ok(node) = shared.node(o) else { return };
                        let handle = node.handle.clone();
                        let result = shared
                            .recover_process(o, &handle, StartedBy::Supervisor)
                            .await;
                        if let Err(e) = &result {
                            tracing::warn!(instance = o, error = %e, "the supervisor could not start the instance");
                        }
                        shared.settle_phase(o, if result.is_ok() { 0 } else { failures + 1 });
                    });
                    let mut restarts = shared
                        .restarts
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    restarts.retain(|t| !t.is_finished());
                    restarts.push(task);
                }
                _ => {}
            }
        }
    }
}
