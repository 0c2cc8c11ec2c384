//! The release catalog: every series switchyard knows, its track and its compatibility lineage.
//!
//! This file is the one place to add releases. A MySQL calendar version (`YY.M.P`, from 26.7.0)
//! does not say whether it is LTS or Innovation, nor which lineage it belongs to (MySQL 26.7
//! Reference Manual, 1.3 "MySQL Releases: Innovation and LTS"); both are properties the vendor
//! declares per release (`MYSQL_VERSION_MATURITY` and `MYSQL_PREVIOUS_LTS_VERSION` in the server
//! source). So each new calendar release is entered here by hand, with its source, once it is
//! published. Until then it is refused as [`VersionError::UnknownSeries`].
//!
//! Sources used for the entries below:
//! - MySQL sequential series: MySQL 8.4 Reference Manual, 1.3 "MySQL Releases: Innovation and
//!   LTS" (8.0 bugfix series; 8.1-8.3 and 9.0-9.6 Innovation; 8.4 and 9.7 LTS).
//! - MySQL 26.7: `mysql_version.h` of the 26.7.0 source (`MYSQL_VERSION_MATURITY "INNOVATION"`,
//!   `MYSQL_PREVIOUS_LTS_VERSION "9.7.0"`).
//! - MySQL 26.10: MySQL 26.10 Reference Manual, 1.4 "What Is New in MySQL 26.10" (changes since
//!   9.7, no LTS designation) and `sql/dd/impl/bootstrap/server_version_transition.cc`, whose
//!   examples place 26.10.0 in the first calendar lineage (previous LTS 9.7.0); recorded as an
//!   Innovation release.
//! - MariaDB: the release notes of each series ("long-term maintenance release" for 10.5, 10.6,
//!   10.11, 11.4, 11.8, 12.3; "rolling" or short-term for the others). 10.3 and 10.4 predate the
//!   rolling model and had five years of maintenance, so they are recorded as long-term.

use std::sync::LazyLock;

use serde::Serialize;

use super::{Flavor, Series, Version, VersionError};

/// How a series is maintained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// MySQL long-term support series (8.4, 9.7): stable within the series, in-place downgrade
    /// within the series supported.
    Lts,
    /// MySQL innovation release: supported until the next one, never downgraded in place.
    Innovation,
    /// The MySQL 8.0 bugfix series, which the manual treats like an LTS for upgrade paths.
    Bugfix,
    /// MariaDB long-term maintenance series (10.5, 10.6, 10.11, 11.4, 11.8, 12.3, ...).
    LongTerm,
    /// MariaDB short-term or rolling series, maintained until the next one.
    Rolling,
}

impl Track {
    /// The track's name for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Track::Lts => "LTS",
            Track::Innovation => "innovation",
            Track::Bugfix => "bugfix",
            Track::LongTerm => "long-term",
            Track::Rolling => "rolling",
        }
    }

    /// True for the tracks a MySQL upgrade path may start from to reach the next lineage
    /// (LTS, and the 8.0 bugfix series).
    pub const fn is_lts_like(self) -> bool {
        matches!(self, Track::Lts | Track::Bugfix)
    }
}

impl std::fmt::Display for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the catalog records about one release series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeriesInfo {
    /// The product.
    pub flavor: Flavor,
    /// The series (`8.4`, `26.7`, `10.11`).
    pub series: Series,
    /// How the series is maintained.
    pub track: Track,
    /// MySQL compatibility lineage: the LTS (or 8.0 bugfix) series the release line follows, the
    /// server's `MYSQL_PREVIOUS_LTS_VERSION` (9.7 for 26.7; 8.4 for 9.0-9.7; 8.0 for 8.1-8.4).
    /// Releases with the same value are in one lineage. `None` for MySQL 8.0 and for MariaDB.
    pub previous_lts: Option<Series>,
    /// The first GA patch release of the series; earlier patches were development releases.
    pub first_ga_patch: u16,
    /// Where this entry comes from.
    pub source: &'static str,
}

impl SeriesInfo {
    /// The first GA release of the series.
    pub const fn first_ga(&self) -> Version {
        Version::new(self.series.major, self.series.minor, self.first_ga_patch)
    }

    /// The compatibility lineage the series belongs to (see [`SeriesInfo::previous_lts`]).
    pub const fn lineage(&self) -> Option<Series> {
        self.previous_lts
    }
}

/// The release catalog: the series switchyard knows, per flavor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    entries: Vec<SeriesInfo>,
}

/// The built-in catalog.
pub fn catalog() -> &'static Catalog {
    static BUILTIN: LazyLock<Catalog> = LazyLock::new(Catalog::builtin);
    &BUILTIN
}

const MYSQL_RELEASE_MODEL: &str =
    "MySQL 8.4 Reference Manual, 1.3 MySQL Releases: Innovation and LTS";
