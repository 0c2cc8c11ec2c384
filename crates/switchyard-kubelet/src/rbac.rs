//! RBAC from evidence: a tower layer that records every request a `kube::Client` sends, the
//! authorization attributes the API server derives from each (verb, API group, resource,
//! subresource, namespace, name), and a checker of those attributes against the Roles,
//! ClusterRoles and bindings of a manifest such as `deploy/rbac.yaml`.
//!
//! The API server's rules, as `k8s.io/apiserver` applies them:
//! - the verb comes from the method: `GET`/`HEAD` is `get` on a named object, `list` on a
//!   collection, `watch` with `?watch=true`; `POST` is `create`, `PUT` `update`, `PATCH`
//!   `patch`, `DELETE` `delete` (`deletecollection` on a collection);
//! - a **server-side apply** (`PATCH` with `application/apply-patch+yaml`) of an object that
//!   does not exist creates it, and is authorized as `create` as well: a recorded apply
//!   needs both `patch` and `create` (not on a subresource, which apply never creates);
//! - **exec, attach and port-forward over WebSocket** are `GET` requests: authorized as `get`,
//!   and from Kubernetes 1.35 as `create` too, so they need both (`POST`, SPDY, is `create`);
//! - a rule matches a verb, group and resource (`resource/subresource` for a subresource,
//!   `*`, or `*/subresource`); `resourceNames` restricts it to named requests; a Role's rules
//!   apply in its namespace through a RoleBinding there, a ClusterRole's everywhere through a
//!   ClusterRoleBinding or in one namespace through a RoleBinding;
//! - discovery (`/api`, `/apis`, `/version`, ...) is open to every authenticated user by the
//!   default `system:discovery` binding.
//!
//! Aggregated ClusterRoles and impersonation are not modelled.

use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use kube::Client;
use serde::Deserialize as _;

use crate::error::{Error, Result};
use crate::pod::lock;

/// What the authorizer checks for one verb of a request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`
    /// (for a non-resource request, the lower-cased method).
    pub verb: String,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource (empty for a non-resource request).
    pub resource: String,
    /// The subresource (`status`, `exec`, ...), or empty.
    pub subresource: String,
    /// The namespace, for a namespaced request.
    pub namespace: Option<String>,
    /// The object's name, for a named request.
    pub name: Option<String>,
    /// The path, for a non-resource request (`/version`).
    pub path: Option<String>,
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            return write!(f, "{} {path}", self.verb);
        }
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}")?,
            None => write!(f, " (cluster scope)")?,
        }
        if let Some(name) = &self.name {
            write!(f, " named {name}")?;
        }
        Ok(())
    }
}

/// One request as sent, and what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The HTTP method.
    pub method: String,
    /// The path and query.
    pub uri: String,
    /// The attributes the API server authorizes (all must be allowed).
    pub needs: Vec<Attributes>,
}

/// The authorization attributes of a request, by the API server's rules (see the module
/// documentation).
pub fn attributes(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Vec<Attributes> {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => {
            return vec![Attributes {
                verb: method.as_str().to_ascii_lowercase(),
                group: String::new(),
                resource: String::new(),
                subresource: String::new(),
                namespace: None,
                name: None,
                path: Some(path.to_owned()),
            }];
        }
    };
    if rest.is_empty() {
        return vec![Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: None,
            name: None,
            path: Some(path.to_owned()),
        }];
    }
    // `namespaces/NS/RESOURCE/...` is namespaced; `namespaces/NAME[/SUB]` is the namespace.
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some((*ns).to_owned()), tail),
        other => (None, other),
    };
    let resource = rest.first().copied().unwrap_or("").to_owned();
    let name = rest.get(1).map(|s| (*s).to_owned());
    let subresource = rest.get(2).copied().unwrap_or("").to_owned();
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch");
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let apply = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"));
    let connect = matches!(subresource.as_str(), "exec" | "attach" | "portforward");
    let verbs: Vec<&str> = match method.as_str() {
        "GET" | "HEAD" if connect && upgrade => vec!["get", "create"],
        "GET" | "HEAD" if watch => vec!["watch"],
        "GET" | "HEAD" if name.is_some() => vec!["get"],
        "GET" | "HEAD" => vec!["list"],
        "POST" => vec!["create"],
        "PUT" => vec!["update"],
        "PATCH" if apply && subresource.is_empty() => vec!["patch", "create"],
        "PATCH" => vec!["patch"],
        "DELETE" if name.is_some() => vec!["delete"],
        "DELETE" => vec!["deletecollection"],
        other => vec![other],
    };
    verbs
        .into_iter()
        .map(|verb| Attributes {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.clone(),
            subresource: subresource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            path: None,
        })
        .collect()
}

