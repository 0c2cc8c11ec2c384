//! One container's process: started in its pod's network namespace, in namespaces of its own
//! (mount, PID, UTS, IPC), chrooted into a writable layer over its image's root with the pod's
//! volumes bind-mounted; signalled and killed by pid.
//!
//! The chain, each step `exec`ing the next so the pids stay put:
//! `nsenter --net=/run/netns/POD` → `unshare --mount --uts --ipc --pid --fork --kill-child`
//! (which forks the container's PID 1) → `sh -c SETUP` → `unshare --root=ROOT --wd=DIR` → the
//! command. `SETUP` mounts a tmpfs on the container's scratch folder, an overlay (the image's
//! root read-only below, a tmpfs layer above, as a container runtime's writable layer) as the
//! root, links the merged-`/usr` folders a Debian root lacks (`/lib64` → `usr/lib64`), `/dev`
//! (null, zero, full, random, urandom, tty, shm), `/proc`, `/sys`, the kubelet's files
//! (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` are links into `/.kubelet`, which the
//! kubelet rewrites), then each volume, and sets the hostname. Every mount lives in the
//! container's mount namespace and disappears with its last process: nothing is mounted on
//! the host. When the container's PID 1 dies the kernel kills every process of its PID
//! namespace (an agent's server too), and `--kill-child` kills PID 1 when the outer `unshare`
//! dies, so killing either pid ends the whole container.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::host;

/// A bind mount into the container.
#[derive(Clone, Debug)]
pub(crate) struct Mount {
    /// The folder or file on the host.
    pub(crate) source: PathBuf,
    /// The absolute path inside the container.
    pub(crate) target: String,
    /// Mounted read-only.
    pub(crate) read_only: bool,
}

/// Everything a container start needs.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    /// The pod's network namespace.
    pub(crate) netns: &'a str,
    /// An empty folder of the container on the host (its root's mount point).
    pub(crate) scratch: &'a Path,
    /// The image's root (the overlay's lower layer).
    pub(crate) image: &'a Path,
    /// The pod's kubelet-managed files (`hosts`, `resolv.conf`, `hostname`).
    pub(crate) kubelet_files: &'a Path,
    /// The pod's hostname.
    pub(crate) hostname: &'a str,
    /// The volumes, in the order they are mounted.
    pub(crate) mounts: &'a [Mount],
    /// The command and its arguments.
    pub(crate) argv: &'a [String],
    /// The environment, in order.
    pub(crate) env: &'a [(String, String)],
    /// The working folder inside the container.
    pub(crate) workdir: Option<&'a str>,
    /// `runAsUser`.
    pub(crate) user: Option<i64>,
    /// `runAsGroup`.
    pub(crate) group: Option<i64>,
    /// Where the container's output goes (appended).
    pub(crate) log: &'a Path,
}

/// The pids of every container process alive, shared with the kubelet's `Drop`.
pub(crate) type Registry = Arc<Mutex<std::collections::BTreeMap<u32, Option<u32>>>>;

/// A running container.
#[derive(Debug)]
pub(crate) struct Process {
    child: tokio::process::Child,
    /// The outer `unshare`'s pid.
    pub(crate) outer: u32,
    /// The container's PID 1, as the host numbers it.
    pub(crate) init: Option<u32>,
    registry: Registry,
    log: PathBuf,
}

/// Whether the container's log ends with the outer `unshare`'s word that its PID 1 died of
/// SIGKILL.
fn log_ends_with_sigkill(log: &Path) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(200)));
    let mut tail = String::new();
    let _ = f.read_to_string(&mut tail);
    tail.trim_end()
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("unshare: sigprocmask unblock failed"))
}

/// `path` inside the image root `root`, with every symbolic link on the way resolved inside
/// the root (an absolute link target is taken from the root, `..` never climbs out of it),
/// relative to the root. Keeps a volume's mount point from following a link of the image to
/// a folder of the host.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        match std::fs::read_link(root.join(&candidate)) {
            Ok(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut parts: Vec<String> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".to_owned()),
                        _ => None,
                    })
                    .collect();
                parts.reverse();
                pending.extend(parts);
            }
            _ => resolved = candidate,
        }
    }
    resolved
}

