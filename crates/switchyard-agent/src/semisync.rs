//! Whether the server starts with the source side of semi-synchronous replication on
//! (MariaDB's `rpl_semi_sync_master_enabled`), so that a failed primary whose server starts
//! again before the operator has fenced it acknowledges no commit.
//!
//! The operator turns the source side on for the instance it makes primary and off for any
//! other, over SQL; the switch is not in the revision's my.cnf (a replica with it on would
//! hold its applier's commits waiting for replicas of its own), so a restart forgets it. On
//! MariaDB `read_only` does not stop an account with `READ ONLY ADMIN`: a failed primary that
//! started with the switch off would acknowledge such a client's commit at once, on itself
//! alone. So the agent derives the switch at every start from what the data directory says,
//! with no state of its own:
//!
//! - the revision runs semi-synchronous replication (its my.cnf turns the replica side,
//!   `rpl_semi_sync_slave_enabled`, on: the operator renders it into every revision of a
//!   cluster with lossless replication, and never in an asynchronous one), and
//! - the data directory names no replication source: no `master.info`, the file MariaDB keeps
//!   the default connection's source in from `CHANGE MASTER TO` until `RESET SLAVE ALL`
//!   (the operator points every replica with the first and promotes with the second), and
//! - it is not a copy just provisioned whose replication the agent starts itself
//!   ([`crate::provision::Pending`]).
//!
//! An instance without a source is the primary, a former primary, or one the operator has not
//! pointed anywhere yet (a fresh bootstrap, a quarantined instance): each of them may start
//! with the switch on, since the operator turns it off before it starts the replication of
//! any instance (repoint and demote both do). Rejected alternatives: a marker file the agent
//! writes when it sees the switch on (it sees it only after the operator set it, so a primary
//! killed in between starts with it off), and a flag in the instance ConfigMap (a mounted
//! ConfigMap reaches a running pod only eventually, so a container restarted soon after the
//! operator wrote it may still read the old one). The one window left: a promotion makes
//! the new primary writable a few milliseconds before `RESET SLAVE ALL`; killed within them,
//! it starts with the switch off.
//!
//! MySQL needs none of this: every instance starts with `super_read_only`, which stops every
//! account.

use std::path::Path;

use switchyard_plan::versions::Flavor;

use crate::provision::Pending;

/// The file a MariaDB data directory names the default replication connection's source in.
pub const MASTER_INFO: &str = "master.info";

/// The agent-owned option that starts a MariaDB server with the source side on.
pub const SOURCE_ON_OPTION: (&str, &str) = ("rpl-semi-sync-master-enabled", "ON");

/// Whether the server of `flavor` on `datadir`, started from `revision_cnf`, starts with the
/// source side of semi-synchronous replication on (see the module's doc). A data directory
/// that does not exist yet (a bootstrap or a provisioning to come) starts with it off.
pub fn source_on_at_start(flavor: Flavor, revision_cnf: &str, datadir: &Path) -> bool {
    flavor == Flavor::Mariadb
        && replica_side_on(revision_cnf)
        && datadir.is_dir()
        && !datadir.join(MASTER_INFO).exists()
        && Pending::read(datadir).is_none()
}

/// Whether `cnf` turns `rpl_semi_sync_slave_enabled` on (its last setting, in any group a
/// server reads, with `-` or `_`, a `loose-` prefix, `ON`, `1` or `TRUE`).
fn replica_side_on(cnf: &str) -> bool {
    let mut group_read = true;
    let mut on = false;
    for line in cnf.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let group = line.trim_matches(|c| c == '[' || c == ']').trim();
            group_read = matches!(group, "mysqld" | "server" | "mariadb" | "mariadbd");
            continue;
        }
        if !group_read || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, "ON"));
        let key = key.trim().to_ascii_lowercase().replace('-', "_");
        let key = key.strip_prefix("loose_").unwrap_or(&key);
        if key == "rpl_semi_sync_slave_enabled" {
            on = matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "on" | "1" | "true"
            );
        }
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEMI_SYNC: &str = "[mysqld]\nlog_bin = mariadb-bin\nrpl_semi_sync_slave_enabled = ON\n\
                             rpl_semi_sync_master_wait_point = AFTER_SYNC\n";

    #[test]
    fn the_revision_says_whether_replication_is_semi_synchronous() {
        assert!(replica_side_on(SEMI_SYNC));
        assert!(replica_side_on(
            "[mariadb]\nloose-rpl-semi-sync-slave-enabled=1\n"
        ));
        assert!(!replica_side_on("[mysqld]\nlog_bin = mariadb-bin\n"));
        assert!(!replica_side_on(
            "[mysqld]\nrpl_semi_sync_slave_enabled = ON\nrpl_semi_sync_slave_enabled = OFF\n"
        ));
        assert!(!replica_side_on(
            "[client]\nrpl_semi_sync_slave_enabled = ON\n"
        ));
        assert!(!replica_side_on(
            "[mysqld]\n# rpl_semi_sync_slave_enabled = ON\n"
        ));
    }

    #[test]
    fn only_a_mariadb_instance_without_a_source_starts_with_the_source_side_on() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let datadir = dir.path().join("data");
        // No data directory yet: a bootstrap or a provisioning comes first.
        assert!(!source_on_at_start(Flavor::Mariadb, SEMI_SYNC, &datadir));
        std::fs::create_dir(&datadir).expect("create the data directory");
        assert!(source_on_at_start(Flavor::Mariadb, SEMI_SYNC, &datadir));
        assert!(!source_on_at_start(Flavor::Mysql, SEMI_SYNC, &datadir));
        assert!(!source_on_at_start(
            Flavor::Mariadb,
            "[mysqld]\nlog_bin = mariadb-bin\n",
            &datadir
        ));
        Pending {
            donor: "donor:3306".into(),
            gtid: Some("0-1-5".into()),
        }
        .write(&datadir)
        .expect("write the marker");
        assert!(!source_on_at_start(Flavor::Mariadb, SEMI_SYNC, &datadir));
        Pending::clear(&datadir).expect("clear the marker");
        std::fs::write(datadir.join(MASTER_INFO), "33\n").expect("write master.info");
        assert!(!source_on_at_start(Flavor::Mariadb, SEMI_SYNC, &datadir));
    }
}