/// The requests recorded so far, shared by the layer's services.
#[derive(Clone, Debug, Default)]
pub struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl Recorder {
    /// Every request recorded, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.0).clone()
    }

    fn push<B>(&self, req: &http::Request<B>) {
        let recorded = Recorded {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            needs: attributes(req.method(), req.uri(), req.headers()),
        };
        lock(&self.0).push(recorded);
    }
}

/// A tower layer recording every request that passes (use it in a client's stack, or
/// [`record`] to wrap a client already built).
#[derive(Clone, Debug)]
pub struct RecordLayer(pub Recorder);

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Recording<S>;
    fn layer(&self, inner: S) -> Recording<S> {
        Recording {
            inner,
            recorder: self.0.clone(),
        }
    }
}

/// The service of [`RecordLayer`].
#[derive(Clone, Debug)]
pub struct Recording<S> {
    inner: S,
    recorder: Recorder,
}

impl<S, B> tower::Service<http::Request<B>> for Recording<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.recorder.push(&req);
        self.inner.call(req)
    }
}

/// A client as a tower service (through [`Client::send`]), so a built client can be put under
/// a layer.
#[derive(Clone)]
pub struct ClientService(Client);

impl fmt::Debug for ClientService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientService")
    }
}

type Reply = http::Response<kube::client::Body>;

impl tower::Service<http::Request<kube::client::Body>> for ClientService {
    type Response = Reply;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move { client.send(req).await })
    }
}

/// `client` with every request it sends recorded: the client to give the operator, and the
/// recorder.
pub fn record(client: Client) -> (Client, Recorder) {
    use tower::Layer as _;
    let recorder = Recorder::default();
    let namespace = client.default_namespace().to_owned();
    let service = RecordLayer(recorder.clone()).layer(ClientService(client));
    (Client::new(service, namespace), recorder)
}

/// A service account, as RBAC subjects name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// The Roles, ClusterRoles and bindings of a manifest.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    bindings: Vec<RoleBinding>,
    cluster_bindings: Vec<ClusterRoleBinding>,
}

/// A request attribute no rule allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The request.
    pub request: Recorded,
    /// The attribute denied.
    pub attributes: Attributes,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (needed by {} {})",
            self.attributes, self.request.method, self.request.uri
        )
    }
}

impl Rbac {
    /// Reads every RBAC object of a multi-document manifest (other kinds are skipped).
    pub fn parse(text: &str, file: &str) -> Result<Rbac> {
        let bad = |reason: String| Error::Manifest {
            file: file.to_owned(),
            reason,
        };
        let mut rbac = Rbac::default();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| bad(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_owned();
            let json = serde_json::to_value(&value).map_err(|e| bad(e.to_string()))?;
            let read = |e: serde_json::Error| bad(format!("a {kind}: {e}"));
            match kind.as_str() {
                "Role" => rbac.roles.push(serde_json::from_value(json).map_err(read)?),
                "ClusterRole" => {
                    let role: ClusterRole = serde_json::from_value(json).map_err(read)?;
                    if role.aggregation_rule.is_some() {
                        return Err(bad(format!(
                            "ClusterRole {} aggregates others, which the checker does not model",
                            role.metadata.name.unwrap_or_default()
                        )));
                    }
                    rbac.cluster_roles.push(role);
                }
                "RoleBinding" => rbac
                    .bindings
                    .push(serde_json::from_value(json).map_err(read)?),
                "ClusterRoleBinding" => rbac
                    .cluster_bindings
                    .push(serde_json::from_value(json).map_err(read)?),
                _ => {}
            }
        }
        Ok(rbac)
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Rbac> {
        let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
        Rbac::parse(&text, &path.display().to_string())
    }

    fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    }

    /// The rules that apply to `who` for a request in `namespace` (None: cluster scope).
    fn rules_for(&self, who: &ServiceAccount, namespace: Option<&str>) -> Vec<&PolicyRule> {
        let mut rules = Vec::new();
        for b in &self.cluster_bindings {
            if binds(b.subjects.as_deref(), who)
                && let Some(r) = self.cluster_role(&b.role_ref.name)
            {
                rules.extend(r.rules.iter().flatten());
            }
        }
        let Some(ns) = namespace else {
            return rules;
        };
        for b in &self.bindings {
            if b.metadata.namespace.as_deref() != Some(ns) || !binds(b.subjects.as_deref(), who) {
                continue;
            }
            match b.role_ref.kind.as_str() {
                "ClusterRole" => {
                    if let Some(r) = self.cluster_role(&b.role_ref.name) {
                        rules.extend(r.rules.iter().flatten());
                    }
                }
                _ => {
                    if let Some(r) = self.roles.iter().find(|r| {
                        r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
                            && r.metadata.namespace.as_deref() == Some(ns)
                    }) {
                        rules.extend(r.rules.iter().flatten());
                    }
                }
            }
        }
        rules
    }