/// The setup script (see the module documentation). `$@` is the container's command.
fn setup_script(l: &Launch<'_>, unshare: &str) -> String {
    use host::sh_quote as q;
    let scratch = l.scratch.display().to_string();
    let mut s = String::new();
    s.push_str("set -e\n");
    // Host programs during the setup; the container's own PATH for its command.
    s.push_str("if [ \"${PATH+set}\" = set ]; then SYK_HAD_PATH=1; SYK_PATH=\"$PATH\"; fi\n");
    s.push_str(&format!("PATH={}\n", q(host::HOST_PATH)));
    s.push_str(&format!("C={}\n", q(&scratch)));
    s.push_str("mount -t tmpfs -o mode=0755 kubelet \"$C\"\n");
    s.push_str("mkdir \"$C/upper\" \"$C/work\" \"$C/root\"\n");
    let lower = l.image.display().to_string();
    s.push_str(&format!(
        "mount -t overlay overlay -o {}\"$C/upper,workdir=$C/work\" \"$C/root\"\n",
        q(&format!("lowerdir={lower},upperdir="))
    ));
    s.push_str("cd \"$C/root\"\n");
    s.push_str(
        "for l in bin sbin lib lib64 lib32 libx32; do \
         if [ ! -e \"$l\" ] && [ ! -L \"$l\" ] && [ -d \"usr/$l\" ]; then ln -s \"usr/$l\" \"$l\"; fi; done\n",
    );
    s.push_str("mkdir -p etc dev proc sys tmp run var/tmp .kubelet\n");
    s.push_str("chmod 1777 tmp var/tmp\n");
    s.push_str(
        "[ -e etc/passwd ] || printf '%s\\n' 'root:x:0:0:root:/root:/bin/sh' \
         'mysql:x:999:999::/var/lib/mysql:/bin/false' > etc/passwd\n",
    );
    s.push_str("[ -e etc/group ] || printf '%s\\n' 'root:x:0:' 'mysql:x:999:' > etc/group\n");
    s.push_str(
        "[ -e etc/nsswitch.conf ] || printf '%s\\n' 'passwd: files' 'group: files' \
         'hosts: files dns' > etc/nsswitch.conf\n",
    );
    s.push_str("for f in hosts resolv.conf hostname; do rm -f \"etc/$f\"; ln -s \"/.kubelet/$f\" \"etc/$f\"; done\n");
    s.push_str(&format!(
        "mount --bind {} .kubelet\nmount -o remount,bind,ro .kubelet\n",
        q(&l.kubelet_files.display().to_string())
    ));
    s.push_str("mount -t tmpfs -o mode=0755,nosuid dev dev\n");
    s.push_str(
        "for n in null zero full random urandom tty; do : > \"dev/$n\"; mount --bind \"/dev/$n\" \"dev/$n\"; done\n",
    );
    s.push_str("mkdir dev/shm dev/pts\nmount -t tmpfs -o mode=1777,nosuid,nodev shm dev/shm\n");
    s.push_str("ln -s /proc/self/fd dev/fd; ln -s /proc/self/fd/0 dev/stdin; ln -s /proc/self/fd/1 dev/stdout; ln -s /proc/self/fd/2 dev/stderr\n");
    s.push_str("mount -t proc proc proc\n");
    s.push_str("mount -t sysfs -o ro sysfs sys\n");
    for m in l.mounts {
        let target = resolve_in_root(l.image, &m.target).display().to_string();
        let target = if target.is_empty() {
            ".".to_owned()
        } else {
            target
        };
        let qt = q(&target);
        if m.source.is_dir() {
            s.push_str(&format!("mkdir -p {qt}\n"));
        } else {
            s.push_str(&format!(
                "mkdir -p \"$(dirname {qt})\"; [ -e {qt} ] || : > {qt}\n"
            ));
        }
        s.push_str(&format!(
            "mount --bind {} {qt}\n",
            q(&m.source.display().to_string())
        ));
        if m.read_only {
            s.push_str(&format!("mount -o remount,bind,ro {qt}\n"));
        }
    }
    s.push_str(&format!(
        "printf '%s' {} > /proc/sys/kernel/hostname\n",
        q(l.hostname)
    ));
    s.push_str("if [ -n \"${SYK_HAD_PATH-}\" ]; then PATH=\"$SYK_PATH\"; else unset PATH; fi\n");
    s.push_str("unset SYK_HAD_PATH SYK_PATH C\n");
    let mut exec = format!(
        "exec {} --root=\"$PWD\" --wd={}",
        q(unshare),
        q(l.workdir.unwrap_or("/"))
    );
    if let Some(g) = l.group.or(l.user) {
        exec.push_str(&format!(" --setgid {g}"));
    }
    if let Some(u) = l.user {
        exec.push_str(&format!(" --setuid {u}"));
    }
    exec.push_str(" -- \"$@\"\n");
    s.push_str(&exec);
    s
}

