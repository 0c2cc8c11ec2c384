//! `agent run`: the container's process. It serves HTTP from the first moment, makes sure the
//! data directory exists, starts the server as its child and watches it until SIGTERM.
//!
//! The steps, in order:
//! 1. Read the instance ConfigMap (`my.cnf`, `instance.json`) and the Secret; anything
//!    unusable stops the agent with the reason (exit 64).
//! 2. Listen on the agent's port.
//! 3. Until `<volume>/data` exists:
//!    - `bootstrap`: initialize it ([`crate::bootstrap`]);
//!    - `provision_from`: copy the donor ([`crate::provision`]), retried with backoff;
//!    - neither: **initialize nothing** (a lost volume must never come back as an empty
//!      instance that could be made writable). The agent reports `uninitialized` (not
//!      ready, with the reason) and reads `instance.json` again every 2 s, so the operator
//!      can point it at a donor.
//! 4. Render the server's my.cnf from the revision's ([`crate::cnf`]), remove the socket lock a
//!    killed MySQL server left, and start the server:
//!    read-only, replication not started; on MariaDB, an instance of a semi-synchronous
//!    revision with no replication source (a primary, a failed primary) with the source side
//!    of semi-synchronous replication on ([`crate::semisync`]). A MariaDB data directory
//!    upgraded by a newer major.minor is refused before the server starts.
//! 5. Once it answers: MariaDB runs `mariadb-upgrade` if the vendor's rule says so
//!    ([`crate::upgrade`]); a copy just provisioned has its replication started from its
//!    position. The agent is then `running`.
//! 6. The server exiting on its own ends the agent with an error (the kubelet restarts the
//!    container, which starts over at step 1 with the current ConfigMap). SIGTERM stops the
//!    server cleanly and ends the agent with success.
//!
//! A start that fails for a reason a restart would not fix (a downgrade, a failed upgrade,
//! a failed bootstrap) leaves the agent up and `failed` with the reason, the server stopped.
//! A copy whose replication the local server did not take (its connection cut) ends the
//! agent instead: the copy stays marked pending, and the restarted container tries again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_plan::versions::{Flavor, Version};
use tokio::sync::watch;

use crate::config::{Assignment, Donor, Options};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::image::{Image, ServerUser};
use crate::local::{self, LOCAL_TIMEOUT};
use crate::provision::{self, Pending};
use crate::replication;
use crate::server::Server;
use crate::status::{Phase, Provisioning, Shared};
use crate::upgrade::{self, SystemTables};
use crate::{bootstrap, cnf, semisync};

