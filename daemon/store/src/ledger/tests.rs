//! Unit tests of [`super`].

use super::*;
use crate::StoreKey;
use crate::tests::temp_dir;

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

const REC: ItemRecord = ItemRecord {
    dest_uid: 12,
    flags_fingerprint: 0x0102_0304_0506_0708,
    hash: [9; 32],
};

#[test]
fn item_records_are_44_bytes_and_other_lengths_do_not_decode() {
    let bytes = REC.encode();
    assert_eq!(bytes.len(), 44);
    assert_eq!(bytes[..4], 12u32.to_be_bytes());
    assert_eq!(ItemRecord::decode(&bytes), Some(REC));
    assert_eq!(ItemRecord::decode(&bytes[..43]), None);
    assert_eq!(ItemRecord::decode(&[bytes.as_slice(), &[0]].concat()), None);
}

#[test]
fn intent_numbers_keep_rising_across_openings_and_resolving_records_the_items() {
    let dir = temp_dir("intent-seq");
    let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
    let folder = store.folder_key(store.job_key("j"), "INBOX");
    let intent = |uid| Intent {
        dest_uid_validity: 5,
        dest_uid_next: 10,
        items: vec![(uid, 0, [uid as u8; 32])],
    };
    let first = store.begin_intent(folder, &intent(1)).unwrap();
    let second = store.begin_intent(folder, &intent(2)).unwrap();
    assert!(second > first);
    drop(store);

    let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
    let third = store.begin_intent(folder, &intent(3)).unwrap();
    assert!(third > second, "{third} follows {second} after reopening");
    let pending = store.intents(folder).unwrap();
    assert_eq!(
        pending.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [first, second, third],
        "oldest first"
    );
    assert_eq!(pending[1].1, intent(2));

    store
        .resolve_intents(folder, &[first, second], &[(1, REC)])
        .unwrap();
    assert_eq!(store.intents(folder).unwrap().len(), 1);
    assert_eq!(store.item(folder, 1).unwrap(), Some(REC));
    assert_eq!(store.item(folder, 2).unwrap(), None);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn placements_are_recorded_with_the_messages_and_per_job() {
    let dir = temp_dir("placements");
    let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
    let (job, other_job) = (store.job_key("j"), store.job_key("k"));
    let (inbox, label) = (
        store.folder_key(job, "INBOX"),
        store.folder_key(job, "Label"),
    );
    let placed = [("<a@example.org>".to_owned(), 7)];
    store
        .commit_placed(inbox, None, &[(7, REC)], Some((job, &placed)))
        .unwrap();
    assert_eq!(store.item(inbox, 7).unwrap(), Some(REC));
    assert_eq!(
        store.placement(job, "<a@example.org>").unwrap(),
        Some((inbox, 7))
    );
    assert_eq!(store.placement(job, "<b@example.org>").unwrap(), None);
    assert_eq!(store.placement(other_job, "<a@example.org>").unwrap(), None);

    store
        .put_placements(job, label, &[("<a@example.org>".to_owned(), 3)])
        .unwrap();
    assert_eq!(
        store.placement(job, "<a@example.org>").unwrap(),
        Some((label, 3)),
        "the last placement recorded wins"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn copied_flags_are_kept_sealed_and_records_without_them_still_load() {
    let dir = temp_dir("copied-flags");
    let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
    let folder = store.folder_key(store.job_key("j"), "INBOX");
    let rec = ItemRecord {
        dest_uid: 1,
        flags_fingerprint: 0,
        hash: [0; 32],
    };
    // As the previous release recorded: no flags.
    store.commit(folder, None, &[(1, rec)]).unwrap();
    let flags = vec!["\\Seen".to_owned(), "$Projekt".to_owned()];
    store
        .commit_with_flags(folder, None, &[(2, rec)], None, &[(2, flags.clone())])
        .unwrap();
    assert_eq!(store.items(folder).unwrap().len(), 2);
    let kept = store.copied_flags(folder).unwrap();
    assert_eq!(kept.len(), 1, "the old record has none");
    assert_eq!(kept[&2], flags);
    drop(store);
    let store = Store::open(&dir, StoreKey::from_bytes([1; 32])).unwrap();
    store.remove_items(folder, &[2]).unwrap();
    assert!(store.copied_flags(folder).unwrap().is_empty());
    assert_eq!(store.items(folder).unwrap().len(), 1);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
