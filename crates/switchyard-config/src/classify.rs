//! Classification of each changed variable and the plan the engine rolls out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_plan::Target;
use switchyard_plan::decide::OnlineChange;
use switchyard_plan::history::{Change, History, RevisionEntry, diff};
use switchyard_plan::topology::Timestamp;
use switchyard_plan::versions::{Flavor, Version};

use crate::error::ConfigError;
use crate::metadata::{Mutability, Scope, ServerMetadata};
use crate::name::normalize_config;
use crate::owned::operator_owned;
use crate::removed::removed_option;

/// How one variable of a change reaches the servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "kebab-case")]
pub enum Classification {
    /// Set online with `SET GLOBAL`, no restart.
    Dynamic,
    /// Needs a restart with the new my.cnf.
    Static,
    /// Refused, with the rule it breaks.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// Classifies setting `name` (normalised) to `value` on the server `meta` describes.
///
/// In order: switchyard's own variables, unknown to the server, session-only, computed by the
/// server (no option sets it), a value outside the type, range or allowed values: invalid.
/// Otherwise dynamic when the server can change it at run time, static when it cannot or when
/// that is not known (MySQL variables that were not probed).
pub fn classify(meta: &ServerMetadata, name: &str, value: &str) -> Classification {
    let invalid = |reason: String| Classification::Invalid { reason };
    if let Some(reason) = operator_owned(name) {
        return invalid(format!("switchyard owns it: {reason}"));
    }
    let Some(info) = meta.get(name) else {
        return invalid(format!("{} does not know this variable", meta.version));
    };
    if info.scope == Scope::SessionOnly {
        return invalid("it is a session-only variable: it cannot be set for the server".into());
    }
    if !info.settable {
        return invalid(
            "the server computes it and no option sets it (a my.cnf naming it would stop the \
             server from starting)"
                .into(),
        );
    }
    if let Err(reason) = info.check_value(value) {
        return invalid(reason);
    }
    match info.mutability {
        Mutability::Dynamic => Classification::Dynamic,
        Mutability::Static | Mutability::Unknown => Classification::Static,
    }
}

/// The configuration (and version) a cluster should run next.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRequest {
    /// The server version; the current one for a configuration change alone.
    pub version: Version,
    /// The whole configuration (not a delta); names in any spelling.
    pub config: BTreeMap<String, String>,
    /// Metadata read from servers of the target version, when the version changes and such a
    /// server could be read (an upgraded canary, a scratch instance). Empty otherwise.
    pub target_metadata: Vec<ServerMetadata>,
}

impl ChangeRequest {
    /// A request for `version` with `config`.
    pub fn new(version: Version, config: BTreeMap<String, String>) -> Self {
        ChangeRequest {
            version,
            config,
            target_metadata: Vec::new(),
        }
    }

    /// The same request, checked against servers of the target version too.
    pub fn with_target_metadata(mut self, metadata: Vec<ServerMetadata>) -> Self {
        self.target_metadata = metadata;
        self
    }
}

/// What happens to one variable of a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableVerdict {
    /// What changed.
    pub change: Change,
    /// Dynamic or static (invalid changes never make a plan).
    pub classification: Classification,
    /// Why a restart is needed, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_reason: Option<String>,
}

