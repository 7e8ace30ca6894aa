//! The daemon on a private D-Bus session bus (a real dbus-daemon): introspectable with busctl,
//! a job created, followed by its Progress signals, paused and resumed through D-Bus, ending in
//! an exact copy.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use crate::common::{endpoint, pair};
use futures_util::StreamExt;
use migrated_ipc::dbus::ManagerProxy;
use migrated_ipc::{Client, JobSummary, Request, Response};
use testbed::CorpusSpec;

/// A private session bus on a socket of its own (named after `tag`: one per test).
pub(crate) struct Bus {
    child: Child,
    pub(crate) address: String,
    dir: std::path::PathBuf,
}

impl Bus {
    pub(crate) fn start_named(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("migrated-bus-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let address = format!("unix:path={}/bus", dir.display());
        let child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts (apt-get install dbus-daemon)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.join("bus").exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            address,
            dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_dbus_with_progress_signals_pause_and_resume() {
    let p = pair(CorpusSpec {
        seed: 41,
        messages: 3000,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let bus = Bus::start_named("dbus");
    let mut d = Daemon::new(&p);
    d.env.push(("MIGRATED_BUS".into(), "session".into()));
    d.env
        .push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    d.start().await;
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let manager = ManagerProxy::new(&conn).await.unwrap();
    // The name is owned once the daemon is up: the socket answering means READY was reached.
    let deadline = Instant::now() + Duration::from_secs(10);
    while manager.version().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon never owned org.migrated.Manager1:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Introspectable with busctl, as administrators will look at it.
    let out = Command::new("busctl")
        .arg(format!("--address={}", bus.address))
        .args([
            "introspect",
            "org.migrated.Manager1",
            "/org/migrated/Manager1",
            "org.migrated.Manager1",
        ])
        .output()
        .expect("busctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for member in [
        ".CreateJob",
        ".ListJobs",
        ".Status",
        ".Pause",
        ".Resume",
        ".Cancel",
        ".Delete",
        ".Delta",
        ".Progress",
        ".JobEvent",
        ".JobCount",
    ] {
        assert!(
            text.contains(member),
            "{member} missing from:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let src = endpoint(&p.src);
    let dst = endpoint(&p.dst);
    let spec = serde_json::json!({
        "name": "dbus-job",
        "source": { "host": src.host, "port": src.port, "security": "plain", "user": "alice", "password": src.secret.expose() },
        "destination": { "host": dst.host, "port": dst.port, "security": "plain", "user": "alice", "password": dst.secret.expose() },
        "limits": { "connections": 1, "batch_messages": 10 }
    });
    let mut progress = manager.receive_progress().await.unwrap();
    let id = manager
        .create_job(&spec.to_string())
        .await
        .expect("job created over D-Bus");
    assert_eq!(manager.job_count().await.unwrap(), 1);

    let total = p.corpus.total_messages() as u64;
    let mut paused = false;
    let mut copied_before_pause = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let signal = tokio::time::timeout_at(deadline.into(), progress.next())
            .await
            .expect("progress keeps coming")
            .expect("stream open");
        let args = signal.args().unwrap();
        assert_eq!(args.id(), &id);
        let status = args.status().to_string();
        if !paused && status == "Copying" && *args.items_done() > total / 4 {
            assert_eq!(manager.pause(&id).await.unwrap(), "Stopping");
            paused = true;
        }
        if status == "Stopped" && copied_before_pause.is_none() {
            copied_before_pause = Some(*args.items_done());
            assert_eq!(manager.resume(&id).await.unwrap(), "Queued");
        }
        if status == "Completed" {
            // Progress counts per run: the resumed run copies exactly what the paused one left.
            let before = copied_before_pause.expect("paused before completing");
            assert_eq!(
                *args.items_done(),
                *args.items_total(),
                "the last signal carries the run's totals"
            );
            assert_eq!(
                before + *args.items_done(),
                total,
                "nothing copied twice, nothing left out"
            );
            break;
        }
        assert!(
            !matches!(status.as_str(), "Failed" | "Cancelled"),
            "{status}\n{}",
            d.log()
        );
    }
    assert!(paused, "the job was paused through D-Bus");
    let detail: serde_json::Value =
        serde_json::from_str(&manager.status(&id).await.unwrap()).unwrap();
    assert_eq!(detail["summary"]["status"], "Completed");
    let events = manager.events(&id, 0).await.unwrap();
    assert!(
        events.iter().any(|e| e.3.contains("Status: Stopped.")),
        "{events:?}"
    );
    p.assert_exact().await;
    manager
        .delete(&id)
        .await
        .expect("a completed job can be deleted");
    assert_eq!(manager.job_count().await.unwrap(), 0);
    let err = manager.status(&id).await.expect_err("deleted");
    assert!(
        err.to_string().contains("org.migrated.Error.NotFound"),
        "{err}"
    );
}

/// Every job's id, page after page, over the socket (`List` with `after` and `limit`).
async fn socket_pages(socket: &std::path::Path, limit: usize) -> Vec<Vec<String>> {
    let mut c = Client::connect(socket).await.unwrap();
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let reply = c
            .call(&Request::List {
                after: after.take(),
                limit: Some(limit),
            })
            .await
            .unwrap();
        let Response::Jobs { jobs, next, .. } = reply else {
            panic!("{reply:?}");
        };
        pages.push(jobs.into_iter().map(|j| j.id).collect());
        match next {
            Some(n) => after = Some(n),
            None => return pages,
        }
    }
}

/// Every job's id, page after page, over D-Bus (`ListPage`).
async fn dbus_pages(manager: &ManagerProxy<'_>, limit: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after = String::new();
    loop {
        let (jobs, next) = manager.list_page(&after, limit).await.unwrap();
        let jobs: Vec<JobSummary> = serde_json::from_str(&jobs).unwrap();
        pages.push(jobs.into_iter().map(|j| j.id).collect());
        if next.is_empty() {
            return pages;
        }
        after = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_read_in_pages_names_every_job_once_over_the_socket_and_dbus() {
    let p = pair(CorpusSpec {
        seed: 43,
        messages: 1,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let bus = Bus::start_named("pages");
    let mut d = Daemon::new(&p);
    d.env.push(("MIGRATED_BUS".into(), "session".into()));
    d.env
        .push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    d.start().await;
    // 25 mailboxes of one batch, all waiting for a window two hours ahead: three pages of 10.
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        % 24;
    let (dir, template) = d.batch_template(
        p.src.imap_port(),
        p.dst.imap_port(),
        &format!(
            "[schedule]\nwindows = [{{ from = \"{:02}:00\", to = \"{:02}:00\" }}]\n",
            (hour + 2) % 24,
            (hour + 3) % 24
        ),
    );
    let password = p.src.password("alice").unwrap();
    let mut csv = String::from("EmailAddress,UserName,Password\n");
    for i in 0..25 {
        csv.push_str(&format!("u{i:02}@example.org,alice,{password}\n"));
    }
    let csv_file = dir.join("pages.csv");
    std::fs::write(&csv_file, csv).unwrap();
    d.create_batch("pages", &csv_file, &template);

    let mut c = Client::connect(&d.socket).await.unwrap();
    let whole = c
        .call(&Request::List {
            after: None,
            limit: None,
        })
        .await
        .unwrap();
    let Response::Jobs {
        jobs: whole,
        next: None,
        ..
    } = whole
    else {
        panic!("a list without paging fields is whole: {whole:?}");
    };
    let whole: Vec<String> = whole.into_iter().map(|j| j.id).collect();
    assert_eq!(whole.len(), 25);

    let check = |how: &str, pages: Vec<Vec<String>>| {
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5], "{how}: page sizes");
        let joined: Vec<String> = pages.concat();
        // Every job exactly once, in the whole list's order (oldest first).
        assert_eq!(joined, whole, "{how}: the pages together are the list");
        let distinct: std::collections::HashSet<&String> = joined.iter().collect();
        assert_eq!(distinct.len(), 25, "{how}: no job twice");
    };
    check("socket", socket_pages(&d.socket, 10).await);

    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let manager = ManagerProxy::new(&conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while manager.version().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon never owned org.migrated.Manager1:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check("D-Bus", dbus_pages(&manager, 10).await);

    // migratectl reads its list in pages too, over the socket and over the bus.
    for args in [
        vec!["--json", "list"],
        vec!["--bus", "session", "--json", "list"],
    ] {
        let out = d
            .ctl_command(&args)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let ids: Vec<String> = listed
            .as_array()
            .expect("a JSON list")
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, whole, "migratectl {args:?}");
    }

    // A cursor the daemon did not give, and a page of no jobs, are refused with what to do.
    let err = c
        .call(&Request::List {
            after: Some("not-a-cursor".into()),
            limit: Some(10),
        })
        .await
        .expect_err("a bad cursor");
    assert!(
        err.to_string().contains("list again from the start"),
        "{err}"
    );
    let err = manager.list_page("", 0).await.expect_err("an empty page");
    assert!(
        err.to_string().contains("org.migrated.Error.Invalid")
            && err.to_string().contains("1 to 5000"),
        "{err}"
    );
}

/// A system-like bus (`<type>system</type>`, deny by default) with the package's policy file
/// included; the daemon runs as root here, so root may own the name on this test bus.
pub(crate) struct SystemBus {
    child: Child,
    pub(crate) address: String,
    dir: std::path::PathBuf,
}

impl SystemBus {
    pub(crate) fn start() -> Self {
        Self::start_named("sysbus")
    }

    /// One per test that runs beside others (`tag` names its directory).
    pub(crate) fn start_named(tag: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("migrated-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("system_bus_socket");
        let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/dbus/org.migrated.Manager1.conf")
            .canonicalize()
            .unwrap();
        let config = dir.join("system.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
    <allow own="org.migrated.Manager1"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
                socket = socket.display(),
                policy = policy.display()
            ),
        )
        .unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            address: format!("unix:path={}", socket.display()),
            dir,
        }
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_dbus_policy_refuses_an_unprivileged_caller() {
    let p = pair(CorpusSpec {
        seed: 42,
        messages: 1,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let bus = SystemBus::start();
    let mut d = Daemon::new(&p);
    d.env.push(("MIGRATED_BUS".into(), "system".into()));
    d.env
        .push(("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone()));
    d.start().await;
    let call = |as_nobody: bool| {
        let mut c = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"]);
            c
        } else {
            Command::new("busctl")
        };
        c.arg(format!("--address={}", bus.address)).args([
            "call",
            "org.migrated.Manager1",
            "/org/migrated/Manager1",
            "org.migrated.Manager1",
            "ListJobs",
        ]);
        c.output().unwrap()
    };
    // The daemon owns its name on the system-like bus, and root may call it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let root = loop {
        let out = call(false);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        root.status.success(),
        "root is allowed: {}\n{}",
        String::from_utf8_lossy(&root.stderr),
        d.log()
    );
    // An unprivileged user (nobody, not in group migrated) is refused by the bus itself.
    let nobody = call(true);
    let err = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        !nobody.status.success() && err.contains("Access denied"),
        "nobody: {err}"
    );
}
