//! Test support for switchyard (never a dependency of production code): a **simulated
//! kubelet** that runs the Pods a fake Kubernetes API holds as local processes, and an
//! **RBAC recorder** ([`rbac`]) that checks every request the operator makes against the
//! deployed Roles.
//!
//! [`Kubelet`] polls the API (kube-fake-client has no watch) for the Pods of the namespaces
//! it serves and runs each new one:
//!
//! - **network**: a network namespace per pod with an address from a private /24 on a bridge
//!   the kubelet creates (see `net`); the test process reaches every pod's address through
//!   the bridge; nothing routes off the machine. A pod name keeps its address for the
//!   kubelet's life (a recreated pod gets its predecessor's), so a test's clients, router and
//!   monitor keep reaching "pod N" (in a real cluster they would go through DNS), and
//!   [`Kubelet::addresses`] hands them to a resolver, also before the pod first runs;
//! - **file systems**: each container in its own mount, PID, UTS and IPC namespaces, chrooted
//!   into a writable layer over its image's root ([`Images`]: database images are the
//!   testbed's Debian suite roots of their major.minor, the operator's image a root made from
//!   the `switchyard` binary); the pod's volumes bind-mounted: a folder per
//!   PersistentVolumeClaim that outlives the pod (until the claim is deleted), emptyDirs per
//!   pod, ConfigMaps and Secrets written as files and rewritten when they change; `/etc/hosts`
//!   lists every pod of the fake cluster (`<hostname>.<subdomain>.<ns>.svc`) and the ready
//!   pods of each Service (`<service>.<ns>.svc`), since there is no DNS;
//! - **containers**: init containers in order, each to completion, then the containers, with
//!   `command`/`args` over the image's entrypoint, `env` (`fieldRef`, `resourceFieldRef`,
//!   ConfigMap and Secret keys, `$(VAR)`), `workingDir`, `runAsUser`/`runAsGroup`, `fsGroup`;
//!   startup, readiness and liveness probes as specified (`httpGet` against the pod's address
//!   from the host, `tcpSocket`, `exec` inside the container); restarts with a back-off on exit
//!   or a failed liveness probe (`restartPolicy`);
//! - **nodes** (when [`KubeletConfig::nodes`] names some): the Node objects created at start,
//!   and each new pod placed on the least loaded schedulable one (`spec.nodeName`), as the
//!   scheduler would; a cordoned Node (`spec.unschedulable`) takes no new pod;
//! - **status**: the pod's IP, phase, conditions (`Ready` from the readiness probes and
//!   readiness gates) and container statuses (state, restart count) written to the API;
//! - **deletion**: a pod that disappears from the API gets SIGTERM, then SIGKILL when its grace
//!   period (`terminationGracePeriodSeconds`) ends; a new pod of the same name waits until the
//!   old one's processes are gone (the API server would keep the old object until then);
//!   [`Kubelet::node_loss`] kills a pod's processes at once and deletes it;
//!   [`Kubelet::partition`] cuts a pod off the pod network (its processes keep running) until
//!   [`Kubelet::heal`];
//!   [`Kubelet::volume_loss`] empties a claim's folder.
//!
//! Every process the kubelet starts is killed by its pid, and every namespace, link and folder
//! it made removed, when it drops, also during a panic's unwinding. A kubelet of a test process
//! that died (SIGKILL) is cleaned up by the next kubelet that takes its subnet.
//!
//! Not simulated: Services as virtual addresses (a test routes its clients itself), DNS,
//! `hostNetwork`, lifecycle hooks, sidecar containers, volume types other than claims,
//! emptyDirs, ConfigMaps and Secrets (a pod using them is reported and not started), resource
//! limits, and the API server's graceful deletion (the fake API deletes at once).
//!
//! Needs root and the host's iproute2 and util-linux (checked at start, with the package to
//! install named when one is missing).

mod container;
mod env;
mod error;
mod host;
pub mod image;
mod net;
mod pod;
mod probe;
pub mod rbac;
mod volume;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, Node, NodeSpec, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use nix::sys::signal::Signal;
use serde_json::json;

pub use error::{Error, Result};
pub use image::{ImageRoot, Images, operator_rootfs};
pub use net::{Addresses, leftovers};

use crate::pod::{PodRun, Stop, lock};

/// A function called with each [`Event`] as it happens.
pub type EventCallback = Arc<dyn Fn(&Event) + Send + Sync>;