const MYSQL_26_7_SOURCE: &str = "mysql-server 26.7.0 mysql_version.h: MYSQL_VERSION_MATURITY \
     INNOVATION, MYSQL_PREVIOUS_LTS_VERSION 9.7.0";
const MYSQL_26_10_SOURCE: &str = "MySQL 26.10 Reference Manual, 1.4 What Is New in MySQL 26.10 \
     (since 9.7); \
     server_version_transition.cc places 26.10.0 in the lineage anchored at 9.7.0";
const MARIADB_LONG_TERM: &str = "MariaDB release notes: long-term maintenance release series";
const MARIADB_PRE_ROLLING: &str = "MariaDB release notes: stable series with five years of \
     maintenance (before the rolling model)";
const MARIADB_SHORT_TERM: &str = "MariaDB release notes: short-term or rolling release series";

/// MySQL series older than the catalog (refused with [`VersionError::RetiredSeries`]).
const MYSQL_RETIRED: [Series; 8] = [
    Series::new(3, 23),
    Series::new(4, 0),
    Series::new(4, 1),
    Series::new(5, 0),
    Series::new(5, 1),
    Series::new(5, 5),
    Series::new(5, 6),
    Series::new(5, 7),
];

/// MariaDB series older than the catalog (refused with [`VersionError::RetiredSeries`]).
const MARIADB_RETIRED: [Series; 7] = [
    Series::new(5, 1),
    Series::new(5, 2),
    Series::new(5, 3),
    Series::new(5, 5),
    Series::new(10, 0),
    Series::new(10, 1),
    Series::new(10, 2),
];

impl Catalog {
    /// The catalog switchyard ships, as returned by [`catalog()`].
    pub fn builtin() -> Catalog {
        let mut entries = Vec::new();
        let mysql =
            |series: Series, track: Track, previous_lts: Option<Series>, source: &'static str| {
                SeriesInfo {
                    flavor: Flavor::Mysql,
                    series,
                    track,
                    previous_lts,
                    // MySQL 8.0.11 was the first GA release of 8.0 (8.0.0-8.0.10 were DMRs
                    // and release candidates).
                    first_ga_patch: if series == Series::new(8, 0) { 11 } else { 0 },
                    source,
                }
            };
        let (s80, s84, s97) = (Series::new(8, 0), Series::new(8, 4), Series::new(9, 7));
        entries.push(mysql(s80, Track::Bugfix, None, MYSQL_RELEASE_MODEL));
        for minor in 1..=3 {
            entries.push(mysql(
                Series::new(8, minor),
                Track::Innovation,
                Some(s80),
                MYSQL_RELEASE_MODEL,
            ));
        }
        entries.push(mysql(s84, Track::Lts, Some(s80), MYSQL_RELEASE_MODEL));
        for minor in 0..=6 {
            entries.push(mysql(
                Series::new(9, minor),
                Track::Innovation,
                Some(s84),
                MYSQL_RELEASE_MODEL,
            ));
        }
        entries.push(mysql(s97, Track::Lts, Some(s84), MYSQL_RELEASE_MODEL));
        entries.push(mysql(
            Series::new(26, 7),
            Track::Innovation,
            Some(s97),
            MYSQL_26_7_SOURCE,
        ));
        entries.push(mysql(
            Series::new(26, 10),
            Track::Innovation,
            Some(s97),
            MYSQL_26_10_SOURCE,
        ));

