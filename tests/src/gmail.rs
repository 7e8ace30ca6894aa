//! A Gmail IMAP emulator: an IMAP4rev1 server over plain TCP on 127.0.0.1 that speaks
//! X-GM-EXT-1 as Google documents it (<https://developers.google.com/gmail/imap/imap-extensions>),
//! so that label-aware code can be tested without Gmail.
//!
//! # Model
//!
//! The account is a list of [`GmailMessage`]s, each with an X-GM-MSGID, an X-GM-THRID and a set
//! of labels. Folders are derived from labels, as Gmail shows them:
//!
//! - `INBOX` holds the messages labelled `\Inbox`;
//! - `[Gmail]` is a `\Noselect` container;
//! - `[Gmail]/All Mail` (`\All`) holds every message except those in Trash or Spam;
//! - `[Gmail]/Sent Mail` (`\Sent`), `[Gmail]/Drafts` (`\Drafts`), `[Gmail]/Starred`
//!   (`\Flagged`), `[Gmail]/Important` (`\Important`) hold the messages with the labels `\Sent`,
//!   `\Draft`, `\Starred`, `\Important`;
//! - `[Gmail]/Trash` (`\Trash`) and `[Gmail]/Spam` (`\Junk`) hold the messages labelled `\Trash`
//!   and `\Spam`; such a message is shown in no other folder (not in its user-label folders, not
//!   in All Mail), as in Gmail;
//! - every user label is a folder of the same name (`Work/Projects` is `Projects` under `Work`);
//!   the parents of nested labels are listed even without messages of their own. Label folders
//!   are never removed once they exist (Gmail keeps empty labels).
//!
//! [`Locale::German`] names the special folders as a German Gmail does; clients must find them
//! by their SPECIAL-USE attribute, not by name. Names on the wire are modified UTF-7.
//!
//! The same message has its own UID in each folder. UIDs are given in increasing order as
//! messages enter a folder and never reused; UIDVALIDITY is fixed per folder (a hash of its
//! name). Changes made through [`GmailEmulator::add_message`], [`GmailEmulator::add_label`] and
//! [`GmailEmulator::remove_label`] are seen by a connection at its next SELECT/EXAMINE (the open
//! folder is a snapshot; no unsolicited EXISTS/EXPUNGE is sent).
//!
//! `\Starred` is the `\Flagged` flag and `\Draft` the `\Draft` flag: either implies the other.
//!
//! # X-GM-LABELS on the wire
//!
//! Following what Gmail sends: system labels are quoted strings with the backslash escaped
//! (`"\\Inbox"`), plain ASCII labels that are valid atoms are atoms (`Work/Projects`), labels
//! with a space or another special character are quoted strings (`"My Label"`), non-ASCII labels
//! are modified UTF-7 in a quoted string (`"&ZeVnLA-"`). A label whose wire form contains `"` or
//! `\` is always sent as a literal; with the default [`LabelLiterals::WhenNeededAndEvery`]`(3)`
//! every non-atom user label of a FETCH reply whose UID is a multiple of 3 is sent as a literal
//! (`{8}\r\nMy Label`), so clients meet both forms deterministically.
//!
//! **The label of the open folder is left out of X-GM-LABELS** (option
//! [`GmailOptions::omit_selected_label`], on by default): fetching from `Work` does not list
//! `Work`, fetching from INBOX does not list `\Inbox`, fetching from Sent Mail does not list
//! `\Sent`. Google's document does not say which folder its example was fetched from, but this
//! is what Gmail does, as client authors report (e.g. dlech/gmailbuttons#10: "The response from
//! the server for FETCH (X-GM-LABELS) does not include the selected folder"; nicm/fdm#151: "if
//! you tell fdm to fetch all email from a single label, that label is not returned by gmail").
//! `[Gmail]/All Mail` stands for no label, so there every label is listed: a label-aware client
//! reads All Mail.
//!
//! # Commands
//!
//! Any state: CAPABILITY, NOOP, ID, LOGOUT. Not authenticated: LOGIN, AUTHENTICATE PLAIN,
//! XOAUTH2 and OAUTHBEARER (RFC 7628; with or without SASL-IR). Authenticated: NAMESPACE, ENABLE (enables nothing), LIST
//! (with LIST-EXTENDED selection options SUBSCRIBED/SPECIAL-USE, return options SUBSCRIBED,
//! SPECIAL-USE, CHILDREN, STATUS (LIST-STATUS), several patterns), XLIST, LSUB, STATUS, SELECT,
//! EXAMINE, GETQUOTAROOT, GETQUOTA, IDLE. Selected: FETCH and UID FETCH (UID, FLAGS,
//! INTERNALDATE, RFC822.SIZE, X-GM-MSGID, X-GM-THRID, X-GM-LABELS, BODY[] / BODY.PEEK[] with
//! sections HEADER, TEXT, HEADER.FIELDS, HEADER.FIELDS.NOT and partial `<o.n>`, RFC822,
//! RFC822.HEADER, RFC822.TEXT, FAST), SEARCH and UID SEARCH (with ESEARCH's RETURN (MIN MAX COUNT
//! ALL); keys ALL, flags, KEYWORD, UID, sequence sets, HEADER/FROM/TO/CC/BCC/SUBJECT, BODY, TEXT,
//! LARGER, SMALLER, NOT, OR, parenthesised lists, X-GM-MSGID, X-GM-THRID, X-GM-LABELS, X-GM-RAW),
//! UNSELECT, CLOSE, CHECK. The account is read-only: APPEND, STORE, COPY, MOVE, EXPUNGE, CREATE,
//! DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (and their UID forms) answer `NO [CANNOT] read-only
//! emulator`; FETCH never sets `\Seen`. Anything else is `BAD`.
//!
//! X-GM-RAW understands `in:` and `label:` (system names `inbox`, `sent`, `draft(s)`, `trash`,
//! `spam`, `starred`, `important`, `anywhere`, or a user label, case-insensitive, with `-` for
//! `/` and space as in Gmail), `is:starred|important|unread|read`, `has:userlabels|nouserlabels`,
//! `rfc822msgid:`, `from:`, `to:`, `subject:`, bare words (searched in the raw message), and `-`
//! to negate a term; terms are ANDed. Other operators answer `NO`.
//!
//! # Tokens
//!
//! Without [`GmailOptions::oauth`], XOAUTH2 and OAUTHBEARER take the account's password as the
//! token and a wrong one is answered `NO` at once. With it, tokens are checked in-process with
//! the OAuth test server ([`crate::oauth::OAuthHandle::authorize`]): the SASL user must be the
//! account and the token live and either that user's or an application token granted the
//! account. A refused token gets Gmail's failure exchange (RFC 7628 §3.2.2): `+ ` and the
//! base64 of `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`, the
//! client's dummy answer (an empty line for XOAUTH2, `AQ==` for OAUTHBEARER; anything is
//! taken), then `NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)`. With
//! [`GmailOptions::bye_on_token_expiry`], a session logged in with a token ends with
//! [`TOKEN_EXPIRED_BYE`] when the token expires or is revoked (checked before each command
//! and while waiting for one, IDLE included), as Exchange Online does; Gmail keeps such
//! sessions open.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::corpus::{SplitMix64, civil};
use crate::{b64, mutf7};

/// The `\Inbox` system label.
pub const LABEL_INBOX: &str = "\\Inbox";
/// The `\Sent` system label.
pub const LABEL_SENT: &str = "\\Sent";
/// The `\Draft` system label (the `\Draft` flag).
pub const LABEL_DRAFT: &str = "\\Draft";
/// The `\Trash` system label.
pub const LABEL_TRASH: &str = "\\Trash";
/// The `\Spam` system label.
pub const LABEL_SPAM: &str = "\\Spam";
/// The `\Starred` system label (the `\Flagged` flag).
pub const LABEL_STARRED: &str = "\\Starred";
/// The `\Important` system label.
pub const LABEL_IMPORTANT: &str = "\\Important";
/// Gmail's system labels.
pub const SYSTEM_LABELS: [&str; 7] = [
    LABEL_INBOX,
    LABEL_SENT,
    LABEL_DRAFT,
    LABEL_TRASH,
    LABEL_SPAM,
    LABEL_STARRED,
    LABEL_IMPORTANT,
];

/// CAPABILITY after login.
pub const CAPABILITIES: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN \
     X-GM-EXT-1 UIDPLUS ENABLE MOVE ESEARCH LIST-EXTENDED LIST-STATUS SPECIAL-USE";
/// CAPABILITY before login.
pub const PRE_AUTH_CAPABILITIES: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST \
     CHILDREN X-GM-EXT-1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=OAUTHBEARER";

/// Gmail's answer to a wrong password.
pub const AUTH_FAILED: &str = "[AUTHENTICATIONFAILED] Invalid credentials (Failure)";
/// What a token-logged session gets when its token expires, with
/// [`GmailOptions::bye_on_token_expiry`] (Exchange Online's words).
pub const TOKEN_EXPIRED_BYE: &str = "* BYE Session invalidated - AccessTokenExpired";
/// The JSON of a refused token (RFC 7628 §3.2.2, as Gmail sends it).
pub const TOKEN_FAILURE_JSON: &str =
    r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;

const READ_ONLY: &str = "[CANNOT] read-only emulator";
const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "\\Seen"];
const MAX_LITERAL: usize = 64 << 20;
const MAX_LINE: usize = 1 << 20;
const QUOTA_LIMIT_KB: u64 = 15 * 1024 * 1024;

/// One message of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailMessage {
    /// X-GM-MSGID: unique in the account.
    pub msgid: u64,
    /// X-GM-THRID.
    pub thrid: u64,
    /// Labels: system labels (`\Inbox`...) and user labels (`Work/Projects`), in UTF-8.
    pub labels: Vec<String>,
    /// IMAP flags (`\Seen`, `$Forwarded`...).
    pub flags: Vec<String>,
    /// INTERNALDATE, e.g. `17-Jul-1996 02:44:25 -0700`.
    pub internal_date: String,
    /// The message, byte for byte.
    pub body: Vec<u8>,
}

impl GmailMessage {
    /// Whether the message has a label (system labels compared case-insensitively).
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.contains(&canonical_label(label))
    }

    /// Whether the message has a flag (case-insensitive).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    /// The Message-ID header, unfolded and trimmed.
    pub fn message_id(&self) -> Option<String> {
        header_value(&self.body, "Message-ID").filter(|v| !v.is_empty())
    }
}

/// Language of the special folders' names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Locale {
    /// `[Gmail]/All Mail`, `[Gmail]/Sent Mail`...
    #[default]
    English,
    /// `[Gmail]/Alle Nachrichten`, `[Gmail]/Gesendet`...
    German,
}

/// When X-GM-LABELS entries are sent as IMAP literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelLiterals {
    /// Only labels whose wire form contains `"` or `\`.
    WhenNeeded,
    /// As `WhenNeeded`, and every non-atom user label in the FETCH replies of the UIDs that are
    /// multiples of `n`.
    WhenNeededAndEvery(u32),
}

/// Options of an emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailOptions {
    /// Names of the special folders.
    pub locale: Locale,
    /// When labels are sent as literals.
    pub label_literals: LabelLiterals,
    /// Leave the open folder's own label out of X-GM-LABELS, as Gmail does.
    pub omit_selected_label: bool,
    /// Check XOAUTH2/OAUTHBEARER tokens with this OAuth test server instead of taking the
    /// password as the token.
    pub oauth: Option<crate::oauth::OAuthHandle>,
    /// End a token-logged session with [`TOKEN_EXPIRED_BYE`] once its token is no longer live.
    pub bye_on_token_expiry: bool,
    /// Throttle the account as Exchange Online does (see [`Throttle`]); none by default.
    pub throttle: Option<Throttle>,
}

/// Exchange Online's throttling, as clients meet it (imapsync's FAQ, imap_tools#135): a
/// command is answered `NO Request is throttled. Suggested Backoff Time: N milliseconds`,
/// with no response code, and the account is throttled for that long. Here every `every`-th
/// UID FETCH of whole messages (`BODY[]`, `BODY.PEEK[]`, their parts `<o.n>`, `BINARY[]`,
/// `RFC822`, `RFC822.TEXT`; not a listing's `RFC822.SIZE` or header fields) over the account
/// starts such
/// a window; any command of a logged-in session of the account that arrives while it lasts
/// (LOGOUT excepted) gets the same answer with the time left, and is logged as early. What
/// happened is in [`GmailEmulator::throttle_log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Every how many body fetches a window starts.
    pub every: u32,
    /// How long the window lasts: the suggested backoff time.
    pub backoff: std::time::Duration,
}

