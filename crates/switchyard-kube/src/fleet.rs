//! [`MySQLFleet`] resources: one change (server variables, a server version, or both; or a
//! schema change) rolled over member `MySQLCluster`s in waves, decided by switchyard-plan's [`decide_fleet`] (the decision the local runtime's fleet
//! driver uses: one decision, two runtimes).
//!
//! A reconcile of a fleet is a pipeline, like a cluster's:
//!
//! 1. **Fetch**: the fleet, every `MySQLCluster` and every other `MySQLFleet` of its namespace.
//! 2. **Validate** ([`prepare`], pure): exactly one of `spec.clusters` and `spec.selector`, a
//!    change (`config` of variables the operator does not own, a `version`, or both), a bake
//!    that parses, every named member existing, a version every member may move to (the
//!    version rules, from the highest version the member has run; no member pinning
//!    `spec.image`), no member that another fleet of the namespace also claims, and
//!    the waves [`FleetSpec::validate`] accepts (at least one member, a canary no larger than
//!    the fleet or `maxAtOnce`). Bad input sets `InvalidSpec` (reason and message naming what
//!    is wrong and what to do), a Warning event, and changes nothing: no member is patched and
//!    the record is left as it was.
//! 3. **Observe** ([`observe_member`], pure): each member as a [`ClusterObservation`], read
//!    only from the member's spec and status: it carries the change when its `spec.config`
//!    holds every variable of the fleet's and its `spec.version` is the fleet's; its rollout is halted when its `Halted` condition
//!    is true (or the change made its spec invalid or blocked), done when its status describes
//!    its current generation, its current revision is the revision its spec asks for and it is
//!    `Available`; it is healthy (replication running) when it is `Available`, not `Degraded`
//!    and every replica instance is ready; its lag is its largest replica's.
//! 4. **Decide and record**: [`decide_fleet`] gives the next step; [`apply`] records it in the
//!    fleet's [`FleetRecord`], which is written to the fleet's status with compare-and-swap on
//!    the resource version (a conflict retries the whole reconcile) **before** anything is
//!    done: the controller keeps nothing in memory, so a restarted operator (or a new leader)
//!    resumes from the status.
//! 5. **Act**: the only act is a start: a merge patch of the member's `spec.config` with the
//!    fleet's variables and of its `spec.version` (field manager [`FLEET_FIELD_MANAGER`]), skipped when the member
//!    carries them already. A start recorded but not patched (the operator stopped between
//!    the two) is given again by the planner; a member already patched is never patched again.
//!
//! A person's command is the annotation [`ANNOTATION_FLEET_COMMAND`] on the fleet (`resume`,
//! `resume skip=CLUSTER`, `abort`): it is recorded in the record ([`FleetRecord::request`]),
//! then the annotation is removed; a command that cannot apply is dropped with a Warning event
//! (`CommandRefused`) saying why.
//!
//! A schema change (`spec.schema`, alone in its revision) changes no member's spec: its start
//! creates the member's own [`SchemaChange`] ([`member_schema_change`], named by
//! [`member_schema_change_name`], owned by the fleet), which the operator's schema controller
//! judges with the analyzer and rolls; the member is done when it is `Complete` and halted
//! when it is `Refused` or `Halted`.
//!
//! Known limits: there
//! is no user check on Kubernetes (the bake judges the member's own status); a member's status
//! is as fresh as its own reconcile (a pod's change reconciles it at once, otherwise every
//! 2 s while it rolls or has automatic failover).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource as _, ResourceExt};
use switchyard_plan::Timestamp;
use switchyard_plan::fleet::{
    ClusterObservation, ClusterRollout, ClusterState, FleetAction, FleetCommand, FleetRecord,
    FleetSpec, FleetState, FleetWait, UserCheck, apply, decide_fleet,
};

use crate::context::{ACTIVE_REQUEUE, Context, SAFETY_REQUEUE};
use crate::crd::{
    FleetMemberStatus, FleetSchema, MySQLCluster, MySQLClusterStatus, MySQLFleet, MySQLFleetSpec,
    MySQLFleetStatus, SchemaChange, SchemaChangeSpec, SchemaMethod,
};
use crate::error::{Error, is_conflict};
use crate::status::{camel, set_condition};
use crate::validate::{is_operator_owned, normalize_variable, parse_duration};
use sha2::{Digest as _, Sha256};
use switchyard_plan::versions::{Flavor, Version, catalog};

/// The field manager of the fleet's patches of its members' specs.
pub const FLEET_FIELD_MANAGER: &str = "switchyard-fleet";

/// The label on every `SchemaChange` a fleet created: the fleet's name.
pub const LABEL_FLEET: &str = "switchyard.io/fleet";

/// A person's command to a fleet: `resume`, `resume skip=CLUSTER` or `abort`.
pub const ANNOTATION_FLEET_COMMAND: &str = "switchyard.io/fleet-command";

/// The condition types a `MySQLFleet` reports.
pub mod types {
    /// The spec cannot be acted on; nothing was changed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Members are rolling or baking.
    pub const PROGRESSING: &str = "Progressing";
    /// The fleet stopped on a member; a person must resume or abort.
    pub const STOPPED: &str = "Stopped";
    /// Every member of the current revision is done (or skipped).
    pub const COMPLETE: &str = "Complete";
}

