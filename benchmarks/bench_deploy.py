"""Deploying and running models on the virtual Gen0: deploy time vs the link's physical limit,
µs a model costs the control loop, RAM a loaded model takes.

- Deploy: `host deploy`'s path (binary records within the board's window, PROTOCOL.md "Records";
  parity check apart) at 115200 baud, for blobs of ~2 to ~19.5 KB, each onto a fresh board (the
  heap fragments), against the link's physical limit, blob bytes x 10 / baud. The time includes
  `xfer begin` and `xfer end` (the board checks, builds and stores the model: ~0.1 s for 20 KB).
  What the deploy costs the loop: busy_us (p50, p99) and overruns from the telemetry frames sent
  while it ran. The figure to watch: the 20 KB blob's share of the limit (>= 80 % wanted).
- Loop cost: median busy_us of track mode with controller=naive and controller=model (the
  Gen0-sized 6-32-32-2 inverse model): the difference is the model's share of a tick (inputs
  quantised in place, infer_q, outputs to pulses). On the virtual Gen0 at 200 Hz (at an ESP32's
  pace: host/sim/SIM.md; noisy on a busy host) and on the bare VM with integer stand-ins for
  the peripherals (test_firmware_units' BENCH_MACHINE; steady, the VM's own speed: an ESP32 is
  ~30x slower per bytecode op, ~40x in viper, REFERENCE.md).
- RAM: gc.mem_free() before/after models.Store.boot() of each blob on the VM (64-bit objects:
  an ESP32 takes about half, except the blob's bytes).

Usage: python benchmarks/bench_deploy.py [--json]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.deploy import deploy, physical_seconds  # noqa: E402
from host.export.reference import Reference  # noqa: E402
from host.link.client import Link  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from tests.mpvm import run_micropython  # noqa: E402
from tests.test_deploy import gen0_blob  # noqa: E402
from tests.test_firmware_units import BENCH_MACHINE, FIRMWARE, ROBOT  # noqa: E402

INVERSE = [f"{j}_{s}" for j in ("shoulder", "elbow") for s in ("deg", "deg@-1", "target_deg@10")]
MODELS = {  # name: (sizes, hidden activation)
    "big_6_128_128_2": ((6, 128, 128, 2), "relu"),
    "tanh_6_64_64_2": ((6, 64, 64, 2), "tanh"),
    "gen0_6_32_32_2": ((6, 32, 32, 2), "relu"),
}
RAM_ON_VM = """
import os, sys, gc, json
os.chdir(%r)
import bench_machine
sys.modules['machine'] = bench_machine
import config, models
cfg = config.load()
store = models.Store(cfg)
gc.collect()
free = gc.mem_free()
store.boot()
gc.collect()
print(json.dumps({"ram_bytes": free - gc.mem_free(), "note": store.note}))
"""
LOOP_ON_VM = """
import os, sys, json, array
os.chdir(%r)
import bench_machine
sys.modules['machine'] = bench_machine
import loop, config
r = loop.Gen0(config.load())
r.telemetry_every = 0
out = {}
busy = array.array("i", bytes(4 * 3000))  # preallocated: a growing list needs one 32 KB piece of a fragmented heap
for controller in ("naive", "model"):
    r.enter("track", ["steps", "controller=" + controller])
    for i in range(3000):
        r.run(1)
        busy[i] = r.busy_us
    lo, hi = 0, 1 << 20  # the median by bisection: sorting would need another 32 KB piece
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(1 for v in busy if v <= mid) >= 1500:
            hi = mid
        else:
            lo = mid + 1
    out[controller] = lo
