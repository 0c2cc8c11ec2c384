//! Prometheus metrics and the operator's small HTTP endpoint (`/metrics`, `/healthz`,
//! `/readyz`).
//!
//! Labels are bounded: error categories and halt reasons, never object names or free text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A label holding a bounded category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    /// The category (`Error::category`, `HaltReason::category`).
    pub category: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Rollouts started (a new update revision with instances to change).
    pub rollouts_started: Counter,
    /// Rollouts finished (every instance at the update revision).
    pub rollouts_finished: Counter,
    /// Rollouts halted, by halt reason.
    pub rollouts_halted: Family<CategoryLabel, Counter>,
    /// Completed switchovers.
    pub switchovers: Counter,
    /// Switchover duration (fence to promotion), seconds.
    pub switchover_duration: Histogram,
    /// Instances brought to a new revision.
    pub instances_upgraded: Counter,
    /// Reconcile errors, by category.
    pub reconcile_errors: Family<CategoryLabel, Counter>,
    /// Reconciles run.
    pub reconciles: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `switchyard` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let m = Metrics {
            rollouts_started: Counter::default(),
            rollouts_finished: Counter::default(),
            rollouts_halted: Family::default(),
            switchovers: Counter::default(),
            switchover_duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            instances_upgraded: Counter::default(),
            reconcile_errors: Family::default(),
            reconciles: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "rollouts_started",
            "Rollouts started",
            m.rollouts_started.clone(),
        );
        registry.register(
            "rollouts_finished",
            "Rollouts finished",
            m.rollouts_finished.clone(),
        );
        registry.register(
            "rollouts_halted",
            "Rollouts halted, by reason",
            m.rollouts_halted.clone(),
        );
        registry.register(
            "switchovers",
            "Completed switchovers",
            m.switchovers.clone(),
        );
        registry.register(
            "switchover_duration_seconds",
            "Switchover duration from fence to promotion",
            m.switchover_duration.clone(),
        );
        registry.register(
            "instances_upgraded",
            "Instances brought to a new revision",
            m.instances_upgraded.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors, by category",
            m.reconcile_errors.clone(),
        );
        registry.register("reconciles", "Reconciles run", m.reconciles.clone());
        Metrics { registry, ..m }
    }

    /// Counts a reconcile error of `category`.
    pub fn error(&self, category: &str) {
        self.reconcile_errors
            .get_or_create(&CategoryLabel {
                category: category.to_owned(),
            })
            .inc();
    }

    /// Counts a halted rollout of `category`.
    pub fn halted(&self, category: &str) {
        self.rollouts_halted
            .get_or_create(&CategoryLabel {
                category: category.to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Whether the operator is ready (running: leading, or waiting for the lease).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    /// Whether ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The response to one request path: status line and body.
pub fn respond(path: &str, metrics: &Metrics, ready: &Readiness) -> (&'static str, String) {
    match path {
        "/metrics" => ("200 OK", metrics.render()),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" if ready.get() => ("200 OK", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "not ready\n".into()),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = respond(path, &metrics, &ready);
            let content_type = if path == "/metrics" {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_answer_and_metrics_carry_bounded_labels() {
        let m = Metrics::new();
        m.error("conflict");
        m.halted("forbidden-transition");
        m.switchover_duration.observe(0.3);
        let ready = Readiness::default();
        assert_eq!(respond("/healthz", &m, &ready).0, "200 OK");
        assert_eq!(respond("/readyz", &m, &ready).0, "503 Service Unavailable");
        ready.set(true);
        assert_eq!(respond("/readyz", &m, &ready).0, "200 OK");
        assert_eq!(respond("/nope", &m, &ready).0, "404 Not Found");
        let (status, body) = respond("/metrics", &m, &ready);
        assert_eq!(status, "200 OK");
        assert!(
            body.contains("switchyard_reconcile_errors_total{category=\"conflict\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("switchyard_rollouts_halted_total{category=\"forbidden-transition\"} 1")
        );
        assert!(body.contains("switchyard_switchover_duration_seconds_count 1"));
    }
}
