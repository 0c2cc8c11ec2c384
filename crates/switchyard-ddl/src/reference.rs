//! Reference cases: ALTER statements on tables of every type family, with the verdict and
//! deciding rule expected on each flavor, and the source writes that exercise them.
//!
//! The analyzer's own tests check these verdicts. The real-server test (`tests/servers.rs`)
//! replays each case on a MariaDB 10.11 and a MySQL 9.7 replication pair (and the cases where
//! MariaDB 11.8 differs, or may, on an 11.8 pair): the case's fixture table created on both,
//! the ALTER run on the replica with the binary log off, the fixture's writes run on the
//! source, and the replica's table compared with the source's table altered the same way.
//! Each case runs first with the setting the analyzer asks for and then with less, to find
//! what the servers need: nothing (`safe`), `ALL_NON_LOSSY` (and on MySQL `ALL_UNSIGNED`) to
//! apply and match (`safe-with-conversion`), or no setting at all (`unsafe`: the replica
//! stops or its rows differ). The analyzer must never be more permissive than that, and an
//! unsafe rule's [`Claim`](crate::Claim) must be what the servers do. The results, with the
//! analyzer's agreement per flavor, are in `docs/ddl-verification.md`.

use crate::rules::{Rule, Verdict};

/// A table and the source writes that exercise its columns: negative, zero, NULL, minimum and
/// maximum values, multi-byte and long strings, every ENUM value, fractional seconds, an
/// update and a delete, and rows that stay so that a changed meaning shows in the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixture {
    /// A short name for test output and schema names.
    pub name: &'static str,
    /// The CREATE TABLE statement of table `t`; valid on MySQL 8.0+ and MariaDB 10.5+.
    pub table: &'static str,
    /// The source's writes on `t`.
    pub writes: &'static [&'static str],
}

/// The type family or kind of change a case is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Family {
    /// Columns added, dropped, moved or renamed.
    Layout,
    /// TINYINT to BIGINT, signed and unsigned.
    Integer,
    /// DECIMAL precision and scale.
    Decimal,
    /// FLOAT and DOUBLE.
    Float,
    /// BIT widths.
    Bit,
    /// CHAR, VARCHAR and TEXT lengths.
    String,
    /// BINARY, VARBINARY and BLOB, and text to binary.
    Binary,
    /// Character sets and collations.
    Charset,
    /// ENUM and SET values and storage.
    EnumSet,
    /// DATE, TIME, DATETIME, TIMESTAMP and fractional seconds.
    Temporal,
    /// YEAR.
    Year,
    /// JSON.
    Json,
    /// Generated and invisible columns.
    Generated,
    /// Keys and constraints.
    Keys,
    /// Defaults, NULL and table-level changes.
    Table,
}

/// One reference case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// A short name for test output.
    pub name: &'static str,
    /// What the case is about.
    pub family: Family,
    /// The table and writes.
    pub fixture: &'static Fixture,
    /// The ALTER statement, on table `t`.
    pub alter: &'static str,
    /// The expected verdict and deciding rule on MySQL.
    pub mysql: (Verdict, Rule),
    /// The expected verdict and deciding rule on MariaDB (10.11, and 11.8 unless below).
    pub mariadb: (Verdict, Rule),
    /// The expected verdict and deciding rule on MariaDB 11.8 where it differs from 10.11.
    pub mariadb_11_8: Option<(Verdict, Rule)>,
}

impl Case {
    /// The expected verdict and rule for `flavor` at `version` (MariaDB from 11.8 takes
    /// [`Case::mariadb_11_8`] where set).
    pub fn expected(
        &self,
        flavor: switchyard_plan::versions::Flavor,
        version: Option<switchyard_plan::versions::Version>,
    ) -> (Verdict, Rule) {
        use switchyard_plan::versions::{Flavor, Version};
        match flavor {
            Flavor::Mysql => self.mysql,
            Flavor::Mariadb => match (self.mariadb_11_8, version) {
                (Some(later), Some(v)) if v >= Version::new(11, 8, 0) => later,
                _ => self.mariadb,
            },
        }
    }
}

const fn both(
    name: &'static str,
    family: Family,
    fixture: &'static Fixture,
    alter: &'static str,
    verdict: Verdict,
    rule: Rule,
) -> Case {
    Case {
        name,
        family,
        fixture,
        alter,
        mysql: (verdict, rule),
        mariadb: (verdict, rule),
        mariadb_11_8: None,
    }
}

const fn each(
    name: &'static str,
    family: Family,
    fixture: &'static Fixture,
    alter: &'static str,
    mysql: (Verdict, Rule),
    mariadb: (Verdict, Rule),
) -> Case {
    Case {
        name,
        family,
        fixture,
        alter,
        mysql,
        mariadb,
        mariadb_11_8: None,
    }
}

/// The first table: one column of each common type.
pub const TABLE: &str = "CREATE TABLE `t` (
  `id` int NOT NULL,
  `n` int DEFAULT NULL,
  `u` int unsigned DEFAULT NULL,
  `s` varchar(10) DEFAULT NULL,
  `d` decimal(10,2) DEFAULT NULL,
  `f` float DEFAULT NULL,
  `e` enum('a','b','c') DEFAULT NULL,
  `dt` datetime DEFAULT NULL,
  `dt3` datetime(3) DEFAULT NULL,
  `dd` date DEFAULT NULL,
  `l` varchar(10) CHARACTER SET latin1 DEFAULT NULL,
  `k` int DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Source writes on [`TABLE`]: negative, NULL, minimum and maximum, every ENUM value,
