//! Options and authentication plugins removed between server versions, for what must be known
//! before the target version runs.
//!
//! A server of the target version tells what it knows once it runs; before an upgrade starts,
//! switchyard needs the answer from this table. Every entry cites the vendor's page that states
//! the removal, and was checked against the servers this project runs where one is available:
//!
//! - MySQL entries come from the *MySQL Server Version Reference*, "Option and Variable Changes
//!   for MySQL 8.2 / 8.3 / 8.4 / 9.0" (`dev.mysql.com/doc/mysqld-version-reference/en/optvar-changes-X-Y.html`).
//!   None of them is in `performance_schema.variables_metadata` of MySQL 9.7.4 (checked). Two
//!   names the 8.3 page lists as removed, `innodb_api_bk_commit_interval` and
//!   `innodb_api_disable_rowlock`, are still variables of MySQL 9.7.4, so they are left out.
//! - MariaDB entries come from the MariaDB documentation pages named per entry. MariaDB 11.8
//!   still *starts* with a removed option in its my.cnf and only warns (`'innodb-defragment' was
//!   removed. It does nothing now and exists only for compatibility with old my.cnf files`,
//!   seen on 11.8.6); switchyard refuses it all the same, because the setting would silently
//!   do nothing.
//!
//! Only what could be cited is listed; an option missing here is still caught by the target
//! version's own metadata once a server of that version can be read.

use switchyard_plan::versions::{Flavor, Version};

/// One option a server version removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedOption {
    /// The product.
    pub flavor: Flavor,
    /// The option's variable name (normalised: `_`, lowercase).
    pub name: &'static str,
    /// The first version without it.
    pub removed_in: Version,
    /// What to use instead, where a cited page names it (`expire_logs_days`: WL#10924;
    /// `default_authentication_plugin`: Percona's "Compatibility and removed items in 8.4").
    pub replacement: Option<&'static str>,
    /// The page that states the removal.
    pub source: &'static str,
}

/// An authentication plugin a server version removed: accounts that use it cannot log in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedAuthPlugin {
    /// The product.
    pub flavor: Flavor,
    /// The plugin name as in `mysql.user.plugin`.
    pub plugin: &'static str,
    /// The first version without it.
    pub removed_in: Version,
    /// What to use instead.
    pub replacement: &'static str,
    /// The page that states the removal.
    pub source: &'static str,
}

const MYSQL_8_2: &str = "MySQL Server Version Reference, 'Option and Variable Changes for MySQL 8.2' \
                         (dev.mysql.com/doc/mysqld-version-reference/en/optvar-changes-8-2.html)";
const MYSQL_8_3: &str = "MySQL Server Version Reference, 'Option and Variable Changes for MySQL 8.3' \
                         (dev.mysql.com/doc/mysqld-version-reference/en/optvar-changes-8-3.html)";
const MYSQL_8_4: &str = "MySQL Server Version Reference, 'Option and Variable Changes for MySQL 8.4' \
                         (dev.mysql.com/doc/mysqld-version-reference/en/optvar-changes-8-4.html)";
const MYSQL_9_0: &str = "MySQL Server Version Reference, 'Option and Variable Changes for MySQL 9.0' \
                         (dev.mysql.com/doc/mysqld-version-reference/en/optvar-changes-9-0.html)";
const MARIADB_CHANGE_BUFFER: &str = "MariaDB documentation, 'InnoDB Change Buffering': removed in \
                                     MariaDB 11.0.0 (MDEV-29694)";
const MARIADB_ES_11_4: &str = "MariaDB documentation, 'Upgrade to MariaDB Enterprise Server 11.4', \
                               Removed Variables: innodb_defragment and its associated variables";
const MYSQL_NATIVE: &str = "MySQL 8.0 Reference Manual, 'Native Pluggable Authentication': \
                            deprecated as of 8.0.34, disabled by default in 8.4, removed as of \
                            MySQL 9.0.0";

const fn mysql(
    name: &'static str,
    removed_in: Version,
    replacement: Option<&'static str>,
    source: &'static str,
) -> RemovedOption {
    RemovedOption {
        flavor: Flavor::Mysql,
        name,
        removed_in,
        replacement,
        source,
    }
}

const fn mariadb(
    name: &'static str,
    removed_in: Version,
    replacement: Option<&'static str>,
    source: &'static str,
) -> RemovedOption {
    RemovedOption {
        flavor: Flavor::Mariadb,
        name,
        removed_in,
        replacement,
        source,
    }
}

const V8_2: Version = Version::new(8, 2, 0);
const V8_3: Version = Version::new(8, 3, 0);
const V8_4: Version = Version::new(8, 4, 0);
const V9_0: Version = Version::new(9, 0, 0);
const V11_0: Version = Version::new(11, 0, 0);
const V11_4: Version = Version::new(11, 4, 0);

