//! The pods' volumes on the host: a folder per PersistentVolumeClaim that outlives its pods,
//! a folder per emptyDir that lives as long as its pod, and ConfigMap and Secret volumes
//! written the way the kubelet writes them (an atomic switch of a `..data` link, so a reader
//! sees either the old files or the new ones, never a mix), rewritten when the object changes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Secret};

use crate::error::{Error, Result};
use crate::host;

/// A volume's files: path inside the volume → (content, mode).
pub(crate) type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// The default mode of ConfigMap and Secret files (0644).
const DEFAULT_MODE: i32 = 0o644;

/// The files of a ConfigMap volume: every key (or `items`) of `data` and `binaryData`.
pub(crate) fn config_map_files(
    cm: &ConfigMap,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Files, String> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        all.insert(k.clone(), v.as_bytes().to_vec());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        all.insert(k.clone(), v.0.clone());
    }
    select(all, items, default_mode)
}

/// The files of a Secret volume: every key (or `items`) of `data` and `stringData`.
pub(crate) fn secret_files(
    secret: &Secret,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Files, String> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        all.insert(k.clone(), v.0.clone());
    }
    // The API server folds stringData into data on write; the fake API keeps it apart.
    for (k, v) in secret.string_data.iter().flatten() {
        all.insert(k.clone(), v.as_bytes().to_vec());
    }
    select(all, items, default_mode)
}

fn mode_of(mode: Option<i32>) -> u32 {
    u32::try_from(mode.unwrap_or(DEFAULT_MODE)).unwrap_or(0o644) & 0o7777
}

fn select(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Files, String> {
    let default = mode_of(default_mode);
    match items {
        None => Ok(all.into_iter().map(|(k, v)| (k, (v, default))).collect()),
        Some(items) => {
            let mut files = Files::new();
            for item in items {
                let content = all
                    .get(&item.key)
                    .ok_or_else(|| format!("key `{}` not found", item.key))?;
                check_relative(&item.path)?;
                let mode = item.mode.map_or(default, |m| mode_of(Some(m)));
                files.insert(item.path.clone(), (content.clone(), mode));
            }
            Ok(files)
        }
    }
}

fn check_relative(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(format!("path `{path}` must be relative with no `..`"));
    }
    Ok(())
}

/// A counter making each version folder's name unique.
static VERSION: AtomicU64 = AtomicU64::new(0);

/// Writes `files` into `dir` as the kubelet's atomic writer does: the files go into a new
/// hidden version folder, the link `..data` is switched to it with one rename, and each
/// top-level name is a link through `..data`. Returns whether anything changed.
pub(crate) fn write_atomic(dir: &Path, files: &Files) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let data = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data)
        && same_files(&dir.join(&current), files)
    {
        return Ok(false);
    }
    let version = format!(
        "..{}_{}",
        std::process::id(),
        VERSION.fetch_add(1, Ordering::Relaxed)
    );
    let version_dir = dir.join(&version);
    for (path, (content, mode)) in files {
        let file = version_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
        }
        std::fs::write(&file, content).map_err(Error::io("write", &file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
            .map_err(Error::io("chmod", &file))?;
    }
    std::fs::create_dir_all(&version_dir).map_err(Error::io("create", &version_dir))?;
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).map_err(Error::io("link", &tmp))?;
    std::fs::rename(&tmp, &data).map_err(Error::io("rename", &data))?;
    let top: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_owned))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                .map_err(Error::io("link", &link))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(Error::io("read", dir))? {
        let entry = entry.map_err(Error::io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        host::remove_dir(&dir.join(old))?;
    }
    Ok(true)
}

fn same_files(version_dir: &Path, files: &Files) -> bool {
    let mut found = BTreeMap::new();
    if collect(version_dir, version_dir, &mut found).is_err() {
        return false;
    }
    found.len() == files.len()
        && files.iter().all(|(path, (content, mode))| {
            found
                .get(path)
                .is_some_and(|(c, m)| c == content && m == mode)
        })
}

fn collect(base: &Path, dir: &Path, out: &mut Files) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(base, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(base)
                .map_err(std::io::Error::other)?
                .to_string_lossy()
                .into_owned();
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            out.insert(rel, (std::fs::read(&path)?, mode));
        }
    }
    Ok(())
}

/// The folder of claim `claim` in namespace `ns` under `base` (created).
pub(crate) fn claim_dir(base: &Path, ns: &str, claim: &str) -> Result<PathBuf> {
    let dir = base.join("pvc").join(ns).join(claim);
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn writes_atomically_and_only_on_change() {
        let dir = std::env::temp_dir().join(format!("syk-volume-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(write_atomic(&dir, &files(&[("my.cnf", "a"), ("x.json", "{}")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("my.cnf")).unwrap(), "a");
        assert!(!write_atomic(&dir, &files(&[("my.cnf", "a"), ("x.json", "{}")])).unwrap());
        assert!(write_atomic(&dir, &files(&[("my.cnf", "b")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("my.cnf")).unwrap(), "b");
        assert!(!dir.join("x.json").exists(), "a removed key stays");
        let versions = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(versions, 1, "the old version folder is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn items_select_keys_and_paths() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let items = [KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: Some(0o600),
        }];
        let f = config_map_files(&cm, Some(&items), None).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f["sub/b.txt"], (b"2".to_vec(), 0o600));
        let missing = [KeyToPath {
            key: "c".into(),
            path: "c".into(),
            mode: None,
        }];
        assert!(config_map_files(&cm, Some(&missing), None).is_err());
        let escape = [KeyToPath {
            key: "a".into(),
            path: "../a".into(),
            mode: None,
        }];
        assert!(config_map_files(&cm, Some(&escape), None).is_err());
    }
}
