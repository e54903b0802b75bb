//! ActiveRecord-style queries over one service-model class: what
//! `$evm.vmdb(:vm).where(:name => "x", :power_state => "on").order(:name)
//! .limit(5)` asks, as a [`Query`] every backend answers the same way
//! through [`ObjectStore::query`](crate::ObjectStore::query) and
//! [`ObjectStore::count`](crate::ObjectStore::count).
//!
//! # Rules (the same on every backend)
//!
//! * A [`Condition`] holds when the object's attribute equals one of its
//!   values (`where(:name => ["a", "b"])` is SQL's `IN`). An integer also
//!   matches the same digits stored as text and the other way round (ids
//!   come in both forms); a nil value matches an attribute that is nil or
//!   absent (SQL's `IS NULL`); `id` is the object's id.
//! * Conditions are ANDed; no condition is every object of the class
//!   (`all`).
//! * Order: by the [`Order`] keys in turn, then by id. Values compare as
//!   PostgreSQL compares them: numbers by value, strings by bytes; nil
//!   sorts last ascending and first descending (PostgreSQL's default, what
//!   ActiveRecord gives ManageIQ); values of different kinds by kind.
//! * `offset`, then `limit`, apply to that order.

use super::{base_class, ObjectStore, StoreError, StoredObject, VmdbRef};
use automate_core::value::{AttrValue, Attributes};
use std::cmp::Ordering;

/// `attr` equals one of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The attribute, lower-case (`id` is the object's id).
    pub attr: String,
    /// The values it may equal, with their other stored forms
    /// ([`Condition::new`]).
    pub values: Vec<AttrValue>,
}

impl Condition {
    /// `attr` equals `value` (an array: any of its elements), an integer
    /// also as its digits and digits also as the integer.
    pub fn new(attr: &str, value: AttrValue) -> Condition {
        let mut values = Vec::new();
        match value {
            AttrValue::Array(items) => {
                for v in items {
                    push_forms(&mut values, v);
                }
            }
            v => push_forms(&mut values, v),
        }
        Condition {
            attr: attr.trim().trim_start_matches(':').to_ascii_lowercase(),
            values,
        }
    }

    /// Whether the object `id` with attributes `attrs` meets the condition.
    pub fn holds(&self, id: i64, attrs: &Attributes) -> bool {
        if self.attr == "id" {
            return self.values.iter().any(|v| match v {
                AttrValue::Int(i) => *i == id,
                _ => false,
            });
        }
        let actual = attrs.get(&self.attr).unwrap_or(&AttrValue::Nil);
        self.values.iter().any(|v| v == actual)
    }

    /// Whether some value is nil (then an index of present values cannot
    /// find every match).
    pub fn wants_nil(&self) -> bool {
        self.values.iter().any(AttrValue::is_nil)
    }
}

fn push_forms(out: &mut Vec<AttrValue>, v: AttrValue) {
    let other = match &v {
        AttrValue::Int(i) => Some(AttrValue::Str(i.to_string())),
        AttrValue::Str(s) => s.trim().parse::<i64>().ok().map(AttrValue::Int),
        AttrValue::Symbol(s) => Some(AttrValue::Str(s.clone())),
        AttrValue::Object(r) => Some(AttrValue::Int(r.id)),
        _ => None,
    };
    for v in std::iter::once(v).chain(other) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// The attribute, lower-case.
    pub attr: String,
    /// `DESC`.
    pub descending: bool,
}

impl Order {
    /// `"name"`, `"name desc"`, `"name ASC"`, `":name"`.
    pub fn parse(text: &str) -> Order {
        let text = text.trim();
        let (attr, descending) = match text.rsplit_once(char::is_whitespace) {
            Some((a, dir)) if dir.eq_ignore_ascii_case("desc") => (a, true),
            Some((a, dir)) if dir.eq_ignore_ascii_case("asc") => (a, false),
            _ => (text, false),
        };
        Order {
            attr: attr.trim().trim_start_matches(':').to_ascii_lowercase(),
            descending,
        }
    }
}

/// A query over one service-model class (and its subclasses).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// The class as asked (`Vm`, `VmOrTemplate`): its base class is
    /// searched.
    pub class: String,
    /// ANDed.
    pub conditions: Vec<Condition>,
    /// The sort keys, then id.
    pub order: Vec<Order>,
    /// At most this many objects.
    pub limit: Option<usize>,
    /// Objects skipped first.
    pub offset: usize,
}

