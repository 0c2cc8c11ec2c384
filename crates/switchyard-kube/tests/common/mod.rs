//! Shared test support: a fake API server, a test kubelet that runs the pods the operator
//! creates (playing their agents: initialize, provision, start), and the instance-operations
//! test double.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateRunning, ContainerStatus, PersistentVolumeClaim, Pod,
    PodCondition, PodStatus, Secret,
};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use switchyard_config::{Account, Mutability, Scope, ServerMetadata, ValueType, VariableInfo};
use switchyard_kube::agent::{AgentStatus, InstanceConfig, Provisioning};
use switchyard_kube::context::{Clock, Context, OpsFactory, Resolver};
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec, SchemaChange};
use switchyard_kube::credentials::ClusterCredentials;
use switchyard_kube::leader::Tenure;
use switchyard_kube::metrics::Metrics;
use switchyard_kube::names::{ANNOTATION_VERSION, LABEL_ROLE, Names};
use switchyard_kube::ops::{InstanceOps, InstanceView, OpsError, ReplicationView, Target};
use switchyard_kube::reconcile::reconcile;
use switchyard_plan::Timestamp;
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::versions::{Flavor, ServerVersion, Version};

pub const NS: &str = "db";
pub const NAME: &str = "shop";

/// One instance as the test double reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeInstance {
    pub version: Version,
    pub writable: bool,
    /// Whether the fence the operator asked for holds (set by `fence` and `demote`, gone
    /// with `promote`, `replicate_from` and a start; a test drops it as a server restart or
    /// a lost lock connection would).
    pub fenced: bool,
    pub source: Option<u32>,
    pub running: bool,
    pub down: bool,
    /// The executed GTIDs the test gives the instance (fixture text, echoed back; none of
    /// its flavor until then).
    pub gtid: Option<GtidSet>,
}

/// A Kubernetes-side test double for [`InstanceOps`], NOT a MySQL mock: it has no SQL
/// semantics (no GTID arithmetic, no lag, no read-only rules, no version rules, no failure
/// modes of its own). It records the calls the reconciler makes and echoes requested state
/// back (the instance fenced is reported read-only and fenced, the instance promoted
/// writable, the instance told to replicate from N reports N as its source, the GTIDs a test
/// set are reported as they are, an empty set of the instance's flavor otherwise, the instance that ran a schema change prints the fixture
/// definition the test gave, a global variable reads back as last set, from the fixture
/// table or from [`FakeOps::globals`], else NULL), so that the reconcile tests can follow the
/// Kubernetes side of a rollout. What SQL does is proven by the tests of switchyard-mysql and
/// by the end-to-end tests over real servers.
///
/// It also watches what a test asks it to: the most instances it ever reported writable at
/// once ([`FakeOps::most_writable`]), the pods' role labels when each switchover call
/// arrives ([`FakeOps::watch_labels`]), and an edit of the cluster object it makes right
/// after a promotion took effect ([`FakeOps::edit_after_promote`]).
#[derive(Default)]
pub struct FakeOps {
    pub instances: Mutex<BTreeMap<u32, FakeInstance>>,
    pub calls: Mutex<Vec<String>>,
    /// Global values set online, per instance (cleared when the instance starts again).
    pub globals: Mutex<BTreeMap<u32, BTreeMap<String, String>>>,
    /// Instance -> a variable it refuses to set (as a server started with an option that
    /// forbids it would).
    pub refuse: Mutex<BTreeMap<u32, String>>,
    /// What `accounts` lists.
    pub accounts: Mutex<Vec<Account>>,
    /// Table definitions `show_create_table` prints, per instance: fixture text the test
    /// sets, not a model of the server (`run_ddl` replaces an instance's text with
    /// [`FakeOps::after_ddl`], whatever the statement says).
    pub tables: Mutex<BTreeMap<u32, String>>,
    /// The definition an instance prints after `run_ddl`.
    pub after_ddl: Mutex<String>,
    /// When set, `run_ddl` fails as a server does that cannot run the statement with the
    /// ALGORITHM or LOCK it names (errors 1845/1846), with this message.
    pub refuse_ddl: Mutex<Option<String>>,
    /// Instance -> how long its oldest open transaction has been open, in seconds (fixture).
    pub open_transactions: Mutex<BTreeMap<u32, u64>>,
    /// The most instances reported writable at once, after any call.
    pub most_writable: Mutex<usize>,
    /// When set, the role labels of every pod as each fence, demote and promote begins.
    pub watch_labels: Mutex<Option<Api<Pod>>>,
    /// (call, pod ordinal -> role label) for each call watched.
    pub labels_seen: Mutex<Vec<(String, BTreeMap<u32, String>)>>,
    /// When set, every promotion edits the cluster object right after the instance became
    /// writable (an annotation), as a person or another controller might.
    pub edit_after_promote: Mutex<Option<Api<MySQLCluster>>>,
    /// What each instance's agent reports (`GET /status`), as the test kubelet sets it.
    pub agents: Mutex<BTreeMap<u32, AgentStatus>>,
    /// The operator password each instance accepts, once one was set (any before).
    pub passwords: Mutex<BTreeMap<u32, String>>,
}

