//! A local cluster's failover metrics, read from its state file: what the Kubernetes operator
//! exposes on `/metrics`, for a cluster the local runtime runs (printed by `switchyard
//! metrics CLUSTER --state DIR` in the Prometheus text format).
//!
//! - `switchyard_failovers_total`: failovers promoted on the engine's record;
//! - `switchyard_last_failover_duration_seconds`: the last one, from the primary's first
//!   failed check to the candidate's promotion (absent before any);
//! - `switchyard_last_failover_lossless`: 1 when the engine recorded it lossless;
//! - `switchyard_semi_sync_wait_replicas`: how many replicas the cluster's primary is
//!   configured to wait for (0: asynchronous replication);
//! - `switchyard_primary_ack_replicas`: how many the primary was last seen waiting for,
//!   losslessly (`AFTER_SYNC`, never falling back); 0 when it was not (asynchronous, or a
//!   timeout that could fall back): no failover is then proven lossless.
//!
//! No label carries a cluster's or instance's name (the style's rule for metric labels).

use std::fmt::Write as _;

use serde::Serialize;

use crate::state::StateDoc;

/// The failover metrics of one cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailoverMetrics {
    /// Failovers promoted.
    pub failovers_total: u64,
    /// The last failover, first failed check to promotion, seconds.
    pub last_failover_seconds: Option<f64>,
    /// Whether the last failover was recorded lossless.
    pub last_failover_lossless: Option<bool>,
    /// The replicas the primary is configured to wait for (0: asynchronous).
    pub semi_sync_wait_replicas: u32,
    /// The replicas the primary was last seen waiting for, losslessly (0: none).
    pub primary_ack_replicas: u32,
}

impl FailoverMetrics {
    /// The metrics of the cluster whose state file holds `doc`.
    pub fn of(doc: &StateDoc) -> Self {
        let last = doc.record.last_failover.as_ref();
        FailoverMetrics {
            failovers_total: doc.record.failovers,
            last_failover_seconds: last
                .map(|f| f.promoted.0.saturating_sub(f.failing_since.0) as f64 / 1000.0),
            last_failover_lossless: last.map(|f| f.lossless),
            semi_sync_wait_replicas: doc.cluster.semi_sync.unwrap_or(0),
            primary_ack_replicas: doc.record.primary_ack_replicas.unwrap_or(0),
        }
    }

    /// The Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        metric(
            "switchyard_failovers_total",
            "counter",
            "Failovers promoted.",
            self.failovers_total.to_string(),
        );
        if let Some(s) = self.last_failover_seconds {
            metric(
                "switchyard_last_failover_duration_seconds",
                "gauge",
                "The last failover, from the primary's first failed check to the promotion.",
                format!("{s:.3}"),
            );
        }
        if let Some(l) = self.last_failover_lossless {
            metric(
                "switchyard_last_failover_lossless",
                "gauge",
                "1 when the last failover was recorded lossless.",
                u8::from(l).to_string(),
            );
        }
        metric(
            "switchyard_semi_sync_wait_replicas",
            "gauge",
            "Replicas the primary is configured to wait for (0: asynchronous).",
            self.semi_sync_wait_replicas.to_string(),
        );
        metric(
            "switchyard_primary_ack_replicas",
            "gauge",
            "Replicas the primary was last seen waiting for, losslessly (0: a failover is not proven lossless).",
            self.primary_ack_replicas.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_metric_and_leaves_out_the_last_failover_before_any() {
        let none = FailoverMetrics {
            failovers_total: 0,
            last_failover_seconds: None,
            last_failover_lossless: None,
            semi_sync_wait_replicas: 1,
            primary_ack_replicas: 1,
        };
        let text = none.prometheus();
        assert!(text.contains("\nswitchyard_failovers_total 0\n"), "{text}");
        assert!(
            text.contains("\nswitchyard_semi_sync_wait_replicas 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nswitchyard_primary_ack_replicas 1\n"),
            "{text}"
        );
        assert!(!text.contains("last_failover"), "{text}");
        let one = FailoverMetrics {
            failovers_total: 1,
            last_failover_seconds: Some(4.25),
            last_failover_lossless: Some(true),
            ..none
        };
        let text = one.prometheus();
        assert!(text.contains("\nswitchyard_failovers_total 1\n"), "{text}");
        assert!(
            text.contains("\nswitchyard_last_failover_duration_seconds 4.250\n"),
            "{text}"
        );
        assert!(
            text.contains("\nswitchyard_last_failover_lossless 1\n"),
            "{text}"
        );
    }
}
