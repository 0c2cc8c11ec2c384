//! Loopback ports that do not collide between tests running in parallel,
//! in one process or several.
//!
//! Ports come from below the kernel's ephemeral range (so outgoing client
//! connections never take them between allocation and the server's bind).
//! A port is leased by holding a lock file `ports/PORT.lock` under the
//! testbed cache, and is offered only if it is also free to bind on
//! 127.0.0.1. The lease lasts until the [`PortLease`] drops, so an instance
//! keeps its port across restarts.

use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;

use rand::Rng as _;

use crate::cache::{self, FileLock};
use crate::error::{Error, Result};

/// A loopback port reserved for one user of the testbed.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    _lock: FileLock,
}

impl PortLease {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The range ports are taken from: up to the start of the kernel's ephemeral
/// range, at most 16,000 ports wide.
fn port_range() -> Range<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    if ephemeral_low > 12000 {
        ephemeral_low.saturating_sub(16000).max(10000)..ephemeral_low
    } else {
        // A host whose ephemeral range starts low: use the top of the range
        // above it, which the default range leaves free.
        61000..65000
    }
}

/// Reserves a free loopback port.
pub fn allocate_port() -> Result<PortLease> {
    let range = port_range();
    let dir = cache::testbed_dir().join("ports");
    let width = usize::from(range.end - range.start);
    let start = rand::rng().random_range(0..width);
    let tries = width.min(2000);
    for i in 0..tries {
        let port = range.start + u16::try_from((start + i * 7) % width).unwrap_or(0);
        let Some(lock) = FileLock::try_acquire(&dir.join(format!("{port}.lock")))? else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(PortLease { port, _lock: lock });
        }
    }
    Err(Error::Ports {
        range: format!("127.0.0.1:{}..{}", range.start, range.end),
        tried: tries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_distinct_while_held() {
        let leases: Vec<PortLease> = (0..20).map(|_| allocate_port().unwrap()).collect();
        let mut ports: Vec<u16> = leases.iter().map(PortLease::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 20);
        let range = port_range();
        assert!(ports.iter().all(|p| range.contains(p)));
    }
}
