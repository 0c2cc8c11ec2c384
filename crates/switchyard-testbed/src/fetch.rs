//! Fetches MySQL and MariaDB servers from Debian's archive into the testbed
//! cache, with no system-wide install.
//!
//! Each server comes from one Debian suite. Per suite the testbed keeps an
//! isolated apt root (its own sources list with `signed-by=` the Debian
//! archive keyring, its own lists and package cache, an empty dpkg status
//! file), lets apt resolve and download the dependency-complete package set
//! (`apt-get install --download-only`; signatures are verified, nothing is
//! installed), and unpacks every package with `dpkg -x` into one root per
//! server. Package versions are whatever the archive holds at fetch time;
//! the resolved versions are recorded in the root's completion marker, and a
//! second call uses the cache.
//!
//! Every program in a root runs through that suite's own dynamic loader and
//! libraries (`ROOT/…/ld-linux-x86-64.so.2 --library-path …`), so the host's
//! C library never mixes with the suite's. Wrapper scripts in
//! `ROOT/.switchyard/bin` do the same for helper programs that are started
//! by other programs (`mariadb-upgrade` runs `mariadb`, SST scripts run
//! `rsync`).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cache::{self, FileLock};
use crate::error::{Error, Result, tail};

/// The server family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// MariaDB.
    Mariadb,
    /// Oracle MySQL.
    Mysql,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Mariadb => "MariaDB",
            Flavor::Mysql => "MySQL",
        })
    }
}

/// A Debian suite the testbed fetches from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// Debian 11.
    Bullseye,
    /// Debian 12.
    Bookworm,
    /// Debian 13.
    Trixie,
    /// Debian unstable.
    Sid,
}

impl Suite {
    /// The suite's codename as apt knows it.
    pub fn codename(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
            Suite::Sid => "sid",
        }
    }

    /// Whether the suite's dynamic loader understands `--argv0` (glibc 2.33+).
    pub(crate) fn loader_has_argv0(self) -> bool {
        !matches!(self, Suite::Bullseye)
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.codename())
    }
}

/// A server the testbed can run: a version series and the Debian suite and
/// packages it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerKind {
    /// MariaDB 10.5 from bullseye.
    Mariadb105,
    /// MariaDB 10.11 from bookworm.
    Mariadb1011,
    /// MariaDB 11.8 from trixie.
    Mariadb118,
    /// MySQL 9.7 from sid.
    Mysql97,
    /// MariaDB 10.11 with wsrep and the Galera 4 provider from bookworm,
    /// with the state-transfer scripts and their tools (rsync, socat,
    /// mariabackup).
    Galera,
}

impl ServerKind {
    /// Every kind, oldest first.
    pub const ALL: [ServerKind; 5] = [
        ServerKind::Mariadb105,
        ServerKind::Mariadb1011,
        ServerKind::Mariadb118,
        ServerKind::Mysql97,
        ServerKind::Galera,
    ];

    /// The server family.
    pub fn flavor(self) -> Flavor {
        match self {
            ServerKind::Mysql97 => Flavor::Mysql,
            _ => Flavor::Mariadb,
        }
    }

