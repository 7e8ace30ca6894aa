//! The control plane under load: one daemon holding 1,000 queued jobs while 100 clients follow
//! every job's updates over the socket; the latency of `Status` calls, p50 and p99.
//!
//! `cargo run --release -p migrated-tests --bin control_bench -- [--jobs N] [--followers N]
//! [--calls N]` (builds the daemon first with `cargo build --release --workspace`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use migrated_core::JobSpec;
use migrated_ipc::{Client, Request, Response};
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

struct DaemonProcess(Child);

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let jobs = arg(&args, "--jobs", 1000)?;
    let followers = arg(&args, "--followers", 100)?;
    let calls = arg(&args, "--calls", 2000)?;
    let bin: PathBuf = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("migrated");
    if !bin.exists() {
        bail!("{} is missing: build the workspace first", bin.display());
    }
    let src = Dovecot::start_blocking(DovecotOptions::default())?;
    let dst = Dovecot::start_blocking(DovecotOptions::default())?;
    let state = std::env::temp_dir().join(format!("migrated-control-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let socket = state.join("run/migrated.sock");
    // One job runs at a time: the others stay queued, as in a large batch.
    let _daemon = DaemonProcess(
        Command::new(&bin)
            .arg("--state-dir")
            .arg(&state)
            .arg("--socket")
            .arg(&socket)
            .args(["--bus", "none", "--max-jobs", "1"])
            .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
            .env("MIGRATED_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&socket).await.is_err() {
            if Instant::now() > deadline {
                bail!("the daemon did not listen");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = Instant::now();
        let mut c = Client::connect(&socket).await?;
        let (source, destination) = (endpoint(&src)?, endpoint(&dst)?);
        for i in 0..jobs {
            // Queued: every job but the first waits for a schedule window that opens in two
            // hours, as the mailboxes of a weekend cutover wait for their night.
            let hour = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
                / 3600
                % 24;
            let window = serde_json::json!([{
                "from": format!("{:02}:00", (hour + 2) % 24),
                "to": format!("{:02}:00", (hour + 3) % 24),
            }]);
            let spec: JobSpec = serde_json::from_value(serde_json::json!({
                "name": format!("mailbox-{i:04}"),
                "source": source,
                "destination": destination,
                "schedule": { "windows": if i == 0 { serde_json::json!([]) } else { window } },
            }))?;
            c.call(&Request::Create {
                spec: Box::new(spec),
            })
            .await?;
        }
        println!(
            "{jobs} jobs created in {:.1} s ({:.1} ms each)",
            t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64() * 1000.0 / jobs as f64
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
        let mut queued = 0;
        if let Response::Jobs { jobs: list, .. } = c.call(&Request::List).await? {
            queued = list
                .iter()
                .filter(|j| j.status == Some(migrated_core::JobStatus::Queued))
                .count();
        }
        println!("{queued} jobs queued, {followers} clients following every job");
        let mut latencies = Vec::with_capacity(calls);
        for i in 0..calls {
            let job = format!("mailbox-{:04}", (i * 7919) % jobs);
            let t = Instant::now();
            match c.call(&Request::Status { job }).await? {
                Response::Job { .. } => {}
                other => bail!("unexpected reply {other:?}"),
            }
            latencies.push(t.elapsed());
        }
        let t = Instant::now();
        match c.call(&Request::List).await? {
            Response::Jobs { jobs: list, .. } if list.len() == jobs => {}
            other => bail!("unexpected list reply {other:?}"),
        }
        let list = t.elapsed();
        latencies.sort();
        println!(
            "Status with {jobs} jobs and {followers} followers: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {calls} calls; List of all jobs {:.1} ms",
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            list.as_secs_f64() * 1000.0
        );
        let p99 = percentile(&latencies, 0.99);
        if p99 > Duration::from_millis(50) {
            println!("p99 is above the 50 ms target");
        }
        for t in tasks {
            t.abort();
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
