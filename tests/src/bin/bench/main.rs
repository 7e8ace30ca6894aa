//! The copy benchmark: a generated corpus (20,000 messages by default) between two private
//! Dovecots, moved by `migrated`, by mbsync (Debian `isync`, IMAP to IMAP) and by Dovecot's own
//! `doveadm backup` over imapc, each measured for messages/s, MB/s, peak RSS and CPU time; then
//! a no-op delta, the cost of the plugin ABI, 100 mailboxes at once in one daemon, a mailbox
//! with one 30 MB message, folders of 2,000 and 100,000 messages, and what COMPRESS=DEFLATE
//! would cost. Every copy is verified exact, or the benchmark fails.
//!
//! `scripts/bench [--messages N] [--only PART,...] [--skip-PART] [--quick]` (builds in release
//! mode first; `--help` lists the parts and sizes). Figures go to stdout.

mod deflate;
mod doveadm;
mod folders;
mod large;
mod mailboxes;
mod util;
mod wan;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};
use util::{Measured, measure, row, secret_file};

/// The parts, in the order they run. `--skip-NAME` leaves one out, `--only NAME,...` runs only
/// those.
const PARTS: [(&str, &str); 9] = [
    (
        "copy",
        "migrated migrate on the corpus, verified exact, then a no-op delta",
    ),
    ("mbsync", "mbsync on the same corpus"),
    (
        "doveadm",
        "doveadm backup over imapc on the same corpus, verified exact",
    ),
    (
        "abi",
        "in-process source vs the plugin .so, alternating, each verified exact",
    ),
    (
        "mailboxes",
        "100 mailboxes of 200 messages at once in one daemon (a CSV batch)",
    ),
    (
        "large-message",
        "peak RSS with and without one 30 MB message",
    ),
    (
        "folders",
        "one folder of 2,000 and one of 100,000 small messages",
    ),
    (
        "deflate",
        "raw deflate (levels 1 and 6) over the corpus; does Dovecot offer COMPRESS",
    ),
    (
        "wan",
        "an 86 MB mailbox through a delay-and-rate link (--rtt-ms, --mbit): migrated, its no-op delta, mbsync",
    ),
];

