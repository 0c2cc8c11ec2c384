//! An instance refusing an online change at apply time, on real MariaDB 10.11 and MySQL 9.7
//! clusters of three: the change passes validation on every instance (event_scheduler is
//! dynamic and the value allowed), the engine applies it to the first replica (instance 2),
//! the next replica (instance 1, started with `event_scheduler=DISABLED`, which the server only
//! enforces when asked to change it) refuses and undoes its own partial change, and the
//! rollback target brings instance 2 back online: every instance ends with its previous
//! values, and nothing restarted.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use std::sync::Arc;

use common::{OnlineRuntime, cfg, global, metadata, servers};
use switchyard_config::{ChangeRequest, ConfigError, plan_change};
use switchyard_plan::engine::StepOutcome;
use switchyard_plan::history::History;
use switchyard_plan::{Engine, Finished, Policy, Timestamp};
use switchyard_testbed::{ServerKind, replication};

async fn refusal_rolls_back(kind: ServerKind) {
    let cluster = replication(kind, 3).await.expect("cluster");
    let refusing = cluster.instance(1);
    refusing.stop().await.expect("stop");
    refusing
        .start_with(kind, &["event_scheduler=DISABLED"])
        .await
        .expect("restart with the event scheduler disabled");
    let servers = servers(&cluster);
    let names = ["event_scheduler", "max_connections"];
    let meta = metadata(&servers, &names).await;
    let flavor = meta[0].version.flavor;
    let version = meta[0].version.version;
    let mut before = Vec::new();
    for i in cluster.instances() {
        before.push((
            global(i, "event_scheduler").await,
            global(i, "max_connections").await,
        ));
    }
    assert_eq!(before[1].0, "DISABLED");
    // The default differs: OFF on MariaDB, ON on MySQL. Ask for the other one.
    let wanted = if before[2].0 == "ON" { "OFF" } else { "ON" };

    let mut history = History::new(flavor);
    history.ensure(flavor, version, &cfg(&[]), Timestamp(1));
    let first = history.latest().expect("r1").revision.clone();
    let plan = plan_change(
        &mut history,
        &ChangeRequest::new(
            version,
            cfg(&[("event_scheduler", wanted), ("max_connections", "300")]),
        ),
        &meta,
        Timestamp(2),
    )
    .expect("valid on every instance's metadata");
    assert!(plan.is_online());

    let runtime = Arc::new(OnlineRuntime::new(flavor, version, servers.clone(), &first));
    let engine = Engine::new(Arc::clone(&runtime), plan.target.clone(), Policy::default());
    let mut failure = None;
    for _ in 0..10 {
        if let StepOutcome::Failed { error, .. } = engine.step().await.expect("step") {
            failure = Some(error);
            break;
        }
    }
    let failure = failure.expect("instance 1 refuses");
    assert_eq!(
        *runtime.applied.lock().expect("lock"),
        vec![2],
        "the first replica changed"
    );
    assert_eq!(*runtime.failed.lock().expect("lock"), vec![1]);
    assert!(
        failure.contains("event_scheduler") && failure.contains(servers[1].label()),
        "{failure}"
    );
    assert_eq!(
        global(&cluster.instances()[2], "event_scheduler").await,
        wanted
    );
    assert_eq!(
        global(refusing, "max_connections").await,
        before[1].1,
        "undone on instance 1"
    );

    // The same refusal, as the library reports it: variable, instance, server, what was undone.
    let online = plan.target.online.clone().expect("online");
    let err = servers[1]
        .apply_online(&online.variables)
        .await
        .expect_err("refused again");
    let ConfigError::Refused {
        variable,
        instance,
        server,
        undone,
        ..
    } = &err
    else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(variable, "event_scheduler");
    assert_eq!(instance, servers[1].label());
    assert!(
        server.contains("event-scheduler=DISABLED") || server.contains("1290"),
        "{server}"
    );
    assert_eq!(undone, "max_connections");
    assert_eq!(err.category(), "refused");

    // Roll back: a new forward revision with the previous content, online from the new hash.
    // (The engine first waits out the backoff of the refused step: the record keeps the
    // failure across targets.)
    let changed = [servers[2].label()];
    let back = plan.rollback(&mut history, &changed, Timestamp(3));
    assert_eq!(back.revision.number, 3);
    assert_eq!(back.revision.hash, first.hash, "same content as r1");
    assert_eq!(
        back.online.as_ref().map(|o| &o.from_hash),
        Some(&plan.to.revision.hash)
    );
    let engine = Engine::new(Arc::clone(&runtime), back, Policy::default());
    assert_eq!(engine.run(20).await.expect("engine"), Finished::Done);
    assert_eq!(*runtime.applied.lock().expect("lock"), vec![2, 2]);
    for (n, i) in cluster.instances().iter().enumerate() {
        assert_eq!(
            (
                global(i, "event_scheduler").await,
                global(i, "max_connections").await
            ),
            before[n],
            "{} has its previous values",
            i.name()
        );
    }
    let numbers: Vec<u64> = history.entries.iter().map(|e| e.revision.number).collect();
    assert_eq!(numbers, [1, 2, 3], "going back is a new forward revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_1011_refusal_on_the_second_instance_rolls_the_first_back_online() {
    refusal_rolls_back(ServerKind::Mariadb1011).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_97_refusal_on_the_second_instance_rolls_the_first_back_online() {
    refusal_rolls_back(ServerKind::Mysql97).await;
}
