//! `cargo xtask image`: the operator's container image, built with no container engine.
//!
//! Builds `switchyard` (`cargo build -p switchyard`, `--release` for a release), packages
//! it with `switchyard-image` on a base of Debian packages, and writes
//! `target/image/<profile>/switchyard.tar` (an OCI image layout that is also a docker
//! archive: `docker load -i`, `podman load -i`, `skopeo copy oci-archive:`) and the image's
//! root filesystem unpacked in `target/image/<profile>/rootfs/` (for `chroot`, and for the
//! simulated kubelet). The archive is named after the image `deploy/operator.yaml` runs, so
//! loading it makes that image available; `--reference` names another (a registry of your
//! own). The same binary on the same base always gives the same archive and digest.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root, run, target_dir};

/// Options of `cargo xtask image`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Package the release build (what is published); the default is the debug build.
    #[arg(long)]
    release: bool,
    /// Package this binary instead of building one.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The name and tag the archive carries (default: the image deploy/operator.yaml runs).
    #[arg(long, value_name = "REF")]
    reference: Option<String>,
    /// Where to write switchyard.tar and rootfs/ (default: target/image/<profile>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// The file that names the operator's image.
const OPERATOR_MANIFEST: &str = "deploy/operator.yaml";

/// Runs `cargo xtask image`.
pub fn run_image(args: Args) -> Result<()> {
    let started = Instant::now();
    let profile = if args.release { "release" } else { "debug" };
    let reference = match args.reference {
        Some(r) => r,
        None => operator_image(&project_root().join(OPERATOR_MANIFEST))?,
    };
    let binary = match args.binary {
        Some(b) => b,
        None => {
            let mut cmd = cargo();
            cmd.args(["build", "-p", "switchyard", "--locked"]);
            if args.release {
                cmd.arg("--release");
            }
            run(&mut cmd)?;
            target_dir().join(profile).join("switchyard")
        }
    };
    let built = started.elapsed();
    let out = args
        .out
        .unwrap_or_else(|| target_dir().join("image").join(profile));
    let archive = out.join("switchyard.tar");
    let packaging = Instant::now();
    let image = switchyard_image::build(&switchyard_image::Options {
        binary: binary.clone(),
        archive: archive.clone(),
        reference: reference.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
    .with_context(|| format!("packaging {}", binary.display()))?;
    let packaged = packaging.elapsed();
    let rootfs = out.join("rootfs");
    replace_rootfs(&archive, &rootfs)?;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!("image {reference}");
    eprintln!(
        "  archive   {} ({:.1} MiB)",
        archive.display(),
        mib(image.archive_size)
    );
    eprintln!("  digest    {}", image.manifest_digest);
    eprintln!("  config    {}", image.config_digest);
    for (i, layer) in image.layers.iter().enumerate() {
        let what = if i == 0 { "base" } else { "switchyard" };
        eprintln!(
            "  layer {i}   {} {:.1} MiB ({what})",
            layer.digest(),
            mib(layer.size)
        );
    }
    let packages: Vec<String> = image
        .base_packages
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    eprintln!(
        "  base      Debian {}: {}",
        switchyard_image::base::SUITE,
        packages.join(", ")
    );
    eprintln!("  rootfs    {}", rootfs.display());
    eprintln!(
        "  took      {:.1}s (binary {:.1}s, packaging {:.1}s)",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        packaged.as_secs_f64()
    );
    eprintln!("load it:   docker load -i {}", archive.display());
    eprintln!("           podman load -i {}", archive.display());
    eprintln!(
        "push it:   skopeo copy oci-archive:{} docker://{reference}",
        archive.display()
    );
    Ok(())
}

/// Unpacks the archive into `rootfs`, replacing what was there once the new one is
/// complete.
fn replace_rootfs(archive: &Path, rootfs: &Path) -> Result<()> {
    let fresh = rootfs.with_extension("new");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh)
            .with_context(|| format!("could not remove {}", fresh.display()))?;
    }
    switchyard_image::unpack(archive, &fresh)?;
    if rootfs.exists() {
        std::fs::remove_dir_all(rootfs)
            .with_context(|| format!("could not remove {}", rootfs.display()))?;
    }
    std::fs::rename(&fresh, rootfs)
        .with_context(|| format!("could not move {} into place", fresh.display()))?;
    Ok(())
}

/// The one `image:` of a manifest file.
fn operator_image(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("could not read {}", manifest.display()))?;
    let images: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .map(|i| i.trim().trim_matches(['"', '\'']))
        .collect();
    match images.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => bail!(
            "{} names {} images ({images:?}); expected exactly one, or pass --reference",
            manifest.display(),
            images.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image `deploy/operator.yaml` runs is the one this version's archive is named
    /// after, so `docker load` of the archive gives the manifest its image; the namespaced
    /// install runs the same.
    #[test]
    fn the_operator_manifests_name_this_versions_image() {
        let image = operator_image(&project_root().join(OPERATOR_MANIFEST)).unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t);
        assert_eq!(
            tag,
            Some(env!("CARGO_PKG_VERSION")),
            "{OPERATOR_MANIFEST} runs {image}: its tag must be the workspace version"
        );
        let namespaced = "deploy/namespaced/operator.yaml";
        assert_eq!(
            operator_image(&project_root().join(namespaced)).unwrap(),
            image,
            "{namespaced} and {OPERATOR_MANIFEST} run different images"
        );
    }

    /// The Dockerfile (for those with a container engine) lays the image out as
    /// switchyard-image does: where the binary is, the entrypoint, the user, the command.
    #[test]
    fn the_dockerfile_builds_the_same_layout() {
        use switchyard_image::base::{BINARY_PATH, USER};
        let text = std::fs::read_to_string(project_root().join("Dockerfile")).unwrap();
        let only = |instruction: &str| -> String {
            let found: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix(instruction))
                .collect();
            assert_eq!(
                found.len(),
                1,
                "the Dockerfile's {instruction}lines: {found:?}"
            );
            found[0].trim().to_owned()
        };
        let json_list = |items: &[&str]| {
            let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let binary = format!("/{BINARY_PATH}");
        assert_eq!(only("USER "), format!("{USER}:{USER}"));
        assert_eq!(only("ENTRYPOINT "), json_list(&[binary.as_str()]));
        assert_eq!(only("CMD "), json_list(switchyard_image::DEFAULT_CMD));
        assert!(
            only("COPY --from=").ends_with(&format!(" {binary}")),
            "the Dockerfile does not copy the binary to {binary}"
        );
    }

    #[test]
    fn a_manifest_with_no_image_or_two_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, "kind: Deployment\n").unwrap();
        assert!(operator_image(&path).is_err());
        std::fs::write(&path, "image: a:1\n---\n      image: \"b:2\"\n").unwrap();
        let err = operator_image(&path).unwrap_err().to_string();
        assert!(err.contains("2 images"), "{err}");
        std::fs::write(&path, "        image: \"b:2\"\n").unwrap();
        assert_eq!(operator_image(&path).unwrap(), "b:2");
    }
}
