//! `automate datastore list|tree|show|validate`, `automate import`, `automate export`.
//!
//! Thin front ends over [`automate_datastore`]: they load the datastore, call the
//! library, and print text (tables with a header row) or, with `--json`, one
//! JSON document (`list`, `tree`, `show`, `validate`, `import --preview`).
//! `validate` also checks the control policy files (`automate_control::check`);
//! With a running service selected (`--server`, `AUTOMATE_SERVER` or the
//! advertisement), `list`, `tree`, `show` and `validate` print what the
//! service's datastore gives ([`super::remote`]), the same text, JSON and
//! exit codes: the documents come from [`automate_datastore::describe`]
//! and [`automate_control::validate`] on either side.
//! `import --preview` writes nothing; `export` takes one namespace or class,
//! or every domain (`*`). Problems found while loading are counted on stderr
//! with a pointer to `datastore validate`.

use super::table::{paint, Style, Table};
use super::Global;
use anyhow::{bail, Context};
use automate_datastore::export::{self, ExportOptions};
use automate_datastore::git;
use automate_datastore::import::{self, ImportOptions};
use automate_datastore::{describe, fs as dsfs, Domain};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `automate datastore list|tree|show|validate`.
#[derive(Debug, clap::Subcommand)]
pub enum DatastoreCmd {
    /// List domains with priority, enabled flag, source and counts (highest priority first).
    ///
    /// `--json`: one array of `{"name", "priority", "enabled", "source",
    /// "namespaces", "classes", "instances", "methods"}`.
    List {
        /// One JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print the namespaces, classes, instances and methods as an indented tree.
    ///
    /// `--json`: one array with an object per domain shown, `{"domain",
    /// "priority", "enabled", "source", "path", "namespaces", "classes"}`;
    /// a namespace is `{"name", "namespaces", "classes"}`, a class
    /// `{"name", "instances", "methods"}` (names sorted).
    Tree {
        /// Only below this path: `Domain[/namespace...][/Class]`, or a partial
        /// `namespace/.../Class` (shown for every domain that has it).
        path: Option<String>,
        /// One JSON array instead of the tree.
        #[arg(long)]
        json: bool,
    },
    /// Show a class schema, an instance (merged with its class defaults) or a method.
    Show {
        /// `/ManageIQ/System/Process`, `/System/Process` (highest-priority domain),
        /// `/System/Process/Event` (instance), `/System/Process/parse_event_stream` (method,
        /// when no instance has that name) or `/System/Process/parse_event_stream()` (method).
        path: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every file of the datastore and the control policy files, and list every problem.
    ///
    /// Every file of the datastore, and the control policy files of
    /// `DATASTORE/control/` (as `automate run` loads them), each problem as
    /// `file:line: field: message`. `--json`: one object `{"root", "errors", "warnings",
    /// "files", "problems": [{"file", "line", "column", "field",
    /// "message", "severity"}]}` (`severity` is `error` or `warning`).
    Validate {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Reload the datastore, its Rhai methods and the control policies
    /// (all-or-nothing) and print the report; exit 1 on problems.
    Reload {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read a git domain (`import --git`) from its repository at its ref,
    /// and swap the new commit in when it validates (else nothing changes).
    Refresh {
        /// The domain.
        domain: String,
    },
}

/// `automate import`'s source and options ([`ImportOptions`]).
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A domain directory, a directory of domains, a zip, or a repository with
    /// `__domain__.yaml` at its root.
    #[arg(required_unless_present = "git", conflicts_with = "git")]
    pub source: Option<PathBuf>,
    /// Import from this local git repository (a path, bare or not, or a
    /// `file://` URL) at `--ref`, reading the commit's files (no checkout);
    /// the domain becomes `source: remote` (read-only) and records the
    /// repository, ref and commit (`datastore refresh DOMAIN` takes a newer one).
    #[arg(long, value_name = "URL_OR_PATH")]
    pub git: Option<String>,
    /// With `--git`: the branch or tag (case-insensitive; default: the
    /// branch HEAD names).
    #[arg(long = "ref", value_name = "BRANCH_OR_TAG", requires = "git")]
    pub git_ref: Option<String>,
    /// Import the domain under this name (sets `name` and the directory).
    #[arg(long, value_name = "NEW_NAME")]
    pub domain: Option<String>,
    /// Which domain to take from a source holding several (directory or domain name).
    #[arg(long, value_name = "DOMAIN")]
    pub from: Option<String>,
    /// The domain's priority (default: the replaced domain's, else highest + 1).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// Replace an existing domain of the same name.
    #[arg(long)]
    pub overwrite: bool,
    /// Enable the domain.
    #[arg(long, conflicts_with = "disabled")]
    pub enabled: bool,
    /// Disable the domain.
    #[arg(long)]
    pub disabled: bool,
    /// Write nothing: list what the import would add, update and remove,
    /// file by file (ManageIQ's PREVIEW=true). With `--json`, one object
    /// `{"domain", "path", "priority", "enabled", "source", "replaces",
    /// "counts", "files", "unchanged", "changes": [{"change", "kind",
    /// "file"}]}` (`change` is `add`, `update` or `remove`).
    #[arg(long)]
    pub preview: bool,
    /// With `--preview`: one JSON object instead of the table.
    #[arg(long, requires = "preview")]
    pub json: bool,
}

/// `automate import` through a running service: the source (a zip as it
/// is, a directory zipped) uploaded, imported into the service's
/// datastore and reloaded there; prints what the local import prints.
fn import_through_api(
    remote: &super::remote::Remote,
    source: &Path,
    opts: &ImportOptions,
) -> anyhow::Result<ExitCode> {
    let meta = std::fs::metadata(source)
        .with_context(|| format!("the import source `{}` does not exist", source.display()))?;
    let zip = if meta.is_dir() {
        super::remote::zip_dir(source)?
    } else {
        std::fs::read(source).with_context(|| format!("reading {}", source.display()))?
    };
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(d) = &opts.rename {
        q.push(("domain", d.clone()));
    }
    if let Some(f) = &opts.domain_filter {
        q.push(("from", f.clone()));
    }
    if let Some(p) = opts.priority {
        q.push(("priority", p.to_string()));
    }
    if opts.overwrite {
        q.push(("overwrite", "true".into()));
    }
    if let Some(e) = opts.enabled {
        q.push(("enabled", e.to_string()));
    }
    let s = remote.import(zip, &q)?;
    for w in s["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    // Written, but the service kept its running datastore: say why.
    if s["reload"]["ok"] == false {
        eprintln!("warning: the service did not reload its datastore; the import is on disk but not running:");
        for p in s["reload"]["problems"].as_array().into_iter().flatten() {
            eprintln!(
                "  {}:{}: {}",
                p["file"].as_str().unwrap_or_default(),
                p["line"],
                p["message"].as_str().unwrap_or_default()
            );
        }
    }
    let text = |k: &str| match &s[k] {
        serde_json::Value::String(v) => v.clone(),
        other => other.to_string(),
    };
    let count = |k: &str| s["counts"][k].as_u64().unwrap_or(0);
    println!(
        "{} domain {} (priority {}, {}, source {}) into {}: {} namespaces, {} classes, {} \
         instances, {} methods ({} files)",
        if s["replaced"].as_bool() == Some(true) {
            "Replaced"
        } else {
            "Imported"
        },
        text("domain"),
        text("priority"),
        if s["enabled"].as_bool() == Some(true) {
            "enabled"
        } else {
            "disabled"
        },
        text("source"),
        text("path"),
        count("namespaces"),
        count("classes"),
        count("instances"),
        count("methods"),
        text("files")
    );
    Ok(ExitCode::SUCCESS)
}

/// `automate export`'s domain, destination and options.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The domain to export, or `*` (quoted) for every domain: each to
    /// DEST/<Domain>, or all side by side in one zip.
    pub domain: String,
    /// The destination directory (the domain goes to `DEST/<Domain>`), or a
    /// `.zip` file.
    #[arg(help = "The destination directory (the domain goes to DEST/<Domain>), or a `.zip` file")]
    pub dest: PathBuf,
    /// Replace an existing `DEST/<Domain>` directory or zip.
    #[arg(long, help = "Replace an existing DEST/<Domain> directory or zip")]
    pub overwrite: bool,
    /// Export only this namespace (`System/Event`) with its parents'
    /// namespace files (ManageIQ's NAMESPACE=).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// With --namespace, export only this class of it (ManageIQ's CLASS=).
    #[arg(long, value_name = "CLASS", requires = "namespace")]
    pub class: Option<String>,
}

/// Runs one `automate datastore` command on `--datastore`, or through the
/// selected service; `validate` exits 1 when it finds an error (warnings
/// alone exit 0).
pub fn run(global: &Global, cmd: DatastoreCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DatastoreCmd::List { json } => list(global, json),
        DatastoreCmd::Tree { path, json } => {
            let d = match super::remote::find(global)? {
                Some(remote) => remote.describe("tree", path.as_deref())?,
                None => describe::tree(&load(&global.datastore)?, path.as_deref())?,
            };
            print_described(&d, json)
        }
        DatastoreCmd::Show { path, json } => {
            if path.split('/').all(str::is_empty) {
                return Err(describe::DescribeError::NoPath.into());
            }
            let d = match super::remote::find(global)? {
                Some(remote) => remote.describe("show", Some(&path))?,
                None => describe::show(&load(&global.datastore)?, &path)?,
            };
            print_described(&d, json)
        }
        DatastoreCmd::Validate { json } => validate_cmd(global, json),
        DatastoreCmd::Reload { json } => super::reload::run(global, json),
        DatastoreCmd::Refresh { domain } => refresh(global, &domain),
    }
}

/// `automate import`: imports the domain into `--datastore` and prints
/// what it holds; warnings go to stderr. Fails as
/// [`automate_datastore::import::import`] does (an unsafe zip, a name
/// clash without `--overwrite`, ...).
pub fn import(global: &Global, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let opts = ImportOptions {
        domain_filter: args.from,
        rename: args.domain,
        priority: args.priority,
        overwrite: args.overwrite,
        enabled: match (args.enabled, args.disabled) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    };
    if let Some(repository) = &args.git {
        return import_git(
            global,
            repository,
            args.git_ref.as_deref(),
            &opts,
            args.preview,
            args.json,
        );
    }
    let Some(source) = args.source.as_deref() else {
        bail!("give the source to import: a directory, a zip, or --git REPOSITORY");
    };
    if args.preview {
        if let Some(remote) = super::remote::find(global)? {
            eprintln!(
                "note: the preview compares with the local datastore {}; the service at {} \
                 imports into its own",
                global.datastore.display(),
                remote.url()
            );
        }
        let p = import::preview(&global.datastore, source, &opts)?;
        for w in &p.summary.warnings {
            eprintln!("warning: {w}");
        }
        render_preview(&mut std::io::stdout().lock(), &p, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(remote) = super::remote::find(global)? {
        return import_through_api(&remote, source, &opts);
    }
    let s = import::import(&global.datastore, source, &opts)?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} {} ({} files)",
        if s.replaced { "Replaced" } else { "Imported" },
        import_line(&s),
        s.files
    );
    Ok(ExitCode::SUCCESS)
}

/// Refuses to write to `--datastore` behind a running service's back.
fn refuse_with_service(global: &Global, what: &str) -> anyhow::Result<()> {
    if let Some(remote) = super::remote::find(global)? {
        bail!(
            "{what} does not go through a running service yet, and the service at {} holds \
             the datastore: stop the service, run the command, and start it again",
            remote.url()
        );
    }
    Ok(())
}

/// `automate import --git REPOSITORY [--ref R]`: the domain of the
/// repository's commit, recorded as a git domain ([`git::import_git`]).
fn import_git(
    global: &Global,
    repository: &str,
    git_ref: Option<&str>,
    opts: &ImportOptions,
    preview: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if preview {
        let (p, origin) = git::preview_git(&global.datastore, repository, git_ref, opts)?;
        for w in &p.summary.warnings {
            eprintln!("warning: {w}");
        }
        println!("{}", origin_line(&origin));
        render_preview(&mut std::io::stdout().lock(), &p, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    refuse_with_service(global, "import --git")?;
    let s = git::import_git(&global.datastore, repository, git_ref, opts)?;
    for w in &s.import.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} {} ({} files) from {}",
        if s.import.replaced {
            "Replaced"
        } else {
            "Imported"
        },
        import_line(&s.import),
        s.import.files,
        origin_line(&s.origin)
    );
    Ok(ExitCode::SUCCESS)
}

/// `repository REF (branch|tag) at commit SHA: message`.
fn origin_line(o: &git::GitOrigin) -> String {
    format!(
        "{} {} ({}) at commit {}{}",
        o.repository,
        o.git_ref,
        o.ref_type.as_str(),
        o.short_sha(),
        if o.commit_message.is_empty() {
            String::new()
        } else {
            format!(": {}", o.commit_message)
        }
    )
}

/// `automate datastore refresh DOMAIN` ([`git::refresh`]).
fn refresh(global: &Global, domain: &str) -> anyhow::Result<ExitCode> {
    refuse_with_service(global, "datastore refresh")?;
    let r = git::refresh(&global.datastore, domain)?;
    match &r.import {
        None => println!(
            "Domain {} is up to date: {}",
            r.domain,
            origin_line(&r.origin)
        ),
        Some(s) => {
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "Refreshed {} ({} files) from commit {} to {}",
                import_line(s),
                s.files,
                r.previous.short_sha(),
                origin_line(&r.origin)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `automate export`: writes the domain to a directory or a `.zip` and
/// prints what it holds. Fails when `DEST/<Domain>` (or the zip) exists
/// without `--overwrite`.
pub fn export(global: &Global, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let opts = ExportOptions {
        overwrite: args.overwrite,
        namespace: args.namespace,
        class: args.class,
    };
    let remote = match args.domain.as_str() {
        // Every domain: the local datastore directory.
        "*" => None,
        _ => super::remote::find(global)?,
    };
    let all = if args.domain == "*" {
        export::export_all(&global.datastore, &args.dest, &opts)?
    } else if let Some(remote) = remote {
        // The service's domain, received as a zip and unpacked into a
        // scratch root, exported from there to DEST as here.
        let zip = remote.export(&args.domain)?;
        let scratch = tempfile::tempdir().context("creating a scratch directory")?;
        let (file, root) = (
            scratch.path().join("domain.zip"),
            scratch.path().join("root"),
        );
        std::fs::write(&file, zip).with_context(|| format!("writing {}", file.display()))?;
        automate_datastore::zip_safety::extract_zip(&file, &root)
            .context("unpacking the domain the service sent")?;
        vec![export::export(&root, &args.domain, &args.dest, &opts)?]
    } else {
        vec![export::export(
            &global.datastore,
            &args.domain,
            &args.dest,
            &opts,
        )?]
    };
    if all.is_empty() {
        println!("no domains in `{}`", global.datastore.display());
    }
    for s in all {
        print_exported(&s);
    }
    Ok(ExitCode::SUCCESS)
}

/// What an import (or its preview) says of the domain: `domain NAME
/// (priority P, enabled, source S) into PATH: N namespaces, ... methods`.
fn import_line(s: &import::ImportSummary) -> String {
    let c = s.counts;
    format!(
        "domain {} (priority {}, {}, source {}) into {}: {} namespaces, {} classes, {} \
         instances, {} methods",
        s.domain,
        s.priority,
        if s.enabled { "enabled" } else { "disabled" },
        s.source.as_str(),
        s.path.display(),
        c.namespaces,
        c.classes,
        c.instances,
        c.methods,
    )
}

/// Prints what [`render_preview`] shows: a summary line, then a table of
/// the files added, updated and removed (CHANGE, KIND, FILE), or one JSON
/// object (`ImportArgs::preview`'s doc gives its shape).
pub fn render_preview(
    out: &mut impl std::io::Write,
    p: &import::ImportPreview,
    json: bool,
) -> anyhow::Result<()> {
    let s = &p.summary;
    let c = s.counts;
    if json {
        let changes: Vec<serde_json::Value> = p
            .changes
            .iter()
            .map(|i| json!({"change": i.change.as_str(), "kind": i.kind, "file": i.file}))
            .collect();
        return super::table::print_json(
            out,
            &json!({
                "domain": s.domain,
                "path": s.path.display().to_string(),
                "priority": s.priority,
                "enabled": s.enabled,
                "source": s.source.as_str(),
                "replaces": s.replaced,
                "counts": {
                    "namespaces": c.namespaces,
                    "classes": c.classes,
                    "instances": c.instances,
                    "methods": c.methods,
                },
                "files": s.files,
                "unchanged": p.unchanged,
                "changes": changes,
            }),
        );
    }
    let count = |ch| p.changes.iter().filter(|i| i.change == ch).count();
    writeln!(
        out,
        "Preview (nothing written): {} {}; {} files to add, {} to update, {} to remove, {} \
         unchanged",
        if s.replaced { "replace" } else { "import" },
        import_line(s),
        count(import::Change::Add),
        count(import::Change::Update),
        count(import::Change::Remove),
        p.unchanged,
    )?;
    if !p.changes.is_empty() {
        let mut t = Table::new(&["CHANGE", "KIND", "FILE"]);
        for i in &p.changes {
            t.row(vec![
                i.change.as_str().to_string(),
                i.kind.to_string(),
                i.file.clone(),
            ]);
        }
        t.print(out)?;
    }
    Ok(())
}

fn print_exported(s: &export::ExportSummary) {
    let c = s.counts;
    println!(
        "Exported domain {} to {}{}: {} namespaces, {} classes, {} instances, {} methods ({} files)",
        s.domain,
        s.path.display(),
        if s.zip { " (zip)" } else { "" },
        c.namespaces,
        c.classes,
        c.instances,
        c.methods,
        s.files
    );
}

/// Reads the whole datastore; reports the number of problems on stderr.
fn load(root: &Path) -> anyhow::Result<Vec<Domain>> {
    if !root.is_dir() {
        bail!(
            "the datastore `{}` is not a directory; pass --datastore DIR or import a domain first",
            root.display()
        );
    }
    let report = dsfs::read_root(root);
    if !report.problems.is_empty() {
        eprintln!(
            "warning: {} problem(s) while loading `{}`; the affected files were skipped \
             (run `automate datastore validate` for the list)",
            report.problems.len(),
            root.display()
        );
    }
    Ok(report.domains)
}

/// `datastore list`: the service's domains when one is selected (the
/// service named in the empty case), else the local datastore's.
fn list(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let (items, root) = match super::remote::find(global)? {
        Some(remote) => remote.domain_list()?,
        None => (
            describe::list(&load(&global.datastore)?),
            format!("`{}`", global.datastore.display()),
        ),
    };
    let mut out = std::io::stdout().lock();
    if json {
        super::table::print_json(&mut out, &items)?;
        return Ok(ExitCode::SUCCESS);
    }
    let items = items.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no domains in {root}");
        return Ok(ExitCode::SUCCESS);
    }
    // Git domains: a COMMIT column (ref@short sha), only when there is one.
    let git = items.iter().any(|d| d["commit_sha"].is_string());
    let mut head = vec![
        "DOMAIN",
        "PRIORITY",
        "ENABLED",
        "SOURCE",
        "NAMESPACES",
        "CLASSES",
        "INSTANCES",
        "METHODS",
    ];
    if git {
        head.push("COMMIT");
    }
    let mut t = Table::new(&head).right(&[1, 4, 5, 6, 7]);
    for d in &items {
        let text = |k: &str| match &d[k] {
            serde_json::Value::String(v) => v.clone(),
            other => other.to_string(),
        };
        let mut row = vec![
            text("name"),
            text("priority"),
            if d["enabled"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            text("source"),
            text("namespaces"),
            text("classes"),
            text("instances"),
            text("methods"),
        ];
        if git {
            row.push(match (d["ref"].as_str(), d["commit_sha"].as_str()) {
                (Some(r), Some(sha)) => format!("{r}@{}", sha.get(..8).unwrap_or(sha)),
                _ => "-".to_string(),
            });
        }
        t.row(row);
    }
    t.print(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a `tree` or `show` answer: its JSON document or its text.
fn print_described(d: &describe::Described, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        super::table::print_json(&mut out, &d.json)?;
    } else {
        std::io::Write::write_all(&mut out, d.text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// validate

/// `datastore validate`: the service validates its own root when one is
/// selected, else the local datastore is validated; exit 1 on errors.
fn validate_cmd(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let doc = match super::remote::find(global)? {
        Some(remote) => remote.validate()?,
        None => {
            let root = &global.datastore;
            if !root.is_dir() {
                bail!(
                    "the datastore `{}` is not a directory; pass --datastore DIR",
                    root.display()
                );
            }
            automate_control::validate::validate_document(root)
        }
    };
    let count = |k: &str| doc[k].as_u64().unwrap_or(0);
    let (e, w, files) = (count("errors"), count("warnings"), count("files"));
    let mut out = std::io::stdout().lock();
    if json {
        super::table::print_json(&mut out, &doc)?;
    } else {
        use std::io::Write;
        let problems = doc["problems"].as_array().cloned().unwrap_or_default();
        for p in &problems {
            if p["severity"] == "warning" {
                writeln!(
                    out,
                    "{} ({})",
                    problem_line(p),
                    paint("warning", Style::Yellow)
                )?;
            } else {
                writeln!(out, "{}", problem_line(p))?;
            }
        }
        if problems.is_empty() {
            writeln!(
                out,
                "{}: {}",
                doc["root"].as_str().unwrap_or_default(),
                paint("no problems", Style::Green)
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        let errors = format!("{e} error{}", if e == 1 { "" } else { "s" });
        let warnings = format!("{w} warning{}", if w == 1 { "" } else { "s" });
        writeln!(
            out,
            "{}, {} in {} file{}",
            if e > 0 {
                paint(&errors, Style::Red)
            } else {
                errors
            },
            if w > 0 {
                paint(&warnings, Style::Yellow)
            } else {
                warnings
            },
            files,
            if files == 1 { "" } else { "s" }
        )?;
    }
    Ok(if e > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One problem of the validate document as `file:line:column: field
/// `F`: message` (as [`automate_datastore::Problem`] displays it).
fn problem_line(p: &serde_json::Value) -> String {
    let mut s = p["file"].as_str().unwrap_or_default().to_string();
    let (line, column) = (
        p["line"].as_u64().unwrap_or(0),
        p["column"].as_u64().unwrap_or(0),
    );
    if line > 0 {
        s.push_str(&format!(":{line}"));
        if column > 0 {
            s.push_str(&format!(":{column}"));
        }
    }
    s.push_str(": ");
    if let Some(field) = p["field"].as_str() {
        s.push_str(&format!("field `{field}`: "));
    }
    s.push_str(p["message"].as_str().unwrap_or_default());
    s
}
