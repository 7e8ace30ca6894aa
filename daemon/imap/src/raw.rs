//! Exchanges async-imap cannot parse, done on the raw stream between two commands: the reply
//! is read whole (literals included) and parsed here. Gmail's X-GM-LABELS may carry literals,
//! which imap-proto refuses, and a reply it refuses ends async-imap's stream.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::ImapError;

/// The longest line (outside literals) accepted.
const MAX_LINE: usize = 1 << 20;
/// The largest literal accepted in a reply read this way (labels and headers, not bodies).
const MAX_LITERAL: usize = 16 << 20;
/// The deepest nesting of lists accepted. Gmail's listing nests two deep; the parser recurses
/// once per level, and a line of a million `(` would exhaust a tokio worker's stack and abort
/// the daemon.
const MAX_DEPTH: usize = 32;

/// Sends `tag command` on `stream` (the session's connection; any byte stream in tests) and
/// returns every untagged reply (`* ...`, literals inlined as they came: `{n}\r\n` and the
/// bytes) until the tagged completion, which must be OK.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    tag: &str,
    command: &str,
    timeout: Duration,
    server: &str,
    what: &str,
) -> Result<Vec<Vec<u8>>, ImapError> {
    let closed = |reply: String| ImapError::Closed {
        server: server.into(),
        command: what.into(),
        reply,
    };
    let timed_out = || ImapError::Timeout {
        server: server.into(),
        what: what.into(),
        after: timeout,
    };
    tokio::time::timeout(timeout, async {
        stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        stream.flush().await
    })
    .await
    .map_err(|_| timed_out())?
    .map_err(|e| closed(e.to_string()))?;

    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut replies = Vec::new();
    loop {
        let mut reply = Vec::new();
        // One reply: a line, and after each literal announcement, its bytes and the rest.
        loop {
            let mut line = Vec::new();
            let n = tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| closed(e.to_string()))?;
            if n == 0 {
                return Err(closed("connection closed".into()));
            }
            if line.len() > MAX_LINE {
                return Err(protocol(server, what, "a reply line longer than 1 MiB"));
            }
            reply.extend_from_slice(&line);
            match literal_length(&line) {
                Some(len) if len > MAX_LITERAL => {
                    return Err(protocol(server, what, "a literal larger than 16 MiB"));
                }
                Some(len) => {
                    let start = reply.len();
                    reply.resize(start + len, 0);
                    tokio::time::timeout(timeout, reader.read_exact(&mut reply[start..]))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(|e| closed(e.to_string()))?;
                }
                None => break,
            }
        }
        if let Some(rest) = reply
            .strip_prefix(tag.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
        {
            let text = String::from_utf8_lossy(rest).trim_end().to_owned();
            let word = text.split(' ').next().unwrap_or("").to_ascii_uppercase();
            // Bytes the server sent after the completion would be lost with the buffer.
            if !reader.buffer().is_empty() {
                return Err(protocol(
                    server,
                    what,
                    "data after the command's completion",
                ));
            }
            return match word.as_str() {
                "OK" => Ok(replies),
                "NO" => Err(ImapError::No {
                    server: server.into(),
                    command: what.into(),
                    reply: text[2..].trim().to_owned(),
                }),
                _ => Err(ImapError::Bad {
                    server: server.into(),
                    command: what.into(),
                    reply: text,
                }),
            };
        }
        if reply.len() >= 6 && reply[..6].eq_ignore_ascii_case(b"* BYE ") {
            return Err(closed(
                String::from_utf8_lossy(&reply).trim_end().to_owned(),
            ));
        }
        replies.push(reply);
    }
}

fn protocol(server: &str, what: &str, detail: &str) -> ImapError {
    ImapError::Protocol {
        server: server.into(),
        command: what.into(),
        detail: detail.into(),
    }
}

/// `n` when a line ends with a literal announcement `{n}` or `{n+}`.
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let open = line.strip_suffix(b"}")?;
    let open = open.strip_suffix(b"+").unwrap_or(open);
    let start = open.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&open[start + 1..]).ok()?.parse().ok()
}

/// One value of an IMAP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom or number (`FLAGS`, `\Seen`, `1234`, `BODY[HEADER.FIELDS (MESSAGE-ID)]`).
    Atom(String),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Value>),
    /// `NIL`.
    Nil,
}

impl Value {
    /// The text of an atom or string.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Atom(a) => Some(a.clone()),
            Self::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }
}

