//! Putting messages on the server: APPEND (APPENDUID, LITERAL+, MULTIAPPEND), server-side
//! UID COPY, and UID STORE of flags.

use std::time::Duration;

use async_imap::imap_proto::Response;
use tokio::io::AsyncWriteExt;

use super::{ImapSession, quote, reply_text, unpanicked, unparsable};
use crate::error::ImapError;
use crate::{uidset, utf7};

/// One message to APPEND.
#[derive(Debug, Clone, Copy)]
pub struct AppendItem<'a> {
    /// Parenthesized flag list, e.g. `(\Seen $Forwarded)`.
    pub flags: &'a str,
    /// INTERNALDATE as the source sent it.
    pub internal_date: &'a str,
    /// The message, byte for byte.
    pub body: &'a [u8],
}

impl ImapSession {
    /// Appends messages to a folder in one command where the server allows: MULTIAPPEND with
    /// LITERAL+ sends everything without waiting; otherwise synchronizing literals are used.
    /// Returns the new UIDs from APPENDUID (UIDPLUS), in order, or `None` without UIDPLUS.
    ///
    /// With MULTIAPPEND the command is atomic: a refused message refuses the batch, and the
    /// caller retries one by one to find it.
    ///
    /// # Errors
    ///
    /// A NO carries the server's reason (quota, size, bad date...).
    pub async fn append(
        &mut self,
        folder: &str,
        items: &[AppendItem<'_>],
    ) -> Result<Option<Vec<u32>>, ImapError> {
        if items.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let literal_plus = self.has("LITERAL+");
        if items.len() > 1 && !self.has("MULTIAPPEND") {
            let mut uids = Vec::with_capacity(items.len());
            for item in items {
                match Box::pin(self.append(folder, std::slice::from_ref(item))).await? {
                    Some(u) => uids.extend(u),
                    None => return Ok(None),
                }
            }
            return Ok(Some(uids));
        }
        let what = format!("APPEND to {folder:?}");
        let part = |item: &AppendItem<'_>| {
            let plus = if literal_plus { "+" } else { "" };
            format!(
                "{} {} {{{}{plus}}}",
                item.flags,
                quote(item.internal_date),
                item.body.len()
            )
        };
        let command = format!(
            "APPEND {} {}",
            quote(&utf7::encode(folder)),
            part(&items[0])
        );
        let t = self.timeout;
        let tag = tokio::time::timeout(t, self.inner.run_command(&command))
            .await
            .map_err(|_| self.timeout_error(&what))?
            .map_err(|e| self.closed(&what, e.to_string()))?;
        for (i, item) in items.iter().enumerate() {
            if !literal_plus {
                // Wait for the continuation before each literal; a NO here refuses the batch.
                let response = next_response!(self, &what);
                match response.parsed() {
                    Response::Continue { .. } => {}
                    Response::Done {
                        status, outcome, ..
                    } => {
                        let reply =
                            reply_text(outcome.code.as_ref(), outcome.information.as_deref());
                        return Err(match status {
                            async_imap::imap_proto::Status::No => ImapError::No {
                                server: self.server.clone(),
                                command: what,
                                reply,
                            },
                            _ => ImapError::Bad {
                                server: self.server.clone(),
                                command: what,
                                reply,
                            },
                        });
                    }
                    other => {
                        return Err(ImapError::Protocol {
                            server: self.server.clone(),
                            command: what,
                            detail: format!("expected a continuation, got {other:?}"),
                        });
                    }
                }
            }
            let next = items.get(i + 1).map(|n| format!(" {}\r\n", part(n)));
            let trailer = next.unwrap_or_else(|| "\r\n".to_owned());
            let stream = self.inner.get_mut();
            let write = async {
                stream.write_all(item.body).await?;
                stream.write_all(trailer.as_bytes()).await?;
                stream.flush().await
            };
            tokio::time::timeout(t, write)
                .await
                .map_err(|_| self.timeout_error(&what))?
                .map_err(|e| self.closed(&what, e.to_string()))?;
        }
        // Everything is sent: the server may store it however late it answers. Giving up at
        // the usual timeout would leave it to store the batch after the next pass found nothing
        // and sent it again, so the answer is awaited longer: four timeouts, at least 30 s.
        let patience = (t * 4).max(Duration::from_secs(30));
        let usual = std::mem::replace(&mut self.timeout, patience);
        let done = self.finish(&tag.0, &what, &mut |_| Ok(())).await;
        self.timeout = usual;
        let done = done?;
        match done.and_then(|d| d.append_uids) {
            Some(uids) if uids.len() == items.len() => Ok(Some(uids)),
            Some(uids) => Err(ImapError::Protocol {
                server: self.server.clone(),
                command: what,
                detail: format!(
                    "APPENDUID names {} UIDs for {} messages",
                    uids.len(),
                    items.len()
                ),
            }),
            None => Ok(None),
        }
    }

    /// Copies messages of the open folder into `target` on the server (`UID COPY`), without
    /// sending them again. Returns `(UID here, UID in target)` pairs from COPYUID (UIDPLUS), or
    /// `None` without UIDPLUS.
    ///
    /// # Errors
    ///
    /// As for every command; a NO (target missing, over quota) with the server's reply.
    pub async fn copy(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> Result<Option<Vec<(u32, u32)>>, ImapError> {
        if uids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let command = format!(
            "UID COPY {} {}",
            uidset::format(uids),
            quote(&utf7::encode(target))
        );
        let done = self.execute(&command, "UID COPY", |_| Ok(())).await?;
        Ok(done.and_then(|d| d.copy_uids))
    }

    /// Removes these messages of the open folder, and only these: `\Deleted` is set on them
    /// and `UID EXPUNGE` (UIDPLUS) names them, so a message the user marked `\Deleted`
    /// elsewhere in the folder stays. Returns whether the server could (without UIDPLUS
    /// nothing is sent: a plain EXPUNGE would remove every message marked deleted).
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn uid_expunge(&mut self, uids: &[u32]) -> Result<bool, ImapError> {
        if uids.is_empty() {
            return Ok(true);
        }
        if !self.has("UIDPLUS") {
            return Ok(false);
        }
        self.flag_deleted(uids).await?;
        let set = uidset::format(uids);
        let command = format!("UID EXPUNGE {set}");
        self.execute(&command, "UID EXPUNGE", |_| Ok(())).await?;
        Ok(true)
    }

    /// Adds `\Deleted` to these messages of the open folder.
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn flag_deleted(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let command = format!(
            "UID STORE {} +FLAGS.SILENT (\\Deleted)",
            uidset::format(uids)
        );
        self.execute(&command, "UID STORE +FLAGS (\\Deleted)", |_| Ok(()))
            .await
            .map(|_| ())
    }

    /// Sets the flags of messages in the open folder (replacing them).
    ///
    /// # Errors
    ///
    /// As for every command.
    pub async fn store_flags(&mut self, uids: &[u32], flags: &str) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let command = format!("UID STORE {} FLAGS.SILENT {flags}", uidset::format(uids));
        self.execute(&command, "UID STORE", |_| Ok(()))
            .await
            .map(|_| ())
    }
}
