//! Password rotation: `kubectl annotate mysqlcluster NAME switchyard.io/rotate-credentials=TOKEN`
//! (any new token) makes the operator give the operator and replication accounts new passwords
//! on every instance and in the credentials Secret, without a transaction of a replica's own.
//!
//! The steps, each resumable by the next reconcile:
//! 1. The new passwords are generated and written to the Secret first, beside the current
//!    ones (`operator-password-next`, `replication-password-next`, with the request's token
//!    under `rotation`), so a rotation interrupted at any point finishes with the same ones.
//! 2. Unless the new operator password already logs in on the primary, the primary changes
//!    both accounts (`ALTER USER`, the replication account first) with its binary log on:
//!    every replica applies the same change from the primary, so no replica writes a GTID of
//!    its own (an errant transaction the next switchover would refuse).
//! 3. Once every replica applied it (the new operator password logs in there), each replica
//!    that replicates is repointed with the new replication password (its running receiver
//!    authenticated before the change; the next one would not).
//! 4. The Secret's current passwords become the new ones, the `-next` keys go, and the status
//!    records the token.
//!
//! A rotation runs only between rollout steps (no intent in the record) while the primary is
//! up; meanwhile the engine takes no step. Passwords never appear in an error, event or log.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use switchyard_plan::Observed;

use crate::context::Context;
use crate::crd::MySQLCluster;
use crate::credentials::{self, ClusterCredentials, keys};
use crate::error::Error;
use crate::runtime::KubeRuntime;

/// The annotation that asks for a rotation: a new value is a new request.
pub const ANNOTATION_ROTATE: &str = "switchyard.io/rotate-credentials";
/// The Secret key holding the token of the rotation whose new passwords are pending.
pub const KEY_ROTATION: &str = "rotation";
/// The Secret key of the pending operator password.
pub const KEY_OPERATOR_NEXT: &str = "operator-password-next";
/// The Secret key of the pending replication password.
pub const KEY_REPLICATION_NEXT: &str = "replication-password-next";

/// Where a rotation stands after this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// None was asked for, or the last one asked for is done.
    Idle,
    /// It waits for the cluster (a rollout step under way, the primary down): the engine
    /// goes on.
    Waiting(String),
    /// It made progress or waits for a replica: the engine takes no step this time.
    Busy(String),
    /// It finished now (the token).
    Done(String),
    /// A step failed (the message holds no password); retried by the next reconcile.
    Failed(String),
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

fn bytes(value: &str) -> serde_json::Value {
    serde_json::to_value(ByteString(value.as_bytes().to_vec())).unwrap_or_default()
}

/// The rotation asked for and not done yet: its token.
pub fn requested(cluster: &MySQLCluster) -> Option<String> {
    let token = cluster
        .annotations()
        .get(ANNOTATION_ROTATE)?
        .trim()
        .to_owned();
    let done = cluster.status.as_ref().and_then(|s| s.rotation.as_deref());
    (!token.is_empty() && done != Some(token.as_str())).then_some(token)
}

/// Carries the requested rotation one step further (see the module doc).
///
/// # Errors
/// The API errors of the Secret's writes.
pub async fn rotate(
    ctx: &Context,
    runtime: &KubeRuntime,
    secret: &Secret,
    creds: &ClusterCredentials,
    observed: &Observed,
) -> Result<Rotation, Error> {
    let cluster = runtime.cluster();
    let Some(token) = requested(&cluster) else {
        return Ok(Rotation::Idle);
    };
    let status = cluster.status.clone().unwrap_or_default();
    let record = status.record.clone().unwrap_or_default();
    let Some(primary) = observed
        .primary()
        .filter(|p| p.health.is_up() && p.writable)
    else {
        return Ok(Rotation::Waiting(
            "the rotation waits for a writable primary".into(),
        ));
    };
    if record.intent.is_some() {
        return Ok(Rotation::Waiting(
            "the rotation waits for the rollout step under way".into(),
        ));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &runtime.names().namespace);
    let name = secret.name_any();
    let patch_secret = |data: serde_json::Value| {
        let secrets = secrets.clone();
        let name = name.clone();
        async move {
            let patch = serde_json::json!({ "data": data });
            secrets
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
                .map_err(|source| Error::Apply {
                    kind: "Secret",
                    name,
                    source: Box::new(source),
                })
        }
    };

    // 1. The new passwords, in the Secret first.
    let pending = (text(secret, KEY_ROTATION).as_deref() == Some(token.as_str()))
        .then(|| {
            Some((
                text(secret, KEY_OPERATOR_NEXT)?,
                text(secret, KEY_REPLICATION_NEXT)?,
            ))
        })
        .flatten();
    let Some((operator_next, replication_next)) = pending else {
        let data: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
            (KEY_ROTATION, bytes(&token)),
            (KEY_OPERATOR_NEXT, bytes(&credentials::generate_password())),
            (
                KEY_REPLICATION_NEXT,
                bytes(&credentials::generate_password()),
            ),
        ]);
        patch_secret(serde_json::to_value(data).unwrap_or_default()).await?;
        return Ok(Rotation::Busy(
            "new passwords generated and kept in the Secret".into(),
        ));
    };
    let next = ClusterCredentials {
        operator_password: operator_next.clone(),
        replication_password: replication_next.clone(),
        ..creds.clone()
    };
    let names = runtime.names();
    let current_ops = runtime.ops();
    let next_ops = ctx.ops.ops(&names.namespace, &next);

    // 2. The primary, through its binary log.
    let p = runtime.target(primary.ordinal);
    if next_ops.observe(&p, None).await.is_err() {
        let accounts = [
            (next.replication_user.clone(), replication_next.clone()),
            (next.operator_user.clone(), operator_next.clone()),
        ];
        if let Err(e) = current_ops.set_passwords(&p, &accounts).await {
            return Ok(Rotation::Failed(e.message));
        }
    }

    // 3. Every replica applied it, then replicates with the new password.
    let replicas: Vec<_> = observed
        .instances
        .iter()
        .filter(|i| i.ordinal != primary.ordinal)
        .collect();
    for r in &replicas {
        if next_ops
            .observe(&runtime.target(r.ordinal), None)
            .await
            .is_err()
        {
            return Ok(Rotation::Busy(format!(
                "waiting for instance {} to apply the new passwords",
                r.ordinal
            )));
        }
    }
    for r in replicas.iter().filter(|r| r.source.is_some()) {
        let t = runtime.target(r.ordinal);
        if let Err(e) = next_ops.replicate_from(&t, &p, false).await {
            return Ok(Rotation::Failed(format!(
                "instance {} could not replicate with the new password: {}",
                r.ordinal, e.message
            )));
        }
    }

    // 4. The Secret's passwords are the new ones.
    let data = serde_json::json!({
        keys::OPERATOR_PASSWORD: bytes(&operator_next),
        keys::REPLICATION_PASSWORD: bytes(&replication_next),
        KEY_OPERATOR_NEXT: null,
        KEY_REPLICATION_NEXT: null,
        KEY_ROTATION: null,
    });
    patch_secret(data).await?;
    Ok(Rotation::Done(token))
}
