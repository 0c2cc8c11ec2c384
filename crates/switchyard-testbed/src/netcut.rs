//! Kernel-level network cuts between processes of this machine, on loopback, with
//! nftables: the network partitions of the simulation's scenarios.
//!
//! A [`Cut`] is one nftables table of its own (`inet switchyard_cut_PID_N`, named after the
//! test process) with one chain on the `output` hook that drops TCP packets on the
//! loopback interface (`oifname "lo"`) to and from the ports it names: every packet on
//! loopback passes `output` once, so dropping there cuts both directions. Nothing else is
//! touched: the rules match only the given ports on `lo`, never an address outside the
//! machine, and another table's rules (the host's firewall, another test's cut) are left
//! as they are. [`Cut::heal`] (or dropping the `Cut`, even during a panic) deletes the
//! table; a test process killed before it could is cleaned up by the next one: every cut
//! is recorded in `netcuts/TABLE` under the testbed directory (its owner's pid and start
//! time) before its rules go in, and before any cluster starts ([`sweep_recorded`], next
//! to the [`crate::reaper`]) and before any cut, every table whose owner is gone is
//! deleted ([`sweep_stale`] also deletes `switchyard_cut_PID_*` tables with no record
//! whose process is gone). A stale rule would otherwise cut a port a later test's server
//! is given.
//!
//! Two shapes, both TCP only (a client on a server's unix socket is never cut):
//! - [`CutSpec::ports`]: every TCP packet to or from the ports, whoever sends it;
//! - [`CutSpec::from_owner`]: only the packets sockets owned by one user id send to the
//!   ports (`meta skuid`): clients running as that user (the test process) lose the
//!   servers, while the servers, running as another user, still reach each other. Their
//!   answers to the cut clients are not dropped, but no request of those clients reaches a
//!   server, no connection of theirs can be opened, and their acknowledgements are dropped,
//!   so their connections stall.
//!
//! `nft` comes from Debian's `nftables` package ([`crate::packages`]), run through the
//! root's loader with its own `libnftables` and `libmnl`/`libnftnl`; the kernel must have
//! nf_tables (`CONFIG_NF_TABLES`) and the process `CAP_NET_ADMIN` (root). Rejected
//! alternatives: `tc` filters need the u32/flower/gact classifiers, which many kernels
//! (this CI machine's) lack; iptables is a second frontend over the same kernel tables;
//! network namespaces would move every server off the shared loopback the router and the
//! replicas use.

use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use std::path::PathBuf;

use crate::error::{Error, Result, tail};
use crate::fetch::Suite;
use crate::packages::{PackageRoot, package_root};

/// The prefix of every table a [`Cut`] creates.
pub const TABLE_PREFIX: &str = "switchyard_cut_";

/// Debian's `nft`, unpacked under the testbed directory.
#[derive(Clone, Debug)]
pub struct Nft {
    root: PackageRoot,
}

impl Nft {
    /// Fetches (or finds in the cache) Debian bookworm's `nftables` package and its
    /// libraries. Blocking.
    ///
    /// # Errors
    /// What fetching a package can fail with (no mirror, apt, `dpkg -x`).
    pub fn fetch() -> Result<Nft> {
        static FETCHED: OnceLock<Mutex<Option<Nft>>> = OnceLock::new();
        let cell = FETCHED.get_or_init(|| Mutex::new(None));
        let mut cached = cell.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(nft) = cached.as_ref() {
            return Ok(nft.clone());
        }
        let root = package_root("nftables", Suite::Bookworm, &["nftables"])?;
        let nft = Nft { root };
        *cached = Some(nft.clone());
        Ok(nft)
    }

