//! `switchyard check-upgrade`: is an in-place version change supported?
//!
//! Exit 0 when the change is supported (downgrades the manual supports included), 2 when it is
//! refused (the reason and the manual section are printed), 64 for invalid input: an unknown
//! flavor or format, an unparsable version, or a series that is not in the release catalog.

use serde::Serialize;
use switchyard_plan::versions::{
    Flavor, PathKind, PathVerdict, ServerVersion, Version, VersionError, catalog,
};

use crate::exit::{self, Exit};

/// Arguments of `switchyard check-upgrade`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server product: mysql or mariadb.
    #[arg(long, value_name = "mysql|mariadb")]
    pub flavor: String,
    /// The version the data directory was written by (8.0.36, or as the server reports it: 10.11.19-MariaDB-log).
    #[arg(long, value_name = "VERSION")]
    pub from: String,
    /// The version to start on the data directory.
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// Output format: text or json.
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub format: String,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// The JSON answer, one object on one line.
#[derive(Serialize)]
struct Answer<'a> {
    flavor: Flavor,
    from: Version,
    to: Version,
    allowed: bool,
    kind: PathKind,
    reason: &'a str,
    manual: &'a str,
}

/// Runs `switchyard check-upgrade`.
pub fn run(args: Args) -> Exit {
    let format = match args.format.trim().to_ascii_lowercase().as_str() {
        "text" => Format::Text,
        "json" => Format::Json,
        _ => {
            return exit::invalid(format!(
                "unknown --format '{}': expected text or json",
                args.format
            ));
        }
    };
    let flavor: Flavor = match args.flavor.parse() {
        Ok(flavor) => flavor,
        Err(err) => return exit::invalid(format!("--flavor: {err}")),
    };
    let from = match version_arg("--from", &args.from, flavor) {
        Ok(v) => v,
        Err(message) => return exit::invalid(message),
    };
    let to = match version_arg("--to", &args.to, flavor) {
        Ok(v) => v,
        Err(message) => return exit::invalid(message),
    };
    let verdict = match catalog().check_in_place(flavor, from, to) {
        Ok(verdict) => verdict,
        Err(err) => return exit::invalid(err),
    };
    match format {
        Format::Text => print_text(flavor, from, to, &verdict),
        Format::Json => {
            let answer = Answer {
                flavor,
                from,
                to,
                allowed: verdict.allowed,
                kind: verdict.kind,
                reason: &verdict.reason,
                manual: verdict.manual,
            };
            match serde_json::to_string(&answer) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("error: cannot write the answer as JSON: {err}");
                    return Exit::Internal;
                }
            }
        }
    }
    if verdict.allowed {
        Exit::Ok
    } else {
        Exit::Refused
    }
}

/// Parses one version argument, as users or servers write it, and checks that it belongs to the
/// chosen flavor and to a series switchyard can reason about.
fn version_arg(flag: &str, text: &str, flavor: Flavor) -> Result<Version, String> {
    let reported = ServerVersion::parse_reported(text, Some(flavor))
        .map_err(|err| format!("{flag}: {err}"))?;
    if reported.flavor != flavor {
        return Err(format!(
            "{flag}: '{}' is a {} version, but --flavor is {flavor}",
            text.trim(),
            reported.flavor.product_name()
        ));
    }
    match catalog().series(flavor, reported.version) {
        // A series older than the catalog is still a valid question: the manuals answer a few of
        // those paths (5.7 to 8.0, any earlier MariaDB to a later one).
        Ok(_) | Err(VersionError::RetiredSeries { .. }) => Ok(reported.version),
        Err(err) => Err(format!("{flag}: {err}")),
    }
}

fn print_text(flavor: Flavor, from: Version, to: Version, verdict: &PathVerdict) {
    let answer = if verdict.allowed {
        "supported"
    } else {
        "refused"
    };
    println!(
        "{answer}: {} {from} -> {to} ({})",
        flavor.product_name(),
        verdict.kind
    );
    println!("reason: {}", verdict.reason);
    println!("manual: {}", verdict.manual);
}
