//! automate-password: ManageIQ's two-way password encryption, as the
//! `manageiq-password` gem implements it.
//!
//! A region's **v2 key** is a small YAML file named `v2_key`:
//!
//! ```yaml
//! ---
//! :algorithm: aes-256-cbc
//! :key: 5ysYUd3Qrjj7DDplmEJHmnrFBEPS887JwOQv0jFYq2g=
//! ```
//!
//! `:key:` is the base64 of 32 raw bytes, `:iv:` (optional, base64 of 16
//! bytes) the initialisation vector; without one the IV is sixteen zero
//! bytes, as OpenSSL leaves it when ManageIQ sets none. An encrypted value is
//! `v2:{<base64 of AES-256-CBC(PKCS#7 padded clear text)>}`; `v2:{}` is the
//! empty string. ManageIQ finds the key in the directory named by the
//! `KEY_ROOT` environment variable ([`KEY_ROOT_ENV`]); automate also takes a
//! file path from automate.yaml (`password.key_file`).
//!
//! [`V2Key::decrypt`] follows `ManageIQ::Password.decrypt`: an ERB wrapper
//! (`<%= MiqPassword.decrypt("v2:{...}") %>`) is removed, the empty string
//! stays empty, a value not in the `v2:{...}` form is refused
//! ([`PasswordError::Plaintext`]), and anything that does not decrypt is
//! [`PasswordError::CannotDecrypt`]. [`sanitize`] is `sanitize_string`: every
//! `v2:{...}` (or its URL-encoded form) in a text becomes [`MASK`].

#![deny(missing_docs)]

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a password shows instead of its clear text (`ManageIQ::Password::MASK`).
pub const MASK: &str = "********";

/// ManageIQ's environment variable naming the directory that holds the
/// `v2_key` file.
pub const KEY_ROOT_ENV: &str = "KEY_ROOT";

/// The key file's name inside [`KEY_ROOT_ENV`]'s directory.
pub const KEY_FILE_NAME: &str = "v2_key";

/// The only algorithm ManageIQ's v2 keys use.
pub const ALGORITHM: &str = "aes-256-cbc";

/// The longest key file read (a real one is about 100 bytes).
const MAX_KEY_FILE: u64 = 64 * 1024;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// Why a password could not be decrypted, or a key not loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// The value is not in ManageIQ's encrypted form (`ManageIQ::Password`'s
    /// "cannot decrypt plaintext string").
    #[error("cannot decrypt plaintext string: a password value must be ManageIQ's encrypted form v2:{{...}}")]
    Plaintext,
    /// A `v1:{...}` value: ManageIQ dropped v1 keys; recrypt it to v2.
    #[error("cannot decrypt a v1:{{...}} value: only v2 keys are supported (recrypt it with ManageIQ's v2 key)")]
    V1,
    /// The `v2:{...}` payload is not base64 of whole AES blocks, does not
    /// unpad under this key (a wrong key, almost always), or is not UTF-8.
    #[error("cannot decrypt encrypted string: {0}")]
    CannotDecrypt(String),
    /// No v2 key was configured where one was needed.
    #[error("no v2 key to decrypt passwords with: set {KEY_ROOT_ENV} to the directory holding {KEY_FILE_NAME}, or password.key_file in automate.yaml")]
    NoKey,
    /// The key file is missing, unreadable or malformed.
    #[error("v2 key file {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A region's v2 key: AES-256-CBC key and IV.
#[derive(Clone, PartialEq, Eq)]
pub struct V2Key {
    key: [u8; 32],
    iv: [u8; 16],
    has_iv: bool,
    /// Where it came from (a file path), for messages.
    source: String,
}

impl std::fmt::Debug for V2Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("V2Key")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The key file's fields (Psych writes symbol keys as `:algorithm:`).
#[derive(serde::Deserialize)]
struct KeyFileYaml {
    #[serde(rename = ":algorithm")]
    algorithm: Option<String>,
    #[serde(rename = ":key")]
    key: Option<String>,
    #[serde(rename = ":iv")]
    iv: Option<String>,
}

/// Ruby's `Base64.decode64`, minus its silence: line breaks and spaces are
/// skipped and padding is optional, but any other character outside the
/// alphabet is an error.
fn decode64(text: &str) -> Result<Vec<u8>, String> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT
        .decode(compact.as_bytes())
        .map_err(|e| format!("not base64 ({e})"))
}

impl V2Key {
    /// A key from its raw bytes; `iv` `None` is ManageIQ's usual zero IV.
    pub fn from_bytes(key: [u8; 32], iv: Option<[u8; 16]>, source: impl Into<String>) -> V2Key {
        V2Key {
            key,
            iv: iv.unwrap_or([0; 16]),
            has_iv: iv.is_some(),
            source: source.into(),
        }
    }

