//! What the agent knows about its instance, shared between its life cycle and its HTTP
//! endpoints, and the `GET /status` document built from it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::Flavor;

use crate::config::{Assignment, Options, Secrets};
use crate::image::Image;
use crate::local::Local;
use crate::replication::{self, ReplicaState};
use crate::upgrade;

/// Where the agent is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The server is starting (crash recovery included).
    Starting,
    /// Initializing an empty data directory (a declared bootstrap).
    Bootstrapping,
    /// Copying a donor into an empty data directory.
    Provisioning,
    /// Running `mariadb-upgrade` after a start on a new major.minor.
    Upgrading,
    /// The server runs and the agent watches it.
    Running,
    /// The data directory is empty and the instance is neither a declared bootstrap nor
    /// being provisioned (a lost volume): nothing is initialized, the server is not started.
    Uninitialized,
    /// The start failed for a reason a restart would not fix (the reason says which); the
    /// server is not running.
    Failed,
    /// Shutting down (SIGTERM).
    Stopping,
}

impl Phase {
    /// The phase as `/status` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Bootstrapping => "bootstrapping",
            Phase::Provisioning => "provisioning",
            Phase::Upgrading => "upgrading",
            Phase::Running => "running",
            Phase::Uninitialized => "uninitialized",
            Phase::Failed => "failed",
            Phase::Stopping => "stopping",
        }
    }
}

/// Provisioning from a donor, as `/status` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provisioning {
    /// Nothing to provision, or not started.
    #[default]
    Idle,
    /// Copying from the donor or preparing the copy.
    Running,
    /// The copy is in place and replication started from its position.
    Done,
    /// The last attempt failed (`provisioning_error`); it is retried.
    Failed,
}

/// The mutable part of the agent's knowledge.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) phase: Phase,
    pub(crate) reason: Option<String>,
    pub(crate) assignment: Assignment,
    pub(crate) server_pid: Option<u32>,
    pub(crate) server_version: Option<String>,
    pub(crate) provisioning: Provisioning,
    pub(crate) provisioning_error: Option<String>,
    pub(crate) provisioning_donor: Option<String>,
    pub(crate) system_table_upgrade: Option<String>,
}

/// Everything the life cycle and the endpoints share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: Options,
    pub(crate) image: Image,
    pub(crate) local: Local,
    state: Mutex<State>,
    /// Bytes received by the current or last provisioning.
    pub(crate) provision_bytes: Arc<AtomicU64>,
    /// Whether a `GET /backup` is streaming (one at a time).
    pub(crate) backup_running: AtomicBool,
}

/// How long a probe's query may take: less than the probes' own timeout (5 s in the pod the
/// operator builds), so a hung server gets a clear answer rather than a probe timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

