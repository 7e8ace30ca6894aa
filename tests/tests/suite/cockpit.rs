//! The Cockpit page (packaging/cockpit/) in a real browser: a system-like private bus with the
//! packaged policy, the daemon on it, two Dovecots, Debian's `cockpit-ws` on a loopback port in
//! its local-session mode with `cockpit-bridge` bound to that bus, and headless Chromium driven
//! through chromedriver by Debian's Selenium bindings (tests/browser/webdriver.py, a line
//! protocol: every step and assertion is here). The page creates a batch from an uploaded CSV
//! (a bad one first, its errors inline), shows progress moving, pauses and resumes a job,
//! shows the alerts, and its figures match `migratectl --json`; its report download is
//! `migratectl report --format csv`; a page opened after the runs draws their throughput from
//! the daemon's history; the connection indicator says
//! when the daemon restarts; a user the bus policy refuses sees the "not allowed" page.
//! Screenshots go to $COCKPIT_SCREENSHOTS (default: a temporary directory).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use crate::dbus::SystemBus;
use futures_util::StreamExt;
use migrated_core::JobStatus;
use migrated_ipc::dbus::ManagerProxy;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cockpit-ws` serving the page from this checkout, its bridge on `bus`, as root or (with
/// `as_nobody`) as an unprivileged user the policy refuses.
struct CockpitWs {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl CockpitWs {
    fn start(bus: &str, tag: &str, as_nobody: bool) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let ws = Path::new("/usr/lib/cockpit/cockpit-ws");
        assert!(
            ws.exists(),
            "cockpit-ws is missing: scripts/deps installs it"
        );
        let dir =
            std::env::temp_dir().join(format!("migrated-cockpit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pages = dir.join("data/cockpit");
        std::fs::create_dir_all(&pages).unwrap();
        for d in [&dir, &dir.join("data"), &pages] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let page = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/cockpit")
            .canonicalize()
            .unwrap();
        std::os::unix::fs::symlink(&page, pages.join("migrated")).unwrap();
        // The bridge finds the page under $XDG_DATA_HOME/cockpit and the bus through
        // DBUS_SYSTEM_BUS_ADDRESS; as nobody it runs through setpriv.
        let bridge = dir.join("bridge");
        let drop = if as_nobody {
            "setpriv --reuid=65534 --regid=65534 --clear-groups "
        } else {
            ""
        };
        std::fs::write(
            &bridge,
            format!(
                "#!/bin/sh\nexport XDG_DATA_HOME={data} HOME={home} DBUS_SYSTEM_BUS_ADDRESS={bus}\nexec {drop}/usr/bin/cockpit-bridge \"$@\"\n",
                data = dir.join("data").display(),
                home = dir.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bridge, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let child = Command::new(ws)
            .arg(format!("--local-session={}", bridge.display()))
            .args(["--no-tls", "--address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cockpit-ws starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "cockpit-ws did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    fn url(&self, fragment: &str) -> String {
        format!(
            "http://127.0.0.1:{}/cockpit/@localhost/migrated/index.html#{fragment}",
            self.port
        )
    }
}

impl Drop for CockpitWs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Headless Chromium behind tests/browser/webdriver.py.
struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    shots: PathBuf,
}

impl Browser {
    fn start(shots: PathBuf) -> Self {
        for (path, package) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
            (
                "/usr/lib/python3/dist-packages/selenium",
                "python3-selenium",
            ),
        ] {
            assert!(
                Path::new(path).exists(),
                "{package} is missing: scripts/deps installs it"
            );
        }
        std::fs::create_dir_all(&shots).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/webdriver.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the browser driver starts");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut b = Self {
            child,
            input,
            output,
            shots,
        };
        assert_eq!(b.read().expect("chromium starts"), "ready");
        b
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the driver said {line:?}: {e}"));
        if v["ok"] == true {
            Ok(v["value"].clone())
        } else {
            Err(v["error"].as_str().unwrap_or("").to_owned())
        }
    }

    fn try_do(&mut self, cmd: Value) -> Result<Value, String> {
        writeln!(self.input, "{cmd}").unwrap();
        self.input.flush().unwrap();
        self.read()
    }

    fn run(&mut self, cmd: Value) -> Value {
        let shown = cmd.to_string();
        self.try_do(cmd)
            .unwrap_or_else(|e| panic!("browser: {shown}: {e}"))
    }

    fn get(&mut self, url: &str) {
        self.run(json!({"op": "get", "url": url}));
    }

    /// Moves to another view of the page without reloading it (a reload would end the one
    /// session a local-session cockpit-ws serves).
    fn nav(&mut self, fragment: &str) {
        self.run(json!({"op": "js", "script": format!("window.location.hash = {:?};", fragment)}));
    }

    fn click(&mut self, css: &str) {
        self.run(json!({"op": "click", "css": css}));
    }

    fn text(&mut self, css: &str) -> String {
        self.run(json!({"op": "text", "css": css}))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until an element matching `css` has text matching `regex`; that text.
    fn wait(&mut self, css: &str, regex: &str) -> String {
        // A guard against a hang, not a measure of speed.
        self.run(json!({"op": "wait", "css": css, "regex": regex, "timeout": 300}))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn type_in(&mut self, css: &str, value: &str) {
        self.run(json!({"op": "type", "css": css, "value": value}));
    }

    fn shot(&mut self, name: &str) {
        let path = self.shots.join(format!("{name}.png"));
        self.run(json!({"op": "screenshot", "path": path}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "{}", json!({"op": "quit"}));
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl_json(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = d.ctl(&all);
    assert!(
        out.status.success(),
        "migratectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The first number of `N/M messages` in a progress text.
fn done_of(text: &str) -> u64 {
    text.split('/')
        .next()
        .and_then(|n| n.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no N/M in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cockpit_page_creates_a_batch_follows_it_pauses_a_job_and_shows_its_alerts() {
    const MESSAGES: usize = 200;
    // About 3 MB a mailbox: a minute each at 0.05 MB/s.
    let (src, dst) = crate::common::beds::two_mailbox_pair(700, MESSAGES, 0.5).await;
    let bus = SystemBus::start_named("cockpit-bus");
    let mut d = Daemon::in_dir(
        std::env::temp_dir().join(format!("migrated-cockpit-daemon-{}", std::process::id())),
    );
    d.env.push(("MIGRATED_BUS".into(), "system".into()));
    d.env
        .push(("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone()));
    // One mailbox at a time, slowly enough to be watched and paused.
    d.args = ["--max-jobs", "1", "--max-mbps", "0.05"]
        .map(str::to_owned)
        .to_vec();
    d.start().await;
    // The Alert signals, as any D-Bus client sees them.
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let manager = ManagerProxy::new(&conn).await.unwrap();
    let mut alert_signals = manager.receive_alert().await.unwrap();
    let ws = CockpitWs::start(&bus.address, "root", false);
    let shots = std::env::var_os("COCKPIT_SCREENSHOTS").map_or_else(
        || std::env::temp_dir().join(format!("migrated-cockpit-shots-{}", std::process::id())),
        PathBuf::from,
    );
    let mut b = Browser::start(shots.clone());

    b.get(&ws.url("/batches"));
    b.wait("#connection", "Live");
    // A CSV with a row without its address: the daemon's words, inline, and no batch.
    let csv_dir = d.state.join("csv");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let bad = csv_dir.join("bad.csv");
    std::fs::write(
        &bad,
        "EmailAddress,UserName,Password\nu1@example.org,u1,source-secret\n,u2,source-secret\n",
    )
    .unwrap();
    let good = csv_dir.join("wave.csv");
    std::fs::write(
        &good,
        "EmailAddress,UserName,Password\nu1@example.org,u1,source-secret\nu2@example.org,u2,source-secret\n",
    )
    .unwrap();
    b.type_in("#batch-name", "wave-1");
    b.type_in("#src-host", "127.0.0.1");
    b.type_in("#src-port", &src.imap_port().to_string());
    b.run(json!({"op": "select", "css": "#src-security", "value": "plain"}));
    b.type_in("#dst-host", "127.0.0.1");
    b.type_in("#dst-port", &dst.imap_port().to_string());
    b.run(json!({"op": "select", "css": "#dst-security", "value": "plain"}));
    b.type_in("#dst-password", "dest-secret");
    b.run(json!({"op": "upload", "css": "#batch-csv", "path": bad}));
    b.click("#batch-create");
    let errors = b.wait("#batch-errors", "not created");
    assert!(
        errors.contains("Row ") && errors.contains("EmailAddress"),
        "the CSV's problem named inline: {errors}"
    );
    b.shot("batch-csv-errors");
    assert_eq!(
        ctl_json(&d, &["batch", "list"])
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "nothing created from a bad CSV"
    );
    b.run(json!({"op": "upload", "css": "#batch-csv", "path": good}));
    b.click("#batch-create");
    b.wait("#batch-name", "wave-1");

    // Progress moves on the page.
    let row = "#batch-jobs tr[data-name='wave-1/u1@example.org']";
    b.wait(&format!("{row} td[data-col=status]"), "Copying");
    let first = done_of(&b.wait(&format!("{row} .progress-text"), r"[1-9]\d*/\d+ messages"));
    let deadline = Instant::now() + Duration::from_secs(300);
    let later = loop {
        let now = done_of(&b.text(&format!("{row} .progress-text")));
        if now > first {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "progress did not move from {first}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(later > first);
    b.shot("batch-progress");

    // Pause and resume the job from its page.
    b.click(&format!("{row} a.job-link"));
    b.wait("#job-status", "Copying");
    b.wait("#job-events", "Status: Copying");
    b.shot("job-copying");
    b.click("#action-pause");
    b.wait("#job-status", "^Stopped$");
    let job = ctl_json(&d, &["status", "wave-1/u1@example.org"]);
    assert_eq!(job["summary"]["status"], "Stopped", "{job}");
    let paused_at = job["summary"]["items_done"].as_u64().unwrap();
    assert!(paused_at < MESSAGES as u64, "paused before the end: {job}");
    b.wait("#job-events", "Status: Stopped");
    b.click("#action-resume");
    b.wait("#job-status", "Copying|Completed");

    // Both mailboxes finish; the page's figures are migratectl's.
    d.wait_batch("wave-1", 2, |s| s == JobStatus::Completed)
        .await;
    b.wait("#job-status", "^Completed$");
    b.wait("#job-alerts", "Mailbox finished");
    b.shot("job-completed");
    let status = ctl_json(&d, &["batch", "status", "wave-1"]);
    let jobs = status["jobs"].as_array().unwrap();
    b.nav("#/batch/wave-1");
    for j in jobs {
        let name = j["name"].as_str().unwrap();
        let text = b.wait(
            &format!("#batch-jobs tr[data-name='{name}'] .progress-text"),
            &format!("^{}/{} messages", j["items_done"], j["items_total"]),
        );
        assert!(
            text.contains(&format!(
                "{:.1} MB",
                j["bytes_done"].as_u64().unwrap() as f64 / 1e6
            )),
            "{text}"
        );
    }
    let (done, total): (u64, u64) = jobs.iter().fold((0, 0), |(d, t), j| {
        (
            d + j["items_done"].as_u64().unwrap(),
            t + j["items_total"].as_u64().unwrap(),
        )
    });
    // Counts are the last run's (the resumed run counts what the paused one left).
    assert_eq!(done, total, "{status}");
    assert!(done > 0);
    b.wait(
        "#batch-totals tr[data-row=Messages] td",
        &format!("^{done} of {total}$"),
    );
    b.wait("#batch-alerts", "Batch wave-1 finished: 2 completed");
    b.shot("batch-completed");

    // The report download is migratectl's CSV report of the batch, byte for byte.
    b.click("#batch-report");
    let downloaded = b.run(json!({"op": "download", "name": "wave-1-report.csv", "timeout": 60}));
    let report = d.ctl(&["report", "--batch", "wave-1", "--format", "csv"]);
    assert!(report.status.success());
    let report = String::from_utf8(report.stdout).unwrap();
    assert!(report.lines().count() > 3, "{report}");
    assert_eq!(
        downloaded.as_str().expect("the downloaded text"),
        report,
        "the downloaded CSV is migratectl's"
    );

    // The throughput history over D-Bus, as the page reads it: u2's one run, added up.
    let u2 = jobs
        .iter()
        .find(|j| j["name"] == "wave-1/u2@example.org")
        .unwrap();
    let u2_id = u2["id"].as_str().unwrap();
    let history: Value = serde_json::from_str(
        &manager
            .call(&json!({"request": "throughput", "job": u2_id}).to_string())
            .await
            .unwrap(),
    )
    .unwrap();
    let samples = history["jobs"][0]["samples"].as_array().unwrap();
    let sum = |k: &str| samples.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        sum("items"),
        u2["items_done"].as_u64().unwrap(),
        "{history}"
    );
    assert_eq!(
        sum("bytes"),
        u2["bytes_done"].as_u64().unwrap(),
        "{history}"
    );
    // A page opened now draws the run from before it opened (the test goes on in it).
    let fresh = CockpitWs::start(&bus.address, "fresh", false);
    b.get(&fresh.url(&format!("/job/{u2_id}")));
    b.wait("#connection", "Live");
    b.wait("#job-status", "^Completed$");
    let opened = b
        .run(json!({"op": "js", "script": "return performance.timeOrigin / 1000;"}))
        .as_f64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let points = b
            .run(json!({"op": "attr", "css": "#throughput-chart", "name": "data-points"}))
            .as_str()
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(0);
        if points >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the chart has no past: {history}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first: f64 = b
        .run(json!({"op": "attr", "css": "#throughput-chart", "name": "data-first"}))
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        first < opened,
        "the chart's first point ({first}) is from before the page opened ({opened})"
    );
    b.shot("job-throughput-history");

    // The overview: jobs by status and the Good news feed, as migratectl lists them.
    b.nav("#/");
    b.wait("#tile-jobs li[data-status=Completed]", "Completed: 2");
    let alerts = ctl_json(&d, &["alerts", "--level", "good"]);
    let alerts = alerts.as_array().unwrap();
    // Each mailbox finished, and the batch with both completed (a batch is also said to
    // finish while a mailbox is paused: the daemon counts a stopped mailbox as settled).
    let of = |kind: &str, words: &str| {
        alerts
            .iter()
            .filter(|a| a["kind"] == kind && a["message"].as_str().unwrap().contains(words))
            .count()
    };
    assert_eq!(of("mailbox_finished", "Mailbox finished"), 2, "{alerts:?}");
    assert_eq!(of("batch_finished", "2 completed"), 1, "{alerts:?}");
    for a in alerts {
        let id = a["id"].as_str().unwrap();
        let text = b.wait(&format!("#tile-good li[data-alert='{id}']"), ".");
        assert!(
            text.contains(a["message"].as_str().unwrap()),
            "{text} / {a}"
        );
    }
    b.wait("#tile-bad", "Nothing");
    b.shot("overview");
    // The same alerts over D-Bus: the signals as they came, the Alerts member, clearing.
    let mut signalled = Vec::new();
    while signalled.len() < alerts.len() {
        let signal = tokio::time::timeout(Duration::from_secs(60), alert_signals.next())
            .await
            .expect("an Alert signal per alert")
            .expect("stream open");
        let args = signal.args().unwrap();
        assert_eq!(args.level(), &"good");
        signalled.push(args.id().to_string());
    }
    let listed: Vec<String> = alerts
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    signalled.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(signalled, sorted);
    let over_bus: Value =
        serde_json::from_str(&manager.alerts("wave-1", "", "good").await.unwrap()).unwrap();
    assert_eq!(over_bus.as_array().unwrap(), alerts);
    assert_eq!(manager.clear_alert(&listed[0]).await.unwrap(), 1);
    assert!(
        manager.clear_alert(&listed[0]).await.is_err(),
        "cleared once"
    );
    assert_eq!(
        manager.clear_alerts().await.unwrap(),
        alerts.len() as u64 - 1
    );
    b.wait("#tile-good", "Nothing");
    b.nav("#/jobs");
    b.wait("#jobs-table", "wave-1/u2@example.org");
    b.type_in("#search", "u2@");
    let table = b.wait("#jobs-table tbody", "u2@example.org");
    assert!(
        !table.contains("u1@example.org"),
        "the search filters: {table}"
    );
    b.shot("jobs");

    // The daemon restarts: the indicator says so, then is live again.
    d.terminate();
    b.wait("#connection", "Reconnecting");
    d.start().await;
    b.wait("#connection", "Live");

    // Someone the bus policy refuses sees why, not a broken page.
    let nobody = CockpitWs::start(&bus.address, "nobody", true);
    b.get(&nobody.url("/"));
    let denied = b.wait("#not-allowed", "Not allowed");
    assert!(denied.contains("migrated"), "{denied}");
    b.shot("not-allowed");
}
