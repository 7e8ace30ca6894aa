//! The verification after a run that changed something: both sides listed afresh, folder by
//! folder, counts and bytes compared, and every source message missing on the destination
//! named with what the ledger knows of it (refused, excluded, deleted there, arrived late).

use std::collections::{HashMap, HashSet};

use migrated_core::{
    FolderPlan, MailDestination, MailDestinationSession, SourceConnector, SourceSession,
};

use super::Engine;
use crate::error::EngineError;
use crate::events::Summary;
use crate::ledger::store_call;
use migrated_core::{ItemRow, Removal, RemovedRow, SourceAfterCopy, VerifyRow};

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Compares both sides folder by folder (counts and bytes from fresh listings) and names
    /// every source message that is not on the destination, with what the ledger knows of it.
    ///
    /// In move mode, also returns per source folder the messages whose copies this listing
    /// found on the destination (by the ledger's destination UID): the only ones the source
    /// may lose.
    pub(super) async fn verify(
        &self,
        src: &mut C::Session,
        dst: &mut D::Session,
        plans: &[FolderPlan],
        folder_errors: &HashMap<String, String>,
        summary: &Summary,
    ) -> Result<(Vec<VerifyRow>, Vec<(String, Vec<RemovedRow>)>), EngineError> {
        let sh = &self.shared;
        let mut rows = Vec::new();
        let mut confirmed = Vec::new();
        let moving = sh.config.source_after_copy;
        for plan in plans {
            if plan.container_only {
                continue;
            }
            if let Some(e) = folder_errors.get(&plan.source) {
                // The folder is not on the destination: every message is missing, and why.
                src.open_folder(&plan.source).await?;
                let source = src.list_messages(1, None).await?;
                rows.push(VerifyRow {
                    source: plan.source.clone(),
                    destination: plan.destination.clone(),
                    source_messages: source.len() as u64,
                    source_bytes: source.iter().map(|m| u64::from(m.size)).sum(),
                    destination_messages: 0,
                    destination_bytes: 0,
                    missing: source
                        .iter()
                        .map(|m| ItemRow {
                            folder: plan.source.clone(),
                            uid: m.uid,
                            size: u64::from(m.size),
                            message_id: m.message_id.clone(),
                            subject: m.subject.clone(),
                            reason: super::finalize::unplaced_reason(&plan.destination, e),
                        })
                        .collect(),
                });
                continue;
            }
            // Both sides and the ledger at once: over a wide-area link each side's round
            // trips are what the verification waits for.
            let key = sh.store.folder_key(sh.job, &plan.source);
            let s2 = sh.store.clone();
            let (source, destination, items) = tokio::join!(
                async {
                    src.open_folder(&plan.source).await?;
                    Ok::<_, EngineError>(src.list_messages(1, None).await?)
                },
                async {
                    dst.open_folder(&plan.destination, true).await?;
                    Ok::<_, EngineError>(dst.list_messages(1).await?)
                },
                store_call(move || s2.items(key)),
            );
            let (source, destination, items) = (source?, destination?, items?);
            let present: HashSet<u32> = destination.iter().map(|m| m.uid).collect();
            if !moving.is_keep() {
                let already = |m: &migrated_core::MessageMeta| {
                    moving == SourceAfterCopy::FlagDeleted
                        && m.flags.as_slice().iter().any(|f| f == "\\Deleted")
                };
                let removal = if moving == SourceAfterCopy::Expunge {
                    Removal::SourceExpunged
                } else {
                    Removal::SourceFlaggedDeleted
                };
                let uids: Vec<RemovedRow> = source
                    .iter()
                    .filter_map(|m| {
                        let r = items.get(&m.uid)?;
                        (r.dest_uid != 0 && present.contains(&r.dest_uid) && !already(m)).then(
                            || RemovedRow {
                                folder: plan.source.clone(),
                                destination: plan.destination.clone(),
                                uid: m.uid,
                                dest_uid: r.dest_uid,
                                message_id: m.message_id.clone(),
                                size: u64::from(m.size),
                                date: Some(m.internal_date.clone()),
                                removal,
                            },
                        )
                    })
                    .collect();
                confirmed.push((plan.source.clone(), uids));
            }
            let mut row = VerifyRow {
                source: plan.source.clone(),
                destination: plan.destination.clone(),
                source_messages: source.len() as u64,
                source_bytes: source.iter().map(|m| u64::from(m.size)).sum(),
                destination_messages: destination.len() as u64,
                destination_bytes: destination.iter().map(|m| u64::from(m.size)).sum(),
                missing: Vec::new(),
            };
            for m in &source {
                let reason = match items.get(&m.uid) {
                    // Without UIDPLUS the copy's UID is unknown: the counts speak for it.
                    Some(r) if r.dest_uid == 0 || present.contains(&r.dest_uid) => continue,
                    Some(r) => format!(
                        "copied as UID {}, but no longer on the destination (deleted there?); \
                         run `migratectl reset` and a delta to copy it again",
                        r.dest_uid
                    ),
                    None => {
                        let said = |items: &[ItemRow]| {
                            items
                                .iter()
                                .find(|f| f.folder == plan.source && f.uid == m.uid)
                                .map(|f| f.reason.clone())
                        };
                        if let Some(why) = said(&summary.failed) {
                            format!("refused by the destination: {why}")
                        } else if let Some(why) = said(&summary.excluded) {
                            format!("excluded: {why}")
                        } else if u64::from(m.size) > sh.config.max_message_size {
                            format!(
                                "excluded: {}",
                                migrated_core::too_large(sh.config.max_message_size)
                            )
                        } else if let Some(why) = sh.config.filter.excludes(m) {
                            format!("excluded: {why}")
                        } else {
                            "not copied yet (arrived during the run?): the next delta copies it"
                                .to_owned()
                        }
                    }
                };
                row.missing.push(ItemRow {
                    folder: plan.source.clone(),
                    uid: m.uid,
                    size: u64::from(m.size),
                    message_id: m.message_id.clone(),
                    subject: m.subject.clone(),
                    reason,
                });
            }
            rows.push(row);
        }
        Ok((rows, confirmed))
    }
}
