//! `cargo xtask validate-manifests`: `deploy/` and `crds/` checked offline against the
//! Kubernetes API schemas of the oldest and newest versions we support, with
//! `kubernetes-validate` from PyPI.
//!
//! The tool is installed by the project itself: a virtualenv under
//! `target/kubernetes-validate/` (`python3 -m venv`, then `pip install` of the pinned set in
//! `xtask/kubernetes-validate.txt`), made again when that file changes and shared by
//! concurrent callers under a lock. Nothing is installed system-wide.
//!
//! Validation is strict (a field the schema does not know fails, as the API server's field
//! validation would), and a document whose kind has no schema in the chosen version fails
//! too: `kubernetes-validate` only warns about those, which would let an `apiVersion`
//! removed from Kubernetes pass unchecked. kubernetes-validate 1.37.0 ships the schemas of
//! Kubernetes 1.25 to 1.37.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{project_root, target_dir};

/// The Kubernetes versions every manifest must validate against: the oldest and newest we
/// support.
pub const VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// The pinned requirements, relative to the workspace root.
const REQUIREMENTS: &str = "xtask/kubernetes-validate.txt";

/// The manifests we ship: every `.yaml` under `deploy/` and `crds/`, sorted.
pub fn shipped_manifests() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in ["deploy", "crds"] {
        collect_yaml(&project_root().join(dir), &mut files)?;
    }
    files.sort();
    Ok(files)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// `kubernetes-validate` in the project's virtualenv, installed on first use.
pub fn tool() -> Result<PathBuf> {
    let requirements = project_root().join(REQUIREMENTS);
    let pinned = std::fs::read(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let dir = target_dir().join("kubernetes-validate");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let venv = dir.join("venv");
    let exe = venv.join("bin/kubernetes-validate");
    let stamp = dir.join("installed-from.txt");
    if exe.is_file() && std::fs::read(&stamp).ok().as_deref() == Some(pinned.as_slice()) {
        return Ok(exe);
    }
    eprintln!(
        "==> installing kubernetes-validate into {} from {REQUIREMENTS}",
        venv.display()
    );
    let _ = std::fs::remove_file(&stamp);
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("removing the old {}", venv.display()))?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    check(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        &format!("{python} -m venv (set PYTHON to a Python 3.8+ with the venv module)"),
    )?;
    check(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--require-virtualenv",
                "-r",
            ])
            .arg(&requirements),
        "pip install of the pinned kubernetes-validate",
    )?;
    std::fs::write(&stamp, &pinned).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(exe)
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The result of validating files against one Kubernetes version.
#[derive(Debug)]
pub struct Report {
    /// The Kubernetes version.
    pub version: &'static str,
    /// One line per document that passed.
    pub passed: Vec<String>,
    /// One line per document that failed, or had no schema.
    pub failed: Vec<String>,
}

