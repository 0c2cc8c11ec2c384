//! The database image the agent runs in: where its programs are, and how to run them.
//!
//! The agent relies only on the paths every official image (and Debian's packages) use:
//! `/usr/sbin/mariadbd` or `/usr/sbin/mysqld`, the MariaDB tools in `/usr/bin`
//! (`mariadb-backup`, `mbstream`, `mariadb-upgrade`), and the SQL scripts a MariaDB data
//! directory is initialized from in `/usr/share/mariadb` (or `/usr/share/mysql`). In a pod the
//! image root is `/` and programs run as they are. Under another root (an unpacked image, as
//! the tests use), every program runs through that root's own dynamic loader with that
//! root's libraries, so the host's C library never mixes with the image's, and the server is
//! told where its `basedir`, messages and plugins are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use switchyard_plan::versions::{Flavor, Version};

use crate::error::{Error, Result};

/// The loader of a root other than `/`, and the library path handed to it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Loader {
    path: PathBuf,
    library_path: OsString,
}

/// The user the server runs as, when the agent runs as root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUser {
    /// Its name (`mysql`, or `root` when the image has no `mysql` user).
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// A database image's files and how to run its programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    root: PathBuf,
    flavor: Flavor,
    loader: Option<Loader>,
}

const LOADERS: [&str; 4] = [
    "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "lib64/ld-linux-x86-64.so.2",
    "usr/lib64/ld-linux-x86-64.so.2",
];
const LIBRARY_DIRS: [&str; 6] = [
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
    "usr/lib64",
    "lib64",
    "usr/lib",
    "lib",
];

impl Image {
    /// The image under `root`, of `flavor` (detected from the server binary when `None`).
    ///
    /// # Errors
    /// [`Error::Image`] when the server binary (or, under a root other than `/`, its
    /// dynamic loader) is not there.
    pub fn open(root: &Path, flavor: Option<Flavor>) -> Result<Image> {
        let flavor = match flavor {
            Some(f) => f,
            None if root.join("usr/sbin/mariadbd").exists() => Flavor::Mariadb,
            None if root.join("usr/sbin/mysqld").exists() => Flavor::Mysql,
            None => {
                return Err(Error::Image {
                    what: "server binary",
                    root: root.to_path_buf(),
                    looked_for: "usr/sbin/mariadbd, usr/sbin/mysqld".into(),
                });
            }
        };
        let loader = if root == Path::new("/") {
            None
        } else {
            Some(find_loader(root)?)
        };
        let image = Image {
            root: root.to_path_buf(),
            flavor,
            loader,
        };
        let server = image.server();
        if !server.exists() {
            return Err(Error::Image {
                what: "server binary",
                root: root.to_path_buf(),
                looked_for: server.display().to_string(),
            });
        }
        Ok(image)
    }

    /// The image's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's flavor.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Whether the image is the agent's own root (`/`, as in a pod).
    pub fn is_own_root(&self) -> bool {
        self.loader.is_none()
    }

    /// `rel` (an absolute path in the image) under the image's root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The server binary: `/usr/sbin/mariadbd` or `/usr/sbin/mysqld`.
    pub fn server(&self) -> PathBuf {
        match self.flavor {
            Flavor::Mariadb => self.path("/usr/sbin/mariadbd"),
            Flavor::Mysql => self.path("/usr/sbin/mysqld"),
        }
    }

    /// A tool of the image (`mariadb-backup`, `mbstream`, `mariadb-upgrade`), from
    /// `/usr/bin`, `/usr/sbin` or `/bin`.
    ///
    /// # Errors
    /// [`Error::Image`] when it is in none of them.
    pub fn tool(&self, name: &'static str) -> Result<PathBuf> {
        let candidates =
            ["/usr/bin", "/usr/sbin", "/bin"].map(|d| self.path(&format!("{d}/{name}")));
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| Error::Image {
                what: name,
                root: self.root.clone(),
                looked_for: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// A command running `program` (a path under the root), through the root's loader when
    /// the root is not `/`.
    pub fn command(&self, program: &Path) -> tokio::process::Command {
        match &self.loader {
            None => tokio::process::Command::new(program),
            Some(loader) => {
                let mut cmd = tokio::process::Command::new(&loader.path);
                cmd.arg("--library-path")
                    .arg(&loader.library_path)
                    .arg(program);
                cmd
            }
        }
    }

    /// A command running `program` that itself runs the image's `helpers` (as
    /// `mariadb-upgrade` runs `mariadb` and `mariadb-check`, looked for next to its own
    /// name). In a pod that is [`Image::command`]. Under another root the helpers would run
    /// on the host's loader, so `scratch` gets a wrapper script per helper (running it
    /// through the root's loader) and a link to `program`, which is run through that link.
    ///
    /// # Errors
    /// [`Error::Io`] when the wrappers cannot be written.
    pub fn command_with_helpers(
        &self,
        program: &Path,
        helpers: &[&str],
        scratch: &Path,
    ) -> Result<tokio::process::Command> {
        let Some(loader) = &self.loader else {
            return Ok(self.command(program));
        };
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(scratch).map_err(Error::io("create directory", scratch))?;
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        for name in helpers {
            let real = self.path(&format!("/usr/bin/{name}"));
            if !real.is_file() {
                continue;
            }
            let wrapper = scratch.join(name);
            let script = format!(
                "#!/bin/sh\nexec {} --library-path {} {} \"$@\"\n",
                quote(&loader.path),
                quote(Path::new(&loader.library_path)),
                quote(&real)
            );
            std::fs::write(&wrapper, script).map_err(Error::io("write", &wrapper))?;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &wrapper))?;
        }
        let name = program.file_name().unwrap_or_default();
        let link = scratch.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(program, &link).map_err(Error::io("link", &link))?;
        Ok(self.command(&link))
    }

