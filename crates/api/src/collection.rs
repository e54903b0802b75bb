//! ManageIQ's collection queries, the same for every collection of the API
//! (`automation_requests`, `event_streams`, `vms`, `hosts`, `providers`,
//! `automate_domains`): [`CollectionQuery::parse`] reads and checks the
//! query (`offset`, `limit`, `filter[]`, `sort_by`, `sort_order`,
//! `sort_options`, `attributes`, `expand`, and the collection's own
//! parameters; anything else is a 400 naming it), [`Filter`] is
//! ManageIQ's `filter[]` expressions, and [`CollectionQuery::answer`]
//! writes the collection as ManageIQ does: `name`, `count`, `subcount`,
//! `subquery_count` (with a filter), `pages`, `resources` (`{"href"}`
//! unless `expand=resources` or `attributes=`), `actions` and `links`.
//!
//! Rows come from the store a page at a time ([`store_rows`]): without a
//! filter or sort only the page is read; a filter scans the class keeping
//! only the page (and counting the matches); a sort holds the matching
//! rows, at most [`SORT_MAX_ROWS`].

use super::{ApiError, ApiLimits};
use automate_vmdb::page::{Keep, PageQuery};
use automate_vmdb::served::ServedStore;
use automate_vmdb::StoredObject;
use regex::{Regex, RegexBuilder};
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::cmp::Ordering;

/// Most matching rows a `sort_by` may order (they are held in memory); a
/// sort over more is a 400 asking for a narrower `filter[]`.
pub(crate) const SORT_MAX_ROWS: usize = 100_000;

/// Largest compiled `=~` pattern (bytes of the regex's program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The parameters every collection takes.
const COMMON: &[&str] = &[
    "offset",
    "limit",
    "filter[]",
    "sort_by",
    "sort_order",
    "sort_options",
    "attributes",
    "expand",
];

/// A collection query's parameters as axum decodes them (repeated keys
/// kept: `filter[]`).
pub(crate) type RawQuery =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// A checked collection query.
#[derive(Debug, Clone, Default)]
pub(crate) struct CollectionQuery {
    /// Matching rows skipped before the page.
    pub offset: usize,
    /// Rows in the page.
    pub limit: usize,
    /// `filter[]`, when given.
    pub filter: Option<Filter>,
    /// `sort_by` attributes, in order.
    pub sort_by: Vec<String>,
    /// `sort_order=desc`, per `sort_by` attribute.
    pub descending: Vec<bool>,
    /// `sort_options=ignore_case`.
    pub ignore_case: bool,
    /// `attributes=`: the attributes shown besides `id` and `href`.
    pub attributes: Option<Vec<String>>,
    /// `expand=resources`.
    pub expand: bool,
    /// The collection's own parameters (`type`, `since` of
    /// `event_streams`), as given.
    pub extra: Vec<(String, String)>,
    /// The query as given (for `links`).
    raw: Vec<(String, String)>,
}

/// An attribute name of `sort_by`, `attributes` or a filter: letters,
/// digits, `_`, and `.` between names.
fn check_attr(param: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{param}: [{name}] is not an attribute name (letters, digits, _ and .)"
        )))
    }
}

