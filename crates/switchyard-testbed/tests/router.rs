//! The router against plain TCP echo servers (no MySQL needed): routing by
//! role, the read pool, draining, closing sessions, refusing without a
//! primary, moving a backend, and stopping on drop.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use switchyard_testbed::router::{Router, RouterError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long any condition in these tests may take to become true.
const DEADLINE: Duration = Duration::from_secs(5);

/// A TCP server that greets each connection with its tag byte and then
/// echoes. Stopped (with every session) on drop.
struct Echo {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start(tag: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                sessions.spawn(async move {
                    if stream.write_all(&[tag]).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {DEADLINE:?}"))
}

/// Connects and returns the stream with the tag of the backend reached.
async fn connect(addr: SocketAddr) -> (TcpStream, u8) {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect to router");
    let mut tag = [0u8];
    within("greeting", stream.read_exact(&mut tag))
        .await
        .expect("greeting from backend");
    (stream, tag[0])
}

/// Proves the session is alive with an echo round trip.
async fn echo(stream: &mut TcpStream) {
    stream.write_all(b"ping").await.expect("send");
    let mut buf = [0u8; 4];
    within("echo", stream.read_exact(&mut buf))
        .await
        .expect("echo back");
    assert_eq!(&buf, b"ping");
}

/// Waits until the peer has closed the stream (EOF or reset).
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match within("close", stream.read(&mut buf)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the session to be closed, read {n} bytes"),
    }
}

/// Waits for `cond` to hold, checking every 10 ms, up to the deadline.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    within(what, async {
        loop {
            tick.tick().await;
            if cond().await {
                return;
            }
        }
    })
    .await;
}

async fn three() -> (Vec<Echo>, Router) {
    let mut echos = Vec::new();
    for tag in 0..3 {
        echos.push(Echo::start(tag).await);
    }
    let backends = echos.iter().zip(0u32..).map(|(e, o)| (o, e.addr)).collect();
    let router = Router::start(backends).await.expect("start router");
    (echos, router)
}

#[tokio::test]
async fn primary_endpoint_follows_set_primary_and_closes_old_sessions() {
    let (_echos, router) = three().await;
    router.set_primary(Some(0)).await.expect("set primary");
    let (mut old, tag) = connect(router.primary_addr()).await;
    assert_eq!(tag, 0);
    let (mut old_read, read_tag) = connect(router.read_addr()).await;
    assert_ne!(read_tag, 0, "the read pool excludes the primary");
    echo(&mut old).await;

    let closed_count = router.set_primary(Some(2)).await.expect("switch");
    assert_eq!(closed_count, 1, "one primary session to the old primary");
    closed(&mut old).await;
    let (mut new, tag) = connect(router.primary_addr()).await;
    assert_eq!(tag, 2);
    echo(&mut new).await;
    // A read session is not a primary session: it stays, even if it went to
    // the new primary.
    echo(&mut old_read).await;
    assert_eq!(router.primary(), Some(2));

    let stats = router.stats();
    assert_eq!(stats.backends[&0].primary_opened, 1);
    assert_eq!(stats.backends[&0].closed_by_router, 1);
    assert_eq!(stats.backends[&2].primary_opened, 1);
    assert_eq!(stats.backends[&1].primary_opened, 0);

    assert!(matches!(
        router.set_primary(Some(9)).await,
        Err(RouterError::UnknownBackend { ordinal: 9 })
    ));
    assert_eq!(
        router.primary(),
        Some(2),
        "a refused change changes nothing"
    );
}

#[tokio::test]
async fn no_primary_closes_new_connections_at_once() {
    let (_echos, router) = three().await;
    let mut stream = within("connect", TcpStream::connect(router.primary_addr()))
        .await
        .expect("the listener accepts");
    closed(&mut stream).await;

    router.set_primary(Some(1)).await.expect("set primary");
    let (mut kept, _) = connect(router.primary_addr()).await;
    assert_eq!(router.set_primary(None).await.expect("unset"), 1);
    closed(&mut kept).await;
    let mut refused = TcpStream::connect(router.primary_addr())
        .await
        .expect("the listener accepts");
    closed(&mut refused).await;
    eventually("refusals counted", async || {
        router.stats().primary_refused == 2
    })
    .await;
}

