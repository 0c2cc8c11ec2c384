//! One test per rule, on both flavors where they agree and on each where they differ, against
//! table definitions as SHOW CREATE TABLE prints them.

mod common;

use common::{
    MARIADB_ORDERS, MYSQL_ORDERS, NO_PK, PLAIN, expect, items, orders, rules, run, run_with,
};
use switchyard_ddl::{Algorithm, AnalyzeOptions, DdlError, PrimaryMode, Rule, Verdict, analyze};
use switchyard_plan::versions::{Flavor, Version};

use Verdict::{Safe, SafeWithConversion as Conversion, Unsafe};

fn both(alter: &str, verdict: Verdict, rule: Rule) {
    for flavor in Flavor::ALL {
        expect(flavor, orders(flavor), alter, verdict, rule);
    }
}

#[test]
fn columns_added_at_the_end_with_a_value_the_replica_can_fill_are_safe() {
    for alter in [
        "ALTER TABLE orders ADD COLUMN extra INT DEFAULT NULL",
        "ALTER TABLE orders ADD COLUMN extra INT NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD extra VARCHAR(10) NOT NULL DEFAULT 'x', ADD extra2 INT",
        "ALTER TABLE orders ADD COLUMN (extra INT, extra2 INT DEFAULT 5)",
        "ALTER TABLE orders ADD COLUMN g INT AS (qty + 1) VIRTUAL",
    ] {
        for flavor in Flavor::ALL {
            let analysis = expect(flavor, orders(flavor), alter, Safe, Rule::ColumnAddedAtEnd);
            assert_eq!(analysis.primary, PrimaryMode::Online, "{alter}");
            assert!(analysis.settings.is_empty());
        }
    }
}

#[test]
fn extra_columns_the_replica_cannot_fill_the_same_way_are_unsafe() {
    // The implicit default fills the replica's rows as the primary's own ALTER fills its
    // existing rows (measured on both flavors).
    both(
        "ALTER TABLE orders ADD COLUMN extra INT NOT NULL",
        Safe,
        Rule::ColumnAddedAtEnd,
    );
    // MySQL's strict mode refuses the zero date the primary's own ALTER would give its rows.
    let zero_date = "ALTER TABLE orders ADD COLUMN at DATETIME NOT NULL";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        zero_date,
        Safe,
        Rule::ColumnAddedAtEnd,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        zero_date,
        Unsafe,
        Rule::ColumnAddedWithoutDefault,
    );
    both(
        "ALTER TABLE orders ADD COLUMN place POINT NOT NULL",
        Unsafe,
        Rule::ColumnAddedWithoutDefault,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders ADD COLUMN extra_doc JSON NOT NULL",
        Unsafe,
        Rule::ColumnAddedWithoutDefault,
    );
    both(
        "ALTER TABLE orders ADD COLUMN seen DATETIME DEFAULT CURRENT_TIMESTAMP",
        Unsafe,
        Rule::NondeterministicDefault,
    );
    both(
        "ALTER TABLE orders ADD COLUMN u VARCHAR(36) DEFAULT (uuid())",
        Unsafe,
        Rule::NondeterministicDefault,
    );
    both(
        "ALTER TABLE orders ADD COLUMN touched TIMESTAMP NULL DEFAULT NULL ON UPDATE CURRENT_TIMESTAMP",
        Unsafe,
        Rule::NondeterministicDefault,
    );
    for flavor in Flavor::ALL {
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE",
            Unsafe,
            Rule::AutoIncrementColumnAdded,
        );
    }
}

#[test]
fn mariadb_timestamps_without_null_take_a_varying_default() {
    let bare = "ALTER TABLE orders ADD COLUMN ts TIMESTAMP";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        bare,
        Unsafe,
        Rule::NondeterministicDefault,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        bare,
        Safe,
        Rule::ColumnAddedAtEnd,
    );
    let explicit = "ALTER TABLE orders ADD COLUMN ts TIMESTAMP NULL DEFAULT NULL";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        explicit,
        Safe,
        Rule::ColumnAddedAtEnd,
    );
}

#[test]
fn keys_and_checks_on_new_null_filled_columns_constrain_nothing_replicated() {
    for flavor in Flavor::ALL {
        let table = orders(flavor);
        let unique = "ALTER TABLE orders ADD COLUMN ext VARCHAR(20) DEFAULT NULL, ADD UNIQUE KEY uk_ext (ext)";
        expect(flavor, table, unique, Safe, Rule::ColumnAddedAtEnd);
        let defaulted =
            "ALTER TABLE orders ADD COLUMN ext INT NOT NULL DEFAULT 0, ADD UNIQUE KEY uk_ext (ext)";
        expect(flavor, table, defaulted, Unsafe, Rule::UniqueKeyAdded);
        let mixed = "ALTER TABLE orders ADD COLUMN ext INT DEFAULT NULL, ADD UNIQUE KEY uk_ext (ext, customer_id)";
        expect(flavor, table, mixed, Unsafe, Rule::UniqueKeyAdded);
        let parent = "ALTER TABLE orders ADD COLUMN parent_id BIGINT UNSIGNED NULL, \
                      ADD CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES orders (id)";
        let analysis = expect(flavor, table, parent, Safe, Rule::ColumnAddedAtEnd);
        assert_eq!(analysis.primary, PrimaryMode::Switchover);
        let checked =
            "ALTER TABLE orders ADD COLUMN pct INT DEFAULT 5 CHECK (pct BETWEEN 0 AND 100)";
        expect(flavor, table, checked, Safe, Rule::ColumnAddedAtEnd);
        let other = "ALTER TABLE orders ADD COLUMN pct INT DEFAULT 5, ADD CHECK (pct < qty)";
        expect(flavor, table, other, Unsafe, Rule::CheckConstraintAdded);
    }
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders ADD COLUMN j JSON",
        Safe,
        Rule::ColumnAddedAtEnd,
    );
}

#[test]
fn columns_added_before_existing_ones_shift_positions() {
    both(
        "ALTER TABLE orders ADD COLUMN extra INT AFTER qty",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    );
    both(
        "ALTER TABLE orders ADD COLUMN extra INT DEFAULT 0 FIRST",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    );
    both(
        "ALTER TABLE orders ADD COLUMN g INT AS (qty + 1) VIRTUAL AFTER id",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    );
    // Adding after the last column is adding at the end.
    both(
        "ALTER TABLE orders ADD COLUMN extra INT AFTER total",
        Safe,
        Rule::ColumnAddedAtEnd,
    );
}

#[test]
fn dropping_columns() {
    both(
        "ALTER TABLE orders DROP COLUMN ratio",
        Unsafe,
        Rule::ColumnDroppedNotLast,
    );
    let analysis = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders DROP COLUMN total",
    );
    assert_eq!(analysis.verdict, Safe);
    assert_eq!(analysis.clauses[0].rule, Rule::ColumnDroppedAtEnd);
    both(
        "ALTER TABLE orders DROP COLUMN total, DROP COLUMN loc",
        Safe,
        Rule::ColumnDroppedAtEnd,
    );
    both(
        "ALTER TABLE orders DROP COLUMN total, ADD COLUMN x INT",
        Unsafe,
        Rule::ColumnPositionReused,
    );
}

