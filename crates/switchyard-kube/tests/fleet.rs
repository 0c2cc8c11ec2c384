//! `MySQLFleet` against the fake API server: a fleet of three member clusters rolls a canary
//! wave, bakes, then the rest; a member whose status turns unhealthy after its change fails its
//! bake and stops the fleet with the reason, no further member changed (until a person
//! resumes, skipping it); an operator restarted every round (and stopped between recording a
//! start and patching the member) resumes without patching a member twice; bad input (an
//! unknown member, a member of two fleets, a selector that matches nothing, a variable the
//! operator owns) sets `InvalidSpec` and changes nothing. Every request the fleet controller
//! made is allowed by `deploy/rbac.yaml`.
//!
//! Known limit: the members' own operator is played by the test ([`Fleet::member_operator`]):
//! it reacts to a new generation of a member's spec as the `MySQLCluster` reconcile's status
//! does (a new update revision, then the current revision reaching it, `Available`), and the
//! test says when a member turns unhealthy. The fleet reads nothing but those statuses, so this
//! proves the fleet's side; the cluster reconcile's statuses are proven by the other tests of
//! this crate. The double of the instance operations keys instances by ordinal only, so it
//! cannot run three clusters' reconciles side by side.

#[allow(dead_code, reason = "the shared support serves several test files")]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use kube_fake_client::interceptor::Funcs;
use switchyard_kube::context::Context;
use switchyard_kube::crd::{
    FleetSchema, InstanceStatus, MySQLCluster, MySQLClusterStatus, MySQLFleet, MySQLFleetSpec,
    Revisions, SchemaChange, SchemaChangeStatus,
};
use switchyard_kube::fleet::{ANNOTATION_FLEET_COMMAND, FLEET_FIELD_MANAGER};
use switchyard_kube::reconcile_fleet;
use switchyard_kubelet::rbac::{Rbac, Recorder, ServiceAccount, record};
use switchyard_plan::fleet::FleetRecord;

use common::{NS, spec};

const MEMBERS: [&str; 3] = ["shard-a", "shard-b", "shard-c"];
const FLEET: &str = "shards";
const TICK: Duration = Duration::from_secs(10);
const BAKE_SECONDS: u64 = 60;

fn time(ms: u64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap()).unwrap())
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: time(0),
    }
}

/// A healthy member of two instances at revision 1, labelled `tier=shards`.
fn member(name: &str) -> MySQLCluster {
    let mut spec = spec("mariadb", "10.11.14", 2);
    spec.config.insert("max_connections".into(), "151".into());
    let mut c = MySQLCluster::new(name, spec);
    c.metadata.namespace = Some(NS.into());
    c.metadata.generation = Some(1);
    c.metadata.labels = Some([("tier".to_owned(), "shards".to_owned())].into());
    c.status = Some(MySQLClusterStatus {
        observed_generation: Some(1),
        phase: Some("Ready".into()),
        conditions: vec![
            condition(
                "Available",
                true,
                "PrimaryWritable",
                "instance 0 takes writes",
            ),
            condition("Degraded", false, "AllHealthy", ""),
            condition("Halted", false, "NotHalted", ""),
        ],
        revisions: Some(Revisions {
            current: Some(1),
            update: Some(1),
            history: vec![],
        }),
        instances: vec![
            InstanceStatus {
                ordinal: 0,
                role: "primary".into(),
                ready: true,
                ..InstanceStatus::default()
            },
            InstanceStatus {
                ordinal: 1,
                role: "replica".into(),
                ready: true,
                lag_seconds: Some(0),
                ..InstanceStatus::default()
            },
        ],
        ..MySQLClusterStatus::default()
    });
    c
}

fn fleet_spec(clusters: &[&str], canary: i32, max_at_once: i32) -> MySQLFleetSpec {
    MySQLFleetSpec {
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
        selector: None,
        config: [("max_connections".to_owned(), "300".to_owned())].into(),
        canary,
        max_at_once,
        bake: format!("{BAKE_SECONDS}s"),
        max_lag_seconds: 10,
        version: None,
        schema: None,
    }
}

fn fleet(name: &str, spec: MySQLFleetSpec) -> MySQLFleet {
    let mut f = MySQLFleet::new(name, spec);
    f.metadata.namespace = Some(NS.into());
    f
}

