//! Fuzz target: the engine's `${...}` substitution (`Runtime::substitute`)
//! on arbitrary text, from an object whose attributes hold strings, numbers,
//! arrays, hashes and references to stored objects, over the `substitution`
//! test datastore (so `${miqaedb:/EVM/A/a1#...}` resolves). Errors are
//! fine; panics are not. Text without `${` must come back unchanged.

#![no_main]

use automate_datastore::Datastore;
use automate_engine::{AttrValue, Attributes, Engine, Object};
use automate_vmdb::{MemoryStore, VmdbRef};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/engine/substitution");
        let (ds, _problems) = Datastore::open(&root);
        let store = MemoryStore::new();
        let mut vm = Attributes::default();
        vm.insert("name".into(), AttrValue::str("vm-1"));
        vm.insert("ems_id".into(), AttrValue::Int(1));
        store.insert("VmOrTemplate", 29, vm);
        let mut ems = Attributes::default();
        ems.insert("name".into(), AttrValue::str("rhevm01"));
        store.insert("ExtManagementSystem", 1, ems);
        Engine::new(Arc::new(ds)).with_store(Arc::new(store))
    })
}

fn object(name: &str, parent: Option<usize>) -> Object {
    let mut attributes = Attributes::default();
    attributes.insert("a".into(), AttrValue::str("alpha"));
    attributes.insert("n".into(), AttrValue::Int(42));
    attributes.insert("f".into(), AttrValue::Float(1.5));
    attributes.insert("b".into(), AttrValue::Bool(true));
    attributes.insert("nil".into(), AttrValue::Nil);
    attributes.insert(
        "list".into(),
        AttrValue::Array(vec![AttrValue::str("x"), AttrValue::Int(2)]),
    );
    attributes.insert(
        "h".into(),
        AttrValue::Hash(vec![(AttrValue::str("k"), AttrValue::str("v"))]),
    );
    attributes.insert(
        "vm".into(),
        AttrValue::Object(VmdbRef {
            class: "VmOrTemplate".into(),
            id: 29,
        }),
    );
    Object {
        namespace: "SPEC_DOMAIN/EVM".into(),
        class: "A".into(),
        instance: name.into(),
        object_name: format!("/EVM/A/{name}"),
        attributes,
        parent,
        children: Vec::new(),
        rels: Vec::new(),
        removed: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut state = Attributes::default();
    state.insert("k".into(), AttrValue::str("state"));
    let mut rt = engine().runtime_with_state(state);
    rt.ws.objects.push(object("a1", None));
    rt.ws.objects.push(object("child", Some(0)));
    rt.ws.objects[0].children.push(1);
    let id = usize::from(flags & 1);
    let required = flags & 2 != 0;
    match rt.substitute(id, &text, required) {
        Ok(out) if !text.contains("${") => assert_eq!(out, text),
        _ => {}
    }
});
