//! The controller: watches, per-object backoff, leader election, the HTTP endpoint and
//! graceful shutdown around [`crate::reconcile::reconcile`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt};
use rand::Rng;

use crate::context::{Clock, Context, OpsFactory, Resolver, dns_resolver, system_clock};
use crate::crd::{MySQLCluster, MySQLFleet, SchemaChange};
use crate::error::Error;
use crate::fleet::reconcile_fleet;
use crate::leader::{self, Leadership, LeaseConfig, Tenure};
use crate::metrics::{self, Metrics, Readiness};
use crate::names::{FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY};
use crate::ops::{HandleCache, InstanceOps, MysqlOps};
use crate::reconcile::reconcile;

/// The operator's settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub metrics_addr: SocketAddr,
    /// The namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// The Lease and this replica's identity.
    pub lease: LeaseConfig,
    /// The image the database pods' `install` init container copies the agent from; `None`:
    /// the image this operator runs from (read from its own pod, `POD_NAME` and
    /// `POD_NAMESPACE`).
    pub agent_image: Option<String>,
}

/// The operator could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The HTTP endpoint could not listen.
    #[error("could not serve metrics on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Lease could not be read or written.
    #[error("leader election failed: {0}")]
    Lease(#[source] kube::Error),
    /// The lease was lost while leading: this replica stopped acting.
    #[error("lost the leader lease; stopped reconciling so that the new leader acts alone")]
    LostLease,
    /// The operator's own image could not be found for the pods' agent.
    #[error(
        "could not tell which image this operator runs from ({0}): give the agent's image \
         with --agent-image (or SWITCHYARD_AGENT_IMAGE)"
    )]
    AgentImage(String),
}

impl RunError {
    /// A bounded category.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::Listen { .. } => "listen",
            RunError::Lease(_) => "lease",
            RunError::LostLease => "lost-lease",
            RunError::AgentImage(_) => "agent-image",
        }
    }
}

/// Production instance operations: SQL through `switchyard-mysql`.
#[derive(Default)]
pub struct MysqlOpsFactory {
    handles: HandleCache,
}

impl MysqlOpsFactory {
    /// A factory sharing one cache of instance handles.
    pub fn new() -> Self {
        MysqlOpsFactory::default()
    }
}

impl OpsFactory for MysqlOpsFactory {
    fn ops(
        &self,
        _namespace: &str,
        creds: &crate::credentials::ClusterCredentials,
    ) -> Arc<dyn InstanceOps> {
        Arc::new(MysqlOps::new(creds, self.handles.clone()))
    }
}

