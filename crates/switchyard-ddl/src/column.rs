//! Column definitions: `name type [attributes]`, as SHOW CREATE TABLE prints them and as
//! ALTER TABLE clauses write them.
//!
//! sqlparser (MySQL dialect) parses the type and the options. A short pre-pass over the tokens
//! first lifts out the MySQL and MariaDB attributes sqlparser 0.63 does not know (`ZEROFILL`,
//! `CHARSET`, `PERSISTENT`, `COMPRESSED`, `COLUMN_FORMAT`, `STORAGE`, `NATIONAL`, `LONG VARCHAR`,
//! the `BINARY` collation shorthand, system-versioning markers) and records what they mean.

use sqlparser::ast::{
    BinaryLength, CharacterLength, ColumnDef, ColumnOption, DataType, EnumMember, ExactNumberInfo,
    Expr, GeneratedExpressionMode, UnaryOperator, Value,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token as SqlToken;
use switchyard_plan::versions::Flavor;

use crate::lex::{Token, TokenKind, matching_paren, render};
use crate::model::{
    Column, ColumnDefault, ColumnType, Generated, IntSize, LobSize, ReferentialAction, TypeKind,
};

/// A column definition as written, before the table's default character set is applied.
#[derive(Clone, Debug)]
pub(crate) struct ColumnSpec {
    /// The column, with `ty.charset`/`ty.collation` as declared (possibly `None`).
    pub column: Column,
    /// True when the definition names a character set or collation.
    pub declared_charset: Option<String>,
    /// The declared collation.
    pub declared_collation: Option<String>,
    /// `CHAR(n) BINARY`: the binary collation of the column's character set.
    pub binary_collation: bool,
    /// Inline `PRIMARY KEY`.
    pub primary_key: bool,
    /// Inline `UNIQUE [KEY]` (or the SERIAL type).
    pub unique: bool,
    /// Inline `CHECK (…)` expressions.
    pub checks: Vec<String>,
    /// Row-start / row-end columns of a MariaDB system-versioned table.
    pub system_period: bool,
    /// A column-level `REFERENCES parent (col) …`: both servers make it a foreign key (with
    /// an index on the column when none exists).
    pub references: Option<crate::model::ForeignKey>,
}

impl ColumnSpec {
    /// Resolves the character set and collation the way the server does: a named collation
    /// implies its set; a named set without a collation takes that set's default collation
    /// (unknown here); nothing named inherits the table's defaults.
    pub(crate) fn resolve(
        &self,
        table_charset: Option<&str>,
        table_collation: Option<&str>,
    ) -> Column {
        let mut column = self.column.clone();
        if !column.ty.kind.has_charset() {
            return column;
        }
        let (charset, collation) = match (&self.declared_charset, &self.declared_collation) {
            (_, Some(collation)) => {
                let charset = self
                    .declared_charset
                    .clone()
                    .or_else(|| charset_of_collation(collation));
                (charset, Some(collation.clone()))
            }
            (Some(charset), None) => (Some(charset.clone()), None),
            (None, None) => (
                table_charset.map(str::to_owned),
                table_collation.map(str::to_owned),
            ),
        };
        let collation = if self.binary_collation {
            charset.as_ref().map(|c| {
                if c == "binary" {
                    "binary".to_owned()
                } else {
                    format!("{c}_bin")
                }
            })
        } else {
            collation
        };
        column.ty.charset = charset;
        column.ty.collation = collation;
        column
    }
}

/// A name without the quotes it may be written in (`'latin1'`, `` `utf8mb4_bin` ``).
fn unquote(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '\'' | '"' | '`'))
        .collect()
}

/// Lowercases a character-set name and reads `utf8` as `utf8mb3`.
pub(crate) fn normalize_charset(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower == "utf8" {
        "utf8mb3".to_owned()
    } else {
        lower
    }
}

/// Lowercases a collation name and reads `utf8_…` as `utf8mb3_…`.
pub(crate) fn normalize_collation(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_prefix("utf8_") {
        Some(rest) => format!("utf8mb3_{rest}"),
        None => lower,
    }
}

/// The character set a collation belongs to (the part before the first `_`).
pub(crate) fn charset_of_collation(collation: &str) -> Option<String> {
    if collation == "binary" {
        return Some("binary".to_owned());
    }
    collation
        .split('_')
        .next()
        .filter(|s| !s.is_empty())
        .map(normalize_charset)
}

/// What the pre-pass found.
#[derive(Default)]
struct Lifted {
    compressed: bool,
    /// `CHAR(n) BYTE` / `VARCHAR(n) BYTE`: BINARY / VARBINARY.
    byte: bool,
    national: bool,
    binary_collation: bool,
    system_period: bool,
}

const STRING_TYPE_WORDS: &[&str] = &[
    "char",
    "character",
    "varchar",
    "nchar",
    "nvarchar",
    "text",
    "tinytext",
    "mediumtext",
    "longtext",
    "enum",
    "set",
    "long",
    "national",
];