    /// Whether `who` may do `a`.
    pub fn allows(&self, who: &ServiceAccount, a: &Attributes) -> bool {
        if let Some(path) = &a.path {
            return discovery(path)
                || self
                    .rules_for(who, None)
                    .iter()
                    .any(|r| non_resource_matches(r, &a.verb, path));
        }
        self.rules_for(who, a.namespace.as_deref())
            .iter()
            .any(|r| rule_matches(r, a))
    }

    /// Every attribute of `requests` that `who` may not do.
    pub fn check(&self, who: &ServiceAccount, requests: &[Recorded]) -> Vec<Denied> {
        let mut denied: Vec<Denied> = Vec::new();
        for r in requests {
            for a in &r.needs {
                if !self.allows(who, a) && !denied.iter().any(|d| d.attributes == *a) {
                    denied.push(Denied {
                        request: r.clone(),
                        attributes: a.clone(),
                    });
                }
            }
        }
        denied
    }
}

fn binds(subjects: Option<&[Subject]>, who: &ServiceAccount) -> bool {
    subjects
        .into_iter()
        .flatten()
        .any(|s| match s.kind.as_str() {
            "ServiceAccount" => {
                s.name == who.name && s.namespace.as_deref() == Some(who.namespace.as_str())
            }
            "User" => s.name == format!("system:serviceaccount:{}:{}", who.namespace, who.name),
            "Group" => {
                s.name == "system:serviceaccounts"
                    || s.name == "system:authenticated"
                    || s.name == format!("system:serviceaccounts:{}", who.namespace)
            }
            _ => false,
        })
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

fn rule_matches(r: &PolicyRule, a: &Attributes) -> bool {
    let groups = r.api_groups.clone().unwrap_or_default();
    let resources = r.resources.clone().unwrap_or_default();
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = resources.iter().any(|x| {
        x == "*"
            || *x == combined
            || (!a.subresource.is_empty() && *x == format!("*/{}", a.subresource))
    });
    let names = r.resource_names.clone().unwrap_or_default();
    let name_ok = names.is_empty() || a.name.as_ref().is_some_and(|n| names.contains(n));
    has(&r.verbs, &a.verb) && has(&groups, &a.group) && resource_ok && name_ok
}

fn non_resource_matches(r: &PolicyRule, verb: &str, path: &str) -> bool {
    has(&r.verbs, verb)
        && r.non_resource_urls.iter().flatten().any(|u| {
            u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        })
}

/// Paths the default `system:discovery` and `system:public-info-viewer` bindings open to
/// every authenticated user.
fn discovery(path: &str) -> bool {
    [
        "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Vec<(String, String, Option<String>)> {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        attributes(&method.parse().unwrap(), &uri.parse().unwrap(), &h)
            .into_iter()
            .map(|a| {
                let res = if a.subresource.is_empty() {
                    a.resource
                } else {
                    format!("{}/{}", a.resource, a.subresource)
                };
                (a.verb, format!("{}:{res}", a.group), a.namespace)
            })
            .collect()
    }

    fn ns(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn derives_verbs_as_the_api_server_does() {
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/db/pods/shop-0", &[]),
            vec![("get".into(), ":pods".into(), ns("db"))]
        );
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/db/pods?labelSelector=a%3Db", &[]),
            vec![("list".into(), ":pods".into(), ns("db"))]
        );
        assert_eq!(
            attrs(
                "GET",
                "/apis/switchyard.io/v1alpha1/mysqlclusters?watch=true&resourceVersion=1",
                &[]
            ),
            vec![("watch".into(), "switchyard.io:mysqlclusters".into(), None)]
        );
        assert_eq!(
            attrs(
                "PATCH",
                "/apis/apps/v1/namespaces/db/statefulsets/shop?fieldManager=switchyard",
                &[("content-type", "application/apply-patch+yaml")]
            ),
            vec![
                ("patch".into(), "apps:statefulsets".into(), ns("db")),
                ("create".into(), "apps:statefulsets".into(), ns("db")),
            ],
            "a server-side apply may create"
        );
        assert_eq!(
            attrs(
                "PATCH",
                "/apis/switchyard.io/v1alpha1/namespaces/db/mysqlclusters/shop/status",
                &[("content-type", "application/apply-patch+yaml")]
            ),
            vec![(
                "patch".into(),
                "switchyard.io:mysqlclusters/status".into(),
                ns("db")
            )],
            "an apply of a subresource never creates"
        );
        assert_eq!(
            attrs(
                "PATCH",
                "/api/v1/namespaces/db/pods/shop-0",
                &[("content-type", "application/merge-patch+json")]
            ),
            vec![("patch".into(), ":pods".into(), ns("db"))]
        );
        assert_eq!(
            attrs(
                "GET",
                "/api/v1/namespaces/db/pods/shop-0/exec?command=ls",
                &[("upgrade", "websocket"), ("connection", "Upgrade")]
            ),
            vec![
                ("get".into(), ":pods/exec".into(), ns("db")),
                ("create".into(), ":pods/exec".into(), ns("db")),
            ],
            "WebSocket exec is a GET, authorized as get and (1.35+) create"
        );
        assert_eq!(
            attrs(
                "PUT",
                "/apis/switchyard.io/v1alpha1/namespaces/db/mysqlclusters/shop/status",
                &[]
            ),
            vec![(
                "update".into(),
                "switchyard.io:mysqlclusters/status".into(),
                ns("db")
            )]
        );
        assert_eq!(
            attrs("DELETE", "/api/v1/namespaces/db/pods", &[]),
            vec![("deletecollection".into(), ":pods".into(), ns("db"))]
        );
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/db", &[]),
            vec![("get".into(), ":namespaces".into(), None)]
        );
    }

    const MANIFEST: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: op}
