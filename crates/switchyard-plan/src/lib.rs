//! Pure planning for rolling changes to MySQL and MariaDB clusters.
//!
//! This crate performs no IO. It knows which server versions exist and which
//! transitions between them the vendors support ([`versions`]), how GTID
//! positions compare ([`gtid`]), what a cluster looks like ([`topology`]),
//! what the engine has durably recorded ([`record`]), and from all of that
//! decides the next safe step ([`decide()`]). The [`engine`] runs that
//! decision in a loop over a [`engine::ClusterRuntime`] that callers implement
//! (Kubernetes, local processes, or their own).

pub mod decide;
pub mod engine;
pub mod fleet;
pub mod gtid;
pub mod history;
#[cfg(feature = "mutations")]
pub mod mutation;
#[cfg(not(feature = "mutations"))]
mod mutation;
pub mod record;
pub mod topology;
pub mod versions;

pub use decide::{
    Action, FailoverPolicy, HaltReason, Policy, SchemaTarget, Strategy, Target, WaitReason, decide,
};
pub use engine::{ClusterRuntime, Engine, Finished, RuntimeError, StepOutcome};
pub use record::Record;
pub use topology::{
    GaleraState, Health, Instance, Observed, Revision, Role, Timestamp, WsrepState,
};
pub mod simulate;
