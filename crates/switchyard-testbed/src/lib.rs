//! Real MySQL and MariaDB servers for switchyard's tests, `xtask` and the
//! local runtime.
//!
//! The servers come from Debian's package archive ([`fetch`]): MariaDB 10.5
//! (bullseye), 10.11 (bookworm), 11.8 (trixie), MySQL 9.7 (sid) and MariaDB
//! 10.11 with Galera 4, unpacked into a cache under `target/testbed` with
//! no system-wide install, each run through its own suite's dynamic loader.
//! One initialized data directory per version ([`template`]) is copied for
//! every new instance. [`replication`] and [`galera`] start clusters on
//! loopback with generated [`Credentials`]; an [`Instance`] can be shut
//! down cleanly, killed, paused, resumed and started again on another
//! version. Every process is killed when its handle drops (and servers
//! left by a test process that died are killed by the next one, see
//! [`reaper`]). [`router`], [`load`] and [`ledger`] run a counted
//! application load through a proxy that follows role changes. [`tools`]
//! fetches programs that run beside the servers (Percona Toolkit) the same way, and
//! [`packages`] any other set of Debian packages (the operator image's base, skopeo).
//! [`netcut`] cuts TCP traffic to and from servers' ports on loopback with nftables
//! (network partitions), with Debian's `nft` fetched the same way.
//!
//! Environment: `SWITCHYARD_TESTBED_DIR` (cache, default `target/testbed`),
//! `SWITCHYARD_TESTBED_MAX_SERVERS` (servers running at once across
//! processes, default 6), `SWITCHYARD_TESTBED_KEEP` (keep cluster folders
//! for a post-mortem), `SWITCHYARD_DEBIAN_MIRROR` (default: the host's apt
//! sources). x86-64 Linux only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_testbed::Error> {
//! use switchyard_testbed::{ServerKind, replication};
//! let cluster = replication(ServerKind::Mariadb1011, 3).await?;
//! let app = &cluster.credentials().application;
//! let _conn = cluster.primary().connect(app).await?;
//! # Ok(()) }
//! ```

pub mod cache;
pub mod cluster;
pub mod credentials;
pub mod error;
pub mod fetch;
pub mod instance;
pub mod ledger;
pub mod load;
pub mod netcut;
pub mod packages;
pub mod ports;
pub mod reaper;
pub mod router;
pub mod slots;
mod sysuser;
pub mod template;
pub mod tools;
pub mod wait;

pub use cluster::{
    Cluster, Options, Topology, galera, galera_with, replication, replication_as,
    replication_leased, replication_with,
};
pub use credentials::{APP_DATABASE, Account, Credentials};
pub use error::{Error, Result};
pub use fetch::{Binaries, Flavor, ServerKind, Suite, binaries};
pub use instance::Instance;
pub use ports::{PortLease, allocate_port};
pub use wait::{wait_for, wait_until};
