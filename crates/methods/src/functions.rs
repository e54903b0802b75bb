//! What a Rhai method can call: the functions and properties registered on
//! the script engine (`evm`, `AeObject`, `VmdbObject`, `VmdbClass`, ...),
//! read from Rhai's own metadata, never from a hand-kept list.
//!
//! `automate method functions --json` prints [`registered_functions`] and
//! [`service_model_names`];
//! `scripts/porting-coverage` checks the `$evm` and service-model calls of
//! ManageIQ's Ruby methods against it.

use super::RhaiRunner;
use serde::Serialize;

/// One registered function or property.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Function {
    /// The type it is called on (`Evm`, `VmdbObject`, ...), or `""` for a
    /// free function.
    pub receiver: String,
    /// The name scripts use (`log`, `root`, `vmdb`).
    pub name: String,
    /// `method`, `property` (a getter, `obj.name`), `setter`
    /// (`obj.name = v`), `indexer` (`obj["x"]`), `function` or `operator`.
    pub kind: String,
    /// Parameters after the receiver.
    pub arity: usize,
    /// Rhai's signature, as `gen_fn_signatures` gives it.
    pub signature: String,
}

/// Every function and property `runner`'s engine has registered beyond
/// Rhai's standard packages, sorted and without duplicates.
pub fn registered_functions(runner: &RhaiRunner) -> Vec<Function> {
    let mut out: Vec<Function> = runner
        .function_signatures()
        .iter()
        .filter_map(|s| parse_signature(s))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The names the service model answers on a stored object besides the
/// registered functions (`vm.host`, `vm.normalized_name`, `vm.ems_ref`):
/// for each base class, its associations, the computed attributes and the
/// columns an unset value of reads as nil, each as a `model` entry on
/// `VmdbObject` (read through its indexer), from `vmdb::service_model`'s
/// own tables.
pub fn service_model_names() -> Vec<Function> {
    use automate_vmdb::service_model::{associations_of, columns, COMPUTED};
    let mut out: Vec<Function> = Vec::new();
    for base in automate_vmdb::base_classes() {
        let names = associations_of(base)
            .into_iter()
            .chain(COMPUTED.iter().copied())
            .chain(columns(base).iter().copied());
        for name in names {
            out.push(Function {
                receiver: "VmdbObject".to_string(),
                name: name.to_string(),
                kind: "model".to_string(),
                arity: 0,
                signature: format!("{base}#{name}"),
            });
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// Parses one of Rhai's signatures:
/// `name(_: &mut Type, x: i64) -> Ret`, `get$prop(_: &mut Type) -> Ret`,
/// `set$prop(..)`, `index$get$(..)`.
pub fn parse_signature(sig: &str) -> Option<Function> {
    let open = sig.find('(')?;
    let raw_name = &sig[..open];
    let close = sig[open..].rfind(')').map(|i| open + i)?;
    let params: Vec<&str> = split_params(&sig[open + 1..close]);
    let first_type = params
        .first()
        .map(|p| p.split_once(':').map_or(*p, |(_, t)| t).trim())
        .unwrap_or("");
    let receiver_type = first_type.trim_start_matches("&mut ").trim();
    let (kind, name) = if let Some(p) = raw_name.strip_prefix("get$") {
        ("property", p)
    } else if let Some(p) = raw_name.strip_prefix("set$") {
        ("setter", p)
    } else if raw_name.starts_with("index$") {
        ("indexer", "[]")
    } else if !raw_name.chars().next()?.is_alphabetic() && !raw_name.starts_with('_') {
        ("operator", raw_name)
    } else if first_type.starts_with("&mut ") && is_custom(receiver_type) {
        ("method", raw_name)
    } else {
        ("function", raw_name)
    };
    let receiver = if kind == "function" || kind == "operator" && !is_custom(receiver_type) {
        String::new()
    } else {
        receiver_type.to_string()
    };
    let arity = if receiver.is_empty() {
        params.len()
    } else {
        params.len().saturating_sub(1)
    };
    Some(Function {
        receiver,
        name: name.to_string(),
        kind: kind.to_string(),
        arity,
        signature: sig.to_string(),
    })
}

/// A type registered by this crate rather than one of Rhai's.
fn is_custom(t: &str) -> bool {
    t.chars().next().is_some_and(char::is_uppercase)
        && !matches!(
            t,
            "Array" | "Map" | "Dynamic" | "ImmutableString" | "String" | "Blob" | "FnPtr"
        )
}

/// Splits parameters on the commas outside `<>` and `()`.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(s[start..].trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let f = parse_signature("get$root(_: &mut Evm) -> Result<Dynamic, Box<EvalAltResult>>")
            .unwrap();
        assert_eq!(
            (
                f.receiver.as_str(),
                f.name.as_str(),
                f.kind.as_str(),
                f.arity
            ),
            ("Evm", "root", "property", 0)
        );
        let f = parse_signature("log(_: &mut Evm, _: &str, _: &str)").unwrap();
        assert_eq!(
            (
                f.receiver.as_str(),
                f.name.as_str(),
                f.kind.as_str(),
                f.arity
            ),
            ("Evm", "log", "method", 2)
        );
        let f = parse_signature("index$get$(_: &mut AeObject, _: &str) -> Dynamic").unwrap();
        assert_eq!(
            (f.receiver.as_str(), f.name.as_str(), f.kind.as_str()),
            ("AeObject", "[]", "indexer")
        );
    }

    /// The list comes from the engine: `evm.log`, `evm.root` and
    /// `evm.vmdb` are registered today.
    #[test]
    fn the_engine_lists_what_it_registers() {
        let runner = RhaiRunner::new();
        let fns = registered_functions(&runner);
        let has = |recv: &str, name: &str| fns.iter().any(|f| f.receiver == recv && f.name == name);
        assert!(has("Evm", "log"), "{fns:#?}");
        assert!(has("Evm", "root"), "{fns:#?}");
        assert!(has("Evm", "vmdb"), "{fns:#?}");
        assert!(fns.iter().any(|f| f.receiver == "VmdbObject"), "{fns:#?}");
    }
}
