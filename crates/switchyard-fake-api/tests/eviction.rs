//! The eviction subresource through the fake API, with kube's own `Api::evict` as `kubectl
//! drain` calls it over HTTP: refused with 429 and the API server's Status while the pod's
//! budget allows no disruption (the pod stays), granted (the pod is gone, and a watch sees
//! it go) once it does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, EvictParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use switchyard_fake_api::FakeApi;

const NS: &str = "db";

fn labels(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_owned(), "shop".to_owned()),
        ("role".to_owned(), role.to_owned()),
    ])
}

fn pod(name: &str, role: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(labels(role)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn budget(name: &str, role: &str, min: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min)),
            selector: Some(LabelSelector {
                match_labels: Some(labels(role)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[tokio::test]
async fn an_eviction_over_http_is_refused_while_the_budget_allows_none() {
    let store = kube_fake_client::ClientBuilder::new()
        .build()
        .await
        .expect("a store");
    let api = FakeApi::new(store);
    let served = api.serve(([127, 0, 0, 1], 0).into()).await.expect("served");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::from_yaml(&served.kubeconfig(NS)).expect("a kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a config");
    // kube's client retries a 429 by default (for minutes); kubectl drain retries the eviction
    // itself: the test wants the first answer.
    config.default_retry = false;
    let client = Client::try_from(config).expect("a client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client, NS);
    let pp = PostParams::default();
    for p in [pod("shop-0", "primary"), pod("shop-1", "replica")] {
        pods.create(&pp, &p).await.expect("a pod");
    }
    for b in [
        budget("shop-primary", "primary", 1),
        budget("shop-replicas", "replica", 0),
    ] {
        pdbs.create(&pp, &b).await.expect("a budget");
    }

    let refused = pods
        .evict("shop-0", &EvictParams::default())
        .await
        .expect_err("the primary's budget keeps it");
    let kube::Error::Api(status) = refused else {
        panic!("not an API error: {refused:?}");
    };
    assert_eq!(status.code, 429);
    assert_eq!(status.reason, "TooManyRequests");
    assert_eq!(
        status.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert!(
        pods.get_opt("shop-0").await.unwrap().is_some(),
        "still there"
    );

    let granted = pods
        .evict("shop-1", &EvictParams::default())
        .await
        .expect("the replicas' budget allows one");
    assert_eq!(granted.code, 201);
    assert!(pods.get_opt("shop-1").await.unwrap().is_none(), "evicted");

    let missing = pods
        .evict("shop-9", &EvictParams::default())
        .await
        .expect_err("no such pod");
    assert!(matches!(missing, kube::Error::Api(s) if s.code == 404));
}
