//! Where the daemon keeps things: system service or user instance, every path overridable;
//! and where it finds its source plugins.

use std::path::{Path, PathBuf};

use migrated_plugin_api::host::Plugins;

/// Where the package installs the source plugins.
const INSTALLED_PLUGINS_DIR: &str = "/usr/lib/migrated/plugins";

/// The libraries of the source plugins the package ships, as cargo names them. A cargo build
/// tree also holds the test suite's plugins (one panics on purpose, one announces a foreign
/// ABI): only these are loaded from there.
const SHIPPED_PLUGINS: [&str; 3] = [
    "libmigrated_plugin_imap.so",
    "libmigrated_plugin_gmail.so",
    "libmigrated_plugin_carddav.so",
];

/// Where the source plugins come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PluginFiles {
    /// Every `*.so` of this directory: the one given, or the package's.
    Dir(PathBuf),
    /// The shipped plugins in the cargo build tree (`target/debug`, `target/release`) the
    /// running daemon sits in.
    BuildTree(PathBuf),
}

/// The source plugins to load: every `*.so` of the directory given (`--plugins-dir` or
/// `$MIGRATED_PLUGINS_DIR`); else, when the daemon's executable `exe` sits in a cargo build
/// tree (its directory holds `libmigrated_plugin_imap.so`), the shipped plugins there, so that
/// `cargo build --release` then `target/release/migrated --user` runs jobs; else every `*.so`
/// of `/usr/lib/migrated/plugins`, where the package installs them.
pub(crate) fn plugin_files(given: Option<&Path>, exe: Option<&Path>) -> PluginFiles {
    if let Some(dir) = given {
        return PluginFiles::Dir(dir.to_owned());
    }
    match exe.and_then(Path::parent) {
        Some(dir) if dir.join(SHIPPED_PLUGINS[0]).is_file() => {
            PluginFiles::BuildTree(dir.to_owned())
        }
        _ => PluginFiles::Dir(PathBuf::from(INSTALLED_PLUGINS_DIR)),
    }
}

impl PluginFiles {
    /// The directory they are in, for log lines.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Self::Dir(d) | Self::BuildTree(d) => d,
        }
    }

    /// Loads them; a shipped plugin missing from a build tree (not built) is left out.
    ///
    /// # Errors
    ///
    /// Only when a plugin directory cannot be read.
    pub(crate) fn load(&self) -> Result<Plugins, String> {
        match self {
            Self::Dir(d) => Plugins::load_dir(d),
            Self::BuildTree(d) => Ok(Plugins::load_files(
                SHIPPED_PLUGINS
                    .iter()
                    .map(|f| d.join(f))
                    .filter(|p| p.exists()),
            )),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with these (empty) files, made afresh.
    fn dir_with(name: &str, files: &[&str]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("migrated-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        dir
    }

    #[test]
    fn a_plugins_dir_given_wins_over_a_build_tree() {
        let tree = dir_with("given", &["libmigrated_plugin_imap.so"]);
        let files = plugin_files(
            Some(Path::new("/opt/plugins")),
            Some(&tree.join("migrated")),
        );
        assert_eq!(files, PluginFiles::Dir("/opt/plugins".into()));
        let _ = std::fs::remove_dir_all(&tree);
    }

    #[test]
    fn a_daemon_in_a_build_tree_takes_the_plugins_built_beside_it() {
        let tree = dir_with("tree", &["libmigrated_plugin_imap.so"]);
        assert_eq!(
            plugin_files(None, Some(&tree.join("migrated"))),
            PluginFiles::BuildTree(tree.clone())
        );
        let _ = std::fs::remove_dir_all(&tree);
    }

    #[test]
    fn an_installed_daemon_takes_the_package_directory() {
        let bin = dir_with("bin", &["migrated"]);
        let installed = PluginFiles::Dir(INSTALLED_PLUGINS_DIR.into());
        assert_eq!(plugin_files(None, Some(&bin.join("migrated"))), installed);
        assert_eq!(plugin_files(None, None), installed);
        let _ = std::fs::remove_dir_all(&bin);
    }
}
