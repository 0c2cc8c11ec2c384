//! The image's base: Debian's C library and little else, from the packages the testbed's
//! fetch machinery resolves and verifies, plus the few files an image needs that packages
//! do not ship (the users, name service switch, `/tmp`).
//!
//! What is kept from the packages: everything but programs (`usr/bin`, `usr/sbin`: the
//! image runs `switchyard` and nothing else, no shell, no `awk`) and documentation other
//! than the licences (`usr/share/doc/*/copyright` stay; manuals, info pages and changelogs
//! go). The C library's loader is at its `PT_INTERP` path through the merged-`/usr` links
//! (`/lib64 -> usr/lib64`), so `switchyard agent install` finds the loader and libraries
//! where the binary says they are.

use std::path::Path;

use switchyard_testbed::Suite;
use switchyard_testbed::packages::{PackageRoot, package_root};

use crate::error::{Error, Result};
use crate::layer::{Body, Entry, Tree, add_directory};

/// The Debian suite of the base: Debian 13, whose glibc (2.41) runs binaries built on
/// Debian 12 or 13.
pub const SUITE: Suite = Suite::Trixie;

/// The packages asked of apt for the base (it adds their dependencies: `gcc-14-base`,
/// and `mawk` for `base-files`, whose program is left out).
pub const PACKAGES: &[&str] = &["libc6", "libgcc-s1", "netbase", "base-files"];

/// The unprivileged user the image runs as (distroless's `nonroot`).
pub const USER: u32 = 65532;

/// Where the binary goes.
pub const BINARY_PATH: &str = "usr/local/bin/switchyard";

/// Fetches (or finds in the testbed's cache) the base's packages.
///
/// # Errors
/// [`Error::Fetch`] when apt or the mirror fails.
pub fn packages() -> Result<PackageRoot> {
    package_root("image-base", SUITE, PACKAGES).map_err(|source| Error::Fetch {
        what: "the image base",
        source: Box::new(source),
    })
}

/// Whether a path of the unpacked packages goes into the image.
fn keep(rel: &str, is_dir: bool) -> bool {
    if rel == ".switchyard" || rel.starts_with(".switchyard/") {
        return false;
    }
    for programs in ["usr/bin/", "usr/sbin/", "bin/", "sbin/"] {
        if rel.starts_with(programs) {
            return false;
        }
    }
    for docs in ["usr/share/man", "usr/share/info", "usr/share/lintian"] {
        if rel == docs || rel.starts_with(&format!("{docs}/")) {
            return false;
        }
    }
    if let Some(rest) = rel.strip_prefix("usr/share/doc/") {
        // usr/share/doc/PACKAGE (a directory) and usr/share/doc/PACKAGE/copyright.
        return match rest.split_once('/') {
            None => is_dir,
            Some((_, file)) => file == "copyright",
        };
    }
    true
}

/// The base layer's tree: the packages as kept, then the image's own files.
pub(crate) fn tree(base: &PackageRoot) -> Result<Tree> {
    let mut tree = Tree::new();
    add_directory(&mut tree, base.root(), "", &keep)?;
    add_image_files(&mut tree);
    Ok(tree)
}

/// Users, groups, name service switch, the merged-`/usr` links a package set does not
/// ship, and the directories every image has.
fn add_image_files(tree: &mut Tree) {
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        tree.entry(link.to_owned())
            .or_insert_with(|| Entry::symlink(target));
    }
    for dir in [
        "etc",
        "home",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/lib64",
        "usr/local",
        "usr/local/bin",
        "usr/sbin",
        "var",
    ] {
        tree.entry(dir.to_owned())
            .or_insert_with(|| Entry::dir(0o755));
    }
    tree.insert("tmp".into(), Entry::dir(0o1777));
    tree.insert("root".into(), Entry::dir(0o700));
    let mut home = Entry::dir(0o700);
    home.uid = u64::from(USER);
    home.gid = u64::from(USER);
    tree.insert("home/nonroot".into(), home);
    tree.insert(
        "etc/passwd".into(),
        Entry::data(
            0o644,
            format!(
                "root:x:0:0:root:/root:/sbin/nologin\n\
                 nonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n"
            ),
        ),
    );
    tree.insert(
        "etc/group".into(),
        Entry::data(0o644, format!("root:x:0:\nnonroot:x:{USER}:\n")),
    );
    tree.insert(
        "etc/nsswitch.conf".into(),
        Entry::data(
            0o644,
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n\
             protocols: files\nservices: files\n",
        ),
    );
}

/// The application layer's tree: the binary at [`BINARY_PATH`], root-owned, world
/// executable, with its parent directories.
pub(crate) fn app_tree(binary: &Path, size: u64) -> Tree {
    let mut tree = Tree::new();
    for dir in ["usr", "usr/local", "usr/local/bin"] {
        tree.insert(dir.to_owned(), Entry::dir(0o755));
    }
    tree.insert(
        BINARY_PATH.to_owned(),
        Entry {
            mode: 0o755,
            uid: 0,
            gid: 0,
            body: Body::File {
                source: binary.to_path_buf(),
                size,
            },
        },
    );
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_and_documentation_but_the_licences_stay_out() {
        for (path, is_dir, kept) in [
            ("usr/lib/x86_64-linux-gnu/libc.so.6", false, true),
            ("usr/lib64/ld-linux-x86-64.so.2", false, true),
            ("etc/os-release", false, true),
            ("usr/bin", true, true),
            ("usr/bin/mawk", false, false),
            ("usr/sbin/ldconfig", false, false),
            ("usr/share/man", true, false),
            ("usr/share/man/man1/mawk.1.gz", false, false),
            ("usr/share/doc", true, true),
            ("usr/share/doc/libc6", true, true),
            ("usr/share/doc/libc6/copyright", false, true),
            ("usr/share/doc/libc6/changelog.Debian.gz", false, false),
            ("usr/share/lintian/overrides/libc6", false, false),
            (".switchyard", true, false),
            (".switchyard/complete", false, false),
        ] {
            assert_eq!(keep(path, is_dir), kept, "{path}");
        }
    }

    #[test]
    fn the_image_files_name_the_unprivileged_user_and_keep_package_links() {
        let mut tree = Tree::new();
        tree.insert("lib64".into(), Entry::symlink("usr/lib64"));
        tree.insert("bin".into(), Entry::dir(0o755));
        add_image_files(&mut tree);
        // A package's own entry is not replaced.
        assert_eq!(tree["bin"], Entry::dir(0o755));
        assert_eq!(tree["lib"], Entry::symlink("usr/lib"));
        let Body::Data(passwd) = &tree["etc/passwd"].body else {
            panic!("passwd is not a file");
        };
        let passwd = String::from_utf8(passwd.clone()).unwrap();
        assert!(passwd.contains(":65532:65532:"), "{passwd}");
        assert_eq!(tree["home/nonroot"].uid, 65532);
        assert_eq!(tree["tmp"].mode, 0o1777);
    }
}