#[tokio::test]
async fn read_endpoint_round_robins_over_undrained_replicas() {
    let (_echos, router) = three().await;
    router.set_primary(Some(0)).await.expect("set primary");
    let mut seen = BTreeMap::new();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let (s, tag) = connect(router.read_addr()).await;
        *seen.entry(tag).or_insert(0) += 1;
        sessions.push((s, tag));
    }
    assert_eq!(seen, BTreeMap::from([(1, 3), (2, 3)]));

    router.drain(1, Duration::ZERO).await.expect("drain");
    assert_eq!(router.is_drained(1), Some(true));
    for (s, tag) in &mut sessions {
        if *tag == 1 {
            closed(s).await;
        } else {
            echo(s).await;
        }
    }
    for _ in 0..4 {
        let (_, tag) = connect(router.read_addr()).await;
        assert_eq!(tag, 2, "a drained replica gets no new reads");
    }
    let before = router.stats().backends[&1].read_opened;
    assert_eq!(before, 3);

    // With every replica drained, reads fall back to the primary.
    router.drain(2, Duration::ZERO).await.expect("drain");
    let (_, tag) = connect(router.read_addr()).await;
    assert_eq!(tag, 0);
    // With the primary drained too, the pool is empty: closed at once.
    router.drain(0, Duration::ZERO).await.expect("drain");
    let mut refused = TcpStream::connect(router.read_addr())
        .await
        .expect("accept");
    closed(&mut refused).await;

    router.undrain(1).expect("undrain");
    let (_, tag) = connect(router.read_addr()).await;
    assert_eq!(tag, 1);
    // Primary-endpoint traffic ignores draining.
    let (_, tag) = connect(router.primary_addr()).await;
    assert_eq!(tag, 0);
    eventually("refusal counted", async || router.stats().read_refused == 1).await;
}

#[tokio::test]
async fn drain_grace_keeps_sessions_until_it_ends_and_undrain_cancels_it() {
    let (_echos, router) = three().await;
    router.set_primary(Some(0)).await.expect("set primary");
    let (mut first, tag) = connect(router.read_addr()).await;
    assert_eq!(tag, 1);

    // Undrained before the grace ends: the session survives the timer.
    router
        .drain(1, Duration::from_millis(200))
        .await
        .expect("drain");
    assert_eq!(router.pending_drain_closes(), 1);
    router.undrain(1).expect("undrain");
    eventually("the first timer ran out", async || {
        router.pending_drain_closes() == 0
    })
    .await;
    echo(&mut first).await;
    // Drain again: the session lives through the grace, then is closed.
    router
        .drain(1, Duration::from_millis(500))
        .await
        .expect("drain");
    echo(&mut first).await;
    closed(&mut first).await;
    assert_eq!(router.pending_drain_closes(), 0);
    assert_eq!(router.stats().backends[&1].closed_by_router, 1);
}

#[tokio::test]
async fn close_connections_to_ends_live_sessions_of_that_backend_only() {
    let (_echos, router) = three().await;
    router.set_primary(Some(1)).await.expect("set primary");
    let (mut writer, tag) = connect(router.primary_addr()).await;
    assert_eq!(tag, 1);
    router.drain(2, Duration::ZERO).await.expect("drain 2");
    // The pool is {0} now; drain 0 too so the read endpoint reaches 1 (the
    // primary fallback), giving a read session on the same backend.
    let (mut other, other_tag) = connect(router.read_addr()).await;
    assert_eq!(other_tag, 0);
    router.drain(0, Duration::ZERO).await.expect("drain 0");
    closed(&mut other).await;
    let (mut reader, tag) = connect(router.read_addr()).await;
    assert_eq!(tag, 1);
    router.undrain(0).expect("undrain 0");
    let (mut bystander, tag) = connect(router.read_addr()).await;
    assert_eq!(tag, 0);

    echo(&mut writer).await;
    let n = router.close_connections_to(1).await.expect("close");
    assert_eq!(n, 2);
    closed(&mut writer).await;
    closed(&mut reader).await;
    echo(&mut bystander).await;
    // Routing is unchanged: new primary sessions still go to 1.
    let (_kept, tag) = connect(router.primary_addr()).await;
    assert_eq!(tag, 1);
    let stats = router.stats();
    assert_eq!(stats.backends[&1].closed_by_router, 2);
    assert_eq!(stats.backends[&1].active, 1);
    assert!(router.close_connections_to(7).await.is_err());
}

#[tokio::test]
async fn moved_backend_and_dead_backend() {
    let (mut echos, router) = three().await;
    router.set_primary(Some(1)).await.expect("set primary");
    // The instance restarts on another port.
    let old_addr = echos[1].addr;
    echos[1] = Echo::start(11).await;
    router.set_backend_addr(1, echos[1].addr);
    assert_ne!(router.backend_addr(1), Some(old_addr));
    let (_, tag) = connect(router.primary_addr()).await;
    assert_eq!(tag, 11);

    // A backend whose port is closed: the client is closed, not left hanging.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    router.set_backend_addr(5, dead_addr);
    router.set_primary(Some(5)).await.expect("set primary");
    let mut s = TcpStream::connect(router.primary_addr())
        .await
        .expect("accept");
    closed(&mut s).await;
    eventually("connect failure counted", async || {
        router.stats().backends[&5].connect_failures == 1
    })
    .await;
}

#[tokio::test]
async fn dropping_the_router_stops_listeners_and_sessions() {
    let (_echos, router) = three().await;
    router.set_primary(Some(0)).await.expect("set primary");
    let (mut session, _) = connect(router.primary_addr()).await;
    let (mut read, _) = connect(router.read_addr()).await;
    let (primary_addr, read_addr) = (router.primary_addr(), router.read_addr());
    drop(router);
    closed(&mut session).await;
    closed(&mut read).await;
    for addr in [primary_addr, read_addr] {
        eventually("listener closed", async || {
            TcpStream::connect(addr).await.is_err()
        })
        .await;
    }
}