/// How long the server may take to stop after SIGTERM before it is killed (the kubelet's
/// grace period usually ends first).
pub const STOP_LIMIT: Duration = Duration::from_secs(600);
/// How long a start may take (crash recovery included) before it counts as failed.
pub const START_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// How often an uninitialized agent reads `instance.json` again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// Runs the agent until `shutdown` resolves (SIGTERM) or the server exits on its own.
///
/// # Errors
/// [`Error::InvalidConfig`] (before anything is started) for unusable configuration,
/// [`Error::Listen`], and [`Error::Server`] when the server exited on its own.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<()> {
    let assignment = Assignment::read(&options)?;
    let image = Image::open(&options.image_root, options.identity.flavor)?;
    let user = image.server_user();
    prepare_dirs(&options, user.as_ref())?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: options.listen,
            source,
        })?;
    tracing::info!(
        listen = %options.listen,
        flavor = %image.flavor(),
        revision = %assignment.instance.revision,
        "agent starting"
    );
    let shared = Arc::new(Shared::new(options, image, assignment));
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = tokio::spawn(crate::http::serve(
        listener,
        shared.clone(),
        stop_rx.clone(),
    ));
    let life = lifecycle(shared.clone(), stop_rx);
    tokio::pin!(life);
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        r = &mut life => r,
        () = &mut shutdown => {
            tracing::info!("SIGTERM: stopping");
            let _ = stop_tx.send(true);
            life.await
        }
    };
    let _ = stop_tx.send(true);
    let _ = http.await;
    outcome
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The run directory (socket, pid file, rendered my.cnf, helper logs), the server's
/// `tmpdir` and MySQL's `secure_file_priv` folder, owned by the server's user.
fn prepare_dirs(options: &Options, user: Option<&ServerUser>) -> Result<()> {
    let files = options.run_dir.join("files");
    for dir in [&options.volume, &options.run_dir, &files, &options.tmp_dir] {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    if let Some(user) = user {
        for dir in [&options.run_dir, &files] {
            fsutil::ensure_owner(dir, user)?;
        }
        use std::os::unix::fs::PermissionsExt as _;
        let sticky = std::fs::metadata(&options.tmp_dir)
            .map(|m| m.permissions().mode() & 0o1777 == 0o1777)
            .unwrap_or(false);
        if !sticky {
            fsutil::ensure_owner(&options.tmp_dir, user)?;
        }
    }
    Ok(())
}

/// Writes the server's my.cnf from the current assignment and returns its path.
fn render_cnf(shared: &Shared) -> Result<std::path::PathBuf> {
    let (revision, revision_cnf, instance) = {
        let st = shared.state();
        (
            st.assignment.instance.revision.clone(),
            st.assignment.my_cnf.clone(),
            st.assignment.instance.clone(),
        )
    };
    let user = shared.image.server_user();
    let mut owned = cnf::owned_options(&shared.options, &instance, &shared.image, user.as_ref());
    if semisync::source_on_at_start(shared.flavor(), &revision_cnf, &shared.options.datadir()) {
        tracing::info!(
            "no replication source in the data directory of a semi-synchronous revision: \
             the server starts with the source side of semi-synchronous replication on"
        );
        let (key, value) = semisync::SOURCE_ON_OPTION;
        owned.push((key, value.to_owned()));
    }
    let text = cnf::render(&revision, &revision_cnf, &owned);
    let path = shared.options.cnf_path();
    let tmp = path.with_extension("cnf.tmp");
    std::fs::write(&tmp, text).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(Error::io("rename into place", &path))?;
    Ok(path)
}

/// Reads the ConfigMap and Secret again; a read that fails keeps what was read before.
fn reread(shared: &Shared) {
    match Assignment::read(&shared.options) {
        Ok(a) => shared.state().assignment = a,
        Err(e) => tracing::warn!(error = %e, "keeping the previous configuration"),
    }
}

async fn lifecycle(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<()> {
    match ensure_data(&shared, &mut stop).await {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(e) => {
            tracing::error!(error = %e, category = e.category(), "could not make the data directory");
            shared.set_phase(Phase::Failed, Some(e.to_string()));
            stopped(&mut stop).await;
            return Ok(());
        }
    }
    serve_server(&shared, &mut stop).await
}

/// Step 3: returns `Ok(true)` once the data directory exists, `Ok(false)` when stopped first.
async fn ensure_data(shared: &Shared, stop: &mut watch::Receiver<bool>) -> Result<bool> {
    let datadir = shared.options.datadir();
    let staging = shared.options.staging();
    if staging.exists() {
        tracing::info!(path = %staging.display(), "removing what an interrupted start left");
        std::fs::remove_dir_all(&staging).map_err(Error::io("remove", &staging))?;
    }
    let mut backoff = Duration::from_secs(2);
    loop {
        if datadir.is_dir() {
            return Ok(true);
        }
        let instance = shared.state().assignment.instance.clone();
        // A Galera node that joins its peers gets its data from them (SST) before it serves:
        // its own initialized directory only lets the server start, and the transfer
        // replaces it. A node told to start a new cluster is initialized only with
        // `bootstrap` (a cluster never initialized): a lost volume never bootstraps.
        let galera_joiner = instance.galera.as_ref().is_some_and(|g| !g.new_cluster);
        if instance.bootstrap || galera_joiner {
            shared.set_phase(Phase::Bootstrapping, None);
            tokio::select! {
                r = bootstrap_data(shared) => r?,
                () = stopped(stop) => return Ok(false),
            }
            continue;
        }
        if let Some(donor) = instance.provision_from {
            shared.set_phase(
                Phase::Provisioning,
                Some(format!("copying {}:{}", donor.host, donor.port)),
            );
            {
                let mut st = shared.state();
                st.provisioning = Provisioning::Running;
                st.provisioning_donor = Some(format!("{}:{}", donor.host, donor.port));
            }
            shared.provision_bytes.store(0, Ordering::Relaxed);
            let outcome = tokio::select! {
                r = provision_data(shared, &donor) => r,
                () = stopped(stop) => return Ok(false),
            };
            match outcome {
                Ok(()) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "provisioning failed");
                    {
                        let mut st = shared.state();
                        st.provisioning = Provisioning::Failed;
                        st.provisioning_error = Some(e.to_string());
                    }
                    shared.set_phase(
                        Phase::Provisioning,
                        Some(format!("{e}; retrying in {}s", backoff.as_secs())),
                    );
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stopped(stop) => return Ok(false),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    reread(shared);
                    continue;
                }
            }
        }
        shared.set_phase(
            Phase::Uninitialized,
            Some(format!(
                "the data directory {} does not exist and instance.json declares neither bootstrap nor provision_from: nothing is initialized (a lost volume must not come back as an empty instance); set provision_from to copy a donor",
                datadir.display()
            )),
        );
        tokio::select! {
            () = tokio::time::sleep(RECHECK) => {}
            () = stopped(stop) => return Ok(false),
        }
        reread(shared);
    }
}

