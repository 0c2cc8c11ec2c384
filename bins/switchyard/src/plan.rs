//! `switchyard plan`: the ordered steps the engine would take on a healthy cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;

use switchyard_plan::simulate::{TopologySpec, plan};
use switchyard_plan::versions::{Version, catalog};
use switchyard_plan::{Action, Policy, Revision, Strategy, Target};

use crate::exit::{self, Exit};

/// Arguments of `switchyard plan`.
#[derive(clap::Args)]
pub struct Args {
    /// A YAML file describing the cluster: `flavor`, and `instances` with `ordinal`, `role`, `version`.
    #[arg(long)]
    topology: PathBuf,
    /// The server version to upgrade to.
    #[arg(long)]
    to_version: String,
    /// Show the primary's switchover waiting for an approval.
    #[arg(long)]
    supervised: bool,
    /// Output format: text or json.
    #[arg(long, default_value = "text")]
    format: String,
}

/// Runs `switchyard plan`.
pub fn run(args: Args) -> Exit {
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => return exit::invalid(format!("unknown --format `{other}`: use text or json")),
    };
    let text = match std::fs::read_to_string(&args.topology) {
        Ok(t) => t,
        Err(e) => {
            return exit::invalid(format!(
                "cannot read the topology file {}: {e}",
                args.topology.display()
            ));
        }
    };
    let spec: TopologySpec = match serde_yaml::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            return exit::invalid(format!(
                "the topology file {} is not valid: {e}",
                args.topology.display()
            ));
        }
    };
    let observed = match spec.to_observed() {
        Ok(o) => o,
        Err(e) => {
            return exit::invalid(format!(
                "the topology file {} is not valid: {e}",
                args.topology.display()
            ));
        }
    };
    let to = match Version::parse(&args.to_version)
        .and_then(|v| catalog().series(spec.flavor, v).map(|_| v))
    {
        Ok(v) => v,
        Err(e) => return exit::invalid(format!("--to-version: {e}")),
    };
    let target = Target {
        revision: Revision::new(2, spec.flavor, to, &BTreeMap::new()),
        version: to,
        online: None,
        schema: None,
    };
    let policy = Policy {
        strategy: if args.supervised {
            Strategy::Supervised
        } else {
            Strategy::Automatic
        },
        ..Policy::default()
    };
    let steps = plan(&observed, &target, &policy);
    let halted = steps
        .last()
        .is_some_and(|s| matches!(s.action, Action::Halt { .. }));
    if json {
        let out = serde_json::json!({
            "flavor": spec.flavor,
            "to": to.to_string(),
            "allowed": !halted,
            "steps": steps,
        });
        match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: could not render the plan as JSON: {e}");
                return Exit::Internal;
            }
        }
    } else {
        println!(
            "plan: {} cluster of {} instances to {to}",
            spec.flavor,
            observed.instances.len()
        );
        for (n, step) in steps.iter().enumerate() {
            println!("{:>3}. {}", n + 1, step.action);
            if !step.reason.is_empty() {
                println!("     why: {}", step.reason);
            }
        }
    }
    if halted { Exit::Refused } else { Exit::Ok }
}
