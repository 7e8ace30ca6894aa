//! Recovery: APPENDs interrupted by a crash, and UIDVALIDITY changes on either side. All of it
//! matches by content hash and never deletes anything on a server.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use migrated_core::planner::match_in_flight;
use migrated_core::{FolderStatus, MailDestinationSession, SourceSession};
use migrated_store::{FolderKey, Intent, ItemRecord, Store};

use crate::error::EngineError;
use crate::ledger::store_call;

/// Messages per FETCH when hashing for recovery; with `CHUNK_BYTES`, bounds memory.
const CHUNK_MESSAGES: usize = 50;
const CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// Something whose open folder's messages can be fetched whole: the source or the destination.
/// (A trait rather than an async closure: futures built from async closures borrowing a session
/// are not provably `Send`, and the engine runs on a multi-threaded runtime.)
pub(crate) trait FetchBodies: Send {
    fn fetch<'a>(
        &'a mut self,
        uids: &'a [u32],
    ) -> impl std::future::Future<Output = Result<Vec<Option<Vec<u8>>>, EngineError>> + Send + 'a;
}

/// The destination side, through the destination trait.
pub(crate) struct Destination<'d, T>(pub &'d mut T);

impl<T: MailDestinationSession> FetchBodies for Destination<'_, T> {
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        Ok(self.0.fetch_bodies(uids).await?)
    }
}

/// The source side, through the source trait.
pub(crate) struct Source<'s, S>(pub &'s mut S);

impl<S: SourceSession> FetchBodies for Source<'_, S> {
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        Ok(self.0.fetch_bodies(uids).await?)
    }
}

/// Hashes the bodies of `(uid, size)` messages, fetched in bounded chunks.
pub(crate) async fn hash_bodies<F: FetchBodies>(
    messages: &[(u32, u32)],
    fetcher: &mut F,
) -> Result<Vec<(u32, [u8; 32])>, EngineError> {
    let mut out = Vec::with_capacity(messages.len());
    let mut start = 0;
    while start < messages.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < messages.len()
            && (end == start
                || (end - start < CHUNK_MESSAGES
                    && bytes + u64::from(messages[end].1) <= CHUNK_BYTES))
        {
            bytes += u64::from(messages[end].1);
            end += 1;
        }
        let uids: Vec<u32> = messages[start..end].iter().map(|m| m.0).collect();
        let bodies = fetcher.fetch(&uids).await?;
        for (uid, body) in uids.iter().zip(bodies) {
            if let Some(b) = body {
                out.push((*uid, *blake3::hash(&b).as_bytes()));
            }
        }
        start = end;
    }
    Ok(out)
}

/// The pause between two looks at a destination folder that must hold still.
const SETTLE_LOOK: Duration = Duration::from_millis(250);
/// The longest wait for a destination folder to hold still.
const SETTLE_MAX: Duration = Duration::from_secs(10);

/// Opens the destination folder once nothing more lands in it: two looks a moment apart
/// that agree (or [`SETTLE_MAX`] passed). A server may still be storing an APPEND whose
/// literal the stopped run had sent (Courier takes a few milliseconds after the client is
/// gone); looking before it lands would miss it, and the message would be sent again.
async fn settled<T: MailDestinationSession>(
    dst: &mut T,
    destination: &str,
) -> Result<FolderStatus, EngineError> {
    let deadline = Instant::now() + SETTLE_MAX;
    let mut state = dst.open_folder(destination, true).await?;
    loop {
        tokio::time::sleep(SETTLE_LOOK).await;
        let now = dst.open_folder(destination, true).await?;
        let still = (now.uid_validity, now.uid_next, now.messages)
            == (state.uid_validity, state.uid_next, state.messages);
        state = now;
        if still || Instant::now() >= deadline {
            return Ok(state);
        }
    }
}

