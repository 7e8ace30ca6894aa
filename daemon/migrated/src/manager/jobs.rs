//! The jobs the manager owns, and the indexes its turns read instead of walking every job: by
//! name (`Status NAME`), by creation (a `List` page), the runs in progress, the scheduler's
//! lanes of queued jobs and the jobs waiting for their schedule window, the recurring deltas by
//! when they are due, the finished jobs by when they finished (retention) and the count of jobs
//! in each status (the status line). A job is changed through [`Jobs::get_mut`], which notes
//! it; the indexes catch up with the jobs noted before any index is read ([`Jobs::fresh`]), so
//! they cannot drift from the jobs, and a turn of the loop costs what it touches, not what is
//! queued.

use std::collections::{BTreeSet, HashMap, HashSet};

use migrated_core::JobStatus;

use super::Entry;
use crate::scheduler::{self, Class, Lanes, Rank};

/// Where a queued job waits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Queue {
    /// In its class's lane, with its priority.
    Ready(Class, u32),
    /// Found outside its schedule window: left out of the lanes until then (unix time).
    Closed(u64),
}

/// What the indexes hold of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Keys {
    name: String,
    batch: Option<String>,
    /// In a final status ([`JobStatus::is_finished`]).
    done: bool,
    created: u64,
    status: JobStatus,
    running: bool,
    queue: Option<Queue>,
    /// When its recurring delta is due ([`scheduler::delta_due_at`]).
    delta_due: Option<u64>,
    /// When it finished, if retention may delete it (no run, no syncs pending).
    finished: Option<u64>,
}

impl Keys {
    fn of(e: &Entry) -> Self {
        let r = &e.record;
        let running = e.stop.is_some();
        let queue =
            (r.status == JobStatus::Queued && !running).then(|| match e.window_closed_until {
                Some(t) => Queue::Closed(t),
                None => Queue::Ready(Class::of(r), r.spec.priority),
            });
        Self {
            name: r.spec.name.clone(),
            batch: r.batch.clone(),
            done: r.status.is_finished(),
            created: r.created,
            status: r.status,
            running,
            queue,
            delta_due: scheduler::delta_due_at(r),
            finished: r.finished.filter(|_| !running && !r.syncs_pending()),
        }
    }
}

struct Slot {
    entry: Entry,
    /// What the indexes hold of it.
    keys: Keys,
}

#[derive(Debug, Default, PartialEq)]
struct Index {
    by_name: HashMap<String, BTreeSet<String>>,
    by_batch: HashMap<String, BTreeSet<String>>,
    /// Members of each batch not finished yet (batches with none are left out).
    batch_open: HashMap<String, usize>,
    by_created: BTreeSet<(u64, String)>,
    running: BTreeSet<String>,
    ready: Lanes<Class>,
    closed: BTreeSet<(u64, String)>,
    deltas: BTreeSet<(u64, String)>,
    finished: BTreeSet<(u64, String)>,
    statuses: HashMap<JobStatus, usize>,
}

impl Index {
    fn add(&mut self, id: &str, k: &Keys) {
        self.by_name
            .entry(k.name.clone())
            .or_default()
            .insert(id.to_owned());
        if let Some(batch) = &k.batch {
            self.by_batch
                .entry(batch.clone())
                .or_default()
                .insert(id.to_owned());
            if !k.done {
                *self.batch_open.entry(batch.clone()).or_default() += 1;
            }
        }
        self.by_created.insert((k.created, id.to_owned()));
        if k.running {
            self.running.insert(id.to_owned());
        }
        match &k.queue {
            Some(Queue::Ready(class, priority)) => self.ready.insert(
                class.clone(),
                Rank {
                    priority: *priority,
                    created: k.created,
                    id: id.to_owned(),
                },
            ),
            Some(Queue::Closed(t)) => {
                self.closed.insert((*t, id.to_owned()));
            }
            None => {}
        }
        if let Some(t) = k.delta_due {
            self.deltas.insert((t, id.to_owned()));
        }
        if let Some(t) = k.finished {
            self.finished.insert((t, id.to_owned()));
        }
        *self.statuses.entry(k.status).or_default() += 1;
    }

    fn remove(&mut self, id: &str, k: &Keys) {
        if let Some(ids) = self.by_name.get_mut(&k.name) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_name.remove(&k.name);
            }
        }
        if let Some(batch) = &k.batch {
            if let Some(ids) = self.by_batch.get_mut(batch) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_batch.remove(batch);
                }
            }
            if !k.done
                && let Some(n) = self.batch_open.get_mut(batch)
            {
                *n -= 1;
                if *n == 0 {
                    self.batch_open.remove(batch);
                }
            }
        }
        let key = |t: u64| (t, id.to_owned());
        self.by_created.remove(&key(k.created));
        self.running.remove(id);
        match &k.queue {
            Some(Queue::Ready(class, priority)) => self.ready.remove(
                class,
                &Rank {
                    priority: *priority,
                    created: k.created,
                    id: id.to_owned(),
                },
            ),
            Some(Queue::Closed(t)) => {
                self.closed.remove(&key(*t));
            }
            None => {}
        }
        if let Some(t) = k.delta_due {
            self.deltas.remove(&key(t));
        }
        if let Some(t) = k.finished {
            self.finished.remove(&key(t));
        }
        if let Some(n) = self.statuses.get_mut(&k.status) {
            *n -= 1;
            if *n == 0 {
                self.statuses.remove(&k.status);
            }
        }
    }
}

