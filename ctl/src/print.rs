//! What migratectl prints for people: the job, batch, check and plugin tables, the job
//! detail with its verification, event lines, the progress bar, and sizes and durations in
//! human units. `--json` output is made by the commands themselves (but for the one-word
//! status reply of the job actions).

use migrated_core::JobStatus;
use migrated_ipc::text::clock;
use migrated_ipc::{BatchSummary, CheckRow, EventRow, JobDetail, JobSummary};

/// A job action's reply: the job's new status, or `{"status": ...}` with `--json`.
pub(crate) fn print_status(status: JobStatus, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "status": status }));
    } else {
        println!("{status}");
    }
}

pub(crate) fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

pub(crate) fn bar(done: u64, total: u64, width: usize) -> String {
    let frac = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (frac * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(width - filled),
        frac * 100.0
    )
}

pub(crate) use migrated_ipc::report::status_label;

pub(crate) fn print_list(jobs: &[JobSummary]) {
    println!(
        "{:<14} {:<20} {:<24} {:>22} {:>8} {:>4}  TAGS",
        "ID", "NAME", "STATUS", "MESSAGES", "FAILED", "PRIO"
    );
    for j in jobs {
        println!(
            "{:<14} {:<20} {:<24} {:>22} {:>8} {:>4}  {}",
            j.id,
            j.name,
            status_label(j),
            format!("{}/{}", j.items_done, j.items_total),
            j.failed,
            j.priority,
            j.tags.join(" ")
        );
    }
    println!("\n{} jobs", jobs.len());
}

/// `migratectl test`: one line per side.
pub(crate) fn print_checks(checks: &[CheckRow]) {
    for c in checks {
        println!(
            "{:<12} {:<40} {}  {}",
            c.side,
            c.endpoint,
            if c.ok { "OK" } else { "FAILED" },
            c.message
        );
        // The line an administrator pastes into the job file once the server's administrator
        // has confirmed the fingerprint.
        if let Some(fp) = &c.tls_fingerprint {
            println!("{:<12} certificate: tls_fingerprint = \"{fp}\"", "");
        }
    }
}

/// `migratectl batch list`: one line per batch with its counts.
pub(crate) fn print_batches(batches: &[BatchSummary]) {
    println!(
        "{:<20} {:>6} {:>22} {:>8}  STATUSES",
        "BATCH", "JOBS", "MESSAGES", "FAILED"
    );
    for b in batches {
        let statuses: Vec<String> = b.statuses.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!(
            "{:<20} {:>6} {:>22} {:>8}  {}",
            b.name,
            b.jobs,
            format!("{}/{}", b.items_done, b.items_total),
            b.failed,
            statuses.join(", ")
        );
    }
}

pub(crate) fn print_detail(d: &JobDetail) {
    let s = &d.summary;
    println!("job          {} ({})", s.id, s.name);
    println!("status       {}", status_label(s));
    let state = |c: &Option<String>| c.as_deref().map(|c| format!("  ({c})")).unwrap_or_default();
    println!("source       {}{}", s.source, state(&s.source_connection));
    println!(
        "destination  {}{}",
        s.destination,
        state(&s.destination_connection)
    );
    println!(
        "progress     {}  {} / {} messages  {} / {}",
        bar(s.items_done, s.items_total, 30),
        s.items_done,
        s.items_total,
        human_bytes(s.bytes_done),
        human_bytes(s.bytes_total)
    );
    if let Some(f) = &s.current_folder {
        println!("folder       {f}");
    }
    if d.duration_secs > 0.0 {
        println!(
            "last run     {}, {:.0} messages/min, {:.1} MB/s",
            human_duration(d.duration_secs),
            s.items_done as f64 * 60.0 / d.duration_secs,
            s.bytes_done as f64 / 1e6 / d.duration_secs
        );
    }
    if let Some(t) = s.throttled_until {
        println!("throttled    by the server until {} UTC", clock(t));
    }
    if let Some(e) = &s.error {
        println!("error        {e}");
    }
    if !d.folders.is_empty() {
        print!("\n{}", migrated_ipc::text::folder_table(&d.folders));
    }
    if !d.verification.is_empty() {
        let missing: usize = d.verification.iter().map(|v| v.missing.len()).sum();
        let excluded: usize = d
            .verification
            .iter()
            .flat_map(|v| &v.missing)
            .filter(|m| m.reason.starts_with("excluded"))
            .count();
        println!(
            "\nverification {} ({}): {}",
            d.verified_at.map(clock).unwrap_or_default(),
            if missing == excluded {
                "exact"
            } else {
                "incomplete"
            },
            match (missing, excluded) {
                (0, _) => "every source message is on the destination".to_owned(),
                (m, e) if m == e => {
                    format!("every source message is on the destination but the {e} excluded")
                }
                (m, e) => format!(
                    "{} messages missing on the destination (and {e} excluded)",
                    m - e
                ),
            }
        );
        println!(
            "  {:<28} {:>9} {:>10} {:>9} {:>10}  DESTINATION",
            "FOLDER", "SOURCE", "BYTES", "DEST", "BYTES"
        );
        for v in &d.verification {
            println!(
                "  {:<28} {:>9} {:>10} {:>9} {:>10}  {}",
                v.source,
                v.source_messages,
                human_bytes(v.source_bytes),
                v.destination_messages,
                human_bytes(v.destination_bytes),
                v.destination
            );
            for i in &v.missing {
                println!(
                    "  missing   UID {} {} Message-ID {}{}: {}",
                    i.uid,
                    human_bytes(i.size),
                    i.message_id.as_deref().unwrap_or("none"),
                    i.subject
                        .as_deref()
                        .map(|s| format!(" Subject {s:?}"))
                        .unwrap_or_default(),
                    i.reason
                );
            }
        }
    }
    for i in &d.excluded {
        println!(
            "excluded  {} UID {} {} Message-ID {}{}: {}",
            i.folder,
            i.uid,
            human_bytes(i.size),
            i.message_id.as_deref().unwrap_or("none"),
            i.subject
                .as_deref()
                .map(|s| format!(" Subject {s:?}"))
                .unwrap_or_default(),
            i.reason
        );
    }
    for i in &d.failed {
        println!(
            "failed    {} UID {} {} Message-ID {}{}: {}",
            i.folder,
            i.uid,
            human_bytes(i.size),
            i.message_id.as_deref().unwrap_or("none"),
            i.subject
                .as_deref()
                .map(|s| format!(" Subject {s:?}"))
                .unwrap_or_default(),
            i.reason
        );
    }
    for r in &d.removed {
        println!(
            "removed   {} UID {} (destination {} UID {}) {} Message-ID {} date {}: {}",
            r.folder,
            r.uid,
            r.destination,
            r.dest_uid,
            human_bytes(r.size),
            r.message_id.as_deref().unwrap_or("none"),
            r.date.as_deref().unwrap_or("unknown"),
            r.removal.label()
        );
    }
    let (on_dest, on_source) = d
        .folders
        .iter()
        .fold((0, 0), |(a, b), f| (a + f.removed, b + f.source_removed));
    if on_dest + on_source > d.removed.len() as u64 {
        println!(
            "removed   {} from the destination and {} from the source in all; the first {} of each folder are listed",
            on_dest, on_source, d.removed_listed_per_folder
        );
    }
    if !d.events.is_empty() {
        println!();
        for e in &d.events {
            print_event(e);
        }
    }
}

