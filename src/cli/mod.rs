//! The `automate` command line: argument parsing (clap) and one module per
//! command family. Commands report errors with their cause chain on stderr
//! and exit 1 (bad input, failed work) or 2 (bad usage, from clap).

pub mod api;
pub mod autotest;
pub mod cluster;
pub mod compose;
pub mod datastore;
pub mod db;
pub mod demo;
pub mod events;
pub mod instantiate;
pub mod logfile;
pub mod method;
pub mod notifications;
pub mod operations;
pub mod password;
pub mod reload;
pub mod remote;
pub mod replay;
pub mod request;
pub mod retries;
pub mod run;
pub mod scaffold;
pub mod status;
pub mod table;
pub mod vmdb;
pub mod watch;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// automate: ManageIQ Automate, re-created in Rust, running Rhai methods.
#[derive(Debug, Parser)]
#[command(name = "automate", version, about, propagate_version = true)]
pub struct Cli {
    /// `--datastore`, `--db`, `--log-format`.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The datastore root holding the domains.
    #[arg(
        long,
        global = true,
        default_value = "datastore",
        env = "AUTOMATE_DATASTORE"
    )]
    pub datastore: PathBuf,
    /// The object store (a redb file) holding VMs, hosts, events and retries.
    #[arg(
        long,
        global = true,
        default_value = "automate.redb",
        env = "AUTOMATE_DB"
    )]
    pub db: PathBuf,
    /// Log format on stderr: `text` (ManageIQ's line format) or `json`.
    #[arg(long, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// Go through this running service's REST API (`http://HOST:PORT`)
    /// instead of opening the store; default: the service advertised
    /// beside `--db`, if one runs.
    #[arg(long, global = true, env = "AUTOMATE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The API token: the one to send with `--server` (default: the
    /// advertised one), and for `run` and `api` the one to serve with
    /// (replacing `api.token`).
    #[arg(long, global = true, env = API_TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// Colour on stdout: `auto` (a terminal only), `always`, `never`;
    /// `NO_COLOR` set and not empty turns it off in every case.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: table::ColorChoice,
}

/// `--log-format`: how lines on stderr (and, for `run` and `request`, in
/// the log files) are written: `text` is ManageIQ's line format, `json`
/// one JSON object a line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    // No `///` on the variants: clap would list them with their doc in
    // every `--help`, changing its layout.
    #[allow(missing_docs)]
    Text,
    #[allow(missing_docs)]
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API (automation requests, datastore, objects) without catchers.
    Api(api::ApiArgs),
    /// Play the seed's event scenario on the shipped datastore and print the evm.log lines.
    Demo(demo::DemoArgs),
    /// Inspect and check the datastore.
    #[command(subcommand)]
    Datastore(datastore::DatastoreCmd),
    /// The cluster: its nodes, leases and event queue (`cluster status`).
    #[command(subcommand)]
    Cluster(status::ClusterCmd),
    /// Check and back up the object store (the redb file).
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Import a domain from a directory, a zip or a repository.
    Import(datastore::ImportArgs),
    /// Export a domain to a directory or a zip.
    Export(datastore::ExportArgs),
    /// Scaffold a domain, namespace, class, instance or method in ManageIQ's layout.
    #[command(subcommand)]
    New(scaffold::NewCmd),
    /// Instantiate an Automate URI and print the trace and the object tree.
    Instantiate(instantiate::InstantiateArgs),
    /// Re-run recorded events in a sandbox and show whose outcome changed.
    Replay(replay::ReplayArgs),
    /// Run the datastore's test files (`__tests__/`, `tests/`) in sandboxes.
    Test(autotest::TestArgs),
    /// Run one method.
    #[command(subcommand)]
    Method(method::MethodCmd),
    /// Notifications methods created (`evm.create_notification`).
    #[command(subcommand)]
    Notifications(notifications::NotificationsCmd),
    /// State-machine retries scheduled in the object store.
    #[command(subcommand)]
    Retries(retries::RetriesCmd),
    /// Run the event pipeline from automate.yaml: catchers, durable queue, workers, Automate.
    Run(run::RunArgs),
    /// Stored events.
    #[command(subcommand)]
    Events(events::EventsCmd),
    /// Send one provider event through the handler and Automate.
    #[command(subcommand)]
    Event(events::EventCmd),
    /// Stored objects: `vmdb show vm <id>` (attributes, tags, custom attributes).
    #[command(subcommand)]
    Vmdb(vmdb::VmdbCmd),
    /// Provider operations (vm.stop() and friends): list them.
    #[command(subcommand)]
    Operations(operations::OperationsCmd),
    /// Automation requests: create, approve, deny, list, show.
    Request(request::RequestArgs),
    /// ManageIQ v2 passwords: encrypt, decrypt, make a key file.
    #[command(subcommand)]
    Password(password::PasswordCmd),
    /// Print a shell completion script: `automate completions bash > /etc/bash_completion.d/automate`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The environment variable whose value (when set and not empty) replaces
