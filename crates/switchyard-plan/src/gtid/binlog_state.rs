//! MariaDB binary log states: the last GTID of every `(domain, server_id)` pair, as in
//! `@@gtid_binlog_state`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{GtidError, MariadbGtid, MariadbGtidPos};

/// A MariaDB binary log state, as in `@@gtid_binlog_state`: for each replication domain and
/// each `server_id` that wrote to it, the last GTID.
///
/// A position ([`MariadbGtidPos`]) keeps one GTID per domain, the last; a state also keeps the
/// last GTID of every other server that wrote to the domain, so a transaction a server wrote
/// under its own `server_id` stays visible after it replicated later transactions of another
/// server in the same domain. That is what the errant check needs: a replica that wrote
/// `0-2-5` and then replicated `0-1-6` … `0-1-10` from its source has the position `0-1-10`,
/// the same as the source, but its state `0-1-10,0-2-5` has an entry the source lacks.
///
/// # Meaning
/// Under `gtid_strict_mode` (which switchyard enables on every MariaDB server) sequence numbers
/// increase strictly within a domain on every server, and the binary log of a server with
/// `log_slave_updates` holds every transaction it executed. An entry `(domain, server_id, seq)`
/// then stands for "every transaction `server_id` wrote to `domain` up to `seq`", so:
/// - `a` is a subset of `b` when every `(domain, server_id)` of `a` is in `b` with a `seq` at
///   least as high: a server at state `b` has executed everything in `a`;
/// - the union keeps, per `(domain, server_id)`, the higher `seq`;
/// - `a` minus `b` keeps the entries of `a` whose `(domain, server_id)` `b` lacks or has at a
///   lower `seq`: with `a` a replica's state and `b` its source's, the errant transactions.
///
/// # Caveats
/// - A server whose binary log does not hold everything it executed (binary log off,
///   `log_slave_updates` off, or provisioned from a backup of another server with a fresh
///   binary log) has a state that lacks transactions it did execute: it can look like it has
///   not executed them (a subset test answers `false`, the safe side), never like it has
///   transactions it has not.
/// - An entry with `seq` 0 records no transaction and is dropped.
///
/// # Text form and serde
/// Comma-separated GTIDs, at most one per `(domain, server_id)`, whitespace and newlines
/// allowed around each; the empty string is the empty state. [`Display`](fmt::Display) prints
/// the entries by domain, and within a domain by `seq` (then `server_id`), so the domain's last
/// GTID comes last, as `SET GLOBAL gtid_binlog_state` expects. Serialised as that text;
/// deserialising parses (and validates) text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MariadbBinlogState {
    /// (domain, server_id) → seq. Invariant: no entry has `seq` 0.
    entries: BTreeMap<(u32, u32), u64>,
}

impl MariadbBinlogState {
    /// The empty state.
    pub fn empty() -> MariadbBinlogState {
        MariadbBinlogState::default()
    }

    /// Parses a state; see the [type documentation](MariadbBinlogState) for the accepted text.
    ///
    /// # Errors
    /// [`GtidError::InvalidMariadbGtid`] for an entry that is not `domain-server-seq`
    /// (including an empty entry between commas), and [`GtidError::DuplicateServerInDomain`]
    /// when two entries share a domain and a `server_id`.
    pub fn parse(text: &str) -> Result<MariadbBinlogState, GtidError> {
        let mut state = MariadbBinlogState::empty();
        if text.trim().is_empty() {
            return Ok(state);
        }
        let mut seen: BTreeMap<(u32, u32), MariadbGtid> = BTreeMap::new();
        for raw in text.split(',') {
            let gtid = MariadbGtid::parse(raw.trim())?;
            if let Some(first) = seen.insert((gtid.domain, gtid.server_id), gtid) {
                return Err(GtidError::DuplicateServerInDomain {
                    domain: gtid.domain,
                    server_id: gtid.server_id,
                    first: first.to_string(),
                    second: gtid.to_string(),
                });
            }
            state.insert(gtid);
        }
        Ok(state)
    }

    /// Sets the entry of `(gtid.domain, gtid.server_id)` to `gtid` (removing it when `seq` is
    /// 0) and returns the entry it replaced.
    pub fn insert(&mut self, gtid: MariadbGtid) -> Option<MariadbGtid> {
        let key = (gtid.domain, gtid.server_id);
        let previous = if gtid.seq == 0 {
            self.entries.remove(&key)
        } else {
            self.entries.insert(key, gtid.seq)
        };
        previous.map(|seq| MariadbGtid { seq, ..gtid })
    }

