//! Variables switchyard sets itself: a configuration revision may not name them.
//!
//! They carry the invariants of every rollout (at most one writable instance, GTID
//! replication that a switchover can repoint, the binary log that replicas and schema changes
//! rely on, the identity of each instance) or the layout the runtime gives each instance
//! (paths, ports). A user value would fight the operator, so it is refused with the reason.

/// Why switchyard owns `name` (a normalised name), or `None` when a revision may set it.
///
/// ```
/// assert!(switchyard_config::operator_owned("read_only").is_some());
/// assert!(switchyard_config::operator_owned("gtid_domain_id").is_some());
/// assert!(switchyard_config::operator_owned("max_connections").is_none());
/// // The one log_bin* variable that is a plain user setting.
/// assert!(switchyard_config::operator_owned("log_bin_trust_function_creators").is_none());
/// ```
pub fn operator_owned(name: &str) -> Option<&'static str> {
    const FENCE: &str =
        "switchyard sets it to keep at most one writable instance (fence, promote, demote)";
    const IDENTITY: &str = "switchyard sets it per instance (its identity in replication)";
    const GTID: &str =
        "switchyard runs GTID replication and repoints replicas by GTID during switchovers";
    const BINLOG: &str = "switchyard relies on the binary log (row format, logged on replicas) for replication, \
         switchovers and schema changes";
    const RELAY: &str = "switchyard configures replication and starts it itself";
    const CONVERSIONS: &str =
        "switchyard sets it while a schema change rolls (replica type conversions)";
    const GALERA: &str = "switchyard configures Galera membership (wsrep_*)";
    const LAYOUT: &str = "the runtime sets it for each instance (paths, network, process user)";

    // Plain user settings under an owned prefix.
    if name == "log_bin_trust_function_creators" {
        return None;
    }
    let exact = match name {
        "read_only" | "super_read_only" => Some(FENCE),
        "server_id" | "report_host" | "report_port" | "report_user" | "report_password" => {
            Some(IDENTITY)
        }
        "enforce_gtid_consistency" => Some(GTID),
        "binlog_format" | "log_slave_updates" | "log_replica_updates" | "sql_log_bin" => {
            Some(BINLOG)
        }
        "skip_slave_start" | "skip_replica_start" => Some(RELAY),
        "slave_type_conversions" | "replica_type_conversions" => Some(CONVERSIONS),
        "datadir" | "socket" | "port" | "bind_address" | "pid_file" | "basedir" | "tmpdir"
        | "plugin_dir" | "lc_messages_dir" | "secure_file_priv" | "user" | "skip_networking" => {
            Some(LAYOUT)
        }
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    [
        ("gtid_", GTID),
        ("log_bin", BINLOG),
        ("relay_log", RELAY),
        ("wsrep_", GALERA),
    ]
    .into_iter()
    .find(|(prefix, _)| name.starts_with(prefix))
    .map(|(_, why)| why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replication_and_fencing_variables_are_owned() {
        for name in [
            "read_only",
            "super_read_only",
            "server_id",
            "gtid_mode",
            "gtid_strict_mode",
            "gtid_slave_pos",
            "enforce_gtid_consistency",
            "log_bin",
            "log_bin_basename",
            "binlog_format",
            "log_slave_updates",
            "log_replica_updates",
            "relay_log",
            "relay_log_recovery",
            "skip_slave_start",
            "skip_replica_start",
            "report_host",
            "report_port",
            "wsrep_on",
            "wsrep_provider",
            "datadir",
            "port",
        ] {
            assert!(operator_owned(name).is_some(), "{name} should be owned");
        }
    }

    #[test]
    fn ordinary_tuning_is_not_owned() {
        for name in [
            "max_connections",
            "innodb_buffer_pool_size",
            "performance_schema",
            "binlog_row_image",
            "sync_binlog",
            "log_bin_trust_function_creators",
            "event_scheduler",
        ] {
            assert!(operator_owned(name).is_none(), "{name} should be allowed");
        }
    }
}