async fn bootstrap_data(shared: &Shared) -> Result<()> {
    let cnf = render_cnf(shared)?;
    let secrets = shared.secrets();
    let user = shared.image.server_user();
    let staging = shared.options.staging();
    std::fs::create_dir_all(&staging).map_err(Error::io("create directory", &staging))?;
    if let Some(u) = &user {
        fsutil::chown_tree(&staging, u)?;
    }
    let target = staging.join("data");
    std::fs::create_dir_all(&target).map_err(Error::io("create directory", &target))?;
    if let Some(u) = &user {
        fsutil::chown_tree(&target, u)?;
    }
    let version = shared.image.server_version().await?;
    let galera = shared.state().assignment.instance.galera.is_some();
    tracing::info!(%version, "initializing the data directory (declared bootstrap)");
    bootstrap::initialize(
        &shared.image,
        &cnf,
        &target,
        &shared.options.run_dir,
        &secrets,
        version,
        user.as_ref(),
        galera,
    )
    .await?;
    if let Some(u) = &user {
        fsutil::chown_tree(&target, u)?;
    }
    fsutil::publish(&target, &shared.options.datadir())?;
    std::fs::remove_dir_all(&staging).map_err(Error::io("remove", &staging))?;
    Ok(())
}

async fn provision_data(shared: &Shared, donor: &Donor) -> Result<()> {
    let cnf = render_cnf(shared)?;
    let account = shared.secrets().replication;
    let ctx = provision::Context {
        options: &shared.options,
        image: &shared.image,
        cnf: &cnf,
        account: &account,
        bytes: shared.provision_bytes.clone(),
    };
    let target = match shared.flavor() {
        Flavor::Mysql => provision::clone_mysql(&ctx, donor).await?,
        Flavor::Mariadb => provision::receive_mariadb_backup(&ctx, donor).await?,
    };
    if let Some(u) = shared.image.server_user() {
        fsutil::chown_tree(&target, &u)?;
    }
    fsutil::publish(&target, &shared.options.datadir())?;
    let staging = shared.options.staging();
    std::fs::remove_dir_all(&staging).map_err(Error::io("remove", &staging))?;
    tracing::info!(
        bytes = shared.provision_bytes.load(Ordering::Relaxed),
        "provisioned from {}:{}",
        donor.host,
        donor.port
    );
    Ok(())
}

