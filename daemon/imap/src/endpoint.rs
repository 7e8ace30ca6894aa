//! Where and how to connect: host, port, TLS mode, certificate checks, authentication.

use std::path::PathBuf;
use std::time::Duration;

pub use migrated_core::{AuthMethod, Secret, Security};

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

impl TryFrom<migrated_core::Account> for Endpoint {
    type Error = String;

    /// The endpoint of an account as the daemon sends it to a source plugin.
    fn try_from(a: migrated_core::Account) -> Result<Self, String> {
        let security = Security::parse(&a.security).ok_or_else(|| {
            format!(
                "security {:?} is not one of \"tls\", \"starttls\", \"plain\"",
                a.security
            )
        })?;
        let auth = AuthMethod::parse(&a.auth).ok_or_else(|| {
            format!(
                "auth {:?} is not one of \"login\", \"plain\", \"xoauth2\"",
                a.auth
            )
        })?;
        let cert_check = match (a.ca_file, a.danger_accept_invalid_certs) {
            (_, true) => CertCheck::DangerAcceptAnyCertificate,
            (Some(ca), false) => CertCheck::CaFile(ca.into()),
            (None, false) => CertCheck::System,
        };
        Ok(Self {
            host: a.host,
            port: a.port,
            security,
            cert_check,
            auth,
            user: a.user,
            secret: a.secret,
            timeout: Duration::from_secs(a.timeout_secs.max(1)),
        })
    }
}

impl From<&Endpoint> for migrated_core::Account {
    /// The account a source plugin receives for this endpoint (no settings).
    fn from(e: &Endpoint) -> Self {
        Self {
            host: e.host.clone(),
            port: e.port,
            security: e.security.as_str().to_owned(),
            ca_file: match &e.cert_check {
                CertCheck::CaFile(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            },
            danger_accept_invalid_certs: e.cert_check == CertCheck::DangerAcceptAnyCertificate,
            auth: e.auth.as_str().to_owned(),
            user: e.user.clone(),
            secret: e.secret.clone(),
            timeout_secs: e.timeout.as_secs(),
            path: None,
            settings: Default::default(),
        }
    }
}