/// Parses the values of a reply from `input` on (after `* 12 FETCH `, say).
///
/// # Errors
///
/// What was malformed, with the position.
pub fn parse_values(input: &[u8]) -> Result<Vec<Value>, String> {
    let mut p = Parser {
        input,
        pos: 0,
        depth: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_spaces();
        if p.pos >= p.input.len() || p.input[p.pos..].starts_with(b"\r\n") {
            return Ok(out);
        }
        out.push(p.value()?);
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Lists open around the value being read.
    depth: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.input.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    fn fail(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.input.get(self.pos) {
            None => Err(self.fail("a value expected")),
            Some(b'(') => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.fail("lists nested deeper than 32"));
                }
                self.pos += 1;
                self.depth += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.input.get(self.pos) {
                        Some(b')') => {
                            self.pos += 1;
                            self.depth -= 1;
                            return Ok(Value::List(items));
                        }
                        None => return Err(self.fail("an unclosed list")),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(b'"') => {
                self.pos += 1;
                let mut s = Vec::new();
                loop {
                    match self.input.get(self.pos) {
                        None | Some(b'\r' | b'\n') => return Err(self.fail("an unclosed string")),
                        Some(b'\\') => {
                            let c = *self
                                .input
                                .get(self.pos + 1)
                                .ok_or_else(|| self.fail("an unclosed string"))?;
                            s.push(c);
                            self.pos += 2;
                        }
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Value::Str(s));
                        }
                        Some(&c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some(b'{') => {
                let close = self.input[self.pos..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or_else(|| self.fail("a malformed literal"))?;
                let digits = &self.input[self.pos + 1..self.pos + close];
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                let len: usize = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| self.fail("a malformed literal length"))?;
                let start = self.pos + close + 1;
                let start = if self.input[start..].starts_with(b"\r\n") {
                    start + 2
                } else {
                    return Err(self.fail("a literal without CRLF"));
                };
                let end = start
                    .checked_add(len)
                    .filter(|&e| e <= self.input.len())
                    .ok_or_else(|| self.fail("a literal longer than the reply"))?;
                self.pos = end;
                Ok(Value::Str(self.input[start..end].to_vec()))
            }
            Some(_) => {
                let start = self.pos;
                let mut depth = 0usize;
                while let Some(&c) = self.input.get(self.pos) {
                    match c {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' if depth == 0 => break,
                        b'\r' | b'\n' => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let atom = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
                if atom.is_empty() {
                    return Err(self.fail("an empty atom"));
                }
                if atom.eq_ignore_ascii_case("NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(atom))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_in_every_form_are_read() {
        let reply = b"(UID 7 X-GM-MSGID 1278455344230334865 X-GM-LABELS (\"\\\\Inbox\" \\Important Work/Projects \"My Label\" {5}\r\nab\"c)) FLAGS (\\Seen) BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nX: y)\r\n";
        let v = parse_values(reply).unwrap();
        let Value::List(items) = &v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(items[0], Value::Atom("UID".into()));
        assert_eq!(items[3], Value::Atom("1278455344230334865".into()));
        let Value::List(labels) = &items[5] else {
            panic!("{items:?}")
        };
        let texts: Vec<String> = labels.iter().map(|l| l.text().unwrap()).collect();
        assert_eq!(
            texts,
            [
                "\\Inbox",
                "\\Important",
                "Work/Projects",
                "My Label",
                "ab\"c)"
            ]
        );
        assert_eq!(
            items[8],
            Value::Atom("BODY[HEADER.FIELDS (MESSAGE-ID)]".into())
        );
        assert_eq!(items[9], Value::Str(b"X: y".to_vec()));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"(UID 1"[..],
            b"\"open",
            b"{99}\r\nshort",
            b"{x}\r\n",
            b"{3}abc",
        ] {
            assert!(
                parse_values(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn deeply_nested_lists_are_an_error_not_a_stack_overflow() {
        let mut deep = vec![b'('; 1 << 20];
        let err = parse_values(&deep).unwrap_err();
        assert!(err.contains("nested deeper than 32"), "{err}");
        deep.truncate(MAX_DEPTH);
        deep.extend(vec![b')'; MAX_DEPTH]);
        assert!(parse_values(&deep).is_ok());
    }

    #[test]
    fn literal_announcements_are_found() {
        assert_eq!(literal_length(b"* 1 FETCH (X {12}\r\n"), Some(12));
        assert_eq!(literal_length(b"* 1 FETCH (X {12+}\r\n"), Some(12));
        assert_eq!(literal_length(b"* 1 FETCH (X)\r\n"), None);
    }
}
