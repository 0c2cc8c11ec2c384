//! Whether a value written in one column type applies to another under row-based
//! replication: the same storage (applied as is), a conversion the replica must be allowed to
//! make (`ALL_NON_LOSSY`, and on MySQL `ALL_UNSIGNED` for unsigned sources), or never.
//!
//! The starting point is the MySQL manual's "Replication of Columns Having Different Data
//! Types" (section 19.5.1.9.2 of the 8.4 and 9.x manuals) and the MariaDB knowledge base's
//! "Replication When the Primary and Replica Have Different Table Definitions": conversions
//! within the integer types, within DECIMAL/FLOAT/DOUBLE, within CHAR/VARCHAR/TEXT, within
//! BINARY/VARBINARY/BLOB and between BIT widths, lossy or not, none between families, none
//! between character sets. Every rule below was then measured on MariaDB 10.11 and 11.8 and
//! MySQL 9.7 replication pairs (the family tables of `reference.rs`, replayed by
//! `tests/servers.rs`; results in `docs/ddl-verification.md`). Where the servers differ from
//! the manuals, the servers decide:
//!
//! - a column counts as *the same* when the row event's type and length match (VARCHAR(10)
//!   in utf8mb4 and VARBINARY(40) both carry 40 bytes: applied as is, no setting);
//! - string capacity is checked in bytes *and* characters: the servers compare bytes only,
//!   so TINYTEXT (255 one-byte characters) to VARCHAR(64) in utf8mb4 (256 bytes) passes their
//!   check and truncates to 64 characters;
//! - a VARCHAR to a TEXT type too small for it is not stopped as lossy: the servers truncate;
//! - DECIMAL(M,D) to (M',D') is non-lossy for both servers when M' > M (or M' = M and D' > D);
//!   values then keep their integer digits only when M'−D' ≥ M−D (else they are clamped) and
//!   a smaller scale rounds as the primary's own ALTER rounds;
//! - FLOAT(M,D) and DOUBLE(M,D) store the same bits as FLOAT and DOUBLE and their ALTER
//!   copies them unchanged: only FLOAT to DOUBLE(M,D) is refused (as lossy);
//! - ENUM and SET keep their positions whatever their character set, and values appended past
//!   a storage size (ENUM past 255 values, SET past 8, 16, 24 or 32) convert with
//!   `ALL_NON_LOSSY`;
//! - utf8mb3 and ascii values are valid utf8mb4 (and ascii valid latin1) byte for byte: those
//!   character-set changes are widenings;
//! - MySQL reads a promoted unsigned integer correctly only with `ALL_UNSIGNED`, also into a
//!   wider signed type (TINYINT UNSIGNED to SMALLINT); MariaDB reads it with the replica
//!   column's signedness (255 arrives as −1);
//! - MariaDB (not MySQL) converts DATE to DATETIME(p) and TIME, DATETIME or TIMESTAMP from a
//!   fractional precision p > 0 to a larger one; any other precision change stops both.

use switchyard_plan::versions::Flavor;

use crate::model::{ColumnType, TypeFamily, TypeKind, charset_max_bytes};
use crate::rules::Rule;

/// A conversion the replica's type-conversion setting must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Promotion {
    /// A signed integer promoted to a wider signed integer.
    SignedInteger,
    /// An unsigned integer promoted to a wider integer (MySQL needs ALL_UNSIGNED).
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

