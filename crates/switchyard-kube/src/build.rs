//! Pure builders: the objects a `MySQLCluster` owns, computed from its spec alone.
//!
//! Nothing here talks to the API server. The pod template depends only on the spec (never on
//! the operator's own version), so upgrading the operator restarts no database pod. The
//! template carries the content hash of its revision, which is how the runtime tells which
//! revision a pod runs.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Secret, SecretKeySelector,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use switchyard_plan::topology::content_hash;
use switchyard_plan::versions::Flavor;

use crate::crd::MySQLCluster;
use crate::validate::ValidSpec;

/// The label every managed object carries with its cluster's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// The label naming what manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The label naming the application.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// The role label the operator maintains on pods: `primary` or `replica`.
pub const LABEL_ROLE: &str = "switchyard.io/role";
/// `true` on pods in the read pool (the replicas Service selects it); absent when drained.
pub const LABEL_SERVING: &str = "switchyard.io/serving";
/// The pod template annotation holding the full revision hash.
pub const ANNOTATION_REVISION_HASH: &str = "switchyard.io/revision-hash";
/// The pod template annotation holding the server version of the template.
pub const ANNOTATION_VERSION: &str = "switchyard.io/version";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "switchyard";
/// The server's port.
pub const MYSQL_PORT: u16 = 3306;
/// The server container's name.
pub const CONTAINER: &str = "mysqld";
/// The offset added to an ordinal to make its `server_id` (never 0).
pub const SERVER_ID_BASE: u32 = 1000;

/// The keys of the credentials Secret.
pub mod keys {
    /// The server's root password (used only by the image's first-boot initialization).
    pub const ROOT_PASSWORD: &str = "root-password";
    /// The operator account's name.
    pub const OPERATOR_USER: &str = "operator-user";
    /// The operator account's password.
    pub const OPERATOR_PASSWORD: &str = "operator-password";
    /// The replication account's name.
    pub const REPLICATION_USER: &str = "replication-user";
    /// The replication account's password.
    pub const REPLICATION_PASSWORD: &str = "replication-password";
}

/// The names of the objects a cluster owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The cluster (and StatefulSet, PodDisruptionBudget) name.
    pub cluster: String,
    /// The namespace.
    pub namespace: String,
}

impl Names {
    /// The names for `cluster`.
    pub fn of(cluster: &MySQLCluster) -> Self {
        Names {
            cluster: cluster.name_any(),
            namespace: cluster.namespace().unwrap_or_else(|| "default".into()),
        }
    }
    /// The headless Service (stable pod DNS names).
    pub fn headless(&self) -> String {
        format!("{}-headless", self.cluster)
    }
    /// The Service selecting the primary.
    pub fn primary_service(&self) -> String {
        format!("{}-primary", self.cluster)
    }
    /// The Service selecting serving replicas.
    pub fn replicas_service(&self) -> String {
        format!("{}-replicas", self.cluster)
    }
    /// The ConfigMap with my.cnf.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }
    /// The Secret with the first-boot SQL that creates the accounts.
    pub fn bootstrap_secret(&self) -> String {
        format!("{}-bootstrap", self.cluster)
    }
    /// The pod of `ordinal`.
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }
    /// The stable DNS name of the pod of `ordinal`.
    pub fn pod_host(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(ordinal),
            self.headless(),
            self.namespace
        )
    }
    /// The ordinal of a pod of this cluster, from its name.
    pub fn ordinal_of(&self, pod_name: &str) -> Option<u32> {
        pod_name
            .strip_prefix(&self.cluster)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }
    /// The ordinal named by a replication source host (`NAME-N.NAME-headless...`).
    pub fn ordinal_of_host(&self, host: &str) -> Option<u32> {
        self.ordinal_of(host.split('.').next()?)
    }
}

/// The labels that select a cluster's pods.
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "mysqlcluster".to_owned()),
        (LABEL_INSTANCE.to_owned(), names.cluster.clone()),
    ])
}

/// The labels every managed object carries.
pub fn common_labels(names: &Names) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names);
    labels.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
    labels
}

