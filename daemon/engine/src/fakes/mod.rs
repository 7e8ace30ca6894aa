//! In-memory fakes of a mail source and a mail destination (and of a contacts source and
//! destination, in `contacts`), for the engine's unit tests: the engine runs against them in
//! milliseconds, with a real store in a temporary directory.
//!
//! A [`Mailbox`] is an account's folders and messages. A [`FakeSource`] and a
//! [`FakeDestination`] share theirs with the test (`Arc<Mutex<..>>`), which reads it after a
//! run and changes it between runs. Failures are injected through [`Faults`]: a connection
//! cut after so many bytes, an APPEND that lands but whose reply is lost, a full mailbox; a
//! UIDVALIDITY change is [`Mailbox::renumber`] between runs.

pub(crate) mod contacts;
mod mail;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use migrated_core::{Flags, SpecialUse};
use migrated_store::{Store, StoreKey};

pub(crate) use mail::{FakeDestination, FakeSource};

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub body: Vec<u8>,
    pub flags: Flags,
    pub internal_date: String,
}

/// One folder: its UIDs and messages.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub messages: BTreeMap<u32, Stored>,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
}

/// What goes wrong, and when. Each fault fires once, then clears.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// The connection breaks once this many more message bytes would have crossed it (bodies
    /// fetched from a source, appended to a destination); the command in flight is lost.
    pub cut_after_bytes: Option<u64>,
    /// The next this many APPENDs are stored, but their reply is lost: the session reports a
    /// broken connection.
    pub late_appends: u32,
    /// The account holds at most this many message bytes; an APPEND beyond is refused with
    /// `NO [OVERQUOTA]`.
    pub quota_bytes: Option<u64>,
    /// The next APPEND's reply is lost (the session reports a broken connection) while the
    /// server is still storing it: its messages land at the this-many-th opening of a folder
    /// after it (a server that goes on storing what a killed client had sent).
    pub stored_at_open: Option<u32>,
    /// Every APPEND of a message holding these bytes is refused, permanently, in Cyrus's words
    /// for a bad header (`NO Message contains invalid header`); this one does not clear.
    pub refuse_containing: Option<Vec<u8>>,
}

/// An APPEND the server is still storing: where, after how many more folder openings, what.
#[derive(Debug, Clone)]
pub(crate) struct Landing {
    pub folder: String,
    pub opens_left: u32,
    pub messages: Vec<(Vec<u8>, Flags, String)>,
}

/// Counts of what the fake was asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Sessions opened.
    pub connections: u32,
    /// APPEND commands that stored something.
    pub appends: u32,
    /// Messages stored by APPEND (a message appended twice counts twice).
    pub appended: u32,
    /// Message bytes fetched from this account.
    pub fetched_bytes: u64,
    /// Faults that fired.
    pub faults_fired: u32,
    /// APPEND commands refused by [`Faults::refuse_containing`].
    pub refused: u32,
}

/// An account: folders, namespace, faults and counts.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    pub prefix: String,
    pub delimiter: char,
    pub folders: BTreeMap<String, Folder>,
    pub faults: Faults,
    pub counts: Counts,
    /// An APPEND still being stored ([`Faults::stored_at_open`]).
    pub landing: Option<Landing>,
    /// The next UIDVALIDITY a created or renumbered folder gets.
    next_validity: u32,
}

/// A mailbox shared between a fake and its test.
pub(crate) type Shared = Arc<Mutex<Mailbox>>;

/// The lock of a shared mailbox (a test that panicked holding it poisons nothing else).
pub(crate) fn lock(m: &Shared) -> MutexGuard<'_, Mailbox> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A message body, unique per folder and number, with a Message-ID and `pad` bytes of text.
pub(crate) fn body(folder: &str, n: u32, pad: usize) -> Vec<u8> {
    let mut b = format!(
        "Message-ID: <{n}.{}@fake.example>\r\nSubject: message {n} of {folder}\r\n\r\n",
        folder.replace(['/', '.', ' '], "-")
    )
    .into_bytes();
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\r\n");
    b
}

