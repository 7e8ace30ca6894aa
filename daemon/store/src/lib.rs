//! The job store of migrated, on fjall. This crate alone knows the key layouts.
//!
//! Keyspaces:
//! - `meta`: `check` -> a known text sealed with the store key: a wrong key is refused at open,
//!   before anything is written; `probe` -> a fixed text written when the store opens again
//!   after a fault, to prove it takes writes.
//! - `jobs`: job id -> the job record (MessagePack, sealed: it holds credentials and addresses).
//! - `events`: job id ‖ 0 ‖ sequence (8) -> an event (MessagePack, sealed).
//! - `folders`: job key (16) ‖ folder key (16) -> [`FolderState`] (MessagePack, sealed: folder
//!   names are personal data).
//! - `items`: folder key (16) ‖ source UID (4, big-endian) -> [`ItemRecord`] (44 bytes).
//! - `intents`: folder key (16) ‖ sequence (8, big-endian) -> [`Intent`] (MessagePack): APPENDs
//!   that were sent but not yet recorded; resolved against the destination on resume.
//! - `items` also holds the contacts ledger: folder key (16) ‖ keyed hash of the source href
//!   (16) -> [`ContactRecord`] (MessagePack, sealed).
//! - `placements`: job key (16) ‖ keyed hash of a content key (16) -> folder key (16) ‖ source
//!   UID (4): where a message seen in several folders was first stored.
//! - `refusals`: folder key (16) ‖ source UID (4) -> [`Refusal`] (MessagePack, sealed): how
//!   many times in a row the destination refused a message, with which reply. A store written
//!   before this keyspace existed opens with it empty.
//!
//! Job and folder keys are keyed hashes (a key derived from the store key), so no key holds a
//! folder name, address or Message-ID. Item records and intents hold only UIDs, sizes, flag
//! fingerprints and content hashes, and stay in clear for speed.
//!
//! fjall is synchronous: callers in async code use `spawn_blocking`.
//!
//! Disk full, read-only file system, I/O error: fjall takes no write after a failed one (it
//! "poisons" the database), so the store closes itself at the first such error and every call
//! returns [`StoreError::Unavailable`] with the [`StoreFault`]. A closed store holds no file
//! open, so its file system can be checked, remounted or unmounted. [`Store::reopen`] opens it
//! again once the directory still holds this store and takes writes; fjall's journal recovery
//! drops a write that was cut short, so nothing written before is lost or damaged. An APPEND
//! whose ledger entry could not be written is found again through its intent (written durably
//! before the APPEND) by the next run.
//!
//! Here: the [`Store`] and its opening, the sealed values and keyed hashes every part
//! uses. The folder states, the message ledger and the intents are in `ledger`, the contacts
//! ledger in `contacts`, job records, events and settings in `records`, the faults that close
//! the store and its reopening in `faults`.

mod contacts;
mod crypto;
mod faults;
mod ledger;
mod records;
mod refusals;

pub use contacts::ContactRecord;
pub use crypto::{KeyError, StoreKey};
pub use faults::{FaultKind, StoreFault};
pub use ledger::{FolderState, Intent, ItemRecord};
pub use refusals::{REFUSALS_FOR_GOOD, Refusal};

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock, Weak};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::Serialize;

/// A store failure, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// fjall failed in a way that is not an I/O fault (a damaged journal or table).
    #[error("job store at {path}: {action} failed: {source}")]
    Fjall {
        /// The store directory.
        path: String,
        /// What was being done.
        action: &'static str,
        /// fjall's error.
        source: fjall::Error,
    },
    /// The store cannot be used now: its disk is full, its file system read-only or failing, or
    /// it is not there. The store closed itself (fjall refuses every write after a failed one);
    /// [`Store::reopen`] opens it again once it can be written. Nothing in it is damaged: what
    /// was written before stays, a write cut short is dropped when it is opened again.
    #[error("job store at {path}: {action} failed: {fault}")]
    Unavailable {
        /// The store directory.
        path: String,
        /// What was being done.
        action: &'static str,
        /// Why the store cannot be used.
        fault: StoreFault,
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
    /// The key given is not the key the store was written with.
    #[error(
        "job store at {path} cannot be opened with this key ({detail}). Nothing was changed. \
         Start with the key file or credential the store was created with"
    )]
    WrongKey {
        /// The store directory.
        path: String,
        /// Which key ids differ.
        detail: String,
    },
}

