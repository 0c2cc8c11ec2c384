//! The simulated kubelet on hand-written pods (no operator): a MariaDB 10.11 server run
//! straight from the testbed's Debian root in its own network, mount, PID and UTS namespaces,
//! configured by a ConfigMap-mounted my.cnf, beside an HTTP container (this test executable)
//! whose `httpGet` probes the test drives; init containers, a claim, emptyDirs, a Secret,
//! `fieldRef` environment, exec and HTTP probes, restarts on a crash and on a failed liveness
//! probe, deletion with SIGTERM and a grace period, node loss, volume loss, and nothing left
//! behind, also when a test panics.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_fake_client::ClientBuilder;
use nix::sys::signal::Signal;
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use switchyard_kubelet::{Event, EventKind, Images, Kubelet, KubeletConfig, leftovers, pod_ready};
use switchyard_testbed::ServerKind;

const NS: &str = "kt";
/// The longest any step may take before the test fails with what it saw.
const STEP: Duration = Duration::from_secs(60);
/// The my.cnf the pod's server reads (`--defaults-file`), from the ConfigMap.
const MY_CNF: &str = "[mysqld]\nuser=root\ndatadir=/var/lib/mysql\nsocket=/run/mysqld/mysqld.sock\nbind-address=0.0.0.0\nskip-grant-tables\nskip-name-resolve\ninnodb-buffer-pool-size=16M\nmax_connections=77\n";

async fn fake_api() -> Client {
    ClientBuilder::new()
        .with_status_subresource::<Pod>()
        .with_status_subresource::<PersistentVolumeClaim>()
        .build()
        .await
        .expect("a fake API")
}

fn config() -> KubeletConfig {
    // The operator image's root is made from a binary with its loader and libraries; this
    // test's own executable stands in for `switchyard` (`--list` prints its tests, exit 0).
    let me = std::env::current_exe().expect("the test executable");
    KubeletConfig {
        images: Images::new().operator("switchyard:test", me),
        on_event: Some(std::sync::Arc::new(|e: &Event| {
            println!(
                "[kubelet] {} {} {:?}",
                e.pod,
                e.container.as_deref().unwrap_or("-"),
                e.kind
            );
        })),
        ..KubeletConfig::default()
    }
}

/// Waits for `f` to give a value, failing with `what` after [`STEP`].
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod_spec(name: &str, grace: i64) -> Pod {
    let probe = [
        "/usr/bin/mariadb",
        "-S",
        "/run/mysqld/mysqld.sock",
        "-e",
        "SELECT 1",
    ];
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "db"}},
        "spec": {
            "hostname": name,
            "subdomain": "db-hosts",
            "terminationGracePeriodSeconds": grace,
            "initContainers": [
                {"name": "first", "image": "switchyard:test",
                 "command": ["/usr/local/bin/switchyard", "--list"]},
                {"name": "second", "image": "mariadb:10.11",
                 "command": ["/usr/sbin/mariadbd", "--version"]},
            ],
            "containers": [{
                "name": "mariadb",
                "image": "mariadb:10.11",
                "command": ["/usr/sbin/mariadbd"],
                "args": ["--defaults-file=/etc/switchyard/config/my.cnf", "--report-host=$(POD_IP)"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "CLUSTER", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "cluster"}}},
                ],
                "ports": [{"name": "mysql", "containerPort": 3306}],
                "readinessProbe": {"exec": {"command": probe}, "periodSeconds": 1},
                "livenessProbe": {
                    "exec": {"command": probe},
                    "initialDelaySeconds": 3, "periodSeconds": 1, "timeoutSeconds": 1,
                    "failureThreshold": 3,
                },
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/mysql"},
                    {"name": "run", "mountPath": "/run/mysqld"},
                    {"name": "config", "mountPath": "/etc/switchyard/config", "readOnly": true},
                    {"name": "secrets", "mountPath": "/etc/switchyard/secrets", "readOnly": true},
                ],
            }, {
                // This test executable, running only `pod_http_server`.
                "name": "agent",
                "image": "switchyard:test",
                "command": ["/usr/local/bin/switchyard", "pod_http_server", "--exact", "--nocapture"],
                "env": [
                    {"name": HTTP_ENV, "value": "0.0.0.0:9104"},
                    {"name": STATE_ENV, "value": "/switchyard"},
                ],
                "ports": [{"name": "agent", "containerPort": 9104}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "agent"}, "periodSeconds": 1},
                "livenessProbe": {
                    "httpGet": {"path": "/livez", "port": "agent"},
                    "periodSeconds": 1, "failureThreshold": 2,
                },
                "volumeMounts": [{"name": "switchyard", "mountPath": "/switchyard"}],
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-db"}},
                {"name": "run", "emptyDir": {}},
                {"name": "switchyard", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "cfg"}},
                {"name": "secrets", "secret": {"secretName": "creds"}},
            ],
        },
    }))
    .expect("a pod")
}