/// The fake API with the three members and `fleets`, the fleet controller's requests recorded.
struct Fleet {
    /// The test's own client (the members' operator, a person): not recorded.
    raw: Client,
    /// The fleet controller's requests.
    recorder: Recorder,
    recorded: Client,
    clock: Arc<AtomicU64>,
    ctx: Arc<Context>,
    /// A new operator process (a new context) for every reconcile.
    restart_each_round: bool,
    /// Members whose status turns unhealthy once their rollout reaches the new revision.
    unhealthy_after_change: Mutex<Vec<String>>,
}

impl Fleet {
    async fn new(fleets: Vec<MySQLFleet>, funcs: Option<Funcs>) -> Fleet {
        let mut builder = ClientBuilder::new()
            .with_resource::<MySQLCluster>()
            .with_status_subresource::<MySQLCluster>()
            .with_resource::<MySQLFleet>()
            .with_status_subresource::<MySQLFleet>()
            .with_resource::<SchemaChange>()
            .with_status_subresource::<SchemaChange>();
        for name in MEMBERS {
            builder = builder.with_object(member(name));
        }
        for f in fleets {
            builder = builder.with_object(f);
        }
        if let Some(funcs) = funcs {
            builder = builder.with_interceptor_funcs(funcs);
        }
        let raw = builder.build().await.expect("a fake API");
        let (recorded, recorder) = record(raw.clone());
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let ctx = common::context(&recorded, &clock);
        Fleet {
            raw,
            recorder,
            recorded,
            clock,
            ctx,
            restart_each_round: false,
            unhealthy_after_change: Mutex::new(Vec::new()),
        }
    }

    fn clusters(&self) -> Api<MySQLCluster> {
        Api::namespaced(self.raw.clone(), NS)
    }

    fn fleets(&self) -> Api<MySQLFleet> {
        Api::namespaced(self.raw.clone(), NS)
    }

    async fn fleet(&self, name: &str) -> MySQLFleet {
        self.fleets().get(name).await.expect("the fleet")
    }

    async fn member(&self, name: &str) -> MySQLCluster {
        self.clusters().get(name).await.expect("the member")
    }

    async fn max_connections(&self, name: &str) -> String {
        self.member(name).await.spec.config["max_connections"].clone()
    }

    fn record(f: &MySQLFleet) -> FleetRecord {
        f.status
            .as_ref()
            .and_then(|s| s.record.clone())
            .unwrap_or_default()
    }

    /// One reconcile of fleet `name`, as the controller would run it.
    async fn reconcile(&self, name: &str) -> Result<(), switchyard_kube::Error> {
        let f = self.fleet(name).await;
        let ctx = if self.restart_each_round {
            common::context(&self.recorded, &self.clock)
        } else {
            self.ctx.clone()
        };
        reconcile_fleet(Arc::new(f), ctx).await.map(drop)
    }

    /// Plays member `name`'s own operator for one reconcile: a new generation of its spec
    /// gets a new update revision (`Upgrading`); at the next one the rollout finishes (the
    /// current revision reaches it, `Ready`), and a member listed in
    /// `unhealthy_after_change` then reports a replica down (`Degraded`).
    async fn member_operator(&self, name: &str) {
        let mut c = self.member(name).await;
        let status = c.status.as_mut().expect("a member status");
        let revisions = status.revisions.as_mut().expect("revisions");
        if status.observed_generation != c.metadata.generation {
            status.observed_generation = c.metadata.generation;
            revisions.update = revisions.update.map(|u| u + 1);
            status.phase = Some("Upgrading".into());
        } else if revisions.update != revisions.current {
            revisions.current = revisions.update;
            status.phase = Some("Ready".into());
            if self
                .unhealthy_after_change
                .lock()
                .unwrap()
                .iter()
                .any(|u| u == name)
            {
                let degraded = status
                    .conditions
                    .iter_mut()
                    .find(|c| c.type_ == "Degraded")
                    .unwrap();
                *degraded = condition("Degraded", true, "InstanceUnhealthy", "instance 1 is down");
                status.instances[1].ready = false;
                status.phase = Some("Degraded".into());
            }
        } else {
            return;
        }
        c.metadata.managed_fields = None;
        self.clusters()
            .replace_status(name, &PostParams::default(), &c)
            .await
            .expect("the member's status");
    }