/// One throttled command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// The command's name (`UID FETCH`, `SELECT`...).
    pub command: String,
    /// The backoff time the reply suggested.
    pub suggested: std::time::Duration,
    /// The command arrived inside a window an earlier reply announced: the client did not
    /// wait as long as it was told.
    pub early: bool,
}

/// The words of Exchange Online's throttling reply.
pub fn throttled_reply(backoff: std::time::Duration) -> String {
    format!(
        "Request is throttled. Suggested Backoff Time: {} milliseconds",
        backoff.as_millis().max(1)
    )
}

impl Default for GmailOptions {
    fn default() -> Self {
        Self {
            locale: Locale::English,
            label_literals: LabelLiterals::WhenNeededAndEvery(3),
            omit_selected_label: true,
            oauth: None,
            bye_on_token_expiry: false,
            throttle: None,
        }
    }
}

/// Gmail's special folders (INBOX included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialFolder {
    /// `INBOX`: label `\Inbox`.
    Inbox,
    /// All Mail (`\All`): everything but Trash and Spam.
    AllMail,
    /// Drafts (`\Drafts`): label `\Draft`.
    Drafts,
    /// Important (`\Important`): label `\Important`.
    Important,
    /// Sent Mail (`\Sent`): label `\Sent`.
    Sent,
    /// Spam (`\Junk`): label `\Spam`.
    Spam,
    /// Starred (`\Flagged`): label `\Starred`.
    Starred,
    /// Trash (`\Trash`): label `\Trash`.
    Trash,
}

impl SpecialFolder {
    /// All of them, in LIST order.
    pub const ALL: [Self; 8] = [
        Self::Inbox,
        Self::AllMail,
        Self::Drafts,
        Self::Important,
        Self::Sent,
        Self::Spam,
        Self::Starred,
        Self::Trash,
    ];

    /// Full folder name (UTF-8) in a locale.
    pub fn name(self, locale: Locale) -> &'static str {
        match (self, locale) {
            (Self::Inbox, _) => "INBOX",
            (Self::AllMail, Locale::English) => "[Gmail]/All Mail",
            (Self::Drafts, Locale::English) => "[Gmail]/Drafts",
            (Self::Important, Locale::English) => "[Gmail]/Important",
            (Self::Sent, Locale::English) => "[Gmail]/Sent Mail",
            (Self::Spam, Locale::English) => "[Gmail]/Spam",
            (Self::Starred, Locale::English) => "[Gmail]/Starred",
            (Self::Trash, Locale::English) => "[Gmail]/Trash",
            (Self::AllMail, Locale::German) => "[Gmail]/Alle Nachrichten",
            (Self::Drafts, Locale::German) => "[Gmail]/Entwürfe",
            (Self::Important, Locale::German) => "[Gmail]/Wichtig",
            (Self::Sent, Locale::German) => "[Gmail]/Gesendet",
            (Self::Spam, Locale::German) => "[Gmail]/Spam",
            (Self::Starred, Locale::German) => "[Gmail]/Markiert",
            (Self::Trash, Locale::German) => "[Gmail]/Papierkorb",
        }
    }

    /// SPECIAL-USE attribute in LIST (`None` for INBOX).
    pub fn special_use(self) -> Option<&'static str> {
        match self {
            Self::Inbox => None,
            Self::AllMail => Some("\\All"),
            Self::Drafts => Some("\\Drafts"),
            Self::Important => Some("\\Important"),
            Self::Sent => Some("\\Sent"),
            Self::Spam => Some("\\Junk"),
            Self::Starred => Some("\\Flagged"),
            Self::Trash => Some("\\Trash"),
        }
    }

    /// The label the folder shows (`None` for All Mail).
    pub fn label(self) -> Option<&'static str> {
        match self {
            Self::Inbox => Some(LABEL_INBOX),
            Self::AllMail => None,
            Self::Drafts => Some(LABEL_DRAFT),
            Self::Important => Some(LABEL_IMPORTANT),
            Self::Sent => Some(LABEL_SENT),
            Self::Spam => Some(LABEL_SPAM),
            Self::Starred => Some(LABEL_STARRED),
            Self::Trash => Some(LABEL_TRASH),
        }
    }

    /// XLIST attribute (Gmail's pre-SPECIAL-USE names).
    fn xlist_attribute(self) -> &'static str {
        match self {
            Self::Inbox => "\\Inbox",
            Self::AllMail => "\\AllMail",
            Self::Drafts => "\\Drafts",
            Self::Important => "\\Important",
            Self::Sent => "\\Sent",
            Self::Spam => "\\Spam",
            Self::Starred => "\\Starred",
            Self::Trash => "\\Trash",
        }
    }
}

/// The system label spelled canonically (`\inbox` → `\Inbox`, `\Drafts` → `\Draft`); user
/// labels unchanged.
fn canonical_label(label: &str) -> String {
    if label.starts_with('\\') {
        if label.eq_ignore_ascii_case("\\Drafts") {
            return LABEL_DRAFT.to_owned();
        }
        if let Some(s) = SYSTEM_LABELS.iter().find(|s| s.eq_ignore_ascii_case(label)) {
            return (*s).to_owned();
        }
    }
    label.to_owned()
}

fn is_system_label(label: &str) -> bool {
    SYSTEM_LABELS.contains(&label)
}

/// Canonical labels and flags, `\Starred` ⇔ `\Flagged`, `\Draft` label ⇔ `\Draft` flag.
fn normalize(m: &mut GmailMessage) {
    let mut labels: Vec<String> = Vec::with_capacity(m.labels.len());
    for l in m.labels.drain(..) {
        let l = canonical_label(&l);
        if !l.is_empty() && !labels.contains(&l) {
            labels.push(l);
        }
    }
    let mut flags: Vec<String> = Vec::with_capacity(m.flags.len());
    for f in m.flags.drain(..) {
        let f = SYSTEM_FLAGS
            .iter()
            .find(|s| s.eq_ignore_ascii_case(&f))
            .map_or(f, |s| (*s).to_owned());
        if !f.is_empty() && !flags.iter().any(|x| x.eq_ignore_ascii_case(&f)) {
            flags.push(f);
        }
    }
    for (label, flag) in [(LABEL_STARRED, "\\Flagged"), (LABEL_DRAFT, "\\Draft")] {
        let has_label = labels.iter().any(|l| l == label);
        let has_flag = flags.iter().any(|f| f == flag);
        if has_label && !has_flag {
            flags.push(flag.to_owned());
        } else if has_flag && !has_label {
            labels.push(label.to_owned());
        }
    }
    m.labels = labels;
    m.flags = flags;
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Special(SpecialFolder),
    /// `[Gmail]`.
    Container,
    User(String),
}

impl Kind {
    /// The label the folder stands for.
    fn label(&self) -> Option<&str> {
        match self {
            Self::Special(s) => s.label(),
            Self::Container => None,
            Self::User(l) => Some(l),
        }
    }

    fn contains(&self, m: &GmailMessage) -> bool {
        let has = |l: &str| m.labels.iter().any(|x| x == l);
        let trash = has(LABEL_TRASH);
        let spam = has(LABEL_SPAM);
        match self {
            Self::Special(SpecialFolder::Trash) => trash,
            Self::Special(SpecialFolder::Spam) => spam && !trash,
            _ if trash || spam => false,
            Self::Special(SpecialFolder::AllMail) => true,
            Self::Special(s) => s.label().is_some_and(has),
            Self::Container => false,
            Self::User(l) => has(l),
        }
    }
}

#[derive(Debug)]
struct Folder {
    kind: Kind,
    /// Full name, UTF-8.
    name: String,
    uid_validity: u32,
    uid_next: u32,
    /// (UID, X-GM-MSGID), UIDs increasing.
    entries: Vec<(u32, u64)>,
}

impl Folder {
    fn new(kind: Kind, name: String) -> Self {
        // FNV-1a of the name: fixed per folder, different between folders.
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        Self {
            kind,
            name,
            uid_validity: (h & 0x7fff_ffff).max(1),
            uid_next: 1,
            entries: Vec::new(),
        }
    }

    fn selectable(&self) -> bool {
        self.kind != Kind::Container
    }

    fn wire_name(&self) -> String {
        mutf7::encode(&self.name)
    }

    /// LIST order: INBOX, user labels, then `[Gmail]` and its children.
    fn sort_key(&self) -> (u8, &str) {
        match self.kind {
            Kind::Special(SpecialFolder::Inbox) => (0, ""),
            Kind::User(_) => (1, &self.name),
            _ => (2, &self.name),
        }
    }
}

#[derive(Debug)]
struct State {
    user: String,
    password: String,
    options: GmailOptions,
    messages: Vec<GmailMessage>,
    index: HashMap<u64, usize>,
    folders: Vec<Folder>,
    /// Body fetches seen, for [`Throttle::every`].
    body_fetches: u32,
    /// The end of the throttling window, if one was announced.
    throttled_until: Option<tokio::time::Instant>,
    /// Every throttled command, in order.
    throttle_log: Vec<Throttled>,
}

impl State {
    fn new(user: &str, password: &str, options: GmailOptions) -> Self {
        let mut folders = Vec::new();
        for s in SpecialFolder::ALL {
            folders.push(Folder::new(
                Kind::Special(s),
                s.name(options.locale).to_owned(),
            ));
        }
        folders.push(Folder::new(Kind::Container, "[Gmail]".to_owned()));
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
            options,
            messages: Vec::new(),
            index: HashMap::new(),
            folders,
            body_fetches: 0,
            throttled_until: None,
            throttle_log: Vec::new(),
        }
    }

    /// With [`GmailOptions::throttle`]: the throttling reply for this command, if it gets one.
    fn throttle(&mut self, cmd: &str, args: &[Tok]) -> Option<String> {
        let t = self.options.throttle?;
        let now = tokio::time::Instant::now();
        let sub = args.first().and_then(Tok::atom).unwrap_or("");
        let name = if cmd == "UID" {
            format!("UID {}", sub.to_ascii_uppercase())
        } else {
            cmd.to_owned()
        };
        if let Some(until) = self.throttled_until.filter(|u| *u > now) {
            let left = until - now;
            self.throttle_log.push(Throttled {
                command: name,
                suggested: left,
                early: true,
            });
            return Some(throttled_reply(left));
        }
        let body_fetch = name == "UID FETCH"
            && args.iter().skip(2).any(|a| {
                let text = match a {
                    Tok::List(items) => items
                        .iter()
                        .filter_map(Tok::atom)
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.atom().unwrap_or("").to_owned(),
                };
                let upper = text.to_ascii_uppercase();
                upper.split([' ', '(', ')']).any(|w| {
                    ["BODY[]", "BODY.PEEK[]", "BINARY[]", "BINARY.PEEK[]"]
                        .iter()
                        .any(|b| w.starts_with(b))
                        || matches!(w, "RFC822" | "RFC822.TEXT")
                })
            });
        if !body_fetch {
            return None;
        }
        self.body_fetches += 1;
        if !self.body_fetches.is_multiple_of(t.every.max(1)) {
            return None;
        }
        self.throttled_until = Some(now + t.backoff);
        self.throttle_log.push(Throttled {
            command: name,
            suggested: t.backoff,
            early: false,
        });
        Some(throttled_reply(t.backoff))
    }

    fn insert(&mut self, mut m: GmailMessage) -> io::Result<()> {
        if self.index.contains_key(&m.msgid) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("duplicate X-GM-MSGID {}", m.msgid),
            ));
        }
        normalize(&mut m);
        self.index.insert(m.msgid, self.messages.len());
        self.messages.push(m);
        Ok(())
    }

    fn message(&self, msgid: u64) -> Option<&GmailMessage> {
        self.index.get(&msgid).map(|&i| &self.messages[i])
    }

    /// Creates missing label folders and brings every folder's membership up to date: leavers
    /// lose their UID, newcomers get the next ones (in the order messages were added).
    fn sync(&mut self) {
        let mut needed: Vec<String> = Vec::new();
        for m in &self.messages {
            for l in m.labels.iter().filter(|l| !l.starts_with('\\')) {
                let mut path = String::new();
                for (i, part) in l.split('/').enumerate() {
                    if i > 0 {
                        path.push('/');
                    }
                    path.push_str(part);
                    if !needed.contains(&path) {
                        needed.push(path.clone());
                    }
                }
            }
        }
        for name in needed {
            let kind = Kind::User(name.clone());
            if !self.folders.iter().any(|f| f.kind == kind) {
                self.folders.push(Folder::new(kind, name));
            }
        }
        let messages = &self.messages;
        let index = &self.index;
        for f in &mut self.folders {
            let kind = &f.kind;
            f.entries
                .retain(|(_, id)| index.get(id).is_some_and(|&i| kind.contains(&messages[i])));
            let present: HashSet<u64> = f.entries.iter().map(|e| e.1).collect();
            for m in messages {
                if !present.contains(&m.msgid) && f.kind.contains(m) {
                    f.entries.push((f.uid_next, m.msgid));
                    f.uid_next += 1;
                }
            }
        }
    }

    /// A folder by its UTF-8 name (INBOX in any case).
    fn folder(&self, name: &str) -> Option<&Folder> {
        if name.eq_ignore_ascii_case("INBOX") {
            return self
                .folders
                .iter()
                .find(|f| f.kind == Kind::Special(SpecialFolder::Inbox));
        }
        self.folders.iter().find(|f| f.name == name)
    }

    /// A folder by its name on the wire.
    fn folder_wire(&self, wire: &str) -> Option<&Folder> {
        self.folder(&mutf7::decode(wire).ok()?)
    }

    fn sorted_folders(&self) -> Vec<&Folder> {
        let mut v: Vec<&Folder> = self.folders.iter().collect();
        v.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        v
    }

    fn has_children(&self, f: &Folder) -> bool {
        if f.kind == Kind::Special(SpecialFolder::Inbox) {
            return false;
        }
        let prefix = format!("{}/", f.name);
        self.folders.iter().any(|o| o.name.starts_with(&prefix))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running emulator. Dropping it stops the server and its connections.
pub struct GmailEmulator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl fmt::Debug for GmailEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GmailEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for GmailEmulator {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it aborts them all.
        self.task.abort();
    }
}

