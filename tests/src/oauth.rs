//! A local OAuth 2 authorization server for tests: plain HTTP/1.1 on 127.0.0.1 (a free port),
//! one thread per connection, stopped on drop. Plain http is enough on loopback; real
//! providers are https only.
//!
//! # Endpoints (all `POST`, form-encoded bodies, JSON replies, `Cache-Control: no-store`)
//!
//! - `/token` (RFC 6749 §3.2) with `grant_type`:
//!   - `refresh_token` (§6): client authentication in the body (`client_id`, `client_secret`)
//!     or HTTP Basic (§2.3.1). Answers `access_token`, `token_type` `Bearer`, `expires_in`,
//!     `scope` (and a new `refresh_token` when [`OAuthOptions::rotate_refresh_tokens`] is set,
//!     as Microsoft does; the old one stays valid, as there).
//!   - `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523, Google service accounts with
//!     domain-wide delegation): `assertion` is an RS256 JWT signed with a registered service
//!     account's key; `iss` its `client_email`, `aud` this `/token` URL, `exp - iat <= 3600`,
//!     `scope` granted to the account, `sub` the user the token is for (one of the account's
//!     users when they are listed; without `sub`, the token is for the account itself). Errors
//!     as Google words them.
//!   - `client_credentials` (RFC 6749 §4.4, Microsoft 365 application access): scope ending in
//!     `/.default`; the token names no user and opens the mailboxes the application was granted
//!     ([`OAuthHandle::grant_app_access`]). Reply as Microsoft's: no `scope`, `ext_expires_in`.
//!   - `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4, §3.5):
//!     `authorization_pending`, `slow_down` (polled sooner than the interval after the previous
//!     poll), `expired_token`, `access_denied`; once approved, an access and a refresh token for
//!     the user who approved. A device code is good for one token answer.
//! - `/device_authorization` (RFC 8628 §3.1, §3.2): `device_code`, `user_code`,
//!   `verification_uri` (RFC 8628 and Microsoft; Google spells it `verification_url`, and no
//!   provider sends both, which a client's parser may refuse as a duplicate), `expires_in`,
//!   `interval`.
//! - `/introspect` (RFC 7662): `token=...` gives `{"active":true,"username":..,"scope":..,
//!   "exp":..,"client_id":..}` for a live access token, `{"active":false}` for anything else
//!   (expired, revoked, unknown, or a refresh token). Dovecot's oauth2 passdb calls it; callers
//!   are not authenticated (loopback only). An application token reports `username` = its
//!   client id (the client is its own resource owner, RFC 6749 §4.4) and adds the role
//!   [`APP_ROLE`] to its `scope`: see `crate::dovecot::DovecotOAuth2` for why.
//! - `/revoke` (RFC 7009): revokes a refresh token and the access tokens obtained with it, or
//!   one access token; always 200.
//!
//! Errors are RFC 6749 §5.2 JSON (`{"error":"invalid_grant","error_description":"..."}`) with
//! HTTP 400, or 401 `invalid_client` when client authentication fails (with
//! `WWW-Authenticate: Basic` when the client used Basic).
//!
//! # What the real providers do that this server does not
//!
//! No TLS, no authorization-code grant or consent page (tests approve device codes through
//! [`OAuthHandle::approve_device`]), no JWT access tokens (they are opaque random strings, as
//! Google's; Microsoft's are JWTs a client must not parse anyway), no `id_token`, no per-IP
//! throttling or rate limits, `ext_expires_in` equal to `expires_in`, no AADSTS error numbers,
//! no refresh-token expiry of its own (only revocation), introspection callers are not
//! authenticated, one request per connection (`Connection: close`), and the clock is the
//! machine's real clock (a process under libfaketime sees another one). `slow_down` does not lengthen the interval the server
//! enforces afterwards (RFC 8628 lets the client add 5 s; the server keeps the configured one).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::b64;

/// The grant type of RFC 7523 (JWT bearer assertions).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The grant type of RFC 8628 (device authorization).
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Gmail's IMAP scope.
pub const GMAIL_SCOPE: &str = "https://mail.google.com/";
/// The scope a Microsoft 365 application asks for IMAP with the client credentials grant.
pub const OUTLOOK_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// The role Exchange Online requires of an application token for IMAP (`roles` claim); the
/// introspection reply of an application token lists it in `scope`.
pub const APP_ROLE: &str = "IMAP.AccessAsApp";

const MAX_BODY: usize = 1 << 20;
const MAX_HEADERS: usize = 64 << 10;

