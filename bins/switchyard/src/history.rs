//! `switchyard history`: a cluster's numbered revisions and what changed in each.
//!
//! A local cluster keeps its history in its state directory as `history.json` (a serialized
//! [`switchyard_plan::history::History`], written by the local runtime). On Kubernetes the
//! history is the MySQLCluster's `status.revisions`; switchyard-kube does not publish that yet,
//! so this command reads local clusters only for now and says so for `-n`.

use std::path::PathBuf;

use switchyard_plan::history::{Change, History};

use crate::exit::{self, Exit};

/// The file a local cluster's state directory keeps its history in.
pub const HISTORY_FILE: &str = "history.json";

/// Arguments of `switchyard history`.
#[derive(clap::Args)]
pub struct Args {
    /// The cluster's name.
    cluster: String,
    /// The state directory of a local cluster (it holds history.json).
    #[arg(long, conflicts_with = "namespace")]
    state: Option<PathBuf>,
    /// The Kubernetes namespace of the MySQLCluster.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    format: String,
}

/// Runs `switchyard history`.
pub fn run(args: Args) -> Exit {
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => return exit::invalid(format!("unknown --format `{other}`: use text or json")),
    };
    let Some(state) = args.state else {
        let ns = args.namespace.as_deref().unwrap_or("default");
        return exit::invalid(format!(
            "reading the history of MySQLCluster {ns}/{} from Kubernetes is not available yet \
             (the operator does not publish status.revisions yet): for a local cluster give \
             --state DIR",
            args.cluster
        ));
    };
    let path = state.join(HISTORY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return exit::invalid(format!(
                "cannot read the history of cluster {} from {}: {e} (is --state the cluster's \
                 state directory?)",
                args.cluster,
                path.display()
            ));
        }
    };
    let history: History = match serde_json::from_str(&text) {
        Ok(h) => h,
        Err(e) => {
            return exit::invalid(format!(
                "{} is not a switchyard history: {e}",
                path.display()
            ));
        }
    };
    if json {
        let revisions: Vec<serde_json::Value> = history
            .with_changes()
            .into_iter()
            .map(|(entry, changes)| {
                serde_json::json!({
                    "number": entry.revision.number,
                    "hash": entry.revision.hash,
                    "version": entry.version,
                    "created": entry.created,
                    "config": entry.config,
                    "changes": changes,
                })
            })
            .collect();
        let out = serde_json::json!({
            "cluster": args.cluster,
            "flavor": history.flavor,
            "current": history.latest().map(|e| e.revision.number),
            "revisions": revisions,
        });
        return match serde_json::to_string_pretty(&out) {
            Ok(s) => {
                println!("{s}");
                Exit::Ok
            }
            Err(e) => {
                eprintln!("error: could not render the history as JSON: {e}");
                Exit::Internal
            }
        };
    }
    print!("{}", render_text(&args.cluster, &history));
    Exit::Ok
}

/// The text form: one block per revision, oldest first, with what changed from the one before.
pub fn render_text(cluster: &str, history: &History) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let flavor = history
        .flavor
        .map_or_else(|| "unknown flavor".to_owned(), |f| f.to_string());
    let _ = writeln!(
        out,
        "cluster {cluster} ({flavor}): {} revision(s), oldest first",
        history.entries.len()
    );
    for (n, (entry, changes)) in history.with_changes().into_iter().enumerate() {
        let _ = writeln!(
            out,
            "r{:<4} {}  version {}  created {}",
            entry.revision.number,
            entry.revision.short_hash(),
            entry.version,
            entry.created
        );
        if n == 0 {
            if entry.config.is_empty() {
                let _ = writeln!(out, "        (first kept revision, no variables set)");
            } else {
                let _ = writeln!(out, "        (first kept revision)");
                for (name, value) in &entry.config {
                    let _ = writeln!(out, "        {name}={value}");
                }
            }
        } else if changes.is_empty() {
            let _ = writeln!(out, "        (same content as the revision before)");
        }
        for change in &changes {
            let kind = match change {
                Change::Version { .. } => "upgrade",
                _ => "config",
            };
            let _ = writeln!(out, "        {kind}: {change}");
        }
    }
    if let Some(latest) = history.latest() {
        let _ = writeln!(out, "current: r{}", latest.revision.number);
    }
    out
}
