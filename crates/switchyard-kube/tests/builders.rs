//! The pure builders against committed YAML fixtures, plus the properties the fixtures
//! cannot show at a glance. Run with `SWITCHYARD_BLESS=1` to rewrite the fixtures after an
//! intended change, then review the diff.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use switchyard_kube::build::{self, ClusterCredentials};
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec};
use switchyard_kube::validate::validate;

fn fixture_cluster(flavor: &str, version: &str) -> MySQLCluster {
    let spec: MySQLClusterSpec = serde_yaml::from_str(&format!(
        "flavor: {flavor}\nversion: {version}\nreplicas: 3\nconfig:\n  max_connections: \"500\"\n  Innodb-Buffer-Pool-Size: 1G\nupdate:\n  shutdownTimeout: 20m\n"
    ))
    .expect("a spec");
    let mut c = MySQLCluster::new("shop", spec);
    c.metadata.namespace = Some("db".into());
    c.metadata.uid = Some("6a1b3c5e-0000-4000-8000-000000000001".into());
    c
}

fn creds() -> ClusterCredentials {
    ClusterCredentials {
        root_password: "root-pw".into(),
        operator_user: "switchyard".into(),
        operator_password: "op-pw".into(),
        replication_user: "replication".into(),
        replication_password: "repl-pw".into(),
    }
}

fn check(name: &str, yaml: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        std::fs::write(&path, &yaml).expect("write the fixture");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with SWITCHYARD_BLESS=1", path.display()));
    assert!(
        expected == yaml,
        "{} differs from what the builders produce (run with SWITCHYARD_BLESS=1 and review):\n{yaml}",
        path.display()
    );
}

fn objects(flavor: &str, version: &str) -> Vec<(String, String)> {
    let c = fixture_cluster(flavor, version);
    let spec = validate("shop", &c.spec).expect("valid");
    let y = |v: &dyn erased::Yaml| v.yaml();
    vec![
        (
            format!("{flavor}-statefulset.yaml"),
            y(&build::stateful_set(&c, &spec)),
        ),
        (
            format!("{flavor}-configmap.yaml"),
            y(&build::config_map(&c, &spec)),
        ),
        (format!("{flavor}-services.yaml"), y(&build::services(&c))),
        (
            format!("{flavor}-pdb.yaml"),
            y(&build::pod_disruption_budget(&c)),
        ),
        (
            format!("{flavor}-bootstrap-secret.yaml"),
            y(&build::bootstrap_secret(&c, &spec, &creds())),
        ),
    ]
}

mod erased {
    pub trait Yaml {
        fn yaml(&self) -> String;
    }
    impl<T: serde::Serialize> Yaml for T {
        fn yaml(&self) -> String {
            serde_yaml::to_string(self).expect("serializes")
        }
    }
}

#[test]
fn mariadb_objects_match_the_fixtures() {
    for (name, yaml) in objects("mariadb", "10.11.14") {
        check(&name, yaml);
    }
}

#[test]
fn mysql_objects_match_the_fixtures() {
    for (name, yaml) in objects("mysql", "8.4.3") {
        check(&name, yaml);
    }
}

#[test]
fn the_pod_template_depends_only_on_the_spec() {
    let a = fixture_cluster("mariadb", "10.11.14");
    let mut b = a.clone();
    b.metadata.uid = Some("another-uid".into());
    b.metadata.labels = Some([("team".to_owned(), "shop".to_owned())].into());
    b.metadata.annotations = Some(
        [(
            "switchyard.io/approve-switchover".to_owned(),
            "2:0->1".to_owned(),
        )]
        .into(),
    );
    let spec = validate("shop", &a.spec).unwrap();
    let ta = build::stateful_set(&a, &spec).spec.unwrap().template;
    let tb = build::stateful_set(&b, &spec).spec.unwrap().template;
    assert_eq!(ta, tb);
    assert_eq!(
        build::revision_hash(&spec, &a),
        build::revision_hash(&spec, &b)
    );

    // A configuration change is a new revision; so is a new image.
    let mut c = a.clone();
    c.spec.config.insert("max_connections".into(), "600".into());
    let spec_c = validate("shop", &c.spec).unwrap();
    assert_ne!(
        build::revision_hash(&spec, &a),
        build::revision_hash(&spec_c, &c)
    );
    let mut d = a.clone();
    d.spec.image = Some("registry.example/mariadb:10.11.14-custom".into());
    let spec_d = validate("shop", &d.spec).unwrap();
    assert_ne!(
        build::revision_hash(&spec, &a),
        build::revision_hash(&spec_d, &d)
    );
}

#[test]
fn the_statefulset_leaves_the_order_to_the_engine_and_covers_a_slow_shutdown() {
    let c = fixture_cluster("mariadb", "10.11.14");
    let spec = validate("shop", &c.spec).unwrap();
    let sts = build::stateful_set(&c, &spec).spec.unwrap();
    assert_eq!(
        sts.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    let pod = sts.template.spec.unwrap();
    let grace = pod.termination_grace_period_seconds.unwrap();
    assert!(
        grace >= 20 * 60,
        "grace {grace}s covers shutdownTimeout 20m"
    );
    let main = &pod.containers[0];
    let startup = main.startup_probe.as_ref().unwrap();
    let window = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
    assert!(
        Duration::from_secs(u64::try_from(window).unwrap()) >= spec.startup_timeout,
        "the startup probe allows startupTimeout (1h by default)"
    );
    assert!(
        main.env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "MARIADB_AUTO_UPGRADE" && e.value.as_deref() == Some("1"))
    );
}

