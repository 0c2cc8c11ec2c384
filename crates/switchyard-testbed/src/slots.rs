//! A cap on the number of servers running at once, across every test
//! process using the same testbed cache, so that tests with deadlines do not
//! flake on a small machine.
//!
//! The cap is `SWITCHYARD_TESTBED_MAX_SERVERS` (default 6) slots, each a lock
//! file `slots/N.lock`. A cluster takes all the slots it needs at once or
//! none (taking them one by one could deadlock two clusters each holding
//! part of what they need) and keeps them until it drops. Several clusters
//! started together (a fleet) take every slot they need in one [`acquire`]
//! and give each cluster its part ([`SlotLease::split_off`],
//! [`crate::replication_leased`]), for the same reason.

use std::time::{Duration, Instant};

use rand::Rng as _;

use crate::cache::{self, FileLock};
use crate::error::{Error, Result};

/// Environment variable setting the cap.
pub const MAX_SERVERS_ENV: &str = "SWITCHYARD_TESTBED_MAX_SERVERS";
/// The cap when the environment does not set one.
pub const DEFAULT_MAX_SERVERS: usize = 6;
/// How long a request waits for slots before giving up.
pub const SLOT_WAIT: Duration = Duration::from_secs(30 * 60);

/// Slots held for running servers; released on drop.
#[derive(Debug)]
pub struct SlotLease {
    slots: Vec<FileLock>,
}

impl SlotLease {
    /// How many servers this lease allows.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the lease holds no slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes `n` of this lease's slots into a lease of their own (for one cluster of several
    /// started from one [`acquire`]); `None`, and nothing taken, when it holds fewer.
    pub fn split_off(&mut self, n: usize) -> Option<SlotLease> {
        let keep = self.slots.len().checked_sub(n)?;
        Some(SlotLease {
            slots: self.slots.split_off(keep),
        })
    }
}

/// The cap on servers running at once.
pub fn max_servers() -> usize {
    std::env::var(MAX_SERVERS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_SERVERS)
}

/// Waits (up to [`SLOT_WAIT`]) until `n` servers may run, and reserves them.
pub async fn acquire(n: usize) -> Result<SlotLease> {
    let cap = max_servers();
    if n > cap {
        return Err(Error::ServerCap {
            wanted: n,
            cap,
            detail: format!("raise {MAX_SERVERS_ENV} to at least {n}"),
        });
    }
    // Servers left behind by test processes that died are killed first,
    // which also frees their slots.
    crate::reaper::sweep();
    // So are the network cuts they left, before a new server takes a port one cuts.
    crate::netcut::sweep_recorded();
    let dir = cache::testbed_dir().join("slots");
    let started = Instant::now();
    let mut announced = false;
    loop {
        let mut held = Vec::with_capacity(n);
        for i in 0..cap {
            if held.len() == n {
                break;
            }
            if let Some(lock) = FileLock::try_acquire(&dir.join(format!("{i}.lock")))? {
                held.push(lock);
            }
        }
        if held.len() == n {
            return Ok(SlotLease { slots: held });
        }
        drop(held);
        if started.elapsed() > SLOT_WAIT {
            return Err(Error::ServerCap {
                wanted: n,
                cap,
                detail: format!("no slots freed up within {SLOT_WAIT:?}"),
            });
        }
        if !announced && started.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "switchyard-testbed: waiting for {n} of {cap} server slots ({MAX_SERVERS_ENV}) ..."
            );
            announced = true;
        }
        let pause = rand::rng().random_range(50..250);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_more_than_the_cap_with_the_variable_to_raise() {
        let err = acquire(max_servers() + 1).await.unwrap_err();
        assert_eq!(err.category(), "server_cap");
        assert!(err.to_string().contains(MAX_SERVERS_ENV), "{err}");
    }

    #[tokio::test]
    async fn a_lease_splits_into_parts_that_hold_its_slots() {
        let mut lease = acquire(2).await.expect("two slots");
        assert!(lease.split_off(3).is_none(), "more than it holds");
        assert_eq!(lease.len(), 2, "a refused split takes nothing");
        let part = lease.split_off(1).expect("one slot");
        assert_eq!((lease.len(), part.len()), (1, 1));
    }
}
