//! `automate new domain|namespace|class|instance|method PATH`: a new,
//! empty object in ManageIQ's export layout under `--datastore`
//! ([`automate_datastore::scaffold`]), printed file by file.

use super::Global;
use automate_datastore::scaffold::{self, NewKind};
use std::process::ExitCode;

/// What `automate new` creates.
#[derive(Debug, clap::Subcommand)]
pub enum NewCmd {
    /// A domain: `DOMAIN/__domain__.yaml` (source user, enabled, highest priority + 1).
    Domain {
        /// The domain's name.
        name: String,
    },
    /// A namespace: `DOMAIN/NS[/SUB...]/__namespace__.yaml` (its parents must exist).
    Namespace {
        /// `DOMAIN/NS[/SUB...]`.
        path: String,
    },
    /// A class: `DOMAIN/NS/CLASS.class/__class__.yaml` with an `execute` method field.
    Class {
        /// `DOMAIN/NS[/SUB...]/CLASS`.
        path: String,
        /// A state machine's schema instead: states `pre`, `execute`, `post`.
        #[arg(long)]
        state_machine: bool,
    },
    /// An instance of a class, with no values of its own (the class defaults apply).
    Instance {
        /// `DOMAIN/NS[/SUB...]/CLASS/INSTANCE`.
        path: String,
    },
    /// A method of a class: `__methods__/METHOD.yaml` and its `METHOD.rhai` body.
    Method {
        /// `DOMAIN/NS[/SUB...]/CLASS/METHOD`.
        path: String,
        /// The method's language (only `rhai` runs here).
        #[arg(long, default_value = "rhai")]
        language: String,
    },
}

/// Runs `automate new ...` on `--datastore`.
pub fn run(global: &Global, cmd: NewCmd) -> anyhow::Result<ExitCode> {
    let (kind, path, language) = match cmd {
        NewCmd::Domain { name } => (NewKind::Domain, name, None),
        NewCmd::Namespace { path } => (NewKind::Namespace, path, None),
        NewCmd::Class {
            path,
            state_machine,
        } => (NewKind::Class { state_machine }, path, None),
        NewCmd::Instance { path } => (NewKind::Instance, path, None),
        NewCmd::Method { path, language } => (NewKind::Method, path, Some(language)),
    };
    if let Some(remote) = super::remote::find(global)? {
        eprintln!(
            "note: the files are written to the local datastore {}; the service at {} \
             sees them when it reloads that root",
            global.datastore.display(),
            remote.url()
        );
    }
    let s = scaffold::create(&global.datastore, kind, &path, language.as_deref())?;
    println!("Created {} {}:", s.kind.as_str(), s.path);
    for f in &s.files {
        println!("  {}", global.datastore.join(f).display());
    }
    Ok(ExitCode::SUCCESS)
}