/// How the server behaves. Durations are whole seconds on the wire (rounded up).
#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// Life of an access token (`expires_in`).
    pub access_token_lifetime: Duration,
    /// The polling interval of the device grant.
    pub device_interval: Duration,
    /// Life of a device code.
    pub device_code_lifetime: Duration,
    /// Answer each refresh with a new refresh token too (Microsoft); the old one stays valid.
    pub rotate_refresh_tokens: bool,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(3600),
            device_interval: Duration::from_secs(1),
            device_code_lifetime: Duration::from_secs(600),
            rotate_refresh_tokens: false,
        }
    }
}

/// How an access token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    RefreshToken,
    JwtBearer,
    ClientCredentials,
    DeviceCode,
}

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The user the token is for; `None` for an application token.
    pub user: Option<String>,
    /// An application token (client credentials): valid for the mailboxes the app was granted.
    pub app: bool,
    /// The client (or, for JWT bearer, the service account's `client_email`) it was issued to.
    pub client_id: String,
    pub expires_at: SystemTime,
    /// Space-separated scopes.
    pub scope: String,
    pub grant: Grant,
}

/// Which mailboxes an application may open with a client-credentials token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppAccess {
    /// Every mailbox (Exchange's `Add-MailboxPermission` on all of them).
    AllMailboxes,
    /// These mailboxes only (compared without regard to ASCII case).
    Mailboxes(Vec<String>),
}

impl AppAccess {
    fn allows(&self, mailbox: &str) -> bool {
        match self {
            AppAccess::AllMailboxes => true,
            AppAccess::Mailboxes(list) => list.iter().any(|m| m.eq_ignore_ascii_case(mailbox)),
        }
    }
}

/// A service account to register: its identity and what domain-wide delegation grants it.
#[derive(Debug, Clone)]
pub struct ServiceAccountOptions {
    /// `name@project.iam.gserviceaccount.com`.
    pub client_email: String,
    /// The users it may act for (`sub`); `None`: anyone.
    pub users: Option<Vec<String>>,
    /// The scopes delegated to it in the admin console.
    pub scopes: Vec<String>,
}

impl ServiceAccountOptions {
    /// An account delegated Gmail's scope for any user.
    pub fn gmail(client_email: &str) -> Self {
        Self {
            client_email: client_email.to_owned(),
            users: None,
            scopes: vec![GMAIL_SCOPE.to_owned()],
        }
    }
}

/// A service account's key file, as Google's console writes it.
#[derive(Debug, Clone)]
pub struct ServiceAccountKey {
    /// The JSON key file (mode 0600).
    pub path: PathBuf,
    pub client_email: String,
    pub client_id: String,
    pub private_key_id: String,
}

/// Counts since start, so tests can tell that refreshing really happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthCounters {
    /// Access tokens issued by grant type.
    pub refresh_grants: u64,
    pub jwt_bearer_grants: u64,
    pub client_credentials_grants: u64,
    pub device_code_grants: u64,
    /// `/token` requests answered with an error (pending device polls included).
    pub refused_token_requests: u64,
    pub device_authorizations: u64,
    pub slow_downs: u64,
    /// `/introspect` calls, and those answered `active: false`.
    pub introspections: u64,
    pub inactive_introspections: u64,
    /// In-process [`OAuthHandle::validate`] / [`OAuthHandle::authorize`] calls, and those that
    /// refused the token.
    pub validations: u64,
    pub failed_validations: u64,
    /// Tokens revoked through `/revoke` or the test API.
    pub revocations: u64,
}

impl OAuthCounters {
    /// Access tokens issued, all grants together.
    pub fn access_tokens_issued(&self) -> u64 {
        self.refresh_grants
            + self.jwt_bearer_grants
            + self.client_credentials_grants
            + self.device_code_grants
    }
}

struct Client {
    /// `None`: a public client (no secret, as migratectl's device grant with Microsoft).
    secret: Option<String>,
    app: Option<AppAccess>,
}

struct ServiceAccount {
    public_der: Vec<u8>,
    key_id: String,
    opts: ServiceAccountOptions,
}

struct RefreshGrant {
    client_id: String,
    user: String,
    scope: String,
    revoked: bool,
}

struct Access {
    info: TokenInfo,
    revoked: bool,
    refresh: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved(String),
    Denied,
    Used,
}

struct Device {
    client_id: String,
    user_code: String,
    scope: String,
    expires_at: Instant,
    last_poll: Option<Instant>,
    status: DeviceStatus,
}

struct State {
    opts: OAuthOptions,
    clients: HashMap<String, Client>,
    service_accounts: HashMap<String, ServiceAccount>,
    refresh: HashMap<String, RefreshGrant>,
    access: HashMap<String, Access>,
    devices: HashMap<String, Device>,
    counters: OAuthCounters,
}

