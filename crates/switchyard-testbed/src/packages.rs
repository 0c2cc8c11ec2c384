//! Any set of Debian packages unpacked into one directory, by the machinery that fetches
//! the servers ([`crate::fetch`]): the suite's isolated apt root, signatures verified
//! against Debian's archive keyring, `dpkg -x` of the dependency-complete set, nothing
//! installed system-wide, the root cached under the testbed directory.
//!
//! For roots that are neither servers nor the testbed's tools: the operator image's base
//! (`switchyard-image`) and programs a test runs (Debian's `skopeo`). A program of the root
//! runs through the root's own dynamic loader ([`PackageRoot::command`]), as the servers do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::fetch::{
    MARKER, Suite, Unpacked, cached, download_and_unpack, find_loader, library_path,
};

/// An unpacked set of Debian packages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRoot {
    root: PathBuf,
    suite: Suite,
    loader: Option<PathBuf>,
    packages: Vec<(String, String)>,
}

impl PackageRoot {
    /// The unpacked root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The suite the packages come from.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Every package apt resolved and `dpkg -x` unpacked, with its version, sorted by name.
    pub fn packages(&self) -> &[(String, String)] {
        &self.packages
    }

    /// The suite's dynamic loader inside the root, when the set holds the C library.
    pub fn loader(&self) -> Option<&Path> {
        self.loader.as_deref()
    }

    /// A command running `program` (a path relative to the root, `usr/bin/skopeo`) through
    /// the root's loader and libraries.
    ///
    /// # Errors
    /// [`Error::Missing`] when the root has no loader or no such program.
    pub fn command(&self, program: &str) -> Result<Command> {
        let loader = self.loader.as_ref().ok_or_else(|| Error::Missing {
            what: "dynamic loader (the package set has no libc6)",
            root: self.root.clone(),
            looked_for: "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".to_owned(),
        })?;
        let path = self.root.join(program);
        if !path.is_file() {
            return Err(Error::Missing {
                what: "program",
                root: self.root.clone(),
                looked_for: program.to_owned(),
            });
        }
        let mut cmd = Command::new(loader);
        cmd.arg("--library-path")
            .arg(library_path(&self.root))
            .arg(path);
        Ok(cmd)
    }
}

/// Fetches (or finds in the cache) `packages` and their dependencies from Debian `suite`,
/// unpacked into one root named after `slug` (and a hash of the suite and packages).
///
/// Blocks, like [`crate::fetch::binaries`]; shares the suite's fetch lock with it.
///
/// # Errors
/// What fetching a server can fail with (no mirror, apt, `dpkg -x`, the file system).
pub fn package_root(slug: &str, suite: Suite, packages: &[&str]) -> Result<PackageRoot> {
    cached(
        slug,
        suite,
        packages,
        |root| load_marker(suite, root),
        |base, key, root| fetch(slug, suite, packages, base, key, root),
    )
}

fn fetch(
    slug: &str,
    suite: Suite,
    wanted: &[&str],
    base: &Path,
    key: &str,
    root: &Path,
) -> Result<PackageRoot> {
    let started = Instant::now();
    let Unpacked {
        tmp,
        packages,
        mirror,
    } = download_and_unpack(suite, wanted, slug, base, key)?;
    let mut marker = format!("suite={suite}\nmirror={mirror}\n");
    if let Ok(loader) = find_loader(&tmp) {
        marker.push_str(&format!("loader={}\n", loader.display()));
    }
    for (name, version) in &packages {
        marker.push_str(&format!("package={name} {version}\n"));
    }
    let marker_path = tmp.join(MARKER);
    if let Some(parent) = marker_path.parent() {
        crate::cache::create_dir_all(parent)?;
    }
    fs::write(&marker_path, marker).map_err(Error::io("write", &marker_path))?;
    if root.exists() {
        fs::remove_dir_all(root).map_err(Error::io("remove stale root", root))?;
    }
    fs::rename(&tmp, root).map_err(Error::io("rename into place", root))?;
    eprintln!(
        "switchyard-testbed: fetched {slug} ({} packages) in {:.1?}",
        packages.len(),
        started.elapsed()
    );
    load_marker(suite, root)?.ok_or_else(|| Error::Missing {
        what: "completion marker",
        root: root.to_path_buf(),
        looked_for: MARKER.to_owned(),
    })
}

fn load_marker(suite: Suite, root: &Path) -> Result<Option<PackageRoot>> {
    let marker = root.join(MARKER);
    let text = match fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &marker)(e)),
    };
    let mut loader = None;
    let mut packages = Vec::new();
    let mut complete = false;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("suite", s)) => complete = s == suite.codename(),
            Some(("loader", l)) => loader = Some(root.join(l)),
            Some(("package", p)) => {
                if let Some((name, version)) = p.split_once(' ') {
                    packages.push((name.to_owned(), version.to_owned()));
                }
            }
            _ => {}
        }
    }
    packages.sort();
    Ok(complete.then(|| PackageRoot {
        root: root.to_path_buf(),
        suite,
        loader,
        packages,
    }))
}
