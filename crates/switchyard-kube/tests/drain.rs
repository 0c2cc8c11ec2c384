//! A node drain against the fake API's front (switchyard-fake-api, whose eviction subresource
//! enforces PodDisruptionBudgets as `kubectl drain` meets them) and the instance-operations
//! test double (issue 13): the budgets replace the single one of earlier versions; the
//! primary cannot be evicted while it is the primary; a cordon of its node moves it through
//! the engine's switchover, after which the old pod is a replica and may go; replicas go one
//! at a time; with no safe replica nothing moves and one event says why; an operator that may
//! not read Nodes skips the check and keeps reconciling.

#[expect(dead_code, reason = "shared test support; this file uses part of it")]
mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{NAME, NS, World, cluster, sorted_names, spec};
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, EvictParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use switchyard_kube::build;
use switchyard_kube::crd::MySQLCluster;
use switchyard_plan::record::Intent;

const TICK: Duration = Duration::from_secs(5);

/// A ready 3-instance cluster, instance N's pod on node `node-N`.
async fn ready_on_nodes(w: World) -> World {
    w.run_until("Ready", 20, TICK).await;
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
    }
    let nodes: Api<Node> = Api::all(w.client.clone());
    for o in 0..3 {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(format!("node-{o}")),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            ..Node::default()
        };
        nodes.create(&PostParams::default(), &node).await.unwrap();
        place(&w, o, &format!("node-{o}")).await;
    }
    w
}

/// The scheduler put instance `o`'s pod on `node`.
async fn place(w: &World, o: u32, node: &str) {
    let patch = serde_json::json!({ "spec": { "nodeName": node } });
    w.pods()
        .patch(
            &format!("{NAME}-{o}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("place the pod");
}

/// `kubectl cordon node`.
async fn cordon(w: &World, node: &str) {
    let nodes: Api<Node> = Api::all(w.client.clone());
    let patch = serde_json::json!({ "spec": { "unschedulable": true } });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("cordon");
}

/// The eviction `kubectl drain` asks for: `Ok` when granted, the HTTP code when refused.
async fn evict(w: &World, o: u32) -> Result<(), u16> {
    match w
        .pods()
        .evict(&format!("{NAME}-{o}"), &EvictParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("the eviction of {o} failed: {e}"),
    }
}

fn intent(c: &MySQLCluster) -> Option<Intent> {
    c.status.as_ref()?.record.as_ref()?.intent.clone()
}

fn primary(c: &MySQLCluster) -> Option<u32> {
    c.status.as_ref()?.current_primary
}

fn count(reasons: &[String], reason: &str) -> usize {
    reasons.iter().filter(|r| *r == reason).count()
}

/// The budgets are the primary's and the replicas'; the single budget an earlier version made
/// (ours by its labels) is deleted, and a budget someone else made is left alone.
#[tokio::test]
async fn the_two_budgets_replace_the_single_one_of_earlier_versions() {
    let w = World::fronted(cluster(spec("mariadb", "10.11.14", 3))).await;
    w.reconcile().await.expect("first reconcile");
    let c = w.cluster().await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(w.client.clone(), NS);
    let mut legacy = build::pod_disruption_budgets(&c).remove(0);
    legacy.metadata.name = Some(NAME.into());
    let mut theirs = legacy.clone();
    theirs.metadata.name = Some("someone-elses".into());
    theirs.metadata.labels = None;
    theirs.metadata.owner_references = None;
    for pdb in [&legacy, &theirs] {
        pdbs.create(&PostParams::default(), pdb).await.unwrap();
    }
    w.reconcile().await.expect("reconcile");
    assert_eq!(
        sorted_names(&pdbs).await,
        ["shop-primary", "shop-replicas", "someone-elses"]
    );
}

/// The whole drain of the primary's node: the primary's eviction is refused; the cordon makes
/// the operator record a switchover to a replica on a schedulable node, which the engine
/// carries out; the old primary, a replica now, may be evicted; while it comes back not
/// Ready, the other replica may not.
#[tokio::test]
async fn a_cordoned_primary_node_moves_the_primary_and_replicas_go_one_at_a_time() {
    let w = ready_on_nodes(World::fronted(cluster(spec("mariadb", "10.11.14", 3))).await).await;
    assert_eq!(primary(&w.cluster().await), Some(0));
    assert_eq!(evict(&w, 0).await, Err(429), "the primary stays");
    assert!(w.pods().get_opt("shop-0").await.unwrap().is_some());

    // Instance 1's node is cordoned as well: the switchover goes to 2.
    cordon(&w, "node-1").await;
    w.reconcile().await.expect("reconcile");
    assert_eq!(
        intent(&w.cluster().await),
        None,
        "the primary's node is fine"
    );
    cordon(&w, "node-0").await;
    w.reconcile().await.expect("reconcile");
    match intent(&w.cluster().await) {
        Some(Intent::Switchover { from: 0, to: 2, .. }) => {}
        other => panic!("no switchover 0 -> 2 recorded: {other:?}"),
    }
    assert!(
        count(&w.event_reasons().await, "PrimaryNodeCordoned") == 1,
        "{:?}",
        w.event_reasons().await
    );
    // The engine carries it out like any switchover.
    for _ in 0..10 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
        w.advance(TICK);
        let c = w.cluster().await;
        if primary(&c) == Some(2) && intent(&c).is_none() {
            break;
        }
    }
    let c = w.cluster().await;
    assert_eq!((primary(&c), intent(&c)), (Some(2), None));
    assert!(w.ops.calls().contains(&"promote 2".to_owned()));
    assert_eq!(w.role(0).await.as_deref(), Some("replica"));
    assert_eq!(evict(&w, 2).await, Err(429), "the new primary stays");

    // The drain goes on: the old primary, a replica now, may go.
    assert_eq!(evict(&w, 0).await, Ok(()));
    assert!(w.pods().get_opt("shop-0").await.unwrap().is_none());
    w.ops.set_down(0, true);
    // The operator recreates it; until it is Ready, replica 1 may not go.
    w.reconcile().await.expect("reconcile");
    w.reconcile().await.expect("reconcile");
    assert!(w.pods().get_opt("shop-0").await.unwrap().is_some());
    assert_eq!(evict(&w, 1).await, Err(429), "one replica at a time");
    // Once it is back and Ready, the next replica may go.
    for _ in 0..6 {
        w.kubelet().await;
        w.reconcile().await.expect("reconcile");
        w.advance(TICK);
    }
    assert_eq!(w.role(0).await.as_deref(), Some("replica"));
    assert_eq!(evict(&w, 1).await, Ok(()));
}

/// With every replica's node cordoned too, nothing moves, and one Warning says why, however
/// many reconciles see it.
#[tokio::test]
async fn a_cordon_with_no_replica_to_take_over_moves_nothing_and_says_why_once() {
    let w = ready_on_nodes(World::fronted(cluster(spec("mysql", "8.4.3", 3))).await).await;
    w.ops.calls.lock().unwrap().clear();
    for node in ["node-0", "node-1", "node-2"] {
        cordon(&w, node).await;
    }
    for _ in 0..4 {
        w.reconcile().await.expect("reconcile");
        w.advance(TICK);
    }
    let c = w.cluster().await;
    assert_eq!((primary(&c), intent(&c)), (Some(0), None));
    assert!(!w.ops.calls().iter().any(|c| c.starts_with("fence")));
    assert_eq!(
        count(&w.event_reasons().await, "PrimaryNodeCordoned"),
        1,
        "{:?}",
        w.event_reasons().await
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.client.clone(), NS);
    let note = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("PrimaryNodeCordoned"))
        .and_then(|e| e.note)
        .unwrap();
    for part in [
        "node node-0 is cordoned",
        "instance 1's node node-1 is cordoned too",
        "instance 2's node node-2 is cordoned too",
    ] {
        assert!(note.contains(part), "{part}: {note}");
    }
    assert_eq!(evict(&w, 0).await, Err(429), "the drain waits");
}

