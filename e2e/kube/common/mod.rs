//! The end-to-end world of the Kubernetes tests: a fake API server, the operator's reconcile
//! loop over it (its client recorded for the RBAC check), and the simulated kubelet running
//! every Pod the operator creates as real processes (the `switchyard` binary of this build as
//! the operator's image, the testbed's Debian roots as the database images).
//!
//! Around them, what a cluster's users and its Services would do, from the test process:
//! - [`PrimaryFollower`]: the primary Service, a testbed router whose primary endpoint follows
//!   the pod labelled `switchyard.io/role=primary` (polled; Services are not simulated);
//! - [`WritableMonitor`]: `@@read_only` of every pod, polled with its own connections;
//! - [`Log`]: one time-stamped log of the test's steps, the kubelet's events and the
//!   cluster's status changes, on stdout and in a file under cargo's temporary folder.
//!
//! [`steps`] holds the events both flavors' runs put a cluster through, with their checks.
//!
//! The operator reconciles in a loop (kube-fake-client has no watches, so nothing would wake
//! a controller) with the production instance operations (`MysqlOpsFactory`: SQL through
//! switchyard-mysql, the agents' `GET /status`), its resolver giving each pod name the stable
//! address the kubelet assigns it (there is no DNS for pod names on the host; inside the pods
//! `/etc/hosts` lists the `.svc` names the operator writes into `instance.json`).

pub mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Recorder as EventRecorder, Reporter};
use kube::{Client, ResourceExt as _};
use kube_fake_client::ClientBuilder;
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use switchyard_kube::context::{Context, Resolver, system_clock};
use switchyard_kube::controller::MysqlOpsFactory;
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec, SchemaChange};
use switchyard_kube::credentials::{self, ClusterCredentials};
use switchyard_kube::metrics::Metrics;
use switchyard_kube::names::{LABEL_ROLE, MYSQL_PORT, Names};
use switchyard_kube::reconcile::reconcile;
use switchyard_kubelet::rbac::{self, Recorder};
use switchyard_kubelet::{Addresses, Event, EventKind, Images, Kubelet, KubeletConfig};
use switchyard_mysql::{Credentials, Instance, InstanceAddr, Timeouts};
use switchyard_plan::record::Intent;
use switchyard_testbed::ledger::{CheckConfig, CheckTarget, check};
use switchyard_testbed::load::{
    Endpoints, Load, LoadConfig, LoadHandle, LoadReport, Login, Logins, prepare,
};
use switchyard_testbed::router::Router;
use tokio::task::JoinHandle;

/// The namespace of the cluster.
pub const NS: &str = "db";
/// The cluster's name.
pub const NAME: &str = "shop";
/// The operator's image: the pods' `install` init container copies the agent from it, and the
/// kubelet makes its root from this build's `switchyard` binary.
pub const OPERATOR_IMAGE: &str = "switchyard/operator:e2e";
/// How often the operator reconciles (a controller would be woken by watches instead).
const RECONCILE_EVERY: Duration = Duration::from_millis(250);
/// How often the status watcher, the primary follower and the monitor poll.
const POLL: Duration = Duration::from_millis(100);

/// The test's log on stdout and in a file under cargo's temporary folder, every line stamped
/// with the seconds since the test started.
pub struct Log {
    start: Instant,
    file: Mutex<Option<std::fs::File>>,
}

impl Log {
    /// A log also written to `name` under `CARGO_TARGET_TMPDIR`.
    pub fn new(name: &str) -> Arc<Log> {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        Arc::new(Log {
            start: Instant::now(),
            file: Mutex::new(std::fs::File::create(path).ok()),
        })
    }

    /// Seconds since the start.
    pub fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    /// One line from `who`.
    pub fn say(&self, who: &str, what: impl Display) {
        self.at(Instant::now(), who, what);
    }

