//! The system-table upgrade, by the vendor's rule.
//!
//! MariaDB: the system tables must be upgraded with `mariadb-upgrade` when the server's
//! major.minor is newer than the one recorded in the data directory's
//! `mariadb_upgrade_info` (`mysql_upgrade_info` before 11.x), or when there is no such file;
//! the official image does exactly that (`MARIADB_AUTO_UPGRADE`). A patch-level change within
//! a series (10.11.14 → 10.11.15) needs none and leaves the file at the older patch, so the
//! check is on major.minor, never on the exact version. A data directory recorded by a newer
//! major.minor than the server is a downgrade across series, which MariaDB does not support:
//! the agent refuses to start the server on it. After `mariadb-upgrade` the agent reads the
//! file again and requires the server's major.minor in it.
//!
//! MySQL (8.0.16 and later) upgrades its data dictionary and system tables itself at start
//! (`--upgrade=AUTO`), and refuses a downgrade itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use switchyard_plan::versions::{Flavor, Series, Version};

use crate::error::{Error, Result};
use crate::image::Image;

/// The file names, newest first.
const UPGRADE_INFO: [&str; 2] = ["mariadb_upgrade_info", "mysql_upgrade_info"];

/// What the system tables of a data directory need before a server of a given version
/// serves from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemTables {
    /// Nothing: they are of the server's major.minor (or MySQL upgrades them itself).
    Current,
    /// `mariadb-upgrade`: the data directory records an older major.minor (`from`), or none.
    Upgrade {
        /// The major.minor the data directory records, if any.
        from: Option<Series>,
    },
    /// The data directory was upgraded by a newer major.minor: a downgrade across series,
    /// which MariaDB does not support.
    Newer {
        /// The major.minor it records.
        data: Series,
    },
}

/// The vendor's rule: compares the major.minor the data directory records (`recorded`,
/// from `mariadb_upgrade_info`) with the server's.
pub fn system_tables(flavor: Flavor, recorded: Option<Version>, server: Version) -> SystemTables {
    if flavor == Flavor::Mysql {
        return SystemTables::Current;
    }
    match recorded.map(|v| v.series()) {
        None => SystemTables::Upgrade { from: None },
        Some(data) if data < server.series() => SystemTables::Upgrade { from: Some(data) },
        Some(data) if data > server.series() => SystemTables::Newer { data },
        Some(_) => SystemTables::Current,
    }
}

/// The data directory's upgrade record: the file's trimmed text and the version in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeInfo {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its text, trimmed (`10.11.14-MariaDB`).
    pub text: String,
    /// The version it names, if it parses.
    pub version: Option<Version>,
}

/// Reads `mariadb_upgrade_info` (else `mysql_upgrade_info`) from `datadir`.
pub fn read_upgrade_info(datadir: &Path) -> Option<UpgradeInfo> {
    UPGRADE_INFO.iter().find_map(|name| {
        let path = datadir.join(name);
        let raw = std::fs::read(&path).ok()?;
        // The file ends with a NUL on some versions.
        let text = String::from_utf8_lossy(&raw)
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_owned();
        let version = Version::parse(&text).ok();
        Some(UpgradeInfo {
            path,
            text,
            version,
        })
    })
}

/// Records in a freshly initialized MariaDB data directory that its system tables are of
/// `server`'s version (what `mariadb-upgrade` would write), so its first start does not run
/// an upgrade it does not need.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn write_upgrade_info(datadir: &Path, server: Version) -> Result<()> {
    // 11.x renamed the file; its mariadb-upgrade still reads the old name.
    let name = if server.major >= 11 {
        UPGRADE_INFO[0]
    } else {
        UPGRADE_INFO[1]
    };
    let path = datadir.join(name);
    std::fs::write(&path, format!("{server}-MariaDB")).map_err(Error::io("write", &path))
}

