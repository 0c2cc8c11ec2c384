//! The unprivileged system user Galera servers run as when the testbed runs
//! as root: rsync state transfer fails for servers running as root (the
//! rsync daemon drops to `nobody`, which cannot write the joiner's data
//! directory).

use std::process::{Command, Stdio};

use nix::unistd::User;

use crate::cache::{self, FileLock};
use crate::error::{Error, Result, tail};
use crate::instance::RunAs;

/// Looks `name` up, creating it as a system user without a home or login
/// shell (`useradd --system --user-group`) if it does not exist.
pub(crate) fn ensure(name: &str) -> Result<RunAs> {
    if let Some(found) = lookup(name)? {
        return Ok(found);
    }
    let _lock = FileLock::acquire(&cache::testbed_dir().join("locks").join("useradd.lock"))?;
    if let Some(found) = lookup(name)? {
        return Ok(found);
    }
    eprintln!("switchyard-testbed: creating system user {name} for Galera servers");
    let out = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::SystemUser {
            user: name.to_string(),
            detail: format!("cannot run useradd: {e}"),
        })?;
    if !out.status.success() {
        // Another process may have created it in between.
        if let Some(found) = lookup(name)? {
            return Ok(found);
        }
        return Err(Error::SystemUser {
            user: name.to_string(),
            detail: format!(
                "useradd failed ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 3)
            ),
        });
    }
    lookup(name)?.ok_or_else(|| Error::SystemUser {
        user: name.to_string(),
        detail: "useradd succeeded but the user cannot be found".into(),
    })
}

fn lookup(name: &str) -> Result<Option<RunAs>> {
    let user = User::from_name(name).map_err(|e| Error::SystemUser {
        user: name.to_string(),
        detail: format!("lookup failed: {e}"),
    })?;
    Ok(user.map(|u| RunAs {
        name: name.to_string(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }))
}