/// `api.token` of the configuration file.
pub const API_TOKEN_ENV: &str = "AUTOMATE_API_TOKEN";

/// Reads and checks `automate.yaml` as every command does: `--token`
/// (or the [`API_TOKEN_ENV`] variable clap reads for it), when given and
/// not empty, replaces `api.token`.
pub fn load_config(
    global: &Global,
    path: &std::path::Path,
) -> Result<automate_events::config::Config, automate_events::config::ConfigError> {
    automate_events::config::Config::load_with_token(path, global.token.as_deref())
}

/// Parses the command line, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    table::init_colour(cli.global.color);
    // `run` writes evm.log and automation.log with its own subscriber.
    if !matches!(cli.command, Command::Run(_) | Command::Request(_)) {
        init_logging(cli.global.log_format);
    }
    // `$KEY_ROOT/v2_key` (ManageIQ's): `password` fields decrypt with it;
    // a command's automate.yaml may name another (`password.key_file`).
    password::install_env_key();
    let result = match cli.command {
        Command::Api(args) => api::run(&cli.global, args),
        Command::Demo(args) => demo::run(&cli.global, args),
        Command::Datastore(cmd) => datastore::run(&cli.global, cmd),
        Command::Cluster(cmd) => status::run(&cli.global, cmd),
        Command::Db(cmd) => db::run(&cli.global, cmd),
        Command::Import(args) => datastore::import(&cli.global, args),
        Command::Export(args) => datastore::export(&cli.global, args),
        Command::New(cmd) => scaffold::run(&cli.global, cmd),
        Command::Instantiate(args) => instantiate::run(&cli.global, args),
        Command::Replay(args) => replay::run(&cli.global, args),
        Command::Test(args) => autotest::run(&cli.global, args),
        Command::Retries(cmd) => retries::run(&cli.global, cmd),
        Command::Notifications(cmd) => notifications::run(&cli.global, cmd),
        Command::Method(cmd) => method::run(&cli.global, cmd),
        Command::Run(args) => run::run(&cli.global, args),
        Command::Events(cmd) => events::list(&cli.global, cmd),
        Command::Event(cmd) => events::send(&cli.global, cmd),
        Command::Vmdb(cmd) => vmdb::run(&cli.global, cmd),
        Command::Request(args) => request::run(&cli.global, args),
        Command::Operations(cmd) => operations::run(&cli.global, cmd),
        Command::Password(cmd) => password::run(&cli.global, cmd),
        Command::Completions { shell } => completions(shell),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // Encrypted passwords masked, as in every log line.
            let masked = |t: String| automate_password::sanitize(&t).into_owned();
            eprintln!("error: {}", masked(err.to_string()));
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {}", masked(cause.to_string()));
            }
            ExitCode::from(1)
        }
    }
}

/// `automate completions SHELL`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Into a buffer first: clap_complete panics on a write error, and a
    // closed pipe (`| head`) is not one (`is_broken_pipe`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "automate", &mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    Ok(ExitCode::SUCCESS)
}

/// Output piped into `head` and closed early is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(password::MaskedStderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
