//! The `MySQLCluster` custom resource (`switchyard.io/v1alpha1`): spec, status and the CRD YAML.
//!
//! Fields that users can get wrong in ways the OpenAPI schema cannot express (an unknown
//! flavor on a server without schema validation, an unparsable version, an operator-owned
//! variable in `config`) are plain strings or maps here and checked by
//! [`crate::validate::validate`], which sets the `InvalidSpec` condition. Everything the
//! schema can express (minimum replicas, the flavor enum, patterns) is in the schema too.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use switchyard_plan::fleet::FleetRecord;
use switchyard_plan::history::{History, RevisionEntry as HistoryEntry};
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{Record, Revision, Timestamp};

/// The API group of switchyard's resources.
pub const GROUP: &str = "switchyard.io";

/// The specification of a MySQL or MariaDB primary-replica cluster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    derive = "Default",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "MySQLCluster",
    plural = "mysqlclusters",
    shortname = "mysqlc",
    namespaced,
    status = "MySQLClusterStatus",
    printcolumn = r#"{"name":"Primary","type":"integer","jsonPath":".status.currentPrimary"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterSpec {
    /// The server product: `mysql` or `mariadb`.
    #[schemars(extend("enum" = ["mysql", "mariadb"]))]
    pub flavor: String,
    /// The server version every instance should run, `X.Y.Z` (for example `10.11.14`).
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// The container image; defaults to the vendor's official image for the flavor and
    /// version (`mysql:X.Y.Z`, `mariadb:X.Y.Z`). The image must run the version named in
    /// `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How many instances: one primary and `replicas - 1` replicas; on Galera, the number of
    /// nodes (odd, at least 3).
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// How the instances replicate: `primary-replica` (default: one writable primary and
    /// GTID replicas) or `galera` (MariaDB Galera Cluster: every node holds every write,
    /// one node takes the writes through the primary Service).
    #[serde(default, skip_serializing_if = "ClusterTopology::is_primary_replica")]
    pub topology: ClusterTopology,
    /// Compute resources of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The volume claim template of each instance's data directory (default: 10Gi,
    /// ReadWriteOnce, the default storage class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<PersistentVolumeClaimSpec>,
    /// Server variables rendered into my.cnf (`innodb_buffer_pool_size: 1G`). Variables the
    /// operator owns (`read_only`, `server_id`, GTID, binary log and replication settings)
    /// are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Where the credentials of the accounts the operator uses are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSpec>,
    /// How changes roll out.
    #[serde(default)]
    pub update: UpdatePolicy,
    /// How the instances' pods spread over nodes (default: preferably one per node).
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// How the primary replicates to the replicas (default: lossless semi-synchronous
    /// replication when the cluster has replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,
    /// What the operator does when the primary fails (default: a lossless automatic
    /// failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
}

/// How the instances of a cluster replicate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterTopology {
    /// One writable primary and read-only GTID replicas.
    #[default]
    PrimaryReplica,
    /// A MariaDB Galera cluster: synchronous replication between an odd number of nodes (at
    /// least 3); the primary Service routes the writes to one node.
    Galera,
}

impl ClusterTopology {
    /// Whether it is the default topology (it is then left out of the serialized spec).
    pub fn is_primary_replica(&self) -> bool {
        *self == ClusterTopology::PrimaryReplica
    }
}

/// How a commit on the primary relates to the replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReplicationMode {
    /// Lossless semi-synchronous replication: the primary acknowledges a commit to its client
    /// only once `ackReplicas` replicas have it in their relay logs (`AFTER_SYNC`), and it
    /// never falls back to asynchronous replication: a primary cut off from its replicas
    /// blocks its writes instead. A failover then keeps every acknowledged write.
    #[default]
    SemiSync,
    /// Asynchronous replication: commits are acknowledged before any replica has them. Writes
    /// never wait for a replica, but the writes a failed primary acknowledged last may exist
    /// nowhere else: the operator fails over only when `failover.acceptDataLoss` is set, and
    /// such a failover loses them.
    Async,
}

/// Replication settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// SemiSync (default) or Async.
    #[serde(default)]
    pub mode: ReplicationMode,
    /// SemiSync: how many replicas acknowledge each commit (default: half the instances,
    /// at least 1, as MOCO does; MariaDB always waits for exactly 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_replicas: Option<i32>,
    /// How many seconds a replica waits for data from its primary before it gives the
    /// connection up (`replica_net_timeout` / `slave_net_timeout`; the primary's heartbeat
    /// is half of it), so that the replicas notice, and corroborate, a failed primary
    /// quickly (default 4; the server's own default is 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_timeout_seconds: Option<i64>,
}

