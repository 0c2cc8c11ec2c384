//! [`LocalRuntime`]: the engine's [`ClusterRuntime`] over a [`LocalCluster`].
//!
//! - **observe**: every instance through the topology client; the role from
//!   the runtime's own record of the primary (which the router follows), the
//!   revision from what the runtime started the instance with, the health
//!   from the process (starting, crashed) and the server (unreachable,
//!   replication stopped, lagging, ready).
//! - **restart**: for a version change first the upgrade pre-flight
//!   (switchyard-config: options the target removed, accounts on a removed
//!   authentication plugin; refused before anything stops), then a clean
//!   shutdown through SQL (slow when asked), a start on
//!   the revision's server version and rendered my.cnf, `mariadb-upgrade`
//!   after a MariaDB major upgrade, bounded by the startup timeout, and
//!   replication resumed on a replica. The old primary after a switchover
//!   has no source: the engine repoints it.
//! - **drain / undrain**: the router's read pool.
//! - **fence**: for the primary, first the long-transaction pre-check and a
//!   moment for its replicas to catch up; then the router's primary endpoint
//!   closed (its sessions with it), the instance taken out of the read pool,
//!   and the topology client's fence (read-only, `super_read_only` on MySQL,
//!   every client's connection killed, and on MariaDB the backup lock),
//!   through the instance's **agent**: a handle the cluster owns, as the
//!   in-pod agent owns the pod, so that a fence outlives the engine that set
//!   it (a new engine still fences again: a lock can die on its own). The
//!   observation reports an instance fenced only while its fence holds. A
//!   MariaDB server whose commits wait for a semi-synchronous acknowledgement
//!   that no replica can give (a failed primary running again) is stopped with
//!   SIGKILL instead (`Shared::fence_or_stop`): ending those commits by SQL
//!   could report them done. It starts again read-only and fenced.
//! - **demote**: the fenced old primary made a replica of the candidate,
//!   replication not started, fenced again.
//! - **unfence**: once no other instance takes writes, the instance made the
//!   writable primary again (a demotion's replication forgotten, fence and
//!   read-only lifted), in the state file and the router.
//! - **promote**: in a semi-synchronous cluster first the source side of
//!   semi-synchronous replication turned on (while the instance is still
//!   read-only: no commit on it is ever acknowledged without a replica), then
//!   the topology client's promotion (bounded by the switchover's deadline),
//!   the state file's primary, the router's primary endpoint, and every
//!   session to the old primary closed. Demote and repoint turn the source
//!   side off again (a replica with it on would hold its applier's commits).
//! - **detach / wait_received_applied** (a failover): the replica's receiver
//!   stopped, then its applier waited for until it executed what the
//!   receiver received (see `switchyard_mysql::failover`).
//! - **observe**, for failover: each replica's receiver as a `Link`
//!   (connected when its I/O thread reads `Yes`; received = executed plus
//!   relay log), and on the primary the number of replicas it waits for
//!   (`ack_replicas`) when its semi-synchronous replication is lossless
//!   (`AFTER_SYNC`, never falling back: a timeout of at least
//!   [`NEVER_FALLS_BACK`], waiting with no replica connected). A receiver
//!   that cannot reach its source reads `ReplicationStopped` with its error
//!   (2003 when the source is down, 2013 when the connection was lost), one
//!   stopped by a detach `ReplicationStopped` with errno 0.
//! - **apply_variables**: `SET GLOBAL` through the topology client (never
//!   `SET PERSIST`: the revision's my.cnf stays the one source of truth for
//!   restarts), and the instance's revision moved to the target.
//! - **run_ddl**: a schema change on one instance with the binary log off
//!   for the session (see [`crate::schema`]); `observe` reports the id of
//!   the last change each instance has, from the state file.
//! - **record**: the state file, with compare-and-swap on `seq`.
//!
//! Every operation is idempotent, and a runtime made afresh over the same
//! cluster (a new engine process) continues from the state file.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard_mysql::{IoThreadState, Observation, SourceAddr};
use switchyard_plan::decide::{SchemaTarget, WaitReason};
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, StepOutcome};
use switchyard_plan::record::{Intent, Record};
use switchyard_plan::topology::{
    GaleraState, Health, Instance, Link, Observed, Revision, Role, Timestamp, TopologyKind,
    WsrepState,
};
use switchyard_plan::versions::{Flavor, Version};
use tokio::task::JoinSet;

use crate::cluster::{
    FenceOutcome, LocalCluster, Phase, Shared, mysql_handle, now, operator_credentials,
    replication_credentials,
};
use crate::error::{Error, Result};
use crate::timeline::{Event, Op, StartedBy};

/// The shortest semi-synchronous timeout the observation reports as never falling back to
/// asynchronous replication (`Instance::ack_replicas`): an hour, far beyond any detection
/// and failover. The local cluster configures [`crate::SEMI_SYNC_TIMEOUT`].
pub const NEVER_FALLS_BACK: Duration = Duration::from_secs(3600);

