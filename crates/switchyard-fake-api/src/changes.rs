//! The change log behind watches: every kind someone listed or watched is tracked, and after
//! each write its objects are compared with the last snapshot, so that every change the store
//! made (the write itself, a cascade of owner references, a finalizer's deletion) becomes an
//! event with the object's resourceVersion, in increasing order.
//!
//! kube-fake-client versions objects with one counter across kinds but has no watch and gives
//! a deletion no version of its own; a deletion is versioned here by updating a hidden object
//! (the PriorityClass [`TICK_NAME`]) so the counter moves past it, as the API server's etcd
//! revision does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

/// The name of the PriorityClass whose updates version deletions.
pub(crate) const TICK_NAME: &str = "switchyard-fake-api-resource-version";

/// How many changes are kept for watches resuming from an older version (older ones get
/// `410 Gone`, and the client lists again).
const KEEP: usize = 20_000;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One change of one object.
#[derive(Debug)]
pub(crate) struct Change {
    /// The kind's collection (`/api/v1/pods`).
    pub collection: String,
    /// The object's namespace (empty for a cluster-scoped one).
    pub namespace: String,
    /// The version of the change.
    pub rv: u64,
    /// What happened.
    pub kind: ChangeType,
    /// The object after the change (before it, for a deletion, with the deletion's version).
    pub object: Value,
    /// The object before a modification (for selectors it stopped or started matching).
    pub old: Option<Value>,
}

/// A tracked kind: its objects when last compared, and from which version its changes are
/// in the log.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    /// Changes of this kind after this version are all in the log.
    pub since: u64,
    /// (namespace, name) -> (resourceVersion, object).
    pub objects: HashMap<(String, String), (u64, Value)>,
}

/// The tracked kinds and the change log.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub kinds: HashMap<String, Tracked>,
    pub log: VecDeque<Arc<Change>>,
    /// The highest version in the log (or seen in a tracked kind).
    pub head: u64,
    /// Changes up to this version were dropped from the log.
    pub dropped_below: u64,
    /// Whether the tick object exists.
    pub ticked: bool,
}

impl State {
    /// Appends `change`, dropping the oldest beyond [`KEEP`].
    pub(crate) fn push(&mut self, change: Arc<Change>) {
        self.head = self.head.max(change.rv);
        self.log.push_back(change);
        while self.log.len() > KEEP {
            if let Some(old) = self.log.pop_front() {
                self.dropped_below = old.rv;
            }
        }
    }

    /// Whether a watch of `collection` from version `from` would miss changes the log no
    /// longer has (or never had).
    pub(crate) fn too_old(&self, collection: &str, from: u64) -> bool {
        from < self.dropped_below || self.kinds.get(collection).is_none_or(|k| from < k.since)
    }
}

/// An object's key and version; `None` for what is not an object, and for the tick.
pub(crate) fn identity(object: &Value) -> Option<((String, String), u64)> {
    let meta = object.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_owned();
    if name == TICK_NAME {
        return None;
    }
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let rv = meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    Some(((namespace, name), rv))
}

/// The objects of a list response, keyed.
pub(crate) fn snapshot(items: &[Value]) -> HashMap<(String, String), (u64, Value)> {
    items
        .iter()
        .filter_map(|o| identity(o).map(|(key, rv)| (key, (rv, o.clone()))))
        .collect()
}

/// The additions and modifications from `before` to `after` (ordered by version), and the
/// deleted objects (unversioned yet).
pub(crate) fn diff(
    collection: &str,
    before: &HashMap<(String, String), (u64, Value)>,
    after: &HashMap<(String, String), (u64, Value)>,
) -> (Vec<Change>, Vec<Value>) {
    let mut changes = Vec::new();
    for (key, (rv, object)) in after {
        let (kind, old) = match before.get(key) {
            None => (ChangeType::Added, None),
            Some((old_rv, old)) if old_rv != rv => (ChangeType::Modified, Some(old.clone())),
            Some(_) => continue,
        };
        changes.push(Change {
            collection: collection.to_owned(),
            namespace: key.0.clone(),
            rv: *rv,
            kind,
            object: object.clone(),
            old,
        });
    }
    changes.sort_by_key(|c| c.rv);
    let deleted = before
        .iter()
        .filter(|(key, _)| !after.contains_key(*key))
        .map(|(_, (_, object))| object.clone())
        .collect();
    (changes, deleted)
}

