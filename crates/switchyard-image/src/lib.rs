//! The operator's container image, built on a machine with no container engine.
//!
//! [`build`] packages a `switchyard` binary on a minimal base assembled from Debian's
//! packages ([`base`]: the C library and little else, fetched and verified by the testbed's
//! machinery) and writes one archive that is both an OCI image layout and a docker archive
//! ([`archive`]), so `docker load`, `podman load` and `skopeo copy` all take it. Two layers:
//! the base, then the binary at `/usr/local/bin/switchyard`; the entrypoint is the binary,
//! the user the unprivileged 65532. Every byte is determined by the binary and the base's
//! packages (fixed mtimes, sorted entries, numeric owners, compact JSON), so two builds of
//! the same binary on the same base give the same archive and digest.
//!
//! [`unpack`] turns an archive back into a root filesystem (what a container runtime would
//! run), and [`skopeo`] fetches Debian's `skopeo` to inspect and copy archives in tests.
//! `cargo xtask image` is the command; `bins/switchyard/tests/image.rs` the test.

pub mod archive;
pub mod base;
pub mod error;
pub mod layer;
mod skopeo_tool;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use archive::unpack;
pub use error::{Error, Result};
pub use layer::Blob;
pub use skopeo_tool::{Skopeo, skopeo};

use layer::Tree;

/// What to build.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `switchyard` binary to package (x86-64 Linux, dynamically linked to glibc).
    pub binary: PathBuf,
    /// Where the archive is written (replaced if present).
    pub archive: PathBuf,
    /// The name and tag the archive carries (`ghcr.io/switchyard-io/switchyard:0.1.0`):
    /// `docker load` and `podman load` tag the image with it.
    pub reference: String,
    /// The version recorded in the image's labels.
    pub version: String,
}

/// A built image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The archive.
    pub archive: PathBuf,
    /// The archive's size in bytes.
    pub archive_size: u64,
    /// The manifest's digest (the image's digest in a registry, as `sha256:<hex>`).
    pub manifest_digest: String,
    /// The configuration's digest (the image ID docker shows).
    pub config_digest: String,
    /// The layers, base first.
    pub layers: Vec<Blob>,
    /// The base's Debian packages with their versions.
    pub base_packages: Vec<(String, String)>,
}

/// The default command after the entrypoint: the operator.
pub const DEFAULT_CMD: &[&str] = &["operator"];

/// Builds the image of `options.binary`.
///
/// Fetches the base's packages on first use (cached under the testbed directory), checks
/// that the binary runs on the base's C library (through the base's own loader, no
/// privileges needed), writes the layers and the archive.
///
/// # Errors
/// [`Error::NotAnExecutable`], [`Error::DoesNotRunOnBase`], [`Error::Reference`],
/// [`Error::Fetch`], [`Error::Io`].
pub fn build(options: &Options) -> Result<Image> {
    let (_, tag) = archive::tag_of(&options.reference)?;
    let size = check_executable(&options.binary)?;
    let base = base::packages()?;
    check_runs_on_base(&options.binary, &base)?;
    let base_tree = base::tree(&base)?;
    let app_tree = base::app_tree(&options.binary, size);
    let package_list = base
        .packages()
        .iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect::<Vec<_>>()
        .join(", ");
    let layers = [
        (
            base_tree,
            format!(
                "switchyard-image: Debian {} packages ({package_list}), users root and nonroot ({})",
                base.suite(),
                base::USER
            ),
        ),
        (
            app_tree,
            format!("switchyard-image: /{}", base::BINARY_PATH),
        ),
    ];
    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.title", "switchyard".to_owned());
    labels.insert("org.opencontainers.image.version", options.version.clone());
    labels.insert(
        "org.opencontainers.image.source",
        "https://github.com/switchyard-io/switchyard".to_owned(),
    );
    labels.insert("org.opencontainers.image.licenses", "Apache-2.0".to_owned());
    labels.insert(
        "org.opencontainers.image.base.name",
        format!("debian:{}", base.suite()),
    );
    let written = assemble(&layers, &labels, &options.reference, tag, &options.archive)?;
    Ok(Image {
        base_packages: base.packages().to_vec(),
        ..written
    })
}

