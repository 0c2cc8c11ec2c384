//! What a new revision needs before it is recorded: the upgrade pre-flight, the classification
//! of a configuration change against every instance's live metadata, and the rollback of an
//! online change an instance refused.
//!
//! A configuration change that only sets dynamic variables becomes an *online* revision: it
//! keeps the pod template of the revision its pods were started from (so no pod restarts) and
//! carries the variables to set, cumulated from that template's configuration, so that any
//! instance on a revision of that template reaches it by setting them. Everything else
//! restarts pods.
//!
//! The servers are asked through [`InstanceOps`]; what a revision is and how the history is
//! kept is [`crate::revision`].

use std::collections::BTreeSet;

use switchyard_config::{ChangePlan, ChangeRequest, plan_change, preflight_upgrade};
use switchyard_plan::history::History;
use switchyard_plan::versions::Version;
use switchyard_plan::{Observed, Timestamp};

use crate::crd::{MySQLCluster, OnlineRevision, VariableSetting};
use crate::error::Error;
use crate::ops::{InstanceOps, Target};
use crate::revision::{self, merge, setting};
use crate::validate::ValidSpec;

/// How a new revision reaches the instances, or why it must not be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pods restart into it one at a time (a static variable, a version, image or resources
    /// change, or a change that could not be classified).
    Restart,
    /// Every instance reaches it by setting variables online; the pod template keeps
    /// `template_hash`.
    Online {
        /// The pod template hash the revision keeps.
        template_hash: String,
        /// The variables and the rollback values.
        online: OnlineRevision,
    },
    /// The configuration is refused (unknown variable, bad value, operator-owned): nothing
    /// changes until the spec does.
    Invalid {
        /// A bounded category (`rejected`, `operator-owned`, ...).
        category: &'static str,
        /// The error, naming the variable, the instance and the rule.
        message: String,
    },
    /// The check needs an instance that is not up: the new revision is not recorded yet and
    /// the cluster stays on its current one (its status still reports what is wrong).
    Wait {
        /// What the check waits for.
        message: String,
    },
    /// The upgrade is refused before any instance restarts (a removed option, accounts on a
    /// removed authentication plugin).
    Blocked {
        /// A bounded category.
        category: &'static str,
        /// The refusal, naming each option and account.
        message: String,
    },
}

/// same one.
impl Verdict {
    /// The pod template hash and the variables of an online revision.
    pub fn online(&self) -> Option<(String, OnlineRevision)> {
        match self {
            Verdict::Online {
                template_hash,
                online,
            } => Some((template_hash.clone(), online.clone())),
            _ => None,
        }
    }
}

fn agreed_previous(
    plan: &ChangePlan,
    variables: &[(String, String)],
) -> Option<Vec<VariableSetting>> {
    let mut out = Vec::new();
    for (name, _) in variables {
        let mut agreed: Option<&str> = None;
        for values in plan.previous_values.values() {
            let value = values.get(name)?.as_deref()?;
            match agreed {
                None => agreed = Some(value),
                Some(a) if a == value => {}
                Some(_) => return None,
            }
        }
        out.push(VariableSetting {
            name: name.clone(),
            value: agreed?.to_owned(),
        });
    }
    Some(out)
}

