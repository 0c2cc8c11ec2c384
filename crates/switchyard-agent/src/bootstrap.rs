//! Initializing an empty data directory, only when the operator declared a bootstrap.
//!
//! The directory is assembled under `<volume>/.staging` and renamed to `<volume>/data` once
//! complete, so a data directory either exists whole or not at all (an agent killed halfway
//! leaves only the staging folder, which the next start removes). The binary log is off for
//! the whole initialization, so the new instance has no GTID: every instance of a cluster
//! starts with the same empty history.
//!
//! - MariaDB: the server in `--bootstrap` mode reads the SQL scripts the image ships (what
//!   `mariadb-install-db` runs, without the script's assumptions about where the server
//!   lives and which option files it reads), then the agent's statements: of the root
//!   accounts the scripts create, only `root@localhost` is kept (no password, reachable on
//!   the socket only), and the operator's and the replication accounts are created. The
//!   upgrade record is written with the server's version.
//! - MySQL: `mysqld --initialize-insecure` (root@localhost without a password) with an
//!   `--init-file` that creates the two accounts with `sql_log_bin = 0`; the file holds the
//!   passwords, so it is written with mode 0600 in the run directory and removed at once.
//!
//! Both run with the rendered my.cnf, so what must be fixed at initialization (page size,
//! `lower_case_table_names`) is the revision's.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::Stdio;

use switchyard_mysql::sql::quote_literal;
use switchyard_plan::versions::{Flavor, Version};
use tokio::io::AsyncWriteExt as _;

use crate::config::Secrets;
use crate::error::{Error, Result};
use crate::image::{Image, ServerUser};
use crate::upgrade;

/// The statements creating the operator's and the replication accounts (values already
/// validated by [`Secrets::read`]). MySQL's replication account also holds `BACKUP_ADMIN`,
/// which a clone donor requires of the account cloning from it.
pub fn accounts_sql(flavor: Flavor, secrets: &Secrets) -> String {
    let op = quote_literal(&secrets.operator.user);
    let op_pw = quote_literal(secrets.operator.password.expose());
    let repl = quote_literal(&secrets.replication.user);
    let repl_pw = quote_literal(secrets.replication.password.expose());
    let replication_grant = match flavor {
        Flavor::Mysql => "REPLICATION SLAVE, REPLICATION CLIENT, BACKUP_ADMIN",
        Flavor::Mariadb => "REPLICATION SLAVE, BINLOG MONITOR",
    };
    format!(
        "CREATE USER IF NOT EXISTS {op}@'%' IDENTIFIED BY {op_pw};\n\
         GRANT ALL PRIVILEGES ON *.* TO {op}@'%' WITH GRANT OPTION;\n\
         CREATE USER IF NOT EXISTS {repl}@'%' IDENTIFIED BY {repl_pw};\n\
         GRANT {replication_grant} ON *.* TO {repl}@'%';\n"
    )
}

/// On a Galera node, what the replication account also holds: the privileges
/// `mariadb-backup` needs on an SST donor (MariaDB's "Galera SST with mariadb-backup": RELOAD,
/// PROCESS, LOCK TABLES, BINLOG MONITOR), since the agent gives it as `wsrep_sst_auth`.
pub fn galera_sst_grant_sql(secrets: &Secrets) -> String {
    let repl = quote_literal(&secrets.replication.user);
    format!("GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO {repl}@'%';\n")
}

