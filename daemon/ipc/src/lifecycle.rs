//! Rows of a migration's lifecycle beyond one run: a mailbox's pre-flight
//! ([`crate::Request::Preflight`]) and a named endpoint ([`crate::Request::EndpointList`]).

use serde::{Deserialize, Serialize};

/// A named endpoint as `endpoint list|show` give it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRow {
    /// The endpoint, its secrets erased.
    pub endpoint: migrated_core::NamedEndpoint,
    /// Whether the administrator's secret is set.
    pub admin_secret: bool,
    /// Names of the jobs that use it.
    pub jobs: Vec<String>,
    /// Jobs running on it now.
    pub running: usize,
}

/// One mailbox's pre-flight: both logins and what a copy would find.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightRow {
    /// The mailbox: the job name (`batch/address` for a batch row).
    pub mailbox: String,
    /// `user@host:port` of the source.
    pub source: String,
    /// `user@host:port` of the destination.
    pub destination: String,
    /// The source login worked.
    pub source_ok: bool,
    /// The destination login worked.
    pub destination_ok: bool,
    /// Folders on the source that hold messages (selectable).
    pub folders: u64,
    /// Messages on the source (what a first copy would copy, excluded ones aside).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The largest message, in bytes.
    pub largest: u64,
    /// Messages over the size limit (`max_message_size`): a copy would exclude them.
    pub excluded: u64,
    /// Their bytes.
    pub excluded_bytes: u64,
    /// The size limit they are over.
    pub size_limit: u64,
    /// Folders the job's `[folders]` include and exclude patterns leave out (not counted
    /// above).
    #[serde(default)]
    pub folders_left_out: u64,
    /// What stands in the way, in the words Exchange administrators know where one fits
    /// (and the server's reply).
    pub problems: Vec<String>,
}