/// Rewrites the attribute tokens of a column definition into a form sqlparser reads.
fn prepass(tokens: &[Token]) -> (Vec<Token>, Lifted) {
    let mut lifted = Lifted::default();
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let word = |text: &str, like: &Token| Token {
        kind: TokenKind::Word,
        text: text.to_owned(),
        value: text.to_owned(),
        start: like.start,
        end: like.end,
    };
    let is_string_type = tokens.first().is_some_and(|t| {
        t.kind == TokenKind::Word
            && STRING_TYPE_WORDS
                .iter()
                .any(|w| t.text.eq_ignore_ascii_case(w))
    });
    let has_sign = tokens
        .iter()
        .any(|t| t.is_word("UNSIGNED") || t.is_word("SIGNED"));
    let mut i = 0;
    // The type itself: NATIONAL prefix, LONG VARCHAR / LONG VARBINARY.
    if tokens.first().is_some_and(|t| t.is_word("NATIONAL")) {
        lifted.national = true;
        i = 1;
    }
    if tokens.get(i).is_some_and(|t| t.is_word("LONG")) {
        let next = tokens.get(i + 1);
        if next.is_some_and(|t| t.is_word("VARBINARY")) {
            out.push(word("MEDIUMBLOB", &tokens[i]));
            i += 2;
        } else if next.is_some_and(|t| t.is_word("VARCHAR")) {
            out.push(word("MEDIUMTEXT", &tokens[i]));
            i += 2;
        } else {
            out.push(word("MEDIUMTEXT", &tokens[i]));
            i += 1;
        }
    }
    let mut first_word_seen = !out.is_empty();
    while i < tokens.len() {
        let token = &tokens[i];
        // Copy parenthesised groups whole (type arguments, expressions).
        if token.is_punct('(') {
            let close = matching_paren(tokens, i).unwrap_or(tokens.len() - 1);
            out.extend_from_slice(&tokens[i..=close]);
            i = close + 1;
            continue;
        }
        let is_type_word = !first_word_seen;
        first_word_seen = true;
        if is_type_word {
            // FIXED is a DECIMAL alias sqlparser does not know.
            if token.is_word("FIXED") {
                out.push(word("DECIMAL", token));
            } else {
                out.push(token.clone());
            }
            i += 1;
            continue;
        }
        // `CHARACTER SET ascii` names the set; `CHAR(3) ASCII` is the latin1 shorthand.
        let names_a_set = out
            .last()
            .is_some_and(|t| t.is_word("SET") || t.is_word("CHARACTER") || t.is_word("COLLATE"));
        if token.is_word("ZEROFILL") {
            if !has_sign {
                out.push(word("UNSIGNED", token));
            }
            i += 1;
        } else if token.is_word("CHARSET") {
            out.push(word("CHARACTER", token));
            out.push(word("SET", token));
            i += 1;
        } else if token.is_word("PERSISTENT") {
            out.push(word("STORED", token));
            i += 1;
        } else if token.is_word("COLUMN_FORMAT") || token.is_word("STORAGE") {
            i += 2;
        } else if token.is_word("COMPRESSED") {
            lifted.compressed = true;
            i += 1;
            if tokens.get(i).is_some_and(|t| t.is_punct('=')) {
                i += 2;
            }
        } else if token.is_word("ENGINE_ATTRIBUTE") || token.is_word("SECONDARY_ENGINE_ATTRIBUTE") {
            i += 1;
            if tokens.get(i).is_some_and(|t| t.is_punct('=')) {
                i += 1;
            }
            i += 1;
        } else if token.is_word("VISIBLE") {
            i += 1;
        } else if (token.is_word("WITH") || token.is_word("WITHOUT"))
            && tokens.get(i + 1).is_some_and(|t| t.is_word("SYSTEM"))
            && tokens.get(i + 2).is_some_and(|t| t.is_word("VERSIONING"))
        {
            i += 3;
        } else if token.is_word("GENERATED")
            && tokens.get(i + 1).is_some_and(|t| t.is_word("ALWAYS"))
            && tokens.get(i + 2).is_some_and(|t| t.is_word("AS"))
            && tokens.get(i + 3).is_some_and(|t| t.is_word("ROW"))
        {
            lifted.system_period = true;
            i += 5;
        } else if token.is_word("BINARY") && is_string_type {
            lifted.binary_collation = true;
            i += 1;
        } else if token.is_word("BYTE") && is_string_type {
            lifted.byte = true;
            i += 1;
        } else if token.is_word("ASCII") && is_string_type && !names_a_set {
            out.push(word("CHARACTER", token));
            out.push(word("SET", token));
            out.push(word("latin1", token));
            i += 1;
        } else if token.is_word("UNICODE") && is_string_type && !names_a_set {
            out.push(word("CHARACTER", token));
            out.push(word("SET", token));
            out.push(word("ucs2", token));
            i += 1;
        } else {
            out.push(token.clone());
            i += 1;
        }
    }
    if lifted.byte
        && let Some(first) = out.first_mut()
    {
        if first.is_word("CHAR") || first.is_word("CHARACTER") {
            *first = word("BINARY", first);
        } else if first.is_word("VARCHAR") {
            *first = word("VARBINARY", first);
        }
    }
    (out, lifted)
}

