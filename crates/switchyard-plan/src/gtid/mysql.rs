//! MySQL GTID sets: server UUIDs, optional tags, and intervals of transaction numbers.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{GtidError, excerpt, intervals};

/// A server UUID, the source part of a MySQL GTID (`server_uuid`).
///
/// Parsed case-insensitively from the `8-4-4-4-12` hexadecimal form and
/// displayed in lowercase, as MySQL prints it. Ordered by its bytes, which is
/// the order in which MySQL lists UUIDs in `@@gtid_executed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid([u8; 16]);

impl Uuid {
    /// A UUID from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Uuid {
        Uuid(bytes)
    }

    /// The 16 bytes of this UUID.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses `8-4-4-4-12` hexadecimal digits, in either case, with no
    /// surrounding whitespace.
    ///
    /// # Errors
    /// [`GtidError::InvalidUuid`] naming the text when it is not such a UUID.
    pub fn parse(text: &str) -> Result<Uuid, GtidError> {
        Self::parse_exact(text).ok_or_else(|| GtidError::InvalidUuid {
            uuid: excerpt(text),
            element: excerpt(text),
        })
    }

    fn parse_exact(text: &str) -> Option<Uuid> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (index, &byte) in bytes.iter().enumerate() {
            if matches!(index, 8 | 13 | 18 | 23) {
                if byte != b'-' {
                    return None;
                }
                continue;
            }
            let value = char::from(byte).to_digit(16)?;
            let value = u8::try_from(value).ok()?;
            out[nibbles / 2] |= if nibbles.is_multiple_of(2) {
                value << 4
            } else {
                value
            };
            nibbles += 1;
        }
        Some(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A GTID tag (MySQL 8.3 and later): `[a-z_][a-z0-9_]{0,31}`.
///
/// Tags are case-insensitive; MySQL and this type store them in lowercase.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// The longest tag MySQL accepts, in characters.
    pub const MAX_LEN: usize = 32;

    /// Parses a tag, folding it to lowercase.
    ///
    /// # Errors
    /// [`GtidError::InvalidTag`] naming the text when it is empty, longer
    /// than [`Tag::MAX_LEN`], starts with a digit or holds a character other
    /// than ASCII letters, digits and `_`.
    pub fn parse(text: &str) -> Result<Tag, GtidError> {
        Self::parse_exact(text).ok_or_else(|| GtidError::InvalidTag {
            tag: excerpt(text),
            element: excerpt(text),
        })
    }

    fn parse_exact(text: &str) -> Option<Tag> {
        let mut chars = text.chars();
        let first = chars.next()?;
        let valid = (first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && text.len() <= Self::MAX_LEN;
        valid.then(|| Tag(text.to_ascii_lowercase()))
    }

    /// The tag, in lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transaction source identifier: the server UUID and, for tagged GTIDs,
/// the tag. GTIDs with the same UUID but different tags are independent
/// sequences, exactly as if they came from different servers.
///
/// Ordered by UUID, then untagged before tagged, then by tag: the order of
/// MySQL's canonical text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tsid {
    /// The server UUID.
    pub uuid: Uuid,
    /// The tag, `None` for classic untagged GTIDs.
    pub tag: Option<Tag>,
}

impl Tsid {
    /// The untagged identifier of `uuid`.
    pub const fn untagged(uuid: Uuid) -> Tsid {
        Tsid { uuid, tag: None }
    }
}

impl fmt::Display for Tsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            None => write!(f, "{}", self.uuid),
            Some(tag) => write!(f, "{}:{tag}", self.uuid),
        }
    }
}

/// An inclusive, non-empty range `start..=end` of transaction numbers, with
/// `1 <= start <= end <=` [`Interval::MAX_GNO`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub(super) start: u64,
    pub(super) end: u64,
}

impl Interval {
    /// The largest transaction number: MySQL stores them as signed 64-bit integers.
    pub const MAX_GNO: u64 = i64::MAX as u64;

    /// The interval `start..=end`, or `None` unless `1 <= start <= end <= MAX_GNO`.
    pub const fn new(start: u64, end: u64) -> Option<Interval> {
        if start >= 1 && start <= end && end <= Self::MAX_GNO {
            Some(Interval { start, end })
        } else {
            None
        }
    }

    /// The interval holding only `gno`, or `None` unless `1 <= gno <= MAX_GNO`.
    pub const fn single(gno: u64) -> Option<Interval> {
        Self::new(gno, gno)
    }

