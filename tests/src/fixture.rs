//! Store fixtures: a daemon's state written by an earlier release, with the mail of the two
//! Dovecots it was talking to (`tests/fixtures/store-COMMIT.tar.gz`, made by the `store_fixture`
//! binary). A later release opens the store and resumes what it was doing; the job records
//! name the servers' ports, so the fixture's servers listen on fixed ports (below the
//! ephemeral range the other beds take theirs from).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::dovecot::{Dovecot, DovecotOptions, Layout, english_special_use, german_special_use};

/// (user, password) on both servers.
pub const FIXTURE_USERS: [(&str, &str); 2] =
    [("alice", "fixture-alice-pw"), ("bob", "fixture-bob-pw")];

/// The source's (IMAP, IMAPS) ports.
pub const SOURCE_PORTS: (u16, u16) = (24143, 24993);
/// The destination's.
pub const DESTINATION_PORTS: (u16, u16) = (24144, 24994);

fn users() -> Vec<(String, String)> {
    FIXTURE_USERS
        .iter()
        .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
        .collect()
}

/// The source Dovecot of every fixture.
pub fn source_options() -> DovecotOptions {
    DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        users: users(),
        special_use: german_special_use(),
        ports: Some(SOURCE_PORTS),
        ..DovecotOptions::default()
    }
}

/// The destination Dovecot of every fixture.
pub fn destination_options() -> DovecotOptions {
    DovecotOptions {
        layout: Layout::Fs,
        users: users(),
        special_use: english_special_use(),
        ports: Some(DESTINATION_PORTS),
        ..DovecotOptions::default()
    }
}

/// A job file for `user` between the fixture's servers, its passwords in 0600 files beside it.
pub fn job_file(dir: &Path, name: &str, user: &str, extra: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let password = FIXTURE_USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .with_context(|| format!("{user} is not a fixture user"))?;
    let pass = dir.join(format!("{name}.pass"));
    std::fs::write(&pass, format!("{password}\n"))?;
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600))?;
    let side = |port: u16| {
        format!(
            "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nuser = \"{user}\"\npassword_file = \"{}\"\n",
            pass.display()
        )
    };
    let text = format!(
        "name = \"{name}\"\n\n[source]\n{}\n[destination]\n{}{extra}",
        side(SOURCE_PORTS.0),
        side(DESTINATION_PORTS.0)
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A fixture unpacked and its servers running with its mail.
#[derive(Debug)]
pub struct Fixture {
    /// Where the archive was unpacked.
    pub dir: PathBuf,
    pub source: Dovecot,
    pub destination: Dovecot,
}

impl Fixture {
    /// Unpacks `archive` under `dir` (removed first) and starts both Dovecots with the users'
    /// homes of the archive.
    pub async fn open(archive: &Path, dir: PathBuf) -> Result<Fixture> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        run(Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("--no-same-owner")
            .arg("-C")
            .arg(&dir))?;
        let source = Dovecot::start(source_options()).await?;
        let destination = Dovecot::start(destination_options()).await?;
        for (side, server) in [("source", &source), ("destination", &destination)] {
            for (user, _) in FIXTURE_USERS {
                let home = server.dir().join("home").join(user);
                let _ = std::fs::remove_dir_all(&home);
                run(Command::new("cp")
                    .arg("-a")
                    .arg(dir.join(side).join(user))
                    .arg(&home))?;
                let (uid, gid) = server.mail_owner();
                run(Command::new("chown")
                    .arg("-R")
                    .arg(format!("{uid}:{gid}"))
                    .arg(&home))?;
            }
        }
        Ok(Fixture {
            dir,
            source,
            destination,
        })
    }

    /// The daemon's state directory as the earlier release left it.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Source folder -> destination folder for `user`'s corpus.
    pub fn mapping(&self, user: &str) -> Result<Vec<(String, String)>> {
        let path = self.dir.join(format!("mapping-{user}.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(c: &mut Command) -> Result<()> {
    let status = c.status().with_context(|| format!("running {c:?}"))?;
    if !status.success() {
        bail!("{c:?}: {status}");
    }
    Ok(())
}
