//! A CardDAV client for migrated (RFC 6352 over WebDAV), written once for the CardDAV source
//! plugin and the daemon's CardDAV sink: service discovery (`/.well-known/carddav`, the
//! principal, the address-book home), address books, contacts by PROPFIND, `addressbook-multiget`
//! and `sync-collection` (RFC 6578), MKCOL (RFC 5689) and conditional PUT; and, in
//! `destination`, core's `ContactsDestination` over it.
//!
//! Blocking (ureq): callers run it on a blocking thread. Every request has a timeout; every
//! failure names the server, the request and the server's status and words.

mod destination;
mod read;
mod tls;
mod write;
mod xml;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use migrated_core::{AccessTokens, Account, Secret, TokenError};
use ureq::http::{self, Method};

pub use destination::{DavDestination, DavDestinationSession};
pub use xml::{Book, Card, Item};

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct DavEndpoint {
    /// `https://host:port` or `http://host:port`, no path.
    pub origin: String,
    /// Where discovery starts: `/` tries `/.well-known/carddav` first.
    pub path: String,
    /// Login name.
    pub user: String,
    /// Password, or an OAuth 2 token with `bearer`.
    pub secret: Secret,
    /// `Authorization: Bearer` instead of Basic.
    pub bearer: bool,
    /// OAuth 2 tokens the daemon obtains and renews (`auth = "oauth2"`): each request carries
    /// the current one, and a 401 gets one more try with a new one. `None`: `secret` is sent.
    pub tokens: Option<Arc<dyn AccessTokens>>,
    /// PEM file of the CA to trust instead of the system's roots (or of the server's own
    /// self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// Exactly the certificate with this SHA-256 fingerprint (`tls_fingerprint`), whoever
    /// signed it and whatever names it lists; wins over `ca_file`.
    pub tls_fingerprint: Option<[u8; 32]>,
    /// Accept any certificate (lab use only).
    pub danger_accept_invalid_certs: bool,
    /// Limit on each request, body included.
    pub timeout: Duration,
}

