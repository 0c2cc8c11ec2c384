//! From an image reference to the root file system a container runs in.
//!
//! - **Database images** (`mariadb:<version>`, `mysql:<version>`, any registry or
//!   namespace in front): the testbed's unpacked Debian suite root of that major.minor
//!   (`switchyard_testbed::binaries`), whose `usr`, `lib*` and `etc` hold what the official
//!   image holds at the same paths (`/usr/sbin/mariadbd`, `/usr/bin/mariadb`, ...). The
//!   official images' entrypoint scripts are not there: a container of a database image must
//!   name its command.
//! - **The operator's image** (the name given to [`Images::operator`], or any image whose
//!   repository is `switchyard`): the root [`operator_rootfs`] makes from the workspace's
//!   `switchyard` binary.
//! - Anything else a test registers with [`Images::insert`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use switchyard_testbed::{Flavor, ServerKind};

use crate::error::{Error, Result};
use crate::host;

/// A root file system and the image's own configuration (what `ENTRYPOINT`, `CMD` and `ENV`
/// would say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRoot {
    /// The root folder (read-only: each container gets a writable layer over it).
    pub dir: PathBuf,
    /// The image's entrypoint (empty: none).
    pub entrypoint: Vec<String>,
    /// The image's default arguments.
    pub cmd: Vec<String>,
    /// The image's environment.
    pub env: Vec<(String, String)>,
}

/// The `PATH` of every image (the official images' and Debian's).
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ImageRoot {
    /// An image of `dir` with no entrypoint and the standard `PATH`.
    pub fn plain(dir: impl Into<PathBuf>) -> ImageRoot {
        ImageRoot {
            dir: dir.into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec![("PATH".into(), IMAGE_PATH.into())],
        }
    }
}

/// How the kubelet maps image references to roots.
#[derive(Debug, Default)]
pub struct Images {
    operator: Option<(String, PathBuf)>,
    registered: BTreeMap<String, ImageRoot>,
    resolved: Mutex<BTreeMap<String, ImageRoot>>,
}

impl Images {
    /// Database images from the testbed, nothing else.
    pub fn new() -> Images {
        Images::default()
    }

    /// The operator's image is `name`, built from the `switchyard` binary at `binary` (see
    /// [`operator_rootfs`]). Images whose repository is `switchyard` map to it too.
    pub fn operator(mut self, name: impl Into<String>, binary: impl Into<PathBuf>) -> Images {
        self.operator = Some((name.into(), binary.into()));
        self
    }

    /// Image `name` runs in `root`.
    pub fn insert(mut self, name: impl Into<String>, root: ImageRoot) -> Images {
        self.registered.insert(name.into(), root);
        self
    }

    /// The root for `image`, building or fetching it the first time (blocking: a database
    /// image may need the testbed to fetch its server). `work` is where built roots go.
    pub(crate) fn resolve(&self, image: &str, work: &Path) -> Result<ImageRoot> {
        if let Some(found) = self.registered.get(image) {
            return Ok(found.clone());
        }
        let mut cache = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = cache.get(image) {
            return Ok(found.clone());
        }
        let reference = Reference::parse(image);
        let root = match &self.operator {
            Some((name, binary)) if name == image || reference.repository == "switchyard" => {
                let dir = operator_rootfs(binary, &work.join("images").join("switchyard"))?;
                ImageRoot {
                    entrypoint: vec!["/usr/local/bin/switchyard".into()],
                    cmd: vec!["operator".into()],
                    ..ImageRoot::plain(dir)
                }
            }
            _ => database_root(image, &reference)?,
        };
        cache.insert(image.to_owned(), root.clone());
        Ok(root)
    }
}

/// The parts of an image reference the kubelet reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The repository's last path component (`mariadb` of `docker.io/library/mariadb`).
    pub(crate) repository: String,
    /// The tag, if any.
    pub(crate) tag: Option<String>,
}

impl Reference {
    pub(crate) fn parse(image: &str) -> Reference {
        let without_digest = image.split('@').next().unwrap_or(image);
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match without_digest[last_slash..].split_once(':') {
            Some((name, tag)) => (name, Some(tag.to_owned())),
            None => (&without_digest[last_slash..], None),
        };
        Reference {
            repository: name.to_owned(),
            tag,
        }
    }
}