/// Why a fleet's spec cannot be acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetSpecError {
    /// Neither or both of `clusters` and `selector`.
    #[error("give the members either by name (spec.clusters) or by label (spec.selector), not {0}")]
    Members(&'static str),
    /// The selector matches every cluster, or cannot be read.
    #[error("spec.selector {0}")]
    Selector(String),
    /// The change sets nothing, or a variable it cannot.
    #[error("spec.config {0}")]
    Config(String),
    /// The version does not parse, or the rules forbid it for a member.
    #[error("spec.version {0}")]
    Version(String),
    /// The schema change is not one ALTER TABLE, is mixed with another change, or forces
    /// without a stated risk.
    #[error("spec.schema {0}")]
    Schema(String),
    /// The bake does not parse, or a count is negative.
    #[error("{0}")]
    Field(String),
    /// Named members that do not exist.
    #[error(
        "no MySQLCluster {names} in namespace {namespace}: create it or remove it from \
         spec.clusters"
    )]
    UnknownMember {
        /// The missing names, comma-separated.
        names: String,
        /// The namespace.
        namespace: String,
    },
    /// A member another fleet also claims.
    #[error(
        "cluster {cluster} is also a member of MySQLFleet {other}: a cluster belongs to one \
         fleet at a time; remove it from one of them"
    )]
    Shared {
        /// The cluster.
        cluster: String,
        /// The other fleet.
        other: String,
    },
    /// The planner refuses the waves (no member, a canary too large, ...).
    #[error("{0}")]
    Plan(#[from] switchyard_plan::fleet::FleetError),
}

impl FleetSpecError {
    /// A bounded category for event and condition reasons.
    pub fn category(&self) -> &'static str {
        match self {
            FleetSpecError::Members(_) => "members",
            FleetSpecError::Selector(_) => "selector",
            FleetSpecError::Config(_) => "config",
            FleetSpecError::Version(_) => "version",
            FleetSpecError::Schema(_) => "schema",
            FleetSpecError::Field(_) => "field",
            FleetSpecError::UnknownMember { .. } => "unknown-member",
            FleetSpecError::Shared { .. } => "shared-member",
            FleetSpecError::Plan(e) => e.category(),
        }
    }
}

/// A fleet whose spec was accepted: the planner's spec and its change (variable names
/// normalized).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The planner's spec: the members in roll order and the change's name.
    pub spec: FleetSpec,
    /// The variables set on every member, names normalized.
    pub config: BTreeMap<String, String>,
    /// The server version every member is given (`X.Y.Z`), if the change has one.
    pub version: Option<String>,
    /// The schema change every member is given (one `SchemaChange` each), if the change is
    /// one; then `config` is empty and `version` is `None`.
    pub schema: Option<FleetSchema>,
}

/// The name of the `SchemaChange` a fleet creates for a member:
/// `FLEET-MEMBER-HASH`, the hash the first 8 hex digits of the statement's SHA-256, so a
/// second statement gets a second object and a restarted controller finds the first.
pub fn member_schema_change_name(fleet: &str, member: &str, statement: &str) -> String {
    let digest = Sha256::digest(statement.trim().as_bytes());
    format!("{fleet}-{member}-{}", &hex::encode(digest)[..8])
}

/// The member's `SchemaChange` of the fleet's schema change, if it exists.
fn find_member_schema_change<'a>(
    fleet: &str,
    member: &str,
    schema: &FleetSchema,
    changes: &'a [SchemaChange],
) -> Option<&'a SchemaChange> {
    let name = member_schema_change_name(fleet, member, &schema.statement);
    changes.iter().find(|c| c.name_any() == name)
}

/// A fleet's schema change's name in its record and history: the statement, its whitespace
/// collapsed.
fn schema_change_label(statement: &str) -> String {
    statement.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a fleet's schema change: alone (no `config`, no `version`), one ALTER TABLE
/// statement, and `acceptedRisk` with `force`.
fn check_schema(spec: &MySQLFleetSpec, schema: &FleetSchema) -> Result<(), FleetSpecError> {
    let refuse = |what: &str| Err(FleetSpecError::Schema(what.to_owned()));
    if !spec.config.is_empty() || spec.version.is_some() {
        return refuse(
            "rolls alone: a fleet revision is a schema change or a configuration and version \
             change; remove spec.config and spec.version, or spec.schema",
        );
    }
    let words: Vec<String> = schema
        .statement
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    if words != ["ALTER", "TABLE"] {
        return refuse(
            "statement must be one ALTER TABLE db.table ... statement (as a SchemaChange's)",
        );
    }
    if schema.force
        && schema
            .accepted_risk
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        return refuse("force needs acceptedRisk: say, in words, which risk is accepted");
    }
    Ok(())
}

