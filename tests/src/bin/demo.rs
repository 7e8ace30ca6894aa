//! A real migration for a newcomer to watch: two private Dovecot servers on loopback, a
//! generated mailbox on the first, `migrated migrate` moving it to the second over STARTTLS,
//! the verifier comparing both sides, and a second run showing that nothing is copied twice.
//!
//! `cargo run --release -p migrated-tests --bin demo -- [--messages N]` (see `scripts/demo`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};

fn migrated_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("binary directory")?.join("migrated");
    if !bin.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release --bins`",
            bin.display()
        );
    }
    Ok(bin)
}

fn write_job(dir: &Path, src: &Dovecot, dst: &Dovecot) -> anyhow::Result<PathBuf> {
    for (name, d) in [("source.pass", src), ("destination.pass", dst)] {
        let p = dir.join(name);
        std::fs::write(&p, format!("{}\n", d.password("alice")?))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    }
    let job = format!(
        r#"# A migration job. Passwords live in files readable by root only.
id = "demo-alice"

[source]
host = "127.0.0.1"
port = {src_port}
security = "starttls"
ca_file = "{src_ca}"
user = "alice"
password_file = "{dir}/source.pass"

[destination]
host = "127.0.0.1"
port = {dst_port}
security = "starttls"
ca_file = "{dst_ca}"
user = "alice"
password_file = "{dir}/destination.pass"

[folders]
exclude = []

[limits]
max_message_size = 36700160
connections = 4
"#,
        src_port = src.imap_port(),
        src_ca = src.ca_file().display(),
        dst_port = dst.imap_port(),
        dst_ca = dst.ca_file().display(),
        dir = dir.display(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job)?;
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let messages = match args.iter().position(|a| a == "--messages") {
        Some(i) => args
            .get(i + 1)
            .context("--messages needs a number")?
            .parse()?,
        None => 2000,
    };
    let bin = migrated_binary()?;
    println!("Starting two private Dovecot servers on 127.0.0.1 ...");
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        ..DovecotOptions::default()
    })
    .await?;
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        ..DovecotOptions::default()
    })
    .await?;
    let corpus = testbed::write_maildir(
        &src,
        "alice",
        &CorpusSpec {
            seed: 1,
            messages,
            max_attachment: 5 * 1024 * 1024,
            size_factor: 1.0,
        },
    )?;
    println!(
        "Source  127.0.0.1:{} (Courier-style INBOX. folders, German names): {} messages, {:.1} MB in {} folders",
        src.imap_port(),
        corpus.total_messages(),
        corpus.total_bytes() as f64 / 1e6,
        corpus.folders.len()
    );
    println!(
        "Destination 127.0.0.1:{} (/-separated folders, English names): empty",
        dst.imap_port()
    );

    let work = std::env::temp_dir().join(format!("migrated-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let job = write_job(&work, &src, &dst)?;
    let store = work.join("store");
    println!("\n$ migrated migrate --job {}\n", job.display());
    let run = |label: &str| -> anyhow::Result<()> {
        let status = Command::new(&bin)
            .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
            .arg("migrate")
            .arg("--job")
            .arg(&job)
            .arg("--store")
            .arg(&store)
            .status()?;
        if !status.success() {
            bail!("{label} failed: {status}");
        }
        Ok(())
    };
    run("the migration")?;

    println!("\nVerifying every folder (counts, body hashes, flags, keywords, INTERNALDATE) ...");
    let report = testbed::verify(
        &src.account("alice")?,
        &dst.account("alice")?,
        &corpus.mapping_to(&dst),
    )
    .await?;
    if !report.is_exact() {
        bail!("the destination differs from the source:\n{report}");
    }
    for (from, to) in corpus.mapping_to(&dst) {
        println!("  {from:<40} -> {to}");
    }
    println!(
        "Verified: {} messages identical on both sides.",
        corpus.total_messages()
    );

    println!(
        "\n$ migrated migrate --job {}   # again: a delta run\n",
        job.display()
    );
    run("the delta run")?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
