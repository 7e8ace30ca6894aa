//! Bandwidth limits: a token bucket per limit. A job has its own and may share the daemon's
//! global one; workers take tokens for the bytes of each batch before sending it, so the
//! rate holds whatever the number of connections. And the words of a daily upload allowance
//! used up (the allowance itself is the destination's: its meter and its limit).

use std::time::Duration;

use migrated_core::allowance::UploadMeter;
use tokio::time::Instant;

/// A bytes-per-second limit.
pub struct RateLimit {
    bytes_per_second: f64,
    /// Tokens available (may go negative: a message larger than the bucket waits longer) and
    /// when they were last counted; `None` until the first transfer, so the time a job spends
    /// connecting and scanning does not fill the bucket. Waiting happens under the lock, so
    /// waiters queue in order.
    state: tokio::sync::Mutex<Option<(f64, Instant)>>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimit({} B/s)", self.bytes_per_second)
    }
}

impl RateLimit {
    /// A limit of `bytes_per_second` (at least 1 KB/s). The bucket is empty when the first
    /// transfer asks and holds at most one second's worth, so a transfer never starts with a
    /// burst above the limit.
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1000) as f64,
            state: tokio::sync::Mutex::new(None),
        }
    }

    /// The limit, bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second as u64
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: u64) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let (tokens, last) = state.unwrap_or((0.0, now));
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.bytes_per_second)
            .min(self.bytes_per_second);
        let left = tokens - bytes as f64;
        if left >= 0.0 {
            *state = Some((left, now));
            return;
        }
        let wait = Duration::from_secs_f64(-left / self.bytes_per_second);
        tokio::time::sleep(wait).await;
        *state = Some((0.0, Instant::now()));
    }
}

/// Refuses a batch once the destination account's daily allowance is used, in the words the
/// backoff reads: the job waits until 00:00 UTC, shown as Throttled, instead of failing.
pub(crate) fn daily_upload_allowance(meter: &UploadMeter<'_>, limit: u64) -> Result<(), String> {
    let account = meter.account;
    meter.check(limit).map_err(|(used, rest)| {
        format!(
            "NO [THROTTLED] {account} has received {:.0} MB today, its daily upload allowance is \
             {:.0} MB; the job continues at 00:00 UTC. Suggested Backoff Time: {rest} seconds",
            used as f64 / 1e6,
            limit as f64 / 1e6
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_over_many_takes() {
        let limit = RateLimit::new(1_000_000);
        // Time before the first transfer (connecting, scanning) gives no head start.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = tokio::time::Instant::now();
        for _ in 0..50 {
            limit.take(200_000).await;
        }
        // 10 MB at 1 MB/s from an empty bucket: 10 s.
        let took = start.elapsed().as_secs_f64();
        assert!((9.9..=10.1).contains(&took), "{took}");
    }
}
