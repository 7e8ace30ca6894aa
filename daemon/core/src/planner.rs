//! The pure planner: source listing + ledger -> what to copy, what to exclude, which flags to
//! carry. It knows nothing of connections, so every rule is unit-tested here.

use std::collections::HashMap;

use crate::filter::MessageFilter;
use crate::message::{Flags, MessageMeta};

/// What the ledger knows of one source message already copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    /// UID of the copy in the destination folder.
    pub dest_uid: u32,
    /// Fingerprint of the flags the copy has (as of the last run).
    pub flags_fingerprint: u64,
}

/// Limits the planner applies.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Messages larger than this are excluded and reported.
    pub max_message_size: u64,
    /// Compare flags of copied messages and carry changes (delta runs).
    pub sync_flags: bool,
    /// The job's `[filter]`: messages it leaves out are excluded and reported.
    pub filter: MessageFilter,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            max_message_size: 35 * 1024 * 1024,
            sync_flags: true,
            filter: MessageFilter::default(),
        }
    }
}

/// A message left out, and why (the limit or filter rule, for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    /// The message.
    pub message: MessageMeta,
    /// The rule that left it out, in words.
    pub reason: String,
}

/// The steps for one folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderSteps {
    /// Messages to copy, in UID order.
    pub copy: Vec<MessageMeta>,
    /// Messages over the size limit or left out by the filter: not copied, reported.
    pub excluded: Vec<Exclusion>,
    /// `(source UID, destination UID, new flags)` for copied messages whose flags changed.
    pub flag_updates: Vec<(u32, u32, Flags)>,
    /// Messages the ledger shows as copied already.
    pub already_copied: usize,
}

impl FolderSteps {
    /// Bytes that copying will move.
    pub fn copy_bytes(&self) -> u64 {
        self.copy.iter().map(|m| u64::from(m.size)).sum()
    }
}

/// Plans one folder: every listed message is copied once, excluded, or already in the ledger.
pub fn plan_folder(
    listing: &[MessageMeta],
    ledger: &HashMap<u32, LedgerEntry>,
    options: &PlanOptions,
) -> FolderSteps {
    let mut steps = FolderSteps::default();
    for m in listing {
        if let Some(entry) = ledger.get(&m.uid) {
            steps.already_copied += 1;
            if options.sync_flags && entry.flags_fingerprint != m.flags.fingerprint() {
                steps
                    .flag_updates
                    .push((m.uid, entry.dest_uid, m.flags.clone()));
            }
        } else if u64::from(m.size) > options.max_message_size {
            steps.excluded.push(Exclusion {
                message: m.clone(),
                reason: too_large(options.max_message_size),
            });
        } else if let Some(reason) = options.filter.excludes(m) {
            steps.excluded.push(Exclusion {
                message: m.clone(),
                reason,
            });
        } else {
            steps.copy.push(m.clone());
        }
    }
    steps.copy.sort_by_key(|m| m.uid);
    steps
}

/// Which side wins when a message's flags changed on both sides since they were last synced
/// (`flag_conflicts` in a job file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagConflicts {
    /// The source's flags replace the destination's.
    Source,
    /// The destination's flags stay.
    Destination,
    /// Every flag set on either side (default): nothing a user set is lost.
    #[default]
    Union,
}

/// The flags a copy gets at a delta whose source listing shows its flags changed.
///
/// `copied` are the flags the copy got at the last sync (`None` for a record written before
/// they were kept: the source's flags win, as they always did), `source` and `destination`
/// the flags both sides have now. Only the source changed (the destination still has what was
/// copied): the source's flags. Both changed: the policy decides.
pub fn merge_flags(
    copied: Option<&Flags>,
    source: &Flags,
    destination: &Flags,
    policy: FlagConflicts,
) -> Flags {
    match copied {
        None => source.clone(),
        Some(c) if c == destination => source.clone(),
        Some(_) => match policy {
            FlagConflicts::Source => source.clone(),
            FlagConflicts::Destination => destination.clone(),
            FlagConflicts::Union => Flags::new(
                source
                    .as_slice()
                    .iter()
                    .chain(destination.as_slice().iter()),
            ),
        },
    }
}

