//! The operator's memory: the release `switchyard operator` binary, unchanged, against the fake
//! API served over HTTP (switchyard-fake-api, through a kubeconfig), with the simulated kubelet
//! (switchyard-kubelet) running the pods it creates on real MariaDB 10.11 servers, each pod in
//! a network namespace of its own. The operator's `VmRSS` and `VmHWM` are sampled from
//! `/proc/<pid>/status` every 250 ms through the phases:
//! 1. leading, with its watches open, and no cluster;
//! 2. a 3-instance cluster created, from nothing to Ready (bootstrap, two copies);
//! 3. idle with the Ready cluster;
//! 4. a rolling configuration change (a static variable: replicas restarted first, the primary
//!    last behind a switchover), until every instance runs the new revision and is Ready;
//! 5. idle after it.
//!
//! The operator runs on the host, as `kubectl`'s kubeconfig user would run it; it reaches the
//! pods by their names (`shop-0.shop-hosts.db.svc`) as in a cluster, through an `/etc/hosts`
//! bind-mounted in a mount namespace of its own (`unshare --mount`) that maps them to the
//! addresses the kubelet gives the pods. Its requests all go over HTTP; the kubelet and this
//! benchmark use the same API in-process.
//!
//! Targets (issue 11): under 30 MB idle. Needs root (network namespaces, chroots, mounts).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use switchyard_fake_api::FakeApi;
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec, SchemaChange};
use switchyard_kube::names::Names;
use switchyard_kubelet::{Images, Kubelet, KubeletConfig};
use switchyard_testbed::ServerKind;

pub use crate::report::SectionContext;
use crate::report::table;

/// The namespace of the cluster (and the lease).
const NS: &str = "db";
/// The cluster's name.
const NAME: &str = "shop";
/// The operator's image, mapped by the kubelet to the measured binary (the pods' agent).
const OPERATOR_IMAGE: &str = "switchyard/operator:bench";
/// How often memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The idle target of issue 11, bytes.
pub const IDLE_TARGET_BYTES: u64 = 30_000_000;
/// Longest wait for the cluster to become Ready, or for the rollout to finish.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The operator binary (release build).
    pub operator: PathBuf,
    /// How long each idle phase lasts.
    pub idle: Duration,
    /// The cluster's size.
    pub instances: u32,
}

/// One reading of the operator's memory, KiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the operator started.
    pub at_s: f64,
    /// VmRSS.
    pub rss_kib: u64,
    /// VmHWM (the peak so far).
    pub hwm_kib: u64,
    /// RssAnon (heap, stacks).
    pub anon_kib: u64,
    /// RssFile (the mapped binary and libraries).
    pub file_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// One phase's memory.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// What happened.
    pub name: String,
    /// How long it lasted.
    pub seconds: f64,
    /// Samples taken.
    pub samples: usize,
    /// The last sample.
    pub last: Sample,
    /// The largest VmRSS sampled.
    pub max_rss_kib: u64,
    /// Whether the idle target applies to it.
    pub idle: bool,
}

/// The benchmark's results.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The servers, for example `MariaDB 10.11.14`.
    pub server: String,
    /// The cluster's size.
    pub instances: u32,
    /// The operator binary's size, bytes.
    pub binary_bytes: u64,
    /// The phases in order.
    pub phases: Vec<Phase>,
    /// Every sample.
    pub samples: Vec<Sample>,
}

/// Reads `/proc/<pid>/status`: the memory fields, KiB.
///
/// # Errors
/// The process is gone.
pub fn sample(pid: u32, at_s: f64) -> Result<Sample> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        at_s,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
        threads: field("Threads:"),
    })
}

