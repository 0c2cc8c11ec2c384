//! Index, foreign-key and CHECK definitions, and table options: the parts of CREATE TABLE
//! and ALTER TABLE that SHOW CREATE TABLE prints in a regular form. Parsed here rather than by
//! sqlparser, which rejects several of the forms the servers print (index `INVISIBLE`,
//! `IGNORED`, space-separated table options).

use crate::lex::{Token, TokenKind, matching_paren, render, split_top_level};
use crate::model::{CheckConstraint, ForeignKey, IndexKind, IndexPart, ReferentialAction};

/// An index as written; the name may be missing (the server then derives one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexSpec {
    /// The name, when written.
    pub name: Option<String>,
    /// The kind.
    pub kind: IndexKind,
    /// The key parts.
    pub parts: Vec<IndexPart>,
    /// `IF NOT EXISTS` (MariaDB).
    pub if_not_exists: bool,
}

/// A foreign key as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForeignKeySpec {
    /// The constraint name (`CONSTRAINT sym` or the index name after FOREIGN KEY).
    pub name: Option<String>,
    /// The definition, with an empty name when none was written.
    pub key: ForeignKey,
}

/// A constraint or index definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySpec {
    /// PRIMARY KEY, UNIQUE, KEY/INDEX, FULLTEXT, SPATIAL, VECTOR.
    Index(IndexSpec),
    /// FOREIGN KEY.
    ForeignKey(ForeignKeySpec),
    /// CHECK.
    Check(CheckConstraint),
    /// MariaDB `PERIOD FOR …`.
    Period,
}

/// True when the element starts like a key or constraint definition rather than a column.
pub(crate) fn starts_key(tokens: &[Token]) -> bool {
    let Some(first) = tokens.first() else {
        return false;
    };
    if first.kind != TokenKind::Word {
        return false;
    }
    let starts = [
        "PRIMARY",
        "UNIQUE",
        "KEY",
        "INDEX",
        "FULLTEXT",
        "SPATIAL",
        "CONSTRAINT",
        "FOREIGN",
        "CHECK",
    ];
    if starts.iter().any(|w| first.is_word(w)) {
        return true;
    }
    // VECTOR KEY/INDEX (MariaDB) and PERIOD FOR (system versioning, application periods).
    let second = tokens.get(1);
    (first.is_word("VECTOR") && second.is_some_and(|t| t.is_word("KEY") || t.is_word("INDEX")))
        || (first.is_word("PERIOD") && second.is_some_and(|t| t.is_word("FOR")))
}

/// A small cursor over tokens.
pub(crate) struct Cursor<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first token.
    pub fn new(tokens: &'a [Token]) -> Self {
        Cursor { tokens, pos: 0 }
    }

    /// The current token.
    pub fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    /// The token `n` places ahead.
    pub fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.tokens.get(self.pos + n)
    }

    /// True when the current token is the word `keyword`.
    pub fn at_word(&self, keyword: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(keyword))
    }

    /// Consumes the word `keyword` if it is next.
    pub fn eat_word(&mut self, keyword: &str) -> bool {
        if self.at_word(keyword) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes the words in order if all of them are next.
    pub fn eat_words(&mut self, keywords: &[&str]) -> bool {
        let all = keywords
            .iter()
            .enumerate()
            .all(|(i, k)| self.peek_at(i).is_some_and(|t| t.is_word(k)));
        if all {
            self.pos += keywords.len();
        }
        all
    }

    /// Consumes the punctuation `c` if it is next.
    pub fn eat_punct(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes and returns the next token.
    pub fn next_token(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.pos);
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    /// Consumes an identifier (a word or a quoted identifier) and returns its value.
    pub fn identifier(&mut self, what: &str) -> Result<String, String> {
        match self.peek() {
            Some(token) if token.is_identifier() => {
                self.pos += 1;
                Ok(token.value.clone())
            }
            Some(token) => Err(format!("expected {what}, found `{}`", token.text)),
            None => Err(format!("expected {what}, found the end of the text")),
        }
    }

    /// Consumes an identifier that may be qualified (`a.b`) and returns its parts.
    pub fn qualified_identifier(&mut self, what: &str) -> Result<Vec<String>, String> {
        let mut parts = vec![self.identifier(what)?];
        while self.eat_punct('.') {
            parts.push(self.identifier(what)?);
        }
        Ok(parts)
    }

    /// Consumes a parenthesised group and returns the tokens inside it.
    pub fn group(&mut self, what: &str) -> Result<&'a [Token], String> {
        match self.peek() {
            Some(token) if token.is_punct('(') => {
                let close = matching_paren(self.tokens, self.pos)
                    .ok_or_else(|| format!("unclosed ( in {what}"))?;
                let inside = &self.tokens[self.pos + 1..close];
                self.pos = close + 1;
                Ok(inside)
            }
            Some(token) => Err(format!("expected ( to open {what}, found `{}`", token.text)),
            None => Err(format!(
                "expected ( to open {what}, found the end of the text"
            )),
        }
    }

    /// The tokens not yet consumed.
    pub fn rest(&self) -> &'a [Token] {
        &self.tokens[self.pos.min(self.tokens.len())..]
    }

    /// True when every token has been consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    /// Fails unless every token has been consumed.
    pub fn expect_end(&self, what: &str) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(format!("unexpected `{}` after {what}", token.text)),
        }
    }
}

