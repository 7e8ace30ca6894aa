//! One batch of the Copying phase: its bodies fetched from the source within the memory budget,
//! announced in the ledger (an intent), sent in one MULTIAPPEND (or one by one to find a message
//! the server refuses), and recorded. The intent is what lets a run killed mid-APPEND resume
//! without loss and without duplicates.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use migrated_core::{
    Append, DestinationError, MailDestination, MailDestinationSession, MessageMeta,
    SourceConnector, SourceSession,
};
use migrated_store::{Intent, ItemRecord, Refusal};

use super::{Batch, Engine, FolderWork};
use crate::error::EngineError;
use crate::events::Event;
use crate::ledger::store_call;
use migrated_core::ItemRow;

/// A lower bound of the UIDs the destination gives the next messages appended to a folder.
#[derive(Debug, Clone, Copy)]
pub(super) struct UidBound {
    uid_validity: u32,
    uid_next: u32,
}

/// A message fetched for appending: its listing, its body and the body's hash.
type Fetched<'m> = (&'m MessageMeta, Vec<u8>, [u8; 32]);

/// What appending one message came to.
enum Appended {
    /// On the destination, with its UID when the server has UIDPLUS.
    Stored(Option<u32>),
    /// Refused for good, in the server's words.
    Refused(String),
    /// Not sent (a temporary error came first).
    NotSent,
}

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Copies one batch over the worker's sessions (connecting them when needed). `open` is
    /// the folder open on the source session; `bounds` the worker's UID bounds per folder.
    pub(super) async fn copy_batch(
        &self,
        src: &mut Option<C::Session>,
        dst: &mut Option<D::Session>,
        open: &mut Option<usize>,
        bounds: &mut HashMap<usize, UidBound>,
        w: &FolderWork,
        batch: &Batch,
    ) -> Result<(), EngineError> {
        let sh = &self.shared;
        let mut messages: Vec<&MessageMeta> = batch.messages.iter().collect();
        if batch.deferred {
            messages = self.copy_placed(dst, w, messages).await?;
            if messages.is_empty() {
                return Ok(());
            }
        }
        if src.is_none() {
            *src = Some(sh.source.connect().await?);
            *open = None;
        }
        let Some(s) = src.as_mut() else {
            unreachable!("connected above")
        };
        if *open != Some(batch.folder) {
            let status = s.open_folder(&w.plan.source).await?;
            if status.uid_validity != w.source_uid_validity {
                return Err(EngineError::Source(migrated_core::SourceError::temporary(
                    format!(
                        "UIDVALIDITY of {:?} changed during the run; the folder is planned again",
                        w.plan.source
                    ),
                )));
            }
            *open = Some(batch.folder);
        }
        // The bodies of this batch count against the memory budget until they are appended.
        let held: u64 = messages.iter().map(|m| u64::from(m.size)).sum();
        let _held = sh.stop.unless_stopped(sh.config.memory.take(held)).await?;
        let present = fetch_bodies(s, messages, sh.config.part_bytes).await?;
        if present.is_empty() {
            return Ok(());
        }
        self.append_batch(dst, bounds, w, batch.folder, &present)
            .await
    }

    /// Announces, appends and records fetched messages of one folder.
    async fn append_batch(
        &self,
        dst: &mut Option<D::Session>,
        bounds: &mut HashMap<usize, UidBound>,
        w: &FolderWork,
        folder: usize,
        present: &[Fetched<'_>],
    ) -> Result<(), EngineError> {
        let sh = &self.shared;
        if dst.is_none() {
            *dst = Some(sh.destination.connect().await?);
            bounds.clear();
        }
        let Some(d) = dst.as_mut() else {
            unreachable!("connected above")
        };
        // A daily allowance on the destination account (the job's, else the one the
        // destination reports, as Gmail's 500 MB): checked before anything is announced or
        // sent.
        let meter = sh.destination.upload_meter();
        let daily = sh.config.daily_upload.or_else(|| d.upload_allowance());
        if let Some(limit) = daily {
            crate::throttle::daily_upload_allowance(&meter, limit)
                .map_err(EngineError::Throttled)?;
        }
        // Where this batch's UIDs will start, at the latest: STATUS once per folder and
        // connection, then the UID after the last one APPENDUID named. Any lower bound serves
        // the intent; a STATUS per batch made a maildir server rescan a large folder's
        // directory for every batch while other connections appended to it.
        let bound = match bounds.get(&folder) {
            Some(b) => *b,
            None => {
                let st = d.status(&w.plan.destination).await?;
                UidBound {
                    uid_validity: st.uid_validity,
                    uid_next: st.uid_next,
                }
            }
        };
        // Waiting for bandwidth happens before the intent: a stop during the wait leaves
        // nothing in doubt.
        let batch_bytes: u64 = present.iter().map(|(_, b, _)| b.len() as u64).sum();
        for limit in &sh.config.bandwidth {
            sh.stop.unless_stopped(limit.take(batch_bytes)).await?;
        }
        let intent = Intent {
            dest_uid_validity: bound.uid_validity,
            dest_uid_next: bound.uid_next,
            items: present
                .iter()
                .map(|(m, _, h)| (m.uid, m.flags.fingerprint(), *h))
                .collect(),
        };
        let (s2, key) = (sh.store.clone(), w.key);
        let seq = store_call(move || s2.begin_intent(key, &intent)).await?;

        let (outcomes, temporary) = append_all(d, &w.plan.destination, present).await;
        // Without UIDPLUS or after an error: STATUS again next time.
        let unnamed = outcomes.iter().any(|o| matches!(o, Appended::Stored(None)));
        if temporary.is_some() || unnamed {
            bounds.remove(&folder);
        } else {
            let last = outcomes
                .iter()
                .filter_map(|o| match o {
                    Appended::Stored(Some(uid)) => Some(*uid),
                    _ => None,
                })
                .max();
            let uid_next = last.map_or(bound.uid_next, |u| u.saturating_add(1).max(bound.uid_next));
            bounds.insert(folder, UidBound { uid_next, ..bound });
        }
        if daily.is_some() {
            let sent: u64 = present
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Appended::Stored(_)))
                .map(|((_, b, _), _)| b.len() as u64)
                .sum();
            meter.count(sent);
        }
        self.record_appended(w, seq, present, &outcomes, temporary)
            .await
    }

    /// Records what the APPENDs came to and closes the intent (unless a temporary error left
    /// messages in doubt); refused messages are reported.
    async fn record_appended(
        &self,
        w: &FolderWork,
        seq: u64,
        present: &[Fetched<'_>],
        outcomes: &[Appended],
        temporary: Option<DestinationError>,
    ) -> Result<(), EngineError> {
        let sh = &self.shared;
        let mut records = Vec::new();
        let mut placements = Vec::new();
        // The flags each copy got, kept to tell a later change on the destination (the
        // user's) from one on the source.
        let mut flags = Vec::new();
        let (mut copied, mut bytes, mut failed) = (0u64, 0u64, 0u64);
        // Refusals counted one more, and refused messages stored at last.
        let (mut refusals, mut accepted) = (Vec::new(), Vec::new());
        for ((m, _, h), outcome) in present.iter().zip(outcomes) {
            match outcome {
                Appended::Stored(uid) => {
                    if w.refusals.contains_key(&m.uid) {
                        accepted.push(m.uid);
                    }
                    if let (Some(k), Some(_)) = (&m.content_key, uid) {
                        placements.push((k.clone(), m.uid));
                    }
                    if uid.is_some() {
                        flags.push((m.uid, m.flags.as_slice().to_vec()));
                    }
                    records.push((
                        m.uid,
                        ItemRecord {
                            dest_uid: uid.unwrap_or(0),
                            flags_fingerprint: m.flags.fingerprint(),
                            hash: *h,
                        },
                    ));
                    copied += 1;
                    bytes += u64::from(m.size);
                }
                Appended::Refused(reason) => {
                    failed += 1;
                    let refusal = Refusal::next(
                        w.refusals.get(&m.uid),
                        reason,
                        &w.plan.destination,
                        w.checkpoint.destination_uid_validity,
                        w.source_uid_validity,
                    );
                    let item = ItemRow {
                        folder: w.plan.source.clone(),
                        uid: m.uid,
                        size: u64::from(m.size),
                        message_id: m.message_id.clone(),
                        subject: m.subject.clone(),
                        reason: migrated_core::refusal::refused(reason, refusal.count),
                    };
                    refusals.push((m.uid, refusal));
                    tracing::warn!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, reason = %item.reason, "Message refused by the destination.");
                    (sh.observer)(Event::Failed(item.clone()));
                    if let Ok(mut v) = sh.failed.lock() {
                        v.push(item);
                    }
                }
                Appended::NotSent => {}
            }
        }
        // With a temporary error the intent stays: the next pass finds on the destination what
        // arrived before the connection broke.
        let done_intent = if temporary.is_none() { Some(seq) } else { None };
        let (s2, job, key) = (sh.store.clone(), sh.job, w.key);
        store_call(move || {
            s2.commit_with_flags(key, done_intent, &records, Some((job, &placements)), &flags)
        })
        .await?;
        if !refusals.is_empty() || !accepted.is_empty() {
            let s2 = sh.store.clone();
            store_call(move || s2.put_refusals(key, &refusals, &accepted)).await?;
        }
        if let Ok(mut r) = w.report.lock() {
            r.copied += copied;
            r.failed += failed;
        }
        let items_done = sh.items_done.fetch_add(copied, Ordering::Relaxed) + copied;
        let bytes_done = sh.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        (sh.observer)(Event::Progress {
            folder: w.plan.source.clone(),
            items_done,
            bytes_done,
        });
        match temporary {
            Some(e) if e.is_over_quota() => Err(EngineError::MailboxFull(e)),
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Fetches the bodies of messages from the folder open on the source: large ones in parts into
/// one buffer, the others in one FETCH. Messages that vanished are left out.
async fn fetch_bodies<'m, S: SourceSession>(
    s: &mut S,
    messages: Vec<&'m MessageMeta>,
    part_bytes: u32,
) -> Result<Vec<Fetched<'m>>, EngineError> {
    let part = part_bytes.max(64 * 1024);
    let whole: Vec<u32> = messages
        .iter()
        .filter(|m| m.size <= part)
        .map(|m| m.uid)
        .collect();
    let mut fetched = s.fetch_bodies(&whole).await?.into_iter();
    let mut bodies = Vec::with_capacity(messages.len());
    for m in &messages {
        bodies.push(if m.size <= part {
            fetched.next().flatten()
        } else {
            fetch_in_parts(s, m.uid, m.size, part).await?
        });
    }
    Ok(messages
        .into_iter()
        .zip(bodies)
        .filter_map(|(m, b)| {
            b.map(|b| {
                let h = *blake3::hash(&b).as_bytes();
                (m, b, h)
            })
        })
        .collect())
}

