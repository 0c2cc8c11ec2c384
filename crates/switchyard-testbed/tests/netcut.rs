//! Network cuts on real servers: a cut port times out over TCP while its unix socket
//! still answers, the heal lets TCP through again, and a cut left by a test process that
//! died is swept before the next cluster starts. Needs root (nftables).

use std::time::Duration;

use switchyard_testbed::netcut::{Cut, CutSpec, Nft};
use switchyard_testbed::{ServerKind, replication, wait_for};

/// Set in the child process of `a_dead_process_cut_is_swept`.
const LEAVE_A_CUT: &str = "SWITCHYARD_NETCUT_TEST_LEAVE_A_CUT";

async fn nft() -> Nft {
    tokio::task::spawn_blocking(Nft::fetch)
        .await
        .expect("fetch task")
        .expect("fetch nftables")
}

/// `Some(true)` connected, `Some(false)` refused, `None` timed out.
async fn tcp_connects(port: u16) -> Option<bool> {
    match tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    {
        Ok(Ok(_)) => Some(true),
        Ok(Err(_)) => Some(false),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_cut_port_times_out_while_the_socket_answers_until_healed() {
    let cluster = replication(ServerKind::Mariadb1011, 2)
        .await
        .expect("cluster");
    let nft = nft().await;
    let primary = cluster.primary();
    let replica = &cluster.replicas()[0];
    assert_eq!(tcp_connects(primary.port()).await, Some(true));
    let cut = Cut::new(&nft, CutSpec::ports(&[primary.port()])).expect("cut");
    assert!(
        nft.cut_tables()
            .expect("list")
            .contains(&cut.table().to_owned()),
        "{} is not in the kernel",
        cut.table()
    );
    assert_eq!(
        tcp_connects(primary.port()).await,
        None,
        "a connect to the cut port must time out"
    );
    // Another server's port is not cut.
    assert_eq!(tcp_connects(replica.port()).await, Some(true));
    // The unix socket still reaches the server.
    let mut conn = primary.connect_root().await.expect("socket connect");
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("select over the socket");
    assert_eq!(one, 1);
    let table = cut.table().to_owned();
    cut.heal().expect("heal");
    assert!(!nft.cut_tables().expect("list").contains(&table));
    wait_for(Duration::from_secs(10), async || {
        (tcp_connects(primary.port()).await == Some(true)).then_some(())
    })
    .await
    .expect("TCP connects again after the heal");
}

#[tokio::test]
async fn a_dropped_cut_leaves_no_table() {
    let nft = nft().await;
    let port = switchyard_testbed::allocate_port().expect("port");
    let table = {
        let cut = Cut::new(&nft, CutSpec::from_owner(&[port.port()], 0)).expect("cut");
        cut.table().to_owned()
    };
    assert!(!nft.cut_tables().expect("list").contains(&table));
}

#[test]
fn a_dead_process_cut_is_swept() {
    let nft = Nft::fetch().expect("fetch nftables");
    if std::env::var_os(LEAVE_A_CUT).is_some() {
        // The child: cut, then die without dropping the cut (as a process killed by
        // a signal would).
        let cut = Cut::new(&nft, CutSpec::ports(&[1])).expect("cut");
        println!("TABLE={}", cut.table());
        std::mem::forget(cut);
        std::process::exit(0);
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "a_dead_process_cut_is_swept", "--nocapture"])
        .env(LEAVE_A_CUT, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let left = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TABLE="))
        .unwrap_or_else(|| panic!("the child made no cut: {stdout}"))
        .to_owned();
    assert!(
        nft.cut_tables().expect("list").contains(&left),
        "the dead child's table {left} should still be there"
    );
    let record = switchyard_testbed::cache::testbed_dir()
        .join("netcuts")
        .join(&left);
    assert!(record.exists(), "the dead child's cut has no record");
    // What runs before every cluster starts.
    assert!(switchyard_testbed::netcut::sweep_recorded() >= 1);
    let tables = nft.cut_tables().expect("list");
    assert!(!tables.contains(&left), "{left} was not swept: {tables:?}");
    assert!(!record.exists(), "the swept cut's record is still there");
}
