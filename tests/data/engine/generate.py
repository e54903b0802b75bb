#!/usr/bin/env python3
"""Writes the datastores of tests/it/engine.rs in ManageIQ's YAML export layout.

Each directory next to this script is one datastore root (domain directories
inside). The shapes follow ManageIQ's own export files (19 keys per schema
field, `object_type`/`version`/`object` envelopes) and the test data of
ManageIQ/manageiq-automation_engine `spec/data` (Apache-2.0) that the tests
port. Ruby method bodies of the specs are replaced by builtins registered by
the tests, or by `language: rhai` methods run by the test's ScriptRunner.

Run it from anywhere: `python3 tests/data/engine/generate.py`. It rewrites
every directory it owns and nothing else.
"""

import json
import os
import re
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

FIELD_KEYS = [
    "aetype", "name", "display_name", "datatype", "priority", "owner",
    "default_value", "substitute", "message", "visibility", "collect", "scope",
    "description", "condition", "on_entry", "on_exit", "on_error",
    "max_retries", "max_time",
]
PLAIN = re.compile(r"^[A-Za-z_./$][A-Za-z0-9_ ./:$-]*$")
KEYWORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def scalar(v):
    """A YAML scalar: nil is empty, strings are plain when safe."""
    if v is None:
        return ""
    if v is True:
        return " true"
    if v is False:
        return " false"
    if isinstance(v, int):
        return " %d" % v
    s = str(v)
    if (PLAIN.match(s) and s.lower() not in KEYWORDS and not s.endswith(":")
            and ": " not in s and " #" not in s and s == s.strip()):
        return " " + s
    return " " + json.dumps(s)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class Store:
    """One datastore root."""

    def __init__(self, name):
        self.root = os.path.join(HERE, name)
        if os.path.isdir(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root)

    def domain(self, name, priority=100, enabled=True, source="user"):
        write(os.path.join(self.root, name, "__domain__.yaml"),
              "---\nobject_type: domain\nversion: 1.0\nobject:\n  attributes:\n"
              "    name:%s\n    description:\n    display_name:\n    priority:%s\n"
              "    enabled:%s\n    tenant_id: 1\n    source:%s\n    top_level_namespace:\n"
              % (scalar(name), scalar(priority), scalar(enabled), scalar(source)))
        return Domain(self, name)


class Domain:
    def __init__(self, store, name):
        self.store = store
        self.name = name
        self.namespaces = set()

    def _ns(self, ns):
        parts = ns.split("/")
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel in self.namespaces:
                continue
            self.namespaces.add(rel)
            write(os.path.join(self.store.root, self.name, rel, "__namespace__.yaml"),
                  "---\nobject_type: namespace\nversion: 1.0\nobject:\n  attributes:\n"
                  "    name:%s\n    description:\n    display_name:\n    priority:\n    enabled:\n"
                  % scalar(parts[i - 1]))

    def klass(self, ns, name, fields, inherits=None):
        """fields: list of (name, aetype, dict of other keys)."""
        self._ns(ns)
        k = Klass(os.path.join(self.store.root, self.name, ns, name + ".class"))
        out = ["---", "object_type: class", "version: 1.0", "object:", "  attributes:",
               "    description:", "    display_name:", "    name:" + scalar(name),
               "    type:", "    inherits:" + scalar(inherits), "    visibility:", "    owner:"]
        out.append("  schema:" if fields else "  schema: []")
        for prio, (fname, aetype, extra) in enumerate(fields, 1):
            out.extend(field_lines(fname, aetype, prio, extra))
        write(os.path.join(k.dir, "__class__.yaml"), "\n".join(out) + "\n")
        return k


def field_lines(fname, aetype, prio, extra):
    values = {"aetype": aetype, "name": fname, "datatype": "string", "priority": prio,
              "substitute": True, "message": "create"}
    values.update(extra)
    out = ["  - field:"]
    for key in FIELD_KEYS:
        out.append("      %s:%s" % (key, scalar(values.get(key))))
    return out


class Klass:
    def __init__(self, directory):
        self.dir = directory

    def instance(self, name, values=None, description=None):
        """values: dict field -> value string, or field -> dict of value keys."""
        out = ["---", "object_type: instance", "version: 1.0", "object:", "  attributes:",
               "    display_name:", "    name:" + scalar(name), "    inherits:",
               "    description:" + scalar(description)]
        values = values or {}
        out.append("  fields:" if values else "  fields: []")
        for fname, v in values.items():
            if not isinstance(v, dict):
                v = {"value": v}
            out.append("  - %s:" % fname)
            for key, val in v.items():
                out.append("      %s:%s" % (key, scalar(val)))
        fname = "_" + name[1:] if name.startswith(".") else name
        write(os.path.join(self.dir, fname.lower() + ".yaml"), "\n".join(out) + "\n")
        return self

    def method(self, name, location="builtin", data=None, inputs=(), language=None,
               scope="instance", body=None):
        """inputs: list of (name, dict of field keys)."""
        language = language or ("rhai" if location == "inline" else "ruby")
        out = ["---", "object_type: method", "version: 1.0", "object:", "  attributes:",
               "    name:" + scalar(name), "    display_name:", "    description:",
               "    scope:" + scalar(scope), "    language:" + scalar(language),
               "    location:" + scalar(location)]
        if data is not None:
            out.append("    data:" + scalar(data))
        out.append("  inputs:" if inputs else "  inputs: []")
        for prio, (iname, extra) in enumerate(inputs, 1):
            extra = dict(extra)
            extra.setdefault("message", "create")
            extra["aetype"] = None
            out.extend(field_lines(iname, None, prio, extra))
        write(os.path.join(self.dir, "__methods__", name + ".yaml"), "\n".join(out) + "\n")
        if body is not None:
            write(os.path.join(self.dir, "__methods__", name + ".rhai"), body)
        return self