/// The operator process, in a mount namespace of its own; killed if not stopped.
struct Operator {
    child: Child,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Operator {
    fn start(binary: &Path, hosts: &Path, kubeconfig: &Path, log: &Path) -> Result<Operator> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("could not create {}", log.display()))?;
        // unshare and sh exec: the child's pid is the operator's.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(hosts)
            .arg(binary)
            .args([
                "operator",
                "--metrics-addr",
                "127.0.0.1:0",
                "--lease-namespace",
                NS,
                "--agent-image",
                OPERATOR_IMAGE,
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("could not start the operator under unshare (needs root and util-linux)")?;
        let pid = child.id();
        let started = Instant::now();
        // Wait for the exec chain to reach the operator before sampling.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe.file_name() == binary.file_name() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator did not start (process {pid} runs {}); its log: {}",
                    exe.display(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sampler = {
            let samples = samples.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(s) = sample(pid, started.elapsed().as_secs_f64()) else {
                        return;
                    };
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(s);
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Ok(Operator {
            child,
            started,
            samples,
            sampler,
        })
    }

    fn alive(&mut self) -> Result<()> {
        if let Some(code) = self.child.try_wait()? {
            bail!("the operator exited ({code})");
        }
        Ok(())
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The phase between `from` and now.
    fn phase(&self, name: &str, from: f64, idle: bool) -> Result<Phase> {
        let now = self.now();
        let pid = self.child.id();
        let last = sample(pid, now)?;
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let within: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at_s >= from && s.at_s <= now)
            .collect();
        Ok(Phase {
            name: name.to_owned(),
            seconds: now - from,
            samples: within.len() + 1,
            last,
            max_rss_kib: within
                .iter()
                .map(|s| s.rss_kib)
                .chain([last.rss_kib])
                .max()
                .unwrap_or(0),
            idle,
        })
    }

    /// SIGTERM, then the exit (SIGKILL after 30 s).
    async fn stop(mut self) -> Vec<Sample> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.sampler.abort();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.sampler.abort();
    }
}

/// Waits for `f` to say yes, checking the operator is alive; `what` names it in the error.
async fn until(
    operator: &mut Operator,
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Result<bool, String>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        operator.alive()?;
        match f().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(why) => last = why,
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cluster is Ready with every instance on the target revision, and no intent.
fn settled(c: &MySQLCluster, instances: u32) -> Result<bool, String> {
    let s = c.status.clone().unwrap_or_default();
    let target = s.revisions.as_ref().and_then(|r| r.update);
    let current = s.revisions.as_ref().and_then(|r| r.current);
    let all = s.instances.len() == instances as usize
        && s.instances.iter().all(|i| i.revision == target && i.ready);
    let idle = s.record.as_ref().is_none_or(|r| r.intent.is_none());
    if s.phase.as_deref() == Some("Ready") && all && current == target && idle {
        Ok(true)
    } else {
        Err(format!(
            "phase {:?} ready {:?} target {target:?} current {current:?}",
            s.phase, s.ready
        ))
    }
}

/// Runs the benchmark.
///
/// # Errors
/// The servers, the kubelet or the operator could not run, or the cluster did not settle.
pub async fn run(config: &Config, progress: &dyn Fn(&str)) -> Result<Results> {
    let _slots = switchyard_testbed::slots::acquire(config.instances as usize)
        .await
        .context("server slots")?;
    let bins =
        tokio::task::spawn_blocking(|| switchyard_testbed::binaries(ServerKind::Mariadb1011))
            .await?
            .context("MariaDB 10.11 from the testbed")?;
    let version = bins.version().to_owned();
    let binary_bytes = std::fs::metadata(&config.operator)
        .with_context(|| format!("no operator binary at {}", config.operator.display()))?
        .len();

    let store = kube_fake_client::ClientBuilder::new()
        .with_resource::<MySQLCluster>()
        .with_status_subresource::<MySQLCluster>()
        .with_resource::<SchemaChange>()
        .with_status_subresource::<SchemaChange>()
        .with_status_subresource::<Pod>()
        .with_status_subresource::<PersistentVolumeClaim>()
        .build()
        .await
        .context("the fake API's store")?;
    let api = FakeApi::new(store);
    let served = api.serve(([127, 0, 0, 1], 0).into()).await?;
    progress(&format!("fake API on {}", served.url()));
    let client = api.client();
    let kubelet = Kubelet::start(
        client.clone(),
        KubeletConfig {
            images: Images::new().operator(OPERATOR_IMAGE, &config.operator),
            namespaces: Some(vec![NS.to_owned()]),
            probe_period_cap: Some(Duration::from_secs(1)),
            ..KubeletConfig::default()
        },
    )
    .await
    .context("the simulated kubelet (needs root, iproute2 and util-linux)")?;

    let work = tempfile::tempdir()?;
    let names = Names {
        cluster: NAME.into(),
        namespace: NS.into(),
    };
    // The pods' names as the operator resolves them in a cluster.
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts.push_str("\n# switchyard bench operator: the simulated pods\n");
    let addresses = kubelet.addresses();
    for n in 0..config.instances {
        let ip = addresses
            .of(NS, &names.pod(n))
            .context("an address on the pod network")?;
        hosts.push_str(&format!("{ip}\t{}\t{}\n", names.pod_host(n), names.pod(n)));
    }
    let hosts_file = work.path().join("hosts");
    std::fs::File::create(&hosts_file)?.write_all(hosts.as_bytes())?;
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(&kubeconfig, served.kubeconfig(NS))?;
    let log = std::env::temp_dir().join("switchyard-bench-operator.log");

    let result = measure(
        config,
        &api,
        &client,
        &hosts_file,
        &kubeconfig,
        &log,
        &version,
        progress,
    )
    .await;
    kubelet.shutdown().await;
    drop(served);
    let (phases, samples) =
        result.with_context(|| format!("the operator's log: {}", log.display()))?;
    Ok(Results {
        server: format!("MariaDB {version}"),
        instances: config.instances,
        binary_bytes,
        phases,
        samples,
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "the benchmark's world, passed once"
)]
async fn measure(
    config: &Config,
    api: &FakeApi,
    client: &kube::Client,
    hosts: &Path,
    kubeconfig: &Path,
    log: &Path,
    version: &str,
    progress: &dyn Fn(&str),
) -> Result<(Vec<Phase>, Vec<Sample>)> {
    let mut operator = Operator::start(&config.operator, hosts, kubeconfig, log)?;
    let mut phases = Vec::new();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    until(
        &mut operator,
        Duration::from_secs(60),
        "the operator leading",
        async || {
            let holder = leases
                .get_opt("switchyard-operator")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity);
            Ok(holder.is_some() && api.watches() >= 7)
        },
    )
    .await?;
    let t = operator.now();
    progress("leading; idle with no cluster");
    tokio::time::sleep(config.idle.min(Duration::from_secs(20))).await;
    phases.push(operator.phase("idle, no cluster (leading, 7 watches)", t, true)?);

    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": version,
        "replicas": config.instances,
        "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "config": {"innodb_buffer_pool_size": "67108864"},
        "update": {"drainSeconds": 1},
    }))?;
    let mut cluster = MySQLCluster::new(NAME, spec);
    cluster.metadata.namespace = Some(NS.into());
    let clusters: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &cluster).await?;
    let t = operator.now();
    progress(&format!(
        "creating {NAME}: MariaDB {version}, {} instances",
        config.instances
    ));
    until(
        &mut operator,
        PHASE_LIMIT,
        "the cluster Ready",
        async || {
            settled(
                &clusters.get(NAME).await.map_err(|e| e.to_string())?,
                config.instances,
            )
        },
    )
    .await?;
    phases.push(operator.phase(
        &format!(
            "from nothing to Ready ({} instances: bootstrap, copies)",
            config.instances
        ),
        t,
        false,
    )?);

    let t = operator.now();
    progress("Ready; idle");
    tokio::time::sleep(config.idle).await;
    operator.alive()?;
    phases.push(operator.phase("idle, one Ready cluster", t, true)?);

    // A static variable: a rolling restart, the primary last behind a switchover.
    let mut conflicts = 0;
    loop {
        let mut c = clusters.get(NAME).await?;
        c.spec
            .config
            .insert("innodb_sort_buffer_size".into(), "2097152".into());
        c.metadata.managed_fields = None;
        match clusters.replace(NAME, &PostParams::default(), &c).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && conflicts < 20 => conflicts += 1,
            Err(e) => return Err(e.into()),
        }
    }
    let t = operator.now();
    progress("rolling a static configuration change");
    // The rollout has started once the target revision moved.
    until(
        &mut operator,
        Duration::from_secs(60),
        "the rollout's start",
        async || {
            let c = clusters.get(NAME).await.map_err(|e| e.to_string())?;
            Ok(settled(&c, config.instances).is_err())
        },
    )
    .await?;
    until(
        &mut operator,
        PHASE_LIMIT,
        "the rollout's end",
        async || {
            settled(
                &clusters.get(NAME).await.map_err(|e| e.to_string())?,
                config.instances,
            )
        },
    )
    .await?;
    phases.push(operator.phase(
        "rolling configuration change (replicas, switchover, old primary)",
        t,
        false,
    )?);

    let t = operator.now();
    progress("rolled; idle");
    tokio::time::sleep(config.idle).await;
    operator.alive()?;
    phases.push(operator.phase("idle after the rollout", t, true)?);
    let samples = operator.stop().await;
    Ok((phases, samples))
}