/// Parses `name type [attributes]` (the tokens of one column definition).
pub(crate) fn parse_column(flavor: Flavor, tokens: &[Token]) -> Result<ColumnSpec, String> {
    let Some((name_token, rest)) = tokens.split_first() else {
        return Err("the column definition is empty".to_owned());
    };
    if !name_token.is_identifier() {
        return Err(format!(
            "expected a column name, found `{}`",
            name_token.text
        ));
    }
    if rest.is_empty() {
        return Err(format!("column `{}` has no type", name_token.value));
    }
    let (rewritten, lifted) = prepass(rest);
    let text = format!(
        "`{}` {}",
        name_token.value.replace('`', "``"),
        render(&rewritten)
    );
    let dialect = MySqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(&text)
        .map_err(|e| e.to_string())?;
    let def = parser.parse_column_def().map_err(|e| e.to_string())?;
    let next = parser.peek_token();
    if next.token != SqlToken::EOF {
        return Err(format!(
            "unexpected `{}` after the column definition",
            next.token
        ));
    }
    build_column(flavor, name_token.value.clone(), &def, lifted)
}

fn build_column(
    flavor: Flavor,
    name: String,
    def: &ColumnDef,
    lifted: Lifted,
) -> Result<ColumnSpec, String> {
    let mapped = map_type(flavor, &def.data_type)?;
    let mut column = Column {
        name,
        ty: ColumnType {
            kind: mapped.kind,
            unsigned: mapped.unsigned,
            charset: None,
            collation: None,
            compressed: lifted.compressed,
            srid: None,
        },
        nullable: true,
        default: ColumnDefault::None,
        on_update: None,
        auto_increment: mapped.serial,
        generated: None,
        invisible: false,
        comment: None,
        id: 0,
    };
    let mut spec = ColumnSpec {
        column: column.clone(),
        declared_charset: None,
        declared_collation: None,
        binary_collation: lifted.binary_collation,
        primary_key: false,
        unique: mapped.serial,
        checks: Vec::new(),
        system_period: lifted.system_period,
        references: None,
    };
    if mapped.serial {
        column.nullable = false;
    }
    if lifted.national {
        spec.declared_charset = Some("utf8mb3".to_owned());
    }
    if let Some(charset) = mapped.charset {
        spec.declared_charset = Some(charset.to_owned());
    }
    if let Some(collation) = mapped.collation {
        spec.declared_collation = Some(collation.to_owned());
    }
    if mapped.json_check {
        spec.checks.push(format!("json_valid(`{}`)", column.name));
    }
    let mut explicit_null = None;
    for option in &def.options {
        match &option.option {
            ColumnOption::Null => explicit_null = Some(true),
            ColumnOption::NotNull => explicit_null = Some(false),
            ColumnOption::Default(expr) => column.default = default_of(expr),
            ColumnOption::OnUpdate(expr) => column.on_update = Some(expr.to_string()),
            ColumnOption::DialectSpecific(tokens) => {
                let words: Vec<String> = tokens
                    .iter()
                    .map(|t| t.to_string().to_ascii_uppercase())
                    .collect();
                if words.iter().any(|w| w == "AUTO_INCREMENT") {
                    column.auto_increment = true;
                } else {
                    return Err(format!(
                        "unsupported column attribute `{}`",
                        words.join(" ")
                    ));
                }
            }
            ColumnOption::PrimaryKey(_) => spec.primary_key = true,
            ColumnOption::Unique(_) => spec.unique = true,
            ColumnOption::Check(check) => spec.checks.push(check.expr.to_string()),
            ColumnOption::CharacterSet(name) => {
                spec.declared_charset = Some(normalize_charset(&unquote(&name.to_string())))
            }
            ColumnOption::Collation(name) => {
                spec.declared_collation = Some(normalize_collation(&unquote(&name.to_string())));
            }
            ColumnOption::Comment(text) => column.comment = Some(text.clone()),
            ColumnOption::Generated {
                generation_expr: Some(expr),
                generation_expr_mode,
                ..
            } => {
                column.generated = Some(Generated {
                    expression: expr.to_string(),
                    stored: matches!(generation_expr_mode, Some(GeneratedExpressionMode::Stored)),
                });
            }
            ColumnOption::Invisible => column.invisible = true,
            ColumnOption::Srid(expr) => {
                column.ty.srid = Some(
                    expr.to_string()
                        .parse()
                        .map_err(|_| format!("SRID `{expr}` is not a number"))?,
                );
            }
            ColumnOption::ForeignKey(fk) => {
                let action = |a: &Option<sqlparser::ast::ReferentialAction>| {
                    a.as_ref().map(|a| {
                        use sqlparser::ast::ReferentialAction as A;
                        match a {
                            A::Restrict => ReferentialAction::Restrict,
                            A::Cascade => ReferentialAction::Cascade,
                            A::SetNull => ReferentialAction::SetNull,
                            A::NoAction => ReferentialAction::NoAction,
                            A::SetDefault => ReferentialAction::SetDefault,
                        }
                    })
                };
                spec.references = Some(crate::model::ForeignKey {
                    name: String::new(),
                    columns: vec![column.name.clone()],
                    referenced_table: unquote(&fk.foreign_table.to_string()),
                    referenced_columns: fk
                        .referred_columns
                        .iter()
                        .map(|c| c.value.clone())
                        .collect(),
                    on_delete: action(&fk.on_delete),
                    on_update: action(&fk.on_update),
                });
            }
            other => return Err(format!("unsupported column attribute `{other}`")),
        }
    }
    // MariaDB before 10.10 defaults to explicit_defaults_for_timestamp=OFF: a TIMESTAMP written
    // without NULL is NOT NULL, and without DEFAULT takes CURRENT_TIMESTAMP (the first one) or
    // a zero date. Assume the varying default, the stricter reading.
    if flavor == Flavor::Mariadb
        && matches!(column.ty.kind, TypeKind::Timestamp { .. })
        && explicit_null.is_none()
        && column.generated.is_none()
        && !spec.system_period
    {
        explicit_null = Some(false);
        if column.default == ColumnDefault::None {
            column.default = ColumnDefault::Value {
                text: "current_timestamp() (implicit with explicit_defaults_for_timestamp=OFF; write NULL DEFAULT NULL to avoid it)"
                    .to_owned(),
                deterministic: false,
            };
        }
    }
    if spec.system_period {
        column.generated = Some(Generated {
            expression: "ROW START/END".to_owned(),
            stored: true,
        });
        column.nullable = false;
    }
    // Both servers make an AUTO_INCREMENT column NOT NULL unless it is declared NULL.
    column.nullable = match explicit_null {
        Some(nullable) => nullable,
        None => !(spec.primary_key || mapped.serial || spec.system_period || column.auto_increment),
    };
    if spec.primary_key && explicit_null == Some(true) {
        return Err(format!(
            "column `{}` is declared NULL and PRIMARY KEY: a primary key column is NOT NULL",
            column.name
        ));
    }
    if column.generated.is_some() && !matches!(column.default, ColumnDefault::None) {
        return Err(format!(
            "generated column `{}` cannot have a DEFAULT",
            column.name
        ));
    }
    if let Some(charset) = &spec.declared_charset
        && !column.ty.kind.has_charset()
        && !matches!(column.ty.kind, TypeKind::Json)
    {
        return Err(format!(
            "type {} cannot have CHARACTER SET {charset}",
            column.ty.kind
        ));
    }
    if column.ty.kind.family() == crate::model::TypeFamily::Binary {
        column.ty.charset = Some("binary".to_owned());
        column.ty.collation = Some("binary".to_owned());
    }
    if column.ty.kind.has_charset() {
        column.ty.charset = spec.declared_charset.clone();
        column.ty.collation = spec.declared_collation.clone();
    }
    spec.column = column;
    Ok(spec)
}

