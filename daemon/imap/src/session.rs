//! An authenticated IMAP session: the commands a migration needs, each with a timeout, each
//! reply checked, each failure in the server's own words.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{
    AttributeValue, Capability, MailboxDatum, NameAttribute, Response, ResponseCode,
    StatusAttribute,
};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::endpoint::{AuthMethod, Endpoint, Security};
use crate::error::ImapError;
use crate::stream::Stream;
use crate::{tls, uidset, utf7};

/// Reads the next reply with the session's timeout. A macro because async-imap's reply type
/// cannot be named outside that crate.
macro_rules! next_response {
    ($s:expr, $what:expr) => {
        match tokio::time::timeout($s.timeout, unpanicked($s.inner.read_response())).await {
            Err(_) => return Err($s.timeout_error($what)),
            Ok(Err(panic)) => return Err(unparsable(&$s.server, $what, &panic)),
            Ok(Ok(Err(e))) => return Err($s.read_failed($what, e)),
            Ok(Ok(Ok(None))) => return Err($s.closed($what, "connection closed".into())),
            Ok(Ok(Ok(Some(r)))) => r,
        }
    };
}

/// Runs an async-imap call that reads replies, turning a panic of its parser into an error.
/// imap-proto 0.17 panics on some replies a broken or hostile server can send (a response code
/// followed by a multi-byte character, `A1 OK [UIDNEXT 5]é`, found by fuzzing). async-imap's
/// reply buffer is lost with the panic, so later calls on the session fail too.
async fn unpanicked<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|panic| panic_text(&*panic))
}

/// imap-proto's reply parser, as async-imap calls it, with a panic turned into an error (see
/// [`unpanicked`]).
fn parse_reply(input: &[u8]) -> Result<async_imap::imap_proto::ParseResult<'_>, String> {
    std::panic::catch_unwind(|| Response::parse(input)).map_err(|panic| panic_text(&*panic))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The error for a reply the parser panicked on: permanent, the server would send it again.
fn unparsable(server: &str, what: &str, panic: &str) -> ImapError {
    ImapError::Protocol {
        server: server.into(),
        command: what.into(),
        detail: format!("a reply the IMAP parser cannot read (imap-proto failed: {panic})"),
    }
}

/// One folder of a LIST reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// Decoded (UTF-8) full name.
    pub name: String,
    /// Hierarchy separator.
    pub delimiter: Option<char>,
    /// `\Noselect` / `\NonExistent`.
    pub no_select: bool,
    /// SPECIAL-USE attribute as sent (`\Sent`), if any.
    pub special_use: Option<String>,
    /// `\Subscribed` seen (with LIST-EXTENDED) or listed by LSUB.
    pub subscribed: bool,
}

/// A folder's state from SELECT/EXAMINE or STATUS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxState {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// EXISTS / MESSAGES.
    pub messages: u32,
    /// HIGHESTMODSEQ (CONDSTORE), if offered.
    pub highest_modseq: Option<u64>,
}

/// Metadata of one message from a listing FETCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMeta {
    /// UID.
    pub uid: u32,
    /// RFC822.SIZE.
    pub size: u32,
    /// FLAGS as sent.
    pub flags: Vec<String>,
    /// INTERNALDATE as sent (without quotes).
    pub internal_date: String,
    /// Message-ID header value, unfolded and trimmed.
    pub message_id: Option<String>,
    /// Subject, decoded (RFC 2047) for reports.
    pub subject: Option<String>,
    /// MODSEQ, with CONDSTORE.
    pub modseq: Option<u64>,
}

/// A message of a Gmail folder: its metadata, X-GM-MSGID and X-GM-LABELS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailMeta {
    /// UID, size, flags, date, Message-ID.
    pub meta: FetchedMeta,
    /// X-GM-MSGID: the message's identity across all labels.
    pub msgid: u64,
    /// X-GM-LABELS, decoded from modified UTF-7 (system labels as `\Inbox`).
    pub labels: Vec<String>,
}

/// One message to APPEND.
#[derive(Debug, Clone, Copy)]
pub struct AppendItem<'a> {
    /// Parenthesized flag list, e.g. `(\Seen $Forwarded)`.
    pub flags: &'a str,
    /// INTERNALDATE as the source sent it.
    pub internal_date: &'a str,
    /// The message, byte for byte.
    pub body: &'a [u8],
}

/// An authenticated session.
#[derive(Debug)]
pub struct ImapSession {
    inner: async_imap::Session<Stream>,
    server: String,
    timeout: Duration,
    capabilities: HashSet<String>,
    /// Personal namespace prefix and separator (from NAMESPACE, else from LIST).
    namespace: (String, char),
}

/// SASL PLAIN and XOAUTH2 initial responses.
struct SaslResponse(Vec<u8>);

