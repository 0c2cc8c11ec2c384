//! `agent install --to DIR`: copies the running binary with its own dynamic loader and every
//! shared library it needs, so that
//! `DIR/lib/<loader> --library-path DIR/lib DIR/bin/switchyard agent run` runs on whatever C
//! library the database image has (the official `mysql` image's is older than Debian's).
//!
//! The binary's ELF headers are read (with the `object` crate): `PT_INTERP` names the loader,
//! `DT_NEEDED` the libraries. Each library is resolved as the loader would without a cache:
//! the binary's `DT_RPATH` (when it has no `DT_RUNPATH`) or `DT_RUNPATH` (`$ORIGIN`
//! expanded), then the directories of `/etc/ld.so.conf` (and its `include`s), then the
//! default directories; a candidate counts only if it is an ELF file of the binary's class
//! and machine. Libraries' own `DT_NEEDED` are followed until nothing new is needed. Every
//! file is written next to its final name and renamed into place, so a half-copied file
//! never has the final name.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _};
use object::{Endianness, FileKind};

use crate::error::{Error, Result};

/// What was installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The copied binary (`DIR/bin/switchyard`).
    pub binary: PathBuf,
    /// The copied loader (`DIR/lib/ld-linux-x86-64.so.2`), if the binary has one.
    pub loader: Option<PathBuf>,
    /// The copied libraries, by the name the binary or a library asks for.
    pub libraries: Vec<PathBuf>,
}

impl Installed {
    /// The command that runs the installed copy (before its arguments).
    pub fn command(&self) -> Vec<String> {
        let lib_dir = self
            .binary
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("lib"))
            .unwrap_or_default();
        match &self.loader {
            Some(loader) => vec![
                loader.display().to_string(),
                "--library-path".into(),
                lib_dir.display().to_string(),
                self.binary.display().to_string(),
            ],
            None => vec![self.binary.display().to_string()],
        }
    }
}