struct MappedType {
    kind: TypeKind,
    unsigned: bool,
    charset: Option<&'static str>,
    collation: Option<&'static str>,
    /// The SERIAL alias: BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE.
    serial: bool,
    /// MariaDB's JSON alias carries a `json_valid` check.
    json_check: bool,
}

impl MappedType {
    fn of(kind: TypeKind) -> Self {
        MappedType {
            kind,
            unsigned: false,
            charset: None,
            collation: None,
            serial: false,
            json_check: false,
        }
    }
    fn unsigned(kind: TypeKind) -> Self {
        MappedType {
            unsigned: true,
            ..MappedType::of(kind)
        }
    }
}

fn int(size: IntSize) -> TypeKind {
    TypeKind::Integer { size }
}

fn to_u32(value: u64, what: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{what} {value} is too large"))
}

fn fsp(value: Option<u64>) -> Result<u8, String> {
    match value {
        None => Ok(0),
        Some(p) if p <= 6 => Ok(u8::try_from(p).unwrap_or(6)),
        Some(p) => Err(format!("fractional-second precision {p} is larger than 6")),
    }
}

fn decimal(info: &ExactNumberInfo) -> Result<TypeKind, String> {
    let (precision, scale) = match info {
        ExactNumberInfo::None => (10, 0),
        ExactNumberInfo::Precision(p) => (to_u32(*p, "DECIMAL precision")?, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (
            to_u32(*p, "DECIMAL precision")?,
            u32::try_from(*s).map_err(|_| format!("DECIMAL scale {s} is out of range"))?,
        ),
    };
    if scale > precision {
        return Err(format!(
            "DECIMAL({precision},{scale}) has more scale than precision"
        ));
    }
    Ok(TypeKind::Decimal { precision, scale })
}

fn float(info: &ExactNumberInfo, double: bool) -> Result<TypeKind, String> {
    Ok(match info {
        ExactNumberInfo::None => TypeKind::Float {
            double,
            digits: None,
        },
        // FLOAT(p): p ≤ 24 is FLOAT, 25 ≤ p ≤ 53 is DOUBLE.
        ExactNumberInfo::Precision(p) if !double => TypeKind::Float {
            double: *p > 24,
            digits: None,
        },
        ExactNumberInfo::Precision(p) => TypeKind::Float {
            double,
            digits: Some((to_u32(*p, "precision")?, 0)),
        },
        ExactNumberInfo::PrecisionAndScale(m, d) => TypeKind::Float {
            double,
            digits: Some((
                to_u32(*m, "precision")?,
                u32::try_from(*d).map_err(|_| "negative scale".to_owned())?,
            )),
        },
    })
}

fn char_length(length: &Option<CharacterLength>, default: u32) -> Result<u32, String> {
    match length {
        None => Ok(default),
        Some(CharacterLength::IntegerLength { length, .. }) => to_u32(*length, "length"),
        Some(CharacterLength::Max) => Err("MAX is not a MySQL length".to_owned()),
    }
}

fn lob_size_for_bytes(bytes: u64) -> LobSize {
    match bytes {
        0..=255 => LobSize::Tiny,
        256..=65_535 => LobSize::Regular,
        65_536..=16_777_215 => LobSize::Medium,
        _ => LobSize::Long,
    }
}

const GEOMETRY_TYPES: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

/// Types compared only for identity: MariaDB's plugin types and vector types.
const OTHER_TYPES: &[&str] = &["inet4", "inet6", "vector", "xmltype"];

fn map_type(flavor: Flavor, data_type: &DataType) -> Result<MappedType, String> {
    use DataType as D;
    Ok(match data_type {
        D::TinyInt(_) | D::Bool | D::Boolean => MappedType::of(int(IntSize::Tiny)),
        D::TinyIntUnsigned(_) | D::UTinyInt => MappedType::unsigned(int(IntSize::Tiny)),
        D::SmallInt(_) | D::Int2(_) => MappedType::of(int(IntSize::Small)),
        D::SmallIntUnsigned(_) | D::Int2Unsigned(_) | D::USmallInt => {
            MappedType::unsigned(int(IntSize::Small))
        }
        D::MediumInt(_) => MappedType::of(int(IntSize::Medium)),
        D::MediumIntUnsigned(_) => MappedType::unsigned(int(IntSize::Medium)),
        D::Int(_) | D::Integer(_) | D::Int4(_) => MappedType::of(int(IntSize::Int)),
        D::IntUnsigned(_) | D::IntegerUnsigned(_) | D::Int4Unsigned(_) => {
            MappedType::unsigned(int(IntSize::Int))
        }
        D::BigInt(_) | D::Int8(_) => MappedType::of(int(IntSize::Big)),
        D::BigIntUnsigned(_) | D::Int8Unsigned(_) | D::UBigInt => {
            MappedType::unsigned(int(IntSize::Big))
        }
        D::Decimal(info) | D::Numeric(info) | D::Dec(info) => MappedType::of(decimal(info)?),
        D::DecimalUnsigned(info) | D::DecUnsigned(info) => MappedType::unsigned(decimal(info)?),
        D::Float(info) => MappedType::of(float(info, false)?),
        D::FloatUnsigned(info) => MappedType::unsigned(float(info, false)?),
        D::Float4 => MappedType::of(TypeKind::Float {
            double: false,
            digits: None,
        }),
        D::Double(info) => MappedType::of(float(info, true)?),
        D::DoubleUnsigned(info) => MappedType::unsigned(float(info, true)?),
        D::Real | D::DoublePrecision | D::Float8 => MappedType::of(TypeKind::Float {
            double: true,
            digits: None,
        }),
        D::RealUnsigned | D::DoublePrecisionUnsigned => MappedType::unsigned(TypeKind::Float {
            double: true,
            digits: None,
        }),
        D::Bit(width) => MappedType::of(TypeKind::Bit {
            width: to_u32(width.unwrap_or(1), "BIT width")?,
        }),
        D::Char(length) | D::Character(length) => MappedType::of(TypeKind::Char {
            varying: false,
            length: char_length(length, 1)?,
        }),
        D::Varchar(length) | D::CharacterVarying(length) | D::CharVarying(length) => {
            if length.is_none() {
                return Err("VARCHAR needs a length".to_owned());
            }
            MappedType::of(TypeKind::Char {
                varying: true,
                length: char_length(length, 0)?,
            })
        }
        D::Nvarchar(length) => MappedType {
            charset: Some("utf8mb3"),
            ..MappedType::of(TypeKind::Char {
                varying: true,
                length: char_length(length, 0)?,
            })
        },
        D::Binary(length) => MappedType::of(TypeKind::Binary {
            varying: false,
            length: to_u32(length.unwrap_or(1), "length")?,
        }),
        D::Varbinary(length) => match length {
            Some(BinaryLength::IntegerLength { length }) => MappedType::of(TypeKind::Binary {
                varying: true,
                length: to_u32(*length, "length")?,
            }),
            _ => return Err("VARBINARY needs a length".to_owned()),
        },
        D::TinyText => MappedType::of(TypeKind::Text {
            size: LobSize::Tiny,
        }),
        D::Text => MappedType::of(TypeKind::Text {
            size: LobSize::Regular,
        }),
        D::MediumText => MappedType::of(TypeKind::Text {
            size: LobSize::Medium,
        }),
        D::LongText => MappedType::of(TypeKind::Text {
            size: LobSize::Long,
        }),
        D::TinyBlob => MappedType::of(TypeKind::Blob {
            size: LobSize::Tiny,
        }),
        D::Blob(None) => MappedType::of(TypeKind::Blob {
            size: LobSize::Regular,
        }),
        D::Blob(Some(bytes)) => MappedType::of(TypeKind::Blob {
            size: lob_size_for_bytes(*bytes),
        }),
        D::MediumBlob => MappedType::of(TypeKind::Blob {
            size: LobSize::Medium,
        }),
        D::LongBlob => MappedType::of(TypeKind::Blob {
            size: LobSize::Long,
        }),
        D::Date => MappedType::of(TypeKind::Date),
        D::Time(precision, _) => MappedType::of(TypeKind::Time {
            fsp: fsp(*precision)?,
        }),
        D::Datetime(precision) => MappedType::of(TypeKind::Datetime {
            fsp: fsp(*precision)?,
        }),
        D::Timestamp(precision, _) => MappedType::of(TypeKind::Timestamp {
            fsp: fsp(*precision)?,
        }),
        D::Enum(members, _) => MappedType::of(TypeKind::Enum {
            values: members
                .iter()
                .map(|m| match m {
                    EnumMember::Name(name) | EnumMember::NamedValue(name, _) => name.clone(),
                })
                .collect(),
        }),
        D::Set(values) => MappedType::of(TypeKind::Set {
            values: values.clone(),
        }),
        D::JSON => match flavor {
            Flavor::Mysql => MappedType::of(TypeKind::Json),
            // MariaDB's JSON is an alias: LONGTEXT in utf8mb4_bin with CHECK (json_valid(col)).
            Flavor::Mariadb => MappedType {
                charset: Some("utf8mb4"),
                collation: Some("utf8mb4_bin"),
                json_check: true,
                ..MappedType::of(TypeKind::Text {
                    size: LobSize::Long,
                })
            },
        },
        D::Uuid => MappedType::of(TypeKind::Other {
            name: "uuid".to_owned(),
        }),
        D::Custom(name, args) => {
            let lower = name.to_string().replace('`', "").to_ascii_lowercase();
            let arg = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
            match lower.as_str() {
                "year" => MappedType::of(TypeKind::Year),
                "int1" => MappedType::of(int(IntSize::Tiny)),
                "int3" | "middleint" => MappedType::of(int(IntSize::Medium)),
                "serial" => MappedType {
                    serial: true,
                    ..MappedType::unsigned(int(IntSize::Big))
                },
                "nchar" => MappedType {
                    charset: Some("utf8mb3"),
                    ..MappedType::of(TypeKind::Char {
                        varying: false,
                        length: to_u32(arg(0).unwrap_or(1), "length")?,
                    })
                },
                "long" => MappedType::of(TypeKind::Text {
                    size: LobSize::Medium,
                }),
                // TEXT(n): the smallest TEXT type that holds n characters of up to 4 bytes.
                "text" => MappedType::of(TypeKind::Text {
                    size: arg(0).map_or(LobSize::Regular, |n| {
                        lob_size_for_bytes(n.saturating_mul(4))
                    }),
                }),
                geometry if GEOMETRY_TYPES.contains(&geometry) => {
                    MappedType::of(TypeKind::Geometry {
                        name: if geometry == "geomcollection" {
                            "geometrycollection".to_owned()
                        } else {
                            lower
                        },
                    })
                }
                known if OTHER_TYPES.contains(&known) => {
                    let mut full = lower;
                    if !args.is_empty() {
                        full = format!("{full}({})", args.join(","));
                    }
                    MappedType::of(TypeKind::Other { name: full })
                }
                unknown => return Err(format!("switchyard does not know the type `{unknown}`")),
            }
        }
        other => return Err(format!("switchyard does not know the type `{other}`")),
    })
}

/// Reads a DEFAULT expression.
pub(crate) fn default_of(expr: &Expr) -> ColumnDefault {
    if matches!(expr, Expr::Value(v) if matches!(v.value, Value::Null)) {
        return ColumnDefault::Null;
    }
    let text = match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => canonical_number(n).unwrap_or_else(|| n.clone()),
            Value::SingleQuotedString(s) => canonical_number(s).unwrap_or_else(|| expr.to_string()),
            _ => expr.to_string(),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } => match inner.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => {
                    canonical_number(&format!("-{n}")).unwrap_or_else(|| expr.to_string())
                }
                _ => expr.to_string(),
            },
            _ => expr.to_string(),
        },
        _ => expr.to_string(),
    };
    ColumnDefault::Value {
        text,
        deterministic: is_constant(expr),
    }
}

