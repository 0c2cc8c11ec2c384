//! The server's my.cnf, rendered at every start: the revision's my.cnf as the operator
//! assigned it (verbatim, from the instance ConfigMap) followed by a `[mysqld]` group of what
//! the agent owns. Both servers read an option file top to bottom and let a later line win,
//! so the agent's lines hold whatever the revision says.
//!
//! What the agent owns: the instance's identity (`server_id`, `report_host`), its layout
//! (`datadir`, `socket`, `pid-file`, `port`, `bind-address`, `tmpdir`, `user`, and under an
//! image root other than `/` the server's own `basedir`, messages and plugins), and the
//! start-up state every instance has: **read-only** (`read_only`, and `super_read_only` on
//! MySQL, which stops every account) with **replication not started** (`skip-slave-start` /
//! `skip-replica-start`). Only the operator makes an instance writable or starts its
//! replication (the one exception: a replica the agent just provisioned, whose replication
//! it starts from the copy's position). On MySQL the clone plugin is loaded (every
//! instance may be a donor or a recipient) and `persisted_globals_load` is off, so a
//! `mysqld-auto.cnf` left by `SET PERSIST` cannot override the revision.
//! The server's error log goes to its standard error, which is the container's log.

use std::fmt::Write as _;
use std::path::Path;

use switchyard_plan::versions::Flavor;

use crate::config::{InstanceConfig, Options};
use crate::image::{Image, ServerUser};

/// The agent-owned options, in the order they are written.
pub fn owned_options(
    options: &Options,
    instance: &InstanceConfig,
    image: &Image,
    user: Option<&ServerUser>,
) -> Vec<(&'static str, String)> {
    let mut o: Vec<(&'static str, String)> = Vec::new();
    let path = |p: &Path| p.display().to_string();
    o.extend(image.layout_options());
    o.push(("datadir", path(&options.datadir())));
    o.push(("socket", path(&options.socket())));
    o.push(("pid-file", path(&options.run_dir.join("mysqld.pid"))));
    o.push(("tmpdir", path(&options.tmp_dir)));
    o.push(("port", options.mysql_port.to_string()));
    o.push(("bind-address", options.bind_address.clone()));
    o.push(("server-id", instance.server_id.to_string()));
    if let Some(host) = options.report_host() {
        o.push(("report-host", host));
        o.push(("report-port", options.mysql_port.to_string()));
    }
    if let Some(user) = user {
        o.push(("user", user.name.clone()));
    }
    o.push(("read-only", "ON".into()));
    match image.flavor() {
        Flavor::Mysql => {
            o.push(("super-read-only", "ON".into()));
            o.push(("skip-replica-start", "ON".into()));
            o.push(("plugin-load-add", "mysql_clone.so".into()));
            o.push(("persisted-globals-load", "OFF".into()));
            o.push(("secure-file-priv", path(&options.run_dir.join("files"))));
        }
        Flavor::Mariadb => {
            o.push(("skip-slave-start", "ON".into()));
        }
    }
    o
}

/// The server's my.cnf: `revision_cnf` and then the agent's `[mysqld]` group.
pub fn render(revision: &str, revision_cnf: &str, owned: &[(&'static str, String)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rendered by switchyard agent at this start: the my.cnf of revision {revision}\n\
         # (the instance ConfigMap), then what the agent owns (later lines win)."
    );
    out.push_str(revision_cnf);
    if !revision_cnf.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\n# Owned by switchyard agent.\n[mysqld]\n");
    for (key, value) in owned {
        let _ = writeln!(out, "{key} = {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_lines_come_last_so_they_win() {
        let owned = vec![
            ("server-id", "1001".to_owned()),
            ("read-only", "ON".to_owned()),
            ("super-read-only", "ON".to_owned()),
        ];
        let cnf = render(
            "abc123",
            "[mysqld]\nread_only = OFF\nmax_connections = 77",
            &owned,
        );
        let revision_line = cnf.find("read_only = OFF").unwrap();
        let agent_line = cnf.find("read-only = ON").unwrap();
        assert!(agent_line > revision_line, "{cnf}");
        assert!(cnf.contains("max_connections = 77\n"), "{cnf}");
        assert!(cnf.contains("revision abc123"), "{cnf}");
        // The agent's lines are in a [mysqld] group of their own, after the revision's.
        let group = cnf.rfind("[mysqld]").unwrap();
        assert!(group > revision_line && group < agent_line, "{cnf}");
    }
}