/// The failover policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Whether the operator replaces a failed primary on its own (default true). When false,
    /// a failed primary is reported (`Degraded`, `PrimaryDown`) and left to a person.
    #[serde(default = "default_true")]
    pub automatic: bool,
    /// How many seconds the primary must have failed every check, with its replicas
    /// corroborating (their receivers lost it), before the operator fails over (default 3).
    #[serde(default = "default_detection_seconds")]
    pub detection_seconds: i64,
    /// Fail over even when the operator cannot prove that no acknowledged write is lost
    /// (asynchronous replication, or too few replicas answer): the failover then says it is
    /// not lossless. Default false.
    #[serde(default)]
    pub accept_data_loss: bool,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            automatic: true,
            detection_seconds: default_detection_seconds(),
            accept_data_loss: false,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_detection_seconds() -> i64 {
    3
}

/// How strongly the pods of a cluster avoid sharing a topology domain (a node, by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AntiAffinityMode {
    /// The scheduler avoids it when it can (`preferredDuringScheduling...`, weight 100).
    #[default]
    Preferred,
    /// The scheduler never does it: a pod stays pending rather than share
    /// (`requiredDuringScheduling...`).
    Required,
    /// No anti-affinity.
    None,
}

/// The pods' anti-affinity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    /// Preferred (default), Required or None.
    #[serde(default)]
    pub mode: AntiAffinityMode,
    /// The node label that defines the domain (default `kubernetes.io/hostname`: one pod per
    /// node; `topology.kubernetes.io/zone`: one per zone).
    #[serde(default = "default_topology_key")]
    pub topology_key: String,
}

impl Default for AntiAffinity {
    fn default() -> Self {
        AntiAffinity {
            mode: AntiAffinityMode::default(),
            topology_key: default_topology_key(),
        }
    }
}

fn default_topology_key() -> String {
    "kubernetes.io/hostname".into()
}

/// References to the Secret that holds the accounts' credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// The Secret's name (default `NAME-credentials`). It holds the keys `root-password`,
    /// `operator-user`, `operator-password`, `replication-user` and
    /// `replication-password`; the operator generates it, with random passwords, when it
    /// does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub secret_name: Option<String>,
}

/// How a rollout proceeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategy {
    /// Every step, including the primary's switchover, runs on its own.
    #[default]
    Automatic,
    /// Replicas roll on their own; the primary's switchover waits for
    /// `switchyard approve CLUSTER`.
    Supervised,
    /// No new step starts (an in-flight switchover still finishes or is undone).
    Paused,
}

/// The update policy: bounds and pacing of rollouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// Automatic, Supervised or Paused.
    #[serde(default)]
    pub strategy: UpdateStrategy,
    /// A replica lagging more than this many seconds is unhealthy and is not promoted.
    #[serde(default = "default_max_lag")]
    #[schemars(range(min = 0))]
    pub max_lag_seconds: i64,
    /// A transaction open longer than this many seconds on the primary postpones its
    /// switchover.
    #[serde(default = "default_max_transaction")]
    #[schemars(range(min = 0))]
    pub max_transaction_seconds: i64,
    /// How long a restarted instance may take to become ready (`1h`, `90m`). Long by
    /// default: MySQL upgrades its data dictionary and system tables at start.
    #[serde(default = "default_startup_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    pub startup_timeout: String,
    /// How long a clean (slow) shutdown may take; the pods' termination grace period is at
    /// least this long.
    #[serde(default = "default_shutdown_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    pub shutdown_timeout: String,
    /// A switchover not promoted by then is undone (the old primary takes writes again).
    #[serde(default = "default_switchover_deadline")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    pub switchover_deadline: String,
    /// How long a replica stays out of the read Service before it restarts, so clients
    /// leave it.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0))]
    pub drain_seconds: i64,
    /// A wait or a repeatedly failing step longer than this halts the rollout.
    #[serde(default = "default_halt_after")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    pub halt_after: String,
    /// The canary within the cluster (`10m`): after the first instance runs a new
    /// revision, nothing else changes until it has served on it, healthy, this long
    /// without a break (the status says `canary instance N bakes ... until T`); a canary
    /// that stays unhealthy halts the rollout after `haltAfter`. Absent: no canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    pub canary_bake: Option<String>,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            strategy: UpdateStrategy::default(),
            max_lag_seconds: default_max_lag(),
            max_transaction_seconds: default_max_transaction(),
            startup_timeout: default_startup_timeout(),
            shutdown_timeout: default_shutdown_timeout(),
            switchover_deadline: default_switchover_deadline(),
            drain_seconds: default_drain_seconds(),
            halt_after: default_halt_after(),
            canary_bake: None,
        }
    }
}