    /// Runs `nft` with `args`, and `script` on its standard input when given (`-f -`);
    /// returns its standard output.
    fn run(&self, args: &[&str], script: Option<&str>) -> Result<String> {
        let mut cmd = self.root.command("usr/sbin/nft")?;
        cmd.args(args)
            .stdin(if script.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("nft {}", args.join(" "));
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            what: what.clone(),
            program: self.root.root().join("usr/sbin/nft"),
            source,
        })?;
        if let (Some(script), Some(mut stdin)) = (script, child.stdin.take()) {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| Error::Firewall {
                    what: what.clone(),
                    detail: format!("cannot write the rules to nft: {e}"),
                })?;
        }
        let out = child.wait_with_output().map_err(|e| Error::Firewall {
            what: what.clone(),
            detail: format!("cannot wait for nft: {e}"),
        })?;
        if !out.status.success() {
            return Err(Error::Firewall {
                what,
                detail: format!(
                    "{}: {}",
                    out.status,
                    tail(&String::from_utf8_lossy(&out.stderr), 5)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The names of the `inet` tables a [`Cut`] created, whoever created them.
    ///
    /// # Errors
    /// [`Error::Firewall`] when `nft list tables` fails.
    pub fn cut_tables(&self) -> Result<Vec<String>> {
        let listed = self.run(&["list", "tables", "inet"], None)?;
        Ok(listed
            .lines()
            .filter_map(|l| l.trim().strip_prefix("table inet "))
            .filter(|name| name.starts_with(TABLE_PREFIX))
            .map(str::to_owned)
            .collect())
    }

    fn delete_table(&self, table: &str) -> Result<()> {
        self.run(&["delete", "table", "inet", table], None)
            .map(|_| ())
    }
}

fn records() -> PathBuf {
    crate::cache::testbed_dir().join("netcuts")
}

/// Records that this process is about to create `table`.
fn record(table: &str) -> Result<()> {
    let dir = records();
    crate::cache::create_dir_all(&dir)?;
    let me = std::process::id();
    let started = crate::reaper::start_time(me).unwrap_or(0);
    let path = dir.join(table);
    std::fs::write(&path, format!("owner={me}\nowner_start={started}\n"))
        .map_err(Error::io("write", &path))
}

/// Forgets `table` (deleted).
fn forget(table: &str) {
    let _ = std::fs::remove_file(records().join(table));
}

/// Whether the process that created `table` still runs: its record's owner with the
/// same start time (a pid reused by another process is not it), or, for a table with
/// no record, the pid in its name.
fn owner_alive(table: &str) -> bool {
    let alive = |pid: u32, start: Option<&str>| {
        crate::reaper::start_time(pid)
            .is_some_and(|t| start.is_none_or(|s| s == "0" || t.to_string() == s))
    };
    if let Ok(text) = std::fs::read_to_string(records().join(table)) {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        return field("owner")
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| alive(pid, field("owner_start")));
    }
    table
        .strip_prefix(TABLE_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| alive(pid, None))
}

/// Deletes every cut table whose test process is gone (a process killed before its
/// [`Cut`] dropped); returns their names.
///
/// # Errors
/// [`Error::Firewall`] when listing or deleting fails.
pub fn sweep_stale(nft: &Nft) -> Result<Vec<String>> {
    let mut swept = Vec::new();
    for table in nft.cut_tables()? {
        if !owner_alive(&table) {
            nft.delete_table(&table)?;
            forget(&table);
            swept.push(table);
        }
    }
    // Records of dead owners whose table is gone already.
    if let Ok(entries) = std::fs::read_dir(records()) {
        for entry in entries.flatten() {
            if let Some(table) = entry.file_name().to_str()
                && !owner_alive(table)
            {
                forget(table);
            }
        }
    }
    Ok(swept)
}

/// Deletes the cut tables recorded by test processes that are gone, fetching `nft` only
/// when there is one; returns how many. Best effort (a failure is printed): called before
/// every cluster starts, where a stale cut would cut a port the new servers may get.
pub fn sweep_recorded() -> usize {
    let Ok(entries) = std::fs::read_dir(records()) else {
        return 0;
    };
    let stale = entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|table| !owner_alive(table))
    });
    if !stale {
        return 0;
    }
    match Nft::fetch().and_then(|nft| sweep_stale(&nft)) {
        Ok(swept) => {
            for table in &swept {
                eprintln!("switchyard-testbed: deleted {table}, left by a test process that died");
            }
            swept.len()
        }
        Err(e) => {
            eprintln!(
                "switchyard-testbed: cannot delete the network cuts of dead test processes: {e}"
            );
            0
        }
    }
}

