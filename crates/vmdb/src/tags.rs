//! Tags, categories and custom attributes: ManageIQ's `Classification`
//! (a category and its entries, tag names `/managed/<category>/<entry>`),
//! tag assignments (`tag_assign`, `tag_unassign`, `tagged_with?`, `tags`)
//! and the custom attributes with source `EVM` (`custom_get`, `custom_set`,
//! `custom_keys`), above the [`ObjectStore`] trait, so every backend keeps
//! them the same way and a method's writes commit with its unit of work.
//!
//! How they are stored:
//! * categories and entries are objects of class `Classification`: a
//!   category has `parent_id` 0, an entry its category's id; both carry
//!   `name`, `description` and `tag_name` (`/managed/environment`,
//!   `/managed/environment/prod`). Deleting one deletes its object
//!   ([`ObjectStore::delete`], with its index entries, in the caller's unit
//!   of work). A row that still carries `deleted_on` (written by a version
//!   that could not delete) is invisible to everything here;
//! * the tags assigned to an object are its attribute `tags`, an array of
//!   `{"id" => entry id, "name" => "/managed/<category>/<entry>"}`, the
//!   shape ManageIQ's REST API shows for `?attributes=tags`;
//! * its custom attributes are its attribute `custom_attributes`, an array
//!   of `{"name", "value", "source" => "EVM"}` (values are text, as
//!   ManageIQ's `custom_attributes.value` column).
//!
//! Assigning or removing a tag or a custom attribute is one
//! [`ObjectStore::modify`] of that attribute: the change (add this entry,
//! remove that one, set this key) is applied to the list as it is when the
//! write lands, under the backend's write lock, so two units of work
//! tagging the same object at once both keep their tag.

use super::{base_class, AttrChange, ObjectStore, StoreError, VmdbRef};
use automate_core::value::{AttrValue, Attributes};

/// The stored class of categories and their entries.
pub const CLASSIFICATION: &str = "Classification";
/// The namespace of the tags Automate manages (`Classification` tags).
pub const MANAGED: &str = "/managed";
/// The attribute holding an object's assigned tags.
pub const TAGS_ATTR: &str = "tags";
/// The attribute holding an object's custom attributes.
pub const CUSTOM_ATTR: &str = "custom_attributes";
/// The `source` of the custom attributes methods set (ManageIQ's
/// `miq_custom_attributes`).
pub const CUSTOM_SOURCE: &str = "EVM";

/// The base classes whose objects take tags and custom attributes
/// (ManageIQ's taggable models Automate stores).
pub const TAGGABLE: &[&str] = &[
    "VmOrTemplate",
    "Host",
    "ExtManagementSystem",
    "EmsCluster",
    "Storage",
    "MiqServer",
    "User",
    "MiqGroup",
    "Tenant",
];

/// The columns of ManageIQ's `classifications` table `category_create` and
/// `tag_create` take from their options (others are ignored, as ManageIQ
/// does).
const COLUMNS: &[&str] = &[
    "name",
    "description",
    "icon",
    "read_only",
    "syntax",
    "single_value",
    "example_text",
    "show",
    "default",
    "perf_by_tag",
];

/// What went wrong with a tag, a category or a custom attribute.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TagError {
    /// The object's class takes no tags (ManageIQ's `UntaggableModel`).
    #[error("Model {0} doesn't support tagging")]
    Untaggable(String),
    /// The object's class has no custom attributes.
    #[error("undefined method `{method}' for {class}: {class} has no custom attributes")]
    NoCustomAttributes {
        /// The object's class.
        class: String,
        /// `custom_get`, `custom_set` or `custom_keys`.
        method: &'static str,
    },
    /// A name that is not lower-case letters, digits, `_` and `:`.
    #[error("{what} name [{name}] must be lowercase alphanumeric characters, colons and underscores without spaces (at most 50)")]
    InvalidName {
        /// `category` or `tag`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// `category_create` or `tag_create` without a name.
    #[error("{0}: Name can't be blank")]
    NoName(&'static str),
    /// `category_create` for a name already taken.
    #[error("Category <{0}> already exists")]
    CategoryExists(String),
    /// `tag_create` for an entry already in its category.
    #[error("Entry <{entry}> already exists in category <{category}>")]
    EntryExists {
        /// The category.
        category: String,
        /// The entry.
        entry: String,
    },
    /// No live category of that name.
    #[error("Category <{0}> does not exist")]
    NoCategory(String),
    /// No live entry of that name in the category.
    #[error("Entry <{entry}> does not exist")]
    NoEntry {
        /// The category.
        category: String,
        /// The entry.
        entry: String,
    },
    /// A tag name that is not under `/managed` (`classify_by_tag`).
    #[error("Tag {0} is not a category entry")]
    NotManaged(String),
    /// Deleting an entry (or the category of an entry) still assigned.
    #[error("{0}")]
    Assigned(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`assign`] and [`unassign`] did. ManageIQ's `tag_assign` answers
/// `true` in every case; the caller logs the misses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The assignments changed.
    Changed,
    /// Nothing to do: already tagged (assign) or not tagged (unassign).
    Unchanged,
    /// No such category.
    NoCategory(String),
    /// No such entry in the category.
    NoEntry(String, String),
}

/// One tag assigned to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedTag {
    /// The entry's `Classification` id.
    pub id: i64,
    /// Its tag name, `/managed/<category>/<entry>`.
    pub name: String,
}

