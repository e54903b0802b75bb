//! Collect expressions (reference §5.7): gather values from the children a
//! relationship produced (or from the current object) into an attribute.
//!
//! Forms, tried in order: array `[lhs =] [e1, e2][.method]`, hash
//! `[lhs =] {k => v, ...}`, string `[lhs =] name`. The target `lhs` is an
//! attribute of the current object, `/attr` of the root, or `path/attr`.

use super::error::EngineError;
use super::workspace::ObjectId;
use super::Runtime;
use automate_core::value::AttrValue;

/// What a collect reads from: Ruby's `rels` after a relationship.
#[derive(Clone, Copy, Debug)]
pub(super) enum CollectSource<'a> {
    /// An attribute field's collect: the current object (`rels` is nil).
    Current,
    /// A plain relationship: the one child it instantiated.
    One(ObjectId),
    /// A wildcard relationship (`*`): always an Array in ManageIQ, even
    /// when a single instance (or none) matched.
    Many(&'a [ObjectId]),
}

impl CollectSource<'_> {
    /// The children to read from (`None` for the current object).
    fn children(&self) -> Option<Vec<ObjectId>> {
        match self {
            CollectSource::Current => None,
            CollectSource::One(c) => Some(vec![*c]),
            CollectSource::Many(cs) => Some(cs.to_vec()),
        }
    }
}

impl Runtime<'_> {
    /// Runs one collect expression for field `field` of object `id`;
    /// `from` is what the relationship produced (reference §5.7).
    pub(super) fn process_collect(
        &mut self,
        id: ObjectId,
        field: &str,
        expr: &str,
        from: CollectSource<'_>,
    ) -> Result<(), EngineError> {
        let source_list = from.children();
        let source = source_list.as_deref();
        let expr = expr.trim();
        let (lhs, rhs) = match split_assignment(expr) {
            Some((l, r)) => (Some(l.trim()), r.trim()),
            None => (None, expr),
        };
        let value = if rhs.starts_with('[') {
            let Some(close) = rhs.find(']') else {
                return Err(invalid(expr));
            };
            let elems: Vec<&str> = rhs[1..close]
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect();
            let method = rhs[close + 1..].trim().trim_start_matches('.');
            let mut items = Vec::new();
            match source {
                Some(children) => {
                    for &c in children {
                        for e in &elems {
                            items.push(self.child_attr(c, e));
                        }
                    }
                }
                None => {
                    for e in &elems {
                        items.push(literal(e).unwrap_or_else(|| {
                            self.attr(id, e).cloned().unwrap_or(AttrValue::Nil)
                        }));
                    }
                }
            }
            if items.is_empty() {
                return Ok(());
            }
            apply_method(items, method)
        } else if rhs.starts_with('{') {
            let body = rhs
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| invalid(expr))?;
            let mut pairs = Vec::new();
            let objects: Vec<ObjectId> = match source {
                Some(children) => children.to_vec(),
                None => vec![id],
            };
            for pair in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=>").ok_or_else(|| invalid(expr))?;
                let (k, v) = (k.trim(), v.trim());
                for &o in &objects {
                    let key = if let Some(sym) = k.strip_prefix(':') {
                        AttrValue::Symbol(sym.to_string())
                    } else if let Some(lit) = literal(k) {
                        lit
                    } else {
                        self.child_attr(o, k)
                    };
                    pairs.push((key, self.child_attr(o, v)));
                }
            }
            if pairs.is_empty() {
                return Ok(());
            }
            AttrValue::Hash(pairs)
        } else if rhs
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            && !rhs.is_empty()
        {
            let name = rhs.split('.').next().unwrap_or(rhs);
            // Ruby's `rels.collect { |r| r[name] }` for a wildcard's
            // Array (whatever its length), `rels[name]` for one child.
            match from {
                CollectSource::One(child) => self.child_attr(child, name),
                CollectSource::Many(children) => {
                    AttrValue::Array(children.iter().map(|&c| self.child_attr(c, name)).collect())
                }
                CollectSource::Current => self.attr(id, name).cloned().unwrap_or(AttrValue::Nil),
            }
        } else {
            return Err(invalid(expr));
        };
        let target = match (lhs, rhs.starts_with('[') || rhs.starts_with('{'), source) {
            (Some(l), _, _) => l.to_string(),
            (None, true, _) => field.to_string(),
            (None, false, Some(_)) => rhs.split('.').next().unwrap_or(rhs).to_string(),
            (None, false, None) => field.to_string(),
        };
        self.set_collected(id, &target, value)
    }

    fn child_attr(&self, child: ObjectId, name: &str) -> AttrValue {
        self.attr(child, name).cloned().unwrap_or(AttrValue::Nil)
    }

    /// Stores a collected value at `attr`, `/attr` or `path/attr`.
    fn set_collected(
        &mut self,
        id: ObjectId,
        target: &str,
        value: AttrValue,
    ) -> Result<(), EngineError> {
        match target.rsplit_once('/') {
            None => self.set_attr(id, target, value),
            Some((path, attr)) => {
                let path = if path.is_empty() { "/" } else { path };
                let saved = self.current;
                self.current = Some(id);
                let obj = self.object_at_path(path);
                self.current = saved;
                let obj = obj?.ok_or_else(|| EngineError::ObjectNotFound(path.to_string()))?;
                self.set_attr(obj, attr.trim(), value);
            }
        }
        Ok(())
    }
}

