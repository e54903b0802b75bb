//! `automate datastore list|tree|show|validate`, `automate import`, `automate export`.
//!
//! Thin front ends over [`automate_datastore`]: they load the datastore, call the
//! library, and print text (tables with a header row) or, with `--json`, one
//! JSON document (`list`, `tree`, `show`, `validate`, `import --preview`).
//! `validate` also checks the control policy files (`automate_control::check`);
//! `import --preview` writes nothing; `export` takes one namespace or class,
//! or every domain (`*`). Problems found while loading are counted on stderr
//! with a pointer to `datastore validate`.

use super::table::{paint, Style, Table};
use super::Global;
use anyhow::{bail, Context};
use automate_datastore::export::{self, ExportOptions};
use automate_datastore::import::{self, ImportOptions};
use automate_datastore::index::{ClassDef, FieldDef, Index, InstanceDef, MethodDef};
use automate_datastore::{fs as dsfs, validate, Class, Domain, Namespace};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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
}

/// `automate import`'s source and options ([`ImportOptions`]).
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A domain directory, a directory of domains, a zip, or a repository with
    /// `__domain__.yaml` at its root.
    pub source: PathBuf,
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

/// Runs one `automate datastore` command on `--datastore`; `validate`
/// exits 1 when it finds an error (warnings alone exit 0).
pub fn run(global: &Global, cmd: DatastoreCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DatastoreCmd::List { json } => list(&global.datastore, json),
        DatastoreCmd::Tree { path, json } => tree(&global.datastore, path.as_deref(), json),
        DatastoreCmd::Show { path, json } => show(&global.datastore, &path, json),
        DatastoreCmd::Validate { json } => validate_cmd(&global.datastore, json),
        DatastoreCmd::Reload { json } => super::reload::run(global, json),
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
    if args.preview {
        let p = import::preview(&global.datastore, &args.source, &opts)?;
        for w in &p.summary.warnings {
            eprintln!("warning: {w}");
        }
        render_preview(&mut std::io::stdout().lock(), &p, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(remote) = super::remote::find(global)? {
        return import_through_api(&remote, &args.source, &opts);
    }
    let s = import::import(&global.datastore, &args.source, &opts)?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    let c = s.counts;
    println!(
        "{} domain {} (priority {}, {}, source {}) into {}: {} namespaces, {} classes, {} \
         instances, {} methods ({} files)",
        if s.replaced { "Replaced" } else { "Imported" },
        s.domain,
        s.priority,
        if s.enabled { "enabled" } else { "disabled" },
        s.source.as_str(),
        s.path.display(),
        c.namespaces,
        c.classes,
        c.instances,
        c.methods,
        s.files
    );
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
        "Preview (nothing written): {} domain {} (priority {}, {}, source {}) into {}: {} \
         namespaces, {} classes, {} instances, {} methods; {} files to add, {} to update, {} to \
         remove, {} unchanged",
        if s.replaced { "replace" } else { "import" },
        s.domain,
        s.priority,
        if s.enabled { "enabled" } else { "disabled" },
        s.source.as_str(),
        s.path.display(),
        c.namespaces,
        c.classes,
        c.instances,
        c.methods,
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

/// Domains sorted as the index orders them: highest priority first, then name.
fn by_priority(domains: &[Domain]) -> Vec<&Domain> {
    let mut v: Vec<&Domain> = domains.iter().collect();
    v.sort_by(|a, b| {
        b.priority()
            .cmp(&a.priority())
            .then_with(|| a.name().cmp(b.name()))
    });
    v
}

fn list(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let domains = load(root)?;
    let ordered = by_priority(&domains);
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<serde_json::Value> = ordered
            .iter()
            .map(|d| {
                let c = d.counts();
                json!({
                    "name": d.name(),
                    "priority": d.priority(),
                    "enabled": d.enabled(),
                    "source": d.source().as_str(),
                    "namespaces": c.namespaces,
                    "classes": c.classes,
                    "instances": c.instances,
                    "methods": c.methods,
                })
            })
            .collect();
        super::table::print_json(&mut out, &serde_json::Value::Array(items))?;
        return Ok(ExitCode::SUCCESS);
    }
    if domains.is_empty() {
        println!("no domains in `{}`", root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "DOMAIN",
        "PRIORITY",
        "ENABLED",
        "SOURCE",
        "NAMESPACES",
        "CLASSES",
        "INSTANCES",
        "METHODS",
    ])
    .right(&[1, 4, 5, 6, 7]);
    for d in ordered {
        let c = d.counts();
        t.row(vec![
            d.name().to_string(),
            d.priority().to_string(),
            if d.enabled() { "yes" } else { "no" }.to_string(),
            d.source().as_str().to_string(),
            c.namespaces.to_string(),
            c.classes.to_string(),
            c.instances.to_string(),
            c.methods.to_string(),
        ]);
    }
    t.print(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// The width of each column (in characters) over all rows.
fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// tree

fn tree(root: &Path, path: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let domains = load(root)?;
    let ordered = by_priority(&domains);
    let segs: Vec<&str> = path
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let shown = tree_nodes(&ordered, &segs)?;
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<serde_json::Value> = shown.iter().map(tree_json).collect();
        super::table::print_json(&mut out, &serde_json::Value::Array(items))?;
    } else {
        let mut text = String::new();
        for s in shown {
            match &s.path {
                None => domain_header(s.domain, &mut text),
                Some(p) => text.push_str(&format!("{p}\n")),
            }
            print_node(s.node, 1, &mut text);
        }
        std::io::Write::write_all(&mut out, text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One subtree `datastore tree` shows: its domain, the path shown above
/// it (`None`: the domain's header line), and the node.
struct Shown<'a> {
    domain: &'a Domain,
    path: Option<String>,
    node: Node<'a>,
}

/// The subtrees at `segs`: every domain when empty; one domain (or a
/// path in it) when `segs[0]` names a domain; else every domain that
/// holds the partial path. Nothing found is an error saying what to run.
fn tree_nodes<'a>(ordered: &[&'a Domain], segs: &[&str]) -> anyhow::Result<Vec<Shown<'a>>> {
    if segs.is_empty() {
        return Ok(ordered
            .iter()
            .map(|d| Shown {
                domain: d,
                path: None,
                node: Node::Level(&d.namespaces, &d.classes),
            })
            .collect());
    }
    // A domain name first: only that domain.
    if let Some(d) = ordered
        .iter()
        .find(|d| d.name().eq_ignore_ascii_case(segs[0]))
    {
        return match find_node(&d.namespaces, &d.classes, &segs[1..]) {
            Some(node) => Ok(vec![Shown {
                domain: d,
                path: (segs.len() > 1).then(|| format!("{}/{}", d.name(), segs[1..].join("/"))),
                node,
            }]),
            None => bail!(
                "`{}` not found in domain {}; run `automate datastore tree {}` to see what it holds",
                segs[1..].join("/"),
                d.name(),
                d.name()
            ),
        };
    }
    // A partial path: every domain holding it.
    let found: Vec<Shown<'a>> = ordered
        .iter()
        .filter_map(|d| {
            find_node(&d.namespaces, &d.classes, segs).map(|node| Shown {
                domain: d,
                path: Some(format!("{}/{}", d.name(), segs.join("/"))),
                node,
            })
        })
        .collect();
    if found.is_empty() {
        bail!(
            "`{}` is neither a domain nor a namespace or class of any domain; run `automate \
             datastore tree` to see the whole datastore",
            segs.join("/")
        );
    }
    Ok(found)
}

fn tree_json(s: &Shown<'_>) -> serde_json::Value {
    let d = s.domain;
    let (namespaces, classes) = match s.node {
        Node::Level(ns, cl) => (namespaces_json(ns), classes_json(cl.iter().collect())),
        Node::Class(c) => (Vec::new(), classes_json(vec![c])),
    };
    json!({
        "domain": d.name(),
        "priority": d.priority(),
        "enabled": d.enabled(),
        "source": d.source().as_str(),
        "path": s.path.clone().unwrap_or_else(|| d.name().to_string()),
        "namespaces": namespaces,
        "classes": classes,
    })
}

fn namespaces_json(namespaces: &[Namespace]) -> Vec<serde_json::Value> {
    let mut nss: Vec<&Namespace> = namespaces.iter().collect();
    nss.sort_by_key(|n| n.name.to_lowercase());
    nss.into_iter()
        .map(|ns| {
            json!({
                "name": ns.name,
                "namespaces": namespaces_json(&ns.namespaces),
                "classes": classes_json(ns.classes.iter().collect()),
            })
        })
        .collect()
}

fn classes_json(mut classes: Vec<&Class>) -> Vec<serde_json::Value> {
    classes.sort_by_key(|c| c.name().to_lowercase());
    classes
        .into_iter()
        .map(|c| {
            let mut insts: Vec<&str> = c.instances.iter().map(|i| i.name()).collect();
            insts.sort_by_key(|n| n.to_lowercase());
            let mut methods: Vec<&str> = c.methods.iter().map(|m| m.name()).collect();
            methods.sort_by_key(|n| n.to_lowercase());
            json!({ "name": c.name(), "instances": insts, "methods": methods })
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Level(&'a [Namespace], &'a [Class]),
    Class(&'a Class),
}

fn find_node<'a>(
    namespaces: &'a [Namespace],
    classes: &'a [Class],
    segs: &[&str],
) -> Option<Node<'a>> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(Node::Level(namespaces, classes));
    };
    if let Some(ns) = namespaces
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(first))
    {
        if let Some(node) = find_node(&ns.namespaces, &ns.classes, rest) {
            return Some(node);
        }
    }
    if rest.is_empty() {
        if let Some(c) = classes
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(first))
        {
            return Some(Node::Class(c));
        }
    }
    None
}