impl Shared {
    pub(crate) fn new(options: Options, image: Image, assignment: Assignment) -> Shared {
        let local = Local::new(&options.socket());
        Shared {
            options,
            image,
            local,
            state: Mutex::new(State {
                phase: Phase::Starting,
                reason: None,
                assignment,
                server_pid: None,
                server_version: None,
                provisioning: Provisioning::Idle,
                provisioning_error: None,
                provisioning_donor: None,
                system_table_upgrade: None,
            }),
            provision_bytes: Arc::new(AtomicU64::new(0)),
            backup_running: AtomicBool::new(false),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.image.flavor()
    }

    /// The credentials as the Secret's files hold them now. The kubelet rewrites a mounted
    /// Secret's files when it changes (a password rotation), so they are read again at every
    /// use, not only at the container's start; a read that fails keeps the last good one.
    pub(crate) fn secrets(&self) -> Secrets {
        match Secrets::read(&self.options.secrets_dir) {
            Ok(fresh) => {
                self.state().assignment.secrets = fresh.clone();
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the credentials read before");
                self.state().assignment.secrets.clone()
            }
        }
    }

    /// Moves to `phase` with `reason`, logging the change.
    pub(crate) fn set_phase(&self, phase: Phase, reason: Option<String>) {
        let mut st = self.state();
        if st.phase != phase || st.reason != reason {
            match &reason {
                Some(r) => tracing::info!(phase = phase.as_str(), reason = %r, "agent phase"),
                None => tracing::info!(phase = phase.as_str(), "agent phase"),
            }
        }
        st.phase = phase;
        st.reason = reason;
    }

    /// Readiness, and the replica's state when the server answered: `Ok` when ready,
    /// the reason otherwise.
    pub(crate) async fn readiness(&self) -> (Result<(), String>, Option<ReplicaState>) {
        let (phase, reason, max_lag) = {
            let st = self.state();
            (
                st.phase,
                st.reason.clone(),
                st.assignment.instance.max_lag_seconds,
            )
        };
        if phase != Phase::Running {
            let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
            return (Err(format!("{}{why}", phase.as_str())), None);
        }
        let galera = self.state().assignment.instance.galera.is_some();
        if galera {
            return (self.galera_readiness().await, None);
        }
        let state = async {
            let mut conn = self.local.connect(PROBE_TIMEOUT).await?;
            let state = replication::replica_state(&mut conn, self.flavor(), PROBE_TIMEOUT).await;
            crate::local::close(conn).await;
            state
        }
        .await;
        match state {
            Ok(state) => (replication::judge(state.as_ref(), max_lag), state),
            Err(e) => (Err(format!("the server does not answer: {e}")), None),
        }
    }

    /// A Galera node is ready when it is `Synced` in the primary component: a joiner, a
    /// donor or a node cut off from quorum stays out of the Services.
    async fn galera_readiness(&self) -> Result<(), String> {
        let answered = async {
            let mut conn = self.local.connect(PROBE_TIMEOUT).await?;
            let rows = crate::local::rows(
                &mut conn,
                "read the wsrep status",
                "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT', 'WSREP_CLUSTER_STATUS')",
                PROBE_TIMEOUT,
            )
            .await;
            crate::local::close(conn).await;
            rows
        }
        .await
        .map_err(|e| format!("the server does not answer: {e}"))?;
        let get = |name: &str| {
            answered
                .iter()
                .find(|r| crate::local::text(r, "VARIABLE_NAME").as_deref() == Some(name))
                .and_then(|r| crate::local::text(r, "VARIABLE_VALUE"))
                .unwrap_or_default()
        };
        let state = get("WSREP_LOCAL_STATE_COMMENT");
        let component = get("WSREP_CLUSTER_STATUS");
        if state == "Synced" && component == "Primary" {
            Ok(())
        } else {
            Err(format!(
                "Galera node is {state:?} in a {component:?} component, not Synced in the primary one"
            ))
        }
    }

    /// Liveness: `Ok` unless the server should answer and does not (a hung server, which
    /// the kubelet then restarts), or is still starting (the startup probe's window).
    pub(crate) async fn liveness(&self) -> Result<String, String> {
        let (phase, reason) = {
            let st = self.state();
            (st.phase, st.reason.clone())
        };
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        match phase {
            Phase::Running => {
                let answered = async {
                    let mut conn = self.local.connect(PROBE_TIMEOUT).await?;
                    let r = crate::local::scalar(
                        &mut conn,
                        "answer SELECT 1",
                        "SELECT 1",
                        PROBE_TIMEOUT,
                    )
                    .await;
                    crate::local::close(conn).await;
                    r
                }
                .await;
                answered
                    .map(|_| "ok: the server answers".to_owned())
                    .map_err(|e| format!("the server does not answer: {e}"))
            }
            Phase::Starting | Phase::Upgrading | Phase::Stopping => {
                Err(format!("{}{why}", phase.as_str()))
            }
            // The agent is doing what it should and a restart would not help.
            Phase::Bootstrapping | Phase::Provisioning | Phase::Uninitialized | Phase::Failed => {
                Ok(format!("{}{why}", phase.as_str()))
            }
        }
    }

    /// The `/status` document.
    pub(crate) async fn status(&self) -> Status {
        let (ready, replication) = self.readiness().await;
        let st = self.state();
        let datadir = self.options.datadir();
        Status {
            flavor: self.flavor(),
            phase: st.phase,
            reason: st.reason.clone(),
            revision: Some(st.assignment.instance.revision.clone()),
            server_id: st.assignment.instance.server_id,
            expected_version: self.options.identity.version.map(|v| v.to_string()),
            server_version: st.server_version.clone(),
            server_pid: st.server_pid,
            mariadb_upgrade_info: upgrade::read_upgrade_info(&datadir).map(|i| i.text),
            system_table_upgrade: st.system_table_upgrade.clone(),
            data_dir_initialized: datadir.is_dir(),
            provisioning: st.provisioning,
            provisioning_error: st.provisioning_error.clone(),
            provisioning_donor: st.provisioning_donor.clone(),
            provisioned_bytes: self.provision_bytes.load(Ordering::Relaxed),
            not_ready: ready.err(),
            replication,
            galera_state: crate::galera::GraState::read(&datadir),
        }
    }
}

/// `GET /status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// `mysql` or `mariadb`.
    pub flavor: Flavor,
    /// Where the agent is.
    pub phase: Phase,
    /// Why it is there (uninitialized, failed), when it says.
    pub reason: Option<String>,
    /// The revision hash of `instance.json` as the agent last read it.
    pub revision: Option<String>,
    /// `server_id`.
    pub server_id: u32,
    /// `SWITCHYARD_VERSION`: the revision's server version.
    pub expected_version: Option<String>,
    /// `SELECT VERSION()` of the running server.
    pub server_version: Option<String>,
    /// The server's process id while it runs.
    pub server_pid: Option<u32>,
    /// The data directory's upgrade record (MariaDB), trimmed.
    pub mariadb_upgrade_info: Option<String>,
    /// What the agent did to the system tables at this start (`mariadb-upgrade from 10.5 to
    /// 10.11`), if anything.
    pub system_table_upgrade: Option<String>,
    /// Whether the data directory exists (initialized or provisioned).
    pub data_dir_initialized: bool,
    /// Provisioning from a donor.
    pub provisioning: Provisioning,
    /// Why the last provisioning attempt failed.
    pub provisioning_error: Option<String>,
    /// The donor of the current or last provisioning (`host:port`).
    pub provisioning_donor: Option<String>,
    /// Bytes copied by the current or last provisioning.
    pub provisioned_bytes: u64,
    /// Why the instance is not ready (what `/readyz` says), when it is not.
    pub not_ready: Option<String>,
    /// The replica's state, when replication is configured and the server answers.
    pub replication: Option<ReplicaState>,
    /// A Galera node's saved state (`grastate.dat`), when its data directory has one: what
    /// the operator compares to choose the node that starts a cluster again.
    pub galera_state: Option<crate::galera::GraState>,
}
