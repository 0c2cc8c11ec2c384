//! The fake API over HTTP, through a kubeconfig as the operator reads it: a watch sees every
//! change another client makes (additions, server-side applies, label changes in and out of
//! its selector, deletions, an owner's cascade) in version order, resumes from a version
//! without a gap, and answers 410 for a version it cannot serve.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::WatchParams;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt as _};
use switchyard_fake_api::FakeApi;

const NS: &str = "db";

async fn http_client(kubeconfig: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).expect("a kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a config");
    Client::try_from(config).expect("a client")
}

fn map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), "1".to_owned())])),
        ..ConfigMap::default()
    }
}

/// The next `n` events of a watch, as (type, name, resourceVersion).
async fn next(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
    n: usize,
) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap_or_else(|_| panic!("no event within 10 s after {out:?}"))
            .expect("a watch event")
            .expect("the watch goes on");
        let (kind, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        };
        let rv = object
            .resource_version()
            .and_then(|rv| rv.parse().ok())
            .expect("a numeric resourceVersion");
        out.push((kind.to_owned(), object.name_any(), rv));
    }
    out
}

fn kinds(events: &[(String, String, u64)]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|(k, n, _)| (k.as_str(), n.as_str()))
        .collect()
}

#[tokio::test]
async fn a_watch_over_http_sees_every_change_in_order_and_resumes_without_a_gap() {
    let store = kube_fake_client::ClientBuilder::new()
        .build()
        .await
        .expect("a store");
    let api = FakeApi::new(store);
    let served = api
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("listening");
    let remote: Api<ConfigMap> = Api::namespaced(http_client(&served.kubeconfig(NS)).await, NS);
    let local: Api<ConfigMap> = Api::namespaced(api.client(), NS);

    local
        .create(&PostParams::default(), &map("before", &[("app", "x")]))
        .await
        .unwrap();
    // A second version of it, so that version 1 predates the kind's tracking below.
    local
        .patch(
            "before",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"k": "0"}})),
        )
        .await
        .unwrap();
    let list = remote
        .list(&ListParams::default().labels("app=x"))
        .await
        .expect("a list over HTTP");
    assert_eq!(list.items.len(), 1);
    let listed: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .expect("the list's version");
    assert!(listed >= list.items[0].resource_version().unwrap().parse().unwrap());

    let params = WatchParams::default().labels("app=x").timeout(60);
    let mut watch = remote
        .watch(&params, &listed.to_string())
        .await
        .expect("a watch")
        .boxed();

    // Another client's writes, each seen.
    let owner = local
        .create(&PostParams::default(), &map("a", &[("app", "x")]))
        .await
        .unwrap();
    local
        .create(&PostParams::default(), &map("b", &[("app", "y")]))
        .await
        .unwrap();
    let apply = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": NS, "labels": {"app": "x"}},
        "data": {"k": "2"},
    });
    local
        .patch(
            "a",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&apply),
        )
        .await
        .expect("server-side apply");
    // b moves into the selector; "before" moves out of it.
    local
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "x"}}})),
        )
        .await
        .unwrap();
    local
        .patch(
            "before",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "z"}}})),
        )
        .await
        .unwrap();
    let events = next(&mut watch, 4).await;
    assert_eq!(
        kinds(&events),
        [
            ("ADDED", "a"),
            ("MODIFIED", "a"),
            ("ADDED", "b"),
            ("DELETED", "before")
        ],
        "{events:?}"
    );

    // A dependent of a: deleting a cascades to it; both deletions are seen and versioned.
    let mut dependent = map("dep", &[("app", "x")]);
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "a".into(),
        uid: owner.uid().expect("a uid"),
        ..OwnerReference::default()
    }]);
    local
        .create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    local.delete("a", &DeleteParams::default()).await.unwrap();
    let more = next(&mut watch, 3).await;
    let mut deleted: Vec<&str> = more[1..].iter().map(|(_, n, _)| n.as_str()).collect();
    deleted.sort_unstable();
    assert_eq!(kinds(&more)[0], ("ADDED", "dep"), "{more:?}");
    assert_eq!(deleted, ["a", "dep"], "{more:?}");
    let all: Vec<u64> = events.iter().chain(&more).map(|(_, _, rv)| *rv).collect();
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "versions increase: {all:?}"
    );
    assert!(all[0] > listed);

    // A watch resumed from the second event's version gets exactly what followed it.
    let mut resumed = remote
        .watch(&params, &all[1].to_string())
        .await
        .expect("a resumed watch")
        .boxed();
    let again = next(&mut resumed, 5).await;
    let expected: Vec<(String, String, u64)> = events[2..].iter().chain(&more).cloned().collect();
    assert_eq!(again, expected);

    // A version from before the kind was tracked cannot be served: 410, so the client lists.
    let mut stale = remote
        .watch(&params, "1")
        .await
        .expect("a watch from version 1")
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stale.try_next())
        .await
        .expect("an answer")
        .expect("an event")
        .expect("one event");
    assert!(
        matches!(&first, WatchEvent::Error(e) if e.code == 410),
        "{first:?}"
    );
}
