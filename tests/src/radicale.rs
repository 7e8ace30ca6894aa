//! Private Radicale (CardDAV/CalDAV) instances on loopback, seeded and read back over HTTP the
//! way a CardDAV client does it.
//!
//! Each instance has its own directory (config, plain-text htpasswd file, storage, log), listens
//! on 127.0.0.1 on a free port, and is killed and its directory removed on drop (kept when
//! `TESTBED_KEEP` is set). Debian 12's `radicale` package (3.1.8, with python3-vobject 0.9.6.1)
//! is installed when missing.
//!
//! # Radicale 3.1.8 facts (checked on the running server by the suite's `radicale_testbed`)
//!
//! - Storage: vCards are parsed and re-serialized, never stored byte for byte; see
//!   [`crate::vcard::normalize`] for the differences, and the module documentation of
//!   [`crate::vcard`] for the data loss (a vCard 4.0 `PHOTO:data:...;base64,...` loses its
//!   picture). The ETag is `"<sha256 hex of the stored text>"`, so two Radicales storing the same
//!   vCard give the same ETag, and re-PUTting Radicale's own copy is byte-identical.
//! - Discovery: `/.well-known/carddav` answers `301 Moved Permanently`, `Location: /`, for any
//!   method, with or without credentials. `PROPFIND /` (Depth 0, authenticated) gives
//!   `current-user-principal` = `/USER/`; `PROPFIND /USER/` gives
//!   `addressbook-home-set` = `/USER/` (the principal is the home). The principal collection is
//!   created by Radicale on the user's first authenticated request.
//! - `DAV:` header: `1, 2, 3, calendar-access, addressbook, extended-mkcol`. Responses are
//!   HTTP/1.0 with the connection closed after each.
//! - Creating an address book needs an extended MKCOL (RFC 5689) that sets
//!   `resourcetype` to `collection` + `CARDDAV:addressbook` (Radicale stores the tag
//!   `VADDRESSBOOK`) → `201 Created`. A plain MKCOL without body → `403 Forbidden` (owner_only
//!   rights do not allow untagged collections below the principal).
//! - Wrong password, or none: `401 Unauthorized` with
//!   `WWW-Authenticate: Basic realm="Radicale - Password Required"` (after `[auth] delay`, set to
//!   0 here).
//! - Request body over `[server] max_content_length`: `413 Request Entity Too Large` (checked
//!   against Content-Length, before the body is read), nothing stored.
//! - A PUT whose UID already exists under another name in the same book: `409 Conflict`.
//! - Address books report `supported-report-set`: `expand-property`,
//!   `principal-search-property-set`, `principal-property-search`, `sync-collection`,
//!   `CARDDAV:addressbook-multiget`, `CARDDAV:addressbook-query`; and `CS:getctag`
//!   (`"<sha256 hex>"`) and `DAV:sync-token`.
//! - `sync-collection` (RFC 6578) works: tokens look like
//!   `http://radicale.org/ns/sync/<64 hex>`; an empty token lists every item with its ETag; a
//!   later token lists changed items with their ETag and deleted ones as a response with status
//!   `404 Not Found`; an unknown token gets `403 Forbidden` with `<DAV:valid-sync-token/>`.
//! - `addressbook-multiget` returns `address-data` with raw CRLF inside the XML text, which any
//!   conforming XML parser (roxmltree included) turns into LF (XML 1.0 section 2.11): only a GET
//!   returns the stored bytes. Unknown hrefs get a `404 Not Found` response.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::b64;
use crate::vcard::{Contact, uid_of};

/// The Debian package's entry point (`#!/usr/bin/python3`; Debian's python3, not whatever
/// `python3` is first on PATH, has the `radicale` module).
pub const RADICALE_BIN: &str = "/usr/bin/radicale";
const LOOPBACK: &str = "127.0.0.1";
const START_DEADLINE: Duration = Duration::from_secs(20);

