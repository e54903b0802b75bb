//! YAML for the datastore: a loader that keeps what Psych wrote (key order,
//! null vs `''`, quoted numbers) and an emitter that writes it back the way
//! Psych and libyaml do, so an unmodified domain exports byte for byte.
//!
//! Writing is split the way Ruby splits it: `psych_style` picks the scalar
//! event Psych requests for a string (asking `scalar_scanner` whether the
//! plain text would read back as a String), and `emit` is the libyaml
//! emitter that chooses the final style and lays the document out.

mod emit;
mod load;
mod psych_style;
mod scalar_scanner;
mod value;

pub use emit::to_psych_yaml;
pub use load::{parse_document, YamlError, MAX_DEPTH, MAX_FILE_BYTES};
pub use value::{Mapping, Value};
