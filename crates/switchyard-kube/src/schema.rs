//! [`SchemaChange`] resources: the pre-flight, the hand-over to the cluster's engine, and the
//! progress each instance reports.
//!
//! A `SchemaChange` names a `MySQLCluster` in its namespace and one `ALTER TABLE`.
//! [`reconcile_schema_change`] judges it once per generation against the primary's current
//! definition of the table (switchyard-ddl's analyzer, as the local runtime does): an unsafe
//! change without `force` and a stated `acceptedRisk` is `Refused` with each unsafe clause and
//! its rule, and nothing runs. An accepted change records its id, the definition it starts
//! from and the replica settings it needs in its status; the `MySQLCluster` reconcile then
//! puts it in the engine's target ([`active_for`]), and the engine rolls it (replicas first,
//! then the primary) through the Kubernetes runtime's `run_ddl`.
//!
//! Each instance's progress is the annotation [`ANNOTATION_SCHEMA`] on its pod, written by
//! `run_ddl` once the table has the new shape: it survives operator restarts. A recreated pod
//! loses it; the engine then runs the change on that instance again, which finds the table
//! already changed and only writes the annotation back.
//!
//! One change runs at a time per cluster: the oldest accepted, incomplete one. Another
//! waits (phase `Waiting`, condition `Progressing` false, reason `WaitingForOtherChange`)
//! before its pre-flight, so that it is judged against the definition the running change
//! leaves.
//!
//! On a replica, the replica type-conversion settings a change needs are set before its
//! ALTER; their previous global values are saved first on the pod
//! ([`ANNOTATION_CONVERSION_PREVIOUS`], kept across operator restarts; a second run keeps the
//! first save). Once every instance has the change, each replica applies what the primary
//! wrote, the saved values are set back and the annotation removed; only then is the change
//! `Complete`. A recreated pod loses the annotation, and its server starts from its
//! configuration, so there is nothing to put back.
//!
//! The `MySQLCluster` reconcile reconciles the cluster's `SchemaChange`s at its start and end
//! ([`reconcile_for_cluster`]); the controller watches `SchemaChange`s and reconciles the
//! cluster a change names when it is created or edited. [`reconcile_schema_change`]
//! reconciles one change alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use switchyard_ddl::{AnalyzeOptions, Verdict};
use switchyard_plan::decide::SchemaTarget;

use crate::context::{ACTIVE_REQUEUE, Context, SAFETY_REQUEUE};
use crate::crd::{
    MySQLCluster, SchemaChange, SchemaChangeStatus, SchemaInstanceStatus, SchemaMethod,
};
use crate::error::{Error, is_conflict};
use crate::fetch::credentials;
use crate::names::Names;
pub use crate::names::{ANNOTATION_CONVERSION_PREVIOUS, ANNOTATION_SCHEMA};
use crate::ops::Target;
use crate::status::set_condition;
use crate::validate::validate;

/// How long a schema change's ALTER waits for a metadata lock before it gives up (error 1205)
/// instead of stalling every query queued behind it.
pub const DDL_LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long a replica may take to apply what the primary wrote after its ALTER.
pub const DDL_CATCH_UP: Duration = Duration::from_secs(60);

/// What [`ANNOTATION_CONVERSION_PREVIOUS`] holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedSettings {
    /// The change that saved them.
    pub change: String,
    /// Variable name -> its global value before the change (empty for NULL).
    pub values: BTreeMap<String, String>,
}

impl SavedSettings {
    /// Reads the annotation's text.
    ///
    /// # Errors
    /// The JSON error when the text is not a [`SavedSettings`].
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The annotation's text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The condition types a `SchemaChange` reports.
pub mod types {
    /// The pre-flight passed; the change is handed to the cluster's engine.
    pub const ACCEPTED: &str = "Accepted";
    /// The pre-flight refused the change; nothing ran.
    pub const REFUSED: &str = "Refused";
    /// The change is rolling (false while it waits for another change).
    pub const PROGRESSING: &str = "Progressing";
    /// Every instance has the change.
    pub const COMPLETE: &str = "Complete";
    /// The cluster's engine halted the change; it needs a person.
    pub const HALTED: &str = "Halted";
}

/// An accepted change as the engine and the runtime need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The engine's schema target.
    pub target: SchemaTarget,
    /// The table's definition on the primary when the change was accepted.
    pub before: String,
}

