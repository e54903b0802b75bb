//! Hot reload of the automation stack: the datastore's index, every Rhai
//! method compiled, and the control policies, all-or-nothing.
//!
//! [`Reloader::reload`] validates the datastore root (the errors of
//! `automate datastore validate`, Rhai compile errors included), reads it
//! into a new index, compiles its methods and loads `control/`; only when
//! all of that succeeded are the three swapped in (the compiled methods,
//! the policies for the new index, then the index). A failure keeps
//! everything as it was and the [`ReloadReport`] lists every problem with
//! its file and line. An instantiation that started before the swap keeps
//! the `Arc` of the index it started with (and its policies: [`Control`]
//! keeps the set of every index still held).

use super::{control_dir, load_with, Control};
use automate_datastore::validate::validate_report;
use automate_datastore::{Datastore, Reload, ReloadProblem, ReloadReport};
use automate_engine::Engine;
use automate_methods::{RhaiLimits, RhaiRunner};
use automate_requests::with_requests;
use std::sync::{Arc, Mutex};

/// Reloads one engine's datastore, methods and policies
/// ([`with_control_reloadable`] builds it with the engine).
pub struct Reloader {
    datastore: Arc<Datastore>,
    runner: Arc<RhaiRunner>,
    control: Arc<Control>,
    /// Held for the length of a reload: one at a time.
    running: Mutex<()>,
    /// The last report.
    last: Mutex<Option<ReloadReport>>,
    /// Told of every reload's report, in the order they were added (the
    /// service's metrics count them; cluster mode publishes the domains
    /// that changed).
    observers: Mutex<Vec<Observer>>,
}

/// What [`Reloader::observe`] takes.
type Observer = Box<dyn Fn(&ReloadReport) + Send + Sync>;

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("root", &self.datastore.root())
            .finish_non_exhaustive()
    }
}

/// [`super::with_control_and_limits`], and the [`Reloader`] of the engine it
/// returns: the composition a service that reloads uses.
pub fn with_control_reloadable(
    engine: Engine,
    limits: RhaiLimits,
) -> (Engine, Arc<RhaiRunner>, Arc<Reloader>) {
    let control = Arc::new(Control::new());
    let (engine, runner) =
        automate_methods::with_methods_and_limits(with_requests(engine), limits, control.clone());
    let reloader = Arc::new(Reloader {
        datastore: engine.datastore().clone(),
        runner: runner.clone(),
        control,
        running: Mutex::new(()),
        last: Mutex::new(None),
        observers: Mutex::new(Vec::new()),
    });
    (engine, runner, reloader)
}

impl Reloader {
    /// Calls `f` with the report of every reload from now on, after the
    /// observers added before it (kept for the reloader's life). `f` runs
    /// while the reload still holds the reloader: it must not reload
    /// (hand the report to a thread of its own for anything long). Always
    /// `true` (an observer is never refused).
    pub fn observe(&self, f: impl Fn(&ReloadReport) + Send + Sync + 'static) -> bool {
        self.observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
        true
    }

    /// How many domains the running index holds.
    pub fn domains(&self) -> usize {
        self.datastore.index().domains().len()
    }

    /// The errors (and, second, the warnings) of the datastore root as it is
    /// on disk now: a missing root, a root holding no domain, what
    /// `datastore validate` calls an error (bad YAML, Rhai that does not
    /// compile, ...), a bad control policy file. What `automate run`
    /// refuses to start with, and what fails a reload.
    pub fn check(&self) -> (Vec<ReloadProblem>, Vec<ReloadProblem>) {
        let root = self.datastore.root();
        if !root.is_dir() {
            return (
                vec![ReloadProblem::new(
                    root,
                    0,
                    "the datastore root does not exist or is not a directory",
                )],
                Vec::new(),
            );
        }
        let runner = self.runner.clone();
        let check = move |m: &automate_datastore::Method, path: &std::path::Path| {
            runner.method_problems(m, path)
        };
        let report = validate_report(root, &[&check]);
        let mut problems: Vec<ReloadProblem> = report.errors.iter().map(Into::into).collect();
        let warnings = report.warnings.iter().map(Into::into).collect();
        if let Err(e) = load_with(self.control.conditions(), &control_dir(root)) {
            problems.push(control_problem(&e));
        }
        (problems, warnings)
    }

    /// Reloads now (see the module doc), logs the outcome on evm.log
    /// (`MIQ(Datastore#reload) ...`, one more line per problem) and
    /// returns the report, which [`Reload::last`] keeps.
    pub fn reload_now(&self) -> ReloadReport {
        let report = self.reload_quietly();
        if report.ok {
            tracing::info!(target: "evm", "{}", report.log_line());
        } else {
            tracing::error!(target: "evm", "{}", report.log_line());
            for p in &report.problems {
                tracing::error!(target: "evm", "MIQ(Datastore#reload) {p}");
            }
        }
        report
    }

    /// [`Reloader::reload_now`] without the log lines (a command that
    /// prints the report itself).
    pub fn reload_quietly(&self) -> ReloadReport {
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let (mut problems, warnings) = self.check();
        let mut changed = Vec::new();
        if problems.is_empty() {
            let candidate = self.datastore.candidate();
            if candidate.domains == 0 {
                problems.push(ReloadProblem::new(
                    self.datastore.root(),
                    0,
                    "the datastore root holds no domain",
                ));
            }
            // The files may have changed since the check: what the index
            // holds is compiled and loaded again before it is swapped in.
            problems.extend(candidate.errors().map(ReloadProblem::from));
            let (compiled, errors) = self.runner.compile_index(&candidate.index);
            problems.extend(errors.iter().map(|e| ReloadProblem {
                file: e.fqname.clone(),
                line: e.line,
                message: format!("Rhai syntax error: {} (position {})", e.message, e.col),
            }));
            let set = load_with(
                self.control.conditions(),
                &control_dir(self.datastore.root()),
            );
            match set {
                Ok(set) if problems.is_empty() => {
                    self.runner.install(compiled);
                    self.control
                        .install(self.datastore.root(), &candidate.index, set);
                    changed = self.datastore.install(candidate);
                }
                Ok(_) => {}
                Err(e) => problems.push(control_problem(&e)),
            }
        }
        let report = ReloadReport::now(changed, problems, warnings);
        for observe in self
            .observers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            observe(&report);
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        report
    }
}

