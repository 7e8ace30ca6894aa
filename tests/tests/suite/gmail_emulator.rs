//! The Gmail emulator against our own IMAP client (migrated-imap), a raw async-imap client and
//! hand-read wire bytes: login, folders and SPECIAL-USE (English and German), listing and exact
//! bodies of All Mail, per-folder UIDs, label mutations, X-GM-LABELS in every wire form, the
//! X-GM-EXT-1 SEARCH keys, read-only refusals and Gmail's answer to a wrong password.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::TryStreamExt;
use migrated_imap::{
    AppendItem, AuthMethod, CertCheck, Endpoint, ImapError, ImapSession, Secret, Security,
};
use testbed::gmail::{
    GmailEmulator, GmailMessage, GmailOptions, LABEL_DRAFT, LABEL_IMPORTANT, LABEL_INBOX,
    LABEL_SENT, LABEL_SPAM, LABEL_STARRED, LABEL_TRASH, LabelLiterals, Locale, sample_mailbox,
};
use testbed::mutf7;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const USER: &str = "someone@gmail.example";
const PASSWORD: &str = "app-password-1234";
const T: Duration = Duration::from_secs(10);

fn endpoint(emu: &GmailEmulator, password: &str) -> Endpoint {
    Endpoint {
        host: emu.host().into(),
        port: emu.port(),
        security: Security::Plain,
        cert_check: CertCheck::System,
        auth: AuthMethod::Login,
        user: USER.into(),
        secret: Secret::new(password),
        admin: None,
        oauth: None,
        timeout: T,
    }
}

async fn connect(emu: &GmailEmulator) -> ImapSession {
    ImapSession::connect(&endpoint(emu, PASSWORD))
        .await
        .expect("our client logs in to the emulator")
}

/// The messages of a folder in UID order, from the emulator's own model.
fn folder_messages(emu: &GmailEmulator, folder: &str) -> Vec<(u32, GmailMessage)> {
    emu.folder_uids(folder)
        .unwrap_or_else(|| panic!("no folder {folder}"))
        .into_iter()
        .map(|(uid, id)| (uid, emu.message(id).unwrap()))
        .collect()
}

/// A bare IMAP connection that returns untagged responses as raw bytes (literals included).
struct Raw {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    next: u32,
}

impl Raw {
    async fn connect(port: u16) -> Self {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (rd, wr) = tcp.into_split();
        let mut raw = Self {
            rd: BufReader::new(rd),
            wr,
            next: 1,
        };
        let greeting = raw.response().await;
        assert!(greeting.starts_with(b"* OK Gimap ready"), "{greeting:?}");
        raw
    }

    async fn login(port: u16) -> Self {
        let mut raw = Self::connect(port).await;
        let (_, done) = raw.cmd(&format!("LOGIN \"{USER}\" \"{PASSWORD}\"")).await;
        assert!(done.contains(" OK "), "{done}");
        raw
    }

    /// One response: a line, and after each `{n}` its n bytes and the rest of the line.
    async fn response(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        loop {
            let start = buf.len();
            let n = tokio::time::timeout(T, self.rd.read_until(b'\n', &mut buf))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed");
            let line = &buf[start..];
            let Some(open) = line.iter().rposition(|&b| b == b'{') else {
                return buf;
            };
            let Some(len) = std::str::from_utf8(&line[open + 1..])
                .ok()
                .and_then(|s| s.strip_suffix("}\r\n"))
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return buf;
            };
            let at = buf.len();
            buf.resize(at + len, 0);
            self.rd.read_exact(&mut buf[at..]).await.unwrap();
        }
    }

    /// Sends a command; returns its untagged responses and the tagged line.
    async fn cmd(&mut self, command: &str) -> (Vec<Vec<u8>>, String) {
        let tag = format!("t{}", self.next);
        self.next += 1;
        self.wr
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut untagged = Vec::new();
        loop {
            let r = self.response().await;
            if r.starts_with(format!("{tag} ").as_bytes()) {
                return (
                    untagged,
                    String::from_utf8(r).unwrap().trim_end().to_owned(),
                );
            }
            untagged.push(r);
        }
    }

    async fn ok(&mut self, command: &str) -> Vec<Vec<u8>> {
        let (untagged, done) = self.cmd(command).await;
        assert!(done.split(' ').nth(1) == Some("OK"), "{command}: {done}");
        untagged
    }

    /// UIDs of a `* SEARCH` reply.
    async fn search(&mut self, command: &str) -> BTreeSet<u32> {
        let untagged = self.ok(command).await;
        let lines: Vec<String> = untagged
            .iter()
            .map(|r| String::from_utf8_lossy(r).trim_end().to_owned())
            .filter(|l| l.starts_with("* SEARCH"))
            .collect();
        assert_eq!(lines.len(), 1, "{command}: {untagged:?}");
        lines[0]
            .split(' ')
            .skip(2)
            .map(|n| n.parse().unwrap())
            .collect()
    }
}

