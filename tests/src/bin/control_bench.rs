//! The control plane under load: one daemon holding N queued jobs (1,000 by default; 50,000,
//! an Exchange batch's limit, with `--jobs 50000 --create batch`) while 100 clients follow
//! every job's updates over the socket. Prints the creation time, the store's size on disk,
//! the daemon's memory (VmRSS and VmHWM), the latency of `Status` calls (p50, p99), and of
//! `List`: whole, and page by page over the socket and over D-Bus (a private dbus-daemon).
//!
//! `cargo run --release -p migrated-tests --bin control_bench -- [--jobs N] [--followers N]
//! [--calls N] [--create single|batch] [--hold window|host] [--page N] [--no-dbus]` (builds the
//! daemon first with `cargo build --release --workspace`). `--create single`: one `Create`
//! request per job, each stored before the next is sent; `--create batch`: one `CreateBatch` of
//! N CSV rows, as `migratectl batch create` sends it.
//!
//! What holds the jobs in the queue: `--hold window` (the default), a schedule window two hours
//! ahead; `--hold host`, no window but the per-host connection limit, which one slow run (a
//! 12 MB inbox at 0.02 MB/s) fills while three slots stay free, so every scheduler pass has
//! 50,000 jobs it may start and none it can. Both measure turns of the daemon's loop that run
//! a scheduler pass: `Act Pause` and `Act Resume` of queued jobs, each followed by a pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use migrated_core::{JobSpec, JobStatus};
use migrated_ipc::{Client, JobSummary, Request, Response};
use testbed::{Dovecot, DovecotOptions};

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .with_context(|| format!("{name} needs a number"))?
            .parse()?),
        None => Ok(default),
    }
}

fn endpoint(d: &Dovecot) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "host": "127.0.0.1",
        "port": d.imap_port(),
        "security": "plain",
        "user": "alice",
        "password": d.password("alice")?,
    }))
}

