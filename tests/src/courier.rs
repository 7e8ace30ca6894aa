//! Private Courier-IMAP 5 instances on loopback, from the Debian packages unpacked by
//! `scripts/testbeds` (see [`crate::unpacked`]).
//!
//! Courier's authentication library has its paths compiled in (`/etc/courier/authdaemonrc`,
//! the userdb, `/run/courier/authdaemon/socket`, its modules in `/usr/lib/courier-authlib`,
//! and `imaplogin` in `/usr/lib/courier`), so each instance runs in a private mount namespace
//! (`unshare --mount`) where those directories are bind mounts of the instance's own and of the
//! unpacked package. On the host only the empty mount points are created. Users live in a
//! userdb (`makeuserdb`) with crypt(3) passwords; mail is stored as the `nobody` user (a passwd
//! entry every Debian has), in `home/<user>/Maildir` (Maildir++: `INBOX.` prefix, `.`
//! separator, keywords in `courierimapkeywords/`).
//!
//! What this Courier does as shipped (and the bed keeps): no LITERAL+, MULTIAPPEND,
//! SPECIAL-USE, CONDSTORE or MOVE; parents created for a child are `\Noselect`; a folder name
//! with a character outside the Basic Multilingual Plane is refused (`NO Error in IMAP command
//! received by server.`). The bed changes `IMAP_EMPTYTRASH` (empty: Debian's default purges
//! Trash messages older than 7 days at logout, which would eat the corpus's old messages) and
//! the per-IP connection limit.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::dovecot::{LOOPBACK, Layout};
use crate::imap::Account;
use crate::unpacked::{self, Group};

/// The uid/gid mail is stored as.
const NOBODY: u32 = 65534;

/// What a private instance looks like.
#[derive(Debug, Clone)]
pub struct CourierOptions {
    /// (name, password)
    pub users: Vec<(String, String)>,
}

impl Default for CourierOptions {
    fn default() -> Self {
        CourierOptions {
            users: vec![("alice".to_owned(), "alice-secret".to_owned())],
        }
    }
}