/// A category or entry as read (live ones only).
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Its object.
    pub obj: VmdbRef,
    /// Its stored attributes.
    pub attrs: Attributes,
}

impl Classification {
    /// Its `name`.
    pub fn name(&self) -> String {
        self.attrs
            .get("name")
            .map(AttrValue::to_text)
            .unwrap_or_default()
    }

    /// Its `parent_id` (0 for a category).
    pub fn parent_id(&self) -> i64 {
        self.attrs.get("parent_id").and_then(as_int).unwrap_or(0)
    }

    /// Whether it is a category (no parent).
    pub fn is_category(&self) -> bool {
        self.parent_id() == 0
    }

    /// `single_value` (a category whose objects take one of its entries).
    pub fn single_value(&self) -> bool {
        matches!(self.attrs.get("single_value"), Some(v) if truthy(v))
    }
}

fn as_int(v: &AttrValue) -> Option<i64> {
    match v {
        AttrValue::Int(i) => Some(*i),
        AttrValue::Str(s) => s.trim().parse().ok(),
        AttrValue::Object(r) => Some(r.id),
        _ => None,
    }
}

fn truthy(v: &AttrValue) -> bool {
    match v {
        AttrValue::Bool(b) => *b,
        AttrValue::Str(s) => matches!(s.trim(), "true" | "t" | "1" | "yes"),
        AttrValue::Int(i) => *i != 0,
        _ => false,
    }
}

/// Whether objects of `class` take tags and custom attributes.
pub fn is_taggable(class: &str) -> bool {
    base_class(class).is_some_and(|b| TAGGABLE.contains(&b))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b':')
}

fn live(store: &dyn ObjectStore, r: &VmdbRef) -> Result<Option<Classification>, StoreError> {
    let Some(obj) = store.load(CLASSIFICATION, r.id)? else {
        return Ok(None);
    };
    if obj.attrs.get("deleted_on").is_some_and(|v| !v.is_nil()) {
        return Ok(None);
    }
    Ok(Some(Classification {
        obj: r.clone(),
        attrs: obj.attrs,
    }))
}

