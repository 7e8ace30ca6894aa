//! Shards: one batch run by N daemons as one migration, each daemon taking its own rows.
//!
//! Every daemon is given the same batch file and template and its shard `K/N` (numbered from
//! 0, as Kubernetes numbers a StatefulSet's pods and an Indexed Job's completions). A row
//! belongs to the shard a plan gave it (the `Shard` column `batch plan` writes, `K/N`), else
//! to the shard a stable hash of its mailbox (`EmailAddress`, lower-cased) picks: FNV-1a 64
//! modulo N, which never changes between releases, machines or restarts, so a rescheduled
//! pod takes the same rows again. Per-host budgets are each shard's share ([`Shard::share`]).
//!
//! [`balance`] is the plan: mailboxes, largest first, each onto the shard least loaded so far
//! (longest processing time first), so one huge mailbox does not leave the others waiting.

use std::fmt;

/// One daemon's part of every batch: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: usize,
    /// Shards in all, 1 or more.
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Reads `K/N` (`0/3`, `1/3`, `2/3`).
    ///
    /// # Errors
    ///
    /// A value that is not two numbers with `K` below `N`, saying what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "shard {text:?}: give K/N, this daemon's shard K of N shards, K from 0 to N-1 (as Kubernetes numbers pods), e.g. 0/3"
            )
        };
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Self::new(index, count).map_err(|e| format!("shard {text:?}: {e}"))
    }

    /// Shard `index` of `count`.
    ///
    /// # Errors
    ///
    /// No shards, or an index not below the count.
    pub fn new(index: usize, count: usize) -> Result<Self, String> {
        if count == 0 {
            return Err("the number of shards must be 1 or more".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index} of {count} does not exist: shards are numbered from 0 to {}",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// The shard from the daemon's settings and environment, in this order: `--shard K/N`
    /// (`flag`); with a number of shards (`--shards N`, `MIGRATED_SHARDS`), the index from
    /// `JOB_COMPLETION_INDEX` (an Indexed Job) or from the hostname's ordinal suffix (a
    /// StatefulSet's pod `migrated-2`). `None`: the daemon takes every row.
    ///
    /// # Errors
    ///
    /// A malformed value, or a number of shards without any index, naming where it came from.
    pub fn from_settings(
        flag: Option<&str>,
        count: Option<usize>,
        completion_index: Option<&str>,
        hostname: Option<&str>,
    ) -> Result<Option<Self>, String> {
        if let Some(flag) = flag {
            return Self::parse(flag).map(Some);
        }
        let Some(count) = count else {
            return Ok(None);
        };
        if let Some(index) = completion_index {
            let index: usize = index.trim().parse().map_err(|_| {
                format!("JOB_COMPLETION_INDEX {index:?} is not a number (Kubernetes sets it for an Indexed Job)")
            })?;
            return Self::new(index, count)
                .map(Some)
                .map_err(|e| format!("JOB_COMPLETION_INDEX {index}: {e}"));
        }
        let ordinal = hostname.and_then(|h| {
            let digits = h.rsplit_once('-')?.1;
            digits.parse::<usize>().ok()
        });
        match ordinal {
            Some(index) => Self::new(index, count)
                .map(Some)
                .map_err(|e| format!("hostname {:?}: {e}", hostname.unwrap_or(""))),
            None => Err(format!(
                "{count} shards are set (--shards, MIGRATED_SHARDS) but this daemon's shard is not: give --shard K/{count}, or run it as a StatefulSet pod (hostname NAME-K) or in an Indexed Job (JOB_COMPLETION_INDEX); hostname {:?}",
                hostname.unwrap_or("")
            )),
        }
    }

    /// Whether this shard takes a row: the shard its plan gave it, else its mailbox's hash.
    pub fn owns(&self, planned: Option<Self>, mailbox: &str) -> bool {
        match planned {
            Some(p) => p.index == self.index,
            None => shard_of(mailbox, self.count) == self.index,
        }
    }

    /// This shard's share of a budget for the whole batch (connections to one host, an
    /// endpoint's migrations): the budget divided by the shards, 1 at least; 0 (no limit)
    /// stays 0.
    pub fn share(&self, budget: usize) -> usize {
        match budget {
            0 => 0,
            b => (b / self.count).max(1),
        }
    }
}

/// The shard a mailbox falls in without a plan: FNV-1a 64 of its lower-cased address,
/// modulo the shards. Stable: the same address always gives the same shard.
pub fn shard_of(mailbox: &str, count: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in mailbox.trim().to_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % count.max(1) as u64) as usize
}

/// One mailbox to place: what it weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weight {
    /// Bytes to copy (the source's STATUS SIZE of every folder, added up).
    pub bytes: u64,
}

/// The plan of a batch: for each mailbox (in the order given) its shard, and each shard's
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Shard of each mailbox, by the mailbox's position in the input.
    pub shard_of: Vec<usize>,
    /// Bytes each shard copies.
    pub bytes: Vec<u64>,
    /// Mailboxes each shard copies.
    pub mailboxes: Vec<usize>,
}