/// A running private Courier-IMAP. Stopped and its directory removed on drop (kept with
/// `TESTBED_KEEP`).
#[derive(Debug)]
pub struct Courier {
    opts: CourierOptions,
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    group: Group,
    /// The English special-use names, which Courier holds as plain folders.
    special_use: Vec<(String, String)>,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl Courier {
    /// Starts an instance without blocking the async runtime.
    pub async fn start(opts: CourierOptions) -> Result<Courier> {
        tokio::task::spawn_blocking(move || Courier::start_blocking(opts))
            .await
            .context("Courier start task panicked")?
    }

    /// Starts an instance (blocking; about half a second).
    pub fn start_blocking(opts: CourierOptions) -> Result<Courier> {
        unpacked::require_root("Courier-IMAP")?;
        crate::dovecot::ensure_package("/usr/bin/openssl", "openssl")?;
        let root = unpacked::unpacked_root()?;
        if opts.users.is_empty() {
            bail!("CourierOptions.users is empty");
        }
        let dir = unpacked::instance_dir("courier", INSTANCES.fetch_add(1, Ordering::Relaxed))?;
        let etc = dir.join("etc");
        let run = dir.join("run");
        for d in [etc.clone(), run.join("authdaemon"), dir.join("home")] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        for f in ["imapd", "imapd-ssl"] {
            let from = root.join("etc/courier").join(f);
            fs::copy(&from, etc.join(f)).with_context(|| format!("copying {}", from.display()))?;
        }
        fs::write(
            etc.join("authdaemonrc"),
            "authmodulelist=\"authuserdb\"\ndaemons=2\nauthdaemonvar=/run/courier/authdaemon\n\
             DEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n",
        )
        .context("writing authdaemonrc")?;

        let mut userdb = String::new();
        for (user, pass) in &opts.users {
            if user.contains(['/', '\t', '\n', '|', ' ']) || pass.contains('\n') {
                bail!("user {user:?}: no '/', '|', blanks or newlines in a userdb entry");
            }
            let home = dir.join("home").join(user);
            make_maildir(&home.join("Maildir"))?;
            let hash = crypt(pass)?;
            writeln!(
                userdb,
                "{user}\tuid={NOBODY}|gid={NOBODY}|home={}|mail={}|systempw={hash}",
                home.display(),
                home.join("Maildir").display()
            )?;
        }
        let userdb_path = etc.join("userdb");
        fs::write(&userdb_path, userdb).context("writing userdb")?;
        fs::set_permissions(&userdb_path, fs::Permissions::from_mode(0o600))?;

        let port = unpacked::free_port()?;
        let lib = unpacked::library_path(&root);
        let r = root.display();
        let d = dir.display();
        let script = format!(
            "set -e\n\
             # Mount points on the host (empty); the mounts themselves stay in this namespace.\n\
             mkdir -p /etc/courier /usr/lib/courier /usr/lib/courier-authlib /run/courier\n\
             mount --bind {d}/etc /etc/courier\n\
             mount --bind {d}/run /run/courier\n\
             mount --bind {r}/usr/lib/courier /usr/lib/courier\n\
             mount --bind {r}/usr/lib/courier-authlib /usr/lib/courier-authlib\n\
             export LD_LIBRARY_PATH={lib}\n\
             perl {r}/usr/sbin/makeuserdb\n\
             /usr/lib/courier/courier-authlib/authdaemond &\n\
             while [ ! -S /run/courier/authdaemon/socket ]; do sleep 0.02; done\n\
             set -a\n\
             . /etc/courier/imapd-ssl\n\
             . /etc/courier/imapd\n\
             IMAP_EMPTYTRASH=\n\
             set +a\n\
             exec {r}/usr/sbin/couriertcpd -address={LOOPBACK} -maxprocs=200 -maxperip=200 \
             -nodnslookup -noidentlookup {port} /usr/lib/courier/courier/imaplogin \
             {r}/usr/bin/imapd Maildir\n"
        );
        let script_path = dir.join("start.sh");
        fs::write(&script_path, script).context("writing start.sh")?;
        let log = dir.join("courier.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        use std::os::unix::process::CommandExt as _;
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh"])
            .arg(&script_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("running unshare --mount (util-linux) for Courier")?;
        let mut c = Courier {
            opts,
            dir,
            log,
            port,
            group: Group::new(child),
            special_use: crate::dovecot::english_special_use(),
        };
        let log_path = c.log.clone();
        unpacked::wait_for_greeting(port, Duration::from_secs(15), &mut c.group, || {
            unpacked::tail(&log_path)
        })?;
        Ok(c)
    }

    pub fn host(&self) -> &str {
        LOOPBACK
    }

    pub fn imap_port(&self) -> u16 {
        self.port
    }

    /// Courier's names: `INBOX.` prefix, `.` separator.
    pub fn layout(&self) -> Layout {
        Layout::MaildirPlusPlus
    }

    pub fn password(&self, user: &str) -> Result<&str> {
        crate::dovecot::password_of(&self.opts.users, user, "Courier")
    }

    /// An account on the plain port (no TLS: loopback only).
    pub fn account(&self, user: &str) -> Result<Account> {
        crate::dovecot::plain_account(self.port, user, self.password(user)?)
    }

    /// The user's Maildir++ root.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user).join("Maildir")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the server and its authentication daemon wrote to stderr.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the instance (SIGKILL to its process group: Courier keeps no state but the
    /// maildir, written with rename).
    pub fn stop(&mut self) {
        self.group.kill();
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.stop();
        crate::dovecot::remove_unless_kept(&self.dir);
    }
}

/// An empty Maildir++ root (and the home above it) owned by the mail user.
fn make_maildir(maildir: &Path) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        let d = maildir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        chown_dir(&d)?;
    }
    chown_dir(maildir)?;
    chown_dir(maildir.parent().context("a maildir has a home")?)
}

fn chown_dir(p: &Path) -> Result<()> {
    chown(p, Some(NOBODY), Some(NOBODY)).with_context(|| format!("chown {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", p.display()))
}

/// A SHA-512 crypt(3) hash of `password` (`openssl passwd -6`, the password on stdin).
fn crypt(password: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl passwd")?;
    child
        .stdin
        .take()
        .context("openssl stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "openssl passwd -6 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl crate::corpus::MailServer for Courier {
    fn name_layout(&self) -> Layout {
        Layout::MaildirPlusPlus
    }
    /// Courier has no SPECIAL-USE: the English names exist as plain folders.
    fn special_use_folders(&self) -> &[(String, String)] {
        &self.special_use
    }
    fn marks_special_use(&self) -> bool {
        false
    }
}