/// A comma-separated list, blanks dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl CollectionQuery {
    /// Reads the query of a collection whose own parameters are `extra`:
    /// an unknown parameter, a repeated one (but `filter[]`), or a bad
    /// value is a 400 naming it. `limit` defaults to
    /// `api.limits.default_limit`; `limit=0` is ManageIQ's "the rest",
    /// `api.limits.max_limit` rows; more than `max_limit` is a 400.
    pub fn parse(
        raw: RawQuery,
        extra: &[&str],
        limits: &ApiLimits,
    ) -> Result<CollectionQuery, ApiError> {
        let raw = raw
            .map(|axum::extract::Query(q)| q)
            .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
        let mut q = CollectionQuery {
            limit: limits.default_limit,
            ..CollectionQuery::default()
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut filters: Vec<&str> = Vec::new();
        let mut sort_order: Option<&str> = None;
        for (k, v) in &raw {
            let key = k.as_str();
            if !COMMON.contains(&key) && !extra.contains(&key) {
                let mut known: Vec<&str> = COMMON.to_vec();
                known.extend_from_slice(extra);
                return Err(ApiError::bad_request(format!(
                    "{key}: unknown parameter (this collection takes {})",
                    known.join(", ")
                )));
            }
            if key == "filter[]" {
                filters.push(v);
                continue;
            }
            if seen.contains(&key) {
                return Err(ApiError::bad_request(format!(
                    "{key}: given more than once"
                )));
            }
            seen.push(key);
            let number = || {
                v.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!("{key}: [{v}] is not a non-negative integer"))
                })
            };
            match key {
                "offset" => q.offset = number()?,
                "limit" => {
                    let n = number()?;
                    if n > limits.max_limit {
                        return Err(ApiError::bad_request(format!(
                            "limit: {n} is over the maximum page size of {} \
                             (api.limits.max_limit); page with offset",
                            limits.max_limit
                        )));
                    }
                    q.limit = if n == 0 { limits.max_limit } else { n };
                }
                "sort_by" => {
                    let names = list(v);
                    if names.is_empty() {
                        return Err(ApiError::bad_request("sort_by: empty"));
                    }
                    for n in &names {
                        check_attr("sort_by", n)?;
                    }
                    q.sort_by = names;
                }
                "sort_order" => sort_order = Some(v),
                "sort_options" => {
                    for o in list(v) {
                        if o.eq_ignore_ascii_case("ignore_case") {
                            q.ignore_case = true;
                        } else {
                            return Err(ApiError::bad_request(format!(
                                "sort_options: [{o}] is not supported (ignore_case)"
                            )));
                        }
                    }
                }
                "attributes" => {
                    let names = list(v);
                    if names.is_empty() {
                        return Err(ApiError::bad_request("attributes: empty"));
                    }
                    if !(names.len() == 1 && names[0] == "all") {
                        for n in &names {
                            check_attr("attributes", n)?;
                        }
                        q.attributes = Some(names);
                    }
                }
                "expand" => {
                    for e in list(v) {
                        if e == "resources" {
                            q.expand = true;
                        } else {
                            return Err(ApiError::bad_request(format!(
                                "expand: [{e}] is not supported (resources)"
                            )));
                        }
                    }
                }
                _ => q.extra.push((k.clone(), v.clone())),
            }
        }
        let orders: Vec<bool> = match sort_order {
            None => Vec::new(),
            Some(v) => {
                let mut out = Vec::new();
                for o in list(v) {
                    out.push(match o.to_ascii_lowercase().as_str() {
                        "asc" | "ascending" => false,
                        "desc" | "descending" => true,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "sort_order: [{o}] is neither asc nor desc"
                            )))
                        }
                    });
                }
                if out.is_empty() {
                    return Err(ApiError::bad_request("sort_order: empty (asc or desc)"));
                }
                if q.sort_by.is_empty() {
                    return Err(ApiError::bad_request("sort_order: needs sort_by"));
                }
                if out.len() > q.sort_by.len() {
                    return Err(ApiError::bad_request(format!(
                        "sort_order: {} orders for {} sort_by attributes",
                        out.len(),
                        q.sort_by.len()
                    )));
                }
                out
            }
        };
        // One order applies to every attribute; a list, each to its own
        // (the missing ones ascending).
        q.descending = (0..q.sort_by.len())
            .map(|i| match orders.len() {
                0 => false,
                1 => orders[0],
                _ => orders.get(i).copied().unwrap_or(false),
            })
            .collect();
        if !filters.is_empty() {
            q.filter = Some(Filter::parse(&filters)?);
        }
        q.raw = raw;
        Ok(q)
    }

    /// Whether the rows must be read in full (a filter or a sort).
    pub fn scans(&self) -> bool {
        self.filter.is_some() || !self.sort_by.is_empty()
    }

    /// Whether a resource is shown in full (`expand=resources`, or
    /// `attributes=` as ManageIQ does).
    fn expanded(&self) -> bool {
        self.expand || self.attributes.is_some()
    }

    /// Whether `row` passes the filter (every row without one).
    pub fn matches(&self, row: &Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(row))
    }

    /// Orders `rows` by `sort_by` (a stable sort: equal rows keep their
    /// order).
    pub fn sort(&self, rows: &mut [Value]) {
        if self.sort_by.is_empty() {
            return;
        }
        rows.sort_by(|a, b| {
            for (attr, desc) in self.sort_by.iter().zip(&self.descending) {
                let o = compare_values(lookup(a, attr), lookup(b, attr), self.ignore_case);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }

    /// The page of `rows` (already filtered and sorted).
    pub fn window<T>(&self, rows: Vec<T>) -> Vec<T> {
        rows.into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect()
    }

    /// One resource as the query shows it: `{"href"}` alone when not
    /// expanded, `href`, `id` and the `attributes=` when given, else all.
    pub fn shape(&self, row: Value) -> Value {
        if !self.expanded() {
            let href = row.get("href").cloned().unwrap_or(Value::Null);
            return json!({ "href": href });
        }
        match (&self.attributes, row) {
            (Some(names), Value::Object(m)) => {
                let mut out = Map::new();
                for key in ["href", "id"] {
                    if let Some(v) = m.get(key) {
                        out.insert(key.into(), v.clone());
                    }
                }
                for name in names {
                    if let Some(v) = lookup_map(&m, name) {
                        insert_path(&mut out, name, v.clone());
                    }
                }
                Value::Object(out)
            }
            (_, row) => row,
        }
    }

    /// The collection `name` at `path` (`/api/vms`, no base): `count` rows
    /// in all, `matched` of them passing the filter (`subquery_count`, only
    /// with a filter), `page` the shown rows (full, shaped here),
    /// `actions` its POST actions, `base` what hrefs start with.
    pub fn answer(
        &self,
        name: &str,
        count: usize,
        matched: Option<usize>,
        page: Vec<Value>,
        actions: &[&str],
        base: &str,
    ) -> Value {
        let href = format!("{base}/api/{name}");
        let resources: Vec<Value> = page.into_iter().map(|r| self.shape(r)).collect();
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        m.insert("count".into(), json!(count));
        m.insert("subcount".into(), json!(resources.len()));
        let total = match (&self.filter, matched) {
            (Some(_), Some(n)) => {
                m.insert("subquery_count".into(), json!(n));
                n
            }
            (_, Some(n)) => n,
            (_, None) => count,
        };
        let limit = self.limit.max(1);
        let pages = total.div_ceil(limit);
        m.insert("pages".into(), json!(pages));
        m.insert("resources".into(), Value::Array(resources));
        if !actions.is_empty() {
            let acts: Vec<Value> = actions
                .iter()
                .map(|a| json!({"name": a, "method": "post", "href": href}))
                .collect();
            m.insert("actions".into(), Value::Array(acts));
        }
        let link = |offset: usize| -> Value {
            let mut parts = vec![format!("offset={offset}"), format!("limit={limit}")];
            for (k, v) in &self.raw {
                if k != "offset" && k != "limit" {
                    parts.push(format!("{}={}", encode(k), encode(v)));
                }
            }
            json!(format!("{href}?{}", parts.join("&")))
        };
        let mut links = Map::new();
        links.insert("self".into(), link(self.offset));
        if self.offset.saturating_add(limit) < total {
            links.insert("next".into(), link(self.offset.saturating_add(limit)));
        }
        if self.offset > 0 {
            links.insert("previous".into(), link(self.offset.saturating_sub(limit)));
        }
        links.insert("first".into(), link(0));
        links.insert("last".into(), link(pages.saturating_sub(1) * limit));
        m.insert("links".into(), Value::Object(links));
        Value::Object(m)
    }
}

/// A query string value, percent-encoded (`application/x-www-form-urlencoded`
/// safe characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `name` (`a.b`: `b` of the object `a`) in `row`.
pub(crate) fn lookup<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    let mut cur = row;
    for seg in name.split('.') {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn lookup_map<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let (first, rest) = match name.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    let v = m.get(first)?;
    match rest {
        None => Some(v),
        Some(r) => lookup(v, r),
    }
}

/// Sets `name` (`a.b` nests) in `out`.
fn insert_path(out: &mut Map<String, Value>, name: &str, v: Value) {
    match name.split_once('.') {
        None => {
            out.insert(name.into(), v);
        }
        Some((first, rest)) => {
            let entry = out
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                insert_path(m, rest, v);
            }
        }
    }
}

/// A JSON value as a number: numbers, and strings that are one (ids).
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A JSON value as text: strings, numbers and booleans.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The sort order of two attribute values: absent and null last, numbers
/// (and numeric strings) by value before other text, text by bytes (or
/// lower-cased with `ignore_case`), objects and lists last.
fn compare_values(a: Option<&Value>, b: Option<&Value>, ignore_case: bool) -> Ordering {
    let rank = |v: Option<&Value>| -> u8 {
        match v {
            None | Some(Value::Null) => 3,
            Some(v) if as_number(v).is_some() => 0,
            Some(Value::String(_) | Value::Bool(_)) => 1,
            Some(_) => 2,
        }
    };
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Some(x), Some(y)) if ra == 0 => {
            let (x, y) = (as_number(x).unwrap_or(0.0), as_number(y).unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Some(x), Some(y)) if ra == 1 => {
            let (x, y) = (
                as_text(x).unwrap_or_default(),
                as_text(y).unwrap_or_default(),
            );
            if ignore_case {
                x.to_lowercase().cmp(&y.to_lowercase())
            } else {
                x.cmp(&y)
            }
        }
        _ => Ordering::Equal,
    }
}

