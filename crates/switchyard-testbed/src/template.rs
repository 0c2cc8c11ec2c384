//! One initialized data directory per server version, kept in the cache and
//! copied for each new instance so that clusters start in seconds.
//!
//! MariaDB: the server is run with `--bootstrap` on the SQL scripts it ships
//! (what `mariadb-install-db` does, without the script's assumptions about
//! where the server lives). MySQL: `mysqld --initialize-insecure`. Either way
//! `root@localhost` has no password: the testbed uses it over the unix
//! socket only, to set up the accounts of [`crate::Credentials`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cache::{self, FileLock};
use crate::error::{Error, Result};
use crate::fetch::{Binaries, Flavor};

const MARKER: &str = "switchyard-template-complete";
/// Version of how templates are made; part of the cache key.
const LAYOUT: &str = "template-2";
/// MySQL's redo log size, at initialization and at run time (the default
/// 100 MB would make every copy of the template that much larger).
pub(crate) const MYSQL_REDO_CAPACITY: &str = "32M";

/// The template data directory for `bins`, created on first use.
///
/// Blocks (seconds when created); concurrency-safe across processes.
pub fn template(bins: &Binaries) -> Result<PathBuf> {
    let base = cache::testbed_dir();
    let slug = format!(
        "{}-{}",
        bins.kind().slug(),
        cache::short_hash(&[
            LAYOUT,
            bins.full_version(),
            &bins.root().display().to_string()
        ])
    );
    let dir = base.join("templates").join(&slug);
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    let _lock = FileLock::acquire(&base.join("locks").join(format!("template-{slug}.lock")))?;
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    let started = Instant::now();
    eprintln!(
        "switchyard-testbed: initializing a {} {} template data directory ...",
        bins.kind(),
        bins.full_version()
    );
    crate::fetch::remove_leftovers(&base.join("templates"), &format!(".tmp-{slug}-"));
    let work = base
        .join("templates")
        .join(format!(".tmp-{slug}-{}", std::process::id()));
    if work.exists() {
        fs::remove_dir_all(&work).map_err(Error::io("remove", &work))?;
    }
    let datadir = work.join("data");
    let scratch = work.join("scratch");
    cache::create_dir_all(&scratch)?;
    let log = work.join("bootstrap.log");
    match bins.kind().flavor() {
        Flavor::Mariadb => bootstrap_mariadb(bins, &datadir, &scratch, &log)?,
        Flavor::Mysql => initialize_mysql(bins, &datadir, &scratch, &log)?,
    }
    // Each copy must generate its own server UUID.
    let _ = fs::remove_file(datadir.join("auto.cnf"));
    let marker = datadir.join(MARKER);
    fs::write(&marker, bins.full_version()).map_err(Error::io("write", &marker))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io("remove stale template", &dir))?;
    }
    fs::rename(&datadir, &dir).map_err(Error::io("rename into place", &dir))?;
    let _ = fs::remove_dir_all(&work);
    eprintln!(
        "switchyard-testbed: {} template ready in {:.1?}",
        bins.kind(),
        started.elapsed()
    );
    Ok(dir)
}

/// Whether the process runs as root (servers then need `--user=root`).
pub(crate) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn bootstrap_mariadb(bins: &Binaries, datadir: &Path, scratch: &Path, log: &Path) -> Result<()> {
    cache::create_dir_all(datadir)?;
    let mut sql = String::from(
        "create database if not exists mysql;\nuse mysql;\nSET @auth_root_socket=NULL;\n",
    );
    // (candidate names, required): the sys schema ships from 10.6 on.
    let scripts: [(&[&str], bool); 5] = [
        (
            &["mariadb_system_tables.sql", "mysql_system_tables.sql"],
            true,
        ),
        (
            &[
                "mariadb_performance_tables.sql",
                "mysql_performance_tables.sql",
            ],
            true,
        ),
        (
            &[
                "mariadb_system_tables_data.sql",
                "mysql_system_tables_data.sql",
            ],
            true,
        ),
        (&["maria_add_gis_sp_bootstrap.sql"], true),
        (&["mariadb_sys_schema.sql", "mysql_sys_schema.sql"], false),
    ];
    for (names, required) in scripts {
        let path = match bins.share_file(names) {
            Ok(path) => path,
            Err(_) if !required => continue,
            Err(e) => return Err(e),
        };
        sql.push_str(&fs::read_to_string(&path).map_err(Error::io("read", &path))?);
        sql.push('\n');
    }
    let mut cmd = bins.command(&bins.server());
    cmd.arg("--no-defaults")
        .arg("--bootstrap")
        .arg(format!("--basedir={}", bins.basedir().display()))
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", scratch.display()))
        .arg(format!(
            "--lc-messages-dir={}",
            bins.messages_dir()?.display()
        ))
        .arg("--log-warnings=0")
        .arg("--enforce-storage-engine=")
        .arg("--max-allowed-packet=8M")
        .arg("--net-buffer-length=16K")
        .arg("--innodb-log-file-size=32M")
        .arg("--skip-log-bin");
    if let Some(plugins) = bins.plugin_dir() {
        cmd.arg(format!("--plugin-dir={}", plugins.display()));
    }
    if running_as_root() {
        cmd.arg("--user=root");
    }
    run_with_input(bins, cmd, Some(sql), datadir, log)
}

fn initialize_mysql(bins: &Binaries, datadir: &Path, scratch: &Path, log: &Path) -> Result<()> {
    let files = scratch.join("files");
    cache::create_dir_all(&files)?;
    let mut cmd = bins.command(&bins.server());
    cmd.arg("--no-defaults")
        .arg("--initialize-insecure")
        .arg(format!("--basedir={}", bins.basedir().display()))
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", scratch.display()))
        .arg(format!(
            "--lc-messages-dir={}",
            bins.messages_dir()?.display()
        ))
        .arg(format!("--secure-file-priv={}", files.display()))
        .arg(format!("--innodb-redo-log-capacity={MYSQL_REDO_CAPACITY}"))
        .arg(format!("--log-error={}", log.display()));
    if let Some(plugins) = bins.plugin_dir() {
        cmd.arg(format!("--plugin-dir={}", plugins.display()));
    }
    if running_as_root() {
        cmd.arg("--user=root");
    }
    run_with_input(bins, cmd, None, datadir, log)
}

fn run_with_input(
    bins: &Binaries,
    mut cmd: Command,
    input: Option<String>,
    datadir: &Path,
    log: &Path,
) -> Result<()> {
    use std::io::Write as _;
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("create", log))?;
    let err = out.try_clone().map_err(Error::io("open", log))?;
    cmd.stdout(out).stderr(err);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        what: "initializing a template data directory".into(),
        program: bins.server(),
        source,
    })?;
    if let Some(sql) = input
        && let Some(mut stdin) = child.stdin.take()
    {
        // A write error means the server exited early; its status says why.
        let _ = stdin.write_all(sql.as_bytes());
    }
    let status = child.wait().map_err(Error::io("wait for", bins.server()))?;
    if !status.success() {
        return Err(Error::Bootstrap {
            server: format!("{} {}", bins.kind(), bins.full_version()),
            datadir: datadir.to_path_buf(),
            status: status.to_string(),
            log: log.to_path_buf(),
        });
    }
    Ok(())
}