/// The interval between two looks at a condition the runtime waits for.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How the runtime paces itself.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// The pause between two observations while the engine waits.
    pub poll: Duration,
    /// How long a drained instance's read sessions stay open.
    pub drain_grace: Duration,
    /// How long a schema change waits for a metadata lock before it gives up (the
    /// session's `lock_wait_timeout`), so that it never stalls the queries queued behind it
    /// for long; the engine retries after its backoff.
    pub ddl_lock_wait: Duration,
    /// How long a replica may take, after its schema change, to apply what the primary
    /// wrote meanwhile.
    pub ddl_catch_up: Duration,
    /// The longest a transaction may have been open on the primary when a switchover fences
    /// it: the fence waits (within the switchover's deadline) for longer ones to end, and the
    /// switchover is undone and retried if they do not. `None` does not wait.
    pub max_transaction_seconds: Option<u64>,
}

impl Default for RuntimeConfig {
    /// Observe every 100 ms while waiting; close a drained instance's read
    /// sessions at once; a schema change waits at most 10 s for a metadata
    /// lock, and a replica 120 s to catch up after it; a switchover fences the
    /// primary once no transaction on it has been open longer than 10 s.
    fn default() -> Self {
        RuntimeConfig {
            poll: Duration::from_millis(100),
            drain_grace: Duration::ZERO,
            ddl_lock_wait: Duration::from_secs(10),
            ddl_catch_up: Duration::from_secs(120),
            max_transaction_seconds: Some(10),
        }
    }
}

/// The engine's runtime over a [`LocalCluster`]. Each runtime has its own
/// connections, as a separate engine process would; fences are held by the
/// cluster's per-instance agents and outlive it.
pub struct LocalRuntime {
    shared: Arc<Shared>,
    handles: Mutex<Vec<switchyard_mysql::Instance>>,
    /// Handles with [`FAILING_CONNECT`], for instances that are failing.
    quick: Mutex<Vec<switchyard_mysql::Instance>>,
    /// How many observations in a row found each instance unreachable (a hint
    /// for the timeout of the next one, never a view of the cluster: that is the
    /// state file's).
    failing: Vec<AtomicU32>,
    config: RuntimeConfig,
}

/// The connect timeout for an instance that is failing (its last observation
/// could not reach it, or the engine's record says the primary fails or is being
/// failed over): a frozen server otherwise costs every observation, and every
/// fence tried on it, the full connect timeout (2 s), on the failover's critical
/// path. A server that answers on loopback logs in within milliseconds; one that
/// is merely slow is seen again with the full timeout once it answered.
pub const FAILING_CONNECT: Duration = Duration::from_millis(300);

/// Every how many observations of a failing instance one uses the full connect
/// timeout, so that a server that came back but logs in slowly (a loaded machine, a
/// debug build's TLS) is still seen.
const FULL_LOOK_EVERY: u32 = 5;

/// The longest one observation of the primary may take before it counts as a failed
/// check (connecting included): the failure detection's first step. A healthy primary on
/// loopback answers within milliseconds, even on a loaded machine; a frozen one would
/// otherwise take a cached connection's ping (0.5 s) and a whole connect timeout (2 s).
/// A primary that misses it is only a failed check: no failover without the replicas'
/// corroboration.
pub const PRIMARY_CHECK: Duration = Duration::from_secs(1);

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("state", &self.shared.state.path())
            .finish_non_exhaustive()
    }
}

impl LocalRuntime {
    /// A runtime over `cluster` with the default [`RuntimeConfig`].
    pub fn new(cluster: &LocalCluster) -> Self {
        Self::with_config(cluster, RuntimeConfig::default())
    }

    /// A runtime over `cluster`.
    pub fn with_config(cluster: &LocalCluster, config: RuntimeConfig) -> Self {
        let shared = Arc::clone(cluster.shared());
        let handles = (0..shared.nodes.len())
            .map(|i| new_handle(&shared, crate::cluster::ordinal(i)))
            .collect();
        let quick = (0..shared.nodes.len())
            .map(|i| quick_handle(&shared, crate::cluster::ordinal(i)))
            .collect();
        let failing = (0..shared.nodes.len()).map(|_| AtomicU32::new(0)).collect();
        LocalRuntime {
            shared,
            handles: Mutex::new(handles),
            quick: Mutex::new(quick),
            failing,
            config,
        }
    }

    /// The instance's agent handle, which holds its fence across engines.
    fn agent(&self, ordinal: u32) -> Result<switchyard_mysql::Instance> {
        Ok(self.shared.node(ordinal)?.agent.clone())
    }

    fn handle(&self, ordinal: u32) -> Result<switchyard_mysql::Instance> {
        pick(&self.handles, ordinal)
    }

    /// The handle to reach `ordinal` with: the quick one while it is failing (but for
    /// every [`FULL_LOOK_EVERY`]th look), and always while a recorded failover replaces
    /// it: every observation of the failover's steps waits on it, and one that answers
    /// only slowly is fenced all the same.
    fn observer(&self, ordinal: u32, record: &Record) -> Result<switchyard_mysql::Instance> {
        let misses = self.misses(ordinal);
        let failed_over = matches!(
            &record.intent,
            Some(switchyard_plan::record::Intent::Failover { from, .. }) if *from == ordinal
        );
        if failed_over
            || (self.failing(ordinal, record) && misses % FULL_LOOK_EVERY != FULL_LOOK_EVERY - 1)
        {
            pick(&self.quick, ordinal)
        } else {
            self.handle(ordinal)
        }
    }

