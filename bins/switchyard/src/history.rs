//! `switchyard history`: a cluster's numbered revisions and what changed in each.
//!
//! A local cluster keeps its history in its state directory as `history.json` (a serialized
//! [`switchyard_plan::history::History`], written by the local runtime). On Kubernetes the
//! history is the MySQLCluster's `status.revisions` (read with the kubeconfig's client and
//! turned into the same [`History`] by `MySQLCluster::revision_history`); both print the same
//! table. A fleet's revisions (`--fleet DIR` for a local fleet, `--kube-fleet` for a
//! MySQLFleet, whose record is in its status) print as one block per fleet revision.

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
    /// The folder of a local fleet (it holds fleet.json): print the fleet's revisions, what
    /// each rolled where and when, instead of a cluster's.
    #[arg(long, conflicts_with_all = ["state", "namespace", "kube_fleet"])]
    fleet: Option<PathBuf>,
    /// The name is a Kubernetes MySQLFleet's: print the fleet's revisions from its status
    /// (read from the API server with the kubeconfig).
    #[arg(long, conflicts_with = "state")]
    kube_fleet: bool,
    /// The Kubernetes namespace of the MySQLCluster (read from the API server with the
    /// kubeconfig; the default is the kubeconfig's namespace).
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
    if let Some(dir) = &args.fleet {
        return fleet_history(&args.cluster, dir, json);
    }
    if args.kube_fleet {
        return fleet_from_kubernetes(args.cluster, args.namespace, json);
    }
    let Some(state) = args.state else {
        return from_kubernetes(args.cluster, args.namespace, json);
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
    let current = history.latest().map(|e| e.revision.number);
    print_history(&args.cluster, &history, current, json)
}

/// Prints a local fleet's revisions from its fleet file.
fn fleet_history(name: &str, dir: &std::path::Path, json: bool) -> Exit {
    let file = switchyard_local::fleet::FleetFile::in_dir(dir);
    if !file.exists() {
        return exit::invalid(format!(
            "there is no fleet file {}: --fleet is the folder `switchyard fleet apply` was given",
            file.path().display()
        ));
    }
    let doc = match file.read() {
        Ok(d) => d,
        Err(e) => return exit::invalid(e),
    };
    print_fleet(name, &doc.record, json)
}

/// Reads the record in a MySQLFleet's status and prints its revisions.
fn fleet_from_kubernetes(fleet: String, namespace: Option<String>, json: bool) -> Exit {
    use kube::api::Api;
    use switchyard_kube::crd::MySQLFleet;
    crate::operator::block_on(async move {
        let client = crate::operator::client().await?;
        let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        let api: Api<MySQLFleet> = Api::namespaced(client, &ns);
        Ok(match api.get_opt(&fleet).await {
            Ok(Some(f)) => print_fleet(&fleet, &kube_fleet_record(&f), json),
            Ok(None) => exit::invalid(format!("there is no MySQLFleet {ns}/{fleet}")),
            Err(e) => {
                eprintln!("error: could not read MySQLFleet {ns}/{fleet}: {e}");
                Exit::Internal
            }
        })
    })
}

/// The record a MySQLFleet keeps in its status (empty before its first revision).
pub fn kube_fleet_record(
    fleet: &switchyard_kube::crd::MySQLFleet,
) -> switchyard_plan::fleet::FleetRecord {
    fleet
        .status
        .as_ref()
        .and_then(|s| s.record.clone())
        .unwrap_or_default()
}