/// How the kubelet runs.
pub struct KubeletConfig {
    /// How images map to root file systems.
    pub images: Images,
    /// The namespaces whose pods it runs (None: every namespace).
    pub namespaces: Option<Vec<String>>,
    /// How often it lists the API.
    pub poll: Duration,
    /// Probe periods longer than this are shortened to it (None: as specified). Tests use it
    /// to notice readiness sooner than a production period would.
    pub probe_period_cap: Option<Duration>,
    /// The first restart's back-off, doubled per restart (the kubelet's is 10 s).
    pub restart_backoff: Duration,
    /// The longest back-off (the kubelet's is 5 min).
    pub max_restart_backoff: Duration,
    /// The node's name (`spec.nodeName` in `fieldRef`) of a pod placed on no node.
    pub node_name: String,
    /// The Nodes the kubelet stands for (empty: one node, [`KubeletConfig::node_name`], with
    /// no Node object and no pod placed). With names, the kubelet creates each Node in the API
    /// at start and, as the scheduler would, places each new pod that names no node
    /// (`spec.nodeName`) on the schedulable Node (not cordoned: `spec.unschedulable`) with the
    /// fewest of its pods, the first by name on a tie; a pod waits while every Node is
    /// cordoned. A pod keeps its node for its life; a cordon moves nothing by itself.
    pub nodes: Vec<String>,
    /// Where the kubelet keeps its lock files and work folder (default: `kubelet/` under the
    /// testbed's cache).
    pub base: Option<PathBuf>,
    /// Called with every event as it happens (for a test's log).
    pub on_event: Option<EventCallback>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            images: Images::new(),
            namespaces: None,
            poll: Duration::from_millis(100),
            probe_period_cap: None,
            restart_backoff: Duration::from_millis(500),
            max_restart_backoff: Duration::from_secs(8),
            node_name: "simulated-node".into(),
            nodes: Vec::new(),
            base: None,
            on_event: None,
        }
    }
}

impl std::fmt::Debug for KubeletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletConfig")
            .field("images", &self.images)
            .field("namespaces", &self.namespaces)
            .field("poll", &self.poll)
            .field("probe_period_cap", &self.probe_period_cap)
            .field("restart_backoff", &self.restart_backoff)
            .field("max_restart_backoff", &self.max_restart_backoff)
            .field("node_name", &self.node_name)
            .field("nodes", &self.nodes)
            .field("base", &self.base)
            .field("on_event", &self.on_event.as_ref().map(|_| "<callback>"))
            .finish()
    }
}

/// Something the kubelet did or saw.
#[derive(Clone, Debug)]
pub struct Event {
    /// When.
    pub at: Instant,
    /// The pod (`namespace/name`).
    pub pod: String,
    /// The pod's uid.
    pub uid: String,
    /// The container, when it concerns one.
    pub container: Option<String>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The pod's network namespace is up with this address.
    PodStarted(Ipv4Addr),
    /// The pod cannot start yet (a missing claim, ConfigMap, Secret, key, image).
    Waiting(String),
    /// The pod uses something the kubelet does not simulate; it will not start.
    Refused(String),
    /// A container process started (`restarts` before it; `pid` its PID 1 on the host).
    ContainerStarted {
        /// Restarts before this start.
        restarts: u32,
        /// The container's PID 1 as the host numbers it.
        pid: Option<u32>,
    },
    /// A container process exited on its own.
    ContainerExited {
        /// Its exit code (128 + the signal when killed).
        code: i32,
    },
    /// A probe failed.
    ProbeFailed {
        /// `startup`, `readiness` or `liveness`.
        probe: &'static str,
        /// What it saw.
        detail: String,
    },
    /// The kubelet killed a container to restart it (a failed startup or liveness probe).
    Restarting(String),
    /// The pod is being stopped.
    Terminating {
        /// Its grace period (zero: killed at once).
        grace: Duration,
    },
    /// A container stopped because its pod stopped.
    Stopped {
        /// Its exit code.
        code: i32,
        /// Whether SIGKILL was needed (the grace period ended, or no grace).
        killed: bool,
    },
    /// The pod's processes are gone and its network and folders released.
    PodGone,
    /// The pod was cut off the pod network ([`Kubelet::partition`]).
    Partitioned,
    /// The pod is on the pod network again ([`Kubelet::heal`]).
    Healed,
    /// A claim's folder was emptied ([`Kubelet::volume_loss`]).
    VolumeLost(String),
}

