//! What keeps the store from being written (disk full, read-only or failing file system, a
//! store that is not there), how such a fault closes the store, and how it opens again.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fjall::PersistMode;

use crate::{Handle, Store, StoreError};

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
    pub(crate) fn of_fjall(e: &fjall::Error) -> Option<Self> {
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

/// A file in the store's directory the store writes (and removes) before it opens again after
/// a fault: the directory takes writes and has at least this much room.
const PROBE_FILE: &str = ".write-probe";
const PROBE_BYTES: usize = 1 << 20;

impl Store {
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
            if matches!(source, fjall::Error::Poisoned) {
                // A write of fjall's own (a journal sync, a memtable flush) failed first, so
                // its words are lost: ask the file system what keeps it from taking writes
                // (read-only, full, failing), so the advice fits.
                if let Err(e) = probe(&self.shared.dir) {
                    fault = StoreFault::of_io(&e);
                }
            }
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

    pub(crate) fn err<'a>(
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
    use crate::StoreKey;
    use crate::tests::temp_dir;

    fn os_error(code: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(code)
    }

    /// Closes `store` the way a failed write does, with `error` as fjall's.
    fn fail(store: &Store, error: fjall::Error) -> StoreError {
        let h = store.handle("writing").unwrap();
        store.failed(&h, "writing", error)
    }

    #[test]
    fn io_errors_are_told_apart_by_what_the_system_says() {
        // ENOSPC, EDQUOT, EFBIG, EROFS, ENOENT, EIO on Linux.
        for (code, kind) in [
            (28, FaultKind::DiskFull),
            (122, FaultKind::DiskFull),
            (27, FaultKind::DiskFull),
            (30, FaultKind::ReadOnly),
            (2, FaultKind::Missing),
            (5, FaultKind::Io),
        ] {
            assert_eq!(
                StoreFault::of_io(&os_error(code)).kind,
                kind,
                "errno {code}"
            );
        }
        let full = StoreFault::of_io(&os_error(28));
        assert_eq!(
            full.to_string(),
            "its disk is full (No space left on device (os error 28))"
        );
    }

    #[test]
    fn io_errors_inside_fjall_errors_are_faults_and_damage_is_not() {
        let fault = StoreFault::of_fjall(&fjall::Error::Io(os_error(30))).unwrap();
        assert_eq!(fault.kind, FaultKind::ReadOnly);
        let poisoned = StoreFault::of_fjall(&fjall::Error::Poisoned).unwrap();
        assert_eq!(poisoned.kind, FaultKind::Io);
        assert!(
            poisoned.detail.contains("opened again"),
            "{}",
            poisoned.detail
        );
        assert_eq!(StoreFault::of_fjall(&fjall::Error::InvalidTrailer), None);
    }

    #[test]
    fn an_io_fault_closes_the_store_for_every_clone_until_it_is_reopened() {
        let dir = temp_dir("fault-reopen");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        store.put_job("j1", &"record".to_owned()).unwrap();
        assert_eq!(store.fault(), None);
        assert!(
            !store.reopen().unwrap(),
            "an open store is not opened again"
        );

        let err = fail(&store, fjall::Error::Io(os_error(28)));
        assert_eq!(err.fault().map(|f| f.kind), Some(FaultKind::DiskFull));
        let clone = store.clone();
        assert_eq!(clone.fault().map(|f| f.kind), Some(FaultKind::DiskFull));
        let err = clone.job::<String>("j1").unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Unavailable {
                    action: "reading a job",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("its disk is full"), "{err}");

        assert!(store.reopen().unwrap());
        assert_eq!(clone.fault(), None);
        assert_eq!(
            clone.job::<String>("j1").unwrap().as_deref(),
            Some("record"),
            "what was written before the fault is still there"
        );
        assert!(!dir.join(PROBE_FILE).exists(), "the write probe is removed");
        drop((store, clone));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_write_that_failed_first_names_the_fault() {
        let dir = temp_dir("fault-first");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        let h = store.handle("writing").unwrap();
        store.failed(&h, "writing", fjall::Error::Io(os_error(30)));
        // A call that held the same handle meets fjall refusing writes after the first error.
        let later = store.failed(&h, "writing", fjall::Error::Poisoned);
        assert_eq!(later.fault().map(|f| f.kind), Some(FaultKind::ReadOnly));
        drop(h);
        assert!(store.reopen().unwrap());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_directory_or_another_store_in_its_place_is_not_reopened() {
        let dir = temp_dir("fault-missing");
        let moved = dir.with_extension("moved");
        let _ = std::fs::remove_dir_all(&moved);
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        store.put_job("j1", &"record".to_owned()).unwrap();
        fail(&store, fjall::Error::Io(os_error(5)));

        // The file system unmounted: an empty mount point where the store was.
        std::fs::rename(&dir, &moved).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let err = store.reopen().unwrap_err();
        assert_eq!(err.fault().map(|f| f.kind), Some(FaultKind::Missing));
        assert!(
            err.to_string().contains("is its file system mounted?"),
            "{err}"
        );
        assert_eq!(store.fault().map(|f| f.kind), Some(FaultKind::Missing));
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "no store is created on the empty mount point"
        );

        // Another store, written with another key, in its place.
        std::fs::remove_dir(&dir).unwrap();
        drop(Store::open(&dir, StoreKey::from_bytes([2; 32])).unwrap());
        let err = store.reopen().unwrap_err();
        assert!(err.to_string().contains("holds another store"), "{err}");

        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::rename(&moved, &dir).unwrap();
        assert!(store.reopen().unwrap());
        assert_eq!(
            store.job::<String>("j1").unwrap().as_deref(),
            Some("record")
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