impl GmailEmulator {
    /// Starts an English-speaking emulator on 127.0.0.1 (a free port) for one account.
    ///
    /// # Errors
    ///
    /// A duplicate X-GM-MSGID (`InvalidInput`) or a failure to listen.
    pub async fn start(
        user: &str,
        password: &str,
        messages: Vec<GmailMessage>,
    ) -> io::Result<Self> {
        Self::start_with(user, password, messages, GmailOptions::default()).await
    }

    /// As [`GmailEmulator::start`], naming the special folders in another language.
    ///
    /// # Errors
    ///
    /// As [`GmailEmulator::start`].
    pub async fn start_localized(
        user: &str,
        password: &str,
        messages: Vec<GmailMessage>,
        locale: Locale,
    ) -> io::Result<Self> {
        let options = GmailOptions {
            locale,
            ..GmailOptions::default()
        };
        Self::start_with(user, password, messages, options).await
    }

    /// As [`GmailEmulator::start`], with all options.
    ///
    /// # Errors
    ///
    /// As [`GmailEmulator::start`].
    pub async fn start_with(
        user: &str,
        password: &str,
        messages: Vec<GmailMessage>,
        options: GmailOptions,
    ) -> io::Result<Self> {
        let mut state = State::new(user, password, options);
        for m in messages {
            state.insert(m)?;
        }
        state.sync();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(state));
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Self { addr, state, task })
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Adds a message; it enters the folders of its labels with new UIDs.
    ///
    /// # Panics
    ///
    /// If its X-GM-MSGID is already used.
    pub fn add_message(&self, message: GmailMessage) {
        let mut s = lock(&self.state);
        if let Err(e) = s.insert(message) {
            panic!("{e}");
        }
        s.sync();
    }

    /// Adds a label to a message (it enters that folder with a new UID). `false` if the message
    /// does not exist or already has the label.
    pub fn add_label(&self, msgid: u64, label: &str) -> bool {
        let mut s = lock(&self.state);
        let Some(&i) = s.index.get(&msgid) else {
            return false;
        };
        let label = canonical_label(label);
        let m = &mut s.messages[i];
        if label.is_empty() || m.labels.contains(&label) {
            return false;
        }
        m.labels.push(label);
        normalize(m);
        s.sync();
        true
    }

    /// Removes a label from a message (it leaves that folder). `false` if the message does not
    /// exist or has no such label.
    pub fn remove_label(&self, msgid: u64, label: &str) -> bool {
        let mut s = lock(&self.state);
        let Some(&i) = s.index.get(&msgid) else {
            return false;
        };
        let label = canonical_label(label);
        let m = &mut s.messages[i];
        let before = m.labels.len();
        m.labels.retain(|l| *l != label);
        if m.labels.len() == before {
            return false;
        }
        // Keep the flag in step (normalize would otherwise put the label back).
        if label == LABEL_STARRED {
            m.flags.retain(|f| f != "\\Flagged");
        } else if label == LABEL_DRAFT {
            m.flags.retain(|f| f != "\\Draft");
        }
        normalize(m);
        s.sync();
        true
    }

    /// All messages (normalized: canonical labels, flags in step with labels), in the order
    /// they were added.
    pub fn messages(&self) -> Vec<GmailMessage> {
        lock(&self.state).messages.clone()
    }

    /// One message by X-GM-MSGID.
    pub fn message(&self, msgid: u64) -> Option<GmailMessage> {
        lock(&self.state).message(msgid).cloned()
    }

    /// Throttles the account from now on (`None`: no more), e.g. to read it back unthrottled.
    pub fn set_throttle(&self, throttle: Option<Throttle>) {
        let mut s = lock(&self.state);
        s.options.throttle = throttle;
        s.throttled_until = None;
    }

    /// Every command the account's throttling answered (see [`Throttle`]), in order.
    pub fn throttle_log(&self) -> Vec<Throttled> {
        lock(&self.state).throttle_log.clone()
    }

    /// Full names (UTF-8) of all folders, in LIST order, `[Gmail]` included.
    pub fn folders(&self) -> Vec<String> {
        let s = lock(&self.state);
        s.sorted_folders().iter().map(|f| f.name.clone()).collect()
    }

    /// `(UID, X-GM-MSGID)` of a folder's messages (UTF-8 name), UIDs increasing.
    pub fn folder_uids(&self, folder: &str) -> Option<Vec<(u32, u64)>> {
        let s = lock(&self.state);
        s.folder(folder).map(|f| f.entries.clone())
    }

    /// `(UIDVALIDITY, UIDNEXT)` of a folder (UTF-8 name).
    pub fn folder_state(&self, folder: &str) -> Option<(u32, u32)> {
        let s = lock(&self.state);
        s.folder(folder).map(|f| (f.uid_validity, f.uid_next))
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve(stream, peer, Arc::clone(&state)));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<Mutex<State>>) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut conn = Conn {
        rd: BufReader::new(rd),
        wr,
        state,
        authed: false,
        selected: None,
        token: None,
    };
    let greeting = format!(
        "* OK Gimap ready for requests from {} emulator\r\n",
        peer.ip()
    );
    if conn.wr.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let input = match conn.token_deadline() {
            None => conn.read_command().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, conn.read_command()).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = conn.bye_expired().await;
                    return;
                }
            },
        };
        let Ok(Some(input)) = input else { return };
        if conn.token_dead() {
            let _ = conn.bye_expired().await;
            return;
        }
        match conn.handle(input).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// The open folder: a snapshot of its UIDs at SELECT/EXAMINE.
#[derive(Debug)]
struct Selected {
    kind: Kind,
    entries: Vec<(u32, u64)>,
}

enum Input {
    Line(Vec<u8>),
    /// APPEND with a synchronizing literal: refused before the literal is sent.
    Refused(String),
}

enum Done {
    Ok(String),
    No(String),
    Bad(String),
}

impl Done {
    fn ok() -> Self {
        Self::Ok("Success".into())
    }

    fn bad(text: impl Into<String>) -> Self {
        Self::Bad(text.into())
    }

    fn write(&self, tag: &str, out: &mut Vec<u8>) {
        let line = match self {
            Self::Ok(t) => format!("{tag} OK {t}\r\n"),
            Self::No(t) => format!("{tag} NO {t}\r\n"),
            Self::Bad(t) => format!("{tag} BAD {t}\r\n"),
        };
        out.extend_from_slice(line.as_bytes());
    }
}

struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    state: Arc<Mutex<State>>,
    authed: bool,
    selected: Option<Selected>,
    /// With `bye_on_token_expiry`: the token this session logged in with, its server and
    /// expiry.
    token: Option<(crate::oauth::OAuthHandle, String, std::time::SystemTime)>,
}

/// `{n}` or `{n+}` ending a line: `(n, non-synchronizing)`.
fn literal_at_end(line: &[u8]) -> Option<(usize, bool)> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let spec = &line[open + 1..];
    let (digits, plus) = match spec.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (spec, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, plus))
}

fn first_words(buf: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(buf);
    let mut words = text.split_ascii_whitespace();
    let tag = words.next().unwrap_or("*").to_owned();
    let cmd = words.next().unwrap_or("").to_ascii_uppercase();
    (tag, cmd)
}

/// XOAUTH2: `user=<user>\x01auth=Bearer <token>\x01\x01`.
fn xoauth2_fields(decoded: &str) -> Option<(&str, &str)> {
    let mut user = None;
    let mut token = None;
    for field in decoded.split('\x01') {
        if let Some(u) = field.strip_prefix("user=") {
            user = Some(u);
        } else if let Some(t) = field.strip_prefix("auth=Bearer ") {
            token = Some(t);
        }
    }
    user.zip(token)
}

/// OAUTHBEARER (RFC 7628 §3.1): `n,a=<user>,\x01host=..\x01port=..\x01auth=Bearer <token>\x01\x01`;
/// the user is the gs2 authzid (`=2C` for `,`, `=3D` for `=`; only plain names are taken).
fn oauthbearer_fields(decoded: &str) -> Option<(&str, &str)> {
    let mut fields = decoded.split('\x01');
    let gs2 = fields.next()?;
    let mut parts = gs2.split(',');
    if !matches!(parts.next()?, "n" | "y") {
        return None;
    }
    let user = parts.next()?.strip_prefix("a=")?;
    if user.contains('=') {
        return None;
    }
    let token = fields.find_map(|f| {
        f.strip_prefix("auth=").and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        })
    })?;
    Some((user, token))
}

