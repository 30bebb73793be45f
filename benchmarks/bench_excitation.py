"""Which excitation and which model inputs learn the servos best, by the closed-loop tracking error.

Usage: python benchmarks/bench_excitation.py [--seed 0] [--plant FILE] [--mixes demo,chirp+steps]
       [--inputs base,vel3] [--train-seeds 0,1,2] [--out DIR] [--json]

On one virtual Gen0 (unit --seed, physics --plant): flash, `host check --write`, record each excitation
mix (the demo's training seconds, 40 of its 50 s) and the demo's validation session, then for every mix x
inputs x training seed: train the inverse model, deploy it, run the held-out trajectories with it
(`host eval`'s, model only; naive and linear once) and print the RMSE per joint and the largest
overshoot on the steps trajectory (how far the angle goes past both the target and where it settles).
The training seed alone moves the RMSE by +-0.3 deg: compare means over several (host/EVAL.md
"Excitation and inputs"). Sessions, models and results.json stay in --out (reused when run again).
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host import demo  # noqa: E402
from host.check import check  # noqa: E402
from host.collect import Recorder  # noqa: E402
from host.deploy import deploy, read_blob  # noqa: E402
from host.evaluate import calibrate, evaluate, public  # noqa: E402
from host.flash.firmware import flash_firmware  # noqa: E402
from host.link.client import Link  # noqa: E402
from host.sessions import load  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from host.train import tasks  # noqa: E402

TRAIN_S = demo.COLLECT_S * (1 - demo.VALIDATION_SHARE)
# extra inputs per joint ({j}: the joint) or once, on top of tasks.inverse's
INPUTS = {"base": [], "vel3": ["{j}_deg@-3"], "gz": ["gz"], "cmdh": ["{j}_cmd_us@-3", "{j}_cmd_us@-5"],
          "vel3cmdh": ["{j}_deg@-3", "{j}_cmd_us@-3", "{j}_cmd_us@-5"]}


def mixes(seed):
    """{name: plan} of the training excitations compared, each TRAIN_S long; `demo` is host demo's."""
    ms = round(TRAIN_S * 1000)
    half = ms // 2

    def steps(d):
        return ("steps", {"seed": seed, "duration_ms": d, "dwell_min_ms": demo.STEPS_DWELL_MS[0],
                          "dwell_max_ms": demo.STEPS_DWELL_MS[1]})

    def sines(d, **over):
        return ("multisine", {"seed": seed, "duration_ms": d, **dict(demo.MULTISINE, **over)})

    return {"demo": demo.excitation(demo.COLLECT_S, seed)["excitation"],
            "chirp+steps": [("chirp", {"duration_ms": half}), steps(ms - half)],
            "multisine-1/f+steps": [sines(half, tilt=1), steps(ms - half)],
            "steps": [steps(ms)],
            "chirp+multisine+steps": [("chirp", {"duration_ms": ms // 4}), sines(ms // 4), steps(ms - ms // 2)],
            "multisine30+steps10": [sines(ms * 3 // 4), steps(ms - ms * 3 // 4)]}


def inverse_with(extra):
    """tasks.inverse with `extra` inputs after each joint's (or once, without {j})."""
    def inverse(joints, rate_hz, ahead=None):
        t = tasks.inverse(joints, rate_hz, ahead)
        t.inputs = (t.inputs + [e.format(j=j) for j in joints for e in extra if "{j}" in e]
                    + [e for e in extra if "{j}" not in e])
        return t
    return inverse


def overshoot(path):
    """{joint: deg}: the farthest the angle goes past both the target and where it settled, over the steps
    trajectory's holds (not their last 10 ticks, where the look-ahead already moves to the next step)."""
    s = load(path)
    c, hello = s.columns, s.segments[-1]["hello"]
    track = np.flatnonzero(np.asarray(c["mode"]) == hello.mode("track"))
    out = {}
    for j in hello.joints:
        target, deg = (np.asarray(c[f"{j}{x}"], float)[track] for x in ("_target_deg", "_deg"))
        edges = list(np.flatnonzero(np.abs(np.diff(target)) > 1) + 1) + [len(target)]
        worst = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            step = target[a] - target[a - 1]
            settled = deg[b - (b - a) // 4:b].mean()
            ref = max(target[a], settled) if step > 0 else min(target[a], settled)
            worst = max(worst, float(np.max(np.sign(step) * (deg[a:b - 10] - ref))))
        out[j] = round(worst, 1)
    return out


def record(port, out, name, plan):
    path = Path(out) / f"{name}.session"
    if path.exists():
        return path
    rec = Recorder(port, out, name, {"program": {"name": "+".join(p for p, _ in plan), "plan": plan}},
                   progress=False, say=lambda *a: None)
    rec.start()
    with rec:
        reason, _ = rec.run_plan(plan)
    if reason is None:
        raise SystemExit(f"recording {name}: {rec.fault}")
    return rec.path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="the virtual unit")
    ap.add_argument("--plant", help="a plant file (default: hardware/plant_gen0.json)")
    ap.add_argument("--mixes", default="demo,chirp+steps", help="of: " + ", ".join(mixes(1)))
    ap.add_argument("--inputs", default="base", help="of: " + ", ".join(INPUTS))
    ap.add_argument("--train-seeds", default="0,1,2")
    ap.add_argument("--out", help="default: a new temporary directory")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    plans, names = mixes(a.seed + 1), a.mixes.split(",")
    bad = [n for n in names if n not in plans] + [i for i in a.inputs.split(",") if i not in INPUTS]
    if bad:
        raise SystemExit(f"unknown mix or inputs: {', '.join(bad)}")
    out = Path(a.out or tempfile.mkdtemp(prefix="bench-excitation-"))
    sessions = out / "sessions"
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    say = (lambda *x: print(*x, file=sys.stderr, flush=True)) if a.json else print
    original = tasks.TASKS["inverse"]
    with VirtualGen0(plant=a.plant, seed=a.seed) as sim:
        if not sim.wait_ready(30):
            raise SystemExit(f"the virtual Gen0 did not boot: {sim.failed}")
        flash_firmware(sim.port, say=lambda *x: None)
        check(sim.port, sessions, say=lambda *x: None, write=True)
        val = record(sim.port, sessions, "validation", demo.excitation(demo.COLLECT_S, a.seed + 1)["validation"])
        paths = {n: record(sim.port, sessions, n.replace("/", "_"), plans[n]) for n in names}
        for n in names:
            for inputs in a.inputs.split(","):
                for ts in (int(s) for s in a.train_seeds.split(",")):
                    key = f"{n} {inputs} {ts}"
                    if key in results:
                        continue
                    tasks.TASKS["inverse"] = inverse_with(INPUTS[inputs])
                    try:
                        from host.train import pipeline
                        m = pipeline.train("inverse", [paths[n], val], out=out / "models" / key.replace(" ", "_").replace("/", "_"),
                                           progress=False, epochs=demo.EPOCHS, patience=15, seed=ts)
                    finally:
                        tasks.TASKS["inverse"] = original
                    blob, ref = read_blob(Path(m["path"]))
                    with Link(sim.port) as link:
                        d = deploy(link, blob, ref, baud=link.connect().baud)
                    first = not results
                    ctrls = ["naive", "linear", "model"] if first else ["model"]
                    ev = public(evaluate(sim.port, calibrate([load(paths[n]), load(val)])["lin"], controllers=ctrls,
                                         out=sessions / key.replace(" ", "_").replace("/", "_"), say=lambda *x: None))
                    steps = next(r["session"] for r in ev["runs"] if r["trajectory"] == "steps" and r["controller"] == "model")
                    results[key] = {"mix": n, "inputs": inputs, "train_seed": ts, "parity_mismatches": d["parity"]["mismatches"],
                                    "rmse_deg": {c: {j: v["rmse_deg"] for j, v in s["joints"].items()} for c, s in ev["summary"].items()},
                                    "overshoot_deg": overshoot(steps)}
                    results_path.write_text(json.dumps(results, indent=1))
                    r = results[key]
                    say(f"{key:<32} model RMSE " + " / ".join(f"{v:.2f}" for v in r["rmse_deg"]["model"].values())
                        + " deg, overshoot " + " / ".join(f"{v:.1f}" for v in r["overshoot_deg"].values()) + " deg"
                        + ("   naive " + " / ".join(f"{v:.2f}" for v in r["rmse_deg"]["naive"].values())
                           + ", linear " + " / ".join(f"{v:.2f}" for v in r["rmse_deg"]["linear"].values()) if first else ""))
    summary = {}
    for r in results.values():
        summary.setdefault(f"{r['mix']} {r['inputs']}", []).append(list(r["rmse_deg"]["model"].values()))
    summary = {k: {"mean": np.round(np.mean(v, axis=0), 2).tolist(), "worst": np.round(np.max(v, axis=0), 2).tolist(), "n": len(v)}
               for k, v in summary.items()}
    if a.json:
        print(json.dumps({"seed": a.seed, "plant": a.plant, "out": str(out), "runs": results, "summary": summary}))
    else:
        for k, v in summary.items():
            print(f"{k:<32} mean RMSE per joint {v['mean']} deg, worst {v['worst']} (n={v['n']})")
        print(f"sessions, models, results.json: {out}")


if __name__ == "__main__":
    main()