impl Balance {
    /// The largest shard's bytes over the ideal (total / shards); 1.0 is a perfect split.
    pub fn over_ideal(&self) -> f64 {
        let total: u64 = self.bytes.iter().sum();
        let ideal = total as f64 / self.bytes.len().max(1) as f64;
        let max = self.bytes.iter().copied().max().unwrap_or(0) as f64;
        if ideal > 0.0 { max / ideal } else { 1.0 }
    }
}

/// Splits mailboxes over `shards` by bytes: largest first, each onto the shard with the fewest
/// bytes so far (ties: the lower shard; equal sizes keep the input order), so the shards
/// finish close together and the plan is the same for the same input. Pure: used by
/// `migratectl batch plan` and the planning simulation alike.
pub fn balance(mailboxes: &[Weight], shards: usize) -> Balance {
    let shards = shards.max(1);
    let mut order: Vec<usize> = (0..mailboxes.len()).collect();
    order.sort_by(|a, b| mailboxes[*b].bytes.cmp(&mailboxes[*a].bytes).then(a.cmp(b)));
    // A min-heap of (bytes, shard): the least loaded shard on top.
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>> =
        (0..shards).map(|s| std::cmp::Reverse((0, s))).collect();
    let mut out = Balance {
        shard_of: vec![0; mailboxes.len()],
        bytes: vec![0; shards],
        mailboxes: vec![0; shards],
    };
    for i in order {
        let Some(std::cmp::Reverse((load, s))) = heap.pop() else {
            break;
        };
        out.shard_of[i] = s;
        out.bytes[s] = load + mailboxes[i].bytes;
        out.mailboxes[s] += 1;
        heap.push(std::cmp::Reverse((out.bytes[s], s)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_read_as_k_of_n_from_zero() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3"] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(Shard::parse("2/3").unwrap().to_string(), "2/3");
    }

    #[test]
    fn the_flag_wins_then_the_job_index_then_the_pod_ordinal() {
        let s = |k, n| Some(Shard { index: k, count: n });
        assert_eq!(
            Shard::from_settings(Some("1/2"), Some(5), Some("3"), Some("m-4")),
            Ok(s(1, 2))
        );
        assert_eq!(
            Shard::from_settings(None, Some(5), Some("3"), Some("m-4")),
            Ok(s(3, 5))
        );
        assert_eq!(
            Shard::from_settings(None, Some(5), None, Some("migrated-4")),
            Ok(s(4, 5))
        );
        assert_eq!(
            Shard::from_settings(None, None, Some("3"), Some("m-4")),
            Ok(None)
        );
        let e = Shard::from_settings(None, Some(5), None, Some("laptop")).unwrap_err();
        assert!(e.contains("--shard K/5") && e.contains("laptop"), "{e}");
        let e = Shard::from_settings(None, Some(5), None, Some("migrated-7")).unwrap_err();
        assert!(e.contains("migrated-7") && e.contains("0 to 4"), "{e}");
    }

    #[test]
    fn every_mailbox_falls_in_exactly_one_shard_and_always_the_same() {
        let shards: Vec<Shard> = (0..3).map(|k| Shard::new(k, 3).unwrap()).collect();
        let mut per = [0usize; 3];
        for i in 0..3000 {
            let m = format!("user{i}@example.org");
            let owners: Vec<usize> = shards
                .iter()
                .filter(|s| s.owns(None, &m))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners.len(), 1, "{m}");
            assert_eq!(shard_of(&m.to_uppercase(), 3), owners[0]);
            per[owners[0]] += 1;
        }
        // A hash spreads them: each shard gets a fair part.
        assert!(per.iter().all(|n| (800..1200).contains(n)), "{per:?}");
        // Fixed for good: a changed hash would move mailboxes between running shards.
        assert_eq!(
            (
                shard_of("alice@example.org", 1000),
                shard_of(" ALICE@example.org", 3)
            ),
            (689, 1)
        );
        let planned = Some(Shard::new(2, 3).unwrap());
        assert!(shards[2].owns(planned, "x@y.example") && !shards[0].owns(planned, "x@y.example"));
    }

    #[test]
    fn a_budget_is_shared_one_at_least_and_no_limit_stays_none() {
        let s = Shard::new(0, 4).unwrap();
        assert_eq!(
            (s.share(0), s.share(2), s.share(10), s.share(40)),
            (0, 1, 2, 10)
        );
    }

    #[test]
    fn the_largest_go_first_onto_the_least_loaded_shard() {
        let w = |b| Weight { bytes: b };
        let plan = balance(&[w(1), w(10), w(3), w(3), w(4)], 2);
        // 10 -> 0; 4 -> 1; 3 -> 1 (7); 3 -> 1 (10); 1 -> 0 (a tie goes to the lower shard).
        assert_eq!(plan.shard_of, vec![0, 0, 1, 1, 1]);
        assert_eq!(plan.bytes, vec![11, 10]);
        assert_eq!(plan.mailboxes, vec![2, 3]);
        assert!((plan.over_ideal() - 11.0 / 10.5).abs() < 1e-9);
        let empty = balance(&[], 3);
        assert_eq!((empty.over_ideal(), empty.bytes), (1.0, vec![0, 0, 0]));
    }
}
