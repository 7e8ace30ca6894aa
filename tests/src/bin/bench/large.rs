//! Memory with one very large message: peak RSS of `migrated migrate` on a small mailbox, and
//! on the same mailbox plus one message of 30 MB (`--large-message-mb`). The target: the large
//! message adds at most its own size and a little slack, i.e. it is held about once.

use std::path::Path;

use testbed::{CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use};
use testbed::{german_special_use, synthetic_message};

use crate::Options;
use crate::util::{self, measure};

/// What "a little" slack is, MiB.
const SLACK_MB: f64 = 5.0;

pub(crate) fn run(
    opts: &Options,
    bin: &Path,
    rt: &tokio::runtime::Runtime,
    work: &Path,
) -> anyhow::Result<()> {
    let users = || {
        vec![
            ("with".to_owned(), "with-secret".to_owned()),
            ("without".to_owned(), "without-secret".to_owned()),
        ]
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
    // The same small mailbox twice (same seed), then the large message into one of them.
    let spec = CorpusSpec {
        seed: 77,
        messages: 20,
        max_attachment: 0,
        size_factor: 0.5,
    };
    let without = testbed::write_maildir(&src, "without", &spec)?;
    let mut with = testbed::write_maildir(&src, "with", &spec)?;
    // synthetic_message puts (size - 4,000) * 3/4 bytes into a base64 attachment, which grows
    // by 78/57 (76 characters and CRLF per 57 bytes): aim at the size asked for.
    let target = opts.large_message_mb * 1e6;
    let big = synthetic_message(30, ((target - 6_000.0) * 57.0 / 78.0 * 4.0 / 3.0) as usize);
    testbed::corpus::add_message(
        &src,
        "with",
        &mut with,
        "INBOX",
        &big,
        &["\\Seen"],
        1_600_000_000,
    )?;
    let big_mb = big.len() as f64 / (1024.0 * 1024.0);
    println!(
        "\nlarge message: {} small messages ({:.1} MB), with and without one more of {:.1} MB ({} bytes)",
        without.total_messages(),
        without.total_bytes() as f64 / 1e6,
        big.len() as f64 / 1e6,
        big.len()
    );
    let mut rows = Vec::new();
    for (user, corpus) in [("without", &without), ("with", &with)] {
        util::index(rt, &src, user, corpus)?;
        let job = util::job_file(work, &format!("large-{user}"), (&src, user), (&dst, user))?;
        let m = measure(&mut util::migrate(
            bin,
            &job,
            &work.join(format!("store-large-{user}")),
        ))?;
        let report = rt.block_on(testbed::verify(
            &src.account(user)?,
            &dst.account(user)?,
            &corpus.mapping_to(&dst),
        ))?;
        util::exact(&report, &format!("the copy of {user:?}"))?;
        rows.push((
            format!("migrated ({user})"),
            m,
            corpus.total_messages() as f64,
            corpus.total_bytes() as f64,
        ));
    }
    println!("{}", util::ROW_HEADER);
    for (name, m, n, b) in &rows {
        println!("{}", util::row(name, m, *n, *b));
    }
    let diff = util::mb(rows[1].1.peak_rss_kb) - util::mb(rows[0].1.peak_rss_kb);
    let beyond = diff - big_mb;
    println!(
        "both copies verified exact; peak RSS difference {diff:.1} MiB for a {big_mb:.1} MiB message \
         ({beyond:+.1} MiB beyond the message itself): {} the target (the message once + {SLACK_MB:.0} MiB)",
        if beyond <= SLACK_MB {
            "within"
        } else {
            "ABOVE"
        }
    );
    Ok(())
}
