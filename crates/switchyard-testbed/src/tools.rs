//! Tools that run beside the servers, fetched from Debian's archive the way the servers are
//! ([`crate::fetch`]): Percona Toolkit, for the schema-change benchmark's comparison with
//! `pt-online-schema-change`.
//!
//! Percona Toolkit is a set of Perl programs. The root holds the whole dependency set apt
//! resolves for it in the suite's isolated apt root (perl itself, DBI, DBD::mysql and the
//! client library, the C library), so the programs run on the suite's own perl through the
//! suite's dynamic loader, with `PERL5LIB` naming the root's module folders: the host's perl,
//! if it has one, is never used, and no Perl module's ABI has to match it. Nothing is installed
//! system-wide; package versions are whatever the archive holds at fetch time and are recorded
//! in the root's completion marker.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{Error, Result, tail};
use crate::fetch::{
    MARKER, Suite, Unpacked, cached, download_and_unpack, find_loader, library_path, write_wrappers,
};

/// A tool the testbed can fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ToolKind {
    /// Percona Toolkit (`pt-online-schema-change` and the rest) from bookworm, run on
    /// bookworm's perl.
    PerconaToolkit,
}

impl ToolKind {
    /// The Debian suite it comes from.
    pub fn suite(self) -> Suite {
        match self {
            ToolKind::PerconaToolkit => Suite::Bookworm,
        }
    }

    /// The package that names the tool (its version is the tool's).
    pub fn package(self) -> &'static str {
        match self {
            ToolKind::PerconaToolkit => "percona-toolkit",
        }
    }

    /// The packages asked of apt (it adds their dependencies, perl included).
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            ToolKind::PerconaToolkit => &["percona-toolkit", "libdbd-mysql-perl", "perl"],
        }
    }

    /// A short name for directories and log lines.
    pub fn slug(self) -> &'static str {
        match self {
            ToolKind::PerconaToolkit => "percona-toolkit",
        }
    }
}

impl std::fmt::Display for ToolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ToolKind::PerconaToolkit => "Percona Toolkit",
        })
    }
}

/// An unpacked tool root and how to run its programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    kind: ToolKind,
    root: PathBuf,
    loader: PathBuf,
    version: String,
    packages: Vec<(String, String)>,
}

impl Tool {
    /// The tool.
    pub fn kind(&self) -> ToolKind {
        self.kind
    }

    /// The unpacked root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The version of the tool's package, as Debian numbers it ("3.2.1-1").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The packages apt resolved, with their versions.
    pub fn packages(&self) -> &[(String, String)] {
        &self.packages
    }

    /// `PERL5LIB` for the root's perl: the root's copies of Debian perl's module folders.
    pub fn perl5lib(&self) -> OsString {
        perl5lib(&self.root)
    }

    /// A command running the root's Perl program `name` (from `usr/bin`) on the root's perl,
    /// through the root's loader and libraries, with [`Tool::perl5lib`].
    ///
    /// # Errors
    /// [`Error::Missing`] when the root has no such program.
    pub fn perl_program(&self, name: &str) -> Result<Command> {
        let program = self.root.join("usr/bin").join(name);
        if !program.is_file() {
            return Err(Error::Missing {
                what: "Perl program",
                root: self.root.clone(),
                looked_for: format!("usr/bin/{name}"),
            });
        }
        let mut cmd = perl_command(&self.root, &self.loader);
        cmd.arg(program);
        Ok(cmd)
    }
}

/// The root's perl through its loader, with `PERL5LIB` set.
fn perl_command(root: &Path, loader: &Path) -> Command {
    let mut cmd = Command::new(loader);
    cmd.arg("--library-path")
        .arg(library_path(root))
        .arg(root.join("usr/bin/perl"))
        .env("PERL5LIB", perl5lib(root))
        .env("LC_ALL", "C");
    cmd
}

/// Debian perl's `@INC` folders (`perl -V`), inside `root`: `etc/perl`, the versioned
/// folders under `usr/lib/x86_64-linux-gnu/perl5`, `usr/lib/x86_64-linux-gnu/perl` and
/// `usr/share/perl`, then `usr/share/perl5` and `usr/lib/x86_64-linux-gnu/perl-base`.
fn perl5lib(root: &Path) -> OsString {
    let versioned = |parent: &str| -> Vec<PathBuf> {
        let dir = root.join(parent);
        let mut found: Vec<PathBuf> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_digit())
            })
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        found
    };
    let mut dirs = vec![root.join("etc/perl")];
    dirs.extend(versioned("usr/lib/x86_64-linux-gnu/perl5"));
    dirs.push(root.join("usr/share/perl5"));
    dirs.push(root.join("usr/lib/x86_64-linux-gnu/perl-base"));
    dirs.extend(versioned("usr/lib/x86_64-linux-gnu/perl"));
    dirs.extend(versioned("usr/share/perl"));
    let mut out = OsString::new();
    for (i, d) in dirs.iter().filter(|d| d.is_dir()).enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(d);
    }
    out
}

