//! Issue 11 on the fake API server, with the test kubelet playing the pods' agents: each
//! instance's pod comes from the revision the status assigns to it (a pod deleted in the
//! middle of a rollout comes back on its own revision), scale-up provisions new replicas from
//! a donor, an emptied primary is never initialized again nor made writable, an emptied
//! replica is provisioned again, storage edits the claims cannot take get a condition while
//! everything else goes on, the primary label never sits on two pods, and the credentials
//! Secret outlives the cluster while its claims remain.

#[expect(dead_code, reason = "shared test support; this file uses part of it")]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{NAME, World, cluster, condition, sorted_names, spec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::ListParams;
use kube_fake_client::interceptor::Funcs;
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec};
use switchyard_kube::names::{
    ANNOTATION_REVISION_HASH, ANNOTATION_VERSION, LABEL_ROLE, LABEL_SERVING,
};
use switchyard_kube::rotation::ANNOTATION_ROTATE;
use switchyard_kube::status::ANNOTATION_SWITCHOVER_TO;
use switchyard_plan::record::Intent;

const TICK: Duration = Duration::from_secs(5);

async fn settle(w: &World) {
    for _ in 0..5 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
    }
}

async fn ready(w: World) -> World {
    w.run_until("Ready", 30, TICK).await;
    settle(&w).await;
    w
}

async fn annotation(w: &World, o: u32, key: &str) -> Option<String> {
    w.pods()
        .get_opt(&format!("{NAME}-{o}"))
        .await
        .unwrap()
        .and_then(|p| p.annotations().get(key).cloned())
}

fn assigned(c: &MySQLCluster, o: u32) -> Option<u64> {
    c.status
        .as_ref()?
        .instances
        .iter()
        .find(|i| i.ordinal == o)?
        .revision
}

/// Drain eviction, node loss or `kubectl delete` in the middle of a rollout: the pods come back
/// on the revision the record assigns them, never on the target early: a replica not upgraded
/// yet stays on the old version, the primary is not upgraded in place (it goes last, behind a
/// switchover), and the rollout then finishes in the engine's order.
#[tokio::test]
async fn a_pod_deleted_mid_rollout_comes_back_on_its_own_revision() {
    let w = ready(World::new(cluster(spec("mariadb", "10.5.27", 3))).await).await;
    w.edit(|s| s.version = "10.11.14".into()).await;
    // Until the first replica (2) runs the new revision.
    for _ in 0..40 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
        w.advance(TICK);
        if annotation(&w, 2, ANNOTATION_VERSION).await.as_deref() == Some("10.11.14") {
            break;
        }
    }
    assert_eq!(
        annotation(&w, 2, ANNOTATION_VERSION).await.as_deref(),
        Some("10.11.14")
    );
    let c = w.cluster().await;
    assert_eq!(
        (assigned(&c, 0), assigned(&c, 1), assigned(&c, 2)),
        (Some(1), Some(1), Some(2))
    );
    let old_hash = annotation(&w, 1, ANNOTATION_REVISION_HASH).await.unwrap();

    // Replica 1 (not upgraded yet) and the primary lose their pods.
    w.delete_pod(1).await;
    w.delete_pod(0).await;
    w.reconcile().await.ok();
    assert_eq!(w.kubelet().await, vec![0, 1], "both recreated and started");
    for o in [0, 1] {
        assert_eq!(
            annotation(&w, o, ANNOTATION_VERSION).await.as_deref(),
            Some("10.5.27"),
            "instance {o} came back on its own version"
        );
        assert_eq!(
            annotation(&w, o, ANNOTATION_REVISION_HASH).await.as_deref(),
            Some(old_hash.as_str())
        );
        assert_eq!(w.ops.instance(o).version.to_string(), "10.5.27");
        assert!(w.instance_config(o).await.unwrap().revision.eq(&old_hash));
    }

    // The rollout goes on in order: replica 1, then the primary behind a switchover.
    w.ops.calls.lock().unwrap().clear();
    w.run_until("Ready", 80, TICK).await;
    settle(&w).await;
    let calls = w.ops.calls();
    let restarted: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("prepare-shutdown"))
        .collect();
    assert_eq!(
        restarted,
        [
            "prepare-shutdown 1 slow=true",
            "prepare-shutdown 0 slow=true"
        ],
        "{calls:?}"
    );
    let promote = calls
        .iter()
        .position(|c| c == "promote 1")
        .expect("a switchover");
    let primary_restart = calls
        .iter()
        .position(|c| c == "prepare-shutdown 0 slow=true")
        .unwrap();
    assert!(promote < primary_restart, "{calls:?}");
    let c = w.cluster().await;
    assert!((0..3).all(|o| assigned(&c, o) == Some(2)));
    assert_eq!(c.status.unwrap().current_primary, Some(1));
}

