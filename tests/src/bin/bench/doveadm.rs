//! Dovecot's own migration path: `doveadm backup` (dsync, one way) reading the source over
//! IMAP through its imapc storage and writing the destination's maildir directly, as Dovecot's
//! documentation describes migrations from other IMAP servers.
//!
//! The command is `doveadm -c <conf> backup -R -u alice imapc:` run against a third Dovecot
//! (the destination layout, the source's special-use names, so dsync's one-to-one folder names
//! are what a correct copy looks like). `<conf>` includes that Dovecot's configuration and adds
//! the imapc settings of the migration recipe (`imapc_features = rfc822.size fetch-headers`,
//! `mail_prefetch_count = 20`, `imapc_list_prefix = INBOX` as the source is Courier-style).
//! The imapc password sits in that file (mode 0600), not in doveadm's argv; `-o
//! imapc_password=...` would work too but shows the password in `ps`, which only a
//! loopback test account could accept. The destination keeps its `mail_fsync` setting (the
//! same the destination's IMAP server applies to migrated's APPENDs); the recipe's
//! `mail_fsync=never` is `--doveadm-fsync-never`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;
use testbed::{Corpus, Dovecot, DovecotOptions, Layout, german_special_use};

use crate::util::{self, Measured, measure};

/// Runs the backup of the source's `alice` into a fresh Dovecot, verifies it exact, and
/// returns what the doveadm process did.
pub(crate) fn run(
    src: &Dovecot,
    corpus: &Corpus,
    rt: &tokio::runtime::Runtime,
    work: &Path,
    fsync_never: bool,
) -> anyhow::Result<Measured> {
    let dst = Dovecot::start_blocking(DovecotOptions {
        layout: Layout::Fs,
        special_use: german_special_use(),
        users: vec![("alice".into(), "alice-secret".into())],
        ..DovecotOptions::default()
    })?;
    let conf = work.join("doveadm-imapc.conf");
    let mut c = String::new();
    writeln!(c, "!include {}", dst.config_file().display())?;
    writeln!(c, "imapc_host = {}", src.host())?;
    writeln!(c, "imapc_port = {}", src.imap_port())?;
    writeln!(c, "imapc_user = alice")?;
    writeln!(c, "imapc_password = {}", src.password("alice")?)?;
    writeln!(c, "imapc_features = rfc822.size fetch-headers")?;
    writeln!(c, "imapc_list_prefix = INBOX")?;
    writeln!(c, "mail_prefetch_count = 20")?;
    if fsync_never {
        writeln!(c, "mail_fsync = never")?;
    }
    std::fs::write(&conf, &c)?;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600))?;
    let log = work.join("doveadm.log");
    let m = measure(
        Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(["backup", "-R", "-u", "alice", "imapc:"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?),
    )
    .with_context(|| {
        format!(
            "doveadm backup failed:\n{}\ndestination log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            dst.log_tail()
        )
    })?;
    let report = rt.block_on(testbed::verify(
        &src.account("alice")?,
        &dst.account("alice")?,
        &corpus.mapping_to(&dst),
    ))?;
    util::exact(&report, "doveadm backup's copy")?;
    println!(
        "doveadm backup (imapc source): {:.2} s, verified exact",
        m.wall.as_secs_f64()
    );
    Ok(m)
}