fn convert(reason: impl Into<String>) -> TypeOutcome {
    TypeOutcome::Convert(Promotion::Other, reason.into())
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
    if writer.compressed != applier.compressed {
        return refuse(
            Rule::TypeFamilyChange,
            format!(
                "{change}: MariaDB COMPRESSED columns have their own row-event type; the replica stops"
            ),
        );
    }
    let strings = |f: TypeFamily| matches!(f, TypeFamily::String | TypeFamily::Binary);
    if strings(w.family()) && strings(a.family()) {
        return strings_compared(writer, applier, &change);
    }
    if w.family() != a.family() {
        return refuse(
            Rule::TypeFamilyChange,
            format!(
                "{change} crosses type families; the servers never convert between them: the replica \
                 stops at the first row"
            ),
        );
    }
    match (w, a) {
        (TypeKind::Integer { size: ws }, TypeKind::Integer { size: as_ }) => {
            integers(flavor, writer, applier, ws.cmp(as_), &change)
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
        ) => decimals(writer, applier, (*wp, *wsc), (*ap, *asc), &change),
        (
            TypeKind::Float {
                double: wd,
                digits: _,
            },
            TypeKind::Float {
                double: ad,
                digits: ag,
            },
        ) => floats(writer, applier, *wd, *ad, ag.is_some(), &change),
        (TypeKind::Bit { width: ww }, TypeKind::Bit { width: aw }) => {
            if ww == aw {
                TypeOutcome::Same
            } else if aw > ww {
                convert(format!(
                    "{change} widens the BIT; the replica sets the low bits (measured on both servers)"
                ))
            } else {
                refuse(
                    Rule::Narrowing,
                    format!("{change} narrows the BIT: a lossy conversion, the replica stops"),
                )
            }
        }
        (TypeKind::Enum { values: wv }, TypeKind::Enum { values: av }) => {
            enum_change(wv, av, &change, false)
        }
        (TypeKind::Set { values: wv }, TypeKind::Set { values: av }) => {
            enum_change(wv, av, &change, true)
        }
        (TypeKind::Enum { .. }, TypeKind::Set { .. })
        | (TypeKind::Set { .. }, TypeKind::Enum { .. }) => refuse(
            Rule::TypeFamilyChange,
            format!("{change}: ENUM and SET are different row-event types; the replica stops"),
        ),
        (_, _) if w.family() == TypeFamily::Temporal => temporal(flavor, w, a, &change),
        (TypeKind::Json, TypeKind::Json) => TypeOutcome::Same,
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
            format!("{change} is not a conversion the replica makes; it stops"),
        ),
    }
}

fn integers(
    flavor: Flavor,
    writer: &ColumnType,
    applier: &ColumnType,
    order: std::cmp::Ordering,
    change: &str,
) -> TypeOutcome {
    use std::cmp::Ordering;
    match (order, writer.unsigned, applier.unsigned) {
        (Ordering::Greater, _, _) => refuse(
            Rule::Narrowing,
            format!(
                "{change} narrows the integer: a lossy conversion, the replica stops unless ALL_LOSSY \
                 lets it truncate"
            ),
        ),
        (Ordering::Equal, w, a) if w == a => TypeOutcome::Same,
        (Ordering::Equal, _, _) => refuse(
            Rule::SignednessChange,
            format!(
                "{change} changes signedness: the row image carries the raw bytes, so -1 arrives as \
                 4294967295 (INT) and large unsigned values arrive negative (measured on both servers)"
            ),
        ),
        (Ordering::Less, false, false) => TypeOutcome::Convert(
            Promotion::SignedInteger,
            format!("{change} is integer widening"),
        ),
        (Ordering::Less, true, true) => TypeOutcome::Convert(
            Promotion::UnsignedInteger,
            format!("{change} is unsigned integer widening"),
        ),
        (Ordering::Less, true, false) if flavor == Flavor::Mysql => TypeOutcome::Convert(
            Promotion::UnsignedInteger,
            format!(
                "{change} widens an unsigned integer into a signed one that holds every value; MySQL \
                 reads the source's value as unsigned with ALL_UNSIGNED (manual; measured)"
            ),
        ),
        (Ordering::Less, true, false) => refuse(
            Rule::SignednessChange,
            format!(
                "{change}: MariaDB reads the source's value with the replica column's signedness, so \
                 255 arrives as -1 (measured); MariaDB has no ALL_UNSIGNED"
            ),
        ),
        (Ordering::Less, false, true) => refuse(
            Rule::SignednessChange,
            format!(
                "{change}: a negative value the source writes has no unsigned equivalent: the replica \
                 stores 0 or a wrapped value while the source's own ALTER refuses it (measured); judged \
                 on what the source could write"
            ),
        ),
    }
}

