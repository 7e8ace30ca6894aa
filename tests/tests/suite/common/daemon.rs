//! A `migrated` daemon under test: its own state directory and socket, started, killed,
//! terminated, driven with migratectl, polled over the socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use migrated_ipc::{Client, JobSummary, Request, Response};

use super::Pair;

pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        bin.display()
    );
    bin
}

/// A daemon instance with its own state directory and socket.
pub struct Daemon {
    pub state: PathBuf,
    pub socket: PathBuf,
    pub env: Vec<(String, String)>,
    /// Variables taken out of the daemon's environment (after `env` is applied).
    pub env_remove: Vec<String>,
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    pub fn new(p: &Pair) -> Self {
        Self::in_dir(p.store_dir.with_extension("daemon"))
    }

    /// A daemon whose state lives in `state` (removed first), for tests without a Dovecot pair.
    pub fn in_dir(state: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        Self {
            socket: state.join("run/migrated.sock"),
            state,
            env: Vec::new(),
            env_remove: Vec::new(),
            args: Vec::new(),
            child: None,
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(binary("migrated"));
        c.arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
            .env("MIGRATED_LOG", "info");
        if !self.env.iter().any(|(k, _)| k == "MIGRATED_BUS") {
            c.arg("--bus").arg("none");
        }
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for k in &self.env_remove {
            c.env_remove(k);
        }
        c.args(&self.args);
        c
    }

    /// Whether every job is Completed, with the job list as JSON.
    pub fn all_completed(&self) -> (bool, serde_json::Value) {
        let list: serde_json::Value =
            serde_json::from_str(&stdout(&self.ctl(&["--json", "list"]))).unwrap();
        let done = list
            .as_array()
            .is_some_and(|jobs| jobs.iter().all(|j| j["status"] == "Completed"));
        (done, list)
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal to the running daemon.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
    }

    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.join("daemon.log"))
            .unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("migrated starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&self.socket).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the daemon did not listen within 20 s:\n{}",
                self.log()
            );
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited: {status}\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("daemon.log")).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, and how long the daemon took to exit.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut c = self.child.take().expect("running");
        let t = Instant::now();
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return (s, t.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_command(args).output().unwrap()
    }

    /// A batch template between two plain loopback ports in `<state>/batch` (created), the
    /// destination logging in with the shared password `dest-secret` from `admin.pass`, after
    /// `head` (top-level settings such as `notify`). Returns the directory and the template.
    pub fn batch_template(&self, src_port: u16, dst_port: u16, head: &str) -> (PathBuf, PathBuf) {
        let dir = self.state.join("batch");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("admin.pass"), "dest-secret").unwrap();
        let template = dir.join("template.toml");
        std::fs::write(
            &template,
            format!(
                "{head}[source]\nhost = \"127.0.0.1\"\nport = {src_port}\nsecurity = \"plain\"\n\
                 [destination]\nhost = \"127.0.0.1\"\nport = {dst_port}\nsecurity = \"plain\"\npassword_file = \"{}\"\n",
                dir.join("admin.pass").display()
            ),
        )
        .unwrap();
        (dir, template)
    }

    /// `migratectl batch create NAME --csv CSV --template TEMPLATE`, which must succeed.
    pub fn create_batch(&self, name: &str, csv: &Path, template: &Path) {
        let out = self.ctl(&[
            "batch",
            "create",
            name,
            "--csv",
            csv.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "batch {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until batch `name` has `jobs` jobs and each is in a status `settled` takes;
    /// their summaries (`batch status --json`).
    pub async fn wait_batch(
        &self,
        name: &str,
        jobs: usize,
        settled: impl Fn(migrated_core::JobStatus) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let v: serde_json::Value =
                serde_json::from_str(&stdout(&self.ctl(&["--json", "batch", "status", name])))
                    .unwrap();
            let list = v["jobs"].as_array().cloned().unwrap_or_default();
            let done = |j: &serde_json::Value| {
                serde_json::from_value(j["status"].clone()).is_ok_and(&settled)
            };
            if list.len() == jobs && list.iter().all(done) {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "batch {name} not done: {v}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `migratectl` with this daemon's socket and `args`, to spawn.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary("migratectl"));
        c.arg("--socket").arg(&self.socket).args(args);
        c
    }

    pub async fn summary(&self, id: &str) -> JobSummary {
        let mut c = Client::connect(&self.socket).await.expect("connects");
        match c
            .call(&Request::Status { job: id.into() })
            .await
            .expect("status")
        {
            Response::Job { job } => job.summary,
            other => panic!("{other:?}"),
        }
    }

    pub async fn wait_until(
        &self,
        id: &str,
        what: &str,
        f: impl Fn(&JobSummary) -> bool,
    ) -> JobSummary {
        // A guard against a hang, not a measure of speed: on a loaded machine a Radicale or
        // Dovecot under test can take minutes for what takes seconds alone.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = self.summary(id).await;
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A job file for the pair, with passwords in files beside it.
pub fn job_file(p: &Pair, dir: &Path, name: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let pass = |n: &str, d: &testbed::Dovecot| {
        let f = dir.join(n);
        std::fs::write(&f, d.password("alice").unwrap()).unwrap();
        f
    };
    let (s, d) = (pass("src.pass", &p.src), pass("dst.pass", &p.dst));
    let text = format!(
        "name = \"{name}\"\n[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n\
         [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n{extra}",
        p.src.imap_port(),
        s.display(),
        p.dst.imap_port(),
        d.display()
    );
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(&f, text).unwrap();
    f
}

pub fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "migratectl failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
