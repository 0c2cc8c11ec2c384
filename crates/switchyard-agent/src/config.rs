//! What the agent is told: its options (the pod's paths and ports, overridable for tests),
//! the instance ConfigMap (`my.cnf` of the revision the operator assigned, `instance.json`)
//! and the credentials Secret, all read at every container start.
//!
//! The pod's layout (the design of issue 11): the ConfigMap at `/etc/switchyard/config`, the
//! Secret at `/etc/switchyard/secrets` (one file per key), the data volume at
//! `/var/lib/mysql`, run-time files at `/run/mysqld`, the server on port 3306, the agent's
//! HTTP on 9104. The database image's own files are at their usual paths under the image
//! root (`/` in a pod; a directory holding an unpacked image elsewhere).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_mysql::Secret;
use switchyard_mysql::sql::{validate_host, validate_password, validate_user};
use switchyard_plan::versions::{Flavor, Version};

use crate::error::{Error, Result};

/// The agent's HTTP port in a pod.
pub const AGENT_PORT: u16 = 9104;
/// The server's port in a pod.
pub const MYSQL_PORT: u16 = 3306;
/// A Galera node's group communication port in a pod (Galera's default).
pub const GALERA_PORT: u16 = 4567;

/// The ports a Galera node listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaleraPorts {
    /// Group communication (`gmcast.listen_addr`, the peers' `gcomm://` port): 4567.
    pub gcomm: u16,
    /// Incremental state transfers received (`ist.recv_addr`): 4568.
    pub ist: u16,
    /// Snapshot state transfers received (`wsrep_sst_receive_address`): 4444.
    pub sst: u16,
}

impl Default for GaleraPorts {
    fn default() -> Self {
        GaleraPorts {
            gcomm: GALERA_PORT,
            ist: 4568,
            sst: 4444,
        }
    }
}
/// The ConfigMap key of the revision's my.cnf.
pub const MY_CNF_KEY: &str = "my.cnf";
/// The ConfigMap key of [`InstanceConfig`].
pub const INSTANCE_KEY: &str = "instance.json";
/// The lag bound when `instance.json` does not give one.
pub const DEFAULT_MAX_LAG_SECONDS: u64 = 30;

/// Secret keys (one file each under the secrets directory).
pub mod keys {
    /// The operator account's name.
    pub const OPERATOR_USER: &str = "operator-user";
    /// The operator account's password.
    pub const OPERATOR_PASSWORD: &str = "operator-password";
    /// The replication account's name.
    pub const REPLICATION_USER: &str = "replication-user";
    /// The replication account's password (also what `GET /backup` is authenticated with).
    pub const REPLICATION_PASSWORD: &str = "replication-password";
}

/// Where the agent finds things and listens; the defaults are the pod's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The database image's root: its server and tools are at their usual paths under it
    /// (`/usr/sbin/mariadbd`, `/usr/bin/mariadb-backup`, ...). `/` in a pod. Under another
    /// root, programs run through that root's own dynamic loader and libraries.
    pub image_root: PathBuf,
    /// The instance ConfigMap (`my.cnf`, `instance.json`).
    pub config_dir: PathBuf,
    /// The credentials Secret, one file per key.
    pub secrets_dir: PathBuf,
    /// The data volume. The data directory is its `data` subdirectory (a volume's root may
    /// hold `lost+found`, which the servers would take for a database).
    pub volume: PathBuf,
    /// Run-time files: the rendered my.cnf, the socket, the pid file, logs of helper programs.
    pub run_dir: PathBuf,
    /// The server's `tmpdir`.
    pub tmp_dir: PathBuf,
    /// The server's port.
    pub mysql_port: u16,
    /// The address the server binds.
    pub bind_address: String,
    /// The agent's HTTP address.
    pub listen: SocketAddr,
    /// A Galera node's ports (Galera's defaults in a pod).
    pub galera_ports: GaleraPorts,
    /// `report_host` (default: the pod's DNS name from [`Identity`], when known).
    pub report_host: Option<String>,
    /// Where the server's output (its error log) goes; default: the agent's own standard
    /// error, which is the container's log.
    pub server_log: Option<PathBuf>,
    /// What the pod's environment says about the instance.
    pub identity: Identity,
}

