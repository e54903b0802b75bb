#!/usr/bin/env python3
"""Writes the hostile-methods datastore (HOSTILE/Hostile/Methods) that
tests/it/hostile.rs runs. Each instance runs one method; every method but
`normal` and `reentrant_ok` is hostile. Run from this directory."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from aeyaml import class_yaml, domain_yaml, instance_yaml, method_yaml, namespace_yaml, schema

DOMAIN = "HOSTILE/Hostile/Methods.class"

# name -> Rhai body
METHODS = {
    "normal": 'evm.root["served"] = "yes";\n',
    "while_true": "while true {\n}\n",
    "mutual_recursion": "fn ping(n) {\n    pong(n + 1)\n}\nfn pong(n) {\n    ping(n + 1)\n}\nping(0);\n",
    "huge_array": "let a = [];\na.pad(50_000_000, 0);\nevm.root[\"len\"] = a.len();\n",
    "huge_map": "let m = #{};\nfor i in 0..110_000 {\n    m[`k${i}`] = i;\n}\nevm.root[\"len\"] = m.len();\n",
    "split_bomb": "let s = \"x\";\ns.pad(1_000_000, 'x');\nlet parts = s.split(\"\");\nevm.root[\"len\"] = parts.len();\n",
    "strings_in_array": "let a = [];\nloop {\n    let s = \"x\";\n    s.pad(1_000_000, 'x');\n    a.push(s);\n}\n",
    "strings_in_map": "let m = #{};\nlet i = 0;\nloop {\n    let s = \"y\";\n    s.pad(1_000_000, 'y');\n    m[`k${i}`] = s;\n    i += 1;\n}\n",
    "concat_bomb": "let s = \"ab\";\nfor i in 0..64 {\n    s = s + s + s;\n}\nevm.root[\"len\"] = s.len();\n",
    "append_loop": "let s = \"\";\nloop {\n    s += \"0123456789abcdef0123456789abcdef\";\n}\n",
    "nested_eval": "let code = \"40 + 2\";\nlet v = eval(code);\nevm.root[\"v\"] = v;\n",
    "throws_map": "throw #{ code: 42, reason: \"hostile\" };\n",
    "throws_late": "let n = 0;\nfor i in 0..1000 {\n    n += i;\n}\nif n > 0 {\n    throw `failed after ${n}`;\n}\n",
    "missing_attr_chain": "let name = evm.root[\"no_such_vm\"].name;\nevm.root[\"name\"] = name.to_upper();\n",
    "missing_object": "let vm = evm.vmdb(\"vm\", 424242);\nevm.root[\"name\"] = vm.name.len();\n",
    "import_etc_passwd": "import \"/etc/passwd\" as p;\nevm.root[\"leak\"] = p;\n",
    "import_relative": "import \"../../../../../../etc/hostname\" as h;\nevm.root[\"leak\"] = h;\n",
    "import_datastore_method": "import \"/Hostile/Methods/normal\" as n;\nevm.root[\"leak\"] = \"imported\";\n",
    "overflow": "let x = 9223372036854775807;\nlet y = x + 1;\nevm.root[\"y\"] = y;\n",
    "divide_by_zero": "let zero = 0;\nevm.root[\"q\"] = 1 / zero;\n",
    "deep_nesting": "let v = " + "[" * 5000 + "]" * 5000 + ";\n",
    # One line of 200 KB: a sum too deep for the expression limit.
    "long_line": "let x = " + " + ".join(["1"] * 40000) + ";\n",
    # One very long line of statements that runs, then throws at its end.
    "long_line_throws": "let x = 0; " + "x += 1; " * 25000 + "throw `x reached ${x}`;\n",
    "reentrant": 'evm.instantiate("/Hostile/Methods/reentrant");\nthrow "the re-entrant instantiation came back";\n',
}

# name -> (method, extra fields)
INSTANCES = {name: name for name in METHODS}


def w(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


w("HOSTILE/__domain__.yaml",
  domain_yaml("HOSTILE", "hostile Rhai methods (tests/it/hostile.rs)", 10))
w("HOSTILE/Hostile/__namespace__.yaml", namespace_yaml("Hostile"))
w(DOMAIN + "/__class__.yaml", class_yaml(
    "Methods", schema([{"aetype": "method", "name": "execute"}]),
    description="one hostile method per instance"))
for name, body in METHODS.items():
    w(f"{DOMAIN}/__methods__/{name}.rhai", body)
    w(f"{DOMAIN}/__methods__/{name}.yaml", method_yaml(name))
for name, method in INSTANCES.items():
    w(f"{DOMAIN}/{name}.yaml", instance_yaml(name, [("execute", method)]))
