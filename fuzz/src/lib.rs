//! The bodies of the fuzz targets: each takes the fuzzer's bytes and runs them through the code
//! that meets that input in production. A body must return for every input (whatever the
//! outcome, an error is fine) in bounded time and memory; a panic, an abort, an exhausted stack
//! or a hang is a bug.
//!
//! The fuzz targets (`fuzz/fuzz_targets/*.rs`, nightly, cargo-fuzz) call these functions, and
//! the stable replay test (`tests/tests/suite/fuzz_regressions.rs`) includes this very file to
//! run every seed and every saved crash input through them, so the two cannot drift apart. Only
//! the crates under test, `toml`, `serde_json`, `rmp-serde` and `tokio` may be used here:
//! both packages depend on exactly those.

use std::future::Future;

use migrated_core::batch::parse_batch;
use migrated_core::folder::{FolderInfo, Namespace, SpecialUse};
use migrated_core::{JobSpec, MappingRules, map_folders};
use migrated_ipc::{Request, Response, read_frame};

/// A fixed unix time (Monday 2024-01-01 00:00 UTC) at which schedules are evaluated, so a run
/// does not depend on the clock.
const NOW: u64 = 1_704_067_200;

/// A job file as the daemon reads a drop-in (`daemon/migrated/src/dropin.rs`: a TOML table
/// first, for its `batch` key, then the spec) and as `migratectl` and `migrated migrate` read
/// one (the spec straight from the text); then every check the daemon makes before it stores a
/// job, and the round trips a job takes: JSON on the control socket, MessagePack in the store.
pub fn job_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = toml::from_str::<JobSpec>(text) {
        check_spec(&spec);
    }
    if let Ok(mut table) = toml::from_str::<toml::Table>(text)
        && table.remove("batch").is_some()
        && let Ok(spec) = toml::Value::Table(table).try_into::<JobSpec>()
    {
        check_spec(&spec);
    }
}

/// What the daemon checks and computes from a spec without a network: the schedule, tags and
/// folder rules (applied to a typical folder list), then the spec's round trips.
fn check_spec(spec: &JobSpec) {
    if spec.schedule.validate().is_ok() {
        let _ = spec.schedule.allows(NOW);
        let _ = spec.schedule.next_opening(NOW);
    }
    for tag in &spec.tags {
        let _ = migrated_core::spec::check_tag(tag);
    }
    let renames: Vec<(String, String)> = spec
        .folders
        .rename
        .iter()
        .map(|r| (r.from.clone(), r.to.clone()))
        .collect();
    if let Ok(rules) = MappingRules::compile(&spec.folders.include, &spec.folders.exclude, &renames)
    {
        let (source, destination) = sample_folders();
        let ns = Namespace {
            prefix: "INBOX.".into(),
            delimiter: '.',
        };
        let _ = map_folders(&source, &ns, &destination, &Namespace::default(), &rules);
    }
    // migratectl sends the spec to the daemon as JSON; the daemon stores it as MessagePack. A
    // spec accepted once must come back from both, or the job is lost at the next restart.
    let json = serde_json::to_vec(spec).expect("a parsed job spec serializes to JSON");
    if let Err(e) = serde_json::from_slice::<JobSpec>(&json) {
        panic!(
            "a job spec does not survive JSON: {e}: {}",
            String::from_utf8_lossy(&json)
        );
    }
    let packed =
        rmp_serde::to_vec_named(spec).expect("a parsed job spec serializes to MessagePack");
    if let Err(e) = rmp_serde::from_slice::<JobSpec>(&packed) {
        panic!("a job spec does not survive MessagePack: {e}");
    }
}