/// Finds on the destination the messages whose APPEND was in flight when an earlier run stopped,
/// records them, and drops the intents. Must run while no other APPEND goes to the folder.
pub(crate) async fn resolve_intents<T: MailDestinationSession>(
    dst: &mut T,
    destination: &str,
    store: &Store,
    folder: FolderKey,
    intents: Vec<(u64, Intent)>,
    items: &mut HashMap<u32, ItemRecord>,
) -> Result<usize, EngineError> {
    let state = settled(dst, destination).await?;
    let valid = intents
        .iter()
        .all(|(_, i)| i.dest_uid_validity == state.uid_validity);
    let min_uid = if valid {
        intents
            .iter()
            .map(|(_, i)| i.dest_uid_next)
            .min()
            .unwrap_or(1)
    } else {
        1
    };
    let known: HashSet<u32> = items.values().map(|r| r.dest_uid).collect();
    let candidates: Vec<(u32, u32)> = dst
        .list_messages(min_uid)
        .await?
        .into_iter()
        .filter(|m| !known.contains(&m.uid))
        .map(|m| (m.uid, m.size))
        .collect();
    let found = hash_bodies(&candidates, &mut Destination(dst)).await?;
    let mut fingerprints = HashMap::new();
    let in_flight: Vec<(u32, [u8; 32])> = intents
        .iter()
        .flat_map(|(_, i)| i.items.iter())
        .filter(|(uid, _, _)| !items.contains_key(uid))
        .map(|(uid, fp, hash)| {
            fingerprints.insert(*uid, *fp);
            (*uid, *hash)
        })
        .collect();
    let matched = match_in_flight(&in_flight, &found);
    let hashes: HashMap<u32, [u8; 32]> = in_flight.iter().copied().collect();
    let records: Vec<(u32, ItemRecord)> = matched
        .iter()
        .map(|(src, dst_uid)| {
            (
                *src,
                ItemRecord {
                    dest_uid: *dst_uid,
                    flags_fingerprint: fingerprints[src],
                    hash: hashes[src],
                },
            )
        })
        .collect();
    let seqs: Vec<u64> = intents.iter().map(|(s, _)| *s).collect();
    let (store2, recs) = (store.clone(), records.clone());
    store_call(move || store2.resolve_intents(folder, &seqs, &recs)).await?;
    let n = records.len();
    items.extend(records);
    tracing::info!(
        destination,
        in_flight = in_flight.len(),
        found = n,
        "Interrupted APPENDs resolved."
    );
    Ok(n)
}

/// The source folder's UIDVALIDITY changed: every recorded UID is void. Re-key the ledger by
/// matching the folder's current messages to recorded content hashes. The folder must be open.
pub(crate) async fn rekey_source<S: SourceSession>(
    src: &mut S,
    store: &Store,
    folder: FolderKey,
    items: &mut HashMap<u32, ItemRecord>,
) -> Result<(), EngineError> {
    let listing = src.list_messages(1, None).await?;
    let metas: Vec<(u32, u32)> = listing.iter().map(|m| (m.uid, m.size)).collect();
    let hashed = hash_bodies(&metas, &mut Source(src)).await?;
    let mut by_hash: HashMap<[u8; 32], Vec<ItemRecord>> = HashMap::new();
    for rec in items.values() {
        by_hash.entry(rec.hash).or_default().push(*rec);
    }
    let mut rekeyed = HashMap::new();
    for (uid, hash) in hashed {
        if let Some(rec) = by_hash.get_mut(&hash).and_then(Vec::pop) {
            rekeyed.insert(uid, rec);
        }
    }
    tracing::warn!(
        before = items.len(),
        matched = rekeyed.len(),
        "Source UIDVALIDITY changed: ledger re-keyed by content."
    );
    let records: Vec<(u32, ItemRecord)> = rekeyed.iter().map(|(u, r)| (*u, *r)).collect();
    let store2 = store.clone();
    store_call(move || store2.replace_items(folder, &records)).await?;
    *items = rekeyed;
    Ok(())
}

