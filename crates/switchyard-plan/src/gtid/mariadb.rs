//! MariaDB GTID positions: one `domain-server-seq` GTID per replication domain.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{GtidError, excerpt};

/// One MariaDB GTID, `domain_id-server_id-seq_no` (for example `0-1-100`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariadbGtid {
    /// The replication domain (`gtid_domain_id`, 32 bits).
    pub domain: u32,
    /// The `server_id` of the server that originally wrote the transaction (32 bits).
    pub server_id: u32,
    /// The sequence number within the domain (64 bits).
    pub seq: u64,
}

impl MariadbGtid {
    /// Parses `domain-server-seq`: three unsigned decimal numbers separated
    /// by `-`, with no surrounding whitespace.
    ///
    /// # Errors
    /// [`GtidError::InvalidMariadbGtid`] naming the text and the problem.
    pub fn parse(text: &str) -> Result<MariadbGtid, GtidError> {
        let invalid = |problem: &'static str| GtidError::InvalidMariadbGtid {
            gtid: excerpt(text),
            problem,
        };
        if text.is_empty() {
            return Err(invalid("is empty (look for a doubled or trailing comma)"));
        }
        let parts: Vec<&str> = text.split('-').collect();
        let [domain, server_id, seq] = parts[..] else {
            return Err(invalid(if parts.len() < 3 {
                "has fewer than three parts"
            } else {
                "has more than three parts"
            }));
        };
        if [domain, server_id, seq]
            .iter()
            .any(|part| part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("has a part that is not an unsigned decimal number"));
        }
        Ok(MariadbGtid {
            domain: domain
                .parse()
                .map_err(|_| invalid("has a domain_id above 4294967295"))?,
            server_id: server_id
                .parse()
                .map_err(|_| invalid("has a server_id above 4294967295"))?,
            seq: seq
                .parse()
                .map_err(|_| invalid("has a seq_no above 18446744073709551615"))?,
        })
    }
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

/// A MariaDB GTID position, as in `@@gtid_current_pos`, `@@gtid_binlog_pos`
/// or `@@gtid_slave_pos`: for each replication domain, the last GTID applied.
///
/// # Meaning
/// A position stands for "every transaction of domain `d` up to sequence
/// number `seq`", for each of its domains, so the set operations compare
/// domains by `seq` alone:
/// - `a` is a subset of `b` when every domain of `a` is in `b` with a `seq`
///   at least as high;
/// - the union keeps, per domain, the entry with the higher `seq`;
/// - `a` minus `b` keeps the entries of `a` whose domain is missing from `b`
///   or whose `seq` is higher than `b`'s. Each kept entry stands for the
///   transactions *after* `b`'s `seq` up to its own; a position cannot
///   represent such a range, so the result only says which domains are
///   ahead, and how far.
///
/// # Caveats
/// - Comparing `seq` per domain is only meaningful under
///   `gtid_strict_mode`, which makes sequence numbers strictly increasing
///   within a domain on every server. switchyard enables it on every MariaDB
///   server it manages.
/// - A position does not represent holes: a server whose position is
///   `0-1-100` may have skipped transactions before 100 (for example with
///   `sql_slave_skip_counter`), and nothing here can tell.
/// - Under strict mode a `(domain, seq)` pair names one transaction, so
///   equal `seq` with different `server_id` means the histories diverged.
///   The set operations cannot express that (see [`MariadbGtidPos::conflicts`]);
///   [`errant`](super::errant) reports it. When the union meets such a
///   conflict it keeps the entry with the higher `server_id`, so that it
///   stays commutative.
/// - An entry with `seq` 0 records no transaction and is dropped.
///
/// # Text form and serde
/// Comma-separated GTIDs, at most one per domain, whitespace and newlines
/// allowed around each; the empty string is the empty position.
/// [`Display`](fmt::Display) prints the entries sorted by domain, separated
/// by `,`, the form MariaDB accepts in `SET GLOBAL gtid_slave_pos`. Serialised
/// as that text; deserialising parses (and validates) text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MariadbGtidPos {
    /// domain → (server_id, seq). Invariant: no entry has `seq` 0.
    domains: BTreeMap<u32, (u32, u64)>,
}

impl MariadbGtidPos {
    /// The empty position.
    pub fn empty() -> MariadbGtidPos {
        MariadbGtidPos::default()
    }