/// Parses a key or constraint definition (a CREATE TABLE element or what follows ADD).
pub(crate) fn parse_key(tokens: &[Token]) -> Result<KeySpec, String> {
    let mut cursor = Cursor::new(tokens);
    if cursor.eat_words(&["PERIOD", "FOR"]) {
        return Ok(KeySpec::Period);
    }
    let mut constraint_name = None;
    if cursor.eat_word("CONSTRAINT") {
        let next_is_kind = cursor.peek().is_some_and(|t| {
            ["PRIMARY", "UNIQUE", "FOREIGN", "CHECK"]
                .iter()
                .any(|w| t.is_word(w))
        });
        if !next_is_kind {
            constraint_name = Some(cursor.identifier("a constraint name")?);
        }
    }
    if cursor.eat_word("CHECK") {
        let expression = render(cursor.group("the CHECK expression")?);
        let mut enforced = true;
        if cursor.eat_words(&["NOT", "ENFORCED"]) {
            enforced = false;
        } else {
            cursor.eat_word("ENFORCED");
        }
        cursor.expect_end("the CHECK constraint")?;
        return Ok(KeySpec::Check(CheckConstraint {
            name: constraint_name,
            expression,
            enforced,
            column: None,
        }));
    }
    if cursor.eat_words(&["FOREIGN", "KEY"]) {
        let if_not_exists = cursor.eat_words(&["IF", "NOT", "EXISTS"]);
        let _ = if_not_exists;
        let mut index_name = None;
        if cursor.peek().is_some_and(Token::is_identifier) {
            index_name = Some(cursor.identifier("a foreign key name")?);
        }
        let columns = identifier_list(cursor.group("the foreign key columns")?)?;
        if !cursor.eat_word("REFERENCES") {
            return Err("expected REFERENCES after the foreign key columns".to_owned());
        }
        let referenced_table = cursor
            .qualified_identifier("the referenced table")?
            .join(".");
        let referenced_columns = identifier_list(cursor.group("the referenced columns")?)?;
        let (mut on_delete, mut on_update) = (None, None);
        while !cursor.at_end() {
            if cursor.eat_word("MATCH") {
                cursor.next_token();
            } else if cursor.eat_words(&["ON", "DELETE"]) {
                on_delete = Some(referential_action(&mut cursor)?);
            } else if cursor.eat_words(&["ON", "UPDATE"]) {
                on_update = Some(referential_action(&mut cursor)?);
            } else {
                return Err(format!(
                    "unexpected `{}` in the foreign key",
                    cursor.peek().map_or("", |t| &t.text)
                ));
            }
        }
        let name = constraint_name.or(index_name);
        return Ok(KeySpec::ForeignKey(ForeignKeySpec {
            name: name.clone(),
            key: ForeignKey {
                name: name.unwrap_or_default(),
                columns,
                referenced_table,
                referenced_columns,
                on_delete,
                on_update,
            },
        }));
    }
    let kind = if cursor.eat_words(&["PRIMARY", "KEY"]) {
        IndexKind::Primary
    } else if cursor.eat_word("UNIQUE") {
        let _ = cursor.eat_word("KEY") || cursor.eat_word("INDEX");
        IndexKind::Unique
    } else if cursor.eat_word("FULLTEXT") {
        let _ = cursor.eat_word("KEY") || cursor.eat_word("INDEX");
        IndexKind::Fulltext
    } else if cursor.eat_word("SPATIAL") {
        let _ = cursor.eat_word("KEY") || cursor.eat_word("INDEX");
        IndexKind::Spatial
    } else if cursor.eat_word("VECTOR") {
        let _ = cursor.eat_word("KEY") || cursor.eat_word("INDEX");
        IndexKind::Vector
    } else if cursor.eat_word("KEY") || cursor.eat_word("INDEX") {
        IndexKind::Plain
    } else {
        return Err(format!(
            "expected PRIMARY KEY, UNIQUE, KEY, INDEX, FULLTEXT, SPATIAL, FOREIGN KEY or CHECK, found `{}`",
            cursor.peek().map_or("the end", |t| t.text.as_str())
        ));
    };
    let if_not_exists = cursor.eat_words(&["IF", "NOT", "EXISTS"]);
    let mut name = None;
    if kind != IndexKind::Primary
        && cursor.peek().is_some_and(Token::is_identifier)
        && !cursor.at_word("USING")
    {
        name = Some(cursor.identifier("an index name")?);
    }
    if cursor.eat_word("USING") || cursor.eat_word("TYPE") {
        cursor.next_token();
    }
    let parts = key_parts(cursor.group("the key parts")?)?;
    // Index options (USING, COMMENT, KEY_BLOCK_SIZE, VISIBLE/INVISIBLE, IGNORED, WITH PARSER,
    // ENGINE_ATTRIBUTE, CLUSTERING, M=, DISTANCE=) do not change what the index enforces.
    if kind == IndexKind::Primary {
        name = Some("PRIMARY".to_owned());
    } else if name.is_none() {
        name = constraint_name;
    }
    Ok(KeySpec::Index(IndexSpec {
        name,
        kind,
        parts,
        if_not_exists,
    }))
}