/// The server variables of the spec: the operator's durability, GTID and replication
/// settings for the flavor, then the user's `config` (which cannot name operator-owned
/// variables, but may override durability defaults such as `sync_binlog`).
pub fn server_variables(spec: &ValidSpec) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut set = |k: &str, val: &str| {
        v.insert(k.to_owned(), val.to_owned());
    };
    set("binlog_format", "ROW");
    set("sync_binlog", "1");
    set("innodb_flush_log_at_trx_commit", "1");
    set("relay_log_recovery", "ON");
    set("read_only", "ON");
    set("skip_name_resolve", "ON");
    match spec.flavor {
        Flavor::Mysql => {
            set("log_bin", "binlog");
            set("relay_log", "relay-bin");
            set("log_replica_updates", "ON");
            set("gtid_mode", "ON");
            set("enforce_gtid_consistency", "ON");
            set("skip_replica_start", "ON");
        }
        Flavor::Mariadb => {
            set("log_bin", "mariadb-bin");
            set("relay_log", "relay-bin");
            set("log_slave_updates", "ON");
            set("gtid_strict_mode", "ON");
            set("skip_slave_start", "ON");
        }
    }
    for (k, val) in &spec.config {
        v.insert(k.clone(), val.clone());
    }
    v
}

/// The rendered my.cnf: [`server_variables`] plus the start-up fence.
///
/// Every instance starts read-only from this file, and only the operator lifts it, on the
/// primary. On MySQL `read_only` lets holders of `CONNECTION_ADMIN` (or `SUPER`) write, so the
/// file also sets `super_read_only`, which stops every account. It is not one of the
/// [`server_variables`]: those make the revision's content hash, and a new line there would
/// change the pod template of every existing MySQL cluster when the operator is upgraded
/// (restarting its pods); each pod reads it at its next start instead.
pub fn render_my_cnf(spec: &ValidSpec) -> String {
    let mut out = String::from(
        "# Rendered by switchyard from the MySQLCluster spec. server_id and report_host are\n\
         # added per pod at start; read_only (and super_read_only on MySQL) is lifted by the\n\
         # operator on the primary only.\n\
         [mysqld]\n",
    );
    let mut variables = server_variables(spec);
    if spec.flavor == Flavor::Mysql {
        variables.insert("super_read_only".to_owned(), "ON".to_owned());
    }
    for (k, val) in variables {
        out.push_str(&format!("{k} = {val}\n"));
    }
    out
}

/// The content hash of the spec's revision: flavor, version and rendered variables, plus
/// the image and resources (anything that needs a restart to take effect), as
/// `switchyard_plan::topology::content_hash` computes it.
pub fn revision_hash(spec: &ValidSpec, cluster: &MySQLCluster) -> String {
    let mut content = server_variables(spec);
    content.insert("@image".into(), spec.image.clone());
    if let Some(resources) = &cluster.spec.resources {
        content.insert(
            "@resources".into(),
            serde_json::to_string(resources).unwrap_or_default(),
        );
    }
    content.insert(
        "@terminationGracePeriodSeconds".into(),
        grace_period_seconds(spec).to_string(),
    );
    content_hash(spec.flavor, spec.version, &content)
}

fn grace_period_seconds(spec: &ValidSpec) -> i64 {
    i64::try_from(spec.shutdown_timeout.as_secs()).unwrap_or(i64::MAX / 2) + 30
}

fn owner(cluster: &MySQLCluster) -> Vec<OwnerReference> {
    cluster.controller_owner_ref(&()).into_iter().collect()
}

fn meta(cluster: &MySQLCluster, names: &Names, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(common_labels(names)),
        owner_references: Some(owner(cluster)),
        ..ObjectMeta::default()
    }
}

/// The ConfigMap holding my.cnf.
pub fn config_map(cluster: &MySQLCluster, spec: &ValidSpec) -> ConfigMap {
    let names = Names::of(cluster);
    ConfigMap {
        metadata: meta(cluster, &names, names.config_map()),
        data: Some(BTreeMap::from([("my.cnf".to_owned(), render_my_cnf(spec))])),
        ..ConfigMap::default()
    }
}

