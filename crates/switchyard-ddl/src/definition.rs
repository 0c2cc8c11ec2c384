//! Reading the table's current definition: the CREATE TABLE statement SHOW CREATE TABLE
//! prints, in MySQL's or MariaDB's form.
//!
//! The server's own output may contain versioned comments (`/*!50100 PARTITION BY … */`,
//! `/*!80000 INVISIBLE */`, `/*!80003 SRID 4326 */`); they are read as the server reads them.
//! Partitioning does not change row images, so the partition clause is recorded and skipped.

use switchyard_plan::versions::Flavor;

use crate::alter::{single_statement, table_name};
use crate::apply::ClauseEffects;
use crate::column::{charset_of_collation, normalize_charset, normalize_collation, parse_column};
use crate::constraints::{add_inline_constraints, add_key};
use crate::error::{DdlError, excerpt};
use crate::keys::{Cursor, KeySpec, parse_key, parse_table_options, starts_key};
use crate::lex::{ExecutableComments, render, split_top_level};
use crate::model::{Table, TableOptions};

const WHAT: &str = "table definition";

fn syntax(text: &str, detail: impl Into<String>) -> DdlError {
    DdlError::Syntax {
        what: "the table definition",
        text: excerpt(text),
        detail: format!(
            "{}; give the exact output of SHOW CREATE TABLE",
            detail.into()
        ),
    }
}

