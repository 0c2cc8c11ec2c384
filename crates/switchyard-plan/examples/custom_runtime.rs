//! Embedding the switchyard engine with a runtime of your own.
//!
//! A platform team with its own controller implements [`ClusterRuntime`] over
//! whatever it manages (VMs, a cloud API, another orchestrator) and lets the
//! engine decide the order: replicas first, highest ordinal first, the primary
//! last behind a switchover, one instance out of service at a time.
//!
//! This example's "fleet" is a table in memory that prints every call; replace
//! each method body with calls to your systems. Run it with
//! `cargo run -p switchyard-plan --example custom_runtime`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, RuntimeErrorKind, StepOutcome};
use switchyard_plan::topology::TopologyKind;
use switchyard_plan::versions::{Flavor, Version};
use switchyard_plan::{
    Engine, Finished, Health, Instance, Observed, Policy, Record, Revision, Role, Target,
    Timestamp, WaitReason,
};

/// One machine of the example fleet.
struct Machine {
    version: Version,
    revision: Revision,
    primary: bool,
    source: Option<u32>,
    read_only: bool,
    in_pool: bool,
}

/// The example's runtime: the fleet plus the engine's record.
struct MyFleet {
    machines: Mutex<BTreeMap<u32, Machine>>,
    record: Mutex<Record>,
}

impl MyFleet {
    fn new(version: Version) -> Self {
        let revision = Revision::new(1, Flavor::Mariadb, version, &BTreeMap::new());
        let machines = (0..3)
            .map(|o| {
                let m = Machine {
                    version,
                    revision: revision.clone(),
                    primary: o == 0,
                    source: (o != 0).then_some(0),
                    read_only: o != 0,
                    in_pool: true,
                };
                (o, m)
            })
            .collect();
        MyFleet {
            machines: Mutex::new(machines),
            record: Mutex::new(Record::default()),
        }
    }

    fn with<T>(&self, ordinal: u32, f: impl FnOnce(&mut Machine) -> T) -> Result<T, RuntimeError> {
        let mut machines = self.machines.lock().expect("fleet lock");
        let m = machines.get_mut(&ordinal).ok_or_else(|| {
            RuntimeError::new(
                RuntimeErrorKind::Failed,
                format!("instance {ordinal}"),
                "no such machine",
            )
        })?;
        Ok(f(m))
    }
}

#[async_trait]
impl ClusterRuntime for MyFleet {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let machines = self.machines.lock().expect("fleet lock");
        let instances = machines
            .iter()
            .map(|(o, m)| Instance {
                ordinal: *o,
                role: if m.primary {
                    Role::Primary
                } else {
                    Role::Replica
                },
                version: m.version,
                revision: m.revision.clone(),
                health: Health::Ready,
                gtid: None,
                writable: !m.read_only,
                fenced: false,
                drained: !m.in_pool,
                source: m.source,
                schema: None,
                link: None,
                ack_replicas: None,
                galera: None,
            })
            .collect();
        Ok(Observed {
            kind: TopologyKind::Async,
            flavor: Flavor::Mariadb,
            instances,
        })
    }

    async fn load_record(&self) -> Result<Record, RuntimeError> {
        Ok(self.record.lock().expect("record lock").clone())
    }

    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        // Keep the record somewhere durable, with compare-and-swap (an etcd
        // revision, a database row version, a status resourceVersion).
        let mut stored = self.record.lock().expect("record lock");
        if stored.seq != expected_seq {
            return Err(RuntimeError::conflict("store record"));
        }
        *stored = record.clone();
        Ok(())
    }

    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.with(ordinal, |m| m.in_pool = false)
    }

    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.with(ordinal, |m| m.in_pool = true)
    }

    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow: bool,
    ) -> Result<(), RuntimeError> {
        println!(
            "    [fleet] {} shutdown of {ordinal}, start on {version}",
            if slow { "slow" } else { "fast" }
        );
        self.with(ordinal, |m| {
            m.version = version;
            m.revision = revision.clone();
            m.read_only = !m.primary;
        })
    }

    async fn recover(&self, _ordinal: u32) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn fence(&self, ordinal: u32, _deadline: Timestamp) -> Result<(), RuntimeError> {
        self.with(ordinal, |m| m.read_only = true)
    }

    async fn unfence(&self, ordinal: u32, _deadline: Timestamp) -> Result<(), RuntimeError> {
        // The engine asks only once no other instance takes writes: this one
        // is the primary again, whatever it was configured to follow.
        let mut machines = self.machines.lock().expect("fleet lock");
        for (o, m) in machines.iter_mut() {
            m.primary = *o == ordinal;
            if m.primary {
                m.source = None;
                m.read_only = false;
            }
        }
        Ok(())
    }

    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        _deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        // Configured as a replica of the candidate, not started: it stays fenced.
        self.with(ordinal, |m| {
            m.source = Some(source);
            m.read_only = true;
        })
    }

    async fn wait_caught_up(
        &self,
        _candidate: u32,
        _from: u32,
        _deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn promote(&self, ordinal: u32, _deadline: Timestamp) -> Result<(), RuntimeError> {
        let mut machines = self.machines.lock().expect("fleet lock");
        for (o, m) in machines.iter_mut() {
            m.primary = *o == ordinal;
            if m.primary {
                m.source = None;
                m.read_only = false;
            } else if m.source.is_none() {
                m.read_only = true;
            }
        }
        Ok(())
    }

    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.with(ordinal, |m| m.source = Some(source))
    }

    async fn pause(&self, _reason: &WaitReason) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    fn on_step(&self, step: &StepOutcome) {
        println!("  {step}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let from = Version::parse("10.5.27")?;
    let to = Version::parse("10.11.14")?;
    let target = Target {
        revision: Revision::new(2, Flavor::Mariadb, to, &BTreeMap::new()),
        version: to,
        online: None,
        schema: None,
    };
    let engine = Engine::new(MyFleet::new(from), target, Policy::default());
    println!("upgrading a 3-instance MariaDB fleet from {from} to {to}:");
    match engine.run(100).await? {
        Finished::Done => println!("done"),
        Finished::Halted(reason) => println!("halted: {reason}"),
    }
    Ok(())
}