/// The query of one resource (`GET /api/vms/{id}`): `attributes=` only
/// (anything else is a 400 naming it); shows `href`, `id` and those
/// attributes, or everything without it.
pub(crate) fn resource_query(raw: RawQuery) -> Result<Option<Vec<String>>, ApiError> {
    let raw = raw
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let mut attributes = None;
    for (k, v) in &raw {
        if k != "attributes" {
            return Err(ApiError::bad_request(format!(
                "{k}: unknown parameter (a single resource takes attributes)"
            )));
        }
        if attributes.is_some() {
            return Err(ApiError::bad_request("attributes: given more than once"));
        }
        let names = list(v);
        if names.is_empty() {
            return Err(ApiError::bad_request("attributes: empty"));
        }
        for n in &names {
            check_attr("attributes", n)?;
        }
        attributes = Some(names);
    }
    Ok(attributes.filter(|n| !(n.len() == 1 && n[0] == "all")))
}

/// `row` with only `href`, `id` and `attributes` (all of it without).
pub(crate) fn select(row: Value, attributes: Option<&[String]>) -> Value {
    let q = CollectionQuery {
        attributes: attributes.map(<[String]>::to_vec),
        expand: true,
        ..CollectionQuery::default()
    };
    q.shape(row)
}

/// A `filter[]` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
}

