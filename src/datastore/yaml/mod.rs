//! YAML for the datastore: a loader that keeps what Psych wrote (key order,
//! null vs `''`, quoted numbers) and an emitter that writes it back the way
//! Psych and libyaml do, so an unmodified domain exports byte for byte.

mod emit;
mod load;
mod value;

pub use emit::to_psych_yaml;
pub use load::{parse_document, YamlError, MAX_DEPTH, MAX_FILE_BYTES};
pub use value::{format_float, Mapping, Value};
