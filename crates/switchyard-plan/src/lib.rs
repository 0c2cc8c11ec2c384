//! Pure planning for rolling changes to MySQL and MariaDB clusters.
//!
//! This crate performs no IO. It knows which server versions exist and which
//! transitions between them the vendors support ([`versions`]), how GTID
//! positions compare ([`gtid`]), what a cluster looks like ([`topology`]),
//! what the engine has durably recorded ([`record`]), and from all of that
//! decides the next safe step ([`decide()`]). The [`engine`] runs that
//! decision in a loop over a [`engine::ClusterRuntime`] that callers implement
//! (Kubernetes, local processes, or their own).

pub mod gtid;
pub mod versions;