def attr(name, **kw):
    return (name, "attribute", kw)


def rel(name, **kw):
    return (name, "relationship", kw)


def meth(name, **kw):
    return (name, "method", kw)


def assertion(name, **kw):
    return (name, "assertion", kw)


def state(name, **kw):
    return (name, "state", kw)


# ---------------------------------------------------------------------------
# item 06: attribute names fold case; instance values beat class defaults;
# ${miqaedb:...} reads another instance; password attributes.
s = Store("attributes")
d = s.domain("SPEC_DOMAIN")
k = d.klass("EVM", "AUTOMATE", [attr("aTTr1", display_name="Sample Attribute", datatype=None,
                                     default_value="frank"),
                                attr("password", datatype="password")])
k.instance("test1")
k.instance("test2", {"aTTr1": "TEST2"})
k.instance("test3", {"aTTr1": "Gregg ${miqaedb:///EVM/AUTOMATE/test2/attr1} Oleg"})
k.instance("test4", {"aTTr1": "${miqaedb:///EVM/AUTOMATE/test1/attr1}"})
k.instance("test_password", {"password": "v2:{DUb5th63TM+zIB6RhnTtVg==}"})

# ---------------------------------------------------------------------------
# item 07: relationships, wildcards, messages (spec/data/relation).
s = Store("relation")
d = s.domain("SPEC_DOMAIN")
k = d.klass("EVM", "AUTOMATE", [attr("attr1", datatype=None, default_value="frank"),
                                rel("rel1", datatype=None, default_value=""),
                                rel("rel2", datatype=None, default_value="", message="discover"),
                                meth("method1", datatype=None)])
k.instance("test1")
k.instance("test2", {"attr1": "miqaedb:/EVM/AUTOMATE/test1"})
k.instance("test3", {"attr1": "Gregg ${miqaedb:/EVM/AUTOMATE/test2/attr1} Oleg",
                     "rel1": "miqaedb:/EVM/AUTOMATE/test2"})
k.instance("test4", {"attr1": "${miqaedb:/EVM/AUTOMATE/test2/attr17}",
                     "rel1": "${miqaedb:/EVM/AUTOMATE/test2/attr1}"})
k.instance("test5a", {"attr1": "Discover Flavor1", "rel2": "miqaews:/..#DISCOVER_FLAVOR1"})
k.instance("test5b", {"attr1": "Discover Flavor2"})
k.instance("test_message1", {"rel1": "miqaedb:/EVM/AUTOMATE/test3",
                             "rel2": "miqaedb:/EVM/AUTOMATE/test5*"})
k.instance("test_wildcard", {"rel1": "miqaedb:/EVM/AUTOMATE/test5*"})

# ---------------------------------------------------------------------------
# item 08: a cycle test1 -> test4 -> test2 -> test1 (spec/data/miq_ae_engine_spec2).
s = Store("cyclical")
d = s.domain("SPEC_DOMAIN")
k = d.klass("CYCLICAL", "AUTOMATE", [attr("attr1", datatype=None, default_value="frank"),
                                     rel("rel1", datatype=None, default_value="")])
k.instance("test1", {"rel1": "miqaedb:///CYCLICAL/AUTOMATE/test4"})
k.instance("test2", {"rel1": "miqaedb:///CYCLICAL/AUTOMATE/test1"})
k.instance("test4", {"rel1": "miqaedb:///CYCLICAL/AUTOMATE/test2"})

# ---------------------------------------------------------------------------
# item 09: invalid paths (any datastore will do).
s = Store("invalid_path")
d = s.domain("A")
d.klass("EVM", "AUTOMATE", [attr("attr1")]).instance("test1")

# ---------------------------------------------------------------------------
# item 10: assertions (spec/data/miq_ae_engine_spec3, miq_ae_assertion_spec.rb).
s = Store("assertions")
d = s.domain("SPEC_DOMAIN")
k = d.klass("SYSTEM/EVM", "AUTOMATE", [assertion("assert1", datatype=None, default_value=""),
                                       rel("rel1", datatype=None, default_value="")])
k.instance("test1")
k.instance("test2", {"assert1": "false"})
k.instance("test3", {"assert1": "true"})
k.instance("test4", {"rel1": "miqaedb:///SYSTEM/EVM/AUTOMATE/test2"})
d = s.domain("Flintstones")
k = d.klass("A/C", "Kids", [attr("var1"), assertion("guard")])
for name, guard in [
        ("missing_object", "${/missing_object#var1}"),
        ("missing_attribute", "${/#var1}"),
        ("true", "true"),
        ("false", "false"),
        ("name_length", "${/#vm.name.length} >= 14"),
        ("name_unquoted", "${/#vm.name} != 'BammBammRubble'"),
        ("name_quoted", "'${/#vm.name}' == 'BammBammRubble'"),
        ("option", "${/#miq_provision_request.get_option(:number_of_vms)} == 999"),
        ("option_and", "${/#miq_provision_request.get_option(:number_of_vms)} == 999 && '${/#vm.name}' == 'BammBammRubble'"),
        ("option_or", "${/#miq_provision_request.get_option(:number_of_vms)} != 999 || '${/#vm.name}' == 'BammBammRubble'"),
        ("syntax", "'x' == "),
]:
    k.instance(name, {"var1": "ok", "guard": guard})