fn decimals(
    writer: &ColumnType,
    applier: &ColumnType,
    (wp, ws): (u32, u32),
    (ap, as_): (u32, u32),
    change: &str,
) -> TypeOutcome {
    if !writer.unsigned && applier.unsigned {
        return refuse(
            Rule::SignednessChange,
            format!(
                "{change}: a negative value the source writes does not fit; the replica keeps it while \
                 the source's own ALTER refuses it (measured); judged on what the source could write"
            ),
        );
    }
    if (wp, ws) == (ap, as_) {
        return TypeOutcome::Same;
    }
    let non_lossy = ap > wp || (ap == wp && as_ > ws);
    let (w_int, a_int) = (wp - ws, ap - as_);
    if !non_lossy {
        refuse(
            Rule::Narrowing,
            format!(
                "{change}: the servers count a DECIMAL of {} precision as a lossy conversion; the replica \
                 stops unless ALL_LOSSY lets it truncate (measured)",
                if ap < wp {
                    "less"
                } else {
                    "the same precision and less"
                }
            ),
        )
    } else if a_int < w_int {
        refuse(
            Rule::DecimalNarrowing,
            format!(
                "{change} keeps {a_int} integer digits of {w_int}: the servers accept it as non-lossy and \
                 clamp larger values (12345678.91 arrives as 999999.9999, measured on both servers) \
                 while the source's own ALTER refuses them"
            ),
        )
    } else if as_ < ws {
        convert(format!(
            "{change} keeps every integer digit; the smaller scale rounds the way the primary's own ALTER \
             rounds its rows (measured on both servers)"
        ))
    } else {
        convert(format!("{change} keeps integer digits and scale"))
    }
}

fn floats(
    writer: &ColumnType,
    applier: &ColumnType,
    writer_double: bool,
    applier_double: bool,
    applier_digits: bool,
    change: &str,
) -> TypeOutcome {
    if !writer.unsigned && applier.unsigned {
        return refuse(
            Rule::SignednessChange,
            format!(
                "{change}: a negative value the source writes is kept on the replica while the source's \
                 own ALTER refuses it (measured); judged on what the source could write"
            ),
        );
    }
    match (writer_double, applier_double) {
        (w, a) if w == a => TypeOutcome::Same,
        (false, true) if applier_digits => refuse(
            Rule::FloatPrecisionChange,
            format!(
                "{change}: the servers count FLOAT to a DOUBLE with (M,D) as lossy: the replica stops \
                 (measured)"
            ),
        ),
        (false, true) => convert(format!("{change} is FLOAT to DOUBLE")),
        _ => refuse(
            Rule::Narrowing,
            format!("{change} narrows DOUBLE to FLOAT: a lossy conversion, the replica stops"),
        ),
    }
}

/// How a string type is stored in a row event: the event's type, and the most bytes and
/// characters a value takes or holds.
struct StringShape {
    /// 0: CHAR/BINARY, 1: VARCHAR/VARBINARY, 2: TEXT/BLOB.
    storage: u8,
    bytes: u64,
    /// `None` for TEXT/BLOB applier columns, which limit only bytes.
    chars: Option<u64>,
    binary: bool,
}

