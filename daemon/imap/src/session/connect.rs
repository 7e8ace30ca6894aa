//! Opening a session: TCP, TLS or STARTTLS, the greeting, LOGIN or AUTHENTICATE (PLAIN,
//! XOAUTH2, OAUTHBEARER) as the user or as an administrator on behalf of the user, or with an
//! OAuth 2 token fetched (and on refusal fetched anew) for this login, then CAPABILITY and
//! NAMESPACE.

use std::collections::HashSet;
use std::time::Duration;

use async_imap::imap_proto::{Capability, MailboxDatum, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ImapSession, unpanicked, unparsable};
use migrated_core::{AuthMethod, Mechanism};

use crate::endpoint::{Credentials, Endpoint, Security};
use crate::error::ImapError;
use crate::stream::Stream;
use crate::{tls, utf7};

/// A SASL initial response (PLAIN, XOAUTH2, OAUTHBEARER), then what answers a failure's
/// challenge: nothing for XOAUTH2, `%x01` for OAUTHBEARER (RFC 7628 §3.2.3).
struct SaslResponse(Vec<u8>, &'static [u8]);

impl async_imap::Authenticator for SaslResponse {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if self.0.is_empty() {
            self.1.to_vec()
        } else {
            std::mem::take(&mut self.0)
        }
    }
}

type Client = async_imap::Client<Stream>;
type Inner = async_imap::Session<Stream>;

/// One login attempt. A refusal gives the client back, so another can be tried on the same
/// connection.
async fn log_in(
    endpoint: &Endpoint,
    client: Client,
    credentials: &Credentials<'_>,
) -> Result<Inner, (ImapError, Option<Client>)> {
    let server = endpoint.server();
    let t = endpoint.timeout;
    let attempt = async move {
        match (credentials, credentials.initial_response()) {
            (Credentials::Login { name, secret }, _) => client.login(name, secret).await,
            (Credentials::XOAuth2 { .. }, Some(ir)) => {
                client.authenticate("XOAUTH2", SaslResponse(ir, b"")).await
            }
            (Credentials::OAuthBearer { .. }, Some(ir)) => {
                client
                    .authenticate("OAUTHBEARER", SaslResponse(ir, b"\x01"))
                    .await
            }
            (_, ir) => {
                client
                    .authenticate("PLAIN", SaslResponse(ir.unwrap_or_default(), b""))
                    .await
            }
        }
    };
    match tokio::time::timeout(t, unpanicked(attempt)).await {
        Err(_) => Err((
            ImapError::Timeout {
                server,
                what: "the login".into(),
                after: t,
            },
            None,
        )),
        Ok(Err(panic)) => Err((unparsable(&server, "login", &panic), None)),
        Ok(Ok(Ok(session))) => Ok(session),
        Ok(Ok(Err((e, client)))) => Err(match e {
            async_imap::error::Error::No(reply) | async_imap::error::Error::Bad(reply) => (
                ImapError::Auth {
                    server,
                    user: endpoint.user.clone(),
                    admin: endpoint.admin.as_ref().map(|a| a.user.clone()),
                    reply: server_words(&reply),
                },
                Some(client),
            ),
            other => (
                ImapError::Closed {
                    server,
                    command: "login".into(),
                    reply: other.to_string(),
                },
                None,
            ),
        }),
    }
}

/// The server's words of a refused AUTHENTICATE, which async-imap hands over as the debug form
/// of the response (`code: None, info: Some("[AUTHENTICATIONFAILED] ...")`): the text alone.
fn server_words(reply: &str) -> String {
    let Some(start) = reply.find("info: Some(\"") else {
        return reply.to_owned();
    };
    let inner = &reply[start + "info: Some(\"".len()..];
    let inner = inner.strip_suffix("\")").unwrap_or(inner);
    inner.replace("\\\"", "\"")
}

