//! Measures instance start/stop and corpus write + first index (run with --release for real numbers).

use std::time::Instant;

use anyhow::Result;
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, german_special_use, login, write_maildir,
};

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(5000), |s| s.parse())?;
    let t = Instant::now();
    let dc = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        ..DovecotOptions::default()
    })
    .await?;
    println!("start: {:?}", t.elapsed());
    let t = Instant::now();
    let corpus = write_maildir(
        &dc,
        "alice",
        &CorpusSpec {
            seed: 5,
            messages: n,
            max_attachment: 20 << 20,
            size_factor: 1.0,
        },
    )?;
    println!(
        "write {} messages / {} bytes: {:?}",
        corpus.total_messages(),
        corpus.total_bytes(),
        t.elapsed()
    );
    let t = Instant::now();
    let mut s = login(&dc.account("alice")?).await?;
    for name in corpus.folders.keys() {
        s.examine(name).await?;
    }
    println!("first index (SELECT every folder): {:?}", t.elapsed());
    let t = Instant::now();
    let mut count = 0;
    for name in corpus.folders.keys() {
        count += s.folder_messages(name).await?.len();
    }
    println!("fetch + hash all {count} bodies: {:?}", t.elapsed());
    s.logout().await?;
    let t = Instant::now();
    drop(dc);
    println!("stop + cleanup: {:?}", t.elapsed());
    Ok(())
}
