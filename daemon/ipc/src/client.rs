//! A socket client: used by migratectl and by the tests.

use std::path::Path;

use tokio::net::UnixStream;

use crate::framing::{FrameError, read_frame, write_frame};
use crate::protocol::{ErrorKind, PROTOCOL_VERSION, Request, Response};

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error(
        "cannot reach migrated at {path}: {source} (is the daemon running? `systemctl status migrated`)"
    )]
    Connect {
        /// The socket path.
        path: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Daemon {
        /// What kind.
        kind: ErrorKind,
        /// The daemon's message.
        message: String,
    },
    /// The connection failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An answer that does not fit the request.
    #[error("unexpected reply from the daemon: {0}")]
    Unexpected(String),
}

/// A connection to the daemon's socket, past the hello.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    /// The daemon's version.
    pub daemon_version: String,
}

impl Client {
    /// Connects and says hello.
    ///
    /// # Errors
    ///
    /// [`ClientError`]; a refused peer gets [`ClientError::Daemon`] with kind `Denied`.
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let mut stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| ClientError::Connect {
                    path: path.display().to_string(),
                    source,
                })?;
        write_frame(
            &mut stream,
            &Request::Hello {
                version: PROTOCOL_VERSION,
            },
        )
        .await?;
        match read_frame(&mut stream).await? {
            Response::Hello { daemon, .. } => Ok(Self {
                stream,
                daemon_version: daemon,
            }),
            Response::Error { kind, message } => Err(ClientError::Daemon { kind, message }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends a request and returns the reply; an error reply becomes [`ClientError::Daemon`].
    ///
    /// # Errors
    ///
    /// [`ClientError`].
    pub async fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        write_frame(&mut self.stream, request).await?;
        match read_frame(&mut self.stream).await? {
            Response::Error { kind, message } => Err(ClientError::Daemon { kind, message }),
            r => Ok(r),
        }
    }

    /// Turns the connection into a stream of updates (one job, or all).
    ///
    /// # Errors
    ///
    /// [`ClientError`].
    pub async fn subscribe(mut self, job: Option<String>) -> Result<Subscription, ClientError> {
        write_frame(&mut self.stream, &Request::Subscribe { job }).await?;
        Ok(Subscription {
            stream: self.stream,
        })
    }
}

/// Updates from the daemon.
#[derive(Debug)]
pub struct Subscription {
    stream: UnixStream,
}

impl Subscription {
    /// The next update.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the daemon goes away or answers with an error.
    pub async fn next(&mut self) -> Result<Response, ClientError> {
        match read_frame(&mut self.stream).await? {
            Response::Error { kind, message } => Err(ClientError::Daemon { kind, message }),
            r => Ok(r),
        }
    }
}
