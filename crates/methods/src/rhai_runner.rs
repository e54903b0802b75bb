//! [`RhaiRunner`]: runs `language: rhai`, `location: inline` methods.
//!
//! One `rhai::Engine` (feature `sync`) serves every call on every thread.
//! Method bodies are compiled once and cached by content
//! ([`RhaiRunner::precompile`] compiles the whole datastore when it loads and
//! returns the errors `datastore validate` reports); each call evaluates the
//! cached AST in a fresh `Scope`.
//!
//! The sandbox is set on the shared engine and applies to every call: a
//! bound on operations, call depth, expression depth, string, array and map
//! sizes, a wall-clock limit checked from `on_progress`, no `eval`, and no
//! `import` except the method's own `embedded_methods`. A thrown error or a
//! limit hit ends the method with an error line
//! `<AEMethod [fq]> <message> at line L, position C` and an unknown return
//! code (ManageIQ's exit status 1), which aborts the instantiation, or
//! becomes `ae_result = error` inside a state (reference §7.4, §11).
//!
//! The `evm` API and how natives reach the runtime are described in
//! [`super::evm`].

use super::evm::{self, Embedded, Frame};
use automate_datastore::index::{lower, MethodDef};
use automate_datastore::Index;
use automate_engine::ScriptRunner;
use automate_engine::{Attributes, EngineError, Level, MethodRc, ObjectId, Runtime};
use rhai::{Dynamic, EvalAltResult, Position, AST};

type SharedModule = Arc<rhai::Module>;

/// Compiled bodies by content hash, with the body to compare on a hit.
type AstCache = FxHashMap<u64, Vec<(Arc<str>, Arc<AST>)>>;
/// Compiled bodies by the address of the index's shared body.
type AstByBody = FxHashMap<usize, (Arc<str>, Arc<AST>)>;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest Rhai method body compiled: the loader's cap on a body file
/// (an inline `data:` body is bounded only by the YAML file size).
pub const MAX_SCRIPT_BYTES: usize = automate_datastore::fs::MAX_METHOD_BODY_BYTES;
/// Most functions one method body may define.
pub const MAX_SCRIPT_FUNCTIONS: usize = 1_000;

/// The sandbox limits of every Rhai method call.
#[derive(Debug, Clone, PartialEq)]
pub struct RhaiLimits {
    /// Rhai operations per call (0 = unlimited).
    pub max_operations: u64,
    /// Nested script function calls.
    pub max_call_levels: usize,
    /// Expression nesting at the top level and inside functions.
    pub max_expr_depth: usize,
    /// Expression nesting inside script functions.
    pub max_function_expr_depth: usize,
    /// Bytes in one string (and in all strings of one value together).
    pub max_string_size: usize,
    /// Elements in one array.
    pub max_array_size: usize,
    /// Entries in one object map.
    pub max_map_size: usize,
    /// Modules one call may import.
    pub max_modules: usize,
    /// Wall-clock time per call (`None` = unlimited).
    pub timeout: Option<Duration>,
    /// Bytes a call may hold allocated at once, checked every 64
    /// operations (0 = unlimited). Needs
    /// [`automate_core::alloc::CountingAlloc`] as the global allocator, as
    /// the `automate` binary has; it catches what Rhai's per-value size
    /// checks miss (a map filled with big strings).
    pub max_memory: usize,
}

impl Default for RhaiLimits {
    fn default() -> Self {
        RhaiLimits {
            max_operations: 5_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 10 << 20,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_modules: 64,
            timeout: Some(Duration::from_secs(5)),
            max_memory: 64 << 20,
        }
    }
}

/// A Rhai method body that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// `/<Domain>/<ns>/<Class>/<method>`.
    pub fqname: String,
    /// 1-based; 0 when Rhai gives no position.
    pub line: usize,
    /// 1-based column on that line; 0 when Rhai gives no position.
    pub col: usize,
    /// What is wrong, as Rhai's `ParseErrorType` words it.
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} at line {}, position {}",
            self.fqname, self.message, self.line, self.col
        )
    }
}

/// Every Rhai method of an index, compiled ([`RhaiRunner::compile_index`]),
/// not yet the runner's cache.
pub struct Compiled(AstCache);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Compiled").field(&self.0.len()).finish()
    }
}

