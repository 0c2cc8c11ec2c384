//! Helpers shared by the integration tests: handles on testbed servers and a writability sampler.

#![expect(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_mysql::{Credentials, Instance, InstanceAddr, ReplicationCredentials};
use switchyard_testbed::{Account, Cluster};

/// A switchyard handle on a testbed instance, as the operator account.
pub fn handle(cluster: &Cluster, index: usize) -> Instance {
    let tb = cluster.instance(index);
    Instance::new(
        tb.name(),
        InstanceAddr::new("127.0.0.1", tb.port()),
        credentials(&cluster.credentials().operator),
    )
}

/// Handles on every instance of a cluster.
pub fn handles(cluster: &Cluster) -> Vec<Instance> {
    (0..cluster.instances().len()).map(|i| handle(cluster, i)).collect()
}

/// Credentials of a testbed account.
pub fn credentials(account: &Account) -> Credentials {
    Credentials::new(account.user(), account.password())
}

/// The replication account, as replicas log in with it (the testbed's replicas use TLS on
/// MySQL).
pub fn replication(cluster: &Cluster, ssl: bool) -> ReplicationCredentials {
    let account = &cluster.credentials().replication;
    ReplicationCredentials { ssl, ..ReplicationCredentials::new(account.user(), account.password()) }
}

/// Samples which instances are writable every ~50 ms from its own connections (the operator
/// account, whose connections a fence does not kill), and records every moment when more than
/// one was.
pub struct WritableSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<SamplerReport>,
}

/// What a [`WritableSampler`] saw.
#[derive(Debug, Default)]
pub struct SamplerReport {
    /// Samples taken.
    pub samples: usize,
    /// Samples where more than one instance was writable, with the writable names.
    pub violations: Vec<Vec<String>>,
    /// Samples where an instance could not be read.
    pub unreadable: usize,
    /// Samples where no instance was writable.
    pub none_writable: usize,
}

impl WritableSampler {
    /// Starts sampling the instances of `cluster` (shared with the test).
    pub fn start(cluster: Arc<Cluster>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            use sqlx::Connection;
            let mut report = SamplerReport::default();
            let mut conns = Vec::new();
            let operator = &cluster.credentials().operator;
            for tb in cluster.instances() {
                conns.push((tb.name().to_owned(), tb.connect(operator).await.ok()));
            }
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !flag.load(Ordering::SeqCst) {
                tick.tick().await;
                let mut writable = Vec::new();
                for (i, (name, conn)) in conns.iter_mut().enumerate() {
                    if conn.is_none() {
                        *conn = cluster.instance(i).connect(operator).await.ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        report.unreadable += 1;
                        continue;
                    };
                    // read_only covers super_read_only on MySQL (super_read_only implies it).
                    let q = sqlx::query_scalar::<_, i64>("SELECT CAST(@@GLOBAL.read_only AS SIGNED)");
                    match tokio::time::timeout(Duration::from_millis(500), q.fetch_one(&mut *c)).await {
                        Ok(Ok(0)) => writable.push(name.clone()),
                        Ok(Ok(_)) => {}
                        _ => {
                            report.unreadable += 1;
                            if let Some(c) = conn.take() {
                                let _ = c.close().await;
                            }
                        }
                    }
                }
                report.samples += 1;
                if writable.len() > 1 {
                    report.violations.push(writable);
                } else if writable.is_empty() {
                    report.none_writable += 1;
                }
            }
            report
        });
        WritableSampler { stop, task }
    }

    /// Stops sampling and returns what was seen.
    pub async fn stop(self) -> SamplerReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("sampler task")
    }
}
