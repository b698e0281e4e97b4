"""Summarize results/<tag>.jsonl: mean [min-max] over seeds per score.
Usage: python summarize.py tag [tag ...] [--scores a,b] [--q 99.9]"""
import json
import os
import sys

import pandas as pd
from common import RESULTS

args = [a for a in sys.argv[1:] if not a.startswith("--")]
opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
q = opts.get("q", "99.9")
keep = opts.get("scores")
rows = []
for tag in args:
    with open(os.path.join(RESULTS, f"{tag}.jsonl")) as f:
        rows += [json.loads(l) for l in f]
df = pd.DataFrame(rows)
if keep:
    df = df[df.score.isin(keep.split(","))]
cols = ["roc", "pr", "r_at_p93", "p_at_r433", f"q{q}_f1", f"q{q}_p", f"q{q}_r", "sel_f1"]


def fmt(x):
    return f"{x.mean():.3f} [{x.min():.3f}-{x.max():.3f}]"


print(f"| tag | score | n | ROC-AUC | PR-AUC | R@P.93 | P@R.433 | F1@q{q} | P@q{q} | R@q{q} | F1@selBest | train s |")
print("|" + "---|" * 12)
for (tag, sc), g in df.groupby(["tag", "score"], sort=False):
    ts = f"{g.train_s.mean():.0f}" if "train_s" in g and g.train_s.notna().any() else "-"
    print(f"| {tag} | {sc} | {len(g)} | " + " | ".join(fmt(g[c]) for c in cols) + f" | {ts} |")
