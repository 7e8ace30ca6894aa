//! The job store of migrated, on fjall. This module alone knows the key layouts.
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

mod crypto;

pub use crypto::{KeyError, StoreKey};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};

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

/// What keeps the store from being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// No space left on the device (or the disk quota is used up).
    DiskFull,
    /// The file system is read-only (remounted read-only, often by the kernel after an error).
    ReadOnly,
    /// The store directory holds no store (its file system is not mounted?) or another store.
    Missing,
    /// Another I/O error (a failing disk).
    Io,
}

/// Why the store cannot be used now, with the system's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFault {
    /// What kind of fault.
    pub kind: FaultKind,
    /// The system's words, e.g. `No space left on device (os error 28)`.
    pub detail: String,
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            FaultKind::DiskFull => "its disk is full",
            FaultKind::ReadOnly => "its file system is read-only",
            FaultKind::Missing => "it is not there",
            FaultKind::Io => "an I/O error",
        };
        write!(f, "{what} ({})", self.detail)
    }
}

impl StoreFault {
    fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => FaultKind::DiskFull,
            K::ReadOnlyFilesystem => FaultKind::ReadOnly,
            K::NotFound => FaultKind::Missing,
            _ => FaultKind::Io,
        };
        Self {
            kind,
            detail: e.to_string(),
        }
    }

    /// The fault behind a fjall error, if it is an I/O fault (or fjall refusing writes after
    /// one): `None` for damage and other errors.
    fn of_fjall(e: &fjall::Error) -> Option<Self> {
        if matches!(e, fjall::Error::Poisoned) {
            return Some(Self {
                kind: FaultKind::Io,
                detail: "a write failed before; fjall takes no more writes until the store is opened again".into(),
            });
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                return Some(Self::of_io(io));
            }
            cause = c.source();
        }
        None
    }
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
    /// Address books: the source's sync token after the last complete pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
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

/// One copied contact: the ledger entry that prevents a second copy (sealed in the store: it
/// holds hrefs, which can name people).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// Where the copy is on the destination.
    pub dest_href: String,
    /// The source's ETag when it was copied: a different one means the contact changed.
    pub source_etag: String,
    /// The destination's ETag after the PUT, when the server sent one.
    pub dest_etag: Option<String>,
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

