#!/usr/bin/env python3
"""Builds libyaml_golden.json: documents and the text libyaml 0.2.5 writes for them.

The documents (golden_docs.json) are random strings, biased towards the hard
cases (quoting, folding at 80 columns, line breaks, escapes), placed as
values, keys, sequence items and the root. The Rust emitter turns each
document into the scalar events Psych would hand to libyaml; this script
replays those events through libyaml's own emitter (PyYAML's CDumper, which
bundles libyaml 0.2.5) and stores what it writes.

    python3 make_golden.py docs                       # golden_docs.json
    AUTOMATE_YAML_EVENTS=/tmp/events.json \
        cargo test --lib dump_psych_events -- --ignored
    python3 make_golden.py emit /tmp/events.json      # libyaml_golden.json
"""
import json
import random
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."

PALETTE = (list("abcdefghijklmnopqrstuvwxyz") * 3 + list("ABXYZ0123456789") + [" "] * 12
           + list(":#-?'\"\\!&*|>%@`,[]{}./$=()_+~;<") + ["\n"] * 3
           + ["\t", "\u00e9", "\u4e2d", "\U0001F600", "\u0085", "\u2028", "\ufeff", "\x00",
              "\x07", "\x1b", "\r", "\xa0", "\x7f", "\x9f"])
SPECIAL = ["", "yes", "No", "null", "~", "1.0", "0x1F", "2015-03-25", "<<", "y", "N", "100",
           "09", "1_000", "true", ":foo", ":foo bar", ":", "12:30", "1e5", ".inf", "- a", "---",
           "...", "? x", "a: b", "a #b", "#x", " lead", "trail ", "a\n", "a\n\n", "a\n\n\n",
           "\n", " \n", "x\n y", "abc\"def", "/x\"y", "a'b", "'", "\""]


def random_string(rng):
    if rng.random() < 0.12:
        return rng.choice(SPECIAL)
    n = rng.choice([rng.randint(0, 12), rng.randint(0, 60), rng.randint(40, 240)])
    if rng.random() < 0.55:
        words = []
        while sum(len(w) + 1 for w in words) < n:
            words.append("".join(rng.choice("abcdefghij=>'(),") for _ in range(rng.randint(1, 12))))
        text = " ".join(words)
        if rng.random() < 0.3:
            text = rng.choice(["/", "$", "#", "*", ".", ":", "'", "\"", " "]) + text
        if rng.random() < 0.2:
            text += rng.choice([" ", "  ", "\n", "'"])
        if rng.random() < 0.15:
            i = rng.randint(0, len(text))
            text = text[:i] + "  " + text[i:]
        return text
    return "".join(rng.choice(PALETTE) for _ in range(n))


def docs():
    rng = random.Random(20240601)
    out = []
    for _ in range(220):
        s = random_string(rng)
        out.append({"key": s})
        out.append({"a": {"bb": {"ccc": [s, {s: s}]}}})
        out.append([s, [s, None], {}, []])
        out.append(s)
    out.append({"version": 1.0, "priority": 3, "enabled": True, "n": None, "f": 0.25})
    with open(f"{HERE}/golden_docs.json", "w") as f:
        json.dump(out, f, ensure_ascii=True, indent=0)


def emit(events_path):
    import yaml
    from yaml import events as ev
    assert yaml._yaml.get_version_string() == "0.2.5", yaml._yaml.get_version_string()
    cases = []
    for item in json.load(open(events_path)):
        evs = [ev.StreamStartEvent(), ev.DocumentStartEvent(explicit=True)]
        for e in item["events"]:
            t = e["t"]
            if t == "map_start":
                evs.append(ev.MappingStartEvent(None, None, True, flow_style=False))
            elif t == "map_end":
                evs.append(ev.MappingEndEvent())
            elif t == "seq_start":
                evs.append(ev.SequenceStartEvent(None, None, True, flow_style=False))
            elif t == "seq_end":
                evs.append(ev.SequenceEndEvent())
            else:
                evs.append(ev.ScalarEvent(None, e["tag"], (e["plain"], e["quoted"]), e["text"],
                                          style=e["style"] or None))
        evs += [ev.DocumentEndEvent(explicit=False), ev.StreamEndEvent()]
        text = yaml.emit(evs, Dumper=yaml.CDumper, allow_unicode=True)
        cases.append({"doc": item["doc"], "yaml": text})
    with open(f"{HERE}/libyaml_golden.json", "w") as f:
        json.dump(cases, f, ensure_ascii=True, indent=0)


if __name__ == "__main__":
    if sys.argv[1:] == ["docs"]:
        docs()
    elif len(sys.argv) == 3 and sys.argv[1] == "emit":
        emit(sys.argv[2])
    else:
        sys.exit(__doc__)
