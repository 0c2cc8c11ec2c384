//! The table model: what a row image looks like and which constraints the applier enforces.
//!
//! Only what matters to row-based replication and to online DDL is modelled: the ordered
//! columns with a normalised type, nullability, default, generation, and the keys, foreign keys
//! and checks the applier enforces. Storage details that do not change a row image
//! (partitioning, index visibility, comments) are kept only as far as a clause can change them.

use std::fmt;

use serde::Serialize;

/// A table name, optionally qualified by its schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableName {
    /// The schema (database), when the text names one.
    pub schema: Option<String>,
    /// The table's own name.
    pub name: String,
}

impl TableName {
    /// True when both name the same table: the table names must be equal (letter case
    /// counts, as on a server with `lower_case_table_names=0`), and the schemas too when both
    /// texts name one.
    pub fn matches(&self, other: &TableName) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "`{schema}`.`{}`", self.name),
            None => write!(f, "`{}`", self.name),
        }
    }
}

/// Integer widths, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntSize {
    /// TINYINT (1 byte).
    Tiny,
    /// SMALLINT (2 bytes).
    Small,
    /// MEDIUMINT (3 bytes).
    Medium,
    /// INT (4 bytes).
    Int,
    /// BIGINT (8 bytes).
    Big,
}

impl IntSize {
    /// The SQL name of the type.
    pub fn sql_name(self) -> &'static str {
        match self {
            IntSize::Tiny => "TINYINT",
            IntSize::Small => "SMALLINT",
            IntSize::Medium => "MEDIUMINT",
            IntSize::Int => "INT",
            IntSize::Big => "BIGINT",
        }
    }
}

/// Sizes of the TEXT and BLOB types, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LobSize {
    /// TINYTEXT / TINYBLOB (up to 255 bytes).
    Tiny,
    /// TEXT / BLOB (up to 64 KiB).
    Regular,
    /// MEDIUMTEXT / MEDIUMBLOB (up to 16 MiB).
    Medium,
    /// LONGTEXT / LONGBLOB (up to 4 GiB).
    Long,
}

impl LobSize {
    /// The most bytes a value of this size holds.
    pub fn capacity(self) -> u64 {
        match self {
            LobSize::Tiny => 255,
            LobSize::Regular => 65_535,
            LobSize::Medium => 16_777_215,
            LobSize::Long => 4_294_967_295,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            LobSize::Tiny => "TINY",
            LobSize::Regular => "",
            LobSize::Medium => "MEDIUM",
            LobSize::Long => "LONG",
        }
    }
}

/// A column type, normalised: aliases resolved (`INTEGER` → INT, `BOOL` → TINYINT, `NUMERIC`
/// → DECIMAL, `REAL` → DOUBLE), display widths (`int(11)`) dropped because they do not change
/// what is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TypeKind {
    /// TINYINT … BIGINT.
    Integer {
        /// The width.
        size: IntSize,
    },
    /// DECIMAL(M,D).
    Decimal {
        /// M, the number of digits.
        precision: u32,
        /// D, the digits after the point.
        scale: u32,
    },
    /// FLOAT or DOUBLE, with the deprecated (M,D) when given.
    Float {
        /// True for DOUBLE.
        double: bool,
        /// The deprecated (M,D) form, when given.
        digits: Option<(u32, u32)>,
    },
    /// BIT(M).
    Bit {
        /// M, the number of bits.
        width: u32,
    },
    /// CHAR(N) or VARCHAR(N) in a character set.
    Char {
        /// True for VARCHAR.
        varying: bool,
        /// N, in characters.
        length: u32,
    },
    /// BINARY(N) or VARBINARY(N).
    Binary {
        /// True for VARBINARY.
        varying: bool,
        /// N, in bytes.
        length: u32,
    },
    /// TINYTEXT … LONGTEXT.
    Text {
        /// The size class.
        size: LobSize,
    },
    /// TINYBLOB … LONGBLOB.
    Blob {
        /// The size class.
        size: LobSize,
    },
    /// DATE.
    Date,
    /// TIME(fsp).
    Time {
        /// Fractional-second precision, 0 to 6.
        fsp: u8,
    },
    /// DATETIME(fsp).
    Datetime {
        /// Fractional-second precision, 0 to 6.
        fsp: u8,
    },
    /// TIMESTAMP(fsp).
    Timestamp {
        /// Fractional-second precision, 0 to 6.
        fsp: u8,
    },
    /// YEAR.
    Year,
    /// ENUM('a', …): stored as the position of the value in the list.
    Enum {
        /// The values, in order.
        values: Vec<String>,
    },
    /// SET('a', …): stored as a bit per value in the list.
    Set {
        /// The values, in order.
        values: Vec<String>,
    },
    /// MySQL's binary JSON type (on MariaDB, JSON is LONGTEXT with a check).
    Json,
    /// A spatial type (`geometry`, `point`, …).
    Geometry {
        /// The lowercase type name.
        name: String,
    },
    /// Any other type (`uuid`, `inet6`, `vector(3)`): only an identical type matches.
    Other {
        /// The lowercase type as written, arguments included.
        name: String,
    },
}