#[test]
fn reordering_columns() {
    both(
        "ALTER TABLE orders MODIFY ratio FLOAT DEFAULT NULL AFTER id",
        Unsafe,
        Rule::ColumnReordered,
    );
    both(
        "ALTER TABLE orders MODIFY COLUMN id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT AFTER total",
        Unsafe,
        Rule::ColumnReordered,
    );
    // FIRST on the first column moves nothing.
    let analysis = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders MODIFY id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT FIRST",
    );
    assert_eq!(analysis.verdict, Safe);
}

#[test]
fn renames_in_place_are_safe_for_row_images() {
    let analysis = expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders RENAME COLUMN code TO order_code",
        Safe,
        Rule::ColumnRenamed,
    );
    assert!(
        analysis.clauses[0]
            .reason
            .contains("queries by the old name")
    );
    assert_eq!(analysis.clauses[0].algorithm, Algorithm::Instant);
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders CHANGE code order_code VARCHAR(10) NOT NULL",
        Safe,
        Rule::ColumnRenamed,
    );
    // A rename that also changes the type is judged on the type.
    both(
        "ALTER TABLE orders CHANGE qty quantity VARCHAR(10)",
        Unsafe,
        Rule::TypeFamilyChange,
    );
}

#[test]
fn widening_needs_the_conversion_variable() {
    for (alter, rule) in [
        (
            "ALTER TABLE orders MODIFY qty BIGINT",
            Rule::WideningNeedsConversion,
        ),
        (
            "ALTER TABLE orders MODIFY code VARCHAR(20) NOT NULL",
            Rule::WideningNeedsConversion,
        ),
        (
            "ALTER TABLE orders MODIFY ratio DOUBLE",
            Rule::WideningNeedsConversion,
        ),
        (
            "ALTER TABLE orders MODIFY price DECIMAL(12,4) NOT NULL DEFAULT 0",
            Rule::WideningNeedsConversion,
        ),
    ] {
        for flavor in Flavor::ALL {
            let analysis = expect(flavor, orders(flavor), alter, Conversion, rule);
            let (variable, value) = analysis.settings.iter().next().expect("a setting");
            let expected = if flavor == Flavor::Mysql {
                "replica_type_conversions"
            } else {
                "slave_type_conversions"
            };
            assert_eq!(
                (variable.as_str(), value.as_str()),
                (expected, "ALL_NON_LOSSY"),
                "{alter}"
            );
        }
    }
    let old_mysql = AnalyzeOptions::default().with_server_version(Version::new(8, 0, 25));
    let analysis = run_with(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders MODIFY qty BIGINT",
        &old_mysql,
    );
    assert!(analysis.settings.contains_key("slave_type_conversions"));
}

#[test]
fn unsigned_widening_needs_all_unsigned_on_mysql_only() {
    let alter = "ALTER TABLE orders MODIFY small INT UNSIGNED NOT NULL DEFAULT 0";
    let mysql = expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        alter,
        Conversion,
        Rule::WideningNeedsConversion,
    );
    assert_eq!(
        mysql.settings["replica_type_conversions"],
        "ALL_NON_LOSSY,ALL_UNSIGNED"
    );
    let mariadb = expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        alter,
        Conversion,
        Rule::WideningNeedsConversion,
    );
    assert_eq!(mariadb.settings["slave_type_conversions"], "ALL_NON_LOSSY");
    let mixed =
        "ALTER TABLE orders MODIFY qty BIGINT, MODIFY small INT UNSIGNED NOT NULL DEFAULT 0";
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        mixed,
        Unsafe,
        Rule::MixedSignednessWidening,
    );
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        mixed,
        Conversion,
        Rule::WideningNeedsConversion,
    );
}

#[test]
fn narrowing_and_lossy_changes_are_unsafe() {
    both(
        "ALTER TABLE orders MODIFY code VARCHAR(5) NOT NULL",
        Unsafe,
        Rule::Narrowing,
    );
    both(
        "ALTER TABLE orders MODIFY small TINYINT UNSIGNED NOT NULL DEFAULT 0",
        Unsafe,
        Rule::Narrowing,
    );
    both(
        "ALTER TABLE orders MODIFY price DECIMAL(10,4) NOT NULL DEFAULT 0",
        Unsafe,
        Rule::DecimalNarrowing,
    );
    // More precision and fewer decimals: rounds as the primary's own ALTER does (measured).
    both(
        "ALTER TABLE orders MODIFY price DECIMAL(12,1) NOT NULL DEFAULT 0",
        Conversion,
        Rule::WideningNeedsConversion,
    );
    both(
        "ALTER TABLE orders MODIFY price DECIMAL(9,2) NOT NULL DEFAULT 0",
        Unsafe,
        Rule::Narrowing,
    );
    // FLOAT(M,D) stores the same bits as FLOAT, and the ALTER copies them (measured).
    both(
        "ALTER TABLE orders MODIFY ratio FLOAT(7,4) DEFAULT NULL",
        Safe,
        Rule::NoOp,
    );
    both(
        "ALTER TABLE orders MODIFY ratio DOUBLE(9,2)",
        Unsafe,
        Rule::FloatPrecisionChange,
    );
}

#[test]
fn family_and_kind_changes_are_unsafe() {
    both(
        "ALTER TABLE orders MODIFY qty VARCHAR(30)",
        Unsafe,
        Rule::TypeFamilyChange,
    );
    both(
        "ALTER TABLE orders MODIFY status VARCHAR(10) NOT NULL",
        Unsafe,
        Rule::TypeFamilyChange,
    );
    both(
        "ALTER TABLE orders MODIFY code CHAR(10) NOT NULL",
        Conversion,
        Rule::WideningNeedsConversion,
    );
    both(
        "ALTER TABLE orders MODIFY email BLOB",
        Unsafe,
        Rule::StringKindChange,
    );
    both(
        "ALTER TABLE orders MODIFY email TEXT COLLATE utf8mb4_bin",
        Conversion,
        Rule::WideningNeedsConversion,
    );
    // 255 latin1 characters take 255 bytes: a TINYTEXT holds them.
    both(
        "ALTER TABLE orders MODIFY note TINYTEXT CHARACTER SET latin1 COLLATE latin1_swedish_ci",
        Conversion,
        Rule::WideningNeedsConversion,
    );
    // 100 utf8mb4 characters may take 400 bytes: more than a TINYTEXT's 255.
    both(
        "ALTER TABLE orders MODIFY email TINYTEXT COLLATE utf8mb4_bin",
        Unsafe,
        Rule::Narrowing,
    );
    both(
        "ALTER TABLE orders MODIFY email CHAR(100) COLLATE utf8mb4_bin",
        Conversion,
        Rule::WideningNeedsConversion,
    );
    both(
        "ALTER TABLE orders MODIFY loc GEOMETRY",
        Unsafe,
        Rule::GeometryChange,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders MODIFY doc LONGTEXT",
        Unsafe,
        Rule::TypeFamilyChange,
    );
}

