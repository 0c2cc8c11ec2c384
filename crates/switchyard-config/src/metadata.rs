//! What a live server says about its variables, and the value rules drawn from it.
//!
//! Built from MariaDB's `information_schema.SYSTEM_VARIABLES` or MySQL's
//! `performance_schema.variables_metadata` (+ `global_variables`) by [`crate::ConfigServer`];
//! the rules here are pure so they can be tested on fixtures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_plan::versions::ServerVersion;

/// Where a variable can be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Global only.
    Global,
    /// Global, with a per-session copy.
    Both,
    /// Per session only: it cannot be set for the server.
    SessionOnly,
}

/// Whether a variable can change while the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutability {
    /// `SET GLOBAL` changes it.
    Dynamic,
    /// Only a restart with a new my.cnf changes it (the server says "read only").
    Static,
    /// Not known (MySQL: not probed). Treated as static: a restart is always correct.
    Unknown,
}

/// The type of a variable's value, with its limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ValueType {
    /// `ON`/`OFF` (also `TRUE`/`FALSE`, `1`/`0`).
    Boolean,
    /// An integer between `min` and `max`, a multiple of `block` when `block > 1`. Option-file
    /// suffixes (`K`, `M`, `G`, `T`, `P`, `E`, powers of 1024) are accepted.
    Integer {
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
        /// The server rounds to a multiple of this (MariaDB's `NUMERIC_BLOCK_SIZE`); 1 or 0: none.
        block: u64,
    },
    /// A decimal number.
    Double {
        /// Smallest value.
        min: f64,
        /// Largest value, when known.
        max: Option<f64>,
        /// True when `max` is a truncated bound the value must stay below (MySQL reports
        /// `99` for InnoDB's `99.999`), false when it is inclusive.
        max_exclusive: bool,
    },
    /// One of `values` (any letter case). Empty when the server does not list them (MySQL):
    /// then only the server can judge, at apply time.
    Enum {
        /// The allowed values.
        values: Vec<String>,
    },
    /// A comma-separated subset of `values`; empty when not listed.
    Set {
        /// The allowed members.
        values: Vec<String>,
    },
    /// `flag=on|off|default,...` over `flags` (`optimizer_switch`); empty when not listed.
    FlagSet {
        /// The flag names.
        flags: Vec<String>,
    },
    /// Any text on one line.
    String,
}

/// One variable of one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariableInfo {
    /// The name (lowercase).
    pub name: String,
    /// Where it can be set.
    pub scope: Scope,
    /// Whether it changes at run time.
    pub mutability: Mutability,
    /// Its type and limits.
    pub value_type: ValueType,
    /// False when no option sets it (a value the server computes, such as `version` or
    /// `hostname`): writing it into my.cnf stops the server from starting. Known on MariaDB
    /// (`READ_ONLY = YES` and no `COMMAND_LINE_ARGUMENT`); assumed true on MySQL.
    pub settable: bool,
    /// The global value now, as the server prints it.
    pub global_value: Option<String>,
}

/// Everything one server said about its variables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// The instance, as errors name it (`name (host:port)`).
    pub instance: String,
    /// The product and version it runs.
    pub version: ServerVersion,
    /// Its variables by name.
    pub variables: BTreeMap<String, VariableInfo>,
}

impl ServerMetadata {
    /// The variable `name` (normalised), if the server has it.
    pub fn get(&self, name: &str) -> Option<&VariableInfo> {
        self.variables.get(name)
    }
}

/// One row of MariaDB's `information_schema.SYSTEM_VARIABLES`, as text.
#[derive(Clone, Debug, Default)]
pub(crate) struct MariadbRow {
    pub name: String,
    pub scope: String,
    pub kind: String,
    pub min: Option<String>,
    pub max: Option<String>,
    pub block: Option<String>,
    pub enum_values: Option<String>,
    pub read_only: String,
    pub command_line: Option<String>,
    pub global_value: Option<String>,
}

/// One row of MySQL's `performance_schema.variables_metadata` joined with `global_variables`.
#[derive(Clone, Debug, Default)]
pub(crate) struct MysqlRow {
    pub name: String,
    pub scope: String,
    pub kind: String,
    pub min: Option<String>,
    pub max: Option<String>,
    pub global_value: Option<String>,
}

