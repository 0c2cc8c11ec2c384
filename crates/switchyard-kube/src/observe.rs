//! Observation: the engine's view of the cluster ([`Observed`]) from what the runtime saw of
//! each instance ([`Seen`]: its pod, what its server reported, what its agent reported) and
//! the status. Pure.
//!
//! For a failover, each replica's receiver is reported as a [`Link`] (connected when its I/O
//! thread reads `Yes`; received = executed plus relay log), and the primary's
//! `ack_replicas` when its semi-synchronous replication is lossless, as the local runtime
//! reports them.
//!
//! Roles come from the status alone (`currentPrimary`), never from which instance happens to
//! be writable. An instance's revision is the one its pod says it runs (the pod's annotation),
//! else the one the status assigns to it; under an online target, an instance on any revision
//! of the target's pod template is reported at the template's revision (setting the target's
//! variables brings it there). A fence is reported only while it holds and only when this
//! operator set it.
//!
//! On Galera (`topology: galera`) the kind is `Galera`, the primary is the writer node (the
//! one the primary Service selects), and each node that answers carries its wsrep state, as
//! the local runtime reports it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use switchyard_plan::topology::{Link, TopologyKind};
use switchyard_plan::versions::Version;
use switchyard_plan::{Health, Instance, Observed, Revision, Role};

use crate::agent::AgentStatus;
use crate::crd::{MySQLCluster, MySQLClusterStatus};
use crate::names::{
    ANNOTATION_FENCED, ANNOTATION_REVISION_HASH, ANNOTATION_SCHEMA, ANNOTATION_VERSION,
    LABEL_SERVING, Names,
};
use crate::ops::InstanceView;
use crate::validate::ValidSpec;

/// What the runtime saw of one instance.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The pod, when it exists.
    pub pod: Option<Pod>,
    /// Whether the pod's server is up (its container started, past the agent's start-up
    /// probe) and the pod is not terminating: its server is asked over SQL, even when the
    /// pod is not ready (a replica whose replication is stopped is not ready, and is the
    /// engine's to repoint).
    pub pod_ready: bool,
    /// What the server reported, or why it could not be asked.
    pub view: Option<Result<InstanceView, String>>,
    /// What the agent reported, for a pod whose server is not up (an empty data directory,
    /// provisioning), or why it could not be asked.
    pub agent: Option<Result<AgentStatus, String>>,
}

/// The revision a pod runs, from its template annotation, numbered by the status history.
fn pod_revision(status: &MySQLClusterStatus, pod: &Pod) -> Option<Revision> {
    let hash = pod.annotations().get(ANNOTATION_REVISION_HASH)?.clone();
    let number = status
        .revisions
        .as_ref()
        .and_then(|r| r.history.iter().rev().find(|e| e.hash == hash))
        .map_or(0, |e| e.number);
    Some(Revision { number, hash })
}

