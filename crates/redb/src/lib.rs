//! The redb backend of the object store: one [redb] file (`./automate.redb` by default,
//! `--db FILE`) holding the provider objects Automate reads.
//!
//! # Tables
//!
//! | table | key | value |
//! |---|---|---|
//! | `objects` | `(base_class: &str, id: i64)` | the object: `{"class": "EmsEvent", "attrs": {...}}` as JSON bytes |
//! | `sequences` | `"<BaseClass>:<region>"` (`"VmOrTemplate:1"`) | the next id to hand out for that base class in that region (`region * 10^12 + seq`) |
//! | `ems_refs` | `(base_class: &str, ems_id: i64, ref: &str)` | the id of the object with that provider reference |
//! | `attr_index_v2` | `&[u8]`: `base_class \0 attr \0 value \0` + the id (8 bytes, big-endian, sign bit flipped); for the event stream's `vm_or_template_id` and `host_id`, the id's bucket (8 bytes, 512 ids) before the value | `()`: the objects whose indexed attribute has that (encoded) value; flat bytes so a comparison is one `memcmp` |
//! | `meta` | `"attr_index_version"` | the version `attr_index` was built for |
//! | `scheduled`, `scheduled_by_id`, `scheduled_meta` | see `schedule` | |
//!
//! Objects are keyed by their *base* class ([`automate_vmdb::base_class`]): an `EmsEvent`
//! and a `MiqEvent` both live under `EventStream`, so `EventStream::event_stream=ID`
//! finds either, and the stored class (`EmsEvent`) comes back in the
//! [`automate_vmdb::VmdbRef`]. Ids are ManageIQ-style, `region * 10^12 + seq` (region 1:
//! `1000000000001`, `1000000000002`, ...), with one sequence per base class
//! and region, as ManageIQ has one per table and as [`automate_vmdb::MemoryStore`]
//! does: host `1000000000001` and VM `1000000000001` coexist. The id is
//! allocated in the same write transaction as the insert, so a crash can never
//! hand the same id out twice nor leave the sequence behind the objects.
//!
//! **Encoding.** An object is stored as JSON (serde_json, insertion-ordered):
//! strings, integers, floats, booleans, nil and arrays as themselves; the
//! types JSON lacks as one-key tagged objects: `{"$sym": "s"}`,
//! `{"$pw": "clear"}`, `{"$obj": ["Host", 1000000000001]}`,
//! `{"$hash": [[k, v], ...]}` (keys of any type, in order) and
//! `{"$f": "NaN" | "inf" | "-inf"}`. JSON was chosen to start with because it
//! is easy to inspect and to evolve; every value begins with `{`, so a later
//! compact binary encoding can be told apart by its first byte without a
//! table migration. A password attribute of an object is stored in clear
//! (ManageIQ encrypts them with its v2 key; not done here yet); the
//! passwords of a saved workspace (a retry's state vars) are encrypted
//! before they reach the store (`automate_engine::state_data`).
//!
//! **Provider references.** When an object has an `ems_id` and an `ems_ref`
//! and/or a `uid_ems`, `ems_refs` maps `(base_class, ems_id, ref)` to its id
//! ([`ObjectStore::find_by_ems_ref`](automate_vmdb::ObjectStore::find_by_ems_ref)); the index is maintained in the same
//! transaction as every create, update and delete. If two objects claim the
//! same reference the last writer wins.
//!
//! **Associations** are attributes holding ids (`host_id`, `ems_id`,
//! `vm_or_template_id`, ...), resolved by the rules every backend shares
//! ([`automate_vmdb::associations`]). [`automate_vmdb::ObjectStore::attribute`] resolves a name to
//! the object it refers to: `vm.host` reads `host_id` and returns
//! [`automate_core::value::AttrValue::Object`] of the host (nil when the id is unset or dangling);
//! `ems`/`ext_management_system` read `ems_id`, `vm`/`vm_or_template`
//! `vm_or_template_id` (or `vm_id`), `dest_vm` `dest_vm_or_template_id`,
//! `dest_host`, `miq_server`, `user`, `miq_request`, and any `<name>` whose
//! `<name>_id` is set and names a known class (`storage`, `ems_cluster`,
//! `tenant`, ...); `target` reads the polymorphic `target_type`/`target_id`.
//! The has-many side (`host.vms`, `ems.hosts`, `ems.vms`,
//! `miq_request.miq_request_tasks`) returns an array of objects.
//!
//! **Queries.** [`automate_vmdb::ObjectStore::find_by`] on one of the indexed attributes
//! (`name`, `ems_ref`, `uid_ems`, `dedup_key`, `userid`, `guid`,
//! `chain_id`, `event_type`, `host_id`, `ems_id`, `vm_or_template_id`,
//! `miq_request_id`) with a string, symbol, integer, boolean or object value
//! reads `attr_index`, which every write maintains in its transaction; any
//! other query scans the base class's key range, decoding every object of
//! that base class. The index is rebuilt from `objects` on open when it was
//! built for another `attr_index_version` (or by a build without it); files
//! of version 1 had it as the tuple-keyed table `attr_index`, which that
//! rebuild drops.
//! Provider-reference lookups ([`ObjectStore::find_by_ems_ref`](automate_vmdb::ObjectStore::find_by_ems_ref)) use
//! `ems_refs`.
//!
//! # Durability
//!
//! Every write ([`automate_vmdb::ObjectStore::create`], [`automate_vmdb::ObjectStore::update`],
//! [`RedbStore::write_batch`]) is one redb write transaction committed with
//! redb's default [`redb::Durability::Immediate`]: when the call returns the
//! data is on disk (fsync'd), and a crash at any point, including `kill -9`
//! mid-write, leaves the file at the last committed transaction (redb is
//! copy-on-write with a checksummed commit slot; the next open repairs the
//! allocator state). [`RedbStore::write_batch`] runs several writes, and
//! scheduled-work changes, in one transaction: they become visible and
//! durable together or not at all, and cost one fsync (group commit). Reads
//! are snapshot reads and never block the writer.
//!
//! The file is locked by the process that has it open; a second open (from
//! this process or another) fails with "already open". Share the store with
//! `Arc<RedbStore>`, and its [`redb::Database`] with [`RedbStore::database`].
//! [`RedbStore::open_read_only`] opens it for commands that only read:
//! nothing is written, not even a repair (see `file`). The file is
//! written through [`health::GuardedFile`]: a full disk makes
//! writes wait for space instead of failing ([`RedbStore::health`] says
//! so), and [`RedbStore::guard`] turns a panic inside redb into an error.
//!
//! # Files
//!
//! Everything that knows redb is in this module; it depends on the
//! backend-neutral rest of [`automate_vmdb`] (the traits, values and errors),
//! never the other way. `store` opens the file and implements
//! [`automate_vmdb::ObjectStore`]; `schema` defines the tables and migrates
//! them; `codec` encodes and decodes objects; `index` is the attribute
//! index; `relations` resolves associations with the backend-neutral rules
//! of [`automate_vmdb::associations`]; `read` the layered reads,
//! `cache` the decoded-object cache, `unit` units of work, `batch`
//! one write transaction, `verify` the consistency check; `schedule`
//! is the scheduled-work tables ([`automate_vmdb::Schedule`] on redb),
//! `event_queue` the durable event queue on them
//! ([`automate_vmdb::event_queue::EventQueue`]), `group` group commit,
//! `group_units` units of work committed by it
//! ([`automate_vmdb::UnitOfWork`]), `paging` lazy pages, `health` and `file`
//! the file itself (opening, guarding, backup), `check` the integrity
//! check of a file.

#![deny(missing_docs)]

mod batch;
mod cache;
mod check;
mod codec;
mod event_queue;
mod file;
mod group;
mod group_units;
pub mod health;
mod index;
mod paging;
mod read;
mod relations;
mod schedule;
mod schema;
mod served;
mod store;
mod unit;
mod verify;

pub use batch::Batch;
pub use check::{check, CheckReport};
pub use event_queue::RedbEventQueue;
pub use file::{guard, BackupReport};
pub use group::{Committing, GroupCommit, GroupWriter, Work};
pub use group_units::{GroupUnit, GroupUnits};
pub use paging::{Keep, Page, PageQuery};
pub use schedule::RedbSchedule;
pub use store::RedbStore;
pub use unit::{PreparedUnit, UnitStore};
pub use verify::VerifyReport;

use automate_vmdb::{BackendError, StoreError};

/// A redb error (or any other backend library's) as a [`StoreError`] that
/// keeps it as its source.
pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Failed(BackendError::new(e))
}

/// Attributes from `(name, value)` pairs, for the tests.
#[cfg(test)]
pub(crate) fn test_attrs(
    pairs: &[(&str, automate_core::value::AttrValue)],
) -> automate_core::value::Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