impl Conn {
    /// When the session's token expires (it may be revoked sooner: see `token_dead`).
    fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let (_, _, expires) = self.token.as_ref()?;
        let left = expires
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Some(tokio::time::Instant::now() + left)
    }

    fn token_dead(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|(server, token, _)| !server.is_live(token))
    }

    async fn bye_expired(&mut self) -> io::Result<()> {
        self.send(&format!("{TOKEN_EXPIRED_BYE}\r\n")).await?;
        self.wr.shutdown().await
    }

    async fn send(&mut self, text: &str) -> io::Result<()> {
        self.wr.write_all(text.as_bytes()).await
    }

    /// Reads one command with its literals (sending `+` before each synchronizing one).
    async fn read_command(&mut self) -> io::Result<Option<Input>> {
        let mut buf = Vec::new();
        loop {
            let start = buf.len();
            let n = (&mut self.rd)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf)
                .await?;
            if n == 0 {
                return Ok(None);
            }
            if !buf.ends_with(b"\n") {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            let Some((len, plus)) = literal_at_end(&buf[start..]) else {
                return Ok(Some(Input::Line(buf)));
            };
            if len > MAX_LITERAL {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "literal too big",
                ));
            }
            if !plus {
                let (tag, cmd) = first_words(&buf);
                if cmd == "APPEND" {
                    return Ok(Some(Input::Refused(tag)));
                }
                self.send("+ go ahead\r\n").await?;
            }
            let at = buf.len();
            buf.resize(at + len, 0);
            self.rd.read_exact(&mut buf[at..]).await?;
        }
    }

    /// Reads one line (AUTHENTICATE response, IDLE's DONE), without its CRLF.
    async fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.rd)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line);
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Answers one command; `false` ends the connection.
    async fn handle(&mut self, input: Input) -> io::Result<bool> {
        let raw = match input {
            Input::Refused(tag) => {
                self.send(&format!("{tag} NO {READ_ONLY}\r\n")).await?;
                return Ok(true);
            }
            Input::Line(raw) => raw,
        };
        let line = raw
            .strip_suffix(b"\r\n")
            .or_else(|| raw.strip_suffix(b"\n"))
            .unwrap_or(&raw);
        let toks = match tokenize(line) {
            Ok(t) => t,
            Err(e) => {
                let (tag, _) = first_words(line);
                self.send(&format!("{tag} BAD Could not parse command: {e}\r\n"))
                    .await?;
                return Ok(true);
            }
        };
        let Some(Tok::Atom(tag)) = toks.first() else {
            self.send("* BAD Invalid tag\r\n").await?;
            return Ok(true);
        };
        let Some(cmd) = toks.get(1).and_then(Tok::atom) else {
            self.send(&format!("{tag} BAD Missing command\r\n")).await?;
            return Ok(true);
        };
        let cmd = cmd.to_ascii_uppercase();
        let args = &toks[2..];
        match cmd.as_str() {
            "LOGOUT" => {
                self.send(&format!(
                    "* BYE LOGOUT Requested\r\n{tag} OK 73 GOODBYE\r\n"
                ))
                .await?;
                return Ok(false);
            }
            "AUTHENTICATE" if !self.authed => {
                self.authenticate(tag, args).await?;
                return Ok(true);
            }
            "IDLE" if self.authed => {
                self.idle(tag).await?;
                return Ok(true);
            }
            _ => {}
        }
        let mut out = Vec::new();
        let done = self.command(&cmd, args, tag, &mut out);
        done.write(tag, &mut out);
        self.wr.write_all(&out).await?;
        Ok(true)
    }

    async fn authenticate(&mut self, tag: &str, args: &[Tok]) -> io::Result<()> {
        let mechanism = args
            .first()
            .and_then(Tok::atom)
            .unwrap_or("")
            .to_ascii_uppercase();
        if !["PLAIN", "XOAUTH2", "OAUTHBEARER"].contains(&mechanism.as_str()) {
            return self
                .send(&format!(
                    "{tag} NO [CANNOT] Unsupported mechanism (Failure)\r\n"
                ))
                .await;
        }
        let response = match args.get(1).and_then(Tok::astring) {
            Some(ir) if ir == "=" => String::new(),
            Some(ir) => ir,
            None => {
                self.send("+ \r\n").await?;
                self.read_line().await?
            }
        };
        if response == "*" {
            return self
                .send(&format!("{tag} BAD AUTHENTICATE cancelled\r\n"))
                .await;
        }
        let decoded = b64::decode(response.trim_end_matches('=').as_bytes(), b64::STANDARD)
            .map(|d| String::from_utf8_lossy(&d).into_owned());
        let Some(decoded) = decoded else {
            return self
                .send(&format!("{tag} BAD Invalid base64 (Failure)\r\n"))
                .await;
        };
        let credentials = match mechanism.as_str() {
            "PLAIN" => {
                let mut parts = decoded.split('\0');
                let _authzid = parts.next();
                parts.next().zip(parts.next())
            }
            "XOAUTH2" => xoauth2_fields(&decoded),
            _ => oauthbearer_fields(&decoded),
        };
        let (oauth, bye) = {
            let s = lock(&self.state);
            (s.options.oauth.clone(), s.options.bye_on_token_expiry)
        };
        let token_login = mechanism != "PLAIN";
        let ok = match (&oauth, token_login) {
            (Some(server), true) => {
                let account = lock(&self.state).user.clone();
                credentials
                    .and_then(|(u, token)| {
                        if !u.eq_ignore_ascii_case(&account) {
                            return None;
                        }
                        let info = server.authorize(token, u)?;
                        if bye {
                            self.token = Some((server.clone(), token.to_owned(), info.expires_at));
                        }
                        Some(())
                    })
                    .is_some()
            }
            _ => {
                let s = lock(&self.state);
                credentials.is_some_and(|(u, p)| u.eq_ignore_ascii_case(&s.user) && p == s.password)
            }
        };
        if ok {
            self.authed = true;
            let user = credentials.map(|c| c.0).unwrap_or_default();
            self.send(&format!(
                "* CAPABILITY {CAPABILITIES}\r\n{tag} OK {user} authenticated (Success)\r\n"
            ))
            .await
        } else if oauth.is_some() && token_login {
            // RFC 7628 §3.2.2: the error as a challenge, the client's dummy answer, then NO.
            let challenge = b64::encode(TOKEN_FAILURE_JSON.as_bytes(), b64::STANDARD, true);
            self.send(&format!("+ {challenge}\r\n")).await?;
            let _dummy = self.read_line().await?;
            self.send(&format!("{tag} NO {AUTH_FAILED}\r\n")).await
        } else {
            self.send(&format!("{tag} NO {AUTH_FAILED}\r\n")).await
        }
    }

    async fn idle(&mut self, tag: &str) -> io::Result<()> {
        self.send("+ idling\r\n").await?;
        let line = match self.token_deadline() {
            None => self.read_line().await?,
            Some(deadline) => match tokio::time::timeout_at(deadline, self.read_line()).await {
                Ok(line) => line?,
                Err(_) => {
                    self.bye_expired().await?;
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
            },
        };
        if line.trim().eq_ignore_ascii_case("DONE") {
            self.send(&format!("{tag} OK IDLE terminated (Success)\r\n"))
                .await
        } else {
            self.send(&format!("{tag} BAD Could not parse command\r\n"))
                .await
        }
    }

    fn command(&mut self, cmd: &str, args: &[Tok], tag: &str, out: &mut Vec<u8>) -> Done {
        const NOT_AUTHENTICATED: [&str; 2] = ["LOGIN", "AUTHENTICATE"];
        const AUTHENTICATED: [&str; 17] = [
            "NAMESPACE",
            "ENABLE",
            "LIST",
            "XLIST",
            "LSUB",
            "STATUS",
            "SELECT",
            "EXAMINE",
            "GETQUOTAROOT",
            "GETQUOTA",
            "CREATE",
            "DELETE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "APPEND",
            "IDLE",
        ];
        const SELECTED: [&str; 10] = [
            "UNSELECT", "CLOSE", "CHECK", "FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE",
            "UID",
        ];
        match cmd {
            "CAPABILITY" => {
                let caps = if self.authed {
                    CAPABILITIES
                } else {
                    PRE_AUTH_CAPABILITIES
                };
                out.extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
                return Done::Ok("Thats all she wrote! (Success)".into());
            }
            "NOOP" => return Done::ok(),
            "ID" => {
                out.extend_from_slice(
                    b"* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" \
                      \"https://support.google.com/mail\")\r\n",
                );
                return Done::ok();
            }
            _ => {}
        }
        let known = |list: &[&str]| list.contains(&cmd);
        if known(&NOT_AUTHENTICATED) {
            if self.authed {
                return Done::bad("Already authenticated");
            }
            return self.login(args, out);
        }
        if !known(&AUTHENTICATED) && !known(&SELECTED) {
            return Done::bad("Unknown command");
        }
        if !self.authed {
            return Done::bad("Command not valid in this state (Failure)");
        }
        if let Some(reply) = lock(&self.state).throttle(cmd, args) {
            return Done::No(reply);
        }
        if known(&SELECTED) && self.selected.is_none() {
            return Done::bad("Command not valid in this state (Failure)");
        }
        match cmd {
            "NAMESPACE" => {
                out.extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                Done::ok()
            }
            "ENABLE" => {
                out.extend_from_slice(b"* ENABLED\r\n");
                Done::ok()
            }
            "LIST" | "XLIST" | "LSUB" => self.list(cmd, args, out),
            "STATUS" => self.status(args, out),
            "SELECT" | "EXAMINE" => self.select(cmd == "EXAMINE", args, out),
            "GETQUOTAROOT" | "GETQUOTA" => self.quota(cmd, args, out),
            "UNSELECT" | "CLOSE" => {
                self.selected = None;
                Done::ok()
            }
            "CHECK" => Done::ok(),
            "FETCH" => self.fetch(false, args, out),
            "SEARCH" => self.search(false, args, tag, out),
            "UID" => {
                let sub = args
                    .first()
                    .and_then(Tok::atom)
                    .unwrap_or("")
                    .to_ascii_uppercase();
                match sub.as_str() {
                    "FETCH" => self.fetch(true, &args[1..], out),
                    "SEARCH" => self.search(true, &args[1..], tag, out),
                    "STORE" | "COPY" | "MOVE" | "EXPUNGE" => Done::No(READ_ONLY.into()),
                    _ => Done::bad("Unknown UID command"),
                }
            }
            // CREATE, DELETE, RENAME, (UN)SUBSCRIBE, APPEND, STORE, COPY, MOVE, EXPUNGE.
            _ => Done::No(READ_ONLY.into()),
        }
    }

    fn login(&mut self, args: &[Tok], out: &mut Vec<u8>) -> Done {
        let (Some(user), Some(password), 2) = (
            args.first().and_then(Tok::astring),
            args.get(1).and_then(Tok::astring),
            args.len(),
        ) else {
            return Done::bad("Invalid arguments for LOGIN");
        };
        let s = lock(&self.state);
        if user.eq_ignore_ascii_case(&s.user) && password == s.password {
            drop(s);
            self.authed = true;
            out.extend_from_slice(format!("* CAPABILITY {CAPABILITIES}\r\n").as_bytes());
            Done::Ok(format!("{user} authenticated (Success)"))
        } else {
            Done::No(AUTH_FAILED.into())
        }
    }

    fn list(&mut self, cmd: &str, args: &[Tok], out: &mut Vec<u8>) -> Done {
        let spec = match ListSpec::parse(cmd, args) {
            Ok(s) => s,
            Err(e) => return Done::bad(e),
        };
        let s = lock(&self.state);
        let verb = if cmd == "LSUB" { "LSUB" } else { cmd };
        if spec.patterns.len() == 1 && spec.patterns[0].is_empty() {
            // The hierarchy separator.
            out.extend_from_slice(format!("* {verb} (\\Noselect) \"/\" \"\"\r\n").as_bytes());
            return Done::ok();
        }
        for f in s.sorted_folders() {
            let wire = f.wire_name();
            let is_inbox = f.kind == Kind::Special(SpecialFolder::Inbox);
            let matched = spec.patterns.iter().any(|p| {
                let full = format!("{}{p}", spec.reference);
                glob(full.as_bytes(), wire.as_bytes())
                    || (is_inbox && glob(full.to_ascii_uppercase().as_bytes(), b"INBOX"))
            });
            if !matched {
                continue;
            }
            let special = match f.kind {
                Kind::Special(sf) => Some(sf),
                _ => None,
            };
            let special_use = special.and_then(SpecialFolder::special_use);
            if spec.select_special_use && special_use.is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if s.has_children(f) {
                attrs.push("\\HasChildren");
            } else {
                attrs.push("\\HasNoChildren");
            }
            if !f.selectable() {
                attrs.push("\\Noselect");
            }
            if cmd == "XLIST" {
                if let Some(sf) = special {
                    attrs.push(sf.xlist_attribute());
                }
            } else if let Some(u) = special_use {
                // Gmail sends SPECIAL-USE attributes in every LIST reply.
                attrs.push(u);
            }
            // Every folder is subscribed (Gmail's "Show in IMAP").
            if spec.return_subscribed {
                attrs.push("\\Subscribed");
            }
            out.extend_from_slice(
                format!(
                    "* {verb} ({}) \"/\" {}\r\n",
                    attrs.join(" "),
                    quote_str(&wire)
                )
                .as_bytes(),
            );
            if let Some(items) = &spec.return_status
                && f.selectable()
            {
                match status_items(&s, f, items) {
                    Ok(text) => out.extend_from_slice(
                        format!("* STATUS {} ({text})\r\n", quote_str(&wire)).as_bytes(),
                    ),
                    Err(e) => return Done::bad(e),
                }
            }
        }
        Done::ok()
    }

    fn status(&mut self, args: &[Tok], out: &mut Vec<u8>) -> Done {
        let (Some(name), Some(Tok::List(items)), 2) =
            (args.first().and_then(Tok::astring), args.get(1), args.len())
        else {
            return Done::bad("Invalid arguments for STATUS");
        };
        let items: Option<Vec<String>> =
            items.iter().map(|t| t.atom().map(str::to_owned)).collect();
        let Some(items) = items else {
            return Done::bad("Invalid STATUS items");
        };
        let s = lock(&self.state);
        let Some(f) = s.folder_wire(&name).filter(|f| f.selectable()) else {
            return Done::No(format!("[NONEXISTENT] Unknown Mailbox: {name} (Failure)"));
        };
        match status_items(&s, f, &items) {
            Ok(text) => {
                out.extend_from_slice(
                    format!("* STATUS {} ({text})\r\n", quote_str(&name)).as_bytes(),
                );
                Done::ok()
            }
            Err(e) => Done::bad(e),
        }
    }

    fn select(&mut self, read_only: bool, args: &[Tok], out: &mut Vec<u8>) -> Done {
        self.selected = None;
        let Some(name) = args.first().and_then(Tok::astring) else {
            return Done::bad("Invalid arguments");
        };
        if args.len() > 1 {
            // (CONDSTORE) and friends: not announced, not accepted.
            return Done::bad("Unsupported SELECT parameters");
        }
        let s = lock(&self.state);
        let Some(f) = s.folder_wire(&name).filter(|f| f.selectable()) else {
            return Done::No(format!(
                "[NONEXISTENT] Unknown Mailbox: {name} (now in authenticated state) (Failure)"
            ));
        };
        let mut flags: Vec<String> = SYSTEM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        flags.push("$NotPhishing".into());
        flags.push("$Phishing".into());
        let mut keywords: Vec<String> = f
            .entries
            .iter()
            .filter_map(|(_, id)| s.message(*id))
            .flat_map(|m| m.flags.iter())
            .filter(|fl| !fl.starts_with('\\') && !flags.contains(fl))
            .cloned()
            .collect();
        keywords.sort();
        keywords.dedup();
        flags.extend(keywords);
        let flags = flags.join(" ");
        let permanent = if read_only {
            String::new()
        } else {
            format!("{flags} \\*")
        };
        let text = format!(
            "* FLAGS ({flags})\r\n\
             * OK [PERMANENTFLAGS ({permanent})] Flags permitted.\r\n\
             * OK [UIDVALIDITY {}] UIDs valid.\r\n\
             * {} EXISTS\r\n\
             * 0 RECENT\r\n\
             * OK [UIDNEXT {}] Predicted next UID.\r\n",
            f.uid_validity,
            f.entries.len(),
            f.uid_next
        );
        out.extend_from_slice(text.as_bytes());
        let selected = Selected {
            kind: f.kind.clone(),
            entries: f.entries.clone(),
        };
        drop(s);
        self.selected = Some(selected);
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        Done::Ok(format!("[{mode}] {name} selected. (Success)"))
    }

    fn quota(&mut self, cmd: &str, args: &[Tok], out: &mut Vec<u8>) -> Done {
        let Some(arg) = args.first().and_then(Tok::astring) else {
            return Done::bad("Invalid arguments");
        };
        let s = lock(&self.state);
        let used: u64 = s.messages.iter().map(|m| m.body.len() as u64).sum();
        let used = used.div_ceil(1024);
        if cmd == "GETQUOTAROOT" {
            if s.folder_wire(&arg).is_none() {
                return Done::No(format!("[NONEXISTENT] Unknown Mailbox: {arg} (Failure)"));
            }
            out.extend_from_slice(format!("* QUOTAROOT {} \"\"\r\n", quote_str(&arg)).as_bytes());
        } else if !arg.is_empty() {
            return Done::No("Unknown quota root (Failure)".into());
        }
        out.extend_from_slice(
            format!("* QUOTA \"\" (STORAGE {used} {QUOTA_LIMIT_KB})\r\n").as_bytes(),
        );
        Done::ok()
    }

    fn fetch(&mut self, uid_mode: bool, args: &[Tok], out: &mut Vec<u8>) -> Done {
        let Some(sel) = &self.selected else {
            return Done::bad("No mailbox selected");
        };
        let (Some(set), Some(items)) = (args.first().and_then(Tok::atom), args.get(1)) else {
            return Done::bad("Invalid arguments for FETCH");
        };
        if args.len() > 2 {
            return Done::bad("FETCH modifiers are not supported");
        }
        let Some(set) = SeqSet::parse(set) else {
            return Done::bad("Invalid sequence set");
        };
        let mut items = match parse_fetch_items(items) {
            Ok(i) => i,
            Err(e) => return Done::bad(e),
        };
        if uid_mode && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        let s = lock(&self.state);
        let star = if uid_mode {
            sel.entries.last().map_or(0, |e| e.0)
        } else {
            sel.entries.len() as u32
        };
        for (i, &(uid, msgid)) in sel.entries.iter().enumerate() {
            let seq = i as u32 + 1;
            if !set.contains(if uid_mode { uid } else { seq }, star) {
                continue;
            }
            let Some(m) = s.message(msgid) else {
                continue;
            };
            write_fetch(out, seq, uid, m, &items, &sel.kind, &s.options);
        }
        Done::ok()
    }

    fn search(&mut self, uid_mode: bool, args: &[Tok], tag: &str, out: &mut Vec<u8>) -> Done {
        let Some(sel) = &self.selected else {
            return Done::bad("No mailbox selected");
        };
        let mut i = 0;
        let mut esearch: Option<Vec<String>> = None;
        if args
            .first()
            .and_then(Tok::atom)
            .is_some_and(|a| a.eq_ignore_ascii_case("RETURN"))
        {
            let Some(Tok::List(opts)) = args.get(1) else {
                return Done::bad("Invalid RETURN options");
            };
            let mut v = Vec::new();
            for o in opts {
                match o.atom().map(str::to_ascii_uppercase) {
                    Some(a) if ["MIN", "MAX", "COUNT", "ALL"].contains(&a.as_str()) => v.push(a),
                    _ => return Done::bad("Unsupported RETURN option"),
                }
            }
            if v.is_empty() {
                v.push("ALL".into());
            }
            esearch = Some(v);
            i = 2;
        }
        if args
            .get(i)
            .and_then(Tok::atom)
            .is_some_and(|a| a.eq_ignore_ascii_case("CHARSET"))
        {
            let charset = args.get(i + 1).and_then(Tok::astring).unwrap_or_default();
            if !charset.eq_ignore_ascii_case("UTF-8") && !charset.eq_ignore_ascii_case("US-ASCII") {
                return Done::No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset".into());
            }
            i += 2;
        }
        let mut keys = Vec::new();
        while i < args.len() {
            match parse_key(args, &mut i) {
                Ok(k) => keys.push(k),
                Err(d) => return d,
            }
        }
        if keys.is_empty() {
            return Done::bad("Missing search criteria");
        }
        let key = Key::And(keys);
        let s = lock(&self.state);
        let star_uid = sel.entries.last().map_or(0, |e| e.0);
        let star_seq = sel.entries.len() as u32;
        let mut hits = Vec::new();
        for (n, &(uid, msgid)) in sel.entries.iter().enumerate() {
            let Some(msg) = s.message(msgid) else {
                continue;
            };
            let ctx = Ctx {
                seq: n as u32 + 1,
                uid,
                star_seq,
                star_uid,
                msg,
            };
            if key.matches(&ctx) {
                hits.push(if uid_mode { uid } else { ctx.seq });
            }
        }
        match esearch {
            None => {
                let mut line = String::from("* SEARCH");
                for h in &hits {
                    line.push(' ');
                    line.push_str(&h.to_string());
                }
                line.push_str("\r\n");
                out.extend_from_slice(line.as_bytes());
            }
            Some(opts) => {
                let mut line = format!("* ESEARCH (TAG {})", quote_str(tag));
                if uid_mode {
                    line.push_str(" UID");
                }
                for o in &opts {
                    match o.as_str() {
                        "MIN" if !hits.is_empty() => {
                            line.push_str(&format!(" MIN {}", hits[0]));
                        }
                        "MAX" if !hits.is_empty() => {
                            line.push_str(&format!(" MAX {}", hits[hits.len() - 1]));
                        }
                        "COUNT" => line.push_str(&format!(" COUNT {}", hits.len())),
                        "ALL" if !hits.is_empty() => {
                            line.push_str(&format!(" ALL {}", format_set(&hits)));
                        }
                        _ => {}
                    }
                }
                line.push_str("\r\n");
                out.extend_from_slice(line.as_bytes());
            }
        }
        Done::Ok("SEARCH completed (Success)".into())
    }
}

