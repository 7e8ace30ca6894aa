//! A CardDAV front that takes OAuth 2 bearer tokens as Google's CardDAV API documents them,
//! in front of a real Radicale (which only knows Basic): plain HTTP/1.1 on 127.0.0.1 (a free
//! port the OS picks), one thread per connection, one request per connection
//! (`Connection: close`), stopped on drop.
//!
//! For each request:
//!
//! - no `Authorization: Bearer` header (none, or Basic): `401` with
//!   `WWW-Authenticate: Bearer realm="https://accounts.google.com/"`, as Google answers a
//!   request without credentials;
//! - the token is checked at the OAuth 2 test server's introspection endpoint (RFC 7662, over
//!   HTTP, as a resource server does); an expired, revoked or unknown one gets `401` with
//!   `WWW-Authenticate: Bearer realm="https://accounts.google.com/", error="invalid_token"` and
//!   Google's JSON error body (`"status": "UNAUTHENTICATED"`);
//! - a live token without the CardDAV scope ([`CARDDAV_SCOPE`]) gets `403` with
//!   `error="insufficient_scope"`;
//! - otherwise the request goes to Radicale unchanged but for its `Authorization`, which
//!   becomes Basic with the password of the token's user (its `username`), so Radicale's
//!   `owner_only` rights keep each token to its own user's address books. Radicale's reply
//!   comes back unchanged but for `Connection`.
//!
//! [`BearerDav::set_delay`] adds a wait before each answer (a slower link), so a test's run
//! lasts a known number of token lifetimes whatever the machine's speed.
//!
//! # What Google's CardDAV API does that this front does not
//!
//! No TLS (Google is https only); no `/.well-known/carddav` redirect to
//! `/carddav/v1/principals/USER/lists/default/` (Radicale's own discovery answers: `/` and
//! `/USER/`); one address book per user at Google (`default`), where Radicale lets a client
//! create more with MKCOL (Google refuses MKCOL); no per-user or per-project quotas, no 429 or
//! 503 `rateLimitExceeded`; no vCard rewriting (Google re-serializes vCards to 3.0 and drops
//! what it does not model, Radicale keeps more); no `sync-collection` token expiry of its
//! own; tokens are not cached (each request is introspected), and the clock is the machine's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::b64;
use crate::radicale::Radicale;

/// Google's CardDAV scope.
pub const CARDDAV_SCOPE: &str = "https://www.googleapis.com/auth/carddav";
const REALM: &str = "https://accounts.google.com/";
const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 64 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the front saw, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BearerCounters {
    /// Requests sent on to Radicale.
    pub forwarded: u64,
    /// Requests refused with `error="invalid_token"` (expired, revoked, unknown).
    pub invalid_token: u64,
    /// Requests refused for carrying no bearer token.
    pub no_token: u64,
    /// Requests refused for a token without the CardDAV scope.
    pub insufficient_scope: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    invalid_token: AtomicU64,
    no_token: AtomicU64,
    insufficient_scope: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    introspection_url: String,
    radicale: SocketAddr,
    users: Vec<(String, String)>,
    counters: Counters,
    agent: ureq::Agent,
    /// Added before each answer (milliseconds): a slower link, so that a run lasts a given
    /// number of token lifetimes however fast the machine is.
    delay_ms: AtomicU64,
}