/// The objects of one namespace the pods may reference, as last listed.
#[derive(Clone, Debug, Default)]
pub(crate) struct NamespaceObjects {
    pub(crate) env: env::Objects,
    pub(crate) claims: BTreeSet<String>,
}

/// What the kubelet's tasks share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: KubeletConfig,
    pub(crate) net: net::Network,
    pub(crate) registry: container::Registry,
    pods: Mutex<Vec<Arc<PodRun>>>,
    objects: Mutex<BTreeMap<String, NamespaceObjects>>,
    services: Mutex<Vec<Service>>,
    /// Claims seen in the API: their folders go when they are deleted.
    seen_claims: Mutex<BTreeSet<(String, String)>>,
    /// Each pod name's (`namespace/name`) newest uid, kept after the pod is forgotten so its
    /// logs stay readable.
    newest: Mutex<BTreeMap<String, String>>,
    events: Mutex<Vec<Event>>,
    closed: AtomicBool,
    /// Pod names (`namespace/name`) whose new pods are not started: their node is lost
    /// ([`Kubelet::hold`]).
    held: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("net", &self.net)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn work(&self) -> &Path {
        self.net.work()
    }

    pub(crate) fn objects(&self, ns: &str) -> NamespaceObjects {
        lock(&self.objects).get(ns).cloned().unwrap_or_default()
    }

    pub(crate) fn event(&self, run: &PodRun, container: Option<&str>, kind: EventKind) {
        let e = Event {
            at: Instant::now(),
            pod: run.key(),
            uid: run.uid.clone(),
            container: container.map(str::to_owned),
            kind,
        };
        if let Some(f) = &self.config.on_event {
            f(&e);
        }
        lock(&self.events).push(e);
    }

    pub(crate) fn log_path(&self, run: &PodRun, container: &str) -> PathBuf {
        log_path(self.work(), &run.namespace, &run.name, &run.uid, container)
    }

    /// Writes the pod's `hosts`, `resolv.conf` and `hostname` (atomically, when changed).
    pub(crate) fn write_kubelet_files(&self, run: &PodRun) -> Result<()> {
        let dir = run.kubelet_files();
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let hosts = self.render_hosts(run);
        let resolv = format!(
            "search {ns}.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n",
            ns = run.namespace
        );
        for (name, text) in [
            ("hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", format!("{}\n", run.hostname())),
        ] {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &text).map_err(Error::io("write", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
        }
        Ok(())
    }

    /// `/etc/hosts` of pod `run`: localhost, itself, every other pod with an address (by its
    /// `hostname.subdomain` names), and each Service's first ready pod.
    fn render_hosts(&self, run: &PodRun) -> String {
        let pods = lock(&self.pods).clone();
        let services = lock(&self.services).clone();
        let mut out = String::from(
            "# Kubernetes-managed hosts file (the simulated kubelet's).\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        let names = |p: &PodRun| -> Vec<String> {
            let pod = lock(&p.pod);
            let spec = pod.spec.clone().unwrap_or_default();
            let host = spec.hostname.clone().unwrap_or_else(|| p.name.clone());
            match spec.subdomain {
                Some(sub) => vec![
                    format!("{host}.{sub}.{}.svc.cluster.local", p.namespace),
                    format!("{host}.{sub}.{}.svc", p.namespace),
                    format!("{host}.{sub}.{}", p.namespace),
                    format!("{host}.{sub}"),
                ],
                None => Vec::new(),
            }
        };
        let live: Vec<(Arc<PodRun>, Ipv4Addr)> = pods
            .iter()
            .filter_map(|p| {
                let s = lock(&p.state);
                (!s.finished).then_some(())?;
                Some((p.clone(), s.ip?))
            })
            .collect();
        let own_ip = lock(&run.state).ip;
        if let Some(ip) = own_ip {
            let mut own = names(run);
            own.push(run.hostname());
            out.push_str(&format!("{ip}\t{}\n", own.join(" ")));
        }
        for (p, ip) in &live {
            if p.uid == run.uid {
                continue;
            }
            let n = names(p);
            if !n.is_empty() {
                out.push_str(&format!("{ip}\t{}\n", n.join(" ")));
            }
        }
        for svc in services {
            let ns = svc.namespace().unwrap_or_default();
            let spec = svc.spec.clone().unwrap_or_default();
            let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
                continue;
            };
            let not_ready_too = spec.publish_not_ready_addresses == Some(true);
            let mut chosen: Vec<(String, Ipv4Addr)> = live
                .iter()
                .filter(|(p, _)| p.namespace == ns)
                .filter(|(p, _)| {
                    let pod = lock(&p.pod);
                    let labels = pod.metadata.labels.clone().unwrap_or_default();
                    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                        && (not_ready_too || pod_ready(&pod))
                })
                .map(|(p, ip)| (p.name.clone(), *ip))
                .collect();
            chosen.sort();
            if let Some((_, ip)) = chosen.first() {
                let name = svc.name_any();
                out.push_str(&format!(
                    "{ip}\t{name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}\n"
                ));
            }
        }
        out
    }
}

