//! What every part of the benchmark shares: measuring a process, job files, printing rows.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testbed::{Corpus, Dovecot, VerifyReport};

/// What one measured process did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) wall: Duration,
    pub(crate) peak_rss_kb: u64,
    pub(crate) cpu: Duration,
}

/// Peak RSS (VmHWM, kB) and CPU time (user + system) of a live process so far; zeros once it is
/// gone. VmHWM only grows, so reading it just before the process ends gives its lifetime peak.
pub(crate) fn usage(pid: u32) -> (u64, Duration) {
    let mut peak = 0;
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("VmHWM:") {
                peak = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            }
        }
    }
    let mut ticks = 0;
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name: utime and stime are the 12th and 13th.
        if let Some(rest) = stat.rsplit(')').next() {
            let f: Vec<&str> = rest.split_whitespace().collect();
            ticks = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    (peak, Duration::from_millis(ticks * 10))
}

/// Runs a command, sampling its peak RSS (VmHWM) and CPU time from /proc until it exits.
pub(crate) fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    let (mut peak, mut cpu) = (0, Duration::ZERO);
    loop {
        let (p, c) = usage(pid);
        peak = peak.max(p);
        cpu = cpu.max(c);
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{cmd:?} failed: {status}");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Measured {
        wall: started.elapsed(),
        peak_rss_kb: peak,
        cpu,
    })
}

pub(crate) fn secret_file(dir: &Path, name: &str, secret: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n"))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p)
}

/// An account on a test Dovecot, on its plain port (loopback only).
pub(crate) fn endpoint(d: &Dovecot, user: &str, secret: &str) -> migrated_imap::Endpoint {
    migrated_imap::Endpoint {
        host: d.host().to_owned(),
        port: d.imap_port(),
        security: migrated_imap::Security::Plain,
        cert_check: migrated_imap::CertCheck::System,
        auth: migrated_imap::AuthMethod::Login,
        user: user.to_owned(),
        secret: migrated_imap::Secret::new(secret),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(60),
    }
}

/// A job file (plain IMAP on loopback) from `src_user` to `dst_user`, with the passwords in
/// files beside it.
pub(crate) fn job_file(
    dir: &Path,
    id: &str,
    (src, src_user): (&Dovecot, &str),
    (dst, dst_user): (&Dovecot, &str),
) -> anyhow::Result<PathBuf> {
    job_file_via(
        dir,
        id,
        (src, src_user, src.imap_port()),
        (dst, dst_user, dst.imap_port()),
    )
}

/// As [`job_file`], reaching each server on the given port (a [`testbed::LinkProxy`]'s).
pub(crate) fn job_file_via(
    dir: &Path,
    id: &str,
    (src, src_user, src_port): (&Dovecot, &str, u16),
    (dst, dst_user, dst_port): (&Dovecot, &str, u16),
) -> anyhow::Result<PathBuf> {
    let src_pass = secret_file(dir, &format!("{id}.src.pass"), src.password(src_user)?)?;
    let dst_pass = secret_file(dir, &format!("{id}.dst.pass"), dst.password(dst_user)?)?;
    let job = dir.join(format!("{id}.toml"));
    std::fs::write(
        &job,
        format!(
            "id = \"{id}\"\n[source]\nhost = \"127.0.0.1\"\nport = {src_port}\nsecurity = \"plain\"\nuser = \"{src_user}\"\npassword_file = \"{}\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {dst_port}\nsecurity = \"plain\"\nuser = \"{dst_user}\"\npassword_file = \"{}\"\n",
            src_pass.display(),
            dst_pass.display()
        ),
    )?;
    Ok(job)
}

/// `migrated migrate` of one job with its own store, quiet.
pub(crate) fn migrate(bin: &Path, job: &Path, store: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .arg("migrate")
        .arg("--job")
        .arg(job)
        .arg("--store")
        .arg(store)
        .arg("--quiet")
        .stdout(Stdio::null());
    c
}

/// Lets Dovecot index every folder of a corpus once, so no measured tool pays for it.
pub(crate) fn index(
    rt: &tokio::runtime::Runtime,
    d: &Dovecot,
    user: &str,
    corpus: &Corpus,
) -> anyhow::Result<()> {
    rt.block_on(async {
        let mut s = testbed::login(&d.account(user)?).await?;
        for name in corpus.folders.keys() {
            s.examine(name).await?;
        }
        s.logout().await
    })
}

/// Fails loudly unless the report is exact.
pub(crate) fn exact(report: &VerifyReport, what: &str) -> anyhow::Result<()> {
    if !report.is_exact() {
        bail!("{what} is NOT exact:\n{report}");
    }
    Ok(())
}

pub(crate) const ROW_HEADER: &str =
    "tool                   seconds   messages/s     MB/s  peak RSS (MB)    CPU (s)";

/// One row of the figures: seconds, messages/s, MB/s, peak RSS, CPU.
pub(crate) fn row(name: &str, m: &Measured, messages: f64, bytes: f64) -> String {
    let s = m.wall.as_secs_f64();
    format!(
        "{name:<18} {s:>11.2} {:>12.0} {:>8.1} {:>14.1} {:>10.2}",
        messages / s,
        bytes / 1e6 / s,
        mb(m.peak_rss_kb),
        m.cpu.as_secs_f64()
    )
}

/// kB to MB (MiB, as the kernel's kB are KiB).
pub(crate) fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}
