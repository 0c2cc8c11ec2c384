//! Validation of a `MySQLCluster` spec beyond what its OpenAPI schema can express.
//!
//! [`validate`] is pure: it turns a spec into a [`ValidSpec`] (parsed flavor, version,
//! durations, normalized configuration) or lists every problem with what to do about it.
//! The reconciler writes the problems into the `InvalidSpec` condition and changes nothing
//! else.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use switchyard_plan::Strategy;
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::versions::{Flavor, Version};

use crate::crd::{ClusterTopology, MySQLClusterSpec, UpdateStrategy};

/// Server variables the operator sets itself and users may not set in `config`: roles,
/// identities, GTID, binary log and replication settings. A name matches when it equals an
/// entry, or starts with an entry that ends in `*`.
pub const OPERATOR_OWNED_VARIABLES: &[&str] = &[
    "read_only",
    "super_read_only",
    "server_id",
    "gtid_*",
    "enforce_gtid_consistency",
    "log_bin*",
    "binlog_format",
    "log_slave_updates",
    "log_replica_updates",
    "relay_log*",
    "skip_slave_start",
    "skip_replica_start",
    "report_host",
    "report_port",
    "wsrep_*",
    "port",
    "bind_address",
    "datadir",
    "socket",
    "skip_networking",
    "rpl_semi_sync_*",
];

/// The replicas' network timeout when the spec gives none, in seconds: a replica gives a
/// silent primary up after it (the heartbeat is half of it), which is what corroborates a
/// failed primary.
pub const DEFAULT_NET_TIMEOUT_SECONDS: u32 = 4;

/// The most instances a cluster may have (the schema's maximum too).
pub const MAX_REPLICAS: i32 = 9;

/// A spec that passed validation, in parsed form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSpec {
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// The version every instance should run.
    pub version: Version,
    /// The container image.
    pub image: String,
    /// The number of instances.
    pub replicas: u32,
    /// How the instances replicate: primary-replica (`Async`) or Galera.
    pub topology: TopologyKind,
    /// The user's server variables, names normalized (lowercase, `-` → `_`).
    pub config: BTreeMap<String, String>,
    /// The rollout strategy.
    pub strategy: Strategy,
    /// The replication lag bound.
    pub max_lag_seconds: u64,
    /// The longest transaction allowed before a switchover.
    pub max_transaction_seconds: u64,
    /// How long a restarted instance may take to become ready.
    pub startup_timeout: Duration,
    /// How long a clean shutdown may take.
    pub shutdown_timeout: Duration,
    /// When an unpromoted switchover is undone.
    pub switchover_deadline: Duration,
    /// How long a replica stays out of the read Service before its restart.
    pub drain: Duration,
    /// When a wait or a failing step halts the rollout.
    pub halt_after: Duration,
    /// The canary's bake within the cluster, if any.
    pub canary_bake: Option<Duration>,
    /// The name of the credentials Secret.
    pub credentials_secret: String,
    /// Lossless semi-synchronous replication: how many replicas acknowledge each commit.
    /// `None` for asynchronous replication, and for a cluster without replicas.
    pub semi_sync: Option<u32>,
    /// The replicas' network timeout in seconds (`replica_net_timeout` /
    /// `slave_net_timeout`).
    pub net_timeout_seconds: u32,
    /// Whether a failed primary is replaced on its own.
    pub failover_automatic: bool,
    /// How long the primary must have failed every check before a failover.
    pub failover_detect_after: Duration,
    /// Whether a failover may run without a proof that no acknowledged write is lost.
    pub accept_data_loss: bool,
}

