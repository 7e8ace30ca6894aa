//! Private Dovecot instances on loopback: each has its own directory, config, ports, CA and users,
//! so tests can run in parallel and never touch the system instance.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::imap::{Account, Tls};

const DOVECOT_BIN: &str = "/usr/sbin/dovecot";
const MODULE_DIR: &str = "/usr/lib/dovecot/modules";
/// The one address the test beds listen on.
pub(crate) const LOOPBACK: &str = "127.0.0.1";
/// The uid/gid mail processes run as when we are root: Dovecot refuses uid 0 for mail.
const NOBODY: u32 = 65534;

/// Installs `dovecot-imapd` if it is missing.
pub fn ensure_installed() -> Result<()> {
    ensure_package(DOVECOT_BIN, "dovecot-imapd")
}

/// Installs a Debian package unless `probe` exists (its service kept from starting). Parallel
/// tests share one lock file so only one of them runs apt-get; the others wait and then see the
/// binary. The Radicale test bed uses it too.
pub(crate) fn ensure_package(probe: &str, package: &str) -> Result<()> {
    if Path::new(probe).exists() {
        return Ok(());
    }
    let lock_path = std::env::temp_dir().join("migrated-testbed-apt.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("creating lock file {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if Path::new(probe).exists() {
        return Ok(());
    }
    // Installing a daemon package would start the system service on all interfaces; the
    // standard Debian way to prevent that is a policy-rc.d that denies starts.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let placed_policy = if policy.exists() {
        false
    } else {
        fs::write(policy, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("writing {}", policy.display()))?;
        fs::set_permissions(policy, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", policy.display()))?;
        true
    };
    let result = (|| -> Result<()> {
        run(Command::new("apt-get").arg("update"), "apt-get update")?;
        run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &format!("apt-get install {package}"),
        )
    })();
    if placed_policy {
        let _ = fs::remove_file(policy);
    }
    result.with_context(|| format!("{probe} is missing and installing {package} failed"))?;
    if !Path::new(probe).exists() {
        bail!("installed {package} but {probe} is still missing");
    }
    Ok(())
}

/// Runs a command to completion; on failure the error carries its stderr.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// How folders are stored and named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Courier-style Maildir++: `INBOX.` prefix, `.` separator, folders in `.Name.Sub` dirs.
    MaildirPlusPlus,
    /// `maildir:~/Maildir:LAYOUT=fs`: `/` separator, no prefix, nested directories.
    Fs,
}

impl Layout {
    /// Hierarchy separator as the server shows it.
    pub fn separator(self) -> char {
        match self {
            Layout::MaildirPlusPlus => '.',
            Layout::Fs => '/',
        }
    }

    /// Namespace prefix as the server shows it.
    pub fn prefix(self) -> &'static str {
        match self {
            Layout::MaildirPlusPlus => "INBOX.",
            Layout::Fs => "",
        }
    }
}