    /// Raises the entry of `(gtid.domain, gtid.server_id)` to `gtid.seq` if it is lower or
    /// missing: records that the server executed `gtid`.
    pub fn record(&mut self, gtid: MariadbGtid) {
        if gtid.seq == 0 {
            return;
        }
        let seq = self
            .entries
            .entry((gtid.domain, gtid.server_id))
            .or_insert(gtid.seq);
        *seq = (*seq).max(gtid.seq);
    }

    /// The entry of `server_id` in `domain`, if the state has one.
    pub fn get(&self, domain: u32, server_id: u32) -> Option<MariadbGtid> {
        self.entries
            .get(&(domain, server_id))
            .map(|&seq| MariadbGtid {
                domain,
                server_id,
                seq,
            })
    }

    /// The entries, sorted by domain, then `server_id`.
    pub fn iter(&self) -> impl Iterator<Item = MariadbGtid> + '_ {
        self.entries
            .iter()
            .map(|(&(domain, server_id), &seq)| MariadbGtid {
                domain,
                server_id,
                seq,
            })
    }

    /// How many `(domain, server_id)` entries the state has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the state has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position this state ends at: per domain, the entry with the highest `seq` (on
    /// equal `seq`, the higher `server_id`), which under `gtid_strict_mode` is the domain's
    /// last GTID, `@@gtid_binlog_pos`.
    pub fn position(&self) -> MariadbGtidPos {
        let mut last: BTreeMap<u32, MariadbGtid> = BTreeMap::new();
        for gtid in self.iter() {
            let keep = last
                .get(&gtid.domain)
                .is_none_or(|mine| (gtid.seq, gtid.server_id) > (mine.seq, mine.server_id));
            if keep {
                last.insert(gtid.domain, gtid);
            }
        }
        last.into_values().collect()
    }

    /// Whether `other` has reached `self` for every `(domain, server_id)` of `self`: each is in
    /// `other` with a `seq` at least as high.
    pub fn is_subset(&self, other: &MariadbBinlogState) -> bool {
        self.entries
            .iter()
            .all(|(key, &seq)| other.entries.get(key).is_some_and(|&theirs| theirs >= seq))
    }

    /// Per `(domain, server_id)`, the higher `seq`.
    pub fn union(&self, other: &MariadbBinlogState) -> MariadbBinlogState {
        let mut union = self.clone();
        for gtid in other.iter() {
            union.record(gtid);
        }
        union
    }

    /// The entries of `self` whose `(domain, server_id)` `other` lacks or has at a lower `seq`:
    /// what `self` has executed that `other` has not. Each kept entry stands for the
    /// transactions of its server after `other`'s `seq` up to its own.
    pub fn subtract(&self, other: &MariadbBinlogState) -> MariadbBinlogState {
        let entries = self
            .entries
            .iter()
            .filter(|(key, seq)| other.entries.get(key).is_none_or(|theirs| theirs < seq))
            .map(|(key, seq)| (*key, *seq))
            .collect();
        MariadbBinlogState { entries }
    }
}

impl fmt::Display for MariadbBinlogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut gtids: Vec<MariadbGtid> = self.iter().collect();
        gtids.sort_by_key(|g| (g.domain, g.seq, g.server_id));
        for (index, gtid) in gtids.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for MariadbBinlogState {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MariadbBinlogState::parse(text)
    }
}

impl FromIterator<MariadbGtid> for MariadbBinlogState {
    /// Builds a state from GTIDs, keeping the highest `seq` of each `(domain, server_id)`.
    fn from_iter<I: IntoIterator<Item = MariadbGtid>>(iter: I) -> Self {
        let mut state = MariadbBinlogState::empty();
        for gtid in iter {
            state.record(gtid);
        }
        state
    }
}

impl From<&MariadbGtidPos> for MariadbBinlogState {
    /// The state of a position's GTIDs: one entry per domain.
    fn from(pos: &MariadbGtidPos) -> Self {
        pos.iter().collect()
    }
}

impl Serialize for MariadbBinlogState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MariadbBinlogState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        MariadbBinlogState::parse(&text).map_err(serde::de::Error::custom)
    }
}
