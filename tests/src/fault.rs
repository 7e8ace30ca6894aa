//! A fault-injecting IMAP proxy on loopback: it forwards a client's session to a real server
//! byte for byte, except the first `n` APPEND commands, which it swallows (literals included,
//! LITERAL+ and MULTIAPPEND understood) and answers itself with a tagged reply of the test's
//! choosing, such as `NO [THROTTLED] ... Suggested Backoff Time: 1000 milliseconds`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct AppendFaultProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    /// APPEND commands answered by the proxy so far.
    pub refused: Arc<AtomicUsize>,
}

impl Drop for AppendFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AppendFaultProxy {
    /// Listens on 127.0.0.1 and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16, refuse_first: usize, reply: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let refused = Arc::new(AtomicUsize::new(0));
        let (counter, reply) = (refused.clone(), reply.to_owned());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counter, reply) = (counter.clone(), reply.clone());
                tokio::spawn(async move {
                    let _ = session(client, upstream, counter, refuse_first, &reply).await;
                });
            }
        });
        Ok(Self {
            port,
            task,
            refused,
        })
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `{123}` or `{123+}` at the end of a line: the literal's size.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|b| *b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

async fn session(
    client: TcpStream,
    upstream: u16,
    counter: Arc<AtomicUsize>,
    refuse_first: usize,
    reply: &str,
) -> Result<()> {
    let server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let client_write = Arc::new(Mutex::new(client_write));
    let to_client = client_write.clone();
    let downstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if to_client.lock().await.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut reader = BufReader::new(client_read);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        let mut words = line.split(|b| *b == b' ');
        let tag = words.next().unwrap_or_default().to_vec();
        let is_append = words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"));
        // Claimed atomically: several connections APPEND at once.
        let refuse = is_append
            && counter
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < refuse_first).then_some(n + 1)
                })
                .is_ok();
        // Forward (or swallow) the command with its literals.
        let mut current = line.clone();
        loop {
            if !refuse {
                server_write.write_all(&current).await?;
            }
            let Some(size) = literal_size(&current) else {
                break;
            };
            let mut literal = vec![0u8; size];
            reader.read_exact(&mut literal).await?;
            if !refuse {
                server_write.write_all(&literal).await?;
            }
            current.clear();
            reader.read_until(b'\n', &mut current).await?;
        }
        if refuse {
            let answer = format!("{} {reply}\r\n", String::from_utf8_lossy(&tag));
            client_write
                .lock()
                .await
                .write_all(answer.as_bytes())
                .await?;
        }
    }
    downstream.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn literal_sizes_are_read_from_line_ends() {
        assert_eq!(
            super::literal_size(b"A1 APPEND \"INBOX\" (\\Seen) {123+}\r\n"),
            Some(123)
        );
        assert_eq!(super::literal_size(b" (\\Seen) \"d\" {7}\r\n"), Some(7));
        assert_eq!(super::literal_size(b"A1 NOOP\r\n"), None);
    }
}