/// Splits `lhs = rhs` at the first `=` that is not part of `=>`.
fn split_assignment(expr: &str) -> Option<(&str, &str)> {
    let bytes = expr.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'[' || b == b'{' {
            return None;
        }
        if b == b'=' && bytes.get(i + 1) != Some(&b'>') {
            return Some((&expr[..i], &expr[i + 1..]));
        }
    }
    None
}

/// A quoted string, an integer or a float literal.
fn literal(e: &str) -> Option<AttrValue> {
    let e = e.trim();
    if e.len() >= 2
        && ((e.starts_with('\'') && e.ends_with('\'')) || (e.starts_with('"') && e.ends_with('"')))
    {
        return Some(AttrValue::Str(e[1..e.len() - 1].to_string()));
    }
    if let Ok(i) = e.parse::<i64>() {
        return Some(AttrValue::Int(i));
    }
    if let Ok(f) = e.parse::<f64>() {
        return Some(AttrValue::Float(f));
    }
    None
}

/// `sort rsort reverse count min max sum mean variance stddev` on an array.
fn apply_method(items: Vec<AttrValue>, method: &str) -> AttrValue {
    if method.is_empty() || items.iter().all(AttrValue::is_nil) {
        return AttrValue::Array(items);
    }
    let nums: Vec<f64> = items.iter().filter_map(AttrValue::as_f64).collect();
    let all_int = items.iter().all(|v| {
        matches!(v, AttrValue::Int(_))
            || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok())
    });
    let num = |f: f64| {
        if all_int && f.fract() == 0.0 {
            AttrValue::Int(f as i64)
        } else {
            AttrValue::Float(f)
        }
    };
    let mean = || nums.iter().sum::<f64>() / nums.len().max(1) as f64;
    let variance = || {
        let m = mean();
        let n = nums.len();
        if n < 2 {
            0.0
        } else {
            nums.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64
        }
    };
    match method {
        "sort" | "rsort" => {
            let mut sorted = items.clone();
            sorted.sort_by(|a, b| match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                _ => a.to_text().cmp(&b.to_text()),
            });
            if method == "rsort" {
                sorted.reverse();
            }
            AttrValue::Array(sorted)
        }
        "reverse" => AttrValue::Array(items.into_iter().rev().collect()),
        "count" => AttrValue::Int(items.len() as i64),
        "min" | "minimum" => nums
            .iter()
            .cloned()
            .reduce(f64::min)
            .map(num)
            .unwrap_or(AttrValue::Nil),
        "max" | "maximum" => nums
            .iter()
            .cloned()
            .reduce(f64::max)
            .map(num)
            .unwrap_or(AttrValue::Nil),
        "sum" => num(nums.iter().sum()),
        "mean" | "average" | "avg" => AttrValue::Float(mean()),
        "variance" => AttrValue::Float(variance()),
        "stddev" | "stdev" => AttrValue::Float(variance().sqrt()),
        _ => AttrValue::Array(items),
    }
}

fn invalid(expr: &str) -> EngineError {
    EngineError::InvalidCollection(format!("invalid collect item: {expr}"))
}
