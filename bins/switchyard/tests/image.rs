//! The operator image (`switchyard-image`, what `cargo xtask image` writes), built from this
//! build's `switchyard` binary with no container engine: the same bytes when built twice;
//! unpacked by the host's `tar` (a reader independent of the writer) following `index.json`
//! and checked against `manifest.json`; `switchyard --version` run inside its root
//! filesystem as the image's user, through the image's entrypoint; and read by Debian's
//! `skopeo` as an OCI archive (inspected, then copied, which verifies every blob's digest)
//! and as a docker archive (what `docker load` reads).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_image::{Options, build, skopeo};

const REFERENCE: &str = "registry.example/switchyard/switchyard:test";

fn sh(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256_hex(path: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).unwrap()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The blob a descriptor names, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let path = layout.join("blobs/sha256").join(hex);
    assert_eq!(sha256_hex(&path), hex, "{digest}: the blob's bytes differ");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        descriptor["size"].as_u64().expect("a size"),
        "{digest}: the size differs"
    );
    path
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn the_operator_image_runs_its_binary_and_reads_as_oci_and_docker_archive() {
    let started = Instant::now();
    let binary = Path::new(env!("CARGO_BIN_EXE_switchyard"));
    let work = tempfile::Builder::new()
        .prefix("image-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let work = work.path();
    let build_into = |name: &str| {
        build(&Options {
            binary: binary.to_path_buf(),
            archive: work.join(name).join("switchyard.tar"),
            reference: REFERENCE.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .unwrap_or_else(|e| panic!("building the image: {e}"))
    };

    // Deterministic: two builds of the same binary are the same bytes.
    let image = build_into("a");
    let again = build_into("b");
    assert_eq!(image.manifest_digest, again.manifest_digest);
    assert!(
        std::fs::read(&image.archive).unwrap() == std::fs::read(&again.archive).unwrap(),
        "two builds of the same binary differ"
    );
    std::fs::remove_dir_all(work.join("b")).unwrap();
    let built = started.elapsed();

    // Unpacked by the host's tar, following the OCI layout.
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&image.archive)
        .arg("-C")
        .arg(&layout));
    assert_eq!(
        json_of(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json_of(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], image.manifest_digest.as_str());
    assert_eq!(
        manifests[0]["annotations"]["io.containerd.image.name"],
        REFERENCE
    );
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "test"
    );
    let manifest = json_of(&blob(&layout, &manifests[0]));
    let config_path = blob(&layout, &manifest["config"]);
    let config = json_of(&config_path);
    let descriptors = manifest["layers"].as_array().expect("layers");
    assert_eq!(descriptors.len(), 2, "a base layer and the binary's");
    let layers: Vec<PathBuf> = descriptors
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
            blob(&layout, l)
        })
        .collect();
    // Uncompressed layers: each diff_id is the layer's own (verified) digest.
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"]),
        descriptors
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );

    // The docker archive's manifest.json names the same blobs.
    let docker = json_of(&layout.join("manifest.json"));
    let rel = |p: &Path| p.strip_prefix(&layout).unwrap().display().to_string();
    assert_eq!(docker[0]["Config"], rel(&config_path).as_str());
    assert_eq!(
        strings(&docker[0]["Layers"]),
        layers.iter().map(|l| rel(l)).collect::<Vec<_>>()
    );
    assert_eq!(strings(&docker[0]["RepoTags"]), [REFERENCE]);

    // The root filesystem, layer after layer, owners kept when we are root.
    let as_root = nix::unistd::geteuid().is_root();
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    for layer in &layers {
        sh(Command::new("tar")
            .arg(if as_root {
                "--same-owner"
            } else {
                "--no-same-owner"
            })
            .arg("-xpf")
            .arg(layer)
            .arg("-C")
            .arg(&rootfs));
    }
    assert_eq!(
        std::fs::read(rootfs.join("usr/local/bin/switchyard")).unwrap(),
        std::fs::read(binary).unwrap(),
        "the image's binary is not the one built"
    );
    for absent in ["bin/sh", "usr/bin/sh", "usr/bin/bash", "usr/bin/mawk"] {
        assert!(
            std::fs::symlink_metadata(rootfs.join(absent)).is_err(),
            "/{absent} is in the image"
        );
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    // `switchyard --version` inside it, through the image's entrypoint, as its user.
    let cfg = &config["config"];
    assert_eq!(cfg["User"], "65532:65532");
    let entrypoint = strings(&cfg["Entrypoint"]);
    assert_eq!(entrypoint, ["/usr/local/bin/switchyard"]);
    let path_env = strings(&cfg["Env"])
        .into_iter()
        .find(|e| e.starts_with("PATH="))
        .expect("PATH in the image's environment");
    let mut inside = if as_root {
        let mut c = Command::new("chroot");
        c.arg("--userspec=65532:65532").arg(&rootfs);
        c
    } else {
        let mut c = Command::new("unshare");
        c.args(["--user", "--map-root-user"])
            .arg(format!("--root={}", rootfs.display()));
        c
    };
    inside
        .args(&entrypoint)
        .arg("--version")
        .env_clear()
        .env("PATH", path_env.trim_start_matches("PATH="));
    let ran = sh(&mut inside);
    let host = sh(Command::new(binary).arg("--version"));
    assert!(!host.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&host.stdout),
        "the image's switchyard --version differs from the host's"
    );

    // Debian's skopeo reads it as an OCI archive and as a docker archive.
    let skopeo = skopeo().unwrap_or_else(|e| panic!("fetching skopeo: {e}"));
    let tmp = work.join("skopeo-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let oci = format!("oci-archive:{}", image.archive.display());
    let docker_ref = format!("docker-archive:{}", image.archive.display());
    let inspect = |target: &str, extra: &[&str]| -> Value {
        let out = sh(skopeo
            .command(&tmp)
            .unwrap()
            .arg("inspect")
            .args(extra)
            .arg(target));
        serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
    };
    let layer_digests: Vec<String> = image.layers.iter().map(|l| l.digest()).collect();
    let seen = inspect(&oci, &[]);
    assert_eq!(seen["Digest"], image.manifest_digest.as_str(), "{seen}");
    assert_eq!(seen["Architecture"], "amd64");
    assert_eq!(seen["Os"], "linux");
    assert_eq!(strings(&seen["Layers"]), layer_digests);
    assert_eq!(
        seen["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let seen_config = inspect(&oci, &["--config"]);
    assert_eq!(seen_config["config"]["User"], "65532:65532");
    assert_eq!(
        strings(&seen_config["config"]["Entrypoint"]),
        ["/usr/local/bin/switchyard"]
    );
    let seen_docker = inspect(&docker_ref, &[]);
    assert_eq!(strings(&seen_docker["Layers"]), layer_digests);
    assert_eq!(seen_docker["Architecture"], "amd64");
    // A copy reads every blob and checks it against its digest.
    let copied = work.join("copied");
    sh(skopeo
        .command(&tmp)
        .unwrap()
        .args(["copy", "--quiet", "--insecure-policy"])
        .arg(&oci)
        .arg(format!("dir:{}", copied.display())));
    assert!(copied.join("manifest.json").is_file());

    eprintln!(
        "image test: {:.1} MiB archive (layers {:?} bytes), two builds in {:.1}s, all in {:.1}s, skopeo {}",
        image.archive_size as f64 / (1024.0 * 1024.0),
        image.layers.iter().map(|l| l.size).collect::<Vec<_>>(),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        skopeo.version()
    );
}
