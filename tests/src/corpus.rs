//! A deterministic mail corpus: the same seed gives the same folders, bytes, flags and dates.
//! It is written straight into a user's maildir (much faster than APPEND) in the on-disk
//! format of the instance's layout, and described in a `Corpus` that tests compare against.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::b64;
use crate::dovecot::{Dovecot, Layout};
use crate::imap::{Account, login};
use crate::mutf7;

/// What to generate.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    pub seed: u64,
    pub messages: usize,
    /// Size in bytes of the one attachment that is much bigger than the rest (before base64);
    /// 0 for none.
    pub max_attachment: usize,
    /// Multiplies every message's target size (1.0: most 2-20 KB, 7 % 20-100 KB, 3 % 100 KB to
    /// 2 MB, about 33 KB on average).
    pub size_factor: f64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            seed: 1,
            messages: 500,
            max_attachment: 0,
            size_factor: 1.0,
        }
    }
}

/// One message as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusMessage {
    pub size: u64,
    /// System flags (`\Seen` ...), sorted.
    pub flags: Vec<String>,
    /// Keywords (`$Forwarded` ...), sorted.
    pub keywords: Vec<String>,
    /// INTERNALDATE, unix seconds.
    pub internaldate: i64,
    pub message_id: Option<String>,
    pub body_hash: blake3::Hash,
}

impl CorpusMessage {
    /// Flags and keywords together, sorted as `MessageRecord::flags` is.
    pub fn all_flags(&self) -> Vec<String> {
        let mut all: Vec<String> = self.flags.iter().chain(&self.keywords).cloned().collect();
        all.sort();
        all
    }
}

/// One folder as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusFolder {
    /// Hierarchy components, without prefix (`["Projekte", "Übersicht", "2019"]`).
    pub path: Vec<String>,
    /// Special-use attribute if this is one of the instance's special-use folders.
    pub special_use: Option<String>,
    pub messages: Vec<CorpusMessage>,
}

/// What `write_maildir` wrote.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Selectable folders by IMAP name (decoded UTF-8, with the prefix the server shows).
    pub folders: BTreeMap<String, CorpusFolder>,
    /// Names of parents that only hold children (\Noselect on the server).
    pub containers: Vec<String>,
    pub separator: char,
    pub prefix: String,
}

impl Corpus {
    pub fn total_messages(&self) -> usize {
        self.folders.values().map(|f| f.messages.len()).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.folders
            .values()
            .flat_map(|f| &f.messages)
            .map(|m| m.size)
            .sum()
    }

    /// Source folder -> itself, for every selectable folder.
    pub fn identity_mapping(&self) -> Vec<(String, String)> {
        self.folders
            .keys()
            .map(|k| (k.clone(), k.clone()))
            .collect()
    }

    /// Source folder -> the name a correct migration gives it on `dst`: same hierarchy with
    /// the destination's separator and prefix, special-use folders onto the destination's
    /// folder with the same special use.
    pub fn mapping_to(&self, dst: &impl MailServer) -> Vec<(String, String)> {
        let layout = dst.name_layout();
        self.folders
            .iter()
            .map(|(name, f)| {
                let special = f.special_use.as_ref().and_then(|use_| {
                    dst.special_use_folders()
                        .iter()
                        .find(|(_, a)| a.eq_ignore_ascii_case(use_))
                        .map(|(n, _)| format!("{}{n}", layout.prefix()))
                });
                let target = special.unwrap_or_else(|| imap_name(layout, &f.path));
                (name.clone(), target)
            })
            .collect()
    }
}

/// What the corpus needs to know of a server: how it names folders, and its special-use
/// folders (names without prefix, attribute).
pub trait MailServer {
    fn name_layout(&self) -> Layout;
    fn special_use_folders(&self) -> &[(String, String)];
    /// Whether the server marks folders with special-use attributes (RFC 6154); without it
    /// the folders of [`MailServer::special_use_folders`] exist by name only.
    fn marks_special_use(&self) -> bool {
        true
    }
}

impl MailServer for Dovecot {
    fn name_layout(&self) -> Layout {
        self.layout()
    }
    fn special_use_folders(&self) -> &[(String, String)] {
        &self.options().special_use
    }
}

