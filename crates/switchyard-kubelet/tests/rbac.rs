//! RBAC from evidence, end to end on a fake API: requests sent through a recording client are
//! checked against a Role with the API server's rules (a server-side apply that may create
//! needs `create` besides `patch`; exec over WebSocket needs `get` and `create`; a Role
//! applies in its own namespace only).

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube_fake_client::ClientBuilder;
use switchyard_kubelet::rbac::{Rbac, Recorded, ServiceAccount, record};

/// A namespaced install's Role, as a careless manifest would grant it: `patch` without
/// `create` on ConfigMaps, `create` without `get` on `pods/exec`.
const ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: switchyard, namespace: db}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "delete"]
  - apiGroups: [""]
    resources: ["pods/exec"]
    verbs: ["create"]
  - apiGroups: [""]
    resources: ["pods/status"]
    verbs: ["patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: switchyard, namespace: db}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: switchyard}
subjects: [{kind: ServiceAccount, name: switchyard, namespace: switchyard-system}]
"#;

fn operator() -> ServiceAccount {
    ServiceAccount {
        namespace: "switchyard-system".into(),
        name: "switchyard".into(),
    }
}

/// What the operator of this test does in namespace `ns`, through a recording client: a
/// list, a server-side apply of a ConfigMap, a status patch, and an exec over WebSocket.
async fn operate(ns: &str) -> Vec<Recorded> {
    let fake = ClientBuilder::new()
        .with_status_subresource::<Pod>()
        .build()
        .await
        .expect("a fake API");
    let (client, recorder) = record(fake);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default()).await.expect("a list");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shop-0-config", "namespace": ns},
        "data": {"my.cnf": "[mysqld]\n"},
    }))
    .unwrap();
    // The fake API's answers do not matter: the request is recorded as sent.
    let _ = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            "shop-0-config",
            &PatchParams::apply("switchyard").force(),
            &Patch::Apply(&cm),
        )
        .await;
    let _ = pods
        .patch_status(
            "shop-0",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {}})),
        )
        .await;
    // `kubectl exec` over WebSocket, as kube's `ws` feature sends it.
    let exec = http::Request::get(format!(
        "/api/v1/namespaces/{ns}/pods/shop-0/exec?command=true&container=mysqld&stdout=true"
    ))
    .header(http::header::CONNECTION, "Upgrade")
    .header(http::header::UPGRADE, "websocket")
    .header(http::header::SEC_WEBSOCKET_VERSION, "13")
    .header(http::header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
    .header(http::header::SEC_WEBSOCKET_PROTOCOL, "v5.channel.k8s.io")
    .body(kube::client::Body::empty())
    .unwrap();
    let _ = client.send(exec).await;
    let recorded = recorder.requests();
    assert_eq!(
        recorded.len(),
        4,
        "every request is recorded: {recorded:#?}"
    );
    recorded
}

fn denied(rbac: &Rbac, requests: &[Recorded]) -> Vec<String> {
    let mut out: Vec<String> = rbac
        .check(&operator(), requests)
        .into_iter()
        .map(|d| {
            let a = d.attributes;
            let sub = if a.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", a.subresource)
            };
            format!("{} {}{sub}", a.verb, a.resource)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_checker_rejects_what_the_role_does_not_grant() {
    let requests = operate("db").await;
    let careless = Rbac::parse(ROLE, "role.yaml").unwrap();
    assert_eq!(
        denied(&careless, &requests),
        ["create configmaps", "get pods/exec"],
        "an apply may create; a WebSocket exec is a get as well"
    );

    let fixed = ROLE
        .replace(
            r#"verbs: ["get", "list", "watch", "patch"]"#,
            r#"verbs: ["get", "list", "watch", "patch", "create"]"#,
        )
        .replace(
            "resources: [\"pods/exec\"]\n    verbs: [\"create\"]",
            "resources: [\"pods/exec\"]\n    verbs: [\"get\", \"create\"]",
        );
    let fixed = Rbac::parse(&fixed, "role.yaml").unwrap();
    assert_eq!(denied(&fixed, &requests), Vec::<String>::new());

    // The same requests in another namespace: the Role does not reach there.
    let elsewhere = operate("other").await;
    assert_eq!(
        denied(&fixed, &elsewhere),
        [
            "create configmaps",
            "create pods/exec",
            "get pods/exec",
            "list pods",
            "patch configmaps",
            "patch pods/status",
        ]
    );
}