const CHECK: &[u8] = b"migrated store v1";
/// A file in the store's directory the store writes (and removes) before it opens again after
/// a fault: the directory takes writes and has at least this much room.
const PROBE_FILE: &str = ".write-probe";
const PROBE_BYTES: usize = 1 << 20;

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

    /// Why the store is closed, or `None` while it is open.
    pub fn fault(&self) -> Option<StoreFault> {
        let st = self
            .shared
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &st.open {
            Some(_) => None,
            None => Some(st.fault.clone().unwrap_or(StoreFault {
                kind: FaultKind::Io,
                detail: "closed".into(),
            })),
        }
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

    /// A fjall error met while using `h`: an I/O fault closes the store (fjall takes no write
    /// after a failed one, and a closed store holds no file open, so its file system can be
    /// checked, remounted or unmounted); other errors are returned as they are.
    fn failed(&self, h: &Arc<Handle>, action: &'static str, source: fjall::Error) -> StoreError {
        let Some(mut fault) = StoreFault::of_fjall(&source) else {
            return StoreError::Fjall {
                path: self.shared.path.clone(),
                action,
                source,
            };
        };
        let mut st = self.state();
        if st.open.as_ref().is_some_and(|o| Arc::ptr_eq(o, h)) {
            st.open = None;
            st.closing = Arc::downgrade(h);
            st.fault = Some(fault.clone());
        } else if let (fjall::Error::Poisoned, Some(first)) = (&source, &st.fault) {
            // The write that failed first says why.
            fault = first.clone();
        }
        StoreError::Unavailable {
            path: self.shared.path.clone(),
            action,
            fault,
        }
    }

    fn err<'a>(
        &'a self,
        h: &'a Arc<Handle>,
        action: &'static str,
    ) -> impl FnOnce(fjall::Error) -> StoreError + 'a {
        move |source| self.failed(h, action, source)
    }

    /// Opens the store again after a fault, once it can be written: the directory must still
    /// hold this store (not an empty mount point, not another store), take a write of
    /// [`PROBE_BYTES`], and fjall must open it and persist a write. fjall's recovery drops a
    /// write that was cut short. Returns `Ok(false)` when the store was open already.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] with the fault that remains: the store stays closed and
    /// holds no file open.
    pub fn reopen(&self) -> Result<bool, StoreError> {
        let unavailable = |action, fault| StoreError::Unavailable {
            path: self.shared.path.clone(),
            action,
            fault,
        };
        let mut st = self.state();
        if st.open.is_some() {
            return Ok(false);
        }
        // Calls in flight when the fault came end quickly (they only meet errors now); fjall
        // closes its files when the last of them lets go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while st.closing.strong_count() > 0 {
            if std::time::Instant::now() >= deadline {
                let fault = st.fault.clone().unwrap_or(StoreFault {
                    kind: FaultKind::Io,
                    detail: "the store is still in use".into(),
                });
                return Err(unavailable("reopening", fault));
            }
            drop(st);
            std::thread::sleep(std::time::Duration::from_millis(10));
            st = self.state();
        }
        match self.try_reopen() {
            Ok(h) => {
                self.shared
                    .next_intent
                    .fetch_max(h.last_intent() + 1, Ordering::Relaxed);
                st.open = Some(Arc::new(h));
                st.fault = None;
                Ok(true)
            }
            Err((action, fault)) => {
                st.fault = Some(fault.clone());
                Err(unavailable(action, fault))
            }
        }
    }

    fn try_reopen(&self) -> Result<Handle, (&'static str, StoreFault)> {
        let dir = &self.shared.dir;
        let missing = |detail: &str| StoreFault {
            kind: FaultKind::Missing,
            detail: detail.to_owned(),
        };
        // fjall writes `version` first when it creates a store: without it this is not the
        // store (an unmounted mount point?), and opening would create an empty one.
        match dir.join("version").try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err((
                    "opening",
                    missing("the directory holds no store; is its file system mounted?"),
                ));
            }
            Err(e) => return Err(("opening", StoreFault::of_io(&e))),
        }
        probe(dir).map_err(|e| ("writing a test file", StoreFault::of_io(&e)))?;
        let h = Handle::open(dir, &self.shared.path).map_err(|e| match e {
            StoreError::Unavailable { action, fault, .. } => (action, fault),
            other => (
                "opening",
                StoreFault {
                    kind: FaultKind::Io,
                    detail: other.to_string(),
                },
            ),
        })?;
        let fault = |action| {
            move |e: fjall::Error| {
                (
                    action,
                    StoreFault::of_fjall(&e).unwrap_or(StoreFault {
                        kind: FaultKind::Io,
                        detail: e.to_string(),
                    }),
                )
            }
        };
        let check = h
            .meta
            .get("check")
            .map_err(fault("reading the key check"))?;
        if check.as_deref() != Some(&self.shared.identity[..]) {
            return Err((
                "opening",
                missing("the directory holds another store than the one the daemon started with"),
            ));
        }
        h.meta.insert("probe", "ok").map_err(fault("writing"))?;
        h.db.persist(PersistMode::SyncAll)
            .map_err(fault("persisting"))?;
        Ok(h)
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
        let h = self.handle("reading the ledger")?;
        let mut out = HashMap::new();
        for guard in h.items.prefix(folder.0) {
            let (k, v) = guard
                .into_inner()
                .map_err(self.err(&h, "reading the ledger"))?;
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

    fn contact_key(&self, folder: FolderKey, href: &str) -> Vec<u8> {
        [
            &folder.0[..],
            &self.keyed(&[b"contact", &folder.0, href.as_bytes()]),
        ]
        .concat()
    }

    /// The ledger entries of these contacts of an address book (by source href).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn contacts(
        &self,
        folder: FolderKey,
        hrefs: &[String],
    ) -> Result<HashMap<String, ContactRecord>, StoreError> {
        let h = self.handle("reading the contacts ledger")?;
        let mut out = HashMap::new();
        for href in hrefs {
            let key = self.contact_key(folder, href);
            if let Some(r) = self.get_sealed(&h, &h.items, "items", &key, "contact")? {
                out.insert(href.clone(), r);
            }
        }
        Ok(out)
    }

    /// Records copied contacts (source href, record), in one atomic batch.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_contacts(
        &self,
        folder: FolderKey,
        records: &[(String, ContactRecord)],
    ) -> Result<(), StoreError> {
        let h = self.handle("recording copied contacts")?;
        let mut batch = h.db.batch();
        for (href, record) in records {
            let key = self.contact_key(folder, href);
            let plain = rmp_serde::to_vec_named(record).map_err(|e| self.corrupt("contact", e))?;
            let sealed = self.shared.key.seal("items", &key, &plain);
            batch.insert(&h.items, key, sealed);
        }
        batch
            .commit()
            .map_err(self.err(&h, "recording copied contacts"))
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
        let h = self.handle("recording copied messages")?;
        let mut batch = h.db.batch();
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
        let h = self.handle("reading intents")?;
        let mut out = Vec::new();
        for guard in h.intents.prefix(folder.0) {
            let (k, v) = guard
                .into_inner()
                .map_err(self.err(&h, "reading intents"))?;
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
        let h = self.handle("re-keying the ledger")?;
        let mut batch = h.db.batch();
        for guard in h.items.prefix(folder.0) {
            let k = guard.key().map_err(self.err(&h, "reading the ledger"))?;
            batch.remove(&h.items, k);
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
}

impl Store {
    /// Saves a job record (sealed), durably: job records are checkpoints.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_job<T: Serialize>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        let h = self.handle("saving a job")?;
        self.put_sealed(&h, &h.jobs, "jobs", id.as_bytes(), record, "job")?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting a job"))
    }

    /// Reads a job record.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn job<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let h = self.handle("reading a job")?;
        self.get_sealed(&h, &h.jobs, "jobs", id.as_bytes(), "job")
    }

    /// Every job record, by id.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn jobs<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        let h = self.handle("reading jobs")?;
        let mut out = Vec::new();
        for guard in h.jobs.iter() {
            let (k, v) = guard.into_inner().map_err(self.err(&h, "reading jobs"))?;
            let plain = self
                .shared
                .key
                .open("jobs", &k, &v)
                .map_err(|e| self.corrupt("job", e))?;
            let record = rmp_serde::from_slice(&plain).map_err(|e| self.corrupt("job", e))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), record));
        }
        Ok(out)
    }

    fn event_key(id: &str, seq: u64) -> Vec<u8> {
        [id.as_bytes(), &[0], &seq.to_be_bytes()].concat()
    }

    /// Appends an event to a job's log (sealed; buffered durability: losing the last events in
    /// a power cut loses no mail).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_event<T: Serialize>(&self, id: &str, seq: u64, event: &T) -> Result<(), StoreError> {
        let h = self.handle("saving an event")?;
        // Buffered durability: losing the last events in a power cut loses no mail.
        self.put_sealed(
            &h,
            &h.events,
            "events",
            &Self::event_key(id, seq),
            event,
            "event",
        )
    }

    /// A job's events, oldest first, with their sequence numbers.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn events<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let h = self.handle("reading events")?;
        let mut out = Vec::new();
        let prefix = [id.as_bytes(), &[0]].concat();
        for guard in h.events.prefix(&prefix) {
            let (k, v) = guard.into_inner().map_err(self.err(&h, "reading events"))?;
            let seq = k
                .get(prefix.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| self.corrupt("event", "bad key"))?;
            let plain = self
                .shared
                .key
                .open("events", &k, &v)
                .map_err(|e| self.corrupt("event", e))?;
            out.push((
                seq,
                rmp_serde::from_slice(&plain).map_err(|e| self.corrupt("event", e))?,
            ));
        }
        Ok(out)
    }

    /// Deletes everything the store holds for a job: record, events, folder states, ledger and
    /// intents, in one atomic batch, durably.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn delete_job(&self, id: &str) -> Result<(), StoreError> {
        self.remove_job_data(id, true)
    }

    /// Forgets what a job copied (folder states, ledger, intents) and keeps its record and
    /// events: the next run copies everything again.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn reset_job(&self, id: &str) -> Result<(), StoreError> {
        self.remove_job_data(id, false)
    }

    fn remove_job_data(&self, id: &str, record_too: bool) -> Result<(), StoreError> {
        let h = self.handle("deleting a job's data")?;
        let job = self.job_key(id);
        let mut batch = h.db.batch();
        if record_too {
            batch.remove(&h.jobs, id.as_bytes());
            for guard in h.events.prefix([id.as_bytes(), &[0]].concat()) {
                batch.remove(
                    &h.events,
                    guard.key().map_err(self.err(&h, "reading events"))?,
                );
            }
        }
        for guard in h.folders.prefix(job.0) {
            let k = guard.key().map_err(self.err(&h, "reading folders"))?;
            if let Some(folder) = k.get(16..32) {
                for item in h.items.prefix(folder) {
                    batch.remove(
                        &h.items,
                        item.key().map_err(self.err(&h, "reading the ledger"))?,
                    );
                }
                for intent in h.intents.prefix(folder) {
                    batch.remove(
                        &h.intents,
                        intent.key().map_err(self.err(&h, "reading intents"))?,
                    );
                }
            }
            batch.remove(&h.folders, k);
        }
        for guard in h.placements.prefix(job.0) {
            batch.remove(
                &h.placements,
                guard.key().map_err(self.err(&h, "reading placements"))?,
            );
        }
        batch
            .commit()
            .map_err(self.err(&h, "deleting a job's data"))?;
        h.db.persist(PersistMode::SyncAll)
            .map_err(self.err(&h, "persisting a deletion"))
    }

    /// Saves a daemon-wide setting (sealed, durable), e.g. the drop-in files already consumed.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_setting<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let h = self.handle("saving a setting")?;
        let key = format!("setting/{name}");
        self.put_sealed(&h, &h.meta, "meta", key.as_bytes(), value, "setting")?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting a setting"))
    }

    /// Reads a daemon-wide setting.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn setting<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let h = self.handle("reading a setting")?;
        let key = format!("setting/{name}");
        self.get_sealed(&h, &h.meta, "meta", key.as_bytes(), "setting")
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