fn referential_action(cursor: &mut Cursor<'_>) -> Result<ReferentialAction, String> {
    if cursor.eat_word("RESTRICT") {
        Ok(ReferentialAction::Restrict)
    } else if cursor.eat_word("CASCADE") {
        Ok(ReferentialAction::Cascade)
    } else if cursor.eat_words(&["SET", "NULL"]) {
        Ok(ReferentialAction::SetNull)
    } else if cursor.eat_words(&["SET", "DEFAULT"]) {
        Ok(ReferentialAction::SetDefault)
    } else if cursor.eat_words(&["NO", "ACTION"]) {
        Ok(ReferentialAction::NoAction)
    } else {
        Err("expected RESTRICT, CASCADE, SET NULL, SET DEFAULT or NO ACTION".to_owned())
    }
}

/// Parses `a, b, c` (identifiers).
pub(crate) fn identifier_list(tokens: &[Token]) -> Result<Vec<String>, String> {
    split_top_level(tokens, ',')
        .into_iter()
        .map(|piece| {
            let mut cursor = Cursor::new(piece);
            let name = cursor.identifier("a column name")?;
            cursor.expect_end("a column name")?;
            Ok(name)
        })
        .collect()
}

fn key_parts(tokens: &[Token]) -> Result<Vec<IndexPart>, String> {
    if tokens.is_empty() {
        return Err("the key has no parts".to_owned());
    }
    split_top_level(tokens, ',')
        .into_iter()
        .map(|piece| {
            let mut cursor = Cursor::new(piece);
            let part = if cursor.peek().is_some_and(|t| t.is_punct('(')) {
                let expression = render(cursor.group("a functional key part")?);
                IndexPart {
                    column: None,
                    expression: Some(expression),
                    prefix: None,
                }
            } else {
                let column = cursor.identifier("a key column")?;
                let mut prefix = None;
                if cursor.peek().is_some_and(|t| t.is_punct('(')) {
                    let inside = cursor.group("a prefix length")?;
                    let text = render(inside);
                    prefix = Some(
                        text.parse::<u32>()
                            .map_err(|_| format!("prefix length `{text}` is not a number"))?,
                    );
                }
                IndexPart {
                    column: Some(column),
                    expression: None,
                    prefix,
                }
            };
            let _ = cursor.eat_word("ASC") || cursor.eat_word("DESC");
            cursor.expect_end("a key part")?;
            Ok(part)
        })
        .collect()
}

/// One table option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableOption {
    /// The option name, uppercase (`ENGINE`, `DEFAULT CHARSET` is read as `CHARSET`).
    pub key: String,
    /// The value as written (unquoted for strings).
    pub value: String,
}

const TWO_WORD_OPTIONS: &[(&str, &str)] = &[("DATA", "DIRECTORY"), ("INDEX", "DIRECTORY")];