fn print_node(node: Node<'_>, depth: usize, out: &mut String) {
    match node {
        Node::Level(ns, cl) => level(ns, cl, depth, out),
        Node::Class(c) => class_body(c, depth, out),
    }
}

fn domain_header(d: &Domain, out: &mut String) {
    out.push_str(&format!(
        "{} (priority {}, {}, {})\n",
        d.name(),
        d.priority(),
        if d.enabled() { "enabled" } else { "disabled" },
        d.source().as_str()
    ));
}

fn level(namespaces: &[Namespace], classes: &[Class], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let mut nss: Vec<&Namespace> = namespaces.iter().collect();
    nss.sort_by_key(|n| n.name.to_lowercase());
    for ns in nss {
        out.push_str(&format!("{pad}{}/\n", ns.name));
        level(&ns.namespaces, &ns.classes, depth + 1, out);
    }
    let mut cls: Vec<&Class> = classes.iter().collect();
    cls.sort_by_key(|c| c.name().to_lowercase());
    for c in cls {
        out.push_str(&format!("{pad}{} [class]\n", c.name()));
        class_body(c, depth + 1, out);
    }
}

fn class_body(c: &Class, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let mut insts: Vec<&str> = c.instances.iter().map(|i| i.name()).collect();
    insts.sort_by_key(|n| n.to_lowercase());
    for i in insts {
        out.push_str(&format!("{pad}{i}\n"));
    }
    let mut methods: Vec<&str> = c.methods.iter().map(|m| m.name()).collect();
    methods.sort_by_key(|n| n.to_lowercase());
    for m in methods {
        out.push_str(&format!("{pad}{m}() [method]\n"));
    }
}

