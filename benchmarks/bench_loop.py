"""The firmware's loop on the virtual Gen0: rate reached, µs per tick, bytes per frame, link load.

Boots a virtual Gen0 (real MicroPython VM, real clock) with the firmware, asks for each rate
with telemetry on (every tick) and off, and measures over a window: ticks/s from the board's
own `status` counters, overruns, the busy_us distribution from telemetry, the frame sizes as
they went over the wire, and the link utilisation they imply at 115200 and 921600 baud.
A last run at the stock 115200 baud and 200 Hz shows the measured load of the real pacing.

Usage: python benchmarks/bench_loop.py [--seconds 3] [--rates 200,500,1000] [--json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.link.client import Link  # noqa: E402
from host.sim import VirtualGen0  # noqa: E402
from polyniod_firmware import protocol as P  # noqa: E402

BAUDS = (115200, 921600)


def measure(link, rate, every, seconds):
    """Figures of `seconds` at `rate` Hz with a telemetry frame every `every` ticks (0 = none)."""
    link.request("telemetry", every)
    link.request("rate", rate)
    time.sleep(0.3)
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    before, rx0, t0 = link.request_json("status"), link.rx_bytes, time.monotonic()
    time.sleep(seconds)
    after, rx1, t1 = link.request_json("status"), link.rx_bytes, time.monotonic()
    frames = []
    while not link.telemetry.empty():
        frames.append(link.telemetry.get_nowait())
    ticks_per_s = (after["ticks"] - before["ticks"]) / max(after["uptime_ms"] - before["uptime_ms"], 1) * 1000
    out = {"rate_hz": rate, "telemetry_every": every, "loop_hz": round(ticks_per_s, 1),
           "overruns": after["overruns"] - before["overruns"], "link_bytes_per_s": round((rx1 - rx0) / (t1 - t0))}
    if frames:
        busy = sorted(link.schema.unpack(p)[0] for _, _, _, p in frames)
        sizes = [len(P.encode_frame(P.T_TELEMETRY, seq, t_us, p)) for _, seq, t_us, p in frames]
        out.update({
            "frames_per_s": round((len(frames) - 1) / (((frames[-1][2] - frames[0][2]) % P.TICKS_PERIOD) or 1) * 1e6, 1),
            "busy_us": {"p50": busy[len(busy) // 2], "p90": busy[len(busy) * 9 // 10],
                        "p99": busy[len(busy) * 99 // 100], "max": busy[-1]},
            "bytes_per_frame": round(statistics.mean(sizes), 2),
        })
    return out


def run_board(baud, rates, everies, seconds):
    with VirtualGen0(preload=True, baud=baud) as gen0:
        gen0.wait_ready(20)
        with Link(gen0.port, baud) as link:
            link.connect(timeout=5)
            return link.schema.size, [measure(link, r, e, seconds) for e in everies for r in rates]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring window per setting")
    ap.add_argument("--rates", default="200,500,1000", help="loop rates to ask for (Hz, 10..1000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    payload, fast = run_board(921600, rates, (1, 0), args.seconds)
    _, stock = run_board(115200, [200], (1,), args.seconds)
    on = [m for m in fast if m["telemetry_every"]]
    frame_bytes = statistics.mean(m["bytes_per_frame"] for m in on)
    busy = statistics.mean(m["busy_us"]["p50"] for m in on)
    result = {
        "payload_bytes": payload,
        "bytes_per_frame": round(frame_bytes, 2),
        "max_loop_hz_telemetry_on": max(m["loop_hz"] for m in on),
        "max_loop_hz_telemetry_off": max(m["loop_hz"] for m in fast if not m["telemetry_every"]),
        "loop_hz_bound_by_busy_us": round(1e6 / busy),
        "link": {str(b): {"utilisation_at_200hz": round(frame_bytes * 200 * 10 / b, 3),
                          "frames_per_s_that_fit": int(b / 10 / frame_bytes)} for b in BAUDS},
        "measured_115200_at_200hz": dict(stock[0], utilisation=round(stock[0]["link_bytes_per_s"] * 10 / 115200, 3)),
        "runs_921600": fast,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"telemetry payload {payload} B, {frame_bytes:.2f} B per frame on the wire (framing, CRC, escapes)")
    print(f"{'rate':>6} {'telem':>6} {'loop Hz':>8} {'overruns':>9} {'frames/s':>9} {'busy p50/p99/max us':>20}")
    for m in fast:
        b = m.get("busy_us")
        busy_text = f"{b['p50']}/{b['p99']}/{b['max']}" if b else "-"
        print(f"{m['rate_hz']:>6} {'on' if m['telemetry_every'] else 'off':>6} {m['loop_hz']:>8.1f} "
              f"{m['overruns']:>9} {m.get('frames_per_s', 0):>9.1f} {busy_text:>20}")
    print(f"max loop rate (virtual Gen0, 921600 baud): {result['max_loop_hz_telemetry_on']:.1f} Hz with telemetry, "
          f"{result['max_loop_hz_telemetry_off']:.1f} Hz without (rate is capped at 1000; busy_us bounds it at "
          f"~{result['loop_hz_bound_by_busy_us']} Hz)")
    for b in BAUDS:
        link = result["link"][str(b)]
        print(f"{b:>7} baud: 200 Hz telemetry uses {link['utilisation_at_200hz'] * 100:.1f} %, "
              f"fits {link['frames_per_s_that_fit']} frames/s")
    s = result["measured_115200_at_200hz"]
    print(f"measured at 115200 baud, 200 Hz: loop {s['loop_hz']:.1f} Hz, {s['link_bytes_per_s']} B/s = "
          f"{s['utilisation'] * 100:.1f} % of the link")


if __name__ == "__main__":
    main()
