//! The URI schemes Automate supports (`MiqAeUri.scheme_supported?`).

use std::fmt;
use std::str::FromStr;

use super::UriError;

/// A supported scheme. Names are matched case-insensitively and `miqae` is an
/// alias of `miqaews`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `miqaedb`: build a new object from the datastore (the `instantiate` default).
    MiqaeDb,
    /// `miqaews` (or `miqae`): an existing workspace object (the substitution default).
    MiqaeWs,
    /// `miqaemethod`: a method of the current object.
    MiqaeMethod,
    /// `method`: same as `miqaemethod`.
    Method,
    /// `miqpeca`: a legacy hand-off to policy, only meaningful as an `ae_result`.
    MiqPeca,
}

impl Scheme {
    /// Every scheme, in declaration order.
    pub const ALL: [Scheme; 5] = [
        Scheme::MiqaeDb,
        Scheme::MiqaeWs,
        Scheme::MiqaeMethod,
        Scheme::Method,
        Scheme::MiqPeca,
    ];

    /// The canonical lower-case name, as `MiqAeUri.join` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::MiqaeDb => "miqaedb",
            Scheme::MiqaeWs => "miqaews",
            Scheme::MiqaeMethod => "miqaemethod",
            Scheme::Method => "method",
            Scheme::MiqPeca => "miqpeca",
        }
    }

    /// The scheme named `name` (any case; `miqae` gives [`Scheme::MiqaeWs`]).
    pub fn from_name(name: &str) -> Option<Scheme> {
        if name.eq_ignore_ascii_case("miqae") {
            return Some(Scheme::MiqaeWs);
        }
        Scheme::ALL
            .into_iter()
            .find(|s| name.eq_ignore_ascii_case(s.as_str()))
    }

    /// `true` for the two method-call schemes (`miqaemethod`, `method`).
    pub fn is_method(self) -> bool {
        matches!(self, Scheme::MiqaeMethod | Scheme::Method)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Scheme, UriError> {
        Scheme::from_name(s).ok_or_else(|| unsupported(0, s))
    }
}

/// ManageIQ's error for an unknown scheme; the name is shown lower-cased, as
/// `MiqAeUri.split` downcases it before the check.
pub(crate) fn unsupported(position: usize, name: &str) -> UriError {
    UriError::new(
        position,
        format!("Unsupported Scheme [{}]", name.to_ascii_lowercase()),
    )
}