impl StoreError {
    /// Why the store cannot be used now, when that is what happened: a fault that passes once
    /// the disk has room again or the file system is writable again.
    pub fn fault(&self) -> Option<&StoreFault> {
        match self {
            Self::Unavailable { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

/// Key of a job in the store (a keyed hash of its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobKey([u8; 16]);

/// Key of a source folder of a job (a keyed hash of job id and folder name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FolderKey([u8; 16]);

/// The job store. Cheap to clone; every clone sees the store reopened after a fault.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What stays the same while the store is closed and opened again.
struct Shared {
    path: String,
    dir: PathBuf,
    key: StoreKey,
    hashing: [u8; 32],
    next_intent: AtomicU64,
    /// The sealed key check of this store: a store opened again must hold the same one (a
    /// store created anew in its place, say on an unmounted mount point, has another).
    identity: Vec<u8>,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// The open database, or `None` after a fault until [`Store::reopen`] succeeds.
    open: Option<Arc<Handle>>,
    /// The handle closed by a fault, while calls in flight still hold it.
    closing: Weak<Handle>,
    /// Why the store is closed.
    fault: Option<StoreFault>,
}

/// One opening of the fjall database: dropping the last clone closes every file.
struct Handle {
    db: Database,
    meta: Keyspace,
    jobs: Keyspace,
    events: Keyspace,
    folders: Keyspace,
    items: Keyspace,
    intents: Keyspace,
    placements: Keyspace,
    /// Mail: the flags each copy got when it was copied or its flags last synced, sealed
    /// (flag names may be personal), by the item's key. Absent for copies recorded before
    /// this keyspace existed: for them the source's flags win, as they always did.
    copied_flags: Keyspace,
    /// Mail: messages the destination refused, by the item's key (see `refusals`).
    refusals: Keyspace,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

const CHECK: &[u8] = b"migrated store v1";

impl Handle {
    fn open(dir: &Path, path: &str) -> Result<Self, StoreError> {
        let fj = |action| {
            move |source: fjall::Error| match StoreFault::of_fjall(&source) {
                Some(fault) => StoreError::Unavailable {
                    path: path.to_owned(),
                    action,
                    fault,
                },
                None => StoreError::Fjall {
                    path: path.to_owned(),
                    action,
                    source,
                },
            }
        };
        let db = Database::builder(dir).open().map_err(fj("opening"))?;
        let ks = |name: &'static str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(fj("opening a keyspace"))
        };
        Ok(Self {
            meta: ks("meta")?,
            jobs: ks("jobs")?,
            events: ks("events")?,
            folders: ks("folders")?,
            items: ks("items")?,
            intents: ks("intents")?,
            placements: ks("placements")?,
            copied_flags: ks("copied_flags")?,
            refusals: ks("refusals")?,
            db,
        })
    }

    /// The highest intent sequence number in the store.
    fn last_intent(&self) -> u64 {
        self.intents
            .last_key_value()
            .and_then(|g| g.key().ok())
            .and_then(|k| {
                k.get(16..24)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
            })
            .unwrap_or(0)
    }
}

impl Store {
    /// Opens (or creates) the store in a directory.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the directory and the failed step.
    pub fn open(path: &Path, key: StoreKey) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        let h = Handle::open(path, &p)?;
        let fj = |action| {
            let p = p.clone();
            move |source: fjall::Error| match StoreFault::of_fjall(&source) {
                Some(fault) => StoreError::Unavailable {
                    path: p,
                    action,
                    fault,
                },
                None => StoreError::Fjall {
                    path: p,
                    action,
                    source,
                },
            }
        };
        let identity = match h.meta.get("check").map_err(fj("reading the key check"))? {
            Some(sealed) => match key.open("meta", b"check", &sealed) {
                Ok(text) if text == CHECK => sealed.to_vec(),
                Ok(_) => {
                    return Err(StoreError::WrongKey {
                        path: p,
                        detail: "unexpected check value".into(),
                    });
                }
                Err(detail) => return Err(StoreError::WrongKey { path: p, detail }),
            },
            None => {
                if !h.folders.is_empty().map_err(fj("reading"))?
                    || !h.jobs.is_empty().map_err(fj("reading"))?
                {
                    return Err(StoreError::WrongKey {
                        path: p,
                        detail: "the store holds data but no key check; it was written by an older version".into(),
                    });
                }
                let sealed = key.seal("meta", b"check", CHECK);
                h.meta
                    .insert("check", sealed.clone())
                    .map_err(fj("writing the key check"))?;
                h.db.persist(PersistMode::SyncAll)
                    .map_err(fj("persisting the key check"))?;
                sealed
            }
        };
        let hashing = key.hashing_key();
        // Intent keys only need to be unique and increasing within this store.
        let start = h.last_intent();
        Ok(Self {
            shared: Arc::new(Shared {
                path: p,
                dir: path.to_owned(),
                key,
                hashing,
                next_intent: AtomicU64::new(start + 1),
                identity,
                state: RwLock::new(State {
                    open: Some(Arc::new(h)),
                    ..State::default()
                }),
            }),
        })
    }

    /// The store directory, as messages name it.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    fn state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.shared
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open database, or [`StoreError::Unavailable`] while the store is closed.
    fn handle(&self, action: &'static str) -> Result<Arc<Handle>, StoreError> {
        let st = self
            .shared
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &st.open {
            Some(h) => Ok(h.clone()),
            None => Err(StoreError::Unavailable {
                path: self.shared.path.clone(),
                action,
                fault: st.fault.clone().unwrap_or(StoreFault {
                    kind: FaultKind::Io,
                    detail: "closed".into(),
                }),
            }),
        }
    }

    fn corrupt(&self, what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.shared.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    fn keyed(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut h = blake3::Hasher::new_keyed(&self.shared.hashing);
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// Encodes (MessagePack), seals and writes one value; the caller decides on durability.
    fn put_sealed<T: Serialize>(
        &self,
        h: &Arc<Handle>,
        keyspace: &Keyspace,
        name: &'static str,
        key: &[u8],
        value: &T,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let plain = rmp_serde::to_vec_named(value).map_err(|e| self.corrupt(what, e))?;
        let sealed = self.shared.key.seal(name, key, &plain);
        keyspace.insert(key, sealed).map_err(self.err(h, "writing"))
    }

    /// Reads, opens and decodes one sealed value.
    fn get_sealed<T: serde::de::DeserializeOwned>(
        &self,
        h: &Arc<Handle>,
        keyspace: &Keyspace,
        name: &'static str,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match keyspace.get(key).map_err(self.err(h, "reading"))? {
            None => Ok(None),
            Some(v) => {
                let plain = self
                    .shared
                    .key
                    .open(name, key, &v)
                    .map_err(|e| self.corrupt(what, e))?;
                rmp_serde::from_slice(&plain)
                    .map(Some)
                    .map_err(|e| self.corrupt(what, e))
            }
        }
    }

    /// The key of a job.
    pub fn job_key(&self, job_id: &str) -> JobKey {
        JobKey(self.keyed(&[b"job", job_id.as_bytes()]))
    }

    /// The key of a source folder of a job.
    pub fn folder_key(&self, job: JobKey, source_folder: &str) -> FolderKey {
        FolderKey(self.keyed(&[b"folder", &job.0, source_folder.as_bytes()]))
    }

    /// Forces everything written so far to disk (before a clean shutdown).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn persist(&self) -> Result<(), StoreError> {
        let h = self.handle("persisting")?;
        h.db.persist(PersistMode::SyncAll)
            .map_err(self.err(&h, "persisting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("migrated-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn keys_hold_no_names() {
        let dir = temp_dir("names");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
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

    pub(super) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
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
    fn a_wrong_key_is_refused_and_changes_nothing() {
        let dir = temp_dir("wrongkey");
        {
            let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
            store.put_job("j1", &"record".to_owned()).unwrap();
        }
        let err = Store::open(&dir, StoreKey::from_bytes([2; 32])).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("Nothing was changed"), "{err}");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        assert_eq!(
            store.job::<String>("j1").unwrap().as_deref(),
            Some("record")
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