/// Operators in the order they are tried (two-character ones first).
const OPS: &[(&str, Op)] = &[
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("=~", Op::Match),
    ("=", Op::Eq),
    ("<", Op::Lt),
    (">", Op::Gt),
];

/// A filter's right-hand side.
#[derive(Debug, Clone)]
enum Operand {
    /// `nil` or `NULL`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number (also compared with numeric strings: ids).
    Number(f64),
    /// Text, quoted or not; `%` and `*` are wildcards for `=` and `!=`
    /// when quoted.
    Text(String),
    /// A pattern: `=~`, or `=` / `!=` with a wildcard.
    Pattern(Regex),
}

/// One `attribute op value` condition.
#[derive(Debug, Clone)]
struct Condition {
    attr: String,
    op: Op,
    value: Operand,
}

/// ManageIQ's `filter[]`: the conditions without `or` all hold, or one of
/// those written `or attribute op value` does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    all: Vec<Condition>,
    any: Vec<Condition>,
}

/// A `filter[]` error naming the expression.
fn bad_filter(expr: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("filter[]: [{expr}] {why}"))
}

fn pattern(expr: &str, re: &str) -> Result<Regex, ApiError> {
    RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| bad_filter(expr, format!("has a bad pattern: {e}")))
}

/// A wildcard text (`%` or `*` for any run of characters) as an anchored
/// pattern.
fn wildcard(expr: &str, text: &str) -> Result<Regex, ApiError> {
    let mut re = String::from("^");
    for part in text.split(['%', '*']).enumerate() {
        if part.0 > 0 {
            re.push_str("(?s:.*)");
        }
        re.push_str(&regex::escape(part.1));
    }
    re.push('$');
    pattern(expr, &re)
}

impl Filter {
    /// Parses the `filter[]` expressions; a bad one is a 400 naming it.
    pub fn parse(exprs: &[&str]) -> Result<Filter, ApiError> {
        let mut f = Filter::default();
        for expr in exprs {
            let (or, cond) = Condition::parse(expr)?;
            if or {
                f.any.push(cond);
            } else {
                f.all.push(cond);
            }
        }
        Ok(f)
    }

    /// Whether `row` passes.
    pub fn matches(&self, row: &Value) -> bool {
        (!self.all.is_empty() && self.all.iter().all(|c| c.holds(row)))
            || self.any.iter().any(|c| c.holds(row))
            || (self.all.is_empty() && self.any.is_empty())
    }
}

