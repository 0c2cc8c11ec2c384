//! The reconciler: fetch → validate → build → apply → one engine step → status.
//!
//! Every reconcile runs at most one engine step and returns; long waits (a pod starting, a
//! drain grace, a backoff) become requeues. Everything the engine needs to resume lives in
//! the status, so an operator restart (or a new leader) continues where the last one
//! stopped, and every status write is conditional on the resource version.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use switchyard_plan::decide::{Approval, HaltReason, Policy, Target as PlanTarget, decide};
use switchyard_plan::engine::{Engine, StepOutcome};
use switchyard_plan::record::Intent;
use switchyard_plan::versions::catalog;
use switchyard_plan::{Action as PlanAction, Record, Revision, Timestamp, WaitReason};

use crate::agent::Provisioning;
use crate::change::{self, Verdict};
pub use crate::context::{ACTIVE_REQUEUE, Context, OpsFactory, SAFETY_REQUEUE};
use crate::crd::{InstanceStatus, LastSwitchover, MySQLCluster, MySQLClusterStatus, Revisions};
use crate::error::{Error, status_error};
use crate::instances;
use crate::names::Names;
use crate::revision::{self, Resolved};
use crate::runtime::KubeRuntime;
use crate::status::{
    ANNOTATION_APPROVE, camel, conditions, fill_status, parse_approval, set_condition, types,
};
use crate::validate::{ValidSpec, validate};
use crate::{bootstrap, children, fetch, manual};

/// How many revisions the status history keeps.
pub const REVISION_HISTORY: usize = 16;

