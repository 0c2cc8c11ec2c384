//! End to end on Kubernetes, simulated: a hung server (its process stopped, same pid, never
//! resumed) in a one-instance MariaDB 10.11 cluster. The agent's `/readyz` fails, the pod
//! turns NotReady, the cluster reports the instance not ready (`Degraded`, not `Available`),
//! the agent's `/livez` fails until the kubelet restarts the container, and the cluster comes
//! back Ready on the restarted server.
//!
//! Needs root (network namespaces, chroots). Run it with
//! `cargo test -p switchyard --test kube_hang -- --nocapture` to see the log.

#[allow(
    dead_code,
    reason = "each e2e test binary uses part of the shared world"
)]
mod common;

use std::time::{Duration, Instant};

use common::{Log, World, until};
use k8s_openapi::api::core::v1::Pod;
use switchyard_kube::crd::{MySQLCluster, MySQLClusterSpec};
use switchyard_testbed::ServerKind;

/// From nothing to Ready (one agent install and a bootstrap).
const READY_WITHIN: Duration = Duration::from_secs(120);
/// The pod NotReady and the cluster Degraded, from the stop: three failed readiness probes
/// and a reconcile, with room for a loaded machine.
const NOTICED_WITHIN: Duration = Duration::from_secs(60);
/// The container restarted by its liveness probe and the cluster Ready again, from the
/// stop: six failed liveness probes, the grace period, a new start.
const RECOVERED_WITHIN: Duration = Duration::from_secs(180);

fn condition(c: &MySQLCluster, kind: &str) -> Option<String> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|x| x.type_ == kind)
        .map(|x| x.status.clone())
}

fn pod_ready(p: &Pod) -> bool {
    switchyard_kubelet::pod_ready(p)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "mysqld"))
        .map_or(0, |c| c.restart_count)
}

fn summary(c: &MySQLCluster) -> String {
    let s = c.status.clone().unwrap_or_default();
    format!(
        "phase {:?} ready {:?} Available {:?} Degraded {:?}",
        s.phase,
        s.ready,
        condition(c, "Available"),
        condition(c, "Degraded")
    )
}

/// The host pid of the agent's server: the child of the container's PID 1 (the agent)
/// whose name is `mariadbd`.
fn server_pid(agent: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{agent}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "mariadbd" {
                return Some(child);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_turns_the_pod_not_ready_and_the_cluster_degraded_until_restarted() {
    let _slots = switchyard_testbed::slots::acquire(1)
        .await
        .expect("server slots");
    let log = Log::new("kube-e2e-hang.log");
    let version = common::server_version(ServerKind::Mariadb1011).await;
    let mut world = World::start(log.clone()).await;
    let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
        "flavor": "mariadb",
        "version": version,
        "replicas": 1,
        "storage": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "config": {"innodb_buffer_pool_size": "67108864"},
    }))
    .expect("a spec");
    world.create(spec).await;
    until(READY_WITHIN, "the cluster Ready", async || {
        let c = world.cluster().await;
        let s = c.status.clone().unwrap_or_default();
        if s.phase.as_deref() == Some("Ready") && s.ready.as_deref() == Some("1/1") {
            Ok(())
        } else {
            Err(summary(&c))
        }
    })
    .await;
    // The pod Ready too (its readiness probe passed), so that NotReady below is a change.
    until(READY_WITHIN, "the pod Ready", async || {
        let p = world.pod(0).await.ok_or("no pod")?;
        if pod_ready(&p) {
            Ok(())
        } else {
            Err("not ready".to_owned())
        }
    })
    .await;
    let pod_name = world.names.pod(0);
    let agent = world
        .kubelet()
        .container_pid(common::NS, &pod_name, "mysqld")
        .expect("the agent's pid");
    let server = until(Duration::from_secs(10), "the server's pid", async || {
        server_pid(agent).ok_or_else(|| format!("no mariadbd child of {agent}"))
    })
    .await;
    let before = restarts(&world.pod(0).await.expect("the pod"));
    // The agent reports the server's pid as its own PID namespace numbers it, not the host.
    let reported = world
        .agent_status(0)
        .await
        .map(|s| s["server_pid"].clone())
        .unwrap_or_default();
    log.say(
        "test",
        format!("mariadbd: host pid {server}, agent's /status server_pid {reported}"),
    );
    log.say("test", format!("SIGSTOP to mariadbd (pid {server})"));
    let stopped = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server).expect("a pid")),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("stop the server");

    // The pod NotReady (the readiness probe), and the cluster Degraded, not Available.
    // Both before the container restarts (which would make it NotReady by itself).
    until(NOTICED_WITHIN, "the pod NotReady", async || {
        let p = world.pod(0).await.ok_or("no pod")?;
        assert_eq!(
            restarts(&p),
            before,
            "the container restarted before its readiness probe made the pod NotReady"
        );
        if pod_ready(&p) {
            Err(format!("ready, {} restarts", restarts(&p)))
        } else {
            Ok(())
        }
    })
    .await;
    log.say(
        "test",
        format!("pod NotReady after {:.1}s", stopped.elapsed().as_secs_f64()),
    );
    until(NOTICED_WITHIN, "the cluster Degraded", async || {
        let c = world.cluster().await;
        let p = world.pod(0).await.ok_or("no pod")?;
        assert_eq!(
            restarts(&p),
            before,
            "the container restarted before the cluster reported it Degraded"
        );
        if condition(&c, "Degraded").as_deref() == Some("True")
            && condition(&c, "Available").as_deref() == Some("False")
            && c.status.as_ref().and_then(|s| s.ready.as_deref()) == Some("0/1")
        {
            Ok(())
        } else {
            Err(summary(&c))
        }
    })
    .await;
    log.say(
        "test",
        format!(
            "cluster Degraded after {:.1}s",
            stopped.elapsed().as_secs_f64()
        ),
    );

    // The liveness probe restarts the container; the cluster is Ready again.
    until(RECOVERED_WITHIN, "the container restarted", async || {
        let p = world.pod(0).await.ok_or("no pod")?;
        if restarts(&p) > before {
            Ok(())
        } else {
            Err(format!("{} restarts", restarts(&p)))
        }
    })
    .await;
    log.say(
        "test",
        format!(
            "container restarted after {:.1}s",
            stopped.elapsed().as_secs_f64()
        ),
    );
    until(RECOVERED_WITHIN, "the cluster Ready again", async || {
        let c = world.cluster().await;
        if condition(&c, "Degraded").as_deref() == Some("False")
            && condition(&c, "Available").as_deref() == Some("True")
        {
            Ok(())
        } else {
            Err(summary(&c))
        }
    })
    .await;
    log.say(
        "test",
        format!(
            "cluster Ready again after {:.1}s",
            stopped.elapsed().as_secs_f64()
        ),
    );
    world.shutdown().await;
}