fn default_max_lag() -> i64 {
    10
}
fn default_max_transaction() -> i64 {
    30
}
fn default_startup_timeout() -> String {
    "1h".into()
}
fn default_shutdown_timeout() -> String {
    "10m".into()
}
fn default_switchover_deadline() -> String {
    "30s".into()
}
fn default_drain_seconds() -> i64 {
    10
}
fn default_halt_after() -> String {
    "15m".into()
}

/// What the operator observed and did, written only by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterStatus {
    /// Conditions: `Available`, `Progressing`, `Degraded`, `InvalidSpec`, `UpgradeBlocked`,
    /// `Halted`, `AwaitingApproval`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-word summary: Pending, Bootstrapping, Ready, Upgrading, AwaitingApproval,
    /// Blocked, Halted, Degraded or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The ordinal of the writable primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<u32>,
    /// The version of the current revision (what the cluster runs when no rollout is under
    /// way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Ready instances out of desired, `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// One entry per instance, by ordinal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// The revisions: what runs, what should run, and the numbered history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Revisions>,
    /// The highest server version the cluster has ever run: a spec edit to an older
    /// version the rules forbid is refused against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_version: Option<String>,
    /// The engine's durable record (intent, switchover sub-step, waits, failures,
    /// history), stored with compare-and-swap on the resource version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub record: Option<Record>,
    /// The last completed switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover: Option<LastSwitchover>,
    /// Set once instance 0's data directory was initialized (by its agent, with
    /// `bootstrap`): from then on no instance is ever initialized again, so an instance whose
    /// data comes back empty stays empty (a replica is provisioned from a donor, a primary is
    /// never made writable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub initialized: bool,
    /// A password rotation under way (the token of the request it serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    /// Galera: the one node the operator named to start the cluster
    /// (`--wsrep-new-cluster`), recorded before any pod is told, and cleared once that node
    /// serves in a primary component. No other node is ever told to start one while it is
    /// set, so a cluster never has two bootstraps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera_bootstrap: Option<GaleraBootstrap>,
    /// The topology the cluster runs (`primary-replica` or `galera`), recorded at its first
    /// status: a spec asking for another one is refused (`TopologyChange`), as the servers'
    /// data and replication cannot be turned from one into the other in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
}

/// The node named to start a Galera cluster, and why it was chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GaleraBootstrap {
    /// The node's ordinal.
    pub ordinal: u32,
    /// Why this node (`a new cluster: no node has Galera state yet`).
    pub reason: String,
}

/// The state of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The instance's ordinal (pod `NAME-ORDINAL`).
    pub ordinal: u32,
    /// `primary` or `replica`.
    pub role: String,
    /// The server version it runs (or last ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The number of the revision the engine's record assigns to it: its pod and its
    /// ConfigMap are built from this revision, so a pod recreated outside the engine comes
    /// back on it (never on the target early). A restart assigns the target first, then
    /// deletes the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Whether it is up and, for a replica, replicating within bounds.
    pub ready: bool,
    /// Replication lag in seconds, for a replica that applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    /// What is wrong with it, when something is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The revisions of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revisions {
    /// The revision every instance ran when the last rollout finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// The revision the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<u64>,
    /// Every revision the spec has asked for, oldest first (at most 16 kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionEntry>,
}

/// One numbered revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionEntry {
    /// The revision's number.
    pub number: u64,
    /// Hex SHA-256 of its content (flavor, version, rendered configuration, image,
    /// resources): `switchyard_plan::topology::Revision::hash`.
    pub hash: String,
    /// Its server version.
    pub version: String,
    /// When the operator first saw it.
    pub created: Time,
    /// Its server variables (`spec.config`, names normalized). Absent in revisions recorded
    /// before switchyard kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// The hash of the pod template its pods run with, when it is not this revision's own
    /// hash: a revision reached online keeps the template of the revision it was applied
    /// over, so no pod restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// Set when instances reach this revision by setting variables online, without a
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<OnlineRevision>,
    /// Why an instance refused this revision at apply time; the next revision undid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The number of the refused revision this one undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<u64>,
    /// What its pods are built with besides the version and the variables (absent in
    /// revisions recorded before switchyard kept it: the current spec's is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<RevisionPod>,
}

/// The parts of a revision that go into its pods (they are part of its content hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionPod {
    /// The database image.
    pub image: String,
    /// The server container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The pod's termination grace period (the shutdown timeout and a margin).
    pub termination_grace_period_seconds: i64,
}