/// fractional seconds, trailing spaces, an inexact FLOAT, then update and delete; rows with the
/// first, middle and last ENUM values stay.
pub const WRITES: &[&str] = &[
    "INSERT INTO t (id, n, u, s, d, f, e, dt, dt3, dd, l, k) VALUES \
     (1, -1, 4294967295, 'abcdefghij', 12345678.91, 1.5, 'a', '2024-01-02 03:04:05', '2024-01-02 03:04:05.678', '2024-01-02', 'caf\u{e9}', 7)",
    "INSERT INTO t (id, n, u, s, d, f, e, dt, dt3, dd, l, k) VALUES \
     (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 7)",
    "INSERT INTO t (id, n, u, s, d, f, e, k) VALUES (3, 2147483647, 0, '', -0.01, -2.25, 'c', 8)",
    "INSERT INTO t (id, n, u, s, d, f, e, dt, dt3, dd, l, k) VALUES \
     (4, -2147483648, 0, 'z  ', -99999999.99, 0.1, 'c', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000', '1000-01-01', '', 10)",
    "UPDATE t SET n = n - 1, e = 'b', k = 9 WHERE id = 1",
    "DELETE FROM t WHERE id = 3",
];

/// The first table and its writes.
pub const GENERAL: Fixture = Fixture {
    name: "general",
    table: TABLE,
    writes: WRITES,
};

/// Every integer width, signed and unsigned.
pub const INTEGERS: Fixture = Fixture {
    name: "int",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `ti` tinyint DEFAULT NULL,
  `tu` tinyint unsigned DEFAULT NULL,
  `si` smallint DEFAULT NULL,
  `su` smallint unsigned DEFAULT NULL,
  `mi` mediumint DEFAULT NULL,
  `mu` mediumint unsigned DEFAULT NULL,
  `i` int DEFAULT NULL,
  `iu` int unsigned DEFAULT NULL,
  `bi` bigint DEFAULT NULL,
  `bu` bigint unsigned DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, \
         -9223372036854775808, 18446744073709551615)",
        "INSERT INTO t VALUES (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0)",
        "INSERT INTO t VALUES (3, -1, 128, -1, 32768, -1, 8388608, -1, 2147483648, -1, 9223372036854775808)",
        "INSERT INTO t (id) VALUES (4)",
        "INSERT INTO t (id, i) VALUES (5, 5)",
        "UPDATE t SET ti = ti - 1, su = su + 1 WHERE id = 2",
        "DELETE FROM t WHERE id = 5",
    ],
};

/// DECIMAL, FLOAT, DOUBLE and BIT.
pub const NUMBERS: Fixture = Fixture {
    name: "num",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `d` decimal(10,2) DEFAULT NULL,
  `du` decimal(5,2) unsigned DEFAULT NULL,
  `f` float DEFAULT NULL,
  `db` double DEFAULT NULL,
  `f72` float(7,2) DEFAULT NULL,
  `b1` bit(1) DEFAULT NULL,
  `b8` bit(8) DEFAULT NULL,
  `b10` bit(10) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t VALUES (1, 12345678.91, 999.99, 1.234, 1.7976931348623157e308, 12345.67, b'1', \
         b'10000001', b'1000000001')",
        "INSERT INTO t VALUES (2, -99999999.99, 0, -2.5, -2.2250738585072014e-308, -0.01, b'0', \
         b'11111111', b'1111111111')",
        "INSERT INTO t VALUES (3, 0.05, 0.01, 3.4e38, 0.1, 0, NULL, b'0', b'0')",
        "INSERT INTO t (id) VALUES (4)",
        "INSERT INTO t (id, d) VALUES (5, 5)",
        "UPDATE t SET d = d - 0.01, f = f * 2 WHERE id = 1",
        "DELETE FROM t WHERE id = 5",
    ],
};

/// CHAR, VARCHAR and TEXT in single- and multi-byte character sets.
pub const STRINGS: Fixture = Fixture {
    name: "str",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `c10` char(10) DEFAULT NULL,
  `v10` varchar(10) DEFAULT NULL,
  `v64` varchar(64) DEFAULT NULL,
  `l200` varchar(200) CHARACTER SET latin1 DEFAULT NULL,
  `l255` varchar(255) CHARACTER SET latin1 DEFAULT NULL,
  `m3` varchar(10) CHARACTER SET utf8mb3 DEFAULT NULL,
  `a10` varchar(10) CHARACTER SET ascii DEFAULT NULL,
  `lc` char(10) CHARACTER SET latin1 DEFAULT NULL,
  `tt` tinytext,
  `tx` text,
  `mt` mediumtext,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t VALUES (1, 'ab', 'z  ', REPEAT('\u{1f600}', 64), REPEAT('\u{e9}', 200), REPEAT('x', 255), \
         '\u{f1}and\u{fa}\u{20ac}abc', 'plain', 'caf\u{e9}', REPEAT('b', 255), REPEAT('ab', 20000), REPEAT('c', 70000))",
        "INSERT INTO t VALUES (2, '\u{f1}\u{20ac}\u{1f600}', REPEAT('\u{1f600}', 10), 'a', '', 'y', '\u{20ac}', '', 'x  ', \
         '\u{e9}', '\u{e9}', '\u{e9}')",
        "INSERT INTO t VALUES (3, '', '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "INSERT INTO t (id) VALUES (4)",
        "INSERT INTO t (id, v10) VALUES (5, 'gone')",
        "UPDATE t SET v10 = 'q  ', c10 = 'r' WHERE id = 2",
        "DELETE FROM t WHERE id = 5",
    ],
};

/// BINARY, VARBINARY and BLOB beside text columns.
pub const BINARIES: Fixture = Fixture {
    name: "bin",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `v10` varchar(10) DEFAULT NULL,
  `c10` char(10) DEFAULT NULL,
  `tx` text,
  `b4` binary(4) DEFAULT NULL,
  `vb` varbinary(10) DEFAULT NULL,
  `bl` blob,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t VALUES (1, 'z  ', 'ab', '\u{f1}\u{20ac}\u{1f600}', 0x0102, 0x00FF10, 0x00FF10)",
        "INSERT INTO t VALUES (2, '\u{1f600}', '', '', 0x01, '', '')",
        "INSERT INTO t (id) VALUES (3)",
        "INSERT INTO t (id, vb) VALUES (4, 0x01)",
        "UPDATE t SET vb = 0xFFFF WHERE id = 2",
        "DELETE FROM t WHERE id = 4",
    ],
};