    /// The version series ("10.11", "9.7").
    pub fn series(self) -> &'static str {
        match self {
            ServerKind::Mariadb105 => "10.5",
            ServerKind::Mariadb1011 | ServerKind::Galera => "10.11",
            ServerKind::Mariadb118 => "11.8",
            ServerKind::Mysql97 => "9.7",
        }
    }

    /// The kind for a flavor and version series, if the testbed has it
    /// (`from_series(Flavor::Mariadb, "10.11")`). Galera is not returned:
    /// ask for [`ServerKind::Galera`] directly.
    pub fn from_series(flavor: Flavor, series: &str) -> Option<ServerKind> {
        [
            ServerKind::Mariadb105,
            ServerKind::Mariadb1011,
            ServerKind::Mariadb118,
            ServerKind::Mysql97,
        ]
        .into_iter()
        .find(|k| k.flavor() == flavor && k.series() == series)
    }

    /// The Debian suite the server comes from.
    pub fn suite(self) -> Suite {
        match self {
            ServerKind::Mariadb105 => Suite::Bullseye,
            ServerKind::Mariadb1011 | ServerKind::Galera => Suite::Bookworm,
            ServerKind::Mariadb118 => Suite::Trixie,
            ServerKind::Mysql97 => Suite::Sid,
        }
    }

    /// The packages asked of apt (it adds their dependencies). Every MariaDB suite has
    /// `mariadb-backup` (with `mbstream`), which provisions replicas; MySQL's clone plugin
    /// (`mysql_clone.so`) ships in `mysql-server-core`. The roots the simulated kubelet runs
    /// as database images get `dash` as `/bin/sh`, as the official images have a shell:
    /// `mariadb-upgrade` runs `mariadb` and `mariadb-check` through `popen`, which needs
    /// `/bin/sh`.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            ServerKind::Mariadb105 => &[
                "mariadb-server-core-10.5",
                "mariadb-client-core-10.5",
                "mariadb-backup",
                "libssl1.1",
                "dash",
            ],
            ServerKind::Mariadb1011 | ServerKind::Mariadb118 => &[
                "mariadb-server-core",
                "mariadb-client-core",
                "mariadb-backup",
                "dash",
            ],
            ServerKind::Mysql97 => &["mysql-server-core", "mysql-client-core", "dash"],
            ServerKind::Galera => &[
                "mariadb-server",
                "galera-4",
                "mariadb-backup",
                "rsync",
                "socat",
            ],
        }
    }

    /// A short name for directories and log lines ("mariadb-10.11").
    pub fn slug(self) -> &'static str {
        match self {
            ServerKind::Mariadb105 => "mariadb-10.5",
            ServerKind::Mariadb1011 => "mariadb-10.11",
            ServerKind::Mariadb118 => "mariadb-11.8",
            ServerKind::Mysql97 => "mysql-9.7",
            ServerKind::Galera => "galera-mariadb-10.11",
        }
    }

    /// The server binary's path inside the root.
    fn server_rel(self) -> &'static str {
        match self.flavor() {
            Flavor::Mariadb => "usr/sbin/mariadbd",
            Flavor::Mysql => "usr/sbin/mysqld",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerKind::Galera => write!(f, "MariaDB 10.11 with Galera 4"),
            other => write!(f, "{} {}", other.flavor(), other.series()),
        }
    }
}

/// An unpacked server root: where the server and its tools are, how to run
/// them, and the exact version that was fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    kind: ServerKind,
    root: PathBuf,
    loader: PathBuf,
    library_path: OsString,
    version: String,
    full_version: String,
    packages: Vec<(String, String)>,
}

/// Name of the completion marker inside a root.
pub(crate) const MARKER: &str = ".switchyard/complete";
/// Folder of wrapper scripts inside a root.
const WRAPPERS: &str = ".switchyard/bin";
/// Folder of links to the loader, one per program, so that a process run
/// through the loader is named after its program (`ps`, `ss -p` and the
/// Galera state-transfer scripts look processes up by name).
const LOADER_LINKS: &str = ".switchyard/ld";
/// Version of the layout of an unpacked root; part of the cache key, so a
/// change makes a new root instead of altering one in use.
pub(crate) const LAYOUT: &str = "layout-2";
/// The keyring that verifies every suite's Release files.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Environment variable overriding the Debian mirror.
pub const MIRROR_ENV: &str = "SWITCHYARD_DEBIAN_MIRROR";

impl Binaries {
    /// The server kind.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The unpacked root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's version number ("10.11.14", "9.7.4").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server's full version string as it reports it
    /// ("10.11.14-MariaDB-0+deb12u2").
    pub fn full_version(&self) -> &str {
        &self.full_version
    }

