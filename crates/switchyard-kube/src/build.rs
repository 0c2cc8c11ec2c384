//! Pure builders: the objects a `MySQLCluster` owns, computed from its spec, the revision
//! each instance is assigned and what [`crate::instances`] decided for it. Nothing here talks
//! to the API server; every builder is tested against committed fixtures.
//!
//! Instance N is the Pod `<cluster>-<N>` with the claim `data-<cluster>-<N>` and the ConfigMap
//! `<cluster>-<N>-config`. Its pod is built from the revision the engine's record assigns to
//! it ([`crate::crd::InstanceStatus::revision`]): the revision's image, resources, grace
//! period and version, and (in its ConfigMap) the revision's my.cnf. What is not part of a
//! revision (probes' start-up window, anti-affinity, the agent's image) comes from the current
//! spec and the operator: it never restarts a pod by itself, and a pod recreated later picks
//! it up. The revision hash depends only on the spec, so upgrading the operator restarts no
//! database pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, Probe, Secret, SecretVolumeSource, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::agent::{self, AGENT_PORT, InstanceConfig};
use crate::crd::{AntiAffinityMode, MySQLCluster, RevisionEntry, RevisionPod};
use crate::credentials::{self, ClusterCredentials};
use crate::names::{
    ANNOTATION_DONOR, ANNOTATION_REVISION_HASH, ANNOTATION_VERSION, CONTAINER, LABEL_DISRUPTION,
    LABEL_ROLE, LABEL_SERVING, MYSQL_PORT, Names, common_labels, instance_labels, selector_labels,
};
use crate::revision::{self, render_my_cnf};
use crate::validate::ValidSpec;

/// The default size of a data volume when `spec.storage` gives none.
pub const DEFAULT_STORAGE: &str = "10Gi";

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

/// The spec with the variables of `entry` (they differ from the spec's only while a
/// refused change is undone, or for an instance still on an older revision).
pub fn spec_of(spec: &ValidSpec, entry: &RevisionEntry) -> ValidSpec {
    let mut rendered = spec.clone();
    if let Some(config) = &entry.config {
        rendered.config = config.clone();
    }
    if let Ok(version) = entry.version.parse() {
        rendered.version = version;
    }
    rendered
}

/// The pod parts of `entry` (the current spec's for entries recorded before they were kept).
pub fn pod_of(spec: &ValidSpec, cluster: &MySQLCluster, entry: &RevisionEntry) -> RevisionPod {
    entry
        .pod
        .clone()
        .unwrap_or_else(|| revision::revision_pod(spec, cluster))
}

/// The ConfigMap of instance `ordinal`: the my.cnf of the revision assigned to it and its
/// `instance.json`.
pub fn instance_config_map(
    cluster: &MySQLCluster,
    spec: &ValidSpec,
    ordinal: u32,
    entry: &RevisionEntry,
    config: &InstanceConfig,
) -> ConfigMap {
    let names = Names::of(cluster);
    let mut metadata = meta(cluster, &names, names.config_map(ordinal));
    metadata.labels = Some(instance_labels(&names, ordinal));
    let json = serde_json::to_string_pretty(config).expect("an instance config serializes");
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([
            (
                agent::MY_CNF_KEY.to_owned(),
                render_my_cnf(&spec_of(spec, entry)),
            ),
            (agent::INSTANCE_KEY.to_owned(), json + "\n"),
        ])),
        ..ConfigMap::default()
    }
}

/// The claim spec of every data volume (default: 10Gi, ReadWriteOnce, the default class).
pub fn storage_spec(cluster: &MySQLCluster) -> PersistentVolumeClaimSpec {
    cluster
        .spec
        .storage
        .clone()
        .unwrap_or_else(|| PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(DEFAULT_STORAGE.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        })
}

/// The data volume claim of instance `ordinal`. It has no owner: it outlives the cluster (the
/// data stays until someone deletes it), and the credentials Secret lists the claims as its
/// owners, so the Secret goes only with the last of them.
pub fn claim(cluster: &MySQLCluster, ordinal: u32) -> PersistentVolumeClaim {
    let names = Names::of(cluster);
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names.claim(ordinal)),
            namespace: Some(names.namespace.clone()),
            labels: Some(instance_labels(&names, ordinal)),
            ..ObjectMeta::default()
        },
        spec: Some(storage_spec(cluster)),
        ..PersistentVolumeClaim::default()
    }
}

