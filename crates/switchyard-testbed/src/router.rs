//! A loopback TCP router in front of a test cluster: a primary endpoint and a
//! read endpoint that follow role changes, like the Services the operator
//! manages on Kubernetes.
//!
//! The router knows the cluster's instances by ordinal. It binds two
//! ephemeral ports on `127.0.0.1`:
//!
//! - the **primary endpoint** ([`Router::primary_addr`]) sends each new
//!   connection to the instance named by [`Router::set_primary`]. With no
//!   primary, a new connection is accepted and closed at once, so a client
//!   gets an error (a MySQL client sees "lost connection during handshake")
//!   instead of hanging;
//! - the **read endpoint** ([`Router::read_addr`]) round-robins new
//!   connections over the read pool: every instance that is not drained and
//!   is not the primary. When no such replica is left, the pool falls back
//!   to the primary (if it is not drained itself), so reads keep working
//!   on a one-instance cluster or while every replica is drained. With an
//!   empty pool the connection is closed at once.
//!
//! Like a Kubernetes Service, the router never moves an established
//! connection: a role change only affects new connections. Existing
//! sessions are closed only when asked: [`Router::close_connections_to`]
//! closes every session proxied to one instance (what the operator does to
//! a demoted primary), and [`Router::set_primary`] closes the old primary's
//! primary-endpoint sessions by default
//! ([`RouterConfig::close_old_primary_sessions`]); its read-endpoint
//! sessions stay open, since reads from a demoted primary are as good as
//! reads from any replica. [`Router::drain`] takes an instance out of the
//! read pool and closes its read-endpoint sessions after a grace period;
//! primary-endpoint sessions are not affected by draining.
//!
//! Dropping the [`Router`] stops both listeners, every proxied connection
//! and every pending drain timer.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Errors returned by the [`Router`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// Binding one of the two loopback listeners failed.
    #[error("router: cannot bind the {endpoint} endpoint on 127.0.0.1: {source}")]
    Bind {
        /// Which endpoint was being bound.
        endpoint: Endpoint,
        /// The underlying socket error.
        #[source]
        source: std::io::Error,
    },
    /// An ordinal was named that the router has no backend for.
    #[error("router: no backend with ordinal {ordinal}; add it with set_backend_addr first")]
    UnknownBackend {
        /// The ordinal that was asked for.
        ordinal: u32,
    },
    /// The same ordinal appeared twice in the backend list.
    #[error("router: backend ordinal {ordinal} is listed twice")]
    DuplicateBackend {
        /// The repeated ordinal.
        ordinal: u32,
    },
}

impl RouterError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "router_bind",
            Self::UnknownBackend { .. } => "router_unknown_backend",
            Self::DuplicateBackend { .. } => "router_duplicate_backend",
        }
    }
}

/// The two endpoints a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Connections that follow the primary.
    Primary,
    /// Connections spread over the read pool.
    Read,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Primary => "primary",
            Self::Read => "read",
        })
    }
}

/// Router settings. [`RouterConfig::default`] suits the tests and benchmarks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// How long to wait for a backend to accept a TCP connection before the
    /// client connection is closed. Default 2 s.
    pub connect_timeout: Duration,
    /// Whether [`Router::set_primary`] closes the primary-endpoint sessions
    /// of the previous primary when the primary changes (or becomes `None`).
    /// Default `true`: a demoted primary keeps no writer sessions.
    pub close_old_primary_sessions: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            close_old_primary_sessions: true,
        }
    }
}

/// Connection counters for one backend, per endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    /// Connections opened through the primary endpoint.
    pub primary_opened: u64,
    /// Connections opened through the read endpoint.
    pub read_opened: u64,
    /// Connections that ended, for any reason (client, backend or router).
    pub closed: u64,
    /// Of `closed`, those the router closed itself (close, role change,
    /// drain).
    pub closed_by_router: u64,
    /// Backend connects that failed or timed out (the client connection
    /// was closed).
    pub connect_failures: u64,
    /// Connections open right now.
    pub active: u64,
}

/// A snapshot of the router's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouterStats {
    /// Per-backend counters, by ordinal.
    pub backends: BTreeMap<u32, BackendStats>,
    /// Connections to the primary endpoint closed at once because there was
    /// no primary.
    pub primary_refused: u64,
    /// Connections to the read endpoint closed at once because the read pool
    /// was empty.
    pub read_refused: u64,
}

#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    drained: bool,
    /// Bumped by every drain and undrain, so a drain timer can tell whether
    /// the drain it was started for still holds.
    drain_epoch: u64,
    stats: BackendStats,
}

