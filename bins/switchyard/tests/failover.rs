//! `switchyard failover CLUSTER --to N --state DIR` against a local cluster on real servers
//! (MariaDB 10.11, three instances, asynchronous replication) that an engine runs in this
//! test: a bad N and the primary named are invalid input (64) and write nothing; a request
//! while the primary answers is refused (2); once the primary is frozen, the engine (which
//! never fails an asynchronous primary over on its own) refuses the forced failover for want
//! of a proof that no acknowledged write is lost (2, with the engine's reason), and runs it
//! with `--accept-data-loss` (0): instance 1 is then the writable primary, and `switchyard
//! metrics` counts one failover, not lossless.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_local::state::StateFile;
use switchyard_local::{Apply, ClusterSpec, LocalCluster, LocalRuntime};
use switchyard_plan::ClusterRuntime as _;
use switchyard_plan::decide::Policy;
use switchyard_plan::engine::Engine;
use switchyard_testbed::ServerKind;

/// How long any one condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(60);

async fn failover(state: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["failover", "shop", "--state"])
        .arg(state)
        .args(args)
        .args(["--wait-s", "45"]);
    tokio::task::spawn_blocking(move || cmd.output().expect("run switchyard failover"))
        .await
        .expect("join")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_is_refused_without_a_proof_and_runs_when_the_loss_is_accepted() {
    let cluster =
        LocalCluster::start(ClusterSpec::new(ServerKind::Mariadb1011, 3).supervised(false))
            .await
            .expect("start the cluster");
    let target = cluster
        .config_target(&[("max_connections", "300")], Apply::Online)
        .expect("the target");
    let dir = cluster
        .state()
        .path()
        .parent()
        .expect("state dir")
        .to_owned();
    let state = StateFile::in_dir(&dir);

    // Bad input: nothing written.
    let seq = state.read().expect("read").record.seq;
    let out = failover(&dir, &["--to", "7"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no instance 7"),
        "{}",
        text(&out)
    );
    let out = failover(&dir, &["--to", "0"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is the primary already"),
        "{}",
        text(&out)
    );
    assert_eq!(
        state.read().expect("read").record.seq,
        seq,
        "nothing written"
    );

    // The engine runs the cluster from here on.
    let stop = Arc::new(AtomicBool::new(false));
    let engine = Engine::new(LocalRuntime::new(&cluster), target, Policy::default());
    let running = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if engine.step().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // A primary that answers is not failed over.
    let out = failover(&dir, &["--to", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answers"),
        "{}",
        text(&out)
    );

    // The primary hangs (a crashed one would be started again first); the engine sees it
    // failing.
    cluster.testbed().instances()[0]
        .pause()
        .expect("freeze the primary");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while state.read().expect("read").record.detection.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine never saw the primary failing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Asynchronous: no proof that nothing acknowledged is lost.
    let out = failover(&dir, &["--to", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("asynchronous") && err.contains("--accept-data-loss"),
        "{}",
        text(&out)
    );
    assert_eq!(
        state.read().expect("read").cluster.primary,
        0,
        "nothing promoted"
    );

    // Accepted: instance 1 takes over.
    let out = failover(&dir, &["--to", "1", "--accept-data-loss"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not proven lossless"),
        "{}",
        text(&out)
    );
    let doc = state.read().expect("read");
    assert_eq!(doc.cluster.primary, 1);
    let metrics = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["metrics", "shop", "--state"])
        .arg(&dir)
        .output()
        .expect("run switchyard metrics");
    let body = String::from_utf8_lossy(&metrics.stdout);
    assert_eq!(metrics.status.code(), Some(0), "{}", text(&metrics));
    for line in [
        "switchyard_failovers_total 1",
        "switchyard_last_failover_lossless 0",
        "switchyard_semi_sync_wait_replicas 0",
        "switchyard_last_failover_duration_seconds ",
    ] {
        assert!(body.contains(line), "{line} missing: {body}");
    }
    assert_eq!(doc.record.failovers, 1);
    assert!(doc.record.failover_request.is_none(), "the request is done");
    stop.store(true, Ordering::SeqCst);
    running.await.expect("the engine task");
    cluster.testbed().instances()[0]
        .resume()
        .expect("thaw the old primary");
    let observed = LocalRuntime::new(&cluster)
        .observe()
        .await
        .expect("observe");
    let new = observed
        .instances
        .iter()
        .find(|i| i.ordinal == 1)
        .expect("instance 1");
    assert!(new.writable, "{new:#?}");
}
