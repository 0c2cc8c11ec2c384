//! Bootstrap: the first primary of a cluster that was never initialized.
//!
//! Only instance 0 exists at first, and only its `instance.json` says `bootstrap`: its agent
//! initializes the empty data directory (binary log off, the accounts created without a GTID)
//! and starts the server read-only. Once that server answers, the status records
//! `initialized` *before anything else*, instance 0's ConfigMap loses `bootstrap`, and only
//! then is instance 0 made the writable primary and recorded as such. From then on no
//! instance is ever initialized again: a data directory that comes back empty stays empty
//! (the primary is never made writable; a replica is provisioned from a donor). The replicas
//! are created afterwards, each provisioned from the primary by its agent.
//!
//! A Galera cluster follows the same steps: instance 0, named in `status.galeraBootstrap`
//! before its pod exists, starts a new cluster (`--wsrep-new-cluster`); once its server
//! answers (its agent reports it ready only when it is Synced in a primary component), the
//! status records `initialized` and clears `galeraBootstrap` in one write, instance 0's
//! ConfigMap loses `new_cluster`, and instance 0 becomes the writer. The other nodes are
//! created afterwards and join it, receiving its state by SST.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use switchyard_plan::engine::ClusterRuntime;
use switchyard_plan::topology::TopologyKind;

use crate::apply;
use crate::build;
use crate::crd::MySQLCluster;
use crate::error::Error;
use crate::instances;
use crate::names::Names;
use crate::runtime::KubeRuntime;
use crate::validate::ValidSpec;

fn failed(message: impl std::fmt::Display) -> Error {
    Error::Bootstrap {
        ordinal: 0,
        message: message.to_string(),
    }
}

/// Makes instance 0 the writable primary once its agent initialized it and its server
/// answers; nothing before.
///
/// # Errors
/// [`Error::Bootstrap`] when a step fails (retried by the next reconcile), or the status
/// errors of its writes.
pub async fn first_primary(runtime: &KubeRuntime, spec: &ValidSpec) -> Result<(), Error> {
    let seen = runtime.seen();
    let Some(Some(Ok(view))) = seen.get(&0).map(|s| s.view.clone()) else {
        return Ok(());
    };
    // The lease rule holds here too: the statements end before the lease can expire.
    let now = ClusterRuntime::now(runtime);
    let until = now.after(crate::validate::switchover_work(spec.switchover_deadline));
    runtime.confirm_leadership(until).await.map_err(failed)?;

    // Initialized, first: no instance is ever given `bootstrap` again. On Galera the node
    // named to start the cluster now serves in a primary component: no node is told to start
    // one any more (its ConfigMap below loses `new_cluster`).
    let galera = spec.topology == TopologyKind::Galera;
    let mut status = runtime.cluster().status.unwrap_or_default();
    if !status.initialized || status.galera_bootstrap.is_some() {
        status.initialized = true;
        status.galera_bootstrap = None;
        runtime
            .write_status(status.clone())
            .await
            .map_err(crate::error::status_error)?;
    }
    let cluster: MySQLCluster = runtime.cluster();
    let names = Names::of(&cluster);
    let observed = runtime.observed();
    let plans = instances::plan(
        &names,
        &status,
        &observed,
        // A Galera node's peers are every node.
        if galera { spec.replicas } else { 1 },
        spec.max_lag_seconds,
        spec.topology,
    );
    if let Some(plan) = plans.first() {
        let config_maps: Api<ConfigMap> = Api::namespaced(runtime.client(), &names.namespace);
        let built = build::instance_config_map(&cluster, spec, 0, &plan.entry, &plan.config);
        apply::apply(&config_maps, &built, "ConfigMap").await?;
    }
    // A Galera node starts writable (every node holds every write; the primary Service
    // sends the writes to one).
    if !view.writable && !galera {
        let deadline = std::time::Instant::now() + until.since(now);
        // A semi-synchronous primary waits for acknowledgements from its first write on.
        runtime
            .set_semi_sync_source(0, true, deadline, "make instance 0 the first primary")
            .await
            .map_err(|e| failed(e.to_string()))?;
        runtime
            .ops()
            .promote(&runtime.target(0), deadline)
            .await
            .map_err(|e| failed(e.message))?;
    }
    let mut status = runtime.cluster().status.unwrap_or_default();
    status.current_primary = Some(0);
    runtime
        .write_status(status)
        .await
        .map_err(crate::error::status_error)?;
    runtime.refresh().await.map_err(|source| Error::Read {
        what: "Pod",
        source: Box::new(source),
    })?;
    let observed = runtime.observed();
    runtime.label_roles(&observed).await.map_err(failed)
}
