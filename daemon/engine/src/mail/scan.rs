//! The Scanning folders phase: both sides' folders listed and mapped, then, at the start of
//! every pass, each folder checked against the ledger (UIDVALIDITY changes, APPENDs an earlier
//! run left in flight), listed, planned, and cut into batches. Flag changes of messages
//! already copied are carried here too: they need no upload.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use migrated_core::mapping::{Mapping, map_folders};
use migrated_core::planner::{LedgerEntry, PlanOptions, batches, plan_folder};
use migrated_core::{
    Flags, FolderInfo, FolderPlan, FolderStatus, MailDestination, MailDestinationSession,
    MessageMeta, SourceConnector, SourceSession,
};
use migrated_store::{FolderKey, FolderState, ItemRecord};

use super::recovery::{adopt_unrecorded, rekey_destination, rekey_source, resolve_intents};
use super::{Batch, Engine, FolderWork, Mapped};
use crate::error::EngineError;
use crate::events::Event;
use crate::ledger::store_call;
use migrated_core::{FolderReport, ItemRow, Phase};

/// What a pass copies: every folder's work, the batches to upload, and the batches placed on
/// the destination from another folder's upload once every upload is done.
pub(super) struct PassPlan {
    pub(super) work: Vec<FolderWork>,
    pub(super) queue: VecDeque<Batch>,
    pub(super) deferred: VecDeque<Batch>,
}

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Lists both sides' folders and maps them. Returns the mapping and the destination's
    /// folders as listed (the folder phase creates what is missing).
    pub(super) async fn scan(
        &self,
        src: &mut C::Session,
        dst: &mut D::Session,
    ) -> Result<(Mapping, Vec<FolderInfo>), EngineError> {
        let sh = &self.shared;
        (sh.observer)(Event::Phase(Phase::ScanningFolders));
        let source_folders = src.list_folders().await?;
        let source_ns = src.namespace();
        let dest_folders = dst.list_folders().await?;
        let dest_ns = dst.namespace();
        let mapping = map_folders(
            &source_folders,
            &source_ns,
            &dest_folders,
            &dest_ns,
            &sh.config.rules,
        );
        for (name, reason) in &mapping.skipped {
            tracing::info!(job = %sh.config.job_id, folder = %name, reason = %reason, "Folder skipped.");
        }
        Ok((mapping, dest_folders))
    }

    /// Plans one pass: every folder that can be copied is scanned and its messages cut into
    /// batches. Announces the pass's totals.
    pub(super) async fn plan_pass(
        &self,
        src: &mut C::Session,
        dst: &mut D::Session,
        mapped: &Mapped,
        first_pass: bool,
    ) -> Result<PassPlan, EngineError> {
        let sh = &self.shared;
        let (plans, folder_errors) = (&mapped.mapping.folders, &mapped.folder_errors);
        let mut work = Vec::new();
        let mut queue = VecDeque::new();
        let mut deferred_queue = VecDeque::new();
        // Content keys some folder of this pass uploads: other folders copy them after.
        let mut uploading: HashSet<String> = HashSet::new();
        let (mut total_items, mut total_bytes) = (0u64, 0u64);
        for plan in plans {
            if plan.container_only || folder_errors.contains_key(&plan.source) {
                continue;
            }
            self.stopping()?;
            let prepared = self.prepare_folder(src, dst, plan, first_pass).await?;
            let (folder_work, messages) = prepared;
            let index = work.len();
            total_items += messages.len() as u64;
            total_bytes += messages.iter().map(|m| u64::from(m.size)).sum::<u64>();
            let (upload, later) = self
                .split_placed(folder_work.key, messages, &mut uploading)
                .await?;
            let mut pending = 0;
            for (list, deferred, q) in [
                (upload, false, &mut queue),
                (later, true, &mut deferred_queue),
            ] {
                // The listing is moved into its batches, not copied: a folder of 100,000
                // messages is held once.
                let sizes: Vec<usize> =
                    batches(&list, sh.config.batch_messages, sh.config.batch_bytes)
                        .iter()
                        .map(|b| b.len())
                        .collect();
                let mut list = list.into_iter();
                for n in sizes {
                    pending += 1;
                    q.push_back(Batch {
                        folder: index,
                        messages: list.by_ref().take(n).collect(),
                        deferred,
                    });
                }
            }
            folder_work.pending.store(pending, Ordering::Relaxed);
            work.push(folder_work);
        }
        (sh.observer)(Event::Totals {
            items: total_items,
            bytes: total_bytes,
            folders: plans.len() as u64,
        });
        Ok(PassPlan {
            work,
            queue,
            deferred: deferred_queue,
        })
    }

    /// Scans one folder: UIDVALIDITY checks, interrupted APPENDs, listing, plan, flag updates.
    /// Returns the folder's work and the messages to copy.
    async fn prepare_folder(
        &self,
        src: &mut C::Session,
        dst: &mut D::Session,
        plan: &FolderPlan,
        first_pass: bool,
    ) -> Result<(FolderWork, Vec<MessageMeta>), EngineError> {
        let sh = &self.shared;
        let store = &sh.store;
        let key = store.folder_key(sh.job, &plan.source);
        // The two sides at once: each waits a round trip.
        let (status, dest_status) =
            tokio::join!(src.open_folder(&plan.source), dst.status(&plan.destination));
        let (status, dest_status) = (status?, dest_status?);
        let (state, mut items) = self
            .checked_state(src, dst, plan, key, &status, dest_status.uid_validity)
            .await?;

        let s2 = store.clone();
        let intents = store_call(move || s2.intents(key)).await?;
        let had_intents = !intents.is_empty();
        if had_intents {
            resolve_intents(dst, &plan.destination, store, key, intents, &mut items).await?;
        }

        let checkpoint = FolderState {
            source_uid_next: status.uid_next,
            highest_modseq: status.highest_modseq,
            size_limit: Some(sh.config.max_message_size),
            ..state.clone()
        };
        let mut report = FolderReport {
            source: plan.source.clone(),
            destination: plan.destination.clone(),
            messages: u64::from(status.messages),
            already_copied: items.len() as u64,
            ..FolderReport::default()
        };
        let work = |report| FolderWork {
            plan: plan.clone(),
            key,
            source_uid_validity: status.uid_validity,
            checkpoint: checkpoint.clone(),
            pending: AtomicU64::new(0),
            incomplete: std::sync::atomic::AtomicBool::new(false),
            report: Mutex::new(report),
        };

        // A higher size limit than the last complete pass's: messages it excluded lie below
        // the checkpoint, unchanged, and only a whole listing finds them.
        let limit_raised = state
            .size_limit
            .is_none_or(|l| sh.config.max_message_size > l);
        // Nothing changed since the last complete pass: UIDNEXT and HIGHESTMODSEQ say so.
        let unchanged = !had_intents
            && !limit_raised
            && state.source_uid_next != 0
            && state.source_uid_next == status.uid_next
            && state.highest_modseq.is_some()
            && state.highest_modseq == status.highest_modseq;
        if unchanged {
            report.bytes = 0;
            return Ok((work(report), Vec::new()));
        }
        // With CONDSTORE, only what changed since the last complete pass (new messages have a
        // higher MODSEQ too); otherwise everything, and flags are compared one by one.
        let changed_since = if had_intents || limit_raised || state.source_uid_next == 0 {
            None
        } else {
            state.highest_modseq
        };
        let listing = src.list_messages(1, changed_since).await?;
        if changed_since.is_none() {
            report.bytes = listing.iter().map(|m| u64::from(m.size)).sum();
        }
        let ledger: HashMap<u32, LedgerEntry> = items
            .iter()
            .map(|(uid, r)| {
                (
                    *uid,
                    LedgerEntry {
                        dest_uid: r.dest_uid,
                        flags_fingerprint: r.flags_fingerprint,
                    },
                )
            })
            .collect();
        let options = PlanOptions {
            max_message_size: sh.config.max_message_size,
            sync_flags: sh.config.sync_flags,
        };
        let mut steps = plan_folder(&listing, &ledger, &options);
        // The destination holds messages above the last one recorded (UIDNEXT says so): the
        // store may have lost the record of a batch it had synced.
        let recorded_max = items.values().map(|r| r.dest_uid).max().unwrap_or(0);
        // (Without UIDPLUS no destination UID is recorded and nothing tells copies apart.)
        if !items.is_empty()
            && items.values().all(|r| r.dest_uid != 0)
            && !steps.copy.is_empty()
            && dest_status.uid_next > recorded_max.saturating_add(1)
        {
            let found = adopt_unrecorded(
                src,
                dst,
                &plan.destination,
                store,
                key,
                &mut items,
                &mut steps.copy,
            )
            .await?;
            report.already_copied += found as u64;
        }

        if first_pass {
            self.report_excluded(plan, &steps.excluded);
            report.excluded = steps.excluded.len() as u64;
        }

        if !steps.flag_updates.is_empty() {
            report.flags_updated = self
                .carry_flags(dst, plan, key, &items, &steps.flag_updates)
                .await?;
        }
        Ok((work(report), steps.copy))
    }

    /// The folder's ledger and its state, checked against both sides' UIDVALIDITY: a change
    /// voids the checkpoint and re-keys the ledger by content. The state is stored when it
    /// changed.
    async fn checked_state(
        &self,
        src: &mut C::Session,
        dst: &mut D::Session,
        plan: &FolderPlan,
        key: FolderKey,
        status: &FolderStatus,
        destination_uid_validity: u32,
    ) -> Result<(FolderState, HashMap<u32, ItemRecord>), EngineError> {
        let sh = &self.shared;
        let store = &sh.store;
        let (s2, job) = (store.clone(), sh.job);
        let previous = store_call(move || s2.folder_state(job, key)).await?;
        let s2 = store.clone();
        let mut items = store_call(move || s2.items(key)).await?;

        let mut checkpoint_valid = previous.is_some();
        if let Some(prev) = &previous {
            if prev.source_uid_validity != status.uid_validity {
                checkpoint_valid = false;
                if !items.is_empty() {
                    rekey_source(src, store, key, &mut items).await?;
                }
            }
            if prev.destination_uid_validity != destination_uid_validity {
                checkpoint_valid = false;
                if !items.is_empty() {
                    rekey_destination(dst, &plan.destination, store, key, &mut items).await?;
                }
            }
        }
        let mut state = FolderState {
            source: plan.source.clone(),
            destination: plan.destination.clone(),
            source_uid_validity: status.uid_validity,
            destination_uid_validity,
            source_uid_next: 0,
            highest_modseq: None,
            sync_token: None,
            size_limit: None,
        };
        if checkpoint_valid && let Some(prev) = &previous {
            state.source_uid_next = prev.source_uid_next;
            state.highest_modseq = prev.highest_modseq;
            state.size_limit = prev.size_limit;
        }
        if previous.as_ref() != Some(&state) {
            let (s2, st) = (store.clone(), state.clone());
            store_call(move || s2.put_folder_state(job, key, &st)).await?;
        }
        Ok((state, items))
    }

    /// Tells the observer and the summary about messages over the size limit.
    fn report_excluded(&self, plan: &FolderPlan, excluded: &[MessageMeta]) {
        let sh = &self.shared;
        for m in excluded {
            let item = ItemRow {
                folder: plan.source.clone(),
                uid: m.uid,
                size: u64::from(m.size),
                message_id: m.message_id.clone(),
                subject: m.subject.clone(),
                reason: format!(
                    "larger than the limit of {} bytes",
                    sh.config.max_message_size
                ),
            };
            tracing::warn!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, size = item.size, "Message excluded: too large.");
            (sh.observer)(Event::Excluded(item.clone()));
            if let Ok(mut v) = sh.excluded.lock() {
                v.push(item);
            }
        }
    }

    /// Carries flag changes of copied messages to their copies (one STORE per set of flags)
    /// and records the new fingerprints. Returns how many messages were updated.
    async fn carry_flags(
        &self,
        dst: &mut D::Session,
        plan: &FolderPlan,
        key: FolderKey,
        items: &HashMap<u32, ItemRecord>,
        flag_updates: &[(u32, u32, Flags)],
    ) -> Result<u64, EngineError> {
        let sh = &self.shared;
        let mut by_flags: HashMap<&Flags, Vec<(u32, u32, u64)>> = HashMap::new();
        for (src_uid, dest_uid, flags) in flag_updates {
            if *dest_uid != 0 {
                by_flags
                    .entry(flags)
                    .or_default()
                    .push((*src_uid, *dest_uid, flags.fingerprint()));
            }
        }
        dst.open_folder(&plan.destination, false).await?;
        let mut updated = Vec::new();
        for (flags, group) in &by_flags {
            let uids: Vec<u32> = group.iter().map(|g| g.1).collect();
            dst.store_flags(&uids, flags).await?;
            for (src_uid, dest_uid, fp) in group {
                if let Some(rec) = items.get(src_uid) {
                    updated.push((
                        *src_uid,
                        ItemRecord {
                            dest_uid: *dest_uid,
                            flags_fingerprint: *fp,
                            ..*rec
                        },
                    ));
                }
            }
        }
        let count = updated.len() as u64;
        let s2 = sh.store.clone();
        store_call(move || s2.commit(key, None, &updated)).await?;
        tracing::info!(job = %sh.config.job_id, folder = %plan.source, count, "Flag changes carried.");
        Ok(count)
    }
}
