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
//!
//! A Galera node (`instance.json` has `galera`) gets the wsrep settings instead of the
//! read-only start: every Galera node holds every write, and which one takes them is the
//! Service's choice (one writer). The provider is the image's
//! `/usr/lib/galera/libgalera_smm.so` (where the official images and Debian's `galera-4` put
//! it); `wsrep_cluster_address` lists the peers' stable host names; the settings Galera
//! requires are fixed here (`binlog_format = ROW`, `innodb_autoinc_lock_mode = 2`, InnoDB
//! as the default engine) with `innodb_flush_log_at_trx_commit = 1`, so a node that crashes
//! loses nothing it acknowledged locally. The SST credentials are never written here: the
//! agent sets `wsrep_sst_auth` over the local socket once the server answers.

use std::fmt::Write as _;
use std::path::Path;

use switchyard_plan::versions::Flavor;

use crate::config::{GaleraMember, InstanceConfig, Options};
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
    if let Some(g) = &instance.galera {
        o.extend(galera_options(options, g, image));
        return o;
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

/// The wsrep options of a Galera node.
pub fn galera_options(
    options: &Options,
    g: &GaleraMember,
    image: &Image,
) -> Vec<(&'static str, String)> {
    let name = options
        .report_host()
        .unwrap_or_else(|| format!("node-{}", options.mysql_port));
    let address = options
        .identity
        .pod_ip
        .clone()
        .unwrap_or_else(|| name.clone());
    let ports = options.galera_ports;
    // A peer named without a port listens on the pod's Galera port.
    let peers: Vec<String> = g
        .peers
        .iter()
        .map(|p| {
            if p.contains(':') {
                p.clone()
            } else {
                format!("{p}:{}", crate::config::GALERA_PORT)
            }
        })
        .collect();
    vec![
        ("read-only", "OFF".into()),
        ("skip-slave-start", "ON".into()),
        ("wsrep-on", "ON".into()),
        (
            "wsrep-provider",
            image
                .path("/usr/lib/galera/libgalera_smm.so")
                .display()
                .to_string(),
        ),
        ("wsrep-cluster-name", g.cluster_name.clone()),
        (
            "wsrep-cluster-address",
            format!("gcomm://{}", peers.join(",")),
        ),
        ("wsrep-node-name", name),
        ("wsrep-node-address", format!("{address}:{}", ports.gcomm)),
        (
            "wsrep-provider-options",
            format!(
                "\"gmcast.listen_addr=tcp://{}:{};ist.recv_addr={address}:{}\"",
                options.bind_address, ports.gcomm, ports.ist
            ),
        ),
        (
            "wsrep-sst-receive-address",
            format!("{address}:{}", ports.sst),
        ),
        ("wsrep-sst-method", g.sst_method.clone()),
        ("wsrep-gtid-mode", "ON".into()),
        ("wsrep-gtid-domain-id", "1".into()),
        ("gtid-strict-mode", "OFF".into()),
        ("binlog-format", "ROW".into()),
        ("innodb-autoinc-lock-mode", "2".into()),
        ("innodb-flush-log-at-trx-commit", "1".into()),
        ("default-storage-engine", "InnoDB".into()),
    ]
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
    fn a_galera_node_gets_its_peers_the_required_settings_and_no_sst_password() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/mariadbd"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("lib64")).unwrap();
        std::fs::write(dir.path().join("lib64/ld-linux-x86-64.so.2"), "").unwrap();
        let image = Image::open(dir.path(), Some(Flavor::Mariadb)).unwrap();
        let mut options = Options::default();
        options.identity.cluster = Some("shop".into());
        options.identity.ordinal = Some(1);
        options.identity.namespace = Some("db".into());
        options.identity.pod_ip = Some("10.0.0.7".into());
        let instance = InstanceConfig {
            revision: "r".into(),
            server_id: 1001,
            bootstrap: false,
            provision_from: None,
            replicate_from: None,
            max_lag_seconds: 30,
            galera: Some(GaleraMember {
                cluster_name: "shop".into(),
                peers: vec!["shop-0.h".into(), "shop-1.h".into(), "shop-2.h".into()],
                new_cluster: false,
                sst_method: "mariabackup".into(),
            }),
        };
        let owned = owned_options(&options, &instance, &image, None);
        let get = |k: &str| {
            owned
                .iter()
                .rev()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("wsrep-cluster-address").as_deref(),
            Some("gcomm://shop-0.h:4567,shop-1.h:4567,shop-2.h:4567")
        );
        assert_eq!(get("wsrep-node-address").as_deref(), Some("10.0.0.7:4567"));
        assert_eq!(
            get("wsrep-node-name").as_deref(),
            Some("shop-1.shop-hosts.db.svc")
        );
        assert_eq!(get("binlog-format").as_deref(), Some("ROW"));
        assert_eq!(get("innodb-autoinc-lock-mode").as_deref(), Some("2"));
        assert_eq!(get("innodb-flush-log-at-trx-commit").as_deref(), Some("1"));
        assert_eq!(get("wsrep-sst-method").as_deref(), Some("mariabackup"));
        assert_eq!(get("read-only").as_deref(), Some("OFF"));
        assert!(
            get("wsrep-provider")
                .unwrap()
                .ends_with("usr/lib/galera/libgalera_smm.so")
        );
        assert_eq!(
            get("wsrep-sst-auth"),
            None,
            "the SST password is set over SQL"
        );
    }

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
