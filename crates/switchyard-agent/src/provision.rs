//! Provisioning an empty instance from a donor the operator names, then replicating from
//! the copy's position.
//!
//! The copy is assembled under `<volume>/.staging` and renamed to `<volume>/data` only once
//! it is complete and prepared, with a marker file in it ([`Pending`]) saying that
//! replication must start from the copy's position. The next start of the server (the same
//! agent, or a restarted container) finds the marker, starts replication and removes it, so
//! a copy is never left serving without having been pointed at its source.
//!
//! - MySQL: `CLONE INSTANCE FROM` the donor with the replication account (which holds
//!   `BACKUP_ADMIN` for that), run on a scratch server initialized for the purpose (the
//!   clone plugin is loaded through the rendered my.cnf on every instance), into
//!   `DATA DIRECTORY = <staging>/data`. The scratch server is then stopped and removed: the
//!   clone is finished by the first start of the real server on it, which is the restart the
//!   manual requires after a clone. The donor must run the recipient's exact version (the
//!   server refuses otherwise, and says so). The copy carries the donor's executed GTID set;
//!   replication auto-positions from it.
//! - MariaDB: `GET /backup` from the donor's agent (authenticated with the replication
//!   account; the donor streams `mariadb-backup --backup --stream=xbstream`) piped into
//!   `mbstream -x`, then `mariadb-backup --prepare`. The copy's position is the GTID in
//!   `mariadb_backup_binlog_info` (`xtrabackup_binlog_info` before 11.x).
//!
//! Because the copy comes from the donor's data, not its binary logs, a donor whose first
//! binary logs were purged still gives a complete copy; the replica only needs the logs
//! written after the copy's position.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use switchyard_mysql::sql::{quote_literal, validate_host};
use switchyard_plan::versions::Version;
use tokio::io::AsyncWriteExt as _;

use crate::config::{Account, Donor, Options};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::local::{self, LOCAL_TIMEOUT, Local};
use crate::server::Server;

/// The marker a provisioned copy carries until its replication is started.
pub const PENDING_FILE: &str = "switchyard-replicate-from-copy.json";

/// What the next start of a provisioned copy must do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The donor the copy came from (`host:port`).
    pub donor: String,
    /// MariaDB: the copy's GTID position (`gtid_binlog_pos` of the donor when the backup
    /// was taken). MySQL: none (the copy carries its executed set).
    pub gtid: Option<String>,
}

impl Pending {
    /// Reads the marker of `datadir`, if any.
    pub fn read(datadir: &Path) -> Option<Pending> {
        let text = std::fs::read_to_string(datadir.join(PENDING_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the marker into `datadir`.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn write(&self, datadir: &Path) -> Result<()> {
        let path = datadir.join(PENDING_FILE);
        let text = serde_json::to_string(self).unwrap_or_default();
        std::fs::write(&path, text).map_err(Error::io("write", &path))
    }

    /// Removes the marker (replication has started).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn clear(datadir: &Path) -> Result<()> {
        let path = datadir.join(PENDING_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path)(e)),
        }
    }
}

/// What a provisioning needs.
#[derive(Debug)]
pub struct Context<'a> {
    /// The agent's options.
    pub options: &'a Options,
    /// The image.
    pub image: &'a Image,
    /// The rendered my.cnf.
    pub cnf: &'a Path,
    /// The replication account (clone login, `/backup` authentication).
    pub account: &'a Account,
    /// Bytes received so far (reported in `/status`).
    pub bytes: Arc<AtomicU64>,
}

fn donor_label(donor: &Donor) -> String {
    format!("{}:{}", donor.host, donor.port)
}

fn failed(donor: &Donor, detail: impl Into<String>) -> Error {
    Error::Provision {
        donor: donor_label(donor),
        detail: detail.into(),
    }
}