/// The jobs, by id, with their indexes.
#[derive(Default)]
pub(super) struct Jobs {
    slots: HashMap<String, Slot>,
    index: Index,
    /// Jobs handed out by [`Jobs::get_mut`] since the indexes last caught up (each once: a run's
    /// progress changes its job many times between two reads of the indexes).
    changed: HashSet<String>,
}

impl Jobs {
    pub(super) fn insert(&mut self, id: String, entry: Entry) {
        let keys = Keys::of(&entry);
        self.index.add(&id, &keys);
        if let Some(old) = self.slots.insert(id.clone(), Slot { entry, keys }) {
            self.index.remove(&id, &old.keys);
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Entry> {
        let slot = self.slots.remove(id)?;
        self.index.remove(id, &slot.keys);
        Some(slot.entry)
    }

    pub(super) fn get(&self, id: &str) -> Option<&Entry> {
        self.slots.get(id).map(|s| &s.entry)
    }

    /// The job to change; the indexes follow the change before they are next read.
    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(id)?;
        if !self.changed.contains(id) {
            self.changed.insert(id.to_owned());
        }
        Some(&mut slot.entry)
    }

    /// Every job, to change (the indexes follow).
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.changed.extend(self.slots.keys().cloned());
        self.slots.values_mut().map(|s| &mut s.entry)
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.slots.iter().map(|(id, s)| (id, &s.entry))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.slots.values().map(|s| &s.entry)
    }

    /// The indexes, caught up with every change.
    pub(super) fn fresh(&mut self) -> Fresh<'_> {
        for id in std::mem::take(&mut self.changed) {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let keys = Keys::of(&slot.entry);
            if keys != slot.keys {
                self.index.remove(&id, &slot.keys);
                self.index.add(&id, &keys);
                slot.keys = keys;
            }
        }
        Fresh(self)
    }
}

impl std::ops::Index<&str> for Jobs {
    type Output = Entry;

    fn index(&self, id: &str) -> &Entry {
        &self.slots[id].entry
    }
}

/// The jobs with their indexes up to date: what [`Jobs::fresh`] returns.
pub(super) struct Fresh<'a>(&'a Jobs);