/// Decides how the spec's new revision reaches the instances, reading what it needs from the
/// servers: the accounts of the primary for an upgrade, every instance's variable metadata for
/// a configuration change. Called only for a revision not recorded yet, on a bootstrapped
/// cluster, before anything is applied.
///
/// # Errors
/// [`Error::CheckChange`] when an instance that must be asked does not answer (nothing is
/// recorded; the reconcile is retried).
pub async fn plan_revision(
    ops: &dyn InstanceOps,
    target: &(dyn Fn(u32) -> Target + Sync),
    spec: &ValidSpec,
    cluster: &MySQLCluster,
    observed: &Observed,
    now: Timestamp,
) -> Result<Verdict, Error> {
    let history = cluster
        .status
        .as_ref()
        .and_then(|s| s.revisions.as_ref())
        .map(|r| r.history.clone())
        .unwrap_or_default();

    // An upgrade: the pre-flight against the primary, before the first pod restarts.
    if let Some(primary) = observed.primary()
        && primary.version != spec.version
    {
        if !primary.health.is_up() {
            return Ok(Verdict::Wait {
                message: format!(
                    "the upgrade pre-flight reads the accounts of the primary (instance {}), \
                     which is {}",
                    primary.ordinal, primary.health
                ),
            });
        }
        let accounts =
            ops.accounts(&target(primary.ordinal))
                .await
                .map_err(|e| Error::CheckChange {
                    ordinal: primary.ordinal,
                    message: e.message,
                })?;
        if let Err(refusal) = preflight_upgrade(
            spec.flavor,
            primary.version,
            spec.version,
            &spec.config,
            &accounts,
        ) {
            return Ok(Verdict::Blocked {
                category: "upgrade-refused",
                message: refusal.to_string(),
            });
        }
        return Ok(Verdict::Restart);
    }

    // A configuration change over the revision every instance runs.
    let hashes: BTreeSet<&str> = observed
        .instances
        .iter()
        .map(|i| i.revision.hash.as_str())
        .collect();
    let from = match hashes.into_iter().collect::<Vec<_>>().as_slice() {
        [only] => history.iter().rev().find(|e| e.hash == *only).cloned(),
        _ => None,
    };
    let Some(from) = from.filter(|f| Version::parse(&f.version).ok() == Some(spec.version)) else {
        return Ok(Verdict::Restart);
    };
    if from.config.as_ref() == Some(&spec.config) {
        // Image, resources or timeouts changed: a restart.
        return Ok(Verdict::Restart);
    }
    let current = from.config.clone().unwrap_or_default();
    let probe: Vec<String> = spec
        .config
        .keys()
        .chain(current.keys())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut metadata = Vec::new();
    for i in observed.by_ordinal() {
        if !i.health.is_up() {
            return Ok(Verdict::Wait {
                message: format!(
                    "a configuration change is checked against every instance, and instance \
                     {} is {}",
                    i.ordinal, i.health
                ),
            });
        }
        let meta = ops
            .variable_metadata(&target(i.ordinal), &probe)
            .await
            .map_err(|e| Error::CheckChange {
                ordinal: i.ordinal,
                message: e.message,
            })?;
        metadata.push(meta);
    }
    let mut scratch = History::new(spec.flavor);
    scratch.ensure(spec.flavor, spec.version, &current, now);
    let request = ChangeRequest::new(spec.version, spec.config.clone());
    let plan = match plan_change(&mut scratch, &request, &metadata, now) {
        Ok(plan) => plan,
        Err(e) if e.is_invalid_request() => {
            return Ok(Verdict::Invalid {
                category: e.category(),
                message: format!("spec.config is refused: {e}"),
            });
        }
        Err(e) => {
            return Err(Error::CheckChange {
                ordinal: 0,
                message: e.to_string(),
            });
        }
    };
    // Online only when nothing but the variables differs from the running revision, and the
    // revision's variables were recorded (older revisions did not keep them).
    let mut same_but_config = spec.clone();
    same_but_config.config = current;
    let only_config =
        from.config.is_some() && revision::revision_hash(&same_but_config, cluster) == from.hash;
    let Some(change) = plan.target.online.as_ref().filter(|_| only_config) else {
        return Ok(Verdict::Restart);
    };
    // Cumulate from the template: an instance started from it reaches the new revision by
    // setting these, whichever online revision it ran before.
    // Only variables of the configuration carry over: a rollback also set back values the
    // configuration does not name (server defaults), which a later change need not repeat.
    let base: Vec<VariableSetting> = from
        .online
        .iter()
        .flat_map(|o| o.variables.iter())
        .filter(|v| {
            from.config
                .as_ref()
                .is_some_and(|c| c.contains_key(&v.name))
        })
        .cloned()
        .collect();
    let variables = merge(&base, &setting(&change.variables));
    let previous = agreed_previous(&plan, &change.variables).map(|p| merge(&base, &p));
    Ok(Verdict::Online {
        template_hash: from.pod_template_hash().to_owned(),
        online: OnlineRevision {
            over: from.number,
            from_hash: from.pod_template_hash().to_owned(),
            variables,
            previous,
        },
    })
}
