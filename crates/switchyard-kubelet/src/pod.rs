//! One pod's life on the simulated kubelet: its volumes and network namespace, its init
//! containers in order, then its containers with their probes and restarts, its status in the
//! API, and its end (SIGTERM, the grace period, SIGKILL; or SIGKILL at once).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::container::{self, Mount, Process};
use crate::env::{self, Placement};
use crate::error::Error;
use crate::net::PodNet;
use crate::probe::{self, Timing};
use crate::volume;
use crate::{EventKind, Shared};

/// Locks a mutex, also after a panic elsewhere (the data stays consistent: each update is
/// one assignment).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a pod is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Keep running.
    Run,
    /// SIGTERM now, SIGKILL at the deadline.
    Graceful(Instant),
    /// SIGKILL now (node loss).
    Kill,
}

/// A container's state as the status reports it.
#[derive(Clone, Debug, Default)]
pub(crate) struct CState {
    name: String,
    image: String,
    state: Value,
    last: Value,
    ready: bool,
    started: bool,
    restarts: u32,
    id: String,
}

/// What the kubelet knows of a pod, shared by its tasks.
#[derive(Debug)]
pub(crate) struct PodState {
    pub(crate) phase: &'static str,
    reason: Option<String>,
    message: Option<String>,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) netns: Option<String>,
    /// Cut off the pod network ([`crate::Kubelet::partition`]): its probes are not run (the
    /// node's kubelet is on the pod's side of the cut) and keep their last results.
    pub(crate) partitioned: bool,
    start_time: Option<Timestamp>,
    initialized: bool,
    init: Vec<CState>,
    containers: Vec<CState>,
    /// Condition type -> (status, last transition).
    conditions: BTreeMap<&'static str, (bool, Timestamp)>,
    /// Container name -> its PID 1 while it runs.
    pub(crate) pids: BTreeMap<String, u32>,
    /// Container name -> its environment (for `exec`).
    pub(crate) envs: BTreeMap<String, Vec<(String, String)>>,
    /// Volume name -> its folder on the host.
    pub(crate) volume_dirs: BTreeMap<String, PathBuf>,
    /// The pod's task has ended (its processes are gone).
    pub(crate) finished: bool,
}

/// One pod run by the kubelet.
#[derive(Debug)]
pub(crate) struct PodRun {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    /// The pod object as last listed.
    pub(crate) pod: Mutex<Pod>,
    pub(crate) state: Mutex<PodState>,
    changed: Notify,
    pub(crate) stop: watch::Sender<Stop>,
    /// The pod's folder on the host.
    pub(crate) dir: PathBuf,
}

impl PodRun {
    pub(crate) fn new(pod: Pod, dir: PathBuf) -> PodRun {
        let spec = pod.spec.clone().unwrap_or_default();
        let cstate = |c: &Container| CState {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: json!({"waiting": {"reason": "PodInitializing"}}),
            last: json!({}),
            ..CState::default()
        };
        let state = PodState {
            phase: "Pending",
            reason: None,
            message: None,
            ip: None,
            netns: None,
            partitioned: false,
            start_time: None,
            initialized: spec.init_containers.as_ref().is_none_or(Vec::is_empty),
            init: spec.init_containers.iter().flatten().map(cstate).collect(),
            containers: spec.containers.iter().map(cstate).collect(),
            conditions: BTreeMap::new(),
            pids: BTreeMap::new(),
            envs: BTreeMap::new(),
            volume_dirs: BTreeMap::new(),
            finished: false,
        };
        PodRun {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            pod: Mutex::new(pod),
            state: Mutex::new(state),
            changed: Notify::new(),
            stop: watch::channel(Stop::Run).0,
            dir,
        }
    }

    /// `namespace/name`.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        lock(&self.pod).spec.clone().unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut PodState)) {
        f(&mut lock(&self.state));
        self.changed.notify_one();
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow() != Stop::Run
    }

    /// The kubelet-managed files (`hosts`, `resolv.conf`, `hostname`).
    pub(crate) fn kubelet_files(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// The pod's hostname (`spec.hostname`, else its name).
    pub(crate) fn hostname(&self) -> String {
        self.spec().hostname.unwrap_or_else(|| self.name.clone())
    }
}