    /// The packages apt resolved, with their versions.
    pub fn packages(&self) -> &[(String, String)] {
        &self.packages
    }

    /// The suite's dynamic loader inside the root.
    pub fn loader(&self) -> &Path {
        &self.loader
    }

    /// The library path handed to the loader.
    pub fn library_path(&self) -> &std::ffi::OsStr {
        &self.library_path
    }

    /// The server binary (`mariadbd` or `mysqld`).
    pub fn server(&self) -> PathBuf {
        self.root.join(self.kind.server_rel())
    }

    /// The folder of wrapper scripts: one per program of the root, each
    /// running it through the root's loader. Put it first on `PATH` for
    /// programs that start other programs.
    pub fn wrappers(&self) -> PathBuf {
        self.root.join(WRAPPERS)
    }

    /// `basedir` for the server.
    pub fn basedir(&self) -> PathBuf {
        self.root.join("usr")
    }

    /// A `basedir` whose `bin` holds the loader wrappers (and whose `share`
    /// and `lib` are the root's): for servers that run helper programs
    /// from `basedir/bin`, as Galera's state-transfer scripts do. Created
    /// on first use.
    pub fn wrapper_basedir(&self) -> Result<PathBuf> {
        let dir = self.root.join(".switchyard/basedir");
        crate::cache::create_dir_all(&dir)?;
        for (name, target) in [
            ("bin", self.wrappers()),
            ("share", self.root.join("usr/share")),
            ("lib", self.root.join("usr/lib")),
        ] {
            let link = dir.join(name);
            match std::os::unix::fs::symlink(&target, &link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("link", &link)(e)),
            }
        }
        Ok(dir)
    }

    /// The folder holding `english/errmsg.sys` (`lc-messages-dir`).
    pub fn messages_dir(&self) -> Result<PathBuf> {
        let candidates = ["usr/share/mariadb", "usr/share/mysql"];
        candidates
            .iter()
            .map(|c| self.root.join(c))
            .find(|p| p.join("english").join("errmsg.sys").is_file())
            .ok_or_else(|| Error::Missing {
                what: "error message folder (english/errmsg.sys)",
                root: self.root.clone(),
                looked_for: candidates.join(", "),
            })
    }

    /// The folder of a data file shipped with the server
    /// (`mysql_system_tables.sql`, ...), looked for under `usr/share/mariadb`
    /// and `usr/share/mysql`.
    pub fn share_file(&self, names: &[&str]) -> Result<PathBuf> {
        for dir in ["usr/share/mariadb", "usr/share/mysql"] {
            for name in names {
                let p = self.root.join(dir).join(name);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(Error::Missing {
            what: "server data file",
            root: self.root.clone(),
            looked_for: names.join(", "),
        })
    }

    /// The server's plugin folder, if the packages ship one.
    pub fn plugin_dir(&self) -> Option<PathBuf> {
        let p = self.root.join("usr/lib/mysql/plugin");
        p.is_dir().then_some(p)
    }

    /// A command running `program` (a path inside the root) through the
    /// root's loader and libraries.
    ///
    /// The process is named after `program` (it runs through a link to the
    /// loader with the program's name).
    pub fn command(&self, program: &Path) -> Command {
        let named = program
            .file_name()
            .map(|name| self.root.join(LOADER_LINKS).join(name))
            .filter(|link| link.exists());
        let mut cmd = Command::new(named.as_deref().unwrap_or(&self.loader));
        cmd.arg("--library-path").arg(&self.library_path);
        cmd.arg(program);
        cmd
    }

    /// A command running the root's tool `name` (looked up in `usr/bin`,
    /// `usr/sbin`, `bin`, `sbin`) through its wrapper script, so that it
    /// finds sibling tools. `PATH` starts with the wrapper folder.
    pub fn tool(&self, name: &str) -> Result<Command> {
        let wrapper = self.wrappers().join(name);
        if !wrapper.exists() {
            return Err(Error::Missing {
                what: "tool",
                root: self.root.clone(),
                looked_for: format!("{name} in usr/bin, usr/sbin, bin, sbin"),
            });
        }
        let mut cmd = Command::new(wrapper);
        cmd.env("PATH", self.path_env());
        Ok(cmd)
    }

    /// `PATH` with the wrapper folder first.
    pub fn path_env(&self) -> OsString {
        let mut path = self.wrappers().into_os_string();
        if let Some(host) = std::env::var_os("PATH") {
            path.push(":");
            path.push(host);
        }
        path
    }
}

/// Fetches (or finds in the cache) the server `kind` and returns where it
/// is.
///
/// Blocks: downloads and unpacking take seconds when the cache is cold. In
/// async code call it through `tokio::task::spawn_blocking`. Safe to call
/// from several processes at once: a lock file per suite serializes the
/// work and the root appears under its final name only when complete.
pub fn binaries(kind: ServerKind) -> Result<Binaries> {
    cached(
        kind.slug(),
        kind.suite(),
        kind.packages(),
        |root| load_marker(kind, root),
        |base, key, root| fetch_root(kind, base, key, root),
    )
}

/// The cache protocol shared by servers and tools: the root named by the
/// slug and a hash of (layout, suite, packages) is used when its marker is
/// there; otherwise the suite's fetch lock is taken (one apt root per
/// suite), the marker looked for again (another process may have finished
/// meanwhile), and `fetch(base, key, root)` run under the lock.
pub(crate) fn cached<T>(
    slug: &str,
    suite: Suite,
    packages: &[&str],
    load: impl Fn(&Path) -> Result<Option<T>>,
    fetch: impl FnOnce(&Path, &str, &Path) -> Result<T>,
) -> Result<T> {
    let base = cache::testbed_dir();
    let key = format!(
        "{slug}-{}",
        cache::short_hash(&[LAYOUT, suite.codename(), &packages.join(" ")])
    );
    let root = base.join("roots").join(&key);
    if let Some(found) = load(&root)? {
        return Ok(found);
    }
    let lock_path = base.join("locks").join(format!("fetch-{suite}.lock"));
    let _lock = match FileLock::try_acquire(&lock_path)? {
        Some(lock) => lock,
        None => {
            eprintln!(
                "switchyard-testbed: waiting for another process fetching from Debian {suite} ..."
            );
            FileLock::acquire(&lock_path)?
        }
    };
    if let Some(found) = load(&root)? {
        return Ok(found);
    }
    fetch(&base, &key, &root)
}

fn load_marker(kind: ServerKind, root: &Path) -> Result<Option<Binaries>> {
    let marker = root.join(MARKER);
    let text = match fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &marker)(e)),
    };
    let mut version = None;
    let mut full_version = None;
    let mut loader = None;
    let mut packages = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            match k {
                "version" => version = Some(v.to_string()),
                "full_version" => full_version = Some(v.to_string()),
                "loader" => loader = Some(root.join(v)),
                "package" => {
                    if let Some((name, ver)) = v.split_once(' ') {
                        packages.push((name.to_string(), ver.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    match (version, full_version, loader) {
        (Some(version), Some(full_version), Some(loader)) => Ok(Some(Binaries {
            kind,
            library_path: library_path(root),
            root: root.to_path_buf(),
            loader,
            version,
            full_version,
            packages,
        })),
        // A marker from an older layout: fetch again.
        _ => Ok(None),
    }
}

pub(crate) fn library_path(root: &Path) -> OsString {
    let mut lp = root.join("usr/lib/x86_64-linux-gnu").into_os_string();
    lp.push(":");
    lp.push(root.join("lib/x86_64-linux-gnu"));
    lp
}

/// The Debian mirror: `$SWITCHYARD_DEBIAN_MIRROR`, else the first Debian
/// archive URI in the host's apt sources; an error naming both when neither
/// has one.
pub fn debian_mirror() -> Result<String> {
    if let Some(m) = std::env::var(MIRROR_ENV).ok().filter(|m| !m.is_empty()) {
        return Ok(m.trim_end_matches('/').to_string());
    }
    host_mirror().ok_or_else(|| Error::Missing {
        what: "a Debian archive mirror (set SWITCHYARD_DEBIAN_MIRROR to one)",
        root: PathBuf::from("/etc/apt"),
        looked_for: "a URI ending in /debian in sources.list and sources.list.d".to_string(),
    })
}

fn host_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let name = file.to_string_lossy().to_string();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        if let Some(m) = mirror_in(&text) {
            return Some(m);
        }
    }
    None
}

/// Finds the first Debian main-archive URI (path ending in `/debian`) in an
/// apt sources file, one-line or deb822 format.
fn mirror_in(text: &str) -> Option<String> {
    let is_archive = |uri: &str| {
        let u = uri.trim_end_matches('/');
        (u.starts_with("http://") || u.starts_with("https://")) && u.ends_with("/debian")
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("URIs:") {
            if let Some(u) = rest.split_whitespace().find(|u| is_archive(u)) {
                return Some(u.trim_end_matches('/').to_string());
            }
        } else if let Some(mut rest) = line.strip_prefix("deb ") {
            // deb [options] uri suite components
            if let Some(start) = rest.find('[')
                && let Some(end) = rest[start..].find(']')
            {
                rest = &rest[start + end + 1..];
            }
            if let Some(u) = rest.split_whitespace().next().filter(|u| is_archive(u)) {
                return Some(u.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// Packages apt downloaded and `dpkg -x` unpacked into a work folder, not yet published.
pub(crate) struct Unpacked {
    /// The work folder (`roots/.tmp-KEY-PID`), renamed into place by the caller.
    pub(crate) tmp: PathBuf,
    /// Every package unpacked, with its version.
    pub(crate) packages: Vec<(String, String)>,
    /// The mirror they came from.
    pub(crate) mirror: String,
}

/// Resolves `packages` (and their dependencies) from Debian `suite` with apt in the suite's
/// isolated apt root (signatures verified, nothing installed), downloads them and unpacks
/// each with `dpkg -x` into a fresh work folder under `base/roots`. `what` names the fetch in
/// messages. The caller holds the suite's fetch lock.
pub(crate) fn download_and_unpack(
    suite: Suite,
    packages: &[&str],
    what: &str,
    base: &Path,
    key: &str,
) -> Result<Unpacked> {
    let mirror = debian_mirror()?;
    eprintln!(
        "switchyard-testbed: fetching {what} from Debian {suite} ({}) ...",
        packages.join(", ")
    );
    if !Path::new(KEYRING).is_file() {
        return Err(Error::Missing {
            what: "Debian archive keyring (apt-get install debian-archive-keyring)",
            root: PathBuf::from("/"),
            looked_for: KEYRING.to_string(),
        });
    }
    let apt = base.join("apt").join(suite.codename());
    let archives = apt.join(format!("cache-{key}"));
    let state = apt.join("state");
    for dir in [
        state.join("lists/partial"),
        archives.join("archives/partial"),
        apt.join("preferences.d"),
    ] {
        cache::create_dir_all(&dir)?;
    }
    let sources = apt.join("sources.list");
    let line = format!(
        "deb [signed-by={KEYRING}] {} {} main\n",
        mirror,
        suite.codename()
    );
    fs::write(&sources, line).map_err(Error::io("write", &sources))?;
    let status = apt.join("status");
    fs::write(&status, "").map_err(Error::io("write", &status))?;

    let apt_get = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("-q")
            .args(["-o", &format!("Dir::Etc::sourcelist={}", sources.display())])
            .args(["-o", "Dir::Etc::sourceparts=-"])
            .args([
                "-o",
                &format!(
                    "Dir::Etc::preferencesparts={}",
                    apt.join("preferences.d").display()
                ),
            ])
            .args([
                "-o",
                &format!(
                    "Dir::Etc::preferences={}",
                    apt.join("preferences").display()
                ),
            ])
            .args(["-o", &format!("Dir::State={}", state.display())])
            .args([
                "-o",
                &format!("Dir::State::Lists={}", state.join("lists").display()),
            ])
            .args(["-o", &format!("Dir::State::status={}", status.display())])
            .args(["-o", &format!("Dir::Cache={}", archives.display())])
            .args(["-o", "Debug::NoLocking=1"])
            .args(["-o", "APT::Install-Recommends=0"])
            .args(["-o", "APT::Install-Suggests=0"])
            .args(["-o", "APT::Architecture=amd64"])
            .args(["-o", "APT::Architectures=amd64"])
            .args(["-o", "Acquire::Languages=none"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    };

    let out = apt_get(&["update"])
        .output()
        .map_err(|source| Error::Spawn {
            what: format!("apt-get update for {suite}"),
            program: "apt-get".into(),
            source,
        })?;
    let text = output_text(&out);
    // apt-get update exits 0 even when a source failed; its W:/E: lines say so.
    if !out.status.success()
        || text
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W: Failed") || l.starts_with("W: GPG"))
    {
        return Err(Error::AptUpdate {
            suite: suite.to_string(),
            status: out.status.to_string(),
            output: tail(&text, 6),
        });
    }

    let mut args = vec!["install", "--download-only", "-y"];
    args.extend(packages);
    let out = apt_get(&args).output().map_err(|source| Error::Spawn {
        what: format!("apt-get install --download-only for {suite}"),
        program: "apt-get".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::AptDownload {
            suite: suite.to_string(),
            packages: packages.join(" "),
            status: out.status.to_string(),
            output: tail(&output_text(&out), 6),
        });
    }

    let debs_dir = archives.join("archives");
    let mut debs: Vec<PathBuf> = fs::read_dir(&debs_dir)
        .map_err(Error::io("read directory", &debs_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();

    let roots = base.join("roots");
    remove_leftovers(&roots, &format!(".tmp-{key}-"));
    let tmp = roots.join(format!(".tmp-{key}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(Error::io("remove", &tmp))?;
    }
    cache::create_dir_all(&tmp)?;
    let mut unpacked = Vec::new();
    for deb in &debs {
        let out = Command::new("dpkg")
            .arg("-x")
            .arg(deb)
            .arg(&tmp)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                what: format!("unpacking {}", deb.display()),
                program: "dpkg".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Unpack {
                deb: deb.clone(),
                status: out.status.to_string(),
                output: tail(&output_text(&out), 4),
            });
        }
        if let Some(p) = package_of(deb) {
            unpacked.push(p);
        }
    }
    // The unpacked folder is what is kept; the .deb files are not needed again.
    let _ = fs::remove_dir_all(&archives);
    Ok(Unpacked {
        tmp,
        packages: unpacked,
        mirror,
    })
}

fn fetch_root(kind: ServerKind, base: &Path, key: &str, root: &Path) -> Result<Binaries> {
    let suite = kind.suite();
    let started = Instant::now();
    let Unpacked {
        tmp,
        packages,
        mirror,
    } = download_and_unpack(suite, kind.packages(), &kind.to_string(), base, key)?;

    let loader_rel = find_loader(&tmp)?;
    if kind.packages().contains(&"dash") {
        link_sh(&tmp)?;
    }
    let server = tmp.join(kind.server_rel());
    if !server.exists() {
        return Err(Error::Missing {
            what: "server binary",
            root: tmp,
            looked_for: kind.server_rel().to_string(),
        });
    }
    let mut version_cmd = Command::new(tmp.join(&loader_rel));
    version_cmd
        .arg("--library-path")
        .arg(library_path(&tmp))
        .arg(&server)
        .arg("--version");
    let (version, full_version) = read_version(&mut version_cmd, &server)?;

    // Wrappers and marker name the final root, which the rename below
    // creates.
    write_wrappers(&tmp, root, &loader_rel, suite.loader_has_argv0())?;
    let mut marker = format!(
        "version={version}\nfull_version={full_version}\nloader={}\nsuite={suite}\nmirror={}\n",
        loader_rel.display(),
        mirror
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
        "switchyard-testbed: fetched {kind} {full_version} ({} packages) in {:.1?}",
        packages.len(),
        started.elapsed()
    );
    load_marker(kind, root)?.ok_or_else(|| Error::Missing {
        what: "completion marker",
        root: root.to_path_buf(),
        looked_for: MARKER.to_string(),
    })
}

/// Makes sure `sh` is beside `dash` (`bin/` before the `/usr` merge, `usr/bin/` after it,
/// where the kubelet links `/bin` to `usr/bin`): Debian's dash package ships the link, and a
/// suite whose package leaves it to a maintainer script (`dpkg -x` runs none) gets it here.
fn link_sh(root: &Path) -> Result<()> {
    let dir = ["bin", "usr/bin"]
        .into_iter()
        .map(|d| root.join(d))
        .find(|d| d.join("dash").is_file())
        .ok_or_else(|| Error::Missing {
            what: "dash (the image's /bin/sh)",
            root: root.to_path_buf(),
            looked_for: "bin/dash, usr/bin/dash".to_owned(),
        })?;
    let sh = dir.join("sh");
    if fs::symlink_metadata(&sh).is_err() {
        std::os::unix::fs::symlink("dash", &sh).map_err(Error::io("link", &sh))?;
    }
    Ok(())
}

/// Removes work folders named `prefix*` left by processes that died while
/// holding the lock the caller now holds.
pub(crate) fn remove_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn output_text(out: &std::process::Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).to_string();
    s.push('\n');
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// `name_version_arch.deb` → (name, version) with the epoch's `%3a` decoded.
fn package_of(deb: &Path) -> Option<(String, String)> {
    let stem = deb.file_stem()?.to_str()?;
    let mut parts = stem.splitn(3, '_');
    let name = parts.next()?;
    let version = parts.next()?.replace("%3a", ":");
    Some((name.to_string(), version))
}

/// The loader inside the root, as a path relative to it. It must resolve
/// inside the root (bullseye's `lib64` link points at the host's file).
pub(crate) fn find_loader(root: &Path) -> Result<PathBuf> {
    let candidates = [
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ];
    let canonical_root = root.canonicalize().map_err(Error::io("resolve", root))?;
    for rel in candidates {
        if let Ok(real) = root.join(rel).canonicalize()
            && real.starts_with(&canonical_root)
            && real.is_file()
        {
            return Ok(PathBuf::from(rel));
        }
    }
    Err(Error::Missing {
        what: "dynamic loader",
        root: root.to_path_buf(),
        looked_for: candidates.join(", "),
    })
}

/// Runs `server --version` and returns (number, full version).
fn read_version(cmd: &mut Command, server: &Path) -> Result<(String, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            what: "reading the server version".into(),
            program: server.to_path_buf(),
            source,
        })?;
    let text = output_text(&out);
    if !out.status.success() {
        return Err(Error::Version {
            program: server.to_path_buf(),
            detail: format!("{}: {}", out.status, tail(&text, 4)),
        });
    }
    parse_version(&text).ok_or_else(|| Error::Version {
        program: server.to_path_buf(),
        detail: format!("no `Ver x.y.z` in: {}", tail(&text, 2)),
    })
}

/// Parses `mysqld  Ver 9.7.4-2 for Linux ...` / `mariadbd  Ver
/// 10.11.14-MariaDB-0+deb12u2 for debian-linux-gnu ...`.
fn parse_version(text: &str) -> Option<(String, String)> {
    let full = text.split_whitespace().skip_while(|w| *w != "Ver").nth(1)?;
    let number: String = full
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let number = number.trim_end_matches('.').to_string();
    (number.split('.').count() == 3).then(|| (number, full.to_string()))
}

/// Writes `ROOT/.switchyard/bin`: for each program in the root's `bin`
/// folders, an `sh` script running it through the loader (ELF files) or a
/// link to it (scripts). `final_root` is where the root will live.
pub(crate) fn write_wrappers(
    tmp: &Path,
    final_root: &Path,
    loader_rel: &Path,
    argv0: bool,
) -> Result<()> {
    let dir = tmp.join(WRAPPERS);
    cache::create_dir_all(&dir)?;
    let links = tmp.join(LOADER_LINKS);
    cache::create_dir_all(&links)?;
    // From `.switchyard/ld/NAME` up to the root.
    let loader_from_links = Path::new("../..").join(loader_rel);
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let lp = library_path(final_root);
    let mut seen = std::collections::HashSet::new();
    for sub in ["usr/bin", "usr/sbin", "bin", "sbin"] {
        let Ok(entries) = fs::read_dir(tmp.join(sub)) else {
            continue;
        };
        let mut names: Vec<OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            // The root's shell is for its chroot (the kubelet's images); on the host's PATH
            // the host's shell stays.
            if !seen.insert(name.clone()) || name == "sh" || name == "dash" {
                continue;
            }
            let here = tmp.join(sub).join(&name);
            if !here.is_file() {
                continue;
            }
            let there = final_root.join(sub).join(&name);
            let wrapper = dir.join(&name);
            if is_elf(&here) {
                let link = links.join(&name);
                std::os::unix::fs::symlink(&loader_from_links, &link)
                    .map_err(Error::io("link", &link))?;
                let argv0_opt = if argv0 { r#" --argv0 "$0""# } else { "" };
                let script = format!(
                    "#!/bin/sh\nexec {} --library-path {}{argv0_opt} {} \"$@\"\n",
                    quote(&final_root.join(LOADER_LINKS).join(&name)),
                    quote(Path::new(&lp)),
                    quote(&there),
                );
                let mut f = fs::File::create(&wrapper).map_err(Error::io("create", &wrapper))?;
                f.write_all(script.as_bytes())
                    .map_err(Error::io("write", &wrapper))?;
                use std::os::unix::fs::PermissionsExt as _;
                fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
                    .map_err(Error::io("chmod", &wrapper))?;
            } else {
                std::os::unix::fs::symlink(&there, &wrapper)
                    .map_err(Error::io("link", &wrapper))?;
            }
        }
    }
    Ok(())
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("/x/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))"),
            Some(("9.7.4".into(), "9.7.4-2".into()))
        );
        assert_eq!(
            parse_version("/x/mariadbd  Ver 10.11.18-MariaDB-0+deb12u1 for debian-linux-gnu"),
            Some(("10.11.18".into(), "10.11.18-MariaDB-0+deb12u1".into()))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn finds_mirror_in_both_formats() {
        let deb822 = "Types: deb\n# comment URIs: http://x/y\nURIs: http://mirror.example/debian/\nSuites: bookworm\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let one_line = "deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://m.example/debian")
        );
        let security = "deb http://m.example/debian-security bookworm-security main\n";
        assert_eq!(mirror_in(security), None);
    }

    #[test]
    fn package_names_decode_epochs() {
        assert_eq!(
            package_of(Path::new(
                "/a/mariadb-server-core_1%3a10.11.18-0+deb12u1_amd64.deb"
            )),
            Some(("mariadb-server-core".into(), "1:10.11.18-0+deb12u1".into()))
        );
    }
}