    /// The first transaction number in the interval.
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// The last transaction number in the interval (inclusive).
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// How many transaction numbers the interval holds (at least 1).
    #[expect(clippy::len_without_is_empty, reason = "an interval is never empty")]
    pub const fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Whether `gno` lies in the interval.
    pub const fn contains(&self, gno: u64) -> bool {
        self.start <= gno && gno <= self.end
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A MySQL GTID set, as in `@@gtid_executed`, `@@gtid_purged` or
/// `Retrieved_Gtid_Set`.
///
/// # Text form
/// `uuid:interval[:interval...][:tag:interval[:interval...]...]`, entries
/// separated by commas; an interval is `N` or `N-M` with `1 <= N <= M`; the
/// empty string is the empty set. Parsing accepts what servers print and what
/// people type: uppercase UUIDs and tags, whitespace and newlines around
/// every token, the same UUID in several entries, unsorted, overlapping and
/// adjacent intervals. The value is normalised (intervals merged, entries
/// sorted by UUID then tag, untagged first), so two sets holding the same
/// GTIDs are equal.
///
/// [`Display`](fmt::Display) prints MySQL's canonical form on one line:
/// lowercase, each UUID once, untagged intervals first and then each tag with
/// its intervals, as in `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:11-18:domain_1:1-3`.
/// The alternate form (`{:#}`) separates UUIDs with `",\n"`, byte for byte
/// what the server prints.
///
/// # Serde
/// Serialised as its canonical text; deserialising parses (and validates) text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet {
    /// Invariant: every list is non-empty and in the normal form of [`intervals`].
    sets: BTreeMap<Tsid, Vec<Interval>>,
}

impl MysqlGtidSet {
    /// The empty set.
    pub fn empty() -> MysqlGtidSet {
        MysqlGtidSet::default()
    }

    /// Parses a GTID set; see the [type documentation](MysqlGtidSet) for the
    /// accepted text.
    ///
    /// # Errors
    /// A [`GtidError`] naming the offending entry and token: a bad UUID or
    /// tag, an entry without `:` and transaction numbers, a tag without
    /// intervals, an interval that is not a number, is reversed (`5-3`),
    /// contains 0 or exceeds [`Interval::MAX_GNO`], or an empty entry.
    pub fn parse(text: &str) -> Result<MysqlGtidSet, GtidError> {
        let mut set = MysqlGtidSet::empty();
        if text.trim().is_empty() {
            return Ok(set);
        }
        let mut pending: BTreeMap<Tsid, Vec<Interval>> = BTreeMap::new();
        for raw in text.split(',') {
            let element = raw.trim();
            if element.is_empty() {
                return Err(GtidError::EmptyEntry {
                    input: excerpt(text.trim()),
                });
            }
            parse_entry(element, &mut pending)?;
        }
        for (tsid, list) in pending {
            set.sets.insert(tsid, intervals::normalize(list));
        }
        Ok(set)
    }

    /// Whether the set holds no GTID.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Adds every GTID of `tsid` in `interval`.
    pub fn insert(&mut self, tsid: Tsid, interval: Interval) {
        let list = self.sets.entry(tsid).or_default();
        *list = intervals::union(list, &[interval]);
    }

    /// Whether the set holds the GTID `tsid:gno`.
    pub fn contains(&self, tsid: &Tsid, gno: u64) -> bool {
        self.intervals(tsid)
            .iter()
            .any(|interval| interval.contains(gno))
    }

    /// The intervals held for `tsid`, sorted, disjoint and non-adjacent;
    /// empty when the set holds no GTID of `tsid`.
    pub fn intervals(&self, tsid: &Tsid) -> &[Interval] {
        self.sets.get(tsid).map_or(&[], Vec::as_slice)
    }

    /// Every source identifier with its intervals, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&Tsid, &[Interval])> {
        self.sets.iter().map(|(tsid, list)| (tsid, list.as_slice()))
    }

    /// The number of GTIDs in the set (what `GTID_COUNT`-style tooling
    /// reports), saturating at `u64::MAX`.
    pub fn transaction_count(&self) -> u64 {
        self.sets
            .values()
            .fold(0u64, |sum, list| sum.saturating_add(intervals::count(list)))
    }

    /// Whether every GTID of `self` is in `other` (MySQL's `GTID_SUBSET(self, other)`).
    pub fn is_subset(&self, other: &MysqlGtidSet) -> bool {
        self.sets
            .iter()
            .all(|(tsid, list)| intervals::is_subset(list, other.intervals(tsid)))
    }

    /// Whether `self` and `other` have no GTID in common.
    pub fn is_disjoint(&self, other: &MysqlGtidSet) -> bool {
        self.intersection(other).is_empty()
    }

    /// The GTIDs in `self` or in `other`.
    pub fn union(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut sets = self.sets.clone();
        for (tsid, list) in &other.sets {
            let merged = intervals::union(sets.get(tsid).map_or(&[], Vec::as_slice), list);
            sets.insert(tsid.clone(), merged);
        }
        MysqlGtidSet { sets }
    }

    /// The GTIDs in both `self` and `other`.
    pub fn intersection(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        self.combine(other, intervals::intersection)
    }

    /// The GTIDs in `self` that are not in `other` (MySQL's `GTID_SUBTRACT(self, other)`).
    pub fn subtract(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        self.combine(other, intervals::subtract)
    }

    /// Applies `op` to the lists of every source identifier of `self`,
    /// keeping the non-empty results.
    fn combine(
        &self,
        other: &MysqlGtidSet,
        op: fn(&[Interval], &[Interval]) -> Vec<Interval>,
    ) -> MysqlGtidSet {
        let sets = self
            .sets
            .iter()
            .filter_map(|(tsid, list)| {
                let result = op(list, other.intervals(tsid));
                (!result.is_empty()).then(|| (tsid.clone(), result))
            })
            .collect();
        MysqlGtidSet { sets }
    }
}