/// ENUM and SET, small and at the edge of a storage size.
pub const ENUMS: Fixture = Fixture {
    name: "enum",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `e` enum('a','b','c') DEFAULT NULL,
  `big` enum('v0','v1','v2','v3','v4','v5','v6','v7','v8','v9','v10','v11','v12','v13','v14','v15','v16','v17','v18','v19','v20','v21','v22','v23','v24','v25','v26','v27','v28','v29','v30','v31','v32','v33','v34','v35','v36','v37','v38','v39','v40','v41','v42','v43','v44','v45','v46','v47','v48','v49','v50','v51','v52','v53','v54','v55','v56','v57','v58','v59','v60','v61','v62','v63','v64','v65','v66','v67','v68','v69','v70','v71','v72','v73','v74','v75','v76','v77','v78','v79','v80','v81','v82','v83','v84','v85','v86','v87','v88','v89','v90','v91','v92','v93','v94','v95','v96','v97','v98','v99','v100','v101','v102','v103','v104','v105','v106','v107','v108','v109','v110','v111','v112','v113','v114','v115','v116','v117','v118','v119','v120','v121','v122','v123','v124','v125','v126','v127','v128','v129','v130','v131','v132','v133','v134','v135','v136','v137','v138','v139','v140','v141','v142','v143','v144','v145','v146','v147','v148','v149','v150','v151','v152','v153','v154','v155','v156','v157','v158','v159','v160','v161','v162','v163','v164','v165','v166','v167','v168','v169','v170','v171','v172','v173','v174','v175','v176','v177','v178','v179','v180','v181','v182','v183','v184','v185','v186','v187','v188','v189','v190','v191','v192','v193','v194','v195','v196','v197','v198','v199','v200','v201','v202','v203','v204','v205','v206','v207','v208','v209','v210','v211','v212','v213','v214','v215','v216','v217','v218','v219','v220','v221','v222','v223','v224','v225','v226','v227','v228','v229','v230','v231','v232','v233','v234','v235','v236','v237','v238','v239','v240','v241','v242','v243','v244','v245','v246','v247','v248','v249','v250','v251','v252','v253','v254') DEFAULT NULL,
  `s` set('x','y','z') DEFAULT NULL,
  `s8` set('s0','s1','s2','s3','s4','s5','s6','s7') DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t VALUES (1, 'a', 'v254', 'x,z', 's7')",
        "INSERT INTO t VALUES (2, 'c', 'v0', '', 's0,s7')",
        "INSERT INTO t VALUES (3, 'b', 'v100', 'y', '')",
        "INSERT INTO t (id) VALUES (4)",
        "INSERT INTO t (id, e) VALUES (5, 'c')",
        "UPDATE t SET e = 'b', s = 'x,y,z' WHERE id = 1",
        "DELETE FROM t WHERE id = 5",
    ],
};

/// Dates and times with and without fractional seconds, and YEAR.
pub const TEMPORALS: Fixture = Fixture {
    name: "time",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `d` date DEFAULT NULL,
  `dt` datetime DEFAULT NULL,
  `dt3` datetime(3) DEFAULT NULL,
  `dt6` datetime(6) DEFAULT NULL,
  `ts` timestamp NULL DEFAULT NULL,
  `ts3` timestamp(3) NULL DEFAULT NULL,
  `tm` time DEFAULT NULL,
  `tm3` time(3) DEFAULT NULL,
  `y` year DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t VALUES (1, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.678', \
         '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05', '2024-01-02 03:04:05.678', '-838:59:59', \
         '12:34:56.789', 2024)",
        "INSERT INTO t VALUES (2, '1000-01-01', '9999-12-31 23:59:59', '1000-01-01 00:00:00.001', \
         '9999-12-31 23:59:59.999999', '1970-01-02 00:00:01', '2038-01-18 03:14:07.999', '838:59:59', \
         '-00:00:00.001', 1901)",
        "INSERT INTO t (id) VALUES (3)",
        "INSERT INTO t (id, y) VALUES (4, 2000)",
        "UPDATE t SET dt = dt - INTERVAL 1 SECOND, tm3 = '00:00:00.5' WHERE id = 1",
        "DELETE FROM t WHERE id = 4",
    ],
};

