//! Provisioning a replica of a filled donor: the agent's copy (MySQL `CLONE INSTANCE`,
//! MariaDB `mariadb-backup` streamed from the donor's agent) against replaying the donor's
//! binary log from its start, same run, same donor.
//!
//! Every instance is owned by a real `switchyard agent run` process (the release binary),
//! with its pod's volumes as folders and loopback ports, as the agent's own tests lay them
//! out. The donor bootstraps, is made writable and filled with `--size-mb` of rows
//! (4000-byte rows, doubled by `INSERT ... SELECT` then added 64 MB per transaction).
//! Then:
//! - **copy**: a new agent is started with `provision_from` the donor (what the operator
//!   writes for a new replica); timed from its start until its `/status` says the
//!   provisioning is done and the server runs, replicating from the copy's position. Bytes:
//!   what the agent reports it received (`provisioned_bytes`).
//! - **binlog replay**: a new agent bootstraps an empty instance; the agent's own
//!   [`switchyard_agent::replication::start_from_copy`] points it at the donor without a
//!   position (what replicas did before provisioning existed); timed from there until it has
//!   applied everything the donor executed. Bytes: the donor's binary logs.
//!
//! Beside the times, the agents' memory (`VmRSS` and `VmHWM` from `/proc/<pid>/status`):
//! idle, as donor while streaming a backup, as recipient while receiving one.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions as _, Row as _};
use switchyard_agent::config::{Donor, Identity, InstanceConfig, Options, Secrets, Source, keys};
use switchyard_agent::local::Local;
use switchyard_plan::versions::Flavor;
use switchyard_testbed::{Binaries, PortLease, ServerKind, allocate_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub use crate::report::SectionContext;
use crate::report::table;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The servers.
    pub flavors: Vec<ServerKind>,
    /// How much to put in the donor's table, in MiB.
    pub size_mb: u64,
    /// The `switchyard` binary whose `agent run` owns each instance.
    pub agent: PathBuf,
}

/// One provisioning.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Server and version.
    pub flavor: String,
    /// `clone`, `mariadb-backup` or `binlog replay`.
    pub method: String,
    /// The donor's table (data + indexes) as InnoDB reports it, in bytes.
    pub table_bytes: u64,
    /// Bytes moved: received by the agent (copy) or the donor's binary logs (replay).
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The recipient agent's peak resident memory (VmHWM), KiB.
    pub recipient_agent_hwm_kib: u64,
    /// The donor agent's peak resident memory so far (VmHWM), KiB.
    pub donor_agent_hwm_kib: u64,
}

impl Measured {
    /// Megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }
}

/// An agent's memory when idle (a running instance, nothing asked of it).
#[derive(Clone, Debug, Serialize)]
pub struct Idle {
    /// Server and version.
    pub flavor: String,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM, KiB.
    pub hwm_kib: u64,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The provisionings.
    pub runs: Vec<Measured>,
    /// The donors' agents, idle after bootstrap.
    pub idle: Vec<Idle>,
}

/// Runs the benchmark.
///
/// # Errors
/// A server or agent that fails, a provisioning that does not finish within an hour.
pub async fn run(config: &Config, progress: &dyn Fn(&str)) -> Result<Results> {
    let mut results = Results {
        runs: Vec::new(),
        idle: Vec::new(),
    };
    for kind in &config.flavors {
        one_flavor(*kind, config, progress, &mut results).await?;
    }
    Ok(results)
}

/// The revision's my.cnf: replication settings, buffers sized for a bulk load.
fn revision_cnf(flavor: Flavor) -> String {
    let common = "[mysqld]\nbinlog_format = ROW\nsync_binlog = 1\n\
                  innodb_flush_log_at_trx_commit = 1\nrelay_log = relay-bin\n\
                  relay_log_recovery = ON\nskip_name_resolve = ON\n\
                  innodb_buffer_pool_size = 512M\nmax_connections = 50\n\
                  max_allowed_packet = 64M\n";
    match flavor {
        Flavor::Mysql => format!(
            "{common}log_bin = binlog\nlog_replica_updates = ON\ngtid_mode = ON\n\
             enforce_gtid_consistency = ON\ninnodb_redo_log_capacity = 512M\nmysqlx = 0\n"
        ),
        Flavor::Mariadb => format!(
            "{common}log_bin = mariadb-bin\nlog_slave_updates = ON\ngtid_strict_mode = ON\n\
             innodb_log_file_size = 512M\n"
        ),
    }
}

