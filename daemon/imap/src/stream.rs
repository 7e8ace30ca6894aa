//! The byte stream under async-imap: plain TCP or TLS, one type so sessions are not generic,
//! with a guard on what the server sends: a line may not grow past [`MAX_LINE`] bytes nor a
//! literal past [`MAX_LITERAL`]. async-imap keeps a reply in memory until it is complete and
//! would grow its buffer to 512 MiB for a server that never ends a line; the guard ends the
//! connection with a clear error long before. Nor may a reply nest lists deeper than
//! [`MAX_NESTING`]: imap-proto parses nested lists by recursion.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The longest line a server may send outside literals: a SEARCH reply naming two million
/// UIDs fits.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;
/// The largest literal a server may announce. Messages above 1 MiB are fetched in parts, so
/// a real literal is far smaller.
pub(crate) const MAX_LITERAL: u64 = 256 * 1024 * 1024;
/// The deepest nesting of lists a reply may have. imap-proto parses a BODYSTRUCTURE's lists by
/// recursion, about 3 KB of stack a level in a release build: a reply of a thousand `(` would
/// exhaust a tokio worker's 2 MiB stack and abort the daemon (seen while fuzzing the replies). Our
/// commands' replies nest a few levels.
pub(crate) const MAX_NESTING: usize = 100;

/// What the guard says when it ends a connection: the server's reply broke a limit. Carried in
/// the `io::Error` async-imap hands back, so the session can tell it from a closed connection.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Plain or TLS connection.
#[derive(Debug)]
pub(crate) struct Stream {
    transport: Transport,
    guard: ReplyGuard,
}

#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Self {
            transport: Transport::Plain(tcp),
            guard: ReplyGuard::default(),
        }
    }

    pub(crate) fn tls(tls: TlsStream<TcpStream>) -> Self {
        Self {
            transport: Transport::Tls(Box::new(tls)),
            guard: ReplyGuard::default(),
        }
    }
}

/// Follows the server's bytes: the length of the current line, the literal being read and the
/// lists open in the current reply.
#[derive(Debug, Default)]
pub(crate) struct ReplyGuard {
    /// Bytes of the current line so far (outside literals).
    line: usize,
    /// Bytes of an announced literal still to come.
    literal: u64,
    /// The last bytes of the line, to find a literal's announcement `{N}` at its end.
    tail: Vec<u8>,
    /// Set once a limit was passed: every later read fails too.
    broken: Option<String>,
    /// Lists open in the current reply, outside quoted strings and literals.
    depth: usize,
    /// Inside a quoted string of the current line; after its backslash.
    quoted: bool,
    escaped: bool,
}

const TAIL: usize = 24;

