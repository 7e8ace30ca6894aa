//! The copy benchmark: a generated corpus (20,000 messages by default) between two private
//! Dovecots, moved by `migrated` and by mbsync (Debian `isync`, IMAP to IMAP), each measured
//! for messages/s, MB/s, peak RSS and CPU time; then a no-op delta. migrated's copy is verified
//! exact, or the benchmark fails.
//!
//! `scripts/bench [--messages N]` (builds in release mode first). Figures go to stdout.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};

/// What one measured process did.
struct Measured {
    wall: Duration,
    peak_rss_kb: u64,
    cpu: Duration,
}

/// Runs a command, sampling its peak RSS (VmHWM) and CPU time from /proc until it exits.
fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    let (mut peak, mut ticks) = (0, 0);
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in status.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    peak = peak.max(v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
                }
            }
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name: utime and stime are the 12th and 13th.
            if let Some(rest) = stat.rsplit(')').next() {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let t: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                    + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                ticks = ticks.max(t);
            }
        }
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
        cpu: Duration::from_millis(ticks * 10),
    })
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n"))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p)
}

/// An account on a test Dovecot, on its plain port (loopback only).
fn endpoint(d: &Dovecot, user: &str, secret: &str) -> migrated_imap::Endpoint {
    migrated_imap::Endpoint {
        host: d.host().to_owned(),
        port: d.imap_port(),
        security: migrated_imap::Security::Plain,
        cert_check: migrated_imap::CertCheck::System,
        auth: migrated_imap::AuthMethod::Login,
        user: user.to_owned(),
        secret: migrated_imap::Secret::new(secret),
        timeout: Duration::from_secs(60),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let messages: usize = match args.iter().position(|a| a == "--messages") {
        Some(i) => args
            .get(i + 1)
            .context("--messages needs a number")?
            .parse()?,
        None => 20_000,
    };
    // 1.7 makes 20,000 messages about 1.1 GB, the size of the corpus the peers were measured on.
    let size_factor: f64 = match args.iter().position(|a| a == "--size-factor") {
        Some(i) => args
            .get(i + 1)
            .context("--size-factor needs a number")?
            .parse()?,
        None => 1.7,
    };
    let skip_mbsync = args.iter().any(|a| a == "--skip-mbsync");
    let bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("migrated");
    if !bin.exists() {
        bail!(
            "{} is missing: run scripts/bench, which builds it",
            bin.display()
        );
    }

    let src = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        ..DovecotOptions::default()
    })?;
    let dst = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: vec![
            ("alice".into(), "alice-secret".into()),
            ("bob".into(), "bob-secret".into()),
            ("carol".into(), "carol-secret".into()),
            ("dave".into(), "dave-secret".into()),
            ("erin".into(), "erin-secret".into()),
            ("frank".into(), "frank-secret".into()),
        ],
        ..DovecotOptions::default()
    })?;
    let t = Instant::now();
    let corpus = testbed::write_maildir(
        &src,
        "alice",
        &CorpusSpec {
            seed: 42,
            messages,
            max_attachment: 20 * 1024 * 1024,
            size_factor,
        },
    )?;
    let (n, bytes) = (corpus.total_messages() as f64, corpus.total_bytes() as f64);
    println!(
        "corpus: {} messages, {:.1} MB in {} folders (written in {:.1} s)",
        corpus.total_messages(),
        bytes / 1e6,
        corpus.folders.len(),
        t.elapsed().as_secs_f64()
    );
    // Let Dovecot index the source once, so neither tool pays for it.
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut s = testbed::login(&src.account("alice")?).await?;
        for name in corpus.folders.keys() {
            s.examine(name).await?;
        }
        s.logout().await
    })?;

    let work = std::env::temp_dir().join(format!("migrated-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let src_pass = secret_file(&work, "src.pass", "alice-secret")?;
    let dst_pass = secret_file(&work, "dst.pass", "alice-secret")?;
    let job = work.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "id = \"bench\"\n[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n",
            src.imap_port(),
            src_pass.display(),
            dst.imap_port(),
            dst_pass.display()
        ),
    )?;
    let store = work.join("store");
    let migrated = |quiet: bool| {
        let mut c = Command::new(&bin);
        c.env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
            .arg("migrate")
            .arg("--job")
            .arg(&job)
            .arg("--store")
            .arg(&store)
            .stdout(Stdio::null());
        if quiet {
            c.arg("--quiet");
        }
        c
    };

    let m = measure(&mut migrated(true))?;
    let report = rt.block_on(testbed::verify(
        &src.account("alice")?,
        &dst.account("alice")?,
        &corpus.mapping_to(&dst),
    ))?;
    if !report.is_exact() {
        bail!("migrated's copy is NOT exact:\n{report}");
    }
    let delta = measure(&mut migrated(true))?;
    println!(
        "migrated: {:.2} s, verified exact; no-op delta {:.3} s",
        m.wall.as_secs_f64(),
        delta.wall.as_secs_f64()
    );

    let mut rows = vec![("migrated", m)];
    if !skip_mbsync {
        if Command::new("mbsync").arg("--version").output().is_err() {
            bail!("mbsync is missing: apt-get install isync (or pass --skip-mbsync)");
        }
        let state = work.join("mbsync-state");
        std::fs::create_dir_all(&state)?;
        let conf = work.join("mbsyncrc");
        let mut f = std::fs::File::create(&conf)?;
        write!(
            f,
            "IMAPAccount src\nHost 127.0.0.1\nPort {}\nUser alice\nPassCmd \"cat {}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore src\nAccount src\n\n\
             IMAPAccount dst\nHost 127.0.0.1\nPort {}\nUser bob\nPassCmd \"cat {}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore dst\nAccount dst\n\n\
             Channel c\nFar :src:\nNear :dst:\nPatterns * !Archive !Drafts !Junk !Sent !Trash\nCreate Near\nSync Pull\nSyncState {}/\n",
            src.imap_port(),
            src_pass.display(),
            dst.imap_port(),
            secret_file(&work, "bob.pass", "bob-secret")?.display(),
            state.display()
        )?;
        drop(f);
        let mb = measure(
            Command::new("mbsync")
                .arg("-c")
                .arg(&conf)
                .arg("-a")
                .arg("-q")
                .stdout(Stdio::null()),
        )?;
        rows.push(("mbsync", mb));
    }

    println!(
        "\n{:<10} {:>10} {:>12} {:>8} {:>14} {:>10}",
        "tool", "seconds", "messages/s", "MB/s", "peak RSS (MB)", "CPU (s)"
    );
    for (name, r) in &rows {
        let s = r.wall.as_secs_f64();
        println!(
            "{name:<10} {s:>10.2} {:>12.0} {:>8.1} {:>14.1} {:>10.2}",
            n / s,
            bytes / 1e6 / s,
            r.peak_rss_kb as f64 / 1024.0,
            r.cpu.as_secs_f64()
        );
    }
    if let [(_, m), (_, mb)] = rows.as_slice() {
        println!(
            "\nmigrated / mbsync throughput: {:.2}x",
            mb.wall.as_secs_f64() / m.wall.as_secs_f64()
        );
    }
    println!(
        "no-op delta over the migrated mailbox: {:.3} s (whole process: start, login, scan), peak RSS {:.1} MB",
        delta.wall.as_secs_f64(),
        delta.peak_rss_kb as f64 / 1024.0
    );
    println!(
        "verification: exact ({} folders, counts, body hashes, flags, keywords, INTERNALDATE)",
        report.folders.len()
    );

    // The cost of the plugin ABI: the same engine in this process, reading the source through
    // the IMAP source linked in (as before the ABI) and through the plugin loaded from its .so,
    // alternately, each into an empty account, each verified exact.
    if !args.iter().any(|a| a == "--skip-abi") {
        println!("\nplugin ABI: in-process source vs the .so, same engine, alternating runs");
        let source = endpoint(&src, "alice", "alice-secret");
        let mut abi_rows = Vec::new();
        for (user, through_abi) in [
            ("carol", false),
            ("dave", true),
            ("erin", false),
            ("frank", true),
        ] {
            let dest = endpoint(&dst, user, &format!("{user}-secret"));
            let store_dir = work.join(format!("store-{user}"));
            let wall = rt.block_on(async {
                let store = migrated_store::Store::open(
                    &store_dir,
                    migrated_store::StoreKey::from_bytes([9; 32]),
                )?;
                let config = migrated_engine::CopyConfig::new(user);
                let quiet: migrated_engine::Observer = std::sync::Arc::new(|_| {});
                let t = Instant::now();
                if through_abi {
                    let s = testbed::plugins::imap_source(&source);
                    migrated_engine::Engine::new(s, dest, store, config, quiet)
                        .run()
                        .await?;
                } else {
                    let s = migrated_plugin_imap::ImapSource::new(source.clone());
                    migrated_engine::Engine::new(s, dest, store, config, quiet)
                        .run()
                        .await?;
                }
                anyhow::Ok(t.elapsed())
            })?;
            let report = rt.block_on(testbed::verify(
                &src.account("alice")?,
                &dst.account(user)?,
                &corpus.mapping_to(&dst),
            ))?;
            if !report.is_exact() {
                bail!("the copy to {user} is NOT exact:\n{report}");
            }
            let label = if through_abi {
                "plugin .so"
            } else {
                "in-process"
            };
            println!(
                "{label:<11} {:>8.2} s {:>8.0} messages/s (verified exact)",
                wall.as_secs_f64(),
                n / wall.as_secs_f64()
            );
            abi_rows.push((through_abi, wall.as_secs_f64()));
        }
        let mean = |abi: bool| {
            let v: Vec<f64> = abi_rows
                .iter()
                .filter(|r| r.0 == abi)
                .map(|r| r.1)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        println!(
            "through the ABI / in-process throughput: {:.3}",
            mean(false) / mean(true)
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