/// The root filesystem of `binary`'s image, at `dest` (replaced): [`build`] into a work
/// directory beside `dest`, then [`unpack`]. For running the image's programs in a chroot,
/// as the simulated kubelet runs the database pods' `install` init container.
///
/// # Errors
/// What [`build`] and [`unpack`] fail with.
pub fn rootfs(binary: &Path, dest: &Path) -> Result<Image> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    let work = tempfile::Builder::new()
        .prefix(".rootfs-")
        .tempdir_in(parent)
        .map_err(Error::io("create a work directory in", parent))?;
    let image = build(&Options {
        binary: binary.to_path_buf(),
        archive: work.path().join("switchyard.tar"),
        reference: "localhost/switchyard:rootfs".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(Error::io("remove", dest))?;
    }
    unpack(&image.archive, dest)?;
    Ok(image)
}

/// Writes the archive of `layers` (trees with what made them) at `out`.
fn assemble(
    layers: &[(Tree, String)],
    labels: &BTreeMap<&str, String>,
    reference: &str,
    tag: &str,
    out: &Path,
) -> Result<Image> {
    let parent = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    let work = tempfile::Builder::new()
        .prefix(".image-")
        .tempdir_in(parent)
        .map_err(Error::io("create a work directory in", parent))?;
    let blobs = work.path().join("blobs");
    std::fs::create_dir_all(&blobs).map_err(Error::io("create directory", &blobs))?;
    let put = |blob: Blob, from: &Path| -> Result<Blob> {
        let to = blobs.join(&blob.hex);
        std::fs::rename(from, &to).map_err(Error::io("move the blob to", &to))?;
        Ok(blob)
    };
    let mut written = Vec::new();
    for (i, (tree, _)) in layers.iter().enumerate() {
        let tmp = work.path().join(format!("layer-{i}"));
        written.push(put(layer::write(tree, &tmp)?, &tmp)?);
    }
    let history = archive::history(&layers.iter().map(|(_, by)| by.clone()).collect::<Vec<_>>());
    let config = archive::config(
        &written,
        labels,
        history,
        base::USER,
        &format!("/{}", base::BINARY_PATH),
        DEFAULT_CMD,
    );
    let tmp = work.path().join("config");
    let config_blob = put(
        layer::write_bytes(&serde_json::to_vec(&config).expect("JSON"), &tmp)?,
        &tmp,
    )?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": archive::MEDIA_MANIFEST,
        "config": archive::descriptor(archive::MEDIA_CONFIG, &config_blob),
        "layers": written
            .iter()
            .map(|l| archive::descriptor(archive::MEDIA_LAYER, l))
            .collect::<Vec<_>>(),
    });
    let tmp = work.path().join("manifest");
    let manifest_blob = put(
        layer::write_bytes(&serde_json::to_vec(&manifest).expect("JSON"), &tmp)?,
        &tmp,
    )?;
    let index = archive::index(&manifest_blob, reference, tag);
    let docker = archive::docker_manifest(&config_blob, &written, reference);
    let tmp_out = work.path().join("archive.tar");
    archive::write(&tmp_out, &blobs, &index, &docker)?;
    std::fs::rename(&tmp_out, out).map_err(Error::io("move the archive to", out))?;
    let archive_size = std::fs::metadata(out)
        .map_err(Error::io("stat", out))?
        .len();
    Ok(Image {
        archive: out.to_path_buf(),
        archive_size,
        manifest_digest: manifest_blob.digest(),
        config_digest: config_blob.digest(),
        layers: written,
        base_packages: Vec::new(),
    })
}

/// The binary's size, once it is known to be an x86-64 ELF executable.
fn check_executable(binary: &Path) -> Result<u64> {
    let not = |reason: String| Error::NotAnExecutable {
        path: binary.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(binary).map_err(|e| not(e.to_string()))?;
    if !meta.is_file() {
        return Err(not("not a regular file".to_owned()));
    }
    let mut head = [0u8; 20];
    use std::io::Read as _;
    std::fs::File::open(binary)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| not(e.to_string()))?;
    // ELF magic, 64-bit, little-endian; e_machine 62 is x86-64.
    if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(not("no 64-bit little-endian ELF header".to_owned()));
    }
    if u16::from_le_bytes([head[18], head[19]]) != 62 {
        return Err(not("built for another machine than x86-64".to_owned()));
    }
    Ok(meta.len())
}