/// The type families that row-based replication never converts between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeFamily {
    /// TINYINT … BIGINT.
    Integer,
    /// DECIMAL.
    Decimal,
    /// FLOAT and DOUBLE.
    Float,
    /// BIT.
    Bit,
    /// CHAR, VARCHAR and the TEXT types.
    String,
    /// BINARY, VARBINARY and the BLOB types.
    Binary,
    /// DATE, TIME, DATETIME, TIMESTAMP, YEAR.
    Temporal,
    /// ENUM and SET.
    EnumSet,
    /// MySQL JSON.
    Json,
    /// Spatial types.
    Geometry,
    /// Anything else.
    Other,
}

impl TypeKind {
    /// The family this type belongs to.
    pub fn family(&self) -> TypeFamily {
        match self {
            TypeKind::Integer { .. } => TypeFamily::Integer,
            TypeKind::Decimal { .. } => TypeFamily::Decimal,
            TypeKind::Float { .. } => TypeFamily::Float,
            TypeKind::Bit { .. } => TypeFamily::Bit,
            TypeKind::Char { .. } | TypeKind::Text { .. } => TypeFamily::String,
            TypeKind::Binary { .. } | TypeKind::Blob { .. } => TypeFamily::Binary,
            TypeKind::Date
            | TypeKind::Time { .. }
            | TypeKind::Datetime { .. }
            | TypeKind::Timestamp { .. }
            | TypeKind::Year => TypeFamily::Temporal,
            TypeKind::Enum { .. } | TypeKind::Set { .. } => TypeFamily::EnumSet,
            TypeKind::Json => TypeFamily::Json,
            TypeKind::Geometry { .. } => TypeFamily::Geometry,
            TypeKind::Other { .. } => TypeFamily::Other,
        }
    }

    /// True for types that carry a character set (CHAR, VARCHAR, TEXT, ENUM, SET).
    pub fn has_charset(&self) -> bool {
        matches!(
            self,
            TypeKind::Char { .. }
                | TypeKind::Text { .. }
                | TypeKind::Enum { .. }
                | TypeKind::Set { .. }
        )
    }
}

impl fmt::Display for TypeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |values: &[String]| {
            values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            TypeKind::Integer { size } => f.write_str(size.sql_name()),
            TypeKind::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            TypeKind::Float { double, digits } => {
                f.write_str(if *double { "DOUBLE" } else { "FLOAT" })?;
                if let Some((m, d)) = digits {
                    write!(f, "({m},{d})")?;
                }
                Ok(())
            }
            TypeKind::Bit { width } => write!(f, "BIT({width})"),
            TypeKind::Char { varying, length } => {
                write!(f, "{}({length})", if *varying { "VARCHAR" } else { "CHAR" })
            }
            TypeKind::Binary { varying, length } => {
                write!(
                    f,
                    "{}({length})",
                    if *varying { "VARBINARY" } else { "BINARY" }
                )
            }
            TypeKind::Text { size } => write!(f, "{}TEXT", size.prefix()),
            TypeKind::Blob { size } => write!(f, "{}BLOB", size.prefix()),
            TypeKind::Date => f.write_str("DATE"),
            TypeKind::Time { fsp } => fsp_type(f, "TIME", *fsp),
            TypeKind::Datetime { fsp } => fsp_type(f, "DATETIME", *fsp),
            TypeKind::Timestamp { fsp } => fsp_type(f, "TIMESTAMP", *fsp),
            TypeKind::Year => f.write_str("YEAR"),
            TypeKind::Enum { values } => write!(f, "ENUM({})", list(values)),
            TypeKind::Set { values } => write!(f, "SET({})", list(values)),
            TypeKind::Json => f.write_str("JSON"),
            TypeKind::Geometry { name } | TypeKind::Other { name } => {
                f.write_str(&name.to_uppercase())
            }
        }
    }
}

