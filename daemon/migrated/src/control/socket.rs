//! The Unix-socket transport: peer credentials checked on accept (root, the daemon's own user
//! and members of the `migrated` group), a versioned hello, then framed requests; `subscribe`
//! turns the connection into a stream of updates.

use std::path::Path;

use migrated_ipc::{ErrorKind, PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};

use super::call;
use crate::msg::{Msg, Update};

/// Who may use the socket.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// The daemon's own uid (a user instance serves its user).
    pub own_uid: u32,
    /// The `migrated` group, if it exists.
    pub group: Option<u32>,
    /// Its members by user name (supplementary membership, from /etc/group: /proc of other
    /// users is invisible under `ProtectProc=invisible`).
    pub members: Vec<String>,
}

impl Access {
    /// The daemon's uid and the `migrated` group from /etc/group.
    pub(crate) fn current() -> Self {
        let own_uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:").map(str::to_owned))
            })
            .and_then(|v| v.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
            .unwrap_or(u32::MAX);
        let mut access = Self {
            own_uid,
            ..Self::default()
        };
        if let Ok(groups) = std::fs::read_to_string("/etc/group") {
            for line in groups.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.first() == Some(&"migrated") {
                    access.group = f.get(2).and_then(|v| v.parse().ok());
                    access.members = f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|x| !x.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                }
            }
        }
        access
    }

    fn allows(&self, uid: u32, gid: u32) -> bool {
        if uid == 0 || uid == self.own_uid {
            return true;
        }
        if self.group.is_some_and(|g| g == gid) {
            return true;
        }
        if self.members.is_empty() {
            return false;
        }
        let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid)).then(|| f[0].to_owned())
            })
        });
        name.is_some_and(|n| self.members.contains(&n))
    }
}

/// Binds the socket (replacing a stale one) with mode 0666: access is decided by peer
/// credentials, so a refused client gets a reason instead of a bare EACCES.
pub(crate) fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use: another migrated is running", path.display());
        }
        std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("cannot remove stale {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Accepts connections until the process ends.
pub(crate) async fn serve(
    listener: UnixListener,
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
    access: Access,
) {
    let access = std::sync::Arc::new(access);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (tx, updates, access) = (tx.clone(), updates.clone(), access.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, tx, updates, access).await {
                tracing::debug!(error = %e, "Control connection ended.");
            }
        });
    }
}

async fn connection(
    mut stream: UnixStream,
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
    access: std::sync::Arc<Access>,
) -> anyhow::Result<()> {
    let cred = stream.peer_cred()?;
    if !access.allows(cred.uid(), cred.gid()) {
        tracing::warn!(
            uid = cred.uid(),
            pid = cred.pid(),
            "Control connection refused."
        );
        let message = format!(
            "permission denied: uid {} is neither root nor the daemon's user nor in the group `migrated`",
            cred.uid()
        );
        write_frame(
            &mut stream,
            &Response::Error {
                kind: ErrorKind::Denied,
                message,
            },
        )
        .await?;
        // Read the client's hello before closing: a Unix socket closed with unread data makes
        // the peer's read fail with ECONNRESET, and the client would never see the reason.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            read_frame::<_, Request>(&mut stream),
        )
        .await;
        return Ok(());
    }
    match read_frame::<_, Request>(&mut stream).await? {
        Request::Hello { version } if version == PROTOCOL_VERSION => {
            write_frame(
                &mut stream,
                &Response::Hello {
                    version: PROTOCOL_VERSION,
                    daemon: env!("CARGO_PKG_VERSION").into(),
                },
            )
            .await?;
        }
        Request::Hello { version } => {
            let message = format!(
                "protocol version {version} is not spoken here (this daemon speaks {PROTOCOL_VERSION}): update migratectl"
            );
            write_frame(
                &mut stream,
                &Response::Error {
                    kind: ErrorKind::Invalid,
                    message,
                },
            )
            .await?;
            return Ok(());
        }
        _ => {
            write_frame(
                &mut stream,
                &Response::Error {
                    kind: ErrorKind::Invalid,
                    message: "say hello first".into(),
                },
            )
            .await?;
            return Ok(());
        }
    }
    loop {
        let request: Request = match read_frame(&mut stream).await {
            Ok(r) => r,
            Err(migrated_ipc::FrameError::Closed) => return Ok(()),
            Err(migrated_ipc::FrameError::Malformed(e)) => {
                let message = format!("malformed request: {e}");
                write_frame(
                    &mut stream,
                    &Response::Error {
                        kind: ErrorKind::Invalid,
                        message,
                    },
                )
                .await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if let Request::Subscribe { job } = request {
            return subscribe(stream, &tx, &updates, job).await;
        }
        let response = super::answer(&tx, request).await;
        match write_frame(&mut stream, &response).await {
            // Nothing was written: the client hears why, and how to ask instead.
            Err(migrated_ipc::FrameError::TooLarge(bytes)) => {
                write_frame(
                    &mut stream,
                    &Response::Error {
                        kind: ErrorKind::Invalid,
                        message: format!(
                            "the reply ({bytes} bytes) exceeds the control socket's frame limit of {} bytes: ask for it in pages (a list with `limit`, as migratectl list does)",
                            migrated_ipc::framing::MAX_FRAME
                        ),
                    },
                )
                .await?;
            }
            written => written?,
        }
    }
}

/// Streams updates (of one job, or all) until the client hangs up. The first frame is the
/// job's current state, so a client never misses where it stands.
async fn subscribe(
    mut stream: UnixStream,
    tx: &mpsc::UnboundedSender<Msg>,
    updates: &broadcast::Sender<Update>,
    job: Option<String>,
) -> anyhow::Result<()> {
    let mut rx = updates.subscribe();
    let id = match job {
        None => None,
        Some(job) => match call(tx, Request::Status { job }).await {
            Response::Job { job } => {
                let id = job.summary.id.clone();
                write_frame(
                    &mut stream,
                    &Response::Update {
                        job: Box::new(job.summary),
                        events: job.events,
                        alerts: Vec::new(),
                    },
                )
                .await?;
                Some(id)
            }
            other => {
                write_frame(&mut stream, &other).await?;
                return Ok(());
            }
        },
    };
    loop {
        match rx.recv().await {
            Ok(update) => {
                if id.as_ref().is_some_and(|i| *i != update.job.id) {
                    continue;
                }
                write_frame(
                    &mut stream,
                    &Response::Update {
                        job: Box::new(update.job),
                        events: update.events,
                        alerts: update.alerts,
                    },
                )
                .await?;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}
