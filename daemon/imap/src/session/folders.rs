//! Folder commands: LIST (with SPECIAL-USE and subscriptions), SELECT/EXAMINE, STATUS,
//! CREATE and SUBSCRIBE, and the readings of their replies.

use std::collections::HashSet;

use async_imap::imap_proto::{
    MailboxDatum, NameAttribute, Response, ResponseCode, StatusAttribute,
};

use super::{ImapSession, quote};
use crate::error::ImapError;
use crate::utf7;

/// One folder of a LIST reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// Decoded (UTF-8) full name.
    pub name: String,
    /// Hierarchy separator.
    pub delimiter: Option<char>,
    /// `\Noselect` / `\NonExistent`.
    pub no_select: bool,
    /// SPECIAL-USE attribute as sent (`\Sent`), if any.
    pub special_use: Option<String>,
    /// `\Subscribed` seen (with LIST-EXTENDED) or listed by LSUB.
    pub subscribed: bool,
}

/// A folder's state from SELECT/EXAMINE or STATUS: core's [`migrated_core::FolderStatus`]
/// (UIDVALIDITY, UIDNEXT, EXISTS/MESSAGES, HIGHESTMODSEQ), under the name IMAP gives it.
pub type MailboxState = migrated_core::FolderStatus;

impl From<FolderEntry> for migrated_core::FolderInfo {
    /// The folder in core's words: its SPECIAL-USE attribute read as a role (an attribute core
    /// has no role for, such as Gmail's `\Important`, as none).
    fn from(e: FolderEntry) -> Self {
        Self {
            special_use: e
                .special_use
                .as_deref()
                .and_then(migrated_core::SpecialUse::from_attribute),
            name: e.name,
            delimiter: e.delimiter,
            no_select: e.no_select,
            subscribed: e.subscribed,
        }
    }
}

impl ImapSession {
    /// Lists all folders with SPECIAL-USE roles and subscriptions.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn list(&mut self) -> Result<Vec<FolderEntry>, ImapError> {
        let extended = self.has("LIST-EXTENDED");
        let command = match (extended, self.has("SPECIAL-USE")) {
            (true, true) => "LIST \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)",
            (true, false) => "LIST \"\" \"*\" RETURN (SUBSCRIBED)",
            _ => "LIST \"\" \"*\"",
        };
        let mut folders: Vec<FolderEntry> = Vec::new();
        let mut bad_names = Vec::new();
        self.execute(command, "LIST", |r| {
            match folder_entry(r) {
                Ok(Some(entry)) => folders.push(entry),
                Ok(None) => {}
                Err(e) => bad_names.push(e.to_string()),
            }
            Ok(())
        })
        .await?;
        if let Some(bad) = bad_names.first() {
            return Err(ImapError::Protocol {
                server: self.server.clone(),
                command: "LIST".into(),
                detail: bad.clone(),
            });
        }
        if !extended {
            let mut subscribed = HashSet::new();
            self.execute("LSUB \"\" \"*\"", "LSUB", |r| {
                if let Response::MailboxData(MailboxDatum::List(l)) = r
                    && let Ok(name) = utf7::decode(&l.name)
                {
                    subscribed.insert(name);
                }
                Ok(())
            })
            .await?;
            for f in &mut folders {
                f.subscribed = subscribed.contains(&f.name);
            }
        }
        Ok(folders)
    }

    /// Opens a folder: read-only (`EXAMINE`) for sources, read-write (`SELECT`) for the
    /// destination. Enables CONDSTORE reporting when the server offers it.
    ///
    /// # Errors
    ///
    /// A NO names the folder with the server's reply.
    pub async fn open(&mut self, folder: &str, read_only: bool) -> Result<MailboxState, ImapError> {
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let condstore = if self.has("CONDSTORE") {
            " (CONDSTORE)"
        } else {
            ""
        };
        let command = format!("{verb} {}{condstore}", quote(&utf7::encode(folder)));
        let mut state = MailboxState::default();
        let what = format!("{verb} {folder:?}");
        let done = self
            .execute(&command, &what, |r| {
                note_selected(&mut state, r);
                Ok(())
            })
            .await?;
        let _ = done;
        Ok(state)
    }

    /// Opens a folder read-only knowing its UIDVALIDITY and HIGHESTMODSEQ of an earlier
    /// session: with QRESYNC (RFC 7162, enabled on first use) the EXAMINE carries them and the
    /// server names the UIDs expunged since (`VANISHED (EARLIER)`), returned; without QRESYNC,
    /// or when the UIDVALIDITY changed (the server then reports nothing), a plain
    /// [`ImapSession::open`] and `None`: the caller compares UIDs itself.
    ///
    /// # Errors
    ///
    /// As for [`ImapSession::open`]; a refused ENABLE too.
    pub async fn examine_since(
        &mut self,
        folder: &str,
        uid_validity: u32,
        modseq: u64,
    ) -> Result<(MailboxState, Option<Vec<u32>>), ImapError> {
        if !self.has("QRESYNC") || uid_validity == 0 || modseq == 0 {
            return Ok((self.open(folder, true).await?, None));
        }
        if !self.qresync {
            self.execute("ENABLE QRESYNC", "ENABLE QRESYNC", |_| Ok(()))
                .await?;
            self.qresync = true;
        }
        let command = format!(
            "EXAMINE {} (QRESYNC ({uid_validity} {modseq}))",
            quote(&utf7::encode(folder))
        );
        let mut state = MailboxState::default();
        let mut vanished = Vec::new();
        let what = format!("EXAMINE {folder:?} (QRESYNC)");
        self.execute(&command, &what, |r| {
            note_selected(&mut state, r);
            if let Response::Vanished { uids, .. } = r {
                for range in uids {
                    // A range is the server's word; bound what one reply can make us hold.
                    let (lo, hi) = (*range.start(), *range.end());
                    if hi >= lo && hi - lo < 10_000_000 {
                        vanished.extend(lo..=hi);
                    }
                }
            }
            Ok(())
        })
        .await?;
        if state.uid_validity != uid_validity {
            return Ok((state, None));
        }
        vanished.sort_unstable();
        vanished.dedup();
        Ok((state, Some(vanished)))
    }

    /// STATUS of a folder that need not be open.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn status(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        let modseq = if self.has("CONDSTORE") {
            " HIGHESTMODSEQ"
        } else {
            ""
        };
        let command = format!(
            "STATUS {} (UIDNEXT UIDVALIDITY MESSAGES{modseq})",
            quote(&utf7::encode(folder))
        );
        let mut state = MailboxState::default();
        self.execute(&command, &format!("STATUS {folder:?}"), |r| {
            note_status(&mut state, r);
            Ok(())
        })
        .await?;
        Ok(state)
    }

    /// Creates a folder (with `USE (...)` when given and the server offers
    /// CREATE-SPECIAL-USE). A folder that already exists is not an error.
    ///
    /// # Errors
    ///
    /// A NO other than "already exists", with the server's reply.
    pub async fn create(
        &mut self,
        folder: &str,
        special_use: Option<&str>,
    ) -> Result<(), ImapError> {
        let usage = match special_use {
            Some(u) if self.has("CREATE-SPECIAL-USE") => format!(" (USE ({u}))"),
            _ => String::new(),
        };
        let command = format!("CREATE {}{usage}", quote(&utf7::encode(folder)));
        match self
            .execute(&command, &format!("CREATE {folder:?}"), |_| Ok(()))
            .await
        {
            Ok(_) => Ok(()),
            Err(ImapError::No { reply, .. })
                if reply.to_ascii_uppercase().contains("ALREADYEXISTS")
                    || reply.contains("already exists") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Subscribes to a folder.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        let command = format!("SUBSCRIBE {}", quote(&utf7::encode(folder)));
        self.execute(&command, &format!("SUBSCRIBE {folder:?}"), |_| Ok(()))
            .await
            .map(|_| ())
    }
}

