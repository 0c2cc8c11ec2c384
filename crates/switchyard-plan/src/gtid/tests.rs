//! Unit tests of GTID parsing, printing and arithmetic on strings servers print.

use super::*;

const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const B: &str = "4a2b6c8d-1e2f-11ef-8a9b-0242ac120002";

fn mysql(text: &str) -> MysqlGtidSet {
    MysqlGtidSet::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn mariadb(text: &str) -> MariadbGtidPos {
    MariadbGtidPos::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn mysql_error(text: &str) -> GtidError {
    match MysqlGtidSet::parse(text) {
        Ok(set) => panic!("{text:?} should be refused, parsed as {set}"),
        Err(error) => {
            assert_eq!(error.category(), "invalid_mysql_gtid_set");
            error
        }
    }
}

fn mariadb_error(text: &str) -> GtidError {
    match MariadbGtidPos::parse(text) {
        Ok(pos) => panic!("{text:?} should be refused, parsed as {pos}"),
        Err(error) => {
            assert_eq!(error.category(), "invalid_mariadb_gtid_position");
            error
        }
    }
}

#[test]
fn mysql_gtid_executed_as_the_server_prints_it() {
    let text =
        "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11-18,\n4A2B6C8D-1E2F-11EF-8A9B-0242AC120002:1-3";
    let set = mysql(text);
    assert_eq!(set.to_string(), format!("{A}:1-5:11-18,{B}:1-3"));
    assert_eq!(format!("{set:#}"), format!("{A}:1-5:11-18,\n{B}:1-3"));
    assert_eq!(set.transaction_count(), 5 + 8 + 3);
    let a = Tsid::untagged(Uuid::parse(A).expect("uuid"));
    assert_eq!(
        set.intervals(&a),
        [
            Interval::new(1, 5).expect("iv"),
            Interval::new(11, 18).expect("iv")
        ]
    );
    assert!(set.contains(&a, 11) && set.contains(&a, 5));
    assert!(!set.contains(&a, 6) && !set.contains(&a, 19) && !set.contains(&a, 0));
}

#[test]
fn mysql_sets_are_normalised_whatever_the_input_order_and_spacing() {
    let messy = format!(
        "  {}:3 ,\n {A}:11-18:1-5:6 ,{}:1-2\n",
        B.to_uppercase(),
        B.to_uppercase()
    );
    let set = mysql(&messy);
    assert_eq!(set.to_string(), format!("{A}:1-6:11-18,{B}:1-3"));
    assert_eq!(set, mysql(&format!("{A}:1-6:11-18,{B}:1-3")));
    assert_eq!(
        mysql(&format!("{A}: 1 - 3 : 2-4 :5")).to_string(),
        format!("{A}:1-5")
    );
    assert_eq!(mysql(&format!("{A}:7-7")).to_string(), format!("{A}:7"));
}

#[test]
fn mysql_empty_text_is_the_empty_set() {
    for text in ["", "  ", "\n"] {
        let set = mysql(text);
        assert!(set.is_empty());
        assert_eq!(set.to_string(), "");
        assert_eq!(set.transaction_count(), 0);
    }
    assert_eq!(GtidSet::Mysql(mysql("")).transaction_count(), Some(0));
}

#[test]
fn mysql_tagged_gtids_print_each_uuid_once_with_tags_sorted_after_untagged() {
    // The form MySQL 9.1 prints for this gtid_purged (MySQL bug #116789).
    let set = mysql(
        "3E11FA47-71CA-11E1-9E33-C80AA9429562:Domain_2:8-52, 3E11FA47-71CA-11E1-9E33-C80AA9429562:Domain_1:1-3:15-21",
    );
    assert_eq!(
        set.to_string(),
        format!("{A}:domain_1:1-3:15-21:domain_2:8-52")
    );
    let with_untagged = set.union(&mysql(&format!("{A}:1-5")));
    assert_eq!(
        with_untagged.to_string(),
        format!("{A}:1-5:domain_1:1-3:15-21:domain_2:8-52")
    );
    // A canonical tagged set from a 8.4 server prints back unchanged.
    let canonical = "896e7882-18fe-11ef-ab88-22222d34d411:1-4:aaaa:1:abc:1-3:bbbbb:1:bbbbbb:1:x:1,896e7882-18fe-11ef-ab88-22222d34d412:1-2";
    assert_eq!(mysql(canonical).to_string(), canonical);
    assert_eq!(
        mysql(canonical).transaction_count(),
        4 + 1 + 3 + 1 + 1 + 1 + 2
    );
}

#[test]
fn mysql_tags_are_separate_sequences() {
    let tagged = mysql(&format!("{A}:maint:1-3"));
    let untagged = mysql(&format!("{A}:1-3"));
    assert!(!tagged.is_subset(&untagged));
    assert!(!untagged.is_subset(&tagged));
    assert!(tagged.is_disjoint(&untagged));
    assert_eq!(tagged.subtract(&untagged), tagged);
    assert_eq!(mysql(&format!("{A}:MAINT:1-3")), tagged);
    let tsid = Tsid {
        uuid: Uuid::parse(A).expect("uuid"),
        tag: Some(Tag::parse("Maint").expect("tag")),
    };
    assert_eq!(tsid.to_string(), format!("{A}:maint"));
    assert!(tagged.contains(&tsid, 2));
}

#[test]
fn mysql_subset_subtract_and_errant() {
    let source = GtidSet::Mysql(mysql(&format!("{A}:1-100,{B}:1-7")));
    let caught_up = GtidSet::Mysql(mysql(&format!("{A}:1-100,{B}:1-7")));
    let behind = GtidSet::Mysql(mysql(&format!("{A}:1-90,{B}:1-7")));
    let errant_replica = GtidSet::Mysql(mysql(&format!("{A}:1-90,{B}:1-9")));
    assert_eq!(source.is_subset(&caught_up), Ok(true));
    assert_eq!(source.is_subset(&behind), Ok(false));
    assert_eq!(behind.is_subset(&source), Ok(true));
    assert_eq!(errant(&behind, &source).map(|e| e.is_empty()), Ok(true));
    let found = errant(&errant_replica, &source).expect("same flavor");
    assert_eq!(found.to_string(), format!("{B}:8-9"));
    assert_eq!(found.transaction_count(), Some(2));
    assert_eq!(
        source.subtract(&errant_replica).map(|s| s.to_string()),
        Ok(format!("{A}:91-100"))
    );
    assert_eq!(
        behind.union(&errant_replica).map(|s| s.to_string()),
        Ok(format!("{A}:1-90,{B}:1-9"))
    );
    // A hole in the middle of the source's history.
    let holes = mysql(&format!("{A}:1-10:20-30")).subtract(&mysql(&format!("{A}:5-25")));
    assert_eq!(holes.to_string(), format!("{A}:1-4:26-30"));
    assert_eq!(
        mysql(&format!("{A}:1-10"))
            .intersection(&mysql(&format!("{A}:5-25,{B}:1")))
            .to_string(),
        format!("{A}:5-10")
    );
}

#[test]
fn mysql_counts_saturate_instead_of_overflowing() {
    let max = Interval::MAX_GNO;
    let set = mysql(&format!("{A}:1-{max},{B}:1-{max},{B}:x:1-{max}"));
    assert_eq!(set.transaction_count(), u64::MAX);
    assert_eq!(mysql(&format!("{A}:{max}")).transaction_count(), 1);
}

#[test]
fn mysql_bad_uuid_is_named() {
    let error = mysql_error("3E11FA47-71CA-11E1-9E33-C80AA942956:1-5");
    assert!(
        matches!(&error, GtidError::InvalidUuid { uuid, .. } if uuid == "3E11FA47-71CA-11E1-9E33-C80AA942956")
    );
    assert!(
        error
            .to_string()
            .contains("\"3E11FA47-71CA-11E1-9E33-C80AA942956\" is not a server UUID"),
        "{error}"
    );
    assert!(matches!(
        mysql_error("3E11FA47-71CA-11E1-9E33-C80AA942956G:1"),
        GtidError::InvalidUuid { .. }
    ));
    assert!(matches!(
        mysql_error("3E11FA47_71CA-11E1-9E33-C80AA9429562:1"),
        GtidError::InvalidUuid { .. }
    ));
    assert!(matches!(mysql_error(":1-5"), GtidError::InvalidUuid { .. }));
    // A valid first entry does not hide a bad second one.
    assert!(matches!(
        mysql_error(&format!("{B}:1,3e11fa47-71ca-11e1-9e33-c80aa942956z:1")),
        GtidError::InvalidUuid { .. }
    ));
    // A UUID run into its numbers is a missing colon, not a bad UUID.
    assert!(matches!(
        mysql_error(&format!("{A}x:1")),
        GtidError::MissingColon { .. }
    ));
}

#[test]
fn mysql_reversed_interval_says_how_to_write_it() {
    let error = mysql_error(&format!("{A}:1-2:5-3"));
    assert!(
        matches!(&error, GtidError::ReversedInterval { interval, start: 5, end: 3, .. } if interval == "5-3")
    );
    let message = error.to_string();
    assert!(
        message.contains("\"5-3\" is reversed; write it as 3-5"),
        "{message}"
    );
    assert!(message.contains(&format!("{A}:1-2:5-3")), "{message}");
}

#[test]
fn mysql_transaction_zero_is_refused() {
    for interval in ["0", "0-5"] {
        let error = mysql_error(&format!("{A}:{interval}"));
        assert!(
            matches!(&error, GtidError::ZeroTransaction { interval: i, .. } if i == interval),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("transaction numbers start at 1"),
            "{error}"
        );
    }
}

#[test]
fn mysql_missing_colon_is_named() {
    for text in [
        A.to_string(),
        format!("{A} 1-5"),
        format!("{A}1-5"),
        format!("{B}:1,{A}"),
    ] {
        let error = mysql_error(&text);
        assert!(
            matches!(error, GtidError::MissingColon { .. }),
            "{text}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("expected ':' and transaction numbers after the server UUID"),
            "{error}"
        );
    }
}

#[test]
fn mysql_bad_intervals_are_named() {
    let cases = [
        (format!("{A}:"), "is empty"),
        (format!("{A}:1::3"), "is empty"),
        (format!("{A}:1-"), "is not a transaction number"),
        (format!("{A}:-3"), "is not a transaction number"),
        (format!("{A}:+5"), "is not a transaction number"),
        (format!("{A}:1-2-3"), "is not a transaction number"),
        (format!("{A}:1x"), "is not a transaction number"),
        (
            format!("{A}:9223372036854775808"),
            "exceeds the largest transaction number",
        ),
        (
            format!("{A}:1-99999999999999999999999"),
            "exceeds the largest transaction number",
        ),
    ];
    for (text, expected) in cases {
        let error = mysql_error(&text);
        assert!(
            matches!(error, GtidError::InvalidInterval { .. }),
            "{text}: {error:?}"
        );
        assert!(error.to_string().contains(expected), "{text}: {error}");
    }
}

#[test]
fn mysql_bad_tags_are_named() {
    let long = "t".repeat(33);
    for tag in ["bad-tag", long.as_str(), "tag!"] {
        let error = mysql_error(&format!("{A}:{tag}:1"));
        assert!(
            matches!(&error, GtidError::InvalidTag { tag: t, .. } if t == tag),
            "{error:?}"
        );
        assert!(error.to_string().contains("is not a valid tag"), "{error}");
    }
    assert_eq!(
        mysql(&format!("{A}:{}:1", "t".repeat(32))).transaction_count(),
        1
    );
    assert_eq!(
        mysql(&format!("{A}:_x9:1")).to_string(),
        format!("{A}:_x9:1")
    );
    for text in [
        format!("{A}:1-5:maint"),
        format!("{A}:maint:other:1"),
        format!("{A}:maint"),
    ] {
        let error = mysql_error(&text);
        assert!(
            matches!(error, GtidError::TagWithoutIntervals { .. }),
            "{text}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("is not followed by any transaction numbers"),
            "{error}"
        );
    }
    assert!(matches!(
        Tag::parse("9lives"),
        Err(GtidError::InvalidTag { .. })
    ));
}

#[test]
fn mysql_empty_entries_are_refused() {
    for text in [
        format!("{A}:1,,{B}:1"),
        format!("{A}:1,"),
        format!(",{A}:1"),
    ] {
        let error = mysql_error(&text);
        assert!(
            matches!(error, GtidError::EmptyEntry { .. }),
            "{text}: {error:?}"
        );
        assert!(
            error.to_string().contains("remove the extra comma"),
            "{error}"
        );
    }
}

#[test]
fn long_offending_text_is_shortened_in_messages() {
    let huge = format!("{A}:{}5-3", "1:".repeat(5000));
    let message = mysql_error(&huge).to_string();
    assert!(message.len() < 400, "{} bytes", message.len());
    assert!(
        message.contains('…') && message.contains("\"5-3\" is reversed"),
        "{message}"
    );
}

#[test]
fn mariadb_positions_as_servers_print_them() {
    let pos = mariadb("0-1-100,2-3-7");
    assert_eq!(pos.to_string(), "0-1-100,2-3-7");
    assert_eq!(pos.len(), 2);
    assert_eq!(
        pos.get(2),
        Some(MariadbGtid {
            domain: 2,
            server_id: 3,
            seq: 7
        })
    );
    assert_eq!(pos.get(1), None);
    assert_eq!(mariadb(" 2-3-7,\n0-1-100 "), pos);
    assert!(mariadb("").is_empty() && mariadb(" ").is_empty());
    assert_eq!(mariadb("0-1-0,1-2-5").to_string(), "1-2-5");
    assert_eq!(
        mariadb("4294967295-4294967295-18446744073709551615").to_string(),
        "4294967295-4294967295-18446744073709551615"
    );
    assert_eq!(GtidSet::Mariadb(pos).transaction_count(), None);
}

#[test]
fn mariadb_malformed_gtids_are_named() {
    let cases = [
        ("0-1", "has fewer than three parts"),
        ("0-1-100,5", "has fewer than three parts"),
        ("0-1-2-3", "has more than three parts"),
        ("a-1-2", "not an unsigned decimal number"),
        ("0--1", "not an unsigned decimal number"),
        ("-1-2", "not an unsigned decimal number"),
        ("0-1-+5", "not an unsigned decimal number"),
        ("0 -1-5", "not an unsigned decimal number"),
        ("4294967296-1-1", "domain_id above 4294967295"),
        ("0-4294967296-1", "server_id above 4294967295"),
        ("0-1-18446744073709551616", "seq_no above"),
        ("0-1-100,,1-2-3", "is empty"),
        ("0-1-100,", "is empty"),
    ];
    for (text, expected) in cases {
        let error = mariadb_error(text);
        assert!(
            matches!(error, GtidError::InvalidMariadbGtid { .. }),
            "{text}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(expected) && message.contains("expected domain-server-seq"),
            "{text}: {message}"
        );
    }
    let message = mariadb_error("0-1").to_string();
    assert!(message.contains("\"0-1\""), "{message}");
}

#[test]
fn mariadb_duplicate_domain_is_refused() {
    let error = mariadb_error("0-1-100,1-1-3,0-2-5");
    assert_eq!(
        error,
        GtidError::DuplicateDomain {
            domain: 0,
            first: "0-1-100".into(),
            second: "0-2-5".into()
        }
    );
    assert!(
        error
            .to_string()
            .contains("domain 0 appears twice (0-1-100 and 0-2-5)"),
        "{error}"
    );
}

#[test]
fn mariadb_subset_compares_each_domain_by_seq() {
    let source = GtidSet::Mariadb(mariadb("0-1-100,1-2-5"));
    for (replica, subset_of_source, source_subset_of_replica) in [
        ("0-1-100,1-2-5", true, true),
        ("0-1-90", true, false),
        ("0-1-90,1-2-5", true, false),
        ("0-1-101,1-2-5", false, true),
        ("0-1-100,1-2-5,2-3-1", false, true),
        ("", true, false),
    ] {
        let replica = GtidSet::Mariadb(mariadb(replica));
        assert_eq!(
            replica.is_subset(&source),
            Ok(subset_of_source),
            "{replica} ⊆ {source}"
        );
        assert_eq!(
            source.is_subset(&replica),
            Ok(source_subset_of_replica),
            "{source} ⊆ {replica}"
        );
    }
}

#[test]
fn mariadb_errant_finds_domains_ahead_missing_or_diverged() {
    let source = GtidSet::Mariadb(mariadb("0-1-100,1-2-5"));
    for (replica, expected) in [
        ("0-1-100,1-2-5", ""),
        ("0-1-90", ""),
        ("0-1-100,1-2-5,2-3-1", "2-3-1"),
        ("0-2-101,1-2-4", "0-2-101"),
        // Same seq_no from another server: the histories diverged.
        ("0-2-100,1-2-5", "0-2-100"),
    ] {
        let found = errant(&GtidSet::Mariadb(mariadb(replica)), &source).expect("same flavor");
        assert_eq!(found.to_string(), expected, "errant({replica}, {source})");
    }
    // is_subset alone compares seq_no and cannot see that divergence; errant does.
    let diverged = GtidSet::Mariadb(mariadb("0-2-100,1-2-5"));
    assert_eq!(diverged.is_subset(&source), Ok(true));
    assert_eq!(
        mariadb("0-2-100")
            .conflicts(&mariadb("0-1-100,1-1-1"))
            .to_string(),
        "0-2-100"
    );
}

#[test]
fn mariadb_union_and_subtract() {
    let a = mariadb("0-1-100,1-2-5");
    let b = mariadb("0-2-120,1-2-3,3-1-1");
    assert_eq!(a.union(&b).to_string(), "0-2-120,1-2-5,3-1-1");
    assert_eq!(a.subtract(&b).to_string(), "1-2-5");
    assert_eq!(b.subtract(&a).to_string(), "0-2-120,3-1-1");
    // Conflicting entries: the union picks the same one in either order.
    let (x, y) = (mariadb("0-1-7"), mariadb("0-2-7"));
    assert_eq!(x.union(&y), y.union(&x));
    assert_eq!(x.union(&y).to_string(), "0-2-7");
}

#[test]
fn mixing_flavors_is_an_error() {
    let my = GtidSet::Mysql(mysql(&format!("{A}:1")));
    let maria = GtidSet::Mariadb(mariadb("0-1-1"));
    let expected = GtidError::FlavorMismatch {
        left: "MySQL",
        right: "MariaDB",
    };
    assert_eq!(my.is_subset(&maria), Err(expected.clone()));
    assert_eq!(my.union(&maria), Err(expected.clone()));
    assert_eq!(my.subtract(&maria), Err(expected.clone()));
    assert_eq!(errant(&my, &maria), Err(expected.clone()));
    assert_eq!(expected.category(), "gtid_flavor_mismatch");
    let reversed = errant(&maria, &my).expect_err("mismatch");
    assert_eq!(
        reversed.to_string(),
        "cannot compare or combine a MariaDB GTID set with a MySQL GTID set; both must come from servers of the same flavor"
    );
}

#[test]
fn serde_uses_the_canonical_text() {
    let set = GtidSet::Mysql(mysql(&format!("{B}:1-3,{}:5:1-4", A.to_uppercase())));
    let json = serde_json::to_string(&set).expect("serialise");
    assert_eq!(
        json,
        format!(r#"{{"flavor":"mysql","gtid":"{A}:1-5,{B}:1-3"}}"#)
    );
    assert_eq!(
        serde_json::from_str::<GtidSet>(&json).expect("deserialise"),
        set
    );
    let pos = GtidSet::Mariadb(mariadb("1-2-5,0-1-100"));
    let json = serde_json::to_string(&pos).expect("serialise");
    assert_eq!(json, r#"{"flavor":"mariadb","gtid":"0-1-100,1-2-5"}"#);
    assert_eq!(
        serde_json::from_str::<GtidSet>(&json).expect("deserialise"),
        pos
    );
    let bad = serde_json::from_str::<GtidSet>(r#"{"flavor":"mariadb","gtid":"0-1"}"#)
        .expect_err("invalid");
    assert!(
        bad.to_string().contains("invalid MariaDB GTID \"0-1\""),
        "{bad}"
    );
    let bad =
        serde_json::from_str::<GtidSet>(r#"{"flavor":"mysql","gtid":"x:1"}"#).expect_err("invalid");
    assert!(bad.to_string().contains("is not a server UUID"), "{bad}");
}

#[test]
fn uuid_round_trips_through_bytes() {
    let uuid = Uuid::parse(&A.to_uppercase()).expect("uuid");
    assert_eq!(uuid.as_bytes()[0], 0x3e);
    assert_eq!(uuid.as_bytes()[15], 0x62);
    assert_eq!(Uuid::from_bytes(*uuid.as_bytes()).to_string(), A);
    assert!(Uuid::parse(&format!(" {A}")).is_err());
}

#[test]
fn parse_and_empty_by_flavor() {
    let my = GtidSet::parse(Flavor::Mysql, &format!("{}:1-3", A.to_uppercase())).expect("mysql");
    assert_eq!(my, GtidSet::Mysql(mysql(&format!("{A}:1-3"))));
    assert_eq!((my.flavor(), my.flavor_name()), (Flavor::Mysql, "MySQL"));
    let maria = GtidSet::parse(Flavor::Mariadb, "0-1-100").expect("mariadb");
    assert_eq!(maria, GtidSet::Mariadb(mariadb("0-1-100")));
    assert_eq!(
        (maria.flavor(), maria.flavor_name()),
        (Flavor::Mariadb, "MariaDB")
    );
    // The same text means different things, or nothing, depending on the flavor.
    assert!(matches!(
        GtidSet::parse(Flavor::Mysql, "0-1-100"),
        Err(GtidError::InvalidUuid { .. })
    ));
    assert!(matches!(
        GtidSet::parse(Flavor::Mariadb, &format!("{A}:1")),
        Err(GtidError::InvalidMariadbGtid { .. })
    ));
    for flavor in Flavor::ALL {
        let empty = GtidSet::empty(flavor);
        assert!(empty.is_empty());
        assert_eq!(empty.flavor(), flavor);
        assert_eq!(GtidSet::parse(flavor, "").as_ref(), Ok(&empty));
        let text = match flavor {
            Flavor::Mysql => format!("{A}:1"),
            Flavor::Mariadb => "0-1-1".to_owned(),
        };
        let other = GtidSet::parse(flavor, &text).expect("valid");
        assert_eq!(empty.is_subset(&other), Ok(true));
        assert_eq!(other.is_subset(&empty), Ok(false));
        assert_eq!(errant(&other, &empty).as_ref(), Ok(&other));
    }
}

fn state(text: &str) -> MariadbBinlogState {
    MariadbBinlogState::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

#[test]
fn mariadb_binlog_state_as_servers_print_it() {
    // As MariaDB 10.11 prints @@gtid_binlog_state: per domain, the last GTID of each server,
    // the domain's last one last.
    let s = state("0-2-5,0-1-10,1-3-7");
    assert_eq!(s.len(), 3);
    assert_eq!(s.get(0, 2).map(|g| g.seq), Some(5));
    assert_eq!(s.get(0, 3), None);
    assert_eq!(s.to_string(), "0-2-5,0-1-10,1-3-7");
    assert_eq!(
        state(" 1-3-7 ,\n0-1-10, 0-2-5").to_string(),
        "0-2-5,0-1-10,1-3-7"
    );
    assert_eq!(s.position().to_string(), "0-1-10,1-3-7");
    assert!(state("").is_empty());
    assert!(state("0-1-0").is_empty(), "seq 0 records nothing");
    let duplicate = MariadbBinlogState::parse("0-1-5,0-1-7").expect_err("twice");
    assert_eq!(duplicate.category(), "invalid_mariadb_binlog_state");
    assert_eq!(
        duplicate.to_string(),
        "invalid MariaDB GTID binary log state: server_id 1 appears twice in domain 0 (0-1-5 and 0-1-7); a state holds one GTID per domain and server_id"
    );
    let bad = MariadbBinlogState::parse("0-1-5,,0-2-6").expect_err("empty entry");
    assert_eq!(bad.category(), "invalid_mariadb_gtid_position");
}

#[test]
fn mariadb_binlog_state_sees_errant_transactions_behind_the_source_position() {
    // The replica wrote 0-2-5 under its own server_id, then replicated 0-1-6 .. 0-1-10.
    let (replica_pos, source_pos) = (mariadb("0-1-10"), mariadb("0-1-10"));
    let (replica, source) = (state("0-2-5,0-1-10"), state("0-1-10"));
    let by_position = errant(
        &GtidSet::Mariadb(replica_pos),
        &GtidSet::Mariadb(source_pos.clone()),
    )
    .expect("same flavor");
    assert!(by_position.is_empty(), "a position cannot see it");
    let by_state = errant(
        &GtidSet::MariadbState(replica.clone()),
        &GtidSet::MariadbState(source.clone()),
    )
    .expect("same flavor");
    assert_eq!(by_state, GtidSet::MariadbState(state("0-2-5")));
    assert_eq!(by_state.to_string(), "0-2-5");
    // The source has it when it has the server's entry at a seq at least as high.
    for (source, expected) in [
        ("0-1-10,0-2-5", ""),
        ("0-1-10,0-2-9", ""),
        ("0-1-10,0-2-4", "0-2-5"),
        ("0-1-9", "0-2-5,0-1-10"),
        ("1-2-5", "0-2-5,0-1-10"),
    ] {
        let found = errant(
            &GtidSet::MariadbState(replica.clone()),
            &GtidSet::MariadbState(state(source)),
        )
        .expect("same flavor");
        assert_eq!(found.to_string(), expected, "errant against {source}");
    }
    // Has the candidate executed everything the source has?
    let candidate = GtidSet::MariadbState(state("0-1-12,0-3-2"));
    assert_eq!(
        GtidSet::MariadbState(state("0-1-10,0-3-2")).is_subset(&candidate),
        Ok(true)
    );
    assert_eq!(
        GtidSet::MariadbState(state("0-1-10,0-2-1")).is_subset(&candidate),
        Ok(false)
    );
    // A state against a position is compared as positions.
    let fenced = GtidSet::Mariadb(source_pos);
    assert_eq!(fenced.is_subset(&candidate), Ok(true));
    assert_eq!(
        errant(&GtidSet::MariadbState(replica), &fenced)
            .expect("same flavor")
            .to_string(),
        ""
    );
}

#[test]
fn mariadb_binlog_state_union_subtract_and_serde() {
    let a = state("0-1-10,0-2-5");
    let b = state("0-1-8,0-3-2,1-1-1");
    assert_eq!(a.union(&b).to_string(), "0-3-2,0-2-5,0-1-10,1-1-1");
    assert_eq!(a.subtract(&b).to_string(), "0-2-5,0-1-10");
    assert_eq!(b.subtract(&a).to_string(), "0-3-2,1-1-1");
    let mixed = GtidSet::MariadbState(a.clone())
        .union(&GtidSet::Mariadb(mariadb("0-3-11")))
        .expect("same flavor");
    assert_eq!(mixed, GtidSet::Mariadb(mariadb("0-3-11")));
    assert_eq!(GtidSet::MariadbState(a.clone()).flavor(), Flavor::Mariadb);
    let json = serde_json::to_string(&GtidSet::MariadbState(a.clone())).expect("serialise");
    assert_eq!(json, r#"{"flavor":"mariadb_state","gtid":"0-2-5,0-1-10"}"#);
    assert_eq!(
        serde_json::from_str::<GtidSet>(&json).expect("deserialise"),
        GtidSet::MariadbState(a)
    );
    let my = GtidSet::Mysql(mysql(&format!("{A}:1")));
    assert_eq!(
        errant(&GtidSet::MariadbState(b), &my).map_err(|e| e.category()),
        Err("gtid_flavor_mismatch")
    );
}
