//! A node drain moves the primary first: when the Node the primary's pod runs on is cordoned
//! (`spec.unschedulable`, the first thing `kubectl drain` does), the operator starts a
//! switchover to a replica on a schedulable node, through the manual switchover's path
//! ([`crate::manual`]): the candidate checked like the engine's own choice, the switchover
//! written into the record as the engine's intent. The primary's PodDisruptionBudget
//! (`minAvailable: 1`, [`crate::build::pod_disruption_budgets`]) holds the drain's eviction of
//! the primary until then; once the switchover is done the old pod is a replica, which the
//! replicas' budget lets go.
//!
//! The steps, each reconcile with no intent under way and the primary up: read the primary's
//! Node; if it is cordoned, read the Node of every other instance; among the replicas on a
//! schedulable node that pass [`crate::manual::switchover_safety`], take the least lagging
//! (then the lowest ordinal) and record the switchover (`PrimaryNodeCordoned`, Normal). With
//! none, nothing changes and a Warning `PrimaryNodeCordoned` says why each replica was passed
//! over, published once per reason (this process remembers the last one per cluster, so the
//! check repeated at every reconcile, every 2 s with automatic failover, does not repeat the
//! event while nothing changed).
//!
//! Nodes are cluster-scoped: the namespaced install cannot read them. A Node that cannot be
//! read (forbidden, or any other failure) skips the check for that reconcile, never fails it:
//! the refusal is logged once per process at info level, any other failure at warn level. A
//! Node that does not exist (deleted) counts as not cordoned.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use switchyard_plan::{Observed, Record};

use crate::error::Error;
use crate::manual::{self, Note};
use crate::runtime::KubeRuntime;
use crate::validate::ValidSpec;

/// The reason of the events this module publishes.
pub const REASON: &str = "PrimaryNodeCordoned";

/// Whether the refusal to read Nodes was logged already (once per process).
static FORBIDDEN_LOGGED: AtomicBool = AtomicBool::new(false);

/// The last Warning published per cluster (by uid, so a cluster recreated under the same name
/// starts afresh): a repeat is not published again.
static LAST_WARNING: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Whether `message` differs from the last warning of `cluster` (remembered from now on);
/// `None` forgets it (the primary's node is not cordoned, or a switchover was recorded).
fn warn_anew(cluster: String, message: Option<&str>) -> bool {
    let mut last = LAST_WARNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match message {
        None => last.remove(&cluster).is_some(),
        Some(m) => last.insert(cluster, m.to_owned()).as_deref() != Some(m),
    }
}

/// The Nodes read in one reconcile: whether each is cordoned, `None` when it could not be read.
struct Nodes {
    api: Api<Node>,
    read: BTreeMap<String, Option<bool>>,
}

impl Nodes {
    async fn cordoned(&mut self, name: &str) -> Option<bool> {
        if let Some(known) = self.read.get(name) {
            return *known;
        }
        let state = match self.api.get_opt(name).await {
            Ok(node) => {
                Some(node.is_some_and(|n| n.spec.and_then(|s| s.unschedulable).unwrap_or(false)))
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                if !FORBIDDEN_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        node = name,
                        "the operator may not read Nodes (a namespaced install): a cordoned \
                         primary node is not noticed, so a drain waits on the primary's \
                         budget until its switchover is requested by hand"
                    );
                }
                None
            }
            Err(e) => {
                tracing::warn!(node = name, error = %e, "could not read the Node; the cordon check is skipped");
                None
            }
        };
        self.read.insert(name.to_owned(), state);
        state
    }
}

/// Moves the primary off a cordoned node (see the module doc): `Some` event when a switchover
/// was recorded, or when none could be (the first time for that reason); `None` when the primary's node is not cordoned, cannot
/// be read, or an intent is under way.
///
/// # Errors
/// [`Error::Conflict`] when the record changed since `record` was read.
pub async fn move_primary_off_cordoned_node(
    runtime: &KubeRuntime,
    spec: &ValidSpec,
    observed: &Observed,
    record: &Record,
) -> Result<Option<Note>, Error> {
    if record.intent.is_some() {
        return Ok(None);
    }
    let Some(primary) = observed.primary().filter(|p| p.health.is_up()) else {
        return Ok(None);
    };
    let seen = runtime.seen();
    let node_of = |o: u32| {
        seen.get(&o)
            .and_then(|s| s.pod.as_ref())
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone())
    };
    let Some(node) = node_of(primary.ordinal) else {
        return Ok(None);
    };
    let mut nodes = Nodes {
        api: Api::all(runtime.client()),
        read: BTreeMap::new(),
    };
    let key = runtime
        .cluster()
        .uid()
        .unwrap_or_else(|| format!("{}/{}", runtime.names().namespace, runtime.names().cluster));
    if nodes.cordoned(&node).await != Some(true) {
        warn_anew(key, None);
        return Ok(None);
    }
    let from = primary.ordinal;
    let mut safe = Vec::new();
    let mut passed_over = Vec::new();
    for i in observed.instances.iter().filter(|i| i.ordinal != from) {
        let o = i.ordinal;
        let Some(n) = node_of(o) else {
            passed_over.push(format!("instance {o} runs on no node"));
            continue;
        };
        match nodes.cordoned(&n).await {
            Some(false) => {}
            Some(true) => {
                passed_over.push(format!("instance {o}'s node {n} is cordoned too"));
                continue;
            }
            None => {
                passed_over.push(format!("instance {o}'s node {n} could not be read"));
                continue;
            }
        }
        match manual::switchover_safety(spec, observed, from, o) {
            Ok(()) => safe.push((i.lag_seconds().unwrap_or(u64::MAX), o)),
            Err(why) => passed_over.push(why),
        }
    }
    let Some((_, to)) = safe.into_iter().min() else {
        let why = if passed_over.is_empty() {
            "the cluster has no replica".to_owned()
        } else {
            passed_over.join("; ")
        };
        tracing::info!(
            cluster = %runtime.names().cluster,
            node = %node,
            reason = %why,
            "the primary's node is cordoned and no replica can take over"
        );
        let message = format!(
            "the primary {from}'s node {node} is cordoned and no replica can take over: {why}; \
             a drain waits until one can"
        );
        return Ok(warn_anew(key, Some(&message)).then_some((EventType::Warning, REASON, message)));
    };
    warn_anew(key, None);
    manual::record_switchover(
        runtime,
        spec,
        record,
        (from, to),
        &format!("the primary's node {node} is cordoned"),
    )
    .await?;
    Ok(Some((
        EventType::Normal,
        REASON,
        format!("the primary {from}'s node {node} is cordoned: switching the primary to {to}"),
    )))
}
