//! The reconciler: fetch → validate → build → apply → one engine step → status.
//!
//! Every reconcile runs at most one engine step and returns; long waits (a pod starting, a
//! drain grace, a backoff) become requeues. Everything the engine needs to resume lives in
//! the status, so an operator restart (or a new leader) continues where the last one
//! stopped, and every status write is conditional on the resource version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_plan::decide::{Approval, HaltReason, Policy, Target as PlanTarget, decide};
use switchyard_plan::engine::{ClusterRuntime, Engine, StepOutcome};
use switchyard_plan::record::{Intent, SwitchoverStep};
use switchyard_plan::versions::catalog;
use switchyard_plan::{
    Action as PlanAction, Observed, Record, Revision, Role, Timestamp, WaitReason,
};

use crate::build::{
    self, ClusterCredentials, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, Names, keys,
};
use crate::change::{self, Resolved, Verdict};
use crate::crd::{InstanceStatus, LastSwitchover, MySQLCluster, MySQLClusterStatus, Revisions};
use crate::error::{Error, is_conflict};
use crate::leader::Tenure;
use crate::metrics::Metrics;
use crate::ops::InstanceOps;
use crate::runtime::{Clock, KubeRuntime, Resolver};
use crate::status::{
    ANNOTATION_APPROVE, ANNOTATION_SWITCHOVER_TO, parse_approval, set_condition, types,
};
use crate::validate::{ValidSpec, validate};

/// How many revisions the status history keeps.
pub const REVISION_HISTORY: usize = 16;
/// The safety requeue after a reconcile with nothing to do.
pub const SAFETY_REQUEUE: Duration = Duration::from_secs(300);
/// The requeue while a rollout or bootstrap is under way.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(2);

/// Builds the instance operations for a cluster from its credentials.
pub trait OpsFactory: Send + Sync {
    /// Operations on the instances of the cluster in `namespace`.
    fn ops(&self, namespace: &str, creds: &ClusterCredentials) -> Arc<dyn InstanceOps>;
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Builds instance operations.
    pub ops: Arc<dyn OpsFactory>,
    /// Resolves instance addresses.
    pub resolver: Resolver,
    /// The clock.
    pub clock: Clock,
    /// The one event recorder.
    pub recorder: Recorder,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// This operator replica's leadership, when it is elected on a lease: the engine
    /// confirms it before every action that changes a server, and a cluster whose
    /// switchover does not fit the lease is refused (see [`crate::leader`]). `None` for an
    /// engine that runs alone.
    pub tenure: Option<Arc<Tenure>>,
}