    /// One round: the fleet reconciles, each member's operator reconciles, time passes.
    async fn round(&self, name: &str) -> Result<(), switchyard_kube::Error> {
        let result = self.reconcile(name).await;
        for m in MEMBERS {
            self.member_operator(m).await;
        }
        self.clock
            .fetch_add(u64::try_from(TICK.as_millis()).unwrap(), Ordering::SeqCst);
        result
    }

    /// Rounds until the fleet's phase is `phase`, at most `max`; returns the rounds taken.
    async fn run_until(&self, name: &str, phase: &str, max: usize) -> usize {
        for n in 1..=max {
            self.round(name).await.expect("a fleet reconcile");
            let f = self.fleet(name).await;
            if f.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
                return n;
            }
        }
        let f = self.fleet(name).await;
        panic!(
            "phase {phase} not reached in {max} rounds: {}",
            serde_json::to_string_pretty(&f.status).unwrap()
        );
    }

    /// The fleet controller's patches of member `name`'s spec.
    fn patches_of(&self, name: &str) -> usize {
        self.recorder
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.uri.contains(&format!("/mysqlclusters/{name}?")))
            .count()
    }

    /// Every request of the fleet controller is allowed by deploy/rbac.yaml.
    fn assert_rbac_allows_everything(&self) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac.yaml");
        let rbac = Rbac::load(&file).expect("deploy/rbac.yaml");
        let operator = ServiceAccount {
            namespace: "switchyard-system".into(),
            name: "switchyard".into(),
        };
        let requests = self.recorder.requests();
        assert!(!requests.is_empty());
        let denied = rbac.check(&operator, &requests);
        assert!(
            denied.is_empty(),
            "deploy/rbac.yaml denies what the fleet controller did:\n{}",
            denied
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    async fn event_reasons(&self) -> Vec<String> {
        let events: Api<K8sEvent> = Api::namespaced(self.raw.clone(), NS);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn fleet_condition(f: &MySQLFleet, type_: &str) -> Option<(String, String, String)> {
    f.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn members_state(f: &MySQLFleet) -> BTreeMap<String, (u32, String)> {
    f.status
        .as_ref()
        .map(|s| {
            s.members
                .iter()
                .map(|m| (m.name.clone(), (m.wave, m.state.clone())))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_fleet_rolls_a_canary_wave_bakes_then_rolls_the_rest() {
    let mut spec = fleet_spec(&[], 1, 2);
    spec.selector = Some(LabelSelector {
        match_labels: Some([("tier".to_owned(), "shards".to_owned())].into()),
        match_expressions: None,
    });
    let w = Fleet::new(vec![fleet(FLEET, spec)], None).await;

    // The canary is the only member changed until it has baked.
    let mut canary_done_at = None;
    let mut rounds = 0;
    while canary_done_at.is_none() {
        w.round(FLEET).await.expect("a fleet reconcile");
        rounds += 1;
        assert!(rounds < 30, "the canary never finished");
        let f = w.fleet(FLEET).await;
        if members_state(&f)["shard-a"].1 == "done" {
            canary_done_at = Some(w.clock.load(Ordering::SeqCst));
        } else {
            for other in ["shard-b", "shard-c"] {
                assert_eq!(
                    w.max_connections(other).await,
                    "151",
                    "{other} changed before the canary baked: {:?}",
                    members_state(&f)
                );
            }
        }
    }
    w.run_until(FLEET, "Done", 30).await;

    let f = w.fleet(FLEET).await;
    let status = f.status.clone().unwrap();
    assert_eq!(
        members_state(&f),
        [
            ("shard-a".to_owned(), (0, "done".to_owned())),
            ("shard-b".to_owned(), (1, "done".to_owned())),
            ("shard-c".to_owned(), (1, "done".to_owned())),
        ]
        .into()
    );
    assert_eq!(status.revision, Some(1));
    assert_eq!(status.change.as_deref(), Some("max_connections=300"));
    assert_eq!(fleet_condition(&f, "Complete").unwrap().0, "True");
    assert_eq!(fleet_condition(&f, "Progressing").unwrap().0, "False");
    let record = Fleet::record(&f);
    assert_eq!(record.waves, [vec!["shard-a"], vec!["shard-b", "shard-c"]]);
    let revision = record.current().unwrap();
    let rolled: BTreeMap<&str, _> = revision
        .rolled
        .iter()
        .map(|r| (r.cluster.as_str(), (r.started.0, r.done.unwrap().0)))
        .collect();
    let (a_started, a_done) = rolled["shard-a"];
    let (b_started, b_done) = rolled["shard-b"];
    let (c_started, c_done) = rolled["shard-c"];
    // The canary baked for the whole bake before the second wave started.
    assert!(a_done - a_started >= BAKE_SECONDS * 1000);
    assert!(b_started >= a_done && c_started >= a_done);
    // The second wave's two members changed at once (at most 2), each baked.
    assert!(c_started < b_done && b_started < c_done);
    assert!(b_done - b_started >= BAKE_SECONDS * 1000);
    for m in MEMBERS {
        assert_eq!(w.max_connections(m).await, "300", "{m}");
        assert_eq!(w.patches_of(m), 1, "{m} patched once");
        let managers: Vec<String> = w
            .recorder
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.uri.contains(&format!("/mysqlclusters/{m}?")))
            .map(|r| r.uri.clone())
            .collect();
        assert!(
            managers[0].contains(&format!("fieldManager={FLEET_FIELD_MANAGER}")),
            "{managers:?}"
        );
    }
    let reasons = w.event_reasons().await;
    assert!(reasons.iter().any(|r| r == "FleetDone"), "{reasons:?}");
    w.assert_rbac_allows_everything();
}

#[tokio::test]
async fn a_failing_bake_stops_the_fleet_with_the_reason_and_changes_no_other_member() {
    let w = Fleet::new(vec![fleet(FLEET, fleet_spec(&MEMBERS, 1, 1))], None).await;
    w.unhealthy_after_change
        .lock()
        .unwrap()
        .push("shard-b".into());
    w.run_until(FLEET, "Stopped", 40).await;

    let f = w.fleet(FLEET).await;
    let (status, reason, message) = fleet_condition(&f, "Stopped").expect("Stopped");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ReplicationStopped")
    );
    assert!(
        message.contains("shard-b")
            && message.contains("Degraded (InstanceUnhealthy): instance 1 is down"),
        "{message}"
    );
    let states = members_state(&f);
    assert_eq!(states["shard-a"].1, "done");
    assert_eq!(states["shard-b"].1, "stopped");
    assert_eq!(states["shard-c"].1, "pending");
    // However long it waits, the next member is never changed.
    for _ in 0..(3 * BAKE_SECONDS / TICK.as_secs()) {
        w.round(FLEET).await.expect("a fleet reconcile");
    }
    assert_eq!(w.max_connections("shard-c").await, "151");
    assert_eq!(w.patches_of("shard-c"), 0);
    let f = w.fleet(FLEET).await;
    assert_eq!(f.status.as_ref().unwrap().phase.as_deref(), Some("Stopped"));
    assert!(w.event_reasons().await.iter().any(|r| r == "FleetStopped"));

    // A plain resume is refused while the member is unhealthy; nothing starts.
    let annotate = |value: &'static str| {
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_FLEET_COMMAND: value}}});
        let api = w.fleets();
        async move {
            api.patch(FLEET, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("annotate");
        }
    };
    annotate("resume").await;
    w.round(FLEET).await.expect("a fleet reconcile");
    w.round(FLEET).await.expect("a fleet reconcile");
    let f = w.fleet(FLEET).await;
    assert_eq!(f.status.as_ref().unwrap().phase.as_deref(), Some("Stopped"));
    assert!(
        !f.annotations().contains_key(ANNOTATION_FLEET_COMMAND),
        "consumed"
    );
    assert_eq!(w.patches_of("shard-c"), 0);
    assert!(
        w.event_reasons()
            .await
            .iter()
            .any(|r| r == "CommandRefused")
    );

    // Resuming past it (a person's decision) rolls the rest.
    annotate("resume skip=shard-b").await;
    w.run_until(FLEET, "Done", 30).await;
    let f = w.fleet(FLEET).await;
    assert_eq!(members_state(&f)["shard-b"].1, "skipped");
    assert_eq!(w.max_connections("shard-c").await, "300");
    w.assert_rbac_allows_everything();
}