/// Waits until `stop` leaves `Run` or `d` passed; true when it stopped.
async fn sleep_or_stop(rx: &mut watch::Receiver<Stop>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = async { rx.wait_for(|s| *s != Stop::Run).await.map(|_| ()) } => true,
    }
}

fn unsupported(pod: &Pod) -> Vec<String> {
    let mut found = Vec::new();
    let Some(spec) = &pod.spec else {
        return vec!["a pod without a spec".into()];
    };
    if spec.host_network == Some(true) {
        found.push("hostNetwork".into());
    }
    if spec.share_process_namespace == Some(true) {
        found.push("shareProcessNamespace".into());
    }
    for v in spec.volumes.iter().flatten() {
        let supported = v.persistent_volume_claim.is_some()
            || v.empty_dir.is_some()
            || v.config_map.is_some()
            || v.secret.is_some();
        if !supported {
            found.push(format!(
                "volume `{}` (only persistentVolumeClaim, emptyDir, configMap and secret volumes)",
                v.name
            ));
        }
    }
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        if c.lifecycle.is_some() {
            found.push(format!("lifecycle hooks of container `{}`", c.name));
        }
        if c.restart_policy.is_some() {
            found.push(format!(
                "restartPolicy of container `{}` (sidecars)",
                c.name
            ));
        }
        for m in c.volume_mounts.iter().flatten() {
            if m.sub_path_expr.is_some() {
                found.push(format!("subPathExpr in container `{}`", c.name));
            }
        }
    }
    found
}

/// Prepares the pod's volumes: the claim folders (the claims must exist), emptyDirs, and the
/// ConfigMap and Secret files. An error names what is missing.
fn prepare_volumes(shared: &Shared, run: &PodRun) -> Result<BTreeMap<String, PathBuf>, String> {
    let spec = run.spec();
    let objects = shared.objects(&run.namespace);
    let mut dirs = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        let dir = if let Some(claim) = &v.persistent_volume_claim {
            if !objects.claims.contains(&claim.claim_name) {
                return Err(format!(
                    "persistentvolumeclaim \"{}\" not found",
                    claim.claim_name
                ));
            }
            volume::claim_dir(shared.work(), &run.namespace, &claim.claim_name)
                .map_err(|e| e.to_string())?
        } else if v.empty_dir.is_some() {
            let dir = run.dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            dir
        } else {
            let dir = run.dir.join("volumes").join(&v.name);
            if let Some(files) = projected_files(v, &objects.env)? {
                volume::write_atomic(&dir, &files).map_err(|e| e.to_string())?;
            } else {
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            }
            dir
        };
        dirs.insert(v.name.clone(), dir);
    }
    if let Some(group) = spec.security_context.as_ref().and_then(|s| s.fs_group) {
        let gid = u32::try_from(group).map_err(|_| format!("fsGroup {group} out of range"))?;
        for v in spec.volumes.iter().flatten() {
            if (v.persistent_volume_claim.is_some() || v.empty_dir.is_some())
                && let Some(dir) = dirs.get(&v.name)
            {
                chown_group(dir, gid).map_err(|e| format!("fsGroup on {}: {e}", dir.display()))?;
            }
        }
    }
    Ok(dirs)
}

