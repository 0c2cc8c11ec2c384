//! The `switchyard operator` binary, unchanged, against the fake API served over HTTP
//! (switchyard-fake-api) through a kubeconfig: it takes the leader Lease, opens its watches,
//! and a `MySQLCluster` created afterwards (so that only a watch event can tell it) gets its
//! children: the credentials Secret, the Services, instance 0's claim, ConfigMap and Pod, and a
//! status. On SIGTERM it releases the Lease and exits 0. This keeps the HTTP layer the memory
//! benchmark (`cargo xtask bench operator`) runs the operator through from rotting.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::Api;
use kube::api::PostParams;
use switchyard_fake_api::FakeApi;
use switchyard_kube::crd::{MySQLCluster, MySQLFleet, SchemaChange};
use switchyard_kube::names::{FIELD_MANAGER, LABEL_MANAGED_BY};

const NS: &str = "db";
const NAME: &str = "shop";
/// The watches the operator's controller opens (the cluster, four kinds it owns or follows
/// by label, pods, schema changes, Nodes and the managed pods' store for the Node watch's
/// mapper).
const WATCHES: usize = 9;

/// The operator's process, killed if the test ends without stopping it.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn until<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(why) => assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(30).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_creates_a_clusters_children_through_the_http_api() {
    let store = kube_fake_client::ClientBuilder::new()
        .with_resource::<MySQLCluster>()
        .with_status_subresource::<MySQLCluster>()
        .with_resource::<SchemaChange>()
        .with_status_subresource::<SchemaChange>()
        .with_resource::<MySQLFleet>()
        .with_status_subresource::<MySQLFleet>()
        .with_status_subresource::<Pod>()
        .with_status_subresource::<PersistentVolumeClaim>()
        .build()
        .await
        .expect("a fake API");
    let api = FakeApi::new(store);
    let served = api
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the fake API listening");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, served.kubeconfig(NS)).unwrap();
    let log = dir.path().join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "operator",
            "--metrics-addr",
            "127.0.0.1:0",
            "--lease-namespace",
            NS,
            "--agent-image",
            "switchyard/operator:test",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("the operator");
    let mut operator = Operator(child);
    let client = api.client();

    // Leading, with every watch open.
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    until(
        Duration::from_secs(60),
        "the operator leading",
        async || {
            let lease = leases
                .get_opt("switchyard-operator")
                .await
                .map_err(|e| e.to_string())?;
            let holder = lease
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .ok_or_else(|| format!("no holder; the operator said:\n{}", tail(&log)))?;
            match api.watches() {
                n if n >= WATCHES => Ok(holder),
                n => Err(format!("{holder} leads, {n} watches open: {}", tail(&log))),
            }
        },
    )
    .await;

    let spec = serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": "10.11.14",
        "replicas": 3,
        "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("a spec");
    let mut cluster = MySQLCluster::new(NAME, spec);
    cluster.metadata.namespace = Some(NS.into());
    let clusters: Api<MySQLCluster> = Api::namespaced(client.clone(), NS);
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create the cluster");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod = until(
        Duration::from_secs(60),
        "the cluster's children",
        async || {
            let missing = |what: &str| format!("no {what} yet; the operator said:\n{}", tail(&log));
            let e = |e: kube::Error| e.to_string();
            secrets
                .get_opt(&format!("{NAME}-credentials"))
                .await
                .map_err(e)?
                .ok_or_else(|| missing("credentials Secret"))?;
            for service in [format!("{NAME}-hosts"), format!("{NAME}-primary")] {
                services
                    .get_opt(&service)
                    .await
                    .map_err(e)?
                    .ok_or_else(|| missing(&service))?;
            }
            claims
                .get_opt(&format!("data-{NAME}-0"))
                .await
                .map_err(e)?
                .ok_or_else(|| missing("claim of instance 0"))?;
            let managed = maps
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}")),
                )
                .await
                .map_err(e)?;
            if managed.items.is_empty() {
                return Err(missing("ConfigMap"));
            }
            let status = clusters
                .get(NAME)
                .await
                .map_err(e)?
                .status
                .ok_or_else(|| missing("status"))?;
            if status.observed_generation != Some(1) {
                return Err(missing("status of generation 1"));
            }
            pods.get_opt(&format!("{NAME}-0"))
                .await
                .map_err(e)?
                .ok_or_else(|| missing("pod of instance 0"))
        },
    )
    .await;
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .map(String::as_str),
        Some(FIELD_MANAGER)
    );

    // SIGTERM: the lease is released and the process exits 0.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(operator.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let code = until(Duration::from_secs(30), "the operator's exit", async || {
        operator
            .0
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("running; the operator said:\n{}", tail(&log)))
    })
    .await;
    assert!(
        code.success(),
        "exit {code:?}; the operator said:\n{}",
        tail(&log)
    );
    let lease = leases.get("switchyard-operator").await.unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "the lease is released on shutdown"
    );
}