/// STATUS items of a folder: `MESSAGES 3 UIDNEXT 4`.
fn status_items(s: &State, f: &Folder, items: &[String]) -> Result<String, String> {
    let mut parts = Vec::new();
    for item in items {
        let up = item.to_ascii_uppercase();
        let value = match up.as_str() {
            "MESSAGES" => f.entries.len() as u64,
            "RECENT" => 0,
            "UIDNEXT" => u64::from(f.uid_next),
            "UIDVALIDITY" => u64::from(f.uid_validity),
            "UNSEEN" => f
                .entries
                .iter()
                .filter_map(|(_, id)| s.message(*id))
                .filter(|m| !m.has_flag("\\Seen"))
                .count() as u64,
            _ => return Err(format!("Unsupported STATUS item {item}")),
        };
        parts.push(format!("{up} {value}"));
    }
    Ok(parts.join(" "))
}

/// A LIST, XLIST or LSUB command, parsed.
#[derive(Debug, Default)]
struct ListSpec {
    reference: String,
    patterns: Vec<String>,
    select_special_use: bool,
    return_subscribed: bool,
    return_status: Option<Vec<String>>,
}

impl ListSpec {
    fn parse(cmd: &str, args: &[Tok]) -> Result<Self, String> {
        let mut spec = Self::default();
        let mut i = 0;
        if cmd == "LIST"
            && let Some(Tok::List(opts)) = args.first()
        {
            for o in opts {
                match o.atom().map(str::to_ascii_uppercase).as_deref() {
                    // RFC 5258: the SUBSCRIBED selection implies the SUBSCRIBED return option,
                    // and every folder here is subscribed.
                    Some("SUBSCRIBED") => spec.return_subscribed = true,
                    Some("SPECIAL-USE") => spec.select_special_use = true,
                    Some("RECURSIVEMATCH" | "REMOTE") => {}
                    _ => return Err("Unsupported LIST selection option".into()),
                }
            }
            i = 1;
        }
        spec.reference = args
            .get(i)
            .and_then(Tok::astring)
            .ok_or("Invalid LIST arguments")?;
        match args.get(i + 1) {
            Some(Tok::List(patterns)) if cmd == "LIST" => {
                for p in patterns {
                    spec.patterns.push(p.astring().ok_or("Invalid pattern")?);
                }
            }
            Some(t) => spec.patterns.push(t.astring().ok_or("Invalid pattern")?),
            None => return Err("Invalid LIST arguments".into()),
        }
        i += 2;
        if cmd == "LIST"
            && args
                .get(i)
                .and_then(Tok::atom)
                .is_some_and(|a| a.eq_ignore_ascii_case("RETURN"))
        {
            let Some(Tok::List(opts)) = args.get(i + 1) else {
                return Err("Invalid RETURN options".into());
            };
            let mut j = 0;
            while j < opts.len() {
                match opts[j].atom().map(str::to_ascii_uppercase).as_deref() {
                    Some("SUBSCRIBED") => spec.return_subscribed = true,
                    // Gmail sends SPECIAL-USE and CHILDREN attributes anyway.
                    Some("SPECIAL-USE" | "CHILDREN") => {}
                    Some("STATUS") => {
                        let Some(Tok::List(items)) = opts.get(j + 1) else {
                            return Err("Invalid STATUS return option".into());
                        };
                        let items: Option<Vec<String>> =
                            items.iter().map(|t| t.atom().map(str::to_owned)).collect();
                        spec.return_status = Some(items.ok_or("Invalid STATUS items")?);
                        j += 1;
                    }
                    _ => return Err("Unsupported LIST return option".into()),
                }
                j += 1;
            }
            i += 2;
        }
        if i != args.len() {
            return Err("Too many LIST arguments".into());
        }
        Ok(spec)
    }
}

/// LIST wildcard match on wire names: `*` matches anything, `%` anything but `/`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| glob(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