    /// A new random key (what `ManageIQ::Password.generate_symmetric`
    /// writes), from the operating system's random source.
    pub fn generate(source: impl Into<String>) -> std::io::Result<V2Key> {
        use std::io::Read;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(V2Key::from_bytes(key, None, source))
    }

    /// Parses a key file's text; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &Path) -> Result<V2Key, PasswordError> {
        let bad = |reason: String| PasswordError::KeyFile {
            path: source.to_path_buf(),
            reason,
        };
        let parsed: KeyFileYaml = serde_saphyr::from_str(text).map_err(|e| {
            bad(format!(
                "not a ManageIQ key file (---, :algorithm:, :key:): {e}"
            ))
        })?;
        let algorithm = parsed.algorithm.unwrap_or_else(|| ALGORITHM.to_string());
        if algorithm != ALGORITHM {
            return Err(bad(format!(
                ":algorithm: is [{algorithm}]; v2 keys are {ALGORITHM}"
            )));
        }
        let key_text = parsed.key.ok_or_else(|| bad(":key: is missing".into()))?;
        let key = decode64(&key_text).map_err(|e| bad(format!(":key: is {e}")))?;
        let key: [u8; 32] = key.try_into().map_err(|k: Vec<u8>| {
            bad(format!(":key: is {} bytes; {ALGORITHM} needs 32", k.len()))
        })?;
        let iv = match parsed.iv {
            None => None,
            Some(text) => {
                let iv = decode64(&text).map_err(|e| bad(format!(":iv: is {e}")))?;
                Some(iv.try_into().map_err(|v: Vec<u8>| {
                    bad(format!(":iv: is {} bytes; {ALGORITHM} needs 16", v.len()))
                })?)
            }
        };
        Ok(V2Key::from_bytes(key, iv, source.display().to_string()))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<V2Key, PasswordError> {
        use std::io::Read;
        let bad = |reason: String| PasswordError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut text = String::new();
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        V2Key::from_yaml(&text, path)
    }

    /// `<key_root>/v2_key`: ManageIQ's key in the directory its
    /// [`KEY_ROOT_ENV`] names (the caller reads the environment).
    pub fn from_key_root(key_root: &Path) -> Result<V2Key, PasswordError> {
        V2Key::load(&key_root.join(KEY_FILE_NAME))
    }

    /// The key file's text as ManageIQ writes it (`Key#to_h.to_yaml`).
    pub fn to_yaml(&self) -> String {
        let mut out = format!(
            "---\n:algorithm: {ALGORITHM}\n:key: {}\n",
            STANDARD.encode(self.key)
        );
        if self.has_iv {
            out.push_str(&format!(":iv: {}\n", STANDARD.encode(self.iv)));
        }
        out
    }

    /// Where the key came from (its file), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `ManageIQ::Password.encrypt`: `v2:{base64}`; the empty string is
    /// `v2:{}`.
    pub fn encrypt(&self, clear: &str) -> String {
        if clear.is_empty() {
            return "v2:{}".to_string();
        }
        let cipher = Enc::new(&self.key.into(), &self.iv.into());
        let bytes = cipher.encrypt_padded_vec_mut::<Pkcs7>(clear.as_bytes());
        format!("v2:{{{}}}", STANDARD.encode(bytes))
    }

    /// `ManageIQ::Password.decrypt`: the clear text of `value`.
    pub fn decrypt(&self, value: &str) -> Result<String, PasswordError> {
        decrypt_with(Some(self), value)
    }

    fn decrypt_payload(&self, payload: &str) -> Result<String, PasswordError> {
        let bytes = decode64(payload).map_err(PasswordError::CannotDecrypt)?;
        if bytes.is_empty() || bytes.len() % 16 != 0 {
            return Err(PasswordError::CannotDecrypt(format!(
                "{} bytes is not a whole number of AES blocks",
                bytes.len()
            )));
        }
        let cipher = Dec::new(&self.key.into(), &self.iv.into());
        let clear = cipher
            .decrypt_padded_vec_mut::<Pkcs7>(&bytes)
            .map_err(|_| {
                PasswordError::CannotDecrypt(format!(
                    "bad padding: not encrypted with the v2 key {}",
                    self.source
                ))
            })?;
        String::from_utf8(clear).map_err(|_| {
            PasswordError::CannotDecrypt(format!(
                "the clear text is not UTF-8: not encrypted with the v2 key {}",
                self.source
            ))
        })
    }

    /// `ManageIQ::Password.try_decrypt`: the clear text of an encrypted
    /// value, other text unchanged.
    pub fn try_decrypt(&self, value: &str) -> Result<String, PasswordError> {
        if is_encrypted(value) {
            self.decrypt(value)
        } else {
            Ok(value.to_string())
        }
    }
}