/// The IMAP name of a folder path in a layout.
pub fn imap_name(layout: Layout, path: &[String]) -> String {
    if path.len() == 1 && path[0].eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    format!(
        "{}{}",
        layout.prefix(),
        path.join(&layout.separator().to_string())
    )
}

/// The splitmix64 generator: tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Log-uniform in `[lo, hi]`: the heavy tail of real mailboxes.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        (l + self.unit() * (h - l)).exp() as u64
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// (year, month, day, hour, minute, second) of unix seconds, UTC (proleptic Gregorian).
pub fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil, counting eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs / 60 % 60) as u32,
        (secs % 60) as u32,
    )
}

/// RFC 5322 date (`Thu, 07 Feb 2019 13:05:09 +0000`).
fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss) = civil(unix);
    let weekday = DAYS[unix.div_euclid(86_400).rem_euclid(7) as usize];
    format!(
        "{weekday}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

// 2005-01-01T00:00:00Z and 2025-12-31T23:59:59Z
const DATE_FROM: i64 = 1_104_537_600;
const DATE_TO: i64 = 1_767_225_599;

const KEYWORDS: [&str; 3] = ["$Forwarded", "$Label1", "Projekt-X"];
/// (IMAP flag, maildir filename letter)
const SYSTEM_FLAGS: [(&str, char); 5] = [
    ("\\Seen", 'S'),
    ("\\Answered", 'R'),
    ("\\Flagged", 'F'),
    ("\\Deleted", 'T'),
    ("\\Draft", 'D'),
];

const WORDS: &[&str] = &[
    "Grüße",
    "Straße",
    "Übersicht",
    "Projekt",
    "Besprechung",
    "café",
    "naïve",
    "Zürich",
    "Genève",
    "Ελληνικά",
    "Привет",
    "日本語",
    "meeting",
    "invoice",
    "the",
    "and",
    "quarterly",
    "report",
    "déjà",
    "vu",
    "Ærø",
    "smörgåsbord",
    "€100",
    "migration",
    "mailbox",
    "Ångström",
];

const PEOPLE: &[(&str, &str)] = &[
    ("Jürgen Weiß", "juergen.weiss@example.org"),
    ("Zoë Müller", "zoe.mueller@example.net"),
    ("François Côté", "francois@example.com"),
    ("Alice Smith", "alice@example.com"),
    ("Dmitri Иванов", "dmitri@example.org"),
    ("山田 太郎", "yamada@example.jp"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FolderKind {
    Messages(u32),
    Empty,
    Container,
}

struct Plan {
    path: Vec<String>,
    kind: FolderKind,
    special_use: Option<String>,
}

fn folder_plan(special_use: &[(String, String)]) -> Vec<Plan> {
    let p = |parts: &[&str], kind| Plan {
        path: parts.iter().map(|s| (*s).to_owned()).collect(),
        kind,
        special_use: None,
    };
    let mut plan = vec![
        p(&["INBOX"], FolderKind::Messages(40)),
        p(&["Projekte"], FolderKind::Messages(4)),
        // A parent that exists only because of its children.
        p(&["Projekte", "Übersicht"], FolderKind::Container),
        p(&["Projekte", "Übersicht", "2019"], FolderKind::Messages(8)),
        p(&["Projekte", "Übersicht", "2020"], FolderKind::Messages(3)),
        // Modified UTF-7 with '&' and Latin-1 letters.
        p(&["Zürich & Genève"], FolderKind::Messages(6)),
        p(&["Kunden"], FolderKind::Container),
        p(&["Kunden", "Müller GmbH"], FolderKind::Messages(4)),
        // Non-BMP (surrogate pair) and CJK in a name.
        p(&["Post 📬 日本"], FolderKind::Messages(2)),
        p(&["Leer"], FolderKind::Empty),
    ];
    for (name, attr) in special_use {
        plan.push(Plan {
            path: vec![name.clone()],
            kind: FolderKind::Messages(5),
            special_use: Some(attr.clone()),
        });
    }
    plan
}

/// Generates the corpus into `user`'s maildir on `dovecot` and describes it. Write before the
/// user first logs in or at least before selecting the folders: Dovecot picks new files up on
/// its next sync of each folder.
pub fn write_maildir(dovecot: &Dovecot, user: &str, spec: &CorpusSpec) -> Result<Corpus> {
    dovecot.password(user)?;
    let layout = dovecot.layout();
    let root = dovecot.maildir(user);
    let plan = folder_plan(&dovecot.options().special_use);
    // Folders first, so each message can go to disk as soon as it is generated.
    let mut dirs = Vec::with_capacity(plan.len());
    for folder in &plan {
        let dir = folder_dir(&root, layout, &folder.path);
        if folder.kind != FolderKind::Container {
            prepare_folder(&root, &dir, layout)?;
        }
        dirs.push(dir);
    }

    let mut written = vec![0usize; plan.len()];
    let mut corpus = build(&plan, layout, spec, |fi, bytes, msg| {
        // Dovecot keys maildir files by the part before ':', so it must be unique; S= and W=
        // spare it a stat for sizes (the files are CRLF already, so both are the length).
        let file_name = format!(
            "{}.M{}P{}Q{fi}.testbed,S={},W={}:2,{}",
            msg.internaldate,
            written[fi],
            spec.seed % 1_000_000,
            bytes.len(),
            bytes.len(),
            filename_flags(msg)
        );
        write_file(
            &dirs[fi].join("cur").join(file_name),
            bytes,
            msg.internaldate,
        )?;
        written[fi] += 1;
        Ok(())
    })?;
    let (uid, gid) = dovecot.mail_owner();
    chown_tree(&root, uid, gid)?;
    corpus.containers.sort();
    Ok(corpus)
}

/// A corpus written over IMAP, and what the server refused of it.
#[derive(Debug, Clone)]
pub struct WrittenCorpus {
    /// What the server holds (refused folders and messages left out).
    pub corpus: Corpus,
    /// (folder, the server's reply) for each folder CREATE refused; its messages were not sent.
    pub refused_folders: Vec<(String, String)>,
    /// (folder, Message-ID, the server's reply) for each APPEND refused.
    pub refused_messages: Vec<(String, Option<String>, String)>,
}

/// Generates the corpus of `server`'s folders and APPENDs it over IMAP as `acct` (for servers
/// whose storage the bed does not write behind their back: Courier keeps keywords in files of
/// its own, Cyrus in its indexes). Flags, keywords and INTERNALDATE go with each APPEND.
/// Describes what the server then holds: a folder it refuses to create, or a message it refuses
/// to store, is left out and listed; a parent the server made selectable (Cyrus creates missing
/// parents as folders) is an empty folder instead of a container.
pub async fn write_imap(
    server: &impl MailServer,
    acct: &Account,
    spec: &CorpusSpec,
) -> Result<WrittenCorpus> {
    let layout = server.name_layout();
    let plan = folder_plan(server.special_use_folders());
    let mut messages: Vec<(usize, Vec<u8>, CorpusMessage)> = Vec::with_capacity(spec.messages);
    let mut corpus = build(&plan, layout, spec, |fi, bytes, msg| {
        messages.push((fi, bytes.to_vec(), msg.clone()));
        Ok(())
    })?;
    let mut session = login(acct).await?;
    let mut refused_folders = Vec::new();
    for folder in &plan {
        let name = imap_name(layout, &folder.path);
        if folder.kind == FolderKind::Container || name == "INBOX" {
            continue;
        }
        let created = match &folder.special_use {
            Some(attr) if server.marks_special_use() => {
                session.create_special_use(&name, attr).await
            }
            _ => session.create_folder(&name).await,
        };
        if let Err(e) = created {
            // Special-use folders a server creates by itself are there already.
            let listed = session.list_folders().await?;
            if !listed.iter().any(|f| f.name == name) {
                refused_folders.push((name.clone(), format!("{e:#}")));
                corpus.folders.remove(&name);
            }
        }
    }
    let mut refused_messages = Vec::new();
    let mut kept: Vec<Vec<CorpusMessage>> = plan.iter().map(|_| Vec::new()).collect();
    for (fi, bytes, msg) in messages {
        let name = imap_name(layout, &plan[fi].path);
        if !corpus.folders.contains_key(&name) {
            continue;
        }
        let flags = msg.all_flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        match session
            .append(&name, &bytes, &flags, Some(msg.internaldate))
            .await
        {
            Ok(()) => kept[fi].push(msg),
            Err(e) => refused_messages.push((name, msg.message_id.clone(), format!("{e:#}"))),
        }
    }
    for (fi, folder) in plan.iter().enumerate() {
        let name = imap_name(layout, &folder.path);
        if let Some(f) = corpus.folders.get_mut(&name) {
            f.messages = std::mem::take(&mut kept[fi]);
            if !server.marks_special_use() {
                f.special_use = None;
            }
        }
    }
    // Containers the server made real folders.
    let listed = session.list_folders().await?;
    let mut containers = Vec::new();
    for name in std::mem::take(&mut corpus.containers) {
        match listed.iter().find(|f| f.name == name) {
            Some(f) if f.selectable() => {
                let path = plan
                    .iter()
                    .find(|p| imap_name(layout, &p.path) == name)
                    .map(|p| p.path.clone())
                    .unwrap_or_default();
                corpus.folders.insert(
                    name,
                    CorpusFolder {
                        path,
                        special_use: None,
                        messages: Vec::new(),
                    },
                );
            }
            _ => containers.push(name),
        }
    }
    containers.sort();
    corpus.containers = containers;
    session.logout().await?;
    Ok(WrittenCorpus {
        corpus,
        refused_folders,
        refused_messages,
    })
}

/// Draws the corpus of `plan` and hands each message to `sink` (folder index, bytes,
/// description) as it is generated; returns the description of all of them.
fn build(
    plan: &[Plan],
    layout: Layout,
    spec: &CorpusSpec,
    mut sink: impl FnMut(usize, &[u8], &CorpusMessage) -> Result<()>,
) -> Result<Corpus> {
    let mut rng = SplitMix64::new(spec.seed);

    // Which folder each message goes to: one into every message folder first (so small
    // corpora still cover them all), the rest by weight.
    let message_folders: Vec<(usize, u32)> = plan
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f.kind {
            FolderKind::Messages(w) => Some((i, w)),
            _ => None,
        })
        .collect();
    let total_weight: u32 = message_folders.iter().map(|(_, w)| w).sum();
    let mut assignment = Vec::with_capacity(spec.messages);
    for i in 0..spec.messages {
        if i < message_folders.len() {
            assignment.push(message_folders[i].0);
            continue;
        }
        let mut r = rng.below(u64::from(total_weight)) as u32;
        let mut chosen = message_folders[0].0;
        for &(idx, w) in &message_folders {
            if r < w {
                chosen = idx;
                break;
            }
            r -= w;
        }
        assignment.push(chosen);
    }

    // The last message is a byte-for-byte copy of the first one in another folder: one
    // Message-ID present in two folders.
    let duplicate = (spec.messages >= 2 && message_folders.len() >= 2).then(|| {
        let src = 0usize;
        let other = message_folders
            .iter()
            .map(|(i, _)| *i)
            .find(|i| *i != assignment[src])
            .unwrap_or(assignment[src]);
        assignment[spec.messages - 1] = other;
        (src, spec.messages - 1)
    });
    let big_index = (spec.max_attachment > 0 && spec.messages > 0).then(|| {
        let candidates = if duplicate.is_some() {
            spec.messages - 1
        } else {
            spec.messages
        };
        rng.below(candidates as u64) as usize
    });

    let mut per_folder: Vec<Vec<CorpusMessage>> = plan.iter().map(|_| Vec::new()).collect();
    let mut dup_source: Option<(Vec<u8>, CorpusMessage)> = None;
    for (i, &fi) in assignment.iter().enumerate() {
        let (bytes, msg) = match (duplicate, &dup_source) {
            (Some((_, dst)), Some((bytes, msg))) if i == dst => {
                // Same bytes, its own flags: a copy filed elsewhere and then read.
                let mut msg = msg.clone();
                msg.flags = vec!["\\Seen".to_owned()];
                msg.keywords = Vec::new();
                (bytes.clone(), msg)
            }
            _ => generate(
                &mut rng,
                spec.seed,
                i,
                &plan[fi],
                (big_index == Some(i)).then_some(spec.max_attachment),
                spec.size_factor,
            ),
        };
        if duplicate.is_some_and(|(src, _)| src == i) {
            dup_source = Some((bytes.clone(), msg.clone()));
        }
        sink(fi, &bytes, &msg)?;
        per_folder[fi].push(msg);
    }

    let mut corpus = Corpus {
        folders: BTreeMap::new(),
        containers: Vec::new(),
        separator: layout.separator(),
        prefix: layout.prefix().to_owned(),
    };
    for (folder, messages) in plan.iter().zip(per_folder) {
        let name = imap_name(layout, &folder.path);
        if folder.kind == FolderKind::Container {
            corpus.containers.push(name);
            continue;
        }
        corpus.folders.insert(
            name,
            CorpusFolder {
                path: folder.path.clone(),
                special_use: folder.special_use.clone(),
                messages,
            },
        );
    }
    Ok(corpus)
}

/// Creates a folder's maildir with its keyword list.
fn prepare_folder(root: &Path, dir: &Path, layout: Layout) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    if layout == Layout::MaildirPlusPlus && dir != root {
        // Courier marks Maildir++ subfolders so; Dovecot does not need it, other tools do.
        let marker = dir.join("maildirfolder");
        File::create(&marker).with_context(|| format!("creating {}", marker.display()))?;
    }
    // Keyword letters in filenames index this list ('a' = line 0).
    let kw_file = dir.join("dovecot-keywords");
    let kw: String = KEYWORDS
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{i} {k}\n"))
        .collect();
    fs::write(&kw_file, kw).with_context(|| format!("writing {}", kw_file.display()))
}

fn write_file(path: &Path, bytes: &[u8], internaldate: i64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    // Dovecot's maildir takes INTERNALDATE from the file's mtime.
    let mtime = UNIX_EPOCH + Duration::from_secs(internaldate.max(0) as u64);
    f.set_modified(mtime)
        .with_context(|| format!("setting mtime of {}", path.display()))?;
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Where a folder lives on disk. Names are modified UTF-7 there, as Dovecot 2.3 stores them
/// unless told `UTF-8`; INBOX is the maildir root in both layouts.
pub fn folder_dir(root: &Path, layout: Layout, path: &[String]) -> PathBuf {
    if path.len() == 1 && path[0].eq_ignore_ascii_case("INBOX") {
        return root.to_path_buf();
    }
    let encoded: Vec<String> = path.iter().map(|c| mutf7::encode(c)).collect();
    match layout {
        Layout::MaildirPlusPlus => root.join(format!(".{}", encoded.join("."))),
        Layout::Fs => encoded.iter().fold(root.to_path_buf(), |p, c| p.join(c)),
    }
}

/// The `:2,` info of a maildir filename: system flag letters, then keyword letters, each
/// sorted (Dovecot expects ASCII order).
fn filename_flags(msg: &CorpusMessage) -> String {
    let mut letters: Vec<char> = SYSTEM_FLAGS
        .iter()
        .filter(|(f, _)| msg.flags.iter().any(|g| g == f))
        .map(|(_, l)| *l)
        .collect();
    letters.sort_unstable();
    for (i, k) in KEYWORDS.iter().enumerate() {
        if msg.keywords.iter().any(|g| g == k) {
            letters.push(char::from(b'a' + i as u8));
        }
    }
    letters.into_iter().collect()
}

fn generate(
    rng: &mut SplitMix64,
    seed: u64,
    index: usize,
    folder: &Plan,
    big_attachment: Option<usize>,
    size_factor: f64,
) -> (Vec<u8>, CorpusMessage) {
    let (internaldate, message_id) = date_and_id(rng, seed, index);
    let r = rng.unit();
    let base = if r < 0.03 {
        rng.log_uniform(100_000, 2_000_000)
    } else if r < 0.10 {
        rng.log_uniform(20_000, 100_000)
    } else {
        rng.log_uniform(2_000, 20_000)
    };
    let target = (base as f64 * size_factor) as usize;

    finish_message(
        rng,
        folder,
        index,
        internaldate,
        message_id,
        target,
        big_attachment,
    )
}

/// A message's INTERNALDATE and Message-ID (none for about one in twenty).
fn date_and_id(rng: &mut SplitMix64, seed: u64, index: usize) -> (i64, Option<String>) {
    let internaldate = DATE_FROM + rng.below((DATE_TO - DATE_FROM) as u64) as i64;
    let message_id = if index > 0 && rng.chance(0.05) {
        None
    } else {
        Some(format!(
            "<{seed:x}.{index}.{:x}@testbed.example>",
            rng.next_u64() >> 20
        ))
    };
    (internaldate, message_id)
}

/// Draws a message's flags and keywords (in this order from `rng`, so corpora stay the same for
/// a seed), then builds it.
fn finish_message(
    rng: &mut SplitMix64,
    folder: &Plan,
    index: usize,
    internaldate: i64,
    message_id: Option<String>,
    target: usize,
    big_attachment: Option<usize>,
) -> (Vec<u8>, CorpusMessage) {
    let mut flags = Vec::new();
    let draft_folder = folder.special_use.as_deref() == Some("\\Drafts");
    let probs = [0.7, 0.15, 0.1, 0.03, if draft_folder { 0.8 } else { 0.02 }];
    for (k, ((flag, _), p)) in SYSTEM_FLAGS.iter().zip(probs).enumerate() {
        // The first messages carry one flag each, so every flag occurs even in tiny corpora.
        if index == k || rng.chance(p) {
            flags.push((*flag).to_owned());
        }
    }
    let mut keywords = Vec::new();
    for (k, (kw, p)) in KEYWORDS.iter().zip([0.1, 0.08, 0.06]).enumerate() {
        if index == SYSTEM_FLAGS.len() + k || rng.chance(p) {
            keywords.push((*kw).to_owned());
        }
    }
    flags.sort();
    keywords.sort();

    let bytes = build_message(
        rng,
        index,
        internaldate,
        message_id.as_deref(),
        target,
        big_attachment,
    );
    let msg = CorpusMessage {
        size: bytes.len() as u64,
        flags,
        keywords,
        internaldate,
        message_id,
        body_hash: blake3::hash(&bytes),
    };
    (bytes, msg)
}

/// A message of about `size` bytes (at least ~1 KB), deterministic in `seed`. Message-ID
/// `<synthetic-SEED@testbed.example>`; for tests that add mail to a live server.
pub fn synthetic_message(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed ^ 0x5eed_5eed_5eed_5eed);
    let date = DATE_FROM + rng.below((DATE_TO - DATE_FROM) as u64) as i64;
    let id = format!("<synthetic-{seed:x}@testbed.example>");
    build_message(&mut rng, seed as usize, date, Some(&id), size, None)
}

fn encoded_word(text: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        b64::encode(text.as_bytes(), b64::STANDARD, true)
    )
}