d = s.domain("Fred")
k = d.klass("X/Y", "Family", [rel("rel1")])
k.instance("Wilma", {"rel1": "/A/C/Kids/${/#kid}"})

# ---------------------------------------------------------------------------
# items 11 and 12: a missing instance without and with `.missing`.
s = Store("missing_instance")
d = s.domain("SPEC_DOMAIN")
k = d.klass("EVM", "MY_AUTOMATE", [attr("attr1", default_value="frank")])
k.instance("test1")
k.instance("test2")
d = s.domain("DOM1", priority=10)
k = d.klass("NS1", "CLASS1", [attr("var1")])
k.instance(".missing", {"var1": "${#_missing_instance}"})

# ---------------------------------------------------------------------------
# item 13: substitution (spec/data/substitution).
s = Store("substitution")
d = s.domain("SPEC_DOMAIN")
a = d.klass("EVM", "A", [attr("attr2"), attr("attr1", default_value="defaultA"), rel("rel1")])
a.instance("a1", {"rel1": "miqaedb:///EVM/B/b1"})
for n in ["a2", "a4", "a5", "a6", "a7", "a8"]:
    a.instance(n, {"attr1": n, "rel1": "miqaedb:///EVM/B/b" + n[1:]})
a.instance("a9", {"attr1": "a9", "rel1": "miqaedb:///EVM/B/b9?attr1=${#attr1}"})
a.instance("a10", {"attr2": "/SPEC_DOMAIN/EVM/B/b10", "attr1": "Pearl/Slaghoople",
                   "rel1": "miqaedb:///${#attr2}?attr3=${#attr1}"})
b = d.klass("EVM", "B", [attr("attr1", datatype=None, default_value="defaultB"),
                         attr("attr2", datatype=None, default_value="defaultB"),
                         rel("rel1", datatype=None, default_value="")])
b.instance("b1", {"attr1": "${A#attr1}"})
b.instance("b2", {"attr1": "${A#attr1}"})
b.instance("b3", {"attr1": "b3", "attr2": "${#attr1}"})
b.instance("b4", {"attr1": "${EVM/A#attr1}"})
b.instance("b5", {"attr1": "${/EVM/A#attr1}"})
b.instance("b6", {"attr1": "${EVMX/A#attr1}"})
b.instance("b7", {"attr1": "${BOGUS/EVM/A#attr1}"})
b.instance("b8", {"attr1": "${}"})
b.instance("b9", {"attr1": "foo"})
b.instance("b10", {"attr1": "Bamm Bamm Rubble"})

# ---------------------------------------------------------------------------
# item 14: substitution with method chains on stored objects.
s = Store("substitution_methods")
d = s.domain("LUIGI")
k = d.klass("A/C", "BARNEY", [attr("email"), attr("req_email"), attr("vm_name_length")])
k.instance("FRED", {"email": "${/#miq_request.get_option(:email).upcase}",
                    "req_email": "${/#user.email}",
                    "vm_name_length": "${/#vm.name.length}"})
k.instance("BROKEN", {"email": "${/#miq_request.no_such_method}"})

# ---------------------------------------------------------------------------
# items 15 and 16: Array:: and Class:: query args.
s = Store("args")
d = s.domain("SPEC_DOMAIN")
d.klass("EVM", "AUTOMATE", [attr("attr1", default_value="frank")]).instance("test1")

# ---------------------------------------------------------------------------
# item 17: null coalescing attributes.
s = Store("null_coalescing")
d = s.domain("LUIGI")
chain_default = "${/#var2} || ${XY/ABC#var2} || Bamm Bamm Rubble"
k = d.klass("A/C", "BARNEY", [
    attr("field1", datatype="null coalescing", default_value=chain_default),
    attr("field2", datatype="null coalescing", default_value=chain_default),
    attr("field3", datatype="null coalescing")])
k.instance("FRED", {"field1": "${/#var1} || ${XY/ABC#var2} || ${State_Var#my_id} || Pebbles",
                    "field2": None, "field3": None})

# ---------------------------------------------------------------------------
# items 18 and 20: method inputs (null-coalescing default, datatypes).
s = Store("method_inputs")
d = s.domain("TEST_DOMAIN")
k = d.klass("EVM", "AUTOMATE", [meth("execute")])
k.instance("test1", {"execute": "test"})
k.method("test", data="record_inputs",
         inputs=[("arg1", {"datatype": "null coalescing",
                           "default_value": "${#field1} || location"})])
k = d.klass("EVM", "CONVERT", [meth("execute")])
k.instance("test1", {"execute": "test"})
k.method("test", data="record_inputs", inputs=[
    ("flag", {"datatype": "boolean"}), ("flag2", {"datatype": "boolean"}),
    ("int", {"datatype": "integer"}), ("float", {"datatype": "float"}),
    ("symbol", {"datatype": "symbol"}), ("array", {"datatype": "array"})])

# ---------------------------------------------------------------------------
# item 19: vmdb datatypes.
s = Store("vmdb_datatypes")
d = s.domain("LUIGI")
k = d.klass("A/C", "BARNEY", [attr("vm", datatype="vm"), attr("user", datatype="user"),
                              attr("ems", datatype="ems")])
k.instance("FRED", {"vm": "1000000000029", "user": "1000000000001", "ems": "1000000000002"})
k.instance("BAD", {"vm": "1000000000029", "user": "1000000000001", "ems": "nada"})
k.instance("NIL", {"vm": "1000000000029", "user": "1000000000001", "ems": None})