/// The variable table the test double describes (a fixture, not a server's rules): name,
/// whether it changes at run time, its type, its default.
fn variable_table() -> Vec<(&'static str, Mutability, ValueType, &'static str)> {
    let int = |min, max| ValueType::Integer { min, max, block: 0 };
    vec![
        (
            "max_connections",
            Mutability::Dynamic,
            int(10, 100_000),
            "151",
        ),
        (
            "long_query_time",
            Mutability::Dynamic,
            ValueType::Double {
                min: 0.0,
                max: Some(31_536_000.0),
                max_exclusive: false,
            },
            "10.000000",
        ),
        (
            "innodb_buffer_pool_size",
            Mutability::Dynamic,
            int(5_242_880, i128::from(i64::MAX)),
            "134217728",
        ),
        (
            "innodb_log_buffer_size",
            Mutability::Static,
            int(262_144, i128::from(u32::MAX)),
            "16777216",
        ),
        (
            "event_scheduler",
            Mutability::Dynamic,
            ValueType::Enum {
                values: vec!["ON".into(), "OFF".into(), "DISABLED".into()],
            },
            "OFF",
        ),
    ]
}

impl FakeOps {
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
    /// Notes how many instances are writable now.
    fn count_writers(&self) {
        let n = self
            .instances
            .lock()
            .unwrap()
            .values()
            .filter(|i| i.writable && !i.down)
            .count();
        let mut most = self.most_writable.lock().unwrap();
        *most = (*most).max(n);
    }
    /// Records the pods' role labels as `call` begins, when a test watches them.
    async fn snapshot_labels(&self, call: &str) {
        let Some(pods) = self.watch_labels.lock().unwrap().clone() else {
            return;
        };
        let list = pods.list(&ListParams::default()).await.unwrap();
        let roles = list
            .items
            .iter()
            .filter_map(|p| {
                let o = p.name_any().rsplit('-').next()?.parse().ok()?;
                Some((o, p.labels().get(LABEL_ROLE)?.clone()))
            })
            .collect();
        self.labels_seen
            .lock()
            .unwrap()
            .push((call.to_owned(), roles));
    }
    /// Sets the executed GTIDs of instance `o` (MariaDB text, `domain-server-seq,...`).
    pub fn set_gtid(&self, o: u32, text: &str) {
        let set = GtidSet::parse(Flavor::Mariadb, text).expect("a GTID position");
        self.instances.lock().unwrap().get_mut(&o).unwrap().gtid = Some(set);
    }
    /// Changes instance `o` as something other than the operator would.
    pub fn set(&self, o: u32, f: impl FnOnce(&mut FakeInstance)) {
        f(self.instances.lock().unwrap().get_mut(&o).unwrap());
    }
    fn with<T>(&self, o: u32, f: impl FnOnce(&mut FakeInstance) -> T) -> Result<T, OpsError> {
        let mut map = self.instances.lock().unwrap();
        match map.get_mut(&o) {
            Some(i) if !i.down => Ok(f(i)),
            _ => Err(OpsError::new("down", true, format!("instance {o} is down"))),
        }
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    pub fn instance(&self, o: u32) -> FakeInstance {
        self.instances.lock().unwrap()[&o].clone()
    }
    /// The global value of `name` on instance `o` as the double reports it.
    pub fn global(&self, o: u32, name: &str) -> Option<String> {
        if let Some(v) = self
            .globals
            .lock()
            .unwrap()
            .get(&o)
            .and_then(|g| g.get(name))
        {
            return Some(v.clone());
        }
        variable_table()
            .into_iter()
            .find(|v| v.0 == name)
            .map(|v| v.3.to_owned())
    }
    pub fn set_down(&self, o: u32, down: bool) {
        if let Some(i) = self.instances.lock().unwrap().get_mut(&o) {
            i.down = down;
        }
    }
    /// Forgets the GTIDs of instance `o` (a new, empty data directory).
    pub fn set_gtid_none(&self, o: u32) {
        if let Some(i) = self.instances.lock().unwrap().get_mut(&o) {
            i.gtid = None;
            i.source = None;
        }
    }
    /// The agent provisioned instance `o` from a donor with `gtid` executed and started
    /// replicating from `source`.
    pub fn provisioned(
        &self,
        o: u32,
        version: Version,
        gtid: Option<GtidSet>,
        source: Option<u32>,
    ) {
        self.globals.lock().unwrap().remove(&o);
        self.instances.lock().unwrap().insert(
            o,
            FakeInstance {
                version,
                writable: false,
                fenced: false,
                source,
                running: source.is_some(),
                down: false,
                gtid,
            },
        );
    }
    /// The kubelet started a server from a pod of `version`: it starts read-only and, with
    /// skip-replica-start, not replicating (its configured source is kept).
    pub fn started(&self, o: u32, version: Version) {
        let mut map = self.instances.lock().unwrap();
        let source = map.get(&o).and_then(|i| i.source);
        // No transactions of its flavor unless the test gave it some.
        let flavor = if version.major >= 10 {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        let gtid = map
            .get(&o)
            .and_then(|i| i.gtid.clone())
            .or_else(|| Some(GtidSet::empty(flavor)));
        self.globals.lock().unwrap().remove(&o);
        map.insert(
            o,
            FakeInstance {
                version,
                writable: false,
                fenced: false,
                source,
                running: false,
                down: false,
                gtid,
            },
        );
    }
}

#[async_trait]
impl InstanceOps for FakeOps {
    async fn observe(&self, t: &Target, _: Option<Instant>) -> Result<InstanceView, OpsError> {
        self.with(t.ordinal, |i| InstanceView {
            version: i.version,
            writable: i.writable,
            fenced: i.fenced,
            replication: i.source.map(|s| ReplicationView {
                source_host: format!("{NAME}-{s}.{NAME}-hosts.{NS}.svc"),
                running: i.running,
                errno: 0,
                error: String::new(),
                lag_seconds: Some(0),
                connected: i.running,
                received: i.gtid.clone(),
            }),
            gtid: i.gtid.clone(),
            ack_replicas: None,
            galera: None,
        })
    }
    async fn set_semi_sync_source(
        &self,
        t: &Target,
        _: Option<u32>,
        _: Instant,
    ) -> Result<(), OpsError> {
        // Not among the calls the tests compare: it has no effect on the fake servers.
        self.with(t.ordinal, |_| ())
    }
    async fn wait_no_long_transaction(
        &self,
        t: &Target,
        max: u64,
        _: Instant,
    ) -> Result<(), OpsError> {
        self.call(format!("no-long-transaction {} max={max}", t.ordinal));
        self.with(t.ordinal, |_| ())?;
        match self.open_transactions.lock().unwrap().get(&t.ordinal) {
            Some(open) if *open > max => Err(OpsError::new(
                "long_transaction",
                true,
                format!(
                    "{}: a transaction has been open {open}s (limit {max}s)",
                    t.pod
                ),
            )),
            _ => Ok(()),
        }
    }
    async fn fence(&self, t: &Target, _: Instant) -> Result<(), OpsError> {
        let call = format!("fence {}", t.ordinal);
        self.snapshot_labels(&call).await;
        self.call(call);
        self.with(t.ordinal, |i| {
            i.writable = false;
            i.fenced = true;
        })
    }
    async fn demote(&self, t: &Target, s: &Target, _: Instant) -> Result<(), OpsError> {
        let call = format!("demote {}->{}", t.ordinal, s.ordinal);
        self.snapshot_labels(&call).await;
        self.call(call);
        self.with(t.ordinal, |i| {
            i.writable = false;
            i.fenced = true;
            i.source = Some(s.ordinal);
            i.running = false;
        })
    }
    async fn wait_caught_up(&self, c: &Target, f: &Target, _: Instant) -> Result<(), OpsError> {
        self.call(format!("wait-caught-up {}<-{}", c.ordinal, f.ordinal));
        self.with(c.ordinal, |_| ())
    }
    async fn promote(&self, t: &Target, _: Instant) -> Result<(), OpsError> {
        let call = format!("promote {}", t.ordinal);
        self.snapshot_labels(&call).await;
        self.call(call);
        self.with(t.ordinal, |i| {
            i.writable = true;
            i.fenced = false;
            i.source = None;
            i.running = false;
        })?;
        self.count_writers();
        let editor = self.edit_after_promote.lock().unwrap().clone();
        if let Some(clusters) = editor {
            let n = self.calls().len().to_string();
            let patch = serde_json::json!({"metadata": {"annotations": {"test/edited": n}}});
            clusters
                .patch(
                    NAME,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .expect("edit the cluster");
        }
        Ok(())
    }
    async fn replicate_from(&self, t: &Target, s: &Target, former: bool) -> Result<(), OpsError> {
        self.call(format!(
            "replicate {}<-{}{}",
            t.ordinal,
            s.ordinal,
            if former { " (former primary)" } else { "" }
        ));
        self.with(t.ordinal, |i| {
            i.writable = false;
            i.fenced = false;
            i.source = Some(s.ordinal);
            i.running = true;
        })
    }
    async fn prepare_shutdown(&self, t: &Target, slow: bool) -> Result<(), OpsError> {
        self.call(format!("prepare-shutdown {} slow={slow}", t.ordinal));
        self.with(t.ordinal, |_| ())
    }
    async fn close_client_connections(&self, t: &Target, _: Instant) -> Result<(), OpsError> {
        self.call(format!("close-clients {}", t.ordinal));
        self.with(t.ordinal, |_| ())
    }
    async fn set_passwords(
        &self,
        t: &Target,
        accounts: &[(String, String)],
    ) -> Result<(), OpsError> {
        let users: Vec<&str> = accounts.iter().map(|(u, _)| u.as_str()).collect();
        self.call(format!("set-passwords {} {}", t.ordinal, users.join(",")));
        self.with(t.ordinal, |_| ())?;
        // Through the primary's binary log: every instance that replicates applies it.
        if let Some((_, password)) = accounts.iter().find(|(u, _)| u == "switchyard") {
            let ordinals: Vec<u32> = self.instances.lock().unwrap().keys().copied().collect();
            let mut passwords = self.passwords.lock().unwrap();
            for o in ordinals {
                passwords.insert(o, password.clone());
            }
        }
        Ok(())
    }
    async fn agent_status(&self, t: &Target) -> Result<AgentStatus, OpsError> {
        self.agents
            .lock()
            .unwrap()
            .get(&t.ordinal)
            .cloned()
            .ok_or_else(|| OpsError::new("agent", true, format!("{}: no agent", t.pod)))
    }
    async fn variable_metadata(
        &self,
        t: &Target,
        _: &[String],
    ) -> Result<ServerMetadata, OpsError> {
        let version = self.with(t.ordinal, |i| i.version)?;
        let flavor = if version.major >= 10 {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        let variables = variable_table()
            .into_iter()
            .map(|(name, mutability, value_type, _)| {
                let info = VariableInfo {
                    name: name.to_owned(),
                    scope: Scope::Global,
                    mutability,
                    value_type,
                    settable: true,
                    global_value: self.global(t.ordinal, name),
                };
                (name.to_owned(), info)
            })
            .collect();
        Ok(ServerMetadata {
            instance: t.pod.clone(),
            version: ServerVersion::new(flavor, version),
            variables,
        })
    }
    async fn set_variables(&self, t: &Target, vars: &[(String, String)]) -> Result<(), OpsError> {
        let list: Vec<String> = vars.iter().map(|(n, v)| format!("{n}={v}")).collect();
        self.call(format!("set-variables {} {}", t.ordinal, list.join(",")));
        self.with(t.ordinal, |_| ())?;
        if let Some(name) = self.refuse.lock().unwrap().get(&t.ordinal)
            && vars.iter().any(|(n, _)| n == name)
        {
            return Err(OpsError::new(
                "refused",
                false,
                format!("{}: the server refused SET GLOBAL {name}", t.pod),
            ));
        }
        let mut globals = self.globals.lock().unwrap();
        let g = globals.entry(t.ordinal).or_default();
        for (n, v) in vars {
            g.insert(n.clone(), v.clone());
        }
        Ok(())
    }
    async fn global_values(
        &self,
        t: &Target,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<String>>, OpsError> {
        self.call(format!("global-values {} {}", t.ordinal, names.join(",")));
        self.with(t.ordinal, |_| ())?;
        Ok(names
            .iter()
            .map(|n| (n.clone(), self.global(t.ordinal, n)))
            .collect())
    }
    async fn accounts(&self, t: &Target) -> Result<Vec<Account>, OpsError> {
        self.with(t.ordinal, |_| ())?;
        Ok(self.accounts.lock().unwrap().clone())
    }
    async fn show_create_table(
        &self,
        t: &Target,
        database: &str,
        table: &str,
    ) -> Result<String, OpsError> {
        self.with(t.ordinal, |_| ())?;
        self.tables
            .lock()
            .unwrap()
            .get(&t.ordinal)
            .cloned()
            .ok_or_else(|| {
                OpsError::new(
                    "statement",
                    false,
                    format!("{}: no table {database}.{table}", t.pod),
                )
            })
    }
    async fn run_ddl(
        &self,
        t: &Target,
        statement: &str,
        _: Duration,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        self.with(t.ordinal, |_| ())?;
        if let Some(message) = self.refuse_ddl.lock().unwrap().clone() {
            return Err(OpsError::new("alter_not_supported", false, message));
        }
        self.call(format!(
            "run_ddl:{}{}:{statement}",
            t.ordinal,
            if former_primary {
                ":former-primary"
            } else {
                ""
            }
        ));
        let after = self.after_ddl.lock().unwrap().clone();
        self.tables.lock().unwrap().insert(t.ordinal, after);
        Ok(())
    }
}

struct Factory(Arc<FakeOps>);

impl OpsFactory for Factory {
    fn ops(&self, _: &str, creds: &ClusterCredentials) -> Arc<dyn InstanceOps> {
        Arc::new(Scoped {
            ops: self.0.clone(),
            password: creds.operator_password.clone(),
        })
    }
}

/// The double as seen with one operator password: once a test (or a rotation) gave the
/// servers a password ([`FakeOps::passwords`]), another one is refused as a server refuses
/// it (error 1045).
struct Scoped {
    ops: Arc<FakeOps>,
    password: String,
}

impl Scoped {
    fn login(&self, t: &Target) -> Result<&FakeOps, OpsError> {
        match self.ops.passwords.lock().unwrap().get(&t.ordinal) {
            Some(p) if *p != self.password => Err(OpsError::new(
                "access_denied",
                false,
                format!("{}: access denied for the operator account", t.pod),
            )),
            _ => Ok(&self.ops),
        }
    }
}

#[async_trait]
impl InstanceOps for Scoped {
    async fn observe(&self, t: &Target, d: Option<Instant>) -> Result<InstanceView, OpsError> {
        self.login(t)?.observe(t, d).await
    }
    async fn wait_no_long_transaction(
        &self,
        t: &Target,
        max: u64,
        d: Instant,
    ) -> Result<(), OpsError> {
        self.login(t)?.wait_no_long_transaction(t, max, d).await
    }
    async fn fence(&self, t: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(t)?.fence(t, d).await
    }
    async fn demote(&self, t: &Target, s: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(t)?.demote(t, s, d).await
    }
    async fn wait_caught_up(&self, c: &Target, f: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(c)?.wait_caught_up(c, f, d).await
    }
    async fn promote(&self, t: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(t)?.promote(t, d).await
    }
    async fn replicate_from(&self, t: &Target, s: &Target, former: bool) -> Result<(), OpsError> {
        self.login(t)?.replicate_from(t, s, former).await
    }
    async fn prepare_shutdown(&self, t: &Target, slow: bool) -> Result<(), OpsError> {
        self.login(t)?.prepare_shutdown(t, slow).await
    }
    async fn close_client_connections(&self, t: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(t)?.close_client_connections(t, d).await
    }
    async fn detach(&self, t: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(t)?.detach(t, d).await
    }
    async fn wait_received_applied(&self, t: &Target, d: Instant) -> Result<(), OpsError> {
        self.login(t)?.wait_received_applied(t, d).await
    }
    async fn set_semi_sync_source(
        &self,
        t: &Target,
        k: Option<u32>,
        d: Instant,
    ) -> Result<(), OpsError> {
        self.login(t)?.set_semi_sync_source(t, k, d).await
    }
    async fn agent_status(&self, t: &Target) -> Result<AgentStatus, OpsError> {
        self.ops.agent_status(t).await
    }
    async fn variable_metadata(
        &self,
        t: &Target,
        probe: &[String],
    ) -> Result<ServerMetadata, OpsError> {
        self.login(t)?.variable_metadata(t, probe).await
    }
    async fn set_variables(&self, t: &Target, vars: &[(String, String)]) -> Result<(), OpsError> {
        self.login(t)?.set_variables(t, vars).await
    }
    async fn global_values(
        &self,
        t: &Target,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<String>>, OpsError> {
        self.login(t)?.global_values(t, names).await
    }
    async fn accounts(&self, t: &Target) -> Result<Vec<Account>, OpsError> {
        self.login(t)?.accounts(t).await
    }
    async fn show_create_table(
        &self,
        t: &Target,
        database: &str,
        table: &str,
    ) -> Result<String, OpsError> {
        self.login(t)?.show_create_table(t, database, table).await
    }
    async fn run_ddl(
        &self,
        t: &Target,
        statement: &str,
        lock_wait: Duration,
        former_primary: bool,
    ) -> Result<(), OpsError> {
        self.login(t)?
            .run_ddl(t, statement, lock_wait, former_primary)
            .await
    }
    async fn set_passwords(
        &self,
        t: &Target,
        accounts: &[(String, String)],
    ) -> Result<(), OpsError> {
        self.login(t)?.set_passwords(t, accounts).await
    }
}

/// A fake API server, the test double, a test clock, and the reconcile context.
pub struct World {
    pub client: Client,
    pub ops: Arc<FakeOps>,
    pub clock: Arc<AtomicU64>,
    pub ctx: Arc<Context>,
    /// Ordinals whose pods the test kubelet must not start.
    pub held: Mutex<Vec<u32>>,
    /// Claim name -> whether its volume holds an initialized data directory.
    pub volumes: Mutex<BTreeMap<String, bool>>,
    /// What the test kubelet's agents did: `bootstrap N`, `provision N<-D`, `empty N`.
    pub agent_log: Mutex<Vec<String>>,
    /// The uids of the pods the test kubelet started.
    started: Mutex<Vec<String>>,
    restart_operator_each_round: std::sync::atomic::AtomicBool,
    tenure: Option<Arc<Tenure>>,
}

fn make_context(
    client: &Client,
    ops: &Arc<FakeOps>,
    clock: &Arc<AtomicU64>,
    tenure: Option<Arc<Tenure>>,
) -> Arc<Context> {
    let c = clock.clone();
    let clock_fn: Clock = Arc::new(move || Timestamp(c.load(Ordering::SeqCst)));
    let resolver: Resolver = Arc::new(|names: &Names, o| (names.pod_host(o), 3306));
    Arc::new(Context {
        client: client.clone(),
        ops: Arc::new(Factory(ops.clone())),
        resolver,
        clock: clock_fn,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "switchyard".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(Metrics::new()),
        tenure,
        agent_image: AGENT_IMAGE.into(),
    })
}

/// A reconcile context over `client` with the test clock `clock` and no leadership (its
/// instance operations are the test double, which a fleet's reconcile never uses).
pub fn context(client: &Client, clock: &Arc<AtomicU64>) -> Arc<Context> {
    make_context(client, &Arc::new(FakeOps::default()), clock, None)
}

/// The operator's image in the tests (where the pods' agent comes from).
pub const AGENT_IMAGE: &str = "switchyard/operator:test";

pub fn spec(flavor: &str, version: &str, replicas: i32) -> MySQLClusterSpec {
    serde_json::from_value(serde_json::json!({
        "flavor": flavor,
        "version": version,
        "replicas": replicas,
    }))
    .expect("a spec")
}

pub fn cluster(spec: MySQLClusterSpec) -> MySQLCluster {
    let mut c = MySQLCluster::new(NAME, spec);
    c.metadata.namespace = Some(NS.into());
    c
}

/// The names of every object `api` lists, sorted.
pub async fn sorted_names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

impl World {
    pub async fn new(cluster: MySQLCluster) -> World {
        World::with_api(cluster, |b| b).await
    }

    /// A world whose fake API server `setup` adds to (objects, interceptors).
    pub async fn with_api(
        cluster: MySQLCluster,
        setup: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> World {
        World::with_client(cluster, setup, |store| store).await
    }

    /// A world whose every request (the operator's, the test's, the kubelet's) goes through
    /// the fake API's front (switchyard-fake-api): its watches, and its eviction subresource
    /// with PodDisruptionBudgets enforced, as `kubectl drain` uses it.
    pub async fn fronted(cluster: MySQLCluster) -> World {
        World::with_client(
            cluster,
            |b| b,
            |store| switchyard_fake_api::FakeApi::new(store).client(),
        )
        .await
    }

    /// A world whose fake API server `setup` adds to, seen through the client `front` makes
    /// of the store's.
    pub async fn with_client(
        cluster: MySQLCluster,
        setup: impl FnOnce(ClientBuilder) -> ClientBuilder,
        front: impl FnOnce(Client) -> Client,
    ) -> World {
        let builder = ClientBuilder::new()
            .with_resource::<MySQLCluster>()
            .with_status_subresource::<MySQLCluster>()
            .with_resource::<SchemaChange>()
            .with_status_subresource::<SchemaChange>()
            .with_object(cluster);
        let client = front(setup(builder).build().await.expect("a fake client"));
        let ops = Arc::new(FakeOps::default());
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let ctx = make_context(&client, &ops, &clock, None);
        World {
            client,
            ops,
            clock,
            ctx,
            held: Mutex::new(Vec::new()),
            volumes: Mutex::new(BTreeMap::new()),
            agent_log: Mutex::new(Vec::new()),
            started: Mutex::new(Vec::new()),
            restart_operator_each_round: std::sync::atomic::AtomicBool::new(false),
            tenure: None,
        }
    }

    /// The operator from now on is elected on a lease: its leadership is `tenure`.
    pub fn elect(&mut self, tenure: Arc<Tenure>) {
        self.tenure = Some(tenure.clone());
        self.ctx = make_context(&self.client, &self.ops, &self.clock, Some(tenure));
    }

    /// The test clock's time.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.clock.load(Ordering::SeqCst))
    }

    /// Every reconcile from now on runs in a new operator process (a new context: no
    /// memory, a new event recorder, new metrics), as after a restart or a new leader.
    pub fn restart_operator_each_round(&self) {
        self.restart_operator_each_round
            .store(true, Ordering::SeqCst);
    }

    pub fn clusters(&self) -> Api<MySQLCluster> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), NS)
    }
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Every pod's uid and revision, and every instance ConfigMap's data: what a reconcile that
    /// must change nothing leaves as it was.
    pub async fn pods_snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for pod in self
            .pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            let hash = pod
                .annotations()
                .get("switchyard.io/revision-hash")
                .cloned()
                .unwrap_or_default();
            out.insert(
                pod.name_any(),
                format!("{} {hash}", pod.uid().unwrap_or_default()),
            );
        }
        for cm in self
            .config_maps()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            out.insert(cm.name_any(), serde_json::to_string(&cm.data).unwrap());
        }
        out
    }

