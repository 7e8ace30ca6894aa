//! The scheduler: which queued jobs start now, which runs must pause because their schedule
//! window ended, and which recurring deltas are due. Pure functions of the jobs, the limits and
//! the time given to them; the manager applies what they decide.
//!
//! Queued jobs start by priority (lower numbers first), then oldest first, while fewer than
//! `max_jobs` run and every host they touch stays within `max_connections_per_host`. A job
//! opens its workers plus one control connection to each of its hosts; a job that alone would
//! exceed the per-host limit still starts when its hosts are idle (its workers are capped to
//! fit, see [`connections_of`]). A job whose sides name endpoints also waits while an
//! endpoint runs its `max_migrations` jobs, or, for an incremental sync (a job that completed
//! before), its `max_syncs` syncs.

use migrated_core::JobStatus;
use migrated_core::schedule::ScheduleSpec;

use crate::record::JobRecord;

/// The limits the scheduler keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Jobs running at once.
    pub max_jobs: usize,
    /// Connections at most to one host over all running jobs; 0: no limit.
    pub max_connections_per_host: usize,
}

/// What a job would open: its hosts and its connections to each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub source: String,
    pub destination: String,
    /// Connections per side: workers plus the control connection.
    pub connections: usize,
    /// The named endpoints it runs on: `(name, max_migrations, max_syncs)`.
    pub endpoints: Vec<(String, usize, usize)>,
    /// An incremental sync (the job completed before), not a first copy.
    pub sync: bool,
}

impl Footprint {
    /// A job's footprint under the per-host limit and its endpoints' limits (a shard's share
    /// of them, when the daemon runs one shard).
    pub(crate) fn of(
        record: &JobRecord,
        max_connections_per_host: usize,
        named: &std::collections::BTreeMap<String, migrated_core::NamedEndpoint>,
        shard: Option<migrated_core::shard::Shard>,
    ) -> Self {
        let share = |n: usize| shard.map_or(n, |s| s.share(n));
        let mut endpoints: Vec<(String, usize, usize)> = [
            &record.spec.source.endpoint,
            &record.spec.destination.endpoint,
        ]
        .into_iter()
        .flatten()
        .filter_map(|n| named.get(n))
        .map(|e| (e.name.clone(), share(e.max_migrations), share(e.max_syncs)))
        .collect();
        endpoints.dedup();
        Self {
            source: record.spec.source.host.clone(),
            destination: record.spec.destination.host.clone(),
            connections: connections_of(record.spec.limits.connections, max_connections_per_host),
            endpoints,
            sync: record.completed_once,
        }
    }

    fn runs_on(&self, endpoint: &str) -> bool {
        self.endpoints.iter().any(|(n, _, _)| n == endpoint)
    }

    /// Connections to `host` (source and destination may be the same host).
    fn on(&self, host: &str) -> usize {
        let sides = usize::from(self.source == host) + usize::from(self.destination == host);
        sides * self.connections
    }
}

/// Connections a job opens to each of its hosts: its workers (capped so that workers plus
/// the control connection fit a per-host limit, one worker at least) plus the control
/// connection. Without a limit (0) the job's own `connections` stand.
pub(crate) fn connections_of(workers: usize, max_connections_per_host: usize) -> usize {
    let workers = match max_connections_per_host {
        0 => workers.max(1),
        limit => workers.clamp(1, limit.saturating_sub(1).max(1)),
    };
    workers + 1
}

/// A queued job, as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct Queued<'a> {
    pub id: &'a str,
    pub priority: u32,
    pub created: u64,
    pub footprint: Footprint,
    pub schedule: &'a ScheduleSpec,
}

/// What to do with a queued job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// Start it.
    Now(String),
    /// Its schedule window is closed; it opens then (none in the next 8 days: `None`).
    OutsideWindow { id: String, opens: Option<u64> },
}

/// Whether a pass can start anything: fewer than `max_jobs` run. A pass that cannot returns
/// before it looks at a single queued job, so its cost does not grow with the queue.
pub(crate) fn has_free_slot(running: usize, limits: Limits) -> bool {
    running < limits.max_jobs
}