fn list(values: Option<&str>) -> Vec<String> {
    values
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn int(s: Option<&str>) -> Option<i128> {
    s.and_then(|s| s.trim().parse::<i128>().ok())
}

impl VariableInfo {
    pub(crate) fn from_mariadb(row: MariadbRow) -> Self {
        let scope = match row.scope.as_str() {
            "GLOBAL" => Scope::Global,
            "SESSION ONLY" => Scope::SessionOnly,
            _ => Scope::Both,
        };
        let value_type = match row.kind.as_str() {
            "BOOLEAN" => ValueType::Boolean,
            k if k.starts_with("INT") || k.starts_with("BIGINT") => ValueType::Integer {
                min: int(row.min.as_deref()).unwrap_or(i128::from(i64::MIN)),
                max: int(row.max.as_deref()).unwrap_or(i128::from(u64::MAX)),
                block: row
                    .block
                    .as_deref()
                    .and_then(|b| b.trim().parse().ok())
                    .unwrap_or(1),
            },
            "DOUBLE" => ValueType::Double {
                min: row
                    .min
                    .as_deref()
                    .and_then(|m| m.trim().parse().ok())
                    .unwrap_or(f64::MIN),
                max: row.max.as_deref().and_then(|m| m.trim().parse().ok()),
                max_exclusive: false,
            },
            "ENUM" => ValueType::Enum {
                values: list(row.enum_values.as_deref()),
            },
            "SET" => ValueType::Set {
                values: list(row.enum_values.as_deref()),
            },
            "FLAGSET" => ValueType::FlagSet {
                flags: list(row.enum_values.as_deref())
                    .into_iter()
                    .filter(|f| f != "default")
                    .collect(),
            },
            _ => ValueType::String,
        };
        let read_only = row.read_only == "YES";
        VariableInfo {
            name: row.name.to_ascii_lowercase(),
            scope,
            mutability: if read_only {
                Mutability::Static
            } else {
                Mutability::Dynamic
            },
            value_type,
            settable: !(read_only && row.command_line.is_none()),
            global_value: row.global_value,
        }
    }

    pub(crate) fn from_mysql(row: MysqlRow) -> Self {
        let scope = match row.scope.as_str() {
            "GLOBAL" => Scope::Global,
            "SESSION_ONLY" => Scope::SessionOnly,
            _ => Scope::Both,
        };
        let value_type = match row.kind.as_str() {
            "Boolean" => ValueType::Boolean,
            "Integer" => ValueType::Integer {
                min: int(row.min.as_deref()).unwrap_or(i128::from(i64::MIN)),
                max: int(row.max.as_deref()).unwrap_or(i128::from(u64::MAX)),
                block: 1,
            },
            "Numeric" => {
                // MySQL 9.7 prints double limits either truncated to an integer (InnoDB's
                // 99.999 as 99) or as the raw bits of the double (31536000.0 as
                // 4719230590769954816). Bits are told apart by size.
                let decode = |s: Option<&str>| -> Option<(f64, bool)> {
                    let n = int(s)?;
                    if n.unsigned_abs() > 1u128 << 53 {
                        let bits = u64::try_from(n).ok()?;
                        Some((f64::from_bits(bits), false))
                    } else {
                        #[expect(
                            clippy::cast_precision_loss,
                            reason = "the value is below 2^53, so exact"
                        )]
                        let f = n as f64;
                        Some((f, true))
                    }
                };
                let (max, max_exclusive) = match decode(row.max.as_deref()) {
                    Some((m, true)) => (Some(m + 1.0), true),
                    Some((m, false)) => (Some(m), false),
                    None => (None, false),
                };
                ValueType::Double {
                    min: decode(row.min.as_deref()).map_or(f64::MIN, |(m, _)| m),
                    max,
                    max_exclusive,
                }
            }
            "Enumeration" => ValueType::Enum { values: Vec::new() },
            "Set" => ValueType::Set { values: Vec::new() },
            _ => ValueType::String,
        };
        VariableInfo {
            name: row.name.to_ascii_lowercase(),
            scope,
            mutability: Mutability::Unknown,
            value_type,
            settable: true,
            global_value: row.global_value,
        }
    }

    /// Checks `value` against the variable's type and limits and returns the form `SET GLOBAL`
    /// takes (suffixes expanded, booleans as `ON`/`OFF`), or the rule it breaks.
    pub fn check_value(&self, value: &str) -> Result<String, String> {
        if value.contains(['\n', '\r', '\0']) {
            return Err("the value must be on one line".to_owned());
        }
        if value.contains('"') && value.contains('\'') {
            return Err("an option file cannot hold a value with both ' and \"".to_owned());
        }
        match &self.value_type {
            ValueType::Boolean => match value.to_ascii_uppercase().as_str() {
                "ON" | "TRUE" | "1" => Ok("ON".to_owned()),
                "OFF" | "FALSE" | "0" => Ok("OFF".to_owned()),
                _ => Err(format!("{value:?} is not a boolean: use ON or OFF")),
            },
            ValueType::Integer { min, max, block } => {
                let n = parse_size(value).ok_or_else(|| {
                    format!(
                        "{value:?} is not an integer (a number, optionally with K, M or G): \
                         the server takes {min} to {max}"
                    )
                })?;
                if n < *min || n > *max {
                    return Err(format!(
                        "{n} is out of range: the server takes {min} to {max}"
                    ));
                }
                if *block > 1 && n % i128::from(*block) != 0 {
                    return Err(format!(
                        "{n} is not a multiple of {block}: the server would round it"
                    ));
                }
                Ok(n.to_string())
            }
            ValueType::Double {
                min,
                max,
                max_exclusive,
            } => {
                let f: f64 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite())
                    .ok_or_else(|| format!("{value:?} is not a number"))?;
                let above = max.is_some_and(|m| if *max_exclusive { f >= m } else { f > m });
                if f < *min || above {
                    let upper = max.map_or_else(|| "any".to_owned(), |m| m.to_string());
                    return Err(format!(
                        "{f} is out of range: the server takes {min} to {upper}{}",
                        if *max_exclusive { " (exclusive)" } else { "" }
                    ));
                }
                Ok(value.trim().to_owned())
            }
            ValueType::Enum { values } => {
                if values.is_empty() {
                    return Ok(value.to_owned());
                }
                values
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(value))
                    .cloned()
                    .ok_or_else(|| {
                        format!("{value:?} is not allowed: use one of {}", values.join(", "))
                    })
            }
            ValueType::Set { values } => {
                if values.is_empty() {
                    return Ok(value.to_owned());
                }
                for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    if !values.iter().any(|v| v.eq_ignore_ascii_case(member)) {
                        return Err(format!(
                            "{member:?} is not allowed in this set: use a comma-separated list of {}",
                            values.join(", ")
                        ));
                    }
                }
                Ok(value.to_owned())
            }
            ValueType::FlagSet { flags } => {
                if flags.is_empty() {
                    return Ok(value.to_owned());
                }
                for item in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let ok = match item.split_once('=') {
                        Some((flag, setting)) => {
                            flags.iter().any(|f| f.eq_ignore_ascii_case(flag.trim()))
                                && ["on", "off", "default"]
                                    .contains(&setting.trim().to_ascii_lowercase().as_str())
                        }
                        None => item.eq_ignore_ascii_case("default"),
                    };
                    if !ok {
                        return Err(format!(
                            "{item:?} is not flag=on|off|default over {}",
                            flags.join(", ")
                        ));
                    }
                }
                Ok(value.to_owned())
            }
            ValueType::String => Ok(value.to_owned()),
        }
    }
}