fn string_shape(ty: &ColumnType) -> Option<StringShape> {
    let charset = ty.charset.as_deref().unwrap_or("utf8mb4");
    let max = u64::from(charset_max_bytes(charset));
    let min = u64::from(charset_min_bytes(charset));
    Some(match &ty.kind {
        TypeKind::Char { varying, length } => StringShape {
            storage: u8::from(*varying),
            bytes: u64::from(*length) * max,
            chars: Some(u64::from(*length)),
            binary: false,
        },
        TypeKind::Binary { varying, length } => StringShape {
            storage: u8::from(*varying),
            bytes: u64::from(*length),
            chars: Some(u64::from(*length)),
            binary: true,
        },
        TypeKind::Text { size } => StringShape {
            storage: 2,
            bytes: size.capacity(),
            chars: Some(size.capacity() / min),
            binary: false,
        },
        TypeKind::Blob { size } => StringShape {
            storage: 2,
            bytes: size.capacity(),
            chars: Some(size.capacity()),
            binary: true,
        },
        _ => return None,
    })
}

/// The fewest bytes a character takes in `charset`.
fn charset_min_bytes(charset: &str) -> u32 {
    match charset {
        "ucs2" | "utf16" | "utf16le" => 2,
        "utf32" => 4,
        _ => 1,
    }
}

/// Character-set changes whose bytes mean the same characters on the new side: ascii is
/// valid latin1, utf8mb3 and utf8mb4; utf8mb3 is valid utf8mb4.
pub(crate) fn same_bytes(from: &str, to: &str) -> bool {
    from == to
        || (from == "ascii" && matches!(to, "latin1" | "utf8mb3" | "utf8mb4"))
        || (from == "utf8mb3" && to == "utf8mb4")
}

fn strings_compared(writer: &ColumnType, applier: &ColumnType, change: &str) -> TypeOutcome {
    let (Some(w), Some(a)) = (string_shape(writer), string_shape(applier)) else {
        return refuse(
            Rule::TypeFamilyChange,
            format!("{change} is not a string conversion"),
        );
    };
    let (wc, ac) = (
        writer.charset.as_deref().unwrap_or("table default"),
        applier.charset.as_deref().unwrap_or("table default"),
    );
    match (w.binary, a.binary) {
        (false, false) if !same_bytes(wc, ac) => {
            return refuse(
                Rule::CharsetChange,
                format!(
                    "{change} changes the character set ({wc} to {ac}): the replica stores the source's \
                     bytes unconverted, so non-ASCII values arrive wrong (latin1 'café' reads 'caf?'), or it \
                     stops where the new set's bytes are fewer (measured on both servers)"
                ),
            );
        }
        (true, false) => {
            return refuse(
                Rule::CharsetChange,
                format!(
                    "{change}: binary values reach the {ac} column unchecked, so bytes that are not valid \
                     {ac} are kept on the replica while the source's own ALTER refuses them (measured)"
                ),
            );
        }
        (false, true) if w.storage != a.storage => {
            return refuse(
                Rule::StringKindChange,
                format!(
                    "{change} changes both the kind of string and text to binary; only VARCHAR to \
                     VARBINARY, CHAR to BINARY and TEXT to BLOB are measured on both servers: run it as a \
                     normal replicated ALTER"
                ),
            );
        }
        _ => {}
    }
    let holds_chars = match (w.chars, a.chars) {
        // A TEXT/BLOB applier limits bytes only.
        (_, _) if a.storage == 2 => true,
        (Some(wc), Some(ac)) => ac >= wc,
        _ => true,
    };
    if a.bytes < w.bytes || !holds_chars {
        let (what, had, has) = if a.bytes < w.bytes {
            ("bytes", w.bytes, a.bytes)
        } else {
            (
                "characters",
                w.chars.unwrap_or(0),
                a.chars.unwrap_or(u64::MAX),
            )
        };
        return refuse(
            Rule::Narrowing,
            format!(
                "{change} narrows: a value may take {had} {what}, the new type holds {has}; the replica \
                 stops, or where the servers count it as non-lossy truncates the value (measured on both \
                 servers)"
            ),
        );
    }
    if w.storage == a.storage && w.bytes == a.bytes {
        return TypeOutcome::Same;
    }
    let binary = if !w.binary && a.binary {
        "; the bytes are kept as they are"
    } else {
        ""
    };
    convert(format!(
        "{change} keeps every value (at most {} bytes, the new type holds {}){binary}; measured on both \
         servers with ALL_NON_LOSSY",
        w.bytes, a.bytes
    ))
}