fn service(
    cluster: &MySQLCluster,
    names: &Names,
    name: String,
    selector: BTreeMap<String, String>,
    headless: bool,
) -> Service {
    let port = |name: &str, number: u16| ServicePort {
        name: Some(name.into()),
        port: i32::from(number),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    let mut ports = vec![port("mysql", MYSQL_PORT)];
    if headless {
        ports.push(port("agent", AGENT_PORT));
    }
    Service {
        metadata: meta(cluster, names, name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_owned()),
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The three Services: the hosts Service (headless, every pod, ready or not: the pods' DNS
/// names), the primary (role=primary) and the replicas (role=replica, serving=true; the
/// endpoints follow each pod's readiness, which the agent reports: a replica serves reads only
/// once it replicates within the lag bound).
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
            names.hosts_service(),
            selector_labels(&names),
            true,
        ),
        service(cluster, &names, names.primary_service(), primary, false),
        service(cluster, &names, names.replicas_service(), replicas, false),
    ]
}

/// The two PodDisruptionBudgets that make `kubectl drain` move the primary first.
///
/// - `<cluster>-primary` selects the pod of the recorded primary (labelled
///   [`LABEL_DISRUPTION`]`=primary`, also while a switchover has fenced it and taken its role
///   label) with `minAvailable: 1`: its one pod is never evicted while it is the primary. A
///   drain waits until the operator has moved the primary away (it does when the primary's
///   node is cordoned) and promoted the new one; the old pod may go from then on.
/// - `<cluster>-replicas` selects the pods labelled `role=replica` with `minAvailable` one
///   less than the number of replicas (`spec.replicas - 1`, at least 0): replicas are evicted
///   one at a time, and none while another is not Ready.
///
/// Both use an integer `minAvailable`, not `maxUnavailable`: the disruption controller can
/// compute `maxUnavailable` (or a percentage) only for pods whose controller has a scale
/// subresource, and a pod owned by a `MySQLCluster` has none; it would then allow no
/// disruption at all. A pod without a role label is in the primary's budget while it is the
/// recorded primary (fenced by a switchover), in neither otherwise.
pub fn pod_disruption_budgets(cluster: &MySQLCluster) -> Vec<PodDisruptionBudget> {
    let names = Names::of(cluster);
    // `spec.replicas - 1` replicas, all but one of them available.
    let min_replicas = cluster.spec.replicas.saturating_sub(2).max(0);
    vec![
        budget(
            cluster,
            &names,
            names.primary_budget(),
            (LABEL_DISRUPTION, "primary"),
            1,
        ),
        budget(
            cluster,
            &names,
            names.replicas_budget(),
            (LABEL_ROLE, "replica"),
            min_replicas,
        ),
    ]
}

fn budget(
    cluster: &MySQLCluster,
    names: &Names,
    name: String,
    (key, value): (&str, &str),
    min_available: i32,
) -> PodDisruptionBudget {
    let mut selector = selector_labels(names);
    selector.insert(key.into(), value.into());
    PodDisruptionBudget {
        metadata: meta(cluster, names, name),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

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

fn http_probe(path: &str, period: i32, timeout: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("agent".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// The pods' anti-affinity: the cluster's pods avoid sharing the spec's topology domain.
pub fn affinity(cluster: &MySQLCluster) -> Option<Affinity> {
    let names = Names::of(cluster);
    let spec = &cluster.spec.anti_affinity;
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(&names)),
            ..LabelSelector::default()
        }),
        topology_key: spec.topology_key.clone(),
        ..PodAffinityTerm::default()
    };
    let anti = match spec.mode {
        AntiAffinityMode::None => return None,
        AntiAffinityMode::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..PodAntiAffinity::default()
        },
        AntiAffinityMode::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    })
}

