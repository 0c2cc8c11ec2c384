//! One instance at a time on real servers: every field of an observation, typed failures
//! (down, paused, lagging, wrong credentials, unreachable host), fence and unfence, errant
//! transactions, variables, local DDL, type conversions, repointing and clean shutdown.

mod common;

use std::time::{Duration, Instant};

use sqlx::Connection;
use switchyard_mysql::{
    Credentials, Error, Instance, InstanceAddr, IoThreadState, LocalDdlMethod, Secret, SourceAddr,
    SwitchoverPolicy, SwitchoverStep, Timeouts, TypeConversions, switchover,
};
use switchyard_plan::versions::{Flavor, Series};
use switchyard_testbed::{Cluster, ServerKind, replication, wait_for};

use common::{handle, handles, poll_slowly};

fn flavor(kind: ServerKind) -> Flavor {
    match kind {
        ServerKind::Mysql97 => Flavor::Mysql,
        _ => Flavor::Mariadb,
    }
}

/// Runs a statement as root over the unix socket (root bypasses `read_only`, and on MySQL
/// `super_read_only` is turned off around it when asked).
async fn root_exec(cluster: &Cluster, index: usize, sql: &'static str) {
    let mut root = cluster
        .instance(index)
        .connect_root()
        .await
        .expect("root connection");
    sqlx::raw_sql(sql)
        .execute(&mut root)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = root.close().await;
}

async fn root_query(cluster: &Cluster, index: usize, sql: &'static str) -> Option<String> {
    let mut root = cluster
        .instance(index)
        .connect_root()
        .await
        .expect("root connection");
    let value: Option<String> = sqlx::query_scalar(sql)
        .fetch_one(&mut root)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = root.close().await;
    value
}

async fn caught_up(primary: &Instance, replica: &Instance) {
    let target = primary.binlog_position().await.expect("primary position");
    replica
        .wait_caught_up(&target, Duration::from_secs(20))
        .await
        .expect("replica catches up");
}

