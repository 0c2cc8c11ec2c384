//! `switchyard operator`: runs the Kubernetes operator (in a cluster or from a kubeconfig).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args as ClapArgs;
use switchyard_kube::controller::{self, OperatorConfig};
use switchyard_kube::leader::LeaseConfig;

use crate::exit::Exit;

/// Arguments of `switchyard operator`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// The namespace of the leader-election Lease (default: $POD_NAMESPACE, else
    /// switchyard-system).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// The leader-election Lease's name.
    #[arg(long, default_value = "switchyard-operator")]
    lease_name: String,
    /// How long the lease lasts without renewal, in seconds. A cluster's switchover, up to
    /// its undo reserve, must fit in what a renewal (every third of the lease) is certain to
    /// cover, less a second: with 45 s, switchover deadlines up to 34 s.
    #[arg(long, default_value_t = switchyard_kube::leader::DEFAULT_LEASE.as_secs())]
    lease_seconds: u64,
    /// The image the database pods copy `switchyard agent` from (default: the image this
    /// operator runs from, read from its own pod; also $SWITCHYARD_AGENT_IMAGE).
    #[arg(long)]
    agent_image: Option<String>,
}

impl Args {
    fn config(self) -> OperatorConfig {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("switchyard-{}", std::process::id()));
        OperatorConfig {
            namespace: self.namespace,
            metrics_addr: self.metrics_addr,
            lease_namespace: self
                .lease_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "switchyard-system".into()),
            lease: LeaseConfig {
                name: self.lease_name,
                identity,
                duration: Duration::from_secs(self.lease_seconds.max(3)),
            },
            agent_image: self
                .agent_image
                .or_else(|| std::env::var("SWITCHYARD_AGENT_IMAGE").ok())
                .filter(|i| !i.trim().is_empty()),
        }
    }
}

/// Resolves on SIGTERM (the kubelet stopping the pod) or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the operator until SIGTERM.
pub fn run(args: Args) -> Exit {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return Exit::Internal;
        }
    };
    let config = args.config();
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "error: no Kubernetes API to talk to ({e}): run in a cluster or set KUBECONFIG"
                );
                return Exit::InvalidInput;
            }
        };
        match controller::run(client, config, shutdown_signal()).await {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Internal
            }
        }
    })
}

// Shared by the subcommands that talk to Kubernetes (approve, switchover).

/// Runs `f` on a new async runtime; an `Err` is the exit code to return.
pub(crate) fn block_on(f: impl std::future::Future<Output = Result<Exit, Exit>>) -> Exit {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f).unwrap_or_else(|e| e),
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            Exit::Internal
        }
    }
}

/// A client from the environment (in a cluster, or the kubeconfig).
pub(crate) async fn client() -> Result<kube::Client, Exit> {
    kube::Client::try_default().await.map_err(|e| {
        crate::exit::invalid(format!(
            "no Kubernetes API to talk to ({e}): set KUBECONFIG or run in a cluster"
        ))
    })
}