# ---------------------------------------------------------------------------
# item 21: a class `inherits` naming a missing class is ignored.
s = Store("inheritance")
d = s.domain("LUIGI")
k = d.klass("A/C", "CLASS1", [attr("attr1", default_value="kept")],
            inherits="/LUIGI/A/C/missing")
k.instance("FRED")

# ---------------------------------------------------------------------------
# item 22: domain search for instances and methods (miq_ae_domain_search_spec.rb).
s = Store("domain_search")
for dom, prio in [("FRED", 10), ("BARNEY", 20)]:
    d = s.domain(dom, priority=prio)
    k = d.klass("FRED", "WILMA", [attr("domain", default_value=dom), meth("execute")])
    k.instance("DOGMATIX", {"execute": "OBELIX"})
    k.method("OBELIX", data="record_method_executed",
             inputs=[("executed", {"default_value": dom})])
    if dom == "FRED":
        k.instance("ASTERIX", {"execute": "OBELIX"})

# ---------------------------------------------------------------------------
# item 23: domain overlays (spec/data/domain_test.yaml).
s = Store("domain_overlays")
overlay_fields = [meth("overlay_method"), attr("attr1", default_value=""),
                  rel("connect_to", default_value="")]


def executed(k, name, who):
    k.method(name, data="record_method_executed", inputs=[("executed", {"default_value": who})])


for dom, prio, enabled in [("evm1", 40, True), ("evm2", 10, True)]:
    d = s.domain(dom, priority=prio, enabled=enabled)
    k = d.klass("test", "AUTOMATE", [meth("overlay_method"), rel("connect_to", default_value="")])
    k.instance(".missing", {"overlay_method": dom + "_missing_method"})
    executed(k, dom + "_missing_method", dom + "_missing_method")
d = s.domain("user", priority=20)
k = d.klass("evm", "AUTOMATE", overlay_fields)
k.instance("test1", {"overlay_method": "user_method"})
k.instance("test2", {"connect_to": "/root/evm/AUTOMATE/test3*"})
k.instance("test31", {"attr1": "test31"})
k.instance("test32", {"overlay_method": "user_method", "attr1": "test32"})
k.instance("test_wildcard", {"connect_to": "/evm/AUTOMATE/test3*"})
executed(k, "user_method", "user")
d = s.domain("root", priority=10)
k = d.klass("evm", "AUTOMATE", overlay_fields)
k.instance("test1", {"overlay_method": "root_method"})
k.instance("test2", {"connect_to": "/root/evm/AUTOMATE/test1"})
executed(k, "root_method", "root")
d = s.domain("inert", priority=10, enabled=False)
k = d.klass("evm", "AUTOMATE", overlay_fields)
k.instance("should_get_used", {"overlay_method": "inert_method", "attr1": "test32"})
k.instance("should_not_get_used", {"attr1": "test31"})
k.instance("test1", {"overlay_method": "inert_method"})
k.instance("test_wildcard", {"connect_to": "/evm/AUTOMATE/test3*"})
executed(k, "inert_method", "inert")

# ---------------------------------------------------------------------------
# item 24: method override (spec/data/method_override.yaml).
s = Store("method_override")
d = s.domain("RHT", priority=2)
k = d.klass("EVM", "SAMPLE", [attr("attr1", default_value="Flintstone"),
                              attr("attr2", default_value="Rubble"), meth("method1")])
k.instance("test2", {"method1": "evm2"})
k.method("EvM1", data="record_method_executed",
         inputs=[("executed", {"default_value": "TwinkleToes"})])
d = s.domain("MIQ", priority=1)
k = d.klass("EVM", "SAMPLE", [attr("attr1", default_value="Barney"),
                              attr("attr2", default_value="Fred"), meth("method1")])
k.instance("test1", {"method1": "evm1"})
k.method("EvM1", data="record_method_executed",
         inputs=[("executed", {"default_value": "miq"})])
k.method("EvM2", data="record_method_executed",
         inputs=[("executed", {"default_value": "${#attr1}"})])

# ---------------------------------------------------------------------------
# item 25: collect (spec/data/collect_data).
s = Store("collect")
d = s.domain("SPEC_DOMAIN")
months_collect = ("months = {description => month}; reverse = [month].reverse; sort = [month].sort; "
                  "rsort = [month].rsort; count = [month].count; max = [month].max; "
                  "min = [month].min; mean = [month].mean; stddev = [month].stdev; "
                  "variance = [month].variance")
k = d.klass("TEST", "COLLECT", [
    rel("random_number", datatype=None, message="get_random_number", collect="number"),
    rel("months", datatype=None, message="get_months", collect=months_collect),
    rel("weekdays", datatype=None, message="get_weekdays",
        collect="weekdays = {description => weekday}; sum = [weekday].sum")])
info = {"random_number": "/TEST/NUMBERS/${#environment}#create",
        "months": "/TEST/MONTHS/*#create", "weekdays": "/TEST/WEEKDAYS/*#create"}
k.instance("INFO", info)
info2 = dict(info)
info2["weekdays"] = {"value": info["weekdays"], "collect": "weekdays = [description]"}
k.instance("INFO2", info2)
months = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
k = d.klass("TEST", "MONTHS", [attr("month", datatype="integer"),
                               attr("description", datatype=None)])
for i, m in enumerate(months, 1):
    k.instance(m[:3].upper(), {"month": str(i), "description": m})