    /// Whether `ordinal` is failing: its last observation could not reach it, or
    /// the record says it is the primary that fails its checks or is failed over
    /// (a new runtime knows it from the record alone).
    fn failing(&self, ordinal: u32, record: &Record) -> bool {
        let seen = self.misses(ordinal) > 0;
        let recorded = record
            .detection
            .as_ref()
            .is_some_and(|d| d.primary == ordinal)
            || matches!(
                &record.intent,
                Some(switchyard_plan::record::Intent::Failover { from, .. }) if *from == ordinal
            );
        seen || recorded
    }

    /// How many observations in a row found `ordinal` unreachable.
    fn misses(&self, ordinal: u32) -> u32 {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.failing.get(i))
            .map_or(0, |f| f.load(Ordering::SeqCst))
    }

    fn set_failing(&self, ordinal: u32, failing: bool) {
        if let Some(f) = usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.failing.get(i))
        {
            if failing {
                f.fetch_add(1, Ordering::SeqCst);
            } else {
                f.store(0, Ordering::SeqCst);
            }
        }
    }

    /// Replaces the handle on `ordinal` after its process was restarted, so
    /// nothing of the old process (a fence's lock session) is kept.
    fn renew_handle(&self, ordinal: u32) {
        let fresh = new_handle(&self.shared, ordinal);
        let quick = quick_handle(&self.shared, ordinal);
        if let Ok(i) = usize::try_from(ordinal) {
            if let Some(slot) = self
                .handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(i)
            {
                *slot = fresh;
            }
            if let Some(slot) = self
                .quick
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(i)
            {
                *slot = quick;
            }
        }
    }

    fn source_addr(&self, ordinal: u32) -> Result<SourceAddr> {
        Ok(SourceAddr::new(
            "127.0.0.1",
            self.shared.instance(ordinal)?.port(),
        ))
    }

    /// Runs one operation, recording its start and end in the timeline and
    /// turning its error into the engine's.
    async fn op<F>(&self, ordinal: u32, op: Op, work: F) -> Result<(), RuntimeError>
    where
        F: Future<Output = Result<()>>,
    {
        let what = format!("{op} on instance {ordinal}");
        self.shared.timeline.push(Event::OpStarted {
            ordinal,
            op: op.clone(),
        });
        let started = Instant::now();
        let result = work.await;
        self.shared.timeline.push(Event::OpFinished {
            ordinal,
            op,
            took: started.elapsed(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        result.map_err(|e| e.into_runtime(what))
    }

    async fn observe_cluster(&self) -> Result<Observed> {
        let state = self.shared.state.read()?;
        let (cluster, record) = (state.cluster, state.record);
        // The replicas first, together, then the primary: a replica seen after
        // the primary could hold a transaction the primary committed after it
        // was seen, and look errant. An instance that is failing is seen with a
        // short connect timeout.
        let mut seen = self
            .observe_nodes(|o| o != cluster.primary, &record, None)
            .await?;
        seen.extend(
            self.observe_nodes(|o| o == cluster.primary, &record, Some(PRIMARY_CHECK))
                .await?,
        );
        for (o, s) in &seen {
            match s {
                Seen::Up(..) => self.set_failing(*o, false),
                Seen::Unreachable(_) => self.set_failing(*o, true),
                Seen::Starting | Seen::Crashed => {}
            }
        }
        seen.sort_by_key(|(o, _)| *o);
        self.observed_from(cluster, seen)
    }

    /// Observes the instances `pick` chooses, together.
    async fn observe_nodes(
        &self,
        pick: impl Fn(u32) -> bool,
        record: &Record,
        bound: Option<Duration>,
    ) -> Result<Vec<(u32, Seen)>> {
        let mut tasks = JoinSet::new();
        for (node, o) in self.shared.nodes.iter().zip(0u32..) {
            if !pick(o) {
                continue;
            }
            let phase = node.phase();
            let running = self.shared.instance(o)?.is_running();
            let handle = self.observer(o, record)?;
            let agent = self.agent(o)?;
            tasks.spawn(async move {
                let seen = match phase {
                    Phase::Changing => Seen::Starting,
                    Phase::Crashed { .. } => Seen::Crashed,
                    Phase::Running if !running => Seen::Crashed,
                    Phase::Running => match match bound {
                        Some(b) => handle.observe_by(Instant::now() + b).await,
                        None => handle.observe().await,
                    } {
                        Ok(obs) => {
                            // MariaDB's fence is a lock on the agent's connection.
                            let locked = agent.holds_fence_lock().await;
                            Seen::Up(Box::new(obs), locked)
                        }
                        Err(e) => Seen::Unreachable(e.to_string()),
                    },
                };
                (o, seen)
            });
        }
        let mut seen = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            seen.push(joined.map_err(|e| Error::Invalid(format!("observing panicked: {e}")))?);
        }
        Ok(seen)
    }

    fn observed_from(
        &self,
        cluster: crate::state::ClusterState,
        seen: Vec<(u32, Seen)>,
    ) -> Result<Observed> {
        let history = &cluster.history;
        let mut instances = Vec::with_capacity(seen.len());
        for (o, seen) in seen {
            let st = cluster.instances.get(&o).ok_or(Error::NoSuchInstance(o))?;
            let known_version = history
                .by_hash(&st.revision.hash)
                .map(|e| e.version)
                .ok_or_else(|| Error::UnknownRevision {
                    hash: st.revision.hash.clone(),
                })?;
            let role = if cluster.primary == o {
                Role::Primary
            } else {
                Role::Replica
            };
            let drained = self.shared.router.is_drained(o).unwrap_or(false);
            let mut instance = Instance {
                ordinal: o,
                role,
                version: known_version,
                revision: st.revision.clone(),
                health: Health::Starting,
                gtid: None,
                schema: crate::schema::applied(&cluster.schema, o),
                link: None,
                ack_replicas: None,
                galera: None,
                writable: false,
                fenced: st.fenced,
                drained,
                source: None,
            };
            match seen {
                Seen::Starting => {}
                Seen::Crashed => instance.health = Health::Crashed,
                Seen::Unreachable(reason) => instance.health = Health::Unreachable { reason },
                Seen::Up(obs, locked) => {
                    // The fence holds: MySQL's super_read_only, MariaDB's lock.
                    instance.fenced = st.fenced
                        && match cluster.flavor {
                            Flavor::Mysql => obs.super_read_only == Some(true),
                            Flavor::Mariadb => locked,
                        };
                    instance.version = obs.version.version;
                    instance.gtid = Some(obs.gtid.executed().clone());
                    instance.writable = obs.is_writable();
                    instance.source = obs
                        .replication
                        .as_ref()
                        .filter(|r| r.source_host == "127.0.0.1")
                        .and_then(|r| self.shared.ordinal_of_port(r.source_port));
                    instance.health = health_of(&obs, role);
                    if self.shared.galera {
                        instance.galera = obs.galera.as_ref().map(galera_state);
                    } else if role == Role::Replica {
                        instance.link = obs.replication.as_ref().map(|r| Link {
                            connected: r.is_connected(),
                            received: obs.received(),
                        });
                    } else {
                        instance.ack_replicas = obs
                            .semi_sync
                            .as_ref()
                            .and_then(|s| s.ack_replicas(NEVER_FALLS_BACK));
                    }
                }
            }
            instances.push(instance);
        }
        Ok(Observed {
            kind: if self.shared.galera {
                TopologyKind::Galera
            } else {
                TopologyKind::Async
            },
            flavor: cluster.flavor,
            instances,
        })
    }

    async fn do_restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow: bool,
    ) -> Result<()> {
        let entry = self
            .shared
            .state
            .read()?
            .cluster
            .history
            .by_hash(&revision.hash)
            .cloned()
            .ok_or_else(|| Error::UnknownRevision {
                hash: revision.hash.clone(),
            })?;
        if entry.version != version {
            return Err(Error::Invalid(format!(
                "revision {revision} runs {}, not {version}",
                entry.version
            )));
        }
        // A version change passes the upgrade pre-flight before anything stops.
        if self.shared.current_entry(ordinal)?.version != version {
            self.shared
                .preflight_upgrade(version, &entry.config)
                .await?;
        }
        let node = self.shared.node(ordinal)?;
        let _lifecycle = node.lifecycle.lock().await;
        let _phase = SettleOnDrop::new(&self.shared, ordinal, true);
        let before = self.shared.current_entry(ordinal)?;
        let instance = self.shared.instance(ordinal)?;
        if instance.is_running() {
            let handle = self.handle(ordinal)?;
            if slow {
                handle
                    .clean_shutdown(self.shared.shutdown_timeout)
                    .await
                    .map_err(Error::sql(ordinal))?;
            } else {
                // A normal (fast) shutdown: SIGTERM, which mysqld and mariadbd
                // handle as SHUTDOWN. The topology client has only the slow one.
                self.shared.stop_process(ordinal).await?;
            }
            let waited = self.shared.shutdown_timeout;
            let deadline = tokio::time::Instant::now() + waited;
            while instance.is_running() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        ordinal,
                        what: "the server process exiting after its shutdown",
                        waited,
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
        // A crashed instance is never started on another version: its data
        // was not shut down cleanly (MariaDB refuses such an upgrade, MySQL
        // would upgrade a crash-recovered dictionary). A crash found here
        // (the process already gone, or gone with a failure status while
        // being shut down) fails the step; the engine recovers the instance
        // on its own version first and restarts it cleanly later.
        if before.version != version && instance.last_exit().is_some_and(|s| !s.success()) {
            return Err(Error::CrashedBeforeUpgrade {
                ordinal,
                running: before.version,
                target: version,
            });
        }
        self.renew_handle(ordinal);
        self.shared.state.update_cluster(|c| {
            let st = c
                .instances
                .get_mut(&ordinal)
                .ok_or(Error::NoSuchInstance(ordinal))?;
            st.revision = revision.clone();
            Ok(())
        })?;
        self.shared
            .start_on(ordinal, &entry, StartedBy::Restart)
            .await?;
        let handle = self.handle(ordinal)?;
        self.shared
            .after_start(ordinal, &handle, Some(before.version), entry.version)
            .await
    }

    async fn do_recover(&self, ordinal: u32) -> Result<()> {
        let node = self.shared.node(ordinal)?;
        let _lifecycle = node.lifecycle.lock().await;
        let _phase = SettleOnDrop::new(&self.shared, ordinal, false);
        if !self.shared.instance(ordinal)?.is_running() {
            self.renew_handle(ordinal);
        }
        let handle = self.handle(ordinal)?;
        self.shared
            .recover_process(ordinal, &handle, StartedBy::Recover)
            .await
    }

    /// Lets the replicas of `primary` catch up while writes still flow, so
    /// that the fenced window (and the write gap) is as short as possible:
    /// at most three rounds of waiting for the primary's current position,
    /// three seconds in all, ending early once a round is quick. Nothing
    /// fails here: the switchover's own catch-up decides.
    async fn settle_replicas(&self, primary: u32) {
        let Ok(cluster) = self.shared.state.read().map(|d| d.cluster) else {
            return;
        };
        let replicas: Vec<u32> = cluster
            .instances
            .keys()
            .copied()
            .filter(|o| *o != primary)
            .collect();
        let Ok(source) = self.handle(primary) else {
            return;
        };
        let budget = tokio::time::Instant::now() + Duration::from_secs(3);
        for _ in 0..3 {
            let Ok(position) = source.binlog_position().await else {
                return;
            };
            let round = tokio::time::Instant::now();
            for o in &replicas {
                let left = budget.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return;
                }
                if let Ok(h) = self.handle(*o) {
                    let _ = h.wait_caught_up(&position, left).await;
                }
            }
            if round.elapsed() < Duration::from_millis(100) {
                return;
            }
        }
    }

    async fn do_fence(&self, ordinal: u32, deadline: Timestamp) -> Result<()> {
        self.set_fenced(ordinal, true)?;
        let router = &self.shared.router;
        if router.primary() == Some(ordinal) {
            router.set_primary(None).await.map_err(router_error)?;
        }
        router
            .drain(ordinal, Duration::ZERO)
            .await
            .map_err(router_error)?;
        // Stopped instead (commits no replica can acknowledge): a dead server commits
        // nothing, and it starts again fenced.
        self.shared
            .fence_or_stop(ordinal, Some(instant(deadline)))
            .await?;
        router
            .close_connections_to(ordinal)
            .await
            .map_err(router_error)?;
        Ok(())
    }

    /// Makes `ordinal` the writable primary again, once no other instance takes writes:
    /// its replication (a demotion's) forgotten, its fence and read-only lifted, the
    /// router's primary endpoint on it.
    async fn do_unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<()> {
        for (_, o) in self.shared.nodes.iter().zip(0u32..) {
            if o == ordinal || !self.shared.instance(o)?.is_running() {
                continue;
            }
            if let Ok(obs) = self.handle(o)?.observe_by(instant(deadline)).await
                && obs.is_writable()
            {
                return Err(Error::Invalid(format!(
                    "instance {o} takes writes: instance {ordinal} stays fenced rather than \
                     make two writable primaries"
                )));
            }
        }
        // A candidate whose promotion is being undone had the source side turned on:
        // as a replica it would hold its applier's commits. Best effort: an instance
        // that does not answer now gets it off from its my.cnf when it starts again.
        for (_, o) in self.shared.nodes.iter().zip(0u32..) {
            if o != ordinal
                && self.shared.instance(o)?.is_running()
                && let Err(e) = self
                    .shared
                    .set_semi_sync_source(o, false, instant(deadline))
                    .await
            {
                tracing::warn!(instance = o, error = %e, "could not turn its semi-synchronous source side off");
            }
        }
        self.shared
            .set_semi_sync_source(ordinal, true, instant(deadline))
            .await?;
        self.agent(ordinal)?
            .promote_by(instant(deadline))
            .await
            .map_err(|f| Error::sql(ordinal)(f.error))?;
        self.shared.state.update_cluster(|c| {
            c.primary = ordinal;
            if let Some(st) = c.instances.get_mut(&ordinal) {
                st.fenced = false;
            }
            Ok(())
        })?;
        let router = &self.shared.router;
        router.undrain(ordinal).map_err(router_error)?;
        router
            .set_primary(Some(ordinal))
            .await
            .map_err(router_error)?;
        Ok(())
    }

    async fn do_demote(&self, ordinal: u32, source: u32, deadline: Timestamp) -> Result<()> {
        let creds = replication_credentials(self.shared.testbed.credentials(), self.shared.flavor);
        let to = self.source_addr(source)?;
        self.shared
            .set_semi_sync_source(ordinal, false, instant(deadline))
            .await?;
        self.agent(ordinal)?
            .demote_unstarted_by(&to, &creds, instant(deadline))
            .await
            .map_err(Error::sql(ordinal))
    }

    async fn do_wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<()> {
        let old = self.handle(from)?;
        // The engine fences the old primary on every entry; a fence lost since is
        // taken again here, just before the position is read.
        let agent = self.agent(from)?;
        if self.shared.flavor == Flavor::Mariadb
            && !agent.holds_fence_lock().await
            && let FenceOutcome::Stopped(e) = self.shared.fence_or_stop(from, None).await?
        {
            return Err(Error::Sql {
                ordinal: from,
                source: e,
            });
        }
        let position = old.binlog_position().await.map_err(Error::sql(from))?;
        let left = deadline.since(now()).max(Duration::from_millis(100));
        self.handle(candidate)?
            .wait_caught_up(&position, left)
            .await
            .map_err(Error::sql(candidate))?;
        let after = old.binlog_position().await.map_err(Error::sql(from))?;
        if after != position {
            return Err(Error::FenceBreached {
                ordinal: from,
                before: position.to_string(),
                after: after.to_string(),
            });
        }
        Ok(())
    }

    async fn do_promote(&self, ordinal: u32, deadline: Timestamp) -> Result<()> {
        // Waiting for acknowledgements first, while it is read-only: no commit on it
        // is ever acknowledged without a replica.
        self.shared
            .set_semi_sync_source(ordinal, true, instant(deadline))
            .await?;
        // Through the agent: a fence an undone promotion left on it goes too.
        self.agent(ordinal)?
            .promote_by(instant(deadline))
            .await
            .map_err(|f| Error::sql(ordinal)(f.error))?;
        let old = self.shared.state.update_cluster(|c| {
            let old = c.primary;
            c.primary = ordinal;
            if let Some(st) = c.instances.get_mut(&ordinal) {
                st.fenced = false;
            }
            Ok(old)
        })?;
        let router = &self.shared.router;
        router
            .set_primary(Some(ordinal))
            .await
            .map_err(router_error)?;
        if old != ordinal {
            router
                .close_connections_to(old)
                .await
                .map_err(router_error)?;
        }
        Ok(())
    }

    async fn do_repoint(&self, ordinal: u32, source: u32) -> Result<()> {
        if self.shared.state.read()?.cluster.primary == ordinal {
            return Err(Error::Invalid(format!(
                "instance {ordinal} is the primary: it does not replicate"
            )));
        }
        let handle = self.handle(ordinal)?;
        let to = self.source_addr(source)?;
        self.shared
            .set_semi_sync_source(
                ordinal,
                false,
                std::time::Instant::now() + Duration::from_secs(10),
            )
            .await?;
        let observation = handle.observe().await.map_err(Error::sql(ordinal))?;
        if observation.replication.is_some() {
            // A fenced replica (a demoted old primary, an undone candidate): its
            // clients go first (one waiting on the fence's lock would commit the
            // moment it goes), then the lock, which would stop its applier.
            let agent = self.agent(ordinal)?;
            if agent.holds_fence_lock().await {
                handle
                    .kill_client_connections()
                    .await
                    .map_err(Error::sql(ordinal))?;
                agent.release_fence_lock().await;
            }
            handle.repoint(&to).await.map_err(Error::sql(ordinal))?;
        } else {
            // A former primary: it carries its own position over.
            let creds =
                replication_credentials(self.shared.testbed.credentials(), self.shared.flavor);
            self.agent(ordinal)?
                .demote_to_replica(&to, &creds)
                .await
                .map_err(Error::sql(ordinal))?;
        }
        self.set_fenced(ordinal, false)
    }

    async fn do_apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<()> {
        let known = self
            .shared
            .state
            .read()?
            .cluster
            .history
            .by_hash(&revision.hash)
            .is_some();
        if !known {
            return Err(Error::UnknownRevision {
                hash: revision.hash.clone(),
            });
        }
        let pairs: Vec<(&str, &str)> = variables
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let handle = self.handle(ordinal)?;
        let report = handle
            .set_variables(&pairs)
            .await
            .map_err(Error::sql(ordinal))?;
        let mut refused: Vec<String> = report
            .read_only
            .iter()
            .chain(&report.refused)
            .chain(&report.warnings)
            .map(|r| format!("{} ({})", r.name, r.server))
            .collect();
        // A server may accept a value and run another (clamped to a bound
        // without a warning): read every value back.
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let values = handle
            .global_values(&names)
            .await
            .map_err(Error::sql(ordinal))?;
        for (name, wanted) in &pairs {
            let running = values.get(*name).cloned().flatten().unwrap_or_default();
            if !same_value(wanted, &running) {
                refused.push(format!(
                    "{name} (asked for {wanted}, the server runs {running})"
                ));
            }
        }
        refused.dedup();
        if !refused.is_empty() {
            return Err(Error::VariablesRefused {
                ordinal,
                refused: refused.join(", "),
            });
        }
        self.shared.state.update_cluster(|c| {
            let st = c
                .instances
                .get_mut(&ordinal)
                .ok_or(Error::NoSuchInstance(ordinal))?;
            st.revision = revision.clone();
            Ok(())
        })
    }

    /// On Galera, before the writer node is drained: the router's primary endpoint moves to
    /// another node in the read pool (the lowest ordinal; the decision drains a node only
    /// while every other one is Synced), and the old writer's primary-endpoint sessions are
    /// closed. Nothing to do for a node that is not the writer.
    async fn move_galera_writer(&self, ordinal: u32) -> Result<()> {
        let writer = self.shared.state.read()?.cluster.primary;
        if writer != ordinal {
            return Ok(());
        }
        let router = &self.shared.router;
        let to = (0..ordinal_count(&self.shared))
            .find(|o| *o != ordinal && router.is_drained(*o) == Some(false))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "Galera node {ordinal} writes, and no other node is in the read pool to \
                     take the writes"
                ))
            })?;
        self.shared.state.update_cluster(|c| {
            c.primary = to;
            Ok(())
        })?;
        router.set_primary(Some(to)).await.map_err(router_error)?;
        router
            .close_connections_to(ordinal)
            .await
            .map_err(router_error)?;
        Ok(())
    }

    async fn do_run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<()> {
        let handles = self
            .handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        crate::schema::Executor {
            shared: &self.shared,
            handles,
            lock_wait: self.config.ddl_lock_wait,
            catch_up: self.config.ddl_catch_up,
        }
        .run(ordinal, change)
        .await
    }

    async fn do_detach(&self, ordinal: u32, deadline: Timestamp) -> Result<()> {
        self.handle(ordinal)?
            .detach_by(instant(deadline))
            .await
            .map_err(Error::sql(ordinal))
    }

    async fn do_wait_received_applied(&self, ordinal: u32, deadline: Timestamp) -> Result<()> {
        self.handle(ordinal)?
            .wait_received_applied_by(instant(deadline))
            .await
            .map_err(Error::sql(ordinal))
    }

    fn set_fenced(&self, ordinal: u32, fenced: bool) -> Result<()> {
        self.shared.state.update_cluster(|c| {
            let st = c
                .instances
                .get_mut(&ordinal)
                .ok_or(Error::NoSuchInstance(ordinal))?;
            st.fenced = fenced;
            Ok(())
        })
    }
}

