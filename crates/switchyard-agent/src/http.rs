//! The agent's HTTP endpoint (port 9104 in a pod), HTTP/1.1 on hyper:
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /livez` | 200 while the server answers `SELECT 1` within 3 s, or while the agent deliberately runs none (bootstrapping, provisioning, an uninitialized or failed instance: a restart would not help); 503 while it starts or upgrades (the startup probe's window) and when it does not answer (hung: the kubelet restarts the container) |
//! | `GET /readyz` | 200 when the server runs and, if it is a replica, both replication threads run and its lag is within `max_lag_seconds`; 503 otherwise, the body saying why |
//! | `GET /status` | 200, JSON ([`crate::status::Status`]) |
//! | `GET /backup` | MariaDB donors: 200 and a `mariadb-backup --stream=xbstream` body (chunked; cut short if the backup fails), for the replication account (HTTP Basic); 401 without it, 409 while another backup streams, 503 unless the server runs, 404 on MySQL |
//!
//! Bodies are plain text except `/status` and `/backup`.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::status::Shared;

/// A response body: a whole text, or a stream.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Serves the endpoints on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(req, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body: String = body.into();
    body.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_else(|_| Response::new(empty()))
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

async fn route(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    if req.method() != http::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET");
    }
    match req.uri().path() {
        "/livez" => match shared.liveness().await {
            Ok(body) => text(StatusCode::OK, body),
            Err(body) => text(StatusCode::SERVICE_UNAVAILABLE, body),
        },
        "/readyz" => match shared.readiness().await.0 {
            Ok(()) => text(StatusCode::OK, "ready"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        },
        "/status" => {
            let status = shared.status().await;
            let json = serde_json::to_string(&status).unwrap_or_else(|_| "{}".into());
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(
                    Full::new(Bytes::from(json))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .unwrap_or_else(|_| Response::new(empty()))
        }
        "/backup" => crate::donor::backup(req.headers(), shared).await,
        other => text(
            StatusCode::NOT_FOUND,
            format!("no {other}: the agent serves /livez, /readyz, /status and /backup"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        assert_eq!(basic_auth("repl", "pw"), "Basic cmVwbDpwdw==");
    }
}
