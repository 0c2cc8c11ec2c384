//! The donor's side of MariaDB provisioning: `GET /backup` streams
//! `mariadb-backup --backup --stream=xbstream` of the running server.
//!
//! Only the replication account may ask (HTTP Basic, compared in constant time), one backup
//! at a time, and only while the server runs. The body is sent chunked as the backup
//! produces it, through a small bounded channel (memory stays flat whatever the data size);
//! when `mariadb-backup` fails, the body ends with an error, which cuts the connection
//! before the last chunk, so the recipient sees a broken stream rather than a short copy.
//! A recipient that goes away ends the backup.
//!
//! The answer carries the donor's system-table upgrade record ([`UPGRADE_INFO_HEADER`]):
//! `mariadb-backup` does not copy `mariadb_upgrade_info`, and the copy's system tables are
//! the donor's, so the recipient writes the same record into the copy and runs
//! `mariadb-upgrade` only when its own series is newer (as for any data directory).

use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use switchyard_plan::versions::Flavor;
use tokio::io::AsyncReadExt as _;

use crate::http::{Body, basic_auth, text};
use crate::status::{Phase, Shared};

/// The response header of `GET /backup` holding the donor's upgrade record
/// (`mariadb_upgrade_info`, `10.11.14-MariaDB`), absent when it has none.
pub const UPGRADE_INFO_HEADER: &str = "switchyard-upgrade-info";

/// A body fed by a channel.
struct Channel(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for Channel {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// Equal in constant time (for the same length).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Clears the "a backup is streaming" flag when dropped.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.backup_running.store(false, Ordering::SeqCst);
    }
}

pub(crate) async fn backup(headers: &HeaderMap, shared: &Arc<Shared>) -> Response<Body> {
    if shared.flavor() != Flavor::Mariadb {
        return text(
            StatusCode::NOT_FOUND,
            "MySQL instances are provisioned with CLONE INSTANCE from the donor's server, not from its agent",
        );
    }
    // The Secret as mounted now: after a password rotation, recipients ask with the new
    // replication password.
    let repl = shared.secrets().replication;
    let expected = basic_auth(&repl.user, repl.password.expose());
    let phase = shared.state().phase;
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same(given, expected.as_bytes()) {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "GET /backup needs the replication account's credentials (HTTP Basic)",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"switchyard-agent\""),
        );
        return r;
    }
    if phase != Phase::Running {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no backup: the server is not running here ({})",
                phase.as_str()
            ),
        );
    }
    if shared.backup_running.swap(true, Ordering::SeqCst) {
        return text(
            StatusCode::CONFLICT,
            "another backup is streaming from this instance",
        );
    }
    let running = Running(shared.clone());
    let program = match shared.image.tool("mariadb-backup") {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let options = &shared.options;
    let work = options
        .tmp_dir
        .join(format!("switchyard-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let log_path = options.run_dir.join("backup.log");
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", log_path.display()),
            );
        }
    };
    let mut cmd = shared.image.command(&program);
    cmd.arg(format!("--defaults-file={}", options.cnf_path().display()))
        .arg("--backup")
        .arg("--stream=xbstream")
        .arg(format!("--target-dir={}", work.display()))
        .arg("--user=root")
        .arg(format!("--socket={}", options.socket().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not run {}: {e}", program.display()),
            );
        }
    };
    let Some(mut stdout) = child.stdout.take() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mariadb-backup has no standard output",
        );
    };
    tracing::info!("streaming a backup");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let _running = running;
        let mut sent: u64 = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        tracing::warn!(sent, "the recipient went away: backup stopped");
                        let _ = child.kill().await;
                        let _ = std::fs::remove_dir_all(&work);
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    let _ = child.kill().await;
                    let _ = std::fs::remove_dir_all(&work);
                    return;
                }
            }
        }
        let status = child.wait().await;
        let _ = std::fs::remove_dir_all(&work);
        match status {
            Ok(s) if s.success() => tracing::info!(sent, "backup streamed"),
            other => {
                let detail = match other {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(%detail, log = %log_path.display(), "mariadb-backup failed");
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "mariadb-backup failed ({detail}); its log is {} on the donor",
                        log_path.display()
                    ))))
                    .await;
            }
        }
    });
    let mut reply = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(info) = crate::upgrade::read_upgrade_info(&options.datadir())
        && info.version.is_some()
        && let Ok(value) = header::HeaderValue::from_str(&info.text)
    {
        reply = reply.header(UPGRADE_INFO_HEADER, value);
    }
    reply.body(Channel(rx).boxed()).unwrap_or_else(|_| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not build the response",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_compare_whole() {
        assert!(same(b"Basic abc", b"Basic abc"));
        assert!(!same(b"Basic abd", b"Basic abc"));
        assert!(!same(b"Basic ab", b"Basic abc"));
        assert!(!same(b"", b"Basic abc"));
    }
}
