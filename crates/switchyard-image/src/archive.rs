//! The image archive: one tar that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and a docker archive (`manifest.json` naming the same
//! blobs), the shape `docker save` writes since Docker 25. `docker load` and `podman load`
//! read `manifest.json` (or the layout), `skopeo` reads either (`oci-archive:`,
//! `docker-archive:`), and the blobs are stored once.
//!
//! The JSON documents are written compactly with their keys in a fixed order, every
//! archive entry with the fixed mtime and root ownership, so the archive's bytes depend
//! only on the layers, the configuration and the reference.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::layer::{Blob, MTIME, sha256_file};

/// OCI media types.
pub(crate) const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The descriptor of a blob.
pub(crate) fn descriptor(media_type: &str, blob: &Blob) -> Value {
    json!({ "mediaType": media_type, "digest": blob.digest(), "size": blob.size })
}

/// Splits a reference into the name and the tag (`latest` when it has none).
pub(crate) fn tag_of(reference: &str) -> Result<(&str, &str)> {
    let bad = || Error::Reference {
        reference: reference.to_owned(),
    };
    if reference.is_empty()
        || reference.contains('@')
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
    {
        return Err(bad());
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "latest"),
    };
    if name.is_empty() || name.ends_with('/') || tag.is_empty() {
        return Err(bad());
    }
    Ok((name, tag))
}

/// The `index.json` naming the manifest, with the annotations `docker save` writes: the
/// full reference for containerd and podman, the tag as the OCI reference name.
pub(crate) fn index(manifest: &Blob, reference: &str, tag: &str) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest.digest(),
            "size": manifest.size,
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": tag,
            },
            "platform": { "architecture": "amd64", "os": "linux" },
        }],
    })
}

/// The docker archive's `manifest.json`.
pub(crate) fn docker_manifest(config: &Blob, layers: &[Blob], reference: &str) -> Value {
    json!([{
        "Config": format!("blobs/sha256/{}", config.hex),
        "RepoTags": [reference],
        "Layers": layers.iter().map(|l| format!("blobs/sha256/{}", l.hex)).collect::<Vec<_>>(),
    }])
}

/// Writes the archive at `out` from the blobs in `blobs` (files named by their hex
/// digest) and the three documents.
pub(crate) fn write(
    out: &Path,
    blobs: &Path,
    index: &Value,
    docker_manifest: &Value,
) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(blobs)
        .map_err(Error::io("read directory", blobs))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io("read directory", blobs))?;
    names.sort();
    let file = File::create(out).map_err(Error::io("create", out))?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    };
    let io = |e| Error::io("write the archive", out)(e);
    for dir in ["blobs/", "blobs/sha256/"] {
        builder
            .append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                dir,
                std::io::empty(),
            )
            .map_err(io)?;
    }
    for name in &names {
        let path = blobs.join(name);
        let file = File::open(&path).map_err(Error::io("open", &path))?;
        let size = file.metadata().map_err(Error::io("stat", &path))?.len();
        builder
            .append_data(
                &mut header(tar::EntryType::Regular, 0o644, size),
                format!("blobs/sha256/{name}"),
                file,
            )
            .map_err(io)?;
    }
    let layout = json!({ "imageLayoutVersion": "1.0.0" });
    for (name, doc) in [
        ("index.json", index),
        ("manifest.json", docker_manifest),
        ("oci-layout", &layout),
    ] {
        let bytes = serde_json::to_vec(doc).expect("JSON values serialize");
        builder
            .append_data(
                &mut header(tar::EntryType::Regular, 0o644, bytes.len() as u64),
                name,
                bytes.as_slice(),
            )
            .map_err(io)?;
    }
    let mut inner = builder.into_inner().map_err(io)?;
    inner.flush().map_err(io)?;
    // Flushed above; the file closes here.
    inner.into_inner().map_err(|e| io(e.into_error()))?;
    Ok(())
}

/// Unpacks an archive this crate wrote into `dir` (created if missing): the layers that
/// `manifest.json` lists, in order, each checked against the digest that names it. Owners
/// are kept when run as root. `dir` is made traversable (0755), as an image's root is.
///
/// # Errors
/// [`Error::Archive`] when the archive lacks `manifest.json` or a layer, or a layer's
/// digest differs from its name; [`Error::Io`] when unpacking fails.
pub fn unpack(archive: &Path, dir: &Path) -> Result<()> {
    let bad = |reason: String| Error::Archive {
        path: archive.to_path_buf(),
        reason,
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    let work = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(Error::io("create a work directory in", parent))?;
    let file = File::open(archive).map_err(Error::io("open", archive))?;
    let mut outer = tar::Archive::new(file);
    outer
        .unpack(work.path())
        .map_err(Error::io("unpack", archive))?;
    let manifest_path = work.path().join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| bad(format!("no readable manifest.json ({e})")))?;
    let manifest: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("manifest.json is not JSON ({e})")))?;
    let layers: Vec<PathBuf> = manifest
        .get(0)
        .and_then(|m| m.get("Layers"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("manifest.json lists no Layers".to_owned()))?
        .iter()
        .map(|l| {
            l.as_str()
                .map(|l| work.path().join(l))
                .ok_or_else(|| bad(format!("a layer path is not a string: {l}")))
        })
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(Error::io("chmod", dir))?;
    let as_root = nix::unistd::geteuid().is_root();
    for layer in &layers {
        let name = layer
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let actual = sha256_file(layer)?;
        if actual != name {
            return Err(bad(format!(
                "the layer {} has the digest sha256:{actual}",
                layer.display()
            )));
        }
        let file = File::open(layer).map_err(Error::io("open", layer))?;
        let mut tar = tar::Archive::new(file);
        tar.set_preserve_permissions(true);
        tar.set_preserve_ownerships(as_root);
        tar.set_preserve_mtime(true);
        tar.set_overwrite(true);
        tar.set_unpack_xattrs(false);
        tar.unpack(dir)
            .map_err(Error::io("unpack a layer into", dir))?;
    }
    Ok(())
}

/// The config's history entries say what made each layer.
pub(crate) fn history(created_by: &[String]) -> Vec<Value> {
    created_by
        .iter()
        .map(|c| json!({ "created": "1970-01-01T00:00:00Z", "created_by": c }))
        .collect()
}

/// The image configuration.
pub(crate) fn config(
    diff_ids: &[Blob],
    labels: &BTreeMap<&str, String>,
    history: Vec<Value>,
    user: u32,
    entrypoint: &str,
    cmd: &[&str],
) -> Value {
    json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": format!("{user}:{user}"),
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": [entrypoint],
            "Cmd": cmd,
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(Blob::digest).collect::<Vec<_>>(),
        },
        "history": history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(
            tag_of("ghcr.io/switchyard-io/switchyard:0.1.0").unwrap(),
            ("ghcr.io/switchyard-io/switchyard", "0.1.0")
        );
        assert_eq!(
            tag_of("localhost:5000/switchyard").unwrap(),
            ("localhost:5000/switchyard", "latest")
        );
        for bad in [
            "",
            "Switchyard:1",
            "a b",
            "x@sha256:00",
            "registry/:1",
            "name:",
        ] {
            assert_eq!(tag_of(bad).unwrap_err().category(), "reference", "{bad}");
        }
    }
}
