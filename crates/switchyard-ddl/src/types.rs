//! Whether a value written in one column type applies to another under row-based
//! replication: the same type, a non-lossy conversion the replica must be allowed to make, or
//! never.
//!
//! Encodes the MySQL manual's "Replication of Columns Having Different Data Types", the
//! MariaDB knowledge base's "Replication When the Primary and Replica Have Different Table
//! Definitions", and the measurements in the facts file (`mysql-facts.md`, "Row-based
//! replication when source and replica tables differ"). Where the manual allows more than was
//! measured on both servers, the stricter answer is given.

use switchyard_plan::versions::Flavor;

use crate::model::{ColumnType, LobSize, TypeFamily, TypeKind};
use crate::rules::Rule;

/// A conversion the replica's type-conversion setting must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Promotion {
    /// A signed integer promoted to a wider signed integer.
    SignedInteger,
    /// An unsigned integer promoted to a wider unsigned integer (MySQL needs ALL_UNSIGNED).
    UnsignedInteger,
    /// Any other non-lossy conversion.
    Other,
}

/// How a value of the writer's type applies to the applier's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TypeOutcome {
    /// Identical storage: applied as is.
    Same,
    /// Applied only with non-lossy conversions allowed.
    Convert(Promotion, String),
    /// Never correct.
    Refuse(Rule, String),
}

fn refuse(rule: Rule, reason: impl Into<String>) -> TypeOutcome {
    TypeOutcome::Refuse(rule, reason.into())
}

