//! The ledger: what a job copied from each source folder (its [`FolderState`]), one record
//! per copied message, where a message seen in several folders was placed, and the intents
//! written before an APPEND so that a crash between APPEND and record copies nothing twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fjall::PersistMode;
use serde::{Deserialize, Serialize};

use crate::{FolderKey, Handle, JobKey, Store, StoreError};

/// What the store remembers of one source folder of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    /// Source folder name.
    pub source: String,
    /// Destination folder name.
    pub destination: String,
    /// Source UIDVALIDITY the item records refer to.
    pub source_uid_validity: u32,
    /// Destination UIDVALIDITY the destination UIDs refer to.
    pub destination_uid_validity: u32,
    /// Source UIDNEXT when the last complete pass over the folder started: every message
    /// below it was copied, excluded or failed.
    pub source_uid_next: u32,
    /// Source HIGHESTMODSEQ at the start of the last complete pass (CONDSTORE).
    pub highest_modseq: Option<u64>,
    /// Address books: the source's sync token after the last complete pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    /// Mail: the size limit (`max_message_size`) of the last complete pass. Messages over it
    /// were excluded and are below the checkpoint: a pass with a higher limit lists the whole
    /// folder again instead of what changed since (CONDSTORE), or they would never be copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<u64>,
    /// Mail: the fingerprint of the `[filter]` of the last complete pass (`None`: no filter,
    /// as every state written before filters existed). A pass under another filter lists the
    /// whole folder, so what the new filter lets in is found below the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<u64>,
}

/// One copied message: the ledger entry that prevents a second copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRecord {
    /// UID of the copy in the destination folder.
    pub dest_uid: u32,
    /// Fingerprint of the flags the copy has.
    pub flags_fingerprint: u64,
    /// BLAKE3 of the message bytes.
    pub hash: [u8; 32],
}

impl ItemRecord {
    const LEN: usize = 44;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.dest_uid.to_be_bytes());
        out[4..12].copy_from_slice(&self.flags_fingerprint.to_be_bytes());
        out[12..].copy_from_slice(&self.hash);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        Some(Self {
            dest_uid: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            flags_fingerprint: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            hash: bytes[12..].try_into().ok()?,
        })
    }
}

/// APPENDs about to be sent: enough to find them on the destination if the run stops before
/// their UIDs are recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Destination folder UIDVALIDITY when the APPEND was sent.
    pub dest_uid_validity: u32,
    /// Destination UIDNEXT before the APPEND: the copies, if any, have UIDs from here on.
    pub dest_uid_next: u32,
    /// `(source UID, flags fingerprint, BLAKE3 of the bytes)` of each message sent.
    pub items: Vec<(u32, u64, [u8; 32])>,
}

