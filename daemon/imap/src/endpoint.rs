//! Where and how to connect: host, port, TLS mode, certificate checks, authentication.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A password or OAuth token. Its `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS (port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS before login (port 143); refused if the server
    /// does not offer it.
    StartTls,
    /// No encryption at all. Only when the job says so explicitly.
    Plain,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertCheck {
    /// Against the system's trusted roots.
    System,
    /// Against the CA certificates in this PEM file (and only those).
    CaFile(PathBuf),
    /// Not at all. Anyone on the path can read the password: for lab use only.
    DangerAcceptAnyCertificate,
}

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `LOGIN user password`.
    Login,
    /// `AUTHENTICATE PLAIN` (SASL PLAIN).
    Plain,
    /// `AUTHENTICATE XOAUTH2` with an OAuth 2 access token as the secret.
    XOAuth2,
}

/// One IMAP account on one server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
    /// Certificate checks.
    pub cert_check: CertCheck,
    /// Login method.
    pub auth: AuthMethod,
    /// Login name.
    pub user: String,
    /// Password or token.
    pub secret: Secret,
    /// Limit on every network call (connect, each reply, each write).
    pub timeout: Duration,
}

impl Endpoint {
    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