/// The markdown section: one row per phase.
pub fn section(results: &Results, ctx: &SectionContext) -> String {
    let mut out = ctx.preamble();
    let _ = write!(
        out,
        "The release `switchyard operator` ({:.1} MB binary) against the fake API over HTTP, the \
         simulated kubelet running a {}-instance {} cluster's pods on real servers. KiB from \
         `/proc/<pid>/status`, sampled every {} ms; VmHWM is the peak since the operator started.\n\n",
        results.binary_bytes as f64 / 1e6,
        results.instances,
        results.server,
        SAMPLE_EVERY.as_millis(),
    );
    let header: Vec<String> = [
        "phase",
        "seconds",
        "VmRSS KiB (end)",
        "max VmRSS KiB",
        "VmHWM KiB",
        "RssAnon KiB",
        "RssFile KiB",
        "threads",
        "< 30 MB idle",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let rows: Vec<Vec<String>> = results
        .phases
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("{:.0}", p.seconds),
                p.last.rss_kib.to_string(),
                p.max_rss_kib.to_string(),
                p.last.hwm_kib.to_string(),
                p.last.anon_kib.to_string(),
                p.last.file_kib.to_string(),
                p.last.threads.to_string(),
                if !p.idle {
                    "(not idle)".to_owned()
                } else if p.max_rss_kib * 1024 < IDLE_TARGET_BYTES {
                    "pass".to_owned()
                } else {
                    "**FAIL**".to_owned()
                },
            ]
        })
        .collect();
    out.push_str(&table(&header, 1, &rows));
    out
}
