//! Fault-injecting IMAP proxies on loopback.
//!
//! - [`AppendFaultProxy`] forwards a client's session to a real server byte for byte, except the
//!   first `n` APPEND commands, which it swallows (literals included, LITERAL+ and MULTIAPPEND
//!   understood) and answers itself with a tagged reply of the test's choosing, such as
//!   `NO [THROTTLED] ... Suggested Backoff Time: 1000 milliseconds`.
//! - [`FaultProxy`] forwards both directions byte for byte and follows a seeded [`FaultPlan`]:
//!   it cuts connections at chosen bytes (in the middle of a literal, a line, a reply), stalls
//!   them past the client's timeout, injects `* BYE`, or answers a command with a tagged
//!   `NO [UNAVAILABLE]` instead of forwarding it. Faults armed by a command (`FETCH`,
//!   `APPEND`) fire one after the other, each inside its command and answer; roaming faults
//!   fall on a given byte of the whole traffic, whichever connection carries it. Every one that
//!   fired is recorded ([`Fired`]: connection, direction, byte offset, command) so a trial can
//!   check that it really hit the phase it meant to hit, and [`FaultProxy::sessions_ended`]
//!   waits until every server has closed its side, so that a trial checks the servers' final
//!   state, not one that a late byte could still change.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use std::sync::Mutex as StdMutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::corpus::SplitMix64;

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

// ---------------------------------------------------------------------------------------------
// The general fault proxy.

/// The variable that replays a fault trial: its value (decimal, or hex with `0x`) seeds the
/// plan instead of the trial's default.
pub const FAULT_SEED_VAR: &str = "MIGRATED_FAULT_SEED";

/// The seed of a fault trial: `MIGRATED_FAULT_SEED` when set, else `default`. Printed on
/// stderr, so that a failing trial can be replayed.
///
/// # Panics
///
/// When the variable is set to something that is not a number.
pub fn fault_seed(trial: &str, default: u64) -> u64 {
    let seed = match std::env::var(FAULT_SEED_VAR) {
        Ok(v) => parse_seed(&v).unwrap_or_else(|| panic!("{FAULT_SEED_VAR}={v:?} is not a number")),
        Err(_) => default,
    };
    eprintln!("fault trial {trial}: seed {seed:#x} (replay with {FAULT_SEED_VAR}={seed:#x})");
    seed
}

fn parse_seed(v: &str) -> Option<u64> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Server to client: replies, continuations, FETCH data.
    ToClient,
    /// Client to server: commands and their literals (APPEND bodies).
    ToServer,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Closes both directions once `offset` bytes of `direction` have passed, counted from the
    /// first byte of the triggering command (`ToServer`) or of what the server sent after it
    /// (`ToClient`). When the trigger names a command, the fault stays inside it: a command or
    /// answer shorter than `offset` is cut before its last byte. Otherwise the fault roams:
    /// `offset` counts the bytes of `direction` on every connection since the proxy started,
    /// and the connection that carries byte `offset` is cut there: a byte of the proxy's
    /// traffic, in whatever phase carries it. Roaming faults wait for no other fault (each
    /// direction takes its own in the order of their offsets), so one placed below what a run
    /// is sure to send is sure to fire, however the sessions' timing falls.
    Cut { direction: Direction, offset: u64 },
    /// Stops forwarding both ways for `duration` where a cut would close; the connection stays
    /// open (until the client gives up). Then, with `resume`, forwarding goes on: what the
    /// client sent before it gave up still reaches the server, late, as it would reach a server
    /// that was merely slow. Without `resume` the connection closes and what was held is lost.
    Stall {
        direction: Direction,
        offset: u64,
        duration: Duration,
        resume: bool,
    },
    /// Sends `* BYE <text>` to the client at the first reply boundary at or after `offset`
    /// bytes of the server's answer (at the latest before its tagged completion when the
    /// trigger names a command; otherwise on whichever connection gets there first), then
    /// closes both directions.
    Bye { offset: u64, text: String },
    /// Answers the triggering command with `<tag> NO <text>` instead of forwarding it (its
    /// literals are swallowed).
    No { text: String },
}

/// When a fault fires: once a client command matching it is seen (any command, when neither
/// `command` nor `containing` is given).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trigger {
    /// Command name (`APPEND`; `FETCH` matches `UID FETCH` too); empty: any command.
    pub command: String,
    /// Text the command line must contain, case-insensitive (`BODY.PEEK[]`: body fetches, not
    /// listings).
    pub containing: Option<String>,
    /// Matching commands let through first, counted from when the previous fault fired (not
    /// for roaming faults, which only their offset places).
    pub skip: u32,
}

impl Trigger {
    /// Whether the fault must fire inside the triggering command and its answer.
    fn within_command(&self) -> bool {
        !self.command.is_empty() || self.containing.is_some()
    }

    /// Whether a command line (`tag verb ...`) matches.
    fn matches(&self, line: &[u8]) -> bool {
        let text = String::from_utf8_lossy(line).to_ascii_uppercase();
        let mut words = text.split_ascii_whitespace().skip(1);
        let want = self.command.to_ascii_uppercase();
        let name_ok = match (words.next(), words.next()) {
            _ if want.is_empty() => true,
            (Some("UID"), Some(second)) => want == second || want == format!("UID {second}"),
            (Some(first), _) => want == first,
            (None, _) => false,
        };
        name_ok
            && self
                .containing
                .as_ref()
                .is_none_or(|c| text.contains(&c.to_ascii_uppercase()))
    }
}