/// Fetches (or finds in the cache) `kind` and returns where it is.
///
/// Blocks, like [`crate::fetch::binaries`]: call it through `tokio::task::spawn_blocking` in
/// async code. Shares the suite's fetch lock with the servers (one apt root per suite).
///
/// # Errors
/// What fetching a server can fail with; [`Error::Version`] when the unpacked perl cannot load
/// the tool's database driver.
pub fn tool(kind: ToolKind) -> Result<Tool> {
    cached(
        kind.slug(),
        kind.suite(),
        kind.packages(),
        |root| load_marker(kind, root),
        |base, key, root| fetch(kind, base, key, root),
    )
}

fn fetch(kind: ToolKind, base: &Path, key: &str, root: &Path) -> Result<Tool> {
    let suite = kind.suite();
    let started = Instant::now();
    let Unpacked {
        tmp,
        packages,
        mirror,
    } = download_and_unpack(suite, kind.packages(), &kind.to_string(), base, key)?;
    let loader_rel = find_loader(&tmp)?;
    let Some(version) = packages
        .iter()
        .find(|(name, _)| name == kind.package())
        .map(|(_, v)| v.clone())
    else {
        return Err(Error::Missing {
            what: "tool package",
            root: tmp,
            looked_for: kind.package().to_owned(),
        });
    };
    // The root's perl must load the driver (an XS module and the client library) before the
    // root is published.
    let mut probe = perl_command(&tmp, &tmp.join(&loader_rel));
    probe
        .args(["-MDBI", "-MDBD::mysql", "-e", "print qq{$DBI::VERSION}"])
        .stdin(Stdio::null());
    let out = probe.output().map_err(|source| Error::Spawn {
        what: format!("probing the perl of {kind}"),
        program: tmp.join(&loader_rel),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Version {
            program: tmp.join("usr/bin/perl"),
            detail: format!(
                "the unpacked perl cannot load DBI and DBD::mysql ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 6)
            ),
        });
    }
    write_wrappers(&tmp, root, &loader_rel, suite.loader_has_argv0())?;
    let mut marker = format!(
        "version={version}\nloader={}\nsuite={suite}\nmirror={mirror}\n",
        loader_rel.display(),
    );
    for (name, ver) in &packages {
        marker.push_str(&format!("package={name} {ver}\n"));
    }
    let marker_path = tmp.join(MARKER);
    fs::write(&marker_path, marker).map_err(Error::io("write", &marker_path))?;
    if root.exists() {
        fs::remove_dir_all(root).map_err(Error::io("remove stale root", root))?;
    }
    fs::rename(&tmp, root).map_err(Error::io("rename into place", root))?;
    eprintln!(
        "switchyard-testbed: fetched {kind} {version} ({} packages) in {:.1?}",
        packages.len(),
        started.elapsed()
    );
    load_marker(kind, root)?.ok_or_else(|| Error::Missing {
        what: "completion marker",
        root: root.to_path_buf(),
        looked_for: MARKER.to_string(),
    })
}

fn load_marker(kind: ToolKind, root: &Path) -> Result<Option<Tool>> {
    let marker = root.join(MARKER);
    let text = match fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &marker)(e)),
    };
    let mut version = None;
    let mut loader = None;
    let mut packages = Vec::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("version", v)) => version = Some(v.to_owned()),
            Some(("loader", v)) => loader = Some(root.join(v)),
            Some(("package", v)) => {
                if let Some((name, ver)) = v.split_once(' ') {
                    packages.push((name.to_owned(), ver.to_owned()));
                }
            }
            _ => {}
        }
    }
    Ok(match (version, loader) {
        (Some(version), Some(loader)) => Some(Tool {
            kind,
            root: root.to_path_buf(),
            loader,
            version,
            packages,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl5lib_lists_the_roots_module_folders_in_perls_order() {
        let root = std::env::temp_dir().join(format!("switchyard-perl5lib-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in [
            "etc/perl",
            "usr/lib/x86_64-linux-gnu/perl5/5.36",
            "usr/share/perl5",
            "usr/lib/x86_64-linux-gnu/perl-base",
            "usr/lib/x86_64-linux-gnu/perl/5.36",
            "usr/lib/x86_64-linux-gnu/perl/debian-config-data-5.36.0",
            "usr/share/perl/5.36",
        ] {
            fs::create_dir_all(root.join(d)).expect("create");
        }
        let lib = perl5lib(&root).into_string().expect("utf-8");
        let got: Vec<&str> = lib
            .split(':')
            .map(|p| {
                p.strip_prefix(root.to_str().expect("utf-8"))
                    .expect("in root")
            })
            .collect();
        assert_eq!(
            got,
            [
                "/etc/perl",
                "/usr/lib/x86_64-linux-gnu/perl5/5.36",
                "/usr/share/perl5",
                "/usr/lib/x86_64-linux-gnu/perl-base",
                "/usr/lib/x86_64-linux-gnu/perl/5.36",
                "/usr/share/perl/5.36",
            ]
        );
        let _ = fs::remove_dir_all(&root);
    }
}