/// Gives every file under `dir` the group `gid`, group-writable, folders setgid (fsGroup).
fn chown_group(dir: &std::path::Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    std::os::unix::fs::lchown(dir, None, Some(gid))?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        let mode = meta.mode() & 0o7777 | 0o2070;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
        for entry in std::fs::read_dir(dir)? {
            chown_group(&entry?.path(), gid)?;
        }
    } else if meta.is_file() {
        let mode = meta.mode() & 0o7777 | 0o060;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The files of a ConfigMap or Secret volume (None for other volumes; an error when the
/// object or a key is missing and not optional).
pub(crate) fn projected_files(
    v: &Volume,
    objects: &env::Objects,
) -> Result<Option<volume::Files>, String> {
    if let Some(src) = &v.config_map {
        return match objects.config_maps.get(&src.name) {
            Some(cm) => volume::config_map_files(cm, src.items.as_deref(), src.default_mode)
                .map(Some)
                .map_err(|e| format!("configmap \"{}\": {e}", src.name)),
            None if src.optional == Some(true) => Ok(Some(volume::Files::new())),
            None => Err(format!("configmap \"{}\" not found", src.name)),
        };
    }
    if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        return match objects.secrets.get(&name) {
            Some(s) => volume::secret_files(s, src.items.as_deref(), src.default_mode)
                .map(Some)
                .map_err(|e| format!("secret \"{name}\": {e}")),
            None if src.optional == Some(true) => Ok(Some(volume::Files::new())),
            None => Err(format!("secret \"{name}\" not found")),
        };
    }
    Ok(None)
}

/// Why a container stopped running.
enum Ended {
    /// Its process exited with this code.
    Exited(i32),
    /// The kubelet killed it after a failed probe; the code and why.
    Restarted(i32, String),
    /// The pod is stopping; the code and whether SIGKILL was needed.
    Stopped(i32, bool),
}

/// Whether a container is an init container (runs to completion, no probes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    Main,
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn ts(t: Timestamp) -> Value {
    serde_json::to_value(Time(t)).unwrap_or(Value::Null)
}

fn terminated(code: i32, reason: &str, started: Timestamp, id: &str) -> Value {
    json!({"terminated": {
        "exitCode": code,
        "reason": reason,
        "startedAt": ts(started),
        "finishedAt": ts(now()),
        "containerID": id,
    }})
}

impl PodRun {
    fn cstate(&self, kind: Kind, index: usize, f: impl FnOnce(&mut CState)) {
        self.update(|s| {
            let list = match kind {
                Kind::Init => &mut s.init,
                Kind::Main => &mut s.containers,
            };
            if let Some(c) = list.get_mut(index) {
                f(c);
            }
        });
    }
}

/// The pod's task: prepares it, runs its containers until it is told to stop, stops them,
/// and releases its network and folders.
pub(crate) async fn run_pod(shared: Arc<Shared>, run: Arc<PodRun>) {
    let writer = status_writer(shared.clone(), run.clone());
    let life = lifecycle(shared.clone(), run.clone());
    tokio::pin!(writer);
    tokio::select! {
        () = life => {}
        () = &mut writer => {}
    }
    // Every container process has ended; release the pod's network and folders.
    let netns = lock(&run.state).netns.take();
    let ip = lock(&run.state).ip;
    if let (Some(netns), Some(ip)) = (netns, ip) {
        let net = shared.clone();
        let _ =
            tokio::task::spawn_blocking(move || net.net.remove_pod(&PodNet { netns, ip })).await;
    }
    let _ = crate::host::remove_dir(&run.dir);
    run.update(|s| {
        s.finished = true;
        s.pids.clear();
    });
    shared.event(&run, None, EventKind::PodGone);
}

async fn lifecycle(shared: Arc<Shared>, run: Arc<PodRun>) {
    let mut stop = run.stop.subscribe();
    let missing = unsupported(&lock(&run.pod));
    if !missing.is_empty() {
        let message = Error::Unsupported {
            pod: run.key(),
            what: missing.join(", "),
        }
        .to_string();
        shared.event(&run, None, EventKind::Refused(message.clone()));
        run.update(|s| {
            s.reason = Some("Unsupported".into());
            s.message = Some(message);
        });
        let _ = stop.wait_for(|s| *s != Stop::Run).await;
        return;
    }
    // Volumes: wait for claims, ConfigMaps and Secrets, as the kubelet does.
    let dirs = loop {
        match prepare_volumes(&shared, &run) {
            Ok(dirs) => break dirs,
            Err(why) => {
                let changed = lock(&run.state).message.as_deref() != Some(why.as_str());
                if changed {
                    shared.event(&run, None, EventKind::Waiting(why.clone()));
                    run.update(|s| {
                        s.reason = Some("ContainerCreating".into());
                        s.message = Some(why);
                    });
                }
                if sleep_or_stop(&mut stop, shared.config.poll).await {
                    return;
                }
            }
        }
    };
    // The network namespace.
    let net = {
        let shared = shared.clone();
        let key = run.key();
        tokio::task::spawn_blocking(move || shared.net.add_pod(&key)).await
    };
    let pod_net = match net {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            shared.event(&run, None, EventKind::Waiting(e.to_string()));
            run.update(|s| s.message = Some(e.to_string()));
            let _ = stop.wait_for(|s| *s != Stop::Run).await;
            return;
        }
        Err(_) => return,
    };
    let ip = pod_net.ip;
    run.update(|s| {
        s.ip = Some(ip);
        s.netns = Some(pod_net.netns.clone());
        s.start_time = Some(now());
        s.volume_dirs = dirs;
        s.reason = None;
        s.message = None;
    });
    if let Err(e) = shared.write_kubelet_files(&run) {
        shared.event(&run, None, EventKind::Waiting(e.to_string()));
    }
    shared.event(&run, None, EventKind::PodStarted(ip));
    // Init containers, in order, each to completion.
    let spec = run.spec();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        if !run_container(&shared, &run, Kind::Init, i, c.clone()).await {
            return;
        }
    }
    run.update(|s| s.initialized = true);
    // Containers, each in a task of its own.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let (shared, run, c) = (shared.clone(), run.clone(), c.clone());
        tasks.spawn(async move { run_container(&shared, &run, Kind::Main, i, c).await });
    }
    run.update(|s| s.phase = "Running");
    while tasks.join_next().await.is_some() {}
    if !run.stopping() {
        // Every container ended on its own (restartPolicy Never or OnFailure).
        let failed = lock(&run.state)
            .containers
            .iter()
            .any(|c| c.state["terminated"]["exitCode"].as_i64() != Some(0));
        run.update(|s| s.phase = if failed { "Failed" } else { "Succeeded" });
        let _ = stop.wait_for(|s| *s != Stop::Run).await;
    }
}