/// One planned fault: what it does and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub trigger: Trigger,
}

impl Fault {
    fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            trigger: Trigger::default(),
        }
    }

    /// A cut `offset` bytes into the command (`ToServer`) or into the answer (`ToClient`).
    pub fn cut(direction: Direction, offset: u64) -> Self {
        Self::new(FaultKind::Cut { direction, offset })
    }

    /// A stall of `duration` where [`Fault::cut`] would cut; then forwarding resumes.
    pub fn stall(direction: Direction, offset: u64, duration: Duration) -> Self {
        Self::new(FaultKind::Stall {
            direction,
            offset,
            duration,
            resume: true,
        })
    }

    /// A stall of `duration` where [`Fault::cut`] would cut; then the connection closes
    /// without forwarding what it held.
    pub fn stall_then_close(direction: Direction, offset: u64, duration: Duration) -> Self {
        Self::new(FaultKind::Stall {
            direction,
            offset,
            duration,
            resume: false,
        })
    }

    /// `* BYE <text>` about `offset` bytes into the answer, then the connection closes.
    pub fn bye(offset: u64, text: &str) -> Self {
        Self::new(FaultKind::Bye {
            offset,
            text: text.to_owned(),
        })
    }

    /// `<tag> NO <text>` instead of the server's answer.
    pub fn no(text: &str) -> Self {
        Self::new(FaultKind::No {
            text: text.to_owned(),
        })
    }

    /// `<tag> NO [UNAVAILABLE] ...` instead of the server's answer.
    pub fn unavailable() -> Self {
        Self::no("[UNAVAILABLE] Temporary server failure (injected by the test)")
    }

    /// Fires during this command only (`APPEND`, `FETCH`).
    #[must_use]
    pub fn during(mut self, command: &str) -> Self {
        command.clone_into(&mut self.trigger.command);
        self
    }

    /// ... whose line contains this text.
    #[must_use]
    pub fn containing(mut self, text: &str) -> Self {
        self.trigger.containing = Some(text.to_owned());
        self
    }

    /// ... after letting `n` matching commands through.
    #[must_use]
    pub fn skip(mut self, n: u32) -> Self {
        self.trigger.skip = n;
        self
    }

    /// Whether the fault roams: a cut, stall or BYE whose trigger names no command.
    pub fn roams(&self) -> bool {
        !self.trigger.within_command() && !matches!(self.kind, FaultKind::No { .. })
    }

    /// `cut`, `stall`, `bye` or `no`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            FaultKind::Cut { .. } => "cut",
            FaultKind::Stall { .. } => "stall",
            FaultKind::Bye { .. } => "bye",
            FaultKind::No { .. } => "no",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            FaultKind::Cut { direction, offset } => write!(f, "cut {direction:?} at +{offset}")?,
            FaultKind::Stall {
                direction,
                offset,
                duration,
                resume,
            } => write!(
                f,
                "stall {direction:?} at +{offset} for {duration:?}, then {}",
                if *resume { "resume" } else { "close" }
            )?,
            FaultKind::Bye { offset, text } => write!(f, "* BYE {text:?} at +{offset}")?,
            FaultKind::No { text } => write!(f, "NO {text:?}")?,
        }
        let t = &self.trigger;
        if !t.command.is_empty() {
            write!(f, " during {}", t.command)?;
        }
        if let Some(c) = &t.containing {
            write!(f, " containing {c:?}")?;
        }
        if self.roams() {
            write!(f, " of all traffic")
        } else {
            write!(f, " after {} matching", t.skip)
        }
    }
}

/// Faults drawn from a seed: those armed by commands fire in this order, roaming ones in the
/// order of their offsets.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// The seed everything random in the plan came from.
    pub seed: u64,
    /// The faults (of those armed by commands, first to fire first).
    pub faults: Vec<Fault>,
    rng: SplitMix64,
}

impl FaultPlan {
    /// An empty plan whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            faults: Vec::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// The plan's generator, for offsets, skips and choices.
    pub fn rng(&mut self) -> &mut SplitMix64 {
        &mut self.rng
    }

    /// Adds a fault after those already planned.
    pub fn push(&mut self, fault: Fault) -> &mut Self {
        self.faults.push(fault);
        self
    }

    /// Adds `n` cuts during `command` (whose line contains `containing`, if given), each in a
    /// direction picked from `directions` (repeat one to weigh it) at a random offset below
    /// `max_offset`, each after letting 0 to `max_skip` matching commands through.
    pub fn random_cuts(
        &mut self,
        n: usize,
        directions: &[Direction],
        command: &str,
        containing: Option<&str>,
        max_offset: u64,
        max_skip: u32,
    ) -> &mut Self {
        for _ in 0..n {
            let direction = *self.rng.pick(directions);
            let offset = self.rng.below(max_offset);
            let skip = self.rng.below(u64::from(max_skip) + 1) as u32;
            let mut fault = Fault::cut(direction, offset).during(command).skip(skip);
            if let Some(c) = containing {
                fault = fault.containing(c);
            }
            self.faults.push(fault);
        }
        self
    }

    /// How many faults are planned.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Whether nothing is planned.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}

impl std::fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {:#x}, {} faults", self.seed, self.faults.len())?;
        for (i, fault) in self.faults.iter().enumerate() {
            write!(f, "\n  {i:>2}: {fault}")?;
        }
        Ok(())
    }
}