async fn one_flavor(
    kind: ServerKind,
    config: &Config,
    progress: &dyn Fn(&str),
    results: &mut Results,
) -> Result<()> {
    let bins = tokio::task::spawn_blocking(move || switchyard_testbed::binaries(kind))
        .await?
        .with_context(|| format!("could not fetch {kind:?}"))?;
    let flavor = match kind.flavor() {
        switchyard_testbed::Flavor::Mysql => Flavor::Mysql,
        switchyard_testbed::Flavor::Mariadb => Flavor::Mariadb,
    };
    let label = format!(
        "{} {}",
        match flavor {
            Flavor::Mysql => "MySQL",
            Flavor::Mariadb => "MariaDB",
        },
        bins.version()
    );
    let creds = switchyard_testbed::Credentials::generate();
    let cnf = revision_cnf(flavor);

    progress(&format!("{label}: bootstrapping the donor"));
    let mut donor = Pod::new(&config.agent, &bins, &creds)?;
    let mut inst = instance(1001);
    inst.bootstrap = true;
    donor.write_config(&inst, &cnf)?;
    donor.start()?;
    donor
        .wait_status("bootstrapped", |s| s["phase"] == "running")
        .await?;
    // Idle: a running instance, the agent polled as the kubelet's probes would.
    for _ in 0..10 {
        let _ = donor.get("/readyz").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss, hwm) = memory(donor.pid())?;
    results.idle.push(Idle {
        flavor: label.clone(),
        rss_kib: rss,
        hwm_kib: hwm,
    });

    let mut op = donor
        .connect(creds.operator.user(), creds.operator.password())
        .await?;
    let started = Instant::now();
    fill(&mut op, flavor, config.size_mb, progress).await?;
    // Fresh statistics (MySQL caches them in information_schema for a day).
    exec(&mut op, "ANALYZE TABLE bench.fill").await?;
    if flavor == Flavor::Mysql {
        exec(&mut op, "SET SESSION information_schema_stats_expiry = 0").await?;
    }
    let table_bytes: u64 = scalar(
        &mut op,
        "SELECT CAST(DATA_LENGTH + INDEX_LENGTH AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = 'bench' AND TABLE_NAME = 'fill'",
    )
    .await?
    .parse()
    .unwrap_or(0);
    progress(&format!(
        "{label}: filled {} MB in {:.0} s",
        table_bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    ));

    // The copy.
    let method = match flavor {
        Flavor::Mysql => "clone",
        Flavor::Mariadb => "mariadb-backup stream",
    };
    progress(&format!("{label}: provisioning by {method}"));
    let mut copy = Pod::new(&config.agent, &bins, &creds)?;
    let mut inst = instance(1002);
    inst.provision_from = Some(donor.as_donor());
    inst.replicate_from = Some(donor.as_source());
    copy.write_config(&inst, &cnf)?;
    let t0 = Instant::now();
    copy.start()?;
    let status = copy
        .wait_status("provisioned", |s| {
            s["provisioning"] == "done" && s["phase"] == "running"
        })
        .await?;
    let seconds = t0.elapsed().as_secs_f64();
    let copied = status["provisioned_bytes"].as_u64().unwrap_or(0);
    results.runs.push(Measured {
        flavor: label.clone(),
        method: method.into(),
        table_bytes,
        bytes: copied,
        seconds,
        recipient_agent_hwm_kib: memory(copy.pid())?.1,
        donor_agent_hwm_kib: memory(donor.pid())?.1,
    });
    progress(&format!(
        "{label}: {method}: {} MB in {seconds:.1} s",
        copied / 1_000_000
    ));
    copy.stop().await?;
    drop(copy);

    // Replay from the donor's first binary log.
    progress(&format!("{label}: provisioning by binlog replay"));
    let binlog_bytes = binlog_bytes(&mut op).await?;
    let donor_gtid = match flavor {
        Flavor::Mysql => scalar(&mut op, "SELECT @@GLOBAL.gtid_executed").await?,
        Flavor::Mariadb => scalar(&mut op, "SELECT @@gtid_binlog_pos").await?,
    };
    let mut replay = Pod::new(&config.agent, &bins, &creds)?;
    let mut inst = instance(1003);
    inst.bootstrap = true;
    replay.write_config(&inst, &cnf)?;
    replay.start()?;
    replay
        .wait_status("bootstrapped", |s| s["phase"] == "running")
        .await?;
    let secrets = Secrets::read(&replay.options.secrets_dir)?;
    let local = Local::new(&replay.options.socket());
    let mut conn = local.connect(Duration::from_secs(10)).await?;
    let t0 = Instant::now();
    switchyard_agent::replication::start_from_copy(
        &mut conn,
        flavor,
        &donor.as_source(),
        &secrets.replication,
        None,
    )
    .await?;
    let applied = match flavor {
        Flavor::Mysql => {
            format!("SELECT CAST(GTID_SUBSET('{donor_gtid}', @@GLOBAL.gtid_executed) AS CHAR)")
        }
        Flavor::Mariadb => format!("SELECT CAST(@@gtid_slave_pos = '{donor_gtid}' AS CHAR)"),
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        if scalar(&mut conn, &applied).await? == "1" {
            break;
        }
        if let Some(state) =
            switchyard_agent::replication::replica_state(&mut conn, flavor, Duration::from_secs(10))
                .await?
            && (!state.last_sql_error.is_empty() || !state.sql_running)
        {
            bail!("{label}: the replaying replica stopped: {state:?}");
        }
        if Instant::now() > deadline {
            bail!("{label}: the binlog replay did not finish within an hour");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(conn);
    results.runs.push(Measured {
        flavor: label.clone(),
        method: "binlog replay".into(),
        table_bytes,
        bytes: binlog_bytes,
        seconds,
        recipient_agent_hwm_kib: memory(replay.pid())?.1,
        donor_agent_hwm_kib: memory(donor.pid())?.1,
    });
    progress(&format!(
        "{label}: binlog replay: {} MB in {seconds:.1} s",
        binlog_bytes / 1_000_000
    ));
    drop(op);
    replay.stop().await?;
    donor.stop().await?;
    Ok(())
}

/// Fills `bench.fill` with about `size_mb` MiB of 4000-byte rows.
async fn fill(
    conn: &mut MySqlConnection,
    flavor: Flavor,
    size_mb: u64,
    progress: &dyn Fn(&str),
) -> Result<()> {
    match flavor {
        Flavor::Mysql => {
            exec(conn, "SET GLOBAL super_read_only = OFF").await?;
            exec(conn, "SET GLOBAL read_only = OFF").await?;
        }
        Flavor::Mariadb => exec(conn, "SET GLOBAL read_only = OFF").await?,
    }
    exec(conn, "CREATE DATABASE bench").await?;
    exec(
        conn,
        "CREATE TABLE bench.fill (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         pad VARBINARY(4000) NOT NULL) ENGINE = InnoDB",
    )
    .await?;
    exec(
        conn,
        "INSERT INTO bench.fill (pad) VALUES (REPEAT(SHA2('switchyard', 256), 62))",
    )
    .await?;
    const ROW: u64 = 4000;
    const CHUNK: u64 = 16_384; // rows: 64 MB per transaction
    let target = size_mb * 1024 * 1024 / ROW;
    let mut rows = 1u64;
    // Doubling up to one chunk, never past the target.
    while rows < target.min(CHUNK) {
        let n = rows.min(target - rows);
        exec(
            conn,
            &format!("INSERT INTO bench.fill (pad) SELECT pad FROM bench.fill LIMIT {n}"),
        )
        .await?;
        rows += n;
    }
    while rows < target {
        let n = CHUNK.min(target - rows);
        exec(
            conn,
            &format!("INSERT INTO bench.fill (pad) SELECT pad FROM bench.fill LIMIT {n}"),
        )
        .await?;
        rows += n;
        progress(&format!("    {} MB", rows * ROW / 1_000_000));
    }
    Ok(())
}

/// The donor's binary logs, in bytes.
async fn binlog_bytes(conn: &mut MySqlConnection) -> Result<u64> {
    let rows = sqlx::raw_sql("SHOW BINARY LOGS")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            r.try_get::<u64, _>(1)
                .or_else(|_| r.try_get::<i64, _>(1).map(|n| n.max(0) as u64))
                .unwrap_or(0)
        })
        .sum())
}

