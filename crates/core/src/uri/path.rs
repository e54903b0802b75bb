//! Datastore paths: `MiqAePath.split` and `MiqAePath#to_s`.

/// A path split into namespace, class and instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathParts {
    /// The namespace: zero or more segments joined by `/` (`""` when absent).
    pub namespace: String,
    /// The class, if the path has one.
    pub class: Option<String>,
    /// The instance; `None` for a path ending in `/` (the engine then uses `.default`).
    pub instance: Option<String>,
}

impl PathParts {
    /// `MiqAePath#to_s` of these parts ([`render_path`]).
    pub fn render(&self) -> String {
        render_path(
            &self.namespace,
            self.class.as_deref(),
            self.instance.as_deref(),
        )
    }
}

/// The options of `MiqAePath.split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitOptions {
    /// The last segment is an instance name (default `true`); when `false` the
    /// instance is always `None` and a trailing `/` is ignored.
    pub has_instance_name: bool,
    /// The last segment is an attribute name (default `false`), as in
    /// `${miqaedb:///EVM/AUTOMATE/test2/attr1}`.
    pub has_attribute_name: bool,
}

impl Default for SplitOptions {
    fn default() -> SplitOptions {
        SplitOptions {
            has_instance_name: true,
            has_attribute_name: false,
        }
    }
}

/// `MiqAePath.split(path)`: pops instance and class from the right; the namespace is
/// the rest, so it may hold several segments or be `""`. A trailing `/` gives no
/// instance and a leading `/` is optional (`evm/AUTOMATE/test1` is
/// `/evm/AUTOMATE/test1`). `%20` and other escapes are kept as written.
///
/// Ruby's `split('/')` drops trailing empty pieces, and that is kept: `/NS/CLASS/`
/// gives `NS`, `CLASS`, no instance, but `/NS//` (the rendering of a namespace
/// alone) gives namespace `""` and class `NS`. Paths from [`parse`](super::parse)
/// have no `//`.
pub fn split_path(path: &str) -> PathParts {
    split_path_with(path, SplitOptions::default()).0
}

/// `MiqAePath.split(path, options)`: [`split_path`] with ManageIQ's options; the
/// second value is the attribute name when `has_attribute_name` is set.
pub fn split_path_with(path: &str, options: SplitOptions) -> (PathParts, Option<String>) {
    // Ruby's `path.split("/")` (no trailing empty pieces), one vector.
    let mut parts: Vec<Option<&str>> = Vec::with_capacity(8);
    parts.extend(path.split('/').map(Some));
    while parts.last().is_some_and(|p| p.is_some_and(str::is_empty)) {
        parts.pop();
    }
    if path.ends_with('/') && options.has_instance_name {
        parts.push(None);
    }
    if path.starts_with('/') && !parts.is_empty() {
        parts.remove(0);
    }
    let mut pop = |wanted: bool| {
        if wanted {
            parts.pop().flatten().map(str::to_owned)
        } else {
            None
        }
    };
    let attribute = pop(options.has_attribute_name);
    let instance = pop(options.has_instance_name);
    let class = pop(true);
    let mut namespace =
        String::with_capacity(parts.iter().map(|p| p.map_or(0, str::len) + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            namespace.push('/');
        }
        namespace.push_str(p.unwrap_or_default());
    }
    let parts = PathParts {
        namespace,
        class,
        instance,
    };
    (parts, attribute)
}

/// `MiqAePath#to_s`: `"/" + [ns, class, instance].join("/")`, or `""` when every
/// part is blank. A namespace alone renders as `/NS//`, a namespace and class as
/// `/NS/CLASS/`.
pub fn render_path(namespace: &str, class: Option<&str>, instance: Option<&str>) -> String {
    render_path_with_attribute(namespace, class, instance, None)
}

/// `MiqAePath#to_s` with an attribute name, appended as a fourth segment unless
/// it is blank (`/NAMESPACE/CLASS/INSTANCE/ATTRIBUTE`).
pub fn render_path_with_attribute(
    namespace: &str,
    class: Option<&str>,
    instance: Option<&str>,
    attribute: Option<&str>,
) -> String {
    let mut parts = vec![namespace, class.unwrap_or(""), instance.unwrap_or("")];
    if let Some(attribute) = attribute.filter(|a| !is_blank(a)) {
        parts.push(attribute);
    }
    if parts.iter().all(|p| is_blank(p)) {
        return String::new();
    }
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// Ruby's `blank?` for a string: empty or only whitespace.
fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}
