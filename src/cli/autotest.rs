//! `automate test [PATH|DOMAIN...] [--junit FILE]`: runs the test files
//! of the datastore (a class's `__tests__/*.yaml`, a domain's
//! `tests/*.yaml`; [`automate_datastore::tests_file`]), each case in a
//! sandbox over a clean store ([`automate_events::autotest`]). Prints one
//! line per case (`ok - name`, or `FAILED - name` with expected against
//! actual), then `N passed, M failed`; `--junit FILE` writes a JUnit XML
//! report for CI systems. Exits 1 when a case failed or a file is bad.

use super::Global;
use anyhow::Context;
use automate_datastore::tests_file::{self, TestFile};
use automate_datastore::Datastore;
use automate_engine::Engine;
use automate_events::autotest::Runner;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `automate test`'s arguments.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files, directories holding them, or domain names (default:
    /// every test file of the datastore).
    pub targets: Vec<String>,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// One case's result.
struct CaseResult {
    name: String,
    failures: Vec<String>,
}

/// Runs the tests; see the module documentation.
pub fn run(global: &Global, args: TestArgs) -> anyhow::Result<ExitCode> {
    let files = files_of(&global.datastore, &args.targets)?;
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in problems.iter().filter(|p| !p.warning) {
        eprintln!("warning: {p}");
    }
    let (mut engine, _runner) = automate_control::with_control(Engine::new(Arc::new(ds)));
    engine.options.emit_tracing = false;
    let runner = Runner::new(engine);
    let mut out = std::io::stdout().lock();
    let mut suites: Vec<(PathBuf, Vec<CaseResult>)> = Vec::new();
    for file in &files {
        writeln!(out, "# {}", file.display())?;
        let mut results = Vec::new();
        let parsed: Result<TestFile, String> = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|t| tests_file::parse(&t, file).map_err(|p| p.to_string()));
        match parsed {
            Err(problem) => {
                writeln!(out, "FAILED - {}", file.display())?;
                writeln!(out, "    {problem}")?;
                results.push(CaseResult {
                    name: file.display().to_string(),
                    failures: vec![problem],
                });
            }
            Ok(tf) => {
                for case in &tf.cases {
                    let failures = match runner.run(case) {
                        Ok(f) => f,
                        Err(e) => vec![format!("could not run: {e}")],
                    };
                    if failures.is_empty() {
                        writeln!(out, "ok - {}", case.name)?;
                    } else {
                        writeln!(out, "FAILED - {}", case.name)?;
                        for f in &failures {
                            writeln!(out, "    {f}")?;
                        }
                    }
                    results.push(CaseResult {
                        name: case.name.clone(),
                        failures,
                    });
                }
            }
        }
        suites.push((file.clone(), results));
    }
    let all = suites.iter().flat_map(|(_, r)| r);
    let failed = all.clone().filter(|r| !r.failures.is_empty()).count();
    let passed = all.count() - failed;
    writeln!(out, "{passed} passed, {failed} failed")?;
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&suites))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The test files `targets` name (every one under `root` when none).
fn files_of(root: &Path, targets: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    if targets.is_empty() {
        return Ok(tests_file::find(root));
    }
    let mut out = Vec::new();
    for t in targets {
        let path = Path::new(t);
        if path.is_file() {
            out.push(path.to_path_buf());
        } else if path.is_dir() && path.join(tests_file::CLASS_TESTS_DIR).is_dir() {
            out.extend(tests_file::find(path));
        } else if path.is_dir()
            && (path.file_name().is_some_and(|n| {
                n == tests_file::CLASS_TESTS_DIR || n == tests_file::DOMAIN_TESTS_DIR
            }))
        {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else if path.is_dir() {
            out.extend(tests_file::find(path));
        } else {
            // A domain by name (as `datastore list` shows it).
            let dir = std::fs::read_dir(root)
                .with_context(|| format!("reading the datastore root {}", root.display()))?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(t))
                })
                .with_context(|| {
                    format!(
                        "`{t}` is neither a test file, a directory, nor a domain of {}",
                        root.display()
                    )
                })?;
            out.extend(tests_file::find(&dir));
        }
    }
    Ok(out)
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The results as JUnit XML: a `testsuite` per file, a `testcase` per
/// case, a `failure` with its expected-against-actual lines.
fn junit(suites: &[(PathBuf, Vec<CaseResult>)]) -> String {
    let total: usize = suites.iter().map(|(_, r)| r.len()).sum();
    let failed: usize = suites
        .iter()
        .flat_map(|(_, r)| r)
        .filter(|r| !r.failures.is_empty())
        .count();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"automate test\" tests=\"{total}\" failures=\"{failed}\">"
    );
    for (file, results) in suites {
        let name = xml(&file.display().to_string());
        let f = results.iter().filter(|r| !r.failures.is_empty()).count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{f}\">",
            results.len()
        );
        for r in results {
            let _ = write!(
                s,
                "    <testcase classname=\"{name}\" name=\"{}\"",
                xml(&r.name)
            );
            if r.failures.is_empty() {
                s.push_str("/>\n");
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml(&r.failures[0]),
                    xml(&r.failures.join("\n"))
                );
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}