/// How one X-GM-LABELS entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    Atom,
    Quoted,
    Literal,
}

/// Reads `X-GM-LABELS (...)` and `UID n` out of one FETCH response by hand: `(uid, [(label as
/// sent, unescaped), form])`.
fn parse_fetch_labels(response: &[u8]) -> (u32, Vec<(String, Form)>) {
    let find = |needle: &[u8]| {
        response
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + needle.len())
    };
    let uid_at = find(b"UID ").expect("UID in the reply");
    let digits: String = response[uid_at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    let uid = digits.parse().unwrap();
    let mut i = find(b"X-GM-LABELS (").expect("X-GM-LABELS in the reply");
    let mut labels = Vec::new();
    loop {
        match response[i] {
            b')' => break,
            b' ' => i += 1,
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while response[i] != b'"' {
                    if response[i] == b'\\' {
                        i += 1;
                    }
                    s.push(response[i]);
                    i += 1;
                }
                i += 1;
                labels.push((String::from_utf8(s).unwrap(), Form::Quoted));
            }
            b'{' => {
                let close = i + response[i..].iter().position(|&b| b == b'}').unwrap();
                let n: usize = std::str::from_utf8(&response[i + 1..close])
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(&response[close + 1..close + 3], b"\r\n");
                let start = close + 3;
                labels.push((
                    String::from_utf8(response[start..start + n].to_vec()).unwrap(),
                    Form::Literal,
                ));
                i = start + n;
            }
            _ => {
                let start = i;
                while response[i] != b' ' && response[i] != b')' {
                    i += 1;
                }
                labels.push((
                    String::from_utf8(response[start..i].to_vec()).unwrap(),
                    Form::Atom,
                ));
            }
        }
    }
    (uid, labels)
}