/// `DAV:` namespace.
pub const NS_DAV: &str = "DAV:";
/// `CARDDAV:` namespace (RFC 6352).
pub const NS_CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
/// Apple's CalendarServer namespace (`getctag`).
pub const NS_CS: &str = "http://calendarserver.org/ns/";

/// Book display name (or slug when it has none) → vCard UID → the vCard as the server returns
/// it on GET.
pub type Snapshot = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Installs the Debian package `radicale` if it is missing.
pub fn ensure_installed() -> Result<()> {
    crate::dovecot::ensure_package(RADICALE_BIN, "radicale")
}

/// What a private instance looks like.
#[derive(Debug, Clone)]
pub struct RadicaleOptions {
    /// (name, password), written to a plain-text htpasswd file.
    pub users: Vec<(String, String)>,
    /// Radicale's `[server] max_content_length` in bytes (its default is 100 000 000); larger
    /// request bodies get `413`.
    pub max_content_length: Option<u64>,
    /// Serve HTTPS with this certificate and key (PEM files): Radicale's `[server] ssl = True`,
    /// `certificate`, `key`. The bed's own requests do not check the certificate.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for RadicaleOptions {
    fn default() -> Self {
        RadicaleOptions {
            users: vec![("alice".to_owned(), "alice-secret".to_owned())],
            max_content_length: None,
            tls: None,
        }
    }
}

/// An HTTP response, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// (lower-case name, value)
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One WebDAV property from a `200 OK` propstat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavProp {
    /// Namespace URI, e.g. [`NS_DAV`].
    pub ns: String,
    /// Local name, e.g. `displayname`.
    pub name: String,
    /// Text content (all descendant text, concatenated; XML line-end normalization applies).
    pub text: String,
    /// (namespace, local name) of the child elements, e.g. for `resourcetype`.
    pub children: Vec<(String, String)>,
    /// Text of every `DAV:href` inside, e.g. for `current-user-principal`.
    pub hrefs: Vec<String>,
}

/// One `DAV:response` of a multistatus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavResponse {
    pub href: String,
    /// The response's own status (e.g. 404 for a deleted item in sync-collection or an unknown
    /// href in multiget); `None` when it has propstats.
    pub status: Option<u16>,
    /// Properties from propstats with status 200; properties the server does not have (404
    /// propstats) are left out.
    pub props: Vec<DavProp>,
}

impl DavResponse {
    /// The property `(ns, name)`, if the server returned it.
    pub fn prop(&self, ns: &str, name: &str) -> Option<&DavProp> {
        self.props.iter().find(|p| p.ns == ns && p.name == name)
    }

    /// Whether `resourcetype` contains `(ns, name)`.
    pub fn is_a(&self, ns: &str, name: &str) -> bool {
        self.prop(NS_DAV, "resourcetype")
            .is_some_and(|p| p.children.iter().any(|(n, l)| n == ns && l == name))
    }
}

/// A parsed `DAV:multistatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multistatus {
    pub responses: Vec<DavResponse>,
    /// The top-level `sync-token` of a sync-collection answer.
    pub sync_token: Option<String>,
}

