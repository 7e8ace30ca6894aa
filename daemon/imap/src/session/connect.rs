//! Opening a session: TCP, TLS or STARTTLS, the greeting, LOGIN or AUTHENTICATE (PLAIN,
//! XOAUTH2) as the user or as an administrator on behalf of the user, then CAPABILITY and
//! NAMESPACE.

use std::collections::HashSet;
use std::time::Duration;

use async_imap::imap_proto::{Capability, MailboxDatum, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ImapSession, unpanicked, unparsable};
use crate::endpoint::{Credentials, Endpoint, Security};
use crate::error::ImapError;
use crate::stream::Stream;
use crate::{tls, utf7};

/// SASL PLAIN and XOAUTH2 initial responses.
struct SaslResponse(Vec<u8>);

impl async_imap::Authenticator for SaslResponse {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.0)
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

        let stream = match endpoint.security {
            Security::Plain => Stream::plain(tcp),
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
        let credentials = endpoint.credentials();
        let login = async {
            match (&credentials, credentials.initial_response()) {
                (Credentials::Login { name, secret }, _) => {
                    client.login(name, secret).await.map_err(|(e, _)| e)
                }
                (Credentials::XOAuth2 { .. }, Some(ir)) => client
                    .authenticate("XOAUTH2", SaslResponse(ir))
                    .await
                    .map_err(|(e, _)| e),
                (_, ir) => client
                    .authenticate("PLAIN", SaslResponse(ir.unwrap_or_default()))
                    .await
                    .map_err(|(e, _)| e),
            }
        };
        let inner = tokio::time::timeout(t, unpanicked(login))
            .await
            .map_err(|_| timeout_err("the login"))?
            .map_err(|panic| unparsable(&server, "login", &panic))?
            .map_err(|e| match e {
                async_imap::error::Error::No(reply) | async_imap::error::Error::Bad(reply) => {
                    ImapError::Auth {
                        server: server.clone(),
                        user: endpoint.user.clone(),
                        admin: endpoint.admin.as_ref().map(|a| a.user.clone()),
                        reply,
                    }
                }
                other => ImapError::Closed {
                    server: server.clone(),
                    command: "login".into(),
                    reply: other.to_string(),
                },
            })?;
        drop(credentials);

        let mut session = Self {
            inner,
            server,
            timeout: t,
            capabilities: HashSet::new(),
            namespace: (String::new(), '/'),
        };
        session.read_capabilities().await?;
        session.read_namespace().await?;
        Ok(session)
    }

    async fn handshake(endpoint: &Endpoint, tcp: TcpStream) -> Result<Stream, ImapError> {
        let server = endpoint.server();
        let config = tls::client_config(&endpoint.cert_check).map_err(|reason| ImapError::Tls {
            server: server.clone(),
            reason,
        })?;
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
            ImapError::Tls {
                server: server.clone(),
                reason: format!("invalid server name: {e}"),
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
        .map_err(|e| ImapError::Tls {
            server: server.clone(),
            reason: format!(
                "{e} (check the certificate of {}, or name its CA with ca_file)",
                endpoint.host
            ),
        })?;
        Ok(Stream::tls(tls))
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