/// A fault that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Its place in the plan.
    pub index: usize,
    /// `cut`, `stall`, `bye` or `no`.
    pub kind: &'static str,
    /// The proxied connection (1 for the first accepted).
    pub connection: u64,
    /// The stream it hit.
    pub direction: Direction,
    /// Bytes of that stream forwarded on this connection before the fault.
    pub offset: u64,
    /// Of those, bytes of the triggering command (`ToServer`) or of its answer (`ToClient`);
    /// for a roaming fault, bytes of its direction on all connections.
    pub into_command: u64,
    /// The triggering command, shortened (`A12 UID FETCH 1:10 (UID BODY.PEEK[])`).
    pub command: String,
    /// The command or answer was shorter than the planned offset: fired at its end.
    pub clamped: bool,
    /// Inside a literal (a FETCH or APPEND body), with part of it not forwarded.
    pub in_literal: bool,
}

impl std::fmt::Display for Fired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} {} on connection {} {:?} at byte {} (+{} into {:?}){}{}",
            self.index,
            self.kind,
            self.connection,
            self.direction,
            self.offset,
            self.into_command,
            self.command,
            if self.clamped { ", at its end" } else { "" },
            if self.in_literal { ", mid-literal" } else { "" },
        )
    }
}

/// A running fault proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    planner: StdMutex<Planner>,
    connections: AtomicU64,
    /// Connections whose server has not closed its side yet.
    live: tokio::sync::watch::Sender<u64>,
    /// What clients sent that reached the server, per connection: a wire log for tests that
    /// read the commands a client chose ([`FaultProxy::client_lines`]).
    sent: StdMutex<std::collections::BTreeMap<u64, Vec<u8>>>,
}

#[derive(Debug)]
struct Planner {
    /// Faults armed by commands, not fired yet; the first is the next to arm.
    queue: VecDeque<(usize, Fault)>,
    /// Matching commands seen since the first of the queue became next.
    seen: u32,
    /// A fault of the queue is armed on a connection: the next waits until it fired.
    busy: bool,
    /// Server to client, then client to server. Roaming faults fire on whichever connection
    /// carries their byte (an idle connection cannot hold them back) and wait for no other
    /// fault.
    traffic: [Traffic; 2],
    fired: Vec<Fired>,
}

/// One direction of the proxy's traffic.
#[derive(Debug, Default)]
struct Traffic {
    /// Bytes forwarded on all connections since the proxy started.
    passed: u64,
    /// Its roaming faults not fired yet, lowest offset first.
    roaming: VecDeque<(usize, Fault)>,
}

impl Planner {
    fn traffic(&mut self, direction: Direction) -> &mut Traffic {
        &mut self.traffic[usize::from(direction == Direction::ToServer)]
    }
}

/// The byte offset of a roaming fault in its direction's traffic.
fn roaming_offset(fault: &Fault) -> u64 {
    match &fault.kind {
        FaultKind::Cut { offset, .. }
        | FaultKind::Stall { offset, .. }
        | FaultKind::Bye { offset, .. } => *offset,
        FaultKind::No { .. } => 0,
    }
}

