"""The whole demo, timed and scored, on many units: seeds of the default plant and of plant variants.

Usage: python benchmarks/bench_demo.py [--seeds 0-9] [--plants default,heavy,worn,weak_supply]
                                       [--rounds N] [--json]

Each unit (a seed of a plant) runs `host demo --seed N [--plant FILE] [--rounds N] --json` as a user
would (a fresh virtual Gen0: flash with mpremote, check, excitation, train, deploy, evaluate on the
held-out trajectories, then the self-improvement rounds) and prints, per unit and joint, the tracking
RMSE of the naive mapping, the linear calibration and the learned model, the ratios, the lag, and
what the rounds did (the kept model's ratios to round 0's naive and linear runs). The targets (issue 15):
learned RMSE <= 1/3 of naive's and <= 1/2 of linear's per joint, the demo (without rounds) <= 180 s.
A plant is `default` (hardware/plant_gen0.json), the name of a file in hardware/plants/, or a path.
The run directories stay under runs/ for the reports.
"""
import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S, NAIVE_RATIO, LINEAR_RATIO = 180.0, 3.0, 2.0


def plant_file(name):
    if name == "default":
        return None
    path = ROOT / "hardware" / "plants" / f"{name}.json"
    return str(path if path.exists() else Path(name).resolve())


