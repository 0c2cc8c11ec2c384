//! A "pod" for the agent's tests: the pod's volumes as folders (ConfigMap, Secret, data
//! volume, run directory, tmp), the image as a testbed server root, loopback ports, and the
//! agent run in-process as the container's process would run it. Dropping a pod ends its
//! agent, whose server is killed with it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions as _, Row as _};
use switchyard_agent::config::{Donor, Identity, InstanceConfig, Options, Source, keys};
use switchyard_testbed::{Binaries, PortLease, ServerKind, allocate_port, wait_for};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a condition in these tests may take (a start, a copy, a catch-up).
pub const WAIT: Duration = Duration::from_secs(180);

/// The accounts of a test cluster.
#[derive(Clone, Debug)]
pub struct Accounts {
    pub operator: (String, String),
    pub replication: (String, String),
}

impl Accounts {
    pub fn generate() -> Accounts {
        let a = switchyard_testbed::Credentials::generate();
        Accounts {
            operator: (a.operator.user().into(), a.operator.password().into()),
            replication: (a.replication.user().into(), a.replication.password().into()),
        }
    }
}

/// The server binaries of `kind`, fetched (or found) by the testbed.
pub async fn binaries(kind: ServerKind) -> Binaries {
    tokio::task::spawn_blocking(move || switchyard_testbed::binaries(kind))
        .await
        .unwrap()
        .unwrap()
}

/// The revision's my.cnf a test operator would render: replication settings and small
/// buffers, with `max_connections` to tell revisions apart.
pub fn revision_cnf(kind: ServerKind, max_connections: u32) -> String {
    let common = format!(
        "[mysqld]\nbinlog_format = ROW\nsync_binlog = 1\ninnodb_flush_log_at_trx_commit = 1\n\
         relay_log = relay-bin\nrelay_log_recovery = ON\nskip_name_resolve = ON\n\
         innodb_buffer_pool_size = 64M\nmax_connections = {max_connections}\n"
    );
    match kind.flavor() {
        switchyard_testbed::Flavor::Mysql => format!(
            "{common}log_bin = binlog\nlog_replica_updates = ON\ngtid_mode = ON\n\
             enforce_gtid_consistency = ON\ninnodb_redo_log_capacity = 32M\nmysqlx = 0\n"
        ),
        switchyard_testbed::Flavor::Mariadb => format!(
            "{common}log_bin = mariadb-bin\nlog_slave_updates = ON\ngtid_strict_mode = ON\n\
             innodb_log_file_size = 32M\n"
        ),
    }
}

pub fn instance(server_id: u32, revision: &str) -> InstanceConfig {
    InstanceConfig {
        revision: revision.into(),
        server_id,
        bootstrap: false,
        provision_from: None,
        replicate_from: None,
        max_lag_seconds: 30,
        galera: None,
    }
}

/// One agent with its volumes and ports.
pub struct Pod {
    pub name: String,
    dir: tempfile::TempDir,
    pub options: Options,
    mysql_port: PortLease,
    agent_port: PortLease,
    agent: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<switchyard_agent::Result<()>>,
    )>,
}