#[test]
fn mariadb_json_is_longtext_so_dropping_the_alias_only_drops_the_check() {
    let analysis = run(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders MODIFY doc JSON",
    );
    assert_eq!(analysis.verdict, Safe, "{:?}", analysis.reasons);
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders MODIFY doc LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        Safe,
        Rule::CheckConstraintDropped,
    );
}

#[test]
fn signedness_and_nullability() {
    both(
        "ALTER TABLE orders MODIFY qty INT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    );
    both(
        "ALTER TABLE orders MODIFY qty BIGINT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    );
    both(
        "ALTER TABLE orders MODIFY qty INT NOT NULL",
        Unsafe,
        Rule::NullToNotNull,
    );
    both(
        "ALTER TABLE orders MODIFY customer_id INT NULL",
        Safe,
        Rule::NotNullToNull,
    );
    // ZEROFILL is display only, and '0' is 0.
    both(
        "ALTER TABLE orders MODIFY small SMALLINT UNSIGNED ZEROFILL NOT NULL DEFAULT 0",
        Safe,
        Rule::NoOp,
    );
}

#[test]
fn character_sets_and_collations() {
    both(
        "ALTER TABLE orders MODIFY note VARCHAR(255) CHARACTER SET utf8mb4",
        Unsafe,
        Rule::CharsetChange,
    );
    // Without CHARACTER SET the column takes the table's default: a charset change too.
    both(
        "ALTER TABLE orders MODIFY note VARCHAR(255)",
        Unsafe,
        Rule::CharsetChange,
    );
    both(
        "ALTER TABLE orders CONVERT TO CHARACTER SET latin1",
        Unsafe,
        Rule::CharsetChange,
    );
    both(
        "ALTER TABLE orders MODIFY email VARCHAR(100) COLLATE utf8mb4_unicode_ci",
        Safe,
        Rule::CollationChange,
    );
    // To the binary collation from a padding one (MariaDB's utf8mb4_general_ci) tells apart
    // everything the old one did; from MySQL's NO PAD utf8mb4_0900_ai_ci it does not ('a'
    // and 'a ' collide under utf8mb4_bin).
    let to_bin = "ALTER TABLE orders MODIFY code VARCHAR(10) COLLATE utf8mb4_bin NOT NULL";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        to_bin,
        Safe,
        Rule::CollationChange,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        to_bin,
        Unsafe,
        Rule::CollationChangeInUniqueKey,
    );
    both(
        "ALTER TABLE orders MODIFY code VARCHAR(10) COLLATE utf8mb4_unicode_ci NOT NULL",
        Unsafe,
        Rule::CollationChangeInUniqueKey,
    );
    both(
        "ALTER TABLE orders MODIFY status ENUM('new','paid','shipped') CHARACTER SET latin1 NOT NULL DEFAULT 'new'",
        Safe,
        Rule::CollationChange,
    );
}

#[test]
fn temporal_precision_differs_by_flavor() {
    let fsp = "ALTER TABLE orders MODIFY updated DATETIME(6)";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        fsp,
        Conversion,
        Rule::WideningNeedsConversion,
    );
    expect(Flavor::Mysql, MYSQL_ORDERS, fsp, Unsafe, Rule::FspChange);
    both(
        "ALTER TABLE orders MODIFY created DATETIME(3) NOT NULL",
        Unsafe,
        Rule::FspChange,
    );
    both(
        "ALTER TABLE orders MODIFY updated DATETIME",
        Unsafe,
        Rule::FspChange,
    );
    let date = "ALTER TABLE orders MODIFY day DATETIME";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        date,
        Conversion,
        Rule::WideningNeedsConversion,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        date,
        Unsafe,
        Rule::TemporalTypeChange,
    );
    let date3 = "ALTER TABLE orders MODIFY day DATETIME(3)";
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        date3,
        Conversion,
        Rule::WideningNeedsConversion,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        date3,
        Unsafe,
        Rule::TemporalTypeChange,
    );
    both(
        "ALTER TABLE orders MODIFY created TIMESTAMP NOT NULL",
        Unsafe,
        Rule::TemporalTypeChange,
    );
}

#[test]
fn enum_and_set_values() {
    for flavor in Flavor::ALL {
        let analysis = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders MODIFY status ENUM('new','paid','shipped','refunded') NOT NULL DEFAULT 'new'",
            Safe,
            Rule::EnumValueAppended,
        );
        assert_eq!(
            (analysis.primary, analysis.clauses[0].algorithm),
            (PrimaryMode::Online, Algorithm::Instant)
        );
    }
    both(
        "ALTER TABLE orders MODIFY status ENUM('new','refunded','paid','shipped') NOT NULL DEFAULT 'new'",
        Unsafe,
        Rule::EnumValueInserted,
    );
    both(
        "ALTER TABLE orders MODIFY status ENUM('new','paid') NOT NULL DEFAULT 'new'",
        Unsafe,
        Rule::EnumValueRemoved,
    );
    both(
        "ALTER TABLE orders MODIFY status ENUM('paid','new','shipped') NOT NULL DEFAULT 'new'",
        Unsafe,
        Rule::EnumValuesChanged,
    );
    both(
        "ALTER TABLE orders MODIFY flags SET('a','b','c')",
        Safe,
        Rule::EnumValueAppended,
    );
    let nine: Vec<String> = (0..9).map(|i| format!("'v{i}'")).collect();
    both(
        &format!(
            "ALTER TABLE orders MODIFY flags SET('a','b',{})",
            nine.join(",")
        ),
        Conversion,
        Rule::WideningNeedsConversion,
    );
}

#[test]
fn generated_columns() {
    both(
        "ALTER TABLE orders MODIFY total DECIMAL(12,2) AS (qty * price * 2) VIRTUAL",
        Safe,
        Rule::GeneratedExpressionChanged,
    );
    // Both servers refuse to turn a VIRTUAL column STORED in place.
    for flavor in Flavor::ALL {
        let err = analyze(
            flavor,
            orders(flavor),
            "ALTER TABLE orders MODIFY total DECIMAL(12,2) AS (qty * price) STORED",
        )
        .unwrap_err();
        assert_eq!(err.category(), "inapplicable", "{err}");
    }
    both(
        "ALTER TABLE orders MODIFY qty INT AS (customer_id + 1) VIRTUAL",
        Unsafe,
        Rule::GeneratedColumnChange,
    );
    // A STORED column's new expression: MySQL and MariaDB 11.8 compute it on the replica,
    // MariaDB 10.11 stores the source's value (measured).
    let table = "CREATE TABLE `g` (`id` int NOT NULL, `a` int DEFAULT NULL, \
                 `s` int GENERATED ALWAYS AS (`a` * 3) STORED, PRIMARY KEY (`id`)) ENGINE=InnoDB";
    let alter = "ALTER TABLE g MODIFY s INT AS (a * 4) STORED";
    expect(
        Flavor::Mysql,
        table,
        alter,
        Safe,
        Rule::GeneratedExpressionChanged,
    );
    expect(
        Flavor::Mariadb,
        table,
        alter,
        Unsafe,
        Rule::GeneratedColumnChange,
    );
    let at = |version| {
        run_with(
            Flavor::Mariadb,
            table,
            alter,
            &AnalyzeOptions::default().with_server_version(version),
        )
        .verdict
    };
    assert_eq!(at(Version::new(10, 11, 14)), Unsafe);
    assert_eq!(at(Version::new(11, 8, 3)), Safe);
    let stored = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders ADD COLUMN s INT AS (qty + 1) STORED",
    );
    assert_eq!(
        (stored.verdict, stored.primary),
        (Safe, PrimaryMode::Switchover)
    );
}

