//! `datastore validate`'s check of the Ruby that imported domains write in
//! field values: assertions and `${...}` method chains.
//!
//! ManageIQ evaluates an assertion with Ruby's `eval` and applies each
//! `.method` of a `${path#attr.m1.m2(arg)}` chain with `send`. automate
//! evaluates the subset those domains use natively
//! (`automate_core::ruby`); anything else is reported here, with
//! file:line, as a warning, instead of failing (or dropping the object) at
//! run time:
//!
//! * an assertion outside the Ruby subset (it would be tried as a Rhai
//!   expression, and most Ruby is not Rhai);
//! * a chain segment that is not `name`, `name?`, `name!` or `name(arg)`
//!   (ManageIQ's `invalid method calling syntax`), or a predicate or a call
//!   with an argument that substitution does not know. A plain `name` is an
//!   attribute or association of a stored object, which only the data can
//!   tell, so it is not reported.

use super::fs::{Problem, CLASS_FILE};
use super::model::{Class, Domain, Namespace};
use super::validate::entry_line;
use automate_core::ruby::{self, RubyError};
use std::path::Path;

/// The chain methods substitution applies besides attribute reads: the
/// string ones and the Ruby subset's.
pub const CHAIN_METHODS: &[&str] = &[
    "upcase",
    "downcase",
    "capitalize",
    "strip",
    "length",
    "size",
    "to_s",
    "to_i",
    "first",
    "get_option",
    "[]",
];

/// Assertion and `${...}` chain problems of one domain (warnings).
pub fn check_ruby(domain: &Domain, dir: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    level(dir, &domain.namespaces, &domain.classes, &mut out);
    out
}

fn level(dir: &Path, namespaces: &[Namespace], classes: &[Class], out: &mut Vec<Problem>) {
    for ns in namespaces {
        level(&dir.join(&ns.name), &ns.namespaces, &ns.classes, out);
    }
    for class in classes {
        let class_dir = dir.join(&class.dir_name);
        let class_file = class_dir.join(CLASS_FILE);
        let schema = class.schema();
        let is_assertion = |name: &str| {
            schema.iter().any(|f| {
                f.name().eq_ignore_ascii_case(name)
                    && f.aetype()
                        .is_some_and(|a| a.eq_ignore_ascii_case("assertion"))
            })
        };
        let substitutes = |name: &str| {
            schema
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(name))
                .is_none_or(|f| f.substitute())
        };
        for (i, f) in schema.iter().enumerate() {
            if let Some(v) = f.default_value() {
                let line = || entry_line(&class_file, "schema", i, Some("default_value"));
                check_value(
                    &class_file,
                    f.name(),
                    v,
                    is_assertion(f.name()),
                    f.substitute(),
                    &line,
                    out,
                );
            }
        }
        for inst in &class.instances {
            let file = class_dir.join(&inst.file_name);
            for (i, (fname, fv)) in inst.values().into_iter().enumerate() {
                if let Some(v) = fv.get("value") {
                    let line = || entry_line(&file, "fields", i, Some("value"));
                    check_value(
                        &file,
                        fname,
                        &v,
                        is_assertion(fname),
                        substitutes(fname),
                        &line,
                        out,
                    );
                }
            }
        }
    }
}

fn check_value(
    file: &Path,
    field: &str,
    value: &str,
    assertion: bool,
    substitute: bool,
    line: &dyn Fn() -> usize,
    out: &mut Vec<Problem>,
) {
    if assertion && !value.trim().is_empty() {
        if let Err(RubyError::Unsupported { what, .. }) = ruby::check_unsubstituted(value) {
            out.push(
                Problem::new(
                    file,
                    format!(
                        "assertion `{value}` is outside the Ruby automate evaluates ({what}): \
                         ManageIQ would eval it as Ruby, automate tries it as a Rhai expression; \
                         rewrite it with ==, !=, &&, ||, !, =~, %w(..).include?(x), .nil?, \
                         .blank?, .present? (docs/porting-ruby-methods.md)"
                    ),
                )
                .at_line(line())
                .with_field(field)
                .as_warning(),
            );
        }
    }
    if !substitute {
        return;
    }
    for inner in substitutions(value) {
        if let Some(why) = chain_problem(inner) {
            out.push(
                Problem::new(file, format!("substitution `${{{inner}}}`: {why}"))
                    .at_line(line())
                    .with_field(field)
                    .as_warning(),
            );
        }
    }
}

/// The `inner` of each `${inner}` in `text`.
pub fn substitutions(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

/// The method segments of a workspace substitution's chain
/// (`/#vm.name.length` gives `["name", "length"]`); none for `miqaedb:`.
pub fn chain_methods(inner: &str) -> Vec<&str> {
    let inner = inner.trim();
    if inner.to_ascii_lowercase().starts_with("miqaedb:") {
        return Vec::new();
    }
    let Some((_, fragment)) = inner.split_once('#') else {
        return Vec::new();
    };
    let mut segs = automate_core::ruby::split_chain(fragment);
    if !segs.is_empty() {
        segs.remove(0);
    }
    segs
}

/// Why a chain would not evaluate as ManageIQ's, or `None`.
pub fn chain_problem(inner: &str) -> Option<String> {
    for seg in chain_methods(inner) {
        let seg = seg.trim();
        let (name, arg) = match seg.find('(') {
            Some(p) if seg.ends_with(')') => (seg[..p].trim(), Some(&seg[p + 1..seg.len() - 1])),
            Some(_) => {
                return Some(format!(
                    "`{seg}` is not a method call (ManageIQ: invalid method calling syntax)"
                ))
            }
            None => (seg, None),
        };
        let base = name.trim_end_matches(['?', '!']);
        let well_formed = name == "[]"
            || (!base.is_empty()
                && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.len() - base.len() <= 1);
        if !well_formed {
            return Some(format!(
                "`{seg}` is not a method call (ManageIQ: invalid method calling syntax)"
            ));
        }
        let known = CHAIN_METHODS.contains(&name) || ruby::METHODS.contains(&name);
        if (name != base || arg.is_some()) && !known {
            return Some(format!(
                "the method `{name}` is not one substitution applies (attributes and \
                 associations of stored objects, get_option(key), [key], and {})",
                ruby::METHODS.join(", ")
            ));
        }
        if arg.is_some_and(|a| a.contains(',')) {
            return Some(format!("`{seg}`: ManageIQ passes one argument"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains() {
        assert_eq!(chain_methods("/#vm.name.length"), ["name", "length"]);
        assert_eq!(
            chain_methods("/#miq_request.get_option(:owner_email)"),
            ["get_option(:owner_email)"]
        );
        assert!(chain_methods("miqaedb:/A/B/C/attr").is_empty());
        for ok in [
            "/#miq_request.requester.email",
            "/#miq_request.get_option(:owner_email)",
            "/#vm.name.nil?",
            "#x.include?('a')",
            "/#ae_provider_category",
        ] {
            assert_eq!(chain_problem(ok), None, "{ok}");
        }
        for bad in [
            "/#vm.name.gsub('a','b')",
            "/#vm.frobnicate?",
            "/#vm.name + 'x'",
            "/#vm.tags(:env",
        ] {
            assert!(chain_problem(bad).is_some(), "{bad}");
        }
    }
}