/// Builds the engine's view of the cluster from pods and instance reports.
pub fn observed_from(
    names: &Names,
    spec: &ValidSpec,
    cluster: &MySQLCluster,
    seen: &BTreeMap<u32, Seen>,
) -> Observed {
    let status = cluster.status.clone().unwrap_or_default();
    // Under an online target, an instance on any revision of the target's pod template is
    // reported at the template's revision: setting the target's variables brings it there.
    let revisions = status.revisions.clone().unwrap_or_default();
    let target_entry = revisions
        .update
        .and_then(|n| revisions.history.iter().find(|e| e.number == n));
    let family = target_entry
        .map(|t| crate::revision::online_family(&revisions, t))
        .unwrap_or_default();
    let online_from = target_entry
        .and_then(|t| t.online.as_ref())
        .map(|o| Revision {
            number: revisions
                .history
                .iter()
                .rev()
                .find(|e| e.hash == o.from_hash)
                .map_or(0, |e| e.number),
            hash: o.from_hash.clone(),
        });
    // The role comes from the status alone: a writable instance that is not the recorded
    // primary is reported as a writable replica (the decision halts on it).
    let primary = status.current_primary.unwrap_or(0);
    let mut instances = Vec::new();
    for (ordinal, s) in seen {
        let ordinal = *ordinal;
        let last = status.instances.iter().find(|i| i.ordinal == ordinal);
        let history_hash = |n: u64| {
            status
                .revisions
                .as_ref()
                .and_then(|r| r.history.iter().find(|e| e.number == n))
                .map(|e| e.hash.clone())
        };
        let revision = s
            .pod
            .as_ref()
            .and_then(|p| pod_revision(&status, p))
            .or_else(|| {
                let n = last.and_then(|l| l.revision)?;
                Some(Revision {
                    number: n,
                    hash: history_hash(n)?,
                })
            })
            .unwrap_or(Revision {
                number: 0,
                hash: String::new(),
            });
        let revision = match &online_from {
            Some(from) if family.contains(&revision.hash) => from.clone(),
            _ => revision,
        };
        let pod_version = s
            .pod
            .as_ref()
            .and_then(|p| p.annotations().get(ANNOTATION_VERSION).cloned())
            .or_else(|| last.and_then(|l| l.version.clone()))
            .and_then(|v| Version::parse(&v).ok())
            .unwrap_or(spec.version);
        let role = if ordinal == primary {
            Role::Primary
        } else {
            Role::Replica
        };
        let drained = s
            .pod
            .as_ref()
            .is_none_or(|p| p.labels().get(LABEL_SERVING).map(String::as_str) != Some("true"));
        let schema = s
            .pod
            .as_ref()
            .and_then(|p| p.annotations().get(ANNOTATION_SCHEMA).cloned());
        let marked_fenced = s
            .pod
            .as_ref()
            .is_some_and(|p| p.annotations().contains_key(ANNOTATION_FENCED));
        let mut instance = Instance {
            ordinal,
            role,
            version: pod_version,
            revision,
            health: Health::Starting,
            gtid: None,
            writable: false,
            fenced: false,
            drained,
            source: None,
            schema,
            link: None,
            ack_replicas: None,
            galera: None,
        };
        match &s.view {
            None => {}
            Some(Err(reason)) => {
                instance.health = Health::Unreachable {
                    reason: reason.clone(),
                }
            }
            Some(Ok(v)) => {
                instance.version = v.version;
                instance.gtid = v.gtid.clone();
                instance.writable = v.writable;
                instance.health = Health::Ready;
                if spec.topology == TopologyKind::Galera {
                    // Its wsrep state: what the Galera decision gates every step on.
                    instance.galera = v.galera.clone();
                }
                if role == Role::Primary {
                    // How many replicas acknowledge each of its commits, when it cannot fall
                    // back to asynchronous replication: what makes a failover provably
                    // lossless.
                    instance.ack_replicas = v.ack_replicas;
                }
                if let Some(r) = &v.replication {
                    instance.source = names.ordinal_of_host(&r.source_host);
                    if role == Role::Replica {
                        // Its receiver: whether it still reaches its source (a replica that
                        // lost the primary corroborates its failure) and what it received.
                        instance.link = Some(Link {
                            connected: r.connected,
                            received: r.received.clone(),
                        });
                    }
                    // A replica's health is its replication's; the primary's replication
                    // (a demoted old primary during its switchover) is the engine's business.
                    if role == Role::Replica {
                        instance.health = if r.errno != 0 {
                            Health::ReplicationStopped {
                                errno: r.errno,
                                message: r.error.clone(),
                            }
                        } else if !r.running {
                            // Configured but not running (a restart with skip-replica-start,
                            // a demotion not started yet): the decision repoints it.
                            Health::ReplicationStopped {
                                errno: 0,
                                message: "replication is configured but stopped".into(),
                            }
                        } else {
                            match r.lag_seconds.filter(|l| *l > 0) {
                                Some(seconds) => Health::Lagging { seconds },
                                None => Health::Ready,
                            }
                        };
                    }
                }
                // The fence holds now, and this operator set it.
                instance.fenced = marked_fenced && v.fenced;
            }
        }
        instances.push(instance);
    }
    Observed {
        kind: spec.topology,
        flavor: spec.flavor,
        instances,
    }
}
