//! Leader election on a `coordination.k8s.io/v1` Lease, and the lease rule.
//!
//! One operator replica holds the Lease and reconciles; the others wait. Every acquisition
//! and renewal is a write conditional on the Lease's resource version, so two replicas can
//! never both believe they hold it after the same read. A holder that cannot renew within
//! the lease duration stops acting (the controller is shut down), and even if it were paused
//! mid-reconcile its status writes would fail on the resource version.
//!
//! **The lease rule.** Before every action that changes a server, the engine asks the runtime
//! to confirm its leadership until the time by which that action's statements end (the
//! switchover's work deadline for the steps of a switchover, now for other actions).
//! [`Tenure::confirm`] confirms only while this replica holds the lease and the lease cannot
//! have expired by then: it counts from the moment the last successful renewal was *sent*
//! (the renew time another replica reads is no earlier), less [`CLOCK_MARGIN`] for the
//! difference between the replicas' clocks. A successor can take the lease only once it
//! expired, so every statement of a deposed leader ends before its successor can act: it can
//! never promote after a new leader undid its switchover. A switchover must therefore fit in
//! what a renewal guarantees ([`Tenure::guaranteed`]: the duration less the renewal interval
//! and the margin); a cluster whose switchover deadline does not fit is refused with a
//! condition ([`crate::validate::check_lease`]).

use std::sync::{Mutex, PoisonError};
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

/// The lease duration `switchyard operator` uses unless told otherwise (`--lease-seconds`):
/// long enough that a switchover with the default deadline (30 s, of which 25 s of work
/// before the undo reserve) fits in what one renewal guarantees (45 s - 15 s - 1 s = 29 s).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(45);

/// How far the clocks of two operator replicas may differ: a holder stops counting on its
/// lease this long before it expires.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(1);

/// How often the holder renews its lease (and a follower tries to take it): a third of the
/// duration.
pub fn renew_interval(duration: Duration) -> Duration {
    duration / 3
}

/// This replica's leadership as the lease rule sees it: whether it holds the lease, and
/// until when no other replica can take it. The renewals of [`crate::controller::run`] feed
/// it; the engine's runtime asks it before every action that changes a server.
#[derive(Debug)]
pub struct Tenure {
    duration: Duration,
    /// Until when the lease is ours (renewal sent + duration - margin), while held.
    held_until: Mutex<Option<switchyard_plan::Timestamp>>,
}

/// The leadership could not be confirmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotConfirmed {
    /// This replica does not hold the lease (never took it, lost it, or gave it up).
    #[error("this operator replica does not hold the leader lease")]
    NotHeld,
    /// The lease may expire before the action's statements end.
    #[error(
        "the leader lease is certain only until {held_until}, before {until} when the action's \
         statements may still run; another replica could take it by then"
    )]
    TooShort {
        /// Until when the lease is certain.
        held_until: switchyard_plan::Timestamp,
        /// Until when the action needs it.
        until: switchyard_plan::Timestamp,
    },
}

impl NotConfirmed {
    /// A bounded category.
    pub fn category(&self) -> &'static str {
        match self {
            NotConfirmed::NotHeld => "not-held",
            NotConfirmed::TooShort { .. } => "too-short",
        }
    }
}

impl Tenure {
    /// The tenure of a replica whose lease lasts `duration`, not held yet.
    pub fn new(duration: Duration) -> Self {
        Tenure {
            duration,
            held_until: Mutex::new(None),
        }
    }

    /// The lease's duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// An acquisition or renewal whose request was sent at `sent` (read before the request,
    /// so no later than the renew time it wrote) succeeded.
    pub fn renewed(&self, sent: switchyard_plan::Timestamp) {
        let until = sent.after(self.duration.saturating_sub(CLOCK_MARGIN));
        let mut held = self
            .held_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *held = Some(held.map_or(until, |h| h.max(until)));
    }

    /// The lease is lost or given up: nothing is confirmed any more.
    pub fn lost(&self) {
        *self
            .held_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Until when the lease is certainly this replica's, while it holds it.
    pub fn held_until(&self) -> Option<switchyard_plan::Timestamp> {
        *self
            .held_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Confirms that this replica holds the lease and that it cannot have expired before
    /// `until`.
    ///
    /// # Errors
    /// [`NotConfirmed`] otherwise.
    pub fn confirm(&self, until: switchyard_plan::Timestamp) -> Result<(), NotConfirmed> {
        match self.held_until() {
            None => Err(NotConfirmed::NotHeld),
            Some(held_until) if held_until < until => {
                Err(NotConfirmed::TooShort { held_until, until })
            }
            Some(_) => Ok(()),
        }
    }

    /// How far ahead [`Tenure::confirm`] always confirms while the holder renews on schedule:
    /// the duration less the renewal interval (the last renewal may be that old) and
    /// [`CLOCK_MARGIN`].
    pub fn guaranteed(&self) -> Duration {
        guaranteed(self.duration)
    }
}

/// How far ahead a lease of `duration` renewed on schedule is certain (see
/// [`Tenure::guaranteed`]).
pub fn guaranteed(duration: Duration) -> Duration {
    duration
        .saturating_sub(renew_interval(duration))
        .saturating_sub(CLOCK_MARGIN)
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

/// Tries once to acquire or renew the lease ([`try_acquire`]) and tells `tenure` how far a
/// success reaches, counted from `now()` read before the request was sent; when another
/// replica holds the lease, `tenure` is lost.
///
/// # Errors
/// As [`try_acquire`]; `tenure` is left as it was (it expires on its own).
pub async fn renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    tenure: &Tenure,
    now: impl Fn() -> switchyard_plan::Timestamp,
) -> Result<Leadership, kube::Error> {
    let sent = now();
    let outcome = try_acquire(api, cfg).await?;
    match outcome {
        Leadership::Leading => tenure.renewed(sent),
        Leadership::Following => tenure.lost(),
    }
    Ok(outcome)
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

    #[test]
    fn a_tenure_confirms_only_while_held_and_only_as_far_as_the_last_renewal_reaches() {
        let t = |ms: u64| switchyard_plan::Timestamp(ms);
        let tenure = Tenure::new(Duration::from_secs(45));
        assert_eq!(tenure.confirm(t(0)), Err(NotConfirmed::NotHeld));
        // Renewed with a request sent at 10 s: certain until 10 + 45 - 1 = 54 s.
        tenure.renewed(t(10_000));
        assert_eq!(tenure.held_until(), Some(t(54_000)));
        assert_eq!(tenure.confirm(t(54_000)), Ok(()));
        assert_eq!(
            tenure.confirm(t(54_001)),
            Err(NotConfirmed::TooShort {
                held_until: t(54_000),
                until: t(54_001)
            })
        );
        // A renewal that answered late does not shorten what an earlier one gave.
        tenure.renewed(t(9_000));
        assert_eq!(tenure.held_until(), Some(t(54_000)));
        tenure.renewed(t(25_000));
        assert_eq!(tenure.confirm(t(69_000)), Ok(()));
        tenure.lost();
        assert_eq!(tenure.confirm(t(25_000)), Err(NotConfirmed::NotHeld));
        // Renewed every 15 s, a 45 s lease always reaches 29 s ahead.
        assert_eq!(tenure.guaranteed(), Duration::from_secs(29));
        assert_eq!(guaranteed(Duration::from_secs(15)), Duration::from_secs(9));
    }
}