rules:
  - apiGroups: ["apps"]
    resources: ["statefulsets"]
    verbs: ["get", "patch"]
  - apiGroups: [""]
    resources: ["secrets"]
    resourceNames: ["shop-credentials"]
    verbs: ["get"]
  - apiGroups: [""]
    resources: ["*/status"]
    verbs: ["update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: op}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: op}
subjects: [{kind: ServiceAccount, name: op, namespace: ops}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leases, namespace: ops}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "create", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leases, namespace: ops}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}
subjects: [{kind: ServiceAccount, name: op, namespace: ops}]
"#;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Recorded {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Recorded {
            method: method.into(),
            uri: uri.into(),
            needs: attributes(&method.parse().unwrap(), &uri.parse().unwrap(), &h),
        }
    }

    #[test]
    fn checks_requests_against_the_rules() {
        let rbac = Rbac::parse(MANIFEST, "test").unwrap();
        let op = ServiceAccount {
            namespace: "ops".into(),
            name: "op".into(),
        };
        let apply = request(
            "PATCH",
            "/apis/apps/v1/namespaces/db/statefulsets/shop?fieldManager=x",
            &[("content-type", "application/apply-patch+yaml")],
        );
        let denied = rbac.check(&op, std::slice::from_ref(&apply));
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert_eq!(
            denied[0].attributes.verb, "create",
            "apply needs create too"
        );
        let secret =
            |name: &str| request("GET", &format!("/api/v1/namespaces/db/secrets/{name}"), &[]);
        assert!(rbac.check(&op, &[secret("shop-credentials")]).is_empty());
        assert_eq!(
            rbac.check(&op, &[secret("other")]).len(),
            1,
            "resourceNames restrict"
        );
        assert_eq!(
            rbac.check(&op, &[request("GET", "/api/v1/namespaces/db/secrets", &[])])
                .len(),
            1,
            "a named rule never allows a list"
        );
        assert!(
            rbac.check(
                &op,
                &[request("PUT", "/api/v1/namespaces/db/pods/p/status", &[])]
            )
            .is_empty()
        );
        let lease = |ns: &str| {
            request(
                "PUT",
                &format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l"),
                &[],
            )
        };
        assert!(rbac.check(&op, &[lease("ops")]).is_empty());
        assert_eq!(
            rbac.check(&op, &[lease("db")]).len(),
            1,
            "a Role applies in its namespace only"
        );
        let other = ServiceAccount {
            namespace: "db".into(),
            name: "op".into(),
        };
        assert_eq!(
            rbac.check(&other, &[lease("ops")]).len(),
            1,
            "another account"
        );
        assert!(
            rbac.check(&op, &[request("GET", "/version", &[])])
                .is_empty()
        );
    }

    #[test]
    fn aggregated_roles_are_refused() {
        let text = "kind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: a}\naggregationRule: {clusterRoleSelectors: []}\n";
        let err = Rbac::parse(text, "x.yaml").unwrap_err().to_string();
        assert!(err.contains("aggregates"), "{err}");
    }
}
