//! `migrated migrate --job FILE`: one job in the foreground, its progress on stderr and its
//! summary on stdout, with its own store; no daemon, no control API.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use migrated_engine::{Engine, Event, Summary};
use migrated_store::{Store, StoreKey};

use crate::job::{self, EndpointSpecExt, JobSpecExt};

/// Runs the job file `job` against the store directory `store` (its key in `key_file`, or
/// beside the store): exit code 0 when everything arrived, 2 when a message or folder failed.
pub(crate) async fn migrate(
    job: &Path,
    store: PathBuf,
    key_file: Option<PathBuf>,
    quiet: bool,
    timings: bool,
    plugins_dir: Option<&Path>,
) -> anyhow::Result<std::process::ExitCode> {
    let file = migrated_core::JobSpec::load(job)?;
    let place = format!("job file {}", job.display());
    let config = file.copy_config(&place)?;
    let plugins = crate::load_plugins(plugins_dir);
    let source = job::plugin_source(&file, &plugins, &place, job::Credentials::Needed)?;
    let destination = file.destination.endpoint(&place, "destination")?;
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create store directory {}", store.display()))?;
    let key_file = key_file.unwrap_or_else(|| {
        let mut p = store.clone().into_os_string();
        p.push(".key");
        PathBuf::from(p)
    });
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let key = StoreKey::load(credentials.as_deref(), &key_file)?;
    let store = tokio::task::spawn_blocking(move || Store::open(&store, key)).await??;
    let observer = progress_printer(quiet);
    let destination = migrated_imap::ImapDestination::new(destination);
    let engine = Engine::new(source, destination, store, config, observer);
    let summary = engine.run().await?;
    print_summary(&summary);
    if timings {
        println!(
            "timings: {}",
            migrated_engine::timings::line(&summary.timings)
        );
    }
    Ok(
        if summary.failed.is_empty() && summary.per_folder.iter().all(|f| f.error.is_none()) {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::from(2)
        },
    )
}

/// Progress lines on stderr, at most one per second plus every phase change.
fn progress_printer(quiet: bool) -> migrated_engine::Observer {
    struct State {
        items: u64,
        bytes: u64,
        last: Option<Instant>,
    }
    let state = Mutex::new(State {
        items: 0,
        bytes: 0,
        last: None,
    });
    Arc::new(move |event| {
        if quiet {
            return;
        }
        let Ok(mut s) = state.lock() else { return };
        match event {
            Event::Phase(p) => eprintln!("{}", p.label()),
            Event::Totals {
                items,
                bytes,
                folders,
            } => {
                s.items = items;
                s.bytes = bytes;
                eprintln!(
                    "  {folders} folders; {items} messages ({:.1} MB) to copy",
                    bytes as f64 / 1e6
                );
            }
            Event::Progress {
                folder,
                items_done,
                bytes_done,
            } => {
                if s.last.is_none_or(|t| t.elapsed().as_secs() >= 1) || items_done == s.items {
                    s.last = Some(Instant::now());
                    let pct = if s.items == 0 {
                        100.0
                    } else {
                        items_done as f64 * 100.0 / s.items as f64
                    };
                    eprintln!(
                        "  {items_done}/{} messages, {:.1}/{:.1} MB ({pct:.0}%), in {folder}",
                        s.items,
                        bytes_done as f64 / 1e6,
                        s.bytes as f64 / 1e6
                    );
                }
            }
            Event::Excluded(i) => eprintln!(
                "  excluded: {} UID {} ({} bytes, Message-ID {}): {}",
                i.folder,
                i.uid,
                i.size,
                i.message_id.as_deref().unwrap_or("none"),
                i.reason
            ),
            Event::Failed(i) => eprintln!("  failed: {} UID {}: {}", i.folder, i.uid, i.reason),
            Event::Throttled { delay, reason } => {
                eprintln!(
                    "  throttled by the server for {:.1} s: {reason}",
                    delay.as_secs_f64()
                )
            }
            Event::Retrying { error, delay } => {
                eprintln!("  retrying in {:.1} s: {error}", delay.as_secs_f64())
            }
            Event::FolderDone(_) | Event::Connection(..) => {}
        }
    })
}

fn print_summary(s: &Summary) {
    print!("{}", migrated_ipc::text::folder_table(&s.per_folder));
    for (name, reason) in &s.skipped_folders {
        println!("skipped {name}: {reason}");
    }
    for i in &s.excluded {
        println!(
            "excluded {} UID {} {} bytes Message-ID {}: {}",
            i.folder,
            i.uid,
            i.size,
            i.message_id.as_deref().unwrap_or("none"),
            i.reason
        );
    }
    for i in &s.failed {
        println!(
            "failed {} UID {} {} bytes: {}",
            i.folder, i.uid, i.size, i.reason
        );
    }
    for r in s.removed.iter().filter(|r| !r.from_source()) {
        println!(
            "removed {} UID {}: expunged on the source: its copy (UID {} in {}) was removed from the destination (sync_deletions)",
            r.folder, r.uid, r.dest_uid, r.destination
        );
    }
    let listed = s.removed.iter().filter(|r| !r.from_source()).count() as u64;
    let counted: u64 = s.per_folder.iter().map(|f| f.removed).sum();
    if counted > listed {
        println!(
            "... and {} more removed (the first {} of each folder are listed)",
            counted - listed,
            migrated_core::REMOVED_LISTED_PER_FOLDER
        );
    }
    if s.source_removed > 0 {
        println!(
            "{} source messages marked deleted or removed after their copies were verified (source_after_copy)",
            s.source_removed
        );
    }
    println!(
        "{} folders, {} messages copied ({:.1} MB), {} already there, {} flag changes, {} excluded, {} failed, in {:.1} s ({:.0} messages/s, {:.1} MB/s)",
        s.folders,
        s.copied,
        s.bytes as f64 / 1e6,
        s.already_copied,
        s.flags_updated,
        s.excluded.len(),
        s.failed.len(),
        s.duration.as_secs_f64(),
        s.messages_per_second(),
        s.megabytes_per_second()
    );
}
