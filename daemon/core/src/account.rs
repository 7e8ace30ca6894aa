//! The account a source connects to, as the daemon resolved it from a job (the secret read
//! from its credential file). It crosses the plugin ABI as it is, so its serde shape is frozen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// The account a source plugin connects to. The daemon zeroes the request buffer after the call; the plugin's copy is
/// a [`Secret`], zeroed when dropped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `tls`, `starttls` or `plain`.
    pub security: String,
    /// PEM file of the CA to trust instead of the system's roots.
    pub ca_file: Option<String>,
    /// Accept any certificate (lab use only).
    pub danger_accept_invalid_certs: bool,
    /// ABI 1.4: trust exactly the certificate with this SHA-256 fingerprint (`sha256:AB:…`).
    /// A plugin built before does not know it; the daemon sends it only when the job sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    /// `login`, `plain` or `xoauth2`.
    pub auth: String,
    /// Login name: the mailbox's user (with `admin_user`, the user the administrator logs in
    /// on behalf of).
    pub user: String,
    /// Password or token; with `admin_user`, the administrator's password.
    pub secret: Secret,
    /// ABI 1.3: log in as this administrator on behalf of `user`. A plugin built for 1.2 does
    /// not know it; the daemon never sends it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_user: Option<String>,
    /// ABI 1.3: with `admin_user`, `sasl-plain` (AUTHENTICATE PLAIN, authzid = `user`) or
    /// `separator` (the login name `user<admin_separator>admin_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_login: Option<String>,
    /// ABI 1.3: the separator of `separator` (`*` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_separator: Option<String>,
    /// Limit on every network call, in seconds.
    pub timeout_secs: u64,
    /// A path on the server where discovery starts (CardDAV: the address-book home or a
    /// principal; default `/`, which tries `/.well-known/carddav`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The job's `[source.settings]`, already checked against the plugin's declared settings.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
}

/// A setting's value as the job gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Int(i64),
    /// Text.
    Text(String),
}
