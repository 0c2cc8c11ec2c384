//! A `MySQLFleet` end to end on real servers: three one-instance MariaDB clusters run by the
//! simulated kubelet (their pods real processes), the operator's cluster reconcile and the
//! fleet reconcile in one loop over the fake API; the fleet rolls `max_connections` with a
//! canary wave (`shard-a`), a bake, then `[shard-b, shard-c]`. Checked: every server runs the
//! new value (read with SQL), the canary was done (baked) before the second wave started, each
//! member was changed once. Then a second revision with a value the canary's server refuses:
//! the canary's own reconcile refuses it, the fleet stops on it with that reason, and the
//! members of the second wave keep the first revision's value, never patched again. Every
//! request of the operator is allowed by `deploy/rbac.yaml`.
//!
//! A failing bake and an operator restart are proven against the fake API with the members'
//! statuses driven by the test (`crates/switchyard-kube/tests/fleet.rs`); this run shows that
//! the statuses the real cluster reconcile writes drive the fleet as those tests assume.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Log, NS, OPERATOR_IMAGE, scalar, until};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Recorder as EventRecorder, Reporter};
use kube::{Client, ResourceExt as _};
use kube_fake_client::ClientBuilder;
use sqlx::Connection as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use switchyard_kube::context::{Context, Resolver, system_clock};
use switchyard_kube::controller::MysqlOpsFactory;
use switchyard_kube::crd::{
    MySQLCluster, MySQLClusterSpec, MySQLFleet, MySQLFleetSpec, SchemaChange,
};
use switchyard_kube::credentials;
use switchyard_kube::metrics::Metrics;
use switchyard_kube::names::MYSQL_PORT;
use switchyard_kube::reconcile::reconcile;
use switchyard_kube::reconcile_fleet;
use switchyard_kubelet::rbac::{self, Rbac, ServiceAccount};
use switchyard_kubelet::{Images, Kubelet, KubeletConfig};
use switchyard_testbed::ServerKind;

const MEMBERS: [&str; 3] = ["shard-a", "shard-b", "shard-c"];
const FLEET: &str = "shards";
const READY_WITHIN: Duration = Duration::from_secs(150);
const FLEET_WITHIN: Duration = Duration::from_secs(120);
const RECONCILE_EVERY: Duration = Duration::from_millis(250);

