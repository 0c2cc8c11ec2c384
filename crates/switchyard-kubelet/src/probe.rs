//! Probes as the kubelet runs them: `httpGet` from the host to the pod's address (a status
//! from 200 to 399 succeeds), `tcpSocket` (the connection opens), `exec` (the command, run
//! inside the container, exits 0), each within `timeoutSeconds`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::container;

/// What one probe run found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Whether it succeeded.
    pub(crate) ok: bool,
    /// What it saw (the HTTP status and body start, the command's output, the error).
    pub(crate) detail: String,
}

impl Outcome {
    fn ok(detail: impl Into<String>) -> Outcome {
        Outcome {
            ok: true,
            detail: detail.into(),
        }
    }
    fn failed(detail: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The probe's timing, with the kubelet's defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

fn count(v: Option<i32>, default: i32) -> u32 {
    u32::try_from(v.unwrap_or(default).max(1)).unwrap_or(1)
}

impl Timing {
    /// The probe's timing; `period_cap` shortens periods longer than it.
    pub(crate) fn of(p: &Probe, period_cap: Option<Duration>) -> Timing {
        let mut period = secs(p.period_seconds, 10).max(Duration::from_secs(1));
        if let Some(cap) = period_cap {
            period = period.min(cap);
        }
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period,
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }
    }
}

/// The number of a probe's port (a number, or a named port of the container).
fn port_number(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} is out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no port named `{name}` in container {}", c.name)),
    }
}

/// Runs probe `p` of container `c` once. `init` is the container's PID 1 (for `exec`),
/// `env` its environment.
pub(crate) async fn run(
    p: &Probe,
    c: &Container,
    pod_ip: &str,
    init: Option<u32>,
    env: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    if let Some(h) = &p.http_get {
        let port = match port_number(&h.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::failed(e),
        };
        if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Outcome::failed("only HTTP probes are supported");
        }
        let host = h.host.clone().unwrap_or_else(|| pod_ip.to_owned());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        return match tokio::time::timeout(timeout, http_get(&host, port, &path, &headers)).await {
            Ok(Ok((status, body))) if (200..400).contains(&status) => {
                Outcome::ok(format!("HTTP {status}: {body}"))
            }
            Ok(Ok((status, body))) => Outcome::failed(format!("HTTP {status}: {body}")),
            Ok(Err(e)) => Outcome::failed(format!("GET http://{host}:{port}{path}: {e}")),
            Err(_) => Outcome::failed(format!(
                "GET http://{host}:{port}{path}: no answer within {timeout:?}"
            )),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let port = match port_number(&t.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::failed(e),
        };
        let host = t.host.clone().unwrap_or_else(|| pod_ip.to_owned());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::ok(format!("connected to {host}:{port}")),
            Ok(Err(e)) => Outcome::failed(format!("connect {host}:{port}: {e}")),
            Err(_) => Outcome::failed(format!("connect {host}:{port}: timed out")),
        };
    }
    if let Some(e) = &p.exec {
        let Some(init) = init else {
            return Outcome::failed("the container has no process");
        };
        let argv = e.command.clone().unwrap_or_default();
        return match container::exec_in(init, &argv, env, timeout).await {
            Ok((Some(0), out)) => Outcome::ok(out),
            Ok((Some(code), out)) => Outcome::failed(format!("exit code {code}: {}", out.trim())),
            Ok((None, _)) => Outcome::failed(format!("command timed out after {timeout:?}")),
            Err(err) => Outcome::failed(err.to_string()),
        };
    }
    Outcome::failed("a probe with no handler the simulated kubelet supports (grpc?)")
}

/// One HTTP/1.1 GET; the status code and the start of the body.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/simulated\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 || response.len() > 64 * 1024 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.")
                .and_then(|r| r.split_whitespace().nth(1))
        })
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP response: {:?}",
                    text.chars().take(40).collect::<String>()
                ),
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().chars().take(300).collect())
        .unwrap_or_default();
    Ok((status, body))
}