#[test]
fn auto_increment() {
    let table = "CREATE TABLE `s` (`a` int NOT NULL, `b` int DEFAULT NULL, UNIQUE KEY `a` (`a`)) ENGINE=InnoDB";
    for flavor in Flavor::ALL {
        expect(
            flavor,
            table,
            "ALTER TABLE s MODIFY a INT NOT NULL AUTO_INCREMENT",
            Unsafe,
            Rule::AutoIncrementAdded,
        );
        let removed = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders MODIFY id BIGINT UNSIGNED NOT NULL",
            Safe,
            Rule::ColumnAttributeChange,
        );
        assert_eq!(removed.primary, PrimaryMode::Switchover);
    }
}

#[test]
fn unique_and_primary_keys() {
    both(
        "ALTER TABLE orders ADD UNIQUE KEY uk_customer (customer_id)",
        Unsafe,
        Rule::UniqueKeyAdded,
    );
    both(
        "ALTER TABLE orders ADD CONSTRAINT uk_c UNIQUE (customer_id)",
        Unsafe,
        Rule::UniqueKeyAdded,
    );
    both(
        "ALTER TABLE orders MODIFY customer_id INT NOT NULL UNIQUE",
        Unsafe,
        Rule::UniqueKeyAdded,
    );
    // Implied by the primary key: enforces nothing new.
    both(
        "ALTER TABLE orders ADD UNIQUE KEY uk_id_c (id, customer_id)",
        Safe,
        Rule::IndexChange,
    );
    // A shorter prefix enforces more.
    both(
        "ALTER TABLE orders DROP INDEX uk_code, ADD UNIQUE KEY uk_code (code(5))",
        Unsafe,
        Rule::UniqueKeyAdded,
    );
    let replaced = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders DROP PRIMARY KEY, ADD PRIMARY KEY (id, customer_id)",
    );
    assert_eq!(
        (replaced.verdict, replaced.primary),
        (Safe, PrimaryMode::Online)
    );
    for flavor in Flavor::ALL {
        let analysis = expect(
            flavor,
            NO_PK,
            "ALTER TABLE nopk ADD PRIMARY KEY (a)",
            Unsafe,
            Rule::UniqueKeyAdded,
        );
        assert!(
            rules(&analysis).contains(&Rule::NullToNotNull),
            "a primary key makes its columns NOT NULL"
        );
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain DROP PRIMARY KEY",
            Unsafe,
            Rule::PrimaryKeyDropped,
        );
        // Another NOT NULL unique key still identifies rows.
        let table = "CREATE TABLE `u` (`a` int NOT NULL, `b` int NOT NULL, PRIMARY KEY (`a`), UNIQUE KEY `b` (`b`))";
        let analysis = run(flavor, table, "ALTER TABLE u DROP PRIMARY KEY");
        assert_eq!(
            (analysis.verdict, analysis.primary),
            (Safe, PrimaryMode::Switchover)
        );
    }
}

#[test]
fn dropping_a_column_of_a_unique_key_narrows_it() {
    let table = "CREATE TABLE `k` (`a` int NOT NULL, `b` int NOT NULL, `c` int DEFAULT NULL, \
                 PRIMARY KEY (`a`), UNIQUE KEY `bc` (`b`,`c`))";
    for flavor in Flavor::ALL {
        let analysis = run(flavor, table, "ALTER TABLE k DROP COLUMN c");
        assert_eq!(analysis.verdict, Unsafe);
        assert!(rules(&analysis).contains(&Rule::UniqueKeyAdded));
        assert!(!rules(&analysis).contains(&Rule::ColumnDroppedNotLast));
    }
}

#[test]
fn plain_indexes_are_safe_and_online() {
    for flavor in Flavor::ALL {
        for alter in [
            "ALTER TABLE orders ADD INDEX idx_qty (qty)",
            "ALTER TABLE orders ADD KEY (qty, price)",
            "ALTER TABLE orders DROP INDEX idx_customer",
            "ALTER TABLE orders DROP INDEX uk_code",
            "ALTER TABLE orders RENAME INDEX idx_customer TO idx_cust",
            "ALTER TABLE orders ALGORITHM=INPLACE, LOCK=NONE, ADD INDEX i (qty)",
        ] {
            let analysis = expect(flavor, orders(flavor), alter, Safe, Rule::IndexChange);
            assert_eq!(analysis.primary, PrimaryMode::Online, "{alter}");
        }
        let fulltext = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ADD FULLTEXT INDEX ft (code)",
            Safe,
            Rule::IndexChange,
        );
        assert_eq!(fulltext.primary, PrimaryMode::Switchover);
    }
    let hidden = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders ALTER INDEX idx_created VISIBLE",
    );
    assert_eq!(
        (hidden.verdict, hidden.clauses[0].algorithm),
        (Safe, Algorithm::Instant)
    );
}

#[test]
fn foreign_keys() {
    for flavor in Flavor::ALL {
        expect(
            flavor,
            items(flavor),
            "ALTER TABLE items DROP FOREIGN KEY fk_order",
            Unsafe,
            Rule::ForeignKeyCascadeDropped,
        );
        expect(
            flavor,
            items(flavor),
            "ALTER TABLE items DROP FOREIGN KEY fk_product",
            Safe,
            Rule::ForeignKeyDropped,
        );
        let added = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)",
            Unsafe,
            Rule::ForeignKeyAdded,
        );
        assert_eq!(added.primary, PrimaryMode::Switchover);
    }
}

#[test]
fn check_constraints() {
    both(
        "ALTER TABLE orders ADD CONSTRAINT positive CHECK (price > 0)",
        Unsafe,
        Rule::CheckConstraintAdded,
    );
    both(
        "ALTER TABLE orders ADD CHECK (price <> 0)",
        Unsafe,
        Rule::CheckConstraintAdded,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders DROP CHECK orders_chk_1",
        Safe,
        Rule::CheckConstraintDropped,
    );
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders DROP CONSTRAINT CONSTRAINT_1",
        Safe,
        Rule::CheckConstraintDropped,
    );
    expect(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders ALTER CHECK orders_chk_1 NOT ENFORCED",
        Safe,
        Rule::CheckConstraintDropped,
    );
}

