//! Fuzz target: `automate_core::uri::parse` on arbitrary input (bytes read as lossy
//! UTF-8) must not panic, and a URI that parses must parse again, unchanged,
//! from its `Display` form (`MiqAeUri.join`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    if let Ok(uri) = automate_core::uri::parse(&input) {
        let shown = uri.to_string();
        match automate_core::uri::parse(&shown) {
            Ok(again) => assert_eq!(again, uri, "{input:?} -> {shown:?}"),
            Err(err) => panic!("{input:?} -> {shown:?} does not parse: {err}"),
        }
    }
});
