//! GTID positions and set arithmetic for MySQL and MariaDB.
//!
//! The two flavors identify transactions differently:
//! - **MySQL** gives every transaction a GTID `uuid:N` (or, from 8.3,
//!   `uuid:tag:N`) and every server keeps the *set* of GTIDs it has executed
//!   ([`MysqlGtidSet`]), which may have holes. Set arithmetic is exact.
//! - **MariaDB** gives every transaction a GTID `domain-server-seq` and every
//!   server keeps a *position*: the last GTID applied per replication domain
//!   ([`MariadbGtidPos`]). Comparisons are per domain by sequence number,
//!   which is sound only under `gtid_strict_mode`; see that type for the
//!   caveats.
//!
//! [`GtidSet`] is the flavor-tagged value the topology model stores, with
//! the operations the planner needs: [`GtidSet::is_subset`] ("has the
//! candidate executed everything the source has?") and [`errant`] ("what has
//! the replica executed that the source has not?").
//!
//! # MariaDB: the binary log state, not the position, for "what has it executed"
//! A position cannot show an errant transaction that lies *behind* the
//! source's position in a domain: a replica that wrote `0-2-5` under its own
//! `server_id` and then replicated `0-1-6` … `0-1-10` has the position
//! `0-1-10`, the same as its source, and comparing positions finds nothing.
//! The binary log state (`@@gtid_binlog_state`, [`MariadbBinlogState`]) keeps
//! the last GTID of every `(domain, server_id)`, so the replica's `0-2-5`
//! stays visible. So a MariaDB observation stores its executed transactions
//! as a state ([`GtidSet::MariadbState`]: switchyard-mysql reads
//! `@@gtid_binlog_state` and adds the entries of `@@gtid_current_pos`), and
//! [`errant`] and [`GtidSet::is_subset`] on two states are right by
//! construction: errant is "an entry whose `(domain, server_id)` the source
//! lacks or has at a lower `seq`", subset is "every `(domain, server_id)` at
//! a `seq` at least as high", which under `gtid_strict_mode` is "has
//! executed".
//!
//! Positions ([`GtidSet::Mariadb`]) stay where SQL needs one: the fenced
//! primary's `@@gtid_binlog_pos` that a candidate waits for with
//! `MASTER_GTID_WAIT`, `gtid_slave_pos`. A state compared with a position is
//! compared as a position ([`MariadbBinlogState::position`]), so such a
//! comparison is only as strong as a position's: compare two states to find
//! errant transactions.

mod binlog_state;
mod intervals;
mod mariadb;
mod mysql;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::versions::Flavor;

pub use binlog_state::MariadbBinlogState;
pub use mariadb::{MariadbGtid, MariadbGtidPos};
pub use mysql::{Interval, MysqlGtidSet, Tag, Tsid, Uuid};

/// A GTID set of either flavor, as stored in the topology model.
///
/// # Serde
/// Adjacently tagged: `{"flavor": "mysql", "gtid": "<set text>"}`,
/// `{"flavor": "mariadb", "gtid": "<position text>"}` or
/// `{"flavor": "mariadb_state", "gtid": "<state text>"}`, where the text is
/// the canonical form printed by [`Display`](fmt::Display) and is validated
/// when deserialised.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "flavor", content = "gtid", rename_all = "lowercase")]
pub enum GtidSet {
    /// A MySQL GTID set (`@@gtid_executed`).
    Mysql(MysqlGtidSet),
    /// A MariaDB GTID position (`@@gtid_binlog_pos`, `@@gtid_current_pos`): one GTID per
    /// domain, what `MASTER_GTID_WAIT` and `gtid_slave_pos` take.
    Mariadb(MariadbGtidPos),
    /// A MariaDB binary log state (`@@gtid_binlog_state`): one GTID per domain and
    /// `server_id`, what a MariaDB observation's executed transactions are (see the
    /// [module documentation](self)).
    #[serde(rename = "mariadb_state")]
    MariadbState(MariadbBinlogState),
}

impl GtidSet {
    /// Parses what a server of `flavor` prints: a MySQL GTID set
    /// ([`MysqlGtidSet::parse`]) or a MariaDB position
    /// ([`MariadbGtidPos::parse`]). The empty string is the empty set.
    ///
    /// # Errors
    /// A [`GtidError`] naming the offending entry when the text is malformed.
    pub fn parse(flavor: Flavor, text: &str) -> Result<GtidSet, GtidError> {
        match flavor {
            Flavor::Mysql => MysqlGtidSet::parse(text).map(GtidSet::Mysql),
            Flavor::Mariadb => MariadbGtidPos::parse(text).map(GtidSet::Mariadb),
        }
    }

