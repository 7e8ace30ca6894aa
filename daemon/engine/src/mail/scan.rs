//! The Scanning folders phase: both sides' folders listed and mapped, then, at the start of
//! every pass, each folder checked against the ledger (UIDVALIDITY changes, APPENDs an earlier
//! run left in flight), listed, planned, and cut into batches. Flag changes of messages
//! already copied are carried here too: they need no upload.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use migrated_core::mapping::{Mapping, map_folders};
use migrated_core::planner::{
    Exclusion, LedgerEntry, PlanOptions, batches, merge_flags, plan_folder,
};
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
use migrated_core::{FolderReport, ItemRow, Phase, Removal, RemovedRow};

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
        // The last complete pass's UIDVALIDITY and HIGHESTMODSEQ: with QRESYNC the source is
        // opened with them and names what it expunged since.
        let (s2, job) = (store.clone(), sh.job);
        let since = store_call(move || s2.folder_state(job, key))
            .await?
            .filter(|p| p.source_uid_next != 0)
            .and_then(|p| p.highest_modseq.map(|m| (p.source_uid_validity, m)));
        let open = async {
            match since {
                Some((validity, modseq)) => {
                    src.open_folder_since(&plan.source, validity, modseq).await
                }
                None => src.open_folder(&plan.source).await.map(|s| (s, None)),
            }
        };
        // The two sides at once: each waits a round trip.
        let (opened, dest_status) = tokio::join!(open, dst.status(&plan.destination));
        let ((status, vanished), dest_status) = (opened?, dest_status?);
        let (state, mut items) = self
            .checked_state(src, dst, plan, key, &status, dest_status.uid_validity)
            .await?;

        let s2 = store.clone();
        let intents = store_call(move || s2.intents(key)).await?;
        // Refusals of another destination folder, or of a renumbered folder, no longer count.
        let s2 = store.clone();
        let refusals: HashMap<u32, migrated_store::Refusal> = store_call(move || s2.refusals(key))
            .await?
            .into_iter()
            .filter(|(_, r)| {
                r.applies(
                    status.uid_validity,
                    &plan.destination,
                    dest_status.uid_validity,
                )
            })
            .collect();
        let had_intents = !intents.is_empty();
        if had_intents {
            resolve_intents(dst, &plan.destination, store, key, intents, &mut items).await?;
        }

        let checkpoint = FolderState {
            source_uid_next: status.uid_next,
            highest_modseq: status.highest_modseq,
            size_limit: Some(sh.config.max_message_size),
            filter: sh.config.filter.fingerprint(),
            ..state.clone()
        };
        let mut report = FolderReport {
            source: plan.source.clone(),
            destination: plan.destination.clone(),
            messages: u64::from(status.messages),
            already_copied: items.len() as u64,
            renamed: plan.renamed.clone(),
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
            refusals: refusals.clone(),
        };

        // A higher size limit than the last complete pass's: messages it excluded lie below
        // the checkpoint, unchanged, and only a whole listing finds them.
        let limit_raised = state
            .size_limit
            .is_none_or(|l| sh.config.max_message_size > l);
        // Another filter than the last complete pass's: what it lets in may lie below the
        // checkpoint too.
        let filter_changed = state.filter != sh.config.filter.fingerprint();
        // Deletions mirrored without QRESYNC: only a whole listing shows what is gone.
        let compare_uids = sh.config.sync_deletions && vanished.is_none() && !items.is_empty();
        let relist = limit_raised || filter_changed || compare_uids;
        // Nothing changed since the last complete pass: UIDNEXT and HIGHESTMODSEQ say so.
        let unchanged = !had_intents
            && !relist
            && state.source_uid_next != 0
            && state.source_uid_next == status.uid_next
            && state.highest_modseq.is_some()
            && state.highest_modseq == status.highest_modseq;
        if sh.config.sync_deletions
            && let Some(gone) = &vanished
        {
            let gone: Vec<u32> = gone
                .iter()
                .copied()
                .filter(|u| items.contains_key(u))
                .collect();
            report.removed = self
                .mirror_deletions(dst, plan, key, &mut items, &gone)
                .await?;
        }
        if unchanged {
            report.bytes = 0;
            return Ok((work(report), Vec::new()));
        }
        // With CONDSTORE, only what changed since the last complete pass (new messages have a
        // higher MODSEQ too); otherwise everything, and flags are compared one by one.
        let changed_since = if had_intents || relist || state.source_uid_next == 0 {
            None
        } else {
            state.highest_modseq
        };
        let mut listing = src.list_messages(1, changed_since).await?;
        if !sh.config.source_after_copy.is_keep() {
            // Move mode marks copied messages \Deleted on the source (before it expunges
            // them): that is not a flag change for their copies.
            for m in listing.iter_mut().filter(|m| items.contains_key(&m.uid)) {
                m.flags = Flags::new(m.flags.as_slice().iter().filter(|f| *f != "\\Deleted"));
            }
        }
        if changed_since.is_none() {
            report.bytes = listing.iter().map(|m| u64::from(m.size)).sum();
        }
        if compare_uids {
            // A listing shorter than the folder (a reply cut short) must not read as deletions.
            if listing.len() < status.messages as usize {
                tracing::warn!(job = %sh.config.job_id, folder = %plan.source, listed = listing.len(), exists = status.messages, "Deletions not mirrored: the listing is shorter than the folder.");
            } else {
                let present: HashSet<u32> = listing.iter().map(|m| m.uid).collect();
                let mut gone: Vec<u32> = items
                    .keys()
                    .copied()
                    .filter(|u| !present.contains(u))
                    .collect();
                gone.sort_unstable();
                report.removed = self
                    .mirror_deletions(dst, plan, key, &mut items, &gone)
                    .await?;
            }
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
            filter: sh.config.filter.clone(),
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
        // Messages refused for good are not sent again: failed, with the count and the reply.
        let (given_up, copy): (Vec<MessageMeta>, Vec<MessageMeta>) = steps
            .copy
            .into_iter()
            .partition(|m| refusals.get(&m.uid).is_some_and(|r| r.for_good()));
        steps.copy = copy;
        if first_pass && !given_up.is_empty() {
            report.failed += given_up.len() as u64;
            for m in given_up {
                let r = &refusals[&m.uid];
                let item = ItemRow {
                    folder: plan.source.clone(),
                    uid: m.uid,
                    size: u64::from(m.size),
                    message_id: m.message_id.clone(),
                    subject: m.subject.clone(),
                    reason: migrated_core::refusal::given_up(&r.reply, r.count),
                };
                tracing::warn!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, refusals = r.count, reason = %r.reply, "Message refused for good by the destination: not sent again.");
                (sh.observer)(Event::Failed(item.clone()));
                if let Ok(mut v) = sh.failed.lock() {
                    v.push(item);
                }
            }
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
            filter: None,
        };
        if checkpoint_valid && let Some(prev) = &previous {
            state.source_uid_next = prev.source_uid_next;
            state.highest_modseq = prev.highest_modseq;
            state.size_limit = prev.size_limit;
            state.filter = prev.filter;
        }
        if previous.as_ref() != Some(&state) {
            let (s2, st) = (store.clone(), state.clone());
            store_call(move || s2.put_folder_state(job, key, &st)).await?;
        }
        Ok((state, items))
    }

    /// Tells the observer and the summary about messages over the size limit or left out by
    /// the filter, each with its rule.
    fn report_excluded(&self, plan: &FolderPlan, excluded: &[Exclusion]) {
        let sh = &self.shared;
        for Exclusion { message: m, reason } in excluded {
            let item = ItemRow {
                folder: plan.source.clone(),
                uid: m.uid,
                size: u64::from(m.size),
                message_id: m.message_id.clone(),
                subject: m.subject.clone(),
                reason: reason.clone(),
            };
            if u64::from(m.size) > sh.config.max_message_size {
                tracing::warn!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, size = item.size, "Message excluded: too large.");
            } else {
                tracing::debug!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, reason = %item.reason, "Message filtered out.");
            }
            (sh.observer)(Event::Excluded(item.clone()));
            if let Ok(mut v) = sh.excluded.lock() {
                v.push(item);
            }
        }
    }

    /// Expunges on the destination the copies of source messages `gone` (source UIDs with a
    /// ledger record: copies this job made, never a message the destination had or got
    /// elsewhere), drops their records, and lists them in the summary. Returns how many.
    async fn mirror_deletions(
        &self,
        dst: &mut D::Session,
        plan: &FolderPlan,
        key: FolderKey,
        items: &mut HashMap<u32, ItemRecord>,
        gone: &[u32],
    ) -> Result<u64, EngineError> {
        let sh = &self.shared;
        // Without UIDPLUS no copy's UID is known: nothing can be removed safely.
        let gone: Vec<(u32, u32)> = gone
            .iter()
            .filter_map(|u| items.get(u).map(|r| (*u, r.dest_uid)))
            .filter(|(_, d)| *d != 0)
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        dst.open_folder(&plan.destination, false).await?;
        let dest_uids: Vec<u32> = gone.iter().map(|g| g.1).collect();
        // What the copies were, for the report (the source's are gone): read before they go.
        let first = dest_uids.iter().copied().min().unwrap_or(1);
        let copies: HashMap<u32, MessageMeta> = dst
            .list_messages(first)
            .await?
            .into_iter()
            .map(|m| (m.uid, m))
            .collect();
        if !dst.expunge(&dest_uids).await? {
            tracing::warn!(job = %sh.config.job_id, folder = %plan.destination, count = gone.len(), "Deletions not mirrored: the destination cannot expunge by UID (no UIDPLUS).");
            return Ok(0);
        }
        let source_uids: Vec<u32> = gone.iter().map(|g| g.0).collect();
        let (s2, uids) = (sh.store.clone(), source_uids.clone());
        store_call(move || s2.remove_items(key, &uids)).await?;
        let mut rows = Vec::new();
        for (src_uid, dest_uid) in &gone {
            items.remove(src_uid);
            let copy = copies.get(dest_uid);
            rows.push(RemovedRow {
                folder: plan.source.clone(),
                destination: plan.destination.clone(),
                uid: *src_uid,
                dest_uid: *dest_uid,
                message_id: copy.and_then(|m| m.message_id.clone()),
                size: copy.map_or(0, |m| u64::from(m.size)),
                date: copy.map(|m| m.internal_date.clone()),
                removal: Removal::DestinationExpunged,
            });
        }
        let count = rows.len() as u64;
        tracing::info!(job = %sh.config.job_id, folder = %plan.source, count, "Source deletions mirrored.");
        if let Ok(mut v) = sh.removed.lock() {
            migrated_core::list_removed(&mut v, rows);
        }
        Ok(count)
    }

    /// Carries flag changes of copied messages to their copies (one STORE per set of flags)
    /// and records the new fingerprints and the flags each copy now has. A copy whose record
    /// kept the flags it was given is compared with what the destination has now: a change
    /// there is the user's and is kept, and when both sides changed `flag_conflicts` decides
    /// ([`merge_flags`]). A record of an earlier release gets the source's flags, as before.
    /// Returns how many copies got new flags.
    async fn carry_flags(
        &self,
        dst: &mut D::Session,
        plan: &FolderPlan,
        key: FolderKey,
        items: &HashMap<u32, ItemRecord>,
        flag_updates: &[(u32, u32, Flags)],
    ) -> Result<u64, EngineError> {
        let sh = &self.shared;
        let s2 = sh.store.clone();
        let copied = store_call(move || s2.copied_flags(key)).await?;
        dst.open_folder(&plan.destination, false).await?;
        let two_sided = flag_updates
            .iter()
            .any(|(s, d, _)| *d != 0 && copied.contains_key(s));
        let now: HashMap<u32, Flags> = if two_sided {
            dst.list_messages(1)
                .await?
                .into_iter()
                .map(|m| (m.uid, m.flags))
                .collect()
        } else {
            HashMap::new()
        };
        let mut by_flags: HashMap<Flags, Vec<u32>> = HashMap::new();
        let mut updated = Vec::new();
        let mut kept = Vec::new();
        for (src_uid, dest_uid, source) in flag_updates {
            let Some(rec) = items.get(src_uid).filter(|_| *dest_uid != 0) else {
                continue;
            };
            let base = copied.get(src_uid).map(Flags::new);
            let result = match (&base, now.get(dest_uid)) {
                (Some(b), Some(d)) => merge_flags(Some(b), source, d, sh.config.flag_conflicts),
                // The copy is no longer on the destination: nothing to set.
                (Some(_), None) => continue,
                (None, _) => source.clone(),
            };
            if base.is_none() || now.get(dest_uid) != Some(&result) {
                by_flags.entry(result.clone()).or_default().push(*dest_uid);
            }
            updated.push((
                *src_uid,
                ItemRecord {
                    dest_uid: *dest_uid,
                    flags_fingerprint: source.fingerprint(),
                    ..*rec
                },
            ));
            kept.push((*src_uid, result.as_slice().to_vec()));
        }
        for (flags, uids) in &by_flags {
            dst.store_flags(uids, flags).await?;
        }
        let count = by_flags.values().map(|u| u.len() as u64).sum::<u64>();
        let s2 = sh.store.clone();
        store_call(move || s2.sync_flags(key, &updated, &kept)).await?;
        tracing::info!(job = %sh.config.job_id, folder = %plan.source, count, "Flag changes carried.");
        Ok(count)
    }
}
