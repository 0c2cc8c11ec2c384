//! The controller wiring of [`controller::run`] against a mocked API server (tower-test): it
//! takes the leader Lease, watches, reconciles the `MySQLCluster` the API serves (the managed
//! objects applied under the one field manager, the status written), serves `/metrics` and
//! `/readyz`, and on shutdown stops and releases the Lease. It also watches `SchemaChange`s, so
//! that a new one reconciles its cluster at once, and runs the `MySQLFleet` controller beside
//! the cluster's (its watch of fleets).
//!
//! The mock answers like a small API server: objects it was given or sent are echoed back,
//! lists of anything but the cluster are empty, and watches are held open without events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use switchyard_kube::controller::{OperatorConfig, run};
use switchyard_kube::crd::MySQLCluster;
use switchyard_kube::leader::{
    DEFAULT_LEASE, Leadership, LeaseConfig, NotConfirmed, Tenure, renew,
};
use switchyard_plan::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_test::mock::{self, SendResponse};

const NS: &str = "db";
const NAME: &str = "shop";
const LEASE_NS: &str = "ops";
const IDENTITY: &str = "switchyard-test-0";

/// One request the mock saw: method, path and query, body.
type Seen = (Method, String, Value);

/// The mocked API server's state.
#[derive(Default)]
struct FakeApi {
    cluster: Value,
    lease: Option<Value>,
    seen: Vec<Seen>,
    /// Watches held open (dropping one would end the watch).
    watches: Vec<SendResponse<Response<Body>>>,
    resource_version: u64,
}

fn not_found(what: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": format!("{what} not found"),
        }),
    )
}

fn list(items: Vec<Value>) -> (StatusCode, Value) {
    (
        StatusCode::OK,
        json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "1" },
                "items": items }),
    )
}

impl FakeApi {
    /// Stamps a resource version (and a uid on creation) on an object being stored.
    fn stamp(&mut self, mut obj: Value) -> Value {
        self.resource_version += 1;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                self.resource_version.to_string().into(),
            );
            meta.entry("uid")
                .or_insert_with(|| format!("uid-{}", self.resource_version).into());
        }
        obj
    }

    /// The answer to one request; `None` holds it open (a watch).
    fn answer(&mut self, method: &Method, uri: &str, body: Value) -> Option<(StatusCode, Value)> {
        self.seen
            .push((method.clone(), uri.to_owned(), body.clone()));
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        if query.split('&').any(|q| q == "watch=true") {
            return None;
        }
        // The segments after `namespaces/NS/`: [plural], [plural, name] or
        // [plural, name, subresource].
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = segments
            .iter()
            .position(|s| *s == "namespaces")
            .map_or(&[][..], |i| &segments[(i + 2).min(segments.len())..]);
        Some(match (method.clone(), rest) {
            (Method::GET, ["leases", _]) => match &self.lease {
                Some(l) => (StatusCode::OK, l.clone()),
                None => not_found("lease"),
            },
            (Method::POST, ["leases"]) | (Method::PUT, ["leases", _]) => {
                let lease = self.stamp(body);
                self.lease = Some(lease.clone());
                (StatusCode::OK, lease)
            }
            (Method::GET, ["mysqlclusters"]) => list(vec![self.cluster.clone()]),
            (Method::GET, ["mysqlclusters", _]) => (StatusCode::OK, self.cluster.clone()),
            (Method::PUT, ["mysqlclusters", _, "status"]) => {
                let mut cluster = self.cluster.clone();
                cluster["status"] = body["status"].clone();
                self.cluster = self.stamp(cluster);
                (StatusCode::OK, self.cluster.clone())
            }
            // No SchemaChange: listed (by the watch and the cluster's reconcile) as empty.
            (Method::GET, ["schemachanges"]) => list(vec![]),
            (Method::GET, [_]) => list(vec![]),
            (Method::GET, [kind, ..]) => not_found(kind),
            (Method::POST, [_]) => (StatusCode::CREATED, self.stamp(body)),
            (Method::PATCH, [_, _]) => (StatusCode::OK, self.stamp(body)),
            (m, _) => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "MethodNotAllowed", "code": 405,
                        "message": format!("the mock does not serve {m} {path}") }),
            ),
        })
    }

    fn status_writes(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|(m, uri, _)| *m == Method::PUT && uri.contains("/mysqlclusters/shop/status"))
            .map(|(_, _, body)| body["status"].clone())
            .collect()
    }
}

fn locked(api: &Mutex<FakeApi>) -> std::sync::MutexGuard<'_, FakeApi> {
    api.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the mock's requests until the test ends.