/// An OAuth 2 login: the mechanism the job names or the server announces (OAUTHBEARER, else
/// XOAUTH2), a token from the endpoint's tokens (or its secret), and once the server refuses a
/// token, one more attempt with a new one, since a token can expire or be revoked between
/// being handed out and being used.
async fn oauth_login(endpoint: &Endpoint, mut client: Client) -> Result<Inner, ImapError> {
    let server = endpoint.server();
    let oauth = endpoint.oauth.clone().unwrap_or_default();
    let mechanism = match oauth.mechanism {
        Some(m) => m,
        None => {
            let caps = announced(&mut client, endpoint).await?;
            if caps.contains("AUTH=OAUTHBEARER") {
                Mechanism::OAuthBearer
            } else if caps.contains("AUTH=XOAUTH2") {
                Mechanism::XOAuth2
            } else {
                return Err(ImapError::Auth {
                    server,
                    user: endpoint.user.clone(),
                    admin: None,
                    reply: "the server announces neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2, so \
                            it takes no OAuth 2 token: log in with a password"
                        .into(),
                });
            }
        }
    };
    let Some(tokens) = oauth.tokens else {
        let credentials = endpoint.oauth_credentials(endpoint.secret.expose(), mechanism);
        return log_in(endpoint, client, &credentials)
            .await
            .map_err(|(e, _)| e);
    };
    let mut retried = false;
    loop {
        let token = fetch_token(&tokens, endpoint).await?;
        let credentials = endpoint.oauth_credentials(token.expose(), mechanism);
        match log_in(endpoint, client, &credentials).await {
            Ok(session) => return Ok(session),
            Err((e, again)) => {
                tokens.refused(&token);
                match again {
                    Some(c) if !retried => {
                        retried = true;
                        client = c;
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

/// A token from `tokens`, fetched off the async threads (it may call the token endpoint).
async fn fetch_token(
    tokens: &std::sync::Arc<dyn migrated_core::AccessTokens>,
    endpoint: &Endpoint,
) -> Result<migrated_core::Secret, ImapError> {
    let t = tokens.clone();
    let got = tokio::task::spawn_blocking(move || t.token())
        .await
        .map_err(|e| ImapError::Protocol {
            server: endpoint.server(),
            command: "the token request".into(),
            detail: e.to_string(),
        })?;
    got.map(|a| a.token).map_err(|error| ImapError::Token {
        server: endpoint.server(),
        user: endpoint.user.clone(),
        error,
    })
}

/// The capabilities a server announces before login. On the raw stream, like NAMESPACE:
/// the unauthenticated client runs no untagged-reply command, and nothing is buffered
/// between the greeting and the login.
async fn announced(client: &mut Client, endpoint: &Endpoint) -> Result<HashSet<String>, ImapError> {
    let server = endpoint.server();
    let t = endpoint.timeout;
    let stream = client.get_mut();
    tokio::time::timeout(t, async {
        stream.write_all(b"C1 CAPABILITY\r\n").await?;
        stream.flush().await
    })
    .await
    .map_err(|_| ImapError::Timeout {
        server: server.clone(),
        what: "CAPABILITY".into(),
        after: t,
    })?
    .map_err(|e| ImapError::Closed {
        server: server.clone(),
        command: "CAPABILITY".into(),
        reply: e.to_string(),
    })?;
    let mut caps = HashSet::new();
    loop {
        let line = read_line(stream, t, &server, "CAPABILITY").await?;
        if let Some(rest) = line.strip_prefix("* CAPABILITY ") {
            caps.extend(rest.split_ascii_whitespace().map(str::to_ascii_uppercase));
        } else if line.starts_with("C1 ") {
            return Ok(caps);
        }
    }
}

impl ImapSession {
    /// Connects, secures and authenticates.
    ///
    /// # Errors
    ///
    /// [`ImapError::Connect`]/[`ImapError::Timeout`] (temporary), [`ImapError::Tls`],
    /// [`ImapError::NoStartTls`] or [`ImapError::Auth`] (permanent).
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, ImapError> {
        Self::connect_observed(endpoint, || {}).await
    }

    /// As [`ImapSession::connect`], calling `on_login` when the connection is up (TLS done,
    /// greeting read) and the login begins, so a caller can tell network trouble from
    /// authentication.
    ///
    /// # Errors
    ///
    /// As [`ImapSession::connect`].
    pub async fn connect_observed(
        endpoint: &Endpoint,
        on_login: impl FnOnce() + Send,
    ) -> Result<Self, ImapError> {
        let server = endpoint.server();
        let t = endpoint.timeout;
        let timeout_err = |what: &str| ImapError::Timeout {
            server: server.clone(),
            what: what.into(),
            after: t,
        };
        let tcp = tokio::time::timeout(
            t,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| timeout_err("the connection"))?
        .map_err(|source| ImapError::Connect {
            server: server.clone(),
            source,
        })?;
        tcp.set_nodelay(true).map_err(|source| ImapError::Connect {
            server: server.clone(),
            source,
        })?;
        // A session given up on (a timeout in the middle of an APPEND) is reset, not closed:
        // what is still in the send buffer is dropped instead of reaching the server later and
        // completing an APPEND that the next pass sends again.
        tcp.set_zero_linger().map_err(|source| ImapError::Connect {
            server: server.clone(),
            source,
        })?;

        let (stream, certificate) = match endpoint.security {
            Security::Plain => (Stream::plain(tcp), None),
            Security::Tls => Self::handshake(endpoint, tcp).await?,
            Security::StartTls => {
                let mut tcp = tcp;
                let greeting = read_line(&mut tcp, t, &server, "the greeting").await?;
                if !greeting.starts_with("* OK") {
                    return Err(ImapError::Protocol {
                        server,
                        command: "greeting".into(),
                        detail: greeting,
                    });
                }
                tokio::time::timeout(t, tcp.write_all(b"S1 STARTTLS\r\n"))
                    .await
                    .map_err(|_| timeout_err("STARTTLS"))?
                    .map_err(|e| ImapError::Closed {
                        server: server.clone(),
                        command: "STARTTLS".into(),
                        reply: e.to_string(),
                    })?;
                loop {
                    let line = read_line(&mut tcp, t, &server, "STARTTLS").await?;
                    if let Some(rest) = line.strip_prefix("S1 ") {
                        if rest.to_ascii_uppercase().starts_with("OK") {
                            break;
                        }
                        return Err(ImapError::NoStartTls {
                            server,
                            reply: line,
                        });
                    }
                }
                Self::handshake(endpoint, tcp).await?
            }
        };

        let mut client = async_imap::Client::new(stream);
        if endpoint.security != Security::StartTls {
            let greeting = tokio::time::timeout(t, unpanicked(client.read_response()))
                .await
                .map_err(|_| timeout_err("the greeting"))?
                .map_err(|panic| unparsable(&server, "greeting", &panic))?
                .map_err(|e| ImapError::Closed {
                    server: server.clone(),
                    command: "greeting".into(),
                    reply: e.to_string(),
                })?;
            if greeting.is_none() {
                return Err(ImapError::Closed {
                    server,
                    command: "greeting".into(),
                    reply: "no greeting".into(),
                });
            }
        }

        on_login();
        let inner = if endpoint.auth == AuthMethod::OAuth2 {
            oauth_login(endpoint, client).await?
        } else {
            let credentials = endpoint.credentials();
            log_in(endpoint, client, &credentials)
                .await
                .map_err(|(e, _)| e)?
        };

        let mut session = Self {
            inner,
            server,
            timeout: t,
            capabilities: HashSet::new(),
            namespace: (String::new(), '/'),
            qresync: false,
            certificate,
        };
        session.read_capabilities().await?;
        session.read_namespace().await?;
        Ok(session)
    }

    /// The TLS handshake; the stream and the fingerprint of the server's certificate.
    async fn handshake(
        endpoint: &Endpoint,
        tcp: TcpStream,
    ) -> Result<(Stream, Option<String>), ImapError> {
        let server = endpoint.server();
        let config = tls::client_config(&endpoint.cert_check).map_err(|reason| ImapError::Tls {
            server: server.clone(),
            reason,
            certificate: None,
        })?;
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
            ImapError::Tls {
                server: server.clone(),
                reason: format!("invalid server name: {e}"),
                certificate: None,
            }
        })?;
        let tls = tokio::time::timeout(
            endpoint.timeout,
            TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| ImapError::Timeout {
            server: server.clone(),
            what: "the TLS handshake".into(),
            after: endpoint.timeout,
        })?
        .map_err(|e| match tls::refusal(&e) {
            Some(refusal) => ImapError::Tls {
                server: server.clone(),
                reason: refusal.text,
                certificate: Some(refusal.fingerprint),
            },
            None => ImapError::Tls {
                server: server.clone(),
                reason: format!(
                    "{e} (check the certificate of {}, or name its CA with ca_file)",
                    endpoint.host
                ),
                certificate: None,
            },
        })?;
        let certificate = tls::peer_fingerprint(tls.get_ref().1);
        Ok((Stream::tls(tls), certificate))
    }

    async fn read_capabilities(&mut self) -> Result<(), ImapError> {
        let mut caps = HashSet::new();
        self.execute("CAPABILITY", "CAPABILITY", |r| {
            add_capabilities(&mut caps, r);
            Ok(())
        })
        .await?;
        self.capabilities = caps;
        Ok(())
    }

    /// Reads NAMESPACE. imap-proto cannot parse its reply, and a reply it cannot parse ends
    /// async-imap's stream, so the exchange happens on the raw stream, between two commands
    /// (nothing is buffered then). Without NAMESPACE the separator comes from `LIST "" ""`.
    async fn read_namespace(&mut self) -> Result<(), ImapError> {
        let mut delimiter = '/';
        self.execute("LIST \"\" \"\"", "LIST", |r| {
            if let Response::MailboxData(MailboxDatum::List(l)) = r
                && let Some(d) = l.delimiter.as_ref().and_then(|d| d.chars().next())
            {
                delimiter = d;
            }
            Ok(())
        })
        .await?;
        self.namespace = (String::new(), delimiter);
        if !self.has("NAMESPACE") {
            return Ok(());
        }
        let t = self.timeout;
        let server = self.server.clone();
        let stream = self.inner.get_mut();
        tokio::time::timeout(t, async {
            stream.write_all(b"N1 NAMESPACE\r\n").await?;
            stream.flush().await
        })
        .await
        .map_err(|_| ImapError::Timeout {
            server: server.clone(),
            what: "NAMESPACE".into(),
            after: t,
        })?
        .map_err(|e| ImapError::Closed {
            server: server.clone(),
            command: "NAMESPACE".into(),
            reply: e.to_string(),
        })?;
        loop {
            let line = read_line(stream, t, &server, "NAMESPACE").await?;
            if let Some(rest) = line.strip_prefix("* NAMESPACE ") {
                if let Some(ns) = parse_personal_namespace(rest) {
                    self.namespace = (ns.0, ns.1.unwrap_or(delimiter));
                }
            } else if line.starts_with("N1 ") {
                return Ok(());
            }
        }
    }
}

/// Adds the capabilities of a CAPABILITY reply, upper-cased, to `caps`.
pub(super) fn add_capabilities(caps: &mut HashSet<String>, r: &Response<'_>) {
    if let Response::Capabilities(list) = r {
        for c in list {
            match c {
                Capability::Imap4rev1 => caps.insert("IMAP4REV1".to_owned()),
                Capability::Auth(a) => caps.insert(format!("AUTH={}", a.to_ascii_uppercase())),
                Capability::Atom(a) => caps.insert(a.to_ascii_uppercase()),
            };
        }
    }
}

/// Reads one CRLF-terminated line from a raw stream, byte by byte so that nothing after it is
/// consumed (only used for the short exchanges async-imap cannot parse).
async fn read_line<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    t: Duration,
    server: &str,
    what: &str,
) -> Result<String, ImapError> {
    let mut line = Vec::new();
    let read = async {
        loop {
            let b = stream.read_u8().await?;
            line.push(b);
            if line.ends_with(b"\r\n") || line.len() > 64 * 1024 {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    tokio::time::timeout(t, read)
        .await
        .map_err(|_| ImapError::Timeout {
            server: server.into(),
            what: what.into(),
            after: t,
        })?
        .map_err(|e| ImapError::Closed {
            server: server.into(),
            command: what.into(),
            reply: e.to_string(),
        })?;
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// Parses the personal namespace from `(("INBOX." ".")) NIL NIL`: `(prefix, separator)`.
pub(super) fn parse_personal_namespace(rest: &str) -> Option<(String, Option<char>)> {
    let rest = rest.trim_start().strip_prefix("((")?;
    let (prefix, rest) = parse_quoted(rest)?;
    let rest = rest.trim_start();
    // `get`, not `[..3]`: the server's bytes may put a multi-byte character there.
    let delimiter = if rest.get(..3).is_some_and(|w| w.eq_ignore_ascii_case("NIL")) {
        None
    } else {
        parse_quoted(rest)?.0.chars().next()
    };
    Some((utf7::decode(&prefix).ok()?, delimiter))
}

fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_authenticate_is_reported_in_the_servers_words() {
        assert_eq!(
            server_words(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            server_words("[AUTHENTICATIONFAILED] Invalid credentials"),
            "[AUTHENTICATIONFAILED] Invalid credentials"
        );
    }

    #[test]
    fn namespace_replies_are_parsed() {
        assert_eq!(
            parse_personal_namespace(r#"(("INBOX." ".")) NIL NIL"#),
            Some(("INBOX.".into(), Some('.')))
        );
        assert_eq!(
            parse_personal_namespace(r#"(("" "/")) NIL (("Shared/" "/"))"#),
            Some((String::new(), Some('/')))
        );
        assert_eq!(parse_personal_namespace("NIL NIL NIL"), None);
        // Found by fuzzing: a multi-byte character where NIL may stand panicked.
        assert_eq!(parse_personal_namespace("((\"INBOX.\" A\u{fffd}D"), None);
    }
}
