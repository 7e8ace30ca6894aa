//! The verifier: compares mapped folder pairs of two live accounts message by message (matched
//! by body hash) and reports every missing, extra or duplicated message and every flag or
//! INTERNALDATE difference.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::{Context, Result};

use crate::imap::{Account, MessageRecord, Session, login};

/// A source message with no counterpart in the destination folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub src_uid: u32,
    pub size: u64,
    pub message_id: Option<String>,
    pub body_hash: blake3::Hash,
}

/// A destination message with no counterpart in the source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub dst_uid: u32,
    pub size: u64,
    pub message_id: Option<String>,
    pub body_hash: blake3::Hash,
    /// The source folder has this message too, fewer times: a duplicate, not a stranger.
    pub duplicate: bool,
}

/// A message present on both sides whose metadata differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub src_uid: u32,
    pub dst_uid: u32,
    pub message_id: Option<String>,
    /// (source, destination) flags and keywords when they differ.
    pub flags: Option<(Vec<String>, Vec<String>)>,
    /// (source, destination) INTERNALDATE when it differs.
    pub internaldate: Option<(i64, i64)>,
}

/// Differences for one mapped folder pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderDiff {
    pub src_folder: String,
    pub dst_folder: String,
    pub src_count: usize,
    pub dst_count: usize,
    pub dst_exists: bool,
    pub missing: Vec<Missing>,
    pub extra: Vec<Extra>,
    pub mismatched: Vec<Mismatch>,
}

impl FolderDiff {
    pub fn is_exact(&self) -> bool {
        self.dst_exists
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.mismatched.is_empty()
    }
}

/// The result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub folders: Vec<FolderDiff>,
}

impl VerifyReport {
    pub fn is_exact(&self) -> bool {
        self.folders.iter().all(FolderDiff::is_exact)
    }

    pub fn missing_count(&self) -> usize {
        self.folders.iter().map(|f| f.missing.len()).sum()
    }

    pub fn extra_count(&self) -> usize {
        self.folders.iter().map(|f| f.extra.len()).sum()
    }

    pub fn mismatch_count(&self) -> usize {
        self.folders.iter().map(|f| f.mismatched.len()).sum()
    }

    /// Destination folders named in the mapping that do not exist.
    pub fn missing_folders(&self) -> Vec<&str> {
        self.folders
            .iter()
            .filter(|f| !f.dst_exists)
            .map(|f| f.dst_folder.as_str())
            .collect()
    }
}

fn short(h: &blake3::Hash) -> String {
    h.to_hex()[..12].to_owned()
}