/// Where container `container` of pod `ns/name` (uid `uid`) logs, over all its starts.
fn log_path(work: &Path, ns: &str, name: &str, uid: &str, container: &str) -> PathBuf {
    work.join("logs")
        .join(format!("{ns}_{name}_{uid}_{container}.log"))
}

/// Whether the pod's `Ready` condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The simulated kubelet. Runs until dropped; dropping it kills every process it started and
/// removes its network and folders.
#[derive(Debug)]
pub struct Kubelet {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Starts serving the pods of `client`'s API.
    pub async fn start(client: Client, config: KubeletConfig) -> Result<Kubelet> {
        host::check_tools()?;
        let base = config
            .base
            .clone()
            .unwrap_or_else(|| switchyard_testbed::cache::testbed_dir().join("kubelet"));
        let net = tokio::task::spawn_blocking(move || net::Network::create(&base))
            .await
            .map_err(|e| Error::Io {
                what: "set up",
                path: PathBuf::from("the pod network"),
                source: std::io::Error::other(e.to_string()),
            })??;
        for dir in ["logs", "pods", "pvc", "images"] {
            let d = net.work().join(dir);
            std::fs::create_dir_all(&d).map_err(Error::io("create", &d))?;
        }
        let shared = Arc::new(Shared {
            client,
            config,
            net,
            registry: container::Registry::default(),
            pods: Mutex::new(Vec::new()),
            objects: Mutex::new(BTreeMap::new()),
            services: Mutex::new(Vec::new()),
            seen_claims: Mutex::new(BTreeSet::new()),
            newest: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            held: Mutex::new(BTreeSet::new()),
        });
        create_nodes(&shared).await?;
        let task = tokio::spawn(sync_loop(shared.clone()));
        Ok(Kubelet { shared, task })
    }

    /// The subnet index K of the pod network (`10.213.K.0/24`), for [`leftovers`].
    pub fn subnet_index(&self) -> u8 {
        self.shared.net.index()
    }

