//! What COMPRESS=DEFLATE (RFC 4978) would cost and gain: migrated does not implement it. One
//! raw deflate stream per level (1 and 6) over every message body of the corpus, flushed after
//! each message as an IMAP server flushes after a response, timed on one core for compression
//! (the sending side: the source server for FETCH, migrated for APPEND) and decompression (the
//! receiving side); the ratio is compressed / original bytes. Then the link speeds where it
//! pays: with compression a copy moves at most min(compression MB/s, link MB/s / ratio) of
//! mail, without it the link's MB/s, so it only helps on links slower than one core compresses.
//! Also whether the source Dovecot announces COMPRESS=DEFLATE after login.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::write::{DeflateDecoder, DeflateEncoder};
use testbed::{Corpus, Dovecot};

/// Counts and drops what is written to it.
#[derive(Debug, Default)]
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Message files of a maildir tree (every `cur` and `new` directory), sorted.
fn message_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            let name = e.file_name();
            if name == "cur" || name == "new" {
                for f in std::fs::read_dir(&p)? {
                    out.push(f?.path());
                }
            } else if name != "tmp" {
                message_files(&p, out)?;
            }
        }
    }
    Ok(())
}

/// Bytes in and out per kind of message.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    messages: u64,
    input: u64,
    output: u64,
}

impl Tally {
    fn ratio(&self) -> f64 {
        self.output as f64 / self.input.max(1) as f64
    }
}

pub(crate) fn run(
    src: &Dovecot,
    corpus: &Corpus,
    rt: &tokio::runtime::Runtime,
    migrated_mbps: Option<f64>,
) -> anyhow::Result<()> {
    let offered = rt.block_on(async {
        let mut s = testbed::login(&src.account("alice")?).await?;
        let caps = s.raw().capabilities().await?;
        let offered = caps.has_str("COMPRESS=DEFLATE");
        s.logout().await?;
        anyhow::Ok(offered)
    })?;
    let plugin = std::fs::read_dir("/usr/lib/dovecot/modules")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("imap_zlib_plugin"))
        })
        .unwrap_or(false);
    println!(
        "\nCOMPRESS=DEFLATE: the source Dovecot {} it after login (imap_zlib plugin {}, loaded by \
         the test bed when installed); migrated does not use it",
        if offered {
            "announces"
        } else {
            "does NOT announce"
        },
        if plugin { "installed" } else { "not installed" }
    );

    let mut files = Vec::new();
    message_files(&src.maildir("alice"), &mut files)?;
    files.sort();
    if files.len() != corpus.total_messages() {
        bail!(
            "found {} message files for a corpus of {}",
            files.len(),
            corpus.total_messages()
        );
    }
    println!(
        "raw deflate over the corpus bodies ({} messages), one stream, a sync flush after each message, one core:",
        files.len()
    );
    println!(
        "{:<6} {:>10} {:>10} {:>14} {:>16} {:>12} {:>12}",
        "level", "ratio", "text-only", "with base64", "compress MB/s", "inflate MB/s", "out MB"
    );
    let mut results = Vec::new();
    let mut body = Vec::new();
    for level in [1u32, 6] {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::new(level));
        let mut dec = DeflateDecoder::new(Sink::default());
        let (mut c_time, mut d_time) = (Duration::ZERO, Duration::ZERO);
        let (mut text, mut attached) = (Tally::default(), Tally::default());
        for f in &files {
            body.clear();
            std::io::Read::read_to_end(&mut std::fs::File::open(f)?, &mut body)?;
            let t = Instant::now();
            enc.write_all(&body)?;
            enc.flush()?;
            c_time += t.elapsed();
            let chunk = std::mem::take(enc.get_mut());
            let t = Instant::now();
            dec.write_all(&chunk)?;
            dec.flush()?;
            d_time += t.elapsed();
            let kind = if contains(&body, b"Content-Transfer-Encoding: base64") {
                &mut attached
            } else {
                &mut text
            };
            kind.messages += 1;
            kind.input += body.len() as u64;
            kind.output += chunk.len() as u64;
        }
        let total = Tally {
            messages: text.messages + attached.messages,
            input: text.input + attached.input,
            output: text.output + attached.output,
        };
        if dec.get_ref().0 != total.input {
            bail!(
                "level {level}: inflated {} bytes of {}",
                dec.get_ref().0,
                total.input
            );
        }
        let c_mbps = total.input as f64 / 1e6 / c_time.as_secs_f64();
        let d_mbps = total.input as f64 / 1e6 / d_time.as_secs_f64();
        println!(
            "{level:<6} {:>10.3} {:>10.3} {:>14.3} {c_mbps:>16.1} {d_mbps:>12.1} {:>12.1}",
            total.ratio(),
            text.ratio(),
            attached.ratio(),
            total.output as f64 / 1e6
        );
        results.push((level, total.ratio(), c_mbps, d_mbps));
        if level == 1 {
            println!(
                "       ({} text-only messages, {:.1} MB; {} with a base64 part, {:.1} MB)",
                text.messages,
                text.input as f64 / 1e6,
                attached.messages,
                attached.input as f64 / 1e6
            );
        }
    }

    // Mail moved per second over a link, without and with compression (one core compressing).
    let links = [
        ("10 Mbit/s WAN", 1.25),
        ("100 Mbit/s WAN", 12.5),
        ("1 Gbit/s LAN", 125.0),
        ("10 Gbit/s LAN", 1250.0),
    ];
    println!(
        "\nmail MB/s a link carries at most, one core compressing:\n{:<16} {:>10} {:>12} {:>12}",
        "link", "plain", "deflate 1", "deflate 6"
    );
    for (name, link) in links {
        let with = |(_, ratio, c, _): (u32, f64, f64, f64)| (link / ratio).min(c);
        println!(
            "{name:<16} {link:>10.1} {:>12.1} {:>12.1}",
            with(results[0]),
            with(results[1])
        );
    }
    let (_, r1, c1, d1) = results[0];
    println!(
        "deflate pays on links slower than one core compresses ({c1:.0} MB/s at level 1), by at \
         most {:.2}x (1 / ratio)",
        1.0 / r1
    );
    if let Some(m) = migrated_mbps {
        println!(
            "at migrated's loopback rate in this run ({m:.0} MB/s) level 1 would take {:.2} of a \
             core to compress (the source server, for FETCH) and {:.2} to inflate (migrated), for no \
             gain: loopback is not the bottleneck",
            m / c1,
            m / d1
        );
    }
    Ok(())
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