/// The operator: every cluster of the namespace, then every fleet, in a loop until aborted.
async fn operate(ctx: Arc<Context>, log: Arc<Log>) {
    let clusters: Api<MySQLCluster> = Api::namespaced(ctx.client.clone(), NS);
    let fleets: Api<MySQLFleet> = Api::namespaced(ctx.client.clone(), NS);
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut errors = Vec::new();
        if let Ok(list) = clusters.list(&ListParams::default()).await {
            for c in list.items {
                let name = c.name_any();
                if let Err(e) = reconcile(Arc::new(c), ctx.clone()).await {
                    errors.push((name, format!("reconcile failed ({}): {e}", e.category())));
                }
            }
        }
        if let Ok(list) = fleets.list(&ListParams::default()).await {
            for f in list.items {
                let name = f.name_any();
                if let Err(e) = reconcile_fleet(Arc::new(f), ctx.clone()).await {
                    errors.push((
                        name,
                        format!("fleet reconcile failed ({}): {e}", e.category()),
                    ));
                }
            }
        }
        for (name, text) in errors {
            if last.get(&name) != Some(&text) {
                log.say("operator", format!("{name}: {text}"));
                last.insert(name, text);
            }
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

async fn connect(api: &Client, kubelet: &Kubelet, cluster: &str) -> MySqlConnection {
    let secrets: Api<Secret> = Api::namespaced(api.clone(), NS);
    let secret = secrets
        .get(&format!("{cluster}-credentials"))
        .await
        .expect("the credentials Secret");
    let creds = credentials::from_secret(&secret).expect("usable credentials");
    let ip = kubelet
        .addresses()
        .of(NS, &format!("{cluster}-0"))
        .expect("an address");
    let options = MySqlConnectOptions::new()
        .host(&ip.to_string())
        .port(MYSQL_PORT)
        .username(&creds.operator_user)
        .password(&creds.operator_password)
        .ssl_mode(MySqlSslMode::Preferred);
    MySqlConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("connect to {cluster}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_clusters_rolls_a_canary_then_the_rest_on_real_servers() {
    let _slots = switchyard_testbed::slots::acquire(MEMBERS.len())
        .await
        .expect("server slots");
    let log = Log::new("kube-e2e-fleet.log");
    let version = common::server_version(ServerKind::Mariadb1011).await;

    let api = ClientBuilder::new()
        .with_resource::<MySQLCluster>()
        .with_status_subresource::<MySQLCluster>()
        .with_resource::<SchemaChange>()
        .with_status_subresource::<SchemaChange>()
        .with_resource::<MySQLFleet>()
        .with_status_subresource::<MySQLFleet>()
        .with_status_subresource::<Pod>()
        .with_status_subresource::<PersistentVolumeClaim>()
        .build()
        .await
        .expect("a fake API server");
    let (operator_client, recorder) = rbac::record(api.clone());
    let kubelet = Kubelet::start(
        api.clone(),
        KubeletConfig {
            images: Images::new().operator(OPERATOR_IMAGE, env!("CARGO_BIN_EXE_switchyard")),
            namespaces: Some(vec![NS.to_owned()]),
            probe_period_cap: Some(Duration::from_secs(1)),
            ..KubeletConfig::default()
        },
    )
    .await
    .expect("the simulated kubelet (needs root, iproute2 and util-linux)");
    let addresses = kubelet.addresses();
    let resolver: Resolver = Arc::new(move |names: &switchyard_kube::names::Names, n| {
        let ip = addresses
            .of(&names.namespace, &names.pod(n))
            .expect("a free address on the pod network");
        (ip.to_string(), MYSQL_PORT)
    });
    let ctx = Arc::new(Context {
        client: operator_client.clone(),
        ops: Arc::new(MysqlOpsFactory::new()),
        resolver,
        clock: system_clock(),
        recorder: EventRecorder::new(
            operator_client.clone(),
            Reporter {
                controller: "switchyard".into(),
                instance: Some("e2e".into()),
            },
        ),
        metrics: Arc::new(Metrics::new()),
        tenure: None,
        agent_image: OPERATOR_IMAGE.into(),
    });
    let operator = tokio::spawn(operate(ctx, log.clone()));

    // Three one-instance clusters.
    let clusters: Api<MySQLCluster> = Api::namespaced(api.clone(), NS);
    for name in MEMBERS {
        let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
            "flavor": "mariadb",
            "version": version,
            "replicas": 1,
            "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "config": {"innodb_buffer_pool_size": "67108864"},
        }))
        .expect("a spec");
        let mut c = MySQLCluster::new(name, spec);
        c.metadata.namespace = Some(NS.into());
        clusters
            .create(&PostParams::default(), &c)
            .await
            .expect("create a cluster");
    }
    log.say("test", "creating three one-instance clusters");
    until(READY_WITHIN, "every cluster Ready", async || {
        let mut not = Vec::new();
        for name in MEMBERS {
            let c = clusters.get(name).await.expect("a cluster");
            let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
            if phase != "Ready" {
                not.push(format!("{name}: {phase}"));
            }
        }
        if not.is_empty() {
            Ok(())
        } else {
            Err(not.join(", "))
        }
    })
    .await;
    log.say("test", "every cluster Ready");

    // The fleet.
    let fleets: Api<MySQLFleet> = Api::namespaced(api.clone(), NS);
    let mut fleet = MySQLFleet::new(
        FLEET,
        MySQLFleetSpec {
            clusters: MEMBERS.iter().map(|m| (*m).to_owned()).collect(),
            selector: None,
            config: [("max_connections".to_owned(), "321".to_owned())].into(),
            canary: 1,
            max_at_once: 2,
            bake: "3s".into(),
            max_lag_seconds: 10,
            version: None,
            schema: None,
        },
    );
    fleet.metadata.namespace = Some(NS.into());
    fleets
        .create(&PostParams::default(), &fleet)
        .await
        .expect("create the fleet");
    let mut last = String::new();
    let done = until(FLEET_WITHIN, "the fleet Done", async || {
        let f = fleets.get(FLEET).await.expect("the fleet");
        let s = f.status.clone().unwrap_or_default();
        let seen = format!(
            "{:?} {:?}: {}",
            s.phase,
            s.message,
            s.members
                .iter()
                .map(|m| format!("{}={}", m.name, m.state))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if seen != last {
            log.say("fleet", &seen);
            last = seen.clone();
        }
        if s.phase.as_deref() == Some("Done") {
            Ok(f)
        } else {
            Err(seen)
        }
    })
    .await;

    let record = done.status.unwrap().record.expect("the record");
    assert_eq!(record.waves, [vec!["shard-a"], vec!["shard-b", "shard-c"]]);
    let revision = record.current().expect("a revision");
    let at: BTreeMap<&str, (u64, u64)> = revision
        .rolled
        .iter()
        .map(|r| (r.cluster.as_str(), (r.started.0, r.done.expect("done").0)))
        .collect();
    assert!(
        at["shard-a"].1 - at["shard-a"].0 >= 3000,
        "the canary baked"
    );
    assert!(at["shard-b"].0 >= at["shard-a"].1 && at["shard-c"].0 >= at["shard-a"].1);
    for name in MEMBERS {
        let mut conn = connect(&api, &kubelet, name).await;
        assert_eq!(
            scalar(&mut conn, "SELECT @@global.max_connections").await,
            "321",
            "{name}"
        );
        let patches = recorder
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.uri.contains(&format!("/mysqlclusters/{name}?")))
            .count();
        assert_eq!(patches, 1, "{name} changed once");
    }
    log.say(
        "test",
        "every server runs max_connections=321; each member patched once",
    );

    // Revision 2: a value the canary's server refuses (not a number): its own reconcile
    // refuses the change, the fleet stops on it with that reason, and the second wave is never
    // changed.
    let mut conflicts = 0;
    loop {
        let mut f = fleets.get(FLEET).await.expect("the fleet");
        f.spec.config = [("max_connections".to_owned(), "lots".to_owned())].into();
        f.spec.bake = "60s".into();
        f.metadata.managed_fields = None;
        match fleets.replace(FLEET, &PostParams::default(), &f).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && conflicts < 20 => conflicts += 1,
            Err(e) => panic!("edit the fleet: {e:?}"),
        }
    }
    let state_of = |f: &MySQLFleet, name: &str| {
        f.status
            .as_ref()
            .and_then(|s| s.members.iter().find(|m| m.name == name))
            .map(|m| m.state.clone())
            .unwrap_or_default()
    };
    let mut seen_a = String::new();
    let stopped = until(FLEET_WITHIN, "the fleet Stopped", async || {
        let a = clusters.get("shard-a").await.expect("shard-a");
        let s = a.status.clone().unwrap_or_default();
        let now_a = format!(
            "phase {:?} gen {:?}/{:?} {}",
            s.phase,
            s.observed_generation,
            a.metadata.generation,
            s.conditions
                .iter()
                .map(|c| format!("{}={}({})", c.type_, c.status, c.reason))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if now_a != seen_a {
            log.say("shard-a", &now_a);
            seen_a = now_a;
        }
        let f = fleets.get(FLEET).await.expect("the fleet");
        let s = f.status.clone().unwrap_or_default();
        if s.phase.as_deref() == Some("Stopped") {
            Ok(f)
        } else {
            Err(format!("{:?}", s.message))
        }
    })
    .await;
    let status = stopped.status.clone().unwrap();
    let message = status.message.clone().unwrap_or_default();
    log.say("test", format!("stopped: {message}"));
    assert!(message.contains("stopped on cluster shard-a"), "{message}");
    let stop = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stopped")
        .expect("the Stopped condition");
    assert_eq!(
        (stop.status.as_str(), stop.reason.as_str()),
        ("True", "Halted")
    );
    assert!(message.contains("\"lots\" is not an integer"), "{message}");
    assert_eq!(state_of(&stopped, "shard-b"), "pending");
    assert_eq!(state_of(&stopped, "shard-c"), "pending");
    assert_eq!(status.record.as_ref().unwrap().revisions.len(), 2);
    for name in ["shard-b", "shard-c"] {
        let mut conn = connect(&api, &kubelet, name).await;
        assert_eq!(
            scalar(&mut conn, "SELECT @@global.max_connections").await,
            "321",
            "{name}"
        );
        let patches = recorder
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.uri.contains(&format!("/mysqlclusters/{name}?")))
            .count();
        assert_eq!(patches, 1, "{name} not changed by revision 2");
    }

    operator.abort();
    let _ = operator.await;
    let rbac_file = common::workspace().join("deploy/rbac.yaml");
    let rbac = Rbac::load(&rbac_file).expect("deploy/rbac.yaml");
    let denied = rbac.check(
        &ServiceAccount {
            namespace: "switchyard-system".into(),
            name: "switchyard".into(),
        },
        &recorder.requests(),
    );
    assert!(
        denied.is_empty(),
        "{} denies what the operator did:\n{}",
        rbac_file.display(),
        denied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let index = kubelet.subnet_index();
    kubelet.shutdown().await;
    let left = switchyard_kubelet::leftovers(index);
    assert!(left.is_empty(), "the kubelet left {left:?}");
}