pub(crate) fn print_event(e: &EventRow) {
    println!("#{:<5} {:<8} {}", e.seq, e.level, e.message);
}

/// The plugin table: one line per plugin, its settings under it, then the skipped files.
pub(crate) fn print_plugins(
    plugins: &[migrated_ipc::PluginRow],
    rejected: &[migrated_ipc::RejectedPlugin],
) {
    println!(
        "{:<12} {:<9} {:<5} {:<14} DESCRIPTION",
        "PLUGIN", "VERSION", "ABI", "KINDS"
    );
    for p in plugins {
        println!(
            "{:<12} {:<9} {:<5} {:<14} {}",
            p.name,
            p.version,
            p.abi,
            p.kinds.join(","),
            p.description
        );
        for s in &p.settings {
            println!(
                "    setting {} = {} (default {}): {}",
                s.name, s.kind, s.default, s.help
            );
        }
        println!("    from {}", p.path);
    }
    if plugins.is_empty() {
        println!("(no plugin loaded: no job can run)");
    }
    for r in rejected {
        println!("skipped {}: {}", r.path, r.reason);
    }
}

/// `42s`, `3m05s`, `2h10m`, for the ETA.
pub(crate) fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The totals of a pre-flight.
#[derive(Debug, Default)]
pub(crate) struct PreflightTotals {
    pub mailboxes: usize,
    pub ready: usize,
    pub with_problems: usize,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    pub excluded: u64,
    pub excluded_bytes: u64,
}

impl PreflightTotals {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mailboxes": self.mailboxes,
            "ready": self.ready,
            "with_problems": self.with_problems,
            "folders": self.folders,
            "messages": self.messages,
            "bytes": self.bytes,
            "excluded": self.excluded,
            "excluded_bytes": self.excluded_bytes,
        })
    }
}

pub(crate) fn preflight_totals(rows: &[migrated_ipc::PreflightRow]) -> PreflightTotals {
    let mut t = PreflightTotals {
        mailboxes: rows.len(),
        ..PreflightTotals::default()
    };
    for r in rows {
        if r.problems.is_empty() {
            t.ready += 1;
        } else {
            t.with_problems += 1;
        }
        t.folders += r.folders;
        t.messages += r.messages;
        t.bytes += r.bytes;
        t.excluded += r.excluded;
        t.excluded_bytes += r.excluded_bytes;
    }
    t
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// One line per mailbox, its problems indented below it, then the totals.
pub(crate) fn print_preflight(rows: &[migrated_ipc::PreflightRow], t: &PreflightTotals) {
    let side = |ok: bool| if ok { "ok" } else { "FAILED" };
    for r in rows {
        println!(
            "{:<32} source {:<6} destination {:<6} {:>4} folders {:>7} messages {:>10}  largest {:>9}  {} excluded",
            r.mailbox,
            side(r.source_ok),
            side(r.destination_ok),
            r.folders,
            r.messages,
            mb(r.bytes),
            mb(r.largest),
            r.excluded
        );
        if r.folders_left_out > 0 {
            println!(
                "    {} folders left out by the job's [folders] include and exclude patterns (not counted)",
                r.folders_left_out
            );
        }
        for p in &r.problems {
            println!("    {p}");
        }
    }
    println!(
        "{} mailboxes: {} ready, {} with problems; {} folders, {} messages, {} to copy; {} messages ({}) over the size limit",
        t.mailboxes,
        t.ready,
        t.with_problems,
        t.folders,
        t.messages,
        mb(t.bytes),
        t.excluded,
        mb(t.excluded_bytes)
    );
}