/// The change's name in the record and history: the version, then the variables in name
/// order (`version=11.8.3 innodb_buffer_pool_size=256M max_connections=300`).
pub fn change_name(config: &BTreeMap<String, String>, version: Option<&str>) -> String {
    let set: Vec<String> = version
        .map(|v| format!("version={v}"))
        .into_iter()
        .chain(config.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    set.join(" ")
}

/// Whether `selector` matches `labels` (`matchLabels` and `matchExpressions` with `In`,
/// `NotIn`, `Exists`, `DoesNotExist`).
///
/// # Errors
/// An unknown operator, or `In`/`NotIn` without values, in words.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "has a {} expression on {:?} without values: list at least one",
                    e.operator, e.key
                ));
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => {
                return Err(format!(
                    "has an unknown operator {other:?}: use In, NotIn, Exists or DoesNotExist"
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// The members a fleet names or selects among `clusters`, in roll order (listed order, or
/// name order for a selector), without checking that named ones exist.
fn members_of(spec: &MySQLFleetSpec, clusters: &[MySQLCluster]) -> Result<Vec<String>, String> {
    match &spec.selector {
        Some(selector) => {
            let mut out = Vec::new();
            for c in clusters {
                if selector_matches(selector, c.labels())? {
                    out.push(c.name_any());
                }
            }
            out.sort();
            Ok(out)
        }
        None => Ok(spec.clusters.iter().map(|c| c.trim().to_owned()).collect()),
    }
}

/// Checks a fleet's spec against the clusters and the other fleets of its namespace, and
/// gives the planner's spec. Pure.
///
/// # Errors
/// The first problem found, as [`FleetSpecError`].
pub fn prepare(
    fleet: &MySQLFleet,
    clusters: &[MySQLCluster],
    fleets: &[MySQLFleet],
) -> Result<Prepared, FleetSpecError> {
    let spec = &fleet.spec;
    match (&spec.selector, spec.clusters.is_empty()) {
        (Some(_), false) => return Err(FleetSpecError::Members("both")),
        (None, true) => return Err(FleetSpecError::Members("neither")),
        (Some(s), true) if selector_is_empty(s) => {
            return Err(FleetSpecError::Selector(
                "is empty and would match every cluster of the namespace: give matchLabels \
                 or matchExpressions"
                    .into(),
            ));
        }
        _ => {}
    }
    if let Some(schema) = &spec.schema {
        check_schema(spec, schema)?;
    } else if spec.config.is_empty() && spec.version.is_none() {
        return Err(FleetSpecError::Config(
            "sets no variable and neither spec.version nor spec.schema is given: give at \
             least one variable (innodb_buffer_pool_size: 256M), a version or a schema change"
                .into(),
        ));
    }
    let mut config = BTreeMap::new();
    for (name, value) in &spec.config {
        let normalized = normalize_variable(name);
        if normalized.is_empty()
            || !normalized
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(FleetSpecError::Config(format!(
                "names {name:?}, which is not a server variable: use letters, digits and \
                 underscores"
            )));
        }
        if is_operator_owned(&normalized) {
            return Err(FleetSpecError::Config(format!(
                "sets {normalized}, which the operator owns on every cluster: remove it"
            )));
        }
        if value.trim().is_empty() {
            return Err(FleetSpecError::Config(format!(
                "gives {normalized} an empty value: give one"
            )));
        }
        if config
            .insert(normalized.clone(), value.trim().to_owned())
            .is_some()
        {
            return Err(FleetSpecError::Config(format!(
                "names {normalized} twice (spelled two ways): keep one"
            )));
        }
    }
    let bake = parse_duration(&spec.bake).ok_or_else(|| {
        FleetSpecError::Field(format!(
            "spec.bake {:?} is not a duration: write it as 90s, 5m or 1h30m",
            spec.bake
        ))
    })?;
    let count = |field: &str, value: i32| {
        usize::try_from(value).map_err(|_| {
            FleetSpecError::Field(format!("spec.{field} is {value}: set it to at least 1"))
        })
    };
    let canary = count("canary", spec.canary)?;
    let max_at_once = count("maxAtOnce", spec.max_at_once)?;
    let max_lag_seconds = u64::try_from(spec.max_lag_seconds).map_err(|_| {
        FleetSpecError::Field(format!(
            "spec.maxLagSeconds is {}: set it to 0 or more",
            spec.max_lag_seconds
        ))
    })?;
    let members = members_of(spec, clusters).map_err(FleetSpecError::Selector)?;
    let known: BTreeSet<String> = clusters.iter().map(ResourceExt::name_any).collect();
    let unknown: Vec<&str> = members
        .iter()
        .filter(|m| !m.is_empty() && !known.contains(*m))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(FleetSpecError::UnknownMember {
            names: unknown.join(", "),
            namespace: fleet.namespace().unwrap_or_default(),
        });
    }
    for other in fleets {
        if other.name_any() == fleet.name_any() || other.metadata.deletion_timestamp.is_some() {
            continue;
        }
        // Another fleet's selector that cannot be read claims nothing: it reports itself.
        let theirs = members_of(&other.spec, clusters).unwrap_or_default();
        if let Some(shared) = members.iter().find(|m| theirs.contains(m)) {
            return Err(FleetSpecError::Shared {
                cluster: shared.clone(),
                other: other.name_any(),
            });
        }
    }
    let version = match &spec.version {
        Some(text) => {
            let members: Vec<&MySQLCluster> = members
                .iter()
                .filter_map(|m| clusters.iter().find(|c| c.name_any() == *m))
                .collect();
            Some(check_version(text, &members)?)
        }
        None => None,
    };
    let planned = FleetSpec {
        clusters: members,
        canary,
        max_at_once,
        bake,
        max_lag_seconds,
        change: match &spec.schema {
            Some(schema) => schema_change_label(&schema.statement),
            None => change_name(&config, version.as_deref()),
        },
    };
    planned.validate()?;
    Ok(Prepared {
        spec: planned,
        config,
        version,
        schema: spec.schema.clone(),
    })
}

/// Checks the fleet's version against every member: it parses as `X.Y.Z`, no member pins
/// `spec.image` (the fleet would change the version and leave the image), and the version
/// rules allow the in-place move from the highest version the member has run (its status),
/// else from its spec's version. Gives the version as written, trimmed.
fn check_version(text: &str, members: &[&MySQLCluster]) -> Result<String, FleetSpecError> {
    let text = text.trim();
    let to = Version::parse(text)
        .ok()
        .filter(|_| {
            text.split('.').count() == 3 && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .ok_or_else(|| {
            FleetSpecError::Version(format!(
                "{text:?} is not a server version: write major.minor.patch, such as 11.8.3"
            ))
        })?;
    for member in members {
        let name = member.name_any();
        if member.spec.image.is_some() {
            return Err(FleetSpecError::Version(format!(
                "cannot be rolled to cluster {name}, which pins spec.image: the image must run \
                 the version, so change that cluster's spec.version and spec.image together \
                 yourself, or remove spec.image there to use the official image"
            )));
        }
        let flavor = match member.spec.flavor.trim() {
            "mysql" => Flavor::Mysql,
            "mariadb" => Flavor::Mariadb,
            other => {
                return Err(FleetSpecError::Version(format!(
                    "cannot be judged for cluster {name}, whose flavor {other:?} is unknown: \
                     fix that cluster's spec.flavor"
                )));
            }
        };
        let status = member.status.as_ref();
        let from_text = status
            .and_then(|s| s.highest_version.as_deref())
            .unwrap_or(&member.spec.version);
        let Ok(from) = Version::parse(from_text) else {
            return Err(FleetSpecError::Version(format!(
                "cannot be judged for cluster {name}, whose version {from_text:?} does not \
                 parse: fix that cluster's spec.version"
            )));
        };
        let verdict = catalog()
            .check_in_place(flavor, from, to)
            .map_err(|e| FleetSpecError::Version(format!("{text} for cluster {name}: {e}")))?;
        if !verdict.allowed {
            return Err(FleetSpecError::Version(format!(
                "{text} is refused for cluster {name} (from {from}, the highest version it \
                 has run): {} ({})",
                verdict.reason, verdict.manual
            )));
        }
    }
    Ok(text.to_owned())
}

/// The member's values of the fleet's variables (names normalized), `None` for unset.
fn member_values(
    cluster: &MySQLCluster,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<String>> {
    let theirs: BTreeMap<String, String> = cluster
        .spec
        .config
        .iter()
        .map(|(k, v)| (normalize_variable(k), v.trim().to_owned()))
        .collect();
    config
        .keys()
        .map(|k| (k.clone(), theirs.get(k).cloned()))
        .collect()
}

/// Whether the member's spec holds the fleet's change: every variable, and the version.
pub fn carries(cluster: &MySQLCluster, prepared: &Prepared) -> bool {
    prepared
        .version
        .as_ref()
        .is_none_or(|v| cluster.spec.version.trim() == v)
        && member_values(cluster, &prepared.config)
            .iter()
            .all(|(k, v)| v.as_ref() == prepared.config.get(k))
}

fn condition_true<'a>(
    cluster: &'a MySQLCluster,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// What the member's own status says is wrong with its health, in words, if anything.
pub fn member_health_problem(cluster: &MySQLCluster) -> Option<String> {
    let status = cluster.status.as_ref()?;
    let mut problems = Vec::new();
    if !status
        .conditions
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True")
    {
        problems.push("it is not Available".to_owned());
    }
    if let Some(c) = condition_true(cluster, "Degraded") {
        problems.push(format!("Degraded ({}): {}", c.reason, c.message));
    }
    for i in &status.instances {
        if i.role == "replica" && !i.ready {
            problems.push(format!(
                "replica instance {} is not ready{}",
                i.ordinal,
                i.last_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// One member as the fleet's planner sees it, read from its spec and status only; `None`
/// while the member has no status yet. Pure.
pub fn observe_member(
    cluster: &MySQLCluster,
    prepared: &Prepared,
    fleet: &str,
    changes: &[SchemaChange],
    now: Timestamp,
) -> Option<ClusterObservation> {
    let status = cluster.status.as_ref()?;
    let (change, rollout) = match &prepared.schema {
        Some(schema) => {
            match find_member_schema_change(fleet, &cluster.name_any(), schema, changes) {
                None => ("no schema change".to_owned(), ClusterRollout::Done),
                Some(sc) => (prepared.spec.change.clone(), schema_rollout(sc)),
            }
        }
        None => (
            spec_change(cluster, prepared),
            spec_rollout(cluster, status),
        ),
    };
    Some(ClusterObservation {
        change: Some(change),
        rollout,
        replication_running: member_health_problem(cluster).is_none(),
        lag_seconds: status.instances.iter().filter_map(|i| i.lag_seconds).max(),
        user_check: UserCheck::NotConfigured,
        observed_at: now,
    })
}

/// The change a member's spec carries, as the fleet names changes: the fleet's own when the
/// spec carries it, else the member's values of the fleet's version and variables.
fn spec_change(cluster: &MySQLCluster, prepared: &Prepared) -> String {
    if carries(cluster, prepared) {
        return prepared.spec.change.clone();
    }
    let values: Vec<String> = prepared
        .version
        .as_ref()
        .map(|_| format!("version={}", cluster.spec.version.trim()))
        .into_iter()
        .chain(
            member_values(cluster, &prepared.config)
                .into_iter()
                .map(|(k, v)| format!("{k}={}", v.unwrap_or_else(|| "(unset)".into()))),
        )
        .collect();
    values.join(" ")
}

/// A member's own rollout, from its status: halted on `Halted` (or `InvalidSpec`,
/// `UpgradeBlocked` of its current generation), done when the status describes its current
/// generation at the revision its spec asks for and it is `Available`, rolling otherwise.
fn spec_rollout(cluster: &MySQLCluster, status: &MySQLClusterStatus) -> ClusterRollout {
    let current_generation = status.observed_generation == cluster.metadata.generation;
    let blocked = ["Halted", "InvalidSpec", "UpgradeBlocked"]
        .iter()
        .find_map(|t| condition_true(cluster, t));
    match blocked {
        Some(c) if c.type_ == "Halted" || current_generation => ClusterRollout::Halted {
            reason: format!("{} {}: {}", c.type_, c.reason, c.message),
        },
        _ => {
            let revisions = status.revisions.as_ref();
            let at_target = revisions.is_some_and(|r| r.current.is_some() && r.current == r.update);
            let available = condition_true(cluster, "Available").is_some();
            if current_generation && at_target && available {
                ClusterRollout::Done
            } else {
                ClusterRollout::Rolling
            }
        }
    }
}

/// A member's schema change's rollout, from its `SchemaChange`'s status: done when
/// `Complete`, halted when `Refused` (the analyzer's verdict) or `Halted`, rolling otherwise.
fn schema_rollout(sc: &SchemaChange) -> ClusterRollout {
    let status = sc.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    match phase {
        "Complete" => ClusterRollout::Done,
        "Refused" | "Halted" => {
            let why = status
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == phase && c.status == "True")
                })
                .map(|c| format!("{} ({}): {}", c.type_, c.reason, c.message))
                .unwrap_or_else(|| phase.to_owned());
            ClusterRollout::Halted {
                reason: format!("SchemaChange {} {why}", sc.name_any()),
            }
        }
        _ => ClusterRollout::Rolling,
    }
}

/// The `SchemaChange` a fleet creates for a member: the fleet's statement for that cluster,
/// labelled with the fleet and owned by it (deleted with it).
pub fn member_schema_change(
    fleet: &MySQLFleet,
    member: &str,
    schema: &FleetSchema,
) -> SchemaChange {
    let mut sc = SchemaChange::new(
        &member_schema_change_name(&fleet.name_any(), member, &schema.statement),
        SchemaChangeSpec {
            cluster_ref: member.to_owned(),
            statement: schema.statement.trim().to_owned(),
            method: SchemaMethod::Auto,
            force: schema.force,
            accepted_risk: schema.accepted_risk.clone(),
        },
    );
    sc.metadata.namespace = fleet.namespace();
    sc.metadata.labels = Some([(LABEL_FLEET.to_owned(), fleet.name_any())].into());
    sc.metadata.owner_references = fleet.controller_owner_ref(&()).map(|o| vec![o]);
    sc
}

/// The merge patch that gives a member the change: the fleet's variables into its
/// `spec.config`, removing a spelling of the same variable other than the fleet's, and the
/// fleet's version as its `spec.version`.
pub fn member_patch(cluster: &MySQLCluster, prepared: &Prepared) -> serde_json::Value {
    let config = &prepared.config;
    let mut set = serde_json::Map::new();
    for k in cluster.spec.config.keys() {
        let normalized = normalize_variable(k);
        if *k != normalized && config.contains_key(&normalized) {
            set.insert(k.clone(), serde_json::Value::Null);
        }
    }
    for (k, v) in config {
        set.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    let mut spec = serde_json::Map::new();
    if !set.is_empty() {
        spec.insert("config".into(), serde_json::Value::Object(set));
    }
    if let Some(version) = &prepared.version {
        spec.insert("version".into(), serde_json::Value::String(version.clone()));
    }
    serde_json::json!({ "spec": spec })
}

/// Parses the command annotation: `resume`, `resume skip=CLUSTER`, `abort`.
///
/// # Errors
/// What is wrong with it, in words.
pub fn parse_command(text: &str) -> Result<FleetCommand, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["abort"] => Ok(FleetCommand::Abort),
        ["resume"] => Ok(FleetCommand::Resume { skip: None }),
        ["resume", skip] if skip.starts_with("skip=") && skip.len() > 5 => {
            Ok(FleetCommand::Resume {
                skip: Some(skip[5..].to_owned()),
            })
        }
        _ => Err(format!(
            "{ANNOTATION_FLEET_COMMAND} {text:?} is not a command: use resume, resume \
             skip=CLUSTER or abort"
        )),
    }
}

fn cluster_state_word(state: &ClusterState) -> &'static str {
    match state {
        ClusterState::Pending => "pending",
        ClusterState::Rolling { .. } => "rolling",
        ClusterState::Baking { .. } => "baking",
        ClusterState::Done { .. } => "done",
        ClusterState::Stopped { .. } => "stopped",
        ClusterState::Skipped { .. } => "skipped",
    }
}

/// The status of a fleet whose spec was accepted, from its record and the planner's last
/// answer. Pure.
pub fn summarize(
    status: &mut MySQLFleetStatus,
    record: &FleetRecord,
    action: &FleetAction,
    note: Option<&str>,
    generation: Option<i64>,
    now: &Time,
) {
    status.observed_generation = generation;
    status.revision = record.current().map(|r| r.number);
    status.change = record.current().map(|r| r.change.clone());
    status.members = record
        .waves
        .iter()
        .enumerate()
        .flat_map(|(wave, members)| {
            members.iter().map(move |name| FleetMemberStatus {
                name: name.clone(),
                wave: u32::try_from(wave).unwrap_or(u32::MAX),
                state: record
                    .cluster(name)
                    .map_or("pending", cluster_state_word)
                    .to_owned(),
            })
        })
        .collect();
    let baking = record
        .clusters
        .values()
        .any(|s| matches!(s, ClusterState::Baking { .. }));
    let (phase, message) = match (&record.state, action) {
        (FleetState::Idle, _) => ("Pending", action.to_string()),
        (FleetState::Running, _) => (
            if baking { "Baking" } else { "Rolling" },
            action.to_string(),
        ),
        (
            FleetState::Stopped {
                cluster, reason, ..
            },
            _,
        ) => (
            "Stopped",
            format!(
                "stopped on cluster {cluster}: {reason}{}; resume once it is healthy \
                 (`kubectl annotate mysqlfleet NAME {ANNOTATION_FLEET_COMMAND}=resume`), skip it \
                 (`resume skip={cluster}`), or abort",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            ),
        ),
        (FleetState::Done { .. }, _) => ("Done", "every member rolled and baked".to_owned()),
        (FleetState::Aborted { .. }, _) => ("Aborted", action.to_string()),
    };
    status.phase = Some(phase.to_owned());
    status.message = Some(message.clone());
    let c = &mut status.conditions;
    set_condition(c, types::INVALID_SPEC, false, "Valid", "", generation, now);
    let running = record.state == FleetState::Running;
    set_condition(
        c,
        types::PROGRESSING,
        running,
        if running { phase } else { "Idle" },
        if running { message.as_str() } else { "" },
        generation,
        now,
    );
    let stopped = match &record.state {
        FleetState::Stopped { reason, .. } => Some(camel(reason.key())),
        _ => None,
    };
    set_condition(
        c,
        types::STOPPED,
        stopped.is_some(),
        stopped.as_deref().unwrap_or("NotStopped"),
        if stopped.is_some() {
            message.as_str()
        } else {
            ""
        },
        generation,
        now,
    );
    let done = matches!(record.state, FleetState::Done { .. });
    set_condition(
        c,
        types::COMPLETE,
        done,
        if done {
            "AllMembersDone"
        } else {
            "NotComplete"
        },
        if done { message.as_str() } else { "" },
        generation,
        now,
    );
}

/// Reconciles one `MySQLFleet`: validate, observe its members, take one step of the fleet's
/// decision (recorded in the status first), and carry out a start.
///
/// # Errors
/// [`Error::Read`] when the namespace's clusters or fleets cannot be listed,
/// [`Error::Conflict`] or [`Error::WriteStatus`] when the status cannot be written,
/// [`Error::Apply`] when a member cannot be patched.
pub async fn reconcile_fleet(fleet: Arc<MySQLFleet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = fleet.namespace().unwrap_or_default();
    let clusters_api: Api<MySQLCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let fleets_api: Api<MySQLFleet> = Api::namespaced(ctx.client.clone(), &ns);
    let read = |what| {
        move |source| Error::Read {
            what,
            source: Box::new(source),
        }
    };
    let clusters = clusters_api
        .list(&ListParams::default())
        .await
        .map_err(read("MySQLClusters"))?
        .items;
    let fleets = fleets_api
        .list(&ListParams::default())
        .await
        .map_err(read("MySQLFleets"))?
        .items;
    let now = ctx.clock.as_ref()();
    let now_time = ctx.now_time();
    let generation = fleet.metadata.generation;
    let old = fleet.status.clone().unwrap_or_default();
    let mut status = old.clone();

    let prepared = match prepare(&fleet, &clusters, &fleets) {
        Ok(p) => p,
        Err(e) => return refuse(&ctx, &fleets_api, &fleet, old, &e).await,
    };
    let changes_api: Api<SchemaChange> = Api::namespaced(ctx.client.clone(), &ns);
    let changes = if prepared.schema.is_some() {
        changes_api
            .list(&ListParams::default().labels(&format!("{LABEL_FLEET}={}", fleet.name_any())))
            .await
            .map_err(read("SchemaChanges"))?
            .items
    } else {
        Vec::new()
    };

    let mut record = old.record.clone().unwrap_or_default();
    let mut command_note = None;
    let command = fleet.annotations().get(ANNOTATION_FLEET_COMMAND).cloned();
    if let Some(text) = &command {
        match parse_command(text).and_then(|c| record.request(c, now).map_err(|e| e.to_string())) {
            Ok(()) => {}
            Err(e) => command_note = Some(e),
        }
    }

    let by_name: BTreeMap<String, &MySQLCluster> =
        clusters.iter().map(|c| (c.name_any(), c)).collect();
    let observations: BTreeMap<String, ClusterObservation> = prepared
        .spec
        .clusters
        .iter()
        .map(String::as_str)
        .chain(record.in_order())
        .filter_map(|name| {
            let seen = observe_member(
                by_name.get(name)?,
                &prepared,
                &fleet.name_any(),
                &changes,
                now,
            )?;
            Some((name.to_owned(), seen))
        })
        .collect();
    let action = match decide_fleet(&prepared.spec, &record, &observations, now) {
        Ok(a) => a,
        Err(e) => return refuse(&ctx, &fleets_api, &fleet, old, &e.into()).await,
    };
    let acted = !matches!(action, FleetAction::Wait { .. });
    if acted {
        apply(&mut record, &action, now);
        record.seq += 1;
    }
    let note = match &record.state {
        FleetState::Stopped { cluster, .. } => by_name
            .get(cluster.as_str())
            .and_then(|c| member_health_problem(c).map(|p| format!("its status says: {p}"))),
        _ => None,
    };
    summarize(
        &mut status,
        &record,
        &action,
        note.as_deref(),
        generation,
        &now_time,
    );
    if let Some(refused) = &command_note {
        status.message = Some(format!(
            "{} (command not taken: {refused})",
            status.message.as_deref().unwrap_or_default()
        ));
    }
    status.record = Some(record.clone());
    if status != old {
        write_status(&fleets_api, &fleet, status).await?;
    }
    if let Some(refused) = &command_note {
        let note = format!("command not taken: {refused}");
        publish(&ctx, &fleet, EventType::Warning, "CommandRefused", note).await;
    }
    if command.is_some() {
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_FLEET_COMMAND: null}}});
        fleets_api
            .patch(
                &fleet.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| Error::Apply {
                kind: "MySQLFleet",
                name: fleet.name_any(),
                source: Box::new(source),
            })?;
    }

    match &action {
        FleetAction::Start { cluster, change } => {
            if let Some(schema) = &prepared.schema {
                if find_member_schema_change(&fleet.name_any(), cluster, schema, &changes).is_none()
                {
                    let sc = member_schema_change(&fleet, cluster, schema);
                    match changes_api.create(&PostParams::default(), &sc).await {
                        Ok(_) => {}
                        // Created by an earlier reconcile that stopped before its record.
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(source) => {
                            return Err(Error::Apply {
                                kind: "SchemaChange",
                                name: sc.name_any(),
                                source: Box::new(source),
                            });
                        }
                    }
                }
            } else if let Some(member) = by_name.get(cluster.as_str())
                && !carries(member, &prepared)
            {
                clusters_api
                    .patch(
                        cluster,
                        &PatchParams {
                            field_manager: Some(FLEET_FIELD_MANAGER.into()),
                            ..PatchParams::default()
                        },
                        &Patch::Merge(&member_patch(member, &prepared)),
                    )
                    .await
                    .map_err(|source| Error::Apply {
                        kind: "MySQLCluster",
                        name: cluster.clone(),
                        source: Box::new(source),
                    })?;
            }
            let note = format!("cluster {cluster} given {change}");
            publish(&ctx, &fleet, EventType::Normal, "MemberStarted", note).await;
        }
        FleetAction::Stop { cluster, reason } => {
            let note = format!(
                "stopped on cluster {cluster}: {reason}{}",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            );
            publish(&ctx, &fleet, EventType::Warning, "FleetStopped", note).await;
        }
        FleetAction::Baked { cluster } => {
            let note = format!("cluster {cluster} rolled and baked");
            publish(&ctx, &fleet, EventType::Normal, "MemberDone", note).await;
        }
        FleetAction::Refuse { command, reason } => {
            let note = format!("{command} refused: {reason}");
            publish(&ctx, &fleet, EventType::Warning, "CommandRefused", note).await;
        }
        FleetAction::Done if old.phase.as_deref() != Some("Done") => {
            let note = "every member rolled and baked".to_owned();
            publish(&ctx, &fleet, EventType::Normal, "FleetDone", note).await;
        }
        _ => {}
    }
    Ok(match &action {
        FleetAction::Wait {
            reason: FleetWait::Baking { until, .. },
        } => Action::requeue(
            Duration::from_millis(until.0.saturating_sub(now.0))
                .clamp(ACTIVE_REQUEUE, SAFETY_REQUEUE),
        ),
        FleetAction::Wait {
            reason: FleetWait::Stopped { .. } | FleetWait::PreviousUnfinished { .. },
        }
        | FleetAction::Done
        | FleetAction::Aborted { .. } => Action::requeue(SAFETY_REQUEUE),
        _ => Action::requeue(ACTIVE_REQUEUE),
    })
}