/// An integer as option files write it: optional sign, digits, optional `K`/`M`/`G`/`T`/`P`/`E`
/// suffix (powers of 1024, any case).
pub(crate) fn parse_size(value: &str) -> Option<i128> {
    let v = value.trim();
    let (digits, shift) = match v.chars().last()?.to_ascii_uppercase() {
        'K' => (&v[..v.len() - 1], 10),
        'M' => (&v[..v.len() - 1], 20),
        'G' => (&v[..v.len() - 1], 30),
        'T' => (&v[..v.len() - 1], 40),
        'P' => (&v[..v.len() - 1], 50),
        'E' => (&v[..v.len() - 1], 60),
        _ => (v, 0),
    };
    let n: i128 = digits.parse().ok()?;
    n.checked_mul(1i128 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mariadb(kind: &str, min: &str, max: &str, block: &str, list: Option<&str>) -> VariableInfo {
        VariableInfo::from_mariadb(MariadbRow {
            name: "X".into(),
            scope: "GLOBAL".into(),
            kind: kind.into(),
            min: Some(min.into()),
            max: Some(max.into()),
            block: Some(block.into()),
            enum_values: list.map(Into::into),
            read_only: "NO".into(),
            command_line: Some("REQUIRED".into()),
            global_value: None,
        })
    }

    #[test]
    fn integers_take_suffixes_and_respect_range_and_block() {
        let pool = mariadb(
            "BIGINT UNSIGNED",
            "2097152",
            "18446744073701163008",
            "1048576",
            None,
        );
        assert_eq!(pool.check_value("128M"), Ok("134217728".to_owned()));
        assert_eq!(pool.check_value("1g"), Ok("1073741824".to_owned()));
        assert!(
            pool.check_value("banana")
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(pool.check_value("1M").unwrap_err().contains("out of range"));
        assert!(
            pool.check_value("3000000")
                .unwrap_err()
                .contains("multiple of 1048576")
        );
        let conns = mariadb("BIGINT UNSIGNED", "10", "100000", "1", None);
        assert!(
            conns
                .check_value("-5")
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(conns.check_value("300"), Ok("300".to_owned()));
    }

    #[test]
    fn booleans_enums_sets_and_flags() {
        let b = mariadb("BOOLEAN", "", "", "", Some("OFF,ON"));
        assert_eq!(b.check_value("true"), Ok("ON".to_owned()));
        assert!(b.check_value("maybe").is_err());
        let e = mariadb("ENUM", "", "", "", Some("OFF,ON,DISABLED,ORIGINAL"));
        assert_eq!(e.check_value("on"), Ok("ON".to_owned()));
        assert!(
            e.check_value("bogus")
                .unwrap_err()
                .contains("OFF, ON, DISABLED, ORIGINAL")
        );
        let s = mariadb("SET", "", "", "", Some("STRICT_TRANS_TABLES,ANSI_QUOTES"));
        assert!(s.check_value("ansi_quotes,STRICT_TRANS_TABLES").is_ok());
        assert!(s.check_value("ANSI_QUOTES,NOPE").is_err());
        let f = mariadb("FLAGSET", "", "", "", Some("index_merge,mrr,default"));
        assert!(f.check_value("mrr=on,index_merge=off").is_ok());
        assert!(f.check_value("mrr=maybe").is_err());
    }

    #[test]
    fn mysql_double_limits_are_decoded() {
        let lqt = VariableInfo::from_mysql(MysqlRow {
            name: "long_query_time".into(),
            scope: "SESSION".into(),
            kind: "Numeric".into(),
            min: Some("0".into()),
            max: Some("4719230590769954816".into()),
            global_value: Some("10.000000".into()),
        });
        assert_eq!(
            lqt.value_type,
            ValueType::Double {
                min: 0.0,
                max: Some(31_536_000.0),
                max_exclusive: false
            }
        );
        let pct = VariableInfo::from_mysql(MysqlRow {
            name: "innodb_max_dirty_pages_pct".into(),
            scope: "GLOBAL".into(),
            kind: "Numeric".into(),
            min: Some("0".into()),
            max: Some("99".into()),
            global_value: None,
        });
        assert!(pct.check_value("99.5").is_ok(), "99.999 is allowed");
        assert!(pct.check_value("100").is_err());
        assert_eq!(lqt.mutability, Mutability::Unknown);
    }

    #[test]
    fn computed_read_only_variables_are_not_settable() {
        let row = MariadbRow {
            name: "VERSION".into(),
            scope: "GLOBAL".into(),
            kind: "VARCHAR".into(),
            read_only: "YES".into(),
            ..MariadbRow::default()
        };
        let v = VariableInfo::from_mariadb(row);
        assert!(!v.settable);
        assert_eq!(v.mutability, Mutability::Static);
    }
}