/// The folder a LIST reply names: `None` for other replies and for `\NonExistent` entries,
/// an error for a name that is not modified UTF-7.
pub(super) fn folder_entry(r: &Response<'_>) -> Result<Option<FolderEntry>, utf7::Utf7Error> {
    let Response::MailboxData(MailboxDatum::List(l)) = r else {
        return Ok(None);
    };
    let mut entry = FolderEntry {
        name: String::new(),
        delimiter: l.delimiter.as_ref().and_then(|d| d.chars().next()),
        no_select: false,
        special_use: None,
        subscribed: false,
    };
    for a in &l.name_attributes {
        match a {
            NameAttribute::NoSelect => entry.no_select = true,
            NameAttribute::All => entry.special_use = Some("\\All".into()),
            NameAttribute::Archive => entry.special_use = Some("\\Archive".into()),
            NameAttribute::Drafts => entry.special_use = Some("\\Drafts".into()),
            NameAttribute::Flagged => entry.special_use = Some("\\Flagged".into()),
            NameAttribute::Junk => entry.special_use = Some("\\Junk".into()),
            NameAttribute::Sent => entry.special_use = Some("\\Sent".into()),
            NameAttribute::Trash => entry.special_use = Some("\\Trash".into()),
            // Gmail's [Gmail]/Important (not an RFC 6154 role).
            NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\Important") => {
                entry.special_use = Some("\\Important".into());
            }
            NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\Subscribed") => {
                entry.subscribed = true;
            }
            // Subscribed but absent: nothing to copy, nothing to create.
            NameAttribute::Extension(e) if e.eq_ignore_ascii_case("\\NonExistent") => {
                return Ok(None);
            }
            _ => {}
        }
    }
    entry.name = utf7::decode(&l.name)?;
    Ok(Some(entry))
}

/// Notes what an untagged reply to SELECT or EXAMINE says about the folder.
pub(super) fn note_selected(state: &mut MailboxState, r: &Response<'_>) {
    match r {
        Response::MailboxData(MailboxDatum::Exists(n)) => state.messages = *n,
        Response::Data { outcome, .. } => match outcome.code {
            Some(ResponseCode::UidValidity(v)) => state.uid_validity = v,
            Some(ResponseCode::UidNext(v)) => state.uid_next = v,
            Some(ResponseCode::HighestModSeq(v)) => state.highest_modseq = Some(v),
            _ => {}
        },
        _ => {}
    }
}

/// Notes what a STATUS reply says about the folder.
pub(super) fn note_status(state: &mut MailboxState, r: &Response<'_>) {
    if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
        for a in status {
            match a {
                StatusAttribute::UidNext(v) => state.uid_next = *v,
                StatusAttribute::UidValidity(v) => state.uid_validity = *v,
                StatusAttribute::Messages(v) => state.messages = *v,
                StatusAttribute::HighestModSeq(v) => state.highest_modseq = Some(*v),
                _ => {}
            }
        }
    }
}
