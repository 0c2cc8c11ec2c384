//! Apply: the API calls that bring the built objects into the cluster. Server-side apply under
//! one field manager for the objects the operator owns whole (Services, the
//! PodDisruptionBudgets, the instances' ConfigMaps); create-if-missing for the objects that are
//! never updated in place (pods, which the engine replaces, and data claims, which only grow);
//! deletion of what the spec no longer asks for.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::names::{FIELD_MANAGER, Names};

/// Server-side applies `obj` (forcing ownership of its fields).
///
/// # Errors
/// [`Error::Apply`] naming the object.
pub async fn apply<K>(api: &Api<K>, obj: &K, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj))
        .await
        .map(drop)
        .map_err(|source| Error::Apply {
            kind,
            name,
            source: Box::new(source),
        })
}

/// Creates `obj` unless it exists (another reconcile may have created it since it was read).
///
/// # Errors
/// [`Error::Apply`] naming the object.
pub async fn create<K>(api: &Api<K>, obj: &K, kind: &'static str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), obj).await {
        Ok(created) => Ok(Some(created)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(source) => Err(Error::Apply {
            kind,
            name,
            source: Box::new(source),
        }),
    }
}

/// Deletes the object `name` (gone already is fine).
///
/// # Errors
/// [`Error::DeleteOrphan`] naming the object.
pub async fn delete<K>(api: &Api<K>, name: &str, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteOrphan {
            kind,
            name: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// Deletes every object of the cluster's managed kind `K` not named in `keep`.
///
/// # Errors
/// [`Error::Read`] when they cannot be listed, [`Error::DeleteOrphan`] when one cannot be
/// deleted.
pub async fn delete_orphans<K>(
    api: &Api<K>,
    names: &Names,
    keep: &[String],
    kind: &'static str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = api
        .list(&ListParams::default().labels(&names.managed_selector()))
        .await
        .map_err(|source| Error::Read {
            what: kind,
            source: Box::new(source),
        })?;
    for obj in list.items {
        let name = obj.meta().name.clone().unwrap_or_default();
        if !keep.contains(&name) {
            delete(api, &name, kind).await?;
        }
    }
    Ok(())
}

/// Grows claim `name` to `size` (the API server refuses when its class does not allow it).
///
/// # Errors
/// The API server's error.
pub async fn grow_claim(
    api: &Api<PersistentVolumeClaim>,
    name: &str,
    size: &str,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "spec": { "resources": { "requests": { "storage": size } } }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// Sets `labels` (a value of `None` removes the label) on pod `name` (gone is fine).
///
/// # Errors
/// The API server's error.
pub async fn label_pod(
    api: &Api<Pod>,
    name: &str,
    labels: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "metadata": { "labels": labels } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
