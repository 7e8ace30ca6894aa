//! Job records, their event logs and daemon-wide settings (all sealed), and the removal of
//! what a job left in the store.

use fjall::PersistMode;
use serde::Serialize;

use crate::{Store, StoreError};

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

    /// Forgets what a job copied (folder states, ledger, intents, the refusals counted) and
    /// keeps its record and events: the next run copies everything again, and tries again the
    /// messages refused for good.
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
                for flags in h.copied_flags.prefix(folder) {
                    batch.remove(
                        &h.copied_flags,
                        flags.key().map_err(self.err(&h, "reading the ledger"))?,
                    );
                }
                for refusal in h.refusals.prefix(folder) {
                    batch.remove(
                        &h.refusals,
                        refusal
                            .key()
                            .map_err(self.err(&h, "reading the refusals"))?,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{temp_dir, walk};
    use crate::{FolderState, Intent, ItemRecord, StoreKey};

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

    #[test]
    fn events_come_back_oldest_first_and_only_for_their_job() {
        let dir = temp_dir("events");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        store.put_event("j1", 2, &"second".to_owned()).unwrap();
        store.put_event("j1", 1, &"first".to_owned()).unwrap();
        // `j1` is a prefix of `j10`: the 0 after the id keeps their events apart.
        store.put_event("j10", 1, &"other job".to_owned()).unwrap();
        assert_eq!(
            store.events::<String>("j1").unwrap(),
            [(1, "first".to_owned()), (2, "second".to_owned())]
        );
        assert_eq!(store.events::<String>("j10").unwrap().len(), 1);
        assert!(store.events::<String>("j2").unwrap().is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn job_records_and_settings_are_read_back_by_name() {
        let dir = temp_dir("records");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        store.put_job("a", &1u32).unwrap();
        store.put_job("b", &2u32).unwrap();
        store.put_job("a", &3u32).unwrap();
        let mut jobs = store.jobs::<u32>().unwrap();
        jobs.sort();
        assert_eq!(jobs, [("a".to_owned(), 3), ("b".to_owned(), 2)]);
        assert_eq!(store.job::<u32>("c").unwrap(), None);

        assert_eq!(store.setting::<Vec<String>>("consumed").unwrap(), None);
        let consumed = vec!["a.toml".to_owned(), "b.toml".to_owned()];
        store.put_setting("consumed", &consumed).unwrap();
        drop(store);
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        assert_eq!(
            store.setting::<Vec<String>>("consumed").unwrap(),
            Some(consumed)
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resetting_a_job_keeps_its_record_and_events_and_forgets_what_it_copied() {
        let dir = temp_dir("reset");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        store.put_job("j1", &"record".to_owned()).unwrap();
        store.put_event("j1", 1, &"started".to_owned()).unwrap();
        let job = store.job_key("j1");
        let folder = store.folder_key(job, "INBOX");
        store
            .put_folder_state(job, folder, &FolderState::default())
            .unwrap();
        let rec = ItemRecord {
            dest_uid: 1,
            flags_fingerprint: 0,
            hash: [0; 32],
        };
        let placed = [("<a@example.org>".to_owned(), 1)];
        store
            .commit_placed(folder, None, &[(1, rec)], Some((job, &placed)))
            .unwrap();
        store.begin_intent(folder, &Intent::default()).unwrap();

        store.reset_job("j1").unwrap();
        assert_eq!(
            store.job::<String>("j1").unwrap().as_deref(),
            Some("record")
        );
        assert_eq!(store.events::<String>("j1").unwrap().len(), 1);
        assert!(store.folder_state(job, folder).unwrap().is_none());
        assert!(store.items(folder).unwrap().is_empty());
        assert!(store.intents(folder).unwrap().is_empty());
        assert_eq!(store.placement(job, "<a@example.org>").unwrap(), None);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