impl Reload for Reloader {
    fn reload(&self) -> ReloadReport {
        self.reload_now()
    }

    fn last(&self) -> Option<ReloadReport> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn method_problems(
        &self,
        m: &automate_datastore::Method,
        yaml_path: &std::path::Path,
    ) -> Option<Vec<automate_datastore::Problem>> {
        Some(self.runner.method_problems(m, yaml_path))
    }
}

fn control_problem(e: &super::ControlError) -> ReloadProblem {
    let message = if e.field.is_empty() {
        e.message.clone()
    } else {
        format!("{}: {}", e.field, e.message)
    };
    ReloadProblem::new(&e.file, e.line, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    /// A domain `D` with `/Ns/Cls` holding the Rhai method `m` (`body`).
    fn domain(root: &Path, body: &str) {
        let d = root.join("D");
        write(
            &d.join("__domain__.yaml"),
            "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n    name: D\n    \
             priority: 1\n    enabled: true\n",
        );
        write(
            &d.join("Ns/__namespace__.yaml"),
            "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n    name: Ns\n",
        );
        write(
            &d.join("Ns/Cls.class/__class__.yaml"),
            "---\nobject_type: class\nversion: 1.0\nobject:\n  attributes:\n    name: Cls\n  \
             schema:\n  - field:\n      aetype: method\n      name: meth1\n      datatype: string\n      \
             priority: 1\n",
        );
        write(
            &d.join("Ns/Cls.class/__methods__/m.yaml"),
            "---\nobject_type: method\nversion: 1.0\nobject:\n  attributes:\n    name: m\n    \
             scope: instance\n    language: rhai\n    location: inline\n  inputs: []\n",
        );
        write(&d.join("Ns/Cls.class/__methods__/m.rhai"), body);
    }

    #[test]
    fn every_observer_is_told_of_every_reload() {
        let tmp = tempfile::tempdir().unwrap();
        domain(tmp.path(), "let a = 1;\n");
        let (ds, _) = Datastore::open(tmp.path());
        let (_engine, _runner, reloader) =
            with_control_reloadable(Engine::new(Arc::new(ds)), RhaiLimits::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        for who in ["metrics", "cluster"] {
            let seen = seen.clone();
            assert!(reloader.observe(move |r| seen.lock().unwrap().push((who, r.ok))));
        }
        reloader.reload_now();
        domain(tmp.path(), "let = ;\n");
        reloader.reload_now();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                ("metrics", true),
                ("cluster", true),
                ("metrics", false),
                ("cluster", false)
            ]
        );
    }

    const POLICY: &str =
        "policies:\n  - name: one\n    events: [vm_start]\n    actions:\n      - log: hi\n";

    #[test]
    fn a_reload_swaps_everything_in_or_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        domain(root, "let a = 1;\n");
        let (ds, problems) = Datastore::open(root);
        assert!(problems.is_empty(), "{problems:?}");
        let (engine, _runner, reloader) =
            with_control_reloadable(Engine::new(Arc::new(ds)), RhaiLimits::default());
        let ds = engine.datastore().clone();

        let report = reloader.reload_now();
        assert!(report.ok, "{report:?}");
        assert!(report.changed_domains.is_empty(), "{report:?}");

        write(&root.join("control/p.yaml"), POLICY);
        domain(root, "let a = 2;\n");
        let report = reloader.reload_now();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.changed_domains, vec!["D".to_string()]);
        let good = ds.index();
        let set = reloader.control.control_for(&ds).expect("policies");
        assert_eq!(set.policies.len(), 1);

        // A policy file that does not load and a method that does not
        // compile: nothing is swapped in, both are named with their line.
        write(
            &root.join("control/q.yaml"),
            "policies:\n  - name: two\n    bogus: 1\n",
        );
        domain(root, "let a = 3;\nlet = ;\n");
        let report = reloader.reload_now();
        assert!(!report.ok);
        assert!(report.changed_domains.is_empty());
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.file.ends_with("m.rhai") && p.line == 2),
            "{report:?}"
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.file.ends_with("q.yaml") && p.line > 0),
            "{report:?}"
        );
        assert!(Arc::ptr_eq(&good, &ds.index()), "the running index is kept");
        let kept = reloader.control.control_for(&ds).expect("policies");
        assert!(Arc::ptr_eq(&set, &kept), "the running policies are kept");
        assert_eq!(reloader.last(), Some(report));

        // Fixed (with a second policy): the next reload swaps in, and an
        // instantiation still holding the old index keeps its policies.
        write(
            &root.join("control/q.yaml"),
            "policies:\n  - name: two\n    events: [vm_start]\n    actions:\n      - log: two\n",
        );
        domain(root, "let a = 4;\n");
        let report = reloader.reload_now();
        assert!(report.ok, "{report:?}");
        assert!(!Arc::ptr_eq(&good, &ds.index()));
        let new = reloader.control.control_for(&ds).expect("new");
        assert_eq!(new.policies.len(), 2);
        let old = reloader
            .control
            .control_for_index(root, &good)
            .expect("old");
        assert!(Arc::ptr_eq(&old, &set), "the old index's policies");
    }
}