/// A child process killed when the benchmark ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `VmRSS` and `VmHWM` of a process, in MB.
fn memory(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .context("a number of kB")?
            .parse()?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Bytes on disk under `dir` (`du -sk`), in MB.
fn disk_usage(dir: &Path) -> anyhow::Result<f64> {
    let out = Command::new("du").arg("-sk").arg(dir).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: f64 = text
        .split_whitespace()
        .next()
        .context("du printed nothing")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// A window that opens in two hours and lasts one: every job waits for it, as the mailboxes
/// of a weekend cutover wait for their night.
fn later_window() -> anyhow::Result<serde_json::Value> {
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 3600
        % 24;
    Ok(serde_json::json!([{
        "from": format!("{:02}:00", (hour + 2) % 24),
        "to": format!("{:02}:00", (hour + 3) % 24),
    }]))
}

/// Every job, page by page over the socket: the jobs and each page's latency.
async fn list_pages(
    c: &mut Client,
    page: usize,
) -> anyhow::Result<(Vec<JobSummary>, Vec<Duration>)> {
    let mut all = Vec::new();
    let mut times = Vec::new();
    let mut after = None;
    loop {
        let t = Instant::now();
        let reply = c
            .call(&Request::List {
                after: after.take(),
                limit: Some(page),
            })
            .await?;
        times.push(t.elapsed());
        match reply {
            Response::Jobs { jobs, next, .. } => {
                all.extend(jobs);
                match next {
                    Some(n) => after = Some(n),
                    None => return Ok((all, times)),
                }
            }
            other => bail!("unexpected list reply {other:?}"),
        }
    }
}

/// Every job, page by page over D-Bus (`ListPage`): the number of jobs and each page's
/// latency.
async fn dbus_pages(
    m: &migrated_ipc::dbus::ManagerProxy<'_>,
    page: u32,
) -> anyhow::Result<(Vec<JobSummary>, Vec<Duration>)> {
    let mut all = Vec::new();
    let mut times = Vec::new();
    let mut after = String::new();
    loop {
        let t = Instant::now();
        let (jobs, next) = m.list_page(&after, page).await?;
        times.push(t.elapsed());
        let jobs: Vec<JobSummary> = serde_json::from_str(&jobs)?;
        all.extend(jobs);
        if next.is_empty() {
            return Ok((all, times));
        }
        after = next;
    }
}

/// A private session bus, as the tests start one.
fn start_bus(dir: &Path) -> anyhow::Result<(Killed, String)> {
    let address = format!("unix:path={}/bus", dir.display());
    let child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("dbus-daemon (apt-get install dbus-daemon, or --no-dbus)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("bus").exists() {
        if Instant::now() > deadline {
            bail!("dbus-daemon did not listen");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((Killed(child), address))
}

fn every_job_once(list: &[JobSummary], jobs: usize, how: &str) -> anyhow::Result<()> {
    let ids: std::collections::HashSet<&str> = list.iter().map(|j| j.id.as_str()).collect();
    if list.len() != jobs || ids.len() != jobs {
        bail!(
            "{how}: {} rows, {} distinct jobs, {jobs} expected",
            list.len(),
            ids.len()
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let jobs = arg(&args, "--jobs", 1000)?;
    let followers = arg(&args, "--followers", 100)?;
    let calls = arg(&args, "--calls", 2000)?;
    let page = arg(&args, "--page", 1000)?;
    let dbus = !args.iter().any(|a| a == "--no-dbus");
    let by_host = match args.iter().position(|a| a == "--hold") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("host") => true,
            Some("window") => false,
            other => bail!("--hold takes window or host, not {other:?}"),
        },
        None => false,
    };
    let batch = match args.iter().position(|a| a == "--create") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("batch") => true,
            Some("single") => false,
            other => bail!("--create takes single or batch, not {other:?}"),
        },
        None => false,
    };
    let bin: PathBuf = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("migrated");
    if !bin.exists() {
        bail!("{} is missing: build the workspace first", bin.display());
    }
    let src = Dovecot::start_blocking(DovecotOptions::default())?;
    let dst = Dovecot::start_blocking(DovecotOptions::default())?;
    if by_host {
        // The first job's inbox, copied slowly: it keeps the source host's connections taken.
        testbed::corpus::write_folder(
            &src,
            "alice",
            &testbed::corpus::FolderSpec {
                messages: 400,
                path: vec!["INBOX".into()],
                min_size: 20_000,
                max_size: 39_000,
                ..Default::default()
            },
        )?;
    }
    let state = std::env::temp_dir().join(format!("migrated-control-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(state.join("bus"))?;
    let socket = state.join("run/migrated.sock");
    let bus = if dbus {
        Some(start_bus(&state.join("bus"))?)
    } else {
        None
    };
    // One job runs at a time: the others stay queued, as in a large batch (held by the host's
    // connections with --hold host, three slots free).
    let mut daemon = Command::new(&bin);
    daemon
        .arg("--state-dir")
        .arg(state.join("store"))
        .arg("--socket")
        .arg(&socket);
    if by_host {
        daemon.args(["--max-jobs", "4", "--max-connections-per-host", "2"]);
    } else {
        daemon.args(["--max-jobs", "1"]);
    }
    daemon
        .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .env("MIGRATED_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match &bus {
        Some((_, address)) => {
            daemon
                .env("MIGRATED_BUS", "session")
                .env("DBUS_SESSION_BUS_ADDRESS", address);
        }
        None => {
            daemon.args(["--bus", "none"]);
        }
    }
    let daemon = Killed(daemon.spawn()?);
    let pid = daemon.0.id();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&socket).await.is_err() {
            if Instant::now() > deadline {
                bail!("the daemon did not listen");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (rss, _) = memory(pid)?;
        println!("daemon started: VmRSS {rss:.1} MB");
        let t = Instant::now();
        let mut c = Client::connect(&socket).await?;
        let (source, destination) = (endpoint(&src)?, endpoint(&dst)?);
        let window = if by_host {
            serde_json::json!([])
        } else {
            later_window()?
        };
        let limits = if by_host {
            serde_json::json!({ "max_mbps": 0.02 })
        } else {
            serde_json::json!({})
        };
        let names: Vec<String> = if batch {
            // One batch: every row waits for the template's window.
            let template: JobSpec = serde_json::from_value(serde_json::json!({
                "name": "bench",
                "source": { "host": "127.0.0.1", "port": src.imap_port(), "security": "plain" },
                "destination": destination,
                "schedule": { "windows": window },
                "limits": limits,
            }))?;
            let password = src.password("alice")?;
            // Every row logs in as alice on both sides (the test beds' user), so a job that
            // starts can run.
            let mut csv = String::from("EmailAddress,UserName,Password,DestinationUserName\n");
            for i in 0..jobs {
                csv.push_str(&format!("u{i:05}@example.org,alice,{password},alice\n"));
            }
            c.call(&Request::CreateBatch {
                name: "bench".into(),
                template: Box::new(template),
                csv,
            })
            .await?;
            (0..jobs)
                .map(|i| format!("bench/u{i:05}@example.org"))
                .collect()
        } else {
            for i in 0..jobs {
                // Every job but the first waits for its window.
                let spec: JobSpec = serde_json::from_value(serde_json::json!({
                    "name": format!("mailbox-{i:05}"),
                    "source": source,
                    "destination": destination,
                    "schedule": { "windows": if i == 0 { serde_json::json!([]) } else { window.clone() } },
                    "limits": limits,
                }))?;
                c.call(&Request::Create {
                    spec: Box::new(spec),
                })
                .await?;
            }
            (0..jobs).map(|i| format!("mailbox-{i:05}")).collect()
        };
        let created = t.elapsed();
        println!(
            "{jobs} jobs created ({}) in {:.1} s ({:.2} ms each)",
            if batch {
                "one CreateBatch of that many CSV rows"
            } else {
                "one Create request each"
            },
            created.as_secs_f64(),
            ms(created) / jobs as f64
        );
        // Let the store settle its journal before measuring it.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (rss, hwm) = memory(pid)?;
        println!(
            "store {:.1} MB on disk (du of the state directory); daemon VmRSS {rss:.1} MB, VmHWM {hwm:.1} MB",
            disk_usage(&state.join("store"))?
        );
        // Followers of every job's updates.
        let mut tasks = Vec::new();
        for _ in 0..followers {
            let mut sub = Client::connect(&socket).await?.subscribe(None).await?;
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while sub.next().await.is_ok() {
                    n += 1;
                }
                n
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (list, pages) = list_pages(&mut c, page).await?;
        every_job_once(&list, jobs, "paged list over the socket")?;
        let queued: Vec<&str> = list
            .iter()
            .filter(|j| j.status == Some(JobStatus::Queued))
            .map(|j| j.name.as_str())
            .collect();
        let mut others = std::collections::BTreeMap::new();
        for j in list.iter().filter(|j| j.status != Some(JobStatus::Queued)) {
            *others.entry(format!("{:?}", j.status)).or_insert(0) += 1;
        }
        println!(
            "{} jobs queued (the others: {others:?}), {followers} clients following every job",
            queued.len()
        );
        if let Some(failed) = list.iter().find(|j| j.status == Some(JobStatus::Failed)) {
            println!(
                "a job failed: {} ({})",
                failed.name,
                failed.error.as_deref().unwrap_or("no error given")
            );
        }
        if queued.is_empty() {
            bail!("no job stayed queued");
        }
        // Turns of the loop with a scheduler pass: pause and resume queued jobs.
        let mut turns = Vec::with_capacity(2 * calls.min(500));
        for i in 0..calls.min(500) {
            let job = queued[(i * 7919) % queued.len()].to_owned();
            for action in [migrated_core::Action::Pause, migrated_core::Action::Resume] {
                let t = Instant::now();
                c.call(&Request::Act {
                    job: job.clone(),
                    action,
                })
                .await?;
                turns.push(t.elapsed());
            }
        }
        turns.sort();
        println!(
            "Pause or Resume of a queued job (a scheduler pass each): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} calls",
            ms(percentile(&turns, 0.50)),
            ms(percentile(&turns, 0.99)),
            ms(turns.last().copied().unwrap_or_default()),
            turns.len()
        );
        let mut latencies = Vec::with_capacity(calls);
        for i in 0..calls {
            let job = names[(i * 7919) % jobs].clone();
            let t = Instant::now();
            match c.call(&Request::Status { job }).await? {
                Response::Job { .. } => {}
                other => bail!("unexpected reply {other:?}"),
            }
            latencies.push(t.elapsed());
        }
        latencies.sort();
        println!(
            "Status: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {calls} calls",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
        );
        if percentile(&latencies, 0.99) > Duration::from_millis(50) {
            println!("Status p99 is above the 50 ms target");
        }
        let t = Instant::now();
        let whole = c
            .call(&Request::List {
                after: None,
                limit: None,
            })
            .await;
        let whole_time = t.elapsed();
        match whole {
            Ok(Response::Jobs { jobs: list, .. }) => {
                every_job_once(&list, jobs, "whole list")?;
                println!("List of all {jobs} jobs in one reply: {:.1} ms", ms(whole_time));
            }
            Ok(other) => bail!("unexpected list reply {other:?}"),
            Err(e) => println!(
                "List of all {jobs} jobs in one reply: refused after {:.1} ms: {e}",
                ms(whole_time)
            ),
        }
        // The whole list again, in pages, with the followers still subscribed.
        let t = Instant::now();
        let (list, mut pages2) = list_pages(&mut c, page).await?;
        let total = t.elapsed();
        every_job_once(&list, jobs, "paged list over the socket")?;
        pages2.extend(pages);
        pages2.sort();
        println!(
            "List in pages of {page} over the socket: {:.1} ms for all {jobs} ({} pages); a page p50 {:.2} ms, max {:.2} ms",
            ms(total),
            jobs.div_ceil(page),
            ms(percentile(&pages2, 0.5)),
            ms(pages2.last().copied().unwrap_or_default()),
        );
        if total > Duration::from_secs(1) {
            println!("the paged list is above the 1 s target");
        }
        if let Some((_, address)) = &bus {
            let conn = zbus::connection::Builder::address(address.as_str())
                .build()
                .await?;
            let m = migrated_ipc::dbus::ManagerProxy::new(&conn).await?;
            let t = Instant::now();
            let (list, mut times) = dbus_pages(&m, page as u32).await?;
            let total = t.elapsed();
            every_job_once(&list, jobs, "paged list over D-Bus")?;
            times.sort();
            println!(
                "ListPage in pages of {page} over D-Bus: {:.1} ms for all {jobs}; a page p50 {:.2} ms, max {:.2} ms",
                ms(total),
                ms(percentile(&times, 0.5)),
                ms(times.last().copied().unwrap_or_default()),
            );
            let mut status = Vec::new();
            for i in 0..calls.min(500) {
                let t = Instant::now();
                m.status(&names[(i * 7919) % jobs]).await?;
                status.push(t.elapsed());
            }
            status.sort();
            println!(
                "Status over D-Bus: p50 {:.2} ms, p99 {:.2} ms over {} calls",
                ms(percentile(&status, 0.5)),
                ms(percentile(&status, 0.99)),
                status.len()
            );
        }
        let (rss, hwm) = memory(pid)?;
        println!("daemon at the end: VmRSS {rss:.1} MB, VmHWM {hwm:.1} MB");
        if hwm > 512.0 {
            println!("the daemon's peak memory is above the 512 MB target");
        }
        for t in tasks {
            t.abort();
        }
        anyhow::Ok(())
    })?;
    drop(daemon);
    drop(bus);
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
