//! The in-place upgrade, downgrade and replication rules, each citing the manual section it
//! encodes.
//!
//! MySQL (sequential and calendar versions alike) is modelled with compatibility lineages: every
//! series records the LTS series its release line follows ([`SeriesInfo::previous_lts`]). This is
//! the model of the server's own check (`Server_version_transition::evaluate()` in
//! `sql/dd/impl/bootstrap/server_version_transition.cc`) and it reproduces the manual's table:
//! - within a series, forward: supported;
//! - within a lineage, forward (innovation to a later innovation, or to the LTS that closes the
//!   lineage): supported;
//! - from an LTS (or the 8.0 bugfix series) into the lineage it anchors (an innovation release
//!   before the next LTS, or that next LTS): supported;
//! - anything else skips an LTS and is refused;
//! - leaving 8.0 starts from the bugfix series, 8.0.34 or later.
//!
//! Downgrades: in place only within one series, and only for an LTS series (8.4, 9.7, calendar
//! LTS) or for 8.0 when both releases are 8.0.35 or later; never to or from an innovation release.
//!
//! MariaDB: any earlier version may be upgraded in place to any later one (then run
//! `mariadb-upgrade`); downgrades only within a series, never across major versions.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

use super::catalog::{Catalog, SeriesInfo, Track};
use super::{Flavor, Series, Version, VersionError, dd};

/// The manual sections the rules cite (the `manual` field of a [`PathVerdict`]).
pub mod manual {
    /// MySQL's upgrade-path table (within a series, to the next LTS, innovation releases).
    pub const MYSQL_UPGRADE_PATHS: &str = "MySQL 8.4 Reference Manual, 3.2 Upgrade Paths";
    /// Upgrades that involve a calendar version (26.7 onwards), validated by lineage.
    pub const MYSQL_CALENDAR_UPGRADE: &str =
        "MySQL 26.10 Reference Manual, 3.2 Upgrade Paths (Calendar-Version Upgrade Validation)";
    /// The 5.7 to 8.0 step, and the rule that skipping a series is not supported.
    pub const MYSQL_80_UPGRADE_PATHS: &str = "MySQL 8.0 Reference Manual, 3.2 Upgrade Paths";
    /// MySQL's downgrade-path table (in place only within an LTS series).
    pub const MYSQL_DOWNGRADING: &str =
        "MySQL 8.4 Reference Manual, 4 Downgrading MySQL (Table 4.1 Downgrade Paths)";
    /// In-place downgrade within 8.0, supported from 8.0.35.
    pub const MYSQL_80_DOWNGRADING: &str = "MySQL 8.0 Reference Manual, 4 Downgrading MySQL";
    /// Downgrades that involve a calendar version.
    pub const MYSQL_CALENDAR_DOWNGRADE: &str =
        "MySQL 26.7 Reference Manual, 4.1 Downgrade Validation";
    /// Which source and replica versions may replicate.
    pub const MYSQL_REPLICATION: &str =
        "MySQL 8.4 Reference Manual, 19.5.2 Replication Compatibility Between MySQL Versions";
    /// MariaDB in-place upgrades and replica versions.
    pub const MARIADB_UPGRADING: &str =
        "MariaDB Knowledge Base, Upgrading Between Major MariaDB Versions";
    /// MariaDB downgrades.
    pub const MARIADB_DOWNGRADING: &str =
        "MariaDB Knowledge Base, Downgrading between Major Versions of MariaDB";
    /// The index of MariaDB's Galera rolling-upgrade guides: one guide per pair of consecutive
    /// series (10.3 to 10.4, 10.4 to 10.5, 10.5 to 10.6, 10.6 to 10.11, 10.11 to 11.4), none
    /// for a pair that skips a series.
    pub const MARIADB_GALERA_UPGRADING: &str = "MariaDB Knowledge Base, Upgrading Galera Cluster";
    /// A minor upgrade of a Galera node, within its series.
    pub const MARIADB_GALERA_MINOR: &str =
        "MariaDB Knowledge Base, Upgrading Between Minor Versions with Galera Cluster";
    /// The rolling upgrade from 10.3 to 10.4 with Galera (Galera 3 to Galera 4).
    pub const MARIADB_GALERA_10_3_TO_10_4: &str =
        "MariaDB Knowledge Base, Upgrading from MariaDB 10.3 to MariaDB 10.4 with Galera Cluster";
    /// The rolling upgrade from 10.4 to 10.5 with Galera.
    pub const MARIADB_GALERA_10_4_TO_10_5: &str =
        "MariaDB Knowledge Base, Upgrading from MariaDB 10.4 to MariaDB 10.5 with Galera Cluster";
    /// The rolling upgrade from 10.5 to 10.6 with Galera.
    pub const MARIADB_GALERA_10_5_TO_10_6: &str =
        "MariaDB Knowledge Base, Upgrading from MariaDB 10.5 to MariaDB 10.6 with Galera Cluster";
    /// The rolling upgrade from 10.6 to 10.11 with Galera (with IST; the guide says a rolling
    /// upgrade with SST does not work).
    pub const MARIADB_GALERA_10_6_TO_10_11: &str =
        "MariaDB Knowledge Base, Upgrading from MariaDB 10.6 to MariaDB 10.11 with Galera Cluster";
    /// The rolling upgrade from 10.11 to 11.4 with Galera.
    pub const MARIADB_GALERA_10_11_TO_11_4: &str =
        "MariaDB Knowledge Base, Upgrading from MariaDB 10.11 to MariaDB 11.4 with Galera Cluster";
}

/// The pairs of MariaDB series between which MariaDB documents a Galera rolling upgrade (one
/// node at a time, the cluster running both series meanwhile), each with its guide.
const MARIADB_GALERA_ROLLING: [(Series, Series, &str); 5] = [
    (
        Series::new(10, 3),
        Series::new(10, 4),
        manual::MARIADB_GALERA_10_3_TO_10_4,
    ),
    (
        Series::new(10, 4),
        Series::new(10, 5),
        manual::MARIADB_GALERA_10_4_TO_10_5,
    ),
    (
        Series::new(10, 5),
        Series::new(10, 6),
        manual::MARIADB_GALERA_10_5_TO_10_6,
    ),
    (
        Series::new(10, 6),
        Series::new(10, 11),
        manual::MARIADB_GALERA_10_6_TO_10_11,
    ),
    (
        Series::new(10, 11),
        Series::new(11, 4),
        manual::MARIADB_GALERA_10_11_TO_11_4,
    ),
];

