//! The numbered revision history of a cluster (the ControllerRevision idea).
//!
//! Every applied combination of server version and configuration is a
//! revision: a number plus a content hash. Asking for content the latest
//! revision already has reuses it; anything else, including going back to an
//! earlier configuration, is a new forward revision.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::topology::{Revision, Timestamp};
use crate::versions::{Flavor, Version};

/// One revision and its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEntry {
    /// The revision (number and content hash).
    pub revision: Revision,
    /// The server version.
    pub version: Version,
    /// The server variables, rendered into my.cnf.
    pub config: BTreeMap<String, String>,
    /// When the revision was created.
    pub created: Timestamp,
}

/// One difference between two revisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// The server version changed.
    Version {
        /// Before.
        from: Version,
        /// After.
        to: Version,
    },
    /// A variable was set that was not set before.
    Added {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
    /// A variable is no longer set.
    Removed {
        /// The variable.
        name: String,
        /// Its value before.
        value: String,
    },
    /// A variable's value changed.
    Changed {
        /// The variable.
        name: String,
        /// Before.
        from: String,
        /// After.
        to: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Version { from, to } => write!(f, "version {from} -> {to}"),
            Change::Added { name, value } => write!(f, "+{name}={value}"),
            Change::Removed { name, value } => write!(f, "-{name} (was {value})"),
            Change::Changed { name, from, to } => write!(f, "{name}: {from} -> {to}"),
        }
    }
}

/// The differences from `before` to `after`, version first, then variables by name.
pub fn diff(before: &RevisionEntry, after: &RevisionEntry) -> Vec<Change> {
    let mut changes = Vec::new();
    if before.version != after.version {
        changes.push(Change::Version {
            from: before.version,
            to: after.version,
        });
    }
    for (name, value) in &after.config {
        match before.config.get(name) {
            None => changes.push(Change::Added {
                name: name.clone(),
                value: value.clone(),
            }),
            Some(old) if old != value => changes.push(Change::Changed {
                name: name.clone(),
                from: old.clone(),
                to: value.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, value) in &before.config {
        if !after.config.contains_key(name) {
            changes.push(Change::Removed {
                name: name.clone(),
                value: value.clone(),
            });
        }
    }
    changes
}

/// A cluster's revisions, oldest first, numbered from 1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The flavor every revision is for.
    pub flavor: Option<Flavor>,
    /// The revisions kept, oldest first.
    pub entries: Vec<RevisionEntry>,
}

impl History {
    /// An empty history for `flavor`.
    pub fn new(flavor: Flavor) -> Self {
        History {
            flavor: Some(flavor),
            entries: Vec::new(),
        }
    }

    /// The newest revision.
    pub fn latest(&self) -> Option<&RevisionEntry> {
        self.entries.last()
    }

    /// The revision with `number`, if it is still kept.
    pub fn get(&self, number: u64) -> Option<&RevisionEntry> {
        self.entries.iter().find(|e| e.revision.number == number)
    }

    /// The revision whose content hash is `hash`, newest first.
    pub fn by_hash(&self, hash: &str) -> Option<&RevisionEntry> {
        self.entries.iter().rev().find(|e| e.revision.hash == hash)
    }

    /// The revision for this content: the latest one if its content is the
    /// same, otherwise a new revision numbered one past the latest. Returns
    /// the entry and whether it was created.
    pub fn ensure(
        &mut self,
        flavor: Flavor,
        version: Version,
        config: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> (&RevisionEntry, bool) {
        self.flavor = Some(flavor);
        let revision = Revision::new(
            self.entries.last().map_or(1, |e| e.revision.number + 1),
            flavor,
            version,
            config,
        );
        let reuse = self
            .entries
            .last()
            .is_some_and(|e| e.revision.hash == revision.hash);
        if !reuse {
            self.entries.push(RevisionEntry {
                revision,
                version,
                config: config.clone(),
                created: now,
            });
        }
        (self.entries.last().expect("an entry exists"), !reuse)
    }

    /// Keeps only the newest `keep` revisions (at least one).
    pub fn trim(&mut self, keep: usize) {
        let keep = keep.max(1);
        if self.entries.len() > keep {
            let excess = self.entries.len() - keep;
            self.entries.drain(..excess);
        }
    }

    /// Each revision with what changed from the one before it (empty for the first kept).
    pub fn with_changes(&self) -> Vec<(&RevisionEntry, Vec<Change>)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    e,
                    if i == 0 {
                        Vec::new()
                    } else {
                        diff(&self.entries[i - 1], e)
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn same_content_reuses_the_latest_and_going_back_is_a_new_revision() {
        let v = Version::new(10, 11, 14);
        let mut h = History::new(Flavor::Mariadb);
        let a = cfg(&[("max_connections", "100")]);
        let b = cfg(&[("max_connections", "200")]);
        assert!(h.ensure(Flavor::Mariadb, v, &a, Timestamp(1)).1);
        assert!(!h.ensure(Flavor::Mariadb, v, &a, Timestamp(2)).1);
        assert_eq!(
            h.ensure(Flavor::Mariadb, v, &b, Timestamp(3))
                .0
                .revision
                .number,
            2
        );
        let (back, created) = h.ensure(Flavor::Mariadb, v, &a, Timestamp(4));
        let back = back.clone();
        assert!(created);
        assert_eq!(back.revision.number, 3);
        assert_eq!(
            back.revision.hash,
            h.get(1).expect("kept").revision.hash,
            "same content, same hash"
        );
    }

    #[test]
    fn changes_list_version_and_variables() {
        let mut h = History::new(Flavor::Mysql);
        h.ensure(
            Flavor::Mysql,
            Version::new(8, 4, 6),
            &cfg(&[("a", "1"), ("b", "2")]),
            Timestamp(1),
        );
        h.ensure(
            Flavor::Mysql,
            Version::new(9, 7, 0),
            &cfg(&[("a", "5"), ("c", "3")]),
            Timestamp(2),
        );
        let changes: Vec<String> = h.with_changes()[1]
            .1
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            changes,
            ["version 8.4.6 -> 9.7.0", "a: 1 -> 5", "+c=3", "-b (was 2)"]
        );
    }

    #[test]
    fn trim_keeps_the_newest() {
        let mut h = History::new(Flavor::Mariadb);
        for n in 0..5 {
            h.ensure(
                Flavor::Mariadb,
                Version::new(10, 11, 14),
                &cfg(&[("n", &n.to_string())]),
                Timestamp(n),
            );
        }
        h.trim(2);
        let numbers: Vec<u64> = h.entries.iter().map(|e| e.revision.number).collect();
        assert_eq!(numbers, [4, 5]);
    }
}