/// Prints a fleet's revisions as text or JSON.
fn print_fleet(name: &str, record: &switchyard_plan::fleet::FleetRecord, json: bool) -> Exit {
    if json {
        let out = serde_json::json!({
            "fleet": name,
            "current": record.current().map(|r| r.number),
            "state": record.state,
            "revisions": record.revisions,
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
    print!("{}", render_fleet(name, record));
    Exit::Ok
}

/// The text form of a fleet's history: one block per revision, oldest first, with each cluster
/// it was started on and when it was done.
pub fn render_fleet(name: &str, record: &switchyard_plan::fleet::FleetRecord) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet {name}: {} revision(s), oldest first",
        record.revisions.len()
    );
    for r in &record.revisions {
        let ended = match r.ended {
            Some(e) if e.aborted => format!("aborted at {}", e.at),
            Some(e) => format!("done at {}", e.at),
            None => format!("not finished ({})", record.state),
        };
        let _ = writeln!(
            out,
            "f{:<4} {}  planned {}  {ended}",
            r.number, r.change, r.created
        );
        if r.rolled.is_empty() {
            let _ = writeln!(out, "        (started on no cluster)");
        }
        for c in &r.rolled {
            let done = c
                .done
                .map_or_else(|| "not done".to_string(), |d| format!("done {d}"));
            let _ = writeln!(out, "        {}: started {}, {done}", c.cluster, c.started);
        }
    }
    if let Some(current) = record.current() {
        let _ = writeln!(out, "current: f{}", current.number);
    }
    out
}

/// Reads `status.revisions` of the MySQLCluster `cluster` and prints it.
fn from_kubernetes(cluster: String, namespace: Option<String>, json: bool) -> Exit {
    use kube::api::Api;
    use switchyard_kube::crd::MySQLCluster;
    crate::operator::block_on(async move {
        let client = crate::operator::client().await?;
        let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        let api: Api<MySQLCluster> = Api::namespaced(client, &ns);
        Ok(match api.get_opt(&cluster).await {
            Ok(Some(c)) => {
                let (history, current) = kube_history(&c);
                print_history(&cluster, &history, current, json)
            }
            Ok(None) => exit::invalid(format!("there is no MySQLCluster {ns}/{cluster}")),
            Err(e) => {
                eprintln!("error: could not read MySQLCluster {ns}/{cluster}: {e}");
                Exit::Internal
            }
        })
    })
}

/// The history of a MySQLCluster and its current revision (what every instance ran when the
/// last rollout finished).
pub fn kube_history(cluster: &switchyard_kube::crd::MySQLCluster) -> (History, Option<u64>) {
    let current = cluster
        .status
        .as_ref()
        .and_then(|s| s.revisions.as_ref())
        .and_then(|r| r.current);
    (cluster.revision_history(), current)
}

/// Prints `history` as text or JSON.
fn print_history(cluster: &str, history: &History, current: Option<u64>, json: bool) -> Exit {
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
            "cluster": cluster,
            "flavor": history.flavor,
            "current": current,
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
    print!("{}", render_text(cluster, history, current));
    Exit::Ok
}

/// The text form: one block per revision, oldest first, with what changed from the one before,
/// then the current revision.
pub fn render_text(cluster: &str, history: &History, current: Option<u64>) -> String {
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
    if let Some(current) = current {
        let _ = writeln!(out, "current: r{current}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use switchyard_kube::crd::{
        MySQLCluster, MySQLClusterSpec, MySQLClusterStatus, RevisionEntry, Revisions,
    };

    use super::*;

    fn entry(number: u64, hash: &str, version: &str, config: &[(&str, &str)]) -> RevisionEntry {
        let ms = 1_795_000_000_000 + i64::try_from(number).expect("small") * 600_000;
        RevisionEntry {
            number,
            hash: hash.repeat(64),
            version: version.into(),
            created: Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).expect("time")),
            config: Some(
                config
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            template_hash: None,
            online: None,
            refused: None,
            rolls_back: None,
            pod: None,
        }
    }

    /// A MySQLCluster that went through an upgrade and two configuration changes prints the
    /// same table as a local cluster's history.json.
    #[test]
    fn a_mysqlcluster_status_prints_as_the_local_table() {
        let spec: MySQLClusterSpec = serde_json::from_value(serde_json::json!({
            "flavor": "mariadb", "version": "11.8.6", "replicas": 3,
        }))
        .expect("spec");
        let mut cluster = MySQLCluster::new("demo", spec);
        cluster.status = Some(MySQLClusterStatus {
            revisions: Some(Revisions {
                current: Some(4),
                update: Some(4),
                history: vec![
                    entry(1, "a", "10.11.14", &[("max_connections", "151")]),
                    entry(2, "b", "11.8.6", &[("max_connections", "151")]),
                    entry(3, "c", "11.8.6", &[("max_connections", "300")]),
                    entry(
                        4,
                        "d",
                        "11.8.6",
                        &[
                            ("max_connections", "300"),
                            ("innodb_buffer_pool_size", "128M"),
                        ],
                    ),
                ],
            }),
            ..MySQLClusterStatus::default()
        });
        let (history, current) = kube_history(&cluster);
        let text = render_text("demo", &history, current);
        let blocks: Vec<&str> = text.split("\nr").collect();
        assert!(
            text.starts_with("cluster demo (mariadb): 4 revision(s), oldest first"),
            "{text}"
        );
        assert_eq!(blocks.len(), 5, "{text}");
        assert!(blocks[1].contains("version 10.11.14"), "{text}");
        assert!(blocks[1].contains("max_connections=151"), "{text}");
        assert!(
            blocks[2].contains("upgrade: version 10.11.14 -> 11.8.6"),
            "{text}"
        );
        assert!(
            blocks[3].contains("config: max_connections: 151 -> 300"),
            "{text}"
        );
        assert!(
            blocks[4].contains("config: +innodb_buffer_pool_size=128M"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("current: r4"), "{text}");

        // The same history from a local cluster's file prints the same table.
        let local: History =
            serde_json::from_str(&serde_json::to_string(&history).expect("json")).expect("back");
        assert_eq!(render_text("demo", &local, current), text);
    }

    /// A MySQLFleet's record prints one block per fleet revision, each member with when it
    /// started and was done, as a local fleet's does.
    #[test]
    fn a_mysqlfleet_status_prints_its_revisions() {
        use switchyard_kube::crd::{MySQLFleet, MySQLFleetSpec, MySQLFleetStatus};
        use switchyard_plan::Timestamp;
        use switchyard_plan::fleet::{FleetAction, FleetRecord, apply};

        let mut record = FleetRecord::default();
        let plan = FleetAction::Plan {
            revision: 1,
            change: "max_connections=300".into(),
            waves: vec![vec!["shard-a".into()], vec!["shard-b".into()]],
        };
        apply(&mut record, &plan, Timestamp(1_000));
        let start = FleetAction::Start {
            cluster: "shard-a".into(),
            change: "max_connections=300".into(),
        };
        apply(&mut record, &start, Timestamp(2_000));
        let mut fleet = MySQLFleet::new("shards", MySQLFleetSpec::default());
        assert!(kube_fleet_record(&fleet).revisions.is_empty());
        fleet.status = Some(MySQLFleetStatus {
            record: Some(record),
            ..MySQLFleetStatus::default()
        });
        let text = render_fleet("shards", &kube_fleet_record(&fleet));
        assert!(
            text.starts_with("fleet shards: 1 revision(s), oldest first"),
            "{text}"
        );
        assert!(text.contains("f1    max_connections=300"), "{text}");
        assert!(text.contains("shard-a: started 2.000s, not done"), "{text}");
        assert!(text.trim_end().ends_with("current: f1"), "{text}");
    }
}
