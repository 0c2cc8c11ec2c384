//! Revisions: what a revision is made of (its server variables, its rendered my.cnf, its
//! content hash, what its pods are built with) and the numbered history in the status (a new
//! entry, the target of an entry, the rollback of a refused online change, which entry the
//! spec resolves to). Pure: no API calls and no SQL here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchyard_plan::Revision;
use switchyard_plan::decide::{OnlineChange, Target};
use switchyard_plan::topology::content_hash;
use switchyard_plan::versions::{Flavor, Version};

use crate::crd::{
    MySQLCluster, MySQLClusterStatus, OnlineRevision, RevisionEntry, RevisionPod, Revisions,
    VariableSetting,
};
use crate::validate::ValidSpec;

/// How many revisions the status history keeps.
pub const REVISION_HISTORY: usize = 16;

/// How long a semi-synchronous primary waits for acknowledgements before it would fall back
/// to asynchronous replication: a day, far longer than any detection and failover, so that in
/// practice it never does (a primary cut off from its replicas blocks its writes).
pub const SEMI_SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The server variables of the spec: the operator's durability, GTID and replication
/// settings for the flavor, then the user's `config` (which cannot name operator-owned
/// variables, but may override durability defaults such as `sync_binlog`, or the replicas'
/// network timeout).
///
/// With semi-synchronous replication (see [`ValidSpec::semi_sync`]) every instance gets the
/// replica side and the source's lossless settings: `AFTER_SYNC`, waiting for the count even
/// with no replica connected, with a timeout of [`SEMI_SYNC_TIMEOUT`]. The source side's
/// switch (`rpl_semi_sync_source_enabled` / `rpl_semi_sync_master_enabled`) is not here: a
/// replica with it on would hold its applier's commits waiting for replicas of its own, so
/// the operator turns it on for the instance it makes primary, before that instance takes a
/// write, and off for any other. Nor is MySQL's wait count
/// (`rpl_semi_sync_source_wait_for_replica_count`), which follows the number of instances: a
/// scale would otherwise make a new revision. [`render_my_cnf`] writes it, and the operator
/// sets it on the primary with the source switch.
pub fn server_variables(spec: &ValidSpec) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut set = |k: &str, val: &str| {
        v.insert(k.to_owned(), val.to_owned());
    };
    set("binlog_format", "ROW");
    set("sync_binlog", "1");
    set("innodb_flush_log_at_trx_commit", "1");
    set("relay_log_recovery", "ON");
    set("read_only", "ON");
    set("skip_name_resolve", "ON");
    match spec.flavor {
        Flavor::Mysql => {
            set("log_bin", "binlog");
            set("relay_log", "relay-bin");
            set("log_replica_updates", "ON");
            set("gtid_mode", "ON");
            set("enforce_gtid_consistency", "ON");
            set("skip_replica_start", "ON");
            set("replica_net_timeout", &spec.net_timeout_seconds.to_string());
        }
        Flavor::Mariadb => {
            set("log_bin", "mariadb-bin");
            set("relay_log", "relay-bin");
            set("log_slave_updates", "ON");
            set("gtid_strict_mode", "ON");
            set("skip_slave_start", "ON");
            set("slave_net_timeout", &spec.net_timeout_seconds.to_string());
        }
    }
    if spec.semi_sync.is_some() {
        let timeout = SEMI_SYNC_TIMEOUT.as_millis().to_string();
        match spec.flavor {
            Flavor::Mysql => {
                set("rpl_semi_sync_replica_enabled", "ON");
                set("rpl_semi_sync_source_wait_point", "AFTER_SYNC");
                set("rpl_semi_sync_source_timeout", &timeout);
                set("rpl_semi_sync_source_wait_no_replica", "ON");
            }
            Flavor::Mariadb => {
                // MariaDB waits for one replica; there is no count.
                set("rpl_semi_sync_slave_enabled", "ON");
                set("rpl_semi_sync_master_wait_point", "AFTER_SYNC");
                set("rpl_semi_sync_master_timeout", &timeout);
                set("rpl_semi_sync_master_wait_no_slave", "ON");
            }
        }
    }
    for (k, val) in &spec.config {
        v.insert(k.clone(), val.clone());
    }
    v
}

