"""Does the training's closed-loop figure (metrics.json "closed_loop", host/train/rollout.py) rank models as
`host eval` on the robot does, and better than the per-row pulse error (val_rmse)?

Trains inverse models of several qualities on a demo run's sessions, then deploys each onto a virtual Gen0 of
the run's unit and evaluates it (learned controller only, all trajectories); prints each model's three figures
and the Spearman rank correlations with eval. Usage: python benchmarks/bench_closed_loop.py runs/demo-DATE-TIME
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from host.evaluate import evaluate
from host.sim import VirtualGen0
from host.train.pipeline import train

CONFIGS = {"default": {}, "epochs 2": {"epochs": 2}, "epochs 5": {"epochs": 5}, "hidden 8": {"hidden": [8]},
           "linear net": {"act": "linear"}}


def pooled(d):
    return float(np.sqrt(np.mean([v ** 2 for v in d.values()])))


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return round(float(np.corrcoef(ra, rb)[0, 1]), 2)


def main(run):
    run = Path(run)
    demo = json.loads((run / "demo.json").read_text())
    sessions = [run / "sessions" / "excitation.session", run / "sessions" / "validation.session"]
    out = Path(tempfile.mkdtemp(prefix="bench-closed-loop-"))
    rows = {}
    for name, cfg in CONFIGS.items():
        m = train("inverse", sessions, out=out / name.replace(" ", "-"), progress=False, **cfg)
        rows[name] = {"val_rmse_us": {o.split("_")[0]: v for o, v in m["val_rmse"].items()},
                      "closed_loop_deg": m["closed_loop"]["rmse_deg"]}
    with VirtualGen0(preload=True, seed=demo["seed"], plant=demo.get("plant")) as gen0:
        gen0.wait_ready(30)
        for name in CONFIGS:
            proc = subprocess.run(["host", "deploy", str(out / name.replace(" ", "-")), "--port", gen0.port],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            r = evaluate(gen0.port, [], controllers=["model"], out=out / "sessions", say=lambda m: None)
            rows[name]["eval_deg"] = {j: v["rmse_deg"] for j, v in r["summary"]["model"]["joints"].items()}
            rows[name]["clean"] = all(x["clean"] for x in r["runs"])
    print(f"{'model':<12}{'eval RMSE deg':>22}{'closed-loop figure deg':>26}{'val_rmse us':>22}")
    for name, r in rows.items():
        print(f"{name:<12}" + "".join(f"{' / '.join(f'{v:.2f}' for v in r[k].values()):>24}"
                                       for k in ("eval_deg", "closed_loop_deg", "val_rmse_us")))
    for label, key in (("closed-loop figure", "closed_loop_deg"), ("val_rmse", "val_rmse_us")):
        joints = list(rows["default"]["eval_deg"])
        per = [spearman([r["eval_deg"][j] for r in rows.values()], [r[key][j] for r in rows.values()]) for j in joints]
        both = spearman([pooled(r["eval_deg"]) for r in rows.values()], [pooled(r[key]) for r in rows.values()])
        print(f"Spearman with eval, {label}: " + ", ".join(f"{j} {x}" for j, x in zip(joints, per)) + f", pooled {both}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1])
