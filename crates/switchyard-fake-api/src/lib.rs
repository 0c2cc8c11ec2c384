//! Test support: the fake Kubernetes API (kube-fake-client's in-memory store) as an API server
//! on loopback, so that a real `switchyard operator` process runs against it, unchanged,
//! through a kubeconfig ([`Served::kubeconfig`]).
//!
//! [`FakeApi`] puts one front on the store for every client: the HTTP server ([`FakeApi::serve`])
//! and in-process clients ([`FakeApi::client`], for the test's own requests and the simulated
//! kubelet) go through the same handler, so every write is seen. What it adds to the store:
//! - **watches** (`?watch=true`): newline-delimited JSON events (`ADDED`, `MODIFIED`,
//!   `DELETED`, and `ERROR` 410 for a version the log no longer has), from the requested
//!   `resourceVersion`, filtered by namespace, label selector and `metadata.name`/
//!   `metadata.namespace` field selectors, ended after `timeoutSeconds` as the API server does
//!   (module `changes` says how changes are found and versioned);
//! - **list versions**: a list's `metadata.resourceVersion` is the version it reflects, so a
//!   watch from it misses nothing (the store answers `"1"`);
//! - `GET /version`;
//! - the **eviction** subresource (`POST .../pods/{name}/eviction`) with PodDisruptionBudgets
//!   enforced: the pod is deleted, or the answer is 429 as from the API server (module
//!   `eviction` says how budgets are computed, and how that is simpler than the real
//!   disruption controller).
//!
//! Everything else (get, list, create, replace, merge and JSON patches, server-side apply,
//! status subresources, deletion with owner-reference cascades, optimistic concurrency on
//! `resourceVersion`) is the store's own behaviour. Requests are handled one at a time (a
//! watch only while it starts): a fake for tests and benchmarks, not for load.

mod changes;
mod eviction;
mod path;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast, mpsc};

use crate::changes::{Change, ChangeType, Filter, State, TICK_NAME};
use crate::path::ApiPath;

/// The longest a watch lasts when the client names no `timeoutSeconds`.
const WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// The fake API could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not listen.
    #[error("the fake API could not listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed a request the fake makes itself.
    #[error("the fake API's store failed {what}: {message}")]
    Store {
        /// The request.
        what: String,
        /// What the store said.
        message: String,
    },
}

impl Error {
    /// A bounded category.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Listen { .. } => "listen",
            Error::Store { .. } => "store",
        }
    }
}

/// A response body: a whole JSON document, or a watch's stream of events.
pub struct Body(BodyKind);

enum BodyKind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    fn full(bytes: impl Into<Bytes>) -> Body {
        Body(BodyKind::Full(Some(bytes.into())))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.0 {
            BodyKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.0, BodyKind::Full(None))
    }
}

/// The fake API: the store, the change log and the watchers.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Inner>,
}