/// The address `pod_http_server` listens on; it runs only when this is set.
const HTTP_ENV: &str = "SYK_TEST_HTTP";
/// The folder whose marker files drive its answers: `unready` fails `/readyz` (503), `dead`
/// fails `/livez` (500; removed when the server starts, as a restart would cure a hang).
const STATE_ENV: &str = "SYK_TEST_STATE";

/// Not a check: the HTTP server of the test pods' `agent` container, which runs this test
/// executable with this test's name (the kubelet's operator image is made from it). Without
/// [`HTTP_ENV`] it returns at once. It exits 0 on SIGTERM (it is its container's PID 1, which
/// the kernel gives no default SIGTERM action).
#[test]
fn pod_http_server() {
    let Ok(addr) = std::env::var(HTTP_ENV) else {
        return;
    };
    let state = PathBuf::from(std::env::var(STATE_ENV).expect("the state folder"));
    let _ = std::fs::remove_file(state.join("dead"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        println!("pod_http_server: listening on {addr}");
        loop {
            let (mut conn, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(_) => continue,
                },
                _ = term.recv() => {
                    println!("pod_http_server: SIGTERM, exiting");
                    std::process::exit(0);
                }
            };
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/readyz" if state.join("unready").exists() => {
                    ("503 Service Unavailable", "unready")
                }
                "/livez" if state.join("dead").exists() => ("500 Internal Server Error", "dead"),
                "/readyz" | "/livez" => ("200 OK", "ok"),
                _ => ("404 Not Found", "no such path"),
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
}

async fn create_objects(client: &Client) {
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cfg", "namespace": NS},
        "data": {"cluster": "shop", "my.cnf": MY_CNF},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds", "namespace": NS},
        "data": {"password": "czNjcjN0"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "data-db", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap();
}

/// Seeds the claim with the testbed's initialized MariaDB 10.11 data directory.
async fn seed(kubelet: &Kubelet) {
    let dir = kubelet.claim_dir(NS, "data-db").unwrap();
    let template = tokio::task::spawn_blocking(|| {
        let bins = switchyard_testbed::binaries(ServerKind::Mariadb1011).expect("MariaDB 10.11");
        switchyard_testbed::template::template(&bins).expect("a template data directory")
    })
    .await
    .unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", template.display()))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
}

async fn ready_pod(pods: &Api<Pod>, name: &str) -> Pod {
    until(&format!("pod {name} ready"), async || {
        pods.get_opt(name).await.unwrap().filter(pod_ready)
    })
    .await
}

async fn connect(ip: Ipv4Addr) -> MySqlConnection {
    let opts = MySqlConnectOptions::new()
        .host(&ip.to_string())
        .port(3306)
        .username("root");
    until(&format!("a connection to {ip}"), async || {
        tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect_with(&opts))
            .await
            .ok()?
            .ok()
    })
    .await
}

fn restarts(pod: &Pod, container: &str) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == container))
        .map_or(0, |c| c.restart_count)
}