impl async_imap::Authenticator for SaslResponse {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Quotes a string for the wire (folder names are ASCII after modified UTF-7).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The human part of a tagged reply: `[CODE] text`.
fn reply_text(code: Option<&ResponseCode<'_>>, info: Option<&str>) -> String {
    let info = info.unwrap_or("").trim();
    match code {
        Some(c) => format!("[{c:?}] {info}"),
        None => info.to_owned(),
    }
}

/// Unfolds and trims the Message-ID from a `HEADER.FIELDS (MESSAGE-ID)` section.
/// The Subject of a header block, RFC 2047 words decoded (mail-parser), for reports.
fn parse_subject(header: &[u8]) -> Option<String> {
    mail_parser::MessageParser::new()
        .parse_headers(header)
        .and_then(|m| m.subject().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
}

fn parse_message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut value: Option<String> = None;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if let Some(v) = value.as_mut() {
            if line.starts_with(' ') || line.starts_with('\t') {
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if line.len() >= 11
            && line.is_char_boundary(11)
            && line[..11].eq_ignore_ascii_case("message-id:")
        {
            value = Some(line[11..].trim().to_owned());
        }
    }
    value.filter(|v| !v.is_empty())
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
        let user = endpoint.user.as_str();
        let secret = endpoint.secret.expose();
        let login = async {
            match endpoint.auth {
                AuthMethod::Login => client.login(user, secret).await.map_err(|(e, _)| e),
                AuthMethod::Plain => {
                    let ir = format!("\0{user}\0{secret}").into_bytes();
                    client
                        .authenticate("PLAIN", SaslResponse(ir))
                        .await
                        .map_err(|(e, _)| e)
                }
                AuthMethod::XOAuth2 => {
                    let ir = format!("user={user}\x01auth=Bearer {secret}\x01\x01").into_bytes();
                    client
                        .authenticate("XOAUTH2", SaslResponse(ir))
                        .await
                        .map_err(|(e, _)| e)
                }
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
                        user: user.to_owned(),
                        reply,
                    }
                }
                other => ImapError::Closed {
                    server: server.clone(),
                    command: "login".into(),
                    reply: other.to_string(),
                },
            })?;

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

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether the server announced a capability (case-insensitive).
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.contains(&capability.to_ascii_uppercase())
    }

    /// Personal namespace: `(prefix, separator)`.
    pub fn namespace(&self) -> (&str, char) {
        (&self.namespace.0, self.namespace.1)
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

    /// Runs a command and hands every untagged reply to `on_data`; returns the tagged OK's
    /// response code. A tagged NO or BAD, a BYE, a timeout or a closed connection is an error.
    async fn execute<F>(
        &mut self,
        command: &str,
        what: &str,
        mut on_data: F,
    ) -> Result<Option<Done>, ImapError>
    where
        F: FnMut(&Response<'_>) -> Result<(), ImapError>,
    {
        let t = self.timeout;
        let tag = tokio::time::timeout(t, self.inner.run_command(command))
            .await
            .map_err(|_| self.timeout_error(what))?
            .map_err(|e| self.closed(what, e.to_string()))?;
        self.finish(&tag.0, what, &mut on_data).await
    }

    async fn finish<F>(
        &mut self,
        tag: &str,
        what: &str,
        on_data: &mut F,
    ) -> Result<Option<Done>, ImapError>
    where
        F: FnMut(&Response<'_>) -> Result<(), ImapError>,
    {
        loop {
            let response = next_response!(self, what);
            match response.parsed() {
                Response::Done {
                    tag: t,
                    status,
                    outcome,
                } if t.0 == tag => {
                    let reply = reply_text(outcome.code.as_ref(), outcome.information.as_deref());
                    return match status {
                        async_imap::imap_proto::Status::Ok => {
                            Done::from_code(outcome.code.as_ref())
                                .map(Some)
                                .map_err(|detail| ImapError::Protocol {
                                    server: self.server.clone(),
                                    command: what.into(),
                                    detail,
                                })
                        }
                        async_imap::imap_proto::Status::No => Err(ImapError::No {
                            server: self.server.clone(),
                            command: what.into(),
                            reply,
                        }),
                        _ => Err(ImapError::Bad {
                            server: self.server.clone(),
                            command: what.into(),
                            reply,
                        }),
                    };
                }
                Response::Data {
                    status: async_imap::imap_proto::Status::Bye,
                    outcome,
                } => {
                    let reply = reply_text(outcome.code.as_ref(), outcome.information.as_deref());
                    return Err(self.closed(what, format!("BYE {reply}")));
                }
                other => on_data(other)?,
            }
        }
    }

    fn timeout_error(&self, what: &str) -> ImapError {
        ImapError::Timeout {
            server: self.server.clone(),
            what: what.into(),
            after: self.timeout,
        }
    }

    /// A read that failed: the stream guard refusing the server's reply (a protocol error: the
    /// server would send it again), or the connection lost.
    fn read_failed(&self, what: &str, e: std::io::Error) -> ImapError {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<crate::stream::Refused>())
        {
            return ImapError::Protocol {
                server: self.server.clone(),
                command: what.into(),
                detail: e.to_string(),
            };
        }
        self.closed(what, e.to_string())
    }

    fn closed(&self, what: &str, reply: String) -> ImapError {
        ImapError::Closed {
            server: self.server.clone(),
            command: what.into(),
            reply,
        }
    }

    /// Lists all folders with SPECIAL-USE roles and subscriptions.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn list(&mut self) -> Result<Vec<FolderEntry>, ImapError> {
        let extended = self.has("LIST-EXTENDED");
        let command = match (extended, self.has("SPECIAL-USE")) {
            (true, true) => "LIST \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)",
            (true, false) => "LIST \"\" \"*\" RETURN (SUBSCRIBED)",
            _ => "LIST \"\" \"*\"",
        };
        let mut folders: Vec<FolderEntry> = Vec::new();
        let mut bad_names = Vec::new();
        self.execute(command, "LIST", |r| {
            match folder_entry(r) {
                Ok(Some(entry)) => folders.push(entry),
                Ok(None) => {}
                Err(e) => bad_names.push(e.to_string()),
            }
            Ok(())
        })
        .await?;
        if let Some(bad) = bad_names.first() {
            return Err(ImapError::Protocol {
                server: self.server.clone(),
                command: "LIST".into(),
                detail: bad.clone(),
            });
        }
        if !extended {
            let mut subscribed = HashSet::new();
            self.execute("LSUB \"\" \"*\"", "LSUB", |r| {
                if let Response::MailboxData(MailboxDatum::List(l)) = r
                    && let Ok(name) = utf7::decode(&l.name)
                {
                    subscribed.insert(name);
                }
                Ok(())
            })
            .await?;
            for f in &mut folders {
                f.subscribed = subscribed.contains(&f.name);
            }
        }
        Ok(folders)
    }

    /// Opens a folder: read-only (`EXAMINE`) for sources, read-write (`SELECT`) for the
    /// destination. Enables CONDSTORE reporting when the server offers it.
    ///
    /// # Errors
    ///
    /// A NO names the folder with the server's reply.
    pub async fn open(&mut self, folder: &str, read_only: bool) -> Result<MailboxState, ImapError> {
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let condstore = if self.has("CONDSTORE") {
            " (CONDSTORE)"
        } else {
            ""
        };
        let command = format!("{verb} {}{condstore}", quote(&utf7::encode(folder)));
        let mut state = MailboxState::default();
        let what = format!("{verb} {folder:?}");
        let done = self
            .execute(&command, &what, |r| {
                note_selected(&mut state, r);
                Ok(())
            })
            .await?;
        let _ = done;
        Ok(state)
    }

    /// STATUS of a folder that need not be open.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn status(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        let modseq = if self.has("CONDSTORE") {
            " HIGHESTMODSEQ"
        } else {
            ""
        };
        let command = format!(
            "STATUS {} (UIDNEXT UIDVALIDITY MESSAGES{modseq})",
            quote(&utf7::encode(folder))
        );
        let mut state = MailboxState::default();
        self.execute(&command, &format!("STATUS {folder:?}"), |r| {
            note_status(&mut state, r);
            Ok(())
        })
        .await?;
        Ok(state)
    }

    /// Lists the messages of the open folder with UID >= `min_uid` (and, with `changed_since`,
    /// MODSEQ above it): UID, size, flags, INTERNALDATE, Message-ID. Replies are turned into
    /// small records as they arrive, so a folder of 100,000 messages costs a few MB.
    ///
    /// # Errors
    ///
    /// As for every command; a reply without UID, size or date is a protocol error.
    pub async fn fetch_meta(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
    ) -> Result<Vec<FetchedMeta>, ImapError> {
        self.fetch_meta_range(min_uid, None, changed_since).await
    }

    /// As [`ImapSession::fetch_meta`], for the UIDs `min_uid..=max_uid` only (to list a large
    /// folder in pages).
    ///
    /// # Errors
    ///
    /// As for [`ImapSession::fetch_meta`].
    pub async fn fetch_meta_range(
        &mut self,
        min_uid: u32,
        max_uid: Option<u32>,
        changed_since: Option<u64>,
    ) -> Result<Vec<FetchedMeta>, ImapError> {
        let upper = max_uid.map_or_else(|| "*".to_owned(), |m| m.max(min_uid.max(1)).to_string());
        let condstore = self.has("CONDSTORE");
        let modseq = if condstore { " MODSEQ" } else { "" };
        let changed = match changed_since {
            Some(m) if condstore => format!(" (CHANGEDSINCE {m})"),
            _ => String::new(),
        };
        let command = format!(
            "UID FETCH {}:{upper} (UID RFC822.SIZE FLAGS INTERNALDATE{modseq} BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)]){changed}",
            min_uid.max(1)
        );
        let server = self.server.clone();
        let mut out = Vec::new();
        self.execute(&command, "UID FETCH (listing)", |r| {
            let m = fetched_meta(r).map_err(|detail| ImapError::Protocol {
                server: server.clone(),
                command: "UID FETCH".into(),
                detail,
            })?;
            // `n:*` returns the last message even when its UID is below n.
            if let Some(m) = m
                && m.uid >= min_uid
                && max_uid.is_none_or(|max| m.uid <= max)
            {
                out.push(m);
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Lists the messages `min_uid..=max_uid` of the open folder of a Gmail account with
    /// X-GM-MSGID and X-GM-LABELS (X-GM-EXT-1). Read on the raw stream: Gmail may send labels
    /// as literals, which imap-proto cannot parse.
    ///
    /// # Errors
    ///
    /// As for every command; a reply without UID, X-GM-MSGID or date is a protocol error.
    pub async fn gmail_meta(
        &mut self,
        min_uid: u32,
        max_uid: Option<u32>,
    ) -> Result<Vec<GmailMeta>, ImapError> {
        let upper = max_uid.map_or_else(|| "*".to_owned(), |m| m.max(min_uid.max(1)).to_string());
        let command = format!(
            "UID FETCH {}:{upper} (UID RFC822.SIZE FLAGS INTERNALDATE X-GM-MSGID X-GM-LABELS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])",
            min_uid.max(1)
        );
        let what = "UID FETCH (Gmail listing)";
        let (t, server) = (self.timeout, self.server.clone());
        let replies =
            crate::raw::exchange(self.inner.get_mut(), "GM1", &command, t, &server, what).await?;
        gmail_listing(&replies, min_uid, max_uid).map_err(|detail| ImapError::Protocol {
            server: server.clone(),
            command: what.into(),
            detail,
        })
    }

    /// Fetches whole messages of the open folder. Checks that every UID asked for came back:
    /// async-imap would end a FETCH stream silently on a tagged NO, so nothing is taken on
    /// trust. A UID not returned (expunged meanwhile) is `None`.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let command = format!("UID FETCH {} (UID BODY.PEEK[])", uidset::format(uids));
        let mut got: HashMap<u32, Vec<u8>> = HashMap::with_capacity(uids.len());
        self.execute(&command, "UID FETCH (bodies)", |r| {
            if let Some((uid, body)) = fetched_body(r) {
                got.insert(uid, body);
            }
            Ok(())
        })
        .await?;
        Ok(uids.iter().map(|u| got.remove(u)).collect())
    }

    /// Fetches part of one message of the open folder: `len` bytes from `offset`
    /// (`BODY.PEEK[]<offset.len>`), fewer at the end, none past it. `None` if the message is
    /// gone.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn fetch_body_part(
        &mut self,
        uid: u32,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, ImapError> {
        let command = format!("UID FETCH {uid} (UID BODY.PEEK[]<{offset}.{len}>)");
        let mut got = None;
        self.execute(&command, "UID FETCH (part)", |r| {
            if let Response::Fetch(_, attrs) = r {
                let mut this = false;
                let mut part = None;
                for a in attrs {
                    match a {
                        AttributeValue::Uid(u) => this = *u == uid,
                        AttributeValue::BodySection {
                            section: None,
                            data,
                            ..
                        } => part = Some(data.as_deref().unwrap_or_default().to_vec()),
                        _ => {}
                    }
                }
                if this && part.is_some() {
                    got = part;
                }
            }
            Ok(())
        })
        .await?;
        Ok(got)
    }

    /// Appends messages to a folder in one command where the server allows: MULTIAPPEND with
    /// LITERAL+ sends everything without waiting; otherwise synchronizing literals are used.
    /// Returns the new UIDs from APPENDUID (UIDPLUS), in order, or `None` without UIDPLUS.
    ///
    /// With MULTIAPPEND the command is atomic: a refused message refuses the batch, and the
    /// caller retries one by one to find it.
    ///
    /// # Errors
    ///
    /// A NO carries the server's reason (quota, size, bad date...).
    pub async fn append(
        &mut self,
        folder: &str,
        items: &[AppendItem<'_>],
    ) -> Result<Option<Vec<u32>>, ImapError> {
        if items.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let literal_plus = self.has("LITERAL+");
        if items.len() > 1 && !self.has("MULTIAPPEND") {
            let mut uids = Vec::with_capacity(items.len());
            for item in items {
                match Box::pin(self.append(folder, std::slice::from_ref(item))).await? {
                    Some(u) => uids.extend(u),
                    None => return Ok(None),
                }
            }
            return Ok(Some(uids));
        }
        let what = format!("APPEND to {folder:?}");
        let part = |item: &AppendItem<'_>| {
            let plus = if literal_plus { "+" } else { "" };
            format!(
                "{} {} {{{}{plus}}}",
                item.flags,
                quote(item.internal_date),
                item.body.len()
            )
        };
        let command = format!(
            "APPEND {} {}",
            quote(&utf7::encode(folder)),
            part(&items[0])
        );
        let t = self.timeout;
        let tag = tokio::time::timeout(t, self.inner.run_command(&command))
            .await
            .map_err(|_| self.timeout_error(&what))?
            .map_err(|e| self.closed(&what, e.to_string()))?;
        for (i, item) in items.iter().enumerate() {
            if !literal_plus {
                // Wait for the continuation before each literal; a NO here refuses the batch.
                let response = next_response!(self, &what);
                match response.parsed() {
                    Response::Continue { .. } => {}
                    Response::Done {
                        status, outcome, ..
                    } => {
                        let reply =
                            reply_text(outcome.code.as_ref(), outcome.information.as_deref());
                        return Err(match status {
                            async_imap::imap_proto::Status::No => ImapError::No {
                                server: self.server.clone(),
                                command: what,
                                reply,
                            },
                            _ => ImapError::Bad {
                                server: self.server.clone(),
                                command: what,
                                reply,
                            },
                        });
                    }
                    other => {
                        return Err(ImapError::Protocol {
                            server: self.server.clone(),
                            command: what,
                            detail: format!("expected a continuation, got {other:?}"),
                        });
                    }
                }
            }
            let next = items.get(i + 1).map(|n| format!(" {}\r\n", part(n)));
            let trailer = next.unwrap_or_else(|| "\r\n".to_owned());
            let stream = self.inner.get_mut();
            let write = async {
                stream.write_all(item.body).await?;
                stream.write_all(trailer.as_bytes()).await?;
                stream.flush().await
            };
            tokio::time::timeout(t, write)
                .await
                .map_err(|_| self.timeout_error(&what))?
                .map_err(|e| self.closed(&what, e.to_string()))?;
        }
        // Everything is sent: the server may store it however late it answers. Giving up at
        // the usual timeout would leave it to store the batch after the next pass found nothing
        // and sent it again, so the answer is awaited longer: four timeouts, at least 30 s.
        let patience = (t * 4).max(Duration::from_secs(30));
        let usual = std::mem::replace(&mut self.timeout, patience);
        let done = self.finish(&tag.0, &what, &mut |_| Ok(())).await;
        self.timeout = usual;
        let done = done?;
        match done.and_then(|d| d.append_uids) {
            Some(uids) if uids.len() == items.len() => Ok(Some(uids)),
            Some(uids) => Err(ImapError::Protocol {
                server: self.server.clone(),
                command: what,
                detail: format!(
                    "APPENDUID names {} UIDs for {} messages",
                    uids.len(),
                    items.len()
                ),
            }),
            None => Ok(None),
        }
    }

    /// Copies messages of the open folder into `target` on the server (`UID COPY`), without
    /// sending them again. Returns `(UID here, UID in target)` pairs from COPYUID (UIDPLUS), or
    /// `None` without UIDPLUS.
    ///
    /// # Errors
    ///
    /// As for every command; a NO (target missing, over quota) with the server's reply.
    pub async fn copy(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> Result<Option<Vec<(u32, u32)>>, ImapError> {
        if uids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let command = format!(
            "UID COPY {} {}",
            uidset::format(uids),
            quote(&utf7::encode(target))
        );
        let done = self.execute(&command, "UID COPY", |_| Ok(())).await?;
        Ok(done.and_then(|d| d.copy_uids))
    }

    /// Sets the flags of messages in the open folder (replacing them).
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn store_flags(&mut self, uids: &[u32], flags: &str) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let command = format!("UID STORE {} FLAGS.SILENT {flags}", uidset::format(uids));
        self.execute(&command, "UID STORE", |_| Ok(()))
            .await
            .map(|_| ())
    }

    /// Creates a folder (with `USE (...)` when given and the server offers
    /// CREATE-SPECIAL-USE). A folder that already exists is not an error.
    ///
    /// # Errors
    ///
    /// A NO other than "already exists", with the server's reply.
    pub async fn create(
        &mut self,
        folder: &str,
        special_use: Option<&str>,
    ) -> Result<(), ImapError> {
        let usage = match special_use {
            Some(u) if self.has("CREATE-SPECIAL-USE") => format!(" (USE ({u}))"),
            _ => String::new(),
        };
        let command = format!("CREATE {}{usage}", quote(&utf7::encode(folder)));
        match self
            .execute(&command, &format!("CREATE {folder:?}"), |_| Ok(()))
            .await
        {
            Ok(_) => Ok(()),
            Err(ImapError::No { reply, .. })
                if reply.to_ascii_uppercase().contains("ALREADYEXISTS")
                    || reply.contains("already exists") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Subscribes to a folder.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        let command = format!("SUBSCRIBE {}", quote(&utf7::encode(folder)));
        self.execute(&command, &format!("SUBSCRIBE {folder:?}"), |_| Ok(()))
            .await
            .map(|_| ())
    }

    /// Logs out politely; errors are ignored since the session ends anyway.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(self.timeout, unpanicked(self.inner.logout())).await;
    }
}

/// Adds the capabilities of a CAPABILITY reply, upper-cased, to `caps`.
fn add_capabilities(caps: &mut HashSet<String>, r: &Response<'_>) {
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

/// The folder a LIST reply names: `None` for other replies and for `\NonExistent` entries,
/// an error for a name that is not modified UTF-7.
fn folder_entry(r: &Response<'_>) -> Result<Option<FolderEntry>, utf7::Utf7Error> {
    let Response::MailboxData(MailboxDatum::List(l)) = r else {
        return Ok(None);
    };
    let mut entry = FolderEntry {
        name: String::new(),
        delimiter: l.delimiter.as_ref().and_then(|d| d.chars().next()),
        no_select: false,
        special_use: None,
        subscribed: false,
    };
    for a in &l.name_attributes {
        match a {
            NameAttribute::NoSelect => entry.no_select = true,
            NameAttribute::All => entry.special_use = Some("\\All".into()),
            NameAttribute::Archive => entry.special_use = Some("\\Archive".into()),
            NameAttribute::Drafts => entry.special_use = Some("\\Drafts".into()),
            NameAttribute::Flagged => entry.special_use = Some("\\Flagged".into()),
            NameAttribute::Junk => entry.special_use = Some("\\Junk".into()),
            NameAttribute::Sent => entry.special_use = Some("\\Sent".into()),
            NameAttribute::Trash => entry.special_use = Some("\\Trash".into()),
            // Gmail's [Gmail]/Important (not an RFC 6154 role).
            NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\Important") => {
                entry.special_use = Some("\\Important".into());
            }
            NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\Subscribed") => {
                entry.subscribed = true;
            }
            // Subscribed but absent: nothing to copy, nothing to create.
            NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent") => {
                return Ok(None);
            }
            _ => {}
        }
    }
    entry.name = utf7::decode(&l.name)?;
    Ok(Some(entry))
}