fn fsp_type(f: &mut fmt::Formatter<'_>, name: &str, fsp: u8) -> fmt::Result {
    if fsp == 0 {
        f.write_str(name)
    } else {
        write!(f, "{name}({fsp})")
    }
}

/// A column's full type: kind, signedness, character set and collation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ColumnType {
    /// The normalised kind.
    pub kind: TypeKind,
    /// UNSIGNED (integers, and the deprecated unsigned DECIMAL/FLOAT/DOUBLE).
    pub unsigned: bool,
    /// The character set for character types, lowercase, `utf8` read as `utf8mb3`; `binary`
    /// for the binary string types; `None` for types without one.
    pub charset: Option<String>,
    /// The collation when it is known (named in the text, or inherited from the table).
    /// `None` means "the server's default collation for `charset`", which this crate does not
    /// guess because it differs between versions.
    pub collation: Option<String>,
    /// MariaDB `COMPRESSED` columns have their own row-event type.
    pub compressed: bool,
    /// The spatial reference system of a geometry column (`SRID n`).
    pub srid: Option<u32>,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if self.unsigned {
            f.write_str(" UNSIGNED")?;
        }
        if self.kind.has_charset() {
            if let Some(charset) = &self.charset {
                write!(f, " CHARACTER SET {charset}")?;
            }
            if let Some(collation) = &self.collation {
                write!(f, " COLLATE {collation}")?;
            }
        }
        if self.compressed {
            f.write_str(" COMPRESSED")?;
        }
        if let Some(srid) = self.srid {
            write!(f, " SRID {srid}")?;
        }
        Ok(())
    }
}

/// A column's default value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ColumnDefault {
    /// No DEFAULT clause.
    None,
    /// `DEFAULT NULL`.
    Null,
    /// Any other default.
    Value {
        /// The default as written (`0`, `'x'`, `current_timestamp(6)`, `(uuid())`).
        text: String,
        /// False when the value depends on when or where it is evaluated (`CURRENT_TIMESTAMP`,
        /// `UUID()`, any function call): a replica filling the column itself would then store a
        /// different value than the primary.
        deterministic: bool,
    },
}

/// A generated column's definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Generated {
    /// The expression, as written (normalised spacing).
    pub expression: String,
    /// True for STORED (MariaDB: PERSISTENT), false for VIRTUAL.
    pub stored: bool,
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    /// The column name as written.
    pub name: String,
    /// The type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// True when NULL is allowed.
    pub nullable: bool,
    /// The default.
    pub default: ColumnDefault,
    /// `ON UPDATE …` (the expression as written).
    pub on_update: Option<String>,
    /// AUTO_INCREMENT.
    pub auto_increment: bool,
    /// GENERATED ALWAYS AS (…).
    pub generated: Option<Generated>,
    /// INVISIBLE (still part of every row image).
    pub invisible: bool,
    /// The column comment.
    pub comment: Option<String>,
    /// Identity of the column through an ALTER (renames keep it; drop and re-add do not).
    #[serde(skip)]
    pub(crate) id: u32,
}

impl Column {
    /// True when an applier can fill this column for a row image that lacks it: it is
    /// generated, nullable, or has a default.
    pub fn can_be_filled(&self) -> bool {
        self.generated.is_some() || self.nullable || !matches!(self.default, ColumnDefault::None)
    }
}

/// The kind of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// The PRIMARY KEY.
    Primary,
    /// A UNIQUE key.
    Unique,
    /// A plain (non-unique) key.
    Plain,
    /// A FULLTEXT key.
    Fulltext,
    /// A SPATIAL key.
    Spatial,
    /// A VECTOR key (MariaDB 11.7+).
    Vector,
}

impl IndexKind {
    /// True for PRIMARY and UNIQUE keys: the applier refuses duplicates.
    pub fn is_unique(self) -> bool {
        matches!(self, IndexKind::Primary | IndexKind::Unique)
    }
}

