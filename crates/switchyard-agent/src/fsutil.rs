//! File-system steps the agent needs: publishing a staged directory by rename (made durable),
//! giving a tree to the server's user, and sizing a directory.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::ServerUser;

/// Renames `from` to `to` (same file system) and syncs their parent, so the data directory
/// appears whole or not at all, also across a crash.
///
/// # Errors
/// [`Error::Io`].
pub fn publish(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(Error::io("rename into place", to))?;
    if let Some(parent) = to.parent() {
        let dir = std::fs::File::open(parent).map_err(Error::io("open", parent))?;
        dir.sync_all().map_err(Error::io("sync", parent))?;
    }
    Ok(())
}

/// Gives `path` and everything under it to `user` (nothing to do when it owns the top).
///
/// # Errors
/// [`Error::Io`].
pub fn chown_tree(path: &Path, user: &ServerUser) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).map_err(Error::io("stat", path))?;
    if meta.uid() == user.uid && meta.gid() == user.gid && !meta.is_dir() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(Error::io("chown", path))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(Error::io("read directory", path))? {
            let entry = entry.map_err(Error::io("read directory", path))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// Gives `path` to `user` unless it already owns it (the top only is checked).
///
/// # Errors
/// [`Error::Io`].
pub fn ensure_owner(path: &Path, user: &ServerUser) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).map_err(Error::io("stat", path))?;
    if meta.uid() == user.uid && meta.gid() == user.gid {
        return Ok(());
    }
    chown_tree(path, user)
}

/// The bytes of the regular files under `path`.
pub fn tree_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
