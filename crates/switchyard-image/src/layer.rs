//! Deterministic layer tars: entries sorted by path, every mtime fixed, owners numeric,
//! no user or group names, no access or change times, so the same inputs always give the
//! same bytes and the same digest.
//!
//! A layer is written once to a file while its SHA-256 is computed; the digest names the
//! blob in the archive and is also the layer's `diff_id` (layers are stored uncompressed:
//! registries compress on push, `skopeo copy` does so by default).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The modification time of every entry (and the image's creation time): the Unix epoch,
/// so that nothing in the image depends on when it was built.
pub const MTIME: u64 = 0;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// A directory.
    Dir,
    /// A regular file copied from the build machine.
    File {
        /// Where its bytes are read from.
        source: PathBuf,
        /// Its size when collected.
        size: u64,
    },
    /// A regular file with these bytes.
    Data(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// One file system entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Permission bits (with setuid, setgid and sticky).
    pub(crate) mode: u32,
    /// Owner.
    pub(crate) uid: u64,
    /// Group.
    pub(crate) gid: u64,
    /// What it is.
    pub(crate) body: Body,
}

impl Entry {
    /// A root-owned directory.
    pub(crate) fn dir(mode: u32) -> Entry {
        Entry {
            mode,
            uid: 0,
            gid: 0,
            body: Body::Dir,
        }
    }

    /// A root-owned file with these bytes.
    pub(crate) fn data(mode: u32, bytes: impl Into<Vec<u8>>) -> Entry {
        Entry {
            mode,
            uid: 0,
            gid: 0,
            body: Body::Data(bytes.into()),
        }
    }

    /// A root-owned symbolic link.
    pub(crate) fn symlink(target: impl Into<PathBuf>) -> Entry {
        Entry {
            mode: 0o777,
            uid: 0,
            gid: 0,
            body: Body::Symlink(target.into()),
        }
    }
}

/// A layer's entries by path (relative, no leading or trailing slash). The map's byte
/// order puts every directory before what it holds.
pub(crate) type Tree = BTreeMap<String, Entry>;

/// A written blob: its SHA-256 in hex and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The SHA-256 of its bytes, lowercase hex.
    pub hex: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Blob {
    /// The OCI digest, `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `tree` as a tar to `out` and returns its digest and size.
pub(crate) fn write(tree: &Tree, out: &Path) -> Result<Blob> {
    let file = File::create(out).map_err(Error::io("create", out))?;
    let hashing = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        count: 0,
    };
    let mut builder = tar::Builder::new(hashing);
    for (path, entry) in tree {
        append(&mut builder, path, entry).map_err(Error::io("write the layer", out))?;
    }
    let mut hashing = builder
        .into_inner()
        .map_err(Error::io("finish the layer", out))?;
    hashing.flush().map_err(Error::io("write", out))?;
    let Hashing {
        inner,
        hasher,
        count,
    } = hashing;
    inner
        .into_inner()
        .map_err(|e| Error::io("write", out)(e.into_error()))?;
    Ok(Blob {
        hex: hex::encode(hasher.finalize()),
        size: count,
    })
}

/// Writes plain bytes to `out` and returns their digest and size.
pub(crate) fn write_bytes(bytes: &[u8], out: &Path) -> Result<Blob> {
    std::fs::write(out, bytes).map_err(Error::io("write", out))?;
    Ok(Blob {
        hex: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
    })
}

/// The SHA-256 of a file, in hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(Error::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn header(entry: &Entry, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(entry.mode);
    h.set_uid(entry.uid);
    h.set_gid(entry.gid);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    entry: &Entry,
) -> std::io::Result<()> {
    match &entry.body {
        Body::Dir => {
            let mut h = header(entry, tar::EntryType::Directory, 0);
            builder.append_data(&mut h, format!("{path}/"), std::io::empty())
        }
        Body::File { source, size } => {
            let file = File::open(source)?;
            let mut h = header(entry, tar::EntryType::Regular, *size);
            // Exactly the size collected: a file that changed since is an error, not a
            // different layer.
            let mut limited = file.take(*size);
            builder.append_data(&mut h, path, &mut limited)?;
            if limited.limit() != 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was written", source.display()),
                ));
            }
            Ok(())
        }
        Body::Data(bytes) => {
            let mut h = header(entry, tar::EntryType::Regular, bytes.len() as u64);
            builder.append_data(&mut h, path, bytes.as_slice())
        }
        Body::Symlink(target) => {
            let mut h = header(entry, tar::EntryType::Symlink, 0);
            builder.append_link(&mut h, path, target)
        }
    }
}

