//! [`KubeRuntime`]: the engine's [`ClusterRuntime`] on Kubernetes.
//!
//! Instances are the cluster's pods (which the reconcile creates, one per ordinal) plus what
//! each server reports through [`InstanceOps`] and, for a pod whose server is not up, what its
//! agent reports. The engine's record lives in the `MySQLCluster` status and is stored
//! with compare-and-swap on the object's `resourceVersion`, so a paused former leader can
//! never overwrite a newer decision.
//!
//! Roles come from the status alone (`currentPrimary`, which only a promotion or an unfence
//! moves), never from which instance happens to be writable: a replica promoted by hand is
//! reported as a writable replica, which the decision halts on. The `switchyard.io/role`
//! label follows: `primary` on the recorded primary, `replica` on the others, none on an
//! instance this operator fenced (annotation [`ANNOTATION_FENCED`]), so that neither Service
//! sends it clients. A fence removes the label before its SQL runs; a promotion records the
//! new primary in the status (against a fresh read, so that an edit of the object in between
//! does not fail a promotion that took effect), then removes the old primary's label before
//! it sets the new one's, so the primary Service never selects two pods. An instance is
//! reported fenced only while the fence holds (MySQL: `super_read_only`; MariaDB: this
//! operator's connection holds the lock), and only if this operator fenced it.
//!
//! Every operation of a switchover is bounded by the deadline the engine passes, its SQL
//! and its API calls alike; [`KubeRuntime::confirm_leadership`] applies the lease rule
//! ([`crate::leader`]).
//!
//! A restart does not block the reconcile: it assigns the target revision to the instance in
//! the status first, prepares the shutdown over SQL, deletes the pod, and returns. The
//! reconcile recreates the pod from the revision the status assigns; until its server is up
//! the instance is reported `Starting`, so the decision waits, at most `startupTimeout`. A pod
//! deleted by anyone else comes back on the revision it had. The restarted server does not
//! replicate (`skip-replica-start`), so the decision repoints it next, and the repoint first
//! checks (MariaDB) with the pod's agent that the system tables were upgraded for the running
//! major.minor. An online change assigns its revision to the instance once the variables are
//! set, and rewrites the instance's my.cnf, so a restarted container keeps it.
//!
//! A failover uses the same operations as a switchover, plus `detach` (a replica's receiver
//! stopped) and `wait_received_applied` (its relay log applied), over SQL like the rest. With
//! semi-synchronous replication the source side is switched on for the instance about to be
//! promoted, before it takes a write, and off for an instance demoted or repointed. The
//! primary label moves as in a switchover ([`KubeRuntime::note_primary`]: every old primary
//! loses its role label first, fenced or not), and a failed primary that comes back (a new pod,
//! read-only from its agent) stays out of both Services until it replicates from the new
//! primary; a quarantined instance stays out of them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;
use switchyard_plan::decide::SchemaTarget;
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, RuntimeErrorKind};
use switchyard_plan::record::Intent;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{Observed, Record, Revision, Role, Timestamp, WaitReason};

use crate::agent::{self, InstanceConfig};
use crate::context::{Clock, Resolver};
use crate::crd::{InstanceStatus, MySQLCluster, MySQLClusterStatus};
use crate::error::is_conflict;
use crate::leader::Tenure;
use crate::names::{
    ANNOTATION_CONVERSION_PREVIOUS, ANNOTATION_FENCED, ANNOTATION_REVISION_HASH, ANNOTATION_SCHEMA,
    CONTAINER, LABEL_DISRUPTION, LABEL_ROLE, LABEL_SERVING, Names,
};
pub use crate::observe::Seen;
use crate::observe::observed_from;
use crate::ops::{InstanceOps, InstanceView, Target};
use crate::schema::{DDL_CATCH_UP, DDL_LOCK_WAIT, Prepared, SavedSettings};
use crate::validate::ValidSpec;

/// How many times a promotion's status write is tried against a fresh read of the object.
const STATUS_WRITE_ATTEMPTS: u32 = 5;

struct State {
    cluster: MySQLCluster,
    seen: BTreeMap<u32, Seen>,
    refusal: Option<String>,
    schema: Option<Prepared>,
}

/// The longest one observation of the recorded primary may take (connecting included)
/// before it counts as a failed check: a healthy primary answers within milliseconds, a
/// frozen one would otherwise hold the observation for a statement timeout (10 s). A
/// primary that misses it is only a failed check: no failover without the replicas'
/// corroboration.
pub const PRIMARY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The engine's runtime over one `MySQLCluster`.
pub struct KubeRuntime {
    clusters: Api<MySQLCluster>,
    pods: Api<Pod>,
    config_maps: Api<ConfigMap>,
    names: Names,
    spec: ValidSpec,
    ops: Arc<dyn InstanceOps>,
    resolver: Resolver,
    clock: Clock,
    tenure: Option<Arc<Tenure>>,
    state: Mutex<State>,
}

fn failed(kind: RuntimeErrorKind, op: impl Into<String>, msg: impl Into<String>) -> RuntimeError {
    RuntimeError::new(kind, op, msg)
}

fn from_ops(op: String, e: crate::ops::OpsError) -> RuntimeError {
    let kind = if e.transient {
        RuntimeErrorKind::Transient
    } else {
        RuntimeErrorKind::Failed
    };
    RuntimeError::new(kind, op, e.message)
}

