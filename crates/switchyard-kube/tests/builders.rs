//! The pure builders against committed YAML fixtures, plus the properties the fixtures
//! cannot show at a glance. Run with `SWITCHYARD_BLESS=1` to rewrite the fixtures after an
//! intended change, then review the diff.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use switchyard_kube::agent::{AGENT_PORT, Donor, InstanceConfig, Source};
use switchyard_kube::build;
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec, RevisionEntry};
use switchyard_kube::credentials;
use switchyard_kube::revision::{self, render_my_cnf, server_variables};
use switchyard_kube::validate::{ValidSpec, validate};

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

/// The revision entry of the fixture spec, as the reconcile records it.
fn entry(c: &MySQLCluster, spec: &ValidSpec) -> RevisionEntry {
    let hash = revision::revision_hash(spec, c);
    let number = switchyard_plan::Revision { number: 1, hash };
    let created = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
    );
    revision::new_entry(&number, spec, c, None, &created)
}

/// The `instance.json` of a replica (instance 1) provisioned from the primary (instance 0).
fn replica_config(entry: &RevisionEntry) -> InstanceConfig {
    InstanceConfig {
        revision: entry.hash.clone(),
        server_id: 1001,
        bootstrap: false,
        provision_from: Some(Donor {
            host: "shop-0.shop-hosts.db.svc".into(),
            port: 3306,
            agent_port: AGENT_PORT,
        }),
        replicate_from: Some(Source {
            host: "shop-0.shop-hosts.db.svc".into(),
            port: 3306,
        }),
        max_lag_seconds: 10,
        galera: None,
    }
}

