//! The pod network: a bridge on the host with a private /24, one network namespace per pod
//! joined to it by a veth pair, and the cleanup of what a kubelet that died left behind.
//!
//! Each kubelet takes one subnet `10.213.K.0/24` (K from 0 to 255) by holding the lock file
//! `net-K.lock` in the machine-wide folder [`LOCKS`] for its whole life, so kubelets of other
//! test processes never collide, whichever testbed cache they use (the bridge and the
//! namespaces are machine-wide too: a lock under one cache would let a kubelet of another
//! take a live subnet for a dead one's and sweep it). Everything it creates is named after K: the bridge
//! `sykKbr` (the host's address `10.213.K.1` on it), each pod's namespace `sykKpN` and the
//! host end of its veth pair `sykKvN` (the pod's end is `eth0`). A kubelet that takes K first
//! removes whatever carries those names (a kubelet that held K died without cleaning up: the
//! lock was free): it kills the processes left in each namespace, deletes the namespaces and
//! the bridge, and empties its work folder.
//!
//! Addresses stay on the machine: the pods get no default route and the host forwards
//! nothing; the test process reaches every pod through the bridge.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::host;

/// The /16 every kubelet's /24 comes from.
const PREFIX: [u8; 2] = [10, 213];

/// The bridge, its subnet, the lock that reserves it, and the pod addresses in use.
#[derive(Debug)]
pub(crate) struct Network {
    index: u8,
    bridge: String,
    work: PathBuf,
    /// Held for the kubelet's life: the subnet is ours while it is.
    _lock: File,
    state: Arc<Mutex<Allocation>>,
}

#[derive(Debug, Default)]
struct Allocation {
    used: BTreeSet<u8>,
    /// Each pod name's address (`namespace/name`): a pod recreated under its name gets it
    /// again, so clients that hold an address (a load, a monitor) reach the new pod.
    by_name: std::collections::BTreeMap<String, u8>,
    next: u8,
    next_netns: u32,
    /// Set by [`Network::close`]: no namespace is created after it.
    closed: bool,
}

impl Allocation {
    /// A host number neither in use nor reserved by a name.
    fn fresh(&mut self) -> Option<u8> {
        for _ in 0..253 {
            let candidate = self.next;
            self.next = if self.next >= 254 { 2 } else { self.next + 1 };
            let named = self.by_name.values().any(|h| *h == candidate);
            if !self.used.contains(&candidate) && !named {
                return Some(candidate);
            }
        }
        None
    }

    /// Name `key`'s host number, reserved now when it has none.
    fn reserve(&mut self, key: &str) -> Option<u8> {
        if let Some(h) = self.by_name.get(key) {
            return Some(*h);
        }
        let h = self.fresh()?;
        self.by_name.insert(key.to_owned(), h);
        Some(h)
    }
}

/// The addresses pod names have on a kubelet's network, as a handle a test can move into a
/// resolver (the operator's, a router's): what DNS would answer for the pods' stable names.
#[derive(Clone, Debug)]
pub struct Addresses {
    index: u8,
    state: Arc<Mutex<Allocation>>,
}

impl Addresses {
    /// The address of pod `name` in namespace `ns`: the one every pod of that name gets on
    /// this kubelet, reserved now when no pod of that name ran yet. None when the subnet has
    /// no free address left.
    pub fn of(&self, ns: &str, name: &str) -> Option<Ipv4Addr> {
        let host = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reserve(&format!("{ns}/{name}"))?;
        Some(Network::address(self.index, host))
    }
}

/// One pod's network namespace, its address, and the host end of its veth pair.
#[derive(Debug)]
pub(crate) struct PodNet {
    /// The namespace's name (under `/run/netns`).
    pub(crate) netns: String,
    /// The pod's address.
    pub(crate) ip: Ipv4Addr,
}

/// Where the subnets' lock files live: one folder for the whole machine, as the network is.
pub(crate) const LOCKS: &str = "/run/switchyard-kubelet";

