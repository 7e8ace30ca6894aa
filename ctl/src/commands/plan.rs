//! `batch plan --csv FILE --template FILE --shards N`: one batch split over N daemons. The
//! daemon pre-scans every row as `batch test` does (both logins, every folder's messages and
//! bytes, at most as many mailboxes at once as it runs jobs), then the mailboxes are split by
//! bytes with [`migrated_core::shard::balance`] (largest first onto the least loaded shard).
//! Written beside the CSV (or into `--out`): `NAME.plan.csv`, the whole batch with a `Shard`
//! column (`K/N`) that every daemon of the migration can be given, and `NAME.shard-K.csv`, each
//! shard's rows alone. Both hold the CSV's passwords: they are written with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use migrated_core::shard::{Shard, Weight, balance};

use super::input::load_template;
use crate::control::Control;

/// CSV rows, each its fields.
type Rows = Vec<Vec<String>>;

/// What `batch plan` was given.
pub(crate) struct PlanArgs {
    pub csv: PathBuf,
    pub template: PathBuf,
    pub shards: usize,
    pub out: Option<PathBuf>,
    pub mbps: f64,
}

/// One shard of the plan, as printed.
struct ShardLine {
    shard: Shard,
    mailboxes: usize,
    messages: u64,
    bytes: u64,
    largest: u64,
    makespan_secs: f64,
    file: PathBuf,
}

