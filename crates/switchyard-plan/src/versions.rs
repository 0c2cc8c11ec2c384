//! Server versions, the release catalog, and the vendors' upgrade, downgrade and replication rules.
