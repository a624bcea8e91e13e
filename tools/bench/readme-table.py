#!/usr/bin/env python3
# The README "Performance" table from cancelfd-bench --json FILE:
#   tools/bench/readme-table.py out.json
#
# Info rows print their figure too: the "own cost" rows (kind "own-cost")
# give the library's own cost in the cancelfd column, the baseline they
# subtract (if any) and their budget, which is shown, never judged.
import json, sys

d = json.load(open(sys.argv[1]))
UNITS = {"ns": "ns", "us": "µs", "B": "B"}


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "B":
        return "%.0f B" % v
    if unit == "us":  # own-cost rows in µs: printed as the ns rows are
        v *= 1e3
    a = abs(v)  # an own cost above a baseline can be < 0
    if a >= 1e6:
        return "%.2f ms" % (v / 1e6)
    if a >= 1e3:
        return "%.2f µs" % (v / 1e3)
    return "%.1f ns" % v


def op(o):
    return o.replace("<=", "≤").replace(">=", "≥")


print("| row | cancelfd (median) | baseline, same run (median) | ratio | target | status |")
print("|---|---|---|---|---|---|")
for r in d["rows"]:
    name = r["name"].strip()
    if r["name"].startswith("  "):
        name = "↳ " + name
    if "callbacks, per callback" in name:
        continue
    unit = r["unit"]
    c = fmt(r["cancelfd"]["median"], unit)
    b = r.get("baseline")
    if not b:
        bs = "—"
    else:
        bs = "%s%s: %s" % ("minus " if b.get("subtracted") else "", b["name"],
                           b.get("unavailable") or fmt(b.get("median"), unit))
    ratio = "—" if r["ratio"] is None else "%.3f" % r["ratio"]
    t, budget = r.get("target"), r.get("budget")
    if budget:
        ts = "budget %s %g %s" % (op(budget["op"]), budget["value"], UNITS[unit])
    elif t and r["status"] != "info":
        ts = "%s %g" % (op(t["op"]), t["value"])
    else:
        ts = "—"
    st = {"met": "met", "MISSED": "**missed**", "info": "info"}.get(r["status"], r["status"])
    print("| %s | %s | %s | %s | %s | %s |" % (name, c, bs, ratio, ts, st))