/// Notes what an untagged reply to SELECT or EXAMINE says about the folder.
fn note_selected(state: &mut MailboxState, r: &Response<'_>) {
    match r {
        Response::MailboxData(MailboxDatum::Exists(n)) => state.messages = *n,
        Response::Data { outcome, .. } => match outcome.code {
            Some(ResponseCode::UidValidity(v)) => state.uid_validity = v,
            Some(ResponseCode::UidNext(v)) => state.uid_next = v,
            Some(ResponseCode::HighestModSeq(v)) => state.highest_modseq = Some(v),
            _ => {}
        },
        _ => {}
    }
}

/// Notes what a STATUS reply says about the folder.
fn note_status(state: &mut MailboxState, r: &Response<'_>) {
    if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
        for a in status {
            match a {
                StatusAttribute::UidNext(v) => state.uid_next = *v,
                StatusAttribute::UidValidity(v) => state.uid_validity = *v,
                StatusAttribute::Messages(v) => state.messages = *v,
                StatusAttribute::HighestModSeq(v) => state.highest_modseq = Some(*v),
                _ => {}
            }
        }
    }
}

/// A listing FETCH reply as metadata: `None` for other replies and for an unsolicited FETCH
/// without UID (a flag change by another client); an error for a message without a date.
fn fetched_meta(r: &Response<'_>) -> Result<Option<FetchedMeta>, String> {
    let Response::Fetch(_, attrs) = r else {
        return Ok(None);
    };
    let mut m = FetchedMeta {
        uid: 0,
        size: 0,
        flags: Vec::new(),
        internal_date: String::new(),
        message_id: None,
        subject: None,
        modseq: None,
    };
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => m.uid = *u,
            AttributeValue::Rfc822Size(s) => m.size = *s,
            AttributeValue::Flags(f) => m.flags = f.iter().map(|x| x.to_string()).collect(),
            AttributeValue::InternalDate(d) => m.internal_date = d.to_string(),
            AttributeValue::ModSeq(s) => m.modseq = Some(*s),
            AttributeValue::BodySection { data: Some(d), .. } => {
                m.message_id = parse_message_id(d);
                m.subject = parse_subject(d);
            }
            _ => {}
        }
    }
    if m.uid == 0 {
        return Ok(None);
    }
    if m.internal_date.is_empty() {
        return Err(format!("no INTERNALDATE for UID {}", m.uid));
    }
    Ok(Some(m))
}

