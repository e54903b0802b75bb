#!/usr/bin/env python3
"""Writes the datastore tests/crash.rs runs `automate run` on (domain CRASH):

* /System/Process/Event (what the event handler instantiates): its method
  `witness` counts the deliveries of the event on the stored EmsEvent
  (`deliveries`), the durable witness that Automate saw the event;
* /SM/Counter/default: a state machine that counts its passes in a state
  var, asks for a retry (1 s) until pass PASSES, then writes the count on
  its machine's VM (`finished_n`). The test schedules these retries before
  it starts killing the pipeline, whose retry runner must finish them.

Run from this directory."""
import os

PASSES = 4


def w(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


FIELD = """  - field:
      aetype: {aetype}
      name: {name}
      display_name:
      datatype: string
      priority: {priority}
      owner:
      default_value:
      substitute: true
      message: create
      visibility:
      collect:
      scope:
      description:
      condition:
      on_entry:
      on_exit:
      on_error:
      max_retries: {max_retries}
      max_time:
"""


def klass(path, name, fields):
    schema = "".join(
        FIELD.format(aetype=a, name=n, priority=i + 1, max_retries=r)
        for i, (a, n, r) in enumerate(fields)
    )
    w(path + "/__class__.yaml", f"""---
object_type: class
version: 1.0
object:
  attributes:
    description:
    display_name:
    name: {name}
    type:
    inherits:
    visibility:
    owner:
  schema:
{schema}""")


def namespace(path, name):
    w(path + "/__namespace__.yaml", f"""---
object_type: namespace
version: 1.0
object:
  attributes:
    name: {name}
    description:
    display_name:
    priority:
    enabled:
""")


def method(cls, name, body):
    w(f"{cls}/__methods__/{name}.rhai", body)
    w(f"{cls}/__methods__/{name}.yaml", f"""---
object_type: method
version: 1.0
object:
  attributes:
    name: {name}
    display_name:
    description:
    scope: instance
    language: rhai
    location: inline
  inputs: []
""")


def instance(cls, name, fields):
    body = "".join(f"  - {k}:\n      value: {v}\n" for k, v in fields)
    w(f"{cls}/{name}.yaml", f"""---
object_type: instance
version: 1.0
object:
  attributes:
    display_name:
    name: {name}
    inherits:
    description:
  fields:
{body}""")


w("CRASH/__domain__.yaml", """---
object_type: domain
version: 1.0
object:
  attributes:
    name: CRASH
    description: tests/crash.rs
    display_name:
    priority: 10
    enabled: true
    tenant_id: 1
    source: user
    top_level_namespace:
""")
namespace("CRASH/System", "System")
namespace("CRASH/SM", "SM")

event = "CRASH/System/Process.class"
klass(event, "Process", [("method", "execute", "")])
method(event, "witness", """// Counts this event's deliveries to Automate on the stored EmsEvent.
let id = parse_int(`${evm.root["event_id"]}`);
let ev = evm.vmdb("ems_event", id);
if ev != () {
    let n = ev["deliveries"];
    ev["deliveries"] = if type_of(n) == "i64" { n + 1 } else { 1 };
}
""")
instance(event, "Event", [("execute", "witness")])

sm = "CRASH/SM/Counter.class"
klass(sm, "Counter", [("state", "count", "'100'"), ("state", "finish", "")])
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