/// Steps 4 to 6.
async fn serve_server(shared: &Shared, stop: &mut watch::Receiver<bool>) -> Result<()> {
    let started = async {
        let cnf = render_cnf(shared)?;
        let version = shared.image.server_version().await?;
        let datadir = shared.options.datadir();
        if let SystemTables::Newer { data } = upgrade::system_tables(
            shared.flavor(),
            upgrade::read_upgrade_info(&datadir).and_then(|i| i.version),
            version,
        ) {
            return Err(Error::DataDir {
                path: datadir,
                reason: format!(
                    "its system tables were upgraded by MariaDB {data}, and this server is {version}: a downgrade across series is not supported (run a {data} or newer image)"
                ),
            });
        }
        if let Some(u) = shared.image.server_user() {
            fsutil::ensure_owner(&datadir, &u)?;
        }
        remove_stale_socket_lock(&shared.options)?;
        Ok((cnf, version))
    }
    .await;
    let (cnf, version) = match started {
        Ok(v) => v,
        Err(e) => return fail(shared, e, stop).await,
    };
    let args = match galera_args(shared) {
        Ok(a) => a,
        Err(e) => return fail(shared, e, stop).await,
    };
    shared.set_phase(Phase::Starting, None);
    let mut server = Server::spawn(
        &shared.image,
        &cnf,
        &args,
        shared.options.server_log.as_deref(),
    )?;
    shared.state().server_pid = Some(server.pid());
    let settled = tokio::select! {
        r = settle(shared, &mut server, version) => r,
        () = stopped(stop) => {
            shared.set_phase(Phase::Stopping, None);
            let r = server.stop(STOP_LIMIT).await;
            shared.state().server_pid = None;
            return r.map(drop);
        }
    };
    if let Err(e) = settled {
        if let Some(status) = server.try_exited()? {
            shared.state().server_pid = None;
            return Err(Error::Server {
                what: "exited while starting",
                detail: format!("{status}: {e}"),
            });
        }
        let _ = server.stop(STOP_LIMIT).await;
        shared.state().server_pid = None;
        if let Error::Server { .. } = e {
            // Transient: the agent ends and the kubelet restarts the container.
            return Err(e);
        }
        return fail(shared, e, stop).await;
    }
    shared.set_phase(Phase::Running, None);
    tokio::select! {
        status = server.exited() => {
            shared.state().server_pid = None;
            shared.set_phase(Phase::Failed, Some(format!("the server exited ({status})")));
            Err(Error::Server { what: "exited", detail: status.to_string() })
        }
        () = stopped(stop) => {
            shared.set_phase(Phase::Stopping, None);
            let r = server.stop(STOP_LIMIT).await;
            shared.state().server_pid = None;
            r.map(drop)
        }
    }
}

/// Removes MySQL's socket lock file (`mysqld.sock.lock`), which a killed server leaves with
/// its pid in it. The run directory (an `emptyDir`) outlives the container, and in the next
/// container's fresh pid namespace that number may be a live process (a thread of the new
/// server itself): MySQL would then refuse to start (`Another process with pid N is using
/// unix socket file`), for every restart. Before the agent starts its server no server runs
/// on this run directory (the container's processes ended with the container), so the lock
/// is stale.
fn remove_stale_socket_lock(options: &Options) -> Result<()> {
    let mut lock = options.socket().into_os_string();
    lock.push(".lock");
    let lock = std::path::PathBuf::from(lock);
    match std::fs::remove_file(&lock) {
        Ok(()) => {
            tracing::info!(path = %lock.display(), "removed the socket lock a killed server left");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &lock)(e)),
    }
}

/// The server's extra arguments on a Galera node: `--wsrep-new-cluster` when the operator
/// named this node to start the cluster, refused when the data directory's `grastate.dat`
/// says `safe_to_bootstrap: 0` (Galera's own guard: another node may hold newer
/// transactions).
fn galera_args(shared: &Shared) -> Result<Vec<String>> {
    let galera = shared.state().assignment.instance.galera.clone();
    let Some(g) = galera.filter(|g| g.new_cluster) else {
        return Ok(Vec::new());
    };
    let datadir = shared.options.datadir();
    if let Some(state) = crate::galera::GraState::read(&datadir)
        && !state.safe_to_bootstrap
    {
        return Err(Error::DataDir {
            path: datadir,
            reason: format!(
                "told to start a new Galera cluster ({}), but grastate.dat says safe_to_bootstrap: 0 (seqno {}): another node may hold newer transactions; the operator must name the node with the highest recovered seqno",
                g.cluster_name, state.seqno
            ),
        });
    }
    tracing::info!(cluster = %g.cluster_name, "starting a new Galera cluster (named by the operator)");
    Ok(vec!["--wsrep-new-cluster".to_owned()])
}

/// A start that failed for good: report it and wait for SIGTERM.
async fn fail(shared: &Shared, e: Error, stop: &mut watch::Receiver<bool>) -> Result<()> {
    tracing::error!(error = %e, category = e.category(), "the instance cannot start");
    shared.set_phase(Phase::Failed, Some(e.to_string()));
    stopped(stop).await;
    Ok(())
}