/// Validates `files` against Kubernetes `version` (strict).
pub fn validate(tool: &Path, version: &'static str, files: &[PathBuf]) -> Result<Report> {
    let out = Command::new(tool)
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .with_context(|| format!("could not start {}", tool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report = Report {
        version,
        passed: Vec::new(),
        failed: Vec::new(),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("INFO") && line.contains(" passed ") {
            report.passed.push(line.to_owned());
        } else {
            // ERROR (did not validate), WARN (no schema for the kind), FATAL (no such
            // version) and anything unexpected.
            report.failed.push(line.to_owned());
        }
    }
    if !out.status.success() && report.failed.is_empty() {
        report
            .failed
            .push(format!("kubernetes-validate exited with {}", out.status));
    }
    Ok(report)
}

/// Runs `cargo xtask validate-manifests`.
pub fn run() -> Result<()> {
    let tool = tool()?;
    let files = shipped_manifests()?;
    let mut failed = 0;
    for version in VERSIONS {
        let report = validate(&tool, version, &files)?;
        eprintln!(
            "Kubernetes {}: {} documents passed, {} failed",
            report.version,
            report.passed.len(),
            report.failed.len()
        );
        for line in &report.failed {
            eprintln!("  {line}");
        }
        failed += report.failed.len();
    }
    if failed > 0 {
        bail!("{failed} manifest documents did not validate");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize as _;
    use std::collections::BTreeSet;

    #[test]
    fn the_shipped_manifests_validate_against_each_version() {
        let tool = tool().unwrap();
        let files = shipped_manifests().unwrap();
        assert!(
            files.iter().any(|f| f.ends_with("deploy/rbac.yaml"))
                && files
                    .iter()
                    .any(|f| f.ends_with("crds/mysqlclusters.switchyard.io.yaml")),
            "{files:?}"
        );
        for version in VERSIONS {
            let report = validate(&tool, version, &files).unwrap();
            assert!(report.failed.is_empty(), "{version}: {:#?}", report.failed);
            // Every file had at least one document checked.
            for file in &files {
                let shown = file.display().to_string();
                assert!(
                    report.passed.iter().any(|l| l.contains(&shown)),
                    "{version}: nothing of {shown} was validated: {:#?}",
                    report.passed
                );
            }
        }
    }

    #[test]
    fn broken_manifests_are_rejected() {
        let tool = tool().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "unknown-field",
                "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  namespce: b\n",
                "namespce",
            ),
            (
                "wrong-type",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  replicas: two\n  \
                 selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    \
                 spec:\n      containers: [{name: c, image: i}]\n",
                "replicas",
            ),
            (
                "missing-verbs",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: a\nrules:\n  \
                 - apiGroups: [\"\"]\n    resources: [pods]\n",
                "verbs",
            ),
            (
                "no-schema",
                "apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: Role\nmetadata:\n  name: a\nrules: []\n",
                "Couldn't find schema",
            ),
        ];
        for (name, yaml, says) in cases {
            let path = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&path, yaml).unwrap();
            for version in VERSIONS {
                let report = validate(&tool, version, std::slice::from_ref(&path)).unwrap();
                assert!(
                    report.failed.iter().any(|l| l.contains(says)),
                    "{name} on {version} was not rejected for {says}: {report:#?}"
                );
                assert!(report.passed.is_empty(), "{name} on {version}: {report:#?}");
            }
        }
    }

    /// Every `(group, resource, verb)` the named kinds' rules grant, with the documents'
    /// metadata, from one manifest file.
    fn grants(file: &str, keep: impl Fn(&str, &str) -> bool) -> BTreeSet<(String, String, String)> {
        let text = std::fs::read_to_string(project_root().join(file)).unwrap();
        let mut out = BTreeSet::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = serde_yaml::Value::deserialize(doc).unwrap();
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            if !keep(kind, name) {
                continue;
            }
            for rule in doc["rules"].as_sequence().into_iter().flatten() {
                let list = |key: &str| -> Vec<String> {
                    rule[key]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect()
                };
                assert!(
                    rule.get("resourceNames").is_none(),
                    "{file}: {kind} {name} names resources: the comparison below assumes none"
                );
                for group in list("apiGroups") {
                    for resource in list("resources") {
                        for verb in list("verbs") {
                            out.insert((group.clone(), resource.clone(), verb));
                        }
                    }
                }
            }
        }
        out
    }

    /// The namespaced install grants, in its namespace, exactly what the cluster-wide install
    /// grants its operator for namespaced resources (its ClusterRoles and its leader-election
    /// Role): nothing more, and nothing the operator's requests need is missing there. Only
    /// cluster-scoped resources (StorageClasses, Nodes) are left out, and nothing else is.
    #[test]
    fn the_namespaced_install_grants_the_cluster_wide_rules_in_one_namespace() {
        let cluster_scoped = [("storage.k8s.io", "storageclasses"), ("", "nodes")];
        let mut wide = grants("deploy/rbac.yaml", |kind, _| {
            kind == "ClusterRole" || kind == "Role"
        });
        let before = wide.len();
        wide.retain(|(g, r, _)| !cluster_scoped.contains(&(g.as_str(), r.as_str())));
        assert!(
            wide.len() < before,
            "deploy/rbac.yaml reads no StorageClasses"
        );
        let namespaced = grants("deploy/namespaced/rbac.yaml", |kind, _| kind == "Role");
        let missing: Vec<_> = wide.difference(&namespaced).collect();
        let extra: Vec<_> = namespaced.difference(&wide).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "deploy/namespaced/rbac.yaml differs from deploy/rbac.yaml: missing {missing:?}, \
             extra {extra:?}"
        );
        assert!(
            grants("deploy/namespaced/rbac.yaml", |kind, _| kind
                == "ClusterRole")
            .is_empty(),
            "the namespaced install has a ClusterRole"
        );
    }

    /// The namespaced operator runs in the namespace of its Role, as the ServiceAccount that
    /// Role is bound to, and watches only that namespace.
    #[test]
    fn the_namespaced_operator_is_bound_to_its_role_and_watches_its_namespace() {
        let docs = |file: &str| -> Vec<serde_yaml::Value> {
            let text = std::fs::read_to_string(project_root().join(file)).unwrap();
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde_yaml::Value::deserialize(d).unwrap())
                .collect()
        };
        let rbac = docs("deploy/namespaced/rbac.yaml");
        let operator = docs("deploy/namespaced/operator.yaml");
        let one = |docs: &[serde_yaml::Value], kind: &str| -> serde_yaml::Value {
            let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
            assert_eq!(found.len(), 1, "one {kind}");
            found[0].clone()
        };
        let role = one(&rbac, "Role");
        let binding = one(&rbac, "RoleBinding");
        let account = one(&rbac, "ServiceAccount");
        let deployment = one(&operator, "Deployment");
        let ns = role["metadata"]["namespace"].as_str().unwrap();
        for (what, doc) in [
            ("RoleBinding", &binding),
            ("ServiceAccount", &account),
            ("Deployment", &deployment),
        ] {
            assert_eq!(doc["metadata"]["namespace"], ns, "{what}");
        }
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        let subjects = binding["subjects"].as_sequence().unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], account["metadata"]["name"]);
        assert_eq!(subjects[0]["namespace"], ns);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let at = args
            .iter()
            .position(|a| *a == "--namespace")
            .expect("the namespaced operator passes --namespace");
        // Its own namespace, from the downward API.
        assert_eq!(args.get(at + 1), Some(&"$(POD_NAMESPACE)"), "{args:?}");
    }
}
