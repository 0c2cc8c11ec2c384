//! The revision's configuration rendered for the server: the one source of truth for what a
//! restarted instance runs.
//!
//! # `SET PERSIST` is never used
//! MySQL's `SET PERSIST` writes `mysqld-auto.cnf` in the data directory, which the server reads
//! *after* every my.cnf and which therefore wins over it. Using it would give each instance a
//! second, per-instance configuration that outlives revisions: a later revision's my.cnf would
//! be silently overridden by a value persisted for an older one, and a rollback would have to
//! find and undo it instance by instance. So switchyard:
//! - changes variables online with `SET GLOBAL` only (nothing is written to disk), and
//! - writes the revision's configuration into the my.cnf every restart reads
//!   ([`render_my_cnf`]); an online change is always part of a revision, so an instance
//!   restarted after it keeps the online value because the revision's my.cnf has it.
//!
//! A `mysqld-auto.cnf` that someone else wrote still wins over my.cnf; runtimes should start
//! MySQL with `persisted_globals_load=OFF` (a runtime setting, not part of revisions) so that
//! only the rendered configuration counts. MariaDB has no `SET PERSIST`.
//!
//! # Layout
//! One `[mysqld]` group, one `name = value` line per variable in name order, so the same
//! configuration always renders to the same bytes. Values with spaces, `#`, `;`, quotes or a
//! leading/trailing space are quoted with the quote character they do not contain, `\\`
//! escaped (the option-file syntax of both servers). The runtime's own settings (paths, ports, server id, replication)
//! are not part of a revision: the runtime writes them in its base file and includes this one
//! (`!include`) or appends these lines to its `[mysqld]` group ([`my_cnf_lines`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use switchyard_plan::topology::content_hash;
use switchyard_plan::versions::{Flavor, Version};

/// The `name = value` lines of a configuration, in name order, values quoted where needed.
pub fn my_cnf_lines(config: &BTreeMap<String, String>) -> Vec<String> {
    config
        .iter()
        .map(|(name, value)| format!("{name} = {}", quote(value)))
        .collect()
}

/// The revision's configuration as a my.cnf file for `flavor` `version`.
///
/// ```
/// use std::collections::BTreeMap;
/// use switchyard_plan::versions::{Flavor, Version};
/// let config = BTreeMap::from([
///     ("max_connections".to_string(), "300".to_string()),
///     ("init_connect".to_string(), "SET NAMES utf8mb4".to_string()),
/// ]);
/// let cnf = switchyard_config::render_my_cnf(Flavor::Mariadb, Version::new(10, 11, 14), &config);
/// assert!(cnf.contains("[mysqld]\ninit_connect = \"SET NAMES utf8mb4\"\nmax_connections = 300\n"));
/// ```
pub fn render_my_cnf(
    flavor: Flavor,
    version: Version,
    config: &BTreeMap<String, String>,
) -> String {
    let hash = content_hash(flavor, version, config);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Rendered by switchyard for {} {version}, configuration {}. Do not edit:",
        flavor.product_name(),
        &hash[..hash.len().min(12)]
    );
    let _ = writeln!(
        out,
        "# change the cluster's configuration instead (a new revision)."
    );
    out.push_str("[mysqld]\n");
    for line in my_cnf_lines(config) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value == value.trim()
        && !value.contains(['#', ';', '"', '\'', '\\', ' ', '\t', '\n', '\r']);
    if plain {
        return value.to_owned();
    }
    // Option files take `\\`, `\n`, `\t`, `\r` inside a quoted value but no escaped quote:
    // quote with the quote character the value does not contain (values holding both are
    // refused by validation, see `VariableInfo::check_value`).
    let mark = if value.contains('"') { '\'' } else { '"' };
    let mut q = String::with_capacity(value.len() + 2);
    q.push(mark);
    for c in value.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c => q.push(c),
        }
    }
    q.push(mark);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_deterministic_and_quotes_what_needs_it() {
        let config = BTreeMap::from([
            (
                "sql_mode".to_owned(),
                "STRICT_TRANS_TABLES,ANSI_QUOTES".to_owned(),
            ),
            ("init_connect".to_owned(), "SET @a='x#y'".to_owned()),
            ("ssl_cipher".to_owned(), "a\"b".to_owned()),
            ("ft_stopword_file".to_owned(), String::new()),
        ]);
        let a = render_my_cnf(Flavor::Mysql, Version::new(9, 7, 4), &config);
        let b = render_my_cnf(Flavor::Mysql, Version::new(9, 7, 4), &config);
        assert_eq!(a, b);
        assert!(a.contains("ft_stopword_file = \"\"\n"), "{a}");
        assert!(a.contains("init_connect = \"SET @a='x#y'\"\n"), "{a}");
        assert!(
            a.contains("sql_mode = STRICT_TRANS_TABLES,ANSI_QUOTES\n"),
            "{a}"
        );
        let lines: Vec<&str> = a.lines().filter(|l| l.contains(" = ")).collect();
        assert!(a.contains("ssl_cipher = 'a\"b'\n"), "{a}");
        assert_eq!(lines.len(), 4);
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "name order: {lines:?}"
        );
    }
}