/// The destination folder's UIDVALIDITY changed: recorded destination UIDs are void. Find each
/// recorded message again by content; records not found are dropped so the message is copied
/// again.
pub(crate) async fn rekey_destination<T: MailDestinationSession>(
    dst: &mut T,
    destination: &str,
    store: &Store,
    folder: FolderKey,
    items: &mut HashMap<u32, ItemRecord>,
) -> Result<(), EngineError> {
    dst.open_folder(destination, true).await?;
    let metas: Vec<(u32, u32)> = dst
        .list_messages(1)
        .await?
        .into_iter()
        .map(|m| (m.uid, m.size))
        .collect();
    let hashed = hash_bodies(&metas, &mut Destination(dst)).await?;
    let mut by_hash: HashMap<[u8; 32], Vec<u32>> = HashMap::new();
    for (uid, hash) in hashed {
        by_hash.entry(hash).or_default().push(uid);
    }
    let mut rekeyed = HashMap::new();
    let mut sorted: Vec<_> = items.iter().collect();
    sorted.sort_by_key(|(uid, _)| **uid);
    for (src_uid, rec) in sorted {
        if let Some(uid) = by_hash.get_mut(&rec.hash).and_then(|v| {
            if v.is_empty() {
                None
            } else {
                Some(v.remove(0))
            }
        }) {
            rekeyed.insert(
                *src_uid,
                ItemRecord {
                    dest_uid: uid,
                    ..*rec
                },
            );
        }
    }
    tracing::warn!(
        destination,
        before = items.len(),
        matched = rekeyed.len(),
        "Destination UIDVALIDITY changed: ledger re-keyed by content."
    );
    let records: Vec<(u32, ItemRecord)> = rekeyed.iter().map(|(u, r)| (*u, *r)).collect();
    let store2 = store.clone();
    store_call(move || store2.replace_items(folder, &records)).await?;
    *items = rekeyed;
    Ok(())
}

/// Finds on the destination messages this job appended after the last one its ledger records,
/// whose record (and intent) the store no longer holds, and records them instead of copying
/// them again. A store keeps what it synced, but a file system the kernel stopped after an
/// error, once checked and mounted again, can come back without the last synced write (seen
/// with ext4 `errors=remount-ro` and `e2fsck`): the intent of the batch in flight is gone then.
/// Only messages above the highest recorded destination UID are candidates, matched by size
/// first and then by content hash against the source messages still to copy, so a folder
/// whose destination took nothing since the last record costs nothing but the STATUS already
/// made. `to_copy` loses the messages found. Both folders must be open (the source's by the
/// caller).
pub(crate) async fn adopt_unrecorded<S: SourceSession, T: MailDestinationSession>(
    src: &mut S,
    dst: &mut T,
    destination: &str,
    store: &Store,
    folder: FolderKey,
    items: &mut HashMap<u32, ItemRecord>,
    to_copy: &mut Vec<migrated_core::MessageMeta>,
) -> Result<usize, EngineError> {
    let recorded_max = items.values().map(|r| r.dest_uid).max().unwrap_or(0);
    dst.open_folder(destination, true).await?;
    let known: HashSet<u32> = items.values().map(|r| r.dest_uid).collect();
    let unrecorded: Vec<(u32, u32)> = dst
        .list_messages(recorded_max.saturating_add(1))
        .await?
        .into_iter()
        .filter(|m| m.uid > recorded_max && !known.contains(&m.uid))
        .map(|m| (m.uid, m.size))
        .collect();
    let sizes: HashSet<u32> = unrecorded.iter().map(|m| m.1).collect();
    let candidates: Vec<(u32, u32)> = to_copy
        .iter()
        .filter(|m| sizes.contains(&m.size))
        .map(|m| (m.uid, m.size))
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut on_destination: HashMap<[u8; 32], Vec<u32>> = HashMap::new();
    for (uid, hash) in hash_bodies(&unrecorded, &mut Destination(dst)).await? {
        on_destination.entry(hash).or_default().push(uid);
    }
    let mut records = Vec::new();
    for (uid, hash) in hash_bodies(&candidates, &mut Source(src)).await? {
        let Some(dest_uid) = on_destination.get_mut(&hash).and_then(|v| {
            if v.is_empty() {
                None
            } else {
                Some(v.remove(0))
            }
        }) else {
            continue;
        };
        let Some(m) = to_copy.iter().find(|m| m.uid == uid) else {
            continue;
        };
        records.push((
            uid,
            ItemRecord {
                dest_uid,
                flags_fingerprint: m.flags.fingerprint(),
                hash,
            },
        ));
    }
    if records.is_empty() {
        return Ok(0);
    }
    let (store2, recs) = (store.clone(), records.clone());
    store_call(move || store2.resolve_intents(folder, &[], &recs)).await?;
    let adopted: HashSet<u32> = records.iter().map(|(uid, _)| *uid).collect();
    to_copy.retain(|m| !adopted.contains(&m.uid));
    let n = records.len();
    items.extend(records);
    tracing::warn!(
        destination,
        found = n,
        "Messages on the destination that the job store had lost the record of were found by content and recorded; they are not copied again."
    );
    Ok(n)
}