#[test]
fn table_options() {
    for flavor in Flavor::ALL {
        for (alter, primary) in [
            ("ALTER TABLE orders COMMENT = 'x'", PrimaryMode::Online),
            ("ALTER TABLE orders ENGINE=InnoDB", PrimaryMode::Online),
            ("ALTER TABLE orders ROW_FORMAT=DYNAMIC", PrimaryMode::Online),
            (
                "ALTER TABLE orders AUTO_INCREMENT = 1000",
                PrimaryMode::Online,
            ),
            (
                "ALTER TABLE orders DEFAULT CHARSET=latin1",
                PrimaryMode::Switchover,
            ),
        ] {
            let analysis = expect(flavor, orders(flavor), alter, Safe, Rule::TableOptionChange);
            assert_eq!(analysis.primary, primary, "{alter}");
        }
        expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ENGINE=MyISAM",
            Unsafe,
            Rule::EngineChange,
        );
        expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders RENAME TO orders_old",
            Unsafe,
            Rule::TableRenamed,
        );
        let forced = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders FORCE",
            Safe,
            Rule::TableRebuild,
        );
        assert_eq!(forced.primary, PrimaryMode::Online);
        let copy = run(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ADD INDEX i (qty), ALGORITHM=COPY",
        );
        assert_eq!(
            (copy.verdict, copy.primary),
            (Safe, PrimaryMode::Switchover)
        );
        expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders DISCARD TABLESPACE",
            Unsafe,
            Rule::Unsupported,
        );
    }
}

#[test]
fn a_column_added_with_a_new_default_charset_inherits_it() {
    let analysis = run(
        Flavor::Mysql,
        PLAIN,
        "ALTER TABLE plain DEFAULT CHARSET=latin1, ADD COLUMN d VARCHAR(5)",
    );
    assert_eq!(analysis.verdict, Safe);
    let table = switchyard_ddl::apply_alter(
        Flavor::Mysql,
        PLAIN,
        "ALTER TABLE plain DEFAULT CHARSET=latin1, ADD COLUMN d VARCHAR(5)",
    )
    .unwrap();
    assert_eq!(
        table.column("d").unwrap().ty.charset.as_deref(),
        Some("latin1")
    );
}

#[test]
fn partitioning() {
    for flavor in Flavor::ALL {
        let hashed = expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain PARTITION BY HASH (a) PARTITIONS 4",
            Safe,
            Rule::PartitioningChange,
        );
        assert_eq!(hashed.primary, PrimaryMode::Switchover);
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain PARTITION BY RANGE (a) (PARTITION p0 VALUES LESS THAN (100))",
            Unsafe,
            Rule::PartitioningMayRejectRows,
        );
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain PARTITION BY RANGE (a) (PARTITION p0 VALUES LESS THAN (100), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            Safe,
            Rule::PartitioningChange,
        );
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain DROP PARTITION p0",
            Unsafe,
            Rule::PartitionDataChange,
        );
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain TRUNCATE PARTITION p0",
            Unsafe,
            Rule::PartitionDataChange,
        );
        expect(
            flavor,
            PLAIN,
            "ALTER TABLE plain REMOVE PARTITIONING",
            Safe,
            Rule::PartitioningChange,
        );
    }
}

#[test]
fn defaults_and_attributes_are_safe_and_instant() {
    for flavor in Flavor::ALL {
        let analysis = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ALTER COLUMN qty SET DEFAULT 5",
            Safe,
            Rule::DefaultChange,
        );
        assert_eq!(
            (analysis.primary, analysis.clauses[0].algorithm),
            (PrimaryMode::Online, Algorithm::Instant)
        );
        // A nullable column without a default defaults to NULL: nothing changes.
        expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ALTER COLUMN qty DROP DEFAULT",
            Safe,
            Rule::NoOp,
        );
        expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders ALTER COLUMN customer_id SET DEFAULT 0",
            Safe,
            Rule::DefaultChange,
        );
        expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders MODIFY qty INT DEFAULT NULL COMMENT 'x'",
            Safe,
            Rule::ColumnAttributeChange,
        );
    }
    expect(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders ADD COLUMN IF NOT EXISTS qty INT",
        Safe,
        Rule::NoOp,
    );
}

#[test]
fn measured_widening_with_an_extra_trailing_column() {
    for flavor in Flavor::ALL {
        let analysis = expect(
            flavor,
            orders(flavor),
            "ALTER TABLE orders MODIFY qty BIGINT, ADD COLUMN extra INT",
            Conversion,
            Rule::WideningWithExtraColumns,
        );
        assert!(analysis.reasons.iter().any(|r| r.contains("measured")));
    }
}

#[test]
fn alter_ignore_is_unsafe_on_its_own() {
    let analysis = run(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER IGNORE TABLE orders ADD INDEX i (qty)",
    );
    assert_eq!(analysis.verdict, Unsafe);
    assert!(analysis.reasons.iter().any(|r| r.contains("alter-ignore")));
}

#[test]
fn bidirectional_changes_for_galera() {
    let both_ways = AnalyzeOptions::bidirectional();
    for flavor in Flavor::ALL {
        let table = orders(flavor);
        let check = |alter: &str, verdict: Verdict| {
            let analysis = run_with(flavor, table, alter, &both_ways);
            assert_eq!(
                analysis.verdict, verdict,
                "{flavor}: `{alter}`: {:#?}",
                analysis.reasons
            );
            analysis
        };
        check("ALTER TABLE orders ADD COLUMN extra INT DEFAULT NULL", Safe);
        check("ALTER TABLE orders ADD INDEX i (qty)", Safe);
        let widened = check("ALTER TABLE orders MODIFY qty BIGINT", Unsafe);
        assert!(
            widened
                .reasons
                .iter()
                .any(|r| r.contains("new-shape rows") && r.contains("narrow"))
        );
        check("ALTER TABLE orders MODIFY customer_id INT NULL", Unsafe);
        check("ALTER TABLE orders DROP INDEX uk_code", Unsafe);
        check("ALTER TABLE orders DROP COLUMN total", Safe);
        check(
            "ALTER TABLE orders MODIFY status ENUM('new','paid','shipped','refunded') NOT NULL DEFAULT 'new'",
            Unsafe,
        );
        let plain = run_with(flavor, PLAIN, "ALTER TABLE plain DROP COLUMN c", &both_ways);
        assert_eq!(
            plain.verdict, Safe,
            "a nullable dropped column is filled with NULL on old nodes"
        );
        let strict = "CREATE TABLE `s` (`a` int NOT NULL, `b` int NOT NULL, PRIMARY KEY (`a`))";
        let dropped = run_with(flavor, strict, "ALTER TABLE s DROP COLUMN b", &both_ways);
        assert_eq!(dropped.verdict, Unsafe);
        assert!(rules(&dropped).contains(&Rule::DroppedColumnWithoutDefault));
        let unique = "CREATE TABLE `u` (`a` int NOT NULL, `b` int NOT NULL, PRIMARY KEY (`a`), UNIQUE KEY `b` (`b`))";
        assert_eq!(
            run_with(flavor, unique, "ALTER TABLE u DROP PRIMARY KEY", &both_ways).verdict,
            Unsafe
        );
    }
}

