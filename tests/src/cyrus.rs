//! Private Cyrus IMAP 3.6 instances on loopback, from the Debian packages unpacked by
//! `scripts/testbeds` (see [`crate::unpacked`]).
//!
//! Each instance has its own `imapd.conf` and `cyrus.conf` (the master runs in the foreground,
//! `-D`, with one `imap` service on a loopback port), config directory and spool. Cyrus
//! switches to `cyrus_user`, here `nobody` (a passwd entry every Debian has; the `cyrus` user
//! of the package does not exist since the package is not installed). Users are in a private
//! sasldb (`saslpasswd2`, SASL PLAIN and LOGIN); a user's INBOX is created at first login
//! (`autocreate_quota: 0`). The special-use folders asked for are created by the bed over IMAP
//! (`CREATE ... (USE (\Sent))`).
//!
//! Cyrus logs only to syslog, and this machine may have none (`/dev/log`): the bed's log holds
//! the master's stderr; what the server refuses the tests see in its IMAP replies.
//!
//! Names: the standard namespace (`altnamespace: no`, `unixhierarchysep: no`) shows
//! `INBOX.Sub` with `.` as separator; the alternate one (both `yes`) shows `Sub` with `/`.
//! Cyrus 3 creates the missing parents of a new folder as real, selectable folders.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::dovecot::{LOOPBACK, Layout};
use crate::imap::{Account, login};
use crate::unpacked::{self, Group};

const NOBODY: u32 = 65534;

/// What a private instance looks like.
#[derive(Debug, Clone)]
pub struct CyrusOptions {
    /// (name, password)
    pub users: Vec<(String, String)>,
    /// (folder name without prefix, attribute such as `\Sent`), created for every user.
    pub special_use: Vec<(String, String)>,
    /// `altnamespace` and `unixhierarchysep`: `Sent` with `/` instead of `INBOX.Sent` with `.`.
    pub alt_namespace: bool,
    /// `munge8bit` (Cyrus's default: yes): 8-bit bytes in headers are replaced with `X` on
    /// APPEND. `false` keeps them (`munge8bit: no`).
    pub munge8bit: bool,
    /// Users (of `users`) who may log in for any other user (`proxyservers`): an
    /// administrator's SASL PLAIN with the user as authorization identity. They have no
    /// mailbox of their own.
    pub proxy_servers: Vec<String>,
}

impl Default for CyrusOptions {
    fn default() -> Self {
        CyrusOptions {
            users: vec![("alice".to_owned(), "alice-secret".to_owned())],
            special_use: crate::dovecot::english_special_use(),
            alt_namespace: false,
            munge8bit: true,
            proxy_servers: Vec::new(),
        }
    }
}

