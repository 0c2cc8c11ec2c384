//! What the engine would do on a healthy cluster: [`decide`] run against an
//! ideal cluster in which every action succeeds at once.
//!
//! `switchyard plan` prints this. It is the same decision the engine takes,
//! not a second planner: only the effect of each action is idealised.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decide::{Action, Policy, Target, WaitReason, decide};
use crate::record::{Intent, Record, SwitchoverStep, SwitchoverSummary};
use crate::topology::{
    GaleraState, Health, Instance, Observed, Revision, Role, Timestamp, TopologyError, TopologyKind,
};
use crate::versions::{Flavor, Version, catalog};

/// A cluster described by a person (a topology file): flavor and instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// The server flavor.
    pub flavor: Flavor,
    /// Async replication (the default) or Galera.
    #[serde(default = "default_kind")]
    pub kind: TopologyKind,
    /// The instances.
    pub instances: Vec<InstanceSpec>,
}

fn default_kind() -> TopologyKind {
    TopologyKind::Async
}

/// One instance of a [`TopologySpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Its ordinal.
    pub ordinal: u32,
    /// Primary or replica.
    pub role: Role,
    /// The server version it runs, as the server or a person writes it.
    pub version: String,
    /// The ordinal it replicates from (replicas default to the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<u32>,
}

/// A topology description that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A version that does not parse or that the catalog does not know.
    #[error("instance {ordinal}: {source}")]
    Version {
        /// The instance.
        ordinal: u32,
        /// The parse or catalog error.
        #[source]
        source: crate::versions::VersionError,
    },
    /// The topology is inconsistent.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

impl SpecError {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            SpecError::Version { .. } => "version",
            SpecError::Topology(e) => e.category(),
        }
    }
}

impl TopologySpec {
    /// The healthy cluster this describes, every instance on revision 1.
    pub fn to_observed(&self) -> Result<Observed, SpecError> {
        let primary = self
            .instances
            .iter()
            .find(|i| i.role == Role::Primary)
            .map(|i| i.ordinal);
        let mut instances = Vec::new();
        for spec in &self.instances {
            let version = Version::parse(&spec.version)
                .and_then(|v| catalog().series(self.flavor, v).map(|_| v))
                .map_err(|source| SpecError::Version {
                    ordinal: spec.ordinal,
                    source,
                })?;
            let source = match spec.role {
                Role::Primary => None,
                Role::Replica => spec.source.or(primary),
            };
            instances.push(Instance {
                ordinal: spec.ordinal,
                role: spec.role,
                version,
                revision: Revision::new(1, self.flavor, version, &BTreeMap::new()),
                health: Health::Ready,
                gtid: None,
                writable: spec.role == Role::Primary,
                fenced: false,
                drained: false,
                source,
                schema: None,
                link: None,
                ack_replicas: None,
                // An ideal Galera node: synced in a cluster of every node.
                galera: (self.kind == TopologyKind::Galera).then(|| {
                    GaleraState::synced(u32::try_from(self.instances.len()).unwrap_or(u32::MAX))
                }),
            });
        }
        let observed = Observed {
            kind: self.kind,
            flavor: self.flavor,
            instances,
        };
        observed.validate()?;
        Ok(observed)
    }
}

/// One step of a plan and why the engine takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// The action.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
}

impl fmt::Display for PlannedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.action, self.reason)
    }
}

/// The longest plan [`plan`] produces before giving up.
const MAX_STEPS: usize = 1000;

/// The steps the engine would take to bring the healthy cluster `observed` to
/// `target`, ending with `Done` or `Halt`. A supervised switchover is shown
/// as its approval wait, then assumed approved.
pub fn plan(observed: &Observed, target: &Target, policy: &Policy) -> Vec<PlannedStep> {
    let mut sim = Sim {
        observed: observed.clone(),
        record: Record::default(),
        now: Timestamp(0),
    };
    let mut policy = policy.clone();
    let mut steps = Vec::new();
    for _ in 0..MAX_STEPS {
        sim.record.highest_version = sim
            .observed
            .highest_version()
            .max(sim.record.highest_version);
        sim.record.canary =
            crate::decide::note_canary(&sim.observed, &sim.record, target, &policy, sim.now);
        let action = decide(&sim.observed, &sim.record, target, &policy, sim.now);
        let reason = sim.why(&action, target);
        let last = matches!(
            action,
            Action::Done
                | Action::Halt { .. }
                | Action::Wait {
                    reason: WaitReason::Paused
                }
        );
        match &action {
            Action::Wait {
                reason: WaitReason::AwaitingApproval { revision, from, to },
            } => {
                policy.approval = Some(crate::decide::Approval {
                    revision: *revision,
                    from: *from,
                    to: *to,
                });
            }
            Action::Wait {
                reason: WaitReason::DrainGrace { until, .. },
            } => {
                sim.now = *until;
                continue;
            }
            // The canary's bake is a step of the plan: shown once, then passed.
            Action::Wait {
                reason: WaitReason::CanaryBake { until, .. },
            } => {
                sim.now = *until;
                steps.push(PlannedStep { action, reason });
                continue;
            }
            Action::Wait { .. } if !last => {
                // A healthy ideal cluster has nothing else to wait for.
                steps.push(PlannedStep { action, reason });
                break;
            }
            _ => {}
        }
        sim.apply(&action, target);
        steps.push(PlannedStep { action, reason });
        if last {
            break;
        }
        sim.now = sim.now.after(std::time::Duration::from_secs(1));
    }
    steps
}