async fn observe_every_field(kind: ServerKind) {
    let cluster = replication(kind, 3).await.expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let fl = flavor(kind);
    let primary_port = cluster.primary().port();

    let mut op = cluster
        .primary()
        .connect(&creds.operator)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.obs (id INT PRIMARY KEY, v INT)")
        .execute(&mut op)
        .await
        .expect("create");
    caught_up(&h[0], &h[1]).await;
    caught_up(&h[0], &h[2]).await;

    // The primary.
    let p = poll_slowly(Duration::from_secs(10), async || {
        h[0].observe()
            .await
            .ok()
            .filter(|o| o.uptime >= Duration::from_secs(1))
    })
    .await
    .expect("observe the primary once it has been up 1 s");
    assert_eq!(p.version.flavor, fl);
    let series = match kind {
        ServerKind::Mysql97 => Series::new(9, 7),
        _ => Series::new(10, 11),
    };
    assert_eq!(p.version.version.series(), series);
    assert!(
        p.version_text.starts_with(&p.version.version.to_string()),
        "{}",
        p.version_text
    );
    assert!(!p.version_comment.is_empty());
    assert_eq!(p.server_id, cluster.primary().server_id());
    assert_eq!(p.server_uuid.is_some(), fl == Flavor::Mysql);
    assert!(!p.read_only && p.is_writable());
    assert_eq!(p.super_read_only, (fl == Flavor::Mysql).then_some(false));
    assert!(p.log_bin && p.log_replica_updates);
    assert!(!p.gtid.executed().is_empty());
    // On MariaDB `executed` is a binary log state, compared with a position as a position.
    assert_eq!(p.gtid.binlogged(), p.gtid.position());
    assert_eq!(p.gtid.executed().is_subset(p.gtid.binlogged()), Ok(true));
    assert_eq!(p.gtid.binlogged().is_subset(p.gtid.executed()), Ok(true));
    match &p.gtid {
        switchyard_mysql::GtidState::Mysql { purged, .. } => assert!(purged.is_empty()),
        switchyard_mysql::GtidState::Mariadb {
            binlog_pos,
            slave_pos,
            ..
        } => {
            assert!(!binlog_pos.is_empty());
            assert!(
                slave_pos.is_empty(),
                "a primary that never replicated: {slave_pos}"
            );
        }
    }
    assert_eq!(p.replication, None);
    match fl {
        // Built into MariaDB, off by default; MySQL has it only as a plugin, not loaded here.
        Flavor::Mariadb => {
            let s = p
                .semi_sync
                .as_ref()
                .expect("MariaDB has semi-sync variables");
            assert_eq!(
                (s.source_enabled, s.replica_enabled),
                (Some(false), Some(false))
            );
            assert_eq!((s.source_active, s.source_clients), (Some(false), Some(0)));
        }
        Flavor::Mysql => assert_eq!(p.semi_sync, None),
    }
    match fl {
        Flavor::Mariadb => {
            let g = p.galera.as_ref().expect("MariaDB has wsrep variables");
            assert!(!g.wsrep_on && !g.is_synced() && !g.desync);
        }
        Flavor::Mysql => assert_eq!(p.galera, None),
    }
    assert_eq!(
        h[0].longest_transaction_by(std::time::Instant::now() + Duration::from_secs(5))
            .await
            .expect("read the longest transaction"),
        None
    );
    assert_eq!(p.metadata_lock_waits, 0);
    assert!(p.uptime >= Duration::from_secs(1));

    // A replica.
    let r = h[1].observe().await.expect("observe a replica");
    assert_eq!(r.server_id, cluster.instance(1).server_id());
    assert!(r.read_only && !r.is_writable());
    assert_eq!(r.super_read_only, (fl == Flavor::Mysql).then_some(true));
    assert!(
        p.gtid
            .executed()
            .is_subset(r.gtid.executed())
            .expect("same flavor")
    );
    assert!(r.errant_against(&p).expect("same flavor").is_empty());
    if let switchyard_mysql::GtidState::Mariadb { slave_pos, .. } = &r.gtid {
        assert!(!slave_pos.is_empty());
    }
    let rs = r.replication.as_ref().expect("replication status");
    assert_eq!(
        (rs.source_host.as_str(), rs.source_port),
        ("127.0.0.1", primary_port)
    );
    assert!(rs.is_running() && rs.io_thread == IoThreadState::Running && rs.sql_running);
    assert_eq!((rs.last_io_errno, rs.last_sql_errno), (0, 0));
    assert!(rs.last_io_error.is_empty() && rs.last_sql_error.is_empty());
    assert!(rs.seconds_behind.is_some_and(|s| s < 60));
    assert!(rs.gtid_positioning);

    // The longest open transaction and a DDL waiting for its metadata lock.
    let (mut holder, holder_id) = common::hold_open_transaction(
        &cluster,
        &creds.application,
        "INSERT INTO app.obs VALUES (1, 1)",
    )
    .await;
    let trx = poll_slowly(Duration::from_secs(10), async || {
        h[0].longest_transaction_by(std::time::Instant::now() + Duration::from_secs(5))
            .await
            .ok()?
            .filter(|t| t.seconds >= 1)
    })
    .await
    .expect("the open transaction shows");
    assert_eq!((trx.thread_id, trx.rows_modified), (holder_id, 1));
    let ddl = async {
        sqlx::raw_sql("ALTER TABLE app.obs ADD COLUMN w INT NULL")
            .execute(&mut op)
            .await
    };
    let watch = async {
        let waits = poll_slowly(Duration::from_secs(10), async || {
            Some(h[0].observe().await.ok()?.metadata_lock_waits).filter(|n| *n >= 1)
        })
        .await;
        sqlx::raw_sql("COMMIT")
            .execute(&mut holder)
            .await
            .expect("commit");
        waits
    };
    let (altered, waits) = tokio::join!(ddl, watch);
    assert_eq!(
        waits,
        Some(1),
        "the ALTER waiting for the metadata lock shows"
    );
    altered.expect("the ALTER runs once the transaction ended");
    let after = h[0].observe().await.expect("observe");
    assert_eq!(after.metadata_lock_waits, 0);
    let _ = holder.close().await;

    // Replication errors: a wrong replication password (I/O thread), then a duplicate key
    // (SQL thread).
    let good = common::replication(&cluster, fl == Flavor::Mysql);
    let bad = switchyard_mysql::ReplicationCredentials {
        password: Secret::new("wrong-password-1"),
        ..good.clone()
    };
    let source = SourceAddr::new("127.0.0.1", primary_port);
    h[2].configure_replica(&source, &bad)
        .await
        .expect("configure with a wrong password");
    let io = wait_for(Duration::from_secs(20), async || {
        let rs = h[2].observe().await.ok()?.replication?;
        (rs.last_io_errno != 0).then_some(rs)
    })
    .await
    .expect("the I/O thread reports the error");
    assert_eq!(io.last_io_errno, 1045, "{}", io.last_io_error);
    assert!(io.io_thread != IoThreadState::Running);
    assert!(io.last_io_error.contains("repl"), "{}", io.last_io_error);
    assert!(!io.last_io_error.contains("wrong-password-1"));
    h[2].configure_replica(&source, &good)
        .await
        .expect("configure again");
    caught_up(&h[0], &h[2]).await;

    let (lift, restore) = match fl {
        Flavor::Mysql => (
            "SET GLOBAL super_read_only = 0",
            "SET GLOBAL super_read_only = 1",
        ),
        Flavor::Mariadb => ("DO 0", "DO 0"),
    };
    root_exec(&cluster, 2, lift).await;
    root_exec(
        &cluster,
        2,
        "SET SESSION sql_log_bin = 0; INSERT INTO app.obs (id, v) VALUES (7, 0)",
    )
    .await;
    root_exec(&cluster, 2, restore).await;
    sqlx::raw_sql("INSERT INTO app.obs (id, v) VALUES (7, 7)")
        .execute(&mut op)
        .await
        .expect("insert");
    let sql_err = wait_for(Duration::from_secs(20), async || {
        let rs = h[2].observe().await.ok()?.replication?;
        (rs.last_sql_errno != 0 && !rs.sql_running).then_some(rs)
    })
    .await
    .expect("the SQL thread reports the duplicate");
    assert_eq!(sql_err.last_sql_errno, 1062, "{}", sql_err.last_sql_error);
    assert!(!sql_err.sql_running && sql_err.seconds_behind.is_none());
    root_exec(&cluster, 2, lift).await;
    root_exec(
        &cluster,
        2,
        "SET SESSION sql_log_bin = 0; DELETE FROM app.obs WHERE id = 7",
    )
    .await;
    root_exec(&cluster, 2, restore).await;
    h[2].stop_replication().await.expect("stop");
    h[2].start_replication().await.expect("start");
    caught_up(&h[0], &h[2]).await;
    // Caught up by GTID can come before the I/O thread has reconnected.
    let rs = poll_slowly(Duration::from_secs(10), async || {
        let rs = h[2].observe().await.ok()?.replication?;
        rs.is_running().then_some(rs)
    })
    .await;
    let rs = match rs {
        Some(rs) => rs,
        None => h[2]
            .observe()
            .await
            .expect("observe")
            .replication
            .expect("replica"),
    };
    assert!(rs.is_running() && rs.last_sql_errno == 0, "{rs:?}");

    // Errant transactions: a write with the binary log on, on replica 1.
    let errant_sql = match fl {
        Flavor::Mysql => {
            "SET GLOBAL super_read_only = 0; INSERT INTO app.obs (id, v) VALUES (99, 99); \
             SET GLOBAL super_read_only = 1"
        }
        Flavor::Mariadb => "INSERT INTO app.obs (id, v) VALUES (99, 99)",
    };
    root_exec(&cluster, 1, errant_sql).await;
    let p = h[0].observe().await.expect("observe");
    let r1 = h[1].observe().await.expect("observe");
    let r2 = h[2].observe().await.expect("observe");
    let errant = r1.errant_against(&p).expect("same flavor");
    assert!(!errant.is_empty(), "the errant write is not seen");
    assert!(r2.errant_against(&p).expect("same flavor").is_empty());
    eprintln!("{kind:?}: errant on {}: {errant}", h[1]);
    // A candidate with errant transactions is refused at once, with nothing changed.
    let mut steps: Vec<SwitchoverStep> = Vec::new();
    let err = switchover(
        &h[0],
        &h[1],
        &[],
        Instant::now() + Duration::from_secs(10),
        &SwitchoverPolicy::default(),
        &mut steps,
    )
    .await
    .expect_err("an errant candidate is refused");
    assert!(
        matches!(&err, Error::CandidateNotReady { reason, .. } if reason.contains("errant")),
        "{err}"
    );
    assert!(steps.is_empty() && h[0].observe().await.expect("observe").is_writable());
    let _ = op.close().await;
}