/// Until when a job found outside its window needs no new look: the opening found, or, with
/// none in the 8 days [`ScheduleSpec::next_opening`] searches, a day later. The manager keeps
/// it with the job (until the job's settings change), so a queue of 50,000 jobs waiting for
/// their night is not searched minute by minute on every turn of the loop.
pub(crate) fn closed_until(opens: Option<u64>, now: u64) -> u64 {
    opens.unwrap_or(now + 86_400)
}

/// Whether a queued job is still waiting for the window it was found outside of
/// ([`closed_until`]); such a job is left out of the pass.
pub(crate) fn still_closed(closed_until: Option<u64>, now: u64) -> bool {
    closed_until.is_some_and(|t| now < t)
}

/// Which queued jobs start, given what runs. Jobs that wait for room are not named; jobs
/// outside their window are named once per call, so the manager can say so.
pub(crate) fn starts(
    mut queued: Vec<Queued<'_>>,
    running: &[Footprint],
    limits: Limits,
    now: u64,
) -> Vec<Start> {
    if !has_free_slot(running.len(), limits) {
        return Vec::new();
    }
    queued.sort_by(|a, b| (a.priority, a.created, a.id).cmp(&(b.priority, b.created, b.id)));
    let mut running: Vec<Footprint> = running.to_vec();
    let mut out = Vec::new();
    for job in queued {
        if running.len() >= limits.max_jobs {
            break;
        }
        if !has_room(&job.footprint, &running, limits.max_connections_per_host)
            || !endpoints_have_room(&job.footprint, &running)
        {
            continue;
        }
        if !job.schedule.allows(now) {
            out.push(Start::OutsideWindow {
                id: job.id.to_owned(),
                opens: job.schedule.next_opening(now),
            });
            continue;
        }
        out.push(Start::Now(job.id.to_owned()));
        running.push(job.footprint);
    }
    out
}

/// Whether starting a job keeps every host it touches within the limit. A host nothing runs
/// on always has room.
fn has_room(job: &Footprint, running: &[Footprint], limit: usize) -> bool {
    if limit == 0 {
        return true;
    }
    [&job.source, &job.destination].iter().all(|host| {
        let used: usize = running.iter().map(|r| r.on(host)).sum();
        used == 0 || used + job.on(host) <= limit
    })
}

/// Whether every endpoint the job runs on has a migration slot (and a sync slot, for a sync).
fn endpoints_have_room(job: &Footprint, running: &[Footprint]) -> bool {
    job.endpoints
        .iter()
        .all(|(name, max_migrations, max_syncs)| {
            let on: Vec<&Footprint> = running.iter().filter(|r| r.runs_on(name)).collect();
            on.len() < *max_migrations
                && (!job.sync || on.iter().filter(|r| r.sync).count() < *max_syncs)
        })
}

/// Whether a running job must pause because its window ended.
pub(crate) fn window_ended(schedule: &ScheduleSpec, now: u64) -> bool {
    !schedule.allows(now)
}

