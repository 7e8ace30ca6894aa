//! Many mailboxes at once in one daemon: 100 source accounts of 200 messages each, moved to
//! 100 destination accounts by one `migrated` daemon started with `--max-jobs 100` and its own
//! state directory and socket, the jobs created as an administrator would, with one CSV batch
//! through `migratectl`. Measured: wall time from `batch create` until every job is finished,
//! the daemon's peak RSS (VmHWM; target under 512 MB) and CPU time; then every destination
//! mailbox is verified exact.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use migrated_core::JobStatus;
use migrated_ipc::{Client, Request, Response};
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};

use crate::Options;
use crate::util::{self, Measured};

/// The daemon, killed if the benchmark fails before it was stopped.
struct DaemonGuard(Option<Child>);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const TARGET_RSS_MB: f64 = 512.0;

pub(crate) fn run(opts: &Options, rt: &tokio::runtime::Runtime, work: &Path) -> anyhow::Result<()> {
    let n = opts.mailboxes;
    println!(
        "\n{n} mailboxes of {} messages at once in one daemon (--max-jobs {n}, one CSV batch)",
        opts.mailbox_messages
    );
    let src = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: (1..=n)
            .map(|i| (format!("m{i:03}"), format!("source-{i}")))
            .collect(),
        ..DovecotOptions::default()
    })?;
    // Destination logins are the addresses (EmailAddress), all with the admin-set password.
    let dst = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: (1..=n)
            .map(|i| (format!("m{i:03}@example.org"), "dest-secret".to_owned()))
            .collect(),
        ..DovecotOptions::default()
    })?;
    let t = Instant::now();
    let mut corpora = Vec::with_capacity(n);
    for i in 1..=n {
        let user = format!("m{i:03}");
        let corpus = testbed::write_maildir(
            &src,
            &user,
            &CorpusSpec {
                seed: 1000 + i as u64,
                messages: opts.mailbox_messages,
                max_attachment: 0,
                size_factor: 1.0,
            },
        )?;
        util::index(rt, &src, &user, &corpus)?;
        corpora.push(corpus);
    }
    let messages: usize = corpora.iter().map(|c| c.total_messages()).sum();
    let bytes: u64 = corpora.iter().map(|c| c.total_bytes()).sum();
    println!(
        "corpora: {messages} messages, {:.1} MB in {n} mailboxes (written and indexed in {:.1} s)",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let state = work.join("daemon");
    let socket = state.join("run/migrated.sock");
    let jobs_dir = state.join("jobs.d");
    std::fs::create_dir_all(&jobs_dir)?;
    let log = state.join("daemon.log");
    let daemon = Command::new(crate::binary("migrated")?)
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .arg("--jobs-dir")
        .arg(&jobs_dir)
        .args(["--bus", "none", "--max-jobs", &n.to_string()])
        .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .env("MIGRATED_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting the daemon")?;
    let pid = daemon.id();
    let mut guard = DaemonGuard(Some(daemon));
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = guard.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("the daemon exited: {status}\n{}", log_tail());
        }
        if Instant::now() > deadline {
            bail!("the daemon did not listen within 20 s:\n{}", log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let batch_dir = work.join("batch");
    std::fs::create_dir_all(&batch_dir)?;
    let admin = util::secret_file(&batch_dir, "admin.pass", "dest-secret")?;
    let template = batch_dir.join("template.toml");
    std::fs::write(
        &template,
        format!(
            "[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\npassword_file = \"{}\"\n",
            src.imap_port(),
            dst.imap_port(),
            admin.display()
        ),
    )?;
    let mut csv = String::from("EmailAddress,UserName,Password\n");
    for i in 1..=n {
        csv.push_str(&format!("m{i:03}@example.org,m{i:03},source-{i}\n"));
    }
    let csv_file = batch_dir.join("mailboxes.csv");
    std::fs::write(&csv_file, csv)?;
    std::fs::set_permissions(
        &csv_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;

    let started = Instant::now();
    let out = Command::new(crate::binary("migratectl")?)
        .arg("--socket")
        .arg(&socket)
        .args(["batch", "create", "bench", "--csv"])
        .arg(&csv_file)
        .arg("--template")
        .arg(&template)
        .output()
        .context("running migratectl batch create")?;
    if !out.status.success() {
        bail!(
            "migratectl batch create failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let created = started.elapsed();

    // Follow the batch over the socket (cheaper than a migratectl process per look).
    let (statuses, most_running) = rt.block_on(async {
        let mut client = Client::connect(&socket).await?;
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut most_running = 0;
        loop {
            let batches = match client.call(&Request::ListBatches).await? {
                Response::Batches { batches } => batches,
                other => bail!("unexpected reply to ListBatches: {other:?}"),
            };
            let b = batches
                .iter()
                .find(|b| b.name == "bench")
                .context("the batch is not listed")?;
            let mut finished = 0;
            let mut queued = 0;
            for (label, count) in &b.statuses {
                match JobStatus::from_label(label) {
                    Some(s) if s.is_finished() => finished += count,
                    Some(JobStatus::Queued) => queued += count,
                    _ => {}
                }
            }
            most_running = most_running.max(b.jobs - finished - queued);
            if b.jobs == n as u64 && finished == b.jobs {
                return anyhow::Ok((b.statuses.clone(), most_running));
            }
            if Instant::now() > deadline {
                bail!("the batch did not finish within an hour: {:?}", b.statuses);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })?;
    let wall = started.elapsed();
    let (peak_rss_kb, cpu) = util::usage(pid);
    let m = Measured {
        wall,
        peak_rss_kb,
        cpu,
    };
    // Stop the daemon as systemd would (SIGTERM), by its process id.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if let Some(mut c) = guard.0.take() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if statuses.len() != 1 || statuses[0].0 != JobStatus::Completed.label() {
        bail!(
            "not every job completed: {statuses:?}\ndaemon log:\n{}",
            log_tail()
        );
    }

    // Every destination mailbox, four at a time.
    let t = Instant::now();
    let reports = rt.block_on(async {
        futures_util::stream::iter(corpora.iter().enumerate().map(|(i, corpus)| {
            let (src, dst) = (&src, &dst);
            async move {
                let user = format!("m{:03}", i + 1);
                let report = testbed::verify(
                    &src.account(&user)?,
                    &dst.account(&format!("{user}@example.org"))?,
                    &corpus.mapping_to(dst),
                )
                .await?;
                anyhow::Ok((user, report))
            }
        }))
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
    });
    for r in reports {
        let (user, report) = r?;
        util::exact(&report, &format!("mailbox {user}"))?;
    }
    println!(
        "all {n} destination mailboxes verified exact ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    println!("\n{}", util::ROW_HEADER);
    println!("{}", util::row("daemon", &m, messages as f64, bytes as f64));
    println!(
        "batch of {n} jobs created in {:.2} s (included above); at most {most_running} jobs seen running at once",
        created.as_secs_f64()
    );
    let rss = util::mb(m.peak_rss_kb);
    println!(
        "daemon peak RSS {rss:.1} MB: {} the {TARGET_RSS_MB:.0} MB target",
        if rss < TARGET_RSS_MB {
            "within"
        } else {
            "ABOVE"
        }
    );
    Ok(())
}