/// Whether a variable's running value is the one asked for: numbers compare
/// as numbers, switches as switches (`ON`, `1`, `TRUE`), the rest ignoring case.
fn same_value(wanted: &str, running: &str) -> bool {
    let (w, r) = (wanted.trim(), running.trim());
    if let (Ok(a), Ok(b)) = (w.parse::<f64>(), r.parse::<f64>()) {
        return a == b;
    }
    let switch = |v: &str| match v.to_ascii_uppercase().as_str() {
        "ON" | "1" | "TRUE" | "YES" => Some(true),
        "OFF" | "0" | "FALSE" | "NO" => Some(false),
        _ => None,
    };
    if let (Some(a), Some(b)) = (switch(w), switch(r)) {
        return a == b;
    }
    w.eq_ignore_ascii_case(r)
}

/// The handle in `handles` for `ordinal`.
fn pick(
    handles: &Mutex<Vec<switchyard_mysql::Instance>>,
    ordinal: u32,
) -> Result<switchyard_mysql::Instance> {
    usize::try_from(ordinal)
        .ok()
        .and_then(|i| {
            handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(i)
                .cloned()
        })
        .ok_or(Error::NoSuchInstance(ordinal))
}

/// A handle on `ordinal` that gives up connecting after [`FAILING_CONNECT`].
fn ordinal_count(shared: &Shared) -> u32 {
    u32::try_from(shared.nodes.len()).unwrap_or(u32::MAX)
}