#[tokio::test]
async fn a_halted_member_stops_the_fleet_with_its_halt_reason() {
    let w = Fleet::new(vec![fleet(FLEET, fleet_spec(&MEMBERS, 1, 1))], None).await;
    // The canary gets the change; its own rollout then halts.
    w.reconcile(FLEET).await.expect("plan");
    w.reconcile(FLEET).await.expect("start the canary");
    assert_eq!(w.max_connections("shard-a").await, "300");
    let mut c = w.member("shard-a").await;
    let status = c.status.as_mut().unwrap();
    status.observed_generation = c.metadata.generation;
    status.revisions.as_mut().unwrap().update = Some(2);
    for cond in &mut status.conditions {
        if cond.type_ == "Halted" {
            *cond = condition(
                "Halted",
                true,
                "RepeatedFailure",
                "instance 1 keeps failing to start",
            );
        }
    }
    c.metadata.managed_fields = None;
    w.clusters()
        .replace_status("shard-a", &PostParams::default(), &c)
        .await
        .unwrap();
    w.reconcile(FLEET).await.expect("a fleet reconcile");
    let f = w.fleet(FLEET).await;
    let (status, reason, message) = fleet_condition(&f, "Stopped").expect("Stopped");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Halted"));
    assert!(
        message.contains("shard-a") && message.contains("instance 1 keeps failing to start"),
        "{message}"
    );
    assert_eq!(w.patches_of("shard-b") + w.patches_of("shard-c"), 0);
}

