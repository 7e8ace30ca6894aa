//! Servers the tests run from Debian packages unpacked beside the build instead of installed
//! (Courier-IMAP and Cyrus IMAP conflict with `dovecot-imapd`), and what their test beds share:
//! the unpack (`scripts/testbeds`, run once under a lock), the library path, a process group
//! that stops as one, and the wait for the first greeting.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// The workspace's root (the test crate lives in `tests/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the packages are unpacked: `$MIGRATED_TESTBEDS`, else `target/testbeds` of the
/// workspace (what `scripts/testbeds` uses by default).
pub fn testbeds_dir() -> PathBuf {
    std::env::var_os("MIGRATED_TESTBEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/testbeds"))
}

/// The unpacked root (`usr/`, `etc/` of the packages), fetched by `scripts/testbeds` the first
/// time. Parallel tests share one lock; the others wait and then find it complete.
pub fn unpacked_root() -> Result<PathBuf> {
    let dir = testbeds_dir();
    let root = dir.join("root");
    if root.join(".complete").exists() {
        return Ok(root);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("unpack.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("creating lock file {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if root.join(".complete").exists() {
        return Ok(root);
    }
    let script = workspace().join("scripts/testbeds");
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() || !root.join(".complete").exists() {
        bail!(
            "{} {} failed ({}): {}{}\nRun it by hand (it needs apt-get and root for the libraries).",
            script.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(root)
}

/// `LD_LIBRARY_PATH` for binaries of the unpacked root.
pub fn library_path(root: &Path) -> String {
    [
        "usr/lib",
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
    ]
    .iter()
    .map(|p| root.join(p).display().to_string())
    .collect::<Vec<_>>()
    .join(":")
}

/// A fresh, world-readable instance directory under the system temp dir.
pub fn instance_dir(kind: &str, n: u64) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{kind}-{}-{n}-{nanos:x}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dir.display()))?;
    Ok(dir)
}

/// Fails unless we run as root: the beds mount (Courier) and switch to the mail uid (both).
pub fn require_root(what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if fs::metadata("/proc/self").context("stat /proc/self")?.uid() != 0 {
        bail!(
            "the {what} test bed needs root: it runs the server as nobody (and Courier in a \
             private mount namespace); run the tests as root"
        );
    }
    Ok(())
}

/// A server's process group (the child was spawned with `process_group(0)`): killed whole.
#[derive(Debug)]
pub struct Group {
    child: Option<Child>,
}

impl Group {
    pub fn new(child: Child) -> Self {
        Group { child: Some(child) }
    }

    /// Whether the leader still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL to the whole group, then reaps the leader (idempotent).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", child.id()))
            .stderr(std::process::Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `port` on 127.0.0.1 greets with `* OK`; `log` describes the server on failure.
pub fn wait_for_greeting(
    port: u16,
    limit: Duration,
    group: &mut Group,
    log: impl Fn() -> String,
) -> Result<()> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + limit;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if !group.running() {
            bail!(
                "the server exited before it greeted on {addr}\nlog:\n{}",
                log()
            );
        }
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut line = String::new();
                match BufReader::new(stream).read_line(&mut line) {
                    Ok(_) if line.starts_with("* OK") => return Ok(()),
                    Ok(_) => last = format!("unexpected greeting {line:?}"),
                    Err(e) => last = format!("reading greeting: {e}"),
                }
            }
            Err(e) => last = format!("connect {addr}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!(
        "no IMAP greeting on {addr} within {limit:?}: {last}\nlog:\n{}",
        log()
    )
}

/// A free loopback port (released before the server binds it, as the Dovecot bed does).
pub fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// The last 60 lines of a log file.
pub fn tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}