/// One problem with a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// `flavor` is neither `mysql` nor `mariadb`.
    #[error("spec.flavor '{0}' is unknown: use mysql or mariadb")]
    UnknownFlavor(String),
    /// `version` does not parse.
    #[error("spec.version '{input}' is not a version: {reason}")]
    BadVersion {
        /// What was given.
        input: String,
        /// The parser's explanation.
        reason: String,
    },
    /// `replicas` is out of range.
    #[error("spec.replicas is {0}: give between 1 and {MAX_REPLICAS} instances")]
    BadReplicas(i32),
    /// A duration does not parse or is zero.
    #[error("spec.update.{field} '{input}' is not a duration: write it as 90s, 10m, 1h or 1h30m")]
    BadDuration {
        /// Which field.
        field: &'static str,
        /// What was given.
        input: String,
    },
    /// A number is negative.
    #[error("spec.update.{field} is {value}: it must be zero or more")]
    Negative {
        /// Which field.
        field: &'static str,
        /// What was given.
        value: i64,
    },
    /// The shutdown timeout is too long for a pod's grace period.
    #[error(
        "spec.update.shutdownTimeout is longer than 24h: the pods' grace period could not cover it"
    )]
    ShutdownTooLong,
    /// A variable the operator owns appears in `config`.
    #[error(
        "spec.config sets '{0}', which the operator owns (roles, server ids, GTID, binary log and replication settings): remove it"
    )]
    OperatorOwned(String),
    /// A variable name is not a server variable name.
    #[error("spec.config key '{0}' is not a server variable name: use letters, digits, '_' or '-'")]
    BadVariableName(String),
    /// A value would break my.cnf.
    #[error(
        "spec.config value of '{0}' contains a line break or control character: give it on one line"
    )]
    BadVariableValue(String),
    /// The semi-synchronous acknowledgement count is out of range.
    #[error(
        "spec.replication.ackReplicas is {given}: {flavor} with {replicas} replica(s) can wait for \
         between 1 and {max} of them; give a number in that range, remove it for the default, \
         or set spec.replication.mode to Async"
    )]
    BadAckReplicas {
        /// What was given.
        given: i32,
        /// The flavor's name.
        flavor: &'static str,
        /// The replicas of the cluster.
        replicas: u32,
        /// The most it may be.
        max: u32,
    },
    /// A failover or replication number in seconds is out of range.
    #[error("spec.{field} is {value}: give between 1 and {max} seconds")]
    BadSeconds {
        /// Which field.
        field: &'static str,
        /// What was given.
        value: i64,
        /// The most it may be.
        max: i64,
    },
    /// `topology: galera` with a flavor other than MariaDB.
    #[error(
        "spec.topology is galera but spec.flavor is '{0}': Galera clusters run MariaDB only; \
         set flavor to mariadb, or remove topology for a primary-replica cluster"
    )]
    GaleraNeedsMariadb(String),
    /// `topology: galera` with an even number of nodes, or fewer than 3.
    #[error(
        "spec.replicas is {0} but a Galera cluster needs an odd number of nodes, at least 3 \
         (a cluster that loses half its nodes or more loses quorum and stops taking writes): \
         set replicas to 3, 5, 7 or 9"
    )]
    GaleraNodeCount(i32),
    /// An image name with whitespace.
    #[error("spec.image '{0}' is not an image reference")]
    BadImage(String),
    /// The switchover's work outlasts what the operator's leader lease is certain to cover
    /// (the lease rule, [`crate::leader`]).
    #[error(
        "spec.update.switchoverDeadline {} leaves {} for the switchover's work before its undo \
         reserve, longer than the operator's leader lease ({}, renewed every {}) is certain to \
         last ({}): the operator could never confirm its leadership for it, and a deposed \
         operator could still be acting when its successor takes over; set switchoverDeadline \
         to at most {}, or run the operator with --lease-seconds {} or more",
        secs(*deadline),
        secs(crate::validate::switchover_work(*deadline)),
        secs(*lease),
        secs(crate::leader::renew_interval(*lease)),
        secs(crate::leader::guaranteed(*lease)),
        secs(max_deadline(*lease)),
        min_lease(*deadline).as_secs()
    )]
    DeadlineOutlastsLease {
        /// The switchover deadline.
        deadline: Duration,
        /// The operator's lease duration.
        lease: Duration,
    },
}

