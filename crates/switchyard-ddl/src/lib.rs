//! Is an ALTER TABLE safe to roll node by node under row-based replication?
//!
//! A rolling schema change runs the ALTER on each replica with the binary log off while the
//! source still writes rows of the old shape, then on the primary. Row images are applied by
//! position, with type conversions only where the replica allows them, and every key, foreign
//! key and check of the replica's table is enforced on rows the source wrote without them. This
//! crate reads the table's current definition (the text SHOW CREATE TABLE prints, MySQL's or
//! MariaDB's form) and one ALTER TABLE statement, applies the statement to a model of the table,
//! and judges each clause and the whole:
//!
//! - [`Verdict::Safe`]: rolling replica-first is correct as is;
//! - [`Verdict::SafeWithConversion`]: correct only with the replica type-conversion variable set
//!   as [`Analysis::settings`] says;
//! - [`Verdict::Unsafe`]: breaks replication or silently corrupts data for some row the source
//!   may write (judged on what it could write, not on today's data);
//!
//! and whether the primary can take the change online ([`PrimaryMode`]). Every finding carries
//! a stable [`Rule`] identifier and a reason.
//!
//! The rules come from the MySQL manual ("Replication with Differing Table Definitions on Source
//! and Replica", "Replication of Columns Having Different Data Types", "Online DDL Operations"),
//! the MariaDB knowledge base ("Replication When the Primary and Replica Have Different Table
//! Definitions", "InnoDB Online DDL Operations") and measurements on real MariaDB 10.11 and
//! MySQL 9.7 replication pairs (`mysql-facts.md`). Where they disagree the stricter answer wins,
//! except where measurement on both servers showed the manual's restriction does not apply
//! ([`Rule::WideningWithExtraColumns`]).
//!
//! Assumptions: row-based replication with `binlog_row_image=FULL` (the default); InnoDB.
//!
//! The crate performs no IO. Inputs it cannot judge are refused with a [`DdlError`] naming the
//! problem: anything but one ALTER TABLE (a second statement hidden in an executable comment
//! included), another table than the definition's, references to columns that do not exist.
//! Executable comments (`/*! … */`, `/*!50700 … */`, `/*M! … */`) are read as the flavor's
//! server reads them: their text counts where that server runs it (from the comment's version
//! on; `/*M!` only on MariaDB) and is a comment elsewhere.
//!
//! ```
//! use switchyard_ddl::{analyze, PrimaryMode, Verdict};
//! use switchyard_plan::versions::Flavor;
//!
//! let table = "CREATE TABLE `t` (`id` int NOT NULL, `n` int DEFAULT NULL, PRIMARY KEY (`id`))";
//! let analysis = analyze(Flavor::Mysql, table, "ALTER TABLE t MODIFY n BIGINT").unwrap();
//! assert_eq!(analysis.verdict, Verdict::SafeWithConversion);
//! assert_eq!(analysis.settings["replica_type_conversions"], "ALL_NON_LOSSY");
//! assert_eq!(analysis.primary, PrimaryMode::Switchover);
//! ```

mod alter;
mod apply;
mod column;
mod compat;
mod constraints;
mod definition;
mod error;
mod keys;
mod lex;
pub mod model;
mod online;
pub mod reference;
mod rules;
mod types;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::{Flavor, Version};

pub use definition::parse_table;
pub use error::DdlError;
pub use model::Table;
pub use online::{Algorithm, PrimaryMode};
pub use rules::{Claim, Finding, Rule, Verdict};

use apply::{Aspect, Change, Subject};
use compat::{Direction, Found};
use types::Promotion;

/// Options for [`analyze_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnalyzeOptions {
    /// Require the change to be safe in both directions: old-shape rows applied on the new
    /// table and new-shape rows applied on the old one, as on Galera where every node may take
    /// writes during a Rolling Schema Upgrade.
    pub bidirectional: bool,
    /// The servers' version, to name the algorithm precisely (INSTANT ADD COLUMN anywhere from
    /// MySQL 8.0.29 and MariaDB 10.4) and the conversion variable's name (MySQL before 8.0.26
    /// calls it `slave_type_conversions`). Without it, current releases are assumed.
    pub server_version: Option<Version>,
}

impl AnalyzeOptions {
    /// Options for a change that must be safe in both directions (Galera RSU).
    pub fn bidirectional() -> Self {
        AnalyzeOptions {
            bidirectional: true,
            ..AnalyzeOptions::default()
        }
    }

    /// These options with the servers' version set.
    pub fn with_server_version(mut self, version: Version) -> Self {
        self.server_version = Some(version);
        self
    }
}