fn quick_handle(shared: &Shared, ordinal: u32) -> switchyard_mysql::Instance {
    new_handle(shared, ordinal).with_timeouts(switchyard_mysql::Timeouts {
        connect: FAILING_CONNECT,
        ..switchyard_mysql::Timeouts::default()
    })
}

fn new_handle(shared: &Shared, ordinal: u32) -> switchyard_mysql::Instance {
    let port = shared.instance(ordinal).map(|i| i.port()).unwrap_or(0);
    mysql_handle(
        ordinal,
        port,
        &operator_credentials(shared.testbed.credentials()),
        false,
    )
}

/// The instant of `deadline` on the monotonic clock (at least 100 ms from now, so that
/// one statement can always be tried).
fn instant(deadline: Timestamp) -> std::time::Instant {
    std::time::Instant::now() + deadline.since(now()).max(Duration::from_millis(100))
}

fn router_error(source: switchyard_testbed::router::RouterError) -> Error {
    Error::Router {
        what: "change the router".into(),
        source: Box::new(source),
    }
}

/// What the runtime saw of one instance.
enum Seen {
    Starting,
    Crashed,
    Unreachable(String),
    /// Up, and whether this runtime's connection holds the fence's lock.
    Up(Box<Observation>, bool),
}

/// The plan's view of a Galera node's wsrep status.
fn galera_state(g: &switchyard_mysql::GaleraState) -> GaleraState {
    GaleraState {
        state: g
            .local_state_comment
            .as_deref()
            .map_or(WsrepState::Other, WsrepState::from_comment),
        cluster_size: g.cluster_size.unwrap_or(0),
        primary_component: g.in_primary_component(),
    }
}