/// Runs one container with its restarts until it completes (an init container, or a
/// restart policy that stops) or the pod stops. Returns false when the pod stops or fails.
async fn run_container(
    shared: &Arc<Shared>,
    run: &Arc<PodRun>,
    kind: Kind,
    index: usize,
    c: Container,
) -> bool {
    let mut stop = run.stop.subscribe();
    let policy = run.spec().restart_policy.unwrap_or_else(|| "Always".into());
    let mut restarts: u32 = 0;
    loop {
        if run.stopping() {
            return false;
        }
        let started_at = now();
        let id = format!("kubelet://{}/{}/{restarts}", run.uid, c.name);
        let code = match start(shared, run, &c).await {
            Err((reason, message)) => {
                shared.event(
                    run,
                    Some(&c.name),
                    EventKind::Waiting(format!("{reason}: {message}")),
                );
                run.cstate(kind, index, |s| {
                    s.state = json!({"waiting": {"reason": reason, "message": message}});
                });
                if sleep_or_stop(&mut stop, shared.config.restart_backoff).await {
                    return false;
                }
                continue;
            }
            Ok((mut process, env)) => {
                let init = process.init;
                run.update(|s| {
                    if let Some(p) = init {
                        s.pids.insert(c.name.clone(), p);
                    }
                    s.envs.insert(c.name.clone(), env.clone());
                });
                run.cstate(kind, index, |s| {
                    s.state = json!({"running": {"startedAt": ts(started_at)}});
                    s.id = id.clone();
                    s.restarts = restarts;
                    s.started = kind == Kind::Main && c.startup_probe.is_none();
                    s.ready = false;
                });
                shared.event(
                    run,
                    Some(&c.name),
                    EventKind::ContainerStarted {
                        restarts,
                        pid: init,
                    },
                );
                let ended = tokio::select! {
                    code = process.wait() => Ended::Exited(code),
                    why = watch_probes(shared, run, index, &c, init, &env), if kind == Kind::Main => {
                        let grace = grace_period(run);
                        let code = stop_process(&mut process, Stop::Graceful(Instant::now() + grace)).await.0;
                        Ended::Restarted(code, why)
                    }
                    _ = async { stop.wait_for(|s| *s != Stop::Run).await.map(|_| ()) } => {
                        let how = *run.stop.borrow();
                        let (code, killed) = stop_process(&mut process, how).await;
                        Ended::Stopped(code, killed)
                    }
                };
                run.update(|s| {
                    s.pids.remove(&c.name);
                });
                match ended {
                    Ended::Exited(code) => {
                        shared.event(run, Some(&c.name), EventKind::ContainerExited { code });
                        code
                    }
                    Ended::Restarted(code, why) => {
                        shared.event(run, Some(&c.name), EventKind::Restarting(why));
                        code
                    }
                    Ended::Stopped(code, killed) => {
                        shared.event(run, Some(&c.name), EventKind::Stopped { code, killed });
                        run.cstate(kind, index, |s| {
                            s.state = terminated(
                                code,
                                if code == 0 { "Completed" } else { "Error" },
                                started_at,
                                &id,
                            );
                            s.ready = false;
                        });
                        return false;
                    }
                }
            }
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let done = match (kind, policy.as_str()) {
            (Kind::Init, _) if code == 0 => true,
            (_, "Never") => true,
            (Kind::Main, "OnFailure") if code == 0 => true,
            _ => false,
        };
        if done {
            run.cstate(kind, index, |s| {
                s.state = terminated(code, reason, started_at, &id);
                s.ready = false;
            });
            return kind == Kind::Init && code == 0;
        }
        restarts += 1;
        let backoff = shared
            .config
            .restart_backoff
            .saturating_mul(1 << (restarts - 1).min(16))
            .min(shared.config.max_restart_backoff);
        run.cstate(kind, index, |s| {
            s.last = terminated(code, reason, started_at, &id);
            s.state = json!({"waiting": {
                "reason": "CrashLoopBackOff",
                "message": format!("back-off {:?} restarting failed container {}", backoff, c.name),
            }});
            s.restarts = restarts;
            s.ready = false;
            s.started = false;
        });
        if sleep_or_stop(&mut stop, backoff).await {
            return false;
        }
        // A held pod's crashed container waits for the release (a long back-off).
        let key = format!("{}/{}", run.namespace, run.name);
        while lock(&shared.held).contains(&key) {
            if sleep_or_stop(&mut stop, Duration::from_millis(50)).await {
                return false;
            }
        }
    }
}

fn grace_period(run: &PodRun) -> Duration {
    let secs = run
        .spec()
        .termination_grace_period_seconds
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Stops a container: SIGTERM and SIGKILL at the deadline, or SIGKILL at once. The exit code
/// and whether SIGKILL was needed.
async fn stop_process(process: &mut Process, how: Stop) -> (i32, bool) {
    if let Stop::Graceful(deadline) = how {
        process.terminate();
        if let Ok(code) = tokio::time::timeout_at(deadline.into(), process.wait()).await {
            return (code, false);
        }
    }
    process.kill();
    (process.wait().await, true)
}

/// Starts a container: resolves its image, environment, command and mounts.
async fn start(
    shared: &Arc<Shared>,
    run: &Arc<PodRun>,
    c: &Container,
) -> Result<(Process, Vec<(String, String)>), (String, String)> {
    let image = c.image.clone().unwrap_or_default();
    let root = {
        let shared = shared.clone();
        let image = image.clone();
        tokio::task::spawn_blocking(move || shared.config.images.resolve(&image, shared.work()))
            .await
            .map_err(|e| ("ErrImagePull".to_owned(), e.to_string()))?
            .map_err(|e| ("ErrImagePull".to_owned(), e.to_string()))?
    };
    let pod = lock(&run.pod).clone();
    let objects = shared.objects(&run.namespace);
    let (ip, dirs) = {
        let s = lock(&run.state);
        (
            s.ip.map(|i| i.to_string()).unwrap_or_default(),
            s.volume_dirs.clone(),
        )
    };
    let host_ip = shared.net.host_ip().to_string();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| shared.config.node_name.clone());
    let at = Placement {
        pod_ip: &ip,
        host_ip: &host_ip,
        node: &node,
    };
    let env = env::environment(&pod, c, &root.env, &objects.env, at)
        .map_err(|e| ("CreateContainerConfigError".to_owned(), e))?;
    let argv = env::command_line(c, &root.entrypoint, &root.cmd, &env);
    if argv.is_empty() {
        return Err((
            "CreateContainerError".into(),
            format!("image {image} has no entrypoint and the container no command"),
        ));
    }
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let dir = dirs.get(&m.name).ok_or_else(|| {
            (
                "CreateContainerConfigError".to_owned(),
                format!("volume mount {} names no volume of the pod", m.name),
            )
        })?;
        let source = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) => {
                let p = dir.join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
                }
                p
            }
            None => dir.clone(),
        };
        mounts.push(Mount {
            source,
            target: m.mount_path.clone(),
            read_only: m.read_only == Some(true),
        });
    }
    let pod_security = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let security = c.security_context.clone().unwrap_or_default();
    let cdir = run.dir.join("containers").join(&c.name);
    let scratch = cdir.join("root");
    let log = shared.log_path(run, &c.name);
    std::fs::create_dir_all(&cdir)
        .map_err(|e| ("CreateContainerError".to_owned(), e.to_string()))?;
    let netns = lock(&run.state).netns.clone().unwrap_or_default();
    let files = run.kubelet_files();
    let hostname = run.hostname();
    let launch = container::Launch {
        netns: &netns,
        scratch: &scratch,
        image: &root.dir,
        kubelet_files: &files,
        hostname: &hostname,
        mounts: &mounts,
        argv: &argv,
        env: &env,
        workdir: c.working_dir.as_deref(),
        user: security.run_as_user.or(pod_security.run_as_user),
        group: security.run_as_group.or(pod_security.run_as_group),
        log: &log,
    };
    let header = format!(
        "--- simulated kubelet: starting container {} of pod {} ({image}): {}\n",
        c.name,
        run.key(),
        argv.join(" ")
    );
    append(&log, &header);
    let process = Process::start(&launch, &shared.registry)
        .await
        .map_err(|e| ("RunContainerError".to_owned(), e.to_string()))?;
    Ok((process, env))
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // The log is for people; a failed write loses a header line only.
        let _ = f.write_all(text.as_bytes());
    }
}

