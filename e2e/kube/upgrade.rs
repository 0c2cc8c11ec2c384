//! End-to-end: the reconciler of switchyard-kube rolls a real 3-instance MariaDB cluster,
//! first from 10.5 to 10.11, then through a configuration change that needs restarts, while
//! the testbed's load writes through a router and its ledger counts every acknowledged write.
//!
//! The Kubernetes API is kube-fake-client (no watch, so [`World::drive`] calls
//! `reconcile()` in a loop, as a controller woken by every change would). Around it, the test
//! plays what a cluster would do, over real testbed server processes:
//! - the **StatefulSet controller and the kubelet** ([`World::kubelet_tick`]): a missing pod is
//!   created at once from the StatefulSet's current template; the kubelet stops the matching
//!   server with SIGTERM (so it shuts down as `innodb_fast_shutdown`, which the operator set,
//!   says), starts it on the version of the template's `switchyard.io/version` annotation with
//!   the ConfigMap's my.cnf, runs `mariadb-upgrade` when the template asks for it
//!   (`MARIADB_AUTO_UPGRADE`, as the image's entrypoint does) and the data directory was
//!   written by another version, and marks the pod Ready once the server accepts connections;
//! - the **Services** ([`World::services_tick`]): the router's primary endpoint goes to the
//!   ready pod labelled `switchyard.io/role=primary`, its read pool to the ready replicas
//!   labelled `switchyard.io/serving=true`;
//! - the **pod network** ([`PodNetwork`]): a pod's address is the server's `127.0.0.1:port`
//!   (the injected `Resolver`); a replication source address a server reports is resolved
//!   back to the pod's DNS name, as it would read inside a cluster; and the in-pod check of the
//!   system tables reads the same file in the server's data directory that the pod exec reads.
//!
//! Everything SQL goes through the production `MysqlOps` to the real servers.
//!
//! Run it with `cargo test -p switchyard-kube --test e2e_upgrade -- --nocapture` to see the
//! log: every engine step in order, every pod restart, every move of the primary endpoint,
//! the switchovers and their durations.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Display;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodCondition, PodStatus, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use kube_fake_client::ClientBuilder;
use switchyard_kube::build::{
    self, ANNOTATION_REVISION_HASH, ANNOTATION_VERSION, ClusterCredentials, LABEL_ROLE,
    LABEL_SERVING, Names, keys,
};
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec, MySQLClusterStatus};
use switchyard_kube::metrics::Metrics;
use switchyard_kube::ops::{HandleCache, InstanceOps, InstanceView, MysqlOps, OpsError, Target};
use switchyard_kube::reconcile::{Context, OpsFactory, reconcile};
use switchyard_kube::runtime::{Resolver, pod_ready, system_clock};
use switchyard_kube::validate::validate;
use switchyard_plan::Timestamp;
use switchyard_plan::record::Intent;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_testbed::ledger::{CheckConfig, CheckReport, CheckTarget, LedgerSnapshot, check};
use switchyard_testbed::load::{Endpoints, Load, LoadConfig, LoadHandle, prepare};
use switchyard_testbed::router::Router;
use switchyard_testbed::{Cluster, Options, ServerKind};

const NS: &str = "db";
const NAME: &str = "shop";
const INSTANCES: u32 = 3;
/// How often the loops of the operator, the kubelet and the Services run.
const POLL: Duration = Duration::from_millis(200);
/// A rollout that has not finished by then fails the test with the status.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(240);
/// A static server variable (read-only at run time on 10.5 and 10.11: a change needs a
/// restart) and the value the configuration rollout gives it.
const STATIC_VARIABLE: &str = "innodb_sort_buffer_size";
const STATIC_VALUE: &str = "2097152";
/// my.cnf keys that name files of the data volume: the testbed lays its data directory out
/// itself (binary and relay logs under its own names), as an image's volume layout would.
const VOLUME_LAYOUT_KEYS: [&str; 2] = ["log_bin", "relay_log"];
/// Kubernetes keeps a drained endpoint's established connections; so does this router, for
/// longer than any test runs.
const KEEP_DRAINED_CONNECTIONS: Duration = Duration::from_secs(3600);

/// Where the test's log is also written, so that `cargo xtask ci` can show it (the test
/// harness keeps a passing test's stdout to itself).
pub const LOG_FILE: &str = "kube-e2e-upgrade.log";

/// The test's log on stdout and in [`LOG_FILE`] under cargo's temporary folder for tests,
/// every line stamped with the seconds since the test started.
struct Log {
    start: Instant,
    start_ms: u64,
    file: Mutex<Option<std::fs::File>>,
}

impl Log {
    fn new() -> Log {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(LOG_FILE);
        Log {
            start: Instant::now(),
            start_ms: system_clock()().0,
            file: Mutex::new(std::fs::File::create(path).ok()),
        }
    }

    fn line(&self, line: String) {
        println!("{line}");
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = file.as_mut() {
            // The file is a copy for the CI log; stdout has every line regardless.
            let _ = writeln!(f, "{line}");
        }
    }

    fn say(&self, who: &str, what: impl Display) {
        let secs = self.start.elapsed().as_secs_f64();
        self.line(format!("[{secs:>7.2}s] {who:<9} {what}"));
    }

