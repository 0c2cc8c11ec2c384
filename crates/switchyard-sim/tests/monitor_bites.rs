//! The monitor bites: a runtime broken on purpose (its fence and demotion do
//! nothing, its catch-up returns at once, and it reports every instance as
//! having executed exactly what the primary has, so the engine's own checks
//! are blind) promotes a candidate while the old primary still takes a
//! privileged load, and the monitor must report lost writes or two writable
//! instances.

use async_trait::async_trait;
use switchyard_local::{LocalCluster, LocalRuntime};
use switchyard_plan::Record;
use switchyard_plan::decide::WaitReason;
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, StepOutcome};
use switchyard_plan::topology::{Observed, Revision, Role, Timestamp};
use switchyard_plan::versions::Version;
use switchyard_sim::runner;
use switchyard_sim::scenario::Scenario;

/// The local runtime with the switchover's two safeguards removed.
struct Broken(LocalRuntime);

#[async_trait]
impl ClusterRuntime for Broken {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
    /// Broken: every instance claims the primary's executed set, so the
    /// candidate always looks caught up and nothing looks errant (the engine
    /// refuses to compare unknown sets, so hiding them would not blind it).
    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let mut observed = self.0.observe().await?;
        let primary = observed
            .instances
            .iter()
            .find(|i| i.role == Role::Primary)
            .and_then(|i| i.gtid.clone());
        if let Some(gtid) = primary {
            for i in &mut observed.instances {
                i.gtid = Some(gtid.clone());
            }
        }
        Ok(observed)
    }
    async fn load_record(&self) -> Result<Record, RuntimeError> {
        self.0.load_record().await
    }
    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        self.0.store_record(expected_seq, record).await
    }
    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.0.drain(ordinal).await
    }
    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.0.undrain(ordinal).await
    }
    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        self.0
            .restart(ordinal, revision, version, slow_shutdown)
            .await
    }
    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.0.recover(ordinal).await
    }
    /// Broken: the old primary keeps taking writes.
    async fn fence(&self, _ordinal: u32, _deadline: Timestamp) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.0.unfence(ordinal, deadline).await
    }
    /// Broken: the old primary is not made a replica (nor fenced again).
    async fn demote(
        &self,
        _ordinal: u32,
        _source: u32,
        _deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Broken: the candidate is promoted whatever it lacks.
    async fn wait_caught_up(
        &self,
        _candidate: u32,
        _from: u32,
        _deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.0.promote(ordinal, deadline).await
    }
    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.0.repoint(ordinal, source).await
    }
    async fn pause(&self, reason: &WaitReason) {
        self.0.pause(reason).await;
    }
    fn on_step(&self, step: &StepOutcome) {
        self.0.on_step(step);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_catches_a_switchover_without_fence_or_catch_up() {
    let scenario = Scenario::from_yaml(
        "broken-switchover",
        "cluster: { server: mariadb-10.11, instances: 3 }\n\
         load: { account: privileged, writers: 4, rate: 400 }\n\
         change: { config: { performance_schema: \"ON\" }, apply: restart }\n\
         policy: { halt_after_s: 20 }\n\
         deadline_s: 180\n\
         expect: done\n",
    )
    .expect("a valid scenario");
    let report = runner::run_with(&scenario, |c: &LocalCluster| Broken(LocalRuntime::new(c)))
        .await
        .expect("the simulation runs to a verdict");
    assert!(
        report.switchovers >= 1,
        "no switchover happened: {report:?}"
    );
    let caught: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.check == "lost-writes" || v.check == "one-writer")
        .collect();
    eprintln!("the monitor caught: {caught:#?}");
    assert!(
        !caught.is_empty(),
        "the monitor saw nothing wrong with a switchover that neither fenced nor caught up: {report:?}"
    );
    assert!(!report.passed, "a broken run passed: {report:?}");
}