/// Runs the image's `mariadb-upgrade` against the server on `socket` as `root`, its output
/// to `log`, and checks the record it leaves names the server's major.minor.
///
/// # Errors
/// [`Error::Command`] when it fails (its log named), [`Error::DataDir`] when the record
/// does not name the server's major.minor afterwards.
pub async fn run_mariadb_upgrade(
    image: &Image,
    socket: &Path,
    datadir: &Path,
    server: Version,
    log: &Path,
) -> Result<UpgradeInfo> {
    let program = image.tool("mariadb-upgrade")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("open", log))?;
    let err = out.try_clone().map_err(Error::io("open", log))?;
    let helpers = log.with_file_name("image-bin");
    let status = image
        .command_with_helpers(
            &program,
            &["mariadb", "mysql", "mariadb-check", "mysqlcheck"],
            &helpers,
        )?
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .arg("--user=root")
        .arg("--verbose")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|source| Error::Spawn {
            what: "upgrading the system tables",
            program: program.clone(),
            source,
        })?;
    if !status.success() {
        return Err(Error::Command {
            what: "mariadb-upgrade",
            status: status.to_string(),
            detail: format!("its output is in {}", log.display()),
        });
    }
    verify(datadir, server)
}

/// Checks that the data directory's record names `server`'s major.minor.
///
/// # Errors
/// [`Error::DataDir`] when it does not.
pub fn verify(datadir: &Path, server: Version) -> Result<UpgradeInfo> {
    match read_upgrade_info(datadir) {
        Some(info) if info.version.is_some_and(|v| v.series() == server.series()) => Ok(info),
        other => Err(Error::DataDir {
            path: datadir.to_path_buf(),
            reason: format!(
                "its upgrade record says {:?}, not {}",
                other.map(|i| i.text),
                server.series()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn a_patch_change_within_a_series_needs_no_upgrade() {
        let maria = Flavor::Mariadb;
        assert_eq!(
            system_tables(maria, Some(v("10.11.14")), v("10.11.15")),
            SystemTables::Current
        );
        // And back within the series: the tables are the series'.
        assert_eq!(
            system_tables(maria, Some(v("10.11.15")), v("10.11.14")),
            SystemTables::Current
        );
        assert_eq!(
            system_tables(maria, Some(v("11.8.3")), v("11.8.6")),
            SystemTables::Current
        );
    }

    #[test]
    fn a_new_major_minor_or_no_record_needs_mariadb_upgrade() {
        let maria = Flavor::Mariadb;
        assert_eq!(
            system_tables(maria, Some(v("10.5.27")), v("10.11.14")),
            SystemTables::Upgrade {
                from: Some(Series::new(10, 5))
            }
        );
        assert_eq!(
            system_tables(maria, Some(v("10.11.14")), v("11.8.3")),
            SystemTables::Upgrade {
                from: Some(Series::new(10, 11))
            }
        );
        assert_eq!(
            system_tables(maria, None, v("10.11.14")),
            SystemTables::Upgrade { from: None }
        );
    }

    #[test]
    fn a_newer_series_in_the_data_is_a_downgrade() {
        assert_eq!(
            system_tables(Flavor::Mariadb, Some(v("11.8.3")), v("10.11.14")),
            SystemTables::Newer {
                data: Series::new(11, 8)
            }
        );
    }

    #[test]
    fn mysql_upgrades_itself() {
        assert_eq!(
            system_tables(Flavor::Mysql, None, v("9.7.4")),
            SystemTables::Current
        );
        // A new series too: MySQL 8.0.16+ upgrades its dictionary and tables at start.
        assert_eq!(
            system_tables(Flavor::Mysql, Some(v("8.4.6")), v("9.7.4")),
            SystemTables::Current
        );
    }

    #[test]
    fn the_record_is_read_under_either_name_and_verified_by_series() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_upgrade_info(dir.path()), None);
        write_upgrade_info(dir.path(), v("10.11.14")).unwrap();
        let info = read_upgrade_info(dir.path()).unwrap();
        assert!(info.path.ends_with("mysql_upgrade_info"));
        assert_eq!(info.text, "10.11.14-MariaDB");
        assert!(verify(dir.path(), v("10.11.15")).is_ok());
        assert!(verify(dir.path(), v("11.8.3")).is_err());
        // The newer name wins, and a trailing NUL is ignored.
        std::fs::write(dir.path().join("mariadb_upgrade_info"), "11.8.3-MariaDB\0").unwrap();
        let info = read_upgrade_info(dir.path()).unwrap();
        assert_eq!(info.version, Some(v("11.8.3")));
        assert!(verify(dir.path(), v("11.8.6")).is_ok());
    }
}