impl Condition {
    /// `[or |and ]attribute op value`; whether it is an `or`, and the
    /// condition.
    fn parse(expr: &str) -> Result<(bool, Condition), ApiError> {
        let mut text = expr.trim();
        let mut or = false;
        for (prefix, is_or) in [("or ", true), ("and ", false)] {
            let starts = text.len() > prefix.len()
                && text
                    .get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix));
            if starts {
                text = text[prefix.len()..].trim_start();
                or = is_or;
                break;
            }
        }
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(text.len());
        let attr = &text[..end];
        if attr.is_empty() {
            return Err(bad_filter(expr, "does not start with an attribute name"));
        }
        check_attr("filter[]", attr).map_err(|_| bad_filter(expr, "has a bad attribute name"))?;
        let rest = text[end..].trim_start();
        let Some((sym, op)) = OPS.iter().find(|(s, _)| rest.starts_with(s)) else {
            return Err(bad_filter(
                expr,
                "has no operator after the attribute (=, !=, <, <=, >, >=, =~)",
            ));
        };
        let raw = rest[sym.len()..].trim();
        if raw.is_empty() {
            return Err(bad_filter(expr, "has no value after the operator"));
        }
        let quoted = raw.len() >= 2
            && ((raw.starts_with('\'') && raw.ends_with('\''))
                || (raw.starts_with('"') && raw.ends_with('"')));
        let value = if *op == Op::Match {
            let slashed = raw.len() >= 2 && raw.starts_with('/') && raw.ends_with('/');
            let re = if slashed || quoted {
                &raw[1..raw.len() - 1]
            } else {
                raw
            };
            Operand::Pattern(pattern(expr, re)?)
        } else if quoted {
            let inner = &raw[1..raw.len() - 1];
            if matches!(op, Op::Eq | Op::Ne) && inner.contains(['%', '*']) {
                Operand::Pattern(wildcard(expr, inner)?)
            } else {
                Operand::Text(inner.to_string())
            }
        } else if raw.eq_ignore_ascii_case("nil") || raw.eq_ignore_ascii_case("null") {
            Operand::Null
        } else if raw == "true" || raw == "false" {
            Operand::Bool(raw == "true")
        } else if let Some(n) = raw.parse::<f64>().ok().filter(|n| n.is_finite()) {
            Operand::Number(n)
        } else {
            Operand::Text(raw.to_string())
        };
        if matches!(value, Operand::Null | Operand::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(bad_filter(
                expr,
                format!("compares {raw} with {sym}; nil, true and false take = or !="),
            ));
        }
        Ok((
            or,
            Condition {
                attr: attr.to_string(),
                op: *op,
                value,
            },
        ))
    }

    fn holds(&self, row: &Value) -> bool {
        let actual = lookup(row, &self.attr).filter(|v| !v.is_null());
        let eq = |actual: &Value| -> bool {
            match &self.value {
                Operand::Null => false,
                Operand::Bool(b) => match actual {
                    Value::Bool(a) => a == b,
                    Value::String(s) => s == if *b { "true" } else { "false" },
                    _ => false,
                },
                Operand::Number(n) => as_number(actual).is_some_and(|a| a == *n),
                Operand::Text(t) => as_text(actual).is_some_and(|a| &a == t),
                Operand::Pattern(re) => as_text(actual).is_some_and(|a| re.is_match(&a)),
            }
        };
        match (self.op, actual) {
            (Op::Eq, None) => matches!(self.value, Operand::Null),
            (Op::Ne, None) => !matches!(self.value, Operand::Null),
            (Op::Eq, Some(a)) => eq(a),
            (Op::Ne, Some(a)) => !eq(a),
            (Op::Match, Some(a)) => eq(a),
            (_, None) => false,
            (op, Some(a)) => {
                let o = match &self.value {
                    Operand::Number(n) => match as_number(a) {
                        Some(x) => x.partial_cmp(n),
                        None => None,
                    },
                    Operand::Text(t) => match (as_number(a), t.parse::<f64>().ok()) {
                        (Some(x), Some(y)) => x.partial_cmp(&y),
                        _ => as_text(a).map(|x| x.as_str().cmp(t.as_str())),
                    },
                    _ => None,
                };
                match o {
                    None => false,
                    Some(o) => match op {
                        Op::Lt => o == Ordering::Less,
                        Op::Le => o != Ordering::Greater,
                        Op::Gt => o == Ordering::Greater,
                        Op::Ge => o != Ordering::Less,
                        _ => false,
                    },
                }
            }
        }
    }
}

/// What [`store_rows`] read: `count` objects of the class, `matched` of
/// them passing the query's filter (with a filter), and the page's rows in
/// order, each as its JSON row.
pub(crate) struct StoreRows {
    /// Every object of the base class.
    pub count: usize,
    /// The rows passing the filter (`None` without one).
    pub matched: Option<usize>,
    /// The page.
    pub rows: Vec<Value>,
}