#[test]
fn bidirectional_is_never_more_permissive() {
    let alters = [
        "ALTER TABLE orders ADD COLUMN extra INT DEFAULT NULL",
        "ALTER TABLE orders MODIFY qty BIGINT",
        "ALTER TABLE orders ADD COLUMN extra INT AFTER qty",
        "ALTER TABLE orders DROP COLUMN total",
        "ALTER TABLE orders MODIFY customer_id INT NULL",
    ];
    for flavor in Flavor::ALL {
        for alter in alters {
            let forward = run(flavor, orders(flavor), alter);
            let both_ways = run_with(
                flavor,
                orders(flavor),
                alter,
                &AnalyzeOptions::bidirectional(),
            );
            assert!(both_ways.verdict >= forward.verdict, "{alter}");
        }
    }
}

#[test]
fn primary_online_is_version_aware_in_the_algorithm_only() {
    let old = AnalyzeOptions::default().with_server_version(Version::new(8, 0, 20));
    let analysis = run_with(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders DROP COLUMN total",
        &old,
    );
    assert_eq!(
        (analysis.primary, analysis.clauses[0].algorithm),
        (PrimaryMode::Online, Algorithm::Inplace)
    );
    let new = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders DROP COLUMN total",
    );
    assert_eq!(new.clauses[0].algorithm, Algorithm::Instant);
    let retype = run(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders MODIFY qty BIGINT",
    );
    assert_eq!(
        (retype.primary, retype.clauses[0].algorithm),
        (PrimaryMode::Switchover, Algorithm::Copy)
    );
    let varchar = run(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders MODIFY code VARCHAR(20) NOT NULL",
    );
    assert_eq!(varchar.primary, PrimaryMode::Online);
}

#[test]
fn mariadb_from_11_2_copies_online_so_the_primary_takes_a_copy_in_place() {
    let at = |version: Version, alter: &str| {
        let options = AnalyzeOptions::default().with_server_version(version);
        let analysis = run_with(Flavor::Mariadb, PLAIN, alter, &options);
        (analysis.primary, analysis.clauses[0].algorithm)
    };
    let (v10_11, v11_8) = (Version::new(10, 11, 14), Version::new(11, 8, 3));
    let copies = [
        "ALTER TABLE plain MODIFY b BIGINT",
        "ALTER TABLE plain ADD CONSTRAINT ck CHECK (b > 0)",
        "ALTER TABLE plain CONVERT TO CHARACTER SET latin1",
        "ALTER TABLE plain ADD COLUMN s INT AS (b + 1) STORED",
        "ALTER TABLE plain DEFAULT CHARSET=latin1",
    ];
    for alter in copies {
        assert_eq!(
            at(v10_11, alter),
            (PrimaryMode::Switchover, Algorithm::Copy),
            "{alter}"
        );
        assert_eq!(
            at(v11_8, alter),
            (PrimaryMode::Online, Algorithm::Copy),
            "{alter}"
        );
    }
    // A FULLTEXT index blocks writes in place before 11.2; 11.2+ copies the table online.
    let fulltext = "ALTER TABLE plain ADD FULLTEXT INDEX ft (c)";
    assert_eq!(at(v10_11, fulltext).0, PrimaryMode::Switchover);
    assert_eq!(at(v11_8, fulltext), (PrimaryMode::Online, Algorithm::Copy));
    // What 11.2's online copy does not take stays behind a switchover.
    for alter in [
        "ALTER TABLE plain ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE",
        "ALTER TABLE plain MODIFY b BIGINT, ALGORITHM=COPY",
        "ALTER TABLE plain MODIFY b BIGINT, LOCK=SHARED",
        "ALTER TABLE plain PARTITION BY HASH (a) PARTITIONS 2",
    ] {
        assert_eq!(at(v11_8, alter).0, PrimaryMode::Switchover, "{alter}");
    }
    // MySQL never copies online.
    let mysql = run_with(
        Flavor::Mysql,
        PLAIN,
        "ALTER TABLE plain MODIFY b BIGINT",
        &AnalyzeOptions::default().with_server_version(Version::new(9, 7, 4)),
    );
    assert_eq!(mysql.primary, PrimaryMode::Switchover);
}

#[test]
fn every_clause_is_judged_and_the_overall_is_the_worst() {
    let analysis = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders ADD INDEX i (qty), MODIFY qty BIGINT, ADD COLUMN extra INT AFTER id",
    );
    let verdicts: Vec<_> = analysis
        .clauses
        .iter()
        .map(|c| (c.clause.as_str(), c.verdict))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("ADD INDEX i (qty)", Safe),
            ("MODIFY qty BIGINT", Conversion),
            ("ADD COLUMN extra INT AFTER id", Unsafe),
        ]
    );
    assert_eq!(analysis.verdict, Unsafe);
    assert_eq!(analysis.primary, PrimaryMode::Switchover);
    assert!(
        analysis.settings.is_empty(),
        "settings only for safe-with-conversion"
    );
    assert!(
        analysis
            .reasons
            .iter()
            .all(|r| r.contains("[column-added-in-middle]"))
    );
}

#[test]
fn refusals_name_the_problem() {
    let cases = [
        ("ALTER TABLE customers ADD c INT", "table-mismatch"),
        ("ALTER TABLE orders DROP COLUMN nope", "unknown-column"),
        ("ALTER TABLE orders MODIFY nope INT", "unknown-column"),
        ("ALTER TABLE orders ADD INDEX (nope)", "unknown-column"),
        ("ALTER TABLE orders ADD c INT AFTER nope", "unknown-column"),
        (
            "ALTER TABLE orders ALTER COLUMN nope SET DEFAULT 1",
            "unknown-column",
        ),
        ("ALTER TABLE orders DROP INDEX nope", "unknown-object"),
        ("ALTER TABLE orders ADD COLUMN code INT", "already-exists"),
        ("ALTER TABLE orders ADD PRIMARY KEY (qty)", "already-exists"),
        (
            "ALTER TABLE orders ADD c INT; DROP TABLE orders",
            "several-statements",
        ),
        (
            "ALTER TABLE orders ADD c INT /*! ; DROP TABLE orders */",
            "several-statements",
        ),
        ("SELECT 1", "wrong-statement"),
    ];
    for flavor in Flavor::ALL {
        for (alter, category) in cases {
            let err = analyze(flavor, orders(flavor), alter).expect_err(alter);
            assert_eq!(err.category(), category, "{alter}: {err}");
        }
    }
    let qualified = analyze(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE shop.orders ADD INDEX (qty)",
    );
    assert!(
        qualified.is_ok(),
        "a schema-qualified ALTER matches an unqualified definition"
    );
    let in_shop = "CREATE TABLE `shop`.`t` (`a` int NOT NULL, PRIMARY KEY (`a`))";
    assert!(
        analyze(
            Flavor::Mysql,
            in_shop,
            "ALTER TABLE `shop`.`t` ADD INDEX (a)"
        )
        .is_ok()
    );
    assert!(analyze(Flavor::Mysql, in_shop, "ALTER TABLE t ADD INDEX (a)").is_ok());
    let other = analyze(Flavor::Mysql, in_shop, "ALTER TABLE other.t ADD INDEX (a)").unwrap_err();
    assert_eq!(other.category(), "table-mismatch");
    let err = analyze(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE Orders ADD INDEX (qty)",
    )
    .unwrap_err();
    assert!(matches!(err, DdlError::TableMismatch { .. }));
    assert!(err.to_string().contains("letter case"));
}