/// Compares the type a row was written with (`writer`) and the type it is applied to (`applier`).
pub(crate) fn compare_types(
    flavor: Flavor,
    writer: &ColumnType,
    applier: &ColumnType,
) -> TypeOutcome {
    let (w, a) = (&writer.kind, &applier.kind);
    let short = |t: &ColumnType| {
        if t.unsigned {
            format!("{} UNSIGNED", t.kind)
        } else {
            t.kind.to_string()
        }
    };
    let change = format!("{} to {}", short(writer), short(applier));
    if w.family() != a.family() {
        return refuse(
            Rule::TypeFamilyChange,
            format!(
                "{change} crosses type families; row-based replication never converts between them"
            ),
        );
    }
    if writer.compressed != applier.compressed {
        return refuse(
            Rule::TypeFamilyChange,
            format!("{change}: MariaDB COMPRESSED columns have their own row-event type"),
        );
    }
    if w.has_charset() || matches!(w.family(), TypeFamily::String) {
        let (wc, ac) = (writer.charset.as_deref(), applier.charset.as_deref());
        if wc != ac {
            return refuse(
                Rule::CharsetChange,
                format!(
                    "{change} changes the character set ({} to {}): the replica treats it as string \
                     widening and stores the bytes unconverted",
                    wc.unwrap_or("table default"),
                    ac.unwrap_or("table default")
                ),
            );
        }
    }
    if writer.unsigned != applier.unsigned {
        return refuse(
            Rule::SignednessChange,
            format!(
                "{change} changes signedness: the row image carries raw bytes, so -1 arrives as \
                 4294967295 (INT) and large unsigned values arrive negative; judged on what the source \
                 could write, not on today's data"
            ),
        );
    }
    match (w, a) {
        (TypeKind::Integer { size: ws }, TypeKind::Integer { size: as_ }) => {
            if ws == as_ {
                TypeOutcome::Same
            } else if as_ > ws {
                let promotion = if writer.unsigned {
                    Promotion::UnsignedInteger
                } else {
                    Promotion::SignedInteger
                };
                TypeOutcome::Convert(promotion, format!("{change} is integer widening"))
            } else {
                refuse(
                    Rule::Narrowing,
                    format!("{change} narrows the integer: needs ALL_LOSSY, which truncates"),
                )
            }
        }
        (
            TypeKind::Decimal {
                precision: wp,
                scale: wsc,
            },
            TypeKind::Decimal {
                precision: ap,
                scale: asc,
            },
        ) => {
            if (wp, wsc) == (ap, asc) {
                return TypeOutcome::Same;
            }
            let (w_int, a_int) = (wp - wsc, ap - asc);
            if a_int >= w_int && asc >= wsc {
                TypeOutcome::Convert(
                    Promotion::Other,
                    format!("{change} keeps integer digits and scale"),
                )
            } else {
                refuse(
                    Rule::DecimalNarrowing,
                    format!(
                        "{change} shrinks the integer digits ({w_int} to {a_int}) or the scale ({wsc} to {asc}); \
                         measured: ALL_NON_LOSSY accepts DECIMAL(10,2) to DECIMAL(10,4) and then clamps large values"
                    ),
                )
            }
        }
        (
            TypeKind::Float {
                double: wd,
                digits: wg,
            },
            TypeKind::Float {
                double: ad,
                digits: ag,
            },
        ) => {
            if (wd, wg) == (ad, ag) {
                TypeOutcome::Same
            } else if wg != ag {
                refuse(
                    Rule::FloatPrecisionChange,
                    format!("{change} changes the (M,D) of a floating-point column"),
                )
            } else if !wd && *ad {
                TypeOutcome::Convert(Promotion::Other, format!("{change} is FLOAT to DOUBLE"))
            } else {
                refuse(Rule::Narrowing, format!("{change} narrows DOUBLE to FLOAT"))
            }
        }
        (TypeKind::Bit { width: ww }, TypeKind::Bit { width: aw }) => {
            widen(ww, aw, &change, "BIT width")
        }
        (
            TypeKind::Char {
                varying: wv,
                length: wl,
            },
            TypeKind::Char {
                varying: av,
                length: al,
            },
        ) if wv == av => widen(wl, al, &change, "length"),
        (
            TypeKind::Binary {
                varying: wv,
                length: wl,
            },
            TypeKind::Binary {
                varying: av,
                length: al,
            },
        ) if wv == av => widen(wl, al, &change, "length"),
        (TypeKind::Text { size: ws }, TypeKind::Text { size: as_ })
        | (TypeKind::Blob { size: ws }, TypeKind::Blob { size: as_ }) => {
            widen(ws, as_, &change, "size")
        }
        (
            TypeKind::Char {
                varying: true,
                length,
            },
            TypeKind::Text { size },
        ) => varchar_to_text(*length, *size, writer.charset.as_deref(), &change),
        (
            TypeKind::Char { .. } | TypeKind::Text { .. },
            TypeKind::Char { .. } | TypeKind::Text { .. },
        )
        | (
            TypeKind::Binary { .. } | TypeKind::Blob { .. },
            TypeKind::Binary { .. } | TypeKind::Blob { .. },
        ) => refuse(
            Rule::StringKindChange,
            format!(
                "{change} changes the kind of string (CHAR, VARCHAR, TEXT or BINARY, VARBINARY, BLOB); the \
                 manuals list it as convertible but only VARCHAR to a large enough TEXT is verified on both \
                 servers, and CHAR strips trailing spaces that VARCHAR and TEXT keep: run it as a normal \
                 replicated ALTER"
            ),
        ),
        (TypeKind::Time { fsp: wf }, TypeKind::Time { fsp: af })
        | (TypeKind::Timestamp { fsp: wf }, TypeKind::Timestamp { fsp: af }) => {
            fsp_change(*wf, *af, &change, false, flavor)
        }
        (TypeKind::Datetime { fsp: wf }, TypeKind::Datetime { fsp: af }) => {
            fsp_change(*wf, *af, &change, true, flavor)
        }
        (TypeKind::Date, TypeKind::Date)
        | (TypeKind::Year, TypeKind::Year)
        | (TypeKind::Json, TypeKind::Json) => TypeOutcome::Same,
        (TypeKind::Date, TypeKind::Datetime { fsp: 0 }) if flavor == Flavor::Mariadb => {
            TypeOutcome::Convert(
                Promotion::Other,
                format!(
                    "{change}: measured, MariaDB applies DATE rows to DATETIME with ALL_NON_LOSSY"
                ),
            )
        }
        (_, _) if w.family() == TypeFamily::Temporal => refuse(
            Rule::TemporalTypeChange,
            format!(
                "{change} changes the temporal type; {} does not convert it (measured: only MariaDB \
                 converts DATE to DATETIME)",
                flavor.product_name()
            ),
        ),
        (TypeKind::Enum { values: wv }, TypeKind::Enum { values: av }) => {
            enum_change(wv, av, &change, false)
        }
        (TypeKind::Set { values: wv }, TypeKind::Set { values: av }) => {
            enum_change(wv, av, &change, true)
        }
        (TypeKind::Enum { .. }, TypeKind::Set { .. })
        | (TypeKind::Set { .. }, TypeKind::Enum { .. }) => refuse(
            Rule::TypeFamilyChange,
            format!("{change}: ENUM and SET store different numbers"),
        ),
        (TypeKind::Geometry { name: wn }, TypeKind::Geometry { name: an }) => {
            if wn == an && writer.srid == applier.srid {
                TypeOutcome::Same
            } else {
                refuse(
                    Rule::GeometryChange,
                    format!("{change}: spatial types and SRIDs are never converted"),
                )
            }
        }
        (TypeKind::Other { name: wn }, TypeKind::Other { name: an }) if wn == an => {
            TypeOutcome::Same
        }
        _ => refuse(
            Rule::TypeFamilyChange,
            format!("{change} is not a conversion the replica makes"),
        ),
    }
}