#[tokio::test]
async fn an_operator_restarted_mid_fleet_resumes_without_patching_a_member_twice() {
    // The first patch of shard-b fails: the operator "died" after recording its start and
    // before patching it.
    let failed_once = Arc::new(Mutex::new(false));
    let seen = failed_once.clone();
    let funcs = Funcs::new().patch(move |ctx| {
        let mut failed = seen.lock().unwrap();
        if ctx.name == "shard-b" && !*failed {
            *failed = true;
            return Err(kube_fake_client::Error::Internal(
                "the operator died".into(),
            ));
        }
        Ok(None)
    });
    let mut w = Fleet::new(vec![fleet(FLEET, fleet_spec(&MEMBERS, 1, 1))], Some(funcs)).await;
    w.restart_each_round = true;
    let mut failures = 0;
    for _ in 0..60 {
        if w.round(FLEET).await.is_err() {
            failures += 1;
        }
        let f = w.fleet(FLEET).await;
        if f.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Done") {
            break;
        }
    }
    assert!(*failed_once.lock().unwrap());
    assert_eq!(failures, 1, "only the interrupted start failed");
    let f = w.fleet(FLEET).await;
    assert_eq!(f.status.as_ref().unwrap().phase.as_deref(), Some("Done"));
    // Each member's spec was patched once; shard-b's start was given again after the failure.
    assert_eq!(w.patches_of("shard-a"), 1);
    assert_eq!(w.patches_of("shard-b"), 2);
    assert_eq!(w.patches_of("shard-c"), 1);
    let record = Fleet::record(&f);
    assert_eq!(record.revisions.len(), 1, "one fleet revision");
    let rolled: Vec<&str> = record.revisions[0]
        .rolled
        .iter()
        .map(|r| r.cluster.as_str())
        .collect();
    assert_eq!(rolled, MEMBERS, "each member started once, in order");
    for m in MEMBERS {
        assert_eq!(w.max_connections(m).await, "300");
    }
}

/// Reconciles fleet `name` a few rounds and asserts it is refused with `reason` naming
/// `naming`, with nothing recorded and no member changed.
async fn assert_refused(w: &Fleet, name: &str, reason: &str, naming: &[&str]) {
    for _ in 0..3 {
        w.round(name).await.expect("a refusal is not an error");
    }
    let f = w.fleet(name).await;
    let (status, got, message) = fleet_condition(&f, "InvalidSpec").expect("InvalidSpec");
    assert_eq!(
        (status.as_str(), got.as_str()),
        ("True", reason),
        "{message}"
    );
    for n in naming {
        assert!(message.contains(n), "{message} names {n}");
    }
    let status = f.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Invalid"));
    assert_eq!(status.record, None, "nothing recorded");
    for m in MEMBERS {
        assert_eq!(w.patches_of(m), 0, "{m} untouched");
        assert_eq!(w.max_connections(m).await, "151");
        assert_eq!(w.member(m).await.metadata.generation, Some(1));
    }
    assert!(w.event_reasons().await.iter().any(|r| r == "InvalidSpec"));
}