impl RevisionEntry {
    /// The hash of the pod template this revision's pods run with.
    pub fn pod_template_hash(&self) -> &str {
        self.template_hash.as_deref().unwrap_or(&self.hash)
    }
}

/// How instances reach a revision online.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineRevision {
    /// The number of the revision every instance ran when this one was planned.
    pub over: u64,
    /// The hash of the pod template's revision: instances started from that template reach
    /// this revision by setting the variables.
    pub from_hash: String,
    /// The variables set with `SET GLOBAL`, in order (values in the server's form).
    pub variables: Vec<VariableSetting>,
    /// The values every instance had before, when they all agreed: what an online rollback
    /// sets back after a refusal. Absent: a rollback restarts the changed instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Vec<VariableSetting>>,
}

/// One server variable and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VariableSetting {
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The last completed switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSwitchover {
    /// The old primary's ordinal.
    pub from: u32,
    /// The new primary's ordinal.
    pub to: u32,
    /// From the start of the switchover (fence) to the promotion, in milliseconds.
    pub duration_millis: u64,
    /// When the candidate was promoted.
    pub time: Time,
}

impl MySQLCluster {
    /// The numbered revisions of `status.revisions` as a [`History`] (the form the local
    /// runtime keeps, which `switchyard history` prints). Revisions recorded before
    /// switchyard kept their variables have an empty configuration; an entry whose version
    /// does not parse is left out.
    pub fn revision_history(&self) -> History {
        let mut history = History {
            flavor: self.spec.flavor.parse::<Flavor>().ok(),
            entries: Vec::new(),
        };
        let entries = self
            .status
            .as_ref()
            .and_then(|s| s.revisions.as_ref())
            .map(|r| r.history.as_slice())
            .unwrap_or_default();
        for e in entries {
            let Ok(version) = Version::parse(&e.version) else {
                continue;
            };
            history.entries.push(HistoryEntry {
                revision: Revision {
                    number: e.number,
                    hash: e.hash.clone(),
                },
                version,
                config: e.config.clone().unwrap_or_default(),
                created: Timestamp(u64::try_from(e.created.0.as_millisecond()).unwrap_or(0)),
            });
        }
        history
    }
}

/// A rolling schema change of one table of a `MySQLCluster` in the same namespace.
///
/// The operator judges the statement against the primary's current definition of the table
/// (switchyard-ddl's analyzer) before anything runs: an unsafe change is refused (condition
/// `Refused`, naming each unsafe clause and its rule) unless `force` is set with the risk
/// accepted in `acceptedRisk`. An accepted change is rolled by the cluster's engine: replicas
/// one at a time with the binary log off, then the primary (in place when the change is
/// online-capable, otherwise after a switchover). One change runs at a time per cluster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    derive = "Default",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "SchemaChange",
    plural = "schemachanges",
    shortname = "sc",
    namespaced,
    status = "SchemaChangeStatus",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SchemaChangeSpec {
    /// The name of the `MySQLCluster` (same namespace) whose table changes.
    pub cluster_ref: String,
    /// One `ALTER TABLE db.table ...` statement.
    pub statement: String,
    /// How the change runs: `auto` and `rolling` roll it instance by instance (binary log
    /// off); `toi` (total order, blocking) is for Galera clusters, which the operator does not
    /// manage yet, and is refused.
    #[serde(default)]
    pub method: SchemaMethod,
    /// Run the change even when the analyzer judges it unsafe (needs `acceptedRisk`).
    #[serde(default)]
    pub force: bool,
    /// With `force`: the risk accepted, in words (must not be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_risk: Option<String>,
}

/// How a schema change runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMethod {
    /// The rolling change (the only one the operator runs today).
    #[default]
    Auto,
    /// The rolling change, asked for by name.
    Rolling,
    /// Total order isolation: every node at once, blocking writes to the table.
    Toi,
}

/// What the operator reports about a schema change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaChangeStatus {
    /// `Pending`, `Waiting`, `Refused`, `Progressing`, `Complete` or `Halted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Accepted`, `Refused`, `Progressing`, `Complete`, `Halted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The change's id: instances report the last change they have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The table's definition on the primary when the change was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Replica type-conversion settings the change needs while the shapes differ.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica_settings: BTreeMap<String, String>,
    /// Whether the primary takes the change in place (otherwise after a switchover).
    #[serde(default)]
    pub primary_online: bool,
    /// Each instance's progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<SchemaInstanceStatus>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One instance's progress in a schema change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaInstanceStatus {
    /// The instance's ordinal.
    pub ordinal: u32,
    /// `pending`, `altered` or `failed`.
    pub state: String,
    /// What happened, when there is something to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One configuration change rolled over several `MySQLCluster`s of its namespace, in waves.