fn build_message(
    rng: &mut SplitMix64,
    index: usize,
    date: i64,
    message_id: Option<&str>,
    target: usize,
    big_attachment: Option<usize>,
) -> Vec<u8> {
    let (from_name, from_addr) = *rng.pick(PEOPLE);
    let (to_name, to_addr) = *rng.pick(PEOPLE);
    let subject: String = (0..4)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ");
    // Headers: a third raw 8-bit UTF-8 (as real servers hold them), a third RFC 2047.
    let style = rng.below(3);
    let (from_disp, subject) = match style {
        0 => (format!("\"{from_name}\""), subject),
        1 => (encoded_word(from_name), encoded_word(&subject)),
        _ => (
            "Test Sender".to_owned(),
            format!("Message {index} about the report"),
        ),
    };
    let mut h = String::new();
    let _ = write!(h, "Return-Path: <{from_addr}>\r\n");
    let _ = write!(h, "From: {from_disp} <{from_addr}>\r\n");
    let _ = write!(h, "To: \"{to_name}\" <{to_addr}>\r\n");
    let _ = write!(h, "Subject: {subject}\r\n");
    let _ = write!(h, "Date: {}\r\n", rfc5322_date(date - 300));
    if let Some(id) = message_id {
        let _ = write!(h, "Message-ID: {id}\r\n");
    }
    h.push_str("MIME-Version: 1.0\r\n");

    let attachment = big_attachment.or_else(|| {
        // Messages that should be big get most of their size from an attachment.
        (target > 40_000).then(|| (target - 4_000) * 3 / 4)
    });
    let mut out = Vec::with_capacity(target + attachment.unwrap_or(0) * 4 / 3 + 4096);
    match attachment {
        None => {
            h.push_str("Content-Type: text/plain; charset=utf-8\r\n");
            h.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
            out.extend_from_slice(h.as_bytes());
            let _ = write!(&mut out, "Nachricht {index}.\r\n");
            text_body(rng, &mut out, target);
        }
        Some(att) => {
            let boundary = format!("=_testbed_{index}_{:x}", rng.next_u64() >> 32);
            let _ = write!(
                h,
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            );
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"This is a multi-part message in MIME format.\r\n");
            let _ = write!(
                &mut out,
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\nNachricht {index} mit Anhang.\r\n"
            );
            let text_end = out.len() + 1_500;
            text_body(rng, &mut out, text_end);
            let _ = write!(
                &mut out,
                "--{boundary}\r\nContent-Type: application/octet-stream; name=\"anhang-{index}.bin\"\r\n\
                 Content-Disposition: attachment; filename=\"anhang-{index}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            );
            let mut data = vec![0u8; att];
            rng.fill(&mut data);
            // 57 bytes per line give the customary 76 base64 characters.
            for line in data.chunks(57) {
                out.extend_from_slice(b64::encode(line, b64::STANDARD, true).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            let _ = write!(&mut out, "--{boundary}--\r\n");
        }
    }
    out
}

/// Appends CRLF lines of words until `out` is about `target` bytes long.
fn text_body(rng: &mut SplitMix64, out: &mut Vec<u8>, target: usize) {
    let mut line = String::new();
    while out.len() + line.len() < target {
        let w = *rng.pick(WORDS);
        if line.len() + w.len() + 1 > 72 {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// One folder of small text-only messages, for measuring how a copy scales with folder size
/// (`write_folder`).
#[derive(Debug, Clone)]
pub struct FolderSpec {
    pub seed: u64,
    pub messages: usize,
    /// Hierarchy components without prefix; `["INBOX"]` for the inbox.
    pub path: Vec<String>,
    /// Message sizes are log-uniform in `min_size..=max_size` bytes; above about 40 KB a
    /// message would get an attachment, so keep `max_size` below that for text-only mail.
    pub min_size: usize,
    pub max_size: usize,
}

impl Default for FolderSpec {
    fn default() -> Self {
        FolderSpec {
            seed: 1,
            messages: 1000,
            path: vec!["INBOX".to_owned()],
            min_size: 1_500,
            max_size: 8_000,
        }
    }
}

/// Writes one folder of `spec.messages` small messages into `user`'s maildir (fast enough for
/// 100,000 messages: one file each, no index) and describes it. Flags, keywords and dates are
/// drawn as in `write_maildir`. Write before the user first selects the folder.
pub fn write_folder(dovecot: &Dovecot, user: &str, spec: &FolderSpec) -> Result<Corpus> {
    dovecot.password(user)?;
    check_folder_path(dovecot.layout(), &spec.path)?;
    let layout = dovecot.layout();
    let root = dovecot.maildir(user);
    let dir = folder_dir(&root, layout, &spec.path);
    prepare_folder(&root, &dir, layout)?;
    let name = imap_name(layout, &spec.path);
    let special_use = (spec.path.len() == 1)
        .then(|| {
            dovecot
                .options()
                .special_use
                .iter()
                .find(|(n, _)| *n == spec.path[0])
                .map(|(_, a)| a.clone())
        })
        .flatten();
    let plan = Plan {
        path: spec.path.clone(),
        kind: FolderKind::Messages(1),
        special_use: special_use.clone(),
    };
    let (lo, hi) = (
        spec.min_size.max(1_000) as u64,
        spec.max_size.max(spec.min_size.max(1_000)) as u64,
    );
    let mut rng = SplitMix64::new(spec.seed);
    let mut messages = Vec::with_capacity(spec.messages);
    let cur = dir.join("cur");
    for i in 0..spec.messages {
        let target = rng.log_uniform(lo, hi) as usize;
        let (bytes, msg) = generate_sized(&mut rng, spec.seed, i, &plan, target);
        let file_name = format!(
            "{}.M{i}P{}Q0.testbed,S={},W={}:2,{}",
            msg.internaldate,
            spec.seed % 1_000_000,
            bytes.len(),
            bytes.len(),
            filename_flags(&msg)
        );
        write_file(&cur.join(file_name), &bytes, msg.internaldate)?;
        messages.push(msg);
    }
    let (uid, gid) = dovecot.mail_owner();
    chown_tree(&root, uid, gid)?;
    let mut folders = BTreeMap::new();
    folders.insert(
        name,
        CorpusFolder {
            path: spec.path.clone(),
            special_use,
            messages,
        },
    );
    Ok(Corpus {
        folders,
        containers: Vec::new(),
        separator: layout.separator(),
        prefix: layout.prefix().to_owned(),
    })
}

/// Adds one message (`bytes`, CRLF) to a folder of a corpus already written for `user`, with
/// system flags only, and records it in `corpus`. For a mailbox that differs from another by
/// one message, such as a very large one. `folder` is the IMAP name, a key of
/// `corpus.folders`.
pub fn add_message(
    dovecot: &Dovecot,
    user: &str,
    corpus: &mut Corpus,
    folder: &str,
    bytes: &[u8],
    flags: &[&str],
    internaldate: i64,
) -> Result<()> {
    let layout = dovecot.layout();
    let root = dovecot.maildir(user);
    let Some(entry) = corpus.folders.get_mut(folder) else {
        bail!("the corpus has no folder {folder:?}");
    };
    let mut flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
    if let Some(f) = flags
        .iter()
        .find(|f| !SYSTEM_FLAGS.iter().any(|(s, _)| s == f))
    {
        bail!("add_message takes system flags only, not {f:?}");
    }
    flags.sort();
    let msg = CorpusMessage {
        size: bytes.len() as u64,
        flags,
        keywords: Vec::new(),
        internaldate,
        message_id: crate::imap::header_message_id(bytes),
        body_hash: blake3::hash(bytes),
    };
    let dir = folder_dir(&root, layout, &entry.path);
    let path = dir.join("cur").join(format!(
        "{internaldate}.M{}P{}Q1.testbed-added,S={},W={}:2,{}",
        entry.messages.len(),
        bytes.len() % 1_000_000,
        bytes.len(),
        bytes.len(),
        filename_flags(&msg)
    ));
    write_file(&path, bytes, internaldate)?;
    let (uid, gid) = dovecot.mail_owner();
    chown(&path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    entry.messages.push(msg);
    Ok(())
}

/// A message of about `target` bytes (text only below about 40 KB) with flags, keywords and
/// date drawn as `generate` draws them.
fn generate_sized(
    rng: &mut SplitMix64,
    seed: u64,
    index: usize,
    folder: &Plan,
    target: usize,
) -> (Vec<u8>, CorpusMessage) {
    let (internaldate, message_id) = date_and_id(rng, seed, index);
    finish_message(rng, folder, index, internaldate, message_id, target, None)
}

/// Appends one message over IMAP (the real path, unlike `write_maildir`).
pub async fn append_message(
    acct: &Account,
    folder: &str,
    bytes: &[u8],
    flags: &[&str],
    internaldate: i64,
) -> Result<()> {
    let mut session = login(acct).await?;
    session
        .append(folder, bytes, flags, Some(internaldate))
        .await?;
    session.logout().await
}

/// Fails unless every name can live on disk in `layout` (a separator inside a component
/// would silently create hierarchy).
pub fn check_folder_path(layout: Layout, path: &[String]) -> Result<()> {
    for c in path {
        if c.contains(layout.separator()) || c.contains('/') || c.is_empty() {
            bail!("folder component {c:?} cannot be stored in {layout:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(DATE_FROM), (2005, 1, 1, 0, 0, 0));
        assert_eq!(civil(DATE_TO), (2025, 12, 31, 23, 59, 59));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(
            rfc5322_date(1_549_544_709),
            "Thu, 07 Feb 2019 13:05:09 +0000"
        );
    }

    #[test]
    fn splitmix_is_deterministic() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(SplitMix64::new(1).next_u64(), SplitMix64::new(2).next_u64());
    }

    #[test]
    fn synthetic_messages_are_crlf_and_sized() {
        let m = synthetic_message(3, 10_000);
        assert_eq!(m, synthetic_message(3, 10_000));
        assert!(m.len() >= 10_000 && m.len() < 11_000, "{}", m.len());
        assert!(!m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        assert_eq!(
            crate::imap::header_message_id(&m).as_deref(),
            Some("<synthetic-3@testbed.example>")
        );
    }

    #[test]
    fn plan_paths_fit_both_layouts() {
        for f in folder_plan(&crate::dovecot::german_special_use()) {
            check_folder_path(Layout::MaildirPlusPlus, &f.path).unwrap();
            check_folder_path(Layout::Fs, &f.path).unwrap();
        }
    }
}
