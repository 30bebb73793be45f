"""Training speed: 10 minutes of 200 Hz data (120k rows) on this CPU, and the sin(x) exercise for 8000 steps.

Usage: python benchmarks/bench_train.py [--session PATH] [--minutes 10] [--device cpu|cuda] [--json]

The data is real telemetry, not synthesised: a virtual Gen0 (the real firmware under the MicroPython
VM, virtual clock as fast as it runs: ~45 s for 10 minutes) runs the `steps` program and `host collect`
records it; --session reuses a recording instead. The inverse task is trained on it with the
defaults (one session: the last 20 % of it validates), timed by the training loop itself; reading
the session and building the rows are reported apart. Target: <= 10 s of training on the 2-core
dev machine. The sin(x) network (1-16-16-16-1, batch 32) runs exactly 8000 optimizer steps (250
epochs, no early stopping); a well-known write-up needed 45 s on a CUDA GPU for that workload.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.collect import collect  # noqa: E402
from host.sessions import load  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from host.train.dataset import from_sessions, task_for  # noqa: E402
from host.train.pipeline import train  # noqa: E402

TARGET_S = 10.0
SIN_GPU_S = 45.0


def record(minutes, out):
    board = VirtualGen0(preload=True, seed=0, speed=0)
    board.start()
    try:
        if not board.wait_ready(30):
            raise SystemExit(f"the virtual Gen0 did not boot: {board.failed}")
        return collect(board.port, program="steps", seed=1, duration=minutes * 60, name="bench-steps", out=out,
                       progress=False)["session"]
    finally:
        board.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--session", help="a recorded session to train on (default: record one on a virtual Gen0)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the recorded session (default 10)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        started = time.perf_counter()
        path = args.session or record(args.minutes, work)
        recorded_s = None if args.session else time.perf_counter() - started

        t0 = time.perf_counter()
        session = load(path)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = from_sessions([session], task_for("inverse", [session]))
        rows_s = time.perf_counter() - t0
        inverse = train("inverse", [session], out=work / "inverse", device=args.device, progress=False)
        sin = train("sin", out=work / "sin", epochs=250, patience=250, device=args.device, progress=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "device": args.device, "cpus": os.cpu_count(),
        "inverse": {
            "data": "recorded on the virtual Gen0: steps program" if not args.session else f"session {path}",
            "frames": len(session), "minutes": round(len(session) / data.rate_hz / 60, 2),
            "rows": len(data.x_train) + len(data.x_val), "train_rows": len(data.x_train),
            "record_s": round(recorded_s, 1) if recorded_s else None, "load_s": round(load_s, 3),
            "rows_s": round(rows_s, 3), "train_s": inverse["timings"]["train_s"], "target_s": TARGET_S,
            "epochs": inverse["epochs_run"], "batch": inverse["config"]["batch"], "steps": inverse["steps"],
            "steps_per_s": inverse["timings"]["steps_per_s"], "val_rmse_us": inverse["val_rmse"],
            "linear_baseline_rmse_us": inverse["baseline_rmse"]["linear"],
        },
        "sin": {"steps": sin["steps"], "train_s": sin["timings"]["train_s"], "gpu_writeup_s": SIN_GPU_S,
                "val_rmse": sin["val_rmse"]["y"], "int8_val_rmse": sin["int8"]["val_rmse"]["y"]},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    inv, s = result["inverse"], result["sin"]
    print(f"inverse on {inv['minutes']} min of 200 Hz telemetry ({inv['data']}): {inv['rows']} rows "
          f"({inv['train_rows']} training), {args.device}, {result['cpus']} CPUs")
    print(f"  load {inv['load_s']:.2f} s, rows {inv['rows_s']:.2f} s, training {inv['train_s']:.2f} s "
          f"({'within' if inv['train_s'] <= TARGET_S else 'OVER'} the {TARGET_S:.0f} s target): {inv['epochs']} epochs "
          f"of batch {inv['batch']}, {inv['steps']} steps, {inv['steps_per_s']} steps/s")
    print("  val RMSE " + ", ".join(f"{o} {v:.1f} us (linear fit {inv['linear_baseline_rmse_us'][o]:.1f})"
                                    for o, v in inv["val_rmse_us"].items()))
    print(f"sin(x) 1-16-16-16-1, {s['steps']} steps: {s['train_s']:.2f} s (write-up: {SIN_GPU_S:.0f} s on a CUDA GPU); "
          f"val RMSE {s['val_rmse']:.4f} float, {s['int8_val_rmse']:.4f} int8")


if __name__ == "__main__":
    main()