struct Conn {
    ordinal: u32,
    endpoint: Endpoint,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    backends: BTreeMap<u32, Backend>,
    primary: Option<u32>,
    next_read: usize,
    conns: HashMap<u64, Conn>,
    timers: Vec<AbortHandle>,
    primary_refused: u64,
    read_refused: u64,
}

struct Shared {
    config: RouterConfig,
    state: Mutex<State>,
    next_conn: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters at worst slightly
        // off; keep routing rather than poisoning every caller.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running router. See the [module documentation](self).
pub struct Router {
    shared: Arc<Shared>,
    primary_addr: SocketAddr,
    read_addr: SocketAddr,
    listeners: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("primary_addr", &self.primary_addr)
            .field("read_addr", &self.read_addr)
            .field("primary", &self.primary())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Starts a router over `backends` (ordinal, address) with the default
    /// [`RouterConfig`] and no primary. Must be called inside a tokio
    /// runtime.
    pub async fn start(backends: Vec<(u32, SocketAddr)>) -> Result<Self, RouterError> {
        Self::start_with(backends, RouterConfig::default()).await
    }

    /// Starts a router with an explicit configuration and no primary.
    pub async fn start_with(
        backends: Vec<(u32, SocketAddr)>,
        config: RouterConfig,
    ) -> Result<Self, RouterError> {
        let mut state = State::default();
        for (ordinal, addr) in backends {
            let backend = Backend {
                addr,
                drained: false,
                drain_epoch: 0,
                stats: BackendStats::default(),
            };
            if state.backends.insert(ordinal, backend).is_some() {
                return Err(RouterError::DuplicateBackend { ordinal });
            }
        }
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let bind = |endpoint| async move {
            TcpListener::bind(loopback)
                .await
                .map_err(|source| RouterError::Bind { endpoint, source })
        };
        let primary = bind(Endpoint::Primary).await?;
        let read = bind(Endpoint::Read).await?;
        let local = |l: &TcpListener, endpoint| {
            l.local_addr()
                .map_err(|source| RouterError::Bind { endpoint, source })
        };
        let primary_addr = local(&primary, Endpoint::Primary)?;
        let read_addr = local(&read, Endpoint::Read)?;
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(state),
            next_conn: AtomicU64::new(0),
        });
        let listeners = vec![
            tokio::spawn(accept_loop(Arc::clone(&shared), primary, Endpoint::Primary)),
            tokio::spawn(accept_loop(Arc::clone(&shared), read, Endpoint::Read)),
        ];
        Ok(Self {
            shared,
            primary_addr,
            read_addr,
            listeners,
        })
    }

    /// The address of the primary endpoint (`127.0.0.1:port`).
    pub fn primary_addr(&self) -> SocketAddr {
        self.primary_addr
    }

    /// The address of the read endpoint (`127.0.0.1:port`).
    pub fn read_addr(&self) -> SocketAddr {
        self.read_addr
    }

    /// The ordinal new primary-endpoint connections go to, if any.
    pub fn primary(&self) -> Option<u32> {
        self.shared.lock().primary
    }

    /// Points the primary endpoint at `ordinal` (or at nothing), for new
    /// connections. When the primary changes and
    /// [`RouterConfig::close_old_primary_sessions`] is set, the old
    /// primary's primary-endpoint sessions are closed before this returns;
    /// its read-endpoint sessions stay open. Returns how many sessions were
    /// closed.
    pub async fn set_primary(&self, ordinal: Option<u32>) -> Result<usize, RouterError> {
        let closing = {
            let mut state = self.shared.lock();
            if let Some(o) = ordinal
                && !state.backends.contains_key(&o)
            {
                return Err(RouterError::UnknownBackend { ordinal: o });
            }
            let old = std::mem::replace(&mut state.primary, ordinal);
            match old {
                Some(old)
                    if ordinal != Some(old) && self.shared.config.close_old_primary_sessions =>
                {
                    take_conns(&mut state, |c| {
                        c.ordinal == old && c.endpoint == Endpoint::Primary
                    })
                }
                _ => Vec::new(),
            }
        };
        Ok(finish_close(closing).await)
    }

    /// Closes every client session (both endpoints) proxied to `ordinal`;
    /// the clients see end-of-file. Routing is unchanged. Returns how many
    /// sessions were closed, once their sockets are closed.
    pub async fn close_connections_to(&self, ordinal: u32) -> Result<usize, RouterError> {
        let closing = {
            let mut state = self.shared.lock();
            if !state.backends.contains_key(&ordinal) {
                return Err(RouterError::UnknownBackend { ordinal });
            }
            take_conns(&mut state, |c| c.ordinal == ordinal)
        };
        Ok(finish_close(closing).await)
    }

    /// Takes `ordinal` out of the read pool: it gets no new read-endpoint
    /// connections. Its existing read-endpoint sessions are closed after
    /// `grace` (at once for [`Duration::ZERO`]), unless it is undrained
    /// before then. Primary-endpoint traffic is not affected.
    pub async fn drain(&self, ordinal: u32, grace: Duration) -> Result<(), RouterError> {
        let (epoch, closing) = {
            let mut state = self.shared.lock();
            let backend = state
                .backends
                .get_mut(&ordinal)
                .ok_or(RouterError::UnknownBackend { ordinal })?;
            backend.drained = true;
            backend.drain_epoch += 1;
            let epoch = backend.drain_epoch;
            let closing = if grace.is_zero() {
                take_conns(&mut state, |c| {
                    c.ordinal == ordinal && c.endpoint == Endpoint::Read
                })
            } else {
                Vec::new()
            };
            (epoch, closing)
        };
        if grace.is_zero() {
            finish_close(closing).await;
            return Ok(());
        }
        let weak = Arc::downgrade(&self.shared);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(shared) = weak.upgrade() else { return };
            let closing = {
                let mut state = shared.lock();
                let still = state
                    .backends
                    .get(&ordinal)
                    .is_some_and(|b| b.drained && b.drain_epoch == epoch);
                if !still {
                    return;
                }
                take_conns(&mut state, |c| {
                    c.ordinal == ordinal && c.endpoint == Endpoint::Read
                })
            };
            drop(shared);
            finish_close(closing).await;
        });
        let mut state = self.shared.lock();
        state.timers.retain(|t| !t.is_finished());
        state.timers.push(timer.abort_handle());
        Ok(())
    }

    /// Puts `ordinal` back into the read pool and cancels a pending drain
    /// close.
    pub fn undrain(&self, ordinal: u32) -> Result<(), RouterError> {
        let mut state = self.shared.lock();
        let backend = state
            .backends
            .get_mut(&ordinal)
            .ok_or(RouterError::UnknownBackend { ordinal })?;
        backend.drained = false;
        backend.drain_epoch += 1;
        Ok(())
    }

    /// Whether `ordinal` is drained (out of the read pool).
    pub fn is_drained(&self, ordinal: u32) -> Option<bool> {
        self.shared.lock().backends.get(&ordinal).map(|b| b.drained)
    }

    /// How many drains are still waiting for their grace to end (a timer
    /// whose drain was lifted by [`undrain`](Self::undrain) counts until its
    /// grace ends, then closes nothing).
    pub fn pending_drain_closes(&self) -> usize {
        let mut state = self.shared.lock();
        state.timers.retain(|t| !t.is_finished());
        state.timers.len()
    }

    /// Sets the address of `ordinal` for new connections, adding the backend
    /// (undrained, with zeroed counters) if the router did not know it.
    /// Existing sessions keep their old backend socket.
    pub fn set_backend_addr(&self, ordinal: u32, addr: SocketAddr) {
        let mut state = self.shared.lock();
        state
            .backends
            .entry(ordinal)
            .and_modify(|b| b.addr = addr)
            .or_insert(Backend {
                addr,
                drained: false,
                drain_epoch: 0,
                stats: BackendStats::default(),
            });
    }

    /// The address new connections to `ordinal` go to.
    pub fn backend_addr(&self, ordinal: u32) -> Option<SocketAddr> {
        self.shared.lock().backends.get(&ordinal).map(|b| b.addr)
    }

    /// A snapshot of the connection counters.
    pub fn stats(&self) -> RouterStats {
        let state = self.shared.lock();
        RouterStats {
            backends: state.backends.iter().map(|(o, b)| (*o, b.stats)).collect(),
            primary_refused: state.primary_refused,
            read_refused: state.read_refused,
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
        let (conns, timers) = {
            let mut state = self.shared.lock();
            (
                std::mem::take(&mut state.conns),
                std::mem::take(&mut state.timers),
            )
        };
        for timer in timers {
            timer.abort();
        }
        for conn in conns.into_values() {
            conn.task.abort();
        }
    }
}