/// Plans the batch; exit code 1 (nothing written) when a mailbox has a problem.
pub(crate) async fn plan(
    ctl: &mut Control,
    args: PlanArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use migrated_ipc::{Request, Response};
    if args.shards == 0 {
        bail!("--shards: give 1 or more");
    }
    if !args.mbps.is_finite() || args.mbps <= 0.0 {
        bail!("--mbps: give the megabytes per second one shard moves, more than 0");
    }
    let text = std::fs::read_to_string(&args.csv)
        .with_context(|| format!("cannot read CSV file {}", args.csv.display()))?;
    let template = load_template(&args.template)?;
    let rows = match ctl
        .batch(Request::Preflight {
            template: Box::new(template),
            csv: Some(text.clone()),
        })
        .await?
    {
        Response::Preflight { rows } => rows,
        other => bail!("unexpected reply: {other:?}"),
    };
    let troubled: Vec<&migrated_ipc::PreflightRow> =
        rows.iter().filter(|r| !r.problems.is_empty()).collect();
    if !troubled.is_empty() {
        for r in &troubled {
            eprintln!("{}: {}", r.mailbox, r.problems.join("; "));
        }
        eprintln!(
            "{} of {} mailboxes have problems (the sizes of those cannot be known): fix them (`migratectl batch test` shows each) and plan again; nothing was written",
            troubled.len(),
            rows.len()
        );
        return Ok(ExitCode::from(1));
    }
    let per_host = match ctl
        .batch(Request::Limits {
            max_jobs: None,
            max_connections_per_host: None,
        })
        .await?
    {
        Response::Limits {
            max_connections_per_host,
            ..
        } => max_connections_per_host,
        other => bail!("unexpected reply: {other:?}"),
    };
    let weights: Vec<Weight> = rows.iter().map(|r| Weight { bytes: r.bytes }).collect();
    let plan = balance(&weights, args.shards);
    let shard_of_mailbox: std::collections::HashMap<String, usize> = rows
        .iter()
        .zip(&plan.shard_of)
        .map(|(r, s)| (r.mailbox.to_lowercase(), *s))
        .collect();

    let out = args.out.clone().unwrap_or_else(|| {
        args.csv
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    });
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the directory {}", out.display()))?;
    let stem = args
        .csv
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("batch")
        .to_owned();
    let (header, records) = read_rows(&text, &args.csv)?;
    let email_i = header
        .iter()
        .position(|h| h.eq_ignore_ascii_case("EmailAddress"))
        .context("the CSV has no EmailAddress column")?;
    let shard_i = header.iter().position(|h| h.eq_ignore_ascii_case("Shard"));
    let mut header_out = header.clone();
    if shard_i.is_none() {
        header_out.push("Shard".into());
    }
    let mut whole = Vec::with_capacity(records.len());
    let mut parts: Vec<Rows> = vec![Vec::new(); args.shards];
    for mut record in records {
        let email = record.get(email_i).cloned().unwrap_or_default();
        let Some(s) = shard_of_mailbox.get(&email.to_lowercase()) else {
            bail!(
                "{}: mailbox {email:?} was not in the pre-scan's reply",
                args.csv.display()
            );
        };
        let value = Shard::new(*s, args.shards)
            .map_err(anyhow::Error::msg)?
            .to_string();
        match shard_i {
            Some(i) => record[i] = value,
            None => record.push(value),
        }
        parts[*s].push(record.clone());
        whole.push(record);
    }
    let plan_file = out.join(format!("{stem}.plan.csv"));
    write_csv(&plan_file, &header_out, &whole)?;
    let mut lines = Vec::with_capacity(args.shards);
    for (k, records) in parts.iter().enumerate() {
        let file = out.join(format!("{stem}.shard-{k}.csv"));
        write_csv(&file, &header_out, records)?;
        let mine: Vec<&migrated_ipc::PreflightRow> = rows
            .iter()
            .zip(&plan.shard_of)
            .filter(|(_, s)| **s == k)
            .map(|(r, _)| r)
            .collect();
        lines.push(ShardLine {
            shard: Shard::new(k, args.shards).map_err(anyhow::Error::msg)?,
            mailboxes: plan.mailboxes[k],
            messages: mine.iter().map(|r| r.messages).sum(),
            bytes: plan.bytes[k],
            largest: mine.iter().map(|r| r.bytes).max().unwrap_or(0),
            makespan_secs: plan.bytes[k] as f64 / (args.mbps * 1e6),
            file,
        });
    }
    let total: u64 = plan.bytes.iter().sum();
    let ideal = total as f64 / args.shards as f64 / (args.mbps * 1e6);
    let share = Shard::new(0, args.shards)
        .map_err(anyhow::Error::msg)?
        .share(per_host);
    if json {
        let shards: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "shard": l.shard.to_string(),
                    "mailboxes": l.mailboxes,
                    "messages": l.messages,
                    "bytes": l.bytes,
                    "largest_mailbox_bytes": l.largest,
                    "makespan_secs": l.makespan_secs,
                    "file": l.file.display().to_string(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "shards": shards,
                "mailboxes": rows.len(),
                "bytes": total,
                "mbps_per_shard": args.mbps,
                "ideal_secs": ideal,
                "makespan_secs": lines.iter().map(|l| l.makespan_secs).fold(0.0, f64::max),
                "over_ideal": plan.over_ideal(),
                "max_connections_per_host": per_host,
                "connections_per_host_per_shard": share,
                "plan": plan_file.display().to_string(),
            }))?
        );
    } else {
        println!(
            "{:<6} {:>9} {:>10} {:>14} {:>14} {:>12}  FILE",
            "SHARD", "MAILBOXES", "MESSAGES", "BYTES", "LARGEST", "MAKESPAN"
        );
        for l in &lines {
            let shard = l.shard.to_string();
            println!(
                "{:<6} {:>9} {:>10} {:>14} {:>14} {:>12}  {}",
                shard,
                l.mailboxes,
                l.messages,
                l.bytes,
                l.largest,
                duration(l.makespan_secs),
                l.file.display()
            );
        }
        println!(
            "{} mailboxes, {} bytes over {} shards at {} MB/s each: makespan {} against an ideal of {} ({:.1} % over).",
            rows.len(),
            total,
            args.shards,
            args.mbps,
            duration(lines.iter().map(|l| l.makespan_secs).fold(0.0, f64::max)),
            duration(ideal),
            (plan.over_ideal() - 1.0) * 100.0
        );
        if per_host > 0 {
            println!(
                "Connections per host: {per_host} for the migration, {share} per shard (run each daemon with --max-connections-per-host {per_host} and its --shard: it keeps to its share)."
            );
        }
        println!(
            "Plan: {} (give it to every daemon, each with --shard K/{}), or each shard its own file.",
            plan_file.display(),
            args.shards
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 h 02 min`, `3 min 20 s`, `12 s`.
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The CSV's header and non-empty rows, as given (trimmed, as the batch reads them).
fn read_rows(text: &str, path: &Path) -> anyhow::Result<(Vec<String>, Rows)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        if r.iter().all(str::is_empty) {
            continue;
        }
        let mut row: Vec<String> = r.iter().map(str::to_owned).collect();
        row.resize(header.len(), String::new());
        rows.push(row);
    }
    Ok((header, rows))
}

/// Writes a CSV with mode 0600 (it holds passwords), replacing the file.
fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An older file keeps its mode when truncated: it holds passwords now.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    file.write_all(&bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
