//! The reconciler: validate → fetch → decide the target revision → record it (and each
//! instance's assigned revision) → build and apply → one engine step → status.
//!
//! Every reconcile runs at most one engine step and returns; long waits (a pod starting, a
//! drain grace, a backoff) become requeues. Everything the engine needs to resume lives in
//! the status, so an operator restart (or a new leader) continues where the last one
//! stopped, and every status write is conditional on the resource version. Each step is a
//! function of its own below; the pure parts (what each instance should be, the objects, the
//! status) live in [`crate::instances`], [`crate::build`] and [`crate::status`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use switchyard_plan::decide::{
    Approval, FailoverPolicy, HaltReason, Policy, Target as PlanTarget, decide,
};
use switchyard_plan::engine::{Engine, StepOutcome};
use switchyard_plan::record::Intent;
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::versions::catalog;
use switchyard_plan::{Action as PlanAction, Observed, Record, Revision, Timestamp, WaitReason};

use crate::agent::Provisioning;
use crate::change::{self, Verdict};
use crate::children::Applied;
pub use crate::context::{ACTIVE_REQUEUE, Context, OpsFactory, SAFETY_REQUEUE};
use crate::crd::{LastSwitchover, MySQLCluster, MySQLClusterStatus, RevisionEntry, Revisions};
use crate::error::{Error, status_error};
use crate::instances;
use crate::manual::Note;
use crate::names::Names;
pub use crate::revision::REVISION_HISTORY;
use crate::revision::{self, Resolved};
use crate::rotation::{self, Rotation};
use crate::runtime::KubeRuntime;
use crate::status::{
    ANNOTATION_APPROVE, camel, conditions, fill_status, is_true, parse_approval, set_condition,
    topology_word, types,
};
use crate::validate::{InvalidSpec, ValidSpec, check_lease, validate};
use crate::{bootstrap, children, drain, fetch, manual};

fn ts_time(t: Timestamp) -> Time {
    crate::context::to_time(t)
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
        // spec.failover: a failed primary is replaced on its own unless the spec says not
        // to; without a proof that no acknowledged write is lost (asynchronous replication)
        // only when the spec accepts the loss.
        failover: FailoverPolicy {
            automatic: spec.failover_automatic,
            detect_after: spec.failover_detect_after,
            accept_data_loss: spec.accept_data_loss,
            ..FailoverPolicy::default()
        },
        canary_bake: spec.canary_bake,
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

/// What one reconcile carries from step to step.
struct Pass<'a> {
    ctx: &'a Context,
    cluster: &'a MySQLCluster,
    names: Names,
    generation: Option<i64>,
    now: Time,
    /// The status as the reconcile found it.
    old: MySQLClusterStatus,
    /// Events to publish at the end.
    events: Vec<Note>,
}

/// What fetch read.
struct Fetched {
    secret: k8s_openapi::api::core::v1::Secret,
    creds: crate::credentials::ClusterCredentials,
    claims: std::collections::BTreeMap<u32, k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    runtime: Arc<KubeRuntime>,
    observed: Observed,
}

/// The revision the spec resolves to.
struct Targeted {
    revision: Revision,
    new_revision: bool,
    resolved: Resolved,
    verdict: Verdict,
}

/// What the engine step did.
struct Stepped {
    outcome: Option<StepOutcome>,
    primary_down: bool,
    refusal: Option<String>,
}

