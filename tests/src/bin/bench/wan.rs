//! Across a wide-area link: a mailbox of about 86 MB (1,000 messages by default) copied by
//! `migrated migrate` and by mbsync through a [`testbed::LinkProxy`] in front of each server,
//! at each round trip of `--rtt-ms` (default 0,10,50,150) and the rate of `--mbit` (default
//! 200 Mbit/s each way; mbsync when it is installed); then migrated's no-op delta over the
//! same link. Every copy is verified
//! exact (directly, not through the link). The link's own bound, the bytes at its rate, is
//! printed beside them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, LinkModel, LinkProxy, english_special_use,
    german_special_use,
};

use crate::Options;
use crate::util::{self, measure, secret_file};

pub(crate) fn run(
    opts: &Options,
    bin: &Path,
    rt: &tokio::runtime::Runtime,
    work: &Path,
) -> anyhow::Result<()> {
    let runs = opts.wan_rtts_ms.len();
    let users: Vec<(String, String)> = (0..runs)
        .flat_map(|i| [format!("m{i}"), format!("s{i}")])
        .map(|u| (u.clone(), format!("{u}-secret")))
        .collect();
    let src = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        ..DovecotOptions::default()
    })?;
    let dst = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users,
        ..DovecotOptions::default()
    })?;
    let corpus = testbed::write_maildir(
        &src,
        "alice",
        &CorpusSpec {
            seed: 17,
            messages: opts.wan_messages,
            max_attachment: 20 * 1024 * 1024,
            size_factor: 2.6,
        },
    )?;
    util::index(rt, &src, "alice", &corpus)?;
    let bytes = corpus.total_bytes() as f64;
    println!(
        "\nwan: {} messages, {:.1} MB in {} folders; link {} each way",
        corpus.total_messages(),
        bytes / 1e6,
        corpus.folders.len(),
        opts.wan_mbit
            .map_or("unlimited".to_owned(), |m| format!("{m} Mbit/s"))
    );
    println!(
        "{:>8} {:>10} {:>12} {:>14} {:>10} {:>10}",
        "RTT (ms)", "link (s)", "migrated (s)", "no-op delta (s)", "mbsync (s)", "mbsync/us"
    );
    let src_pass = secret_file(work, "wan-src.pass", "alice-secret")?;
    let has_mbsync = Command::new("mbsync").arg("--version").output().is_ok();
    for (i, &rtt) in opts.wan_rtts_ms.iter().enumerate() {
        let model = LinkModel::new(rtt, opts.wan_mbit);
        let (to_src, to_dst) = rt.block_on(async {
            anyhow::Ok((
                LinkProxy::start(src.imap_port(), model).await?,
                LinkProxy::start(dst.imap_port(), model).await?,
            ))
        })?;
        let (m_user, s_user) = (format!("m{i}"), format!("s{i}"));
        let job = util::job_file_via(
            work,
            &format!("wan-{rtt}"),
            (&src, "alice", to_src.port()),
            (&dst, &m_user, to_dst.port()),
        )?;
        let store = work.join(format!("wan-store-{rtt}"));
        let out = work.join(format!("wan-{rtt}.out"));
        let copy = measure(
            util::migrate(bin, &job, &store)
                .arg("--timings")
                .stdout(std::fs::File::create(&out)?),
        )?;
        let profile = std::fs::read_to_string(&out)?
            .lines()
            .find_map(|l| l.strip_prefix("timings: ").map(str::to_owned))
            .unwrap_or_default();
        let report = rt.block_on(testbed::verify(
            &src.account("alice")?,
            &dst.account(&m_user)?,
            &corpus.mapping_to(&dst),
        ))?;
        util::exact(&report, &format!("migrated's copy at {rtt} ms"))?;
        let delta = measure(&mut util::migrate(bin, &job, &store))?;

        let mbsync = if has_mbsync {
            let state = work.join(format!("wan-mbsync-{rtt}"));
            std::fs::create_dir_all(&state)?;
            let conf = work.join(format!("wan-mbsyncrc-{rtt}"));
            let mut f = std::fs::File::create(&conf)?;
            write!(
                f,
                "IMAPAccount src\nHost 127.0.0.1\nPort {}\nUser alice\nPassCmd \"cat {}\"\nSSLType None\nAuthMechs LOGIN\n\n\
                 IMAPStore src\nAccount src\n\n\
                 IMAPAccount dst\nHost 127.0.0.1\nPort {}\nUser {s_user}\nPassCmd \"cat {}\"\nSSLType None\nAuthMechs LOGIN\n\n\
                 IMAPStore dst\nAccount dst\n\n\
                 Channel c\nFar :src:\nNear :dst:\nPatterns * !Archive !Drafts !Junk !Sent !Trash\nCreate Near\nSync Pull\nSyncState {}/\n",
                to_src.port(),
                src_pass.display(),
                to_dst.port(),
                secret_file(work, &format!("{s_user}.pass"), &format!("{s_user}-secret"))?
                    .display(),
                state.display()
            )?;
            drop(f);
            let m = measure(
                Command::new("mbsync")
                    .arg("-c")
                    .arg(&conf)
                    .arg("-a")
                    .arg("-q")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            Some(m.wall.as_secs_f64())
        } else {
            None
        };
        let link = opts
            .wan_mbit
            .map_or(0.0, |m| bytes * 8.0 / (m as f64 * 1e6));
        let ours = copy.wall.as_secs_f64();
        println!(
            "{rtt:>8} {link:>10.2} {ours:>12.2} {:>14.3} {:>10} {:>10}",
            delta.wall.as_secs_f64(),
            mbsync.map_or("-".to_owned(), |s| format!("{s:.2}")),
            mbsync.map_or("-".to_owned(), |s| format!("{:.2}x", s / ours)),
        );
        println!("{:>8} migrated's profile: {profile}", "");
    }
    println!(
        "(migrated's copies verified exact; mbsync copies the same folders but Sent, Trash and the other special-use ones)"
    );
    Ok(())
}
