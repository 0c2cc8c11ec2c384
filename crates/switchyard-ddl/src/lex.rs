//! A small MySQL/MariaDB tokenizer that sees the raw text as the server does.
//!
//! It exists for what a parser cannot be trusted with: finding executable comments
//! (`/*! … */`, `/*!50100 … */`, MariaDB's `/*M! … */`) outside string literals and quoted
//! identifiers, counting statements, and splitting a statement into its top-level clauses.
//! sqlparser unwraps executable comments silently, so they are found here first.

use std::fmt;

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An unquoted word: a keyword or an identifier (`ALTER`, `t1`, `utf8mb4_bin`).
    Word,
    /// A backtick-quoted identifier; the token's `value` is unescaped.
    QuotedIdent,
    /// A string literal in single or double quotes; the token's `value` is unescaped.
    Str,
    /// A number (`11`, `1.5e3`, `0x1F`).
    Number,
    /// Any other character (`(`, `)`, `,`, `;`, `=`, `.`, operators).
    Punct(char),
}

/// One token with its place in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// What kind of token it is.
    pub kind: TokenKind,
    /// The token as written.
    pub text: String,
    /// The unescaped value (identifier name, string contents); equal to `text` for words.
    pub value: String,
    /// Byte offset of the first character in the input.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

impl Token {
    /// True for an unquoted word equal to `keyword`, ignoring letter case.
    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// True for the punctuation character `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }

    /// True when the token can name something (a word or a quoted identifier).
    pub fn is_identifier(&self) -> bool {
        matches!(self.kind, TokenKind::Word | TokenKind::QuotedIdent)
    }
}

/// An executable comment found in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecutableComment {
    /// Byte offset of `/*`.
    pub start: usize,
    /// Byte offset just past `*/`.
    pub end: usize,
    /// Byte offset where the comment's executable content begins (after `!`, `M!` and version digits).
    pub content_start: usize,
    /// Byte offset where the content ends (before `*/`).
    pub content_end: usize,
}

/// What the tokenizer does with executable comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExecutableComments {
    /// Record them and do not tokenize their content (the caller refuses the input).
    Report,
    /// Tokenize their content as if the comment markers were absent, as the server does.
    Unwrap,
    /// Tokenize their content where this server would run it and skip them where it reads
    /// them as comments: `/*!NNNNN … */` runs on servers of version NNNNN and later (every
    /// server without a number), `/*M!NNNNNN … */` only on MariaDB (MySQL manual, "Comments";
    /// MariaDB knowledge base, "Comment Syntax").
    Server {
        /// True for MariaDB, which also runs `/*M! … */`.
        mariadb: bool,
        /// The server's version as the comments number it: major × 10000 + minor × 100 + patch.
        version: u32,
    },
}

/// A tokenized text.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lexed {
    /// The tokens, comments and whitespace removed.
    pub tokens: Vec<Token>,
    /// Executable comments, in order of appearance.
    pub executable_comments: Vec<ExecutableComment>,
}

/// Why the text could not be tokenized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LexError {
    /// A quote was opened and never closed.
    UnterminatedQuote { quote: char, offset: usize },
    /// A `/*` comment was opened and never closed.
    UnterminatedComment { offset: usize },
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::UnterminatedQuote { quote, offset } => {
                write!(
                    f,
                    "the quote {quote} opened at byte {offset} is never closed"
                )
            }
            LexError::UnterminatedComment { offset } => {
                write!(f, "the comment opened at byte {offset} is never closed")
            }
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || (!c.is_ascii() && !c.is_whitespace())
}

/// Tokenizes `input`.
pub(crate) fn lex(input: &str, mode: ExecutableComments) -> Result<Lexed, LexError> {
    let mut out = Lexed::default();
    lex_range(input, 0, input.len(), mode, &mut out)?;
    Ok(out)
}