    /// One line from `who`, stamped with `at`.
    pub fn at(&self, at: Instant, who: &str, what: impl Display) {
        let line = format!("[{:>7.2}s] {who:<9} {what}", self.secs(at));
        println!("{line}");
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = file.as_mut() {
            // A copy for reading after the run; stdout has every line regardless.
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The version of the testbed's server `kind` (fetched and unpacked first if needed, off
/// the async runtime), checked to be of `kind`'s flavor.
pub async fn server_version(kind: switchyard_testbed::ServerKind) -> String {
    let bins = tokio::task::spawn_blocking(move || switchyard_testbed::binaries(kind))
        .await
        .expect("the testbed's fetch task")
        .unwrap_or_else(|e| panic!("{kind:?} from the testbed: {e}"));
    assert_eq!(bins.kind().flavor(), kind.flavor());
    bins.version().to_owned()
}

/// Waits for `f` to give a value, failing with `what` (and `f`'s last explanation) after
/// `limit`.
pub async fn until<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(why) => assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {why}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for `f` to give a value; after `limit`, `f`'s last explanation.
pub async fn within<T>(
    limit: Duration,
    mut f: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(why) if Instant::now() >= deadline => return Err(why),
            Err(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The fake API, the operator and the kubelet.
pub struct World {
    /// The fake API server, unrecorded: the test's and the kubelet's client.
    pub api: Client,
    /// Every request the operator sent.
    pub recorder: Recorder,
    /// The kubelet (taken by [`World::shutdown`]).
    pub kubelet: Option<Kubelet>,
    /// The cluster's names.
    pub names: Names,
    /// The log.
    pub log: Arc<Log>,
    addresses: Addresses,
    operator: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
}

/// How a [`World`] differs from the default one.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The Nodes the kubelet stands for, each pod placed on one ([`KubeletConfig::nodes`];
    /// empty: one node, no Node objects, no pod placed).
    pub nodes: Vec<String>,
    /// Every request (the operator's, the kubelet's, the test's) through the fake API's front
    /// (switchyard-fake-api): its eviction subresource with PodDisruptionBudgets enforced, as
    /// `kubectl drain` uses it. Off: the store's client itself.
    pub front: bool,
}

impl World {
    /// Starts the fake API, the kubelet and the operator's reconcile loop.
    pub async fn start(log: Arc<Log>) -> World {
        World::start_with(log, Setup::default()).await
    }

    /// Starts the fake API, the kubelet and the operator's reconcile loop as `setup` says.
    pub async fn start_with(log: Arc<Log>, setup: Setup) -> World {
        // The operator's own log (RUST_LOG, warnings by default) with the test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let api = ClientBuilder::new()
            .with_resource::<MySQLCluster>()
            .with_status_subresource::<MySQLCluster>()
            .with_resource::<SchemaChange>()
            .with_status_subresource::<SchemaChange>()
            .with_status_subresource::<Pod>()
            .with_status_subresource::<PersistentVolumeClaim>()
            .build()
            .await
            .expect("a fake API server");
        let api = if setup.front {
            switchyard_fake_api::FakeApi::new(api).client()
        } else {
            api
        };
        // Only the operator's requests are recorded (the kubelet's and the test's are not
        // the operator's to be allowed).
        let (operator_client, recorder) = rbac::record(api.clone());
        let events = log.clone();
        let kubelet = Kubelet::start(
            api.clone(),
            KubeletConfig {
                images: Images::new().operator(OPERATOR_IMAGE, env!("CARGO_BIN_EXE_switchyard")),
                namespaces: Some(vec![NS.to_owned()]),
                probe_period_cap: Some(Duration::from_secs(1)),
                on_event: Some(Arc::new(move |e: &Event| log_event(&events, e))),
                nodes: setup.nodes,
                ..KubeletConfig::default()
            },
        )
        .await
        .expect("the simulated kubelet (needs root, iproute2 and util-linux)");
        let addresses = kubelet.addresses();
        let names = Names {
            cluster: NAME.into(),
            namespace: NS.into(),
        };
        let resolve = addresses.clone();
        let resolver: Resolver = Arc::new(move |names: &Names, n| {
            let ip = resolve
                .of(&names.namespace, &names.pod(n))
                .expect("a free address on the pod network");
            (ip.to_string(), MYSQL_PORT)
        });
        let ctx = Arc::new(Context {
            client: operator_client.clone(),
            ops: Arc::new(MysqlOpsFactory::new()),
            resolver,
            clock: system_clock(),
            recorder: EventRecorder::new(
                operator_client.clone(),
                Reporter {
                    controller: "switchyard".into(),
                    instance: Some("e2e".into()),
                },
            ),
            metrics: Arc::new(Metrics::new()),
            tenure: None,
            agent_image: OPERATOR_IMAGE.into(),
        });
        let operator = tokio::spawn(operate(
            ctx,
            Api::namespaced(operator_client, NS),
            log.clone(),
        ));
        let watcher = tokio::spawn(watch_status(Api::namespaced(api.clone(), NS), log.clone()));
        World {
            api,
            recorder,
            kubelet: Some(kubelet),
            names,
            log,
            addresses,
            operator: Some(operator),
            watcher: Some(watcher),
        }
    }

    /// The kubelet.
    pub fn kubelet(&self) -> &Kubelet {
        self.kubelet.as_ref().expect("the kubelet runs")
    }

    /// The clusters.
    pub fn clusters(&self) -> Api<MySQLCluster> {
        Api::namespaced(self.api.clone(), NS)
    }

    /// The pods.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.api.clone(), NS)
    }

    /// Creates the cluster (as `kubectl apply` would).
    pub async fn create(&self, spec: MySQLClusterSpec) {
        let mut c = MySQLCluster::new(NAME, spec);
        c.metadata.namespace = Some(NS.into());
        self.clusters()
            .create(&PostParams::default(), &c)
            .await
            .expect("create the cluster");
    }

    /// The cluster as the API has it now.
    pub async fn cluster(&self) -> MySQLCluster {
        self.clusters().get(NAME).await.expect("the cluster")
    }

    /// Updates the spec (as `kubectl apply` would): read, change, replace, and again on a
    /// conflict (the operator wrote the status in between).
    pub async fn edit(&self, f: impl Fn(&mut MySQLClusterSpec)) {
        let mut conflicts = 0;
        loop {
            let mut c = self.cluster().await;
            f(&mut c.spec);
            c.metadata.managed_fields = None;
            match self
                .clusters()
                .replace(NAME, &PostParams::default(), &c)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 409 && conflicts < 20 => conflicts += 1,
                Err(e) => panic!("edit the spec: {e:?}"),
            }
        }
    }

    /// The stable address of instance `n`'s pod.
    pub fn ip(&self, n: u32) -> Ipv4Addr {
        self.addresses
            .of(NS, &self.names.pod(n))
            .expect("an address")
    }

    /// The server address of instance `n`.
    pub fn server(&self, n: u32) -> SocketAddr {
        SocketAddr::from((self.ip(n), MYSQL_PORT))
    }

    /// The credentials the operator generated (from its Secret).
    pub async fn credentials(&self) -> ClusterCredentials {
        let secrets: Api<Secret> = Api::namespaced(self.api.clone(), NS);
        let secret = secrets
            .get(&format!("{NAME}-credentials"))
            .await
            .expect("the credentials Secret");
        credentials::from_secret(&secret).expect("usable credentials")
    }

    /// Connection options for instance `n` as `user`.
    pub fn options(&self, n: u32, user: &str, password: &str) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .host(&self.ip(n).to_string())
            .port(MYSQL_PORT)
            .username(user)
            .password(password)
            .ssl_mode(MySqlSslMode::Preferred)
    }

    /// The pod of instance `n`, if it exists.
    pub async fn pod(&self, n: u32) -> Option<Pod> {
        self.pods()
            .get_opt(&self.names.pod(n))
            .await
            .expect("read a pod")
    }

    /// The ordinals of the pods labelled primary.
    pub async fn labelled_primaries(&self) -> Vec<u32> {
        labelled_primaries(&self.pods(), &self.names).await
    }

    /// The agent's `GET /status` of instance `n`.
    pub async fn agent_status(&self, n: u32) -> Result<serde_json::Value, String> {
        let addr = SocketAddr::from((self.ip(n), switchyard_kube::agent::AGENT_PORT));
        let body = http_get(addr, "/status").await?;
        serde_json::from_str(&body).map_err(|e| format!("{addr}/status: {e}: {body}"))
    }

    /// What container `container` of instance `n`'s newest pod printed.
    pub fn logs(&self, n: u32, container: &str) -> String {
        self.kubelet().logs(NS, &self.names.pod(n), container)
    }

    /// Stops the operator, then every pod gracefully, and checks that nothing of the pod
    /// network is left.
    pub async fn shutdown(&mut self) {
        if let Some(op) = self.operator.take() {
            op.abort();
            let _ = op.await;
        }
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Some(kubelet) = self.kubelet.take() {
            let index = kubelet.subnet_index();
            let pids = kubelet.pids();
            kubelet.shutdown().await;
            for pid in pids {
                let alive = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                    None,
                )
                .is_ok();
                assert!(!alive, "process {pid} of a pod outlived the kubelet");
            }
            let left = switchyard_kubelet::leftovers(index);
            assert!(left.is_empty(), "the kubelet left {left:?}");
            self.log
                .say("test", "every pod stopped; no namespace or link left");
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(op) = self.operator.take() {
            op.abort();
        }
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if std::thread::panicking()
            && let Some(kubelet) = &self.kubelet
        {
            // What the pods said, for the failure's reader.
            for n in 0..5 {
                let name = self.names.pod(n);
                for container in ["install", "mysqld"] {
                    let text = kubelet.logs(NS, &name, container);
                    if text.is_empty() {
                        continue;
                    }
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    println!("----- {name}/{container} (last lines) -----");
                    for line in tail.into_iter().rev() {
                        println!("{line}");
                    }
                }
            }
        }
        // Dropping the kubelet kills every pod's processes and removes its network.
    }
}

fn log_event(log: &Log, e: &Event) {
    let what = match &e.kind {
        EventKind::ContainerStarted { restarts, .. } if *restarts == 0 => "started".to_owned(),
        EventKind::ContainerStarted { restarts, .. } => format!("started again ({restarts})"),
        other => format!("{other:?}"),
    };
    let container = e.container.as_deref().unwrap_or("-");
    log.at(e.at, "kubelet", format!("{} {container}: {what}", e.pod));
}

/// The operator: reconciles the cluster in a loop until aborted.
async fn operate(ctx: Arc<Context>, clusters: Api<MySQLCluster>, log: Arc<Log>) {
    let mut last_error = String::new();
    loop {
        match clusters.get_opt(NAME).await {
            Ok(Some(c)) => match reconcile(Arc::new(c), ctx.clone()).await {
                Ok(_) => last_error.clear(),
                Err(e) => {
                    let text = format!("reconcile failed ({}): {e}", e.category());
                    if text != last_error {
                        log.say("operator", &text);
                        last_error = text;
                    }
                }
            },
            Ok(None) => {}
            Err(e) => log.say("operator", format!("cannot read the cluster: {e}")),
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

/// Logs every change of the cluster's phase, primary, readiness, intent and assignments.
async fn watch_status(clusters: Api<MySQLCluster>, log: Arc<Log>) {
    let mut last = String::new();
    loop {
        if let Ok(Some(c)) = clusters.get_opt(NAME).await
            && let Some(s) = &c.status
        {
            let intent = s
                .record
                .as_ref()
                .and_then(|r| r.intent.as_ref())
                .map(|i| serde_json::to_string(i).unwrap_or_default())
                .unwrap_or_else(|| "none".into());
            let revisions: Vec<String> = s
                .instances
                .iter()
                .map(|i| {
                    format!(
                        "{}:r{}{}",
                        i.ordinal,
                        i.revision.unwrap_or(0),
                        if i.ready { "" } else { "(not ready)" }
                    )
                })
                .collect();
            let line = format!(
                "phase {} primary {:?} ready {} instances [{}] intent {intent}",
                s.phase.as_deref().unwrap_or("-"),
                s.current_primary,
                s.ready.as_deref().unwrap_or("-"),
                revisions.join(" "),
            );
            if line != last {
                log.say("status", &line);
                last = line;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn labelled_primaries(pods: &Api<Pod>, names: &Names) -> Vec<u32> {
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut out: Vec<u32> = list
        .items
        .iter()
        .filter(|p| p.labels().get(LABEL_ROLE).map(String::as_str) == Some("primary"))
        .filter_map(|p| names.ordinal_of(&p.name_any()))
        .collect();
    out.sort_unstable();
    out
}

/// A minimal HTTP/1.1 GET of `path` at `addr`: the body of a 200 answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok::<_, String>(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within 5 s"))??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: not HTTP: {text}"))?;
    let code = head.split_whitespace().nth(1).unwrap_or("?");
    // The agent answers with Content-Length (no chunked encoding on these endpoints).
    if code == "200" {
        Ok(body.to_owned())
    } else {
        Err(format!("{addr}{path}: {code}: {body}"))
    }
}

/// A value the follower shares with the test.
type Shared<T> = Arc<Mutex<T>>;

/// The primary Service: a router whose primary endpoint follows the pod labelled primary
/// (none while no pod or several pods carry the label).
pub struct PrimaryFollower {
    /// The router the load connects to.
    pub router: Arc<Router>,
    /// The ordinals the endpoint pointed at, in order.
    pub history: Arc<Mutex<Vec<Option<u32>>>>,
    /// Every poll that found several pods labelled primary (the Service would select them
    /// all), with their ordinals.
    pub several: Arc<Mutex<Vec<Vec<u32>>>>,
    task: JoinHandle<()>,
}

impl PrimaryFollower {
    /// Starts following, with a backend per instance.
    pub async fn start(world: &World, instances: u32) -> PrimaryFollower {
        let backends = (0..instances).map(|n| (n, world.server(n))).collect();
        let router = Arc::new(Router::start(backends).await.expect("a router"));
        let history = Arc::new(Mutex::new(Vec::new()));
        let several = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(follow(
            world.pods(),
            world.names.clone(),
            router.clone(),
            history.clone(),
            several.clone(),
            world.log.clone(),
        ));
        PrimaryFollower {
            router,
            history,
            several,
            task,
        }
    }
}

impl PrimaryFollower {
    /// The verdict on the primary Service after the primary moved to `new_primary`: it
    /// pointed there, never back at `old` afterwards, and never selected several pods.
    pub fn assert_moved(&self, old: u32, new_primary: u32) {
        let history = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let moved = history
            .iter()
            .position(|p| *p == Some(new_primary))
            .expect("the primary Service moved");
        assert!(
            history[moved..].iter().all(|p| *p != Some(old)),
            "the old primary was labelled primary again: {history:?}"
        );
        let several = self
            .several
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert!(
            several.is_empty(),
            "the primary Service selected several pods: {several:?}"
        );
    }
}

/// Waits (30 s at most) until the load has had `more` writes acknowledged since this call:
/// writes resumed, on the new primary after a move.
pub async fn writes_resume(load: &LoadHandle, more: usize) {
    let from = load.acknowledged();
    until(
        Duration::from_secs(30),
        "writes on the new primary",
        async || {
            let n = load.acknowledged();
            if n >= from + more {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
}

impl Drop for PrimaryFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(
    pods: Api<Pod>,
    names: Names,
    router: Arc<Router>,
    history: Shared<Vec<Option<u32>>>,
    several: Shared<Vec<Vec<u32>>>,
    log: Arc<Log>,
) {
    let mut current: Option<Option<u32>> = None;
    loop {
        let labelled = labelled_primaries(&pods, &names).await;
        if labelled.len() > 1 {
            log.say(
                "service",
                format!("SEVERAL PODS LABELLED PRIMARY: {labelled:?}"),
            );
            several
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(labelled.clone());
        }
        let want = match labelled.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        if current != Some(want) {
            if let Err(e) = router.set_primary(want).await {
                log.say("service", format!("cannot point the primary endpoint: {e}"));
            } else {
                log.say("service", format!("primary endpoint -> {want:?}"));
                history
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(want);
                current = Some(want);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What the writable monitor saw.
#[derive(Clone, Debug, Default)]
pub struct Writers {
    /// Completed passes over every instance.
    pub passes: usize,
    /// Passes that saw exactly one writable instance.
    pub one: usize,
    /// Confirmed passes with two or more writable instances: (seconds, ordinals).
    pub several: Vec<(f64, Vec<u32>)>,
    /// Per ordinal, how many passes saw it writable.
    pub writable: BTreeMap<u32, usize>,
    /// Confirmed passes where instances had `read_only` off beside a writer but could not
    /// acknowledge a commit (semi-synchronous, lossless, too few replicas connected): (seconds,
    /// those ordinals). Not writers.
    pub blocked: Vec<(f64, Vec<u32>)>,
}

/// Polls `@@read_only` of every instance with its own connections: at most one may be
/// writable. A pass that sees two writable instances is confirmed by an immediate second pass
/// in the reverse order (a switchover's fence-then-promote can make one pass in order see the
/// old primary before its fence and the new one after its promotion).
///
/// "Writable" means "can acknowledge a commit", as the engine's lossless rule has it: of the
/// confirmed writable instances, one whose commits cannot be acknowledged (see
/// [`commits_block`]: a failed primary back from a partition before its fence, its replicas
/// gone) is counted in [`Writers::blocked`], not as a second writer.
pub struct WritableMonitor {
    seen: Arc<Mutex<Writers>>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
    /// Failed reads (an instance restarting), for the log.
    pub unreachable: Arc<AtomicUsize>,
}

impl WritableMonitor {
    /// Starts polling `instances` as `user`.
    pub fn start(world: &World, instances: u32, creds: &ClusterCredentials) -> WritableMonitor {
        let options: Vec<(u32, MySqlConnectOptions)> = (0..instances)
            .map(|n| {
                (
                    n,
                    world.options(n, &creds.operator_user, &creds.operator_password),
                )
            })
            .collect();
        let handles: Vec<(u32, Instance)> = (0..instances)
            .map(|n| {
                let handle = Instance::new(
                    world.names.pod(n),
                    InstanceAddr::new(world.ip(n).to_string(), MYSQL_PORT),
                    Credentials::new(creds.operator_user.clone(), creds.operator_password.clone()),
                )
                .with_timeouts(Timeouts {
                    connect: Duration::from_millis(500),
                    statement: Duration::from_secs(1),
                    ..Timeouts::default()
                });
                (n, handle)
            })
            .collect();
        let seen = Arc::new(Mutex::new(Writers::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let unreachable = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(monitor(
            options,
            (handles, world.names.clone()),
            seen.clone(),
            stop.clone(),
            unreachable.clone(),
            world.log.clone(),
        ));
        WritableMonitor {
            seen,
            stop,
            task: Some(task),
            unreachable,
        }
    }

    /// Stops it and returns what it saw.
    pub async fn stop(mut self) -> Writers {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for WritableMonitor {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn read_only(
    conns: &mut BTreeMap<u32, MySqlConnection>,
    n: u32,
    options: &MySqlConnectOptions,
) -> Option<bool> {
    const BOUND: Duration = Duration::from_secs(1);
    let conn = match conns.entry(n) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            let conn = tokio::time::timeout(BOUND, MySqlConnection::connect_with(options))
                .await
                .ok()?
                .ok()?;
            e.insert(conn)
        }
    };
    let answer = tokio::time::timeout(
        BOUND,
        sqlx::query_scalar::<_, i64>("SELECT @@GLOBAL.read_only").fetch_one(conn),
    )
    .await;
    match answer {
        Ok(Ok(v)) => Some(v != 0),
        _ => {
            conns.remove(&n);
            None
        }
    }
}

async fn monitor(
    options: Vec<(u32, MySqlConnectOptions)>,
    (handles, names): (Vec<(u32, Instance)>, Names),
    seen: Arc<Mutex<Writers>>,
    stop: Arc<AtomicBool>,
    unreachable: Arc<AtomicUsize>,
    log: Arc<Log>,
) {
    let mut conns: BTreeMap<u32, MySqlConnection> = BTreeMap::new();
    let mut last_blocked = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let mut writable = Vec::new();
        for (n, o) in &options {
            match read_only(&mut conns, *n, o).await {
                Some(false) => writable.push(*n),
                Some(true) => {}
                None => {
                    unreachable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if writable.len() > 1 {
            writable.clear();
            for (n, o) in options.iter().rev() {
                if read_only(&mut conns, *n, o).await == Some(false) {
                    writable.push(*n);
                }
            }
            writable.sort_unstable();
        }
        let mut blocked = Vec::new();
        if writable.len() > 1 {
            blocked = commits_block(&handles, &names, &writable).await;
            writable.retain(|n| !blocked.contains(n));
            if !blocked.is_empty() && blocked != last_blocked {
                log.say(
                    "monitor",
                    format!("read_only off but no commit can be acknowledged: {blocked:?}"),
                );
            }
            if writable.len() > 1 {
                log.say(
                    "monitor",
                    format!("TWO WRITABLE INSTANCES: confirmed {writable:?}"),
                );
            }
        }
        {
            let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
            s.passes += 1;
            if !blocked.is_empty() {
                s.blocked.push((log.secs(Instant::now()), blocked.clone()));
            }
            last_blocked = blocked;
            if writable.len() == 1 {
                s.one += 1;
            }
            if writable.len() > 1 {
                s.several.push((log.secs(Instant::now()), writable.clone()));
            }
            for n in &writable {
                *s.writable.entry(*n).or_default() += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, c) in std::mem::take(&mut conns) {
        let _ = c.close().await;
    }
}

/// Of the `writable` instances, those that cannot acknowledge a commit: a semi-synchronous
/// source that waits losslessly for `k` replicas (never falling back) with fewer than `k`
/// connected, counted as the fewer of its own count of semi-synchronous clients and the other
/// instances whose receiver reports itself connected to it (a source cut off by a partition
/// still counts the clients it had until its sends to them fail). Every commit there waits,
/// none is acknowledged: the ledger's split-brain check is the proof. An instance that does
/// not answer the observation is not counted as blocked.
async fn commits_block(handles: &[(u32, Instance)], names: &Names, writable: &[u32]) -> Vec<u32> {
    // Every instance must be seen for the replicas' side of the count; a read that fails on
    // a loaded machine is tried again twice.
    let mut seen = BTreeMap::new();
    for (n, handle) in handles {
        let mut observed = None;
        for _ in 0..3 {
            observed = handle.observe().await.ok();
            if observed.is_some() {
                break;
            }
        }
        seen.insert(*n, observed);
    }
    let everyone_seen = seen.values().all(Option::is_some);
    writable
        .iter()
        .copied()
        .filter(|w| {
            let Some(semi) = seen
                .get(w)
                .and_then(Option::as_ref)
                .and_then(|o| o.semi_sync.as_ref())
            else {
                return false;
            };
            let Some(k) = semi.ack_replicas(Duration::from_secs(3600)) else {
                return false;
            };
            let pod = names.pod(*w);
            let mut connected = semi.source_clients.unwrap_or(0);
            if everyone_seen {
                let receivers = seen
                    .iter()
                    .filter(|(n, _)| *n != w)
                    .filter_map(|(_, o)| o.as_ref()?.replication.as_ref())
                    .filter(|r| {
                        r.is_connected()
                            && (r.source_host == pod
                                || r.source_host.starts_with(&format!("{pod}.")))
                    })
                    .count();
                connected = connected.min(u64::try_from(receivers).unwrap_or(u64::MAX));
            }
            connected < u64::from(k)
        })
        .collect()
}

/// Runs one statement on `conn`.
pub async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of the first row of `sql`, as text.
pub async fn scalar(conn: &mut MySqlConnection, sql: &str) -> String {
    use sqlx::Row as _;
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.try_get::<String, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
        .or_else(|_| row.try_get::<u64, _>(0).map(|v| v.to_string()))
        .unwrap_or_else(|_| String::from_utf8_lossy(&row.get::<Vec<u8>, _>(0)).into_owned())
}

/// How many of the acknowledged writes `acked` instance `n` holds.
pub async fn rows_on(
    world: &World,
    n: u32,
    user: &str,
    password: &str,
    acked: &[switchyard_testbed::ledger::AckedWrite],
) -> usize {
    let mut conn = MySqlConnection::connect_with(&world.options(n, user, password))
        .await
        .unwrap_or_else(|e| panic!("connect to instance {n}: {e}"));
    let ids: BTreeSet<u64> = acked.iter().map(|w| w.id).collect();
    let mut present = 0usize;
    for chunk in ids.iter().copied().collect::<Vec<_>>().chunks(500) {
        let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
        let n: i64 = scalar(
            &mut conn,
            &format!(
                "SELECT COUNT(*) FROM app.ledger WHERE id IN ({})",
                list.join(",")
            ),
        )
        .await
        .parse()
        .unwrap();
        present += usize::try_from(n).unwrap();
    }
    let _ = conn.close().await;
    present
}

/// The intent of the engine's record.
pub fn intent(c: &MySQLCluster) -> Option<Intent> {
    c.status.as_ref()?.record.as_ref()?.intent.clone()
}

/// The revision the status assigns to instance `n`.
pub fn revision_of(c: &MySQLCluster, n: u32) -> u64 {
    c.status
        .as_ref()
        .and_then(|s| s.instances.iter().find(|i| i.ordinal == n))
        .and_then(|i| i.revision)
        .unwrap_or_else(|| panic!("instance {n} has no revision assigned"))
}

/// The pod template hash of revision `number`.
pub fn hash_of(c: &MySQLCluster, number: u64) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.revisions.as_ref())
        .and_then(|r| r.history.iter().find(|e| e.number == number))
        .map(|e| e.pod_template_hash().to_owned())
        .unwrap_or_else(|| panic!("revision {number} is not in the history"))
}

/// The workspace's root (for `deploy/rbac.yaml`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace")
}

/// The verdict of a rollout under load: no acknowledged write lost on any of the `instances`,
/// every one on `new_primary`, no two servers acknowledging at once, and the monitor never
/// saw two writable instances (while it saw instance 0 and then `new_primary` writable).
pub async fn assert_nothing_lost(
    world: &World,
    log: &Log,
    report: &LoadReport,
    writers: &Writers,
    instances: u32,
    new_primary: u32,
    creds: (&str, &str),
) {
    let all: Vec<u32> = (0..instances).collect();
    assert_nothing_lost_on(world, log, report, writers, &all, new_primary, creds).await;
}

/// [`assert_nothing_lost`] over the instances `checked` only (a failover leaves the failed
/// primary quarantined, without the writes acknowledged after it).
pub async fn assert_nothing_lost_on(
    world: &World,
    log: &Log,
    report: &LoadReport,
    writers: &Writers,
    checked: &[u32],
    new_primary: u32,
    (op_user, op_pw): (&str, &str),
) {
    let acked = report.ledger.acked.len();
    assert!(acked > 0, "the load wrote");
    let targets: Vec<CheckTarget> = checked
        .iter()
        .copied()
        .map(|n| CheckTarget {
            name: world.names.pod(n),
            options: world.options(n, op_user, op_pw),
        })
        .collect();
    let checked = check(&report.ledger, &targets, &CheckConfig::default())
        .await
        .expect("the ledger check");
    assert_eq!(
        checked.total_missing(),
        0,
        "acknowledged writes lost: {:?}",
        checked.missing
    );
    let present = rows_on(world, new_primary, op_user, op_pw, &report.ledger.acked).await;
    assert_eq!(
        present, acked,
        "every acknowledged write is on the new primary"
    );
    let split = report.ledger.split_brain(3);
    assert_eq!(
        split.overlapping, 0,
        "two servers acknowledged writes at once: {split:?}"
    );
    assert!(
        split.per_server.len() >= 2,
        "writes were acknowledged by the old and the new primary: {:?}",
        split.per_server
    );
    let gap = report.ledger.longest_gap().map(|g| g.length());
    log.say(
        "test",
        format!(
            "{acked} writes acknowledged, none lost; longest gap {gap:?}; monitor: {} passes, {} with one writer, writable per instance {:?}",
            writers.passes, writers.one, writers.writable
        ),
    );
    assert!(
        writers.several.is_empty(),
        "two writable instances at once: {:?}",
        writers.several
    );
    assert!(
        writers.passes > 20 && writers.one > 0,
        "the monitor sampled: {writers:?}"
    );
    assert!(
        writers.writable.get(&0).copied().unwrap_or(0) > 0
            && writers.writable.get(&new_primary).copied().unwrap_or(0) > 0,
        "the monitor saw the old and the new primary writable: {writers:?}"
    );
}

/// The application's writes under a test: the load, the router that follows the primary
/// label, and the monitor of writable instances.
pub struct AppLoad {
    /// The router whose write endpoint follows the pod labelled primary.
    pub service: PrimaryFollower,
    /// Polls `read_only` on every pod.
    pub monitor: WritableMonitor,
    /// The writers (application account), through `service`.
    pub load: LoadHandle,
}

/// Creates the application's account (`app`, SELECT and INSERT on `app.*`) on the primary
/// (instance 0, through `primary`, which is closed) and the load's table, then starts
/// `writers` writers at `rate` writes/s through the primary-following router and the
/// writable monitor, and waits for the first `first` acknowledged writes.
pub async fn start_app_load(
    world: &World,
    mut primary: MySqlConnection,
    creds: &ClusterCredentials,
    instances: u32,
    (writers, rate, first): (usize, u32, usize),
    log: &Log,
) -> AppLoad {
    let (op_user, op_pw) = (creds.operator_user.clone(), creds.operator_password.clone());
    let app = Login::new("app", "app-password-e2e");
    exec(
        &mut primary,
        "CREATE USER 'app'@'%' IDENTIFIED BY 'app-password-e2e'",
    )
    .await;
    exec(&mut primary, "GRANT SELECT, INSERT ON app.* TO 'app'@'%'").await;
    let _ = primary.close().await;
    prepare(&world.options(0, &op_user, &op_pw), "app.ledger")
        .await
        .expect("the load's table");
    let service = PrimaryFollower::start(world, instances).await;
    let monitor = WritableMonitor::start(world, instances, creds);
    let mut config = LoadConfig::default();
    config.writers = writers;
    config.rate_per_sec = rate;
    config.readers = 0;
    let logins = Logins {
        application: app,
        privileged: Login::new(op_user, op_pw),
    };
    let load =
        Load::start(config, Endpoints::from(service.router.as_ref()), &logins).expect("the load");
    until(
        Duration::from_secs(30),
        "the load's first writes",
        async || {
            let n = load.acknowledged();
            if n >= first {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
    log.say(
        "test",
        format!("load running: {} writes acknowledged", load.acknowledged()),
    );
    AppLoad {
        service,
        monitor,
        load,
    }
}
