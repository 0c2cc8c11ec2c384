//! The load and the checker on a real MariaDB 10.11 cluster of three behind
//! the router: nothing acknowledged is missing after a clean run and after
//! the router cut the writers off; a row deleted on one replica (binary log
//! off) is reported missing on exactly that instance; the privileged account
//! works as well.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use sqlx::Connection as _;
use switchyard_testbed::ledger::{
    AckedWrite, CheckConfig, CheckReport, CheckTarget, ErrorKind, check,
};
use switchyard_testbed::load::{AccountKind, Endpoints, Load, LoadConfig, LoadReport, prepare};
use switchyard_testbed::router::Router;
use switchyard_testbed::{Cluster, ServerKind, replication, wait_for};

const TABLE: &str = "app.ledger";

/// Generous: three servers share two cores with other tests.
const DEADLINE: Duration = Duration::from_secs(60);

fn targets(cluster: &Cluster) -> Vec<CheckTarget> {
    cluster
        .instances()
        .iter()
        .map(|i| CheckTarget::of(i, &cluster.credentials().operator))
        .collect()
}

async fn wait_acks(load: &switchyard_testbed::load::LoadHandle, n: usize, what: &str) {
    if let Err(e) = wait_for(DEADLINE, || async {
        (load.acknowledged() >= n).then_some(())
    })
    .await
    {
        let snap = load.ledger().snapshot();
        let first: Vec<_> = snap.errors.iter().take(3).collect();
        panic!(
            "{what}: {n} acknowledged writes not reached ({} were): {e}; {} errors, first: {first:?}",
            snap.acked.len(),
            snap.errors.len()
        );
    }
}

fn summary(label: &str, report: &LoadReport, check: &CheckReport) {
    let lat = report.write_latency();
    let read = report.read_latency();
    println!(
        "{label}: {} acknowledged at {:.0} writes/s, write latency p50 {} µs p99 {} µs max {} µs; \
         {} reads (p50 {} µs); {} errors, {} unknown outcome; longest gap {:?}",
        check.acknowledged,
        check.write_rate,
        lat.p50_us,
        lat.p99_us,
        lat.max_us,
        report.reads.len(),
        read.p50_us,
        check.errors,
        check.unknown_outcome,
        check.longest_gap,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_loses_nothing_and_the_checker_finds_a_deleted_row() {
    let cluster = replication(ServerKind::Mariadb1011, 3)
        .await
        .expect("start a MariaDB 10.11 cluster of 3");
    let creds = cluster.credentials();
    prepare(&cluster.primary().connect_options(&creds.operator), TABLE)
        .await
        .expect("create app.ledger");
    let backends = cluster
        .instances()
        .iter()
        .zip(0u32..)
        .map(|(i, o)| (o, SocketAddr::from((Ipv4Addr::LOCALHOST, i.port()))))
        .collect();
    let router = Router::start(backends).await.expect("start the router");
    router
        .set_primary(Some(0))
        .await
        .expect("route to the primary");

    // About 2 s at the default 200 writes/s, cut off by the router for a
    // moment in the middle.
    let load = Load::start(LoadConfig::default(), Endpoints::from(&router), creds)
        .expect("start the load");
    wait_acks(&load, 200, "before the cut").await;
    router.set_primary(None).await.expect("cut the writers off");
    // Every primary session is closed once set_primary returns.
    let cut_done = load.ledger().offset_of(std::time::Instant::now());
    wait_for(DEADLINE, || async {
        (load.ledger().error_count() >= 12).then_some(())
    })
    .await
    .expect("the writers run into the cut");
    let restored_at = load.ledger().offset_of(std::time::Instant::now());
    let acked_during_cut = load.acknowledged();
    router.set_primary(Some(0)).await.expect("route back");
    wait_acks(&load, acked_during_cut + 200, "after the cut").await;
    let report = load.stop().await;

    let config = CheckConfig::default();
    let clean = check(&report.ledger, &targets(&cluster), &config)
        .await
        .expect("check");
    summary("application account", &report, &clean);
    assert!(clean.acknowledged >= 400, "{}", clean.acknowledged);
    assert_eq!(clean.total_missing(), 0, "{:?}", clean.missing);
    assert_eq!(clean.instances.len(), 3);
    assert!(clean.instances.iter().all(|i| i.converged));
    // Every instance holds at least every acknowledged row.
    assert!(
        clean
            .instances
            .iter()
            .all(|i| i.rows >= clean.acknowledged as u64)
    );
    // The writers met the cut as errors and came back through the router.
    let kinds: Vec<ErrorKind> = report.ledger.errors.iter().map(|e| e.kind).collect();
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ErrorKind::Lost | ErrorKind::Connect)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&ErrorKind::Connect), "{kinds:?}");
    // Every primary session was closed when the cut began, so a write sent
    // after that could only be acknowledged through a connection made after
    // the route came back; and the gap around the cut spans it.
    let us = |d: Duration| u64::try_from(d.as_micros()).expect("µs fit");
    let (cut_us, restored_us) = (us(cut_done), us(restored_at));
    let through_cut: Vec<&AckedWrite> = report
        .ledger
        .acked
        .iter()
        .filter(|w| w.sent_us > cut_us && w.ack_us <= restored_us)
        .collect();
    assert!(through_cut.is_empty(), "{through_cut:?}");
    let gap = report
        .ledger
        .longest_gap_in(restored_at..restored_at + Duration::from_micros(1))
        .expect("the gap around the cut");
    assert!(
        gap.from_us < restored_us && gap.to_us > restored_us,
        "{gap:?}"
    );
    assert!(clean.longest_gap.expect("a gap").length() >= gap.length());
    assert!(!report.reads.is_empty());
    assert!(report.read_errors.is_empty(), "{:?}", report.read_errors);
    // No id was used twice, acknowledged or not.
    let mut ids: Vec<u64> = report.ledger.acked.iter().map(|w| w.id).collect();
    ids.extend(report.ledger.unknown.iter().map(|w| w.id));
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);

    // Delete one acknowledged row on the last replica, binary log off so it
    // stays local: the checker must name exactly that row and instance.
    let victim = report.ledger.acked[report.ledger.acked.len() / 2].id;
    let replica = cluster.instance(2);
    let mut conn = replica
        .connect(&creds.operator)
        .await
        .expect("connect to the replica");
    sqlx::query("SET SESSION sql_log_bin = 0")
        .execute(&mut conn)
        .await
        .expect("binlog off");
    let deleted = sqlx::query("DELETE FROM app.ledger WHERE id = ?")
        .bind(i64::try_from(victim).expect("ids fit in BIGINT"))
        .execute(&mut conn)
        .await
        .expect("delete one row");
    assert_eq!(deleted.rows_affected(), 1);
    conn.close().await.expect("close");
    let mut quick = CheckConfig::default();
    quick.settle = Duration::from_millis(300);
    let bitten = check(&report.ledger, &targets(&cluster), &quick)
        .await
        .expect("check again");
    let expected: Vec<(String, Vec<u64>)> = cluster
        .instances()
        .iter()
        .map(|i| {
            let ids = if i.name() == replica.name() {
                vec![victim]
            } else {
                vec![]
            };
            (i.name().to_owned(), ids)
        })
        .collect();
    assert_eq!(bitten.missing, expected);
    assert!(!bitten.no_lost_writes());
    assert!(!bitten.instances[2].converged);

    // The privileged account (ALL privileges) drives the same load; its ids
    // (run 1) do not collide with the first load's.
    let mut privileged = LoadConfig::with_account(AccountKind::Privileged);
    privileged.run = 1;
    let load = Load::start(privileged, Endpoints::from(&router), creds).expect("start");
    wait_acks(&load, 100, "privileged load").await;
    let report = load.stop().await;
    let checked = check(&report.ledger, &targets(&cluster), &CheckConfig::default())
        .await
        .expect("check");
    summary("privileged account", &report, &checked);
    assert!(checked.acknowledged >= 100);
    assert_eq!(checked.total_missing(), 0, "{:?}", checked.missing);
    assert!(report.ledger.acked.iter().all(|w| w.id >> 56 == 1));
    assert!(
        report.ledger.errors.is_empty(),
        "{:?}",
        report.ledger.errors
    );
}

