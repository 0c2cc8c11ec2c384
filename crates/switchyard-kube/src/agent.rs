//! The contract between the operator and `switchyard agent`, the process that runs in every
//! database pod: the paths and port of the pod, what the operator writes for the agent
//! ([`InstanceConfig`], the `instance.json` key of the instance's ConfigMap) and what it reads
//! back ([`AgentStatus`], `GET /status`), with a small HTTP client for it.
//!
//! The agent reads `my.cnf` and `instance.json` at every container start, so what the
//! operator writes there (the revision the record assigns to the instance, whether to
//! initialize or provision an empty data directory) is what a restarted container runs.
//! Everything here is plain data; the pod spec that uses these paths is built by
//! [`crate::build`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::{Flavor, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The agent's HTTP port (`/livez`, `/readyz`, `/status`, `/backup`), named `agent` in the pod.
pub const AGENT_PORT: u16 = 9104;
/// Where the install init container copies the binary, its loader and its libraries (an
/// emptyDir shared with the server container).
pub const INSTALL_DIR: &str = "/switchyard";
/// The switchyard binary inside the operator's image.
pub const IMAGE_BINARY: &str = "/usr/local/bin/switchyard";
/// Where the instance's ConfigMap is mounted (`my.cnf`, `instance.json`).
pub const CONFIG_DIR: &str = "/etc/switchyard/config";
/// Where the credentials Secret is mounted (one file per key of
/// [`crate::credentials::keys`]).
pub const SECRETS_DIR: &str = "/etc/switchyard/secrets";
/// The data directory (the instance's volume claim).
pub const DATA_DIR: &str = "/var/lib/mysql";
/// The server's socket and run-time files (an emptyDir).
pub const RUN_DIR: &str = "/run/mysqld";
/// The ConfigMap key of the revision's my.cnf.
pub const MY_CNF_KEY: &str = "my.cnf";
/// The ConfigMap key of [`InstanceConfig`].
pub const INSTANCE_KEY: &str = "instance.json";

/// The file name of the dynamic loader the agent is copied with: the basename of the
/// binary's `PT_INTERP` (the operator and the agent are the same binary, so the operator
/// knows it).
pub const LOADER: &str = if cfg!(target_arch = "aarch64") {
    "ld-linux-aarch64.so.1"
} else {
    "ld-linux-x86-64.so.2"
};

/// The install init container's command (run in the operator's image).
pub fn install_command() -> Vec<String> {
    [IMAGE_BINARY, "agent", "install", "--to", INSTALL_DIR]
        .map(str::to_owned)
        .to_vec()
}

/// The server container's command: the copied binary through its own loader and libraries,
/// so it runs on whatever C library the database image has.
pub fn run_command() -> Vec<String> {
    vec![
        format!("{INSTALL_DIR}/lib/{LOADER}"),
        "--library-path".into(),
        format!("{INSTALL_DIR}/lib"),
        format!("{INSTALL_DIR}/bin/switchyard"),
        "agent".into(),
        "run".into(),
    ]
}

/// What the agent needs to reach a donor for provisioning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donor {
    /// The donor's DNS name (`<cluster>-<N>.<cluster>-hosts.<ns>.svc`).
    pub host: String,
    /// Its server port.
    pub port: u16,
    /// Its agent's port (MariaDB: `GET /backup` streams the backup from there).
    pub agent_port: u16,
}

/// A replication source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The source's DNS name.
    pub host: String,
    /// Its server port.
    pub port: u16,
}

