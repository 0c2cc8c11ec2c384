//! Why an input cannot be analyzed: each variant names the problem and what to do.

/// An input the analyzer refuses. Nothing is judged when one of these is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DdlError {
    /// An input was empty.
    #[error("the {what} is empty: give {expected}")]
    Empty {
        /// Which input (`table definition`, `ALTER statement`).
        what: &'static str,
        /// What to give instead.
        expected: &'static str,
    },
    /// The text could not be tokenized (an unclosed quote or comment).
    #[error("the {what} cannot be read: {detail}")]
    Unreadable {
        /// Which input.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The text holds an executable comment where they are not read (the tokenizer's report
    /// mode; [`crate::analyze`] reads them as the flavor's server does instead).
    #[error(
        "the ALTER statement contains the executable comment `{comment}`: the server runs what is inside \
         `/*! … */` and `/*M! … */` (it can hide another statement) while a parser may drop it; \
         write the clause without the comment markers"
    )]
    ExecutableComment {
        /// The comment as written (shortened when long).
        comment: String,
    },
    /// More than one statement was given.
    #[error("the {what} holds {count} statements: give exactly one {expected} statement")]
    SeveralStatements {
        /// Which input.
        what: &'static str,
        /// How many statements were found.
        count: usize,
        /// The statement kind expected.
        expected: &'static str,
    },
    /// The statement is of another kind.
    #[error(
        "the {what} is not {expected} (it starts with `{found}`): give exactly one {expected} statement"
    )]
    WrongStatement {
        /// Which input.
        what: &'static str,
        /// The statement kind expected (`an ALTER TABLE`, `a CREATE TABLE`).
        expected: &'static str,
        /// The first words found.
        found: String,
    },
    /// The statement's syntax could not be read.
    #[error("cannot read {what} `{text}`: {detail}")]
    Syntax {
        /// What was being read (`the clause`, `the column definition`, `the table definition`).
        what: &'static str,
        /// The text concerned (shortened when long).
        text: String,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// The ALTER names another table than the definition.
    #[error(
        "the ALTER statement changes table {alter} but the definition is of table {definition}: \
         give the SHOW CREATE TABLE output of the table being altered (names compare with letter case)"
    )]
    TableMismatch {
        /// The table of the definition.
        definition: String,
        /// The table of the ALTER statement.
        alter: String,
    },
    /// A clause refers to a column the table does not have.
    #[error("the clause `{clause}` refers to column `{column}`, which table {table} does not have")]
    UnknownColumn {
        /// The clause.
        clause: String,
        /// The missing column.
        column: String,
        /// The table.
        table: String,
    },
    /// A clause refers to an index or constraint the table does not have.
    #[error("the clause `{clause}` refers to {kind} `{name}`, which table {table} does not have")]
    UnknownObject {
        /// The clause.
        clause: String,
        /// `index`, `foreign key`, `constraint`, `primary key`.
        kind: &'static str,
        /// The missing name.
        name: String,
        /// The table.
        table: String,
    },
    /// A clause would create something that already exists (the server would refuse it too).
    #[error("the clause `{clause}` adds {kind} `{name}`, which table {table} already has")]
    AlreadyExists {
        /// The clause.
        clause: String,
        /// `column`, `index`, `primary key`, `constraint`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The table.
        table: String,
    },
    /// A clause the server would refuse for another reason.
    #[error("the clause `{clause}` cannot apply to table {table}: {detail}")]
    Inapplicable {
        /// The clause.
        clause: String,
        /// The table.
        table: String,
        /// Why, and what to do.
        detail: String,
    },
}

impl DdlError {
    /// A bounded category for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            DdlError::Empty { .. } => "empty-input",
            DdlError::Unreadable { .. } => "unreadable",
            DdlError::ExecutableComment { .. } => "executable-comment",
            DdlError::SeveralStatements { .. } => "several-statements",
            DdlError::WrongStatement { .. } => "wrong-statement",
            DdlError::Syntax { .. } => "syntax",
            DdlError::TableMismatch { .. } => "table-mismatch",
            DdlError::UnknownColumn { .. } => "unknown-column",
            DdlError::UnknownObject { .. } => "unknown-object",
            DdlError::AlreadyExists { .. } => "already-exists",
            DdlError::Inapplicable { .. } => "inapplicable",
        }
    }
}

/// Shortens `text` for an error message: one line, at most 120 characters.
pub(crate) fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        let mut short: String = one_line.chars().take(117).collect();
        short.push_str("...");
        short
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_distinct_and_messages_name_the_problem() {
        let errors = [
            DdlError::Empty {
                what: "ALTER statement",
                expected: "one ALTER TABLE statement",
            },
            DdlError::Unreadable {
                what: "ALTER statement",
                detail: "x".into(),
            },
            DdlError::ExecutableComment {
                comment: "/*! x */".into(),
            },
            DdlError::SeveralStatements {
                what: "ALTER statement",
                count: 2,
                expected: "ALTER TABLE",
            },
            DdlError::WrongStatement {
                what: "ALTER statement",
                expected: "an ALTER TABLE",
                found: "DROP".into(),
            },
            DdlError::Syntax {
                what: "the clause",
                text: "x".into(),
                detail: "y".into(),
            },
            DdlError::TableMismatch {
                definition: "`t`".into(),
                alter: "`u`".into(),
            },
            DdlError::UnknownColumn {
                clause: "DROP x".into(),
                column: "x".into(),
                table: "`t`".into(),
            },
            DdlError::UnknownObject {
                clause: "c".into(),
                kind: "index",
                name: "i".into(),
                table: "`t`".into(),
            },
            DdlError::AlreadyExists {
                clause: "c".into(),
                kind: "column",
                name: "c".into(),
                table: "`t`".into(),
            },
            DdlError::Inapplicable {
                clause: "c".into(),
                table: "`t`".into(),
                detail: "d".into(),
            },
        ];
        let mut categories: Vec<_> = errors.iter().map(DdlError::category).collect();
        categories.sort_unstable();
        categories.dedup();
        assert_eq!(categories.len(), errors.len());
        assert!(errors[7].to_string().contains("column `x`"));
        assert!(errors[2].to_string().contains("/*! x */"));
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("a\n   b"), "a b");
        assert_eq!(excerpt(&"x".repeat(300)).chars().count(), 120);
    }
}
