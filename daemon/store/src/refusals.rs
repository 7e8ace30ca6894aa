//! Messages the destination refused: how many times in a row, with which reply, into which
//! destination folder. A message refused [`REFUSALS_FOR_GOOD`] times with the same reply is not
//! sent again by later runs (the engine reports it as refused for good). Sealed: a server's
//! reply can quote a folder name or an address.
//!
//! The keyspace `refusals` is new in this release: a store written by an earlier one opens with
//! it empty (fjall creates it), so every message there starts with no refusal counted.

use std::collections::HashMap;

use fjall::PersistMode;
use serde::{Deserialize, Serialize};

use crate::{FolderKey, Store, StoreError};

pub use migrated_core::refusal::REFUSALS_FOR_GOOD;

/// The refusals of one source message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The destination's words the last time (the whole error, its reply quoted).
    pub reply: String,
    /// Refusals in a row with that reply.
    pub count: u32,
    /// The destination folder it was refused into and that folder's UIDVALIDITY then, and the
    /// source folder's UIDVALIDITY: the count holds for this message into that folder only (a
    /// new destination, a folder made anew, a renumbered source start again from nothing).
    pub destination: String,
    /// See `destination`.
    pub destination_uid_validity: u32,
    /// See `destination`.
    pub source_uid_validity: u32,
}

impl Refusal {
    /// Whether it still counts for the message `source_uid_validity` names, copied into
    /// `destination` whose UIDVALIDITY is `destination_uid_validity`.
    pub fn applies(
        &self,
        source_uid_validity: u32,
        destination: &str,
        destination_uid_validity: u32,
    ) -> bool {
        self.source_uid_validity == source_uid_validity
            && self.destination == destination
            && self.destination_uid_validity == destination_uid_validity
    }

    /// Refused for good: not sent again.
    pub fn for_good(&self) -> bool {
        self.count >= REFUSALS_FOR_GOOD
    }

    /// The record after one more refusal with `reply` (`previous` when it still applies).
    pub fn next(
        previous: Option<&Refusal>,
        reply: &str,
        destination: &str,
        destination_uid_validity: u32,
        source_uid_validity: u32,
    ) -> Refusal {
        let count = match previous {
            Some(p)
                if p.reply == reply
                    && p.applies(source_uid_validity, destination, destination_uid_validity) =>
            {
                p.count + 1
            }
            _ => 1,
        };
        Refusal {
            reply: reply.to_owned(),
            count,
            destination: destination.to_owned(),
            destination_uid_validity,
            source_uid_validity,
        }
    }
}

impl Store {
    /// The refusals recorded for a folder's messages (source UID -> refusal).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn refusals(&self, folder: FolderKey) -> Result<HashMap<u32, Refusal>, StoreError> {
        self.scan_folder(
            "reading the refusals",
            |h| &h.refusals,
            folder,
            |k, v| {
                let uid = crate::ledger::key_uid(k)
                    .ok_or_else(|| self.corrupt("refusal", "wrong key length"))?;
                let plain = self
                    .shared
                    .key
                    .open("refusals", k, v)
                    .map_err(|e| self.corrupt("refusal", e))?;
                let r: Refusal =
                    rmp_serde::from_slice(&plain).map_err(|e| self.corrupt("refusal", e))?;
                Ok((uid, r))
            },
        )
    }

    /// Records refusals and forgets those of messages since stored, in one atomic batch.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub fn put_refusals(
        &self,
        folder: FolderKey,
        refused: &[(u32, Refusal)],
        stored: &[u32],
    ) -> Result<(), StoreError> {
        if refused.is_empty() && stored.is_empty() {
            return Ok(());
        }
        let h = self.handle("recording refusals")?;
        let mut batch = h.db.batch();
        for uid in stored {
            batch.remove(&h.refusals, Self::item_key(folder, *uid));
        }
        for (uid, r) in refused {
            let key = Self::item_key(folder, *uid);
            let plain = rmp_serde::to_vec_named(r).map_err(|e| self.corrupt("refusal", e))?;
            let sealed = self.shared.key.seal("refusals", &key, &plain);
            batch.insert(&h.refusals, key, sealed);
        }
        batch.commit().map_err(self.err(&h, "recording refusals"))?;
        h.db.persist(PersistMode::SyncData)
            .map_err(self.err(&h, "persisting the refusals"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreKey;
    use crate::tests::temp_dir;

    #[test]
    fn refusals_count_the_same_reply_in_a_row_and_survive_reopening_and_go_with_a_reset() {
        let dir = temp_dir("refusals");
        let s = Store::open(&dir, StoreKey::from_bytes([3; 32])).unwrap();
        let job = s.job_key("j");
        let f = s.folder_key(job, "INBOX");
        // The folder must be known for a reset to find its refusals.
        s.put_folder_state(
            job,
            f,
            &crate::FolderState {
                source: "INBOX".into(),
                destination: "INBOX".into(),
                source_uid_validity: 1,
                destination_uid_validity: 2,
                source_uid_next: 0,
                highest_modseq: None,
                sync_token: None,
                size_limit: None,
                filter: None,
            },
        )
        .unwrap();
        let mut r = None;
        for _ in 0..3 {
            let next = Refusal::next(r.as_ref(), "NO invalid header", "INBOX", 2, 1);
            s.put_refusals(f, &[(7, next.clone())], &[]).unwrap();
            r = Some(next);
        }
        drop(s);
        let s = Store::open(&dir, StoreKey::from_bytes([3; 32])).unwrap();
        let got = s.refusals(f).unwrap();
        assert_eq!(got[&7].count, 3);
        assert!(got[&7].for_good());
        // Another reply starts again; so does another destination folder.
        assert_eq!(
            Refusal::next(got.get(&7), "NO other", "INBOX", 2, 1).count,
            1
        );
        assert_eq!(
            Refusal::next(got.get(&7), "NO invalid header", "INBOX", 9, 1).count,
            1
        );
        assert!(!got[&7].applies(1, "INBOX", 9));
        // Stored at last: forgotten.
        s.put_refusals(f, &[(8, got[&7].clone())], &[7]).unwrap();
        assert_eq!(
            s.refusals(f).unwrap().keys().copied().collect::<Vec<_>>(),
            [8]
        );
        // A reset forgets the rest.
        s.reset_job("j").unwrap();
        assert!(s.refusals(f).unwrap().is_empty());
    }
}
