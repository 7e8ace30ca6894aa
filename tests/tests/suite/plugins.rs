//! The plugin loader and ABI: what a plugin directory may hold, how a foreign or broken file is
//! reported, that a panic inside a plugin fails the call (and the job) but not the process,
//! `migratectl plugins`, and where a daemon started from the build tree finds its plugins.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::daemon::{Daemon, job_file, stdout};
use crate::common::pair;
use migrated_core::{Account, JobStatus, Secret, SettingValue, SourceConnector, SourceSession};
use migrated_plugin_api::host::{Plugin, PluginSource, Plugins};
use testbed::CorpusSpec;
use testbed::plugins::{plugin_dir_with, target_dir};

/// The path of a system library every Debian has (zlib), found with ldconfig.
fn system_library() -> PathBuf {
    let out = std::process::Command::new("/sbin/ldconfig")
        .arg("-p")
        .output()
        .expect("ldconfig -p");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("libz.so.1 "))
        .expect("zlib is installed (zlib1g is required on Debian)");
    PathBuf::from(line.rsplit("=> ").next().unwrap().trim())
}

/// A directory with two real plugins, one of another ABI, a foreign library, a file that is no
/// library at all, a plugin others may write to, and a file that is not a `.so`.
fn crowded_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migrated-{name}-{}", std::process::id()));
    plugin_dir_with(
        &dir,
        &[
            "migrated_plugin_imap",
            "migrated_test_plugin_panicky",
            "migrated_test_plugin_next_abi",
        ],
    );
    std::fs::write(dir.join("broken.so"), b"\x7fELF but not really a library").unwrap();
    std::fs::copy(system_library(), dir.join("libforeign.so")).unwrap();
    std::fs::set_permissions(
        dir.join("libforeign.so"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let writable = dir.join("libwritable.so");
    std::fs::copy(
        target_dir().join("libmigrated_test_plugin_panicky.so"),
        &writable,
    )
    .unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o664)).unwrap();
    std::fs::write(dir.join("README.txt"), "not a plugin").unwrap();
    dir
}

fn reason<'a>(plugins: &'a Plugins, dir: &Path, file: &str) -> &'a str {
    plugins
        .rejected
        .iter()
        .find(|r| r.path == dir.join(file))
        .map(|r| r.reason.as_str())
        .unwrap_or_else(|| panic!("{file} not reported: {:?}", plugins.rejected))
}

#[test]
fn the_loader_takes_plugins_and_reports_every_other_file_with_the_reason() {
    let dir = crowded_dir("loader");
    let plugins = Plugins::load_dir(&dir).expect("directory readable");
    let names: Vec<&str> = plugins
        .loaded
        .iter()
        .map(|p| p.info().name.as_str())
        .collect();
    assert_eq!(names, ["imap", "panicky"]);
    let imap = plugins.get("imap").unwrap();
    assert_eq!(imap.abi().to_string(), "1.6");
    assert_eq!(imap.info().version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        imap.info().kinds,
        [migrated_plugin_api::wire::Kind::Mail],
        "{:?}",
        imap.info()
    );

    // Four files skipped, each with a reason an administrator can act on; README.txt is
    // not a library name and is not even tried.
    assert_eq!(plugins.rejected.len(), 4, "{:?}", plugins.rejected);
    let next = reason(&plugins, &dir, "libmigrated_test_plugin_next_abi.so");
    assert!(
        next.contains("built for plugin ABI 2.0") && next.contains("speaks ABI 1.6"),
        "{next}"
    );
    let broken = reason(&plugins, &dir, "broken.so");
    assert!(broken.starts_with("not a loadable library"), "{broken}");
    let foreign = reason(&plugins, &dir, "libforeign.so");
    assert!(
        foreign.contains("not a migrated plugin") && foreign.contains("migrated_plugin_abi"),
        "{foreign}"
    );
    let writable = reason(&plugins, &dir, "libwritable.so");
    assert!(
        writable.contains("writable by group or others") && writable.contains("chmod go-w"),
        "{writable}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn account(settings: &[(&str, SettingValue)]) -> Account {
    Account {
        host: "127.0.0.1".into(),
        port: 9,
        security: "plain".into(),
        ca_file: None,
        danger_accept_invalid_certs: false,
        tls_fingerprint: None,
        auth: "login".into(),
        user: "nobody".into(),
        secret: Secret::new("not used"),
        timeout_secs: 5,
        path: None,
        admin_user: None,
        admin_login: None,
        admin_separator: None,
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn panicky() -> Arc<Plugin> {
    static PLUGIN: std::sync::OnceLock<Arc<Plugin>> = std::sync::OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("migrated-panicky-{}", std::process::id()));
            plugin_dir_with(&dir, &["migrated_test_plugin_panicky"]);
            Arc::new(Plugin::load(&dir.join("libmigrated_test_plugin_panicky.so")).expect("loads"))
        })
        .clone()
}

#[tokio::test]
async fn a_panic_inside_a_plugin_is_an_error_of_that_call_and_the_plugin_goes_on() {
    let plugin = panicky();
    let calm = PluginSource::new(plugin.clone(), account(&[]));
    let mut session = calm.connect().await.expect("connects without a network");
    let err = session.list_folders().await.unwrap_err();
    assert!(
        err.message.contains("plugin panicky panicked")
            && err.message.contains("deliberate panic in list_folders"),
        "{err}"
    );
    assert_eq!(err.kind, migrated_core::ErrorKind::Permanent);

    let wild = PluginSource::new(
        plugin.clone(),
        account(&[("mode", SettingValue::Text("wild".into()))]),
    );
    let err = wild.connect().await.unwrap_err();
    assert!(
        err.message.contains("deliberate panic while connecting"),
        "{err}"
    );

    // The plugin and this process are still there: new sessions work, old ones answer.
    let mut again = calm.connect().await.expect("still serving");
    assert!(again.list_messages(1, None).await.unwrap().is_empty());
    assert_eq!(session.fetch_bodies(&[1, 2]).await.unwrap(), [None, None]);
}