async fn reconcile_inner(cluster: &MySQLCluster, ctx: &Context) -> Result<Action, Error> {
    let mut pass = Pass {
        ctx,
        cluster,
        names: Names::of(cluster),
        generation: cluster.metadata.generation,
        now: ctx.now_time(),
        old: cluster.status.clone().unwrap_or_default(),
        events: Vec::new(),
    };
    let spec = match pass.validated() {
        Ok(spec) => spec,
        Err((reason, message)) => return pass.refuse(&reason, message).await,
    };
    let fetched = pass.fetch(&spec).await?;
    let targeted = match pass.target(&spec, &fetched).await? {
        Ok(targeted) => targeted,
        Err(action) => return Ok(action),
    };
    let target = pass.record(&spec, &fetched, &targeted).await?;
    let runtime = &fetched.runtime;
    if spec.topology == TopologyKind::Galera {
        // The node that starts a new Galera cluster is named in the status before any pod
        // is told: at most one is ever named.
        let mut status = runtime.cluster().status.unwrap_or_default();
        if let Some(chosen) = instances::galera_bootstrap(&status) {
            status.galera_bootstrap = Some(chosen);
            runtime
                .write_status(status)
                .await
                .map_err(crate::error::status_error)?;
        }
    }
    let plans = instances::plan(
        &pass.names,
        &runtime.cluster().status.unwrap_or_default(),
        &fetched.observed,
        spec.replicas,
        spec.max_lag_seconds,
        spec.topology,
    );
    let applied = children::apply_children(
        ctx,
        runtime,
        &spec,
        &plans,
        &fetched.claims,
        &fetched.secret,
    )
    .await?;
    let bootstrapped = pass.old.current_primary.is_some();
    if bootstrapped && let Some(action) = pass.rotate(runtime, &fetched).await? {
        return Ok(action);
    }
    let stepped = pass.step(&spec, runtime, &target, bootstrapped).await?;
    let active = pass
        .report(
            &spec,
            runtime,
            &targeted.revision,
            &target,
            &stepped,
            &applied,
        )
        .await?;
    let after = requeue_after(
        &stepped.outcome,
        active || !bootstrapped,
        ctx.clock.as_ref()(),
    );
    // A cluster that fails over on its own checks its primary every HEALTH_CHECK even when
    // nothing happens: a frozen or cut-off primary raises no event (a partition changes no
    // pod until a probe fails), and the detection counts failed checks.
    let watched = bootstrapped && spec.failover_automatic && spec.replicas > 1;
    Ok(Action::requeue(if watched {
        after.min(HEALTH_CHECK)
    } else {
        after
    }))
}