struct Sim {
    observed: Observed,
    record: Record,
    now: Timestamp,
}

impl Sim {
    fn inst(&mut self, ordinal: u32) -> Option<&mut Instance> {
        self.observed
            .instances
            .iter_mut()
            .find(|i| i.ordinal == ordinal)
    }

    fn apply(&mut self, action: &Action, target: &Target) {
        let now = self.now;
        match action {
            Action::Drain { ordinal } => {
                self.record.intent = Some(Intent::Drained {
                    ordinal: *ordinal,
                    at: now,
                });
                if let Some(i) = self.inst(*ordinal) {
                    i.drained = true;
                }
            }
            Action::Undrain { ordinal } => {
                self.record.intent = None;
                if let Some(i) = self.inst(*ordinal) {
                    i.drained = false;
                    i.fenced = false;
                }
            }
            Action::Restart {
                ordinal,
                revision,
                version,
                ..
            } => {
                self.record.intent = Some(Intent::Restarting {
                    ordinal: *ordinal,
                    revision: revision.clone(),
                    started: now,
                });
                if let Some(i) = self.inst(*ordinal) {
                    i.version = *version;
                    i.revision = revision.clone();
                    i.health = Health::Ready;
                    i.writable = i.role == Role::Primary && !i.fenced;
                }
            }
            Action::ApplyVariables {
                ordinal, revision, ..
            } => {
                if let Some(i) = self.inst(*ordinal) {
                    i.revision = revision.clone();
                }
            }
            Action::Recover { ordinal } => {
                if let Some(i) = self.inst(*ordinal) {
                    i.health = Health::Ready;
                }
            }
            Action::Repoint { ordinal, source } => {
                if let Some(i) = self.inst(*ordinal) {
                    i.source = Some(*source);
                    i.fenced = false;
                }
            }
            Action::Fence { ordinal } => {
                if let Some(i) = self.inst(*ordinal) {
                    i.fenced = true;
                }
            }
            Action::Switchover { from, to } => {
                let (from, to) = (*from, *to);
                let new_version = self.observed.instance(to).map(|i| i.version);
                let flavor = self.observed.flavor;
                for i in &mut self.observed.instances {
                    if i.ordinal == from {
                        i.role = Role::Replica;
                        i.writable = false;
                        i.fenced = true;
                        i.source = None;
                        let compatible = new_version.is_some_and(|nv| {
                            catalog()
                                .check_replication(flavor, nv, i.version)
                                .is_ok_and(|v| v.allowed)
                        });
                        if compatible && i.runs(&target.revision) {
                            i.source = Some(to);
                        }
                    } else if i.ordinal == to {
                        i.role = Role::Primary;
                        i.writable = true;
                        i.source = None;
                    } else {
                        i.source = Some(to);
                    }
                }
                self.record.intent = Some(Intent::Switchover {
                    from,
                    to,
                    step: SwitchoverStep::Repointed,
                    started: now,
                    deadline: now,
                });
                self.record.last_switchover = Some(SwitchoverSummary {
                    from,
                    to,
                    started: now,
                    promoted: now,
                });
            }
            Action::Unfence { ordinal } => {
                self.record.intent = None;
                if let Some(i) = self.inst(*ordinal) {
                    i.fenced = false;
                    i.writable = i.role == Role::Primary;
                }
            }
            _ => {}
        }
    }

    fn why(&self, action: &Action, target: &Target) -> String {
        let describe = |ordinal: u32| {
            self.observed
                .instance(ordinal)
                .map(|i| format!("instance {ordinal} runs {} {}", i.version, i.revision))
                .unwrap_or_default()
        };
        match action {
            Action::Drain { ordinal } => format!(
                "{}, target {} {}; replicas go first, highest ordinal first, one at a time",
                describe(*ordinal),
                target.version,
                target.revision
            ),
            Action::Restart {
                slow_shutdown: true,
                ..
            } => "a version change needs a clean, slow shutdown (innodb_fast_shutdown=0)".into(),
            Action::Restart { .. } => "the new revision needs a restart".into(),
            Action::Undrain { .. } => "it runs the target revision and replicates".into(),
            Action::Repoint { ordinal, source } => format!(
                "instance {ordinal} was kept out of replication until it ran a version that may replicate from {source}"
            ),
            Action::Switchover { to, .. } => format!(
                "every replica runs the target; the primary goes last, behind a switchover to {to}: \
                 the healthy replica with the lowest ordinal whose version is no newer than any other instance's"
            ),
            Action::ApplyVariables { .. } => {
                "the change is dynamic: applied online, no restart".into()
            }
            Action::Wait { reason } => reason.to_string(),
            Action::Done => "every instance runs the target revision".into(),
            Action::Halt { .. } => "nothing was changed".into(),
            _ => String::new(),
        }
    }
}
