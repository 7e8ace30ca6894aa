//! The fuzz targets' inputs replayed on stable: every seed (`fuzz/corpus/<target>/`) and every
//! input that once crashed a target (`fuzz/regressions/<target>/`) goes through the target's own
//! body (`fuzz/src/lib.rs`, included below, the very code the fuzzer runs) and must return,
//! without a panic, within the time limit, on a thread with a tokio worker's stack. Fuzzing
//! itself needs nightly: `scripts/fuzz`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/lib.rs"]
mod bodies;

/// Longest an input may take here (a debug build): the fuzzer calls anything over 10 s in a
/// release build a hang.
const LIMIT: Duration = Duration::from_secs(20);

/// The stack of a tokio worker thread, where the daemon parses what it reads: an input that
/// recurses deeper than this would abort the daemon.
const STACK: usize = 2 << 20;

fn inputs(target: &str) -> Vec<PathBuf> {
    files(target, &["corpus", "regressions"])
}

fn seeds(target: &str) -> Vec<PathBuf> {
    files(target, &["corpus"])
}

fn files(target: &str, dirs: &[&str]) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `body` on every input of `target`; the failures are collected so that one run names
/// them all.
fn replay(target: &str, body: fn(&[u8])) {
    assert!(
        !seeds(target).is_empty(),
        "no seeds in fuzz/corpus/{target}/"
    );
    let files = inputs(target);
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable input");
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        std::thread::Builder::new()
            .name(format!("{target} replay"))
            .stack_size(STACK)
            .spawn(move || {
                let outcome = std::panic::catch_unwind(|| body(&data));
                let _ = tx.send(outcome.is_ok());
            })
            .expect("a thread");
        match rx.recv_timeout(LIMIT) {
            Ok(true) => {}
            Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                failures.push(format!("{}: panicked (message above)", file.display()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => failures.push(format!(
                "{}: still running after {:?}",
                file.display(),
                start.elapsed()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs of {target} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn job_file_inputs_are_read_without_panic() {
    replay("job_file", bodies::job_file);
}

#[test]
fn csv_batch_inputs_are_read_without_panic() {
    replay("csv_batch", bodies::csv_batch);
}

#[test]
fn control_frame_inputs_are_read_without_panic() {
    replay("control_frame", bodies::control_frame);
}

#[test]
fn imap_response_inputs_are_read_without_panic() {
    replay("imap_response", bodies::imap_response);
}

#[test]
fn imap_raw_inputs_are_read_without_panic() {
    replay("imap_raw", bodies::imap_raw);
}

/// The seeds are worth starting from: each is a valid input of its kind, read to its end, so
/// the fuzzer mutates job files, frames and replies rather than noise.
#[test]
fn every_seed_is_a_valid_input_read_to_its_end() {
    let text = |f: &PathBuf| std::fs::read_to_string(f).expect("a text seed");
    for f in seeds("job_file") {
        let mut table: toml::Table = toml::from_str(&text(&f)).expect("a TOML seed");
        let spec = if table.remove("batch").is_some() {
            toml::Value::Table(table).try_into::<migrated_core::JobSpec>()
        } else {
            toml::from_str(&text(&f))
        };
        if let Err(e) = spec {
            panic!("{}: {e}", f.display());
        }
    }
    for f in seeds("csv_batch") {
        let parsed = migrated_core::batch::parse_batch(&text(&f));
        let refused = f.to_string_lossy().contains("problems");
        assert_eq!(parsed.is_err(), refused, "{}: {parsed:?}", f.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    for f in seeds("control_frame") {
        let data = std::fs::read(&f).expect("a seed");
        let mut rest = &data[..];
        let replies = f.to_string_lossy().contains("replies");
        let mut frames = 0;
        while !rest.is_empty() {
            let read = rt.block_on(async {
                if replies {
                    migrated_ipc::read_frame::<_, migrated_ipc::Response>(&mut rest)
                        .await
                        .map(drop)
                } else {
                    migrated_ipc::read_frame::<_, migrated_ipc::Request>(&mut rest)
                        .await
                        .map(drop)
                }
            });
            if let Err(e) = read {
                panic!("{}: frame {}: {e}", f.display(), frames + 1);
            }
            frames += 1;
        }
        assert!(frames > 1, "{}", f.display());
    }
    // NAMESPACE replies are read raw, not by imap-proto (which cannot parse them).
    for f in seeds("imap_response")
        .into_iter()
        .filter(|f| !f.to_string_lossy().contains("namespace"))
    {
        let data = std::fs::read(&f).expect("a seed");
        let unread = migrated_imap::session::interpret_replies(&data);
        assert_eq!(unread, 0, "{}: imap-proto stopped there", f.display());
    }
    let listing = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/imap_raw/gmail-listing.txt"),
    )
    .expect("the Gmail listing seed");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let messages = rt
        .block_on(migrated_imap::session::interpret_gmail_listing(&listing))
        .expect("the Gmail listing seed is read");
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].labels,
        [
            "\\Inbox",
            "\\Important",
            "Work/Projects",
            "My Label",
            "ab\"c)",
            "été"
        ]
    );
    assert_eq!(messages[0].meta.message_id.as_deref(), Some("<a@b>"));
}
