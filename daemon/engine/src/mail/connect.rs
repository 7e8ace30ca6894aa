//! The Connecting and Authenticating phases: the run's first connection to each side, told to
//! the observer step by step, and the reconnections of later passes. A temporary failure to
//! connect is retried after a growing pause (the run's [`Backoff`], up to `max_passes` tries per
//! connection); a refused login is not.

use std::sync::Arc;

use migrated_core::{ErrorKind, MailDestination, SourceConnector};

use super::Engine;
use crate::error::EngineError;
use crate::events::{Connection, Event, Side};
use crate::retry::Backoff;
use migrated_core::Phase;

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Connects to the source, then the destination, reporting each side's connection state.
    pub(super) async fn connect(&self) -> Result<(C::Session, D::Session), EngineError> {
        let sh = &self.shared;
        let emit = |e| (sh.observer)(e);
        emit(Event::Phase(Phase::Connecting));
        let observer = sh.observer.clone();
        emit(Event::Connection(Side::Source, Connection::Connecting));
        let src = self
            .connect_source(Some(Box::new(move || {
                observer(Event::Phase(Phase::Authenticating));
                observer(Event::Connection(Side::Source, Connection::Authenticating));
            })))
            .await;
        let src = match src {
            Ok(s) => s,
            Err(e) => {
                emit(Event::Connection(
                    Side::Source,
                    Connection::Failed(e.to_string()),
                ));
                return Err(e);
            }
        };
        emit(Event::Connection(Side::Source, Connection::Authenticated));
        emit(Event::Connection(Side::Destination, Connection::Connecting));
        let observer = sh.observer.clone();
        let dst = self
            .connect_destination(Some(Box::new(move || {
                observer(Event::Connection(
                    Side::Destination,
                    Connection::Authenticating,
                ));
            })))
            .await;
        let dst = match dst {
            Ok(d) => d,
            Err(e) => {
                emit(Event::Connection(
                    Side::Destination,
                    Connection::Failed(e.to_string()),
                ));
                return Err(e);
            }
        };
        emit(Event::Connection(
            Side::Destination,
            Connection::Authenticated,
        ));
        Ok((src, dst))
    }

    /// Connects to the source with retries; `on_login` (first connection of a run) reports the
    /// Authenticating phase.
    pub(super) async fn connect_source(
        &self,
        on_login: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Result<C::Session, EngineError> {
        let sh = &self.shared;
        let mut pauses = Backoff::new(&sh.config);
        let mut attempt = 1;
        let on_login = on_login.map(Arc::new);
        loop {
            let connected = match &on_login {
                Some(f) => {
                    let f = f.clone();
                    sh.source.connect_observed(Box::new(move || f())).await
                }
                None => sh.source.connect().await,
            };
            match connected {
                Ok(s) => return Ok(s),
                Err(e) if e.kind == ErrorKind::Temporary && attempt < sh.config.max_passes => {
                    let delay = pauses.next_delay();
                    (sh.observer)(Event::Retrying {
                        error: e.to_string(),
                        delay,
                    });
                    self.backoff(delay).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Connects to the destination with retries; `on_login` reports when login begins.
    pub(super) async fn connect_destination(
        &self,
        on_login: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Result<D::Session, EngineError> {
        let sh = &self.shared;
        let mut pauses = Backoff::new(&sh.config);
        let mut attempt = 1;
        let on_login = on_login.map(Arc::new);
        loop {
            let connected = match &on_login {
                Some(f) => {
                    let f = f.clone();
                    sh.destination.connect_observed(Box::new(move || f())).await
                }
                None => sh.destination.connect().await,
            };
            match connected {
                Ok(s) => return Ok(s),
                Err(e) if e.is_temporary() && attempt < sh.config.max_passes => {
                    let delay = pauses.next_delay();
                    (sh.observer)(Event::Retrying {
                        error: format!("destination: {e}"),
                        delay,
                    });
                    self.backoff(delay).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