/// One part of an index key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexPart {
    /// The column, for a column key part.
    pub column: Option<String>,
    /// The expression, for a functional key part (MySQL 8.0.13+).
    pub expression: Option<String>,
    /// The prefix length (`name(10)`).
    pub prefix: Option<u32>,
}

/// An index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Index {
    /// The name (`PRIMARY` for the primary key).
    pub name: String,
    /// The kind.
    pub kind: IndexKind,
    /// The key parts in order.
    pub parts: Vec<IndexPart>,
}

impl Index {
    /// The column names of the key parts that are plain columns.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| part.column.as_deref())
    }
}

/// A referential action of a foreign key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferentialAction {
    /// RESTRICT.
    Restrict,
    /// NO ACTION.
    NoAction,
    /// CASCADE.
    Cascade,
    /// SET NULL.
    SetNull,
    /// SET DEFAULT.
    SetDefault,
}

impl ReferentialAction {
    /// True when the action changes other rows (CASCADE, SET NULL, SET DEFAULT). Those changes
    /// are made by the storage engine and are not written to the binary log as rows.
    pub fn changes_rows(self) -> bool {
        matches!(
            self,
            ReferentialAction::Cascade | ReferentialAction::SetNull | ReferentialAction::SetDefault
        )
    }
}

/// A foreign key of this table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    /// The constraint name.
    pub name: String,
    /// The referencing columns of this table.
    pub columns: Vec<String>,
    /// The referenced table as written.
    pub referenced_table: String,
    /// The referenced columns.
    pub referenced_columns: Vec<String>,
    /// ON DELETE.
    pub on_delete: Option<ReferentialAction>,
    /// ON UPDATE.
    pub on_update: Option<ReferentialAction>,
}

impl ForeignKey {
    /// True when an action changes other rows.
    pub fn cascades(&self) -> bool {
        self.on_delete.is_some_and(ReferentialAction::changes_rows)
            || self.on_update.is_some_and(ReferentialAction::changes_rows)
    }

    /// True when both keys relate the same columns to the same referenced columns.
    pub(crate) fn same_relation(&self, other: &ForeignKey) -> bool {
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        lower(&self.columns) == lower(&other.columns)
            && self
                .referenced_table
                .eq_ignore_ascii_case(&other.referenced_table)
            && lower(&self.referenced_columns) == lower(&other.referenced_columns)
    }
}

/// A CHECK constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckConstraint {
    /// The constraint name, when known.
    pub name: Option<String>,
    /// The expression (normalised spacing, lowercase outside quotes is not attempted).
    pub expression: String,
    /// False for MySQL `NOT ENFORCED`.
    pub enforced: bool,
    /// The column a MariaDB column-level check belongs to (it goes with the column when the
    /// column is modified or dropped). `None` for table-level checks and on MySQL, which turns
    /// column-level checks into table-level ones.
    pub column: Option<String>,
}

/// Table options that matter to the analysis.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableOptions {
    /// ENGINE, as written.
    pub engine: Option<String>,
    /// The default character set for columns (lowercase, `utf8` read as `utf8mb3`).
    pub charset: Option<String>,
    /// The default collation for columns.
    pub collation: Option<String>,
    /// Whether the table is partitioned.
    pub partitioned: bool,
    /// MariaDB `WITH SYSTEM VERSIONING`.
    pub system_versioned: bool,
}

/// A table definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Table {
    /// The table's name.
    pub name: TableName,
    /// The columns in row-image order.
    pub columns: Vec<Column>,
    /// The indexes.
    pub indexes: Vec<Index>,
    /// The foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// The CHECK constraints (table-level and column-level).
    pub checks: Vec<CheckConstraint>,
    /// Table options.
    pub options: TableOptions,
    /// Next column identity to hand out.
    #[serde(skip)]
    pub(crate) next_id: u32,
}