/// A quoted string, `"` and `\` escaped.
fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `s` can be sent as an atom.
fn is_atom(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

fn write_literal(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
}

/// One X-GM-LABELS entry as Gmail writes it (see the module documentation).
fn write_label(out: &mut Vec<u8>, label: &str, force_literal: bool) {
    if is_system_label(label) {
        out.extend_from_slice(quote_str(label).as_bytes());
        return;
    }
    let wire = mutf7::encode(label);
    let atom = label.is_ascii() && is_atom(&wire);
    if wire.contains(['"', '\\']) || (force_literal && !atom) {
        write_literal(out, wire.as_bytes());
    } else if atom {
        out.extend_from_slice(wire.as_bytes());
    } else {
        out.extend_from_slice(quote_str(&wire).as_bytes());
    }
}

/// The part of a FETCH BODY[...] asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Full,
    Header,
    Text,
    Fields { not: bool, names: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FetchItem {
    Uid,
    Flags,
    InternalDate,
    Size,
    MsgId,
    ThrId,
    Labels,
    Body {
        section: Section,
        partial: Option<(usize, usize)>,
    },
    Rfc822,
    Rfc822Header,
    Rfc822Text,
}

fn parse_fetch_items(tok: &Tok) -> Result<Vec<FetchItem>, String> {
    let list: Vec<&Tok> = match tok {
        Tok::List(v) => v.iter().collect(),
        t => vec![t],
    };
    if list.is_empty() {
        return Err("Empty FETCH item list".into());
    }
    let mut items = Vec::new();
    for t in list {
        let a = t.atom().ok_or("Invalid FETCH item")?;
        let up = a.to_ascii_uppercase();
        let item = match up.as_str() {
            "FAST" => {
                items.extend([FetchItem::Flags, FetchItem::InternalDate, FetchItem::Size]);
                continue;
            }
            "UID" => FetchItem::Uid,
            "FLAGS" => FetchItem::Flags,
            "INTERNALDATE" => FetchItem::InternalDate,
            "RFC822.SIZE" => FetchItem::Size,
            "X-GM-MSGID" => FetchItem::MsgId,
            "X-GM-THRID" => FetchItem::ThrId,
            "X-GM-LABELS" => FetchItem::Labels,
            "RFC822" => FetchItem::Rfc822,
            "RFC822.HEADER" => FetchItem::Rfc822Header,
            "RFC822.TEXT" => FetchItem::Rfc822Text,
            _ => {
                let rest = up
                    .strip_prefix("BODY.PEEK[")
                    .or_else(|| up.strip_prefix("BODY["))
                    .ok_or_else(|| format!("Unsupported FETCH item {a}"))?;
                parse_body_item(rest)?
            }
        };
        items.push(item);
    }
    Ok(items)
}

/// `HEADER.FIELDS (MESSAGE-ID)]<0.100>` (after `BODY[`).
fn parse_body_item(rest: &str) -> Result<FetchItem, String> {
    let close = rest.rfind(']').ok_or("Missing ]")?;
    let (inner, tail) = (rest[..close].trim(), &rest[close + 1..]);
    let partial = if tail.is_empty() {
        None
    } else {
        let range = tail
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .ok_or("Invalid partial")?;
        let (o, n) = range.split_once('.').ok_or("Invalid partial")?;
        Some((
            o.parse().map_err(|_| "Invalid partial")?,
            n.parse().map_err(|_| "Invalid partial")?,
        ))
    };
    let section = if inner.is_empty() {
        Section::Full
    } else if inner == "HEADER" {
        Section::Header
    } else if inner == "TEXT" {
        Section::Text
    } else if let Some(list) = inner
        .strip_prefix("HEADER.FIELDS.NOT")
        .map(|l| (true, l))
        .or_else(|| inner.strip_prefix("HEADER.FIELDS").map(|l| (false, l)))
    {
        let (not, list) = list;
        let toks = tokenize(list.trim().as_bytes())?;
        let [Tok::List(names)] = toks.as_slice() else {
            return Err("Invalid header list".into());
        };
        let names: Option<Vec<String>> = names.iter().map(Tok::astring).collect();
        let names = names.ok_or("Invalid header list")?;
        if names.is_empty() {
            return Err("Empty header list".into());
        }
        Section::Fields { not, names }
    } else {
        return Err(format!("Unsupported section {inner}"));
    };
    Ok(FetchItem::Body { section, partial })
}

/// Splits a message into header (blank line included) and text.
fn split_message(body: &[u8]) -> (&[u8], &[u8]) {
    if body.starts_with(b"\r\n") {
        return body.split_at(2);
    }
    if let Some(p) = body.windows(4).position(|w| w == b"\r\n\r\n") {
        return body.split_at(p + 4);
    }
    if let Some(p) = body.windows(2).position(|w| w == b"\n\n") {
        return body.split_at(p + 2);
    }
    (body, &[])
}

/// Header fields (folded lines kept) as `(name, raw field with its line ends)`.
fn header_fields<'a>(header: &'a [u8]) -> Vec<(String, &'a [u8])> {
    let mut fields: Vec<(String, &'a [u8])> = Vec::new();
    let mut start = None::<usize>;
    let mut pos = 0;
    let push = |fields: &mut Vec<(String, &'a [u8])>, from: usize, to: usize| {
        let raw = &header[from..to];
        let name = raw
            .iter()
            .position(|&b| b == b':')
            .map(|c| String::from_utf8_lossy(&raw[..c]).trim().to_owned())
            .unwrap_or_default();
        if !name.is_empty() {
            fields.push((name, raw));
        }
    };
    while pos < header.len() {
        let end = header[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |e| pos + e + 1);
        let line = &header[pos..end];
        let blank = line == b"\r\n" || line == b"\n";
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            if let Some(s) = start.take() {
                push(&mut fields, s, pos);
            }
            if blank {
                break;
            }
            start = Some(pos);
        }
        pos = end;
    }
    if let Some(s) = start {
        push(&mut fields, s, pos);
    }
    fields
}

/// A header's value, unfolded and trimmed (the first such field).
fn header_value(body: &[u8], name: &str) -> Option<String> {
    let (header, _) = split_message(body);
    header_fields(header)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, raw)| {
            let text = String::from_utf8_lossy(raw);
            let value = text.split_once(':').map_or("", |(_, v)| v);
            value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
}

fn section_data(body: &[u8], section: &Section) -> Vec<u8> {
    let (header, text) = split_message(body);
    match section {
        Section::Full => body.to_vec(),
        Section::Header => header.to_vec(),
        Section::Text => text.to_vec(),
        Section::Fields { not, names } => {
            let mut out = Vec::new();
            for (name, raw) in header_fields(header) {
                let listed = names.iter().any(|n| n.eq_ignore_ascii_case(&name));
                if listed != *not {
                    out.extend_from_slice(raw);
                }
            }
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

fn section_name(section: &Section) -> String {
    match section {
        Section::Full => String::new(),
        Section::Header => "HEADER".into(),
        Section::Text => "TEXT".into(),
        Section::Fields { not, names } => {
            let names: Vec<String> = names
                .iter()
                .map(|n| if is_atom(n) { n.clone() } else { quote_str(n) })
                .collect();
            let not = if *not { ".NOT" } else { "" };
            format!("HEADER.FIELDS{not} ({})", names.join(" "))
        }
    }
}

fn write_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    uid: u32,
    m: &GmailMessage,
    items: &[FetchItem],
    kind: &Kind,
    options: &GmailOptions,
) {
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        match item {
            FetchItem::Uid => out.extend_from_slice(format!("UID {uid}").as_bytes()),
            FetchItem::Flags => {
                out.extend_from_slice(format!("FLAGS ({})", m.flags.join(" ")).as_bytes());
            }
            FetchItem::InternalDate => out.extend_from_slice(
                format!("INTERNALDATE {}", quote_str(&m.internal_date)).as_bytes(),
            ),
            FetchItem::Size => {
                out.extend_from_slice(format!("RFC822.SIZE {}", m.body.len()).as_bytes());
            }
            FetchItem::MsgId => out.extend_from_slice(format!("X-GM-MSGID {}", m.msgid).as_bytes()),
            FetchItem::ThrId => out.extend_from_slice(format!("X-GM-THRID {}", m.thrid).as_bytes()),
            FetchItem::Labels => {
                let omit = if options.omit_selected_label {
                    kind.label()
                } else {
                    None
                };
                let force = match options.label_literals {
                    LabelLiterals::WhenNeededAndEvery(n) => n > 0 && uid.is_multiple_of(n),
                    LabelLiterals::WhenNeeded => false,
                };
                out.extend_from_slice(b"X-GM-LABELS (");
                let mut first = true;
                for l in m.labels.iter().filter(|l| Some(l.as_str()) != omit) {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    write_label(out, l, force);
                }
                out.push(b')');
            }
            FetchItem::Body { section, partial } => {
                let mut data = section_data(&m.body, section);
                let mut name = format!("BODY[{}]", section_name(section));
                if let Some((origin, len)) = partial {
                    let from = (*origin).min(data.len());
                    let to = from.saturating_add(*len).min(data.len());
                    data = data[from..to].to_vec();
                    name.push_str(&format!("<{origin}>"));
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                write_literal(out, &data);
            }
            FetchItem::Rfc822 => {
                out.extend_from_slice(b"RFC822 ");
                write_literal(out, &m.body);
            }
            FetchItem::Rfc822Header => {
                out.extend_from_slice(b"RFC822.HEADER ");
                write_literal(out, split_message(&m.body).0);
            }
            FetchItem::Rfc822Text => {
                out.extend_from_slice(b"RFC822.TEXT ");
                write_literal(out, split_message(&m.body).1);
            }
        }
    }
    out.extend_from_slice(b")\r\n");
}

/// A sequence set or UID set (`1:5,7,9:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeqSet(Vec<(Option<u32>, Option<u32>)>);

impl SeqSet {
    fn parse(s: &str) -> Option<Self> {
        let number = |t: &str| -> Option<Option<u32>> {
            if t == "*" {
                Some(None)
            } else {
                t.parse::<u32>().ok().filter(|&n| n > 0).map(Some)
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let range = match part.split_once(':') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            ranges.push(range);
        }
        Some(Self(ranges))
    }

    /// Whether `n` is in the set, `*` being `star` (the largest number in use).
    fn contains(&self, n: u32, star: u32) -> bool {
        self.0.iter().any(|&(a, b)| {
            let (a, b) = (a.unwrap_or(star), b.unwrap_or(star));
            (a.min(b)..=a.max(b)).contains(&n)
        })
    }
}

/// `1:3,5,9:11`.
fn format_set(nums: &[u32]) -> String {
    let mut sorted = nums.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        if sorted[i] == start {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}:{}", sorted[i]));
        }
        i += 1;
    }
    parts.join(",")
}

/// A SEARCH key.
#[derive(Debug, Clone)]
enum Key {
    All,
    Nothing,
    Flag(String, bool),
    Uid(SeqSet),
    Seq(SeqSet),
    Header(String, String),
    Body(String),
    Text(String),
    Larger(usize),
    Smaller(usize),
    Not(Box<Key>),
    Or(Box<Key>, Box<Key>),
    And(Vec<Key>),
    MsgId(u64),
    ThrId(u64),
    Label(String),
    Raw(Vec<RawTerm>),
}

struct Ctx<'a> {
    seq: u32,
    uid: u32,
    star_seq: u32,
    star_uid: u32,
    msg: &'a GmailMessage,
}

fn contains_ci(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.to_lowercase();
    if needle.is_empty() {
        return true;
    }
    let hay = String::from_utf8_lossy(haystack).to_lowercase();
    hay.contains(&needle)
}

fn header_contains(body: &[u8], name: &str, needle: &str) -> bool {
    let (header, _) = split_message(body);
    header_fields(header).into_iter().any(|(n, raw)| {
        n.eq_ignore_ascii_case(name) && {
            let value = raw
                .iter()
                .position(|&b| b == b':')
                .map_or(&raw[..0], |c| &raw[c + 1..]);
            contains_ci(value, needle)
        }
    })
}

fn label_matches(label: &str, wanted: &str) -> bool {
    if wanted.starts_with('\\') {
        label == canonical_label(wanted)
    } else {
        label.to_lowercase() == wanted.to_lowercase()
    }
}

impl Key {
    fn matches(&self, c: &Ctx<'_>) -> bool {
        let m = c.msg;
        match self {
            Self::All => true,
            Self::Nothing => false,
            Self::Flag(f, present) => m.has_flag(f) == *present,
            Self::Uid(set) => set.contains(c.uid, c.star_uid),
            Self::Seq(set) => set.contains(c.seq, c.star_seq),
            Self::Header(name, value) => header_contains(&m.body, name, value),
            Self::Body(t) => contains_ci(split_message(&m.body).1, t),
            Self::Text(t) => contains_ci(&m.body, t),
            Self::Larger(n) => m.body.len() > *n,
            Self::Smaller(n) => m.body.len() < *n,
            Self::Not(k) => !k.matches(c),
            Self::Or(a, b) => a.matches(c) || b.matches(c),
            Self::And(keys) => keys.iter().all(|k| k.matches(c)),
            Self::MsgId(id) => m.msgid == *id,
            Self::ThrId(id) => m.thrid == *id,
            Self::Label(l) => m.labels.iter().any(|x| label_matches(x, l)),
            Self::Raw(terms) => terms.iter().all(|t| t.matches(m)),
        }
    }
}

fn parse_key(toks: &[Tok], i: &mut usize) -> Result<Key, Done> {
    let bad = |t: &str| Done::bad(format!("Invalid SEARCH format: {t}"));
    let tok = toks.get(*i).ok_or_else(|| bad("missing key"))?;
    *i += 1;
    let astring = |i: &mut usize| -> Result<String, Done> {
        let v = toks
            .get(*i)
            .and_then(Tok::astring)
            .ok_or_else(|| bad("missing argument"))?;
        *i += 1;
        Ok(v)
    };
    let atom = match tok {
        Tok::List(inner) => {
            let mut j = 0;
            let mut keys = Vec::new();
            while j < inner.len() {
                keys.push(parse_key(inner, &mut j)?);
            }
            return Ok(Key::And(keys));
        }
        Tok::Str(_) => return Err(bad("unexpected string")),
        Tok::Atom(a) => a,
    };
    let up = atom.to_ascii_uppercase();
    let flag = |f: &str, present: bool| Ok(Key::Flag(f.to_owned(), present));
    match up.as_str() {
        "ALL" | "OLD" => Ok(Key::All),
        "NEW" | "RECENT" => Ok(Key::Nothing),
        "ANSWERED" => flag("\\Answered", true),
        "DELETED" => flag("\\Deleted", true),
        "DRAFT" => flag("\\Draft", true),
        "FLAGGED" => flag("\\Flagged", true),
        "SEEN" => flag("\\Seen", true),
        "UNANSWERED" => flag("\\Answered", false),
        "UNDELETED" => flag("\\Deleted", false),
        "UNDRAFT" => flag("\\Draft", false),
        "UNFLAGGED" => flag("\\Flagged", false),
        "UNSEEN" => flag("\\Seen", false),
        "KEYWORD" => Ok(Key::Flag(astring(i)?, true)),
        "UNKEYWORD" => Ok(Key::Flag(astring(i)?, false)),
        "UID" => {
            let s = astring(i)?;
            SeqSet::parse(&s)
                .map(Key::Uid)
                .ok_or_else(|| bad("UID set"))
        }
        "HEADER" => {
            let name = astring(i)?;
            Ok(Key::Header(name, astring(i)?))
        }
        "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => Ok(Key::Header(up.clone(), astring(i)?)),
        "BODY" => Ok(Key::Body(astring(i)?)),
        "TEXT" => Ok(Key::Text(astring(i)?)),
        "LARGER" | "SMALLER" => {
            let n: usize = astring(i)?.parse().map_err(|_| bad("size"))?;
            Ok(if up == "LARGER" {
                Key::Larger(n)
            } else {
                Key::Smaller(n)
            })
        }
        "NOT" => Ok(Key::Not(Box::new(parse_key(toks, i)?))),
        "OR" => {
            let a = parse_key(toks, i)?;
            let b = parse_key(toks, i)?;
            Ok(Key::Or(Box::new(a), Box::new(b)))
        }
        "X-GM-MSGID" | "X-GM-THRID" => {
            let n: u64 = astring(i)?.parse().map_err(|_| bad("64-bit number"))?;
            Ok(if up == "X-GM-MSGID" {
                Key::MsgId(n)
            } else {
                Key::ThrId(n)
            })
        }
        "X-GM-LABELS" => {
            let wire = astring(i)?;
            // Labels are modified UTF-7 on the wire; a client sending UTF-8 is taken as is.
            let label = mutf7::decode(&wire).unwrap_or(wire);
            Ok(Key::Label(label))
        }
        "X-GM-RAW" => {
            let query = astring(i)?;
            parse_raw(&query).map(Key::Raw).map_err(Done::No)
        }
        _ => SeqSet::parse(atom)
            .map(Key::Seq)
            .ok_or_else(|| bad(&format!("unsupported key {atom}"))),
    }
}

/// One term of an X-GM-RAW query.
#[derive(Debug, Clone)]
struct RawTerm {
    negated: bool,
    kind: RawKind,
}

#[derive(Debug, Clone)]
enum RawKind {
    Anywhere,
    /// A system label.
    System(&'static str),
    /// A user label in Gmail's search spelling (lowercase, `-` for `/` and space).
    User(String),
    Unread,
    MessageId(String),
    Header(&'static str, String),
    Text(String),
    UserLabels(bool),
}

/// Gmail's search spelling of a label name.
fn search_spelling(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '/' { '-' } else { c })
        .collect()
}

fn raw_label(value: &str) -> RawKind {
    let v = value.to_lowercase();
    match v.as_str() {
        "anywhere" | "all" => RawKind::Anywhere,
        "inbox" => RawKind::System(LABEL_INBOX),
        "sent" => RawKind::System(LABEL_SENT),
        "draft" | "drafts" => RawKind::System(LABEL_DRAFT),
        "trash" => RawKind::System(LABEL_TRASH),
        "spam" => RawKind::System(LABEL_SPAM),
        "starred" => RawKind::System(LABEL_STARRED),
        "important" => RawKind::System(LABEL_IMPORTANT),
        _ => RawKind::User(search_spelling(value)),
    }
}

/// Splits a query on spaces, keeping `"quoted phrases"` (quotes removed) together.
fn raw_words(query: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in query.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err("[CANNOT] X-GM-RAW: unbalanced quote (Failure)".into());
    }
    if !current.is_empty() {
        words.push(current);
    }
    Ok(words)
}

fn parse_raw(query: &str) -> Result<Vec<RawTerm>, String> {
    let mut terms = Vec::new();
    for word in raw_words(query)? {
        let (negated, word) = match word.strip_prefix('-') {
            Some(w) if !w.is_empty() => (true, w.to_owned()),
            _ => (false, word),
        };
        let unsupported = || format!("[CANNOT] X-GM-RAW: unsupported term {word:?} (Failure)");
        let kind = match word.split_once(':') {
            Some((op, value)) if !value.is_empty() => match op.to_lowercase().as_str() {
                "in" | "label" => raw_label(value),
                "is" => match value.to_lowercase().as_str() {
                    "starred" => RawKind::System(LABEL_STARRED),
                    "important" => RawKind::System(LABEL_IMPORTANT),
                    "unread" => RawKind::Unread,
                    "read" => {
                        terms.push(RawTerm {
                            negated: !negated,
                            kind: RawKind::Unread,
                        });
                        continue;
                    }
                    _ => return Err(unsupported()),
                },
                "has" => match value.to_lowercase().as_str() {
                    "userlabels" => RawKind::UserLabels(true),
                    "nouserlabels" => RawKind::UserLabels(false),
                    _ => return Err(unsupported()),
                },
                "rfc822msgid" => RawKind::MessageId(value.to_owned()),
                "from" => RawKind::Header("From", value.to_owned()),
                "to" => RawKind::Header("To", value.to_owned()),
                "subject" => RawKind::Header("Subject", value.to_owned()),
                _ => return Err(unsupported()),
            },
            Some(_) => return Err(unsupported()),
            None if ["OR", "AND", "(", ")", "{", "}"].contains(&word.as_str()) => {
                return Err(unsupported());
            }
            None => RawKind::Text(word.clone()),
        };
        terms.push(RawTerm { negated, kind });
    }
    if terms.is_empty() {
        return Err("[CANNOT] X-GM-RAW: empty query (Failure)".into());
    }
    Ok(terms)
}

impl RawTerm {
    fn matches(&self, m: &GmailMessage) -> bool {
        let hit = match &self.kind {
            RawKind::Anywhere => true,
            RawKind::System(l) => m.labels.iter().any(|x| x == l),
            RawKind::User(l) => m
                .labels
                .iter()
                .any(|x| !x.starts_with('\\') && search_spelling(x) == *l),
            RawKind::Unread => !m.has_flag("\\Seen"),
            RawKind::MessageId(id) => m
                .message_id()
                .is_some_and(|v| v.trim_matches(['<', '>']) == id.trim_matches(['<', '>'])),
            RawKind::Header(name, value) => header_contains(&m.body, name, value),
            RawKind::Text(t) => contains_ci(&m.body, t),
            RawKind::UserLabels(any) => m.labels.iter().any(|l| !l.starts_with('\\')) == *any,
        };
        hit != self.negated
    }
}

/// A token of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom; `BODY.PEEK[HEADER.FIELDS (A B)]<0.10>` is one atom (brackets kept whole).
    Atom(String),
    /// A quoted string (unescaped) or a literal.
    Str(Vec<u8>),
    List(Vec<Tok>),
}