/// A running private Cyrus. Stopped and its directory removed on drop (kept with
/// `TESTBED_KEEP`).
#[derive(Debug)]
pub struct Cyrus {
    opts: CyrusOptions,
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    group: Group,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl Cyrus {
    /// Starts an instance and creates its users' folders, without blocking the runtime.
    pub async fn start(opts: CyrusOptions) -> Result<Cyrus> {
        let cyrus = tokio::task::spawn_blocking(move || Cyrus::start_blocking(opts))
            .await
            .context("Cyrus start task panicked")??;
        cyrus.create_user_folders().await?;
        Ok(cyrus)
    }

    /// Starts the master and waits for its greeting; users' INBOXes appear at first login.
    fn start_blocking(opts: CyrusOptions) -> Result<Cyrus> {
        unpacked::require_root("Cyrus IMAP")?;
        let root = unpacked::unpacked_root()?;
        if opts.users.is_empty() {
            bail!("CyrusOptions.users is empty");
        }
        let saslpasswd = Path::new("/usr/sbin/saslpasswd2");
        if !saslpasswd.exists() {
            bail!(
                "{} is missing: run scripts/testbeds (it installs sasl2-bin)",
                saslpasswd.display()
            );
        }
        let dir = unpacked::instance_dir("cyrus", INSTANCES.fetch_add(1, Ordering::Relaxed))?;
        for sub in ["conf", "spool", "run"] {
            let p = dir.join(sub);
            fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
            chown(&p, Some(NOBODY), Some(NOBODY))
                .with_context(|| format!("chown {}", p.display()))?;
        }
        let sasldb = dir.join("sasldb2");
        for (user, pass) in &opts.users {
            if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                bail!("user {user:?}: letters, digits and '-' only");
            }
            let mut child = Command::new(saslpasswd)
                .args(["-p", "-c", "-f"])
                .arg(&sasldb)
                .arg(user)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("running saslpasswd2")?;
            use std::io::Write as _;
            child
                .stdin
                .take()
                .context("saslpasswd2 stdin")?
                .write_all(pass.as_bytes())?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "saslpasswd2 {user} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        chown(&sasldb, Some(NOBODY), Some(NOBODY)).context("chown sasldb2")?;

        let port = unpacked::free_port()?;
        let d = dir.display();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut conf = String::new();
        writeln!(
            conf,
            "# Generated by the migrated test bed for one private instance."
        )?;
        writeln!(conf, "configdirectory: {d}/conf")?;
        writeln!(conf, "partition-default: {d}/spool")?;
        writeln!(conf, "cyrus_user: nobody")?;
        writeln!(conf, "cyrus_group: nogroup")?;
        writeln!(conf, "sasl_pwcheck_method: auxprop")?;
        writeln!(conf, "sasl_auxprop_plugin: sasldb")?;
        writeln!(conf, "sasl_sasldb_path: {}", sasldb.display())?;
        writeln!(conf, "sasl_mech_list: PLAIN LOGIN")?;
        // Loopback only, test passwords.
        writeln!(conf, "allowplaintext: yes")?;
        writeln!(conf, "autocreate_quota: 0")?;
        writeln!(conf, "altnamespace: {}", yes_no(opts.alt_namespace))?;
        writeln!(conf, "unixhierarchysep: {}", yes_no(opts.alt_namespace))?;
        writeln!(conf, "munge8bit: {}", yes_no(opts.munge8bit))?;
        writeln!(conf, "virtdomains: off")?;
        // Mailboxes stored by name, not by their unique id. Cyrus 3.6 draws a new mailbox's id
        // from a generator seeded per process, and two imapd processes the master forked a
        // second apart were seen to give two users' INBOXes the same id: stored by id, the two
        // INBOXes were one directory, and each user saw the other's mail (a test showed it as
        // a "duplicate"). Provisioning users one after the other on loopback is what makes it
        // likely here; stored by name, such a collision cannot merge two users' mail.
        writeln!(conf, "mailbox_legacy_dirs: yes")?;
        if !opts.proxy_servers.is_empty() {
            writeln!(conf, "proxyservers: {}", opts.proxy_servers.join(" "))?;
        }
        writeln!(conf, "idlesocket: {d}/run/idle")?;
        writeln!(conf, "lmtpsocket: {d}/run/lmtp")?;
        writeln!(conf, "notifysocket: {d}/run/notify")?;
        let imapd_conf = dir.join("imapd.conf");
        fs::write(&imapd_conf, conf).context("writing imapd.conf")?;
        let bin = root.join("usr/lib/cyrus/bin");
        let c = imapd_conf.display();
        let b = bin.display();
        let services = format!(
            "START {{\n  recover cmd=\"{b}/ctl_cyrusdb -C {c} -r\"\n}}\n\
             SERVICES {{\n  imap cmd=\"{b}/imapd -C {c}\" listen=\"{LOOPBACK}:{port}\" prefork=0\n}}\n\
             EVENTS {{\n}}\n"
        );
        let cyrus_conf = dir.join("cyrus.conf");
        fs::write(&cyrus_conf, services).context("writing cyrus.conf")?;

        let log = dir.join("cyrus.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        use std::os::unix::process::CommandExt as _;
        let child = Command::new(bin.join("master"))
            .arg("-C")
            .arg(&imapd_conf)
            .arg("-M")
            .arg(&cyrus_conf)
            .arg("-D")
            // Without it the master locks /run/cyrus-master.pid, one for the whole machine.
            .arg("-p")
            .arg(dir.join("run/master.pid"))
            .env("LD_LIBRARY_PATH", unpacked::library_path(&root))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("running {}/master", bin.display()))?;
        let mut cy = Cyrus {
            opts,
            dir,
            log,
            port,
            group: Group::new(child),
        };
        let log_path = cy.log.clone();
        unpacked::wait_for_greeting(port, Duration::from_secs(15), &mut cy.group, || {
            unpacked::tail(&log_path)
        })?;
        Ok(cy)
    }

    /// Logs every user in once (creating the INBOX) and creates the special-use folders.
    async fn create_user_folders(&self) -> Result<()> {
        // Cyrus gives the proxy servers no mailbox of their own ("Permission denied").
        let mailbox_users = self
            .opts
            .users
            .iter()
            .filter(|(u, _)| !self.opts.proxy_servers.contains(u));
        for (user, _) in mailbox_users {
            let mut s = login(&self.account(user)?).await?;
            for (name, attr) in &self.opts.special_use {
                let name = format!("{}{name}", self.layout().prefix());
                s.create_special_use(&name, attr).await?;
            }
            s.logout().await?;
        }
        Ok(())
    }

    pub fn options(&self) -> &CyrusOptions {
        &self.opts
    }

    pub fn host(&self) -> &str {
        LOOPBACK
    }

    pub fn imap_port(&self) -> u16 {
        self.port
    }

    /// The names this instance shows: `INBOX.` and `.`, or no prefix and `/`.
    pub fn layout(&self) -> Layout {
        if self.opts.alt_namespace {
            Layout::Fs
        } else {
            Layout::MaildirPlusPlus
        }
    }

    pub fn password(&self, user: &str) -> Result<&str> {
        crate::dovecot::password_of(&self.opts.users, user, "Cyrus")
    }

    /// An account on the plain port (no TLS: loopback only).
    pub fn account(&self, user: &str) -> Result<Account> {
        crate::dovecot::plain_account(self.port, user, self.password(user)?)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The master's stderr (Cyrus logs the rest to syslog).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the instance: SIGKILL to the master's process group.
    pub fn stop(&mut self) {
        self.group.kill();
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop();
        crate::dovecot::remove_unless_kept(&self.dir);
    }
}

impl crate::corpus::MailServer for Cyrus {
    fn name_layout(&self) -> Layout {
        self.layout()
    }
    fn special_use_folders(&self) -> &[(String, String)] {
        &self.opts.special_use
    }
}