    /// A line stamped with a time the operator recorded.
    fn say_at(&self, at: Timestamp, who: &str, what: impl Display) {
        let secs = (i128::from(at.0) - i128::from(self.start_ms)) as f64 / 1000.0;
        self.line(format!("[{secs:>7.2}s] {who:<9} {what}"));
    }
}

/// What the pod network and its DNS give the operator, over testbed servers on loopback.
struct PodNetwork {
    /// Each ordinal's port on 127.0.0.1.
    ports: Vec<u16>,
    /// Each ordinal's data directory (the pod's data volume).
    datadirs: Vec<PathBuf>,
    /// One handle per server to read the port of its replication source.
    probes: Vec<switchyard_mysql::Instance>,
}

impl PodNetwork {
    fn new(testbed: &Cluster) -> PodNetwork {
        let operator = &testbed.credentials().operator;
        let creds = switchyard_mysql::Credentials::new(operator.user(), operator.password());
        let instances = testbed.instances();
        PodNetwork {
            ports: instances
                .iter()
                .map(switchyard_testbed::Instance::port)
                .collect(),
            datadirs: instances
                .iter()
                .map(switchyard_testbed::Instance::datadir)
                .collect(),
            probes: instances
                .iter()
                .map(|i| {
                    switchyard_mysql::Instance::new(
                        i.name(),
                        switchyard_mysql::InstanceAddr::new("127.0.0.1", i.port()),
                        creds.clone(),
                    )
                })
                .collect(),
        }
    }

    /// The injected resolver: pod `ordinal` is its server's `127.0.0.1:port`.
    fn resolver(&self) -> Resolver {
        let ports = self.ports.clone();
        Arc::new(move |_: &Names, ordinal| {
            let port = usize::try_from(ordinal)
                .ok()
                .and_then(|o| ports.get(o).copied())
                .unwrap_or(0);
            ("127.0.0.1".to_owned(), port)
        })
    }

    /// The ordinal of the server at `host:port`.
    fn ordinal_at(&self, host: &str, port: u16) -> Option<u32> {
        if host != "127.0.0.1" {
            return None;
        }
        let index = self.ports.iter().position(|p| *p == port)?;
        u32::try_from(index).ok()
    }
}

fn index(ordinal: u32) -> usize {
    usize::try_from(ordinal).expect("an ordinal fits usize")
}

/// The production [`MysqlOps`], seen through the pod network: replication sources are
/// reported by their pod DNS names, and the system-table check reads the data directory's
/// `mariadb_upgrade_info` as the in-pod exec does. Every other operation is `MysqlOps`'s own.
struct PodNetworkOps {
    inner: MysqlOps,
    net: Arc<PodNetwork>,
}

#[async_trait]
impl InstanceOps for PodNetworkOps {
    async fn observe(
        &self,
        t: &Target,
        deadline: Option<Instant>,
    ) -> Result<InstanceView, OpsError> {
        let mut view = self.inner.observe(t, deadline).await?;
        if let Some(replication) = view.replication.as_mut() {
            let probe = self.net.probes[index(t.ordinal)]
                .observe()
                .await
                .map_err(|e| OpsError::from_mysql(&e))?;
            if let Some(source) = probe.replication
                && let Some(o) = self.net.ordinal_at(&source.source_host, source.source_port)
            {
                let names = Names {
                    cluster: t.cluster.clone(),
                    namespace: t.namespace.clone(),
                };
                replication.source_host = names.pod_host(o);
            }
        }
        Ok(view)
    }

    async fn wait_no_long_transaction(
        &self,
        t: &Target,
        max_seconds: u64,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        self.inner
            .wait_no_long_transaction(t, max_seconds, deadline)
            .await
    }

    async fn fence(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        self.inner.fence(t, deadline).await
    }

    async fn demote(&self, t: &Target, source: &Target, deadline: Instant) -> Result<(), OpsError> {
        self.inner.demote(t, source, deadline).await
    }

    async fn wait_caught_up(
        &self,
        candidate: &Target,
        from: &Target,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        self.inner.wait_caught_up(candidate, from, deadline).await
    }

    async fn promote(&self, t: &Target, deadline: Instant) -> Result<(), OpsError> {
        self.inner.promote(t, deadline).await
    }

    async fn replicate_from(
        &self,
        t: &Target,
        source: &Target,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        self.inner.replicate_from(t, source, former_primary).await
    }

    async fn prepare_shutdown(&self, t: &Target, slow: bool) -> Result<(), OpsError> {
        self.inner.prepare_shutdown(t, slow).await
    }

    async fn close_client_connections(
        &self,
        t: &Target,
        deadline: Instant,
    ) -> Result<(), OpsError> {
        self.inner.close_client_connections(t, deadline).await
    }

    async fn variable_metadata(
        &self,
        t: &Target,
        probe: &[String],
    ) -> Result<switchyard_config::ServerMetadata, OpsError> {
        self.inner.variable_metadata(t, probe).await
    }