/// A duration in seconds as a person reads it (`25s`, `8.8s`).
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The part of a switchover before its undo reserve: every step up to the promotion ends by
/// then, and the engine confirms its leadership until then.
pub fn switchover_work(deadline: Duration) -> Duration {
    deadline.saturating_sub(switchyard_plan::engine::undo_reserve(deadline))
}

/// The longest switchover deadline whose work fits what a lease of `lease` guarantees, in
/// whole seconds.
fn max_deadline(lease: Duration) -> Duration {
    let guaranteed = crate::leader::guaranteed(lease);
    let mut best = Duration::ZERO;
    for s in 1..=guaranteed.as_secs().saturating_mul(2).saturating_add(10) {
        let d = Duration::from_secs(s);
        if switchover_work(d) <= guaranteed {
            best = d;
        }
    }
    best
}

/// The shortest lease, in whole seconds, that guarantees the work of a switchover with
/// `deadline`.
fn min_lease(deadline: Duration) -> Duration {
    let work = switchover_work(deadline);
    (1..=work.as_secs().saturating_mul(3).saturating_add(10))
        .map(Duration::from_secs)
        .find(|l| crate::leader::guaranteed(*l) >= work)
        .unwrap_or(Duration::MAX)
}

/// The lease rule's sizing: a switchover with `switchover_deadline` must fit in what a
/// leader lease of `lease` renewed on schedule is certain to cover (see [`crate::leader`]).
///
/// # Errors
/// [`SpecError::DeadlineOutlastsLease`] when it does not.
pub fn check_lease(switchover_deadline: Duration, lease: Duration) -> Result<(), SpecError> {
    if switchover_work(switchover_deadline) <= crate::leader::guaranteed(lease) {
        Ok(())
    } else {
        Err(SpecError::DeadlineOutlastsLease {
            deadline: switchover_deadline,
            lease,
        })
    }
}

impl SpecError {
    /// A bounded category for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            SpecError::UnknownFlavor(_) => "unknown-flavor",
            SpecError::BadVersion { .. } => "bad-version",
            SpecError::BadReplicas(_) => "bad-replicas",
            SpecError::BadDuration { .. } => "bad-duration",
            SpecError::Negative { .. } => "negative",
            SpecError::ShutdownTooLong => "shutdown-too-long",
            SpecError::OperatorOwned(_) => "operator-owned-variable",
            SpecError::BadVariableName(_) => "bad-variable-name",
            SpecError::BadVariableValue(_) => "bad-variable-value",
            SpecError::BadImage(_) => "bad-image",
            SpecError::GaleraNeedsMariadb(_) => "galera-needs-mariadb",
            SpecError::GaleraNodeCount(_) => "galera-node-count",
            SpecError::BadAckReplicas { .. } => "bad-ack-replicas",
            SpecError::BadSeconds { .. } => "bad-seconds",
            SpecError::DeadlineOutlastsLease { .. } => "deadline-outlasts-lease",
        }
    }
}

/// Every problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    /// The problems, in field order.
    pub problems: Vec<SpecError>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Normalizes a server variable name as my.cnf reads it: lowercase, `-` as `_`.
pub fn normalize_variable(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

/// Whether the operator owns the (normalized) variable `name`.
pub fn is_operator_owned(name: &str) -> bool {
    OPERATOR_OWNED_VARIABLES
        .iter()
        .any(|owned| match owned.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *owned,
        })
}

/// Parses `90s`, `10m`, `1h`, `1h30m` (hours, minutes, seconds, in that order).
pub fn parse_duration(input: &str) -> Option<Duration> {
    let mut rest = input.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut last_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let (rank, factor) = match unit {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if rank <= last_unit {
            return None;
        }
        last_unit = rank;
        total = total.checked_add(value.checked_mul(factor)?)?;
        rest = &rest[digits + 1..];
    }
    Some(Duration::from_secs(total))
}

/// The default image for a flavor and version.
pub fn default_image(flavor: Flavor, version: Version) -> String {
    match flavor {
        Flavor::Mysql => format!("mysql:{version}"),
        Flavor::Mariadb => format!("mariadb:{version}"),
    }
}

