//! Starting programs the tests copied moments before.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Spawns `cmd`, retrying while the kernel says the executable is busy: a file just copied may
/// still be open for writing in a child another thread forked before its exec (ETXTBSY), for a
/// moment.
pub fn spawn_copied(cmd: &mut Command) -> std::io::Result<Child> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