/// The health of a running server that answered.
fn health_of(obs: &Observation, role: Role) -> Health {
    let Some(r) = obs.replication.as_ref().filter(|_| role == Role::Replica) else {
        return Health::Ready;
    };
    if r.last_sql_errno != 0 {
        return Health::ReplicationStopped {
            errno: r.last_sql_errno,
            message: r.last_sql_error.clone(),
        };
    }
    if r.last_io_errno != 0 && r.io_thread != IoThreadState::Running {
        return Health::ReplicationStopped {
            errno: r.last_io_errno,
            message: r.last_io_error.clone(),
        };
    }
    if !r.sql_running || r.io_thread == IoThreadState::Stopped {
        return Health::ReplicationStopped {
            errno: 0,
            message: if r.sql_running {
                "the receiver is stopped".into()
            } else {
                "replication is stopped".into()
            },
        };
    }
    match r.seconds_behind {
        Some(s) if s > 0 => Health::Lagging { seconds: s },
        _ => Health::Ready,
    }
}

/// Sets an instance's phase from its process when a restart or recovery
/// ends, however it ends (an engine dropped mid-operation included).
struct SettleOnDrop<'a> {
    shared: &'a Shared,
    ordinal: u32,
}

impl<'a> SettleOnDrop<'a> {
    /// Marks `ordinal` as being changed until dropped; `taken_out` when the
    /// engine takes it out of service (a restart, not a crash recovery).
    fn new(shared: &'a Shared, ordinal: u32, taken_out: bool) -> Self {
        if let Ok(node) = shared.node(ordinal) {
            node.set_phase(Phase::Changing);
            node.by_engine.store(taken_out, Ordering::SeqCst);
        }
        SettleOnDrop { shared, ordinal }
    }
}