/// Runs a container's probes: the startup probe until it succeeds, then readiness (which sets
/// `ready`) and liveness. Returns why the container must be restarted (a startup or liveness
/// probe failed `failureThreshold` times in a row); never returns otherwise.
async fn watch_probes(
    shared: &Arc<Shared>,
    run: &Arc<PodRun>,
    index: usize,
    c: &Container,
    init: Option<u32>,
    env: &[(String, String)],
) -> String {
    let ip = lock(&run.state)
        .ip
        .map(|i| i.to_string())
        .unwrap_or_default();
    let cap = shared.config.probe_period_cap;
    if let Some(p) = &c.startup_probe {
        let t = Timing::of(p, cap);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            if lock(&run.state).partitioned {
                tokio::time::sleep(t.period).await;
                continue;
            }
            let o = probe::run(p, c, &ip, init, env, t.timeout).await;
            if o.ok {
                break;
            }
            failures += 1;
            shared.event(
                run,
                Some(&c.name),
                EventKind::ProbeFailed {
                    probe: "startup",
                    detail: o.detail.clone(),
                },
            );
            if failures >= t.failure_threshold {
                return format!("startup probe failed {failures} times: {}", o.detail);
            }
            tokio::time::sleep(t.period).await;
        }
    }
    run.cstate(Kind::Main, index, |s| s.started = true);
    let readiness = async {
        let Some(p) = &c.readiness_probe else {
            run.cstate(Kind::Main, index, |s| s.ready = true);
            return std::future::pending::<()>().await;
        };
        let t = Timing::of(p, cap);
        tokio::time::sleep(t.initial_delay).await;
        let (mut ok_streak, mut fail_streak) = (0u32, 0u32);
        let mut ready = false;
        loop {
            if lock(&run.state).partitioned {
                tokio::time::sleep(t.period).await;
                continue;
            }
            let o = probe::run(p, c, &ip, init, env, t.timeout).await;
            if o.ok {
                ok_streak += 1;
                fail_streak = 0;
            } else {
                fail_streak += 1;
                ok_streak = 0;
            }
            let now_ready = if ready {
                fail_streak < t.failure_threshold
            } else {
                ok_streak >= t.success_threshold
            };
            if now_ready != ready {
                ready = now_ready;
                if !ready {
                    shared.event(
                        run,
                        Some(&c.name),
                        EventKind::ProbeFailed {
                            probe: "readiness",
                            detail: o.detail.clone(),
                        },
                    );
                }
                run.cstate(Kind::Main, index, |s| s.ready = ready);
            }
            tokio::time::sleep(t.period).await;
        }
    };
    let liveness = async {
        let Some(p) = &c.liveness_probe else {
            return std::future::pending::<String>().await;
        };
        let t = Timing::of(p, cap);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            if lock(&run.state).partitioned {
                tokio::time::sleep(t.period).await;
                continue;
            }
            let o = probe::run(p, c, &ip, init, env, t.timeout).await;
            if o.ok {
                failures = 0;
            } else {
                failures += 1;
                shared.event(
                    run,
                    Some(&c.name),
                    EventKind::ProbeFailed {
                        probe: "liveness",
                        detail: o.detail.clone(),
                    },
                );
                if failures >= t.failure_threshold {
                    return format!("liveness probe failed {failures} times: {}", o.detail);
                }
            }
            tokio::time::sleep(t.period).await;
        }
    };
    tokio::select! {
        () = readiness => unreachable_pending(),
        why = liveness => why,
    }
}