days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
k = d.klass("TEST", "WEEKDAYS", [attr("weekday", datatype="integer"),
                                 attr("description", datatype=None)])
for i, m in enumerate(days, 1):
    k.instance(m[:3].upper(), {"weekday": str(i), "description": m})
k = d.klass("TEST", "NUMBERS", [attr("number", datatype="integer", default_value="0")])
k.instance("dev", {"number": "3"})
k.instance("test", {"number": "5"})
k.instance(".missing", {"number": "1"})

# ---------------------------------------------------------------------------
# item 26: workspace object lookup (miq_ae_object_lookup_spec.rb).
s = Store("object_lookup")
d = s.domain("Dom1")
for ns, cls, inst in [("A/B", "CLASS1", "INSTANCE1"), ("C/D", "CLASS1", "INSTANCE1"),
                      ("E/F", "CLASS2", "INSTANCE2")]:
    d.klass(ns, cls, [attr("where", default_value=ns)]).instance(inst)
k = d.klass("ROOT", "LOOKUP", [
    rel("rel1"), rel("rel2"), rel("rel3"),
    attr("r1"), attr("r2"), attr("r3"), attr("r4"), attr("r5"), meth("execute")])
links = {"rel1": "/Dom1/A/B/CLASS1/INSTANCE1", "rel2": "/Dom1/C/D/CLASS1/INSTANCE1",
         "rel3": "/Dom1/E/F/CLASS2/INSTANCE2"}
start = dict(links)
start.update({"r1": "${/Dom1/A/B/class1/instance1#where}",
              "r2": "${Dom1/A/B/class1/instance1#where}",
              "r3": "${/C/d/ClASs1/instance1#where}",
              "r4": "${C/d/class1/instance1#where}",
              "r5": "${/C/d/ClASs1/*#where}",
              "execute": "lookup"})
k.instance("start", start)
k.instance("not_found", dict(links, r1="${/Dom5/A/B/class1/instance1#where}"))
k.instance("too_short", dict(links, r1="${A/B#where}"))
k.method("lookup", data="lookup_paths")

# ---------------------------------------------------------------------------
# item 27: methods (spec/data/method2).
s = Store("methods")
d = s.domain("SPEC_DOMAIN")
k = d.klass("EVM/SYSTEM/TEST", "FOO", [rel("snmp_parms", datatype=None),
                                       attr("tester", datatype=None, default_value="Oleg"),
                                       meth("testmeth", datatype=None), rel("rel1", datatype=None)])
k.instance("test_default")
k.instance("test_internal", {"testmeth": "log_object"})
k.instance("test_builtin_with_different_case", {"testmeth": "Log_Object"})
k.instance("test_missing", {"rel1": "miqaemethod:///missing?num1=2&num2=3"})
k.instance("test_missing_parameter", {"rel1": "method:///foo?num2=3"})
k.instance("test_method_uri", {"rel1": "method:///foo?num1=2"})
k.instance("test_non_existent_internal", {"testmeth": "non_existent(num1=>2,num2=>3)"})
k.instance("test_call_args", {"testmeth": "foo(num1 => 7, num2 => tester)"})
k.instance("test_bad_syntax", {"testmeth": "foo(num1 => 7"})
k.method("foo", data="record_inputs", inputs=[("num1", {"datatype": "integer"}),
                                             ("num2", {"datatype": "integer", "default_value": "0"})])
k.method("non_existent")

# ---------------------------------------------------------------------------
# item 28: what a method sees as current (spec/data/miq_ae_method_spec4).
s = Store("method_current")
d = s.domain("SPEC_DOMAIN")
k = d.klass("EVM", "AUTOMATE", [meth("method1", datatype=None)])
k.instance("test1", {"method1": "test"})
k.method("test", data="record_current")

# ---------------------------------------------------------------------------
# item 29: method exit codes (Rhai methods run by the test's ScriptRunner).
EXIT_WITH = """// Exits with the return code given in the input `rc`: MIQ_OK (0), MIQ_WARN (4),
// MIQ_STOP (8), MIQ_ABORT (16) or any other number (an unknown code).
// tests/it/engine.rs runs this method with a native ScriptRunner.
evm.inputs["rc"]
"""
s = Store("exit_codes")
d = s.domain("SPEC_DOMAIN")
k = d.klass("EVM", "EXIT", [meth("execute"), attr("after", default_value="reached")])
for name, rc in [("ok", 0), ("warn", 4), ("stop", 8), ("abort", 16), ("unknown", 3)]:
    k.instance(name, {"execute": "exit_with(rc => %d)" % rc})
k.method("exit_with", location="inline", body=EXIT_WITH,
         inputs=[("rc", {"datatype": "integer"})])
k = d.klass("EVM", "PARENT", [rel("rel1"), attr("after", default_value="parent went on")])
k.instance("stop_child", {"rel1": "/EVM/EXIT/stop"})