impl Drop for SettleOnDrop<'_> {
    fn drop(&mut self) {
        self.shared.settle_phase(self.ordinal, 0);
        if let Ok(node) = self.shared.node(self.ordinal) {
            node.by_engine.store(false, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl ClusterRuntime for LocalRuntime {
    fn now(&self) -> Timestamp {
        now()
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let observed = self
            .observe_cluster()
            .await
            .map_err(|e| e.into_runtime("observe the cluster"))?;
        self.shared.timeline.push(Event::Observed {
            observed: observed.clone(),
        });
        Ok(observed)
    }

    async fn load_record(&self) -> Result<Record, RuntimeError> {
        self.shared
            .state
            .read()
            .map(|d| d.record)
            .map_err(|e| e.into_runtime("load the record"))
    }

    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        self.shared
            .state
            .store_record(expected_seq, record)
            .map_err(|e| e.into_runtime("store the record"))
    }

    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(ordinal, Op::Drain, async {
            if self.shared.galera {
                self.move_galera_writer(ordinal).await?;
            }
            self.shared
                .router
                .drain(ordinal, self.config.drain_grace)
                .await
                .map_err(router_error)
        })
        .await
    }

    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(ordinal, Op::Undrain, async {
            self.shared.router.undrain(ordinal).map_err(router_error)
        })
        .await
    }

    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        let op = Op::Restart {
            revision: revision.clone(),
            version,
            slow: slow_shutdown,
        };
        self.op(
            ordinal,
            op,
            self.do_restart(ordinal, revision, version, slow_shutdown),
        )
        .await
    }

    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(ordinal, Op::Recover, self.do_recover(ordinal))
            .await
    }

    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        // An instance that is failing is tried with the short timeout first: a
        // failover fences the failed primary in case it came back, and a frozen
        // one would otherwise hold the promotion for the full connect timeout
        // (twice: the pre-check's connection, then the fence's).
        let record = self
            .shared
            .state
            .read()
            .map(|d| d.record)
            .map_err(|e| e.into_runtime("load the record"))?;
        if self.failing(ordinal, &record) {
            let quick = pick(&self.quick, ordinal)
                .map_err(|e| e.into_runtime(format!("fence instance {ordinal}")))?;
            if let Err(e) = quick.server_version().await {
                return Err(
                    Error::sql(ordinal)(e).into_runtime(format!("fence instance {ordinal}"))
                );
            }
        }
        // A failover fences the primary it replaces: no pre-check there (a commit stuck
        // in the semi-sync wait of a primary that froze looks like a long transaction,
        // and failing the fence would leave it unfenced beside the new primary).
        let failing_over = matches!(record.intent, Some(Intent::Failover { .. }));
        if self.shared.router.primary() == Some(ordinal) && !failing_over {
            // The library's pre-check: no transaction on the primary open too long.
            if let Some(max) = self.config.max_transaction_seconds {
                self.op(ordinal, Op::LongTransactions, async {
                    self.handle(ordinal)?
                        .wait_no_long_transaction_by(max, instant(deadline))
                        .await
                        .map_err(Error::sql(ordinal))
                })
                .await?;
            }
            self.op(ordinal, Op::SettleReplicas, async {
                self.settle_replicas(ordinal).await;
                Ok(())
            })
            .await?;
        }
        self.op(ordinal, Op::Fence, self.do_fence(ordinal, deadline))
            .await
    }

    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(ordinal, Op::Unfence, self.do_unfence(ordinal, deadline))
            .await
    }

    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            ordinal,
            Op::Demote { source },
            self.do_demote(ordinal, source, deadline),
        )
        .await
    }

    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            candidate,
            Op::CatchUp { from },
            self.do_wait_caught_up(candidate, from, deadline),
        )
        .await
    }

    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(ordinal, Op::Promote, self.do_promote(ordinal, deadline))
            .await
    }

    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.op(
            ordinal,
            Op::Repoint { source },
            self.do_repoint(ordinal, source),
        )
        .await
    }

    async fn detach(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(ordinal, Op::Detach, self.do_detach(ordinal, deadline))
            .await
    }

    async fn wait_received_applied(
        &self,
        ordinal: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            ordinal,
            Op::ApplyReceived,
            self.do_wait_received_applied(ordinal, deadline),
        )
        .await
    }

    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        self.op(
            ordinal,
            Op::ApplyVariables {
                revision: revision.clone(),
            },
            self.do_apply_variables(ordinal, revision, variables),
        )
        .await
    }

    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        self.op(
            ordinal,
            Op::RunDdl {
                change: change.id.clone(),
            },
            self.do_run_ddl(ordinal, change),
        )
        .await
    }

    async fn pause(&self, reason: &WaitReason) {
        let until = match reason {
            WaitReason::DrainGrace { until, .. } | WaitReason::Backoff { until, .. } => {
                Some(*until)
            }
            _ => None,
        };
        let wait = until
            .map_or(self.config.poll, |u| u.since(now()))
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(wait).await;
    }

    fn on_step(&self, step: &StepOutcome) {
        self.shared.timeline.push(Event::Step {
            outcome: step.clone(),
        });
    }
}