/// The live row named `name` under `parent_id`.
fn row_named(
    store: &dyn ObjectStore,
    name: &str,
    parent_id: i64,
) -> Result<Option<Classification>, StoreError> {
    for r in store.find_by(CLASSIFICATION, "name", &AttrValue::str(name))? {
        if let Some(c) = live(store, &r)? {
            if c.parent_id() == parent_id {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// The live category named `name` (ManageIQ's `Classification.lookup_by_name`).
pub fn find_category(
    store: &dyn ObjectStore,
    name: &str,
) -> Result<Option<Classification>, StoreError> {
    row_named(store, name.trim(), 0)
}

/// The live entry `name` of `category` (`find_entry_by_name`).
pub fn find_entry(
    store: &dyn ObjectStore,
    category: &Classification,
    name: &str,
) -> Result<Option<Classification>, StoreError> {
    row_named(store, name.trim(), category.obj.id)
}

/// Every live category, by id (`Classification.categories`).
pub fn categories(store: &dyn ObjectStore) -> Result<Vec<Classification>, StoreError> {
    classifications(store, |c| c.is_category())
}

/// Every live entry of every category, by id.
pub fn all_entries(store: &dyn ObjectStore) -> Result<Vec<Classification>, StoreError> {
    classifications(store, |c| !c.is_category())
}

fn classifications(
    store: &dyn ObjectStore,
    keep: impl Fn(&Classification) -> bool,
) -> Result<Vec<Classification>, StoreError> {
    let mut out = Vec::new();
    for r in store.list(CLASSIFICATION)? {
        if let Some(c) = live(store, &r)? {
            if keep(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// The live entries of `category`, by id (`category.entries`).
pub fn entries(
    store: &dyn ObjectStore,
    category: &Classification,
) -> Result<Vec<Classification>, StoreError> {
    let mut out = Vec::new();
    for r in store.find_by(
        CLASSIFICATION,
        "parent_id",
        &AttrValue::Int(category.obj.id),
    )? {
        if let Some(c) = live(store, &r)? {
            out.push(c);
        }
    }
    out.sort_by_key(|c| c.obj.id);
    Ok(out)
}

/// `$evm.execute('category_exists?', name)`.
pub fn category_exists(store: &dyn ObjectStore, name: &str) -> Result<bool, StoreError> {
    Ok(find_category(store, name)?.is_some())
}

/// `$evm.execute('tag_exists?', category, entry)`.
pub fn tag_exists(
    store: &dyn ObjectStore,
    category: &str,
    entry: &str,
) -> Result<bool, StoreError> {
    match find_category(store, category)? {
        Some(cat) => Ok(find_entry(store, &cat, entry)?.is_some()),
        None => Ok(false),
    }
}

/// The options ManageIQ keeps (its columns), keys lower-cased, `name`
/// first; the name itself, checked.
fn row_options(
    options: &[(String, AttrValue)],
    what: &'static str,
) -> Result<(String, Attributes), TagError> {
    let mut attrs = Attributes::default();
    let mut name = None;
    for (k, v) in options {
        let k = k.trim().trim_start_matches(':').to_ascii_lowercase();
        if !COLUMNS.contains(&k.as_str()) {
            continue;
        }
        if k == "name" {
            name = Some(v.to_text().trim().to_string());
        } else {
            attrs.insert(k, v.clone());
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or(TagError::NoName(if what == "category" {
            "category_create"
        } else {
            "tag_create"
        }))?;
    if !valid_name(&name) {
        return Err(TagError::InvalidName { what, name });
    }
    Ok((name, attrs))
}

/// Writes `row` (name, parent, tag name, options) as a new object.
fn put_row(
    store: &dyn ObjectStore,
    name: &str,
    parent_id: i64,
    tag_name: String,
    mut options: Attributes,
) -> Result<Classification, StoreError> {
    if !options.contains_key("description") {
        options.insert("description".into(), AttrValue::str(name));
    }
    let mut row = Attributes::default();
    row.insert("name".into(), AttrValue::str(name));
    row.insert("parent_id".into(), AttrValue::Int(parent_id));
    row.insert("tag_name".into(), AttrValue::str(tag_name));
    row.insert("ns".into(), AttrValue::str(MANAGED));
    for (k, v) in options {
        row.insert(k, v);
    }
    let obj = store.create(CLASSIFICATION, row.clone())?;
    Ok(Classification { obj, attrs: row })
}

/// `$evm.execute('category_create', options)`: `name` (lower-case
/// letters, digits, `_`, `:`), and ManageIQ's columns (`description`,
/// `single_value`, `show`, `read_only`, `example_text`, ...); other keys
/// are ignored.
pub fn create_category(
    store: &dyn ObjectStore,
    options: &[(String, AttrValue)],
) -> Result<Classification, TagError> {
    let (name, mut attrs) = row_options(options, "category")?;
    if row_named(store, &name, 0)?.is_some() {
        return Err(TagError::CategoryExists(name));
    }
    for (k, v) in [
        ("single_value", AttrValue::Bool(false)),
        ("show", AttrValue::Bool(true)),
        ("read_only", AttrValue::Bool(false)),
        ("syntax", AttrValue::str("string")),
    ] {
        if !attrs.contains_key(k) {
            attrs.insert(k.into(), v);
        }
    }
    let tag_name = format!("{MANAGED}/{name}");
    Ok(put_row(store, &name, 0, tag_name, attrs)?)
}

/// `$evm.execute('tag_create', category, options)`: a new entry of
/// `category`.
pub fn create_entry(
    store: &dyn ObjectStore,
    category: &str,
    options: &[(String, AttrValue)],
) -> Result<Classification, TagError> {
    let cat = find_category(store, category)?
        .ok_or_else(|| TagError::NoCategory(category.to_string()))?;
    let (name, attrs) = row_options(options, "tag")?;
    if row_named(store, &name, cat.obj.id)?.is_some() {
        return Err(TagError::EntryExists {
            category: cat.name(),
            entry: name,
        });
    }
    let tag_name = format!("{MANAGED}/{}/{name}", cat.name());
    Ok(put_row(store, &name, cat.obj.id, tag_name, attrs)?)
}

/// Deletes the row (ManageIQ's `destroy`); one already gone (another
/// worker deleted it first) is no error.
fn destroy(store: &dyn ObjectStore, c: &Classification) -> Result<(), StoreError> {
    if !store.delete(&c.obj)? {
        tracing::debug!(target: "evm", "MIQ(Classification#destroy) Classification [{}] was already gone", c.obj.id);
    }
    Ok(())
}

/// `$evm.execute('category_delete!', name)`: the category and its
/// entries; refused while one of its entries is assigned.
pub fn delete_category(store: &dyn ObjectStore, name: &str) -> Result<(), TagError> {
    let cat = find_category(store, name)?.ok_or_else(|| TagError::NoCategory(name.to_string()))?;
    let entries = entries(store, &cat)?;
    for e in &entries {
        if is_assigned(store, e.obj.id)? {
            return Err(TagError::Assigned("This category contains tags which have been assigned. Please delete assignments before deleting the category."));
        }
    }
    for e in &entries {
        destroy(store, e)?;
    }
    destroy(store, &cat)?;
    Ok(())
}

/// `$evm.execute('tag_delete!', category, entry)`: refused while the entry
/// is assigned.
pub fn delete_entry(store: &dyn ObjectStore, category: &str, entry: &str) -> Result<(), TagError> {
    let cat = find_category(store, category)?
        .ok_or_else(|| TagError::NoCategory(category.to_string()))?;
    let ent = find_entry(store, &cat, entry)?.ok_or_else(|| TagError::NoEntry {
        category: category.to_string(),
        entry: entry.to_string(),
    })?;
    if is_assigned(store, ent.obj.id)? {
        return Err(TagError::Assigned(
            "This tag has assignments. Please delete assignments before deleting the tag.",
        ));
    }
    destroy(store, &ent)?;
    Ok(())
}

/// Whether any object holds entry `id` (every taggable object is read:
/// deletions are rare).
fn is_assigned(store: &dyn ObjectStore, id: i64) -> Result<bool, StoreError> {
    for class in TAGGABLE {
        for r in store.list(class)? {
            if stored_tags(store, &r)?.iter().any(|t| t.id == id) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn check_taggable(obj: &VmdbRef) -> Result<(), TagError> {
    if is_taggable(&obj.class) {
        Ok(())
    } else {
        Err(TagError::Untaggable(obj.class.to_string()))
    }
}

/// The tags as stored on `obj` (no check of its class).
fn stored_tags(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<Vec<AssignedTag>, StoreError> {
    Ok(parse_tags(store.attribute(obj, TAGS_ATTR)?.as_ref()))
}

/// The tags a stored `tags` attribute holds.
fn parse_tags(value: Option<&AttrValue>) -> Vec<AssignedTag> {
    let Some(AttrValue::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let AttrValue::Hash(pairs) = item else {
                return None;
            };
            let get = |k: &str| pairs.iter().find(|(pk, _)| pk.to_text() == k).map(|p| &p.1);
            Some(AssignedTag {
                id: get("id").and_then(as_int).unwrap_or(0),
                name: get("name")?.to_text(),
            })
        })
        .collect()
}

/// Changes `obj`'s tags with `f`, applied to the list as it is when the
/// write lands ([`ObjectStore::modify`]).
fn modify_tags(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    f: impl Fn(&mut Vec<AssignedTag>) + Send + Sync + 'static,
) -> Result<(), StoreError> {
    let change = AttrChange::new(move |current| {
        let mut tags = parse_tags(current);
        f(&mut tags);
        tags_value(&tags)
    });
    store.modify(obj, TAGS_ATTR, &change)
}

/// The stored `tags` attribute of `tags`.
fn tags_value(tags: &[AssignedTag]) -> AttrValue {
    AttrValue::Array(
        tags.iter()
            .map(|t| {
                AttrValue::Hash(vec![
                    (AttrValue::str("id"), AttrValue::Int(t.id)),
                    (AttrValue::str("name"), AttrValue::str(t.name.clone())),
                ])
            })
            .collect(),
    )
}

/// The tags assigned to `obj`, in the order assigned.
pub fn assigned(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<Vec<AssignedTag>, TagError> {
    check_taggable(obj)?;
    Ok(stored_tags(store, obj)?)
}

/// `tag` (`category/entry`, or a whole `/managed/category/entry`) as
/// ManageIQ's `classify_by_tag` splits `/managed/<tag>`: the last two
/// segments.
fn split_tag(tag: &str) -> Result<(String, String), TagError> {
    let full = format!("{MANAGED}/{}", tag.trim());
    let mut parts: Vec<&str> = full.split('/').collect();
    if parts.get(1) != Some(&"managed") {
        return Err(TagError::NotManaged(full));
    }
    let entry = parts.pop().unwrap_or_default().to_string();
    let category = parts.pop().unwrap_or_default().to_string();
    Ok((category, entry))
}

/// `vm.tag_assign("category/entry")`: assigns the entry (in a
/// `single_value` category, in place of the category's other entry).
pub fn assign(store: &dyn ObjectStore, obj: &VmdbRef, tag: &str) -> Result<Outcome, TagError> {
    check_taggable(obj)?;
    let (category, entry) = split_tag(tag)?;
    let Some(cat) = find_category(store, &category)? else {
        return Ok(Outcome::NoCategory(category));
    };
    let Some(ent) = find_entry(store, &cat, &entry)? else {
        return Ok(Outcome::NoEntry(category, entry));
    };
    if stored_tags(store, obj)?.iter().any(|t| t.id == ent.obj.id) {
        return Ok(Outcome::Unchanged);
    }
    let single = cat
        .single_value()
        .then(|| format!("{MANAGED}/{}/", cat.name()));
    let tag = AssignedTag {
        id: ent.obj.id,
        name: format!("{MANAGED}/{}/{}", cat.name(), ent.name()),
    };
    modify_tags(store, obj, move |tags| {
        if tags.iter().any(|t| t.id == tag.id) {
            return;
        }
        if let Some(prefix) = &single {
            tags.retain(|t| !t.name.starts_with(prefix.as_str()));
        }
        tags.push(tag.clone());
    })?;
    Ok(Outcome::Changed)
}

/// `vm.tag_unassign("category/entry")`.
pub fn unassign(store: &dyn ObjectStore, obj: &VmdbRef, tag: &str) -> Result<Outcome, TagError> {
    check_taggable(obj)?;
    let (category, entry) = split_tag(tag)?;
    let name = format!("{MANAGED}/{category}/{entry}");
    if !stored_tags(store, obj)?.iter().any(|t| t.name == name) {
        return Ok(Outcome::Unchanged);
    }
    modify_tags(store, obj, move |tags| tags.retain(|t| t.name != name))?;
    Ok(Outcome::Changed)
}

/// `vm.tags` (`category/entry` each) or `vm.tags(category)` (the entry
/// names in that category), as ManageIQ's `tag_list` under
/// `/managed[/category]`.
pub fn tag_list(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    category: Option<&str>,
) -> Result<Vec<String>, TagError> {
    let ns = match category {
        Some(c) => format!("{MANAGED}/{}/", c.trim()),
        None => format!("{MANAGED}/"),
    };
    Ok(assigned(store, obj)?
        .into_iter()
        .filter_map(|t| t.name.strip_prefix(&ns).map(str::to_string))
        .collect())
}

/// `vm.tagged_with?(category, entry)`.
pub fn tagged_with(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    category: &str,
    entry: &str,
) -> Result<bool, TagError> {
    let name = format!("{MANAGED}/{}/{}", category.trim(), entry.trim());
    Ok(assigned(store, obj)?.iter().any(|t| t.name == name))
}

/// One custom attribute of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomAttribute {
    /// Its key.
    pub name: String,
    /// Its value (text).
    pub value: String,
    /// `EVM` for the ones methods set.
    pub source: String,
}

fn check_custom(obj: &VmdbRef, method: &'static str) -> Result<(), TagError> {
    if is_taggable(&obj.class) {
        Ok(())
    } else {
        Err(TagError::NoCustomAttributes {
            class: obj.class.to_string(),
            method,
        })
    }
}

/// Every custom attribute of `obj`, in the order set.
pub fn custom_attributes<S: ObjectStore + ?Sized>(
    store: &S,
    obj: &VmdbRef,
) -> Result<Vec<CustomAttribute>, StoreError> {
    Ok(parse_custom(store.attribute(obj, CUSTOM_ATTR)?.as_ref()))
}

/// The custom attributes a stored `custom_attributes` attribute holds.
fn parse_custom(value: Option<&AttrValue>) -> Vec<CustomAttribute> {
    let Some(AttrValue::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let AttrValue::Hash(pairs) = item else {
                return None;
            };
            let get = |k: &str| {
                pairs
                    .iter()
                    .find(|(pk, _)| pk.to_text() == k)
                    .map(|p| p.1.to_text())
            };
            Some(CustomAttribute {
                name: get("name")?,
                value: get("value").unwrap_or_default(),
                source: get("source").unwrap_or_else(|| CUSTOM_SOURCE.to_string()),
            })
        })
        .collect()
}

/// `vm.custom_keys`: the keys of the `EVM` custom attributes.
pub fn custom_keys(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<Vec<String>, TagError> {
    check_custom(obj, "custom_keys")?;
    keys_sourced(store, obj, CUSTOM_SOURCE)
}

/// `vm.custom_get(key)`: the value, `None` when unset.
pub fn custom_get(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    key: &str,
) -> Result<Option<String>, TagError> {
    check_custom(obj, "custom_get")?;
    get_sourced(store, obj, key, CUSTOM_SOURCE)
}

/// `vm.custom_set(key, value)`: sets the value as text; a blank value
/// (nil, empty, only spaces, false) removes the key, as ManageIQ's
/// `miq_custom_set` does.
pub fn custom_set(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    key: &str,
    value: &AttrValue,
) -> Result<(), TagError> {
    check_custom(obj, "custom_set")?;
    set_sourced(store, obj, key, value, CUSTOM_SOURCE)
}

/// The `source` of the custom attributes a provider keeps on its VMs
/// (ManageIQ's `ems_custom_attributes`: VMware's custom fields).
pub const EMS_CUSTOM_SOURCE: &str = "VC";

/// `vm.ems_custom_keys`: the keys of the provider's custom attributes.
pub fn ems_custom_keys(store: &dyn ObjectStore, obj: &VmdbRef) -> Result<Vec<String>, TagError> {
    check_custom(obj, "ems_custom_keys")?;
    keys_sourced(store, obj, EMS_CUSTOM_SOURCE)
}

/// `vm.ems_custom_get(key)`: the provider's value, `None` when unset.
pub fn ems_custom_get(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    key: &str,
) -> Result<Option<String>, TagError> {
    check_custom(obj, "ems_custom_get")?;
    get_sourced(store, obj, key, EMS_CUSTOM_SOURCE)
}

/// The keys of `obj`'s custom attributes from `source`.
fn keys_sourced(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    source: &str,
) -> Result<Vec<String>, TagError> {
    Ok(custom_attributes(store, obj)?
        .into_iter()
        .filter(|c| c.source == source)
        .map(|c| c.name)
        .collect())
}

/// The value of `obj`'s custom attribute `key` from `source`.
fn get_sourced(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    key: &str,
    source: &str,
) -> Result<Option<String>, TagError> {
    Ok(custom_attributes(store, obj)?
        .into_iter()
        .find(|c| c.source == source && c.name == key)
        .map(|c| c.value))
}

/// What the provider stores once it has performed `vm.ems_custom_set(key,
/// value)` (its `set_custom_field`): the `VC` custom attribute, a blank
/// value removing it.
pub fn ems_custom_set(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    key: &str,
    value: &AttrValue,
) -> Result<(), TagError> {
    check_custom(obj, "ems_custom_set")?;
    set_sourced(store, obj, key, value, EMS_CUSTOM_SOURCE)
}

/// `vm.ems_custom_attributes`: the provider's custom attributes, each a
/// hash of `name`, `value`, `source`.
pub fn ems_custom_attribute_rows<S: ObjectStore + ?Sized>(
    store: &S,
    obj: &VmdbRef,
) -> Result<AttrValue, StoreError> {
    Ok(AttrValue::Array(
        custom_attributes(store, obj)?
            .into_iter()
            .filter(|c| c.source == EMS_CUSTOM_SOURCE)
            .map(custom_row)
            .collect(),
    ))
}

fn custom_row(c: CustomAttribute) -> AttrValue {
    AttrValue::Hash(vec![
        (AttrValue::str("name"), AttrValue::str(c.name)),
        (AttrValue::str("value"), AttrValue::str(c.value)),
        (AttrValue::str("source"), AttrValue::str(c.source)),
    ])
}

fn set_sourced(
    store: &dyn ObjectStore,
    obj: &VmdbRef,
    key: &str,
    value: &AttrValue,
    source: &str,
) -> Result<(), TagError> {
    let is_set = |all: &[CustomAttribute], key: &str| {
        all.iter().any(|c| c.source == source && c.name == key)
    };
    let blank = value.is_blank();
    if blank && !is_set(&custom_attributes(store, obj)?, key) {
        return Ok(());
    }
    let key = key.to_string();
    let text = value.to_text();
    let source = source.to_string();
    // Applied to the list as it is when the write lands: a concurrent
    // custom_set of another key is kept.
    let change = AttrChange::new(move |current| {
        let mut all = parse_custom(current);
        let at = all.iter().position(|c| c.source == source && c.name == key);
        match (at, blank) {
            (None, true) => {}
            (Some(i), true) => {
                all.remove(i);
            }
            (Some(i), false) => {
                if let Some(c) = all.get_mut(i) {
                    c.value = text.clone();
                }
            }
            (None, false) => all.push(CustomAttribute {
                name: key.clone(),
                value: text.clone(),
                source: source.clone(),
            }),
        }
        AttrValue::Array(all.into_iter().map(custom_row).collect())
    });
    Ok(store.modify(obj, CUSTOM_ATTR, &change)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn opts(pairs: &[(&str, AttrValue)]) -> Vec<(String, AttrValue)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn vm(store: &MemoryStore) -> VmdbRef {
        let mut a = Attributes::default();
        a.insert("name".into(), AttrValue::str("web01"));
        store.create("Vm", a).unwrap()
    }

    #[test]
    fn categories_and_entries_are_created_found_and_deleted() {
        let s = MemoryStore::default();
        assert!(!category_exists(&s, "environment").unwrap());
        create_category(
            &s,
            &opts(&[
                ("name", AttrValue::str("environment")),
                ("description", AttrValue::str("Environment")),
                ("single_value", AttrValue::Bool(true)),
                ("bogus", AttrValue::str("ignored")),
            ]),
        )
        .unwrap();
        assert!(category_exists(&s, "environment").unwrap());
        assert_eq!(
            create_category(&s, &opts(&[("name", AttrValue::str("environment"))])),
            Err(TagError::CategoryExists("environment".into()))
        );
        let cat = find_category(&s, "environment").unwrap().unwrap();
        assert!(cat.single_value());
        assert!(!cat.attrs.contains_key("bogus"));
        assert_eq!(
            cat.attrs.get("tag_name"),
            Some(&AttrValue::str("/managed/environment"))
        );
        create_entry(
            &s,
            "environment",
            &opts(&[("name", AttrValue::str("prod"))]),
        )
        .unwrap();
        assert!(tag_exists(&s, "environment", "prod").unwrap());
        assert!(!tag_exists(&s, "environment", "dev").unwrap());
        assert!(!tag_exists(&s, "nope", "prod").unwrap());
        assert_eq!(
            create_entry(&s, "nope", &opts(&[("name", AttrValue::str("x"))])),
            Err(TagError::NoCategory("nope".into()))
        );
        assert!(matches!(
            create_entry(
                &s,
                "environment",
                &opts(&[("name", AttrValue::str("Bad Name"))])
            ),
            Err(TagError::InvalidName { .. })
        ));
        assert_eq!(
            create_category(&s, &opts(&[("description", AttrValue::str("x"))])),
            Err(TagError::NoName("category_create"))
        );
        assert_eq!(entries(&s, &cat).unwrap().len(), 1);
        let prod = find_entry(&s, &cat, "prod").unwrap().unwrap();
        delete_entry(&s, "environment", "prod").unwrap();
        assert!(!tag_exists(&s, "environment", "prod").unwrap());
        // Deleted for real: the row is gone, not marked.
        assert_eq!(s.load(CLASSIFICATION, prod.obj.id).unwrap(), None);
        assert_eq!(s.list(CLASSIFICATION).unwrap().len(), 1);
        // A deleted name can be created again (a new row).
        let again = create_entry(
            &s,
            "environment",
            &opts(&[("name", AttrValue::str("prod"))]),
        )
        .unwrap();
        assert!(tag_exists(&s, "environment", "prod").unwrap());
        assert_eq!(s.list(CLASSIFICATION).unwrap().len(), 2);
        assert_eq!(again.parent_id(), cat.obj.id);
        delete_category(&s, "environment").unwrap();
        assert!(!category_exists(&s, "environment").unwrap());
        assert!(!tag_exists(&s, "environment", "prod").unwrap());
        assert!(categories(&s).unwrap().is_empty());
        assert!(s.list(CLASSIFICATION).unwrap().is_empty());
        assert_eq!(
            delete_category(&s, "environment"),
            Err(TagError::NoCategory("environment".into()))
        );
    }

    #[test]
    fn tags_are_assigned_listed_and_removed_as_manageiq_does() {
        let s = MemoryStore::default();
        let v = vm(&s);
        for (cat, single) in [("environment", true), ("department", false)] {
            create_category(
                &s,
                &opts(&[
                    ("name", AttrValue::str(cat)),
                    ("single_value", AttrValue::Bool(single)),
                ]),
            )
            .unwrap();
        }
        for (cat, e) in [
            ("environment", "prod"),
            ("environment", "dev"),
            ("department", "finance"),
            ("department", "hr"),
        ] {
            create_entry(&s, cat, &opts(&[("name", AttrValue::str(e))])).unwrap();
        }
        assert_eq!(assign(&s, &v, "environment/dev").unwrap(), Outcome::Changed);
        assert_eq!(
            assign(&s, &v, "environment/dev").unwrap(),
            Outcome::Unchanged
        );
        // single_value: prod replaces dev.
        assign(&s, &v, "environment/prod").unwrap();
        assign(&s, &v, "department/finance").unwrap();
        assign(&s, &v, "/managed/department/hr").unwrap();
        assert_eq!(
            tag_list(&s, &v, None).unwrap(),
            ["environment/prod", "department/finance", "department/hr"]
        );
        assert_eq!(
            tag_list(&s, &v, Some("department")).unwrap(),
            ["finance", "hr"]
        );
        assert!(tagged_with(&s, &v, "environment", "prod").unwrap());
        assert!(!tagged_with(&s, &v, "environment", "dev").unwrap());
        assert_eq!(
            assign(&s, &v, "nope/x").unwrap(),
            Outcome::NoCategory("nope".into())
        );
        assert_eq!(
            assign(&s, &v, "department/x").unwrap(),
            Outcome::NoEntry("department".into(), "x".into())
        );
        // Assigned entries cannot be deleted.
        assert!(matches!(
            delete_entry(&s, "department", "hr"),
            Err(TagError::Assigned(_))
        ));
        assert!(matches!(
            delete_category(&s, "department"),
            Err(TagError::Assigned(_))
        ));
        assert_eq!(unassign(&s, &v, "department/hr").unwrap(), Outcome::Changed);
        assert_eq!(
            unassign(&s, &v, "department/hr").unwrap(),
            Outcome::Unchanged
        );
        delete_entry(&s, "department", "hr").unwrap();
        assert_eq!(
            tag_list(&s, &v, None).unwrap(),
            ["environment/prod", "department/finance"]
        );
        // The stored shape is the REST API's.
        let stored = s.attribute(&v, TAGS_ATTR).unwrap().unwrap();
        assert!(
            stored.inspect().contains("/managed/environment/prod"),
            "{}",
            stored.inspect()
        );
        // Events take no tags.
        let ev = s.create("EmsEvent", Attributes::default()).unwrap();
        assert_eq!(
            assign(&s, &ev, "department/finance"),
            Err(TagError::Untaggable("EmsEvent".into()))
        );
        assert_eq!(split_tag("x"), Ok(("managed".to_string(), "x".to_string())));
    }

    /// Workers tagging one VM at once on the memory store (its changes are
    /// applied under its write lock): every tag and attribute is kept.
    #[test]
    fn concurrent_tagging_of_one_vm_keeps_every_tag() {
        let s = std::sync::Arc::new(MemoryStore::default());
        let v = vm(&s);
        create_category(&*s, &opts(&[("name", AttrValue::str("team"))])).unwrap();
        for i in 0..16 {
            create_entry(
                &*s,
                "team",
                &opts(&[("name", AttrValue::str(format!("t{i}")))]),
            )
            .unwrap();
        }
        let workers: Vec<_> = (0..16)
            .map(|i| {
                let (s, v) = (s.clone(), v.clone());
                std::thread::spawn(move || {
                    assign(&*s, &v, &format!("team/t{i}")).unwrap();
                    custom_set(&*s, &v, &format!("k{i}"), &AttrValue::Int(i)).unwrap();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(tag_list(&*s, &v, Some("team")).unwrap().len(), 16);
        assert_eq!(custom_keys(&*s, &v).unwrap().len(), 16);
    }

    #[test]
    fn custom_attributes_set_get_and_blank_removes() {
        let s = MemoryStore::default();
        let v = vm(&s);
        assert_eq!(custom_get(&s, &v, "owner").unwrap(), None);
        custom_set(&s, &v, "owner", &AttrValue::str("ada")).unwrap();
        custom_set(&s, &v, "cost", &AttrValue::Int(5)).unwrap();
        assert_eq!(custom_get(&s, &v, "cost").unwrap().as_deref(), Some("5"));
        custom_set(&s, &v, "owner", &AttrValue::str("bob")).unwrap();
        assert_eq!(custom_keys(&s, &v).unwrap(), ["owner", "cost"]);
        assert_eq!(custom_get(&s, &v, "owner").unwrap().as_deref(), Some("bob"));
        custom_set(&s, &v, "owner", &AttrValue::str("  ")).unwrap();
        custom_set(&s, &v, "never", &AttrValue::Nil).unwrap();
        assert_eq!(custom_keys(&s, &v).unwrap(), ["cost"]);
        let all = custom_attributes(&s, &v).unwrap();
        assert_eq!(all[0].source, "EVM");
        let req = s
            .create("AutomationRequest", Attributes::default())
            .unwrap();
        assert!(matches!(
            custom_set(&s, &req, "k", &AttrValue::str("v")),
            Err(TagError::NoCustomAttributes { .. })
        ));
    }
}