    /// The host's address on the pod network.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.shared.net.host_ip()
    }

    /// The addresses of pod names (stable across recreation), as a handle to move into a
    /// resolver: the e2e's stand-in for the pods' DNS names.
    pub fn addresses(&self) -> Addresses {
        self.shared.net.addresses()
    }

    /// The kubelet's work folder (claims, pods, logs).
    pub fn work_dir(&self) -> PathBuf {
        self.shared.work().to_path_buf()
    }

    fn live(&self, ns: &str, name: &str) -> Option<Arc<PodRun>> {
        lock(&self.shared.pods)
            .iter()
            .rev()
            .find(|p| p.namespace == ns && p.name == name && !lock(&p.state).finished)
            .cloned()
    }

    /// The address of pod `name` (the newest of that name the kubelet runs).
    pub fn pod_ip(&self, ns: &str, name: &str) -> Option<Ipv4Addr> {
        self.live(ns, name).and_then(|p| lock(&p.state).ip)
    }

    /// The host pid of container `container`'s PID 1 in pod `name`, while it runs.
    pub fn container_pid(&self, ns: &str, name: &str, container: &str) -> Option<u32> {
        self.live(ns, name)
            .and_then(|p| lock(&p.state).pids.get(container).copied())
    }

    /// Sends `signal` to container `container`'s PID 1 in pod `name` (SIGKILL: the container
    /// crashes and is restarted; SIGSTOP: it hangs).
    pub fn signal_container(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        signal: Signal,
    ) -> Result<()> {
        let pid = self
            .container_pid(ns, name, container)
            .ok_or_else(|| Error::NoSuchPod {
                pod: format!("{ns}/{name} (container {container})"),
            })?;
        host::signal(pid, signal);
        Ok(())
    }

    /// Runs `argv` inside container `container` of pod `name`, as `kubectl exec` would; the
    /// exit code and what it printed.
    pub async fn exec(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<(Option<i32>, String)> {
        let run = self.live(ns, name).ok_or_else(|| Error::NoSuchPod {
            pod: format!("{ns}/{name}"),
        })?;
        let (pid, env) = {
            let s = lock(&run.state);
            (
                s.pids.get(container).copied(),
                s.envs.get(container).cloned().unwrap_or_default(),
            )
        };
        let pid = pid.ok_or_else(|| Error::NoSuchPod {
            pod: format!("{ns}/{name} (container {container})"),
        })?;
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        container::exec_in(pid, &argv, &env, timeout).await
    }

    /// Node loss: kills pod `name`'s processes at once (no SIGTERM, no grace), releases it,
    /// and deletes the pod from the API, as the node lifecycle controller would.
    pub async fn node_loss(&self, ns: &str, name: &str) -> Result<()> {
        let run = self.live(ns, name).ok_or_else(|| Error::NoSuchPod {
            pod: format!("{ns}/{name}"),
        })?;
        self.shared.event(
            &run,
            None,
            EventKind::Terminating {
                grace: Duration::ZERO,
            },
        );
        run.stop.send_replace(Stop::Kill);
        self.wait_finished(&run).await;
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        if let Some(p) = api
            .get_opt(name)
            .await
            .map_err(Error::api(format!("get pod {ns}/{name}")))?
            && p.metadata.uid.as_deref() == Some(run.uid.as_str())
        {
            api.delete(name, &DeleteParams::default().grace_period(0))
                .await
                .map_err(Error::api(format!("delete pod {ns}/{name}")))?;
        }
        Ok(())
    }

    /// Network partition: cuts pod `name` off the pod network (the host end of its veth pair
    /// down) until [`Kubelet::heal`]. The host (an operator, a test's clients) and every other
    /// pod lose it, both ways, silently (connections hang or find no route, the pod refuses
    /// nothing); its processes
    /// keep running. Its probes are not run meanwhile and keep their last results: a node's
    /// kubelet probes its pods from the node, on the pod's side of a cut like this one.
    pub async fn partition(&self, ns: &str, name: &str) -> Result<()> {
        self.set_connected(ns, name, false).await
    }

    /// Ends a [`Kubelet::partition`]: pod `name` is on the pod network again.
    pub async fn heal(&self, ns: &str, name: &str) -> Result<()> {
        self.set_connected(ns, name, true).await
    }

    async fn set_connected(&self, ns: &str, name: &str, connected: bool) -> Result<()> {
        let run = self.live(ns, name).ok_or_else(|| Error::NoSuchPod {
            pod: format!("{ns}/{name}"),
        })?;
        let netns = {
            let mut s = lock(&run.state);
            // Probes stop before the cut and resume after the heal, never probing through it.
            if !connected {
                s.partitioned = true;
            }
            s.netns.clone()
        };
        let netns = netns.ok_or_else(|| Error::NoSuchPod {
            pod: format!("{ns}/{name} (no network yet)"),
        })?;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.net.set_connected(&netns, connected))
            .await
            .map_err(|e| Error::Io {
                what: "partition",
                path: PathBuf::from(format!("pod {ns}/{name}")),
                source: std::io::Error::other(e.to_string()),
            })??;
        if connected {
            lock(&run.state).partitioned = false;
        }
        self.shared.event(
            &run,
            None,
            if connected {
                EventKind::Healed
            } else {
                EventKind::Partitioned
            },
        );
        Ok(())
    }

    /// Holds pods named `name`: a new pod of that name stays pending (not started) until
    /// [`Kubelet::release`], as one whose node is lost and whose local volume is there. Pair
    /// it with [`Kubelet::node_loss`] for a node that stays lost for a while. A container of
    /// a running pod of that name that exits is not restarted until the release either, as
    /// after a long `CrashLoopBackOff` (pair it with a container killed, to have it come back
    /// only after a failover).
    pub fn hold(&self, ns: &str, name: &str) {
        lock(&self.shared.held).insert(format!("{ns}/{name}"));
    }

    /// Ends a [`Kubelet::hold`]: the node is back, its pending pod starts.
    pub fn release(&self, ns: &str, name: &str) {
        lock(&self.shared.held).remove(&format!("{ns}/{name}"));
    }

    async fn wait_finished(&self, run: &PodRun) {
        while !lock(&run.state).finished {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Volume loss: empties claim `claim`'s folder (what a lost local disk leaves). Pair it
    /// with [`Kubelet::node_loss`] of the pod that used it.
    pub fn volume_loss(&self, ns: &str, claim: &str) -> Result<()> {
        let dir = self.shared.work().join("pvc").join(ns).join(claim);
        host::empty_dir(&dir)?;
        let e = Event {
            at: Instant::now(),
            pod: format!("{ns}/-"),
            uid: String::new(),
            container: None,
            kind: EventKind::VolumeLost(claim.to_owned()),
        };
        if let Some(f) = &self.shared.config.on_event {
            f(&e);
        }
        lock(&self.shared.events).push(e);
        Ok(())
    }

    /// The folder of claim `claim` (created if needed): a test may seed it before a pod uses
    /// it, or look into it.
    pub fn claim_dir(&self, ns: &str, claim: &str) -> Result<PathBuf> {
        volume::claim_dir(self.shared.work(), ns, claim)
    }

    /// What container `container` of the newest pod `name` printed, over all its starts.
    /// Still readable after the pod is gone (until the kubelet drops).
    pub fn logs(&self, ns: &str, name: &str, container: &str) -> String {
        let uid = lock(&self.shared.newest)
            .get(&format!("{ns}/{name}"))
            .cloned();
        uid.and_then(|uid| {
            let path = log_path(self.shared.work(), ns, name, &uid, container);
            std::fs::read_to_string(path).ok()
        })
        .unwrap_or_default()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.events).clone()
    }

    /// The host pids of every container process alive (outer `unshare` and PID 1).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.shared.registry)
            .iter()
            .flat_map(|(outer, init)| std::iter::once(*outer).chain(*init))
            .collect()
    }

    /// Stops every pod gracefully (SIGTERM, their grace periods, SIGKILL), then drops.
    pub async fn shutdown(self) {
        let pods = lock(&self.shared.pods).clone();
        for run in &pods {
            let grace = Instant::now() + Duration::from_secs(30);
            run.stop.send_if_modified(|s| {
                if *s == Stop::Run {
                    *s = Stop::Graceful(grace);
                    true
                } else {
                    false
                }
            });
        }
        for run in &pods {
            self.wait_finished(run).await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.closed.store(true, Ordering::SeqCst);
        let pods = lock(&self.shared.pods).clone();
        for run in pods {
            run.stop.send_replace(Stop::Kill);
        }
        // Kill every container by its pids now, whatever the tasks are doing.
        let pids: Vec<u32> = {
            let mut registry = lock(&self.shared.registry);
            let pids = registry
                .iter()
                .flat_map(|(outer, init)| std::iter::once(*outer).chain(*init))
                .collect();
            registry.clear();
            pids
        };
        for p in &pids {
            host::signal(*p, Signal::SIGKILL);
        }
        host::wait_gone(&pids, Duration::from_secs(10));
        self.shared.net.close();
    }
}