impl Default for Options {
    /// The pod's layout.
    fn default() -> Self {
        Options {
            image_root: PathBuf::from("/"),
            config_dir: PathBuf::from("/etc/switchyard/config"),
            secrets_dir: PathBuf::from("/etc/switchyard/secrets"),
            volume: PathBuf::from("/var/lib/mysql"),
            run_dir: PathBuf::from("/run/mysqld"),
            tmp_dir: PathBuf::from("/tmp"),
            mysql_port: MYSQL_PORT,
            bind_address: "0.0.0.0".to_owned(),
            listen: SocketAddr::from(([0, 0, 0, 0], AGENT_PORT)),
            galera_ports: GaleraPorts::default(),
            report_host: None,
            server_log: None,
            identity: Identity::default(),
        }
    }
}

impl Options {
    /// The data directory: `<volume>/data`.
    pub fn datadir(&self) -> PathBuf {
        self.volume.join("data")
    }

    /// Where a data directory is assembled before it is renamed into place:
    /// `<volume>/.staging`.
    pub fn staging(&self) -> PathBuf {
        self.volume.join(".staging")
    }

    /// The server's socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("mysqld.sock")
    }

    /// The rendered my.cnf the server runs with.
    pub fn cnf_path(&self) -> PathBuf {
        self.run_dir.join("my.cnf")
    }

    /// `report_host`: the option, else `<cluster>-<N>.<cluster>-hosts.<namespace>.svc`.
    pub fn report_host(&self) -> Option<String> {
        self.report_host.clone().or_else(|| {
            let id = &self.identity;
            match (&id.cluster, id.ordinal, &id.namespace) {
                (Some(c), Some(n), Some(ns)) => Some(format!("{c}-{n}.{c}-hosts.{ns}.svc")),
                _ => None,
            }
        })
    }
}

/// What the pod's environment says (`SWITCHYARD_CLUSTER`, `SWITCHYARD_ORDINAL`,
/// `SWITCHYARD_FLAVOR`, `SWITCHYARD_VERSION`, `POD_NAMESPACE`, `POD_IP`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's name.
    pub cluster: Option<String>,
    /// The instance's ordinal.
    pub ordinal: Option<u32>,
    /// The flavor (detected from the image when not given).
    pub flavor: Option<Flavor>,
    /// The server version of the revision (reported beside the server's own in `/status`).
    pub version: Option<Version>,
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod's IP address.
    pub pod_ip: Option<String>,
}

/// A donor to provision from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donor {
    /// Its host name or address.
    pub host: String,
    /// Its server port.
    pub port: u16,
    /// Its agent's port (`GET /backup` on MariaDB).
    pub agent_port: u16,
}

/// A replication source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Its host name or address.
    pub host: String,
    /// Its server port.
    pub port: u16,
}

/// `instance.json`: what the operator tells the agent about this instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// The hash of the revision whose my.cnf is beside it.
    pub revision: String,
    /// `server_id` (never 0).
    pub server_id: u32,
    /// Initialize an empty data directory (only ever true for the first instance of a
    /// cluster that was never initialized).
    #[serde(default)]
    pub bootstrap: bool,
    /// Provision an empty data directory from this donor.
    #[serde(default)]
    pub provision_from: Option<Donor>,
    /// Where a provisioned replica replicates from (default: the donor).
    #[serde(default)]
    pub replicate_from: Option<Source>,
    /// A replica lagging more than this many seconds is not ready.
    #[serde(default = "default_max_lag")]
    pub max_lag_seconds: u64,
    /// Galera membership (`topology: galera`); none for a primary-replica instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraMember>,
}

/// What a Galera node is told: its cluster, its peers, and whether it starts a new cluster.
///
/// The operator alone decides which node starts a new cluster (`new_cluster`, at most one
/// node of a cluster at a time, recorded in the cluster's status before any pod is told);
/// every other node joins its peers and receives their state by a state snapshot transfer
/// (SST) or an incremental one (IST).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaleraMember {
    /// `wsrep_cluster_name`.
    pub cluster_name: String,
    /// The host names of every node, this one included (`wsrep_cluster_address =
    /// gcomm://a,b,c`, each on Galera's port 4567).
    pub peers: Vec<String>,
    /// Start with `--wsrep-new-cluster` (bootstrap a new primary component). The agent
    /// refuses it for a data directory whose `grastate.dat` says `safe_to_bootstrap: 0`.
    #[serde(default)]
    pub new_cluster: bool,
    /// The state snapshot transfer method (`mariabackup` or `rsync`).
    pub sst_method: String,
}

