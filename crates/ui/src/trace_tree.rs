//! The automation trace of one instantiation as a tree, for the
//! Simulation page: the root's `Instantiating [...]`, each `Following
//! Relationship [...]` with what happened beneath it (a `.missing`
//! fallback marked), each method invoked with its inputs and return code
//! (`MIQ_OK`, ...), each state of a state machine with its result and
//! retries, and every warning and error.
//!
//! The engine keeps the trace as ManageIQ's `automation.log` lines (with
//! the relationship depth each was written at, and its level), so the tree
//! is built by reading those fixed formats (`crates/engine`'s
//! `instantiate.rs`, `methods.rs`, `state_machine.rs`, `deliver.rs`):
//!
//! - `Instantiating [uri]` opens a root (an instantiation a method starts
//!   on its own, such as the policy event a handler raises, delivered in
//!   the same sandbox, is a root of its own after it);
//! - `Following Relationship [uri]` opens a relationship, `Followed
//!   Relationship [uri]` closes it (one that failed is closed by the next
//!   relationship at its depth, or by any line written above it);
//! - `Instance [...] not found in MiqAeDatastore - trying [.missing]`
//!   marks the relationship it is in as a `.missing` fallback;
//! - `Invoking [location] method [fq] with inputs [...]` opens a method,
//!   `<AEMethod [fq]> Starting` / `Ending` bracket what it logs, and
//!   `Method exited with rc=...` (also inside `Stopping instantiation
//!   because [...]`) gives its return code; a method that logs no `Starting`
//!   (an empty body) or no return code (it raised) is closed by the next
//!   line;
//! - `Workspace Instantiation is READONLY -- skipping method [fq] with
//!   inputs [...]` is a method not run;
//! - a line naming `State=[name]` puts it (and what follows) in that
//!   state; `Processed State=[name] with Result=[r]` gives the state's
//!   result, `Processed State=[name]` (or `Skipping State`) ends it;
//! - `Requeuing ... for delivery in [n] seconds` is a retry.
//!
//! Any other line is a leaf where it falls, with its level.

use crate::page::escape_into;
use automate_engine::{Level, TraceLine};

/// What a node of the trace tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// The root instantiation (`Instantiating [...]`).
    Instantiate,
    /// A relationship followed.
    Relationship,
    /// A method invoked (or, `skipped`, listed and not run).
    Method,
    /// A state of a state machine.
    State,
    /// Any other line.
    Line,
}

/// One node of the trace tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// The URI (instantiation, relationship), the method's fully
    /// qualified name, the state's name, or the line's text.
    pub title: String,
    /// The line's level (the worst of a leaf; `Info` for a group).
    pub level: Level,
    /// The trace depth of the line that made it.
    pub depth: usize,
    /// A relationship that fell back to `.missing`, or the line saying so.
    pub missing: bool,
    /// A method's location (`inline`, `builtin`, ...).
    pub location: Option<String>,
    /// A method's inputs, as the `Invoking` line shows them.
    pub inputs: Option<String>,
    /// A method's return code (`MIQ_OK`, `MIQ_WARN`, `MIQ_STOP`,
    /// `MIQ_ABORT`, `Unknown RC: [n]`), or `error` when it raised.
    pub rc: Option<String>,
    /// A method not run (execute methods off).
    pub skipped: bool,
    /// A state's result (`ok`, `retry`, `error`, ...).
    pub result: Option<String>,
    /// A retry: a state whose result is `retry`, or the requeue line.
    pub retry: bool,
    /// The nodes beneath it, in trace order.
    pub children: Vec<Node>,
}

impl Node {
    fn new(kind: NodeKind, title: impl Into<String>, line: &TraceLine) -> Node {
        Node {
            kind,
            title: title.into(),
            level: if kind == NodeKind::Line {
                line.level
            } else {
                Level::Info
            },
            depth: line.depth,
            missing: false,
            location: None,
            inputs: None,
            rc: None,
            skipped: false,
            result: None,
            retry: false,
            children: Vec::new(),
        }
    }

