#!/usr/bin/env python3
"""Diffs the legacy billing families of two exporters: the original os_project_usage_exporter
and ours during a cut-over (README, "Cutting over from the original exporter").

    bench/compare-legacy.py URL_A URL_B [--tolerance REL]

Reads `project_vcpu_usage` and `project_mb_usage` from both `/metrics` endpoints and matches
series by family, project_id and project_name (ours also fills domain_id and domain_name,
which the original leaves empty, so those labels are not compared). Prints one line per
series that is missing on one side or whose values differ by more than REL (relative;
default 1e-9 — live exporters refresh at different moments, so compare with e.g. 0.001 or
stop their clocks by using a dummy file of finished servers). Exit status: 0 when equal,
1 when not, 2 when an endpoint cannot be read.
"""

import argparse
import re
import sys
import urllib.request

FAMILIES = ("project_vcpu_usage", "project_mb_usage")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError(f"cannot parse labels {{{text}}}")
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def series(body):
    """(family, project_id, project_name) -> value."""
    out = {}
    for line in body.splitlines():
        if not line.startswith(FAMILIES):
            continue
        name, _, rest = line.partition("{")
        if name not in FAMILIES or "}" not in rest:
            continue
        labels_text, _, value_text = rest.rpartition("}")
        labels = parse_labels(labels_text)
        value = float(value_text.split()[0])
        key = (name, labels.get("project_id", ""), labels.get("project_name", ""))
        out[key] = out.get(key, 0.0) + value
    return out


def fetch(url):
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args()
    try:
        a, b = series(fetch(args.a)), series(fetch(args.b))
    except (OSError, ValueError) as e:
        print(f"compare-legacy: {e}", file=sys.stderr)
        return 2
    differences = 0
    for key in sorted(set(a) | set(b)):
        family, project_id, project_name = key
        where = f"{family}{{project_id={project_id!r}, project_name={project_name!r}}}"
        if key not in b:
            print(f"only in A: {where} {a[key]}")
        elif key not in a:
            print(f"only in B: {where} {b[key]}")
        else:
            scale = max(abs(a[key]), abs(b[key]), 1.0)
            if abs(a[key] - b[key]) <= args.tolerance * scale:
                continue
            print(f"differs: {where} A={a[key]} B={b[key]}")
        differences += 1
    print(f"{len(set(a) | set(b))} series compared, {differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