/// Runs Rhai methods for the engine ([`ScriptRunner`]).
pub struct RhaiRunner {
    engine: rhai::Engine,
    limits: RhaiLimits,
    /// Compiled bodies by content hash (the body is compared on a hit).
    cache: RwLock<AstCache>,
    /// The same ASTs by the address of the index's shared body (the entry
    /// holds the body, so the address cannot be reused while cached): a
    /// method call finds its AST without hashing or comparing the body.
    by_body: RwLock<AstByBody>,
    /// The id of the next call: handles a script holds ([`evm::AeObject`])
    /// carry the id of the call that made them.
    next_call: AtomicU64,
    /// What outbound actions may do ([`RhaiRunner::set_outbound`]).
    outbound: arc_swap::ArcSwap<crate::outbound::Outbound>,
}

impl std::fmt::Debug for RhaiRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiRunner")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for RhaiRunner {
    fn default() -> Self {
        RhaiRunner::new()
    }
}

/// The marker `on_progress` terminates a script with when time is up.
#[derive(Debug, Clone)]
struct TimeUp;

/// The marker `on_progress` terminates a script with when it holds more
/// memory than [`RhaiLimits::max_memory`].
#[derive(Debug, Clone)]
struct MemoryUp;

impl RhaiRunner {
    /// A runner with the default [`RhaiLimits`].
    pub fn new() -> RhaiRunner {
        RhaiRunner::with_limits(RhaiLimits::default())
    }

