//! The systemd units pass `systemd-analyze verify`, and the system unit's exposure as rated by
//! `systemd-analyze security --offline` stays at "OK" (below 2.0).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

/// A copy of a unit whose ExecStart names the binary built here (verify checks it exists).
fn unit_copy(unit: &str, name: &str) -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("migrated");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let text = std::fs::read_to_string(repo().join(unit)).unwrap();
    let dir = std::env::temp_dir().join(format!("migrated-units-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        text.replace("/usr/bin/migrated", bin.to_str().unwrap()),
    )
    .unwrap();
    (dir, path)
}

#[test]
fn the_system_unit_verifies_and_is_hardened() {
    let (dir, unit) = unit_copy("packaging/systemd/migrated.service", "migrated.service");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for migrated.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score < 2.0, "exposure {score} is above OK:\n{text}");
    println!("systemd-analyze security: exposure {score}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_user_unit_verifies() {
    let (dir, unit) = unit_copy(
        "packaging/systemd/user/migrated.service",
        "migrated-user.service",
    );
    let runtime = dir.join("xdg");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(&unit)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_dbus_policy_is_valid_xml_for_dbus_daemon() {
    // dbus-daemon parses the policy when it loads a configuration that includes it.
    let dir = std::env::temp_dir().join(format!("migrated-dbus-policy-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("system.d")).unwrap();
    std::fs::copy(
        repo().join("packaging/dbus/org.migrated.Manager1.conf"),
        dir.join("system.d/org.migrated.Manager1.conf"),
    )
    .unwrap();
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>system</type><listen>unix:path={}/bus</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/></policy><includedir>{}/system.d</includedir></busconfig>",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .arg("--print-address")
        .arg("--fork")
        .arg("--print-pid")
        .output()
        .expect("dbus-daemon runs");
    assert!(
        out.status.success(),
        "dbus-daemon refused the policy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(pid) = stdout.lines().nth(1) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_cockpit_page_goes_into_the_package_which_recommends_cockpit() {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(repo().join("daemon/migrated/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    assert!(
        deb["recommends"].as_str().unwrap_or("").contains("cockpit"),
        "{deb}"
    );
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let page = repo().join("packaging/cockpit");
    let mut files = 0;
    for entry in std::fs::read_dir(&page).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let source = format!("../../packaging/cockpit/{name}");
        assert!(
            assets
                .iter()
                .any(|(s, d)| *s == source && d == "usr/share/cockpit/migrated/"),
            "{name} is not installed to /usr/share/cockpit/migrated/"
        );
        files += 1;
    }
    assert!(files >= 4, "manifest, page, script and styles");
    // Cockpit lists the page from its manifest.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(page.join("manifest.json")).unwrap())
            .expect("manifest.json is JSON");
    assert_eq!(m["menu"]["index"]["label"], "Mail migrations");
    let html = std::fs::read_to_string(page.join("index.html")).unwrap();
    assert!(html.contains("../base1/cockpit.js") && html.contains("migrated.js"));
}