/// A running front; stopped (its port closed) on drop.
#[derive(Debug)]
pub struct BearerDav {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BearerDav {
    /// A front on 127.0.0.1 (a free port) for `radicale`, checking tokens at
    /// `introspection_url` (the OAuth 2 test server's, [`crate::OAuthHandle::introspection_url`]).
    ///
    /// # Errors
    ///
    /// When it cannot listen.
    pub fn start(radicale: &Radicale, introspection_url: &str) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .context("bearer CardDAV front: binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let radicale_addr: SocketAddr = format!("{}:{}", radicale.host(), radicale.port())
            .parse()
            .context("Radicale's address")?;
        let shared = Arc::new(Shared {
            introspection_url: introspection_url.to_owned(),
            radicale: radicale_addr,
            users: radicale.options().users.clone(),
            counters: Counters::default(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(IO_TIMEOUT))
                .build()
                .into(),
            delay_ms: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("bearer-dav".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let shared = Arc::clone(&shared);
                        let _ = std::thread::Builder::new()
                            .name("bearer-dav-conn".into())
                            .spawn(move || {
                                let _ = serve(stream, &shared);
                            });
                    }
                })
                .context("spawning the bearer CardDAV front")?
        };
        Ok(Self {
            shared,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits `delay` before answering each request from now on.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// What it refused and forwarded so far.
    pub fn counters(&self) -> BearerCounters {
        let c = &self.shared.counters;
        BearerCounters {
            forwarded: c.forwarded.load(Ordering::SeqCst),
            invalid_token: c.invalid_token.load(Ordering::SeqCst),
            no_token: c.no_token.load(Ordering::SeqCst),
            insufficient_scope: c.insufficient_scope.load(Ordering::SeqCst),
        }
    }
}

impl Drop for BearerDav {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: its head's lines (without CRLF) and its body.
struct Request {
    line: String,
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
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim_end().to_owned();
    let mut headers = Vec::new();
    let mut size = line.len();
    loop {
        let mut h = String::new();
        let n = reader.read_line(&mut h)?;
        size += n;
        anyhow::ensure!(
            n > 0 && size <= MAX_HEAD,
            "request head cut short or too long"
        );
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut request = Request {
        line,
        headers,
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    anyhow::ensure!(length <= MAX_BODY, "request body too long");
    request.body.resize(length, 0);
    reader.read_exact(&mut request.body)?;
    Ok(Some(request))
}

fn answer(mut stream: &TcpStream, status: &str, headers: &[(&str, &str)], body: &str) {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// Google's JSON error body for a 401.
const UNAUTHENTICATED: &str = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.","status":"UNAUTHENTICATED"}}"#;

fn serve(stream: TcpStream, shared: &Shared) -> Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(request) = read_request(&stream)? else {
        return Ok(());
    };
    std::thread::sleep(Duration::from_millis(
        shared.delay_ms.load(Ordering::SeqCst),
    ));
    let c = &shared.counters;
    let token = request.header("authorization").and_then(|a| {
        let (scheme, token) = a.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let Some(token) = token else {
        c.no_token.fetch_add(1, Ordering::SeqCst);
        let challenge = format!("Bearer realm=\"{REALM}\"");
        answer(
            &stream,
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", &challenge),
                ("Content-Type", "application/json; charset=UTF-8"),
            ],
            UNAUTHENTICATED,
        );
        return Ok(());
    };
    let info = introspect(shared, &token)?;
    let active = info["active"].as_bool() == Some(true);
    let user = info["username"].as_str().unwrap_or_default();
    let password = shared
        .users
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, p)| p.clone());
    let (Some(password), true) = (password, active) else {
        c.invalid_token.fetch_add(1, Ordering::SeqCst);
        let challenge = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"");
        answer(
            &stream,
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", &challenge),
                ("Content-Type", "application/json; charset=UTF-8"),
            ],
            UNAUTHENTICATED,
        );
        return Ok(());
    };
    let scopes = info["scope"].as_str().unwrap_or_default();
    if !scopes.split_whitespace().any(|s| s == CARDDAV_SCOPE) {
        c.insufficient_scope.fetch_add(1, Ordering::SeqCst);
        let challenge = format!(
            "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{CARDDAV_SCOPE}\""
        );
        answer(
            &stream,
            "403 Forbidden",
            &[
                ("WWW-Authenticate", &challenge),
                ("Content-Type", "application/json; charset=UTF-8"),
            ],
            r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","status":"PERMISSION_DENIED"}}"#,
        );
        return Ok(());
    }
    c.forwarded.fetch_add(1, Ordering::SeqCst);
    forward(&stream, shared, &request, user, &password)
}

/// RFC 7662 at the OAuth 2 test server.
fn introspect(shared: &Shared, token: &str) -> Result<serde_json::Value> {
    let body = format!("token={}", urlencode(token));
    let mut reply = shared
        .agent
        .post(&shared.introspection_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .context("introspection")?;
    let text = reply.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&text)?)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends the request to Radicale with Basic credentials and copies its reply back.
fn forward(
    mut client: &TcpStream,
    shared: &Shared,
    request: &Request,
    user: &str,
    password: &str,
) -> Result<()> {
    let mut upstream = TcpStream::connect_timeout(&shared.radicale, IO_TIMEOUT)
        .context("connecting to Radicale")?;
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{}\r\n", request.line);
    for (k, v) in &request.headers {
        if [
            "authorization",
            "connection",
            "keep-alive",
            "content-length",
        ]
        .iter()
        .any(|h| k.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let basic = b64::encode(format!("{user}:{password}").as_bytes(), b64::STANDARD, true);
    head.push_str(&format!(
        "Authorization: Basic {basic}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        request.body.len()
    ));
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&request.body)?;
    // Radicale answers HTTP/1.0 and closes: its reply is everything up to the end.
    let mut reply = Vec::new();
    upstream.read_to_end(&mut reply)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("Radicale's reply has no head")?;
    let (head, body) = (&reply[..split], &reply[split + 4..]);
    let head = String::from_utf8_lossy(head);
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0
            && line
                .split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(body)?;
    Ok(())
}