/// One listing of what the kubelet reads, per namespace.
struct Listing {
    pods: Vec<Pod>,
    objects: BTreeMap<String, NamespaceObjects>,
    claims: Vec<PersistentVolumeClaim>,
    services: Vec<Service>,
}

async fn list_all<K>(client: &Client, namespaces: Option<&[String]>) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    match namespaces {
        None => Ok(Api::<K>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(Error::api(format!("list {kind}")))?
            .items),
        Some(list) => {
            let mut out = Vec::new();
            for ns in list {
                out.extend(
                    Api::<K>::namespaced(client.clone(), ns)
                        .list(&ListParams::default())
                        .await
                        .map_err(Error::api(format!("list {kind} in {ns}")))?
                        .items,
                );
            }
            Ok(out)
        }
    }
}

async fn list(shared: &Shared) -> Result<Listing> {
    let ns = shared.config.namespaces.as_deref();
    let client = &shared.client;
    let pods: Vec<Pod> = list_all(client, ns).await?;
    let cms: Vec<ConfigMap> = list_all(client, ns).await?;
    let secrets: Vec<Secret> = list_all(client, ns).await?;
    let claims: Vec<PersistentVolumeClaim> = list_all(client, ns).await?;
    let services: Vec<Service> = list_all(client, ns).await?;
    let mut objects: BTreeMap<String, NamespaceObjects> = BTreeMap::new();
    for cm in cms {
        objects
            .entry(cm.namespace().unwrap_or_default())
            .or_default()
            .env
            .config_maps
            .insert(cm.name_any(), cm);
    }
    for s in secrets {
        objects
            .entry(s.namespace().unwrap_or_default())
            .or_default()
            .env
            .secrets
            .insert(s.name_any(), s);
    }
    for c in &claims {
        objects
            .entry(c.namespace().unwrap_or_default())
            .or_default()
            .claims
            .insert(c.name_any());
    }
    Ok(Listing {
        pods,
        objects,
        claims,
        services,
    })
}

