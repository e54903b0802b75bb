//! `automate password encrypt|decrypt|key`: ManageIQ's v2 passwords for
//! users (what `manageiq-password --encrypt/--decrypt` does), and the
//! process's v2 key every other command's engines decrypt `password`
//! fields with ([`install_key`], [`install_env_key`]).

use anyhow::Context;
use automate_password::{V2Key, KEY_FILE_NAME, KEY_ROOT_ENV};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `automate password ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PasswordCmd {
    /// Encrypt a clear-text password to ManageIQ's `v2:{...}` form.
    Encrypt(ValueArgs),
    /// Decrypt a `v2:{...}` value to its clear text.
    Decrypt(ValueArgs),
    /// Write a new random v2 key file (ManageIQ's format); refuses to
    /// replace an existing file.
    Key {
        /// The file to write (`certs/v2_key`, `$KEY_ROOT/v2_key`).
        out: PathBuf,
    },
}

/// The value and where the key is.
#[derive(Debug, clap::Args)]
pub struct ValueArgs {
    /// The value; without it, read from stdin (one trailing newline removed).
    pub value: Option<String>,
    /// The v2 key file; default `password.key_file` of `--config`, else
    /// `$KEY_ROOT/v2_key`.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// automate.yaml, for its `password.key_file`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs `automate password ...`: the result on stdout, one line.
pub fn run(global: &super::Global, cmd: PasswordCmd) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        PasswordCmd::Encrypt(args) => {
            let key = key_for(global, &args)?;
            let clear = value_of(&args)?;
            writeln!(out, "{}", key.encrypt(&clear))?;
        }
        PasswordCmd::Decrypt(args) => {
            let key = key_for(global, &args)?;
            let value = value_of(&args)?;
            let clear = key
                .decrypt(value.trim())
                .with_context(|| format!("decrypting with the v2 key {}", key.source()))?;
            writeln!(out, "{clear}")?;
        }
        PasswordCmd::Key { out: path } => {
            let key = V2Key::generate(path.display().to_string())?;
            write_new(&path, key.to_yaml().as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "wrote a new v2 key to {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key: `--key`, else `password.key_file` of `--config`, else
/// `$KEY_ROOT/v2_key`.
fn key_for(global: &super::Global, args: &ValueArgs) -> anyhow::Result<V2Key> {
    if let Some(path) = &args.key {
        return Ok(V2Key::load(path)?);
    }
    if let Some(config) = &args.config {
        let cfg = super::load_config(global, config)?;
        if let Some(key) = cfg.password.load_key(key_root().as_deref())? {
            return Ok(key);
        }
    }
    key_root()
        .map(|root| V2Key::from_key_root(&root))
        .transpose()?
        .ok_or_else(|| {
            anyhow::anyhow!(
            "no v2 key: give --key FILE, --config with password.key_file, or set {KEY_ROOT_ENV} \
             to the directory holding {KEY_FILE_NAME}"
        )
        })
}

/// The argument, else stdin without its trailing newline.
fn value_of(args: &ValueArgs) -> anyhow::Result<String> {
    if let Some(v) = &args.value {
        return Ok(v.clone());
    }
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(1 << 20)
        .read_to_string(&mut text)
        .context("reading the value from stdin")?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Creates `path` (never replacing a file) readable by its owner only.
fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes `cfg`'s key (`password.key_file`, else `$KEY_ROOT/v2_key`) the
/// one engines built from now on decrypt `password` fields with; a key
/// file named but unreadable or malformed is an error.
pub fn install_key(cfg: &automate_events::config::Config) -> anyhow::Result<()> {
    let key = cfg
        .password
        .load_key(key_root().as_deref())
        .context("loading the v2 key (password.key_file, KEY_ROOT)")?;
    automate_password::set_process_key(key.map(Arc::new));
    Ok(())
}

/// At start: `$KEY_ROOT/v2_key` becomes the process's key when `KEY_ROOT`
/// is set. A bad one is warned about (as ManageIQ does) and left out:
/// `password` fields then fail, naming the field.
pub fn install_env_key() {
    let Some(root) = key_root() else {
        return;
    };
    match V2Key::from_key_root(&root) {
        Ok(key) => automate_password::set_process_key(Some(Arc::new(key))),
        Err(e) => tracing::warn!("{e}: password fields will not decrypt"),
    }
}

/// `KEY_ROOT`, when set and not empty.
fn key_root() -> Option<PathBuf> {
    std::env::var_os(KEY_ROOT_ENV)
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
}

/// stderr for `tracing`'s formatters, with every encrypted password in a
/// line masked (each formatted event arrives in one `write`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MaskedStderr {
    type Writer = Masked<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Masked(std::io::stderr())
    }
}

/// A writer masking encrypted passwords in each `write` ([`MaskedStderr`]).
#[derive(Debug)]
pub struct Masked<W>(pub W);

impl<W: Write> Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if automate_password::may_hold_password(buf) {
            if let Ok(text) = std::str::from_utf8(buf) {
                self.0
                    .write_all(automate_password::sanitize(text).as_bytes())?;
                return Ok(buf.len());
            }
        }
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_writer_masks_whole_writes() {
        let mut m = Masked(Vec::new());
        m.write_all(b"plain line\n").unwrap();
        m.write_all(b"uri miqaedb:/A/B/c?password::pw=v2:{DUb5th63TM+zIB6RhnTtVg==} end\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(m.0).unwrap(),
            "plain line\nuri miqaedb:/A/B/c?password::pw=******** end\n"
        );
    }
}
