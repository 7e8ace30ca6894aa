//! Messages stored in more than one folder (Gmail shows one message under each of its labels,
//! with one content key): uploaded once, by the first folder of the pass that has it, then
//! placed in the other folders with `UID COPY` on the destination, under an intent like an
//! APPEND.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use migrated_core::{Flags, MailDestination, MailDestinationSession, MessageMeta, SourceConnector};
use migrated_store::{FolderKey, Intent, ItemRecord};

use super::{Engine, FolderWork};
use crate::error::EngineError;
use crate::events::Event;
use crate::ledger::store_call;

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Splits a folder's messages into those it uploads and those stored by another folder
    /// (same content key, as Gmail shows one message under each of its labels): the latter
    /// are copied on the destination after the uploads.
    pub(super) async fn split_placed(
        &self,
        folder: FolderKey,
        messages: Vec<MessageMeta>,
        uploading: &mut HashSet<String>,
    ) -> Result<(Vec<MessageMeta>, Vec<MessageMeta>), EngineError> {
        if messages.iter().all(|m| m.content_key.is_none()) {
            return Ok((messages, Vec::new()));
        }
        let (store, job) = (self.shared.store.clone(), self.shared.job);
        let keys: Vec<Option<String>> = messages.iter().map(|m| m.content_key.clone()).collect();
        let placed: Vec<bool> = store_call(move || {
            keys.iter()
                .map(|k| match k {
                    Some(k) => Ok(store.placement(job, k)?.is_some_and(|(f, _)| f != folder)),
                    None => Ok(false),
                })
                .collect::<Result<Vec<bool>, migrated_store::StoreError>>()
        })
        .await?;
        let (mut upload, mut later) = (Vec::new(), Vec::new());
        for (m, placed) in messages.into_iter().zip(placed) {
            match &m.content_key {
                Some(k) if placed || !uploading.insert(k.clone()) => later.push(m),
                _ => upload.push(m),
            }
        }
        Ok((upload, later))
    }

    /// Places messages already stored in another destination folder into this one with
    /// `UID COPY` (nothing is uploaded again), under an intent like an APPEND. Returns the
    /// messages that must be uploaded after all (no usable earlier copy).
    pub(super) async fn copy_placed<'m>(
        &self,
        dst: &mut Option<D::Session>,
        w: &FolderWork,
        messages: Vec<&'m MessageMeta>,
    ) -> Result<Vec<&'m MessageMeta>, EngineError> {
        let sh = &self.shared;
        let (store, job) = (sh.store.clone(), sh.job);
        let keys: Vec<Option<String>> = messages.iter().map(|m| m.content_key.clone()).collect();
        let own = w.key;
        // For each message: the destination folder, its UIDVALIDITY, and the ledger entry of
        // the earlier copy.
        let found = store_call(move || {
            let mut out = Vec::new();
            for k in &keys {
                let mut hit = None;
                if let Some(k) = k
                    && let Some((folder, uid)) = store.placement(job, k)?
                    && folder != own
                    && let Some(rec) = store.item(folder, uid)?
                    && rec.dest_uid != 0
                    && let Some(state) = store.folder_state(job, folder)?
                {
                    hit = Some((state.destination, state.destination_uid_validity, rec));
                }
                out.push(hit);
            }
            Ok::<_, migrated_store::StoreError>(out)
        })
        .await?;
        let mut upload = Vec::new();
        let mut groups: HashMap<(String, u32), Vec<(&MessageMeta, ItemRecord)>> = HashMap::new();
        for (m, hit) in messages.into_iter().zip(found) {
            match hit {
                Some((folder, validity, rec)) if folder != w.plan.destination => {
                    groups.entry((folder, validity)).or_default().push((m, rec));
                }
                _ => upload.push(m),
            }
        }
        if groups.is_empty() {
            return Ok(upload);
        }
        if dst.is_none() {
            *dst = Some(sh.destination.connect().await?);
        }
        let Some(d) = dst.as_mut() else {
            unreachable!("connected above")
        };
        for ((from, validity), group) in groups {
            let opened = d.open_folder(&from, true).await?;
            if opened.uid_validity != validity {
                // The earlier copies were renumbered: upload instead.
                upload.extend(group.iter().map(|(m, _)| *m));
                continue;
            }
            let target = d.status(&w.plan.destination).await?;
            let intent = Intent {
                dest_uid_validity: target.uid_validity,
                dest_uid_next: target.uid_next,
                items: group
                    .iter()
                    .map(|(m, rec)| (m.uid, rec.flags_fingerprint, rec.hash))
                    .collect(),
            };
            let (s2, key) = (sh.store.clone(), w.key);
            let seq = store_call(move || s2.begin_intent(key, &intent)).await?;
            let uids: Vec<u32> = group.iter().map(|(_, rec)| rec.dest_uid).collect();
            let pairs = d.copy_messages(&uids, &w.plan.destination).await?;
            let new_uid: HashMap<u32, u32> = pairs.unwrap_or_default().into_iter().collect();
            let mut records = Vec::with_capacity(group.len());
            let mut restamp: HashMap<&Flags, Vec<u32>> = HashMap::new();
            for (m, rec) in &group {
                let dest_uid = new_uid.get(&rec.dest_uid).copied().unwrap_or(0);
                records.push((
                    m.uid,
                    ItemRecord {
                        dest_uid,
                        flags_fingerprint: m.flags.fingerprint(),
                        hash: rec.hash,
                    },
                ));
                if dest_uid != 0 && m.flags.fingerprint() != rec.flags_fingerprint {
                    restamp.entry(&m.flags).or_default().push(dest_uid);
                }
            }
            if !restamp.is_empty() {
                // The copy carries the first copy's flags; this folder's message says otherwise.
                d.open_folder(&w.plan.destination, false).await?;
                for (flags, uids) in &restamp {
                    d.store_flags(uids, flags).await?;
                }
            }
            let flags: Vec<(u32, Vec<String>)> = group
                .iter()
                .zip(&records)
                .filter(|(_, (_, r))| r.dest_uid != 0)
                .map(|((m, _), _)| (m.uid, m.flags.as_slice().to_vec()))
                .collect();
            let s2 = sh.store.clone();
            store_call(move || s2.commit_with_flags(key, Some(seq), &records, None, &flags))
                .await?;
            let (n, bytes) = (
                group.len() as u64,
                group.iter().map(|(m, _)| u64::from(m.size)).sum::<u64>(),
            );
            if let Ok(mut r) = w.report.lock() {
                r.copied += n;
            }
            let items_done = sh.items_done.fetch_add(n, Ordering::Relaxed) + n;
            let bytes_done = sh.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
            (sh.observer)(Event::Progress {
                folder: w.plan.source.clone(),
                items_done,
                bytes_done,
            });
            tracing::debug!(job = %sh.config.job_id, from = %from, to = %w.plan.destination, count = n, "Copied on the destination.");
        }
        Ok(upload)
    }
}