/// Writes, syncs and removes a test file of [`PROBE_BYTES`] in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..PROBE_BYTES / chunk.len() {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    })();
    let removed = std::fs::remove_file(&path);
    written.and(removed)
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
    fn items_and_intents_survive_reopening() {
        let dir = temp_dir("reopen");
        let rec = ItemRecord {
            dest_uid: 9,
            flags_fingerprint: 3,
            hash: [7; 32],
        };
        let (job, folder, seq);
        {
            let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
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
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        assert_eq!(
            store.job_key("job-1"),
            job,
            "keys are stable across openings"
        );
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
    fn replacing_items_drops_the_old_records() {
        let dir = temp_dir("replace");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
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

#[cfg(test)]
mod job_tests {
    use super::tests::{temp_dir, walk};
    use super::*;

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

    #[test]
    fn deleting_a_job_removes_all_its_data_and_no_secret_is_in_clear() {
        let dir = temp_dir("delete");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        store
            .put_job("j1", &"password=Hunter2-very-secret".to_owned())
            .unwrap();
        store.put_job("j2", &"other".to_owned()).unwrap();
        store
            .put_event("j1", 1, &"alice@example.org logged in".to_owned())
            .unwrap();
        let job = store.job_key("j1");
        let folder = store.folder_key(job, "INBOX");
        store
            .put_folder_state(
                job,
                folder,
                &FolderState {
                    source: "Privat".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let rec = ItemRecord {
            dest_uid: 1,
            flags_fingerprint: 0,
            hash: [0; 32],
        };
        store.commit(folder, None, &[(1, rec)]).unwrap();
        store.begin_intent(folder, &Intent::default()).unwrap();
        store.persist().unwrap();
        for needle in [&b"Hunter2-very-secret"[..], b"alice@example.org", b"Privat"] {
            for f in walk(&dir) {
                let bytes = std::fs::read(&f).unwrap();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds {:?}",
                    f.display(),
                    needle
                );
            }
        }
        store.delete_job("j1").unwrap();
        assert!(store.job::<String>("j1").unwrap().is_none());
        assert!(store.events::<String>("j1").unwrap().is_empty());
        assert!(store.folder_state(job, folder).unwrap().is_none());
        assert!(store.items(folder).unwrap().is_empty());
        assert!(store.intents(folder).unwrap().is_empty());
        assert_eq!(store.job::<String>("j2").unwrap().as_deref(), Some("other"));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
