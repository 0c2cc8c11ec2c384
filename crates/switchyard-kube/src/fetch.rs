//! Fetch: what the reconcile reads from the API server before it decides anything: the
//! credentials Secret (created with random passwords when absent, reused when a cluster of the
//! same name left it behind), the cluster's data claims, and the storage classes they use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use crate::build;
use crate::crd::MySQLCluster;
use crate::credentials::{self, ClusterCredentials};
use crate::error::Error;
use crate::names::Names;
use crate::validate::ValidSpec;

fn read_error(what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Read {
        what,
        source: Box::new(source),
    }
}

/// Reads the credentials Secret, creating it with random passwords when it is absent. A
/// Secret left by a deleted cluster of the same name (its data claims remain, and their data
/// directories know these passwords) is reused as it is.
///
/// # Errors
/// [`Error::Read`] or [`Error::Apply`] when the API server refuses, [`Error::Credentials`]
/// when the Secret lacks a key or holds a value the servers cannot take.
pub async fn credentials(
    client: &Client,
    cluster: &MySQLCluster,
    spec: &ValidSpec,
) -> Result<ClusterCredentials, Error> {
    Ok(credentials_secret(client, cluster, spec).await?.1)
}

/// The credentials Secret and what it holds (see [`credentials`]).
///
/// # Errors
/// As [`credentials`].
pub async fn credentials_secret(
    client: &Client,
    cluster: &MySQLCluster,
    spec: &ValidSpec,
) -> Result<(Secret, ClusterCredentials), Error> {
    let names = Names::of(cluster);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let secret = match secrets
        .get_opt(&spec.credentials_secret)
        .await
        .map_err(read_error("Secret"))?
    {
        Some(s) => s,
        None => {
            let generated = credentials::generate_credentials();
            let obj = build::credentials_secret(cluster, spec, &generated);
            match secrets.create(&PostParams::default(), &obj).await {
                Ok(s) => s,
                Err(kube::Error::Api(s)) if s.code == 409 => secrets
                    .get(&spec.credentials_secret)
                    .await
                    .map_err(read_error("Secret"))?,
                Err(source) => {
                    return Err(Error::Apply {
                        kind: "Secret",
                        name: spec.credentials_secret.clone(),
                        source: Box::new(source),
                    });
                }
            }
        }
    };
    let creds = credentials::from_secret(&secret).map_err(|reason| Error::Credentials {
        secret: spec.credentials_secret.clone(),
        reason,
    })?;
    Ok((secret, creds))
}

/// The cluster's data claims by ordinal (every one, also beyond `spec.replicas`: a claim is
/// never deleted by the operator).
///
/// # Errors
/// [`Error::Read`] when they cannot be listed.
pub async fn claims(
    client: &Client,
    names: &Names,
) -> Result<BTreeMap<u32, PersistentVolumeClaim>, Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &names.namespace);
    let list = api
        .list(&ListParams::default().labels(&names.managed_selector()))
        .await
        .map_err(read_error("PersistentVolumeClaim"))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|c| Some((names.ordinal_of_claim(&c.name_any())?, c)))
        .collect())
}

/// Whether the storage class `name` allows its volumes to grow: `Ok(None)` when the operator
/// may not read storage classes (a namespaced install without cluster scope) or the class does
/// not exist; the API server then decides when the claim is patched.
pub async fn expansion_allowed(client: &Client, name: &str) -> Option<bool> {
    let api: Api<StorageClass> = Api::all(client.clone());
    match api.get_opt(name).await {
        Ok(Some(class)) => Some(class.allow_volume_expansion.unwrap_or(false)),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(class = name, error = %e, "could not read the storage class");
            None
        }
    }
}
