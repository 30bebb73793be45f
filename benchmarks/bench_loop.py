"""The firmware's loop on the virtual Gen0 at an ESP32's pace: busy time per mode, where it goes, headroom.

Boots a virtual Gen0 for each CPU model (esp32: the VM's work costs what it would on an ESP32 at
240 MHz, the default; host: the VM's own speed, for comparison) with the firmware at its default
rate and baud, telemetry on, and runs each mode for --seconds: idle; direct with the host sending
`set` at 50 Hz; program steps; track steps with the naive, linear and model controllers (the shipped
models/gen0-default). Per mode: busy_us p50/p99/max from telemetry (µs of the board's clock), the
mean µs of each stage of a tick (the firmware's `stages`), overruns and ticks from `status`, and the
headroom at the rate, 1 - p99 / period (target: >= 30 %).

Usage: python benchmarks/bench_loop.py [--seconds 10] [--cpu esp32,host] [--cpu-factor X] [--modes ...] [--json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.deploy import deploy, read_blob  # noqa: E402
from host.link.client import Link  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from polyniod_firmware import protocol as P  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "models" / "gen0-default"
MODES = {  # name -> the command that starts it (duration filled in)
    "idle": ("idle", "hold"),
    "direct": ("direct",),
    "program": ("program", "steps", "duration_ms={ms}"),
    "track-naive": ("track", "steps", "duration_ms={ms}", "controller=naive"),
    "track-linear": ("track", "steps", "duration_ms={ms}", "controller=linear"),
    "track-model": ("track", "steps", "duration_ms={ms}", "controller=model"),
}
SET_HZ = 50  # how often the host sends `set` in direct mode


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def measure(link, mode, seconds):
    """Figures of one mode over `seconds` of its running."""
    link.request(*[a.format(ms=int((seconds + 4) * 1000)) for a in MODES[mode]])
    time.sleep(1.0)  # the mode's first ticks, and the ack's bytes, out of the window
    before = link.request_json("status")
    link.request_json("stages")
    time.sleep(0.3)  # the ticks that ran those two commands (and their gc.collect) out of the window too
    link.request_json("stages")  # (its own tick is the one whose time opens the next telemetry's busy_us)
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    end = time.monotonic() + seconds
    sets = 0
    while time.monotonic() < end:
        if mode == "direct":
            link.request("set", 1450 + 100 * (sets // 25 % 2), 1450 - 100 * (sets // 25 % 2))
            sets += 1
        time.sleep(1 / SET_HZ)
    frames = []
    while not link.telemetry.empty():
        frames.append(link.telemetry.get_nowait())
    stages = link.request_json("stages")
    after = link.request_json("status")
    link.request("stop")
    rate = after["rate_hz"]
    busy = [link.schema.unpack(p)[0] for _, _, _, p in frames[1:]]  # busy_us is the previous tick's
    ticks = (after["ticks"] - before["ticks"]) & 0x3FFFFFFF
    span_ms = after["uptime_ms"] - before["uptime_ms"]
    out = {
        "mode": mode, "rate_hz": rate, "seconds": seconds, "ticks": ticks,
        "loop_hz": round(ticks / max(span_ms, 1) * 1000, 1),
        "overruns": (after["overruns"] - before["overruns"]) & 0x3FFFFFFF, "frames": len(frames),
        "busy_us": {"p50": percentile(busy, 0.5), "p99": percentile(busy, 0.99), "max": max(busy)} if busy else None,
        "stages_mean_us": dict(zip(stages["stages"], stages["mean_us"])),
        "stages_max_us": dict(zip(stages["stages"], stages["max_us"])),
        "tx_waits": stages.get("tx_waits"),
        "bytes_per_frame": round(statistics.mean(len(P.encode_frame(P.T_TELEMETRY, s, t, p)) for _, s, t, p in frames), 2)
        if frames else None,
    }
    if busy:
        out["headroom_p99"] = round(1 - out["busy_us"]["p99"] / (1e6 / rate), 3)
    return out


def run_board(cpu, factor, modes, seconds, seed, rate=None):
    with VirtualGen0(preload=True, seed=seed, cpu=cpu, cpu_factor=factor) as gen0:
        gen0.wait_ready(20)
        with Link(gen0.port) as link:
            link.connect(timeout=30)
            if rate:
                link.request("rate", rate)
            if "track-model" in modes:
                blob, reference = read_blob(MODEL)
                deploy(link, blob, reference, checks=0)
            results = [measure(link, m, seconds) for m in modes]
        return {"cpu": gen0.cpu.describe(), "clock": gen0.counters()["clock"], "modes": results}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring window per mode (the target: 60)")
    ap.add_argument("--cpu", default="esp32,host", help="CPU models to run, comma-separated (esp32, host)")
    ap.add_argument("--cpu-factor", type=float, help="the esp32 model's factor at 240 MHz (default 30)")
    ap.add_argument("--modes", default=",".join(MODES), help="modes to run, comma-separated: " + ", ".join(MODES))
    ap.add_argument("--seed", type=int, default=0, help="the virtual unit")
    ap.add_argument("--rate", type=int, help="loop rate to run at (default: the firmware's own)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    modes = args.modes.split(",")
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: no mode {m!r} (modes: {', '.join(MODES)})")
    runs = {}
    for cpu in args.cpu.split(","):
        runs[cpu] = run_board(cpu, args.cpu_factor if cpu == "esp32" else None, modes, args.seconds, args.seed, args.rate)
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    for cpu, run in runs.items():
        print(f"\nCPU model: {run['cpu']}")
        stages = list(run["modes"][0]["stages_mean_us"])
        print(f"{'mode':<13} {'Hz':>6} {'overruns':>8} {'busy p50':>8} {'p99':>6} {'max':>6} {'headroom':>8}   "
              + " ".join(f"{s:>7}" for s in stages))
        for m in run["modes"]:
            b = m["busy_us"] or {"p50": 0, "p99": 0, "max": 0}
            print(f"{m['mode']:<13} {m['loop_hz']:>6.1f} {m['overruns']:>8} {b['p50']:>8} {b['p99']:>6} {b['max']:>6} "
                  f"{m.get('headroom_p99', 0) * 100:>7.1f}%   " + " ".join(f"{m['stages_mean_us'][s]:>7}" for s in stages))
    print("\nbusy/stages: µs of the board's clock per tick (stage columns: means; tick = the whole tick);"
          " headroom = 1 - p99 / period")


if __name__ == "__main__":
    main()