impl DavEndpoint {
    /// The CardDAV endpoint of an account: `security = "tls"` is HTTPS, `plain` is HTTP
    /// (trusted networks only); `auth = "xoauth2"` sends the secret as a bearer token, and so
    /// does `auth = "oauth2"` (the secret is then an access token the daemon fetched; give
    /// [`DavEndpoint::tokens`] for requests to renew it).
    ///
    /// # Errors
    ///
    /// A message naming the field for a value CardDAV cannot use.
    pub fn from_account(a: &Account) -> Result<Self, String> {
        let scheme = match a.security.as_str() {
            "tls" => "https",
            "plain" => "http",
            other => {
                return Err(format!(
                    "security {other:?}: CardDAV takes \"tls\" (HTTPS) or \"plain\" (HTTP)"
                ));
            }
        };
        if a.admin_user.is_some() {
            return Err(
                "admin_user: CardDAV logs in as the address book's user (HTTP Basic has no \
                 administrator on behalf of a user): give the user's password"
                    .into(),
            );
        }
        let tls_fingerprint = a
            .tls_fingerprint
            .as_deref()
            .map(migrated_imap::tls::parse_fingerprint)
            .transpose()
            .map_err(|e| format!("tls_fingerprint: {e}"))?;
        let bearer = match a.auth.as_str() {
            "login" | "plain" => false,
            "xoauth2" | "oauth2" => true,
            other => {
                return Err(format!(
                    "auth {other:?} is not one of login, xoauth2, oauth2"
                ));
            }
        };
        let host = if a.host.contains(':') {
            format!("[{}]", a.host)
        } else {
            a.host.clone()
        };
        let mut path = a.path.clone().unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Ok(Self {
            origin: format!("{scheme}://{host}:{}", a.port),
            path,
            user: a.user.clone(),
            secret: a.secret.clone(),
            bearer,
            tokens: None,
            ca_file: a.ca_file.as_ref().map(PathBuf::from),
            tls_fingerprint,
            danger_accept_invalid_certs: a.danger_accept_invalid_certs,
            timeout: Duration::from_secs(a.timeout_secs.max(1)),
        })
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum DavError {
    /// The server answered with an error status.
    #[error("{server}: {what} answered HTTP {status}{}", if .reply.is_empty() { String::new() } else { format!(": {}", .reply) })]
    Http {
        /// `origin`.
        server: String,
        /// The request.
        what: String,
        /// The status.
        status: u16,
        /// The start of the body the server sent with it.
        reply: String,
    },
    /// No answer: connection refused, reset, TLS failure, timeout.
    #[error("{server}: {what}: {detail}")]
    Network {
        /// `origin`.
        server: String,
        /// The request.
        what: String,
        /// What happened.
        detail: String,
    },
    /// No access token to send: the token endpoint refused the grant or could not be reached.
    #[error("{server}: {what}: no access token: {error}")]
    Token {
        /// `origin`.
        server: String,
        /// The request.
        what: String,
        /// The token endpoint's refusal or failure.
        error: TokenError,
    },
    /// An answer that is not CardDAV.
    #[error("{server}: {what}: {detail}")]
    Protocol {
        /// `origin`.
        server: String,
        /// The request.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

impl DavError {
    /// Whether retrying later can help: network trouble, 5xx, 429 and 408.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Token { error, .. } => error.is_temporary(),
            Self::Protocol { .. } => false,
        }
    }

    /// What kind of trouble this is: no answer is network trouble (a TLS failure among it: the
    /// HTTP client does not tell them apart), 401 a refused login, 507 a full account, 429 and
    /// 503 a server asking to slow down, 408 a timeout. Other statuses have none: the server
    /// refused that one request, in its own words.
    pub fn cause(&self) -> Option<migrated_core::Cause> {
        use migrated_core::Cause;
        match self {
            Self::Network { .. } => Some(Cause::Network),
            Self::Protocol { .. } => Some(Cause::Protocol),
            Self::Token { error, .. } => error.cause,
            Self::Http { status, .. } => match status {
                401 => Some(Cause::Authentication),
                507 => Some(Cause::Quota),
                429 | 503 => Some(Cause::Throttled),
                408 => Some(Cause::Network),
                _ => None,
            },
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The outcome of a conditional PUT: core's, `Exists` when `If-None-Match: *` met something
/// (412).
pub use migrated_core::Put;

/// Changes since a sync token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New or changed contacts.
    pub changed: Vec<Item>,
    /// Hrefs of removed contacts.
    pub removed: Vec<String>,
    /// The token to give next time.
    pub token: String,
}

/// A CardDAV account.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    endpoint: DavEndpoint,
    authorization: Authorization,
    /// What the last TLS handshake showed: the certificate's fingerprint and the verifier's
    /// refusal, said in place of ureq's words for the failed request.
    handshake: Arc<Mutex<tls::Handshake>>,
}

/// What each request's `Authorization` header says.
#[derive(Debug)]
enum Authorization {
    /// The same header every time: Basic, or a token the caller gave.
    Fixed(Secret),
    /// A bearer token given by the caller and replaced by it ([`Client::renew_token`]): the
    /// CardDAV source plugin, whose host fetches the tokens.
    Renewed(Mutex<Secret>),
    /// Tokens fetched before each request (the cached one while it is good).
    Tokens(Arc<dyn AccessTokens>),
}

const PROPFIND_PRINCIPAL: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/></d:prop></d:propfind>"#;
const PROPFIND_HOME: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><c:addressbook-home-set/></d:prop></d:propfind>"#;
const PROPFIND_BOOKS: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:resourcetype/><d:displayname/><c:addressbook-description/><d:sync-token/></d:prop></d:propfind>"#;
const PROPFIND_ETAGS: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getetag/></d:prop></d:propfind>"#;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Client {
    /// A client for the endpoint (no request is sent yet).
    ///
    /// # Errors
    ///
    /// An unreadable CA file.
    pub fn new(endpoint: DavEndpoint) -> Result<Self, DavError> {
        use migrated_imap::CertCheck;
        // The same policies, in the same order of precedence, as an IMAP endpoint's.
        let check = match (
            endpoint.danger_accept_invalid_certs,
            endpoint.tls_fingerprint,
            &endpoint.ca_file,
        ) {
            (true, _, _) => CertCheck::DangerAcceptAnyCertificate,
            (false, Some(pin), _) => CertCheck::Fingerprint(pin),
            (false, None, Some(ca)) => CertCheck::CaFile(ca.clone()),
            (false, None, None) => CertCheck::System,
        };
        let handshake = Arc::new(Mutex::new(tls::Handshake::default()));
        // Over HTTP no certificate is checked: the system's roots are not even loaded.
        let tls_config = if endpoint.origin.starts_with("https://") {
            Some(
                migrated_imap::tls::client_config(&check).map_err(|detail| DavError::Network {
                    server: endpoint.origin.clone(),
                    what: "setting up TLS".into(),
                    detail,
                })?,
            )
        } else {
            None
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .max_redirects(0)
            .timeout_global(Some(endpoint.timeout))
            .user_agent(concat!("migrated/", env!("CARGO_PKG_VERSION")))
            .build();
        // ureq's default chain (an HTTP CONNECT proxy if the environment names one, TCP), with
        // TLS of ours in place of ureq's.
        use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(TcpConnector::default())
                .chain(tls::PolicyTls::new(tls_config, handshake.clone()));
        let agent = ureq::Agent::with_parts(
            config,
            connector,
            ureq::unversioned::resolver::DefaultResolver::default(),
        );
        let authorization = match (&endpoint.tokens, endpoint.bearer) {
            (Some(tokens), _) => Authorization::Tokens(tokens.clone()),
            (None, true) => Authorization::Renewed(Mutex::new(endpoint.secret.clone())),
            (None, false) => {
                let pair = format!("{}:{}", endpoint.user, endpoint.secret.expose());
                Authorization::Fixed(Secret::new(format!(
                    "Basic {}",
                    STANDARD.encode(pair.as_bytes())
                )))
            }
        };
        Ok(Self {
            agent,
            endpoint,
            authorization,
            handshake,
        })
    }

    /// The SHA-256 fingerprint of the certificate the server presented on the last HTTPS
    /// connection (refused or not), as `tls_fingerprint` takes it; `None` over HTTP or before
    /// the first request.
    pub fn certificate(&self) -> Option<String> {
        self.handshake.lock().ok()?.fingerprint.clone()
    }

    /// `origin`, for messages.
    pub fn server(&self) -> &str {
        &self.endpoint.origin
    }

    /// An href as a URL: absolute paths against the origin.
    pub fn url(&self, href: &str) -> String {
        if href.starts_with("http://") || href.starts_with("https://") {
            href.to_owned()
        } else if href.starts_with('/') {
            format!("{}{href}", self.endpoint.origin)
        } else {
            format!("{}/{href}", self.endpoint.origin)
        }
    }

    /// From now on, requests carry this bearer token (a client made for a bearer endpoint
    /// without [`DavEndpoint::tokens`]; any other keeps its own credentials).
    pub fn renew_token(&self, token: Secret) {
        if let Authorization::Renewed(current) = &self.authorization {
            *current.lock().unwrap_or_else(|p| p.into_inner()) = token;
        }
    }

    /// Sends one request; returns status, headers and body. Error statuses are returned, not
    /// turned into errors, so callers can act on 412 or 404. With renewed tokens, a 401 (an
    /// expired or revoked token: Google says `WWW-Authenticate: Bearer error="invalid_token"`)
    /// is sent once more with a new token; the second answer is the caller's.
    fn send(
        &self,
        method: &str,
        href: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), DavError> {
        let Authorization::Tokens(tokens) = &self.authorization else {
            let header = match &self.authorization {
                Authorization::Fixed(h) => h.clone(),
                Authorization::Renewed(t) => Secret::new(format!(
                    "Bearer {}",
                    t.lock().unwrap_or_else(|p| p.into_inner()).expose()
                )),
                Authorization::Tokens(_) => unreachable!(),
            };
            return self.send_with(&header, method, href, headers, body);
        };
        let mut retried = false;
        loop {
            let token = tokens.token().map_err(|error| DavError::Token {
                server: self.endpoint.origin.clone(),
                what: format!("{method} {href}"),
                error,
            })?;
            let header = Secret::new(format!("Bearer {}", token.token.expose()));
            let reply = self.send_with(&header, method, href, headers, body)?;
            if reply.0 != 401 {
                return Ok(reply);
            }
            tokens.refused(&token.token);
            if retried {
                return Ok(reply);
            }
            retried = true;
        }
    }

    fn send_with(
        &self,
        authorization: &Secret,
        method: &str,
        href: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, http::HeaderMap, Vec<u8>), DavError> {
        let what = format!("{method} {href}");
        let net = |detail: String| DavError::Network {
            server: self.endpoint.origin.clone(),
            what: what.clone(),
            detail,
        };
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| net(e.to_string()))?;
        let mut b = http::Request::builder()
            .method(method)
            .uri(self.url(href))
            .header("Authorization", authorization.expose());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let response = match body {
            Some(body) => self
                .agent
                .run(b.body(body.to_vec()).map_err(|e| net(e.to_string()))?),
            None => self.agent.run(b.body(()).map_err(|e| net(e.to_string()))?),
        }
        .map_err(|e| {
            let refusal = self.handshake.lock().ok().and_then(|h| h.refusal.clone());
            match refusal {
                Some(text) => net(format!("TLS failed: {text}")),
                None => net(e.to_string()),
            }
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(|e| net(format!("reading the reply: {e}")))?;
        Ok((status, headers, bytes))
    }

    fn check(
        &self,
        what: String,
        (status, headers, body): (u16, http::HeaderMap, Vec<u8>),
    ) -> Result<(http::HeaderMap, Vec<u8>), DavError> {
        if (200..300).contains(&status) {
            Ok((headers, body))
        } else {
            let mut reply: String = String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
                .trim()
                .to_owned();
            // A bearer server says why it refused a token there (RFC 6750 §3), not in the body.
            if status == 401
                && let Some(challenge) = headers
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| h.to_ascii_lowercase().starts_with("bearer"))
            {
                let challenge: String = challenge.chars().take(200).collect();
                reply = if reply.is_empty() {
                    format!("WWW-Authenticate: {challenge}")
                } else {
                    format!("WWW-Authenticate: {challenge}; {reply}")
                };
            }
            Err(DavError::Http {
                server: self.endpoint.origin.clone(),
                what,
                status,
                reply,
            })
        }
    }

    fn propfind(
        &self,
        href: &str,
        depth: &str,
        body: &str,
    ) -> Result<Vec<xml::Response>, DavError> {
        let what = format!("PROPFIND {href}");
        let reply = self.send(
            "PROPFIND",
            href,
            &[
                ("Depth", depth),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(body.as_bytes()),
        )?;
        let (_, body) = self.check(what.clone(), reply)?;
        xml::multistatus(&body).map_err(|detail| self.protocol(&what, detail))
    }

    fn protocol(&self, what: &str, detail: String) -> DavError {
        DavError::Protocol {
            server: self.endpoint.origin.clone(),
            what: what.to_owned(),
            detail,
        }
    }
}

/// vCard lines end in CRLF (RFC 6350), but an XML parser turns every CRLF into LF (XML 1.0,
/// 2.11): `address-data` from a multiget gets its CRLFs back, so a vCard travels unchanged.
fn crlf(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 40);
    let mut previous = 0u8;
    for &b in text.as_bytes() {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// The last path segment of an href, without a trailing slash (core's, shared with the
/// contacts engine).
pub use migrated_core::contacts::last_segment;

#[cfg(test)]
mod tests;
