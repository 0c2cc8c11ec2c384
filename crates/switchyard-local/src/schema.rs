//! Schema changes on a local cluster: the pre-flight that turns an `ALTER TABLE` into the
//! engine's [`SchemaTarget`], and the executor behind [`LocalRuntime`]'s `run_ddl`.
//!
//! # Use
//! ```no_run
//! # async fn demo(cluster: &switchyard_local::LocalCluster) -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard_local::{LocalRuntime, SchemaRequest};
//! use switchyard_plan::{Engine, Policy};
//!
//! let request = SchemaRequest::new("ALTER TABLE app.t ADD COLUMN note VARCHAR(20) DEFAULT ''");
//! let plan = cluster.schema_target(&request).await?; // refused here if unsafe
//! let engine = Engine::new(LocalRuntime::new(cluster), plan.target, Policy::default());
//! engine.run(1_000).await?;
//! # Ok(()) }
//! ```
//!
//! # Pre-flight
//! [`LocalCluster::schema_target`] reads the table's definition on the primary
//! (`SHOW CREATE TABLE`) and judges the statement with switchyard-ddl's analyzer. A change
//! judged `unsafe` is refused with each unsafe clause, its reason and its rule
//! ([`Error::SchemaRefused`]), and nothing runs, unless the request carries
//! [`SchemaRequest::force`] with the risk the caller accepts in words. The prepared change
//! (statement, table, definition before) is written to the state file.
//!
//! # Executor
//! The engine orders the change (replicas one at a time after a drain, the primary in place
//! when the change is online-capable, otherwise behind a switchover with the old primary
//! altered before it replicates again); `run_ddl` on one instance:
//!
//! 1. reads the table; if it already has the new definition it is not altered again;
//! 2. on a replica, sets the replica type-conversion variable the change needs, after saving
//!    its previous value in the state file (restored once every instance has the change and
//!    the replicas have applied everything the primary wrote);
//! 3. on a fenced former primary, lifts the fence for the ALTER behind switchyard-mysql's DDL
//!    lockout (every other client kept out, the fence put back afterwards) and stops its
//!    applier around the ALTER if it replicates;
//! 4. runs the ALTER with `sql_log_bin = 0` for the session and a bounded `lock_wait_timeout`
//!    ([`RuntimeConfig::ddl_lock_wait`](crate::RuntimeConfig::ddl_lock_wait)) (steps 3 and 4
//!    are switchyard-mysql's `Instance::run_member_ddl`, shared with the Kubernetes runtime);
//! 5. on a replica, waits until it has executed the primary's position, failing with
//!    [`Error::ReplicationBroken`] and the server's error text if its applier stops;
//! 6. checks that `SHOW CREATE TABLE` has the shape the analyzer's model of the ALTER
//!    predicts ([`switchyard_ddl::Table::same_shape`]);
//! 7. writes the change's id for the instance to the state file, which `observe` reports
//!    as [`Instance::schema`](switchyard_plan::topology::Instance::schema).
//!
//! The id is written only after the table was seen with its new shape, and every step is
//! idempotent, so an engine killed at any point is followed by one that finishes the work:
//! the state file is written by atomic rename under a lock, and the table's shape (which
//! survives anything) decides whether the ALTER still has to run. A table on the server
//! would not be safer: DDL commits on its own, never together with a row.
//!
//! Changes made with the binary log off are not in the binary log: change-data-capture
//! consumers and point-in-time recovery from binary logs do not see them.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use switchyard_ddl::{Analysis, AnalyzeOptions, Table, Verdict};
use switchyard_mysql::Instance;
use switchyard_plan::decide::{SchemaTarget, Target};

use crate::cluster::{LocalCluster, Shared};
use crate::error::{Error, Result};
use crate::runtime::POLL;
use crate::state::{SchemaChangeState, SchemaState};

/// A schema change asked for: one `ALTER TABLE` naming its database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaRequest {
    statement: String,
    id: Option<String>,
    accepted_risk: Option<String>,
    one_writer: bool,
}

impl SchemaRequest {
    /// A request to run `statement` (`ALTER TABLE db.table ...`).
    pub fn new(statement: impl Into<String>) -> Self {
        SchemaRequest {
            statement: statement.into(),
            id: None,
            accepted_risk: None,
            one_writer: false,
        }
    }