impl Pass<'_> {
    /// Validate: the spec, the lease rule (a switchover deadline the operator's lease cannot
    /// cover), and a scale-in that would remove the primary. The refusal's reason and message.
    fn validated(&self) -> Result<ValidSpec, (String, String)> {
        let valid = validate(&self.names.cluster, &self.cluster.spec).and_then(|spec| match &self
            .ctx
            .tenure
        {
            Some(tenure) => check_lease(spec.switchover_deadline, tenure.duration())
                .map(|()| spec)
                .map_err(|e| InvalidSpec { problems: vec![e] }),
            None => Ok(spec),
        });
        let spec = valid
            .map_err(|invalid| (camel(invalid.problems[0].category()), invalid.to_string()))?;
        // The topology a cluster was created with is for good. A cluster whose status predates
        // the record (created before Galera existed here) is primary-replica.
        let running = self.old.topology.clone().or_else(|| {
            self.old
                .current_primary
                .map(|_| topology_word(TopologyKind::Async).to_owned())
        });
        if let Some(running) = running.filter(|t| t != topology_word(spec.topology)) {
            return Err((
                "TopologyChange".into(),
                format!(
                    "spec.topology {} differs from the topology cluster {} runs ({running}): \
                     the servers cannot be turned from one into the other in place; set \
                     spec.topology back to {running}, or create a new cluster and move the data",
                    topology_word(spec.topology),
                    self.names.cluster
                ),
            ));
        }
        if let Some(primary) = self.old.current_primary.filter(|p| *p >= spec.replicas) {
            return Err((
                "ScaleInRemovesPrimary".into(),
                format!(
                    "spec.replicas {} would remove the primary (instance {primary}): move it \
                     first with `switchyard switchover {} --to 0`",
                    spec.replicas, self.names.cluster
                ),
            ));
        }
        Ok(spec)
    }

    /// An invalid spec changes nothing but the InvalidSpec condition (and a Warning on the
    /// transition); it waits for a change.
    async fn refuse(&self, reason: &str, message: String) -> Result<Action, Error> {
        let mut status = self.old.clone();
        set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            true,
            reason,
            message.clone(),
            self.generation,
            &self.now,
        );
        status.observed_generation = self.generation;
        status.phase = Some("Invalid".into());
        if status != self.old {
            self.write_status(status).await?;
            self.publish(EventType::Warning, "InvalidSpec", message)
                .await;
        }
        Ok(Action::await_change())
    }

    /// Fetch: the credentials (created when absent, reused when left behind), the claims, and
    /// the pods and their servers through the runtime.
    async fn fetch(&self, spec: &ValidSpec) -> Result<Fetched, Error> {
        let ctx = self.ctx;
        let (secret, creds) = fetch::credentials_secret(&ctx.client, self.cluster, spec).await?;
        let claims = fetch::claims(&ctx.client, &self.names).await?;
        let ops = ctx.ops.ops(&self.names.namespace, &creds);
        let fetched_creds = creds.clone();
        let runtime = Arc::new(
            KubeRuntime::new(
                ctx.client.clone(),
                self.cluster.clone(),
                spec.clone(),
                ops,
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
        Ok(Fetched {
            secret,
            creds: fetched_creds,
            claims,
            runtime,
            observed,
        })
    }

    /// The revision the spec asks for, or why nothing may change: a forbidden transition or a
    /// refused upgrade (UpgradeBlocked), a refused configuration (InvalidSpec). A new
    /// revision is checked against the servers before it is recorded (the upgrade pre-flight,
    /// a configuration change classified as online or restarting).
    async fn target(
        &mut self,
        spec: &ValidSpec,
        fetched: &Fetched,
    ) -> Result<Result<Targeted, Action>, Error> {
        let hash = revision::revision_hash(spec, self.cluster);
        let mut resolved = revision::resolve(self.old.revisions.as_ref(), &hash);
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
        let record = self.old.record.clone().unwrap_or_default();
        let bootstrapped = self.old.current_primary.is_some();
        let now = self.ctx.clock.as_ref()();
        let blocked = if bootstrapped {
            let probe = PlanTarget::new(revision.clone(), spec.version);
            match decide(
                &fetched.observed,
                &record,
                &probe,
                &policy(spec, &record, None),
                now,
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
        if let Some((category, message)) = blocked {
            return self.block(category, message).await.map(Err);
        }
        let verdict = if new_revision && bootstrapped {
            let runtime = &fetched.runtime;
            let target_of = |o: u32| runtime.target(o);
            change::plan_revision(
                runtime.ops().as_ref(),
                &target_of,
                spec,
                self.cluster,
                &fetched.observed,
                now,
            )
            .await?
        } else {
            Verdict::Restart
        };
        match &verdict {
            Verdict::Invalid { category, message } => {
                return self
                    .refuse(&camel(category), message.clone())
                    .await
                    .map(Err);
            }
            Verdict::Blocked { category, message } => {
                return self.block(category, message.clone()).await.map(Err);
            }
            Verdict::Wait { message } => {
                // Not recorded yet: the cluster stays on its latest revision meanwhile.
                tracing::info!(cluster = %self.names.cluster, namespace = %self.names.namespace, %message, "the new revision waits");
                if let Some(latest) = self
                    .old
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
        Ok(Ok(Targeted {
            revision,
            new_revision,
            resolved,
            verdict,
        }))
    }

    /// A transition the rules forbid, or an upgrade its pre-flight refuses: UpgradeBlocked,
    /// a Warning on the transition, and nothing touched.
    async fn block(&self, category: &str, message: String) -> Result<Action, Error> {
        let mut status = self.old.clone();
        set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            false,
            "Valid",
            "",
            self.generation,
            &self.now,
        );
        let was_blocked = is_true(&status, types::UPGRADE_BLOCKED);
        set_condition(
            &mut status.conditions,
            types::UPGRADE_BLOCKED,
            true,
            &camel(category),
            message.clone(),
            self.generation,
            &self.now,
        );
        status.observed_generation = self.generation;
        status.phase = Some("Blocked".into());
        if status != self.old {
            self.write_status(status).await?;
        }
        if !was_blocked {
            self.ctx.metrics.halted(category);
            self.publish(EventType::Warning, "UpgradeBlocked", message)
                .await;
        }
        Ok(Action::requeue(SAFETY_REQUEUE))
    }

    /// Records the target revision in the history and every instance's assigned revision
    /// before any pod is built (the one the record assigns, or a new instance's: the
    /// primary's). Returns the engine's target (with an accepted SchemaChange riding on it).
    async fn record(
        &mut self,
        spec: &ValidSpec,
        fetched: &Fetched,
        targeted: &Targeted,
    ) -> Result<PlanTarget, Error> {
        let revision = &targeted.revision;
        let entry: RevisionEntry = match &targeted.resolved {
            Resolved::Latest(e) | Resolved::Refused { latest: e, .. } => e.clone(),
            Resolved::New(_) => revision::new_entry(
                revision,
                spec,
                self.cluster,
                targeted.verdict.online(),
                &self.now,
            ),
        };
        let mut target = revision::target_of(&entry, spec.version);
        if self.old.current_primary.is_some() {
            crate::schema::reconcile_for_cluster(self.ctx, self.cluster).await;
            if let Some(prepared) = crate::schema::active_for(&self.ctx.client, &self.names).await {
                target.schema = Some(prepared.target.clone());
                fetched.runtime.set_schema(Some(prepared));
            }
        }
        let mut status = self.old.clone();
        let revisions = status.revisions.get_or_insert_with(Revisions::default);
        if targeted.new_revision {
            revisions.history.push(entry);
        }
        revisions.update = Some(revision.number);
        let assignments = instances::assignments(&status, spec.replicas, revision.number);
        instances::assign(&mut status, &assignments);
        revision::trim_history(&mut status);
        let (invalid, reason, message) = match &targeted.resolved {
            Resolved::Refused {
                message, refused, ..
            } => (
                true,
                "ConfigRefused",
                refused_message(*refused, revision.number, message),
            ),
            _ => (false, "Valid", String::new()),
        };
        set_condition(
            &mut status.conditions,
            types::INVALID_SPEC,
            invalid,
            reason,
            message,
            self.generation,
            &self.now,
        );
        set_condition(
            &mut status.conditions,
            types::UPGRADE_BLOCKED,
            false,
            "Allowed",
            "",
            self.generation,
            &self.now,
        );
        if status != self.old {
            fetched
                .runtime
                .write_status(status)
                .await
                .map_err(status_error)?;
        }
        if targeted.new_revision && self.old.current_primary.is_some() {
            self.ctx.metrics.rollouts_started.inc();
            self.events.push((
                EventType::Normal,
                "RolloutStarted",
                format!(
                    "revision {} ({} {})",
                    revision.number, spec.flavor, spec.version
                ),
            ));
        }
        Ok(target)
    }

    /// A requested password rotation, one step (see [`crate::rotation`]): while it works, the
    /// reconcile ends here (the engine takes no step); while it waits for the cluster, the
    /// reconcile goes on.
    async fn rotate(
        &mut self,
        runtime: &KubeRuntime,
        fetched: &Fetched,
    ) -> Result<Option<Action>, Error> {
        let result = rotation::rotate(
            self.ctx,
            runtime,
            &fetched.secret,
            &fetched.creds,
            &fetched.observed,
        )
        .await?;
        let (active, reason, message, done) = match result {
            Rotation::Idle => return Ok(None),
            Rotation::Waiting(m) => (true, "Waiting", m, None),
            Rotation::Busy(m) => (true, "Rotating", m, None),
            Rotation::Failed(m) => (true, "Failed", m, None),
            Rotation::Done(token) => (
                false,
                "Rotated",
                "the operator and replication passwords were rotated on every instance".into(),
                Some(token),
            ),
        };
        let mut status = runtime.cluster().status.unwrap_or_default();
        let before = status.clone();
        set_condition(
            &mut status.conditions,
            types::ROTATING_CREDENTIALS,
            active,
            reason,
            message.clone(),
            self.generation,
            &self.now,
        );
        if let Some(token) = &done {
            status.rotation = Some(token.clone());
        }
        if status != before {
            runtime.write_status(status).await.map_err(status_error)?;
        }
        let cluster = runtime.cluster();
        let failed_before = crate::status::condition(&before, types::ROTATING_CREDENTIALS)
            .is_some_and(|c| c.reason == "Failed");
        match (reason, done) {
            ("Waiting", _) => Ok(None),
            (_, Some(_)) => {
                publish(
                    self.ctx,
                    &cluster,
                    EventType::Normal,
                    "CredentialsRotated",
                    message,
                )
                .await;
                Ok(Some(Action::requeue(ACTIVE_REQUEUE)))
            }
            ("Failed", _) => {
                if !failed_before {
                    publish(
                        self.ctx,
                        &cluster,
                        EventType::Warning,
                        "RotationFailed",
                        message,
                    )
                    .await;
                }
                Ok(Some(Action::requeue(ACTIVE_REQUEUE * 5)))
            }
            _ => Ok(Some(Action::requeue(ACTIVE_REQUEUE))),
        }
    }

    /// The first primary (bootstrap, outside the engine), or the role labels following the
    /// status; then a requested switchover, a switchover off a cordoned node
    /// ([`drain`]) and one engine step, unless the primary is down
    /// outside a switchover. Everything that changes a server (a restarted replica repointed, a
    /// read-only primary made writable) is the engine's decision.
    async fn step(
        &mut self,
        spec: &ValidSpec,
        runtime: &Arc<KubeRuntime>,
        target: &PlanTarget,
        bootstrapped: bool,
    ) -> Result<Stepped, Error> {
        if !bootstrapped {
            bootstrap::first_primary(runtime, spec).await?;
        } else {
            runtime
                .label_roles(&runtime.observed())
                .await
                .map_err(|e| Error::Bootstrap {
                    ordinal: 0,
                    message: e.to_string(),
                })?;
        }
        let observed = runtime.observed();
        let record = self.old.record.clone().unwrap_or_default();
        let primary_down = bootstrapped
            && !matches!(record.intent, Some(Intent::Switchover { .. }))
            && observed.primary().is_none_or(|p| !p.health.is_up());
        let mut outcome = None;
        // A primary down outside a switchover: the engine runs only when it may replace it
        // (automatic failover, or a failover already under way); it then waits for the
        // detection window and the replicas' corroboration, or fails over.
        let failing_over = matches!(record.intent, Some(Intent::Failover { .. }));
        if bootstrapped && (!primary_down || spec.failover_automatic || failing_over) {
            let stored = |rt: &KubeRuntime| {
                rt.cluster()
                    .status
                    .and_then(|s| s.record)
                    .unwrap_or_default()
            };
            if !primary_down {
                let record = stored(runtime);
                let requested =
                    manual::manual_switchover(self.cluster, runtime, spec, &observed, &record)
                        .await?;
                // A drain started on the primary's node: the primary moves first (unless a
                // switchover was just requested).
                let record = stored(runtime);
                let cordoned =
                    drain::move_primary_off_cordoned_node(runtime, spec, &observed, &record)
                        .await?;
                self.events.extend(requested.into_iter().chain(cordoned));
            }
            let record = stored(runtime);
            let approval = self
                .cluster
                .annotations()
                .get(ANNOTATION_APPROVE)
                .and_then(|v| parse_approval(v));
            let engine = Engine::new(
                runtime.clone(),
                target.clone(),
                policy(spec, &record, approval),
            );
            let step = engine.step().await.map_err(|e| {
                if matches!(e, switchyard_plan::engine::EngineError::Conflict) {
                    Error::Conflict
                } else {
                    Error::Engine(Box::new(e))
                }
            })?;
            tracing::info!(cluster = %self.names.cluster, namespace = %self.names.namespace, step = %step, "engine step");
            outcome = Some(step);
        }
        Ok(Stepped {
            outcome,
            primary_down,
            refusal: runtime.take_refusal(),
        })
    }

    /// Status: observed again after the step, with the conditions, the phase, the events and
    /// metrics of what changed; written when it changed. Whether the cluster is busy (a
    /// quicker requeue).
    async fn report(
        &mut self,
        spec: &ValidSpec,
        runtime: &KubeRuntime,
        revision: &Revision,
        target: &PlanTarget,
        stepped: &Stepped,
        applied: &Applied,
    ) -> Result<bool, Error> {
        let (generation, now) = (self.generation, self.now.clone());
        let bootstrapped = self.old.current_primary.is_some();
        let outcome = &stepped.outcome;
        runtime.refresh().await.map_err(|source| Error::Read {
            what: "Pod",
            source: Box::new(source),
        })?;
        let observed = runtime.observed();
        let before = runtime.cluster().status.unwrap_or_default();
        let mut status = before.clone();
        let record = status.record.clone().unwrap_or_default();
        let done = outcome.as_ref() == Some(&StepOutcome::Done);
        fill_status(&mut status, spec, &observed, revision, done, generation);
        let halted = record
            .halted
            .as_ref()
            .filter(|h| h.revision_hash == revision.hash)
            .map(|h| h.reason.clone());
        let pending = observed.instances.iter().any(|i| !i.runs(revision))
            || record.intent.is_some()
            || target.schema.as_ref().is_some_and(|c| {
                observed
                    .instances
                    .iter()
                    .any(|i| i.schema.as_deref() != Some(c.id.as_str()))
            });
        // What the agents say of instances whose server is not up: a primary whose data came
        // back empty (never initialized again, never made writable), replicas provisioning.
        let seen = runtime.seen();
        let agent_of = |o: u32| {
            seen.get(&o)
                .and_then(|s| s.agent.as_ref())
                .and_then(|a| a.as_ref().ok())
        };
        let primary_data_lost = status
            .current_primary
            .filter(|p| agent_of(*p).is_some_and(|a| !a.data_dir_initialized));
        let provisioning = (0..spec.replicas)
            .filter(|o| Some(*o) != status.current_primary)
            .any(|o| {
                agent_of(o).is_some_and(|a| {
                    a.provisioning == Provisioning::Running || !a.data_dir_initialized
                })
            });
        conditions(
            &mut status,
            &observed,
            &record,
            outcome,
            stepped.primary_down,
            primary_data_lost,
            spec.failover_automatic,
            pending,
            generation,
            &now,
        );
        let (storage_blocked, reason, message) = match &applied.storage {
            Some((reason, message)) => (true, *reason, message.clone()),
            None => (false, "Applied", String::new()),
        };
        set_condition(
            &mut status.conditions,
            types::STORAGE_NOT_APPLIED,
            storage_blocked,
            reason,
            message.clone(),
            generation,
            &now,
        );
        if storage_blocked && !is_true(&before, types::STORAGE_NOT_APPLIED) {
            self.events
                .push((EventType::Warning, "StorageNotApplied", message));
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
        let waiting_approval = matches!(
            outcome,
            Some(StepOutcome::Waited(WaitReason::AwaitingApproval { .. }))
        );
        status.phase = Some(
            if !bootstrapped || status.current_primary.is_none() {
                "Bootstrapping"
            } else if stepped.primary_down {
                "Degraded"
            } else if halted.is_some() {
                "Halted"
            } else if waiting_approval {
                "AwaitingApproval"
            } else if pending {
                "Upgrading"
            } else if provisioning {
                "Provisioning"
            } else {
                "Ready"
            }
            .into(),
        );
        self.note_changes(
            spec,
            &before,
            &mut status,
            &observed,
            revision,
            stepped,
            halted.as_ref(),
        );
        if status != before {
            runtime.write_status(status).await.map_err(status_error)?;
        }
        let written = runtime.cluster();
        if bootstrapped {
            crate::schema::reconcile_for_cluster(self.ctx, &written).await;
        }
        for (type_, reason, note) in std::mem::take(&mut self.events) {
            publish(self.ctx, &written, type_, reason, note).await;
        }
        Ok(provisioning || !applied.created.is_empty())
    }

    /// The events and metrics of what the step changed, and the undo of an online change an
    /// instance refused (a new revision).
    #[expect(
        clippy::too_many_arguments,
        reason = "one place that turns the step's changes into events"
    )]
    fn note_changes(
        &mut self,
        spec: &ValidSpec,
        before: &MySQLClusterStatus,
        status: &mut MySQLClusterStatus,
        observed: &Observed,
        revision: &Revision,
        stepped: &Stepped,
        halted: Option<&HaltReason>,
    ) {
        let record = status.record.clone().unwrap_or_default();
        let metrics = &self.ctx.metrics;
        let events = &mut self.events;
        let outcome = &stepped.outcome;
        if let Some(last) = &record.last_switchover
            && before
                .last_switchover
                .as_ref()
                .map(|l| (l.from, l.to, l.time.clone()))
                != Some((last.from, last.to, ts_time(last.promoted)))
            && self
                .old
                .record
                .as_ref()
                .and_then(|r| r.last_switchover.as_ref())
                != Some(last)
        {
            let took = last.promoted.since(last.started);
            metrics.switchovers.inc();
            metrics.switchover_duration.observe(took.as_secs_f64());
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
        if let Some(StepOutcome::Acted(PlanAction::Undrain { ordinal })) = outcome
            && observed
                .instance(*ordinal)
                .is_some_and(|i| i.runs(revision))
            && self.old.record.as_ref().is_some_and(|r| {
                matches!(r.intent, Some(Intent::Restarting { ordinal: o, .. }) if o == *ordinal)
                    || matches!(r.intent, Some(Intent::Switchover { from, .. }) if from == *ordinal)
            })
        {
            metrics.instances_upgraded.inc();
            events.push((
                EventType::Normal,
                "InstanceUpdated",
                format!(
                    "instance {ordinal} runs revision {} ({})",
                    revision.number, spec.version
                ),
            ));
        }
        if let Some(StepOutcome::Failed { action, error }) = outcome {
            events.push((
                EventType::Warning,
                "StepFailed",
                format!("{action}: {error}"),
            ));
        }
        if let Some(reason) = halted
            && !is_true(before, types::HALTED)
        {
            metrics.halted(reason.category());
            events.push((EventType::Warning, "RolloutHalted", reason.to_string()));
        }
        if stepped.primary_down && !is_true(before, types::DEGRADED) {
            metrics.halted("primary-down");
            events.push((
                EventType::Warning,
                "PrimaryDown",
                format!(
                    "the primary (instance {}) is down outside a switchover; the rollout is halted and {}",
                    status.current_primary.unwrap_or(0),
                    if spec.failover_automatic {
                        "the primary is replaced once it has failed for spec.failover.detectionSeconds with its replicas corroborating, if no acknowledged write can be lost (or spec.failover.acceptDataLoss)"
                    } else {
                        "the primary is not replaced (spec.failover.automatic is false)"
                    }
                ),
            ));
        }
        let current = |s: &MySQLClusterStatus| s.revisions.as_ref().and_then(|r| r.current);
        if current(before).is_some_and(|c| c != revision.number)
            && current(status) == Some(revision.number)
        {
            metrics.rollouts_finished.inc();
            events.push((
                EventType::Normal,
                "RolloutFinished",
                format!("every instance runs revision {}", revision.number),
            ));
        }
        // An instance refused the online change: undo it with a new revision.
        if let Some(message) = &stepped.refusal
            && let Some(revisions) = status.revisions.as_mut()
            && let Some(next) = revision::roll_back(revisions, revision.number, message, &self.now)
        {
            revision::trim_history(status);
            let text = refused_message(revision.number, next, message);
            set_condition(
                &mut status.conditions,
                types::INVALID_SPEC,
                true,
                "ConfigRefused",
                text.clone(),
                self.generation,
                &self.now,
            );
            events.push((EventType::Warning, "ConfigRefused", text));
        }
    }

    async fn write_status(&self, status: MySQLClusterStatus) -> Result<(), Error> {
        let clusters: Api<MySQLCluster> =
            Api::namespaced(self.ctx.client.clone(), &self.names.namespace);
        let mut obj = self.cluster.clone();
        obj.status = Some(status);
        obj.metadata.managed_fields = None;
        clusters
            .replace_status(&obj.name_any(), &PostParams::default(), &obj)
            .await
            .map(drop)
            .map_err(status_error)
    }

    async fn publish(&self, type_: EventType, reason: &str, note: String) {
        publish(self.ctx, self.cluster, type_, reason, note).await;
    }
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

/// How often the primary of a cluster with automatic failover is checked when nothing else
/// brings a reconcile: the failure detection's interval.
pub const HEALTH_CHECK: Duration = Duration::from_secs(2);

/// When to reconcile again, by what happens next.
fn requeue_after(outcome: &Option<StepOutcome>, active: bool, now: Timestamp) -> Duration {
    match outcome {
        _ if active => ACTIVE_REQUEUE,
        None => ACTIVE_REQUEUE * 5,
        Some(StepOutcome::Done) => SAFETY_REQUEUE,
        Some(StepOutcome::Halted(_)) => SAFETY_REQUEUE,
        Some(StepOutcome::Waited(
            WaitReason::DrainGrace { until, .. } | WaitReason::Backoff { until, .. },
        )) => until.since(now).max(Duration::from_millis(200)),
        Some(StepOutcome::Waited(WaitReason::AwaitingApproval { .. } | WaitReason::Paused)) => {
            SAFETY_REQUEUE
        }
        Some(_) => ACTIVE_REQUEUE,
    }
}