/// Every removed option switchyard knows, oldest removal first.
pub const REMOVED_OPTIONS: &[RemovedOption] = &[
    mysql("abort_slave_event_count", V8_2, None, MYSQL_8_2),
    mysql("disconnect_slave_event_count", V8_2, None, MYSQL_8_2),
    mysql(
        "expire_logs_days",
        V8_2,
        Some("binlog_expire_logs_seconds"),
        MYSQL_8_2,
    ),
    mysql("character_set_client_handshake", V8_3, None, MYSQL_8_3),
    mysql("daemon_memcached_enable_binlog", V8_3, None, MYSQL_8_3),
    mysql("daemon_memcached_engine_lib_name", V8_3, None, MYSQL_8_3),
    mysql("daemon_memcached_engine_lib_path", V8_3, None, MYSQL_8_3),
    mysql("daemon_memcached_option", V8_3, None, MYSQL_8_3),
    mysql("daemon_memcached_r_batch_size", V8_3, None, MYSQL_8_3),
    mysql("daemon_memcached_w_batch_size", V8_3, None, MYSQL_8_3),
    mysql("group_replication_ip_whitelist", V8_3, None, MYSQL_8_3),
    mysql("group_replication_primary_member", V8_3, None, MYSQL_8_3),
    mysql("innodb", V8_3, None, MYSQL_8_3),
    mysql("admin_ssl", V8_4, None, MYSQL_8_4),
    mysql("authentication_fido_rp_id", V8_4, None, MYSQL_8_4),
    mysql("avoid_temporal_upgrade", V8_4, None, MYSQL_8_4),
    mysql(
        "binlog_transaction_dependency_tracking",
        V8_4,
        None,
        MYSQL_8_4,
    ),
    mysql(
        "default_authentication_plugin",
        V8_4,
        Some("authentication_policy"),
        MYSQL_8_4,
    ),
    mysql(
        "group_replication_recovery_complete_at",
        V8_4,
        None,
        MYSQL_8_4,
    ),
    mysql("keyring_encrypted_file_data", V8_4, None, MYSQL_8_4),
    mysql("mysql_native_password", V9_0, None, MYSQL_9_0),
    mysql("mysql_native_password_proxy_users", V9_0, None, MYSQL_9_0),
    mariadb(
        "innodb_change_buffering",
        V11_0,
        None,
        MARIADB_CHANGE_BUFFER,
    ),
    mariadb("innodb_defragment", V11_4, None, MARIADB_ES_11_4),
    mariadb(
        "innodb_defragment_fill_factor",
        V11_4,
        None,
        MARIADB_ES_11_4,
    ),
    mariadb("innodb_defragment_n_pages", V11_4, None, MARIADB_ES_11_4),
];

/// Every removed authentication plugin switchyard knows.
pub const REMOVED_AUTH_PLUGINS: &[RemovedAuthPlugin] = &[RemovedAuthPlugin {
    flavor: Flavor::Mysql,
    plugin: "mysql_native_password",
    removed_in: V9_0,
    replacement: "caching_sha2_password",
    source: MYSQL_NATIVE,
}];

/// The removal of option `name` (normalised) that an upgrade from `from` to `to` crosses:
/// `from < removed_in <= to`.
pub fn removed_option(
    flavor: Flavor,
    from: Version,
    to: Version,
    name: &str,
) -> Option<&'static RemovedOption> {
    REMOVED_OPTIONS
        .iter()
        .find(|r| r.flavor == flavor && r.name == name && from < r.removed_in && r.removed_in <= to)
}

/// The removal of authentication plugin `plugin` that an upgrade from `from` to `to` crosses.
pub fn removed_auth_plugin(
    flavor: Flavor,
    from: Version,
    to: Version,
    plugin: &str,
) -> Option<&'static RemovedAuthPlugin> {
    REMOVED_AUTH_PLUGINS.iter().find(|r| {
        r.flavor == flavor
            && r.plugin.eq_ignore_ascii_case(plugin)
            && from < r.removed_in
            && r.removed_in <= to
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_applies_only_to_upgrades_that_cross_it() {
        let v = Version::new;
        let hit = |from, to| removed_option(Flavor::Mysql, from, to, "expire_logs_days");
        assert!(
            hit(v(8, 0, 40), v(8, 4, 3)).is_some(),
            "8.0 -> 8.4 crosses 8.2.0"
        );
        assert!(hit(v(8, 4, 3), v(9, 7, 0)).is_none(), "already gone in 8.4");
        assert!(hit(v(8, 0, 30), v(8, 0, 40)).is_none(), "within 8.0");
        assert!(
            removed_option(Flavor::Mariadb, v(8, 0, 40), v(8, 4, 3), "expire_logs_days").is_none(),
            "the other flavor"
        );
        let native = removed_auth_plugin(
            Flavor::Mysql,
            v(8, 4, 6),
            v(9, 7, 0),
            "MYSQL_NATIVE_PASSWORD",
        );
        assert_eq!(native.map(|r| r.replacement), Some("caching_sha2_password"));
    }

    #[test]
    fn every_entry_is_normalised_cited_and_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in REMOVED_OPTIONS {
            assert_eq!(
                crate::normalize_name(r.name).expect("a valid name"),
                r.name,
                "normalised"
            );
            assert!(!r.source.is_empty());
            assert!(seen.insert((r.flavor, r.name)), "{} listed twice", r.name);
        }
        assert_eq!(REMOVED_OPTIONS.len(), 26);
    }
}
