//! An authenticated IMAP session: the commands a migration needs, each with a timeout, each
//! reply checked, each failure in the server's own words.
//!
//! The commands are grouped by what they are for: `connect` (TLS, STARTTLS, login,
//! CAPABILITY, NAMESPACE), `folders` (LIST, SELECT/EXAMINE, STATUS, CREATE, SUBSCRIBE),
//! `fetch` (listings and message bodies) and `append` (APPEND, UID COPY, UID STORE). This
//! module holds the session itself and how a command is sent and its replies read.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{Response, ResponseCode};
use futures_util::FutureExt;

use crate::error::ImapError;
use crate::stream::Stream;

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

mod append;
mod connect;
mod fetch;
mod folders;

pub use append::AppendItem;
use connect::{add_capabilities, parse_personal_namespace};
pub use fetch::{FetchedMeta, GmailMeta};
use fetch::{fetched_body, fetched_meta, gmail_listing};
pub use folders::{FolderEntry, MailboxState};
use folders::{folder_entry, note_selected, note_status};

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

/// An authenticated session.
#[derive(Debug)]
pub struct ImapSession {
    inner: async_imap::Session<Stream>,
    server: String,
    timeout: Duration,
    capabilities: HashSet<String>,
    /// Personal namespace prefix and separator (from NAMESPACE, else from LIST).
    namespace: (String, char),
    /// `ENABLE QRESYNC` was accepted: expunges are reported as VANISHED from then on.
    qresync: bool,
    /// The SHA-256 fingerprint of the server's certificate (TLS and STARTTLS), for
    /// `migratectl test` to show as `tls_fingerprint` takes it.
    certificate: Option<String>,
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

impl ImapSession {
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

    /// The SHA-256 fingerprint of the certificate the server presented, as `tls_fingerprint`
    /// takes it (`sha256:AB:CD:…`); `None` without TLS.
    pub fn certificate(&self) -> Option<&str> {
        self.certificate.as_deref()
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

    /// Logs out politely; errors are ignored since the session ends anyway.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(self.timeout, unpanicked(self.inner.logout())).await;
    }
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