/// Why a message over the size limit is excluded, in the administrator's words: the limit,
/// the setting, and for the default what it stands for.
pub fn too_large(limit: u64) -> String {
    if limit == 35 * 1024 * 1024 {
        format!(
            "larger than the limit of {limit} bytes ([limits] max_message_size, 35 MB by \
             default: Exchange Online's limit for a message, which it refuses beyond; raise it \
             if the destination takes larger messages)"
        )
    } else {
        format!(
            "larger than the limit of {limit} bytes ([limits] max_message_size; raise it if the \
             destination takes larger messages)"
        )
    }
}

/// Splits messages into batches of at most `max_count` messages and `max_bytes` bytes; a message
/// larger than `max_bytes` travels alone. This bounds memory whatever the mailbox holds.
pub fn batches(messages: &[MessageMeta], max_count: usize, max_bytes: u64) -> Vec<&[MessageMeta]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, m) in messages.iter().enumerate() {
        let size = u64::from(m.size);
        let count = i - start;
        if count > 0 && (count >= max_count || bytes + size > max_bytes) {
            out.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

/// Matches messages whose APPEND was in flight when a run stopped against what the destination
/// holds, by content hash, one to one (two identical messages need two copies).
///
/// `in_flight` is `(source UID, hash)`, `found` is `(destination UID, hash)`. Returns
/// `(source UID, destination UID)` for every in-flight message already on the destination;
/// the others must be sent again.
pub fn match_in_flight(
    in_flight: &[(u32, [u8; 32])],
    found: &[(u32, [u8; 32])],
) -> Vec<(u32, u32)> {
    let mut available: HashMap<[u8; 32], Vec<u32>> = HashMap::new();
    for (dest_uid, hash) in found {
        available.entry(*hash).or_default().push(*dest_uid);
    }
    for uids in available.values_mut() {
        // Pop from the end: lowest destination UID first, matching APPEND order.
        uids.sort_unstable_by(|a, b| b.cmp(a));
    }
    let mut matched = Vec::new();
    for (src_uid, hash) in in_flight {
        if let Some(dest_uid) = available.get_mut(hash).and_then(Vec::pop) {
            matched.push((*src_uid, dest_uid));
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(uid: u32, size: u32, flags: &[&str]) -> MessageMeta {
        MessageMeta {
            uid,
            size,
            flags: Flags::new(flags),
            internal_date: "01-Jan-2020 00:00:00 +0000".into(),
            message_id: None,
            subject: None,
            modseq: None,
            content_key: None,
            date: None,
        }
    }

    #[test]
    fn a_second_run_copies_nothing() {
        let listing = [msg(1, 10, &[]), msg(2, 10, &["\\Seen"])];
        let ledger: HashMap<_, _> = listing
            .iter()
            .map(|m| {
                (
                    m.uid,
                    LedgerEntry {
                        dest_uid: m.uid + 100,
                        flags_fingerprint: m.flags.fingerprint(),
                    },
                )
            })
            .collect();
        let steps = plan_folder(&listing, &ledger, &PlanOptions::default());
        assert!(steps.copy.is_empty());
        assert!(steps.flag_updates.is_empty());
        assert_eq!(steps.already_copied, 2);
    }

    #[test]
    fn resume_after_crash_skips_items_already_in_the_ledger() {
        let listing: Vec<_> = (1..=10).map(|u| msg(u, 10, &[])).collect();
        let ledger: HashMap<_, _> = (1..=6)
            .map(|u| {
                (
                    u,
                    LedgerEntry {
                        dest_uid: u,
                        flags_fingerprint: Flags::default().fingerprint(),
                    },
                )
            })
            .collect();
        let steps = plan_folder(&listing, &ledger, &PlanOptions::default());
        assert_eq!(
            steps.copy.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
    }

    #[test]
    fn oversized_messages_are_excluded_not_copied() {
        let listing = [msg(1, 10, &[]), msg(2, 2000, &[])];
        let opts = PlanOptions {
            max_message_size: 1000,
            ..PlanOptions::default()
        };
        let steps = plan_folder(&listing, &HashMap::new(), &opts);
        assert_eq!(steps.copy.len(), 1);
        assert_eq!(steps.excluded[0].message.uid, 2);
        assert!(
            steps.excluded[0]
                .reason
                .starts_with("larger than the limit of 1000 bytes ([limits] max_message_size"),
            "{}",
            steps.excluded[0].reason
        );
    }

    #[test]
    fn the_default_limit_is_said_as_exchange_online_s_35_mb() {
        let why = too_large(35 * 1024 * 1024);
        assert_eq!(
            why,
            "larger than the limit of 36700160 bytes ([limits] max_message_size, 35 MB by \
             default: Exchange Online's limit for a message, which it refuses beyond; raise it \
             if the destination takes larger messages)"
        );
        assert!(!too_large(1000).contains("Exchange"), "{}", too_large(1000));
    }

    #[test]
    fn filtered_messages_are_excluded_with_the_rule_and_copied_ones_stay() {
        let listing = [
            msg(1, 10, &["\\Deleted"]),
            msg(2, 10, &[]),
            msg(3, 10, &["\\Deleted"]),
        ];
        let opts = PlanOptions {
            filter: MessageFilter::compile(&crate::filter::FilterSpec {
                exclude_flags: vec!["\\Deleted".into()],
                ..Default::default()
            })
            .unwrap(),
            ..PlanOptions::default()
        };
        // UID 3 was copied before the filter was set: it is in the ledger, not excluded.
        let ledger = HashMap::from([(
            3,
            LedgerEntry {
                dest_uid: 9,
                flags_fingerprint: Flags::new(["\\Deleted"]).fingerprint(),
            },
        )]);
        let steps = plan_folder(&listing, &ledger, &opts);
        assert_eq!(steps.copy.iter().map(|m| m.uid).collect::<Vec<_>>(), [2]);
        assert_eq!(steps.excluded.len(), 1);
        assert_eq!(steps.excluded[0].message.uid, 1);
        assert_eq!(
            steps.excluded[0].reason,
            "filtered out by [filter] exclude_flags (\\Deleted is set)"
        );
        assert_eq!(steps.already_copied, 1);
    }

    #[test]
    fn a_flag_change_on_the_source_becomes_a_flag_update() {
        let listing = [msg(1, 10, &["\\Seen", "$Label1"])];
        let ledger = HashMap::from([(
            1,
            LedgerEntry {
                dest_uid: 7,
                flags_fingerprint: Flags::default().fingerprint(),
            },
        )]);
        let steps = plan_folder(&listing, &ledger, &PlanOptions::default());
        assert_eq!(
            steps.flag_updates,
            [(1, 7, Flags::new(["\\Seen", "$Label1"]))]
        );
    }

    #[test]
    fn flags_changed_on_one_side_follow_it_and_a_conflict_follows_the_policy() {
        let f = |v: &[&str]| Flags::new(v);
        let copied = f(&["\\Seen"]);
        // Only the source changed: its flags, whatever the policy.
        for p in [
            FlagConflicts::Source,
            FlagConflicts::Destination,
            FlagConflicts::Union,
        ] {
            assert_eq!(
                merge_flags(Some(&copied), &f(&["\\Seen", "\\Answered"]), &copied, p),
                f(&["\\Seen", "\\Answered"])
            );
        }
        // Both changed: the source added \Answered, the user flagged it on the destination.
        let (src, dst) = (f(&["\\Seen", "\\Answered"]), f(&["\\Seen", "\\Flagged"]));
        assert_eq!(
            merge_flags(Some(&copied), &src, &dst, FlagConflicts::Source),
            src
        );
        assert_eq!(
            merge_flags(Some(&copied), &src, &dst, FlagConflicts::Destination),
            dst
        );
        assert_eq!(
            merge_flags(Some(&copied), &src, &dst, FlagConflicts::Union),
            f(&["\\Answered", "\\Flagged", "\\Seen"])
        );
        // A record of the previous release: the source wins, as before.
        assert_eq!(merge_flags(None, &src, &dst, FlagConflicts::Union), src);
    }

    #[test]
    fn batches_respect_count_and_bytes_and_large_messages_travel_alone() {
        let ms = [
            msg(1, 10, &[]),
            msg(2, 10, &[]),
            msg(3, 10, &[]),
            msg(4, 500, &[]),
            msg(5, 10, &[]),
        ];
        let b = batches(&ms, 2, 100);
        let uids: Vec<Vec<u32>> = b
            .iter()
            .map(|s| s.iter().map(|m| m.uid).collect())
            .collect();
        assert_eq!(uids, [vec![1, 2], vec![3], vec![4], vec![5]]);
    }

    #[test]
    fn in_flight_matching_is_one_to_one() {
        let h = |b: u8| [b; 32];
        let in_flight = [(10, h(1)), (11, h(1)), (12, h(2)), (13, h(3))];
        let found = [(100, h(1)), (101, h(2)), (102, h(9))];
        let mut m = match_in_flight(&in_flight, &found);
        m.sort();
        assert_eq!(m, [(10, 100), (12, 101)]);
    }
}