/// English special-use folder names (Sent, Trash, Drafts, Junk, Archive).
pub fn english_special_use() -> Vec<(String, String)> {
    pairs(&[
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
        ("Drafts", "\\Drafts"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ])
}

/// German special-use folder names as Outlook-era servers show them.
pub fn german_special_use() -> Vec<(String, String)> {
    pairs(&[
        ("Gesendete Objekte", "\\Sent"),
        ("Papierkorb", "\\Trash"),
        ("Entwürfe", "\\Drafts"),
        ("Spam", "\\Junk"),
        ("Archiv", "\\Archive"),
    ])
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// What a private instance looks like.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    pub layout: Layout,
    /// (name, password)
    pub users: Vec<(String, String)>,
    /// (folder name without prefix, attribute such as `\Sent`); these folders are auto-created
    /// and auto-subscribed.
    pub special_use: Vec<(String, String)>,
    /// Per-user storage quota in bytes (quota plugin, `count` backend).
    pub quota_bytes: Option<u64>,
    /// Replaces the capabilities announced after login (`imap_capability`), e.g. to play a
    /// server without CONDSTORE.
    pub imap_capability: Option<String>,
    /// A master passdb: an administrator who logs in on behalf of users (SASL PLAIN authzid,
    /// or `user*admin` with `auth_master_user_separator = *`).
    pub master: Option<MasterUser>,
    /// Token logins (XOAUTH2, OAUTHBEARER) checked by Dovecot's oauth2 passdb against an
    /// RFC 7662 introspection endpoint; password logins keep the passwd-file passdb.
    pub oauth2: Option<DovecotOAuth2>,
    /// Fixed (IMAP, IMAPS) ports instead of free ones, for state that names its server's port
    /// (the store fixtures of an earlier release, tests/fixtures/).
    pub ports: Option<(u16, u16)>,
}

/// Dovecot's `passdb { driver = oauth2 }` against an introspection endpoint such as
/// [`crate::oauth::OAuthHandle::introspection_url`].
///
/// Passdbs, in order: the passwd-file (`mechanisms = plain login`); a user-token oauth2 passdb
/// (`introspection_mode = post`, `username_attribute = username`, `active_attribute = active`,
/// `active_value = true`): the token must be live and its `username` the login user; and, with
/// [`DovecotOAuth2::app_access`], an application-token oauth2 passdb.
///
/// # Application tokens (client credentials)
///
/// Dovecot 2.3's oauth2 passdb cannot ask the provider whether a token opens a given mailbox:
/// it posts only `token=...` (plus its own client id and secret) to the introspection URL, which
/// it does not expand with the user, and it then requires the reply's `username_attribute` to
/// equal the login user under `username_format`. What it can do, and what the test bed does:
/// a second oauth2 passdb whose `username_format` is a constant (`application`), so that any
/// live token passes the user check, and whose `scope = IMAP.AccessAsApp` requires the role
/// that the test server's introspection lists in the `scope` of application tokens only
/// ([`crate::oauth::APP_ROLE`]; Exchange carries it in the token's `roles`). Which mailboxes
/// are open to applications is then Dovecot's own static `username_filter` on that passdb
/// ([`crate::oauth::AppAccess::Mailboxes`]), not the provider's grant: every application with
/// a live token opens the same mailboxes. The emulators check the provider's per-application
/// grant instead ([`crate::oauth::OAuthHandle::grant_app_access`]).
///
/// Why no other arrangement: an introspection reply without `username` makes the user passdb
/// fail with an internal failure, and Dovecot then answers a later refusal with `NO
/// [UNAVAILABLE]` (temporary) instead of the 401 challenge; so application tokens report their
/// client id as `username` (RFC 6749 §4.4: the client is its own resource owner), which never
/// equals a mailbox, and user tokens reach the application passdb only to fail its scope check
/// (a plain refusal). Expired and revoked tokens are `active: false`, refused by both.
///
/// No auth cache (`auth_cache_size = 0`): every login asks the introspection endpoint, so a
/// token accepted once is refused as soon as it expires or is revoked.
#[derive(Debug, Clone)]
pub struct DovecotOAuth2 {
    pub introspection_url: String,
    /// Accept application tokens for these mailboxes; `None`: user tokens only.
    pub app_access: Option<crate::oauth::AppAccess>,
}

impl DovecotOAuth2 {
    /// User tokens only, checked against this server's introspection endpoint.
    pub fn new(server: &crate::oauth::OAuthHandle) -> Self {
        Self {
            introspection_url: server.introspection_url(),
            app_access: None,
        }
    }

    /// Also application tokens, for these mailboxes.
    pub fn with_app_access(mut self, access: crate::oauth::AppAccess) -> Self {
        self.app_access = Some(access);
        self
    }
}

/// A Dovecot master user. The master passdb is a passwd-file per login user
/// (`masters/%{login_user}`), so the administrator is refused (`AUTHENTICATIONFAILED`) for the
/// users in `refused`, the way a site grants an administrator some mailboxes only.
#[derive(Debug, Clone)]
pub struct MasterUser {
    pub user: String,
    pub password: String,
    /// Users the master user may not log in as.
    pub refused: Vec<String>,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            layout: Layout::MaildirPlusPlus,
            users: vec![("alice".to_owned(), "alice-secret".to_owned())],
            special_use: english_special_use(),
            quota_bytes: None,
            imap_capability: None,
            master: None,
            oauth2: None,
            ports: None,
        }
    }
}

/// A running private Dovecot. Stopped and its directory removed on drop (kept if the
/// environment variable `TESTBED_KEEP` is set, for post-mortems).
#[derive(Debug)]
pub struct Dovecot {
    opts: DovecotOptions,
    dir: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    ca_file: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    mail_uid: u32,
    mail_gid: u32,
    running: bool,
}