impl Pod {
    /// A pod on `bins`' image with `accounts` in its Secret.
    pub fn new(name: &str, bins: &Binaries, accounts: &Accounts) -> Pod {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-agent-")
            .tempdir()
            .unwrap();
        let mysql_port = allocate_port().unwrap();
        let agent_port = allocate_port().unwrap();
        let d = dir.path();
        let options = Options {
            image_root: bins.root().to_path_buf(),
            config_dir: d.join("config"),
            secrets_dir: d.join("secrets"),
            volume: d.join("volume"),
            run_dir: d.join("run"),
            tmp_dir: d.join("tmp"),
            mysql_port: mysql_port.port(),
            bind_address: "127.0.0.1".into(),
            listen: ([127, 0, 0, 1], agent_port.port()).into(),
            galera_ports: switchyard_agent::config::GaleraPorts::default(),
            report_host: Some("127.0.0.1".into()),
            server_log: Some(d.join("server.log")),
            identity: Identity::default(),
        };
        for sub in [&options.config_dir, &options.secrets_dir, &options.volume] {
            std::fs::create_dir_all(sub).unwrap();
        }
        for (key, value) in [
            (keys::OPERATOR_USER, &accounts.operator.0),
            (keys::OPERATOR_PASSWORD, &accounts.operator.1),
            (keys::REPLICATION_USER, &accounts.replication.0),
            (keys::REPLICATION_PASSWORD, &accounts.replication.1),
        ] {
            std::fs::write(options.secrets_dir.join(key), value).unwrap();
        }
        Pod {
            name: name.into(),
            dir,
            options,
            mysql_port,
            agent_port,
            agent: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn mysql_port(&self) -> u16 {
        self.mysql_port.port()
    }

    pub fn agent_port(&self) -> u16 {
        self.agent_port.port()
    }

    /// This pod as a donor (`provision_from`).
    pub fn as_donor(&self) -> Donor {
        Donor {
            host: "127.0.0.1".into(),
            port: self.mysql_port(),
            agent_port: self.agent_port(),
        }
    }

    /// This pod as a replication source.
    pub fn as_source(&self) -> Source {
        Source {
            host: "127.0.0.1".into(),
            port: self.mysql_port(),
        }
    }

    /// Writes the instance ConfigMap (what the operator does).
    pub fn write_config(&self, instance: &InstanceConfig, my_cnf: &str) {
        let dir = &self.options.config_dir;
        std::fs::write(dir.join("my.cnf"), my_cnf).unwrap();
        self.write_instance(instance);
    }

    /// Rewrites `instance.json` only (atomically, as the kubelet swaps ConfigMap files).
    /// Rewrites one key of the pod's Secret, as the kubelet does when the Secret changes.
    pub fn write_secret(&self, key: &str, value: &str) {
        let path = self.options.secrets_dir.join(key);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, value).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    pub fn write_instance(&self, instance: &InstanceConfig) {
        let dir = &self.options.config_dir;
        let tmp = dir.join(".instance.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(instance).unwrap()).unwrap();
        std::fs::rename(&tmp, dir.join("instance.json")).unwrap();
    }

    /// Starts the agent (the container starting).
    pub fn start(&mut self) {
        assert!(
            self.agent.is_none(),
            "{}: the agent already runs",
            self.name
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = self.options.clone();
        let handle = tokio::spawn(switchyard_agent::run(options, async move {
            let _ = rx.await;
        }));
        self.agent = Some((tx, handle));
    }

    /// SIGTERM to the agent (the container stopping) and its outcome.
    pub async fn stop(&mut self) -> switchyard_agent::Result<()> {
        let (tx, handle) = self.agent.take().expect("the agent runs");
        let _ = tx.send(());
        tokio::time::timeout(WAIT, handle)
            .await
            .expect("the agent stops within the bound")
            .expect("the agent's task ends without a panic")
    }

    /// Whether the agent's task has ended (on its own).
    pub fn agent_finished(&self) -> bool {
        self.agent.as_ref().is_some_and(|(_, h)| h.is_finished())
    }

    /// `GET path` on the agent: (status code, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.agent_port(), path).await
    }

    /// `/status`, parsed.
    pub async fn status(&self) -> Option<Value> {
        let (code, body) = self.get("/status").await?;
        (code == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    /// Waits until `/status` satisfies `pred`, and returns it.
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        let got = wait_for(WAIT, async || {
            let s = self.status().await;
            let ok = s.as_ref().is_some_and(&pred);
            if !ok && s.as_ref().is_some_and(|s| s["phase"] == "failed") {
                panic!("{}: {what}: the agent failed: {s:#?}", self.name);
            }
            last = s.clone();
            if ok { s } else { None }
        })
        .await;
        got.unwrap_or_else(|_| {
            panic!(
                "{}: {what}: not reached; last /status: {last:#?}",
                self.name
            )
        })
    }

    /// Waits until `GET path` answers `code`, and returns the body.
    pub async fn wait_code(&self, path: &str, code: u16) -> String {
        let mut last = None;
        let got = wait_for(WAIT, async || {
            let r = self.get(path).await;
            if let Some((_, body)) = &r
                && code != 503
                && body.starts_with("not ready: failed")
            {
                panic!("{}: GET {path}: the agent failed: {body}", self.name);
            }
            last = r.clone();
            r.filter(|(c, _)| *c == code).map(|(_, b)| b)
        })
        .await;
        match got {
            Ok(b) => b,
            Err(_) => panic!(
                "{}: GET {path} never answered {code}; last: {last:?}; /status: {:#?}",
                self.name,
                self.status().await
            ),
        }
    }

    /// Root over the socket (the test looking behind the agent).
    pub async fn root(&self) -> MySqlConnection {
        MySqlConnectOptions::new()
            .socket(self.options.socket())
            .username("root")
            .disable_statement_logging()
            .connect()
            .await
            .unwrap()
    }

    /// `user` with `password` over TCP.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<MySqlConnection, sqlx::Error> {
        MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.mysql_port())
            .username(user)
            .password(password)
            .ssl_mode(MySqlSslMode::Preferred)
            .disable_statement_logging()
            .connect()
            .await
    }

    pub fn datadir(&self) -> PathBuf {
        self.options.datadir()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in [
                self.dir().join("server.log"),
                self.options.run_dir.join("bootstrap.log"),
                self.options.run_dir.join("provision.log"),
                self.options.run_dir.join("upgrade.log"),
                self.options.run_dir.join("backup.log"),
            ] {
                if let Ok(text) = std::fs::read_to_string(&log) {
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                    eprintln!("--- {} {} (last lines)\n{tail}", self.name, log.display());
                }
            }
        }
        if let Some((_, handle)) = self.agent.take() {
            // Aborting the task drops the server's process handle, which kills it.
            handle.abort();
        }
    }
}

/// One string value (`SELECT ...`).
pub async fn scalar(conn: &mut MySqlConnection, sql: &str) -> String {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.try_get::<Option<String>, _>(0)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<i64>, _>(0)
                .ok()
                .flatten()
                .map(|n| n.to_string())
        })
        .or_else(|| {
            row.try_get::<Option<u64>, _>(0)
                .ok()
                .flatten()
                .map(|n| n.to_string())
        })
        .or_else(|| {
            row.try_get::<Option<Vec<u8>>, _>(0)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default()
}

pub async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A plain `GET` (one request per connection).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_as(port, path, None).await
}

/// A `GET` with an `Authorization` header when `authorization` is given.
pub async fn http_get_as(
    port: u16,
    path: &str,
    authorization: Option<&str>,
) -> Option<(u16, String)> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((
            code,
            String::from_utf8_lossy(&raw[split + 4..]).trim().to_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}

/// Every row of `app.t` as `id:v` in id order.
pub async fn rows(conn: &mut MySqlConnection) -> Vec<String> {
    sqlx::raw_sql("SELECT CONCAT(id, ':', v) FROM app.t ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.try_get::<String, _>(0)
                .unwrap_or_else(|_| String::from_utf8_lossy(&r.get::<Vec<u8>, _>(0)).into_owned())
        })
        .collect()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        signal,
    )
    .unwrap();
}
