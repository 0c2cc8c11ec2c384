//! Helpers shared by the testbed's integration tests.

use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Asserts that no process has id `pid` any more.
pub fn assert_gone(pid: u32) {
    let pid = Pid::from_raw(i32::try_from(pid).unwrap());
    assert_eq!(
        kill(pid, None),
        Err(nix::errno::Errno::ESRCH),
        "process {pid} still exists"
    );
}