    async fn set_variables(
        &self,
        t: &Target,
        variables: &[(String, String)],
    ) -> Result<(), OpsError> {
        self.inner.set_variables(t, variables).await
    }

    async fn accounts(&self, t: &Target) -> Result<Vec<switchyard_config::Account>, OpsError> {
        self.inner.accounts(t).await
    }

    async fn show_create_table(
        &self,
        t: &Target,
        database: &str,
        table: &str,
    ) -> Result<String, OpsError> {
        self.inner.show_create_table(t, database, table).await
    }

    async fn run_ddl(
        &self,
        t: &Target,
        statement: &str,
        lock_wait: Duration,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        self.inner
            .run_ddl(t, statement, lock_wait, former_primary)
            .await
    }

    async fn system_tables_current(
        &self,
        t: &Target,
        flavor: Flavor,
        version: Version,
    ) -> Result<bool, OpsError> {
        if flavor == Flavor::Mysql {
            return Ok(true);
        }
        Ok(upgrade_info(&self.net.datadirs[index(t.ordinal)]) == Some(version))
    }
}

/// The version `mariadb-upgrade` last recorded in a data directory, if any.
fn upgrade_info(datadir: &Path) -> Option<Version> {
    ["mariadb_upgrade_info", "mysql_upgrade_info"]
        .iter()
        .find_map(|f| std::fs::read_to_string(datadir.join(f)).ok())
        .and_then(|text| Version::parse(text.trim()).ok())
}

struct Factory {
    net: Arc<PodNetwork>,
    handles: HandleCache,
}

impl OpsFactory for Factory {
    fn ops(&self, _namespace: &str, creds: &ClusterCredentials) -> Arc<dyn InstanceOps> {
        Arc::new(PodNetworkOps {
            inner: MysqlOps::new(None, creds, self.handles.clone()),
            net: self.net.clone(),
        })
    }
}

/// The loops that run beside the operator.
#[derive(Clone, Copy, Debug)]
enum Side {
    Kubelet,
    Services,
}

/// A restart the kubelet carried out.
#[derive(Clone, Debug)]
struct Restart {
    ordinal: u32,
    at: Instant,
    version: String,
}

/// A change of the primary endpoint.
#[derive(Clone, Debug)]
struct PrimaryMove {
    at: Instant,
    to: Option<u32>,
}

/// The fake API, the operator's context, the servers, the router, and what the kubelet and
/// the Services did.
struct World {
    log: Log,
    client: Client,
    ctx: Arc<Context>,
    testbed: Cluster,
    router: Router,
    /// Ordinals whose first pod was created: that pod adopted the server the test started.
    adopted: Mutex<BTreeSet<u32>>,
    restarts: Mutex<Vec<Restart>>,
    moves: Mutex<Vec<PrimaryMove>>,
    /// Record history entries already logged.
    logged: Mutex<HashSet<(u64, String)>>,
    phase: Mutex<Option<String>>,
    /// The switchover step and the wait last logged.
    shown: Mutex<[Option<String>; 2]>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// my.cnf lines (`key=value`) for the testbed from a rendered my.cnf, without the keys of the
/// data volume's layout.
fn cnf_lines(cnf: &str) -> Vec<String> {
    cnf.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim();
            (!VOLUME_LAYOUT_KEYS.contains(&k)).then(|| format!("{k}={}", v.trim()))
        })
        .collect()
}

fn kind_of(version: Version) -> ServerKind {
    ServerKind::from_series(
        switchyard_testbed::Flavor::Mariadb,
        &format!("{}.{}", version.major, version.minor),
    )
    .unwrap_or_else(|| panic!("the testbed has no MariaDB {version}"))
}

/// The version the testbed's `kind` runs (fetching it if needed).
async fn testbed_version(kind: ServerKind) -> Version {
    let bins = tokio::task::spawn_blocking(move || switchyard_testbed::binaries(kind))
        .await
        .expect("fetching the server")
        .unwrap_or_else(|e| panic!("fetch {kind}: {e}"));
    Version::parse(bins.version()).expect("a server version")
}

fn cluster_spec(version: Version) -> MySQLClusterSpec {
    serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": version.to_string(),
        "replicas": INSTANCES,
        "update": {
            "drainSeconds": 1,
            "maxLagSeconds": 10,
            "startupTimeout": "3m",
            "shutdownTimeout": "2m",
            "switchoverDeadline": "30s",
            "haltAfter": "3m",
        },
    }))
    .expect("a spec")
}