/// The rendered my.cnf: [`server_variables`] plus the start-up fence.
///
/// Every instance starts read-only from this file, and only the operator lifts it, on the
/// primary. On MySQL `read_only` lets holders of `CONNECTION_ADMIN` (or `SUPER`) write, so the
/// file also sets `super_read_only`, which stops every account. It is not one of the
/// [`server_variables`]: those make the revision's content hash, and a new line there would
/// change the revision hash of every existing MySQL cluster when the operator is upgraded
/// (restarting its pods); each server reads it at its next start instead. The same holds for
/// MySQL's clone plugin (`plugin_load_add = mysql_clone.so`), which the agent provisions new
/// replicas with (`CLONE INSTANCE`; donor and recipient both need it).
pub fn render_my_cnf(spec: &ValidSpec) -> String {
    let mut out = String::from(
        "# Rendered by switchyard from the revision. The agent adds server_id, the paths and the\n\
         # start-up fence at start; read_only (and super_read_only on MySQL) is lifted by the\n\
         # operator on the primary only.\n\
         [mysqld]\n",
    );
    let mut variables = server_variables(spec);
    if spec.flavor == Flavor::Mysql {
        variables.insert("super_read_only".to_owned(), "ON".to_owned());
    }
    for (k, val) in variables {
        // MySQL's semi-sync variables are its plugins': `mysqld --initialize` (the agent's
        // bootstrap) loads no plugin and would refuse them as unknown, so they are `loose-`.
        let loose = if spec.flavor == Flavor::Mysql && k.starts_with("rpl_semi_sync_") {
            "loose-"
        } else {
            ""
        };
        out.push_str(&format!("{loose}{k} = {val}\n"));
    }
    if spec.flavor == Flavor::Mysql {
        out.push_str("plugin_load_add = mysql_clone.so\n");
        // The semi-synchronous variables above are the plugins' (MariaDB has them built in).
        if let Some(k) = spec.semi_sync {
            out.push_str("plugin_load_add = semisync_source.so\n");
            out.push_str("plugin_load_add = semisync_replica.so\n");
            out.push_str(&format!(
                "loose-rpl_semi_sync_source_wait_for_replica_count = {k}\n"
            ));
        }
    }
    out
}

/// The content hash of the spec's revision: flavor, version and rendered variables, plus
/// the image and resources (anything that needs a restart to take effect), as
/// `switchyard_plan::topology::content_hash` computes it.
pub fn revision_hash(spec: &ValidSpec, cluster: &MySQLCluster) -> String {
    let mut content = server_variables(spec);
    content.insert("@image".into(), spec.image.clone());
    if let Some(resources) = &cluster.spec.resources {
        content.insert(
            "@resources".into(),
            serde_json::to_string(resources).unwrap_or_default(),
        );
    }
    content.insert(
        "@terminationGracePeriodSeconds".into(),
        grace_period_seconds(spec).to_string(),
    );
    content_hash(spec.flavor, spec.version, &content)
}

/// The pods' termination grace period: the shutdown timeout and 30 s.
pub fn grace_period_seconds(spec: &ValidSpec) -> i64 {
    i64::try_from(spec.shutdown_timeout.as_secs()).unwrap_or(i64::MAX / 2) + 30
}

pub(crate) fn setting(pairs: &[(String, String)]) -> Vec<VariableSetting> {
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
pub(crate) fn merge(base: &[VariableSetting], over: &[VariableSetting]) -> Vec<VariableSetting> {
    let mut out: Vec<VariableSetting> = base.to_vec();
    for s in over {
        match out.iter_mut().find(|o| o.name == s.name) {
            Some(o) => o.value = s.value.clone(),
            None => out.push(s.clone()),
        }
    }
    out
}

/// The history entry of a new revision `revision` for `spec` and `cluster`: reached by a
/// restart, or online when `online` gives the pod template hash it keeps and the variables.
pub fn new_entry(
    revision: &Revision,
    spec: &ValidSpec,
    cluster: &MySQLCluster,
    online: Option<(String, OnlineRevision)>,
    now: &Time,
) -> RevisionEntry {
    let (template_hash, online) = match online {
        Some((template_hash, online)) => (Some(template_hash), Some(online)),
        None => (None, None),
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
        pod: Some(revision_pod(spec, cluster)),
    }
}

/// What the pods of the spec's revision are built with besides its version and variables.
pub fn revision_pod(spec: &ValidSpec, cluster: &MySQLCluster) -> RevisionPod {
    RevisionPod {
        image: spec.image.clone(),
        resources: cluster.spec.resources.clone(),
        termination_grace_period_seconds: grace_period_seconds(spec),
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
        pod: from.pod.clone(),
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

/// Keeps at most [`REVISION_HISTORY`] revisions, dropping the oldest first, but never one an
/// instance is assigned to (its pod is built from it) nor the current or update revision.
pub fn trim_history(status: &mut MySQLClusterStatus) {
    let used: Vec<u64> = status.instances.iter().filter_map(|i| i.revision).collect();
    let Some(revisions) = status.revisions.as_mut() else {
        return;
    };
    let keep =
        |n: u64, r: &Revisions| used.contains(&n) || r.current == Some(n) || r.update == Some(n);
    while revisions.history.len() > REVISION_HISTORY {
        let snapshot = revisions.clone();
        let Some(at) = revisions
            .history
            .iter()
            .position(|e| !keep(e.number, &snapshot))
        else {
            break;
        };
        revisions.history.remove(at);
    }
}