/// JSON, generated and invisible columns, unique strings under two collations.
pub const MISC: Fixture = Fixture {
    name: "misc",
    table: "CREATE TABLE `t` (
  `id` int NOT NULL,
  `j` json DEFAULT NULL,
  `lt` longtext,
  `n` int DEFAULT NULL,
  `k` int DEFAULT NULL,
  `u` int DEFAULT NULL,
  `g` int GENERATED ALWAYS AS ((`n` * 2)) VIRTUAL,
  `gs` int GENERATED ALWAYS AS ((`n` * 3)) STORED,
  `h` int DEFAULT NULL INVISIBLE,
  `ub` varchar(10) COLLATE utf8mb4_bin DEFAULT NULL,
  `uc` varchar(10) COLLATE utf8mb4_general_ci DEFAULT NULL,
  `z` int DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `kub` (`ub`),
  UNIQUE KEY `kuc` (`uc`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    writes: &[
        "INSERT INTO t (id, j, lt, n, k, u, h, ub, uc, z) VALUES (1, '{\"a\": [1, 2.50, \"x\"]}', '{\"b\": 1}', \
         -1, 7, 1, 3, 'abc', 'abc', 4)",
        "INSERT INTO t (id, j, lt, n, k, u, h, ub, uc, z) VALUES (2, '[]', 'not json', 5, 7, 1, NULL, 'ABC', \
         'abd', 9)",
        "INSERT INTO t (id) VALUES (3)",
        "INSERT INTO t (id, n) VALUES (4, 40)",
        "UPDATE t SET n = n - 1, h = 8 WHERE id = 1",
        "DELETE FROM t WHERE id = 4",
    ],
};

/// Every fixture.
pub const FIXTURES: &[&Fixture] = &[
    &GENERAL, &INTEGERS, &NUMBERS, &STRINGS, &BINARIES, &ENUMS, &TEMPORALS, &MISC,
];

use Family as F;
use Verdict::{Safe, SafeWithConversion as Convert, Unsafe};

const fn convert() -> (Verdict, Rule) {
    (Convert, Rule::WideningNeedsConversion)
}

/// The cases.
pub const CASES: &[Case] = &[
    // The first table: one case per rule a replication pair can show.
    both(
        "add trailing nullable",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN x INT DEFAULT NULL",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "add trailing with default",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN x INT NOT NULL DEFAULT 5",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "drop last column",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t DROP COLUMN k",
        Safe,
        Rule::ColumnDroppedAtEnd,
    ),
    both(
        "rename in place",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t RENAME COLUMN k TO k2",
        Safe,
        Rule::ColumnRenamed,
    ),
    both(
        "add trailing virtual column",
        F::Generated,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN g INT AS (k + 1) VIRTUAL",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    // MariaDB computes extra PERSISTENT columns on replicas since MDEV-11636 (10.2).
    both(
        "add trailing stored column",
        F::Generated,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN g INT AS (k + 1) STORED",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "collation change",
        F::Charset,
        &GENERAL,
        "ALTER TABLE t MODIFY s VARCHAR(10) COLLATE utf8mb4_bin",
        Safe,
        Rule::CollationChange,
    ),
    both(
        "add index",
        F::Keys,
        &GENERAL,
        "ALTER TABLE t ADD INDEX i_n (n)",
        Safe,
        Rule::IndexChange,
    ),
    both(
        "enum append",
        F::EnumSet,
        &GENERAL,
        "ALTER TABLE t MODIFY e ENUM('a','b','c','d')",
        Safe,
        Rule::EnumValueAppended,
    ),
    // A precaution: the servers replicate it (by scanning the table for every row event).
    both(
        "drop primary key",
        F::Keys,
        &GENERAL,
        "ALTER TABLE t DROP PRIMARY KEY",
        Unsafe,
        Rule::PrimaryKeyDropped,
    ),
    both(
        "default change",
        F::Table,
        &GENERAL,
        "ALTER TABLE t ALTER COLUMN n SET DEFAULT 3",
        Safe,
        Rule::DefaultChange,
    ),
    both(
        "int widening",
        F::Integer,
        &GENERAL,
        "ALTER TABLE t MODIFY n BIGINT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "unsigned widening",
        F::Integer,
        &GENERAL,
        "ALTER TABLE t MODIFY u BIGINT UNSIGNED",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varchar widening",
        F::String,
        &GENERAL,
        "ALTER TABLE t MODIFY s VARCHAR(20)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "float to double",
        F::Float,
        &GENERAL,
        "ALTER TABLE t MODIFY f DOUBLE",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal widening",
        F::Decimal,
        &GENERAL,
        "ALTER TABLE t MODIFY d DECIMAL(12,4)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "widening plus trailing column",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t MODIFY n BIGINT, ADD COLUMN x INT DEFAULT NULL",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    each(
        "datetime fsp 3 to 6",
        F::Temporal,
        &GENERAL,
        "ALTER TABLE t MODIFY dt3 DATETIME(6)",
        (Unsafe, Rule::FspChange),
        convert(),
    ),
    each(
        "date to datetime",
        F::Temporal,
        &GENERAL,
        "ALTER TABLE t MODIFY dd DATETIME",
        (Unsafe, Rule::TemporalTypeChange),
        convert(),
    ),
    both(
        "datetime fsp 0 to 3",
        F::Temporal,
        &GENERAL,
        "ALTER TABLE t MODIFY dt DATETIME(3)",
        Unsafe,
        Rule::FspChange,
    ),
    both(
        "add in the middle",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN x INT AFTER n",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    ),
    both(
        "add first",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN x INT FIRST",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    ),
    both(
        "drop a middle column",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t DROP COLUMN n",
        Unsafe,
        Rule::ColumnDroppedNotLast,
    ),
    both(
        "reorder",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t MODIFY k INT AFTER id",
        Unsafe,
        Rule::ColumnReordered,
    ),
    both(
        "drop last, add one",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t DROP COLUMN k, ADD COLUMN x INT",
        Unsafe,
        Rule::ColumnPositionReused,
    ),
    // The replica fills it with 0, as the primary's own ALTER fills its existing rows.
    both(
        "trailing not null without default",
        F::Layout,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN x INT NOT NULL",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "trailing varying default",
        F::Table,
        &GENERAL,
        "ALTER TABLE t ADD COLUMN x DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)",
        Unsafe,
        Rule::NondeterministicDefault,
    ),
    both(
        "int to varchar",
        F::Integer,
        &GENERAL,
        "ALTER TABLE t MODIFY n VARCHAR(30)",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    both(
        "varchar to text",
        F::String,
        &GENERAL,
        "ALTER TABLE t MODIFY s TEXT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varchar to char",
        F::String,
        &GENERAL,
        "ALTER TABLE t MODIFY s CHAR(10)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "int narrowing",
        F::Integer,
        &GENERAL,
        "ALTER TABLE t MODIFY n SMALLINT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "decimal scale up, digits down",
        F::Decimal,
        &GENERAL,
        "ALTER TABLE t MODIFY d DECIMAL(10,4)",
        Unsafe,
        Rule::DecimalNarrowing,
    ),
    both(
        "signedness",
        F::Integer,
        &GENERAL,
        "ALTER TABLE t MODIFY n INT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    ),
    each(
        "mixed signedness widening",
        F::Integer,
        &GENERAL,
        "ALTER TABLE t MODIFY n BIGINT, MODIFY u BIGINT UNSIGNED",
        (Unsafe, Rule::MixedSignednessWidening),
        convert(),
    ),
    both(
        "null to not null",
        F::Table,
        &GENERAL,
        "ALTER TABLE t MODIFY n INT NOT NULL DEFAULT 0",
        Unsafe,
        Rule::NullToNotNull,
    ),
    both(
        "charset",
        F::Charset,
        &GENERAL,
        "ALTER TABLE t MODIFY l VARCHAR(10) CHARACTER SET utf8mb4",
        Unsafe,
        Rule::CharsetChange,
    ),
    both(
        "enum insert",
        F::EnumSet,
        &GENERAL,
        "ALTER TABLE t MODIFY e ENUM('a','x','b','c')",
        Unsafe,
        Rule::EnumValueInserted,
    ),
    both(
        "enum remove",
        F::EnumSet,
        &GENERAL,
        "ALTER TABLE t MODIFY e ENUM('a','c')",
        Unsafe,
        Rule::EnumValueRemoved,
    ),
    both(
        "enum reorder",
        F::EnumSet,
        &GENERAL,
        "ALTER TABLE t MODIFY e ENUM('c','b','a')",
        Unsafe,
        Rule::EnumValuesChanged,
    ),
    both(
        "unique key",
        F::Keys,
        &GENERAL,
        "ALTER TABLE t ADD UNIQUE KEY uk (k)",
        Unsafe,
        Rule::UniqueKeyAdded,
    ),
    // MySQL stops on a row that fails it; MariaDB stores it, and the primary's ALTER refuses it.
    both(
        "check constraint",
        F::Keys,
        &GENERAL,
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (n > 0)",
        Unsafe,
        Rule::CheckConstraintAdded,
    ),
    both(
        "rename table",
        F::Table,
        &GENERAL,
        "ALTER TABLE t RENAME TO t2",
        Unsafe,
        Rule::TableRenamed,
    ),
    // Integers of each width and sign.
    both(
        "tinyint to smallint",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY ti SMALLINT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "tinyint to bigint",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY ti BIGINT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "smallint to mediumint",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY si MEDIUMINT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "mediumint to int",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY mi INT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "tinyint unsigned to smallint unsigned",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY tu SMALLINT UNSIGNED",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "mediumint unsigned to int unsigned",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY mu INT UNSIGNED",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    // MySQL reads the unsigned source with ALL_UNSIGNED; MariaDB with the replica's sign.
    each(
        "tinyint unsigned to smallint",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY tu SMALLINT",
        convert(),
        (Unsafe, Rule::SignednessChange),
    ),
    each(
        "int unsigned to bigint",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY iu BIGINT",
        convert(),
        (Unsafe, Rule::SignednessChange),
    ),
    both(
        "tinyint to smallint unsigned",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY ti SMALLINT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "int to bigint unsigned",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY i BIGINT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "bigint to int",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY bi INT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "smallint unsigned to tinyint unsigned",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY su TINYINT UNSIGNED",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "int unsigned to int",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY iu INT",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "bigint unsigned to bigint",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY bu BIGINT",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "int to int zerofill",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY i INT ZEROFILL",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "int display width",
        F::Integer,
        &INTEGERS,
        "ALTER TABLE t MODIFY i INT(11) DEFAULT NULL",
        Safe,
        Rule::NoOp,
    ),
    // DECIMAL precision and scale.
    both(
        "decimal 10,2 to 12,2",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(12,2)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal 10,2 to 11,3",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(11,3)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal 10,2 to 12,1",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(12,1)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal 10,2 to 65,2",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(65,2)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal 10,2 to 9,2",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(9,2)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "decimal 10,2 to 10,1",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(10,1)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "decimal unsigned to signed",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY du DECIMAL(5,2) DEFAULT NULL",
        Safe,
        Rule::NoOp,
    ),
    both(
        "decimal unsigned 5,2 to signed 6,2",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY du DECIMAL(6,2)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "decimal to unsigned",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DECIMAL(10,2) UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "decimal to double",
        F::Decimal,
        &NUMBERS,
        "ALTER TABLE t MODIFY d DOUBLE",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    // FLOAT and DOUBLE.
    both(
        "double to float",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY db FLOAT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "float(7,2) to float(9,2)",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY f72 FLOAT(9,2) DEFAULT NULL",
        Safe,
        Rule::NoOp,
    ),
    both(
        "float to float(7,2)",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY f FLOAT(7,2) DEFAULT NULL",
        Safe,
        Rule::NoOp,
    ),
    both(
        "float(7,2) to double",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY f72 DOUBLE",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "float(7,2) to double(9,2)",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY f72 DOUBLE(9,2)",
        Unsafe,
        Rule::FloatPrecisionChange,
    ),
    both(
        "float to unsigned",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY f FLOAT UNSIGNED",
        Unsafe,
        Rule::SignednessChange,
    ),
    both(
        "float to decimal",
        F::Float,
        &NUMBERS,
        "ALTER TABLE t MODIFY f DECIMAL(20,4)",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    // BIT.
    both(
        "bit 1 to 8",
        F::Bit,
        &NUMBERS,
        "ALTER TABLE t MODIFY b1 BIT(8)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "bit 8 to 16",
        F::Bit,
        &NUMBERS,
        "ALTER TABLE t MODIFY b8 BIT(16)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "bit 10 to 9",
        F::Bit,
        &NUMBERS,
        "ALTER TABLE t MODIFY b10 BIT(9)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "bit to tinyint",
        F::Bit,
        &NUMBERS,
        "ALTER TABLE t MODIFY b8 TINYINT UNSIGNED",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    // CHAR, VARCHAR and TEXT lengths.
    both(
        "varchar 10 to 5",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY v10 VARCHAR(5)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "varchar to longer char",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY v10 CHAR(20)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "char to varchar",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY c10 VARCHAR(10)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "char 10 to 20",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY c10 CHAR(20)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "char 10 to 5",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY c10 CHAR(5)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "char to text",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY c10 TEXT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varchar 64 utf8mb4 to tinytext",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY v64 TINYTEXT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "varchar 64 to text",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY v64 TEXT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "latin1 varchar 200 to 300",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY l200 VARCHAR(300) CHARACTER SET latin1",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "latin1 varchar 255 to 256",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY l255 VARCHAR(256) CHARACTER SET latin1",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "latin1 varchar 255 to tinytext",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY l255 TINYTEXT CHARACTER SET latin1",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "tinytext to text",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY tt TEXT",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "text to tinytext",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY tx TINYTEXT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "mediumtext to text",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY mt TEXT",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "tinytext to varchar 255",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY tt VARCHAR(255)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    // 256 bytes pass the servers' byte check; 64 characters truncate 255 one-byte ones.
    both(
        "tinytext to varchar 64",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY tt VARCHAR(64)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "tinytext to varchar 63",
        F::String,
        &STRINGS,
        "ALTER TABLE t MODIFY tt VARCHAR(63)",
        Unsafe,
        Rule::Narrowing,
    ),
    // Character sets and collations.
    both(
        "utf8mb3 to utf8mb4",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY m3 VARCHAR(10) CHARACTER SET utf8mb4",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "utf8mb3 varchar 10 to 20",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY m3 VARCHAR(20) CHARACTER SET utf8mb3",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "ascii to utf8mb4",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY a10 VARCHAR(10) CHARACTER SET utf8mb4",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "ascii to latin1",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY a10 VARCHAR(10) CHARACTER SET latin1",
        Safe,
        Rule::CollationChange,
    ),
    both(
        "latin1 char to utf8mb4",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY lc CHAR(10) CHARACTER SET utf8mb4",
        Unsafe,
        Rule::CharsetChange,
    ),
    both(
        "utf8mb4 to utf8mb3",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY v10 VARCHAR(10) CHARACTER SET utf8mb3",
        Unsafe,
        Rule::CharsetChange,
    ),
    both(
        "utf8mb4 text to latin1",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY tx TEXT CHARACTER SET latin1",
        Unsafe,
        Rule::CharsetChange,
    ),
    both(
        "convert to utf8mb4",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4",
        Unsafe,
        Rule::CharsetChange,
    ),
    both(
        "latin1 collation",
        F::Charset,
        &STRINGS,
        "ALTER TABLE t MODIFY lc CHAR(10) CHARACTER SET latin1 COLLATE latin1_bin",
        Safe,
        Rule::CollationChange,
    ),
    // BINARY, VARBINARY, BLOB.
    both(
        "varchar to varbinary of its bytes",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY v10 VARBINARY(40)",
        Safe,
        Rule::NoOp,
    ),
    both(
        "varchar to longer varbinary",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY v10 VARBINARY(80)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varchar to shorter varbinary",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY v10 VARBINARY(39)",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "char to binary of its bytes",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY c10 BINARY(40)",
        Safe,
        Rule::NoOp,
    ),
    both(
        "text to blob",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY tx BLOB",
        Safe,
        Rule::NoOp,
    ),
    both(
        "binary 4 to 8",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY b4 BINARY(8)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "binary to varbinary",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY b4 VARBINARY(4)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varbinary 10 to 20",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY vb VARBINARY(20)",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "varbinary to blob",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY vb BLOB",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "blob to mediumblob",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY bl MEDIUMBLOB",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "blob to tinyblob",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY bl TINYBLOB",
        Unsafe,
        Rule::Narrowing,
    ),
    both(
        "varbinary to varchar",
        F::Binary,
        &BINARIES,
        "ALTER TABLE t MODIFY vb VARCHAR(10)",
        Unsafe,
        Rule::CharsetChange,
    ),
    // ENUM and SET.
    both(
        "enum append past 255 values",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY big ENUM('v0','v1','v2','v3','v4','v5','v6','v7','v8','v9','v10','v11','v12','v13','v14','v15','v16','v17','v18','v19','v20','v21','v22','v23','v24','v25','v26','v27','v28','v29','v30','v31','v32','v33','v34','v35','v36','v37','v38','v39','v40','v41','v42','v43','v44','v45','v46','v47','v48','v49','v50','v51','v52','v53','v54','v55','v56','v57','v58','v59','v60','v61','v62','v63','v64','v65','v66','v67','v68','v69','v70','v71','v72','v73','v74','v75','v76','v77','v78','v79','v80','v81','v82','v83','v84','v85','v86','v87','v88','v89','v90','v91','v92','v93','v94','v95','v96','v97','v98','v99','v100','v101','v102','v103','v104','v105','v106','v107','v108','v109','v110','v111','v112','v113','v114','v115','v116','v117','v118','v119','v120','v121','v122','v123','v124','v125','v126','v127','v128','v129','v130','v131','v132','v133','v134','v135','v136','v137','v138','v139','v140','v141','v142','v143','v144','v145','v146','v147','v148','v149','v150','v151','v152','v153','v154','v155','v156','v157','v158','v159','v160','v161','v162','v163','v164','v165','v166','v167','v168','v169','v170','v171','v172','v173','v174','v175','v176','v177','v178','v179','v180','v181','v182','v183','v184','v185','v186','v187','v188','v189','v190','v191','v192','v193','v194','v195','v196','v197','v198','v199','v200','v201','v202','v203','v204','v205','v206','v207','v208','v209','v210','v211','v212','v213','v214','v215','v216','v217','v218','v219','v220','v221','v222','v223','v224','v225','v226','v227','v228','v229','v230','v231','v232','v233','v234','v235','v236','v237','v238','v239','v240','v241','v242','v243','v244','v245','v246','v247','v248','v249','v250','v251','v252','v253','v254','x')",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "set append",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY s SET('x','y','z','w')",
        Safe,
        Rule::EnumValueAppended,
    ),
    both(
        "set 8 to 9 values",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY s8 SET('s0','s1','s2','s3','s4','s5','s6','s7','s8')",
        Convert,
        Rule::WideningNeedsConversion,
    ),
    both(
        "set insert",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY s SET('w','x','y','z')",
        Unsafe,
        Rule::EnumValueInserted,
    ),
    both(
        "set remove",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY s SET('x','z')",
        Unsafe,
        Rule::EnumValueRemoved,
    ),
    both(
        "enum to set",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY e SET('a','b','c')",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    both(
        "enum to varchar",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY e VARCHAR(10)",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    both(
        "enum character set",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY e ENUM('a','b','c') CHARACTER SET latin1",
        Safe,
        Rule::CollationChange,
    ),
    both(
        "enum collation",
        F::EnumSet,
        &ENUMS,
        "ALTER TABLE t MODIFY e ENUM('a','b','c') COLLATE utf8mb4_bin",
        Safe,
        Rule::CollationChange,
    ),
    // Dates and times.
    both(
        "datetime fsp 6 to 3",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY dt6 DATETIME(3)",
        Unsafe,
        Rule::FspChange,
    ),
    both(
        "datetime fsp 3 to 0",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY dt3 DATETIME",
        Unsafe,
        Rule::FspChange,
    ),
    each(
        "date to datetime(3)",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY d DATETIME(3)",
        (Unsafe, Rule::TemporalTypeChange),
        convert(),
    ),
    both(
        "datetime to date",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY dt DATE",
        Unsafe,
        Rule::TemporalTypeChange,
    ),
    both(
        "timestamp fsp 0 to 3",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY ts TIMESTAMP(3) NULL DEFAULT NULL",
        Unsafe,
        Rule::FspChange,
    ),
    each(
        "timestamp fsp 3 to 6",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY ts3 TIMESTAMP(6) NULL DEFAULT NULL",
        (Unsafe, Rule::FspChange),
        convert(),
    ),
    both(
        "time fsp 0 to 3",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY tm TIME(3)",
        Unsafe,
        Rule::FspChange,
    ),
    each(
        "time fsp 3 to 6",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY tm3 TIME(6)",
        (Unsafe, Rule::FspChange),
        convert(),
    ),
    both(
        "timestamp to datetime",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY ts DATETIME",
        Unsafe,
        Rule::TemporalTypeChange,
    ),
    both(
        "datetime to timestamp",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY dt TIMESTAMP NULL DEFAULT NULL",
        Unsafe,
        Rule::TemporalTypeChange,
    ),
    both(
        "time to datetime",
        F::Temporal,
        &TEMPORALS,
        "ALTER TABLE t MODIFY tm DATETIME",
        Unsafe,
        Rule::TemporalTypeChange,
    ),
    both(
        "year to smallint",
        F::Year,
        &TEMPORALS,
        "ALTER TABLE t MODIFY y SMALLINT",
        Unsafe,
        Rule::TypeFamilyChange,
    ),
    both(
        "year(4)",
        F::Year,
        &TEMPORALS,
        "ALTER TABLE t MODIFY y YEAR(4) DEFAULT NULL",
        Safe,
        Rule::NoOp,
    ),
    // JSON, generated and invisible columns, keys.
    each(
        "json to longtext",
        F::Json,
        &MISC,
        "ALTER TABLE t MODIFY j LONGTEXT",
        (Unsafe, Rule::TypeFamilyChange),
        (Safe, Rule::CollationChange),
    ),
    each(
        "longtext to json",
        F::Json,
        &MISC,
        "ALTER TABLE t MODIFY lt JSON",
        (Unsafe, Rule::TypeFamilyChange),
        (Unsafe, Rule::CheckConstraintAdded),
    ),
    each(
        "json to text",
        F::Json,
        &MISC,
        "ALTER TABLE t MODIFY j TEXT",
        (Unsafe, Rule::TypeFamilyChange),
        (Unsafe, Rule::Narrowing),
    ),
    both(
        "add trailing json",
        F::Json,
        &MISC,
        "ALTER TABLE t ADD COLUMN j2 JSON",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "virtual expression change",
        F::Generated,
        &MISC,
        "ALTER TABLE t MODIFY g INT AS (n * 4) VIRTUAL",
        Safe,
        Rule::GeneratedExpressionChanged,
    ),
    Case {
        mariadb_11_8: Some((Safe, Rule::GeneratedExpressionChanged)),
        ..each(
            "stored expression change",
            F::Generated,
            &MISC,
            "ALTER TABLE t MODIFY gs INT AS (n * 4) STORED",
            (Safe, Rule::GeneratedExpressionChanged),
            (Unsafe, Rule::GeneratedColumnChange),
        )
    },
    both(
        "add virtual column in the middle",
        F::Generated,
        &MISC,
        "ALTER TABLE t ADD COLUMN g2 INT AS (k + 1) VIRTUAL AFTER n",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    ),
    both(
        "drop a virtual column in the middle",
        F::Generated,
        &MISC,
        "ALTER TABLE t DROP COLUMN g",
        Unsafe,
        Rule::ColumnDroppedNotLast,
    ),
    both(
        "add invisible in the middle",
        F::Generated,
        &MISC,
        "ALTER TABLE t ADD COLUMN x INT INVISIBLE AFTER id",
        Unsafe,
        Rule::ColumnAddedInMiddle,
    ),
    both(
        "add invisible at the end",
        F::Generated,
        &MISC,
        "ALTER TABLE t ADD COLUMN x INT INVISIBLE",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "drop an invisible column in the middle",
        F::Generated,
        &MISC,
        "ALTER TABLE t DROP COLUMN h",
        Unsafe,
        Rule::ColumnDroppedNotLast,
    ),
    both(
        "make a column invisible",
        F::Generated,
        &MISC,
        "ALTER TABLE t MODIFY z INT DEFAULT NULL INVISIBLE",
        Safe,
        Rule::ColumnAttributeChange,
    ),
    both(
        "unique key implied by the primary key",
        F::Keys,
        &MISC,
        "ALTER TABLE t ADD UNIQUE KEY uu (id, u)",
        Safe,
        Rule::IndexChange,
    ),
    both(
        "unique key on a new nullable column",
        F::Keys,
        &MISC,
        "ALTER TABLE t ADD COLUMN code VARCHAR(10) DEFAULT NULL, ADD UNIQUE KEY uk_code (code)",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "check on a new nullable column",
        F::Keys,
        &MISC,
        "ALTER TABLE t ADD COLUMN pct INT DEFAULT NULL, ADD CONSTRAINT ck_pct CHECK (pct BETWEEN 0 AND 100)",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    both(
        "unique column to a case-insensitive collation",
        F::Charset,
        &MISC,
        "ALTER TABLE t MODIFY ub VARCHAR(10) COLLATE utf8mb4_general_ci",
        Unsafe,
        Rule::CollationChangeInUniqueKey,
    ),
    both(
        "unique column to its binary collation",
        F::Charset,
        &MISC,
        "ALTER TABLE t MODIFY uc VARCHAR(10) COLLATE utf8mb4_bin",
        Safe,
        Rule::CollationChange,
    ),
    both(
        "swap two columns' names",
        F::Layout,
        &MISC,
        "ALTER TABLE t RENAME COLUMN k TO u, RENAME COLUMN u TO k",
        Safe,
        Rule::ColumnRenamed,
    ),
    both(
        "primary key over a nullable column",
        F::Keys,
        &MISC,
        "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, u)",
        Unsafe,
        Rule::NullToNotNull,
    ),
    both(
        "trailing varchar not null without default",
        F::Table,
        &MISC,
        "ALTER TABLE t ADD COLUMN x VARCHAR(5) NOT NULL",
        Safe,
        Rule::ColumnAddedAtEnd,
    ),
    // MySQL's strict mode refuses the zero date its own ALTER would give existing rows.
    each(
        "trailing datetime not null without default",
        F::Table,
        &MISC,
        "ALTER TABLE t ADD COLUMN x DATETIME NOT NULL",
        (Unsafe, Rule::ColumnAddedWithoutDefault),
        (Safe, Rule::ColumnAddedAtEnd),
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use switchyard_plan::versions::{Flavor, Version};

    use super::*;
    use crate::{AnalyzeOptions, analyze_with};

    #[test]
    fn the_analyzer_gives_every_reference_verdict() {
        let versions = [
            (Flavor::Mysql, None),
            (Flavor::Mariadb, None),
            (Flavor::Mariadb, Some(Version::new(11, 8, 3))),
        ];
        for case in CASES {
            for (flavor, version) in versions {
                let (verdict, rule) = case.expected(flavor, version);
                let mut options = AnalyzeOptions::default();
                if let Some(version) = version {
                    options = options.with_server_version(version);
                }
                let analysis = analyze_with(flavor, case.fixture.table, case.alter, &options)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(
                    analysis.verdict, verdict,
                    "{flavor} {version:?} {}: {:?}",
                    case.name, analysis.reasons
                );
                let decided = analysis
                    .clauses
                    .iter()
                    .filter(|c| c.verdict == verdict)
                    .any(|c| c.rule == rule);
                assert!(
                    decided,
                    "{flavor} {}: rule {rule} does not decide: {:?}",
                    case.name, analysis.clauses
                );
            }
        }
    }

    #[test]
    fn names_are_unique_and_every_family_and_fixture_has_cases() {
        let mut names = BTreeSet::new();
        for case in CASES {
            assert!(names.insert(case.name), "{} twice", case.name);
        }
        let families: BTreeSet<Family> = CASES.iter().map(|c| c.family).collect();
        for family in [
            Family::Layout,
            Family::Integer,
            Family::Decimal,
            Family::Float,
            Family::Bit,
            Family::String,
            Family::Binary,
            Family::Charset,
            Family::EnumSet,
            Family::Temporal,
            Family::Year,
            Family::Json,
            Family::Generated,
            Family::Keys,
            Family::Table,
        ] {
            assert!(families.contains(&family), "{family:?}");
        }
        for fixture in FIXTURES {
            assert!(
                CASES.iter().any(|c| c.fixture == *fixture),
                "{}",
                fixture.name
            );
        }
    }

    #[test]
    fn every_unsafe_rule_a_pair_can_show_has_a_reference_case() {
        let covered: Vec<Rule> = CASES
            .iter()
            .flat_map(|c| [c.mysql.1, c.mariadb.1])
            .collect();
        for rule in [
            Rule::ColumnAddedInMiddle,
            Rule::ColumnDroppedNotLast,
            Rule::ColumnReordered,
            Rule::ColumnPositionReused,
            Rule::NondeterministicDefault,
            Rule::TypeFamilyChange,
            Rule::TemporalTypeChange,
            Rule::Narrowing,
            Rule::DecimalNarrowing,
            Rule::FloatPrecisionChange,
            Rule::SignednessChange,
            Rule::MixedSignednessWidening,
            Rule::NullToNotNull,
            Rule::CharsetChange,
            Rule::CollationChangeInUniqueKey,
            Rule::FspChange,
            Rule::EnumValueInserted,
            Rule::EnumValueRemoved,
            Rule::EnumValuesChanged,
            Rule::GeneratedColumnChange,
            Rule::UniqueKeyAdded,
            Rule::CheckConstraintAdded,
            Rule::TableRenamed,
            Rule::WideningNeedsConversion,
        ] {
            assert!(covered.contains(&rule), "{rule}");
        }
    }
}