    /// An error here or beneath.
    pub fn has_error(&self) -> bool {
        self.level == Level::Error
            || self.rc.as_deref().is_some_and(is_failing_rc)
            || self.children.iter().any(Node::has_error)
    }

    /// A `.missing` fallback here or beneath.
    pub fn has_missing(&self) -> bool {
        self.missing || self.children.iter().any(Node::has_missing)
    }

    /// This node and every one beneath it, depth first.
    pub fn walk(&self) -> Vec<&Node> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }
}

/// A return code that ends the instantiation or failed.
fn is_failing_rc(rc: &str) -> bool {
    rc != "MIQ_OK" && rc != "MIQ_WARN"
}

/// Where an open method is in its bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `Invoking` seen; `Starting` expected next.
    Invoked,
    /// Between `Starting` and `Ending`: its own log lines.
    Running,
    /// `Ending` seen; the return code expected next.
    Ended,
}

/// The text between `prefix` and the next `]` of `s`, when `s` starts
/// with `prefix`.
fn bracketed<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(prefix)?;
    rest.find(']').map(|end| &rest[..end])
}

/// The state a line names (`State=[name]`, `State=<name>`).
fn state_name(s: &str) -> Option<&str> {
    let at = s.find("State=")?;
    let rest = &s[at + "State=".len()..];
    let close = match rest.chars().next()? {
        '[' => ']',
        '<' => '>',
        _ => return None,
    };
    rest[1..].find(close).map(|end| &rest[1..1 + end])
}