fn ts_time(t: Timestamp) -> Time {
    crate::context::to_time(t)
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

/// Sets the revision of every instance `0..replicas` to `assignments` and forgets the instances
/// beyond (scaled down).
fn assign(status: &mut MySQLClusterStatus, assignments: &std::collections::BTreeMap<u32, u64>) {
    status
        .instances
        .retain(|i| assignments.contains_key(&i.ordinal));
    for (ordinal, number) in assignments {
        match status.instances.iter_mut().find(|i| i.ordinal == *ordinal) {
            Some(i) => i.revision = Some(*number),
            None => status.instances.push(InstanceStatus {
                ordinal: *ordinal,
                role: "replica".into(),
                revision: Some(*number),
                ..InstanceStatus::default()
            }),
        }
    }
    status.instances.sort_by_key(|i| i.ordinal);
}

/// Keeps at most [`REVISION_HISTORY`] revisions, dropping the oldest first, but never one an
/// instance is assigned to (its pod is built from it) nor the current or update revision.
fn trim_history(status: &mut MySQLClusterStatus) {
    let used: Vec<u64> = status.instances.iter().filter_map(|i| i.revision).collect();
    let Some(revisions) = status.revisions.as_mut() else {
        return;
    };
    let keep =
        |n: u64, r: &Revisions| used.contains(&n) || r.current == Some(n) || r.update == Some(n);
    while revisions.history.len() > REVISION_HISTORY {
        let snapshot = revisions.clone();
        let Some(at) = revisions
            .history
            .iter()
            .position(|e| !keep(e.number, &snapshot))
        else {
            break;
        };
        revisions.history.remove(at);
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
    let now = ctx.now_time();
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
    // Fetch: the credentials (created when absent, reused when left behind) and the claims.
    let (secret, creds) = fetch::credentials_secret(&ctx.client, cluster, &spec).await?;
    let claims = fetch::claims(&ctx.client, &names).await?;
    let hash = revision::revision_hash(&spec, cluster);
    let mut resolved = revision::resolve(old_status.revisions.as_ref(), &hash);
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
    let target_of = |o: u32| runtime.target(o);

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
        change::plan_revision(
            ops.as_ref(),
            &target_of,
            &spec,
            cluster,
            &observed,
            ctx.clock.as_ref()(),
        )
        .await?
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

    // The target revision's entry: its variables render the ConfigMaps of the instances it
    // is assigned to (they differ from the spec only while a refused change is undone).
    let entry = match &resolved {
        Resolved::Latest(e) | Resolved::Refused { latest: e, .. } => e.clone(),
        Resolved::New(_) => revision::new_entry(&revision, &spec, cluster, verdict.online(), &now),
    };
    let mut target = revision::target_of(&entry, spec.version);
    // An accepted SchemaChange of this cluster rides on the target until every instance has it.
    if bootstrapped {
        crate::schema::reconcile_for_cluster(ctx, cluster).await;
        if let Some(prepared) = crate::schema::active_for(&ctx.client, &names).await {
            target.schema = Some(prepared.target.clone());
            runtime.set_schema(Some(prepared));
        }
    }

    // Keep the history numbered, and the status' view of revisions current, before the
    // engine reads it.
    let mut status = old_status.clone();
    let revisions = status.revisions.get_or_insert_with(Revisions::default);
    if new_revision {
        revisions.history.push(entry.clone());
    }
    revisions.update = Some(revision.number);
    // Every instance has a revision before any pod is built: the one the record assigns to
    // it, or (a new one) the primary's.
    let assignments = instances::assignments(&status, spec.replicas, revision.number);
    assign(&mut status, &assignments);
    trim_history(&mut status);
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

    // Build and apply: each instance's ConfigMap, claim and pod from its assigned revision.
    let plans = instances::plan(
        &names,
        &runtime.cluster().status.unwrap_or_default(),
        &observed,
        spec.replicas,
        spec.max_lag_seconds,
    );
    let applied = children::apply_children(ctx, &runtime, &spec, &plans, &claims, &secret).await?;
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
        bootstrap::first_primary(&runtime, &spec).await?;
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
        if let Some(e) =
            manual::manual_switchover(cluster, &runtime, &spec, &observed, &record).await?
        {
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
    // What the agents say of instances whose server is not up: a primary whose data came
    // back empty (never initialized again, never made writable), replicas being provisioned.
    let seen = runtime.seen();
    let agent_of = |o: u32| {
        seen.get(&o)
            .and_then(|s| s.agent.as_ref())
            .and_then(|a| a.as_ref().ok())
    };
    let primary_data_lost = status
        .current_primary
        .filter(|p| agent_of(*p).is_some_and(|a| !a.data_dir_initialized));
    let provisioning: Vec<u32> = (0..spec.replicas)
        .filter(|o| Some(*o) != status.current_primary)
        .filter(|o| {
            seen.get(o)
                .is_some_and(|s| s.pod.is_none() && !applied.created.is_empty())
                || agent_of(*o).is_some_and(|a| {
                    a.provisioning == Provisioning::Running || !a.data_dir_initialized
                })
        })
        .collect();
    conditions(
        &mut status,
        &observed,
        &record,
        &outcome,
        primary_down,
        primary_data_lost,
        pending,
        generation,
        &now,
    );
    match &applied.storage {
        Some((reason, message)) => set_condition(
            &mut status.conditions,
            types::STORAGE_NOT_APPLIED,
            true,
            reason,
            message.clone(),
            generation,
            &now,
        ),
        None => set_condition(
            &mut status.conditions,
            types::STORAGE_NOT_APPLIED,
            false,
            "Applied",
            "",
            generation,
            &now,
        ),
    }
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
        } else if !provisioning.is_empty() {
            "Provisioning"
        } else {
            "Ready"
        }
        .into(),
    );
    if !provisioning.is_empty() || !applied.created.is_empty() {
        active = true;
    }
    if let Some((_, message)) = &applied.storage
        && !crate::status::is_true(&before, types::STORAGE_NOT_APPLIED)
    {
        events.push((EventType::Warning, "StorageNotApplied", message.clone()));
    }

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
        && let Some(next) = revision::roll_back(revisions, revision.number, &message, &now)
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