/// The direction of a version change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// The same release on both sides.
    Same,
    /// To a later release.
    Upgrade,
    /// To an earlier release.
    Downgrade,
}

impl PathKind {
    /// The direction from `from` to `to`.
    pub fn between(from: Version, to: Version) -> PathKind {
        match to.cmp(&from) {
            Ordering::Equal => PathKind::Same,
            Ordering::Greater => PathKind::Upgrade,
            Ordering::Less => PathKind::Downgrade,
        }
    }

    /// `same`, `upgrade` or `downgrade`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PathKind::Same => "same",
            PathKind::Upgrade => "upgrade",
            PathKind::Downgrade => "downgrade",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to "is this supported?", with the reason and the manual section the rule encodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathVerdict {
    /// Whether the change (or the replication pair) is supported.
    pub allowed: bool,
    /// Upgrade, downgrade or no change.
    pub kind: PathKind,
    /// One line a person can act on: why, and what to do instead when refused.
    pub reason: String,
    /// The manual section cited, e.g. "MySQL 8.4 Reference Manual, 3.2 Upgrade Paths".
    pub manual: &'static str,
}

impl PathVerdict {
    fn allow(kind: PathKind, reason: String, manual: &'static str) -> Self {
        PathVerdict {
            allowed: true,
            kind,
            reason,
            manual,
        }
    }

    fn refuse(kind: PathKind, reason: String, manual: &'static str) -> Self {
        PathVerdict {
            allowed: false,
            kind,
            reason,
            manual,
        }
    }
}

/// The first 8.0 release of the bugfix series, where the upgrade paths out of 8.0 start.
const MYSQL_80_BUGFIX_FIRST_PATCH: u16 = 34;
/// In-place downgrade within 8.0 is supported between releases that are both 8.0.35 or later.
const MYSQL_80_DOWNGRADE_FLOOR: u16 = 35;
const MYSQL_80: Series = Series::new(8, 0);
const MYSQL_57: Series = Series::new(5, 7);
/// MariaDB 11.0 removed the InnoDB change buffer; 10.x cannot read a data directory written by
/// 11.x.
const MARIADB_11_0: Version = Version::new(11, 0, 0);

impl Catalog {
    /// MySQL data-dictionary version of a release (None for MariaDB or unknown).
    pub fn dd_version(&self, flavor: Flavor, v: Version) -> Option<u32> {
        dd::lookup(flavor, v)
    }

    /// In-place change of one instance's data directory from `from` to `to`.
    ///
    /// Errors when either version is not usable (unknown or pre-GA series, or both sides older
    /// than the catalog); a known but unsupported change is an `Ok` verdict with `allowed: false`.
    pub fn check_in_place(
        &self,
        flavor: Flavor,
        from: Version,
        to: Version,
    ) -> Result<PathVerdict, VersionError> {
        match flavor {
            Flavor::Mysql => self.mysql_in_place(from, to),
            Flavor::Mariadb => self.mariadb_in_place(from, to),
        }
    }

