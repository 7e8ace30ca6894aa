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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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

/// What of a job its footprint is made of: its hosts, its workers, the endpoints it names and
/// whether it is a sync. Jobs of one class wait for the same room, so the queue keeps them in
/// one lane ([`Lanes`]); the endpoints' limits are looked up when a pass runs, so an endpoint
/// edited moves no job from its lane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Class {
    source: String,
    destination: String,
    workers: usize,
    endpoints: Vec<String>,
    sync: bool,
}

impl Class {
    pub(crate) fn of(record: &JobRecord) -> Self {
        Self {
            source: record.spec.source.host.clone(),
            destination: record.spec.destination.host.clone(),
            workers: record.spec.limits.connections,
            endpoints: [
                &record.spec.source.endpoint,
                &record.spec.destination.endpoint,
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
            sync: record.completed_once,
        }
    }
}

impl Footprint {
    /// A job's footprint under the per-host limit and its endpoints' limits (a shard's share
    /// of them, when the daemon runs one shard).
    pub(crate) fn of(
        record: &JobRecord,
        max_connections_per_host: usize,
        named: &BTreeMap<String, migrated_core::NamedEndpoint>,
        shard: Option<migrated_core::shard::Shard>,
    ) -> Self {
        Self::of_class(&Class::of(record), max_connections_per_host, named, shard)
    }

    /// The footprint of every job of a class.
    pub(crate) fn of_class(
        class: &Class,
        max_connections_per_host: usize,
        named: &BTreeMap<String, migrated_core::NamedEndpoint>,
        shard: Option<migrated_core::shard::Shard>,
    ) -> Self {
        let share = |n: usize| shard.map_or(n, |s| s.share(n));
        let mut endpoints: Vec<(String, usize, usize)> = class
            .endpoints
            .iter()
            .filter_map(|n| named.get(n))
            .map(|e| (e.name.clone(), share(e.max_migrations), share(e.max_syncs)))
            .collect();
        endpoints.dedup();
        Self {
            source: class.source.clone(),
            destination: class.destination.clone(),
            connections: connections_of(class.workers, max_connections_per_host),
            endpoints,
            sync: class.sync,
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

/// A queued job's place in the queue: lower priority numbers first, then the oldest, then by
/// id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    pub priority: u32,
    pub created: u64,
    pub id: String,
}

/// The queued jobs that may start, in lanes of one key each (a [`Class`], in the daemon): jobs
/// of one lane have one footprint, so once a lane's first job finds no room in a pass, none of
/// the others would, and the pass leaves the lane. A pass costs the lanes plus the jobs it
/// starts or finds outside their window, however long the lanes are.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lanes<K> {
    lanes: BTreeMap<K, BTreeSet<Rank>>,
}

impl<K> Default for Lanes<K> {
    fn default() -> Self {
        Self {
            lanes: BTreeMap::new(),
        }
    }
}

impl<K: Ord> Lanes<K> {
    pub(crate) fn insert(&mut self, key: K, rank: Rank) {
        self.lanes.entry(key).or_default().insert(rank);
    }

    pub(crate) fn remove(&mut self, key: &K, rank: &Rank) {
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.remove(rank);
            if lane.is_empty() {
                self.lanes.remove(key);
            }
        }
    }

    /// The jobs in all lanes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lanes.values().map(BTreeSet::len).sum()
    }
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
/// it with the job (until the job's settings change) and leaves the job out of the lanes until
/// then, so a queue of 50,000 jobs waiting for their night is not searched minute by minute
/// on every turn of the loop.
pub(crate) fn closed_until(opens: Option<u64>, now: u64) -> u64 {
    opens.unwrap_or(now + 86_400)
}

/// Which queued jobs start, given what runs: in queue order over all lanes ([`Rank`]), while a
/// slot is free, each job whose hosts and endpoints have room and whose schedule window is
/// open (`window`: `Ok`, or `Err` with when it opens). Jobs that wait for room are not named;
/// jobs outside their window are named once per call, so the manager can say so (and leave
/// them out of the lanes until then, see [`closed_until`]).
pub(crate) fn starts<K: Ord>(
    lanes: &Lanes<K>,
    running: &[Footprint],
    limits: Limits,
    footprint: impl Fn(&K) -> Footprint,
    window: impl Fn(&str) -> Result<(), Option<u64>>,
) -> Vec<Start> {
    if !has_free_slot(running.len(), limits) {
        return Vec::new();
    }
    let mut running: Vec<Footprint> = running.to_vec();
    // Each lane's footprint and the rest of its jobs; the heap holds each lane's next job.
    let mut open: Vec<(Footprint, std::collections::btree_set::Iter<'_, Rank>)> = lanes
        .lanes
        .iter()
        .map(|(key, jobs)| (footprint(key), jobs.iter()))
        .collect();
    let mut heads = BinaryHeap::new();
    for (lane, (_, jobs)) in open.iter_mut().enumerate() {
        if let Some(first) = jobs.next() {
            heads.push(Reverse((first, lane)));
        }
    }
    let mut out = Vec::new();
    while let Some(Reverse((job, lane))) = heads.pop() {
        if running.len() >= limits.max_jobs {
            break;
        }
        let (footprint, rest) = &mut open[lane];
        // Room only shrinks as the pass starts jobs: the lane is done for this pass.
        if !has_room(footprint, &running, limits.max_connections_per_host)
            || !endpoints_have_room(footprint, &running)
        {
            continue;
        }
        match window(&job.id) {
            Err(opens) => out.push(Start::OutsideWindow {
                id: job.id.clone(),
                opens,
            }),
            Ok(()) => {
                out.push(Start::Now(job.id.clone()));
                running.push(footprint.clone());
            }
        }
        if let Some(next) = rest.next() {
            heads.push(Reverse((next, lane)));
        }
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

/// When a finished job's recurring delta is due, if it recurs: it completed, was not the final
/// delta, still has its credentials, and it is the interval after it finished.
pub(crate) fn delta_due_at(record: &JobRecord) -> Option<u64> {
    let recurs = matches!(
        record.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    ) && !record.final_delta
        && record.has_credentials();
    match (
        recurs,
        record.spec.schedule.sync_interval_hours(),
        record.finished,
    ) {
        (true, Some(h), Some(f)) => Some(f + (h * 3600.0) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
