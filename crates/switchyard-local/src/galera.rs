//! Schema changes on a Galera cluster: a rolling schema upgrade (RSU), one node at a time.
//!
//! Every Galera node may take writes, so while the nodes differ, rows of the old shape reach
//! altered nodes and rows of the new shape reach the others: the change must be safe in both
//! directions ([`AnalyzeOptions::bidirectional`]). When the cluster's writes all go through
//! one writer node (the router's primary endpoint), only old-shape rows reach altered nodes,
//! so the ordinary replica-first judgement applies, and the writer is altered last, after the
//! router's primary endpoint has moved to an altered node.
//!
//! For each node in turn ([`galera_schema_change`]): out of the router's read pool, the ALTER
//! with `wsrep_OSU_method = 'RSU'` for the session (the node desyncs, applies the change
//! alone, and catches up with what the others wrote meanwhile), a wait until the node is
//! back in the cluster and `Synced`, the table checked against the definition the analyzer
//! predicts, and back into the pool. A node that leaves the cluster or does not return to
//! `Synced` stops the change there.
//!
//! [`GaleraMethod::Toi`] runs the ALTER once in total order instead, only when asked:
//! every node runs it at the same point in the replication stream, and writes to the table
//! (on a copying change, every commit on every node) wait until all nodes have finished.
//!
//! A change the analyzer judges `safe-with-conversion` is refused on Galera unless forced:
//! the conversion variable's effect on Galera's applier has not been measured here.

use std::time::Duration;

use switchyard_ddl::{AnalyzeOptions, Verdict};
use switchyard_mysql::Instance;
use switchyard_plan::versions::Flavor;
use switchyard_testbed::router::Router;

use crate::error::{Error, Result};
use crate::runtime::POLL;

/// How a Galera schema change runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GaleraMethod {
    /// Rolling schema upgrade: one node at a time, desynced while it alters.
    #[default]
    Rsu,
    /// Total order isolation: the ALTER replicated to every node at once, blocking writes to
    /// the table on every node until all have run it.
    Toi,
}

/// A schema change for a Galera cluster.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GaleraChange {
    /// The `ALTER TABLE db.table ...` statement.
    pub statement: String,
    /// The node every write goes through, if there is one (altered last). `None`: every node
    /// may take writes, so the change must be safe in both directions.
    pub writer: Option<u32>,
    /// RSU (the default) or TOI.
    pub method: GaleraMethod,
    /// The risk accepted, in words, to run a change the analyzer refuses.
    pub accepted_risk: Option<String>,
    /// The session's `lock_wait_timeout` for the ALTER.
    pub lock_wait: Duration,
    /// How long a node may take to return to `Synced` after its ALTER.
    pub sync_timeout: Duration,
}

impl GaleraChange {
    /// An RSU change of `statement`, every node taking writes, 10 s lock wait, 120 s to sync.
    pub fn new(statement: impl Into<String>) -> Self {
        GaleraChange {
            statement: statement.into(),
            writer: None,
            method: GaleraMethod::Rsu,
            accepted_risk: None,
            lock_wait: Duration::from_secs(10),
            sync_timeout: Duration::from_secs(120),
        }
    }

    /// The same change, with every write going through node `writer`.
    pub fn with_writer(mut self, writer: u32) -> Self {
        self.writer = Some(writer);
        self
    }

    /// The same change, run in total order (TOI) instead of rolling.
    pub fn total_order(mut self) -> Self {
        self.method = GaleraMethod::Toi;
        self
    }

    /// The same change, run even when the pre-flight refuses it (see
    /// [`crate::SchemaRequest::force`]).
    pub fn force(mut self, accepted_risk: impl Into<String>) -> Self {
        self.accepted_risk = Some(accepted_risk.into());
        self
    }
}