impl Store {
    /// The state of a folder, if it was ever copied.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn folder_state(
        &self,
        job: JobKey,
        folder: FolderKey,
    ) -> Result<Option<FolderState>, StoreError> {
        let h = self.handle("reading a folder state")?;
        let key = [job.0, folder.0].concat();
        self.get_sealed(&h, &h.folders, "folders", &key, "folder state")
    }

    /// Saves the state of a folder durably (it is a checkpoint a power cut must not lose).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_folder_state(
        &self,
        job: JobKey,
        folder: FolderKey,
        state: &FolderState,
    ) -> Result<(), StoreError> {
        let h = self.handle("saving a folder state")?;
        let key = [job.0, folder.0].concat();
        self.put_sealed(&h, &h.folders, "folders", &key, state, "folder state")?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting a folder state"))
    }

    /// Every copied message of a folder: source UID -> record.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn items(&self, folder: FolderKey) -> Result<HashMap<u32, ItemRecord>, StoreError> {
        self.scan_folder(
            "reading the ledger",
            |h| &h.items,
            folder,
            |k, v| match (key_uid(k), ItemRecord::decode(v)) {
                (Some(uid), Some(rec)) => Ok((uid, rec)),
                _ => Err(self.corrupt("ledger item", "wrong length")),
            },
        )
    }

    /// Every entry of one folder in one of the ledger's keyspaces (`keyspace` picks it), each
    /// decoded from its key and value by `decode`, which names what is corrupt when one does
    /// not decode.
    pub(crate) fn scan_folder<C, T>(
        &self,
        action: &'static str,
        keyspace: impl Fn(&Handle) -> &fjall::Keyspace,
        folder: FolderKey,
        mut decode: impl FnMut(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Result<C, StoreError>
    where
        C: FromIterator<T>,
    {
        let h = self.handle(action)?;
        keyspace(&h)
            .prefix(folder.0)
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(self.err(&h, action))?;
                decode(&k, &v)
            })
            .collect()
    }

    /// One copied message of a folder.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn item(&self, folder: FolderKey, uid: u32) -> Result<Option<ItemRecord>, StoreError> {
        let h = self.handle("reading the ledger")?;
        match h
            .items
            .get(Self::item_key(folder, uid))
            .map_err(self.err(&h, "reading the ledger"))?
        {
            Some(v) => ItemRecord::decode(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt("ledger item", "wrong length")),
            None => Ok(None),
        }
    }

    fn placement_key(&self, job: JobKey, content_key: &str) -> Vec<u8> {
        [
            &job.0[..],
            &self.keyed(&[b"content", &job.0, content_key.as_bytes()]),
        ]
        .concat()
    }

    /// Where a message seen in several folders (same content key) was first stored: the
    /// source folder and UID whose ledger entry holds its destination UID. Keys are keyed
    /// hashes: no message identifier is stored in clear.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn placement(
        &self,
        job: JobKey,
        content_key: &str,
    ) -> Result<Option<(FolderKey, u32)>, StoreError> {
        let h = self.handle("reading placements")?;
        let v = h
            .placements
            .get(self.placement_key(job, content_key))
            .map_err(self.err(&h, "reading placements"))?;
        Ok(v.and_then(|v| {
            let folder: [u8; 16] = v.get(..16)?.try_into().ok()?;
            let uid = u32::from_be_bytes(v.get(16..20)?.try_into().ok()?);
            Some((FolderKey(folder), uid))
        }))
    }

    /// Records where messages with a content key were stored (see [`Store::placement`]).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_placements(
        &self,
        job: JobKey,
        folder: FolderKey,
        placements: &[(String, u32)],
    ) -> Result<(), StoreError> {
        let h = self.handle("recording placements")?;
        if placements.is_empty() {
            return Ok(());
        }
        let mut batch = h.db.batch();
        self.add_placements(&h, &mut batch, job, folder, placements);
        batch.commit().map_err(self.err(&h, "recording placements"))
    }

    fn add_placements(
        &self,
        h: &Arc<Handle>,
        batch: &mut fjall::OwnedWriteBatch,
        job: JobKey,
        folder: FolderKey,
        placements: &[(String, u32)],
    ) {
        for (content_key, uid) in placements {
            batch.insert(
                &h.placements,
                self.placement_key(job, content_key),
                [&folder.0[..], &uid.to_be_bytes()].concat(),
            );
        }
    }

    pub(crate) fn item_key(folder: FolderKey, uid: u32) -> Vec<u8> {
        [&folder.0[..], &uid.to_be_bytes()].concat()
    }

    fn intent_key(folder: FolderKey, seq: u64) -> Vec<u8> {
        [&folder.0[..], &seq.to_be_bytes()].concat()
    }

    /// Records that APPENDs are about to be sent, durably, before they are sent.
    ///
    /// # Errors
    ///
    /// [`StoreError`]; the caller must not send the APPEND then.
    pub fn begin_intent(&self, folder: FolderKey, intent: &Intent) -> Result<u64, StoreError> {
        let h = self.handle("writing an intent")?;
        let seq = self.shared.next_intent.fetch_add(1, Ordering::Relaxed);
        let value = rmp_serde::to_vec(intent).map_err(|e| self.corrupt("intent", e))?;
        h.intents
            .insert(Self::intent_key(folder, seq), value)
            .map_err(self.err(&h, "writing an intent"))?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting an intent"))?;
        Ok(seq)
    }

    /// Records copied messages and drops the intent that announced them, atomically.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn commit(
        &self,
        folder: FolderKey,
        intent: Option<u64>,
        items: &[(u32, ItemRecord)],
    ) -> Result<(), StoreError> {
        self.commit_placed(folder, intent, items, None)
    }

    /// As [`Store::commit`], recording in the same atomic batch where messages with a content
    /// key were stored (`job` and `(content key, source UID)` pairs).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn commit_placed(
        &self,
        folder: FolderKey,
        intent: Option<u64>,
        items: &[(u32, ItemRecord)],
        placements: Option<(JobKey, &[(String, u32)])>,
    ) -> Result<(), StoreError> {
        self.commit_with_flags(folder, intent, items, placements, &[])
    }

    /// As [`Store::commit_placed`], keeping in the same atomic batch the flags each copy got
    /// (`(source UID, flags)`, see [`Store::copied_flags`]).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn commit_with_flags(
        &self,
        folder: FolderKey,
        intent: Option<u64>,
        items: &[(u32, ItemRecord)],
        placements: Option<(JobKey, &[(String, u32)])>,
        flags: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError> {
        let h = self.handle("recording copied messages")?;
        let mut batch = h.db.batch();
        self.add_copied_flags(&h, &mut batch, folder, flags)?;
        if let Some((job, placements)) = placements {
            self.add_placements(&h, &mut batch, job, folder, placements);
        }
        for (uid, rec) in items {
            batch.insert(
                &h.items,
                Self::item_key(folder, *uid),
                rec.encode().to_vec(),
            );
        }
        if let Some(seq) = intent {
            batch.remove(&h.intents, Self::intent_key(folder, seq));
        }
        batch
            .commit()
            .map_err(self.err(&h, "recording copied messages"))
    }

    /// Records messages found on the destination for intents of an earlier run, and drops those
    /// intents, atomically and durably.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn resolve_intents(
        &self,
        folder: FolderKey,
        intents: &[u64],
        items: &[(u32, ItemRecord)],
    ) -> Result<(), StoreError> {
        let h = self.handle("resolving intents")?;
        let mut batch = h.db.batch();
        for (uid, rec) in items {
            batch.insert(
                &h.items,
                Self::item_key(folder, *uid),
                rec.encode().to_vec(),
            );
        }
        for seq in intents {
            batch.remove(&h.intents, Self::intent_key(folder, *seq));
        }
        batch.commit().map_err(self.err(&h, "resolving intents"))?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting resolved intents"))
    }

    /// Pending intents of a folder, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn intents(&self, folder: FolderKey) -> Result<Vec<(u64, Intent)>, StoreError> {
        self.scan_folder(
            "reading intents",
            |h| &h.intents,
            folder,
            |k, v| {
                let seq = k
                    .get(16..24)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| self.corrupt("intent", "bad key"))?;
                let intent: Intent =
                    rmp_serde::from_slice(v).map_err(|e| self.corrupt("intent", e))?;
                Ok((seq, intent))
            },
        )
    }

    /// Removes every item record of a folder (its source UIDVALIDITY changed and the records
    /// were re-keyed), in one atomic batch with the new records.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn replace_items(
        &self,
        folder: FolderKey,
        items: &[(u32, ItemRecord)],
    ) -> Result<(), StoreError> {
        let h = self.handle("re-keying the ledger")?;
        let mut batch = h.db.batch();
        for guard in h.items.prefix(folder.0) {
            let k = guard.key().map_err(self.err(&h, "reading the ledger"))?;
            batch.remove(&h.items, k);
        }
        // Flags kept by the old UIDs mean nothing under the new ones: those copies go back to
        // the source's flags winning.
        for guard in h.copied_flags.prefix(folder.0) {
            let k = guard.key().map_err(self.err(&h, "reading the ledger"))?;
            batch.remove(&h.copied_flags, k);
        }
        for (uid, rec) in items {
            batch.insert(
                &h.items,
                Self::item_key(folder, *uid),
                rec.encode().to_vec(),
            );
        }
        batch
            .commit()
            .map_err(self.err(&h, "re-keying the ledger"))?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting the ledger"))
    }

    fn add_copied_flags(
        &self,
        h: &Arc<Handle>,
        batch: &mut fjall::OwnedWriteBatch,
        folder: FolderKey,
        flags: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError> {
        for (uid, list) in flags {
            let key = Self::item_key(folder, *uid);
            let plain = rmp_serde::to_vec(list).map_err(|e| self.corrupt("copied flags", e))?;
            let sealed = self.shared.key.seal("copied_flags", &key, &plain);
            batch.insert(&h.copied_flags, key, sealed);
        }
        Ok(())
    }

    /// The flags each copy of a folder got when it was copied or last synced (source UID ->
    /// flags), for telling which side changed a message's flags. Copies recorded by a release
    /// without this have none.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn copied_flags(&self, folder: FolderKey) -> Result<HashMap<u32, Vec<String>>, StoreError> {
        self.scan_folder(
            "reading the ledger",
            |h| &h.copied_flags,
            folder,
            |k, v| {
                let uid =
                    key_uid(k).ok_or_else(|| self.corrupt("copied flags", "wrong key length"))?;
                let plain = self
                    .shared
                    .key
                    .open("copied_flags", k, v)
                    .map_err(|e| self.corrupt("copied flags", e))?;
                let list: Vec<String> =
                    rmp_serde::from_slice(&plain).map_err(|e| self.corrupt("copied flags", e))?;
                Ok((uid, list))
            },
        )
    }

    /// Records the flags copies have after a delta synced them, with their new records, in
    /// one atomic batch.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn sync_flags(
        &self,
        folder: FolderKey,
        items: &[(u32, ItemRecord)],
        flags: &[(u32, Vec<String>)],
    ) -> Result<(), StoreError> {
        self.commit_with_flags(folder, None, items, None, flags)
    }

    /// Removes the records of messages whose copies were expunged on the destination because
    /// the source expunged them (`sync_deletions`), in one atomic batch.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn remove_items(&self, folder: FolderKey, uids: &[u32]) -> Result<(), StoreError> {
        let h = self.handle("removing ledger records")?;
        if uids.is_empty() {
            return Ok(());
        }
        let mut batch = h.db.batch();
        for uid in uids {
            batch.remove(&h.items, Self::item_key(folder, *uid));
            batch.remove(&h.copied_flags, Self::item_key(folder, *uid));
            batch.remove(&h.refusals, Self::item_key(folder, *uid));
        }
        batch
            .commit()
            .map_err(self.err(&h, "removing ledger records"))?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting the ledger"))
    }
}

/// The source UID in an item key (folder key, then the UID big-endian).
pub(crate) fn key_uid(key: &[u8]) -> Option<u32> {
    key.get(16..20)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests;