    /// Option lines telling a server under another root where its files are (`basedir`,
    /// `lc-messages-dir`, `plugin-dir`); none in a pod, where the compiled-in paths are right.
    pub fn layout_options(&self) -> Vec<(&'static str, String)> {
        if self.is_own_root() {
            return Vec::new();
        }
        let mut lines = vec![("basedir", self.path("/usr").display().to_string())];
        if let Some(dir) = ["/usr/share/mariadb", "/usr/share/mysql"]
            .iter()
            .map(|d| self.path(d))
            .find(|d| d.join("english/errmsg.sys").is_file())
        {
            lines.push(("lc-messages-dir", dir.display().to_string()));
        }
        if let Some(dir) = self.plugin_dir() {
            lines.push(("plugin-dir", dir.display().to_string()));
        }
        lines
    }

    /// The server's plugin directory, if the image has one at a known path.
    pub fn plugin_dir(&self) -> Option<PathBuf> {
        [
            "/usr/lib/mysql/plugin",
            "/usr/lib64/mysql/plugin",
            "/usr/lib/mariadb/plugin",
        ]
        .iter()
        .map(|d| self.path(d))
        .find(|d| d.is_dir())
    }

    /// A data file shipped with a MariaDB server (`mariadb_system_tables.sql`, ...): the
    /// first of `names` found in `/usr/share/mariadb` or `/usr/share/mysql`.
    pub fn share_file(&self, names: &[&str]) -> Option<PathBuf> {
        ["/usr/share/mariadb", "/usr/share/mysql"]
            .iter()
            .flat_map(|d| names.iter().map(move |n| self.path(&format!("{d}/{n}"))))
            .find(|p| p.is_file())
    }

    /// The server binary's version (`mariadbd --version`).
    ///
    /// # Errors
    /// [`Error::Spawn`] or [`Error::Command`] when it does not run or says no version.
    pub async fn server_version(&self) -> Result<Version> {
        let server = self.server();
        let out = self
            .command(&server)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|source| Error::Spawn {
                what: "reading the server's version",
                program: server.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let found = text
            .split_whitespace()
            .skip_while(|w| *w != "Ver")
            .nth(1)
            .and_then(|v| Version::parse(v).ok());
        match found {
            Some(v) if out.status.success() => Ok(v),
            _ => Err(Error::Command {
                what: "server --version",
                status: out.status.to_string(),
                detail: format!(
                    "no `Ver X.Y.Z` in its output: {}{}",
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }),
        }
    }

    /// The user the server runs as: when the agent runs as root, the image's `mysql` user
    /// (from its `/etc/passwd`), else `root`; `None` when the agent is not root (the server
    /// then runs as the agent's user).
    pub fn server_user(&self) -> Option<ServerUser> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let passwd = std::fs::read_to_string(self.path("/etc/passwd")).unwrap_or_default();
        let mysql = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["mysql", _, uid, gid, ..] => Some(ServerUser {
                    name: "mysql".into(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        });
        Some(mysql.unwrap_or(ServerUser {
            name: "root".into(),
            uid: 0,
            gid: 0,
        }))
    }
}

/// The loader inside `root`, which must resolve inside it (an absolute link such as
/// bullseye's `lib64/ld-linux-x86-64.so.2` points at the host's file).
fn find_loader(root: &Path) -> Result<Loader> {
    let canonical_root = root.canonicalize().map_err(Error::io("resolve", root))?;
    let path = LOADERS
        .iter()
        .map(|rel| root.join(rel))
        .find(|p| {
            p.canonicalize()
                .is_ok_and(|real| real.starts_with(&canonical_root) && real.is_file())
        })
        .ok_or_else(|| Error::Image {
            what: "dynamic loader",
            root: root.to_path_buf(),
            looked_for: LOADERS.join(", "),
        })?;
    let mut library_path = OsString::new();
    for dir in LIBRARY_DIRS.iter().map(|d| root.join(d)).filter(|d| {
        d.canonicalize()
            .is_ok_and(|real| real.starts_with(&canonical_root) && real.is_dir())
    }) {
        if !library_path.is_empty() {
            library_path.push(":");
        }
        library_path.push(dir);
    }
    Ok(Loader { path, library_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_without_a_server_is_refused_with_the_paths_tried() {
        let dir = tempfile::tempdir().unwrap();
        let e = Image::open(dir.path(), None).unwrap_err();
        assert_eq!(e.category(), "image");
        assert!(e.to_string().contains("usr/sbin/mariadbd"), "{e}");
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/mysqld"), "").unwrap();
        // A server but no loader of its own: refused too.
        let e = Image::open(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("dynamic loader"), "{e}");
    }

    #[test]
    fn paths_are_under_the_root() {
        let image = Image {
            root: PathBuf::from("/images/maria"),
            flavor: Flavor::Mariadb,
            loader: None,
        };
        assert_eq!(image.server(), Path::new("/images/maria/usr/sbin/mariadbd"));
        assert_eq!(
            image.path("/usr/bin/mbstream"),
            Path::new("/images/maria/usr/bin/mbstream")
        );
    }
}