/// Which TCP traffic on loopback a [`Cut`] drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutSpec {
    ports: Vec<u16>,
    owner: Option<u32>,
}

impl CutSpec {
    /// Every TCP packet to or from `ports` on loopback, whoever sends it.
    pub fn ports(ports: &[u16]) -> CutSpec {
        CutSpec {
            ports: ports.to_vec(),
            owner: None,
        }
    }

    /// Only the TCP packets that sockets owned by user id `uid` send to `ports` on
    /// loopback.
    pub fn from_owner(ports: &[u16], uid: u32) -> CutSpec {
        CutSpec {
            ports: ports.to_vec(),
            owner: Some(uid),
        }
    }

    /// The ports cut.
    pub fn port_list(&self) -> &[u16] {
        &self.ports
    }

    /// The nftables script that creates `table` with this cut's rules.
    fn script(&self, table: &str) -> String {
        let set = self
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let rules = match self.owner {
            None => format!(
                "    oifname \"lo\" tcp dport {{ {set} }} drop\n    \
                 oifname \"lo\" tcp sport {{ {set} }} drop\n"
            ),
            Some(uid) => {
                format!("    oifname \"lo\" meta skuid {uid} tcp dport {{ {set} }} drop\n")
            }
        };
        format!(
            "table inet {table} {{\n  chain output {{\n    \
             type filter hook output priority filter; policy accept;\n{rules}  }}\n}}\n"
        )
    }
}

/// A network cut in force until it heals or drops.
#[derive(Debug)]
pub struct Cut {
    nft: Nft,
    table: String,
    spec: CutSpec,
    healed: bool,
}

impl Cut {
    /// Cuts what `spec` names, after deleting the tables of dead test processes. Returns
    /// once the rules are in the kernel. Blocking.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a spec without ports; [`Error::Firewall`] when `nft`
    /// refuses the rules (no nf_tables in the kernel, no `CAP_NET_ADMIN`).
    pub fn new(nft: &Nft, spec: CutSpec) -> Result<Cut> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        if spec.ports.is_empty() {
            return Err(Error::Unsupported {
                detail: "a network cut needs at least one port".into(),
            });
        }
        for table in sweep_stale(nft)? {
            eprintln!("switchyard-testbed: deleted {table}, left by a test process that died");
        }
        let table = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        record(&table)?;
        if let Err(e) = nft.run(&["-f", "-"], Some(&spec.script(&table))) {
            forget(&table);
            return Err(e);
        }
        Ok(Cut {
            nft: nft.clone(),
            table,
            spec,
            healed: false,
        })
    }

    /// The nftables table (`inet`) holding the rules.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// What is cut.
    pub fn spec(&self) -> &CutSpec {
        &self.spec
    }

    /// Deletes the rules: the traffic flows again (connections the cut stalled resume or
    /// time out on their own).
    ///
    /// # Errors
    /// [`Error::Firewall`] when `nft` fails to delete the table (the drop tries again).
    pub fn heal(mut self) -> Result<()> {
        self.nft.delete_table(&self.table)?;
        forget(&self.table);
        self.healed = true;
        Ok(())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if self.healed {
            return;
        }
        match self.nft.delete_table(&self.table) {
            Ok(()) => forget(&self.table),
            Err(e) => eprintln!(
                "switchyard-testbed: cannot delete the network cut {}: {e}",
                self.table
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_only_the_ports_on_loopback() {
        let all = CutSpec::ports(&[3306, 3307]).script("t");
        assert!(all.contains("oifname \"lo\" tcp dport { 3306, 3307 } drop"));
        assert!(all.contains("oifname \"lo\" tcp sport { 3306, 3307 } drop"));
        assert!(all.contains("hook output"));
        let owned = CutSpec::from_owner(&[3306], 0).script("t");
        assert!(owned.contains("oifname \"lo\" meta skuid 0 tcp dport { 3306 } drop"));
        assert!(!owned.contains("sport"));
    }
}
