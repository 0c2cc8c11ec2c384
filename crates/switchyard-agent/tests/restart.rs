//! A MySQL server killed with SIGKILL leaves its socket lock (`mysqld.sock.lock`, holding its
//! pid) in the run directory, which in a pod outlives the container. In the next container's
//! fresh pid namespace that pid may be a live process (a thread of the new server itself), and
//! MySQL then refuses to start, at every restart: the agent removes the stale lock before it
//! starts its server. On a real server.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod common;

use common::{Accounts, Pod, WAIT, binaries, instance, revision_cnf, scalar};
use switchyard_testbed::{ServerKind, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_starts_again_over_a_socket_lock_naming_a_live_process() {
    let _slots = switchyard_testbed::slots::acquire(1).await.unwrap();
    let kind = ServerKind::Mysql97;
    let bins = binaries(kind).await;
    let accounts = Accounts::generate();
    let mut pod = Pod::new("mysql", &bins, &accounts);
    let mut config = instance(1001, "rev-1");
    config.bootstrap = true;
    pod.write_config(&config, &revision_cnf(kind, 151));
    pod.start();
    pod.wait_code("/readyz", 200).await;
    pod.stop().await.expect("a clean stop");

    // What a killed server leaves when its pid is live in the next container: a lock naming
    // a running process (not the server's parent, which MySQL accepts as its own).
    let mut other = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("a live process");
    let mut lock = pod.options.socket().into_os_string();
    lock.push(".lock");
    std::fs::write(&lock, format!("{}\n", other.id())).expect("write the lock");
    pod.start();
    let settled = wait_for(WAIT, async || {
        let ready = pod
            .get("/readyz")
            .await
            .is_some_and(|(code, _)| code == 200);
        (ready || pod.agent_finished()).then_some(())
    })
    .await;
    let _ = other.kill();
    let _ = other.wait();
    settled.expect("the agent is ready or ended");
    assert!(
        !pod.agent_finished(),
        "the server did not start over the stale socket lock (see its log)"
    );
    let mut root = pod.root().await;
    assert_eq!(scalar(&mut root, "SELECT @@read_only").await, "1");
    drop(root);
    pod.stop().await.expect("a clean stop");
}