#[test]
fn job_settings_are_checked_against_those_the_plugin_declares() {
    let plugin = panicky();
    let check = |pairs: &[(&str, SettingValue)]| plugin.check_settings(&account(pairs).settings);
    check(&[
        ("mode", SettingValue::Text("wild".into())),
        ("verbose", SettingValue::Bool(true)),
    ])
    .expect("valid settings");
    let err = check(&[("mode", SettingValue::Text("berserk".into()))]).unwrap_err();
    assert!(
        err.contains("\"mode\"") && err.contains("calm|wild"),
        "{err}"
    );
    let err = check(&[("verbose", SettingValue::Text("yes".into()))]).unwrap_err();
    assert!(err.contains("true|false"), "{err}");
    let err = check(&[
        ("colour", SettingValue::Bool(true)),
        ("mode", SettingValue::Int(3)),
    ])
    .unwrap_err();
    assert_eq!(err.lines().count(), 2, "every problem at once: {err}");
    assert!(
        err.contains("no setting \"colour\" (it accepts: mode, verbose)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_lists_its_plugins_and_a_panicking_plugin_fails_only_its_job() {
    let p = pair(CorpusSpec {
        seed: 71,
        messages: 60,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let dir = crowded_dir("daemon");
    d.env
        .push(("MIGRATED_PLUGINS_DIR".into(), dir.display().to_string()));
    d.start().await;

    let text = stdout(&d.ctl(&["plugins"]));
    assert!(text.contains("imap") && text.contains("panicky"), "{text}");
    assert!(
        text.contains("setting mode = calm|wild (default calm)"),
        "{text}"
    );
    assert!(
        text.contains("libmigrated_test_plugin_next_abi.so: built for plugin ABI 2.0"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "plugins"]))).expect("JSON");
    assert_eq!(json["plugins"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["rejected"].as_array().unwrap().len(), 4, "{json}");
    assert_eq!(json["plugins"][0]["abi"], "1.6");
    assert_eq!(json["plugins"][0]["kinds"][0], "mail");
    assert!(
        d.log().contains("Plugin skipped."),
        "skipped files are in the journal:\n{}",
        d.log()
    );

    // A job naming a plugin that is not installed is refused before anything is stored.
    let jobs = d.state.join("jobs");
    let with_plugin = |name: &str, plugin: &str, settings: &str| {
        let f = job_file(&p, &jobs, name, "");
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("[source]\n", &format!("[source]\nplugin = \"{plugin}\"\n"))
            + settings;
        std::fs::write(&f, text).unwrap();
        f
    };
    let f = with_plugin("nosuch", "nosuch", "");
    let out = d.ctl(&["create", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no plugin \"nosuch\" is installed (loaded: imap, panicky)"),
        "{err}"
    );
    let f = with_plugin(
        "badsetting",
        "panicky",
        "[source.settings]\nmode = \"berserk\"\n",
    );
    let out = d.ctl(&["create", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("[source.settings]") && err.contains("calm|wild"),
        "{err}"
    );
    let listed = stdout(&d.ctl(&["--json", "list"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&listed).unwrap(),
        serde_json::json!([]),
        "nothing stored by refused jobs"
    );

    // The panicking plugin fails its job with the panic's message; the daemon stays up and an
    // IMAP job next to it completes.
    let f = with_plugin("panics", "panicky", "");
    let bad = stdout(&d.ctl(&["create", f.to_str().unwrap()]));
    let f = job_file(&p, &jobs, "fine", "");
    let good = stdout(&d.ctl(&["create", f.to_str().unwrap()]));
    let s = d
        .wait_until(&bad, "the panicking job to fail", |s| {
            s.status == Some(JobStatus::Failed)
        })
        .await;
    let status = stdout(&d.ctl(&["--json", "status", &bad]));
    assert!(
        status.contains("deliberate panic in list_folders"),
        "{s:?}\n{status}"
    );
    d.wait_until(&good, "the IMAP job to complete", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    let report = p.verify().await;
    assert!(report.is_exact(), "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_run_from_the_build_tree_loads_the_shipped_plugins_built_beside_it() {
    // As the README's user-instance recipe runs it: no --plugins-dir, no MIGRATED_PLUGINS_DIR.
    // target/debug also holds the test plugins (panicky, next-abi): they stay out.
    let mut d = Daemon::in_dir(
        std::env::temp_dir().join(format!("migrated-buildtree-{}", std::process::id())),
    );
    d.env_remove.push("MIGRATED_PLUGINS_DIR".into());
    assert!(
        target_dir()
            .join("libmigrated_test_plugin_panicky.so")
            .exists(),
        "the test plugins are built beside the shipped ones"
    );
    d.start().await;

    let text = stdout(&d.ctl(&["plugins"]));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "plugins"]))).expect("JSON");
    let names: Vec<&str> = json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["imap", "gmail", "carddav"], "{text}");
    assert_eq!(json["rejected"], serde_json::json!([]), "{text}");
    for p in json["plugins"].as_array().unwrap() {
        let path = PathBuf::from(p["path"].as_str().unwrap());
        assert_eq!(path.parent(), Some(target_dir().as_path()), "{text}");
    }
    assert!(
        !text.contains("panicky") && !text.contains("next_abi") && !text.contains("skipped"),
        "{text}"
    );
}