/// A whole message from a FETCH reply: `(UID, bytes)`.
fn fetched_body(r: &Response<'_>) -> Option<(u32, Vec<u8>)> {
    let Response::Fetch(_, attrs) = r else {
        return None;
    };
    let mut uid = None;
    let mut body = None;
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => uid = Some(*u),
            AttributeValue::BodySection {
                section: None,
                data: Some(d),
                ..
            } => body = Some(d.to_vec()),
            _ => {}
        }
    }
    Some((uid?, body?))
}

/// The messages `min_uid..=max_uid` of a Gmail listing, from the untagged replies read on the
/// raw stream; other untagged replies (EXISTS, FLAGS) are skipped. The error is the detail of
/// a protocol error.
fn gmail_listing(
    replies: &[Vec<u8>],
    min_uid: u32,
    max_uid: Option<u32>,
) -> Result<Vec<GmailMeta>, String> {
    let mut out = Vec::new();
    for reply in replies {
        // `* 12 FETCH (...)`.
        let mut words = reply.splitn(4, |&b| b == b' ');
        let (_, _, verb, rest) = (words.next(), words.next(), words.next(), words.next());
        if !verb.is_some_and(|v| v.eq_ignore_ascii_case(b"FETCH")) {
            continue;
        }
        let values = crate::raw::parse_values(rest.unwrap_or_default())?;
        let Some(crate::raw::Value::List(items)) = values.into_iter().next() else {
            return Err("a FETCH reply without attributes".into());
        };
        let mut m = GmailMeta {
            meta: FetchedMeta {
                uid: 0,
                size: 0,
                flags: Vec::new(),
                internal_date: String::new(),
                message_id: None,
                subject: None,
                modseq: None,
            },
            msgid: 0,
            labels: Vec::new(),
        };
        let mut it = items.into_iter();
        while let (Some(key), Some(value)) = (it.next(), it.next()) {
            use crate::raw::Value;
            let key = key.text().unwrap_or_default().to_ascii_uppercase();
            match (key.as_str(), value) {
                ("UID", v) => m.meta.uid = v.text().and_then(|t| t.parse().ok()).unwrap_or(0),
                ("RFC822.SIZE", v) => {
                    m.meta.size = v.text().and_then(|t| t.parse().ok()).unwrap_or(0);
                }
                ("X-GM-MSGID", v) => m.msgid = v.text().and_then(|t| t.parse().ok()).unwrap_or(0),
                ("INTERNALDATE", v) => m.meta.internal_date = v.text().unwrap_or_default(),
                ("FLAGS", Value::List(flags)) => {
                    m.meta.flags = flags.iter().filter_map(Value::text).collect();
                }
                ("X-GM-LABELS", Value::List(labels)) => {
                    m.labels = labels
                        .iter()
                        .filter_map(Value::text)
                        .map(|l| {
                            if l.starts_with('\\') {
                                l
                            } else {
                                utf7::decode(&l).unwrap_or(l)
                            }
                        })
                        .collect();
                }
                (k, Value::Str(header)) if k.starts_with("BODY[") => {
                    m.meta.message_id = parse_message_id(&header);
                    m.meta.subject = parse_subject(&header);
                }
                _ => {}
            }
        }
        if m.meta.uid == 0 {
            continue;
        }
        if m.msgid == 0 || m.meta.internal_date.is_empty() {
            return Err(format!(
                "no X-GM-MSGID or INTERNALDATE for UID {} (is this a Gmail account?)",
                m.meta.uid
            ));
        }
        if m.meta.uid >= min_uid && max_uid.is_none_or(|max| m.meta.uid <= max) {
            out.push(m);
        }
    }
    Ok(out)
}