    /// The `instance.json` of instance `o`, as the operator wrote it.
    pub async fn instance_config(&self, o: u32) -> Option<InstanceConfig> {
        let cm = self
            .config_maps()
            .get_opt(&format!("{NAME}-{o}-config"))
            .await
            .unwrap()?;
        let text = cm.data?.get("instance.json")?.clone();
        Some(serde_json::from_str(&text).expect("instance.json"))
    }

    /// Deletes the cluster object (as `kubectl delete mysqlcluster` would), then plays the
    /// garbage collector: every object whose owners are all gone is deleted, until none is.
    pub async fn delete_cluster(&self) {
        self.clusters()
            .delete(NAME, &DeleteParams::default())
            .await
            .expect("delete the cluster");
        self.collect_garbage().await;
    }

    /// Plays Kubernetes' garbage collector over the namespace's pods, ConfigMaps, Services,
    /// Secrets and claims: an object with owner references none of which exists any more is
    /// deleted (an object without owners is kept), until nothing changes.
    pub async fn collect_garbage(&self) {
        loop {
            let mut uids: Vec<String> = Vec::new();
            let clusters = self.clusters().list(&ListParams::default()).await.unwrap();
            uids.extend(clusters.items.iter().filter_map(|c| c.uid()));
            let claims = self.claims().list(&ListParams::default()).await.unwrap();
            uids.extend(claims.items.iter().filter_map(|c| c.uid()));
            let orphaned = |refs: Option<
                &Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
            >| {
                refs.is_some_and(|r| !r.is_empty() && r.iter().all(|o| !uids.contains(&o.uid)))
            };
            let mut deleted = 0;
            macro_rules! sweep {
                ($api:expr) => {{
                    let api = $api;
                    for obj in api.list(&ListParams::default()).await.unwrap().items {
                        if orphaned(obj.metadata.owner_references.as_ref()) {
                            api.delete(&obj.name_any(), &DeleteParams::default())
                                .await
                                .unwrap();
                            deleted += 1;
                        }
                    }
                }};
            }
            sweep!(self.pods());
            sweep!(self.config_maps());
            sweep!(self.secrets());
            sweep!(self.claims());
            sweep!(Api::<k8s_openapi::api::core::v1::Service>::namespaced(
                self.client.clone(),
                NS
            ));
            if deleted == 0 {
                return;
            }
        }
    }

