//! Lossless replication in a local cluster: semi-synchronous replication
//! waiting after the sync, with a timeout that never lets it fall back, and a
//! short replica network timeout so that a receiver gives a frozen source up
//! within seconds (see [`crate::ClusterSpec::with_semi_sync`] and
//! [`crate::ClusterSpec::with_replica_net_timeout`]).
//!
//! The variables go into the first revision's my.cnf, the same on every
//! instance, so restarts keep them. The source side alone
//! (`rpl_semi_sync_source_enabled` / `rpl_semi_sync_master_enabled`) is not
//! there: with it on, a replica's applier would wait for acknowledgements from
//! replicas of its own (waiting even with none connected is what keeps the
//! primary from falling back), so the runtime turns it on for the instance it
//! makes primary, before that instance takes a write, and off for an instance
//! it demotes or repoints; an instance it was last turned on for starts with it
//! on ([`source_line`]), so a crashed primary that starts again acknowledges
//! nothing before the engine has judged it.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_plan::versions::Flavor;

use crate::cluster::{ClusterSpec, Shared, flavor_of, ordinal};
use crate::error::{Error, Result};

/// How long a semi-synchronous primary of a local cluster waits for acknowledgements before
/// it would fall back to asynchronous replication: a day, far longer than any detection and
/// failover, so that in practice it never does (a primary cut off from its replicas blocks).
pub const SEMI_SYNC_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The replicas' network timeout, seconds, of a semi-synchronous cluster whose spec sets none
/// (`replica_net_timeout` / `slave_net_timeout`, the heartbeat half of it): how soon a
/// receiver gives a frozen source up, which the failover's detection waits for (the
/// replicas corroborate a failed primary), and the longest a receiver that reconnects to a
/// frozen source takes to stop when the failover detaches it. Chosen from
/// `cargo xtask bench failover` (docs/benchmarks.md).
pub const DEFAULT_REPLICA_NET_TIMEOUT: u32 = 1;

/// The first revision's variables: the spec's, with those of semi-synchronous
/// replication and the replicas' network timeout, or why the spec cannot run.
pub(crate) fn first_revision_config(spec: &ClusterSpec) -> Result<BTreeMap<String, String>> {
    let flavor = flavor_of(spec.kind);
    let mut config = spec.config.clone();
    let mut set = |k: &str, v: String| {
        config.insert(k.to_owned(), v);
    };
    let net_timeout = spec
        .replica_net_timeout
        .or(spec.semi_sync.map(|_| DEFAULT_REPLICA_NET_TIMEOUT));
    if let Some(seconds) = net_timeout {
        if seconds == 0 {
            return Err(Error::Invalid(
                "the replicas' network timeout must be at least 1 second".into(),
            ));
        }
        let name = match flavor {
            Flavor::Mysql => "replica_net_timeout",
            Flavor::Mariadb => "slave_net_timeout",
        };
        set(name, seconds.to_string());
    }
    if let Some(k) = spec.semi_sync {
        let replicas = spec.instances.saturating_sub(1);
        if k == 0 || usize::try_from(k).map_or(true, |k| k > replicas) {
            return Err(Error::Invalid(format!(
                "semi-synchronous replication waiting for {k} replica(s) needs at least 1 \
                 and at most the cluster's {replicas} replica(s); ask for between 1 and \
                 {replicas}, or use asynchronous replication"
            )));
        }
        let timeout = SEMI_SYNC_TIMEOUT.as_millis().to_string();
        match flavor {
            Flavor::Mysql => {
                set(
                    "plugin_load_add",
                    "semisync_source.so;semisync_replica.so".into(),
                );
                set("rpl_semi_sync_replica_enabled", "ON".into());
                set("rpl_semi_sync_source_wait_point", "AFTER_SYNC".into());
                set("rpl_semi_sync_source_timeout", timeout);
                set("rpl_semi_sync_source_wait_for_replica_count", k.to_string());
                set("rpl_semi_sync_source_wait_no_replica", "ON".into());
            }
            Flavor::Mariadb => {
                if k != 1 {
                    return Err(Error::Invalid(format!(
                        "MariaDB's semi-synchronous replication waits for exactly one \
                         replica, not {k}: ask for 1"
                    )));
                }
                set("rpl_semi_sync_slave_enabled", "ON".into());
                set("rpl_semi_sync_master_wait_point", "AFTER_SYNC".into());
                set("rpl_semi_sync_master_timeout", timeout);
                set("rpl_semi_sync_master_wait_no_slave", "ON".into());
            }
        }
    }
    Ok(config)
}