    /// A runner whose every method call runs inside `limits`, with the
    /// `evm` API registered and an empty compile cache.
    pub fn with_limits(limits: RhaiLimits) -> RhaiRunner {
        let mut engine = rhai::Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_levels);
        engine.set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_max_modules(limits.max_modules);
        // Compile-time bounds (with the body size in `compile_body` and the
        // expression depths above, which the parser checks too).
        engine.set_max_functions(MAX_SCRIPT_FUNCTIONS);
        engine.disable_symbol("eval");
        engine.set_module_resolver(EmbeddedResolver);
        let max_memory = limits.max_memory as i64;
        // Memory every 64 operations (one operation may allocate a whole
        // `max_string_size`), the clock every 1,024.
        engine.on_progress(move |ops| {
            if ops % 64 != 0 {
                return None;
            }
            let (deadline, mem_start) = evm::with_frame(|f| (f.deadline, f.mem_start))?;
            if max_memory > 0 && automate_core::alloc::thread_net_bytes() - mem_start > max_memory {
                return Some(Dynamic::from(MemoryUp));
            }
            if ops % 1024 != 0 {
                return None;
            }
            // The instantiation's budget (its deadline, memory, cancel flag)
            // bounds the method too: nested deliveries share it.
            if evm::with_frame(|f| f.budget.check().is_err())? {
                return Some(Dynamic::from(evm::BudgetUp));
            }
            (Instant::now() >= deadline?).then(|| Dynamic::from(TimeUp))
        });
        engine.on_print(|text| {
            let _ =
                evm::with_runtime(|rt, _, _| rt.log(Level::Info, format!("Method STDOUT: {text}")));
        });
        engine.on_debug(|text, _, pos| {
            let _ = evm::with_runtime(|rt, _, _| {
                rt.log(Level::Debug, format!("Method STDOUT: {text} ({pos})"))
            });
        });
        evm::register(&mut engine);
        RhaiRunner {
            engine,
            limits,
            cache: RwLock::new(FxHashMap::default()),
            by_body: RwLock::new(FxHashMap::default()),
            next_call: AtomicU64::new(1),
            outbound: arc_swap::ArcSwap::from_pointee(crate::outbound::Outbound::default()),
        }
    }

    /// Sets what outbound actions may do (automate.yaml's `methods:`: the
    /// SMTP relay, the HTTP allow-list, the request service); calls
    /// started afterwards see it.
    pub fn set_outbound(&self, outbound: crate::outbound::Outbound) {
        self.outbound.store(Arc::new(outbound));
    }

    /// The sandbox limits it was built with.
    pub fn limits(&self) -> &RhaiLimits {
        &self.limits
    }

    /// The shared Rhai engine (for tools that compile or inspect scripts).
    pub fn rhai(&self) -> &rhai::Engine {
        &self.engine
    }

    /// Compiles `body` within bounds: at most [`MAX_SCRIPT_BYTES`] of text
    /// (parsing is linear in it), expressions nested at most
    /// [`RhaiLimits::max_expr_depth`] deep (the parser's own check, which
    /// also keeps its recursion off the end of the stack), at most
    /// [`MAX_SCRIPT_FUNCTIONS`] functions, string, array and map literals
    /// within the runtime sizes.
    fn compile_body(&self, body: &str) -> Result<AST, rhai::ParseError> {
        if body.len() > MAX_SCRIPT_BYTES {
            return Err(rhai::ParseError(
                Box::new(rhai::ParseErrorType::LiteralTooLarge(
                    format!("The method body of {} bytes", body.len()),
                    MAX_SCRIPT_BYTES,
                )),
                Position::NONE,
            ));
        }
        self.engine.compile(body)
    }

    /// The compiled body, from the cache or compiled now.
    pub fn compile(&self, body: &str) -> Result<Arc<AST>, Box<rhai::ParseError>> {
        let key = content_hash(body);
        if let Ok(cache) = self.cache.read() {
            if let Some(entries) = cache.get(&key) {
                if let Some((_, ast)) = entries.iter().find(|(b, _)| &**b == body) {
                    return Ok(ast.clone());
                }
            }
        }
        let ast = Arc::new(self.compile_body(body).map_err(Box::new)?);
        if let Ok(mut cache) = self.cache.write() {
            let entries = cache.entry(key).or_default();
            if !entries.iter().any(|(b, _)| &**b == body) {
                entries.push((Arc::from(body), ast.clone()));
            }
        }
        Ok(ast)
    }

    /// The compiled body of a method, found by the address of its shared
    /// body ([`MethodDef::body`]) and otherwise as [`RhaiRunner::compile`].
    fn compile_shared(&self, body: &Arc<str>) -> Result<Arc<AST>, Box<rhai::ParseError>> {
        let key = Arc::as_ptr(body) as *const u8 as usize;
        if let Ok(map) = self.by_body.read() {
            if let Some((b, ast)) = map.get(&key) {
                if Arc::ptr_eq(b, body) {
                    return Ok(ast.clone());
                }
            }
        }
        let ast = self.compile(body)?;
        if let Ok(mut map) = self.by_body.write() {
            map.insert(key, (body.clone(), ast.clone()));
        }
        Ok(ast)
    }

    /// The signatures of every function and property registered on the
    /// engine, Rhai's standard packages left out (Rhai's metadata):
    /// [`crate::functions`] reads them.
    pub fn function_signatures(&self) -> Vec<String> {
        self.engine.gen_fn_signatures(false)
    }

    /// Compiles every Rhai method of the index and makes the result the
    /// cache (so a reload drops the bodies of the previous index); returns
    /// the methods that do not compile, sorted by name. Call it when the
    /// datastore loads or reloads; `datastore validate` reports its errors.
    pub fn precompile(&self, index: &Index) -> Vec<CompileError> {
        let (compiled, errors) = self.compile_index(index);
        self.install(compiled);
        errors
    }

    /// Compiles every Rhai method of the index without touching the cache:
    /// what [`RhaiRunner::install`] makes the cache, and the methods that
    /// do not compile, sorted by name. A hot reload compiles first and
    /// installs only when nothing failed.
    pub fn compile_index(&self, index: &Index) -> (Compiled, Vec<CompileError>) {
        let mut errors = Vec::new();
        let mut fresh = AstCache::default();
        for class in index.all_classes() {
            for m in class.methods() {
                if !is_rhai(m) {
                    continue;
                }
                let Some(body) = m.body.as_deref().filter(|b| !b.trim().is_empty()) else {
                    continue;
                };
                let key = content_hash(body);
                let entries = fresh.entry(key).or_default();
                if entries.iter().any(|(b, _)| &**b == body) {
                    continue;
                }
                match self.compile_body(body) {
                    Ok(ast) => entries.push((Arc::from(body), Arc::new(ast))),
                    Err(e) => {
                        let (line, col) = position(e.position());
                        errors.push(CompileError {
                            fqname: m.fqname.clone(),
                            line,
                            col,
                            message: e.err_type().to_string(),
                        });
                    }
                }
            }
        }
        errors.sort_by(|a, b| a.fqname.cmp(&b.fqname));
        (Compiled(fresh), errors)
    }

    /// Makes `compiled` the cache (an instantiation still running on the
    /// previous index compiles what it misses again, on first use).
    pub fn install(&self, compiled: Compiled) {
        if let Ok(mut cache) = self.cache.write() {
            *cache = compiled.0;
        }
        if let Ok(mut map) = self.by_body.write() {
            map.clear();
        }
    }

    /// The problems of one method for `datastore validate` and a reload's
    /// check: an inline Rhai method whose body does not compile is a
    /// problem at the body file's line and column (`yaml_path` is the
    /// method's `.yaml`). Compiles without touching the cache.
    pub fn method_problems(
        &self,
        m: &automate_datastore::Method,
        yaml_path: &std::path::Path,
    ) -> Vec<automate_datastore::Problem> {
        if !m.language().eq_ignore_ascii_case("rhai") || m.location() != "inline" {
            return Vec::new();
        }
        let Some(body) = m.data() else {
            return Vec::new();
        };
        match self.compile_body(&body) {
            Ok(_) => Vec::new(),
            Err(e) => {
                let file = match &m.body {
                    Some(b) => yaml_path.with_file_name(&b.file_name),
                    None => yaml_path.to_path_buf(),
                };
                let mut p = automate_datastore::Problem::new(
                    &file,
                    format!("Rhai syntax error: {}", e.err_type()),
                )
                .at_line(e.position().line().unwrap_or(0));
                p.column = e.position().position().unwrap_or(0);
                vec![p]
            }
        }
    }

    /// How many distinct bodies are compiled and cached.
    pub fn cached(&self) -> usize {
        self.cache
            .read()
            .map(|c| c.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Resolves the embedded methods of `top`, recursively (reference
    /// §7.3), logging ManageIQ's lines, and compiles them.
    fn embedded(
        &self,
        rt: &mut Runtime<'_>,
        top: &MethodDef,
    ) -> Result<HashMap<String, Embedded>, EngineError> {
        let mut out = HashMap::new();
        if top.embedded_methods.is_empty() {
            return Ok(out);
        }
        let index = rt.index().clone();
        let mut seen: Vec<String> = Vec::new();
        let mut queue: Vec<String> = top.embedded_methods.iter().rev().cloned().collect();
        while let Some(path) = queue.pop() {
            let Some(m) = resolve_embedded(&index, &path) else {
                return Err(EngineError::MethodNotFound(format!(
                    "Embedded method {path} not found"
                )));
            };
            if m.fqname.eq_ignore_ascii_case(&top.fqname) {
                rt.log(
                    Level::Info,
                    format!("Skipping {}, cannot reference the top method", m.fqname),
                );
                continue;
            }
            if seen.iter().any(|s| s.eq_ignore_ascii_case(&m.fqname)) {
                rt.log(
                    Level::Info,
                    format!("Already loaded embedded method {}", m.fqname),
                );
                continue;
            }
            rt.log(Level::Info, format!("Loading embedded method {}", m.fqname));
            seen.push(m.fqname.clone());
            if !is_rhai(&m) {
                return Err(EngineError::InvalidMethod(format!(
                    "Embedded method [{}] is written in {}, which automate does not run: port it \
                     to Rhai (see docs/porting-ruby-methods.md)",
                    m.fqname, m.language
                )));
            }
            let body = m.body.as_deref().unwrap_or("");
            let ast = match self.compile(body) {
                Ok(a) => a,
                Err(e) => {
                    let (line, col) = position(e.position());
                    return Err(EngineError::InvalidMethod(format!(
                        "Embedded method [{}] does not compile: {} at line {line}, position {col}",
                        m.fqname,
                        e.err_type()
                    )));
                }
            };
            let entry = Embedded {
                fqname: m.fqname.clone(),
                ast,
            };
            for key in import_names(&path, &m) {
                out.entry(key).or_insert_with(|| entry.clone());
            }
            queue.extend(m.embedded_methods.iter().rev().cloned());
        }
        Ok(out)
    }
}

fn content_hash(body: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    body.hash(&mut h);
    h.finish()
}

fn is_rhai(m: &MethodDef) -> bool {
    m.location.eq_ignore_ascii_case("inline") && m.language.eq_ignore_ascii_case("rhai")
}

fn position(p: Position) -> (usize, usize) {
    (p.line().unwrap_or(0), p.position().unwrap_or(0))
}

/// The names an embedded method can be imported by: its method name, the
/// path as written, and its fully-qualified name (lower-cased).
fn import_names(path: &str, m: &MethodDef) -> Vec<String> {
    let mut names = vec![
        lower(&m.name).into_owned(),
        lower(path.trim().trim_start_matches('/')).into_owned(),
        lower(m.fqname.trim_start_matches('/')).into_owned(),
    ];
    names.dedup();
    names
}

/// `/ns/Class/method` (partial, with overlay) or `Domain/ns/Class/method`
/// (that domain first, then overlay).
fn resolve_embedded(index: &Index, path: &str) -> Option<Arc<MethodDef>> {
    let p = path.trim();
    let partial = p.starts_with('/');
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() < 2 {
        return None;
    }
    let n = segs.len();
    let (method, class, ns) = (segs[n - 1], segs[n - 2], segs[..n - 2].join("/"));
    if !partial {
        if let Some(m) = index.class(&ns, class).and_then(|c| c.method(method)) {
            return Some(m.clone());
        }
        let without_domain = ns.split_once('/').map_or("", |(_, rest)| rest);
        if let Some(m) = index.resolve_method(without_domain, class, method) {
            return Some(m.clone());
        }
    }
    index.resolve_method(&ns, class, method).cloned()
}

/// Serves `import "<embedded method>"` from the running call's embeds.
struct EmbeddedResolver;

impl rhai::ModuleResolver for EmbeddedResolver {
    fn resolve(
        &self,
        engine: &rhai::Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let key = lower(path.trim().trim_start_matches('/')).into_owned();
        enum Found {
            Loaded(SharedModule),
            Circular,
            Load(Embedded),
            Missing,
        }
        let found = evm::with_frame(|f| {
            let Some(e) = f.embedded.get(&key) else {
                return Found::Missing;
            };
            if let Some(m) = f.loaded.get(&e.fqname) {
                return Found::Loaded(m.clone());
            }
            if f.loading.contains(&e.fqname) {
                return Found::Circular;
            }
            f.loading.push(e.fqname.clone());
            Found::Load(e.clone())
        });
        let embedded = match found {
            Some(Found::Loaded(m)) => return Ok(m),
            Some(Found::Load(e)) => e,
            Some(Found::Circular) => {
                return Err(evm::runtime_error(format!(
                    "circular import of embedded method [{path}]"
                )))
            }
            Some(Found::Missing) | None => {
                return Err(Box::new(EvalAltResult::ErrorRuntime(
                    Dynamic::from(format!(
                        "Module not found: {path} (only the method's embedded_methods can be \
                         imported)"
                    )),
                    pos,
                )))
            }
        };
        let result = rhai::Module::eval_ast_as_new(rhai::Scope::new(), &embedded.ast, engine);
        evm::with_frame(|f| f.loading.retain(|l| l != &embedded.fqname));
        let module: SharedModule = result
            .map_err(|e| {
                Box::new(EvalAltResult::ErrorInModule(
                    embedded.fqname.clone(),
                    e,
                    pos,
                ))
            })?
            .into();
        evm::with_frame(|f| {
            f.loaded.insert(embedded.fqname.clone(), module.clone());
        });
        Ok(module)
    }
}

/// The innermost error of a chain of function and module calls, with
/// where it happened.
fn describe(err: &EvalAltResult, limits: &RhaiLimits) -> (String, Position, Vec<String>) {
    let mut e = err;
    let mut via = Vec::new();
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, _) => {
                if src.is_empty() {
                    via.push(format!("in function {name}"));
                } else {
                    via.push(format!("in function {name} of {src}"));
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, _) => {
                via.push(format!("in embedded method {name}"));
                e = inner;
            }
            _ => break,
        }
    }
    let pos = e.position();
    let message = match e {
        EvalAltResult::ErrorTerminated(tag, _) if tag.is::<TimeUp>() => format!(
            "Method exceeded its time limit of {}",
            limits
                .timeout
                .map(|t| format!("{:?}", t))
                .unwrap_or_default()
        ),
        EvalAltResult::ErrorTerminated(tag, _) if tag.is::<MemoryUp>() => format!(
            "Method exceeded its memory limit of {} MiB",
            limits.max_memory >> 20
        ),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "Method exceeded its limit of {} operations",
            limits.max_operations
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "Method exceeded its limit of {} nested function calls",
            limits.max_call_levels
        ),
        EvalAltResult::ErrorFunctionNotFound(sig, _)
            if super::service_model::no_method_text(sig).is_some() =>
        {
            super::service_model::no_method_text(sig).unwrap_or_default()
        }
        EvalAltResult::ErrorRuntime(v, _) => {
            if v.is_string() {
                v.clone().into_string().unwrap_or_default()
            } else {
                format!("uncaught exception: {v}")
            }
        }
        other => {
            let text = other.to_string();
            let suffix = format!(" ({pos})");
            match text.strip_suffix(&suffix) {
                Some(t) if !pos.is_none() => t.to_string(),
                _ => text,
            }
        }
    };
    (message, pos, via)
}