fn is_true(status: &SchemaChangeStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the change's pre-flight passed for its current generation and it is not finished.
fn active(sc: &SchemaChange) -> bool {
    let Some(status) = &sc.status else {
        return false;
    };
    status.observed_generation == sc.metadata.generation
        && is_true(status, types::ACCEPTED)
        && !is_true(status, types::COMPLETE)
        && !is_true(status, types::HALTED)
}

fn prepared_of(sc: &SchemaChange) -> Option<Prepared> {
    let status = sc.status.as_ref()?;
    Some(Prepared {
        target: SchemaTarget {
            id: status.id.clone()?,
            statement: sc.spec.statement.trim().to_owned(),
            replica_settings: status
                .replica_settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            primary_online: status.primary_online,
        },
        before: status.before.clone()?,
    })
}

async fn changes_of(client: &Client, names: &Names) -> Vec<SchemaChange> {
    let api: Api<SchemaChange> = Api::namespaced(client.clone(), &names.namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            let mut items: Vec<SchemaChange> = list
                .items
                .into_iter()
                .filter(|sc| sc.spec.cluster_ref == names.cluster)
                .collect();
            items.sort_by_key(|sc| {
                (
                    sc.metadata.creation_timestamp.clone().map(|t| t.0),
                    sc.name_any(),
                )
            });
            items
        }
        Err(e) => {
            // Without the resource (CRD not installed) there is no schema change to run.
            tracing::debug!(error = %e, "could not list SchemaChanges");
            Vec::new()
        }
    }
}

/// The accepted, incomplete schema change of the cluster, if any (the oldest one).
pub async fn active_for(client: &Client, names: &Names) -> Option<Prepared> {
    changes_of(client, names)
        .await
        .iter()
        .filter(|sc| active(sc))
        .find_map(prepared_of)
}

/// Reconciles every `SchemaChange` of `cluster` (errors are logged: a schema change never
/// stops the cluster's own reconcile).
pub async fn reconcile_for_cluster(ctx: &Context, cluster: &MySQLCluster) {
    let names = Names::of(cluster);
    for sc in changes_of(&ctx.client, &names).await {
        if let Err(e) = reconcile_one(&sc, Some(cluster), ctx).await {
            tracing::warn!(schema_change = %sc.name_any(), error = %e, "schema change reconcile");
        }
    }
}

/// Reconciles one `SchemaChange`: the pre-flight once per generation, then the progress each
/// instance reports.
///
/// # Errors
/// [`Error::Read`] when the cluster cannot be read, [`Error::Conflict`] or
/// [`Error::WriteStatus`] when the status cannot be written.
pub async fn reconcile_schema_change(
    sc: Arc<SchemaChange>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = sc.namespace().unwrap_or_default();
    let clusters: Api<MySQLCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let cluster = clusters
        .get_opt(&sc.spec.cluster_ref)
        .await
        .map_err(|source| Error::Read {
            what: "MySQLCluster",
            source: Box::new(source),
        })?;
    reconcile_one(&sc, cluster.as_ref(), &ctx).await
}

fn now_time(ctx: &Context) -> Time {
    ctx.now_time()
}

async fn reconcile_one(
    sc: &SchemaChange,
    cluster: Option<&MySQLCluster>,
    ctx: &Context,
) -> Result<Action, Error> {
    let generation = sc.metadata.generation;
    let now = now_time(ctx);
    let old = sc.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let fresh = old.observed_generation != generation;
    let refused = !fresh && is_true(&old, types::REFUSED);
    let accepted = !fresh && is_true(&old, types::ACCEPTED);
    let action = if refused || (!fresh && is_true(&old, types::COMPLETE)) {
        Action::await_change()
    } else if let Some(cluster) = cluster {
        if accepted {
            progress(sc, cluster, ctx, &mut status, &now).await?;
            Action::requeue(ACTIVE_REQUEUE)
        } else {
            if fresh {
                status = SchemaChangeStatus {
                    conditions: status.conditions,
                    ..SchemaChangeStatus::default()
                };
                status.observed_generation = generation;
            }
            preflight(sc, cluster, ctx, &mut status, &now).await?
        }
    } else {
        status.observed_generation = generation;
        status.phase = Some("Pending".into());
        set_condition(
            &mut status.conditions,
            types::ACCEPTED,
            false,
            "ClusterNotFound",
            format!(
                "no MySQLCluster {} in namespace {}: create it or fix spec.clusterRef",
                sc.spec.cluster_ref,
                sc.namespace().unwrap_or_default()
            ),
            generation,
            &now,
        );
        Action::requeue(SAFETY_REQUEUE)
    };
    if status != old {
        write(ctx, sc, status).await?;
    }
    Ok(action)
}