/// Parses a CREATE TABLE statement into a [`Table`].
pub fn parse_table(flavor: Flavor, text: &str) -> Result<Table, DdlError> {
    let tokens = single_statement(text, WHAT, "CREATE TABLE", ExecutableComments::Unwrap)?;
    let mut cursor = Cursor::new(&tokens);
    let wrong = || DdlError::WrongStatement {
        what: WHAT,
        expected: "a CREATE TABLE",
        found: tokens
            .iter()
            .take(2)
            .map(|t| t.text.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(" "),
    };
    if !cursor.eat_word("CREATE") {
        return Err(wrong());
    }
    let _ = cursor.eat_words(&["OR", "REPLACE"]);
    let _ = cursor.eat_word("TEMPORARY");
    if !cursor.eat_word("TABLE") {
        return Err(wrong());
    }
    let _ = cursor.eat_words(&["IF", "NOT", "EXISTS"]);
    let name = cursor
        .qualified_identifier("the table name")
        .and_then(table_name)
        .map_err(|detail| syntax(text, detail))?;
    if cursor.at_word("LIKE") || cursor.at_word("AS") || cursor.at_word("SELECT") {
        return Err(syntax(
            text,
            "CREATE TABLE … LIKE/AS SELECT does not define the columns",
        ));
    }
    let body = cursor
        .group("the column list")
        .map_err(|detail| syntax(text, detail))?;
    let (options, rest) =
        parse_table_options(cursor.rest()).map_err(|detail| syntax(text, detail))?;
    let mut table_options = TableOptions::default();
    for option in &options {
        match option.key.as_str() {
            "ENGINE" => table_options.engine = Some(option.value.clone()),
            "CHARSET" => table_options.charset = Some(normalize_charset(&option.value)),
            "COLLATE" => {
                let collation = normalize_collation(&option.value);
                if table_options.charset.is_none() {
                    table_options.charset = charset_of_collation(&collation);
                }
                table_options.collation = Some(collation);
            }
            "WITH SYSTEM VERSIONING" => table_options.system_versioned = true,
            _ => {}
        }
    }
    if let Some(first) = rest.first() {
        if first.is_word("PARTITION") {
            table_options.partitioned = true;
        } else {
            return Err(syntax(
                text,
                format!("unexpected `{}` after the table options", first.text),
            ));
        }
    }
    let mut table = Table {
        name,
        columns: Vec::new(),
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        checks: Vec::new(),
        options: table_options,
        next_id: 0,
    };
    let mut effects = ClauseEffects::default();
    let mut keys = Vec::new();
    let mut specs = Vec::new();
    for element in split_top_level(body, ',') {
        if element.is_empty() {
            return Err(syntax(text, "the column list has an empty element"));
        }
        if starts_key(element) {
            keys.push(parse_key(element).map_err(|detail| syntax(&render(element), detail))?);
            continue;
        }
        let spec = parse_column(flavor, element).map_err(|detail| DdlError::Syntax {
            what: "the column definition",
            text: excerpt(&render(element)),
            detail: format!("{detail}; give the exact output of SHOW CREATE TABLE"),
        })?;
        if spec.system_period {
            table.options.system_versioned = true;
        }
        if table.column(&spec.column.name).is_some() {
            return Err(syntax(
                text,
                format!("column `{}` is defined twice", spec.column.name),
            ));
        }
        let mut column = spec.resolve(
            table.options.charset.as_deref(),
            table.options.collation.as_deref(),
        );
        column.id = table.next_id;
        table.next_id += 1;
        specs.push((spec, column.id));
        table.columns.push(column);
    }
    if table.columns.is_empty() {
        return Err(syntax(text, "the table has no columns"));
    }
    for (spec, id) in &specs {
        add_inline_constraints(flavor, &mut table, spec, *id, &mut effects)
            .map_err(|e| syntax(text, e.describe()))?;
    }
    for key in &keys {
        if *key == KeySpec::Period {
            continue;
        }
        add_key(flavor, &mut table, key, &mut effects).map_err(|e| syntax(text, e.describe()))?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IndexKind, LobSize, TypeKind};

    const MARIADB: &str = "CREATE TABLE `t` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  `price` decimal(10,2) unsigned NOT NULL DEFAULT 0.00,
  `created` datetime(3) NOT NULL DEFAULT current_timestamp(3) ON UPDATE current_timestamp(3),
  `state` enum('a','b','c') NOT NULL DEFAULT 'a',
  `doc` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`doc`)),
  `g` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL,
  `note` varchar(10) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_name` (`name`),
  KEY `idx_created` (`created`)
) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci COMMENT='hello'";

    const MYSQL: &str = "CREATE TABLE `t` (
  `id` int NOT NULL AUTO_INCREMENT,
  `j` json DEFAULT NULL,
  `v` int GENERATED ALWAYS AS ((`id` + 1)) STORED,
  `s` set('x','y') DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `k1` (`v`) /*!80000 INVISIBLE */,
  CONSTRAINT `t_chk_1` CHECK ((`id` > 0))
) ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci
/*!50100 PARTITION BY RANGE (`id`)
(PARTITION p0 VALUES LESS THAN (10) ENGINE = InnoDB,
 PARTITION p1 VALUES LESS THAN MAXVALUE ENGINE = InnoDB) */";

    #[test]
    fn mariadb_show_create_table() {
        let table = parse_table(Flavor::Mariadb, MARIADB).unwrap();
        assert_eq!(table.columns.len(), 8);
        assert_eq!(table.options.charset.as_deref(), Some("latin1"));
        let note = table.column("note").unwrap();
        assert_eq!(note.ty.collation.as_deref(), Some("latin1_swedish_ci"));
        let doc = table.column("DOC").unwrap();
        assert_eq!(
            doc.ty.kind,
            TypeKind::Text {
                size: LobSize::Long
            }
        );
        assert_eq!(table.checks.len(), 1);
        assert_eq!(table.checks[0].column.as_deref(), Some("doc"));
        assert_eq!(table.index("uk_name").unwrap().kind, IndexKind::Unique);
        assert!(table.column("g").unwrap().generated.is_some());
    }

    #[test]
    fn mysql_show_create_table_with_partitions_and_versioned_comments() {
        let table = parse_table(Flavor::Mysql, MYSQL).unwrap();
        assert!(table.options.partitioned);
        assert_eq!(table.column("j").unwrap().ty.kind, TypeKind::Json);
        assert_eq!(table.checks[0].name.as_deref(), Some("t_chk_1"));
        assert!(table.index("k1").is_some());
        assert!(!table.column("id").unwrap().nullable);
    }

    #[test]
    fn bare_partition_clause_and_trailing_semicolon() {
        let text = "CREATE TABLE t (id INT NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB PARTITION BY HASH (id) PARTITIONS 4;";
        assert!(
            parse_table(Flavor::Mysql, text)
                .unwrap()
                .options
                .partitioned
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            ("ALTER TABLE t ADD c INT", "category:wrong-statement"),
            (
                "CREATE TABLE t (a INT); CREATE TABLE u (a INT)",
                "category:several-statements",
            ),
            ("CREATE TABLE t (a INT, a INT)", "category:syntax"),
            ("CREATE TABLE t (a INT, KEY (b))", "category:syntax"),
            ("CREATE TABLE t LIKE u", "category:syntax"),
            ("CREATE TABLE t (a FROB)", "category:syntax"),
            ("", "category:empty-input"),
        ];
        for (text, expected) in cases {
            let err = parse_table(Flavor::Mysql, text).expect_err(text);
            assert_eq!(
                format!("category:{}", err.category()),
                expected,
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn primary_key_columns_are_not_null_and_unnamed_keys_get_server_names() {
        let table = parse_table(
            Flavor::Mysql,
            "CREATE TABLE t (a INT, b INT, PRIMARY KEY (a), KEY (b), KEY (b))",
        )
        .unwrap();
        assert!(!table.column("a").unwrap().nullable);
        assert!(table.index("b").is_some() && table.index("b_2").is_some());
    }
}