        let mariadb = |major: u16, minor: u16, track: Track, source: &'static str| SeriesInfo {
            flavor: Flavor::Mariadb,
            series: Series::new(major, minor),
            track,
            previous_lts: None,
            first_ga_patch: 0,
            source,
        };
        let long_term: [(u16, u16); 6] = [(10, 5), (10, 6), (10, 11), (11, 4), (11, 8), (12, 3)];
        for (major, minors) in [(10u16, 3u16..=11u16), (11, 0..=8), (12, 0..=3)] {
            for minor in minors {
                let info = if (major, minor) == (10, 3) || (major, minor) == (10, 4) {
                    mariadb(major, minor, Track::LongTerm, MARIADB_PRE_ROLLING)
                } else if long_term.contains(&(major, minor)) {
                    mariadb(major, minor, Track::LongTerm, MARIADB_LONG_TERM)
                } else {
                    mariadb(major, minor, Track::Rolling, MARIADB_SHORT_TERM)
                };
                entries.push(info);
            }
        }
        Catalog { entries }
    }

    /// The built-in catalog plus extra series (for releases published after this build); an extra
    /// entry replaces a built-in one for the same flavor and series.
    pub fn with_series(extra: impl IntoIterator<Item = SeriesInfo>) -> Catalog {
        let mut catalog = Catalog::builtin();
        for info in extra {
            catalog
                .entries
                .retain(|e| !(e.flavor == info.flavor && e.series == info.series));
            catalog.entries.push(info);
        }
        catalog.entries.sort_by_key(|e| (e.flavor, e.series));
        catalog
    }

    /// Every series in the catalog, by flavor then series.
    pub fn entries(&self) -> &[SeriesInfo] {
        &self.entries
    }

    /// The catalog entry for a series, if there is one (no error, no pre-GA check).
    pub fn lookup(&self, flavor: Flavor, series: Series) -> Option<&SeriesInfo> {
        self.entries
            .iter()
            .find(|e| e.flavor == flavor && e.series == series)
    }

    /// The series a release belongs to: [`VersionError::UnknownSeries`] when absent,
    /// [`VersionError::RetiredSeries`] for series older than the catalog, and
    /// [`VersionError::PreGaRelease`] for development releases before a series' first GA.
    pub fn series(&self, flavor: Flavor, v: Version) -> Result<&SeriesInfo, VersionError> {
        let series = v.series();
        match self.lookup(flavor, series) {
            Some(info) if v.patch < info.first_ga_patch => Err(VersionError::PreGaRelease {
                flavor,
                version: v,
                first_ga: info.first_ga(),
            }),
            Some(info) => Ok(info),
            None if self.is_retired(flavor, series) => Err(VersionError::RetiredSeries {
                flavor,
                series,
                oldest: self.oldest(flavor).unwrap_or(series),
            }),
            None => Err(VersionError::UnknownSeries { flavor, series }),
        }
    }

    /// True for a real series older than the catalog (MySQL 5.7 and before, MariaDB 10.2 and
    /// before).
    pub fn is_retired(&self, flavor: Flavor, series: Series) -> bool {
        let retired: &[Series] = match flavor {
            Flavor::Mysql => &MYSQL_RETIRED,
            Flavor::Mariadb => &MARIADB_RETIRED,
        };
        retired.contains(&series) && self.oldest(flavor).is_some_and(|oldest| series < oldest)
    }

    /// The oldest series of a flavor in the catalog.
    pub fn oldest(&self, flavor: Flavor) -> Option<Series> {
        self.entries
            .iter()
            .filter(|e| e.flavor == flavor)
            .map(|e| e.series)
            .min()
    }

    /// The LTS series that closes a MySQL lineage: the LTS whose `previous_lts` is `lineage`
    /// (8.4 for lineage 8.0, 9.7 for lineage 8.4). `None` when the catalog does not know it yet.
    pub fn lts_closing(&self, flavor: Flavor, lineage: Series) -> Option<&SeriesInfo> {
        self.entries.iter().find(|e| {
            e.flavor == flavor && e.track == Track::Lts && e.previous_lts == Some(lineage)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16, patch: u16) -> Version {
        Version::new(major, minor, patch)
    }

    #[test]
    fn mysql_tracks_follow_the_release_model() {
        let cat = catalog();
        let track = |major, minor| {
            cat.series(Flavor::Mysql, v(major, minor, 0))
                .map(|i| i.track)
        };
        assert_eq!(
            cat.series(Flavor::Mysql, v(8, 0, 36)).unwrap().track,
            Track::Bugfix
        );
        for minor in 1..=3 {
            assert_eq!(track(8, minor), Ok(Track::Innovation));
        }
        assert_eq!(track(8, 4), Ok(Track::Lts));
        for minor in 0..=6 {
            assert_eq!(track(9, minor), Ok(Track::Innovation));
        }
        assert_eq!(track(9, 7), Ok(Track::Lts));
        assert_eq!(track(26, 7), Ok(Track::Innovation));
        assert_eq!(track(26, 10), Ok(Track::Innovation));
    }

    #[test]
    fn mysql_lineages_are_anchored_at_the_previous_lts() {
        let cat = catalog();
        let lineage = |major, minor| {
            cat.lookup(Flavor::Mysql, Series::new(major, minor))
                .unwrap()
                .lineage()
        };
        assert_eq!(lineage(8, 0), None);
        assert_eq!(lineage(8, 3), Some(Series::new(8, 0)));
        assert_eq!(lineage(8, 4), Some(Series::new(8, 0)));
        assert_eq!(lineage(9, 0), Some(Series::new(8, 4)));
        assert_eq!(lineage(9, 7), Some(Series::new(8, 4)));
        assert_eq!(lineage(26, 7), Some(Series::new(9, 7)));
        assert_eq!(lineage(26, 10), Some(Series::new(9, 7)));
        assert_eq!(
            cat.lts_closing(Flavor::Mysql, Series::new(8, 0))
                .unwrap()
                .series,
            Series::new(8, 4)
        );
        assert_eq!(
            cat.lts_closing(Flavor::Mysql, Series::new(8, 4))
                .unwrap()
                .series,
            Series::new(9, 7)
        );
        // No calendar LTS is published yet: the catalog does not invent one.
        assert!(cat.lts_closing(Flavor::Mysql, Series::new(9, 7)).is_none());
    }

    #[test]
    fn mariadb_long_term_and_rolling_series() {
        let cat = catalog();
        let track = |major, minor| {
            cat.series(Flavor::Mariadb, v(major, minor, 1))
                .unwrap()
                .track
        };
        for (major, minor) in [(10, 5), (10, 6), (10, 11), (11, 4), (11, 8), (12, 3)] {
            assert_eq!(track(major, minor), Track::LongTerm, "{major}.{minor}");
        }
        for (major, minor) in [
            (10, 7),
            (10, 10),
            (11, 0),
            (11, 3),
            (11, 5),
            (11, 7),
            (12, 0),
            (12, 2),
        ] {
            assert_eq!(track(major, minor), Track::Rolling, "{major}.{minor}");
        }
        assert_eq!(cat.oldest(Flavor::Mariadb), Some(Series::new(10, 3)));
    }

    #[test]
    fn unknown_series_are_refused_not_guessed() {
        let cat = catalog();
        for version in [
            v(10, 0, 0),
            v(9, 8, 0),
            v(26, 8, 0),
            v(27, 1, 0),
            v(8, 5, 0),
        ] {
            let err = cat.series(Flavor::Mysql, version).unwrap_err();
            assert_eq!(
                err,
                VersionError::UnknownSeries {
                    flavor: Flavor::Mysql,
                    series: version.series()
                }
            );
            let message = err.to_string();
            assert!(
                message.contains("not in switchyard's release catalog"),
                "{message}"
            );
            assert!(message.contains("refuses to guess"), "{message}");
        }
        let err = cat.series(Flavor::Mariadb, v(13, 0, 1)).unwrap_err();
        assert_eq!(err.category(), "unknown-series");
        // MariaDB series numbers are not MySQL ones and vice versa.
        assert!(cat.series(Flavor::Mysql, v(10, 11, 19)).is_err());
        assert!(cat.series(Flavor::Mariadb, v(8, 4, 3)).is_err());
    }

    #[test]
    fn old_series_are_retired_with_a_clear_message() {
        let cat = catalog();
        let err = cat.series(Flavor::Mysql, v(5, 7, 44)).unwrap_err();
        assert_eq!(
            err,
            VersionError::RetiredSeries {
                flavor: Flavor::Mysql,
                series: Series::new(5, 7),
                oldest: Series::new(8, 0)
            }
        );
        assert!(err.to_string().contains("starts at 8.0"), "{err}");
        let err = cat.series(Flavor::Mariadb, v(10, 2, 44)).unwrap_err();
        assert_eq!(err.category(), "retired-series");
        // 5.8 never existed: it is unknown, not retired.
        assert_eq!(
            cat.series(Flavor::Mysql, v(5, 8, 0))
                .unwrap_err()
                .category(),
            "unknown-series"
        );
    }

    #[test]
    fn pre_ga_mysql_8_0_releases_are_refused() {
        let err = catalog().series(Flavor::Mysql, v(8, 0, 4)).unwrap_err();
        assert_eq!(
            err,
            VersionError::PreGaRelease {
                flavor: Flavor::Mysql,
                version: v(8, 0, 4),
                first_ga: v(8, 0, 11)
            }
        );
        assert!(catalog().series(Flavor::Mysql, v(8, 0, 11)).is_ok());
    }

    #[test]
    fn extra_series_can_be_added_without_touching_the_builtin() {
        let lts_28_4 = SeriesInfo {
            flavor: Flavor::Mysql,
            series: Series::new(28, 4),
            track: Track::Lts,
            previous_lts: Some(Series::new(9, 7)),
            first_ga_patch: 0,
            source: "test",
        };
        let extended = Catalog::with_series([lts_28_4.clone()]);
        assert_eq!(extended.series(Flavor::Mysql, v(28, 4, 2)), Ok(&lts_28_4));
        assert_eq!(
            extended.lts_closing(Flavor::Mysql, Series::new(9, 7)),
            Some(&lts_28_4)
        );
        assert!(catalog().series(Flavor::Mysql, v(28, 4, 2)).is_err());
        let mut sorted = extended.entries().to_vec();
        sorted.sort_by_key(|e| (e.flavor, e.series));
        assert_eq!(sorted, extended.entries());
    }

    #[test]
    fn every_entry_names_its_source() {
        assert!(catalog().entries().iter().all(|e| !e.source.is_empty()));
        let mut keys: Vec<_> = catalog()
            .entries()
            .iter()
            .map(|e| (e.flavor, e.series))
            .collect();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "duplicate series in the catalog");
    }
}