async fn write(ctx: &Context, sc: &SchemaChange, status: SchemaChangeStatus) -> Result<(), Error> {
    let api: Api<SchemaChange> =
        Api::namespaced(ctx.client.clone(), &sc.namespace().unwrap_or_default());
    let mut obj = sc.clone();
    obj.status = Some(status);
    obj.metadata.managed_fields = None;
    api.replace_status(&obj.name_any(), &PostParams::default(), &obj)
        .await
        .map(drop)
        .map_err(|e| {
            if is_conflict(&e) {
                Error::Conflict
            } else {
                Error::WriteStatus(Box::new(e))
            }
        })
}

fn refuse(
    status: &mut SchemaChangeStatus,
    sc: &SchemaChange,
    reason: &str,
    message: String,
    now: &Time,
) -> Action {
    let generation = sc.metadata.generation;
    status.phase = Some("Refused".into());
    set_condition(
        &mut status.conditions,
        types::REFUSED,
        true,
        reason,
        message.clone(),
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        types::ACCEPTED,
        false,
        reason,
        message,
        generation,
        now,
    );
    Action::await_change()
}

fn pending(
    status: &mut SchemaChangeStatus,
    sc: &SchemaChange,
    reason: &str,
    message: String,
    now: &Time,
) {
    status.phase = Some("Pending".into());
    set_condition(
        &mut status.conditions,
        types::ACCEPTED,
        false,
        reason,
        message,
        sc.metadata.generation,
        now,
    );
}