    /// May a node of a MariaDB Galera cluster running `from` be restarted on `to` while the
    /// other nodes keep running (a rolling upgrade, the cluster running both releases
    /// meanwhile)?
    ///
    /// MariaDB documents a Galera rolling upgrade within a series and between consecutive
    /// series only, one guide per pair ([`manual::MARIADB_GALERA_UPGRADING`]): 10.5 to 10.6,
    /// 10.6 to 10.11, and so on. A pair that skips a series (10.5 to 10.11) has no guide and is
    /// refused, naming the series to roll to first; so is every downgrade (a node on an older
    /// release joining newer ones is not a documented path). For MySQL this is
    /// [`Catalog::check_in_place`] (no Galera topology runs MySQL).
    ///
    /// # Errors
    /// As [`Catalog::check_in_place`]: a version the catalog does not know.
    pub fn check_galera_rolling(
        &self,
        flavor: Flavor,
        from: Version,
        to: Version,
    ) -> Result<PathVerdict, VersionError> {
        let in_place = self.check_in_place(flavor, from, to)?;
        if flavor != Flavor::Mariadb {
            return Ok(in_place);
        }
        let (from_series, to_series) = (from.series(), to.series());
        Ok(match PathKind::between(from, to) {
            PathKind::Same => in_place,
            PathKind::Downgrade => PathVerdict::refuse(
                PathKind::Downgrade,
                format!(
                    "MariaDB {from} -> {to} is a downgrade: MariaDB documents no rolling \
                     downgrade of a Galera cluster (a node on an older release joining nodes \
                     on a newer one); restore a backup taken before the upgrade"
                ),
                manual::MARIADB_GALERA_UPGRADING,
            ),
            PathKind::Upgrade if from_series == to_series => PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "MariaDB {from} -> {to} is a minor upgrade within the {from_series} series, \
                     rolled node by node; each node rejoins by IST"
                ),
                manual::MARIADB_GALERA_MINOR,
            ),
            PathKind::Upgrade => {
                let documented = MARIADB_GALERA_ROLLING
                    .iter()
                    .find(|(a, b, _)| *a == from_series && *b == to_series);
                if let Some((_, _, guide)) = documented {
                    return Ok(PathVerdict::allow(
                        PathKind::Upgrade,
                        format!(
                            "MariaDB documents a Galera rolling upgrade from {from_series} to \
                             {to_series}: one node at a time, each rejoining by IST (a rolling \
                             upgrade by SST does not work), then mariadb-upgrade on it"
                        ),
                        guide,
                    ));
                }
                let next = MARIADB_GALERA_ROLLING
                    .iter()
                    .find(|(a, _, _)| *a == from_series)
                    .map_or_else(
                        || "no rolling step from it is documented".to_owned(),
                        |(_, b, _)| format!("roll to {b} first"),
                    );
                PathVerdict::refuse(
                    PathKind::Upgrade,
                    format!(
                        "MariaDB {from} -> {to} skips a series: MariaDB documents Galera rolling \
                         upgrades only between consecutive series (10.5 -> 10.6, 10.6 -> 10.11, \
                         10.11 -> 11.4), not {from_series} -> {to_series}; {next}, or stop \
                         every node and upgrade them together"
                    ),
                    manual::MARIADB_GALERA_UPGRADING,
                )
            }
        })
    }

    /// May an instance running `replica` replicate from one running `source`?
    ///
    /// The replica must run the same or a newer release; for MySQL the upgrade from the source's
    /// release to the replica's must itself be a supported path, MariaDB accepts any newer replica.
    pub fn check_replication(
        &self,
        flavor: Flavor,
        source: Version,
        replica: Version,
    ) -> Result<PathVerdict, VersionError> {
        let path = self.check_in_place(flavor, source, replica)?;
        let flavor_manual = match flavor {
            Flavor::Mysql => manual::MYSQL_REPLICATION,
            Flavor::Mariadb => manual::MARIADB_UPGRADING,
        };
        let product = flavor.product_name();
        Ok(match path.kind {
            PathKind::Same => PathVerdict::allow(
                PathKind::Same,
                format!("source and replica both run {product} {source}"),
                flavor_manual,
            ),
            PathKind::Downgrade => PathVerdict::refuse(
                PathKind::Downgrade,
                format!(
                    "the replica runs {product} {replica}, older than its source's {source}: a replica must run \
                     the same or a newer release than its source; upgrade the replica first"
                ),
                flavor_manual,
            ),
            PathKind::Upgrade if flavor == Flavor::Mariadb => PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "a MariaDB replica may run any newer version than its primary ({replica} replicating from {source})"
                ),
                flavor_manual,
            ),
            PathKind::Upgrade if path.allowed => PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "a replica may run a newer release than its source where the upgrade {source} -> {replica} \
                     is a supported path: {}",
                    path.reason
                ),
                manual::MYSQL_REPLICATION,
            ),
            PathKind::Upgrade => PathVerdict::refuse(
                PathKind::Upgrade,
                format!(
                    "{replica} may not replicate from {source}: replication from an older source is supported \
                     only where the upgrade between them is, and here it is not: {}",
                    path.reason
                ),
                manual::MYSQL_REPLICATION,
            ),
        })
    }

    /// Looks both versions up. `Ok(None)` for a side that is older than the catalog, so that the
    /// caller can apply the few rules the manuals give for it.
    fn lookup_pair(
        &self,
        flavor: Flavor,
        from: Version,
        to: Version,
    ) -> Result<(Option<&SeriesInfo>, Option<&SeriesInfo>), VersionError> {
        let side = |v: Version| match self.series(flavor, v) {
            Ok(info) => Ok(Ok(info)),
            Err(err @ VersionError::RetiredSeries { .. }) => Ok(Err(err)),
            Err(err) => Err(err),
        };
        let (from_side, to_side) = (side(from)?, side(to)?);
        match (from_side, to_side) {
            (Err(retired), Err(_)) => Err(retired),
            (from_side, to_side) => Ok((from_side.ok(), to_side.ok())),
        }
    }

    fn mysql_in_place(&self, from: Version, to: Version) -> Result<PathVerdict, VersionError> {
        let (from_info, to_info) = self.lookup_pair(Flavor::Mysql, from, to)?;
        Ok(match (from_info, to_info) {
            (Some(f), Some(t)) => match PathKind::between(from, to) {
                PathKind::Same => PathVerdict::allow(
                    PathKind::Same,
                    format!("MySQL {from} is already the running release; nothing changes"),
                    upgrade_manual(from, to),
                ),
                PathKind::Upgrade => self.mysql_upgrade(f, t, from, to),
                PathKind::Downgrade => self.mysql_downgrade(f, t, from, to),
            },
            (None, Some(_)) => self.mysql_from_retired(from, to),
            (Some(_), None) => PathVerdict::refuse(
                PathKind::Downgrade,
                format!(
                    "MySQL {from} -> {to} is a downgrade to a series older than 8.0, which is not supported; \
                     restore a backup taken before the upgrade"
                ),
                manual::MYSQL_80_DOWNGRADING,
            ),
            (None, None) => both_retired(Flavor::Mysql, from, to),
        })
    }

    fn mysql_from_retired(&self, from: Version, to: Version) -> PathVerdict {
        if from.series() != MYSQL_57 {
            return PathVerdict::refuse(
                PathKind::Upgrade,
                format!(
                    "MySQL {from} -> {to} skips release series: upgrade one series at a time ({} -> ... -> 5.7 -> 8.0); \
                     switchyard's catalog starts at 8.0",
                    from.series()
                ),
                manual::MYSQL_80_UPGRADE_PATHS,
            );
        }
        if to.series() != MYSQL_80 {
            return PathVerdict::refuse(
                PathKind::Upgrade,
                format!(
                    "MySQL {from} -> {to} skips the 8.0 bugfix series: upgrade 5.7 to 8.0 first, then follow the \
                     upgrade paths from 8.0"
                ),
                manual::MYSQL_UPGRADE_PATHS,
            );
        }
        let dd = self
            .dd_version(Flavor::Mysql, to)
            .map(|dd| format!(" ({dd})"))
            .unwrap_or_default();
        PathVerdict::allow(
            PathKind::Upgrade,
            format!(
                "MySQL 5.7 may be upgraded in place to 8.0 (upgrade to the latest 5.7 release first); at first start \
                 {to} builds its data dictionary{dd} from the 5.7 metadata and the change cannot be undone in place; \
                 5.7 itself is older than switchyard's catalog"
            ),
            manual::MYSQL_80_UPGRADE_PATHS,
        )
    }

    fn mysql_upgrade(
        &self,
        f: &SeriesInfo,
        t: &SeriesInfo,
        from: Version,
        to: Version,
    ) -> PathVerdict {
        let manual = upgrade_manual(from, to);
        let dd = self.dd_upgrade_note(from, to);
        if f.series == t.series {
            return PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "MySQL {from} -> {to} stays within the {} {} series, where in-place upgrade is supported{dd}",
                    f.series, f.track
                ),
                manual,
            );
        }
        if f.series == MYSQL_80 && from.patch < MYSQL_80_BUGFIX_FIRST_PATCH {
            return PathVerdict::refuse(
                PathKind::Upgrade,
                format!(
                    "MySQL {from} predates the 8.0 bugfix series (8.0.{MYSQL_80_BUGFIX_FIRST_PATCH} and later), where the \
                     upgrade paths out of 8.0 start; upgrade within 8.0 to 8.0.{MYSQL_80_BUGFIX_FIRST_PATCH} or later first \
                     (the manual's current example uses 8.0.37), then to {to}"
                ),
                manual,
            );
        }
        let same_lineage = f.previous_lts.is_some() && f.previous_lts == t.previous_lts;
        let enters_next_lineage = f.track.is_lts_like() && t.previous_lts == Some(f.series);
        if same_lineage {
            let step = if t.track == Track::Lts {
                format!(
                    "an innovation release may upgrade to the LTS series that closes its release line ({})",
                    t.series
                )
            } else {
                format!(
                    "an innovation release may upgrade to a later innovation release of its release line{}",
                    self.before_next_lts(f.previous_lts)
                )
            };
            return PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "MySQL {from} ({} {}) -> {to} ({} {}): {step}{}{dd}",
                    f.series,
                    f.track,
                    t.series,
                    t.track,
                    lineage_note(t)
                ),
                manual,
            );
        }
        if enters_next_lineage {
            let step = if to.is_calendar() && !from.is_calendar() {
                format!(
                    "{} LTS, the last sequential LTS, may enter the first calendar compatibility lineage (anchored at {}.0)",
                    f.series, f.series
                )
            } else if t.track == Track::Lts {
                format!(
                    "an LTS or bugfix series may upgrade to the next LTS series ({})",
                    t.series
                )
            } else {
                format!(
                    "an LTS or bugfix series may upgrade to an innovation release{}",
                    self.before_next_lts(Some(f.series))
                )
            };
            return PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "MySQL {from} ({} {}) -> {to} ({} {}): {step}{dd}",
                    f.series, f.track, t.series, t.track
                ),
                manual,
            );
        }
        let reason = if f.track.is_lts_like() {
            match self.lts_closing(Flavor::Mysql, f.series) {
                Some(next) => format!(
                    "MySQL {from} -> {to} would skip the {} LTS series: from {} {} an in-place upgrade may go to an \
                     innovation release before {} or to {} itself, never past it; upgrade to {} first",
                    next.series, f.series, f.track, next.series, next.series, next.series
                ),
                None => format!(
                    "MySQL {from} -> {to}: {to} does not belong to the release line that follows {} {}, so the \
                     upgrade would skip an LTS series",
                    f.series, f.track
                ),
            }
        } else {
            match f
                .previous_lts
                .and_then(|lineage| self.lts_closing(Flavor::Mysql, lineage))
            {
                Some(next) => format!(
                    "MySQL {from} is an innovation release: it may upgrade only to a later innovation release before \
                     the next LTS ({}) or to {} itself, never past it; upgrade to {} first, then to {to}",
                    next.series, next.series, next.series
                ),
                None => format!(
                    "MySQL {from} is an innovation release of the compatibility lineage anchored at {}; {to} belongs \
                     to a different lineage, which an innovation release cannot enter directly",
                    f.previous_lts
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "no LTS".to_owned())
                ),
            }
        };
        PathVerdict::refuse(PathKind::Upgrade, reason, manual)
    }

    fn mysql_downgrade(
        &self,
        f: &SeriesInfo,
        t: &SeriesInfo,
        from: Version,
        to: Version,
    ) -> PathVerdict {
        let calendar = from.is_calendar() || to.is_calendar();
        let dd = self.dd_downgrade_note(from, to);
        if f.series != t.series {
            return PathVerdict::refuse(
                PathKind::Downgrade,
                format!(
                    "MySQL {from} -> {to} is a downgrade across release series ({} to {}): in place, only patch \
                     releases of one LTS series (or 8.0.35 and later within 8.0) may be downgraded{dd}; restore a \
                     backup taken before the upgrade, or for a rollback use a logical dump and load or replication",
                    f.series, t.series
                ),
                if calendar {
                    manual::MYSQL_CALENDAR_DOWNGRADE
                } else {
                    manual::MYSQL_DOWNGRADING
                },
            );
        }
        match f.track {
            Track::Lts => PathVerdict::allow(
                PathKind::Downgrade,
                format!(
                    "MySQL {from} -> {to} stays within the {} LTS series, where in-place downgrade is supported (the \
                     older server still refuses a target below a downgrade threshold recorded by the newer release)",
                    f.series
                ),
                if calendar {
                    manual::MYSQL_CALENDAR_DOWNGRADE
                } else {
                    manual::MYSQL_DOWNGRADING
                },
            ),
            Track::Bugfix
                if from.patch >= MYSQL_80_DOWNGRADE_FLOOR
                    && to.patch >= MYSQL_80_DOWNGRADE_FLOOR =>
            {
                PathVerdict::allow(
                    PathKind::Downgrade,
                    format!(
                        "MySQL {from} -> {to}: in-place downgrade within 8.0 is supported between releases that are \
                         both 8.0.{MYSQL_80_DOWNGRADE_FLOOR} or later"
                    ),
                    manual::MYSQL_80_DOWNGRADING,
                )
            }
            Track::Bugfix => PathVerdict::refuse(
                PathKind::Downgrade,
                format!(
                    "MySQL {from} -> {to}: in-place downgrade within 8.0 is supported only between releases that are \
                     both 8.0.{MYSQL_80_DOWNGRADE_FLOOR} or later{dd}; restore a backup taken before the upgrade"
                ),
                manual::MYSQL_80_DOWNGRADING,
            ),
            Track::Innovation | Track::LongTerm | Track::Rolling => PathVerdict::refuse(
                PathKind::Downgrade,
                format!(
                    "MySQL {from} is an innovation release: in-place downgrade to or from an innovation release is \
                     never supported, even within its series{dd}; roll back with a logical dump and load or \
                     replication, or restore a backup"
                ),
                if calendar {
                    manual::MYSQL_CALENDAR_DOWNGRADE
                } else {
                    manual::MYSQL_DOWNGRADING
                },
            ),
        }
    }

    fn mariadb_in_place(&self, from: Version, to: Version) -> Result<PathVerdict, VersionError> {
        let (from_info, to_info) = self.lookup_pair(Flavor::Mariadb, from, to)?;
        if from_info.is_none() && to_info.is_none() {
            return Ok(both_retired(Flavor::Mariadb, from, to));
        }
        let (from_series, to_series) = (from.series(), to.series());
        Ok(match PathKind::between(from, to) {
            PathKind::Same => PathVerdict::allow(
                PathKind::Same,
                format!("MariaDB {from} is already the running release; nothing changes"),
                manual::MARIADB_UPGRADING,
            ),
            PathKind::Upgrade if from_series == to_series => PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "MariaDB {from} -> {to} is a minor upgrade within the {from_series} series; run mariadb-upgrade \
                     after the new server starts"
                ),
                manual::MARIADB_UPGRADING,
            ),
            PathKind::Upgrade => PathVerdict::allow(
                PathKind::Upgrade,
                format!(
                    "MariaDB supports in-place upgrade from any earlier version to a later one ({from} -> {to}): shut \
                     the old server down cleanly, and run mariadb-upgrade after the new server starts (the system \
                     tables keep their old shape until then)"
                ),
                manual::MARIADB_UPGRADING,
            ),
            PathKind::Downgrade if from_series == to_series => PathVerdict::allow(
                PathKind::Downgrade,
                format!(
                    "MariaDB {from} -> {to} stays within the {from_series} series, whose GA releases share one storage \
                     format, so a clean shutdown and restart on {to} is possible"
                ),
                manual::MARIADB_DOWNGRADING,
            ),
            PathKind::Downgrade => {
                let change_buffer = if from >= MARIADB_11_0 && to < MARIADB_11_0 {
                    "; a 10.x server on a data directory written by 11.0 or later reports the InnoDB change buffer as \
                     corrupted (11.0 removed it)"
                } else {
                    ""
                };
                PathVerdict::refuse(
                    PathKind::Downgrade,
                    format!(
                        "MariaDB {from} -> {to} is a downgrade across major versions ({from_series} to {to_series}), \
                         which MariaDB does not support: system tables and on-disk formats change between them\
                         {change_buffer}; restore a backup taken before the upgrade"
                    ),
                    manual::MARIADB_DOWNGRADING,
                )
            }
        })
    }

    /// " before the next LTS (X)" for a lineage whose closing LTS is known, else " before the next
    /// LTS".
    fn before_next_lts(&self, lineage: Option<Series>) -> String {
        match lineage.and_then(|l| self.lts_closing(Flavor::Mysql, l)) {
            Some(next) => format!(" before the next LTS ({})", next.series),
            None => " before the next LTS".to_owned(),
        }
    }

    fn dd_upgrade_note(&self, from: Version, to: Version) -> String {
        match (
            self.dd_version(Flavor::Mysql, from),
            self.dd_version(Flavor::Mysql, to),
        ) {
            (Some(old), Some(new)) if new > old => format!(
                "; at first start {to} upgrades the data dictionary from version {old} to {new}, which cannot be undone in place"
            ),
            _ => String::new(),
        }
    }

    fn dd_downgrade_note(&self, from: Version, to: Version) -> String {
        match (
            self.dd_version(Flavor::Mysql, from),
            self.dd_version(Flavor::Mysql, to),
        ) {
            (Some(newer), Some(older)) if newer > older => format!(
                " ({from} has data dictionary version {newer}; {to} reads {older} and refuses a newer dictionary)"
            ),
            _ => String::new(),
        }
    }
}

