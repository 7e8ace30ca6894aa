//! `endpoint create|list|show|delete`: connections kept by name, shared by the jobs and batch
//! templates that name them (`endpoint = "NAME"` in `[source]` or `[destination]`). An endpoint
//! file is a `[source]` table's fields without `user`, plus `max_migrations` (default 20) and
//! `max_syncs` (default 10); `password_file` and `admin_password_file` are read here, as you.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use migrated_core::{EndpointSpec, NamedEndpoint, Secret};
use migrated_ipc::{EndpointRow, Request, Response};

use crate::control::Control;

/// Reads an endpoint file into a named endpoint, its secrets read from their files.
fn load(name: &str, path: &Path) -> anyhow::Result<NamedEndpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read endpoint file {}", path.display()))?;
    let place = format!("endpoint file {}", path.display());
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
    let mut limit = |key: &str, default: usize| -> anyhow::Result<usize> {
        match table.remove(key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if n >= 1 => Ok(n as usize),
            Some(other) => bail!("{place}: {key}: expected a number of at least 1, found {other}"),
        }
    };
    let max_migrations = limit(
        "max_migrations",
        migrated_core::named::DEFAULT_MAX_MIGRATIONS,
    )?;
    let max_syncs = limit("max_syncs", migrated_core::named::DEFAULT_MAX_SYNCS)?;
    let mut connection: EndpointSpec = table
        .try_into()
        .map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let read = |file: &Path| -> anyhow::Result<Secret> {
        let file = dir.join(file);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("{place}: cannot read {}", file.display()))?;
        Ok(Secret::new(text.lines().next().unwrap_or("").to_owned()))
    };
    if let Some(f) = connection.password_file.take() {
        connection.password = Some(read(&f)?);
    }
    if let Some(f) = connection.admin_password_file.take() {
        connection.admin_password = Some(read(&f)?);
    }
    Ok(NamedEndpoint {
        name: name.to_owned(),
        connection,
        max_migrations,
        max_syncs,
    })
}

/// One line per endpoint.
fn print(rows: &[EndpointRow]) {
    println!(
        "{:<16} {:<28} {:<9} {:>6} {:>6} {:>8}  JOBS",
        "NAME", "SERVER", "SECURITY", "MIGR.", "SYNCS", "RUNNING"
    );
    for r in rows {
        let c = &r.endpoint.connection;
        let server = format!(
            "{}:{}",
            c.host,
            c.port
                .map_or_else(|| "default".to_owned(), |p| p.to_string())
        );
        println!(
            "{:<16} {:<28} {:<9} {:>6} {:>6} {:>8}  {}",
            r.endpoint.name,
            server,
            c.security.as_str(),
            r.endpoint.max_migrations,
            r.endpoint.max_syncs,
            r.running,
            r.jobs.len()
        );
    }
}

/// Runs an endpoint command.
pub(crate) async fn run(
    ctl: &mut Control,
    command: crate::EndpointCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::EndpointCommand as C;
    let (request, created) = match command {
        C::Create {
            name,
            file,
            replace,
        } => (
            Request::EndpointCreate {
                endpoint: Box::new(load(&name, &file)?),
                replace,
            },
            Some(replace),
        ),
        C::List => (Request::EndpointList, None),
        C::Show { name } => (Request::EndpointShow { name }, None),
        C::Delete { name } => (Request::EndpointDelete { name }, None),
    };
    let delete = matches!(request, Request::EndpointDelete { .. });
    let rows = match ctl.batch(request).await? {
        Response::Endpoints { endpoints } => endpoints,
        other => bail!("unexpected reply: {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if delete {
        println!("Deleted");
        return Ok(ExitCode::SUCCESS);
    }
    print(&rows);
    if let Some(replaced) = created
        && let Some(r) = rows.first()
    {
        if replaced && !r.jobs.is_empty() {
            println!(
                "Changed: it applies from each job's next run ({} jobs use it; runs in progress go on with the old settings).",
                r.jobs.len()
            );
        } else {
            println!("Saved: it applies from each job's next run.");
        }
    }
    if rows.len() == 1 {
        let r = &rows[0];
        let state = if r.admin_secret { "set" } else { "not set" };
        println!("  administrator's secret: {state}");
        for j in &r.jobs {
            println!("  used by {j}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