impl Mailbox {
    /// An account without folders (not even INBOX).
    pub(crate) fn new(prefix: &str, delimiter: char) -> Self {
        Self {
            prefix: prefix.to_owned(),
            delimiter,
            folders: BTreeMap::new(),
            faults: Faults::default(),
            counts: Counts::default(),
            landing: None,
            next_validity: 1000,
        }
    }

    /// Shares it.
    pub(crate) fn shared(self) -> Shared {
        Arc::new(Mutex::new(self))
    }

    /// Adds an empty folder (with a role), unless it exists.
    pub(crate) fn folder(mut self, name: &str, role: Option<SpecialUse>) -> Self {
        self.create(name, role);
        self
    }

    /// Adds a folder with `count` messages of `pad` bytes of text each.
    pub(crate) fn with_messages(mut self, name: &str, count: u32, pad: usize) -> Self {
        self.create(name, None);
        for n in 1..=count {
            self.add(name, body(name, n, pad), Flags::new(["\\Seen"]));
        }
        self
    }

    /// Creates a folder unless it exists.
    pub(crate) fn create(&mut self, name: &str, role: Option<SpecialUse>) {
        if self.folders.contains_key(name) {
            return;
        }
        self.next_validity += 1;
        self.folders.insert(
            name.to_owned(),
            Folder {
                uid_validity: self.next_validity,
                uid_next: 1,
                messages: BTreeMap::new(),
                special_use: role,
                subscribed: true,
            },
        );
    }

    /// Stores a message in a folder that exists; returns its UID.
    /// A folder is being opened: an APPEND still being stored lands when its time has come.
    pub(crate) fn opening(&mut self) {
        let Some(l) = &mut self.landing else { return };
        l.opens_left = l.opens_left.saturating_sub(1);
        if l.opens_left > 0 {
            return;
        }
        if let Some(l) = self.landing.take() {
            for (body, flags, date) in l.messages {
                let uid = self.add(&l.folder, body, flags);
                if let Some(s) = self
                    .folders
                    .get_mut(&l.folder)
                    .and_then(|f| f.messages.get_mut(&uid))
                {
                    s.internal_date = date;
                }
                self.counts.appended += 1;
            }
            self.counts.appends += 1;
        }
    }

    pub(crate) fn add(&mut self, folder: &str, body: Vec<u8>, flags: Flags) -> u32 {
        let f = self.folders.get_mut(folder).expect("the folder exists");
        let uid = f.uid_next;
        f.uid_next += 1;
        f.messages.insert(
            uid,
            Stored {
                body,
                flags,
                internal_date: "17-Jul-1996 02:44:25 -0700".to_owned(),
            },
        );
        uid
    }

    /// The folder's UIDVALIDITY changes and every message gets a new UID (from `first_uid`),
    /// as a server does after rebuilding its index.
    pub(crate) fn renumber(&mut self, folder: &str, first_uid: u32) {
        self.next_validity += 1;
        let validity = self.next_validity;
        let f = self.folders.get_mut(folder).expect("the folder exists");
        let old = std::mem::take(&mut f.messages);
        f.uid_validity = validity;
        f.uid_next = first_uid;
        for (_, m) in old {
            f.messages.insert(f.uid_next, m);
            f.uid_next += 1;
        }
    }

    /// The bodies of a folder, in UID order.
    pub(crate) fn bodies(&self, folder: &str) -> Vec<Vec<u8>> {
        self.folders
            .get(folder)
            .map(|f| f.messages.values().map(|m| m.body.clone()).collect())
            .unwrap_or_default()
    }

    /// Message bytes over every folder.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.folders
            .values()
            .flat_map(|f| f.messages.values())
            .map(|m| m.body.len() as u64)
            .sum()
    }
}

/// A store in a directory of its own, removed when dropped.
pub(crate) struct TempStore {
    pub store: Store,
    dir: PathBuf,
}

impl TempStore {
    /// A fresh store named after the test.
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("migrated-engine-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, StoreKey::from_bytes([3; 32])).expect("store opens");
        Self { store, dir }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