/// Validates a spec. `name` is the cluster's name (for the default Secret name).
pub fn validate(name: &str, spec: &MySQLClusterSpec) -> Result<ValidSpec, InvalidSpec> {
    let mut problems = Vec::new();
    let flavor = match spec.flavor.trim() {
        "mysql" => Some(Flavor::Mysql),
        "mariadb" => Some(Flavor::Mariadb),
        other => {
            problems.push(SpecError::UnknownFlavor(other.to_owned()));
            None
        }
    };
    let version = match Version::parse(&spec.version) {
        Ok(v)
            if spec.version.trim().split('.').count() == 3
                && spec
                    .version
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.') =>
        {
            Some(v)
        }
        Ok(_) => {
            problems.push(SpecError::BadVersion {
                input: spec.version.clone(),
                reason: "give exactly major.minor.patch, such as 10.11.14".into(),
            });
            None
        }
        Err(e) => {
            problems.push(SpecError::BadVersion {
                input: spec.version.clone(),
                reason: e.to_string(),
            });
            None
        }
    };
    if spec.replicas < 1 || spec.replicas > MAX_REPLICAS {
        problems.push(SpecError::BadReplicas(spec.replicas));
    }
    let topology = match spec.topology {
        ClusterTopology::PrimaryReplica => TopologyKind::Async,
        ClusterTopology::Galera => TopologyKind::Galera,
    };
    if topology == TopologyKind::Galera {
        if flavor.is_some_and(|f| f != Flavor::Mariadb) {
            problems.push(SpecError::GaleraNeedsMariadb(spec.flavor.trim().to_owned()));
        }
        if (1..=MAX_REPLICAS).contains(&spec.replicas)
            && (spec.replicas < 3 || spec.replicas % 2 == 0)
        {
            problems.push(SpecError::GaleraNodeCount(spec.replicas));
        }
    }
    if let Some(image) = &spec.image
        && (image.trim().is_empty() || image.chars().any(char::is_whitespace))
    {
        problems.push(SpecError::BadImage(image.clone()));
    }
    let mut config = BTreeMap::new();
    for (key, value) in &spec.config {
        let name = normalize_variable(key);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            problems.push(SpecError::BadVariableName(key.clone()));
            continue;
        }
        if is_operator_owned(&name) {
            problems.push(SpecError::OperatorOwned(key.clone()));
            continue;
        }
        if value.chars().any(char::is_control) {
            problems.push(SpecError::BadVariableValue(key.clone()));
            continue;
        }
        config.insert(name, value.trim().to_owned());
    }
    let update = &spec.update;
    let mut duration = |field: &'static str, input: &str| match parse_duration(input) {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            problems.push(SpecError::BadDuration {
                field,
                input: input.to_owned(),
            });
            None
        }
    };
    let startup = duration("startupTimeout", &update.startup_timeout);
    let shutdown = duration("shutdownTimeout", &update.shutdown_timeout);
    let deadline = duration("switchoverDeadline", &update.switchover_deadline);
    let halt_after = duration("haltAfter", &update.halt_after);
    let canary_bake = update
        .canary_bake
        .as_deref()
        .map(|input| duration("canaryBake", input));
    if shutdown.is_some_and(|d| d > Duration::from_secs(24 * 3600)) {
        problems.push(SpecError::ShutdownTooLong);
    }
    let replication = spec.replication.clone().unwrap_or_default();
    let failover = spec.failover.clone().unwrap_or_default();
    // A Galera node replicates through wsrep, never through semi-synchronous replication.
    let semi_sync = if topology == TopologyKind::Galera {
        None
    } else {
        semi_sync_count(flavor, spec.replicas, &replication, &mut problems)
    };
    let mut seconds = |field: &'static str, value: i64, max: i64| {
        if (1..=max).contains(&value) {
            u32::try_from(value).ok()
        } else {
            problems.push(SpecError::BadSeconds { field, value, max });
            None
        }
    };
    let net_timeout = seconds(
        "replication.netTimeoutSeconds",
        replication
            .net_timeout_seconds
            .unwrap_or(i64::from(DEFAULT_NET_TIMEOUT_SECONDS)),
        3600,
    );
    let detection = seconds(
        "failover.detectionSeconds",
        failover.detection_seconds,
        3600,
    );
    let mut non_negative = |field: &'static str, value: i64| {
        u64::try_from(value).ok().or_else(|| {
            problems.push(SpecError::Negative { field, value });
            None
        })
    };
    let max_lag = non_negative("maxLagSeconds", update.max_lag_seconds);
    let max_trx = non_negative("maxTransactionSeconds", update.max_transaction_seconds);
    let drain = non_negative("drainSeconds", update.drain_seconds);
    match (
        flavor, version, startup, shutdown, deadline, halt_after, max_lag, max_trx, drain,
    ) {
        (
            Some(flavor),
            Some(version),
            Some(startup_timeout),
            Some(shutdown_timeout),
            Some(switchover_deadline),
            Some(halt_after),
            Some(max_lag_seconds),
            Some(max_transaction_seconds),
            Some(drain),
        ) if problems.is_empty()
            && net_timeout.is_some()
            && detection.is_some()
            && canary_bake.is_none_or(|d| d.is_some()) =>
        {
            Ok(ValidSpec {
                flavor,
                version,
                image: spec
                    .image
                    .clone()
                    .unwrap_or_else(|| default_image(flavor, version)),
                replicas: u32::try_from(spec.replicas).unwrap_or(1),
                topology,
                config,
                strategy: match update.strategy {
                    UpdateStrategy::Automatic => Strategy::Automatic,
                    UpdateStrategy::Supervised => Strategy::Supervised,
                    UpdateStrategy::Paused => Strategy::Paused,
                },
                max_lag_seconds,
                max_transaction_seconds,
                startup_timeout,
                shutdown_timeout,
                switchover_deadline,
                drain: Duration::from_secs(drain),
                halt_after,
                credentials_secret: spec
                    .credentials
                    .as_ref()
                    .and_then(|c| c.secret_name.clone())
                    .unwrap_or_else(|| format!("{name}-credentials")),
                semi_sync,
                net_timeout_seconds: net_timeout.unwrap_or(DEFAULT_NET_TIMEOUT_SECONDS),
                failover_automatic: failover.automatic,
                failover_detect_after: Duration::from_secs(u64::from(detection.unwrap_or(1))),
                accept_data_loss: failover.accept_data_loss,
                canary_bake: canary_bake.flatten(),
            })
        }
        _ => Err(InvalidSpec { problems }),
    }
}