#[tokio::test]
async fn mariadb_observe_every_field() {
    observe_every_field(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_observe_every_field() {
    observe_every_field(ServerKind::Mysql97).await;
}

/// An errant transaction a MariaDB replica wrote under its own `server_id` and then replicated
/// past (its `gtid_current_pos` equals the source's) is still found: the observation compares
/// `@@gtid_binlog_state`, not positions.
#[tokio::test]
async fn mariadb_errant_behind_the_source_position_is_seen() {
    let cluster = replication(ServerKind::Mariadb1011, 2)
        .await
        .expect("cluster");
    let h = handles(&cluster);
    root_exec(&cluster, 0, "CREATE TABLE app.behind (id INT PRIMARY KEY)").await;
    caught_up(&h[0], &h[1]).await;
    // The replica writes under its own server_id (root passes read_only)...
    root_exec(&cluster, 1, "INSERT INTO app.behind VALUES (1000)").await;
    let replica_id = cluster.instance(1).server_id();
    let written = root_query(&cluster, 1, "SELECT CAST(@@GLOBAL.gtid_binlog_pos AS CHAR)")
        .await
        .expect("a position");
    let seq: u64 = written
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a sequence number");
    assert_eq!(written, format!("0-{replica_id}-{seq}"));
    // ... then the source moves past that sequence number (gtid_strict_mode keeps the
    // replica's applier going only above it) and the replica replicates it.
    let mut root = cluster.instance(0).connect_root().await.expect("root");
    sqlx::query("SET SESSION gtid_seq_no = ?")
        .bind(seq + 3)
        .execute(&mut root)
        .await
        .expect("skip ahead");
    for id in 1..=3 {
        sqlx::query("INSERT INTO app.behind VALUES (?)")
            .bind(id)
            .execute(&mut root)
            .await
            .expect("insert on the source");
    }
    let _ = root.close().await;
    caught_up(&h[0], &h[1]).await;
    let p = h[0].observe().await.expect("observe the source");
    let r = h[1].observe().await.expect("observe the replica");
    let (
        switchyard_mysql::GtidState::Mariadb {
            current_pos: replica_pos,
            ..
        },
        switchyard_mysql::GtidState::Mariadb {
            current_pos: source_pos,
            ..
        },
    ) = (&r.gtid, &p.gtid)
    else {
        panic!("MariaDB GTID states: {:?} {:?}", r.gtid, p.gtid);
    };
    assert_eq!(
        replica_pos.is_subset(source_pos),
        Ok(true),
        "the replica's position {replica_pos} is behind or equal the source's {source_pos}"
    );
    let errant = r.errant_against(&p).expect("same flavor");
    assert_eq!(
        errant.to_string(),
        format!("0-{replica_id}-{seq}"),
        "the errant transaction is named"
    );
    assert!(p.errant_against(&r).expect("same flavor").is_empty());
}

/// What a privileged client connected directly to the instance saw while it wrote in a loop.
#[derive(Debug, Default)]
struct WriterLog {
    /// Commits the server acknowledged.
    acknowledged: Vec<i64>,
    /// Attempts (a login, or a write once logged in).
    attempts: u64,
    /// Logins refused because the account was locked (MySQL 3118, MariaDB 4151).
    locked_out: u64,
    /// Other failures: refusals by the fence, killed connections, timeouts.
    other: u64,
}

/// Writes to `app.writes` as the privileged account (ALL PRIVILEGES) in a loop, reconnecting
/// after every failure, until `stop`; each write gets 300 ms before the connection is dropped.
async fn privileged_writer(
    cluster: &Cluster,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<WriterLog>>,
) {
    use std::sync::atomic::Ordering;
    let account = cluster.credentials().privileged.clone();
    let options = cluster.instance(0).connect_options(&account);
    let mut next = 1i64;
    while !stop.load(Ordering::SeqCst) {
        log.lock().unwrap().attempts += 1;
        let connected = tokio::time::timeout(
            Duration::from_millis(500),
            sqlx::MySqlConnection::connect_with(&options),
        )
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                // MySQL 3118 and MariaDB 4151 both say the account is locked.
                let locked = e.to_string().to_ascii_lowercase().contains("locked");
                {
                    let mut l = log.lock().unwrap();
                    if locked {
                        l.locked_out += 1;
                    } else {
                        l.other += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            Err(_) => {
                log.lock().unwrap().other += 1;
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let id = next;
            next += 1;
            log.lock().unwrap().attempts += 1;
            let write = tokio::time::timeout(
                Duration::from_millis(300),
                sqlx::query("INSERT INTO app.writes (id) VALUES (?)")
                    .bind(id)
                    .execute(&mut conn),
            )
            .await;
            match write {
                Ok(Ok(_)) => log.lock().unwrap().acknowledged.push(id),
                _ => {
                    log.lock().unwrap().other += 1;
                    break;
                }
            }
        }
    }
}

/// A schema change on a fenced instance keeps a privileged client connected directly out for
/// the whole statement: it writes in a loop, the ALTER waits (a metadata lock the test holds)
/// while the writer is refused again and again, and none of its writes commits; afterwards
/// the fence is as it was and its account can log in again.
async fn ddl_on_a_fenced_instance_keeps_privileged_writers_out(kind: ServerKind) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let started = Instant::now();
    let cluster = replication(kind, 1).await.expect("cluster");
    let h = handle(&cluster, 0);
    let operator = &cluster.credentials().operator;
    let mut op = cluster
        .instance(0)
        .connect(operator)
        .await
        .expect("operator");
    sqlx::raw_sql(
        "CREATE TABLE app.altered (id INT PRIMARY KEY); INSERT INTO app.altered VALUES (1); \
         CREATE TABLE app.writes (id BIGINT PRIMARY KEY); \
         CREATE USER owner_locked@'%' IDENTIFIED BY 'Owner-locked-1' ACCOUNT LOCK",
    )
    .execute(&mut op)
    .await
    .expect("tables and an account its owner locked");
    let fenced = h.fence().await.expect("fence");
    // A transaction of the operator's account (never killed) holds the altered table, so the
    // ALTER waits inside its statement for as long as the test wants.
    let mut blocker = cluster
        .instance(0)
        .connect(operator)
        .await
        .expect("blocker");
    sqlx::raw_sql("BEGIN; SELECT COUNT(*) FROM app.altered")
        .execute(&mut blocker)
        .await
        .expect("hold the table");

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(std::sync::Mutex::new(WriterLog::default()));
    let writer = {
        let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
        let cluster = &cluster;
        async move { privileged_writer(cluster, stop, log).await }
    };
    let test = async {
        let ddl = tokio::spawn({
            let h = h.clone();
            async move {
                h.run_member_ddl(
                    "ALTER TABLE app.altered ADD COLUMN c INT",
                    Duration::from_secs(60),
                    true,
                )
                .await
            }
        });
        let watch = async {
            let waiting = wait_for(Duration::from_secs(20), async || {
                if ddl.is_finished() {
                    return Some(());
                }
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.processlist \
                     WHERE state = 'Waiting for table metadata lock' AND info LIKE 'ALTER TABLE%'",
                )
                .fetch_one(&mut op)
                .await
                .ok()?;
                (n > 0).then_some(())
            })
            .await;
            if waiting.is_err() || ddl.is_finished() {
                return Err("the ALTER never waited for the table".to_owned());
            }
            let before = log.lock().unwrap().attempts;
            // The writer keeps trying while the ALTER runs.
            let tried = wait_for(Duration::from_secs(20), async || {
                let l = log.lock().unwrap();
                (l.attempts >= before + 30).then_some(())
            })
            .await;
            sqlx::raw_sql("COMMIT")
                .execute(&mut blocker)
                .await
                .expect("let the ALTER go");
            tried.map_err(|_| format!("the writer did not try: {:?}", log.lock().unwrap()))
        };
        let watched = watch.await;
        let ddl = ddl.await.expect("the schema change's task");
        if let Err(why) = watched {
            panic!("{why} (the schema change: {ddl:?})");
        }
        ddl.expect("the schema change runs on the fenced instance");
        stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(writer, test);

    let log = std::mem::take(&mut *log.lock().unwrap());
    eprintln!("{kind:?}: privileged writer during the fenced ALTER: {log:?}");
    assert!(
        log.acknowledged.is_empty(),
        "{kind:?}: the privileged client committed {} writes on the fenced instance: {log:?}",
        log.acknowledged.len()
    );
    assert!(log.locked_out > 0, "{log:?}");
    // Nothing committed under the fence: its position has not moved.
    assert_eq!(
        h.binlog_position().await.expect("position"),
        fenced.position
    );
    let shape: String = sqlx::query_scalar("SELECT COLUMN_NAME FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'altered' AND column_name = 'c'")
        .fetch_one(&mut op)
        .await
        .expect("the new column");
    assert_eq!(shape, "c");
    // The fence is back as it was, the accounts are unlocked and the lockout's record is gone.
    let o = h.observe().await.expect("observe");
    assert!(o.read_only);
    match flavor(kind) {
        Flavor::Mysql => assert_eq!(o.super_read_only, Some(true)),
        Flavor::Mariadb => assert!(h.holds_fence_lock().await, "the fence lock is held again"),
    }
    let (admin, write) = common::try_write(
        &cluster,
        &cluster.credentials().privileged,
        "INSERT INTO app.writes (id) VALUES (0)",
    )
    .await;
    assert!(
        !matches!(write, Ok(Ok(_))),
        "the fence holds again: {write:?}"
    );
    // Dropped, not closed: on MariaDB its INSERT still waits for the lock.
    drop(admin);
    let role: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE user = 'switchyard_ddl_lockout'")
            .fetch_one(&mut op)
            .await
            .expect("roles");
    assert_eq!(role, 0, "the lockout's role is dropped");
    assert_eq!(h.release_ddl_lockout().await.expect("nothing to undo"), 0);
    assert!(
        owner_locked(&mut op, kind).await,
        "an account its owner locked stays locked"
    );

    // An engine killed during the statement: the accounts stay locked (recorded on the server),
    // and the undo unlocks exactly those and puts the fence back.
    sqlx::raw_sql("BEGIN; SELECT COUNT(*) FROM app.altered")
        .execute(&mut blocker)
        .await
        .expect("hold the table again");
    let ddl = tokio::spawn({
        let h = h.clone();
        async move {
            h.run_member_ddl(
                "ALTER TABLE app.altered ADD COLUMN d INT",
                Duration::from_secs(60),
                true,
            )
            .await
        }
    });
    let waiting = wait_for(Duration::from_secs(20), async || {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE state = 'Waiting for table metadata lock' AND info LIKE 'ALTER TABLE%'",
        )
        .fetch_one(&mut op)
        .await
        .ok()?;
        (n > 0 || ddl.is_finished()).then_some(())
    })
    .await;
    assert!(
        waiting.is_ok() && !ddl.is_finished(),
        "the second ALTER waits"
    );
    ddl.abort();
    assert!(ddl.await.is_err_and(|e| e.is_cancelled()));
    sqlx::raw_sql("COMMIT")
        .execute(&mut blocker)
        .await
        .expect("release the table");
    let refused = cluster
        .instance(0)
        .connect(&cluster.credentials().privileged)
        .await
        .expect_err("the privileged account stays locked after the engine died");
    assert!(
        refused.to_string().to_ascii_lowercase().contains("locked"),
        "{refused}"
    );
    let unlocked = h.release_ddl_lockout().await.expect("undo the lockout");
    assert_eq!(
        unlocked, 3,
        "repl, app and app_admin were locked; the operator and root not"
    );
    let o = h.observe().await.expect("observe");
    assert!(o.read_only);
    if flavor(kind) == Flavor::Mysql {
        assert_eq!(o.super_read_only, Some(true), "super_read_only is back on");
    }
    let mut back = cluster
        .instance(0)
        .connect(&cluster.credentials().privileged)
        .await
        .expect("the privileged account logs in again");
    let mode: i64 = sqlx::query_scalar(match flavor(kind) {
        Flavor::Mysql => "SELECT @@SESSION.transaction_read_only",
        Flavor::Mariadb => "SELECT @@SESSION.tx_read_only",
    })
    .fetch_one(&mut back)
    .await
    .expect("access mode");
    assert_eq!(mode, 0, "new sessions are read-write again");
    let _ = back.close().await;
    assert!(
        owner_locked(&mut op, kind).await,
        "an account its owner locked stays locked"
    );
    assert_eq!(h.release_ddl_lockout().await.expect("nothing left"), 0);
    let _ = blocker.close().await;
    let _ = op.close().await;
    eprintln!("{kind:?}: fenced DDL test took {:?}", started.elapsed());
}

/// Whether `owner_locked`@`%` is locked.
async fn owner_locked(op: &mut sqlx::MySqlConnection, kind: ServerKind) -> bool {
    let sql = match flavor(kind) {
        Flavor::Mysql => "SELECT account_locked = 'Y' FROM mysql.user WHERE user = 'owner_locked'",
        Flavor::Mariadb => {
            "SELECT JSON_VALUE(Priv, '$.account_locked') IN ('true', '1') FROM mysql.global_priv \
             WHERE User = 'owner_locked'"
        }
    };
    let locked: i64 = sqlx::query_scalar(sql)
        .fetch_one(op)
        .await
        .expect("owner_locked exists");
    locked == 1
}

#[tokio::test]
async fn mariadb_ddl_on_a_fenced_instance_keeps_privileged_writers_out() {
    ddl_on_a_fenced_instance_keeps_privileged_writers_out(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mariadb_10_5_and_11_8_ddl_on_a_fenced_instance_keeps_privileged_writers_out() {
    for kind in [ServerKind::Mariadb105, ServerKind::Mariadb118] {
        ddl_on_a_fenced_instance_keeps_privileged_writers_out(kind).await;
    }
}

#[tokio::test]
async fn mysql_ddl_on_a_fenced_instance_keeps_privileged_writers_out() {
    ddl_on_a_fenced_instance_keeps_privileged_writers_out(ServerKind::Mysql97).await;
}

/// A promotion that cannot start says it changed nothing; one that made the candidate
/// writable is undone by `make_read_only_by`, which keeps a privileged client out and says so.
async fn promotion_stage_and_read_only_again(kind: ServerKind) {
    let cluster = replication(kind, 2).await.expect("cluster");
    let h = handles(&cluster);
    let mut op = cluster
        .instance(0)
        .connect(&cluster.credentials().operator)
        .await
        .expect("operator");
    sqlx::raw_sql("CREATE TABLE app.promoted (id INT PRIMARY KEY)")
        .execute(&mut op)
        .await
        .expect("table");
    let _ = op.close().await;
    caught_up(&h[0], &h[1]).await;

    // A deadline that has passed: nothing was changed, the replica still replicates.
    let failure = h[1]
        .promote_by(Instant::now())
        .await
        .expect_err("no time to promote");
    assert_eq!(
        failure.stage,
        switchyard_mysql::PromoteStage::Replicating,
        "{failure}"
    );
    assert!(!failure.stage.may_be_writable());
    assert_eq!(failure.category(), "timeout");
    let r = h[1].observe().await.expect("observe");
    assert!(r.read_only && r.replication.as_ref().is_some_and(|s| s.is_running()));

    // Promoted (as a failed switchover may leave it), then made read-only again.
    h[1].promote_by(Instant::now() + Duration::from_secs(10))
        .await
        .expect("promote");
    assert!(h[1].observe().await.expect("observe").is_writable());
    h[1].make_read_only_by(Instant::now() + Duration::from_secs(10))
        .await
        .expect("read-only again");
    let o = h[1].observe().await.expect("observe");
    assert!(o.read_only);
    match flavor(kind) {
        Flavor::Mysql => assert_eq!(o.super_read_only, Some(true)),
        Flavor::Mariadb => assert!(h[1].holds_fence_lock().await),
    }
    let before = h[1].binlog_position().await.expect("position");
    let mut admin = cluster
        .instance(1)
        .connect(&cluster.credentials().privileged)
        .await
        .expect("a privileged client logs in");
    let write = tokio::time::timeout(
        Duration::from_millis(500),
        sqlx::query("INSERT INTO app.promoted VALUES (1)").execute(&mut admin),
    )
    .await;
    assert!(
        !matches!(write, Ok(Ok(_))),
        "a privileged write committed: {write:?}"
    );
    drop(admin);
    assert_eq!(h[1].binlog_position().await.expect("position"), before);
}

#[tokio::test]
async fn mariadb_promotion_stage_and_read_only_again() {
    promotion_stage_and_read_only_again(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_promotion_stage_and_read_only_again() {
    promotion_stage_and_read_only_again(ServerKind::Mysql97).await;
}

async fn typed_failures(kind: ServerKind) {
    let cluster = replication(kind, 2).await.expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let port = cluster.primary().port();
    let operator_password = creds.operator.password().to_owned();

    // Wrong credentials.
    let wrong = Instance::new(
        "wrong-creds",
        InstanceAddr::new("127.0.0.1", port),
        Credentials::new(creds.operator.user(), "not-the-password"),
    );
    let started = Instant::now();
    let err = wrong.observe().await.expect_err("wrong password");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&err, Error::AccessDenied { instance, server, .. }
        if instance.contains("wrong-creds") && server.code == 1045),
        "{err}"
    );
    assert_eq!(err.category(), "access_denied");
    for text in [
        format!("{err}"),
        format!("{err:?}"),
        format!("{wrong:?}"),
        format!("{h:?}"),
    ] {
        assert!(
            !text.contains("not-the-password") && !text.contains(&operator_password),
            "{text}"
        );
    }

    // Unreachable hosts: a name that does not resolve, and a host that never answers the TCP
    // handshake (a listener whose accept queue is full drops further connection attempts,
    // as a black-holed address does).
    let blackhole = tokio::net::TcpSocket::new_v4().expect("socket");
    blackhole
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let blackhole = blackhole.listen(1).expect("listen");
    let blackhole_port = blackhole.local_addr().expect("addr").port();
    let mut fillers = Vec::new();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(("127.0.0.1", blackhole_port)),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
        assert!(fillers.len() < 64, "the accept queue does not fill up");
    }
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        ..Timeouts::default()
    };
    for (host, port) in [
        ("no-such-host.invalid", 3306),
        ("127.0.0.1", blackhole_port),
    ] {
        let far = Instance::new(
            "far",
            InstanceAddr::new(host, port),
            Credentials::new("x", "y"),
        )
        .with_timeouts(timeouts);
        let started = Instant::now();
        let err = far.observe().await.expect_err("unreachable");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(&err, Error::Unreachable { instance, .. } if instance.contains("far")),
            "{host}:{port}: {err}"
        );
        assert_eq!(err.category(), "unreachable");
    }
    drop((fillers, blackhole));

    // Lagging: the replica's applier is stopped while the primary writes.
    let stop_sql = match flavor(kind) {
        Flavor::Mysql => "STOP REPLICA SQL_THREAD",
        Flavor::Mariadb => "STOP SLAVE SQL_THREAD",
    };
    root_exec(&cluster, 1, stop_sql).await;
    let mut op = cluster
        .primary()
        .connect(&creds.operator)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.lag (id INT PRIMARY KEY)")
        .execute(&mut op)
        .await
        .expect("write");
    let target = h[0].binlog_position().await.expect("position");
    let started = Instant::now();
    let err = h[1]
        .wait_caught_up(&target, Duration::from_secs(1))
        .await
        .expect_err("lagging");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    match &err {
        Error::Lagging {
            instance, missing, ..
        } => {
            assert!(instance.contains(h[1].name()));
            assert!(!missing.is_empty());
        }
        other => panic!("unexpected: {other}"),
    }
    assert_eq!(err.category(), "lagging");
    h[1].start_replication().await.expect("start");
    h[1].wait_caught_up(&target, Duration::from_secs(20))
        .await
        .expect("catches up");

    // Paused: a fresh handle cannot finish the handshake; the handle with a cached
    // connection finds the server silent too.
    let short = Timeouts {
        connect: Duration::from_secs(1),
        statement: Duration::from_secs(2),
        ..Timeouts::default()
    };
    let cached = handle(&cluster, 1).with_timeouts(short);
    cached.observe().await.expect("observe before the pause");
    cluster.instance(1).pause().expect("pause");
    let fresh = handle(&cluster, 1).with_timeouts(short);
    for h1 in [&fresh, &cached] {
        let started = Instant::now();
        let err = h1.observe().await.expect_err("paused");
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
        assert!(
            matches!(&err, Error::NotResponding { instance, .. } if instance.contains(h[1].name())),
            "{err}"
        );
        assert_eq!(err.category(), "not_responding");
    }
    cluster.instance(1).resume().expect("resume");
    wait_for(Duration::from_secs(10), async || {
        cached.observe().await.ok()
    })
    .await
    .expect("answers again once resumed");

    // Clean shutdown, then down.
    let started = Instant::now();
    h[1].clean_shutdown(Duration::from_secs(60))
        .await
        .expect("clean shutdown");
    eprintln!("{kind:?}: clean shutdown took {:?}", started.elapsed());
    wait_for(Duration::from_secs(60), async || {
        (!cluster.instance(1).is_running()).then_some(())
    })
    .await
    .expect("the process exits");
    let started = Instant::now();
    let err = h[1].observe().await.expect_err("down");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(&err, Error::Down { instance, .. } if instance.contains(h[1].name())),
        "{err}"
    );
    assert_eq!(err.category(), "down");
    // It starts again on the same data directory and answers.
    cluster.instance(1).start().await.expect("restart");
    let obs = h[1].observe().await.expect("observe after the restart");
    assert!(obs.read_only, "the testbed restarts instances read-only");
    let _ = op.close().await;
}