// ---------------------------------------------------------------------------
// show

fn show(root: &Path, path: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let domains = load(root)?;
    let index = Index::build(&domains);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        bail!("give a path such as /System/Process or /ManageIQ/System/Process/Event");
    }
    let target = resolve_show(&index, &segs).with_context(|| {
        format!(
            "`{path}` is not a class, instance or method of any enabled domain; check it with \
             `automate datastore tree`"
        )
    })?;
    let text = match (&target, as_json) {
        (Target::Class(c), false) => class_text(c),
        (Target::Class(c), true) => pretty(&class_json(c))?,
        (Target::Instance(c, i, exact), false) => instance_text(c, i, *exact, segs.last().copied()),
        (Target::Instance(c, i, exact), true) => {
            pretty(&instance_json(c, i, *exact, segs.last().copied()))?
        }
        (Target::Method(c, m), false) => method_text(c, m),
        (Target::Method(c, m), true) => pretty(&method_json(c, m))?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn pretty(v: &serde_json::Value) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(v)?))
}

enum Target<'a> {
    Class(&'a Arc<ClassDef>),
    /// The class, the instance, and whether the name matched exactly (else `.missing`).
    Instance(&'a Arc<ClassDef>, &'a InstanceDef, bool),
    Method(&'a Arc<ClassDef>, &'a Arc<MethodDef>),
}