/// How many replicas a lossless semi-synchronous primary waits for: the spec's
/// `ackReplicas`, by default half the instances (at least 1, as MOCO does); MariaDB waits for
/// exactly one. `None` for asynchronous replication and for a cluster without replicas.
fn semi_sync_count(
    flavor: Option<Flavor>,
    instances: i32,
    replication: &crate::crd::ReplicationSpec,
    problems: &mut Vec<SpecError>,
) -> Option<u32> {
    let replicas = u32::try_from(instances).unwrap_or(0).saturating_sub(1);
    if replication.mode == crate::crd::ReplicationMode::Async || replicas == 0 {
        return None;
    }
    let flavor = flavor?;
    let (name, max) = match flavor {
        Flavor::Mysql => ("MySQL", replicas),
        Flavor::Mariadb => ("MariaDB", 1),
    };
    match replication.ack_replicas {
        None => Some(match flavor {
            Flavor::Mysql => (replicas.div_ceil(2)).clamp(1, max),
            Flavor::Mariadb => 1,
        }),
        Some(given) => match u32::try_from(given) {
            Ok(k) if (1..=max).contains(&k) => Some(k),
            _ => {
                problems.push(SpecError::BadAckReplicas {
                    given,
                    flavor: name,
                    replicas,
                    max,
                });
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_unit_order() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("30m1h"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn operator_owned_names_match_prefixes() {
        for owned in [
            "read_only",
            "gtid_mode",
            "gtid_strict_mode",
            "log_bin_basename",
            "relay_log_recovery",
            "wsrep_on",
            "server_id",
        ] {
            assert!(is_operator_owned(owned), "{owned}");
        }
        for free in ["innodb_buffer_pool_size", "max_connections", "sync_binlog"] {
            assert!(!is_operator_owned(free), "{free}");
        }
        assert_eq!(normalize_variable("Server-Id"), "server_id");
    }

    #[test]
    fn the_default_deadline_fits_the_default_lease_and_a_longer_one_is_refused_with_the_way_out() {
        let default_deadline =
            parse_duration(&crate::crd::UpdatePolicy::default().switchover_deadline)
                .expect("the default deadline parses");
        assert_eq!(
            check_lease(default_deadline, crate::leader::DEFAULT_LEASE),
            Ok(())
        );
        // The defaults before the lease rule: a 30 s deadline (25 s of work) under a 15 s
        // lease, renewed every 5 s, certain for 9 s only.
        let e = check_lease(Duration::from_secs(30), Duration::from_secs(15)).unwrap_err();
        assert_eq!(e.category(), "deadline-outlasts-lease");
        let text = e.to_string();
        for part in [
            "switchoverDeadline 30s leaves 25s",
            "lease (15s, renewed every 5s) is certain to last (9s)",
            "at most 11s",
            "--lease-seconds 39 or more",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        // The boundaries the message names are exact.
        assert_eq!(
            check_lease(Duration::from_secs(11), Duration::from_secs(15)),
            Ok(())
        );
        assert!(check_lease(Duration::from_secs(12), Duration::from_secs(15)).is_err());
        assert_eq!(
            check_lease(Duration::from_secs(30), Duration::from_secs(39)),
            Ok(())
        );
        assert!(check_lease(Duration::from_secs(30), Duration::from_secs(38)).is_err());
    }

    fn spec_of(v: serde_json::Value) -> MySQLClusterSpec {
        serde_json::from_value(v).expect("a spec")
    }

    #[test]
    fn a_canary_bake_is_a_duration_or_refused_by_name() {
        let with = |bake: serde_json::Value| {
            validate(
                "shop",
                &spec_of(serde_json::json!({
                    "flavor": "mariadb", "version": "10.11.14", "replicas": 3,
                    "update": {"canaryBake": bake},
                })),
            )
        };
        assert_eq!(
            with(serde_json::json!("10m")).expect("valid").canary_bake,
            Some(Duration::from_secs(600))
        );
        let e = with(serde_json::json!("soon")).expect_err("refused");
        assert_eq!(
            e.problems,
            vec![SpecError::BadDuration {
                field: "canaryBake",
                input: "soon".into()
            }]
        );
        let none = validate(
            "shop",
            &spec_of(serde_json::json!({
                "flavor": "mariadb", "version": "10.11.14", "replicas": 3,
            })),
        )
        .expect("valid");
        assert_eq!(none.canary_bake, None);
    }

    #[test]
    fn replication_and_failover_default_to_lossless_semi_sync_and_automatic_failover() {
        let check = |flavor: &str, version: &str, replicas: i32| {
            validate(
                "shop",
                &spec_of(serde_json::json!({
                    "flavor": flavor, "version": version, "replicas": replicas,
                })),
            )
            .expect("valid")
        };
        // Half the instances, at least one (MOCO's rule); MariaDB always one.
        for (replicas, k) in [
            (1, None),
            (2, Some(1)),
            (3, Some(1)),
            (4, Some(2)),
            (5, Some(2)),
        ] {
            assert_eq!(check("mysql", "9.7.0", replicas).semi_sync, k, "{replicas}");
        }
        assert_eq!(check("mariadb", "10.11.14", 5).semi_sync, Some(1));
        let v = check("mariadb", "10.11.14", 3);
        assert_eq!(v.net_timeout_seconds, DEFAULT_NET_TIMEOUT_SECONDS);
        assert!(v.failover_automatic && !v.accept_data_loss);
        assert_eq!(v.failover_detect_after, Duration::from_secs(3));
        let a = validate(
            "shop",
            &spec_of(serde_json::json!({
                "flavor": "mysql", "version": "9.7.0", "replicas": 3,
                "replication": {"mode": "Async", "netTimeoutSeconds": 10},
                "failover": {"automatic": false, "detectionSeconds": 7, "acceptDataLoss": true},
            })),
        )
        .expect("valid");
        assert_eq!(a.semi_sync, None);
        assert_eq!(a.net_timeout_seconds, 10);
        assert!(!a.failover_automatic && a.accept_data_loss);
        assert_eq!(a.failover_detect_after, Duration::from_secs(7));
    }

    #[test]
    fn bad_replication_and_failover_settings_are_refused_with_what_to_do() {
        let refused = |v: serde_json::Value| {
            validate("shop", &spec_of(v))
                .expect_err("refused")
                .to_string()
        };
        let text = refused(serde_json::json!({
            "flavor": "mariadb", "version": "10.11.14", "replicas": 3,
            "replication": {"ackReplicas": 2},
        }));
        assert_eq!(
            text,
            "spec.replication.ackReplicas is 2: MariaDB with 2 replica(s) can wait for between 1 \
             and 1 of them; give a number in that range, remove it for the default, or set \
             spec.replication.mode to Async"
        );
        let text = refused(serde_json::json!({
            "flavor": "mysql", "version": "9.7.0", "replicas": 3,
            "replication": {"ackReplicas": 0, "netTimeoutSeconds": 0},
            "failover": {"detectionSeconds": -1},
        }));
        for part in [
            "spec.replication.ackReplicas is 0: MySQL with 2 replica(s) can wait for between 1 and 2",
            "spec.replication.netTimeoutSeconds is 0: give between 1 and 3600 seconds",
            "spec.failover.detectionSeconds is -1: give between 1 and 3600 seconds",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let text = refused(serde_json::json!({
            "flavor": "mysql", "version": "9.7.0", "replicas": 3,
            "config": {"rpl_semi_sync_source_timeout": "10"},
        }));
        assert!(text.contains("rpl_semi_sync_source_timeout"), "{text}");
    }

    #[test]
    fn galera_needs_mariadb_and_an_odd_number_of_nodes_of_at_least_three() {
        let ok = validate(
            "shop",
            &spec_of(serde_json::json!({
                "flavor": "mariadb", "version": "10.11.14", "replicas": 3, "topology": "galera",
            })),
        )
        .expect("valid");
        assert_eq!(ok.topology, TopologyKind::Galera);
        assert_eq!(ok.semi_sync, None, "Galera replicates through wsrep");
        let default = validate(
            "shop",
            &spec_of(serde_json::json!({
                "flavor": "mariadb", "version": "10.11.14", "replicas": 3,
            })),
        )
        .expect("valid");
        assert_eq!(default.topology, TopologyKind::Async);
        let refused = |v: serde_json::Value| validate("shop", &spec_of(v)).expect_err("refused");
        let e = refused(serde_json::json!({
            "flavor": "mysql", "version": "9.7.0", "replicas": 3, "topology": "galera",
        }));
        assert_eq!(
            e.problems,
            vec![SpecError::GaleraNeedsMariadb("mysql".into())]
        );
        assert!(e.to_string().contains("set flavor to mariadb"), "{e}");
        for replicas in [1, 2, 4, 8] {
            let e = refused(serde_json::json!({
                "flavor": "mariadb", "version": "10.11.14", "replicas": replicas,
                "topology": "galera",
            }));
            assert_eq!(e.problems, vec![SpecError::GaleraNodeCount(replicas)]);
            assert!(
                e.to_string().contains("set replicas to 3, 5, 7 or 9"),
                "{e}"
            );
        }
    }
}
