//! The job store of migrated, on fjall. This module alone knows the key layouts.
//!
//! Keyspaces:
//! - `meta`: `salt` -> 32 random bytes keying the hashes that make up keys, so that no key
//!   holds a folder name, address or Message-ID.
//! - `folders`: job key (16) ‖ folder key (16) -> [`FolderState`] (MessagePack).
//! - `items`: folder key (16) ‖ source UID (4, big-endian) -> [`ItemRecord`] (44 bytes).
//! - `intents`: folder key (16) ‖ sequence (8, big-endian) -> [`Intent`] (MessagePack): APPENDs
//!   that were sent but not yet recorded; resolved against the destination on resume.
//!
//! fjall is synchronous: callers in async code use `spawn_blocking`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};

/// A store failure, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// fjall failed (disk full, read-only file system, corruption).
    #[error("job store at {path}: {action} failed: {source}")]
    Fjall {
        /// The store directory.
        path: String,
        /// What was being done.
        action: &'static str,
        /// fjall's error.
        source: fjall::Error,
    },
    /// A value that does not decode: the store was written by an incompatible version or damaged.
    #[error(
        "job store at {path}: a {what} record does not decode ({detail}); the store may be damaged"
    )]
    Corrupt {
        /// The store directory.
        path: String,
        /// Which record.
        what: &'static str,
        /// Decoder's reason.
        detail: String,
    },
    /// The salt could not be created.
    #[error("job store at {path}: cannot read random bytes for the key salt: {source}")]
    Random {
        /// The store directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

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

/// Key of a job in the store (a keyed hash of its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobKey([u8; 16]);

/// Key of a source folder of a job (a keyed hash of job id and folder name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FolderKey([u8; 16]);

/// The job store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    db: Database,
    folders: Keyspace,
    items: Keyspace,
    intents: Keyspace,
    salt: [u8; 32],
    next_intent: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in a directory.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the directory and the failed step.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        let fj = |action| {
            let p = p.clone();
            move |source| StoreError::Fjall {
                path: p,
                action,
                source,
            }
        };
        let db = Database::builder(path).open().map_err(fj("opening"))?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(fj("opening keyspace meta"))?;
        let folders = db
            .keyspace("folders", KeyspaceCreateOptions::default)
            .map_err(fj("opening keyspace folders"))?;
        let items = db
            .keyspace("items", KeyspaceCreateOptions::default)
            .map_err(fj("opening keyspace items"))?;
        let intents = db
            .keyspace("intents", KeyspaceCreateOptions::default)
            .map_err(fj("opening keyspace intents"))?;
        let salt = match meta.get("salt").map_err(fj("reading the salt"))? {
            Some(v) if v.len() == 32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(&v);
                s
            }
            _ => {
                let mut s = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut s))
                    .map_err(|source| StoreError::Random {
                        path: p.clone(),
                        source,
                    })?;
                meta.insert("salt", s.to_vec())
                    .map_err(fj("writing the salt"))?;
                db.persist(PersistMode::SyncAll)
                    .map_err(fj("persisting the salt"))?;
                s
            }
        };
        // Intent keys only need to be unique and increasing within this store.
        let start = intents
            .last_key_value()
            .and_then(|g| g.key().ok())
            .and_then(|k| {
                k.get(16..24)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
            })
            .unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner {
                path: p,
                db,
                folders,
                items,
                intents,
                salt,
                next_intent: AtomicU64::new(start + 1),
            }),
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(fjall::Error) -> StoreError + '_ {
        move |source| StoreError::Fjall {
            path: self.inner.path.clone(),
            action,
            source,
        }
    }

    fn corrupt(&self, what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.inner.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    fn keyed(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut h = blake3::Hasher::new_keyed(&self.inner.salt);
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// The key of a job.
    pub fn job_key(&self, job_id: &str) -> JobKey {
        JobKey(self.keyed(&[b"job", job_id.as_bytes()]))
    }

    /// The key of a source folder of a job.
    pub fn folder_key(&self, job: JobKey, source_folder: &str) -> FolderKey {
        FolderKey(self.keyed(&[b"folder", &job.0, source_folder.as_bytes()]))
    }

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
        let key = [job.0, folder.0].concat();
        match self
            .inner
            .folders
            .get(key)
            .map_err(self.err("reading a folder state"))?
        {
            None => Ok(None),
            Some(v) => rmp_serde::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt("folder state", e)),
        }
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
        let key = [job.0, folder.0].concat();
        let value = rmp_serde::to_vec(state).map_err(|e| self.corrupt("folder state", e))?;
        self.inner
            .folders
            .insert(key, value)
            .map_err(self.err("writing a folder state"))?;
        self.inner
            .db
            .persist(PersistMode::SyncData)
            .map_err(self.err("persisting a folder state"))
    }

    /// Every copied message of a folder: source UID -> record.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn items(&self, folder: FolderKey) -> Result<HashMap<u32, ItemRecord>, StoreError> {
        let mut out = HashMap::new();
        for guard in self.inner.items.prefix(folder.0) {
            let (k, v) = guard.into_inner().map_err(self.err("reading the ledger"))?;
            let uid = k
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes);
            let (Some(uid), Some(rec)) = (uid, ItemRecord::decode(&v)) else {
                return Err(self.corrupt("ledger item", "wrong length"));
            };
            out.insert(uid, rec);
        }
        Ok(out)
    }

    fn item_key(folder: FolderKey, uid: u32) -> Vec<u8> {
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
        let seq = self.inner.next_intent.fetch_add(1, Ordering::Relaxed);
        let value = rmp_serde::to_vec(intent).map_err(|e| self.corrupt("intent", e))?;
        self.inner
            .intents
            .insert(Self::intent_key(folder, seq), value)
            .map_err(self.err("writing an intent"))?;
        self.inner
            .db
            .persist(PersistMode::SyncData)
            .map_err(self.err("persisting an intent"))?;
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
        let mut batch = self.inner.db.batch();
        for (uid, rec) in items {
            batch.insert(
                &self.inner.items,
                Self::item_key(folder, *uid),
                rec.encode().to_vec(),
            );
        }
        if let Some(seq) = intent {
            batch.remove(&self.inner.intents, Self::intent_key(folder, seq));
        }
        batch
            .commit()
            .map_err(self.err("recording copied messages"))
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
        let mut batch = self.inner.db.batch();
        for (uid, rec) in items {
            batch.insert(
                &self.inner.items,
                Self::item_key(folder, *uid),
                rec.encode().to_vec(),
            );
        }
        for seq in intents {
            batch.remove(&self.inner.intents, Self::intent_key(folder, *seq));
        }
        batch.commit().map_err(self.err("resolving intents"))?;
        self.inner
            .db
            .persist(PersistMode::SyncData)
            .map_err(self.err("persisting resolved intents"))
    }

    /// Pending intents of a folder, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn intents(&self, folder: FolderKey) -> Result<Vec<(u64, Intent)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.inner.intents.prefix(folder.0) {
            let (k, v) = guard.into_inner().map_err(self.err("reading intents"))?;
            let seq = k
                .get(16..24)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| self.corrupt("intent", "bad key"))?;
            let intent: Intent =
                rmp_serde::from_slice(&v).map_err(|e| self.corrupt("intent", e))?;
            out.push((seq, intent));
        }
        Ok(out)
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
        let mut batch = self.inner.db.batch();
        for guard in self.inner.items.prefix(folder.0) {
            let k = guard.key().map_err(self.err("reading the ledger"))?;
            batch.remove(&self.inner.items, k);
        }
        for (uid, rec) in items {
            batch.insert(
                &self.inner.items,
                Self::item_key(folder, *uid),
                rec.encode().to_vec(),
            );
        }
        batch.commit().map_err(self.err("re-keying the ledger"))?;
        self.inner
            .db
            .persist(PersistMode::SyncData)
            .map_err(self.err("persisting the ledger"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("migrated-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn items_and_intents_survive_reopening() {
        let dir = temp_dir("reopen");
        let rec = ItemRecord {
            dest_uid: 9,
            flags_fingerprint: 3,
            hash: [7; 32],
        };
        let (job, folder, seq);
        {
            let store = Store::open(&dir).unwrap();
            job = store.job_key("job-1");
            folder = store.folder_key(job, "INBOX");
            store.commit(folder, None, &[(1, rec)]).unwrap();
            seq = store
                .begin_intent(
                    folder,
                    &Intent {
                        dest_uid_validity: 5,
                        dest_uid_next: 10,
                        items: vec![(2, 0, [1; 32])],
                    },
                )
                .unwrap();
            let state = FolderState {
                source: "INBOX".into(),
                source_uid_next: 3,
                ..Default::default()
            };
            store.put_folder_state(job, folder, &state).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.job_key("job-1"), job, "the salt is kept");
        assert_eq!(store.items(folder).unwrap().get(&1), Some(&rec));
        let intents = store.intents(folder).unwrap();
        assert_eq!(intents.len(), 1);
        assert_eq!(intents[0].0, seq);
        store.commit(folder, Some(seq), &[(2, rec)]).unwrap();
        assert!(store.intents(folder).unwrap().is_empty());
        assert_eq!(store.items(folder).unwrap().len(), 2);
        assert_eq!(
            store
                .folder_state(job, folder)
                .unwrap()
                .unwrap()
                .source_uid_next,
            3
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_hold_no_names() {
        let dir = temp_dir("names");
        let store = Store::open(&dir).unwrap();
        let job = store.job_key("alice@example.org");
        let folder = store.folder_key(job, "Geheim");
        store
            .commit(
                folder,
                None,
                &[(
                    1,
                    ItemRecord {
                        dest_uid: 1,
                        flags_fingerprint: 0,
                        hash: [0; 32],
                    },
                )],
            )
            .unwrap();
        drop(store);
        for entry in walk(&dir) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !contains(&bytes, b"alice@example.org"),
                "{}",
                entry.display()
            );
            assert!(!contains(&bytes, b"Geheim"), "{}", entry.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
        out
    }

    #[test]
    fn replacing_items_drops_the_old_records() {
        let dir = temp_dir("replace");
        let store = Store::open(&dir).unwrap();
        let folder = store.folder_key(store.job_key("j"), "INBOX");
        let rec = ItemRecord {
            dest_uid: 1,
            flags_fingerprint: 0,
            hash: [0; 32],
        };
        store.commit(folder, None, &[(1, rec), (2, rec)]).unwrap();
        store.replace_items(folder, &[(50, rec)]).unwrap();
        let items = store.items(folder).unwrap();
        assert_eq!(items.keys().copied().collect::<Vec<_>>(), [50]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