/// Parses one comma-separated entry, `uuid:...`, adding its intervals to `pending`.
fn parse_entry(
    element: &str,
    pending: &mut BTreeMap<Tsid, Vec<Interval>>,
) -> Result<(), GtidError> {
    let mut tokens = element.split(':').map(str::trim);
    let uuid_text = tokens.next().unwrap_or_default();
    let uuid = Uuid::parse_exact(uuid_text).ok_or_else(|| {
        let starts_with_uuid = uuid_text.get(..36).and_then(Uuid::parse_exact).is_some();
        if starts_with_uuid {
            GtidError::MissingColon {
                element: excerpt(element),
            }
        } else {
            GtidError::InvalidUuid {
                uuid: excerpt(uuid_text),
                element: excerpt(element),
            }
        }
    })?;
    let mut tsid = Tsid::untagged(uuid);
    // Whether the current tag (or the bare UUID) has been given any interval yet.
    let mut has_intervals = false;
    for token in tokens {
        if token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            if !has_intervals && tsid.tag.is_some() {
                return Err(tag_without_intervals(&tsid, element));
            }
            let tag = Tag::parse_exact(token).ok_or_else(|| GtidError::InvalidTag {
                tag: excerpt(token),
                element: excerpt(element),
            })?;
            tsid = Tsid {
                uuid,
                tag: Some(tag),
            };
            has_intervals = false;
        } else {
            let interval = parse_interval(token, element)?;
            pending.entry(tsid.clone()).or_default().push(interval);
            has_intervals = true;
        }
    }
    if has_intervals {
        Ok(())
    } else if tsid.tag.is_some() {
        Err(tag_without_intervals(&tsid, element))
    } else {
        Err(GtidError::MissingColon {
            element: excerpt(element),
        })
    }
}

fn tag_without_intervals(tsid: &Tsid, element: &str) -> GtidError {
    let tag = tsid.tag.as_ref().map(Tag::to_string).unwrap_or_default();
    GtidError::TagWithoutIntervals {
        tag,
        element: excerpt(element),
    }
}

/// Parses `N` or `N-M` (whitespace allowed around the numbers).
fn parse_interval(token: &str, element: &str) -> Result<Interval, GtidError> {
    let invalid = |problem: &'static str| GtidError::InvalidInterval {
        interval: excerpt(token),
        element: excerpt(element),
        problem,
    };
    let (start_text, end_text) = match token.split_once('-') {
        Some((start, end)) => (start.trim(), end.trim()),
        None => (token, token),
    };
    let number = |text: &str| -> Result<u64, GtidError> {
        if text.is_empty() {
            return Err(invalid(if token.is_empty() {
                "is empty"
            } else {
                "is not a transaction number N, a range N-M or a tag"
            }));
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "is not a transaction number N, a range N-M or a tag",
            ));
        }
        match text.parse::<u64>() {
            Ok(value) if value <= Interval::MAX_GNO => Ok(value),
            _ => Err(invalid(
                "exceeds the largest transaction number 9223372036854775807",
            )),
        }
    };
    let (start, end) = (number(start_text)?, number(end_text)?);
    if start == 0 || end == 0 {
        return Err(GtidError::ZeroTransaction {
            interval: excerpt(token),
            element: excerpt(element),
        });
    }
    if start > end {
        return Err(GtidError::ReversedInterval {
            interval: excerpt(token),
            element: excerpt(element),
            start,
            end,
        });
    }
    Ok(Interval { start, end })
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if f.alternate() { ",\n" } else { "," };
        let mut previous: Option<Uuid> = None;
        for (tsid, list) in &self.sets {
            if previous != Some(tsid.uuid) {
                if previous.is_some() {
                    f.write_str(separator)?;
                }
                write!(f, "{}", tsid.uuid)?;
                previous = Some(tsid.uuid);
            }
            if let Some(tag) = &tsid.tag {
                write!(f, ":{tag}")?;
            }
            for interval in list {
                write!(f, ":{interval}")?;
            }
        }
        Ok(())
    }
}

impl FromIterator<(Tsid, Interval)> for MysqlGtidSet {
    /// Builds the set holding every given interval.
    fn from_iter<I: IntoIterator<Item = (Tsid, Interval)>>(iter: I) -> Self {
        let mut pending: BTreeMap<Tsid, Vec<Interval>> = BTreeMap::new();
        for (tsid, interval) in iter {
            pending.entry(tsid).or_default().push(interval);
        }
        let sets = pending
            .into_iter()
            .map(|(tsid, list)| (tsid, intervals::normalize(list)))
            .collect();
        MysqlGtidSet { sets }
    }
}

impl FromStr for MysqlGtidSet {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MysqlGtidSet::parse(text)
    }
}

impl Serialize for MysqlGtidSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MysqlGtidSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        MysqlGtidSet::parse(&text).map_err(serde::de::Error::custom)
    }
}