/// Step 5: waits for the server, upgrades its system tables if the rule says so, and
/// starts the replication of a copy just provisioned.
/// How many more times a copy is pointed at its source after a failure, and the pause
/// before each.
const POINT_RETRIES: u32 = 5;
const POINT_RETRY_PAUSE: Duration = Duration::from_millis(500);

async fn settle(shared: &Shared, server: &mut Server, version: Version) -> Result<()> {
    server.wait_ready(&shared.local, START_LIMIT).await?;
    let datadir = shared.options.datadir();
    let mut conn = shared.local.connect(LOCAL_TIMEOUT).await?;
    let reported = local::scalar(
        &mut conn,
        "read the version",
        "SELECT VERSION()",
        LOCAL_TIMEOUT,
    )
    .await?;
    shared.state().server_version = reported;
    let galera = shared.state().assignment.instance.galera.is_some();
    if galera {
        // The SST donor's credentials, set over the socket: never in a file, never logged
        // (the server shows the variable masked).
        let account = shared.secrets().replication;
        let auth = format!("{}:{}", account.user, account.password.expose());
        local::exec_bound(
            &mut conn,
            "set the SST credentials",
            "SET GLOBAL wsrep_sst_auth = ?",
            &auth,
            LOCAL_TIMEOUT,
        )
        .await?;
    }
    local::close(conn).await;

    let recorded = upgrade::read_upgrade_info(&datadir).and_then(|i| i.version);
    if let SystemTables::Upgrade { from } =
        upgrade::system_tables(shared.flavor(), recorded, version)
    {
        let what = match from {
            Some(from) => format!("mariadb-upgrade from {from} to {}", version.series()),
            None => format!(
                "mariadb-upgrade to {} (no upgrade record)",
                version.series()
            ),
        };
        shared.set_phase(Phase::Upgrading, Some(what.clone()));
        upgrade::run_mariadb_upgrade(
            &shared.image,
            shared.local.socket(),
            &datadir,
            version,
            &shared.options.run_dir.join("upgrade.log"),
        )
        .await?;
        tracing::info!(%what, "system tables upgraded");
        shared.state().system_table_upgrade = Some(what);
    }

    if let Some(pending) = Pending::read(&datadir) {
        // A restarted container still says where its copy came from.
        shared.state().provisioning_donor = Some(pending.donor.clone());
        let instance = shared.state().assignment.instance.clone();
        let account = shared.secrets().replication;
        let source = instance.replication_source().ok_or_else(|| Error::InvalidConfig {
            what: "instance.json",
            path: shared.options.config_dir.join(crate::config::INSTANCE_KEY),
            reason: format!(
                "the data directory is a copy of {} waiting to replicate, and neither replicate_from nor provision_from says from where",
                pending.donor
            ),
        })?;
        let point = || async {
            let mut conn = shared.local.connect(LOCAL_TIMEOUT).await?;
            replication::start_from_copy(
                &mut conn,
                shared.flavor(),
                &source,
                &account,
                pending.gtid.as_deref(),
            )
            .await?;
            local::close(conn).await;
            Ok::<(), Error>(())
        };
        // The operator may start the replica's replication between this agent's stop and
        // its change of source (MariaDB then refuses the change: 1198, a running replica):
        // a few more tries, each stopping it again, before a restart of the container.
        let mut pointed = point().await;
        for _ in 0..POINT_RETRIES {
            match &pointed {
                Err(e) if !e.is_invalid_input() => {
                    tracing::warn!(error = %e, "pointing the copy at its source failed; trying again");
                    tokio::time::sleep(POINT_RETRY_PAUSE).await;
                    pointed = point().await;
                }
                _ => break,
            }
        }
        match pointed {
            Ok(()) => {}
            Err(e) if e.is_invalid_input() => return Err(e),
            // The local server did not take it (its connection cut, the server going away):
            // a restart fixes that, since the copy stays marked pending until it replicates.
            Err(e) => {
                return Err(Error::Server {
                    what: "did not start replicating from the copy",
                    detail: e.to_string(),
                });
            }
        }
        Pending::clear(&datadir)?;
        tracing::info!(
            source = %format!("{}:{}", source.host, source.port),
            gtid = ?pending.gtid,
            "replication started from the copy's position"
        );
        let mut st = shared.state();
        st.provisioning = Provisioning::Done;
        st.provisioning_error = None;
    }
    Ok(())
}