# ---------------------------------------------------------------------------
# item 31: state machine steps (engine/miq_ae_state_machine_steps_spec.rb).
COMMON_METHOD = """// The `standard` method of miq_ae_state_machine_steps_spec.rb: records the
// instance it ran for, then applies its inputs. tests/it/engine.rs runs it
// with a native ScriptRunner.
let inputs = evm.inputs;
let done = evm.root["states_executed"];
if done == () { done = []; }
done.push(evm.current_instance);
evm.root["states_executed"] = done;
evm.root["ae_result"] = inputs["ae_result"];
if inputs["ae_next_state"] != "" { evm.root["ae_next_state"] = inputs["ae_next_state"]; }
if inputs["raise"] != "" { throw inputs["raise"]; }
if inputs["exit_code"] != "" { return inputs["exit_code"]; }
MIQ_OK
"""
COMMON_STATE_METHOD = """// The `common_state_method` of miq_ae_state_machine_steps_spec.rb: records
// the state in `step_<step>`, then applies its inputs. tests/it/engine.rs
// runs it with a native ScriptRunner.
let inputs = evm.inputs;
let step = "step_" + evm.root["ae_state_step"];
let done = evm.root[step];
if done == () { done = []; }
done.push(evm.root["ae_state"]);
evm.root[step] = done;
evm.root["ae_result"] = inputs["ae_result"];
if inputs["ae_next_state"] != "" { evm.root["ae_next_state"] = inputs["ae_next_state"]; }
if inputs["raise"] != "" { throw inputs["raise"]; }
if inputs["exit_code"] != "" { return inputs["exit_code"]; }
MIQ_OK
"""
STEP_INPUTS = [("ae_result", {"default_value": "ok"}), ("ae_next_state", {"default_value": ""}),
               ("raise", {"default_value": ""}),
               ("exit_code", {"datatype": "integer", "default_value": ""})]
s = Store("state_machine_steps")
d = s.domain("SPEC_DOMAIN")
k = d.klass("NS1", "MY_METHOD_CLASS", [attr("ae_result", default_value="ok"),
                                       attr("ae_next_state"), attr("raise"), meth("execute")])


def method_instance(name, **over):
    values = {"execute": "standard", "ae_result": "ok", "ae_next_state": "", "raise": ""}
    values.update(over)
    k.instance(name, values)


for n in ["instance1", "instance2", "instance3"]:
    method_instance(n)
method_instance("instance2_raise", **{"raise": "Intentionally raise an error"})
method_instance("instance2_error", ae_result="error")
method_instance("instance1_error", ae_result="error")
method_instance("instance1_next3", ae_next_state="state3")
method_instance("instance2_retry", ae_result="retry")
method_instance("instance2_async", ae_result="async_launch")
k.method("standard", location="inline", body=COMMON_METHOD, inputs=STEP_INPUTS)
sm = d.klass("NS1", "MY_STATE_MACHINE",
             [state("state%d" % i, max_retries="100") for i in (1, 2, 3)])
sm.method("common_state_method", location="inline", body=COMMON_STATE_METHOD,
          inputs=STEP_INPUTS)
ALL_STEPS = {"on_entry": "common_state_method", "on_exit": "common_state_method",
             "on_error": "common_state_method"}


def sm_instance(name, targets=("instance1", "instance2", "instance3"), **tweaks):
    values = {}
    for i, target in enumerate(targets, 1):
        v = {"value": "/SPEC_DOMAIN/NS1/MY_METHOD_CLASS/" + target}
        v.update(ALL_STEPS)
        v.update(tweaks.get("state%d" % i, {}))
        values["state%d" % i] = v
    sm.instance(name, values)


sm_instance("all_states")
sm_instance("state_raises", ("instance1", "instance2_raise", "instance3"))
sm_instance("state_error", ("instance1", "instance2_error", "instance3"))
sm_instance("goto_from_on_entry",
            state1={"on_entry": "common_state_method(ae_next_state => 'state3')"})
sm_instance("goto_from_on_exit",
            state1={"on_exit": "common_state_method(ae_next_state => 'state3')"})
sm_instance("goto_from_on_error", ("instance1_error", "instance2", "instance3"),
            state1={"on_error": "common_state_method(ae_next_state => 'state3', ae_result => 'continue')"})
sm_instance("goto_from_main", ("instance1_next3", "instance2", "instance3"))
sm_instance("on_entry_error", state2={"on_entry": "common_state_method(ae_result => 'error')"})
sm_instance("on_exit_error", state2={"on_exit": "common_state_method(ae_result => 'error')"})
sm_instance("continue_after_error", ("instance1", "instance2_error", "instance3"),
            state2={"on_error": "common_state_method(ae_result => 'continue')"})
sm_instance("skip_state", state1={"on_entry": "common_state_method(ae_result => 'skip')"})
sm_instance("missing_on_entry", state2={"on_entry": "does_not_exist(ae_result => 'skip')"})
sm_instance("missing_on_exit", state2={"on_exit": "does_not_exist(ae_result => 'skip')"})
sm_instance("retry_in_main_and_on_exit", ("instance1", "instance2_retry", "instance3"),
            state2={"on_exit": "common_state_method(ae_result => 'retry')"})
sm_instance("async_launch", ("instance1", "instance2_async", "instance3"),
            state2={"on_exit": "common_state_method(ae_result => 'retry')"})
sm_instance("retry_from_on_exit", state2={"on_exit": "common_state_method(ae_result => 'retry')"})
sm_instance("missing_on_error", ("instance1", "instance2_error", "instance3"),
            state2={"on_error": "does_not_exist(ae_result => 'skip')"})
sm_instance("goto_missing_state",
            state1={"on_entry": "common_state_method(ae_next_state => 'state_missing')"})
sm_instance("miq_stop", state1={"on_entry": "common_state_method(exit_code => 8)"})

# ---------------------------------------------------------------------------
# item 32: retries through re-delivery (engine/miq_ae_state_machine_retry_spec.rb).
s = Store("state_machine_retry")
d = s.domain("SPEC_DOMAIN")
k = d.klass("NS1", "MY_RETRY_CLASS", [meth("execute")])
for script in ["perpetual_retry", "state_var", "retry_server_affinity", "simpleton",
               "perpetual_restart", "perpetual_restart_with_next_state"]:
    k.instance(script, {"execute": script})
    k.method(script, data=script)