/// The page `q` asks of the objects of `class` (`keep`: the collection's
/// own condition, e.g. the automation requests among `MiqRequest`s),
/// each row as `to_json` writes it (filters and sorts see that row).
/// `newest_first` reads from the newest id back (the event stream).
///
/// Without a filter or sort only the page is decoded. A filter scans the
/// class, holding the page only; a sort (or a filter naming `id` or
/// `href`, which the store's filter cannot see) holds the matching rows,
/// at most [`SORT_MAX_ROWS`] (more is a 400).
pub(crate) fn store_rows(
    store: &dyn ServedStore,
    class: &str,
    q: &CollectionQuery,
    newest_first: bool,
    keep: Option<Keep<'_>>,
    to_json: &dyn Fn(i64, &StoredObject) -> Value,
) -> Result<StoreRows, ApiError> {
    if !q.scans() {
        let pq = PageQuery {
            offset: q.offset,
            limit: q.limit,
            newest_first,
        };
        let page = store.page(class, pq, keep).map_err(ApiError::internal)?;
        let rows = page.rows.iter().map(|(id, o)| to_json(*id, o)).collect();
        return Ok(StoreRows {
            count: page.total,
            matched: None,
            rows,
        });
    }
    // The filter needs the row's id, which `keep` does not see: it sees
    // the row without `id`/`href`, and the page is filtered again below
    // with them.
    let by_id = q.filter.as_ref().is_some_and(|f| f.names_id());
    let seen = Cell::new(0usize);
    let sorting = !q.sort_by.is_empty();
    let window = q.offset..q.offset.saturating_add(q.limit);
    let pass = |o: &StoredObject| -> bool {
        if !keep.is_none_or(|k| k(o)) {
            return false;
        }
        if by_id {
            return true;
        }
        q.matches(&to_json(0, o))
    };
    let select = |o: &StoredObject| -> bool {
        if !pass(o) {
            return false;
        }
        if sorting || by_id {
            return true;
        }
        let i = seen.get();
        seen.set(i + 1);
        window.contains(&i)
    };
    // A sort, or a filter on `id`, holds the rows: at most SORT_MAX_ROWS.
    let holds = sorting || by_id;
    let limit = if holds { SORT_MAX_ROWS + 1 } else { usize::MAX };
    let pq = PageQuery {
        offset: 0,
        limit,
        newest_first,
    };
    let page = store
        .page(class, pq, Some(&select))
        .map_err(ApiError::internal)?;
    if page.rows.len() > SORT_MAX_ROWS {
        let why = if sorting {
            "sort_by"
        } else {
            "filter[] (on id or href)"
        };
        return Err(ApiError::bad_request(format!(
            "{why}: more than {SORT_MAX_ROWS} rows to order or check; narrow them with \
             filter[] on other attributes (or page without it)"
        )));
    }
    let mut rows: Vec<Value> = page
        .rows
        .iter()
        .map(|(id, o)| to_json(*id, o))
        .filter(|row| !by_id || q.matches(row))
        .collect();
    if holds {
        let matched = rows.len();
        q.sort(&mut rows);
        return Ok(StoreRows {
            count: page.total,
            matched: Some(matched),
            rows: q.window(rows),
        });
    }
    Ok(StoreRows {
        count: page.total,
        matched: Some(seen.get()),
        rows,
    })
}