/// The testbed kind of a database image, from its repository and its tag's major.minor.
pub(crate) fn database_kind(image: &str, reference: &Reference) -> Result<ServerKind> {
    let flavor = match reference.repository.as_str() {
        "mariadb" => Flavor::Mariadb,
        "mysql" | "mysql-server" | "community-server" => Flavor::Mysql,
        other => {
            return Err(Error::Image {
                image: image.to_owned(),
                reason: format!(
                    "no root for repository `{other}` (the simulated kubelet runs mariadb and \
                     mysql images from the testbed, the operator's image, and images a test \
                     registers)"
                ),
            });
        }
    };
    let tag = reference.tag.as_deref().unwrap_or("latest");
    let numbers: Vec<&str> = tag
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("")
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    let [major, minor, ..] = numbers.as_slice() else {
        return Err(Error::Image {
            image: image.to_owned(),
            reason: format!("tag `{tag}` names no major.minor version"),
        });
    };
    let series = format!("{major}.{minor}");
    ServerKind::from_series(flavor, &series).ok_or_else(|| Error::Image {
        image: image.to_owned(),
        reason: format!("the testbed has no {flavor} {series}"),
    })
}

fn database_root(image: &str, reference: &Reference) -> Result<ImageRoot> {
    let kind = database_kind(image, reference)?;
    let bins = switchyard_testbed::binaries(kind).map_err(|e| Error::Image {
        image: image.to_owned(),
        reason: format!("fetching {kind} failed: {e}"),
    })?;
    Ok(ImageRoot::plain(bins.root()))
}

/// Builds the operator image's root file system under `dest` from the `switchyard` binary at
/// `binary`: the binary at `/usr/local/bin/switchyard`, its dynamic loader and the shared
/// libraries the host's `ldd` resolves for it at the paths `ldd` names, and minimal
/// `/etc/passwd`, `/etc/group` and `/tmp`. `cargo xtask image` assembles the real image from
/// Debian packages; when its unpacked root can be produced from the workspace, this function
/// is the one place that switches to it.
pub fn operator_rootfs(binary: &Path, dest: &Path) -> Result<PathBuf> {
    host::remove_dir(dest)?;
    let bin_dir = dest.join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).map_err(Error::io("create", &bin_dir))?;
    let target = bin_dir.join("switchyard");
    if std::fs::hard_link(binary, &target).is_err() {
        std::fs::copy(binary, &target).map_err(Error::io("copy the binary to", &target))?;
    }
    let binary_text = binary.display().to_string();
    let ldd = host::run("ldd", &[&binary_text])?;
    for line in ldd.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let inside = dest.join(path.trim_start_matches('/'));
        if let Some(parent) = inside.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
        }
        std::fs::copy(path, &inside).map_err(Error::io("copy a library to", &inside))?;
    }
    let etc = dest.join("etc");
    std::fs::create_dir_all(&etc).map_err(Error::io("create", &etc))?;
    for (name, text) in [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(Error::io("write", &path))?;
    }
    let tmp = dest.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(Error::io("create", &tmp))?;
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("docker.io/library/mariadb:10.11.14");
        assert_eq!(r.repository, "mariadb");
        assert_eq!(r.tag.as_deref(), Some("10.11.14"));
        let r = Reference::parse("localhost:5000/ops/switchyard");
        assert_eq!(r.repository, "switchyard");
        assert_eq!(r.tag, None);
        let r = Reference::parse("mysql:9.7@sha256:abc");
        assert_eq!(r.repository, "mysql");
        assert_eq!(r.tag.as_deref(), Some("9.7"));
    }

    #[test]
    fn database_images_map_by_major_minor() {
        let kind = |i: &str| database_kind(i, &Reference::parse(i));
        assert_eq!(kind("mariadb:10.11.14").unwrap(), ServerKind::Mariadb1011);
        assert_eq!(kind("mariadb:10.11.99").unwrap(), ServerKind::Mariadb1011);
        assert_eq!(kind("mariadb:11.8-noble").unwrap(), ServerKind::Mariadb118);
        assert_eq!(
            kind("quay.io/x/mariadb:10.5").unwrap(),
            ServerKind::Mariadb105
        );
        assert_eq!(kind("mysql:9.7.0").unwrap(), ServerKind::Mysql97);
        let err = kind("mariadb:latest").unwrap_err().to_string();
        assert!(err.contains("names no major.minor"), "{err}");
        let err = kind("mariadb:10.6.1").unwrap_err().to_string();
        assert!(err.contains("no MariaDB 10.6"), "{err}");
        let err = kind("postgres:16").unwrap_err().to_string();
        assert!(err.contains("`postgres`"), "{err}");
    }
}
