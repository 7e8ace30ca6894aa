//! Daily transfer allowances (Gmail: 2,500 MB down and 500 MB up per account and day): bytes
//! counted per account and UTC day, over every job and session sharing the counter.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Bytes moved per account and UTC day. Kept in memory: a restart starts the day's count over.
#[derive(Debug, Default)]
pub struct DailyAllowance(Mutex<Option<HashMap<String, (u64, u64)>>>);

/// Today's UTC day number and the seconds left until it ends.
fn utc_day_and_rest() -> (u64, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (now / 86_400, 86_400 - now % 86_400)
}

impl DailyAllowance {
    /// An empty counter (usable in a `static`).
    pub const fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// `Ok` while `account` has moved less than `limit` bytes today; else the bytes used and
    /// the seconds until 00:00 UTC, when the allowance starts over.
    ///
    /// # Errors
    ///
    /// `(bytes used today, seconds until the next day)` once the allowance is used.
    pub fn check(&self, account: &str, limit: u64) -> Result<(), (u64, u64)> {
        let (day, rest) = utc_day_and_rest();
        let used = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|m| m.get(account))
            .filter(|(d, _)| *d == day)
            .map_or(0, |(_, b)| *b);
        if used >= limit {
            Err((used, rest))
        } else {
            Ok(())
        }
    }

    /// Counts bytes `account` moved today.
    pub fn count(&self, account: &str, bytes: u64) {
        let (day, _) = utc_day_and_rest();
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = guard
            .get_or_insert_with(HashMap::new)
            .entry(account.to_owned())
            .or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        entry.1 += bytes;
    }
}

/// One destination account's share of a [`DailyAllowance`]: what a mail destination reports
/// so that the engine can hold a daily upload limit without knowing the provider. The counter
/// is the destination's to choose: the IMAP destination counts over every job of the process
/// writing to the same account, a test fake over its own runs only.
#[derive(Debug, Clone, Copy)]
pub struct UploadMeter<'a> {
    /// The account as the counter knows it (`user@host:port`), named in the throttling message.
    pub account: &'a str,
    /// Bytes received per account and UTC day.
    pub counter: &'a DailyAllowance,
}

impl UploadMeter<'_> {
    /// As [`DailyAllowance::check`] for this account.
    ///
    /// # Errors
    ///
    /// `(bytes received today, seconds until the next day)` once `limit` is reached.
    pub fn check(&self, limit: u64) -> Result<(), (u64, u64)> {
        self.counter.check(self.account, limit)
    }

    /// Counts bytes the account received.
    pub fn count(&self, bytes: u64) {
        self.counter.count(self.account, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_is_counted_per_account() {
        let a = DailyAllowance::new();
        assert!(a.check("x", 10).is_ok());
        a.count("x", 6);
        a.count("y", 100);
        assert!(a.check("x", 10).is_ok());
        a.count("x", 4);
        let (used, rest) = a.check("x", 10).unwrap_err();
        assert_eq!(used, 10);
        assert!(rest > 0 && rest <= 86_400);
    }
}