struct Inner {
    store: Client,
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl FakeApi {
    /// A front on `store`, a client built by `kube_fake_client::ClientBuilder` (with the
    /// custom resources and status subresources the test needs). Write to the store only
    /// through this front from now on: a write that bypasses it is seen by watchers only at
    /// the next write that does not.
    pub fn new(store: Client) -> FakeApi {
        let (changes, _) = broadcast::channel(4096);
        FakeApi {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(State::default()),
                changes,
            }),
        }
    }

    /// A client whose requests go through this front in-process (watches included).
    pub fn client(&self) -> Client {
        Client::new(Service(self.clone()), "default")
    }

    /// How many watches are open (a test waits for a controller's watches before it makes
    /// the change only a watch would tell it).
    pub fn watches(&self) -> usize {
        self.inner.changes.receiver_count()
    }

    /// Serves the API over HTTP/1.1 on `addr` (`127.0.0.1:0` for a free port) until the
    /// returned handle is dropped.
    ///
    /// # Errors
    /// [`Error::Listen`].
    pub async fn serve(&self, addr: SocketAddr) -> Result<Served, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;
        let api = self.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let api = api.clone();
                connections.spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let api = api.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let reply = match body.collect().await {
                                    Ok(body) => api.handle(parts, body.to_bytes()).await,
                                    Err(e) => status(StatusCode::BAD_REQUEST, &e.to_string()),
                                };
                                Ok::<_, Infallible>(reply)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                // Reap finished connections.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Served { addr, task })
    }

    /// Answers one request.
    pub async fn handle(&self, parts: http::request::Parts, body: Bytes) -> Response<Body> {
        let Some(path) = ApiPath::parse(parts.uri.path()) else {
            if parts.uri.path() == "/version" {
                return json_reply(
                    StatusCode::OK,
                    &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-switchyard-fake",
                            "platform": "linux/amd64"}),
                );
            }
            return status(
                StatusCode::NOT_FOUND,
                "the fake API serves resource paths only",
            );
        };
        let params = path::query(parts.uri.query());
        if parts.method == Method::GET && path.name.is_none() && path::is_watch(&params) {
            return self.watch(&path, &params).await;
        }
        let mut state = self.inner.state.lock().await;
        if parts.method == Method::POST
            && path.resource == "pods"
            && path.subresource.as_deref() == Some("eviction")
        {
            return self.evict(&mut state, &path).await;
        }
        let request = Request::from_parts(parts, kube::client::Body::from(body.to_vec()));
        let method = request.method().clone();
        let reply = match self.inner.store.send(request).await {
            Ok(reply) => reply,
            Err(e) => return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let (parts, body) = reply.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        if !parts.status.is_success() {
            return Response::from_parts(parts, Body::full(bytes));
        }
        if method == Method::GET && path.name.is_none() {
            // A list: track its kind, and say which version it reflects.
            if let Err(e) = self.track(&mut state, &path.collection()).await {
                return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
            let Ok(mut list) = serde_json::from_slice::<Value>(&bytes) else {
                return Response::from_parts(parts, Body::full(bytes));
            };
            let newest = list
                .get("items")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|o| changes::identity(o).map(|(_, rv)| rv))
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            list["metadata"]["resourceVersion"] = json!(state.head.max(newest).to_string());
            return json_reply(parts.status, &list);
        }
        if method != Method::GET
            && let Err(e) = self.record_changes(&mut state).await
        {
            tracing::warn!(error = %e, "the fake API could not record a change for watchers");
        }
        Response::from_parts(parts, Body::full(bytes))
    }

    /// The eviction of the pod `path` names (see module `eviction`): deleted, or refused as the
    /// API server refuses it.
    async fn evict(&self, state: &mut State, path: &ApiPath) -> Response<Body> {
        let (Some(ns), Some(name)) = (&path.namespace, &path.name) else {
            return status(StatusCode::NOT_FOUND, "an eviction names a namespaced pod");
        };
        let lists = async {
            let pods = self.list("/api/v1/pods").await?;
            let budgets = self.list("/apis/policy/v1/poddisruptionbudgets").await?;
            Ok::<_, Error>((pods, budgets))
        };
        let (pods, budgets) = match lists.await {
            Ok(lists) => lists,
            Err(e) => return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let Some(pod) = pods.iter().find(|p| {
            p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns.as_str())
                && p.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str())
        }) else {
            return reason_status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("pods \"{name}\" not found"),
                None,
            );
        };
        match eviction::decide(pod, &budgets, &pods) {
            eviction::Verdict::Evict => {}
            eviction::Verdict::ManyBudgets => {
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "This pod has more than one PodDisruptionBudget, which the eviction \
                     subresource does not support.",
                );
            }
            eviction::Verdict::Refused {
                budget,
                desired,
                healthy,
            } => {
                let cause = json!({"causes": [{"reason": "DisruptionBudget", "message": format!(
                    "The disruption budget {budget} needs {desired} healthy pods and has \
                     {healthy} currently")}]});
                return reason_status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    Some(cause),
                );
            }
        }
        let request = match Request::delete(format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .body(kube::client::Body::empty())
        {
            Ok(r) => r,
            Err(e) => return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let deleted = match self.inner.store.send(request).await {
            Ok(reply) => reply.status(),
            Err(e) => return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        if !deleted.is_success() {
            return status(deleted, &format!("the store could not delete pod {name}"));
        }
        if let Err(e) = self.record_changes(state).await {
            tracing::warn!(error = %e, "the fake API could not record a change for watchers");
        }
        json_reply(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "code": 201}),
        )
    }

    /// Lists `collection` across namespaces from the store.
    async fn list(&self, collection: &str) -> Result<Vec<Value>, Error> {
        let request = Request::get(collection)
            .body(kube::client::Body::empty())
            .map_err(|e| store_error(collection, e))?;
        let reply = self
            .inner
            .store
            .send(request)
            .await
            .map_err(|e| store_error(collection, e))?;
        let ok = reply.status().is_success();
        let bytes = reply
            .into_body()
            .collect()
            .await
            .map_err(|e| store_error(collection, e))?
            .to_bytes();
        let list: Value = serde_json::from_slice(&bytes).map_err(|e| store_error(collection, e))?;
        if !ok {
            return Err(store_error(collection, list));
        }
        Ok(list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Starts tracking `collection` (a snapshot, no events) if it is not yet.
    async fn track(&self, state: &mut State, collection: &str) -> Result<(), Error> {
        if state.kinds.contains_key(collection) {
            return Ok(());
        }
        let objects = changes::snapshot(&self.list(collection).await?);
        let newest = objects.values().map(|(rv, _)| *rv).max().unwrap_or(0);
        state.head = state.head.max(newest);
        let since = state.head;
        state
            .kinds
            .insert(collection.to_owned(), changes::Tracked { since, objects });
        Ok(())
    }

    /// Compares every tracked kind with the store, logs and broadcasts what changed.
    async fn record_changes(&self, state: &mut State) -> Result<(), Error> {
        let mut found = Vec::new();
        let mut deleted = Vec::new();
        let collections: Vec<String> = state.kinds.keys().cloned().collect();
        for collection in collections {
            let now = changes::snapshot(&self.list(&collection).await?);
            let tracked = state.kinds.entry(collection.clone()).or_default();
            let (mut c, d) = changes::diff(&collection, &tracked.objects, &now);
            tracked.objects = now;
            found.append(&mut c);
            deleted.extend(d.into_iter().map(|o| (collection.clone(), o)));
        }
        found.sort_by_key(|c| c.rv);
        for change in found {
            self.publish(state, change);
        }
        for (collection, mut object) in deleted {
            let rv = self.tick(state).await?;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let namespace = changes::identity(&object)
                .map(|((ns, _), _)| ns)
                .unwrap_or_default();
            self.publish(
                state,
                Change {
                    collection,
                    namespace,
                    rv,
                    kind: ChangeType::Deleted,
                    object,
                    old: None,
                },
            );
        }
        Ok(())
    }

    fn publish(&self, state: &mut State, change: Change) {
        let change = Arc::new(change);
        state.push(change.clone());
        // No receiver is no error: nobody watches yet.
        let _ = self.inner.changes.send(change);
    }

    /// Moves the store's version counter on by updating the hidden tick object; its version.
    async fn tick(&self, state: &mut State) -> Result<u64, Error> {
        let collection = "/apis/scheduling.k8s.io/v1/priorityclasses";
        let object = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": TICK_NAME}, "value": 0,
            "description": "versions deletions in switchyard's fake API",
        });
        let request = if state.ticked {
            Request::put(format!("{collection}/{TICK_NAME}"))
        } else {
            Request::post(collection)
        }
        .header(header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(object.to_string().into_bytes()))
        .map_err(|e| store_error("the version tick", e))?;
        let reply = self
            .inner
            .store
            .send(request)
            .await
            .map_err(|e| store_error("the version tick", e))?;
        let bytes = reply
            .into_body()
            .collect()
            .await
            .map_err(|e| store_error("the version tick", e))?
            .to_bytes();
        let object: Value =
            serde_json::from_slice(&bytes).map_err(|e| store_error("the version tick", e))?;
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|rv| rv.parse::<u64>().ok())
            .ok_or_else(|| store_error("the version tick", &object))?;
        state.ticked = true;
        Ok(rv)
    }

    /// A watch: the changes after the requested version, then new ones as they happen.
    async fn watch(&self, path: &ApiPath, params: &HashMap<String, String>) -> Response<Body> {
        let collection = path.collection();
        let filter = Filter {
            collection: collection.clone(),
            namespace: path.namespace.clone(),
            labels: params
                .get("labelSelector")
                .filter(|s| !s.is_empty())
                .cloned(),
            fields: params
                .get("fieldSelector")
                .map(|f| {
                    f.split(',')
                        .filter_map(|r| r.split_once('='))
                        .map(|(k, v)| (k.trim_end_matches('=').to_owned(), v.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(WATCH_TIMEOUT, Duration::from_secs);
        let mut state = self.inner.state.lock().await;
        if let Err(e) = self.track(&mut state, &collection).await {
            return status(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
        let from = params.get("resourceVersion").map(String::as_str);
        let mut first: Vec<(&'static str, Value)> = Vec::new();
        match from {
            None | Some("" | "0") => {
                // "Any version": the current objects as additions, then what follows.
                if let Some(tracked) = state.kinds.get(&collection) {
                    let mut current: Vec<_> = tracked
                        .objects
                        .iter()
                        .filter(|((ns, _), (_, o))| filter.sees(ns, o))
                        .map(|(_, (rv, o))| (*rv, o.clone()))
                        .collect();
                    current.sort_by_key(|(rv, _)| *rv);
                    first.extend(current.into_iter().map(|(_, o)| ("ADDED", o)));
                }
            }
            Some(rv) => {
                let Ok(from) = rv.parse::<u64>() else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        &format!("resourceVersion {rv:?} is not a version of this API"),
                    );
                };
                if state.too_old(&collection, from) {
                    first.push(("ERROR", gone(from)));
                } else {
                    first.extend(
                        state
                            .log
                            .iter()
                            .filter(|c| c.rv > from)
                            .filter_map(|c| filter.event(c)),
                    );
                }
            }
        }
        let gone_already = first.iter().any(|(t, _)| *t == "ERROR");
        let mut changes = self.inner.changes.subscribe();
        drop(state);
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            for (kind, object) in first {
                if tx.send(event(kind, object)).await.is_err() {
                    return;
                }
            }
            if gone_already {
                return;
            }
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let change = tokio::select! {
                    c = changes.recv() => c,
                    () = tokio::time::sleep_until(deadline) => return,
                    () = tx.closed() => return,
                };
                match change {
                    Ok(change) => {
                        if let Some((kind, object)) = filter.event(&change)
                            && tx.send(event(kind, object)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: it lists again.
                        let _ = tx.send(event("ERROR", gone(0))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let mut reply = Response::new(Body(BodyKind::Stream(rx)));
        reply.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        reply
    }
}

/// The fake API listening on an address; stops when dropped.
pub struct Served {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (no credentials: the fake authenticates nobody), with
    /// `namespace` as the context's default.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\n",
            self.url()
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Aborting the accept loop drops its connections' set, which aborts them.
        self.task.abort();
    }
}

/// The front as a tower service for in-process clients.
#[derive(Clone)]
struct Service(FakeApi);

impl tower::Service<Request<kube::client::Body>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            Ok(match body.collect().await {
                Ok(body) => api.handle(parts, body.to_bytes()).await,
                Err(e) => status(StatusCode::BAD_REQUEST, &e.to_string()),
            })
        })
    }
}

fn store_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// One watch event, newline-terminated.
fn event(kind: &str, object: Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The status of a watch from a version the log no longer has.
fn gone(from: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
           "code": 410, "message": format!("too old resource version: {from}")})
}

fn json_reply(code: StatusCode, value: &Value) -> Response<Body> {
    let mut reply = Response::new(Body::full(value.to_string()));
    *reply.status_mut() = code;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

/// A failure Status with its `reason` (and `details`), as the API server sends.
fn reason_status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Response<Body> {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Failure", "message": message, "reason": reason,
                          "code": code.as_u16()});
    if let Some(details) = details {
        body["details"] = details;
    }
    json_reply(code, &body)
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    json_reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "code": code.as_u16()}),
    )
}
