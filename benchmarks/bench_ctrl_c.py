"""How fast a Ctrl-C stops a script on the virtual Gen0, under a storm of them.

One virtual Gen0 with the firmware installed (main.py running), then tests/ctrl_c_storm.py's storm:
busy scripts started as mpremote exec starts them (raw-paste) and cut by a burst of 0x03 (stop:
the first 0x03 written until "KeyboardInterrupt" read, wall seconds, the UART's 115200 baud both
ways and what a printing script had queued included), soft reboots cut at random moments, and
mpremote runs killed mid-exec (then: the next `mpremote exec` as a whole, process start included).
An ESP32 raises the interrupt at the script's next check (SIM.md "Ctrl-C"); the target is every
stop within 0.5 s. A printing script stops as fast, but its traceback queues behind the few KB the
VM wrote before the supervisor stopped it (SIM.md, "Known differences": a pty cannot block a writer
at the 128-byte FIFO), ~0.35 s at 115200 baud. Figures are wall time: run on a quiet machine.

Usage: python benchmarks/bench_ctrl_c.py [--rounds N] [--seed N] [--json]
"""

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.sim import VirtualGen0  # noqa: E402
from tests.ctrl_c_storm import BUSY, storm  # noqa: E402


def figures(seconds):
    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1), "max_ms": round(ms[-1], 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="busy rounds per kind of script (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds: give at least 1")
    start = time.monotonic()
    with VirtualGen0(preload=True) as gen0:
        gen0.wait_ready()
        stats = storm(gen0.port, random.Random(args.seed), busy=args.rounds * len(BUSY), reboots=10, mpremotes=3)
        counters = gen0.counters()
    kinds = [BUSY[i % len(BUSY)].strip().splitlines()[-1].strip() for i in range(len(stats["stop_s"]))]
    by_kind = {k: figures([s for s, kk in zip(stats["stop_s"], kinds) if kk == k]) for k in dict.fromkeys(kinds)}
    out = {"ctrl_c_sent": stats["sent"], "stop": figures(stats["stop_s"]), "stop_by_script": by_kind,
           "within_500ms": sum(s <= 0.5 for s in stats["stop_s"]) / len(stats["stop_s"]),
           "soft_reboots_cut": stats["reboots"], "mpremote_after_kill": figures(stats["mpremote_s"]),
           "wedges": counters["wedges"], "crashes": counters["crashes"], "seconds": round(time.monotonic() - start, 1)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    s = out["stop"]
    print(f"{out['ctrl_c_sent']} Ctrl-C sent in {out['seconds']} s; wedges {out['wedges']}, crashes {out['crashes']}")
    print(f"script stopped: p50 {s['p50_ms']} ms, p90 {s['p90_ms']} ms, max {s['max_ms']} ms "
          f"({out['within_500ms']:.0%} within 500 ms, {s['n']} scripts)")
    for kind, f in by_kind.items():
        print(f"  {kind:<40} p50 {f['p50_ms']:>7} ms  max {f['max_ms']:>7} ms")
    m = out["mpremote_after_kill"]
    print(f"{out['soft_reboots_cut']} soft reboots cut; mpremote exec after a killed one: p50 {m['p50_ms']} ms, max {m['max_ms']} ms")


if __name__ == "__main__":
    main()