///
/// The members are named (`clusters`, in roll order) or chosen by label (`selector`, in name
/// order). The fleet controller decides every step with switchyard-plan's `decide_fleet` (the
/// decision the local runtime's fleet uses): a canary wave first, then waves that double, each
/// at most `maxAtOnce` clusters; a member counts as done once its own rollout finished and it
/// stayed healthy for `bake`; a member that halts, or fails its bake, stops the whole fleet.
/// The fleet changes a member only by merge-patching `spec.config` and `spec.version` of the
/// member (field manager `switchyard-fleet`), and reads the member's health from its status. Its record (numbered
/// revisions, waves, each member's progress) lives in this resource's status.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "switchyard.io",
    derive = "Default",
    derive = "PartialEq",
    version = "v1alpha1",
    kind = "MySQLFleet",
    plural = "mysqlfleets",
    shortname = "mysqlf",
    namespaced,
    status = "MySQLFleetStatus",
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLFleetSpec {
    /// The member clusters (MySQLClusters of this namespace), by name, in the order they are
    /// rolled. Give either this or `selector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// The member clusters by label: every MySQLCluster of this namespace it matches, rolled
    /// in name order. Give either this or `clusters`; an empty selector is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The server variables set on every member (merged into its `spec.config`): the change,
    /// with `version`; give at least one of the two. Changing them starts a new fleet
    /// revision once the current one is done or aborted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The server version every member should run, `X.Y.Z` (set as its `spec.version`): a
    /// version change rolled member by member, each member upgrading as its own spec edit
    /// would (replicas first, the primary behind a switchover). Refused before any member is
    /// touched when the version rules forbid the move for one member (from the highest
    /// version it has run), or when a member pins `spec.image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: Option<String>,
    /// A schema change rolled over the members: the fleet creates one `SchemaChange` per
    /// member, in waves, each judged by the analyzer against that member's table before it
    /// runs (a refusal stops the fleet). It rolls alone: not with `config` or `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FleetSchema>,
    /// How many clusters the canary wave holds (default 1).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub canary: i32,
    /// The most clusters changing at once (default 1): every wave after the canary doubles,
    /// up to this.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub max_at_once: i32,
    /// How long a member must stay healthy after its rollout before it counts as done and
    /// the next wave may start (`5m`, `90s`; default `5m`).
    #[serde(default = "default_bake")]
    #[schemars(regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"))]
    pub bake: String,
    /// A baking member with a replica lagging more than this many seconds fails its bake
    /// (default 10).
    #[serde(default = "default_max_lag")]
    #[schemars(range(min = 0))]
    pub max_lag_seconds: i64,
}

fn default_one() -> i32 {
    1
}

fn default_bake() -> String {
    "5m".into()
}

/// A fleet's schema change: what each member's `SchemaChange` is created with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetSchema {
    /// One `ALTER TABLE db.table ...` statement, run on every member.
    pub statement: String,
    /// Run it even where the analyzer judges it unsafe (needs `acceptedRisk`).
    #[serde(default)]
    pub force: bool,
    /// With `force`: the risk accepted, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_risk: Option<String>,
}

/// What the fleet controller reports about a fleet, written only by it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLFleetStatus {
    /// Conditions: `InvalidSpec`, `Progressing`, `Stopped`, `Complete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-word summary: Pending, Rolling, Baking, Stopped, Done, Aborted or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The current fleet revision's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The current fleet revision's change, in words (`max_connections=300`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// What the fleet did last or waits for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each member of the current revision, in wave order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<FleetMemberStatus>,
    /// The fleet's durable record (numbered revisions, waves, each member's state, a
    /// person's command), stored with compare-and-swap on the resource version: all the state
    /// the fleet keeps between steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub record: Option<FleetRecord>,
}

/// One member's progress in the current fleet revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetMemberStatus {
    /// The MySQLCluster's name.
    pub name: String,
    /// Its wave (0 is the canary wave).
    pub wave: u32,
    /// `pending`, `rolling`, `baking`, `done`, `stopped` or `skipped`.
    pub state: String,
}

fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The CRDs switchyard installs, as `(file name, YAML)`, in the form committed under `crds/`.
pub fn crd_files() -> Vec<(String, String)> {
    [MySQLCluster::crd(), SchemaChange::crd(), MySQLFleet::crd()]
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_yaml::to_string(&crd).expect("a CRD serializes to YAML");
            (
                format!("{name}.yaml"),
                format!(
                    "# Generated by `cargo xtask crds` from crates/switchyard-kube/src/crd.rs: do not edit.\n{yaml}"
                ),
            )
        })
        .collect()
}
