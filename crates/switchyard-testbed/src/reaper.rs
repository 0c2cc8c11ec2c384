//! Cleans up after test processes that died without dropping their
//! clusters (killed by a timeout, aborted, interrupted).
//!
//! Every server the testbed starts is recorded in `pids/PID` under the
//! cache: the process that owns it (pid and start time) and its option
//! file. Before a cluster starts, [`sweep`] kills the process group of
//! every recorded server whose owner is gone, and removes the orphaned
//! cluster folder. A record whose server is gone, or whose pid now belongs
//! to another program, is just removed.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::cache;

fn dir() -> PathBuf {
    cache::testbed_dir().join("pids")
}

/// The start time of process `pid` (clock ticks since boot), from
/// `/proc/PID/stat`.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces; the start time is field 22 overall, the 20th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Records a server just started by this process. `cnf` is its option
/// file (on its command line), `cluster_dir` the folder to remove if it is
/// ever orphaned.
pub(crate) fn register(pid: u32, cnf: &Path, cluster_dir: &Path) {
    let me = std::process::id();
    let Some(started) = start_time(me) else {
        return;
    };
    let dir = dir();
    if cache::create_dir_all(&dir).is_err() {
        return;
    }
    let record = format!(
        "owner={me}\nowner_start={started}\ncnf={}\ncluster_dir={}\n",
        cnf.display(),
        cluster_dir.display()
    );
    // Best effort: a missing record only loses the orphan cleanup.
    let _ = fs::write(dir.join(pid.to_string()), record);
}

/// Forgets a server that this process stopped.
pub(crate) fn unregister(pid: u32) {
    let _ = fs::remove_file(dir().join(pid.to_string()));
}

/// Kills servers whose owning process is gone; returns how many.
pub fn sweep() -> usize {
    let Ok(entries) = fs::read_dir(dir()) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
        };
        let (Some(owner), Some(owner_start), Some(cnf)) =
            (field("owner"), field("owner_start"), field("cnf"))
        else {
            let _ = fs::remove_file(&path);
            continue;
        };
        let owner_alive = owner
            .parse::<u32>()
            .ok()
            .and_then(start_time)
            .is_some_and(|t| t.to_string() == owner_start);
        if owner_alive {
            continue;
        }
        let ours = cmdline(pid).is_some_and(|c| c.contains(&format!("--defaults-file={cnf}")));
        if ours {
            let target = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            let _ = signal::killpg(target, Signal::SIGKILL);
            let _ = signal::kill(target, Signal::SIGKILL);
            killed += 1;
            eprintln!(
                "switchyard-testbed: killed orphaned server pid {pid} (its test process {owner} is gone)"
            );
        }
        if let Some(cluster_dir) = field("cluster_dir") {
            let cluster_dir = PathBuf::from(cluster_dir);
            let is_ours = cluster_dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("switchyard-testbed-"));
            if is_ours && !referenced_elsewhere(&cluster_dir, &path) {
                let _ = fs::remove_dir_all(&cluster_dir);
            }
        }
        let _ = fs::remove_file(&path);
    }
    killed
}

/// Whether a record other than `except` names `dir` as its cluster folder
/// (the cluster's other servers, handled when their record comes up).
fn referenced_elsewhere(dir: &Path, except: &Path) -> bool {
    let needle = format!("cluster_dir={}", dir.display());
    fs::read_dir(self::dir())
        .map(|entries| {
            entries.flatten().any(|e| {
                e.path() != except
                    && fs::read_to_string(e.path()).is_ok_and(|t| t.lines().any(|l| l == needle))
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
    use std::process::Command;

    /// A process whose command line carries `--defaults-file=CNF`, in its
    /// own process group, like a server.
    fn fake_server(cnf: &Path) -> std::process::Child {
        Command::new("sh")
            .arg("-c")
            .arg("sleep 600; :")
            .arg("sh")
            .arg(format!("--defaults-file={}", cnf.display()))
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[test]
    fn kills_servers_of_dead_owners_only() {
        let cluster = tempfile::Builder::new()
            .prefix("switchyard-testbed-")
            .tempdir()
            .unwrap()
            .keep();
        let orphan_cnf = cluster.join("n0/my.cnf");
        let mut orphan = fake_server(&orphan_cnf);
        // An owner that has exited.
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        cache::create_dir_all(&dir()).unwrap();
        fs::write(
            dir().join(orphan.id().to_string()),
            format!(
                "owner={gone_pid}\nowner_start=1\ncnf={}\ncluster_dir={}\n",
                orphan_cnf.display(),
                cluster.display()
            ),
        )
        .unwrap();

        // A server of a live owner (this process) is left alone.
        let kept_cnf = cluster.join("n1/my.cnf");
        let mut kept = fake_server(&kept_cnf);
        let kept_dir = tempfile::tempdir().unwrap();
        register(kept.id(), &kept_cnf, kept_dir.path());

        sweep();
        let status = orphan.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(!dir().join(orphan.id().to_string()).exists());
        assert!(
            !cluster.exists(),
            "the orphaned cluster folder was not removed"
        );
        assert_eq!(
            kept.try_wait().unwrap(),
            None,
            "a live owner's server was killed"
        );
        assert!(dir().join(kept.id().to_string()).exists());

        let _ = nix::sys::signal::killpg(
            Pid::from_raw(i32::try_from(kept.id()).unwrap()),
            Signal::SIGKILL,
        );
        kept.wait().unwrap();
        unregister(kept.id());
    }

    #[test]
    fn reads_own_start_time() {
        let t = start_time(std::process::id()).unwrap();
        assert!(t > 0);
        assert_eq!(start_time(std::process::id()), Some(t));
    }
}
