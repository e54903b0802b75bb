//! Fuzz target: arbitrary bytes as a datastore YAML file. The text goes
//! through the budgeted parser (`yaml::parse_document`) and the model reader
//! (`fs::parse_doc`); errors are fine, panics and runaway memory are not. A
//! document that parses is written back with the Psych emitter, and that text
//! must parse again to a tree that writes the same text.

#![no_main]

use automate_datastore::fs;
use automate_datastore::yaml::{parse_document, to_psych_yaml};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz/__class__.yaml");
    let mut problems = Vec::new();
    let _ = fs::parse_doc(text, file, &mut problems);
    if let Ok(doc) = parse_document(text, file) {
        let written = to_psych_yaml(&doc);
        match parse_document(&written, file) {
            // Compared as text: a `.nan` float is not equal to itself.
            Ok(again) => assert_eq!(to_psych_yaml(&again), written, "{text:?}"),
            Err(e) => panic!("{text:?} -> {written:?} does not parse: {e}"),
        }
    }
});
