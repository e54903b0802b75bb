//! `automate db`: check and back up the object store's file
//! (`docs/operations.md`).
//!
//! * `automate db check` copies the file and runs redb's integrity check
//!   and a read of every object on the copy ([`automate_redb::check`]); the
//!   file itself is never written. Exit 1 when it is damaged.
//! * `automate db backup FILE` writes a consistent copy (one read
//!   transaction, copied into a new file: [`Store::backup`](super::compose::Store)). When no
//!   process has the store open, the copy is made here, from the file
//!   opened read-only. A running `automate run` or `automate api` holds
//!   the file's lock (redb lets no other process open it), so then the
//!   copy is asked of its API, `POST /api/db/backup` (behind the token),
//!   which streams it back; it is written beside `FILE`, opened to check
//!   it, and renamed over `FILE`.

use super::compose::open_store_read_only;
use super::Global;
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `automate db check|backup`.
#[derive(Debug, clap::Subcommand)]
pub enum DbCmd {
    /// Check the object store's file (on a copy; the file is not written).
    /// Exit 1 when it is damaged.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the object store to FILE, also while
    /// `automate run` holds it (through its API).
    Backup(BackupArgs),
}

/// `automate db backup`'s destination and how to reach a running service.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where the copy goes (replaced when it exists).
    pub file: PathBuf,
    /// The running service's API (`http://127.0.0.1:3000`), when the
    /// store is in use; default: `api.listen` of `--config`.
    #[arg(long, env = "AUTOMATE_API_URL")]
    pub url: Option<String>,
    /// The running service's configuration (for its API address and token).
    #[arg(long, default_value = "automate.yaml")]
    pub config: PathBuf,
}

/// Runs one `automate db` command on `--db`; `check` exits 1 when the
/// file is damaged.
pub fn run(global: &Global, cmd: DbCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DbCmd::Check { json } => check(&global.db, json),
        DbCmd::Backup(args) => backup(global, &args),
    }
}

fn check(db: &Path, json: bool) -> anyhow::Result<ExitCode> {
    if !db.exists() {
        bail!("{}: no such file", db.display());
    }
    let scratch = tempfile::tempdir().context("creating a scratch directory for the copy")?;
    let report = automate_redb::check(db, scratch.path())
        .with_context(|| format!("checking {}", db.display()))?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "file": db.display().to_string(),
            "ok": report.is_ok(),
            "objects": report.objects,
            "ems_refs": report.ems_refs,
            "scheduled": report.scheduled,
            "problems": report.problems,
        });
        writeln!(out, "{v}")?;
    } else if report.is_ok() {
        writeln!(
            out,
            "{}: ok ({} objects, {} provider references, {} scheduled items)",
            db.display(),
            report.objects,
            report.ems_refs,
            report.scheduled
        )?;
    } else {
        writeln!(out, "{}: DAMAGED", db.display())?;
        for p in &report.problems {
            writeln!(out, "  {p}")?;
        }
        writeln!(
            out,
            "  see docs/operations.md: restore the last backup, or salvage what reads"
        )?;
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn backup(global: &Global, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let db = &global.db;
    match open_store_read_only(db) {
        Ok(store) => {
            let r = store
                .backup(&args.file)
                .with_context(|| format!("backing up {}", db.display()))?;
            println!(
                "backup: {} objects, {} scheduled items, {} bytes written to {}",
                r.objects,
                r.scheduled,
                r.bytes,
                args.file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(automate_vmdb::StoreError::InUse(_)) => backup_through_api(global, args),
        Err(e) => Err(e).with_context(|| format!("opening {}", db.display())),
    }
}

/// Asks the running service for the copy (see the module docs).
fn backup_through_api(global: &Global, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    // --url (or --server), else the service advertised beside the store,
    // with the token found as every other command finds it
    // (`remote::find`); else api.listen and api.token of --config.
    let mut g = global.clone();
    if args.url.is_some() {
        g.server = args.url.clone();
    }
    let (url, token) = match super::remote::find(&g)? {
        Some(r) => {
            // No token given or advertised for that URL: api.token of
            // --config, when it reads.
            let token = match r.token() {
                Some(t) => t.to_string(),
                None => super::load_config(global, &args.config)
                    .map(|c| c.api.token)
                    .unwrap_or_default(),
            };
            (r.url().to_string(), token)
        }
        None => {
            let cfg = super::load_config(global, &args.config).with_context(|| {
                format!(
                    "the store is in use by a running automate: its API is needed (--server, \
                     --token), or its configuration ({})",
                    args.config.display()
                )
            })?;
            (format!("http://{}", cfg.api.listen), cfg.api.token)
        }
    };
    let (tmp, held, bytes) = download_backup(&url, &token, &args.file)?;
    tmp.persist(&args.file)
        .with_context(|| format!("renaming the backup to {}", args.file.display()))?;
    println!(
        "backup: {held} objects, {bytes} bytes written to {} (from the running service at {url})",
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks the service at `url` for a consistent copy of its store
/// (`POST /api/db/backup`) and receives it into a temporary file beside
/// `dest` (not yet renamed: the caller persists or drops it), checked to
/// open and to hold the objects the service said it holds. Answers the
/// file, how many objects it holds and its size in bytes.
pub(super) fn download_backup(
    url: &str,
    token: &str,
    dest: &Path,
) -> anyhow::Result<(tempfile::NamedTempFile, u64, u64)> {
    let endpoint = format!("{}/api/db/backup", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&endpoint)
        .header("X-Auth-Token", token)
        .send_empty()
        .with_context(|| format!("asking {endpoint} for a backup"))?;
    if resp.status() != 200 {
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        bail!("{endpoint} answered {}: {body}", resp.status());
    }
    let objects: Option<u64> = resp
        .headers()
        .get(automate_api::db::OBJECTS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".automate-backup-")
        .suffix(".redb")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let bytes = std::io::copy(&mut resp.into_body().into_reader(), tmp.as_file_mut())
        .with_context(|| format!("receiving the backup from {endpoint}"))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    // The copy must open and hold what the service said it holds.
    let held = open_store_read_only(tmp.path())
        .and_then(|s| s.guard(|| s.count()))
        .with_context(|| format!("the backup received from {endpoint} does not open"))?;
    if let Some(n) = objects {
        if n != held {
            bail!("the backup received from {endpoint} holds {held} objects, not {n}");
        }
    }
    Ok((tmp, held, bytes))
}
