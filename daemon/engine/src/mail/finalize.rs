//! The Finalizing phase: a folder's checkpoint once a pass left nothing of it undone, the
//! per-folder reports of every pass merged, and the run's summary (with its verification when
//! the run changed something).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use migrated_core::{MailDestination, MailDestinationSession, SourceConnector, SourceSession};

use super::{Engine, FolderWork, Mapped};
use crate::error::EngineError;
use crate::events::{Event, Summary};
use crate::ledger::store_call;
use migrated_core::{FolderReport, ItemRow, Phase, RemovedRow, SourceAfterCopy};

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Writes the folder's checkpoint after a pass that left nothing undone.
    pub(super) async fn finish_folder(&self, w: &FolderWork) -> Result<(), EngineError> {
        let sh = &self.shared;
        let report = w.report.lock().map(|r| r.clone()).unwrap_or_default();
        let mut state = w.checkpoint.clone();
        if w.incomplete.load(Ordering::Relaxed) || report.failed > 0 {
            // Failed messages must be listed again by the next run: no shortcut checkpoint.
            state.source_uid_next = 0;
            state.highest_modseq = None;
        }
        let (s2, job, key) = (sh.store.clone(), sh.job, w.key);
        store_call(move || s2.put_folder_state(job, key, &state)).await?;
        tracing::info!(job = %sh.config.job_id, folder = %report.source, copied = report.copied, failed = report.failed, "Folder done.");
        (sh.observer)(Event::FolderDone(report));
        Ok(())
    }

    /// Completes the summary from the passes' reports, verifies when the run changed
    /// something, and logs out.
    pub(super) async fn finalize(
        &self,
        mut src: C::Session,
        mut dst: D::Session,
        mapped: &Mapped,
        mut reports: HashMap<String, FolderReport>,
        started: Instant,
    ) -> Result<Summary, EngineError> {
        let sh = &self.shared;
        let Mapped {
            mapping,
            folder_errors,
        } = mapped;
        let plans = &mapping.folders[..];
        let mut summary = Summary {
            folders: plans.len() as u64,
            skipped_folders: mapping.skipped.clone(),
            ..Summary::default()
        };
        (sh.observer)(Event::Phase(Phase::Finalizing));
        // The messages of a folder the destination refused to create are failed, each of them:
        // counted in the summary, the report and the alerts like any refused message.
        let mut unplaced: Vec<ItemRow> = Vec::new();
        for plan in plans {
            let mut report = reports
                .remove(&plan.source)
                .unwrap_or_else(|| FolderReport {
                    source: plan.source.clone(),
                    destination: plan.destination.clone(),
                    ..FolderReport::default()
                });
            if let Some(e) = folder_errors.get(&plan.source) {
                report.error = Some(e.clone());
                if !plan.container_only {
                    src.open_folder(&plan.source).await?;
                    let messages = src.list_messages(1, None).await?;
                    report.messages = messages.len() as u64;
                    report.bytes = messages.iter().map(|m| u64::from(m.size)).sum();
                    report.failed = report.messages;
                    unplaced.extend(messages.into_iter().map(|m| ItemRow {
                        folder: plan.source.clone(),
                        uid: m.uid,
                        size: u64::from(m.size),
                        message_id: m.message_id,
                        subject: m.subject,
                        reason: unplaced_reason(&plan.destination, e),
                    }));
                }
            }
            summary.already_copied += report.already_copied;
            summary.flags_updated += report.flags_updated;
            summary.per_folder.push(report);
        }
        summary.copied = sh.items_done.load(Ordering::Relaxed);
        summary.bytes = sh.bytes_done.load(Ordering::Relaxed);
        summary.excluded = sh.excluded.lock().map(|v| v.clone()).unwrap_or_default();
        summary.failed = sh.failed.lock().map(|v| v.clone()).unwrap_or_default();
        summary.removed = sh.removed.lock().map(|v| v.clone()).unwrap_or_default();
        for item in &unplaced {
            // Like any refused message: the daemon's record lists it, the alerts count it.
            (sh.observer)(Event::Failed(item.clone()));
        }
        summary.failed.extend(unplaced);
        let changed = summary.copied
            + summary.flags_updated
            + summary.per_folder.iter().map(|f| f.removed).sum::<u64>()
            + summary.excluded.len() as u64
            + summary.failed.len() as u64;
        // Move mode verifies every run: only what the verification finds on the destination
        // may leave the source.
        let moving = sh.config.source_after_copy;
        if changed > 0 || summary.per_folder.iter().any(|f| f.error.is_some()) || !moving.is_keep()
        {
            self.stopping()?;
            sh.clock.mark("verify");
            let (rows, confirmed) = self
                .verify(&mut src, &mut dst, plans, folder_errors, &summary)
                .await?;
            summary.verification = Some(rows);
            self.remove_from_source(&mut src, confirmed, &mut summary)
                .await?;
        }
        summary.duration = started.elapsed();
        summary.timings = sh.clock.totals(Instant::now());
        drop(src);
        dst.logout().await;
        Ok(summary)
    }
}

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Move mode: marks or removes on the source the messages whose copies the verification
    /// found on the destination, and counts and lists them in the summary.
    async fn remove_from_source(
        &self,
        src: &mut C::Session,
        confirmed: Vec<(String, Vec<RemovedRow>)>,
        summary: &mut Summary,
    ) -> Result<(), EngineError> {
        let sh = &self.shared;
        let expunge = sh.config.source_after_copy == SourceAfterCopy::Expunge;
        let mut total = 0u64;
        for (folder, rows) in confirmed {
            let mut done = 0u64;
            for chunk in rows.chunks(500) {
                self.stopping()?;
                let uids: Vec<u32> = chunk.iter().map(|r| r.uid).collect();
                if !src.remove_copied(&folder, &uids, expunge).await? {
                    tracing::warn!(job = %sh.config.job_id, folder = %folder, "Source messages kept: the source cannot remove messages by UID (no UIDPLUS, or an older plugin).");
                    break;
                }
                done += chunk.len() as u64;
                migrated_core::list_removed(&mut summary.removed, chunk.iter().cloned());
            }
            if let Some(f) = summary.per_folder.iter_mut().find(|f| f.source == folder) {
                f.source_removed += done;
            }
            total += done;
        }
        if total > 0 {
            tracing::info!(job = %sh.config.job_id, count = total, expunge, "Source messages removed after their copies were verified.");
        }
        summary.source_removed = total;
        Ok(())
    }
}

/// Adds a pass's folder reports to the run's: the first pass's as they are, later passes only
/// what they copied.
pub(super) fn merge_reports(
    reports: &mut HashMap<String, FolderReport>,
    work: &[FolderWork],
    pass: u32,
) {
    for w in work {
        let mut report = w.report.lock().map(|r| r.clone()).unwrap_or_default();
        let entry = reports.entry(w.plan.source.clone()).or_default();
        if pass > 1 {
            // Later passes only add what they copied.
            report.already_copied = entry.already_copied;
            report.excluded = entry.excluded;
            report.copied += entry.copied;
            report.failed += entry.failed;
            report.flags_updated += entry.flags_updated;
            report.removed += entry.removed;
        }
        *entry = report;
    }
}

/// Why a message of a folder the destination refused to create is not there.
pub(super) fn unplaced_reason(destination: &str, error: &str) -> String {
    format!("not copied: the destination refused to create its folder {destination}: {error}")
}