impl ReplyGuard {
    /// Follows the next bytes the server sent; an error (the connection is to be closed) when
    /// they pass a limit.
    pub(crate) fn inspect(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        while !bytes.is_empty() {
            if self.literal > 0 {
                let n = usize::try_from(self.literal)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.literal -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let end = bytes.iter().position(|b| *b == b'\n');
            let (segment, rest) = match end {
                Some(i) => (&bytes[..=i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            self.line += segment.len();
            if self.line > MAX_LINE {
                return self.fail(format!(
                    "the server sent a line longer than {} MiB without ending it; a broken or \
                     hostile server (the connection is closed)",
                    MAX_LINE >> 20
                ));
            }
            self.nest(segment)?;
            let keep = segment.len().min(TAIL);
            self.tail
                .extend_from_slice(&segment[segment.len() - keep..]);
            if self.tail.len() > TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
            if end.is_some() {
                if let Some(n) = literal_announced(&self.tail) {
                    if n > MAX_LITERAL {
                        return self.fail(format!(
                            "the server announced a literal of {n} bytes, more than the \
                             {} MiB allowed; a broken or hostile server (the connection is \
                             closed)",
                            MAX_LITERAL >> 20
                        ));
                    }
                    self.literal = n;
                } else {
                    // The reply ends with its line; after a literal it goes on.
                    self.depth = 0;
                }
                (self.quoted, self.escaped) = (false, false);
                self.line = 0;
                self.tail.clear();
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Follows the nesting of lists through `segment`, a line or part of one outside literals.
    fn nest(&mut self, segment: &[u8]) -> Result<(), String> {
        for &b in segment {
            if self.quoted {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.quoted = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.quoted = true,
                b'(' if self.depth == MAX_NESTING => {
                    return self.fail(format!(
                        "the server sent a reply nesting lists deeper than {MAX_NESTING}; a \
                         broken or hostile server (the connection is closed)"
                    ));
                }
                b'(' => self.depth += 1,
                b')' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    fn fail(&mut self, why: String) -> Result<(), String> {
        self.broken = Some(why.clone());
        Err(why)
    }
}

/// `N` if a line ends with a literal's announcement `{N}` (or `{N+}`) before its CRLF.
fn literal_announced(tail: &[u8]) -> Option<u64> {
    let line = tail.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(why) = &this.guard.broken {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Refused(why.clone()),
            )));
        }
        let before = buf.filled().len();
        let polled = match &mut this.transport {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled
            && let Err(why) = this.guard.inspect(&buf.filled()[before..])
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Refused(why),
            )));
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_skipped_and_lines_counted_across_reads() {
        let mut g = ReplyGuard::default();
        // A literal announcement split over two reads, then a literal holding newlines and
        // braces that must not be taken for another announcement.
        g.inspect(b"* 1 FETCH (UID 5 BODY[] {2").unwrap();
        g.inspect(b"5}\r\nab{99999999999}\r\n1234567").unwrap();
        assert_eq!(g.literal, 1);
        g.inspect(b"8)\r\n").unwrap();
        assert_eq!((g.literal, g.line), (0, 0));
        g.inspect(b"* 2 FETCH (BODY[] {3+}\r\nxyz)\r\nA1 OK done\r\n")
            .unwrap();
        assert_eq!((g.literal, g.line), (0, 0));
        assert_eq!(literal_announced(b"x {12}\r\n"), Some(12));
        assert_eq!(literal_announced(b"x {}\r\n"), None);
        assert_eq!(literal_announced(b"x {1a}\r\n"), None);
        assert_eq!(literal_announced(b"x 12}\r\n"), None);
    }

    #[test]
    fn lists_nested_too_deep_are_refused_but_not_in_strings_or_literals() {
        let mut g = ReplyGuard::default();
        let deep = vec![b'('; MAX_NESTING];
        // Parentheses in a literal and in quoted strings do not count; a literal continues
        // the reply, and the reply's depth ends with its line.
        g.inspect(b"* 1 FETCH (UID 1 BODY[] {300}\r\n").unwrap();
        g.inspect(&[b'('; 300]).unwrap();
        g.inspect(b" X \"((\\\"((\" Y \"\\\\\"").unwrap();
        g.inspect(&deep[1..]).unwrap();
        assert_eq!(g.depth, MAX_NESTING);
        g.inspect(b"\r\n").unwrap();
        g.inspect(&deep).unwrap();
        g.inspect(b"\r\n").unwrap();
        let e = g.inspect(&[b'('; MAX_NESTING + 1]).unwrap_err();
        assert!(e.contains("nesting lists deeper than 100"), "{e}");
        assert!(g.inspect(b"\r\n").is_err(), "and stays refused");
    }

    #[test]
    fn an_endless_line_and_a_huge_literal_are_refused() {
        let mut g = ReplyGuard::default();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut refused = None;
        for i in 0..20 {
            if let Err(e) = g.inspect(&chunk) {
                refused = Some((i, e));
                break;
            }
        }
        let (i, e) = refused.expect("an endless line is refused");
        assert_eq!(i, 16, "refused right after 16 MiB");
        assert!(e.contains("line longer than 16 MiB"), "{e}");
        assert!(g.inspect(b"\r\n").is_err(), "and stays refused");

        let mut g = ReplyGuard::default();
        let e = g
            .inspect(b"* 1 FETCH (BODY[] {999999999999}\r\n")
            .unwrap_err();
        assert!(e.contains("literal of 999999999999 bytes"), "{e}");
    }
}