#[test]
fn my_cnf_is_durable_read_only_and_flavor_specific() {
    let maria = validate("shop", &fixture_cluster("mariadb", "10.11.14").spec).unwrap();
    let cnf = build::render_my_cnf(&maria);
    for line in [
        "read_only = ON",
        "sync_binlog = 1",
        "innodb_flush_log_at_trx_commit = 1",
        "relay_log_recovery = ON",
        "log_slave_updates = ON",
        "gtid_strict_mode = ON",
        "skip_slave_start = ON",
        "binlog_format = ROW",
        "innodb_buffer_pool_size = 1G",
        "max_connections = 500",
    ] {
        assert!(cnf.lines().any(|l| l == line), "{line} in\n{cnf}");
    }
    assert!(
        !cnf.contains("server_id ="),
        "server_id comes from the ordinal"
    );
    let mysql = validate("shop", &fixture_cluster("mysql", "8.4.3").spec).unwrap();
    let cnf = build::render_my_cnf(&mysql);
    for line in [
        "gtid_mode = ON",
        "enforce_gtid_consistency = ON",
        "log_replica_updates = ON",
        "skip_replica_start = ON",
        "read_only = ON",
        "super_read_only = ON",
    ] {
        assert!(cnf.lines().any(|l| l == line), "{line} in\n{cnf}");
    }
    assert!(!cnf.contains("gtid_strict_mode"));
    let maria_cnf = build::render_my_cnf(&maria);
    assert!(
        !maria_cnf.lines().any(|l| l.starts_with("super_read_only")),
        "MariaDB has no super_read_only"
    );
    // The start-up fence is not part of the revision: adding it changed no revision hash.
    assert!(!build::server_variables(&mysql).contains_key("super_read_only"));
}

/// A MySQL 9.7 server started from the ConfigMap's my.cnf alone refuses a write of an account
/// with ALL PRIVILEGES (which `read_only` lets through): the file sets `super_read_only`.
#[tokio::test]
async fn a_mysql_server_started_from_the_rendered_my_cnf_refuses_a_privileged_write() {
    use switchyard_testbed::{Options, ServerKind, replication_with};
    let spec: MySQLClusterSpec =
        serde_yaml::from_str("flavor: mysql\nversion: 8.4.3\nreplicas: 1\n").expect("a spec");
    let cluster = MySQLCluster::new("shop", spec);
    let valid = validate("shop", &cluster.spec).expect("valid");
    let config_map = build::config_map(&cluster, &valid);
    let cnf = &config_map.data.as_ref().expect("data")["my.cnf"];
    // The testbed's own read-only lines are turned off first, so the rendered file decides.
    let mut extra = vec![
        "read_only = OFF".to_owned(),
        "super_read_only = OFF".to_owned(),
    ];
    extra.extend(cnf.lines().map(str::to_owned));
    let testbed = replication_with(&[ServerKind::Mysql97], &Options { extra_cnf: extra })
        .await
        .expect("a server");
    // The testbed made it writable after its first start, as an operator does for a
    // primary: start it again from the file alone.
    let server = testbed.instance(0);
    server.stop().await.expect("stop");
    server
        .start()
        .await
        .expect("start from the rendered my.cnf");
    let mut admin = server
        .connect(&testbed.credentials().privileged)
        .await
        .expect("the privileged account logs in");
    let write = sqlx::raw_sql("CREATE TABLE app.started_read_only (id INT PRIMARY KEY)")
        .execute(&mut admin)
        .await;
    let refused = write.expect_err("a privileged write is refused on a server started read-only");
    assert!(
        refused.to_string().contains("super-read-only"),
        "refused by super_read_only: {refused}"
    );
}

#[test]
fn generated_credentials_are_random_and_never_printed() {
    let a = build::generate_credentials();
    let b = build::generate_credentials();
    assert_ne!(a.operator_password, b.operator_password);
    assert_eq!(a.replication_password.len(), 24);
    let shown = format!("{a:?}");
    assert!(!shown.contains(&a.operator_password) && !shown.contains(&a.root_password));
    let c = fixture_cluster("mysql", "8.4.3");
    let spec = validate("shop", &c.spec).unwrap();
    let secret: Secret = build::credentials_secret(&c, &spec, &a);
    assert_eq!(secret.metadata.name.as_deref(), Some("shop-credentials"));
    assert_eq!(
        secret.data.unwrap()["operator-password"].0,
        a.operator_password.as_bytes()
    );
}

#[test]
fn the_bootstrap_sql_creates_the_accounts_with_the_binary_log_off() {
    let mut c = creds();
    c.operator_password = "it's".into();
    assert_eq!(
        build::bootstrap_sql(switchyard_plan::versions::Flavor::Mariadb, &c),
        "-- Rendered by switchyard: the accounts the operator and replication use.\n\
         SET SESSION sql_log_bin = 0;\n\
         CREATE USER IF NOT EXISTS 'switchyard'@'%' IDENTIFIED BY 'it''s';\n\
         GRANT ALL PRIVILEGES ON *.* TO 'switchyard'@'%' WITH GRANT OPTION;\n\
         CREATE USER IF NOT EXISTS 'replication'@'%' IDENTIFIED BY 'repl-pw';\n\
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'replication'@'%';\n"
    );
}