static INSTANCE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Dovecot {
    /// Starts an instance without blocking the async runtime.
    pub async fn start(opts: DovecotOptions) -> Result<Dovecot> {
        tokio::task::spawn_blocking(move || Dovecot::start_blocking(opts))
            .await
            .context("Dovecot start task panicked")?
    }

    /// Starts an instance that presents this certificate and key (PEM files, copied) instead
    /// of one signed by its own CA, e.g. a self-signed one as `openssl req -x509` makes it.
    pub async fn start_with_certificate(
        opts: DovecotOptions,
        cert: PathBuf,
        key: PathBuf,
    ) -> Result<Dovecot> {
        tokio::task::spawn_blocking(move || Dovecot::start_inner(opts, Some((cert, key))))
            .await
            .context("Dovecot start task panicked")?
    }

    /// Starts an instance (blocking; takes a fraction of a second).
    pub fn start_blocking(opts: DovecotOptions) -> Result<Dovecot> {
        Dovecot::start_inner(opts, None)
    }

    fn start_inner(
        opts: DovecotOptions,
        certificate: Option<(PathBuf, PathBuf)>,
    ) -> Result<Dovecot> {
        ensure_installed()?;
        ensure_package("/usr/bin/openssl", "openssl")?;
        if opts.users.is_empty() {
            bail!("DovecotOptions.users is empty");
        }

        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Short names: Dovecot's unix sockets live under base_dir and sun_path is 108 bytes.
        let name = format!("tb-{}-{n}-{nanos:x}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", dir.display()))?;

        let (mail_uid, mail_gid) = if current_uid()? == 0 {
            (NOBODY, NOBODY)
        } else {
            (current_uid()?, current_gid()?)
        };

        let mut dc = Dovecot {
            conf: dir.join("dovecot.conf"),
            log: dir.join("dovecot.log"),
            ca_file: dir.join("ca.pem"),
            dir,
            opts,
            imap_port: 0,
            imaps_port: 0,
            mail_uid,
            mail_gid,
            running: false,
        };
        dc.make_certs()?;
        if let Some((cert, key)) = certificate {
            for (from, to) in [(cert, "server.pem"), (key, "server.key")] {
                fs::copy(&from, dc.dir.join(to))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        dc.make_users()?;
        for dirname in ["run", "state"] {
            let p = dc.dir.join(dirname);
            fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
        }

        // Ports are found by binding port 0 and releasing it, so another process can grab one
        // before Dovecot binds it: retry with fresh ports when that happens.
        let mut last_err = None;
        for _attempt in 0..4 {
            let (imap, imaps) = match dc.opts.ports {
                Some(fixed) => fixed,
                None => free_ports()?,
            };
            dc.imap_port = imap;
            dc.imaps_port = imaps;
            dc.write_config(&name)?;
            match dc.launch() {
                Ok(()) => return Ok(dc),
                Err(e) => {
                    dc.stop();
                    let in_use =
                        dc.log_tail().contains("Address already in use") && dc.opts.ports.is_none();
                    last_err = Some(e);
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Dovecot did not start")))
    }

    fn make_certs(&self) -> Result<()> {
        let d = &self.dir;
        let ca_key = d.join("ca.key");
        let key = d.join("server.key");
        let csr = d.join("server.csr");
        let cert = d.join("server.pem");
        let ext = d.join("server.ext");
        // rustls (webpki) insists on a v3 CA with basicConstraints and a leaf with a SAN that
        // names the address we connect to; EC keys make this fast.
        run(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650"])
                .args(["-subj", "/CN=migrated testbed CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&self.ca_file),
            "openssl req (CA)",
        )?;
        run(
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args(["-nodes", "-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
            "openssl req (server)",
        )?;
        fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .with_context(|| format!("writing {}", ext.display()))?;
        let serial = format!(
            "0x{:x}",
            SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos()
        );
        run(
            Command::new("openssl")
                .args([
                    "x509",
                    "-req",
                    "-days",
                    "3650",
                    "-set_serial",
                    &serial,
                    "-in",
                ])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca_file)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
            "openssl x509 (sign server cert)",
        )?;
        Ok(())
    }

    fn make_users(&self) -> Result<()> {
        let mut passwd = String::new();
        let home_root = self.dir.join("home");
        fs::create_dir(&home_root).with_context(|| format!("creating {}", home_root.display()))?;
        for (user, pass) in &self.opts.users {
            if user.contains([':', '/', '\n']) || pass.contains([':', '\n']) {
                bail!("user {user:?}: ':', '/' and newlines cannot appear in a passwd-file entry");
            }
            let home = home_root.join(user);
            fs::create_dir(&home).with_context(|| format!("creating {}", home.display()))?;
            chown(&home, Some(self.mail_uid), Some(self.mail_gid))
                .with_context(|| format!("chown {}", home.display()))?;
            writeln!(
                passwd,
                "{user}:{{PLAIN}}{pass}:{}:{}::{}::",
                self.mail_uid,
                self.mail_gid,
                home.display()
            )?;
        }
        let path = self.dir.join("users");
        fs::write(&path, passwd).with_context(|| format!("writing {}", path.display()))?;
        if let Some(m) = &self.opts.master {
            let masters = self.dir.join("masters");
            fs::create_dir(&masters).with_context(|| format!("creating {}", masters.display()))?;
            for (user, _) in &self.opts.users {
                if !m.refused.contains(user) {
                    let f = masters.join(user);
                    fs::write(&f, format!("{}:{{PLAIN}}{}\n", m.user, m.password))
                        .with_context(|| format!("writing {}", f.display()))?;
                }
            }
        }
        Ok(())
    }

    fn write_config(&self, instance: &str) -> Result<()> {
        let d = self.dir.display();
        let mut c = String::new();
        writeln!(
            c,
            "# Generated by the migrated test bed for one private instance."
        )?;
        writeln!(c, "base_dir = {d}/run")?;
        writeln!(c, "state_dir = {d}/state")?;
        writeln!(c, "instance_name = {instance}")?;
        writeln!(c, "log_path = {}", self.log.display())?;
        writeln!(c, "protocols = imap")?;
        writeln!(c, "listen = {LOOPBACK}")?;
        writeln!(c, "ssl = yes")?;
        writeln!(c, "ssl_cert = <{d}/server.pem")?;
        writeln!(c, "ssl_key = <{d}/server.key")?;
        if Path::new("/usr/share/dovecot/dh.pem").exists() {
            writeln!(c, "ssl_dh = </usr/share/dovecot/dh.pem")?;
        }
        // Loopback only, test passwords: plaintext LOGIN without TLS is what we want to test too.
        writeln!(c, "disable_plaintext_auth = no")?;
        if self.opts.oauth2.is_some() {
            writeln!(c, "auth_mechanisms = plain login xoauth2 oauthbearer")?;
            // No cache: a token is checked at every login, so an expired one is refused.
            writeln!(c, "auth_cache_size = 0")?;
            // Each failed login from an IP delays the next ones from it (anvil's auth penalty,
            // 2, 4, 8, 15 s): a token tested right after refusals would expire waiting.
            // Dovecot's documented switch: the auth process cannot reach the penalty socket.
            writeln!(
                c,
                "service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}"
            )?;
        } else {
            writeln!(c, "auth_mechanisms = plain login xoauth2")?;
        }
        // A wrong-password test should not sleep two seconds.
        writeln!(c, "auth_failure_delay = 0")?;
        writeln!(c, "first_valid_uid = 1")?;
        writeln!(c, "first_valid_gid = 1")?;
        // Migration runs many connections per user; the defaults (10 per user+IP, 100
        // processes per service) refuse them.
        writeln!(c, "default_process_limit = 500")?;
        writeln!(c, "default_client_limit = 5000")?;
        if current_uid()? != 0 {
            let me = user_name()?;
            writeln!(c, "default_internal_user = {me}")?;
            writeln!(c, "default_login_user = {me}")?;
        }
        let location = match self.opts.layout {
            Layout::MaildirPlusPlus => "maildir:~/Maildir",
            Layout::Fs => "maildir:~/Maildir:LAYOUT=fs",
        };
        writeln!(c, "mail_location = {location}")?;
        // With token logins, password passdbs must not see XOAUTH2/OAUTHBEARER tokens.
        let password_mechs = if self.opts.oauth2.is_some() {
            "\n  mechanisms = plain login"
        } else {
            ""
        };
        if self.opts.master.is_some() {
            writeln!(c, "auth_master_user_separator = *")?;
            // Logs `Master user logging in as USER`, so tests see which logins were a master's.
            writeln!(c, "auth_verbose = yes")?;
            writeln!(
                c,
                "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/masters/%{{login_user}}\n  master = yes\n  result_success = continue{password_mechs}\n}}"
            )?;
        }
        writeln!(
            c,
            "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users{password_mechs}\n}}"
        )?;
        if let Some(o) = &self.opts.oauth2 {
            self.write_oauth2_passdbs(&mut c, o)?;
        }
        writeln!(
            c,
            "userdb {{\n  driver = passwd-file\n  args = {d}/users\n}}"
        )?;
        let unprivileged = current_uid()? != 0;
        writeln!(c, "service imap-login {{")?;
        writeln!(
            c,
            "  inet_listener imap {{\n    address = {LOOPBACK}\n    port = {}\n  }}",
            self.imap_port
        )?;
        writeln!(
            c,
            "  inet_listener imaps {{\n    address = {LOOPBACK}\n    port = {}\n    ssl = yes\n  }}",
            self.imaps_port
        )?;
        if unprivileged {
            // chroot needs root.
            writeln!(c, "  chroot =")?;
        }
        writeln!(c, "}}")?;
        if unprivileged {
            writeln!(
                c,
                "service auth-worker {{\n  user = $default_internal_user\n}}"
            )?;
        }
        writeln!(c, "namespace inbox {{")?;
        writeln!(c, "  inbox = yes")?;
        writeln!(c, "  separator = {}", self.separator())?;
        writeln!(c, "  prefix = {}", self.prefix())?;
        for (name, attr) in &self.opts.special_use {
            // Names here are without the namespace prefix, in UTF-8.
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            writeln!(
                c,
                "  mailbox \"{quoted}\" {{\n    special_use = {attr}\n    auto = subscribe\n  }}"
            )?;
        }
        writeln!(c, "}}")?;

        let quota = self.opts.quota_bytes.is_some() && has_module("quota_plugin");
        if quota {
            writeln!(c, "mail_plugins = $mail_plugins quota")?;
            writeln!(
                c,
                "plugin {{\n  quota = count:User quota\n  quota_rule = *:storage={}B\n  quota_vsizes = yes\n}}",
                self.opts.quota_bytes.unwrap_or(0)
            )?;
        } else if self.opts.quota_bytes.is_some() {
            bail!("quota_bytes is set but the Dovecot quota plugin is not installed");
        }
        let mut imap_plugins = String::new();
        if has_module("imap_zlib_plugin") {
            imap_plugins.push_str(" imap_zlib");
        }
        if quota && has_module("imap_quota_plugin") {
            imap_plugins.push_str(" imap_quota");
        }
        writeln!(c, "protocol imap {{")?;
        writeln!(c, "  mail_max_userip_connections = 100")?;
        if let Some(caps) = &self.opts.imap_capability {
            writeln!(c, "  imap_capability = {caps}")?;
        }
        if !imap_plugins.is_empty() {
            writeln!(c, "  mail_plugins = $mail_plugins{imap_plugins}")?;
        }
        writeln!(c, "}}")?;
        fs::write(&self.conf, c).with_context(|| format!("writing {}", self.conf.display()))?;
        Ok(())
    }

    /// The oauth2 passdbs and their config files (see [`DovecotOAuth2`]).
    fn write_oauth2_passdbs(&self, c: &mut String, o: &DovecotOAuth2) -> Result<()> {
        if o.introspection_url.contains(['\n', ' ']) {
            bail!(
                "DovecotOAuth2.introspection_url {:?}: no spaces or newlines",
                o.introspection_url
            );
        }
        let common = format!(
            "introspection_mode = post\nintrospection_url = {}\nactive_attribute = active\n\
             active_value = true\n",
            o.introspection_url
        );
        let user_conf = self.dir.join("oauth2-user.conf.ext");
        fs::write(
            &user_conf,
            format!("{common}username_attribute = username\nusername_format = %Lu\n"),
        )
        .with_context(|| format!("writing {}", user_conf.display()))?;
        writeln!(
            c,
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}",
            user_conf.display()
        )?;
        let Some(access) = &o.app_access else {
            return Ok(());
        };
        let app_conf = self.dir.join("oauth2-app.conf.ext");
        fs::write(
            &app_conf,
            format!(
                "{common}username_attribute = client_id\nusername_format = application\n\
                 scope = {}\n",
                crate::oauth::APP_ROLE
            ),
        )
        .with_context(|| format!("writing {}", app_conf.display()))?;
        let filter = match access {
            crate::oauth::AppAccess::AllMailboxes => String::new(),
            crate::oauth::AppAccess::Mailboxes(list) => {
                if list.is_empty() || list.iter().any(|u| u.contains([' ', '\n', '!', '*', '?'])) {
                    bail!("AppAccess::Mailboxes {list:?}: a non-empty list of plain user names");
                }
                format!("\n  username_filter = {}", list.join(" ").to_lowercase())
            }
        };
        writeln!(
            c,
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer{filter}\n  args = {}\n}}",
            app_conf.display()
        )?;
        Ok(())
    }

    fn launch(&mut self) -> Result<()> {
        // The master daemonizes and keeps whatever stdout/stderr it was given: with pipes,
        // `output()` would wait for an EOF that never comes. Use a file instead.
        let err_path = self.dir.join("dovecot-start.err");
        let err_file =
            File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
        let status = Command::new(DOVECOT_BIN)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .with_context(|| format!("running {DOVECOT_BIN} -c {}", self.conf.display()))?;
        if !status.success() {
            bail!(
                "{DOVECOT_BIN} -c {} failed ({status}): {}\nlog:\n{}",
                self.conf.display(),
                fs::read_to_string(&err_path).unwrap_or_default(),
                self.log_tail()
            );
        }
        self.running = true;
        self.wait_for_greeting(Duration::from_secs(15))
    }

    /// The master forks and returns before the listeners serve: wait for an IMAP greeting.
    fn wait_for_greeting(&self, limit: Duration) -> Result<()> {
        let addr: SocketAddr = format!("{LOOPBACK}:{}", self.imap_port).parse()?;
        let deadline = Instant::now() + limit;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut line = String::new();
                    match BufReader::new(stream).read_line(&mut line) {
                        Ok(_) if line.starts_with("* OK") => return Ok(()),
                        Ok(_) => last = format!("unexpected greeting {line:?}"),
                        Err(e) => last = format!("reading greeting: {e}"),
                    }
                }
                Err(e) => last = format!("connect {addr}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "Dovecot ({}) did not greet on {addr} within {limit:?}: {last}\nlog:\n{}",
            self.conf.display(),
            self.log_tail()
        )
    }

    /// Stops the instance (idempotent). `dovecot stop` would take about 3 s: after SIGTERM the
    /// mail and auth processes are gone within ~0.2 s, but the master and its `log` child
    /// then idle for seconds. So: SIGTERM, wait until only `log` is left (nothing left that
    /// could write mail), then SIGKILL what remains.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pid_file = self.dir.join("run/master.pid");
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let Some(pid) = pid else {
            // No pid file: let dovecot find its master itself.
            let _ = Command::new(DOVECOT_BIN)
                .arg("-c")
                .arg(&self.conf)
                .arg("stop")
                .output();
            return;
        };
        signal("-TERM", &[pid]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            let children = children_of(pid);
            let only_log = children.iter().all(|(_, cmd)| cmd.ends_with("/log"));
            if only_log || Instant::now() > deadline {
                let mut pids: Vec<u32> = children.iter().map(|(p, _)| *p).collect();
                pids.push(pid);
                signal("-KILL", &pids);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn options(&self) -> &DovecotOptions {
        &self.opts
    }

    pub fn host(&self) -> &str {
        LOOPBACK
    }

    /// Plain port (STARTTLS offered).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// Implicit-TLS port.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// PEM file of the instance's own CA, which signed its certificate for 127.0.0.1/localhost.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn layout(&self) -> Layout {
        self.opts.layout
    }

    pub fn separator(&self) -> char {
        self.opts.layout.separator()
    }

    pub fn prefix(&self) -> &str {
        self.opts.layout.prefix()
    }

    /// The instance's directory (config, log, certificates, homes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_file(&self) -> &Path {
        &self.conf
    }

    /// Root of the user's maildir (INBOX lives here in both layouts).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user).join("Maildir")
    }

    /// (uid, gid) the mail processes run as; files written behind Dovecot's back must be owned
    /// by them.
    pub fn mail_owner(&self) -> (u32, u32) {
        (self.mail_uid, self.mail_gid)
    }

    /// The password configured for `user`.
    pub fn password(&self, user: &str) -> Result<&str> {
        password_of(&self.opts.users, user, "Dovecot")
    }

    /// An account on the plain port without TLS.
    pub fn account(&self, user: &str) -> Result<Account> {
        plain_account(self.imap_port, user, self.password(user)?)
    }

    /// An account on the implicit-TLS port, trusting the instance's CA.
    pub fn account_tls(&self, user: &str) -> Result<Account> {
        Ok(Account {
            port: self.imaps_port,
            tls: Tls::Implicit {
                ca_file: self.ca_file.clone(),
            },
            ..self.account(user)?
        })
    }

    /// Changes the storage quota of every user and reloads the server (connections stay).
    ///
    /// # Errors
    ///
    /// If the instance has no quota, or the reload fails.
    pub fn set_quota(&mut self, bytes: u64) -> Result<()> {
        let text = fs::read_to_string(&self.conf)?;
        let Some(start) = text.find("quota_rule = *:storage=") else {
            bail!("this instance was started without quota_bytes");
        };
        let end = start + text[start..].find('\n').unwrap_or(text.len() - start);
        let text = format!(
            "{}quota_rule = *:storage={bytes}B{}",
            &text[..start],
            &text[end..]
        );
        fs::write(&self.conf, text)?;
        self.opts.quota_bytes = Some(bytes);
        self.doveadm(&["reload"])?;
        // The reload is asynchronous: give the master a moment to apply it.
        std::thread::sleep(std::time::Duration::from_millis(500));
        Ok(())
    }

    /// Runs `doveadm -c <conf> <args>` against this instance and returns its stdout.
    pub fn doveadm(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .with_context(|| format!("running doveadm {args:?}"))?;
        if !out.status.success() {
            bail!(
                "doveadm -c {} {args:?} failed ({}): {}",
                self.conf.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last 60 lines of the instance's log.
    /// The whole log of the instance.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            }
            Err(e) => format!("(no log at {}: {e})", self.log.display()),
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        remove_unless_kept(&self.dir);
    }
}

fn signal(sig: &str, pids: &[u32]) {
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// True while the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// (pid, command line) of the live children of `parent`.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.push((pid, cmd.trim_end_matches('\0').to_owned()));
        }
    }
    out
}

fn has_module(stem: &str) -> bool {
    fs::read_dir(MODULE_DIR)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(&format!("_{stem}.so"))
            })
        })
        .unwrap_or(false)
}

