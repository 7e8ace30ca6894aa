//! Reading messages: the listing FETCH (UID, size, flags, date, Message-ID, MODSEQ), the
//! Gmail listing with X-GM-MSGID and X-GM-LABELS, whole bodies and parts of a body.

use std::collections::HashMap;

use async_imap::imap_proto::{AttributeValue, Response};

use super::ImapSession;
use crate::error::ImapError;
use crate::{uidset, utf7};

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
    /// The Date header, seconds since the epoch, when it could be read.
    pub date: Option<i64>,
}

impl From<FetchedMeta> for migrated_core::MessageMeta {
    /// The message in core's words: flags normalized, no content key.
    fn from(m: FetchedMeta) -> Self {
        Self {
            uid: m.uid,
            size: m.size,
            flags: migrated_core::Flags::new(&m.flags),
            internal_date: m.internal_date,
            message_id: m.message_id,
            subject: m.subject,
            modseq: m.modseq,
            content_key: None,
            date: m.date,
        }
    }
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

/// The Subject of a header block, RFC 2047 words decoded (mail-parser), for reports.
fn parse_subject(header: &[u8]) -> Option<String> {
    mail_parser::MessageParser::new()
        .parse_headers(header)
        .and_then(|m| m.subject().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
}

/// The Date header of a header block (mail-parser), seconds since the epoch.
fn parse_date(header: &[u8]) -> Option<i64> {
    mail_parser::MessageParser::new()
        .parse_headers(header)
        .and_then(|m| m.date().map(|d| d.to_timestamp()))
}

/// Unfolds and trims the Message-ID from a `HEADER.FIELDS (MESSAGE-ID)` section.
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
            "UID FETCH {}:{upper} (UID RFC822.SIZE FLAGS INTERNALDATE{modseq} BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT DATE)]){changed}",
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
}

/// A listing FETCH reply as metadata: `None` for other replies and for an unsolicited FETCH
/// without UID (a flag change by another client); an error for a message without a date.
pub(super) fn fetched_meta(r: &Response<'_>) -> Result<Option<FetchedMeta>, String> {
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
        date: None,
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
                m.date = parse_date(d);
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
pub(super) fn fetched_body(r: &Response<'_>) -> Option<(u32, Vec<u8>)> {
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
pub(super) fn gmail_listing(
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
                date: None,
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
                    m.meta.date = parse_date(&header);
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
}