impl ScriptRunner for RhaiRunner {
    fn run(
        &self,
        rt: &mut Runtime<'_>,
        obj: ObjectId,
        method: &MethodDef,
        inputs: &Attributes,
    ) -> Result<MethodRc, EngineError> {
        let compiled = match &method.body {
            Some(body) => self.compile_shared(body),
            None => self.compile(""),
        };
        let ast = match compiled {
            Ok(ast) => ast,
            Err(e) => {
                let (line, col) = position(e.position());
                rt.log(
                    Level::Error,
                    format!(
                        "<AEMethod [{}]> {} at line {line}, position {col}",
                        method.fqname,
                        e.err_type()
                    ),
                );
                return Ok(MethodRc::Unknown(1));
            }
        };
        let embedded = self.embedded(rt, method)?;
        let frame = Frame {
            call: self.next_call.fetch_add(1, Ordering::Relaxed),
            rt: rt as *mut Runtime<'_> as *mut (),
            obj,
            inputs: inputs.clone(),
            inputs_map: None,
            deadline: self
                .limits
                .timeout
                .and_then(|t| Instant::now().checked_add(t)),
            budget: rt.budget().clone(),
            mem_start: automate_core::alloc::thread_net_bytes(),
            embedded,
            loaded: HashMap::new(),
            loading: Vec::new(),
            outbound: self.outbound.load_full(),
        };
        let guard = evm::push_frame(frame);
        let mut scope = rhai::Scope::new();
        let result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
        drop(guard);
        // The budget ran out inside the method (a native's check or the
        // progress hook): the instantiation stops, whatever the script did.
        if let Some(e) = rt.budget().tripped() {
            rt.report_budget();
            rt.log(
                Level::Error,
                format!("<AEMethod [{}]> stopped: {e}", method.fqname),
            );
            return Err(EngineError::Budget(e));
        }
        match result {
            Ok(v) => Ok(match v.as_int() {
                Ok(code) => MethodRc::from_code(code),
                Err(_) => MethodRc::Ok,
            }),
            Err(err) => {
                let (message, pos, via) = describe(&err, &self.limits);
                let (line, col) = position(pos);
                let mut text = format!(
                    "<AEMethod [{}]> {message} at line {line}, position {col}",
                    method.fqname
                );
                for v in via.iter().rev() {
                    text.push_str(&format!(" ({v})"));
                }
                rt.log(Level::Error, text);
                Ok(MethodRc::Unknown(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiling_is_bounded_in_size_depth_and_functions() {
        let runner = RhaiRunner::new();
        let big = format!("let x = 1;\n{}", "x += 1;\n".repeat(MAX_SCRIPT_BYTES / 8));
        let err = runner.compile(&big).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("method body")),
            "{err:?}"
        );
        for deep in [
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}{}", "{".repeat(100_000), "}".repeat(100_000)),
            format!("let a = {}1{};", "[".repeat(100_000), "]".repeat(100_000)),
            format!("{}1", "-".repeat(100_000)),
            "if true { ".repeat(50_000),
        ] {
            let err = runner
                .compile(&deep)
                .err()
                .map(|e| e.err_type().to_string());
            assert!(err.is_some(), "compiled {} bytes of nesting", deep.len());
        }
        let many: String = (0..=MAX_SCRIPT_FUNCTIONS)
            .map(|i| format!("fn f{i}() {{ {i} }}\n"))
            .collect();
        let err = runner
            .compile(&many)
            .err()
            .map(|e| e.err_type().to_string());
        assert!(
            err.is_some_and(|e| e.contains("functions")),
            "many functions"
        );
        assert!(runner.compile("fn f() { 1 } f()").is_ok());
    }
}
