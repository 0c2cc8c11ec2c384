//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! One operator replica holds the Lease and reconciles; the others wait. Every acquisition
//! and renewal is a write conditional on the Lease's resource version, so two replicas can
//! never both believe they hold it after the same read. A holder that cannot renew within
//! the lease duration stops acting (the controller is shut down), and even if it were paused
//! mid-reconcile its status writes would fail on the resource version.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// How a replica takes part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
}

/// The outcome of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This replica holds the lease.
    Leading,
    /// Another replica holds an unexpired lease.
    Following,
}

/// Whether `lease` may be taken by `identity` at `now`.
pub fn may_acquire(lease: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    if lease.holder_identity.as_deref() == Some(identity) {
        return true;
    }
    let Some(renewed) = lease.renew_time.as_ref() else {
        return true;
    };
    let secs = i64::from(lease.lease_duration_seconds.unwrap_or(15));
    let expiry = renewed
        .0
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(secs))
        .unwrap_or(renewed.0);
    now >= expiry
}

/// Tries once to acquire or renew the lease.
///
/// # Errors
/// API failures other than a lost race (which is [`Leadership::Following`]).
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Leadership, kube::Error> {
    let now = Timestamp::now();
    let secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Leadership::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Leadership::Following),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            if !may_acquire(&spec, &cfg.identity, now) {
                return Ok(Leadership::Following);
            }
            let taking_over = spec.holder_identity.as_deref() != Some(cfg.identity.as_str());
            let mut next = spec.clone();
            next.holder_identity = Some(cfg.identity.clone());
            next.lease_duration_seconds = Some(secs);
            next.renew_time = Some(MicroTime(now));
            if taking_over {
                next.acquire_time = Some(MicroTime(now));
                next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            lease.spec = Some(next);
            lease.metadata.managed_fields = None;
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Leadership::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Leadership::Following),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up (on graceful shutdown), so another replica takes over at once.
///
/// # Errors
/// API failures.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    if let Some(mut lease) = api.get_opt(&cfg.name).await?
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.metadata.managed_fields = None;
        api.replace(&cfg.name, &PostParams::default(), &lease)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexpired_lease_of_another_holder_cannot_be_taken() {
        let t0 = Timestamp::from_second(1_000).expect("time");
        let spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t0)),
            ..LeaseSpec::default()
        };
        let t10 = Timestamp::from_second(1_010).expect("time");
        let t16 = Timestamp::from_second(1_016).expect("time");
        assert!(!may_acquire(&spec, "b", t10));
        assert!(may_acquire(&spec, "a", t10));
        assert!(may_acquire(&spec, "b", t16));
    }
}
