//! The names, labels and annotations of the objects a `MySQLCluster` owns: one place, used by
//! every other module and imported by none of them back.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::MySQLCluster;

/// The label every managed object carries with its cluster's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// The label naming what manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The label naming the application.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// The value of [`LABEL_NAME`] on every object switchyard manages.
pub const APP_NAME: &str = "switchyard";
/// The label holding a pod's (or claim's, or ConfigMap's) instance ordinal.
pub const LABEL_ORDINAL: &str = "switchyard.io/ordinal";
/// The role label the operator maintains on pods: `primary` or `replica`.
pub const LABEL_ROLE: &str = "switchyard.io/role";
/// `primary` on the pod of the recorded primary, kept through its fence until a promotion
/// moves it to the new primary's pod: the primary's PodDisruptionBudget selects it (the role
/// label cannot: a fenced old primary has none while its switchover is not promoted, and a
/// drain's eviction must not pass then).
pub const LABEL_DISRUPTION: &str = "switchyard.io/disruption-budget";
/// `true` on pods in the read pool (the replicas Service selects it); absent when drained.
pub const LABEL_SERVING: &str = "switchyard.io/serving";
/// The pod annotation holding the full hash of the revision the pod was built from (or, after
/// an online change, the revision its server was brought to).
pub const ANNOTATION_REVISION_HASH: &str = "switchyard.io/revision-hash";
/// The pod annotation holding the server version of its revision.
pub const ANNOTATION_VERSION: &str = "switchyard.io/version";
/// The pod annotation marking an instance this operator fenced (the old primary of a
/// switchover, a candidate whose promotion was undone): it is out of both Services until it
/// is promoted, made the primary again, or replicates again.
pub const ANNOTATION_FENCED: &str = "switchyard.io/fenced";
/// The pod annotation naming the last schema change the instance has.
pub const ANNOTATION_SCHEMA: &str = "switchyard.io/schema-change";
/// The pod annotation saving the global values a schema change's replica settings replaced
/// on the instance (JSON), written before the settings are set and removed once the values
/// are set back.
pub const ANNOTATION_CONVERSION_PREVIOUS: &str = "switchyard.io/schema-conversion-previous";
/// The pod annotation saying which donor its instance was told to provision from when the pod
/// was created (an ordinal, or `none`): a replica created without one whose data directory is
/// empty is recreated once a donor exists (its agent reads `instance.json` when it starts).
pub const ANNOTATION_DONOR: &str = "switchyard.io/donor";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "switchyard";
/// The server's port.
pub const MYSQL_PORT: u16 = 3306;
/// The server container's name.
pub const CONTAINER: &str = "mysqld";
/// The offset added to an ordinal to make its `server_id` (never 0).
pub const SERVER_ID_BASE: u32 = 1000;

/// The names of the objects a cluster owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The cluster name.
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
    /// The headless Service giving each pod its DNS name (the pods' `subdomain`).
    pub fn hosts_service(&self) -> String {
        format!("{}-hosts", self.cluster)
    }
    /// The Service selecting the primary.
    pub fn primary_service(&self) -> String {
        format!("{}-primary", self.cluster)
    }
    /// The Service selecting serving replicas.
    pub fn replicas_service(&self) -> String {
        format!("{}-replicas", self.cluster)
    }
    /// The PodDisruptionBudget of the primary's pod (`minAvailable: 1`).
    pub fn primary_budget(&self) -> String {
        format!("{}-primary", self.cluster)
    }
    /// The PodDisruptionBudget of the replicas' pods (one evicted at a time).
    pub fn replicas_budget(&self) -> String {
        format!("{}-replicas", self.cluster)
    }
    /// The ConfigMap of instance `ordinal` (`my.cnf` and `instance.json`).
    pub fn config_map(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}-config", self.cluster)
    }
    /// The pod of `ordinal`.
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }
    /// The data volume claim of `ordinal`.
    pub fn claim(&self, ordinal: u32) -> String {
        format!("data-{}-{ordinal}", self.cluster)
    }
    /// The stable DNS name of the pod of `ordinal` (its hostname in the hosts Service).
    pub fn pod_host(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(ordinal),
            self.hosts_service(),
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
    /// The ordinal of a data claim of this cluster, from its name.
    pub fn ordinal_of_claim(&self, claim: &str) -> Option<u32> {
        self.ordinal_of(claim.strip_prefix("data-")?)
    }
    /// The ordinal named by a replication source host (`NAME-N.NAME-hosts...`).
    pub fn ordinal_of_host(&self, host: &str) -> Option<u32> {
        self.ordinal_of(host.split('.').next()?)
    }
    /// The label selector (`k=v,k=v`) of the cluster's pods.
    pub fn pod_selector(&self) -> String {
        selector_labels(self)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
    /// The label selector of every object the operator manages for the cluster.
    pub fn managed_selector(&self) -> String {
        format!(
            "{LABEL_INSTANCE}={},{LABEL_MANAGED_BY}={FIELD_MANAGER}",
            self.cluster
        )
    }
}

/// The labels that select a cluster's pods.
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
        (LABEL_INSTANCE.to_owned(), names.cluster.clone()),
    ])
}

/// The labels every managed object carries.
pub fn common_labels(names: &Names) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names);
    labels.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
    labels
}

/// The labels of one instance's objects (pod, claim, ConfigMap).
pub fn instance_labels(names: &Names, ordinal: u32) -> BTreeMap<String, String> {
    let mut labels = common_labels(names);
    labels.insert(LABEL_ORDINAL.to_owned(), ordinal.to_string());
    labels
}
