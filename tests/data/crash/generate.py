#!/usr/bin/env python3
"""Writes the datastore tests/crash.rs runs `automate run` on (domain CRASH):

* /System/Process/Event (what the event handler instantiates): its method
  `witness` counts the deliveries of the event on the stored EmsEvent
  (`deliveries`), the durable witness that Automate saw the event;
* /System/Request/Witness: the automation request tests/cluster_kill.rs
  creates while it kills nodes (a method that notes it ran);
* /SM/Counter/default: a state machine that counts its passes in a state
  var, asks for a retry (1 s) until pass PASSES, then writes the count on
  its machine's VM (`finished_n`). The test schedules these retries before
  it starts killing the pipeline, whose retry runner must finish them.

Run from this directory."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from aeyaml import class_yaml, domain_yaml, instance_yaml, method_yaml, namespace_yaml, schema

PASSES = 4


def w(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def klass(path, name, fields):
    """A class with the fields `(aetype, name, max_retries)`."""
    w(path + "/__class__.yaml", class_yaml(name, schema(
        {"aetype": a, "name": n, "max_retries": r} for a, n, r in fields
    )))


def namespace(path, name):
    w(path + "/__namespace__.yaml", namespace_yaml(name))


def method(cls, name, body):
    w(f"{cls}/__methods__/{name}.rhai", body)
    w(f"{cls}/__methods__/{name}.yaml", method_yaml(name))


def instance(cls, name, fields):
    w(f"{cls}/{name}.yaml", instance_yaml(name, fields))


w("CRASH/__domain__.yaml", domain_yaml("CRASH", "tests/crash.rs", 10))
namespace("CRASH/System", "System")
namespace("CRASH/SM", "SM")

event = "CRASH/System/Process.class"
klass(event, "Process", [("method", "execute", None)])
method(event, "witness", """// Counts this event's deliveries to Automate on the stored EmsEvent
// (a request's events, such as request_starting, carry no event_id).
let raw = `${evm.root["event_id"]}`;
if raw != "" {
    let ev = evm.vmdb("ems_event", parse_int(raw));
    if ev != () {
        let n = ev["deliveries"];
        ev["deliveries"] = if type_of(n) == "i64" { n + 1 } else { 1 };
    }
}
""")
instance(event, "Event", [("execute", "witness")])

sm = "CRASH/SM/Counter.class"
klass(sm, "Counter", [("state", "count", "100"), ("state", "finish", None)])
method(sm, "bump", f"""// Counts passes in a state var; asks for a retry until pass {PASSES}.
let n = if evm.state_var_exist("n") {{ evm.get_state_var("n") }} else {{ 0 }};
n += 1;
evm.set_state_var("n", n);
if n < {PASSES} {{
    evm.root["ae_result"] = "retry";
    evm.root["ae_retry_interval"] = "1";
}}
""")
method(sm, "done", """// Writes the pass count the state vars carried on the machine's VM.
let n = evm.get_state_var("n");
let vm = evm.vmdb("vm", parse_int(`${evm.root["machine"]}`));
if vm != () {
    vm["finished_n"] = n;
}
""")
instance(sm, "default", [("count", "METHOD::bump"), ("finish", "METHOD::done")])

# /System/Request/Witness: what tests/cluster_kill.rs's automation requests
# run (a request must survive the loss of the node that accepted it).
request = "CRASH/System/Request.class"
klass(request, "Request", [("method", "execute", None)])
method(request, "note", """// Says which request ran, in the request's workspace.
evm.root["noted"] = `${evm.root["n"]}`;
""")
instance(request, "Witness", [("execute", "note")])