/// Command-line options.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    messages: usize,
    size_factor: f64,
    parts: Vec<&'static str>,
    pub(crate) mailboxes: usize,
    pub(crate) mailbox_messages: usize,
    pub(crate) large_message_mb: f64,
    pub(crate) small_folder: usize,
    pub(crate) big_folder: usize,
    doveadm_fsync_never: bool,
    pub(crate) wan_rtts_ms: Vec<u64>,
    pub(crate) wan_mbit: Option<u64>,
    pub(crate) wan_messages: usize,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            messages: if quick { 2000 } else { 20_000 },
            // 1.7 makes 20,000 messages about 1.1 GB, the size of the corpus the peers were
            // measured on.
            size_factor: 1.7,
            parts: PARTS.iter().map(|(p, _)| *p).collect(),
            mailboxes: if quick { 10 } else { 100 },
            mailbox_messages: 200,
            large_message_mb: 30.0,
            small_folder: 2000,
            big_folder: if quick { 10_000 } else { 100_000 },
            doveadm_fsync_never: false,
            wan_rtts_ms: vec![0, 10, 50, 150],
            wan_mbit: Some(200),
            wan_messages: if quick { 300 } else { 1000 },
        };
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            let mut value = || {
                i += 1;
                args.get(i)
                    .with_context(|| format!("{a} needs a value"))
                    .cloned()
            };
            match a {
                "--quick" => {}
                "--doveadm-fsync-never" => o.doveadm_fsync_never = true,
                "--help" | "-h" => {
                    println!(
                        "scripts/bench [--quick] [--only PART,...] [--skip-PART]... [--messages N] [--size-factor F]\n\
                         \x20             [--mailboxes N] [--mailbox-messages N] [--large-message-mb N]\n\
                         \x20             [--small-folder N] [--big-folder N] [--doveadm-fsync-never]\n\
                         \x20             [--rtt-ms MS,...] [--mbit N (0: unlimited)] [--wan-messages N]\n\n\
                         --quick: 2,000 corpus messages, 10 mailboxes, a 10,000-message big folder\n\nparts:"
                    );
                    for (p, what) in PARTS {
                        println!("  {p:<14} {what}");
                    }
                    std::process::exit(0);
                }
                "--messages" => o.messages = value()?.parse()?,
                "--size-factor" => o.size_factor = value()?.parse()?,
                "--mailboxes" => o.mailboxes = value()?.parse()?,
                "--mailbox-messages" => o.mailbox_messages = value()?.parse()?,
                "--large-message-mb" => o.large_message_mb = value()?.parse()?,
                "--small-folder" => o.small_folder = value()?.parse()?,
                "--big-folder" => o.big_folder = value()?.parse()?,
                "--rtt-ms" => {
                    o.wan_rtts_ms = value()?
                        .split(',')
                        .map(|v| v.trim().parse())
                        .collect::<Result<_, _>>()?;
                }
                "--mbit" => o.wan_mbit = Some(value()?.parse()?).filter(|m| *m > 0),
                "--wan-messages" => o.wan_messages = value()?.parse()?,
                "--only" => {
                    let list = value()?;
                    let mut parts = Vec::new();
                    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        parts.push(part(name)?);
                    }
                    o.parts.retain(|p| parts.contains(p));
                }
                other => match other.strip_prefix("--skip-") {
                    Some(name) => {
                        let p = part(name)?;
                        o.parts.retain(|q| *q != p);
                    }
                    None => bail!("unknown argument {other:?} (--help lists them)"),
                },
            }
            i += 1;
        }
        Ok(o)
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.contains(&part)
    }
}

fn part(name: &str) -> anyhow::Result<&'static str> {
    PARTS
        .iter()
        .map(|(p, _)| *p)
        .find(|p| *p == name)
        .with_context(|| {
            let names: Vec<&str> = PARTS.iter().map(|(p, _)| *p).collect();
            format!("unknown part {name:?}; the parts: {}", names.join(", "))
        })
}

/// The release binaries beside this one.
pub(crate) fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join(name);
    if !bin.exists() {
        bail!(
            "{} is missing: run scripts/bench, which builds it",
            bin.display()
        );
    }
    Ok(bin)
}