/// The judgement of one clause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClauseVerdict {
    /// The clause as written.
    pub clause: String,
    /// The clause's verdict: the worst of its findings.
    pub verdict: Verdict,
    /// The rule that decided the verdict.
    pub rule: Rule,
    /// Why.
    pub reason: String,
    /// Every finding about the clause.
    pub findings: Vec<Finding>,
    /// Whether the primary can take the clause online.
    pub primary: PrimaryMode,
    /// The algorithm the server uses for the clause.
    pub algorithm: Algorithm,
    /// Why the primary can or cannot take it online.
    pub primary_reason: String,
}

/// The judgement of one ALTER TABLE statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// The overall verdict: the worst of every finding.
    pub verdict: Verdict,
    /// One judgement per clause, in statement order.
    pub clauses: Vec<ClauseVerdict>,
    /// The reasons for the overall verdict, one line each.
    pub reasons: Vec<String>,
    /// Replica settings the change needs, for `safe-with-conversion`: the conversion variable
    /// of the flavor (`replica_type_conversions` on MySQL, `slave_type_conversions` on
    /// MariaDB) and its value (`ALL_NON_LOSSY`, plus `ALL_UNSIGNED` where MySQL widens unsigned
    /// integers). Empty otherwise.
    pub settings: BTreeMap<String, String>,
    /// Online if the primary can take every clause in place with concurrent writes, else
    /// switchover.
    pub primary: PrimaryMode,
}

/// Judges `alter` against the table defined by `create_table`, replica-first (old-shape rows
/// applied on the new table).
pub fn analyze(flavor: Flavor, create_table: &str, alter: &str) -> Result<Analysis, DdlError> {
    analyze_with(flavor, create_table, alter, &AnalyzeOptions::default())
}

/// Applies `alter` to the table defined by `create_table` and returns the new definition, for
/// comparing with what a server reports after the change ([`Table::same_shape`]).
pub fn apply_alter(flavor: Flavor, create_table: &str, alter: &str) -> Result<Table, DdlError> {
    let table = parse_table(flavor, create_table)?;
    let statement = alter::parse_alter(flavor, None, alter)?;
    check_table_name(&table, &statement)?;
    Ok(apply::apply(flavor, &table, &statement)?.0)
}

/// The statement a rolling change runs on every instance for `alter`, whose analysis judged
/// the primary `primary` ([`Analysis::primary`]).
///
/// When the primary can take the change online, `, LOCK=NONE` is added, so
/// that a server that would block writes for it (a table copy) refuses it instead of running
/// it: the first replica's ALTER then fails with the server's reason (error 1846) before any
/// instance changed, rather than the primary's ALTER later holding up every write. Both
/// servers still choose INSTANT for a change that can be instant (measured on MariaDB 10.11
/// and MySQL 9.7). A statement that names its own ALGORITHM or LOCK, renames the table
/// (an instant exclusive lock both servers refuse to run with LOCK=NONE) or has a
/// partitioning clause (which must come last) is kept as written. Comments around the statement and a
/// trailing `;` are dropped.
pub fn rollout_statement(
    flavor: Flavor,
    alter: &str,
    primary: PrimaryMode,
) -> Result<String, DdlError> {
    let parsed = alter::parse_alter(flavor, None, alter)?;
    let text = parsed.text;
    // RENAME TO takes an exclusive metadata lock for an instant: both servers refuse it
    // with LOCK=NONE (error 1845), and it never blocks writes for longer.
    let kept = parsed.clauses.iter().flat_map(|c| c.ops.iter()).any(|op| {
        matches!(
            op,
            alter::Op::Algorithm(_)
                | alter::Op::Lock(_)
                | alter::Op::Partition(_)
                | alter::Op::RenameTable(_)
        )
    });
    if primary == PrimaryMode::Online && !kept {
        Ok(format!("{text}, LOCK=NONE"))
    } else {
        Ok(text)
    }
}

/// What to add when a server refuses a statement of [`rollout_statement`] that carries
/// `LOCK=NONE` (errors 1845/1846): why, what it means, and what to do.
pub const NOT_ONLINE_ADVICE: &str = "the analyzer judged that the primary could take this change \
     online, but this server would copy the table or lock it, and nothing was changed; to roll \
     it with the primary behind a switchover instead, add LOCK=SHARED to the statement";

/// The table `alter` changes, as written (the schema only when the statement names one), for
/// fetching its current definition before [`analyze`]. The statement is checked as
/// [`analyze`] checks it: one ALTER TABLE, executable comments read as the server reads them.
pub fn alter_table_name(flavor: Flavor, alter: &str) -> Result<model::TableName, DdlError> {
    Ok(alter::parse_alter(flavor, None, alter)?.table)
}

fn check_table_name(table: &Table, statement: &alter::AlterStatement) -> Result<(), DdlError> {
    if table.name.matches(&statement.table) {
        Ok(())
    } else {
        Err(DdlError::TableMismatch {
            definition: table.name.to_string(),
            alter: statement.table.to_string(),
        })
    }
}

