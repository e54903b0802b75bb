//! What the backends' tests share: whether the cluster services are
//! mandatory and a throwaway name for each test (for
//! `automate_postgres::testing`, `automate_nats::testing`; here so that
//! neither backend crate depends on the other), and the checks every
//! durable store's tests run on it ([`check_delete`],
//! [`check_concurrent_tagging`]): one behaviour, each backend.

use crate::served::ServedStore;
use crate::{tags, StoreError};
use automate_core::value::{AttrValue, Attributes};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

/// True when `.ci/run` says the cluster services must be there
/// (`AUTOMATE_TEST_CLUSTER=1`): a test that cannot reach them fails
/// instead of skipping.
pub fn cluster_mandatory() -> bool {
    std::env::var("AUTOMATE_TEST_CLUSTER").is_ok_and(|v| v == "1")
}

/// A name no other test of any process uses: `t_<name>_<pid>_<n>`, `name`
/// lowercased with every other character than an ASCII letter or digit
/// as `_`, cut to 30 characters; `n` counts the calls in this process.
/// A valid PostgreSQL schema name and NATS stream/bucket prefix.
pub fn unique_name(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{}_{}_{}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            })
            .take(30)
            .collect::<String>(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A failed check: what was expected, what was found.
fn fail(what: String) -> StoreError {
    StoreError::Backend(format!("check failed: {what}"))
}

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if ok {
        Ok(())
    } else {
        Err(fail(what()))
    }
}

/// [`ObjectStore::delete`] on `store`, through its units of work: a
/// deleted object (its index entries, its provider reference) is gone for
/// the unit's reads at once and for everyone else only after the commit;
/// a delete taken back by a savepoint leaves the object; an object created
/// and deleted in one unit is never written; deleting what is gone answers
/// `false`. An `Err` names the step that failed.
pub fn check_delete<S: ServedStore + 'static>(store: Arc<S>) -> Result<(), StoreError> {
    let ems = store.create("ExtManagementSystem", attrs(&[("name", "vc-del".into())]))?;
    let vm = store.create(
        "Vm",
        attrs(&[
            ("name", "doomed".into()),
            ("ems_id", AttrValue::Int(ems.id)),
            ("ems_ref", "vm-doomed".into()),
        ]),
    )?;
    let kept = store.create("Vm", attrs(&[("name", "kept".into())]))?;
    let name = AttrValue::str("doomed");
    // A delete taken back by its savepoint.
    let unit = store.clone().begin_unit();
    let objs = unit.objects();
    let sp = objs
        .savepoint()
        .ok_or_else(|| fail("a unit has savepoints".into()))?;
    expect(objs.delete(&vm)?, || {
        "the unit finds the VM to delete".into()
    })?;
    expect(objs.find("Vm", vm.id)?.is_none(), || {
        "the unit's reads no longer find the deleted VM".into()
    })?;
    objs.rollback_to(sp);
    expect(objs.find("Vm", vm.id)?.is_some(), || {
        "a delete rolled back leaves the VM".into()
    })?;
    drop(objs);
    unit.commit()?;
    expect(store.find("Vm", vm.id)?.is_some(), || {
        "the store keeps a VM whose delete was rolled back".into()
    })?;
    // A delete committed.
    let unit = store.clone().begin_unit();
    let objs = unit.objects();
    let brief = objs.create("Vm", attrs(&[("name", "doomed".into())]))?;
    expect(objs.delete(&brief)?, || {
        "a unit deletes what it created".into()
    })?;
    expect(objs.delete(&vm)?, || "the unit deletes the VM".into())?;
    expect(!objs.delete(&vm)?, || {
        "a second delete answers false".into()
    })?;
    expect(objs.find("Vm", vm.id)?.is_none(), || {
        "the unit no longer finds the VM".into()
    })?;
    expect(objs.find_by("Vm", "name", &name)?.is_empty(), || {
        "the unit's find_by no longer answers the VM".into()
    })?;
    expect(
        objs.find_by_ems_ref("Vm", ems.id, "vm-doomed")?.is_none(),
        || "the unit's provider-reference lookup no longer answers the VM".into(),
    )?;
    let listed: Vec<i64> = objs.list("Vm")?.iter().map(|r| r.id).collect();
    expect(listed == vec![kept.id], || {
        format!("the unit lists only the kept VM, not {listed:?}")
    })?;
    expect(store.find("Vm", vm.id)?.is_some(), || {
        "nobody else sees the delete before the commit".into()
    })?;
    drop(objs);
    unit.commit()?;
    expect(store.find("Vm", vm.id)?.is_none(), || {
        "the VM is gone".into()
    })?;
    expect(store.load("Vm", vm.id)?.is_none(), || {
        "the VM's row is gone".into()
    })?;
    expect(store.find("Vm", brief.id)?.is_none(), || {
        "the VM created and deleted in one unit was never written".into()
    })?;
    expect(store.find_by("Vm", "name", &name)?.is_empty(), || {
        "the name index no longer answers the VM".into()
    })?;
    expect(
        store.find_by_ems_ref("Vm", ems.id, "vm-doomed")?.is_none(),
        || "the provider reference no longer answers the VM".into(),
    )?;
    let listed: Vec<i64> = store.list("Vm")?.iter().map(|r| r.id).collect();
    expect(listed == vec![kept.id], || {
        format!("the store lists only the kept VM, not {listed:?}")
    })?;
    expect(!store.delete(&vm)?, || {
        "deleting a gone object answers false".into()
    })?;
    // The same provider reference is free for a new VM.
    let again = store.create(
        "Vm",
        attrs(&[
            ("name", "reborn".into()),
            ("ems_id", AttrValue::Int(ems.id)),
            ("ems_ref", "vm-doomed".into()),
        ]),
    )?;
    let found = store.find_by_ems_ref("Vm", ems.id, "vm-doomed")?;
    expect(found.as_ref().map(|r| r.id) == Some(again.id), || {
        format!("the reference answers the new VM, not {found:?}")
    })?;
    // tag_delete! deletes the entry's row, in the unit.
    tags::create_category(&*store, &[("name".into(), "doomed_cat".into())])
        .map_err(|e| fail(e.to_string()))?;
    let entry = tags::create_entry(&*store, "doomed_cat", &[("name".into(), "one".into())])
        .map_err(|e| fail(e.to_string()))?;
    let unit = store.clone().begin_unit();
    tags::delete_category(&*unit.objects(), "doomed_cat").map_err(|e| fail(e.to_string()))?;
    unit.commit()?;
    expect(
        store.load(tags::CLASSIFICATION, entry.obj.id)?.is_none()
            && store.list(tags::CLASSIFICATION)?.is_empty(),
        || "category_delete! deletes the category and its entries".into(),
    )?;
    Ok(())
}