fn service(
    cluster: &MySQLCluster,
    names: &Names,
    name: String,
    selector: BTreeMap<String, String>,
    headless: bool,
) -> Service {
    Service {
        metadata: meta(cluster, names, name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_owned()),
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("mysql".into()),
                port: i32::from(MYSQL_PORT),
                target_port: Some(IntOrString::String("mysql".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The three Services: headless (pod DNS), primary (role=primary) and replicas
/// (role=replica, serving=true).
pub fn services(cluster: &MySQLCluster) -> Vec<Service> {
    let names = Names::of(cluster);
    let mut primary = selector_labels(&names);
    primary.insert(LABEL_ROLE.into(), "primary".into());
    let mut replicas = selector_labels(&names);
    replicas.insert(LABEL_ROLE.into(), "replica".into());
    replicas.insert(LABEL_SERVING.into(), "true".into());
    vec![
        service(
            cluster,
            &names,
            names.headless(),
            selector_labels(&names),
            true,
        ),
        service(cluster, &names, names.primary_service(), primary, false),
        service(cluster, &names, names.replicas_service(), replicas, false),
    ]
}

/// The PodDisruptionBudget: at most one instance voluntarily disrupted at a time.
pub fn pod_disruption_budget(cluster: &MySQLCluster) -> PodDisruptionBudget {
    let names = Names::of(cluster);
    PodDisruptionBudget {
        metadata: meta(cluster, &names, names.cluster.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The shell script of the init container: copies my.cnf and appends the pod's
/// `server_id` (from its ordinal) and `report_host`.
pub const INIT_SCRIPT: &str = r#"set -eu
ordinal="${POD_NAME##*-}"
cp /switchyard/config/my.cnf /etc/mysql/conf.d/switchyard.cnf
printf '\n[mysqld]\nserver_id = %d\nreport_host = %s\n' "$((SERVER_ID_BASE + ordinal))" "${POD_NAME}.${HEADLESS}.${POD_NAMESPACE}.svc" >> /etc/mysql/conf.d/switchyard.cnf
"#;

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn tcp_probe(period: i32, failure_threshold: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("mysql".into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The StatefulSet: `OnDelete` (the engine chooses which pod restarts next), parallel pod
/// management, a template derived from the spec only.
pub fn stateful_set(cluster: &MySQLCluster, spec: &ValidSpec) -> StatefulSet {
    stateful_set_at(cluster, spec, &revision_hash(spec, cluster))
}

/// The StatefulSet whose pod template carries `template_hash` instead of the spec's own
/// revision hash: a revision reached online keeps the template (and so the pods) of the
/// revision it was applied over. Only the hash annotation differs from
/// [`stateful_set`]; the template never holds the server variables (they are in the
/// ConfigMap).
pub fn stateful_set_at(
    cluster: &MySQLCluster,
    spec: &ValidSpec,
    template_hash: &str,
) -> StatefulSet {
    let names = Names::of(cluster);
    let hash = template_hash.to_owned();
    let mut pod_labels = selector_labels(&names);
    pod_labels.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
    let annotations = BTreeMap::from([
        (ANNOTATION_REVISION_HASH.to_owned(), hash),
        (ANNOTATION_VERSION.to_owned(), spec.version.to_string()),
    ]);
    let root_env = match spec.flavor {
        Flavor::Mysql => "MYSQL_ROOT_PASSWORD",
        Flavor::Mariadb => "MARIADB_ROOT_PASSWORD",
    };
    let mut main_env = vec![EnvVar {
        name: root_env.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: spec.credentials_secret.clone(),
                key: keys::ROOT_PASSWORD.into(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    if spec.flavor == Flavor::Mariadb {
        // The image's entrypoint runs mariadb-upgrade before it listens on the network when
        // the data directory was written by an older version; the operator verifies it did.
        main_env.push(env("MARIADB_AUTO_UPGRADE", "1"));
        main_env.push(env("MARIADB_DISABLE_UPGRADE_BACKUP", "1"));
    }
    let startup_periods = i32::try_from(spec.startup_timeout.as_secs().div_ceil(10))
        .unwrap_or(i32::MAX)
        .max(1);
    let init = Container {
        name: "init-config".into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["sh".into(), "-c".into(), INIT_SCRIPT.into()]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            env("HEADLESS", &names.headless()),
            env("SERVER_ID_BASE", &SERVER_ID_BASE.to_string()),
        ]),
        volume_mounts: Some(vec![
            mount("config", "/switchyard/config", true),
            mount("conf-d", "/etc/mysql/conf.d", false),
        ]),
        ..Container::default()
    };
    let main = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        env: Some(main_env),
        ports: Some(vec![ContainerPort {
            name: Some("mysql".into()),
            container_port: i32::from(MYSQL_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: cluster.spec.resources.clone(),
        startup_probe: Some(tcp_probe(10, startup_periods)),
        readiness_probe: Some(tcp_probe(5, 3)),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/mysql", false),
            mount("conf-d", "/etc/mysql/conf.d", true),
            mount("bootstrap", "/docker-entrypoint-initdb.d", true),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "conf-d".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "bootstrap".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.bootstrap_secret()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let storage = cluster
        .spec
        .storage
        .clone()
        .unwrap_or_else(|| PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity("10Gi".into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        });
    StatefulSet {
        metadata: meta(cluster, &names, names.cluster.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(spec.replicas).unwrap_or(1)),
            service_name: Some(names.headless()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&names)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    termination_grace_period_seconds: Some(grace_period_seconds(spec)),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(999),
                        ..PodSecurityContext::default()
                    }),
                    init_containers: Some(vec![init]),
                    containers: vec![main],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(storage),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The accounts' credentials, as read from (or generated into) the credentials Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterCredentials {
    /// The root password (first boot only).
    pub root_password: String,
    /// The operator account.
    pub operator_user: String,
    /// Its password.
    pub operator_password: String,
    /// The replication account.
    pub replication_user: String,
    /// Its password.
    pub replication_password: String,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("operator_user", &self.operator_user)
            .field("replication_user", &self.replication_user)
            .finish_non_exhaustive()
    }
}

/// Random alphanumeric passwords, 24 characters each.
pub fn generate_credentials() -> ClusterCredentials {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let password = || -> String {
        rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect()
    };
    ClusterCredentials {
        root_password: password(),
        operator_user: "switchyard".into(),
        operator_password: password(),
        replication_user: "replication".into(),
        replication_password: password(),
    }
}

/// The credentials Secret the operator creates when it is absent (never overwritten).
pub fn credentials_secret(
    cluster: &MySQLCluster,
    spec: &ValidSpec,
    creds: &ClusterCredentials,
) -> Secret {
    let names = Names::of(cluster);
    let data = [
        (keys::ROOT_PASSWORD, &creds.root_password),
        (keys::OPERATOR_USER, &creds.operator_user),
        (keys::OPERATOR_PASSWORD, &creds.operator_password),
        (keys::REPLICATION_USER, &creds.replication_user),
        (keys::REPLICATION_PASSWORD, &creds.replication_password),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: meta(cluster, &names, spec.credentials_secret.clone()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The first-boot SQL: creates the operator and replication accounts on every instance with
/// the binary log off, so no instance has transactions the others lack.
pub fn bootstrap_sql(flavor: Flavor, creds: &ClusterCredentials) -> String {
    use switchyard_mysql::sql::quote_literal;
    let op = quote_literal(&creds.operator_user);
    let op_pw = quote_literal(&creds.operator_password);
    let repl = quote_literal(&creds.replication_user);
    let repl_pw = quote_literal(&creds.replication_password);
    let replication_grant = match flavor {
        Flavor::Mysql => "REPLICATION SLAVE, REPLICATION CLIENT",
        Flavor::Mariadb => "REPLICATION SLAVE, BINLOG MONITOR",
    };
    format!(
        "-- Rendered by switchyard: the accounts the operator and replication use.\n\
         SET SESSION sql_log_bin = 0;\n\
         CREATE USER IF NOT EXISTS {op}@'%' IDENTIFIED BY {op_pw};\n\
         GRANT ALL PRIVILEGES ON *.* TO {op}@'%' WITH GRANT OPTION;\n\
         CREATE USER IF NOT EXISTS {repl}@'%' IDENTIFIED BY {repl_pw};\n\
         GRANT {replication_grant} ON *.* TO {repl}@'%';\n"
    )
}

/// The Secret mounted at `/docker-entrypoint-initdb.d`, run by the image on first boot.
pub fn bootstrap_secret(
    cluster: &MySQLCluster,
    spec: &ValidSpec,
    creds: &ClusterCredentials,
) -> Secret {
    let names = Names::of(cluster);
    Secret {
        metadata: meta(cluster, &names, names.bootstrap_secret()),
        data: Some(BTreeMap::from([(
            "10-switchyard-accounts.sql".to_owned(),
            ByteString(bootstrap_sql(spec.flavor, creds).into_bytes()),
        )])),
        ..Secret::default()
    }
}
