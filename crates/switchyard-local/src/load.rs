//! An application load on a local cluster: the write ledger's table created on the
//! primary, then the load's writers and readers through the cluster's router.

use switchyard_testbed::load::{Load, LoadConfig, LoadError, LoadHandle, prepare};

use crate::LocalCluster;

impl LocalCluster {
    /// Creates the load's table (`config.table`, the write ledger) on the primary as the
    /// operator account, then starts the load through the router with the cluster's
    /// application (or privileged) account: what a demo, a benchmark or a test measures
    /// its writes with.
    ///
    /// # Errors
    /// The table could not be created (the primary does not answer) or the load could not
    /// start (a bad configuration).
    pub async fn start_load(&self, config: LoadConfig) -> Result<LoadHandle, LoadError> {
        let primary = self.testbed().primary();
        prepare(
            &primary.connect_options(&self.credentials().operator),
            &config.table,
        )
        .await?;
        Load::start(config, self.endpoints(), self.credentials())
    }
}
