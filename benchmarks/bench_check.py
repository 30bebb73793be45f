"""`host check` on the virtual Gen0, healthy and with each wiring fault: the verdict of every step per robot
(a table: faults x steps) and how long each check took (the issue asks <= 60 s for the healthy robot).

Usage: python benchmarks/bench_check.py [--seed 0] [--faults NAME ...] [--json]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.check import check  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from host.sim.faults import FAULTS  # noqa: E402

JOINT = {"reversed-servo": "elbow", "pot-disconnected": "shoulder", "pot-clipped": "shoulder", "stuck-joint": "elbow"}


def run(fault, seed, out):
    faults = [f"{fault}:{JOINT[fault]}" if fault in JOINT else fault] if fault else []
    with VirtualGen0(preload=True, seed=seed, faults=faults) as sim:
        if not sim.wait_ready(20):
            raise SystemExit(f"the virtual Gen0 did not boot: {sim.failed}")
        t0 = time.monotonic()
        result = check(sim.port, out, say=lambda line: None)
        return {"robot": faults[0] if faults else "healthy", "seconds": round(time.monotonic() - t0, 1),
                "verdict": result["verdict"], "steps": {s["step"]: s["verdict"] for s in result["steps"]},
                "messages": {s["step"]: s["message"] for s in result["steps"] if s["verdict"] in ("WARN", "FAIL")}}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--faults", nargs="*", default=list(FAULTS), help="which faults (default: all)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for fault in [None, *args.faults]:
            rows.append(run(fault, args.seed, out))
            if not args.json:
                print(f"  {rows[-1]['robot']}: {rows[-1]['verdict']} in {rows[-1]['seconds']} s", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
        return
    steps = list(rows[0]["steps"])
    print("| robot | " + " | ".join(steps) + " | seconds |")
    print("|---|" + "---|" * (len(steps) + 1))
    for r in rows:
        print(f"| {r['robot']} | " + " | ".join(r["steps"].get(s, "-") for s in steps) + f" | {r['seconds']} |")
    for r in rows:
        for step, message in r["messages"].items():
            print(f"{r['robot']}: {step}: {message}")


if __name__ == "__main__":
    main()
