//! The apply step for a cluster's children: the Services and the PodDisruptionBudgets, each
//! instance's ConfigMap, data claim and pod, the credentials Secret's owners, and the
//! instances the spec no longer asks for.
//!
//! A pod is created, never updated: a missing pod is created from the revision the status
//! assigns to its instance (see [`crate::instances`]); replacing a pod on another revision is
//! the engine's restart. A replica's pod (and its claim) is created once the cluster was
//! initialized and either a donor exists or its claim already existed (its data is there). A
//! replica whose data directory is empty and whose agent has nothing to provision from is
//! moved to the primary's revision (the primary can then be its donor), and a pod whose agent
//! started without a donor is recreated once one exists. Scale-down takes the highest
//! ordinals out of the read Service, then deletes their pods; their claims stay.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::agent::Provisioning;
use crate::apply;
use crate::build;
use crate::context::Context;
use crate::crd::MySQLCluster;
use crate::error::{Error, status_error};
use crate::fetch;
use crate::instances::{self, InstancePlan};
use crate::names::{
    ANNOTATION_DONOR, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_SERVING, Names,
};
use crate::runtime::KubeRuntime;
use crate::storage;
use crate::validate::ValidSpec;

/// What the apply step could not do, for the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The `StorageNotApplied` reason and message, when part of `spec.storage` could not be
    /// applied to the existing claims.
    pub storage: Option<(&'static str, String)>,
    /// Ordinals whose pods were created.
    pub created: Vec<u32>,
    /// Ordinals moved to the primary's revision because their data is gone and nothing could
    /// provision them on their own.
    pub reassigned: Vec<u32>,
}

fn api<K>(ctx: &Context, names: &Names) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(ctx.client.clone(), &names.namespace)
}

/// Applies the cluster's children (see the module doc).
///
/// # Errors
/// The API errors of the objects the cluster cannot do without (Services, ConfigMaps, claims,
/// pods); a claim that cannot grow only goes into [`Applied::storage`].
pub async fn apply_children(
    ctx: &Context,
    runtime: &KubeRuntime,
    spec: &ValidSpec,
    plans: &[InstancePlan],
    claims: &BTreeMap<u32, PersistentVolumeClaim>,
    secret: &Secret,
) -> Result<Applied, Error> {
    let cluster = runtime.cluster();
    let names = Names::of(&cluster);
    let mut applied = Applied::default();

    let services: Api<Service> = api(ctx, &names);
    let built = build::services(&cluster);
    for svc in &built {
        apply::apply(&services, svc, "Service").await?;
    }
    let keep: Vec<String> = built.iter().map(ResourceExt::name_any).collect();
    apply::delete_orphans(&services, &names, &keep, "Service").await?;
    // The budgets; the single budget named after the cluster that earlier versions made
    // goes as an orphan.
    let pdbs: Api<PodDisruptionBudget> = api(ctx, &names);
    let built = build::pod_disruption_budgets(&cluster);
    for pdb in &built {
        apply::apply(&pdbs, pdb, "PodDisruptionBudget").await?;
    }
    let keep: Vec<String> = built.iter().map(ResourceExt::name_any).collect();
    apply::delete_orphans(&pdbs, &names, &keep, "PodDisruptionBudget").await?;

    // Each instance's my.cnf and instance.json before its pod: the agent reads them at start.
    let config_maps: Api<ConfigMap> = api(ctx, &names);
    for plan in plans {
        let cm =
            build::instance_config_map(&cluster, spec, plan.ordinal, &plan.entry, &plan.config);
        apply::apply(&config_maps, &cm, "ConfigMap").await?;
    }
    let keep: Vec<String> = plans.iter().map(|p| names.config_map(p.ordinal)).collect();
    apply::delete_orphans(&config_maps, &names, &keep, "ConfigMap").await?;

    applied.storage = grow_claims(ctx, &cluster, claims).await;

    // Claims, then pods.
    let status = cluster.status.clone().unwrap_or_default();
    let primary = instances::primary_of(&status);
    let seen = runtime.seen();
    let claim_api: Api<PersistentVolumeClaim> = api(ctx, &names);
    let pod_api: Api<Pod> = api(ctx, &names);
    let mut all_claims = claims.clone();
    for plan in plans {
        let o = plan.ordinal;
        let exists = seen.get(&o).is_some_and(|s| s.pod.is_some());
        if exists {
            continue;
        }
        // A Galera node joins once the cluster was started (it gets its data by SST).
        let may_create = o == primary
            || plan.config.bootstrap
            || (status.initialized
                && (plan.donor.is_some()
                    || claims.contains_key(&o)
                    || plan.config.galera.is_some()));
        if !may_create {
            continue;
        }
        if !all_claims.contains_key(&o)
            && let Some(c) = apply::create(
                &claim_api,
                &build::claim(&cluster, o),
                "PersistentVolumeClaim",
            )
            .await?
        {
            all_claims.insert(o, c);
        }
        let pod = build::pod(&cluster, spec, o, &plan.entry, plan.donor, &ctx.agent_image);
        if apply::create(&pod_api, &pod, "Pod").await?.is_some() {
            applied.created.push(o);
        }
    }
    own_secret(ctx, &names, secret, &all_claims).await?;

    // Replicas whose data is gone.
    // (A Galera node's data comes from its peers: nothing to do here.)
    for plan in plans
        .iter()
        .filter(|p| p.ordinal != primary && p.config.galera.is_none())
    {
        let Some(s) = seen.get(&plan.ordinal) else {
            continue;
        };
        let (Some(pod), Some(Ok(agent))) = (&s.pod, &s.agent) else {
            continue;
        };
        if s.pod_ready || !agent.empty() || agent.provisioning != Provisioning::Idle {
            continue;
        }
        match plan.donor {
            None => {
                let to = instances::assigned(&status, primary);
                if let Some(to) = to.filter(|t| *t != plan.entry.number) {
                    reassign(runtime, plan.ordinal, to).await?;
                    applied.reassigned.push(plan.ordinal);
                }
            }
            Some(_)
                if pod.annotations().get(ANNOTATION_DONOR).map(String::as_str) == Some("none") =>
            {
                // Its agent started before a donor existed: it reads instance.json again when
                // its pod is recreated.
                apply::delete(&pod_api, &pod.name_any(), "Pod").await?;
            }
            Some(_) => {}
        }
    }

    // Scale-down: out of the read Service first, then gone; the claims stay.
    let listed = pod_api
        .list(&ListParams::default().labels(&names.pod_selector()))
        .await
        .map_err(|source| Error::Read {
            what: "Pod",
            source: Box::new(source),
        })?;
    let mut beyond: Vec<(u32, String)> = listed
        .items
        .iter()
        .filter_map(|p| Some((names.ordinal_of(&p.name_any())?, p.name_any())))
        .filter(|(o, _)| *o >= spec.replicas)
        .collect();
    beyond.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    for (_, name) in beyond {
        apply::label_pod(&pod_api, &name, serde_json::json!({ LABEL_SERVING: null }))
            .await
            .map_err(|source| Error::Apply {
                kind: "Pod",
                name: name.clone(),
                source: Box::new(source),
            })?;
        apply::delete(&pod_api, &name, "Pod").await?;
    }
    Ok(applied)
}