/// A plain decimal number in canonical form (`'0.00'` and `0` are both `0`), so that the
/// quoted defaults MySQL prints compare equal to the unquoted ones users write.
fn canonical_number(text: &str) -> Option<String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !plain(whole) || !plain(fraction) {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let mut out = if whole.is_empty() {
        "0".to_owned()
    } else {
        whole.to_owned()
    };
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    if negative && out != "0" {
        out.insert(0, '-');
    }
    Some(out)
}

/// True for constant expressions: literals, signs, arithmetic and parentheses over literals.
/// Any function call (CURRENT_TIMESTAMP, UUID(), RAND(), NEXTVAL(…)) is treated as varying.
fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) | Expr::TypedString { .. } => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => is_constant(expr),
        Expr::Nested(inner) => is_constant(inner),
        Expr::BinaryOp { left, right, .. } => is_constant(left) && is_constant(right),
        Expr::Identifier(ident) => {
            // TRUE/FALSE may come through as identifiers.
            ident.quote_style.is_none()
                && (ident.value.eq_ignore_ascii_case("true")
                    || ident.value.eq_ignore_ascii_case("false"))
        }
        _ => false,
    }
}

/// Parses a default value written in `ALTER COLUMN … SET DEFAULT <value>`.
pub(crate) fn parse_default(tokens: &[Token]) -> Result<ColumnDefault, String> {
    let text = render(tokens);
    let dialect = MySqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(&text)
        .map_err(|e| e.to_string())?;
    let expr = parser.parse_expr().map_err(|e| e.to_string())?;
    let next = parser.peek_token();
    if next.token != SqlToken::EOF {
        return Err(format!(
            "unexpected `{}` after the default value",
            next.token
        ));
    }
    Ok(default_of(&expr))
}