/// Whether a finished job's recurring delta is due: it completed, recurs, was not the final
/// delta, still has its credentials, and the interval since it finished has passed.
pub(crate) fn delta_due(record: &JobRecord, now: u64) -> bool {
    matches!(
        record.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    ) && !record.final_delta
        && record.has_credentials()
        && match (record.spec.schedule.sync_interval_hours(), record.finished) {
            (Some(h), Some(f)) => f + (h * 3600.0) as u64 <= now,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrated_core::schedule::WindowSpec;

    const MONDAY: u64 = 1_704_067_200; // 2024-01-01 00:00 UTC

    fn fp(source: &str, destination: &str, connections: usize) -> Footprint {
        Footprint {
            source: source.into(),
            destination: destination.into(),
            connections,
            endpoints: Vec::new(),
            sync: false,
        }
    }

    #[test]
    fn an_endpoint_runs_at_most_its_migrations_and_of_them_its_syncs() {
        let any = ScheduleSpec::default();
        let on_old = |sync: bool| Footprint {
            endpoints: vec![("old".into(), 3, 1)],
            sync,
            ..fp("s", "d", 2)
        };
        let q = vec![
            Queued {
                footprint: on_old(true),
                ..queued("sync-1", 0, 1, &any)
            },
            Queued {
                footprint: on_old(true),
                ..queued("sync-2", 0, 2, &any)
            },
            Queued {
                footprint: on_old(false),
                ..queued("first-1", 0, 3, &any)
            },
            Queued {
                footprint: on_old(false),
                ..queued("first-2", 0, 4, &any)
            },
            Queued {
                footprint: on_old(false),
                ..queued("first-3", 0, 5, &any)
            },
        ];
        // One sync at a time, three migrations in all: sync-2 and first-3 wait.
        assert_eq!(
            started(&starts(q, &[], NO_LIMITS, MONDAY)),
            ["sync-1", "first-1", "first-2"]
        );
    }

    fn queued<'a>(id: &'a str, priority: u32, created: u64, s: &'a ScheduleSpec) -> Queued<'a> {
        Queued {
            id,
            priority,
            created,
            footprint: fp("src", "dst", 2),
            schedule: s,
        }
    }

    fn started(decisions: &[Start]) -> Vec<&str> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Start::Now(id) => Some(id.as_str()),
                Start::OutsideWindow { .. } => None,
            })
            .collect()
    }

    const NO_LIMITS: Limits = Limits {
        max_jobs: 20,
        max_connections_per_host: 0,
    };

    #[test]
    fn lower_priority_numbers_start_first_then_the_oldest() {
        let any = ScheduleSpec::default();
        let q = vec![
            queued("late", 5, 1, &any),
            queued("urgent-new", 1, 9, &any),
            queued("urgent-old", 1, 3, &any),
            queued("normal", 5, 0, &any),
        ];
        let limits = Limits {
            max_jobs: 3,
            ..NO_LIMITS
        };
        assert_eq!(
            started(&starts(q, &[], limits, MONDAY)),
            ["urgent-old", "urgent-new", "normal"]
        );
    }

    #[test]
    fn no_job_starts_while_max_jobs_run() {
        let any = ScheduleSpec::default();
        let limits = Limits {
            max_jobs: 2,
            ..NO_LIMITS
        };
        let running = [fp("a", "b", 2), fp("c", "d", 2)];
        assert!(starts(vec![queued("j", 0, 0, &any)], &running, limits, MONDAY).is_empty());
    }

    #[test]
    fn the_per_host_limit_counts_jobs_started_in_the_same_round() {
        let any = ScheduleSpec::default();
        let limits = Limits {
            max_jobs: 20,
            max_connections_per_host: 8,
        };
        // Each job opens 2 connections to src and 2 to dst: three fit under 8? 2+2+2 = 6,
        // a fourth would make 8, a fifth 10.
        let q = (0..5u64)
            .map(|i| Queued {
                id: ["a", "b", "c", "d", "e"][i as usize],
                priority: 0,
                created: i,
                footprint: fp("src", "dst", 2),
                schedule: &any,
            })
            .collect();
        assert_eq!(
            started(&starts(q, &[], limits, MONDAY)),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn a_job_too_big_for_the_limit_starts_on_idle_hosts_and_others_wait_for_theirs() {
        let any = ScheduleSpec::default();
        let limits = Limits {
            max_jobs: 20,
            max_connections_per_host: 4,
        };
        let mut big = queued("big", 0, 0, &any);
        big.footprint = fp("src", "dst", 9);
        let mut other_host = queued("elsewhere", 0, 1, &any);
        other_host.footprint = fp("src2", "dst2", 2);
        let same_host = queued("same", 0, 2, &any);
        assert_eq!(
            started(&starts(
                vec![big, other_host, same_host],
                &[],
                limits,
                MONDAY
            )),
            ["big", "elsewhere"]
        );
    }

    #[test]
    fn source_and_destination_on_one_host_count_twice() {
        let f = fp("h", "h", 3);
        assert_eq!(f.on("h"), 6);
        assert_eq!(f.on("other"), 0);
        assert!(!has_room(&fp("h", "x", 3), std::slice::from_ref(&f), 8));
        assert!(has_room(&fp("h", "x", 2), &[f], 8));
    }

    #[test]
    fn workers_are_capped_to_fit_the_per_host_limit() {
        assert_eq!(
            connections_of(4, 0),
            5,
            "no limit: the job's own four workers"
        );
        assert_eq!(connections_of(4, 12), 5);
        assert_eq!(
            connections_of(20, 12),
            12,
            "11 workers and the control connection"
        );
        assert_eq!(connections_of(4, 1), 2, "one worker at least");
        assert_eq!(connections_of(0, 12), 2, "one worker at least");
    }

    #[test]
    fn a_pass_with_every_slot_taken_decides_nothing_however_long_the_queue() {
        let window = ScheduleSpec {
            windows: vec![WindowSpec {
                days: vec!["Mon".into()],
                from: "09:00".into(),
                to: "11:00".into(),
            }],
            ..Default::default()
        };
        let limits = Limits {
            max_jobs: 1,
            ..NO_LIMITS
        };
        let names: Vec<String> = (0..1000).map(|i| format!("j{i}")).collect();
        let q: Vec<Queued<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| queued(n, 0, i as u64, &window))
            .collect();
        assert!(!has_free_slot(1, limits));
        assert!(has_free_slot(0, limits));
        // Not even "outside its window" is said: the queue was not looked at.
        assert!(starts(q, &[fp("a", "b", 2)], limits, MONDAY + 8 * 3600).is_empty());
    }

    #[test]
    fn a_job_found_outside_its_window_is_left_out_until_the_window_opens() {
        let window = ScheduleSpec {
            windows: vec![WindowSpec {
                days: vec!["Mon".into()],
                from: "09:00".into(),
                to: "11:00".into(),
            }],
            ..Default::default()
        };
        let at_eight = MONDAY + 8 * 3600;
        let decisions = starts(
            vec![queued("nightly", 0, 0, &window)],
            &[],
            NO_LIMITS,
            at_eight,
        );
        let [Start::OutsideWindow { opens, .. }] = decisions.as_slice() else {
            panic!("{decisions:?}");
        };
        let until = closed_until(*opens, at_eight);
        assert_eq!(until, MONDAY + 9 * 3600);
        assert!(still_closed(Some(until), at_eight + 1800));
        assert!(!still_closed(Some(until), MONDAY + 9 * 3600));
        assert!(
            !still_closed(None, at_eight),
            "a job never looked at is looked at"
        );
        // When it is looked at again, it starts.
        assert_eq!(
            starts(
                vec![queued("nightly", 0, 0, &window)],
                &[],
                NO_LIMITS,
                until
            ),
            [Start::Now("nightly".into())]
        );
        // No window in the 8 days searched: another look a day later.
        assert_eq!(closed_until(None, at_eight), at_eight + 86_400);
    }

    #[test]
    fn a_job_outside_its_window_waits_and_says_when_it_opens() {
        let window = ScheduleSpec {
            windows: vec![WindowSpec {
                days: vec!["Mon".into()],
                from: "09:00".into(),
                to: "11:00".into(),
            }],
            ..Default::default()
        };
        let q = vec![queued("nightly", 0, 0, &window)];
        assert_eq!(
            starts(q.clone(), &[], NO_LIMITS, MONDAY + 8 * 3600),
            [Start::OutsideWindow {
                id: "nightly".into(),
                opens: Some(MONDAY + 9 * 3600)
            }]
        );
        assert_eq!(
            starts(q, &[], NO_LIMITS, MONDAY + 10 * 3600),
            [Start::Now("nightly".into())]
        );
        assert!(window_ended(&window, MONDAY + 11 * 3600 + 1));
        assert!(!window_ended(&window, MONDAY + 10 * 3600));
    }
}