struct Shared {
    base_url: String,
    state: Mutex<State>,
}

/// The test-side API of a running server: cheap to clone, thread-safe; emulators keep one to
/// validate tokens in-process. Two handles are equal when they are of the same server.
#[derive(Clone)]
pub struct OAuthHandle(Arc<Shared>);

impl fmt::Debug for OAuthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthHandle")
            .field("base_url", &self.0.base_url)
            .finish_non_exhaustive()
    }
}

impl PartialEq for OAuthHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OAuthHandle {}

/// A running server; dereferences to its [`OAuthHandle`]. Stopped on drop.
#[derive(Debug)]
pub struct OAuthServer {
    handle: OAuthHandle,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for OAuthServer {
    type Target = OAuthHandle;
    fn deref(&self) -> &OAuthHandle {
        &self.handle
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl OAuthServer {
    /// Starts a server on 127.0.0.1 on a free port (the OS picks it: nothing can take it
    /// between choosing and binding).
    ///
    /// # Errors
    ///
    /// When it cannot listen.
    pub fn start(opts: OAuthOptions) -> Result<OAuthServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .context("OAuth test server: binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            state: Mutex::new(State {
                opts,
                clients: HashMap::new(),
                service_accounts: HashMap::new(),
                refresh: HashMap::new(),
                access: HashMap::new(),
                devices: HashMap::new(),
                counters: OAuthCounters::default(),
            }),
        });
        let handle = OAuthHandle(shared);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let handle = handle.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("oauth-testbed".into())
                .spawn(move || accept_loop(&listener, &handle, &stop))
                .context("spawning the OAuth test server thread")?
        };
        Ok(OAuthServer {
            handle,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// A handle for emulators. It keeps validating in-process after the server is dropped
    /// (only HTTP stops).
    pub fn handle(&self) -> OAuthHandle {
        self.handle.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn accept_loop(listener: &TcpListener, handle: &OAuthHandle, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let handle = handle.clone();
        let _ = std::thread::Builder::new()
            .name("oauth-testbed-conn".into())
            .spawn(move || {
                let _ = serve(stream, &handle);
            });
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("getrandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl OAuthHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// The token endpoint (also the `aud` of JWT assertions and a key file's `token_uri`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.0.base_url)
    }

    pub fn device_authorization_url(&self) -> String {
        format!("{}/device_authorization", self.0.base_url)
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.0.base_url)
    }

    pub fn revocation_url(&self) -> String {
        format!("{}/revoke", self.0.base_url)
    }

    /// The page a device-grant user is sent to (answers nothing useful: approve in the test).
    pub fn verification_url(&self) -> String {
        format!("{}/device", self.0.base_url)
    }

    /// Registers (or replaces) a confidential client.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        self.lock().clients.insert(
            client_id.to_owned(),
            Client {
                secret: Some(secret.to_owned()),
                app: None,
            },
        );
    }

    /// Registers (or replaces) a public client, which authenticates with its id only.
    pub fn register_public_client(&self, client_id: &str) {
        self.lock().clients.insert(
            client_id.to_owned(),
            Client {
                secret: None,
                app: None,
            },
        );
    }

    /// Lets a registered client's application tokens open these mailboxes.
    ///
    /// # Panics
    ///
    /// If the client is not registered.
    pub fn grant_app_access(&self, client_id: &str, access: AppAccess) {
        let mut s = self.lock();
        let c = s
            .clients
            .get_mut(client_id)
            .unwrap_or_else(|| panic!("grant_app_access: no client {client_id:?}"));
        c.app = Some(access);
    }

    /// Sets the life of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.lock().opts.access_token_lifetime = lifetime;
    }

    /// Sets the device grant's polling interval for device codes issued from now on.
    pub fn set_device_interval(&self, interval: Duration) {
        self.lock().opts.device_interval = interval;
    }

    /// Sets the life of device codes issued from now on.
    pub fn set_device_code_lifetime(&self, lifetime: Duration) {
        self.lock().opts.device_code_lifetime = lifetime;
    }

    /// Generates a 2048-bit RSA key (openssl CLI), registers the account with its public key and
    /// writes a Google-format JSON key file `<client_email's local part>.json` into `dir` (mode
    /// 0600). The private key is never written anywhere else.
    ///
    /// # Errors
    ///
    /// When openssl fails or the file cannot be written.
    pub fn register_service_account(
        &self,
        dir: &Path,
        opts: ServiceAccountOptions,
    ) -> Result<ServiceAccountKey> {
        crate::dovecot::ensure_package("/usr/bin/openssl", "openssl")?;
        let private_pem = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        )?;
        if !private_pem.starts_with(b"-----BEGIN PRIVATE KEY-----") {
            bail!("openssl genpkey did not write a PKCS#8 PEM key");
        }
        let public_der = openssl(
            &["rsa", "-RSAPublicKey_out", "-outform", "DER"],
            Some(&private_pem),
        )?;
        let key_id = random_hex(20);
        // Google's client ids of service accounts are 21 digits.
        let client_id: String = std::iter::once('1')
            .chain(random_hex(10).bytes().map(|b| char::from(b % 10 + b'0')))
            .collect();
        let (local, project) = opts
            .client_email
            .split_once('@')
            .map(|(l, d)| (l, d.split('.').next().unwrap_or("testbed")))
            .unwrap_or((opts.client_email.as_str(), "testbed"));
        let key = json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": String::from_utf8_lossy(&private_pem),
            "client_email": opts.client_email,
            "client_id": client_id,
            "auth_uri": format!("{}/auth", self.0.base_url),
            "token_uri": self.token_url(),
            "auth_provider_x509_cert_url": format!("{}/certs", self.0.base_url),
            "client_x509_cert_url": format!("{}/certs/{}", self.0.base_url, opts.client_email),
            "universe_domain": "googleapis.com",
        });
        let path = dir.join(format!("{local}.json"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(serde_json::to_string_pretty(&key)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        let out = ServiceAccountKey {
            path,
            client_email: opts.client_email.clone(),
            client_id,
            private_key_id: key_id.clone(),
        };
        self.lock().service_accounts.insert(
            opts.client_email.clone(),
            ServiceAccount {
                public_der,
                key_id,
                opts,
            },
        );
        Ok(out)
    }

    /// Issues a refresh token for `user` to a registered client, as if the user had consented.
    ///
    /// # Panics
    ///
    /// If the client is not registered.
    pub fn issue_refresh_token(&self, client_id: &str, user: &str, scope: &str) -> String {
        let mut s = self.lock();
        assert!(
            s.clients.contains_key(client_id),
            "issue_refresh_token: no client {client_id:?}"
        );
        new_refresh(&mut s, client_id, user, scope)
    }

    /// Revokes a refresh token: refreshing with it fails (`invalid_grant`) from now on. Access
    /// tokens already obtained stay valid until they expire (as at Microsoft); see
    /// [`OAuthHandle::revoke_user`] for both. `false` if the token is unknown.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        let mut s = self.lock();
        let Some(g) = s.refresh.get_mut(refresh_token) else {
            return false;
        };
        g.revoked = true;
        s.counters.revocations += 1;
        true
    }

    /// Revokes every refresh and access token of a user (a password reset or "sign out
    /// everywhere"). Returns how many tokens were revoked.
    pub fn revoke_user(&self, user: &str) -> usize {
        let mut s = self.lock();
        let mut n = 0;
        for g in s.refresh.values_mut() {
            if g.user.eq_ignore_ascii_case(user) && !g.revoked {
                g.revoked = true;
                n += 1;
            }
        }
        for a in s.access.values_mut() {
            if a.info
                .user
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(user))
                && !a.revoked
            {
                a.revoked = true;
                n += 1;
            }
        }
        s.counters.revocations += n as u64;
        n
    }

    /// Makes every access token issued so far expire now (their refresh tokens stay good): the
    /// next use of a token is refused, as when a provider cuts tokens short.
    pub fn expire_access_tokens(&self) {
        let now = SystemTime::now();
        for a in self.lock().access.values_mut() {
            a.info.expires_at = a.info.expires_at.min(now);
        }
    }

    /// The user codes (without the dash) of the device authorizations waiting for a user, in
    /// no particular order.
    pub fn pending_user_codes(&self) -> Vec<String> {
        self.lock()
            .devices
            .values()
            .filter(|d| d.status == DeviceStatus::Pending)
            .map(|d| d.user_code.clone())
            .collect()
    }

    /// The user approves a device code: the next poll gets tokens for `user`. `false` if no
    /// pending authorization has this user code.
    pub fn approve_device(&self, user_code: &str, user: &str) -> bool {
        self.set_device(user_code, DeviceStatus::Approved(user.to_owned()))
    }

    /// The user refuses a device code: the next poll gets `access_denied`.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.set_device(user_code, DeviceStatus::Denied)
    }

    fn set_device(&self, user_code: &str, status: DeviceStatus) -> bool {
        let mut s = self.lock();
        let want = normalize_user_code(user_code);
        match s.devices.values_mut().find(|d| {
            d.user_code == want
                && d.status == DeviceStatus::Pending
                && Instant::now() < d.expires_at
        }) {
            Some(d) => {
                d.status = status;
                true
            }
            None => false,
        }
    }

    /// What a live access token stands for; `None` if it is unknown, expired or revoked.
    /// Counted in [`OAuthCounters::validations`].
    pub fn validate(&self, token: &str) -> Option<TokenInfo> {
        let mut s = self.lock();
        s.counters.validations += 1;
        let info = live(&s, token);
        if info.is_none() {
            s.counters.failed_validations += 1;
        }
        info
    }

    /// As [`OAuthHandle::validate`], and the token must open `mailbox`: a user token of that
    /// user (ASCII case ignored), or an application token of a client granted that mailbox.
    pub fn authorize(&self, token: &str, mailbox: &str) -> Option<TokenInfo> {
        let mut s = self.lock();
        s.counters.validations += 1;
        let info = live(&s, token).filter(|i| match &i.user {
            Some(u) => u.eq_ignore_ascii_case(mailbox),
            None => {
                i.app
                    && s.clients
                        .get(&i.client_id)
                        .and_then(|c| c.app.as_ref())
                        .is_some_and(|a| a.allows(mailbox))
            }
        });
        if info.is_none() {
            s.counters.failed_validations += 1;
        }
        info
    }

    /// True while the token is live; not counted (for sessions that check on every command).
    pub fn is_live(&self, token: &str) -> bool {
        live(&self.lock(), token).is_some()
    }

    pub fn counters(&self) -> OAuthCounters {
        self.lock().counters.clone()
    }
}