fn temporal(flavor: Flavor, w: &TypeKind, a: &TypeKind, change: &str) -> TypeOutcome {
    let fsp = |k: &TypeKind| match k {
        TypeKind::Time { fsp } | TypeKind::Datetime { fsp } | TypeKind::Timestamp { fsp } => {
            Some(*fsp)
        }
        _ => None,
    };
    let same_kind = std::mem::discriminant(w) == std::mem::discriminant(a);
    if w == a || (*w == TypeKind::Year && *a == TypeKind::Year) {
        return TypeOutcome::Same;
    }
    if same_kind && let (Some(wf), Some(af)) = (fsp(w), fsp(a)) {
        if flavor == Flavor::Mariadb && wf > 0 && af > wf {
            return convert(format!(
                "{change}: MariaDB converts a larger fractional-second precision with ALL_NON_LOSSY \
                 (measured); MySQL does not"
            ));
        }
        return refuse(
            Rule::FspChange,
            format!(
                "{change} changes fractional-second precision: the replica stops ({}; measured)",
                if wf == 0 || flavor == Flavor::Mysql {
                    "a corrupted-event error or a conversion error"
                } else {
                    "a smaller precision is a lossy conversion"
                }
            ),
        );
    }
    if flavor == Flavor::Mariadb && *w == TypeKind::Date && matches!(a, TypeKind::Datetime { .. }) {
        return convert(format!(
            "{change}: MariaDB applies DATE rows to DATETIME with ALL_NON_LOSSY (measured); MySQL does not"
        ));
    }
    refuse(
        Rule::TemporalTypeChange,
        format!(
            "{change} changes the temporal type; {} does not convert it: the replica stops (measured)",
            flavor.product_name()
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
        return convert(format!(
            "{change}: the appended values widen the {kind}'s storage from {} to {} bytes, a non-lossy \
             conversion (measured on both servers)",
            storage_bytes(writer.len(), set),
            storage_bytes(applier.len(), set)
        ));
    }
    let missing: Vec<&String> = writer.iter().filter(|v| !applier.contains(v)).collect();
    if let Some(value) = missing.first() {
        return refuse(
            Rule::EnumValueRemoved,
            format!(
                "{change} removes {kind} value '{value}': the row image stores positions, so rows with it \
                 arrive as '' or as another value (measured)"
            ),
        );
    }
    let kept_in_order: Vec<&String> = applier.iter().filter(|v| writer.contains(v)).collect();
    if kept_in_order.iter().copied().eq(writer.iter()) {
        let inserted = applier
            .iter()
            .find(|v| !writer.contains(v))
            .map_or("", String::as_str);
        return refuse(
            Rule::EnumValueInserted,
            format!(
                "{change} inserts {kind} value '{inserted}' before existing values: the row image stores \
                 positions, so later values shift (measured on both servers); append new values at the end"
            ),
        );
    }
    refuse(
        Rule::EnumValuesChanged,
        format!(
            "{change} reorders the {kind} values: the row image stores positions, so values change meaning \
             (measured)"
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

/// True when an ENUM or SET change takes more bytes per value (past 255 ENUM values, past
/// 8, 16, 24 or 32 SET values): the table is copied.
pub(crate) fn enum_storage_grows(writer: &TypeKind, applier: &TypeKind) -> bool {
    match (writer, applier) {
        (TypeKind::Enum { values: w }, TypeKind::Enum { values: a }) => {
            storage_bytes(a.len(), false) > storage_bytes(w.len(), false)
        }
        (TypeKind::Set { values: w }, TypeKind::Set { values: a }) => {
            storage_bytes(a.len(), true) > storage_bytes(w.len(), true)
        }
        _ => false,
    }
}

/// True when the two types store their values the same way whatever their character set:
/// ENUM and SET store positions.
pub(crate) fn charset_free(kind: &TypeKind) -> bool {
    matches!(kind, TypeKind::Enum { .. } | TypeKind::Set { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IntSize, LobSize};

    fn text(size: LobSize) -> TypeKind {
        TypeKind::Text { size }
    }

    fn ty(kind: TypeKind) -> ColumnType {
        let charset = if kind.has_charset() {
            Some("utf8mb4".to_owned())
        } else if kind.family() == TypeFamily::Binary {
            Some("binary".to_owned())
        } else {
            None
        };
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

    fn unsigned(t: ColumnType) -> ColumnType {
        ColumnType {
            unsigned: true,
            ..t
        }
    }

    fn rule(outcome: TypeOutcome) -> Option<Rule> {
        match outcome {
            TypeOutcome::Refuse(rule, _) => Some(rule),
            _ => None,
        }
    }

    fn converts(outcome: &TypeOutcome) -> bool {
        matches!(outcome, TypeOutcome::Convert(..))
    }

    #[test]
    fn integers_by_width_and_sign() {
        for flavor in Flavor::ALL {
            let c = |w: &ColumnType, a: &ColumnType| compare_types(flavor, w, a);
            assert_eq!(c(&int(IntSize::Int), &int(IntSize::Int)), TypeOutcome::Same);
            assert!(matches!(
                c(&int(IntSize::Tiny), &int(IntSize::Big)),
                TypeOutcome::Convert(Promotion::SignedInteger, _)
            ));
            assert!(matches!(
                c(
                    &unsigned(int(IntSize::Tiny)),
                    &unsigned(int(IntSize::Small))
                ),
                TypeOutcome::Convert(Promotion::UnsignedInteger, _)
            ));
            assert_eq!(
                rule(c(&int(IntSize::Big), &int(IntSize::Int))),
                Some(Rule::Narrowing)
            );
            assert_eq!(
                rule(c(&int(IntSize::Int), &unsigned(int(IntSize::Int)))),
                Some(Rule::SignednessChange)
            );
            assert_eq!(
                rule(c(&int(IntSize::Int), &unsigned(int(IntSize::Big)))),
                Some(Rule::SignednessChange)
            );
        }
        // Unsigned into a wider signed type: MySQL with ALL_UNSIGNED, not MariaDB.
        let (w, a) = (unsigned(int(IntSize::Tiny)), int(IntSize::Small));
        assert!(matches!(
            compare_types(Flavor::Mysql, &w, &a),
            TypeOutcome::Convert(Promotion::UnsignedInteger, _)
        ));
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &w, &a)),
            Some(Rule::SignednessChange)
        );
    }

    #[test]
    fn decimals_as_the_servers_count_them() {
        let dec = |p, s| {
            ty(TypeKind::Decimal {
                precision: p,
                scale: s,
            })
        };
        let c = |w, a| compare_types(Flavor::Mysql, &w, &a);
        for (to, converted) in [
            ((12, 4), true),
            ((11, 3), true),
            ((12, 1), true),
            ((65, 2), true),
        ] {
            assert_eq!(
                converts(&c(dec(10, 2), dec(to.0, to.1))),
                converted,
                "{to:?}"
            );
        }
        assert_eq!(
            rule(c(dec(10, 2), dec(10, 4))),
            Some(Rule::DecimalNarrowing)
        );
        assert_eq!(rule(c(dec(10, 2), dec(9, 2))), Some(Rule::Narrowing));
        assert_eq!(rule(c(dec(10, 2), dec(10, 1))), Some(Rule::Narrowing));
        assert_eq!(c(unsigned(dec(5, 2)), dec(5, 2)), TypeOutcome::Same);
        assert!(converts(&c(unsigned(dec(5, 2)), dec(6, 2))));
        assert_eq!(
            rule(c(dec(5, 2), unsigned(dec(5, 2)))),
            Some(Rule::SignednessChange)
        );
    }

    #[test]
    fn floats_keep_their_bits() {
        let f = |double, digits| ty(TypeKind::Float { double, digits });
        let c = |w, a| compare_types(Flavor::Mariadb, &w, &a);
        assert_eq!(
            c(f(false, Some((7, 2))), f(false, Some((6, 1)))),
            TypeOutcome::Same
        );
        assert_eq!(c(f(false, None), f(false, Some((7, 2)))), TypeOutcome::Same);
        assert!(converts(&c(f(false, Some((7, 2))), f(true, None))));
        assert_eq!(
            rule(c(f(false, Some((7, 2))), f(true, Some((9, 2))))),
            Some(Rule::FloatPrecisionChange)
        );
        assert_eq!(
            rule(c(f(true, None), f(false, None))),
            Some(Rule::Narrowing)
        );
        assert_eq!(
            rule(c(f(false, None), unsigned(f(false, None)))),
            Some(Rule::SignednessChange)
        );
    }

    #[test]
    fn strings_by_bytes_and_characters() {
        let char_ = |varying, length, charset: &str| ColumnType {
            charset: Some(charset.to_owned()),
            ..ty(TypeKind::Char { varying, length })
        };
        let varchar = |n| char_(true, n, "utf8mb4");
        let c = |w: &ColumnType, a: &ColumnType| compare_types(Flavor::Mysql, w, a);
        assert!(converts(&c(&varchar(10), &varchar(20))));
        assert!(converts(&c(&varchar(10), &char_(false, 10, "utf8mb4"))));
        assert!(converts(&c(&char_(false, 10, "utf8mb4"), &varchar(10))));
        assert_eq!(rule(c(&varchar(10), &varchar(5))), Some(Rule::Narrowing));
        let tiny = ty(text(LobSize::Tiny));
        // 63 × 4 = 252 bytes fit a TINYTEXT, 64 × 4 = 256 do not.
        assert!(converts(&c(&varchar(63), &tiny)));
        assert_eq!(rule(c(&varchar(64), &tiny)), Some(Rule::Narrowing));
        // A TINYTEXT holds 255 one-byte characters: VARCHAR(64) is too short although it
        // holds 256 bytes.
        assert_eq!(rule(c(&tiny, &varchar(64))), Some(Rule::Narrowing));
        assert!(converts(&c(&tiny, &varchar(255))));
        assert_eq!(
            rule(c(&ty(text(LobSize::Medium)), &ty(text(LobSize::Regular)))),
            Some(Rule::Narrowing)
        );
        // Character sets: widening byte-compatible sets converts, others corrupt.
        assert!(converts(&c(&char_(true, 10, "utf8mb3"), &varchar(10))));
        assert_eq!(
            c(&char_(true, 10, "ascii"), &char_(true, 10, "latin1")),
            TypeOutcome::Same
        );
        assert_eq!(
            rule(c(&char_(true, 10, "latin1"), &varchar(10))),
            Some(Rule::CharsetChange)
        );
        assert_eq!(
            rule(c(&varchar(10), &char_(true, 14, "utf8mb3"))),
            Some(Rule::CharsetChange)
        );
        // Text to binary of the same storage keeps the bytes.
        let bin = |varying, length| ty(TypeKind::Binary { varying, length });
        assert_eq!(c(&varchar(10), &bin(true, 40)), TypeOutcome::Same);
        assert!(converts(&c(&varchar(10), &bin(true, 80))));
        assert_eq!(
            c(&char_(false, 10, "utf8mb4"), &bin(false, 40)),
            TypeOutcome::Same
        );
        assert_eq!(
            c(
                &ty(text(LobSize::Regular)),
                &ty(TypeKind::Blob {
                    size: LobSize::Regular
                })
            ),
            TypeOutcome::Same
        );
        assert_eq!(
            rule(c(&bin(true, 10), &varchar(10))),
            Some(Rule::CharsetChange)
        );
        assert_eq!(
            rule(c(&varchar(10), &bin(false, 40))),
            Some(Rule::StringKindChange)
        );
        assert!(converts(&c(&bin(false, 4), &bin(true, 4))));
        assert_eq!(
            rule(c(&int(IntSize::Int), &varchar(30))),
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
        assert!(converts(&compare_types(Flavor::Mariadb, &dt(3), &dt(6))));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &dt(3), &dt(6))),
            Some(Rule::FspChange)
        );
        let time = |fsp| ty(TypeKind::Time { fsp });
        assert!(converts(&compare_types(
            Flavor::Mariadb,
            &time(3),
            &time(6)
        )));
        for fsp in [0, 3] {
            assert!(converts(&compare_types(
                Flavor::Mariadb,
                &ty(TypeKind::Date),
                &dt(fsp)
            )));
            assert_eq!(
                rule(compare_types(Flavor::Mysql, &ty(TypeKind::Date), &dt(fsp))),
                Some(Rule::TemporalTypeChange)
            );
        }
        let ts = ty(TypeKind::Timestamp { fsp: 0 });
        assert_eq!(
            rule(compare_types(Flavor::Mariadb, &dt(0), &ts)),
            Some(Rule::TemporalTypeChange)
        );
    }

    #[test]
    fn enums_keep_positions() {
        let e = |values: &[&str]| {
            ty(TypeKind::Enum {
                values: values.iter().map(|v| v.to_string()).collect(),
            })
        };
        let c = |w, a| compare_types(Flavor::Mysql, &w, &a);
        assert_eq!(c(e(&["a", "b"]), e(&["a", "b", "c"])), TypeOutcome::Same);
        assert_eq!(
            rule(c(e(&["a", "b"]), e(&["a", "x", "b"]))),
            Some(Rule::EnumValueInserted)
        );
        assert_eq!(
            rule(c(e(&["a", "b"]), e(&["a"]))),
            Some(Rule::EnumValueRemoved)
        );
        assert_eq!(
            rule(c(e(&["a", "b"]), e(&["b", "a"]))),
            Some(Rule::EnumValuesChanged)
        );
        let many: Vec<String> = (0..255).map(|i| format!("v{i}")).collect();
        let mut more = many.clone();
        more.push("x".into());
        assert!(converts(&c(
            ty(TypeKind::Enum { values: many }),
            ty(TypeKind::Enum { values: more })
        )));
        let s = |n: usize| {
            ty(TypeKind::Set {
                values: (0..n).map(|i| format!("s{i}")).collect(),
            })
        };
        assert_eq!(
            compare_types(Flavor::Mariadb, &s(3), &s(8)),
            TypeOutcome::Same
        );
        assert!(converts(&compare_types(Flavor::Mariadb, &s(8), &s(9))));
        let latin = ColumnType {
            charset: Some("latin1".into()),
            ..e(&["a", "b"])
        };
        assert_eq!(c(e(&["a", "b"]), latin), TypeOutcome::Same);
    }

    #[test]
    fn families_json_geometry() {
        let json = ty(TypeKind::Json);
        assert_eq!(
            rule(compare_types(
                Flavor::Mysql,
                &json,
                &ty(text(LobSize::Long))
            )),
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
        let bit = |width| ty(TypeKind::Bit { width });
        assert!(converts(&compare_types(Flavor::Mysql, &bit(8), &bit(16))));
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &bit(10), &bit(9))),
            Some(Rule::Narrowing)
        );
        let dec = ty(TypeKind::Decimal {
            precision: 10,
            scale: 2,
        });
        let double = ty(TypeKind::Float {
            double: true,
            digits: None,
        });
        assert_eq!(
            rule(compare_types(Flavor::Mysql, &dec, &double)),
            Some(Rule::TypeFamilyChange)
        );
    }
}
