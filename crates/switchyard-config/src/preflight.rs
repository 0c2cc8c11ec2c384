//! The upgrade pre-flight beyond variables: options and authentication plugins the target
//! version removed, found before the first instance restarts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::{Flavor, Version};

use crate::name::normalize_name;
use crate::removed::{removed_auth_plugin, removed_option};

/// An account as `mysql.user` lists it (no credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The user name.
    pub user: String,
    /// The host pattern.
    pub host: String,
    /// The authentication plugin.
    pub plugin: String,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'@'{}'", self.user, self.host)
    }
}

/// One reason an upgrade is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "kebab-case")]
pub enum UpgradeFinding {
    /// The configuration names an option the target removed.
    RemovedOption {
        /// The option (normalised).
        option: String,
        /// The first version without it.
        removed_in: Version,
        /// What to use instead, if the vendor names it.
        replacement: Option<String>,
        /// The page that states the removal.
        source: String,
    },
    /// Accounts use an authentication plugin the target removed: they could not log in.
    RemovedAuthPlugin {
        /// The plugin.
        plugin: String,
        /// The first version without it.
        removed_in: Version,
        /// The plugin to move the accounts to.
        replacement: String,
        /// The accounts, as `'user'@'host'`.
        accounts: Vec<String>,
        /// The page that states the removal.
        source: String,
    },
}

impl fmt::Display for UpgradeFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeFinding::RemovedOption {
                option,
                removed_in,
                replacement,
                source,
            } => {
                write!(f, "option {option} was removed in {removed_in}: remove it")?;
                if let Some(r) = replacement {
                    write!(f, " (use {r})")?;
                }
                write!(f, " [{source}]")
            }
            UpgradeFinding::RemovedAuthPlugin {
                plugin,
                removed_in,
                replacement,
                accounts,
                source,
            } => write!(
                f,
                "{} use the {plugin} authentication plugin, removed in {removed_in}: move them to \
                 {replacement} (ALTER USER ... IDENTIFIED WITH {replacement} BY ...) [{source}]",
                accounts.join(", ")
            ),
        }
    }
}

/// An upgrade refused before any instance restarted, with every reason found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("the upgrade of {flavor} from {from} to {to} is refused before any instance restarts: {}", list(.findings))]
pub struct UpgradeRefusal {
    /// The product.
    pub flavor: Flavor,
    /// The version the cluster runs.
    pub from: Version,
    /// The target version.
    pub to: Version,
    /// Every reason, options first.
    pub findings: Vec<UpgradeFinding>,
}

fn list(findings: &[UpgradeFinding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks an upgrade from `from` to `to` against the configuration it will run with and the
/// cluster's accounts (read with [`crate::ConfigServer::accounts`]).
///
/// Refused, with every finding, when the configuration names an option the target removed
/// ([`crate::removed::REMOVED_OPTIONS`]) or accounts use an authentication plugin the target
/// removed ([`crate::removed::REMOVED_AUTH_PLUGINS`]). Names are normalised first; a name that
/// does not normalise is left to [`crate::plan_change`] to refuse.
///
/// # Errors
/// [`UpgradeRefusal`] listing each removed option and each removed plugin with its accounts.
pub fn preflight_upgrade(
    flavor: Flavor,
    from: Version,
    to: Version,
    config: &BTreeMap<String, String>,
    accounts: &[Account],
) -> Result<(), UpgradeRefusal> {
    let mut findings = Vec::new();
    for raw in config.keys() {
        let Ok(name) = normalize_name(raw) else {
            continue;
        };
        if let Some(r) = removed_option(flavor, from, to, &name) {
            findings.push(UpgradeFinding::RemovedOption {
                option: name,
                removed_in: r.removed_in,
                replacement: r.replacement.map(str::to_owned),
                source: r.source.to_owned(),
            });
        }
    }
    let mut by_plugin: BTreeMap<&'static str, (Vec<String>, Version, &'static str, &'static str)> =
        BTreeMap::new();
    for account in accounts {
        if let Some(r) = removed_auth_plugin(flavor, from, to, &account.plugin) {
            by_plugin
                .entry(r.plugin)
                .or_insert_with(|| (Vec::new(), r.removed_in, r.replacement, r.source))
                .0
                .push(account.to_string());
        }
    }
    for (plugin, (accounts, removed_in, replacement, source)) in by_plugin {
        findings.push(UpgradeFinding::RemovedAuthPlugin {
            plugin: plugin.to_owned(),
            removed_in,
            replacement: replacement.to_owned(),
            accounts,
            source: source.to_owned(),
        });
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(UpgradeRefusal {
            flavor,
            from,
            to,
            findings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn removed_options_and_plugins_are_named() {
        let accounts = [
            Account {
                user: "legacy".into(),
                host: "%".into(),
                plugin: "mysql_native_password".into(),
            },
            Account {
                user: "app".into(),
                host: "%".into(),
                plugin: "caching_sha2_password".into(),
            },
        ];
        let err = preflight_upgrade(
            Flavor::Mysql,
            Version::new(8, 0, 40),
            Version::new(8, 4, 3),
            &cfg(&[("Expire-Logs-Days", "7"), ("max_connections", "200")]),
            &accounts,
        )
        .expect_err("expire_logs_days is gone in 8.4");
        assert_eq!(
            err.findings.len(),
            1,
            "native password still exists in 8.4: {err}"
        );
        assert!(err.to_string().contains("expire_logs_days"), "{err}");
        assert!(
            err.to_string().contains("binlog_expire_logs_seconds"),
            "{err}"
        );

        let err = preflight_upgrade(
            Flavor::Mysql,
            Version::new(8, 4, 6),
            Version::new(9, 7, 0),
            &cfg(&[("max_connections", "200")]),
            &accounts,
        )
        .expect_err("native password is gone in 9.0");
        let text = err.to_string();
        assert!(
            text.contains("'legacy'@'%'") && !text.contains("'app'"),
            "{text}"
        );
        assert!(text.contains("caching_sha2_password"), "{text}");
    }

    #[test]
    fn a_clean_upgrade_passes() {
        assert_eq!(
            preflight_upgrade(
                Flavor::Mariadb,
                Version::new(10, 11, 14),
                Version::new(11, 8, 6),
                &cfg(&[("max_connections", "200")]),
                &[],
            ),
            Ok(())
        );
    }
}
