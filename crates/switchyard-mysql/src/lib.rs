//! The switchyard topology client: observes and changes MySQL and MariaDB servers over SQL.
//!
//! Everything here talks to one server at a time through an [`Instance`] handle built from
//! an address, a name and the operator account's [`Credentials`]. The server's product and
//! version are detected from the server itself (`SELECT VERSION()`, `@@version_comment`) on
//! every new connection, and each statement is chosen for that flavor:
//!
//! - **MySQL 8.4 and 9.x** with the `REPLICA`/`SOURCE` syntax (`SHOW REPLICA STATUS`,
//!   `CHANGE REPLICATION SOURCE TO`, which need 8.0.23 or later; older MySQL is refused with
//!   [`Error::UnsupportedVersion`]);
//! - **MariaDB 10.5 and later** with `SHOW SLAVE STATUS`, `CHANGE MASTER TO ...
//!   MASTER_USE_GTID=slave_pos` and `MASTER_GTID_WAIT`; Galera clusters on MariaDB.
//!
//! Only **MySQL 9.7 and MariaDB 10.5, 10.11 and 11.8** (and Galera 4 on 10.11) run on the
//! project's test machines, so those are the versions the integration tests prove. MySQL 8.4
//! uses the same statements as 9.7 and MariaDB 11.4 those of 11.8, but no test here has run them.
//!
//! # What it does
//! - [`Instance::observe`] reads an [`Observation`]: version, ids, read-only state, GTID state,
//!   replication threads and errors, lag, semi-sync, Galera, the longest open transaction,
//!   metadata-lock waits and uptime.
//! - Replication: [`Instance::configure_replica`], [`Instance::promote`], [`Instance::repoint`],
//!   [`Instance::demote_to_replica`], [`Instance::stop_replication`],
//!   [`Instance::start_replication`].
//! - Switchover: [`switchover()`] fences the old primary against every client however
//!   privileged, waits until the candidate has executed everything the old primary committed,
//!   promotes it and repoints the others, reporting each [`SwitchoverStep`] to a [`StepSink`]
//!   so a caller can record, resume or undo it. The steps are also public one by one
//!   ([`Instance::fence`], [`Instance::unfence`], [`Instance::wait_caught_up`], ...). See the
//!   [`switchover`](mod@switchover) module for the fence used on each flavor.
//! - Failover, on a replica: [`Instance::detach_by`] stops its receiver,
//!   [`Instance::wait_received_applied_by`] waits until its applier executed what the receiver
//!   received, [`Instance::set_semi_sync_source_by`] makes a (new) primary wait for
//!   semi-synchronous acknowledgements; the observation reports what a replica received
//!   ([`Observation::received`]) and how many acknowledgements a primary waits for
//!   ([`SemiSyncState::ack_replicas`]). See the [`failover`](mod@failover) module.
//! - Administration: [`Instance::set_variables`] (online, reporting variables the server
//!   refuses as read-only), [`Instance::global_values`], [`Instance::accounts`],
//!   [`Instance::run_local_ddl`] and [`Instance::run_member_ddl`] (binary log off for the
//!   session, or Galera's rolling schema upgrade; on a fenced instance behind the DDL lockout
//!   of the [`lockout`](mod@lockout) module, undone after a killed engine by
//!   [`Instance::release_ddl_lockout`]), [`Instance::set_type_conversions`] and
//!   [`Instance::clean_shutdown`].
//!
//! # Bounded, typed failures
//! Every operation is bounded by a timeout ([`Timeouts`]) and fails with an [`Error`] naming the
//! instance, the purpose of the statement and what the server said. Every operation a
//! switchover uses also has a variant bounded by a caller's deadline ([`Instance::fence_by`],
//! [`Instance::unfence_by`], [`Instance::make_read_only_by`], [`Instance::binlog_position_by`],
//! [`Instance::wait_caught_up_by`], [`Instance::promote_by`], which names the
//! [`PromoteStage`] a failed promotion reached, [`Instance::repoint_by`],
//! [`Instance::demote_to_replica_by`], [`Instance::observe_by`],
//! [`Instance::kill_client_connections_by`], [`Instance::wait_no_long_transaction_by`]); no
//! statement is sent once its deadline has passed. A server that is down, one
//! that accepts the TCP connection but never answers (paused with `SIGSTOP`), wrong credentials,
//! an unreachable host and a replica that does not catch up each give a distinct variant.
//! [`Error::category`] is a bounded label for metrics.
//!
//! # Secrets and SQL text
//! Passwords are held in [`Secret`], whose `Debug` and `Display` print `***`; connections are
//! built from `sqlx` connect options, never from URLs, and `sqlx`'s statement logging is turned
//! off because replication statements carry the replication password. Values are bound as
//! parameters wherever the server accepts a parameter; where it does not (`CHANGE REPLICATION
//! SOURCE TO`, `CHANGE MASTER TO`, `KILL`), the values are validated first and then quoted as
//! described in the [`sql`] module.

mod admin;
mod error;
pub mod failover;
mod fence;
mod instance;
pub mod lockout;
mod observe;
mod replication;
pub mod sql;
pub mod switchover;

pub use admin::{
    AccountInfo, LocalDdlMethod, SetVariablesReport, TypeConversions, VariableRefusal,
};
pub use error::{Error, ServerError};
pub use fence::{FenceMechanism, FenceReport};
pub use instance::{Credentials, Instance, InstanceAddr, Secret, Timeouts, TlsMode};
pub use observe::{
    GaleraState, GtidState, IoThreadState, Observation, ReplicaStatus, SemiSyncState,
    TransactionInfo,
};
pub use replication::{PromoteFailure, PromoteStage, ReplicationCredentials, SourceAddr};
pub use switchover::{
    OldPrimaryRole, StepSink, SwitchoverOutcome, SwitchoverPolicy, SwitchoverStep, switchover,
};
