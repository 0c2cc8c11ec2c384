//! `switchyard agent`: the process in every database pod that owns its instance, so nothing
//! depends on a database image's entrypoint script (the design of issue 11; anchors: MOCO's
//! moco-init and moco-agent, CloudNativePG's instance manager).
//!
//! - [`install`]: `agent install --to DIR` copies the binary with its own dynamic loader
//!   and libraries into a shared volume, so it runs on the database image's C library.
//! - [`agent::run`]: `agent run` is the server container's process. At every start it reads
//!   the instance ConfigMap and the Secret ([`config`]), renders the server's my.cnf from
//!   the revision the operator assigned ([`cnf`]: every instance starts read-only with
//!   replication stopped), initializes an empty data directory only when told to bootstrap
//!   ([`bootstrap`], binary log off: no GTID), provisions one from a donor when told to
//!   ([`provision`]: MySQL `CLONE INSTANCE`, MariaDB `mariadb-backup` streamed from the
//!   donor's agent, [`donor`]) and otherwise initializes nothing, runs the system-table
//!   upgrade by the vendor's major.minor rule ([`upgrade`]), supervises the server
//!   ([`server`]; a MariaDB primary that starts again waits for acknowledgements,
//!   [`semisync`]) and answers the kubelet's probes and the operator ([`http`], [`status`]).
//!
//! The paths are the pod's by default ([`config::Options`]); tests run the agent on an
//! unpacked image elsewhere, whose programs then run through that image's own loader
//! ([`image`]).

pub mod agent;
pub mod bootstrap;
pub mod cnf;
pub mod config;
pub mod donor;
pub mod error;
pub mod fsutil;
pub mod galera;
pub mod http;
pub mod image;
pub mod install;
pub mod local;
pub mod provision;
pub mod replication;
pub mod semisync;
pub mod server;
pub mod status;
pub mod upgrade;

pub use agent::run;
pub use config::{Assignment, Identity, InstanceConfig, Options};
pub use error::{Error, Result};
pub use install::install;