/// Two distinct free loopback ports (both held while the second is chosen).
fn free_ports() -> Result<(u16, u16)> {
    let a = TcpListener::bind((LOOPBACK, 0)).context("binding a free loopback port")?;
    let b = TcpListener::bind((LOOPBACK, 0)).context("binding a free loopback port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn id_output(flag: &str) -> Result<String> {
    let out = Command::new("id")
        .arg(flag)
        .output()
        .with_context(|| format!("running id {flag}"))?;
    if !out.status.success() {
        bail!("id {flag} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

// std has no getuid() and `unsafe_code` is forbidden, so the owner of /proc/self tells us.
fn current_uid() -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata("/proc/self").context("stat /proc/self")?.uid())
}

fn current_gid() -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata("/proc/self").context("stat /proc/self")?.gid())
}

fn user_name() -> Result<String> {
    id_output("-un")
}

/// `user`'s password among a bed's `(user, password)` pairs; `server` names the bed in the error.
pub(crate) fn password_of<'a>(
    users: &'a [(String, String)],
    user: &str,
    server: &str,
) -> Result<&'a str> {
    users
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, p)| p.as_str())
        .with_context(|| format!("no user {user:?} in this {server} instance"))
}

/// An account on a bed's plain port on loopback (no TLS).
pub(crate) fn plain_account(port: u16, user: &str, password: &str) -> Result<Account> {
    Ok(Account {
        host: LOOPBACK.to_owned(),
        port,
        user: user.to_owned(),
        password: password.to_owned(),
        tls: Tls::Plain,
    })
}

/// Removes a stopped bed's directory, or keeps it for a post-mortem when `TESTBED_KEEP` is set.
pub(crate) fn remove_unless_kept(dir: &Path) {
    if std::env::var_os("TESTBED_KEEP").is_some() {
        eprintln!("TESTBED_KEEP: leaving {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}
