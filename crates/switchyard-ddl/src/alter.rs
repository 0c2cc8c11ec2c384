//! Reading one ALTER TABLE statement into its clauses.
//!
//! The raw text is tokenized first (executable comments read as the server reads them,
//! statements counted), then split at top-level commas. Column definitions go through sqlparser ([`crate::column`]);
//! keys, table options and partition clauses are read here, because sqlparser 0.63 rejects
//! many of the forms MySQL and MariaDB accept (`RENAME INDEX`, `ENGINE=`, `CONVERT TO`,
//! `FORCE`, partition maintenance, `ADD COLUMN (a INT, b INT)`).

use switchyard_plan::versions::{Flavor, Version};

use crate::column::{
    ColumnSpec, normalize_charset, normalize_collation, parse_column, parse_default,
};
use crate::error::{DdlError, excerpt};
use crate::keys::{Cursor, KeySpec, TableOption, parse_key, parse_table_options, starts_key};
use crate::lex::{ExecutableComments, Token, TokenKind, lex, source_text, split_top_level};
use crate::model::{ColumnDefault, TableName};

/// Where a column goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// FIRST.
    First,
    /// AFTER column.
    After(String),
}

/// A partitioning clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PartitionOp {
    /// ADD PARTITION: new places for rows.
    Add,
    /// COALESCE / REORGANIZE PARTITION, REBUILD: rows move between partitions, none are lost.
    Reshape(String),
    /// REMOVE PARTITIONING.
    Remove,
    /// PARTITION BY …; `catch_all` when every value has a partition (HASH, KEY, RANGE with
    /// MAXVALUE, LIST with a DEFAULT partition).
    By {
        /// HASH, KEY, RANGE, LIST, SYSTEM_TIME.
        method: String,
        /// True when no value can be left without a partition.
        catch_all: bool,
    },
    /// DROP, TRUNCATE, EXCHANGE, DISCARD, IMPORT, CONVERT PARTITION: rows are removed or
    /// replaced on one node only.
    DataChange(String),
    /// ANALYZE, CHECK, OPTIMIZE, REPAIR PARTITION: maintenance, no change of definition.
    Maintenance(String),
}