/// A class at `segs` (fully qualified or partial), else an instance or a
/// method of the class at `segs[..n-1]`.
fn resolve_show<'a>(index: &'a Index, segs: &[&str]) -> Option<Target<'a>> {
    let class_at = |segs: &[&str]| -> Option<&'a Arc<ClassDef>> {
        let (class, ns) = segs.split_last()?;
        let ns = ns.join("/");
        index
            .classes_at(&ns, class)
            .first()
            .or_else(|| index.class(&ns, class))
    };
    if let Some(c) = class_at(segs) {
        return Some(Target::Class(c));
    }
    let (last, parent) = segs.split_last()?;
    let (class, ns) = parent.split_last()?;
    let ns = ns.join("/");
    // `name()` asks for the method even when an instance has the same name.
    let (last, method_only) = match last.strip_suffix("()") {
        Some(m) => (m, true),
        None => (*last, false),
    };
    if method_only {
        return find_method(index, &ns, class, last);
    }
    // Partial path: the engine's domain search (instance, else `.missing`).
    if let Some(c) = index.resolve(&ns, class, last) {
        if let Some(i) = c.instance(last) {
            return Some(Target::Instance(c, i, true));
        }
    }
    if let Some(c) = index.class(&ns, class) {
        if let Some(i) = c.instance(last) {
            return Some(Target::Instance(c, i, true));
        }
    }
    if let Some(m) = find_method(index, &ns, class, last) {
        return Some(m);
    }
    let c = index
        .resolve(&ns, class, last)
        .or_else(|| index.class(&ns, class))?;
    let missing = c.instance(automate_datastore::index::MISSING)?;
    Some(Target::Instance(c, missing, false))
}

/// A method at a partial (overlay) or fully-qualified `ns/class/name`.
fn find_method<'a>(index: &'a Index, ns: &str, class: &str, name: &str) -> Option<Target<'a>> {
    if let Some(c) = index
        .classes_at(ns, class)
        .iter()
        .find(|c| c.method(name).is_some())
    {
        return c.method(name).map(|m| Target::Method(c, m));
    }
    let c = index.class(ns, class)?;
    c.method(name).map(|m| Target::Method(c, m))
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn class_json(c: &ClassDef) -> serde_json::Value {
    json!({
        "kind": "class",
        "path": c.fq_path(),
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "state_machine": c.is_state_machine(),
        "fields": c.fields.iter().map(FieldDef::to_json).collect::<Vec<_>>(),
        "instances": c.instances.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "methods": sorted_methods(c).iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
    })
}

fn sorted_methods(c: &ClassDef) -> Vec<&Arc<MethodDef>> {
    let mut v: Vec<&Arc<MethodDef>> = c.methods().collect();
    v.sort_by_key(|m| m.name.to_lowercase());
    v
}

fn class_text(c: &ClassDef) -> String {
    let mut out = format!(
        "class {} (domain {}{})\n",
        c.fq_path(),
        c.domain,
        if c.is_state_machine() {
            ", state machine"
        } else {
            ""
        }
    );
    let mut rows = vec![[
        "NAME",
        "AETYPE",
        "DATATYPE",
        "DEFAULT",
        "MESSAGE",
        "SUBST",
        "ON_ENTRY",
        "ON_EXIT",
        "ON_ERROR",
        "COLLECT",
        "MAX_RETRIES",
        "MAX_TIME",
    ]
    .map(String::from)
    .to_vec()];
    for f in &c.fields {
        rows.push(vec![
            f.name.clone(),
            f.aetype.as_str().to_string(),
            opt(&f.datatype).to_string(),
            opt(&f.default_value).to_string(),
            f.messages.join(","),
            f.substitute.to_string(),
            opt(&f.on_entry).to_string(),
            opt(&f.on_exit).to_string(),
            opt(&f.on_error).to_string(),
            opt(&f.collect).to_string(),
            opt(&f.max_retries).to_string(),
            opt(&f.max_time).to_string(),
        ]);
    }
    out.push_str(&table_string(&drop_empty_columns(rows)));
    out.push_str(&format!(
        "{} instance(s), {} method(s)\n",
        c.instances.len(),
        c.methods().count()
    ));
    out
}

