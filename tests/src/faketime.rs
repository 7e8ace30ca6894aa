//! Moving a process's wall clock from outside, with libfaketime (Debian's `libfaketime`): the
//! process under test reads the time from a file the test writes, so schedule windows and
//! recurring deltas are tested without waiting for hours and without any hook in the product.

use std::path::{Path, PathBuf};

/// Where Debian installs the multi-threaded libfaketime.
const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The library, or a panic saying how to install it.
fn library() -> PathBuf {
    let path = PathBuf::from(LIBRARY);
    assert!(
        path.exists(),
        "{LIBRARY} is missing: install Debian's libfaketime (scripts/deps does)"
    );
    path
}

/// The environment that makes a process take its wall clock (`CLOCK_REALTIME`) from `file`,
/// which holds `YYYY-MM-DD HH:MM:SS` (UTC) and is read again at every call: the clock stands
/// still at that time until the file changes. Monotonic clocks (timers, timeouts) stay real.
pub fn faketime_env(file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), library().display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("TZ".into(), "UTC".into()),
    ]
}
