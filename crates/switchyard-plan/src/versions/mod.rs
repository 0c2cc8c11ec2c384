//! Server versions, the release catalog, and the vendors' upgrade, downgrade and replication rules.
//!
//! - [`Version`] and [`ServerVersion`] parse what users write (`8.4.3`, `26.7.0`) and what
//!   servers report (`10.11.19-MariaDB-0+deb12u1-log`, the `5.5.5-` handshake prefix).
//! - [`Catalog`] records every release series switchyard knows, with its [`Track`] and, for
//!   MySQL, its compatibility lineage. A series that is not in the catalog is refused with
//!   [`VersionError::UnknownSeries`]: switchyard never guesses the rules for a release it does not
//!   know. [`catalog()`] is the built-in catalog; new releases are added in `catalog.rs`.
//! - [`Catalog::check_in_place`] and [`Catalog::check_replication`] answer whether a version
//!   change or a replication pair is supported, with a reason and the manual section each rule
//!   encodes ([`PathVerdict`]).
//! - [`Catalog::dd_version`] gives the MySQL data-dictionary version of a release, from the
//!   history in the server's `sql/dd/dd_version.h`, used to explain refusals.

mod catalog;
mod dd;
mod rules;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use catalog::{Catalog, SeriesInfo, Track, catalog};
pub use rules::{PathKind, PathVerdict, manual};

/// The server product a version belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Oracle MySQL.
    Mysql,
    /// MariaDB Server.
    Mariadb,
}

impl Flavor {
    /// Every flavor, in a fixed order.
    pub const ALL: [Flavor; 2] = [Flavor::Mysql, Flavor::Mariadb];

    /// The lowercase name used on the command line and in JSON (`mysql`, `mariadb`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::Mariadb => "mariadb",
        }
    }

    /// The product name as the vendor writes it (`MySQL`, `MariaDB`), for messages.
    pub const fn product_name(self) -> &'static str {
        match self {
            Flavor::Mysql => "MySQL",
            Flavor::Mariadb => "MariaDB",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = VersionError;

    /// Accepts `mysql` or `mariadb` in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        Flavor::ALL
            .into_iter()
            .find(|flavor| flavor.as_str().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| VersionError::UnknownFlavor {
                input: s.to_owned(),
            })
    }
}

/// A release number `major.minor.patch`, such as `8.4.3`, `11.8.6` or the calendar version
/// `26.7.0`.
///
/// Ordering is numeric, component by component. Display is `X.Y.Z`; serde reads and writes the
/// same string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// The major number (`8` in `8.4.3`; the two-digit year in a calendar version).
    pub major: u16,
    /// The minor number (`4` in `8.4.3`; the month in a calendar version).
    pub minor: u16,
    /// The patch number (`3` in `8.4.3`).
    pub patch: u16,
}

/// The handshake prefix MariaDB puts before its real version so that old MySQL clients accept it.
const MARIADB_HANDSHAKE_PREFIX: &str = "5.5.5-";