async fn reassign(runtime: &KubeRuntime, ordinal: u32, to: u64) -> Result<(), Error> {
    let mut status = runtime.cluster().status.unwrap_or_default();
    if let Some(i) = status.instances.iter_mut().find(|i| i.ordinal == ordinal) {
        i.revision = Some(to);
    }
    runtime.write_status(status).await.map_err(status_error)?;
    tracing::info!(
        instance = ordinal,
        revision = to,
        "an empty replica with no donor of its version moves to the primary's revision"
    );
    Ok(())
}

/// Grows the claims the spec asks to grow (where their class allows it) and reports what of
/// `spec.storage` could not be applied.
async fn grow_claims(
    ctx: &Context,
    cluster: &MySQLCluster,
    claims: &BTreeMap<u32, PersistentVolumeClaim>,
) -> Option<(&'static str, String)> {
    let names = Names::of(cluster);
    let desired = build::storage_spec(cluster);
    let plan = storage::plan(&desired, claims);
    let claim_api: Api<PersistentVolumeClaim> = api(ctx, &names);
    let mut refused = Vec::new();
    for (claim, class, size) in &plan.grow {
        if let Some(class) = class
            && fetch::expansion_allowed(&ctx.client, class).await == Some(false)
        {
            refused.push((
                claim.clone(),
                format!("its storage class {class} does not allow volume expansion"),
            ));
            continue;
        }
        if let Err(e) = apply::grow_claim(&claim_api, claim, size).await {
            refused.push((claim.clone(), format!("the API server refused: {e}")));
        }
    }
    storage::message(&plan, &desired, &refused)
}

/// Lists the cluster's claims as the owners of the credentials Secret the operator generated,
/// so that it goes only with the last of them (a Secret someone else made is left alone).
async fn own_secret(
    ctx: &Context,
    names: &Names,
    secret: &Secret,
    claims: &BTreeMap<u32, PersistentVolumeClaim>,
) -> Result<(), Error> {
    let labels = secret.labels();
    let ours = labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(FIELD_MANAGER)
        && labels.get(LABEL_INSTANCE) == Some(&names.cluster);
    if !ours || claims.is_empty() {
        return Ok(());
    }
    let claims: Vec<PersistentVolumeClaim> = claims.values().cloned().collect();
    let owners = build::secret_owners(&claims);
    if secret.metadata.owner_references.as_ref() == Some(&owners) {
        return Ok(());
    }
    let secrets: Api<Secret> = api(ctx, names);
    let patch = serde_json::json!({ "metadata": { "ownerReferences": owners } });
    secrets
        .patch(
            &secret.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(drop)
        .map_err(|source| Error::Apply {
            kind: "Secret",
            name: secret.name_any(),
            source: Box::new(source),
        })
}
