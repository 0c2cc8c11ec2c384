//! The switchyard Kubernetes operator: the `MySQLCluster` resource and its reconciler.
//!
//! A reconcile is a pipeline: fetch ([`fetch`]) → validate ([`validate`]) → build (pure:
//! [`instances`] decides what each instance should be, [`build`] makes the objects) → apply
//! ([`children`], [`apply`]) → one engine step → status ([`status`]). The engine from
//! `switchyard-plan` decides every step; [`runtime::KubeRuntime`] carries it out on Kubernetes
//! and keeps the engine's record in the resource's status with compare-and-swap on the
//! resource version. The operator creates each instance's Pod and data claim itself, from the
//! revision the record assigns to that instance. [`agent`] is the contract with the agent in
//! every pod. [`controller::run`] wires the reconciler into a kube-runtime controller with
//! leader election, metrics and graceful shutdown, and beside it the [`fleet`] controller, which
//! rolls one configuration change over `MySQLCluster`s in waves (`MySQLFleet`), decided by
//! switchyard-plan's fleet decision.
//!
//! Modules import in one direction (`tests/modules.rs` fails on a cycle): the leaves
//! ([`crd`], [`names`], [`agent`], [`credentials`], [`error`], [`leader`], [`metrics`]) import
//! nothing of the crate but each other's leaves, and [`reconcile`] and [`controller`] are
//! imported by nothing.

pub mod agent;
pub mod apply;
pub mod bootstrap;
pub mod build;
pub mod change;
pub mod children;
pub mod context;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod drain;
pub mod error;
pub mod fetch;
pub mod fleet;
pub mod instances;
pub mod leader;
pub mod manual;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod ops;
pub mod reconcile;
pub mod revision;
pub mod rotation;
pub mod runtime;
pub mod schema;
pub mod status;
pub mod storage;
pub mod validate;

pub use context::{Context, OpsFactory};
pub use crd::{MySQLCluster, MySQLClusterSpec, MySQLClusterStatus, MySQLFleet, SchemaChange};
pub use error::Error;
pub use fleet::reconcile_fleet;
pub use reconcile::reconcile;
pub use runtime::KubeRuntime;
pub use schema::reconcile_schema_change;
