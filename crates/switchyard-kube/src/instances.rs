//! What each instance should be, decided from the status and the last observation: the
//! revision the record assigns to it, and what its agent is told ([`InstanceConfig`]): whether
//! to initialize an empty data directory, which donor to provision one from, which source to
//! replicate from. Pure: [`crate::build`] turns the result into objects.
//!
//! The rules:
//! - An instance runs the revision `status.instances[N].revision` assigns to it. Only the
//!   engine moves an existing instance to another revision (a restart assigns the target
//!   first, an online change assigns it once its variables are set), so a pod recreated
//!   outside the engine (eviction, node loss, `kubectl delete`) comes back on its own
//!   revision, never on the target early. A new instance (bootstrap, scale-up) is assigned the
//!   primary's revision (the target while the cluster was never initialized), so the primary
//!   can always be its donor.
//! - `bootstrap` only for ordinal 0 of a cluster never initialized (`status.initialized`
//!   false and no primary yet). Once the agent initialized it, the status says so before the
//!   operator makes it writable, and no instance is ever initialized again: an instance whose
//!   data came back empty is provisioned from a donor (a replica) or stays empty and read-only
//!   (the primary; the rollout halts naming it).
//! - `provision_from`: for every replica, a healthy instance running the same server version
//!   as the revision assigned to it (the primary first, then the lowest ordinal); the agent
//!   uses it only when the data directory is empty. Never on the primary.
//! - Galera (`topology: galera`): no donor and no source; every node is told its peers (every
//!   node's stable host name) and joins them, receiving their state by SST. `new_cluster`
//!   only for the node `status.galeraBootstrap` names ([`galera_bootstrap`] chooses it and
//!   the reconciler records it before any pod is built), so at most one node of a cluster is
//!   ever told to start one.

use std::collections::BTreeMap;

use switchyard_plan::Observed;
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::versions::Version;

use crate::agent::{AGENT_PORT, Donor, GaleraMember, InstanceConfig, Source};
use crate::crd::{GaleraBootstrap, InstanceStatus, MySQLClusterStatus, RevisionEntry};
use crate::names::{MYSQL_PORT, Names, SERVER_ID_BASE};

/// What one instance should be.
#[derive(Clone, Debug, PartialEq)]
pub struct InstancePlan {
    /// The ordinal.
    pub ordinal: u32,
    /// The revision assigned to it.
    pub entry: RevisionEntry,
    /// What its agent is told.
    pub config: InstanceConfig,
    /// The donor's ordinal, when it has one.
    pub donor: Option<u32>,
}

/// The history entry numbered `number`.
pub fn entry(status: &MySQLClusterStatus, number: u64) -> Option<&RevisionEntry> {
    status
        .revisions
        .as_ref()?
        .history
        .iter()
        .rev()
        .find(|e| e.number == number)
}

/// The revision assigned to `ordinal` by the status, when it names one still in the history.
pub fn assigned(status: &MySQLClusterStatus, ordinal: u32) -> Option<u64> {
    let n = status
        .instances
        .iter()
        .find(|i| i.ordinal == ordinal)?
        .revision?;
    entry(status, n).map(|e| e.number)
}

/// The primary the instances are arranged around: the recorded one, or ordinal 0 while the
/// cluster was never initialized.
pub fn primary_of(status: &MySQLClusterStatus) -> u32 {
    status.current_primary.unwrap_or(0)
}

/// The revision a new instance is given: the primary's (so the primary can be its donor),
/// else the current one, else `target`.
pub fn new_instance_revision(status: &MySQLClusterStatus, target: u64) -> u64 {
    if !status.initialized && status.current_primary.is_none() {
        return target;
    }
    assigned(status, primary_of(status))
        .or_else(|| status.revisions.as_ref().and_then(|r| r.current))
        .filter(|n| entry(status, *n).is_some())
        .unwrap_or(target)
}

/// The revision of every instance `0..replicas`: the assigned one, or the one a new instance is
/// given. The status' `instances` is brought to this assignment before any pod is built.
pub fn assignments(status: &MySQLClusterStatus, replicas: u32, target: u64) -> BTreeMap<u32, u64> {
    (0..replicas)
        .map(|o| {
            (
                o,
                assigned(status, o).unwrap_or_else(|| new_instance_revision(status, target)),
            )
        })
        .collect()
}

/// A healthy instance running `version` other than `ordinal` (within the lag bound), the
/// primary first, then the lowest ordinal.
pub fn donor(
    observed: &Observed,
    ordinal: u32,
    version: Version,
    primary: u32,
    max_lag_seconds: u64,
) -> Option<u32> {
    let mut candidates: Vec<u32> = observed
        .instances
        .iter()
        .filter(|i| {
            i.ordinal != ordinal
                && i.version == version
                && i.lag_seconds().is_some_and(|l| l <= max_lag_seconds)
        })
        .map(|i| i.ordinal)
        .collect();
    candidates.sort_by_key(|o| (*o != primary, *o));
    candidates.first().copied()
}