/// VARCHAR(n) to a TEXT type: a non-lossy conversion when the TEXT holds the longest value
/// the VARCHAR can (n characters of the character set's widest), a truncation otherwise.
/// Measured on MariaDB 10.11 and MySQL 9.7 (`tests/servers.rs`): VARCHAR(10) utf8mb4 to TEXT
/// and to TINYTEXT apply and match with `ALL_NON_LOSSY`, VARCHAR(100) utf8mb4 (400 bytes) to
/// TINYTEXT (255 bytes) does not.
fn varchar_to_text(length: u32, size: LobSize, charset: Option<&str>, change: &str) -> TypeOutcome {
    let longest = u64::from(length) * u64::from(max_bytes_per_char(charset));
    let capacity = size.capacity();
    if longest <= capacity {
        TypeOutcome::Convert(
            Promotion::Other,
            format!(
                "{change} keeps every value (at most {longest} bytes, the TEXT type holds {capacity}); \
                 measured on both servers with ALL_NON_LOSSY"
            ),
        )
    } else {
        TypeOutcome::Refuse(
            Rule::Narrowing,
            format!(
                "{change} narrows: a value may take {longest} bytes, the TEXT type holds {capacity}; needs \
                 ALL_LOSSY, which truncates"
            ),
        )
    }
}

/// The most bytes one character takes in `charset`; 4 when it is unknown (the table default,
/// or a character set not listed), which can only make the answer stricter.
fn max_bytes_per_char(charset: Option<&str>) -> u32 {
    match charset {
        Some(
            "latin1" | "latin2" | "latin5" | "latin7" | "ascii" | "binary" | "cp1250" | "cp1251"
            | "cp1256" | "cp1257" | "cp850" | "cp852" | "cp866" | "greek" | "hebrew" | "koi8r"
            | "koi8u" | "swe7" | "armscii8" | "dec8" | "hp8" | "keybcs2" | "macce" | "macroman"
            | "geostd8" | "tis620",
        ) => 1,
        Some("ucs2" | "big5" | "gbk" | "euckr" | "sjis" | "cp932") => 2,
        Some("utf8mb3" | "ujis" | "eucjpms") => 3,
        _ => 4,
    }
}

fn widen<T: PartialOrd>(writer: &T, applier: &T, change: &str, what: &str) -> TypeOutcome {
    if writer == applier {
        TypeOutcome::Same
    } else if applier > writer {
        TypeOutcome::Convert(Promotion::Other, format!("{change} widens the {what}"))
    } else {
        TypeOutcome::Refuse(
            Rule::Narrowing,
            format!("{change} narrows the {what}: needs ALL_LOSSY, which truncates"),
        )
    }
}