impl Network {
    /// Takes a free subnet, cleans up after a dead kubelet that held it, and creates the
    /// bridge. `base` holds the lock files and the per-subnet work folders.
    pub(crate) fn create(base: &Path) -> Result<Network> {
        let locks = Path::new(LOCKS);
        std::fs::create_dir_all(locks).map_err(Error::io("create", locks))?;
        let taken = host_addresses()?;
        for index in 0..=255u8 {
            if taken.iter().any(|a| {
                let o = a.octets();
                o[0] == PREFIX[0] && o[1] == PREFIX[1] && o[2] == index
            }) && !owned_by_dead_kubelet(index, locks)?
            {
                continue;
            }
            let path = locks.join(format!("net-{index}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(Error::io("open", &path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path)(e)),
            }
            let work = base.join(format!("net-{index}"));
            sweep(index, &work)?;
            std::fs::create_dir_all(&work).map_err(Error::io("create", &work))?;
            let bridge = format!("syk{index}br");
            let cidr = format!("{}/24", Self::address(index, 1));
            host::run("ip", &["link", "add", &bridge, "type", "bridge"])?;
            let network = Network {
                index,
                bridge,
                work,
                _lock: file,
                state: Arc::new(Mutex::new(Allocation {
                    next: 2,
                    ..Allocation::default()
                })),
            };
            // From here on, dropping `network` removes the bridge.
            host::run("ip", &["addr", "add", &cidr, "dev", &network.bridge])?;
            host::run("ip", &["link", "set", &network.bridge, "up"])?;
            return Ok(network);
        }
        Err(Error::NoSubnet)
    }

    fn address(index: u8, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], index, host)
    }

    /// The hardware address of the pod with host number `host` on subnet `index` (locally
    /// administered, unicast).
    fn mac(index: u8, host: u8) -> String {
        format!("02:53:59:4b:{index:02x}:{host:02x}")
    }

    /// The host's address on the bridge (the pods' `status.hostIP`).
    pub(crate) fn host_ip(&self) -> Ipv4Addr {
        Self::address(self.index, 1)
    }

    /// The subnet's index K (`10.213.K.0/24`).
    pub(crate) fn index(&self) -> u8 {
        self.index
    }

    /// The subnet, as `10.213.K.0/24`.
    pub(crate) fn subnet(&self) -> String {
        format!("{}/24", Self::address(self.index, 0))
    }

    /// A handle on the pod names' addresses.
    pub(crate) fn addresses(&self) -> Addresses {
        Addresses {
            index: self.index,
            state: self.state.clone(),
        }
    }

    /// The work folder of this kubelet (volumes, container roots, logs).
    pub(crate) fn work(&self) -> &Path {
        &self.work
    }

    /// Creates the network namespace of pod `key` (`namespace/name`) with its name's address
    /// on the bridge (the one it had before, else a free one). Holds the allocation lock
    /// throughout, so [`Network::close`] never races a creation.
    pub(crate) fn add_pod(&self, key: &str) -> Result<PodNet> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.closed {
            return Err(Error::Io {
                what: "create a pod network in",
                path: self.work.clone(),
                source: std::io::Error::other("the kubelet is shutting down"),
            });
        }
        // The name's address; a fresh one should it be in use (never expected: a pod waits
        // until its predecessor of the same name released its network).
        let found = match s.reserve(key) {
            Some(h) if !s.used.contains(&h) => Some(h),
            Some(_) => s.fresh(),
            None => None,
        };
        let Some(host) = found else {
            return Err(Error::NoAddress {
                subnet: self.subnet(),
            });
        };
        s.next_netns += 1;
        let n = s.next_netns;
        let ip = Self::address(self.index, host);
        let pod = PodNet {
            netns: format!("syk{}p{n}", self.index),
            ip,
        };
        let veth = format!("syk{}v{n}", self.index);
        // The pod's hardware address follows its IP address, so a pod recreated under its
        // name is the same neighbour to the host and to the other pods: with a new one, the
        // neighbour caches would send to the old pod's address (dropped) until their entries
        // age out, tens of seconds in which nobody reaches the new pod.
        let mac = Self::mac(self.index, host);
        let result = (|| {
            host::run("ip", &["netns", "add", &pod.netns])?;
            host::run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "address", &mac,
                    "netns", &pod.netns,
                ],
            )?;
            host::run("ip", &["link", "set", &veth, "master", &self.bridge, "up"])?;
            let cidr = format!("{ip}/24");
            host::run(
                "ip",
                &["-n", &pod.netns, "addr", "add", &cidr, "dev", "eth0"],
            )?;
            host::run("ip", &["-n", &pod.netns, "link", "set", "eth0", "up"])?;
            host::run("ip", &["-n", &pod.netns, "link", "set", "lo", "up"])?;
            Ok(())
        })();
        if let Err(e) = result {
            remove_netns(&pod.netns);
            let _ = host::run("ip", &["link", "del", &veth]);
            return Err(e);
        }
        s.used.insert(host);
        s.by_name.insert(key.to_owned(), host);
        Ok(pod)
    }

    /// Stops creating namespaces and removes every one of this subnet (killing what runs in
    /// them), the bridge and the work folder (kept when `SWITCHYARD_KUBELET_KEEP` is set).
    pub(crate) fn close(&self) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.closed = true;
        let keep = std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty());
        let empty = PathBuf::new();
        let _ = sweep(self.index, if keep { &empty } else { &self.work });
    }

    /// Cuts the pod of namespace `netns` off the pod network (`connected` false) or joins it
    /// again: the host end of its veth pair set down or up. While it is down, what the pod
    /// sends and what is sent to it is dropped silently, both ways, as in a real partition:
    /// the host (the operator, the test's clients) and every other pod lose it: connections
    /// hang (or find no route once the host's neighbour entry for the address failed), never
    /// refused by the pod; inside the pod, loopback and its own address still work.
    pub(crate) fn set_connected(&self, netns: &str, connected: bool) -> Result<()> {
        let n = netns
            .strip_prefix(&format!("syk{}p", self.index))
            .ok_or_else(|| Error::NoSuchPod {
                pod: format!("network namespace {netns}"),
            })?;
        let veth = format!("syk{}v{n}", self.index);
        host::run(
            "ip",
            &["link", "set", &veth, if connected { "up" } else { "down" }],
        )?;
        Ok(())
    }

    /// Deletes a pod's namespace (its veth pair goes with it) and frees its address. The
    /// caller has stopped every process in it.
    pub(crate) fn remove_pod(&self, pod: &PodNet) {
        remove_netns(&pod.netns);
        let host = pod.ip.octets()[3];
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .used
            .remove(&host);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Pods are gone by now (the kubelet closes the network first); anything left is
        // swept while the subnet's lock is still held.
        self.close();
    }
}

