#!/usr/bin/env python3
# The README "Performance" table from cancelfd-bench --json FILE:
#   tools/bench/readme-table.py out.json
import json,sys
d=json.load(open(sys.argv[1]))
def fmt(v, unit):
    if v is None: return "—"
    if unit=="B": return "%.0f B"%v
    if v>=1e6: return "%.2f ms"%(v/1e6)
    if v>=1e3: return "%.2f µs"%(v/1e3)
    return "%.1f ns"%v
print("| row | cancelfd (median) | baseline, same run (median) | ratio | target | status |")
print("|---|---|---|---|---|---|")
for r in d['rows']:
    name=r['name'].strip()
    if r['name'].startswith('  '): name = "↳ "+name
    if 'callbacks, per callback' in name: continue
    c=fmt(r['cancelfd']['median'] if r.get('cancelfd') else None, r['unit'])
    b=r.get('baseline')
    bs = "—" if not b else "%s: %s"%(b['name'], fmt(b['median'], r['unit']))
    ratio = "—" if r['ratio'] is None else "%.3f"%r['ratio']
    t=r.get('target')
    ts = "—" if not t or r['status']=='info' else "%s %g"%(t['op'].replace('<=','≤').replace('>=','≥'), t['value'])
    st = {'met':'met','MISSED':'**missed**','info':'info'}.get(r['status'], r['status'])
    print("| %s | %s | %s | %s | %s | %s |"%(name, c, bs, ratio, ts, st))