    /// The empty set of `flavor`.
    pub fn empty(flavor: Flavor) -> GtidSet {
        match flavor {
            Flavor::Mysql => GtidSet::Mysql(MysqlGtidSet::empty()),
            Flavor::Mariadb => GtidSet::Mariadb(MariadbGtidPos::empty()),
        }
    }

    /// The flavor of server this set comes from.
    pub const fn flavor(&self) -> Flavor {
        match self {
            GtidSet::Mysql(_) => Flavor::Mysql,
            GtidSet::Mariadb(_) | GtidSet::MariadbState(_) => Flavor::Mariadb,
        }
    }

    /// The MariaDB position of the set: the position itself, or a state's
    /// [`MariadbBinlogState::position`]; `None` for MySQL. What `MASTER_GTID_WAIT` takes.
    pub fn mariadb_position(&self) -> Option<MariadbGtidPos> {
        match self {
            GtidSet::Mysql(_) => None,
            GtidSet::Mariadb(pos) => Some(pos.clone()),
            GtidSet::MariadbState(state) => Some(state.position()),
        }
    }

    /// The flavor's product name for messages: `"MySQL"` or `"MariaDB"`.
    pub const fn flavor_name(&self) -> &'static str {
        self.flavor().product_name()
    }

    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::Mysql(set) => set.is_empty(),
            GtidSet::Mariadb(pos) => pos.is_empty(),
            GtidSet::MariadbState(state) => state.is_empty(),
        }
    }

    /// Whether everything in `self` is in `other`, that is, whether a server
    /// at `other` has executed all of `self`. For MariaDB positions: every
    /// domain of `self` is in `other` with a `seq` at least as high; for two
    /// states: every `(domain, server_id)`; a state and a position are
    /// compared as positions.
    ///
    /// # Errors
    /// [`GtidError::FlavorMismatch`] when the flavors differ.
    pub fn is_subset(&self, other: &GtidSet) -> Result<bool, GtidError> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(a.is_subset(b)),
            (GtidSet::MariadbState(a), GtidSet::MariadbState(b)) => Ok(a.is_subset(b)),
            _ => {
                let (a, b) = self.positions(other)?;
                Ok(a.is_subset(&b))
            }
        }
    }

    /// Everything in `self` or in `other`. For MariaDB positions: per domain,
    /// the entry with the higher `seq`; for two states: per `(domain,
    /// server_id)`; a state and a position give a position.
    ///
    /// # Errors
    /// [`GtidError::FlavorMismatch`] when the flavors differ.
    pub fn union(&self, other: &GtidSet) -> Result<GtidSet, GtidError> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(GtidSet::Mysql(a.union(b))),
            (GtidSet::MariadbState(a), GtidSet::MariadbState(b)) => {
                Ok(GtidSet::MariadbState(a.union(b)))
            }
            _ => {
                let (a, b) = self.positions(other)?;
                Ok(GtidSet::Mariadb(a.union(&b)))
            }
        }
    }

    /// What `self` has that `other` does not. For MariaDB positions: the
    /// entries of `self` whose domain `other` lacks or has at a lower `seq`;
    /// for two states: whose `(domain, server_id)`; a state and a position
    /// give a position.
    ///
    /// # Errors
    /// [`GtidError::FlavorMismatch`] when the flavors differ.
    pub fn subtract(&self, other: &GtidSet) -> Result<GtidSet, GtidError> {
        match (self, other) {
            (GtidSet::Mysql(a), GtidSet::Mysql(b)) => Ok(GtidSet::Mysql(a.subtract(b))),
            (GtidSet::MariadbState(a), GtidSet::MariadbState(b)) => {
                Ok(GtidSet::MariadbState(a.subtract(b)))
            }
            _ => {
                let (a, b) = self.positions(other)?;
                Ok(GtidSet::Mariadb(a.subtract(&b)))
            }
        }
    }

    /// Both operands as MariaDB positions, or the flavor mismatch.
    fn positions(&self, other: &GtidSet) -> Result<(MariadbGtidPos, MariadbGtidPos), GtidError> {
        match (self.mariadb_position(), other.mariadb_position()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(self.mismatch(other)),
        }
    }

    /// The number of transactions in the set: `Some` for MySQL (the number
    /// of GTIDs, saturating at `u64::MAX`); `None` for MariaDB, whose
    /// positions do not say how many transactions they cover (a sequence
    /// number is not a count: sequences may start anywhere, skip numbers, and
    /// be shared by several servers within a domain).
    pub fn transaction_count(&self) -> Option<u64> {
        match self {
            GtidSet::Mysql(set) => Some(set.transaction_count()),
            GtidSet::Mariadb(_) | GtidSet::MariadbState(_) => None,
        }
    }

    fn mismatch(&self, other: &GtidSet) -> GtidError {
        GtidError::FlavorMismatch {
            left: self.flavor_name(),
            right: other.flavor_name(),
        }
    }
}