/// Keeps the kubelet's work folder (claims, logs) after it drops, for a post-mortem.
pub const KEEP_ENV: &str = "SWITCHYARD_KUBELET_KEEP";

/// Every IPv4 address configured on this machine.
fn host_addresses() -> Result<Vec<Ipv4Addr>> {
    let out = host::run("ip", &["-o", "-4", "addr", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

/// Whether subnet `index` is held by nobody (its address is a dead kubelet's leftover).
fn owned_by_dead_kubelet(index: u8, locks: &Path) -> Result<bool> {
    let bridge_exists = host::run("ip", &["link", "show", &format!("syk{index}br")]).is_ok();
    if !bridge_exists {
        return Ok(false);
    }
    let path = locks.join(format!("net-{index}.lock"));
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return Ok(true);
    };
    Ok(match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            true
        }
        Err(_) => false,
    })
}

/// The network namespaces on this machine.
fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in namespace `name`, then deletes it.
fn remove_netns(name: &str) {
    let pids: Vec<u32> = host::run("ip", &["netns", "pids", name])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    for p in &pids {
        host::signal(*p, Signal::SIGKILL);
    }
    host::wait_gone(&pids, Duration::from_secs(10));
    let _ = host::run("ip", &["netns", "del", name]);
}

/// Removes what carries subnet `index`'s names: namespaces (and their processes), veths, the
/// bridge, and the work folder.
fn sweep(index: u8, work: &Path) -> Result<()> {
    let prefix = format!("syk{index}p");
    for name in netns_names() {
        if name
            .strip_prefix(&prefix)
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        {
            remove_netns(&name);
        }
    }
    if let Ok(out) = host::run("ip", &["-o", "link", "show"]) {
        let veth = format!("syk{index}v");
        for line in out.lines() {
            let Some(name) = line.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(&veth) {
                let _ = host::run("ip", &["link", "del", name]);
            }
        }
    }
    let bridge = format!("syk{index}br");
    if host::run("ip", &["link", "show", &bridge]).is_ok() {
        host::run("ip", &["link", "del", &bridge])?;
    }
    if work.as_os_str().is_empty() {
        return Ok(());
    }
    host::remove_dir(work)
}

/// What is left on this machine of the pod network of subnet `index` (network namespaces
/// and links carrying its names): empty once its kubelet dropped.
pub fn leftovers(index: u8) -> Vec<String> {
    let netns = format!("syk{index}p");
    let mut found: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| n.starts_with(&netns))
        .map(|n| format!("netns {n}"))
        .collect();
    let links = [format!("syk{index}v"), format!("syk{index}br")];
    if let Ok(out) = host::run("ip", &["-o", "link", "show"]) {
        for line in out.lines() {
            if let Some(name) = line.split(':').nth(1).map(str::trim)
                && links.iter().any(|l| name.starts_with(l.as_str()))
            {
                found.push(format!("link {name}"));
            }
        }
    }
    found
}