/// The return code in a `Method exited with rc=...` text (also inside
/// `Stopping instantiation because [...]`).
fn rc_of(s: &str) -> Option<String> {
    let at = s.find("Method exited with rc=")?;
    let rest = &s[at + "Method exited with rc=".len()..];
    let rc = if let Some(unknown) = rest.strip_prefix("Unknown RC: [") {
        let n = unknown.split(']').next().unwrap_or_default();
        format!("Unknown RC: [{n}]")
    } else {
        rest.split([']', ' '])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    (!rc.is_empty()).then_some(rc)
}

/// The `Invoking [location] method [fq] with inputs [inputs]` line's
/// parts.
fn invoking(s: &str) -> Option<(&str, &str, &str)> {
    let rest = s.strip_prefix("Invoking [")?;
    let (location, rest) = rest.split_once("] method [")?;
    let (fq, rest) = rest.split_once("] with inputs [")?;
    let inputs = rest.strip_suffix(']').unwrap_or(rest);
    Some((location, fq, inputs))
}

/// The `Workspace Instantiation is READONLY -- skipping method [fq] with
/// inputs [inputs]` line's parts.
fn skipping(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix("Workspace Instantiation is READONLY -- skipping method [")?;
    let (fq, rest) = rest.split_once("] with inputs [")?;
    Some((fq, rest.strip_suffix(']').unwrap_or(rest)))
}

/// The tree being built: the roots, and the path of open nodes (indices
/// from the roots down) with an open method's phase.
struct Builder {
    roots: Vec<Node>,
    open: Vec<usize>,
    phase: Option<Phase>,
}

impl Builder {
    /// The children list new nodes go into.
    fn target(&mut self) -> &mut Vec<Node> {
        let mut list = &mut self.roots;
        for &i in &self.open {
            list = &mut list[i].children;
        }
        list
    }

    /// The open node `k` levels from the innermost (0: the innermost).
    fn open_node(&mut self, k: usize) -> Option<&mut Node> {
        let n = self.open.len().checked_sub(k + 1)?;
        let (&first, rest) = self.open[..=n].split_first()?;
        let mut node = &mut self.roots[first];
        for &i in rest {
            node = &mut node.children[i];
        }
        Some(node)
    }

    fn innermost(&mut self) -> Option<&mut Node> {
        self.open_node(0)
    }

    fn push_leaf(&mut self, node: Node) {
        self.target().push(node);
    }

    fn push_open(&mut self, node: Node) {
        let list = self.target();
        list.push(node);
        let i = list.len() - 1;
        self.open.push(i);
    }

    fn close(&mut self) {
        if self.innermost().is_some_and(|n| n.kind == NodeKind::Method) {
            self.phase = None;
        }
        self.open.pop();
    }

    /// The kind of the innermost open node.
    fn innermost_kind(&mut self) -> Option<NodeKind> {
        self.innermost().map(|n| n.kind)
    }

    /// Closes open nodes up to and including the innermost of `kind`
    /// accepted by `pick`; false (nothing closed) when there is none.
    fn close_through(&mut self, pick: impl Fn(&Node) -> bool) -> bool {
        let Some(k) = (0..self.open.len()).find(|&k| self.open_node(k).is_some_and(|n| pick(n)))
        else {
            return false;
        };
        for _ in 0..=k {
            self.close();
        }
        true
    }

    /// Relationships (and what is open inside them) that a line at
    /// `depth` shows have ended: those opened deeper, and, for a new
    /// relationship, one opened at the same depth.
    fn close_dead_relationships(&mut self, depth: usize, sibling: bool) {
        while let Some(k) = (0..self.open.len()).rev().find(|&k| {
            self.open_node(k).is_some_and(|n| {
                n.kind == NodeKind::Relationship
                    && (n.depth > depth || (sibling && n.depth == depth))
            })
        }) {
            for _ in 0..=k {
                self.close();
            }
        }
    }

    fn line(&mut self, line: &TraceLine) {
        let text = line.text.as_str();
        // An open method: its bracket decides whether the line is its.
        if self.innermost_kind() == Some(NodeKind::Method) {
            match self.phase {
                Some(Phase::Invoked) if text.starts_with("<AEMethod [") => {
                    self.phase = Some(Phase::Running);
                    return;
                }
                Some(Phase::Running) => {
                    if text.starts_with("<AEMethod [") && text.ends_with("]> Ending") {
                        self.phase = Some(Phase::Ended);
                        return;
                    }
                    if !text.starts_with("Following Relationship [") {
                        self.push_leaf(Node::new(NodeKind::Line, text, line));
                        return;
                    }
                }
                Some(Phase::Ended) => {
                    if let Some(rc) = rc_of(text) {
                        let failing = is_failing_rc(&rc);
                        if let Some(m) = self.innermost() {
                            m.rc = Some(rc);
                        }
                        if failing && !text.starts_with("Method exited") {
                            self.push_leaf(Node::new(NodeKind::Line, text, line));
                        }
                        self.close();
                        return;
                    }
                    if line.level == Level::Error {
                        // It raised: the error is the method's.
                        if let Some(m) = self.innermost() {
                            m.rc = Some("error".to_string());
                        }
                        self.push_leaf(Node::new(NodeKind::Line, text, line));
                        self.close();
                        return;
                    }
                    self.close();
                }
                _ => self.close(),
            }
        }

        if let Some(uri) = bracketed(text, "Instantiating [") {
            self.open.clear();
            self.phase = None;
            self.push_open(Node::new(NodeKind::Instantiate, uri, line));
            return;
        }
        if let Some(uri) = bracketed(text, "Following Relationship [") {
            self.close_dead_relationships(line.depth, true);
            let mut node = Node::new(NodeKind::Relationship, uri, line);
            node.title = uri.to_string();
            self.push_open(node);
            return;
        }
        self.close_dead_relationships(line.depth, false);
        if let Some(uri) = bracketed(text, "Followed  Relationship [") {
            let closed = self.close_through(|n| n.kind == NodeKind::Relationship && n.title == uri);
            if !closed {
                self.push_leaf(Node::new(NodeKind::Line, text, line));
            }
            return;
        }
        if text.contains("not found in MiqAeDatastore - trying [.missing]") {
            if let Some(k) = (0..self.open.len()).find(|&k| {
                self.open_node(k)
                    .is_some_and(|n| n.kind == NodeKind::Relationship)
            }) {
                if let Some(rel) = self.open_node(k) {
                    rel.missing = true;
                }
            }
            let mut leaf = Node::new(NodeKind::Line, text, line);
            leaf.missing = true;
            self.push_leaf(leaf);
            return;
        }
        if let Some((location, fq, inputs)) = invoking(text) {
            let mut node = Node::new(NodeKind::Method, fq, line);
            node.location = Some(location.to_string());
            node.inputs = Some(inputs.to_string());
            if location == "builtin" {
                // A builtin logs no bracket and no return code.
                self.push_leaf(node);
            } else {
                self.push_open(node);
                self.phase = Some(Phase::Invoked);
            }
            return;
        }
        if let Some((fq, inputs)) = skipping(text) {
            let mut node = Node::new(NodeKind::Method, fq, line);
            node.inputs = Some(inputs.to_string());
            node.skipped = true;
            self.push_leaf(node);
            return;
        }
        let moves_on =
            text.starts_with("Next State=") || text.starts_with("Will restart at State=");
        if let Some(name) = state_name(text).filter(|_| !moves_on) {
            let name = name.to_string();
            let in_state = (0..self.open.len()).find(|&k| {
                self.open_node(k)
                    .is_some_and(|n| n.kind == NodeKind::State && n.title == name)
            });
            if in_state.is_none() {
                // Another state of the same machine ends here.
                if self.innermost_kind() == Some(NodeKind::State) {
                    self.close();
                }
                self.push_open(Node::new(NodeKind::State, name.clone(), line));
            } else if let Some(k) = in_state {
                for _ in 0..k {
                    self.close();
                }
            }
            if let Some(r) = text
                .strip_prefix(&format!("Processed State=[{name}] with Result=["))
                .and_then(|r| r.strip_suffix(']'))
            {
                if let Some(s) = self.innermost() {
                    s.result = Some(r.to_string());
                    s.retry = r == "retry";
                }
                return;
            }
            if text == format!("Processed State=[{name}]") {
                if let Some(s) = self.innermost() {
                    s.result.get_or_insert_with(|| "ok".to_string());
                }
                self.close();
                return;
            }
            if text == format!("Processing State=[{name}]") {
                return;
            }
            let mut leaf = Node::new(NodeKind::Line, text, line);
            if text.starts_with("Skipping State=[") {
                if let Some(s) = self.innermost() {
                    s.result = Some("skip".to_string());
                }
                self.push_leaf(leaf);
                self.close();
                return;
            }
            if text.starts_with("Error in State=[") {
                if let Some(s) = self.innermost() {
                    s.result = Some("error".to_string());
                }
            }
            leaf.level = line.level;
            self.push_leaf(leaf);
            return;
        }
        let mut leaf = Node::new(NodeKind::Line, text, line);
        if text.contains("MIQ(MiqAeEngine.deliver) Requeuing") {
            leaf.retry = true;
        }
        self.push_leaf(leaf);
    }
}

/// The trace as a tree: usually one root (`Instantiating [...]`), with
/// any lines before it as leaves of their own.
pub fn build(trace: &[TraceLine]) -> Vec<Node> {
    let mut b = Builder {
        roots: Vec::new(),
        open: Vec::new(),
        phase: None,
    };
    for line in trace {
        b.line(line);
    }
    b.roots
}

/// The tree's HTML: nested lists of `<details>` (open down to the first
/// level, and wherever a `.missing` fallback, an error or a retry lies),
/// each flag a class and a visible label.
pub fn html(nodes: &[Node]) -> String {
    let mut out = String::with_capacity(8192);
    list_html(nodes, 0, &mut out);
    out
}

fn list_html(nodes: &[Node], depth: usize, out: &mut String) {
    out.push_str(if depth == 0 {
        "<ul class=\"trace-tree\">"
    } else {
        "<ul>"
    });
    for n in nodes {
        node_html(n, depth, out);
    }
    out.push_str("</ul>");
}

fn badge(out: &mut String, class: &str, text: &str) {
    out.push_str("<span class=\"badge ");
    out.push_str(class);
    out.push_str("\">");
    escape_into(text, out);
    out.push_str("</span>");
}

fn node_html(n: &Node, depth: usize, out: &mut String) {
    let mut classes = vec![match n.kind {
        NodeKind::Instantiate => "t-instantiate",
        NodeKind::Relationship => "t-relationship",
        NodeKind::Method => "t-method",
        NodeKind::State => "t-state",
        NodeKind::Line => "t-line",
    }];
    if n.missing {
        classes.push("missing");
    }
    match n.level {
        Level::Error => classes.push("lvl-error"),
        Level::Warn => classes.push("lvl-warn"),
        Level::Debug => classes.push("lvl-debug"),
        Level::Info => {}
    }
    if n.rc.as_deref().is_some_and(is_failing_rc) || n.result.as_deref() == Some("error") {
        classes.push("failed");
    }
    if n.retry {
        classes.push("retry");
    }
    if n.skipped {
        classes.push("skipped");
    }
    out.push_str("<li class=\"");
    out.push_str(&classes.join(" "));
    out.push_str("\">");
    let head = |out: &mut String| {
        let (word, class) = match n.kind {
            NodeKind::Instantiate => (Some("Instantiating"), "k-inst"),
            NodeKind::Relationship => (Some("Relationship"), "k-rel"),
            NodeKind::Method => (Some("Method"), "k-meth"),
            NodeKind::State => (Some("State"), "k-state"),
            NodeKind::Line => (None, ""),
        };
        if let Some(w) = word {
            out.push_str("<span class=\"tk ");
            out.push_str(class);
            out.push_str("\">");
            out.push_str(w);
            out.push_str("</span> ");
        }
        out.push_str(if n.kind == NodeKind::Line {
            "<span class=\"tl\">"
        } else {
            "<code>"
        });
        escape_into(&n.title, out);
        out.push_str(if n.kind == NodeKind::Line {
            "</span>"
        } else {
            "</code>"
        });
        if let Some(loc) = &n.location {
            out.push_str(" <span class=\"hint-inline\">[");
            escape_into(loc, out);
            out.push_str("]</span>");
        }
        if n.missing {
            badge(out, "b-missing", ".missing fallback");
        }
        if n.skipped {
            badge(out, "b-skipped", "not run");
        }
        if let Some(rc) = &n.rc {
            let class = if rc == "MIQ_OK" {
                "b-ok"
            } else if rc == "MIQ_WARN" {
                "b-warn"
            } else {
                "b-error"
            };
            badge(out, class, &format!("rc={rc}"));
        } else if n.kind == NodeKind::Method
            && !n.skipped
            && n.location.as_deref() != Some("builtin")
        {
            badge(out, "b-warn", "no return code");
        }
        if let Some(r) = &n.result {
            let class = match r.as_str() {
                "ok" => "b-ok",
                "error" => "b-error",
                "retry" => "b-retry",
                _ => "b-warn",
            };
            badge(out, class, &format!("result={r}"));
        } else if n.retry {
            badge(out, "b-retry", "retry");
        }
        match n.level {
            Level::Error => badge(out, "b-error", "error"),
            Level::Warn => badge(out, "b-warn", "warning"),
            _ => {}
        }
        if n.kind != NodeKind::Line && n.level == Level::Info && n.has_error() && n.rc.is_none() {
            badge(out, "b-error", "error inside");
        }
    };
    let has_body = !n.children.is_empty() || n.inputs.is_some();
    if !has_body {
        out.push_str("<span class=\"leaf\">");
        head(out);
        out.push_str("</span></li>");
        return;
    }
    let open = depth == 0 || n.has_missing() || n.has_error() || n.retry;
    out.push_str(if open {
        "<details open><summary>"
    } else {
        "<details><summary>"
    });
    head(out);
    out.push_str("</summary>");
    if let Some(inputs) = &n.inputs {
        out.push_str("<p class=\"inputs\">inputs <code>");
        escape_into(inputs, out);
        out.push_str("</code></p>");
    }
    if !n.children.is_empty() {
        list_html(&n.children, depth + 1, out);
    }
    out.push_str("</details></li>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(depth: usize, level: Level, text: &str) -> TraceLine {
        TraceLine {
            depth,
            level,
            text: text.to_string(),
        }
    }

    fn i(depth: usize, text: &str) -> TraceLine {
        l(depth, Level::Info, text)
    }

    /// The shape of a tree: kind letters and titles, indented.
    fn shape(nodes: &[Node]) -> Vec<String> {
        fn go(n: &Node, d: usize, out: &mut Vec<String>) {
            let k = match n.kind {
                NodeKind::Instantiate => "I",
                NodeKind::Relationship => "R",
                NodeKind::Method => "M",
                NodeKind::State => "S",
                NodeKind::Line => "-",
            };
            out.push(format!("{}{k} {}", "  ".repeat(d), n.title));
            for c in &n.children {
                go(c, d + 1, out);
            }
        }
        let mut out = Vec::new();
        for n in nodes {
            go(n, 0, &mut out);
        }
        out
    }

    #[test]
    fn relationships_nest_and_missing_is_marked() {
        let trace = vec![
            i(0, "Instantiating [/System/Event/EmsEvent/RHEVM/USER_RUN_VM]"),
            i(
                0,
                "Updated namespace [/System/Event/EmsEvent/RHEVM/USER_RUN_VM  Custom/System/Event/EmsEvent]",
            ),
            i(
                0,
                "Following Relationship [miqaedb:/System/event_handlers/event_action_refresh_sync?target=src_vm#create]",
            ),
            i(
                0,
                "Instance [/ManageIQ/System/event_handlers/event_action_refresh_sync] not found in MiqAeDatastore - trying [.missing]",
            ),
            i(
                1,
                "Invoking [inline] method [/ManageIQ/System/event_handlers/missing] with inputs [{}]",
            ),
            i(1, "<AEMethod [/ManageIQ/System/event_handlers/missing]> Starting "),
            i(1, "handler not found"),
            i(1, "<AEMethod [/ManageIQ/System/event_handlers/missing]> Ending"),
            i(1, "Method exited with rc=MIQ_OK"),
            i(
                0,
                "Followed  Relationship [miqaedb:/System/event_handlers/event_action_refresh_sync?target=src_vm#create]",
            ),
            i(0, "Following Relationship [miqaedb:/System/event_handlers/x#create]"),
            i(0, "Followed  Relationship [miqaedb:/System/event_handlers/x#create]"),
        ];
        let tree = build(&trace);
        assert_eq!(
            shape(&tree),
            [
                "I /System/Event/EmsEvent/RHEVM/USER_RUN_VM",
                "  - Updated namespace [/System/Event/EmsEvent/RHEVM/USER_RUN_VM  Custom/System/Event/EmsEvent]",
                "  R miqaedb:/System/event_handlers/event_action_refresh_sync?target=src_vm#create",
                "    - Instance [/ManageIQ/System/event_handlers/event_action_refresh_sync] not found in MiqAeDatastore - trying [.missing]",
                "    M /ManageIQ/System/event_handlers/missing",
                "      - handler not found",
                "  R miqaedb:/System/event_handlers/x#create",
            ]
        );
        let rel = &tree[0].children[1];
        assert!(rel.missing && rel.children[0].missing);
        assert!(!tree[0].children[2].missing);
        let m = &rel.children[1];
        assert_eq!(m.rc.as_deref(), Some("MIQ_OK"));
        assert_eq!(m.inputs.as_deref(), Some("{}"));
        assert_eq!(m.location.as_deref(), Some("inline"));
        assert!(tree[0].has_missing() && !tree[0].has_error());

        let html = html(&tree);
        assert!(html.contains("<li class=\"t-relationship missing\"><details open>"));
        assert!(html.contains("<span class=\"badge b-missing\">.missing fallback</span>"));
        assert!(html.contains("<span class=\"badge b-ok\">rc=MIQ_OK</span>"));
        // The relationship without anything beneath it is a leaf.
        assert!(html.contains("<li class=\"t-relationship\"><span class=\"leaf\">"));
    }

    #[test]
    fn states_take_results_retries_and_methods() {
        let trace = vec![
            i(0, "Instantiating [/System/Process/Request?request=x]"),
            i(0, "Following Relationship [miqaedb:/Flow/SM/default#create]"),
            i(
                1,
                "In State=[pre], invoking [on_entry] method=[update_status(status => 'x')]",
            ),
            i(
                1,
                "Invoking [inline] method [/D/Flow/SM/update_status] with inputs [{\"status\"=>\"x\"}]",
            ),
            i(1, "<AEMethod [/D/Flow/SM/update_status]> Starting "),
            i(1, "<AEMethod [/D/Flow/SM/update_status]> Ending"),
            i(1, "Method exited with rc=MIQ_OK"),
            i(1, "Processing State=[pre]"),
            i(1, "Following Relationship [miqaedb:/Flow/Steps/pre#create]"),
            i(1, "Followed  Relationship [miqaedb:/Flow/Steps/pre#create]"),
            i(1, "Processed State=[pre] with Result=[ok]"),
            i(1, "Processed State=[pre]"),
            i(1, "Next State=[check]"),
            i(1, "Processing State=[check]"),
            i(
                1,
                "Invoking [inline] method [/D/Flow/SM/check] with inputs [{}]",
            ),
            i(1, "<AEMethod [/D/Flow/SM/check]> Starting "),
            i(1, "<AEMethod [/D/Flow/SM/check]> Ending"),
            i(1, "Method exited with rc=MIQ_OK"),
            i(1, "Processed State=[check] with Result=[retry]"),
            i(0, "Followed  Relationship [miqaedb:/Flow/SM/default#create]"),
            i(
                0,
                "MIQ(MiqAeEngine.deliver) Requeuing {} for object [Automate] with state [check] to Automate for delivery in [60] seconds",
            ),
        ];
        let tree = build(&trace);
        assert_eq!(
            shape(&tree),
            [
                "I /System/Process/Request?request=x",
                "  R miqaedb:/Flow/SM/default#create",
                "    S pre",
                "      - In State=[pre], invoking [on_entry] method=[update_status(status => 'x')]",
                "      M /D/Flow/SM/update_status",
                "      R miqaedb:/Flow/Steps/pre#create",
                "    - Next State=[check]",
                "    S check",
                "      M /D/Flow/SM/check",
                "  - MIQ(MiqAeEngine.deliver) Requeuing {} for object [Automate] with state [check] to Automate for delivery in [60] seconds",
            ]
        );
        let sm = &tree[0].children[0];
        assert_eq!(sm.children[0].result.as_deref(), Some("ok"));
        assert!(!sm.children[0].retry);
        assert_eq!(sm.children[2].result.as_deref(), Some("retry"));
        assert!(sm.children[2].retry);
        assert!(tree[0].children[1].retry);
        let html = html(&tree);
        assert!(html.contains("<span class=\"badge b-retry\">result=retry</span>"));
    }

    #[test]
    fn errors_stops_and_unfinished_methods() {
        let trace = vec![
            i(0, "Instantiating [/A/B/c]"),
            // An empty method: no bracket, no rc.
            i(
                0,
                "Invoking [inline] method [/D/A/B/empty] with inputs [{}]",
            ),
            i(0, "Following Relationship [miqaedb:/A/B/d#create]"),
            i(1, "Invoking [inline] method [/D/A/B/boom] with inputs [{}]"),
            i(1, "<AEMethod [/D/A/B/boom]> Starting "),
            l(1, Level::Warn, "about to fail"),
            i(1, "<AEMethod [/D/A/B/boom]> Ending"),
            l(1, Level::Error, "Rhai error at line 3: boom"),
            // The relationship never logs `Followed`: the next line at
            // depth 0 ends it.
            i(0, "Following Relationship [miqaedb:/A/B/e#create]"),
            i(1, "Invoking [inline] method [/D/A/B/stop] with inputs [{}]"),
            i(1, "<AEMethod [/D/A/B/stop]> Starting "),
            i(1, "<AEMethod [/D/A/B/stop]> Ending"),
            i(
                1,
                "Stopping instantiation because [Method exited with rc=MIQ_STOP]",
            ),
            l(0, Level::Error, "Class [X/Y] not found in MiqAeDatastore"),
            i(
                0,
                "Invoking [builtin] method [/$/Object/log_object] with inputs [{}]",
            ),
            i(0, "after the builtin"),
        ];
        let tree = build(&trace);
        assert_eq!(
            shape(&tree),
            [
                "I /A/B/c",
                "  M /D/A/B/empty",
                "  R miqaedb:/A/B/d#create",
                "    M /D/A/B/boom",
                "      - about to fail",
                "      - Rhai error at line 3: boom",
                "  R miqaedb:/A/B/e#create",
                "    M /D/A/B/stop",
                "      - Stopping instantiation because [Method exited with rc=MIQ_STOP]",
                // Lines at the relationship's own depth stay in it (its
                // `Updated namespace` and `.missing` lines are written
                // there too).
                "    - Class [X/Y] not found in MiqAeDatastore",
                "    M /$/Object/log_object",
                "    - after the builtin",
            ]
        );
        let root = &tree[0];
        assert_eq!(root.children[0].rc, None);
        let boom = &root.children[1].children[0];
        assert_eq!(boom.rc.as_deref(), Some("error"));
        assert_eq!(boom.children[0].level, Level::Warn);
        let stop = &root.children[2].children[0];
        assert_eq!(stop.rc.as_deref(), Some("MIQ_STOP"));
        assert!(root.has_error());
        assert_eq!(root.children[2].children[1].level, Level::Error);
        let html = html(&tree);
        assert!(html.contains("<span class=\"badge b-error\">rc=MIQ_STOP</span>"));
        assert!(html.contains("<span class=\"badge b-error\">rc=error</span>"));
        assert!(html.contains("<span class=\"badge b-warn\">no return code</span>"));
        assert!(html.contains("class=\"t-line lvl-error\""));
        assert!(html.contains("<span class=\"badge b-error\">error</span>"));
    }

    #[test]
    fn skipped_methods_and_escaping() {
        let trace = vec![
            i(0, "Instantiating [/A/B/c?x=<y>]"),
            i(
                0,
                "Workspace Instantiation is READONLY -- skipping method [/D/A/B/m] with inputs [{\"a\"=>\"<b>\"}]",
            ),
        ];
        let tree = build(&trace);
        let m = &tree[0].children[0];
        assert!(m.skipped && m.kind == NodeKind::Method);
        assert_eq!(m.inputs.as_deref(), Some("{\"a\"=>\"<b>\"}"));
        let html = html(&tree);
        assert!(html.contains("/A/B/c?x=&lt;y&gt;"));
        assert!(html.contains("&quot;&lt;b&gt;&quot;"));
        assert!(html.contains("<span class=\"badge b-skipped\">not run</span>"));
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn parsers() {
        assert_eq!(state_name("In State=[a b], invoking"), Some("a b"));
        assert_eq!(state_name("State=<x> running on_entry raised"), Some("x"));
        assert_eq!(state_name("Next State=x"), None);
        assert_eq!(
            rc_of("Method exited with rc=MIQ_ABORT").as_deref(),
            Some("MIQ_ABORT")
        );
        assert_eq!(
            rc_of("Aborting instantiation (unknown method return code) because [Method exited with rc=Unknown RC: [3]]")
                .as_deref(),
            Some("Unknown RC: [3]")
        );
        assert_eq!(rc_of("nothing"), None);
        assert_eq!(
            invoking("Invoking [inline] method [/a/b] with inputs [{}]"),
            Some(("inline", "/a/b", "{}"))
        );
        assert_eq!(build(&[]), Vec::<Node>::new());
    }
}