/// The readiness loop never ends; this keeps the `select!` total without a panic path.
fn unreachable_pending() -> String {
    String::from("the readiness loop ended")
}

/// The pod's status as the kubelet writes it.
fn status_json(run: &PodRun, host_ip: &str) -> Value {
    let pod = lock(&run.pod).clone();
    let mut s = lock(&run.state);
    let containers_ready = !s.containers.is_empty() && s.containers.iter().all(|c| c.ready);
    let gates: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|sp| sp.readiness_gates.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.condition_type)
        .collect();
    let existing: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|st| st.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let gates_true = gates.iter().all(|g| {
        existing
            .iter()
            .any(|c| c["type"] == g.as_str() && c["status"] == "True")
    });
    let wanted = [
        ("PodScheduled", true),
        ("Initialized", s.initialized),
        ("ContainersReady", containers_ready),
        (
            "Ready",
            containers_ready && gates_true && s.phase == "Running",
        ),
    ];
    let mut conditions = Vec::new();
    for (kind, status) in wanted {
        let entry = s.conditions.entry(kind).or_insert((status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
        conditions.push(json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastTransitionTime": ts(entry.1),
            "lastProbeTime": Value::Null,
        }));
    }
    // Conditions other writers own (readiness gates) are kept.
    for c in existing {
        let kind = c["type"].as_str().unwrap_or_default();
        if !wanted.iter().any(|(k, _)| *k == kind) {
            conditions.push(c);
        }
    }
    let statuses = |list: &[CState]| -> Vec<Value> {
        list.iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "image": c.image,
                    "imageID": format!("simulated://{}", c.image),
                    "containerID": if c.id.is_empty() { Value::Null } else { json!(c.id) },
                    "state": c.state,
                    "lastState": c.last,
                    "ready": c.ready,
                    "started": c.started,
                    "restartCount": c.restarts,
                })
            })
            .collect()
    };
    let ip = s.ip.map(|i| i.to_string());
    json!({
        "phase": s.phase,
        "reason": s.reason,
        "message": s.message,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": ip.as_ref().map(|i| json!([{"ip": i}])).unwrap_or(Value::Null),
        "startTime": s.start_time.map(ts),
        "initContainerStatuses": statuses(&s.init),
        "containerStatuses": statuses(&s.containers),
        "qosClass": "BestEffort",
    })
}

/// Writes the pod's status whenever it changes (and the pod object is still this one).
async fn status_writer(shared: Arc<Shared>, run: Arc<PodRun>) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &run.namespace);
    let mut last = Value::Null;
    loop {
        let status = status_json(&run, &shared.net.host_ip().to_string());
        if status != last {
            match api.get_opt(&run.name).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() == Some(run.uid.as_str()) => {
                    let patch = json!({"status": status});
                    match api
                        .patch_status(&run.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(p) => {
                            *lock(&run.pod) = p;
                            last = status;
                        }
                        Err(e) => shared.event(
                            &run,
                            None,
                            EventKind::Waiting(format!("status write failed: {e}")),
                        ),
                    }
                }
                // Gone, or another pod of the same name: nothing to write.
                Ok(_) => last = status,
                Err(e) => shared.event(
                    &run,
                    None,
                    EventKind::Waiting(format!("status read failed: {e}")),
                ),
            }
        }
        tokio::select! {
            () = run.changed.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