/// A normalised form of an expression for comparing constraints: lowercase, without
/// backticks and whitespace.
pub(crate) fn normalize_expression(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '`')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::{ExecutableComments, lex};

    fn column(flavor: Flavor, text: &str) -> ColumnSpec {
        let lexed = lex(text, ExecutableComments::Unwrap).unwrap();
        parse_column(flavor, &lexed.tokens).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn display_widths_and_aliases_normalise() {
        let a = column(Flavor::Mariadb, "`id` int(11) NOT NULL AUTO_INCREMENT");
        let b = column(Flavor::Mysql, "id INTEGER NOT NULL AUTO_INCREMENT");
        assert_eq!(a.column.ty, b.column.ty);
        assert!(a.column.auto_increment && !a.column.nullable);
        assert_eq!(
            column(Flavor::Mysql, "b BOOLEAN").column.ty.kind,
            int(IntSize::Tiny)
        );
        assert_eq!(
            column(Flavor::Mysql, "n NUMERIC(5)").column.ty.kind,
            TypeKind::Decimal {
                precision: 5,
                scale: 0
            }
        );
        assert_eq!(
            column(Flavor::Mysql, "r REAL").column.ty.kind,
            TypeKind::Float {
                double: true,
                digits: None
            }
        );
    }

    #[test]
    fn zerofill_implies_unsigned_and_charset_spelling_is_accepted() {
        let z = column(
            Flavor::Mariadb,
            "`z` int(10) unsigned zerofill DEFAULT NULL",
        );
        assert!(z.column.ty.unsigned);
        assert!(column(Flavor::Mysql, "z INT ZEROFILL").column.ty.unsigned);
        let c = column(Flavor::Mariadb, "c varchar(10) CHARSET latin1");
        assert_eq!(c.declared_charset.as_deref(), Some("latin1"));
    }

    #[test]
    fn mariadb_json_is_longtext_with_a_check() {
        let j = column(Flavor::Mariadb, "j JSON");
        assert_eq!(
            j.column.ty.kind,
            TypeKind::Text {
                size: LobSize::Long
            }
        );
        assert_eq!(j.declared_collation.as_deref(), Some("utf8mb4_bin"));
        assert_eq!(j.checks, vec!["json_valid(`j`)".to_owned()]);
        assert_eq!(
            column(Flavor::Mysql, "j JSON").column.ty.kind,
            TypeKind::Json
        );
    }

    #[test]
    fn numeric_defaults_compare_by_value() {
        let quoted = column(Flavor::Mysql, "p decimal(10,2) NOT NULL DEFAULT '0.00'")
            .column
            .default;
        let bare = column(Flavor::Mariadb, "p decimal(10,2) NOT NULL DEFAULT 0")
            .column
            .default;
        assert_eq!(quoted, bare);
        let negative = column(Flavor::Mysql, "a INT DEFAULT -1.50").column.default;
        assert!(matches!(negative, ColumnDefault::Value { ref text, .. } if text == "-1.5"));
        let text = column(Flavor::Mysql, "a VARCHAR(3) DEFAULT 'abc'")
            .column
            .default;
        assert!(matches!(text, ColumnDefault::Value { ref text, .. } if text == "'abc'"));
    }

    #[test]
    fn defaults_are_classified() {
        assert_eq!(
            column(Flavor::Mysql, "a INT DEFAULT NULL").column.default,
            ColumnDefault::Null
        );
        let literal = column(Flavor::Mysql, "a INT NOT NULL DEFAULT -1")
            .column
            .default;
        assert!(matches!(
            literal,
            ColumnDefault::Value {
                deterministic: true,
                ..
            }
        ));
        for varying in [
            "a DATETIME(6) NOT NULL DEFAULT current_timestamp(6)",
            "a TIMESTAMP DEFAULT CURRENT_TIMESTAMP",
            "a VARCHAR(36) DEFAULT (uuid())",
            "a INT DEFAULT (rand() * 10)",
        ] {
            let default = column(Flavor::Mysql, varying).column.default;
            assert!(
                matches!(
                    default,
                    ColumnDefault::Value {
                        deterministic: false,
                        ..
                    }
                ),
                "{varying}"
            );
        }
    }

    #[test]
    fn generated_columns_and_mariadb_persistent() {
        let g = column(Flavor::Mariadb, "g int(11) AS (`a` + 1) PERSISTENT");
        assert!(g.column.generated.as_ref().is_some_and(|g| g.stored));
        let v = column(Flavor::Mysql, "v INT GENERATED ALWAYS AS (a * 2) VIRTUAL");
        assert!(v.column.generated.as_ref().is_some_and(|g| !g.stored));
    }

    #[test]
    fn inline_keys_checks_and_collations() {
        let c = column(
            Flavor::Mysql,
            "c VARCHAR(10) COLLATE utf8_general_ci UNIQUE KEY CHECK (c <> '')",
        );
        assert!(c.unique);
        assert_eq!(c.declared_collation.as_deref(), Some("utf8mb3_general_ci"));
        assert_eq!(c.checks.len(), 1);
        let p = column(Flavor::Mysql, "p INT PRIMARY KEY");
        assert!(p.primary_key && !p.column.nullable);
        let resolved = c.resolve(Some("latin1"), Some("latin1_swedish_ci"));
        assert_eq!(resolved.ty.charset.as_deref(), Some("utf8mb3"));
    }

    #[test]
    fn charset_inheritance_follows_the_server() {
        let inherit = column(Flavor::Mysql, "c VARCHAR(10)")
            .resolve(Some("utf8mb4"), Some("utf8mb4_0900_ai_ci"));
        assert_eq!(inherit.ty.collation.as_deref(), Some("utf8mb4_0900_ai_ci"));
        let own_set = column(Flavor::Mysql, "c VARCHAR(10) CHARACTER SET latin1")
            .resolve(Some("utf8mb4"), None);
        assert_eq!(
            (
                own_set.ty.charset.as_deref(),
                own_set.ty.collation.as_deref()
            ),
            (Some("latin1"), None)
        );
        let binary = column(Flavor::Mysql, "c CHAR(3) BINARY").resolve(Some("latin1"), None);
        assert_eq!(binary.ty.collation.as_deref(), Some("latin1_bin"));
        let blob = column(Flavor::Mysql, "b VARBINARY(3)").resolve(Some("latin1"), None);
        assert_eq!(blob.ty.charset.as_deref(), Some("binary"));
    }

    #[test]
    fn geometry_srid_and_other_types() {
        let p = column(Flavor::Mysql, "p point NOT NULL /*!80003 SRID 4326 */");
        assert_eq!(p.column.ty.srid, Some(4326));
        assert_eq!(
            p.column.ty.kind,
            TypeKind::Geometry {
                name: "point".into()
            }
        );
        assert_eq!(
            column(Flavor::Mariadb, "u inet6").column.ty.kind,
            TypeKind::Other {
                name: "inet6".into()
            }
        );
        assert_eq!(
            column(Flavor::Mysql, "l LONG VARCHAR").column.ty.kind,
            TypeKind::Text {
                size: LobSize::Medium
            }
        );
        assert_eq!(
            column(Flavor::Mysql, "y year(4)").column.ty.kind,
            TypeKind::Year
        );
    }

    #[test]
    fn bad_definitions_are_errors() {
        for bad in [
            "a",
            "a NOT_A_TYPE(",
            "a INT NULL PRIMARY KEY",
            "a INT AS (b) DEFAULT 1",
            "a INT CHARACTER SET latin1",
        ] {
            let lexed = lex(bad, ExecutableComments::Unwrap).unwrap();
            assert!(parse_column(Flavor::Mysql, &lexed.tokens).is_err(), "{bad}");
        }
    }
}