/// Parses space- or comma-separated table options. Stops before `PARTITION BY` and returns
/// the tokens from there on.
pub(crate) fn parse_table_options(
    tokens: &[Token],
) -> Result<(Vec<TableOption>, &[Token]), String> {
    let mut cursor = Cursor::new(tokens);
    let mut options = Vec::new();
    loop {
        cursor.eat_punct(',');
        if cursor.at_end() {
            break;
        }
        if cursor.at_word("PARTITION")
            || cursor.at_word("WITH") && cursor.peek_at(1).is_some_and(|t| t.is_word("SYSTEM"))
        {
            if cursor.eat_words(&["WITH", "SYSTEM", "VERSIONING"]) {
                options.push(TableOption {
                    key: "WITH SYSTEM VERSIONING".to_owned(),
                    value: String::new(),
                });
                continue;
            }
            break;
        }
        cursor.eat_word("DEFAULT");
        let key = if cursor.eat_words(&["CHARACTER", "SET"]) || cursor.eat_word("CHARSET") {
            "CHARSET".to_owned()
        } else if cursor.eat_word("COLLATE") {
            "COLLATE".to_owned()
        } else if let Some((a, b)) = TWO_WORD_OPTIONS
            .iter()
            .find(|(a, b)| cursor.eat_words(&[a, b]))
        {
            format!("{a} {b}")
        } else {
            let token = cursor.next_token().ok_or("expected a table option")?;
            // MariaDB prints engine-defined options quoted: `PAGE_COMPRESSED`='ON'.
            if !token.is_identifier() {
                return Err(format!("expected a table option, found `{}`", token.text));
            }
            token.value.to_ascii_uppercase()
        };
        cursor.eat_punct('=');
        let value = match cursor.peek() {
            Some(token) if token.is_punct('(') => render(cursor.group("the option value")?),
            Some(token) if token.kind != TokenKind::Punct(',') => {
                cursor.next_token();
                token.value.clone()
            }
            _ => return Err(format!("table option {key} has no value")),
        };
        options.push(TableOption { key, value });
    }
    Ok((options, cursor.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::{ExecutableComments, lex};

    fn key(text: &str) -> KeySpec {
        let lexed = lex(text, ExecutableComments::Unwrap).unwrap();
        parse_key(&lexed.tokens).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn indexes_as_servers_print_them() {
        let KeySpec::Index(pk) = key("PRIMARY KEY (`id`)") else {
            panic!()
        };
        assert_eq!(
            (pk.name.as_deref(), pk.kind),
            (Some("PRIMARY"), IndexKind::Primary)
        );
        let KeySpec::Index(k) = key(
            "KEY `k1` (`name`(10),`created` DESC) USING BTREE COMMENT 'c' /*!80000 INVISIBLE */",
        ) else {
            panic!()
        };
        assert_eq!(k.parts.len(), 2);
        assert_eq!(k.parts[0].prefix, Some(10));
        let KeySpec::Index(u) = key("UNIQUE KEY `uk` (`a`,`b`)") else {
            panic!()
        };
        assert_eq!(u.kind, IndexKind::Unique);
        let KeySpec::Index(f) = key("KEY `fx` ((lower(`name`)))") else {
            panic!()
        };
        assert!(f.parts[0].column.is_none());
        let KeySpec::Index(named) = key("CONSTRAINT `c` UNIQUE (`a`)") else {
            panic!()
        };
        assert_eq!(named.name.as_deref(), Some("c"));
    }

    #[test]
    fn foreign_keys_and_checks() {
        let KeySpec::ForeignKey(fk) = key(
            "CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `parent` (`id`) ON DELETE CASCADE ON UPDATE NO ACTION",
        ) else {
            panic!()
        };
        assert!(fk.key.cascades());
        assert_eq!(fk.name.as_deref(), Some("fk"));
        let KeySpec::Check(check) =
            key("CONSTRAINT `t_chk_1` CHECK ((`a` > 0)) /*!80016 NOT ENFORCED */")
        else {
            panic!()
        };
        assert!(!check.enforced);
    }

    #[test]
    fn table_options_in_both_spellings() {
        let lexed = lex(
            "ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='a b' PARTITION BY HASH (id)",
            ExecutableComments::Unwrap,
        )
        .unwrap();
        let (options, rest) = parse_table_options(&lexed.tokens).unwrap();
        let keys: Vec<_> = options.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["ENGINE", "AUTO_INCREMENT", "CHARSET", "COLLATE", "COMMENT"]
        );
        assert_eq!(options[4].value, "a b");
        assert!(rest[0].is_word("PARTITION"));
    }
}
