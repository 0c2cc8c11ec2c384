//! The parts of an API request the fake needs: which collection a path names (group, version,
//! resource, namespace, name, subresource) and the query parameters of lists and watches.

use std::collections::HashMap;

/// A resource path: `/api/v1/namespaces/db/pods/shop-0/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiPath {
    /// `api/v1` or `apis/GROUP/VERSION`.
    pub group_version: String,
    /// The namespace, for a namespaced request.
    pub namespace: Option<String>,
    /// The resource (plural).
    pub resource: String,
    /// The object's name, for a named request.
    pub name: Option<String>,
    /// The subresource (`status`), if any.
    pub subresource: Option<String>,
}

impl ApiPath {
    /// Parses a resource path; `None` for anything else (discovery, `/version`).
    pub(crate) fn parse(path: &str) -> Option<ApiPath> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let split = match parts.first() {
            Some(&"api") => 2,
            Some(&"apis") => 3,
            _ => return None,
        };
        if parts.len() <= split {
            return None;
        }
        let group_version = parts[..split].join("/");
        let rest = &parts[split..];
        let owned = |i: usize| rest.get(i).map(|s| (*s).to_owned());
        if rest[0] == "namespaces" && rest.len() >= 3 {
            return Some(ApiPath {
                group_version,
                namespace: owned(1),
                resource: rest[2].to_owned(),
                name: owned(3),
                subresource: owned(4),
            });
        }
        Some(ApiPath {
            group_version,
            namespace: None,
            resource: rest[0].to_owned(),
            name: owned(1),
            subresource: owned(2),
        })
    }

    /// The kind's collection across namespaces (`/api/v1/pods`): what the change log keys
    /// on.
    pub(crate) fn collection(&self) -> String {
        format!("/{}/{}", self.group_version, self.resource)
    }
}

/// The query parameters, decoded (the last of a repeated key wins).
pub(crate) fn query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether the query asks for a watch (`watch=true`, `watch=1`).
pub(crate) fn is_watch(params: &HashMap<String, String>) -> bool {
    params.get("watch").is_some_and(|w| w == "true" || w == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_collection_namespace_object_and_subresource() {
        let p = ApiPath::parse("/api/v1/namespaces/db/pods/shop-0/status").unwrap();
        assert_eq!(p.collection(), "/api/v1/pods");
        assert_eq!(p.namespace.as_deref(), Some("db"));
        assert_eq!(p.name.as_deref(), Some("shop-0"));
        assert_eq!(p.subresource.as_deref(), Some("status"));

        let p = ApiPath::parse("/apis/switchyard.io/v1alpha1/mysqlclusters").unwrap();
        assert_eq!(p.collection(), "/apis/switchyard.io/v1alpha1/mysqlclusters");
        assert_eq!(p.namespace, None);
        assert_eq!(p.name, None);

        let p = ApiPath::parse("/apis/coordination.k8s.io/v1/namespaces/sys/leases").unwrap();
        assert_eq!(p.collection(), "/apis/coordination.k8s.io/v1/leases");
        assert_eq!(p.namespace.as_deref(), Some("sys"));

        let p = ApiPath::parse("/api/v1/namespaces/db").unwrap();
        assert_eq!(p.resource, "namespaces");
        assert_eq!(p.name.as_deref(), Some("db"));

        assert_eq!(ApiPath::parse("/version"), None);
        assert_eq!(ApiPath::parse("/apis/apps"), None);
    }

    #[test]
    fn queries_are_decoded_and_watches_recognized() {
        let q = query(Some(
            "watch=true&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dswitchyard&resourceVersion=12",
        ));
        assert!(is_watch(&q));
        assert_eq!(
            q["labelSelector"],
            "app.kubernetes.io/managed-by=switchyard"
        );
        assert_eq!(q["resourceVersion"], "12");
        assert!(!is_watch(&query(Some("limit=500"))));
        assert!(!is_watch(&query(None)));
    }
}
