//! `switchyard plan`: the ordered steps the engine would take on a healthy cluster.
