//! Generated and hand-written manifests: the committed CRD is current, and every manifest
//! under `deploy/` and every example cluster (and the example fleet) parses as a valid
//! Kubernetes object.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use switchyard_kube::crd::{MySQLCluster, MySQLFleet, crd_files};
use switchyard_kube::validate::validate;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn crds_are_current() {
    for (name, yaml) in crd_files() {
        let path = root().join("crds").join(&name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == yaml,
            "crds/{name} is stale or missing: run `cargo xtask crds` and commit the result"
        );
        let crd: CustomResourceDefinition = serde_yaml::from_str(&committed).expect("a CRD");
        assert_eq!(crd.spec.group, "switchyard.io");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .status
                .is_some()
        );
    }
}

/// Parses one YAML document as the type its `kind` names; panics naming the file otherwise.
fn parse_document(file: &Path, doc: serde_yaml::Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    let shown = file.display();
    macro_rules! as_type {
        ($t:ty) => {{
            <$t>::deserialize(doc.clone())
                .unwrap_or_else(|e| panic!("{shown}: not a valid {kind}: {e}"));
        }};
    }
    match kind.as_str() {
        "Namespace" => as_type!(Namespace),
        "ServiceAccount" => as_type!(ServiceAccount),
        "ClusterRole" => as_type!(ClusterRole),
        "ClusterRoleBinding" => as_type!(ClusterRoleBinding),
        "Role" => as_type!(Role),
        "RoleBinding" => as_type!(RoleBinding),
        "Deployment" => as_type!(Deployment),
        "CustomResourceDefinition" => as_type!(CustomResourceDefinition),
        "MySQLCluster" => {
            let c = MySQLCluster::deserialize(doc.clone())
                .unwrap_or_else(|e| panic!("{shown}: not a valid MySQLCluster: {e}"));
            validate("example", &c.spec)
                .unwrap_or_else(|e| panic!("{shown}: the example is invalid: {e}"));
        }
        "MySQLFleet" => {
            let f = MySQLFleet::deserialize(doc.clone())
                .unwrap_or_else(|e| panic!("{shown}: not a valid MySQLFleet: {e}"));
            // Its spec alone (no clusters to resolve its selector against): the members and
            // the change must be given, the bake must parse.
            assert!(!f.spec.config.is_empty(), "{shown}: the fleet sets nothing");
            assert!(
                f.spec.selector.is_some() == f.spec.clusters.is_empty(),
                "{shown}: give clusters or a selector"
            );
            assert!(
                switchyard_kube::validate::parse_duration(&f.spec.bake).is_some(),
                "{shown}: the bake does not parse"
            );
        }
        other => panic!("{shown}: unexpected kind {other:?}"),
    }
    kind
}

fn parse_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .map(|doc| parse_document(path, doc))
        .collect()
}

#[test]
fn deploy_manifests_are_valid_objects() {
    let mut kinds = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy"))
        .expect("deploy/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in &files {
        kinds.extend(parse_file(f));
    }
    for wanted in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    ] {
        assert!(
            kinds.iter().any(|k| k == wanted),
            "{wanted} in deploy/: {kinds:?}"
        );
    }
}

#[test]
fn the_example_fleet_is_valid() {
    let kinds = parse_file(&root().join("docs/examples/shards-fleet.yaml"));
    assert_eq!(kinds, vec!["MySQLFleet"]);
}

#[test]
fn example_clusters_are_valid() {
    for name in ["mysql-cluster.yaml", "mariadb-cluster.yaml"] {
        let kinds = parse_file(&root().join("docs/examples").join(name));
        assert_eq!(kinds, vec!["MySQLCluster"], "{name}");
    }
}