async fn serve(mut handle: mock::Handle<Request<Body>, Response<Body>>, api: Arc<Mutex<FakeApi>>) {
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().clone();
        let uri = request
            .uri()
            .path_and_query()
            .map_or_else(String::new, ToString::to_string);
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut api = locked(&api);
        match api.answer(&method, &uri, body) {
            None => api.watches.push(send),
            Some((status, value)) => {
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
                    .expect("a response");
                send.send_response(response);
            }
        }
    }
}

/// A free port on loopback for the metrics endpoint.
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("an address")
}

/// `GET path` on the operator's HTTP endpoint: the status line and the body.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Waits until `f` gives a value, at most `timeout`.
async fn eventually<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator running over the mock, with a lease of `lease`, until `stop` is sent.
struct Running {
    api: Arc<Mutex<FakeApi>>,
    operator: tokio::task::JoinHandle<Result<(), switchyard_kube::controller::RunError>>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    metrics_addr: SocketAddr,
}

fn start(lease: Duration) -> Running {
    let mut cluster = MySQLCluster::new(
        NAME,
        serde_json::from_value(json!({"flavor": "mariadb", "version": "10.11.14", "replicas": 3}))
            .expect("a spec"),
    );
    cluster.metadata.namespace = Some(NS.into());
    cluster.metadata.generation = Some(1);
    cluster.metadata.resource_version = Some("1".into());
    cluster.metadata.uid = Some("cluster-uid".into());
    let api = Arc::new(Mutex::new(FakeApi {
        cluster: serde_json::to_value(&cluster).expect("the cluster as JSON"),
        ..FakeApi::default()
    }));
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, api.clone()));
    let client = Client::new(service, "default");

    let metrics_addr = free_port();
    let config = OperatorConfig {
        namespace: Some(NS.into()),
        metrics_addr,
        lease_namespace: LEASE_NS.into(),
        lease: LeaseConfig {
            name: "switchyard".into(),
            identity: IDENTITY.into(),
            duration: lease,
        },
        agent_image: Some("switchyard/operator:test".into()),
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run(client, config, async move {
        let _ = stop_rx.await;
    }));
    Running {
        api,
        operator,
        stop,
        server,
        metrics_addr,
    }
}

#[tokio::test]
async fn the_controller_leads_reconciles_the_served_cluster_writes_status_and_releases_on_shutdown()
{
    let Running {
        api,
        operator,
        stop: stop_tx,
        server,
        metrics_addr,
    } = start(DEFAULT_LEASE);

    // It leads, reconciles the cluster it watches and writes its status.
    let status = eventually(Duration::from_secs(20), async || {
        locked(&api)
            .status_writes()
            .into_iter()
            .find(|s| s["phase"] == "Bootstrapping" && s["revisions"]["update"] == 1)
    })
    .await
    .unwrap_or_else(|| {
        let seen: Vec<String> = locked(&api)
            .seen
            .iter()
            .map(|(m, uri, _)| format!("{m} {uri}"))
            .collect();
        panic!("no status written; requests: {seen:#?}")
    });
    let lease = locked(&api).lease.clone().expect("a lease");
    assert_eq!(lease["spec"]["holderIdentity"], IDENTITY);
    assert_eq!(status["observedGeneration"], 1);
    let conditions: BTreeMap<String, String> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        conditions.get("InvalidSpec").map(String::as_str),
        Some("False")
    );
    assert_eq!(
        conditions.get("Progressing").map(String::as_str),
        Some("True")
    );

    // The managed objects were applied server-side under the one field manager, and the
    // credentials Secret created since the API had none.
    let seen = locked(&api).seen.clone();
    let applied = |plural: &str| {
        seen.iter().any(|(m, uri, _)| {
            *m == Method::PATCH
                && uri.contains(&format!("/namespaces/{NS}/{plural}/"))
                && uri.contains("fieldManager=switchyard")
                && uri.contains("force=true")
        })
    };
    for plural in ["services", "configmaps", "poddisruptionbudgets"] {
        assert!(applied(plural), "no server-side apply of {plural}");
    }
    // Instance 0's claim and pod were created by the operator (no StatefulSet).
    for plural in ["persistentvolumeclaims", "pods"] {
        let created = seen.iter().find(|(m, uri, _)| {
            *m == Method::POST && uri.starts_with(&format!("/api/v1/namespaces/{NS}/{plural}"))
        });
        let created = created.unwrap_or_else(|| panic!("no {plural} created"));
        assert!(
            created.2["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("shop-0")),
            "{plural}: {}",
            created.2
        );
    }
    assert!(
        !seen.iter().any(|(_, uri, _)| uri.contains("statefulsets")),
        "no StatefulSet"
    );
    let created_secret = seen.iter().find(|(m, uri, _)| {
        *m == Method::POST && uri.starts_with(&format!("/api/v1/namespaces/{NS}/secrets"))
    });
    let created_secret = created_secret.expect("the credentials Secret created");
    assert_eq!(created_secret.2["metadata"]["name"], "shop-credentials");
    let watched = |plural: &str| {
        seen.iter()
            .any(|(_, uri, _)| uri.contains(&format!("/{plural}?")) && uri.contains("watch=true"))
    };
    for plural in [
        "mysqlclusters",
        "pods",
        "persistentvolumeclaims",
        "schemachanges",
        "mysqlfleets",
    ] {
        assert!(watched(plural), "no watch of {plural}");
    }

    // The HTTP endpoint: ready while running, and the reconcile counted.
    let ready = eventually(Duration::from_secs(5), async || {
        http_get(metrics_addr, "/readyz").await
    })
    .await
    .expect("/readyz answers");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(metrics_addr, "/metrics").await.expect("/metrics");
    let reconciles = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_reconciles_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no reconcile counter in {metrics}"));
    assert!(reconciles >= 1.0, "{metrics}");

    // Graceful shutdown: the controller stops and gives the Lease up.
    stop_tx.send(()).expect("the operator listens for shutdown");
    let result = tokio::time::timeout(Duration::from_secs(20), operator)
        .await
        .expect("the operator stops in time")
        .expect("the operator task");
    assert!(result.is_ok(), "{result:?}");
    let lease = locked(&api).lease.clone().expect("a lease");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the lease is released: {lease}"
    );
    server.abort();
}