def seeds(text):
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def run(seed, plant, rounds):
    cmd = [str(Path(sys.executable).with_name("host")), "demo", "--seed", str(seed), "--json"]
    cmd += (["--plant", plant_file(plant)] if plant != "default" else []) + (["--rounds", str(rounds)] if rounds else [])
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode:
        return {"seed": seed, "plant": plant, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    facts = json.loads(proc.stdout)
    summary = facts["eval"]["summary"]
    steps = facts["step_seconds"]
    demo_s = wall - steps.get("learn", 0.0)
    ratios = {c: summary[c]["rmse_vs_model"] for c in ("naive", "linear")}
    ok = (demo_s <= TARGET_S and all(v >= NAIVE_RATIO for v in ratios["naive"].values())
          and all(v >= LINEAR_RATIO for v in ratios["linear"].values()))
    out = {"seed": seed, "plant": plant, "wall_s": round(wall, 1), "demo_s": round(demo_s, 1), "steps_s": steps,
           "rmse_deg": {c: {j: v["rmse_deg"] for j, v in s["joints"].items()} for c, s in summary.items()},
           "lag_ms": {c: {j: v["lag_ms"] for j, v in s["joints"].items()} for c, s in summary.items()},
           "ratios": ratios, "targets_met": ok, "report": facts["report"]}
    out["limb_rmse_deg"] = {c: {j: v.get("limb_rmse_deg") for j, v in s["joints"].items()} for c, s in summary.items()}
    out["fallback"] = {c: s.get("fallback") for c, s in summary.items()}  # the share of ticks out of the learned region
    out["unclean"] = {c: s.get("unclean") for c, s in summary.items()}  # runs that stalled or overran (eval reran them)
    if "learn" in facts:
        learn = facts["learn"]
        out["rounds"] = {"first_rmse_deg": learn["first_rmse_deg"], "best_rmse_deg": learn["best_rmse_deg"],
                         "gain": learn["gain"], "best_round": learn["best"]["round"],
                         "per_round": [r["rmse_deg"] for r in learn["rounds"]],
                         "best_joints": learn["best"]["joints"]}
        best = learn["best"]["joints"]  # the kept model's RMSE per joint, scored against round 0's baselines
        out["rounds"]["ratios"] = {c: {j: round(out["rmse_deg"][c][j] / best[j], 2) for j in best} for c in ratios}
        out["rounds"]["targets_met"] = (all(v >= NAIVE_RATIO for v in out["rounds"]["ratios"]["naive"].values())
                                        and all(v >= LINEAR_RATIO for v in out["rounds"]["ratios"]["linear"].values()))
    return out


def print_unit(r):
    name = f"{r['plant']} seed {r['seed']}"
    if "error" in r:
        print(f"{name}: demo failed: {r['error']}")
        return
    print(f"{name}: demo {r['demo_s']:.0f} s (target <= {TARGET_S:.0f}), wall {r['wall_s']:.0f} s")
    joints = list(r["rmse_deg"]["model"])
    print(f"  {'joint':<9}{'naive':>8}{'linear':>8}{'learned':>9}{'naive/l':>9}{'linear/l':>9}{'lag n/li/l ms':>16}"
          + (f"{'rounds':>16}" if "rounds" in r else ""))
    for j in joints:
        rm, lag = r["rmse_deg"], r["lag_ms"]
        cells = (f"  {j:<9}{rm['naive'][j]:>7.2f}°{rm['linear'][j]:>7.2f}°{rm['model'][j]:>8.2f}°"
                 f"{r['ratios']['naive'][j]:>8.1f}x{r['ratios']['linear'][j]:>8.1f}x"
                 f"{lag['naive'][j]:>6.0f}/{lag['linear'][j]:.0f}/{lag['model'][j]:.0f}".ljust(16 + 60))
        if "rounds" in r:
            cells += f"  {rm['model'][j]:.2f}° -> {r['rounds']['best_joints'][j]:.2f}°"
        print(cells.rstrip())
    if "rounds" in r:
        per = " -> ".join(f"{v:.2f}" for v in r["rounds"]["per_round"])
        after = r["rounds"]["ratios"]
        print(f"  rounds: pooled {per}° (kept round {r['rounds']['best_round']}, {r['rounds']['gain']:.2f}x); after them "
              + ", ".join(f"{j} {after['naive'][j]:.1f}x naive, {after['linear'][j]:.1f}x linear" for j in joints)
              + f"; targets met after the rounds: {r['rounds']['targets_met']}")
    print(f"  targets met: {r['targets_met']}   report: {r['report']}")


def summary(results):
    good = [r for r in results if "error" not in r]
    out = {"units": len(results), "failed": len(results) - len(good),
           "targets_met": sum(r["targets_met"] for r in good)}
    if good:
        for c in ("naive", "linear"):
            worst = min((r["ratios"][c][j], f"{r['plant']} seed {r['seed']} {j}") for r in good for j in r["ratios"][c])
            out[f"worst_{c}_ratio"] = {"ratio": worst[0], "where": worst[1]}
        demo = [r["demo_s"] for r in good]
        out["demo_s"] = {"min": min(demo), "max": max(demo)}
        gains = [r["rounds"]["gain"] for r in good if "rounds" in r and r["rounds"]["gain"]]
        if any("rounds" in r for r in good):
            out["targets_met_after_rounds"] = sum(r["rounds"]["targets_met"] for r in good if "rounds" in r)
        if gains:
            out["rounds_gain"] = {"mean": round(sum(gains) / len(gains), 3), "min": min(gains), "max": max(gains),
                                  "geomean": round(math.exp(sum(math.log(g) for g in gains) / len(gains)), 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9", help="seeds, e.g. 0-9 or 0,3,5")
    ap.add_argument("--plants", default="default,heavy,worn,weak_supply",
                    help="default, names in hardware/plants/, or paths")
    ap.add_argument("--rounds", type=int, default=0, help="self-improvement rounds per demo (host demo --rounds)")
    ap.add_argument("--variant-seeds", default="0,1", help="seeds for the plant variants (the default plant uses --seeds)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    for plant in args.plants.split(","):
        for seed in seeds(args.seeds if plant == "default" else args.variant_seeds):
            r = run(seed, plant, args.rounds)
            results.append(r)
            if not args.json:
                print_unit(r)
                sys.stdout.flush()
    s = summary(results)
    if args.json:
        print(json.dumps({"units": results, "summary": s}))
    else:
        print(json.dumps(s))
    return 0 if s["targets_met"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