/// The dynamic-linking facts of one ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfDeps {
    /// `PT_INTERP`.
    pub interpreter: Option<PathBuf>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` entries.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries.
    pub runpath: Vec<String>,
    /// `e_machine`.
    pub machine: u16,
}

/// Reads the dynamic-linking facts of a 64-bit ELF file.
///
/// # Errors
/// [`Error::Install`] for a file that is not a 64-bit ELF file.
pub fn read_elf(path: &Path) -> Result<ElfDeps> {
    let data = std::fs::read(path).map_err(Error::io("read", path))?;
    parse_elf(&data).map_err(|e| Error::Install {
        detail: format!("{}: {e}", path.display()),
    })
}

fn parse_elf(data: &[u8]) -> Result<ElfDeps, String> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => {}
        Ok(other) => return Err(format!("not a 64-bit ELF file ({other:?})")),
        Err(e) => return Err(format!("not an ELF file ({e})")),
    }
    let file = ElfFile64::<Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = file.endian();
    let mut deps = ElfDeps {
        machine: file.elf_header().e_machine(endian),
        ..ElfDeps::default()
    };
    for ph in file.elf_program_headers() {
        if let Some(interp) = ph.interpreter(endian, data).map_err(|e| e.to_string())? {
            deps.interpreter = Some(PathBuf::from(String::from_utf8_lossy(interp).into_owned()));
        }
    }
    let dynamic = file.elf_dynamic_table().map_err(|e| e.to_string())?;
    for d in &dynamic {
        let tag = d.tag;
        let wanted = matches!(tag, elf::DT_NEEDED | elf::DT_RPATH | elf::DT_RUNPATH);
        if !wanted {
            continue;
        }
        let value =
            String::from_utf8_lossy(dynamic.string(d).map_err(|e| e.to_string())?).into_owned();
        match tag {
            elf::DT_NEEDED => deps.needed.push(value),
            elf::DT_RPATH => deps.rpath.extend(value.split(':').map(str::to_owned)),
            _ => deps.runpath.extend(value.split(':').map(str::to_owned)),
        }
    }
    Ok(deps)
}

/// The directories of `/etc/ld.so.conf` (following `include` globs of the form
/// `dir/*.conf`) under `root`, then the default ones.
pub fn search_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_ld_conf(root, &root.join("etc/ld.so.conf"), &mut dirs, 0);
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        let p = PathBuf::from(d);
        if !dirs.contains(&p) {
            dirs.push(p);
        }
    }
    dirs
}

fn read_ld_conf(root: &Path, file: &Path, dirs: &mut Vec<PathBuf>, depth: u32) {
    if depth > 8 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line.strip_prefix("include") {
            let pattern = pattern.trim();
            let pattern = if pattern.starts_with('/') {
                PathBuf::from(pattern)
            } else {
                file.parent().unwrap_or(Path::new("/")).join(pattern)
            };
            let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
            let dir_in_root = root.join(dir.strip_prefix("/").unwrap_or(dir));
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir_in_root)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| {
                            p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                                n.starts_with(prefix)
                                    && n.ends_with(suffix)
                                    && n.len() >= prefix.len() + suffix.len()
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                read_ld_conf(root, &f, dirs, depth + 1);
            }
        } else {
            let p = PathBuf::from(line);
            if p.is_absolute() && !dirs.contains(&p) {
                dirs.push(p);
            }
        }
    }
}

/// Resolves `name` (a `DT_NEEDED` entry) for an object of `machine` in `origin`'s directory.
fn resolve(
    name: &str,
    deps: &ElfDeps,
    origin: &Path,
    dirs: &[PathBuf],
    machine: u16,
) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_loadable(&p, machine).then_some(p);
    }
    let expand = |entry: &String| {
        PathBuf::from(
            entry
                .replace("$ORIGIN", &origin.display().to_string())
                .replace("${ORIGIN}", &origin.display().to_string()),
        )
    };
    let first: Vec<PathBuf> = if deps.runpath.is_empty() {
        deps.rpath.iter().map(expand).collect()
    } else {
        deps.runpath.iter().map(expand).collect()
    };
    first
        .iter()
        .chain(dirs.iter())
        .map(|d| d.join(name))
        .find(|p| is_loadable(p, machine))
}

fn is_loadable(path: &Path, machine: u16) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    if !matches!(FileKind::parse(&*data), Ok(FileKind::Elf64)) {
        return false;
    }
    elf::FileHeader64::<Endianness>::parse(&*data)
        .ok()
        .and_then(|h| h.endian().ok().map(|e| h.e_machine(e)))
        == Some(machine)
}

/// Every library `binary` needs, transitively: (name asked for, file found), in the order
/// found.
///
/// # Errors
/// [`Error::Install`] naming a library that cannot be found.
pub fn closure(binary: &Path) -> Result<(ElfDeps, Vec<(String, PathBuf)>)> {
    let top = read_elf(binary)?;
    let dirs = search_dirs(Path::new("/"));
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut order = Vec::new();
    let mut queue: VecDeque<(String, ElfDeps, PathBuf)> = top
        .needed
        .iter()
        .map(|n| {
            (
                n.clone(),
                top.clone(),
                binary.parent().unwrap_or(Path::new("/")).to_path_buf(),
            )
        })
        .collect();
    while let Some((name, parent, origin)) = queue.pop_front() {
        if found.contains_key(&name) {
            continue;
        }
        let path =
            resolve(&name, &parent, &origin, &dirs, top.machine).ok_or_else(|| Error::Install {
                detail: format!(
                    "{} needs {name}, which is in none of: {}",
                    binary.display(),
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let deps = read_elf(&path)?;
        let lib_origin = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        for next in &deps.needed {
            if !found.contains_key(next) {
                queue.push_back((next.clone(), deps.clone(), lib_origin.clone()));
            }
        }
        found.insert(name.clone(), path.clone());
        order.push((name, path));
    }
    Ok((top, order))
}

/// Copies `from` to `to` through a temporary name, with `mode`.
fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = to.with_file_name(format!(
        ".{}.tmp",
        to.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::copy(from, &tmp).map_err(Error::io("copy to", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io("chmod", &tmp))?;
    std::fs::rename(&tmp, to).map_err(Error::io("rename into place", to))
}

/// Installs `binary` (normally `/proc/self/exe`) with its loader and libraries into `to`.
///
/// # Errors
/// [`Error::Install`] when the binary is the loader itself (run `agent install` from the
/// binary, not through a loader) or a library cannot be found; [`Error::Io`].
pub fn install(binary: &Path, to: &Path) -> Result<Installed> {
    let real = binary
        .canonicalize()
        .map_err(Error::io("resolve", binary))?;
    let (deps, libraries) = closure(&real)?;
    if deps.interpreter.is_none()
        && real
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
    {
        return Err(Error::Install {
            detail: format!(
                "{} is a dynamic loader: run `switchyard agent install` as the binary itself, not through a loader",
                real.display()
            ),
        });
    }
    let bin_dir = to.join("bin");
    let lib_dir = to.join("lib");
    for d in [&bin_dir, &lib_dir] {
        std::fs::create_dir_all(d).map_err(Error::io("create directory", d))?;
    }
    let mut installed = Installed {
        binary: bin_dir.join("switchyard"),
        loader: None,
        libraries: Vec::new(),
    };
    let loader_name = deps
        .interpreter
        .as_ref()
        .and_then(|i| i.file_name())
        .map(|n| n.to_owned());
    for (name, path) in &libraries {
        // libc asks for the loader by name: it is copied below, as the loader.
        if loader_name.as_deref() == Some(std::ffi::OsStr::new(name)) {
            continue;
        }
        let dest = lib_dir.join(Path::new(name).file_name().unwrap_or_default());
        copy_file(path, &dest, 0o644)?;
        installed.libraries.push(dest);
    }
    if let Some(interp) = &deps.interpreter {
        let name = interp.file_name().ok_or_else(|| Error::Install {
            detail: format!("the loader path {} has no file name", interp.display()),
        })?;
        let dest = lib_dir.join(name);
        copy_file(interp, &dest, 0o755)?;
        installed.loader = Some(dest);
    }
    copy_file(&real, &installed.binary, 0o755)?;
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the system's loader itself resolves (`ld.so --list`, what `ldd` runs).
    fn loader_list(binary: &Path, loader: &Path) -> Vec<(String, PathBuf)> {
        let out = std::process::Command::new(loader)
            .arg("--list")
            .arg(binary)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.trim().split_once(" => ")?;
                let path = rest.split(" (").next()?.trim();
                (!path.is_empty()).then(|| (name.to_owned(), PathBuf::from(path)))
            })
            .collect()
    }

    #[test]
    fn resolves_what_the_loader_resolves() {
        // The test binary itself: a dynamically linked executable like switchyard.
        let me = std::env::current_exe().unwrap();
        let (deps, libs) = closure(&me).unwrap();
        let loader = deps.interpreter.clone().expect("a PT_INTERP");
        assert_eq!(deps.machine, elf::EM_X86_64);
        let loader_name = loader.file_name().unwrap().to_string_lossy().into_owned();
        let mut ours: Vec<(String, PathBuf)> = libs
            .iter()
            // The loader lists itself apart (no `=>`).
            .filter(|(n, _)| *n != loader_name)
            .map(|(n, p)| (n.clone(), p.canonicalize().unwrap()))
            .collect();
        let mut theirs: Vec<(String, PathBuf)> = loader_list(&me, &loader)
            .into_iter()
            .map(|(n, p)| (n, p.canonicalize().unwrap()))
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert!(
            libs.iter().any(|(n, _)| n.starts_with("libc.so")),
            "{libs:?}"
        );
    }

    #[test]
    fn the_installed_copy_runs_through_its_own_loader() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        let installed = install(&me, dir.path()).unwrap();
        let loader = installed.loader.clone().unwrap();
        assert_eq!(loader.parent().unwrap(), dir.path().join("lib"));
        for lib in &installed.libraries {
            assert!(lib.starts_with(dir.path().join("lib")), "{lib:?}");
        }
        // The copy lists its tests through the copied loader and libraries only.
        let cmd = installed.command();
        let out = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .arg("--list")
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("the_installed_copy_runs_through_its_own_loader"),
            "{out:?}"
        );
        // Every library resolves inside the copy: one left out would be found in the
        // host's directories here, but not in a foreign root.
        let out = std::process::Command::new(&cmd[0])
            .arg("--list")
            .args(&cmd[1..])
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let resolved: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_once(" => ").map(|(_, to)| to.trim()))
            .collect();
        assert!(!resolved.is_empty(), "{listing}");
        let lib_dir = dir.path().join("lib").display().to_string();
        for to in resolved {
            assert!(
                to.starts_with(&lib_dir),
                "resolved outside the copy: {listing}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_elf_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        let e = read_elf(&p).unwrap_err();
        assert!(e.to_string().contains("not an ELF"), "{e}");
    }

    #[test]
    fn ld_so_conf_includes_are_followed() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        std::fs::write(
            etc.join("ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n/opt/lib # mine\n",
        )
        .unwrap();
        std::fs::write(etc.join("ld.so.conf.d/a.conf"), "/a/lib\n").unwrap();
        std::fs::write(etc.join("ld.so.conf.d/b.txt"), "/b/lib\n").unwrap();
        let dirs = search_dirs(root.path());
        assert_eq!(
            &dirs[..2],
            &[PathBuf::from("/a/lib"), PathBuf::from("/opt/lib")]
        );
        assert!(!dirs.contains(&PathBuf::from("/b/lib")));
        assert!(dirs.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu")));
    }
}