#[tokio::test]
async fn bad_input_sets_a_condition_and_changes_nothing() {
    let unknown = Fleet::new(
        vec![fleet(FLEET, fleet_spec(&["shard-a", "shard-x"], 1, 1))],
        None,
    )
    .await;
    assert_refused(
        &unknown,
        FLEET,
        "UnknownMember",
        &["shard-x", "spec.clusters"],
    )
    .await;

    let shared = Fleet::new(
        vec![
            fleet(FLEET, fleet_spec(&["shard-a", "shard-b"], 1, 1)),
            fleet("other", fleet_spec(&["shard-b"], 1, 1)),
        ],
        None,
    )
    .await;
    assert_refused(&shared, FLEET, "SharedMember", &["shard-b", "other"]).await;

    let mut nothing = fleet_spec(&[], 1, 1);
    nothing.selector = Some(LabelSelector {
        match_labels: Some([("tier".to_owned(), "nothing".to_owned())].into()),
        match_expressions: None,
    });
    let empty = Fleet::new(vec![fleet(FLEET, nothing)], None).await;
    assert_refused(&empty, FLEET, "EmptyFleet", &["no cluster"]).await;

    let mut owned = fleet_spec(&MEMBERS, 1, 1);
    owned.config = [("read_only".to_owned(), "OFF".to_owned())].into();
    let owned = Fleet::new(vec![fleet(FLEET, owned)], None).await;
    assert_refused(&owned, FLEET, "Config", &["read_only", "owns"]).await;

    let canary = Fleet::new(vec![fleet(FLEET, fleet_spec(&MEMBERS, 2, 1))], None).await;
    assert_refused(&canary, FLEET, "CanaryLargerThanMaxAtOnce", &["canary"]).await;

    // MariaDB supports no in-place downgrade: refused for the first member, before any.
    let mut older = fleet_spec(&MEMBERS, 1, 1);
    older.config.clear();
    older.version = Some("10.5.29".into());
    let older = Fleet::new(vec![fleet(FLEET, older)], None).await;
    assert_refused(
        &older,
        FLEET,
        "Version",
        &["10.5.29", "shard-a", "10.11.14"],
    )
    .await;
    for m in MEMBERS {
        assert_eq!(older.member(m).await.spec.version, "10.11.14", "{m}");
    }
}

#[tokio::test]
async fn a_fleet_rolls_a_server_version_member_by_member() {
    let mut spec = fleet_spec(&MEMBERS, 1, 2);
    spec.config.clear();
    spec.version = Some("11.8.3".into());
    let w = Fleet::new(vec![fleet(FLEET, spec)], None).await;
    // Until the canary has baked, it alone runs toward the new version.
    for rounds in 1.. {
        assert!(rounds < 30, "the canary never finished");
        w.round(FLEET).await.expect("a fleet reconcile");
        let f = w.fleet(FLEET).await;
        if members_state(&f)["shard-a"].1 == "done" {
            break;
        }
        for other in ["shard-b", "shard-c"] {
            assert_eq!(w.member(other).await.spec.version, "10.11.14", "{other}");
        }
    }
    w.run_until(FLEET, "Done", 30).await;
    let f = w.fleet(FLEET).await;
    assert_eq!(
        f.status.as_ref().and_then(|s| s.change.as_deref()),
        Some("version=11.8.3")
    );
    for m in MEMBERS {
        let member = w.member(m).await;
        assert_eq!(member.spec.version, "11.8.3", "{m}");
        // The version alone changed: the member's variables are its own.
        assert_eq!(w.max_connections(m).await, "151", "{m}");
        assert_eq!(w.patches_of(m), 1, "{m} patched once");
    }
    w.assert_rbac_allows_everything();
}

const ALTER: &str = "ALTER TABLE shop.orders ADD COLUMN note TEXT";

fn schema_fleet(max_at_once: i32) -> MySQLFleetSpec {
    let mut spec = fleet_spec(&MEMBERS, 1, max_at_once);
    spec.config.clear();
    spec.schema = Some(FleetSchema {
        statement: ALTER.into(),
        force: false,
        accepted_risk: None,
    });
    spec
}

impl Fleet {
    fn schema_changes(&self) -> Api<SchemaChange> {
        Api::namespaced(self.raw.clone(), NS)
    }

    /// Every SchemaChange, by the member it is for.
    async fn schema_changes_by_member(&self) -> BTreeMap<String, SchemaChange> {
        self.schema_changes()
            .list(&ListParams::default())
            .await
            .expect("the schema changes")
            .items
            .into_iter()
            .map(|sc| (sc.spec.cluster_ref.clone(), sc))
            .collect()
    }