/// Decodes a label as sent (modified UTF-7 for user labels; system labels as they are).
fn decode_label(wire: &str) -> String {
    if wire.starts_with('\\') {
        wire.to_owned()
    } else {
        mutf7::decode(wire).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_logs_in_and_lists_gmail_folders() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(40))
        .await
        .unwrap();
    let mut s = connect(&emu).await;
    for cap in [
        "IMAP4rev1",
        "X-GM-EXT-1",
        "NAMESPACE",
        "LIST-EXTENDED",
        "SPECIAL-USE",
        "UIDPLUS",
        "MOVE",
    ] {
        assert!(s.has(cap), "announces {cap}");
    }
    for cap in ["CONDSTORE", "LITERAL+", "MULTIAPPEND", "COMPRESS=DEFLATE"] {
        assert!(!s.has(cap), "does not announce {cap}");
    }
    assert_eq!(s.namespace(), ("", '/'));

    let folders = s.list().await.unwrap();
    let by_name: BTreeMap<&str, _> = folders.iter().map(|f| (f.name.as_str(), f)).collect();
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "INBOX",
            "My Label",
            "Work",
            "Work/Projects",
            "Überweisungen",
            "日本",
            "[Gmail]",
            "[Gmail]/All Mail",
            "[Gmail]/Drafts",
            "[Gmail]/Important",
            "[Gmail]/Sent Mail",
            "[Gmail]/Spam",
            "[Gmail]/Starred",
            "[Gmail]/Trash",
        ]
    );
    assert_eq!(emu.folders(), names);
    let roles: BTreeMap<&str, &str> = folders
        .iter()
        .filter_map(|f| Some((f.special_use.as_deref()?, f.name.as_str())))
        .collect();
    assert_eq!(
        roles,
        BTreeMap::from([
            ("\\All", "[Gmail]/All Mail"),
            ("\\Drafts", "[Gmail]/Drafts"),
            ("\\Flagged", "[Gmail]/Starred"),
            ("\\Important", "[Gmail]/Important"),
            ("\\Junk", "[Gmail]/Spam"),
            ("\\Sent", "[Gmail]/Sent Mail"),
            ("\\Trash", "[Gmail]/Trash"),
        ])
    );
    assert!(by_name["[Gmail]"].no_select);
    assert!(
        folders
            .iter()
            .filter(|f| f.name != "[Gmail]")
            .all(|f| !f.no_select)
    );
    assert!(
        folders
            .iter()
            .all(|f| f.delimiter == Some('/') && f.subscribed)
    );
    // `[Gmail]` cannot be opened.
    let err = s.open("[Gmail]", true).await.unwrap_err();
    assert!(matches!(err, ImapError::No { .. }), "{err}");
    s.logout().await;

    // The wire form, attribute for attribute.
    let mut raw = Raw::login(emu.port()).await;
    let listed: Vec<String> = raw
        .ok("LIST \"\" \"*\"")
        .await
        .iter()
        .map(|r| String::from_utf8(r.clone()).unwrap().trim_end().to_owned())
        .collect();
    for line in [
        r#"* LIST (\HasNoChildren) "/" "INBOX""#,
        r#"* LIST (\HasChildren) "/" "Work""#,
        r#"* LIST (\HasNoChildren) "/" "Work/Projects""#,
        r#"* LIST (\HasNoChildren) "/" "&ANw-berweisungen""#,
        r#"* LIST (\HasNoChildren) "/" "&ZeVnLA-""#,
        r#"* LIST (\HasChildren \Noselect) "/" "[Gmail]""#,
        r#"* LIST (\HasNoChildren \All) "/" "[Gmail]/All Mail""#,
        r#"* LIST (\HasNoChildren \Important) "/" "[Gmail]/Important""#,
        r#"* LIST (\HasNoChildren \Junk) "/" "[Gmail]/Spam""#,
    ] {
        assert!(listed.iter().any(|l| l == line), "{line} in {listed:#?}");
    }
    let percent = raw.ok("LIST \"\" \"%\"").await;
    let top: Vec<String> = percent
        .iter()
        .map(|r| {
            let line = String::from_utf8_lossy(r);
            line.split_once(" \"/\" ").unwrap().1.trim_end().to_owned()
        })
        .collect();
    assert_eq!(
        top,
        [
            "\"INBOX\"",
            "\"My Label\"",
            "\"Work\"",
            "\"&ANw-berweisungen\"",
            "\"&ZeVnLA-\"",
            "\"[Gmail]\""
        ],
    );
    let special = raw.ok("LIST (SPECIAL-USE) \"\" \"*\"").await;
    assert_eq!(
        special.len(),
        7,
        "\\All \\Drafts \\Important \\Sent \\Junk \\Flagged \\Trash"
    );
    let status = raw
        .ok("LIST \"\" \"INBOX\" RETURN (STATUS (MESSAGES UIDNEXT))")
        .await;
    let inbox = emu.folder_uids("INBOX").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status[1]).trim_end(),
        format!(
            "* STATUS \"INBOX\" (MESSAGES {} UIDNEXT {})",
            inbox.len(),
            inbox.last().unwrap().0 + 1
        )
    );
    let xlist = raw.ok("XLIST \"\" \"*\"").await;
    assert!(
        xlist
            .iter()
            .any(|r| r.starts_with(br#"* XLIST (\HasNoChildren \AllMail) "/" "[Gmail]/All Mail""#))
    );
    raw.ok("LOGOUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn german_gmail_is_found_by_special_use() {
    let emu = GmailEmulator::start_localized(USER, PASSWORD, sample_mailbox(40), Locale::German)
        .await
        .unwrap();
    let mut s = connect(&emu).await;
    let folders = s.list().await.unwrap();
    let roles: BTreeMap<&str, &str> = folders
        .iter()
        .filter_map(|f| Some((f.special_use.as_deref()?, f.name.as_str())))
        .collect();
    assert_eq!(
        roles,
        BTreeMap::from([
            ("\\All", "[Gmail]/Alle Nachrichten"),
            ("\\Drafts", "[Gmail]/Entwürfe"),
            ("\\Flagged", "[Gmail]/Markiert"),
            ("\\Important", "[Gmail]/Wichtig"),
            ("\\Junk", "[Gmail]/Spam"),
            ("\\Sent", "[Gmail]/Gesendet"),
            ("\\Trash", "[Gmail]/Papierkorb"),
        ])
    );
    assert!(!folders.iter().any(|f| f.name.contains("All Mail")));

    let all = roles["\\All"];
    let state = s.open(all, true).await.unwrap();
    let expected = folder_messages(&emu, all);
    assert_eq!(state.messages as usize, expected.len());
    let drafts = s.open(roles["\\Drafts"], true).await.unwrap();
    assert_eq!(
        drafts.messages as usize,
        emu.messages()
            .iter()
            .filter(|m| m.has_label(LABEL_DRAFT))
            .count()
    );
    s.logout().await;

    // On the wire, "Entwürfe" is modified UTF-7.
    let mut raw = Raw::login(emu.port()).await;
    let listed = raw.ok("LIST \"\" \"[Gmail]/*\"").await;
    assert!(
        listed.iter().any(
            |r| r.starts_with(br#"* LIST (\HasNoChildren \Drafts) "/" "[Gmail]/Entw&APw-rfe""#)
        ),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mail_listing_and_bodies_are_exact() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(60))
        .await
        .unwrap();
    let all = folder_messages(&emu, "[Gmail]/All Mail");
    let model = emu.messages();
    let outside = model
        .iter()
        .filter(|m| m.has_label(LABEL_TRASH) || m.has_label(LABEL_SPAM))
        .count();
    assert!(outside >= 2, "the sample has Trash and Spam");
    assert_eq!(
        all.len(),
        model.len() - outside,
        "All Mail: all but Trash and Spam"
    );
    assert!(
        all.iter().any(|(_, m)| m.labels.is_empty()),
        "archived messages (no label) are in All Mail"
    );

    let mut s = connect(&emu).await;
    let state = s.open("[Gmail]/All Mail", true).await.unwrap();
    let (validity, next) = emu.folder_state("[Gmail]/All Mail").unwrap();
    assert_eq!(state.messages as usize, all.len());
    assert_eq!(state.uid_validity, validity);
    assert_eq!(state.uid_next, next);
    assert_eq!(state.highest_modseq, None);

    let meta = s.fetch_meta(1, None).await.unwrap();
    assert_eq!(meta.len(), all.len());
    for (got, (uid, m)) in meta.iter().zip(&all) {
        assert_eq!(got.uid, *uid);
        assert_eq!(got.size as usize, m.body.len());
        assert_eq!(got.internal_date, m.internal_date);
        assert_eq!(got.flags, m.flags);
        assert_eq!(got.message_id, m.message_id());
        assert!(
            got.message_id
                .as_deref()
                .unwrap()
                .starts_with("<gmail-sample-")
        );
    }
    // Paging, and `n:*` past the end.
    let page = s.fetch_meta_range(3, Some(7), None).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [3, 4, 5, 6, 7]
    );
    assert!(s.fetch_meta(next + 10, None).await.unwrap().is_empty());

    let uids: Vec<u32> = all.iter().map(|(u, _)| *u).collect();
    let bodies = s.fetch_bodies(&uids).await.unwrap();
    assert_eq!(bodies.len(), all.len());
    for (body, (uid, m)) in bodies.iter().zip(&all) {
        assert_eq!(
            body.as_deref(),
            Some(m.body.as_slice()),
            "UID {uid} byte for byte"
        );
    }
    // A UID that does not exist comes back as None.
    let some = s.fetch_bodies(&[2, next + 5]).await.unwrap();
    assert_eq!(some[0].as_deref(), Some(all[1].1.body.as_slice()));
    assert_eq!(some[1], None);

    let inbox = s.status("INBOX").await.unwrap();
    let inbox_model = emu.folder_uids("INBOX").unwrap();
    assert_eq!(inbox.messages as usize, inbox_model.len());
    assert_eq!(
        (inbox.uid_validity, inbox.uid_next),
        emu.folder_state("INBOX").unwrap()
    );
    assert_ne!(inbox.uid_validity, state.uid_validity);
    // Trash and Spam hold what All Mail leaves out.
    let trash = s.open("[Gmail]/Trash", true).await.unwrap();
    let spam = s.status("[Gmail]/Spam").await.unwrap();
    assert_eq!((trash.messages + spam.messages) as usize, outside);
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_has_its_own_uid_in_each_folder() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(40))
        .await
        .unwrap();
    let both: Vec<GmailMessage> = emu
        .messages()
        .into_iter()
        .filter(|m| m.has_label(LABEL_INBOX) && m.has_label("Work"))
        .collect();
    assert!(both.len() >= 2);

    let mut s = connect(&emu).await;
    let mut uids_by_folder: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    for folder in ["INBOX", "Work", "[Gmail]/All Mail"] {
        s.open(folder, true).await.unwrap();
        let meta = s.fetch_meta(1, None).await.unwrap();
        uids_by_folder.insert(
            folder,
            meta.into_iter()
                .map(|m| (m.message_id.unwrap(), m.uid))
                .collect(),
        );
    }
    let mut differing = 0;
    for m in &both {
        let id = m.message_id().unwrap();
        let inbox = uids_by_folder["INBOX"][&id];
        let work = uids_by_folder["Work"][&id];
        let all = uids_by_folder["[Gmail]/All Mail"][&id];
        assert_eq!(
            emu.folder_uids("Work")
                .unwrap()
                .iter()
                .find(|e| e.0 == work)
                .map(|e| e.1),
            Some(m.msgid)
        );
        if inbox != work || work != all {
            differing += 1;
        }
    }
    assert_eq!(
        differing,
        both.len(),
        "each folder numbers its own messages"
    );
    // The Work folder lists exactly the messages labelled Work (not Work/Projects).
    let work_ids: BTreeSet<&String> = uids_by_folder["Work"].keys().collect();
    let expected: Vec<String> = emu
        .messages()
        .iter()
        .filter(|m| m.has_label("Work"))
        .map(|m| m.message_id().unwrap())
        .collect();
    assert_eq!(work_ids, expected.iter().collect());
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_changes_show_at_the_next_select() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(30))
        .await
        .unwrap();
    let mut s = connect(&emu).await;
    let before = s.open("Work", true).await.unwrap();
    let target = emu
        .messages()
        .into_iter()
        .find(|m| m.labels == [LABEL_INBOX])
        .unwrap();

    assert!(emu.add_label(target.msgid, "Work"));
    assert!(!emu.add_label(target.msgid, "Work"), "already there");
    // The open folder is a snapshot until the next SELECT/EXAMINE.
    assert_eq!(
        s.fetch_meta(1, None).await.unwrap().len() as u32,
        before.messages
    );
    let after = s.open("Work", true).await.unwrap();
    assert_eq!(after.messages, before.messages + 1);
    assert_eq!(after.uid_next, before.uid_next + 1);
    assert_eq!(after.uid_validity, before.uid_validity);
    let meta = s.fetch_meta(1, None).await.unwrap();
    let last = meta.last().unwrap();
    assert_eq!(last.uid, before.uid_next, "newcomer gets the next UID");
    assert_eq!(last.message_id, target.message_id());

    assert!(emu.remove_label(target.msgid, "Work"));
    assert!(!emu.remove_label(target.msgid, "Work"));
    let removed = s.open("Work", true).await.unwrap();
    assert_eq!(removed.messages, before.messages);
    assert_eq!(removed.uid_next, before.uid_next + 1, "UIDs are not reused");
    assert!(emu.add_label(target.msgid, "Work"));
    let again = s.open("Work", true).await.unwrap();
    let meta = s.fetch_meta(1, None).await.unwrap();
    assert_eq!(meta.last().unwrap().uid, before.uid_next + 1);
    assert_eq!(again.uid_next, before.uid_next + 2);

    // \Starred is the \Flagged flag; a new label makes a new folder.
    assert!(emu.add_label(target.msgid, "\\starred"));
    assert!(emu.message(target.msgid).unwrap().has_flag("\\Flagged"));
    assert!(emu.add_label(target.msgid, "Neu/Unterordner"));
    let names: Vec<String> = s
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(names.contains(&"Neu".to_owned()) && names.contains(&"Neu/Unterordner".to_owned()));
    s.open("[Gmail]/Starred", true).await.unwrap();
    let starred = s.fetch_meta(1, None).await.unwrap();
    let entry = starred
        .iter()
        .find(|m| m.message_id == target.message_id())
        .expect("in Starred");
    assert!(entry.flags.contains(&"\\Flagged".to_owned()));
    assert!(emu.remove_label(target.msgid, LABEL_STARRED));
    assert!(!emu.message(target.msgid).unwrap().has_flag("\\Flagged"));

    // A new message enters its folders at the end.
    let mut fresh = sample_mailbox(1).remove(0);
    fresh.msgid = 42;
    fresh.thrid = 42;
    fresh.labels = vec![LABEL_INBOX.into(), LABEL_SENT.into()];
    emu.add_message(fresh.clone());
    let inbox = s.open("INBOX", true).await.unwrap();
    let (_, next) = emu.folder_state("INBOX").unwrap();
    assert_eq!(inbox.uid_next, next);
    let bodies = s.fetch_bodies(&[next - 1]).await.unwrap();
    assert_eq!(bodies[0].as_deref(), Some(fresh.body.as_slice()));
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_gm_labels_come_in_every_wire_form() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(40))
        .await
        .unwrap();
    // A label that needs a literal whatever its UID.
    let quoted_label = "Say \"hi\"";
    let first = emu.messages()[0].msgid;
    assert!(emu.add_label(first, quoted_label));

    let mut raw = Raw::login(emu.port()).await;
    raw.ok("EXAMINE \"[Gmail]/All Mail\"").await;
    let replies = raw
        .ok("UID FETCH 1:* (UID X-GM-MSGID X-GM-THRID X-GM-LABELS)")
        .await;
    let all = folder_messages(&emu, "[Gmail]/All Mail");
    assert_eq!(replies.len(), all.len());
    let mut forms: BTreeSet<(String, Form)> = BTreeSet::new();
    for (reply, (uid, m)) in replies.iter().zip(&all) {
        let text = String::from_utf8_lossy(reply);
        assert!(text.contains(&format!("X-GM-MSGID {} ", m.msgid)), "{text}");
        assert!(text.contains(&format!("X-GM-THRID {} ", m.thrid)), "{text}");
        let (got_uid, labels) = parse_fetch_labels(reply);
        assert_eq!(got_uid, *uid);
        // In All Mail every label is listed, in the model's order.
        let decoded: Vec<String> = labels.iter().map(|(l, _)| decode_label(l)).collect();
        assert_eq!(decoded, m.labels, "UID {uid}: {text}");
        for (wire, form) in labels {
            // Forms are deterministic: literals for every non-atom user label of UIDs that are
            // multiples of 3, and always for a label with a quote.
            let expected = if wire.starts_with('\\') {
                Form::Quoted
            } else if wire.contains('"') || (uid % 3 == 0 && wire.contains([' ', '&'])) {
                Form::Literal
            } else if wire.contains([' ', '&']) {
                Form::Quoted
            } else {
                Form::Atom
            };
            assert_eq!(form, expected, "{wire:?} of UID {uid}");
            forms.insert((wire, form));
        }
    }
    for (wire, form) in [
        ("\\Inbox", Form::Quoted),
        ("\\Important", Form::Quoted),
        ("\\Starred", Form::Quoted),
        ("\\Sent", Form::Quoted),
        ("\\Draft", Form::Quoted),
        ("Work", Form::Atom),
        ("Work/Projects", Form::Atom),
        ("My Label", Form::Quoted),
        ("&ZeVnLA-", Form::Quoted),
        ("&ANw-berweisungen", Form::Quoted),
        ("Say \"hi\"", Form::Literal),
    ] {
        assert!(
            forms.contains(&(wire.to_owned(), form)),
            "{wire} as {form:?} in {forms:?}"
        );
    }
    assert!(
        forms
            .iter()
            .any(|(w, f)| *f == Form::Literal && w != quoted_label),
        "some plain labels come as literals: {forms:?}"
    );
    // Byte for byte: system labels escaped, non-ASCII in modified UTF-7.
    let wire = replies.concat();
    let contains = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
    assert!(contains(br#""\\Inbox""#));
    assert!(contains(br#""&ZeVnLA-""#));
    assert!(contains(b"{17}\r\n&ANw-berweisungen") || contains(b"{8}\r\nMy Label"));
    assert!(contains(b"{8}\r\nSay \"hi\""));

    // Everywhere else the open folder's own label is left out, as Gmail does.
    for (folder, label) in [
        ("INBOX", LABEL_INBOX),
        ("Work", "Work"),
        ("[Gmail]/Important", LABEL_IMPORTANT),
        ("&ZeVnLA-", "日本"),
    ] {
        raw.ok(&format!("EXAMINE \"{folder}\"")).await;
        let replies = raw.ok("UID FETCH 1:* (X-GM-LABELS)").await;
        let folder_utf8 = mutf7::decode(folder).unwrap();
        let model = folder_messages(&emu, &folder_utf8);
        assert_eq!(replies.len(), model.len());
        assert!(!model.is_empty());
        for (reply, (uid, m)) in replies.iter().zip(&model) {
            let (got_uid, labels) = parse_fetch_labels(reply);
            assert_eq!(got_uid, *uid, "UID FETCH returns UID unasked");
            let decoded: Vec<String> = labels.iter().map(|(l, _)| decode_label(l)).collect();
            let expected: Vec<String> = m.labels.iter().filter(|l| *l != label).cloned().collect();
            assert_eq!(decoded, expected, "{folder} UID {uid}");
        }
    }
    raw.ok("LOGOUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_imap_reads_the_gmail_attributes() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(40))
        .await
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", emu.port())).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().unwrap();
    let mut session = client.login(USER, PASSWORD).await.map_err(|e| e.0).unwrap();
    session.examine("[Gmail]/All Mail").await.unwrap();
    let all = folder_messages(&emu, "[Gmail]/All Mail");
    // imap-proto 0.17 reads X-GM-LABELS entries as atoms or quoted strings only (a literal
    // there ends async-imap's stream), so ask for the UIDs without literal labels.
    let uids: Vec<String> = all
        .iter()
        .filter(|(uid, _)| uid % 3 != 0)
        .map(|(uid, _)| uid.to_string())
        .collect();
    let fetched: Vec<_> = session
        .uid_fetch(uids.join(","), "(UID X-GM-MSGID X-GM-LABELS)")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fetched.len(), uids.len());
    let mut seen_system = false;
    let mut seen_non_ascii = false;
    let mut seen_space = false;
    for f in &fetched {
        let uid = f.uid.unwrap();
        let m = &all.iter().find(|(u, _)| *u == uid).unwrap().1;
        assert_eq!(f.gmail_msg_id(), Some(&m.msgid));
        let labels: Vec<String> = f
            .gmail_labels()
            .unwrap()
            .iter()
            .map(|l| {
                // imap-proto hands quoted strings over still escaped: `"\\Inbox"` is `\\Inbox`.
                if let Some(system) = l.strip_prefix("\\\\") {
                    seen_system = true;
                    format!("\\{system}")
                } else {
                    seen_non_ascii |= l.contains('&');
                    seen_space |= l.contains(' ');
                    mutf7::decode(l).unwrap()
                }
            })
            .collect();
        assert_eq!(labels, m.labels, "UID {uid}");
    }
    assert!(seen_system && seen_non_ascii && seen_space);

    // A literal label: imap-proto 0.17 reads X-GM-LABELS entries as atoms or quoted strings
    // only. The reply still parses, but the label list becomes an unknown attribute: the labels
    // are silently lost. A Gmail source must read X-GM-LABELS itself.
    let literal_uid = all
        .iter()
        .find(|(uid, m)| {
            uid % 3 == 0
                && m.labels
                    .iter()
                    .any(|l| !l.starts_with('\\') && (l.contains(' ') || !l.is_ascii()))
        })
        .map(|(uid, _)| *uid)
        .expect("a UID with a literal label");
    let fetched: Vec<_> = session
        .uid_fetch(literal_uid.to_string(), "(UID X-GM-LABELS)")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].uid, Some(literal_uid));
    assert!(
        fetched[0].gmail_labels().is_none(),
        "imap-proto now reads literal labels: the Gmail source may use gmail_labels() again"
    );

    // The SEARCH keys through async-imap (the session survived the reply above).
    let work: std::collections::HashSet<u32> = all
        .iter()
        .filter(|(_, m)| m.has_label("Work"))
        .map(|(u, _)| *u)
        .collect();
    assert_eq!(session.uid_search("X-GM-LABELS Work").await.unwrap(), work);
    session.logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_search_keys() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(50))
        .await
        .unwrap();
    let all = folder_messages(&emu, "[Gmail]/All Mail");
    let with = |f: &dyn Fn(&GmailMessage) -> bool| -> BTreeSet<u32> {
        all.iter().filter(|(_, m)| f(m)).map(|(u, _)| *u).collect()
    };
    let mut raw = Raw::login(emu.port()).await;
    raw.ok("EXAMINE \"[Gmail]/All Mail\"").await;

    let (uid, m) = &all[7];
    assert_eq!(
        raw.search(&format!("UID SEARCH X-GM-MSGID {}", m.msgid))
            .await,
        BTreeSet::from([*uid])
    );
    assert_eq!(
        raw.search(&format!("UID SEARCH X-GM-THRID {}", m.thrid))
            .await,
        with(&|x| x.thrid == m.thrid)
    );
    assert!(raw.search("UID SEARCH X-GM-MSGID 1").await.is_empty());

    let cases: [(&str, BTreeSet<u32>); 9] = [
        ("X-GM-LABELS Work", with(&|x| x.has_label("Work"))),
        (
            "X-GM-LABELS work/projects",
            with(&|x| x.has_label("Work/Projects")),
        ),
        (
            "X-GM-LABELS \"My Label\"",
            with(&|x| x.has_label("My Label")),
        ),
        (
            "X-GM-LABELS \"\\\\Important\"",
            with(&|x| x.has_label(LABEL_IMPORTANT)),
        ),
        ("X-GM-LABELS &ZeVnLA-", with(&|x| x.has_label("日本"))),
        ("X-GM-RAW \"in:inbox\"", with(&|x| x.has_label(LABEL_INBOX))),
        (
            "X-GM-RAW \"label:my-label\"",
            with(&|x| x.has_label("My Label")),
        ),
        (
            "X-GM-RAW \"label:work-projects is:starred\"",
            with(&|x| x.has_label("Work/Projects") && x.has_label(LABEL_STARRED)),
        ),
        (
            "X-GM-RAW \"-in:inbox -in:sent\"",
            with(&|x| !x.has_label(LABEL_INBOX) && !x.has_label(LABEL_SENT)),
        ),
    ];
    for (key, expected) in cases {
        assert!(
            !expected.is_empty() || key.contains("-in"),
            "{key} finds something"
        );
        assert_eq!(
            raw.search(&format!("UID SEARCH {key}")).await,
            expected,
            "{key}"
        );
    }
    // In All Mail there is nothing in Trash; in Trash there is.
    assert!(
        raw.search("UID SEARCH X-GM-RAW \"in:trash\"")
            .await
            .is_empty()
    );
    let id = all[3].1.message_id().unwrap();
    assert_eq!(
        raw.search(&format!("UID SEARCH X-GM-RAW \"rfc822msgid:{id}\""))
            .await,
        BTreeSet::from([all[3].0])
    );
    // Plain IMAP keys combine with them.
    assert_eq!(
        raw.search("UID SEARCH UNSEEN X-GM-LABELS \\Inbox").await,
        with(&|x| x.has_label(LABEL_INBOX) && !x.has_flag("\\Seen"))
    );
    assert_eq!(
        raw.search("UID SEARCH OR X-GM-LABELS Work X-GM-LABELS \"My Label\"")
            .await,
        with(&|x| x.has_label("Work") || x.has_label("My Label"))
    );
    // Unsupported X-GM-RAW operators are refused, not ignored.
    let (_, done) = raw.cmd("UID SEARCH X-GM-RAW \"older_than:1y\"").await;
    assert!(done.contains(" NO "), "{done}");
    // ESEARCH.
    let work = with(&|x| x.has_label("Work"));
    let reply = raw
        .ok("UID SEARCH RETURN (MIN MAX COUNT) X-GM-LABELS Work")
        .await;
    assert_eq!(
        String::from_utf8_lossy(&reply[0]).trim_end(),
        format!(
            "* ESEARCH (TAG \"t{}\") UID MIN {} MAX {} COUNT {}",
            raw.next - 1,
            work.first().unwrap(),
            work.last().unwrap(),
            work.len()
        )
    );
    raw.ok("EXAMINE \"[Gmail]/Trash\"").await;
    assert_eq!(
        raw.search("UID SEARCH X-GM-RAW \"in:trash\"").await.len(),
        { emu.folder_uids("[Gmail]/Trash").unwrap().len() }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_gmails_refusal() {
    let emu = GmailEmulator::start(USER, PASSWORD, sample_mailbox(5))
        .await
        .unwrap();
    let err = ImapSession::connect(&endpoint(&emu, "wrong"))
        .await
        .expect_err("refused");
    match &err {
        ImapError::Auth { user, reply, .. } => {
            assert_eq!(user, USER);
            assert!(reply.contains("Invalid credentials (Failure)"), "{reply}");
            assert!(reply.contains("[AUTHENTICATIONFAILED]"), "{reply}");
        }
        other => panic!("expected an authentication error, got {other}"),
    }
    let mut raw = Raw::connect(emu.port()).await;
    let (_, done) = raw.cmd(&format!("LOGIN \"{USER}\" \"wrong\"")).await;
    assert_eq!(
        done,
        "t1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"
    );
    // Not logged in: no folders.
    let (_, done) = raw.cmd("SELECT INBOX").await;
    assert!(done.starts_with("t2 BAD"), "{done}");
    // AUTHENTICATE PLAIN works as well as LOGIN.
    let mut e = endpoint(&emu, PASSWORD);
    e.auth = AuthMethod::Plain;
    ImapSession::connect(&e).await.unwrap().logout().await;
    e.auth = AuthMethod::XOAuth2;
    ImapSession::connect(&e).await.unwrap().logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_is_read_only_and_stops_on_drop() {
    let emu = GmailEmulator::start_with(
        USER,
        PASSWORD,
        sample_mailbox(10),
        GmailOptions {
            label_literals: LabelLiterals::WhenNeeded,
            ..GmailOptions::default()
        },
    )
    .await
    .unwrap();
    let mut s = connect(&emu).await;
    let item = AppendItem {
        flags: "(\\Seen)",
        internal_date: " 1-Jan-2024 00:00:00 +0000",
        body: b"Subject: x\r\n\r\nx\r\n",
    };
    let err = s.append("INBOX", &[item]).await.unwrap_err();
    assert!(err.to_string().contains("CANNOT"), "{err}");
    s.open("INBOX", false).await.unwrap();
    let err = s.store_flags(&[1], "(\\Seen)").await.unwrap_err();
    assert!(matches!(err, ImapError::No { .. }), "{err}");
    let err = s.create("New", None).await.unwrap_err();
    assert!(matches!(err, ImapError::No { .. }), "{err}");
    // The session is still usable after the refusals.
    assert_eq!(
        s.fetch_meta(1, None).await.unwrap().len(),
        emu.folder_uids("INBOX").unwrap().len()
    );

    // WhenNeeded: no literal labels at all in the sample.
    let mut raw = Raw::login(emu.port()).await;
    raw.ok("EXAMINE \"[Gmail]/All Mail\"").await;
    let replies = raw.ok("UID FETCH 1:* (X-GM-LABELS)").await;
    for reply in &replies {
        let (_, labels) = parse_fetch_labels(reply);
        assert!(labels.iter().all(|(_, f)| *f != Form::Literal), "{reply:?}");
    }
    let (_, done) = raw.cmd("UID COPY 1 INBOX").await;
    assert!(done.contains("NO [CANNOT]"), "{done}");
    let (_, done) = raw.cmd("FROBNICATE").await;
    assert!(done.contains(" BAD "), "{done}");

    let port = emu.port();
    drop(emu);
    // Open connections are closed and nobody listens any more.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(T, raw.rd.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the port is closed after drop");
    s.logout().await;
}
