//! Where a field of `automate.yaml` is: the config file read a second time
//! as a tree of keys, each node with the line it starts on, so that the
//! checks beyond types ([`super::Config::validate`]) can name the line of
//! each field path (`providers[2].catcher.rate`). Only read when there are
//! problems to report.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A node of the document: a mapping, a sequence or a scalar.
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// The lines of a configuration text's nodes.
pub(super) struct Lines(Option<Spanned<Node>>);

impl Lines {
    /// Reads `text` (a text that does not parse gives no lines).
    pub(super) fn of(text: &str, options: serde_saphyr::Options) -> Lines {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lines(serde_saphyr::from_str_with_options(text, options).ok())
    }

    /// The 1-based line of `path` (`a.b[2].c`), or of the deepest part of
    /// it the file has; 0 when the file has none of it.
    pub(super) fn line_of(&self, path: &str) -> u64 {
        let Some(mut node) = self.0.as_ref() else {
            return 0;
        };
        let mut line = 0;
        for step in steps(path) {
            let next = match (&node.value, step) {
                (Node::Map(entries), Step::Key(k)) => {
                    entries.iter().find(|(key, _)| key == k).map(|(_, v)| v)
                }
                (Node::Seq(items), Step::Index(i)) => items.get(i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = n;
                    line = n.referenced.line();
                }
                None => break,
            }
        }
        line
    }
}

/// One step of a field path.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `providers[2].catcher.rate` → `providers`, `2`, `catcher`, `rate`.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Step::Key(key));
        }
        for idx in pieces {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => out.push(Step::Index(i)),
                Err(_) => return out,
            }
        }
    }
    out
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key.0, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key as text (a key that is not a scalar is kept as `""`).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Key, E> {
                Ok(Key(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Key(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Key(String::new()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_find_their_lines() {
        let text = "providers:\n  - name: a\n    catcher: {kind: simulate, rate: 1e-300}\n  - name: b\n    catcher:\n      kind: amqp\n      prefetch: 0\nworkers: 100000\n";
        let lines = Lines::of(text, serde_saphyr::Options::default());
        assert_eq!(lines.line_of("workers"), 8);
        assert_eq!(lines.line_of("providers[0].name"), 2);
        assert_eq!(lines.line_of("providers[0].catcher.rate"), 3);
        assert_eq!(lines.line_of("providers[1].catcher.prefetch"), 7);
        assert_eq!(lines.line_of("providers[1].catcher.queue"), 6);
        assert_eq!(lines.line_of("queue.capacity"), 0);
    }
}