/// Like [`analyze`], with options.
pub fn analyze_with(
    flavor: Flavor,
    create_table: &str,
    alter: &str,
    options: &AnalyzeOptions,
) -> Result<Analysis, DdlError> {
    let old = parse_table(flavor, create_table)?;
    let statement = alter::parse_alter(flavor, options.server_version, alter)?;
    check_table_name(&old, &statement)?;
    let (new, effects) = apply::apply(flavor, &old, &statement)?;

    let moved: HashSet<u32> = effects
        .iter()
        .flat_map(|e| e.touches.iter())
        .filter_map(|s| match s {
            Subject::Column(id, Aspect::Position) => Some(*id),
            _ => None,
        })
        .collect();
    let mut found = compat::layout(&old, &new, &moved);
    found.extend(compat::compare(
        flavor,
        options.server_version,
        &old,
        &new,
        Direction::OldToNew,
        options.bidirectional,
    ));
    if options.bidirectional {
        for mut f in compat::compare(
            flavor,
            options.server_version,
            &new,
            &old,
            Direction::NewToOld,
            true,
        ) {
            if f.rule.verdict() == Verdict::Safe {
                continue;
            }
            f.reason = format!(
                "new-shape rows on nodes still on the old definition: {}",
                f.reason
            );
            found.push(f);
        }
    }
    found.extend(intrinsic(&effects));
    let mut statement_level = Vec::new();
    if statement.ignore {
        statement_level.push(Found::simple(
            Rule::AlterIgnore,
            "ALTER IGNORE deletes the rows that violate a new key on each node independently",
        ));
    }
    if old.options.system_versioned {
        statement_level.push(Found::simple(
            Rule::Unsupported,
            "system-versioned tables carry hidden row-start/row-end columns that switchyard does not model",
        ));
    }

    // Attribute findings to the clauses that touched their subjects.
    let mut per_clause: Vec<Vec<(Finding, Option<Promotion>)>> =
        vec![Vec::new(); statement.clauses.len()];
    for f in found {
        let owners: Vec<usize> = effects
            .iter()
            .enumerate()
            .filter(|(_, e)| f.subjects.iter().any(|s| e.touches.contains(s)))
            .map(|(i, _)| i)
            .collect();
        if owners.is_empty() {
            statement_level.push(f);
            continue;
        }
        let finding = Finding {
            rule: f.rule,
            verdict: f.rule.verdict(),
            reason: f.reason.clone(),
        };
        for owner in owners {
            if !per_clause[owner]
                .iter()
                .any(|(existing, _)| *existing == finding)
            {
                per_clause[owner].push((finding.clone(), f.promotion));
            }
        }
    }

    let adds_primary = effects
        .iter()
        .flat_map(|e| e.changes.iter())
        .any(|c| matches!(c, Change::IndexAdded(index) if index.kind == model::IndexKind::Primary));
    let mut clauses = Vec::with_capacity(statement.clauses.len());
    let mut promotions = Vec::new();
    for ((clause, effect), findings) in statement.clauses.iter().zip(&effects).zip(per_clause) {
        let mut list: Vec<Finding> = Vec::new();
        for (finding, promotion) in findings {
            if let Some(p) = promotion {
                promotions.push(p);
            }
            list.push(finding);
        }
        if list.is_empty() {
            list.push(no_op());
        }
        let worst = list
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Safe);
        // The first finding of the worst verdict decides; among safe ones, prefer a real rule to no-op.
        let decisive = list
            .iter()
            .find(|f| f.verdict == worst && (worst > Verdict::Safe || f.rule != Rule::NoOp))
            .or(list.first())
            .cloned()
            .unwrap_or_else(no_op);
        let judgement = online::judge(
            flavor,
            options.server_version,
            &old,
            &effect.changes,
            adds_primary,
        );
        clauses.push(ClauseVerdict {
            clause: clause.text.clone(),
            verdict: worst,
            rule: decisive.rule,
            reason: decisive.reason.clone(),
            findings: list,
            primary: judgement.mode(),
            algorithm: judgement.algorithm,
            primary_reason: judgement.reason,
        });
    }

    let statement_findings: Vec<Finding> = statement_level
        .iter()
        .map(|f| Finding {
            rule: f.rule,
            verdict: f.rule.verdict(),
            reason: f.reason.clone(),
        })
        .collect();
    let verdict = clauses
        .iter()
        .map(|c| c.verdict)
        .chain(statement_findings.iter().map(|f| f.verdict))
        .max()
        .unwrap_or(Verdict::Safe);
    let mut reasons = Vec::new();
    for f in &statement_findings {
        if f.verdict == verdict {
            push_unique(&mut reasons, format!("{} [{}]", f.reason, f.rule));
        }
    }
    for clause in &clauses {
        for f in clause.findings.iter().filter(|f| f.verdict == verdict) {
            push_unique(
                &mut reasons,
                format!("`{}`: {} [{}]", clause.clause, f.reason, f.rule),
            );
        }
    }
    let mut settings = BTreeMap::new();
    if verdict == Verdict::SafeWithConversion {
        let variable = conversion_variable(flavor, options.server_version);
        let mut value = "ALL_NON_LOSSY".to_owned();
        if flavor == Flavor::Mysql && promotions.contains(&Promotion::UnsignedInteger) {
            value.push_str(",ALL_UNSIGNED");
        }
        reasons.push(format!(
            "set {variable}='{value}' on each replica before its ALTER and keep it until every node is altered"
        ));
        settings.insert(variable.to_owned(), value);
    }
    let primary = clauses
        .iter()
        .map(|c| c.primary)
        .max()
        .unwrap_or(PrimaryMode::Online);
    Ok(Analysis {
        verdict,
        clauses,
        reasons,
        settings,
        primary,
    })
}