impl Version {
    /// A version from its three numbers.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses a version as users write it (`8.0.36`, `26.7.0`) or as servers report it
    /// (`8.4.3-log`, `11.8.6-MariaDB`, `10.11.19-MariaDB-0+deb12u1-log`, and the MariaDB
    /// handshake form `5.5.5-10.11.19-MariaDB`, whose prefix is dropped).
    ///
    /// Exactly three dot-separated decimal numbers are required; anything after them must start
    /// with `-` or `+` (a server or build suffix). Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        parse_parts(s).map(|parsed| parsed.version)
    }

    /// The release series (`major.minor`) this version belongs to.
    pub const fn series(&self) -> Series {
        Series {
            major: self.major,
            minor: self.minor,
        }
    }

    /// True for MySQL calendar versions (`YY.M.P`, from 26.7.0 on).
    pub const fn is_calendar(&self) -> bool {
        self.major >= 26
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A release series, `major.minor` (`8.4`, `10.11`, `26.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    /// The major number.
    pub major: u16,
    /// The minor number.
    pub minor: u16,
}

impl Series {
    /// A series from its two numbers.
    pub const fn new(major: u16, minor: u16) -> Self {
        Series { major, minor }
    }

    /// The first release of the series (`X.Y.0`).
    pub const fn first_release(&self) -> Version {
        Version::new(self.major, self.minor, 0)
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A version together with the product it is a version of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerVersion {
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// The release number.
    pub version: Version,
}

impl ServerVersion {
    /// A server version from its parts.
    pub const fn new(flavor: Flavor, version: Version) -> Self {
        ServerVersion { flavor, version }
    }

    /// Parses what a server reports (`SELECT VERSION()` or the handshake). `-MariaDB` anywhere in
    /// the suffix or the 5.5.5- prefix means MariaDB; otherwise `hint` decides, and with no hint
    /// MySQL.
    ///
    /// What the server wrote wins over the hint: a `-MariaDB` suffix is MariaDB even when the
    /// hint says MySQL.
    pub fn parse_reported(s: &str, hint: Option<Flavor>) -> Result<Self, VersionError> {
        let parsed = parse_parts(s)?;
        let says_mariadb =
            parsed.handshake_prefix || parsed.suffix.to_ascii_lowercase().contains("mariadb");
        let flavor = if says_mariadb {
            Flavor::Mariadb
        } else {
            hint.unwrap_or(Flavor::Mysql)
        };
        Ok(ServerVersion {
            flavor,
            version: parsed.version,
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.flavor.product_name(), self.version)
    }
}

/// Why a version, flavor or release could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The version string was empty.
    #[error("the version is empty: give three numbers such as 8.4.3 or 10.11.19")]
    Empty,
    /// Fewer than three numbers (`8`, `8.0`).
    #[error(
        "'{input}' has {found} of the three version numbers: give major.minor.patch, such as 8.0.36"
    )]
    MissingComponents {
        /// What was given.
        input: String,
        /// How many numbers were found.
        found: usize,
    },
    /// More than three numbers (`8.0.36.1`).
    #[error(
        "'{input}' has more than three version numbers: give major.minor.patch, such as 8.0.36"
    )]
    ExtraComponents {
        /// What was given.
        input: String,
    },
    /// A component is not a decimal number (`x.y.z`, `8.0.36a`).
    #[error(
        "the {component} number of '{input}' is not a decimal number: give major.minor.patch, such as 8.0.36"
    )]
    NotNumeric {
        /// What was given.
        input: String,
        /// Which component: `major`, `minor` or `patch`.
        component: &'static str,
    },
    /// A component does not fit in 16 bits.
    #[error("the {component} number of '{input}' is too large (at most 65535)")]
    OutOfRange {
        /// What was given.
        input: String,
        /// Which component: `major`, `minor` or `patch`.
        component: &'static str,
    },
    /// The flavor is neither MySQL nor MariaDB.
    #[error("unknown flavor '{input}': expected mysql or mariadb")]
    UnknownFlavor {
        /// What was given.
        input: String,
    },
    /// The series is not in switchyard's release catalog.
    #[error(
        "{} {series} is not in switchyard's release catalog, so switchyard refuses to guess its upgrade rules; \
         check the version, or add the series to the catalog (crates/switchyard-plan/src/versions/catalog.rs) \
         once the vendor documents its track",
        .flavor.product_name()
    )]
    UnknownSeries {
        /// The product.
        flavor: Flavor,
        /// The series that is not in the catalog.
        series: Series,
    },
    /// The series is real but older than the oldest series switchyard manages.
    #[error(
        "{} {series} is older than switchyard's release catalog, which starts at {oldest}; \
         upgrade it to {oldest} with the vendor's procedure before managing it with switchyard",
        .flavor.product_name()
    )]
    RetiredSeries {
        /// The product.
        flavor: Flavor,
        /// The retired series.
        series: Series,
        /// The oldest series in the catalog.
        oldest: Series,
    },
    /// A development or release-candidate build of a series, before its first GA release.
    #[error(
        "{} {version} is a pre-GA development release of {}; upgrades are supported only between GA releases, \
         the first of which is {first_ga}",
        .flavor.product_name(),
        .version.series()
    )]
    PreGaRelease {
        /// The product.
        flavor: Flavor,
        /// The pre-GA version.
        version: Version,
        /// The first GA release of the series.
        first_ga: Version,
    },
}

impl VersionError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            VersionError::Empty => "version-empty",
            VersionError::MissingComponents { .. } => "version-missing-components",
            VersionError::ExtraComponents { .. } => "version-extra-components",
            VersionError::NotNumeric { .. } => "version-not-numeric",
            VersionError::OutOfRange { .. } => "version-out-of-range",
            VersionError::UnknownFlavor { .. } => "unknown-flavor",
            VersionError::UnknownSeries { .. } => "unknown-series",
            VersionError::RetiredSeries { .. } => "retired-series",
            VersionError::PreGaRelease { .. } => "pre-ga-release",
        }
    }
}

/// A parsed version plus what surrounded it, for flavor detection.
struct Parsed<'a> {
    version: Version,
    suffix: &'a str,
    handshake_prefix: bool,
}

const COMPONENTS: [&str; 3] = ["major", "minor", "patch"];

fn parse_parts(input: &str) -> Result<Parsed<'_>, VersionError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(VersionError::Empty);
    }
    let (body, handshake_prefix) = match trimmed.strip_prefix(MARIADB_HANDSHAKE_PREFIX) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => (rest, true),
        _ => (trimmed, false),
    };
    let core_end = body.find(['-', '+']).unwrap_or(body.len());
    let (core, suffix) = body.split_at(core_end);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > COMPONENTS.len() {
        return Err(VersionError::ExtraComponents {
            input: input.to_owned(),
        });
    }
    let mut numbers = [0u16; 3];
    for (index, part) in parts.iter().enumerate() {
        let component = COMPONENTS[index];
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VersionError::NotNumeric {
                input: input.to_owned(),
                component,
            });
        }
        numbers[index] = part.parse().map_err(|_| VersionError::OutOfRange {
            input: input.to_owned(),
            component,
        })?;
    }
    if parts.len() < COMPONENTS.len() {
        return Err(VersionError::MissingComponents {
            input: input.to_owned(),
            found: parts.len(),
        });
    }
    Ok(Parsed {
        version: Version::new(numbers[0], numbers[1], numbers[2]),
        suffix,
        handshake_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16, patch: u16) -> Version {
        Version::new(major, minor, patch)
    }

    #[test]
    fn parses_plain_and_calendar_versions() {
        assert_eq!(Version::parse("8.0.36"), Ok(v(8, 0, 36)));
        assert_eq!(Version::parse("9.7.4"), Ok(v(9, 7, 4)));
        assert_eq!(Version::parse("26.7.0"), Ok(v(26, 7, 0)));
        assert_eq!(Version::parse("  10.11.19 \n"), Ok(v(10, 11, 19)));
        assert!(v(26, 7, 0).is_calendar());
        assert!(!v(9, 7, 4).is_calendar());
    }

    #[test]
    fn parses_what_servers_report() {
        assert_eq!(
            Version::parse("10.11.19-MariaDB-0+deb12u1-log"),
            Ok(v(10, 11, 19))
        );
        assert_eq!(Version::parse("11.8.6-MariaDB"), Ok(v(11, 8, 6)));
        assert_eq!(Version::parse("5.5.5-10.11.19-MariaDB"), Ok(v(10, 11, 19)));
        assert_eq!(Version::parse("8.4.3-log"), Ok(v(8, 4, 3)));
        assert_eq!(Version::parse("8.0.36-0ubuntu0.22.04.1"), Ok(v(8, 0, 36)));
        assert_eq!(Version::parse("9.7.0+build.1"), Ok(v(9, 7, 0)));
        // Not the handshake prefix: 5.5.5 followed by a non-version suffix stays 5.5.5.
        assert_eq!(Version::parse("5.5.5-log"), Ok(v(5, 5, 5)));
    }

    #[test]
    fn rejects_malformed_versions_with_the_right_error() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert_eq!(Version::parse("   "), Err(VersionError::Empty));
        assert!(matches!(
            Version::parse("8"),
            Err(VersionError::MissingComponents { found: 1, .. })
        ));
        assert!(matches!(
            Version::parse("8.0"),
            Err(VersionError::MissingComponents { found: 2, .. })
        ));
        assert!(matches!(
            Version::parse("8.0.36.1"),
            Err(VersionError::ExtraComponents { .. })
        ));
        assert!(matches!(
            Version::parse("x.y.z"),
            Err(VersionError::NotNumeric {
                component: "major",
                ..
            })
        ));
        assert!(matches!(
            Version::parse("8.0.36a"),
            Err(VersionError::NotNumeric {
                component: "patch",
                ..
            })
        ));
        assert!(matches!(
            Version::parse("8..36"),
            Err(VersionError::NotNumeric {
                component: "minor",
                ..
            })
        ));
        assert!(matches!(
            Version::parse("-8.0.36"),
            Err(VersionError::NotNumeric {
                component: "major",
                ..
            })
        ));
        assert!(matches!(
            Version::parse("8.0.70000"),
            Err(VersionError::OutOfRange {
                component: "patch",
                ..
            })
        ));
        assert!(matches!(
            Version::parse("99999999999999999999.0.0"),
            Err(VersionError::OutOfRange {
                component: "major",
                ..
            })
        ));
    }

    #[test]
    fn error_messages_name_the_input_and_the_expected_shape() {
        let message = Version::parse("8.0").unwrap_err().to_string();
        assert!(
            message.contains("'8.0'") && message.contains("major.minor.patch"),
            "{message}"
        );
        let message = Version::parse("x.y.z").unwrap_err().to_string();
        assert!(
            message.contains("'x.y.z'") && message.contains("major"),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn displays_and_orders_numerically() {
        assert_eq!(v(8, 4, 3).to_string(), "8.4.3");
        assert_eq!(v(8, 4, 3).series().to_string(), "8.4");
        assert!(v(8, 0, 9) < v(8, 0, 10));
        assert!(v(9, 7, 9) < v(26, 7, 0));
        assert!(v(10, 9, 0) < v(10, 11, 0));
        assert!(Series::new(10, 9) < Series::new(10, 11));
    }

    #[test]
    fn version_serializes_as_a_string_and_round_trips() {
        let json = serde_json::to_string(&v(10, 11, 19)).unwrap();
        assert_eq!(json, "\"10.11.19\"");
        assert_eq!(
            serde_json::from_str::<Version>(&json).unwrap(),
            v(10, 11, 19)
        );
        let err = serde_json::from_str::<Version>("\"8.0\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("major.minor.patch"), "{err}");
        let server = ServerVersion::new(Flavor::Mariadb, v(11, 8, 6));
        let json = serde_json::to_string(&server).unwrap();
        assert_eq!(json, r#"{"flavor":"mariadb","version":"11.8.6"}"#);
        assert_eq!(
            serde_json::from_str::<ServerVersion>(&json).unwrap(),
            server
        );
    }

    #[test]
    fn flavor_parses_case_insensitively_and_names_accepted_values() {
        assert_eq!("mysql".parse::<Flavor>(), Ok(Flavor::Mysql));
        assert_eq!("MariaDB".parse::<Flavor>(), Ok(Flavor::Mariadb));
        assert_eq!("MYSQL".parse::<Flavor>(), Ok(Flavor::Mysql));
        let err = "postgres".parse::<Flavor>().unwrap_err();
        assert_eq!(err.category(), "unknown-flavor");
        assert_eq!(
            err.to_string(),
            "unknown flavor 'postgres': expected mysql or mariadb"
        );
        assert_eq!(Flavor::Mariadb.to_string(), "mariadb");
        assert_eq!(serde_json::to_string(&Flavor::Mysql).unwrap(), "\"mysql\"");
    }

    #[test]
    fn reported_versions_detect_mariadb_from_the_text() {
        let reported =
            ServerVersion::parse_reported("10.11.19-MariaDB-0+deb12u1-log", None).unwrap();
        assert_eq!(reported, ServerVersion::new(Flavor::Mariadb, v(10, 11, 19)));
        // The handshake prefix alone says MariaDB.
        let reported = ServerVersion::parse_reported("5.5.5-10.6.21", None).unwrap();
        assert_eq!(reported, ServerVersion::new(Flavor::Mariadb, v(10, 6, 21)));
        // The server's own words beat a wrong hint.
        let reported =
            ServerVersion::parse_reported("11.8.6-MariaDB", Some(Flavor::Mysql)).unwrap();
        assert_eq!(reported.flavor, Flavor::Mariadb);
        // Without MariaDB markers the hint decides, and no hint means MySQL.
        let reported = ServerVersion::parse_reported("10.11.19", Some(Flavor::Mariadb)).unwrap();
        assert_eq!(reported.flavor, Flavor::Mariadb);
        let reported = ServerVersion::parse_reported("8.4.3-log", None).unwrap();
        assert_eq!(reported, ServerVersion::new(Flavor::Mysql, v(8, 4, 3)));
        assert_eq!(reported.to_string(), "MySQL 8.4.3");
        assert!(ServerVersion::parse_reported("garbage", None).is_err());
    }

    #[test]
    fn every_error_has_a_distinct_category() {
        let errors = [
            VersionError::Empty,
            Version::parse("8").unwrap_err(),
            Version::parse("8.0.0.0").unwrap_err(),
            Version::parse("a.0.0").unwrap_err(),
            Version::parse("8.0.99999").unwrap_err(),
            "x".parse::<Flavor>().unwrap_err(),
            VersionError::UnknownSeries {
                flavor: Flavor::Mysql,
                series: Series::new(10, 0),
            },
            VersionError::RetiredSeries {
                flavor: Flavor::Mysql,
                series: Series::new(5, 7),
                oldest: Series::new(8, 0),
            },
            VersionError::PreGaRelease {
                flavor: Flavor::Mysql,
                version: v(8, 0, 4),
                first_ga: v(8, 0, 11),
            },
        ];
        let mut categories: Vec<&str> = errors.iter().map(VersionError::category).collect();
        categories.sort_unstable();
        categories.dedup();
        assert_eq!(categories.len(), errors.len());
    }
}