async fn preflight(
    sc: &SchemaChange,
    cluster: &MySQLCluster,
    ctx: &Context,
    status: &mut SchemaChangeStatus,
    now: &Time,
) -> Result<Action, Error> {
    let generation = sc.metadata.generation;
    let names = Names::of(cluster);
    let statement = sc.spec.statement.trim().to_owned();
    if sc.spec.method == SchemaMethod::Toi {
        return Ok(refuse(
            status,
            sc,
            "MethodUnsupported",
            "method toi (total order isolation, every node at once, blocking writes to the \
             table) is for Galera clusters, which this operator does not manage: use auto or \
             rolling"
                .into(),
            now,
        ));
    }
    if sc.spec.force
        && sc
            .spec
            .accepted_risk
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        return Ok(refuse(
            status,
            sc,
            "RiskNotStated",
            "force needs acceptedRisk: the risk you accept, in words (for example \"replicas \
             may stop applying until repaired\")"
                .into(),
            now,
        ));
    }
    // One change at a time: wait for the running one, then judge against what it leaves.
    if let Some(other) = changes_of(&ctx.client, &names)
        .await
        .into_iter()
        .find(|o| o.name_any() != sc.name_any() && active(o))
    {
        status.phase = Some("Waiting".into());
        set_condition(
            &mut status.conditions,
            types::PROGRESSING,
            false,
            "WaitingForOtherChange",
            format!(
                "SchemaChange {} is running on cluster {}: this one starts when it is complete",
                other.name_any(),
                names.cluster
            ),
            generation,
            now,
        );
        return Ok(Action::requeue(ACTIVE_REQUEUE * 5));
    }
    let spec = match validate(&names.cluster, &cluster.spec) {
        Ok(spec) => spec,
        Err(invalid) => {
            pending(
                status,
                sc,
                "ClusterInvalid",
                format!("the cluster's spec is invalid: {invalid}"),
                now,
            );
            return Ok(Action::requeue(SAFETY_REQUEUE));
        }
    };
    let Some(primary) = cluster.status.as_ref().and_then(|s| s.current_primary) else {
        pending(
            status,
            sc,
            "ClusterNotReady",
            format!("cluster {} has no primary yet", names.cluster),
            now,
        );
        return Ok(Action::requeue(ACTIVE_REQUEUE * 5));
    };
    let name = match switchyard_ddl::alter_table_name(spec.flavor, &statement) {
        Ok(name) => name,
        Err(e) => {
            return Ok(refuse(
                status,
                sc,
                "InvalidStatement",
                format!("`{statement}`: {e}"),
                now,
            ));
        }
    };
    let Some(database) = name.schema.clone() else {
        return Ok(refuse(
            status,
            sc,
            "InvalidStatement",
            format!(
                "`{statement}` does not name the table's database: write ALTER TABLE db.{} ...",
                name.name
            ),
            now,
        ));
    };
    let creds = credentials(&ctx.client, cluster, &spec).await?;
    let ops = ctx.ops.ops(&names.namespace, &creds);
    let (host, port) = (ctx.resolver)(&names, primary);
    let target = Target {
        namespace: names.namespace.clone(),
        cluster: names.cluster.clone(),
        ordinal: primary,
        pod: names.pod(primary),
        host,
        port,
    };
    let before = match ops.show_create_table(&target, &database, &name.name).await {
        Ok(text) => text,
        Err(e) => {
            pending(
                status,
                sc,
                "TableUnreadable",
                format!(
                    "could not read {database}.{} on the primary ({}): {}",
                    name.name, target.pod, e.message
                ),
                now,
            );
            return Ok(Action::requeue(ACTIVE_REQUEUE * 5));
        }
    };
    let options = AnalyzeOptions::default().with_server_version(spec.version);
    let analysis = match switchyard_ddl::analyze_with(spec.flavor, &before, &statement, &options) {
        Ok(a) => a,
        Err(e) => {
            return Ok(refuse(
                status,
                sc,
                "InvalidStatement",
                format!("`{statement}`: {e}"),
                now,
            ));
        }
    };
    if analysis.verdict == Verdict::Unsafe && !sc.spec.force {
        let reasons: Vec<String> = analysis
            .clauses
            .iter()
            .filter(|c| c.verdict == Verdict::Unsafe)
            .map(|c| format!("`{}`: {} [{}]", c.clause, c.reason, c.rule))
            .chain(
                analysis
                    .reasons
                    .iter()
                    .filter(|r| !r.starts_with('`'))
                    .cloned(),
            )
            .collect();
        return Ok(refuse(
            status,
            sc,
            "Unsafe",
            format!(
                "the change is unsafe for a rolling change under row-based replication: {}; \
                 rewrite it, or set force with acceptedRisk",
                reasons.join("; ")
            ),
            now,
        ));
    }
    if let Some(risk) = sc.spec.accepted_risk.as_deref().filter(|_| sc.spec.force) {
        tracing::warn!(schema_change = %sc.name_any(), risk, "an unsafe schema change is forced");
    }
    status.id = Some(format!("{}-g{}", sc.name_any(), generation.unwrap_or(0)));
    status.before = Some(before);
    status.replica_settings = analysis.settings.clone();
    status.primary_online = analysis.primary == switchyard_ddl::PrimaryMode::Online;
    status.instances = (0..spec.replicas)
        .map(|ordinal| SchemaInstanceStatus {
            ordinal,
            state: "pending".into(),
            message: String::new(),
        })
        .collect();
    status.phase = Some("Progressing".into());
    let how = if status.primary_online {
        "replicas one at a time, then the primary in place"
    } else {
        "replicas one at a time, then the primary after a switchover"
    };
    set_condition(
        &mut status.conditions,
        types::REFUSED,
        false,
        "Accepted",
        "",
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        types::ACCEPTED,
        true,
        if sc.spec.force { "Forced" } else { "Safe" },
        format!("verdict {:?}: {how}", analysis.verdict),
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        types::PROGRESSING,
        true,
        "Rolling",
        how,
        generation,
        now,
    );
    Ok(Action::requeue(ACTIVE_REQUEUE))
}

/// Reads each instance's progress from its pod, and the cluster's halt.
async fn progress(
    sc: &SchemaChange,
    cluster: &MySQLCluster,
    ctx: &Context,
    status: &mut SchemaChangeStatus,
    now: &Time,
) -> Result<(), Error> {
    let generation = sc.metadata.generation;
    let names = Names::of(cluster);
    let Some(id) = status.id.clone() else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let list = pods
        .list(&ListParams::default().labels(&names.pod_selector()))
        .await
        .map_err(|source| Error::Read {
            what: "Pod",
            source: Box::new(source),
        })?;
    let mut has: BTreeMap<u32, bool> = BTreeMap::new();
    for pod in &list.items {
        if let Some(o) = names.ordinal_of(&pod.name_any()) {
            has.insert(o, pod.annotations().get(ANNOTATION_SCHEMA) == Some(&id));
        }
    }
    let replicas = u32::try_from(cluster.spec.replicas.max(1)).unwrap_or(1);
    let halt = cluster.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == crate::status::types::HALTED && c.status == "True")
            .map(|c| c.message.clone())
    });
    status.instances = (0..replicas)
        .map(|ordinal| {
            let altered = has.get(&ordinal).copied().unwrap_or(false);
            let (state, message) = match (&halt, altered) {
                (_, true) => ("altered", String::new()),
                (Some(m), false) if m.contains(&format!("instance {ordinal}")) => {
                    ("failed", m.clone())
                }
                _ => ("pending", String::new()),
            };
            SchemaInstanceStatus {
                ordinal,
                state: state.into(),
                message,
            }
        })
        .collect();
    let all_altered = status.instances.iter().all(|i| i.state == "altered");
    let restored = if all_altered {
        restore_settings(cluster, ctx, &list.items).await
    } else {
        Ok(())
    };
    if let Err(message) = restored {
        tracing::warn!(schema_change = %sc.name_any(), %message, "restoring replica settings");
        set_condition(
            &mut status.conditions,
            types::PROGRESSING,
            true,
            "RestoringSettings",
            format!(
                "every instance has the change; the replica settings it replaced are not set \
                 back yet (retrying): {message}"
            ),
            generation,
            now,
        );
    } else if all_altered {
        status.phase = Some("Complete".into());
        set_condition(
            &mut status.conditions,
            types::PROGRESSING,
            false,
            "Complete",
            "",
            generation,
            now,
        );
        set_condition(
            &mut status.conditions,
            types::COMPLETE,
            true,
            "Complete",
            format!("every instance ({replicas}) has the change"),
            generation,
            now,
        );
    } else if let Some(message) = halt {
        status.phase = Some("Halted".into());
        set_condition(
            &mut status.conditions,
            types::HALTED,
            true,
            "ClusterHalted",
            format!("the cluster's rollout halted: {message}"),
            generation,
            now,
        );
    }
    Ok(())
}