sm = d.klass("NS1", "MY_STATE_MACHINE", [state("state1", max_retries="1")])
for script in ["perpetual_retry", "state_var", "retry_server_affinity"]:
    sm.instance(script, {"state1": "/SPEC_DOMAIN/NS1/MY_RETRY_CLASS/" + script})
sm.instance("perpetual_retry_max_time", {"state1": {
    "value": "/SPEC_DOMAIN/NS1/MY_RETRY_CLASS/perpetual_retry", "max_time": "2"}})
multi = d.klass("NS1", "MY_MULTI_STATE_MACHINE", [state("state%d" % i) for i in (1, 2, 3)])
for third in ["perpetual_restart", "perpetual_restart_with_next_state"]:
    multi.instance(third, {"state1": "/SPEC_DOMAIN/NS1/MY_RETRY_CLASS/simpleton",
                           "state2": "/SPEC_DOMAIN/NS1/MY_RETRY_CLASS/simpleton",
                           "state3": "/SPEC_DOMAIN/NS1/MY_RETRY_CLASS/" + third})
top = d.klass("NS1", "TOP_OF_THE_WORLD", [rel("rel1")])
for script in ["perpetual_retry", "state_var", "retry_server_affinity", "perpetual_retry_max_time"]:
    top.instance(script, {"rel1": "/SPEC_DOMAIN/NS1/MY_STATE_MACHINE/" + script})
for third in ["perpetual_restart", "perpetual_restart_with_next_state"]:
    top.instance(third, {"rel1": "/SPEC_DOMAIN/NS1/MY_MULTI_STATE_MACHINE/" + third})

# ---------------------------------------------------------------------------
# item 33: nested state machines (engine/miq_ae_state_machine_multi_spec.rb).
MULTI_METHOD = """// The `standard` method of miq_ae_state_machine_multi_spec.rb: records the
// state it ran in, then applies its inputs. tests/it/engine.rs runs it with
// a native ScriptRunner.
let inputs = evm.inputs;
let done = evm.root["states_executed"];
if done == () { done = []; }
done.push(evm.root["ae_state"]);
evm.root["states_executed"] = done;
evm.root["ae_result"] = inputs["ae_result"];
if inputs["ae_next_state"] != "" { evm.root["ae_next_state"] = inputs["ae_next_state"]; }
if inputs["raise"] != "" { throw inputs["raise"]; }
MIQ_OK
"""
MULTI_STATE_METHOD = """// The `common_state_method` of miq_ae_state_machine_multi_spec.rb: records
// the state in `step_<step>`, checks that the state's saved maxima were
// restored (the state name ends in its max_retries), then applies its
// inputs. tests/it/engine.rs runs it with a native ScriptRunner.
let inputs = evm.inputs;
let step = "step_" + evm.root["ae_state_step"];
let done = evm.root[step];
if done == () { done = []; }
done.push(evm.root["ae_state"]);
evm.root[step] = done;
let parts = evm.root["ae_state"].split("_");
let max_retries = parse_int(parts[parts.len() - 1]);
if evm.root["ae_state_max_retries"] != max_retries { evm.root["ae_result"] = "error"; }
let current = evm.root["ae_result"];
if current != "retry" && current != "error" { evm.root["ae_result"] = inputs["ae_result"]; }
if inputs["ae_result"] == "continue" { evm.root["ae_result"] = inputs["ae_result"]; }
if inputs["ae_next_state"] != "" { evm.root["ae_next_state"] = inputs["ae_next_state"]; }
if inputs["raise"] != "" { throw inputs["raise"]; }
MIQ_OK
"""
MULTI_INPUTS = [("ae_result", {"default_value": "ok"}), ("ae_next_state", {"default_value": ""}),
                ("raise", {"default_value": ""})]
s = Store("state_machine_multi")
d = s.domain("SPEC_DOMAIN")
k = d.klass("NS1", "MY_METHOD_CLASS", [attr("ae_result", default_value="ok"),
                                       attr("ae_next_state"), attr("raise"), meth("execute")])
for n in ["instance1", "instance2", "instance3"]:
    k.instance(n, {"execute": "standard", "ae_result": "ok", "ae_next_state": "", "raise": ""})
k.method("standard", location="inline", body=MULTI_METHOD, inputs=MULTI_INPUTS)
for variant, sm3_steps in [
        ("all", {}),
        ("raise", {"on_entry": "common_state_method(raise => 'Raising error from SM3')",
                   "on_error": "common_state_method(ae_result => 'error')"}),
        ("continue", {"on_entry": "common_state_method(raise => 'Raising error from SM3')",
                      "on_error": "common_state_method(ae_result => 'continue')"}),
        ("retry", {"on_entry": "common_state_method(ae_result => 'retry')"})]:
    for stem, connect in [("SM1", "/SPEC_DOMAIN/NS1/SM2/" + variant),
                          ("SM2", "/SPEC_DOMAIN/NS1/SM3/" + variant), ("SM3", "#")]:
        if variant == "all":
            sm = d.klass("NS1", stem, [state(stem + "_1", max_retries="1"),
                                       state(stem + "_2", max_retries="2"),
                                       state(stem + "_3", max_retries="3"),
                                       state(stem + "_4", max_retries="4")])
            sm.method("common_state_method", location="inline", body=MULTI_STATE_METHOD,
                      inputs=MULTI_INPUTS)
            classes = getattr(d, "sm_classes", {})
            classes[stem] = sm
            d.sm_classes = classes
        sm = d.sm_classes[stem]
        values = {}
        for i, target in enumerate(["/SPEC_DOMAIN/NS1/MY_METHOD_CLASS/instance1", connect,
                                    "/SPEC_DOMAIN/NS1/MY_METHOD_CLASS/instance2",
                                    "/SPEC_DOMAIN/NS1/MY_METHOD_CLASS/instance3"], 1):
            v = {"value": target}
            v.update(ALL_STEPS)
            if stem == "SM3" and i == 1:
                v.update(sm3_steps)
            values["%s_%d" % (stem, i)] = v
        sm.instance(variant, values)