fn lex_range(
    input: &str,
    from: usize,
    to: usize,
    mode: ExecutableComments,
    out: &mut Lexed,
) -> Result<(), LexError> {
    let bytes = input.as_bytes();
    let mut i = from;
    while i < to {
        let c = input[i..].chars().next().unwrap_or(' ');
        let len = c.len_utf8();
        if c.is_whitespace() {
            i += len;
            continue;
        }
        // Comments.
        if c == '#'
            || (c == '-'
                && input[i..to].starts_with("--")
                && next_is_space_or_end(input, i + 2, to))
        {
            while i < to && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if input[i..to].starts_with("/*") {
            let close = input[i + 2..to].find("*/").map(|p| i + 2 + p);
            let Some(close) = close else {
                return Err(LexError::UnterminatedComment { offset: i });
            };
            let body_start = i + 2;
            let executable = if input[body_start..close].starts_with('!') {
                Some(body_start + 1)
            } else if input[body_start..close].starts_with("M!")
                || input[body_start..close].starts_with("m!")
            {
                Some(body_start + 2)
            } else {
                None
            };
            if let Some(mut content_start) = executable {
                let mariadb_only = content_start == body_start + 2;
                // The version number (5 or 6 digits in practice; any digits here).
                let digits_start = content_start;
                while content_start < close && bytes[content_start].is_ascii_digit() {
                    content_start += 1;
                }
                let needs: u64 = input[digits_start..content_start].parse().unwrap_or(0);
                out.executable_comments.push(ExecutableComment {
                    start: i,
                    end: close + 2,
                    content_start,
                    content_end: close,
                });
                let runs = match mode {
                    ExecutableComments::Report => false,
                    ExecutableComments::Unwrap => true,
                    ExecutableComments::Server { mariadb, version } => {
                        (mariadb || !mariadb_only) && needs <= u64::from(version)
                    }
                };
                if runs {
                    lex_range(input, content_start, close, mode, out)?;
                }
            }
            i = close + 2;
            continue;
        }
        // Quoted things.
        if c == '\'' || c == '"' || c == '`' {
            let (value, end) = read_quoted(input, i, to, c)?;
            let kind = if c == '`' {
                TokenKind::QuotedIdent
            } else {
                TokenKind::Str
            };
            out.tokens.push(Token {
                kind,
                text: input[i..end].to_owned(),
                value,
                start: i,
                end,
            });
            i = end;
            continue;
        }
        // Numbers (a word that starts with a digit but continues with letters is an identifier,
        // such as `1col`; hexadecimal `0x1F` stays a number).
        if c.is_ascii_digit() || (c == '.' && i + 1 < to && bytes[i + 1].is_ascii_digit()) {
            let mut j = i;
            let mut seen_exp = false;
            while j < to {
                let b = bytes[j];
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'$' {
                    if (b == b'e' || b == b'E') && !seen_exp {
                        seen_exp = true;
                        if j + 1 < to && (bytes[j + 1] == b'+' || bytes[j + 1] == b'-') {
                            j += 1;
                        }
                    }
                    j += 1;
                } else if !b.is_ascii() {
                    j += input[j..].chars().next().map_or(1, char::len_utf8);
                } else {
                    break;
                }
            }
            let text = &input[i..j];
            let numeric = text.chars().all(|ch| ch.is_ascii_digit() || ch == '.')
                || text.starts_with("0x")
                || text.starts_with("0b")
                || is_float_literal(text);
            let kind = if numeric {
                TokenKind::Number
            } else {
                TokenKind::Word
            };
            out.tokens.push(Token {
                kind,
                text: text.to_owned(),
                value: text.to_owned(),
                start: i,
                end: j,
            });
            i = j;
            continue;
        }
        if is_word_char(c) {
            let mut j = i;
            while j < to {
                let ch = input[j..].chars().next().unwrap_or(' ');
                if is_word_char(ch) {
                    j += ch.len_utf8();
                } else {
                    break;
                }
            }
            let text = &input[i..j];
            out.tokens.push(Token {
                kind: TokenKind::Word,
                text: text.to_owned(),
                value: text.to_owned(),
                start: i,
                end: j,
            });
            i = j;
            continue;
        }
        out.tokens.push(Token {
            kind: TokenKind::Punct(c),
            text: c.to_string(),
            value: c.to_string(),
            start: i,
            end: i + len,
        });
        i += len;
    }
    Ok(())
}

fn is_float_literal(text: &str) -> bool {
    let mut parts = text.splitn(2, ['e', 'E']);
    let mantissa = parts.next().unwrap_or("");
    let exponent = parts.next();
    let mantissa_ok =
        !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.');
    let exponent_ok = exponent.is_some_and(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

fn next_is_space_or_end(input: &str, at: usize, to: usize) -> bool {
    at >= to
        || input[at..]
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c.is_control())
}

/// Reads a quoted string or identifier starting at `start` (the opening quote).
/// Returns the unescaped value and the offset just past the closing quote.
fn read_quoted(
    input: &str,
    start: usize,
    to: usize,
    quote: char,
) -> Result<(String, usize), LexError> {
    let mut value = String::new();
    let mut chars = input[start + 1..to].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        let absolute = start + 1 + offset;
        if c == quote {
            if chars.peek().is_some_and(|&(_, next)| next == quote) {
                chars.next();
                value.push(quote);
                continue;
            }
            return Ok((value, absolute + c.len_utf8()));
        }
        if c == '\\' && quote != '`' {
            match chars.next() {
                Some((_, escaped)) => value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'Z' => '\u{1a}',
                    'b' => '\u{8}',
                    other => other,
                }),
                None => break,
            }
            continue;
        }
        value.push(c);
    }
    Err(LexError::UnterminatedQuote {
        quote,
        offset: start,
    })
}