/// Reads one message in parts of `part` bytes into a buffer of its announced size, so that it
/// exists once in memory rather than in a reply, its copy and its encoding. `None` if it
/// vanished.
async fn fetch_in_parts<S: SourceSession>(
    s: &mut S,
    uid: u32,
    size: u32,
    part: u32,
) -> Result<Option<Vec<u8>>, migrated_core::SourceError> {
    let mut body: Vec<u8> = Vec::with_capacity(size as usize);
    loop {
        let Some(chunk) = s.fetch_body_part(uid, body.len() as u64, part).await? else {
            return Ok(None);
        };
        if body.is_empty() && chunk.len() > part as usize {
            // A source without parts sent the whole message.
            return Ok(Some(chunk));
        }
        body.extend_from_slice(&chunk);
        if chunk.len() != part as usize {
            return Ok(Some(body));
        }
    }
}

/// Appends a batch: one MULTIAPPEND when the destination offers it, then one by one if the batch
/// was refused, to find the message the server will not take. Stops at the first temporary
/// error and returns it.
async fn append_all<T: MailDestinationSession>(
    d: &mut T,
    folder: &str,
    messages: &[Fetched<'_>],
) -> (Vec<Appended>, Option<DestinationError>) {
    let items: Vec<Append<'_>> = messages
        .iter()
        .map(|(m, body, _)| Append {
            flags: &m.flags,
            internal_date: &m.internal_date,
            body,
        })
        .collect();
    if items.len() > 1 && d.multiappend() {
        match d.append(folder, &items).await {
            Ok(Some(uids)) => {
                return (
                    uids.into_iter()
                        .map(|u| Appended::Stored(Some(u)))
                        .collect(),
                    None,
                );
            }
            Ok(None) => return (items.iter().map(|_| Appended::Stored(None)).collect(), None),
            // A full mailbox refuses everything that follows: the run stops there.
            Err(e) if e.is_temporary() || e.is_over_quota() => {
                return (items.iter().map(|_| Appended::NotSent).collect(), Some(e));
            }
            Err(e) => tracing::debug!(folder, error = %e, "Batch refused; appending one by one."),
        }
    }
    let mut outcomes = Vec::with_capacity(items.len());
    for item in &items {
        match d.append(folder, std::slice::from_ref(item)).await {
            Ok(uids) => outcomes.push(Appended::Stored(uids.and_then(|u| u.first().copied()))),
            Err(e) if e.is_temporary() || e.is_over_quota() => {
                while outcomes.len() < items.len() {
                    outcomes.push(Appended::NotSent);
                }
                return (outcomes, Some(e));
            }
            Err(e) => outcomes.push(Appended::Refused(e.to_string())),
        }
    }
    (outcomes, None)
}

#[cfg(test)]
mod tests {
    use migrated_core::{FolderInfo, FolderStatus, MessageMeta, Namespace, SourceError};

    /// A source holding one message, recording the parts asked for; `parts: false` behaves as
    /// a source without parts (the trait's default).
    struct OneMessage {
        body: Vec<u8>,
        parts: bool,
        asked: Vec<(u64, u32)>,
    }

    impl migrated_core::SourceSession for OneMessage {
        fn namespace(&self) -> Namespace {
            Namespace::default()
        }
        async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
            Ok(Vec::new())
        }
        async fn open_folder(&mut self, _: &str) -> Result<FolderStatus, SourceError> {
            Ok(FolderStatus::default())
        }
        async fn list_messages(
            &mut self,
            _: u32,
            _: Option<u64>,
        ) -> Result<Vec<MessageMeta>, SourceError> {
            Ok(Vec::new())
        }
        async fn fetch_bodies(
            &mut self,
            uids: &[u32],
        ) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
            Ok(uids
                .iter()
                .map(|u| (*u == 7).then(|| self.body.clone()))
                .collect())
        }
        async fn fetch_body_part(
            &mut self,
            uid: u32,
            offset: u64,
            len: u32,
        ) -> Result<Option<Vec<u8>>, SourceError> {
            self.asked.push((offset, len));
            if !self.parts || uid != 7 {
                return migrated_core::source::whole_from(self, uid, offset).await;
            }
            let start = (offset as usize).min(self.body.len());
            let end = (start + len as usize).min(self.body.len());
            Ok(Some(self.body[start..end].to_vec()))
        }
    }

    #[tokio::test]
    async fn a_large_message_is_read_in_parts_into_one_buffer() {
        let body: Vec<u8> = (0..250_000u32).map(|i| (i % 251) as u8).collect();
        for (size, parts) in [(250_000, true), (200_000, true), (250_000, false)] {
            let mut s = OneMessage {
                body: body.clone(),
                parts,
                asked: Vec::new(),
            };
            // The announced size may be wrong: the parts decide where the message ends.
            let got = super::fetch_in_parts(&mut s, 7, size, 100_000)
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some(&body[..]));
            let expected: &[(u64, u32)] = if parts {
                &[(0, 100_000), (100_000, 100_000), (200_000, 100_000)]
            } else {
                &[(0, 100_000)]
            };
            assert_eq!(s.asked, expected);
        }
        // An exact multiple of the part size ends with an empty part.
        let mut s = OneMessage {
            body: body[..200_000].to_vec(),
            parts: true,
            asked: Vec::new(),
        };
        let got = super::fetch_in_parts(&mut s, 7, 200_000, 100_000)
            .await
            .unwrap();
        assert_eq!(got.map(|b| b.len()), Some(200_000));
        assert_eq!(s.asked.len(), 3);
        // A message that vanished is None.
        let got = super::fetch_in_parts(&mut s, 8, 10, 100_000).await.unwrap();
        assert_eq!(got, None);
    }
}
