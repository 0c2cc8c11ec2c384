//! The server process, the agent's child: started with the rendered my.cnf (its error log on
//! the agent's standard error, which is the container's log), waited for until it answers,
//! and stopped cleanly with SIGTERM (a paused server is resumed first), SIGKILL only past a
//! bound. It is killed if its handle drops without a stop (the agent itself failing).

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::local::{self, Local};

/// A running server process.
#[derive(Debug)]
pub struct Server {
    child: tokio::process::Child,
    pid: u32,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Starts the image's server with `--defaults-file=cnf` and `args` after it, its output
    /// appended to `log` (else on the agent's standard error).
    ///
    /// # Errors
    /// [`Error::Spawn`], [`Error::Io`] for the log.
    pub fn spawn(image: &Image, cnf: &Path, args: &[String], log: Option<&Path>) -> Result<Server> {
        let program = image.server();
        let mut cmd = image.command(&program);
        cmd.arg(format!("--defaults-file={}", cnf.display()))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(log) = log {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(Error::io("open", log))?;
            let err = out.try_clone().map_err(Error::io("open", log))?;
            cmd.stdout(out).stderr(err);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            what: "starting the server",
            program,
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(pid, "server started");
        Ok(Server {
            child,
            pid,
            exited: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until the server answers `SELECT 1` on `local`, or fails if it exits first or
    /// `limit` passes.
    ///
    /// # Errors
    /// [`Error::Server`] when it exited, [`Error::Timeout`] after `limit`.
    pub async fn wait_ready(&mut self, local: &Local, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("not tried yet");
        loop {
            if let Some(status) = self.try_exited()? {
                return Err(Error::Server {
                    what: "exited while starting",
                    detail: format!("{status} (its log is the container's log; last: {last})"),
                });
            }
            match local.connect(Duration::from_secs(5)).await {
                Ok(mut conn) => {
                    let answered = local::scalar(
                        &mut conn,
                        "answer SELECT 1",
                        "SELECT 1",
                        local::LOCAL_TIMEOUT,
                    )
                    .await;
                    local::close(conn).await;
                    match answered {
                        Ok(_) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() > limit {
                return Err(Error::Timeout {
                    what: "the server answering",
                    waited: started.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status once the process has ended, without waiting.
    ///
    /// # Errors
    /// [`Error::Server`] when it cannot be asked.
    pub fn try_exited(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|e| Error::Server {
                what: "could not be waited for",
                detail: e.to_string(),
            })?;
        }
        Ok(self.exited)
    }

    /// Waits until the process ends by itself.
    pub async fn exited(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        // An error means it is not our child any more: report it as failed.
        let status = self
            .child
            .wait()
            .await
            .unwrap_or_else(|_| ExitStatus::from_raw(255 << 8));
        self.exited = Some(status);
        status
    }

    /// Stops the server: SIGCONT (a paused server would not see the next signal) and
    /// SIGTERM (a normal shutdown; `innodb_fast_shutdown` as the operator last set it), then
    /// waits up to `limit` before SIGKILL.
    ///
    /// # Errors
    /// [`Error::Server`] when it had to be killed.
    pub async fn stop(&mut self, limit: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exited()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
        let _ = signal::kill(pid, Signal::SIGCONT);
        let _ = signal::kill(pid, Signal::SIGTERM);
        tracing::info!(pid = self.pid, "stopping the server (SIGTERM)");
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.exited = Some(status);
                tracing::info!(%status, "server stopped");
                Ok(status)
            }
            _ => {
                let _ = self.child.kill().await;
                Err(Error::Server {
                    what: "did not stop",
                    detail: format!("still running {limit:?} after SIGTERM: killed"),
                })
            }
        }
    }
}
