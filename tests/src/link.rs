//! A wide-area link on loopback: a TCP proxy that delays every byte by half a round trip in
//! each direction and lets at most a given rate through, as a link between two data centres
//! does. The benchmark puts one in front of each server (`scripts/bench --only wan`).
//!
//! Model: per direction, each chunk read from one side leaves after the chunks before it have
//! been serialized at the link's rate (`len / rate`) and arrives half a round trip later.
//! Bytes in flight are bounded by twice the bandwidth-delay product (at least 256 KiB), so a
//! sender that outruns the link is held back by TCP as it would be on a real one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// The shape of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// Round-trip time.
    pub rtt: Duration,
    /// Bits per second in each direction; `None` for no limit.
    pub bits_per_second: Option<u64>,
}

impl LinkModel {
    /// `rtt_ms` milliseconds round trip, `mbit` Mbit/s each way.
    pub fn new(rtt_ms: u64, mbit: Option<u64>) -> Self {
        Self {
            rtt: Duration::from_millis(rtt_ms),
            bits_per_second: mbit.map(|m| m * 1_000_000),
        }
    }

    fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    /// How long `bytes` take to be put on the link.
    fn serialization(&self, bytes: usize) -> Duration {
        match self.bits_per_second {
            Some(bps) => Duration::from_secs_f64(bytes as f64 * 8.0 / bps as f64),
            None => Duration::ZERO,
        }
    }

    /// The most bytes held in the link at once, per direction.
    fn window(&self) -> usize {
        let bdp = match self.bits_per_second {
            Some(bps) => (bps as f64 / 8.0 * self.rtt.as_secs_f64()) as usize,
            None => 4 << 20,
        };
        (bdp * 2).max(256 << 10)
    }
}

/// A running link to `127.0.0.1:upstream`; stops when dropped.
#[derive(Debug)]
pub struct LinkProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkProxy {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start(upstream: u16, model: LinkModel) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        carry(client, server, model).await;
                    }
                });
            }
        });
        Ok(Self { port, task })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

async fn carry(client: TcpStream, server: TcpStream, model: LinkModel) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(direction(cr, sw, model));
    let down = tokio::spawn(direction(sr, cw, model));
    let _ = tokio::join!(up, down);
}

/// One direction: a reader that stamps each chunk with its arrival time, a writer that
/// delivers it then.
async fn direction(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    model: LinkModel,
) {
    let window = model.window();
    let room = Arc::new(Semaphore::new(window));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader_room = room.clone();
    let reader = tokio::spawn(async move {
        let mut free_at = Instant::now();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Ok(permit) = reader_room.acquire_many(n.min(window) as u32).await else {
                break;
            };
            permit.forget();
            let now = Instant::now();
            free_at = free_at.max(now) + model.serialization(n);
            if tx
                .send((free_at + model.one_way(), buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    });
    while let Some((at, bytes)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
        room.add_permits(bytes.len().min(window));
    }
    let _ = to.shutdown().await;
    reader.abort();
}
