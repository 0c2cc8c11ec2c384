//! One server process on loopback and its controls: start (again, on
//! another version or configuration), clean shutdown, kill -9, pause and
//! resume, `mariadb-upgrade`.
//!
//! Every server runs in its own process group through its suite's loader
//! (see [`crate::fetch`]), writes its error log (stdout and stderr) to
//! [`Instance::log_path`], and is killed with its whole process group when
//! the [`Instance`] drops, panics included.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use crate::credentials::Account;
use crate::error::{Error, Result, log_tail};
use crate::fetch::{self, Binaries, Flavor, ServerKind};
use crate::ports::PortLease;
use crate::wait::wait_for;

/// How long a start may take before it counts as failed (crash recovery and
/// Galera state transfers included).
pub const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a clean or SIGTERM shutdown may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The user a server process runs as, when not the testbed's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Galera settings of one node.
#[derive(Debug)]
pub(crate) struct GaleraNode {
    pub(crate) cluster_name: String,
    pub(crate) cluster_address: String,
    pub(crate) gcomm: PortLease,
    pub(crate) ist: PortLease,
    pub(crate) sst: PortLease,
}

/// What an instance is made of, before it first starts.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) port: PortLease,
    pub(crate) bins: Binaries,
    pub(crate) extra: Vec<String>,
    pub(crate) run_as: Option<RunAs>,
    pub(crate) galera: Option<GaleraNode>,
}

#[derive(Debug)]
struct Process {
    child: Child,
    paused: bool,
}

#[derive(Debug)]
struct State {
    bins: Binaries,
    extra: Vec<String>,
    process: Option<Process>,
    last_exit: Option<ExitStatus>,
}

/// A MySQL or MariaDB server on 127.0.0.1 with its own data directory.
///
/// All methods take `&self`, so an instance can be shared (for example in
/// an `Arc<Cluster>`) between a load and the test that pauses or kills it.
#[derive(Debug)]
pub struct Instance {
    name: String,
    dir: PathBuf,
    port: PortLease,
    server_id: u32,
    run_as: Option<RunAs>,
    galera: Option<GaleraNode>,
    state: Mutex<State>,
}

impl Instance {
    /// Lays out the instance folder with a copy of `template` as its data
    /// directory. Blocking.
    pub(crate) fn create(setup: Setup, template: &Path) -> Result<Instance> {
        let datadir = setup.dir.join("data");
        crate::cache::copy_tree(template, &datadir)?;
        for sub in ["tmp", "files"] {
            crate::cache::create_dir_all(&setup.dir.join(sub))?;
        }
        if let Some(user) = &setup.run_as {
            chown_tree(&setup.dir, user)?;
        }
        let server_id = u32::from(setup.port.port());
        Ok(Instance {
            name: setup.name,
            dir: setup.dir,
            server_id,
            port: setup.port,
            run_as: setup.run_as,
            galera: setup.galera,
            state: Mutex::new(State {
                bins: setup.bins,
                extra: setup.extra,
                process: None,
                last_exit: None,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The instance's name (unique within its cluster, used in errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// `server_id` (the port number, so it is unique among running instances).
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The instance folder (data directory, my.cnf, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log (its stdout and stderr, appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// The generated option file of the current or last start.
    pub fn cnf_path(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    /// The server the instance runs (or last ran).
    pub fn binaries(&self) -> Binaries {
        self.state().bins.clone()
    }

    /// The server kind the instance runs (or last ran).
    pub fn kind(&self) -> ServerKind {
        self.state().bins.kind()
    }

    /// The extra my.cnf lines of the current or last start.
    pub fn extra_cnf(&self) -> Vec<String> {
        self.state().extra.clone()
    }

    /// The process id while the server process exists (running or paused).
    pub fn pid(&self) -> Option<u32> {
        let mut st = self.state();
        reap(&mut st);
        st.process.as_ref().map(|p| p.child.id())
    }

    /// Whether the server process exists (a paused server counts as running).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Whether the server is paused with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        let mut st = self.state();
        reap(&mut st);
        st.process.as_ref().is_some_and(|p| p.paused)
    }

    /// How the last server process ended, once it has.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        let mut st = self.state();
        reap(&mut st);
        st.last_exit
    }

    /// Connection options for `account` over TCP to 127.0.0.1 (TLS when the
    /// server offers it, without verification; no default database).
    pub fn connect_options(&self, account: &Account) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port())
            .username(account.user())
            .password(account.password())
            .ssl_mode(MySqlSslMode::Preferred)
    }

    /// A `mysql://` URL for `account` (it holds the password: keep it out
    /// of logs).
    pub fn url(&self, account: &Account) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}",
            account.user(),
            account.password(),
            self.port()
        )
    }

    /// Connection options for the server's `root@localhost` over the unix
    /// socket (no password). The testbed sets up clusters with it; tests may
    /// use it to look behind the accounts under test.
    ///
    /// Statement logging is off on these connections: the testbed sends
    /// passwords over them (`CREATE USER`, `CHANGE MASTER`), and sqlx would
    /// otherwise log the text of slow statements.
    pub fn root_options(&self) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .socket(self.socket_path())
            .username("root")
            .disable_statement_logging()
    }