/// Bad input: `InvalidSpec` with the reason, a Warning event, and nothing else changed (the
/// record is kept as it was, no member is touched).
async fn refuse(
    ctx: &Context,
    api: &Api<MySQLFleet>,
    fleet: &MySQLFleet,
    old: MySQLFleetStatus,
    e: &FleetSpecError,
) -> Result<Action, Error> {
    let generation = fleet.metadata.generation;
    let message = e.to_string();
    let mut status = old.clone();
    status.observed_generation = generation;
    status.phase = Some("Invalid".into());
    status.message = Some(message.clone());
    set_condition(
        &mut status.conditions,
        types::INVALID_SPEC,
        true,
        &camel(e.category()),
        message.clone(),
        generation,
        &ctx.now_time(),
    );
    if status != old {
        write_status(api, fleet, status).await?;
        publish(ctx, fleet, EventType::Warning, "InvalidSpec", message).await;
    }
    Ok(Action::requeue(SAFETY_REQUEUE))
}

async fn write_status(
    api: &Api<MySQLFleet>,
    fleet: &MySQLFleet,
    status: MySQLFleetStatus,
) -> Result<(), Error> {
    let mut obj = fleet.clone();
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

async fn publish(ctx: &Context, fleet: &MySQLFleet, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "ReconcileFleet".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &fleet.object_ref(&())).await {
        tracing::warn!(reason, error = %e, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        Condition, LabelSelectorRequirement, Time,
    };

    use super::*;
    use crate::crd::{InstanceStatus, MySQLClusterSpec, MySQLClusterStatus, Revisions};

    fn cond(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    /// A member at generation 2 whose status describes `observed` and runs revision 3.
    fn member(config: &[(&str, &str)], observed: i64) -> MySQLCluster {
        let mut c = MySQLCluster::new(
            "a",
            MySQLClusterSpec {
                config: config
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..MySQLClusterSpec::default()
            },
        );
        c.metadata.generation = Some(2);
        c.status = Some(MySQLClusterStatus {
            observed_generation: Some(observed),
            conditions: vec![cond("Available", "True"), cond("Degraded", "False")],
            revisions: Some(Revisions {
                current: Some(3),
                update: Some(3),
                history: vec![],
            }),
            instances: vec![InstanceStatus {
                ordinal: 1,
                role: "replica".into(),
                ready: true,
                lag_seconds: Some(4),
                ..InstanceStatus::default()
            }],
            ..MySQLClusterStatus::default()
        });
        c
    }

    fn prepared() -> Prepared {
        let config: BTreeMap<String, String> =
            [("max_connections".to_owned(), "300".to_owned())].into();
        Prepared {
            spec: FleetSpec::new(["a"], change_name(&config, None)),
            config,
            version: None,
            schema: None,
        }
    }

    #[test]
    fn a_member_is_done_only_once_its_status_describes_the_spec_that_carries_the_change() {
        let p = prepared();
        let now = Timestamp(5);
        let seen =
            observe_member(&member(&[("max-connections", "300")], 2), &p, "f", &[], now).unwrap();
        assert_eq!(seen.change.as_deref(), Some("max_connections=300"));
        assert_eq!(seen.rollout, ClusterRollout::Done);
        assert!(seen.replication_running);
        assert_eq!(seen.lag_seconds, Some(4));
        // Its operator has not seen the patched spec yet: still rolling, whatever it says.
        let stale =
            observe_member(&member(&[("max_connections", "300")], 1), &p, "f", &[], now).unwrap();
        assert_eq!(stale.rollout, ClusterRollout::Rolling);
        // Not carrying the change: named by its own values.
        let other = observe_member(&member(&[], 2), &p, "f", &[], now).unwrap();
        assert_eq!(other.change.as_deref(), Some("max_connections=(unset)"));
        // Unhealthy: a replica not ready.
        let mut sick = member(&[("max_connections", "300")], 2);
        sick.status.as_mut().unwrap().instances[0].ready = false;
        let seen = observe_member(&sick, &p, "f", &[], now).unwrap();
        assert!(!seen.replication_running);
        assert!(
            member_health_problem(&sick)
                .unwrap()
                .contains("replica instance 1")
        );
        // Halted.
        let mut halted = member(&[("max_connections", "300")], 2);
        halted
            .status
            .as_mut()
            .unwrap()
            .conditions
            .push(cond("Halted", "True"));
        let seen = observe_member(&halted, &p, "f", &[], now).unwrap();
        assert!(matches!(seen.rollout, ClusterRollout::Halted { .. }));
        // No status yet: not observed.
        let mut fresh = member(&[], 1);
        fresh.status = None;
        assert_eq!(observe_member(&fresh, &p, "f", &[], now), None);
    }

    #[test]
    fn the_patch_sets_the_variables_and_drops_another_spelling_of_them() {
        let p = prepared();
        let patch = member_patch(&member(&[("max-connections", "151"), ("x", "1")], 2), &p);
        assert_eq!(
            patch,
            serde_json::json!({"spec": {"config": {"max-connections": null, "max_connections": "300"}}})
        );
    }

    /// A MariaDB member at `version` whose status says it has run `highest`.
    fn versioned(name: &str, version: &str, highest: Option<&str>) -> MySQLCluster {
        let mut c = member(&[], 2);
        c.metadata.name = Some(name.into());
        c.spec.flavor = "mariadb".into();
        c.spec.version = version.into();
        if let Some(status) = c.status.as_mut() {
            status.highest_version = highest.map(str::to_owned);
        }
        c
    }

    fn fleet_of(names: &[&str], version: &str) -> MySQLFleet {
        MySQLFleet::new(
            "f",
            MySQLFleetSpec {
                clusters: names.iter().map(|n| (*n).to_owned()).collect(),
                version: Some(version.into()),
                canary: 1,
                max_at_once: 1,
                bake: "1m".into(),
                ..MySQLFleetSpec::default()
            },
        )
    }

    #[test]
    fn a_version_change_is_patched_carried_and_named_and_needs_no_variable() {
        let members = [
            versioned("a", "10.11.14", None),
            versioned("b", "10.11.14", Some("10.11.14")),
        ];
        let p = prepare(&fleet_of(&["a", "b"], "11.8.3"), &members, &[]).expect("accepted");
        assert_eq!(p.version.as_deref(), Some("11.8.3"));
        assert_eq!(p.spec.change, "version=11.8.3");
        assert!(!carries(&members[0], &p));
        assert_eq!(
            member_patch(&members[0], &p),
            serde_json::json!({"spec": {"version": "11.8.3"}})
        );
        let seen = observe_member(&members[0], &p, "f", &[], Timestamp(0)).expect("a status");
        assert_eq!(seen.change.as_deref(), Some("version=10.11.14"));
        let upgraded = versioned("a", "11.8.3", None);
        assert!(carries(&upgraded, &p));
    }

    #[test]
    fn a_version_the_rules_forbid_for_any_member_refuses_the_fleet_naming_it() {
        // b once ran 11.8: 10.11 cannot read its data directory any more.
        let members = [
            versioned("a", "10.11.14", None),
            versioned("b", "10.11.14", Some("11.8.3")),
        ];
        let e = prepare(&fleet_of(&["a", "b"], "10.11.14"), &members, &[]).unwrap_err();
        assert_eq!(e.category(), "version");
        let text = e.to_string();
        assert!(
            text.contains("cluster b") && text.contains("from 11.8.3"),
            "{text}"
        );

        let mut pinned = versioned("a", "10.11.14", None);
        pinned.spec.image = Some("registry.example/mariadb:10.11.14".into());
        let e = prepare(&fleet_of(&["a"], "11.8.3"), &[pinned], &[]).unwrap_err();
        assert!(e.to_string().contains("pins spec.image"), "{e}");

        let e = prepare(&fleet_of(&["a"], "11.8"), &members[..1], &[]).unwrap_err();
        assert!(e.to_string().contains("major.minor.patch"), "{e}");
    }

    #[test]
    fn selectors_and_commands_are_read_as_kubernetes_and_the_docs_say() {
        let labels: BTreeMap<String, String> = [("tier".to_owned(), "shards".to_owned())].into();
        let expr = |op: &str, values: Option<Vec<String>>| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: op.into(),
                values,
            }]),
        };
        let shards = Some(vec!["shards".to_owned()]);
        assert_eq!(
            selector_matches(&expr("In", shards.clone()), &labels),
            Ok(true)
        );
        assert_eq!(selector_matches(&expr("NotIn", shards), &labels), Ok(false));
        assert_eq!(selector_matches(&expr("Exists", None), &labels), Ok(true));
        assert_eq!(
            selector_matches(&expr("DoesNotExist", None), &labels),
            Ok(false)
        );
        assert!(selector_matches(&expr("In", None), &labels).is_err());
        assert!(selector_matches(&expr("Like", None), &labels).is_err());
        assert_eq!(parse_command("abort"), Ok(FleetCommand::Abort));
        assert_eq!(
            parse_command(" resume  skip=shard-b "),
            Ok(FleetCommand::Resume {
                skip: Some("shard-b".into())
            })
        );
        assert!(parse_command("resume skip=").is_err());
        assert!(parse_command("go").is_err());
    }
}
