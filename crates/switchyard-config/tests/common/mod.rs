//! Shared helpers for the real-server tests: config servers over a testbed cluster, the
//! engine over a small runtime that only sets variables (any restart fails the test), and
//! reads done as root.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::Row as _;
use switchyard_config::{ConfigServer, ServerMetadata};
use switchyard_mysql::{Credentials, InstanceAddr};
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, RuntimeErrorKind};
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{Health, Instance, Observed, Record, Revision, Role, Timestamp, WaitReason};
use switchyard_testbed::Cluster;

/// One config server per testbed instance, with the operator account.
pub fn servers(cluster: &Cluster) -> Vec<ConfigServer> {
    let op = &cluster.credentials().operator;
    cluster
        .instances()
        .iter()
        .map(|i| {
            ConfigServer::new(
                i.name(),
                InstanceAddr::new("127.0.0.1", i.port()),
                Credentials::new(op.user(), op.password()),
            )
        })
        .collect()
}

/// Every instance's metadata, probing `names` on MySQL.
pub async fn metadata(servers: &[ConfigServer], names: &[&str]) -> Vec<ServerMetadata> {
    let mut out = Vec::new();
    for s in servers {
        out.push(s.metadata(names).await.expect("metadata"));
    }
    out
}

/// A global variable read as root (text).
pub async fn global(instance: &switchyard_testbed::Instance, name: &str) -> String {
    let mut conn = instance.connect_root().await.expect("root connection");
    let sql = format!("SELECT CAST(@@GLOBAL.{name} AS CHAR)");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .expect("read a variable");
    row.try_get::<String, _>(0).expect("text")
}

/// The server's uptime in seconds (`SHOW GLOBAL STATUS`).
pub async fn uptime(instance: &switchyard_testbed::Instance) -> u64 {
    let mut conn = instance.connect_root().await.expect("root connection");
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Uptime'")
        .fetch_one(&mut conn)
        .await
        .expect("uptime");
    row.try_get::<String, _>(1)
        .expect("text")
        .parse()
        .expect("a number")
}

/// Waits until `name` reads `expected` on `instance` (some changes, such as a buffer-pool
/// resize, finish in the background), failing after 30 s.
pub async fn wait_global(instance: &switchyard_testbed::Instance, name: &str, expected: &str) {
    let mut last = String::new();
    let reached = switchyard_testbed::wait_for(Duration::from_secs(30), async || {
        last = global(instance, name).await;
        (last == expected).then_some(())
    })
    .await;
    assert!(
        reached.is_ok(),
        "{}: {name} stayed {last:?}, expected {expected:?}",
        instance.name()
    );
}

/// The engine's view of a testbed replication cluster: instance 0 is the primary, the others
/// replicate from it. Only `apply_variables` acts; every other action fails, so a test that
/// reaches `Done` proved no instance was restarted, drained or switched over.
pub struct OnlineRuntime {
    pub flavor: Flavor,
    pub version: Version,
    pub servers: Vec<ConfigServer>,
    pub revisions: Mutex<Vec<Revision>>,
    pub record: Mutex<Record>,
    /// The ordinals `apply_variables` succeeded on, in order.
    pub applied: Mutex<Vec<u32>>,
    /// The ordinals `apply_variables` failed on, in order.
    pub failed: Mutex<Vec<u32>>,
}

impl OnlineRuntime {
    pub fn new(
        flavor: Flavor,
        version: Version,
        servers: Vec<ConfigServer>,
        revision: &Revision,
    ) -> Self {
        let n = servers.len();
        OnlineRuntime {
            flavor,
            version,
            servers,
            revisions: Mutex::new(vec![revision.clone(); n]),
            record: Mutex::new(Record::default()),
            applied: Mutex::new(Vec::new()),
            failed: Mutex::new(Vec::new()),
        }
    }

    pub fn revision_numbers(&self) -> Vec<u64> {
        self.revisions
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.number)
            .collect()
    }

    fn refuse(&self, what: String) -> RuntimeError {
        RuntimeError::new(
            RuntimeErrorKind::Unsupported,
            what,
            "an online configuration change must not restart, drain or switch over",
        )
    }
}

#[async_trait]
impl ClusterRuntime for OnlineRuntime {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let revisions = self.revisions.lock().expect("lock").clone();
        let instances = revisions
            .into_iter()
            .enumerate()
            .map(|(i, revision)| {
                let ordinal = u32::try_from(i).expect("small");
                Instance {
                    ordinal,
                    role: if ordinal == 0 {
                        Role::Primary
                    } else {
                        Role::Replica
                    },
                    version: self.version,
                    revision,
                    health: Health::Ready,
                    gtid: None,
                    writable: ordinal == 0,
                    fenced: false,
                    drained: false,
                    source: (ordinal != 0).then_some(0),
                    schema: None,
                    link: None,
                    ack_replicas: None,
                    galera: None,
                }
            })
            .collect();
        Ok(Observed {
            kind: TopologyKind::Async,
            flavor: self.flavor,
            instances,
        })
    }

    async fn load_record(&self) -> Result<Record, RuntimeError> {
        Ok(self.record.lock().expect("lock").clone())
    }

    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        let mut stored = self.record.lock().expect("lock");
        if stored.seq != expected_seq {
            return Err(RuntimeError::conflict("store record"));
        }
        *stored = record.clone();
        Ok(())
    }

    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("drain {ordinal}")))
    }

    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("undrain {ordinal}")))
    }

    async fn restart(
        &self,
        ordinal: u32,
        _: &Revision,
        _: Version,
        _: bool,
    ) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("restart {ordinal}")))
    }

    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("recover {ordinal}")))
    }

    async fn fence(&self, ordinal: u32, _: Timestamp) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("fence {ordinal}")))
    }

    async fn unfence(&self, ordinal: u32, _: Timestamp) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("unfence {ordinal}")))
    }

    async fn demote(&self, ordinal: u32, _: u32, _: Timestamp) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("demote {ordinal}")))
    }

    async fn wait_caught_up(
        &self,
        candidate: u32,
        _: u32,
        _: Timestamp,
    ) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("wait for {candidate}")))
    }

    async fn promote(&self, ordinal: u32, _: Timestamp) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("promote {ordinal}")))
    }

    async fn repoint(&self, ordinal: u32, _: u32) -> Result<(), RuntimeError> {
        Err(self.refuse(format!("repoint {ordinal}")))
    }

    async fn apply_variables(
        &self,
        ordinal: u32,
        revision: &Revision,
        variables: &[(String, String)],
    ) -> Result<(), RuntimeError> {
        let server = &self.servers[usize::try_from(ordinal).expect("small")];
        match server.apply_online(variables).await {
            Ok(_) => {
                self.revisions.lock().expect("lock")[usize::try_from(ordinal).expect("small")] =
                    revision.clone();
                self.applied.lock().expect("lock").push(ordinal);
                Ok(())
            }
            Err(e) => {
                self.failed.lock().expect("lock").push(ordinal);
                Err(RuntimeError::new(
                    RuntimeErrorKind::Failed,
                    format!("set variables on instance {ordinal}"),
                    e.to_string(),
                ))
            }
        }
    }

    /// Lets time pass as the engine asks: until the retry time of a backoff (at most 10 s),
    /// otherwise just yields (an online change has nothing else to wait for).
    async fn pause(&self, reason: &WaitReason) {
        if let WaitReason::Backoff { until, .. } = reason {
            let wait = until.since(self.now()).min(Duration::from_secs(10));
            tokio::time::sleep(wait).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// A configuration map from pairs.
pub fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