impl fmt::Display for GtidSet {
    /// The canonical text of the set; `{:#}` passes the alternate flag on
    /// (MySQL then separates UUIDs with `",\n"` as the server does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::Mysql(set) => fmt::Display::fmt(set, f),
            GtidSet::Mariadb(pos) => fmt::Display::fmt(pos, f),
            GtidSet::MariadbState(state) => fmt::Display::fmt(state, f),
        }
    }
}

impl From<MysqlGtidSet> for GtidSet {
    fn from(set: MysqlGtidSet) -> GtidSet {
        GtidSet::Mysql(set)
    }
}

impl From<MariadbGtidPos> for GtidSet {
    fn from(pos: MariadbGtidPos) -> GtidSet {
        GtidSet::Mariadb(pos)
    }
}

impl From<MariadbBinlogState> for GtidSet {
    fn from(state: MariadbBinlogState) -> GtidSet {
        GtidSet::MariadbState(state)
    }
}

/// Errant transactions: what `replica` has executed that `source` has not.
///
/// A non-empty result means the replica cannot simply follow (or replace)
/// the source without losing or duplicating writes.
/// - **MySQL:** `replica − source`, exact.
/// - **MariaDB states** (what a MariaDB observation holds): the replica's
///   entries whose `(domain, server_id)` the source lacks or has at a lower
///   `seq` ([`MariadbBinlogState::subtract`]), exact under
///   `gtid_strict_mode`, including errant transactions that lie behind the
///   source's position in their domain.
/// - **MariaDB positions** (or a state and a position, compared as
///   positions): the replica's entries for domains the source lacks or has
///   at a lower `seq` ([`MariadbGtidPos::subtract`]), plus those the source
///   has at the same `seq` from a different `server_id`
///   ([`MariadbGtidPos::conflicts`]), which under `gtid_strict_mode` means
///   the two servers diverged. Errant transactions *behind* the source's
///   position in a domain cannot be seen in a position: compare states.
///
/// # Errors
/// [`GtidError::FlavorMismatch`] when the flavors differ.
pub fn errant(replica: &GtidSet, source: &GtidSet) -> Result<GtidSet, GtidError> {
    match (replica, source) {
        (GtidSet::Mysql(r), GtidSet::Mysql(s)) => Ok(GtidSet::Mysql(r.subtract(s))),
        (GtidSet::MariadbState(r), GtidSet::MariadbState(s)) => {
            Ok(GtidSet::MariadbState(r.subtract(s)))
        }
        _ => {
            let (r, s) = replica.positions(source)?;
            Ok(GtidSet::Mariadb(r.subtract(&s).union(&r.conflicts(&s))))
        }
    }
}

