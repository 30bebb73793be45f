"""The whole demo, timed and scored, on the default virtual Gen0 and on units drawn with other seeds.

Usage: python benchmarks/bench_demo.py [--seeds 0,1,2] [--plant FILE] [--json]

Each seed runs `host demo --seed N --json` as a user would (a fresh virtual Gen0: flash with
mpremote, 50 s of excitation, train, deploy, evaluate on the held-out trajectories) and prints its
wall time and steps, and the tracking RMSE of each controller with the ratios the issue asks for:
the whole demo <= 180 s, the learned controller's RMSE <= 1/3 of the naive mapping's and <= 1/1.5
of the linear calibration's, per joint. The run directories stay under runs/ for the reports.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S, NAIVE_RATIO, LINEAR_RATIO = 180.0, 3.0, 1.5


def run(seed, plant):
    cmd = [str(Path(sys.executable).with_name("host")), "demo", "--seed", str(seed), "--json"] + (["--plant", plant] if plant else [])
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode:
        raise SystemExit(f"demo --seed {seed} failed: {proc.stderr.strip().splitlines()[-1:]}")
    facts = json.loads(proc.stdout)
    summary = facts["eval"]["summary"]
    ratios = {c: summary[c]["rmse_vs_model"] for c in ("naive", "linear")}
    ok = (wall <= TARGET_S and all(v >= NAIVE_RATIO for v in ratios["naive"].values())
          and all(v >= LINEAR_RATIO for v in ratios["linear"].values()))
    return {"seed": seed, "plant": plant, "wall_s": round(wall, 1), "steps_s": facts["step_seconds"],
            "rmse_deg": {c: {j: v["rmse_deg"] for j, v in s["joints"].items()} for c, s in summary.items()},
            "ratios": ratios, "targets_met": ok, "report": facts["report"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--plant")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run(seed, args.plant)
        results.append(r)
        if not args.json:
            steps = ", ".join(f"{k} {v:.0f}" for k, v in r["steps_s"].items())
            print(f"seed {seed}: {r['wall_s']:.0f} s (target <= {TARGET_S:.0f}) [{steps}]")
            for c, per in r["rmse_deg"].items():
                extra = ""
                if c in r["ratios"]:
                    extra = "   learned is " + ", ".join(f"{x:.2f}x" for x in r["ratios"][c].values()) + " better"
                print(f"  {c:<7} RMSE " + ", ".join(f"{j} {v:.2f} deg" for j, v in per.items()) + extra)
            print(f"  targets met: {r['targets_met']}   report: {r['report']}")
    if args.json:
        print(json.dumps(results))
    return 0 if all(r["targets_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
