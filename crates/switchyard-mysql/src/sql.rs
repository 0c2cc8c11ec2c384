//! How SQL text is built: quoted identifiers, validated names and the few literals that cannot
//! be bound.
//!
//! The rules, in order of preference:
//! 1. **Values are bound** as parameters of a prepared statement wherever the server accepts one:
//!    `SET GLOBAL `name` = ?`, `SET SESSION lock_wait_timeout = ?`,
//!    `WAIT_FOR_EXECUTED_GTID_SET(?, ?)`, `MASTER_GTID_WAIT(?, ?)`.
//! 2. **Identifiers are quoted** with backticks, a backtick inside doubled
//!    ([`quote_identifier`]). System variable names are also validated against
//!    `^[a-z0-9_]+$` ([`validate_variable_name`]) before they are quoted.
//! 3. **Literals in statements that take no parameters** (`CHANGE REPLICATION SOURCE TO`,
//!    `CHANGE MASTER TO`) are validated first and then written as single-quoted strings
//!    ([`quote_literal`]): host names and IP addresses ([`validate_host`]), account names
//!    ([`validate_user`]) and replication passwords ([`validate_password`]: printable ASCII
//!    without `'` or `\`, which the operator generates). Because neither a quote nor a
//!    backslash can get through validation, the literal reads the same whatever the session's
//!    `sql_mode` (`NO_BACKSLASH_ESCAPES` or not), and [`quote_literal`] still doubles a quote
//!    as a second line of defence. Ports are integers and thread ids come from the server as
//!    integers; both are written as decimal numbers.
//!
//! Statements built this way are never logged: the replication password is in them.

use crate::error::Error;

/// Quotes an identifier with backticks, doubling any backtick inside.
///
/// ```
/// assert_eq!(switchyard_mysql::sql::quote_identifier("max_connections"), "`max_connections`");
/// assert_eq!(switchyard_mysql::sql::quote_identifier("a`b"), "`a``b`");
/// ```
pub fn quote_identifier(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('`');
    for c in name.chars() {
        if c == '`' {
            quoted.push('`');
        }
        quoted.push(c);
    }
    quoted.push('`');
    quoted
}

/// Quotes a validated value as a single-quoted string literal, doubling any single quote.
///
/// Only for values that already passed [`validate_host`], [`validate_user`] or
/// [`validate_password`]; everything else is bound as a parameter.
pub fn quote_literal(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push('\'');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// Checks a system variable name: lowercase ASCII letters, digits and `_`, 1 to 64 characters.
///
/// # Errors
/// [`Error::InvalidInput`] naming the variable and what is accepted.
pub fn validate_variable_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "system variable name",
            reason: format!(
                "{name:?} is not a system variable name: use 1 to 64 lowercase letters, digits and '_' (as in innodb_buffer_pool_size)"
            ),
        })
    }
}

/// Checks a replication source host: a DNS name or an IPv4/IPv6 address (letters, digits,
/// `.`, `-`, `_` and `:`), 1 to 255 characters.
///
/// # Errors
/// [`Error::InvalidInput`] naming the host and what is accepted.
pub fn validate_host(host: &str) -> Result<(), Error> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "replication source host",
            reason: format!(
                "{host:?} is not a host name or IP address: use letters, digits, '.', '-', '_' and ':' (at most 255)"
            ),
        })
    }
}

/// Checks an account name: letters, digits, `_`, `-` and `.`, 1 to 80 characters (the
/// servers' limit for MariaDB; MySQL allows 32).
///
/// # Errors
/// [`Error::InvalidInput`] naming the account and what is accepted.
pub fn validate_user(user: &str) -> Result<(), Error> {
    let ok = !user.is_empty()
        && user.len() <= 80
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "replication account name",
            reason: format!(
                "{user:?} is not an account name switchyard uses: use letters, digits, '_', '-' and '.' (at most 80)"
            ),
        })
    }
}

/// Checks a replication password: 1 to 32 printable ASCII characters other than `'` and `\`.
/// (32 is the longest password `CHANGE REPLICATION SOURCE TO` accepts.) The password itself
/// never appears in the error.
///
/// # Errors
/// [`Error::InvalidInput`] saying what is accepted.
pub fn validate_password(password: &str) -> Result<(), Error> {
    let ok = !password.is_empty()
        && password.len() <= 32
        && password
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "replication password",
            reason: "use 1 to 32 printable ASCII characters other than a quote (') or a backslash (\\); switchyard generates such passwords".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_backticks_doubled() {
        assert_eq!(quote_identifier("sql_log_bin"), "`sql_log_bin`");
        assert_eq!(quote_identifier("x`; DROP"), "`x``; DROP`");
    }

    #[test]
    fn literals_double_quotes() {
        assert_eq!(quote_literal("a'b"), "'a''b'");
        assert_eq!(quote_literal("10.0.0.1"), "'10.0.0.1'");
    }

    #[test]
    fn variable_names_are_validated() {
        assert!(validate_variable_name("innodb_buffer_pool_size").is_ok());
        for bad in [
            "",
            "Max_connections",
            "a b",
            "x`",
            "a;b",
            "a.b",
            &"x".repeat(65),
        ] {
            assert!(validate_variable_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hosts_users_and_passwords_are_validated() {
        assert!(validate_host("127.0.0.1").is_ok());
        assert!(validate_host("db-0.db.ns.svc.cluster.local").is_ok());
        assert!(validate_host("::1").is_ok());
        assert!(validate_host("h' , MASTER_USER='x").is_err());
        assert!(validate_user("repl").is_ok());
        assert!(validate_user("re'pl").is_err());
        assert!(validate_password("aZ9!#%&()*+,-./:;<=>?@[]^_`{|}~").is_ok());
        for bad in ["", "a'b", "a\\b", "tab\there", &"p".repeat(33)] {
            let err = validate_password(bad).expect_err("accepted");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "password leaked into {err}");
            }
        }
    }
}