/// Adds the tree of the directory `dir` to `tree` under `prefix` (`""` for the root),
/// owned by root with the files' own permission bits. `keep(path)` filters by relative
/// path; a directory it refuses is skipped with everything under it.
pub(crate) fn add_directory(
    tree: &mut Tree,
    dir: &Path,
    prefix: &str,
    keep: &dyn Fn(&str, bool) -> bool,
) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(Error::io("read directory", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io("read directory", dir))?;
    names.sort();
    for name in names {
        let Some(name_str) = name.to_str() else {
            return Err(Error::Io {
                action: "name in UTF-8",
                path: dir.join(&name),
                source: std::io::Error::other("not UTF-8"),
            });
        };
        let rel = if prefix.is_empty() {
            name_str.to_owned()
        } else {
            format!("{prefix}/{name_str}")
        };
        let path = dir.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(Error::io("stat", &path))?;
        let kind = meta.file_type();
        if !keep(&rel, kind.is_dir()) {
            continue;
        }
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        let entry = if kind.is_dir() {
            add_directory(tree, &path, &rel, keep)?;
            Entry::dir(mode)
        } else if kind.is_symlink() {
            Entry::symlink(std::fs::read_link(&path).map_err(Error::io("read link", &path))?)
        } else if kind.is_file() {
            Entry {
                mode,
                uid: 0,
                gid: 0,
                body: Body::File {
                    source: path.clone(),
                    size: meta.len(),
                },
            }
        } else {
            // Devices, sockets and pipes have no place in an image.
            continue;
        };
        tree.insert(rel, entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Tree {
        std::fs::write(dir.join("payload"), b"hello").unwrap();
        let mut tree = Tree::new();
        tree.insert("etc".into(), Entry::dir(0o755));
        tree.insert("etc/passwd".into(), Entry::data(0o644, "root:x:0:0::/:\n"));
        tree.insert("tmp".into(), Entry::dir(0o1777));
        let long = format!("usr/share/{}", "d".repeat(150));
        tree.insert(long.clone(), Entry::dir(0o755));
        tree.insert(
            format!("{long}/{}", "f".repeat(120)),
            Entry::data(0o600, "x"),
        );
        tree.insert(
            "usr/bin/payload".into(),
            Entry {
                mode: 0o755,
                uid: 0,
                gid: 0,
                body: Body::File {
                    source: dir.join("payload"),
                    size: 5,
                },
            },
        );
        tree.insert(
            "lib64".into(),
            Entry::symlink(format!("usr/{}", "l".repeat(120))),
        );
        let mut home = Entry::dir(0o700);
        home.uid = 65532;
        home.gid = 65532;
        tree.insert("home/nonroot".into(), home);
        tree
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes_and_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let tree = sample(dir.path());
        let a = write(&tree, &dir.path().join("a.tar")).unwrap();
        let b = write(&tree, &dir.path().join("b.tar")).unwrap();
        assert_eq!(a, b);
        let bytes = std::fs::read(dir.path().join("a.tar")).unwrap();
        assert_eq!(bytes, std::fs::read(dir.path().join("b.tar")).unwrap());
        assert_eq!(a.size, bytes.len() as u64);
        assert_eq!(a.hex, hex::encode(Sha256::digest(&bytes)));

        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let path = entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned();
            assert_eq!(h.mtime().unwrap(), MTIME, "{path}");
            let want = &tree[&path];
            assert_eq!(h.mode().unwrap(), want.mode, "{path}");
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap()),
                (want.uid, want.gid),
                "{path}"
            );
            assert_eq!(h.username().unwrap(), Some(""), "{path}");
            match &want.body {
                Body::Dir => assert!(h.entry_type().is_dir(), "{path}"),
                Body::Symlink(t) => {
                    assert_eq!(entry.link_name().unwrap().unwrap().as_ref(), t.as_path())
                }
                Body::Data(d) => {
                    let mut got = Vec::new();
                    entry.read_to_end(&mut got).unwrap();
                    assert_eq!(&got, d, "{path}");
                }
                Body::File { source, .. } => {
                    let mut got = Vec::new();
                    entry.read_to_end(&mut got).unwrap();
                    assert_eq!(got, std::fs::read(source).unwrap(), "{path}");
                }
            }
            seen.push(path);
        }
        // Every entry, in path order, directories before their contents.
        assert_eq!(seen, tree.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn a_file_that_changed_size_since_it_was_collected_fails_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = sample(dir.path());
        std::fs::write(dir.path().join("payload"), b"hi").unwrap();
        let err = write(&tree, &dir.path().join("a.tar")).unwrap_err();
        assert_eq!(err.category(), "io", "{err}");
        tree.remove("usr/bin/payload");
        write(&tree, &dir.path().join("a.tar")).unwrap();
    }
}