/// The `Authorization` header value of HTTP Basic client authentication (RFC 6749 §2.3.1: id
/// and secret form-urlencoded, then base64).
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    let enc = |v: &str| -> String {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let pair = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        b64::encode(pair.as_bytes(), b64::STANDARD, true)
    )
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running openssl {}", args[0]))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .with_context(|| format!("writing to openssl {}", args[0]))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for openssl {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            args[0],
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn live(s: &State, token: &str) -> Option<TokenInfo> {
    let a = s.access.get(token)?;
    (!a.revoked && SystemTime::now() < a.info.expires_at).then(|| a.info.clone())
}

fn new_refresh(s: &mut State, client_id: &str, user: &str, scope: &str) -> String {
    let token = format!("1//rt-{}", random_hex(24));
    s.refresh.insert(
        token.clone(),
        RefreshGrant {
            client_id: client_id.to_owned(),
            user: user.to_owned(),
            scope: scope.to_owned(),
            revoked: false,
        },
    );
    token
}

/// Issues an access token; returns it with its lifetime in whole seconds.
fn new_access(
    s: &mut State,
    user: Option<&str>,
    client_id: &str,
    scope: &str,
    grant: Grant,
    refresh: Option<&str>,
) -> (String, u64) {
    let token = format!("ya29.at-{}", random_hex(24));
    let lifetime = s.opts.access_token_lifetime;
    s.access.insert(
        token.clone(),
        Access {
            info: TokenInfo {
                user: user.map(str::to_owned),
                app: user.is_none(),
                client_id: client_id.to_owned(),
                expires_at: SystemTime::now() + lifetime,
                scope: scope.to_owned(),
                grant,
            },
            revoked: false,
            refresh: refresh.map(str::to_owned),
        },
    );
    let c = &mut s.counters;
    match grant {
        Grant::RefreshToken => c.refresh_grants += 1,
        Grant::JwtBearer => c.jwt_bearer_grants += 1,
        Grant::ClientCredentials => c.client_credentials_grants += 1,
        Grant::DeviceCode => c.device_code_grants += 1,
    }
    (token, whole_secs(lifetime))
}

