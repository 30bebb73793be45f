"""The error no controller can remove: a servo's slew limit against eval's held-out trajectories.

Usage: python benchmarks/bench_floor.py [--slew 560,610] [--rate 100] [--bench FILE.json] [--json]

An SG90 turns at most ~550-610 deg/s (EVAL.md "Excitation and inputs", measured on the virtual
Gen0). Where a target moves faster than that (the steps trajectory's jumps), even a perfect
controller lags. Two floors per trajectory and joint, pooled over the trajectories as eval pools:

- causal: the joint starts at full speed at the very tick the target jumps (no latency, no
  acceleration): a jump of s deg costs s^3 / (3 v) deg^2 s;
- preview: it starts half a ramp early, the least any slew-limited path can do: s^3 / (12 v).

Targets slower than the slew limit (sines, random) cost nothing here. With --bench (bench_demo.py's
--json output) it prints each unit's learned RMSE beside the floors.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from host.evaluate import TRAJECTORIES, trajectories  # noqa: E402


def floors(rate, slew):
    """{trajectory: {"seconds", "causal", "preview": [per joint sum of squared error, deg^2 s]}}."""
    out = {}
    for t in trajectories(2, rate):
        body = t.targets[t.lead_in:]
        causal, preview = np.zeros(body.shape[1]), np.zeros(body.shape[1])
        step = np.diff(body, axis=0)
        for j in range(body.shape[1]):
            fast = np.abs(step[:, j]) > slew / rate  # faster than the servo can turn in a tick: a jump
            for s in np.abs(step[fast, j]):
                causal[j] += s ** 3 / (3 * slew)
                preview[j] += s ** 3 / (12 * slew)
        out[t.name] = {"seconds": len(body) / rate, "causal": causal, "preview": preview}
    return out


def pooled(f, key):
    return [math.sqrt(sum(v[key][j] for v in f.values()) / sum(v["seconds"] for v in f.values())) for j in range(2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slew", default="560,610", help="deg/s, one or more")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--bench", help="bench_demo.py --json output: the learned RMSE beside the floors")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {}
    for slew in (float(v) for v in args.slew.split(",")):
        f = floors(args.rate, slew)
        result[slew] = {"per_trajectory": {n: {k: [round(math.sqrt(x / v["seconds"]), 2) for x in v[k]]
                                               for k in ("causal", "preview")} for n, v in f.items()},
                        "pooled": {k: [round(x, 2) for x in pooled(f, k)] for k in ("causal", "preview")}}
    if args.json:
        print(json.dumps(result))
        return 0
    for slew, r in result.items():
        print(f"slew {slew:.0f} deg/s: RMSE floor per joint (shoulder / elbow), causal | preview")
        for name in TRAJECTORIES:
            v = r["per_trajectory"][name]
            print(f"  {name:<7} {v['causal'][0]:.2f} / {v['causal'][1]:.2f}° | {v['preview'][0]:.2f} / {v['preview'][1]:.2f}°")
        p = r["pooled"]
        print(f"  pooled  {p['causal'][0]:.2f} / {p['causal'][1]:.2f}° | {p['preview'][0]:.2f} / {p['preview'][1]:.2f}°")
    if args.bench:
        units = json.loads(Path(args.bench).read_text())["units"]
        for u in units:
            if "rmse_deg" in u:
                m = u["rmse_deg"]["model"]
                print(f"{u['plant']} seed {u['seed']}: learned " + " / ".join(f"{v:.2f}" for v in m.values()) + "°")
    return 0


if __name__ == "__main__":
    sys.exit(main())