# ---------------------------------------------------------------------------
# item 34: a missing relationship target in a state (miq_ae_state_missing_relation_spec.rb).
s = Store("state_missing_relation")
d = s.domain("FLINTSTONE")
k = d.klass("WILMA", "BARNEY", [attr("var1")])
k.instance("HOPPY", {"var1": "1"})
k.instance("BETTY", {"var1": "3"})
sm = d.klass("WILMA", "FRED", [state("state%d" % i, max_retries="10", collect="var1")
                               for i in (1, 2, 3)])
hoppy, gazoo, betty = ("/FLINTSTONE/WILMA/BARNEY/" + n for n in ["HOPPY", "GAZOO", "BETTY"])
sm.instance("PEBBLES", {"state1": gazoo, "state2": "", "state3": ""})
sm.instance("BAMM_BAMM", {"state1": hoppy, "state2": gazoo, "state3": betty})
sm.instance("DINO", {"state1": hoppy, "state2": betty, "state3": gazoo})

# ---------------------------------------------------------------------------
# item 35: state-machine methods (miq_ae_state_machine_spec.rb, spec/data/state_machine).
s = Store("state_machine_methods")
d = s.domain("SPEC_DOMAIN")
k = d.klass("factory", "method", [meth("execute")])
k.method("test_class_method", data="mark_root", scope="class",
         inputs=[("status", {}), ("status_state", {})])
sm = d.klass("factory", "StateMachine", [
    state("ProvisionCheck", on_entry="update_provision_status(status => 'checking', status_state => 'on_entry')",
          on_exit="update_provision_status(status => 'checked', status_state => 'on_exit')",
          on_error="update_provision_status(status => 'failed', status_state => 'on_error')"),
    state("Provision"),
    state("final", default_value="METHOD::check(result => 'ok')")])
sm.method("update_provision_status", data="mark_root", inputs=[("status", {}), ("status_state", {})])
sm.method("check", data="set_result", inputs=[("result", {"default_value": "ok"})])
sm.method("explode", data="explode")
sm.instance("provisioning", {"ProvisionCheck": "METHOD::check(result => 'ok')",
                             "Provision": "METHOD::check(result => 'ok')"})
sm.instance("provisioning_error", {"ProvisionCheck": "METHOD::check(result => 'error')",
                                   "Provision": "METHOD::check(result => 'ok')"})
sm.instance("provisioning_raise", {"ProvisionCheck": "METHOD::explode",
                                   "Provision": "METHOD::check(result => 'ok')"})
sm.instance("fq_class_on_entry", {"ProvisionCheck": {
    "value": "METHOD::check(result => 'ok')",
    "on_entry": "SPEC_DOMAIN/factory/method.test_class_method(status => 'Testing class on entry method',status_state => 'on_entry')",
    "on_exit": "#"}})
sm.instance("partial_class_on_entry", {"ProvisionCheck": {
    "value": "METHOD::check(result => 'ok')",
    "on_entry": "/factory/method.test_class_method(status => 'Test',status_state => 'on_entry')",
    "on_exit": "#"}})
sm.instance("method_state", {"ProvisionCheck": {
    "value": "METHOD::update_provision_status(status => 'Test',status_state => 'value')",
    "on_entry": "#", "on_exit": "#"}})
sm.instance("class_method_state", {"ProvisionCheck": {
    "value": "METHOD::/factory/method.test_class_method(status => 'Test',status_state => 'on_entry')",
    "on_entry": "#", "on_exit": "#"}})

# ---------------------------------------------------------------------------
# item 36: enforce max_retries and max_time.
s = Store("state_maxima")
d = s.domain("SPEC_DOMAIN")
k = d.klass("NS1", "STEP", [meth("execute")])
k.instance("ok", {"execute": "check"})
k.method("check", data="set_result", inputs=[("result", {"default_value": "ok"})])
sm = d.klass("NS1", "LIMITED", [state("state1")])
sm.instance("max_retries_2", {"state1": {"value": "/SPEC_DOMAIN/NS1/STEP/ok", "max_retries": "2"}})
sm.instance("max_retries_4", {"state1": {"value": "/SPEC_DOMAIN/NS1/STEP/ok", "max_retries": "4"}})
sm.instance("max_time_1_hour", {"state1": {"value": "/SPEC_DOMAIN/NS1/STEP/ok", "max_time": "1.hour"}})
sm.instance("max_time_6_seconds", {"state1": {"value": "/SPEC_DOMAIN/NS1/STEP/ok",
                                              "max_time": "6.seconds"}})
sm.instance("max_time_2", {"state1": {"value": "/SPEC_DOMAIN/NS1/STEP/ok", "max_time": "2"}})
sm.instance("no_maxima", {"state1": "/SPEC_DOMAIN/NS1/STEP/ok"})
