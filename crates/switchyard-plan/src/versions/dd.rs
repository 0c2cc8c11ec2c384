//! MySQL data-dictionary versions per release, from the history in `sql/dd/dd_version.h`.
//!
//! The server stores its data-dictionary version in the data directory and checks it at start: a
//! newer server upgrades the dictionary (irreversibly), an older one refuses a dictionary newer
//! than its own. The number is the server version that first published a dictionary layout
//! (`Mmmdd`), and it stays unchanged across releases that do not change the dictionary tables.
//!
//! Each entry gives the first release with a dictionary version; later releases of the same series
//! keep it until the next entry. Sources, all `sql/dd/dd_version.h` in mysql-server:
//! - 80011-80023: the 8.0 history block ("80011: Published in 8.0 GA" ... "80023: Current"; 80015
//!   "Not published. DD version still at 80014 in server 8.0.15"; no entry between 80017 and
//!   80021). 80023 is still current in the 8.0 bugfix releases (8.0.4x tree).
//! - 80200 (8.2, WL#14190), 80300 (8.3, WL#15786; unchanged in 8.4), 90000 (9.0, WL#16081;
//!   unchanged in 9.1), 90200 (9.2, WL#16358): the 9.2 tree. 8.1 published no new version, so
//!   it keeps 80023.
//! - 90200 is still `DD_VERSION` in the calendar-versioned tree (the one that introduced
//!   `server_version_transition.cc`), so 9.3-9.7 and 26.7 use 90200.
//! - 26.10: not verified; left unknown.

use super::{Flavor, Series, Version};

/// One step of the history: from `first` on (within its series), the dictionary version is `dd`.
struct DdStep {
    first: Version,
    dd: u32,
}

const fn step(major: u16, minor: u16, patch: u16, dd: u32) -> DdStep {
    DdStep {
        first: Version::new(major, minor, patch),
        dd,
    }
}

const HISTORY: &[DdStep] = &[
    step(8, 0, 11, 80011),
    step(8, 0, 12, 80012),
    step(8, 0, 13, 80013),
    step(8, 0, 14, 80014),
    step(8, 0, 16, 80016),
    step(8, 0, 17, 80017),
    step(8, 0, 21, 80021),
    step(8, 0, 22, 80022),
    step(8, 0, 23, 80023),
    step(8, 1, 0, 80023),
    step(8, 2, 0, 80200),
    step(8, 3, 0, 80300),
    step(8, 4, 0, 80300),
    step(9, 0, 0, 90000),
    step(9, 1, 0, 90000),
    step(9, 2, 0, 90200),
    step(9, 3, 0, 90200),
    step(9, 4, 0, 90200),
    step(9, 5, 0, 90200),
    step(9, 6, 0, 90200),
    step(9, 7, 0, 90200),
    step(26, 7, 0, 90200),
];

/// The data-dictionary version of a MySQL release, or `None` when not recorded (MariaDB, which
/// has no data dictionary of this kind; pre-GA 8.0 builds; series whose history is not verified).
pub(super) fn lookup(flavor: Flavor, v: Version) -> Option<u32> {
    if flavor != Flavor::Mysql {
        return None;
    }
    let series: Series = v.series();
    HISTORY
        .iter()
        .filter(|s| s.first.series() == series && s.first <= v)
        .map(|s| s.dd)
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dd(major: u16, minor: u16, patch: u16) -> Option<u32> {
        lookup(Flavor::Mysql, Version::new(major, minor, patch))
    }

    #[test]
    fn mysql_8_0_history_steps_at_the_published_releases() {
        assert_eq!(dd(8, 0, 10), None, "pre-GA 8.0 builds are not recorded");
        assert_eq!(dd(8, 0, 11), Some(80011));
        assert_eq!(dd(8, 0, 15), Some(80014), "80015 was never published");
        assert_eq!(dd(8, 0, 16), Some(80016));
        assert_eq!(dd(8, 0, 20), Some(80017));
        assert_eq!(dd(8, 0, 21), Some(80021));
        assert_eq!(dd(8, 0, 22), Some(80022));
        assert_eq!(dd(8, 0, 23), Some(80023));
        assert_eq!(dd(8, 0, 36), Some(80023));
        assert_eq!(dd(8, 0, 45), Some(80023));
    }

    #[test]
    fn later_series_keep_the_version_that_introduced_their_layout() {
        assert_eq!(dd(8, 1, 0), Some(80023));
        assert_eq!(dd(8, 2, 0), Some(80200));
        assert_eq!(dd(8, 3, 0), Some(80300));
        assert_eq!(dd(8, 4, 3), Some(80300));
        assert_eq!(dd(9, 0, 1), Some(90000));
        assert_eq!(dd(9, 1, 0), Some(90000));
        assert_eq!(dd(9, 2, 0), Some(90200));
        assert_eq!(dd(9, 7, 4), Some(90200));
        assert_eq!(dd(26, 7, 1), Some(90200));
    }

    #[test]
    fn unknown_and_mariadb_releases_have_no_dictionary_version() {
        assert_eq!(dd(26, 10, 0), None);
        assert_eq!(dd(10, 0, 0), None);
        assert_eq!(lookup(Flavor::Mariadb, Version::new(10, 11, 19)), None);
    }

    #[test]
    fn history_never_goes_backwards() {
        let mut sorted: Vec<&DdStep> = HISTORY.iter().collect();
        sorted.sort_by_key(|s| s.first);
        assert!(sorted.windows(2).all(|w| w[0].dd <= w[1].dd));
        assert!(
            HISTORY.windows(2).all(|w| w[0].first < w[1].first),
            "keep HISTORY sorted"
        );
    }
}