fn api_failed(op: String, e: &kube::Error) -> RuntimeError {
    RuntimeError::new(RuntimeErrorKind::Transient, op, e.to_string())
}

/// Whether a pod is ready and not terminating.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod's server is up: not terminating, and its server container started (the
/// agent's start-up probe passed: the server answers) or the pod is ready.
pub fn pod_started(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && (pod_ready(pod)
            || pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.name == CONTAINER
                            && c.started == Some(true)
                            && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                }))
}

impl KubeRuntime {
    /// A runtime over `cluster` (as last read), with a validated spec.
    pub fn new(
        client: Client,
        cluster: MySQLCluster,
        spec: ValidSpec,
        ops: Arc<dyn InstanceOps>,
        resolver: Resolver,
        clock: Clock,
    ) -> Self {
        let names = Names::of(&cluster);
        KubeRuntime {
            clusters: Api::namespaced(client.clone(), &names.namespace),
            pods: Api::namespaced(client.clone(), &names.namespace),
            config_maps: Api::namespaced(client, &names.namespace),
            names,
            spec,
            ops,
            resolver,
            clock,
            tenure: None,
            state: Mutex::new(State {
                cluster,
                seen: BTreeMap::new(),
                refusal: None,
                schema: None,
            }),
        }
    }