    /// On a Galera cluster: every write goes through the router's primary endpoint (one
    /// writer node), so rows reach the altered nodes in the old shape only, and the change is
    /// judged as for replicas. Without it every node may take writes, and the change must be
    /// safe in both directions (old shape to new and new to old). No effect on a
    /// primary-replica cluster.
    pub fn one_writer(mut self) -> Self {
        self.one_writer = true;
        self
    }

    /// The same request with this id (default: `ddl-` and 12 hex digits of the statement's
    /// SHA-256). Instances report the id of the last change they have. An id names one
    /// change for good: preparing it again (a new engine process) keeps the definition it
    /// was first prepared against, so to run the same statement again after other changes,
    /// give it a new id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The same request, run even when the analyzer judges it unsafe. `accepted_risk` says
    /// in words what the caller accepts (a replica whose applier stops, rows that differ);
    /// it must not be empty. A forced change that breaks replication still halts at the
    /// first instance whose applier stops.
    pub fn force(mut self, accepted_risk: impl Into<String>) -> Self {
        self.accepted_risk = Some(accepted_risk.into());
        self
    }

    /// The statement.
    pub fn statement(&self) -> &str {
        &self.statement
    }

    /// The id the change gets.
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let digest = Sha256::digest(self.statement.trim().as_bytes());
            format!("ddl-{}", &hex::encode(digest)[..12])
        })
    }
}

/// A schema change that passed the pre-flight.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaPlan {
    /// The target for the engine: the cluster's latest revision with the schema change.
    pub target: Target,
    /// The analyzer's judgement.
    pub analysis: Analysis,
    /// The risk accepted when an unsafe change was forced.
    pub forced: Option<String>,
    /// The table's definition before the change, as the primary printed it.
    pub before: String,
}

impl LocalCluster {
    /// The pre-flight of a schema change: reads the table's definition on the primary,
    /// judges `request` with switchyard-ddl's analyzer, refuses an unsafe change unless
    /// forced, records the prepared change in the state file and returns the engine's target
    /// (the latest revision, with the change as its [`SchemaTarget`]).
    ///
    /// # Errors
    /// [`Error::SchemaRefused`] for an unsafe change without force (nothing runs),
    /// [`Error::SchemaInvalid`] for a statement the analyzer refuses (not one ALTER TABLE,
    /// executable comments, another table), [`Error::Invalid`] for a table without its
    /// database, an empty accepted risk or an id already used by another statement,
    /// [`Error::Sql`] when the table cannot be read.
    pub async fn schema_target(&self, request: &SchemaRequest) -> Result<SchemaPlan> {
        let shared = self.shared();
        let flavor = shared.flavor;
        let statement = request.statement.trim().to_owned();
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
        if let Some(risk) = &request.accepted_risk
            && risk.trim().is_empty()
        {
            return Err(Error::Invalid(
                "force needs the risk you accept, in words (for example \
                 \"replicas may stop applying until repaired\")"
                    .into(),
            ));
        }
        let cluster = shared.state.read()?.cluster;
        let latest = cluster
            .history
            .latest()
            .cloned()
            .ok_or_else(|| Error::Invalid("the cluster has no revision yet".into()))?;
        let primary = cluster.primary;
        let before = self
            .handle(primary)?
            .show_create_table(&database, &name.name)
            .await
            .map_err(Error::sql(primary))?;
        // On Galera with every node taking writes, rows of the new shape reach nodes still
        // on the old one too: the change is judged in both directions.
        let both_ways = shared.galera && !request.one_writer;
        let options = if both_ways {
            AnalyzeOptions::bidirectional()
        } else {
            AnalyzeOptions::default()
        }
        .with_server_version(latest.version);
        let analysis =
            switchyard_ddl::analyze_with(flavor, &before, &statement, &options).map_err(invalid)?;
        // Galera's applier has no replica type-conversion variable measured here: a change
        // that needs one is refused there like an unsafe one.
        let refused = analysis.verdict == Verdict::Unsafe
            || (shared.galera && analysis.verdict == Verdict::SafeWithConversion);
        if refused && request.accepted_risk.is_none() {
            let mut reasons: Vec<String> = analysis
                .clauses
                .iter()
                .filter(|c| c.verdict != Verdict::Safe)
                .map(|c| format!("`{}`: {} [{}]", c.clause, c.reason, c.rule))
                .chain(
                    // Statement-level findings have no clause.
                    analysis
                        .reasons
                        .iter()
                        .filter(|r| !r.starts_with('`'))
                        .cloned(),
                )
                .collect();
            if shared.galera && analysis.verdict == Verdict::SafeWithConversion {
                reasons.push(
                    "Galera applies the other nodes' rows without the replica conversion \
                     variable: a change that needs a conversion is refused on Galera"
                        .into(),
                );
            }
            if both_ways {
                reasons.push(
                    "every Galera node may take writes, so the change must be safe in both \
                     directions; declare the one writer node (SchemaRequest::one_writer) if \
                     all writes go through the router's primary endpoint"
                        .into(),
                );
            }
            return Err(Error::SchemaRefused { statement, reasons });
        }
        let id = request.id();
        let prepared = SchemaChangeState {
            statement: statement.clone(),
            database,
            table: name.name.clone(),
            before: before.clone(),
            saved_settings: BTreeMap::new(),
        };
        shared.state.update_cluster(|c| {
            match c.schema.changes.get(&id) {
                Some(known) if known.statement != statement => {
                    return Err(Error::Invalid(format!(
                        "schema change id {id} is already used for `{}`: choose another id",
                        known.statement
                    )));
                }
                // Prepared again (a new engine): keep the saved settings.
                Some(_) => {}
                None => {
                    c.schema.changes.insert(id.clone(), prepared);
                }
            }
            Ok(())
        })?;
        if let Some(risk) = &request.accepted_risk {
            tracing::warn!(change = %id, risk = %risk, "an unsafe schema change is forced");
        }
        let mut target = Target::new(latest.revision, latest.version);
        target.schema = Some(SchemaTarget {
            id,
            statement,
            replica_settings: analysis
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            primary_online: analysis.primary == switchyard_ddl::PrimaryMode::Online,
        });
        Ok(SchemaPlan {
            target,
            analysis,
            forced: request.accepted_risk.clone(),
            before,
        })
    }
}

