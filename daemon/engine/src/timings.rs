//! Where a run's time goes: the wall time between phase changes, summed per phase over the
//! run's passes and retries (`migrated migrate --timings`, the report's `timings`).

use std::sync::Mutex;
use std::time::Instant;

use migrated_core::{Phase, PhaseTime};

/// The profile's name for a phase (logging in counts as connecting).
pub(crate) fn name(p: Phase) -> &'static str {
    match p {
        Phase::Connecting | Phase::Authenticating => "connect",
        Phase::ScanningFolders => "scan",
        Phase::CreatingFolders => "folders",
        Phase::Copying => "copy",
        Phase::Finalizing => "finalize",
    }
}

/// Marks of phase changes, from the start of a run.
#[derive(Debug, Default)]
pub(crate) struct PhaseClock {
    marks: Mutex<Vec<(&'static str, Instant)>>,
}

impl PhaseClock {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Instant)>> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run begins: earlier marks go.
    pub(crate) fn reset(&self) {
        self.held().clear();
    }

    /// `phase` begins now (the same phase again continues it).
    pub(crate) fn mark(&self, phase: &'static str) {
        let mut m = self.held();
        if m.last().is_none_or(|(p, _)| *p != phase) {
            m.push((phase, Instant::now()));
        }
    }

    /// Seconds per phase until `end`, in the order the phases first came.
    pub(crate) fn totals(&self, end: Instant) -> Vec<PhaseTime> {
        let m = self.held();
        let mut out: Vec<PhaseTime> = Vec::new();
        for (i, (phase, at)) in m.iter().enumerate() {
            let until = m.get(i + 1).map_or(end, |(_, t)| *t);
            let secs = until.saturating_duration_since(*at).as_secs_f64();
            match out.iter_mut().find(|t| t.phase == *phase) {
                Some(t) => t.secs += secs,
                None => out.push(PhaseTime {
                    phase: (*phase).to_owned(),
                    secs,
                }),
            }
        }
        out
    }
}

/// The profile as one line: `connect 0.12 s, scan 0.40 s, ...`.
pub fn line(timings: &[PhaseTime]) -> String {
    timings
        .iter()
        .map(|t| format!("{} {:.2} s", t.phase, t.secs))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn phases_that_come_back_are_summed_in_the_order_they_first_came() {
        let c = PhaseClock::default();
        let t0 = Instant::now();
        {
            let mut m = c.held();
            let at = |ms| t0 + Duration::from_millis(ms);
            m.extend([
                ("connect", at(0)),
                ("scan", at(100)),
                ("copy", at(300)),
                ("scan", at(1300)),
                ("copy", at(1400)),
                ("finalize", at(1900)),
            ]);
        }
        let totals = c.totals(t0 + Duration::from_millis(2000));
        let got: Vec<(&str, u64)> = totals
            .iter()
            .map(|t| (t.phase.as_str(), (t.secs * 1000.0).round() as u64))
            .collect();
        assert_eq!(
            got,
            [
                ("connect", 100),
                ("scan", 300),
                ("copy", 1500),
                ("finalize", 100)
            ]
        );
        assert_eq!(line(&totals[..2]), "connect 0.10 s, scan 0.30 s");
    }

    #[test]
    fn a_phase_marked_twice_in_a_row_is_one_stretch() {
        let c = PhaseClock::default();
        c.mark("copy");
        c.mark("copy");
        assert_eq!(c.held().len(), 1);
        c.reset();
        assert!(c.totals(Instant::now()).is_empty());
    }
}
