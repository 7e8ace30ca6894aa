//! Large folders: one folder of 2,000 and one of 100,000 small text messages (1.5-8 KB, no
//! attachments), each copied by `migrated migrate` into an empty account and verified exact.
//! The target: the 100,000-message folder within 15 % of the 2,000-message folder's
//! throughput (messages/s).

use std::path::Path;
use std::time::{Duration, Instant};

use testbed::corpus::{FolderSpec, write_folder};
use testbed::{Dovecot, DovecotOptions, Layout, english_special_use, german_special_use};

use crate::Options;
use crate::util::{self, Measured, measure};

/// One folder's copy.
#[derive(Debug)]
struct Row {
    name: String,
    m: Measured,
    messages: f64,
    bytes: f64,
    /// The no-op delta after it.
    delta: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages / self.m.wall.as_secs_f64()
    }

    /// Messages/s without the fixed cost a no-op delta shows.
    fn net_rate(&self) -> f64 {
        self.messages / self.m.wall.saturating_sub(self.delta).as_secs_f64()
    }
}

pub(crate) fn run(
    opts: &Options,
    bin: &Path,
    rt: &tokio::runtime::Runtime,
    work: &Path,
) -> anyhow::Result<()> {
    let sizes = [("small", opts.small_folder), ("big", opts.big_folder)];
    let users = || {
        sizes
            .iter()
            .map(|(u, _)| ((*u).to_owned(), format!("{u}-secret")))
            .collect::<Vec<_>>()
    };
    let src = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: users(),
        ..DovecotOptions::default()
    })?;
    let dst = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: users(),
        ..DovecotOptions::default()
    })?;
    println!("\nlarge folders: one folder each, small text messages");
    let mut rows = Vec::new();
    for (i, (user, messages)) in sizes.into_iter().enumerate() {
        let t = Instant::now();
        let corpus = write_folder(
            &src,
            user,
            &FolderSpec {
                seed: 500 + i as u64,
                messages,
                path: vec!["Archiv 2010".to_owned()],
                min_size: 1_500,
                max_size: 8_000,
            },
        )?;
        util::index(rt, &src, user, &corpus)?;
        println!(
            "{user}: {messages} messages, {:.1} MB in one folder (written and indexed in {:.1} s)",
            corpus.total_bytes() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let job = util::job_file(work, &format!("folder-{user}"), (&src, user), (&dst, user))?;
        let store = work.join(format!("store-folder-{user}"));
        let m = measure(&mut util::migrate(bin, &job, &store))?;
        let report = rt.block_on(testbed::verify(
            &src.account(user)?,
            &dst.account(user)?,
            &corpus.mapping_to(&dst),
        ))?;
        util::exact(
            &report,
            &format!("the copy of the {messages}-message folder"),
        )?;
        // The same job again copies nothing: what is left is the fixed cost (start, login,
        // listing, the folder's UIDs), taken out of the copy's time for a second ratio.
        let delta = measure(&mut util::migrate(bin, &job, &store))?;
        rows.push(Row {
            name: format!("migrated ({messages})"),
            m,
            messages: corpus.total_messages() as f64,
            bytes: corpus.total_bytes() as f64,
            delta: delta.wall,
        });
    }
    println!("{}", util::ROW_HEADER);
    for r in &rows {
        println!("{}", util::row(&r.name, &r.m, r.messages, r.bytes));
    }
    let ratio = rows[1].rate() / rows[0].rate();
    println!(
        "both copies verified exact; {} / {} messages/s: {ratio:.2} ({} the 0.85 target)",
        opts.big_folder,
        opts.small_folder,
        if ratio >= 0.85 { "within" } else { "BELOW" }
    );
    println!(
        "no-op deltas {:.2} s and {:.2} s; less them, {:.0} and {:.0} messages/s, ratio {:.2}",
        rows[0].delta.as_secs_f64(),
        rows[1].delta.as_secs_f64(),
        rows[0].net_rate(),
        rows[1].net_rate(),
        rows[1].net_rate() / rows[0].net_rate()
    );
    Ok(())
}
