//! The runtime's side of a failover on real servers, semi-synchronous clusters of three:
//! the primary reports how many acknowledgements it waits for (and nothing once it could
//! fall back or is asynchronous); a detached replica receives nothing more; waiting for a
//! replica to apply what it received really waits for a blocked applier, fails at its
//! deadline, and fails at once on a stopped applier; a receiver gives a frozen primary up
//! within seconds; after a `kill -9` of the primary the replicas' receivers read
//! disconnected, with a source error, and still hold what they received; a promoted replica
//! waits for acknowledgements, and stops waiting when its promotion is undone.

use std::time::Duration;

use sqlx::{Connection as _, MySqlConnection};
use switchyard_local::{ClusterSpec, LocalCluster, LocalRuntime};
use switchyard_plan::ClusterRuntime as _;
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::topology::{Health, Instance, Observed, Timestamp};
use switchyard_testbed::{Flavor, ServerKind};

/// How long any one condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(30);

async fn root(cluster: &LocalCluster, ordinal: usize) -> MySqlConnection {
    cluster.testbed().instances()[ordinal]
        .connect_root()
        .await
        .expect("connect as root")
}

async fn exec(conn: &mut MySqlConnection, sql: &str) {
    // Bounded: a semi-synchronous primary that no replica acknowledges blocks its writers.
    tokio::time::timeout(
        DEADLINE,
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(conn),
    )
    .await
    .unwrap_or_else(|_| panic!("{sql}: no answer within {DEADLINE:?}"))
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn instance(observed: &Observed, ordinal: u32) -> &Instance {
    observed
        .instances
        .iter()
        .find(|i| i.ordinal == ordinal)
        .expect("instance observed")
}

fn contains(set: Option<&GtidSet>, wanted: &GtidSet) -> bool {
    set.is_some_and(|s| wanted.is_subset(s).expect("same flavor"))
}

fn received(observed: &Observed, ordinal: u32) -> Option<&GtidSet> {
    instance(observed, ordinal)
        .link
        .as_ref()
        .and_then(|l| l.received.as_ref())
}

/// Observes until `condition` holds, at most [`DEADLINE`]; panics with `what` and the last
/// observation.
async fn observe_until(
    rt: &LocalRuntime,
    what: &str,
    condition: impl Fn(&Observed) -> bool,
) -> Observed {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let observed = rt.observe().await.expect("observe");
        if condition(&observed) {
            return observed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; last observation: {observed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The primary's executed transactions now.
async fn primary_position(rt: &LocalRuntime) -> GtidSet {
    let observed = rt.observe().await.expect("observe");
    instance(&observed, 0).gtid.clone().expect("primary GTIDs")
}

fn deadline_in(rt: &LocalRuntime, d: Duration) -> Timestamp {
    Timestamp(rt.now().0 + u64::try_from(d.as_millis()).expect("millis"))
}

async fn failover_operations(kind: ServerKind) {
    let mysql = kind.flavor() == Flavor::Mysql;
    let cluster = LocalCluster::start(
        ClusterSpec::new(kind, 3)
            .supervised(false)
            .with_semi_sync(1)
            .with_replica_net_timeout(2),
    )
    .await
    .expect("start the cluster");
    let rt = LocalRuntime::new(&cluster);
    let mut primary = root(&cluster, 0).await;
    exec(
        &mut primary,
        "CREATE TABLE app.t (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO app.t VALUES (1, 0)",
    )
    .await;

    // The primary waits for one replica, losslessly; both replicas receive.
    let start = primary_position(&rt).await;
    let observed = observe_until(&rt, "both replicas received the table", |o| {
        [1, 2].iter().all(|r| {
            instance(o, *r).link.as_ref().is_some_and(|l| l.connected)
                && contains(received(o, *r), &start)
        })
    })
    .await;
    assert_eq!(
        instance(&observed, 0).ack_replicas,
        Some(1),
        "{observed:#?}"
    );
    assert_eq!(
        instance(&observed, 1).ack_replicas,
        None,
        "a replica waits for nobody"
    );
    // A primary that would fall back (a short timeout), or does not wait, reports none.
    let (timeout_var, enabled_var) = if mysql {
        (
            "rpl_semi_sync_source_timeout",
            "rpl_semi_sync_source_enabled",
        )
    } else {
        (
            "rpl_semi_sync_master_timeout",
            "rpl_semi_sync_master_enabled",
        )
    };
    exec(&mut primary, &format!("SET GLOBAL {timeout_var} = 10000")).await;
    let observed = rt.observe().await.expect("observe");
    assert_eq!(
        instance(&observed, 0).ack_replicas,
        None,
        "a 10 s timeout falls back"
    );
    exec(
        &mut primary,
        &format!("SET GLOBAL {timeout_var} = 86400000"),
    )
    .await;
    exec(&mut primary, &format!("SET GLOBAL {enabled_var} = OFF")).await;
    let observed = rt.observe().await.expect("observe");
    assert_eq!(instance(&observed, 0).ack_replicas, None, "asynchronous");
    exec(&mut primary, &format!("SET GLOBAL {enabled_var} = ON")).await;
    let observed = rt.observe().await.expect("observe");
    assert_eq!(
        instance(&observed, 0).ack_replicas,
        Some(1),
        "{observed:#?}"
    );

    // Replica 1's applier is blocked on a table lock (a locking read is a write to MySQL's
    // super_read_only); what it receives waits in its relay log.
    let mut blocker = root(&cluster, 1).await;
    exec(&mut blocker, "LOCK TABLES app.t READ").await;
    exec(&mut primary, "UPDATE app.t SET v = v + 1 WHERE id = 1").await;
    let x = primary_position(&rt).await;
    observe_until(&rt, "replica 1 received the update", |o| {
        contains(received(o, 1), &x)
    })
    .await;
    let observed = rt.observe().await.expect("observe");
    assert!(
        !contains(instance(&observed, 1).gtid.as_ref(), &x),
        "the blocked applier executed the update: {observed:#?}"
    );

    // Detached (twice: idempotent), it receives nothing more.
    let bound = deadline_in(&rt, Duration::from_secs(10));
    rt.detach(1, bound).await.expect("detach replica 1");
    rt.detach(1, bound).await.expect("detach replica 1 again");
    exec(&mut primary, "INSERT INTO app.t VALUES (2, 0)").await;
    let y = primary_position(&rt).await;
    let observed = observe_until(&rt, "replica 2 received the insert", |o| {
        contains(received(o, 2), &y)
    })
    .await;
    let one = instance(&observed, 1);
    assert!(
        !contains(received(&observed, 1), &y),
        "the detached replica received the insert: {one:#?}"
    );
    assert!(
        contains(received(&observed, 1), &x),
        "the detached replica lost what it received: {one:#?}"
    );
    assert!(
        one.link.as_ref().is_some_and(|l| !l.connected),
        "a detached receiver reads connected: {one:#?}"
    );
    assert!(
        matches!(one.health, Health::ReplicationStopped { errno: 0, .. }),
        "{one:#?}"
    );

    // Blocked past the deadline, the wait fails saying what was not applied.
    let late = rt
        .wait_received_applied(1, deadline_in(&rt, Duration::from_secs(1)))
        .await
        .expect_err("the applier is blocked");
    assert!(late.message.contains("has not executed"), "{late}");

    // The wait waits for the blocked applier, in the server, and returns once it has run.
    let waiter = {
        let rt = LocalRuntime::new(&cluster);
        let bound = deadline_in(&rt, DEADLINE);
        tokio::spawn(async move { rt.wait_received_applied(1, bound).await })
    };
    let mut watcher = root(&cluster, 1).await;
    let waiting = "SELECT COUNT(*) FROM information_schema.processlist WHERE id <> CONNECTION_ID() \
                   AND (info LIKE '%WAIT_FOR_EXECUTED_GTID_SET%' OR info LIKE '%MASTER_GTID_WAIT%')";
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let n: i64 = sqlx::query_scalar(waiting)
            .fetch_one(&mut watcher)
            .await
            .expect("processlist");
        if n > 0 {
            break;
        }
        assert!(
            !waiter.is_finished(),
            "the wait ended while the applier was blocked: {:?}",
            waiter.await
        );
        assert!(
            tokio::time::Instant::now() < until,
            "no GTID wait ever ran on replica 1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !waiter.is_finished(),
        "the wait ended while the applier was blocked"
    );
    exec(&mut blocker, "UNLOCK TABLES").await;
    waiter
        .await
        .expect("join")
        .expect("replica 1 applied what it received");
    let observed = rt.observe().await.expect("observe");
    assert!(
        contains(instance(&observed, 1).gtid.as_ref(), &x),
        "the wait returned before the update was applied: {observed:#?}"
    );

    // A stopped applier fails the wait with its state, well before the deadline would.
    let mut two = root(&cluster, 2).await;
    let (stop_sql, start_sql) = if mysql {
        ("STOP REPLICA SQL_THREAD", "START REPLICA SQL_THREAD")
    } else {
        ("STOP SLAVE SQL_THREAD", "START SLAVE SQL_THREAD")
    };
    exec(&mut two, stop_sql).await;
    exec(&mut primary, "INSERT INTO app.t VALUES (3, 0)").await;
    let z = primary_position(&rt).await;
    observe_until(&rt, "replica 2 received the second insert", |o| {
        contains(received(o, 2), &z)
    })
    .await;
    let stopped = rt
        .wait_received_applied(2, deadline_in(&rt, DEADLINE))
        .await
        .expect_err("a stopped applier cannot apply");
    assert!(
        stopped.message.contains("the applier is stopped"),
        "{stopped}"
    );
    exec(&mut two, start_sql).await;
    rt.wait_received_applied(2, deadline_in(&rt, DEADLINE))
        .await
        .expect("replica 2 applies once started");

    // SIGSTOP the primary: replica 2's receiver gives it up within the replicas' network
    // timeout (2 s here, 60 s by default), and takes it up again once it runs.
    let frozen = &cluster.testbed().instances()[0];
    frozen.pause().expect("SIGSTOP the primary");
    let gave_up = tokio::time::Instant::now();
    observe_until(
        &rt,
        "replica 2's receiver gave up the frozen primary",
        |o| instance(o, 2).link.as_ref().is_some_and(|l| !l.connected),
    )
    .await;
    eprintln!(
        "a frozen primary was given up after {:?}",
        gave_up.elapsed()
    );
    frozen.resume().expect("SIGCONT the primary");
    observe_until(&rt, "replica 2's receiver took the primary up again", |o| {
        instance(o, 2).link.as_ref().is_some_and(|l| l.connected)
    })
    .await;

    // kill -9 the primary: replica 2's receiver loses it, with an error, and keeps what it got.
    let _ = primary.close().await;
    cluster.testbed().instances()[0]
        .kill9()
        .expect("kill -9 the primary");
    let observed = observe_until(&rt, "replica 2's receiver lost the primary", |o| {
        instance(o, 2).link.as_ref().is_some_and(|l| !l.connected)
            && matches!(instance(o, 2).health, Health::ReplicationStopped { errno, .. } if errno != 0)
    })
    .await;
    assert!(contains(received(&observed, 2), &z), "{observed:#?}");
    assert!(
        contains(instance(&observed, 2).gtid.as_ref(), &z),
        "{observed:#?}"
    );
    assert!(!contains(received(&observed, 1), &z), "{observed:#?}");

    // Promoted, replica 2 waits for acknowledgements before it takes a write.
    rt.promote(2, deadline_in(&rt, DEADLINE))
        .await
        .expect("promote replica 2");
    let observed = rt.observe().await.expect("observe");
    assert_eq!(
        instance(&observed, 2).ack_replicas,
        Some(1),
        "{observed:#?}"
    );
    assert!(instance(&observed, 2).writable, "{observed:#?}");

    // Its promotion undone (fenced, another instance made the primary again), it no longer
    // waits for acknowledgements: as a replica it would hold its applier's commits.
    let bound = deadline_in(&rt, DEADLINE);
    // Following it, instance 1 catches up at once when the fence lets replicas catch up.
    rt.repoint(1, 2).await.expect("repoint instance 1");
    rt.fence(2, bound).await.expect("fence instance 2");
    rt.unfence(1, bound)
        .await
        .expect("make instance 1 the primary");
    let observed = rt.observe().await.expect("observe");
    assert_eq!(
        instance(&observed, 1).ack_replicas,
        Some(1),
        "{observed:#?}"
    );
    let mut undone = root(&cluster, 2).await;
    let on: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT @@GLOBAL.{enabled_var}"
    )))
    .fetch_one(&mut undone)
    .await
    .expect("read the source side");
    assert_eq!(
        on, 0,
        "the undone candidate still waits for acknowledgements"
    );
    cluster.stop_supervisor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_failover_operations() {
    failover_operations(ServerKind::Mariadb1011).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_10_5_failover_operations() {
    failover_operations(ServerKind::Mariadb105).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_failover_operations() {
    failover_operations(ServerKind::Mysql97).await;
}