#[test]
fn more_server_printed_forms_are_read() {
    let mysql = "CREATE TABLE `p` (
  `id` int NOT NULL,
  `first` varchar(20) COLLATE utf8mb4_bin NOT NULL DEFAULT _utf8mb4'x',
  `full` varchar(41) GENERATED ALWAYS AS (concat(`first`,_utf8mb4' ',`first`)) VIRTUAL,
  `tag` enum('it''s','b') DEFAULT NULL,
  `u` varchar(36) DEFAULT (uuid()),
  `z` int(10) unsigned zerofill DEFAULT NULL,
  `h` int DEFAULT NULL /*!80023 INVISIBLE */,
  `parent` int DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `f` ((lower(`first`))),
  KEY `parent` (`parent`),
  CONSTRAINT `p_ibfk_1` FOREIGN KEY (`parent`) REFERENCES `shop`.`p` (`id`) ON DELETE SET NULL
) /*!50100 TABLESPACE `innodb_system` */ ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci STATS_PERSISTENT=0 ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8";
    let analysis = run(Flavor::Mysql, mysql, "ALTER TABLE p ADD COLUMN e INT");
    assert_eq!(analysis.verdict, Safe, "{:?}", analysis.reasons);
    expect(
        Flavor::Mysql,
        mysql,
        "ALTER TABLE p DROP FOREIGN KEY p_ibfk_1",
        Unsafe,
        Rule::ForeignKeyCascadeDropped,
    );
    let table = switchyard_ddl::parse_table(Flavor::Mysql, mysql).unwrap();
    assert_eq!(
        table.column("tag").map(|c| c.ty.kind.to_string()),
        Some("ENUM('it''s','b')".to_owned())
    );
    assert!(table.column("h").unwrap().invisible);

    let mariadb = "CREATE TABLE `m` (
  `id` int(10) unsigned NOT NULL,
  `ip` inet6 DEFAULT NULL,
  `u` uuid DEFAULT NULL,
  `c` varchar(10) COLLATE latin1_bin DEFAULT NULL COMMENT 'c',
  `t` timestamp NULL DEFAULT NULL,
  `ts` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  `d` double(10,2) DEFAULT NULL,
  `s` int(11) AS (`id` + 1) PERSISTENT,
  `x` int(11) DEFAULT NULL INVISIBLE,
  PRIMARY KEY (`id`) USING BTREE,
  KEY `c` (`c`(5))
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci `PAGE_COMPRESSED`='ON' COMMENT='m'";
    let analysis = run(
        Flavor::Mariadb,
        mariadb,
        "ALTER TABLE m MODIFY ip inet6 DEFAULT NULL, ADD COLUMN e INT",
    );
    assert_eq!(analysis.verdict, Safe, "{:?}", analysis.reasons);
    expect(
        Flavor::Mariadb,
        mariadb,
        "ALTER TABLE m MODIFY u inet6",
        Unsafe,
        Rule::TypeFamilyChange,
    );
    // DOUBLE(M,D) stores the same bits as DOUBLE: the digits change nothing in row images.
    let digits = run(
        Flavor::Mariadb,
        mariadb,
        "ALTER TABLE m MODIFY d DOUBLE(12,2)",
    );
    assert_eq!(digits.verdict, Safe, "{:?}", digits.reasons);
}

#[test]
fn middle_columns_get_no_trailing_column_finding() {
    let analysis = run(
        Flavor::Mysql,
        MYSQL_ORDERS,
        "ALTER TABLE orders ADD COLUMN extra INT AFTER qty",
    );
    assert_eq!(rules(&analysis), vec![Rule::ColumnAddedInMiddle]);
    let analysis = run(
        Flavor::Mariadb,
        MARIADB_ORDERS,
        "ALTER TABLE orders DROP COLUMN ratio",
    );
    assert_eq!(rules(&analysis), vec![Rule::ColumnDroppedNotLast]);
}

#[test]
fn system_versioned_tables_are_read_and_refused() {
    let explicit = "CREATE TABLE `v` (
  `id` int(11) NOT NULL,
  `row_start` timestamp(6) GENERATED ALWAYS AS ROW START INVISIBLE,
  `row_end` timestamp(6) GENERATED ALWAYS AS ROW END INVISIBLE,
  PRIMARY KEY (`id`,`row_end`),
  PERIOD FOR SYSTEM_TIME (`row_start`, `row_end`)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 WITH SYSTEM VERSIONING";
    let implicit = "CREATE TABLE `v` (`id` int(11) NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB WITH SYSTEM VERSIONING";
    for table in [explicit, implicit] {
        let analysis = run(Flavor::Mariadb, table, "ALTER TABLE v ADD COLUMN y INT");
        assert_eq!(analysis.verdict, Unsafe);
        assert!(analysis.reasons.iter().any(|r| r.contains("[unsupported]")));
    }
}

#[test]
fn a_change_judged_online_runs_with_lock_none_so_a_blocking_server_refuses_it() {
    use switchyard_ddl::rollout_statement;
    let online = |alter: &str| {
        rollout_statement(Flavor::Mysql, alter, PrimaryMode::Online).expect("one ALTER")
    };
    assert_eq!(
        online("ALTER TABLE t ADD COLUMN x INT;  -- trailing comment\n"),
        "ALTER TABLE t ADD COLUMN x INT, LOCK=NONE"
    );
    // A line comment inside stays closed by its newline.
    assert_eq!(
        online("ALTER TABLE t ADD COLUMN x INT, -- note\n ADD COLUMN y INT"),
        "ALTER TABLE t ADD COLUMN x INT, -- note\n ADD COLUMN y INT, LOCK=NONE"
    );
    // The statement's own choice, a rename and a partitioning clause are kept as written.
    for kept in [
        "ALTER TABLE t ADD COLUMN x INT, ALGORITHM=INSTANT",
        "ALTER TABLE t ADD COLUMN x INT, LOCK=SHARED",
        "ALTER TABLE t RENAME TO u",
        "ALTER TABLE t ADD PARTITION (PARTITION p9 VALUES LESS THAN (900))",
    ] {
        assert_eq!(online(kept), kept);
    }
    assert_eq!(
        rollout_statement(
            Flavor::Mariadb,
            "ALTER TABLE t MODIFY n BIGINT;",
            PrimaryMode::Switchover
        )
        .expect("one ALTER"),
        "ALTER TABLE t MODIFY n BIGINT"
    );
    assert!(rollout_statement(Flavor::Mysql, "DROP TABLE t", PrimaryMode::Online).is_err());
}

/// A table for the multi-clause cases, with two indexes.
const SWAP: &str = "CREATE TABLE `t` (
  `id` int NOT NULL,
  `a` int DEFAULT NULL,
  `b` varchar(10) DEFAULT NULL,
  `c` int DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `ka` (`a`),
  KEY `kb` (`b`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// The columns (`name type`) and the secondary indexes (`name(columns)`) of `table`.
fn layout(table: &switchyard_ddl::Table) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let charset =
                c.ty.charset
                    .as_deref()
                    .map_or(String::new(), |s| format!(" {s}"));
            format!("{} {}{charset}", c.name, c.ty.kind)
        })
        .collect();
    let indexes: Vec<String> = table
        .indexes
        .iter()
        .filter(|i| i.name != "PRIMARY")
        .map(|i| format!("{}({})", i.name, i.columns().collect::<Vec<_>>().join(",")))
        .collect();
    format!("{}; {}", columns.join(", "), indexes.join(" "))
}

