//! switchyard's benchmarks: commands that run real servers under load and print a table.
//!
//! They are run by `cargo xtask bench <what>` in release mode (debug builds of the TLS and SQL
//! client stack are several times slower at connecting, which would be measured as
//! unavailability) and recorded in `docs/benchmarks.md`. The test suite holds no timing
//! assertions; these are the place for performance targets.
//!
//! - [`switchover`]: write unavailability of a switchover under load, against restarting the
//!   primary in place.
//! - [`schema`]: a schema change on a million-row table under load: a plain `ALTER`,
//!   pt-online-schema-change, and switchyard's rolling change.
//! - [`rollout`]: a whole rolling change by the engine over the local runtime, against the
//!   naive StatefulSet order: the engine's overhead per step and write unavailability.
//! - [`provision`]: provisioning a replica of a filled donor by the agent's copy (clone,
//!   mariadb-backup), against replaying the binary log; the agents' memory.
//! - [`failover`]: automatic failover under load (kill -9, freeze and partition of the
//!   primary): write unavailability, lost writes, and what semi-synchronous replication costs
//!   in latency.
//! - [`fleet`]: a fleet rollout over several clusters under load, 1, 2 and 4 clusters at
//!   once: wall time, the fleet's overhead, write gaps and lost writes.
//! - [`operator`]: the operator's memory, the release binary against the fake API over HTTP
//!   with the simulated kubelet running its pods on real servers: idle and during a rollout.
//! - [`events`]: when switchyard-mysql made an instance writable, from its tracing events.
//! - [`stats`]: percentiles of measured durations.
//! - [`report`]: markdown tables, the machine, the date and the load average.

pub mod events;
pub mod failover;
pub mod fleet;
pub mod operator;
pub mod provision;
pub mod report;
pub mod rollout;
pub mod schema;
pub mod stats;
pub mod switchover;
