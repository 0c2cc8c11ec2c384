//! `switchyard history` run as a process over a fixture history of a local cluster that went
//! through a version upgrade and two configuration changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use switchyard_plan::Timestamp;
use switchyard_plan::history::History;
use switchyard_plan::versions::{Flavor, Version};

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// r1 MariaDB 10.11.14 with max_connections=151; r2 the upgrade to 11.8.6; r3 max_connections
/// to 300; r4 innodb_buffer_pool_size added.
fn fixture(dir: &Path) -> History {
    let mut h = History::new(Flavor::Mariadb);
    let old = Version::new(10, 11, 14);
    let new = Version::new(11, 8, 6);
    h.ensure(
        Flavor::Mariadb,
        old,
        &cfg(&[("max_connections", "151")]),
        Timestamp(1_795_000_000_000),
    );
    h.ensure(
        Flavor::Mariadb,
        new,
        &cfg(&[("max_connections", "151")]),
        Timestamp(1_795_000_600_000),
    );
    h.ensure(
        Flavor::Mariadb,
        new,
        &cfg(&[("max_connections", "300")]),
        Timestamp(1_795_001_200_000),
    );
    h.ensure(
        Flavor::Mariadb,
        new,
        &cfg(&[
            ("max_connections", "300"),
            ("innodb_buffer_pool_size", "128M"),
        ]),
        Timestamp(1_795_001_800_000),
    );
    std::fs::write(
        dir.join("history.json"),
        serde_json::to_string_pretty(&h).expect("serialize"),
    )
    .expect("write the fixture");
    h
}

fn history(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("history")
        .args(args)
        .output()
        .expect("the switchyard binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn prints_each_revision_with_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = fixture(dir.path());
    let state = dir.path().to_str().expect("utf-8 path");
    let out = history(&["demo", "--state", state]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let blocks: Vec<&str> = stdout.split("\nr").collect();
    assert!(
        stdout.starts_with("cluster demo (mariadb): 4 revision(s)"),
        "{stdout}"
    );
    assert_eq!(blocks.len(), 5, "a header and four revisions: {stdout}");
    for (n, entry) in h.entries.iter().enumerate() {
        assert!(
            blocks[n + 1].starts_with(&format!("{} ", entry.revision.number))
                && blocks[n + 1].contains(entry.revision.short_hash()),
            "revision {} with its hash: {stdout}",
            entry.revision.number
        );
    }
    assert!(blocks[1].contains("version 10.11.14") && blocks[1].contains("max_connections=151"));
    assert!(
        blocks[2].contains("upgrade: version 10.11.14 -> 11.8.6"),
        "{stdout}"
    );
    assert!(
        !blocks[2].contains("config:"),
        "the upgrade changed no variable: {stdout}"
    );
    assert!(
        blocks[3].contains("config: max_connections: 151 -> 300"),
        "{stdout}"
    );
    assert!(
        blocks[4].contains("config: +innodb_buffer_pool_size=128M"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("current: r4"), "{stdout}");
}

#[test]
fn json_lists_revisions_and_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture(dir.path());
    let out = history(&[
        "demo",
        "--state",
        dir.path().to_str().expect("path"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["current"], 4);
    let revisions = v["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 4);
    assert_eq!(revisions[1]["changes"][0]["change"], "version");
    assert_eq!(revisions[1]["changes"][0]["to"], "11.8.6");
    assert_eq!(revisions[2]["changes"][0]["change"], "changed");
    assert_eq!(
        revisions[3]["changes"][0]["name"],
        "innodb_buffer_pool_size"
    );
}

#[test]
fn missing_state_and_kubernetes_are_clear_invalid_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = history(&["demo", "--state", dir.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("history.json"),
        "{}",
        text(&out.stderr)
    );
    // -n reads the MySQLCluster from the API server: with no kubeconfig and outside a
    // cluster there is none to talk to.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["history", "demo", "-n", "prod"])
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("the switchyard binary runs");
    assert_eq!(out.status.code(), Some(64));
    let err = text(&out.stderr);
    assert!(err.contains("KUBECONFIG"), "{err}");
    std::fs::write(dir.path().join("history.json"), "{not json").expect("write");
    let out = history(&["demo", "--state", dir.path().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("not a switchyard history"));
}