/// Scale 3 → 5: the new instances get claims, the primary's revision, and an instance.json
/// naming a donor of their version (the primary) and the primary as their source; their agents
/// provision them, and they join the read pool. Scale 5 → 3 removes the highest ordinals'
/// pods and ConfigMaps and keeps their claims.
#[tokio::test]
async fn scaling_up_provisions_new_replicas_from_a_donor_and_scaling_down_keeps_their_claims() {
    let w = ready(World::new(cluster(spec("mysql", "9.7.0", 3))).await).await;
    w.edit(|s| s.replicas = 5).await;
    w.reconcile().await.expect("reconcile");
    for o in [3, 4] {
        let config = w.instance_config(o).await.expect("a ConfigMap");
        assert!(!config.bootstrap);
        let donor = config.provision_from.expect("a donor");
        assert_eq!(
            (donor.host.as_str(), donor.port, donor.agent_port),
            ("shop-0.shop-hosts.db.svc", 3306, 9104)
        );
        assert_eq!(
            config.replicate_from.map(|r| r.host).as_deref(),
            Some("shop-0.shop-hosts.db.svc")
        );
        assert_eq!(config.server_id, 1000 + o);
        assert!(
            w.claims()
                .get_opt(&format!("data-{NAME}-{o}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(w.kubelet().await, vec![3, 4]);
    assert!(
        w.agent_log()
            .ends_with(&["provision 3<-0".to_owned(), "provision 4<-0".to_owned()])
    );
    for _ in 0..8 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
        w.advance(TICK);
    }
    let c = w.cluster().await;
    let status = c.status.clone().unwrap();
    assert_eq!(
        status.ready.as_deref(),
        Some("5/5"),
        "{:#?}",
        status.conditions
    );
    assert_eq!(
        status.phase.as_deref(),
        Some("Ready"),
        "{:#?}",
        status.conditions
    );
    for o in [3, 4] {
        assert_eq!(assigned(&c, o), Some(1));
        assert_eq!(w.ops.instance(o).source, Some(0));
        let pod = w.pods().get(&format!("{NAME}-{o}")).await.unwrap();
        assert_eq!(
            pod.labels().get(LABEL_ROLE).map(String::as_str),
            Some("replica")
        );
        assert_eq!(
            pod.labels().get(LABEL_SERVING).map(String::as_str),
            Some("true")
        );
    }

    w.edit(|s| s.replicas = 3).await;
    settle(&w).await;
    assert_eq!(w.pod_names().await, ["shop-0", "shop-1", "shop-2"]);
    let claims = sorted_names(&w.claims()).await;
    assert_eq!(claims.len(), 5, "the claims stay: {claims:?}");
    assert!(w.instance_config(4).await.is_none());
    let c = w.cluster().await;
    assert_eq!(c.status.unwrap().instances.len(), 3);
}

/// The primary's volume is lost and its pod recreated (node loss): its agent is told neither
/// to initialize nor to provision, so it stays empty; the primary is never made writable and
/// the rollout halts naming it. A replica that lost its volume is provisioned again.
#[tokio::test]
async fn an_emptied_primary_is_never_initialized_again_nor_made_writable() {
    let w = ready(World::new(cluster(spec("mariadb", "10.11.14", 3))).await).await;
    assert_eq!(
        w.agent_log()
            .iter()
            .filter(|l| l.starts_with("bootstrap"))
            .count(),
        1
    );

    // A replica first: provisioned again from the primary.
    w.lose_volume(2);
    w.delete_pod(2).await;
    settle(&w).await;
    assert!(
        w.agent_log().contains(&"provision 2<-0".to_owned()),
        "{:?}",
        w.agent_log()
    );
    assert_eq!(w.ops.instance(2).source, Some(0));

    // Then the primary.
    w.ops.calls.lock().unwrap().clear();
    w.lose_volume(0);
    w.delete_pod(0).await;
    for _ in 0..6 {
        let _ = w.reconcile().await;
        w.kubelet().await;
        w.advance(TICK);
    }
    let config = w.instance_config(0).await.unwrap();
    assert!(!config.bootstrap, "{config:?}");
    assert_eq!(config.provision_from, None);
    assert!(
        w.agent_log().contains(&"empty 0".to_owned()),
        "{:?}",
        w.agent_log()
    );
    assert_eq!(
        w.agent_log()
            .iter()
            .filter(|l| l.starts_with("bootstrap"))
            .count(),
        1,
        "never initialized again: {:?}",
        w.agent_log()
    );
    assert!(
        !w.ops.calls().iter().any(|c| c.starts_with("promote")),
        "{:?}",
        w.ops.calls()
    );
    assert!(!w.ops.instance(0).writable);
    let c = w.cluster().await;
    let (status, reason, message) = condition(&c, "Halted").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PrimaryDataLost")
    );
    assert!(message.contains("instance 0"), "{message}");
    assert_eq!(condition(&c, "Available").unwrap().0, "False");
    assert_eq!(c.status.unwrap().current_primary, Some(0));
}

async fn secret(w: &World, key: &str) -> Option<String> {
    w.secrets()
        .get("shop-credentials")
        .await
        .unwrap()
        .data
        .unwrap()
        .get(key)
        .map(|b| String::from_utf8(b.0.clone()).unwrap())
}

fn storage(class: &str, size: &str) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        storage_class_name: Some(class.into()),
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        resources: Some(VolumeResourceRequirements {
            requests: Some([("storage".to_owned(), Quantity(size.into()))].into()),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

fn class(name: &str, expandable: bool) -> StorageClass {
    StorageClass {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: "example.com/disk".into(),
        allow_volume_expansion: Some(expandable),
        ..StorageClass::default()
    }
}

fn with_storage(s: &str, size: &str) -> MySQLClusterSpec {
    let mut sp = spec("mariadb", "10.11.14", 3);
    sp.storage = Some(storage(s, size));
    sp
}

/// The API server refuses a change of a claim's storage class (422), as a real one does (the
/// fake API server does not know the field is immutable).
fn immutable_claims() -> Funcs {
    Funcs::new().patch(|ctx| {
        let Some(wanted) = ctx.patch["spec"].get("storageClassName") else {
            return Ok(None);
        };
        let existing: Option<PersistentVolumeClaim> = ctx.client.get(ctx.namespace, ctx.name).ok();
        let has = existing
            .and_then(|c| c.spec)
            .and_then(|s| s.storage_class_name);
        if ctx.name.starts_with("data-") && has.as_deref() != wanted.as_str() {
            return Err(kube_fake_client::Error::ImmutableField {
                field: "spec.storageClassName".into(),
            });
        }
        Ok(None)
    })
}

async fn claim_size(w: &World, o: u32) -> String {
    let c = w.claims().get(&format!("data-{NAME}-{o}")).await.unwrap();
    c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
        .0
        .clone()
}

/// An edit of a claim's immutable field (its storage class) gets a condition naming the field
/// and what to do, and everything else keeps reconciling (a version upgrade rolls through);
/// a larger size grows the claims where their class allows expansion, and says so where it
/// does not.
#[tokio::test]
async fn storage_edits_the_claims_cannot_take_get_a_condition_and_the_rest_goes_on() {
    let w = World::with_api(cluster(with_storage("standard", "10Gi")), |b| {
        b.with_object(class("standard", true))
            .with_object(class("fixed", false))
            .with_object(class("fast", true))
            .with_interceptor_funcs(immutable_claims())
    })
    .await;
    let w = ready(w).await;

    // The class changes, and so does the version.
    w.edit(|s| {
        s.storage = Some(storage("fast", "10Gi"));
        s.version = "10.11.15".into();
    })
    .await;
    w.run_until("Ready", 80, TICK).await;
    settle(&w).await;
    let c = w.cluster().await;
    let (status, reason, message) = condition(&c, "StorageNotApplied").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ImmutableField")
    );
    for part in [
        "spec.storage.storageClassName asks for \"fast\"",
        "data-shop-0 has \"standard\"",
        "delete its pod and its claim together",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert_eq!(
        c.status.as_ref().unwrap().current_version.as_deref(),
        Some("10.11.15"),
        "{}",
        serde_json::to_string_pretty(&c.status).unwrap()
    );
    assert!(
        w.event_reasons()
            .await
            .contains(&"StorageNotApplied".to_owned())
    );

    // Back to the claims' class, and larger: the claims grow.
    w.edit(|s| s.storage = Some(storage("standard", "20Gi")))
        .await;
    settle(&w).await;
    for o in 0..3 {
        assert_eq!(claim_size(&w, o).await, "20Gi");
    }
    let c = w.cluster().await;
    assert_eq!(condition(&c, "StorageNotApplied").unwrap().0, "False");
}

#[tokio::test]
async fn a_class_that_cannot_expand_is_named_and_its_claims_keep_their_size() {
    let w = World::with_api(cluster(with_storage("fixed", "10Gi")), |b| {
        b.with_object(class("fixed", false))
    })
    .await;
    let w = ready(w).await;
    w.edit(|s| s.storage = Some(storage("fixed", "50Gi"))).await;
    settle(&w).await;
    let c = w.cluster().await;
    let (status, reason, message) = condition(&c, "StorageNotApplied").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ExpansionNotAllowed")
    );
    assert!(
        message.contains("data-shop-0 cannot grow to 50Gi")
            && message.contains("storage class fixed does not allow volume expansion"),
        "{message}"
    );
    assert_eq!(claim_size(&w, 0).await, "10Gi");
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Ready"));
}

/// Every change of the pods' role labels, replayed in order: the primary Service never selects
/// two pods, through a manual switchover and a promotion recorded by the engine.
#[tokio::test]
async fn the_primary_label_leaves_the_old_pod_before_it_lands_on_the_new_one() {
    let patches: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let seen = patches.clone();
    let w = World::with_api(cluster(spec("mariadb", "10.11.14", 3)), move |b| {
        b.with_interceptor_funcs(Funcs::new().patch(move |ctx| {
            if let Some(labels) = ctx.patch["metadata"]["labels"].as_object()
                && labels.contains_key(LABEL_ROLE)
            {
                seen.lock()
                    .unwrap()
                    .push((ctx.name.to_owned(), ctx.patch["metadata"]["labels"].clone()));
            }
            Ok(None)
        }))
    })
    .await;
    let w = ready(w).await;
    w.annotate(ANNOTATION_SWITCHOVER_TO, "2").await;
    for _ in 0..8 {
        w.reconcile().await.expect("reconcile");
        w.advance(TICK);
    }
    let c = w.cluster().await;
    assert_eq!(c.status.as_ref().unwrap().current_primary, Some(2));
    assert!(c.status.unwrap().record.unwrap().intent.is_none());
    w.annotate(ANNOTATION_SWITCHOVER_TO, "0").await;
    for _ in 0..8 {
        w.reconcile().await.expect("reconcile");
        w.advance(TICK);
    }
    assert_eq!(w.cluster().await.status.unwrap().current_primary, Some(0));
    let mut roles: std::collections::BTreeMap<String, String> = Default::default();
    let mut moved = 0;
    for (pod, labels) in patches.lock().unwrap().iter() {
        match labels[LABEL_ROLE].as_str() {
            Some(role) => roles.insert(pod.clone(), role.to_owned()),
            None => roles.remove(pod),
        };
        let primaries: Vec<&String> = roles
            .iter()
            .filter(|(_, r)| *r == "primary")
            .map(|(p, _)| p)
            .collect();
        assert!(
            primaries.len() <= 1,
            "two primaries after {pod} {labels}: {roles:?}"
        );
        if labels[LABEL_ROLE] == "primary" {
            moved += 1;
        }
    }
    assert!(moved >= 3, "the label moved: {:?}", patches.lock().unwrap());
}

/// The credentials Secret the operator generated is owned by the cluster's claims, not by
/// the cluster: deleting the cluster keeps it (and the claims, whose data directories know its
/// passwords), a cluster recreated with the same name reuses it, and it goes with the last
/// claim.
#[tokio::test]
async fn the_credentials_secret_outlives_the_cluster_while_its_claims_remain() {
    let w = ready(World::new(cluster(spec("mariadb", "10.11.14", 3))).await).await;
    let secret = w.secrets().get("shop-credentials").await.unwrap();
    let owners: Vec<String> = secret
        .owner_references()
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    assert_eq!(
        owners,
        [
            "PersistentVolumeClaim/data-shop-0",
            "PersistentVolumeClaim/data-shop-1",
            "PersistentVolumeClaim/data-shop-2"
        ]
    );
    let password = secret.data.clone().unwrap()["operator-password"].clone();

    w.delete_cluster().await;
    assert!(
        w.pod_names().await.is_empty(),
        "the pods went with the cluster"
    );
    assert!(
        w.secrets()
            .get_opt("shop-credentials")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        w.claims()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    // Recreated with the same name: the Secret and the data are reused.
    w.clusters()
        .create(
            &Default::default(),
            &cluster(spec("mariadb", "10.11.14", 3)),
        )
        .await
        .unwrap();
    w.run_until("Ready", 30, TICK).await;
    let again = w.secrets().get("shop-credentials").await.unwrap();
    assert_eq!(again.data.unwrap()["operator-password"], password);
    assert!(
        !w.agent_log()
            .iter()
            .skip(3)
            .any(|l| l.starts_with("bootstrap") || l.starts_with("provision")),
        "the data was reused: {:?}",
        w.agent_log()
    );

    // Gone with the last claim.
    w.delete_cluster().await;
    for o in 0..3 {
        w.claims()
            .delete(&format!("data-{NAME}-{o}"), &Default::default())
            .await
            .unwrap();
    }
    w.collect_garbage().await;
    assert!(
        w.secrets()
            .get_opt("shop-credentials")
            .await
            .unwrap()
            .is_none()
    );
}

/// MariaDB's patch-level upgrade needs no mariadb-upgrade (the official image and the agent run
/// it only on a new major.minor), so mariadb_upgrade_info keeps the older patch: the rollout
/// completes. Stale across a major.minor, the repoint refuses.
#[tokio::test]
async fn a_mariadb_patch_upgrade_does_not_halt_on_the_system_tables() {
    let w = ready(World::new(cluster(spec("mariadb", "10.11.14", 3))).await).await;
    w.edit(|s| s.version = "10.11.15".into()).await;
    w.run_until("Ready", 80, TICK).await;
    settle(&w).await;
    let c = w.cluster().await;
    assert_eq!(
        c.status.as_ref().unwrap().current_version.as_deref(),
        Some("10.11.15")
    );
    for o in 0..3 {
        assert_eq!(
            w.ops.agents.lock().unwrap()[&o]
                .mariadb_upgrade_info
                .as_deref(),
            Some("10.11.14"),
            "no mariadb-upgrade on a patch-level start"
        );
    }
    assert!(!w.event_reasons().await.contains(&"StepFailed".to_owned()));

    // A new major.minor whose upgrade did not run: the repoint refuses.
    w.edit(|s| s.version = "11.8.3".into()).await;
    for _ in 0..40 {
        w.reconcile().await.ok();
        if !w.kubelet().await.is_empty() {
            break;
        }
        w.advance(TICK);
    }
    let restarted = w
        .ops
        .agents
        .lock()
        .unwrap()
        .iter()
        .find(|(_, a)| a.server_version.as_deref() == Some("11.8.3"))
        .map(|(o, _)| *o)
        .expect("a replica restarted on 11.8.3");
    w.ops
        .agents
        .lock()
        .unwrap()
        .get_mut(&restarted)
        .unwrap()
        .mariadb_upgrade_info = Some("10.11.14".into());
    for _ in 0..3 {
        w.reconcile().await.ok();
        w.advance(TICK);
    }
    let c = w.cluster().await;
    let record = c.status.unwrap().record.unwrap();
    let failure = record.failure.expect("the repoint failed");
    assert!(
        failure
            .message
            .contains("system tables were not upgraded to 11.8"),
        "{failure:?}"
    );
    assert!(matches!(record.intent, Some(Intent::Restarting { .. })));
}

/// A password rotation asked for by annotation: the new passwords go to the Secret first,
/// the primary changes both accounts once (replicated through its binary log: no replica
/// changes them itself), every replica replicates again with the new replication password,
/// and the Secret then holds the new passwords; the same token asks for nothing more.
#[tokio::test]
async fn passwords_rotate_through_the_primary_and_the_secret_on_request() {
    let w = ready(World::new(cluster(spec("mariadb", "10.11.14", 3))).await).await;
    let old = secret(&w, "operator-password").await.unwrap();
    // The servers know the current password (and refuse any other).
    for o in 0..3 {
        w.ops.passwords.lock().unwrap().insert(o, old.clone());
    }
    w.ops.calls.lock().unwrap().clear();
    w.annotate(ANNOTATION_ROTATE, "2026-12-07").await;
    w.reconcile().await.expect("reconcile");
    let next = secret(&w, "operator-password-next")
        .await
        .expect("kept first");
    let next_replication = secret(&w, "replication-password-next").await.unwrap();
    assert_eq!(secret(&w, "operator-password").await.unwrap(), old);
    assert_ne!(next, old);
    for _ in 0..4 {
        w.reconcile().await.expect("reconcile");
        w.advance(TICK);
    }
    let c = w.cluster().await;
    assert_eq!(
        c.status.as_ref().unwrap().rotation.as_deref(),
        Some("2026-12-07")
    );
    let calls = w.ops.calls();
    let rotation: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("set-passwords") || c.starts_with("replicate"))
        .collect();
    assert_eq!(
        rotation,
        [
            "set-passwords 0 replication,switchyard",
            "replicate 1<-0",
            "replicate 2<-0"
        ],
        "{calls:?}"
    );
    assert_eq!(secret(&w, "operator-password").await.unwrap(), next);
    assert_eq!(
        secret(&w, "replication-password").await.unwrap(),
        next_replication
    );
    assert_eq!(secret(&w, "operator-password-next").await, None);
    let (status, reason, _) = condition(&c, "RotatingCredentials").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Rotated"));
    assert!(
        w.event_reasons()
            .await
            .contains(&"CredentialsRotated".to_owned())
    );
    // The operator goes on with the new password; the same token asks for nothing more.
    w.ops.calls.lock().unwrap().clear();
    settle(&w).await;
    assert!(
        !w.ops.calls().iter().any(|c| c.starts_with("set-passwords")),
        "{:?}",
        w.ops.calls()
    );
    let c = w.cluster().await;
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(condition(&c, "Available").unwrap().0, "True");
}

/// The first replica upgraded (the only instance on the new version) loses its volume: no
/// instance of its version can be its donor, so it is moved to the primary's revision,
/// provisioned from the primary, and upgraded again by the rollout.
#[tokio::test]
async fn an_emptied_replica_with_no_donor_of_its_version_is_provisioned_on_the_primarys() {
    let w = ready(World::new(cluster(spec("mariadb", "10.5.27", 3))).await).await;
    w.edit(|s| s.version = "10.11.14".into()).await;
    for _ in 0..40 {
        w.reconcile().await.expect("reconcile");
        w.kubelet().await;
        w.advance(TICK);
        if annotation(&w, 2, ANNOTATION_VERSION).await.as_deref() == Some("10.11.14") {
            break;
        }
    }
    assert_eq!(assigned(&w.cluster().await, 2), Some(2));
    w.lose_volume(2);
    w.delete_pod(2).await;
    for _ in 0..6 {
        let _ = w.reconcile().await;
        w.kubelet().await;
        w.advance(TICK);
    }
    let log = w.agent_log();
    let empty = log
        .iter()
        .position(|l| l == "empty 2")
        .expect("it came back empty");
    assert!(
        log[empty..].contains(&"provision 2<-0".to_owned()),
        "provisioned from the primary: {log:?}"
    );
    w.run_until("Ready", 80, TICK).await;
    settle(&w).await;
    let c = w.cluster().await;
    assert!((0..3).all(|o| assigned(&c, o) == Some(2)), "{:?}", c.status);
    assert_eq!(w.ops.instance(2).version.to_string(), "10.11.14");
}