fn fsp_change(
    writer: u8,
    applier: u8,
    change: &str,
    datetime: bool,
    flavor: Flavor,
) -> TypeOutcome {
    if writer == applier {
        return TypeOutcome::Same;
    }
    if datetime && flavor == Flavor::Mariadb && writer > 0 && applier > writer {
        return TypeOutcome::Convert(
            Promotion::Other,
            format!(
                "{change}: measured, MariaDB converts DATETIME({writer}) to DATETIME({applier}) with ALL_NON_LOSSY"
            ),
        );
    }
    TypeOutcome::Refuse(
        Rule::FspChange,
        format!(
            "{change} changes fractional-second precision; measured on both servers: the replica stops \
             with a corrupted-event error{}",
            if flavor == Flavor::Mysql {
                " (MySQL refuses every precision change)"
            } else {
                ""
            }
        ),
    )
}

/// Bytes an ENUM or SET of `n` values takes.
fn storage_bytes(n: usize, set: bool) -> usize {
    if set {
        match n.div_ceil(8) {
            0 | 1 => 1,
            2 => 2,
            3 => 3,
            4 => 4,
            _ => 8,
        }
    } else if n <= 255 {
        1
    } else {
        2
    }
}

fn enum_change(writer: &[String], applier: &[String], change: &str, set: bool) -> TypeOutcome {
    let kind = if set { "SET" } else { "ENUM" };
    if writer == applier {
        return TypeOutcome::Same;
    }
    if applier.starts_with(writer) {
        if storage_bytes(writer.len(), set) == storage_bytes(applier.len(), set) {
            return TypeOutcome::Same;
        }
        return TypeOutcome::Refuse(
            Rule::EnumStorageChange,
            format!("{change}: the appended values change the {kind}'s storage size"),
        );
    }
    let missing: Vec<&String> = writer.iter().filter(|v| !applier.contains(v)).collect();
    if let Some(value) = missing.first() {
        return TypeOutcome::Refuse(
            Rule::EnumValueRemoved,
            format!(
                "{change} removes {kind} value '{value}': the row image stores positions, so rows with it \
                 arrive as '' or as another value"
            ),
        );
    }
    let kept_in_order: Vec<&String> = applier.iter().filter(|v| writer.contains(v)).collect();
    if kept_in_order.iter().copied().eq(writer.iter()) {
        let inserted = applier
            .iter()
            .find(|v| !writer.contains(v))
            .map_or("", String::as_str);
        return TypeOutcome::Refuse(
            Rule::EnumValueInserted,
            format!(
                "{change} inserts {kind} value '{inserted}' before existing values: the row image stores \
                 positions, so later values shift (measured on both servers); append new values at the end"
            ),
        );
    }
    TypeOutcome::Refuse(
        Rule::EnumValuesChanged,
        format!(
            "{change} reorders the {kind} values: the row image stores positions, so values change meaning"
        ),
    )
}