    /// The agent log of the test kubelet.
    pub fn agent_log(&self) -> Vec<String> {
        self.agent_log.lock().unwrap().clone()
    }

    /// The volume of instance `o` loses its data (its pod is not touched).
    pub fn lose_volume(&self, o: u32) {
        self.volumes
            .lock()
            .unwrap()
            .insert(format!("data-{NAME}-{o}"), false);
    }

    /// A pod deleted outside the engine (eviction, node loss, `kubectl delete`).
    pub async fn delete_pod(&self, o: u32) {
        self.pods()
            .delete(&format!("{NAME}-{o}"), &DeleteParams::default())
            .await
            .expect("delete the pod");
        self.ops.set_down(o, true);
    }

    async fn set_pod_status(&self, name: &str, started: bool) {
        let status = PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.0.0.1".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if started { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "mysqld".into(),
                started: Some(started),
                ready: started,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        };
        let patch = serde_json::json!({ "status": status });
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("set the pod's status");
    }

    pub async fn cluster(&self) -> MySQLCluster {
        self.clusters().get(NAME).await.expect("the cluster")
    }

    pub fn advance(&self, d: Duration) {
        self.clock
            .fetch_add(u64::try_from(d.as_millis()).unwrap(), Ordering::SeqCst);
    }

    /// One reconcile of the current object, as the controller would run it.
    pub async fn reconcile(&self) -> Result<Action, switchyard_kube::Error> {
        let c = self.cluster().await;
        let ctx = if self.restart_operator_each_round.load(Ordering::SeqCst) {
            make_context(&self.client, &self.ops, &self.clock, self.tenure.clone())
        } else {
            self.ctx.clone()
        };
        reconcile(Arc::new(c), ctx).await
    }

    /// Plays the kubelet and each pod's agent: every pod the operator created that was not
    /// started yet starts once its claim and its ConfigMap exist. Its agent reads
    /// `instance.json` as `switchyard agent` does: a volume with data starts the server on the
    /// pod's version; an empty one is initialized only with `bootstrap`, provisioned only from
    /// the donor named (which must be up and run the same version: its GTIDs are copied, and
    /// replication starts from `replicate_from`), and otherwise left empty, the server not
    /// started and the agent reporting it. Returns the ordinals it started.
    pub async fn kubelet(&self) -> Vec<u32> {
        let names = Names {
            cluster: NAME.into(),
            namespace: NS.into(),
        };
        let held = self.held.lock().unwrap().clone();
        let mut pods = self
            .pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        pods.sort_by_key(|p| names.ordinal_of(&p.name_any()));
        let mut started = vec![];
        for pod in pods {
            let uid = pod.uid().unwrap_or_default();
            let Some(o) = names.ordinal_of(&pod.name_any()) else {
                continue;
            };
            if held.contains(&o) || self.started.lock().unwrap().contains(&uid) {
                continue;
            }
            let claim = format!("data-{NAME}-{o}");
            if self.claims().get_opt(&claim).await.unwrap().is_none() {
                continue;
            }
            let Some(config) = self.instance_config(o).await else {
                continue;
            };
            let version: Version = pod.annotations()[ANNOTATION_VERSION].parse().unwrap();
            let initialized = self
                .volumes
                .lock()
                .unwrap()
                .get(&claim)
                .copied()
                .unwrap_or(false);
            let mut agent = AgentStatus {
                revision: Some(config.revision.clone()),
                ..AgentStatus::default()
            };
            if config.galera.as_ref().is_some_and(|g| g.new_cluster) {
                // What the agent does for a node named to start a Galera cluster.
                self.agent_log
                    .lock()
                    .unwrap()
                    .push(format!("new-cluster {o}"));
            }
            let up = if initialized {
                self.ops.started(o, version);
                true
            } else if config.bootstrap {
                self.agent_log
                    .lock()
                    .unwrap()
                    .push(format!("bootstrap {o}"));
                self.ops.set_gtid_none(o);
                self.ops.started(o, version);
                true
            } else if let Some(donor) = &config.provision_from {
                let d = names
                    .ordinal_of_host(&donor.host)
                    .expect("a donor of the cluster");
                let from = self.ops.instances.lock().unwrap().get(&d).cloned();
                match from {
                    Some(from) if !from.down && from.version == version => {
                        self.agent_log
                            .lock()
                            .unwrap()
                            .push(format!("provision {o}<-{d}"));
                        let source = config
                            .replicate_from
                            .as_ref()
                            .and_then(|r| names.ordinal_of_host(&r.host));
                        self.ops.provisioned(o, version, from.gtid.clone(), source);
                        agent.provisioning = Provisioning::Done;
                        true
                    }
                    _ => {
                        agent.provisioning = Provisioning::Failed;
                        agent.provisioning_error = Some(format!("donor {d} is not usable"));
                        false
                    }
                }
            } else if config.galera.is_some() {
                // A Galera node joins its peers; its data comes by SST.
                self.agent_log.lock().unwrap().push(format!("join {o}"));
                self.ops.started(o, version);
                true
            } else {
                self.agent_log.lock().unwrap().push(format!("empty {o}"));
                false
            };
            if up {
                self.volumes.lock().unwrap().insert(claim, true);
                agent.data_dir_initialized = true;
                agent.server_version = Some(version.to_string());
                // The agent runs mariadb-upgrade after a start on a new major.minor.
                agent.mariadb_upgrade_info = Some(version.to_string());
                started.push(o);
            } else {
                // No server runs: nothing answers, nothing is writable.
                if self.ops.instances.lock().unwrap().contains_key(&o) {
                    self.ops.set(o, |i| {
                        i.down = true;
                        i.writable = false;
                    });
                }
                agent.not_ready = Some("the data directory is empty".into());
            }
            if let Some(kept) = self.ops.agents.lock().unwrap().get(&o)
                && up
                && kept.mariadb_upgrade_info.as_deref().is_some_and(|v| {
                    v.parse::<Version>()
                        .is_ok_and(|k| (k.major, k.minor) == (version.major, version.minor))
                })
            {
                // A patch-level start: mariadb-upgrade does not run, the file keeps its number.
                agent.mariadb_upgrade_info = kept.mariadb_upgrade_info.clone();
            }
            self.ops.agents.lock().unwrap().insert(o, agent);
            self.set_pod_status(&pod.name_any(), up).await;
            self.started.lock().unwrap().push(uid);
        }
        started
    }

    /// Reconciles and plays the kubelet until the phase is `phase` or `max` rounds passed,
    /// moving the clock `tick` each round. Returns the rounds taken.
    pub async fn run_until(&self, phase: &str, max: usize, tick: Duration) -> usize {
        for round in 0..max {
            self.reconcile().await.expect("reconcile");
            self.kubelet().await;
            self.advance(tick);
            let c = self.cluster().await;
            if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
                return round + 1;
            }
        }
        let c = self.cluster().await;
        panic!(
            "phase {phase} not reached in {max} rounds; status: {}",
            serde_json::to_string_pretty(&c.status).unwrap()
        );
    }

    /// Every event's reason, a series counted once per occurrence.
    pub async fn event_reasons(&self) -> Vec<String> {
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), NS);
        let mut list = events.list(&ListParams::default()).await.unwrap().items;
        list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
        // The recorder folds repeats of one reason into a series: expand it.
        list.into_iter()
            .flat_map(|e| {
                let n = e.series.as_ref().map_or(1, |s| s.count);
                std::iter::repeat_n(e.reason.unwrap_or_default(), usize::try_from(n).unwrap())
            })
            .collect()
    }

    /// The role label of instance `o`'s pod.
    pub async fn role(&self, o: u32) -> Option<String> {
        self.pods()
            .get(&format!("{NAME}-{o}"))
            .await
            .unwrap()
            .labels()
            .get(LABEL_ROLE)
            .cloned()
    }

    pub async fn pod_names(&self) -> Vec<String> {
        sorted_names(&self.pods()).await
    }

    /// Updates the spec (as `kubectl apply` would).
    pub async fn edit(&self, f: impl FnOnce(&mut MySQLClusterSpec)) {
        let mut c = self.cluster().await;
        f(&mut c.spec);
        c.metadata.managed_fields = None;
        self.clusters()
            .replace(NAME, &PostParams::default(), &c)
            .await
            .expect("edit the spec");
    }

    /// Sets an annotation on the cluster.
    pub async fn annotate(&self, key: &str, value: &str) {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.clusters()
            .patch(
                NAME,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("annotate");
    }
}

/// The condition `type_` of the cluster: (status, reason, message).
pub fn condition(c: &MySQLCluster, type_: &str) -> Option<(String, String, String)> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|x| x.type_ == type_)
        .map(|x| (x.status.clone(), x.reason.clone(), x.message.clone()))
}