/// An RFC 6749 §5.2 error reply.
struct Fail {
    status: u16,
    error: &'static str,
    description: String,
    basic: bool,
}

fn fail(error: &'static str, description: impl Into<String>) -> Fail {
    Fail {
        status: 400,
        error,
        description: description.into(),
        basic: false,
    }
}

type Form = HashMap<String, String>;

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Result<Option<Request>> {
    let mut rd = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if rd.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    let mut size = line.len();
    loop {
        let mut h = String::new();
        if rd.read_line(&mut h)? == 0 {
            bail!("connection closed in the headers");
        }
        size += h.len();
        if size > MAX_HEADERS {
            bail!("headers too long");
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("Transfer-Encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        bail!("chunked request bodies are not supported by the test server");
    }
    let len: usize = req
        .header("Content-Length")
        .map(str::parse)
        .transpose()
        .context("bad Content-Length")?
        .unwrap_or(0);
    if len > MAX_BODY {
        bail!("body too big");
    }
    req.body.resize(len, 0);
    rd.read_exact(&mut req.body)?;
    Ok(Some(req))
}

fn serve(stream: TcpStream, handle: &OAuthHandle) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let routed = match read_request(&stream) {
        Ok(None) => return Ok(()),
        Ok(Some(req)) => route(handle, &req),
        Err(e) => Err(fail(
            "invalid_request",
            format!("malformed HTTP request: {e:#}"),
        )),
    };
    let (status, body, basic) = match routed {
        Ok(v) => (200, v, false),
        Err(f) => (
            f.status,
            json!({"error": f.error, "error_description": f.description}),
            f.basic,
        ),
    };
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Cache-Control: no-store\r\nPragma: no-cache\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if basic {
        head.push_str("WWW-Authenticate: Basic realm=\"oauth-testbed\"\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn route(h: &OAuthHandle, req: &Request) -> Result<Value, Fail> {
    let known = ["/token", "/device_authorization", "/introspect", "/revoke"];
    if !known.contains(&req.path.as_str()) {
        return Err(Fail {
            status: 404,
            ..fail("not_found", format!("no endpoint {}", req.path))
        });
    }
    if req.method != "POST" {
        return Err(Fail {
            status: 405,
            ..fail("invalid_request", format!("{} takes POST", req.path))
        });
    }
    let form = parse_form(&req.body)?;
    match req.path.as_str() {
        "/token" => {
            let r = token(h, req, &form);
            if r.is_err() {
                h.lock().counters.refused_token_requests += 1;
            }
            r
        }
        "/device_authorization" => device_authorization(h, req, &form),
        "/introspect" => Ok(introspect(h, &form)),
        _ => revoke(h, req, &form),
    }
}

fn parse_form(body: &[u8]) -> Result<Form, Fail> {
    let text =
        std::str::from_utf8(body).map_err(|_| fail("invalid_request", "the body is not UTF-8"))?;
    let mut form = Form::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)?;
        let v = percent_decode(v)?;
        if form.insert(k.clone(), v).is_some() {
            return Err(fail(
                "invalid_request",
                format!("parameter {k} appears more than once"),
            ));
        }
    }
    Ok(form)
}

fn percent_decode(s: &str) -> Result<String, Fail> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| fail("invalid_request", "bad percent-encoding"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| fail("invalid_request", "parameter is not UTF-8"))
}