impl Query {
    /// Every object of `class`.
    pub fn new(class: &str) -> Query {
        Query {
            class: class.to_string(),
            ..Query::default()
        }
    }

    /// Adds the condition `attr` = `value` ([`Condition::new`]).
    pub fn filter(mut self, attr: &str, value: AttrValue) -> Query {
        self.conditions.push(Condition::new(attr, value));
        self
    }

    /// Adds a sort key ([`Order::parse`]).
    pub fn order_by(mut self, key: &str) -> Query {
        self.order.push(Order::parse(key));
        self
    }

    /// The base class searched, or [`StoreError::UnknownClass`].
    pub fn base(&self) -> Result<&'static str, StoreError> {
        base_class(&self.class).ok_or_else(|| StoreError::UnknownClass(self.class.clone()))
    }

    /// Whether the object `id` with attributes `attrs` meets every condition.
    pub fn matches(&self, id: i64, attrs: &Attributes) -> bool {
        self.conditions.iter().all(|c| c.holds(id, attrs))
    }

    /// The condition a backend best finds candidates by: `id` first, else
    /// the first one without a nil value (`None`: scan the class).
    pub fn lookup_condition(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.attr == "id")
            .or_else(|| self.conditions.iter().find(|c| !c.wants_nil()))
    }

    /// Whether the answer is in id order (no sort key but id).
    pub fn by_id(&self) -> bool {
        self.order.iter().all(|o| o.attr == "id" && !o.descending)
    }

    /// The matching objects `rows` (any order, each once) sorted and paged
    /// as the query says.
    pub fn finish<A: Row>(&self, mut rows: Vec<(VmdbRef, A)>) -> Vec<VmdbRef> {
        rows.sort_by(|(ra, a), (rb, b)| {
            for o in &self.order {
                let ord = if o.attr == "id" {
                    ra.id.cmp(&rb.id)
                } else {
                    compare(a.attrs().get(&o.attr), b.attrs().get(&o.attr))
                };
                let ord = if o.descending { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            ra.id.cmp(&rb.id)
        });
        let take = self.limit.unwrap_or(usize::MAX);
        rows.into_iter()
            .skip(self.offset)
            .take(take)
            .map(|(r, _)| r)
            .collect()
    }

    /// How many of `n` matching objects the offset and limit leave.
    pub fn paged_count(&self, n: usize) -> usize {
        n.saturating_sub(self.offset)
            .min(self.limit.unwrap_or(usize::MAX))
    }
}

/// What [`Query::finish`] sorts by: an object's attributes, however a
/// backend holds them.
pub trait Row {
    /// The attributes.
    fn attrs(&self) -> &Attributes;
}

impl Row for Attributes {
    fn attrs(&self) -> &Attributes {
        self
    }
}

impl Row for &Attributes {
    fn attrs(&self) -> &Attributes {
        self
    }
}

impl Row for StoredObject {
    fn attrs(&self) -> &Attributes {
        &self.attrs
    }
}

impl Row for std::sync::Arc<StoredObject> {
    fn attrs(&self) -> &Attributes {
        &self.attrs
    }
}

/// PostgreSQL's ascending order of two attribute values (absent is nil):
/// nil last; numbers by value; strings by bytes; booleans false first;
/// other kinds by kind, then by their text.
pub fn compare(a: Option<&AttrValue>, b: Option<&AttrValue>) -> Ordering {
    let a = a.unwrap_or(&AttrValue::Nil);
    let b = b.unwrap_or(&AttrValue::Nil);
    match (a, b) {
        (AttrValue::Nil, AttrValue::Nil) => Ordering::Equal,
        (AttrValue::Nil, _) => Ordering::Greater,
        (_, AttrValue::Nil) => Ordering::Less,
        _ => match (a.as_f64_strict(), b.as_f64_strict()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => match (a, b) {
                (AttrValue::Bool(x), AttrValue::Bool(y)) => x.cmp(y),
                _ => kind(a)
                    .cmp(&kind(b))
                    .then_with(|| a.to_text().cmp(&b.to_text())),
            },
        },
    }
}

trait Numeric {
    fn as_f64_strict(&self) -> Option<f64>;
}

impl Numeric for AttrValue {
    fn as_f64_strict(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

fn kind(v: &AttrValue) -> u8 {
    match v {
        AttrValue::Int(_) | AttrValue::Float(_) => 0,
        AttrValue::Str(_) | AttrValue::Symbol(_) | AttrValue::Password(_) => 1,
        AttrValue::Bool(_) => 2,
        AttrValue::Object(_) => 3,
        AttrValue::Array(_) => 4,
        AttrValue::Hash(_) => 5,
        AttrValue::Nil => 6,
    }
}

/// The answer any store can give with its other reads: candidates by
/// [`ObjectStore::find`] (an `id` condition), [`ObjectStore::find_by`]
/// ([`Query::lookup_condition`]) or [`ObjectStore::list`], each loaded
/// and checked. What the trait's default `query` does; backends with a
/// better plan answer for themselves.
pub fn run_with_reads<S: ObjectStore + ?Sized>(
    store: &S,
    q: &Query,
) -> Result<Vec<VmdbRef>, StoreError> {
    let base = q.base()?;
    let mut candidates: Vec<VmdbRef> = Vec::new();
    match q.lookup_condition() {
        Some(c) if c.attr == "id" => {
            for v in &c.values {
                if let AttrValue::Int(id) = v {
                    if let Some(r) = store.find(base, *id)? {
                        candidates.push(r);
                    }
                }
            }
        }
        Some(c) => {
            for v in &c.values {
                candidates.extend(store.find_by(base, &c.attr, v)?);
            }
        }
        None => candidates = store.list(base)?,
    }
    candidates.sort_by_key(|r| r.id);
    candidates.dedup_by_key(|r| r.id);
    let mut rows = Vec::with_capacity(candidates.len());
    for r in candidates {
        if let Some(obj) = store.load(base, r.id)? {
            if q.matches(r.id, &obj.attrs) {
                rows.push((r, obj));
            }
        }
    }
    Ok(q.finish(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn r(id: i64) -> VmdbRef {
        VmdbRef {
            class: Arc::from("Vm"),
            id,
        }
    }

    #[test]
    fn conditions_match_both_forms_nil_and_id() {
        let a = attrs(&[
            ("host_id", AttrValue::str("7")),
            ("name", AttrValue::str("x")),
        ]);
        assert!(Condition::new("host_id", AttrValue::Int(7)).holds(1, &a));
        assert!(Condition::new(":Name", AttrValue::str("x")).holds(1, &a));
        assert!(!Condition::new("name", AttrValue::str("y")).holds(1, &a));
        assert!(Condition::new("retired", AttrValue::Nil).holds(1, &a));
        assert!(Condition::new(
            "name",
            AttrValue::Array(vec![AttrValue::str("y"), AttrValue::str("x")])
        )
        .holds(1, &a));
        assert!(Condition::new("id", AttrValue::str("5")).holds(5, &a));
        assert!(!Condition::new("id", AttrValue::Int(6)).holds(5, &a));
    }

    #[test]
    fn order_parses_directions() {
        assert_eq!(
            Order::parse("name DESC"),
            Order {
                attr: "name".into(),
                descending: true
            }
        );
        assert_eq!(Order::parse(":Name").attr, "name");
        assert!(!Order::parse("name asc").descending);
    }

    #[test]
    fn finish_sorts_nil_last_then_by_id_and_pages() {
        let rows = vec![
            (r(1), attrs(&[("n", AttrValue::Int(10))])),
            (r(2), attrs(&[])),
            (r(3), attrs(&[("n", AttrValue::Int(9))])),
            (r(4), attrs(&[("n", AttrValue::Int(10))])),
        ];
        let q = Query::new("Vm").order_by("n");
        let ids = |v: Vec<VmdbRef>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(q.finish(rows.clone())), vec![3, 1, 4, 2]);
        let q = Query::new("Vm").order_by("n desc");
        assert_eq!(ids(q.finish(rows.clone())), vec![2, 1, 4, 3]);
        let mut q = Query::new("Vm").order_by("n");
        q.offset = 1;
        q.limit = Some(2);
        assert_eq!(ids(q.finish(rows)), vec![1, 4]);
        assert_eq!(q.paged_count(4), 2);
        assert_eq!(q.paged_count(1), 0);
    }

    #[test]
    fn compare_is_postgres_like() {
        let s = |x: &str| AttrValue::str(x);
        assert_eq!(compare(Some(&s("B")), Some(&s("a"))), Ordering::Less);
        assert_eq!(
            compare(Some(&AttrValue::Int(2)), Some(&AttrValue::Float(10.0))),
            Ordering::Less
        );
        assert_eq!(compare(None, Some(&s("a"))), Ordering::Greater);
        assert_eq!(
            compare(Some(&AttrValue::Bool(false)), Some(&AttrValue::Bool(true))),
            Ordering::Less
        );
    }
}