/// A validated change: the new revision, what each variable needs, and the engine's target.
///
/// Serializable, so a runtime can keep it with its record and still roll back after the
/// operator restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePlan {
    /// The flavor.
    pub flavor: Flavor,
    /// The revision the cluster ran.
    pub from: RevisionEntry,
    /// The revision it moves to (recorded in the history).
    pub to: RevisionEntry,
    /// Whether [`ChangePlan::to`] is a new revision (false: the content was already the latest).
    pub created: bool,
    /// One verdict per changed variable, in name order (a version change is not listed here).
    pub variables: Vec<VariableVerdict>,
    /// The engine's target: online from [`ChangePlan::from`]'s hash when every change is
    /// dynamic, otherwise a rolling restart.
    pub target: Target,
    /// The value each instance had before, per changed variable, as the server printed it
    /// (`None` when NULL or unknown): instance (as [`ServerMetadata::instance`]) -> variable ->
    /// value. What an online rollback sets back.
    pub previous_values: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl ChangePlan {
    /// True when the change is applied online, without any restart.
    pub fn is_online(&self) -> bool {
        self.target.online.is_some()
    }

    /// The target that undoes this change after an instance refused it: a new forward revision
    /// with the previous configuration (same content, so same hash, as [`ChangePlan::from`]),
    /// recorded in `history`.
    ///
    /// `changed` names the instances that run the new revision (as
    /// [`ServerMetadata::instance`]); the others never changed (an instance that refused undid
    /// its own partial change) and already run the rollback revision. When the version did not
    /// change and the changed instances all had the same values before, those values are set
    /// back online on them; otherwise they restart on the previous revision, whose my.cnf gives
    /// each its own value again.
    pub fn rollback(&self, history: &mut History, changed: &[&str], now: Timestamp) -> Target {
        let (entry, _) = history.ensure(self.flavor, self.from.version, &self.from.config, now);
        let mut target = Target::new(entry.revision.clone(), entry.version);
        if self.from.version == self.to.version
            && let Some(values) = self.agreed_previous(changed)
        {
            target.online = Some(OnlineChange {
                from_hash: self.to.revision.hash.clone(),
                variables: values,
            });
        }
        target
    }

    /// The previous values of the changed variables when every instance in `changed` had the
    /// same non-NULL value for each.
    fn agreed_previous(&self, changed: &[&str]) -> Option<Vec<(String, String)>> {
        if changed.is_empty() {
            return None;
        }
        let names: Vec<&String> = self
            .variables
            .iter()
            .filter_map(|v| match &v.change {
                Change::Added { name, .. }
                | Change::Changed { name, .. }
                | Change::Removed { name, .. } => Some(name),
                Change::Version { .. } => None,
            })
            .collect();
        let mut out = Vec::new();
        for name in names {
            let mut agreed: Option<&str> = None;
            for instance in changed {
                let value = self.previous_values.get(*instance)?.get(name)?.as_deref()?;
                match agreed {
                    None => agreed = Some(value),
                    Some(a) if a == value => {}
                    Some(_) => return None,
                }
            }
            out.push((name.clone(), agreed?.to_owned()));
        }
        Some(out)
    }
}