fn roaming_direction(fault: &Fault) -> Direction {
    match &fault.kind {
        FaultKind::Cut { direction, .. } | FaultKind::Stall { direction, .. } => *direction,
        FaultKind::Bye { .. } | FaultKind::No { .. } => Direction::ToClient,
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The next fault of the queue, when this command line arms it on its connection.
    fn try_arm(&self, line: &[u8]) -> Option<(usize, Fault)> {
        let mut p = lock(&self.planner);
        if p.busy {
            return None;
        }
        let (_, next) = p.queue.front()?;
        if !next.trigger.matches(line) {
            return None;
        }
        if p.seen < next.trigger.skip {
            p.seen += 1;
            return None;
        }
        p.seen = 0;
        p.busy = true;
        p.queue.pop_front()
    }

    /// Counts a unit of `direction` about to be forwarded, up to the first roaming fault that
    /// fires in it, if one does (a fault armed on the connection fires before it: `armed`, the
    /// bytes that fault lets through).
    fn forward(
        &self,
        direction: Direction,
        unit: &[u8],
        starts_reply: bool,
        armed: Option<usize>,
    ) -> Option<Firing> {
        let mut p = lock(&self.planner);
        let t = p.traffic(direction);
        if let Some(at) = armed {
            t.passed += at as u64;
            return None;
        }
        let len = unit.len() as u64;
        let at = t.roaming.front().and_then(|(_, fault)| match &fault.kind {
            FaultKind::Cut { offset, .. } | FaultKind::Stall { offset, .. } => {
                (t.passed + len > *offset).then(|| offset.saturating_sub(t.passed))
            }
            FaultKind::Bye { offset, .. } => (starts_reply && t.passed >= *offset).then_some(0),
            FaultKind::No { .. } => None,
        });
        let Some(at) = at else {
            t.passed += len;
            return None;
        };
        let (index, fault) = t.roaming.pop_front()?;
        let into = t.passed + at;
        t.passed = into;
        Some(Firing {
            index,
            fault,
            command: String::new(),
            into,
            at: at as usize,
            clamped: false,
        })
    }

    /// Keeps bytes a client sent on connection `id` that reached the server.
    fn sent(&self, id: u64, bytes: &[u8]) {
        lock(&self.sent)
            .entry(id)
            .or_default()
            .extend_from_slice(bytes);
    }

    /// Counts the rest of a unit held by a stall, forwarded now.
    fn resumed(&self, direction: Direction, bytes: usize) {
        lock(&self.planner).traffic(direction).passed += bytes as u64;
    }

    /// Records a fault that fired; one of the queue lets the next be armed.
    fn record(&self, fired: Fired, roamed: bool) {
        eprintln!("fault proxy {}: {fired}", self.name);
        let mut p = lock(&self.planner);
        if !roamed {
            p.busy = false;
        }
        p.fired.push(fired);
    }

    /// A connection ended with the fault armed but not fired: it is next again.
    fn release(&self, index: usize, fault: Fault) {
        let mut p = lock(&self.planner);
        p.busy = false;
        p.queue.push_front((index, fault));
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 and forwards every connection to `127.0.0.1:upstream`, following
    /// the plan. `name` (`source`, `destination`) labels what it prints.
    pub async fn start(name: &str, upstream: u16, plan: &FaultPlan) -> Result<Self> {
        let mut planner = Planner {
            queue: VecDeque::new(),
            seen: 0,
            busy: false,
            traffic: Default::default(),
            fired: Vec::new(),
        };
        for (index, fault) in plan.faults.iter().cloned().enumerate() {
            if !fault.roams() {
                planner.queue.push_back((index, fault));
                continue;
            }
            anyhow::ensure!(
                fault.trigger.skip == 0,
                "fault {index} ({fault}) roams: its offset alone places it, it skips nothing"
            );
            planner
                .traffic(roaming_direction(&fault))
                .roaming
                .push_back((index, fault));
        }
        for t in &mut planner.traffic {
            t.roaming
                .make_contiguous()
                .sort_by_key(|(index, fault)| (roaming_offset(fault), *index));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        eprintln!("fault proxy {name} (127.0.0.1:{port} -> {upstream}): {plan}");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            planner: StdMutex::new(planner),
            connections: AtomicU64::new(0),
            live: tokio::sync::watch::Sender::new(0),
            sent: StdMutex::new(std::collections::BTreeMap::new()),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = accepting.clone();
                // Counted before the task runs, so that no session is missed by a wait that
                // starts right after the client connected.
                shared.live.send_modify(|n| *n += 1);
                tokio::spawn(async move { serve(shared, client, upstream).await });
            }
        });
        Ok(Self { port, task, shared })
    }

    /// Waits until every proxied session has ended and its server has closed its side: what
    /// the proxy forwarded (a stalled APPEND's rest, say) has then been handled by the server,
    /// stored or dropped, and nothing can reach a server any more until a client connects
    /// again. Call it once the client has closed its sessions.
    ///
    /// # Errors
    ///
    /// When sessions are still open after `limit`, with how many.
    pub async fn sessions_ended(&self, limit: Duration) -> Result<()> {
        let mut live = self.shared.live.subscribe();
        let ended = tokio::time::timeout(limit, live.wait_for(|n| *n == 0))
            .await
            .is_ok();
        anyhow::ensure!(
            ended,
            "{}: {} sessions still open after {limit:?}",
            self.shared.name,
            *live.borrow()
        );
        Ok(())
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The faults that fired so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        lock(&self.shared.planner).fired.clone()
    }

    /// Faults planned but not fired yet.
    pub fn pending(&self) -> usize {
        let p = lock(&self.shared.planner);
        p.queue.len()
            + usize::from(p.busy)
            + p.traffic.iter().map(|t| t.roaming.len()).sum::<usize>()
    }

    /// Bytes forwarded so far on all connections, to the server and to the client.
    pub fn traffic(&self) -> (u64, u64) {
        let mut p = lock(&self.shared.planner);
        (
            p.traffic(Direction::ToServer).passed,
            p.traffic(Direction::ToClient).passed,
        )
    }

    /// Every line clients sent that reached the server (literals included, as lines), one
    /// connection after the other in the order they were accepted: a wire log of the
    /// commands, to show what a client chose to send.
    pub fn client_lines(&self) -> Vec<String> {
        lock(&self.shared.sent)
            .values()
            .flat_map(|bytes| {
                String::from_utf8_lossy(bytes)
                    .split("\r\n")
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// One line per fired fault, for assertion messages.
    pub fn report(&self) -> String {
        let fired = self.fired();
        let (to_server, to_client) = self.traffic();
        let mut out = format!(
            "{}: {} fired, {} pending, {} connections, {to_server} bytes to the server, \
             {to_client} to the client",
            self.shared.name,
            fired.len(),
            self.pending(),
            self.connections()
        );
        for f in &fired {
            out.push_str(&format!("\n  {f}"));
        }
        out
    }
}

/// State of one proxied connection, shared by its two directions.
#[derive(Debug, Default)]
struct ConnState {
    to_server: u64,
    to_client: u64,
    armed: Option<Armed>,
    /// The client's last command, shortened.
    last_command: String,
    /// A stall fired: neither direction forwards before then.
    stalled_until: Option<Instant>,
}

/// A fault armed on a connection by its triggering command.
#[derive(Debug)]
struct Armed {
    index: usize,
    fault: Fault,
    tag: Vec<u8>,
    command: String,
    /// `to_server` at the command's first byte.
    command_start: u64,
    /// `to_client` when the command was seen: its answer starts there.
    answer_start: u64,
    /// Fire at the latest at the end of the command (`ToServer`) or answer (`ToClient`).
    clamp: bool,
}

/// A fault about to fire in a unit, before its byte `at`.
struct Firing {
    index: usize,
    fault: Fault,
    command: String,
    /// Bytes of the command or answer before it (roaming: of its direction on all
    /// connections since the proxy started).
    into: u64,
    at: usize,
    clamped: bool,
}

impl ConnState {
    /// The armed fault, taken when it fires before byte `at` of the unit.
    fn fire(&mut self, at: usize, clamped: bool, direction: Direction) -> Option<Firing> {
        let a = self.armed.take()?;
        let into = match direction {
            Direction::ToServer => self.to_server - a.command_start,
            Direction::ToClient => self.to_client - a.answer_start,
        };
        Some(Firing {
            index: a.index,
            fault: a.fault,
            command: a.command,
            into: into + at as u64,
            at,
            clamped,
        })
    }
}

/// A stream read as IMAP units: a line (up to and with its LF), or a piece of a literal
/// announced by the line before (`{n}` / `{n+}`).
struct Units<R> {
    reader: BufReader<R>,
    literal_left: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> Units<R> {
    fn new(read: R) -> Self {
        Self {
            reader: BufReader::with_capacity(64 * 1024, read),
            literal_left: 0,
        }
    }

    /// The next unit and whether it is literal data; `None` at the end of the stream.
    async fn next(&mut self) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        if self.literal_left > 0 {
            let mut buf = vec![0u8; self.literal_left.min(64 * 1024)];
            let n = self.reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            self.literal_left -= n;
            return Ok(Some((buf, true)));
        }
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line.ends_with(b"\n") {
            self.literal_left = literal_size(&line).unwrap_or(0);
        }
        Ok(Some((line, false)))
    }
}

/// `tag` and a shortened, password-free text of a command line.
fn describe_command(line: &[u8]) -> (Vec<u8>, String) {
    let text = String::from_utf8_lossy(line).trim_end().to_owned();
    let mut words = text.split(' ');
    let tag = words.next().unwrap_or_default().to_owned();
    let verb = words.next().unwrap_or_default();
    let text = if verb.eq_ignore_ascii_case("LOGIN") || verb.eq_ignore_ascii_case("AUTHENTICATE") {
        format!("{tag} {verb} ...")
    } else if text.chars().count() > 100 {
        format!("{}...", text.chars().take(100).collect::<String>())
    } else {
        text
    };
    (tag.into_bytes(), text)
}

/// How a direction of a connection ended.
enum Ended {
    /// End of stream or an I/O error: the connection closes.
    Closed,
    /// A fault closes the connection.
    Faulted,
}

/// Counts a session as live until it is dropped (counted up by the accepting task).
struct Live<'a>(&'a Shared);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.live.send_modify(|n| *n -= 1);
    }
}

