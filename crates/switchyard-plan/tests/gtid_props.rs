//! Property tests of the GTID algebra: MySQL sets against a brute-force model,
//! MariaDB positions against the per-domain laws they promise, MariaDB binary
//! log states against a model of the transactions they stand for.
//!
//! CI fixes the seed with `PROPTEST_RNG_SEED`; failures are saved next to this
//! file in `gtid_props.proptest-regressions` and should be committed.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use switchyard_plan::gtid::{
    GtidSet, Interval, MariadbBinlogState, MariadbGtid, MariadbGtidPos, MysqlGtidSet, Tag, Tsid,
    Uuid, errant,
};

const UUIDS: [&str; 3] = [
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "4a2b6c8d-1e2f-11ef-8a9b-0242ac120002",
    "0b6f2f10-aaaa-11ef-8000-000000000001",
];
const TAGS: [Option<&str>; 3] = [None, Some("a"), Some("maint_1")];

fn tsid() -> impl Strategy<Value = Tsid> {
    (0..UUIDS.len(), 0..TAGS.len()).prop_map(|(u, t)| Tsid {
        uuid: Uuid::parse(UUIDS[u]).expect("valid uuid"),
        tag: TAGS[t].map(|tag| Tag::parse(tag).expect("valid tag")),
    })
}

/// Small numbers so that intervals of different sets overlap, touch and nest.
fn interval() -> impl Strategy<Value = Interval> {
    (1u64..40, 0u64..8).prop_map(|(start, len)| Interval::new(start, start + len).expect("valid"))
}

fn entries() -> impl Strategy<Value = Vec<(Tsid, Interval)>> {
    prop::collection::vec((tsid(), interval()), 0..8)
}

fn mysql_set() -> impl Strategy<Value = MysqlGtidSet> {
    entries().prop_map(MysqlGtidSet::from_iter)
}

/// The set as the plain set of GTIDs it stands for.
fn model(set: &MysqlGtidSet) -> BTreeSet<(Tsid, u64)> {
    set.iter()
        .flat_map(|(tsid, list)| {
            list.iter()
                .flat_map(move |iv| (iv.start()..=iv.end()).map(move |gno| (tsid.clone(), gno)))
        })
        .collect()
}

