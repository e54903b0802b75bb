//! `automate datastore list|tree|show|validate`, `automate import`, `automate export`.

use super::Global;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum DatastoreCmd {
    /// List domains with priority, enabled flag, source and counts.
    List,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A domain directory, a zip, or a repository with `__domain__.yaml` at its root.
    pub source: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The domain to export.
    pub domain: String,
    /// The destination directory, or a `.zip` file.
    pub dest: PathBuf,
}

pub fn run(_global: &Global, _cmd: DatastoreCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub fn import(_global: &Global, _args: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub fn export(_global: &Global, _args: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