/// Validates a change against every instance's metadata and, when valid, records the new
/// revision in `history` and returns the plan. Nothing is recorded when the change is refused.
///
/// - Same version: each added or changed variable is classified on every instance
///   ([`classify`]); the first invalid one refuses the change naming the variable, the instance
///   and the rule. All dynamic: the target is online from the current revision's hash, with the
///   values in `SET GLOBAL` form (`128M` becomes `134217728`). Any static one, or a variable
///   removed from the configuration (only a restart returns it to its default): a rolling
///   restart.
/// - Another version: the whole configuration is checked against the target — switchyard's own
///   variables, options the target removed ([`crate::removed`]), then the target's metadata
///   when given, otherwise the running servers' rules for variables they know (a variable they
///   do not know cannot be checked and is refused: add it after the upgrade). Always a restart.
///
/// # Errors
/// [`ConfigError::NoHistory`], [`ConfigError::NoMetadata`], [`ConfigError::VersionMismatch`]
/// (an instance not on the current revision's version), [`ConfigError::InvalidName`],
/// [`ConfigError::DuplicateName`], [`ConfigError::OperatorOwned`],
/// [`ConfigError::RemovedOption`], [`ConfigError::Rejected`], [`ConfigError::NotCheckable`].
pub fn plan_change(
    history: &mut History,
    request: &ChangeRequest,
    metadata: &[ServerMetadata],
    now: Timestamp,
) -> Result<ChangePlan, ConfigError> {
    let from = history.latest().cloned().ok_or(ConfigError::NoHistory)?;
    let flavor = history.flavor.ok_or(ConfigError::NoHistory)?;
    if metadata.is_empty() {
        return Err(ConfigError::NoMetadata);
    }
    for meta in metadata {
        if meta.version.flavor != flavor || meta.version.version != from.version {
            return Err(ConfigError::VersionMismatch {
                instance: meta.instance.clone(),
                expected: format!("{} {}", flavor.product_name(), from.version),
                found: meta.version.to_string(),
            });
        }
    }
    let config = normalize_config(&request.config)?;
    let upgrade = request.version != from.version;
    let proposed = RevisionEntry {
        revision: from.revision.clone(),
        version: request.version,
        config: config.clone(),
        created: now,
    };
    let changes: Vec<Change> = diff(&from, &proposed)
        .into_iter()
        .filter(|c| !matches!(c, Change::Version { .. }))
        .collect();

    let mut verdicts = Vec::new();
    let mut online_values = Vec::new();
    if upgrade {
        check_for_upgrade(flavor, &from, request, &config, metadata)?;
        for change in changes {
            verdicts.push(VariableVerdict {
                change,
                classification: Classification::Static,
                restart_reason: Some(format!("the version changes to {}", request.version)),
            });
        }
    } else {
        for change in changes {
            let (name, value) = match &change {
                Change::Added { name, value }
                | Change::Changed {
                    name, to: value, ..
                } => (name.clone(), value.clone()),
                Change::Removed { .. } | Change::Version { .. } => {
                    verdicts.push(VariableVerdict {
                        change,
                        classification: Classification::Static,
                        restart_reason: Some(
                            "a variable removed from the configuration returns to the server's \
                             default only at a restart"
                                .to_owned(),
                        ),
                    });
                    continue;
                }
            };
            let mut class = Classification::Dynamic;
            let mut restart_reason = None;
            for meta in metadata {
                match classify(meta, &name, &value) {
                    Classification::Invalid { reason } => {
                        return Err(match operator_owned(&name) {
                            Some(reason) => ConfigError::OperatorOwned {
                                variable: name,
                                reason,
                            },
                            None => ConfigError::Rejected {
                                variable: name,
                                value,
                                instance: meta.instance.clone(),
                                reason,
                            },
                        });
                    }
                    Classification::Static if class == Classification::Dynamic => {
                        class = Classification::Static;
                        restart_reason = Some(format!(
                            "{} cannot change it while running (read-only variable)",
                            meta.instance
                        ));
                    }
                    _ => {}
                }
            }
            if class == Classification::Dynamic {
                let info = metadata[0].get(&name).expect("classified as known");
                let sql = info.check_value(&value).expect("classified as valid");
                online_values.push((name.clone(), sql));
            }
            verdicts.push(VariableVerdict {
                change,
                classification: class,
                restart_reason,
            });
        }
    }

    let previous_values = previous_values(&verdicts, metadata);
    let (entry, created) = history.ensure(flavor, request.version, &config, now);
    let to = entry.clone();
    let mut target = Target::new(to.revision.clone(), to.version);
    let all_dynamic = !verdicts.is_empty()
        && verdicts
            .iter()
            .all(|v| v.classification == Classification::Dynamic);
    if !upgrade && created && all_dynamic {
        target.online = Some(OnlineChange {
            from_hash: from.revision.hash.clone(),
            variables: online_values,
        });
    }
    Ok(ChangePlan {
        flavor,
        from,
        to,
        created,
        variables: verdicts,
        target,
        previous_values,
    })
}

