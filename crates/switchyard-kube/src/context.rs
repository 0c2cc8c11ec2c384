//! What every reconcile shares: the API client, the instance operations, the addresses of the
//! instances, the clock, the event recorder, the metrics, the leadership and the image the
//! pods' agent is installed from.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::runtime::events::Recorder;
use switchyard_plan::Timestamp;

use crate::credentials::ClusterCredentials;
use crate::leader::Tenure;
use crate::metrics::Metrics;
use crate::names::{MYSQL_PORT, Names};
use crate::ops::InstanceOps;

/// The safety requeue after a reconcile with nothing to do.
pub const SAFETY_REQUEUE: Duration = Duration::from_secs(300);
/// The requeue while a rollout or bootstrap is under way.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(2);

/// Gives the address of an instance: `(host, port)` of its server; its agent listens on the
/// same host at [`crate::agent::AGENT_PORT`].
pub type Resolver = Arc<dyn Fn(&Names, u32) -> (String, u16) + Send + Sync>;

/// The runtime's clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The stable DNS name of each pod through the hosts Service, port 3306.
pub fn dns_resolver() -> Resolver {
    Arc::new(|names: &Names, ordinal| (names.pod_host(ordinal), MYSQL_PORT))
}

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    })
}

/// A clock reading as a Kubernetes time.
pub fn to_time(t: Timestamp) -> Time {
    let ms = i64::try_from(t.0).unwrap_or(i64::MAX);
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

/// Builds the instance operations for a cluster from its credentials.
pub trait OpsFactory: Send + Sync {
    /// Operations on the instances of the cluster in `namespace`.
    fn ops(&self, namespace: &str, creds: &ClusterCredentials) -> Arc<dyn InstanceOps>;
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Builds instance operations.
    pub ops: Arc<dyn OpsFactory>,
    /// Resolves instance addresses.
    pub resolver: Resolver,
    /// The clock.
    pub clock: Clock,
    /// The one event recorder.
    pub recorder: Recorder,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// This operator replica's leadership, when it is elected on a lease: the engine
    /// confirms it before every action that changes a server, and a cluster whose
    /// switchover does not fit the lease is refused (see [`crate::leader`]). `None` for an
    /// engine that runs alone.
    pub tenure: Option<Arc<Tenure>>,
    /// The image the pods' `install` init container copies the agent from: the operator's
    /// own image unless configured otherwise (`switchyard operator --agent-image`).
    pub agent_image: String,
}

impl Context {
    /// The clock's time now, as a Kubernetes time.
    pub fn now_time(&self) -> Time {
        to_time(self.clock.as_ref()())
    }
}