fn no_op() -> Finding {
    Finding {
        rule: Rule::NoOp,
        verdict: Verdict::Safe,
        reason: "the clause changes nothing row-based replication sees".to_owned(),
    }
}

fn push_unique(list: &mut Vec<String>, line: String) {
    if !list.contains(&line) {
        list.push(line);
    }
}

/// The name of the replica's type-conversion variable.
pub fn conversion_variable(flavor: Flavor, version: Option<Version>) -> &'static str {
    match flavor {
        Flavor::Mysql if version.is_none_or(|v| v >= Version::new(8, 0, 26)) => {
            "replica_type_conversions"
        }
        Flavor::Mysql | Flavor::Mariadb => "slave_type_conversions",
    }
}

/// Findings that follow from a clause's kind rather than from comparing the tables.
fn intrinsic(effects: &[apply::ClauseEffects]) -> Vec<Found> {
    let mut found = Vec::new();
    for (index, effect) in effects.iter().enumerate() {
        let subject = || vec![Subject::Clause(index)];
        for change in &effect.changes {
            let (rule, reason) = match change {
                Change::RenameTable => (
                    Rule::TableRenamed,
                    "renaming the table on a replica first makes it miss every row event the source writes for \
                     the old name"
                        .to_owned(),
                ),
                Change::TableOption { engine_changed: true, .. } => (
                    Rule::EngineChange,
                    "changing the storage engine changes transactional and crash-safety behaviour on one side \
                     only; run it as a planned migration"
                        .to_owned(),
                ),
                Change::TableOption { key, .. } => {
                    (Rule::TableOptionChange, format!("table option {key} does not change row images"))
                }
                Change::ConvertCharset => (
                    Rule::TableOptionChange,
                    "the table's default character set changes with its columns".to_owned(),
                ),
                Change::Partition(op) => partition_finding(op),
                Change::Rebuild(what) => {
                    (Rule::TableRebuild, format!("{what} rebuilds the table without changing its definition"))
                }
                Change::NoRowEffect(what) => (Rule::NoOp, format!("{what} changes nothing InnoDB stores")),
                Change::Unsupported(what) => (Rule::Unsupported, format!("{what}; switchyard does not judge it")),
                Change::NoOp(why) => (Rule::NoOp, format!("{why}: nothing to do")),
                Change::Algorithm(_) | Change::Lock(_) => {
                    (Rule::AlgorithmLock, "says how the server runs the change, not what it changes".to_owned())
                }
                Change::IndexMetadata => {
                    (Rule::IndexChange, "renaming or hiding an index does not change row images".to_owned())
                }
                _ => continue,
            };
            found.push(Found {
                rule,
                reason,
                subjects: subject(),
                promotion: None,
            });
        }
    }
    found
}

fn partition_finding(op: &alter::PartitionOp) -> (Rule, String) {
    use alter::PartitionOp as P;
    match op {
        P::Add | P::Remove | P::Reshape(_) | P::Maintenance(_) | P::By { catch_all: true, .. } => (
            Rule::PartitioningChange,
            "every row still has a partition; a differently partitioned replica replicated correctly \
             (measured, facts file), although the manuals do not support it"
                .to_owned(),
        ),
        P::By { method, catch_all: false } => (
            Rule::PartitioningMayRejectRows,
            format!(
                "PARTITION BY {method} without a catch-all partition (MAXVALUE or DEFAULT): a row the source writes \
                 may have no partition on the replica, which stops replication"
            ),
        ),
        P::DataChange(verb) => (
            Rule::PartitionDataChange,
            format!("{verb} PARTITION removes or replaces rows on each node separately, outside replication"),
        ),
    }
}

impl Found {
    fn simple(rule: Rule, reason: &str) -> Self {
        Found {
            rule,
            reason: reason.to_owned(),
            subjects: Vec::new(),
            promotion: None,
        }
    }
}