/// A fresh staging folder; what an interrupted attempt left is removed.
fn fresh_staging(options: &Options) -> Result<PathBuf> {
    let staging = options.staging();
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(Error::io("remove", &staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;
    Ok(staging)
}

/// Clones the MySQL donor into `<staging>/data` and returns that directory, marked
/// [`Pending`].
///
/// # Errors
/// [`Error::Provision`] and the errors of the scratch server.
pub async fn clone_mysql(ctx: &Context<'_>, donor: &Donor) -> Result<PathBuf> {
    validate_host(&donor.host).map_err(|e| failed(donor, e.to_string()))?;
    let staging = fresh_staging(ctx.options)?;
    let user = ctx.image.server_user();
    if let Some(u) = &user {
        crate::fsutil::chown_tree(&staging, u)?;
    }
    let seed = staging.join("seed");
    let target = staging.join("data");
    let target_text = target.display().to_string();
    if target_text.contains(['\'', '\\']) {
        return Err(failed(
            donor,
            format!("the data volume's path {target_text} holds a quote or backslash"),
        ));
    }
    // A scratch server to run CLONE INSTANCE on: initialized, reachable on its own socket
    // only, its binary log off.
    let mut init = ctx.image.command(&ctx.image.server());
    init.arg(format!("--defaults-file={}", ctx.cnf.display()))
        .arg("--initialize-insecure")
        .arg(format!("--datadir={}", seed.display()))
        .arg("--skip-log-bin")
        .arg("--super-read-only=OFF")
        .arg("--read-only=OFF");
    run_logged(
        init,
        &ctx.options.run_dir.join("provision.log"),
        "initializing the clone's scratch server",
    )
    .await?;
    let socket = ctx.options.run_dir.join("clone.sock");
    let mut scratch = Server::spawn(
        ctx.image,
        ctx.cnf,
        &[
            format!("--datadir={}", seed.display()),
            format!("--socket={}", socket.display()),
            format!(
                "--pid-file={}",
                ctx.options.run_dir.join("clone.pid").display()
            ),
            "--skip-networking".into(),
            "--skip-log-bin".into(),
        ],
        Some(&ctx.options.run_dir.join("provision.log")),
    )?;
    let local = Local::new(&socket);
    scratch.wait_ready(&local, Duration::from_secs(600)).await?;
    let outcome = async {
        let mut conn = local.connect(LOCAL_TIMEOUT).await?;
        let donor_addr = format!("{}:{}", donor.host, donor.port);
        local::exec_bound(
            &mut conn,
            "allow the donor",
            "SET GLOBAL clone_valid_donor_list = ?",
            &donor_addr,
            LOCAL_TIMEOUT,
        )
        .await?;
        let sql = format!(
            "CLONE INSTANCE FROM {}@{}:{} IDENTIFIED BY {} DATA DIRECTORY = {}",
            quote_literal(&ctx.account.user),
            quote_literal(&donor.host),
            donor.port,
            quote_literal(ctx.account.password.expose()),
            quote_literal(&target_text),
        );
        tracing::info!(donor = %donor_addr, "cloning");
        // As long as it takes: the operator's startup window and a SIGTERM bound it.
        local::exec(
            &mut conn,
            "clone the donor",
            sql,
            &[ctx.account.password.expose()],
            Duration::from_secs(365 * 24 * 3600),
        )
        .await
        .map_err(|e| failed(donor, e.to_string()))?;
        let cloned = local::scalar(
            &mut conn,
            "read how much was cloned",
            "SELECT CAST(COALESCE(SUM(DATA), 0) AS CHAR) FROM performance_schema.clone_progress",
            LOCAL_TIMEOUT,
        )
        .await
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = cloned {
            ctx.bytes.store(n, Ordering::Relaxed);
        }
        local::close(conn).await;
        Ok(())
    }
    .await;
    scratch.stop(Duration::from_secs(300)).await?;
    outcome?;
    std::fs::remove_dir_all(&seed).map_err(Error::io("remove", &seed))?;
    Pending {
        donor: donor_label(donor),
        gtid: None,
    }
    .write(&target)?;
    Ok(target)
}

/// Streams the MariaDB donor's backup into `<staging>/data`, prepares it and returns that
/// directory, marked [`Pending`] with the copy's GTID position.
///
/// # Errors
/// [`Error::Provision`] naming the failing step.
pub async fn receive_mariadb_backup(ctx: &Context<'_>, donor: &Donor) -> Result<PathBuf> {
    validate_host(&donor.host).map_err(|e| failed(donor, e.to_string()))?;
    let staging = fresh_staging(ctx.options)?;
    let target = staging.join("data");
    std::fs::create_dir_all(&target).map_err(Error::io("create directory", &target))?;
    let log = ctx.options.run_dir.join("provision.log");

    let mbstream = ctx.image.tool("mbstream")?;
    let mut extract = ctx.image.command(&mbstream);
    extract
        .arg("-x")
        .arg("-C")
        .arg(&target)
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    redirect(&mut extract, &log)?;
    let mut extractor = extract.spawn().map_err(|source| Error::Spawn {
        what: "extracting the donor's backup",
        program: mbstream.clone(),
        source,
    })?;
    let mut stdin = extractor
        .stdin
        .take()
        .ok_or_else(|| failed(donor, "mbstream has no standard input"))?;

    let streamed = fetch_backup(donor, ctx.account, &mut stdin, &ctx.bytes).await;
    drop(stdin);
    let status = extractor
        .wait()
        .await
        .map_err(Error::io("wait for", &mbstream))?;
    let donor_tables = streamed.map_err(|detail| failed(donor, detail))?;
    if !status.success() {
        return Err(failed(
            donor,
            format!(
                "mbstream -x failed ({status}); its output is in {}",
                log.display()
            ),
        ));
    }

    let backup = ctx.image.tool("mariadb-backup")?;
    let mut prepare = ctx.image.command(&backup);
    prepare
        .arg("--no-defaults")
        .arg("--prepare")
        .arg(format!("--target-dir={}", target.display()));
    run_logged(prepare, &log, "mariadb-backup --prepare")
        .await
        .map_err(|e| failed(donor, e.to_string()))?;

    let gtid = copy_position(&target).map_err(|detail| failed(donor, detail))?;
    // The copy's system tables are the donor's: so is their upgrade record.
    if let Some(version) = donor_tables {
        crate::upgrade::write_upgrade_info(&target, version)?;
    }
    Pending {
        donor: donor_label(donor),
        gtid: Some(gtid),
    }
    .write(&target)?;
    if let Some(u) = ctx.image.server_user() {
        crate::fsutil::chown_tree(&target, &u)?;
    }
    Ok(target)
}

/// The copy's GTID position from the backup's binary log record (`FILE POSITION GTID`).
fn copy_position(datadir: &Path) -> Result<String, String> {
    let names = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"];
    let text = names
        .iter()
        .find_map(|n| std::fs::read_to_string(datadir.join(n)).ok())
        .ok_or_else(|| {
            format!(
                "the backup has no binary log position ({}): is the donor's binary log on?",
                names.join(", ")
            )
        })?;
    let gtid = text.split_whitespace().nth(2).unwrap_or("").to_owned();
    if !gtid
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
    {
        return Err(format!(
            "the backup's GTID position {gtid:?} is not a GTID list"
        ));
    }
    Ok(gtid)
}

/// `GET /backup` from the donor's agent into `sink`, counting bytes; the version of the
/// donor's system-table upgrade record, when it sent one. The error says what failed; a
/// stream cut short (the donor's backup failed) is an error.
async fn fetch_backup(
    donor: &Donor,
    account: &Account,
    sink: &mut tokio::process::ChildStdin,
    bytes: &AtomicU64,
) -> Result<Option<Version>, String> {
    let addr = format!("{}:{}", donor.host, donor.agent_port);
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((donor.host.as_str(), donor.agent_port)),
    )
    .await
    .map_err(|_| format!("the donor's agent at {addr} did not accept a connection within 10 s"))?
    .map_err(|e| format!("could not reach the donor's agent at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP to {addr}: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get("/backup")
        .header(http::header::HOST, &addr)
        .header(
            http::header::AUTHORIZATION,
            crate::http::basic_auth(&account.user, account.password.expose()),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET /backup on {addr}: {e}"))?;
    let status = response.status();
    let donor_tables = response
        .headers()
        .get(crate::donor::UPGRADE_INFO_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Version::parse(v).ok());
    let mut body = response.into_body();
    if status != http::StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        driver.abort();
        return Err(format!("GET /backup on {addr} answered {status}: {text}"));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            format!(
                "the backup stream from {addr} broke after {} bytes: {e}",
                bytes.load(Ordering::Relaxed)
            )
        })?;
        if let Ok(data) = frame.into_data() {
            sink.write_all(&data)
                .await
                .map_err(|e| format!("mbstream stopped reading: {e}"))?;
            bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
    sink.flush().await.map_err(|e| format!("mbstream: {e}"))?;
    driver.abort();
    Ok(donor_tables)
}

/// Sends a command's output to `log` (appended).
fn redirect(cmd: &mut tokio::process::Command, log: &Path) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("open", log))?;
    let err = out.try_clone().map_err(Error::io("open", log))?;
    cmd.stdout(out).stderr(err);
    Ok(())
}

/// Runs a command to completion with its output in `log`.
async fn run_logged(
    mut cmd: tokio::process::Command,
    log: &Path,
    what: &'static str,
) -> Result<()> {
    redirect(&mut cmd, log)?;
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let status = cmd.status().await.map_err(|source| Error::Spawn {
        what,
        program: log.to_path_buf(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            what,
            status: status.to_string(),
            detail: format!("its output is in {}", log.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copys_position_is_the_third_field() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            copy_position(dir.path())
                .unwrap_err()
                .contains("binary log")
        );
        std::fs::write(
            dir.path().join("xtrabackup_binlog_info"),
            "binlog.000002\t543\t0-1-4,1-2-9\n",
        )
        .unwrap();
        assert_eq!(copy_position(dir.path()).unwrap(), "0-1-4,1-2-9");
        std::fs::write(dir.path().join("mariadb_backup_binlog_info"), "b.1 4 x'\n").unwrap();
        assert!(copy_position(dir.path()).is_err());
    }

    #[test]
    fn the_marker_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Pending::read(dir.path()), None);
        let p = Pending {
            donor: "db-0:3306".into(),
            gtid: Some("0-1-4".into()),
        };
        p.write(dir.path()).unwrap();
        assert_eq!(Pending::read(dir.path()), Some(p));
        Pending::clear(dir.path()).unwrap();
        Pending::clear(dir.path()).unwrap();
        assert_eq!(Pending::read(dir.path()), None);
    }
}
