//! `switchyard agent` as the pod runs it: `agent install --to /switchyard` in one root, then
//! the installed copy run through its own loader inside a chroot of a MariaDB 10.5 suite
//! root (Debian bullseye: an older C library than the one the binary was built against), at
//! the image's own paths. It bootstraps the instance, serves its probes, and stops the
//! server cleanly on SIGTERM. Also: unusable configuration exits 64 with the reason.
//!
//! The chroot needs root (bind mounts in a mount namespace of its own, `unshare` and
//! `chroot` from util-linux and coreutils); the test runs as root on this project's
//! machines and says so when it cannot.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_testbed::{ServerKind, allocate_port};

const WAIT: Duration = Duration::from_secs(180);

/// Kills the process group of the chrooted agent (the agent and its server) on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.trim().to_owned()))
}

fn wait_until<T>(what: &str, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < WAIT,
            "{what}: not within {WAIT:?}; the agent's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_installed_copy_runs_the_instance_in_a_chroot_of_another_c_library() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test assembles a chroot and must run as root"
    );
    let suite = switchyard_testbed::binaries(ServerKind::Mariadb105).unwrap();
    let root = tempfile::Builder::new()
        .prefix("switchyard-chroot-")
        .tempdir()
        .unwrap();
    let r = root.path();

    // The install init container: into the shared volume, from this build's binary.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["agent", "install", "--to"])
        .arg(r.join("switchyard"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let loader = r.join("switchyard/lib/ld-linux-x86-64.so.2");
    assert!(loader.is_file(), "the loader is copied");
    assert!(
        r.join("switchyard/lib/libc.so.6").is_file(),
        "the C library is copied"
    );

    // The pod's volumes, ConfigMap and Secret.
    let mysql_port = allocate_port().unwrap();
    let agent_port = allocate_port().unwrap();
    write(
        &r.join("etc-switchyard/config/my.cnf"),
        "[mysqld]\nlog_bin = mariadb-bin\nbinlog_format = ROW\nlog_slave_updates = ON\n\
         gtid_strict_mode = ON\nskip_name_resolve = ON\ninnodb_buffer_pool_size = 64M\n\
         innodb_log_file_size = 32M\n",
    );
    write(
        &r.join("etc-switchyard/config/instance.json"),
        r#"{"revision":"r1","server_id":1001,"bootstrap":true,"provision_from":null,"replicate_from":null,"max_lag_seconds":30}"#,
    );
    for (k, v) in [
        ("operator-user", "switchyard"),
        ("operator-password", "Op3ratorPassw0rd"),
        ("replication-user", "repl"),
        ("replication-password", "R3plicationPassw0rd"),
    ] {
        write(&r.join("etc-switchyard/secrets").join(k), v);
    }
    for d in ["var/lib/mysql", "run/mysqld", "tmp", "dev", "proc"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }

    // The image: the suite's directories bound read-only, its /etc copied (the pod mounts
    // the ConfigMap and the Secret under it).
    let mut script = String::from("set -e\n");
    let s = suite.root();
    for d in ["usr", "bin", "sbin", "lib", "lib64"] {
        let from = s.join(d);
        let to = r.join(d);
        if from.is_symlink() {
            let target = std::fs::read_link(&from).unwrap();
            std::os::unix::fs::symlink(target, &to).unwrap();
        } else if from.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            script.push_str(&format!(
                "mount --bind '{0}' '{1}'\nmount -o remount,bind,ro '{1}'\n",
                from.display(),
                to.display()
            ));
        }
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(s.join("etc"))
        .arg(r.join("etc"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::rename(r.join("etc-switchyard"), r.join("etc/switchyard")).unwrap();
    script.push_str(&format!(
        "mount --rbind /dev '{0}/dev'\nmount -t proc proc '{0}/proc'\n\
         exec chroot '{0}' /switchyard/lib/ld-linux-x86-64.so.2 --library-path /switchyard/lib \
         /switchyard/bin/switchyard agent run --listen 127.0.0.1:{1} --mysql-port {2} \
         --bind-address 127.0.0.1 --report-host 127.0.0.1\n",
        r.display(),
        agent_port.port(),
        mysql_port.port()
    ));
    let log = r.join("agent.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let agent = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SWITCHYARD_CLUSTER", "db")
        .env("SWITCHYARD_ORDINAL", "0")
        .env("SWITCHYARD_FLAVOR", "mariadb")
        .env("SWITCHYARD_VERSION", suite.version())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .unwrap();
    let mut agent = Group(agent);

    // Bootstrapped and ready, on the suite's own server at the image's paths.
    wait_until("ready", &log, || {
        http_get(agent_port.port(), "/readyz").filter(|(c, _)| *c == 200)
    });
    let (_, status) = http_get(agent_port.port(), "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["phase"], "running", "{status:#}");
    assert!(
        status["server_version"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{}-MariaDB", suite.version())),
        "{status:#}"
    );
    assert_eq!(status["expected_version"], suite.version());
    assert!(
        r.join("var/lib/mysql/data/mysql").is_dir(),
        "the data directory is on the volume"
    );
    let server_pid = status["server_pid"].as_u64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{server_pid}/root")).unwrap();
    assert_eq!(exe, PathBuf::from(r), "the server runs inside the chroot");

    // SIGTERM: the server shuts down cleanly and the agent exits 0.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = wait_until("exit after SIGTERM", &log, || agent.0.try_wait().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(exit.code(), Some(0), "{text}");
    assert!(
        text.contains("Shutdown complete"),
        "a clean shutdown: {text}"
    );
    assert_eq!(
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(server_pid).unwrap()),
            None
        ),
        Err(nix::errno::Errno::ESRCH),
        "the server is gone"
    );
}

#[test]
fn unusable_configuration_exits_64_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("my.cnf"), "[mysqld]\n").unwrap();
    std::fs::write(
        config.join("instance.json"),
        r#"{"revision":"r","server_id":0}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["agent", "run", "--config-dir"])
        .arg(&config)
        .arg("--secrets-dir")
        .arg(dir.path().join("secrets"))
        .arg("--volume")
        .arg(dir.path().join("volume"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("instance.json") && err.contains("server_id is 0"),
        "{err}"
    );
    assert!(!dir.path().join("volume").exists(), "nothing was changed");
}