impl Filter {
    /// Whether a condition names `id` or `href` (which `keep` cannot see).
    fn names_id(&self) -> bool {
        self.all
            .iter()
            .chain(&self.any)
            .any(|c| c.attr == "id" || c.attr == "href")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<CollectionQuery, ApiError> {
        let raw: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CollectionQuery::parse(
            Ok(axum::extract::Query(raw)),
            &["type"],
            &ApiLimits::default(),
        )
    }

    fn rows() -> Vec<Value> {
        vec![
            json!({"id": "1", "href": "/api/vms/1", "name": "web-1", "vendor": "vmware", "mem": 512, "host_id": "7"}),
            json!({"id": "2", "href": "/api/vms/2", "name": "db-1", "vendor": "redhat", "mem": 2048}),
            json!({"id": "3", "href": "/api/vms/3", "name": "Web-2", "vendor": "vmware", "mem": 1024, "retired": true}),
        ]
    }

    fn names(q: &CollectionQuery) -> Vec<String> {
        let mut r: Vec<Value> = rows().into_iter().filter(|r| q.matches(r)).collect();
        q.sort(&mut r);
        r.iter()
            .map(|r| r["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn filters_as_manageiq_writes_them() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["name='web-1'"], &["web-1"]),
            (&["name=web-1"], &["web-1"]),
            (&["name='web%'"], &["web-1"]),
            (&["name='*-1'"], &["web-1", "db-1"]),
            (&["name!='web-1'"], &["db-1", "Web-2"]),
            (&["mem>1000"], &["db-1", "Web-2"]),
            (&["mem>=1024"], &["db-1", "Web-2"]),
            (&["mem<1024"], &["web-1"]),
            (&["mem<=512"], &["web-1"]),
            (&["id>1"], &["db-1", "Web-2"]),
            (&["id=2"], &["db-1"]),
            (&["name=~/^[wW]eb/"], &["web-1", "Web-2"]),
            (&["name=~'(?i)^web'"], &["web-1", "Web-2"]),
            (&["retired=true"], &["Web-2"]),
            (&["retired=nil"], &["web-1", "db-1"]),
            (&["retired!=NULL"], &["Web-2"]),
            (&["host_id=7"], &["web-1"]),
            (&["vendor='vmware'", "mem>600"], &["Web-2"]),
            (&["vendor='redhat'", "or name='web-1'"], &["web-1", "db-1"]),
            (
                &["vendor='redhat'", "and mem>4096", "or mem=1024"],
                &["Web-2"],
            ),
            (&["missing='x'"], &[]),
        ];
        for (exprs, want) in cases {
            let f = Filter::parse(exprs).unwrap_or_else(|e| panic!("{exprs:?}: {e:?}"));
            let all = rows();
            let got: Vec<&str> = all
                .iter()
                .filter(|r| f.matches(r))
                .map(|r| r["name"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(&got, want, "{exprs:?}");
        }
    }

    #[test]
    fn bad_filters_name_the_expression() {
        for (expr, says) in [
            ("=5", "does not start with an attribute name"),
            ("name", "has no operator"),
            ("name=", "has no value"),
            ("name=~/[/", "bad pattern"),
            ("retired<true", "nil, true and false take = or !="),
            ("na-me=1", "has no operator"),
            ("\u{10000}", "does not start with an attribute name"),
            ("\u{1c4}\u{c8}", "does not start with an attribute name"),
            ("o\u{e9}=1", "has no operator"),
            ("name=~/(\u{e9}/", "bad pattern"),
        ] {
            let e = Filter::parse(&[expr]).expect_err(expr);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains(&format!("[{expr}]")), "{}", e.message);
            assert!(e.message.contains(says), "{expr}: {}", e.message);
        }
    }

    #[test]
    fn sort_by_and_sort_order() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[("sort_by", "name")], &["Web-2", "db-1", "web-1"]),
            (
                &[("sort_by", "name"), ("sort_options", "ignore_case")],
                &["db-1", "web-1", "Web-2"],
            ),
            (
                &[("sort_by", "mem"), ("sort_order", "desc")],
                &["db-1", "Web-2", "web-1"],
            ),
            (
                &[("sort_by", "vendor,mem"), ("sort_order", "desc,asc")],
                &["web-1", "Web-2", "db-1"],
            ),
            (&[("sort_by", "retired")], &["Web-2", "web-1", "db-1"]),
        ];
        for (pairs, want) in cases {
            let query = q(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e:?}"));
            assert_eq!(&names(&query), want, "{pairs:?}");
        }
    }

    #[test]
    fn unknown_repeated_and_bad_parameters_are_400s_naming_them() {
        for (pairs, says) in [
            (vec![("colour", "red")], "colour: unknown parameter"),
            (
                vec![("limit", "1"), ("limit", "2")],
                "limit: given more than once",
            ),
            (vec![("offset", "-1")], "offset: [-1]"),
            (vec![("limit", "x")], "limit: [x]"),
            (vec![("limit", "10001")], "api.limits.max_limit"),
            (
                vec![("sort_order", "up"), ("sort_by", "a")],
                "sort_order: [up]",
            ),
            (vec![("sort_order", "asc")], "sort_order: needs sort_by"),
            (vec![("sort_by", "a b")], "sort_by: [a b]"),
            (vec![("expand", "tags")], "expand: [tags]"),
            (vec![("attributes", "")], "attributes: empty"),
            (vec![("sort_options", "fast")], "sort_options: [fast]"),
            (vec![("filter[]", "name")], "filter[]: [name]"),
        ] {
            let e = q(&pairs).expect_err(says);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{pairs:?}");
            assert!(e.message.contains(says), "{pairs:?}: {}", e.message);
        }
        // The collection's own parameter is known.
        assert!(q(&[("type", "X")]).is_ok());
    }

    #[test]
    fn resources_are_hrefs_unless_expanded_or_selected() {
        let row = rows().remove(0);
        let plain = q(&[]).expect("query");
        assert_eq!(plain.shape(row.clone()), json!({"href": "/api/vms/1"}));
        let expanded = q(&[("expand", "resources")]).expect("query");
        assert_eq!(expanded.shape(row.clone()), row);
        let some = q(&[("attributes", "name,mem")]).expect("query");
        assert_eq!(
            some.shape(row.clone()),
            json!({"href": "/api/vms/1", "id": "1", "name": "web-1", "mem": 512})
        );
        let all = q(&[("attributes", "all")]).expect("query");
        assert_eq!(all.shape(row), json!({"href": "/api/vms/1"}));
    }