fn status_code(line: &str) -> Option<u16> {
    // "HTTP/1.1 200 OK"
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Parses a `207 Multi-Status` body.
pub fn parse_multistatus(xml: &[u8]) -> Result<Multistatus> {
    let text = std::str::from_utf8(xml).context("multistatus is not UTF-8")?;
    let doc = roxmltree::Document::parse(text).context("parsing multistatus XML")?;
    let root = doc.root_element();
    if !root.has_tag_name((NS_DAV, "multistatus")) {
        bail!("root element is {:?}, not DAV:multistatus", root.tag_name());
    }
    let is = |n: &roxmltree::Node<'_, '_>, name: &str| n.has_tag_name((NS_DAV, name));
    let text_of = |n: roxmltree::Node<'_, '_>| -> String {
        n.descendants()
            .filter(|d| d.is_text())
            .filter_map(|d| d.text())
            .collect()
    };
    let mut out = Multistatus {
        responses: Vec::new(),
        sync_token: None,
    };
    for child in root.children().filter(roxmltree::Node::is_element) {
        if is(&child, "sync-token") {
            out.sync_token = Some(text_of(child).trim().to_owned());
            continue;
        }
        if !is(&child, "response") {
            continue;
        }
        let mut resp = DavResponse {
            href: String::new(),
            status: None,
            props: Vec::new(),
        };
        for part in child.children().filter(roxmltree::Node::is_element) {
            if is(&part, "href") {
                resp.href = text_of(part).trim().to_owned();
            } else if is(&part, "status") {
                resp.status = status_code(&text_of(part));
            } else if is(&part, "propstat") {
                let ok = part
                    .children()
                    .find(|n| is(n, "status"))
                    .and_then(|n| status_code(&text_of(n)))
                    .is_some_and(|s| (200..300).contains(&s));
                if !ok {
                    continue;
                }
                for prop in part.children().filter(|n| is(n, "prop")) {
                    for p in prop.children().filter(roxmltree::Node::is_element) {
                        let tag = p.tag_name();
                        resp.props.push(DavProp {
                            ns: tag.namespace().unwrap_or_default().to_owned(),
                            name: tag.name().to_owned(),
                            text: text_of(p),
                            children: p
                                .children()
                                .filter(roxmltree::Node::is_element)
                                .map(|c| {
                                    let t = c.tag_name();
                                    (
                                        t.namespace().unwrap_or_default().to_owned(),
                                        t.name().to_owned(),
                                    )
                                })
                                .collect(),
                            hrefs: p
                                .descendants()
                                .filter(|d| is(d, "href"))
                                .map(|d| text_of(d).trim().to_owned())
                                .collect(),
                        });
                    }
                }
            }
        }
        out.responses.push(resp);
    }
    Ok(out)
}

/// Escapes text for an XML element or attribute.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes (lossy UTF-8).
pub fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last non-empty segment of an href, decoded.
fn last_segment(href: &str) -> String {
    decode_segment(
        href.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default(),
    )
}

/// A blocking HTTP client for one server: statuses are returned, not turned into errors;
/// redirects are not followed; WebDAV methods are allowed.
fn agent(tls: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        // The bed's own requests (seeding, reading back) trust whatever certificate it serves.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(tls)
                .build(),
        )
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// Sends one request to `url` and reads the whole response. `auth` is HTTP Basic.
pub fn http_request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut builder = ureq::http::Request::builder()
        .method(
            ureq::http::Method::from_bytes(method.as_bytes())
                .with_context(|| format!("bad method {method:?}"))?,
        )
        .uri(url);
    if let Some((user, pass)) = auth {
        let token = b64::encode(format!("{user}:{pass}").as_bytes(), b64::STANDARD, true);
        builder = builder.header("Authorization", format!("Basic {token}"));
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(body.to_vec())
        .with_context(|| format!("building {method} {url}"))?;
    let mut response = agent
        .run(request)
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .with_context(|| format!("reading the response to {method} {url}"))?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A running private Radicale. Killed and its directory removed on drop (kept if the
/// environment variable `TESTBED_KEEP` is set).
#[derive(Debug)]
pub struct Radicale {
    opts: RadicaleOptions,
    dir: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    agent: ureq::Agent,
}

static INSTANCE_COUNTER: AtomicU64 = AtomicU64::new(0);

const XML: (&str, &str) = ("Content-Type", "application/xml; charset=utf-8");

impl Radicale {
    /// Starts an instance and waits (at most 20 s) until it answers HTTP. Blocking; takes about
    /// half a second.
    pub fn start(opts: RadicaleOptions) -> Result<Radicale> {
        ensure_installed()?;
        if opts.users.is_empty() {
            bail!("RadicaleOptions.users is empty");
        }
        for (user, pass) in &opts.users {
            if user.is_empty()
                || user.contains([':', '/', '\n', '\r', '.'])
                || pass.contains(['\n', '\r'])
            {
                bail!("user {user:?}: not usable as a Radicale principal / htpasswd entry");
            }
        }
        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("tb-radicale-{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;

        let opts_tls = opts.tls.is_some();
        let mut rad = Radicale {
            conf: dir.join("config"),
            log: dir.join("radicale.log"),
            dir,
            opts,
            port: 0,
            child: None,
            agent: agent(opts_tls),
        };
        let mut users = String::new();
        for (user, pass) in &rad.opts.users {
            writeln!(users, "{user}:{pass}")?;
        }
        let users_path = rad.dir.join("users");
        fs::write(&users_path, users)
            .with_context(|| format!("writing {}", users_path.display()))?;

        // The port is found by binding port 0 and releasing it, so another process can take it
        // before Radicale binds it: retry with a fresh port when that happens.
        let mut last_err = None;
        for _attempt in 0..5 {
            rad.port = free_port()?;
            rad.write_config()?;
            match rad.launch() {
                Ok(()) => return Ok(rad),
                Err(e) => {
                    rad.stop();
                    let in_use = rad.log().contains("Address already in use");
                    last_err = Some(e);
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Radicale did not start")))
    }

    fn write_config(&self) -> Result<()> {
        let d = &self.dir;
        let mut c = String::new();
        writeln!(
            c,
            "# Generated by the migrated test bed for one private instance."
        )?;
        writeln!(c, "[server]")?;
        writeln!(c, "hosts = {LOOPBACK}:{}", self.port)?;
        if let Some((cert, key)) = &self.opts.tls {
            writeln!(c, "ssl = True")?;
            writeln!(c, "certificate = {}", cert.display())?;
            writeln!(c, "key = {}", key.display())?;
        }
        if let Some(max) = self.opts.max_content_length {
            writeln!(c, "max_content_length = {max}")?;
        }
        writeln!(c, "[auth]")?;
        writeln!(c, "type = htpasswd")?;
        writeln!(c, "htpasswd_filename = {}", d.join("users").display())?;
        writeln!(c, "htpasswd_encryption = plain")?;
        // A wrong-password test should not sleep.
        writeln!(c, "delay = 0")?;
        writeln!(c, "[rights]")?;
        writeln!(c, "type = owner_only")?;
        writeln!(c, "[storage]")?;
        writeln!(c, "filesystem_folder = {}", d.join("collections").display())?;
        writeln!(c, "[web]")?;
        writeln!(c, "type = none")?;
        writeln!(c, "[logging]")?;
        // One line per request and its status; passwords are masked.
        writeln!(c, "level = info")?;
        fs::write(&self.conf, c).with_context(|| format!("writing {}", self.conf.display()))?;
        Ok(())
    }

    fn launch(&mut self) -> Result<()> {
        // Radicale 3.1 logs to stderr only: send it to the log file (a fresh one per attempt,
        // so readiness below is judged on this attempt's lines).
        let log =
            File::create(&self.log).with_context(|| format!("creating {}", self.log.display()))?;
        let log2 = log.try_clone()?;
        // `--config FILE` replaces the default config paths (/etc/radicale/config and
        // ~/.config/radicale/config), so the system configuration plays no part.
        let child = Command::new(RADICALE_BIN)
            .arg("--config")
            .arg(&self.conf)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env_remove("RADICALE_CONFIG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .with_context(|| format!("starting {RADICALE_BIN} --config {}", self.conf.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the server answers HTTP on its port (any status), failing early if it exits.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let url = self.base_url();
        let probe = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(self.opts.tls.is_some())
                    .build(),
            )
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "Radicale ({}) exited with {status} before answering on port {}\nlog:\n{}",
                    self.conf.display(),
                    self.port,
                    self.log()
                );
            }
            // "server ready" is logged once our process has bound the port: an answer before
            // that could come from whoever else holds the port.
            if !self.log().contains("Radicale server ready") {
                last = String::from("not ready yet");
            } else {
                match http_request(&probe, "GET", &url, None, &[], &[]) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "Radicale ({}) did not answer on {url} within {START_DEADLINE:?}: {last}\nlog:\n{}",
            self.conf.display(),
            self.log()
        )
    }

    /// Kills the server (idempotent). Radicale is one process (threads), so SIGKILL is enough.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn options(&self) -> &RadicaleOptions {
        &self.opts
    }

    pub fn host(&self) -> &str {
        LOOPBACK
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http` or, with [`RadicaleOptions::tls`], `https`.
    pub fn scheme(&self) -> &'static str {
        if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `http://127.0.0.1:PORT/` (`https://` with TLS).
    pub fn base_url(&self) -> String {
        format!("{}://{LOOPBACK}:{}/", self.scheme(), self.port)
    }

    /// The absolute URL of a server path such as `/alice/contacts/`.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_owned();
        }
        format!(
            "{}://{LOOPBACK}:{}/{}",
            self.scheme(),
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// The path of a user's principal, which is also their address-book home: `/USER/`.
    pub fn principal_path(&self, user: &str) -> String {
        format!("/{}/", encode_segment(user))
    }

    /// The path of an address book: `/USER/SLUG/`.
    pub fn book_path(&self, user: &str, slug: &str) -> String {
        format!("/{}/{}/", encode_segment(user), encode_segment(slug))
    }

    /// The password configured for `user`. Panics for an unknown user.
    pub fn password(&self, user: &str) -> &str {
        self.opts
            .users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| panic!("no user {user:?} in this Radicale instance"))
    }

    /// The instance's directory (config, users, collections, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_file(&self) -> &Path {
        &self.conf
    }

    /// Radicale's storage folder (`collection-root/USER/SLUG/NAME.vcf` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.join("collections")
    }

    /// The whole log (Radicale's stderr, `info` level: one line per request and its status).
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(no log at {}: {e})", self.log.display()),
        }
    }

    /// Any request, with explicit credentials (`None`: anonymous). `path` is a server path or a
    /// full URL. Redirects are not followed; every status is returned.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        http_request(&self.agent, method, &self.url(path), auth, headers, body)
    }

    /// A request as `user` with their configured password.
    pub fn request_as(
        &self,
        user: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        self.request(
            method,
            path,
            Some((user, self.password(user))),
            headers,
            body,
        )
    }

    /// PROPFIND as `user`, expecting 207; returns the parsed multistatus.
    pub fn propfind(&self, user: &str, path: &str, depth: u8, props: &str) -> Result<Multistatus> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:propfind xmlns:D=\"DAV:\" \
             xmlns:C=\"{NS_CARDDAV}\" xmlns:CS=\"{NS_CS}\"><D:prop>{props}</D:prop></D:propfind>"
        );
        let depth = depth.to_string();
        let r = self.request_as(
            user,
            "PROPFIND",
            path,
            &[XML, ("Depth", &depth)],
            body.as_bytes(),
        )?;
        if r.status != 207 {
            bail!("PROPFIND {path} as {user}: {} {}", r.status, r.text());
        }
        parse_multistatus(&r.body).with_context(|| format!("PROPFIND {path}: {}", r.text()))
    }

    /// Creates an address book `/USER/SLUG/` with an extended MKCOL (RFC 5689) setting
    /// `resourcetype` (collection + CARDDAV:addressbook) and `displayname`, as CardDAV clients
    /// do. Panics unless the server answers 201.
    pub fn create_book(&self, user: &str, slug: &str, display_name: &str) {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <D:mkcol xmlns:D=\"DAV:\" xmlns:C=\"{NS_CARDDAV}\"><D:set><D:prop>\
             <D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>\
             <D:displayname>{}</D:displayname>\
             </D:prop></D:set></D:mkcol>",
            xml_escape(display_name)
        );
        let path = self.book_path(user, slug);
        let r = self
            .request_as(user, "MKCOL", &path, &[XML], body.as_bytes())
            .unwrap_or_else(|e| panic!("MKCOL {path}: {e:#}"));
        assert_eq!(
            r.status,
            201,
            "MKCOL {path} as {user}: {}\nlog:\n{}",
            r.text(),
            self.log()
        );
    }

    /// PUTs a vCard as `/USER/SLUG/HREF_NAME` (no precondition, so it creates or overwrites)
    /// and returns the raw response, whatever its status.
    pub fn try_put_contact(
        &self,
        user: &str,
        slug: &str,
        href_name: &str,
        vcard: &[u8],
    ) -> Result<HttpResponse> {
        let path = format!(
            "{}{}",
            self.book_path(user, slug),
            encode_segment(href_name)
        );
        self.request_as(
            user,
            "PUT",
            &path,
            &[("Content-Type", "text/vcard; charset=utf-8")],
            vcard,
        )
    }

    /// PUTs a vCard and returns its ETag (with quotes, as the server sends it). Panics unless
    /// the server answers 201 or 204 with an ETag.
    pub fn put_contact(&self, user: &str, slug: &str, href_name: &str, vcard: &[u8]) -> String {
        let r = self
            .try_put_contact(user, slug, href_name, vcard)
            .unwrap_or_else(|e| panic!("PUT {slug}/{href_name}: {e:#}"));
        assert!(
            r.status == 201 || r.status == 204,
            "PUT /{user}/{slug}/{href_name}: {} {}\nlog:\n{}",
            r.status,
            r.text(),
            self.log()
        );
        r.header("etag")
            .unwrap_or_else(|| panic!("PUT {slug}/{href_name}: no ETag in the response"))
            .to_owned()
    }

    /// Creates each book and PUTs its contacts. Returns href name → ETag per slug.
    pub fn seed(
        &self,
        user: &str,
        books: &[(&str, &str, &[Contact])],
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut etags = BTreeMap::new();
        for (slug, display_name, contacts) in books {
            self.create_book(user, slug, display_name);
            let book: &mut BTreeMap<String, String> = etags.entry((*slug).to_owned()).or_default();
            for c in contacts.iter() {
                let etag = self.put_contact(user, slug, &c.href_name, &c.vcard);
                book.insert(c.href_name.clone(), etag);
            }
        }
        etags
    }

    /// The user's address books as a client finds them: PROPFIND Depth 1 on the home
    /// (`/USER/`), keeping children whose resourcetype has CARDDAV:addressbook. Returns
    /// (href, display name if set), sorted by href.
    pub fn books(&self, user: &str) -> Vec<(String, Option<String>)> {
        let home = self.principal_path(user);
        let ms = self
            .propfind(user, &home, 1, "<D:resourcetype/><D:displayname/>")
            .unwrap_or_else(|e| panic!("listing address books: {e:#}"));
        let mut books: Vec<(String, Option<String>)> = ms
            .responses
            .iter()
            .filter(|r| r.is_a(NS_CARDDAV, "addressbook"))
            .map(|r| {
                let name = r
                    .prop(NS_DAV, "displayname")
                    .map(|p| p.text.clone())
                    .filter(|t| !t.is_empty());
                (r.href.clone(), name)
            })
            .collect();
        books.sort();
        books
    }

    /// The vCard resources of a book (href → ETag), by PROPFIND Depth 1.
    pub fn items(&self, user: &str, book_href: &str) -> BTreeMap<String, String> {
        let ms = self
            .propfind(user, book_href, 1, "<D:resourcetype/><D:getetag/>")
            .unwrap_or_else(|e| panic!("listing {book_href}: {e:#}"));
        ms.responses
            .iter()
            .filter(|r| !r.is_a(NS_DAV, "collection"))
            .map(|r| {
                let etag = r
                    .prop(NS_DAV, "getetag")
                    .map(|p| p.text.clone())
                    .unwrap_or_default();
                (r.href.clone(), etag)
            })
            .collect()
    }

    /// GETs one resource as `user`; panics unless 200.
    pub fn get(&self, user: &str, href: &str) -> Vec<u8> {
        let r = self
            .request_as(user, "GET", href, &[], &[])
            .unwrap_or_else(|e| panic!("GET {href}: {e:#}"));
        assert_eq!(r.status, 200, "GET {href}: {}", r.text());
        r.body
    }

    /// Everything the user has: each address book (PROPFIND Depth 1 on the home), each book's
    /// vCards (PROPFIND Depth 1 for the hrefs, then GET each, which, unlike
    /// `addressbook-multiget`, returns the stored bytes with their CRLFs), keyed by display name
    /// (or slug) and UID. Panics on duplicate keys rather than merging them.
    pub fn snapshot(&self, user: &str) -> Snapshot {
        let mut snap = Snapshot::new();
        for (href, name) in self.books(user) {
            let key = name.unwrap_or_else(|| last_segment(&href));
            let mut cards = BTreeMap::new();
            for item in self.items(user, &href).into_keys() {
                let vcard = self.get(user, &item);
                let uid = uid_of(&vcard).unwrap_or_else(|| format!("(no UID) {item}"));
                if cards.insert(uid.clone(), vcard).is_some() {
                    panic!("book {key:?} has two vCards with UID {uid:?}");
                }
            }
            if snap.insert(key.clone(), cards).is_some() {
                panic!("two address books are called {key:?}");
            }
        }
        snap
    }

    /// How many vCards the user has in all address books.
    pub fn count(&self, user: &str) -> usize {
        self.books(user)
            .iter()
            .map(|(href, _)| self.items(user, href).len())
            .sum()
    }

    /// `addressbook-multiget` REPORT for `hrefs` of a book: href → (ETag, address-data as the
    /// XML parser gives it, i.e. with LF where the server sent CRLF). Unknown hrefs are left
    /// out.
    pub fn multiget(
        &self,
        user: &str,
        book_href: &str,
        hrefs: &[String],
    ) -> BTreeMap<String, (String, String)> {
        let mut body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<C:addressbook-multiget xmlns:D=\"DAV:\" \
             xmlns:C=\"{NS_CARDDAV}\"><D:prop><D:getetag/><C:address-data/></D:prop>"
        );
        for h in hrefs {
            let _ = write!(body, "<D:href>{}</D:href>", xml_escape(h));
        }
        body.push_str("</C:addressbook-multiget>");
        let r = self
            .request_as(
                user,
                "REPORT",
                book_href,
                &[XML, ("Depth", "1")],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("REPORT {book_href}: {e:#}"));
        assert_eq!(r.status, 207, "multiget {book_href}: {}", r.text());
        let ms = parse_multistatus(&r.body).unwrap_or_else(|e| panic!("{e:#}: {}", r.text()));
        ms.responses
            .into_iter()
            .filter_map(|resp| {
                let etag = resp.prop(NS_DAV, "getetag")?.text.clone();
                let data = resp.prop(NS_CARDDAV, "address-data")?.text.clone();
                Some((resp.href, (etag, data)))
            })
            .collect()
    }

    /// `sync-collection` REPORT (RFC 6578, sync-level 1) on a book with `token` (`None`: the
    /// initial sync). Returns the raw response: 207 with a multistatus whose `sync_token` is the
    /// new token, changed items with their ETag and deleted ones with status 404; or 403 with
    /// `valid-sync-token` for a token the server does not know.
    pub fn sync_collection(
        &self,
        user: &str,
        book_href: &str,
        token: Option<&str>,
    ) -> Result<HttpResponse> {
        let token = token.map(xml_escape).unwrap_or_default();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:sync-collection xmlns:D=\"DAV:\">\
             <D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>\
             <D:prop><D:getetag/></D:prop></D:sync-collection>"
        );
        self.request_as(user, "REPORT", book_href, &[XML], body.as_bytes())
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("TESTBED_KEEP").is_some() {
            eprintln!("TESTBED_KEEP: leaving {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((LOOPBACK, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}