fn credentials_secret(testbed: &Cluster) -> Secret {
    let c = testbed.credentials();
    let data = [
        (keys::ROOT_PASSWORD, "unused-by-the-testbed"),
        (keys::OPERATOR_USER, c.operator.user()),
        (keys::OPERATOR_PASSWORD, c.operator.password()),
        (keys::REPLICATION_USER, c.replication.user()),
        (keys::REPLICATION_PASSWORD, c.replication.password()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{NAME}-credentials")),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    }
}

fn ready_condition() -> serde_json::Value {
    serde_json::json!({
        "status": {
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": "True" }],
        }
    })
}

/// A new pod `ordinal` from the StatefulSet's current template, not ready yet.
fn pod_from(sts: &StatefulSet, ordinal: u32) -> Pod {
    let template = sts
        .spec
        .as_ref()
        .expect("a StatefulSet spec")
        .template
        .clone();
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{NAME}-{ordinal}")),
            namespace: Some(NS.into()),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: NAME.into(),
                uid: sts.meta().uid.clone().unwrap_or_default(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn template_annotation(sts: &StatefulSet, key: &str) -> Option<String> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

/// Whether the template's server container asks the entrypoint to run `mariadb-upgrade`.
fn template_auto_upgrade(sts: &StatefulSet) -> bool {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.name == build::CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .any(|e| e.name == "MARIADB_AUTO_UPGRADE" && e.value.as_deref() == Some("1"))
}

fn status(c: &MySQLCluster) -> MySQLClusterStatus {
    c.status.clone().unwrap_or_default()
}

/// Whether every instance runs revision `number` and the operator has nothing left to do.
fn rolled_out(c: &MySQLCluster, pods: &[Pod], number: u64) -> bool {
    let s = status(c);
    let revisions = s.revisions.clone().unwrap_or_default();
    s.observed_generation == c.metadata.generation
        && s.phase.as_deref() == Some("Ready")
        && revisions.update == Some(number)
        && revisions.current == Some(number)
        && s.record.as_ref().is_some_and(|r| r.intent.is_none())
        && s.instances.len() == index(INSTANCES)
        && s.instances
            .iter()
            .all(|i| i.ready && i.revision == Some(number))
        && pods.len() == index(INSTANCES)
        && pods.iter().all(|p| {
            pod_ready(p) && p.labels().get(LABEL_SERVING).map(String::as_str) == Some("true")
        })
}

impl World {
    fn clusters(&self) -> Api<MySQLCluster> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn cluster(&self) -> MySQLCluster {
        self.clusters().get(NAME).await.expect("the cluster")
    }

    async fn pod_list(&self) -> Result<Vec<Pod>, String> {
        self.pods()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| format!("list pods: {e}"))
    }

    /// Edits the spec, as `kubectl apply` would.
    async fn edit(&self, f: impl FnOnce(&mut MySQLClusterSpec)) {
        let mut c = self.cluster().await;
        f(&mut c.spec);
        c.metadata.managed_fields = None;
        self.clusters()
            .replace(NAME, &PostParams::default(), &c)
            .await
            .expect("edit the spec");
    }

    /// Logs what the operator recorded since the last call: new engine history entries and
    /// phase changes.
    fn report(&self, c: &MySQLCluster) {
        let s = status(c);
        {
            let mut phase = locked(&self.phase);
            if s.phase != *phase {
                let primary = s
                    .current_primary
                    .map_or_else(|| "none".to_owned(), |p| p.to_string());
                self.log.say(
                    "operator",
                    format!(
                        "phase {} (primary {primary}, ready {})",
                        s.phase.as_deref().unwrap_or("-"),
                        s.ready.as_deref().unwrap_or("-")
                    ),
                );
                phase.clone_from(&s.phase);
            }
        }
        let Some(record) = &s.record else { return };
        // The switchover's sub-steps and the engine's waits, as the record shows them.
        let now = [
            record.intent.as_ref().and_then(|i| match i {
                Intent::Switchover { from, to, step, .. } => {
                    Some(format!("switchover {from} -> {to}: step {step:?}"))
                }
                _ => None,
            }),
            record
                .waiting
                .as_ref()
                .map(|w| format!("waiting: {}", w.key)),
        ];
        {
            let mut shown = locked(&self.shown);
            for (line, before) in now.iter().zip(shown.iter_mut()) {
                if line != before {
                    if let Some(line) = line {
                        self.log.say("engine", line);
                    }
                    before.clone_from(line);
                }
            }
        }
        let mut logged = locked(&self.logged);
        for e in &record.history {
            if logged.insert((e.at.0, e.action.clone())) {
                match &e.error {
                    None => self.log.say_at(e.at, "engine", &e.action),
                    Some(err) => {
                        self.log
                            .say_at(e.at, "engine", format!("{} FAILED: {err}", e.action))
                    }
                }
            }
        }
    }

    /// The operator: `reconcile()` in a loop until `done` holds.
    async fn drive(
        &self,
        what: &str,
        stop: &Cell<bool>,
        done: impl Fn(&MySQLCluster, &[Pod]) -> bool,
    ) -> Result<MySQLCluster, String> {
        let deadline = Instant::now() + ROLLOUT_DEADLINE;
        loop {
            if stop.get() {
                return Err(format!(
                    "{what}: stopped because the kubelet or a Service failed"
                ));
            }
            let c = self.cluster().await;
            if let Err(e) = reconcile(Arc::new(c), self.ctx.clone()).await {
                // Conflicts and transient errors are retried by the next round, as the
                // controller's backoff would.
                self.log.say(
                    "operator",
                    format!("reconcile failed ({}): {e}", e.category()),
                );
            }
            let c = self.cluster().await;
            self.report(&c);
            let s = status(&c);
            if matches!(s.phase.as_deref(), Some("Halted" | "Blocked" | "Invalid")) {
                return Err(format!(
                    "{what}: the rollout stopped in phase {:?}; status: {}",
                    s.phase,
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                ));
            }
            let pods = self.pod_list().await?;
            if done(&c, &pods) {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{what}: not done after {ROLLOUT_DEADLINE:?}; status: {}",
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The StatefulSet controller and the kubelet, one round.
    async fn kubelet_tick(&self) -> Result<(), String> {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), NS);
        let Some(sts) = sets
            .get_opt(NAME)
            .await
            .map_err(|e| format!("read the StatefulSet: {e}"))?
        else {
            return Ok(());
        };
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        for ordinal in 0..u32::try_from(replicas).unwrap_or(0) {
            let name = format!("{NAME}-{ordinal}");
            let exists = self
                .pods()
                .get_opt(&name)
                .await
                .map_err(|e| format!("read pod {name}: {e}"))?
                .is_some();
            if exists {
                continue;
            }
            // The StatefulSet controller: a new pod from the current template.
            self.pods()
                .create(&PostParams::default(), &pod_from(&sts, ordinal))
                .await
                .map_err(|e| format!("create pod {name}: {e}"))?;
            let first = locked(&self.adopted).insert(ordinal);
            if first {
                // The server the test started before the operator existed is this pod's.
                let running = self.testbed.instance(index(ordinal)).server_version().await;
                self.log.say(
                    "kubelet",
                    format!(
                        "pod {name} created, adopting the running server ({})",
                        running.map_err(|e| e.to_string())?
                    ),
                );
            } else {
                self.restart(ordinal, &sts).await?;
            }
            self.pods()
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(ready_condition()),
                )
                .await
                .map_err(|e| format!("mark pod {name} ready: {e}"))?;
        }
        Ok(())
    }

    /// The kubelet starts pod `ordinal` at the template: the old container stops (SIGTERM),
    /// the new one starts the template's version with the ConfigMap's my.cnf.
    async fn restart(&self, ordinal: u32, sts: &StatefulSet) -> Result<(), String> {
        let name = format!("{NAME}-{ordinal}");
        let version: Version = template_annotation(sts, ANNOTATION_VERSION)
            .ok_or("the pod template has no version annotation")?
            .parse()
            .map_err(|e| format!("the template's version: {e}"))?;
        let hash = template_annotation(sts, ANNOTATION_REVISION_HASH).unwrap_or_default();
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), NS);
        let cnf = config_maps
            .get(&format!("{NAME}-config"))
            .await
            .map_err(|e| format!("read the ConfigMap: {e}"))?
            .data
            .and_then(|d| d.get("my.cnf").cloned())
            .ok_or("the ConfigMap has no my.cnf")?;
        let lines = cnf_lines(&cnf);
        let instance = self.testbed.instance(index(ordinal));
        let started = Instant::now();
        self.log.say(
            "kubelet",
            format!(
                "pod {name} deleted: stopping server {ordinal} (SIGTERM), then starting MariaDB \
                 {version} at template {}",
                &hash[..hash.len().min(12)]
            ),
        );
        if instance.is_running() {
            instance
                .stop()
                .await
                .map_err(|e| format!("stop server {ordinal}: {e}"))?;
        }
        let stopped = started.elapsed();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        instance
            .start_with(kind_of(version), &refs)
            .await
            .map_err(|e| format!("start server {ordinal} on {version}: {e}"))?;
        let running: Version = instance
            .server_version()
            .await
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e| format!("server {ordinal}'s version: {e}"))?;
        let mut upgraded = "";
        let recorded = upgrade_info(&instance.datadir());
        if template_auto_upgrade(sts) && recorded.is_none_or(|v| v.series() != running.series()) {
            instance
                .mariadb_upgrade()
                .await
                .map_err(|e| format!("mariadb-upgrade on server {ordinal}: {e}"))?;
            upgraded = ", mariadb-upgrade ran";
        }
        self.log.say(
            "kubelet",
            format!(
                "pod {name} ready: server {ordinal} runs {running} (shutdown {:.1}s, restart \
                 {:.1}s{upgraded})",
                stopped.as_secs_f64(),
                started.elapsed().as_secs_f64()
            ),
        );
        locked(&self.restarts).push(Restart {
            ordinal,
            at: Instant::now(),
            version: running.to_string(),
        });
        Ok(())
    }

    /// The Services, one round: the router follows the pods' role and serving labels.
    async fn services_tick(&self) -> Result<(), String> {
        let pods = self.pod_list().await?;
        let cluster = self.cluster().await;
        // Between the operator's rounds too, so that the sub-steps of a switchover it runs
        // in one round show up as they are recorded.
        self.report(&cluster);
        let current = status(&cluster).current_primary;
        let names = Names {
            cluster: NAME.into(),
            namespace: NS.into(),
        };
        let mut primaries = Vec::new();
        let mut serving = BTreeSet::new();
        for p in pods.iter().filter(|p| pod_ready(p)) {
            let Some(o) = names.ordinal_of(&p.name_any()) else {
                continue;
            };
            match p.labels().get(LABEL_ROLE).map(String::as_str) {
                Some("primary") => primaries.push(o),
                Some("replica")
                    if p.labels().get(LABEL_SERVING).map(String::as_str) == Some("true") =>
                {
                    serving.insert(o);
                }
                _ => {}
            }
        }
        let want = match primaries.as_slice() {
            [only] => Some(*only),
            [] => None,
            many => current.filter(|c| many.contains(c)),
        };
        if self.router.primary() != want {
            let closed = self
                .router
                .set_primary(want)
                .await
                .map_err(|e| format!("move the primary endpoint: {e}"))?;
            let to = want.map_or_else(|| "no pod".to_owned(), |o| format!("pod {NAME}-{o}"));
            self.log.say(
                "service",
                format!("{NAME}-primary endpoint -> {to} ({closed} client sessions closed)"),
            );
            locked(&self.moves).push(PrimaryMove {
                at: Instant::now(),
                to: want,
            });
        }
        for o in 0..INSTANCES {
            let drained = self.router.is_drained(o);
            if serving.contains(&o) && drained == Some(true) {
                self.router.undrain(o).map_err(|e| e.to_string())?;
                self.log
                    .say("service", format!("{NAME}-replicas + pod {NAME}-{o}"));
            } else if !serving.contains(&o) && drained == Some(false) {
                self.router
                    .drain(o, KEEP_DRAINED_CONNECTIONS)
                    .await
                    .map_err(|e| e.to_string())?;
                self.log
                    .say("service", format!("{NAME}-replicas - pod {NAME}-{o}"));
            }
        }
        Ok(())
    }

    /// The kubelet's or the Services' loop, until `stop`; a failure stops everything.
    async fn side(&self, side: Side, stop: &Cell<bool>, failure: &RefCell<Option<String>>) {
        while !stop.get() {
            let result = match side {
                Side::Kubelet => self.kubelet_tick().await,
                Side::Services => self.services_tick().await,
            };
            if let Err(e) = result {
                *failure.borrow_mut() = Some(format!("{side:?}: {e}"));
                stop.set(true);
            }
            tokio::time::sleep(POLL / 2).await;
        }
    }

    /// Runs the operator until `done`, with the kubelet and the Services running alongside.
    async fn run(&self, what: &str, done: impl Fn(&MySQLCluster, &[Pod]) -> bool) -> MySQLCluster {
        self.log.say("test", format!("--- {what} ---"));
        let stop = Cell::new(false);
        let failure: RefCell<Option<String>> = RefCell::new(None);
        let operator = async {
            let result = self.drive(what, &stop, done).await;
            stop.set(true);
            result
        };
        let ((), (), result) = tokio::join!(
            self.side(Side::Kubelet, &stop, &failure),
            self.side(Side::Services, &stop, &failure),
            operator,
        );
        if let Some(f) = failure.borrow().as_ref() {
            panic!("{f}");
        }
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    /// What every server says: (ordinal, version, read_only, the static variable).
    async fn servers(&self) -> Vec<(u32, String, bool, String)> {
        let mut out = Vec::new();
        for (o, instance) in (0u32..).zip(self.testbed.instances()) {
            let mut conn = instance.connect_root().await.expect("connect as root");
            let (version, read_only, value): (String, i64, String) = sqlx::query_as(
                // The variable is STATIC_VARIABLE.
                "SELECT @@version, CAST(@@read_only AS SIGNED), \
                 CAST(@@innodb_sort_buffer_size AS CHAR)",
            )
            .fetch_one(&mut conn)
            .await
            .expect("read the server's variables");
            out.push((o, version, read_only != 0, value));
        }
        out
    }

    /// Whether `STATIC_VARIABLE` is read-only at run time on server 0 (so a change restarts).
    async fn variable_is_static(&self) -> bool {
        let mut conn = self.testbed.instance(0).connect_root().await.expect("root");
        let (read_only,): (String,) = sqlx::query_as(
            "SELECT READ_ONLY FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME = ?",
        )
        .bind(STATIC_VARIABLE.to_ascii_uppercase())
        .fetch_one(&mut conn)
        .await
        .expect("the variable's metadata");
        read_only == "YES"
    }

    fn restarts_since(&self, t: Instant) -> Vec<Restart> {
        locked(&self.restarts)
            .iter()
            .filter(|r| r.at >= t)
            .cloned()
            .collect()
    }

    fn moves_since(&self, t: Instant) -> Vec<PrimaryMove> {
        locked(&self.moves)
            .iter()
            .filter(|m| m.at >= t)
            .cloned()
            .collect()
    }

    /// Asserts a rollout's shape from what the kubelet and the Services saw since `since`:
    /// every replica restarted first, then the primary endpoint moved from `old_primary` to
    /// the new primary, then the old primary restarted last. Returns the new primary.
    fn assert_replicas_first_primary_last(&self, since: Instant, old_primary: u32) -> u32 {
        let restarts = self.restarts_since(since);
        let order: Vec<u32> = restarts.iter().map(|r| r.ordinal).collect();
        assert_eq!(
            order.len(),
            index(INSTANCES),
            "every instance restarts exactly once: {order:?}"
        );
        assert_eq!(
            order.last(),
            Some(&old_primary),
            "the primary restarts last: {order:?}"
        );
        let primary_restart = restarts.last().expect("restarts").at;
        let settled = self
            .moves_since(since)
            .into_iter()
            .filter(|m| m.at < primary_restart)
            .filter_map(|m| m.to)
            .next_back()
            .expect("the primary endpoint moved before the old primary restarted");
        assert_ne!(settled, old_primary, "the primary moved away first");
        for r in &restarts[..restarts.len() - 1] {
            let moved = self
                .moves_since(since)
                .into_iter()
                .find(|m| m.to.is_some_and(|o| o != old_primary))
                .expect("a move");
            assert!(
                r.at < moved.at,
                "replica {} restarted after the switchover",
                r.ordinal
            );
        }
        settled
    }
}

async fn check_writes(testbed: &Cluster, ledger: &LedgerSnapshot) -> CheckReport {
    let operator = &testbed.credentials().operator;
    let targets: Vec<CheckTarget> = testbed
        .instances()
        .iter()
        .map(|i| CheckTarget::of(i, operator))
        .collect();
    check(ledger, &targets, &CheckConfig::default())
        .await
        .expect("check the acknowledged writes")
}

fn log_switchover(w: &World, c: &MySQLCluster, load: &LoadHandle, window: (Instant, Instant)) {
    let last = status(c).last_switchover.expect("status.lastSwitchover");
    w.log.say(
        "result",
        format!(
            "switchover {} -> {} took {} ms (status.lastSwitchover at {})",
            last.from, last.to, last.duration_millis, last.time.0
        ),
    );
    let ledger = load.ledger();
    let range = ledger.offset_of(window.0)..ledger.offset_of(window.1);
    if let Some(gap) = ledger.snapshot().longest_gap_in(range) {
        w.log.say(
            "result",
            format!(
                "longest pause of acknowledged writes during the rollout: {} ms",
                gap.length().as_millis()
            ),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_upgrade_and_a_restart_config_change_roll_through_real_servers_under_load() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let log = Log::new();
    let v105 = testbed_version(ServerKind::Mariadb105).await;
    let v1011 = testbed_version(ServerKind::Mariadb1011).await;

    // The cluster object, and servers started with the my.cnf of its first revision.
    let mut cluster = MySQLCluster::new(NAME, cluster_spec(v105));
    cluster.metadata.namespace = Some(NS.into());
    let valid = validate(NAME, &cluster.spec).expect("a valid spec");
    let cnf = build::render_my_cnf(&valid);
    log.say("testbed", format!("starting {INSTANCES} x MariaDB {v105}"));
    let testbed = switchyard_testbed::replication_with(
        &[ServerKind::Mariadb105; 3],
        &Options {
            extra_cnf: cnf_lines(&cnf),
        },
    )
    .await
    .expect("start the servers");
    let backends: Vec<(u32, SocketAddr)> = (0u32..)
        .zip(testbed.instances())
        .map(|(o, i)| (o, SocketAddr::from(([127, 0, 0, 1], i.port()))))
        .collect();
    let router = Router::start(backends).await.expect("start the router");

    let client = ClientBuilder::new()
        .with_resource::<MySQLCluster>()
        .with_status_subresource::<MySQLCluster>()
        .with_object(cluster)
        .build()
        .await
        .expect("a fake API");
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &credentials_secret(&testbed))
        .await
        .expect("the credentials Secret");
    let net = Arc::new(PodNetwork::new(&testbed));
    let ctx = Arc::new(Context {
        client: client.clone(),
        ops: Arc::new(Factory {
            net: net.clone(),
            handles: HandleCache::default(),
        }),
        resolver: net.resolver(),
        clock: system_clock(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "switchyard".into(),
                instance: Some("e2e".into()),
            },
        ),
        metrics: Arc::new(Metrics::new()),
        tenure: None,
    });
    let w = World {
        log,
        client,
        ctx,
        testbed,
        router,
        adopted: Mutex::default(),
        restarts: Mutex::default(),
        moves: Mutex::default(),
        logged: Mutex::default(),
        phase: Mutex::default(),
        shown: Mutex::default(),
    };

    // Bootstrap: the pods adopt the servers; 0 is the primary.
    w.run("bootstrap", |c, pods| rolled_out(c, pods, 1)).await;
    assert_eq!(status(&w.cluster().await).current_primary, Some(0));
    assert_eq!(w.router.primary(), Some(0));

    // The load writes through the router's primary endpoint from now on.
    prepare(
        &w.testbed
            .instance(0)
            .connect_options(&w.testbed.credentials().operator),
        "app.ledger",
    )
    .await
    .expect("create the ledger table");
    let mut config = LoadConfig::default();
    config.rate_per_sec = 100;
    let load = Load::start(config, Endpoints::from(&w.router), w.testbed.credentials())
        .expect("start the load");
    switchyard_testbed::wait_for(Duration::from_secs(30), async || {
        (load.acknowledged() >= 50).then_some(())
    })
    .await
    .expect("the load writes");

    // Scenario 1: 10.5 -> 10.11, replicas first, the primary last behind a switchover.
    let started = Instant::now();
    w.log.say("test", format!("spec.version {v105} -> {v1011}"));
    w.edit(|s| s.version = v1011.to_string()).await;
    let c = w
        .run("version upgrade", |c, pods| rolled_out(c, pods, 2))
        .await;
    let ended = Instant::now();
    let primary = w.assert_replicas_first_primary_last(started, 0);
    let s = status(&c);
    assert_eq!(s.current_primary, Some(primary));
    assert_eq!(
        s.current_version.as_deref(),
        Some(v1011.to_string().as_str())
    );
    let last = s.last_switchover.clone().expect("status.lastSwitchover");
    assert_eq!((last.from, last.to), (0, primary));
    for r in w.restarts_since(started) {
        assert_eq!(r.version, v1011.to_string(), "restart of {}", r.ordinal);
    }
    let servers = w.servers().await;
    for (o, version, _, _) in &servers {
        assert!(
            version.starts_with(&format!("{}.{}.", v1011.major, v1011.minor)),
            "server {o} runs {version}"
        );
    }
    let writable: Vec<u32> = servers.iter().filter(|s| !s.2).map(|s| s.0).collect();
    assert_eq!(
        writable,
        vec![primary],
        "exactly one writable server: the primary"
    );
    assert_eq!(w.router.primary(), Some(primary));
    log_switchover(&w, &c, &load, (started, ended));
    let report = check_writes(&w.testbed, &load.ledger().snapshot()).await;
    w.log.say(
        "result",
        format!(
            "after the upgrade: {} acknowledged writes, {} missing",
            report.acknowledged,
            report.total_missing()
        ),
    );
    assert!(
        report.no_lost_writes(),
        "acknowledged writes lost in the upgrade: {:?}",
        report.missing
    );

    // Scenario 2: a static variable changes: a rolling restart, the primary last again.
    assert!(
        w.variable_is_static().await,
        "{STATIC_VARIABLE} must be static for this scenario"
    );
    let before: Vec<String> = servers.iter().map(|s| s.3.clone()).collect();
    assert!(before.iter().all(|v| v != STATIC_VALUE), "{before:?}");
    let started = Instant::now();
    w.log.say(
        "test",
        format!("spec.config {STATIC_VARIABLE}: {STATIC_VALUE}"),
    );
    w.edit(|s| {
        s.config.insert(STATIC_VARIABLE.into(), STATIC_VALUE.into());
    })
    .await;
    let c = w
        .run("configuration rollout", |c, pods| rolled_out(c, pods, 3))
        .await;
    let ended = Instant::now();
    let new_primary = w.assert_replicas_first_primary_last(started, primary);
    let s = status(&c);
    assert_eq!(s.current_primary, Some(new_primary));
    let last = s.last_switchover.clone().expect("status.lastSwitchover");
    assert_eq!((last.from, last.to), (primary, new_primary));
    let servers = w.servers().await;
    for (o, _, _, value) in &servers {
        assert_eq!(value, STATIC_VALUE, "server {o} runs the new configuration");
    }
    let writable: Vec<u32> = servers.iter().filter(|s| !s.2).map(|s| s.0).collect();
    assert_eq!(writable, vec![new_primary], "exactly one writable server");
    log_switchover(&w, &c, &load, (started, ended));

    // No acknowledged write lost, on any server.
    let report = load.stop().await;
    let checked = check_writes(&w.testbed, &report.ledger).await;
    w.log.say(
        "result",
        format!(
            "{} acknowledged writes over both rollouts, {} missing on any server, {} errors \
             seen by the load",
            checked.acknowledged,
            checked.total_missing(),
            checked.errors
        ),
    );
    assert!(
        checked.acknowledged > 200,
        "the load barely ran: {checked:?}"
    );
    assert!(
        checked.no_lost_writes(),
        "acknowledged writes lost: {:?}",
        checked.missing
    );
    // What the operator told users: Events and metrics of both rollouts and switchovers.
    let events: Api<K8sEvent> = Api::namespaced(w.client.clone(), NS);
    let events = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items;
    // The recorder folds repeats of a reason into a series: count its occurrences.
    let count = |reason: &str| -> i32 {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum()
    };
    for e in &events {
        w.log.say(
            "event",
            format!(
                "{} x{}: {}",
                e.reason.as_deref().unwrap_or("-"),
                e.series.as_ref().map_or(1, |s| s.count),
                e.note.as_deref().unwrap_or("")
            ),
        );
    }
    assert_eq!(count("SwitchoverDone"), 2, "{events:?}");
    assert_eq!(count("RolloutFinished"), 2, "{events:?}");
    assert_eq!(w.ctx.metrics.switchovers.get(), 2);
    assert_eq!(w.ctx.metrics.rollouts_finished.get(), 2);
    let restarts: BTreeMap<u32, usize> =
        w.restarts_since(w.log.start)
            .iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.ordinal).or_default() += 1;
                m
            });
    w.log.say(
        "result",
        format!(
            "restarts per instance {restarts:?}; test took {:.1}s",
            w.log.start.elapsed().as_secs_f64()
        ),
    );
    assert_eq!(
        restarts,
        BTreeMap::from([(0, 2), (1, 2), (2, 2)]),
        "each rollout restarts every instance exactly once"
    );
}