    /// The runtime of an operator replica elected on a lease: the engine's leadership is
    /// confirmed on `tenure` (see [`crate::leader`]). Without one, as for a single engine,
    /// the leadership is always confirmed.
    #[must_use]
    pub fn with_tenure(mut self, tenure: Option<Arc<Tenure>>) -> Self {
        self.tenure = tenure;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cluster object as last read or written.
    pub fn cluster(&self) -> MySQLCluster {
        self.lock().cluster.clone()
    }

    /// What was seen of each instance by the last observation.
    pub fn seen(&self) -> BTreeMap<u32, Seen> {
        self.lock().seen.clone()
    }

    /// The refusal of an online change seen by the last step (an instance refused a
    /// variable: permanent, the change must be rolled back), taken once.
    pub fn take_refusal(&self) -> Option<String> {
        self.lock().refusal.take()
    }

    /// The accepted schema change the engine's target carries (its definition before the
    /// change is what `run_ddl` checks the table against).
    pub fn set_schema(&self, prepared: Option<Prepared>) {
        self.lock().schema = prepared;
    }

    /// The API client.
    pub fn client(&self) -> Client {
        self.clusters.clone().into_client()
    }

    /// The cluster's names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The instance operations.
    pub fn ops(&self) -> &Arc<dyn InstanceOps> {
        &self.ops
    }

    /// The address of `ordinal`.
    pub fn target(&self, ordinal: u32) -> Target {
        let (host, port) = (self.resolver)(&self.names, ordinal);
        Target {
            namespace: self.names.namespace.clone(),
            cluster: self.names.cluster.clone(),
            ordinal,
            pod: self.names.pod(ordinal),
            host,
            port,
        }
    }

    /// Writes `status` with compare-and-swap on the cached object's resource version.
    pub async fn write_status(&self, status: MySQLClusterStatus) -> Result<(), kube::Error> {
        let mut obj = self.cluster();
        obj.status = Some(status);
        obj.metadata.managed_fields = None;
        let written = self
            .clusters
            .replace_status(&self.names.cluster, &PostParams::default(), &obj)
            .await?;
        self.lock().cluster = written;
        Ok(())
    }

    /// Re-reads the cluster object.
    pub async fn reload(&self) -> Result<MySQLCluster, kube::Error> {
        let fresh = self.clusters.get(&self.names.cluster).await?;
        self.lock().cluster = fresh.clone();
        Ok(fresh)
    }

    /// Lists the pods and asks every ready one what it runs: the replicas first, the
    /// recorded primary last, so that whatever a replica has replicated is also in the
    /// primary's later report and only real errant transactions show.
    pub async fn refresh(&self) -> Result<BTreeMap<u32, Seen>, kube::Error> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(&self.names.pod_selector()))
            .await?;
        let mut by_ordinal: BTreeMap<u32, Pod> = BTreeMap::new();
        for pod in pods.items {
            if let Some(o) = self.names.ordinal_of(&pod.name_any()) {
                by_ordinal.insert(o, pod);
            }
        }
        let primary = self.recorded_primary();
        let mut order: Vec<u32> = (0..self.spec.replicas).collect();
        order.sort_by_key(|o| Some(*o) == primary);
        let mut seen = BTreeMap::new();
        for ordinal in order {
            let pod = by_ordinal.remove(&ordinal);
            let started = pod.as_ref().is_some_and(pod_started);
            let target = self.target(ordinal);
            // The primary's observation is the failure detection's check: bounded, so
            // that a frozen or cut-off primary fails it at once instead of after a
            // statement timeout on a cached connection.
            let bound =
                (Some(ordinal) == primary).then(|| std::time::Instant::now() + PRIMARY_CHECK);
            let view = if started {
                Some(
                    self.ops
                        .observe(&target, bound)
                        .await
                        .map_err(|e| e.message),
                )
            } else {
                None
            };
            // A pod whose server is not up: its agent tells why (an empty data directory,
            // provisioning under way). A pod not running anywhere yet (pending, no address:
            // its node is lost, or it is not scheduled) has no agent to ask: asking would
            // only wait for a connection that cannot come.
            let running = pod.as_ref().is_some_and(|p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.pod_ip.as_ref().is_some_and(|ip| !ip.is_empty()))
            });
            let agent = match &pod {
                Some(p) if !started && running && p.metadata.deletion_timestamp.is_none() => {
                    Some(self.ops.agent_status(&target).await.map_err(|e| e.message))
                }
                _ => None,
            };
            seen.insert(
                ordinal,
                Seen {
                    pod,
                    pod_ready: started,
                    view,
                    agent,
                },
            );
        }
        self.lock().seen = seen.clone();
        Ok(seen)
    }

    /// The observed topology from the last [`KubeRuntime::refresh`].
    pub fn observed(&self) -> Observed {
        let state = self.lock();
        observed_from(&self.names, &self.spec, &state.cluster, &state.seen)
    }

    /// Sets the role label of every pod: `primary` on the recorded primary, `replica` on
    /// the others, none on an instance this operator fenced. Labels to remove or change go
    /// first, so the primary Service never selects two pods.
    pub async fn label_roles(&self, observed: &Observed) -> Result<(), RuntimeError> {
        let seen = self.seen();
        let record = self
            .cluster()
            .status
            .and_then(|s| s.record)
            .unwrap_or_default();
        let primary = observed.primary().map(|p| p.ordinal);
        // A quarantined instance serves nobody; nor does a failed-over primary until it
        // replicates from the new one (a recreated pod has no fence annotation yet).
        let out_of_service = |i: &switchyard_plan::Instance| {
            record.quarantined.contains_key(&i.ordinal)
                || record.last_failover.as_ref().is_some_and(|f| {
                    f.from == i.ordinal && i.role == Role::Replica && i.source != primary
                })
        };
        let mut changes: Vec<(u32, Option<&str>, bool)> = Vec::new();
        for i in &observed.instances {
            let Some(pod) = seen.get(&i.ordinal).and_then(|s| s.pod.as_ref()) else {
                continue;
            };
            let want = if pod.annotations().contains_key(ANNOTATION_FENCED) || out_of_service(i) {
                None
            } else {
                Some(match i.role {
                    Role::Primary => "primary",
                    Role::Replica => "replica",
                })
            };
            let has = pod.labels().get(LABEL_ROLE).map(String::as_str);
            if has != want {
                changes.push((i.ordinal, want, has == Some("primary")));
            }
        }
        // Primary labels that go, before the one that comes.
        changes.sort_by_key(|(_, _, removes_primary)| !removes_primary);
        for (ordinal, want, _) in changes {
            self.label(ordinal, LABEL_ROLE, want).await?;
        }
        // The primary budget's label: on the recorded primary, fenced or not, before it goes
        // from any other pod (a drain never finds neither protected).
        let mut budget: Vec<(u32, Option<&str>)> = Vec::new();
        for i in &observed.instances {
            let Some(pod) = seen.get(&i.ordinal).and_then(|s| s.pod.as_ref()) else {
                continue;
            };
            let want = (Some(i.ordinal) == primary).then_some("primary");
            if pod.labels().get(LABEL_DISRUPTION).map(String::as_str) != want {
                budget.push((i.ordinal, want));
            }
        }
        budget.sort_by_key(|(_, want)| want.is_none());
        for (ordinal, want) in budget {
            self.label(ordinal, LABEL_DISRUPTION, want).await?;
        }
        Ok(())
    }

    async fn annotate(&self, ordinal: u32, key: &str, value: &str) -> Result<(), RuntimeError> {
        let patch = json!({ "metadata": { "annotations": { key: value } } });
        let name = self.names.pod(ordinal);
        self.pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| api_failed(format!("annotate pod {name}"), &e))
    }

    /// On Galera, before the writer node is drained: the writes move to another node that
    /// serves and is Synced in the primary component (the lowest ordinal; the decision drains
    /// a node only while every other one is Synced): the status' `currentPrimary` names it
    /// and the role labels follow, so the primary Service selects it. Nothing to do for a
    /// node that is not the writer.
    async fn move_galera_writer(&self, ordinal: u32) -> Result<(), RuntimeError> {
        let op = format!("move the writes off Galera node {ordinal}");
        let mut status = self.cluster().status.unwrap_or_default();
        if status.current_primary != Some(ordinal) {
            return Ok(());
        }
        let observed = self.observed();
        let to = observed
            .instances
            .iter()
            .filter(|i| {
                i.ordinal != ordinal
                    && !i.drained
                    && i.galera.as_ref().is_some_and(|g| g.is_synced())
            })
            .map(|i| i.ordinal)
            .min()
            .ok_or_else(|| {
                failed(
                    RuntimeErrorKind::Transient,
                    op.clone(),
                    format!(
                        "Galera node {ordinal} takes the writes, and no other node serves, \
                         Synced in the primary component, to take them"
                    ),
                )
            })?;
        status.current_primary = Some(to);
        self.write_status(status)
            .await
            .map_err(|e| api_failed(op.clone(), &e))?;
        self.refresh()
            .await
            .map_err(|e| api_failed(op.clone(), &e))?;
        let observed = self.observed();
        self.label_roles(&observed).await
    }

    async fn label(
        &self,
        ordinal: u32,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), RuntimeError> {
        let patch = json!({ "metadata": { "labels": { key: value } } });
        let name = self.names.pod(ordinal);
        match self
            .pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_failed(format!("label pod {name}"), &e)),
        }
    }

    /// Saves the global values of the change's replica settings on `ordinal`'s pod
    /// ([`ANNOTATION_CONVERSION_PREVIOUS`]) before they are set, so that the values survive
    /// an operator restart and are put back once the change is complete. A second run keeps
    /// the first save (the value before any schema change set it).
    async fn save_previous_settings(
        &self,
        ordinal: u32,
        change: &SchemaTarget,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let name = self.names.pod(ordinal);
        let pod = self
            .pods
            .get(&name)
            .await
            .map_err(|e| api_failed(format!("{op}: read pod {name}"), &e))?;
        if let Some(text) = pod.annotations().get(ANNOTATION_CONVERSION_PREVIOUS) {
            return SavedSettings::parse(text).map(drop).map_err(|e| {
                failed(
                    RuntimeErrorKind::Failed,
                    op.to_owned(),
                    format!(
                        "pod {name} has an unreadable annotation {ANNOTATION_CONVERSION_PREVIOUS} \
                         ({e}): it saves the replica settings a schema change replaced; set \
                         them back by hand and remove the annotation"
                    ),
                )
            });
        }
        let names: Vec<String> = change
            .replica_settings
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        let values = self
            .ops
            .global_values(&self.target(ordinal), &names)
            .await
            .map_err(|e| from_ops(op.to_owned(), e))?;
        let saved = SavedSettings {
            change: change.id.clone(),
            values: values
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        };
        self.annotate(ordinal, ANNOTATION_CONVERSION_PREVIOUS, &saved.to_text())
            .await
    }

    /// The instant of `deadline` on the monotonic clock (now when it has passed).
    fn instant(&self, deadline: Timestamp) -> Instant {
        Instant::now() + deadline.since(self.now())
    }

    /// Turns the source side of semi-synchronous replication on or off on `ordinal` when the
    /// spec asks for semi-synchronous replication (nothing otherwise), by `deadline`.
    pub async fn set_semi_sync_source(
        &self,
        ordinal: u32,
        on: bool,
        deadline: Instant,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let Some(k) = self.spec.semi_sync else {
            return Ok(());
        };
        self.ops
            .set_semi_sync_source(&self.target(ordinal), on.then_some(k), deadline)
            .await
            .map_err(|e| from_ops(format!("{op}: switch its semi-synchronous source side"), e))
    }

    /// The primary the status records.
    fn recorded_primary(&self) -> Option<u32> {
        self.cluster().status.and_then(|s| s.current_primary)
    }

    /// Deletes `ordinal`'s pod without a grace period: the kubelet kills its server at once
    /// (no shutdown that could end waiting commits), and the pod comes back from its
    /// revision. A pod already gone or replaced is not an error.
    async fn kill_pod(&self, ordinal: u32, op: &str) -> Result<(), RuntimeError> {
        let name = self.names.pod(ordinal);
        match self
            .pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_failed(format!("{op}: delete its pod at once"), &e)),
        }
    }

    /// Marks `ordinal` as fenced by this operator and takes it out of both Services (its
    /// role label goes), by `deadline`.
    async fn mark_fenced(
        &self,
        ordinal: u32,
        deadline: Timestamp,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let patch = json!({ "metadata": {
            "labels": { LABEL_ROLE: null },
            "annotations": { ANNOTATION_FENCED: "true" },
        } });
        self.patch_pod(ordinal, &patch, deadline, op).await
    }

    /// Merges `patch` into pod `ordinal` by `deadline` (a pod that is gone has nothing to
    /// change).
    async fn patch_pod(
        &self,
        ordinal: u32,
        patch: &serde_json::Value,
        deadline: Timestamp,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let name = self.names.pod(ordinal);
        let what = format!("{op}: patch pod {name}");
        let patched = self
            .within(
                deadline,
                &what,
                self.pods
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
            )
            .await?;
        match patched {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_failed(what, &e)),
        }
    }

    /// Runs an API call, failing (transient) when `deadline` comes first.
    async fn within<T>(
        &self,
        deadline: Timestamp,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, RuntimeError> {
        let until = tokio::time::Instant::from_std(self.instant(deadline));
        tokio::time::timeout_at(until, call).await.map_err(|_| {
            failed(
                RuntimeErrorKind::Transient,
                what.to_owned(),
                "the deadline passed before the API server answered",
            )
        })
    }

    /// Records `to` as the primary in the status, against a fresh read of the object and
    /// again on a conflict (an edit of the object since it was read must not fail a
    /// promotion that took effect), by `deadline`.
    async fn write_primary(
        &self,
        to: u32,
        deadline: Timestamp,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let what = format!("{op}: record instance {to} as the primary");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut fresh = self
                .within(deadline, &what, self.clusters.get(&self.names.cluster))
                .await?
                .map_err(|e| api_failed(what.clone(), &e))?;
            let mut status = fresh.status.clone().unwrap_or_default();
            if status.current_primary == Some(to) {
                self.lock().cluster = fresh;
                return Ok(());
            }
            status.current_primary = Some(to);
            fresh.status = Some(status);
            fresh.metadata.managed_fields = None;
            let written = self
                .within(
                    deadline,
                    &what,
                    self.clusters.replace_status(
                        &self.names.cluster,
                        &PostParams::default(),
                        &fresh,
                    ),
                )
                .await?;
            match written {
                Ok(written) => {
                    self.lock().cluster = written;
                    return Ok(());
                }
                Err(e) if is_conflict(&e) && attempt < STATUS_WRITE_ATTEMPTS => {}
                Err(e) if is_conflict(&e) => return Err(RuntimeError::conflict(what)),
                Err(e) => return Err(api_failed(what, &e)),
            }
        }
    }

    /// Makes `to` the primary on Kubernetes once its SQL promotion took effect: the status
    /// records it, then every other pod loses the primary label (and its role: it is back in
    /// the read Service once it replicates from `to`), then `to` gets it (and is no longer
    /// marked fenced). By `deadline`.
    async fn note_primary(
        &self,
        to: u32,
        deadline: Timestamp,
        op: &str,
    ) -> Result<(), RuntimeError> {
        self.write_primary(to, deadline, op).await?;
        let what = format!("{op}: move the primary label");
        let selector = self.names.pod_selector();
        let pods = self
            .within(
                deadline,
                &what,
                self.pods.list(&ListParams::default().labels(&selector)),
            )
            .await?
            .map_err(|e| api_failed(what.clone(), &e))?;
        // The primary budget protects the new primary before it stops protecting the old one
        // (promoted: the old one may go).
        let patch = json!({ "metadata": { "labels": { LABEL_DISRUPTION: "primary" } } });
        self.patch_pod(to, &patch, deadline, op).await?;
        for pod in &pods.items {
            let Some(o) = self.names.ordinal_of(&pod.name_any()) else {
                continue;
            };
            if o != to && pod.labels().contains_key(LABEL_DISRUPTION) {
                let patch = json!({ "metadata": { "labels": { LABEL_DISRUPTION: null } } });
                self.patch_pod(o, &patch, deadline, op).await?;
            }
            if o != to && pod.labels().get(LABEL_ROLE).map(String::as_str) == Some("primary") {
                // Out of both Services: a fenced old primary (a switchover) or one that failed
                // and could not be fenced (a failover); the role labels put it back in the
                // read Service once it replicates from the new primary.
                let patch = json!({ "metadata": { "labels": { LABEL_ROLE: null } } });
                self.patch_pod(o, &patch, deadline, op).await?;
            }
        }
        let patch = json!({ "metadata": {
            "labels": { LABEL_ROLE: "primary" },
            "annotations": { ANNOTATION_FENCED: null },
        } });
        self.patch_pod(to, &patch, deadline, op).await
    }

    /// Assigns revision `number` to instance `ordinal` in the status (compare-and-swap on the
    /// cached object): its pod and ConfigMap are built from it from now on.
    async fn assign_revision(
        &self,
        ordinal: u32,
        number: u64,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let mut status = self.cluster().status.unwrap_or_default();
        match status.instances.iter_mut().find(|i| i.ordinal == ordinal) {
            Some(i) if i.revision == Some(number) => return Ok(()),
            Some(i) => i.revision = Some(number),
            None => {
                status.instances.push(InstanceStatus {
                    ordinal,
                    role: "replica".into(),
                    revision: Some(number),
                    ..InstanceStatus::default()
                });
                status.instances.sort_by_key(|i| i.ordinal);
            }
        }
        let what = format!("{op}: assign revision {number} to instance {ordinal}");
        self.write_status(status).await.map_err(|e| {
            if is_conflict(&e) {
                RuntimeError::new(
                    RuntimeErrorKind::Transient,
                    what,
                    "the object changed; retried",
                )
            } else {
                api_failed(what, &e)
            }
        })
    }

    /// Rewrites instance `ordinal`'s my.cnf (and the revision its `instance.json` names) to
    /// `entry`'s, so that a restarted container starts with what was just set online.
    async fn rewrite_config(
        &self,
        ordinal: u32,
        entry: &crate::crd::RevisionEntry,
        op: &str,
    ) -> Result<(), RuntimeError> {
        let name = self.names.config_map(ordinal);
        let what = format!("{op}: rewrite ConfigMap {name}");
        let Some(current) = self
            .config_maps
            .get_opt(&name)
            .await
            .map_err(|e| api_failed(what.clone(), &e))?
        else {
            // The reconcile writes it before it creates the pod.
            return Ok(());
        };
        let data = current.data.unwrap_or_default();
        let mut patch_data = serde_json::Map::new();
        patch_data.insert(
            agent::MY_CNF_KEY.into(),
            json!(crate::revision::render_my_cnf(&crate::build::spec_of(
                &self.spec, entry
            ))),
        );
        if let Some(text) = data.get(agent::INSTANCE_KEY)
            && let Ok(mut config) = serde_json::from_str::<InstanceConfig>(text)
        {
            config.revision = entry.hash.clone();
            let json = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
            patch_data.insert(agent::INSTANCE_KEY.into(), json!(json));
        }
        let patch = json!({ "data": patch_data });
        self.config_maps
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| api_failed(what, &e))
    }

    fn view(&self, ordinal: u32) -> Option<InstanceView> {
        self.lock()
            .seen
            .get(&ordinal)
            .and_then(|s| s.view.clone())
            .and_then(Result::ok)
    }
}