impl Table {
    /// The column called `name` (names compare without regard to letter case, as on the server).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The position of the column called `name`.
    pub fn column_position(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The index called `name` (`PRIMARY` for the primary key).
    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// The primary key, if any.
    pub fn primary_key(&self) -> Option<&Index> {
        self.indexes.iter().find(|i| i.kind == IndexKind::Primary)
    }

    /// True when the applier can find a row by a key: a primary key, or a unique key whose
    /// columns are all NOT NULL.
    pub fn has_row_identity(&self) -> bool {
        self.indexes.iter().any(|index| {
            index.kind == IndexKind::Primary
                || (index.kind == IndexKind::Unique
                    && index.parts.iter().all(|part| {
                        part.column
                            .as_deref()
                            .and_then(|c| self.column(c))
                            .is_some_and(|c| !c.nullable)
                    }))
        })
    }

    /// True when the table has a FULLTEXT index.
    pub fn has_fulltext(&self) -> bool {
        self.indexes.iter().any(|i| i.kind == IndexKind::Fulltext)
    }

    /// True when both tables produce and accept the same row images and enforce the same
    /// keys: same columns in the same order with the same types, nullability and defaults, and
    /// the same indexes, foreign keys and checks. Column comments and index names are ignored;
    /// a collation not known on one side (`None`: the character set's default, which this
    /// crate does not guess) matches any collation of the same character set, and expressions
    /// (generated columns, functional key parts) compare without letter case, quotes, spaces
    /// and parentheses, as the servers print them differently from how they were written.
    /// An executor can compare the definition it expected with what the server reports after
    /// an ALTER.
    pub fn same_shape(&self, other: &Table) -> bool {
        let same_type = |a: &ColumnType, b: &ColumnType| {
            a.kind == b.kind
                && a.unsigned == b.unsigned
                && a.charset == b.charset
                && a.compressed == b.compressed
                && a.srid == b.srid
                && match (&a.collation, &b.collation) {
                    (Some(x), Some(y)) => x == y,
                    _ => true,
                }
        };
        let same_generation = |a: &Option<Generated>, b: &Option<Generated>| match (a, b) {
            (Some(a), Some(b)) => {
                a.stored == b.stored
                    && loose_expression(&a.expression) == loose_expression(&b.expression)
            }
            (a, b) => a.is_none() && b.is_none(),
        };
        let columns_match = self.columns.len() == other.columns.len()
            && self.columns.iter().zip(&other.columns).all(|(a, b)| {
                a.name.eq_ignore_ascii_case(&b.name)
                    && same_type(&a.ty, &b.ty)
                    && a.nullable == b.nullable
                    && a.auto_increment == b.auto_increment
                    && same_generation(&a.generated, &b.generated)
            });
        let mut mine: Vec<_> = self
            .indexes
            .iter()
            .map(|i| (i.kind, lower_parts(i)))
            .collect();
        let mut theirs: Vec<_> = other
            .indexes
            .iter()
            .map(|i| (i.kind, lower_parts(i)))
            .collect();
        mine.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        theirs.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        columns_match
            && mine == theirs
            && self.foreign_keys.len() == other.foreign_keys.len()
            && self
                .foreign_keys
                .iter()
                .all(|fk| other.foreign_keys.iter().any(|o| o.same_relation(fk)))
            && self.checks.iter().filter(|c| c.enforced).count()
                == other.checks.iter().filter(|c| c.enforced).count()
    }

    pub(crate) fn column_by_id(&self, id: u32) -> Option<&Column> {
        self.columns.iter().find(|c| c.id == id)
    }
}

/// An expression without letter case, quotes, spaces and parentheses.
fn loose_expression(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '`' | '(' | ')'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_parts(index: &Index) -> Vec<(Option<String>, Option<String>, Option<u32>)> {
    index
        .parts
        .iter()
        .map(|p| {
            (
                p.column.as_ref().map(|c| c.to_lowercase()),
                p.expression.as_deref().map(loose_expression),
                p.prefix,
            )
        })
        .collect()
}

/// The number of bytes per character of the character sets a server ships, for deciding
/// whether a VARCHAR needs a one- or two-byte length prefix. Unknown sets count as 4.
pub(crate) fn charset_max_bytes(charset: &str) -> u32 {
    match charset {
        "binary" | "latin1" | "latin2" | "latin5" | "latin7" | "ascii" | "cp1250" | "cp1251"
        | "cp1256" | "cp1257" | "cp850" | "cp852" | "cp866" | "dec8" | "greek" | "hebrew"
        | "hp8" | "keybcs2" | "koi8r" | "koi8u" | "macce" | "macroman" | "swe7" | "tis620"
        | "geostd8" | "armscii8" => 1,
        "ucs2" | "gbk" | "big5" | "sjis" | "cp932" | "euckr" | "gb2312" => 2,
        "utf8mb3" | "ujis" | "eucjpms" => 3,
        _ => 4,
    }
}