/// The SST methods the agent configures.
pub const SST_METHODS: &[&str] = &["mariabackup", "rsync"];

fn default_max_lag() -> u64 {
    DEFAULT_MAX_LAG_SECONDS
}

impl InstanceConfig {
    /// Parses and checks `instance.json` (read from `path`, named in errors).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and what to do.
    pub fn parse(text: &str, path: &Path) -> Result<InstanceConfig> {
        let invalid = |reason: String| Error::InvalidConfig {
            what: "instance.json",
            path: path.to_path_buf(),
            reason,
        };
        let config: InstanceConfig = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "{e}: the operator writes it; see the agent's contract"
            ))
        })?;
        if config.server_id == 0 {
            return Err(invalid(
                "server_id is 0, which no replication source or replica accepts: give every instance a server_id of 1 or more".into(),
            ));
        }
        if config.bootstrap && config.provision_from.is_some() {
            return Err(invalid(
                "bootstrap and provision_from are both set: an empty instance is either the first of a new cluster (bootstrap) or a copy of a donor, not both".into(),
            ));
        }
        if let Some(g) = &config.galera {
            if config.provision_from.is_some() || config.replicate_from.is_some() {
                return Err(invalid(
                    "galera is set with provision_from or replicate_from: a Galera node receives its data from its peers (SST), never from a replication source".into(),
                ));
            }
            if g.peers.is_empty() {
                return Err(invalid(
                    "galera.peers is empty: list every node's host name".into(),
                ));
            }
            if !SST_METHODS.contains(&g.sst_method.as_str()) {
                return Err(invalid(format!(
                    "galera.sst_method '{}' is not one of {}",
                    g.sst_method,
                    SST_METHODS.join(", ")
                )));
            }
            if g.cluster_name.is_empty()
                || !g
                    .cluster_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(format!(
                    "galera.cluster_name '{}' must be letters, digits, '-' or '_'",
                    g.cluster_name
                )));
            }
        }
        for host in config
            .provision_from
            .iter()
            .map(|d| &d.host)
            .chain(config.replicate_from.iter().map(|s| &s.host))
            .chain(config.galera.iter().flat_map(|g| g.peers.iter()))
        {
            validate_host(host).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(config)
    }

    /// Where a provisioned copy replicates from: `replicate_from`, else the donor.
    pub fn replication_source(&self) -> Option<Source> {
        self.replicate_from.clone().or_else(|| {
            self.provision_from.as_ref().map(|d| Source {
                host: d.host.clone(),
                port: d.port,
            })
        })
    }
}

/// An account name and its password (`Debug` hides the password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account name (host `%`).
    pub user: String,
    /// Its password.
    pub password: Secret,
}

/// The credentials the agent uses, from the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secrets {
    /// The operator's account (created at bootstrap).
    pub operator: Account,
    /// The replication account (created at bootstrap; provisioning authenticates with it).
    pub replication: Account,
}

impl Secrets {
    /// Reads the Secret's files from `dir`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the missing or unusable key.
    pub fn read(dir: &Path) -> Result<Secrets> {
        let read = |key: &'static str| -> Result<String> {
            let path = dir.join(key);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::InvalidConfig {
                what: "credentials Secret",
                path: path.clone(),
                reason: format!("key {key} cannot be read ({e}): the Secret must hold it"),
            })?;
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        };
        let account = |user_key: &'static str, password_key: &'static str| -> Result<Account> {
            let user = read(user_key)?;
            validate_user(&user).map_err(|e| Error::InvalidConfig {
                what: "credentials Secret",
                path: dir.join(user_key),
                reason: e.to_string(),
            })?;
            let password = read(password_key)?;
            validate_password(&password).map_err(|e| Error::InvalidConfig {
                what: "credentials Secret",
                path: dir.join(password_key),
                reason: e.to_string(),
            })?;
            Ok(Account {
                user,
                password: Secret::new(password),
            })
        };
        Ok(Secrets {
            operator: account(keys::OPERATOR_USER, keys::OPERATOR_PASSWORD)?,
            replication: account(keys::REPLICATION_USER, keys::REPLICATION_PASSWORD)?,
        })
    }
}

/// Everything read at a start: the revision's my.cnf, `instance.json`, the Secret.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// The revision's my.cnf, verbatim.
    pub my_cnf: String,
    /// `instance.json`.
    pub instance: InstanceConfig,
    /// The credentials.
    pub secrets: Secrets,
}