/// The manual section for a MySQL upgrade: the calendar-version rules when either side is one.
fn upgrade_manual(from: Version, to: Version) -> &'static str {
    if from.is_calendar() || to.is_calendar() {
        manual::MYSQL_CALENDAR_UPGRADE
    } else {
        manual::MYSQL_UPGRADE_PATHS
    }
}

fn lineage_note(t: &SeriesInfo) -> String {
    match t.previous_lts {
        Some(lineage) if t.series.major >= 26 => {
            format!(" (compatibility lineage anchored at {lineage}.0)")
        }
        _ => String::new(),
    }
}

/// `lookup_pair` already returns an error when both sides are older than the catalog; this keeps
/// the matches total without a panic.
fn both_retired(flavor: Flavor, from: Version, to: Version) -> PathVerdict {
    PathVerdict::refuse(
        PathKind::between(from, to),
        format!(
            "{} {from} and {to} are both older than switchyard's catalog",
            flavor.product_name()
        ),
        match flavor {
            Flavor::Mysql => manual::MYSQL_80_UPGRADE_PATHS,
            Flavor::Mariadb => manual::MARIADB_UPGRADING,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::catalog;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn mysql(from: &str, to: &str) -> PathVerdict {
        catalog()
            .check_in_place(Flavor::Mysql, v(from), v(to))
            .unwrap()
    }

    fn mariadb(from: &str, to: &str) -> PathVerdict {
        catalog()
            .check_in_place(Flavor::Mariadb, v(from), v(to))
            .unwrap()
    }

    #[track_caller]
    fn assert_allowed(verdict: &PathVerdict, kind: PathKind, manual: &str) {
        assert!(verdict.allowed, "expected allowed: {verdict:?}");
        assert_eq!(verdict.kind, kind, "{verdict:?}");
        assert_eq!(verdict.manual, manual, "{verdict:?}");
    }

    #[track_caller]
    fn assert_refused(verdict: &PathVerdict, kind: PathKind, manual: &str, mentions: &[&str]) {
        assert!(!verdict.allowed, "expected refused: {verdict:?}");
        assert_eq!(verdict.kind, kind, "{verdict:?}");
        assert_eq!(verdict.manual, manual, "{verdict:?}");
        for needle in mentions {
            assert!(
                verdict.reason.contains(needle),
                "reason lacks {needle:?}: {}",
                verdict.reason
            );
        }
    }

    // --- MySQL in-place upgrades -------------------------------------------------------------

    #[test]
    fn mysql_within_a_series_any_patch_to_a_later_patch() {
        assert_allowed(
            &mysql("8.0.20", "8.0.36"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("8.4.0", "8.4.4"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("9.7.0", "9.7.4"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("9.1.0", "9.1.2"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("26.7.0", "26.7.1"),
            PathKind::Upgrade,
            manual::MYSQL_CALENDAR_UPGRADE,
        );
        // The data-dictionary change is named when the patch upgrade crosses one.
        assert!(
            mysql("8.0.20", "8.0.36")
                .reason
                .contains("from version 80017 to 80023")
        );
    }

    #[test]
    fn mysql_lts_or_bugfix_to_the_next_lts() {
        let verdict = mysql("8.0.37", "8.4.3");
        assert_allowed(&verdict, PathKind::Upgrade, manual::MYSQL_UPGRADE_PATHS);
        assert!(
            verdict.reason.contains("next LTS series (8.4)"),
            "{}",
            verdict.reason
        );
        assert!(
            verdict.reason.contains("80023 to 80300"),
            "{}",
            verdict.reason
        );
        assert_allowed(
            &mysql("8.0.34", "8.4.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("8.4.3", "9.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
    }

    #[test]
    fn mysql_lts_to_an_innovation_release_before_the_next_lts() {
        let verdict = mysql("8.4.0", "9.2.0");
        assert_allowed(&verdict, PathKind::Upgrade, manual::MYSQL_UPGRADE_PATHS);
        assert!(
            verdict.reason.contains("before the next LTS (9.7)"),
            "{}",
            verdict.reason
        );
        assert_allowed(
            &mysql("8.0.34", "8.3.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("8.0.36", "8.1.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
    }

    #[test]
    fn mysql_innovation_to_a_later_innovation_or_to_the_next_lts() {
        assert_allowed(
            &mysql("8.1.0", "8.3.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        assert_allowed(
            &mysql("9.0.1", "9.6.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
        let verdict = mysql("8.3.0", "8.4.2");
        assert_allowed(&verdict, PathKind::Upgrade, manual::MYSQL_UPGRADE_PATHS);
        assert!(
            verdict.reason.contains("closes its release line (8.4)"),
            "{}",
            verdict.reason
        );
        assert_allowed(
            &mysql("9.6.0", "9.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
    }

    #[test]
    fn mysql_never_past_the_next_lts_in_one_step() {
        assert_refused(
            &mysql("8.0.36", "9.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &["skip the 8.4 LTS series", "upgrade to 8.4 first"],
        );
        assert_refused(
            &mysql("8.0.40", "9.0.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &["8.4"],
        );
        assert_refused(
            &mysql("8.3.0", "9.0.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &[
                "innovation release",
                "next LTS (8.4)",
                "upgrade to 8.4 first",
            ],
        );
        assert_refused(
            &mysql("8.2.0", "9.2.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &["8.4"],
        );
        assert_refused(
            &mysql("9.5.0", "26.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_CALENDAR_UPGRADE,
            &["9.7"],
        );
    }

    #[test]
    fn mysql_leaving_8_0_starts_from_the_bugfix_series() {
        assert_refused(
            &mysql("8.0.30", "8.4.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &["8.0.34 or later first"],
        );
        assert_refused(
            &mysql("8.0.33", "8.3.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &["8.0.34"],
        );
        // Within 8.0 the floor does not apply.
        assert_allowed(
            &mysql("8.0.11", "8.0.34"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
        );
    }

    #[test]
    fn mysql_calendar_versions_follow_their_compatibility_lineage() {
        let verdict = mysql("9.7.4", "26.7.0");
        assert_allowed(&verdict, PathKind::Upgrade, manual::MYSQL_CALENDAR_UPGRADE);
        assert!(
            verdict
                .reason
                .contains("first calendar compatibility lineage"),
            "{}",
            verdict.reason
        );
        assert_allowed(
            &mysql("9.7.0", "26.10.0"),
            PathKind::Upgrade,
            manual::MYSQL_CALENDAR_UPGRADE,
        );
        assert_allowed(
            &mysql("26.7.0", "26.10.0"),
            PathKind::Upgrade,
            manual::MYSQL_CALENDAR_UPGRADE,
        );
        // 8.4 may not enter the first calendar lineage: it would skip 9.7.
        assert_refused(
            &mysql("8.4.5", "26.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_CALENDAR_UPGRADE,
            &["skip the 9.7 LTS series"],
        );
        // An innovation release of the 9.x line cannot cross into the calendar lineage.
        assert_refused(
            &mysql("9.6.1", "26.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_CALENDAR_UPGRADE,
            &["9.7"],
        );
    }

    #[test]
    fn mysql_lineage_rules_extend_to_releases_added_to_the_catalog() {
        let with = |series: Series, track: Track, previous: Series| SeriesInfo {
            flavor: Flavor::Mysql,
            series,
            track,
            previous_lts: Some(previous),
            first_ga_patch: 0,
            source: "test",
        };
        let (s97, s28_4) = (Series::new(9, 7), Series::new(28, 4));
        let cat = Catalog::with_series([
            with(Series::new(27, 1), Track::Innovation, s97),
            with(s28_4, Track::Lts, s97),
            with(Series::new(28, 10), Track::Innovation, s28_4),
            with(Series::new(30, 4), Track::Lts, s28_4),
        ]);
        let check =
            |from: &str, to: &str| cat.check_in_place(Flavor::Mysql, v(from), v(to)).unwrap();
        // The cases of the server's own unit test for Server_version_transition.
        assert!(check("9.7.5", "28.4.0").allowed);
        assert!(!check("9.7.5", "28.10.0").allowed);
        assert!(!check("9.7.5", "30.4.0").allowed);
        assert!(check("26.7.0", "27.1.3").allowed);
        assert!(check("26.7.0", "28.4.0").allowed);
        assert!(check("28.4.0", "28.4.4").allowed);
        assert!(check("28.4.4", "28.10.0").allowed);
        assert!(check("28.4.0", "30.4.0").allowed);
        assert!(check("28.4.4", "28.4.2").allowed, "LTS patch downgrade");
        assert!(
            !check("28.10.4", "28.10.3").allowed,
            "innovation patch downgrade"
        );
        assert!(
            !check("28.10.4", "28.4.0").allowed,
            "downgrade across release bases"
        );
        assert!(
            check("27.1.0", "28.10.0").reason.contains("28.4"),
            "{}",
            check("27.1.0", "28.10.0").reason
        );
    }

    #[test]
    fn mysql_5_7_goes_to_8_0_only_and_older_series_are_refused() {
        assert_allowed(
            &mysql("5.7.44", "8.0.36"),
            PathKind::Upgrade,
            manual::MYSQL_80_UPGRADE_PATHS,
        );
        assert_refused(
            &mysql("5.7.44", "8.4.0"),
            PathKind::Upgrade,
            manual::MYSQL_UPGRADE_PATHS,
            &["skips the 8.0 bugfix series"],
        );
        assert_refused(
            &mysql("5.6.51", "8.0.36"),
            PathKind::Upgrade,
            manual::MYSQL_80_UPGRADE_PATHS,
            &["5.7"],
        );
        assert_refused(
            &mysql("8.0.36", "5.7.44"),
            PathKind::Downgrade,
            manual::MYSQL_80_DOWNGRADING,
            &["backup"],
        );
        // Both sides older than the catalog: an error, not a verdict.
        let err = catalog()
            .check_in_place(Flavor::Mysql, v("5.6.51"), v("5.7.44"))
            .unwrap_err();
        assert_eq!(err.category(), "retired-series");
    }

    #[test]
    fn mysql_unknown_or_pre_ga_versions_are_errors() {
        let err = catalog()
            .check_in_place(Flavor::Mysql, v("9.7.0"), v("10.0.0"))
            .unwrap_err();
        assert_eq!(
            err,
            VersionError::UnknownSeries {
                flavor: Flavor::Mysql,
                series: Series::new(10, 0)
            }
        );
        let err = catalog()
            .check_in_place(Flavor::Mysql, v("27.3.0"), v("27.3.0"))
            .unwrap_err();
        assert_eq!(err.category(), "unknown-series");
        // An unknown target wins over a retired source, so the message names the real problem.
        let err = catalog()
            .check_in_place(Flavor::Mysql, v("5.7.44"), v("8.5.0"))
            .unwrap_err();
        assert_eq!(err.category(), "unknown-series");
        let err = catalog()
            .check_in_place(Flavor::Mysql, v("8.0.4"), v("8.0.36"))
            .unwrap_err();
        assert_eq!(err.category(), "pre-ga-release");
    }

    #[test]
    fn mysql_same_release_is_allowed() {
        let verdict = mysql("8.4.3", "8.4.3");
        assert_allowed(&verdict, PathKind::Same, manual::MYSQL_UPGRADE_PATHS);
        assert_allowed(
            &mysql("26.7.0", "26.7.0"),
            PathKind::Same,
            manual::MYSQL_CALENDAR_UPGRADE,
        );
    }

    // --- MySQL in-place downgrades -----------------------------------------------------------

    #[test]
    fn mysql_lts_downgrade_within_the_series() {
        assert_allowed(
            &mysql("8.4.4", "8.4.0"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
        );
        assert_allowed(
            &mysql("9.7.4", "9.7.1"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
        );
    }

    #[test]
    fn mysql_8_0_downgrade_only_between_8_0_35_and_later() {
        assert_allowed(
            &mysql("8.0.36", "8.0.35"),
            PathKind::Downgrade,
            manual::MYSQL_80_DOWNGRADING,
        );
        assert_allowed(
            &mysql("8.0.41", "8.0.37"),
            PathKind::Downgrade,
            manual::MYSQL_80_DOWNGRADING,
        );
        assert_refused(
            &mysql("8.0.36", "8.0.34"),
            PathKind::Downgrade,
            manual::MYSQL_80_DOWNGRADING,
            &["8.0.35"],
        );
        assert_refused(
            &mysql("8.0.34", "8.0.33"),
            PathKind::Downgrade,
            manual::MYSQL_80_DOWNGRADING,
            &["8.0.35"],
        );
        // Below 8.0.23 the data dictionary differs too, and the reason says so.
        assert_refused(
            &mysql("8.0.36", "8.0.22"),
            PathKind::Downgrade,
            manual::MYSQL_80_DOWNGRADING,
            &["8.0.36 has data dictionary version 80023; 8.0.22 reads 80022"],
        );
    }

    #[test]
    fn mysql_never_downgrades_across_series() {
        assert_refused(
            &mysql("8.4.3", "8.0.36"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
            &[
                "across release series",
                "8.4.3 has data dictionary version 80300; 8.0.36 reads 80023",
            ],
        );
        assert_refused(
            &mysql("9.7.0", "8.4.6"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
            &["90200", "80300"],
        );
        assert_refused(
            &mysql("8.4.0", "8.3.0"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
            &["8.4 to 8.3"],
        );
        assert_refused(
            &mysql("26.7.0", "9.7.4"),
            PathKind::Downgrade,
            manual::MYSQL_CALENDAR_DOWNGRADE,
            &["26.7 to 9.7"],
        );
    }

    #[test]
    fn mysql_innovation_releases_are_never_downgraded_in_place() {
        assert_refused(
            &mysql("9.1.2", "9.1.0"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
            &["innovation"],
        );
        assert_refused(
            &mysql("9.5.0", "9.4.0"),
            PathKind::Downgrade,
            manual::MYSQL_DOWNGRADING,
            &["across"],
        );
        assert_refused(
            &mysql("26.7.1", "26.7.0"),
            PathKind::Downgrade,
            manual::MYSQL_CALENDAR_DOWNGRADE,
            &["innovation"],
        );
    }

    // --- MariaDB -----------------------------------------------------------------------------

    #[test]
    fn mariadb_upgrades_from_any_earlier_version_and_says_to_run_mariadb_upgrade() {
        for (from, to) in [
            ("10.3.39", "10.11.19"),
            ("10.5.27", "11.8.6"),
            ("10.11.19", "11.4.5"),
            ("11.8.6", "12.3.1"),
        ] {
            let verdict = mariadb(from, to);
            assert_allowed(&verdict, PathKind::Upgrade, manual::MARIADB_UPGRADING);
            assert!(
                verdict.reason.contains("mariadb-upgrade"),
                "{}",
                verdict.reason
            );
        }
        assert!(
            mariadb("10.11.6", "10.11.19")
                .reason
                .contains("mariadb-upgrade")
        );
        // Older than the catalog but documented: any earlier MariaDB version upgrades.
        assert_allowed(
            &mariadb("10.2.44", "10.6.21"),
            PathKind::Upgrade,
            manual::MARIADB_UPGRADING,
        );
    }

    #[test]
    fn galera_rolls_only_between_consecutive_series_and_never_down() {
        let galera = |from: &str, to: &str| {
            catalog()
                .check_galera_rolling(Flavor::Mariadb, v(from), v(to))
                .unwrap()
        };
        for (from, to, guide) in [
            ("10.5.27", "10.6.20", manual::MARIADB_GALERA_10_5_TO_10_6),
            ("10.6.20", "10.11.14", manual::MARIADB_GALERA_10_6_TO_10_11),
            ("10.11.14", "11.4.8", manual::MARIADB_GALERA_10_11_TO_11_4),
            ("10.11.9", "10.11.14", manual::MARIADB_GALERA_MINOR),
        ] {
            assert_allowed(&galera(from, to), PathKind::Upgrade, guide);
        }
        // In place, MariaDB upgrades from any earlier version; a rolling
        // Galera upgrade only one documented step at a time.
        assert!(mariadb("10.5.27", "10.11.14").allowed);
        let skip = galera("10.5.27", "10.11.14");
        assert!(!skip.allowed);
        assert_eq!(skip.manual, manual::MARIADB_GALERA_UPGRADING);
        assert!(
            skip.reason.contains("roll to 10.6 first"),
            "{}",
            skip.reason
        );
        assert!(!galera("10.6.20", "11.4.8").allowed);
        assert!(!galera("10.11.14", "11.8.3").allowed);
        // Downgrades, even within a series (the in-place rules allow that one).
        assert!(mariadb("10.11.14", "10.11.9").allowed);
        for (from, to) in [("10.11.14", "10.11.9"), ("10.11.14", "10.6.20")] {
            let down = galera(from, to);
            assert!(
                !down.allowed && down.kind == PathKind::Downgrade,
                "{from} -> {to}"
            );
        }
        assert!(galera("10.11.14", "10.11.14").allowed);
    }

    #[test]
    fn mariadb_downgrades_only_within_a_series() {
        assert_allowed(
            &mariadb("10.11.19", "10.11.6"),
            PathKind::Downgrade,
            manual::MARIADB_DOWNGRADING,
        );
        assert_refused(
            &mariadb("10.11.19", "10.6.21"),
            PathKind::Downgrade,
            manual::MARIADB_DOWNGRADING,
            &["across major versions", "backup"],
        );
        assert_refused(
            &mariadb("11.8.6", "10.11.19"),
            PathKind::Downgrade,
            manual::MARIADB_DOWNGRADING,
            &["change buffer"],
        );
        assert!(!mariadb("11.8.6", "11.4.5").reason.contains("change buffer"));
        assert_refused(
            &mariadb("10.6.21", "10.2.44"),
            PathKind::Downgrade,
            manual::MARIADB_DOWNGRADING,
            &["backup"],
        );
    }

    #[test]
    fn mariadb_unknown_series_are_errors() {
        let err = catalog()
            .check_in_place(Flavor::Mariadb, v("11.8.6"), v("13.0.0"))
            .unwrap_err();
        assert_eq!(err.category(), "unknown-series");
        assert_eq!(mariadb("11.8.6", "11.8.6").kind, PathKind::Same);
    }

    // --- Replication -------------------------------------------------------------------------

    fn replication(flavor: Flavor, source: &str, replica: &str) -> PathVerdict {
        catalog()
            .check_replication(flavor, v(source), v(replica))
            .unwrap()
    }

    #[test]
    fn replication_needs_the_same_or_a_newer_replica() {
        assert_allowed(
            &replication(Flavor::Mysql, "8.4.3", "8.4.3"),
            PathKind::Same,
            manual::MYSQL_REPLICATION,
        );
        assert_refused(
            &replication(Flavor::Mysql, "8.4.3", "8.4.1"),
            PathKind::Downgrade,
            manual::MYSQL_REPLICATION,
            &["older than its source"],
        );
        assert_refused(
            &replication(Flavor::Mariadb, "11.8.6", "10.11.19"),
            PathKind::Downgrade,
            manual::MARIADB_UPGRADING,
            &["same or a newer release"],
        );
    }

    #[test]
    fn mysql_replication_follows_the_upgrade_paths() {
        assert_allowed(
            &replication(Flavor::Mysql, "8.0.37", "8.4.3"),
            PathKind::Upgrade,
            manual::MYSQL_REPLICATION,
        );
        assert_allowed(
            &replication(Flavor::Mysql, "9.7.2", "26.7.0"),
            PathKind::Upgrade,
            manual::MYSQL_REPLICATION,
        );
        let verdict = replication(Flavor::Mysql, "8.0.37", "9.7.0");
        assert_refused(
            &verdict,
            PathKind::Upgrade,
            manual::MYSQL_REPLICATION,
            &["skip the 8.4 LTS series"],
        );
        assert_refused(
            &replication(Flavor::Mysql, "8.3.0", "9.1.0"),
            PathKind::Upgrade,
            manual::MYSQL_REPLICATION,
            &["8.4"],
        );
    }

    #[test]
    fn mariadb_replica_may_be_any_newer_version() {
        assert_allowed(
            &replication(Flavor::Mariadb, "10.5.27", "11.8.6"),
            PathKind::Upgrade,
            manual::MARIADB_UPGRADING,
        );
        assert!(
            catalog()
                .check_replication(Flavor::Mariadb, v("10.5.27"), v("14.0.0"))
                .is_err()
        );
    }

    #[test]
    fn dd_version_is_exposed_on_the_catalog() {
        assert_eq!(catalog().dd_version(Flavor::Mysql, v("8.4.3")), Some(80300));
        assert_eq!(
            catalog().dd_version(Flavor::Mysql, v("8.0.36")),
            Some(80023)
        );
        assert_eq!(catalog().dd_version(Flavor::Mariadb, v("10.11.19")), None);
    }

    #[test]
    fn reasons_are_single_lines() {
        let cat = catalog();
        for info in cat.entries() {
            for other in cat.entries().iter().filter(|o| o.flavor == info.flavor) {
                let (from, to) = (
                    info.first_ga(),
                    Version::new(other.series.major, other.series.minor, 40),
                );
                let verdict = cat.check_in_place(info.flavor, from, to).unwrap();
                assert!(!verdict.reason.contains('\n'), "{verdict:?}");
                assert!(!verdict.reason.is_empty() && !verdict.manual.is_empty());
                assert_eq!(verdict.kind, PathKind::between(from, to));
            }
        }
    }
}
