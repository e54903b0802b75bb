//! What query keys and `Array::` values mean (`process_args_as_attributes`,
//! reference §2.4). Only the shape is decided here; converting values and
//! resolving service-model classes and ids is the engine's work.

/// Names that `convert_value_based_on_datatype` treats as basic datatypes rather
/// than service-model classes (compared case-insensitively).
pub const BASIC_DATATYPES: [&str; 9] = [
    "integer", "boolean", "float", "symbol", "time", "array", "password", "string", "fixnum",
];

/// Separator of `Class::attr` keys and `Type::value` array elements.
const CLASS_SEPARATOR: &str = "::";

/// Separator of `Array::` elements: ASCII unit separator (`%1F` once encoded).
const ARRAY_SEPARATOR: char = '\x1F';

/// The meaning of a decoded query key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgKey {
    /// A plain attribute name, lower-cased (`Name` → `name`).
    Plain(String),
    /// `Class::attr` with a non-basic class: a service-model reference
    /// (`VmOrTemplate::vm`). `class` is kept as written (everything before the last
    /// `::`), `name` is lower-cased. Whether the class exists is for the engine to say.
    ObjectRef {
        /// The class name as written, e.g. `VmOrTemplate` or `ManageIQ::Providers::Vm`.
        class: String,
        /// The attribute name, lower-cased.
        name: String,
    },
    /// `type::attr` with a basic datatype (`integer::n`); `datatype` is lower-cased.
    Typed {
        /// One of [`BASIC_DATATYPES`].
        datatype: String,
        /// The attribute name, lower-cased.
        name: String,
    },
    /// `Array::name` (any case): the value is a list, see [`split_array_value`].
    /// The name is lower-cased.
    Array(String),
}

/// Classifies a decoded query key the way `process_args_as_attributes` does.
///
/// Keys are split with Ruby's `split('::')` semantics (trailing empty pieces
/// dropped): the name is the last piece and the class everything before it, so
/// `ManageIQ::Providers::Vm::vm` has the class `ManageIQ::Providers::Vm`, and
/// `Host::` has the class `""` and the name `host`. A key made only of `::` has no
/// name at all (Ruby fails on it) and is returned as [`ArgKey::Plain`].
pub fn classify_arg_key(key: &str) -> ArgKey {
    classify_arg_key_owned(key.to_owned())
}

/// [`classify_arg_key`] of a key the caller owns (the engine's query
/// args): a plain key (the common case: no `::`) is lower-cased in place
/// and becomes the name, with no copy.
pub fn classify_arg_key_owned(mut key: String) -> ArgKey {
    if is_array_key(&key) {
        let name = ruby_split(&key).last().copied().unwrap_or_default();
        return ArgKey::Array(name.to_lowercase());
    }
    let Some(at) = find_class_separator(&key) else {
        if key.is_ascii() {
            key.make_ascii_lowercase();
            return ArgKey::Plain(key);
        }
        return ArgKey::Plain(key.to_lowercase());
    };
    // The common shape, one `::` between a class and a name
    // (`VmOrTemplate::vm`), without splitting into pieces.
    let (class, name) = (&key[..at], &key[at + CLASS_SEPARATOR.len()..]);
    if !name.is_empty() && !has_class_separator(name) {
        let name = name.to_lowercase();
        return match basic_datatype(class) {
            Some(datatype) => ArgKey::Typed {
                datatype: datatype.to_owned(),
                name,
            },
            None => ArgKey::ObjectRef {
                class: class.to_owned(),
                name,
            },
        };
    }
    let pieces = ruby_split(&key);
    let Some((name, class)) = pieces.split_last() else {
        return ArgKey::Plain(key.to_lowercase());
    };
    let class = class.join(CLASS_SEPARATOR);
    let name = name.to_lowercase();
    match basic_datatype(&class) {
        Some(datatype) => ArgKey::Typed {
            datatype: datatype.to_owned(),
            name,
        },
        None => ArgKey::ObjectRef { class, name },
    }
}

/// Whether `key` holds `::`.
fn has_class_separator(key: &str) -> bool {
    find_class_separator(key).is_some()
}

/// Where the first `::` of `key` starts (a byte scan: `str::find` sets up
/// a substring searcher, and this runs for every attribute of every
/// instantiation).
fn find_class_separator(key: &str) -> Option<usize> {
    key.as_bytes()
        .windows(2)
        .position(|w| w == CLASS_SEPARATOR.as_bytes())
}

/// `MiqAeEngine.automation_attribute_is_array?`: starts with `array::`, any case.
fn is_array_key(key: &str) -> bool {
    key.get(..7)
        .is_some_and(|head| head.eq_ignore_ascii_case("array::"))
}

/// The canonical (lower-case) basic datatype `class` names, if it is one.
fn basic_datatype(class: &str) -> Option<&'static str> {
    BASIC_DATATYPES
        .into_iter()
        .find(|d| class.eq_ignore_ascii_case(d))
}

/// Ruby's `split('::')`: pieces left to right, without trailing empty ones.
fn ruby_split(s: &str) -> Vec<&str> {
    let mut pieces: Vec<&str> = s.split(CLASS_SEPARATOR).collect();
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces
}

/// One element of an `Array::` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayElem {
    /// `Type::value`, both trimmed (`integer::1`, `VmOrTemplate::1000000000029`).
    /// `class` is kept as written; it may be a basic datatype or a service model.
    Typed {
        /// The type before the first `::`.
        class: String,
        /// The value after it.
        value: String,
    },
    /// An element without `::`, kept as written (`'1,1'`).
    Plain(String),
}

/// `load_array_objects_from_string`: splits on `\x1F` and drops blank elements.
/// An element containing `::` is typed: split at its first `::`, both sides
/// trimmed (`" integer::3"` → `integer`, `3`). Any other element is kept verbatim,
/// as Ruby's `presence` does.
///
/// Ruby keeps only the first two pieces of `split('::')` (`a::b::c` → `b`); here
/// the value is everything after the first `::` (`b::c`). `Array::x=` gives `[]`.
pub fn split_array_value(v: &str) -> Vec<ArrayElem> {
    v.split(ARRAY_SEPARATOR)
        .filter(|e| !e.trim().is_empty())
        .map(array_elem)
        .collect()
}

fn array_elem(element: &str) -> ArrayElem {
    match element.split_once(CLASS_SEPARATOR) {
        Some((class, value)) => ArrayElem::Typed {
            class: class.trim().to_owned(),
            value: value.trim().to_owned(),
        },
        None => ArrayElem::Plain(element.to_owned()),
    }
}