/// What the executor needs from the runtime.
pub(crate) struct Executor<'a> {
    pub(crate) shared: &'a Shared,
    /// The runtime's handles, by ordinal.
    pub(crate) handles: Vec<Instance>,
    pub(crate) lock_wait: Duration,
    pub(crate) catch_up: Duration,
}

impl Executor<'_> {
    fn handle(&self, ordinal: u32) -> Result<&Instance> {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.handles.get(i))
            .ok_or(Error::NoSuchInstance(ordinal))
    }

    /// Runs `change` on `ordinal` (see the module documentation).
    pub(crate) async fn run(&self, ordinal: u32, change: &SchemaTarget) -> Result<()> {
        let flavor = self.shared.flavor;
        let cluster = self.shared.state.read()?.cluster;
        let prepared = cluster
            .schema
            .changes
            .get(&change.id)
            .cloned()
            .ok_or_else(|| Error::UnknownSchemaChange {
                id: change.id.clone(),
            })?;
        if prepared.statement != change.statement.trim() {
            return Err(Error::Invalid(format!(
                "schema change {} was prepared for `{}`, not `{}`",
                change.id, prepared.statement, change.statement
            )));
        }
        let invalid = |source| Error::SchemaInvalid {
            statement: prepared.statement.clone(),
            source: Box::new(source),
        };
        let before = switchyard_ddl::parse_table(flavor, &prepared.before).map_err(invalid)?;
        let expected = switchyard_ddl::apply_alter(flavor, &prepared.before, &prepared.statement)
            .map_err(invalid)?;
        let table = format!("{}.{}", prepared.database, prepared.table);
        let handle = self.handle(ordinal)?;
        let is_primary = cluster.primary == ordinal;
        let fenced = cluster
            .instances
            .get(&ordinal)
            .ok_or(Error::NoSuchInstance(ordinal))?
            .fenced;

        let (_, current) = self.read_table(ordinal, &prepared).await?;
        // A change the shape model cannot see (table options, a rebuild) always runs.
        let invisible = before.same_shape(&expected);
        let needs_alter = invisible || !current.same_shape(&expected);
        if needs_alter && !current.same_shape(&before) {
            return Err(Error::SchemaMismatch {
                ordinal,
                table,
                detail: "has neither the definition the change starts from nor the one it \
                         makes: it was changed outside this schema change; compare it with the \
                         primary's and repair it by hand"
                    .into(),
            });
        }

        if self.shared.galera {
            return self
                .run_rsu(ordinal, change, &prepared, needs_alter, &expected)
                .await;
        }
        if !is_primary && !change.replica_settings.is_empty() {
            self.set_replica_settings(ordinal, change).await?;
        }
        if needs_alter {
            // With LOCK=NONE where the primary was judged online: a server that would block
            // writes refuses it at the first replica, before anything changed.
            let statement = switchyard_ddl::rollout_statement(
                flavor,
                &prepared.statement,
                switchyard_ddl::PrimaryMode::from_online(change.primary_online),
            )
            .map_err(invalid)?;
            // A former primary after a switchover: its fence would block the ALTER, so it is
            // lifted behind the DDL lockout; its applier waits until it has the new shape.
            // On a fenced instance, through its agent: the handle that holds the fence.
            let node = self.shared.node(ordinal)?;
            let member = if fenced { &node.agent } else { handle };
            member
                .run_member_ddl(&statement, self.lock_wait, fenced && !is_primary)
                .await
                .map_err(|e| {
                    if e.category() == "alter_not_supported" && statement != prepared.statement {
                        Error::SchemaNotOnline {
                            ordinal,
                            statement: statement.clone(),
                            server: e
                                .server_error()
                                .map_or_else(|| e.to_string(), ToString::to_string),
                        }
                    } else {
                        Error::sql(ordinal)(e)
                    }
                })?;
        }
        // A fenced former primary does not replicate until the engine repoints it.
        if !is_primary && !fenced {
            self.wait_applied(ordinal, cluster.primary, &change.id)
                .await?;
        }
        let (text, now) = self.read_table(ordinal, &prepared).await?;
        if !now.same_shape(&expected) {
            return Err(Error::SchemaMismatch {
                ordinal,
                table,
                detail: format!(
                    "does not have the definition the change should give it after the ALTER: \
                     the server prints {}",
                    one_line(&text)
                ),
            });
        }
        let last = cluster
            .instances
            .keys()
            .filter(|o| **o != ordinal)
            .all(|o| cluster.schema.applied.get(o) == Some(&change.id));
        if last {
            self.restore_settings(&change.id, cluster.primary).await?;
        }
        self.shared.state.update_cluster(|c| {
            c.schema.applied.insert(ordinal, change.id.clone());
            if last && let Some(p) = c.schema.changes.get_mut(&change.id) {
                p.saved_settings.clear();
            }
            Ok(())
        })
    }

    /// On a Galera node: the ALTER with `wsrep_OSU_method = 'RSU'` for its session (the node
    /// desyncs, alters alone and catches up with what the others wrote meanwhile; the engine
    /// waits until it is Synced again before returning it), then the table checked against
    /// the predicted definition and the change's id recorded for the node.
    async fn run_rsu(
        &self,
        ordinal: u32,
        change: &SchemaTarget,
        prepared: &SchemaChangeState,
        needs_alter: bool,
        expected: &Table,
    ) -> Result<()> {
        if needs_alter {
            let method = self
                .handle(ordinal)?
                .run_local_ddl(&prepared.statement, self.lock_wait)
                .await
                .map_err(Error::sql(ordinal))?;
            if method != switchyard_mysql::LocalDdlMethod::RollingSchemaUpgrade {
                return Err(Error::Invalid(format!(
                    "node {ordinal} ran the schema change as {method:?}, not as a rolling \
                     schema upgrade: it does not have wsrep on"
                )));
            }
        }
        let (text, now) = self.read_table(ordinal, prepared).await?;
        if !now.same_shape(expected) {
            return Err(Error::SchemaMismatch {
                ordinal,
                table: format!("{}.{}", prepared.database, prepared.table),
                detail: format!(
                    "does not have the definition the change should give it after the ALTER: \
                     the server prints {}",
                    one_line(&text)
                ),
            });
        }
        self.shared.state.update_cluster(|c| {
            c.schema.applied.insert(ordinal, change.id.clone());
            Ok(())
        })
    }

    /// The table's definition on `ordinal`: as printed, and parsed.
    async fn read_table(
        &self,
        ordinal: u32,
        prepared: &SchemaChangeState,
    ) -> Result<(String, Table)> {
        let text = self
            .handle(ordinal)?
            .show_create_table(&prepared.database, &prepared.table)
            .await
            .map_err(Error::sql(ordinal))?;
        let table = switchyard_ddl::parse_table(self.shared.flavor, &text).map_err(|source| {
            Error::SchemaInvalid {
                statement: prepared.statement.clone(),
                source: Box::new(source),
            }
        })?;
        Ok((text, table))
    }

    /// Saves the previous values (once: a second run keeps the first save) and sets the
    /// change's replica settings.
    async fn set_replica_settings(&self, ordinal: u32, change: &SchemaTarget) -> Result<()> {
        let handle = self.handle(ordinal)?;
        let names: Vec<&str> = change
            .replica_settings
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        let previous = handle
            .global_values(&names)
            .await
            .map_err(Error::sql(ordinal))?;
        let saved: Vec<(String, String)> = previous
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        self.shared.state.update_cluster(|c| {
            let p =
                c.schema
                    .changes
                    .get_mut(&change.id)
                    .ok_or_else(|| Error::UnknownSchemaChange {
                        id: change.id.clone(),
                    })?;
            p.saved_settings.entry(ordinal).or_insert(saved);
            Ok(())
        })?;
        self.set(ordinal, &change.replica_settings).await
    }

    async fn set(&self, ordinal: u32, pairs: &[(String, String)]) -> Result<()> {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let report = self
            .handle(ordinal)?
            .set_variables(&pairs)
            .await
            .map_err(Error::sql(ordinal))?;
        let refused: Vec<String> = report
            .read_only
            .iter()
            .chain(&report.refused)
            .map(|r| format!("{} ({})", r.name, r.server))
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(Error::VariablesRefused {
                ordinal,
                refused: refused.join(", "),
            })
        }
    }

    /// Once every instance has the change: lets every replica apply what the primary wrote
    /// (old-shape rows included), then puts the saved settings back.
    async fn restore_settings(&self, id: &str, primary: u32) -> Result<()> {
        let saved = self
            .shared
            .state
            .read()?
            .cluster
            .schema
            .changes
            .get(id)
            .map(|p| p.saved_settings.clone())
            .unwrap_or_default();
        if saved.is_empty() {
            return Ok(());
        }
        let fenced: Vec<u32> = self
            .shared
            .state
            .read()?
            .cluster
            .instances
            .iter()
            .filter(|(_, i)| i.fenced)
            .map(|(o, _)| *o)
            .collect();
        // A fenced former primary does not replicate until the engine repoints it.
        for o in saved
            .keys()
            .filter(|o| **o != primary && !fenced.contains(o))
        {
            self.wait_applied(*o, primary, id).await?;
        }
        for (o, pairs) in &saved {
            self.set(*o, pairs).await?;
        }
        Ok(())
    }

    /// Waits until replica `ordinal` has executed everything `primary` has written, failing
    /// at once with the server's error when its applier stops. An instance that does not
    /// replicate has nothing to wait for.
    async fn wait_applied(&self, ordinal: u32, primary: u32, change: &str) -> Result<()> {
        let handle = self.handle(ordinal)?;
        if handle
            .observe()
            .await
            .map_err(Error::sql(ordinal))?
            .replication
            .is_none()
        {
            return Ok(());
        }
        let position = self
            .handle(primary)?
            .binlog_position()
            .await
            .map_err(Error::sql(primary))?;
        let deadline = tokio::time::Instant::now() + self.catch_up;
        loop {
            let obs = handle.observe().await.map_err(Error::sql(ordinal))?;
            if let Some(r) = &obs.replication {
                let broken = |errno, message: &str| Error::ReplicationBroken {
                    ordinal,
                    change: change.to_owned(),
                    errno,
                    message: message.to_owned(),
                };
                if r.last_sql_errno != 0 {
                    return Err(broken(r.last_sql_errno, &r.last_sql_error));
                }
                if !r.sql_running {
                    return Err(broken(0, "the applier (SQL thread) is stopped"));
                }
            }
            let slice = POLL * 5;
            match handle.wait_caught_up(&position, slice).await {
                Ok(()) => break,
                Err(switchyard_mysql::Error::Lagging { .. }) => {}
                Err(e) => return Err(Error::sql(ordinal)(e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    ordinal,
                    what: "the replica applying what the primary wrote after a schema change",
                    waited: self.catch_up,
                });
            }
        }
        // An event applied just before the wait ended may have stopped the applier.
        if let Some(r) = handle
            .observe()
            .await
            .map_err(Error::sql(ordinal))?
            .replication
            && r.last_sql_errno != 0
        {
            return Err(Error::ReplicationBroken {
                ordinal,
                change: change.to_owned(),
                errno: r.last_sql_errno,
                message: r.last_sql_error,
            });
        }
        Ok(())
    }
}

/// The id of the last schema change `ordinal` has, from the state.
pub(crate) fn applied(schema: &SchemaState, ordinal: u32) -> Option<String> {
    schema.applied.get(&ordinal).cloned()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