/// `instance.json`: what the operator tells the agent of instance N, read at every container
/// start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// The hash of the revision whose my.cnf is beside it.
    pub revision: String,
    /// The server's `server_id` ([`crate::names::SERVER_ID_BASE`] + the ordinal: never 0).
    pub server_id: u32,
    /// Initialize an empty data directory (only ever set for ordinal 0 of a cluster that was
    /// never initialized). Without it (and without `provision_from`) an empty data
    /// directory is left empty and the agent reports not-ready with the reason.
    pub bootstrap: bool,
    /// Provision an empty data directory from this donor (a healthy instance running the
    /// same server version); never set on the primary.
    pub provision_from: Option<Donor>,
    /// Where a provisioned replica starts replicating from (the primary); none on the primary.
    pub replicate_from: Option<Source>,
    /// A replica lagging more than this is not ready (out of the read Service).
    pub max_lag_seconds: u64,
    /// Galera membership (`topology: galera`); none on a primary-replica cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraMember>,
}

/// What a Galera node's agent is told (the agent's `GaleraMember`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaleraMember {
    /// `wsrep_cluster_name`: the cluster's name.
    pub cluster_name: String,
    /// Every node's stable host name, this one included (`gcomm://a,b,c`).
    pub peers: Vec<String>,
    /// Start a new cluster (`--wsrep-new-cluster`): true for at most one node, the one the
    /// status' `galeraBootstrap` names.
    #[serde(default)]
    pub new_cluster: bool,
    /// The state snapshot transfer method.
    pub sst_method: String,
}

/// The provisioning state the agent reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provisioning {
    /// Nothing to provision, or not started.
    #[default]
    Idle,
    /// Copying from the donor (or preparing the copy).
    Running,
    /// The copy is in place and replication started.
    Done,
    /// The last attempt failed (`provisioning_error` says why).
    Failed,
}

/// `GET /status` of the agent. Every field has a default, so an agent that reports less
/// still parses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStatus {
    /// The server's version as it reports it (`SELECT VERSION()`), when it runs.
    pub server_version: Option<String>,
    /// The content of the data directory's `mariadb_upgrade_info` (MariaDB, trimmed): the
    /// version whose `mariadb-upgrade` last upgraded the system tables.
    pub mariadb_upgrade_info: Option<String>,
    /// Whether the data directory holds an initialized server.
    pub data_dir_initialized: bool,
    /// Provisioning from a donor.
    pub provisioning: Provisioning,
    /// Why the last provisioning failed.
    pub provisioning_error: Option<String>,
    /// The revision hash of the `instance.json` the agent started the server with.
    pub revision: Option<String>,
    /// Why the instance is not ready, when it is not.
    pub not_ready: Option<String>,
}

impl AgentStatus {
    /// Whether the instance's data directory is empty and nothing will fill it on its own
    /// (not provisioning): its data was lost, or it was never made.
    pub fn empty(&self) -> bool {
        !self.data_dir_initialized && self.provisioning != Provisioning::Running
    }
}

/// Whether the system tables of a server running `running` are upgraded, by the vendor's rule:
/// MySQL upgrades them itself at start; MariaDB's `mariadb-upgrade` is needed (and run by the
/// agent) only when the major.minor rises, so `mariadb_upgrade_info` must name the running
/// major.minor. A patch-level change (10.11.14 → 10.11.15) leaves the file at the older
/// patch, and the tables are current.
pub fn system_tables_current(flavor: Flavor, running: Version, status: &AgentStatus) -> bool {
    match flavor {
        Flavor::Mysql => true,
        Flavor::Mariadb => status
            .mariadb_upgrade_info
            .as_deref()
            .and_then(|text| Version::parse(text.trim()).ok())
            .is_some_and(|v| (v.major, v.minor) == (running.major, running.minor)),
    }
}

/// A failed request to an agent.
#[derive(Debug, thiserror::Error)]
#[error("agent at {host}:{port}: {message}")]
pub struct AgentError {
    /// The agent's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// What failed.
    pub message: String,
}

