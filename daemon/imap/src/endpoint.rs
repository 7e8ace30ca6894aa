//! Where and how to connect: host, port, TLS mode, certificate checks, authentication.

use std::path::PathBuf;
use std::time::Duration;

pub use migrated_core::Secret;

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