/// What a watcher asked for.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub collection: String,
    pub namespace: Option<String>,
    pub labels: Option<String>,
    /// `metadata.name=` and `metadata.namespace=` of a field selector.
    pub fields: Vec<(String, String)>,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        let meta = object.get("metadata");
        let field = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        if self
            .fields
            .iter()
            .any(|(k, v)| field(k.trim_start_matches("metadata.")) != v.as_str())
        {
            return false;
        }
        let Some(selector) = &self.labels else {
            return true;
        };
        let labels: BTreeMap<String, String> = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        kube_fake_client::label_selector::matches_label_selector(&labels, selector).unwrap_or(false)
    }

    /// The event a watcher with this filter gets for `change`, if any: a modification that
    /// makes an object match (or stop matching) the selector is an addition (a deletion), as
    /// the API server sends it.
    pub(crate) fn event(&self, change: &Change) -> Option<(&'static str, Value)> {
        if change.collection != self.collection
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
        {
            return None;
        }
        let now = self.matches(&change.object);
        match change.kind {
            ChangeType::Added => now.then_some("ADDED"),
            ChangeType::Deleted => now.then_some("DELETED"),
            ChangeType::Modified => {
                let before = change.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
        .map(|t| (t, change.object.clone()))
    }

    /// Whether a current object is one this watcher sees.
    pub(crate) fn sees(&self, namespace: &str, object: &Value) -> bool {
        self.namespace.as_ref().is_none_or(|ns| ns == namespace) && self.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rv: u64, role: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": "db", "resourceVersion": rv.to_string(),
            "labels": {"role": role}}})
    }

    #[test]
    fn a_diff_finds_additions_modifications_in_version_order_and_deletions() {
        let before = snapshot(&[pod("a", 1, "x"), pod("b", 2, "x"), pod("c", 3, "x")]);
        let after = snapshot(&[pod("a", 1, "x"), pod("b", 7, "y"), pod("d", 5, "x")]);
        let (changes, deleted) = diff("/api/v1/pods", &before, &after);
        let seen: Vec<_> = changes
            .iter()
            .map(|c| (c.kind, c.rv, identity(&c.object).unwrap().0.1))
            .collect();
        assert_eq!(
            seen,
            [
                (ChangeType::Added, 5, "d".to_owned()),
                (ChangeType::Modified, 7, "b".to_owned())
            ]
        );
        assert_eq!(deleted.len(), 1);
        assert_eq!(identity(&deleted[0]).unwrap().0.1, "c");
    }

    #[test]
    fn a_selector_turns_modifications_into_additions_and_deletions() {
        let filter = Filter {
            collection: "/api/v1/pods".into(),
            namespace: Some("db".into()),
            labels: Some("role=x".into()),
            fields: Vec::new(),
        };
        let change = |old: Option<Value>, new: Value| Change {
            collection: "/api/v1/pods".into(),
            namespace: "db".into(),
            rv: 9,
            kind: if old.is_some() {
                ChangeType::Modified
            } else {
                ChangeType::Added
            },
            object: new,
            old,
        };
        let kind = |c: &Change| filter.event(c).map(|(t, _)| t);
        assert_eq!(kind(&change(None, pod("a", 9, "x"))), Some("ADDED"));
        assert_eq!(kind(&change(None, pod("a", 9, "y"))), None);
        assert_eq!(
            kind(&change(Some(pod("a", 1, "x")), pod("a", 9, "x"))),
            Some("MODIFIED")
        );
        assert_eq!(
            kind(&change(Some(pod("a", 1, "y")), pod("a", 9, "x"))),
            Some("ADDED")
        );
        assert_eq!(
            kind(&change(Some(pod("a", 1, "x")), pod("a", 9, "y"))),
            Some("DELETED")
        );
        let mut elsewhere = change(None, pod("a", 9, "x"));
        elsewhere.namespace = "other".into();
        assert_eq!(kind(&elsewhere), None);
    }
}