    /// Plays the operator's SchemaChange controller for one reconcile: a new change goes
    /// `Progressing`, then `Complete`; one for `refused` is `Refused` by the analyzer.
    async fn schema_operator(&self, refused: Option<&str>) {
        for (member, mut sc) in self.schema_changes_by_member().await {
            let phase = sc.status.as_ref().and_then(|s| s.phase.clone());
            let (next, condition_of) = match (phase.as_deref(), refused == Some(member.as_str())) {
                (None, true) => (
                    "Refused",
                    Some(condition(
                        "Refused",
                        true,
                        "Unsafe",
                        "ADD COLUMN note: a column added in the middle shifts later columns",
                    )),
                ),
                (None, false) => ("Progressing", None),
                (Some("Progressing"), _) => ("Complete", None),
                _ => continue,
            };
            let status = sc.status.get_or_insert_with(SchemaChangeStatus::default);
            status.phase = Some(next.into());
            status.conditions.extend(condition_of);
            sc.metadata.managed_fields = None;
            let name = sc.name_any();
            self.schema_changes()
                .replace_status(&name, &PostParams::default(), &sc)
                .await
                .expect("the schema change's status");
        }
    }

    /// One round of a schema fleet: the fleet reconciles, the SchemaChange controller acts,
    /// time passes.
    async fn schema_round(&self, refused: Option<&str>) {
        self.reconcile(FLEET).await.expect("a fleet reconcile");
        self.schema_operator(refused).await;
        self.clock
            .fetch_add(u64::try_from(TICK.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_fleet_schema_change_creates_one_schema_change_per_member_in_waves() {
    let w = Fleet::new(vec![fleet(FLEET, schema_fleet(2))], None).await;
    for rounds in 1.. {
        assert!(rounds < 30, "the canary never finished");
        w.schema_round(None).await;
        let f = w.fleet(FLEET).await;
        if members_state(&f)["shard-a"].1 == "done" {
            break;
        }
        let created: Vec<String> = w.schema_changes_by_member().await.into_keys().collect();
        assert!(
            created.iter().all(|m| m == "shard-a"),
            "a SchemaChange for {created:?} before the canary baked"
        );
    }
    for rounds in 1.. {
        assert!(rounds < 30, "the fleet never finished");
        w.schema_round(None).await;
        let f = w.fleet(FLEET).await;
        if f.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Done") {
            break;
        }
    }
    let f = w.fleet(FLEET).await;
    assert_eq!(
        f.status.as_ref().and_then(|s| s.change.as_deref()),
        Some(ALTER)
    );
    let created = w.schema_changes_by_member().await;
    assert_eq!(created.len(), MEMBERS.len());
    for m in MEMBERS {
        let sc = &created[m];
        assert_eq!(sc.spec.statement, ALTER);
        assert!(
            sc.name_any().starts_with(&format!("{FLEET}-{m}-")),
            "{}",
            sc.name_any()
        );
        let owner = sc.metadata.owner_references.as_ref().expect("an owner");
        assert_eq!(owner[0].kind, "MySQLFleet");
        assert_eq!(owner[0].name, FLEET);
        // The members' specs are not the fleet's to change for a schema change.
        assert_eq!(w.patches_of(m), 0, "{m}");
    }
    w.assert_rbac_allows_everything();
}

#[tokio::test]
async fn a_member_whose_schema_change_the_analyzer_refuses_stops_the_fleet() {
    let w = Fleet::new(vec![fleet(FLEET, schema_fleet(1))], None).await;
    for rounds in 1.. {
        assert!(rounds < 40, "the fleet never stopped");
        w.schema_round(Some("shard-b")).await;
        let f = w.fleet(FLEET).await;
        if f.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Stopped") {
            break;
        }
    }
    let f = w.fleet(FLEET).await;
    let (status, _, message) = fleet_condition(&f, "Stopped").expect("Stopped");
    assert_eq!(status, "True");
    assert!(
        message.contains("shard-b") && message.contains("a column added in the middle"),
        "{message}"
    );
    let created = w.schema_changes_by_member().await;
    assert!(!created.contains_key("shard-c"), "a later wave was started");
    assert_eq!(members_state(&f)["shard-a"].1, "done");

    // A schema change rolls alone.
    let mut mixed = schema_fleet(1);
    mixed.version = Some("11.8.3".into());
    let mixed = Fleet::new(vec![fleet(FLEET, mixed)], None).await;
    assert_refused(&mixed, FLEET, "Schema", &["alone", "spec.version"]).await;
}