/// Folders of a Courier-style source and a plain destination, for the folder rules.
fn sample_folders() -> (Vec<FolderInfo>, Vec<FolderInfo>) {
    let folder = |name: &str, special_use| FolderInfo {
        name: name.into(),
        delimiter: Some('.'),
        no_select: false,
        special_use,
        subscribed: true,
    };
    let source = vec![
        folder("INBOX", None),
        folder("INBOX.Sent", Some(SpecialUse::Sent)),
        folder("INBOX.Trash", Some(SpecialUse::Trash)),
        folder("INBOX.Projects", None),
        folder("INBOX.Projects.2019", None),
        folder("INBOX.Gesendete Objekte", None),
        folder("INBOX.a/b&c", None),
    ];
    let destination = vec![folder("Sent Items", Some(SpecialUse::Sent))];
    (source, destination)
}

/// A CSV batch (`migratectl batch create`, a drop-in's `batch = "file.csv"`): the parser and
/// validator, and every problem's message as the administrator reads it.
pub fn csv_batch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_batch(text);
}

fn check_batch(text: &str) {
    match parse_batch(text) {
        Ok(rows) => {
            assert!(
                rows.len() <= migrated_core::batch::MAX_ROWS,
                "a batch of more rows than allowed was accepted"
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "a refused batch names no problem");
            for p in &problems {
                let _ = p.to_string();
            }
        }
    }
}

/// Bytes on the control socket, read as the daemon reads requests and as a client reads
/// replies (4-byte length, JSON), frame after frame until the first error; each request's job
/// spec and CSV go through the same checks as a job file's and a batch file's, each reply
/// through the text a client prints.
pub fn control_frame(data: &[u8]) {
    block_on(async {
        let mut requests = data;
        while let Ok(request) = read_frame::<_, Request>(&mut requests).await {
            check_request(&request);
        }
        let mut replies = data;
        while let Ok(response) = read_frame::<_, Response>(&mut replies).await {
            check_response(&response);
        }
    });
}

fn check_request(request: &Request) {
    match request {
        Request::Create { spec } | Request::Test { spec } => check_spec(spec),
        Request::CreateBatch { template, csv, .. } => {
            check_spec(template);
            check_batch(csv);
        }
        Request::SetTags { add, remove, .. } => {
            for tag in add.iter().chain(remove) {
                let _ = migrated_core::spec::check_tag(tag);
            }
        }
        _ => {}
    }
    let json = serde_json::to_vec(request).expect("a decoded request serializes");
    if let Err(e) = serde_json::from_slice::<Request>(&json) {
        panic!(
            "a request does not survive JSON: {e}: {}",
            String::from_utf8_lossy(&json)
        );
    }
}

fn check_response(response: &Response) {
    match response {
        Response::Job { job } => {
            let _ = migrated_ipc::text::folder_table(&job.folders);
            let _ = migrated_ipc::text::clock(job.summary.updated);
        }
        Response::Events { events } | Response::Update { events, .. } => {
            for e in events {
                let _ = migrated_ipc::text::clock(e.time);
            }
        }
        _ => {}
    }
    let json = serde_json::to_vec(response).expect("a decoded reply serializes");
    if let Err(e) = serde_json::from_slice::<Response>(&json) {
        panic!(
            "a reply does not survive JSON: {e}: {}",
            String::from_utf8_lossy(&json)
        );
    }
}

/// Bytes from an IMAP server, parsed by imap-proto as async-imap parses them, reply after
/// reply, and each reply interpreted the way the session interprets it (capabilities, LIST,
/// SELECT, STATUS, FETCH, the tagged completion's APPENDUID/COPYUID, NAMESPACE).
pub fn imap_response(data: &[u8]) {
    let _ = migrated_imap::session::interpret_replies(data);
}

/// Bytes from an IMAP server read on the raw stream (the Gmail listing: line and literal caps,
/// the value parser, labels in modified UTF-7), and the value parser on its own.
pub fn imap_raw(data: &[u8]) {
    let _ = migrated_imap::raw::parse_values(data);
    let _ = block_on(migrated_imap::session::interpret_gmail_listing(data));
}

/// Runs a future on this thread's runtime (current-thread, with timers: the raw IMAP reading
/// has a timeout on every read). Reading from a byte slice never waits.
fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}
