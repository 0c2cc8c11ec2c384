//! Storage: what an edit of `spec.storage` can change on the data claims that exist. Only the
//! requested size can change on a claim, and only upwards where its storage class allows
//! expansion; every other field of a claim's spec is immutable. Pure: the reconcile reads the
//! claims and the classes, patches what may grow, and reports the rest in the
//! `StorageNotApplied` condition while everything else goes on reconciling.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};
use kube::ResourceExt;

/// One field of an existing claim that the spec asks to change and that cannot change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Immutable {
    /// The field, as the spec names it (`spec.storage.storageClassName`).
    pub field: &'static str,
    /// The claims that keep another value, with the value each has.
    pub claims: Vec<(String, String)>,
    /// What the spec asks for.
    pub wanted: String,
}

/// What an edit of `spec.storage` means for the existing claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoragePlan {
    /// Immutable fields the spec changes.
    pub immutable: Vec<Immutable>,
    /// Claims to grow to the spec's size: (claim, its class, the new size).
    pub grow: Vec<(String, Option<String>, String)>,
    /// Claims larger than the spec's size: (claim, its size); a claim never shrinks.
    pub shrink: Vec<(String, String)>,
}

/// The requested size of a claim spec.
pub fn requested(spec: &PersistentVolumeClaimSpec) -> Option<String> {
    spec.resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// A Kubernetes quantity in bytes (`10Gi`, `500M`, `1e3`, `1024`), when it is one.
pub fn bytes(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(value * factor)
}

fn shown<T: serde::Serialize>(value: &Option<T>) -> String {
    match value {
        None => "(none)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// Compares the spec's claim template with the existing claims.
pub fn plan(
    desired: &PersistentVolumeClaimSpec,
    claims: &BTreeMap<u32, PersistentVolumeClaim>,
) -> StoragePlan {
    let mut out = StoragePlan::default();
    let mut immutable = |field: &'static str, wanted: String, claim: String, has: String| match out
        .immutable
        .iter_mut()
        .find(|i| i.field == field)
    {
        Some(i) => i.claims.push((claim, has)),
        None => out.immutable.push(Immutable {
            field,
            claims: vec![(claim, has)],
            wanted,
        }),
    };
    for claim in claims.values() {
        let Some(has) = claim.spec.as_ref() else {
            continue;
        };
        let name = claim.name_any();
        // A field the spec leaves out is the cluster's default: whatever the claim got.
        if desired.storage_class_name.is_some()
            && desired.storage_class_name != has.storage_class_name
        {
            immutable(
                "spec.storage.storageClassName",
                shown(&desired.storage_class_name),
                name.clone(),
                shown(&has.storage_class_name),
            );
        }
        if desired.access_modes.is_some() && desired.access_modes != has.access_modes {
            immutable(
                "spec.storage.accessModes",
                shown(&desired.access_modes),
                name.clone(),
                shown(&has.access_modes),
            );
        }
        if desired.volume_mode.is_some() && desired.volume_mode != has.volume_mode {
            immutable(
                "spec.storage.volumeMode",
                shown(&desired.volume_mode),
                name.clone(),
                shown(&has.volume_mode),
            );
        }
        if desired.selector.is_some() && desired.selector != has.selector {
            immutable(
                "spec.storage.selector",
                shown(&desired.selector),
                name.clone(),
                shown(&has.selector),
            );
        }
        if let (Some(want), Some(got)) = (requested(desired), requested(has)) {
            match (bytes(&want), bytes(&got)) {
                (Some(w), Some(g)) if w > g => {
                    out.grow
                        .push((name.clone(), has.storage_class_name.clone(), want.clone()));
                }
                (Some(w), Some(g)) if w < g => out.shrink.push((name.clone(), got.clone())),
                _ => {}
            }
        }
    }
    out
}

/// The `StorageNotApplied` message for what could not be applied (`refused` lists the claims
/// whose growth the API server or the storage class refused, with why), or `None` when
/// everything was.
pub fn message(
    plan: &StoragePlan,
    desired: &PersistentVolumeClaimSpec,
    refused: &[(String, String)],
) -> Option<(&'static str, String)> {
    let mut parts = Vec::new();
    let mut reason = None;
    for i in &plan.immutable {
        reason.get_or_insert("ImmutableField");
        let claims: Vec<String> = i
            .claims
            .iter()
            .map(|(c, has)| format!("{c} has {has}"))
            .collect();
        parts.push(format!(
            "{} asks for {}, but {}: a claim's {} cannot change. Existing instances keep their \
             claims; instances created from now on get the new value. To move an instance, \
             delete its pod and its claim together, one replica at a time (it is provisioned \
             again from a donor; switch the primary over first), or set the field back",
            i.field,
            i.wanted,
            claims.join(", "),
            i.field.trim_start_matches("spec.storage.")
        ));
    }
    if !plan.shrink.is_empty() {
        reason.get_or_insert("ShrinkNotAllowed");
        let claims: Vec<String> = plan
            .shrink
            .iter()
            .map(|(c, s)| format!("{c} has {s}"))
            .collect();
        parts.push(format!(
            "spec.storage.resources.requests.storage asks for {}, but {}: a claim never \
             shrinks; set the size back to at least the claims' size",
            requested(desired).unwrap_or_default(),
            claims.join(", ")
        ));
    }
    for (claim, why) in refused {
        reason.get_or_insert("ExpansionNotAllowed");
        parts.push(format!(
            "{claim} cannot grow to {}: {why}; use a storage class with allowVolumeExpansion, \
             or set the size back",
            requested(desired).unwrap_or_default()
        ));
    }
    reason.map(|r| (r, parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::VolumeResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec(class: Option<&str>, size: &str) -> PersistentVolumeClaimSpec {
        PersistentVolumeClaimSpec {
            storage_class_name: class.map(str::to_owned),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }
    }

    fn claim(name: &str, s: PersistentVolumeClaimSpec) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some(name.into());
        c.spec = Some(s);
        c
    }

    #[test]
    fn quantities_compare_across_suffixes() {
        assert_eq!(bytes("1Ki"), Some(1024.0));
        assert!(bytes("20Gi").unwrap() > bytes("10Gi").unwrap());
        assert!(bytes("11G").unwrap() > bytes("10Gi").unwrap());
        assert_eq!(bytes("1e3"), Some(1000.0));
        assert_eq!(bytes("ten"), None);
    }

    #[test]
    fn a_class_change_is_named_a_larger_size_grows_a_smaller_one_is_refused() {
        let claims = BTreeMap::from([
            (0, claim("data-shop-0", spec(Some("standard"), "10Gi"))),
            (1, claim("data-shop-1", spec(Some("standard"), "30Gi"))),
        ]);
        let p = plan(&spec(Some("fast"), "20Gi"), &claims);
        assert_eq!(p.immutable.len(), 1);
        assert_eq!(p.immutable[0].field, "spec.storage.storageClassName");
        assert_eq!(p.immutable[0].claims.len(), 2);
        assert_eq!(
            p.grow,
            vec![(
                "data-shop-0".to_owned(),
                Some("standard".to_owned()),
                "20Gi".to_owned()
            )]
        );
        assert_eq!(
            p.shrink,
            vec![("data-shop-1".to_owned(), "30Gi".to_owned())]
        );
        let (reason, text) = message(&p, &spec(Some("fast"), "20Gi"), &[]).unwrap();
        assert_eq!(reason, "ImmutableField");
        assert!(
            text.contains("spec.storage.storageClassName asks for \"fast\""),
            "{text}"
        );
        assert!(text.contains("data-shop-0 has \"standard\""), "{text}");
        assert!(text.contains("never shrinks"), "{text}");
        // The class the claims got by default is not a change.
        let p = plan(&spec(None, "30Gi"), &claims);
        assert_eq!(p.grow.len(), 1);
        let claims = BTreeMap::from([(0, claim("data-shop-0", spec(Some("standard"), "10Gi")))]);
        let p = plan(&spec(None, "10Gi"), &claims);
        assert!(p.immutable.is_empty() && p.grow.is_empty());
        assert_eq!(message(&p, &spec(None, "10Gi"), &[]), None);
    }
}
