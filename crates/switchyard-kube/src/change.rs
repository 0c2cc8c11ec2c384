//! What a new revision needs before it is recorded: the upgrade pre-flight, the classification
//! of a configuration change against every instance's live metadata, and the rollback of an
//! online change an instance refused.
//!
//! A configuration change that only sets dynamic variables becomes an *online* revision: it
//! keeps the pod template of the revision its pods were started from (so no pod restarts) and
//! carries the variables to set, cumulated from that template's configuration, so that any
//! instance started from the template (including one the kubelet recreated, which reads the
//! re-rendered ConfigMap) reaches it by setting them. Everything else restarts pods as before.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchyard_config::{ChangePlan, ChangeRequest, plan_change, preflight_upgrade};
use switchyard_plan::decide::{OnlineChange, Target};
use switchyard_plan::history::History;
use switchyard_plan::versions::Version;
use switchyard_plan::{Observed, Revision, Timestamp};

use crate::build;
use crate::crd::{MySQLCluster, OnlineRevision, RevisionEntry, Revisions, VariableSetting};
use crate::error::Error;
use crate::runtime::KubeRuntime;
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

fn setting(pairs: &[(String, String)]) -> Vec<VariableSetting> {
    pairs
        .iter()
        .map(|(name, value)| VariableSetting {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

fn pairs(settings: &[VariableSetting]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect()
}

/// `base` with `over` set on top, order kept (a name already in `base` keeps its place).
fn merge(base: &[VariableSetting], over: &[VariableSetting]) -> Vec<VariableSetting> {
    let mut out: Vec<VariableSetting> = base.to_vec();
    for s in over {
        match out.iter_mut().find(|o| o.name == s.name) {
            Some(o) => o.value = s.value.clone(),
            None => out.push(s.clone()),
        }
    }
    out
}

/// The previous value of each variable of `plan`'s online change, when every instance had the
/// same one.
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
    runtime: &KubeRuntime,
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
        let accounts = runtime
            .ops()
            .accounts(&runtime.target(primary.ordinal))
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
        let meta = runtime
            .ops()
            .variable_metadata(&runtime.target(i.ordinal), &probe)
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
        from.config.is_some() && build::revision_hash(&same_but_config, cluster) == from.hash;
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

/// The history entry of a new revision `revision` for `spec`, as `verdict` (Restart or
/// Online) says it is reached.
pub fn new_entry(
    revision: &Revision,
    spec: &ValidSpec,
    verdict: &Verdict,
    now: &Time,
) -> RevisionEntry {
    let (template_hash, online) = match verdict {
        Verdict::Online {
            template_hash,
            online,
        } => (Some(template_hash.clone()), Some(online.clone())),
        _ => (None, None),
    };
    RevisionEntry {
        number: revision.number,
        hash: revision.hash.clone(),
        version: spec.version.to_string(),
        created: now.clone(),
        config: Some(spec.config.clone()),
        template_hash,
        online,
        refused: None,
        rolls_back: None,
    }
}

/// The engine's target for a history entry.
pub fn target_of(entry: &RevisionEntry, fallback_version: Version) -> Target {
    let version = Version::parse(&entry.version).unwrap_or(fallback_version);
    let mut target = Target::new(
        Revision {
            number: entry.number,
            hash: entry.hash.clone(),
        },
        version,
    );
    target.online = entry.online.as_ref().map(|o| OnlineChange {
        from_hash: o.from_hash.clone(),
        variables: pairs(&o.variables),
    });
    target
}

/// Records that an instance refused the online revision `number` (`message` names the
/// variable, the instance and what the server said) and appends the revision that undoes it:
/// the content of the revision it was applied over, set back online with the values every
/// instance had before, or, when they did not all agree, a restart on that revision. Returns
/// the new revision's number.
pub fn roll_back(revisions: &mut Revisions, number: u64, message: &str, now: &Time) -> Option<u64> {
    let refused = revisions.history.iter_mut().find(|e| e.number == number)?;
    if refused.rolls_back.is_some() || refused.refused.is_some() {
        return None;
    }
    refused.refused = Some(message.to_owned());
    let refused = refused.clone();
    let online = refused.online.clone()?;
    let from = revisions
        .history
        .iter()
        .find(|e| e.number == online.over)?
        .clone();
    let next = revisions
        .history
        .iter()
        .map(|e| e.number)
        .max()
        .unwrap_or(0)
        + 1;
    let (template_hash, back) = match &online.previous {
        Some(previous) => (
            Some(online.from_hash.clone()),
            Some(OnlineRevision {
                over: number,
                from_hash: refused.hash.clone(),
                variables: previous.clone(),
                previous: None,
            }),
        ),
        // The instances did not agree on their values before: they restart on the previous
        // revision, whose my.cnf gives each its value again.
        None => (None, None),
    };
    revisions.history.push(RevisionEntry {
        number: next,
        hash: from.hash.clone(),
        version: from.version.clone(),
        created: now.clone(),
        config: from.config.clone(),
        template_hash: template_hash.filter(|t| *t != from.hash),
        online: back,
        refused: None,
        rolls_back: Some(number),
    });
    revisions.update = Some(next);
    Some(next)
}

/// What the reconciler targets for a spec whose content hash is `hash`.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// The latest revision has this content.
    Latest(RevisionEntry),
    /// The spec asks for a revision an instance refused; the latest revision undoes it.
    Refused {
        /// The revision that undoes it (the target).
        latest: RevisionEntry,
        /// Why it was refused.
        message: String,
        /// The refused revision's number.
        refused: u64,
    },
    /// A new revision with this number.
    New(u64),
}

/// Resolves the spec's content hash against the history: the latest revision when it has
/// this content; a refused revision stays undone until the spec changes; anything else
/// (including going back to an earlier configuration) is a new forward revision.
pub fn resolve(revisions: Option<&Revisions>, hash: &str) -> Resolved {
    let history = revisions.map(|r| r.history.as_slice()).unwrap_or_default();
    let latest = history.iter().max_by_key(|e| e.number);
    if let Some(latest) = latest {
        if latest.hash == hash && latest.rolls_back.is_none() {
            return Resolved::Latest(latest.clone());
        }
        if let Some(n) = latest.rolls_back
            && let Some(refused) = history.iter().find(|e| e.number == n && e.hash == hash)
        {
            return Resolved::Refused {
                latest: latest.clone(),
                message: refused.refused.clone().unwrap_or_default(),
                refused: n,
            };
        }
        if latest.hash == hash {
            return Resolved::Latest(latest.clone());
        }
    }
    Resolved::New(history.iter().map(|e| e.number).max().unwrap_or(0) + 1)
}

/// The hashes of the revisions whose instances reach the online `target` by setting its
/// variables: every revision on its pod template (and the template's own), for the runtime to
/// report them at the target's `from_hash`. Empty when the target is not online.
pub fn online_family(revisions: &Revisions, target: &RevisionEntry) -> BTreeSet<String> {
    if target.online.is_none() {
        return BTreeSet::new();
    }
    let template = target.pod_template_hash();
    revisions
        .history
        .iter()
        .filter(|e| e.pod_template_hash() == template)
        .map(|e| e.hash.clone())
        .chain(std::iter::once(template.to_owned()))
        .filter(|h| *h != target.hash)
        .collect()
}
