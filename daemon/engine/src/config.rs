//! Settings of one copy run.

use std::sync::Arc;
use std::time::Duration;

use crate::memory::MemoryBudget;
use crate::throttle::RateLimit;

/// Message bytes a job holds at once unless the daemon shares its own budget.
pub const DEFAULT_MEMORY_BUDGET: u64 = 16 * 1024 * 1024;

use migrated_core::{FlagConflicts, MappingRules, MessageFilter, SourceAfterCopy};

/// How a run copies. Every field has a default an administrator would expect.
#[derive(Debug, Clone)]
pub struct CopyConfig {
    /// Stable id of the job: the ledger is kept per job.
    pub job_id: String,
    /// Folder include/exclude/rename rules.
    pub rules: MappingRules,
    /// Messages larger than this are excluded and reported (default 35 MB, as Exchange Online).
    pub max_message_size: u64,
    /// Connections per side, each copying its own batches (default 4).
    pub connections: usize,
    /// Messages per batch: one FETCH and one MULTIAPPEND (default 50).
    pub batch_messages: usize,
    /// Bytes per batch (default 8 MiB).
    pub batch_bytes: u64,
    /// Message bytes in memory at once over every connection: the job's own budget (16 MiB by
    /// default) or one the daemon shares between its jobs. A message larger than the budget
    /// travels alone.
    pub memory: Arc<MemoryBudget>,
    /// Messages larger than this are fetched in parts of this size and held once, instead of
    /// in one FETCH reply that exists several times on its way (default 1 MiB).
    pub part_bytes: u32,
    /// Carry flag changes of already copied messages (delta runs).
    pub sync_flags: bool,
    /// Which messages are copied (`[filter]`); the others are excluded and reported.
    pub filter: MessageFilter,
    /// Expunge on the destination the copies of messages the source expunged (off by
    /// default): only copies this job made, found through the ledger.
    pub sync_deletions: bool,
    /// Whose flags a copy gets when they changed on both sides since the last sync (default
    /// union).
    pub flag_conflicts: FlagConflicts,
    /// Move mode: what becomes of a source message once its copy is verified on the
    /// destination (default: kept).
    pub source_after_copy: SourceAfterCopy,
    /// Copy subscriptions.
    pub subscriptions: bool,
    /// Passes over the mailbox when temporary errors leave work undone (default 5).
    pub max_passes: u32,
    /// First backoff after a temporary error; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Bandwidth limits the copy obeys: the job's own and the daemon's global one.
    pub bandwidth: Vec<Arc<RateLimit>>,
    /// Bytes the destination account may receive per UTC day; `None`: the allowance the
    /// destination reports (Gmail: 500 MB), or no limit.
    pub daily_upload: Option<u64>,
}

impl CopyConfig {
    /// Defaults for a job.
    pub fn new(job_id: impl Into<String>) -> Self {
        Self {
            job_id: job_id.into(),
            rules: MappingRules::default(),
            max_message_size: 35 * 1024 * 1024,
            connections: 4,
            batch_messages: 50,
            batch_bytes: 8 * 1024 * 1024,
            memory: Arc::new(MemoryBudget::new(DEFAULT_MEMORY_BUDGET)),
            part_bytes: 1024 * 1024,
            sync_flags: true,
            filter: MessageFilter::default(),
            sync_deletions: false,
            flag_conflicts: FlagConflicts::Union,
            source_after_copy: SourceAfterCopy::Keep,
            subscriptions: true,
            max_passes: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            bandwidth: Vec::new(),
            daily_upload: None,
        }
    }
}
