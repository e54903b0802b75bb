//! `automate instantiate URI`: run the engine once and print what it did.

use super::Global;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InstantiateArgs {
    /// The URI, e.g. `/System/Process/Event?event_type=USER_RUN_VM`.
    pub uri: String,
}

pub fn run(_global: &Global, _args: InstantiateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