/// Initializes `datadir` (which must not exist or be empty) for `server`, with the rendered
/// my.cnf `cnf`; helper files and the server's output go to `run_dir`. When the server runs
/// as `user` (the agent runs as root), the helper files it reads are that user's. On a
/// Galera node (`galera`), wsrep is off for the initialization and the replication account
/// gets the SST donor's privileges ([`galera_sst_grant_sql`]).
///
/// # Errors
/// [`Error::Image`] for a missing script, [`Error::Command`] when the server fails (its
/// output, with the passwords masked, in the message).
#[expect(
    clippy::too_many_arguments,
    reason = "each input is a different thing the agent holds; a struct would only rename them"
)]
pub async fn initialize(
    image: &Image,
    cnf: &Path,
    datadir: &Path,
    run_dir: &Path,
    secrets: &Secrets,
    server: Version,
    user: Option<&ServerUser>,
    galera: bool,
) -> Result<()> {
    let log = run_dir.join("bootstrap.log");
    let secret_values = [
        secrets.operator.password.expose(),
        secrets.replication.password.expose(),
    ];
    match image.flavor() {
        Flavor::Mariadb => {
            let mut sql = mariadb_sql(image, secrets)?;
            if galera {
                sql.push_str(&galera_sst_grant_sql(secrets));
            }
            let mut cmd = image.command(&image.server());
            cmd.arg(format!("--defaults-file={}", cnf.display()))
                .arg("--bootstrap")
                .arg("--loose-wsrep-on=OFF")
                .arg(format!("--datadir={}", datadir.display()))
                .arg("--skip-log-bin")
                .arg("--read-only=OFF")
                .arg("--log-warnings=0")
                .arg("--enforce-storage-engine=")
                .arg("--max-allowed-packet=8M")
                .arg("--net-buffer-length=16K");
            run(cmd, Some(sql), &log, &secret_values).await?;
            upgrade::write_upgrade_info(datadir, server)
        }
        Flavor::Mysql => {
            let init_file = run_dir.join("bootstrap-accounts.sql");
            let _ = std::fs::remove_file(&init_file);
            {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&init_file)
                    .map_err(Error::io("create", &init_file))?;
                // mysqld reads its --init-file as the user it switched to.
                if let Some(u) = user {
                    std::os::unix::fs::fchown(&f, Some(u.uid), Some(u.gid))
                        .map_err(Error::io("chown", &init_file))?;
                }
                let sql = format!(
                    "SET SESSION sql_log_bin = 0;\n{}",
                    accounts_sql(Flavor::Mysql, secrets)
                );
                f.write_all(sql.as_bytes())
                    .map_err(Error::io("write", &init_file))?;
            }
            let mut cmd = image.command(&image.server());
            cmd.arg(format!("--defaults-file={}", cnf.display()))
                .arg("--initialize-insecure")
                .arg(format!("--datadir={}", datadir.display()))
                .arg("--skip-log-bin")
                .arg("--super-read-only=OFF")
                .arg("--read-only=OFF")
                .arg(format!("--init-file={}", init_file.display()));
            let outcome = run(cmd, None, &log, &secret_values).await;
            let _ = std::fs::remove_file(&init_file);
            outcome
        }
    }
}

/// The SQL a MariaDB server in `--bootstrap` mode reads: the image's scripts, then the
/// accounts. One statement per line end, as bootstrap mode requires.
fn mariadb_sql(image: &Image, secrets: &Secrets) -> Result<String> {
    let mut sql = String::from(
        "create database if not exists mysql;\nuse mysql;\nSET @auth_root_socket=NULL;\n",
    );
    // (candidate names, required): the sys schema ships from 10.6 on.
    let scripts: [(&[&str], bool); 5] = [
        (
            &["mariadb_system_tables.sql", "mysql_system_tables.sql"],
            true,
        ),
        (
            &[
                "mariadb_performance_tables.sql",
                "mysql_performance_tables.sql",
            ],
            true,
        ),
        (
            &[
                "mariadb_system_tables_data.sql",
                "mysql_system_tables_data.sql",
            ],
            true,
        ),
        (&["maria_add_gis_sp_bootstrap.sql"], true),
        (&["mariadb_sys_schema.sql", "mysql_sys_schema.sql"], false),
    ];
    for (names, required) in scripts {
        match image.share_file(names) {
            Some(path) => {
                sql.push_str(&std::fs::read_to_string(&path).map_err(Error::io("read", &path))?);
                sql.push('\n');
            }
            None if required => {
                return Err(Error::Image {
                    what: "system table script",
                    root: image.root().to_path_buf(),
                    looked_for: format!(
                        "/usr/share/mariadb or /usr/share/mysql: {}",
                        names.join(", ")
                    ),
                });
            }
            None => {}
        }
    }
    sql.push_str(
        "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';\n\
         FLUSH PRIVILEGES;\n",
    );
    sql.push_str(&accounts_sql(Flavor::Mariadb, secrets));
    Ok(sql)
}

/// Runs an initializing server to completion with `input` on its standard input and its
/// output appended to `log`.
async fn run(
    mut cmd: tokio::process::Command,
    input: Option<String>,
    log: &Path,
    secrets: &[&str],
) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("open", log))?;
    let err = out.try_clone().map_err(Error::io("open", log))?;
    cmd.stdout(out)
        .stderr(err)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        what: "initializing the data directory",
        program: log.to_path_buf(),
        source,
    })?;
    if let (Some(sql), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error means the server exited early; its status says why.
        let _ = stdin.write_all(sql.as_bytes()).await;
        drop(stdin);
    }
    let status = child.wait().await.map_err(Error::io("wait for", log))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut tail: String = text
        .lines()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        tail = tail.replace(secret, "***");
    }
    Err(Error::Command {
        what: "initializing the data directory",
        status: status.to_string(),
        detail: tail,
    })
}