fn program_path(name: &str) -> String {
    for dir in host::HOST_PATH.split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p.display().to_string();
        }
    }
    name.to_owned()
}

impl Process {
    /// Starts the container. Its PID 1 is known once the outer `unshare` forked it.
    pub(crate) async fn start(l: &Launch<'_>, registry: &Registry) -> Result<Process> {
        if l.argv.is_empty() {
            return Err(Error::Image {
                image: l.image.display().to_string(),
                reason: "no command to run".into(),
            });
        }
        std::fs::create_dir_all(l.scratch).map_err(Error::io("create", l.scratch))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(l.log)
            .map_err(Error::io("open", l.log))?;
        let log2 = log.try_clone().map_err(Error::io("open", l.log))?;
        let unshare = program_path("unshare");
        let script = setup_script(l, &unshare);
        let mut cmd = tokio::process::Command::new(program_path("nsenter"));
        cmd.arg(format!("--net=/run/netns/{}", l.netns))
            .arg("--")
            .arg(&unshare)
            .args([
                "--mount",
                "--uts",
                "--ipc",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
            ])
            .arg(&script)
            .arg("sh")
            .args(l.argv)
            .env_clear()
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: "nsenter".into(),
            source,
        })?;
        let outer = child.id().unwrap_or(0);
        registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(outer, None);
        let mut process = Process {
            child,
            outer,
            init: None,
            registry: registry.clone(),
            log: l.log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while process.init.is_none() && Instant::now() < deadline {
            if let Some(&init) = host::children(outer).first() {
                process.init = Some(init);
                registry
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(outer, Some(init));
                break;
            }
            if !host::alive(outer) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(process)
    }

    /// Asks the container to stop (SIGTERM to its PID 1).
    pub(crate) fn terminate(&self) {
        if let Some(init) = self.init {
            host::signal(init, Signal::SIGTERM);
        }
    }

    /// Kills the container and everything in it at once (SIGKILL).
    pub(crate) fn kill(&self) {
        if let Some(init) = self.init {
            host::signal(init, Signal::SIGKILL);
        }
        host::signal(self.outer, Signal::SIGKILL);
    }

    /// Waits for the container to end; its exit code (128 + the signal when killed).
    ///
    /// The outer `unshare` exits with its PID 1's code, and re-raises the signal that killed
    /// it, except SIGKILL, whose handler it cannot reset: it then prints "sigprocmask
    /// unblock failed" and exits 1, which is read back as 137.
    pub(crate) async fn wait(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt as _;
        let status = self.child.wait().await;
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.outer);
        let code = match status {
            Ok(s) => s
                .code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(-1),
            Err(_) => -1,
        };
        if code == 1 && log_ends_with_sigkill(&self.log) {
            return 137;
        }
        code
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.outer);
    }
}

/// Runs `argv` inside the container whose PID 1 is `init` (its mount, PID, network, UTS and
/// IPC namespaces, its root and working folder) with `env`, for at most `timeout`. Returns
/// the exit code (None when it timed out) and what it printed.
pub(crate) async fn exec_in(
    init: u32,
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(Option<i32>, String)> {
    let mut cmd = tokio::process::Command::new(program_path("nsenter"));
    cmd.arg(format!("--target={init}"))
        .args([
            "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--",
        ])
        .args(argv)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        program: "nsenter".into(),
        source,
    })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok((Some(out.status.code().unwrap_or(-1)), text))
        }
        Ok(Err(e)) => Err(Error::Spawn {
            program: "nsenter".into(),
            source: e,
        }),
        Err(_) => Ok((None, String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_resolve_inside_the_root() {
        let root = std::env::temp_dir().join(format!("syk-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../etc", root.join("var/up")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/var/run/mysqld"),
            PathBuf::from("run/mysqld")
        );
        assert_eq!(
            resolve_in_root(&root, "/var/up/x"),
            PathBuf::from("etc/x"),
            "`..` stops at the root"
        );
        assert_eq!(
            resolve_in_root(&root, "/var/lib/mysql"),
            PathBuf::from("var/lib/mysql")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