impl Assignment {
    /// Reads the ConfigMap and the Secret.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a missing or invalid key.
    pub fn read(options: &Options) -> Result<Assignment> {
        let cnf_path = options.config_dir.join(MY_CNF_KEY);
        let my_cnf = std::fs::read_to_string(&cnf_path).map_err(|e| Error::InvalidConfig {
            what: "instance ConfigMap",
            path: cnf_path.clone(),
            reason: format!("key {MY_CNF_KEY} cannot be read ({e}): the ConfigMap must hold the revision's my.cnf"),
        })?;
        let json_path = options.config_dir.join(INSTANCE_KEY);
        let json = std::fs::read_to_string(&json_path).map_err(|e| Error::InvalidConfig {
            what: "instance ConfigMap",
            path: json_path.clone(),
            reason: format!("key {INSTANCE_KEY} cannot be read ({e}): the ConfigMap must hold it"),
        })?;
        let instance = InstanceConfig::parse(&json, &json_path)?;
        let secrets = Secrets::read(&options.secrets_dir)?;
        Ok(Assignment {
            my_cnf,
            instance,
            secrets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<InstanceConfig> {
        InstanceConfig::parse(text, Path::new("instance.json"))
    }

    #[test]
    fn instance_json_as_the_operator_writes_it() {
        let c = parse(
            r#"{"revision":"abc","server_id":1001,"bootstrap":false,
                "provision_from":{"host":"db-0.db-hosts.ns.svc","port":3306,"agent_port":9104},
                "replicate_from":null,"max_lag_seconds":5,"future_field":1}"#,
        )
        .unwrap();
        assert_eq!(c.server_id, 1001);
        assert_eq!(c.max_lag_seconds, 5);
        // A copy replicates from its donor unless told otherwise.
        assert_eq!(
            c.replication_source(),
            Some(Source {
                host: "db-0.db-hosts.ns.svc".into(),
                port: 3306
            })
        );
        let minimal = parse(r#"{"revision":"abc","server_id":7}"#).unwrap();
        assert!(!minimal.bootstrap);
        assert_eq!(minimal.max_lag_seconds, DEFAULT_MAX_LAG_SECONDS);
        assert_eq!(minimal.replication_source(), None);
    }

    #[test]
    fn bad_instance_json_names_what_to_fix() {
        let e = parse(r#"{"revision":"abc","server_id":0}"#).unwrap_err();
        assert!(e.is_invalid_input());
        assert!(e.to_string().contains("server_id is 0"), "{e}");
        let e = parse(
            r#"{"revision":"a","server_id":1,"bootstrap":true,
                "provision_from":{"host":"h","port":1,"agent_port":2}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("both set"), "{e}");
        let e = parse(r#"{"revision":"a","server_id":1,"replicate_from":{"host":"x'y","port":1}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("host"), "{e}");
        let e = parse("{").unwrap_err();
        assert!(e.to_string().contains("instance.json"), "{e}");
    }

    #[test]
    fn secrets_are_read_per_key_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        for (k, v) in [
            (keys::OPERATOR_USER, "switchyard"),
            (keys::OPERATOR_PASSWORD, "op-secret-1\n"),
            (keys::REPLICATION_USER, "repl"),
        ] {
            std::fs::write(dir.path().join(k), v).unwrap();
        }
        let e = Secrets::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(keys::REPLICATION_PASSWORD), "{e}");
        std::fs::write(dir.path().join(keys::REPLICATION_PASSWORD), "repl-secret-2").unwrap();
        let s = Secrets::read(dir.path()).unwrap();
        assert_eq!(s.operator.password.expose(), "op-secret-1");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("op-secret-1") && !shown.contains("repl-secret-2"),
            "{shown}"
        );
    }

    #[test]
    fn report_host_is_the_pods_dns_name() {
        let mut o = Options::default();
        assert_eq!(o.report_host(), None);
        o.identity = Identity {
            cluster: Some("db".into()),
            ordinal: Some(2),
            namespace: Some("prod".into()),
            ..Identity::default()
        };
        assert_eq!(o.report_host().as_deref(), Some("db-2.db-hosts.prod.svc"));
        assert_eq!(o.datadir(), Path::new("/var/lib/mysql/data"));
    }
}