/// One change requested by a clause.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    AddColumn {
        spec: ColumnSpec,
        position: Option<Position>,
        if_not_exists: bool,
    },
    ChangeColumn {
        old: String,
        spec: ColumnSpec,
        position: Option<Position>,
        if_exists: bool,
    },
    DropColumn {
        name: String,
        if_exists: bool,
    },
    RenameColumn {
        old: String,
        new: String,
    },
    SetDefault {
        column: String,
        default: ColumnDefault,
    },
    SetColumnVisibility {
        column: String,
        invisible: bool,
    },
    AddKey(KeySpec),
    DropIndex {
        name: String,
        if_exists: bool,
    },
    DropPrimaryKey,
    DropForeignKey {
        name: String,
        if_exists: bool,
    },
    DropCheck {
        name: String,
        if_exists: bool,
    },
    DropConstraint {
        name: String,
        if_exists: bool,
    },
    RenameIndex {
        old: String,
        new: String,
    },
    IndexVisibility {
        name: String,
    },
    CheckEnforcement {
        name: String,
        enforced: bool,
    },
    TableOptions(Vec<TableOption>),
    ConvertCharset {
        charset: String,
        collation: Option<String>,
    },
    Algorithm(String),
    Lock(String),
    RenameTable(TableName),
    Partition(PartitionOp),
    /// Rebuilds the table without changing its definition (FORCE, ORDER BY).
    Rebuild(&'static str),
    /// Changes nothing InnoDB stores (ENABLE/DISABLE KEYS, WITH/WITHOUT VALIDATION).
    NoRowEffect(&'static str),
    /// A clause switchyard does not model; judged unsafe.
    Unsupported(String),
}

/// A clause as written and what it asks for.
#[derive(Clone, Debug)]
pub(crate) struct Clause {
    /// The clause text as written (one line).
    pub text: String,
    /// The changes, in order.
    pub ops: Vec<Op>,
}

/// A parsed ALTER TABLE statement.
#[derive(Clone, Debug)]
pub(crate) struct AlterStatement {
    /// The table altered.
    pub table: TableName,
    /// The clauses in order.
    pub clauses: Vec<Clause>,
    /// `ALTER IGNORE TABLE` (MariaDB): rows that violate a new unique key are deleted.
    pub ignore: bool,
    /// The statement as written, without the comments around it and the trailing `;`.
    pub text: String,
}

const WHAT: &str = "ALTER statement";

/// Tokenizes `text`, refusing more than one statement (and executable comments when `mode`
/// says to report them), and returns the tokens of the one statement (trailing `;` removed).
pub(crate) fn single_statement(
    text: &str,
    what: &'static str,
    expected: &'static str,
    mode: ExecutableComments,
) -> Result<Vec<Token>, DdlError> {
    Ok(statement_with_comments(text, what, expected, mode)?.0)
}

/// [`single_statement`], with the source range of the statement: from its first token to
/// its last, widened to whole executable comments where a token lies inside one.
fn statement_with_comments(
    text: &str,
    what: &'static str,
    expected: &'static str,
    mode: ExecutableComments,
) -> Result<(Vec<Token>, std::ops::Range<usize>), DdlError> {
    if text.trim().is_empty() {
        return Err(DdlError::Empty {
            what,
            expected: "exactly one statement",
        });
    }
    let lexed = lex(text, mode).map_err(|e| DdlError::Unreadable {
        what,
        detail: e.to_string(),
    })?;
    if mode == ExecutableComments::Report
        && let Some(comment) = lexed.executable_comments.first()
    {
        return Err(DdlError::ExecutableComment {
            comment: excerpt(&text[comment.start..comment.end]),
        });
    }
    let statements: Vec<&[Token]> = split_top_level(&lexed.tokens, ';')
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    match statements.as_slice() {
        [] => Err(DdlError::Empty {
            what,
            expected: "exactly one statement",
        }),
        [one] => {
            let (mut start, mut end) = (
                one.first().map_or(0, |t| t.start),
                one.last().map_or(0, |t| t.end),
            );
            for comment in &lexed.executable_comments {
                if comment.start < start && start < comment.end {
                    start = comment.start;
                }
                if comment.start < end && end <= comment.end {
                    end = comment.end;
                }
            }
            Ok((one.to_vec(), start..end))
        }
        several => Err(DdlError::SeveralStatements {
            what,
            count: several.len(),
            expected,
        }),
    }
}

fn first_words(tokens: &[Token], n: usize) -> String {
    tokens
        .iter()
        .take(n)
        .map(|t| t.text.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a server of `flavor` and `version` reads executable comments; without a version, the
/// newest releases switchyard runs (MySQL 9.7, MariaDB 11.8), which run every comment an
/// older release runs.
pub(crate) fn comment_mode(flavor: Flavor, version: Option<Version>) -> ExecutableComments {
    let version = version.unwrap_or(match flavor {
        Flavor::Mysql => Version::new(9, 7, 0),
        Flavor::Mariadb => Version::new(11, 8, 0),
    });
    ExecutableComments::Server {
        mariadb: flavor == Flavor::Mariadb,
        version: u32::from(version.major) * 10_000
            + u32::from(version.minor) * 100
            + u32::from(version.patch),
    }
}

/// Parses one ALTER TABLE statement as a server of `flavor` and `version` reads it
/// ([`comment_mode`]).
pub(crate) fn parse_alter(
    flavor: Flavor,
    version: Option<Version>,
    text: &str,
) -> Result<AlterStatement, DdlError> {
    let (tokens, range) =
        statement_with_comments(text, WHAT, "ALTER TABLE", comment_mode(flavor, version))?;
    let mut cursor = Cursor::new(&tokens);
    let wrong = |tokens: &[Token]| DdlError::WrongStatement {
        what: WHAT,
        expected: "an ALTER TABLE",
        found: first_words(tokens, 2),
    };
    if !cursor.eat_word("ALTER") {
        return Err(wrong(&tokens));
    }
    let _ = cursor.eat_word("ONLINE") || cursor.eat_word("OFFLINE");
    let ignore = cursor.eat_word("IGNORE");
    if !cursor.eat_word("TABLE") {
        return Err(wrong(&tokens));
    }
    let _ = cursor.eat_words(&["IF", "EXISTS"]);
    let name_parts = cursor
        .qualified_identifier("the table name")
        .map_err(|detail| DdlError::Syntax {
            what: "the statement",
            text: excerpt(text),
            detail,
        })?;
    let table = table_name(name_parts).map_err(|detail| DdlError::Syntax {
        what: "the statement",
        text: excerpt(text),
        detail,
    })?;
    if cursor.eat_word("WAIT") {
        cursor.next_token();
    } else {
        cursor.eat_word("NOWAIT");
    }
    let rest = cursor.rest();
    if rest.is_empty() {
        return Err(DdlError::Syntax {
            what: "the statement",
            text: excerpt(text),
            detail: "the ALTER TABLE names no change: add the clauses to judge".to_owned(),
        });
    }
    let mut clauses = Vec::new();
    let mut pieces = split_top_level(rest, ',');
    // ORDER BY takes a list of columns: the rest of the statement is its list.
    if let Some(at) = pieces
        .iter()
        .position(|p| p.len() > 1 && p[0].is_word("ORDER") && p[1].is_word("BY"))
    {
        let from = rest.len()
            - pieces[at..].iter().map(|p| p.len()).sum::<usize>()
            - (pieces.len() - at - 1);
        pieces.truncate(at);
        pieces.push(&rest[from..]);
    }
    for piece in pieces {
        if piece.is_empty() {
            return Err(DdlError::Syntax {
                what: "the statement",
                text: excerpt(text),
                detail: "it has an empty clause (two commas in a row, or a trailing comma)"
                    .to_owned(),
            });
        }
        for part in split_partition_suffix(piece) {
            let clause_text = excerpt(source_text(text, part));
            let ops = parse_clause(flavor, part).map_err(|detail| DdlError::Syntax {
                what: "the clause",
                text: clause_text.clone(),
                detail,
            })?;
            clauses.push(Clause {
                text: clause_text,
                ops,
            });
        }
    }
    Ok(AlterStatement {
        table,
        clauses,
        ignore,
        text: text.get(range).unwrap_or_default().to_owned(),
    })
}

/// Builds a table name from `[schema.]name`.
pub(crate) fn table_name(mut parts: Vec<String>) -> Result<TableName, String> {
    match parts.len() {
        1 => Ok(TableName {
            schema: None,
            name: parts.remove(0),
        }),
        2 => {
            let name = parts.remove(1);
            Ok(TableName {
                schema: Some(parts.remove(0)),
                name,
            })
        }
        _ => Err(format!("`{}` is not a table name", parts.join("."))),
    }
}

/// Partition options follow the last clause without a comma (`ENGINE=InnoDB PARTITION BY …`):
/// split them off into a clause of their own.
fn split_partition_suffix(piece: &[Token]) -> Vec<&[Token]> {
    let mut depth = 0usize;
    for (i, token) in piece.iter().enumerate() {
        match token.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => depth = depth.saturating_sub(1),
            _ if depth == 0 && i > 0 => {
                let next = piece.get(i + 1);
                let partition_by =
                    token.is_word("PARTITION") && next.is_some_and(|t| t.is_word("BY"));
                let remove =
                    token.is_word("REMOVE") && next.is_some_and(|t| t.is_word("PARTITIONING"));
                if partition_by || remove {
                    return vec![&piece[..i], &piece[i..]];
                }
            }
            _ => {}
        }
    }
    vec![piece]
}

const TABLE_OPTION_WORDS: &[&str] = &[
    "ENGINE",
    "AUTO_INCREMENT",
    "AVG_ROW_LENGTH",
    "CHECKSUM",
    "TABLE_CHECKSUM",
    "COMMENT",
    "COMPRESSION",
    "CONNECTION",
    "DATA",
    "INDEX",
    "DELAY_KEY_WRITE",
    "ENCRYPTION",
    "ENCRYPTED",
    "ENCRYPTION_KEY_ID",
    "INSERT_METHOD",
    "KEY_BLOCK_SIZE",
    "MAX_ROWS",
    "MIN_ROWS",
    "PACK_KEYS",
    "PASSWORD",
    "ROW_FORMAT",
    "STATS_AUTO_RECALC",
    "STATS_PERSISTENT",
    "STATS_SAMPLE_PAGES",
    "TABLESPACE",
    "UNION",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "IETF_QUOTES",
    "TRANSACTIONAL",
    "SEQUENCE",
    "AUTOEXTEND_SIZE",
    "ENGINE_ATTRIBUTE",
    "SECONDARY_ENGINE",
    "SECONDARY_ENGINE_ATTRIBUTE",
    "DEFAULT",
    "CHARACTER",
    "CHARSET",
    "COLLATE",
];

fn parse_clause(flavor: Flavor, tokens: &[Token]) -> Result<Vec<Op>, String> {
    let mut c = Cursor::new(tokens);
    let op = if c.eat_word("ADD") {
        return parse_add(flavor, &mut c);
    } else if c.eat_word("DROP") {
        parse_drop(&mut c)?
    } else if c.eat_word("MODIFY") {
        c.eat_word("COLUMN");
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        let (spec, position) = column_with_position(flavor, c.rest())?;
        return Ok(vec![Op::ChangeColumn {
            old: spec.column.name.clone(),
            spec,
            position,
            if_exists,
        }]);
    } else if c.eat_word("CHANGE") {
        c.eat_word("COLUMN");
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        let old = c.identifier("the column to change")?;
        let (spec, position) = column_with_position(flavor, c.rest())?;
        return Ok(vec![Op::ChangeColumn {
            old,
            spec,
            position,
            if_exists,
        }]);
    } else if c.eat_word("RENAME") {
        parse_rename(&mut c)?
    } else if c.eat_word("ALTER") {
        parse_alter_object(&mut c)?
    } else if c.eat_word("ALGORITHM") {
        c.eat_punct('=');
        Op::Algorithm(c.identifier("an algorithm")?.to_ascii_uppercase())
    } else if c.eat_word("LOCK") {
        c.eat_punct('=');
        Op::Lock(c.identifier("a lock mode")?.to_ascii_uppercase())
    } else if c.eat_words(&["CONVERT", "TO"]) {
        if !(c.eat_words(&["CHARACTER", "SET"]) || c.eat_word("CHARSET")) {
            return Err("expected CHARACTER SET after CONVERT TO".to_owned());
        }
        let charset = normalize_charset(&c.identifier("a character set")?);
        let collation = if c.eat_word("COLLATE") {
            c.eat_punct('=');
            Some(normalize_collation(&c.identifier("a collation")?))
        } else {
            None
        };
        Op::ConvertCharset { charset, collation }
    } else if c.eat_word("FORCE") {
        Op::Rebuild("FORCE")
    } else if c.eat_words(&["ORDER", "BY"]) {
        c.next_token().ok_or("ORDER BY needs a column")?;
        while !c.at_end() {
            c.next_token();
        }
        Op::Rebuild("ORDER BY")
    } else if c.eat_words(&["ENABLE", "KEYS"]) || c.eat_words(&["DISABLE", "KEYS"]) {
        Op::NoRowEffect("ENABLE/DISABLE KEYS")
    } else if c.eat_words(&["WITH", "VALIDATION"]) || c.eat_words(&["WITHOUT", "VALIDATION"]) {
        Op::NoRowEffect("WITH/WITHOUT VALIDATION")
    } else if c.eat_words(&["DISCARD", "TABLESPACE"]) || c.eat_words(&["IMPORT", "TABLESPACE"]) {
        Op::Unsupported(
            "DISCARD/IMPORT TABLESPACE replaces the table's data on one node".to_owned(),
        )
    } else if c.at_word("PARTITION") && c.peek_at(1).is_some_and(|t| t.is_word("BY")) {
        c.eat_words(&["PARTITION", "BY"]);
        let _ = c.eat_word("LINEAR");
        let method = c.identifier("a partitioning method")?.to_ascii_uppercase();
        let rest = c.rest();
        let catch_all = match method.as_str() {
            "HASH" | "KEY" => true,
            "RANGE" => rest.iter().any(|t| t.is_word("MAXVALUE")),
            "LIST" => rest.iter().any(|t| t.is_word("DEFAULT")),
            _ => false,
        };
        while !c.at_end() {
            c.next_token();
        }
        Op::Partition(PartitionOp::By { method, catch_all })
    } else if c.eat_words(&["REMOVE", "PARTITIONING"]) {
        Op::Partition(PartitionOp::Remove)
    } else if let Some(op) = partition_verb(&mut c) {
        while !c.at_end() {
            c.next_token();
        }
        op
    } else if c
        .peek()
        .is_some_and(|t| TABLE_OPTION_WORDS.iter().any(|w| t.is_word(w)))
    {
        let (options, rest) = parse_table_options(tokens)?;
        if let Some(extra) = rest.first() {
            return Err(format!(
                "unexpected `{}` after the table options",
                extra.text
            ));
        }
        return Ok(vec![Op::TableOptions(options)]);
    } else {
        return Err(format!(
            "`{}` does not start an ALTER TABLE clause switchyard knows: check the syntax against the server's manual",
            c.peek().map_or("", |t| t.text.as_str())
        ));
    };
    c.expect_end("the clause")?;
    Ok(vec![op])
}

fn partition_verb(c: &mut Cursor<'_>) -> Option<Op> {
    let verb = c.peek()?.text.to_ascii_uppercase();
    let takes_partition = c.peek_at(1).is_some_and(|t| t.is_word("PARTITION"));
    let op = match verb.as_str() {
        "COALESCE" | "REORGANIZE" | "REBUILD" if takes_partition => {
            PartitionOp::Reshape(verb.clone())
        }
        "TRUNCATE" | "EXCHANGE" | "DISCARD" | "IMPORT" | "CONVERT" if takes_partition => {
            PartitionOp::DataChange(verb.clone())
        }
        "ANALYZE" | "CHECK" | "OPTIMIZE" | "REPAIR" if takes_partition => {
            PartitionOp::Maintenance(verb.clone())
        }
        _ => return None,
    };
    c.next_token();
    Some(Op::Partition(op))
}

fn column_with_position(
    flavor: Flavor,
    tokens: &[Token],
) -> Result<(ColumnSpec, Option<Position>), String> {
    let n = tokens.len();
    let (definition, position) = if n >= 1 && tokens[n - 1].is_word("FIRST") {
        (&tokens[..n - 1], Some(Position::First))
    } else if n >= 2 && tokens[n - 2].is_word("AFTER") && tokens[n - 1].is_identifier() {
        (
            &tokens[..n - 2],
            Some(Position::After(tokens[n - 1].value.clone())),
        )
    } else {
        (tokens, None)
    };
    let spec = parse_column(flavor, definition)?;
    if spec.system_period {
        return Err(
            "row-start/row-end columns of system-versioned tables are not supported".to_owned(),
        );
    }
    Ok((spec, position))
}

fn parse_add(flavor: Flavor, c: &mut Cursor<'_>) -> Result<Vec<Op>, String> {
    let explicit_column = c.eat_word("COLUMN");
    if !explicit_column {
        if c.at_word("PARTITION") {
            return Ok(vec![Op::Partition(PartitionOp::Add)]);
        }
        if c.eat_words(&["SYSTEM", "VERSIONING"]) {
            return Ok(vec![Op::Unsupported(
                "system versioning adds row-start/row-end columns".to_owned(),
            )]);
        }
        if starts_key(c.rest()) {
            let spec = parse_key(c.rest())?;
            if spec == KeySpec::Period {
                return Ok(vec![Op::Unsupported(
                    "periods (PERIOD FOR) are not modelled".to_owned(),
                )]);
            }
            return Ok(vec![Op::AddKey(spec)]);
        }
    }
    let if_not_exists = c.eat_words(&["IF", "NOT", "EXISTS"]);
    if c.peek().is_some_and(|t| t.is_punct('(')) {
        let inside = c.group("the column list")?;
        c.expect_end("the column list")?;
        return split_top_level(inside, ',')
            .into_iter()
            .map(|piece| {
                let spec = parse_column(flavor, piece)?;
                Ok(Op::AddColumn {
                    spec,
                    position: None,
                    if_not_exists,
                })
            })
            .collect();
    }
    let (spec, position) = column_with_position(flavor, c.rest())?;
    Ok(vec![Op::AddColumn {
        spec,
        position,
        if_not_exists,
    }])
}

fn parse_drop(c: &mut Cursor<'_>) -> Result<Op, String> {
    if c.eat_words(&["PRIMARY", "KEY"]) {
        return Ok(Op::DropPrimaryKey);
    }
    if c.eat_word("INDEX") || c.eat_word("KEY") {
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        return Ok(Op::DropIndex {
            name: c.identifier("an index name")?,
            if_exists,
        });
    }
    if c.eat_words(&["FOREIGN", "KEY"]) {
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        return Ok(Op::DropForeignKey {
            name: c.identifier("a foreign key name")?,
            if_exists,
        });
    }
    if c.eat_word("CHECK") {
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        return Ok(Op::DropCheck {
            name: c.identifier("a check constraint name")?,
            if_exists,
        });
    }
    if c.eat_word("CONSTRAINT") {
        let if_exists = c.eat_words(&["IF", "EXISTS"]);
        return Ok(Op::DropConstraint {
            name: c.identifier("a constraint name")?,
            if_exists,
        });
    }
    if c.at_word("PARTITION") {
        while !c.at_end() {
            c.next_token();
        }
        return Ok(Op::Partition(PartitionOp::DataChange("DROP".to_owned())));
    }
    if c.eat_words(&["SYSTEM", "VERSIONING"]) {
        return Ok(Op::Unsupported(
            "dropping system versioning removes row-start/row-end columns".to_owned(),
        ));
    }
    if c.eat_word("PERIOD") {
        while !c.at_end() {
            c.next_token();
        }
        return Ok(Op::Unsupported(
            "periods (PERIOD FOR) are not modelled".to_owned(),
        ));
    }
    c.eat_word("COLUMN");
    let if_exists = c.eat_words(&["IF", "EXISTS"]);
    let name = c.identifier("a column name")?;
    let _ = c.eat_word("RESTRICT") || c.eat_word("CASCADE");
    Ok(Op::DropColumn { name, if_exists })
}

fn parse_rename(c: &mut Cursor<'_>) -> Result<Op, String> {
    if c.eat_word("COLUMN") {
        let _ = c.eat_words(&["IF", "EXISTS"]);
        let old = c.identifier("the column to rename")?;
        if !c.eat_word("TO") {
            return Err("expected TO in RENAME COLUMN".to_owned());
        }
        let new = c.identifier("the new column name")?;
        return Ok(Op::RenameColumn { old, new });
    }
    if c.eat_word("INDEX") || c.eat_word("KEY") {
        let _ = c.eat_words(&["IF", "EXISTS"]);
        let old = c.identifier("the index to rename")?;
        if !c.eat_word("TO") {
            return Err("expected TO in RENAME INDEX".to_owned());
        }
        let new = c.identifier("the new index name")?;
        return Ok(Op::RenameIndex { old, new });
    }
    let _ = c.eat_word("TO") || c.eat_word("AS");
    let parts = c.qualified_identifier("the new table name")?;
    Ok(Op::RenameTable(table_name(parts)?))
}

fn parse_alter_object(c: &mut Cursor<'_>) -> Result<Op, String> {
    if c.eat_word("INDEX") || c.eat_word("KEY") {
        let name = c.identifier("an index name")?;
        let known = c.eat_word("VISIBLE")
            || c.eat_word("INVISIBLE")
            || c.eat_word("IGNORED")
            || c.eat_words(&["NOT", "IGNORED"]);
        if !known {
            return Err(
                "expected VISIBLE, INVISIBLE, IGNORED or NOT IGNORED after ALTER INDEX".to_owned(),
            );
        }
        return Ok(Op::IndexVisibility { name });
    }
    if c.eat_word("CHECK") || c.eat_word("CONSTRAINT") {
        let name = c.identifier("a constraint name")?;
        let enforced = if c.eat_words(&["NOT", "ENFORCED"]) {
            false
        } else if c.eat_word("ENFORCED") {
            true
        } else {
            return Err("expected ENFORCED or NOT ENFORCED".to_owned());
        };
        return Ok(Op::CheckEnforcement { name, enforced });
    }
    c.eat_word("COLUMN");
    let _ = c.eat_words(&["IF", "EXISTS"]);
    let column = c.identifier("a column name")?;
    if c.eat_words(&["DROP", "DEFAULT"]) {
        return Ok(Op::SetDefault {
            column,
            default: ColumnDefault::None,
        });
    }
    if c.eat_words(&["SET", "VISIBLE"]) {
        return Ok(Op::SetColumnVisibility {
            column,
            invisible: false,
        });
    }
    if c.eat_words(&["SET", "INVISIBLE"]) {
        return Ok(Op::SetColumnVisibility {
            column,
            invisible: true,
        });
    }
    if c.eat_words(&["SET", "DEFAULT"]) {
        let value = c.rest();
        if value.is_empty() {
            return Err("SET DEFAULT needs a value".to_owned());
        }
        let default = parse_default(value)?;
        while !c.at_end() {
            c.next_token();
        }
        return Ok(Op::SetDefault { column, default });
    }
    Err(
        "expected SET DEFAULT, DROP DEFAULT, SET VISIBLE or SET INVISIBLE after ALTER COLUMN"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AlterStatement {
        parse_alter(Flavor::Mysql, None, text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> DdlError {
        parse_alter(Flavor::Mysql, None, text).expect_err(text)
    }

    #[test]
    fn clauses_keep_their_text() {
        let stmt = parse(
            "ALTER TABLE `db`.`t` ADD COLUMN c INT NOT NULL DEFAULT 0 AFTER id, ADD INDEX i (c);",
        );
        assert_eq!(
            stmt.table,
            TableName {
                schema: Some("db".into()),
                name: "t".into()
            }
        );
        let texts: Vec<_> = stmt.clauses.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "ADD COLUMN c INT NOT NULL DEFAULT 0 AFTER id",
                "ADD INDEX i (c)"
            ]
        );
        assert!(matches!(
            &stmt.clauses[0].ops[0],
            Op::AddColumn { position: Some(Position::After(after)), .. } if after == "id"
        ));
    }

    #[test]
    fn forms_sqlparser_rejects_are_read() {
        for text in [
            "ALTER TABLE t RENAME INDEX a TO b",
            "ALTER TABLE t ALTER INDEX k INVISIBLE",
            "ALTER TABLE t COMMENT = 'x'",
            "ALTER TABLE t ENGINE=InnoDB ROW_FORMAT=DYNAMIC",
            "ALTER TABLE t DEFAULT CHARSET=utf8mb4",
            "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "ALTER TABLE t ADD PARTITION (PARTITION p2 VALUES LESS THAN (20))",
            "ALTER TABLE t DROP PARTITION p0",
            "ALTER TABLE t PARTITION BY HASH(id) PARTITIONS 4",
            "ALTER TABLE t REMOVE PARTITIONING",
            "ALTER TABLE t FORCE",
            "ALTER TABLE t DROP CHECK c1",
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS x INT",
            "ALTER ONLINE TABLE t ADD INDEX (a)",
            "ALTER TABLE t WAIT 5 ADD INDEX (a)",
            "ALTER TABLE t ADD INDEX i (a) USING BTREE COMMENT 'x' INVISIBLE",
            "ALTER TABLE t MODIFY x BIGINT UNSIGNED ZEROFILL",
            "ALTER TABLE t ADD COLUMN (a INT, b INT)",
            "ALTER TABLE t ALGORITHM=INPLACE, LOCK=NONE, ADD INDEX (a)",
        ] {
            parse(text);
        }
    }

    #[test]
    fn partition_options_after_a_clause_become_their_own_clause() {
        let stmt = parse(
            "ALTER TABLE t ENGINE=InnoDB PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN MAXVALUE)",
        );
        assert_eq!(stmt.clauses.len(), 2);
        assert!(matches!(
            &stmt.clauses[1].ops[0],
            Op::Partition(PartitionOp::By {
                catch_all: true,
                ..
            })
        ));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(matches!(
            err("DROP TABLE t"),
            DdlError::WrongStatement { .. }
        ));
        assert!(matches!(
            err("ALTER USER u IDENTIFIED BY 'x'"),
            DdlError::WrongStatement { .. }
        ));
        assert!(matches!(
            err("ALTER TABLE t ADD c INT; DROP TABLE t"),
            DdlError::SeveralStatements { count: 2, .. }
        ));
        assert!(matches!(err("ALTER TABLE t"), DdlError::Syntax { .. }));
        assert!(matches!(
            err("ALTER TABLE t ADD c INT,"),
            DdlError::Syntax { .. }
        ));
        assert!(matches!(
            err("ALTER TABLE t FROBNICATE"),
            DdlError::Syntax { .. }
        ));
        assert!(matches!(err("   "), DdlError::Empty { .. }));
        assert!(matches!(
            err("ALTER TABLE t COMMENT 'x"),
            DdlError::Unreadable { .. }
        ));
    }

    #[test]
    fn executable_comments_are_read_as_the_server_reads_them() {
        // Every server runs an unversioned one: its content is analyzed, and the statement
        // sent to the servers keeps it whole.
        let stmt = parse("ALTER TABLE t ADD c INT /*! , DROP COLUMN id */");
        let texts: Vec<_> = stmt.clauses.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["ADD c INT", "DROP COLUMN id"]);
        assert_eq!(stmt.text, "ALTER TABLE t ADD c INT /*! , DROP COLUMN id */");
        // A versioned one runs from that version on.
        let at = |version| {
            parse_alter(
                Flavor::Mysql,
                Some(version),
                "ALTER TABLE t MODIFY a INT /*!80023 INVISIBLE */",
            )
            .unwrap()
        };
        let invisible = |stmt: &AlterStatement| matches!(&stmt.clauses[0].ops[0], Op::ChangeColumn { spec, .. } if spec.column.invisible);
        assert!(invisible(&at(Version::new(8, 0, 23))));
        assert!(!invisible(&at(Version::new(8, 0, 22))));
        assert_eq!(
            parse("ALTER TABLE t ADD c INT /*!99999 , DROP COLUMN id */")
                .clauses
                .len(),
            1
        );
        // MariaDB's own runs only there: a hidden statement is refused on MariaDB.
        let hidden = "ALTER TABLE t ADD c INT /*M!100100 ; DROP TABLE t */";
        assert_eq!(parse(hidden).clauses.len(), 1);
        assert!(matches!(
            parse_alter(Flavor::Mariadb, None, hidden).expect_err(hidden),
            DdlError::SeveralStatements { count: 2, .. }
        ));
        assert!(matches!(
            err("ALTER TABLE t ADD c INT /*! ; DROP TABLE t */"),
            DdlError::SeveralStatements { count: 2, .. }
        ));
    }

    #[test]
    fn order_by_takes_a_column_list() {
        let stmt = parse("ALTER TABLE t ENGINE=InnoDB, ORDER BY a DESC, b");
        assert_eq!(stmt.clauses.len(), 2);
        assert_eq!(stmt.clauses[1].text, "ORDER BY a DESC, b");
    }

    #[test]
    fn comment_markers_inside_strings_are_not_comments() {
        let stmt = parse("ALTER TABLE t COMMENT = 'see /*! here */; and more'");
        assert_eq!(stmt.clauses.len(), 1);
    }
}
