//! Arithmetic on sorted, disjoint, non-adjacent lists of transaction-number intervals.
//!
//! Every function here takes and returns lists in normal form: sorted by
//! start, no two intervals overlapping or touching (`1-3` and `4-5` are one
//! interval `1-5`). [`normalize`] brings any list into that form.

use super::mysql::Interval;

/// Sorts `list` and merges overlapping or adjacent intervals.
pub(crate) fn normalize(mut list: Vec<Interval>) -> Vec<Interval> {
    list.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(list.len());
    for next in list {
        push_merging(&mut out, next);
    }
    out
}

/// Appends `next` to a normal-form list whose last start is not after
/// `next.start`, merging it into the last interval when they overlap or touch.
fn push_merging(out: &mut Vec<Interval>, next: Interval) {
    match out.last_mut() {
        // `end` is at most `Interval::MAX_GNO` < u64::MAX, so `end + 1` cannot overflow.
        Some(last) if next.start <= last.end + 1 => last.end = last.end.max(next.end),
        _ => out.push(next),
    }
}

/// Everything in `a` or in `b`.
pub(crate) fn union(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i].start <= b[j].start);
        let next = if take_a {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        push_merging(&mut out, next);
    }
    out
}

/// Everything in `a` and in `b`.
pub(crate) fn intersection(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start <= end {
            out.push(Interval { start, end });
        }
        // Advance whichever interval ends first; it cannot meet anything further.
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Everything in `a` that is not in `b`.
pub(crate) fn subtract(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut j = 0;
    for &interval in a {
        let mut start = interval.start;
        // Skip the intervals of `b` that end before this one starts.
        while j < b.len() && b[j].end < start {
            j += 1;
        }
        let mut k = j;
        let mut exhausted = false;
        while k < b.len() && b[k].start <= interval.end {
            if b[k].start > start {
                out.push(Interval {
                    start,
                    end: b[k].start - 1,
                });
            }
            if b[k].end >= interval.end {
                exhausted = true;
                break;
            }
            start = b[k].end + 1;
            k += 1;
        }
        if !exhausted {
            out.push(Interval {
                start,
                end: interval.end,
            });
        }
    }
    out
}

/// Whether every number in `a` is in `b`.
pub(crate) fn is_subset(a: &[Interval], b: &[Interval]) -> bool {
    let mut j = 0;
    a.iter().all(|interval| {
        while j < b.len() && b[j].end < interval.start {
            j += 1;
        }
        // In normal form a single interval of `b` must cover all of `interval`.
        j < b.len() && b[j].start <= interval.start && interval.end <= b[j].end
    })
}

/// How many numbers the list holds, saturating at `u64::MAX`.
pub(crate) fn count(list: &[Interval]) -> u64 {
    list.iter()
        .fold(0u64, |sum, interval| sum.saturating_add(interval.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: u64, end: u64) -> Interval {
        Interval::new(start, end).expect("valid test interval")
    }

    #[test]
    fn normalize_merges_overlapping_and_adjacent_and_sorts() {
        let list = vec![
            iv(11, 18),
            iv(1, 3),
            iv(4, 5),
            iv(2, 2),
            iv(17, 20),
            iv(30, 30),
        ];
        assert_eq!(normalize(list), vec![iv(1, 5), iv(11, 20), iv(30, 30)]);
    }

    #[test]
    fn subtract_cuts_holes_and_edges() {
        let a = [iv(1, 10), iv(20, 30)];
        let b = [iv(3, 4), iv(8, 22), iv(30, 40)];
        assert_eq!(subtract(&a, &b), vec![iv(1, 2), iv(5, 7), iv(23, 29)]);
        assert_eq!(subtract(&b, &a), vec![iv(11, 19), iv(31, 40)]);
        assert_eq!(subtract(&a, &a), vec![]);
    }

    #[test]
    fn subset_needs_every_number_covered() {
        assert!(is_subset(&[iv(2, 3), iv(7, 7)], &[iv(1, 5), iv(7, 9)]));
        assert!(!is_subset(&[iv(4, 7)], &[iv(1, 5), iv(7, 9)]));
        assert!(is_subset(&[], &[]));
        assert!(!is_subset(&[iv(1, 1)], &[]));
    }

    #[test]
    fn union_and_intersection_at_the_largest_number() {
        let max = Interval::MAX_GNO;
        assert_eq!(union(&[iv(1, max - 1)], &[iv(max, max)]), vec![iv(1, max)]);
        assert_eq!(
            intersection(&[iv(1, max)], &[iv(5, 6), iv(max, max)]),
            vec![iv(5, 6), iv(max, max)]
        );
        assert_eq!(count(&[iv(1, max)]), max);
    }
}
