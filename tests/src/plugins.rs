//! Where the tests find the source plugins: the `.so` files cargo built next to the binaries,
//! linked into a directory of their own so that the daemon loads exactly the shipped plugins
//! (the test-only plugins that panic or announce a foreign ABI stay out of it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use migrated_plugin_api::host::{Plugin, PluginSource};

/// The plugins the package ships, by library name.
pub const SHIPPED: &[&str] = &[
    "migrated_plugin_imap",
    "migrated_plugin_gmail",
    "migrated_plugin_carddav",
];

/// The cargo target directory of the running test or bench binary (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("binary directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target directory").to_owned()
    } else {
        dir.to_owned()
    }
}

/// A directory holding links to these plugin libraries (built by `cargo build --workspace`).
///
/// # Panics
///
/// When a library was not built, saying how to build it.
pub fn plugin_dir_with(dir: &Path, libraries: &[&str]) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("plugin directory");
    for name in libraries {
        let file = format!("lib{name}.so");
        let built = target_dir().join(&file);
        assert!(
            built.exists(),
            "{} is missing: run `cargo build --workspace` before the tests",
            built.display()
        );
        std::os::unix::fs::symlink(&built, dir.join(&file)).expect("link to a plugin");
    }
    dir.to_owned()
}

/// The shipped plugins, in a directory made once per process.
pub fn plugins_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("migrated-plugins-{}", std::process::id()));
        plugin_dir_with(&dir, SHIPPED)
    })
    .clone()
}

/// The IMAP source plugin, loaded from its `.so` through the ABI as the daemon loads it.
///
/// # Panics
///
/// When the library is missing or refused.
pub fn imap_plugin() -> Arc<Plugin> {
    static PLUGIN: OnceLock<Arc<Plugin>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let path = plugins_dir().join("libmigrated_plugin_imap.so");
            Arc::new(Plugin::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .clone()
}

/// A source reading this IMAP account through the plugin loaded from disk.
pub fn imap_source(endpoint: &migrated_imap::Endpoint) -> PluginSource {
    PluginSource::new(imap_plugin(), migrated_core::Account::from(endpoint))
}
