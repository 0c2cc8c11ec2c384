//! A container's environment and command line as the kubelet computes them: the image's
//! `ENV`, then `envFrom`, then `env` in order (`value` with `$(VAR)` references expanded,
//! `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`), and `command`/`args`
//! over the image's entrypoint and default arguments with `$(VAR)` expanded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

/// The objects a pod's environment may reference, by name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Objects {
    pub(crate) config_maps: BTreeMap<String, ConfigMap>,
    pub(crate) secrets: BTreeMap<String, Secret>,
}

impl Objects {
    fn config_map_key(&self, name: &str, key: &str) -> Option<String> {
        let cm = self.config_maps.get(name)?;
        cm.data
            .as_ref()
            .and_then(|d| d.get(key).cloned())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            })
    }

    fn secret_key(&self, name: &str, key: &str) -> Option<String> {
        let s = self.secrets.get(name)?;
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
    }
}

/// Where the pod runs: its address and the host's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement<'a> {
    pub(crate) pod_ip: &'a str,
    pub(crate) host_ip: &'a str,
    pub(crate) node: &'a str,
}

/// Expands `$(NAME)` from `vars` (`$$` is a literal `$`; an unknown reference stays as is).
pub(crate) fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn field(pod: &Pod, path: &str, at: Placement<'_>) -> Result<String, String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => at.node.to_owned(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => at.pod_ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => at.host_ip.to_owned(),
        _ => {
            if let Some(k) = map_key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = map_key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!("fieldRef `{path}` is not supported"));
            }
        }
    })
}

/// A quantity (`512Mi`, `2`, `500m`, `1G`) as a number of units.
pub(crate) fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        _ => return None,
    };
    Some(n * factor)
}

fn resource(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef `{resource}` is not supported"))?;
    let resources = container.resources.clone().unwrap_or_default();
    let set = match kind {
        "limits" => resources.limits.as_ref(),
        "requests" => resources.requests.as_ref(),
        _ => None,
    }
    .and_then(|m| m.get(name))
    .map(|q| q.0.clone());
    // Unset limits are the node's capacity (this machine's), as the kubelet reports them.
    let value = match set {
        Some(v) => quantity(&v).ok_or_else(|| format!("quantity `{v}` unreadable"))?,
        None => match name {
            "cpu" => std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            "memory" => node_memory(),
            _ => 0.0,
        },
    };
    let divisor = divisor.and_then(quantity).unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

fn node_memory() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib * 1024.0)
}

/// The container's environment, in order (later entries win, as in the kubelet).
pub(crate) fn environment(
    pod: &Pod,
    container: &Container,
    image_env: &[(String, String)],
    objects: &Objects,
    at: Placement<'_>,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = image_env.to_vec();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        vars.retain(|(name, _)| *name != k);
        vars.push((k, v));
    };
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    set(&mut vars, "HOSTNAME".into(), hostname);
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match objects.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match objects.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                Some(field(pod, &f.field_path, at)?)
            } else if let Some(r) = &from.resource_field_ref {
                Some(resource(
                    container,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?)
            } else if let Some(r) = &from.config_map_key_ref {
                match objects.config_map_key(&r.name, &r.key) {
                    Some(v) => Some(v),
                    None if r.optional == Some(true) => None,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {}",
                            r.key, r.name
                        ));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match objects.secret_key(&r.name, &r.key) {
                    Some(v) => Some(v),
                    None if r.optional == Some(true) => None,
                    None => {
                        return Err(format!("couldn't find key {} in Secret {}", r.key, r.name));
                    }
                }
            } else {
                return Err(format!("env `{}`: an unsupported valueFrom", e.name));
            }
        } else {
            Some(expand(e.value.as_deref().unwrap_or(""), &vars))
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(vars)
}

/// The container's command line: `command` (else the image's entrypoint) followed by `args`
/// (else, with no `command`, the image's default arguments), `$(VAR)` expanded.
pub(crate) fn command_line(
    container: &Container,
    entrypoint: &[String],
    default_args: &[String],
    env: &[(String, String)],
) -> Vec<String> {
    let command = container.command.clone().filter(|c| !c.is_empty());
    let args = container.args.clone().filter(|a| !a.is_empty());
    let (command, args) = match (command, args) {
        (Some(c), Some(a)) => (c, a),
        (Some(c), None) => (c, Vec::new()),
        (None, Some(a)) => (entrypoint.to_vec(), a),
        (None, None) => (entrypoint.to_vec(), default_args.to_vec()),
    };
    command
        .iter()
        .chain(args.iter())
        .map(|a| expand(a, env))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn expands_references_as_the_kubelet_does() {
        let v = vars(&[("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &v), "1-two");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$(C) $A", &v), "$(C) $A");
    }

    #[test]
    fn reads_quantities() {
        assert_eq!(quantity("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1x"), None);
    }

    #[test]
    fn resolves_field_references_and_command_lines() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-0", "namespace": "db", "labels": {"a": "b"}},
            "spec": {"containers": [{
                "name": "c",
                "command": ["/bin/x", "$(POD_IP)"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a']"}}},
                    {"name": "ADDR", "value": "$(POD_IP):3306"},
                ],
            }]},
        }))
        .unwrap();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let at = Placement {
            pod_ip: "10.213.0.5",
            host_ip: "10.213.0.1",
            node: "n",
        };
        let env = environment(&pod, c, &[], &Objects::default(), at).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_IP"), Some("10.213.0.5"));
        assert_eq!(get("NS"), Some("db"));
        assert_eq!(get("L"), Some("b"));
        assert_eq!(get("ADDR"), Some("10.213.0.5:3306"));
        assert_eq!(get("HOSTNAME"), Some("shop-0"));
        assert_eq!(
            command_line(c, &["/entry".into()], &[], &env),
            vec!["/bin/x", "10.213.0.5"]
        );
        let mut missing = c.clone();
        missing.env = Some(vec![
            serde_json::from_value(serde_json::json!(
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            ))
            .unwrap(),
        ]);
        let err = environment(&pod, &missing, &[], &Objects::default(), at).unwrap_err();
        assert!(err.contains("couldn't find key k in Secret s"), "{err}");
    }
}