fn objects(flavor: &str, version: &str) -> Vec<(String, String)> {
    let c = fixture_cluster(flavor, version);
    let spec = validate("shop", &c.spec).expect("valid");
    let e = entry(&c, &spec);
    let y = |v: &dyn erased::Yaml| v.yaml();
    vec![
        (
            format!("{flavor}-pod.yaml"),
            y(&build::pod(
                &c,
                &spec,
                1,
                &e,
                Some(0),
                "switchyard/operator:1.0",
            )),
        ),
        (
            format!("{flavor}-configmap.yaml"),
            y(&build::instance_config_map(
                &c,
                &spec,
                1,
                &e,
                &replica_config(&e),
            )),
        ),
        (format!("{flavor}-claim.yaml"), y(&build::claim(&c, 1))),
        (format!("{flavor}-services.yaml"), y(&build::services(&c))),
        (
            format!("{flavor}-pdb.yaml"),
            y(&build::pod_disruption_budgets(&c)),
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
fn the_pod_depends_only_on_the_spec_and_its_revision() {
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
    let e = entry(&a, &spec);
    let pa = build::pod(&a, &spec, 0, &e, None, "op:1").spec.unwrap();
    let pb = build::pod(&b, &spec, 0, &e, None, "op:1").spec.unwrap();
    assert_eq!(pa, pb);
    assert_eq!(
        revision::revision_hash(&spec, &a),
        revision::revision_hash(&spec, &b)
    );

    // A configuration change is a new revision; so is a new image.
    let mut c = a.clone();
    c.spec.config.insert("max_connections".into(), "600".into());
    let spec_c = validate("shop", &c.spec).unwrap();
    assert_ne!(
        revision::revision_hash(&spec, &a),
        revision::revision_hash(&spec_c, &c)
    );
    let mut d = a.clone();
    d.spec.image = Some("registry.example/mariadb:10.11.14-custom".into());
    let spec_d = validate("shop", &d.spec).unwrap();
    assert_ne!(
        revision::revision_hash(&spec, &a),
        revision::revision_hash(&spec_d, &d)
    );
    // The pod of an instance still assigned an older revision is built from that revision,
    // whatever the spec says now: its image, version and annotation stay.
    let on_old = build::pod(&d, &spec_d, 0, &e, None, "op:1");
    assert_eq!(
        on_old.spec.unwrap().containers[0].image.as_deref(),
        Some("mariadb:10.11.14")
    );
    assert_eq!(
        on_old.metadata.annotations.unwrap()["switchyard.io/revision-hash"],
        e.hash
    );
    // The agent's image is not part of any revision: a new operator restarts no pod.
    let other_agent = build::pod(&a, &spec, 0, &e, None, "op:2");
    assert_eq!(
        revision::revision_hash(&spec, &a),
        e.hash,
        "the revision does not depend on the agent's image"
    );
    assert_eq!(
        other_agent.spec.unwrap().init_containers.unwrap()[0]
            .image
            .as_deref(),
        Some("op:2")
    );
}

#[test]
fn the_pod_covers_a_slow_shutdown_a_long_start_and_probes_the_agent() {
    let c = fixture_cluster("mariadb", "10.11.14");
    let spec = validate("shop", &c.spec).unwrap();
    let pod = build::pod(&c, &spec, 2, &entry(&c, &spec), Some(0), "op:1")
        .spec
        .unwrap();
    let grace = pod.termination_grace_period_seconds.unwrap();
    assert!(
        grace >= 20 * 60,
        "grace {grace}s covers shutdownTimeout 20m"
    );
    assert_eq!(pod.hostname.as_deref(), Some("shop-2"));
    assert_eq!(pod.subdomain.as_deref(), Some("shop-hosts"));
    let main = &pod.containers[0];
    let startup = main.startup_probe.as_ref().unwrap();
    let window = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
    assert!(
        Duration::from_secs(u64::try_from(window).unwrap()) >= spec.startup_timeout,
        "the startup probe allows startupTimeout (1h by default)"
    );
    for (probe, path) in [
        (main.readiness_probe.as_ref().unwrap(), "/readyz"),
        (main.liveness_probe.as_ref().unwrap(), "/livez"),
        (startup, "/livez"),
    ] {
        let get = probe.http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("agent".into())
        );
    }
    // The agent comes from the operator's image, through its own loader.
    let install = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(install.image.as_deref(), Some("op:1"));
    let command = main.command.as_ref().unwrap();
    assert!(command[0].starts_with("/switchyard/lib/ld-linux"));
    assert_eq!(command[command.len() - 2..], ["agent", "run"]);
    // Preferred anti-affinity by default; required or none on request.
    let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(
        preferred[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let mut required = c.clone();
    required.spec.anti_affinity.mode = switchyard_kube::crd::AntiAffinityMode::Required;
    required.spec.anti_affinity.topology_key = "topology.kubernetes.io/zone".into();
    let anti = build::affinity(&required)
        .unwrap()
        .pod_anti_affinity
        .unwrap();
    assert_eq!(
        anti.required_during_scheduling_ignored_during_execution
            .unwrap()[0]
            .topology_key,
        "topology.kubernetes.io/zone"
    );
    let mut none = c;
    none.spec.anti_affinity.mode = switchyard_kube::crd::AntiAffinityMode::None;
    assert!(build::affinity(&none).is_none());
}

#[test]
fn my_cnf_is_durable_read_only_and_flavor_specific() {
    let maria = validate("shop", &fixture_cluster("mariadb", "10.11.14").spec).unwrap();
    let cnf = render_my_cnf(&maria);
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
    let cnf = render_my_cnf(&mysql);
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
    let maria_cnf = render_my_cnf(&maria);
    assert!(
        !maria_cnf.lines().any(|l| l.starts_with("super_read_only")),
        "MariaDB has no super_read_only"
    );
    // The start-up fence is not part of the revision: adding it changed no revision hash.
    assert!(!server_variables(&mysql).contains_key("super_read_only"));
}

#[test]
fn my_cnf_carries_lossless_semi_sync_but_never_the_source_switch() {
    let with = |flavor: &str, version: &str, replicas: i32, extra: serde_json::Value| {
        let mut v = serde_json::json!({"flavor": flavor, "version": version, "replicas": replicas});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let spec: MySQLClusterSpec = serde_json::from_value(v).expect("a spec");
        validate("shop", &spec).expect("valid")
    };
    let maria = render_my_cnf(&with("mariadb", "10.11.14", 3, serde_json::json!({})));
    for line in [
        "rpl_semi_sync_slave_enabled = ON",
        "rpl_semi_sync_master_wait_point = AFTER_SYNC",
        "rpl_semi_sync_master_timeout = 86400000",
        "rpl_semi_sync_master_wait_no_slave = ON",
        "slave_net_timeout = 4",
    ] {
        assert!(maria.lines().any(|l| l == line), "{line} in\n{maria}");
    }
    let mysql = render_my_cnf(&with("mysql", "9.7.0", 5, serde_json::json!({})));
    for line in [
        "plugin_load_add = semisync_source.so",
        "plugin_load_add = semisync_replica.so",
        "loose-rpl_semi_sync_replica_enabled = ON",
        "loose-rpl_semi_sync_source_wait_point = AFTER_SYNC",
        "loose-rpl_semi_sync_source_wait_for_replica_count = 2",
        "loose-rpl_semi_sync_source_wait_no_replica = ON",
        "replica_net_timeout = 4",
    ] {
        assert!(mysql.lines().any(|l| l == line), "{line} in\n{mysql}");
    }
    // Only the primary waits for acknowledgements: the operator switches it on there.
    for cnf in [&maria, &mysql] {
        assert!(
            !cnf.contains("rpl_semi_sync_master_enabled")
                && !cnf.contains("rpl_semi_sync_source_enabled"),
            "{cnf}"
        );
    }
    // Asynchronous replication, or a single instance: no semi-sync at all.
    for v in [
        with(
            "mysql",
            "9.7.0",
            3,
            serde_json::json!({"replication": {"mode": "Async"}}),
        ),
        with("mysql", "9.7.0", 1, serde_json::json!({})),
    ] {
        let cnf = render_my_cnf(&v);
        assert!(!cnf.contains("semi"), "{cnf}");
        assert!(cnf.contains("replica_net_timeout = 4"), "{cnf}");
    }
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
    let rendered = render_my_cnf(&valid);
    // The clone plugin line is the agent's (it loads from the server's plugin directory,
    // which the testbed's server has elsewhere).
    let cnf: String = rendered
        .lines()
        .filter(|l| !l.starts_with("plugin_load_add"))
        .map(|l| format!("{l}\n"))
        .collect();
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
    let a = credentials::generate_credentials();
    let b = credentials::generate_credentials();
    assert_ne!(a.operator_password, b.operator_password);
    assert_eq!(a.replication_password.len(), 24);
    let shown = format!("{a:?}");
    assert!(!shown.contains(&a.operator_password) && !shown.contains(&a.root_password));
    let c = fixture_cluster("mysql", "8.4.3");
    let spec = validate("shop", &c.spec).unwrap();
    let secret: Secret = build::credentials_secret(&c, &spec, &a);
    assert_eq!(secret.metadata.name.as_deref(), Some("shop-credentials"));
    assert_eq!(
        secret.metadata.owner_references, None,
        "the Secret is not the cluster's: it outlives it while its claims remain"
    );
    assert_eq!(
        secret.data.unwrap()["operator-password"].0,
        a.operator_password.as_bytes()
    );
}

/// The primary's budget selects only the pod labelled primary and lets none of it go; the
/// replicas' budget selects only replicas and keeps all but one of them: one eviction at a
/// time, whatever the number of instances (none needed with no replica at all).
#[test]
fn the_budgets_keep_the_primary_and_all_replicas_but_one() {
    for (replicas, min_replicas) in [(1, 0), (2, 0), (3, 1), (5, 3)] {
        let mut c = fixture_cluster("mysql", "8.4.3");
        c.spec.replicas = replicas;
        let budgets = build::pod_disruption_budgets(&c);
        let names: Vec<_> = budgets
            .iter()
            .map(|b| b.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["shop-primary", "shop-replicas"]);
        for (budget, (key, role), min) in [
            (
                &budgets[0],
                ("switchyard.io/disruption-budget", "primary"),
                1,
            ),
            (&budgets[1], ("switchyard.io/role", "replica"), min_replicas),
        ] {
            let spec = budget.spec.clone().unwrap();
            let labels = spec.selector.unwrap().match_labels.unwrap();
            assert_eq!(labels[key], role);
            assert_eq!(labels["app.kubernetes.io/instance"], "shop");
            assert_eq!(
                spec.min_available,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(min)),
                "{role} budget of {replicas} instances"
            );
            assert_eq!(spec.max_unavailable, None, "needs a scale subresource");
        }
    }
}