/// Removes the matching sessions from the table, counts them as closed by
/// the router and aborts their tasks. The lock is held by the caller; the
/// tasks' sockets close when the tasks are dropped, which
/// [`finish_close`] waits for.
fn take_conns(state: &mut State, matches: impl Fn(&Conn) -> bool) -> Vec<JoinHandle<()>> {
    let ids: Vec<u64> = state
        .conns
        .iter()
        .filter(|(_, c)| matches(c))
        .map(|(id, _)| *id)
        .collect();
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(conn) = state.conns.remove(&id) {
            conn.task.abort();
            if let Some(b) = state.backends.get_mut(&conn.ordinal) {
                b.stats.closed_by_router += 1;
                b.stats.closed += 1;
                b.stats.active = b.stats.active.saturating_sub(1);
            }
            tasks.push(conn.task);
        }
    }
    tasks
}

/// Waits until aborted session tasks are gone, so their sockets are closed.
async fn finish_close(tasks: Vec<JoinHandle<()>>) -> usize {
    let n = tasks.len();
    for task in tasks {
        // The task was aborted; the result is a cancellation (or a normal
        // end if it finished first). Either way its sockets are closed.
        let _ = task.await;
    }
    n
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, endpoint: Endpoint) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(err) => {
                // Running out of file descriptors and similar: back off a
                // little rather than spin.
                tracing::warn!(%endpoint, error = %err, "router accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let mut state = shared.lock();
        let Some((ordinal, addr)) = choose(&mut state, endpoint) else {
            match endpoint {
                Endpoint::Primary => state.primary_refused += 1,
                Endpoint::Read => state.read_refused += 1,
            }
            drop(state);
            // Dropping the accepted socket closes it: the client reads EOF.
            drop(client);
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = state.backends.get_mut(&ordinal) {
            match endpoint {
                Endpoint::Primary => b.stats.primary_opened += 1,
                Endpoint::Read => b.stats.read_opened += 1,
            }
            b.stats.active += 1;
        }
        // Spawned under the lock and registered before the lock is
        // released, so a role change right after this accept sees the
        // session and can close it.
        let task = tokio::spawn(proxy(
            Arc::downgrade(&shared),
            id,
            ordinal,
            addr,
            client,
            shared.config.connect_timeout,
        ));
        state.conns.insert(
            id,
            Conn {
                ordinal,
                endpoint,
                task,
            },
        );
    }
}

/// Picks the backend for a new connection on `endpoint`.
fn choose(state: &mut State, endpoint: Endpoint) -> Option<(u32, SocketAddr)> {
    match endpoint {
        Endpoint::Primary => {
            let o = state.primary?;
            state.backends.get(&o).map(|b| (o, b.addr))
        }
        Endpoint::Read => {
            let primary = state.primary;
            let mut pool: Vec<(u32, SocketAddr)> = state
                .backends
                .iter()
                .filter(|(o, b)| !b.drained && Some(**o) != primary)
                .map(|(o, b)| (*o, b.addr))
                .collect();
            if pool.is_empty()
                && let Some(p) = primary
                && let Some(b) = state.backends.get(&p)
                && !b.drained
            {
                pool.push((p, b.addr));
            }
            if pool.is_empty() {
                return None;
            }
            let pick = pool[state.next_read % pool.len()];
            state.next_read = state.next_read.wrapping_add(1);
            Some(pick)
        }
    }
}

/// Removes a finished session from the table and counts it closed, unless
/// the router already did (it closed the session itself).
struct ConnGuard {
    shared: std::sync::Weak<Shared>,
    id: u64,
    ordinal: u32,
    connect_failed: bool,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        if let Some(b) = state.backends.get_mut(&self.ordinal)
            && self.connect_failed
        {
            b.stats.connect_failures += 1;
        }
        if state.conns.remove(&self.id).is_some()
            && let Some(b) = state.backends.get_mut(&self.ordinal)
        {
            b.stats.closed += 1;
            b.stats.active = b.stats.active.saturating_sub(1);
        }
    }
}

async fn proxy(
    shared: std::sync::Weak<Shared>,
    id: u64,
    ordinal: u32,
    addr: SocketAddr,
    mut client: TcpStream,
    connect_timeout: Duration,
) {
    let mut guard = ConnGuard {
        shared,
        id,
        ordinal,
        connect_failed: false,
    };
    let mut backend = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(ordinal, %addr, error = %err, "router backend connect failed");
            guard.connect_failed = true;
            return;
        }
        Err(_) => {
            tracing::debug!(ordinal, %addr, "router backend connect timed out");
            guard.connect_failed = true;
            return;
        }
    };
    let _ = backend.set_nodelay(true);
    // Either side may end the session; errors (resets) just end it too.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    let _ = client.shutdown().await;
    let _ = backend.shutdown().await;
}