/// The kubelet's loop: list, start new pods, stop deleted ones, refresh files and claims.
async fn sync_loop(shared: Arc<Shared>) {
    loop {
        if let Err(e) = sync_once(&shared).await {
            tracing::warn!("simulated kubelet: {e}");
        }
        tokio::time::sleep(shared.config.poll).await;
    }
}

async fn sync_once(shared: &Arc<Shared>) -> Result<()> {
    let listing = list(shared).await?;
    *lock(&shared.objects) = listing.objects.clone();
    *lock(&shared.services) = listing.services.clone();
    let listed: BTreeMap<String, &Pod> = listing
        .pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
        .collect();
    let runs = lock(&shared.pods).clone();
    // Deleted pods: stop them.
    for run in &runs {
        let gone = match listed.get(&run.uid) {
            None => true,
            Some(p) => p.metadata.deletion_timestamp.is_some(),
        };
        if gone && *run.stop.borrow() == Stop::Run && !lock(&run.state).finished {
            let grace = {
                let pod = lock(&run.pod);
                pod.metadata
                    .deletion_grace_period_seconds
                    .or_else(|| {
                        pod.spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                    })
                    .unwrap_or(30)
                    .max(0)
            };
            let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
            shared.event(run, None, EventKind::Terminating { grace });
            run.stop
                .send_replace(Stop::Graceful(Instant::now() + grace));
        }
        if let Some(p) = listed.get(&run.uid) {
            *lock(&run.pod) = (*p).clone();
        }
    }
    // Forget pods that are gone from the API and whose processes ended.
    lock(&shared.pods).retain(|r| listed.contains_key(&r.uid) || !lock(&r.state).finished);
    // New pods: placed on a node (when the kubelet has Nodes), then started once no other
    // pod of the same name still runs.
    let mut scheduling = Scheduling::read(shared, &listing.pods).await?;
    for pod in &listing.pods {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(pod) = scheduling.place(shared, pod).await? else {
            continue;
        };
        let pod = &pod;
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let runs = lock(&shared.pods).clone();
        if runs.iter().any(|r| r.uid == uid) {
            continue;
        }
        let blocked = runs
            .iter()
            .any(|r| r.namespace == ns && r.name == name && !lock(&r.state).finished);
        let held = lock(&shared.held).contains(&format!("{ns}/{name}"));
        if blocked || held || shared.closed.load(Ordering::SeqCst) {
            continue;
        }
        let dir = shared.work().join("pods").join(&uid);
        let run = Arc::new(PodRun::new(pod.clone(), dir));
        lock(&shared.newest).insert(run.key(), uid.clone());
        lock(&shared.pods).push(run.clone());
        tokio::spawn(pod::run_pod(shared.clone(), run));
    }
    // Files of running pods: hosts, ConfigMap and Secret volumes.
    let runs = lock(&shared.pods).clone();
    for run in runs {
        let (started, finished) = {
            let s = lock(&run.state);
            (s.ip.is_some(), s.finished)
        };
        if !started || finished {
            continue;
        }
        let _ = shared.write_kubelet_files(&run);
        let objects = shared.objects(&run.namespace);
        let volumes = lock(&run.pod)
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let dirs = lock(&run.state).volume_dirs.clone();
        for v in volumes {
            if let (Ok(Some(files)), Some(dir)) =
                (pod::projected_files(&v, &objects.env), dirs.get(&v.name))
            {
                let _ = volume::write_atomic(dir, &files);
            }
        }
    }
    sync_claims(shared, &listing.claims).await
}