/// Once every instance has the change: lets each replica that saved settings apply what the
/// primary wrote (old-shape rows included), then sets the saved values back on each instance
/// and removes its [`ANNOTATION_CONVERSION_PREVIOUS`]. Idempotent: an interrupted restore
/// sets the values again. A message naming what failed otherwise.
async fn restore_settings(
    cluster: &MySQLCluster,
    ctx: &Context,
    pods: &[Pod],
) -> Result<(), String> {
    let names = Names::of(cluster);
    let mut saved: Vec<(u32, String, SavedSettings)> = Vec::new();
    for pod in pods {
        let (Some(ordinal), Some(text)) = (
            names.ordinal_of(&pod.name_any()),
            pod.annotations().get(ANNOTATION_CONVERSION_PREVIOUS),
        ) else {
            continue;
        };
        let settings = SavedSettings::parse(text).map_err(|e| {
            format!(
                "pod {} has an unreadable annotation {ANNOTATION_CONVERSION_PREVIOUS} ({e}): set \
                 the replica settings back by hand and remove the annotation",
                pod.name_any()
            )
        })?;
        saved.push((ordinal, pod.name_any(), settings));
    }
    if saved.is_empty() {
        return Ok(());
    }
    let spec = validate(&names.cluster, &cluster.spec)
        .map_err(|e| format!("the cluster's spec is invalid: {e}"))?;
    let primary = cluster
        .status
        .as_ref()
        .and_then(|s| s.current_primary)
        .ok_or_else(|| format!("cluster {} has no primary", names.cluster))?;
    let creds = credentials(&ctx.client, cluster, &spec)
        .await
        .map_err(|e| e.to_string())?;
    let ops = ctx.ops.ops(&names.namespace, &creds);
    let target = |ordinal: u32| {
        let (host, port) = (ctx.resolver)(&names, ordinal);
        Target {
            namespace: names.namespace.clone(),
            cluster: names.cluster.clone(),
            ordinal,
            pod: names.pod(ordinal),
            host,
            port,
        }
    };
    for (ordinal, pod, _) in saved.iter().filter(|(o, _, _)| *o != primary) {
        let replica = ops
            .observe(&target(*ordinal), None)
            .await
            .map_err(|e| format!("could not observe {pod}: {}", e.message))?;
        if replica.replication.is_some() {
            let until = std::time::Instant::now() + DDL_CATCH_UP;
            ops.wait_caught_up(&target(*ordinal), &target(primary), until)
                .await
                .map_err(|e| {
                    format!("{pod} has not applied the primary's writes: {}", e.message)
                })?;
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    for (ordinal, pod, settings) in &saved {
        let pairs: Vec<(String, String)> = settings
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ops.set_variables(&target(*ordinal), &pairs)
            .await
            .map_err(|e| {
                format!(
                    "could not set the saved values back on {pod}: {}",
                    e.message
                )
            })?;
        let patch = serde_json::json!({
            "metadata": { "annotations": { ANNOTATION_CONVERSION_PREVIOUS: null } }
        });
        api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("could not remove the saved values from {pod}: {e}"))?;
    }
    Ok(())
}
