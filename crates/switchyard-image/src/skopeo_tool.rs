//! Debian's `skopeo`, to inspect and copy image archives the way a container tool reads
//! them: fetched with its dependencies from the base's suite by the testbed's machinery and
//! run through that suite's own loader, so nothing is installed on the machine.

use std::path::Path;
use std::process::Command;

use switchyard_testbed::packages::{PackageRoot, package_root};

use crate::base::SUITE;
use crate::error::{Error, Result};

/// An unpacked `skopeo`.
#[derive(Clone, Debug)]
pub struct Skopeo {
    root: PackageRoot,
}

/// Fetches (or finds in the testbed's cache) Debian's `skopeo`.
///
/// # Errors
/// [`Error::Fetch`] when apt or the mirror fails.
pub fn skopeo() -> Result<Skopeo> {
    let root = package_root("skopeo", SUITE, &["skopeo"]).map_err(|source| Error::Fetch {
        what: "skopeo",
        source: Box::new(source),
    })?;
    Ok(Skopeo { root })
}

impl Skopeo {
    /// The version of the `skopeo` package, as Debian numbers it.
    pub fn version(&self) -> &str {
        self.root
            .packages()
            .iter()
            .find(|(name, _)| name == "skopeo")
            .map_or("unknown", |(_, v)| v.as_str())
    }

    /// A `skopeo` command that keeps its temporary files (an `oci-archive:` is unpacked
    /// before it is read) in `tmp`.
    ///
    /// # Errors
    /// [`Error::Fetch`] when the root lacks the program or its loader.
    pub fn command(&self, tmp: &Path) -> Result<Command> {
        let mut cmd = self
            .root
            .command("usr/bin/skopeo")
            .map_err(|source| Error::Fetch {
                what: "skopeo",
                source: Box::new(source),
            })?;
        cmd.arg("--tmpdir").arg(tmp).env("TMPDIR", tmp);
        Ok(cmd)
    }
}