/// Why GTID text could not be parsed, or two GTID sets could not be combined.
///
/// Messages quote the offending entry and token (shortened when very long)
/// and say what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GtidError {
    /// The UUID of a MySQL GTID set entry is not `8-4-4-4-12` hexadecimal digits.
    #[error(
        "invalid MySQL GTID set entry {element:?}: {uuid:?} is not a server UUID; expected 32 hexadecimal digits grouped 8-4-4-4-12, as in 3e11fa47-71ca-11e1-9e33-c80aa9429562"
    )]
    InvalidUuid {
        /// The text in place of the UUID.
        uuid: String,
        /// The comma-separated entry it appeared in.
        element: String,
    },
    /// A MySQL GTID set entry has a UUID but no `:` and transaction numbers.
    #[error(
        "invalid MySQL GTID set entry {element:?}: expected ':' and transaction numbers after the server UUID, as in 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
    )]
    MissingColon {
        /// The comma-separated entry.
        element: String,
    },
    /// A tag is not `[a-z_][a-z0-9_]{0,31}` (case-insensitive).
    #[error(
        "invalid MySQL GTID set entry {element:?}: {tag:?} is not a valid tag; a tag is 1 to 32 letters, digits or '_' and does not start with a digit"
    )]
    InvalidTag {
        /// The text in place of the tag.
        tag: String,
        /// The comma-separated entry it appeared in.
        element: String,
    },
    /// A tag is not followed by any interval.
    #[error(
        "invalid MySQL GTID set entry {element:?}: tag {tag:?} is not followed by any transaction numbers; write UUID:{tag}:N or UUID:{tag}:N-M"
    )]
    TagWithoutIntervals {
        /// The tag, in lowercase.
        tag: String,
        /// The comma-separated entry it appeared in.
        element: String,
    },
    /// An interval is empty, not made of decimal numbers, or too large.
    #[error("invalid MySQL GTID set entry {element:?}: interval {interval:?} {problem}")]
    InvalidInterval {
        /// The text in place of the interval.
        interval: String,
        /// The comma-separated entry it appeared in.
        element: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An interval `N-M` has `N > M`.
    #[error(
        "invalid MySQL GTID set entry {element:?}: interval {interval:?} is reversed; write it as {end}-{start}"
    )]
    ReversedInterval {
        /// The interval as written.
        interval: String,
        /// The comma-separated entry it appeared in.
        element: String,
        /// The first number written.
        start: u64,
        /// The second number written.
        end: u64,
    },
    /// An interval includes transaction number 0.
    #[error(
        "invalid MySQL GTID set entry {element:?}: interval {interval:?} includes transaction number 0; transaction numbers start at 1"
    )]
    ZeroTransaction {
        /// The interval as written.
        interval: String,
        /// The comma-separated entry it appeared in.
        element: String,
    },
    /// A MySQL GTID set has an empty entry (a doubled or trailing comma).
    #[error(
        "invalid MySQL GTID set {input:?}: an entry between commas is empty; remove the extra comma"
    )]
    EmptyEntry {
        /// The whole set as written.
        input: String,
    },
    /// A MariaDB GTID is not `domain-server-seq`.
    #[error(
        "invalid MariaDB GTID {gtid:?}: it {problem}; expected domain-server-seq, as in 0-1-100"
    )]
    InvalidMariadbGtid {
        /// The GTID as written.
        gtid: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A MariaDB GTID position names the same domain twice.
    #[error(
        "invalid MariaDB GTID position: domain {domain} appears twice ({first} and {second}); a position holds one GTID per domain"
    )]
    DuplicateDomain {
        /// The repeated domain.
        domain: u32,
        /// Its first GTID.
        first: String,
        /// Its second GTID.
        second: String,
    },
    /// A MariaDB binary log state names the same `server_id` twice in one domain.
    #[error(
        "invalid MariaDB GTID binary log state: server_id {server_id} appears twice in domain {domain} ({first} and {second}); a state holds one GTID per domain and server_id"
    )]
    DuplicateServerInDomain {
        /// The domain.
        domain: u32,
        /// The repeated `server_id`.
        server_id: u32,
        /// Its first GTID.
        first: String,
        /// Its second GTID.
        second: String,
    },
    /// A binary operation was given a MySQL set and a MariaDB position.
    #[error(
        "cannot compare or combine a {left} GTID set with a {right} GTID set; both must come from servers of the same flavor"
    )]
    FlavorMismatch {
        /// The flavor of the left operand (`"MySQL"` or `"MariaDB"`).
        left: &'static str,
        /// The flavor of the right operand.
        right: &'static str,
    },
}

impl GtidError {
    /// A bounded label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            GtidError::InvalidUuid { .. }
            | GtidError::MissingColon { .. }
            | GtidError::InvalidTag { .. }
            | GtidError::TagWithoutIntervals { .. }
            | GtidError::InvalidInterval { .. }
            | GtidError::ReversedInterval { .. }
            | GtidError::ZeroTransaction { .. }
            | GtidError::EmptyEntry { .. } => "invalid_mysql_gtid_set",
            GtidError::InvalidMariadbGtid { .. } | GtidError::DuplicateDomain { .. } => {
                "invalid_mariadb_gtid_position"
            }
            GtidError::DuplicateServerInDomain { .. } => "invalid_mariadb_binlog_state",
            GtidError::FlavorMismatch { .. } => "gtid_flavor_mismatch",
        }
    }
}

/// `text`, shortened to at most 80 characters so that an error about a huge
/// `@@gtid_executed` stays readable.
fn excerpt(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests;
