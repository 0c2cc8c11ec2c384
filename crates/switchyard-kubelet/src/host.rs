//! Host commands the kubelet runs (`ip`, `nsenter`, `unshare`, `mount`), the check that they
//! are there, and process helpers (liveness, signals, children) by pid.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The host programs the kubelet uses, with the Debian package shipping each. Nothing is
/// installed by the kubelet: iproute2 and util-linux are on every machine the project runs
/// on (`/work/.library/env/machines/rust.md`'s kind), and the check names the package when
/// one is missing.
const TOOLS: [(&str, &str); 9] = [
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("unshare", "util-linux"),
    ("mount", "mount"),
    ("sh", "dash"),
    ("cp", "coreutils"),
    ("mkdir", "coreutils"),
    ("ln", "coreutils"),
    ("ldd", "libc-bin"),
];

/// Checks that the kubelet runs as root and finds every host program it needs.
pub(crate) fn check_tools() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    for (program, package) in TOOLS {
        if find_in_path(program).is_none() {
            return Err(Error::MissingTool { program, package });
        }
    }
    Ok(())
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The `PATH` host commands run with (root's programs are in the `sbin` folders).
pub(crate) const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a host command to completion; its output on success, an error with the end of what
/// it printed otherwise.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .env("PATH", HOST_PATH)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            output: tail(&text, 600),
        })
    }
}

/// The last `max` bytes of `text` (on a character boundary), trimmed.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

fn pid(p: u32) -> Pid {
    Pid::from_raw(i32::try_from(p).unwrap_or(i32::MAX))
}

/// Sends `sig` to process `p`; false when it is gone.
pub(crate) fn signal(p: u32, sig: Signal) -> bool {
    signal::kill(pid(p), sig).is_ok()
}

/// Whether process `p` exists and is not a zombie.
pub(crate) fn alive(p: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{p}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits until every process of `pids` is gone or `bound` passed; whether they all are.
pub(crate) fn wait_gone(pids: &[u32], bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The children of process `p` (its main thread's), from `/proc`.
pub(crate) fn children(p: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{p}/task/{p}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes `dir` and everything under it; a missing directory is fine.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", dir)(e)),
    }
}

/// Removes everything inside `dir`, keeping `dir` itself. A process may still be writing in
/// it (a server whose disk is lost under it creates files while they are removed, so a
/// subdirectory is found not empty, or an entry already gone): the removal is done again, a
/// few milliseconds apart, until a pass finds nothing left, for at most [`EMPTY_PASSES`]
/// passes.
pub(crate) fn empty_dir(dir: &Path) -> Result<()> {
    let mut pass = 1;
    loop {
        match remove_entries(dir) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err((e, retry)) if !retry || pass >= EMPTY_PASSES => return Err(e),
            Err(_) => {}
        }
        if pass >= EMPTY_PASSES {
            return Err(Error::io("empty", dir)(std::io::Error::other(format!(
                "something kept writing in it through {EMPTY_PASSES} passes"
            ))));
        }
        pass += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// How many passes [`empty_dir`] makes at most.
const EMPTY_PASSES: u32 = 200;

/// One pass of [`empty_dir`]: how many entries it removed; an error says whether a writer in
/// the directory may explain it (another pass may succeed).
fn remove_entries(dir: &Path) -> std::result::Result<usize, (Error, bool)> {
    let racing = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
        )
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err((Error::io("read", dir)(e), false)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| (Error::io("read", dir)(e), false))?;
        let path = entry.path();
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) => {
                let retry = racing(&e);
                return Err((Error::io("stat", &path)(e), retry));
            }
        };
        let outcome = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match outcome {
            Ok(()) => removed += 1,
            Err(e) => {
                let retry = racing(&e);
                return Err((Error::io("remove", &path)(e), retry));
            }
        }
    }
    Ok(removed)
}

/// Quotes `s` for `sh` (single quotes).
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn tails_on_character_boundaries() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("  abc  ", 10), "abc");
    }

    /// A server whose disk is lost keeps creating files while they are removed: emptying
    /// the folder does not give up on a subdirectory found not empty (seen with MySQL 9.7
    /// just after its start), and leaves nothing once the writer stopped.
    #[test]
    fn empties_a_folder_a_process_still_writes_in() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        use std::time::{Duration, Instant};
        let dir =
            std::env::temp_dir().join(format!("switchyard-kubelet-empty-{}", std::process::id()));
        let sub = dir.join("data").join("db");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(dir.join("top"), b"x").unwrap();
        // The writer goes on for 50 ms once the removal started, unless its folder is gone.
        let (written, removing) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let writer = {
            let (sub, written, removing) = (sub.clone(), written.clone(), removing.clone());
            std::thread::spawn(move || {
                let mut since: Option<Instant> = None;
                for n in 0.. {
                    if removing.load(Ordering::SeqCst) {
                        let t = *since.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_millis(50) {
                            break;
                        }
                    }
                    if std::fs::write(sub.join(format!("f{n}")), b"x").is_err() {
                        break;
                    }
                    written.store(n + 1, Ordering::SeqCst);
                }
            })
        };
        while written.load(Ordering::SeqCst) < 1_000 {
            std::thread::yield_now();
        }
        removing.store(true, Ordering::SeqCst);
        let emptied = empty_dir(&dir);
        writer.join().unwrap();
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        remove_dir(&dir).unwrap();
        let written = written.load(Ordering::SeqCst);
        emptied.unwrap_or_else(|e| panic!("emptied while {written} files were written: {e}"));
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn sees_its_own_process_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