#[test]
fn clauses_apply_together_as_the_server_applies_them() {
    // Each result as MariaDB 10.11 and 11.8 and MySQL 9.7 printed it.
    let cases = [
        (
            "ALTER TABLE t RENAME COLUMN a TO b, RENAME COLUMN b TO a",
            "id INT, b INT, a VARCHAR(10) utf8mb4, c INT; ka(b) kb(a)",
        ),
        (
            "ALTER TABLE t CHANGE a b INT, CHANGE b a VARCHAR(10)",
            "id INT, b INT, a VARCHAR(10) utf8mb4, c INT; ka(b) kb(a)",
        ),
        (
            "ALTER TABLE t ADD COLUMN x INT AFTER b2, RENAME COLUMN b TO b2",
            "id INT, a INT, b2 VARCHAR(10) utf8mb4, x INT, c INT; ka(a) kb(b2)",
        ),
        (
            "ALTER TABLE t RENAME COLUMN a TO a2, ADD INDEX i2 (a2)",
            "id INT, a2 INT, b VARCHAR(10) utf8mb4, c INT; ka(a2) kb(b) i2(a2)",
        ),
        (
            "ALTER TABLE t ADD COLUMN a2 BIGINT, DROP COLUMN a",
            "id INT, b VARCHAR(10) utf8mb4, c INT, a2 BIGINT; kb(b)",
        ),
        (
            "ALTER TABLE t DROP COLUMN c, ADD COLUMN c BIGINT",
            "id INT, a INT, b VARCHAR(10) utf8mb4, c BIGINT; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t MODIFY a INT AFTER c, MODIFY c INT AFTER id",
            "id INT, c INT, b VARCHAR(10) utf8mb4, a INT; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t MODIFY c INT AFTER id, MODIFY a INT AFTER c",
            "id INT, c INT, a INT, b VARCHAR(10) utf8mb4; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t ADD COLUMN x INT AFTER a, MODIFY a INT AFTER c",
            "id INT, x INT, b VARCHAR(10) utf8mb4, c INT, a INT; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t ADD COLUMN x INT FIRST, ADD COLUMN y INT FIRST",
            "y INT, x INT, id INT, a INT, b VARCHAR(10) utf8mb4, c INT; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t ADD INDEX ka (b), DROP INDEX ka",
            "id INT, a INT, b VARCHAR(10) utf8mb4, c INT; kb(b) ka(b)",
        ),
        (
            "ALTER TABLE t RENAME INDEX ka TO kb, RENAME INDEX kb TO ka",
            "id INT, a INT, b VARCHAR(10) utf8mb4, c INT; kb(a) ka(b)",
        ),
        (
            "ALTER TABLE t ADD COLUMN d VARCHAR(5), DEFAULT CHARSET=latin1",
            "id INT, a INT, b VARCHAR(10) utf8mb4, c INT, d VARCHAR(5) latin1; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t MODIFY b VARCHAR(10), DEFAULT CHARSET=latin1",
            "id INT, a INT, b VARCHAR(10) latin1, c INT; ka(a) kb(b)",
        ),
        (
            "ALTER TABLE t CONVERT TO CHARACTER SET latin1, MODIFY b VARCHAR(10) CHARACTER SET utf8mb4",
            "id INT, a INT, b VARCHAR(10) latin1, c INT; ka(a) kb(b)",
        ),
    ];
    for flavor in Flavor::ALL {
        for (alter, expected) in cases {
            let table = switchyard_ddl::apply_alter(flavor, SWAP, alter)
                .unwrap_or_else(|e| panic!("{flavor}: `{alter}`: {e}"));
            assert_eq!(layout(&table), expected, "{flavor}: `{alter}`");
            run(flavor, SWAP, alter);
        }
    }
    let swap = run(
        Flavor::Mysql,
        SWAP,
        "ALTER TABLE t RENAME COLUMN a TO b, RENAME COLUMN b TO a",
    );
    // Row images are positional: the swapped names change nothing replication sees
    // (measured on both flavors, `docs/ddl-verification.md`).
    assert_eq!(swap.verdict, Safe, "{:?}", swap.reasons);
    assert_eq!(rules(&swap), vec![Rule::ColumnRenamed, Rule::ColumnRenamed]);
}

#[test]
fn statements_the_servers_refuse_are_refused_with_their_reason() {
    // Each refused by MariaDB 10.11 and 11.8 and MySQL 9.7.
    let cases = [
        (
            "ALTER TABLE t RENAME COLUMN a TO b2, RENAME COLUMN b TO a, RENAME COLUMN b2 TO b",
            "unknown-column",
        ),
        (
            "ALTER TABLE t ADD COLUMN x INT AFTER b, RENAME COLUMN b TO b2",
            "unknown-column",
        ),
        (
            "ALTER TABLE t RENAME COLUMN a TO a2, ADD INDEX i2 (a)",
            "unknown-column",
        ),
        (
            "ALTER TABLE t DROP COLUMN a, MODIFY a BIGINT",
            "inapplicable",
        ),
        (
            "ALTER TABLE t MODIFY a BIGINT, MODIFY a SMALLINT",
            "inapplicable",
        ),
        (
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 3, MODIFY a BIGINT",
            "inapplicable",
        ),
        (
            "ALTER TABLE t RENAME COLUMN a TO a2, MODIFY a2 BIGINT",
            "unknown-column",
        ),
        (
            "ALTER TABLE t RENAME COLUMN a TO a2, DROP COLUMN a2",
            "unknown-column",
        ),
        (
            "ALTER TABLE t RENAME INDEX ka TO kz, DROP INDEX kz",
            "unknown-object",
        ),
        ("ALTER TABLE t DROP COLUMN a, DROP COLUMN a", "inapplicable"),
        (
            "ALTER TABLE t ADD COLUMN x INT AFTER c, DROP COLUMN c",
            "unknown-column",
        ),
        (
            "ALTER TABLE t ADD COLUMN y INT AFTER x, ADD COLUMN x INT",
            "unknown-column",
        ),
        (
            "ALTER TABLE t ADD COLUMN x INT, DROP COLUMN x",
            "unknown-column",
        ),
        ("ALTER TABLE t RENAME COLUMN a TO c", "already-exists"),
        ("ALTER TABLE t MODIFY a INT AFTER a", "inapplicable"),
        (
            "ALTER TABLE t DROP COLUMN a, ADD INDEX (a)",
            "unknown-column",
        ),
    ];
    for flavor in Flavor::ALL {
        for (alter, category) in cases {
            let err = analyze(flavor, SWAP, alter).expect_err(alter);
            assert_eq!(err.category(), category, "{flavor}: `{alter}`: {err}");
        }
    }
}