/// `n` workers, each in its own unit of work on `store`, assign a tag of
/// their own and set a custom attribute of their own on one VM, every one
/// reading the VM before any commits: all `n` tags and attributes are
/// there at the end (the change is applied to the list as committed, not
/// the list each read).
pub fn check_concurrent_tagging<S: ServedStore + 'static>(
    store: Arc<S>,
    n: usize,
) -> Result<(), StoreError> {
    let err = |e: tags::TagError| fail(e.to_string());
    tags::create_category(&*store, &[("name".into(), "team".into())]).map_err(err)?;
    for i in 0..n {
        tags::create_entry(&*store, "team", &[("name".into(), format!("t{i}").into())])
            .map_err(err)?;
    }
    let vm = store.create("Vm", attrs(&[("name", "shared".into())]))?;
    let barrier = Arc::new(Barrier::new(n));
    let workers: Vec<_> = (0..n)
        .map(|i| {
            let (store, vm, barrier) = (store.clone(), vm.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<(), StoreError> {
                let unit = store.begin_unit();
                let objs = unit.objects();
                let out = tags::assign(&*objs, &vm, &format!("team/t{i}"));
                let set =
                    tags::custom_set(&*objs, &vm, &format!("k{i}"), &AttrValue::Int(i as i64));
                drop(objs);
                // Every worker has read the VM's empty lists before any
                // commits.
                barrier.wait();
                expect(out == Ok(tags::Outcome::Changed), || {
                    format!("assign t{i}: {out:?}")
                })?;
                set.map_err(err)?;
                unit.commit()
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| fail("a tagging worker panicked".into()))??;
    }
    let mut got = tags::tag_list(&*store, &vm, Some("team")).map_err(err)?;
    got.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    want.sort();
    expect(got == want, || format!("all {n} tags, not {got:?}"))?;
    let mut keys = tags::custom_keys(&*store, &vm).map_err(err)?;
    keys.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    want.sort();
    expect(keys == want, || {
        format!("all {n} custom attributes, not {keys:?}")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_and_never_repeat() {
        let a = unique_name("Store: Finds-By-Key");
        let b = unique_name("Store: Finds-By-Key");
        let prefix = format!("t_store__finds_by_key_{}_", std::process::id());
        assert!(a.starts_with(&prefix), "{a}");
        assert!(b.starts_with(&prefix), "{b}");
        assert_ne!(a, b);
        let long = unique_name(&"x".repeat(50));
        assert!(
            long.starts_with(&format!("t_{}_", "x".repeat(30))),
            "{long}"
        );
    }
}