/// The whole configuration checked against the target version of an upgrade.
fn check_for_upgrade(
    flavor: Flavor,
    from: &RevisionEntry,
    request: &ChangeRequest,
    config: &BTreeMap<String, String>,
    metadata: &[ServerMetadata],
) -> Result<(), ConfigError> {
    for meta in &request.target_metadata {
        if meta.version.flavor != flavor || meta.version.version != request.version {
            return Err(ConfigError::VersionMismatch {
                instance: meta.instance.clone(),
                expected: format!("{} {}", flavor.product_name(), request.version),
                found: meta.version.to_string(),
            });
        }
    }
    for (name, value) in config {
        if let Some(reason) = operator_owned(name) {
            return Err(ConfigError::OperatorOwned {
                variable: name.clone(),
                reason,
            });
        }
        if let Some(r) = removed_option(flavor, from.version, request.version, name) {
            return Err(ConfigError::RemovedOption {
                variable: name.clone(),
                flavor,
                removed_in: r.removed_in,
                target: request.version,
                replacement: r
                    .replacement
                    .map(|x| format!(", or use {x}"))
                    .unwrap_or_default(),
                citation: r.source,
            });
        }
        let judges: &[ServerMetadata] = if request.target_metadata.is_empty() {
            metadata
        } else {
            &request.target_metadata
        };
        if request.target_metadata.is_empty() && judges.iter().any(|m| m.get(name).is_none()) {
            return Err(ConfigError::NotCheckable {
                variable: name.clone(),
                running: metadata[0].version.to_string(),
                target: request.version,
            });
        }
        for meta in judges {
            if let Classification::Invalid { reason } = classify(meta, name, value) {
                return Err(ConfigError::Rejected {
                    variable: name.clone(),
                    value: value.clone(),
                    instance: meta.instance.clone(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// The live value of each changed variable on each instance before the change.
fn previous_values(
    verdicts: &[VariableVerdict],
    metadata: &[ServerMetadata],
) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    metadata
        .iter()
        .map(|meta| {
            let values = verdicts
                .iter()
                .filter_map(|v| match &v.change {
                    Change::Added { name, .. }
                    | Change::Changed { name, .. }
                    | Change::Removed { name, .. } => Some(name),
                    Change::Version { .. } => None,
                })
                .map(|name| {
                    (
                        name.clone(),
                        meta.get(name).and_then(|i| i.global_value.clone()),
                    )
                })
                .collect();
            (meta.instance.clone(), values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MariadbRow, VariableInfo};
    use switchyard_plan::versions::ServerVersion;

    const V: Version = Version::new(10, 11, 14);

    fn var(name: &str, kind: &str, read_only: bool, value: &str) -> VariableInfo {
        VariableInfo::from_mariadb(MariadbRow {
            name: name.to_ascii_uppercase(),
            scope: "GLOBAL".into(),
            kind: kind.into(),
            min: Some("10".into()),
            max: Some("100000".into()),
            block: Some("1".into()),
            enum_values: None,
            read_only: if read_only { "YES" } else { "NO" }.into(),
            command_line: Some("REQUIRED".into()),
            global_value: Some(value.into()),
        })
    }

    fn meta(instance: &str, version: Version, max_connections: &str) -> ServerMetadata {
        let vars = [
            var("max_connections", "BIGINT UNSIGNED", false, max_connections),
            var("thread_cache_size", "BIGINT UNSIGNED", false, "100"),
            var("performance_schema", "BOOLEAN", true, "OFF"),
            var("innodb_defragment", "BOOLEAN", false, "OFF"),
            var("read_only", "BOOLEAN", false, "ON"),
        ];
        ServerMetadata {
            instance: instance.into(),
            version: ServerVersion::new(Flavor::Mariadb, version),
            variables: vars.into_iter().map(|v| (v.name.clone(), v)).collect(),
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn history() -> History {
        let mut h = History::new(Flavor::Mariadb);
        h.ensure(
            Flavor::Mariadb,
            V,
            &cfg(&[("max_connections", "151")]),
            Timestamp(1),
        );
        h
    }

    fn cluster() -> Vec<ServerMetadata> {
        vec![meta("db-0", V, "151"), meta("db-1", V, "151")]
    }

    #[test]
    fn all_dynamic_is_online_from_the_current_hash() {
        let mut h = history();
        let from_hash = h.latest().expect("r1").revision.hash.clone();
        let request = ChangeRequest::new(
            V,
            cfg(&[("Max-Connections", "300"), ("thread_cache_size", "50")]),
        );
        let plan = plan_change(&mut h, &request, &cluster(), Timestamp(2)).expect("valid");
        assert!(plan.is_online());
        let online = plan.target.online.as_ref().expect("online");
        assert_eq!(online.from_hash, from_hash);
        assert_eq!(
            online.variables,
            vec![
                ("max_connections".to_owned(), "300".to_owned()),
                ("thread_cache_size".to_owned(), "50".to_owned())
            ]
        );
        assert_eq!(plan.to.revision.number, 2);
        assert_eq!(h.entries.len(), 2);
        assert_eq!(
            plan.previous_values["db-1"],
            BTreeMap::from([
                ("max_connections".to_owned(), Some("151".to_owned())),
                ("thread_cache_size".to_owned(), Some("100".to_owned()))
            ])
        );
    }

    #[test]
    fn one_static_variable_makes_a_rolling_restart() {
        let mut h = history();
        let request = ChangeRequest::new(
            V,
            cfg(&[("max_connections", "300"), ("performance_schema", "ON")]),
        );
        let plan = plan_change(&mut h, &request, &cluster(), Timestamp(2)).expect("valid");
        assert!(!plan.is_online());
        let ps = plan
            .variables
            .iter()
            .find(
                |v| matches!(&v.change, Change::Added { name, .. } if name == "performance_schema"),
            )
            .expect("listed");
        assert_eq!(ps.classification, Classification::Static);
        assert!(
            ps.restart_reason
                .as_deref()
                .unwrap_or("")
                .contains("read-only")
        );
    }

    #[test]
    fn removing_a_variable_restarts() {
        let mut h = history();
        let plan = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[])),
            &cluster(),
            Timestamp(2),
        )
        .expect("valid");
        assert!(!plan.is_online());
    }

    #[test]
    fn invalid_changes_name_the_variable_and_instance_and_record_nothing() {
        let mut h = history();
        let mut servers = cluster();
        // Only db-1 lacks the variable.
        servers[1].variables.remove("thread_cache_size");
        let err = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[("thread_cache_size", "50")])),
            &servers,
            Timestamp(2),
        )
        .expect_err("unknown on db-1");
        let text = err.to_string();
        assert!(
            text.contains("thread_cache_size") && text.contains("db-1"),
            "{text}"
        );
        let err = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[("max_connections", "-5")])),
            &cluster(),
            Timestamp(2),
        )
        .expect_err("out of range");
        assert!(err.to_string().contains("out of range"), "{err}");
        let err = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[("read_only", "OFF")])),
            &cluster(),
            Timestamp(2),
        )
        .expect_err("owned");
        assert_eq!(err.category(), "operator-owned");
        assert_eq!(h.entries.len(), 1, "nothing recorded");
    }

    #[test]
    fn an_upgrade_is_checked_against_the_target_and_restarts() {
        let to = Version::new(11, 8, 6);
        let mut h = history();
        let err = plan_change(
            &mut h,
            &ChangeRequest::new(to, cfg(&[("innodb_defragment", "ON")])),
            &cluster(),
            Timestamp(2),
        )
        .expect_err("removed in 11.x");
        assert_eq!(err.category(), "removed-option");
        assert!(err.to_string().contains("innodb_defragment"), "{err}");

        let err = plan_change(
            &mut h,
            &ChangeRequest::new(to, cfg(&[("new_in_11_8", "1")])),
            &cluster(),
            Timestamp(2),
        )
        .expect_err("not checkable without target metadata");
        assert_eq!(err.category(), "not-checkable");

        let mut target = meta("scratch", to, "151");
        target.variables.insert(
            "new_in_11_8".into(),
            var("new_in_11_8", "BIGINT UNSIGNED", true, "10"),
        );
        let request = ChangeRequest::new(
            to,
            cfg(&[("new_in_11_8", "20"), ("max_connections", "300")]),
        )
        .with_target_metadata(vec![target]);
        let plan = plan_change(&mut h, &request, &cluster(), Timestamp(2)).expect("valid");
        assert!(!plan.is_online(), "a version change always restarts");
        assert_eq!(plan.target.version, to);
        assert_eq!(plan.to.version, to);
    }

    #[test]
    fn rollback_is_a_new_forward_revision_online_from_the_new_hash() {
        let mut h = history();
        let first = h.latest().expect("r1").clone();
        let plan = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[("max_connections", "300")])),
            &cluster(),
            Timestamp(2),
        )
        .expect("valid");
        let back = plan.rollback(&mut h, &["db-0", "db-1"], Timestamp(3));
        assert_eq!(back.revision.number, 3);
        assert_eq!(
            back.revision.hash, first.revision.hash,
            "same content as r1"
        );
        let online = back.online.expect("online rollback");
        assert_eq!(online.from_hash, plan.to.revision.hash);
        assert_eq!(
            online.variables,
            vec![("max_connections".to_owned(), "151".to_owned())]
        );

        // Changed instances that disagree on the value before: the rollback restarts them;
        // only the instances that changed count.
        let mut h = history();
        let servers = vec![meta("db-0", V, "151"), meta("db-1", V, "152")];
        let plan = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[("max_connections", "300")])),
            &servers,
            Timestamp(2),
        )
        .expect("valid");
        assert!(
            plan.rollback(&mut h.clone(), &["db-0", "db-1"], Timestamp(3))
                .online
                .is_none()
        );
        let only_one = plan
            .rollback(&mut h, &["db-1"], Timestamp(3))
            .online
            .expect("online");
        assert_eq!(
            only_one.variables,
            vec![("max_connections".to_owned(), "152".to_owned())]
        );
    }

    #[test]
    fn instances_on_another_version_block_a_change() {
        let mut h = history();
        let servers = vec![
            meta("db-0", V, "151"),
            meta("db-1", Version::new(11, 8, 6), "151"),
        ];
        let err = plan_change(
            &mut h,
            &ChangeRequest::new(V, cfg(&[("max_connections", "300")])),
            &servers,
            Timestamp(2),
        )
        .expect_err("mixed versions");
        assert_eq!(err.category(), "version-mismatch");
        assert!(err.to_string().contains("db-1"));
    }
}