fn id(m: &Option<String>) -> &str {
    m.as_deref().unwrap_or("(no Message-ID)")
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_exact() {
            let n: usize = self.folders.iter().map(|d| d.src_count).sum();
            return writeln!(
                f,
                "exact: {} folders, {n} messages match",
                self.folders.len()
            );
        }
        writeln!(
            f,
            "NOT exact: {} missing, {} extra, {} with different flags or date, {} missing folders",
            self.missing_count(),
            self.extra_count(),
            self.mismatch_count(),
            self.missing_folders().len()
        )?;
        for d in self.folders.iter().filter(|d| !d.is_exact()) {
            writeln!(
                f,
                "folder {:?} -> {:?}: {} in source, {} in destination{}",
                d.src_folder,
                d.dst_folder,
                d.src_count,
                d.dst_count,
                if d.dst_exists {
                    ""
                } else {
                    " (destination folder does not exist)"
                }
            )?;
            for m in &d.missing {
                writeln!(
                    f,
                    "  missing: source uid {} ({} bytes, {}, hash {})",
                    m.src_uid,
                    m.size,
                    id(&m.message_id),
                    short(&m.body_hash)
                )?;
            }
            for e in &d.extra {
                writeln!(
                    f,
                    "  {}: destination uid {} ({} bytes, {}, hash {})",
                    if e.duplicate { "duplicate" } else { "extra" },
                    e.dst_uid,
                    e.size,
                    id(&e.message_id),
                    short(&e.body_hash)
                )?;
            }
            for m in &d.mismatched {
                if let Some((s, t)) = &m.flags {
                    writeln!(
                        f,
                        "  flags: source uid {} [{}] != destination uid {} [{}] ({})",
                        m.src_uid,
                        s.join(" "),
                        m.dst_uid,
                        t.join(" "),
                        id(&m.message_id)
                    )?;
                }
                if let Some((s, t)) = m.internaldate {
                    writeln!(
                        f,
                        "  internaldate: source uid {} {} != destination uid {} {} ({})",
                        m.src_uid,
                        crate::imap::imap_date(s),
                        m.dst_uid,
                        crate::imap::imap_date(t),
                        id(&m.message_id)
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Compares every `(source folder, destination folder)` pair of `mapping`.
pub async fn verify(
    src: &Account,
    dst: &Account,
    mapping: &[(String, String)],
) -> Result<VerifyReport> {
    let (s, d) = tokio::join!(login(src), login(dst));
    let mut s = s.context("verify: logging in to the source")?;
    let mut d = d.context("verify: logging in to the destination")?;
    let dst_folders = d.list_folders().await?;

    let mut folders = Vec::with_capacity(mapping.len());
    for (src_folder, dst_folder) in mapping {
        let dst_exists = dst_folders
            .iter()
            .any(|f| &f.name == dst_folder && f.selectable());
        let (src_msgs, dst_msgs) = if dst_exists {
            let (a, b) = tokio::join!(s.folder_messages(src_folder), d.folder_messages(dst_folder));
            (
                a.with_context(|| format!("verify: reading source folder {src_folder:?}"))?,
                b.with_context(|| format!("verify: reading destination folder {dst_folder:?}"))?,
            )
        } else {
            (
                s.folder_messages(src_folder)
                    .await
                    .with_context(|| format!("verify: reading source folder {src_folder:?}"))?,
                Vec::new(),
            )
        };
        let mut diff = compare(src_folder, dst_folder, &src_msgs, &dst_msgs);
        diff.dst_exists = dst_exists;
        folders.push(diff);
    }
    logout_quietly(s).await;
    logout_quietly(d).await;
    Ok(VerifyReport { folders })
}

async fn logout_quietly(s: Session) {
    // The comparison is done; a failing LOGOUT changes nothing about it.
    let _ = s.logout().await;
}

/// Compares two folders' messages (pure, so it is unit-tested without a server).
pub fn compare(
    src_folder: &str,
    dst_folder: &str,
    src: &[MessageRecord],
    dst: &[MessageRecord],
) -> FolderDiff {
    let mut by_hash: BTreeMap<[u8; 32], (Vec<&MessageRecord>, Vec<&MessageRecord>)> =
        BTreeMap::new();
    for m in src {
        by_hash
            .entry(*m.body_hash.as_bytes())
            .or_default()
            .0
            .push(m);
    }
    for m in dst {
        by_hash
            .entry(*m.body_hash.as_bytes())
            .or_default()
            .1
            .push(m);
    }
    let mut diff = FolderDiff {
        src_folder: src_folder.to_owned(),
        dst_folder: dst_folder.to_owned(),
        src_count: src.len(),
        dst_count: dst.len(),
        dst_exists: true,
        missing: Vec::new(),
        extra: Vec::new(),
        mismatched: Vec::new(),
    };
    for (srcs, dsts) in by_hash.values() {
        // Copies of one body may carry different flags; pair identical metadata first so a
        // swap between copies is not reported as two differences.
        let mut free_dst: Vec<&MessageRecord> = dsts.clone();
        let mut unpaired_src = Vec::new();
        for s in srcs {
            if let Some(pos) = free_dst
                .iter()
                .position(|d| d.flags == s.flags && d.internaldate == s.internaldate)
            {
                free_dst.remove(pos);
            } else {
                unpaired_src.push(*s);
            }
        }
        let mut free_dst = free_dst.into_iter();
        for s in unpaired_src {
            match free_dst.next() {
                Some(d) => diff.mismatched.push(Mismatch {
                    src_uid: s.uid,
                    dst_uid: d.uid,
                    message_id: s.message_id.clone(),
                    flags: (s.flags != d.flags).then(|| (s.flags.clone(), d.flags.clone())),
                    internaldate: (s.internaldate != d.internaldate)
                        .then_some((s.internaldate, d.internaldate)),
                }),
                None => diff.missing.push(Missing {
                    src_uid: s.uid,
                    size: s.size,
                    message_id: s.message_id.clone(),
                    body_hash: s.body_hash,
                }),
            }
        }
        for d in free_dst {
            diff.extra.push(Extra {
                dst_uid: d.uid,
                size: d.size,
                message_id: d.message_id.clone(),
                body_hash: d.body_hash,
                duplicate: !srcs.is_empty(),
            });
        }
    }
    diff.missing.sort_by_key(|m| m.src_uid);
    diff.extra.sort_by_key(|e| e.dst_uid);
    diff.mismatched.sort_by_key(|m| m.src_uid);
    diff
}

/// Counts of body hashes, for callers that compare whole accounts loosely.
pub fn hash_multiset(msgs: &[MessageRecord]) -> HashMap<blake3::Hash, usize> {
    let mut out = HashMap::new();
    for m in msgs {
        *out.entry(m.body_hash).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: u32, body: &str, flags: &[&str], date: i64) -> MessageRecord {
        MessageRecord {
            uid,
            size: body.len() as u64,
            flags: flags.iter().map(|s| (*s).to_owned()).collect(),
            internaldate: date,
            message_id: Some(format!("<{body}@x>")),
            body_hash: blake3::hash(body.as_bytes()),
        }
    }

    #[test]
    fn identical_folders_are_exact() {
        let a = [rec(1, "a", &["\\Seen"], 10), rec(2, "b", &[], 20)];
        let b = [rec(7, "b", &[], 20), rec(9, "a", &["\\Seen"], 10)];
        assert!(compare("x", "y", &a, &b).is_exact());
    }

    #[test]
    fn reports_missing_duplicate_extra_and_mismatch() {
        let src = [
            rec(1, "a", &["\\Seen"], 10),
            rec(2, "b", &[], 20),
            rec(3, "c", &[], 30),
        ];
        let dst = [
            rec(1, "a", &[], 10),
            rec(2, "b", &[], 20),
            rec(3, "b", &[], 20),
            rec(4, "z", &[], 40),
        ];
        let d = compare("s", "d", &src, &dst);
        assert_eq!(d.missing.iter().map(|m| m.src_uid).collect::<Vec<_>>(), [3]);
        assert_eq!(
            d.extra
                .iter()
                .map(|e| (e.dst_uid, e.duplicate))
                .collect::<Vec<_>>(),
            [(3, true), (4, false)]
        );
        assert_eq!(d.mismatched.len(), 1);
        assert_eq!(d.mismatched[0].internaldate, None);
        let report = VerifyReport { folders: vec![d] };
        let text = report.to_string();
        assert!(text.contains("missing: source uid 3"), "{text}");
        assert!(text.contains("duplicate: destination uid 3"), "{text}");
        assert!(
            text.contains("flags: source uid 1 [\\Seen] != destination uid 1 []"),
            "{text}"
        );
    }

    #[test]
    fn swapped_copies_pair_by_metadata() {
        let src = [rec(1, "a", &["\\Seen"], 10), rec(2, "a", &[], 10)];
        let dst = [rec(5, "a", &[], 10), rec(6, "a", &["\\Seen"], 10)];
        assert!(compare("s", "d", &src, &dst).is_exact());
    }
}