fn main() -> anyhow::Result<()> {
    let opts = Options::parse()?;
    println!("parts: {}", opts.parts.join(", "));
    let bin = binary("migrated")?;
    // Missing tools fail now, not after minutes of other parts.
    if opts.runs("mailboxes") {
        binary("migratectl")?;
    }
    if opts.runs("doveadm") && Command::new("doveadm").arg("help").output().is_err() {
        bail!("doveadm is missing: apt-get install dovecot-core (or pass --skip-doveadm)");
    }
    if opts.runs("mbsync") && Command::new("mbsync").arg("--version").output().is_err() {
        bail!("mbsync is missing: apt-get install isync (or pass --skip-mbsync)");
    }
    let rt = tokio::runtime::Runtime::new()?;
    let work = std::env::temp_dir().join(format!("migrated-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&opts, &bin, &rt, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(
    opts: &Options,
    bin: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    work: &std::path::Path,
) -> anyhow::Result<()> {
    if ["copy", "mbsync", "doveadm", "abi", "deflate"]
        .iter()
        .any(|p| opts.runs(p))
    {
        corpus_parts(opts, bin, rt, work)?;
    }
    if opts.runs("mailboxes") {
        mailboxes::run(opts, rt, work)?;
    }
    if opts.runs("large-message") {
        large::run(opts, bin, rt, work)?;
    }
    if opts.runs("folders") {
        folders::run(opts, bin, rt, work)?;
    }
    if opts.runs("wan") {
        wan::run(opts, bin, rt, work)?;
    }
    Ok(())
}

/// The parts on the generated corpus: migrated, mbsync, doveadm backup, the plugin ABI, and
/// deflate over its bodies.
fn corpus_parts(
    opts: &Options,
    bin: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    work: &std::path::Path,
) -> anyhow::Result<()> {
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
            messages: opts.messages,
            max_attachment: 20 * 1024 * 1024,
            size_factor: opts.size_factor,
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
    // Let Dovecot index the source once, so no tool pays for it.
    util::index(rt, &src, "alice", &corpus)?;

    let src_pass = secret_file(work, "src.pass", "alice-secret")?;
    let mut rows: Vec<(&str, Measured)> = Vec::new();
    let mut copy = None;
    if opts.runs("copy") {
        let job = util::job_file(work, "bench", (&src, "alice"), (&dst, "alice"))?;
        let store = work.join("store");
        let m = measure(&mut util::migrate(bin, &job, &store))?;
        let report = rt.block_on(testbed::verify(
            &src.account("alice")?,
            &dst.account("alice")?,
            &corpus.mapping_to(&dst),
        ))?;
        util::exact(&report, "migrated's copy")?;
        let delta = measure(&mut util::migrate(bin, &job, &store))?;
        println!(
            "migrated: {:.2} s, verified exact; no-op delta {:.3} s",
            m.wall.as_secs_f64(),
            delta.wall.as_secs_f64()
        );
        rows.push(("migrated", m));
        copy = Some((delta, report.folders.len()));
    }

    if opts.runs("mbsync") {
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
            secret_file(work, "bob.pass", "bob-secret")?.display(),
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

    if opts.runs("doveadm") {
        let m = doveadm::run(&src, &corpus, rt, work, opts.doveadm_fsync_never)?;
        rows.push(("doveadm backup", m));
    }

    if !rows.is_empty() {
        println!("\n{}", util::ROW_HEADER);
        for (name, r) in &rows {
            println!("{}", row(name, r, n, bytes));
        }
        let wall = |name: &str| {
            rows.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, m)| m.wall.as_secs_f64())
        };
        if let Some(m) = wall("migrated") {
            for peer in ["mbsync", "doveadm backup"] {
                if let Some(p) = wall(peer) {
                    println!("\nmigrated / {peer} throughput (messages/s): {:.2}x", p / m);
                }
            }
        }
    }
    if let Some((delta, folders)) = copy {
        println!(
            "no-op delta over the migrated mailbox: {:.3} s (whole process: start, login, scan), peak RSS {:.1} MB",
            delta.wall.as_secs_f64(),
            util::mb(delta.peak_rss_kb)
        );
        println!(
            "verification: exact ({folders} folders, counts, body hashes, flags, keywords, INTERNALDATE)"
        );
    }

    // The cost of the plugin ABI: the same engine in this process, reading the source through
    // the IMAP source linked in (as before the ABI) and through the plugin loaded from its .so,
    // alternately, each into an empty account, each verified exact.
    if opts.runs("abi") {
        println!("\nplugin ABI: in-process source vs the .so, same engine, alternating runs");
        let source = util::endpoint(&src, "alice", "alice-secret");
        let mut abi_rows = Vec::new();
        for (user, through_abi) in [
            ("carol", false),
            ("dave", true),
            ("erin", false),
            ("frank", true),
        ] {
            let dest = migrated_imap::ImapDestination::new(util::endpoint(
                &dst,
                user,
                &format!("{user}-secret"),
            ));
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
            util::exact(&report, &format!("the copy to {user}"))?;
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

    if opts.runs("deflate") {
        let migrated_mbps = rows
            .iter()
            .find(|(n, _)| *n == "migrated")
            .map(|(_, m)| bytes / 1e6 / m.wall.as_secs_f64());
        deflate::run(&src, &corpus, rt, migrated_mbps)?;
    }
    Ok(())
}
