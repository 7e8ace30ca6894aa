//! A job's throughput history: what it copied, one sample every [`SAMPLE_EVERY`] while it
//! runs, the last [`KEEP`] of them, in a ring buffer kept in memory (a restart starts afresh).
//! A page opened late (the Cockpit page) draws the run so far from it. Pure: the manager gives
//! the time and the run's totals.

use std::collections::VecDeque;

use migrated_ipc::ThroughputSample;

/// One sample per job this often while it runs.
pub(crate) const SAMPLE_EVERY: f64 = 10.0;

/// Samples older than this (seconds) are dropped.
pub(crate) const KEEP: f64 = 3600.0;

/// At most this many samples per job (one hour of them, and the short last ones of runs).
const MAX_SAMPLES: usize = 400;

/// The samples of one job, and where the current run's last one ended.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<ThroughputSample>,
    /// `(time, items, bytes)` at the end of the last sample of the run in progress.
    mark: Option<(f64, u64, u64)>,
}

impl History {
    /// A run starts at `now`: its totals count from zero.
    pub(crate) fn start(&mut self, now: f64) {
        self.mark = Some((now, 0, 0));
    }

    /// The run in progress has copied `items` and `bytes` so far: a sample when the last one
    /// is [`SAMPLE_EVERY`] old.
    pub(crate) fn progress(&mut self, now: f64, items: u64, bytes: u64) {
        if let Some((at, ..)) = self.mark
            && now - at >= SAMPLE_EVERY
        {
            self.sample(now, items, bytes);
        }
    }

    /// The run ended at `now` having copied `items` and `bytes`: its last (shorter) sample.
    pub(crate) fn finish(&mut self, now: f64, items: u64, bytes: u64) {
        if self.mark.is_some() {
            self.sample(now, items, bytes);
        }
        self.mark = None;
    }

    fn sample(&mut self, now: f64, items: u64, bytes: u64) {
        let Some((at, i0, b0)) = self.mark else {
            return;
        };
        self.samples.push_back(ThroughputSample {
            time: now,
            secs: (now - at).max(0.0),
            items: items.saturating_sub(i0),
            bytes: bytes.saturating_sub(b0),
        });
        self.mark = Some((now, items.max(i0), bytes.max(b0)));
        while self.samples.len() > MAX_SAMPLES
            || self.samples.front().is_some_and(|s| now - s.time > KEEP)
        {
            self.samples.pop_front();
        }
    }

    /// The samples of the last hour, oldest first.
    pub(crate) fn samples(&self, now: f64) -> Vec<ThroughputSample> {
        self.samples
            .iter()
            .filter(|s| now - s.time <= KEEP)
            .cloned()
            .collect()
    }
}

/// Seconds since the epoch, with their fraction.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_gives_a_sample_every_ten_seconds_and_its_samples_add_up_to_its_totals() {
        let mut h = History::default();
        h.start(1000.0);
        for (t, items) in [(1003.0, 5), (1010.5, 20), (1012.0, 22), (1021.0, 40)] {
            h.progress(t, items, items * 100);
        }
        h.finish(1024.0, 45, 4500);
        let s = h.samples(1024.0);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!((s[0].time, s[0].secs, s[0].items), (1010.5, 10.5, 20));
        assert_eq!(s.iter().map(|x| x.items).sum::<u64>(), 45);
        assert_eq!(s.iter().map(|x| x.bytes).sum::<u64>(), 4500);
        // A second run counts from zero again.
        h.start(2000.0);
        h.finish(2002.0, 3, 300);
        assert_eq!(h.samples(2002.0).last().map(|x| x.items), Some(3));
    }

    #[test]
    fn samples_older_than_an_hour_are_dropped() {
        let mut h = History::default();
        h.start(0.0);
        for t in 1u32..=800 {
            h.progress(f64::from(t) * 10.0, u64::from(t), 0);
        }
        let now = 8000.0;
        let s = h.samples(now);
        assert!(s.iter().all(|x| now - x.time <= KEEP));
        assert_eq!(s.len(), 361, "one every 10 s over an hour, both ends");
        assert!(h.samples.len() <= MAX_SAMPLES);
    }
}