/// Drops columns that are empty in every row but the header.
fn drop_empty_columns(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let keep: Vec<bool> = (0..cols)
        .map(|i| {
            i < 2
                || rows
                    .iter()
                    .skip(1)
                    .any(|r| r.get(i).is_some_and(|s| !s.is_empty()))
        })
        .collect();
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .filter(|(i, _)| keep[*i])
                .map(|(_, s)| s)
                .collect()
        })
        .collect()
}

fn table_string(rows: &[Vec<String>]) -> String {
    let widths = column_widths(rows);
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count()) + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One merged field of an instance: (field, value, from_instance, the instance's value parts).
fn merged(c: &ClassDef, i: &InstanceDef) -> Vec<serde_json::Value> {
    c.fields
        .iter()
        .zip(&i.values)
        .map(|(f, v)| {
            let from_instance = v.as_ref().is_some_and(|v| v.value.is_some());
            let pick = |inst: Option<&Option<String>>, class: &Option<String>| -> Option<String> {
                inst.and_then(|s| s.clone()).or_else(|| class.clone())
            };
            json!({
                "name": f.name,
                "aetype": f.aetype.as_str(),
                "datatype": f.datatype,
                "value": if from_instance { v.as_ref().and_then(|v| v.value.clone()) } else { f.default_value.clone() },
                "from_instance": from_instance,
                "on_entry": pick(v.as_ref().map(|v| &v.on_entry), &f.on_entry),
                "on_exit": pick(v.as_ref().map(|v| &v.on_exit), &f.on_exit),
                "on_error": pick(v.as_ref().map(|v| &v.on_error), &f.on_error),
                "collect": pick(v.as_ref().map(|v| &v.collect), &f.collect),
                "max_retries": pick(v.as_ref().map(|v| &v.max_retries), &f.max_retries),
                "max_time": pick(v.as_ref().map(|v| &v.max_time), &f.max_time),
            })
        })
        .collect()
}

fn instance_json(
    c: &ClassDef,
    i: &InstanceDef,
    exact: bool,
    asked: Option<&str>,
) -> serde_json::Value {
    json!({
        "kind": "instance",
        "path": format!("{}/{}", c.fq_path(), i.name),
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "instance": i.name,
        "requested": asked,
        "fallback_to_missing": !exact,
        "fields": merged(c, i),
        "unknown_fields": i.unknown_fields,
    })
}

fn instance_text(c: &ClassDef, i: &InstanceDef, exact: bool, asked: Option<&str>) -> String {
    let mut out = format!(
        "instance {}/{} (domain {})\n",
        c.fq_path(),
        i.name,
        c.domain
    );
    if !exact {
        out.push_str(&format!(
            "  (no instance `{}`: the engine falls back to `.missing`)\n",
            asked.unwrap_or("")
        ));
    } else if c.method(&i.name).is_some() {
        out.push_str(&format!(
            "  (a method has the same name: show it with `{}/{}()`)\n",
            c.fq_path(),
            i.name
        ));
    }
    let mut rows = vec![[
        "",
        "FIELD",
        "AETYPE",
        "VALUE",
        "ON_ENTRY",
        "ON_EXIT",
        "ON_ERROR",
        "COLLECT",
        "MAX_RETRIES",
        "MAX_TIME",
    ]
    .map(String::from)
    .to_vec()];
    for m in merged(c, i) {
        let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
        rows.push(vec![
            if m["from_instance"].as_bool() == Some(true) {
                "*"
            } else {
                " "
            }
            .to_string(),
            s("name"),
            s("aetype"),
            s("value"),
            s("on_entry"),
            s("on_exit"),
            s("on_error"),
            s("collect"),
            s("max_retries"),
            s("max_time"),
        ]);
    }
    // Keep the marker, name and aetype columns; drop others that are all empty.
    let rows = drop_empty_columns_from(rows, 3);
    out.push_str(&table_string(&rows));
    out.push_str("  (* value set by the instance; others are class defaults)\n");
    if !i.unknown_fields.is_empty() {
        out.push_str(&format!(
            "  warning: values for fields not in the class: {}\n",
            i.unknown_fields.join(", ")
        ));
    }
    out
}

fn drop_empty_columns_from(rows: Vec<Vec<String>>, always: usize) -> Vec<Vec<String>> {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let keep: Vec<bool> = (0..cols)
        .map(|i| {
            i < always
                || rows
                    .iter()
                    .skip(1)
                    .any(|r| r.get(i).is_some_and(|s| !s.trim().is_empty()))
        })
        .collect();
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .filter(|(i, _)| keep[*i])
                .map(|(_, s)| s)
                .collect()
        })
        .collect()
}