/// How long one request to an agent may take.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /status` from the agent at `host:port` (plain HTTP/1.1, bounded by [`AGENT_TIMEOUT`]).
///
/// # Errors
/// [`AgentError`] when the agent cannot be reached, answers with another status than 200, or
/// sends something that is not an [`AgentStatus`].
pub async fn fetch_status(host: &str, port: u16) -> Result<AgentStatus, AgentError> {
    let fail = |message: String| AgentError {
        host: host.to_owned(),
        port,
        message,
    };
    let body = tokio::time::timeout(AGENT_TIMEOUT, get(host, port, "/status"))
        .await
        .map_err(|_| fail(format!("no answer within {}s", AGENT_TIMEOUT.as_secs())))?
        .map_err(fail)?;
    serde_json::from_slice(&body).map_err(|e| fail(format!("GET /status: not a status: {e}")))
}

async fn get(host: &str, port: u16, path: &str) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    parse_response(&raw).map_err(|e| format!("GET {path}: {e}"))
}

/// The body of a plain HTTP/1.1 response (`Content-Length`, chunked, or to the end), when
/// its status is 200.
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(body).trim()
        ));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("a truncated chunk")?;
            let size_text = String::from_utf8_lossy(&rest[..end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "a bad chunk size")?;
            rest = &rest[end + 2..];
            if size == 0 {
                return Ok(out);
            }
            let chunk = rest.get(..size).ok_or("a truncated chunk")?;
            out.extend_from_slice(chunk);
            rest = rest.get(size + 2..).ok_or("a truncated chunk")?;
        }
    }
    match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => Ok(body.get(..n).ok_or("a truncated body")?.to_vec()),
        None => Ok(body.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(info: Option<&str>) -> AgentStatus {
        AgentStatus {
            mariadb_upgrade_info: info.map(str::to_owned),
            ..AgentStatus::default()
        }
    }

    #[test]
    fn mariadb_system_tables_follow_major_minor_not_the_patch() {
        let v = |s: &str| Version::parse(s).unwrap();
        let maria = Flavor::Mariadb;
        // A patch-level upgrade leaves the file at the older patch: current.
        assert!(system_tables_current(
            maria,
            v("10.11.15"),
            &status(Some("10.11.14\n"))
        ));
        assert!(system_tables_current(
            maria,
            v("10.11.14"),
            &status(Some("10.11.14-MariaDB"))
        ));
        // A new major.minor needs mariadb-upgrade.
        assert!(!system_tables_current(
            maria,
            v("11.8.3"),
            &status(Some("10.11.14"))
        ));
        assert!(!system_tables_current(maria, v("10.11.14"), &status(None)));
        assert!(system_tables_current(
            Flavor::Mysql,
            v("9.7.0"),
            &status(None)
        ));
    }

    #[test]
    fn responses_parse_by_length_chunks_or_close_and_refuse_other_statuses() {
        let body = br#"{"data_dir_initialized":true}"#;
        let mut by_length =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        by_length.extend_from_slice(body);
        assert_eq!(parse_response(&by_length).unwrap(), body);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), b"hello world");
        let closed = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(closed).unwrap(), b"{}");
        let refused = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nempty";
        let e = parse_response(refused).unwrap_err();
        assert!(e.contains("503") && e.contains("empty"), "{e}");
        // An agent that reports less still parses; unknown fields are ignored.
        let s: AgentStatus =
            serde_json::from_str(r#"{"provisioning":"running","extra":1}"#).unwrap();
        assert_eq!(s.provisioning, Provisioning::Running);
        assert!(!s.empty());
        assert!(AgentStatus::default().empty());
    }

    #[tokio::test]
    async fn the_status_is_fetched_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /status HTTP/1.1"));
            let body = r#"{"server_version":"10.11.14-MariaDB","mariadb_upgrade_info":"10.11.14","data_dir_initialized":true,"provisioning":"done"}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(reply.as_bytes()).await.unwrap();
        });
        let status = fetch_status("127.0.0.1", port).await.unwrap();
        server.await.unwrap();
        assert_eq!(status.provisioning, Provisioning::Done);
        assert_eq!(status.mariadb_upgrade_info.as_deref(), Some("10.11.14"));
        assert!(status.data_dir_initialized);
    }
}