/// The lease rule's sizing, through the controller's own wiring: under a 15 s lease (certain
/// for 9 s between renewals) a cluster with the default 30 s switchover deadline is refused
/// with a condition that says what to change, and nothing is applied.
#[tokio::test]
async fn a_switchover_deadline_the_lease_cannot_cover_is_refused_with_a_condition() {
    let running = start(Duration::from_secs(15));
    let api = running.api.clone();
    let status = eventually(Duration::from_secs(20), async || {
        locked(&api)
            .status_writes()
            .into_iter()
            .find(|s| s["phase"] == "Invalid")
    })
    .await
    .expect("an Invalid status");
    let invalid = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "InvalidSpec")
        .cloned()
        .expect("an InvalidSpec condition");
    assert_eq!(invalid["status"], "True");
    assert_eq!(invalid["reason"], "DeadlineOutlastsLease");
    let message = invalid["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("switchoverDeadline 30s") && message.contains("--lease-seconds 39"),
        "{message}"
    );
    let applied = locked(&api)
        .seen
        .iter()
        .any(|(m, uri, _)| *m != Method::GET && uri.contains("/pods"));
    assert!(!applied, "nothing is applied for an invalid combination");
    running
        .stop
        .send(())
        .expect("the operator listens for shutdown");
    let result = tokio::time::timeout(Duration::from_secs(20), running.operator)
        .await
        .expect("the operator stops in time")
        .expect("the operator task");
    assert!(result.is_ok(), "{result:?}");
    running.server.abort();
}

/// The renewals feed the engine's confirmations: a renewal counts from the moment it was
/// sent, less the clock margin; a lease another replica holds confirms nothing.
#[tokio::test]
async fn a_renewal_tells_the_tenure_how_far_it_reaches_and_another_holder_ends_it() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, api.clone()));
    let leases: Api<Lease> = Api::namespaced(Client::new(service, "default"), LEASE_NS);
    let cfg = LeaseConfig {
        name: "switchyard".into(),
        identity: IDENTITY.into(),
        duration: DEFAULT_LEASE,
    };
    let tenure = Tenure::new(DEFAULT_LEASE);
    let sent = Timestamp(1_000_000);
    let outcome = renew(&leases, &cfg, &tenure, || sent).await.expect("renew");
    assert_eq!(outcome, Leadership::Leading);
    assert_eq!(
        tenure.held_until(),
        Some(sent.after(Duration::from_secs(44)))
    );
    assert_eq!(tenure.confirm(sent.after(Duration::from_secs(44))), Ok(()));
    // Another replica holds an unexpired lease: nothing is confirmed any more.
    {
        let mut api = locked(&api);
        let lease = api.lease.as_mut().expect("the lease");
        lease["spec"]["holderIdentity"] = "switchyard-test-1".into();
        lease["spec"]["renewTime"] =
            serde_json::to_value(MicroTime(k8s_openapi::jiff::Timestamp::now())).expect("a time");
    }
    let outcome = renew(&leases, &cfg, &tenure, || sent).await.expect("renew");
    assert_eq!(outcome, Leadership::Following);
    assert_eq!(tenure.confirm(sent), Err(NotConfirmed::NotHeld));
    server.abort();
}