/// Per-object retry state: consecutive failures, for exponential backoff with jitter.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay after another failure of `key` (a conflict retries at once, almost).
    pub fn next(&self, key: &str, error: &Error) -> Duration {
        if error.is_conflict() {
            return Duration::from_millis(200 + rand::rng().random_range(0..300));
        }
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let base = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
        // ±20% jitter so that many failing objects do not retry in lockstep.
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The controller's shared state.
pub struct Shared {
    /// The reconcile context.
    pub ctx: Arc<Context>,
    /// Per-object backoff.
    pub backoff: Backoff,
}

fn key(cluster: &MySQLCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// Reconciles and records success for the backoff.
pub async fn reconcile_with_backoff(
    cluster: Arc<MySQLCluster>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    let k = key(&cluster);
    let result = reconcile(cluster, shared.ctx.clone()).await;
    if result.is_ok() {
        shared.backoff.reset(&k);
    }
    result
}

/// Requeues a failed object after its backoff, and logs the typed error.
pub fn error_policy(cluster: Arc<MySQLCluster>, error: &Error, shared: Arc<Shared>) -> Action {
    let delay = shared.backoff.next(&key(&cluster), error);
    tracing::warn!(
        cluster = %key(&cluster),
        category = error.category(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn fleet_key(fleet: &MySQLFleet) -> String {
    format!(
        "fleet:{}/{}",
        fleet.namespace().unwrap_or_default(),
        fleet.name_any()
    )
}

/// Reconciles a fleet and records success for the backoff.
pub async fn reconcile_fleet_with_backoff(
    fleet: Arc<MySQLFleet>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    let k = fleet_key(&fleet);
    let result = reconcile_fleet(fleet, shared.ctx.clone()).await;
    if result.is_ok() {
        shared.backoff.reset(&k);
    }
    result
}

/// Requeues a failed fleet after its backoff, and logs the typed error.
pub fn fleet_error_policy(fleet: Arc<MySQLFleet>, error: &Error, shared: Arc<Shared>) -> Action {
    let delay = shared.backoff.next(&fleet_key(&fleet), error);
    tracing::warn!(
        fleet = %fleet_key(&fleet),
        category = error.category(),
        error = %error,
        retry_in = ?delay,
        "fleet reconcile failed"
    );
    Action::requeue(delay)
}

/// Maps a cluster to every fleet of its namespace (a fleet's members are chosen by name or
/// label, and a cluster's new label may make it one), so that a member's new status moves its
/// fleet at once.
pub fn fleets_of_cluster(
    fleets: &[Arc<MySQLFleet>],
    cluster: &MySQLCluster,
) -> Vec<ObjectRef<MySQLFleet>> {
    let ns = cluster.namespace();
    fleets
        .iter()
        .filter(|f| f.namespace() == ns)
        .map(|f| ObjectRef::from_obj(f.as_ref()))
        .collect()
}

/// How long the operator waits, once stopped, for its controllers to finish their running
/// reconciles before it exits without them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The context of a production controller; `tenure` is this replica's leadership, which the
/// engine confirms before every action that changes a server.
pub fn production_context(
    client: Client,
    metrics: Arc<Metrics>,
    identity: &str,
    tenure: Arc<Tenure>,
    agent_image: String,
) -> Context {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "switchyard".into(),
            instance: Some(identity.to_owned()),
        },
    );
    let resolver: Resolver = dns_resolver();
    let clock: Clock = system_clock();
    Context {
        ops: Arc::new(MysqlOpsFactory::new()),
        client,
        resolver,
        clock,
        recorder,
        metrics,
        tenure: Some(tenure),
        agent_image,
    }
}

/// The image of the operator's own container: its pod (`POD_NAME` in `POD_NAMESPACE`, from the
/// downward API), the container named `operator`, else its first one.
///
/// # Errors
/// What is missing, in words.
pub async fn own_image(client: &Client) -> Result<String, String> {
    let name = std::env::var("POD_NAME").map_err(|_| "POD_NAME is not set".to_owned())?;
    let namespace =
        std::env::var("POD_NAMESPACE").map_err(|_| "POD_NAMESPACE is not set".to_owned())?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = pods
        .get(&name)
        .await
        .map_err(|e| format!("could not read pod {namespace}/{name}: {e}"))?;
    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == "operator")
        .or(containers.first())
        .and_then(|c| c.image.clone())
        .ok_or_else(|| format!("pod {namespace}/{name} names no image"))
}

/// Maps an object the operator labels with its cluster (pods, claims) to that cluster.
pub fn cluster_of_labels<K: kube::Resource>(obj: &K) -> Option<ObjectRef<MySQLCluster>> {
    let labels = obj.meta().labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(FIELD_MANAGER) {
        return None;
    }
    let name = labels.get(LABEL_INSTANCE)?;
    Some(ObjectRef::new(name).within(obj.meta().namespace.as_deref()?))
}

/// Maps a pod to the cluster it belongs to (by its instance label).
pub fn cluster_of_pod(pod: &Pod) -> Option<ObjectRef<MySQLCluster>> {
    cluster_of_labels(pod)
}

/// Maps a Node to the clusters with a pod on it (`spec.nodeName`, among `pods`) when the Node
/// is cordoned (`spec.unschedulable`, the first step of `kubectl drain`), so that their
/// reconcile moves a primary off it ([`crate::drain`]) at once rather than at the next requeue;
/// a schedulable Node maps to none. Each cluster is named once.
pub fn clusters_on_cordoned_node(node: &Node, pods: &[Arc<Pod>]) -> Vec<ObjectRef<MySQLCluster>> {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Vec::new();
    }
    let name = node.name_any();
    let mut clusters: Vec<ObjectRef<MySQLCluster>> = pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
        .filter_map(|p| cluster_of_pod(p))
        .collect();
    clusters.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    clusters.dedup();
    clusters
}

/// Whether the operator may list Nodes (the cluster-wide install): the Node watch is opened
/// only then. The namespaced install may not; that is logged once, here, and the drain check
/// itself skips unreadable Nodes ([`crate::drain`]).
async fn may_watch_nodes(client: &Client) -> bool {
    match Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::info!(
                error = %e,
                "Nodes cannot be listed (a namespaced install?): a cordon of a primary's node \
                 is noticed at the cluster's next reconcile, if Nodes can be read at all"
            );
            false
        }
    }
}