async fn serve(shared: Arc<Shared>, client: TcpStream, upstream: u16) {
    let _live = Live(&shared);
    let id = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let conn = StdMutex::new(ConnState {
        last_command: "(greeting)".to_owned(),
        ..ConnState::default()
    });
    let (client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let client_write = Mutex::new(client_write);
    // Whichever direction ends first ends both.
    let ended = tokio::select! {
        e = to_server(&shared, &conn, id, client_read, &mut server_write, &client_write) => e,
        e = to_client(&shared, &conn, id, &mut server_read, &client_write) => e,
    };
    let _ = ended;
    let armed = lock(&conn).armed.take();
    if let Some(a) = armed {
        shared.release(a.index, a.fault);
    }
    // The client's side closes now. The server gets the end of the stream after what was
    // forwarded, finishes with it (stores an APPEND it got whole, drops one cut short) and
    // closes: only then is the session over (`FaultProxy::sessions_ended`). What it still
    // sends is dropped, as a vanished client would never read it.
    drop(client_write);
    let _ = server_write.shutdown().await;
    let mut rest = vec![0u8; 64 * 1024];
    while matches!(server_read.read(&mut rest).await, Ok(n) if n > 0) {}
}

/// Sleeps while a stall fired by the other direction lasts.
async fn wait_stall(conn: &StdMutex<ConnState>) {
    let until = lock(conn).stalled_until;
    if let Some(until) = until {
        tokio::time::sleep_until(until.into()).await;
    }
}

/// Records a fault that fired in `direction` after `offset` bytes of it on connection `id`.
fn record(
    shared: &Shared,
    conn: &StdMutex<ConnState>,
    id: u64,
    direction: Direction,
    offset: u64,
    f: &Firing,
    in_literal: bool,
) {
    let command = if f.command.is_empty() {
        lock(conn).last_command.clone()
    } else {
        f.command.clone()
    };
    shared.record(
        Fired {
            index: f.index,
            kind: f.fault.name(),
            connection: id,
            direction,
            offset,
            into_command: f.into,
            command,
            clamped: f.clamped,
            in_literal,
        },
        f.fault.roams(),
    );
}

/// Client to server: commands are matched against the plan; `NO` faults answer them, cuts and
/// stalls in this direction fire inside them.
async fn to_server(
    shared: &Shared,
    conn: &StdMutex<ConnState>,
    id: u64,
    client_read: tokio::net::tcp::OwnedReadHalf,
    server_write: &mut tokio::net::tcp::OwnedWriteHalf,
    client_write: &Mutex<tokio::net::tcp::OwnedWriteHalf>,
) -> Ended {
    let mut units = Units::new(client_read);
    let mut at_command_start = true;
    // The tag of a command answered with NO, whose rest (literals) is swallowed.
    let mut swallowing: Option<(Vec<u8>, String)> = None;
    loop {
        let (unit, literal) = match units.next().await {
            Ok(Some(u)) => u,
            Ok(None) | Err(_) => return Ended::Closed,
        };
        let starts_command = !literal && at_command_start;
        let ends_command = !literal && units.literal_left == 0;
        at_command_start = ends_command;
        let len = unit.len() as u64;

        if starts_command {
            let (tag, command) = describe_command(&unit);
            let armed = shared.try_arm(&unit);
            let mut c = lock(conn);
            command.clone_into(&mut c.last_command);
            if let Some((index, fault)) = armed {
                if let FaultKind::No { text } = &fault.kind {
                    let fired = Fired {
                        index,
                        kind: fault.name(),
                        connection: id,
                        direction: Direction::ToServer,
                        offset: c.to_server,
                        into_command: 0,
                        command,
                        clamped: false,
                        in_literal: false,
                    };
                    drop(c);
                    shared.record(fired, false);
                    swallowing = Some((tag, text.clone()));
                    let sync_literal = units.literal_left > 0 && !unit.ends_with(b"+}\r\n");
                    if sync_literal {
                        // The client waits for a continuation: after NO it sends no literal.
                        units.literal_left = 0;
                        at_command_start = true;
                    }
                } else {
                    c.armed = Some(Armed {
                        index,
                        clamp: fault.trigger.within_command(),
                        fault,
                        tag,
                        command,
                        command_start: c.to_server,
                        answer_start: c.to_client,
                    });
                }
            }
        }
        if let Some((tag, text)) = &swallowing {
            if at_command_start {
                let answer = format!("{} NO {text}\r\n", String::from_utf8_lossy(tag));
                wait_stall(conn).await;
                if client_write
                    .lock()
                    .await
                    .write_all(answer.as_bytes())
                    .await
                    .is_err()
                {
                    return Ended::Closed;
                }
                swallowing = None;
            }
            continue;
        }

        // A cut or stall of this direction armed here by this command, or roaming.
        let firing = {
            let mut c = lock(conn);
            let decision = c.armed.as_ref().and_then(|a| match &a.fault.kind {
                FaultKind::Cut {
                    direction: Direction::ToServer,
                    offset,
                }
                | FaultKind::Stall {
                    direction: Direction::ToServer,
                    offset,
                    ..
                } => {
                    let into = c.to_server - a.command_start;
                    if into + len > *offset {
                        Some((offset.saturating_sub(into) as usize, false))
                    } else if ends_command && a.clamp {
                        Some((unit.len() - 1, true))
                    } else {
                        None
                    }
                }
                _ => None,
            });
            decision.and_then(|(at, clamped)| c.fire(at, clamped, Direction::ToServer))
        };
        let roamed = shared.forward(
            Direction::ToServer,
            &unit,
            false,
            firing.as_ref().map(|f| f.at),
        );
        let firing = firing.or(roamed);
        wait_stall(conn).await;
        let Some(f) = firing else {
            if server_write.write_all(&unit).await.is_err() {
                return Ended::Closed;
            }
            shared.sent(id, &unit);
            lock(conn).to_server += len;
            continue;
        };
        if server_write.write_all(&unit[..f.at]).await.is_err() {
            return Ended::Closed;
        }
        shared.sent(id, &unit[..f.at]);
        let offset = {
            let mut c = lock(conn);
            c.to_server += f.at as u64;
            c.to_server
        };
        record(shared, conn, id, Direction::ToServer, offset, &f, literal);
        match f.fault.kind {
            FaultKind::Stall {
                duration, resume, ..
            } => {
                lock(conn).stalled_until = Some(Instant::now() + duration);
                tokio::time::sleep(duration).await;
                if !resume {
                    return Ended::Faulted;
                }
                if server_write.write_all(&unit[f.at..]).await.is_err() {
                    return Ended::Closed;
                }
                shared.sent(id, &unit[f.at..]);
                shared.resumed(Direction::ToServer, unit.len() - f.at);
                lock(conn).to_server += (unit.len() - f.at) as u64;
            }
            _ => return Ended::Faulted,
        }
    }
}

/// Server to client: cuts, stalls and BYEs armed by the client's command fire in its answer.
async fn to_client(
    shared: &Shared,
    conn: &StdMutex<ConnState>,
    id: u64,
    server_read: &mut tokio::net::tcp::OwnedReadHalf,
    client_write: &Mutex<tokio::net::tcp::OwnedWriteHalf>,
) -> Ended {
    let mut units = Units::new(server_read);
    let mut at_reply_start = true;
    loop {
        let (unit, literal) = match units.next().await {
            Ok(Some(u)) => u,
            Ok(None) | Err(_) => return Ended::Closed,
        };
        let starts_reply = !literal && at_reply_start;
        at_reply_start = !literal && units.literal_left == 0;
        let len = unit.len() as u64;

        let firing = {
            let mut c = lock(conn);
            let decision = c.armed.as_ref().and_then(|a| {
                let into = c.to_client - a.answer_start;
                let completion = a.clamp
                    && starts_reply
                    && unit.starts_with(&a.tag)
                    && unit.get(a.tag.len()) == Some(&b' ');
                match &a.fault.kind {
                    FaultKind::Cut {
                        direction: Direction::ToClient,
                        offset,
                    }
                    | FaultKind::Stall {
                        direction: Direction::ToClient,
                        offset,
                        ..
                    } => {
                        if into + len > *offset {
                            Some((offset.saturating_sub(into) as usize, false))
                        } else if completion {
                            Some((unit.len() - 1, true))
                        } else {
                            None
                        }
                    }
                    FaultKind::Bye { offset, .. } if starts_reply => {
                        if into >= *offset {
                            Some((0, false))
                        } else if completion {
                            Some((0, true))
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            });
            decision.and_then(|(at, clamped)| c.fire(at, clamped, Direction::ToClient))
        };
        let at = firing.as_ref().map(|f| f.at);
        let roamed = shared.forward(Direction::ToClient, &unit, starts_reply, at);
        let firing = firing.or(roamed);
        wait_stall(conn).await;
        let mut out = client_write.lock().await;
        let Some(f) = firing else {
            if out.write_all(&unit).await.is_err() {
                return Ended::Closed;
            }
            drop(out);
            lock(conn).to_client += len;
            continue;
        };
        if out.write_all(&unit[..f.at]).await.is_err() {
            return Ended::Closed;
        }
        let offset = {
            let mut c = lock(conn);
            c.to_client += f.at as u64;
            c.to_client
        };
        record(shared, conn, id, Direction::ToClient, offset, &f, literal);
        match &f.fault.kind {
            FaultKind::Stall {
                duration, resume, ..
            } => {
                lock(conn).stalled_until = Some(Instant::now() + *duration);
                // The client's writer is not held while stalled: nothing else reaches the
                // client anyway, as the other direction waits too.
                drop(out);
                tokio::time::sleep(*duration).await;
                if !resume {
                    return Ended::Faulted;
                }
                if client_write
                    .lock()
                    .await
                    .write_all(&unit[f.at..])
                    .await
                    .is_err()
                {
                    return Ended::Closed;
                }
                shared.resumed(Direction::ToClient, unit.len() - f.at);
                lock(conn).to_client += (unit.len() - f.at) as u64;
            }
            FaultKind::Bye { text, .. } => {
                let _ = out.write_all(format!("* BYE {text}\r\n").as_bytes()).await;
                let _ = out.flush().await;
                return Ended::Faulted;
            }
            _ => return Ended::Faulted,
        }
    }
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

    use super::*;

    #[test]
    fn triggers_match_commands_with_or_without_uid() {
        let fetch = Fault::cut(Direction::ToClient, 0)
            .during("FETCH")
            .containing("body.peek[]");
        let t = &fetch.trigger;
        assert!(t.matches(b"A5 UID FETCH 1:10 (UID BODY.PEEK[])\r\n"));
        assert!(t.matches(b"A5 fetch 1 (BODY.PEEK[])\r\n"));
        assert!(!t.matches(b"A5 UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])\r\n"));
        assert!(!t.matches(b"A5 APPEND \"INBOX\" {3+}\r\n"));
        let append = Fault::unavailable().during("APPEND").trigger;
        assert!(append.matches(b"A7 APPEND \"INBOX\" (\\Seen) {3+}\r\n"));
        assert!(Trigger::default().matches(b"A1 NOOP\r\n"));
        assert_eq!(parse_seed("0x1F"), Some(31));
        assert_eq!(parse_seed(" 42 "), Some(42));
        assert_eq!(parse_seed("forty"), None);
        let (tag, text) = describe_command(b"A1 LOGIN alice secret\r\n");
        assert_eq!(
            (tag.as_slice(), text.as_str()),
            (&b"A1"[..], "A1 LOGIN ...")
        );
    }

    /// A toy server: greets, answers `FETCH` with one 10-byte body, anything else with OK,
    /// keeps every byte it received (of all connections) and closes at the client's end.
    async fn toy_server() -> (u16, Arc<StdMutex<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(StdMutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(toy_session(stream, log.clone()));
            }
        });
        (port, received)
    }

    async fn toy_session(stream: TcpStream, log: Arc<StdMutex<Vec<u8>>>) {
        {
            let (read, mut write) = stream.into_split();
            write.write_all(b"* OK toy\r\n").await.unwrap();
            let mut units = Units::new(read);
            let mut tag = None;
            while let Ok(Some((unit, literal))) = units.next().await {
                lock(&log).extend_from_slice(&unit);
                if tag.is_none() {
                    tag = Some(
                        String::from_utf8_lossy(&unit)
                            .split(' ')
                            .next()
                            .unwrap()
                            .to_owned(),
                    );
                }
                if literal || units.literal_left > 0 {
                    continue;
                }
                let t = tag.take().unwrap();
                let answer = if String::from_utf8_lossy(&unit).contains("FETCH") {
                    format!("* 1 FETCH (BODY[] {{10}}\r\n0123456789)\r\n{t} OK done\r\n")
                } else {
                    format!("{t} OK done\r\n")
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Connects through the proxy, sends `commands` one at a time and returns everything the
    /// client received until the connection closed or went quiet.
    async fn client(port: u16, commands: &[&[u8]]) -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // The greeting first, as a real client waits for it.
        for c in std::iter::once(&&b""[..]).chain(commands) {
            let _ = stream.write_all(c).await;
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
            {
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }

    #[tokio::test]
    async fn a_cut_closes_at_the_planned_byte_inside_a_literal() {
        let (upstream, received) = toy_server().await;
        let mut plan = FaultPlan::new(1);
        plan.push(Fault::cut(Direction::ToClient, 27).during("FETCH").skip(1));
        let proxy = FaultProxy::start("toy", upstream, &plan).await.unwrap();
        let got = client(
            proxy.port(),
            &[
                b"a1 NOOP\r\n",
                b"a2 FETCH 1\r\n",
                b"a3 FETCH 1\r\n",
                b"a4 NOOP\r\n",
            ],
        )
        .await;
        let reply = b"* 1 FETCH (BODY[] {10}\r\n0123456789)\r\na2 OK done\r\n";
        let mut expected = b"* OK toy\r\na1 OK done\r\n".to_vec();
        expected.extend_from_slice(reply);
        expected.extend_from_slice(&reply[..27]);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected)
        );
        let fired = proxy.fired();
        assert_eq!(fired.len(), 1, "{}", proxy.report());
        assert_eq!(
            (fired[0].into_command, fired[0].in_literal, fired[0].clamped),
            (27, true, false)
        );
        assert_eq!(fired[0].command, "a3 FETCH 1");
        assert!(!String::from_utf8_lossy(&lock(&received)).contains("a4"));
    }

    #[tokio::test]
    async fn no_swallows_the_command_and_its_literal_and_bye_closes_at_a_reply_boundary() {
        let (upstream, received) = toy_server().await;
        let mut plan = FaultPlan::new(1);
        plan.push(Fault::unavailable().during("APPEND"));
        plan.push(Fault::bye(5, "going away").during("FETCH"));
        let proxy = FaultProxy::start("toy", upstream, &plan).await.unwrap();
        let got = client(
            proxy.port(),
            &[
                b"a1 APPEND x {5+}\r\nhello\r\n",
                b"a2 NOOP\r\n",
                b"a3 FETCH 1\r\n",
            ],
        )
        .await;
        let got = String::from_utf8_lossy(&got);
        assert_eq!(
            got,
            "* OK toy\r\na1 NO [UNAVAILABLE] Temporary server failure (injected by the test)\r\n\
             a2 OK done\r\n* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n* BYE going away\r\n"
        );
        let received = String::from_utf8_lossy(&lock(&received)).into_owned();
        assert_eq!(received, "a2 NOOP\r\na3 FETCH 1\r\n");
        let kinds: Vec<&str> = proxy.fired().iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["no", "bye"]);
    }

    #[tokio::test]
    async fn roaming_cuts_fall_on_bytes_of_all_traffic_in_the_order_of_their_offsets() {
        let (upstream, _) = toy_server().await;
        let mut plan = FaultPlan::new(1);
        // Planned out of order: byte 40 of what the server sent on all connections, byte 20.
        plan.push(Fault::cut(Direction::ToClient, 40));
        plan.push(Fault::cut(Direction::ToClient, 20));
        let proxy = FaultProxy::start("toy", upstream, &plan).await.unwrap();
        // Greeting (10 bytes) and `a1 OK done` (12): byte 20 is in the reply.
        let first = client(proxy.port(), &[b"a1 NOOP\r\n"]).await;
        assert_eq!(String::from_utf8_lossy(&first), "* OK toy\r\na1 OK done");
        // 20 bytes passed; a greeting (30), then byte 40 is the 11th of the FETCH answer.
        let second = client(proxy.port(), &[b"a2 FETCH 1\r\n"]).await;
        assert_eq!(String::from_utf8_lossy(&second), "* OK toy\r\n* 1 FETCH ");
        let fired: Vec<(usize, u64, u64)> = proxy
            .fired()
            .iter()
            .map(|f| (f.index, f.connection, f.into_command))
            .collect();
        assert_eq!(fired, [(1, 1, 20), (0, 2, 40)], "{}", proxy.report());
        assert_eq!(proxy.pending(), 0);
        assert_eq!(proxy.traffic().1, 40);

        let mut skipping = FaultPlan::new(1);
        skipping.push(Fault::cut(Direction::ToServer, 5).skip(1));
        let err = FaultProxy::start("toy", upstream, &skipping)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("roams"), "{err}");
    }

    #[tokio::test]
    async fn sessions_end_once_the_server_has_closed_its_side() {
        let (upstream, received) = toy_server().await;
        let mut plan = FaultPlan::new(1);
        plan.push(Fault::stall(Direction::ToServer, 3, Duration::from_millis(500)).during("NOOP"));
        let proxy = FaultProxy::start("toy", upstream, &plan).await.unwrap();
        proxy.sessions_ended(Duration::ZERO).await.unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        // A session counts from when the proxy accepted it: the greeting shows it did.
        let mut greeting = [0u8; 10];
        stream.read_exact(&mut greeting).await.unwrap();
        stream.write_all(b"a1 NOOP\r\n").await.unwrap();
        let err = proxy
            .sessions_ended(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("1 sessions still open"), "{err}");
        // The client is gone before the stall ends; what the proxy held still reaches the
        // server, which then sees the end of the stream and closes.
        drop(stream);
        proxy.sessions_ended(Duration::from_secs(10)).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&lock(&received)), "a1 NOOP\r\n");
    }
}