/// What a Galera schema change did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GaleraReport {
    /// The analyzer's verdict.
    pub verdict: Verdict,
    /// The nodes altered, in order, with how long each took (ALTER and return to Synced).
    pub nodes: Vec<(u32, Duration)>,
}

/// Runs `change` on the Galera cluster of `nodes` (by ordinal; the router's backends have
/// the same ordinals when `router` is given). See the module documentation.
///
/// # Errors
/// [`Error::SchemaRefused`] (nothing runs), [`Error::SchemaInvalid`], [`Error::Invalid`]
/// (a node not synced before the change, a writer that is not a node),
/// [`Error::Sql`] from the ALTER, [`Error::Timeout`] or [`Error::SchemaMismatch`] for a
/// node that did not come back synced with the new definition; the nodes after it are not
/// touched.
pub async fn galera_schema_change(
    nodes: &[Instance],
    router: Option<&Router>,
    change: &GaleraChange,
) -> Result<GaleraReport> {
    let flavor = Flavor::Mariadb;
    let statement = change.statement.trim().to_owned();
    let invalid = |source| Error::SchemaInvalid {
        statement: statement.clone(),
        source: Box::new(source),
    };
    let name = switchyard_ddl::alter_table_name(flavor, &statement).map_err(invalid)?;
    let Some(database) = name.schema.clone() else {
        return Err(Error::Invalid(format!(
            "the schema change `{statement}` does not name the table's database: \
             write ALTER TABLE db.{} ...",
            name.name
        )));
    };
    if change
        .accepted_risk
        .as_ref()
        .is_some_and(|r| r.trim().is_empty())
    {
        return Err(Error::Invalid(
            "force needs the risk you accept, in words".into(),
        ));
    }
    let count = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
    if let Some(w) = change.writer
        && w >= count
    {
        return Err(Error::NoSuchInstance(w));
    }
    let node = |o: u32| -> Result<&Instance> {
        usize::try_from(o)
            .ok()
            .and_then(|i| nodes.get(i))
            .ok_or(Error::NoSuchInstance(o))
    };
    for o in 0..count {
        let obs = node(o)?.observe().await.map_err(Error::sql(o))?;
        if !obs.galera.as_ref().is_some_and(|g| g.is_synced()) {
            return Err(Error::Invalid(format!(
                "node {o} is not a synced Galera node ({:?}): a schema change starts only on a \
                 whole cluster",
                obs.galera.and_then(|g| g.local_state_comment)
            )));
        }
    }

    // Pre-flight, on the writer's (or the first node's) definition.
    let reference = change.writer.unwrap_or(0);
    let before = node(reference)?
        .show_create_table(&database, &name.name)
        .await
        .map_err(Error::sql(reference))?;
    let options = if change.writer.is_some() || change.method == GaleraMethod::Toi {
        AnalyzeOptions::default()
    } else {
        AnalyzeOptions::bidirectional()
    };
    let analysis =
        switchyard_ddl::analyze_with(flavor, &before, &statement, &options).map_err(invalid)?;
    if change.method == GaleraMethod::Rsu
        && analysis.verdict != Verdict::Safe
        && change.accepted_risk.is_none()
    {
        let mut reasons: Vec<String> = analysis
            .clauses
            .iter()
            .filter(|c| c.verdict != Verdict::Safe)
            .map(|c| format!("`{}`: {} [{}]", c.clause, c.reason, c.rule))
            .collect();
        if analysis.verdict == Verdict::SafeWithConversion {
            reasons.push(
                "Galera applies the other nodes' rows without the replica conversion variable \
                 measured here: a conversion is refused on Galera"
                    .into(),
            );
        }
        if change.writer.is_none() {
            reasons.push(
                "every node may take writes, so the change must be safe in both directions; \
                 name the one writer node if all writes go through it"
                    .into(),
            );
        }
        return Err(Error::SchemaRefused { statement, reasons });
    }
    let expected = switchyard_ddl::apply_alter(flavor, &before, &statement).map_err(invalid)?;
    let check = |o: u32, text: String| -> Result<()> {
        let now = switchyard_ddl::parse_table(flavor, &text).map_err(invalid)?;
        if now.same_shape(&expected) {
            Ok(())
        } else {
            Err(mismatch(o, &database, &name.name, &text))
        }
    };

    if change.method == GaleraMethod::Toi {
        let started = tokio::time::Instant::now();
        node(reference)?
            .run_replicated_ddl(&statement, change.lock_wait)
            .await
            .map_err(Error::sql(reference))?;
        let mut report = GaleraReport {
            verdict: analysis.verdict,
            nodes: Vec::new(),
        };
        for o in 0..count {
            wait_synced(node(o)?, o, count, change.sync_timeout).await?;
            // Synced is not applied: a node applies the total-order event
            // from its queue, so it shows the new definition a little later.
            let deadline = tokio::time::Instant::now() + change.sync_timeout;
            loop {
                let text = node(o)?
                    .show_create_table(&database, &name.name)
                    .await
                    .map_err(Error::sql(o))?;
                match check(o, text) {
                    Ok(()) => break,
                    Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            }
            report.nodes.push((o, started.elapsed()));
        }
        return Ok(report);
    }

    // Writer last; the others in ordinal order.
    let mut order: Vec<u32> = (0..count).filter(|o| Some(*o) != change.writer).collect();
    order.extend(change.writer);
    let mut report = GaleraReport {
        verdict: analysis.verdict,
        nodes: Vec::new(),
    };
    // A change the shape model cannot see (table options, a rebuild) always runs.
    let invisible = switchyard_ddl::parse_table(flavor, &before)
        .map_err(invalid)?
        .same_shape(&expected);
    for o in order {
        let started = tokio::time::Instant::now();
        let instance = node(o)?;
        let current = instance
            .show_create_table(&database, &name.name)
            .await
            .map_err(Error::sql(o))?;
        let current_table = switchyard_ddl::parse_table(flavor, &current).map_err(invalid)?;
        if !invisible && current_table.same_shape(&expected) {
            // Already altered (a rerun after a failure): nothing to do on this node.
            report.nodes.push((o, started.elapsed()));
            continue;
        }
        if let Some(router) = router {
            if Some(o) == change.writer {
                // The writer goes last: writes move to an altered node first.
                if let Some(&(to, _)) = report.nodes.first() {
                    router.set_primary(Some(to)).await.map_err(router_error)?;
                }
            }
            router
                .drain(o, Duration::ZERO)
                .await
                .map_err(router_error)?;
        }
        instance
            .run_local_ddl(&statement, change.lock_wait)
            .await
            .map_err(Error::sql(o))?;
        wait_synced(instance, o, count, change.sync_timeout).await?;
        let text = instance
            .show_create_table(&database, &name.name)
            .await
            .map_err(Error::sql(o))?;
        check(o, text)?;
        if let Some(router) = router {
            router.undrain(o).map_err(router_error)?;
        }
        report.nodes.push((o, started.elapsed()));
    }
    Ok(report)
}

fn mismatch(o: u32, database: &str, table: &str, text: &str) -> Error {
    Error::SchemaMismatch {
        ordinal: o,
        table: format!("{database}.{table}"),
        detail: format!(
            "does not have the definition the change should give it: the server prints {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    }
}

/// Waits until node `o` is back in a cluster of `size` nodes and `Synced`.
async fn wait_synced(instance: &Instance, o: u32, size: u32, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(obs) = instance.observe().await
            && let Some(g) = &obs.galera
            && g.is_synced()
            && g.cluster_size.is_none_or(|n| size <= n)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                ordinal: o,
                what: "the Galera node returning to Synced after its schema change",
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn router_error(source: switchyard_testbed::router::RouterError) -> Error {
    Error::Router {
        what: "change the router for a Galera schema change".into(),
        source: Box::new(source),
    }
}