/// Runs `binary --version` through the base's loader and libraries: a binary built
/// against a newer glibc, or needing a library the base lacks, fails here and not in a
/// cluster.
fn check_runs_on_base(
    binary: &Path,
    base: &switchyard_testbed::packages::PackageRoot,
) -> Result<()> {
    let loader = base.loader().ok_or_else(|| Error::NotAnExecutable {
        path: base.root().to_path_buf(),
        reason: "the base has no dynamic loader".to_owned(),
    })?;
    let root = base.root();
    let out = std::process::Command::new(loader)
        .arg("--library-path")
        .arg(root.join("usr/lib/x86_64-linux-gnu"))
        .arg(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: loader.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(4).collect();
    Err(Error::DoesNotRunOnBase {
        path: binary.to_path_buf(),
        suite: base.suite().to_string(),
        status: out.status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use layer::Entry;

    fn small(dir: &Path) -> Vec<(Tree, String)> {
        let mut base = Tree::new();
        base.insert("etc".into(), Entry::dir(0o755));
        base.insert("etc/hostname".into(), Entry::data(0o644, "a\n"));
        base.insert("usr".into(), Entry::dir(0o755));
        base.insert("usr/lib".into(), Entry::dir(0o755));
        base.insert("lib".into(), Entry::symlink("usr/lib"));
        std::fs::write(dir.join("bin"), b"\x7fELF...").unwrap();
        let app = base::app_tree(&dir.join("bin"), 7);
        vec![(base, "base".into()), (app, "app".into())]
    }

    #[test]
    fn an_assembled_archive_unpacks_to_its_layers_and_is_the_same_twice() {
        let dir = tempfile::tempdir().unwrap();
        let layers = small(dir.path());
        let labels = BTreeMap::from([("k", "v".to_owned())]);
        let a = assemble(
            &layers,
            &labels,
            "r.example/x:1",
            "1",
            &dir.path().join("a.tar"),
        )
        .unwrap();
        let b = assemble(
            &layers,
            &labels,
            "r.example/x:1",
            "1",
            &dir.path().join("b.tar"),
        )
        .unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(
            std::fs::read(&a.archive).unwrap(),
            std::fs::read(&b.archive).unwrap()
        );
        let root = dir.path().join("root");
        unpack(&a.archive, &root).unwrap();
        assert_eq!(std::fs::read(root.join("etc/hostname")).unwrap(), b"a\n");
        assert_eq!(
            std::fs::read(root.join(base::BINARY_PATH)).unwrap(),
            b"\x7fELF..."
        );
        assert_eq!(
            std::fs::read_link(root.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.join(base::BINARY_PATH))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn unpack_refuses_a_layer_whose_bytes_differ_from_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let layers = small(dir.path());
        let image = assemble(
            &layers,
            &BTreeMap::new(),
            "r.example/x:1",
            "1",
            &dir.path().join("a.tar"),
        )
        .unwrap();
        // Flip one byte of the last layer's content inside the archive (the binary's
        // bytes, found by their text).
        let mut bytes = std::fs::read(&image.archive).unwrap();
        let at = bytes
            .windows(7)
            .position(|w| w == b"\x7fELF...")
            .expect("the binary is in the archive");
        bytes[at + 4] = b'!';
        let broken = dir.path().join("broken.tar");
        std::fs::write(&broken, bytes).unwrap();
        let err = unpack(&broken, &dir.path().join("root")).unwrap_err();
        assert_eq!(err.category(), "archive", "{err}");
        assert!(err.to_string().contains("has the digest"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_an_x86_64_executable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("switchyard");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let err = check_executable(&script).unwrap_err();
        assert_eq!(err.category(), "not_an_executable");
        assert!(
            err.to_string().contains("cargo build -p switchyard"),
            "{err}"
        );
        let err = check_executable(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.category(), "not_an_executable");
    }
}