impl Tok {
    fn atom(&self) -> Option<&str> {
        match self {
            Self::Atom(a) => Some(a),
            _ => None,
        }
    }

    fn astring(&self) -> Option<String> {
        match self {
            Self::Atom(a) => Some(a.clone()),
            Self::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Self::List(_) => None,
        }
    }
}

fn tokenize(input: &[u8]) -> Result<Vec<Tok>, String> {
    let mut p = Tokenizer { s: input, i: 0 };
    p.items(false)
}

struct Tokenizer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Tokenizer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn items(&mut self, nested: bool) -> Result<Vec<Tok>, String> {
        let mut v = Vec::new();
        loop {
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
            match self.peek() {
                None if nested => return Err("unclosed (".into()),
                None => return Ok(v),
                Some(b')') if nested => {
                    self.i += 1;
                    return Ok(v);
                }
                Some(b')') => return Err("unexpected )".into()),
                Some(b'(') => {
                    self.i += 1;
                    v.push(Tok::List(self.items(true)?));
                }
                Some(b'"') => v.push(Tok::Str(self.quoted()?)),
                Some(b'{') => v.push(Tok::Str(self.literal()?)),
                Some(_) => v.push(Tok::Atom(self.atom()?)),
            }
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = self.s.get(self.i + 1).copied().ok_or("bad escape")?;
                    out.push(c);
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Vec<u8>, String> {
        let close = self.s[self.i..]
            .iter()
            .position(|&b| b == b'}')
            .ok_or("bad literal")?
            + self.i;
        let spec = std::str::from_utf8(&self.s[self.i + 1..close]).map_err(|_| "bad literal")?;
        let n: usize = spec
            .trim_end_matches('+')
            .parse()
            .map_err(|_| "bad literal")?;
        let mut at = close + 1;
        if self.s[at..].starts_with(b"\r\n") {
            at += 2;
        } else if self.s[at..].starts_with(b"\n") {
            at += 1;
        } else {
            return Err("literal without CRLF".into());
        }
        let data = self.s.get(at..at + n).ok_or("short literal")?.to_vec();
        self.i = at + n;
        Ok(data)
    }

    fn atom(&mut self) -> Result<String, String> {
        let start = self.i;
        let mut depth = 0u32;
        while let Some(c) = self.peek() {
            if depth > 0 {
                match c {
                    b'[' => depth += 1,
                    b']' => depth -= 1,
                    b'\r' | b'\n' => return Err("unclosed [".into()),
                    _ => {}
                }
                self.i += 1;
                continue;
            }
            match c {
                b' ' | b'(' | b')' | b'"' | b'{' | b'\r' | b'\n' => break,
                b'[' => depth += 1,
                _ => {}
            }
            self.i += 1;
        }
        if depth > 0 {
            return Err("unclosed [".into());
        }
        if self.i == start {
            return Err(format!("unexpected byte {:?}", char::from(self.s[start])));
        }
        String::from_utf8(self.s[start..self.i].to_vec()).map_err(|_| "atom is not UTF-8".into())
    }
}

// ----- the sample mailbox -----

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMAP INTERNALDATE of unix seconds, UTC (`date-day-fixed`: ` 7-Jul-2023 10:00:00 +0000`).
fn imap_date(unix: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(unix);
    format!(
        "{d:>2}-{}-{y} {hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let (y, m, d, hh, mm, ss) = civil(unix);
    let weekday = DAYS[unix.div_euclid(86_400).rem_euclid(7) as usize];
    format!(
        "{weekday}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

fn encoded_word(text: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        b64::encode(text.as_bytes(), b64::STANDARD, true)
    )
}

/// Label sets of the sample, the first ones used once each in this order, then by weight.
const PROFILES: [(&[&str], u64); 15] = [
    (&[LABEL_INBOX], 30),
    (&[LABEL_INBOX, "Work"], 8),
    (&["Work/Projects", LABEL_STARRED], 4),
    (&[LABEL_SENT], 10),
    (&[LABEL_DRAFT], 2),
    (&[], 15),
    (&[LABEL_INBOX, LABEL_IMPORTANT], 6),
    (&["My Label"], 4),
    (&["Überweisungen"], 3),
    (&["日本", LABEL_INBOX], 3),
    (&[LABEL_TRASH], 2),
    (&[LABEL_SPAM], 2),
    (
        &[
            LABEL_INBOX,
            LABEL_IMPORTANT,
            LABEL_STARRED,
            "Work",
            "My Label",
            "日本",
        ],
        1,
    ),
    (&[LABEL_SENT, LABEL_IMPORTANT], 4),
    (&[LABEL_INBOX, "Überweisungen", LABEL_IMPORTANT], 3),
];

const PEOPLE: [(&str, &str); 6] = [
    ("Alice Example", "alice@example.com"),
    ("Bob Builder", "bob@example.org"),
    ("Jürgen Müller", "juergen@example.de"),
    ("山田 太郎", "taro@example.jp"),
    ("Chloé Dubois", "chloe@example.fr"),
    ("Build Bot", "ci@example.net"),
];

const SUBJECTS: [&str; 12] = [
    "Quarterly report",
    "Lunch on Friday?",
    "Project kickoff notes",
    "Invoice 2023-17",
    "Travel plans",
    "Your receipt",
    "Build failed on main",
    "Meeting minutes",
    "Überweisung für März",
    "日本への出張について",
    "Grüße aus Köln",
    "Ça va? Réunion à 15h",
];

const LINES: [&str; 8] = [
    "Please find the details below.",
    "Let me know if anything is unclear.",
    "The numbers for the last quarter look good.",
    "Viele Grüße und bis bald.",
    "We should meet next week to discuss the next steps.",
    "よろしくお願いします。",
    "Attached is nothing, this is a plain text message.",
    "Thanks again for your help with this.",
];

/// The account owner's address in the sample.
pub const SAMPLE_ADDRESS: &str = "me@example.com";

/// `n` deterministic messages with a realistic mix of labels: INBOX only, INBOX + `Work`,
/// `Work/Projects` + `\Starred`, `\Sent`, `\Draft`, no label at all (archived: only in All
/// Mail), `\Important`, `My Label`, `Überweisungen`, `日本`, `\Trash`, `\Spam`, and one message
/// with six labels (the first 15 messages cover every combination once). Valid RFC 5322 bodies
/// with CRLF line ends, From/To/Subject/Date/Message-ID (`<gmail-sample-N@testbed.example>`),
/// some non-ASCII subjects as RFC 2047 words, some replies in an earlier thread.
pub fn sample_mailbox(n: usize) -> Vec<GmailMessage> {
    let mut rng = SplitMix64::new(0x6d61_696c_2d67_6d31);
    let total_weight: u64 = PROFILES.iter().map(|p| p.1).sum();
    let mut out: Vec<GmailMessage> = Vec::with_capacity(n);
    let mut date: i64 = 1_672_531_200; // 2023-01-01T00:00:00Z
    for i in 0..n {
        let profile = if i < PROFILES.len() {
            PROFILES[i].0
        } else {
            let mut r = rng.below(total_weight);
            let mut chosen = PROFILES[0].0;
            for (labels, w) in PROFILES {
                if r < w {
                    chosen = labels;
                    break;
                }
                r -= w;
            }
            chosen
        };
        let labels: Vec<String> = profile.iter().map(|l| (*l).to_owned()).collect();
        date += 600 + rng.below(3 * 86_400) as i64;
        let msgid = 1_600_000_000_000_000_000 + (i as u64) * 1_000_003 + rng.below(1000);
        let sent = labels.iter().any(|l| l == LABEL_SENT || l == LABEL_DRAFT);
        let reply_to = if i > 0 && rng.chance(0.25) {
            Some(&out[rng.below(i as u64) as usize])
        } else {
            None
        };
        let thrid = reply_to.map_or(msgid, |r| r.thrid);
        let (name, addr) = *rng.pick(&PEOPLE);
        let (from, to) = if sent {
            (
                format!("Me <{SAMPLE_ADDRESS}>"),
                format!("{} <{addr}>", display_name(name)),
            )
        } else {
            (
                format!("{} <{addr}>", display_name(name)),
                format!("Me <{SAMPLE_ADDRESS}>"),
            )
        };
        let mut subject = (*rng.pick(&SUBJECTS)).to_owned();
        if reply_to.is_some() {
            subject = format!("Re: {subject}");
        }
        let subject = if subject.is_ascii() {
            subject
        } else {
            encoded_word(&subject)
        };
        let mut h = String::new();
        h.push_str(&format!("From: {from}\r\n"));
        h.push_str(&format!("To: {to}\r\n"));
        h.push_str(&format!("Subject: {subject}\r\n"));
        h.push_str(&format!("Date: {}\r\n", rfc5322_date(date)));
        let message_id = format!("<gmail-sample-{i}@testbed.example>");
        if i % 17 == 5 {
            // A folded header, as long Message-IDs sometimes are.
            h.push_str(&format!("Message-ID:\r\n {message_id}\r\n"));
        } else {
            h.push_str(&format!("Message-ID: {message_id}\r\n"));
        }
        if let Some(r) = reply_to
            && let Some(parent) = r.message_id()
        {
            h.push_str(&format!(
                "In-Reply-To: {parent}\r\nReferences: {parent}\r\n"
            ));
        }
        h.push_str("MIME-Version: 1.0\r\n");
        h.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
        h.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
        let lines = 1 + rng.below(30) as usize;
        for _ in 0..lines {
            let line: &&str = rng.pick(&LINES);
            h.push_str(line);
            h.push_str("\r\n");
        }
        let mut flags = Vec::new();
        if sent || rng.chance(0.7) {
            flags.push("\\Seen".to_owned());
        }
        if !sent && rng.chance(0.1) {
            flags.push("\\Answered".to_owned());
        }
        if rng.chance(0.05) {
            flags.push("$Forwarded".to_owned());
        }
        let mut m = GmailMessage {
            msgid,
            thrid,
            labels,
            flags,
            internal_date: imap_date(date),
            body: h.into_bytes(),
        };
        normalize(&mut m);
        out.push(m);
    }
    out
}

fn display_name(name: &str) -> String {
    if name.is_ascii() {
        format!("\"{name}\"")
    } else {
        encoded_word(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_keeps_sections_whole() {
        let t = tokenize(
            b"A1 UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] X-GM-LABELS) \"a\\\"b\" {3}\r\nxyz",
        )
        .unwrap();
        assert_eq!(t[0], Tok::Atom("A1".into()));
        assert_eq!(t[3], Tok::Atom("1:*".into()));
        assert_eq!(
            t[4],
            Tok::List(vec![
                Tok::Atom("UID".into()),
                Tok::Atom("BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]".into()),
                Tok::Atom("X-GM-LABELS".into()),
            ])
        );
        assert_eq!(t[5], Tok::Str(b"a\"b".to_vec()));
        assert_eq!(t[6], Tok::Str(b"xyz".to_vec()));
    }

    #[test]
    fn literal_detection() {
        assert_eq!(literal_at_end(b"A APPEND x {12}\r\n"), Some((12, false)));
        assert_eq!(literal_at_end(b"A LOGIN {3+}\r\n"), Some((3, true)));
        assert_eq!(literal_at_end(b"A NOOP\r\n"), None);
        assert_eq!(literal_at_end(b"A X {}\r\n"), None);
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b"[Gmail]/All Mail"));
        assert!(!glob(b"%", b"[Gmail]/All Mail"));
        assert!(glob(b"%", b"Work"));
        assert!(glob(b"[Gmail]/%", b"[Gmail]/Trash"));
        assert!(glob(b"W*s", b"Work/Projects"));
    }

    #[test]
    fn sets() {
        let s = SeqSet::parse("1:3,7,9:*").unwrap();
        assert!(s.contains(2, 20) && s.contains(7, 20) && s.contains(15, 20));
        assert!(!s.contains(5, 20));
        // n:* with n above the largest UID still names the largest.
        assert!(SeqSet::parse("50:*").unwrap().contains(20, 20));
        assert!(SeqSet::parse("0").is_none());
        assert_eq!(format_set(&[5, 1, 2, 3, 9]), "1:3,5,9");
    }

    #[test]
    fn labels_on_the_wire() {
        let w = |l: &str, force: bool| {
            let mut v = Vec::new();
            write_label(&mut v, l, force);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(w("\\Inbox", false), r#""\\Inbox""#);
        assert_eq!(w("\\Inbox", true), r#""\\Inbox""#);
        assert_eq!(w("Work/Projects", false), "Work/Projects");
        assert_eq!(w("Work/Projects", true), "Work/Projects");
        assert_eq!(w("My Label", false), "\"My Label\"");
        assert_eq!(w("My Label", true), "{8}\r\nMy Label");
        assert_eq!(w("日本", false), "\"&ZeVnLA-\"");
        assert_eq!(w("Überweisungen", true), "{17}\r\n&ANw-berweisungen");
        assert_eq!(w("say \"hi\"", false), "{8}\r\nsay \"hi\"");
        assert_eq!(w("[Mailbox]", false), "\"[Mailbox]\"");
    }

    #[test]
    fn header_sections() {
        let body = b"From: a\r\nMessage-ID:\r\n <x@y>\r\nSubject: s\r\n\r\nbody\r\n";
        let fields = Section::Fields {
            not: false,
            names: vec!["MESSAGE-ID".into()],
        };
        assert_eq!(
            section_data(body, &fields),
            b"Message-ID:\r\n <x@y>\r\n\r\n"
        );
        assert_eq!(section_data(body, &Section::Text), b"body\r\n");
        assert_eq!(header_value(body, "message-id").as_deref(), Some("<x@y>"));
    }

    #[test]
    fn sample_is_deterministic_and_consistent() {
        let a = sample_mailbox(60);
        assert_eq!(a, sample_mailbox(60));
        for m in &a {
            assert_eq!(m.has_label(LABEL_STARRED), m.has_flag("\\Flagged"));
            assert_eq!(m.has_label(LABEL_DRAFT), m.has_flag("\\Draft"));
            assert!(m.message_id().is_some());
            assert!(!m.body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
        assert!(a.iter().any(|m| m.labels.is_empty()));
        assert!(a.iter().any(|m| m.labels.len() >= 4));
        assert!(a.iter().any(|m| m.thrid != m.msgid));
    }

    #[test]
    fn raw_queries() {
        let m = GmailMessage {
            msgid: 1,
            thrid: 1,
            labels: vec![
                "Work/Projects".into(),
                "My Label".into(),
                LABEL_INBOX.into(),
            ],
            flags: vec![],
            internal_date: imap_date(0),
            body: b"Message-ID: <a@b>\r\nSubject: Hello\r\n\r\nWorld\r\n".to_vec(),
        };
        let q = |s: &str| parse_raw(s).unwrap().iter().all(|t| t.matches(&m));
        assert!(q("in:inbox"));
        assert!(q("label:work-projects label:my-label"));
        assert!(q("label:\"My Label\""));
        assert!(q("is:unread -in:sent world rfc822msgid:<a@b>"));
        assert!(!q("label:work"));
        assert!(!q("in:trash"));
        assert!(parse_raw("after:2020/01/01").is_err());
    }
}
