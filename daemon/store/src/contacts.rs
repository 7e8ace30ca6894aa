//! The address-book ledger: one sealed record per copied contact, keyed by a keyed hash of
//! its source href (hrefs can name people).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{FolderKey, Store, StoreError};

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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreKey;
    use crate::tests::temp_dir;

    #[test]
    fn contacts_are_found_by_href_and_unknown_hrefs_are_left_out() {
        let dir = temp_dir("contacts");
        let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
        let book = store.folder_key(store.job_key("j"), "contacts");
        let record = ContactRecord {
            dest_href: "/dav/alice.vcf".into(),
            source_etag: "\"1\"".into(),
            dest_etag: None,
        };
        store
            .put_contacts(book, &[("/src/alice.vcf".into(), record.clone())])
            .unwrap();
        let found = store
            .contacts(book, &["/src/alice.vcf".into(), "/src/bob.vcf".into()])
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found.get("/src/alice.vcf"), Some(&record));
        let other_book = store.folder_key(store.job_key("j"), "work");
        assert!(
            store
                .contacts(other_book, &["/src/alice.vcf".into()])
                .unwrap()
                .is_empty()
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