fn param<'a>(form: &'a Form, name: &str) -> Result<&'a str, Fail> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            fail(
                "invalid_request",
                format!("Missing required parameter: {name}"),
            )
        })
}

/// RFC 6749 §2.3.1: HTTP Basic or the body, not both. Returns the client id.
fn authenticate_client(h: &OAuthHandle, req: &Request, form: &Form) -> Result<String, Fail> {
    let basic = req.header("Authorization").and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
    });
    let (id, secret, used_basic) = if let Some(b) = basic {
        if form.contains_key("client_secret") {
            return Err(fail(
                "invalid_request",
                "client authenticated with both HTTP Basic and client_secret",
            ));
        }
        let decoded = b64::decode(b.trim().trim_end_matches('=').as_bytes(), b64::STANDARD)
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| Fail {
                status: 401,
                basic: true,
                ..fail("invalid_client", "malformed HTTP Basic credentials")
            })?;
        let (id, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
        (percent_decode(id)?, Some(percent_decode(secret)?), true)
    } else {
        let id = form
            .get("client_id")
            .cloned()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Fail {
                status: 401,
                ..fail("invalid_client", "no client authentication")
            })?;
        (id, form.get("client_secret").cloned(), false)
    };
    let s = h.lock();
    let ok = match s.clients.get(&id) {
        Some(Client {
            secret: Some(want), ..
        }) => secret.as_deref() == Some(want.as_str()),
        Some(Client { secret: None, .. }) => true,
        None => false,
    };
    if ok {
        Ok(id)
    } else {
        let what = if s.clients.contains_key(&id) {
            "Invalid client secret provided."
        } else {
            "The OAuth client was not found."
        };
        Err(Fail {
            status: 401,
            basic: used_basic,
            ..fail("invalid_client", what)
        })
    }
}