/// The API server answers 403 to every request for Nodes, as to an operator installed with
/// namespaced RBAC.
#[derive(Clone)]
struct NoNodes(Client);

impl tower::Service<Request<kube::client::Body>> for NoNodes {
    type Response = Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            if req.uri().path().starts_with("/api/v1/nodes") {
                let body = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "Forbidden", "code": 403,
                    "message": "nodes is forbidden: cannot get resource \"nodes\""});
                return Ok(Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .expect("a response"));
            }
            client.send(req).await
        })
    }
}

/// An operator that may not read Nodes (the namespaced install) skips the check: its
/// reconciles succeed and nothing moves.
#[tokio::test]
async fn without_permission_to_read_nodes_the_check_is_skipped() {
    // Every node is cordoned: an operator that could read them would move the primary or
    // warn.
    let cordoned = |o: u32| Node {
        metadata: ObjectMeta {
            name: Some(format!("node-{o}")),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            unschedulable: Some(true),
            ..NodeSpec::default()
        }),
        ..Node::default()
    };
    let w = World::with_client(
        cluster(spec("mariadb", "10.11.14", 3)),
        |b| b.with_objects((0..3).map(cordoned).collect()),
        |store| Client::new(NoNodes(store), NS),
    )
    .await;
    w.run_until("Ready", 20, TICK).await;
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
    }
    for o in 0..3 {
        place(&w, o, &format!("node-{o}")).await;
    }
    for _ in 0..3 {
        w.reconcile()
            .await
            .expect("a reconcile does not fail on Nodes");
    }
    let c = w.cluster().await;
    assert_eq!((primary(&c), intent(&c)), (Some(0), None));
    assert_eq!(count(&w.event_reasons().await, "PrimaryNodeCordoned"), 0);
}