/// `ManageIQ::Password.decrypt` with `key`, which is only needed (and
/// [`PasswordError::NoKey`] only reported) when there is something to
/// decrypt: a plain value is [`PasswordError::Plaintext`] with or without
/// a key, and `""`/`v2:{}` are `""`.
pub fn decrypt_with(key: Option<&V2Key>, value: &str) -> Result<String, PasswordError> {
    let value = remove_erb(value);
    if value.is_empty() {
        return Ok(String::new());
    }
    let payload = match unwrap(value) {
        Some(p) => p,
        None if unwrap_v1(value).is_some() => return Err(PasswordError::V1),
        None => return Err(PasswordError::Plaintext),
    };
    if payload.is_empty() {
        return Ok(String::new());
    }
    key.ok_or(PasswordError::NoKey)?.decrypt_payload(payload)
}

/// The process's v2 key: what engines built without an explicit one use.
static PROCESS_KEY: std::sync::RwLock<Option<Arc<V2Key>>> = std::sync::RwLock::new(None);

/// Sets the process's v2 key (the command line does, from automate.yaml's
/// `password.key_file` or `$KEY_ROOT/v2_key`, before it builds engines).
pub fn set_process_key(key: Option<Arc<V2Key>>) {
    match PROCESS_KEY.write() {
        Ok(mut k) => *k = key,
        Err(poisoned) => *poisoned.into_inner() = key,
    }
}

/// The process's v2 key ([`set_process_key`]), if one was set.
pub fn process_key() -> Option<Arc<V2Key>> {
    match PROCESS_KEY.read() {
        Ok(k) => k.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// `v2:{...}` at the start of `s` (Ruby's `REGEXP_START_LINE`): its payload.
fn unwrap(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("v2:{")?;
    let end = rest.find('}')?;
    Some(&rest[..end])
}

fn unwrap_v1(s: &str) -> Option<&str> {
    let rest = s.strip_prefix("v1:{")?;
    let end = rest.find('}')?;
    Some(&rest[..end])
}

/// ManageIQ's `remove_erb`: `<%= MiqPassword.decrypt('v2:{...}') %>`
/// (also `DB_PASSWORD` and `ManageIQ::Password`) gives `v2:{...}`.
fn remove_erb(s: &str) -> &str {
    let Some(inner) = s.strip_prefix("<%= ") else {
        return s;
    };
    let Some(inner) = inner.strip_suffix(" %>") else {
        return s;
    };
    let inner = ["MiqPassword", "DB_PASSWORD", "ManageIQ::Password"]
        .iter()
        .find_map(|name| inner.strip_prefix(name))
        .and_then(|i| i.strip_prefix(".decrypt("))
        .and_then(|i| i.strip_suffix(')'));
    match inner {
        Some(q) if q.len() >= 3 => {
            let (open, close) = (q.as_bytes()[0], q.as_bytes()[q.len() - 1]);
            if matches!(open, b'\'' | b'"') && matches!(close, b'\'' | b'"') {
                &q[1..q.len() - 1]
            } else {
                s
            }
        }
        _ => s,
    }
}

/// `ManageIQ::Password.encrypted?`: `s` (ERB wrapper removed) starts with
/// `v2:{...}`.
pub fn is_encrypted(s: &str) -> bool {
    let s = remove_erb(s);
    unwrap(s).is_some()
}

/// Whether `bytes` may hold an encrypted password ([`sanitize`] would
/// change it): a cheap byte scan for `v1:{`, `v2:{` and their URL-encoded
/// `v2%3A` prefix, for log writers to skip the work on every other line.
pub fn may_hold_password(bytes: &[u8]) -> bool {
    // Called on every log line: SIMD searches for the rare `{` of
    // `v1:{`/`v2:{` and `%` of the URL-encoded `%3A%7B` (no per-call
    // searcher to build), never a byte-by-byte walk.
    memchr::memchr_iter(b'{', bytes)
        .any(|at| at >= 3 && matches!(&bytes[at - 3..at], b"v1:" | b"v2:"))
        || memchr::memchr_iter(b'%', bytes).any(|at| bytes[at..].starts_with(b"%3A%7B"))
}

/// `ManageIQ::Password.sanitize_string`: every `v1:{...}`/`v2:{...}` and
/// its URL-encoded form (`v2%3A%7B...%7D`) becomes [`MASK`]. Borrowed when
/// there is nothing to mask.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !may_hold_password(s.as_bytes()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let next = ["v1:{", "v2:{", "v1%3A%7B", "v2%3A%7B"]
            .iter()
            .filter_map(|p| rest.find(p).map(|at| (at, *p)))
            .min_by_key(|(at, _)| *at);
        let Some((at, prefix)) = next else {
            out.push_str(rest);
            break;
        };
        let after = &rest[at + prefix.len()..];
        let close = if prefix.ends_with('{') { "}" } else { "%7D" };
        match after.find(close) {
            Some(end) => {
                out.push_str(&rest[..at]);
                out.push_str(MASK);
                rest = &after[end + close.len()..];
            }
            None => {
                // Unclosed: not a password; keep the prefix and go on.
                out.push_str(&rest[..at + prefix.len()]);
                rest = after;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