/// The Node watch's mapper over the pod store.
fn node_mapper(
    pods: Store<Pod>,
) -> impl Fn(Node) -> Vec<ObjectRef<MySQLCluster>> + Send + Sync + 'static {
    move |node| clusters_on_cordoned_node(&node, &pods.state())
}

/// Maps a `SchemaChange` to the cluster it names (`spec.clusterRef`, in its namespace), so
/// that a new or edited change reconciles its cluster at once rather than at the cluster's
/// next requeue.
pub fn cluster_of_schema_change(sc: &SchemaChange) -> Option<ObjectRef<MySQLCluster>> {
    let name = sc.spec.cluster_ref.trim();
    if name.is_empty() {
        return None;
    }
    Some(ObjectRef::new(name).within(&sc.namespace()?))
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until `shutdown` resolves: the HTTP endpoint at once, the controller
/// once this replica holds the Lease.
///
/// # Errors
/// [`RunError`] when the endpoint cannot listen, the Lease cannot be used, or the lease is
/// lost while leading.
pub async fn run(
    client: Client,
    cfg: OperatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let agent_image = match cfg.agent_image.clone() {
        Some(image) => image,
        None => own_image(&client).await.map_err(RunError::AgentImage)?,
    };
    let metrics = Arc::new(Metrics::new());
    let ready = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: cfg.metrics_addr,
            source,
        })?;
    drop(listener);
    let server = tokio::spawn(metrics::serve(
        cfg.metrics_addr,
        metrics.clone(),
        ready.clone(),
        stopped(stop_rx.clone()),
    ));

    // Ready means running: a follower is a healthy replica waiting for the lease.
    ready.set(true);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.lease_namespace);
    let retry = leader::renew_interval(cfg.lease.duration);
    let clock = system_clock();
    let tenure = Arc::new(Tenure::new(cfg.lease.duration));
    loop {
        if *stop_rx.borrow() {
            let _ = server.await;
            return Ok(());
        }
        match leader::renew(&leases, &cfg.lease, &tenure, clock.as_ref())
            .await
            .map_err(RunError::Lease)?
        {
            Leadership::Leading => break,
            Leadership::Following => {
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = stopped(stop_rx.clone()) => {}
                }
            }
        }
    }
    tracing::info!(identity = %cfg.lease.identity, "leading");

    // Renew the lease, telling the tenure how far each renewal reaches; losing it stops
    // the controller, and the engine confirms nothing from then on.
    let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
    let renew = {
        let leases = leases.clone();
        let lease = cfg.lease.clone();
        let stop_rx = stop_rx.clone();
        let tenure = tenure.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut last_renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = stopped(stop_rx.clone()) => return,
                }
                match leader::renew(&leases, &lease, &tenure, clock.as_ref()).await {
                    Ok(Leadership::Leading) => last_renewed = tokio::time::Instant::now(),
                    Ok(Leadership::Following) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the lease");
                        if last_renewed.elapsed() >= lease.duration {
                            break;
                        }
                    }
                }
            }
            tenure.lost();
            let _ = lost_tx.send(true);
        })
    };

    let identity = cfg.lease.identity.clone();
    let ctx = Arc::new(production_context(
        client.clone(),
        metrics.clone(),
        &identity,
        tenure.clone(),
        agent_image,
    ));
    let shared = Arc::new(Shared {
        ctx,
        backoff: Backoff::default(),
    });
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    let stop_or_lost = || {
        let stop_rx = stop_rx.clone();
        let mut lost_rx = lost_rx.clone();
        async move {
            tokio::select! {
                () = stopped(stop_rx) => {}
                _ = lost_rx.wait_for(|l| *l) => {}
            }
        }
    };
    // The pods by node, for the Node watch's mapper: a store of the managed pods (a watch of
    // their own beside the controller's trigger on pods, which keeps no store).
    let (pods, pods_writer) = reflector::store::<Pod>();
    let nodes = may_watch_nodes(&client).await;
    let pods_stream = watcher(api::<Pod>(&client, &cfg.namespace), managed.clone())
        .default_backoff()
        .reflect(pods_writer)
        .take_until(stop_or_lost());
    let pods_reflector = async move {
        if !nodes {
            return;
        }
        let stream = pods_stream;
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "pod store watch");
            }
        }
    };
    let mut clusters = Controller::new(
        api::<MySQLCluster>(&client, &cfg.namespace),
        watcher::Config::default(),
    );
    if nodes {
        clusters = clusters.watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            node_mapper(pods),
        );
    }
    let clusters = clusters
        .owns(api::<Service>(&client, &cfg.namespace), managed.clone())
        .owns(api::<ConfigMap>(&client, &cfg.namespace), managed.clone())
        .owns(
            api::<PodDisruptionBudget>(&client, &cfg.namespace),
            managed.clone(),
        )
        .watches(
            api::<Pod>(&client, &cfg.namespace),
            managed.clone(),
            |pod| cluster_of_pod(&pod),
        )
        .watches(
            api::<PersistentVolumeClaim>(&client, &cfg.namespace),
            managed,
            |claim| cluster_of_labels(&claim),
        )
        .watches(
            api::<SchemaChange>(&client, &cfg.namespace),
            watcher::Config::default(),
            |sc| cluster_of_schema_change(&sc),
        )
        .graceful_shutdown_on(stop_or_lost())
        .run(reconcile_with_backoff, error_policy, shared.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
    let fleet_controller = Controller::new(
        api::<MySQLFleet>(&client, &cfg.namespace),
        watcher::Config::default(),
    );
    let fleet_store = fleet_controller.store();
    let fleets = fleet_controller
        .watches(
            api::<MySQLCluster>(&client, &cfg.namespace),
            watcher::Config::default(),
            move |cluster| fleets_of_cluster(&fleet_store.state(), &cluster),
        )
        .graceful_shutdown_on(stop_or_lost())
        .run(reconcile_fleet_with_backoff, fleet_error_policy, shared)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "fleet controller event");
            }
        });
    // Both controllers end once the stop (or the lost lease) has let their reconciles finish.
    // One whose watch cannot run (a CRD not installed: the MySQLFleet kind on a cluster that
    // only has MySQLCluster's) does not end on its own: after SHUTDOWN_GRACE the operator
    // exits without it, so SIGTERM always releases the lease within the pod's grace period.
    let controllers = async {
        futures::join!(clusters, fleets, pods_reflector);
    };
    let overdue = async {
        stop_or_lost().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controllers => {}
        () = overdue => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "a controller had not stopped this long after the stop; exiting without it \
             (is every switchyard CRD installed? `kubectl apply -f crds/`)"
        ),
    }
    ready.set(false);
    let lost = *lost_rx.borrow();
    renew.abort();
    // Nothing is confirmed once the lease is given up (or lost).
    tenure.lost();
    if !lost && let Err(e) = leader::release(&leases, &cfg.lease).await {
        tracing::warn!(error = %e, "could not release the lease");
    }
    let _ = server.await;
    if lost {
        Err(RunError::LostLease)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn backoff_grows_per_object_resets_on_success_and_retries_conflicts_fast() {
        let b = Backoff::default();
        let err = Error::Bootstrap {
            ordinal: 0,
            message: "down".into(),
        };
        let d1 = b.next("db/a", &err);
        let d2 = b.next("db/a", &err);
        let d3 = b.next("db/a", &err);
        assert!(d1 >= Duration::from_millis(800) && d1 <= Duration::from_millis(1200));
        assert!(d2 >= Duration::from_millis(1600) && d2 <= Duration::from_millis(2400));
        assert!(d3 >= Duration::from_millis(3200) && d3 <= Duration::from_millis(4800));
        // Another object has its own count.
        assert!(b.next("db/b", &err) <= Duration::from_millis(1200));
        b.reset("db/a");
        assert!(b.next("db/a", &err) <= Duration::from_millis(1200));
        assert!(b.next("db/a", &Error::Conflict) < Duration::from_millis(500));
        for _ in 0..20 {
            b.next("db/c", &err);
        }
        assert!(b.next("db/c", &err) <= Duration::from_secs(360));
    }

    #[test]
    fn pods_map_to_their_cluster_only_when_switchyard_manages_them() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("shop-1".into()),
                namespace: Some("db".into()),
                labels: Some(
                    [
                        (LABEL_INSTANCE.to_owned(), "shop".to_owned()),
                        (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        assert_eq!(
            cluster_of_pod(&pod),
            Some(ObjectRef::new("shop").within("db"))
        );
        pod.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_MANAGED_BY.to_owned(), "someone-else".to_owned());
        assert_eq!(cluster_of_pod(&pod), None);
    }

    #[test]
    fn schema_changes_map_to_the_cluster_they_name_in_their_namespace() {
        let mut sc = SchemaChange::new(
            "add-note",
            crate::crd::SchemaChangeSpec {
                cluster_ref: "shop".into(),
                statement: "ALTER TABLE app.t ADD COLUMN note INT".into(),
                method: crate::crd::SchemaMethod::Auto,
                force: false,
                accepted_risk: None,
            },
        );
        assert_eq!(
            cluster_of_schema_change(&sc),
            None,
            "no namespace, no cluster"
        );
        sc.metadata.namespace = Some("db".into());
        assert_eq!(
            cluster_of_schema_change(&sc),
            Some(ObjectRef::new("shop").within("db"))
        );
        sc.spec.cluster_ref = " ".into();
        assert_eq!(cluster_of_schema_change(&sc), None);
    }

    #[test]
    fn a_cordoned_node_maps_to_each_cluster_with_a_pod_on_it_once() {
        let pod = |name: &str, cluster: &str, ns: &str, node: Option<&str>| {
            Arc::new(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
                    labels: Some(
                        [
                            (LABEL_INSTANCE.to_owned(), cluster.to_owned()),
                            (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
                        ]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                spec: Some(k8s_openapi::api::core::v1::PodSpec {
                    node_name: node.map(str::to_owned),
                    ..Default::default()
                }),
                ..Pod::default()
            })
        };
        let pods = [
            pod("shop-0", "shop", "db", Some("n1")),
            pod("shop-1", "shop", "db", Some("n1")),
            pod("shop-2", "shop", "db", Some("n2")),
            pod("cart-0", "cart", "team", Some("n1")),
            pod("cart-1", "cart", "team", None),
            pod("bill-0", "bill", "db", Some("n2")),
        ];
        let mut node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::core::v1::NodeSpec::default()),
            ..Node::default()
        };
        assert!(
            clusters_on_cordoned_node(&node, &pods).is_empty(),
            "a schedulable node reconciles nothing"
        );
        node.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(
            clusters_on_cordoned_node(&node, &pods),
            vec![
                ObjectRef::new("shop").within("db"),
                ObjectRef::new("cart").within("team"),
            ]
        );
        node.metadata.name = Some("n3".into());
        assert!(clusters_on_cordoned_node(&node, &pods).is_empty());
    }
}