fn token(h: &OAuthHandle, req: &Request, form: &Form) -> Result<Value, Fail> {
    match param(form, "grant_type")? {
        "refresh_token" => {
            let client = authenticate_client(h, req, form)?;
            let rt = param(form, "refresh_token")?;
            let mut s = h.lock();
            let (user, scope) = match s.refresh.get(rt) {
                Some(g) if g.revoked => {
                    return Err(fail("invalid_grant", "Token has been expired or revoked."));
                }
                Some(g) if g.client_id != client => {
                    return Err(fail(
                        "invalid_grant",
                        "The refresh token was issued to another client.",
                    ));
                }
                Some(g) => (g.user.clone(), g.scope.clone()),
                None => return Err(fail("invalid_grant", "Bad Request: unknown refresh token.")),
            };
            let (at, exp) = new_access(
                &mut s,
                Some(&user),
                &client,
                &scope,
                Grant::RefreshToken,
                Some(rt),
            );
            let mut reply = json!({
                "access_token": at, "token_type": "Bearer", "expires_in": exp, "scope": scope,
            });
            if s.opts.rotate_refresh_tokens {
                reply["refresh_token"] = json!(new_refresh(&mut s, &client, &user, &scope));
            }
            Ok(reply)
        }
        JWT_BEARER => jwt_bearer(h, form),
        "client_credentials" => {
            let client = authenticate_client(h, req, form)?;
            let scope = param(form, "scope")?;
            if !scope.split(' ').all(|s| s.ends_with("/.default")) {
                return Err(fail(
                    "invalid_scope",
                    format!(
                        "The provided value for scope {scope} is not valid. Client credential \
                         flows must have a scope value with /.default suffixed to the resource \
                         identifier (application ID URI)."
                    ),
                ));
            }
            let mut s = h.lock();
            let (at, exp) =
                new_access(&mut s, None, &client, scope, Grant::ClientCredentials, None);
            Ok(json!({
                "token_type": "Bearer", "expires_in": exp, "ext_expires_in": exp,
                "access_token": at,
            }))
        }
        DEVICE_CODE => device_token(h, req, form),
        other => Err(fail(
            "unsupported_grant_type",
            format!("Invalid grant_type: {other}"),
        )),
    }
}

