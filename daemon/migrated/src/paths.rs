//! Where the daemon keeps things: system service or user instance, every path overridable.

use std::path::PathBuf;

/// Resolved locations.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// The fjall store.
    pub store: PathBuf,
    /// The store key file (unless systemd passes a credential).
    pub key_file: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// Drop-in job files.
    pub jobs_dir: PathBuf,
}

impl Paths {
    /// System service: `/var/lib/migrated`, `/run/migrated/migrated.sock` (systemd's
    /// `$STATE_DIRECTORY` and `$RUNTIME_DIRECTORY` win when set). User instance:
    /// `$XDG_STATE_HOME/migrated` (else `~/.local/state/migrated`) and
    /// `$XDG_RUNTIME_DIR/migrated/migrated.sock`.
    pub(crate) fn resolve(
        user: bool,
        state_dir: Option<PathBuf>,
        socket: Option<PathBuf>,
        jobs_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let state = match state_dir {
            Some(d) => d,
            None if user => match env("XDG_STATE_HOME") {
                Some(d) => d.join("migrated"),
                None => env("HOME")
                    .map(|h| h.join(".local/state/migrated"))
                    .ok_or_else(|| {
                        anyhow::anyhow!("neither XDG_STATE_HOME nor HOME is set: pass --state-dir")
                    })?,
            },
            None => env("STATE_DIRECTORY").unwrap_or_else(|| PathBuf::from("/var/lib/migrated")),
        };
        let socket = match socket {
            Some(s) => s,
            None if user => env("XDG_RUNTIME_DIR")
                .map(|d| d.join("migrated/migrated.sock"))
                .ok_or_else(|| anyhow::anyhow!("XDG_RUNTIME_DIR is not set: pass --socket"))?,
            None => env("RUNTIME_DIRECTORY")
                .map(|d| d.join("migrated.sock"))
                .unwrap_or_else(|| PathBuf::from("/run/migrated/migrated.sock")),
        };
        let jobs_dir = match jobs_dir {
            Some(d) => d,
            None if user => env("XDG_CONFIG_HOME")
                .or_else(|| env("HOME").map(|h| h.join(".config")))
                .map(|d| d.join("migrated/jobs.d"))
                .unwrap_or_else(|| PathBuf::from("jobs.d")),
            None => env("CONFIGURATION_DIRECTORY")
                .map(|d| d.join("jobs.d"))
                .unwrap_or_else(|| PathBuf::from("/etc/migrated/jobs.d")),
        };
        Ok(Self {
            store: state.join("store"),
            key_file: state.join("store.key"),
            socket,
            jobs_dir,
        })
    }
}