/// True when the enum change only appended values (used to name the safe finding).
pub(crate) fn is_enum_append(writer: &TypeKind, applier: &TypeKind) -> bool {
    match (writer, applier) {
        (TypeKind::Enum { values: w }, TypeKind::Enum { values: a })
        | (TypeKind::Set { values: w }, TypeKind::Set { values: a }) => {
            a.len() > w.len() && a.starts_with(w)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IntSize, LobSize};

    fn ty(kind: TypeKind) -> ColumnType {
        let charset = kind.has_charset().then(|| "utf8mb4".to_owned());
        ColumnType {
            kind,
            unsigned: false,
            charset,
            collation: None,
            compressed: false,
            srid: None,
        }
    }

    fn int(size: IntSize) -> ColumnType {
        ty(TypeKind::Integer { size })
    }

    fn rule(outcome: TypeOutcome) -> Option<Rule> {
        match outcome {
            TypeOutcome::Refuse(rule, _) => Some(rule),
            _ => None,
        }
    }

    #[test]
    fn integers() {
        for flavor in Flavor::ALL {
            assert_eq!(
                compare_types(flavor, &int(IntSize::Int), &int(IntSize::Int)),
                TypeOutcome::Same
            );
            assert!(matches!(
                compare_types(flavor, &int(IntSize::Int), &int(IntSize::Big)),
                TypeOutcome::Convert(Promotion::SignedInteger, _)
            ));
            let unsigned = |s| ColumnType {
                unsigned: true,
                ..int(s)
            };
            assert!(matches!(
                compare_types(flavor, &unsigned(IntSize::Int), &unsigned(IntSize::Big)),
                TypeOutcome::Convert(Promotion::UnsignedInteger, _)
            ));
            assert_eq!(
                rule(compare_types(
                    flavor,
                    &int(IntSize::Big),
                    &int(IntSize::Int)
                )),
                Some(Rule::Narrowing)
            );
            assert_eq!(
                rule(compare_types(
                    flavor,
                    &int(IntSize::Int),
                    &unsigned(IntSize::Int)
                )),
                Some(Rule::SignednessChange)
            );
            assert_eq!(
                rule(compare_types(
                    flavor,
                    &int(IntSize::Int),
                    &unsigned(IntSize::Big)
                )),
                Some(Rule::SignednessChange)
            );
        }
    }

    #[test]
    fn decimals_keep_integer_digits_and_scale() {
        let dec = |p, s| {
            ty(TypeKind::Decimal {
                precision: p,
                scale: s,
            })
        };
        assert!(matches!(
            compare_types(Flavor::Mysql, &dec(10, 2), &dec(12, 4)),
            TypeOutcome::Convert(..)
        ));
        assert!(matches!(
            compare_types(Flavor::Mysql, &dec(10, 2), &dec(11, 2)),
            TypeOutcome::Convert(..)
        ));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &dec(10, 2), &dec(10, 4))),
            Some(Rule::DecimalNarrowing)
        );
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &dec(10, 2), &dec(12, 1))),
            Some(Rule::DecimalNarrowing)
        );
    }

    #[test]
    fn strings() {
        let varchar = |n| {
            ty(TypeKind::Char {
                varying: true,
                length: n,
            })
        };
        assert!(matches!(
            compare_types(Flavor::Mysql, &varchar(10), &varchar(20)),
            TypeOutcome::Convert(..)
        ));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &varchar(20), &varchar(10))),
            Some(Rule::Narrowing)
        );
        let latin = |n| ColumnType {
            charset: Some("latin1".into()),
            ..varchar(n)
        };
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &latin(10), &varchar(10))),
            Some(Rule::CharsetChange)
        );
        let text = ty(TypeKind::Text {
            size: LobSize::Regular,
        });
        assert!(matches!(
            compare_types(Flavor::Mysql, &varchar(10), &text),
            TypeOutcome::Convert(..)
        ));
        let tiny = ty(TypeKind::Text {
            size: LobSize::Tiny,
        });
        let utf8mb4 = |n| ColumnType {
            charset: Some("utf8mb4".into()),
            ..varchar(n)
        };
        // 63 × 4 = 252 bytes fit a TINYTEXT, 64 × 4 = 256 do not; an unknown charset counts 4.
        assert!(matches!(
            compare_types(Flavor::Mariadb, &utf8mb4(63), &tiny),
            TypeOutcome::Convert(..)
        ));
        for writer in [utf8mb4(64), varchar(64)] {
            assert_eq!(
                rule(compare_types(Flavor::Mariadb, &writer, &tiny)),
                Some(Rule::Narrowing)
            );
        }
        let latin_tiny = ColumnType {
            charset: Some("latin1".into()),
            ..tiny.clone()
        };
        assert!(matches!(
            compare_types(Flavor::Mysql, &latin(255), &latin_tiny),
            TypeOutcome::Convert(..)
        ));
        let char10 = ty(TypeKind::Char {
            varying: false,
            length: 10,
        });
        for (writer, applier) in [
            (&varchar(10), &char10),
            (&char10, &text),
            (&text, &varchar(70_000)),
        ] {
            assert_eq!(
                rule(compare_types(Flavor::Mysql, writer, applier)),
                Some(Rule::StringKindChange)
            );
        }
        let medium = ty(TypeKind::Text {
            size: LobSize::Medium,
        });
        assert!(matches!(
            compare_types(Flavor::Mysql, &text, &medium),
            TypeOutcome::Convert(..)
        ));
        assert_eq!(
            rule(compare_types(
                Flavor::Mysql,
                &int(IntSize::Int),
                &varchar(30)
            )),
            Some(Rule::TypeFamilyChange)
        );
    }

    #[test]
    fn temporal_types_differ_by_flavor() {
        let dt = |fsp| ty(TypeKind::Datetime { fsp });
        for flavor in Flavor::ALL {
            assert_eq!(
                rule(compare_types(flavor, &dt(0), &dt(3))),
                Some(Rule::FspChange)
            );
            assert_eq!(
                rule(compare_types(flavor, &dt(6), &dt(3))),
                Some(Rule::FspChange)
            );
        }
        assert!(matches!(
            compare_types(Flavor::Mariadb, &dt(3), &dt(6)),
            TypeOutcome::Convert(..)
        ));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &dt(3), &dt(6))),
            Some(Rule::FspChange)
        );
        assert!(matches!(
            compare_types(Flavor::Mariadb, &ty(TypeKind::Date), &dt(0)),
            TypeOutcome::Convert(..)
        ));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &ty(TypeKind::Date), &dt(0))),
            Some(Rule::TemporalTypeChange)
        );
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &ty(TypeKind::Date), &dt(3))),
            Some(Rule::TemporalTypeChange)
        );
        let ts = ty(TypeKind::Timestamp { fsp: 0 });
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &dt(0), &ts)),
            Some(Rule::TemporalTypeChange)
        );
    }

    #[test]
    fn enums() {
        let e = |values: &[&str]| {
            ty(TypeKind::Enum {
                values: values.iter().map(|v| v.to_string()).collect(),
            })
        };
        assert_eq!(
            compare_types(Flavor::Mysql, &e(&["a", "b"]), &e(&["a", "b", "c"])),
            TypeOutcome::Same
        );
        assert_eq!(
            rule(compare_types(
                Flavor::Mysql,
                &e(&["a", "b"]),
                &e(&["a", "x", "b"])
            )),
            Some(Rule::EnumValueInserted)
        );
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &e(&["a", "b"]), &e(&["a"]))),
            Some(Rule::EnumValueRemoved)
        );
        assert_eq!(
            rule(compare_types(
                Flavor::Mysql,
                &e(&["a", "b"]),
                &e(&["b", "a"])
            )),
            Some(Rule::EnumValuesChanged)
        );
        let many: Vec<String> = (0..255).map(|i| format!("v{i}")).collect();
        let mut more = many.clone();
        more.push("x".into());
        let (a, b) = (
            ty(TypeKind::Enum { values: many }),
            ty(TypeKind::Enum { values: more }),
        );
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &a, &b)),
            Some(Rule::EnumStorageChange)
        );
        let s = |n: usize| {
            ty(TypeKind::Set {
                values: (0..n).map(|i| format!("s{i}")).collect(),
            })
        };
        assert_eq!(
            compare_types(Flavor::Mariadb, &s(3), &s(8)),
            TypeOutcome::Same
        );
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &s(8), &s(9))),
            Some(Rule::EnumStorageChange)
        );
    }

    #[test]
    fn floats_json_geometry() {
        let f = ty(TypeKind::Float {
            double: false,
            digits: None,
        });
        let d = ty(TypeKind::Float {
            double: true,
            digits: None,
        });
        assert!(matches!(
            compare_types(Flavor::Mysql, &f, &d),
            TypeOutcome::Convert(..)
        ));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &d, &f)),
            Some(Rule::Narrowing)
        );
        let json = ty(TypeKind::Json);
        let text = ty(TypeKind::Text {
            size: LobSize::Long,
        });
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &json, &text)),
            Some(Rule::TypeFamilyChange)
        );
        let point = ty(TypeKind::Geometry {
            name: "point".into(),
        });
        let geometry = ty(TypeKind::Geometry {
            name: "geometry".into(),
        });
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &point, &geometry)),
            Some(Rule::GeometryChange)
        );
    }
}
