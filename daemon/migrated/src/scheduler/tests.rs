//! Unit tests of [`super`].

use super::*;
use migrated_core::schedule::WindowSpec;

/// A queued job, as a test gives it.
#[derive(Debug, Clone)]
struct Queued<'a> {
    id: &'a str,
    priority: u32,
    created: u64,
    footprint: Footprint,
    schedule: &'a ScheduleSpec,
}

/// The pass over these jobs, laned by footprint as the daemon lanes them by class.
fn starts(queued: Vec<Queued<'_>>, running: &[Footprint], limits: Limits, now: u64) -> Vec<Start> {
    let mut lanes = Lanes::default();
    let mut windows = std::collections::HashMap::new();
    for q in queued {
        windows.insert(q.id, q.schedule);
        let rank = Rank {
            priority: q.priority,
            created: q.created,
            id: q.id.to_owned(),
        };
        lanes.insert(q.footprint, rank);
    }
    super::starts(&lanes, running, limits, Clone::clone, |id| {
        let s = windows[id];
        if s.allows(now) {
            Ok(())
        } else {
            Err(s.next_opening(now))
        }
    })
}

#[test]
fn a_pass_looks_at_one_job_of_a_lane_with_no_room_however_long_the_lane() {
    let limits = Limits {
        max_jobs: 4,
        max_connections_per_host: 8,
    };
    let mut lanes = Lanes::default();
    for i in 0..50_000u64 {
        let rank = Rank {
            priority: 0,
            created: i,
            id: format!("j{i:05}"),
        };
        lanes.insert(fp("src", "dst", 4), rank);
    }
    let other = Rank {
        priority: 9,
        created: 0,
        id: "elsewhere".into(),
    };
    lanes.insert(fp("src2", "dst2", 2), other);
    assert_eq!(lanes.len(), 50_001);
    let looked = std::cell::Cell::new(0);
    let window = |_: &str| {
        looked.set(looked.get() + 1);
        Ok(())
    };
    // One job runs on src with 4 connections: the next would make 8, the one after 12.
    let running = [fp("src", "x", 4)];
    let decisions = super::starts(&lanes, &running, limits, Clone::clone, window);
    assert_eq!(started(&decisions), ["j00000", "elsewhere"]);
    assert_eq!(
        looked.get(),
        2,
        "the full lane was left after its first job"
    );
}

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