print(json.dumps(out))
"""


def blob_of(name):
    sizes, act = MODELS[name]
    return gen0_blob(act, seed=1, sizes=sizes, inputs=INVERSE)


def deploy_time(name, baud):
    """Deploy figures of one model onto a fresh virtual Gen0 (the heap fragments: FIRMWARE.md), and what
    the deploy cost the loop (telemetry's busy_us and overruns while it ran)."""
    blob = blob_of(name)
    with VirtualGen0(preload=True, baud=baud) as sim:
        sim.wait_ready(20)
        with Link(sim.port) as link:
            link.connect()
            while not link.telemetry.empty():  # what came before the deploy
                link.telemetry.get_nowait()
            s = deploy(link, blob, Reference(blob), checks=0, baud=baud)
            end = time.time()
            rows = []
            while (frame := link.next_telemetry(1.0)) is not None and frame[0] <= end:
                rows.append(frame[3])
            dropped = sim.rx_dropped
    busy = sorted(int(r["busy_us"]) for r in rows)
    return {"bytes": s["bytes"], "seconds": s["seconds"], "limit_seconds": round(physical_seconds(s["bytes"], baud), 3),
            "link_efficiency": s["link_efficiency"], "kib_per_s": s["kib_per_s"],
            "busy_p50_us": busy[len(busy) // 2], "busy_p99_us": busy[int(0.99 * (len(busy) - 1))],
            "overruns": int(rows[-1]["overruns"] - rows[0]["overruns"]) % 65536, "ticks": len(rows), "rx_dropped": dropped}


def busy_us(link, controller, seconds=3.0):
    """Median and p90 busy_us over `seconds` of `track steps` with a controller."""
    link.request_json("track", "steps", "duration_ms=%d" % (seconds * 1000 + 2000), "controller=" + controller)
    time.sleep(0.5)
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    busy = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = link.next_telemetry(0.5)
        if frame and frame[3]["mode"] == 3:
            busy.append(frame[3]["busy_us"])
    link.request("stop")
    busy.sort()
    return {"median_us": statistics.median(busy), "p90_us": busy[int(0.9 * len(busy))], "ticks": len(busy)}


def on_vm(script, blob):
    """The JSON a script prints on the bare VM, in a flash folder holding `blob` as model.bin."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "bench_machine.py").write_text(BENCH_MACHINE)
        (d / "robot.json").write_text(json.dumps(ROBOT))
        (d / "model.bin").write_bytes(blob)
        last = run_micropython(script % str(d), sys_path=[FIRMWARE, d], heap=256 * 1024).rstrip("\n").rsplit("\n", 1)[-1]
        return json.loads(last[last.rfind("~") + 1:])  # after the last frame the firmware wrote (a log's FLAG)


def ram_bytes(name):
    blob = blob_of(name)
    return {"blob_bytes": len(blob), "ram_bytes": on_vm(RAM_ON_VM, blob)["ram_bytes"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    baud = 115200
    figures = {"baud": baud, "deploy": {name: deploy_time(name, baud) for name in MODELS}}
    figures["efficiency_20kb"] = figures["deploy"]["big_6_128_128_2"]["link_efficiency"]
    with VirtualGen0(preload=True, baud=baud) as sim:
        sim.wait_ready(20)
        with Link(sim.port) as link:
            link.connect()
            gen0 = blob_of("gen0_6_32_32_2")
            deploy(link, gen0, Reference(gen0), checks=0, baud=baud)
            figures["loop"] = {"naive": busy_us(link, "naive"), "model": busy_us(link, "model")}
    figures["loop"]["model_cost_us"] = figures["loop"]["model"]["median_us"] - figures["loop"]["naive"]["median_us"]
    figures["loop_vm"] = on_vm(LOOP_ON_VM, blob_of("gen0_6_32_32_2"))
    figures["loop_vm"]["model_cost_us"] = figures["loop_vm"]["model"] - figures["loop_vm"]["naive"]
    figures["ram"] = {name: ram_bytes(name) for name in MODELS}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"deploy over the live link at {baud} baud (binary records, the board's window in flight):")
    print("  model                 bytes   seconds   limit s   of limit   KiB/s   busy p50/p99 ms  overruns/ticks")
    for name, d in figures["deploy"].items():
        print(f"  {name:<20} {d['bytes']:6d}  {d['seconds']:8.2f}  {d['limit_seconds']:8.3f}  "
              f"{d['link_efficiency'] * 100:8.1f} %  {d['kib_per_s']:6.2f}   {d['busy_p50_us'] / 1000:5.1f} /"
              f"{d['busy_p99_us'] / 1000:5.1f}     {d['overruns']:3d}/{d['ticks']}")
    big = figures["deploy"]["big_6_128_128_2"]
    print(f"  -> a {big['bytes'] / 1000:.1f} KB blob at {baud} baud takes {big['seconds']:.2f} s against the link's "
          f"{big['limit_seconds']:.2f} s: {figures['efficiency_20kb'] * 100:.1f} % of its limit (>= 80 % wanted)")
    loop = figures["loop"]
    print("track mode at 200 Hz on the virtual Gen0, busy_us median (p90):")
    print(f"  naive controller      {loop['naive']['median_us']:6.0f} ({loop['naive']['p90_us']})")
    print(f"  model gen0_6_32_32_2  {loop['model']['median_us']:6.0f} ({loop['model']['p90_us']})")
    print(f"  -> the model costs ~{loop['model_cost_us']:.0f} us a tick (unix VM, x86-64)")
    vm = figures["loop_vm"]
    print(f"the same on the bare VM (stand-in peripherals), busy_us median: naive {vm['naive']} us, "
          f"model {vm['model']} us -> the model costs {vm['model_cost_us']} us a tick")
    print("RAM of a loaded model (gc.mem_free before/after models.Store.boot, 64-bit VM):")
    for name, r in figures["ram"].items():
        print(f"  {name:<20} blob {r['blob_bytes']:6d} B  RAM {r['ram_bytes']:6d} B")


if __name__ == "__main__":
    main()