#[tokio::test]
async fn mariadb_failures_are_typed_and_bounded() {
    typed_failures(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_failures_are_typed_and_bounded() {
    typed_failures(ServerKind::Mysql97).await;
}

async fn administration(kind: ServerKind) {
    let cluster = replication(kind, 3).await.expect("cluster");
    let h = handles(&cluster);
    let creds = cluster.credentials();
    let fl = flavor(kind);

    // Variables: a bad name refuses the whole call and changes nothing.
    let before = root_query(&cluster, 0, "SELECT CAST(@@GLOBAL.max_connections AS CHAR)").await;
    let err = h[0]
        .set_variables(&[("max_connections", "222"), ("max_connections`; DROP", "1")])
        .await
        .expect_err("bad name");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert_eq!(
        root_query(&cluster, 0, "SELECT CAST(@@GLOBAL.max_connections AS CHAR)").await,
        before
    );
    let report = h[0]
        .set_variables(&[
            ("max_connections", "321"),
            ("long_query_time", "2.5"),
            ("time_zone", "+00:00"),
            ("performance_schema", "OFF"),
            ("no_such_variable", "1"),
            ("max_connections", "many"),
        ])
        .await
        .expect("set variables");
    assert_eq!(
        report.applied,
        ["max_connections", "long_query_time", "time_zone"]
    );
    let read_only: Vec<(&str, u16)> = report
        .read_only
        .iter()
        .map(|r| (r.name.as_str(), r.server.code))
        .collect();
    assert_eq!(read_only, [("performance_schema", 1238)]);
    let refused: Vec<&str> = report.refused.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, ["no_such_variable", "max_connections"]);
    assert_eq!(report.refused[0].server.code, 1193);
    let current = root_query(
        &cluster,
        0,
        "SELECT CONCAT(@@GLOBAL.max_connections, ' ', @@GLOBAL.long_query_time, ' ', @@GLOBAL.time_zone)",
    )
    .await;
    assert_eq!(current.as_deref(), Some("321 2.500000 +00:00"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // An out-of-range value is clamped by the server with a warning, which is reported.
    let clamped = h[0]
        .set_variables(&[("max_connections", "-5")])
        .await
        .expect("set");
    assert_eq!(clamped.applied, ["max_connections"]);
    assert!(
        clamped
            .warnings
            .iter()
            .any(|w| w.name == "max_connections" && w.server.code == 1292),
        "{:?}",
        clamped.warnings
    );
    let values = h[0]
        .global_values(&["max_connections", "long_query_time", "read_only"])
        .await
        .expect("read");
    assert_ne!(values["max_connections"].as_deref(), Some("-5"));
    assert_eq!(values["long_query_time"].as_deref(), Some("2.500000"));
    assert!(
        matches!(values["read_only"].as_deref(), Some("0" | "OFF")),
        "{values:?}"
    );
    let restored = h[0]
        .set_variables(&[("max_connections", "321")])
        .await
        .expect("restore");
    assert_eq!(restored.applied, ["max_connections"]);
    assert!(matches!(
        h[0].global_values(&["bad name"]).await,
        Err(Error::InvalidInput { .. })
    ));
    let accounts = h[0].accounts().await.expect("accounts");
    let operator = accounts
        .iter()
        .find(|a| a.user == creds.operator.user())
        .expect("the operator account is listed");
    assert_eq!(operator.host, "%");
    assert!(!operator.plugin.is_empty());
    assert!(!format!("{accounts:?}").contains(creds.operator.password()));

    // Type conversions: set, read, restore.
    let previous = h[1]
        .set_type_conversions(TypeConversions {
            all_non_lossy: true,
            ..TypeConversions::default()
        })
        .await
        .expect("set");
    assert_eq!(previous, TypeConversions::default());
    let read_sql = match fl {
        Flavor::Mysql => "SELECT @@GLOBAL.replica_type_conversions",
        Flavor::Mariadb => "SELECT @@GLOBAL.slave_type_conversions",
    };
    assert_eq!(
        root_query(&cluster, 1, read_sql).await.as_deref(),
        Some("ALL_NON_LOSSY")
    );
    let was = h[1].set_type_conversions(previous).await.expect("restore");
    assert!(was.all_non_lossy && !was.all_lossy);
    assert_eq!(root_query(&cluster, 1, read_sql).await.as_deref(), Some(""));

    // Local DDL on a replica: binary log off, so no errant transaction, and replication goes on.
    let mut op = cluster
        .primary()
        .connect(&creds.operator)
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE app.ddl (id INT PRIMARY KEY, v INT)")
        .execute(&mut op)
        .await
        .expect("create");
    caught_up(&h[0], &h[1]).await;
    let method = h[1]
        .run_local_ddl(
            "ALTER TABLE app.ddl ADD COLUMN extra INT NULL",
            Duration::from_secs(5),
        )
        .await
        .expect("local DDL");
    assert_eq!(method, LocalDdlMethod::BinlogOff);
    let columns = "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.columns \
                   WHERE table_schema = 'app' AND table_name = 'ddl'";
    assert_eq!(root_query(&cluster, 1, columns).await.as_deref(), Some("3"));
    assert_eq!(root_query(&cluster, 0, columns).await.as_deref(), Some("2"));
    sqlx::raw_sql("INSERT INTO app.ddl VALUES (1, 1)")
        .execute(&mut op)
        .await
        .expect("insert");
    caught_up(&h[0], &h[1]).await;
    let p = h[0].observe().await.expect("observe");
    let r = h[1].observe().await.expect("observe");
    assert!(
        r.errant_against(&p).expect("same flavor").is_empty(),
        "the DDL was binlogged"
    );
    assert!(r.replication.as_ref().is_some_and(|s| s.is_running()));

    // A DDL waiting for a metadata lock gives up after lock_wait_timeout.
    let mut reader = cluster
        .instance(1)
        .connect(&creds.operator)
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; SELECT * FROM app.ddl")
        .execute(&mut reader)
        .await
        .expect("hold the MDL");
    let started = Instant::now();
    let err = h[1]
        .run_local_ddl(
            "ALTER TABLE app.ddl ADD COLUMN extra2 INT NULL",
            Duration::from_secs(1),
        )
        .await
        .expect_err("lock wait timeout");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(err.server_error().map(|s| s.code), Some(1205), "{err}");
    assert_eq!(err.category(), "lock_wait_timeout");
    sqlx::raw_sql("COMMIT")
        .execute(&mut reader)
        .await
        .expect("commit");
    let _ = reader.close().await;
    // Exactly one statement: a second one is a syntax error, and nothing ran.
    let err = h[1]
        .run_local_ddl(
            "ALTER TABLE app.ddl ADD COLUMN a INT NULL; DROP TABLE app.ddl",
            Duration::from_secs(5),
        )
        .await
        .expect_err("two statements");
    assert_eq!(err.server_error().map(|s| s.code), Some(1064), "{err}");
    assert_eq!(root_query(&cluster, 1, columns).await.as_deref(), Some("3"));

    // Why MariaDB needs more than read_only: it lets a privileged client write.
    if fl == Flavor::Mariadb {
        root_exec(&cluster, 0, "SET GLOBAL read_only = 1").await;
        let mut admin = cluster
            .primary()
            .connect(&creds.privileged)
            .await
            .expect("connect");
        sqlx::raw_sql("INSERT INTO app.ddl (id, v) VALUES (100, 100)")
            .execute(&mut admin)
            .await
            .expect("read_only does not stop READ ONLY ADMIN");
        sqlx::raw_sql("DELETE FROM app.ddl WHERE id = 100; SET GLOBAL read_only = 0")
            .execute(&mut admin)
            .await
            .expect("undo");
        let _ = admin.close().await;
    }

    // Fence and unfence on their own: a privileged client's write waits and is killed.
    let mut admin = cluster
        .primary()
        .connect(&creds.privileged)
        .await
        .expect("connect");
    let fenced = h[0].fence().await.expect("fence");
    assert!(
        fenced.killed_connections >= 1,
        "the privileged connection is closed"
    );
    assert!(sqlx::raw_sql("SELECT 1").execute(&mut admin).await.is_err());
    let obs = h[0].observe().await.expect("observe");
    assert!(obs.read_only);
    assert_eq!(obs.super_read_only, (fl == Flavor::Mysql).then_some(true));
    assert_eq!(h[0].holds_fence_lock().await, fl == Flavor::Mariadb);
    let (_admin, write) = common::try_write(
        &cluster,
        &creds.privileged,
        "INSERT INTO app.ddl (id, v) VALUES (2, 2)",
    )
    .await;
    // MySQL refuses at once (super_read_only, 1290); MariaDB makes it wait for the lock.
    match fl {
        Flavor::Mysql => {
            let e = write.expect("answers").expect_err("refused");
            assert!(
                e.to_string().contains("1290") || e.to_string().contains("super-read-only"),
                "{e}"
            );
        }
        Flavor::Mariadb => assert!(write.is_err(), "the write did not wait: {write:?}"),
    }
    assert_eq!(
        h[0].binlog_position().await.expect("position"),
        fenced.position
    );
    let killed = h[0].kill_client_connections().await.expect("kill");
    assert!(killed >= 1);
    h[0].unfence().await.expect("unfence");
    assert!(!h[0].holds_fence_lock().await);
    let mut admin = cluster
        .primary()
        .connect(&creds.privileged)
        .await
        .expect("connect");
    sqlx::raw_sql("INSERT INTO app.ddl (id, v) VALUES (3, 3)")
        .execute(&mut admin)
        .await
        .expect("writable");
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM app.ddl ORDER BY id")
        .fetch_all(&mut admin)
        .await
        .expect("rows");
    assert_eq!(ids, [1, 3], "the write made while fenced never committed");
    let _ = admin.close().await;

    // Repoint replica 2 under replica 1 (a chain), then back.
    let via = SourceAddr::new("127.0.0.1", cluster.instance(1).port());
    h[2].repoint(&via).await.expect("repoint");
    sqlx::raw_sql("INSERT INTO app.ddl (id, v) VALUES (4, 4)")
        .execute(&mut op)
        .await
        .expect("insert");
    caught_up(&h[0], &h[2]).await;
    let rs = h[2]
        .observe()
        .await
        .expect("observe")
        .replication
        .expect("replica");
    assert_eq!(rs.source_port, cluster.instance(1).port());
    assert!(rs.is_running());
    h[2].repoint(&SourceAddr::new("127.0.0.1", cluster.primary().port()))
        .await
        .expect("repoint");
    caught_up(&h[0], &h[2]).await;
    // Invalid input is refused before anything is sent.
    let err = h[2]
        .repoint(&SourceAddr::new("h', MASTER_USER='x", 1))
        .await
        .expect_err("bad host");
    assert!(matches!(err, Error::InvalidInput { .. }));
    let _ = op.close().await;
}

#[tokio::test]
async fn mariadb_administration() {
    administration(ServerKind::Mariadb1011).await;
}

#[tokio::test]
async fn mysql_administration() {
    administration(ServerKind::Mysql97).await;
}