/// What a tagged OK carried that callers need.
#[derive(Debug, Default)]
struct Done {
    append_uids: Option<Vec<u32>>,
    copy_uids: Option<Vec<(u32, u32)>>,
}

/// The most UIDs a response code may name: far more than one command copies or appends (a
/// batch is at most 1,000 messages), far fewer than the 4 billion of `1:4294967295`, which
/// would take 16 GiB once listed.
const MAX_CODE_UIDS: u64 = 1_000_000;

/// The UIDs of a UID set, in order; an error (a protocol error's detail) when it names more
/// than [`MAX_CODE_UIDS`].
fn uid_list(set: &[UidSetMember]) -> Result<Vec<u32>, String> {
    let count = set.iter().fold(0u64, |n, m| {
        n.saturating_add(match m {
            UidSetMember::Uid(_) => 1,
            UidSetMember::UidRange(r) => u64::from(r.end() - r.start()) + 1,
        })
    });
    if count > MAX_CODE_UIDS {
        return Err(format!(
            "a response code naming {count} UIDs, more than the {MAX_CODE_UIDS} accepted"
        ));
    }
    let mut uids = Vec::new();
    for m in set {
        match m {
            UidSetMember::Uid(u) => uids.push(*u),
            UidSetMember::UidRange(r) => uids.extend(r.clone()),
        }
    }
    Ok(uids)
}