/// Creates the kubelet's Nodes that the API does not have yet.
async fn create_nodes(shared: &Shared) -> Result<()> {
    let api: Api<Node> = Api::all(shared.client.clone());
    for name in &shared.config.nodes {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            ..Node::default()
        };
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::api(format!("create node {name}"))(e)),
        }
    }
    Ok(())
}

/// The scheduler's view in one sync: the kubelet's Nodes that take new pods, and how many
/// pods each has.
struct Scheduling {
    /// Schedulable node -> its pods (not being deleted).
    load: BTreeMap<String, usize>,
}

impl Scheduling {
    /// Reads the kubelet's Nodes (none when it has no Nodes) and counts `pods` on each.
    async fn read(shared: &Shared, pods: &[Pod]) -> Result<Scheduling> {
        let mut load = BTreeMap::new();
        if shared.config.nodes.is_empty() {
            return Ok(Scheduling { load });
        }
        let nodes = Api::<Node>::all(shared.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(Error::api("list nodes"))?;
        for n in nodes.items {
            let name = n.name_any();
            let cordoned = n.spec.and_then(|s| s.unschedulable).unwrap_or(false);
            if shared.config.nodes.contains(&name) && !cordoned {
                load.insert(name, 0);
            }
        }
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_ref())
                && let Some(count) = load.get_mut(n)
            {
                *count += 1;
            }
        }
        Ok(Scheduling { load })
    }

    /// `pod` as it is to run: as it is when it names a node or the kubelet has no Nodes,
    /// otherwise bound to the least loaded schedulable Node (`None`: every Node is cordoned,
    /// the pod waits).
    async fn place(&mut self, shared: &Shared, pod: &Pod) -> Result<Option<Pod>> {
        let named = pod.spec.as_ref().and_then(|s| s.node_name.as_ref());
        if shared.config.nodes.is_empty() || named.is_some() {
            return Ok(Some(pod.clone()));
        }
        let Some((node, _)) = self
            .load
            .iter()
            .min_by_key(|(name, count)| (**count, (*name).clone()))
        else {
            return Ok(None);
        };
        let node = node.clone();
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let patch = json!({"spec": {"nodeName": node}});
        let placed = Api::<Pod>::namespaced(shared.client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!("place pod {ns}/{name} on node {node}")))?;
        if let Some(count) = self.load.get_mut(&node) {
            *count += 1;
        }
        Ok(Some(placed))
    }
}

/// Binds new claims (status Bound, capacity as requested, resized when the request grows)
/// and removes the folders of claims deleted from the API that no pod uses.
async fn sync_claims(shared: &Shared, claims: &[PersistentVolumeClaim]) -> Result<()> {
    for c in claims {
        let requested = c
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone());
        let status = c.status.clone().unwrap_or_default();
        let capacity = status
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone());
        if status.phase.as_deref() == Some("Bound") && capacity == requested {
            continue;
        }
        let ns = c.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
        let patch = json!({"status": {
            "phase": "Bound",
            "accessModes": c.spec.as_ref().and_then(|s| s.access_modes.clone()),
            "capacity": requested.as_ref().map(|r| json!({"storage": r})),
        }});
        api.patch_status(
            &c.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::api(format!("bind claim {ns}/{}", c.name_any())))?;
    }
    let exists: BTreeSet<(String, String)> = claims
        .iter()
        .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    let deleted: Vec<(String, String)> = {
        let mut seen = lock(&shared.seen_claims);
        seen.extend(exists.iter().cloned());
        let deleted = seen.difference(&exists).cloned().collect();
        seen.retain(|k| exists.contains(k));
        deleted
    };
    let in_use: BTreeSet<PathBuf> = lock(&shared.pods)
        .iter()
        .filter(|r| !lock(&r.state).finished)
        .flat_map(|r| {
            lock(&r.state)
                .volume_dirs
                .values()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    for (ns, name) in deleted {
        let dir = shared.work().join("pvc").join(&ns).join(&name);
        if in_use.contains(&dir) {
            // Still mounted: removed once its pod is gone (the claim comes back on the next
            // listing only if it was recreated).
            lock(&shared.seen_claims).insert((ns, name));
            continue;
        }
        host::remove_dir(&dir)?;
    }
    Ok(())
}