/// How container `container` stopped with its pod after event `from`: exit code, SIGKILL
/// needed, when.
fn stopped(events: &[Event], from: usize, container: &str) -> Option<(i32, bool, Instant)> {
    events[from..].iter().find_map(|e| match e.kind {
        EventKind::Stopped { code, killed } if e.container.as_deref() == Some(container) => {
            Some((code, killed, e.at))
        }
        _ => None,
    })
}

fn read_in(pid: u32, path: &str) -> String {
    std::fs::read_to_string(
        Path::new(&format!("/proc/{pid}/root")).join(path.trim_start_matches('/')),
    )
    .unwrap_or_default()
}

fn position(events: &[Event], container: &str, f: impl Fn(&EventKind) -> bool) -> usize {
    events
        .iter()
        .position(|e| e.container.as_deref() == Some(container) && f(&e.kind))
        .unwrap_or_else(|| panic!("no such event of {container}: {events:#?}"))
}

fn gone(pids: &[u32]) -> bool {
    pids.iter()
        .all(|p| !Path::new(&format!("/proc/{p}")).exists() || zombie(*p))
}

fn zombie(p: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{p}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_as_local_processes_with_their_volumes_probes_restarts_and_deletion() {
    let client = fake_api().await;
    let kubelet = Kubelet::start(client.clone(), config())
        .await
        .expect("the kubelet");
    let index = kubelet.subnet_index();
    seed(&kubelet).await;
    create_objects(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod_spec("db-0", 20))
        .await
        .unwrap();

    // Init containers ran in order, each to completion, before the containers.
    let pod = ready_pod(&pods, "db-0").await;
    let status = pod.status.clone().unwrap();
    let ip: Ipv4Addr = status.pod_ip.clone().unwrap().parse().unwrap();
    assert_eq!(Some(ip), kubelet.pod_ip(NS, "db-0"));
    assert_eq!(ip.octets()[..3], [10, 213, index]);
    for init in status.init_container_statuses.as_ref().unwrap() {
        let t = init.state.as_ref().unwrap().terminated.as_ref();
        assert_eq!(t.map(|t| t.exit_code), Some(0), "{init:?}");
    }
    let events = kubelet.events();
    let first = position(&events, "first", |k| {
        matches!(k, EventKind::ContainerExited { code: 0 })
    });
    let second = position(&events, "second", |k| {
        matches!(k, EventKind::ContainerStarted { .. })
    });
    let main = position(&events, "mariadb", |k| {
        matches!(k, EventKind::ContainerStarted { .. })
    });
    assert!(
        first < second && second < main,
        "order: {first} {second} {main}"
    );

    // The server runs in the pod's namespaces with the ConfigMap's my.cnf, its hostname, and
    // the address `fieldRef` gave `$(POD_IP)`.
    let mut conn = connect(ip).await;
    let (host, report, datadir, max): (String, String, String, u32) =
        sqlx::query_as("SELECT @@hostname, @@report_host, @@datadir, @@max_connections")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(host, "db-0");
    assert_eq!(report, ip.to_string());
    assert_eq!(datadir, "/var/lib/mysql/");
    assert_eq!(max, 77, "max_connections from the mounted my.cnf");
    sqlx::raw_sql("CREATE DATABASE t; CREATE TABLE t.x (v INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t.x VALUES (42)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    // Its root, volumes and environment, seen through /proc.
    let pid = kubelet.container_pid(NS, "db-0", "mariadb").unwrap();
    assert_eq!(read_in(pid, "/etc/switchyard/config/my.cnf"), MY_CNF);
    assert_eq!(read_in(pid, "/etc/switchyard/secrets/password"), "s3cr3t");
    // `/etc/hosts` links into the kubelet's files (an absolute link: read it from there).
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root/etc/hosts")).unwrap(),
        Path::new("/.kubelet/hosts")
    );
    assert!(
        read_in(pid, "/.kubelet/hosts")
            .contains(&format!("{ip}\tdb-0.db-hosts.kt.svc.cluster.local"))
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for want in [
        "CLUSTER=shop".to_owned(),
        format!("POD_IP={ip}"),
        "POD_NAME=db-0".to_owned(),
    ] {
        assert!(environ.split('\0').any(|v| v == want), "{want}: {environ}");
    }
    let mnt = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_ne!(
        mnt(&pid.to_string()),
        mnt("self"),
        "a mount namespace of its own"
    );

    // The HTTP readiness probe: a 503 takes the pod out of Ready, a 200 brings it back.
    let agent = kubelet.container_pid(NS, "db-0", "agent").unwrap();
    let marker = |name: &str| PathBuf::from(format!("/proc/{agent}/root/switchyard/{name}"));
    std::fs::write(marker("unready"), "").unwrap();
    until("db-0 not ready on a 503", async || {
        pods.get("db-0").await.ok().filter(|p| !pod_ready(p))
    })
    .await;
    assert!(kubelet.events().iter().any(|e| matches!(
        &e.kind,
        EventKind::ProbeFailed { probe: "readiness", detail } if detail.starts_with("HTTP 503")
    )));
    std::fs::remove_file(marker("unready")).unwrap();
    ready_pod(&pods, "db-0").await;

    // The HTTP liveness probe: a 500 restarts the container (and only it).
    std::fs::write(marker("dead"), "").unwrap();
    until(
        "the agent restarted after its liveness probe failed",
        async || {
            pods.get("db-0")
                .await
                .ok()
                .filter(|p| restarts(p, "agent") == 1 && pod_ready(p))
        },
    )
    .await;
    assert!(kubelet.events().iter().any(|e| e.container.as_deref() == Some("agent")
        && matches!(&e.kind, EventKind::Restarting(why) if why.contains("liveness probe failed"))));
    assert_eq!(restarts(&pods.get("db-0").await.unwrap(), "mariadb"), 0);

    // A ConfigMap change reaches the mounted file.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let changed = MY_CNF.replace("max_connections=77", "max_connections=88");
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"my.cnf": changed}})),
    )
    .await
    .unwrap();
    until("the ConfigMap's new content in the container", async || {
        (read_in(pid, "/etc/switchyard/config/my.cnf") == changed).then_some(())
    })
    .await;

    // A crash: the container restarts on the same claim, reading the new my.cnf.
    kubelet
        .signal_container(NS, "db-0", "mariadb", Signal::SIGKILL)
        .unwrap();
    let pod = until("a restart after the crash", async || {
        pods.get("db-0")
            .await
            .ok()
            .filter(|p| restarts(p, "mariadb") == 1 && pod_ready(p))
    })
    .await;
    let last = pod
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .into_iter()
        .find(|c| c.name == "mariadb")
        .unwrap()
        .last_state;
    let killed = last
        .and_then(|l| l.terminated)
        .map(|t| (t.exit_code, t.reason));
    assert_eq!(
        killed,
        Some((137, Some("Error".to_owned()))),
        "lastState: killed by SIGKILL"
    );
    let mut conn = connect(ip).await;
    let (v, max): (i32, u32) = sqlx::query_as("SELECT v, @@max_connections FROM t.x")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, 42, "the claim outlives the container");
    assert_eq!(max, 88, "the restarted server reads the changed my.cnf");
    drop(conn);

    // A hung server fails its exec liveness probe and is restarted.
    kubelet
        .signal_container(NS, "db-0", "mariadb", Signal::SIGSTOP)
        .unwrap();
    until("a restart after the liveness probe failed", async || {
        pods.get("db-0")
            .await
            .ok()
            .filter(|p| restarts(p, "mariadb") == 2 && pod_ready(p))
    })
    .await;
    assert!(kubelet.events().iter().any(|e| e.container.as_deref() == Some("mariadb")
        && matches!(&e.kind, EventKind::Restarting(why) if why.contains("liveness probe failed"))));

    // Deletion: SIGTERM, a clean shutdown within the grace period, then the namespace goes.
    let pids = kubelet.pids();
    assert!(!pids.is_empty());
    let from = kubelet.events().len();
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    until("the pod's processes gone", async || {
        gone(&pids).then_some(())
    })
    .await;
    let events = kubelet.events();
    for c in ["mariadb", "agent"] {
        let (code, killed, _) = stopped(&events, from, c).unwrap();
        assert_eq!((code, killed), (0, false), "{c}: a clean exit on SIGTERM");
    }
    assert!(
        kubelet
            .logs(NS, "db-0", "mariadb")
            .contains("Shutdown complete")
    );
    until("the pod's network namespace removed", async || {
        leftovers(index)
            .iter()
            .all(|l| !l.starts_with("netns"))
            .then_some(())
    })
    .await;

    // The same name again (a short grace period): the same address, the claim's data; a
    // server that ignores SIGTERM (stopped) is killed when the grace period ends.
    pods.create(&PostParams::default(), &pod_spec("db-0", 2))
        .await
        .unwrap();
    let pod = ready_pod(&pods, "db-0").await;
    let again: Ipv4Addr = pod.status.unwrap().pod_ip.unwrap().parse().unwrap();
    assert_eq!(again, ip, "a pod name keeps its address");
    let mut conn = connect(ip).await;
    let (v,): (i32,) = sqlx::query_as("SELECT v FROM t.x")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, 42);
    drop(conn);
    kubelet
        .signal_container(NS, "db-0", "mariadb", Signal::SIGSTOP)
        .unwrap();
    let pids = kubelet.pids();
    let from = kubelet.events().len();
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    until("the stopped server killed", async || {
        gone(&pids).then_some(())
    })
    .await;
    let events = kubelet.events();
    let asked = events[from..]
        .iter()
        .find_map(|e| match e.kind {
            EventKind::Terminating { grace } => Some((grace, e.at)),
            _ => None,
        })
        .unwrap();
    assert_eq!(asked.0, Duration::from_secs(2));
    let (_, killed, at) = stopped(&events, from, "mariadb").unwrap();
    assert!(killed, "SIGKILL for a server that ignores SIGTERM");
    assert!(
        at.duration_since(asked.1) >= asked.0,
        "SIGKILL only after the grace period"
    );
    assert_eq!(
        stopped(&events, from, "agent").map(|s| (s.0, s.1)),
        Some((0, false))
    );

    // Node loss: killed at once (no SIGTERM: the server does not shut down), deleted from the
    // API. Volume loss: the claim's folder empty.
    pods.create(&PostParams::default(), &pod_spec("db-0", 30))
        .await
        .unwrap();
    ready_pod(&pods, "db-0").await;

    // A partition: the pod's address silent from the host (connections hang or find no route,
    // the pod refuses nothing) while its processes keep running; its probes are not run through the cut (the
    // agent's HTTP liveness probe, from the host, would restart it after two failures).
    // Healed, it answers again.
    let running = kubelet.pids();
    let from = kubelet.events().len();
    kubelet.partition(NS, "db-0").await.unwrap();
    for attempt in 0..5 {
        let reached = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((ip, 3306)),
        )
        .await;
        // Silent: no answer (a timeout), or no route once the host's neighbour entry for
        // the address failed; never opened, never refused by the pod.
        let silent = match &reached {
            Err(_) => true,
            Ok(Err(e)) => e.kind() == std::io::ErrorKind::HostUnreachable,
            Ok(Ok(_)) => false,
        };
        assert!(silent, "attempt {attempt}: through the cut: {reached:?}");
    }
    kubelet.heal(NS, "db-0").await.unwrap();
    drop(connect(ip).await);
    assert_eq!(
        kubelet.pids(),
        running,
        "the same processes through the cut"
    );
    let events = kubelet.events();
    let restarted: Vec<&EventKind> = events[from..]
        .iter()
        .map(|e| &e.kind)
        .filter(|k| {
            matches!(
                k,
                EventKind::Restarting(_)
                    | EventKind::ContainerExited { .. }
                    | EventKind::Stopped { .. }
            )
        })
        .collect();
    assert!(
        restarted.is_empty(),
        "nothing restarted through the cut: {restarted:?}"
    );
    assert!(
        events[from..]
            .iter()
            .any(|e| e.kind == EventKind::Partitioned),
        "the cut is reported"
    );
    assert!(
        pod_ready(&pods.get("db-0").await.unwrap()),
        "still Ready: no readiness probe ran through the cut"
    );

    let pids = kubelet.pids();
    let from = kubelet.events().len();
    kubelet.node_loss(NS, "db-0").await.unwrap();
    assert!(gone(&pids));
    let events = kubelet.events();
    for c in ["mariadb", "agent"] {
        let (_, killed, _) = stopped(&events, from, c).unwrap();
        assert!(killed, "{c}: no grace period on node loss");
    }
    assert!(
        pods.get_opt("db-0").await.unwrap().is_none(),
        "the pod is deleted"
    );
    let claim = kubelet.claim_dir(NS, "data-db").unwrap();
    assert!(claim.join("ibdata1").exists());
    kubelet.volume_loss(NS, "data-db").unwrap();
    assert_eq!(std::fs::read_dir(&claim).unwrap().count(), 0);

    // The claim is bound by the kubelet.
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
        .get("data-db")
        .await
        .unwrap();
    assert_eq!(pvc.status.unwrap().phase.as_deref(), Some("Bound"));

    // Addresses as a resolver sees them: a name that ran keeps its own; a name reserved
    // before its pod exists is where that pod comes up.
    let addresses = kubelet.addresses();
    assert_eq!(addresses.of(NS, "db-0"), Some(ip));
    let reserved = addresses.of(NS, "db-1").unwrap();
    assert_ne!(reserved, ip);

    // A last pod running when the kubelet drops: nothing is left.
    pods.create(&PostParams::default(), &pod_spec("db-1", 30))
        .await
        .unwrap();
    until("db-1 running", async || {
        kubelet
            .container_pid(NS, "db-1", "first")
            .or(kubelet.container_pid(NS, "db-1", "mariadb"))
    })
    .await;
    assert_eq!(kubelet.pod_ip(NS, "db-1"), Some(reserved));
    let pids = kubelet.pids();
    let work = kubelet.work_dir();
    drop(kubelet);
    assert!(gone(&pids), "every process is killed on drop");
    assert_eq!(leftovers(index), Vec::<String>::new());
    assert!(!work.exists(), "the work folder is removed");
}

#[test]
fn a_test_that_panics_leaves_no_process_namespace_or_link_behind() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new((0u8, Vec::<u32>::new())));
    let inside = seen.clone();
    // A test body on a thread (and runtime) of its own, panicking while its pods run.
    let body = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = fake_api().await;
            create_objects(&client).await;
            let kubelet = Kubelet::start(client.clone(), config())
                .await
                .expect("the kubelet");
            seed(&kubelet).await;
            let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
            pods.create(&PostParams::default(), &pod_spec("db-0", 30))
                .await
                .unwrap();
            ready_pod(&pods, "db-0").await;
            *inside.lock().unwrap() = (kubelet.subnet_index(), kubelet.pids());
            panic!("a test failing while its pods run");
        });
    });
    assert!(body.join().is_err(), "the body panicked");
    let (index, pids) = seen.lock().unwrap().clone();
    assert!(!pids.is_empty());
    assert!(gone(&pids), "every process is killed during the unwinding");
    assert_eq!(leftovers(index), Vec::<String>::new());
}
