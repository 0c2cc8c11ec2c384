//! Server configuration changes for switchyard: which variables change online, which need a
//! rolling restart, which are refused, and the revision the engine rolls out.
//!
//! # The pipeline
//! 1. **Read** each instance's variable metadata from the live server ([`ConfigServer::metadata`]):
//!    MariaDB's `information_schema.SYSTEM_VARIABLES` (read-only flag, type, range, block size,
//!    allowed values, whether an option sets it) and MySQL's `performance_schema.variables_metadata`
//!    (scope, type, range) joined with `global_variables`. MySQL publishes no read-only flag, so
//!    whether a variable can change at run time is asked of the server with a probe that cannot
//!    change anything (see [`server`](mod@server)).
//! 2. **Classify and plan** ([`plan_change`]): every changed variable is checked against every
//!    instance's metadata before anything changes. Names are normalised ([`normalize_name`]);
//!    variables switchyard owns are refused ([`operator_owned`]); an unknown variable, a
//!    session-only one, a value of the wrong type, out of range or not among the allowed values
//!    is refused with one error naming the variable, the instance and the rule. When every
//!    change is [`Classification::Dynamic`], the engine's [`Target`](switchyard_plan::Target)
//!    carries an online change (replicas first, the primary last, no restart); otherwise it is a
//!    rolling restart. A version change together with a configuration change is one revision,
//!    checked against the *target* version ([`removed`] table, and the target's own metadata
//!    when a server of that version can be read) and always restarts.
//! 3. **Apply** on one instance at a time ([`ConfigServer::apply_online`]); an instance that
//!    refuses has its own partial change undone, and [`ChangePlan::rollback`] gives the target
//!    that takes the instances already changed back to the previous values: a new forward
//!    revision, applied online.
//! 4. **Restart** from one source of truth: the revision's configuration rendered by
//!    [`render_my_cnf`]. switchyard never uses MySQL's `SET PERSIST`: online changes are
//!    `SET GLOBAL`, and a restarted instance keeps them because the revision's my.cnf has them
//!    (see [`render`](mod@render) for why).
//! 5. **Upgrade pre-flight** ([`preflight_upgrade`]): an upgrade whose configuration names an
//!    option the target version removed, or whose accounts use an authentication plugin the
//!    target removed (MySQL 9.0 and `mysql_native_password`), is refused before any instance
//!    restarts.

mod classify;
mod error;
mod metadata;
mod name;
mod owned;
mod preflight;
pub mod removed;
pub mod render;
pub mod server;

pub use classify::{
    ChangePlan, ChangeRequest, Classification, VariableVerdict, classify, plan_change,
};
pub use error::ConfigError;
pub use metadata::{Mutability, Scope, ServerMetadata, ValueType, VariableInfo};
pub use name::{normalize_config, normalize_name};
pub use owned::operator_owned;
pub use preflight::{Account, UpgradeFinding, UpgradeRefusal, preflight_upgrade};
pub use render::{my_cnf_lines, render_my_cnf};
pub use server::{AppliedValue, ApplyReport, ConfigServer};