fn instance(server_id: u32) -> InstanceConfig {
    InstanceConfig {
        revision: "rev-1".into(),
        server_id,
        bootstrap: false,
        provision_from: None,
        replicate_from: None,
        max_lag_seconds: 30,
        galera: None,
    }
}

/// (VmRSS, VmHWM) of `pid`, KiB.
///
/// # Errors
/// The process is gone.
pub fn memory(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// One `switchyard agent run` process with its pod's volumes as folders.
struct Pod {
    dir: tempfile::TempDir,
    agent: PathBuf,
    options: Options,
    _ports: (PortLease, PortLease),
    child: Option<Child>,
}

impl Pod {
    fn new(agent: &Path, bins: &Binaries, creds: &switchyard_testbed::Credentials) -> Result<Pod> {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-bench-provision-")
            .tempdir()?;
        let mysql = allocate_port()?;
        let http = allocate_port()?;
        let d = dir.path();
        let options = Options {
            image_root: bins.root().to_path_buf(),
            config_dir: d.join("config"),
            secrets_dir: d.join("secrets"),
            volume: d.join("volume"),
            run_dir: d.join("run"),
            tmp_dir: d.join("tmp"),
            mysql_port: mysql.port(),
            bind_address: "127.0.0.1".into(),
            listen: ([127, 0, 0, 1], http.port()).into(),
            galera_ports: switchyard_agent::config::GaleraPorts::default(),
            report_host: Some("127.0.0.1".into()),
            server_log: Some(d.join("server.log")),
            identity: Identity::default(),
        };
        for sub in [
            &options.config_dir,
            &options.secrets_dir,
            &options.volume,
            &options.run_dir,
            &options.tmp_dir,
        ] {
            std::fs::create_dir_all(sub)?;
        }
        for (key, value) in [
            (keys::OPERATOR_USER, creds.operator.user()),
            (keys::OPERATOR_PASSWORD, creds.operator.password()),
            (keys::REPLICATION_USER, creds.replication.user()),
            (keys::REPLICATION_PASSWORD, creds.replication.password()),
        ] {
            std::fs::write(options.secrets_dir.join(key), value)?;
        }
        Ok(Pod {
            dir,
            agent: agent.to_path_buf(),
            options,
            _ports: (mysql, http),
            child: None,
        })
    }

    fn write_config(&self, instance: &InstanceConfig, my_cnf: &str) -> Result<()> {
        let dir = &self.options.config_dir;
        std::fs::write(dir.join("my.cnf"), my_cnf)?;
        std::fs::write(
            dir.join("instance.json"),
            serde_json::to_string_pretty(instance)?,
        )?;
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        let o = &self.options;
        let log = std::fs::File::create(self.dir.path().join("agent.log"))?;
        let child = std::process::Command::new(&self.agent)
            .arg("agent")
            .arg("run")
            .arg("--image-root")
            .arg(&o.image_root)
            .arg("--config-dir")
            .arg(&o.config_dir)
            .arg("--secrets-dir")
            .arg(&o.secrets_dir)
            .arg("--volume")
            .arg(&o.volume)
            .arg("--run-dir")
            .arg(&o.run_dir)
            .arg("--tmp-dir")
            .arg(&o.tmp_dir)
            .arg("--mysql-port")
            .arg(o.mysql_port.to_string())
            .arg("--bind-address")
            .arg(&o.bind_address)
            .arg("--listen")
            .arg(o.listen.to_string())
            .arg("--report-host")
            .arg("127.0.0.1")
            .arg("--server-log")
            .arg(self.dir.path().join("server.log"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("could not start {}", self.agent.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn as_donor(&self) -> Donor {
        Donor {
            host: "127.0.0.1".into(),
            port: self.options.mysql_port,
            agent_port: self.options.listen.port(),
        }
    }

    fn as_source(&self) -> Source {
        Source {
            host: "127.0.0.1".into(),
            port: self.options.mysql_port,
        }
    }

    async fn connect(&self, user: &str, password: &str) -> Result<MySqlConnection> {
        Ok(MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.options.mysql_port)
            .username(user)
            .password(password)
            .ssl_mode(MySqlSslMode::Preferred)
            .disable_statement_logging()
            .connect()
            .await?)
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let port = self.options.listen.port();
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.ok()?;
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let code = head.split_whitespace().nth(1)?.parse().ok()?;
            Some((
                code,
                String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
            ))
        };
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .ok()
            .flatten()
    }

    /// Waits (an hour at most) until `/status` satisfies `pred`.
    async fn wait_status(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut last = None;
        loop {
            if let Some((200, body)) = self.get("/status").await
                && let Ok(s) = serde_json::from_str::<Value>(&body)
            {
                if pred(&s) {
                    return Ok(s);
                }
                if s["phase"] == "failed" {
                    bail!(
                        "{what}: the agent failed: {s:#}; logs in {}",
                        self.dir.path().display()
                    );
                }
                last = Some(s);
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("{what}: the agent exited ({status}); last /status: {last:#?}");
            }
            if Instant::now() > deadline {
                bail!("{what}: not reached within an hour; last /status: {last:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to the agent, which stops its server; waits for it.
    async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        terminate(&child);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(anyhow!("the agent exited with {status}"))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the agent did not stop within 300 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // A run that failed half-way: SIGTERM (the agent stops its server), then wait.
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn exec(conn: &mut MySqlConnection, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .with_context(|| sql.to_owned())?;
    Ok(())
}

async fn scalar(conn: &mut MySqlConnection, sql: &str) -> Result<String> {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *conn)
        .await
        .with_context(|| sql.to_owned())?;
    Ok(row
        .try_get::<Option<String>, _>(0)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<Vec<u8>>, _>(0)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default())
}

/// The markdown section: the provisioning table and the agents' memory.
pub fn section(results: &Results, ctx: &SectionContext) -> String {
    let mut out = ctx.preamble();
    let header: Vec<String> = [
        "flavor",
        "method",
        "table MB",
        "bytes MB",
        "seconds",
        "MB/s",
        "≥ 100 MB/s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let rows: Vec<Vec<String>> = results
        .runs
        .iter()
        .map(|m| {
            let copy = m.method != "binlog replay";
            vec![
                m.flavor.clone(),
                m.method.clone(),
                (m.table_bytes / 1_000_000).to_string(),
                (m.bytes / 1_000_000).to_string(),
                format!("{:.1}", m.seconds),
                format!("{:.0}", m.mb_per_s()),
                if !copy {
                    "(reference)".to_owned()
                } else if m.mb_per_s() >= 100.0 {
                    "pass".to_owned()
                } else {
                    "**FAIL**".to_owned()
                },
            ]
        })
        .collect();
    out.push_str(&table(&header, 2, &rows));
    out.push_str(
        "\nAgent memory (`switchyard agent run`, release build; KiB from `/proc/<pid>/status`):\n\n",
    );
    let header: Vec<String> = ["flavor", "agent", "VmRSS KiB", "VmHWM KiB", "< 15 MB"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let verdict = |kib: u64| {
        if kib * 1024 < 15_000_000 {
            "pass".to_owned()
        } else {
            "**FAIL**".to_owned()
        }
    };
    let mut rows = Vec::new();
    for i in &results.idle {
        rows.push(vec![
            i.flavor.clone(),
            "idle (after bootstrap)".into(),
            i.rss_kib.to_string(),
            i.hwm_kib.to_string(),
            verdict(i.hwm_kib),
        ]);
    }
    for m in results.runs.iter().filter(|m| m.method != "binlog replay") {
        rows.push(vec![
            m.flavor.clone(),
            format!("donor, after {}", m.method),
            "".into(),
            m.donor_agent_hwm_kib.to_string(),
            verdict(m.donor_agent_hwm_kib),
        ]);
        rows.push(vec![
            m.flavor.clone(),
            format!("recipient of {}", m.method),
            "".into(),
            m.recipient_agent_hwm_kib.to_string(),
            verdict(m.recipient_agent_hwm_kib),
        ]);
    }
    out.push_str(&table(&header, 2, &rows));
    out
}