impl Shared {
    /// Turns semi-synchronous waiting on for the new primary `primary` of a semi-synchronous
    /// cluster (nothing for an asynchronous one), then has every running replica's receiver
    /// reconnect, so that each registers with it as a semi-synchronous replica.
    pub(crate) async fn start_semi_sync(&self, primary: u32) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        self.set_semi_sync_source(primary, true, deadline).await?;
        for o in (0..ordinal(self.nodes.len())).filter(|o| *o != primary) {
            let handle = &self.node(o)?.handle;
            handle.detach_by(deadline).await.map_err(Error::sql(o))?;
            handle.start_replication().await.map_err(Error::sql(o))?;
        }
        Ok(())
    }

    /// Turns the source side of semi-synchronous replication on or off on `ordinal` when the
    /// cluster runs semi-synchronous replication (nothing otherwise).
    pub(crate) async fn set_semi_sync_source(
        &self,
        ordinal: u32,
        on: bool,
        deadline: std::time::Instant,
    ) -> Result<()> {
        if self.state.read()?.cluster.semi_sync.is_none() {
            return Ok(());
        }
        let node = self.node(ordinal)?;
        node.handle
            .set_semi_sync_source_by(on, deadline)
            .await
            .map_err(Error::sql(ordinal))?;
        node.semi_sync_source
            .store(on, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The my.cnf line that starts `ordinal` with the source side of semi-synchronous
/// replication on, when it was last turned on there (a primary, or a failed primary nobody
/// could turn it off on): started again after a crash, it then blocks every commit, a
/// privileged client's too (MariaDB's `read_only` lets `READ ONLY ADMIN` write), until the
/// engine has judged it, instead of acknowledging it asynchronously.
pub(crate) fn source_line(shared: &Shared, ordinal: u32) -> Result<Option<String>> {
    let on = shared
        .node(ordinal)?
        .semi_sync_source
        .load(std::sync::atomic::Ordering::SeqCst);
    if !on || shared.state.read()?.cluster.semi_sync.is_none() {
        return Ok(None);
    }
    Ok(Some(
        match shared.flavor {
            Flavor::Mysql => "loose-rpl_semi_sync_source_enabled=ON",
            Flavor::Mariadb => "rpl_semi_sync_master_enabled=ON",
        }
        .to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_testbed::ServerKind;

    #[test]
    fn semi_sync_config_per_flavor() {
        let mysql = first_revision_config(
            &ClusterSpec::new(ServerKind::Mysql97, 3)
                .with_semi_sync(2)
                .with_replica_net_timeout(2),
        )
        .expect("a valid spec");
        for (k, v) in [
            ("plugin_load_add", "semisync_source.so;semisync_replica.so"),
            ("rpl_semi_sync_replica_enabled", "ON"),
            ("rpl_semi_sync_source_wait_point", "AFTER_SYNC"),
            ("rpl_semi_sync_source_timeout", "86400000"),
            ("rpl_semi_sync_source_wait_for_replica_count", "2"),
            ("rpl_semi_sync_source_wait_no_replica", "ON"),
            ("replica_net_timeout", "2"),
        ] {
            assert_eq!(
                mysql.get(k).map(String::as_str),
                Some(v),
                "{k} in {mysql:?}"
            );
        }
        assert!(
            !mysql.contains_key("rpl_semi_sync_source_enabled"),
            "primary only"
        );
        let mariadb =
            first_revision_config(&ClusterSpec::new(ServerKind::Mariadb1011, 2).with_semi_sync(1))
                .expect("a valid spec");
        for (k, v) in [
            ("rpl_semi_sync_slave_enabled", "ON"),
            ("rpl_semi_sync_master_wait_point", "AFTER_SYNC"),
            ("rpl_semi_sync_master_timeout", "86400000"),
            ("rpl_semi_sync_master_wait_no_slave", "ON"),
        ] {
            assert_eq!(
                mariadb.get(k).map(String::as_str),
                Some(v),
                "{k} in {mariadb:?}"
            );
        }
        assert!(
            !mariadb.contains_key("rpl_semi_sync_master_enabled"),
            "primary only"
        );
        let plain = first_revision_config(&ClusterSpec::new(ServerKind::Mariadb1011, 2))
            .expect("a valid spec");
        assert!(plain.is_empty(), "{plain:?}");
    }

    #[test]
    fn semi_sync_that_cannot_be_met_is_refused() {
        for (spec, says) in [
            (
                ClusterSpec::new(ServerKind::Mysql97, 3).with_semi_sync(0),
                "at least 1",
            ),
            (
                ClusterSpec::new(ServerKind::Mysql97, 3).with_semi_sync(3),
                "at most the cluster's 2",
            ),
            (
                ClusterSpec::new(ServerKind::Mariadb1011, 3).with_semi_sync(2),
                "exactly one",
            ),
            (
                ClusterSpec::new(ServerKind::Mysql97, 2).with_replica_net_timeout(0),
                "at least 1 second",
            ),
        ] {
            match first_revision_config(&spec) {
                Err(Error::Invalid(message)) => assert!(message.contains(says), "{message}"),
                other => panic!("{spec:?} gave {other:?}"),
            }
        }
    }
}
