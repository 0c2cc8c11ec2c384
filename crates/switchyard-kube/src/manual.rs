//! A person's request to move the primary (`switchyard switchover CLUSTER --to N`, the
//! annotation `switchyard.io/switchover-to: N`): checked like the engine's own choice of a
//! candidate, then written into the record as the engine's intent, which the engine carries
//! out step by step. The request is consumed whatever its outcome, so a stale annotation never
//! moves the primary later.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use switchyard_plan::engine::ClusterRuntime;
use switchyard_plan::record::{Intent, SwitchoverStep};
use switchyard_plan::versions::catalog;
use switchyard_plan::{Observed, Record};

use crate::crd::MySQLCluster;
use crate::error::Error;
use crate::runtime::KubeRuntime;
use crate::status::ANNOTATION_SWITCHOVER_TO;
use crate::validate::ValidSpec;

/// An event to publish: its type, reason and note.
pub type Note = (EventType, &'static str, String);

/// A manual switchover (`switchyard.io/switchover-to: N`): with no intent under way and the
/// same safety checks as the engine's own choice (the candidate healthy and caught up within
/// the lag bound, replicating from the primary, without errant transactions, and every other
/// instance able to replicate from it), the switchover is written into the record as the
/// engine's intent, and the engine carries it out step by step.
pub async fn manual_switchover(
    cluster: &MySQLCluster,
    runtime: &KubeRuntime,
    spec: &ValidSpec,
    observed: &Observed,
    record: &Record,
) -> Result<Option<Note>, Error> {
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
) -> Result<Option<Note>, Error> {
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
    record_switchover(
        runtime,
        spec,
        record,
        (primary.ordinal, to),
        "manual switchover requested",
    )
    .await?;
    Ok(Some((
        EventType::Normal,
        "SwitchoverRequested",
        format!("switching the primary from {} to {to}", primary.ordinal),
    )))
}

/// Writes a switchover `from -> to` into the record as the engine's intent (logged as `why`),
/// with the record's compare-and-swap: the engine carries it out step by step from the next
/// step on. The caller checked `to` with [`switchover_safety`] and found no intent under way.
///
/// # Errors
/// [`Error::Conflict`] when the record changed since `record` was read.
pub async fn record_switchover(
    runtime: &KubeRuntime,
    spec: &ValidSpec,
    record: &Record,
    (from, to): (u32, u32),
    why: &str,
) -> Result<(), Error> {
    let now = ClusterRuntime::now(runtime);
    let mut next = record.clone();
    next.intent = Some(Intent::Switchover {
        from,
        to,
        step: SwitchoverStep::Requested,
        started: now,
        deadline: now.after(spec.switchover_deadline),
    });
    next.seq = record.seq + 1;
    next.log(now, format!("{why}: {from} -> {to}"), None);
    runtime
        .store_record(record.seq, &next)
        .await
        .map_err(|_| Error::Conflict)
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