    /// Connects as `account` over TCP, giving up after [`CONNECT_TIMEOUT`].
    pub async fn connect(&self, account: &Account) -> Result<MySqlConnection> {
        self.connect_with(&self.connect_options(account), "connect")
            .await
    }

    /// Connects as `root@localhost` over the unix socket.
    pub async fn connect_root(&self) -> Result<MySqlConnection> {
        self.connect_with(&self.root_options(), "connect as root over the socket")
            .await
    }

    async fn connect_with(
        &self,
        options: &MySqlConnectOptions,
        purpose: &'static str,
    ) -> Result<MySqlConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(self.sql_error(purpose, source)),
            Err(_) => Err(Error::Timeout {
                instance: self.name.clone(),
                port: self.port(),
                condition: purpose,
                waited: CONNECT_TIMEOUT,
                last: "no answer".into(),
            }),
        }
    }

    pub(crate) fn sql_error(&self, purpose: &'static str, source: sqlx::Error) -> Error {
        Error::Sql {
            instance: self.name.clone(),
            port: self.port(),
            purpose,
            source,
        }
    }

    fn state_error(&self, detail: impl Into<String>) -> Error {
        Error::State {
            instance: self.name.clone(),
            port: self.port(),
            detail: detail.into(),
        }
    }

    /// Runs `sql` (text protocol, several statements allowed) as root.
    pub(crate) async fn root_exec(&self, purpose: &'static str, sql: &str) -> Result<()> {
        self.root_exec_secret(purpose, sql, &[]).await
    }

    /// Like `root_exec` for statements holding `secrets` (passwords): a
    /// server message that quotes the statement is replaced by its error
    /// number and a note, so no secret reaches an error or a log.
    pub(crate) async fn root_exec_secret(
        &self,
        purpose: &'static str,
        sql: &str,
        secrets: &[&str],
    ) -> Result<()> {
        let mut conn = self.connect_root().await?;
        let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        match outcome {
            Ok(_) => Ok(()),
            Err(e)
                if secrets
                    .iter()
                    .any(|s| !s.is_empty() && e.to_string().contains(s)) =>
            {
                let number = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                Err(self.sql_error(
                    purpose,
                    sqlx::Error::Protocol(format!(
                        "server error {number} (message withheld: it quotes a password)"
                    )),
                ))
            }
            Err(e) => Err(self.sql_error(purpose, e)),
        }
    }

    /// Reads one string column of one row as root (`None` for NULL or no row).
    pub(crate) async fn root_query_string(
        &self,
        purpose: &'static str,
        sql: &'static str,
    ) -> Result<Option<String>> {
        let mut conn = self.connect_root().await?;
        let row = sqlx::query(sql)
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| self.sql_error(purpose, e))?;
        let _ = conn.close().await;
        match row {
            None => Ok(None),
            Some(row) => {
                let value: Option<String> = row
                    .try_get(0)
                    .or_else(|_| {
                        row.try_get::<Option<Vec<u8>>, _>(0)
                            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
                    })
                    .map_err(|e| self.sql_error(purpose, e))?;
                Ok(value)
            }
        }
    }

    /// Starts the server again with the same version and configuration, and
    /// waits until it accepts connections.
    pub async fn start(&self) -> Result<()> {
        self.spawn(false)?;
        self.wait_ready(START_TIMEOUT).await
    }

    /// Starts the server on `kind` (another version of the same flavor)
    /// with `extra_cnf` lines added to the `[mysqld]` section (replacing the
    /// extra lines of earlier starts), on the same data directory, and waits
    /// until it accepts connections. After a MariaDB major upgrade, call
    /// [`Instance::mariadb_upgrade`].
    pub async fn start_with(&self, kind: ServerKind, extra_cnf: &[&str]) -> Result<()> {
        let current = self.kind();
        if kind.flavor() != current.flavor()
            || (kind == ServerKind::Galera) != (current == ServerKind::Galera)
        {
            return Err(Error::Unsupported {
                detail: format!(
                    "instance {} runs {current}: it cannot be started as {kind} on the same data directory",
                    self.name
                ),
            });
        }
        let bins = tokio::task::spawn_blocking(move || fetch::binaries(kind))
            .await
            .map_err(|e| Error::Task {
                what: format!("fetching {kind}"),
                detail: e.to_string(),
            })??;
        {
            let mut st = self.state();
            reap(&mut st);
            if st.process.is_some() {
                return Err(self.state_error(format!(
                    "cannot start as {kind}: the server is still running (pid {})",
                    st.process.as_ref().map_or(0, |p| p.child.id())
                )));
            }
            st.bins = bins;
            st.extra = extra_cnf.iter().map(|s| s.to_string()).collect();
        }
        self.start().await
    }

    /// Writes my.cnf and spawns the server without waiting for it.
    pub(crate) fn spawn(&self, new_galera_cluster: bool) -> Result<()> {
        let mut st = self.state();
        reap(&mut st);
        if let Some(p) = &st.process {
            return Err(self.state_error(format!("already running (pid {})", p.child.id())));
        }
        let cnf = self.render_cnf(&st.bins, &st.extra)?;
        let cnf_path = self.cnf_path();
        fs::write(&cnf_path, cnf).map_err(Error::io("write", &cnf_path))?;
        let log_path = self.log_path();
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(Error::io("open", &log_path))?;
        {
            use std::io::Write as _;
            let _ = writeln!(
                log,
                "=== switchyard-testbed: starting {} {} on port {} ===",
                st.bins.kind(),
                st.bins.full_version(),
                self.port()
            );
        }
        let err = log.try_clone().map_err(Error::io("open", &log_path))?;
        let server = st.bins.server();
        let mut cmd = st.bins.command(&server);
        cmd.arg(format!("--defaults-file={}", cnf_path.display()));
        if new_galera_cluster {
            cmd.arg("--wsrep-new-cluster");
        }
        cmd.env("PATH", st.bins.path_env())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
            cmd.env("HOME", &self.dir).env("USER", &user.name);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            what: format!("starting instance {}", self.name),
            program: server,
            source,
        })?;
        crate::reaper::register(
            child.id(),
            &cnf_path,
            self.dir.parent().unwrap_or(&self.dir),
        );
        st.process = Some(Process {
            child,
            paused: false,
        });
        st.last_exit = None;
        Ok(())
    }

    /// Waits until the server accepts root connections over its socket (and,
    /// on Galera, is synced), failing early if the process exits.
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut last = String::from("no connection attempt yet");
        let outcome = wait_for(timeout, async || {
            if let Some(status) = self.last_exit() {
                return Some(Err(Error::Start {
                    instance: self.name.clone(),
                    port: self.port(),
                    detail: format!(
                        "the server exited ({status}): {}",
                        log_tail(&self.log_path(), 6)
                    ),
                    log: self.log_path(),
                }));
            }
            if !self.socket_path().exists() {
                last = "no socket yet".into();
                return None;
            }
            match self.probe_ready().await {
                Ok(()) => Some(Ok(())),
                Err(e) => {
                    last = e;
                    None
                }
            }
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(elapsed) => Err(Error::Start {
                instance: self.name.clone(),
                port: self.port(),
                detail: format!("not ready within {:?} (last: {})", elapsed.waited, last),
                log: self.log_path(),
            }),
        }
    }

    async fn probe_ready(&self) -> std::result::Result<(), String> {
        let options = self.root_options();
        let connect = MySqlConnection::connect_with(&options);
        let mut conn = match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connection attempt timed out".into()),
        };
        let ready = if self.galera.is_some() {
            let row = sqlx::query("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_COMMENT'")
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let state: String = row.map(|r| r.get(0)).unwrap_or_default();
            if state == "Synced" {
                Ok(())
            } else {
                Err(format!("wsrep_local_state_comment is {state:?}"))
            }
        } else {
            sqlx::query("SELECT 1")
                .execute(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let _ = conn.close().await;
        ready
    }

    fn render_cnf(&self, bins: &Binaries, extra: &[String]) -> Result<String> {
        let mut c = String::from("[mysqld]\n");
        let mut line = |k: &str, v: &dyn std::fmt::Display| {
            let _ = writeln!(c, "{k}={v}");
        };
        if self.galera.is_some() {
            // State-transfer scripts run helpers (rsync, ss, ...) from
            // `basedir/bin`: point it at the loader wrappers.
            line("basedir", &bins.wrapper_basedir()?.display());
        } else {
            line("basedir", &bins.basedir().display());
        }
        line("lc-messages-dir", &bins.messages_dir()?.display());
        if let Some(p) = bins.plugin_dir() {
            line("plugin-dir", &p.display());
        }
        line("datadir", &self.datadir().display());
        line("tmpdir", &self.dir.join("tmp").display());
        line("socket", &self.socket_path().display());
        line("pid-file", &self.dir.join("mysqld.pid").display());
        line("port", &self.port());
        line("bind-address", &"127.0.0.1");
        line("server-id", &self.server_id);
        line("report-host", &"127.0.0.1");
        line("report-port", &self.port());
        line("skip-name-resolve", &"ON");
        line("log-bin", &"binlog");
        line("relay-log", &"relay");
        line("binlog-format", &"ROW");
        line("sync-binlog", &1);
        line("innodb-flush-log-at-trx-commit", &1);
        line("relay-log-recovery", &"ON");
        if self.galera.is_none() {
            // Nothing is writable until someone decides it is the primary: on MySQL
            // `read_only` lets CONNECTION_ADMIN holders write, `super_read_only` stops every
            // account (MariaDB has no such variable; a fence adds its backup lock).
            line("read-only", &"ON");
            if bins.kind().flavor() == Flavor::Mysql {
                line("super-read-only", &"ON");
            }
        }
        line("max-connections", &500);
        if self.run_as.is_none() && crate::template::running_as_root() {
            line("user", &"root");
        }
        match bins.kind().flavor() {
            Flavor::Mariadb => {
                line("log-slave-updates", &"ON");
                if self.galera.is_none() {
                    line("gtid-strict-mode", &"ON");
                }
                line("skip-slave-start", &"ON");
                line("innodb-log-file-size", &"32M");
                line("innodb-buffer-pool-size", &"64M");
            }
            Flavor::Mysql => {
                line("gtid-mode", &"ON");
                line("enforce-gtid-consistency", &"ON");
                line("log-replica-updates", &"ON");
                line("skip-replica-start", &"ON");
                line("mysqlx", &0);
                line(
                    "innodb-redo-log-capacity",
                    &crate::template::MYSQL_REDO_CAPACITY,
                );
                line("secure-file-priv", &self.dir.join("files").display());
                line("innodb-buffer-pool-size", &"64M");
            }
        }
        if let Some(g) = &self.galera {
            let provider = bins.root().join("usr/lib/galera/libgalera_smm.so");
            line("wsrep-on", &"ON");
            // One GTID domain for the write sets of the whole cluster.
            line("wsrep-gtid-mode", &"ON");
            line("wsrep-gtid-domain-id", &1);
            line("wsrep-provider", &provider.display());
            line("wsrep-cluster-name", &g.cluster_name);
            line("wsrep-cluster-address", &g.cluster_address);
            line("wsrep-node-name", &self.name);
            line(
                "wsrep-node-address",
                &format!("127.0.0.1:{}", g.gcomm.port()),
            );
            line(
                "wsrep-node-incoming-address",
                &format!("127.0.0.1:{}", self.port()),
            );
            line(
                "wsrep-sst-receive-address",
                &format!("127.0.0.1:{}", g.sst.port()),
            );
            line(
                "wsrep-provider-options",
                &format!(
                    "\"base_host=127.0.0.1;base_port={};gmcast.listen_addr=tcp://127.0.0.1:{};ist.recv_addr=127.0.0.1:{};gcache.size=64M\"",
                    g.gcomm.port(),
                    g.gcomm.port(),
                    g.ist.port()
                ),
            );
            line("wsrep-sst-method", &"rsync");
            line("innodb-autoinc-lock-mode", &2);
            line("default-storage-engine", &"InnoDB");
        }
        for extra_line in extra {
            let _ = writeln!(c, "{extra_line}");
        }
        Ok(c)
    }

    fn signal(&self, sig: Signal, name: &'static str) -> Result<u32> {
        let mut st = self.state();
        reap(&mut st);
        let Some(p) = st.process.as_mut() else {
            return Err(self.state_error(format!("cannot send {name}: the server is not running")));
        };
        let pid = p.child.id();
        signal::kill(to_pid(pid), sig).map_err(|source| Error::Signal {
            instance: self.name.clone(),
            pid,
            signal: name,
            source,
        })?;
        match sig {
            Signal::SIGSTOP => p.paused = true,
            Signal::SIGCONT => p.paused = false,
            _ => {}
        }
        Ok(pid)
    }

    /// Freezes the server with SIGSTOP (a hung server: connections open,
    /// nothing answers). Returns once the kernel reports it stopped.
    pub fn pause(&self) -> Result<()> {
        let pid = self.signal(Signal::SIGSTOP, "SIGSTOP")?;
        self.wait_process_state(pid, true, "stopped after SIGSTOP")
    }

    /// Lets a paused server run again with SIGCONT. Returns once the kernel
    /// reports it running.
    pub fn resume(&self) -> Result<()> {
        let pid = self.signal(Signal::SIGCONT, "SIGCONT")?;
        self.wait_process_state(pid, false, "running after SIGCONT")
    }

    /// Signals are delivered asynchronously: waits (briefly, blocking) until
    /// `/proc/PID/stat` shows the process stopped (`T`) or not.
    fn wait_process_state(&self, pid: u32, stopped: bool, condition: &'static str) -> Result<()> {
        let limit = Duration::from_secs(5);
        let started = std::time::Instant::now();
        loop {
            let state = process_state(pid);
            match state {
                Some(s) if (s == 'T') == stopped => return Ok(()),
                None => return Ok(()), // exited: nothing left to wait for
                _ => {}
            }
            if started.elapsed() > limit {
                return Err(Error::Timeout {
                    instance: self.name.clone(),
                    port: self.port(),
                    condition,
                    waited: started.elapsed(),
                    last: format!("process state {state:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the server and its process group with SIGKILL and reaps it.
    pub fn kill9(&self) -> Result<()> {
        let mut st = self.state();
        reap(&mut st);
        let Some(mut p) = st.process.take() else {
            return Err(self.state_error("cannot kill -9: the server is not running"));
        };
        let pid = p.child.id();
        match signal::killpg(to_pid(pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => {
                st.process = Some(p);
                return Err(Error::Signal {
                    instance: self.name.clone(),
                    pid,
                    signal: "SIGKILL",
                    source,
                });
            }
        }
        let status = p.child.wait().map_err(Error::io("wait for", &self.dir))?;
        crate::reaper::unregister(pid);
        st.last_exit = Some(status);
        Ok(())
    }

    /// Stops the server with SIGTERM (a normal, fast shutdown) and waits
    /// until it exits.
    pub async fn stop(&self) -> Result<()> {
        if self.is_paused() {
            self.resume()?;
        }
        let pid = self.signal(Signal::SIGTERM, "SIGTERM")?;
        self.wait_exit(pid, "SIGTERM").await
    }

    /// Shuts the server down cleanly and slowly (`SET GLOBAL
    /// innodb_fast_shutdown=0`, then `SHUTDOWN`: what a version change
    /// needs) and waits until it exits.
    pub async fn shutdown_clean(&self) -> Result<()> {
        if self.is_paused() {
            self.resume()?;
        }
        let Some(pid) = self.pid() else {
            return Err(self.state_error("cannot shut down: the server is not running"));
        };
        let mut conn = self.connect_root().await?;
        sqlx::raw_sql("SET GLOBAL innodb_fast_shutdown=0")
            .execute(&mut conn)
            .await
            .map_err(|e| self.sql_error("SET GLOBAL innodb_fast_shutdown=0", e))?;
        // The server may close the connection before answering.
        let _ = sqlx::raw_sql("SHUTDOWN").execute(&mut conn).await;
        drop(conn);
        self.wait_exit(pid, "SHUTDOWN with innodb_fast_shutdown=0")
            .await
    }

    async fn wait_exit(&self, pid: u32, how: &'static str) -> Result<()> {
        wait_for(STOP_TIMEOUT, async || self.last_exit().map(|_| ()))
            .await
            .map_err(|e| Error::Stop {
                instance: self.name.clone(),
                port: self.port(),
                pid,
                how,
                waited: e.waited,
            })
    }

    /// Makes the server read-only (`read_only`, and `super_read_only` on
    /// MySQL) or writable.
    pub async fn set_read_only(&self, read_only: bool) -> Result<()> {
        let sql = match (self.kind().flavor(), read_only) {
            (Flavor::Mysql, true) => "SET GLOBAL super_read_only=ON",
            (Flavor::Mysql, false) => "SET GLOBAL super_read_only=OFF; SET GLOBAL read_only=OFF",
            (Flavor::Mariadb, true) => "SET GLOBAL read_only=ON",
            (Flavor::Mariadb, false) => "SET GLOBAL read_only=OFF",
        };
        self.root_exec("set read_only", sql).await
    }

    /// The running server's `@@version`.
    pub async fn server_version(&self) -> Result<String> {
        self.root_query_string("read @@version", "SELECT @@version")
            .await
            .map(Option::unwrap_or_default)
    }

    /// Runs `mariadb-upgrade` of the running server's own version against
    /// it (through the suite's loader), writing its output to
    /// `upgrade.log` in the instance folder. Needed after a MariaDB major
    /// upgrade; a second run finds nothing to do.
    pub async fn mariadb_upgrade(&self) -> Result<()> {
        let bins = self.binaries();
        if bins.kind().flavor() != Flavor::Mariadb {
            return Err(Error::Unsupported {
                detail: format!(
                    "mariadb-upgrade does not apply to {} (instance {})",
                    bins.kind(),
                    self.name
                ),
            });
        }
        if !self.is_running() {
            return Err(self.state_error("cannot run mariadb-upgrade: the server is not running"));
        }
        let log = self.dir.join("upgrade.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(Error::io("open", &log))?;
        let err = out.try_clone().map_err(Error::io("open", &log))?;
        let mut cmd = bins.tool("mariadb-upgrade")?;
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg("--user=root")
            .arg("--verbose")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let status = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .status();
        let status = tokio::time::timeout(STOP_TIMEOUT, status)
            .await
            .map_err(|_| Error::Upgrade {
                instance: self.name.clone(),
                port: self.port(),
                status: format!("still running after {STOP_TIMEOUT:?}"),
                log: log.clone(),
            })?
            .map_err(|source| Error::Spawn {
                what: format!("mariadb-upgrade for instance {}", self.name),
                program: bins.wrappers().join("mariadb-upgrade"),
                source,
            })?;
        if !status.success() {
            return Err(Error::Upgrade {
                instance: self.name.clone(),
                port: self.port(),
                status: status.to_string(),
                log,
            });
        }
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let mut st = self.state();
        if let Some(mut p) = st.process.take() {
            let pid = p.child.id();
            let _ = signal::killpg(to_pid(pid), Signal::SIGKILL);
            let _ = signal::kill(to_pid(pid), Signal::SIGKILL);
            let _ = p.child.wait();
            crate::reaper::unregister(pid);
        }
    }
}

/// Notes the exit of a server process that ended by itself.
fn reap(st: &mut State) {
    if let Some(p) = st.process.as_mut()
        && let Ok(Some(status)) = p.child.try_wait()
    {
        crate::reaper::unregister(p.child.id());
        st.last_exit = Some(status);
        st.process = None;
    }
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T`, ...), `None` once
/// the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Gives the instance folder to the user the server runs as.
fn chown_tree(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(Error::io("chown", path))?;
    let meta = fs::symlink_metadata(path).map_err(Error::io("stat", path))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(Error::io("read directory", path))? {
            let entry = entry.map_err(Error::io("read directory", path))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}