#[async_trait]
impl ClusterRuntime for KubeRuntime {
    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    async fn confirm_leadership(&self, until: Timestamp) -> Result<(), RuntimeError> {
        match &self.tenure {
            None => Ok(()),
            Some(tenure) => tenure.confirm(until).map_err(|e| {
                RuntimeError::new(
                    RuntimeErrorKind::Failed,
                    "confirm the leadership",
                    e.to_string(),
                )
                .with_source(e)
            }),
        }
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        self.refresh()
            .await
            .map_err(|e| api_failed("observe the pods".into(), &e))?;
        Ok(self.observed())
    }

    async fn load_record(&self) -> Result<Record, RuntimeError> {
        let cluster = self
            .reload()
            .await
            .map_err(|e| api_failed("load the record".into(), &e))?;
        Ok(cluster.status.and_then(|s| s.record).unwrap_or_default())
    }

    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        let mut status = self.cluster().status.unwrap_or_default();
        let stored_seq = status.record.as_ref().map_or(0, |r| r.seq);
        if stored_seq != expected_seq {
            return Err(RuntimeError::conflict("store the record"));
        }
        status.record = Some(record.clone());
        self.write_status(status).await.map_err(|e| {
            if is_conflict(&e) {
                RuntimeError::conflict("store the record")
            } else {
                api_failed("store the record".into(), &e)
            }
        })
    }

    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        if self.spec.topology == switchyard_plan::topology::TopologyKind::Galera {
            self.move_galera_writer(ordinal).await?;
        }
        self.label(ordinal, LABEL_SERVING, None).await
    }

    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.label(ordinal, LABEL_SERVING, Some("true")).await
    }

    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        _version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        let op = format!("restart instance {ordinal}");
        // The status first: from now on the instance's pod (and its my.cnf) is built from
        // `revision`, whoever deletes the pod.
        self.assign_revision(ordinal, revision.number, &op).await?;
        let name = self.names.pod(ordinal);
        let pod = self
            .pods
            .get_opt(&name)
            .await
            .map_err(|e| api_failed(op.clone(), &e))?;
        let Some(pod) = pod else {
            // Deleted already: the reconcile recreates it from the assigned revision.
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some()
            || pod.annotations().get(ANNOTATION_REVISION_HASH) == Some(&revision.hash)
        {
            return Ok(());
        }
        if pod_started(&pod) {
            self.ops
                .prepare_shutdown(&self.target(ordinal), slow_shutdown)
                .await
                .map_err(|e| from_ops(op.clone(), e))?;
        }
        let params = DeleteParams {
            preconditions: pod.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_failed(op, &e)),
        }
    }

    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        // The kubelet restarts a crashed container in place, on the pod's own (current)
        // revision; recovery is done when the pod is ready again.
        let ready = self.lock().seen.get(&ordinal).is_some_and(|s| s.pod_ready);
        if ready {
            Ok(())
        } else {
            Err(failed(
                RuntimeErrorKind::Transient,
                format!("recover instance {ordinal}"),
                "the kubelet is still restarting the server",
            ))
        }
    }

    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        let op = format!("fence instance {ordinal}");
        let target = self.target(ordinal);
        // The switchover pre-flight, while the instance still serves as the primary: no
        // transaction open longer than maxTransactionSeconds (it would be cut by the fence).
        // Not in a failover: a commit stuck in the semi-sync wait of a primary that froze
        // looks like a long transaction, and failing the fence would leave it unfenced.
        let failing_over = self
            .cluster()
            .status
            .and_then(|s| s.record)
            .is_some_and(|r| matches!(r.intent, Some(Intent::Failover { .. })));
        let serving = self.recorded_primary() == Some(ordinal)
            && !failing_over
            && self.view(ordinal).is_some_and(|v| v.writable);
        if serving {
            self.ops
                .wait_no_long_transaction(
                    &target,
                    self.spec.max_transaction_seconds,
                    self.instant(deadline),
                )
                .await
                .map_err(|e| from_ops(format!("{op}: wait for long transactions"), e))?;
        }
        // Out of the primary Service first: no new client reaches it while it is fenced.
        self.mark_fenced(ordinal, deadline, &op).await?;
        match self.ops.fence(&target, self.instant(deadline)).await {
            Ok(()) => Ok(()),
            // Commits wait for an acknowledgement no replica can give (a failed primary
            // running again): ending them by SQL could report them done, so the server is
            // stopped at once, its pod deleted without a grace period (the kubelet kills it;
            // the pod comes back read-only and fenced). The fence has not taken: the step
            // is tried again, and a promotion waits until the server no longer answers.
            Err(e) if e.category == "unacknowledgeable_commits" => {
                self.kill_pod(ordinal, &op).await?;
                Err(failed(
                    RuntimeErrorKind::Transient,
                    op,
                    format!("{}; its pod was deleted without a grace period", e.message),
                ))
            }
            Err(e) => Err(from_ops(op, e)),
        }
    }

    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        let op = format!("make instance {ordinal} the writable primary again");
        let seen = self.seen();
        for o in (0..self.spec.replicas).filter(|o| *o != ordinal) {
            if !seen.get(&o).is_some_and(|s| s.pod_ready) {
                continue;
            }
            let writable = match self
                .ops
                .observe(&self.target(o), Some(self.instant(deadline)))
                .await
            {
                Ok(v) => v.writable,
                // Unanswered: writable if it was when last seen.
                Err(_) => self.view(o).is_some_and(|v| v.writable),
            };
            if writable {
                return Err(failed(
                    RuntimeErrorKind::Failed,
                    op,
                    format!(
                        "instance {o} takes writes: instance {ordinal} stays fenced rather than \
                         make two writable primaries"
                    ),
                ));
            }
        }
        // Waiting for acknowledgements before it takes a write: nothing it acknowledges
        // exists on it alone.
        self.set_semi_sync_source(ordinal, true, self.instant(deadline), &op)
            .await?;
        self.ops
            .promote(&self.target(ordinal), self.instant(deadline))
            .await
            .map_err(|e| from_ops(op.clone(), e))?;
        self.note_primary(ordinal, deadline, &op).await
    }

    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        let op = format!("make instance {ordinal} a replica of {source}, not started");
        self.mark_fenced(ordinal, deadline, &op).await?;
        self.set_semi_sync_source(ordinal, false, self.instant(deadline), &op)
            .await?;
        self.ops
            .demote(
                &self.target(ordinal),
                &self.target(source),
                self.instant(deadline),
            )
            .await
            .map_err(|e| from_ops(op, e))
    }

    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.ops
            .wait_caught_up(
                &self.target(candidate),
                &self.target(from),
                self.instant(deadline),
            )
            .await
            .map_err(|e| from_ops(format!("wait for instance {candidate} to catch up"), e))
    }

    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        let op = format!("promote instance {ordinal}");
        let old = self.recorded_primary();
        // Waiting for acknowledgements before it takes a write: nothing it acknowledges
        // exists on it alone.
        self.set_semi_sync_source(ordinal, true, self.instant(deadline), &op)
            .await?;
        self.ops
            .promote(&self.target(ordinal), self.instant(deadline))
            .await
            .map_err(|e| from_ops(op.clone(), e))?;
        // Only now the role moves: the status, then the labels (the old primary's first).
        self.note_primary(ordinal, deadline, &op).await?;
        // Services do not close established connections: close them on the old primary
        // now that no Service sends new ones there.
        if let Some(old) = old.filter(|o| *o != ordinal)
            && let Err(e) = self
                .ops
                .close_client_connections(&self.target(old), self.instant(deadline))
                .await
        {
            tracing::warn!(
                instance = old,
                category = e.category,
                "could not close client connections on the demoted primary"
            );
        }
        Ok(())
    }

    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        let op = format!("make instance {ordinal} replicate from {source}");
        if self.recorded_primary() == Some(ordinal) {
            return Err(failed(
                RuntimeErrorKind::Failed,
                op,
                format!("instance {ordinal} is the primary: it does not replicate"),
            ));
        }
        let target = self.target(ordinal);
        let view = self.view(ordinal);
        if self.spec.flavor == Flavor::Mariadb
            && let Some(v) = &view
        {
            // The agent reads the data directory's mariadb_upgrade_info: the vendor's rule is
            // major.minor (a patch-level change needs no mariadb-upgrade).
            let status = self
                .ops
                .agent_status(&target)
                .await
                .map_err(|e| from_ops(op.clone(), e))?;
            if !agent::system_tables_current(self.spec.flavor, v.version, &status) {
                return Err(failed(
                    RuntimeErrorKind::Failed,
                    op,
                    format!(
                        "the system tables were not upgraded to {}.{} (mariadb_upgrade_info says \
                         {}): the agent runs mariadb-upgrade after a start on a new major.minor; \
                         check the pod's log",
                        v.version.major,
                        v.version.minor,
                        status.mariadb_upgrade_info.as_deref().unwrap_or("nothing")
                    ),
                ));
            }
        }
        // An instance with no replication configured at all is a former primary (or a
        // fresh one): its own executed position must carry over (MariaDB gtid_slave_pos). One
        // this operator fenced goes the same way: its clients are closed and its fence's lock
        // released (the applier could not commit under it), checking nothing committed.
        let marked = self
            .seen()
            .get(&ordinal)
            .and_then(|s| s.pod.as_ref())
            .is_some_and(|p| p.annotations().contains_key(ANNOTATION_FENCED));
        let former_primary = marked || view.as_ref().is_some_and(|v| v.replication.is_none());
        // A replica never waits for acknowledgements (its applier's commits would block).
        self.set_semi_sync_source(
            ordinal,
            false,
            Instant::now() + std::time::Duration::from_secs(10),
            &op,
        )
        .await?;
        self.ops
            .replicate_from(&target, &self.target(source), former_primary)
            .await
            .map_err(|e| from_ops(op.clone(), e))?;
        // A replica again: no longer fenced by this operator (its label follows).
        if marked {
            let patch = json!({ "metadata": { "annotations": { ANNOTATION_FENCED: null } } });
            let name = self.names.pod(ordinal);
            match self
                .pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_failed(format!("{op}: patch pod {name}"), &e)),
            }
        }
        Ok(())
    }

    async fn detach(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.ops
            .detach(&self.target(ordinal), self.instant(deadline))
            .await
            .map_err(|e| from_ops(format!("stop the receiver of instance {ordinal}"), e))
    }

    async fn wait_received_applied(
        &self,
        ordinal: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.ops
            .wait_received_applied(&self.target(ordinal), self.instant(deadline))
            .await
            .map_err(|e| {
                from_ops(
                    format!("wait for instance {ordinal} to apply what it received"),
                    e,
                )
            })
    }

    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        let op = format!("set variables on instance {ordinal}");
        if let Err(e) = self
            .ops
            .set_variables(&self.target(ordinal), variables)
            .await
        {
            if e.category == "refused" {
                self.lock().refusal = Some(e.message.clone());
            }
            return Err(from_ops(op, e));
        }
        // The server runs `revision` now: its my.cnf first (a container restarted from now on
        // starts with the change), then the status assigns it (a recreated pod is built from
        // it), then the pod says it.
        let entry = self
            .cluster()
            .status
            .and_then(|s| s.revisions)
            .and_then(|r| {
                r.history
                    .into_iter()
                    .rev()
                    .find(|e| e.number == revision.number && e.hash == revision.hash)
            });
        if let Some(entry) = &entry {
            self.rewrite_config(ordinal, entry, &op).await?;
            self.assign_revision(ordinal, revision.number, &op).await?;
        }
        self.annotate(ordinal, ANNOTATION_REVISION_HASH, &revision.hash)
            .await
    }

    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        let op = format!("run schema change {} on instance {ordinal}", change.id);
        let prepared = self
            .lock()
            .schema
            .clone()
            .filter(|p| p.target.id == change.id)
            .ok_or_else(|| {
                failed(
                    RuntimeErrorKind::Failed,
                    op.clone(),
                    "the change is not the cluster's accepted SchemaChange",
                )
            })?;
        let flavor = self.spec.flavor;
        let invalid = |e: switchyard_ddl::DdlError| {
            failed(
                RuntimeErrorKind::Failed,
                op.clone(),
                format!("`{}`: {e}", change.statement),
            )
        };
        let name = switchyard_ddl::alter_table_name(flavor, &change.statement).map_err(invalid)?;
        let database = name.schema.clone().unwrap_or_default();
        let before = switchyard_ddl::parse_table(flavor, &prepared.before).map_err(invalid)?;
        let expected = switchyard_ddl::apply_alter(flavor, &prepared.before, &change.statement)
            .map_err(invalid)?;
        let target = self.target(ordinal);
        let read = || async {
            let text = self
                .ops
                .show_create_table(&target, &database, &name.name)
                .await
                .map_err(|e| from_ops(op.clone(), e))?;
            let table = switchyard_ddl::parse_table(flavor, &text).map_err(invalid)?;
            Ok::<_, RuntimeError>((text, table))
        };
        let (_, current) = read().await?;
        let invisible = before.same_shape(&expected);
        let needs_alter = invisible || !current.same_shape(&expected);
        if needs_alter && !current.same_shape(&before) {
            return Err(failed(
                RuntimeErrorKind::Failed,
                op,
                format!(
                    "{database}.{} on {} has neither the definition the change starts from nor \
                     the one it makes: it was changed outside this schema change; compare it \
                     with the primary's and repair it by hand",
                    name.name, target.pod
                ),
            ));
        }
        let primary = self.observed().primary().map_or(0, |p| p.ordinal);
        let is_primary = primary == ordinal;
        if needs_alter {
            if !is_primary && !change.replica_settings.is_empty() {
                self.save_previous_settings(ordinal, change, &op).await?;
                self.ops
                    .set_variables(&target, &change.replica_settings)
                    .await
                    .map_err(|e| from_ops(op.clone(), e))?;
            }
            let fenced = self.observed().instance(ordinal).is_some_and(|i| i.fenced);
            // With LOCK=NONE where the primary was judged online: a server that would block
            // writes refuses it at the first replica, before anything changed.
            let mode = switchyard_ddl::PrimaryMode::from_online(change.primary_online);
            let statement = switchyard_ddl::rollout_statement(flavor, &change.statement, mode)
                .map_err(invalid)?;
            self.ops
                .run_ddl(&target, &statement, DDL_LOCK_WAIT, fenced && !is_primary)
                .await
                .map_err(|e| {
                    if e.category == "alter_not_supported" && statement != change.statement {
                        failed(
                            RuntimeErrorKind::Failed,
                            op.clone(),
                            format!(
                                "{} refuses to run `{statement}` without blocking writes ({}): {}",
                                target.pod,
                                e.message,
                                switchyard_ddl::NOT_ONLINE_ADVICE
                            ),
                        )
                    } else {
                        from_ops(op.clone(), e)
                    }
                })?;
        }
        if !is_primary && self.view(ordinal).is_some_and(|v| v.replication.is_some()) {
            self.ops
                .wait_caught_up(
                    &target,
                    &self.target(primary),
                    Instant::now() + DDL_CATCH_UP,
                )
                .await
                .map_err(|e| from_ops(op.clone(), e))?;
        }
        let (text, now) = read().await?;
        if !now.same_shape(&expected) {
            return Err(failed(
                RuntimeErrorKind::Failed,
                op,
                format!(
                    "{database}.{} on {} does not have the definition the change should give \
                     it after the ALTER: the server prints {}",
                    name.name,
                    target.pod,
                    text.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
            ));
        }
        self.annotate(ordinal, ANNOTATION_SCHEMA, &change.id).await
    }

    async fn pause(&self, _reason: &WaitReason) {
        // The reconciler returns and requeues; nothing waits here.
    }
}
