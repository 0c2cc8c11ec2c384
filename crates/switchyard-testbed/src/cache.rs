//! Where the testbed keeps its cache (unpacked servers, template data
//! directories, lock files), and the cross-process file locks guarding it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable that overrides the cache directory.
pub const DIR_ENV: &str = "SWITCHYARD_TESTBED_DIR";

/// The testbed's cache directory: `$SWITCHYARD_TESTBED_DIR` when set,
/// otherwise `target/testbed` in the workspace root.
///
/// Nothing in it is committed: it holds packages downloaded from Debian's
/// archive, unpacked server roots and template data directories.
pub fn testbed_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    workspace.join("target").join("testbed")
}

/// Creates `path` and its parents.
pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("create directory", path))
}

/// An exclusive lock on a file, held until dropped (or the process dies: the
/// kernel releases `flock` locks with the last descriptor).
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        if let Some(parent) = path.parent() {
            create_dir_all(parent)?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| Error::Lock {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Blocks until the lock is held. Call from blocking code only.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        let file = Self::open(path)?;
        file.lock().map_err(|source| Error::Lock {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FileLock { file })
    }

    /// Takes the lock if it is free, `None` if another holder has it.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(Error::Lock {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock as well; unlocking first
        // makes the release immediate even if the File were duplicated.
        let _ = self.file.unlock();
    }
}

/// A short, stable hash of `parts`, for cache keys.
pub(crate) fn short_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..6])
}

/// Copies the directory tree `from` into `to` (which must not exist).
/// Symbolic links are copied as links.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    create_dir_all(to)?;
    let entries = std::fs::read_dir(from).map_err(Error::io("read directory", from))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("read directory", from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(Error::io("stat", &src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(Error::io("read link", &src))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(Error::io("create link", &dst))?;
        } else {
            std::fs::copy(&src, &dst).map_err(Error::io("copy file to", &dst))?;
        }
    }
    Ok(())
}