/// The Galera state transfer method: `mariadb-backup` (non-blocking on the donor), as
/// MariaDB recommends for production clusters.
pub const GALERA_SST_METHOD: &str = "mariabackup";

/// Which node starts a Galera cluster, when one must be named now: ordinal 0 of a cluster
/// never initialized (no node has Galera state yet). `None` when a node is already named, and
/// once the cluster was initialized: a cluster that was initialized is never bootstrapped
/// from an empty node. (Recovery after every node went down, naming the node with the highest
/// recovered seqno, is not built yet; see docs/operator.md.)
pub fn galera_bootstrap(status: &MySQLClusterStatus) -> Option<GaleraBootstrap> {
    if status.galera_bootstrap.is_some() || status.initialized || status.current_primary.is_some() {
        return None;
    }
    Some(GaleraBootstrap {
        ordinal: 0,
        reason: "a new cluster: no node has Galera state yet".into(),
    })
}

/// Every instance's plan, from the status (already carrying the assignment) and the last
/// observation.
pub fn plan(
    names: &Names,
    status: &MySQLClusterStatus,
    observed: &Observed,
    replicas: u32,
    max_lag_seconds: u64,
    topology: TopologyKind,
) -> Vec<InstancePlan> {
    let primary = primary_of(status);
    let never_initialized = !status.initialized && status.current_primary.is_none();
    let peers: Vec<String> = (0..replicas).map(|o| names.pod_host(o)).collect();
    (0..replicas)
        .filter_map(|ordinal| {
            let entry = entry(status, assigned(status, ordinal)?)?.clone();
            if topology == TopologyKind::Galera {
                let config = InstanceConfig {
                    revision: entry.hash.clone(),
                    server_id: SERVER_ID_BASE + ordinal,
                    bootstrap: never_initialized && ordinal == 0,
                    provision_from: None,
                    replicate_from: None,
                    max_lag_seconds,
                    galera: Some(GaleraMember {
                        cluster_name: names.cluster.clone(),
                        peers: peers.clone(),
                        new_cluster: status
                            .galera_bootstrap
                            .as_ref()
                            .is_some_and(|b| b.ordinal == ordinal),
                        sst_method: GALERA_SST_METHOD.into(),
                    }),
                };
                return Some(InstancePlan {
                    ordinal,
                    entry,
                    config,
                    donor: None,
                });
            }
            let version = Version::parse(&entry.version).ok()?;
            let is_primary = ordinal == primary;
            let donor = (!is_primary)
                .then(|| donor(observed, ordinal, version, primary, max_lag_seconds))
                .flatten();
            let config = InstanceConfig {
                revision: entry.hash.clone(),
                server_id: SERVER_ID_BASE + ordinal,
                bootstrap: never_initialized && ordinal == 0,
                provision_from: donor.map(|d| Donor {
                    host: names.pod_host(d),
                    port: MYSQL_PORT,
                    agent_port: AGENT_PORT,
                }),
                replicate_from: (!is_primary).then(|| Source {
                    host: names.pod_host(primary),
                    port: MYSQL_PORT,
                }),
                max_lag_seconds,
                galera: None,
            };
            Some(InstancePlan {
                ordinal,
                entry,
                config,
                donor,
            })
        })
        .collect()
}

/// Sets the revision of every instance `0..replicas` to `assignments` and forgets the instances
/// beyond (scaled down).
pub fn assign(status: &mut MySQLClusterStatus, assignments: &BTreeMap<u32, u64>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_galera_bootstrap_node_is_named_only_for_a_cluster_never_initialized_and_only_once() {
        let fresh = MySQLClusterStatus::default();
        let named = galera_bootstrap(&fresh).expect("a new cluster names a node");
        assert_eq!(named.ordinal, 0);
        // Already named: not named again (the reconciler records it once).
        let pending = MySQLClusterStatus {
            galera_bootstrap: Some(named),
            ..MySQLClusterStatus::default()
        };
        assert_eq!(galera_bootstrap(&pending), None);
        // Initialized, or with a writer: never named again, whatever the nodes report.
        let initialized = MySQLClusterStatus {
            initialized: true,
            ..MySQLClusterStatus::default()
        };
        assert_eq!(galera_bootstrap(&initialized), None);
        let running = MySQLClusterStatus {
            current_primary: Some(2),
            ..MySQLClusterStatus::default()
        };
        assert_eq!(galera_bootstrap(&running), None);
    }
}
