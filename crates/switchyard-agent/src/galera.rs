//! A Galera node's saved state: `grastate.dat` in its data directory, which Galera writes on
//! a clean shutdown (the cluster's UUID, the last committed seqno, and whether this node may
//! start a new cluster: `safe_to_bootstrap: 1` only on the last node of a cluster to leave
//! it cleanly). After a crash it says `seqno: -1`, and only `mariadbd --wsrep-recover` finds
//! the position in InnoDB.
//!
//! The agent reports it in `/status` so that the operator can choose, after every node went
//! down, the node with the highest seqno, and refuses a new cluster on a node whose state
//! says it is not safe to bootstrap from.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What `grastate.dat` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraState {
    /// The cluster's state UUID (all zeros for a node that never joined one).
    pub uuid: String,
    /// The last committed seqno, `-1` when unknown (a crash, or a running node).
    pub seqno: i64,
    /// Whether this node may start a new cluster (`safe_to_bootstrap: 1`).
    pub safe_to_bootstrap: bool,
}

impl GraState {
    /// Parses the file's text; `None` when it names no UUID.
    pub fn parse(text: &str) -> Option<GraState> {
        let mut uuid = None;
        let mut seqno = -1;
        let mut safe = false;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "uuid" => uuid = Some(value.to_owned()),
                "seqno" => seqno = value.parse().unwrap_or(-1),
                "safe_to_bootstrap" => safe = value == "1",
                _ => {}
            }
        }
        Some(GraState {
            uuid: uuid?,
            seqno,
            safe_to_bootstrap: safe,
        })
    }

    /// Reads `<datadir>/grastate.dat`; `None` when it does not exist or says nothing usable.
    pub fn read(datadir: &Path) -> Option<GraState> {
        GraState::parse(&std::fs::read_to_string(datadir.join("grastate.dat")).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_of_a_clean_last_node_and_of_a_crashed_one() {
        let clean = "# GALERA saved state\nversion: 2.1\nuuid:    6b7d6f2e-1111-11ef-8b0a-2f1c3b4d5e6f\nseqno:   1234\nsafe_to_bootstrap: 1\n";
        assert_eq!(
            GraState::parse(clean),
            Some(GraState {
                uuid: "6b7d6f2e-1111-11ef-8b0a-2f1c3b4d5e6f".into(),
                seqno: 1234,
                safe_to_bootstrap: true,
            })
        );
        let crashed = "# GALERA saved state\nversion: 2.1\nuuid:    6b7d6f2e-1111-11ef-8b0a-2f1c3b4d5e6f\nseqno:   -1\nsafe_to_bootstrap: 0\n";
        let s = GraState::parse(crashed).unwrap();
        assert_eq!(s.seqno, -1);
        assert!(!s.safe_to_bootstrap);
        assert_eq!(GraState::parse("nothing"), None);
    }
}
