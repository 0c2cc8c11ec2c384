//! Fetching every server from Debian's archive: the first call fills the
//! cache (or finds it filled), the second changes nothing and returns the
//! same root; every server runs through its own suite's loader and reports
//! the version that was resolved.

use std::time::SystemTime;

use switchyard_testbed::template::template;
use switchyard_testbed::{Flavor, ServerKind, binaries};

fn modified(path: &std::path::Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn fetch_twice(kind: ServerKind) {
    let first = binaries(kind).unwrap();
    let marker = first.root().join(".switchyard/complete");
    let stamp = (modified(first.root()), modified(&marker));

    let second = binaries(kind).unwrap();
    assert_eq!(
        first, second,
        "{kind}: the second fetch resolved something else"
    );
    assert_eq!(
        (modified(second.root()), modified(&marker)),
        stamp,
        "{kind}: the second fetch rewrote the cached root"
    );

    // The version is the one the archive had, in the kind's series.
    assert!(
        first.version().starts_with(&format!("{}.", kind.series())),
        "{kind} resolved to {}",
        first.version()
    );
    for package in kind.packages() {
        assert!(
            first.packages().iter().any(|(name, _)| name == package),
            "{kind}: {package} missing from {:?}",
            first.packages()
        );
    }
    // The loader is the suite's own, inside the root.
    assert!(first.loader().starts_with(first.root()));
    assert!(first.loader().is_file());

    // The server runs through it and reports the recorded version.
    let out = first
        .command(&first.server())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(first.full_version()), "{kind}: {text}");
    let name = match kind.flavor() {
        Flavor::Mariadb => "mariadbd",
        Flavor::Mysql => "mysqld",
    };
    assert!(text.contains(name), "{kind}: {text}");

    // What provisions a replica: mariadb-backup and mbstream on every MariaDB suite, the
    // clone plugin on MySQL.
    let provisioning: &[&str] = match kind.flavor() {
        Flavor::Mariadb => &["usr/bin/mariadb-backup", "usr/bin/mbstream"],
        Flavor::Mysql => &["usr/lib/mysql/plugin/mysql_clone.so"],
    };
    for rel in provisioning {
        assert!(
            first.root().join(rel).is_file(),
            "{kind}: no {rel} in {}",
            first.root().display()
        );
    }

    // A database image's /bin/sh (mariadb-upgrade's popen needs it): `sh`, a link to dash,
    // in `bin` or, in a merged-/usr root (where /bin is a link to usr/bin), in `usr/bin`.
    if kind != ServerKind::Galera {
        let sh = ["bin/sh", "usr/bin/sh"]
            .into_iter()
            .map(|rel| first.root().join(rel))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{kind}: no bin/sh in {}", first.root().display()));
        let out = first
            .command(&sh)
            .args(["-c", "echo shell $0"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("shell {}", sh.display()),
            "{kind}: {out:?}"
        );
    }

    // The template data directory is made once and then reused.
    let tpl = template(&first).unwrap();
    assert!(
        tpl.join("mysql").is_dir(),
        "{kind}: no mysql schema in {}",
        tpl.display()
    );
    assert_eq!(template(&second).unwrap(), tpl);
}

#[test]
fn mariadb_10_5_from_bullseye() {
    fetch_twice(ServerKind::Mariadb105);
}

#[test]
fn mariadb_10_11_from_bookworm() {
    fetch_twice(ServerKind::Mariadb1011);
}

#[test]
fn mariadb_11_8_from_trixie() {
    fetch_twice(ServerKind::Mariadb118);
}

#[test]
fn mysql_9_7_from_sid() {
    fetch_twice(ServerKind::Mysql97);
}

#[test]
fn galera_from_bookworm() {
    fetch_twice(ServerKind::Galera);
    let bins = binaries(ServerKind::Galera).unwrap();
    assert!(
        bins.root()
            .join("usr/lib/galera/libgalera_smm.so")
            .is_file()
    );
    for tool in ["wsrep_sst_rsync", "rsync", "socat", "mariabackup"] {
        assert!(bins.wrappers().join(tool).exists(), "no {tool} wrapper");
    }
    // A helper run through its wrapper works (its libraries come from the root).
    let out = bins
        .tool("rsync")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