/// Splits tokens at top-level occurrences of `separator` (outside parentheses).
/// Empty pieces are kept so that callers can report them.
pub(crate) fn split_top_level(tokens: &[Token], separator: char) -> Vec<&[Token]> {
    let mut pieces = Vec::new();
    let mut depth = 0usize;
    let mut begin = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        match token.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => depth = depth.saturating_sub(1),
            TokenKind::Punct(c) if c == separator && depth == 0 => {
                pieces.push(&tokens[begin..index]);
                begin = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&tokens[begin..]);
    pieces
}

/// The index of the parenthesis that closes the one at `open`, if any.
pub(crate) fn matching_paren(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// The source text covered by `tokens` (from the first token's start to the last one's end).
pub(crate) fn source_text<'a>(input: &'a str, tokens: &[Token]) -> &'a str {
    match (tokens.first(), tokens.last()) {
        (Some(first), Some(last)) if first.start <= last.end && last.end <= input.len() => {
            &input[first.start..last.end]
        }
        _ => "",
    }
}

/// Joins token texts for re-parsing: tokens that touched in the input stay together (`<>`,
/// `->>`), others are separated by one space.
pub(crate) fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut previous_end = None;
    for token in tokens {
        if previous_end.is_some_and(|end| end != token.start) {
            out.push(' ');
        }
        out.push_str(&token.text);
        previous_end = Some(token.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<String> {
        lex(input, ExecutableComments::Report)
            .unwrap()
            .tokens
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn strings_hide_comment_markers_and_semicolons() {
        let lexed = lex(
            "ALTER TABLE t COMMENT = '/*! x */; y'",
            ExecutableComments::Report,
        )
        .unwrap();
        assert!(lexed.executable_comments.is_empty());
        assert_eq!(lexed.tokens.last().unwrap().value, "/*! x */; y");
        assert_eq!(split_top_level(&lexed.tokens, ';').len(), 1);
    }

    #[test]
    fn executable_comments_are_found_with_and_without_versions() {
        for text in [
            "a /*! DROP TABLE t */ b",
            "a /*!50100 x */ b",
            "a /*M!100100 x */ b",
            "a /*M! x */ b",
        ] {
            let lexed = lex(text, ExecutableComments::Report).unwrap();
            assert_eq!(lexed.executable_comments.len(), 1, "{text}");
            assert_eq!(words(text), vec!["a", "b"], "{text}");
        }
    }

    #[test]
    fn unwrap_mode_tokenizes_the_content() {
        let lexed = lex(
            "KEY k (a) /*!80000 INVISIBLE */",
            ExecutableComments::Unwrap,
        )
        .unwrap();
        let texts: Vec<_> = lexed.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, vec!["KEY", "k", "(", "a", ")", "INVISIBLE"]);
    }

    #[test]
    fn plain_comments_are_dropped_and_double_dash_needs_a_space() {
        assert_eq!(
            words("a -- c\nb # d\nc /* e */ d"),
            vec!["a", "b", "c", "d"]
        );
        assert_eq!(words("a--1"), vec!["a", "-", "-", "1"]);
    }

    #[test]
    fn quoted_identifiers_and_escapes() {
        let lexed = lex("`a``b` 'it''s' \"q\\\"\"", ExecutableComments::Report).unwrap();
        let values: Vec<_> = lexed.tokens.iter().map(|t| t.value.as_str()).collect();
        assert_eq!(values, vec!["a`b", "it's", "q\""]);
        assert_eq!(lexed.tokens[0].kind, TokenKind::QuotedIdent);
    }

    #[test]
    fn unterminated_things_are_errors() {
        assert!(matches!(
            lex("'abc", ExecutableComments::Report),
            Err(LexError::UnterminatedQuote { .. })
        ));
        assert!(matches!(
            lex("/* abc", ExecutableComments::Report),
            Err(LexError::UnterminatedComment { .. })
        ));
    }

    #[test]
    fn render_keeps_touching_operators_together() {
        let lexed = lex(
            "CHECK (c <> '' AND j->>'$.a' = 1)",
            ExecutableComments::Report,
        )
        .unwrap();
        assert_eq!(render(&lexed.tokens), "CHECK (c <> '' AND j->>'$.a' = 1)");
    }

    #[test]
    fn numbers_and_identifiers_starting_with_digits() {
        let lexed = lex("1col 11 1.5e3 0x1F", ExecutableComments::Report).unwrap();
        let kinds: Vec<_> = lexed.tokens.iter().map(|t| t.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                TokenKind::Word,
                TokenKind::Number,
                TokenKind::Number,
                TokenKind::Number
            ]
        );
    }
}
