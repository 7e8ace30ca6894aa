//! HTTPS with the same certificate checks as IMAP: the TLS layer of the client's ureq agent is
//! rustls configured by `migrated_imap::tls` (the system's roots, a `ca_file` that may name a
//! self-signed certificate itself, a pinned `tls_fingerprint`, or none at all), so a CardDAV
//! endpoint trusts and refuses exactly what an IMAP endpoint with the same settings does, in
//! the same words.
//!
//! ureq's own rustls connector builds its configuration from ureq's `TlsConfig`, which has no
//! place for a custom verifier: this connector takes ureq's TCP transport and wraps it in a
//! rustls client connection of ours. It also remembers what the last handshake showed (the
//! certificate's fingerprint, the verifier's refusal) for `migratectl test` and for the words of
//! a failed request.

use std::fmt;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use migrated_imap::tls as imap_tls;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// What the last TLS handshake showed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handshake {
    /// The server's certificate fingerprint, as `tls_fingerprint` takes it.
    pub fingerprint: Option<String>,
    /// The verifier's refusal in plain words, if it refused the certificate.
    pub refusal: Option<String>,
}

/// Wraps ureq's TCP transport in TLS for `https` URLs.
pub(crate) struct PolicyTls {
    /// `None` for an `http://` endpoint, which never asks for TLS.
    config: Option<Arc<ClientConfig>>,
    seen: Arc<Mutex<Handshake>>,
}

impl PolicyTls {
    pub(crate) fn new(config: Option<Arc<ClientConfig>>, seen: Arc<Mutex<Handshake>>) -> Self {
        Self { config, seen }
    }

    fn record(&self, h: Handshake) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = h;
        }
    }
}

impl fmt::Debug for PolicyTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyTls").finish_non_exhaustive()
    }
}

impl<In: Transport> Connector<In> for PolicyTls {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let Some(config) = &self.config else {
            return Err(Error::Tls(
                "an http:// endpoint was sent to an https:// URL",
            ));
        };
        let host = details.uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| Error::Tls("the host is not a valid TLS server name"))?;
        let mut conn = ClientConnection::new(config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        if let Err(e) = conn.complete_io(&mut sock) {
            let refusal = imap_tls::refusal(&e);
            self.record(Handshake {
                fingerprint: refusal.as_ref().map(|r| r.fingerprint.clone()),
                refusal: refusal.map(|r| r.text),
            });
            return Err(Error::Io(e));
        }
        self.record(Handshake {
            fingerprint: imap_tls::peer_fingerprint(&conn),
            refusal: None,
        });
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// An HTTPS connection.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