    /// Parses a position; see the [type documentation](MariadbGtidPos) for
    /// the accepted text.
    ///
    /// # Errors
    /// [`GtidError::InvalidMariadbGtid`] for an entry that is not
    /// `domain-server-seq` (including an empty entry between commas), and
    /// [`GtidError::DuplicateDomain`] when two entries share a domain.
    pub fn parse(text: &str) -> Result<MariadbGtidPos, GtidError> {
        let mut pos = MariadbGtidPos::empty();
        if text.trim().is_empty() {
            return Ok(pos);
        }
        let mut seen: BTreeMap<u32, MariadbGtid> = BTreeMap::new();
        for raw in text.split(',') {
            let gtid = MariadbGtid::parse(raw.trim())?;
            if let Some(first) = seen.insert(gtid.domain, gtid) {
                return Err(GtidError::DuplicateDomain {
                    domain: gtid.domain,
                    first: first.to_string(),
                    second: gtid.to_string(),
                });
            }
            pos.insert(gtid);
        }
        Ok(pos)
    }

    /// Sets the entry of `gtid.domain` to `gtid` (removing it when `seq` is
    /// 0) and returns the entry it replaced.
    pub fn insert(&mut self, gtid: MariadbGtid) -> Option<MariadbGtid> {
        let previous = if gtid.seq == 0 {
            self.domains.remove(&gtid.domain)
        } else {
            self.domains.insert(gtid.domain, (gtid.server_id, gtid.seq))
        };
        previous.map(|(server_id, seq)| MariadbGtid {
            domain: gtid.domain,
            server_id,
            seq,
        })
    }

    /// The entry of `domain`, if the position has one.
    pub fn get(&self, domain: u32) -> Option<MariadbGtid> {
        self.domains
            .get(&domain)
            .map(|&(server_id, seq)| MariadbGtid {
                domain,
                server_id,
                seq,
            })
    }

    /// The entries, sorted by domain.
    pub fn iter(&self) -> impl Iterator<Item = MariadbGtid> + '_ {
        self.domains
            .iter()
            .map(|(&domain, &(server_id, seq))| MariadbGtid {
                domain,
                server_id,
                seq,
            })
    }

    /// How many domains the position has an entry for.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether the position has no entry.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether `other` has reached `self` in every domain of `self`: each
    /// domain is present in `other` with a `seq` at least as high.
    pub fn is_subset(&self, other: &MariadbGtidPos) -> bool {
        self.domains.iter().all(|(domain, &(_, seq))| {
            other
                .domains
                .get(domain)
                .is_some_and(|&(_, theirs)| theirs >= seq)
        })
    }

    /// Per domain, the entry with the higher `seq` (on equal `seq`, the
    /// higher `server_id`).
    pub fn union(&self, other: &MariadbGtidPos) -> MariadbGtidPos {
        let mut domains = self.domains.clone();
        for (&domain, &(server_id, seq)) in &other.domains {
            domains
                .entry(domain)
                .and_modify(|mine| {
                    if (seq, server_id) > (mine.1, mine.0) {
                        *mine = (server_id, seq);
                    }
                })
                .or_insert((server_id, seq));
        }
        MariadbGtidPos { domains }
    }

    /// The entries of `self` whose domain `other` lacks or has at a lower `seq`.
    pub fn subtract(&self, other: &MariadbGtidPos) -> MariadbGtidPos {
        self.filter(|domain, _, seq| {
            other
                .domains
                .get(&domain)
                .is_none_or(|&(_, theirs)| theirs < seq)
        })
    }

    /// The entries of `self` that `other` has at the same `seq` but with a
    /// different `server_id`: under `gtid_strict_mode`, proof that the two
    /// servers applied different transactions under the same GTID sequence
    /// number, that is, diverged.
    pub fn conflicts(&self, other: &MariadbGtidPos) -> MariadbGtidPos {
        self.filter(|domain, server_id, seq| {
            other
                .domains
                .get(&domain)
                .is_some_and(|&(theirs_server, theirs_seq)| {
                    theirs_seq == seq && theirs_server != server_id
                })
        })
    }

    fn filter(&self, keep: impl Fn(u32, u32, u64) -> bool) -> MariadbGtidPos {
        let domains = self
            .domains
            .iter()
            .filter(|(domain, (server_id, seq))| keep(**domain, *server_id, *seq))
            .map(|(d, e)| (*d, *e))
            .collect();
        MariadbGtidPos { domains }
    }
}

impl fmt::Display for MariadbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, gtid) in self.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for MariadbGtidPos {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MariadbGtidPos::parse(text)
    }
}

impl FromIterator<MariadbGtid> for MariadbGtidPos {
    /// Builds a position from GTIDs; a later GTID of the same domain replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = MariadbGtid>>(iter: I) -> Self {
        let mut pos = MariadbGtidPos::empty();
        for gtid in iter {
            pos.insert(gtid);
        }
        pos
    }
}

impl Serialize for MariadbGtidPos {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MariadbGtidPos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        MariadbGtidPos::parse(&text).map_err(serde::de::Error::custom)
    }
}
