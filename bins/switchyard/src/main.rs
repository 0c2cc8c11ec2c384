//! The `switchyard` command: a thin layer that parses arguments and calls the library crates.
//!
//! Every subcommand follows one exit-code convention (see [`exit`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod approve;
mod check_ddl;
mod check_upgrade;
mod exit;
mod failover;
mod fleet;
mod history;
mod metrics;
mod operator;
mod plan;
mod switchover;

use exit::Exit;

/// switchyard: safe rolling changes for MySQL and MariaDB clusters.
#[derive(Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 yes/done, 2 refused, 3 allowed with a condition, 64 invalid input, 1 internal error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The process in every database pod: `agent install --to DIR`, `agent run`.
    Agent(agent::Args),
    /// Approve the supervised primary switchover a MySQLCluster waits for.
    Approve(approve::Args),
    /// Is an ALTER TABLE safe to roll node by node under row-based replication?
    CheckDdl(check_ddl::Args),
    /// Is an in-place change from one server version to another supported?
    CheckUpgrade(check_upgrade::Args),
    /// Fail a local cluster's failed primary over to instance N (forced; lossless unless
    /// --accept-data-loss).
    Failover(failover::Args),
    /// Roll one configuration change over several local clusters in waves: `fleet apply`,
    /// `resume`, `abort`, `status`.
    Fleet(fleet::Args),
    /// Print a cluster's numbered revisions and what changed in each.
    History(history::Args),
    /// Print the ordered steps the engine would take to upgrade a healthy cluster.
    Plan(plan::Args),
    /// Print a local cluster's failover metrics (Prometheus text format).
    Metrics(metrics::Args),
    /// Run the Kubernetes operator (in a cluster, or from a kubeconfig).
    Operator(operator::Args),
    /// Ask the operator to move a MySQLCluster's primary to instance N.
    Switchover(switchover::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::from_clap(err),
    };
    // One TLS crypto provider for the Kubernetes and SQL clients, chosen here rather than by
    // cargo's feature unification: a build in which both of rustls' providers are enabled
    // (this package's test build is one: kube-fake-client turns on kube's default features)
    // would otherwise panic at the first kube client. An error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome: Exit = match cli.command {
        Command::Agent(args) => return agent::run(args),
        Command::Approve(args) => approve::run(args),
        Command::CheckDdl(args) => check_ddl::run(args),
        Command::CheckUpgrade(args) => check_upgrade::run(args),
        Command::Failover(args) => failover::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::History(args) => history::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Operator(args) => operator::run(args),
        Command::Switchover(args) => switchover::run(args),
    };
    outcome.into()
}