impl<'a> Fresh<'a> {
    pub(super) fn jobs(&self) -> &'a Jobs {
        self.0
    }

    /// The jobs with this name.
    pub(super) fn named(&self, name: &str) -> Vec<&'a str> {
        self.0
            .index
            .by_name
            .get(name)
            .map(|ids| ids.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The jobs of a batch, by id.
    pub(super) fn batch(&self, name: &str) -> Vec<&'a str> {
        self.0
            .index
            .by_batch
            .get(name)
            .map(|ids| ids.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether a batch of this name has jobs.
    pub(super) fn has_batch(&self, name: &str) -> bool {
        self.0.index.by_batch.contains_key(name)
    }

    /// How many of a batch's jobs are not finished.
    pub(super) fn batch_unfinished(&self, name: &str) -> usize {
        self.0.index.batch_open.get(name).copied().unwrap_or(0)
    }

    /// The jobs with a run in progress.
    pub(super) fn running(&self) -> impl Iterator<Item = &'a str> {
        self.0.index.running.iter().map(String::as_str)
    }

    pub(super) fn running_count(&self) -> usize {
        self.0.index.running.len()
    }

    /// Every job, oldest first (by creation time, then id).
    pub(super) fn oldest_first(&self) -> impl Iterator<Item = (u64, &'a str)> {
        self.0
            .index
            .by_created
            .iter()
            .map(|(t, id)| (*t, id.as_str()))
    }

    /// The jobs created after `(created, id)`, oldest first.
    pub(super) fn after(&self, cursor: (u64, &str)) -> impl Iterator<Item = (u64, &'a str)> {
        use std::ops::Bound;
        let from = (cursor.0, cursor.1.to_owned());
        self.0
            .index
            .by_created
            .range((Bound::Excluded(from), Bound::Unbounded))
            .map(|(t, id)| (*t, id.as_str()))
    }

    /// The queued jobs that may start, in their lanes.
    pub(super) fn lanes(&self) -> &'a Lanes<Class> {
        &self.0.index.ready
    }

    /// Queued jobs found outside their window whose wait is over at `now`.
    pub(super) fn reopened(&self, now: u64) -> Vec<String> {
        self.0
            .index
            .closed
            .range(..(now + 1, String::new()))
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Jobs whose recurring delta is due at `now`.
    pub(super) fn deltas_due(&self, now: u64) -> Vec<String> {
        self.0
            .index
            .deltas
            .range(..(now + 1, String::new()))
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Jobs retention may delete that finished at `until` or before.
    pub(super) fn finished_by(&self, until: u64) -> impl Iterator<Item = (&'a str, &'a Entry)> {
        self.0
            .index
            .finished
            .range(..(until.saturating_add(1), String::new()))
            .map(|(_, id)| (id.as_str(), &self.0.slots[id].entry))
    }

    /// Jobs in this status.
    pub(super) fn count(&self, status: JobStatus) -> usize {
        self.0.index.statuses.get(&status).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::JobRecord;

    /// A job record of the previous release's format (see `record.rs`), made current.
    fn record(i: u64) -> JobRecord {
        let mut r: JobRecord =
            rmp_serde::from_slice(include_bytes!("../testdata/job-record-v0.msgpack")).unwrap();
        r.upgrade().unwrap();
        r.id = format!("j{i:04}");
        r.spec.name = format!("mailbox-{}", i % 7);
        r.created = 1000 + i % 13;
        r.status = JobStatus::Queued;
        r.finished = None;
        r.batch = (!i.is_multiple_of(3)).then(|| format!("batch-{}", i % 2));
        r
    }

    /// The indexes as they would be built from the jobs as they are now.
    fn rebuilt(jobs: &Jobs) -> Index {
        let mut index = Index::default();
        for (id, slot) in &jobs.slots {
            index.add(id, &Keys::of(&slot.entry));
        }
        index
    }

    /// A small deterministic generator (xorshift), so the sequence of changes is the same on
    /// every run.
    struct Steps(u64);

    impl Steps {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn the_indexes_follow_every_change_made_through_the_jobs() {
        let mut jobs = Jobs::default();
        let mut steps = Steps(0x9e37_79b9_7f4a_7c15);
        let statuses = JobStatus::ALL;
        let mut next_id = 0;
        for _ in 0..2000 {
            match steps.next(10) {
                0 => {
                    jobs.insert(format!("j{next_id:04}"), Entry::new(record(next_id)));
                    next_id += 1;
                }
                1 => {
                    let id = format!("j{:04}", steps.next(next_id.max(1)));
                    jobs.remove(&id);
                }
                _ => {
                    let id = format!("j{:04}", steps.next(next_id.max(1)));
                    let change = steps.next(9);
                    let value = steps.next(40);
                    let Some(e) = jobs.get_mut(&id) else {
                        continue;
                    };
                    match change {
                        0 => e.record.status = statuses[value as usize % statuses.len()],
                        1 => {
                            e.stop = value
                                .is_multiple_of(2)
                                .then(migrated_engine::StopSignal::new);
                        }
                        2 => {
                            e.window_closed_until = value.is_multiple_of(2).then_some(2000 + value)
                        }
                        3 => e.record.spec.priority = value as u32 % 3,
                        4 => e.record.finished = value.is_multiple_of(2).then_some(3000 + value),
                        5 => e.record.spec.name = format!("mailbox-{}", value % 7),
                        6 => e.record.spec.source.host = format!("host-{}", value % 3),
                        7 => e.record.batch = value.is_multiple_of(3).then(|| "batch-9".into()),
                        _ => e.record.final_delta = value.is_multiple_of(2),
                    }
                }
            }
            if steps.next(3) == 0 {
                jobs.fresh();
                assert_eq!(jobs.index, rebuilt(&jobs));
            }
        }
        jobs.fresh();
        assert_eq!(jobs.index, rebuilt(&jobs));
        assert!(jobs.index.ready.len() > 0, "the sequence left jobs queued");
        assert!(!jobs.index.running.is_empty(), "the sequence left runs");
        assert!(
            !jobs.index.batch_open.is_empty(),
            "the sequence left batches open"
        );
    }

    #[test]
    fn a_name_finds_its_jobs_and_a_page_starts_after_its_cursor() {
        let mut jobs = Jobs::default();
        for i in 0..20 {
            jobs.insert(format!("j{i:04}"), Entry::new(record(i)));
        }
        let fresh = jobs.fresh();
        assert_eq!(fresh.named("mailbox-3"), ["j0003", "j0010", "j0017"]);
        assert!(fresh.named("nobody").is_empty());
        let all: Vec<(u64, &str)> = fresh.oldest_first().collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(all, sorted, "oldest first, then by id");
        let page: Vec<(u64, &str)> = fresh.after(all[4]).take(3).collect();
        assert_eq!(page, all[5..8]);
        assert_eq!(fresh.count(JobStatus::Queued), 20);
        assert_eq!(fresh.lanes().len(), 20);
        // Found outside its window until 5000: out of the lanes, back at 5000, not before.
        jobs.get_mut("j0004").unwrap().window_closed_until = Some(5000);
        let fresh = jobs.fresh();
        assert_eq!(fresh.lanes().len(), 19);
        for _ in 0..1000 {
            jobs.get_mut("j0005").unwrap().record.run.items_done += 1;
        }
        assert_eq!(
            jobs.changed.len(),
            1,
            "a job changed many times is noted once"
        );
        let fresh = jobs.fresh();
        assert!(fresh.reopened(4999).is_empty());
        assert_eq!(fresh.reopened(5000), ["j0004"]);
    }
}
