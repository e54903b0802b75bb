//! Automate URIs: `[scheme:]path[?query][#message]`.
//!
//! Every hop of the Automate engine is addressed by one of these strings:
//! the delivery URI of an event (`/System/Process/Event?EventStream%3A%3Aevent_stream=..#create`),
//! a relationship target (`miqaedb:/System/Event/USER_RUN_VM#create`), a method call
//! (`method:///foo?num2=3`) and the inside of a `${...}` substitution (`/#attr`,
//! `../..#x`, `state_var#k`, `!current_message`). This module is the one place that
//! knows their grammar, following ManageIQ's `MiqAeUri`, `MiqAePath` and
//! `MiqAeObject#process_args_as_attributes` (reference §2):
//!
//! * [`parse`] splits a string into a [`Uri`]: an optional [`Scheme`], the path (runs
//!   of `/` collapsed, surrounding whitespace trimmed), the decoded query pairs in the
//!   order given and the raw fragment (the *message*, see [`Uri::message`]).
//!   `Display` for [`Uri`] is `MiqAeUri.join`.
//! * [`split_path`] / [`render_path`] are `MiqAePath.split` / `MiqAePath#to_s`.
//! * [`url_encode`], [`url_decode`], [`hash2query`] and [`query2hash`] are the query
//!   codecs (`ERB::Util.url_encode`, `CGI.unescape`).
//! * [`classify_arg_key`] and [`split_array_value`] say what a query key such as
//!   `VmOrTemplate::vm`, `integer::n` or `Array::vms` means; resolving classes and ids
//!   is the engine's business.
//!
//! Deliberate differences from ManageIQ (SPEC §3 and the choices documented on each
//! function): `//` is collapsed in the path only, not in the query or fragment; a
//! query value keeps everything after its first `=`; empty `&&` pieces are skipped;
//! non-ASCII characters anywhere, and spaces in the fragment, are accepted
//! (Ruby's RFC 3986 parser rejects them), while control characters in the path or
//! fragment and spaces in the path are errors with their byte position. The query,
//! as in Ruby (`[^#]*`), takes every character but `#`, controls included: an
//! `Array::` value arrives joined with a raw `\x1F`.
//!
//! [`parse`] is on the hot path of every event (the seed's delivery URI parses in
//! about a microsecond, half of it the 26 allocations the [`Uri`] needs): the query
//! is split in one pass, eight bytes at a time, and only keys and values holding `%` or
//! `+` go through the decoder.

mod args;
mod codec;
mod parser;
mod path;
mod scheme;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use args::{
    classify_arg_key, classify_arg_key_owned, split_array_value, ArgKey, ArrayElem, BASIC_DATATYPES,
};
pub use codec::{hash2query, query2hash, query_uri, url_decode, url_encode};
pub use parser::parse;
pub use path::{
    render_path, render_path_with_attribute, split_path, split_path_with, PathParts, SplitOptions,
};
pub use scheme::Scheme;

use std::fmt;

/// A parsed Automate URI.
///
/// `query` holds the decoded pairs in the order they were given (duplicates kept:
/// ManageIQ's hash would keep the last value of a repeated key at the position of
/// the first). `fragment` is kept raw, with its case; [`Uri::message`] gives the
/// engine's view of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uri {
    /// The scheme, if the string had one; see [`Uri::scheme_or`].
    pub scheme: Option<Scheme>,
    /// The path with runs of `/` collapsed; may be `""`, `/`, `..` or `!current_message`.
    pub path: String,
    /// Decoded `(key, value)` pairs in the given order.
    pub query: Vec<(String, String)>,
    /// Everything after the first `#`, unchanged.
    pub fragment: Option<String>,
}

impl Uri {
    /// The message: the fragment lower-cased, or `create` when it is missing or blank.
    pub fn message(&self) -> String {
        match self.fragment.as_deref() {
            Some(f) if !f.trim().is_empty() => f.to_lowercase(),
            _ => "create".to_owned(),
        }
    }

    /// The scheme, or `default` when the string had none (`instantiate` uses
    /// `miqaedb`, substitution uses `miqaews`).
    pub fn scheme_or(&self, default: Scheme) -> Scheme {
        self.scheme.unwrap_or(default)
    }

    /// The path split into namespace, class and instance ([`split_path`]).
    pub fn path_parts(&self) -> PathParts {
        split_path(&self.path)
    }

    /// The first decoded value of the query key `key` (compared exactly).
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `MiqAeUri.join`: `scheme:` + path + `?` + query + `#` + fragment, each part only
/// when present. The query is re-encoded with [`url_encode`] in the stored order
/// (sort it with [`hash2query`] first if a canonical order is wanted).
impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = self.scheme {
            write!(f, "{}:", scheme.as_str())?;
        }
        f.write_str(&self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", codec::encode_query(self.query.iter()))?;
        }
        if let Some(fragment) = &self.fragment {
            write!(f, "#{fragment}")?;
        }
        Ok(())
    }
}

/// A string that is not a valid Automate URI (ManageIQ's `InvalidPathFormat`).
///
/// `position` is a byte offset into the string given to [`parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI at byte {position}: {message}")]
pub struct UriError {
    /// Byte offset of the offending part in the input.
    pub position: usize,
    /// What is wrong, in ManageIQ's words where it has some
    /// (`Unsupported Scheme [abc]`, `Invalid URI <miqaedb:A/EVM>`).
    pub message: String,
}

impl UriError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> UriError {
        UriError {
            position,
            message: message.into(),
        }
    }
}
