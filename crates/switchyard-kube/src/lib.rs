//! The switchyard Kubernetes operator: the `MySQLCluster` resource and its reconciler.
//!
//! A reconcile is a pipeline (fetch → [`validate`] → [`build`] → apply → one engine step →
//! [`status`]). The engine from `switchyard-plan` decides every step; [`runtime::KubeRuntime`]
//! carries it out on Kubernetes and keeps the engine's record in the resource's status with
//! compare-and-swap on the resource version. [`controller::run`] wires the reconciler into a
//! kube-runtime controller with leader election, metrics and graceful shutdown.

pub mod build;
pub mod change;
pub mod controller;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod reconcile;
pub mod runtime;
pub mod schema;
pub mod status;
pub mod validate;

pub use crd::{MySQLCluster, MySQLClusterSpec, MySQLClusterStatus, SchemaChange};
pub use error::Error;
pub use reconcile::{Context, OpsFactory, reconcile};
pub use runtime::KubeRuntime;
pub use schema::reconcile_schema_change;