/// Text a person or server could write for `entries`: one entry per
/// interval, in the given order, with varying case and whitespace.
fn messy_text(entries: &[(Tsid, Interval)], upper: &[bool]) -> String {
    entries
        .iter()
        .zip(upper.iter().cycle())
        .map(|((tsid, iv), &upper)| {
            let tsid = if upper {
                tsid.to_string().to_uppercase()
            } else {
                tsid.to_string()
            };
            let iv = if iv.start() == iv.end() {
                iv.start().to_string()
            } else {
                format!("{} - {}", iv.start(), iv.end())
            };
            if upper {
                format!(" {tsid}:{iv}\n")
            } else {
                format!("{tsid} : {iv}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn mariadb_pos() -> impl Strategy<Value = MariadbGtidPos> {
    prop::collection::vec((0u32..4, 1u32..4, 0u64..12), 0..6).prop_map(|gtids| {
        gtids
            .into_iter()
            .map(|(domain, server_id, seq)| MariadbGtid {
                domain,
                server_id,
                seq,
            })
            .collect()
    })
}

/// domain → seq, the part of a position the set operations look at.
fn seqs(pos: &MariadbGtidPos) -> BTreeMap<u32, u64> {
    pos.iter().map(|g| (g.domain, g.seq)).collect()
}

fn mariadb_state() -> impl Strategy<Value = MariadbBinlogState> {
    prop::collection::vec((0u32..3, 1u32..4, 0u64..12), 0..7).prop_map(|gtids| {
        gtids
            .into_iter()
            .map(|(domain, server_id, seq)| MariadbGtid {
                domain,
                server_id,
                seq,
            })
            .collect()
    })
}

/// The transactions a state stands for under `gtid_strict_mode`: every
/// `(domain, server_id, n)` with `1 <= n <= seq` of its entries.
fn transactions(state: &MariadbBinlogState) -> BTreeSet<(u32, u32, u64)> {
    state
        .iter()
        .flat_map(|g| (1..=g.seq).map(move |n| (g.domain, g.server_id, n)))
        .collect()
}

proptest! {
    #[test]
    fn mariadb_state_round_trips_and_matches_its_model(a in mariadb_state(), b in mariadb_state()) {
        prop_assert_eq!(MariadbBinlogState::parse(&a.to_string()).expect("canonical text parses"), a.clone());
        let json = serde_json::to_string(&GtidSet::MariadbState(a.clone())).expect("serialise");
        prop_assert_eq!(serde_json::from_str::<GtidSet>(&json).expect("deserialise"), GtidSet::MariadbState(a.clone()));
        let (ta, tb) = (transactions(&a), transactions(&b));
        prop_assert_eq!(a.is_subset(&b), ta.is_subset(&tb));
        prop_assert_eq!(transactions(&a.union(&b)), ta.union(&tb).copied().collect::<BTreeSet<_>>());
        // The difference keeps exactly the entries whose server has transactions b lacks.
        let difference = a.subtract(&b);
        for g in a.iter() {
            let missing = !tb.contains(&(g.domain, g.server_id, g.seq));
            prop_assert_eq!(difference.get(g.domain, g.server_id).is_some(), missing, "{} against {}", g, b);
        }
        prop_assert!(difference.iter().all(|g| a.get(g.domain, g.server_id) == Some(g)));
        prop_assert_eq!(a.is_subset(&b), difference.is_empty());
        // The position is the last GTID of each domain.
        for g in a.position().iter() {
            prop_assert!(a.iter().filter(|x| x.domain == g.domain).all(|x| (x.seq, x.server_id) <= (g.seq, g.server_id)));
        }
    }

    #[test]
    fn mariadb_state_errant_sees_what_a_position_misses(
        source in mariadb_state(),
        own in (0u32..3, 1u64..12),
        replicated in 0u64..6,
    ) {
        // A replica that has everything the source has, wrote one transaction of its own
        // (server_id 9) and then replicated more of the source's domain: its position in
        // that domain is the source's, and only the state shows the errant transaction.
        let (domain, seq) = own;
        let mine = MariadbGtid { domain, server_id: 9, seq };
        let mut replica = source.clone();
        replica.record(mine);
        let mut source = source;
        let after = source.position().get(domain).map_or(0, |g| g.seq).max(seq) + 1 + replicated;
        let theirs = MariadbGtid { domain, server_id: 1, seq: after };
        source.record(theirs);
        replica.record(theirs);
        let by_state = errant(&GtidSet::MariadbState(replica.clone()), &GtidSet::MariadbState(source.clone())).expect("same flavor");
        prop_assert_eq!(by_state, GtidSet::MariadbState(MariadbBinlogState::from_iter([mine])));
        let by_position = errant(&GtidSet::Mariadb(replica.position()), &GtidSet::Mariadb(source.position())).expect("same flavor");
        prop_assert!(by_position.is_empty(), "{} hides {}", by_position, mine);
        // The source has not executed what the replica has; the replica has executed the source.
        prop_assert_eq!(GtidSet::MariadbState(source.clone()).is_subset(&GtidSet::MariadbState(replica.clone())), Ok(true));
        prop_assert_eq!(GtidSet::MariadbState(replica).is_subset(&GtidSet::MariadbState(source)), Ok(false));
    }

    #[test]
    fn mysql_display_parse_round_trip(a in mysql_set()) {
        prop_assert_eq!(MysqlGtidSet::parse(&a.to_string()).expect("canonical text parses"), a.clone());
        prop_assert_eq!(MysqlGtidSet::parse(&format!("{a:#}")).expect("server text parses"), a.clone());
        let json = serde_json::to_string(&GtidSet::Mysql(a.clone())).expect("serialise");
        prop_assert_eq!(serde_json::from_str::<GtidSet>(&json).expect("deserialise"), GtidSet::Mysql(a));
    }

    #[test]
    fn mysql_parsing_normalises_any_spelling(entries in entries(), upper in prop::collection::vec(any::<bool>(), 1..4)) {
        let text = messy_text(&entries, &upper);
        let parsed = MysqlGtidSet::parse(&text).expect("messy text parses");
        let expected: BTreeSet<(Tsid, u64)> = entries
            .iter()
            .flat_map(|(tsid, iv)| (iv.start()..=iv.end()).map(move |gno| (tsid.clone(), gno)))
            .collect();
        prop_assert_eq!(model(&parsed), expected);
        prop_assert_eq!(&parsed, &MysqlGtidSet::from_iter(entries));
        // Normalisation is idempotent: the canonical text parses to itself and prints the same.
        let canonical = parsed.to_string();
        prop_assert_eq!(MysqlGtidSet::parse(&canonical).expect("canonical").to_string(), canonical.clone());
        // Each UUID printed once, intervals sorted, disjoint and non-adjacent.
        for (_, list) in parsed.iter() {
            prop_assert!(!list.is_empty());
            for pair in list.windows(2) {
                prop_assert!(pair[0].end() + 1 < pair[1].start(), "{:?}", list);
            }
        }
        let uuids: Vec<&str> = canonical.split(',').filter(|e| !e.is_empty()).map(|e| &e[..36]).collect();
        let mut unique = uuids.clone();
        unique.dedup();
        prop_assert_eq!(uuids, unique);
    }

    #[test]
    fn mysql_operations_match_the_model(a in mysql_set(), b in mysql_set()) {
        let (ma, mb) = (model(&a), model(&b));
        prop_assert_eq!(model(&a.union(&b)), ma.union(&mb).cloned().collect::<BTreeSet<_>>());
        prop_assert_eq!(model(&a.intersection(&b)), ma.intersection(&mb).cloned().collect::<BTreeSet<_>>());
        prop_assert_eq!(model(&a.subtract(&b)), ma.difference(&mb).cloned().collect::<BTreeSet<_>>());
        prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
        prop_assert_eq!(a.is_disjoint(&b), ma.is_disjoint(&mb));
        prop_assert_eq!(a.transaction_count(), ma.len() as u64);
        prop_assert_eq!(a.is_empty(), ma.is_empty());
        for (tsid, gno) in &mb {
            prop_assert_eq!(a.contains(tsid, *gno), ma.contains(&(tsid.clone(), *gno)));
        }
    }

    #[test]
    fn mysql_union_laws(a in mysql_set(), b in mysql_set(), c in mysql_set()) {
        prop_assert_eq!(a.union(&b), b.union(&a));
        prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
        prop_assert_eq!(a.union(&a), a.clone());
        prop_assert_eq!(a.union(&MysqlGtidSet::empty()), a.clone());
        prop_assert!(a.is_subset(&a.union(&b)) && b.is_subset(&a.union(&b)));
    }

    #[test]
    fn mysql_subtract_laws(a in mysql_set(), b in mysql_set()) {
        let difference = a.subtract(&b);
        prop_assert!(difference.is_subset(&a));
        prop_assert!(difference.intersection(&b).is_empty());
        prop_assert_eq!(a.is_subset(&b), difference.is_empty());
        prop_assert_eq!(difference.union(&a.intersection(&b)), a.clone());
        prop_assert!(a.subtract(&a).is_empty());
        let (ga, gb) = (GtidSet::Mysql(a.clone()), GtidSet::Mysql(b.clone()));
        prop_assert_eq!(errant(&ga, &gb).expect("same flavor"), GtidSet::Mysql(difference.clone()));
        prop_assert_eq!(ga.is_subset(&gb).expect("same flavor"), difference.is_empty());
        prop_assert_eq!(ga.transaction_count(), Some(a.transaction_count()));
    }

    #[test]
    fn mariadb_display_parse_round_trip(a in mariadb_pos()) {
        prop_assert_eq!(MariadbGtidPos::parse(&a.to_string()).expect("canonical text parses"), a.clone());
        let spaced = a.iter().map(|g| format!(" {g}\n")).collect::<Vec<_>>().join(",");
        prop_assert_eq!(MariadbGtidPos::parse(&spaced).expect("spaced text parses"), a.clone());
        let json = serde_json::to_string(&GtidSet::Mariadb(a.clone())).expect("serialise");
        prop_assert_eq!(serde_json::from_str::<GtidSet>(&json).expect("deserialise"), GtidSet::Mariadb(a.clone()));
        prop_assert!(a.iter().all(|g| g.seq > 0));
    }

    #[test]
    fn mariadb_subset_compares_seq_per_domain(a in mariadb_pos(), b in mariadb_pos()) {
        let (sa, sb) = (seqs(&a), seqs(&b));
        let expected = sa.iter().all(|(d, seq)| sb.get(d).is_some_and(|theirs| theirs >= seq));
        prop_assert_eq!(a.is_subset(&b), expected);
        prop_assert!(a.is_subset(&a));
        prop_assert!(MariadbGtidPos::empty().is_subset(&a));
    }

    #[test]
    fn mariadb_union_laws(a in mariadb_pos(), b in mariadb_pos(), c in mariadb_pos()) {
        let ab = a.union(&b);
        prop_assert_eq!(&ab, &b.union(&a));
        prop_assert_eq!(ab.union(&c), a.union(&b.union(&c)));
        prop_assert_eq!(a.union(&a), a.clone());
        prop_assert!(a.is_subset(&ab) && b.is_subset(&ab));
        // The union is the least position both are subsets of.
        if a.is_subset(&c) && b.is_subset(&c) {
            prop_assert!(ab.is_subset(&c));
        }
        let domains: BTreeSet<u32> = a.iter().chain(b.iter()).map(|g| g.domain).collect();
        prop_assert_eq!(ab.iter().map(|g| g.domain).collect::<BTreeSet<_>>(), domains);
        // Every entry of the union is an entry of one of the operands.
        prop_assert!(ab.iter().all(|g| a.get(g.domain) == Some(g) || b.get(g.domain) == Some(g)));
    }

    #[test]
    fn mariadb_subtract_laws(a in mariadb_pos(), b in mariadb_pos(), c in mariadb_pos()) {
        let difference = a.subtract(&b);
        prop_assert!(difference.is_subset(&a));
        prop_assert!(difference.iter().all(|g| a.get(g.domain) == Some(g)));
        // Nothing left in the difference is covered by b.
        for g in difference.iter() {
            prop_assert!(!MariadbGtidPos::from_iter([g]).is_subset(&b), "{} is covered by {}", g, b);
        }
        // Everything dropped is covered by b.
        for g in a.iter().filter(|g| difference.get(g.domain).is_none()) {
            prop_assert!(MariadbGtidPos::from_iter([g]).is_subset(&b));
        }
        prop_assert_eq!(a.is_subset(&b), difference.is_empty());
        if a.is_subset(&b) && b.is_subset(&c) {
            prop_assert!(a.is_subset(&c));
        }
    }

    #[test]
    fn mariadb_errant_is_ahead_or_diverged(replica in mariadb_pos(), source in mariadb_pos()) {
        let found = errant(&GtidSet::Mariadb(replica.clone()), &GtidSet::Mariadb(source.clone())).expect("same flavor");
        let GtidSet::Mariadb(found) = found else { panic!("flavor changed") };
        prop_assert!(replica.subtract(&source).is_subset(&found));
        prop_assert!(found.iter().all(|g| replica.get(g.domain) == Some(g)));
        // Exactly the replica's entries that are ahead of the source or diverged from it.
        for g in replica.iter() {
            let theirs = source.get(g.domain);
            let ahead = theirs.is_none_or(|s| s.seq < g.seq);
            let diverged = theirs.is_some_and(|s| s.seq == g.seq && s.server_id != g.server_id);
            prop_assert_eq!(found.get(g.domain).is_some(), ahead || diverged, "{} against {}", g, source);
        }
        if found.is_empty() {
            prop_assert!(replica.is_subset(&source));
        }
    }

    #[test]
    fn mixed_flavors_never_combine(a in mysql_set(), b in mariadb_pos()) {
        let (my, maria) = (GtidSet::Mysql(a), GtidSet::Mariadb(b));
        for (x, y) in [(&my, &maria), (&maria, &my)] {
            prop_assert!(x.is_subset(y).is_err());
            prop_assert!(x.union(y).is_err());
            prop_assert!(x.subtract(y).is_err());
            prop_assert_eq!(errant(x, y).map_err(|e| e.category()), Err("gtid_flavor_mismatch"));
        }
    }
}