/// The pod of instance `ordinal`, built from `entry`, the revision assigned to it; its agent is
/// installed from `agent_image`; `donor` is the donor its `instance.json` names now.
pub fn pod(
    cluster: &MySQLCluster,
    spec: &ValidSpec,
    ordinal: u32,
    entry: &RevisionEntry,
    donor: Option<u32>,
    agent_image: &str,
) -> Pod {
    let names = Names::of(cluster);
    let revision_pod = pod_of(spec, cluster, entry);
    let mut metadata = meta(cluster, &names, names.pod(ordinal));
    metadata.labels = Some(instance_labels(&names, ordinal));
    metadata.annotations = Some(BTreeMap::from([
        (ANNOTATION_REVISION_HASH.to_owned(), entry.hash.clone()),
        (ANNOTATION_VERSION.to_owned(), entry.version.clone()),
        (
            ANNOTATION_DONOR.to_owned(),
            donor.map_or_else(|| "none".to_owned(), |d| d.to_string()),
        ),
    ]));
    let startup_periods = i32::try_from(spec.startup_timeout.as_secs().div_ceil(10))
        .unwrap_or(i32::MAX)
        .max(1);
    let install = Container {
        name: "install".into(),
        image: Some(agent_image.to_owned()),
        command: Some(agent::install_command()),
        volume_mounts: Some(vec![mount("switchyard", agent::INSTALL_DIR, false)]),
        ..Container::default()
    };
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let main = Container {
        name: CONTAINER.into(),
        image: Some(revision_pod.image.clone()),
        command: Some(agent::run_command()),
        env: Some(vec![
            env("SWITCHYARD_CLUSTER", &names.cluster),
            env("SWITCHYARD_ORDINAL", &ordinal.to_string()),
            env("SWITCHYARD_FLAVOR", &spec.flavor.to_string()),
            env("SWITCHYARD_VERSION", &entry.version),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
        ]),
        ports: Some(vec![port("mysql", MYSQL_PORT), port("agent", AGENT_PORT)]),
        resources: revision_pod.resources.clone(),
        // Crash recovery and a version upgrade may take long: the start-up window is the
        // spec's startupTimeout; liveness starts only after it.
        startup_probe: Some(http_probe("/livez", 10, 5, startup_periods)),
        readiness_probe: Some(http_probe("/readyz", 5, 5, 3)),
        liveness_probe: Some(http_probe("/livez", 10, 5, 6)),
        volume_mounts: Some(vec![
            mount("data", agent::DATA_DIR, false),
            mount("switchyard", agent::INSTALL_DIR, true),
            mount("config", agent::CONFIG_DIR, true),
            mount("secrets", agent::SECRETS_DIR, true),
            mount("run", agent::RUN_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names.claim(ordinal),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("switchyard"),
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(ordinal),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "secrets".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(spec.credentials_secret.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("run"),
        empty_dir("tmp"),
    ];
    Pod {
        metadata,
        spec: Some(PodSpec {
            hostname: Some(names.pod(ordinal)),
            subdomain: Some(names.hosts_service()),
            termination_grace_period_seconds: Some(revision_pod.termination_grace_period_seconds),
            security_context: Some(PodSecurityContext {
                fs_group: Some(999),
                ..PodSecurityContext::default()
            }),
            affinity: affinity(cluster),
            init_containers: Some(vec![install]),
            containers: vec![main],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The credentials Secret the operator creates when it is absent (never overwritten). It has
/// no owner at first; the cluster's data claims are added as its owners as they are created
/// ([`secret_owners`]), so it survives the cluster's deletion while any claim (and so any data
/// directory that knows these passwords) remains, and a cluster recreated with the same name
/// reuses it.
pub fn credentials_secret(
    cluster: &MySQLCluster,
    spec: &ValidSpec,
    creds: &ClusterCredentials,
) -> Secret {
    let names = Names::of(cluster);
    let mut metadata = meta(cluster, &names, spec.credentials_secret.clone());
    metadata.owner_references = None;
    Secret {
        metadata,
        data: Some(credentials::secret_data(creds)),
        ..Secret::default()
    }
}

/// The owner references of the credentials Secret: every data claim of the cluster (by name
/// and uid), in ordinal order.
pub fn secret_owners(claims: &[PersistentVolumeClaim]) -> Vec<OwnerReference> {
    let mut owners: Vec<OwnerReference> = claims
        .iter()
        .filter_map(|c| {
            Some(OwnerReference {
                api_version: "v1".into(),
                kind: "PersistentVolumeClaim".into(),
                name: c.metadata.name.clone()?,
                uid: c.metadata.uid.clone()?,
                ..OwnerReference::default()
            })
        })
        .collect();
    owners.sort_by(|a, b| a.name.cmp(&b.name));
    owners
}
