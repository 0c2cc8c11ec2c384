//! Helpers shared by the integration tests: switchyard handles on testbed servers.

use switchyard_mysql::{Credentials, Instance, InstanceAddr, ReplicationCredentials};
use switchyard_testbed::{Account, Cluster};

/// A switchyard handle on a testbed instance, as the operator account.
pub fn handle(cluster: &Cluster, index: usize) -> Instance {
    let tb = cluster.instance(index);
    Instance::new(
        tb.name(),
        InstanceAddr::new("127.0.0.1", tb.port()),
        credentials(&cluster.credentials().operator),
    )
}

/// Handles on every instance of a cluster.
pub fn handles(cluster: &Cluster) -> Vec<Instance> {
    (0..cluster.instances().len())
        .map(|i| handle(cluster, i))
        .collect()
}

/// Credentials of a testbed account.
pub fn credentials(account: &Account) -> Credentials {
    Credentials::new(account.user(), account.password())
}

/// The replication account, as replicas log in with it (the testbed's replicas use TLS on
/// MySQL).
pub fn replication(cluster: &Cluster, ssl: bool) -> ReplicationCredentials {
    let account = &cluster.credentials().replication;
    ReplicationCredentials {
        ssl,
        ..ReplicationCredentials::new(account.user(), account.password())
    }
}

/// Polls `condition` every 200 ms until it returns `Some`, at most `timeout`. Slower than
/// `switchyard_testbed::wait_for` on purpose: InnoDB refreshes
/// `information_schema.innodb_trx` only when nobody has read it for 0.1 s, so faster polling
/// of `observe` reads a frozen table.
pub async fn poll_slowly<T>(
    timeout: std::time::Duration,
    mut condition: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Some(value) = condition().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// A connection to the primary as `account` holding an open transaction that
/// ran `insert`, and its connection id.
#[allow(
    dead_code,
    reason = "each test binary includes this module; not every one uses this helper"
)]
pub async fn hold_open_transaction(
    cluster: &Cluster,
    account: &Account,
    insert: &'static str,
) -> (sqlx::MySqlConnection, u64) {
    let mut holder = cluster.primary().connect(account).await.expect("connect");
    let holder_id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut holder)
        .await
        .expect("id");
    sqlx::raw_sql("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::raw_sql(insert)
        .execute(&mut holder)
        .await
        .expect("insert");
    (holder, holder_id)
}

/// The outcome of a write given at most 500 ms to answer.
pub type BoundedWrite =
    Result<Result<sqlx::mysql::MySqlQueryResult, sqlx::Error>, tokio::time::error::Elapsed>;

/// Tries `write` on the primary as `account` for at most 500 ms: against a
/// fence it must fail or wait. Returns the connection and the outcome.
#[allow(
    dead_code,
    reason = "each test binary includes this module; not every one uses this helper"
)]
pub async fn try_write(
    cluster: &Cluster,
    account: &Account,
    write: &'static str,
) -> (sqlx::MySqlConnection, BoundedWrite) {
    let mut conn = cluster.primary().connect(account).await.expect("connect");
    let outcome = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        sqlx::raw_sql(write).execute(&mut conn),
    )
    .await;
    (conn, outcome)
}