fn jwt_bearer(h: &OAuthHandle, form: &Form) -> Result<Value, Fail> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let assertion = param(form, "assertion")?;
    let header =
        decode_header(assertion).map_err(|e| fail("invalid_grant", format!("Invalid JWT: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(fail(
            "invalid_grant",
            format!("Invalid JWT: alg {:?}, expected RS256", header.alg),
        ));
    }
    let mut peek = Validation::new(Algorithm::RS256);
    peek.insecure_disable_signature_validation();
    peek.validate_exp = false;
    peek.validate_aud = false;
    peek.required_spec_claims.clear();
    let unverified = decode::<Value>(assertion, &DecodingKey::from_secret(&[]), &peek)
        .map_err(|e| fail("invalid_grant", format!("Invalid JWT: {e}")))?
        .claims;
    let iss = unverified["iss"].as_str().unwrap_or("").to_owned();
    let mut s = h.lock();
    let Some(sa) = s.service_accounts.get(&iss) else {
        return Err(fail(
            "invalid_grant",
            format!("Invalid grant: account not found ({iss:?})"),
        ));
    };
    if header.kid.as_deref().is_some_and(|k| k != sa.key_id) {
        return Err(fail("invalid_grant", "Invalid JWT Signature."));
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = decode::<Value>(assertion, &DecodingKey::from_rsa_der(&sa.public_der), &v)
        .map_err(|_| fail("invalid_grant", "Invalid JWT Signature."))?
        .claims;
    let token_url = format!("{}/token", h.0.base_url);
    let aud_ok = match &claims["aud"] {
        Value::String(a) => *a == token_url,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(&token_url)),
        _ => false,
    };
    if !aud_ok {
        return Err(fail(
            "invalid_grant",
            format!("Invalid JWT: Failed audience check. The right audience is {token_url}"),
        ));
    }
    let now = unix(SystemTime::now());
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(fail(
            "invalid_grant",
            "Invalid JWT: Missing required claim iat or exp.",
        ));
    };
    if exp <= now || iat > now + 60 || exp <= iat || exp - iat > 3600 {
        return Err(fail(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let scope = claims["scope"].as_str().unwrap_or("").trim().to_owned();
    if scope.is_empty() {
        return Err(fail("invalid_scope", "Empty or missing scope not allowed."));
    }
    let unauthorized = || {
        fail(
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not \
             authorized for any of the scopes requested.",
        )
    };
    if !scope
        .split(' ')
        .filter(|x| !x.is_empty())
        .all(|x| sa.opts.scopes.iter().any(|g| g == x))
    {
        return Err(unauthorized());
    }
    let user = match claims["sub"].as_str() {
        Some(sub) => {
            if let Some(users) = &sa.opts.users
                && !users.iter().any(|u| u.eq_ignore_ascii_case(sub))
            {
                return Err(fail("invalid_grant", "Invalid email or User ID"));
            }
            sub.to_owned()
        }
        None => iss.clone(),
    };
    let (at, exp) = new_access(&mut s, Some(&user), &iss, &scope, Grant::JwtBearer, None);
    Ok(json!({"access_token": at, "expires_in": exp, "token_type": "Bearer", "scope": scope}))
}

fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn device_authorization(h: &OAuthHandle, req: &Request, form: &Form) -> Result<Value, Fail> {
    let client = authenticate_client(h, req, form)?;
    let scope = form.get("scope").cloned().unwrap_or_default();
    // RFC 8628 §6.1: 20 consonants, 8 characters, shown as XXXX-XXXX.
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).expect("getrandom");
    let code: String = raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    let shown = format!("{}-{}", &code[..4], &code[4..]);
    let device_code = format!("dc-{}", random_hex(24));
    let mut s = h.lock();
    let (interval, life) = (s.opts.device_interval, s.opts.device_code_lifetime);
    s.devices.insert(
        device_code.clone(),
        Device {
            client_id: client,
            user_code: code,
            scope,
            expires_at: Instant::now() + life,
            last_poll: None,
            status: DeviceStatus::Pending,
        },
    );
    s.counters.device_authorizations += 1;
    let uri = format!("{}/device", h.0.base_url);
    Ok(json!({
        "device_code": device_code, "user_code": shown,
        "verification_uri": uri,
        "verification_uri_complete": format!("{uri}?user_code={shown}"),
        "expires_in": whole_secs(life), "interval": whole_secs(interval),
    }))
}

fn device_token(h: &OAuthHandle, req: &Request, form: &Form) -> Result<Value, Fail> {
    let client = authenticate_client(h, req, form)?;
    let code = param(form, "device_code")?;
    let mut s = h.lock();
    let interval = s.opts.device_interval;
    let Some(d) = s.devices.get_mut(code) else {
        return Err(fail("invalid_grant", "Unknown device code."));
    };
    if d.client_id != client {
        return Err(fail(
            "invalid_grant",
            "The device code was issued to another client.",
        ));
    }
    let now = Instant::now();
    if now >= d.expires_at && d.status != DeviceStatus::Used {
        return Err(fail("expired_token", "The device code has expired."));
    }
    let too_soon = d
        .last_poll
        .is_some_and(|t| now.duration_since(t) < interval);
    d.last_poll = Some(now);
    match d.status.clone() {
        DeviceStatus::Used => Err(fail("invalid_grant", "The device code was already used.")),
        DeviceStatus::Denied => {
            d.status = DeviceStatus::Used;
            Err(fail("access_denied", "The user denied the request."))
        }
        _ if too_soon => {
            s.counters.slow_downs += 1;
            Err(fail(
                "slow_down",
                format!("Polled sooner than every {} s.", whole_secs(interval)),
            ))
        }
        DeviceStatus::Pending => Err(fail(
            "authorization_pending",
            "The user has not yet approved the request.",
        )),
        DeviceStatus::Approved(user) => {
            d.status = DeviceStatus::Used;
            let scope = d.scope.clone();
            let rt = new_refresh(&mut s, &client, &user, &scope);
            let (at, exp) = new_access(
                &mut s,
                Some(&user),
                &client,
                &scope,
                Grant::DeviceCode,
                Some(&rt),
            );
            Ok(json!({
                "access_token": at, "token_type": "Bearer", "expires_in": exp,
                "refresh_token": rt, "scope": scope,
            }))
        }
    }
}

fn introspect(h: &OAuthHandle, form: &Form) -> Value {
    let mut s = h.lock();
    s.counters.introspections += 1;
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let Some(info) = live(&s, token) else {
        s.counters.inactive_introspections += 1;
        return json!({"active": false});
    };
    let (username, scope) = match &info.user {
        Some(u) => (u.clone(), info.scope.clone()),
        None => (info.client_id.clone(), format!("{} {APP_ROLE}", info.scope)),
    };
    json!({
        "active": true, "username": username, "sub": username, "scope": scope,
        "client_id": info.client_id, "token_type": "Bearer", "exp": unix(info.expires_at),
    })
}

fn revoke(h: &OAuthHandle, req: &Request, form: &Form) -> Result<Value, Fail> {
    authenticate_client(h, req, form)?;
    let token = param(form, "token")?;
    let mut s = h.lock();
    let mut n = 0u64;
    if let Some(g) = s.refresh.get_mut(token) {
        g.revoked = true;
        n += 1;
        for a in s.access.values_mut() {
            if a.refresh.as_deref() == Some(token) && !a.revoked {
                a.revoked = true;
                n += 1;
            }
        }
    } else if let Some(a) = s.access.get_mut(token) {
        a.revoked = true;
        n += 1;
    }
    s.counters.revocations += n;
    Ok(json!({}))
}