fn method_json(c: &ClassDef, m: &MethodDef) -> serde_json::Value {
    json!({
        "kind": "method",
        "path": m.fqname,
        "domain": &*c.domain,
        "namespace": c.namespace,
        "class": c.name,
        "method": m.name,
        "location": m.location,
        "language": m.language,
        "scope": m.scope,
        "embedded_methods": m.embedded_methods,
        "inputs": m.inputs.iter().map(FieldDef::to_json).collect::<Vec<_>>(),
        "body": m.body.as_deref(),
    })
}

fn method_text(c: &ClassDef, m: &MethodDef) -> String {
    let mut out = format!(
        "method {} (domain {})\n  location: {}\n  language: {}\n  scope: {}\n",
        m.fqname, c.domain, m.location, m.language, m.scope
    );
    if !m.embedded_methods.is_empty() {
        out.push_str(&format!(
            "  embedded_methods: {}\n",
            m.embedded_methods.join(", ")
        ));
    }
    if m.inputs.is_empty() {
        out.push_str("  inputs: none\n");
    } else {
        out.push_str("  inputs:\n");
        let mut rows = vec![["NAME", "DATATYPE", "DEFAULT"].map(String::from).to_vec()];
        for f in &m.inputs {
            rows.push(vec![
                f.name.clone(),
                opt(&f.datatype).to_string(),
                opt(&f.default_value).to_string(),
            ]);
        }
        out.push_str(&table_string(&rows));
    }
    match m.body.as_deref() {
        Some(body) if !body.is_empty() => {
            out.push_str("  body:\n");
            for line in body.lines() {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
        _ => out.push_str("  body: none\n"),
    }
    out
}

// ---------------------------------------------------------------------------
// validate

/// The control policy files' problems (`DATASTORE/control/*.yaml`, as
/// `automate run` loads them) as datastore problems: errors at file:line,
/// naming the field.
fn control_problems(root: &Path) -> Vec<automate_datastore::Problem> {
    automate_control::check(&automate_control::control_dir(root))
        .into_iter()
        .map(|e| {
            let mut p = automate_datastore::Problem::new(&e.file, e.message).at_line(e.line);
            if !e.field.is_empty() {
                p.field = Some(e.field);
            }
            p
        })
        .collect()
}

fn validate_cmd(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    if !root.is_dir() {
        bail!(
            "the datastore `{}` is not a directory; pass --datastore DIR",
            root.display()
        );
    }
    let runner = automate_methods::RhaiRunner::new();
    let rhai_check =
        move |m: &automate_datastore::Method, path: &Path| runner.method_problems(m, path);
    let mut report = validate::validate_report(root, &[&rhai_check]);
    report.errors.extend(control_problems(root));
    let all = report.all();
    let (e, w) = (report.errors.len(), report.warnings.len());
    let files: std::collections::BTreeSet<_> = all.iter().map(|p| &p.file).collect();
    let mut out = std::io::stdout().lock();
    if json {
        let problems: Vec<serde_json::Value> = all
            .iter()
            .map(|p| {
                json!({
                    "file": p.file.display().to_string(),
                    "line": p.line,
                    "column": p.column,
                    "field": p.field,
                    "message": p.message,
                    "severity": if report.warnings.contains(p) { "warning" } else { "error" },
                })
            })
            .collect();
        super::table::print_json(
            &mut out,
            &json!({
                "root": root.display().to_string(),
                "errors": e,
                "warnings": w,
                "files": files.len(),
                "problems": problems,
            }),
        )?;
    } else {
        use std::io::Write;
        for p in &all {
            if report.warnings.contains(p) {
                writeln!(out, "{p} ({})", paint("warning", Style::Yellow))?;
            } else {
                writeln!(out, "{p}")?;
            }
        }
        if all.is_empty() {
            writeln!(
                out,
                "{}: {}",
                root.display(),
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
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        )?;
    }
    Ok(if e > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
