//! `switchyard agent`: the process in every database pod (`crates/switchyard-agent`).
//! `install --to DIR` copies this binary with its loader and libraries; `run` owns the
//! instance (the server container's process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Subcommand};
use switchyard_agent::config::{AGENT_PORT, Identity, MYSQL_PORT, Options};
use switchyard_plan::versions::{Flavor, Version};

use crate::exit::{Exit, invalid};

/// Arguments of `switchyard agent`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Copy this binary with its dynamic loader and shared libraries into DIR (DIR/bin,
    /// DIR/lib), so that `DIR/lib/<loader> --library-path DIR/lib DIR/bin/switchyard` runs
    /// in another root filesystem.
    Install {
        /// Where to copy.
        #[arg(long)]
        to: PathBuf,
    },
    /// Own the instance: render its my.cnf, initialize or provision an empty data
    /// directory when told to, run the server, serve /livez, /readyz, /status, /backup.
    Run(Box<RunArgs>),
}

/// Arguments of `switchyard agent run`; every default is the pod's layout.
#[derive(ClapArgs, Debug)]
struct RunArgs {
    /// The database image's filesystem is under this directory (`/` in a pod; elsewhere
    /// its programs run through its own dynamic loader).
    #[arg(long, env = "SWITCHYARD_AGENT_IMAGE_ROOT", default_value = "/")]
    image_root: PathBuf,
    /// The instance ConfigMap (my.cnf, instance.json).
    #[arg(
        long,
        env = "SWITCHYARD_AGENT_CONFIG_DIR",
        default_value = "/etc/switchyard/config"
    )]
    config_dir: PathBuf,
    /// The credentials Secret (one file per key).
    #[arg(
        long,
        env = "SWITCHYARD_AGENT_SECRETS_DIR",
        default_value = "/etc/switchyard/secrets"
    )]
    secrets_dir: PathBuf,
    /// The data volume (the data directory is its `data` subdirectory).
    #[arg(
        long,
        env = "SWITCHYARD_AGENT_VOLUME",
        default_value = "/var/lib/mysql"
    )]
    volume: PathBuf,
    /// Run-time files (socket, rendered my.cnf, helper logs).
    #[arg(long, env = "SWITCHYARD_AGENT_RUN_DIR", default_value = "/run/mysqld")]
    run_dir: PathBuf,
    /// The server's tmpdir.
    #[arg(long, env = "SWITCHYARD_AGENT_TMP_DIR", default_value = "/tmp")]
    tmp_dir: PathBuf,
    /// The server's port.
    #[arg(long, env = "SWITCHYARD_AGENT_MYSQL_PORT", default_value_t = MYSQL_PORT)]
    mysql_port: u16,
    /// The address the server binds.
    #[arg(long, env = "SWITCHYARD_AGENT_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: String,
    /// The agent's HTTP address.
    #[arg(long, env = "SWITCHYARD_AGENT_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], AGENT_PORT)))]
    listen: SocketAddr,
    /// The server's report_host (default: <cluster>-<N>.<cluster>-hosts.<namespace>.svc).
    #[arg(long, env = "SWITCHYARD_AGENT_REPORT_HOST")]
    report_host: Option<String>,
    /// Append the server's output here instead of the agent's standard error.
    #[arg(long, env = "SWITCHYARD_AGENT_SERVER_LOG")]
    server_log: Option<PathBuf>,
    /// The cluster's name.
    #[arg(long, env = "SWITCHYARD_CLUSTER")]
    cluster: Option<String>,
    /// The instance's ordinal.
    #[arg(long, env = "SWITCHYARD_ORDINAL")]
    ordinal: Option<u32>,
    /// mysql or mariadb (default: detected from the image).
    #[arg(long, env = "SWITCHYARD_FLAVOR")]
    flavor: Option<String>,
    /// The revision's server version (reported beside the server's own).
    #[arg(long, env = "SWITCHYARD_VERSION")]
    version: Option<String>,
    /// The pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// The pod's IP address.
    #[arg(long, env = "POD_IP")]
    pod_ip: Option<String>,
}

impl RunArgs {
    fn options(self) -> Result<Options, Exit> {
        let flavor = match self.flavor.as_deref().filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => Some(f.parse::<Flavor>().map_err(|_| {
                invalid(format!(
                    "SWITCHYARD_FLAVOR / --flavor is {f:?}: use mysql or mariadb"
                ))
            })?),
        };
        let version =
            match self.version.as_deref().filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => Some(Version::parse(v).map_err(|e| {
                    invalid(format!("SWITCHYARD_VERSION / --version is {v:?}: {e}"))
                })?),
            };
        Ok(Options {
            image_root: self.image_root,
            config_dir: self.config_dir,
            secrets_dir: self.secrets_dir,
            volume: self.volume,
            run_dir: self.run_dir,
            tmp_dir: self.tmp_dir,
            mysql_port: self.mysql_port,
            bind_address: self.bind_address,
            listen: self.listen,
            galera_ports: switchyard_agent::config::GaleraPorts::default(),
            report_host: self.report_host,
            server_log: self.server_log,
            identity: Identity {
                cluster: self.cluster,
                ordinal: self.ordinal,
                flavor,
                version,
                namespace: self.namespace,
                pod_ip: self.pod_ip,
            },
        })
    }
}

/// Runs `switchyard agent ...`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Install { to } => install(to).into(),
        Command::Run(args) => run_agent(*args),
    }
}

fn install(to: PathBuf) -> Exit {
    let exe = PathBuf::from("/proc/self/exe");
    match switchyard_agent::install(&exe, &to) {
        Ok(installed) => {
            println!(
                "installed {} with {} libraries; run it as: {}",
                installed.binary.display(),
                installed.libraries.len(),
                installed.command().join(" ")
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Internal
        }
    }
}

fn run_agent(args: RunArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let options = match args.options() {
        Ok(o) => o,
        Err(exit) => return exit.into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return Exit::Internal.into();
        }
    };
    let outcome = runtime.block_on(switchyard_agent::run(
        options,
        crate::operator::shutdown_signal(),
    ));
    match outcome {
        Ok(()) => Exit::Ok.into(),
        Err(e) if e.is_invalid_input() => invalid(e).into(),
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Internal.into()
        }
    }
}