/// MySQL 9.7 authenticates with `caching_sha2_password`; the load connects
/// without TLS on loopback, so the password goes through the server's RSA
/// key exchange. Both accounts must work there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_check_work_on_mysql_97() {
    let cluster = replication(ServerKind::Mysql97, 2)
        .await
        .expect("start a MySQL 9.7 cluster of 2");
    let creds = cluster.credentials();
    prepare(&cluster.primary().connect_options(&creds.operator), TABLE)
        .await
        .expect("create app.ledger");
    let backends = cluster
        .instances()
        .iter()
        .zip(0u32..)
        .map(|(i, o)| (o, SocketAddr::from((Ipv4Addr::LOCALHOST, i.port()))))
        .collect();
    let router = Router::start(backends).await.expect("start the router");
    router
        .set_primary(Some(0))
        .await
        .expect("route to the primary");
    for (run, account) in [AccountKind::Application, AccountKind::Privileged]
        .into_iter()
        .enumerate()
    {
        let mut config = LoadConfig::with_account(account);
        config.run = u8::try_from(run).expect("small");
        let load = Load::start(config, Endpoints::from(&router), creds).expect("start");
        wait_acks(&load, 100, "MySQL load").await;
        let report = load.stop().await;
        let checked = check(&report.ledger, &targets(&cluster), &CheckConfig::default())
            .await
            .expect("check");
        summary(&format!("MySQL 9.7, {account:?}"), &report, &checked);
        assert!(
            report.ledger.errors.is_empty(),
            "{:?}",
            report.ledger.errors
        );
        assert!(report.read_errors.is_empty(), "{:?}", report.read_errors);
        assert!(!report.reads.is_empty());
        assert_eq!(checked.total_missing(), 0, "{:?}", checked.missing);
    }
}