    /// `store_rows` over a real store: a plain page, a filtered window with
    /// its count, a sort, and a filter on `id`, from the oldest or the
    /// newest row.
    #[test]
    fn store_rows_pages_filters_and_sorts_a_real_store() {
        use automate_engine::{AttrValue, Attributes};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = automate_redb::RedbStore::open(dir.path().join("rows.redb")).expect("store");
        for i in 0..10i64 {
            let mut a = Attributes::default();
            a.insert("n".into(), AttrValue::Int(i));
            a.insert("odd".into(), AttrValue::Bool(i % 2 == 1));
            store.insert("Host", 1_000 + i, a).expect("insert");
        }
        let to_json = |id: i64, o: &StoredObject| {
            let mut m = Map::new();
            m.insert("id".into(), json!(id.to_string()));
            for (k, v) in &o.attrs {
                m.insert(k.clone(), automate_engine::datatype::to_json(v));
            }
            Value::Object(m)
        };
        let ns =
            |r: &StoreRows| -> Vec<i64> { r.rows.iter().filter_map(|v| v["n"].as_i64()).collect() };
        let run = |pairs: &[(&str, &str)], newest: bool| -> StoreRows {
            let query = q(pairs).expect("query");
            store_rows(&store, "Host", &query, newest, None, &to_json).expect("rows")
        };
        let r = run(&[("offset", "2"), ("limit", "3")], false);
        assert_eq!((ns(&r), r.count, r.matched), (vec![2, 3, 4], 10, None));
        let r = run(&[("offset", "2"), ("limit", "3")], true);
        assert_eq!(ns(&r), vec![7, 6, 5]);
        let r = run(
            &[("filter[]", "odd=true"), ("offset", "1"), ("limit", "2")],
            false,
        );
        assert_eq!((ns(&r), r.matched), (vec![3, 5], Some(5)));
        let r = run(
            &[("sort_by", "n"), ("sort_order", "desc"), ("limit", "2")],
            false,
        );
        assert_eq!((ns(&r), r.matched), (vec![9, 8], Some(10)));
        let r = run(&[("filter[]", "id>=1008"), ("filter[]", "or n=0")], false);
        assert_eq!((ns(&r), r.matched), (vec![0, 8, 9], Some(3)));
        // The collection's own condition comes first.
        let small =
            |o: &StoredObject| matches!(o.attrs.get("n"), Some(AttrValue::Int(n)) if *n < 4);
        let query = q(&[("filter[]", "odd=false")]).expect("query");
        let r = store_rows(&store, "Host", &query, false, Some(&small), &to_json).expect("rows");
        assert_eq!((ns(&r), r.matched), (vec![0, 2], Some(2)));
    }

    #[test]
    fn answer_has_pages_and_links() {
        let query = q(&[("offset", "2"), ("limit", "2"), ("sort_by", "name")]).expect("query");
        let v = query.answer("vms", 7, None, vec![json!({"href": "/api/vms/9"})], &[], "");
        assert_eq!(v["count"], 7);
        assert_eq!(v["subcount"], 1);
        assert_eq!(v["pages"], 4);
        assert!(v.get("subquery_count").is_none());
        assert_eq!(v["links"]["self"], "/api/vms?offset=2&limit=2&sort_by=name");
        assert_eq!(v["links"]["next"], "/api/vms?offset=4&limit=2&sort_by=name");
        assert_eq!(
            v["links"]["previous"],
            "/api/vms?offset=0&limit=2&sort_by=name"
        );
        assert_eq!(
            v["links"]["first"],
            "/api/vms?offset=0&limit=2&sort_by=name"
        );
        assert_eq!(v["links"]["last"], "/api/vms?offset=6&limit=2&sort_by=name");
        let first = q(&[("limit", "5"), ("filter[]", "name='a b'")]).expect("query");
        let v = first.answer("vms", 7, Some(3), vec![], &["create"], "https://x");
        assert_eq!(v["subquery_count"], 3);
        assert_eq!(v["pages"], 1);
        assert!(v["links"].get("previous").is_none());
        assert!(v["links"].get("next").is_none());
        assert_eq!(
            v["links"]["self"],
            "https://x/api/vms?offset=0&limit=5&filter%5B%5D=name%3D%27a%20b%27"
        );
        assert_eq!(
            v["actions"],
            json!([{"name": "create", "method": "post", "href": "https://x/api/vms"}])
        );
    }
}