impl Done {
    /// What a tagged OK's response code says; an error (a protocol error's detail) for a
    /// COPYUID or APPENDUID naming too many UIDs.
    fn from_code(code: Option<&ResponseCode<'_>>) -> Result<Self, String> {
        Ok(match code {
            Some(ResponseCode::CopyUid(_, from, to)) => {
                let (from, to) = (uid_list(from)?, uid_list(to)?);
                // RFC 4315: both sets list the messages in the same order.
                Self {
                    copy_uids: (from.len() == to.len()).then(|| from.into_iter().zip(to).collect()),
                    ..Self::default()
                }
            }
            Some(ResponseCode::AppendUid(_, set)) => Self {
                append_uids: Some(uid_list(set)?),
                ..Self::default()
            },
            _ => Self::default(),
        })
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
fn parse_personal_namespace(rest: &str) -> Option<(String, Option<char>)> {
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

/// For the fuzz targets and their replay tests (`fuzz/`) only, not an API: reads `input` as a
/// server's replies the way the session does: through the stream's guard (up to the line it
/// refuses), then imap-proto's parser as async-imap calls it, one reply after another,
/// stopping where a reply is incomplete or refused. Each reply goes to every interpretation
/// this module makes; lines starting `* NAMESPACE ` go to the raw NAMESPACE reading. Returns
/// how many bytes were left unread (0 when every reply was read).
#[doc(hidden)]
pub fn interpret_replies(input: &[u8]) -> usize {
    let mut guard = crate::stream::ReplyGuard::default();
    let passed: usize = input
        .split_inclusive(|&b| b == b'\n')
        .take_while(|line| guard.inspect(line).is_ok())
        .map(<[u8]>::len)
        .sum();
    let (input, refused) = input.split_at(passed);
    let mut rest = input;
    let mut caps = HashSet::new();
    let mut state = MailboxState::default();
    while let Ok(Ok((next, response))) = parse_reply(rest) {
        add_capabilities(&mut caps, &response);
        let _ = folder_entry(&response);
        note_selected(&mut state, &response);
        note_status(&mut state, &response);
        let _ = fetched_meta(&response);
        let _ = fetched_body(&response);
        if let Response::Done { outcome, .. } | Response::Data { outcome, .. } = &response {
            let _ = reply_text(outcome.code.as_ref(), outcome.information.as_deref());
            let _ = Done::from_code(outcome.code.as_ref());
        }
        // A parser that consumed nothing would return the same reply forever.
        if next.len() >= rest.len() {
            break;
        }
        rest = next;
    }
    for line in input.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if let Some(rest) = line.trim_end().strip_prefix("* NAMESPACE ") {
            let _ = parse_personal_namespace(rest);
        }
    }
    rest.len() + refused.len()
}

/// For the fuzz targets and their replay tests (`fuzz/`) only, not an API: a Gmail listing
/// (`gmail_meta`) whose server sends `input`: the raw exchange under tag `GM1`, then the
/// listing of its replies.
///
/// # Errors
///
/// As `gmail_meta`.
#[doc(hidden)]
pub async fn interpret_gmail_listing(input: &[u8]) -> Result<Vec<GmailMeta>, ImapError> {
    let (server, what) = ("fuzz:993", "UID FETCH (Gmail listing)");
    let mut stream = tokio::io::join(input, tokio::io::sink());
    let command = "UID FETCH 1:* (UID X-GM-MSGID X-GM-LABELS)";
    let timeout = Duration::from_secs(10);
    let replies = crate::raw::exchange(&mut stream, "GM1", command, timeout, server, what).await?;
    gmail_listing(&replies, 1, None).map_err(|detail| ImapError::Protocol {
        server: server.into(),
        command: what.into(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_decoded_for_reports() {
        let header = b"Message-ID: <a@b>\r\nSubject: =?UTF-8?B?w5xiZXJ3ZWlzdW5n?= =?ISO-8859-1?Q?f=FCr_M=E4rz?=\r\n\r\n";
        assert_eq!(
            parse_subject(header).as_deref(),
            Some("Überweisungfür März")
        );
        assert_eq!(
            parse_subject(b"Subject: plain\r\n\r\n").as_deref(),
            Some("plain")
        );
        assert_eq!(parse_subject(b"Message-ID: <x@y>\r\n\r\n"), None);
    }

    #[test]
    fn message_id_is_unfolded_and_trimmed() {
        assert_eq!(
            parse_message_id(b"Message-ID: <a@b>\r\n\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(
            parse_message_id(b"message-id:\r\n <long@x>\r\n\r\n").as_deref(),
            Some("<long@x>")
        );
        assert_eq!(parse_message_id(b"\r\n"), None);
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

    #[test]
    fn a_reply_the_parser_panics_on_is_an_error() {
        // Found by fuzzing: imap-proto 0.17 slices the text after a response code at byte 1.
        let err = parse_reply(b"A1 OK [UIDNEXT 5]\xc3\xa9 done\r\n").unwrap_err();
        assert!(err.contains("char boundary"), "{err}");
        assert!(parse_reply(b"A1 OK [UIDNEXT 5] done\r\n").is_ok_and(|r| r.is_ok()));
    }

    #[test]
    fn uid_sets_naming_billions_of_uids_are_an_error_not_16_gib() {
        // A server's `[COPYUID 1 1:4294967295 ...]` was listed in full (fuzz/regressions/).
        let all = [UidSetMember::UidRange(1..=u32::MAX)];
        let err = uid_list(&all).unwrap_err();
        assert!(err.contains("naming 4294967295 UIDs"), "{err}");
        let code = ResponseCode::CopyUid(1, all.to_vec(), all.to_vec());
        assert!(Done::from_code(Some(&code)).is_err());
        let set = [UidSetMember::Uid(4), UidSetMember::UidRange(7..=9)];
        assert_eq!(uid_list(&set).unwrap(), [4, 7, 8, 9]);
        let code = ResponseCode::AppendUid(1, set.to_vec());
        assert_eq!(
            Done::from_code(Some(&code)).unwrap().append_uids,
            Some(vec![4, 7, 8, 9])
        );
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
