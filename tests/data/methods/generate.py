#!/usr/bin/env python3
"""Regenerates tests/data/methods/spec (the datastore of tests/it/methods.rs).

The YAML follows the export layout (19-key fields, Psych-style quoting of the
values used here). Edit the tables below, run `python3 generate.py`, commit both.
"""
import os, shutil, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from aeyaml import q, field, schema, domain_yaml, namespace_yaml, class_yaml, method_yaml, instance_yaml
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'spec')
if os.path.exists(ROOT): shutil.rmtree(ROOT)
def w(path, text):
    full = os.path.join(ROOT, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as fh: fh.write(text)
def domain(name, prio):
    w(f'{name}/__domain__.yaml', domain_yaml(name, 'methods test domain', prio))
def namespace(path):
    w(f'{path}/__namespace__.yaml', namespace_yaml(path.split('/')[-1]))
def klass(path, name, fields):
    w(f'{path}/{name}.class/__class__.yaml', class_yaml(name, schema(fields)))
def instance(path, cls, name, values):
    fn = '_missing' if name == '.missing' else name.lower()
    w(f'{path}/{cls}.class/{fn}.yaml', instance_yaml(name, values))
def method(path, cls, name, body=None, language='rhai', location='inline', inputs=(), embeds=()):
    ins = '\n'.join(field(dict(f, aetype=None), i+1) for i, f in enumerate(inputs))
    emb = ''
    if embeds:
        emb = '\n    embedded_methods:' + ''.join('\n    -' + q(e) for e in embeds)
    w(f'{path}/{cls}.class/__methods__/{name}.yaml',
      method_yaml(name, language, location, emb, (chr(10) + ins) if ins else ' []'))
    if body is not None:
        ext = 'rhai' if language == 'rhai' else 'rb'
        w(f'{path}/{cls}.class/__methods__/{name}.{ext}', body)

D = 'SPEC_DOMAIN'
domain(D, 10)
namespace(f'{D}/EVM')
E = f'{D}/EVM'
klass(E, 'AUTOMATE', [
    {'aetype': 'attribute', 'name': 'attr1'},
    {'aetype': 'attribute', 'name': 'num'},
    {'aetype': 'method', 'name': 'meth1'},
    {'aetype': 'relationship', 'name': 'rel1'},
    {'aetype': 'method', 'name': 'meth2'},
])
A = 'AUTOMATE'
rhai = {
 'test': '''// reference §10 item 28
evm.root["namespace"] = evm.current_namespace;
evm.root["class"] = evm.current_class;
evm.root["instance"] = evm.current_instance;
evm.root["message"] = evm.current_message;
evm.root["method"] = evm.current_method();
''',
 'exit_ok': 'exit(MIQ_OK);\n',
 'exit_warn': 'exit(MIQ_WARN);\n',
 'exit_stop': 'evm.log("info", "stopping");\nexit(MIQ_STOP);\nevm.log("info", "not reached");\n',
 'exit_abort': 'exit(MIQ_ABORT);\n',
 'exit_unknown': 'exit(3);\n',
 'returns_warn': 'let rc = MIQ_WARN;\nreturn rc;\n',
 'throws': 'let x = 1;\nthrow "boom";\n',
 'infinite': 'let n = 0;\nloop {\n    n += 1;\n}\n',
 'recursion': 'fn down(n) {\n    down(n + 1)\n}\ndown(0);\n',
 'huge_string': 'let s = "x".pad(1_000_000_000, \'x\');\nevm.root["len"] = s.len();\n',
 'doubling': 'let s = "x";\nloop {\n    s += s;\n}\n',
 'uses_eval': 'let v = eval("40 + 2");\n',
 'missing_attr': 'let v = evm.root["no_such_attribute"];\nevm.root["type"] = type_of(v);\nlet n = v.len();\n',
 'undefined_var': 'let v = no_such_variable + 1;\n',
 'broken': 'let x = ;\n',
 'needs_input': 'evm.root["num_seen"] = evm.inputs["num"];\n',
 'add': 'evm.root["sum"] = evm.inputs["num1"] + evm.inputs["num2"];\n',
 'api': '''// the evm API
let root = evm.root;
root["seen_x"] = root["x"];
evm.object["on_object"] = "yes";
evm.root.dotted = "via property";
evm.log("warn", `x is ${root["x"]}`);
evm.set_state_var("count", 41);
evm.set_state_var("count", evm.get_state_var("count") + 1);
root["has_count"] = evm.state_var_exist("count");
root["has_other"] = evm.state_var_exist("other");
let child = evm.instantiate("/EVM/AUTOMATE/child");
root["child_attr"] = child["attr1"];
root["child_name"] = child.name;
let bad = evm.instantiate("/EVM/NO_SUCH_CLASS/x");
root["bad_is_unit"] = type_of(bad) == "()";
root["invalid_is_unit"] = type_of(evm.instantiate("miqaedb:A/EVM")) == "()";
let vm = evm.vmdb("vm", 1000000000029);
root["vm_name"] = vm.name;
root["vm_name_index"] = vm["name"];
root["vm_obj"] = vm;
root["vm_missing"] = type_of(evm.vmdb("vm", 42)) == "()";
let found = evm.vmdb_where("vm", "name", "web01");
root["found"] = found.len();
root["found_by"] = evm.vmdb("vm").find_by("name", "web01").id;
root["parent_is_unit"] = type_of(evm.parent) == "()";
root["ae_result"] = "retry";
root["in_root"] = "x" in root;
''',
 'child_method': 'evm.object["from_child"] = evm.current_instance;\nevm.root["child_ran"] = true;\n',
 'top_embeds': '''import "nested" as nested;
import "util" as util;
evm.root["greeting"] = util::greet("Ada");
evm.root["twice"] = nested::twice("Bob");
util::note("from util");
''',
 'util': '''fn greet(name) {
    `Hello, ${name}`
}
fn note(msg) {
    evm.log("info", msg);
}
''',
 'nested': '''import "util" as u;
fn twice(name) {
    u::greet(name) + "!"
}
''',
 'circ_a': 'import "circ_b" as b;\nfn a() { "a" }\n',
 'circ_b': 'fn b() { "b" }\n',
 'uses_circ': 'evm.root["circ"] = "ran";\n',
 'self_ref': 'evm.root["self_ref"] = "ran";\n',
 'uses_missing': 'evm.root["never"] = true;\n',
 'import_other': 'import "util" as util;\n',
 'import_loop_a': 'import "import_loop_b" as b;\n',
 'import_loop_b': 'import "import_loop_a" as a;\n',
 'uses_import_loop': 'import "import_loop_a" as a;\n',
 'raise': 'let vm = evm.vmdb("vm", 1000000000029);\nevm.root["raised"] = evm.raise_evm_event("vm_start", vm, #{ "extra": "1" });\nevm.root["not_raised"] = type_of(evm.raise_evm_event("vm_bogus", vm));\n',
}
embeds = {
 'top_embeds': ['/EVM/LIB/nested', '/EVM/LIB/util', '/EVM/LIB/util'],
 'uses_circ': ['/EVM/LIB/circ_a'],
 'self_ref': ['/EVM/AUTOMATE/self_ref'],
 'uses_missing': ['/EVM/LIB/nope'],
 'uses_import_loop': ['/EVM/LIB/import_loop_a'],
}
lib = {'util', 'nested', 'circ_a', 'circ_b', 'import_loop_a', 'import_loop_b'}
lib_embeds = {'nested': ['/EVM/LIB/util'], 'circ_a': ['/EVM/LIB/circ_b'], 'circ_b': ['/EVM/LIB/circ_a'], 'import_loop_a': ['/EVM/LIB/import_loop_b']}
klass(E, 'LIB', [{'aetype': 'attribute', 'name': 'attr1'}])
for name, body in rhai.items():
    if name in lib:
        method(E, 'LIB', name, body, embeds=lib_embeds.get(name, ()))
        continue
    ins = ()
    if name == 'needs_input':
        ins = [{'name': 'num', 'datatype': 'integer'}]
    if name == 'add':
        ins = [{'name': 'num1', 'datatype': 'integer', 'default_value': '1'}, {'name': 'num2', 'datatype': 'integer'}]
    method(E, A, name, body, inputs=ins, embeds=embeds.get(name, ()))
    if name not in ('child_method',):
        instance(E, A, name, [('meth1', name)])
method(E, A, 'legacy', '$evm.log(:info, "ruby")\nexit MIQ_OK\n', language='ruby')
instance(E, A, 'legacy', [('meth1', 'legacy')])
method(E, A, 'bogus_builtin', None, language='ruby', location='builtin')
instance(E, A, 'bogus_builtin', [('meth1', 'bogus_builtin')])
instance(E, A, 'no_method', [('meth1', 'no_such_method')])
instance(E, A, 'log_object', [('attr1', 'shown'), ('meth1', 'Log_Object')])
instance(E, A, 'test1', [('meth1', 'test')])
instance(E, A, 'child', [('attr1', 'from the child'), ('meth1', 'child_method')])
instance(E, A, 'method_uri', [('rel1', 'method:///add?num2=3')])
instance(E, A, 'method_uri_missing', [('rel1', 'miqaemethod:///missing')])
instance(E, A, 'missing_input_default', [('num', '7'), ('meth1', 'needs_input')])
instance(E, A, 'after_throw', [('meth1', 'throws'), ('meth2', 'exit_ok')])
instance(E, A, 'simple', [('attr1', 'hello'), ('meth1', 'exit_ok')])

klass(E, 'SM', [
    {'aetype': 'state', 'name': 'state1'},
    {'aetype': 'state', 'name': 'state2'},
])
method(E, 'SM', 'boom', 'throw "state boom";\n')
method(E, 'SM', 'spin', 'loop { }\n')
method(E, 'SM', 'on_err', 'evm.root["on_error_ran"] = evm.root["ae_result"];\n')
method(E, 'SM', 'after', 'evm.root["after_ran"] = true;\n')
method(E, 'SM', 'printer', 'print("hello from print");\nevm.root["where"] = evm.object("/").name;\n')
instance(E, 'SM', 'sm_boom', [('state1', {'value': 'METHOD::boom', 'on_error': 'on_err'}), ('state2', 'METHOD::after')])
instance(E, 'SM', 'sm_limit', [('state1', {'value': 'METHOD::spin', 'on_error': 'on_err'}), ('state2', 'METHOD::after')])
instance(E, 'SM', 'sm_print', [('state1', 'METHOD::printer')])
klass(E, 'CHAIN', [{'aetype': 'method', 'name': 'meth1'}])
method(E, 'CHAIN', 'next', '''// Instantiates the next link of the chain: Rhai -> evm.instantiate -> Rhai ...
let i = parse_int(evm.current_instance.sub_string(1));
let last = parse_int(evm.root["last"]);
if i < last {
    let child = evm.instantiate(`/EVM/CHAIN/c${i + 1}`);
    if type_of(child) == "()" {
        throw `link ${i + 1} failed`;
    }
} else {
    evm.root["deepest"] = i;
}
''')
for i in range(64):
    instance(E, 'CHAIN', f'c{i}', [('meth1', 'next')])
