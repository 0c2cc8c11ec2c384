//! The switchyard engine on local server processes: a [`ClusterRuntime`]
//! over real MySQL and MariaDB servers started by `switchyard-testbed`, behind
//! the testbed's router, for demos, simulations, benchmarks and tests on a
//! machine without Kubernetes.
//!
//! - [`LocalCluster`] starts the servers, the router and a supervisor that
//!   starts a crashed process again on its current revision (as a kubelet
//!   would), keeps the state file next to the cluster's data, and records
//!   the cluster's numbered revision history.
//! - [`LocalRuntime`] is the engine's runtime over it; a new runtime over the
//!   same cluster resumes from the state file, as a new engine process would.
//! - [`Timeline`] records what happened; [`Progress`] shows it as it
//!   happens; [`Summary`] and [`report`] tell it afterwards.
//! - [`LocalCluster::schema_target`] is the pre-flight of a schema change
//!   (unsafe changes refused unless forced); the engine then rolls it with
//!   [`LocalRuntime`] (see [`schema`]).
//! - A Galera cluster (`ClusterSpec::new(ServerKind::Galera, n)`) is driven by
//!   the same engine: a schema change rolls node by node as a Rolling Schema
//!   Upgrade (each node drained from the router, altered with
//!   `wsrep_OSU_method=RSU`, returned once Synced; the writer last, its writes
//!   moved to another node first), judged in both directions unless every
//!   write goes through the writer ([`SchemaRequest::one_writer`]).
//! - A cluster can run lossless semi-synchronous replication and a short
//!   replica network timeout ([`ClusterSpec::with_semi_sync`],
//!   [`ClusterSpec::with_replica_net_timeout`]); the runtime then reports each
//!   replica's receiver and the primary's acknowledgements, and implements a
//!   failover's detach and apply steps.
//! - [`fleet`] rolls one change over several local clusters in waves: a driver over a
//!   fleet file decides with [`switchyard_plan::fleet`], and each cluster's
//!   [`fleet::FleetMember`] rolls what it is given and publishes its health.
//! - [`Monitor`] samples the invariants independently: at most one writable
//!   instance, no replica of a newer source, at most one instance out of
//!   service by the engine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_local::{ClusterSpec, LocalCluster, LocalRuntime};
//! use switchyard_plan::{Engine, Policy};
//! use switchyard_testbed::ServerKind;
//!
//! let cluster = LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb105, 3)).await?;
//! let target = cluster.upgrade_target(ServerKind::Mariadb1011).await?;
//! let engine = Engine::new(LocalRuntime::new(&cluster), target, Policy::default());
//! engine.run(1_000).await?;
//! # Ok(()) }
//! ```
//!
//! [`ClusterRuntime`]: switchyard_plan::engine::ClusterRuntime

mod cluster;
mod error;
pub mod fleet;
mod load;
pub mod metrics;
mod monitor;
pub mod progress;
pub mod report;
mod runtime;
pub mod schema;
mod semisync;
pub mod state;
pub mod summary;
pub mod timeline;

pub use cluster::{
    Apply, ClusterSpec, LocalCluster, flavor_of, kind_for, render_config, server_version,
};
pub use error::{Error, Result};
pub use monitor::{Invariant, Monitor, MonitorReport, Violation};
pub use progress::Progress;
pub use runtime::{LocalRuntime, NEVER_FALLS_BACK, RuntimeConfig};
pub use schema::{SchemaPlan, SchemaRequest};
pub use semisync::{DEFAULT_REPLICA_NET_TIMEOUT, SEMI_SYNC_TIMEOUT};
pub use summary::Summary;
pub use timeline::{Event, Observer, Op, StartedBy, Timed, Timeline};