fn now_time(clock: &Clock) -> Time {
    let ms = i64::try_from(clock().0).unwrap_or(i64::MAX);
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

fn ts_time(t: Timestamp) -> Time {
    let ms = i64::try_from(t.0).unwrap_or(i64::MAX);
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

async fn publish(
    ctx: &Context,
    cluster: &MySQLCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(reason, error = %e, "could not publish an event");
    }
}

async fn apply<K>(api: &Api<K>, obj: &K, kind: &'static str) -> Result<(), Error>
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

async fn delete_orphans<K>(
    api: &Api<K>,
    names: &Names,
    keep: &[String],
    kind: &'static str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let selector = format!(
        "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
        names.cluster
    );
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            what: kind,
            source: Box::new(source),
        })?;
    for obj in list.items {
        let name = obj.meta().name.clone().unwrap_or_default();
        if !keep.contains(&name) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::DeleteOrphan {
                        kind,
                        name,
                        source: Box::new(source),
                    });
                }
            }
        }
    }
    Ok(())
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Reads the credentials Secret, creating it with random passwords when it is absent.
pub(crate) async fn credentials(
    client: &Client,
    cluster: &MySQLCluster,
    spec: &ValidSpec,
) -> Result<ClusterCredentials, Error> {
    let names = Names::of(cluster);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let secret = match secrets.get_opt(&spec.credentials_secret).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let generated = build::generate_credentials();
            let obj = build::credentials_secret(cluster, spec, &generated);
            match secrets.create(&PostParams::default(), &obj).await {
                Ok(s) => s,
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 409) => secrets
                    .get(&spec.credentials_secret)
                    .await
                    .map_err(|source| Error::Read {
                        what: "Secret",
                        source: Box::new(source),
                    })?,
                Err(source) => {
                    return Err(Error::Apply {
                        kind: "Secret",
                        name: spec.credentials_secret.clone(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Err(source) => {
            return Err(Error::Read {
                what: "Secret",
                source: Box::new(source),
            });
        }
    };
    let get = |key: &str| {
        secret_text(&secret, key).ok_or_else(|| Error::Credentials {
            secret: spec.credentials_secret.clone(),
            reason: format!("the key {key} is missing or not UTF-8"),
        })
    };
    let creds = ClusterCredentials {
        root_password: get(keys::ROOT_PASSWORD)?,
        operator_user: get(keys::OPERATOR_USER)?,
        operator_password: get(keys::OPERATOR_PASSWORD)?,
        replication_user: get(keys::REPLICATION_USER)?,
        replication_password: get(keys::REPLICATION_PASSWORD)?,
    };
    for (what, user) in [
        ("operator-user", &creds.operator_user),
        ("replication-user", &creds.replication_user),
    ] {
        if switchyard_mysql::sql::validate_user(user).is_err() {
            return Err(Error::Credentials {
                secret: spec.credentials_secret.clone(),
                reason: format!("{what} must be letters, digits, '_', '-' or '.'"),
            });
        }
    }
    for (what, pw) in [
        ("operator-password", &creds.operator_password),
        ("replication-password", &creds.replication_password),
    ] {
        if switchyard_mysql::sql::validate_password(pw).is_err() {
            return Err(Error::Credentials {
                secret: spec.credentials_secret.clone(),
                reason: format!(
                    "{what} must be 1 to 32 printable ASCII characters other than ' and \\"
                ),
            });
        }
    }
    Ok(creds)
}

fn refused_message(refused: u64, undone_by: u64, message: &str) -> String {
    format!(
        "revision {refused} was refused by an instance and is undone by revision {undone_by}: \
         {message}; change spec.config"
    )
}

fn is_blocking(reason: &HaltReason) -> bool {
    matches!(
        reason,
        HaltReason::ForbiddenTransition { .. }
            | HaltReason::BelowHighestVersion { .. }
            | HaltReason::UnknownVersion { .. }
    )
}

fn camel(category: &str) -> String {
    category
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn policy(spec: &ValidSpec, record: &Record, approval: Option<Approval>) -> Policy {
    let mut halt_after = spec.halt_after;
    if matches!(
        record.intent,
        Some(Intent::Restarting { .. } | Intent::Drained { .. })
    ) {
        // A restarted instance may take startupTimeout to start (data dictionary upgrade).
        halt_after = halt_after.max(spec.startup_timeout);
    }
    Policy {
        strategy: spec.strategy,
        max_lag_seconds: spec.max_lag_seconds,
        halt_after,
        switchover_deadline: spec.switchover_deadline,
        drain: spec.drain,
        retry_backoff: Duration::from_secs(10),
        approval,
    }
}

/// Reconciles one `MySQLCluster`.
pub async fn reconcile(cluster: Arc<MySQLCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&cluster, &ctx).await;
    if let Err(e) = &result {
        ctx.metrics.error(e.category());
    }
    result
}

async fn reconcile_inner(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    let names = Names::of(cluster);
    let clusters: Api<MySQLCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let generation = cluster.metadata.generation;
    let now = now_time(&ctx.clock);
    let old_status = cluster.status.clone().unwrap_or_default();

    // Validate: an invalid spec changes nothing but the InvalidSpec condition. So does a
    // switchover deadline that the operator's lease cannot cover (the lease rule).
    let valid = validate(&names.cluster, &cluster.spec).and_then(|spec| match &ctx.tenure {
        Some(tenure) => crate::validate::check_lease(spec.switchover_deadline, tenure.duration())
            .map(|()| spec)
            .map_err(|e| crate::validate::InvalidSpec { problems: vec![e] }),
        None => Ok(spec),
    });
    let spec = match valid {
        Ok(spec) => spec,
        Err(invalid) => {
            let mut status = old_status.clone();
            set_condition(
                &mut status.conditions,
                types::INVALID_SPEC,
                true,
                &camel(invalid.problems[0].category()),
                invalid.to_string(),
                generation,
                &now,
            );
            status.observed_generation = generation;
            status.phase = Some("Invalid".into());
            if status != old_status {
                write_status(&clusters, cluster, status).await?;
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "InvalidSpec",
                    invalid.to_string(),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
    };

    // Scaling in past the primary would delete it: refuse until it moved.
    if let Some(primary) = old_status.current_primary.filter(|p| *p >= spec.replicas) {
        let message = format!(
            "spec.replicas {} would remove the primary (instance {primary}): move it first with \
             `switchyard switchover {} --to 0`",
            spec.replicas, names.cluster
        );
        let mut status = old_status.clone();
        set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            true,
            "ScaleInRemovesPrimary",
            message.clone(),
            generation,
            &now,
        );
        status.observed_generation = generation;
        status.phase = Some("Invalid".into());
        if status != old_status {
            write_status(&clusters, cluster, status).await?;
            publish(ctx, cluster, EventType::Warning, "InvalidSpec", message).await;
        }
        return Ok(Action::await_change());
    }
    let creds = credentials(&ctx.client, cluster, &spec).await?;
    let hash = build::revision_hash(&spec, cluster);
    let mut resolved = change::resolve(old_status.revisions.as_ref(), &hash);
    let (mut revision, mut new_revision) = match &resolved {
        Resolved::Latest(e) | Resolved::Refused { latest: e, .. } => (
            Revision {
                number: e.number,
                hash: e.hash.clone(),
            },
            false,
        ),
        Resolved::New(n) => (
            Revision {
                number: *n,
                hash: hash.clone(),
            },
            true,
        ),
    };
    let probe_target = PlanTarget::new(revision.clone(), spec.version);
    let ops = ctx.ops.ops(&names.namespace, &creds);
    let runtime = Arc::new(
        KubeRuntime::new(
            ctx.client.clone(),
            cluster.clone(),
            spec.clone(),
            ops.clone(),
            ctx.resolver.clone(),
            ctx.clock.clone(),
        )
        .with_tenure(ctx.tenure.clone()),
    );
    runtime.refresh().await.map_err(|source| Error::Read {
        what: "Pod",
        source: Box::new(source),
    })?;
    let observed = runtime.observed();
    let record = old_status.record.clone().unwrap_or_default();
    let bootstrapped = old_status.current_primary.is_some();

    // Forbidden transitions: UpgradeBlocked, a Warning, and nothing touched.
    let mut blocked = if bootstrapped {
        match decide(
            &observed,
            &record,
            &probe_target,
            &policy(&spec, &record, None),
            ctx.clock.as_ref()(),
        ) {
            PlanAction::Halt { reason } if is_blocking(&reason) => Some(reason),
            _ => None,
        }
    } else {
        catalog()
            .series(spec.flavor, spec.version)
            .err()
            .map(|e| HaltReason::UnknownVersion {
                message: e.to_string(),
            })
    }
    .map(|reason| (reason.category(), reason.to_string()));

    // A new revision: the upgrade pre-flight, and a configuration change classified against
    // every instance's live metadata, before anything is applied.
    let verdict = if blocked.is_none() && new_revision && bootstrapped {
        change::plan_revision(&runtime, &spec, cluster, &observed, ctx.clock.as_ref()()).await?
    } else {
        Verdict::Restart
    };
    match &verdict {
        Verdict::Invalid { category, message } => {
            let mut status = old_status.clone();
            set_condition(
                &mut status.conditions,
                types::INVALID_SPEC,
                true,
                &camel(category),
                message.clone(),
                generation,
                &now,
            );
            status.observed_generation = generation;
            status.phase = Some("Invalid".into());
            if status != old_status {
                write_status(&clusters, cluster, status).await?;
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "InvalidSpec",
                    message.clone(),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
        Verdict::Blocked { category, message } => blocked = Some((category, message.clone())),
        Verdict::Wait { message } => {
            // Not recorded yet: the cluster stays on its latest revision meanwhile.
            tracing::info!(cluster = %names.cluster, namespace = %names.namespace, %message, "the new revision waits");
            if let Some(latest) = old_status
                .revisions
                .as_ref()
                .and_then(|r| r.history.iter().max_by_key(|e| e.number))
            {
                revision = Revision {
                    number: latest.number,
                    hash: latest.hash.clone(),
                };
                new_revision = false;
                resolved = Resolved::Latest(latest.clone());
            }
        }
        Verdict::Restart | Verdict::Online { .. } => {}
    }
    if let Some((category, message)) = blocked {
        let mut status = old_status.clone();
        set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            false,
            "Valid",
            "",
            generation,
            &now,
        );
        let was_blocked = crate::status::is_true(&status, types::UPGRADE_BLOCKED);
        set_condition(
            &mut status.conditions,
            types::UPGRADE_BLOCKED,
            true,
            &camel(category),
            message.clone(),
            generation,
            &now,
        );
        status.observed_generation = generation;
        status.phase = Some("Blocked".into());
        if status != old_status {
            write_status(&clusters, cluster, status).await?;
        }
        if !was_blocked {
            ctx.metrics.halted(category);
            publish(ctx, cluster, EventType::Warning, "UpgradeBlocked", message).await;
        }
        return Ok(Action::requeue(SAFETY_REQUEUE));
    }

    // Build and apply the managed objects.
    let client = &ctx.client;
    let ns = &names.namespace;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    // The target revision's entry: its variables render the ConfigMap (they differ from the
    // spec only while a refused change is undone), its template hash the pod template.
    let entry = match &resolved {
        Resolved::Latest(e) | Resolved::Refused { latest: e, .. } => e.clone(),
        Resolved::New(_) => change::new_entry(&revision, &spec, &verdict, &now),
    };
    let mut target = change::target_of(&entry, spec.version);
    // An accepted SchemaChange of this cluster rides on the target until every instance has it.
    if bootstrapped {
        crate::schema::reconcile_for_cluster(ctx, cluster).await;
        if let Some(prepared) = crate::schema::active_for(&ctx.client, &names).await {
            target.schema = Some(prepared.target.clone());
            runtime.set_schema(Some(prepared));
        }
    }
    let mut rendered = spec.clone();
    if let Some(config) = &entry.config {
        rendered.config = config.clone();
    }
    apply(
        &config_maps,
        &build::config_map(cluster, &rendered),
        "ConfigMap",
    )
    .await?;
    let svcs = build::services(cluster);
    for svc in &svcs {
        apply(&services, svc, "Service").await?;
    }
    apply(
        &pdbs,
        &build::pod_disruption_budget(cluster),
        "PodDisruptionBudget",
    )
    .await?;
    apply(
        &secrets,
        &build::bootstrap_secret(cluster, &spec, &creds),
        "Secret",
    )
    .await?;
    apply(
        &stateful_sets,
        &build::stateful_set_at(cluster, &spec, entry.pod_template_hash()),
        "StatefulSet",
    )
    .await?;
    let svc_names: Vec<String> = svcs.iter().map(ResourceExt::name_any).collect();
    delete_orphans(&services, &names, &svc_names, "Service").await?;
    delete_orphans(&config_maps, &names, &[names.config_map()], "ConfigMap").await?;
    delete_orphans(
        &pdbs,
        &names,
        std::slice::from_ref(&names.cluster),
        "PodDisruptionBudget",
    )
    .await?;
    delete_orphans(
        &secrets,
        &names,
        &[names.bootstrap_secret(), spec.credentials_secret.clone()],
        "Secret",
    )
    .await?;

    // Keep the history numbered, and the status' view of revisions current, before the
    // engine reads it.
    let mut status = old_status.clone();
    let revisions = status.revisions.get_or_insert_with(Revisions::default);
    if new_revision {
        revisions.history.push(entry.clone());
        let excess = revisions.history.len().saturating_sub(REVISION_HISTORY);
        revisions.history.drain(..excess);
    }
    revisions.update = Some(revision.number);
    match &resolved {
        Resolved::Refused {
            message, refused, ..
        } => set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            true,
            "ConfigRefused",
            refused_message(*refused, revision.number, message),
            generation,
            &now,
        ),
        _ => set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            false,
            "Valid",
            "",
            generation,
            &now,
        ),
    }
    set_condition(
        &mut status.conditions,
        types::UPGRADE_BLOCKED,
        false,
        "Allowed",
        "",
        generation,
        &now,
    );
    if status != old_status {
        runtime.write_status(status).await.map_err(status_error)?;
    }
    let mut events: Vec<(EventType, &'static str, String)> = Vec::new();
    if new_revision && bootstrapped {
        ctx.metrics.rollouts_started.inc();
        events.push((
            EventType::Normal,
            "RolloutStarted",
            format!(
                "revision {} ({} {})",
                revision.number, spec.flavor, spec.version
            ),
        ));
    }

    // Bootstrap, outside the engine; afterwards the pods' role labels follow the status.
    // Everything else that changes a server (a restarted replica repointed, a read-only
    // primary made writable) is the engine's decision.
    let mut active = false;
    if !bootstrapped {
        active = true;
        bootstrap(&runtime, &spec).await?;
    } else {
        let observed = runtime.observed();
        runtime
            .label_roles(&observed)
            .await
            .map_err(|e| Error::Bootstrap {
                ordinal: 0,
                message: e.to_string(),
            })?;
    }

    // One engine step, unless the primary is down outside a switchover.
    let observed = runtime.observed();
    let primary_down = bootstrapped
        && !matches!(record.intent, Some(Intent::Switchover { .. }))
        && observed.primary().is_none_or(|p| !p.health.is_up());
    let mut outcome = None;
    if bootstrapped && !primary_down {
        let record = runtime
            .cluster()
            .status
            .and_then(|s| s.record)
            .unwrap_or_default();
        if let Some(e) = manual_switchover(cluster, &runtime, &spec, &observed, &record).await? {
            events.push(e);
        }
        let record = runtime
            .cluster()
            .status
            .and_then(|s| s.record)
            .unwrap_or_default();
        let approval = cluster
            .annotations()
            .get(ANNOTATION_APPROVE)
            .and_then(|v| parse_approval(v));
        let engine = Engine::new(
            runtime.clone(),
            target.clone(),
            policy(&spec, &record, approval),
        );
        let step = engine.step().await.map_err(|e| {
            if matches!(e, switchyard_plan::engine::EngineError::Conflict) {
                Error::Conflict
            } else {
                Error::Engine(Box::new(e))
            }
        })?;
        tracing::info!(cluster = %names.cluster, namespace = %names.namespace, step = %step, "engine step");
        outcome = Some(step);
    }
    let refusal = runtime.take_refusal();

    // Status.
    runtime.refresh().await.map_err(|source| Error::Read {
        what: "Pod",
        source: Box::new(source),
    })?;
    let observed = runtime.observed();
    let before = runtime.cluster().status.unwrap_or_default();
    let mut status = before.clone();
    let record = status.record.clone().unwrap_or_default();
    let done = outcome.as_ref() == Some(&StepOutcome::Done);
    fill_status(&mut status, &spec, &observed, &revision, done, generation);
    let halted = record
        .halted
        .as_ref()
        .filter(|h| h.revision_hash == revision.hash)
        .map(|h| h.reason.clone());
    let waiting_approval = matches!(
        &outcome,
        Some(StepOutcome::Waited(WaitReason::AwaitingApproval { .. }))
    );
    let pending = observed.instances.iter().any(|i| !i.runs(&revision))
        || record.intent.is_some()
        || target.schema.as_ref().is_some_and(|c| {
            observed
                .instances
                .iter()
                .any(|i| i.schema.as_deref() != Some(c.id.as_str()))
        });
    conditions(
        &mut status,
        &observed,
        &record,
        &outcome,
        primary_down,
        pending,
        generation,
        &now,
    );
    if !bootstrapped {
        set_condition(
            &mut status.conditions,
            types::PROGRESSING,
            true,
            "Bootstrapping",
            "forming the topology: instance 0 the writable primary, the others its replicas",
            generation,
            &now,
        );
    }
    status.phase = Some(
        if !bootstrapped || status.current_primary.is_none() {
            "Bootstrapping"
        } else if primary_down {
            "Degraded"
        } else if halted.is_some() {
            "Halted"
        } else if waiting_approval {
            "AwaitingApproval"
        } else if pending {
            "Upgrading"
        } else {
            "Ready"
        }
        .into(),
    );

    // Events and metrics for what changed.
    if let Some(last) = &record.last_switchover
        && before
            .last_switchover
            .as_ref()
            .map(|l| (l.from, l.to, l.time.clone()))
            != Some((last.from, last.to, ts_time(last.promoted)))
        && old_status
            .record
            .as_ref()
            .and_then(|r| r.last_switchover.as_ref())
            != Some(last)
    {
        let took = last.promoted.since(last.started);
        ctx.metrics.switchovers.inc();
        ctx.metrics.switchover_duration.observe(took.as_secs_f64());
        events.push((
            EventType::Normal,
            "SwitchoverDone",
            format!(
                "the primary moved from instance {} to instance {} in {} ms",
                last.from,
                last.to,
                took.as_millis()
            ),
        ));
    }
    if let Some(last) = &record.last_switchover {
        status.last_switchover = Some(LastSwitchover {
            from: last.from,
            to: last.to,
            duration_millis: u64::try_from(last.promoted.since(last.started).as_millis())
                .unwrap_or(u64::MAX),
            time: ts_time(last.promoted),
        });
    }
    if let Some(StepOutcome::Acted(PlanAction::Undrain { ordinal })) = &outcome
        && observed
            .instance(*ordinal)
            .is_some_and(|i| i.runs(&revision))
        && old_status.record.as_ref().is_some_and(|r| {
            matches!(r.intent, Some(Intent::Restarting { ordinal: o, .. }) if o == *ordinal)
                || matches!(r.intent, Some(Intent::Switchover { from, .. }) if from == *ordinal)
        })
    {
        ctx.metrics.instances_upgraded.inc();
        events.push((
            EventType::Normal,
            "InstanceUpdated",
            format!(
                "instance {ordinal} runs revision {} ({})",
                revision.number, spec.version
            ),
        ));
    }
    if let Some(StepOutcome::Failed { action, error }) = &outcome {
        events.push((
            EventType::Warning,
            "StepFailed",
            format!("{action}: {error}"),
        ));
    }
    if let Some(reason) = &halted
        && !crate::status::is_true(&before, types::HALTED)
    {
        ctx.metrics.halted(reason.category());
        events.push((EventType::Warning, "RolloutHalted", reason.to_string()));
    }
    if primary_down && !crate::status::is_true(&before, types::DEGRADED) {
        ctx.metrics.halted("primary-down");
        events.push((
            EventType::Warning,
            "PrimaryDown",
            format!(
                "the primary (instance {}) is down outside a switchover; the rollout is halted and the primary is not replaced",
                status.current_primary.unwrap_or(0)
            ),
        ));
    }
    let current = |s: &MySQLClusterStatus| s.revisions.as_ref().and_then(|r| r.current);
    if current(&before).is_some_and(|c| c != revision.number)
        && current(&status) == Some(revision.number)
    {
        ctx.metrics.rollouts_finished.inc();
        events.push((
            EventType::Normal,
            "RolloutFinished",
            format!("every instance runs revision {}", revision.number),
        ));
    }
    // An instance refused the online change: undo it with a new revision.
    if let Some(message) = refusal
        && let Some(revisions) = status.revisions.as_mut()
        && let Some(next) = change::roll_back(revisions, revision.number, &message, &now)
    {
        let excess = revisions.history.len().saturating_sub(REVISION_HISTORY);
        revisions.history.drain(..excess);
        let text = refused_message(revision.number, next, &message);
        set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            true,
            "ConfigRefused",
            text.clone(),
            generation,
            &now,
        );
        events.push((EventType::Warning, "ConfigRefused", text));
    }
    if status != before {
        runtime.write_status(status).await.map_err(status_error)?;
    }
    let written = runtime.cluster();
    if bootstrapped {
        crate::schema::reconcile_for_cluster(ctx, &written).await;
    }
    for (type_, reason, note) in events {
        publish(ctx, &written, type_, reason, note).await;
    }

    // Requeue by what happens next.
    Ok(match &outcome {
        _ if active => Action::requeue(ACTIVE_REQUEUE),
        None => Action::requeue(ACTIVE_REQUEUE * 5),
        Some(StepOutcome::Done) => Action::requeue(SAFETY_REQUEUE),
        Some(StepOutcome::Halted(_)) => Action::requeue(SAFETY_REQUEUE),
        Some(StepOutcome::Waited(
            WaitReason::DrainGrace { until, .. } | WaitReason::Backoff { until, .. },
        )) => Action::requeue(
            until
                .since(ctx.clock.as_ref()())
                .max(Duration::from_millis(200)),
        ),
        Some(StepOutcome::Waited(WaitReason::AwaitingApproval { .. } | WaitReason::Paused)) => {
            Action::requeue(SAFETY_REQUEUE)
        }
        Some(_) => Action::requeue(ACTIVE_REQUEUE),
    })
}

fn status_error(e: kube::Error) -> Error {
    if is_conflict(&e) {
        Error::Conflict
    } else {
        Error::WriteStatus(Box::new(e))
    }
}

async fn write_status(
    clusters: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    status: MySQLClusterStatus,
) -> Result<(), Error> {
    let mut obj = cluster.clone();
    obj.status = Some(status);
    obj.metadata.managed_fields = None;
    clusters
        .replace_status(&obj.name_any(), &PostParams::default(), &obj)
        .await
        .map(drop)
        .map_err(status_error)
}

/// Bootstrap: ordinal 0 becomes the writable primary, the others GTID replicas of it.
async fn bootstrap(runtime: &KubeRuntime, spec: &ValidSpec) -> Result<(), Error> {
    let seen = runtime.seen();
    let ops = runtime.ops();
    let Some(Some(Ok(primary))) = seen.get(&0).map(|s| s.view.clone()) else {
        return Ok(());
    };
    // The lease rule holds here too: the statements end before the lease can expire.
    let now = ClusterRuntime::now(runtime);
    let until = now.after(crate::validate::switchover_work(spec.switchover_deadline));
    runtime
        .confirm_leadership(until)
        .await
        .map_err(|e| Error::Bootstrap {
            ordinal: 0,
            message: e.to_string(),
        })?;
    if !primary.writable {
        let deadline = std::time::Instant::now() + until.since(now);
        ops.promote(&runtime.target(0), deadline)
            .await
            .map_err(|e| Error::Bootstrap {
                ordinal: 0,
                message: e.message,
            })?;
    }
    for ordinal in 1..spec.replicas {
        if let Some(Some(Ok(v))) = seen.get(&ordinal).map(|s| s.view.clone())
            && v.replication.is_none()
        {
            ops.replicate_from(&runtime.target(ordinal), &runtime.target(0), false)
                .await
                .map_err(|e| Error::Bootstrap {
                    ordinal,
                    message: e.message,
                })?;
        }
    }
    let ready = (0..spec.replicas).all(|o| seen.get(&o).is_some_and(|s| s.pod_ready));
    if ready {
        let mut status = runtime.cluster().status.unwrap_or_default();
        status.current_primary = Some(0);
        runtime.write_status(status).await.map_err(status_error)?;
        runtime.refresh().await.map_err(|source| Error::Read {
            what: "Pod",
            source: Box::new(source),
        })?;
        let observed = runtime.observed();
        runtime
            .label_roles(&observed)
            .await
            .map_err(|e| Error::Bootstrap {
                ordinal: 0,
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// A manual switchover (`switchyard.io/switchover-to: N`): with no intent under way and the
/// same safety checks as the engine's own choice (the candidate healthy and caught up within
/// the lag bound, replicating from the primary, without errant transactions, and every other
/// instance able to replicate from it), the switchover is written into the record as the
/// engine's intent, and the engine carries it out step by step.
async fn manual_switchover(
    cluster: &MySQLCluster,
    runtime: &KubeRuntime,
    spec: &ValidSpec,
    observed: &Observed,
    record: &Record,
) -> Result<Option<(EventType, &'static str, String)>, Error> {
    let Some(value) = cluster.annotations().get(ANNOTATION_SWITCHOVER_TO) else {
        return Ok(None);
    };
    if record.intent.is_some() {
        // Busy: the request waits until the current intent is finished.
        return Ok(None);
    }
    let event = start_manual_switchover(value, runtime, spec, observed, record).await?;
    // The request is consumed (started, refused, or already satisfied): a stale annotation
    // must never move the primary again later.
    let patch =
        serde_json::json!({ "metadata": { "annotations": { ANNOTATION_SWITCHOVER_TO: null } } });
    let clusters: Api<MySQLCluster> = Api::namespaced(runtime.client(), &runtime.names().namespace);
    clusters
        .patch(
            &runtime.names().cluster,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| Error::Apply {
            kind: "MySQLCluster",
            name: runtime.names().cluster.clone(),
            source: Box::new(source),
        })?;
    Ok(event)
}

async fn start_manual_switchover(
    value: &str,
    runtime: &KubeRuntime,
    spec: &ValidSpec,
    observed: &Observed,
    record: &Record,
) -> Result<Option<(EventType, &'static str, String)>, Error> {
    let Some(primary) = observed.primary() else {
        return Ok(None);
    };
    let refuse = |why: String| {
        Some((
            EventType::Warning,
            "SwitchoverRefused",
            format!("switchover to {value}: {why}"),
        ))
    };
    let Ok(to) = value.trim().parse::<u32>() else {
        return Ok(refuse("not an ordinal".into()));
    };
    if to == primary.ordinal {
        return Ok(None);
    }
    if observed.instance(to).is_none() {
        return Ok(refuse(format!("the cluster has no instance {to}")));
    }
    if let Err(why) = switchover_safety(spec, observed, primary.ordinal, to) {
        return Ok(refuse(why));
    }
    let now = ClusterRuntime::now(runtime);
    let mut next = record.clone();
    next.intent = Some(Intent::Switchover {
        from: primary.ordinal,
        to,
        step: SwitchoverStep::Requested,
        started: now,
        deadline: now.after(spec.switchover_deadline),
    });
    next.seq = record.seq + 1;
    next.log(
        now,
        format!("manual switchover requested: {} -> {to}", primary.ordinal),
        None,
    );
    runtime
        .store_record(record.seq, &next)
        .await
        .map_err(|_| Error::Conflict)?;
    Ok(Some((
        EventType::Normal,
        "SwitchoverRequested",
        format!("switching the primary from {} to {to}", primary.ordinal),
    )))
}

/// The checks a manually chosen candidate must pass (the engine's own candidate rules).
pub fn switchover_safety(
    spec: &ValidSpec,
    observed: &Observed,
    from: u32,
    to: u32,
) -> Result<(), String> {
    let primary = observed
        .instance(from)
        .ok_or_else(|| format!("instance {from} is not in the cluster"))?;
    let c = observed
        .instance(to)
        .ok_or_else(|| format!("instance {to} is not in the cluster"))?;
    if !primary.health.is_up() {
        return Err(format!("the primary {from} is {}", primary.health));
    }
    match c.lag_seconds() {
        Some(lag) if lag <= spec.max_lag_seconds => {}
        Some(lag) => {
            return Err(format!(
                "instance {to} lags {lag}s (bound {}s)",
                spec.max_lag_seconds
            ));
        }
        None => return Err(format!("instance {to} is {}", c.health)),
    }
    if c.source != Some(from) {
        return Err(format!(
            "instance {to} does not replicate from the primary {from}"
        ));
    }
    if let (Some(cg), Some(pg)) = (&c.gtid, &primary.gtid)
        && let Ok(errant) = switchyard_plan::gtid::errant(cg, pg)
        && !errant.is_empty()
    {
        return Err(format!("instance {to} has errant transactions {errant}"));
    }
    for o in &observed.instances {
        if o.ordinal == to || o.ordinal == from {
            continue;
        }
        let ok = catalog()
            .check_replication(observed.flavor, c.version, o.version)
            .is_ok_and(|v| v.allowed);
        if !ok {
            return Err(format!(
                "instance {to} runs {}, newer than instance {} ({}), which could not replicate from it",
                c.version, o.ordinal, o.version
            ));
        }
        if !o.health.is_up() {
            return Err(format!("instance {} is {}", o.ordinal, o.health));
        }
    }
    Ok(())
}

fn fill_status(
    status: &mut MySQLClusterStatus,
    spec: &ValidSpec,
    observed: &Observed,
    revision: &Revision,
    done: bool,
    generation: Option<i64>,
) {
    let numbers: BTreeMap<String, u64> = status
        .revisions
        .as_ref()
        .map(|r| {
            r.history
                .iter()
                .map(|e| (e.hash.clone(), e.number))
                .collect()
        })
        .unwrap_or_default();
    status.instances = observed
        .by_ordinal()
        .into_iter()
        .map(|i| InstanceStatus {
            ordinal: i.ordinal,
            role: match i.role {
                Role::Primary => "primary".into(),
                Role::Replica => "replica".into(),
            },
            version: Some(i.version.to_string()),
            revision: numbers.get(&i.revision.hash).copied(),
            ready: i.health.is_up(),
            lag_seconds: i.lag_seconds().filter(|_| i.role == Role::Replica),
            last_error: (!i.health.is_up()).then(|| i.health.to_string()),
        })
        .collect();
    let ready = status.instances.iter().filter(|i| i.ready).count();
    status.ready = Some(format!("{ready}/{}", spec.replicas));
    if let Some(p) = observed.primary()
        && status.current_primary.is_some()
    {
        status.current_primary = Some(p.ordinal);
    }
    if let Some(revisions) = status.revisions.as_mut() {
        let all_at_target = observed.instances.iter().all(|i| i.runs(revision));
        if done || (all_at_target && revisions.current.is_none()) {
            revisions.current = Some(revision.number);
        }
        let current_version = revisions
            .current
            .and_then(|n| revisions.history.iter().find(|e| e.number == n))
            .map(|e| e.version.clone());
        status.current_version = current_version;
    }
    let highest = status
        .record
        .as_ref()
        .and_then(|r| r.highest_version)
        .into_iter()
        .chain(observed.highest_version())
        .max();
    status.highest_version = highest.map(|v| v.to_string());
    status.observed_generation = generation;
}

#[expect(
    clippy::too_many_arguments,
    reason = "one place that sets every condition"
)]
fn conditions(
    status: &mut MySQLClusterStatus,
    observed: &Observed,
    record: &Record,
    outcome: &Option<StepOutcome>,
    primary_down: bool,
    pending: bool,
    generation: Option<i64>,
    now: &Time,
) {
    let c = &mut status.conditions;
    let primary = observed.primary();
    let available = primary.is_some_and(|p| p.health.is_up() && p.writable);
    set_condition(
        c,
        types::AVAILABLE,
        available,
        if available {
            "PrimaryWritable"
        } else {
            "NoWritablePrimary"
        },
        match primary {
            Some(p) if available => format!("instance {} takes writes", p.ordinal),
            Some(p) => format!("the primary, instance {}, is {}", p.ordinal, p.health),
            None => "no primary yet".into(),
        },
        generation,
        now,
    );
    let unhealthy: Vec<String> = observed
        .by_ordinal()
        .into_iter()
        .filter(|i| !i.health.is_up())
        .map(|i| format!("instance {} is {}", i.ordinal, i.health))
        .collect();
    set_condition(
        c,
        types::DEGRADED,
        primary_down || !unhealthy.is_empty(),
        if primary_down {
            "PrimaryDown"
        } else if unhealthy.is_empty() {
            "AllHealthy"
        } else {
            "InstanceUnhealthy"
        },
        unhealthy.join("; "),
        generation,
        now,
    );
    let halted = match (primary_down, outcome) {
        (true, _) => Some((
            "PrimaryDown".to_owned(),
            "the primary died outside a switchover: the rollout waits for it; switchyard does not fail over".to_owned(),
        )),
        (false, Some(StepOutcome::Halted(reason))) => {
            Some((camel(reason.category()), reason.to_string()))
        }
        _ => None,
    };
    set_condition(
        c,
        types::HALTED,
        halted.is_some(),
        halted.as_ref().map_or("NotHalted", |h| h.0.as_str()),
        halted.as_ref().map(|h| h.1.clone()).unwrap_or_default(),
        generation,
        now,
    );
    let approval = match outcome {
        Some(StepOutcome::Waited(WaitReason::AwaitingApproval { revision, from, to })) => {
            Some((*revision, *from, *to))
        }
        _ => None,
    };
    set_condition(
        c,
        types::AWAITING_APPROVAL,
        approval.is_some(),
        if approval.is_some() { "SwitchoverNeedsApproval" } else { "NoApprovalNeeded" },
        approval
            .map(|(r, f, t)| {
                format!(
                    "the switchover of revision {r} from instance {f} to instance {t} awaits approval: \
                     switchyard approve CLUSTER (annotation switchyard.io/approve-switchover: \"{r}:{f}->{t}\")"
                )
            })
            .unwrap_or_default(),
        generation,
        now,
    );
    let progressing = pending
        && !matches!(
            outcome,
            Some(StepOutcome::Halted(_)) | Some(StepOutcome::Done)
        );
    set_condition(
        c,
        types::PROGRESSING,
        progressing,
        if progressing {
            if matches!(record.intent, Some(Intent::Switchover { .. })) {
                "Switchover"
            } else {
                "RollingOut"
            }
        } else {
            "Complete"
        },
        match (progressing, outcome) {
            (true, Some(o)) => o.to_string(),
            _ => String::new(),
        },
        generation,
        now,
    );
}
